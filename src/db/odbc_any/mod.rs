//! sqlx's `Any` driver over ODBC (the `odbc` feature): installed beside the PostgreSQL, MySQL
//! and SQLite drivers (see [`super::install_drivers`]), so every control-table statement,
//! transaction and fence of `db/` runs through ODBC unchanged. The SQL text comes from the
//! dialect (`Backend::Odbc`, `?` placeholders); this module only carries it to the driver.
//!
//! odbc-api calls block, so each one runs on tokio's blocking threads with the connection
//! moved there and back. A transaction is autocommit off, turned off with its first statement
//! (one thread hop fewer per transaction); one dropped unfinished is rolled back before the
//! connection runs anything else. Result values come back as the column types say: integers
//! as BIGINT, floats as DOUBLE, binary as BLOB, everything else as text (an integral NUMERIC,
//! as `SUM()` gives on PostgreSQL, as BIGINT).
//!
//! sqlx's `Database` trait wants a full set of types; `Any` uses only the connection's
//! [`AnyConnectionBackend`] side, so the row, value and argument types (`types.rs`) are thin
//! wrappers of `Any`'s own. `values.rs` carries values across the driver.

#[cfg(test)]
mod tests;
mod types;
mod values;

pub use types::{
    OdbcArguments, OdbcColumn, OdbcRow, OdbcStatement, OdbcTypeInfo, OdbcValue, OdbcValueRef,
};
pub use values::OdbcDatabaseError;
pub(crate) use values::{TextBufs, TextCoding, column_type};

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use odbc_api::ConnectionOptions;
use sqlx_core::Either;
use sqlx_core::any::{
    AnyArguments, AnyConnectOptions, AnyConnectionBackend, AnyQueryResult, AnyRow, AnyStatement,
    AnyTypeInfo, AnyValueKind,
};
use sqlx_core::connection::{ConnectOptions, Connection};
use sqlx_core::database::Database;
use sqlx_core::error::Error;
use sqlx_core::sql_str::SqlStr;
use sqlx_core::transaction::{Transaction, TransactionManager};
use std::sync::Arc;
use values::{odbc_error, param, read_rows};

/// The URL scheme of the driver; the connection string follows, percent-encoded
/// ([`any_url`]) so that braces, spaces and `;` survive sqlx's URL parsing.
const SCHEME: &str = "odbc";

/// The `Any` URL of an ODBC connection string.
pub fn any_url(conn_str: &str) -> String {
    use sqlx_core::percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let enc = utf8_percent_encode(conn_str, NON_ALPHANUMERIC);
    format!("{SCHEME}:{enc}")
}

/// The driver `Any` connects `odbc:` URLs with.
pub const DRIVER: sqlx_core::any::driver::AnyDriver =
    sqlx_core::any::driver::AnyDriver::without_migrate::<Odbc>();

/// The ODBC "database" of sqlx's type system.
#[derive(Debug)]
pub struct Odbc;

impl Database for Odbc {
    type Connection = OdbcConnection;
    type TransactionManager = OdbcTransactionManager;
    type Row = OdbcRow;
    type QueryResult = AnyQueryResult;
    type Column = OdbcColumn;
    type TypeInfo = OdbcTypeInfo;
    type Value = OdbcValue;
    type ValueRef<'r> = OdbcValueRef<'r>;
    type Arguments = OdbcArguments;
    type ArgumentBuffer = Vec<AnyValueKind>;
    type Statement = OdbcStatement;
    const NAME: &'static str = "ODBC";
    const URL_SCHEMES: &'static [&'static str] = &[SCHEME];
}

/// Where to connect: the ODBC connection string (it may hold a password: never shown).
#[derive(Clone)]
pub struct OdbcConnectOptions {
    conn_str: String,
}

impl std::fmt::Debug for OdbcConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "OdbcConnectOptions({})",
            super::redact_url(&self.conn_str)
        )
    }
}

impl std::str::FromStr for OdbcConnectOptions {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let url = s.parse::<sqlx_core::Url>().map_err(Error::config)?;
        Self::from_url(&url)
    }
}

impl TryFrom<&AnyConnectOptions> for OdbcConnectOptions {
    type Error = Error;

    fn try_from(o: &AnyConnectOptions) -> Result<Self, Error> {
        Self::from_url(&o.database_url)
    }
}

impl ConnectOptions for OdbcConnectOptions {
    type Connection = OdbcConnection;

