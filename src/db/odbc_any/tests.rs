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

mod server_tests {
    //! Against the servers of QIANZHI_TEST_ODBC_PG / QIANZHI_TEST_ODBC_MYSQL (their default
    //! databases), when set.

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

    #[tokio::test]
    async fn chinese_text_round_trips_through_psqlodbc() {
        round_trip("QIANZHI_TEST_ODBC_PG", "test").await;
    }

    #[tokio::test]
    async fn chinese_text_round_trips_through_mariadb_odbc() {
        round_trip("QIANZHI_TEST_ODBC_MYSQL", "test").await;
    }
}
