//! Source columns of types qianzhi cannot decode (PostgreSQL INTERVAL and INET, MySQL TIME):
//! a job that does not need them delivers; when mapped, `check` names each one with the cast
//! to add to the view, `once` refuses with the same words, and the cast view delivers.

use super::helpers::*;
use crate::on_all_backends;
use qianzhi::db::source::{Position, SourceSpec};
use qianzhi::mapping::derive_row_guid;
use qianzhi::value::Value;
use serde_json::Value as Json;

/// One unreadable column: name, DDL type, a value, the type as `check` names it, the cast
/// `check` must suggest, and the text that cast gives the value.
struct Odd {
    column: &'static str,
    ddl: &'static str,
    value: &'static str,
    type_name: &'static str,
    cast: &'static str,
    as_text: &'static str,
}

const PG: &[Odd] = &[
    Odd {
        column: "wait_time",
        ddl: "INTERVAL",
        value: "'2 hours 30 minutes'",
        type_name: "INTERVAL",
        cast: "CAST(wait_time AS TEXT) AS wait_time",
        as_text: "02:30:00",
    },
    Odd {
        column: "client_ip",
        ddl: "INET",
        value: "'10.0.0.5'",
        type_name: "INET",
        cast: "CAST(client_ip AS TEXT) AS client_ip",
        as_text: "10.0.0.5/32",
    },
];

const MYSQL: &[Odd] = &[
    Odd {
        column: "wait_time",
        ddl: "TIME",
        value: "'02:30:00'",
        type_name: "TIME",
        cast: "CAST(wait_time AS CHAR) AS wait_time",
        as_text: "02:30:00",
    },
    Odd {
        column: "client_bits",
        ddl: "BIT(8)",
        value: "b'00000101'",
        type_name: "BIT",
        cast: "CAST(client_bits AS UNSIGNED) AS client_bits",
        as_text: "5",
    },
];

/// The fields the odd columns are mapped to (optional strings of accept).
const FIELDS: [&str; 2] = ["Address", "ContactName"];

/// The accepted record of source row `id`.
fn record(accepted: &[Json], id: i64) -> &Json {
    let guid = derive_row_guid("accept", &id.to_string());
    accepted
        .iter()
        .find(|r| r["RowGuid"] == guid.as_str())
        .unwrap_or_else(|| panic!("record {id} not delivered: {accepted:?}"))
}

