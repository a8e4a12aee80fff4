//! End-to-end scenarios on SQLite, PostgreSQL and MySQL against the local simulator.

mod capture;
mod config;
mod contention;
mod gansu;
mod gdzw;
mod grants;
mod help;
mod helpers;
mod inflight;
mod lease;
mod odbc;
mod ops;
mod privacy;
mod query;
mod retry;
mod safety;
mod source;
mod tools;

use helpers::*;
use qianzhi::mapping::derive_row_guid;
use qianzhi::schema::sample::{GDZW_TYPES, Lit, set_field};
use serde_json::Value as Json;

const UNIT: &str = qianzhi::schema::sample::SAMPLE_UNIT;

async fn seven_types(which: Which) {
    let Some(t) = spawn_app(
        which,
        Spawn {
            types: &GDZW_TYPES,
            ..Default::default()
        },
    )
    .await
    else {
        return;
    };
    for dt in GDZW_TYPES {
        for id in 1..=3 {
            t.insert(
                dt,
                id,
                "I",
                &format!("2026-11-20 10:00:0{id}"),
                &t.sample(dt, id),
            )
            .await;
        }
        let mut changed = t.sample(dt, 1);
        set_field(&mut changed, "Remark", Lit::Text("已更新".into()));
        t.insert(dt, 1, "U", "2026-11-20 10:01:00", &changed).await;
        t.insert(dt, 2, "D", "2026-11-20 10:02:00", &t.sample(dt, 2))
            .await;
    }
    let mut bad = t.sample("accept", 9);
    set_field(
        &mut bad,
        "ApplyerPageCode",
        Lit::Text("610431198603210048".into()),
    );
    t.insert("accept", 9, "I", "2026-11-20 10:03:00", &bad)
        .await;

    let mut batches = Vec::new();
    for dt in GDZW_TYPES {
        let o = t.once(dt).await.unwrap();
        assert_eq!(o.delivered, 5, "{dt}: {o:?}");
        assert_eq!(o.batches.len(), 1, "{dt}");
        batches.push(o.batches[0].clone());
    }
    // Cd_Batch: unit + Beijing date + daily sequence from 00001, one per exchange.
    let day = today_beijing();
    let want: Vec<String> = (1..=7).map(|i| format!("{UNIT}{day}{i:05}")).collect();
    assert_eq!(batches, want);

    let schema = t.catalog.platform("gdzw").unwrap();
    for (n, dt) in GDZW_TYPES.iter().enumerate() {
        let got = t.accepted(dt);
        let ops: Vec<(&str, &str)> = got
            .iter()
            .map(|r| {
                (
                    r["RowGuid"].as_str().unwrap(),
                    r["Cd_Operation"].as_str().unwrap(),
                )
            })
            .collect();
        let g = |id: i64| derive_row_guid(dt, &id.to_string());
        let expect = [
            (g(1), "I"),
            (g(2), "I"),
            (g(3), "I"),
            (g(1), "U"),
            (g(2), "D"),
        ];
        let expect: Vec<(&str, &str)> = expect.iter().map(|(a, b)| (a.as_str(), *b)).collect();
        assert_eq!(ops, expect, "{dt}: operations and stable RowGuids");
        for (rec, id) in got.iter().zip([1, 2, 3, 1, 2]) {
            let mut sample = t.sample(dt, id);
            if rec["Cd_Operation"] == "U" {
                set_field(&mut sample, "Remark", Lit::Text("已更新".into()));
            }
            let obj = rec.as_object().unwrap();
            for (code, lit) in &sample {
                assert_eq!(
                    obj.get(code).cloned().unwrap_or(Json::Null),
                    expected_json(lit),
                    "{dt} id {id} field {code}"
                );
            }
            assert_eq!(rec["Cd_Batch"], Json::from(batches[n].clone()));
            assert_eq!(rec["ProDataOrgCode"], Json::from(UNIT));
            assert_eq!(rec["ProDataRegionCode"], Json::from("440100"));
            let cd_time = rec["Cd_Time"].as_str().unwrap();
            assert!(
                chrono::NaiveDateTime::parse_from_str(cd_time, "%Y-%m-%d %H:%M:%S").is_ok(),
                "{cd_time}"
            );
            // Exactly the sample fields, the pipeline's Cd_* fields, RowGuid and the unit's identity.
            let dtype = &schema.data_types[*dt];
            let extra = [
                "RowGuid",
                "Cd_Operation",
                "Cd_Time",
                "Cd_Batch",
                "ProDataRegionCode",
                "ProDataOrgCode",
                "ProDataOrgName",
                "SystemName",
            ];
            for k in obj.keys() {
                assert!(
                    sample.iter().any(|(c, _)| c == k) || extra.contains(&k.as_str()),
                    "{dt}: unexpected field {k}"
                );
                assert!(dtype.field(k).is_some(), "{dt}: {k} is not a spec field");
            }
        }
        // Typed values as the spec says.
        match *dt {
            "accept" => assert!(got[0]["TaskVersion"].is_i64()),
            "result" => assert!(got[0]["Charge"].is_f64()),
            "specialprocedure" => {
                assert!(got[0]["TBCXSX"].is_i64() && got[0]["Charge"].is_number())
            }
            _ => {}
        }
    }

    // Reconciliation rows and uploads match what was delivered.
    let recon = t.rows("SELECT cd_batch, table_name, cd_count, upload_state FROM qz_reconciliation ORDER BY cd_batch").await;
    assert_eq!(recon.len(), 7);
    let uploads = t.sim.state.lock().unwrap().reconciliations.clone();
    assert_eq!(uploads.len(), 7);
    for (i, r) in recon.iter().enumerate() {
        assert_eq!(r[0].as_deref(), Some(batches[i].as_str()));
        assert_eq!(r[2].as_deref(), Some("5"));
        assert_eq!(r[3].as_deref(), Some("ok"));
        let up = &uploads[i];
        assert_eq!(up["Cd_batch"], Json::from(batches[i].clone()));
        assert_eq!(up["Cd_count"], Json::from(5));
        assert_eq!(up["Table_name"].as_str(), r[1].as_deref());
    }
    assert_eq!(recon[0][1].as_deref(), Some("up_pro_accept_v3"));

    // The bad row is an error row naming field and rule, and was not sent.
    let errs = t
        .rows("SELECT job, source_key, field, rule, message, cd_batch FROM qz_error")
        .await;
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(
        errs[0][..4].to_vec(),
        vec![
            Some("accept".into()),
            Some("9".into()),
            Some("ApplyerPageCode".into()),
            Some("idcard_check".into())
        ]
    );
    assert!(
        !errs[0][4].as_ref().unwrap().contains("610431198603210048"),
        "ID numbers are masked in messages"
    );
    assert!(
        t.accepted("accept")
            .iter()
            .all(|r| r["RowGuid"] != derive_row_guid("accept", "9"))
    );
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM qz_batch WHERE state = 'done'")
            .await,
        7
    );
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM qz_outbox").await,
        0,
        "outbox emptied once batches are done"
    );

    // A second poll with nothing new reads nothing and sends nothing.
    let calls = t.sim.state.lock().unwrap().calls.len();
    let o = t.once("accept").await.unwrap();
    assert_eq!((o.rows_read, o.delivered), (0, 0));
    assert_eq!(t.sim.state.lock().unwrap().calls.len(), calls);
}
on_all_backends!(seven_types_reach_the_platform_exactly, seven_types);

