//! The ODBC backend (`database.url = "odbc:..."`): `migrate`, `check` and the ODBC pool through
//! unixODBC (every other end-to-end test has its own odbc_postgres / odbc_mysql variants)
//! against the local PostgreSQL (psqlODBC, dialect postgres) and MariaDB (MariaDB
//! Connector/ODBC, dialect mysql), when the binary has the `odbc` feature and
//! QIANZHI_TEST_ODBC_PG / QIANZHI_TEST_ODBC_MYSQL hold a connection string without a database
//! (`odbc:Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Uid=postgres`); the test adds
//! `;Database=` of a scratch database it makes through the native URL of QIANZHI_TEST_PG /
//! QIANZHI_TEST_MYSQL. Without the feature, `check` must say the binary lacks it.

use crate::helpers::*;
use qianzhi::db::Db;
use qianzhi::db::tools::{create_database, drop_database};
use std::process::Output;

#[derive(Debug, Clone, Copy)]
enum Driver {
    Postgres,
    Mysql,
}

impl Driver {
    fn var(self) -> &'static str {
        match self {
            Driver::Postgres => "QIANZHI_TEST_ODBC_PG",
            Driver::Mysql => "QIANZHI_TEST_ODBC_MYSQL",
        }
    }

    fn native(self) -> Which {
        match self {
            Driver::Postgres => Which::Postgres,
            Driver::Mysql => Which::Mysql,
        }
    }

    fn dialect(self) -> &'static str {
        match self {
            Driver::Postgres => "postgres",
            Driver::Mysql => "mysql",
        }
    }

    fn dbms(self) -> &'static [&'static str] {
        match self {
            Driver::Postgres => &["PostgreSQL"],
            Driver::Mysql => &["MariaDB", "MySQL"],
        }
    }
}