    fn from_url(url: &sqlx_core::Url) -> Result<Self, Error> {
        let enc = url
            .as_str()
            .strip_prefix(SCHEME)
            .and_then(|s| s.strip_prefix(':'))
            .ok_or_else(|| Error::Configuration("not an odbc: URL".into()))?;
        let conn_str = sqlx_core::percent_encoding::percent_decode_str(enc)
            .decode_utf8()
            .map_err(Error::config)?
            .into_owned();
        Ok(OdbcConnectOptions { conn_str })
    }

    async fn connect(&self) -> Result<OdbcConnection, Error> {
        let conn_str = self.conn_str.clone();
        let (conn, coding) = tokio::task::spawn_blocking(move || {
            let env = odbc_api::environment().map_err(odbc_error)?;
            let conn = env
                .connect_with_connection_string(&conn_str, ConnectionOptions::default())
                .map_err(odbc_error)?;
            let coding = TextCoding::of(&conn).map_err(odbc_error)?;
            Ok::<_, Error>((conn, coding))
        })
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))??;
        Ok(OdbcConnection {
            conn: Some(conn),
            coding,
            depth: 0,
            begin_pending: false,
            rollback_pending: false,
        })
    }

    fn log_statements(self, _: log::LevelFilter) -> Self {
        self
    }

    fn log_slow_statements(self, _: log::LevelFilter, _: std::time::Duration) -> Self {
        self
    }
}

/// One ODBC connection.
pub struct OdbcConnection {
    /// Away on a blocking thread while a call runs; lost (and the connection with it) if the
    /// caller gave up waiting, after which every call fails and the pool drops it.
    conn: Option<odbc_api::Connection<'static>>,
    coding: TextCoding,
    /// 1 inside a transaction (ODBC has no savepoints through this driver).
    depth: usize,
    /// A transaction has begun and nothing has run in it yet: autocommit is turned off
    /// before the next statement, on the same blocking thread.
    begin_pending: bool,
    /// A transaction was dropped unfinished: rolled back before the next call.
    rollback_pending: bool,
}

impl std::fmt::Debug for OdbcConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OdbcConnection")
            .field("open", &self.conn.is_some())
            .field("depth", &self.depth)
            .finish()
    }
}

impl OdbcConnection {
    /// Runs `f` with the connection on a blocking thread, after the rollback of a transaction
    /// dropped unfinished and the start of one just begun.
    async fn run<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut odbc_api::Connection<'static>) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let mut c = self.conn.take().ok_or_else(|| {
            Error::Io(std::io::Error::other(
                "the ODBC connection was lost when a call on it was abandoned",
            ))
        })?;
        let rollback = std::mem::take(&mut self.rollback_pending);
        let begin = std::mem::take(&mut self.begin_pending);
        let (c, r) = tokio::task::spawn_blocking(move || {
            let r = (|| {
                if rollback {
                    c.rollback().map_err(odbc_error)?;
                    c.set_autocommit(true).map_err(odbc_error)?;
                }
                if begin {
                    c.set_autocommit(false).map_err(odbc_error)?;
                }
                f(&mut c)
            })();
            (c, r)
        })
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))?;
        self.conn = Some(c);
        r
    }

    /// Commits or rolls back, then turns autocommit back on; nothing to do when nothing ran.
    async fn end_transaction(&mut self, commit: bool) -> Result<(), Error> {
        if std::mem::take(&mut self.begin_pending) {
            self.depth = 0;
            return Ok(());
        }
        self.run(move |c| {
            let end = if commit { c.commit() } else { c.rollback() };
            end.map_err(odbc_error)?;
            c.set_autocommit(true).map_err(odbc_error)
        })
        .await?;
        self.depth = 0;
        Ok(())
    }

    async fn query(
        &mut self,
        sql: SqlStr,
        args: Option<AnyArguments>,
    ) -> Result<(Vec<AnyRow>, u64), Error> {
        let values = args.map(|a| a.values.0).unwrap_or_default();
        let coding = self.coding;
        self.run(move |c| {
            let Some(batch) = split_batch(sql.as_str(), values.len())? else {
                return execute(c, sql.as_str(), values, coding);
            };
            let mut values = values.into_iter();
            let mut affected = 0;
            for (text, n) in batch {
                let part = values.by_ref().take(n).collect();
                affected += execute(c, text, part, coding)?.1;
            }
            Ok((Vec::new(), affected))
        })
        .await
    }
}