async fn rejected_call_is_split(which: Which) {
    let Some(t) = spawn_app(which, Spawn::default()).await else {
        return;
    };
    for id in 1..=10 {
        t.insert(
            "accept",
            id,
            "I",
            "2026-11-20 10:00:00",
            &t.sample("accept", id),
        )
        .await;
    }
    {
        let mut st = t.sim.state.lock().unwrap();
        st.refuse_row_guids.insert(derive_row_guid("accept", "4"));
        st.refuse_row_guids.insert(derive_row_guid("accept", "7"));
    }
    let o = t.once("accept").await.unwrap();
    assert_eq!((o.delivered, o.refused_by_platform), (8, 2), "{o:?}");
    let got: Vec<String> = t
        .accepted("accept")
        .iter()
        .map(|r| r["RowGuid"].as_str().unwrap().to_string())
        .collect();
    let want: Vec<String> = [1, 2, 3, 5, 6, 8, 9, 10]
        .iter()
        .map(|i| derive_row_guid("accept", &i.to_string()))
        .collect();
    let mut sorted = got.clone();
    sorted.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(sorted, want_sorted);
    let errs = t
        .rows("SELECT source_key, rule, message, cd_batch FROM qz_error ORDER BY source_key")
        .await;
    assert_eq!(errs.len(), 2);
    for (e, key) in errs.iter().zip(["4", "7"]) {
        assert_eq!(e[0].as_deref(), Some(key));
        assert_eq!(e[1].as_deref(), Some("platform_rejected"));
        let msg = e[2].as_deref().unwrap();
        assert!(
            msg.contains("业务校验不通过") && msg.contains(&derive_row_guid("accept", key)),
            "{msg}"
        );
        assert_eq!(e[3].as_deref(), Some(o.batches[0].as_str()));
    }
    let b = t
        .rows("SELECT delivered_count, rejected_count FROM qz_batch")
        .await;
    assert_eq!(b[0], vec![Some("8".into()), Some("2".into())]);
    let up = t.sim.state.lock().unwrap().reconciliations.clone();
    assert_eq!(up[0]["Cd_count"], Json::from(8));
}
on_all_backends!(
    rejected_call_is_split_and_only_refused_records_fail,
    rejected_call_is_split
);