/// A config of one Guangdong job whose database is `url` (+ `extra` lines in `[database]`).
fn config(dir: &std::path::Path, url: &str, extra: &str) -> std::path::PathBuf {
    let token = dir.join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let text =
        qianzhi::tools::demo::gdzw_config(url, "http://127.0.0.1:1/x", &token, "", &["accept"], "")
            .replacen("[database]\n", &format!("[database]\n{extra}"), 1);
    let path = dir.join(format!("config-{}.toml", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, text).unwrap();
    path
}

fn qianzhi(cfg: &std::path::Path, args: &[&str]) -> Output {
    qianzhi_in(cfg, args, None)
}

/// As [`qianzhi`], with LC_ALL set to `locale` when given.
fn qianzhi_in(cfg: &std::path::Path, args: &[&str], locale: Option<&str>) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_qianzhi"));
    cmd.arg("--config")
        .arg(cfg)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("QIANZHI_DATABASE__URL");
    if let Some(l) = locale {
        cmd.env("LC_ALL", l);
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn migrate_and_check(driver: Driver) {
    let odbc = std::env::var(driver.var()).expect("ODBC suite built on but its variable is gone");
    let native = server(driver.native())
        .unwrap_or_else(|| panic!("{} needs the native server variable too", driver.var()));
    let dir = tempfile::tempdir().unwrap();
    let name = format!("qz_o_{}", uuid::Uuid::new_v4().simple());
    let native_url = create_database(&native, &name, false).await.unwrap();
    // A password in the URL must never show. PostgreSQL here trusts 127.0.0.1 and ignores it;
    // MariaDB would refuse root with a password it does not have.
    let pwd = match driver {
        Driver::Postgres => ";PWD=Zq7-secret",
        Driver::Mysql => "",
    };
    let url = format!("{odbc};Database={name}{pwd}");
    let cfg = config(
        dir.path(),
        &url,
        &format!("dialect = \"{}\"\n", driver.dialect()),
    );

    let first = qianzhi(&cfg, &["migrate"]);
    let out = text(&first);
    assert!(first.status.success(), "{out}");
    assert!(
        out.contains("applied migrations [1, 2, 3, 4, 5, 6, 7, 9, 10]"),
        "{out}"
    );
    let again = qianzhi(&cfg, &["migrate"]);
    assert!(text(&again).contains("up to date"), "{}", text(&again));

    // What ODBC created is what the native driver reads.
    let db = Db::connect(&native_url, 1).await.unwrap();
    assert_eq!(
        db.scalar_i64("SELECT COUNT(*) FROM qz_schema_version")
            .await
            .unwrap(),
        9
    );
    for table in [
        "qz_cursor",
        "qz_batch",
        "qz_outbox",
        "qz_lease",
        "qz_query_page",
    ] {
        let n = db
            .scalar_i64(&format!("SELECT COUNT(*) FROM {table}"))
            .await
            .unwrap();
        assert_eq!(n, 0, "{table}");
    }
    let cols = db.source_columns("qz_cursor").await.unwrap();
    assert!(cols.iter().any(|c| c == "retry_error"), "{cols:?}");
    db.close().await;

    // check: the driver and the dialect it reports, with and without database.dialect.
    for extra in [
        format!("dialect = \"{}\"\n", driver.dialect()),
        String::new(),
    ] {
        let cfg = config(dir.path(), &url, &extra);
        let out = text(&qianzhi(&cfg, &["check"]));
        assert!(out.contains("reachable through ODBC"), "{out}");
        assert!(
            driver
                .dbms()
                .iter()
                .any(|d| out.contains(&format!("DBMS {d}"))),
            "{out}"
        );
        assert!(
            out.contains(&format!("dialect {}", driver.dialect())),
            "{out}"
        );
        // Then every check of the other backends: control tables and privileges pass; the
        // job's source was never made here, and is named.
        assert!(out.contains("✓ privileges"), "{out}");
        assert!(out.contains("accept_changes cannot be read"), "{out}");
        assert!(!out.contains("Zq7"), "password shown: {out}");
    }
    // How text crosses the driver, by locale: psqlODBC converts narrow text to the locale's
    // encoding, so UTF-8 only in a UTF-8 locale (and `check` says how to get it); MariaDB
    // always UTF-8.
    for (locale, utf8) in [("C.UTF-8", true), ("C", matches!(driver, Driver::Mysql))] {
        let out = text(&qianzhi_in(&cfg, &["check"], Some(locale)));
        let want = if utf8 { "text UTF-8" } else { "text UTF-16" };
        assert!(out.contains(want), "{locale}: {out}");
        assert_eq!(out.contains("LANG=C.UTF-8"), !utf8, "{locale}: {out}");
        // Both drivers read a bound column again, so rows are fetched into bound buffers.
        assert!(out.contains("rows bound"), "{locale}: {out}");
    }
    // How a job's pages cross the driver: PostgreSQL packs a row into one value unless a
    // selected column has a type psqlODBC writes otherwise; MariaDB never packs.
    let db = Db::connect(&native_url, 1).await.unwrap();
    let catalog = qianzhi::schema::Catalog::load(None).unwrap();
    let dt = catalog.data_type("gdzw", "accept").unwrap();
    db.create_change_table(dt, "accept_changes").await.unwrap();
    let out = text(&qianzhi_in(&cfg, &["check"], Some("C.UTF-8")));
    let packed = matches!(driver, Driver::Postgres);
    assert_eq!(
        out.contains("✓ job accept: pages read packed"),
        packed,
        "{out}"
    );
    assert!(!out.contains("read column by column"), "{out}");
    if packed {
        db.execute_script(
            "ALTER TABLE accept_changes ALTER COLUMN address TYPE BOOLEAN USING (address <> '')",
        )
        .await
        .unwrap();
        let out = text(&qianzhi_in(&cfg, &["check"], Some("C.UTF-8")));
        assert!(
            out.contains(
                "⚠ job accept: pages read column by column through psqlODBC (slower: the driver \
                 converts every value): column address is bool"
            ),
            "{out}"
        );
        // Switched off, nothing is said.
        let off = config(
            dir.path(),
            &url,
            "dialect = \"postgres\"\nodbc_packed_rows = false\n",
        );
        let out = text(&qianzhi_in(&off, &["check"], Some("C.UTF-8")));
        assert!(!out.contains("pages read"), "{out}");
    }
    db.close().await;
    #[cfg(feature = "odbc")]
    statements_through_the_pool(&url, driver).await;
    drop_database(&native, &name).await.unwrap();
}

/// Rendered statements with bound values through the ODBC pool: Chinese text, NULL and
/// integers come back as written; an upsert (ON CONFLICT / ON DUPLICATE KEY with `?` in place
/// of PostgreSQL's `$n`) counts up; a rolled-back or abandoned transaction leaves nothing.
#[cfg(feature = "odbc")]
async fn statements_through_the_pool(url: &str, driver: Driver) {
    use qianzhi::config::Dialect;
    use qianzhi::db::Backend;
    use qianzhi::db::exec::{Cell, Executor};
    use qianzhi::db::oracle::{Set, Upsert};
    use sea_query::{Expr, ExprTrait, Query};
    let dialect = Dialect::from_name(driver.dialect()).unwrap();
    let backend = Backend::Odbc(dialect);
    let pool = qianzhi::db::odbc_pool::Pool::connect(url, 2).await.unwrap();
    let exec = Executor::Odbc(pool.clone());
    let insert = |key: &str| {
        Query::insert()
            .into_table("qz_error")
            .columns([
                "job",
                "source_key",
                "row_guid",
                "field",
                "rule",
                "message",
                "created_at",
            ])
            .values_panic([
                Expr::val("j1"),
                Expr::val(key.to_string()),
                Expr::val(None::<String>),
                Expr::val("XM"),
                Expr::val("required"),
                Expr::val("姓名不能为空 / XM is required"),
                Expr::val("2026-11-30 10:00:00"),
            ])
            .to_owned()
    };
    let (sql, values) = backend.build(&insert("张三-1"));
    assert_eq!(exec.execute(&sql, values.0.0).await.unwrap(), 1);
    let select = Query::select()
        .columns(["source_key", "row_guid", "message", "id"])
        .from("qz_error")
        .and_where(Expr::col("job").eq("j1"))
        .to_owned();
    let (sql, values) = backend.build(&select);
    let rows = exec.fetch_all(&sql, values.0.0).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][0], Cell::Text("张三-1".into()));
    assert_eq!(rows[0][1], Cell::Null);
    assert_eq!(
        rows[0][2].text().as_deref(),
        Some("姓名不能为空 / XM is required")
    );
    assert!(rows[0][3].int().is_some_and(|id| id > 0), "{rows:?}");

    // Transactions: rolled back, abandoned (dropped), committed.
    let count = |exec: Executor| async move {
        let q = Query::select()
            .expr(Expr::cust("COUNT(*)"))
            .from("qz_error")
            .to_owned();
        let (sql, values) = backend.build(&q);
        exec.fetch_all(&sql, values.0.0).await.unwrap()[0][0]
            .int()
            .unwrap()
    };
    let (sql, values) = backend.build(&insert("李四-2"));
    let mut c = pool.acquire().await.unwrap();
    c.begin().await.unwrap();
    c.execute(&sql, values.0.0.clone()).await.unwrap();
    c.rollback().await.unwrap();
    c.begin().await.unwrap();
    c.execute(&sql, values.0.0.clone()).await.unwrap();
    drop(c);
    assert_eq!(count(exec.clone()).await, 1);
    let mut c = pool.acquire().await.unwrap();
    c.begin().await.unwrap();
    c.execute(&sql, values.0.0).await.unwrap();
    c.commit().await.unwrap();
    drop(c);
    assert_eq!(count(exec.clone()).await, 2);

    // The Cd_Batch sequence's upsert shape, twice: 1, then 2.
    let upsert = Upsert {
        table: "qz_batch_seq",
        columns: vec!["unit_code", "batch_date", "last_seq"],
        values: vec![
            Expr::val(crate::UNIT),
            Expr::val("20261130"),
            Expr::val(1i64),
        ],
        keys: vec!["unit_code", "batch_date"],
        update: vec![(
            "last_seq",
            Set::To(Expr::col(("qz_batch_seq", "last_seq")).add(1)),
        )],
    };
    for want in [1, 2] {
        let (sql, values) = backend.build(&upsert.insert());
        exec.execute(&sql, values.0.0).await.unwrap();
        let q = Query::select()
            .column("last_seq")
            .from("qz_batch_seq")
            .to_owned();
        let (sql, values) = backend.build(&q);
        let rows = exec.fetch_all(&sql, values.0.0).await.unwrap();
        assert_eq!(rows[0][0].int(), Some(want), "{sql}");
    }
}

