//! Credit queries end to end: Shuidi, Qichacha and Xinshu against the local query simulator,
//! on SQLite, PostgreSQL and MySQL.

use crate::helpers::*;
use crate::on_all_backends;
use md5::{Digest, Md5};
use qianzhi::pipeline::App;
use qianzhi::query::Provider::{self, Qcc, Shuidi, Xinshu};
use qianzhi::query::{QueryOutcome, QueryStopped, run_query_once};
use qianzhi::tools::query_demo::{DEMO_SUBJECTS, SUBJECTS_TABLE, SubjectRow};
use qianzhi::tools::query_sim::{QuerySim, qcc_records, shuidi_records, xinshu_record};
use serde_json::Value as Json;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

const S1: &str = "91440101MA59XQ4T2K";
const S2: &str = "91440104MA5D0R7L3N";

struct QueryApp {
    t: TestApp,
    sim: QuerySim,
}

/// A fresh database with the subjects table, the query simulator, and the three query jobs
/// (penalties, customs, tax_blacklist) with `budget` calls a day per provider.
async fn spawn_query(which: Which, budget: u32, subjects: &[SubjectRow]) -> Option<QueryApp> {
    spawn_query_with(which, budget, subjects, &|s| s).await
}

/// As `spawn_query`, with `edit` applied to the provider sections and query jobs.
async fn spawn_query_with(
    which: Which,
    budget: u32,
    subjects: &[SubjectRow],
    edit: &dyn Fn(String) -> String,
) -> Option<QueryApp> {
    server(which)?;
    let sim = qianzhi::tools::query_sim::start(Default::default(), "127.0.0.1:0")
        .await
        .unwrap();
    let cred_dir = tempfile::tempdir().unwrap().keep();
    let extra =
        edit(qianzhi::tools::query_demo::query_config(&sim, &cred_dir, budget, "").unwrap());
    let edit = move |s: String| format!("{s}{extra}");
    let t = spawn_app(
        which,
        Spawn {
            types: &[],
            edit: &edit,
            ..Default::default()
        },
    )
    .await?;
    t.app
        .db
        .create_subjects_table(SUBJECTS_TABLE, subjects)
        .await
        .unwrap();
    Some(QueryApp { t, sim })
}

impl QueryApp {
    async fn run(&self, job: &str) -> anyhow::Result<QueryOutcome> {
        run_query_once(self.t.app.query_app(), job, &CancellationToken::new()).await
    }

    /// A second App on the same database and configuration: a restart.
    async fn restart(&self) -> Arc<App> {
        App::new(qianzhi::tools::config_from_str(&self.t.cfg_text).unwrap())
            .await
            .unwrap()
    }

    fn sim_calls(&self, p: Provider) -> usize {
        self.sim.state.lock().unwrap().calls_of(p).len()
    }

    /// The ledger is the simulator's own count: every call, billed ones, order numbers.
    async fn assert_ledger_matches(&self, p: Provider) {
        let (calls, billed, orders) = {
            let st = self.sim.state.lock().unwrap();
            let mine = st.calls_of(p);
            let mut orders: Vec<String> = mine.iter().filter_map(|c| c.order_no.clone()).collect();
            orders.sort();
            (mine.len() as i64, st.billed(p) as i64, orders)
        };
        let name = p.name();
        assert_eq!(
            self.t
                .scalar(&format!(
                    "SELECT COUNT(*) FROM qz_query_ledger WHERE provider = '{name}'"
                ))
                .await,
            calls,
            "{name}: ledger rows = calls the simulator received"
        );
        assert_eq!(
            self.t
                .scalar(&format!(
                    "SELECT COUNT(*) FROM qz_query_ledger WHERE provider = '{name}' AND billed = 1"
                ))
                .await,
            billed,
            "{name}: billed ledger rows = calls the simulator billed"
        );
        let mut got: Vec<String> = self
            .t
            .rows(&format!(
                "SELECT order_no FROM qz_query_ledger WHERE provider = '{name}' AND order_no IS NOT NULL"
            ))
            .await
            .into_iter()
            .filter_map(|r| r[0].clone())
            .collect();
        got.sort();
        assert_eq!(got, orders, "{name}: order numbers");
        assert_eq!(
            self.t
                .scalar(&format!(
                    "SELECT COUNT(*) FROM qz_query_ledger WHERE provider = '{name}' AND status_code IS NULL"
                ))
                .await,
            0,
            "{name}: every ledger row completed with the answer"
        );
    }
}

#[test]
fn signatures_follow_the_specs() {
    use chrono::{TimeZone, Utc};
    // Shuidi: vkey = md5(pkey_ptime_pkey), 32 lowercase hex; ptime in milliseconds (13 digits).
    let t = Utc.timestamp_millis_opt(1571990576623).unwrap();
    assert_eq!(qianzhi::query::shuidi::ptime(t), "1571990576623");
    assert_eq!(
        qianzhi::query::shuidi::vkey("patest-key", "1571990576623"),
        md5_hex("patest-key_1571990576623_patest-key")
    );
    // Qichacha: Token = upper(md5(key + Timespan + SecretKey)), Timespan in seconds.
    assert_eq!(qianzhi::query::qcc::timespan(t), "1571990576");
    assert_eq!(
        qianzhi::query::qcc::token("AppKey", "1571990576", "SecretKey"),
        md5_hex("AppKey1571990576SecretKey").to_uppercase()
    );
    // Xinshu: sign = md5(private key + yyyyMMdd in Beijing time), even when UTC is a day behind.
    let late = Utc.with_ymd_and_hms(2025, 6, 30, 23, 30, 0).unwrap();
    assert_eq!(qianzhi::query::xinshu::sign_date(late), "20250701");
    assert_eq!(
        qianzhi::query::xinshu::sign("pk-1", late),
        md5_hex("pk-120250701")
    );
    let early = Utc.with_ymd_and_hms(2025, 6, 30, 15, 59, 59).unwrap();
    assert_eq!(
        qianzhi::query::xinshu::sign("pk-1", early),
        md5_hex("pk-120250630")
    );
}