async fn calls_stay_below_100(which: Which) {
    let Some(t) = spawn_app(which, Spawn::default()).await else {
        return;
    };
    t.insert_many("accept", 250).await;
    let o = t.once("accept").await.unwrap();
    assert_eq!(o.delivered, 250);
    if which.native() == Which::Postgres {
        // Migration 4 (optional on servers without lz4; the test server has it).
        let cols = t
            .rows(
                "SELECT attname::text, attcompression::text, attstorage::text FROM pg_attribute \
                 WHERE attrelid = 'qz_outbox'::regclass AND attname IN ('body', 'records') ORDER BY attname",
            )
            .await;
        let want = |c: &str| vec![Some(c.to_string()), Some("l".into()), Some("x".into())];
        assert_eq!(cols, vec![want("body"), want("records")]);
    }
    let st = t.sim.state.lock().unwrap();
    let sizes: Vec<usize> = st
        .calls
        .iter()
        .filter(|c| c.data_type == "accept")
        .map(|c| serde_json::from_str::<Vec<Json>>(&c.body).unwrap().len())
        .collect();
    // The three calls are in flight together and may arrive in any order.
    let mut sizes = sizes;
    sizes.sort_unstable();
    assert_eq!(sizes, vec![52, 99, 99]);
    // One Cd_Batch for the whole exchange, in every call.
    let batches: std::collections::BTreeSet<String> = st
        .accepted_of("accept")
        .iter()
        .map(|r| r["Cd_Batch"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(batches.len(), 1);
}
on_all_backends!(batch_calls_stay_below_100_records, calls_stay_below_100);

async fn retry_then_deliver(which: Which) {
    let Some(t) = spawn_app(which, Spawn::default()).await else {
        return;
    };
    t.insert(
        "accept",
        1,
        "I",
        "2026-11-20 10:00:00",
        &t.sample("accept", 1),
    )
    .await;
    t.sim
        .state
        .lock()
        .unwrap()
        .fail_next
        .extend([503, 502, 500]);
    let o = t.once("accept").await.unwrap();
    assert_eq!(o.delivered, 1);
    let st = t.sim.state.lock().unwrap();
    let statuses: Vec<u16> = st.calls.iter().map(|c| c.status).collect();
    assert_eq!(statuses[..4], [503, 502, 500, 200]);
    // The resent call is the same bytes.
    assert_eq!(st.calls[0].body, st.calls[3].body);
}
on_all_backends!(retryable_failures_are_resent_unchanged, retry_then_deliver);

async fn fatal_keeps_outbox(which: Which) {
    let Some(t) = spawn_app(
        which,
        Spawn {
            client_token: "wrong-token-x1",
            ..Default::default()
        },
    )
    .await
    else {
        return;
    };
    t.insert(
        "accept",
        1,
        "I",
        "2026-11-20 10:00:00",
        &t.sample("accept", 1),
    )
    .await;
    let err = t.once("accept").await.unwrap_err();
    let text = format!("{err:#}");
    assert!(
        err.downcast_ref::<qianzhi::pipeline::JobStopped>()
            .is_some(),
        "{text}"
    );
    assert!(
        !text.contains("wrong-token-x1") && !text.contains(TOKEN),
        "no token in errors: {text}"
    );
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM qz_batch WHERE state = 'pending'")
            .await,
        1
    );
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM qz_outbox WHERE state = 'pending'")
            .await,
        1
    );
    let last = t
        .rows("SELECT last_error FROM qz_cursor WHERE job = 'accept'")
        .await;
    let last = last[0][0].clone().unwrap();
    assert!(
        last.contains("401") && !last.contains("wrong-token-x1"),
        "{last}"
    );
    let pending_batch = t.rows("SELECT cd_batch FROM qz_batch").await[0][0]
        .clone()
        .unwrap();

    // Fix the token: the same Cd_Batch goes out, nothing new is numbered.
    std::fs::write(t.dir.path().join("token"), TOKEN).unwrap();
    let fixed = qianzhi::pipeline::App::new(qianzhi::tools::config_from_str(&t.cfg_text).unwrap())
        .await
        .unwrap();
    let o = qianzhi::pipeline::run_once(&fixed, "accept", &Default::default(), &Default::default())
        .await
        .unwrap();
    assert_eq!(o.batches, vec![pending_batch.clone()]);
    assert_eq!(
        t.accepted("accept")[0]["Cd_Batch"],
        Json::from(pending_batch)
    );
    assert_eq!(fixed.db.todays_last_seq(UNIT).await.unwrap(), 1);
}
on_all_backends!(fatal_answer_stops_job_and_keeps_outbox, fatal_keeps_outbox);

async fn errors_resolve(which: Which) {
    let Some(t) = spawn_app(which, Spawn::default()).await else {
        return;
    };
    let mut bad = t.sample("accept", 5);
    set_field(&mut bad, "ApplyType", Lit::Text("9".into()));
    t.insert("accept", 5, "I", "2026-11-20 10:00:00", &bad)
        .await;
    t.insert(
        "accept",
        6,
        "I",
        "2026-11-20 10:00:01",
        &t.sample("accept", 6),
    )
    .await;
    let o = t.once("accept").await.unwrap();
    assert_eq!((o.delivered, o.invalid_rows), (1, 1));
    let open = t
        .rows("SELECT field, rule, resolved_at FROM qz_error")
        .await;
    assert_eq!(
        open,
        vec![vec![
            Some("ApplyType".into()),
            Some("code_set".into()),
            None
        ]]
    );
    // The DBA fixes the row; its next change is delivered and the error row is resolved.
    t.insert(
        "accept",
        5,
        "U",
        "2026-11-20 11:00:00",
        &t.sample("accept", 5),
    )
    .await;
    let o = t.once("accept").await.unwrap();
    assert_eq!(o.delivered, 1);
    let rows = t
        .rows("SELECT resolved_at, resolved_by FROM qz_error")
        .await;
    assert!(rows[0][0].is_some(), "{rows:?}");
    assert_eq!(rows[0][1].as_deref(), Some(o.batches[0].as_str()));
}
on_all_backends!(
    error_rows_resolve_when_a_later_version_is_delivered,
    errors_resolve
);