/// A data source nobody registered, and a driver nobody installed: `check` names the cause.
#[tokio::test]
async fn check_explains_a_missing_driver_or_dsn() {
    let dir = tempfile::tempdir().unwrap();
    for (url, hint) in [
        ("odbc:qz_no_such_dsn", "odbcinst -q -s"),
        (
            "odbc:Driver={qz No Such Driver};Server=127.0.0.1;PWD=Zq7-secret",
            "odbcinst -q -d",
        ),
    ] {
        let cfg = config(dir.path(), url, "dialect = \"dm\"\n");
        let o = qianzhi(&cfg, &["check"]);
        let out = text(&o);
        assert!(!o.status.success(), "{out}");
        assert!(!out.contains("Zq7"), "password shown: {out}");
        if cfg!(feature = "odbc") {
            assert!(out.contains(hint), "{out}");
            assert!(out.contains("未在 unixODBC 中注册"), "{out}");
        } else {
            assert!(out.contains("--features odbc"), "{out}");
            assert!(out.contains("未启用 ODBC 支持"), "{out}");
        }
    }
    // migrate --print needs no connection: the DM DDL, whatever the build.
    let cfg = config(dir.path(), "odbc:DM8", "dialect = \"dm\"\n");
    let o = qianzhi(&cfg, &["migrate", "--print"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("CREATE TABLE qz_batch ("), "{out}");
    assert!(
        out.contains("VARCHAR2(50 CHAR)") && out.contains("IDENTITY(1, 1)"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(qianzhi_test_odbc_pg),
    ignore = "QIANZHI_TEST_ODBC_PG not set or built without --features odbc: ODBC PostgreSQL suite off"
)]
async fn postgres_through_psqlodbc() {
    migrate_and_check(Driver::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(qianzhi_test_odbc_mysql),
    ignore = "QIANZHI_TEST_ODBC_MYSQL not set or built without --features odbc: ODBC MariaDB suite off"
)]
async fn mariadb_through_connector_odbc() {
    migrate_and_check(Driver::Mysql).await
}
