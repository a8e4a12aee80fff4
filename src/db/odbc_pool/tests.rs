//! Tests of the pool: source column kinds, keyset binds, and rows read against the servers of
//! QIANZHI_TEST_ODBC_PG / QIANZHI_TEST_ODBC_MYSQL.

use super::*;

/// Source column types as the drivers report them, and how their values are read.
#[test]
fn source_types_choose_how_values_are_read() {
    let num = |precision, scale| DataType::Numeric { precision, scale };
    for (t, k) in [
        (DataType::Integer, SourceKind::Int),
        (DataType::BigInt, SourceKind::Int),
        (num(10, 0), SourceKind::Int),
        (num(18, 0), SourceKind::Int),
        (num(19, 0), SourceKind::Decimal),
        (num(12, 2), SourceKind::Decimal),
        // Oracle's bare NUMBER: no precision.
        (num(0, 0), SourceKind::Decimal),
        (DataType::Double, SourceKind::Float),
        (DataType::Date, SourceKind::Date),
        (DataType::Timestamp { precision: 6 }, SourceKind::Timestamp),
        (DataType::Bit, SourceKind::Bool),
        (DataType::Varbinary { length: None }, SourceKind::Bytes),
        (DataType::WVarchar { length: None }, SourceKind::Text),
        (DataType::LongVarchar { length: None }, SourceKind::Text),
        (DataType::Time { precision: 0 }, SourceKind::Text),
    ] {
        assert_eq!(SourceKind::of(t), k, "{t:?}");
    }
}

#[test]
fn keyset_dates_bind_as_odbc_structs() {
    let t = chrono::NaiveDate::from_ymd_opt(2026, 11, 20)
        .unwrap()
        .and_hms_micro_opt(10, 5, 7, 250)
        .unwrap();
    let ts = odbc_timestamp(&t);
    assert_eq!(
        (
            ts.year,
            ts.month,
            ts.day,
            ts.hour,
            ts.minute,
            ts.second,
            ts.fraction
        ),
        (2026, 11, 20, 10, 5, 7, 250_000)
    );
}

/// Source rows read into bound buffers and value by value, against the servers of
/// QIANZHI_TEST_ODBC_PG / QIANZHI_TEST_ODBC_MYSQL when set: the same values either way, in
/// both text codings where the driver has them, with text longer than its buffer read
/// again whole.
pub(super) mod server_tests {
    use super::*;
    use crate::value::Value as V;

    pub(in crate::db::odbc_pool) fn connect(var: &str) -> Option<(Connection<'static>, Driver)> {
        let Some(url) = std::env::var(var).ok().filter(|v| !v.is_empty()) else {
            eprintln!("{var} not set: skipped");
            return None;
        };
        let s = url.strip_prefix("odbc:").unwrap_or(&url);
        Some(open(&format!("{s};Database=test"), var).unwrap())
    }