async fn settle_lag_holds_back_fresh_rows(which: Which) {
    let Some(t) = spawn_app(
        which,
        Spawn {
            job_extra: "",
            edit: &|s| s.replace("settle_lag = \"0s\"", "settle_lag = \"1h\""),
            ..Default::default()
        },
    )
    .await
    else {
        return;
    };
    let now = (chrono::Utc::now() + chrono::Duration::hours(8))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    t.insert(
        "accept",
        1,
        "I",
        "2026-11-20 10:00:00",
        &t.sample("accept", 1),
    )
    .await;
    t.insert("accept", 2, "I", &now, &t.sample("accept", 2))
        .await;
    let o = t.once("accept").await.unwrap();
    assert_eq!((o.rows_read, o.delivered), (1, 1));
    let pos = t.rows("SELECT position FROM qz_cursor").await[0][0]
        .clone()
        .unwrap();
    assert!(pos.contains("2026-11-20"), "{pos}");
}
on_all_backends!(
    settle_lag_leaves_recent_rows_for_later,
    settle_lag_holds_back_fresh_rows
);

async fn crash_after_outbox_commit(which: Which) {
    // Every acknowledged call recorded at once, so a crash resends nothing already acked.
    // One call in flight, so the crash after the first answer leaves the second call unsent
    // (with several in flight, the calls on the wire are resent too: see inflight.rs).
    let Some(t) = spawn_app(
        which,
        Spawn {
            edit: &|s| {
                in_flight(1)(s.replace(
                    "retry_max = \"1s\"",
                    "retry_max = \"1s\"\nack_every_calls = 1",
                ))
            },
            ..Default::default()
        },
    )
    .await
    else {
        return;
    };
    t.insert_many("accept", 150).await;

    // 1. Killed right after the outbox commit: nothing sent yet.
    let out = t.cli(&["once"], &[("QIANZHI_FAILPOINT", "after-outbox-commit")]);
    assert_eq!(
        out.status.code(),
        Some(86),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(t.sim.state.lock().unwrap().accepted_count, 0);
    // The killed process's lease runs out before the next one can take the job.
    t.wait_lease_expired("accept").await;
    let stored: Vec<String> = t
        .rows("SELECT body FROM qz_outbox ORDER BY call_no")
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    assert_eq!(stored.len(), 2, "two calls: 99 + 51 records");
    for (body, n) in stored.iter().zip([99, 51]) {
        assert_eq!(serde_json::from_str::<Vec<Json>>(body).unwrap().len(), n);
    }
    let batch = t.rows("SELECT cd_batch FROM qz_batch").await[0][0]
        .clone()
        .unwrap();

    // 2. Next process: killed after the first call was acknowledged.
    let out = t.cli(&["once"], &[("QIANZHI_FAILPOINT", "after-first-call")]);
    assert_eq!(
        out.status.code(),
        Some(86),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(t.sim.state.lock().unwrap().accepted_count, 99);
    t.wait_lease_expired("accept").await;

    // 3. A clean run finishes the rest under the same Cd_Batch, byte for byte.
    let out = t.cli(&["once"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    {
        let st = t.sim.state.lock().unwrap();
        let bodies: Vec<&str> = st
            .calls
            .iter()
            .filter(|c| c.data_type == "accept" && c.status == 200)
            .map(|c| c.body.as_str())
            .collect();
        assert_eq!(bodies.len(), 2);
        assert_eq!(bodies[0], stored[0], "first call replayed byte for byte");
        assert_eq!(bodies[1], stored[1], "second call replayed byte for byte");
        let accepted = st.accepted_of("accept");
        assert_eq!(accepted.len(), 150, "nothing lost, nothing twice");
        let guids: std::collections::HashSet<&str> = accepted
            .iter()
            .map(|r| r["RowGuid"].as_str().unwrap())
            .collect();
        assert_eq!(guids.len(), 150);
        assert!(accepted.iter().all(|r| r["Cd_Batch"] == batch));
    }
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM qz_batch").await,
        1,
        "no Cd_Batch reused or added"
    );
    assert_eq!(
        t.rows("SELECT last_seq FROM qz_batch_seq").await[0][0].as_deref(),
        Some("1")
    );
    assert_eq!(
        t.rows("SELECT cd_count FROM qz_reconciliation").await[0][0].as_deref(),
        Some("150")
    );
}
on_all_backends!(
    crash_after_outbox_commit_resends_same_batch,
    crash_after_outbox_commit
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_prints_records_and_changes_nothing() {
    let t = spawn_app(Which::Sqlite, Spawn::default()).await.unwrap();
    for id in 1..=3 {
        t.insert(
            "accept",
            id,
            "I",
            "2026-11-20 10:00:00",
            &t.sample("accept", id),
        )
        .await;
    }
    let out = t.cli(&["once", "--dry-run"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Json> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines[0]["RowGuid"],
        Json::from(derive_row_guid("accept", "1"))
    );
    assert_eq!(lines[0]["Cd_Operation"], Json::from("I"));
    assert_eq!(t.scalar("SELECT COUNT(*) FROM qz_batch").await, 0);
    assert_eq!(t.scalar("SELECT COUNT(*) FROM qz_cursor").await, 0);
    assert_eq!(t.sim.state.lock().unwrap().calls.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_every_problem() {
    let t = spawn_app(Which::Sqlite, Spawn::default()).await.unwrap();
    let ok = t.cli(&["check"], &[]);
    assert!(
        ok.status.success(),
        "{}{}{:?}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr),
        ok.status
    );
    // A mapping to a missing column, and a required field nobody supplies.
    let broken = t.cfg_text.replace(
        "seq_column = \"change_id\"",
        "seq_column = \"change_id\"\n[job.map]\nTaskName = \"no_such_column\"",
    );
    let broken = broken.replace("interval = \"30s\"", "interval = \"soon\"");
    std::fs::write(&t.cfg_path, &broken).unwrap();
    let out = t.cli(&["check"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(text.contains("interval"), "{text}");
    assert!(text.contains("no_such_column"), "{text}");
    // The accept table read as process data: process's required fields have no supplier.
    let unsupplied = t
        .cfg_text
        .replace("data_type = \"accept\"", "data_type = \"process\"");
    std::fs::write(&t.cfg_path, &unsupplied).unwrap();
    let out = t.cli(&["check"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && text.contains("EventName") && text.contains("ProcessName"),
        "{text}"
    );
    assert!(!text.contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_reports_jobs_without_secrets() {
    let t = spawn_app(Which::Sqlite, Spawn::default()).await.unwrap();
    t.insert(
        "accept",
        1,
        "I",
        "2026-11-20 10:00:00",
        &t.sample("accept", 1),
    )
    .await;
    let mut bad = t.sample("accept", 2);
    set_field(&mut bad, "TaskName", Lit::Null);
    t.insert("accept", 2, "I", "2026-11-20 10:00:01", &bad)
        .await;
    t.insert(
        "accept",
        3,
        "I",
        "2026-11-20 10:00:02",
        &t.sample("accept", 3),
    )
    .await;
    let out = t.cli(&["once"], &[]);
    assert!(out.status.success());
    t.insert(
        "accept",
        4,
        "I",
        "2026-11-20 10:00:03",
        &t.sample("accept", 4),
    )
    .await;
    let out = t.cli(&["status", "--json"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains(TOKEN));
    let s: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(s["todays_last_cd_batch_seq"], Json::from(1));
    let j = &s["jobs"][0];
    assert_eq!(j["job"], "accept");
    assert_eq!(j["rows_waiting"], Json::from(1));
    assert_eq!(j["pending_batches"], Json::from(0));
    assert_eq!(
        j["open_errors_by_rule"],
        serde_json::json!({ "required": 1 })
    );
    assert!(j["last_success_at"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_never_logged_and_ids_masked() {
    let t = spawn_app(
        Which::Sqlite,
        Spawn {
            client_token: "sekret-tok-777",
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut f = t.sample("accept", 1);
    set_field(
        &mut f,
        "ApplyerPageCode",
        Lit::Text("11010519491231002Y".into()),
    );
    t.insert("accept", 1, "I", "2026-11-20 10:00:00", &f).await;
    t.insert(
        "accept",
        2,
        "I",
        "2026-11-20 10:00:01",
        &t.sample("accept", 2),
    )
    .await;
    let out = t.cli(&["once"], &[("RUST_LOG", "trace")]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "wrong token is fatal");
    assert!(!all.contains("sekret-tok-777"), "token leaked");
    assert!(
        !all.contains("11010519491231002"),
        "ID number leaked: {all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_stops_on_sigterm() {
    let t = spawn_app(Which::Sqlite, Spawn::default()).await.unwrap();
    t.insert(
        "accept",
        1,
        "I",
        "2026-11-20 10:00:00",
        &t.sample("accept", 1),
    )
    .await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_qianzhi"))
        .arg("--config")
        .arg(&t.cfg_path)
        .arg("run")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while t.sim.state.lock().unwrap().accepted_count == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "daemon delivered nothing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let start = std::time::Instant::now();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_runs_a_cron_job_every_second_and_stops_on_sigterm() {
    // Every second (Beijing time): the first row goes out at a tick, a row inserted later goes
    // out at a later tick, and SIGTERM ends `run` promptly with exit 0.
    let edit = |s: String| s.replace("interval = \"30s\"", "schedule = \"* * * * * *\"");
    let t = spawn_app(
        Which::Sqlite,
        Spawn {
            edit: &edit,
            ..Spawn::default()
        },
    )
    .await
    .unwrap();
    assert!(t.cfg_text.contains("schedule = \"* * * * * *\""));
    let ok = t.cli(&["check"], &[]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    t.insert(
        "accept",
        1,
        "I",
        "2026-11-20 10:00:00",
        &t.sample("accept", 1),
    )
    .await;
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_qianzhi"))
        .arg("--config")
        .arg(&t.cfg_path)
        .arg("run")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let wait_for = async |n: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while t.sim.state.lock().unwrap().accepted_count < n {
            assert!(
                std::time::Instant::now() < deadline,
                "the cron job delivered fewer than {n} rows"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    wait_for(1).await;
    t.insert(
        "accept",
        2,
        "I",
        "2026-11-20 10:00:01",
        &t.sample("accept", 2),
    )
    .await;
    wait_for(2).await;
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let start = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?} {err}", out.status);
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
    assert!(!err.contains("ERROR"), "{err}");
    assert!(err.contains("all jobs stopped"), "{err}");
    let st = t.sim.state.lock().unwrap();
    assert_eq!(st.accepted_of("accept").len(), 2, "each row sent once");
}

async fn crash_before_ack_flush(which: Which) {
    // Default ack_every_calls (10): a crash after a call but before its ack is recorded
    // sends that call again, with the same Cd_Batch and the same bytes, and nothing else.
    // One call in flight (inflight.rs crashes with several).
    let one = in_flight(1);
    let spawn = Spawn {
        edit: &one,
        ..Default::default()
    };
    let Some(t) = spawn_app(which, spawn).await else {
        return;
    };
    t.insert_many("accept", 150).await;
    let out = t.cli(&["once"], &[("QIANZHI_FAILPOINT", "after-first-call")]);
    assert_eq!(
        out.status.code(),
        Some(86),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.wait_lease_expired("accept").await;
    let out = t.cli(&["once"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = t.sim.state.lock().unwrap();
    let bodies: Vec<&str> = st
        .calls
        .iter()
        .filter(|c| c.data_type == "accept" && c.status == 200)
        .map(|c| c.body.as_str())
        .collect();
    assert_eq!(bodies.len(), 3);
    assert_eq!(
        bodies[0], bodies[1],
        "the unrecorded call is resent byte for byte"
    );
    let accepted = st.accepted_of("accept");
    let guids: std::collections::HashSet<&str> = accepted
        .iter()
        .map(|r| r["RowGuid"].as_str().unwrap())
        .collect();
    assert_eq!(guids.len(), 150, "nothing lost");
    let batches: std::collections::HashSet<String> = st
        .accepted_of("accept")
        .iter()
        .map(|r| r["Cd_Batch"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(batches.len(), 1);
}
on_all_backends!(
    crash_before_ack_flush_resends_identical_call,
    crash_before_ack_flush
);

async fn crash_during_split(which: Which) {
    let Some(t) = spawn_app(which, Spawn::default()).await else {
        return;
    };
    for id in 1..=10 {
        t.insert(
            "accept",
            id,
            "I",
            "2026-11-20 10:00:00",
            &t.sample("accept", id),
        )
        .await;
    }
    let refused = derive_row_guid("accept", "7");
    t.sim
        .state
        .lock()
        .unwrap()
        .refuse_row_guids
        .insert(refused.clone());
    // Killed after the first half of the refused call went through.
    let out = t.cli(&["once"], &[("QIANZHI_FAILPOINT", "after-split-progress")]);
    assert_eq!(
        out.status.code(),
        Some(86),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = t.sim.state.lock().unwrap().accepted_count;
    assert_eq!(first, 5, "records 1-5 acked before the crash");
    t.wait_lease_expired("accept").await;
    let out = t.cli(&["once"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let accepted = t.accepted("accept");
    let guids: Vec<&str> = accepted
        .iter()
        .map(|r| r["RowGuid"].as_str().unwrap())
        .collect();
    let unique: std::collections::HashSet<&str> = guids.iter().copied().collect();
    assert_eq!(
        guids.len(),
        9,
        "no record sent twice after the resume: {guids:?}"
    );
    assert_eq!(unique.len(), 9);
    assert!(!unique.contains(refused.as_str()));
    let errs = t.rows("SELECT source_key, rule FROM qz_error").await;
    assert_eq!(
        errs,
        vec![vec![Some("7".into()), Some("platform_rejected".into())]]
    );
    assert_eq!(
        t.rows("SELECT cd_count FROM qz_reconciliation").await[0][0].as_deref(),
        Some("9")
    );
}
on_all_backends!(
    crash_during_split_resumes_without_repeats,
    crash_during_split
);

async fn errors_within_one_page(which: Which) {
    let Some(t) = spawn_app(which, Spawn::default()).await else {
        return;
    };
    let mut bad = t.sample("accept", 1);
    set_field(&mut bad, "ApplyType", Lit::Text("9".into()));
    // Key 1: bad, then fixed in the same page. Key 2: good, then broken in the same page.
    t.insert("accept", 1, "I", "2026-11-20 10:00:00", &bad)
        .await;
    t.insert(
        "accept",
        1,
        "U",
        "2026-11-20 10:00:01",
        &t.sample("accept", 1),
    )
    .await;
    t.insert(
        "accept",
        2,
        "I",
        "2026-11-20 10:00:02",
        &t.sample("accept", 2),
    )
    .await;
    let mut bad2 = t.sample("accept", 2);
    set_field(&mut bad2, "ApplyType", Lit::Text("9".into()));
    t.insert("accept", 2, "U", "2026-11-20 10:00:03", &bad2)
        .await;
    let o = t.once("accept").await.unwrap();
    assert_eq!((o.delivered, o.invalid_rows), (2, 2));
    let rows = t
        .rows("SELECT source_key, resolved_by FROM qz_error ORDER BY source_key")
        .await;
    assert_eq!(
        rows,
        vec![
            vec![Some("1".into()), Some(o.batches[0].clone())],
            vec![Some("2".into()), None]
        ]
    );
}
on_all_backends!(
    errors_within_one_page_resolve_by_order,
    errors_within_one_page
);

/// Rules the spec words as conditions on other fields (表3–表15) and formats it states in words:
/// rows that break them become error rows naming field and rule; rows where the condition does
/// not hold, or that satisfy it, reach the platform.
async fn conditional_rules(which: Which) {
    let Some(t) = spawn_app(
        which,
        Spawn {
            types: &["accept", "material", "specialprocedure"],
            ..Default::default()
        },
    )
    .await
    else {
        return;
    };
    let row = |dt: &str, id: i64, changes: &[(&str, Lit)]| {
        let mut f = t.sample(dt, id);
        for (code, v) in changes {
            set_field(&mut f, code, v.clone());
        }
        f
    };
    let text = |s: &str| Lit::Text(s.into());
    // (data type, key, changes, the error expected as (field, rule, words in the message)).
    type Case<'a> = (
        &'a str,
        i64,
        Vec<(&'a str, Lit)>,
        Option<(&'a str, &'a str, &'a str)>,
    );
    let cases: Vec<Case> = vec![
        // A legal-person applicant with its 法定代表人, and one without.
        ("accept", 1, vec![("ApplyerType", text("2"))], None),
        (
            "accept",
            2,
            vec![("ApplyerType", text("3")), ("Legal", Lit::Null)],
            Some((
                "Legal",
                "required_if",
                "ApplyerType（申请人类型） 为 '3'（事业法人）",
            )),
        ),
        // A natural person needs no 法定代表人.
        (
            "accept",
            3,
            vec![("ApplyerType", text("1")), ("Legal", Lit::Null)],
            None,
        ),
        // 不予受理 without a reason; 审核通过 needs none.
        (
            "accept",
            4,
            vec![("SLZTDM", text("4")), ("BSLYY", Lit::Null)],
            Some((
                "BSLYY",
                "required_if",
                "SLZTDM（受理状态代码） 为 '4'（不予受理）",
            )),
        ),
        (
            "accept",
            5,
            vec![("SLZTDM", text("1")), ("BSLYY", Lit::Null)],
            None,
        ),
        // Business in Shenzhen reported by a Guangzhou unit: the target department is required.
        (
            "accept",
            6,
            vec![("RegionCode", text("440300")), ("TargetOrgName", Lit::Null)],
            Some(("TargetOrgName", "required_if", "'440300' 不在")),
        ),
        (
            "accept",
            7,
            vec![("RegionCode", text("440106")), ("TargetOrgName", Lit::Null)],
            None,
        ),
        // Formats in words: ProjectNo's structure, a 12-digit region code is fine.
        (
            "accept",
            8,
            vec![(
                "ProjectNo",
                text("11440100MB2C12345X444010000100020261120001"),
            )],
            Some(("ProjectNo", "project_no", "共 42 个字符，应为 43")),
        ),
        (
            "accept",
            9,
            vec![("RegionCode", text("440106001000"))],
            None,
        ),
        // An uploaded file needs its URL; a paper one does not.
        (
            "material",
            1,
            vec![("GetType", text("2")), ("GetMaterialURL", Lit::Null)],
            Some((
                "GetMaterialURL",
                "required_if",
                "GetType（收取方式） 为 '2'（上传电子文件）",
            )),
        ),
        (
            "material",
            2,
            vec![("GetType", text("1")), ("GetMaterialURL", Lit::Null)],
            None,
        ),
        (
            "material",
            3,
            vec![
                ("GetType", text("3")),
                ("GetMaterialURL", text("zzk/licence/1")),
            ],
            Some(("GetMaterialURL", "url", "不是完整的 URL")),
        ),
        // A result needs its end time; a charge needs its currency, in letters.
        (
            "specialprocedure",
            1,
            vec![("Result", text("准予延长")), ("EndTime", Lit::Null)],
            Some(("EndTime", "required_if", "Result（特别程序结果） 有值")),
        ),
        (
            "specialprocedure",
            2,
            vec![("Result", Lit::Null), ("EndTime", Lit::Null)],
            None,
        ),
        (
            "specialprocedure",
            3,
            vec![("Charge", Lit::Num(40.0)), ("MonetaryUnitCode", Lit::Null)],
            Some(("MonetaryUnitCode", "required_if", "不为 0")),
        ),
        (
            "specialprocedure",
            4,
            vec![("Charge", Lit::Num(0.0)), ("MonetaryUnitCode", Lit::Null)],
            None,
        ),
        (
            "specialprocedure",
            5,
            vec![("MonetaryUnitCode", text("156"))],
            Some((
                "MonetaryUnitCode",
                "currency",
                "'156' 不是 GB/T 12406 的三位大写字母货币代码",
            )),
        ),
    ];
    for (dt, id, changes, _) in &cases {
        t.insert(dt, *id, "I", "2026-11-20 10:00:00", &row(dt, *id, changes))
            .await;
    }
    for dt in ["accept", "material", "specialprocedure"] {
        let o = t.once(dt).await.unwrap();
        let (bad, good): (Vec<_>, Vec<_>) = cases
            .iter()
            .filter(|c| c.0 == dt)
            .partition(|c| c.3.is_some());
        assert_eq!(
            (o.delivered, o.invalid_rows),
            (good.len(), bad.len()),
            "{dt}: {o:?}"
        );
        // Exactly the valid rows reached the platform, as they were written.
        let got = t.accepted(dt);
        let guids: Vec<&str> = got.iter().map(|r| r["RowGuid"].as_str().unwrap()).collect();
        let want: Vec<String> = good
            .iter()
            .map(|c| derive_row_guid(dt, &c.1.to_string()))
            .collect();
        assert_eq!(guids, want, "{dt}");
        for (rec, c) in got.iter().zip(&good) {
            for (code, lit) in row(dt, c.1, &c.2) {
                let (got, want) = (
                    rec.get(&code).cloned().unwrap_or(Json::Null),
                    expected_json(&lit),
                );
                // SQLite hands a DECIMAL 0.0 back as the integer 0: the same number.
                if !(got.is_number() && got.as_f64() == want.as_f64()) {
                    assert_eq!(got, want, "{dt} {} {code}", c.1);
                }
            }
        }
        // Each bad row is one error row naming its field and rule.
        let errs = t
            .rows(&format!(
                "SELECT source_key, field, rule, message FROM qz_error WHERE job = '{dt}' ORDER BY id"
            ))
            .await;
        assert_eq!(errs.len(), bad.len(), "{dt}: {errs:?}");
        for (e, c) in errs.iter().zip(&bad) {
            let (field, rule, words) = c.3.unwrap();
            assert_eq!(
                e[..3].to_vec(),
                vec![Some(c.1.to_string()), Some(field.into()), Some(rule.into())],
                "{dt}"
            );
            let message = e[3].as_deref().unwrap();
            assert!(
                message.contains(words),
                "{dt} {}: '{words}' in '{message}'",
                c.1
            );
        }
    }
}
on_all_backends!(
    conditional_rules_become_error_rows_and_valid_rows_are_delivered,
    conditional_rules
);

/// Posts `body` to the simulator's accept batchSave (or save) with a valid signature and
/// returns (errCode, errMsg).
async fn post_to_sim(
    sim: &qianzhi::tools::simulate::Simulator,
    op: &str,
    body: Vec<u8>,
) -> (String, String) {
    let ts = chrono::Utc::now().timestamp().to_string();
    let nonce = uuid::Uuid::new_v4().to_string();
    let sig = qianzhi::upstream::gdzw::sign(&ts, &sim.cfg.token, &nonce);
    let url = format!("{}/uppro/accept/{op}", sim.api_root());
    qianzhi::upstream::init_tls();
    let answer: Json = reqwest::Client::new()
        .post(url)
        .header("x-tif-paasid", sim.cfg.paasid.as_str())
        .header("x-tif-timestamp", ts)
        .header("x-tif-nonce", nonce)
        .header("x-tif-signature", sig)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        answer["errCode"].as_str().unwrap_or_default().to_string(),
        answer["errMsg"].as_str().unwrap_or_default().to_string(),
    )
}

/// The simulator reads records straight into the data type's field order; it must stay as
/// strict as the platform: unknown or repeated fields, wrong JSON types, bodies that are not
/// UTF-8 JSON and oversized calls are refused with a message naming the problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_refuses_what_the_platform_would() {
    let sim = qianzhi::tools::simulate::start(Default::default(), "127.0.0.1:0")
        .await
        .unwrap();
    // A valid accept record, shared with the validation unit tests.
    let good: Json = serde_json::from_str(include_str!("../fixtures/accept_record.json")).unwrap();
    let with = |k: &str, v: Json| {
        let mut r = good.clone();
        r[k] = v;
        r
    };
    let arr = |records: &[Json]| serde_json::to_vec(records).unwrap();

    assert_eq!(
        post_to_sim(&sim, "batchSave", arr(std::slice::from_ref(&good)))
            .await
            .0,
        "0"
    );
    assert_eq!(
        post_to_sim(&sim, "save", serde_json::to_vec(&good).unwrap())
            .await
            .0,
        "0"
    );
    // An escaped key is the same field name.
    let escaped =
        arr(std::slice::from_ref(&good)).replace_str("\"TaskName\"", "\"Task\\u004eame\"");
    assert_eq!(post_to_sim(&sim, "batchSave", escaped).await.0, "0");

    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            arr(&[good.clone(), with("Foo", "x".into())]),
            "第 2 条记录含有未定义的字段 Foo",
        ),
        (
            arr(std::slice::from_ref(&good))
                .replace_str("\"TaskName\"", "\"TaskName\":\"x\",\"TaskName\""),
            "第 1 条记录的字段 TaskName 出现了不止一次",
        ),
        (
            arr(&[with("TaskVersion", "1".into())]),
            "字段 TaskVersion 的 JSON 类型不对",
        ),
        (
            arr(&[with("ApplyDate", "2019-02-30 10:00:00".into())]),
            "ApplyDate",
        ),
        (
            arr(&[with("ApplyerPageCode", "610431198603210048".into())]),
            "身份证",
        ),
        (
            arr(&[with("SLZTDM", "4".into())]),
            "BSLYY（不受理原因） 没有值，而 SLZTDM（受理状态代码） 为 '4'（不予受理） 时此项必填",
        ),
        (
            arr(&[with(
                "RowGuid",
                "1111-1111-1111-111111111111111111111111d".into(),
            )]),
            "不是 GB/T 17969.8-2010 规定的 UUID",
        ),
        (
            arr(&[
                good.clone(),
                with("Cd_Batch", "11620000MB199916XB2019062100002".into()),
            ]),
            "Cd_Batch 不一致",
        ),
        (b"[{\"RowGuid\": \"\xff\"}]".to_vec(), "不是规范要求的 JSON"),
        (b"[{\"RowGuid\": 1}".to_vec(), "不是规范要求的 JSON"),
        (serde_json::to_vec(&good).unwrap(), "不是规范要求的 JSON"),
        (
            arr(&vec![good.clone(); 100]),
            "每次应提交 1 至 99 条记录，实为 100 条",
        ),
        (b"[]".to_vec(), "实为 0 条"),
    ];
    for (body, want) in cases {
        let (code, msg) = post_to_sim(&sim, "batchSave", body).await;
        assert_eq!(code, "1", "{want}: {msg}");
        assert!(msg.contains(want), "want '{want}' in '{msg}'");
    }
    let st = sim.state.lock().unwrap();
    assert_eq!(st.accepted_count, 3);
    assert_eq!(st.accepted_of("accept")[0], good);
}

trait ReplaceStr {
    fn replace_str(self, from: &str, to: &str) -> Vec<u8>;
}

impl ReplaceStr for Vec<u8> {
    fn replace_str(self, from: &str, to: &str) -> Vec<u8> {
        String::from_utf8(self)
            .unwrap()
            .replacen(from, to, 1)
            .into_bytes()
    }
}
