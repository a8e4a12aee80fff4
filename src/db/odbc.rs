//! The ODBC backend's connection (`database.url = "odbc:..."`, the `odbc` cargo feature):
//! the ODBC connection string of a URL, what the driver manager's SQLSTATEs mean for a DBA
//! (driver or DSN not registered, driver library missing, server unreachable, password), and
//! the probe `check` runs. Without the feature every entry point says how to get it.

use crate::config::{Dialect, ODBC_SCHEME};
use anyhow::Result;

/// Whether this binary was built with the `odbc` feature (and so links unixODBC).
pub const BUILT: bool = cfg!(feature = "odbc");

/// The error of an `odbc:` URL in a binary built without the feature.
pub fn not_built() -> anyhow::Error {
    anyhow::anyhow!(
        "this qianzhi was built without ODBC support: build it with \
         `cargo build --release --features odbc` (needs unixodbc-dev), or use a package built so \
         (本程序构建时未启用 ODBC 支持：请用 `cargo build --release --features odbc` 构建，需先安装 unixodbc-dev)"
    )
}

/// The ODBC connection string of an `odbc:` URL: `odbc:NAME` is the data source NAME of
/// odbc.ini (`DSN=NAME`); anything with `=` in it is a connection string already
/// (`Driver={DM8 ODBC DRIVER};Server=...;UID=...;PWD=...`), passed on as written.
pub fn connection_string(url: &str) -> Result<String> {
    let rest = url.strip_prefix(ODBC_SCHEME).ok_or_else(|| {
        anyhow::anyhow!(
            "not an odbc: URL (不是 odbc: 连接串): {}",
            super::redact_url(url)
        )
    })?;
    let rest = rest.trim();
    anyhow::ensure!(
        !rest.is_empty(),
        "odbc: needs a DSN name or a connection string (odbc: 后须写数据源名或连接串)"
    );
    if rest.contains('=') {
        return Ok(rest.to_string());
    }
    anyhow::ensure!(
        !rest.contains(['{', '}', ';']),
        "odbc:{rest} is neither a DSN name nor a key=value connection string \
         (既不是数据源名，也不是 键=值 连接串)"
    );
    Ok(format!("DSN={rest}"))
}

/// unixODBC takes a driver name it does not know for a library path, so an unregistered
/// driver and a missing library look alike ("Can't open lib").
const DRIVER_LIBRARY: &str = "the driver's library cannot be loaded: either the driver name is \
     not registered with unixODBC (`odbcinst -q -d` lists /etc/odbcinst.ini), or its Driver= \
     path does not exist or `ldd` finds something missing (DM: LD_LIBRARY_PATH must hold the DM \
     bin directory) (驱动库无法加载：驱动名未在 unixODBC 中注册（odbcinst -q -d），或 Driver= 路径 \
     不存在、ldd 有缺失；达梦需把 bin 目录加入 LD_LIBRARY_PATH)";

/// What a SQLSTATE from connecting means, and what to do, in Chinese and English. `message`
/// is the driver manager's text (unixODBC says "Can't open lib" under the general 01000).
pub fn explain(state: &str, message: &str) -> Option<&'static str> {
    let hint = match state {
        "IM002" => {
            "the data source (DSN) or driver named in the URL is not registered with unixODBC: \
             `odbcinst -q -s` lists the DSNs of odbc.ini, `odbcinst -q -d` the drivers of \
             odbcinst.ini (README, ODBC) (数据源或驱动未在 unixODBC 中注册：用 odbcinst -q -s / -q -d 查看，\
             在 /etc/odbc.ini、/etc/odbcinst.ini 中登记)"
        }
        "IM003" => DRIVER_LIBRARY,
        "01000" if message.contains("Can't open lib") => DRIVER_LIBRARY,
        "IM004" | "IM005" | "IM006" => {
            "the driver loaded but failed to start: reinstall it or check its own log \
             (驱动已加载但初始化失败：请重装驱动或查看驱动日志)"
        }
        "08001" | "08S01" | "HYT00" => {
            "the driver could not reach the database server: check Server/Host and port in the DSN \
             and the firewall (驱动无法连接数据库服务器：检查 DSN 中的地址、端口和防火墙)"
        }
        "28000" | "28P01" => {
            "the server refused the user name or password (服务器拒绝了用户名或口令)"
        }
        _ => return None,
    };
    Some(hint)
}

