//! Guangdong delivery: error rows resolved in change order, reconciliation uploads that survive
//! a fatal answer, and reconciliation records spelled as the schema file says.

use super::helpers::*;
use crate::on_all_backends;
use qianzhi::pipeline::JobStopped;
use qianzhi::schema::sample::{Lit, set_field};
use qianzhi::tools::simulate::Scripted;
use serde_json::Value as Json;

async fn newer_invalid_versions_stay_open(which: Which) {
    // One page per exchange: three rows each.
    let Some(t) = spawn_app(
        which,
        Spawn {
            job_extra: "batch_size = 3\n",
            ..Default::default()
        },
    )
    .await
    else {
        return;
    };
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
    for id in 1..=3 {
        let mut bad = t.sample("accept", id);
        set_field(&mut bad, "ApplyerType", Lit::Text("7".into()));
        t.insert("accept", id, "U", "2026-11-20 10:00:01", &bad)
            .await;
    }
    let o = t.once("accept").await.unwrap();
    assert_eq!((o.delivered, o.invalid_rows), (3, 3), "{o:?}");
    let open = t
        .rows(
            "SELECT source_key, operation, field, rule FROM qz_error \
             WHERE resolved_at IS NULL ORDER BY source_key",
        )
        .await;
    let want: Vec<Vec<Option<String>>> = ["1", "2", "3"]
        .iter()
        .map(|k| {
            vec![
                Some(k.to_string()),
                Some("U".into()),
                Some("ApplyerType".into()),
                Some("code_set".into()),
            ]
        })
        .collect();
    assert_eq!(
        open, want,
        "the later, still invalid versions keep their error rows"
    );

    // A valid later version of key 1 resolves key 1's error row, and only that one.
    t.insert(
        "accept",
        1,
        "U",
        "2026-11-20 10:00:02",
        &t.sample("accept", 1),
    )
    .await;
    let o = t.once("accept").await.unwrap();
    assert_eq!(o.delivered, 1);
    let rows = t
        .rows("SELECT source_key, resolved_by FROM qz_error ORDER BY source_key")
        .await;
    assert_eq!(
        rows,
        vec![
            vec![Some("1".into()), Some(o.batches[0].clone())],
            vec![Some("2".into()), None],
            vec![Some("3".into()), None],
        ]
    );
}
on_all_backends!(
    an_earlier_batch_never_resolves_a_newer_invalid_version,
    newer_invalid_versions_stay_open
);

async fn recon_survives_fatal(which: Which) {
    let Some(t) = spawn_app(which, Spawn::default()).await else {
        return;
    };
    t.insert_many("accept", 2).await;
    // The batch is delivered; its reconciliation upload meets a temporary failure.
    t.sim
        .state
        .lock()
        .unwrap()
        .fail_next_reconciliation
        .push_back(503);
    let o = t.once("accept").await.unwrap();
    assert_eq!(o.delivered, 2);
    let state = "SELECT upload_state FROM qz_reconciliation";
    assert_eq!(t.rows(state).await, vec![vec![Some("pending".into())]]);

    // The next run meets a wrong token: the upload stays pending and the job stops.
    t.sim.state.lock().unwrap().answer_all = Some(Scripted {
        status: 401,
        location: None,
        body: r#"{"errcode":"401","errmsg":"签名校验失败"}"#.into(),
    });
    let err = t.once("accept").await.unwrap_err();
    assert!(err.downcast_ref::<JobStopped>().is_some(), "{err:#}");
    assert_eq!(t.rows(state).await, vec![vec![Some("pending".into())]]);

    // Token fixed: the upload goes out.
    t.sim.state.lock().unwrap().answer_all = None;
    t.once("accept").await.unwrap();
    assert_eq!(t.rows(state).await, vec![vec![Some("ok".into())]]);
    let up = t.sim.state.lock().unwrap().reconciliations.clone();
    assert_eq!(up.len(), 1);
    assert_eq!(up[0]["Cd_count"], Json::from(2));
}
on_all_backends!(
    a_pending_reconciliation_upload_survives_a_fatal_answer,
    recon_survives_fatal
);

