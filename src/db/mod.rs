//! The only place SQL runs: connection pools per backend, migrations, control tables, sources.

pub mod control;
pub mod dialect;
pub mod exec;
pub mod grants;
pub mod inspect;
pub mod lease;
pub mod migrate;
pub mod odbc;
#[cfg(feature = "odbc")]
pub mod odbc_any;
#[cfg(feature = "odbc")]
pub mod odbc_pool;
pub mod ops;
pub mod oracle;
pub mod query;
pub mod retry;
pub mod row_state;
pub mod snapshot;
pub mod source;
pub mod tools;
pub(crate) mod writes;

use crate::config::Dialect;
use anyhow::{Context, Result};
use sea_query::{MysqlQueryBuilder, PostgresQueryBuilder, SqliteQueryBuilder};
use sea_query_sqlx::{SqlxBinder, SqlxValues};
use sqlx::any::AnyPoolOptions;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    Mysql,
    /// An `odbc:` data source (the `odbc` feature), speaking the given dialect.
    Odbc(Dialect),
}

impl Backend {
    /// The backend of a URL; an `odbc:` URL needs its dialect (`database.dialect`, or the
    /// one the driver's DBMS name gives once connected: see [`odbc::connect`]).
    pub fn from_url(url: &str) -> Result<Backend> {
        Backend::with_dialect(url, None)
    }

    pub fn with_dialect(url: &str, dialect: Option<Dialect>) -> Result<Backend> {
        Ok(if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            Backend::Mysql
        } else if url.starts_with(crate::config::ODBC_SCHEME) {
            Backend::Odbc(dialect.context(
                "an odbc: URL needs database.dialect here (odbc: 连接串需配置 database.dialect): \
                 dm, kingbase, opengauss, oracle, postgres or mysql",
            )?)
        } else {
            anyhow::bail!(
                "database.url must start with sqlite:, postgres://, mysql:// or odbc: \
                 (须以 sqlite:、postgres://、mysql:// 或 odbc: 开头)"
            )
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::Mysql => "mysql",
            Backend::Odbc(_) => "odbc",
        }
    }

    /// The SQL family a server backend speaks, through its own driver or ODBC alike; SQLite
    /// is none of them. Code that differs by family asks here, not per backend and dialect.
    pub fn family(self) -> Option<dialect::Family> {
        match self {
            Backend::Sqlite => None,
            Backend::Postgres => Some(dialect::Family::Postgres),
            Backend::Mysql => Some(dialect::Family::Mysql),
            Backend::Odbc(d) => Some(dialect::Family::of(d)),
        }
    }

    /// Whether this backend speaks the SQL of `family` (natively or through ODBC).
    pub fn is(self, family: dialect::Family) -> bool {
        self.family() == Some(family)
    }

    /// The directory under `sql/` with this backend's control-table DDL.
    pub fn ddl_dir(self) -> &'static str {
        match self {
            Backend::Odbc(d) => dialect::ddl_dir(d),
            b => b.name(),
        }
    }

    /// Renders a sea-query statement in this backend's dialect: the SQL text and its values
    /// in placeholder order. The only place a dialect is chosen; every statement of `db/`
    /// (the DDL files in `sql/` aside) is built once and rendered here.
    pub fn build<S: SqlxBinder>(self, stmt: &S) -> (String, SqlxValues) {
        match self {
            Backend::Sqlite => stmt.build_sqlx(SqliteQueryBuilder),
            Backend::Postgres => stmt.build_sqlx(PostgresQueryBuilder),
            Backend::Mysql => stmt.build_sqlx(MysqlQueryBuilder),
            Backend::Odbc(d) => dialect::build(d, stmt),
        }
    }

    /// The type `CAST(x AS ...)` turns a value into text with: MySQL's CAST knows CHAR but
    /// not TEXT, and CHAR elsewhere means one character. sea-query has no portable name.
    pub fn text_cast_type(self) -> &'static str {
        match self {
            Backend::Mysql => "CHAR",
            Backend::Sqlite | Backend::Postgres => "TEXT",
            Backend::Odbc(d) => dialect::text_cast_type(d),
        }
    }
}

/// A constant written into the statement text (`'pending'`, `0`, `last_seq + 1`) rather than
/// bound: it is the same on every run, as it was in the hand-written SQL.
pub(crate) fn lit(v: impl Into<sea_query::Value>) -> sea_query::Expr {
    sea_query::Expr::Constant(v.into())
}

/// `PRAGMA cache_size` of every SQLite connection, in KiB when negative (see `Db::connect`).
const SQLITE_CACHE_SIZE: &str = "-256";