async fn unreadable_columns(which: Which, odd: &[Odd]) {
    let Some(t) = spawn_app(which, Spawn::default()).await else {
        eprintln!("{which:?} suite off");
        return;
    };
    let add: Vec<String> = odd
        .iter()
        .map(|o| format!("ADD COLUMN {} {}", o.column, o.ddl))
        .collect();
    t.app
        .db
        .execute_script(&format!("ALTER TABLE accept_changes {}", add.join(", ")))
        .await
        .unwrap();
    let fill = |ids: &str| {
        let set: Vec<String> = odd
            .iter()
            .map(|o| format!("{} = {}", o.column, o.value))
            .collect();
        format!(
            "UPDATE accept_changes SET {} WHERE id IN ({ids})",
            set.join(", ")
        )
    };
    for id in 1..=2 {
        t.insert(
            "accept",
            id,
            "I",
            "2026-11-20 10:00:00",
            &t.sample("accept", id),
        )
        .await;
    }
    t.app.db.execute_script(&fill("1, 2")).await.unwrap();

    // Not mapped: the columns are not read, the job delivers and check passes.
    let out = t.cli(&["check"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let o = t.once("accept").await.unwrap();
    assert_eq!(o.delivered, 2, "{o:?}");
    let accepted = t.accepted("accept");
    assert_eq!(accepted.len(), 2);
    for id in 1..=2 {
        let r = record(&accepted, id);
        let sample = t.sample("accept", id);
        for f in FIELDS {
            let want = sample
                .iter()
                .find(|(c, _)| c == f)
                .map(|(_, v)| expected_json(v));
            assert_eq!(Some(&r[f]), want.as_ref(), "{f} of {id}");
        }
    }

    // Mapped: check names every one with its type and the cast; once refuses likewise.
    let map: String = FIELDS
        .iter()
        .zip(odd)
        .map(|(f, o)| format!("{f} = \"{}\"\n", o.column))
        .collect();
    let mapped = format!("{}\n[job.map]\n{map}", t.cfg_text);
    std::fs::write(&t.cfg_path, &mapped).unwrap();
    let out = t.cli(&["check"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    for o in odd {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("列 {} ", o.column)))
            .unwrap_or_else(|| panic!("no line for {}: {text}", o.column));
        assert!(
            line.starts_with("✗ job accept:")
                && line.contains("accept_changes")
                && line.contains(o.type_name)
                && line.contains(o.cast),
            "{line}"
        );
    }
    assert!(
        text.contains(&format!("{} problem(s) found", odd.len())),
        "{text}"
    );
    t.insert(
        "accept",
        3,
        "I",
        "2026-11-20 10:01:00",
        &t.sample("accept", 3),
    )
    .await;
    t.app.db.execute_script(&fill("3")).await.unwrap();
    let out = t.cli(&["once", "--job", "accept"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(odd[0].cast), "{err}");
    assert_eq!(t.accepted("accept").len(), 2);

    // The view with the suggested casts: check passes and the values arrive as text.
    let columns = t.app.db.source_columns("accept_changes").await.unwrap();
    let select: Vec<String> = columns
        .iter()
        .map(|c| {
            odd.iter()
                .find(|o| o.column.eq_ignore_ascii_case(c))
                .map(|o| o.cast.to_string())
                .unwrap_or_else(|| c.clone())
        })
        .collect();
    t.app
        .db
        .execute_script(&format!(
            "CREATE VIEW v_accept AS SELECT {} FROM accept_changes",
            select.join(", ")
        ))
        .await
        .unwrap();
    std::fs::write(
        &t.cfg_path,
        mapped.replace("source = \"accept_changes\"", "source = \"v_accept\""),
    )
    .unwrap();
    let out = t.cli(&["check"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let out = t.cli(&["once", "--job", "accept"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let accepted = t.accepted("accept");
    let third = record(&accepted, 3);
    for (f, o) in FIELDS.iter().zip(odd) {
        assert_eq!(third[f], Json::from(o.as_text), "{f}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_interval_and_inet() {
    unreadable_columns(Which::Postgres, PG).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_time_and_bit() {
    unreadable_columns(Which::Mysql, MYSQL).await
}

/// Keyset page reads and the capped count, as built for each backend: configured names in
/// upper case mean the bare names (PostgreSQL folds them to lower case), a position resumes
/// after its row, and the count stops at its cap.
async fn keyset_reads(which: Which) {
    let Some(t) = spawn_app(which, Spawn::default()).await else {
        eprintln!("{which:?} suite off");
        return;
    };
    t.insert_many("accept", 3).await;
    let spec = SourceSpec {
        table: "accept_changes",
        keyset: vec!["CD_TIME".to_string(), "CHANGE_ID".to_string()],
        upto: None,
    };
    let select = ["cd_time", "change_id", "id"].map(String::from);
    let db = &t.app.db;
    let ids = |rows: &[qianzhi::value::SourceRow]| -> Vec<Value> {
        rows.iter().map(|r| r.values[2].clone()).collect()
    };
    let first = db.read_changes(&spec, &select, None, 2).await.unwrap();
    assert_eq!(ids(&first), [Value::Int(1), Value::Int(2)]);
    let pos = Position {
        time: first[1].values[0].clone(),
        key: vec![first[1].values[1].clone()],
    };
    let rest = db
        .read_changes(&spec, &select, Some(&pos.values()), 10)
        .await
        .unwrap();
    assert_eq!(ids(&rest), [Value::Int(3)]);
    assert_eq!(db.count_after(&spec, None, 10).await.unwrap(), 3);
    assert_eq!(db.count_after(&spec, None, 2).await.unwrap(), 2);
    assert_eq!(
        db.count_after(&spec, Some(&pos.values()), 10)
            .await
            .unwrap(),
        1
    );

    // Seq order: the seq column alone, never past the bound.
    let seq = SourceSpec {
        table: "accept_changes",
        keyset: vec!["CHANGE_ID".to_string()],
        upto: Some(2),
    };
    let first = db.read_changes(&seq, &select, None, 10).await.unwrap();
    assert_eq!(ids(&first), [Value::Int(1), Value::Int(2)]);
    let after = [Value::Int(1)];
    let rest = db
        .read_changes(&seq, &select, Some(&after), 10)
        .await
        .unwrap();
    assert_eq!(ids(&rest), [Value::Int(2)]);
    let (max, now_ms) = db.observe_seq("accept_changes", "CHANGE_ID").await.unwrap();
    assert_eq!(max, Some(3));
    let host_ms = chrono::Utc::now().timestamp_millis();
    assert!(
        (now_ms - host_ms).abs() < 60_000,
        "the database's clock in ms: {now_ms} (host {host_ms})"
    );
}

on_all_backends!(keyset_reads_resume_after_the_position, keyset_reads);

/// PostgreSQL through psqlODBC reads a page with each row packed into one value
/// (`ROW(...)::text`, split by qianzhi); with `database.odbc_packed_rows = false` column by
/// column. Both give the same rows, text that a record must quote included; every other
/// source never packs.
async fn packed_rows(which: Which) {
    let Some(t) = spawn_app(which, Spawn::default()).await else {
        eprintln!("{which:?} suite off");
        return;
    };
    t.insert_many("accept", 3).await;
    let db = &t.app.db;
    // MySQL reads a backslash in a literal as an escape: written twice there.
    let backslash = match which {
        Which::Mysql | Which::OdbcMysql => "\\\\",
        _ => "\\",
    };
    db.execute_script(&format!(
        "UPDATE accept_changes SET applyername = 'a \"q\", (b) {backslash} c\n 前置机', \
         address = '', contactname = NULL WHERE id = 2"
    ))
    .await
    .unwrap();
    let spec = SourceSpec {
        table: "accept_changes",
        keyset: vec!["CD_TIME".to_string(), "CHANGE_ID".to_string()],
        upto: None,
    };
    let select: Vec<String> = db
        .source_column_types("accept_changes")
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    let values = |rows: Vec<qianzhi::value::SourceRow>| -> Vec<Vec<Value>> {
        rows.into_iter().map(|r| r.values).collect()
    };
    let before = db.odbc_packed_pages();
    let packed = values(db.read_changes(&spec, &select, None, 10).await.unwrap());
    let packs = which == Which::OdbcPostgres;
    assert_eq!(
        db.odbc_packed_pages() - before,
        u64::from(packs),
        "{which:?}"
    );
    db.set_odbc_packed_rows(false);
    let columns = values(db.read_changes(&spec, &select, None, 10).await.unwrap());
    assert_eq!(
        db.odbc_packed_pages() - before,
        u64::from(packs),
        "{which:?}"
    );
    assert_eq!(packed.len(), 3);
    let name = select
        .iter()
        .position(|c| c.eq_ignore_ascii_case("applyername"))
        .unwrap();
    assert_eq!(
        packed[1][name],
        Value::Text("a \"q\", (b) \\ c\n 前置机".into())
    );
    assert_eq!(packed, columns);

    // A run finds the packing again from the columns as they are then: a column turned into
    // a type psqlODBC writes otherwise (a boolean as 1 or 0) is read column by column.
    if packs {
        db.set_odbc_packed_rows(true);
        db.execute_script(
            "ALTER TABLE accept_changes ALTER COLUMN address TYPE BOOLEAN USING (address <> '')",
        )
        .await
        .unwrap();
        db.source_column_types("accept_changes").await.unwrap();
        let at = db.odbc_packed_pages();
        let rows = values(db.read_changes(&spec, &select, None, 10).await.unwrap());
        assert_eq!(db.odbc_packed_pages(), at, "a boolean column is not packed");
        let address = select
            .iter()
            .position(|c| c.eq_ignore_ascii_case("address"))
            .unwrap();
        assert_eq!(rows[0][address], Value::Text("1".into()));
    }
}

on_all_backends!(packed_rows_read_as_column_rows, packed_rows);