/// What `check` learns from connecting once.
#[derive(Debug, Clone)]
pub struct Probe {
    /// `SQLGetInfo(SQL_DBMS_NAME)`: `PostgreSQL`, `MariaDB`, `DM`, `Oracle`, ...
    pub dbms: String,
    /// `database.dialect`, or the one the DBMS name gives.
    pub dialect: Dialect,
    /// How text crosses the driver: UTF-8 where it passes through unchanged (a UTF-8 locale,
    /// MariaDB/MySQL), else UTF-16 (slower: `check` says how to change it).
    pub text_utf8: bool,
    /// Source rows are fetched a row at a time into bound buffers; false: value by value
    /// (slower), where the driver cannot read a bound column again.
    pub bound_rows: bool,
}

/// Connects once through unixODBC and asks the driver what it is (a blocking call: run it on
/// a blocking thread). Every message has the password of the URL hidden.
#[cfg(feature = "odbc")]
pub fn probe(url: &str, configured: Option<Dialect>) -> Result<Probe> {
    let shown = super::redact_url(url);
    let (conn, driver) = super::odbc_pool::open(&connection_string(url)?, &shown)?;
    let dbms = conn
        .database_management_system_name()
        .map_err(|e| connect_error(&shown, &e))?;
    let dialect = match configured.or_else(|| super::dialect::from_dbms_name(&dbms)) {
        Some(d) => d,
        None => anyhow::bail!(
            "{shown}: the driver reports DBMS \"{dbms}\", which qianzhi does not know: set \
             database.dialect (dm, kingbase, opengauss, oracle, postgres or mysql) \
             (无法从 DBMS 名称判断方言，请配置 database.dialect)"
        ),
    };
    Ok(Probe {
        dbms,
        dialect,
        text_utf8: driver.coding == super::odbc_any::TextCoding::Utf8,
        bound_rows: driver.bound_rows,
    })
}

/// The control tables' connection of an `odbc:` URL and its backend (the dialect configured,
/// or the one the driver's DBMS name gives).
#[cfg(feature = "odbc")]
pub async fn control(
    url: &str,
    configured: Option<Dialect>,
    max_connections: u32,
) -> Result<(super::exec::Executor, super::Backend)> {
    let pool = super::odbc_pool::Pool::connect(url, max_connections).await?;
    let dialect = match configured {
        Some(d) => d,
        None => {
            let dbms = pool.dbms_name().await?;
            super::dialect::from_dbms_name(&dbms).ok_or_else(|| {
                anyhow::anyhow!(
                    "the driver reports DBMS \"{dbms}\", which qianzhi does not know: set \
                     database.dialect (无法从 DBMS 名称判断方言，请配置 database.dialect)"
                )
            })?
        }
    };
    Ok((
        super::exec::Executor::Odbc(pool),
        super::Backend::Odbc(dialect),
    ))
}

#[cfg(not(feature = "odbc"))]
pub async fn control(
    _url: &str,
    _configured: Option<Dialect>,
    _max_connections: u32,
) -> Result<(super::exec::Executor, super::Backend)> {
    Err(not_built())
}

#[cfg(not(feature = "odbc"))]
pub fn probe(_url: &str, _configured: Option<Dialect>) -> Result<Probe> {
    Err(not_built())
}