/// `n` placeholders for a statement rendered once as [`Sql`]; every run binds its own values
/// in their place, in order.
pub(crate) fn slots(n: usize) -> impl Iterator<Item = sea_query::Expr> {
    (0..n).map(|_| sea_query::Expr::val(sea_query::Value::String(None)))
}

/// A statement text rendered once and run many times, each time with its own values given in
/// placeholder order: the rows of one outbox commit, the chunks of an error insert. Building
/// it per row would cost the hot path a render for nothing; the text also stays the same,
/// so the driver's prepared-statement cache keeps hitting.
#[derive(Debug, Clone)]
pub(crate) struct Sql(Arc<str>);

impl Sql {
    pub(crate) fn new<S: SqlxBinder>(backend: Backend, stmt: &S) -> Sql {
        Sql(backend.build(stmt).0.into())
    }

    /// The statement with one run's values, for any pool (Any or a native one).
    pub(crate) fn with<'q, DB: sqlx::Database>(
        &self,
        values: Vec<sea_query::Value>,
    ) -> sqlx::query::Query<'q, DB, SqlxValues>
    where
        SqlxValues: sqlx::IntoArguments<DB>,
    {
        sqlx::query_with(
            sqlx::AssertSqlSafe(self.0.clone()),
            SqlxValues(sea_query::Values(values)),
        )
    }
}

/// Native pool for reading sources: only per-backend drivers decode DATE, TIMESTAMP, NUMERIC.
#[derive(Clone, Debug)]
pub enum SourcePool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
    Mysql(sqlx::MySqlPool),
    /// Every value typed by the column type the ODBC driver reports (`odbc_pool`).
    #[cfg(feature = "odbc")]
    Odbc(odbc_pool::Pool),
}

/// sqlx's `Any` drivers: the three built in, and ODBC with the `odbc` feature. Installed
/// once per process, before the first `Any` connection.
pub fn install_drivers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        sqlx::any::install_drivers(&[
            sqlx::postgres::any::DRIVER,
            sqlx::mysql::any::DRIVER,
            sqlx::sqlite::any::DRIVER,
            #[cfg(feature = "odbc")]
            odbc_any::DRIVER,
        ])
        .expect("sqlx Any drivers are installed only here");
    });
}

/// Control tables use only text and integers, so one `Any` pool serves all three backends.
#[derive(Clone, Debug)]
pub struct Db {
    pub backend: Backend,
    pub any: sqlx::AnyPool,
    pub source: SourcePool,
}

/// A connection string fit for a message: the password of `user:password@` and the value of
/// every secret-looking parameter (`?password=`, `&sslpassword=`, `password=` of a key-value
/// DSN, `Pwd=...;` of an ODBC-like string) become `***`. Every message, log line and status
/// line that shows a database URL goes through here.
pub fn redact_url(url: &str) -> String {
    redact_params(&redact_userinfo(url))
}

/// `scheme://user:password@host` with the password hidden. The `url` crate finds it in a
/// well-formed URL, percent-encoded or not. A password holding an unencoded `/`, `?` or `#`
/// ends the authority early (`postgres://u:12/3@h/db` reads as host `u`, port 12), which
/// shows as an `@` after the host or as no URL at all: then everything between the first
/// `:` after `://` and the last `@` goes, at worst hiding more than the password.
fn redact_userinfo(s: &str) -> String {
    if let Ok(mut u) = url::Url::parse(s) {
        let at_after_host = u[url::Position::AfterPort..].contains('@');
        if !at_after_host {
            let has_password = u.password().is_some();
            return if has_password && u.set_password(Some("***")).is_ok() {
                u.to_string()
            } else {
                s.to_string()
            };
        }
    }
    let Some(start) = s.find("://").map(|i| i + 3) else {
        return s.to_string();
    };
    match s.rfind('@').filter(|&at| at > start) {
        Some(at) => match s[start..at].find(':') {
            Some(c) => format!("{}***{}", &s[..start + c + 1], &s[at..]),
            None => s.to_string(),
        },
        None => s.to_string(),
    }
}

/// How parameters are written: after `?` joined by `&` (URL), `k=v;` (ODBC-like) or
/// `k=v k='v w'` (libpq key-value DSN).
#[derive(Clone, Copy, PartialEq, Eq)]
enum ParamForm {
    Url,
    Semicolon,
    Spaces,
}