impl AnyConnectionBackend for OdbcConnection {
    fn name(&self) -> &str {
        Odbc::NAME
    }

    fn close(mut self: Box<Self>) -> BoxFuture<'static, Result<(), Error>> {
        let conn = self.conn.take();
        Box::pin(async move {
            if let Some(c) = conn {
                // Disconnecting is a round trip; a failure leaves nothing to do.
                let _ = tokio::task::spawn_blocking(move || drop(c)).await;
            }
            Ok(())
        })
    }

    fn close_hard(self: Box<Self>) -> BoxFuture<'static, Result<(), Error>> {
        self.close()
    }

    fn ping(&mut self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let dead = self.run(|c| c.is_dead().map_err(odbc_error)).await?;
            if dead {
                return Err(Error::Io(std::io::Error::other("ODBC connection is dead")));
            }
            Ok(())
        })
    }

    fn begin(&mut self, statement: Option<SqlStr>) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            if statement.is_some() {
                return Err(Error::Configuration(
                    "ODBC begins a transaction by turning autocommit off; no BEGIN statement"
                        .into(),
                ));
            }
            if self.depth > 0 {
                return Err(Error::InvalidSavePointStatement);
            }
            self.begin_pending = true;
            self.depth = 1;
            Ok(())
        })
    }

    fn commit(&mut self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(self.end_transaction(true))
    }

    fn rollback(&mut self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(self.end_transaction(false))
    }

    fn start_rollback(&mut self) {
        if self.depth == 0 {
            return;
        }
        // Begun with nothing run: autocommit is still on, nothing to roll back.
        if !std::mem::take(&mut self.begin_pending) {
            self.rollback_pending = true;
        }
        self.depth = 0;
    }

    fn get_transaction_depth(&self) -> usize {
        self.depth
    }

    fn shrink_buffers(&mut self) {}

    fn flush(&mut self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            if self.rollback_pending {
                self.run(|_| Ok(())).await?;
            }
            Ok(())
        })
    }

    fn should_flush(&self) -> bool {
        self.rollback_pending
    }

    fn fetch_many(
        &mut self,
        query: SqlStr,
        _persistent: bool,
        arguments: Option<AnyArguments>,
    ) -> BoxStream<'_, Result<Either<AnyQueryResult, AnyRow>, Error>> {
        Box::pin(async_stream(self.query(query, arguments)))
    }

    fn fetch_optional(
        &mut self,
        query: SqlStr,
        _persistent: bool,
        arguments: Option<AnyArguments>,
    ) -> BoxFuture<'_, Result<Option<AnyRow>, Error>> {
        Box::pin(async move {
            let (rows, _) = self.query(query, arguments).await?;
            Ok(rows.into_iter().next())
        })
    }

    fn prepare_with<'c, 'q: 'c>(
        &'c mut self,
        sql: SqlStr,
        _parameters: &[AnyTypeInfo],
    ) -> BoxFuture<'c, Result<AnyStatement, Error>> {
        Box::pin(async move {
            Ok(AnyStatement {
                sql,
                parameters: None,
                column_names: Arc::new(sqlx_core::HashMap::new()),
                columns: Vec::new(),
            })
        })
    }
}

/// Runs one statement: its rows, or the number of rows it changed.
fn execute(
    c: &mut odbc_api::Connection<'static>,
    sql: &str,
    values: Vec<AnyValueKind>,
    coding: TextCoding,
) -> Result<(Vec<AnyRow>, u64), Error> {
    let params = values
        .into_iter()
        .map(|v| param(v, coding))
        .collect::<Result<Vec<_>, _>>()?;
    let mut stmt = c.preallocate().map_err(odbc_error)?;
    if let Some(cursor) = stmt.execute(sql, &params[..]).map_err(odbc_error)? {
        return Ok((read_rows(cursor, coding)?, 0));
    }
    let affected = stmt.row_count().map_err(odbc_error)?.unwrap_or(0) as u64;
    Ok((Vec::new(), affected))
}

/// How a batch's text begins: the number of arguments of each statement follows, then the
/// statements, each after a record separator (a character no statement of `db/` contains).
const BATCH_HEAD: &str = "/* qianzhi batch:";
const BATCH_SEP: char = '\u{1e}';

