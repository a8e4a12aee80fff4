//! Change capture: the keyset page read on MySQL/MariaDB is a range on the keyset index (its
//! EXPLAIN, of the statement the code really sends).

use super::helpers::*;
use qianzhi::db::source::{Position, SourceSpec};
use qianzhi::db::tools::ChangeRow;
use qianzhi::value::Value;

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
    let key = vec!["change_id".to_string()];
    let spec = SourceSpec {
        table: "accept_changes",
        time_column: "cd_time",
        key: &key,
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
            .explain_page(&spec, &select, Some(&pos), 1000)
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
        .read_changes(&spec, &select, Some(&at(n - 11)), 1000)
        .await
        .unwrap();
    let ids: Vec<Option<&Value>> = page.iter().map(|r| r.get("id")).collect();
    let want: Vec<Value> = (n - 9..=n).map(|i| Value::Int(i as i64)).collect();
    assert_eq!(ids, want.iter().map(Some).collect::<Vec<_>>());
}