/// The values of secret-looking parameters become `***`, whole: through the closing quote or
/// brace, or up to the form's separator (so `#`, `@` or `=` inside a password go too).
fn redact_params(s: &str) -> String {
    let form = if s.contains("://") {
        ParamForm::Url
    } else if s.contains(';') {
        ParamForm::Semicolon
    } else {
        ParamForm::Spaces
    };
    let starts_key = |prev: Option<char>| match (form, prev) {
        (_, None) => true,
        (ParamForm::Url, Some(c)) => matches!(c, '?' | '&' | ';'),
        (ParamForm::Semicolon, Some(c)) => c == ';' || c.is_whitespace(),
        (ParamForm::Spaces, Some(c)) => c.is_whitespace(),
    };
    let is_key_char = |c: char| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '%' | '+');
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut prev: Option<char> = None;
    while let Some(c) = rest.chars().next() {
        if starts_key(prev) && is_key_char(c) {
            let key_len = rest.find(|c: char| !is_key_char(c)).unwrap_or(rest.len());
            let key = &rest[..key_len];
            let after_key = &rest[key_len..];
            let gap = if form == ParamForm::Url {
                ""
            } else {
                &after_key[..after_key.len() - after_key.trim_start_matches(' ').len()]
            };
            if let Some(after_eq) = after_key[gap.len()..].strip_prefix('=') {
                let lead = after_eq.len() - after_eq.trim_start_matches(' ').len();
                let value = &after_eq[lead..];
                let value_len = param_value_len(value, form);
                if value_len > 0 && is_secret_param(key, form) {
                    let head = key_len + gap.len() + 1 + lead;
                    out.push_str(&rest[..head]);
                    out.push_str("***");
                    rest = &rest[head + value_len..];
                    prev = Some('*');
                    continue;
                }
            }
        }
        out.push(c);
        prev = Some(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn is_secret_param(key: &str, form: ParamForm) -> bool {
    if form == ParamForm::Url {
        // `pass%77ord` is `password` to the driver.
        let decoded: String = form_urlencoded::parse(key.as_bytes())
            .map(|(k, _)| k.into_owned())
            .collect();
        crate::mask::is_secret_key(&decoded) || crate::mask::is_secret_key(key)
    } else {
        crate::mask::is_secret_key(key)
    }
}

/// Byte length of a parameter value at the start of `v`.
fn param_value_len(v: &str, form: ParamForm) -> usize {
    let quoted = |close: char, escape: Option<char>| {
        let mut chars = v.char_indices().skip(1);
        while let Some((i, c)) = chars.next() {
            if Some(c) == escape {
                chars.next();
            } else if c == close {
                // ODBC doubles a closing brace inside a braced value.
                if close == '}' && v[i + 1..].starts_with('}') {
                    chars.next();
                    continue;
                }
                return i + 1;
            }
        }
        v.len() // unterminated: all of it
    };
    match (form, v.chars().next()) {
        (_, None) => 0,
        (ParamForm::Url, _) => v.find('&').unwrap_or(v.len()),
        (ParamForm::Semicolon, Some('{')) => quoted('}', None),
        (ParamForm::Semicolon, _) => v.find(';').unwrap_or(v.len()),
        (ParamForm::Spaces, Some(q @ ('\'' | '"'))) => quoted(q, Some('\\')),
        (ParamForm::Spaces, _) => v.find(char::is_whitespace).unwrap_or(v.len()),
    }
}

impl Db {
    /// The database of a URL; an `odbc:` one speaks the dialect its driver's DBMS name gives
    /// (see [`Db::connect_as`] for a configured one).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db> {
        Db::connect_as(url, None, max_connections).await
    }

    /// The database of a URL; `dialect` is `database.dialect`, which only `odbc:` URLs read.
    pub async fn connect_as(
        url: &str,
        dialect: Option<Dialect>,
        max_connections: u32,
    ) -> Result<Db> {
        // SQLite keeps a page cache per connection (2 MiB each by default), and the two pools
        // on one file hold up to twice `max_connections` of them: that was most of the
        // difference in peak memory between SQLite and the server backends. The operating
        // system caches the file as well, so a smaller cache costs little.
        let (lo, hi) = crate::config::ranges::MAX_CONNECTIONS;
        anyhow::ensure!(
            (lo..=hi).contains(&max_connections),
            "database.max_connections = {max_connections} is out of range: use {lo} to {hi}"
        );
        install_drivers();
        if url.starts_with(crate::config::ODBC_SCHEME) {
            return Db::connect_odbc(url, dialect, max_connections).await;
        }
        let backend = Backend::from_url(url)?;
        let url = url.replacen("mariadb://", "mysql://", 1);
        let shown = redact_url(&url);
        let acquire = Duration::from_secs(10);
        let source = match backend {
            Backend::Sqlite => {
                let opts = sqlx::sqlite::SqliteConnectOptions::from_str(&url)?
                    .create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(30))
                    .pragma("cache_size", SQLITE_CACHE_SIZE);
                SourcePool::Sqlite(
                    sqlx::pool::PoolOptions::new()
                        .max_connections(max_connections)
                        .acquire_timeout(acquire)
                        .connect_with(opts)
                        .await
                        .with_context(|| format!("cannot open {shown}"))?,
                )
            }
            Backend::Postgres => SourcePool::Postgres(
                sqlx::pool::PoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(acquire)
                    .connect(&url)
                    .await
                    .with_context(|| format!("cannot connect to {shown}"))?,
            ),
            Backend::Mysql => SourcePool::Mysql(
                sqlx::pool::PoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(acquire)
                    .connect(&url)
                    .await
                    .with_context(|| format!("cannot connect to {shown}"))?,
            ),
            Backend::Odbc(_) => unreachable!("odbc: URLs connect in connect_odbc"),
        };
        // SQLite: the WAL journal was set by the source pool; the Any pool only needs the
        // busy timeout so writers queue instead of failing.
        let any_url = if backend == Backend::Sqlite && !url.contains('?') {
            format!("{url}?mode=rwc")
        } else {
            url.clone()
        };
        let any = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        sqlx::Executor::execute(&mut *conn, "PRAGMA busy_timeout = 30000").await?;
                        let cache = format!("PRAGMA cache_size = {SQLITE_CACHE_SIZE}");
                        sqlx::Executor::execute(&mut *conn, sqlx::AssertSqlSafe(cache)).await?;
                    }
                    Ok(())
                })
            })
            .connect(&any_url)
            .await
            .with_context(|| format!("cannot connect to {shown}"))?;
        Ok(Db {
            backend,
            any,
            source,
        })
    }

    /// An `odbc:` database: sources through the ODBC pool, control tables through sqlx's
    /// `Any` with the ODBC driver (`odbc_any`), both on the connection string of the URL.
    #[cfg(feature = "odbc")]
    async fn connect_odbc(url: &str, dialect: Option<Dialect>, max_connections: u32) -> Result<Db> {
        let pool = odbc_pool::Pool::connect(url, max_connections).await?;
        let dialect = match dialect {
            Some(d) => d,
            None => {
                let dbms = pool.dbms_name().await?;
                dialect::from_dbms_name(&dbms).ok_or_else(|| {
                    anyhow::anyhow!(
                        "the driver reports DBMS \"{dbms}\", which qianzhi does not know: set \
                         database.dialect (无法从 DBMS 名称判断方言，请配置 database.dialect)"
                    )
                })?
            }
        };
        let shown = redact_url(url);
        let any = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&odbc_any::any_url(&odbc::connection_string(url)?))
            .await
            .with_context(|| format!("cannot connect to {shown}"))?;
        Ok(Db {
            backend: Backend::Odbc(dialect),
            any,
            source: SourcePool::Odbc(pool),
        })
    }

    #[cfg(not(feature = "odbc"))]
    async fn connect_odbc(_: &str, _: Option<Dialect>, _: u32) -> Result<Db> {
        Err(odbc::not_built())
    }

    /// A transaction that writes control tables. On PostgreSQL its commit is made durable
    /// whatever the server, database or role default says: with `synchronous_commit = off`
    /// a crash right after the outbox commit could lose it, and the same changes would be
    /// numbered again under a reused Cd_Batch. `SET LOCAL` (not a session setting) also
    /// holds behind a transaction-pooling PgBouncer.
    ///
    /// On SQLite it begins IMMEDIATE: a deferred transaction that reads first and writes later
    /// fails at once with SQLITE_BUSY(_SNAPSHOT) when another connection wrote in between,
    /// whatever the busy timeout; an immediate one waits for the write lock instead.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        let mut tx = match self.backend {
            Backend::Sqlite => self.any.begin_with("BEGIN IMMEDIATE").await?,
            _ => self.any.begin().await?,
        };
        if self.backend.family() == Some(dialect::Family::Postgres) {
            sqlx::query("SET LOCAL synchronous_commit = on")
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }

    /// Commits a control-table write transaction; `write` names it for the test hook
    /// `QIANZHI_FAILPOINT=transient:<write>:<times>` (`retry::failpoint`), which fails it
    /// here, after every statement ran, as a deadlock at the last moment would.
    pub(crate) async fn commit_write(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Any>,
        write: &str,
    ) -> Result<()> {
        retry::failpoint::check(self.backend, &mut tx, write).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A control-table statement rendered for this backend, to run on the Any pool.
    pub(crate) fn stmt<S: SqlxBinder>(
        &self,
        s: &S,
    ) -> sqlx::query::Query<'static, sqlx::Any, SqlxValues> {
        let (sql, values) = self.backend.build(s);
        sqlx::query_with(sqlx::AssertSqlSafe(sql), values)
    }

    /// [`Db::stmt`] for a statement that selects one column.
    pub(crate) fn stmt_scalar<O, S: SqlxBinder>(
        &self,
        s: &S,
    ) -> sqlx::query::QueryScalar<'static, sqlx::Any, O, SqlxValues>
    where
        (O,): for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
    {
        let (sql, values) = self.backend.build(s);
        sqlx::query_scalar_with(sqlx::AssertSqlSafe(sql), values)
    }

    pub async fn close(&self) {
        self.any.close().await;
        match &self.source {
            SourcePool::Sqlite(p) => p.close().await,
            SourcePool::Postgres(p) => p.close().await,
            SourcePool::Mysql(p) => p.close().await,
            #[cfg(feature = "odbc")]
            SourcePool::Odbc(p) => p.close().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_every_password_form() {
        for (u, want) in [
            // user:password@ in a URL, plain and percent-encoded.
            (
                "postgres://qz:s3cret@db:5432/x",
                "postgres://qz:***@db:5432/x",
            ),
            (
                "postgresql://qz:p%40ss%2Fw%3Fd@db/x",
                "postgresql://qz:***@db/x",
            ),
            ("mysql://u:pw@h/db", "mysql://u:***@h/db"),
            ("mariadb://u:abc==@h/db", "mariadb://u:***@h/db"),
            // Unencoded @, / ? # in the password.
            ("postgres://u:p@ss@h/db", "postgres://u:***@h/db"),
            ("postgres://u:12/3@h/db", "postgres://u:***@h/db"),
            ("postgres://u:a?b@h/db", "postgres://u:***@h/db"),
            ("postgres://u:a#b@h/db", "postgres://u:***@h/db"),
            // Query parameters.
            (
                "postgres://u@h/db?password=pw",
                "postgres://u@h/db?password=***",
            ),
            (
                "postgres://h/db?sslmode=disable&password=pw",
                "postgres://h/db?sslmode=disable&password=***",
            ),
            (
                "postgres://h/db?password=pw&sslmode=disable",
                "postgres://h/db?password=***&sslmode=disable",
            ),
            (
                "postgres://h/db?sslpassword=k3y&user=u",
                "postgres://h/db?sslpassword=***&user=u",
            ),
            (
                "mysql://u:pw@h/db?ssl-mode=x&password=pw",
                "mysql://u:***@h/db?ssl-mode=x&password=***",
            ),
            (
                "postgres://h/db?PASSWORD=p%26w",
                "postgres://h/db?PASSWORD=***",
            ),
            (
                "postgres://h/db?pass%77ord=pw",
                "postgres://h/db?pass%77ord=***",
            ),
            (
                "postgres://h/db?password=p#w",
                "postgres://h/db?password=***",
            ),
            // libpq key-value DSN.
            ("host=h password=pw user=u", "host=h password=*** user=u"),
            ("password = pw host=h", "password = *** host=h"),
            (
                "host=h password='p w\\' x' user=u",
                "host=h password=*** user=u",
            ),
            // ODBC-like.
            (
                "Server=h;Uid=u;Password=pw;Database=d",
                "Server=h;Uid=u;Password=***;Database=d",
            ),
            ("Server=h; PWD={a;b}}c};", "Server=h; PWD=***;"),
            // Nothing secret: unchanged.
            ("mysql://root@127.0.0.1/test", "mysql://root@127.0.0.1/test"),
            (
                "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
                "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
            ),
            ("sqlite://a.db", "sqlite://a.db"),
            ("sqlite:a.db?mode=rwc", "sqlite:a.db?mode=rwc"),
            (
                "sqlite:///var/lib/qianzhi/主库.db",
                "sqlite:///var/lib/qianzhi/主库.db",
            ),
        ] {
            assert_eq!(redact_url(u), want, "{u}");
        }
    }

    #[test]
    fn no_password_survives_redaction() {
        let secret = "Zq7-secret";
        for u in [
            format!("postgres://u:{secret}@h/db"),
            format!("postgres://u@h/db?password={secret}"),
            format!("postgres://u@h/db?sslmode=require&password={secret}"),
            format!("mysql://u:{secret}@h/db?ssl-mode=x&password={secret}"),
            format!("host=h password={secret} user=u"),
            format!("Password={secret};Server=h"),
            format!("postgres://u:{secret}/x@h/db"),
        ] {
            let shown = redact_url(&u);
            assert!(!shown.contains("Zq7"), "{u} -> {shown}");
        }
    }
}
