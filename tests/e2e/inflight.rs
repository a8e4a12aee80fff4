//! Several calls in flight (`[delivery] max_in_flight`) against a simulator that answers
//! late: the calls overlap but never more than allowed, a row's changes never share the wire
//! and arrive in order, refused calls are still split, a stop or a crash resends the same
//! bytes under the same Cd_Batch, and nothing accepted is sent twice after a stop.

use super::helpers::*;
use crate::on_all_backends;
use qianzhi::db::tools::ChangeRow;
use qianzhi::mapping::derive_row_guid;
use qianzhi::pipeline::JobStopped;
use qianzhi::schema::sample::{Lit, set_field};
use qianzhi::tools::simulate::Scripted;
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// Long enough that every call sent before the first answer is on the wire with the others.
const LATENCY: Duration = Duration::from_millis(25);

/// `[gdzw] max_records_per_call` and `[delivery] max_in_flight`.
fn settings(per_call: usize, max_in_flight: usize) -> impl Fn(String) -> String {
    move |s| {
        in_flight(max_in_flight)(s).replacen(
            "[gdzw]\n",
            &format!("[gdzw]\nmax_records_per_call = {per_call}\n"),
            1,
        )
    }
}

fn guid(id: i64) -> String {
    derive_row_guid("accept", &id.to_string())
}

/// Appends a change history (key, operation) to the accept change table, in order.
async fn insert_history(t: &TestApp, history: &[(i64, &'static str)]) {
    let samples: Vec<_> = history
        .iter()
        .map(|(id, _)| t.sample("accept", *id))
        .collect();
    let rows: Vec<ChangeRow> = history
        .iter()
        .zip(&samples)
        .map(|((id, op), fields)| ChangeRow {
            id: *id,
            op,
            cd_time: "2026-11-20 10:00:00",
            fields,
        })
        .collect();
    t.insert_rows("accept", &rows).await;
}

/// Each row's operations in the order the platform received them.
fn arrivals(records: &[Json]) -> BTreeMap<String, Vec<String>> {
    let mut by_row: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in records {
        let op = r["Cd_Operation"].as_str().unwrap().to_string();
        by_row
            .entry(r["RowGuid"].as_str().unwrap().to_string())
            .or_default()
            .push(op);
    }
    by_row
}

/// Each row's operations in change order, leaving out the rows in `refused`.
fn expected(history: &[(i64, &str)], refused: &[i64]) -> BTreeMap<String, Vec<String>> {
    let mut by_row: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, op) in history.iter().filter(|(id, _)| !refused.contains(id)) {
        by_row.entry(guid(*id)).or_default().push(op.to_string());
    }
    by_row
}

/// The bodies of the data calls from the `from`th call on, sorted.
fn data_bodies(t: &TestApp, from: usize, status: Option<u16>) -> Vec<String> {
    let st = t.sim.state.lock().unwrap();
    let mut bodies: Vec<String> = st.calls[from..]
        .iter()
        // By path: a scripted answer does not look at the call, so it has no data type.
        .filter(|c| c.path.ends_with("/accept/batchSave") && status.is_none_or(|s| c.status == s))
        .map(|c| c.body.clone())
        .collect();
    bodies.sort();
    bodies
}

async fn pending_bodies(t: &TestApp) -> Vec<String> {
    let mut bodies: Vec<String> = t
        .rows("SELECT body FROM qz_outbox WHERE state = 'pending'")
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    bodies.sort();
    bodies
}

/// Five records a call, twenty rows a batch: some rows change again one to three calls
/// later, in the same batch or the next (id 5: I, U, D across two batches).
async fn rows_keep_their_order(which: Which) {
    let edit = settings(5, 4);
    let spawn = Spawn {
        edit: &edit,
        job_extra: "batch_size = 20",
        latency: LATENCY,
        ..Default::default()
    };
    let Some(t) = spawn_app(which, spawn).await else {
        return;
    };
    let mut history = Vec::new();
    for id in 1..=60 {
        history.push((id, "I"));
        if id % 12 == 0 {
            history.push((id - 7, "U"));
        }
        if id == 25 || id == 50 {
            history.push((id - 20 - id / 50, "D"));
        }
    }
    insert_history(&t, &history).await;
    let o = t.once("accept").await.unwrap();
    assert_eq!((o.delivered, o.refused_by_platform), (history.len(), 0));
    let mut sorted = o.batches.clone();
    sorted.sort();
    assert_eq!(o.batches, sorted, "batches closed in Cd_Batch order");
    assert_eq!(o.batches.len(), history.len().div_ceil(20));
    {
        let st = t.sim.state.lock().unwrap();
        assert!(
            st.overlaps.is_empty(),
            "rows in two calls at once: {:?}",
            st.overlaps
        );
        assert!(
            (2..=4).contains(&st.max_in_flight),
            "calls at once: {}",
            st.max_in_flight
        );
        let got = arrivals(&st.accepted_of("accept"));
        assert_eq!(got, expected(&history, &[]));
        assert_eq!(got[&guid(5)], ["I", "U", "D"]);
        assert_eq!(got[&guid(29)], ["I", "U", "D"]);
        let uploaded: Vec<&str> = st
            .reconciliations
            .iter()
            .map(|r| r["Cd_batch"].as_str().unwrap())
            .collect();
        assert_eq!(uploaded, o.batches, "reconciled in Cd_Batch order");
    }
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM qz_batch WHERE state = 'done'")
            .await as usize,
        o.batches.len()
    );
}
on_all_backends!(
    several_calls_in_flight_keep_each_rows_order,
    rows_keep_their_order
);