/// The 7.9.6 example's spelling: `Table_Name`, `Cd_Batch`, `Cd_Count` as text, `Cd_Time`.
const EXAMPLE_RECON: &str = r#"
data_type = "reconciliation"
title = "数据对账信息"
section = "7.9"
endpoint = "reconciliation"
[[field]]
code = "Table_Name"
required = true
type = "string"
max_len = 32
[[field]]
code = "Cd_Batch"
required = true
type = "string"
max_len = 50
[[field]]
code = "Cd_Count"
required = true
type = "string"
max_len = 20
[[field]]
code = "Cd_Time"
required = true
type = "datetime"
"#;

async fn recon_follows_schema(which: Which) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("gdzw")).unwrap();
    std::fs::write(dir.path().join("gdzw/reconciliation.toml"), EXAMPLE_RECON).unwrap();
    let Some(t) = spawn_app(
        which,
        Spawn {
            schema_dir: Some(dir.path()),
            ..Default::default()
        },
    )
    .await
    else {
        return;
    };
    t.insert_many("accept", 3).await;
    let o = t.once("accept").await.unwrap();
    let up = t.sim.state.lock().unwrap().reconciliations.clone();
    assert_eq!(up.len(), 1);
    let keys: Vec<&str> = up[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["Table_Name", "Cd_Batch", "Cd_Count", "Cd_Time"]);
    assert_eq!(up[0]["Cd_Count"], Json::from("3"));
    assert_eq!(up[0]["Cd_Batch"], Json::from(o.batches[0].clone()));
    assert_eq!(up[0]["Table_Name"], Json::from("up_pro_accept_v3"));
}
on_all_backends!(
    reconciliation_upload_follows_the_schema_file,
    recon_follows_schema
);

/// Reconciliation rows left pending go up together, at most `max_records_per_call` in one
/// batchSave; a call the platform refuses is sent again row by row, so only the refused
/// row is marked failed.
async fn recon_rows_in_one_call(which: Which) {
    let edit = |s: String| s.replacen("[gdzw]\n", "[gdzw]\nmax_records_per_call = 2\n", 1);
    let spawn = Spawn {
        job_extra: "batch_size = 2\n",
        edit: &edit,
        ..Default::default()
    };
    let Some(t) = spawn_app(which, spawn).await else {
        return;
    };
    t.insert_many("accept", 8).await;
    // Every upload of this run meets a temporary failure: four rows stay pending.
    t.sim
        .state
        .lock()
        .unwrap()
        .fail_next_reconciliation
        .extend([503; 16]);
    let o = t.once("accept").await.unwrap();
    assert_eq!((o.delivered, o.batches.len()), (8, 4));
    let states = "SELECT cd_batch, upload_state FROM qz_reconciliation ORDER BY cd_batch";
    let pending: Vec<Vec<Option<String>>> = o
        .batches
        .iter()
        .map(|b| vec![Some(b.clone()), Some("pending".into())])
        .collect();
    assert_eq!(t.rows(states).await, pending);
    let (calls_before, refused) = {
        let mut st = t.sim.state.lock().unwrap();
        st.fail_next_reconciliation.clear();
        // The platform refuses the third batch's reconciliation row.
        st.refuse_reconciliation_batches
            .insert(o.batches[2].clone());
        (st.calls.len(), o.batches[2].clone())
    };

    // The next run: two calls of two rows; the second is refused and sent again row by row.
    let again = t.once("accept").await.unwrap();
    assert_eq!(again.delivered, 0);
    let st = t.sim.state.lock().unwrap().calls[calls_before..].to_vec();
    let sizes: Vec<usize> = st
        .iter()
        .filter(|c| c.data_type == "reconciliation")
        .map(|c| serde_json::from_str::<Vec<Json>>(&c.body).unwrap().len())
        .collect();
    assert_eq!(sizes, [2, 2, 1, 1], "reconciliation calls and their rows");
    let up: Vec<String> = t
        .sim
        .state
        .lock()
        .unwrap()
        .reconciliations
        .iter()
        .map(|r| r["Cd_batch"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        up,
        [
            o.batches[0].clone(),
            o.batches[1].clone(),
            o.batches[3].clone()
        ]
    );
    let want: Vec<Vec<Option<String>>> = o
        .batches
        .iter()
        .map(|b| {
            let state = if *b == refused { "failed" } else { "ok" };
            vec![Some(b.clone()), Some(state.into())]
        })
        .collect();
    assert_eq!(t.rows(states).await, want);
}
on_all_backends!(
    pending_reconciliation_rows_go_up_together,
    recon_rows_in_one_call
);
