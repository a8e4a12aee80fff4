//! Change capture: the keyset page read on MySQL/MariaDB is a range on the keyset index (its
//! EXPLAIN, of the statement the code really sends); `mode = "incremental"` over a view with
//! no operation column (I/U/D, a key changed twice, a soft delete, a key that comes back, a
//! crash between settling and committing, RowGuid stable), in time order and in seq order
//! (a version column alone, and the guard that waits for late commits); a change table read
//! in seq order.

use super::helpers::*;
use crate::on_all_backends;
use qianzhi::db::source::{Position, SourceSpec};
use qianzhi::db::tools::ChangeRow;
use qianzhi::mapping::derive_row_guid;
use qianzhi::value::Value;
use serde_json::Value as Json;

/// A test app whose config is `edit`ed (the job's mode and columns), else the defaults.
async fn spawn_edited(which: Which, edit: &dyn Fn(String) -> String) -> Option<TestApp> {
    spawn_app(
        which,
        Spawn {
            edit,
            ..Default::default()
        },
    )
    .await
}

/// MariaDB plans a row-value comparison `(cd_time, change_id) > (?, ?)` as a full index scan
/// (`type = index`): an idle poll of a large, delivered table reads all of it. The page query
/// must be a range on `accept_changes_ct`, both mid-table and at the end (the idle poll).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(qianzhi_test_mysql),
    ignore = "QIANZHI_TEST_MYSQL not set: MySQL suite off"
)]
async fn mysql_page_read_is_a_range_on_the_keyset_index() {
    require(Which::Mysql);
    let t = spawn_app(Which::Mysql, Spawn::default()).await.unwrap();
    let n = 3000;
    let fields = t.sample("accept", 1);
    // 3000 rows, 50 a minute: many change times, several rows each.
    let times: Vec<String> = (0..n)
        .map(|i| format!("2026-11-20 10:{:02}:{:02}", i / 50 % 60, i % 50))
        .collect();
    let rows: Vec<ChangeRow> = (0..n)
        .map(|i| ChangeRow {
            id: i as i64 + 1,
            op: "I",
            cd_time: &times[i],
            fields: &fields,
        })
        .collect();
    t.insert_rows("accept", &rows).await;
    t.app
        .db
        .execute_script("ANALYZE TABLE accept_changes")
        .await
        .unwrap();
    let spec = SourceSpec {
        table: "accept_changes",
        keyset: vec!["cd_time".to_string(), "change_id".to_string()],
        upto: None,
    };
    let select: Vec<String> = ["change_id", "id", "cd_time", "cd_operation"]
        .map(String::from)
        .to_vec();
    let at = |i: usize| Position {
        time: Value::DateTime(
            chrono::NaiveDateTime::parse_from_str(&times[i], "%Y-%m-%d %H:%M:%S").unwrap(),
        ),
        key: vec![Value::Int(i as i64 + 1)],
    };
    for (what, pos) in [
        ("mid-table", at(n / 2)),
        ("idle poll at the end", at(n - 1)),
    ] {
        let plan = t
            .app
            .db
            .explain_page(&spec, &select, Some(&pos.values()), 1000)
            .await
            .unwrap()
            .expect("MySQL answers EXPLAIN");
        assert_eq!(
            plan,
            vec![("range".to_string(), Some("accept_changes_ct".to_string()))],
            "{what}: the page read must be a range on the keyset index"
        );
    }
    // The read itself still returns exactly the rows after the position, in order.
    let page = t
        .app
        .db
        .read_changes(&spec, &select, Some(&at(n - 11).values()), 1000)
        .await
        .unwrap();
    let ids: Vec<Option<&Value>> = page.iter().map(|r| r.get("id")).collect();
    let want: Vec<Value> = (n - 9..=n).map(|i| Value::Int(i as i64)).collect();
    assert_eq!(ids, want.iter().map(Some).collect::<Vec<_>>());
}