/// Ten calls in one batch, four in flight; the platform answers the third arriving call with
/// 401. The calls on the wire are answered and recorded, nothing else is acked, and the next
/// run sends exactly the calls left, byte for byte, under the same Cd_Batch.
async fn fatal_stop_with_calls_in_flight(which: Which) {
    let edit = settings(10, 4);
    let spawn = Spawn {
        edit: &edit,
        latency: LATENCY,
        ..Default::default()
    };
    let Some(t) = spawn_app(which, spawn).await else {
        return;
    };
    t.insert_many("accept", 100).await;
    t.sim.state.lock().unwrap().answer_at.insert(
        2,
        Scripted {
            status: 401,
            location: None,
            body: r#"{"errcode":"401","errmsg":"token expired"}"#.into(),
        },
    );
    let err = t.once("accept").await.unwrap_err();
    assert!(err.downcast_ref::<JobStopped>().is_some(), "{err:#}");
    let first_run = t.sim.state.lock().unwrap().calls.len();
    let refused = data_bodies(&t, 0, Some(401));
    let accepted = data_bodies(&t, 0, Some(200));
    assert_eq!(refused.len(), 1);
    assert!(
        accepted.len() >= 3,
        "the calls on the wire with the refused one were answered: {}",
        accepted.len()
    );
    let pending = pending_bodies(&t).await;
    assert_eq!(pending.len(), 10 - accepted.len(), "every answer recorded");
    assert!(pending.contains(&refused[0]));
    assert!(accepted.iter().all(|b| !pending.contains(b)));
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM qz_outbox WHERE state = 'acked'")
            .await as usize,
        accepted.len()
    );
    let batch = t.rows("SELECT cd_batch FROM qz_batch").await[0][0]
        .clone()
        .unwrap();

    let o = t.once("accept").await.unwrap();
    assert_eq!(o.batches, vec![batch.clone()]);
    assert_eq!(
        data_bodies(&t, first_run, None),
        pending,
        "the calls left, byte for byte"
    );
    let st = t.sim.state.lock().unwrap();
    let records = st.accepted_of("accept");
    assert_eq!(records.len(), 100, "nothing accepted twice");
    let rows: HashSet<&str> = records
        .iter()
        .map(|r| r["RowGuid"].as_str().unwrap())
        .collect();
    assert_eq!(rows.len(), 100);
    assert!(records.iter().all(|r| r["Cd_Batch"] == batch.as_str()));
}
on_all_backends!(
    a_fatal_answer_with_calls_in_flight_records_them_and_resends_the_rest,
    fatal_stop_with_calls_in_flight
);