async fn paging_reads_every_page(which: Which) {
    let Some(q) = spawn_query(which, 100, DEMO_SUBJECTS).await else {
        return;
    };
    let s3 = DEMO_SUBJECTS[2];
    {
        let mut st = q.sim.state.lock().unwrap();
        st.set(Shuidi, S1, shuidi_records(45));
        st.set(Qcc, S1, qcc_records(25, 2));
        st.set(
            Xinshu,
            s3.4.unwrap(),
            vec![xinshu_record(s3.1, s3.4.unwrap())],
        );
    }
    let o = q.run("penalties").await.unwrap();
    assert_eq!(
        (o.subjects, o.found, o.no_result, o.calls),
        (3, 1, 2, 5),
        "{o:?}"
    );
    let o = q.run("customs").await.unwrap();
    assert_eq!((o.found, o.no_result, o.calls), (1, 2, 4), "{o:?}");
    let o = q.run("tax_blacklist").await.unwrap();
    assert_eq!((o.found, o.no_result, o.calls), (1, 2, 3), "{o:?}");

    // Shuidi: pages 1..3 of 20, each signed per the spec.
    let (pages, cfg) = {
        let st = q.sim.state.lock().unwrap();
        let calls: Vec<(String, String, String, String, String)> = st
            .calls_of(Shuidi)
            .iter()
            .filter(|c| c.param("keyword") == Some(S1))
            .map(|c| {
                (
                    c.param("pageIndex").unwrap().to_string(),
                    c.param("pageSize").unwrap().to_string(),
                    c.param("ptime").unwrap().to_string(),
                    c.param("vkey").unwrap().to_string(),
                    c.code.clone(),
                )
            })
            .collect();
        (calls, q.sim.cfg.clone())
    };
    assert_eq!(
        pages
            .iter()
            .map(|p| (p.0.as_str(), p.1.as_str(), p.4.as_str()))
            .collect::<Vec<_>>(),
        vec![("1", "20", "1"), ("2", "20", "1"), ("3", "20", "1")]
    );
    for p in &pages {
        assert_eq!(p.2.len(), 13);
        let k = &cfg.shuidi_pkey;
        assert_eq!(p.3, md5_hex(&format!("{k}_{}_{k}", p.2)));
    }
    let rows = q
        .t
        .rows(&format!(
            "SELECT seq, punish_code, authority, punish_date, subject_name, raw_json FROM qz_shuidi_punish WHERE subject_key = '{S1}' ORDER BY seq"
        ))
        .await;
    assert_eq!(rows.len(), 45);
    let want = shuidi_records(45);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r[0].as_deref(), Some((i + 1).to_string().as_str()));
        assert_eq!(r[1].as_deref(), want[i]["PunishCode"].as_str());
        assert_eq!(r[2].as_deref(), Some("示例市市场监督管理局"));
        assert_eq!(r[3].as_deref(), Some("2024-05-18 00:00:00"));
        assert_eq!(r[4].as_deref(), Some("示例贸易有限公司"));
        let raw: Json = serde_json::from_str(r[5].as_deref().unwrap()).unwrap();
        assert_eq!(raw, want[i]);
    }

    // Qichacha: two pages of registrations, every PunishList entry, Token headers accepted.
    let qcc_pages: Vec<String> = q
        .sim
        .state
        .lock()
        .unwrap()
        .calls_of(Qcc)
        .iter()
        .filter(|c| c.param("searchKey") == Some(S1))
        .map(|c| format!("{}:{}", c.param("pageIndex").unwrap(), c.code))
        .collect();
    assert_eq!(qcc_pages, vec!["1:200", "2:200"]);
    assert_eq!(
        q.t.scalar(&format!(
            "SELECT COUNT(*) FROM qz_qcc_customs_credit WHERE subject_key = '{S1}'"
        ))
        .await,
        25
    );
    assert_eq!(
        q.t.scalar(&format!(
            "SELECT COUNT(*) FROM qz_qcc_customs_punish WHERE subject_key = '{S1}'"
        ))
        .await,
        50
    );
    let c = q
        .t
        .rows("SELECT reg_gov, trade_type, identify_level, identify_date, reg_no, punish_count FROM qz_qcc_customs_credit WHERE seq = 25")
        .await;
    assert_eq!(
        c[0],
        vec![
            Some("黄埔海关".into()),
            Some("进出口货物收发货人".into()),
            Some("一般信用企业".into()),
            Some("2022-04-12".into()),
            Some("4401900025".into()),
            Some("2".into())
        ]
    );
    let p = q
        .t
        .rows("SELECT credit_seq, reg_no, decision_no, case_prop FROM qz_qcc_customs_punish WHERE credit_seq = 25 ORDER BY seq")
        .await;
    assert_eq!(p.len(), 2);
    assert_eq!(p[1][1].as_deref(), Some("4401900025"));
    assert_eq!(p[1][2].as_deref(), Some("黄关缉违字〔2023〕2502号"));

    // Xinshu: every field of the spec lands in its column; POST with apikey and sign.
    let xs = q.sim.state.lock().unwrap().calls_of(Xinshu)[0].clone();
    assert_eq!(xs.method, "POST");
    assert_eq!(xs.param("apikey"), Some(q.sim.cfg.xinshu_apikey.as_str()));
    let cols = qianzhi::query::xinshu::COLUMNS.join(", ");
    let r =
        q.t.rows(&format!(
            "SELECT {cols} FROM qz_xinshu_tax_black WHERE subject_key = '{}'",
            s3.1
        ))
        .await;
    assert_eq!(r.len(), 1);
    let want = xinshu_record(s3.1, s3.4.unwrap());
    for (i, f) in qianzhi::query::xinshu::FIELDS.iter().enumerate() {
        assert_eq!(r[0][i].as_deref(), want[*f].as_str(), "{f}");
    }

    for p in [Shuidi, Qcc, Xinshu] {
        q.assert_ledger_matches(p).await;
    }

    // A re-query replaces the subject's earlier rows (once the result is no longer fresh).
    q.sim
        .state
        .lock()
        .unwrap()
        .set(Shuidi, S1, shuidi_records(3));
    q.t.app
        .db
        .execute_script("UPDATE qz_query_subject SET fetched_at = '2000-01-01 00:00:00'")
        .await
        .unwrap();
    let o = q.run("penalties").await.unwrap();
    assert_eq!((o.found, o.calls), (1, 3), "{o:?}");
    assert_eq!(
        q.t.scalar(&format!(
            "SELECT COUNT(*) FROM qz_shuidi_punish WHERE subject_key = '{S1}'"
        ))
        .await,
        3
    );
    assert_eq!(
        q.t.scalar(
            "SELECT COUNT(*) FROM qz_shuidi_punish WHERE fetched_at = '2000-01-01 00:00:00'"
        )
        .await,
        0
    );
    q.assert_ledger_matches(Shuidi).await;
}
on_all_backends!(query_paging_reads_every_page, paging_reads_every_page);