/// The config edit of an incremental job `accept` over the view `accept_now`: no operation
/// column, `updated_at` as its change time, `is_deleted = 1` a soft delete.
fn incremental(s: String) -> String {
    s.replacen("source = \"accept_changes\"", "source = \"accept_now\"", 1)
        .replacen(
            "seq_column = \"change_id\"\n",
            "mode = \"incremental\"\ntime_column = \"updated_at\"\ndeleted_column = \"is_deleted\"\ndeleted_values = [\"1\"]\n",
            1,
        )
}

/// The view of an incremental job: the current rows of `accept_changes` (one per id in these
/// tests), without `cd_operation` or `change_id`.
async fn create_view(t: &TestApp) {
    let fields: Vec<String> = t.sample("accept", 1).into_iter().map(|(c, _)| c).collect();
    t.app
        .db
        .execute_script(&format!(
            "ALTER TABLE accept_changes ADD COLUMN is_deleted INT NOT NULL DEFAULT 0;\n\
             CREATE VIEW accept_now AS SELECT id, {}, cd_time AS updated_at, is_deleted \
             FROM accept_changes",
            fields.join(", ")
        ))
        .await
        .unwrap();
}

/// (Cd_Operation, ContactName) of every record the simulator accepted for source key `id`,
/// in the order received, and checks each carries the key's one RowGuid.
fn received(t: &TestApp, id: i64) -> Vec<(String, Option<String>)> {
    let guid = derive_row_guid("accept", &id.to_string());
    t.accepted("accept")
        .into_iter()
        .filter(|r| r["RowGuid"] == guid.as_str())
        .map(|r| {
            (
                r["Cd_Operation"].as_str().unwrap_or_default().to_string(),
                r["ContactName"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// qz_row_state of the job: (source_key, row_guid), by key.
async fn row_state(t: &TestApp) -> Vec<(String, String)> {
    t.rows("SELECT source_key, row_guid FROM qz_row_state WHERE job = 'accept' ORDER BY source_key")
        .await
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect()
}

async fn update(t: &TestApp, set: &str, id: i64) {
    t.app
        .db
        .execute_script(&format!("UPDATE accept_changes SET {set} WHERE id = {id}"))
        .await
        .unwrap();
}

fn ops(got: &[(String, Option<String>)]) -> Vec<&str> {
    got.iter().map(|(o, _)| o.as_str()).collect()
}

async fn incremental_detects_inserts_updates_and_deletes(which: Which) {
    let Some(t) = spawn_edited(which, &incremental).await else {
        return;
    };
    create_view(&t).await;
    t.insert_many("accept", 3).await;
    let check = t.cli(&["check"], &[]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    // 1. Three new keys: three inserts, three row states.
    let o = t.once("accept").await.unwrap();
    assert_eq!(o.delivered, 3, "{o:?}");
    for id in 1..=3 {
        assert_eq!(ops(&received(&t, id)), ["I"], "id {id}");
    }
    let guid = |id: i64| derive_row_guid("accept", &id.to_string());
    assert_eq!(
        row_state(&t).await,
        (1..=3)
            .map(|id| (id.to_string(), guid(id)))
            .collect::<Vec<_>>()
    );

    // 2. Id 1 changed twice between polls, id 2 soft-deleted: one U in the latest state, a D.
    update(
        &t,
        "ContactName = '甲一', cd_time = '2026-11-20 10:01:00'",
        1,
    )
    .await;
    update(
        &t,
        "ContactName = '甲二', cd_time = '2026-11-20 10:02:00'",
        1,
    )
    .await;
    update(&t, "is_deleted = 1, cd_time = '2026-11-20 10:02:00'", 2).await;
    let o = t.once("accept").await.unwrap();
    assert_eq!(o.delivered, 2, "{o:?}");
    let one = received(&t, 1);
    assert_eq!(ops(&one), ["I", "U"]);
    assert_eq!(one[1].1.as_deref(), Some("甲二"));
    assert_eq!(ops(&received(&t, 2)), ["I", "D"]);
    assert_eq!(
        row_state(&t).await,
        [1, 3].map(|id| (id.to_string(), guid(id))).to_vec()
    );

    // 3. Nothing changed: nothing sent. Then id 2 comes back: an insert again.
    let o = t.once("accept").await.unwrap();
    assert_eq!(o.delivered, 0, "{o:?}");
    update(&t, "is_deleted = 0, cd_time = '2026-11-20 10:03:00'", 2).await;
    let o = t.once("accept").await.unwrap();
    assert_eq!(o.delivered, 1, "{o:?}");
    assert_eq!(ops(&received(&t, 2)), ["I", "D", "I"]);
    assert_eq!(ops(&received(&t, 3)), ["I"]);
    assert_eq!(row_state(&t).await.len(), 3);
}

on_all_backends!(
    incremental_modes,
    incremental_detects_inserts_updates_and_deletes
);

/// A crash after a page's operations are settled and before they are committed: nothing was
/// stored, so the next run settles them again; every change arrives once, under one Cd_Batch.
async fn incremental_crash_before_commit(which: Which) {
    let Some(t) = spawn_edited(which, &incremental).await else {
        return;
    };
    create_view(&t).await;
    t.insert_many("accept", 3).await;
    assert_eq!(t.once("accept").await.unwrap().delivered, 3);
    update(&t, "ContactName = '乙', cd_time = '2026-11-20 10:01:00'", 3).await;

    let out = t.cli(&["once"], &[("QIANZHI_FAILPOINT", "before-capture-commit")]);
    assert_eq!(
        out.status.code(),
        Some(86),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        t.accepted("accept").len(),
        3,
        "nothing sent by the crashed run"
    );
    assert_eq!(t.scalar("SELECT COUNT(*) FROM qz_batch").await, 1);
    t.wait_lease_expired("accept").await;

    let out = t.cli(&["once"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let three = received(&t, 3);
    assert_eq!(ops(&three), ["I", "U"]);
    assert_eq!(three[1].1.as_deref(), Some("乙"));
    let batches: Vec<Json> = t
        .accepted("accept")
        .iter()
        .map(|r| r["Cd_Batch"].clone())
        .collect();
    assert_eq!(batches.len(), 4);
    assert_ne!(batches[3], batches[0], "the update is a batch of its own");
    assert_eq!(t.scalar("SELECT COUNT(*) FROM qz_batch").await, 2);
    assert_eq!(row_state(&t).await.len(), 3);
}

on_all_backends!(incremental_crash, incremental_crash_before_commit);

/// The config edit of an incremental job `accept` over the view `accept_seq` read in seq
/// order: `ver` alone (a version a trigger would take from a sequence on every change), no
/// time column, `is_deleted = 1` a soft delete, and the given settle lag.
fn seq_only(lag: &'static str) -> impl Fn(String) -> String {
    move |s: String| {
        s.replacen("source = \"accept_changes\"", "source = \"accept_seq\"", 1)
            .replacen(
                "seq_column = \"change_id\"\n",
                "mode = \"incremental\"\norder = \"seq\"\nseq_column = \"ver\"\ndeleted_column = \"is_deleted\"\ndeleted_values = [\"1\"]\n",
                1,
            )
            .replacen("settle_lag = \"0s\"", &format!("settle_lag = \"{lag}\""), 1)
    }
}

/// The view of a seq-only job: the current rows of `accept_changes` with their `ver`, and no
/// change time.
async fn create_seq_view(t: &TestApp) {
    let fields: Vec<String> = t.sample("accept", 1).into_iter().map(|(c, _)| c).collect();
    t.app
        .db
        .execute_script(&format!(
            "ALTER TABLE accept_changes ADD COLUMN is_deleted INT NOT NULL DEFAULT 0;\n\
             ALTER TABLE accept_changes ADD COLUMN ver BIGINT;\n\
             CREATE VIEW accept_seq AS SELECT id, {}, ver, is_deleted FROM accept_changes",
            fields.join(", ")
        ))
        .await
        .unwrap();
}

/// Inserts of sample rows with these ids, each with its `ver`.
async fn insert_versions(t: &TestApp, rows: &[(i64, i64)]) {
    for (id, ver) in rows {
        let fields = t.sample("accept", *id);
        t.insert("accept", *id, "I", "2026-11-20 10:00:00", &fields)
            .await;
        update(t, &format!("ver = {ver}"), *id).await;
    }
}

/// The job's stored position (qz_cursor.position): its seq, and the maxima it observed.
async fn seq_position(t: &TestApp) -> (Option<i64>, Vec<i64>) {
    let rows = t
        .rows("SELECT position FROM qz_cursor WHERE job = 'accept'")
        .await;
    let text = rows[0][0].clone().expect("a stored position");
    let p: Json = serde_json::from_str(&text).unwrap();
    let seen = p["seen"].as_array().expect("observations");
    (
        p["seq"].as_i64(),
        seen.iter().map(|s| s["max"].as_i64().unwrap()).collect(),
    )
}

/// `order = "seq"` without a time column: I, then U after an update that takes a new `ver`
/// (a key changed twice between polls sent once, as it is now), a soft delete D, a key that
/// comes back I. With `settle_lag = "0s"` the first run reads at once.
async fn seq_only_detects_inserts_updates_and_deletes(which: Which) {
    let Some(t) = spawn_edited(which, &seq_only("0s")).await else {
        return;
    };
    create_seq_view(&t).await;
    insert_versions(&t, &[(1, 10), (2, 20), (3, 30)]).await;
    let check = t.cli(&["check"], &[]);
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{stdout}");
    assert!(
        stdout.contains("seq_column ver is unique in accept_seq"),
        "{stdout}"
    );

    // 1. No settle lag: the first run observes and reads at once.
    let o = t.once("accept").await.unwrap();
    assert_eq!(o.delivered, 3, "{o:?}");
    for id in 1..=3 {
        assert_eq!(ops(&received(&t, id)), ["I"], "id {id}");
    }
    assert_eq!(row_state(&t).await.len(), 3);
    assert_eq!(seq_position(&t).await, (Some(30), vec![30]));

    // 2. Id 1 changed twice, id 2 soft-deleted: one U in the latest state, a D.
    update(&t, "ContactName = '甲一', ver = 40", 1).await;
    update(&t, "ContactName = '甲二', ver = 50", 1).await;
    update(&t, "is_deleted = 1, ver = 60", 2).await;
    let o = t.once("accept").await.unwrap();
    assert_eq!(o.delivered, 2, "{o:?}");
    let one = received(&t, 1);
    assert_eq!(ops(&one), ["I", "U"]);
    assert_eq!(one[1].1.as_deref(), Some("甲二"));
    assert_eq!(ops(&received(&t, 2)), ["I", "D"]);
    let guid = |id: i64| derive_row_guid("accept", &id.to_string());
    assert_eq!(
        row_state(&t).await,
        [1, 3].map(|id| (id.to_string(), guid(id))).to_vec()
    );
    assert_eq!(seq_position(&t).await.0, Some(60));

    // 3. Nothing changed: nothing sent. Then id 2 comes back: an insert again.
    let o = t.once("accept").await.unwrap();
    assert_eq!(o.delivered, 0, "{o:?}");
    update(&t, "is_deleted = 0, ver = 70", 2).await;
    let o = t.once("accept").await.unwrap();
    assert_eq!(o.delivered, 1, "{o:?}");
    assert_eq!(ops(&received(&t, 2)), ["I", "D", "I"]);
    assert_eq!(ops(&received(&t, 3)), ["I"]);
    assert_eq!(row_state(&t).await.len(), 3);
    assert_eq!(seq_position(&t).await.0, Some(70));
}

on_all_backends!(seq_only_modes, seq_only_detects_inserts_updates_and_deletes);

/// The settle-by-observation guard: a run reads only up to the largest `ver` observed at
/// least `settle_lag` ago, so a row whose transaction took a smaller `ver` before that
/// observation and committed after it (inserted here after the run that observed) is still
/// delivered; reading up to the current maximum would have passed it for ever.
async fn seq_only_waits_for_late_commits(which: Which) {
    let Some(t) = spawn_edited(which, &seq_only("1s")).await else {
        return;
    };
    create_seq_view(&t).await;
    let lag = std::time::Duration::from_millis(1_300);
    insert_versions(&t, &[(1, 10), (2, 20)]).await;

    // 1. The first run only observes: MAX(ver) = 20, nothing read yet.
    let o = t.once("accept").await.unwrap();
    assert_eq!(o.delivered, 0, "{o:?}");
    assert_eq!(seq_position(&t).await, (None, vec![20]));

    // 2. Ver 15 commits late; ver 30 is new. After the lag: read up to 20, so 15 is in.
    insert_versions(&t, &[(3, 15), (4, 30)]).await;
    tokio::time::sleep(lag).await;
    let o = t.once("accept").await.unwrap();
    assert_eq!(o.delivered, 3, "{o:?}");
    let ids: Vec<Json> = t
        .accepted("accept")
        .iter()
        .map(|r| r["RowGuid"].clone())
        .collect();
    let guid = |id: i64| Json::from(derive_row_guid("accept", &id.to_string()));
    assert_eq!(ids, [1, 3, 2].map(guid), "in ver order 10, 15, 20");
    assert_eq!(seq_position(&t).await, (Some(20), vec![20, 30]));

    // 3. Ver 25 commits late, below the 30 already observed: read once the lag has passed.
    insert_versions(&t, &[(5, 25)]).await;
    tokio::time::sleep(lag).await;
    let o = t.once("accept").await.unwrap();
    assert_eq!(o.delivered, 2, "{o:?}");
    for id in 1..=5 {
        assert_eq!(ops(&received(&t, id)), ["I"], "id {id}");
    }
    assert_eq!(row_state(&t).await.len(), 5);
    assert_eq!(seq_position(&t).await.0, Some(30));
}

on_all_backends!(seq_only_late_commits, seq_only_waits_for_late_commits);

/// `order = "seq"` for a change table: changes in `change_id` order whatever their change
/// time, so a change written late with an old `cd_time` is not passed.
async fn changelog_in_seq_order(which: Which) {
    let edit = |s: String| {
        s.replacen(
            "seq_column = \"change_id\"\n",
            "order = \"seq\"\nseq_column = \"change_id\"\n",
            1,
        )
    };
    let Some(t) = spawn_edited(which, &edit).await else {
        return;
    };
    let (one, two) = (t.sample("accept", 1), t.sample("accept", 2));
    t.insert("accept", 1, "I", "2026-11-20 10:00:05", &one)
        .await;
    t.insert("accept", 2, "I", "2026-11-20 10:00:00", &two)
        .await;
    let o = t.once("accept").await.unwrap();
    assert_eq!(o.delivered, 2, "{o:?}");
    let guids: Vec<Json> = t
        .accepted("accept")
        .iter()
        .map(|r| r["RowGuid"].clone())
        .collect();
    let guid = |id: i64| Json::from(derive_row_guid("accept", &id.to_string()));
    assert_eq!(
        guids,
        [1, 2].map(guid),
        "change_id order, not cd_time order"
    );

    // An update with a change time before everything read: in time order it would be passed.
    t.insert("accept", 1, "U", "2020-01-01 00:00:00", &one)
        .await;
    t.insert("accept", 2, "D", "2020-01-01 00:00:00", &two)
        .await;
    let o = t.once("accept").await.unwrap();
    assert_eq!(o.delivered, 2, "{o:?}");
    assert_eq!(ops(&received(&t, 1)), ["I", "U"]);
    assert_eq!(ops(&received(&t, 2)), ["I", "D"]);
    assert_eq!(seq_position(&t).await, (Some(4), vec![4]));
}

on_all_backends!(changelog_seq_order, changelog_in_seq_order);

/// The config edit of a snapshot job `accept` over the view `accept_snap` keyed by `key`.
fn snapshot_of(key: &'static str) -> impl Fn(String) -> String {
    move |s: String| {
        s.replacen("source = \"accept_changes\"", "source = \"accept_snap\"", 1)
            .replacen("key = [\"id\"]", &format!("key = [\"{key}\"]"), 1)
            .replacen("seq_column = \"change_id\"\n", "mode = \"snapshot\"\n", 1)
    }
}

/// A view of the current rows of `accept_changes` (one per id) without change columns, its
/// key `key_expr AS key_name` (the id itself, or a text made from it).
async fn create_snapshot_view(t: &TestApp, key: &str) {
    let fields: Vec<String> = t.sample("accept", 1).into_iter().map(|(c, _)| c).collect();
    t.app
        .db
        .execute_script(&format!(
            "CREATE VIEW accept_snap AS SELECT {key}, {} FROM accept_changes",
            fields.join(", ")
        ))
        .await
        .unwrap();
}

/// Every record the simulator accepted with this RowGuid: (Cd_Operation, ContactName).
fn received_guid(t: &TestApp, guid: &str) -> Vec<(String, Option<String>)> {
    t.accepted("accept")
        .into_iter()
        .filter(|r| r["RowGuid"] == guid)
        .map(|r| {
            (
                r["Cd_Operation"].as_str().unwrap_or_default().to_string(),
                r["ContactName"].as_str().map(str::to_string),
            )
        })
        .collect()
}

async fn delete_row(t: &TestApp, id: i64) {
    t.app
        .db
        .execute_script(&format!("DELETE FROM accept_changes WHERE id = {id}"))
        .await
        .unwrap();
}

async fn snapshot_detects_inserts_updates_and_deletes(which: Which) {
    let Some(t) = spawn_edited(which, &snapshot_of("id")).await else {
        return;
    };
    create_snapshot_view(&t, "id").await;
    t.insert_many("accept", 10).await;
    let guid = |id: i64| derive_row_guid("accept", &id.to_string());
    let got = |id: i64| received_guid(&t, &guid(id));

    // 1. The first snapshot: ten inserts, ten row states with a digest and the record.
    let o = t.once("accept").await.unwrap();
    assert_eq!(o.delivered, 10, "{o:?}");
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM qz_row_state WHERE job = 'accept' AND record IS NOT NULL AND key_sort IS NOT NULL")
            .await,
        10
    );
    // Nothing changed: nothing sent.
    assert_eq!(t.once("accept").await.unwrap().delivered, 0);

    // 2. Id 1 changed twice, id 2 gone, id 3 made invalid: one U (latest), one D, an error.
    update(&t, "ContactName = '丙一'", 1).await;
    update(&t, "ContactName = '丙二'", 1).await;
    delete_row(&t, 2).await;
    update(&t, "TaskName = NULL", 3).await;
    let o = t.once("accept").await.unwrap();
    assert_eq!((o.delivered, o.invalid_rows), (2, 1), "{o:?}");
    let one = got(1);
    assert_eq!(ops(&one), ["I", "U"]);
    assert_eq!(one[1].1.as_deref(), Some("丙二"));
    // The delete carries the record delivered last (required fields filled) and its RowGuid.
    assert_eq!(ops(&got(2)), ["I", "D"]);
    let d = t
        .accepted("accept")
        .into_iter()
        .find(|r| r["RowGuid"] == guid(2).as_str() && r["Cd_Operation"] == "D")
        .unwrap();
    assert!(d["TaskName"].is_string(), "{d}");
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM qz_row_state WHERE job = 'accept'")
            .await,
        9
    );
    let open_errors = "SELECT COUNT(*) FROM qz_error WHERE job = 'accept' AND resolved_at IS NULL";
    assert_eq!(t.scalar(open_errors).await, 1);

    // 3. Still invalid: tried again (not recorded as delivered). Then fixed: sent as U and
    //    its error rows resolved; id 2 comes back: an insert, same RowGuid.
    let o = t.once("accept").await.unwrap();
    assert_eq!((o.delivered, o.invalid_rows), (0, 1), "{o:?}");
    update(&t, "TaskName = '修好的事项'", 3).await;
    t.insert(
        "accept",
        2,
        "I",
        "2026-11-20 10:00:00",
        &t.sample("accept", 2),
    )
    .await;
    let o = t.once("accept").await.unwrap();
    assert_eq!(o.delivered, 2, "{o:?}");
    assert_eq!(ops(&got(3)), ["I", "U"]);
    assert_eq!(ops(&got(2)), ["I", "D", "I"]);
    assert_eq!(t.scalar(open_errors).await, 0);
    assert_eq!(t.once("accept").await.unwrap().delivered, 0);
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM qz_row_state WHERE job = 'accept'")
            .await,
        10
    );
}

on_all_backends!(snapshot_modes, snapshot_detects_inserts_updates_and_deletes);

/// Text keys in mixed case, with spaces and Chinese: the database's order (asked for in
/// bytes) and the merge's agree, so a second snapshot finds nothing to send (no false I/D
/// pairs), and one changed row is one U.
async fn snapshot_text_keys_in_byte_order(which: Which) {
    let Some(t) = spawn_edited(which, &snapshot_of("code")).await else {
        return;
    };
    let codes = [
        "a", "B", "b", "A", "ab", "a b", "Ä", "ä", "甲", "乙", "z", "Z1",
    ];
    let cases: Vec<String> = codes
        .iter()
        .zip(1..)
        .map(|(c, id)| format!("WHEN {id} THEN '{c}'"))
        .collect();
    create_snapshot_view(&t, &format!("CASE id {} END AS code", cases.join(" "))).await;
    t.insert_many("accept", codes.len() as i64).await;
    let o = t.once("accept").await.unwrap();
    assert_eq!(o.delivered, codes.len(), "{o:?}");
    for c in codes {
        assert_eq!(
            ops(&received_guid(&t, &derive_row_guid("accept", c))),
            ["I"],
            "key {c}"
        );
    }
    let o = t.once("accept").await.unwrap();
    assert_eq!(o.delivered, 0, "no false inserts or deletes: {o:?}");
    update(&t, "ContactName = '丁'", 9).await;
    let o = t.once("accept").await.unwrap();
    assert_eq!(o.delivered, 1, "{o:?}");
    assert_eq!(
        ops(&received_guid(&t, &derive_row_guid("accept", "甲"))),
        ["I", "U"]
    );
}

on_all_backends!(snapshot_text_keys, snapshot_text_keys_in_byte_order);

/// The safety valve: a snapshot that would delete more than max_delete_ratio (0.2) of the
/// delivered keys, or reads no row, sends nothing and stops the job with words saying how
/// to confirm; `once --confirm-deletes` sends the deletes.
async fn snapshot_safety_valve(which: Which) {
    let Some(t) = spawn_edited(which, &snapshot_of("id")).await else {
        return;
    };
    create_snapshot_view(&t, "id").await;
    t.insert_many("accept", 10).await;
    assert_eq!(t.once("accept").await.unwrap().delivered, 10);
    let state = "SELECT COUNT(*) FROM qz_row_state WHERE job = 'accept'";

    // 2 of 10 (20%) is allowed; a third (30%) is not.
    for id in [1, 2, 3] {
        delete_row(&t, id).await;
    }
    let err = t.once("accept").await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        err.downcast_ref::<qianzhi::pipeline::JobStopped>()
            .is_some()
            && msg.contains("max_delete_ratio")
            && msg.contains("--confirm-deletes")
            && msg.contains("未发送任何记录"),
        "{msg}"
    );
    assert_eq!(t.accepted("accept").len(), 10, "nothing sent");
    assert_eq!(t.scalar(state).await, 10);

    // Every row gone: stopped too.
    t.app
        .db
        .execute_script("DELETE FROM accept_changes")
        .await
        .unwrap();
    let out = t.cli(&["once", "--job", "accept"], &[]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("0 行"), "{text}");
    assert_eq!(t.accepted("accept").len(), 10, "nothing sent");

    // Confirmed: the ten deletes go out.
    let out = t.cli(&["once", "--job", "accept", "--confirm-deletes"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deletes = t
        .accepted("accept")
        .into_iter()
        .filter(|r| r["Cd_Operation"] == "D")
        .count();
    assert_eq!(deletes, 10);
    assert_eq!(t.scalar(state).await, 0);
}

on_all_backends!(snapshot_valve, snapshot_safety_valve);

/// A crash after the diff and before its commit, then a restart: nothing lost, nothing sent
/// twice, the update under one Cd_Batch.
async fn snapshot_crash_before_commit(which: Which) {
    let Some(t) = spawn_edited(which, &snapshot_of("id")).await else {
        return;
    };
    create_snapshot_view(&t, "id").await;
    t.insert_many("accept", 10).await;
    assert_eq!(t.once("accept").await.unwrap().delivered, 10);
    update(&t, "ContactName = '戊'", 4).await;
    delete_row(&t, 1).await;

    let out = t.cli(&["once"], &[("QIANZHI_FAILPOINT", "before-capture-commit")]);
    assert_eq!(
        out.status.code(),
        Some(86),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        t.accepted("accept").len(),
        10,
        "nothing sent by the crashed run"
    );
    assert_eq!(t.scalar("SELECT COUNT(*) FROM qz_batch").await, 1);
    t.wait_lease_expired("accept").await;

    let out = t.cli(&["once"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let guid = |id: i64| derive_row_guid("accept", &id.to_string());
    assert_eq!(ops(&received_guid(&t, &guid(4))), ["I", "U"]);
    assert_eq!(ops(&received_guid(&t, &guid(1))), ["I", "D"]);
    let batches: std::collections::BTreeSet<String> = t
        .accepted("accept")
        .iter()
        .map(|r| r["Cd_Batch"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(batches.len(), 2);
    assert_eq!(t.scalar("SELECT COUNT(*) FROM qz_batch").await, 2);
    assert_eq!(t.once("accept").await.unwrap().delivered, 0);
}

on_all_backends!(snapshot_crash, snapshot_crash_before_commit);

/// A record the platform refuses is not left recorded as delivered: a refused insert is
/// sent again (as I) by the next snapshot, a refused update again as U, and their error rows
/// are resolved once the platform takes them.
async fn snapshot_retries_what_the_platform_refused(which: Which) {
    let Some(t) = spawn_edited(which, &snapshot_of("id")).await else {
        return;
    };
    create_snapshot_view(&t, "id").await;
    t.insert_many("accept", 3).await;
    let guid = |id: i64| derive_row_guid("accept", &id.to_string());
    let refuse = |ids: &[i64]| {
        let mut st = t.sim.state.lock().unwrap();
        st.refuse_plain = ids.iter().map(|id| guid(*id)).collect();
    };
    let open_errors = "SELECT COUNT(*) FROM qz_error WHERE job = 'accept' AND resolved_at IS NULL";

    // 1. Id 2's insert refused: not in qz_row_state, one open error row.
    refuse(&[2]);
    let o = t.once("accept").await.unwrap();
    assert_eq!((o.delivered, o.refused_by_platform), (2, 1), "{o:?}");
    let keys: Vec<String> = row_state(&t).await.into_iter().map(|r| r.0).collect();
    assert_eq!(keys, ["1", "3"]);
    assert_eq!(t.scalar(open_errors).await, 1);

    // 2. Id 3 changed and its update refused; id 2 is tried again and taken (as an insert).
    update(&t, "ContactName = '丁一'", 3).await;
    refuse(&[3]);
    let o = t.once("accept").await.unwrap();
    assert_eq!((o.delivered, o.refused_by_platform), (1, 1), "{o:?}");
    assert_eq!(ops(&received_guid(&t, &guid(2))), ["I"]);

    // 3. Nothing refused: id 3's update is sent again; every error row resolved.
    refuse(&[]);
    let o = t.once("accept").await.unwrap();
    assert_eq!(o.delivered, 1, "{o:?}");
    let three = received_guid(&t, &guid(3));
    assert_eq!(ops(&three), ["I", "U"]);
    assert_eq!(three[1].1.as_deref(), Some("丁一"));
    assert_eq!(t.scalar(open_errors).await, 0);
    assert_eq!(t.once("accept").await.unwrap().delivered, 0);
}

on_all_backends!(
    snapshot_platform_refusals,
    snapshot_retries_what_the_platform_refused
);
