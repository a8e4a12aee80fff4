//! The ODBC driver's tests: URLs, column types, and round trips through the local servers.

use super::values::Kind;
use super::*;
use odbc_api::DataType;

mod unit {
    use super::*;

    #[test]
    fn connection_strings_survive_the_any_url() {
        for s in [
            "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Uid=postgres",
            "DSN=DM8",
            "Driver={DM8 ODBC DRIVER};Server=h;PWD={a;b}}c%41#?/ 中}",
        ] {
            let url = any_url(s);
            let opts: OdbcConnectOptions = url.parse().unwrap();
            assert_eq!(opts.conn_str, s);
            let any: AnyConnectOptions = url.parse().unwrap();
            assert_eq!(OdbcConnectOptions::try_from(&any).unwrap().conn_str, s);
        }
    }

    #[test]
    fn column_types_choose_how_values_are_read() {
        for (t, k) in [
            (DataType::Integer, Kind::Int),
            (DataType::BigInt, Kind::Int),
            (DataType::Double, Kind::Float),
            (DataType::Bit, Kind::Bool),
            (
                DataType::Numeric {
                    precision: 28,
                    scale: 6,
                },
                Kind::Numeric,
            ),
            (DataType::Date, Kind::Text),
            (DataType::Varbinary { length: None }, Kind::Blob),
            (DataType::Varchar { length: None }, Kind::Text),
        ] {
            assert_eq!(Kind::of(t), k, "{t:?}");
        }
    }
}

mod batch {
    use super::*;
    use sqlx::Arguments;

    fn args(values: &[i64]) -> AnyArguments {
        let mut a = AnyArguments::default();
        for v in values {
            a.add(*v).unwrap();
        }
        a
    }

    #[test]
    fn a_batch_splits_back_into_its_statements_and_arguments() {
        let items: Vec<(Arc<str>, AnyArguments)> = vec![
            ("INSERT INTO t (a, b) VALUES (?, ?)".into(), args(&[1, 2])),
            ("DELETE FROM t WHERE a = 'x;y'".into(), args(&[])),
            ("UPDATE t SET b = ? WHERE a = ?".into(), args(&[3, 4])),
        ];
        let (sql, all) = batch_sql(items).unwrap();
        assert_eq!(all.values.0.len(), 4);
        let got = split_batch(&sql, 4).unwrap().unwrap();
        assert_eq!(
            got,
            [
                ("INSERT INTO t (a, b) VALUES (?, ?)", 2),
                ("DELETE FROM t WHERE a = 'x;y'", 0),
                ("UPDATE t SET b = ? WHERE a = ?", 2),
            ]
        );
    }

    #[test]
    fn other_statements_and_broken_batches_are_told_apart() {
        assert!(split_batch("SELECT 1", 0).unwrap().is_none());
        let (sql, _) = batch_sql(vec![("DELETE FROM t".into(), args(&[1]))]).unwrap();
        // The arguments that came with it do not add up.
        assert!(split_batch(&sql, 2).is_err());
        assert!(split_batch("/* qianzhi batch:x */\u{1e}DELETE FROM t", 0).is_err());
        assert!(split_batch("/* qianzhi batch:1,1 */\u{1e}DELETE FROM t", 2).is_err());
        let bad: Vec<(Arc<str>, AnyArguments)> = vec![("a\u{1e}b".into(), args(&[]))];
        assert!(batch_sql(bad).is_err());
    }
}

mod server_tests {
    //! Against the servers of QIANZHI_TEST_ODBC_PG / QIANZHI_TEST_ODBC_MYSQL (their default
    //! databases), when set.

    use super::{ConnectionOptions, TextBufs, TextCoding};
    use odbc_api::{Cursor, ResultSetMetadata};