async fn codes_follow_the_mapping(which: Which) {
    let Some(q) = spawn_query(which, 100, DEMO_SUBJECTS).await else {
        return;
    };
    q.sim
        .state
        .lock()
        .unwrap()
        .set(Shuidi, S1, shuidi_records(2));
    // 等待处理中, then an expired request: retried, re-signed, then the data is stored.
    {
        let mut st = q.sim.state.lock().unwrap();
        st.inject(Shuidi, "5");
        st.inject(Shuidi, "30001");
    }
    let o = q.run("penalties").await.unwrap();
    assert_eq!((o.found, o.no_result, o.calls), (1, 2, 5), "{o:?}");
    let codes: Vec<String> = q
        .sim
        .state
        .lock()
        .unwrap()
        .calls_of(Shuidi)
        .iter()
        .map(|c| c.code.clone())
        .collect();
    assert_eq!(codes[..3], ["5", "30001", "1"]);
    let led = q
        .t
        .rows("SELECT status_code, action, billed, message FROM qz_query_ledger WHERE provider = 'shuidi' ORDER BY id")
        .await;
    assert_eq!(
        led[0],
        vec![
            Some("5".into()),
            Some("retry_later".into()),
            Some("0".into()),
            Some("等待处理中".into())
        ]
    );
    assert_eq!(led[1][1].as_deref(), Some("resign"));
    assert_eq!(led[2][1..3], [Some("success".into()), Some("1".into())]);
    q.assert_ledger_matches(Shuidi).await;

    // No result is recorded and, being fresh, not asked again.
    let r = q
        .t
        .rows(&format!(
            "SELECT last_status, status_code, message, record_count FROM qz_query_subject WHERE provider = 'shuidi' AND subject_key = '{S2}'"
        ))
        .await;
    assert_eq!(
        r[0],
        vec![
            Some("no_result".into()),
            Some("2".into()),
            Some("查询无结果".into()),
            Some("0".into())
        ]
    );
    let before = q.sim_calls(Shuidi);
    let o = q.run("penalties").await.unwrap();
    assert_eq!((o.fresh, o.calls), (3, 0), "{o:?}");
    assert_eq!(
        q.sim_calls(Shuidi),
        before,
        "fresh subjects are not asked again"
    );

    // Qichacha: HTTP 503 is retried; 213 refuses the subject (recorded, not retried while
    // fresh); 110 pauses the provider for two hours.
    {
        let mut st = q.sim.state.lock().unwrap();
        st.inject(Qcc, "HTTP 503");
        st.inject(Qcc, "213");
        st.inject(Qcc, "110");
    }
    let o = q.run("customs").await.unwrap();
    assert_eq!((o.rejected, o.calls), (1, 3), "{o:?}");
    let until = o.paused_until.clone().expect("paused");
    let expect = qianzhi::timefmt::now_beijing() + chrono::Duration::hours(2);
    let until_t = chrono::NaiveDateTime::parse_from_str(&until, "%Y-%m-%d %H:%M:%S").unwrap();
    assert!(
        (until_t - expect.naive_local()).num_seconds().abs() < 60,
        "paused for two hours: {until}"
    );
    let rej =
        q.t.rows(
            "SELECT last_status, status_code, message FROM qz_query_subject WHERE provider = 'qcc'",
        )
        .await;
    assert_eq!(rej.len(), 1, "{rej:?}");
    assert_eq!(
        rej[0],
        vec![
            Some("rejected".into()),
            Some("213".into()),
            Some("【有效请求】参数长度不能小于 2".into())
        ]
    );
    let st =
        q.t.rows("SELECT state, status_code, reason FROM qz_query_provider WHERE provider = 'qcc'")
            .await;
    assert_eq!(st[0][0].as_deref(), Some("paused"));
    assert!(st[0][2].as_deref().unwrap().contains("请等 2 小时后重试"));
    // While paused nothing is sent, also after a restart.
    let before = q.sim_calls(Qcc);
    let o = q.run("customs").await.unwrap();
    assert_eq!(
        (o.calls, o.paused_until.as_deref()),
        (0, Some(until.as_str()))
    );
    let app2 = q.restart().await;
    let o = run_query_once(app2.query_app(), "customs", &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(o.calls, 0);
    assert_eq!(q.sim_calls(Qcc), before);
    q.assert_ledger_matches(Qcc).await;

    // Xinshu: a quota answer stops the provider, loudly, until a restart.
    q.sim.state.lock().unwrap().inject(Xinshu, "3001");
    let e = q.run("tax_blacklist").await.unwrap_err();
    assert!(e.downcast_ref::<QueryStopped>().is_some(), "{e:#}");
    assert!(format!("{e}").contains("3001 可用查询次数为 0"), "{e}");
    let before = q.sim_calls(Xinshu);
    assert_eq!(before, 1);
    let e = q.run("tax_blacklist").await.unwrap_err();
    assert!(e.downcast_ref::<QueryStopped>().is_some());
    assert_eq!(q.sim_calls(Xinshu), 1, "a stopped provider is not called");
    let st = q
        .t
        .rows("SELECT state, status_code, reason FROM qz_query_provider WHERE provider = 'xinshu'")
        .await;
    assert_eq!(st[0][..2], [Some("stopped".into()), Some("3001".into())]);
    q.assert_ledger_matches(Xinshu).await;

    // status shows today's spend, budget left and the pause/stop with the spec's message.
    let out = q.t.cli(&["status", "--json"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let j: Json = serde_json::from_str(&text).unwrap();
    let prov = |name: &str| {
        j["providers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["provider"] == name)
            .unwrap()
            .clone()
    };
    let sh = prov("shuidi");
    assert_eq!(sh["calls_today"], 5);
    assert_eq!(sh["budget_left"], 95);
    assert_eq!(sh["state"], "active");
    let qc = prov("qcc");
    assert_eq!(qc["calls_today"], 3);
    assert_eq!(qc["billed_today"], 0);
    assert_eq!(qc["state"], "paused");
    // Beijing time with its offset in JSON.
    assert_eq!(
        qc["paused_until"],
        Json::from(qianzhi::timefmt::stored_to_rfc3339(&until))
    );
    assert!(qc["paused_until"].as_str().unwrap().ends_with("+08:00"));
    assert_eq!(prov("xinshu")["state"], "stopped");
    assert!(
        prov("xinshu")["reason"]
            .as_str()
            .unwrap()
            .contains("可用查询次数为 0")
    );
    let c = &q.sim.cfg;
    for secret in [
        &c.shuidi_pkey,
        &c.qcc_key,
        &c.qcc_secret_key,
        &c.xinshu_apikey,
        &c.xinshu_private_key,
    ] {
        assert!(!text.contains(secret.as_str()), "status leaks a credential");
    }

    // A restart tries a stopped provider again; success makes it active.
    let app2 = q.restart().await;
    let o = run_query_once(app2.query_app(), "tax_blacklist", &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!((o.calls, o.no_result), (3, 3), "{o:?}");
    let st =
        q.t.rows("SELECT state FROM qz_query_provider WHERE provider = 'xinshu'")
            .await;
    assert_eq!(st[0][0].as_deref(), Some("active"));
    q.assert_ledger_matches(Xinshu).await;
}
on_all_backends!(query_codes_follow_the_mapping, codes_follow_the_mapping);

fn many_subjects(n: i64) -> Vec<SubjectRow> {
    (1..=n)
        .map(|i| {
            let name: &'static str = Box::leak(format!("受监管企业{i:02}").into_boxed_str());
            let code: &'static str = Box::leak(format!("9144010000000{i:04}X").into_boxed_str());
            (i, name, Some(code), None, None)
        })
        .collect()
}

async fn budget_is_never_exceeded(which: Which) {
    let subjects = many_subjects(8);
    let Some(q) = spawn_query(which, 5, &subjects).await else {
        return;
    };
    // Subject 1 has 45 penalties: three paid pages.
    q.sim
        .state
        .lock()
        .unwrap()
        .set(Shuidi, subjects[0].2.unwrap(), shuidi_records(45));
    let o = q.run("penalties").await.unwrap();
    assert!(o.budget_exhausted, "{o:?}");
    assert_eq!((o.calls, o.found, o.no_result), (5, 1, 2), "{o:?}");
    assert_eq!(q.sim_calls(Shuidi), 5);
    // A restart (new App, same database) spends nothing more today.
    let app2 = q.restart().await;
    let o = run_query_once(app2.query_app(), "penalties", &CancellationToken::new())
        .await
        .unwrap();
    assert!(o.budget_exhausted && o.calls == 0, "{o:?}");
    assert_eq!(q.sim_calls(Shuidi), 5);
    q.assert_ledger_matches(Shuidi).await;

    // Two processes racing on one provider's budget still spend exactly the budget. They
    // race for the same query job too: one may find its lease held and ask nothing.
    let app3 = q.restart().await;
    let cancel = CancellationToken::new();
    let (a, b) = tokio::join!(
        run_query_once(app2.query_app(), "customs", &cancel),
        run_query_once(app3.query_app(), "customs", &cancel)
    );
    let calls = |r: anyhow::Result<QueryOutcome>| match r {
        Ok(o) => o.calls,
        Err(e) if e.downcast_ref::<qianzhi::db::lease::LeaseHeld>().is_some() => 0,
        Err(e) => panic!("{e:#}"),
    };
    assert_eq!(calls(a) + calls(b), 5);
    assert_eq!(q.sim_calls(Qcc), 5);
    let day = qianzhi::query::run::budget_day(chrono::Utc::now());
    assert_eq!(
        q.t.scalar(&format!(
            "SELECT calls FROM qz_query_budget WHERE provider = 'qcc' AND call_day = '{day}'"
        ))
        .await,
        5
    );
    q.assert_ledger_matches(Qcc).await;

    let out = q.t.cli(&["status"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |p: &str| -> Vec<String> {
        text.lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .find(|w| w.first().map(String::as_str) == Some(p))
            .unwrap_or_else(|| panic!("no {p} line in\n{text}"))
    };
    // provider, budget, calls, billed, left, state
    assert_eq!(
        line("shuidi")[..6],
        ["shuidi", "5", "5", "5", "0", "active"]
    );
    assert_eq!(line("qcc")[..6], ["qcc", "5", "5", "5", "0", "active"]);
}
on_all_backends!(query_budget_is_never_exceeded, budget_is_never_exceeded);

async fn fresh_subject_is_not_queried_again(which: Which) {
    let Some(q) = spawn_query(which, 100, DEMO_SUBJECTS).await else {
        return;
    };
    let s3 = DEMO_SUBJECTS[2];
    q.sim.state.lock().unwrap().set(
        Xinshu,
        s3.4.unwrap(),
        vec![xinshu_record(s3.1, s3.4.unwrap())],
    );
    let o = q.run("tax_blacklist").await.unwrap();
    assert_eq!((o.calls, o.found, o.no_result), (3, 1, 2));
    // A restart does not forget freshness: it is in qz_query_subject.
    let app2 = q.restart().await;
    let o = run_query_once(app2.query_app(), "tax_blacklist", &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!((o.calls, o.fresh), (0, 3), "{o:?}");
    assert_eq!(q.sim_calls(Xinshu), 3);
    // Once one subject's result is older than fresh_for (30d), only that one is asked again.
    q.t.app
        .db
        .execute_script(&format!(
            "UPDATE qz_query_subject SET fetched_at = '2020-01-01 00:00:00' WHERE provider = 'xinshu' AND subject_key = '{S2}'"
        ))
        .await
        .unwrap();
    let o = q.run("tax_blacklist").await.unwrap();
    assert_eq!((o.calls, o.fresh, o.no_result), (1, 2, 1), "{o:?}");
    let last = q.sim.state.lock().unwrap().calls_of(Xinshu)[3].clone();
    assert_eq!(last.param("taxNo"), Some(S2));
    q.assert_ledger_matches(Xinshu).await;
}
on_all_backends!(
    query_fresh_subject_is_not_queried_again,
    fresh_subject_is_not_queried_again
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_credentials_never_logged_and_ids_masked() {
    let q = spawn_query(Which::Sqlite, 100, DEMO_SUBJECTS)
        .await
        .unwrap();
    q.sim.state.lock().unwrap().inject(Qcc, "107");
    let out = q.t.cli(&["once"], &[("RUST_LOG", "trace")]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "a stopped provider fails the run: {all}"
    );
    assert!(all.contains("PROVIDER STOPPED"), "{all}");
    assert!(all.contains("被禁止的 IP 或者签名错误"), "{all}");
    let c = &q.sim.cfg;
    for secret in [
        &c.shuidi_pkey,
        &c.qcc_key,
        &c.qcc_secret_key,
        &c.xinshu_apikey,
        &c.xinshu_private_key,
    ] {
        assert!(!all.contains(secret.as_str()), "credential {secret} leaked");
    }
    assert!(!all.contains("610431198603210047"), "ID number leaked");
    // The run went through once for every provider: the CLI path runs query jobs.
    assert!(q.sim_calls(Shuidi) >= 3 && q.sim_calls(Xinshu) >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_runs_query_jobs_and_stops_on_sigterm() {
    let q = spawn_query(Which::Sqlite, 100, DEMO_SUBJECTS)
        .await
        .unwrap();
    q.sim.state.lock().unwrap().set(Qcc, S1, qcc_records(1, 1));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_qianzhi"))
        .arg("--config")
        .arg(&q.t.cfg_path)
        .arg("run")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let all_asked = || [Shuidi, Qcc, Xinshu].iter().all(|p| q.sim_calls(*p) >= 3);
    while !all_asked() {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon did not run every query job"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(
        q.t.scalar("SELECT COUNT(*) FROM qz_qcc_customs_credit")
            .await,
        1
    );
    for p in [Shuidi, Qcc, Xinshu] {
        q.assert_ledger_matches(p).await;
    }
}

const ID_CARD: &str = "610431198603210047";
const TAX_NO: &str = "440104198603210047";

/// The parameters a Xinshu call carried besides apikey and sign.
fn xinshu_identity(c: &qianzhi::tools::query_sim::SimCall) -> Vec<(String, String)> {
    c.params
        .iter()
        .filter(|(k, _)| k.as_str() != "apikey" && k.as_str() != "sign")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn xinshu_subjects_known_by_one_number(which: Which) {
    // The spec: taxName, idCard, taxNo, at least one of them. Names are NOT NULL in the demo
    // table: an empty name is "no name".
    let subjects: &[SubjectRow] = &[
        (1, "", None, Some(ID_CARD), None),
        (2, "", None, None, Some(TAX_NO)),
        (3, "", None, None, None),
        (4, "  ", None, Some(" "), Some("")),
    ];
    let Some(q) = spawn_query(which, 100, subjects).await else {
        return;
    };
    q.sim.state.lock().unwrap().set(
        Xinshu,
        ID_CARD,
        vec![xinshu_record("示例装饰工程部", TAX_NO)],
    );
    let out = q.t.cli(&["once", "--job", "tax_blacklist"], &[]);
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{log}");
    // The two rows with nothing at all are counted and said so; the others are asked.
    assert!(
        log.contains("2 rows of the subjects view have no usable identity"),
        "{log}"
    );
    assert!(
        log.contains("tax_blacklist: 2 subjects, 0 fresh, 2 calls: 1 found, 1 no result"),
        "{log}"
    );
    assert!(log.contains("2 skipped"), "{log}");
    assert!(
        !log.contains(ID_CARD) && !log.contains(TAX_NO),
        "ID numbers masked: {log}"
    );
    let sent: Vec<Vec<(String, String)>> = q
        .sim
        .state
        .lock()
        .unwrap()
        .calls_of(Xinshu)
        .iter()
        .map(|c| xinshu_identity(c))
        .collect();
    // Key order: the tax number (4…) before the ID card number (6…).
    assert_eq!(
        sent,
        vec![pairs(&[("taxNo", TAX_NO)]), pairs(&[("idCard", ID_CARD)])]
    );
    let got = q
        .t
        .rows("SELECT subject_key, last_status, record_count FROM qz_query_subject WHERE provider = 'xinshu' ORDER BY subject_key")
        .await;
    assert_eq!(
        got,
        vec![
            vec![
                Some(TAX_NO.into()),
                Some("no_result".into()),
                Some("0".into())
            ],
            vec![Some(ID_CARD.into()), Some("found".into()), Some("1".into())],
        ]
    );
    assert_eq!(
        q.t.scalar(&format!(
            "SELECT COUNT(*) FROM qz_xinshu_tax_black WHERE subject_key = '{ID_CARD}' AND tax_no = '{TAX_NO}'"
        ))
        .await,
        1
    );
    q.assert_ledger_matches(Xinshu).await;
}
on_all_backends!(
    query_xinshu_subjects_known_by_one_number,
    xinshu_subjects_known_by_one_number
);

async fn xinshu_uscc_as_tax_no(which: Which) {
    // No tax-number column: the USCC goes as taxNo only when uscc_as_tax_no says so.
    let subjects: &[SubjectRow] = &[
        (1, "示例贸易有限公司", Some(S1), None, None),
        (2, "", Some(S2), None, None),
    ];
    for on in [false, true] {
        let edit = move |s: String| {
            s.replace(
                "tax_no_column = \"tax_no\"\n",
                if on { "uscc_as_tax_no = true\n" } else { "" },
            )
        };
        let Some(q) = spawn_query_with(which, 100, subjects, &edit).await else {
            return;
        };
        let o = q.run("tax_blacklist").await.unwrap();
        let sent: Vec<Vec<(String, String)>> = q
            .sim
            .state
            .lock()
            .unwrap()
            .calls_of(Xinshu)
            .iter()
            .map(|c| xinshu_identity(c))
            .collect();
        if on {
            assert_eq!((o.calls, o.no_result, o.skipped), (2, 2, 0), "{o:?}");
            assert_eq!(
                sent,
                vec![
                    pairs(&[("taxName", "示例贸易有限公司"), ("taxNo", S1)]),
                    pairs(&[("taxNo", S2)]),
                ]
            );
        } else {
            // The USCC-only subject has nothing Xinshu accepts: skipped, counted.
            assert_eq!((o.calls, o.no_result, o.skipped), (1, 1, 1), "{o:?}");
            assert_eq!(sent, vec![pairs(&[("taxName", "示例贸易有限公司")])]);
        }
        q.assert_ledger_matches(Xinshu).await;
    }
}
on_all_backends!(query_xinshu_uscc_as_tax_no, xinshu_uscc_as_tax_no);

async fn paged_subject_over_budget_continues_next_day(which: Which) {
    // Budget 2 a day; the first subject in key order has 45 records: three pages of 20.
    let subjects = many_subjects(3);
    let Some(q) = spawn_query(which, 2, &subjects).await else {
        return;
    };
    let big = subjects[0].2.unwrap();
    {
        let mut st = q.sim.state.lock().unwrap();
        st.set(Shuidi, big, shuidi_records(45));
        st.set(Qcc, big, qcc_records(45, 1));
    }
    // (job, provider, page parameter, search parameter, result table)
    for (job, p, search, table) in [
        ("penalties", Shuidi, "keyword", "qz_shuidi_punish"),
        ("customs", Qcc, "searchKey", "qz_qcc_customs_credit"),
    ] {
        let name = p.name();
        let asked = || -> Vec<(String, String)> {
            q.sim
                .state
                .lock()
                .unwrap()
                .calls_of(p)
                .iter()
                .map(|c| {
                    (
                        c.param(search).unwrap().to_string(),
                        c.param("pageIndex").unwrap().to_string(),
                    )
                })
                .collect()
        };
        let want = |v: &[(usize, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(i, page)| (subjects[*i].2.unwrap().to_string(), page.to_string()))
                .collect()
        };
        // Day 1: pages 1 and 2 of the big subject; they are kept, nothing is stored yet.
        let o = q.run(job).await.unwrap();
        assert!(o.budget_exhausted, "{job}: {o:?}");
        assert_eq!((o.calls, o.found, o.partial), (2, 0, 1), "{job}: {o:?}");
        assert_eq!(asked(), want(&[(0, "1"), (0, "2")]), "{job}");
        assert_eq!(
            q.t.scalar(&format!(
                "SELECT COUNT(*) FROM qz_query_page WHERE provider = '{name}' AND subject_key = '{big}'"
            ))
            .await,
            2
        );
        assert_eq!(
            q.t.scalar(&format!("SELECT COUNT(*) FROM {table}")).await,
            0
        );

        // Day 2, after a restart: page 3 only, the subject is stored whole, and the next
        // subject in key order is asked with the call left.
        let app2 = q.restart().await;
        app2.query.clock.advance(chrono::Duration::days(1));
        let o = run_query_once(app2.query_app(), job, &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(
            (
                o.calls,
                o.continued,
                o.found,
                o.no_result,
                o.budget_exhausted
            ),
            (2, 1, 1, 1, true),
            "{job}: {o:?}"
        );
        assert_eq!(
            asked(),
            want(&[(0, "1"), (0, "2"), (0, "3"), (1, "1")]),
            "{job}: no page bought twice"
        );
        let n =
            q.t.scalar(&format!(
                "SELECT COUNT(*) FROM {table} WHERE subject_key = '{big}'"
            ))
            .await;
        assert_eq!(n, 45, "{job}");
        let r = q
            .t
            .rows(&format!(
                "SELECT last_status, record_count, calls FROM qz_query_subject WHERE provider = '{name}' AND subject_key = '{big}'"
            ))
            .await;
        assert_eq!(
            r[0],
            vec![Some("found".into()), Some("45".into()), Some("3".into())],
            "{job}"
        );
        assert_eq!(
            q.t.scalar(&format!(
                "SELECT COUNT(*) FROM qz_query_page WHERE provider = '{name}'"
            ))
            .await,
            0,
            "{job}: the pages went into the result"
        );

        // Day 3: the last subject.
        app2.query.clock.advance(chrono::Duration::days(1));
        let o = run_query_once(app2.query_app(), job, &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!((o.calls, o.fresh, o.no_result), (1, 2, 1), "{job}: {o:?}");
        assert_eq!(asked().len(), 5);
        assert_eq!(asked()[4], want(&[(2, "1")])[0]);
        let days =
            q.t.rows(&format!(
                "SELECT calls FROM qz_query_budget WHERE provider = '{name}' ORDER BY call_day"
            ))
            .await;
        assert_eq!(
            days,
            vec![
                vec![Some("2".into())],
                vec![Some("2".into())],
                vec![Some("1".into())]
            ],
            "{job}: never more than the budget a day"
        );
        q.assert_ledger_matches(p).await;
    }
    // The records are those of the three pages, in order.
    let got =
        q.t.rows(&format!(
            "SELECT seq, punish_code FROM qz_shuidi_punish WHERE subject_key = '{big}' ORDER BY seq"
        ))
        .await;
    let want = shuidi_records(45);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r[0].as_deref(), Some((i + 1).to_string().as_str()));
        assert_eq!(r[1].as_deref(), want[i]["PunishCode"].as_str());
    }
    assert_eq!(
        q.t.scalar("SELECT COUNT(*) FROM qz_qcc_customs_punish")
            .await,
        45
    );
}
on_all_backends!(
    query_paged_subject_over_budget_continues_next_day,
    paged_subject_over_budget_continues_next_day
);

async fn empty_success_is_no_result(which: Which) {
    let Some(q) = spawn_query(which, 100, DEMO_SUBJECTS).await else {
        return;
    };
    // The first subject (S1) gets a success code with no data; it has records otherwise.
    {
        let mut st = q.sim.state.lock().unwrap();
        st.set(Shuidi, S1, shuidi_records(2));
        st.set(Qcc, S1, qcc_records(1, 1));
        st.set(Xinshu, S1, vec![xinshu_record("示例贸易有限公司", S1)]);
        st.inject(Shuidi, "1");
        st.inject(Qcc, "200");
        st.inject(Xinshu, "0000");
    }
    for (job, p, code, spec) in [
        ("penalties", Shuidi, "1", "请求成功"),
        ("customs", Qcc, "200", "【有效请求】查询成功"),
        ("tax_blacklist", Xinshu, "0000", "查询成功"),
    ] {
        let o = q.run(job).await.unwrap();
        assert_eq!((o.found, o.no_result, o.calls), (0, 3, 3), "{job}: {o:?}");
        let name = p.name();
        let r = q
            .t
            .rows(&format!(
                "SELECT last_status, status_code, record_count, message FROM qz_query_subject WHERE provider = '{name}' AND subject_key = '{S1}'"
            ))
            .await;
        assert_eq!(
            r[0][..3],
            [
                Some("no_result".into()),
                Some(code.into()),
                Some("0".into())
            ],
            "{job}"
        );
        let msg = r[0][3].clone().unwrap();
        assert!(
            msg.starts_with(spec) && msg.contains("无数据"),
            "{job}: {msg}"
        );
        let led = q
            .t
            .rows(&format!(
                "SELECT status_code, action, billed FROM qz_query_ledger WHERE provider = '{name}' AND subject_key = '{S1}'"
            ))
            .await;
        assert_eq!(
            led,
            vec![vec![
                Some(code.into()),
                Some("no_result".into()),
                Some("1".into())
            ]],
            "{job}"
        );
        q.assert_ledger_matches(p).await;
    }
}
on_all_backends!(query_empty_success_is_no_result, empty_success_is_no_result);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_warns_when_max_pages_exceeds_the_budget() {
    // Budget 2 a day, max_pages 25 (default): a warning, not a failure.
    let q = spawn_query(Which::Sqlite, 2, DEMO_SUBJECTS).await.unwrap();
    let out = q.t.cli(&["check"], &[]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    for p in ["shuidi", "qcc"] {
        assert!(
            text.contains(&format!(
                "! {p}.max_pages: max_pages (25) 大于 daily_budget (2)"
            )),
            "{text}"
        );
    }
    assert!(text.contains("exceeds daily_budget (2)"), "{text}");
    assert!(!text.contains("xinshu.max_pages"), "{text}");
    let q = spawn_query(Which::Sqlite, 100, DEMO_SUBJECTS)
        .await
        .unwrap();
    let out = q.t.cli(&["check"], &[]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && !text.contains("max_pages"),
        "{text}"
    );
}

async fn kept_pages_survive_a_crash(which: Which) {
    let subjects = many_subjects(2);
    let Some(q) = spawn_query(which, 2, &subjects).await else {
        return;
    };
    let big = subjects[0].2.unwrap();
    q.sim
        .state
        .lock()
        .unwrap()
        .set(Shuidi, big, shuidi_records(45));
    let o = q.run("penalties").await.unwrap();
    assert_eq!((o.calls, o.partial), (2, 1), "{o:?}");
    // A crash right after page 3's answer was kept, before the result was stored: the page
    // is on disk as the run writes it.
    let last: Vec<Json> = shuidi_records(45)[40..].to_vec();
    q.t.app
        .db
        .execute_script(&format!(
            "INSERT INTO qz_query_page (provider, subject_key, page, job, search_key, page_size, total, calls, status_code, order_no, items_json, fetched_at) \
             VALUES ('shuidi', '{big}', 3, 'penalties', '{big}', 20, 45, 1, '1', 'ORDER-3', '{}', '{}')",
            Json::Array(last),
            qianzhi::timefmt::now_text()
        ))
        .await
        .unwrap();
    let app2 = q.restart().await;
    app2.query.clock.advance(chrono::Duration::days(1));
    let o = run_query_once(app2.query_app(), "penalties", &CancellationToken::new())
        .await
        .unwrap();
    // Nothing more to buy for the big subject: stored from its pages; the other one asked.
    assert_eq!(
        (o.calls, o.continued, o.found, o.no_result),
        (1, 1, 1, 1),
        "{o:?}"
    );
    let pages: Vec<String> = q
        .sim
        .state
        .lock()
        .unwrap()
        .calls_of(Shuidi)
        .iter()
        .filter(|c| c.param("keyword") == Some(big))
        .map(|c| c.param("pageIndex").unwrap().to_string())
        .collect();
    assert_eq!(pages, ["1", "2"]);
    let r = q
        .t
        .rows(&format!(
            "SELECT last_status, record_count, calls, order_no FROM qz_query_subject WHERE subject_key = '{big}'"
        ))
        .await;
    assert_eq!(
        r[0],
        vec![
            Some("found".into()),
            Some("45".into()),
            Some("3".into()),
            Some("ORDER-3".into())
        ]
    );
    let codes =
        q.t.rows(&format!(
            "SELECT punish_code FROM qz_shuidi_punish WHERE subject_key = '{big}' ORDER BY seq"
        ))
        .await;
    let want = shuidi_records(45);
    assert_eq!(codes.len(), 45);
    for (i, c) in codes.iter().enumerate() {
        assert_eq!(c[0].as_deref(), want[i]["PunishCode"].as_str());
    }
    q.assert_ledger_matches(Shuidi).await;
}
on_all_backends!(query_kept_pages_survive_a_crash, kept_pages_survive_a_crash);

/// `QIANZHI_QUERY__<NAME>__<KEY>` reaches one `[[query]]` entry, found by its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_reaches_a_query_by_its_name() {
    let q = spawn_query(Which::Sqlite, 100, DEMO_SUBJECTS)
        .await
        .unwrap();
    let out = q.t.cli(
        &["check"],
        &[("QIANZHI_QUERY__TAX_BLACKLIST__SUBJECTS", "no_such_view")],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("✗ query tax_blacklist:") && l.contains("no_such_view")),
        "{text}"
    );
    assert!(text.contains("✓ query penalties: subjects view"), "{text}");
    // Switched off by name, the penalties query asks Shuidi nothing; the others still run.
    let out =
        q.t.cli(&["once"], &[("QIANZHI_QUERY__PENALTIES__ENABLED", "false")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(q.sim_calls(Provider::Shuidi), 0);
    assert!(q.sim_calls(Provider::Qcc) > 0);
}
