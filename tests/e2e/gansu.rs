//! Gansu credit platform end to end: change table -> SM4 envelope -> simulator, with the
//! platform's batch numbers written back, error rows, and a fatal Authorization.

use super::helpers::*;
use crate::on_all_backends;
use qianzhi::pipeline::JobStopped;
use qianzhi::schema::sample::{Lit, set_field};
use serde_json::Value as Json;

const JOB: &str = "cclw_jjl";
const RESOURCE: &str = "00041759";
const CODES: [&str; 8] = [
    "xy10101001",
    "xy10101002",
    "xy501001",
    "yx501002",
    "xy501003",
    "xy501004",
    "xy501005",
    "xy501006",
];

fn gansu(settings: &'static str) -> Spawn<'static> {
    Spawn {
        types: &[],
        gansu: Some(GansuSpawn {
            settings,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Asserts the simulator received exactly these samples (by id), field by field.
fn assert_records(t: &TestApp, got: &[Json], want: &[Vec<(String, Lit)>]) {
    assert_eq!(got.len(), want.len(), "{got:?}");
    for (rec, sample) in got.iter().zip(want) {
        let obj = rec.as_object().unwrap();
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        assert_eq!(
            keys, CODES,
            "every field code of 00041759, in the spec's order, nothing else"
        );
        for (code, lit) in sample {
            assert_eq!(obj[code], expected_json(lit), "field {code}");
        }
    }
    let _ = t;
}

async fn changes_reach_gansu(which: Which) {
    // One call in flight: the receipts below are compared with the simulator's in the order
    // the calls arrived (tests/e2e/inflight.rs covers several in flight).
    let one = in_flight(1);
    let spawn = Spawn {
        edit: &one,
        ..gansu("max_records_per_call = 2")
    };
    let Some(t) = spawn_app(which, spawn).await else {
        return;
    };
    let mut samples = Vec::new();
    for id in 1..=4 {
        let s = t.gansu_sample(JOB, id);
        t.insert(JOB, id, "I", &format!("2026-11-20 10:00:0{id}"), &s)
            .await;
        samples.push(s);
    }
    let mut changed = t.gansu_sample(JOB, 1);
    set_field(
        &mut changed,
        "xy10101001",
        Lit::Text("甘肃某物流有限公司（更名后）".into()),
    );
    set_field(&mut changed, "yx501002", Lit::Num(2048.5));
    t.insert(JOB, 1, "U", "2026-11-20 10:01:00", &changed).await;
    samples.push(changed);
    t.insert(JOB, 2, "D", "2026-11-20 10:01:30", &t.gansu_sample(JOB, 2))
        .await;
    let mut fullwidth = t.gansu_sample(JOB, 6);
    set_field(
        &mut fullwidth,
        "xy10101001",
        Lit::Text("甘肃某物流有限公司，兰州".into()),
    );
    t.insert(JOB, 6, "I", "2026-11-20 10:02:00", &fullwidth)
        .await;
    let mut bad_uscc = t.gansu_sample(JOB, 7);
    set_field(
        &mut bad_uscc,
        "xy10101002",
        Lit::Text("91620100296583830R".into()),
    );
    t.insert(JOB, 7, "I", "2026-11-20 10:02:01", &bad_uscc)
        .await;
    let mut missing = t.gansu_sample(JOB, 8);
    set_field(&mut missing, "xy501005", Lit::Null);
    t.insert(JOB, 8, "I", "2026-11-20 10:02:02", &missing).await;

    let o = t.once(JOB).await.unwrap();
    assert_eq!(
        (o.delivered, o.invalid_rows, o.batches.len()),
        (5, 4, 1),
        "{o:?}"
    );
    assert_records(&t, &t.gansu_accepted(RESOURCE), &samples);

    // At most max_records_per_call per call; the bodies on the wire are ciphertext only.
    let (batches, calls) = {
        let st = t.sim.state.lock().unwrap();
        (st.gansu_batches.clone(), st.calls.clone())
    };
    assert_eq!(
        batches.iter().map(|b| b.records).collect::<Vec<_>>(),
        vec![2, 2, 1]
    );
    for c in &calls {
        assert!(
            c.path.ends_with("/submit-server/data/L/00041759"),
            "{}",
            c.path
        );
        assert!(
            !c.body.contains("甘肃") && !c.body.contains("91620100"),
            "plaintext on the wire: {}",
            c.body
        );
        assert_eq!(c.status, 200);
    }
    assert!(
        t.sim.state.lock().unwrap().reconciliations.is_empty(),
        "no reconciliation upload for Gansu"
    );

    // The platform's batch numbers and ids, comma-joined in call order.
    let nums: Vec<String> = batches.iter().map(|b| b.batch_num.clone()).collect();
    let ids: Vec<String> = batches.iter().map(|b| b.id.clone()).collect();
    let b = t
        .rows("SELECT cd_batch, state, platform_batch_num, platform_id, delivered_count FROM qz_batch")
        .await;
    assert_eq!(b.len(), 1);
    assert_eq!(b[0][0].as_deref(), Some(o.batches[0].as_str()));
    assert_eq!(b[0][1].as_deref(), Some("done"));
    assert_eq!(b[0][2], Some(nums.join(",")));
    assert_eq!(b[0][3], Some(ids.join(",")));
    assert_eq!(b[0][4].as_deref(), Some("5"));
    let r = t
        .rows("SELECT cd_batch, platform_batch_num, cd_count, upload_state, table_name FROM qz_reconciliation")
        .await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0][1], Some(nums.join(",")));
    assert_eq!(r[0][2].as_deref(), Some("5"));
    assert_eq!(r[0][3].as_deref(), Some("off"));
    let receipts = t
        .rows("SELECT platform_batch_num, record_count FROM qz_platform_receipt ORDER BY id")
        .await;
    let want: Vec<Vec<Option<String>>> = batches
        .iter()
        .map(|b| vec![Some(b.batch_num.clone()), Some(b.records.to_string())])
        .collect();
    assert_eq!(receipts, want);

    // Bad rows are error rows, not sent.
    let errs = t
        .rows("SELECT source_key, field, rule, message FROM qz_error ORDER BY source_key")
        .await;
    let brief: Vec<(&str, &str, &str)> = errs
        .iter()
        .map(|e| {
            (
                e[0].as_deref().unwrap(),
                e[1].as_deref().unwrap(),
                e[2].as_deref().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        brief,
        vec![
            ("2", "cd_operation", "delete_unsupported"),
            ("6", "xy10101001", "halfwidth"),
            ("7", "xy10101002", "uscc_check"),
            ("8", "xy501005", "required"),
        ]
    );
    assert!(
        errs[1][3].as_ref().unwrap().contains("“，”"),
        "{:?}",
        errs[1][3]
    );
    assert_eq!(t.scalar("SELECT COUNT(*) FROM qz_outbox").await, 0);
}
on_all_backends!(
    gansu_changes_reach_the_platform_decrypted,
    changes_reach_gansu
);

async fn bad_authorization(which: Which) {
    let Some(t) = spawn_app(
        which,
        Spawn {
            types: &[],
            gansu: Some(GansuSpawn {
                client_authorization: "expired-authorization",
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await
    else {
        return;
    };
    for id in 1..=3 {
        t.insert(
            JOB,
            id,
            "I",
            "2026-11-20 10:00:00",
            &t.gansu_sample(JOB, id),
        )
        .await;
    }
    let err = t.once(JOB).await.unwrap_err();
    assert!(err.downcast_ref::<JobStopped>().is_some(), "{err:#}");
    let text = format!("{err:#}");
    assert!(
        !text.contains("expired-authorization"),
        "the secret leaked: {text}"
    );
    assert!(t.gansu_accepted(RESOURCE).is_empty());
    let first = t.sim.state.lock().unwrap().calls.clone();
    assert_eq!(first.len(), 1, "the job stops at the first refused call");
    assert_eq!(first[0].status, 401);
    let stored = t.rows("SELECT body, state FROM qz_outbox").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0][1].as_deref(), Some("pending"));
    assert_eq!(stored[0][0].as_deref(), Some(first[0].body.as_str()));
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM qz_batch WHERE state = 'pending'")
            .await,
        1
    );
    let last_error = t.rows("SELECT last_error FROM qz_cursor").await;
    assert!(
        !last_error[0][0]
            .clone()
            .unwrap_or_default()
            .contains("expired-authorization"),
        "the secret leaked into qz_cursor"
    );

    // A corrected Authorization and a restart: the kept call goes out byte for byte.
    std::fs::write(t.dir.path().join("gansu.auth"), GANSU_AUTH).unwrap();
    let app = qianzhi::pipeline::App::new(qianzhi::tools::config_from_str(&t.cfg_text).unwrap())
        .await
        .unwrap();
    let o = qianzhi::pipeline::run_once(
        &app,
        JOB,
        &tokio_util::sync::CancellationToken::new(),
        &Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(o.delivered, 3);
    let calls = t.sim.state.lock().unwrap().calls.clone();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].body, first[0].body, "resend is byte-identical");
    let samples: Vec<_> = (1..=3).map(|id| t.gansu_sample(JOB, id)).collect();
    assert_records(&t, &t.gansu_accepted(RESOURCE), &samples);
    app.db.close().await;
}
on_all_backends!(gansu_bad_authorization_stops_the_job, bad_authorization);

/// Every envelope and both paddings (and both encodings, both key forms) round-trip through
/// the simulator; a refused record is isolated by splitting, and the split calls are rebuilt
/// from the stored body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gansu_envelopes_and_paddings_round_trip() {
    let variants: &[(&str, &str)] = &[
        ("envelope = \"values\"\npadding = \"iso7816\"", GANSU_KEY),
        (
            "envelope = \"values\"\npadding = \"pkcs7\"\nencoding = \"base64\"",
            GANSU_KEY,
        ),
        ("envelope = \"body\"\npadding = \"iso7816\"", GANSU_KEY),
        (
            "envelope = \"body\"\npadding = \"pkcs7\"\nencoding = \"base64\"",
            GANSU_KEY,
        ),
        (
            "envelope = \"wrapper\"\nwrapper_field = \"encryptData\"\npadding = \"iso7816\"",
            GANSU_KEY,
        ),
        (
            "envelope = \"wrapper\"\npadding = \"pkcs7\"\nkey_form = \"utf8\"\niv = \"000102030405060708090a0b0c0d0e0f\"\niv_form = \"hex\"",
            "gansu-sm4-key-16",
        ),
    ];
    for (settings, key) in variants {
        let t = spawn_app(
            Which::Sqlite,
            Spawn {
                types: &[],
                gansu: Some(GansuSpawn {
                    settings,
                    key,
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let mut samples = Vec::new();
        for id in 1..=5 {
            let mut s = t.gansu_sample(JOB, id);
            if id == 3 {
                set_field(&mut s, "xy10101001", Lit::Text("平台拒收的主体".into()));
            }
            t.insert(JOB, id, "I", "2026-11-20 10:00:00", &s).await;
            if id != 3 {
                samples.push(s);
            }
        }
        t.sim
            .state
            .lock()
            .unwrap()
            .gansu_refuse
            .insert("平台拒收的主体".into());
        let o = t.once(JOB).await.unwrap();
        assert_eq!(
            (o.delivered, o.refused_by_platform),
            (4, 1),
            "{settings}: {o:?}"
        );
        assert_records(&t, &t.gansu_accepted(RESOURCE), &samples);
        let body = t.sim.state.lock().unwrap().calls[0].body.clone();
        if settings.contains("wrapper_field") {
            assert!(body.starts_with("{\"encryptData\":\""), "{body}");
        } else if settings.contains("\"body\"") {
            assert!(!body.starts_with('[') && !body.starts_with('{'), "{body}");
        } else if settings.contains("\"values\"") {
            assert!(body.starts_with("[{\"xy10101001\":\""), "{body}");
        }
        let errs = t
            .rows("SELECT source_key, rule, message FROM qz_error")
            .await;
        assert_eq!(errs.len(), 1, "{settings}");
        assert_eq!(errs[0][0].as_deref(), Some("3"));
        assert_eq!(errs[0][1].as_deref(), Some("platform_rejected"));
        assert!(errs[0][2].as_ref().unwrap().contains("业务校验不通过"));
        // The receipts of the accepted parts of the split call, joined.
        let n = t.sim.state.lock().unwrap().gansu_batches.len();
        let b = t.rows("SELECT platform_batch_num FROM qz_batch").await;
        assert_eq!(
            b[0][0].as_deref().unwrap().split(',').count(),
            n,
            "{settings}"
        );
    }
}

/// A 5xx answer is retried with the same bytes; a stale key is refused by the platform.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gansu_server_errors_are_retried() {
    let t = spawn_app(Which::Sqlite, gansu("")).await.unwrap();
    t.insert(JOB, 1, "I", "2026-11-20 10:00:00", &t.gansu_sample(JOB, 1))
        .await;
    t.sim.state.lock().unwrap().fail_next.extend([503, 502]);
    let o = t.once(JOB).await.unwrap();
    assert_eq!(o.delivered, 1);
    let calls = t.sim.state.lock().unwrap().calls.clone();
    assert_eq!(
        calls.iter().map(|c| c.status).collect::<Vec<_>>(),
        vec![503, 502, 200]
    );
    assert!(calls.windows(2).all(|w| w[0].body == w[1].body));
}

/// Without a lower setting a call holds the spec's 500 records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gansu_calls_hold_at_most_500_records() {
    let t = spawn_app(Which::Sqlite, gansu("")).await.unwrap();
    let samples: Vec<_> = (1..=1001).map(|id| t.gansu_sample(JOB, id)).collect();
    t.insert_rows(JOB, &inserts(&samples)).await;
    let o = t.once(JOB).await.unwrap();
    assert_eq!(o.delivered, 1001);
    let sizes: Vec<usize> = t
        .sim
        .state
        .lock()
        .unwrap()
        .gansu_batches
        .iter()
        .map(|b| b.records)
        .collect();
    // The three calls are in flight together and may arrive in any order.
    let mut sizes = sizes;
    sizes.sort_unstable();
    assert_eq!(sizes, vec![1, 500, 500]);
}

/// `qianzhi check` reads both Gansu secrets and names a bad key without quoting it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gansu_check_reads_the_secrets() {
    let t = spawn_app(Which::Sqlite, gansu("")).await.unwrap();
    let out = t.cli(&["check"], &[]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("✓ gansu Authorization and SM4 key are readable"),
        "{text}"
    );
    assert!(out.status.success(), "{text}");

    std::fs::write(t.dir.path().join("gansu.key"), "not-a-key-4711").unwrap();
    std::fs::remove_file(t.dir.path().join("gansu.auth")).unwrap();
    let out = t.cli(&["check"], &[]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success());
    // Both problems in one run, each at its key in the file.
    assert!(
        text.contains("gansu.authorization_file: cannot read gansu.authorization_file"),
        "{text}"
    );
    assert!(text.contains("gansu.key_file: gansu SM4 key"), "{text}");
    std::fs::write(t.dir.path().join("gansu.auth"), GANSU_AUTH).unwrap();
    let out = t.cli(&["check"], &[]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("gansu.key_file: gansu SM4 key"), "{text}");
    assert!(
        !text.contains("not-a-key-4711") && !text.contains(GANSU_AUTH),
        "{text}"
    );
}