    async fn round_trip(var: &str, db: &str) {
        let Some(conn) = std::env::var(var).ok().filter(|v| !v.is_empty()) else {
            eprintln!("{var} not set: skipped");
            return;
        };
        let url = format!("{conn};Database={db}");
        let pool = crate::db::Db::connect(&url, 1).await.unwrap();
        let table = format!("qz_rt_{}", uuid::Uuid::new_v4().simple());
        pool.execute_script(&format!("CREATE TABLE {table} (v VARCHAR(40), n BIGINT)"))
            .await
            .unwrap();
        for text in ["a", "ab", "黄埔海关 ABC 123", "进出口货物收发货人", ""] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
                .execute(&pool.any)
                .await
                .unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {table} (v, n) VALUES (?, ?)"
            )))
            .bind(text.to_string())
            .bind(7i64)
            .execute(&pool.any)
            .await
            .unwrap();
            let got = pool
                .text_rows(&format!("SELECT v, n, CHAR_LENGTH(v) FROM {table}"))
                .await
                .unwrap();
            assert_eq!(
                got,
                vec![vec![
                    Some(text.to_string()),
                    Some("7".into()),
                    Some(text.chars().count().to_string())
                ]],
                "{var}"
            );
        }
        pool.execute_script(&format!("DROP TABLE {table}"))
            .await
            .unwrap();
    }

    /// Writes gathered into one batch inside a transaction: all stored when it commits;
    /// when one statement fails, its error comes back and nothing of the batch stays.
    async fn gathered_writes(var: &str, db: &str) {
        use crate::db::writes::Writes;
        use sea_query::{Expr, ExprTrait, Query};
        let Some(conn) = std::env::var(var).ok().filter(|v| !v.is_empty()) else {
            eprintln!("{var} not set: skipped");
            return;
        };
        let db = crate::db::Db::connect(&format!("{conn};Database={db}"), 1)
            .await
            .unwrap();
        let table = format!("qz_wr_{}", uuid::Uuid::new_v4().simple());
        db.execute_script(&format!(
            "CREATE TABLE {table} (k BIGINT PRIMARY KEY, v VARCHAR(40))"
        ))
        .await
        .unwrap();
        let insert = |k: i64, v: &str| {
            Query::insert()
                .into_table(table.clone())
                .columns(["k", "v"])
                .values_panic([Expr::val(k), Expr::val(v)])
                .to_owned()
        };
        let rows = |db: &crate::db::Db| {
            let sql = format!("SELECT k, v FROM {table} ORDER BY k");
            let db = db.clone();
            async move { db.text_rows(&sql).await.unwrap() }
        };

        let mut tx = db.any.begin().await.unwrap();
        let mut w = Writes::new(db.backend);
        w.push(&insert(1, "黄埔海关"));
        w.push(&insert(2, "b"));
        w.push(
            &Query::update()
                .table(table.clone())
                .value("v", "二")
                .and_where(Expr::col("k").eq(2))
                .to_owned(),
        );
        w.run(&mut tx).await.unwrap();
        tx.commit().await.unwrap();
        let want = |pairs: &[(&str, &str)]| -> Vec<Vec<Option<String>>> {
            pairs
                .iter()
                .map(|(k, v)| vec![Some(k.to_string()), Some(v.to_string())])
                .collect()
        };
        assert_eq!(rows(&db).await, want(&[("1", "黄埔海关"), ("2", "二")]));

        // The second insert repeats a key: the first must not stay either.
        let mut tx = db.any.begin().await.unwrap();
        let mut w = Writes::new(db.backend);
        w.push(&insert(3, "c"));
        w.push(&insert(1, "again"));
        w.push(&insert(4, "d"));
        let err = w.run(&mut tx).await.unwrap_err();
        assert!(
            format!("{err:#}").to_lowercase().contains("dup"),
            "the driver's error comes back: {err:#}"
        );
        tx.rollback().await.unwrap();
        assert_eq!(rows(&db).await, want(&[("1", "黄埔海关"), ("2", "二")]));
        db.execute_script(&format!("DROP TABLE {table}"))
            .await
            .unwrap();
        db.close().await;
    }

    #[tokio::test]
    async fn gathered_writes_run_as_one_batch_through_psqlodbc() {
        gathered_writes("QIANZHI_TEST_ODBC_PG", "test").await;
    }

    #[tokio::test]
    async fn gathered_writes_run_as_one_batch_through_mariadb_odbc() {
        gathered_writes("QIANZHI_TEST_ODBC_MYSQL", "test").await;
    }

    #[tokio::test]
    async fn chinese_text_round_trips_through_psqlodbc() {
        round_trip("QIANZHI_TEST_ODBC_PG", "test").await;
        // UTF-16 always works; UTF-8 only in a UTF-8 locale (in another, psqlODBC refuses or
        // mangles narrow Chinese: "Could not convert the current data ... to wide chars"),
        // which is why a connection asks first (the next test).
        coded_round_trip("QIANZHI_TEST_ODBC_PG", "test", TextCoding::Wide);
        if utf8_locale() {
            coded_round_trip("QIANZHI_TEST_ODBC_PG", "test", TextCoding::Utf8);
        }
    }

    #[tokio::test]
    async fn chinese_text_round_trips_through_mariadb_odbc() {
        round_trip("QIANZHI_TEST_ODBC_MYSQL", "test").await;
        // Always UTF-8 there (TextCoding: Connector/ODBC 3.1 mangles wide Chinese).
        coded_round_trip("QIANZHI_TEST_ODBC_MYSQL", "test", TextCoding::Utf8);
    }

    /// A new connection picks UTF-8 exactly when the driver passes narrow text unchanged:
    /// always on MariaDB; on psqlODBC when the process's locale is UTF-8 (psqlODBC converts
    /// narrow text to the locale's encoding otherwise).
    #[test]
    fn the_text_coding_follows_the_driver_and_the_locale() {
        for (var, utf8) in [
            ("QIANZHI_TEST_ODBC_PG", utf8_locale()),
            ("QIANZHI_TEST_ODBC_MYSQL", true),
        ] {
            let Some(conn) = connect(var, "test") else {
                continue;
            };
            let want = if utf8 {
                TextCoding::Utf8
            } else {
                TextCoding::Wide
            };
            assert_eq!(TextCoding::of(&conn).unwrap(), want, "{var}");
        }
    }

    /// Column types asked without the catalog (`column_type`) are the ones odbc-api's
    /// concise-type path gives, for every type a source or control table uses.
    #[test]
    fn column_types_match_the_concise_types() {
        for (var, ddl) in [
            (
                "QIANZHI_TEST_ODBC_PG",
                "i INTEGER, b BIGINT, s SMALLINT, f DOUBLE PRECISION, r REAL, d DATE, \
                 ts TIMESTAMP, t6 TIMESTAMP(3), tm TIME, m NUMERIC(12,2), n NUMERIC(18,0), \
                 v VARCHAR(36), c CHAR(1), x TEXT, y BYTEA, z BOOLEAN",
            ),
            (
                "QIANZHI_TEST_ODBC_MYSQL",
                "i INTEGER, b BIGINT, s SMALLINT, f DOUBLE, r FLOAT, d DATE, \
                 ts DATETIME, t6 DATETIME(3), tm TIME, m DECIMAL(12,2), n DECIMAL(18,0), \
                 v VARCHAR(36), c CHAR(1), x TEXT, y LONGBLOB, z TINYINT(1)",
            ),
        ] {
            let Some(conn) = connect(var, "test") else {
                continue;
            };
            let table = format!("qz_types_{}", uuid::Uuid::new_v4().simple());
            conn.execute(&format!("CREATE TABLE {table} ({ddl})"), (), None)
                .unwrap();
            let mut cursor = conn
                .execute(&format!("SELECT * FROM {table}"), (), None)
                .unwrap()
                .unwrap();
            let n = cursor.num_result_cols().unwrap() as u16;
            assert_eq!(n, 16, "{var}");
            for i in 1..=n {
                let ours = super::super::column_type(&mut cursor, i).unwrap();
                assert_eq!(ours, cursor.col_data_type(i).unwrap(), "{var} column {i}");
            }
            drop(cursor);
            conn.execute(&format!("DROP TABLE {table}"), (), None)
                .unwrap();
        }
    }

    /// The codeset of the locale this process runs in, as setlocale(LC_CTYPE, "") reads it.
    fn utf8_locale() -> bool {
        let locale = ["LC_ALL", "LC_CTYPE", "LANG"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
            .unwrap_or_default()
            .to_ascii_lowercase();
        locale.ends_with(".utf-8") || locale.ends_with(".utf8")
    }

    fn conn_str(var: &str, db: &str) -> Option<String> {
        let Some(url) = std::env::var(var).ok().filter(|v| !v.is_empty()) else {
            eprintln!("{var} not set: skipped");
            return None;
        };
        let s = url.strip_prefix("odbc:").unwrap_or(&url);
        Some(format!("{s};Database={db}"))
    }

    /// A connection straight through odbc-api to `db` on the server of `var`, when set.
    fn connect(var: &str, db: &str) -> Option<odbc_api::Connection<'static>> {
        let conn_str = conn_str(var, db)?;
        let env = odbc_api::environment().unwrap();
        Some(
            env.connect_with_connection_string(&conn_str, ConnectionOptions::default())
                .unwrap(),
        )
    }

    /// Chinese text bound and read back with one coding, straight through odbc-api.
    fn coded_round_trip(var: &str, db: &str, coding: TextCoding) {
        let Some(conn) = connect(var, db) else {
            return;
        };
        let table = format!("qz_ct_{}", uuid::Uuid::new_v4().simple());
        conn.execute(&format!("CREATE TABLE {table} (v VARCHAR(40))"), (), None)
            .unwrap();
        for text in [
            "黄埔海关 ABC 123",
            "进出口货物收发货人",
            "𠀀𠀁 前置机",
            "a",
            "",
        ] {
            conn.execute(&format!("DELETE FROM {table}"), (), None)
                .unwrap();
            let params = [coding.param(Some(text))];
            conn.execute(
                &format!("INSERT INTO {table} (v) VALUES (?)"),
                &params[..],
                None,
            )
            .unwrap();
            let mut cursor = conn
                .execute(&format!("SELECT v FROM {table}"), (), None)
                .unwrap()
                .unwrap();
            let mut row = cursor.next_row().unwrap().unwrap();
            let got = coding.read(&mut row, 1, &mut TextBufs::default()).unwrap();
            assert_eq!(got.as_deref(), Some(text), "{var} {coding:?}");
        }
        conn.execute(&format!("DROP TABLE {table}"), (), None)
            .unwrap();
    }
}