/// Statements run in one hop to the blocking thread, in order, each with its own share of the
/// arguments (see `db::writes`); their rows are not read, their changed rows are added up.
/// Without the driver's help: ODBC has no portable way to send several statements at once.
pub(crate) fn batch_sql(
    items: Vec<(Arc<str>, AnyArguments)>,
) -> Result<(String, AnyArguments), Error> {
    let mut head = String::from(BATCH_HEAD);
    let mut body = String::new();
    let mut all = AnyArguments::default();
    for (i, (sql, args)) in items.into_iter().enumerate() {
        if sql.contains(BATCH_SEP) {
            return Err(Error::Protocol(format!(
                "statement {} of a batch contains the batch separator",
                i + 1
            )));
        }
        if i > 0 {
            head.push(',');
        }
        head.push_str(&args.values.0.len().to_string());
        body.push(BATCH_SEP);
        body.push_str(&sql);
        all.values.0.extend(args.values.0);
    }
    head.push_str(" */");
    head.push_str(&body);
    Ok((head, all))
}

/// The statements of a batch ([`batch_sql`]) with the number of arguments each takes, checked
/// against the `values` that came with it; None for any other statement.
fn split_batch(sql: &str, values: usize) -> Result<Option<Vec<(&str, usize)>>, Error> {
    let Some(rest) = sql.strip_prefix(BATCH_HEAD) else {
        return Ok(None);
    };
    let bad = || Error::Protocol(format!("malformed statement batch: {sql:.80}"));
    let (counts, texts) = rest.split_once(" */").ok_or_else(bad)?;
    let counts = counts
        .split(',')
        .map(|n| n.parse::<usize>().map_err(|_| bad()))
        .collect::<Result<Vec<_>, _>>()?;
    let texts: Vec<&str> = texts.split(BATCH_SEP).skip(1).collect();
    if texts.len() != counts.len() || counts.iter().sum::<usize>() != values {
        return Err(bad());
    }
    Ok(Some(texts.into_iter().zip(counts).collect()))
}

/// The rows of a finished query as the stream `fetch_many` gives: every row, then the count
/// of rows changed.
fn async_stream<'a>(
    fut: impl std::future::Future<Output = Result<(Vec<AnyRow>, u64), Error>> + Send + 'a,
) -> impl futures_util::Stream<Item = Result<Either<AnyQueryResult, AnyRow>, Error>> + Send + 'a {
    use futures_util::{StreamExt, TryStreamExt};
    futures_util::stream::once(fut)
        .map_ok(|(rows, affected)| {
            let done = AnyQueryResult {
                rows_affected: affected,
                last_insert_id: None,
            };
            futures_util::stream::iter(
                rows.into_iter()
                    .map(Either::Right)
                    .chain(std::iter::once(Either::Left(done)))
                    .map(Ok),
            )
        })
        .try_flatten()
        .boxed()
}

impl Connection for OdbcConnection {
    type Database = Odbc;
    type Options = OdbcConnectOptions;

    async fn close(self) -> Result<(), Error> {
        AnyConnectionBackend::close(Box::new(self)).await
    }

    async fn close_hard(self) -> Result<(), Error> {
        AnyConnectionBackend::close(Box::new(self)).await
    }

    async fn ping(&mut self) -> Result<(), Error> {
        AnyConnectionBackend::ping(self).await
    }

    fn begin(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Transaction<'_, Odbc>, Error>> + Send + '_ {
        Transaction::begin(self, None)
    }

    fn shrink_buffers(&mut self) {}

    async fn flush(&mut self) -> Result<(), Error> {
        AnyConnectionBackend::flush(self).await
    }

    fn should_flush(&self) -> bool {
        self.rollback_pending
    }
}

/// Transactions of the ODBC connection, as `Any` runs them.
pub struct OdbcTransactionManager;

impl TransactionManager for OdbcTransactionManager {
    type Database = Odbc;

    async fn begin(conn: &mut OdbcConnection, statement: Option<SqlStr>) -> Result<(), Error> {
        AnyConnectionBackend::begin(conn, statement).await
    }

    async fn commit(conn: &mut OdbcConnection) -> Result<(), Error> {
        AnyConnectionBackend::commit(conn).await
    }

    async fn rollback(conn: &mut OdbcConnection) -> Result<(), Error> {
        AnyConnectionBackend::rollback(conn).await
    }

    fn start_rollback(conn: &mut OdbcConnection) {
        AnyConnectionBackend::start_rollback(conn)
    }

    fn get_transaction_depth(conn: &OdbcConnection) -> usize {
        AnyConnectionBackend::get_transaction_depth(conn)
    }
}