    fn rows_agree(var: &str, double: &str, timestamp: &str, blob: &str) {
        let Some((conn, driver)) = connect(var) else {
            return;
        };
        // psqlODBC and MariaDB Connector/ODBC both read a bound column again.
        assert!(driver.bound_rows, "{var}: bound fetch not taken");
        let table = format!("qz_bound_{}", uuid::Uuid::new_v4().simple());
        let ddl = format!(
            "CREATE TABLE {table} (id BIGINT, i INTEGER, f {double}, d DATE, ts {timestamp}, \
             m NUMERIC(12,2), v VARCHAR(4), t TEXT, b {blob})"
        );
        conn.execute(&ddl, (), None).unwrap();
        let long = format!("{}𠀀", "黄埔海关 ABC ".repeat(2000));
        let insert = format!("INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
        let date = chrono::NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        let ts = date.and_hms_micro_opt(10, 5, 7, 250).unwrap();
        let rows: Vec<Vec<Value>> = vec![
            vec![
                1i64.into(),
                7i32.into(),
                2.5f64.into(),
                date.into(),
                ts.into(),
                Value::String(Some("1234.50".into())),
                "前置机𠀀".into(),
                long.as_str().into(),
                Value::Bytes(Some(vec![0, 1, 2, 255])),
            ],
            vec![
                2i64.into(),
                Value::Int(None),
                Value::Double(None),
                Value::ChronoDate(None),
                Value::ChronoDateTime(None),
                Value::String(None),
                Value::String(None),
                Value::String(None),
                Value::Bytes(None),
            ],
            vec![
                3i64.into(),
                (-1i32).into(),
                0f64.into(),
                date.into(),
                ts.into(),
                Value::String(Some("-0.01".into())),
                "".into(),
                "短".into(),
                Value::Bytes(Some(vec![])),
            ],
        ];
        for values in rows {
            // The blob goes as binary; the rest as the connection binds them.
            let mut p = params(values[..8].to_vec(), driver.coding).unwrap();
            p.push(match &values[8] {
                Value::Bytes(Some(b)) => {
                    Box::new(odbc_api::parameter::VarBinaryBox::from_vec(b.clone()))
                }
                _ => Box::new(odbc_api::parameter::VarBinaryBox::null()),
            });
            conn.execute(&insert, &p[..], None).unwrap();
        }
        let sql = format!("SELECT id, i, f, d, ts, m, v, t, b FROM {table} ORDER BY id");
        let mut codings = vec![driver.coding];
        if var == "QIANZHI_TEST_ODBC_PG" && driver.coding == TextCoding::Utf8 {
            codings.push(TextCoding::Wide);
        }
        for coding in codings {
            let mut seen = Vec::new();
            for bound_rows in [true, false] {
                let d = Driver { coding, bound_rows };
                let got = read_source(&conn, d, &sql, Vec::new(), None).unwrap();
                let values: Vec<Vec<V>> = got.into_iter().map(|r| r.values).collect();
                seen.push(values);
            }
            let want = vec![
                vec![
                    V::Int(1),
                    V::Int(7),
                    V::Float(2.5),
                    V::Date(date),
                    V::DateTime(ts),
                    V::Decimal("1234.50".into()),
                    V::Text("前置机𠀀".into()),
                    V::Text(long.as_str().into()),
                    V::Bytes(vec![0, 1, 2, 255]),
                ],
                vec![
                    V::Int(2),
                    V::Null,
                    V::Null,
                    V::Null,
                    V::Null,
                    V::Null,
                    V::Null,
                    V::Null,
                    V::Null,
                ],
                vec![
                    V::Int(3),
                    V::Int(-1),
                    V::Float(0.0),
                    V::Date(date),
                    V::DateTime(ts),
                    V::Decimal("-0.01".into()),
                    V::Text("".into()),
                    V::Text("短".into()),
                    V::Bytes(vec![]),
                ],
            ];
            same(&seen[0], &want, &format!("{var} {coding:?} bound"));
            same(&seen[1], &want, &format!("{var} {coding:?} value by value"));
        }
        conn.execute(&format!("DROP TABLE {table}"), (), None)
            .unwrap();
    }

    /// Rows compared value by value, a failure shown short (the long text is 32 KB).
    pub(in crate::db::odbc_pool) fn same(got: &[Vec<V>], want: &[Vec<V>], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: rows");
        for (r, (g, w)) in got.iter().zip(want).enumerate() {
            for (c, (g, w)) in g.iter().zip(w).enumerate() {
                let short = |v: &V| format!("{v:?}").chars().take(60).collect::<String>();
                let len = |v: &V| format!("{v:?}").len();
                assert!(
                    g == w,
                    "{what}: row {r} column {c}: got {} ({} chars), want {} ({} chars)",
                    short(g),
                    len(g),
                    short(w),
                    len(w)
                );
            }
            assert_eq!(g.len(), w.len(), "{what}: row {r} columns");
        }
    }

    #[test]
    fn bound_and_per_value_rows_agree_on_psqlodbc() {
        rows_agree(
            "QIANZHI_TEST_ODBC_PG",
            "DOUBLE PRECISION",
            "TIMESTAMP",
            "BYTEA",
        );
    }

    #[test]
    fn bound_and_per_value_rows_agree_on_mariadb_odbc() {
        // DATETIME(6): MariaDB's TIMESTAMP keeps whole seconds and fills in NULLs.
        rows_agree(
            "QIANZHI_TEST_ODBC_MYSQL",
            "DOUBLE",
            "DATETIME(6)",
            "LONGBLOB",
        );
    }
}