/// Killed at the first answer while more calls are on the wire: the next process resends
/// every call not recorded, each byte for byte under the same Cd_Batch, and loses nothing.
async fn crash_with_calls_in_flight(which: Which) {
    let edit = settings(10, 4);
    let spawn = Spawn {
        edit: &edit,
        latency: LATENCY,
        ..Default::default()
    };
    let Some(t) = spawn_app(which, spawn).await else {
        return;
    };
    t.insert_many("accept", 100).await;
    let out = t.cli(&["once"], &[("QIANZHI_FAILPOINT", "after-first-call")]);
    assert_eq!(
        out.status.code(),
        Some(86),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored = pending_bodies(&t).await;
    assert_eq!(stored.len(), 10, "no ack recorded before the crash");
    // The crashed process's lease runs out first (TEST_LEASE); meanwhile a call it wrote to
    // the socket just before it died reaches the simulator too.
    t.wait_lease_expired("accept").await;
    let first_run = t.sim.state.lock().unwrap().calls.len();
    assert!(first_run >= 2, "several calls were on the wire");
    let out = t.cli(&["once"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        data_bodies(&t, first_run, None),
        stored,
        "resent byte for byte"
    );
    let st = t.sim.state.lock().unwrap();
    let records = st.accepted_of("accept");
    let rows: HashSet<&str> = records
        .iter()
        .map(|r| r["RowGuid"].as_str().unwrap())
        .collect();
    assert_eq!(rows.len(), 100, "nothing lost");
    let batches: HashSet<&str> = records
        .iter()
        .map(|r| r["Cd_Batch"].as_str().unwrap())
        .collect();
    assert_eq!(batches.len(), 1, "one Cd_Batch");
    // Sent twice: at most the calls that were on the wire when the process died.
    assert!(records.len() <= 100 + 4 * 10, "{}", records.len());
}
on_all_backends!(
    a_crash_with_calls_in_flight_resends_them_unchanged,
    crash_with_calls_in_flight
);

/// Ten records a call, eight in flight; rows 15, 37, 38 and 91 are refused (calls 1, 3 and
/// 9), and row 12 changes again in call 3, which must wait for call 1's split.
async fn splits_with_calls_in_flight(which: Which) {
    let edit = settings(10, 8);
    let spawn = Spawn {
        edit: &edit,
        latency: LATENCY,
        ..Default::default()
    };
    let Some(t) = spawn_app(which, spawn).await else {
        return;
    };
    let mut history = Vec::new();
    for id in 1..=100 {
        history.push((id, "I"));
        if id == 35 {
            history.push((12, "U"));
        }
    }
    insert_history(&t, &history).await;
    let refused = [15, 37, 38, 91];
    t.sim
        .state
        .lock()
        .unwrap()
        .refuse_row_guids
        .extend(refused.iter().map(|id| guid(*id)));
    let o = t.once("accept").await.unwrap();
    assert_eq!((o.delivered, o.refused_by_platform), (97, 4), "{o:?}");
    {
        let st = t.sim.state.lock().unwrap();
        assert!(
            st.overlaps.is_empty(),
            "rows in two calls at once: {:?}",
            st.overlaps
        );
        assert!(
            (2..=8).contains(&st.max_in_flight),
            "calls at once: {}",
            st.max_in_flight
        );
        let got = arrivals(&st.accepted_of("accept"));
        assert_eq!(
            got,
            expected(&history, &refused),
            "each accepted once, in order"
        );
        assert_eq!(got[&guid(12)], ["I", "U"]);
    }
    let errs = t
        .rows("SELECT source_key, rule, cd_batch FROM qz_error ORDER BY id")
        .await;
    let mut keys: Vec<String> = errs.iter().map(|e| e[0].clone().unwrap()).collect();
    keys.sort();
    assert_eq!(keys, ["15", "37", "38", "91"]);
    assert!(
        errs.iter()
            .all(|e| e[1].as_deref() == Some("platform_rejected")
                && e[2].as_deref() == Some(o.batches[0].as_str()))
    );
    assert_eq!(
        t.rows("SELECT delivered_count, rejected_count FROM qz_batch")
            .await,
        vec![vec![Some("97".into()), Some("4".into())]]
    );
    assert_eq!(
        t.rows("SELECT cd_count FROM qz_reconciliation").await[0][0].as_deref(),
        Some("97")
    );
}
on_all_backends!(
    refused_calls_are_split_with_calls_in_flight,
    splits_with_calls_in_flight
);

/// Gansu alike: five records a call, four in flight, twenty rows a batch; some rows change
/// again a call or two later (marked by 寄件量), and one record is refused and isolated.
async fn gansu_in_flight(which: Which) {
    const JOB: &str = "cclw_jjl";
    let edit = in_flight(4);
    let spawn = Spawn {
        types: &[],
        gansu: Some(GansuSpawn {
            settings: "max_records_per_call = 5",
            ..Default::default()
        }),
        edit: &edit,
        job_extra: "batch_size = 20",
        latency: LATENCY,
        ..Default::default()
    };
    let Some(t) = spawn_app(which, spawn).await else {
        return;
    };
    let mut history = Vec::new();
    for id in 1..=40 {
        history.push((id, "I", 1000.0 + id as f64));
        if id % 8 == 0 {
            history.push((id - 6, "U", 2000.0 + (id - 6) as f64));
        }
    }
    let samples: Vec<Vec<(String, Lit)>> = history
        .iter()
        .map(|(id, _, marker)| {
            let mut s = t.gansu_sample(JOB, *id);
            set_field(&mut s, "yx501002", Lit::Num(*marker));
            s
        })
        .collect();
    let name = |id: i64| format!("主体名称{id}");
    {
        let mut st = t.sim.state.lock().unwrap();
        st.gansu_identity = Some("xy10101001".into());
        st.gansu_refuse.insert(name(17));
    }
    let rows: Vec<ChangeRow> = history
        .iter()
        .zip(&samples)
        .map(|((id, op, _), fields)| ChangeRow {
            id: *id,
            op,
            cd_time: "2026-11-20 10:00:00",
            fields,
        })
        .collect();
    t.insert_rows(JOB, &rows).await;
    let o = t.once(JOB).await.unwrap();
    assert_eq!(
        (o.delivered, o.refused_by_platform),
        (history.len() - 1, 1),
        "{o:?}"
    );
    let errs = t.rows("SELECT source_key, rule FROM qz_error").await;
    assert_eq!(
        errs,
        vec![vec![Some("17".into()), Some("platform_rejected".into())]]
    );
    let st = t.sim.state.lock().unwrap();
    assert!(
        st.overlaps.is_empty(),
        "rows in two calls at once: {:?}",
        st.overlaps
    );
    assert!(
        (2..=4).contains(&st.max_in_flight),
        "calls at once: {}",
        st.max_in_flight
    );
    let mut got: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in st.gansu_accepted_of("00041759") {
        got.entry(r["xy10101001"].as_str().unwrap().to_string())
            .or_default()
            .push(r["yx501002"].as_f64().unwrap());
    }
    let mut want: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (id, _, marker) in history.iter().filter(|(id, _, _)| *id != 17) {
        want.entry(name(*id)).or_default().push(*marker);
    }
    assert_eq!(got, want, "each accepted once, a row's versions in order");
    assert_eq!(got[&name(2)], [1002.0, 2002.0]);
}
on_all_backends!(gansu_calls_in_flight_keep_each_rows_order, gansu_in_flight);

/// The Cd_Batch of each data call from the `from`th call on, in the order they arrived.
fn batches_sent(t: &TestApp, from: usize) -> Vec<String> {
    let st = t.sim.state.lock().unwrap();
    st.calls[from..]
        .iter()
        .filter(|c| c.path.ends_with("/accept/batchSave"))
        .filter_map(|c| {
            let body: Json = serde_json::from_str(&c.body).ok()?;
            Some(body.pointer("/0/Cd_Batch")?.as_str()?.to_string())
        })
        .collect()
}

/// Long enough that the committer has stored the next batch before the answers of the
/// current one come back, even on a loaded machine (the committer runs at most a batch or
/// two ahead of delivery).
const SLOW: Duration = Duration::from_millis(200);

/// One call per batch, eight calls in flight: batches are closed by the writer while the
/// calls of the batches after them are on the wire, and still close, get their
/// reconciliation rows and are uploaded in Cd_Batch order, each once.
async fn batches_close_behind_the_calls(which: Which) {
    let edit = settings(5, 8);
    let spawn = Spawn {
        edit: &edit,
        job_extra: "batch_size = 5",
        latency: SLOW,
        ..Default::default()
    };
    let Some(t) = spawn_app(which, spawn).await else {
        return;
    };
    t.insert_many("accept", 60).await;
    let o = t.once("accept").await.unwrap();
    assert_eq!(o.delivered, 60);
    assert_eq!(o.batches.len(), 12);
    let mut sorted = o.batches.clone();
    sorted.sort();
    assert_eq!(o.batches, sorted, "batches closed in Cd_Batch order");
    {
        let st = t.sim.state.lock().unwrap();
        assert!(
            st.max_in_flight >= 2,
            "calls of several batches on the wire at once: {}",
            st.max_in_flight
        );
        let uploaded: Vec<&str> = st
            .reconciliations
            .iter()
            .map(|r| r["Cd_batch"].as_str().unwrap())
            .collect();
        assert_eq!(
            uploaded, o.batches,
            "reconciled in Cd_Batch order, each once"
        );
        assert!(st.reconciliations.iter().all(|r| r["Cd_count"] == 5));
    }
    // Calls on several connections at once may arrive in another order than they left.
    let mut sent = batches_sent(&t, 0);
    sent.sort();
    assert_eq!(sent, o.batches, "each batch's call sent once");
    let done = t
        .rows("SELECT cd_batch FROM qz_batch WHERE state = 'done' ORDER BY cd_batch")
        .await;
    let done: Vec<String> = done.into_iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(done, o.batches);
    assert_eq!(
        t.scalar(
            "SELECT COUNT(*) FROM qz_reconciliation WHERE upload_state = 'ok' AND cd_count = 5"
        )
        .await,
        12
    );
    assert_eq!(t.scalar("SELECT COUNT(*) FROM qz_outbox").await, 0);
}
on_all_backends!(
    batches_close_while_the_next_batches_calls_are_in_flight,
    batches_close_behind_the_calls
);

/// Killed as the first batch's close is about to be written, with the next batch's calls on
/// the wire: nothing of either batch is closed, and the next process resends every call not
/// recorded byte for byte under its Cd_Batch, then closes and reconciles each batch once, in
/// Cd_Batch order.
async fn crash_with_a_close_pending(which: Which) {
    let edit = settings(10, 4);
    let spawn = Spawn {
        edit: &edit,
        job_extra: "batch_size = 20",
        latency: SLOW,
        ..Default::default()
    };
    let Some(t) = spawn_app(which, spawn).await else {
        return;
    };
    t.insert_many("accept", 100).await;
    let out = t.cli(&["once"], &[("QIANZHI_FAILPOINT", "before-batch-close")]);
    assert_eq!(
        out.status.code(),
        Some(86),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The crashed process's lease runs out first (TEST_LEASE); meanwhile a call it wrote to
    // the socket just before it died reaches the simulator too.
    t.wait_lease_expired("accept").await;
    let first_run = t.sim.state.lock().unwrap().calls.len();
    let before: HashSet<String> = batches_sent(&t, 0).into_iter().collect();
    assert!(
        before.len() >= 2,
        "the next batch's calls went out before the first batch closed: {before:?}"
    );
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM qz_batch WHERE state = 'done'")
            .await,
        0,
        "no close written"
    );
    assert_eq!(t.scalar("SELECT COUNT(*) FROM qz_reconciliation").await, 0);
    let stored = pending_bodies(&t).await;
    assert!(!stored.is_empty());
    let out = t.cli(&["once"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resent = data_bodies(&t, first_run, None);
    for body in &stored {
        assert_eq!(
            resent.iter().filter(|b| *b == body).count(),
            1,
            "every call not recorded resent once, byte for byte"
        );
    }
    {
        let st = t.sim.state.lock().unwrap();
        let records = st.accepted_of("accept");
        let mut batch_of: BTreeMap<&str, HashSet<&str>> = BTreeMap::new();
        for r in &records {
            batch_of
                .entry(r["RowGuid"].as_str().unwrap())
                .or_default()
                .insert(r["Cd_Batch"].as_str().unwrap());
        }
        assert_eq!(batch_of.len(), 100, "nothing lost");
        assert!(
            batch_of.values().all(|b| b.len() == 1),
            "a row sent again keeps its Cd_Batch"
        );
        let batches: std::collections::BTreeSet<&str> =
            batch_of.values().flatten().copied().collect();
        let batches: Vec<&str> = batches.into_iter().collect();
        assert_eq!(batches.len(), 5);
        let uploaded: Vec<&str> = st
            .reconciliations
            .iter()
            .map(|r| r["Cd_batch"].as_str().unwrap())
            .collect();
        assert_eq!(
            uploaded, batches,
            "each batch reconciled once, in Cd_Batch order"
        );
        assert!(st.reconciliations.iter().all(|r| r["Cd_count"] == 20));
    }
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM qz_batch WHERE state = 'done'")
            .await,
        5
    );
    assert_eq!(t.scalar("SELECT COUNT(*) FROM qz_outbox").await, 0);
}
on_all_backends!(
    a_crash_with_a_batch_close_pending_resends_and_closes_in_order,
    crash_with_a_close_pending
);