/// An ODBC error as a DBA reads it: the driver's text (password hidden), its SQLSTATE, and
/// what the state means.
#[cfg(feature = "odbc")]
pub(crate) fn connect_error(shown: &str, e: &odbc_api::Error) -> anyhow::Error {
    let text = super::redact_url(&e.to_string());
    let hint = match e {
        odbc_api::Error::Diagnostics { record, .. } => explain(record.state.as_str(), &text),
        _ => None,
    };
    match hint {
        Some(h) => anyhow::anyhow!("cannot connect to {shown} (无法连接): {text}; {h}"),
        None => anyhow::anyhow!("cannot connect to {shown} (无法连接): {text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_connection_strings() {
        for (url, want) in [
            ("odbc:DM8", Some("DSN=DM8")),
            ("odbc: qz_pg ", Some("DSN=qz_pg")),
            (
                "odbc:Driver={DM8 ODBC DRIVER};Server=10.0.0.5;TCP_PORT=5236;UID=QZ;PWD=x",
                Some("Driver={DM8 ODBC DRIVER};Server=10.0.0.5;TCP_PORT=5236;UID=QZ;PWD=x"),
            ),
            (
                "odbc:DSN=qz_pg;UID=postgres",
                Some("DSN=qz_pg;UID=postgres"),
            ),
            ("odbc:", None),
            ("odbc:a;b", None),
            ("postgres://h/db", None),
        ] {
            assert_eq!(connection_string(url).ok().as_deref(), want, "{url}");
        }
    }

    #[test]
    fn no_password_in_any_odbc_message() {
        let url = "odbc:Driver={DM8 ODBC DRIVER};Server=h;UID=QZ;PWD={Zq7;secret}";
        assert_eq!(
            super::super::redact_url(url),
            "odbc:Driver={DM8 ODBC DRIVER};Server=h;UID=QZ;PWD=***"
        );
        let bad = "odbc:Server=h;Password=Zq7-secret;x";
        assert!(!super::super::redact_url(bad).contains("Zq7"));
        let e = connection_string("odbc:Zq7;secret")
            .unwrap_err()
            .to_string();
        assert!(e.contains("neither"), "{e}");
    }

    #[test]
    fn sqlstates_are_explained() {
        for (state, message, says) in [
            (
                "IM002",
                "Data source name not found",
                Some("odbcinst -q -s"),
            ),
            ("IM003", "Specified driver could not be loaded", Some("ldd")),
            (
                "01000",
                "[unixODBC][Driver Manager]Can't open lib '/opt/dm/libdodbc.so'",
                Some("odbcinst -q -d"),
            ),
            ("01000", "General warning", None),
            ("08001", "could not connect to server", Some("端口")),
            ("28P01", "password authentication failed", Some("口令")),
            ("42000", "syntax error", None),
        ] {
            let got = explain(state, message);
            match says {
                Some(s) => assert!(got.is_some_and(|g| g.contains(s)), "{state}: {got:?}"),
                None => assert!(got.is_none(), "{state}: {got:?}"),
            }
        }
    }

    #[cfg(not(feature = "odbc"))]
    #[test]
    fn without_the_feature_odbc_says_how_to_get_it() {
        let e = probe("odbc:DM8", None).unwrap_err().to_string();
        assert!(
            e.contains("--features odbc") && e.contains("未启用 ODBC"),
            "{e}"
        );
    }

    /// Against the local PostgreSQL through psqlODBC, when the feature is on and the
    /// variable names a URL (`odbc:Driver={PostgreSQL Unicode};Server=127.0.0.1;...`).
    #[cfg(feature = "odbc")]
    #[test]
    fn probe_reports_the_driver_and_missing_drivers() {
        let e = probe("odbc:Driver={No Such Driver qz};Server=h", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("odbcinst") || e.contains("ldd"), "{e}");
        let e = probe("odbc:qz_no_such_dsn", None).unwrap_err().to_string();
        assert!(e.contains("odbcinst -q -s"), "{e}");
        let Ok(url) = std::env::var("QIANZHI_TEST_ODBC_PG") else {
            eprintln!("SKIPPED: QIANZHI_TEST_ODBC_PG is not set");
            return;
        };
        let p = probe(&url, None).unwrap();
        assert_eq!(p.dialect, Dialect::Postgres, "{}", p.dbms);
    }
}
