//! The SQL the tools and these tests run (`db::tools`): sample rows reach the platform exactly
//! as written on every backend, and scratch databases can be made again and dropped.

use super::helpers::*;
use crate::on_all_backends;
use qianzhi::schema::sample::{Lit, set_field};

/// Quotes, backslashes and LIKE wildcards in a change-table value are data, not syntax: MySQL
/// reads `\n` in a literal as a line break unless the backslash is escaped for its dialect.
async fn text_arrives_as_written(which: Which) {
    let Some(t) = spawn_app(which, Spawn::default()).await else {
        return;
    };
    let addresses = [
        r"C:\new\table 'x' 100%_",
        r"\\server\share\0",
        "''; DROP TABLE accept_changes; --",
        "line one\nline two\ttab",
    ];
    for (id, address) in (1..).zip(addresses) {
        let mut fields = t.sample("accept", id);
        set_field(&mut fields, "Address", Lit::Text(address.into()));
        t.insert("accept", id, "I", "2026-11-20 10:00:00", &fields)
            .await;
    }
    let o = t.once("accept").await.unwrap();
    assert_eq!(o.delivered, addresses.len(), "{o:?}");
    let mut got: Vec<String> = t
        .accepted("accept")
        .iter()
        .map(|r| r["Address"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    let mut want: Vec<String> = addresses.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want);
}
on_all_backends!(
    change_table_text_arrives_as_written,
    text_arrives_as_written
);

/// `bench` makes `qianzhi_bench` again on every run: a second create with `replace` succeeds
/// on a database that exists (and holds a table), and the drop removes it.
async fn scratch_database_is_replaced(which: Which) {
    let Some(server) = server(which) else {
        return;
    };
    if which == Which::Sqlite || which.odbc_dialect().is_some() {
        // SQLite scratch databases are files in a temporary directory; ODBC ones are made
        // through the native URL, tested here already.
        return;
    }
    use qianzhi::db::tools::{create_database, drop_database};
    let name = format!("qz_s_{}", uuid::Uuid::new_v4().simple());
    let url = create_database(&server, &name, false).await.unwrap();
    let db = qianzhi::db::Db::connect(&url, 1).await.unwrap();
    db.execute_script("CREATE TABLE left_over (id BIGINT)")
        .await
        .unwrap();
    db.close().await;
    assert!(create_database(&server, &name, false).await.is_err());
    let again = create_database(&server, &name, true).await.unwrap();
    assert_eq!(again, url);
    let db = qianzhi::db::Db::connect(&url, 1).await.unwrap();
    assert!(db.text_rows("SELECT id FROM left_over").await.is_err());
    db.close().await;
    drop_database(&server, &name).await.unwrap();
    assert!(qianzhi::db::Db::connect(&url, 1).await.is_err());
}
on_all_backends!(
    scratch_database_is_made_again_and_dropped,
    scratch_database_is_replaced
);
