//! sqlx's `Any` driver over ODBC (the `odbc` feature): installed beside the PostgreSQL, MySQL
//! and SQLite drivers (see [`super::install_drivers`]), so every control-table statement,
//! transaction and fence of `db/` runs through ODBC unchanged. The SQL text comes from the
//! dialect (`Backend::Odbc`, `?` placeholders); this file only carries it to the driver.
//!
//! odbc-api calls block, so each one runs on tokio's blocking threads with the connection
//! moved there and back. A transaction is autocommit off; one dropped unfinished is rolled
//! back before the connection runs anything else. Result values come back as the column
//! types say: integers as BIGINT, floats as DOUBLE, binary as BLOB, everything else as text
//! (an integral NUMERIC, as `SUM()` gives on PostgreSQL, as BIGINT).
//!
//! sqlx's `Database` trait wants a full set of types; `Any` uses only the connection's
//! [`AnyConnectionBackend`] side, so the row, value and argument types here are thin wrappers
//! of `Any`'s own.

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use odbc_api::parameter::{InputParameter, VarBinaryBox, VarCharBox, VarWCharBox};
use odbc_api::{Bit, ConnectionOptions, Cursor, CursorImpl, DataType, Nullable, ResultSetMetadata};
use sqlx_core::Either;
use sqlx_core::any::{
    AnyArguments, AnyColumn, AnyConnectOptions, AnyConnectionBackend, AnyQueryResult, AnyRow,
    AnyStatement, AnyTypeInfo, AnyTypeInfoKind, AnyValue, AnyValueKind,
};
use sqlx_core::connection::{ConnectOptions, Connection};
use sqlx_core::database::Database;
use sqlx_core::error::{DatabaseError, Error, ErrorKind};
use sqlx_core::ext::ustr::UStr;
use sqlx_core::sql_str::SqlStr;
use sqlx_core::transaction::{Transaction, TransactionManager};
use std::borrow::Cow;
use std::sync::Arc;

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
    /// dropped unfinished.
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
        let (c, r) = tokio::task::spawn_blocking(move || {
            let r = (|| {
                if rollback {
                    c.rollback().map_err(odbc_error)?;
                    c.set_autocommit(true).map_err(odbc_error)?;
                }
                f(&mut c)
            })();
            (c, r)
        })
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))?;
        self.conn = Some(c);
        if rollback {
            self.depth = 0;
        }
        r
    }

    async fn query(
        &mut self,
        sql: SqlStr,
        args: Option<AnyArguments>,
    ) -> Result<(Vec<AnyRow>, u64), Error> {
        let values = args.map(|a| a.values.0).unwrap_or_default();
        let coding = self.coding;
        self.run(move |c| {
            let params = values
                .into_iter()
                .map(|v| param(v, coding))
                .collect::<Result<Vec<_>, _>>()?;
            let mut stmt = c.preallocate().map_err(odbc_error)?;
            let rows = match stmt
                .execute(sql.as_str(), &params[..])
                .map_err(odbc_error)?
            {
                Some(cursor) => return Ok((read_rows(cursor, coding)?, 0)),
                None => Vec::new(),
            };
            let affected = stmt.row_count().map_err(odbc_error)?.unwrap_or(0) as u64;
            Ok((rows, affected))
        })
        .await
    }
}

/// Every row of a result, each value typed by its column.
fn read_rows(
    mut cursor: CursorImpl<odbc_api::handles::StatementRef<'_>>,
    coding: TextCoding,
) -> Result<Vec<AnyRow>, Error> {
    let n = u16::try_from(cursor.num_result_cols().map_err(odbc_error)?).unwrap_or(0);
    let mut columns = Vec::with_capacity(usize::from(n));
    let mut kinds = Vec::with_capacity(usize::from(n));
    let mut names = sqlx_core::HashMap::new();
    for i in 1..=n {
        let name = cursor.col_name(i).map_err(odbc_error)?;
        let kind = Kind::of(cursor.col_data_type(i).map_err(odbc_error)?);
        let ordinal = usize::from(i - 1);
        names.insert(UStr::new(&name), ordinal);
        columns.push(AnyColumn {
            ordinal,
            name: UStr::new(&name),
            type_info: AnyTypeInfo {
                kind: kind.type_kind(),
            },
        });
        kinds.push(kind);
    }
    let names = Arc::new(names);
    let mut rows = Vec::new();
    let mut text = TextBufs::default();
    let mut bytes = Vec::new();
    while let Some(mut row) = cursor.next_row().map_err(odbc_error)? {
        let mut values = Vec::with_capacity(kinds.len());
        for (i, kind) in (1..=n).zip(&kinds) {
            let null = AnyValueKind::Null(kind.type_kind());
            let v = match kind {
                Kind::Int => {
                    let mut x = Nullable::<i64>::null();
                    row.get_data(i, &mut x).map_err(odbc_error)?;
                    x.into_opt().map_or(null, AnyValueKind::BigInt)
                }
                Kind::Float => {
                    let mut x = Nullable::<f64>::null();
                    row.get_data(i, &mut x).map_err(odbc_error)?;
                    x.into_opt().map_or(null, AnyValueKind::Double)
                }
                Kind::Bool => {
                    let mut x = Nullable::<Bit>::null();
                    row.get_data(i, &mut x).map_err(odbc_error)?;
                    x.into_opt()
                        .map_or(null, |b| AnyValueKind::Bool(b.as_bool()))
                }
                Kind::Blob => {
                    if row.get_binary(i, &mut bytes).map_err(odbc_error)? {
                        AnyValueKind::Blob(Arc::new(std::mem::take(&mut bytes)))
                    } else {
                        null
                    }
                }
                Kind::Text | Kind::Numeric => {
                    match coding.read(&mut row, i, &mut text).map_err(Error::Decode)? {
                        Some(s) => match (kind, s.trim().parse::<i64>()) {
                            (Kind::Numeric, Ok(n)) => AnyValueKind::BigInt(n),
                            _ => AnyValueKind::Text(Arc::new(s)),
                        },
                        None => null,
                    }
                }
            };
            values.push(AnyValue { kind: v });
        }
        rows.push(AnyRow {
            column_names: names.clone(),
            columns: columns.clone(),
            values,
        });
    }
    Ok(rows)
}

/// How text crosses the driver: as UTF-16 (SQL_C_WCHAR), which every Unicode driver converts
/// to and from the database's encoding itself, except on MariaDB and MySQL. Their
/// Connector/ODBC (3.1) miscounts a wide value whose UTF-8 form is longer than its UTF-16 one
/// (all Chinese): it stores a NUL after it and drops its last character when reading it back.
/// There text goes as UTF-8 (SQL_C_CHAR), the connection's character set (utf8mb4 unless the
/// connection string sets CHARSET= otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextCoding {
    Wide,
    Utf8,
}

/// The buffers text values are fetched into, kept over the rows of a result. Large enough
/// for most values in one call.
pub(crate) struct TextBufs {
    wide: Vec<u16>,
    narrow: Vec<u8>,
}

impl Default for TextBufs {
    fn default() -> Self {
        TextBufs {
            wide: Vec::with_capacity(4096),
            narrow: Vec::with_capacity(4096),
        }
    }
}

impl TextCoding {
    /// The coding of a connection just opened, by the DBMS the driver reports.
    pub(crate) fn of(conn: &odbc_api::Connection<'_>) -> Result<TextCoding, odbc_api::Error> {
        let dbms = conn.database_management_system_name()?;
        if !(dbms.contains("MariaDB") || dbms.contains("MySQL")) {
            return Ok(TextCoding::Wide);
        }
        Ok(TextCoding::Utf8)
    }

    pub(crate) fn param(self, s: Option<&str>) -> Box<dyn InputParameter> {
        match (self, s) {
            (TextCoding::Wide, Some(s)) => Box::new(VarWCharBox::from_str_slice(s)),
            (TextCoding::Wide, None) => Box::new(VarWCharBox::null()),
            (TextCoding::Utf8, Some(s)) => Box::new(VarCharBox::from_string(s.to_string())),
            (TextCoding::Utf8, None) => Box::new(VarCharBox::null()),
        }
    }

    /// One text value of the current row, or None for NULL.
    pub(crate) fn read(
        self,
        row: &mut odbc_api::CursorRow<'_>,
        col: u16,
        bufs: &mut TextBufs,
    ) -> Result<Option<String>, sqlx_core::error::BoxDynError> {
        Ok(match self {
            TextCoding::Wide => match row.get_wide_text(col, &mut bufs.wide)? {
                true => Some(String::from_utf16(&bufs.wide)?),
                false => None,
            },
            TextCoding::Utf8 => match row.get_text(col, &mut bufs.narrow)? {
                true => Some(String::from_utf8(bufs.narrow.clone())?),
                false => None,
            },
        })
    }
}

/// How a column's values are fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Float,
    Bool,
    Blob,
    /// NUMERIC/DECIMAL: an integer when the value is one, its exact text otherwise.
    Numeric,
    Text,
}

impl Kind {
    fn of(t: DataType) -> Kind {
        match t {
            DataType::Integer | DataType::SmallInt | DataType::TinyInt | DataType::BigInt => {
                Kind::Int
            }
            DataType::Real | DataType::Float { .. } | DataType::Double => Kind::Float,
            DataType::Bit => Kind::Bool,
            DataType::Binary { .. }
            | DataType::Varbinary { .. }
            | DataType::LongVarbinary { .. } => Kind::Blob,
            DataType::Numeric { .. } | DataType::Decimal { .. } => Kind::Numeric,
            _ => Kind::Text,
        }
    }

    fn type_kind(self) -> AnyTypeInfoKind {
        match self {
            Kind::Int | Kind::Numeric => AnyTypeInfoKind::BigInt,
            Kind::Float => AnyTypeInfoKind::Double,
            Kind::Bool => AnyTypeInfoKind::Bool,
            Kind::Blob => AnyTypeInfoKind::Blob,
            Kind::Text => AnyTypeInfoKind::Text,
        }
    }
}

/// One bound value as an ODBC parameter (text as [`TextCoding`] says).
fn param(v: AnyValueKind, coding: TextCoding) -> Result<Box<dyn InputParameter>, Error> {
    let int = |n: Option<i64>| -> Box<dyn InputParameter> {
        Box::new(n.map_or_else(Nullable::null, Nullable::new))
    };
    let float = |f: Option<f64>| -> Box<dyn InputParameter> {
        Box::new(f.map_or_else(Nullable::null, Nullable::new))
    };
    Ok(match v {
        AnyValueKind::Null(k) => match k {
            AnyTypeInfoKind::SmallInt | AnyTypeInfoKind::Integer | AnyTypeInfoKind::BigInt => {
                int(None)
            }
            AnyTypeInfoKind::Real | AnyTypeInfoKind::Double => float(None),
            AnyTypeInfoKind::Blob => Box::new(VarBinaryBox::null()),
            _ => coding.param(None),
        },
        AnyValueKind::Bool(b) => Box::new(Nullable::new(Bit::from_bool(b))),
        AnyValueKind::SmallInt(n) => int(Some(n.into())),
        AnyValueKind::Integer(n) => int(Some(n.into())),
        AnyValueKind::BigInt(n) => int(Some(n)),
        AnyValueKind::Real(f) => float(Some(f.into())),
        AnyValueKind::Double(f) => float(Some(f)),
        AnyValueKind::Text(s) => coding.param(Some(&s)),
        AnyValueKind::TextSlice(s) => coding.param(Some(&s)),
        AnyValueKind::Blob(b) => Box::new(VarBinaryBox::from_vec(b.to_vec())),
        // Only the kind, never the value (it may be a source row's ID number).
        other => {
            return Err(Error::Encode(
                format!(
                    "ODBC cannot bind a value of this kind: {}",
                    kind_name(&other)
                )
                .into(),
            ));
        }
    })
}

fn kind_name(v: &AnyValueKind) -> &'static str {
    match v {
        AnyValueKind::Null(_) => "null",
        AnyValueKind::Blob(_) => "blob",
        _ => "other",
    }
}

/// An error the driver reported, with its SQLSTATE and native code, for
/// `retry::db_code`; the text has any password hidden.
#[derive(Debug)]
pub struct OdbcDatabaseError {
    pub state: String,
    pub native: i32,
    message: String,
}

impl std::fmt::Display for OdbcDatabaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OdbcDatabaseError {}

impl DatabaseError for OdbcDatabaseError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.state))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        match self.state.as_str() {
            "23505" => ErrorKind::UniqueViolation,
            "23503" => ErrorKind::ForeignKeyViolation,
            "23502" => ErrorKind::NotNullViolation,
            "23514" => ErrorKind::CheckViolation,
            // MySQL/MariaDB and many drivers report every integrity error as 23000.
            "23000" if self.native == 1062 => ErrorKind::UniqueViolation,
            _ => ErrorKind::Other,
        }
    }
}

fn odbc_error(e: odbc_api::Error) -> Error {
    // On one line, as log lines are read and searched.
    let text = e
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let message = super::redact_url(&text);
    match &e {
        odbc_api::Error::Diagnostics { record, .. } => {
            Error::Database(Box::new(OdbcDatabaseError {
                state: record.state.as_str().to_string(),
                native: record.native_error,
                message,
            }))
        }
        _ => Error::Io(std::io::Error::other(message)),
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
            self.run(|c| c.set_autocommit(false).map_err(odbc_error))
                .await?;
            self.depth = 1;
            Ok(())
        })
    }

    fn commit(&mut self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            self.run(|c| {
                c.commit().map_err(odbc_error)?;
                c.set_autocommit(true).map_err(odbc_error)
            })
            .await?;
            self.depth = 0;
            Ok(())
        })
    }

    fn rollback(&mut self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            self.run(|c| {
                c.rollback().map_err(odbc_error)?;
                c.set_autocommit(true).map_err(odbc_error)
            })
            .await?;
            self.depth = 0;
            Ok(())
        })
    }

    fn start_rollback(&mut self) {
        if self.depth > 0 {
            self.rollback_pending = true;
        }
    }

    fn get_transaction_depth(&self) -> usize {
        if self.rollback_pending { 0 } else { self.depth }
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

// The rest is what sqlx's `Database` trait asks for; `Any` reads rows as `AnyRow`, so these
// wrap `Any`'s own types.

#[derive(Debug, Clone, PartialEq)]
pub struct OdbcTypeInfo(AnyTypeInfo);

impl std::fmt::Display for OdbcTypeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl sqlx_core::type_info::TypeInfo for OdbcTypeInfo {
    fn is_null(&self) -> bool {
        self.0.is_null()
    }

    fn name(&self) -> &str {
        self.0.name()
    }
}

#[derive(Debug, Clone)]
pub struct OdbcColumn {
    ordinal: usize,
    name: String,
    type_info: OdbcTypeInfo,
}

impl sqlx_core::column::Column for OdbcColumn {
    type Database = Odbc;

    fn ordinal(&self) -> usize {
        self.ordinal
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn type_info(&self) -> &OdbcTypeInfo {
        &self.type_info
    }
}

pub struct OdbcRow {
    columns: Vec<OdbcColumn>,
    values: Vec<OdbcValue>,
}

impl sqlx_core::row::Row for OdbcRow {
    type Database = Odbc;

    fn columns(&self) -> &[OdbcColumn] {
        &self.columns
    }

    fn try_get_raw<I>(&self, index: I) -> Result<OdbcValueRef<'_>, Error>
    where
        I: sqlx_core::column::ColumnIndex<Self>,
    {
        let i = index.index(self)?;
        self.values
            .get(i)
            .map(|v| OdbcValueRef(&v.0))
            .ok_or(Error::ColumnIndexOutOfBounds {
                index: i,
                len: self.values.len(),
            })
    }
}

#[derive(Debug, Clone)]
pub struct OdbcValue(AnyValueKind);

fn type_info_of(v: &AnyValueKind) -> OdbcTypeInfo {
    use sqlx_core::value::Value;
    OdbcTypeInfo(AnyValue { kind: v.clone() }.type_info().into_owned())
}

impl sqlx_core::value::Value for OdbcValue {
    type Database = Odbc;

    fn as_ref(&self) -> OdbcValueRef<'_> {
        OdbcValueRef(&self.0)
    }

    fn type_info(&self) -> Cow<'_, OdbcTypeInfo> {
        Cow::Owned(type_info_of(&self.0))
    }

    fn is_null(&self) -> bool {
        matches!(self.0, AnyValueKind::Null(_))
    }
}

pub struct OdbcValueRef<'r>(&'r AnyValueKind);

impl<'r> sqlx_core::value::ValueRef<'r> for OdbcValueRef<'r> {
    type Database = Odbc;

    fn to_owned(&self) -> OdbcValue {
        OdbcValue(self.0.clone())
    }

    fn type_info(&self) -> Cow<'_, OdbcTypeInfo> {
        Cow::Owned(type_info_of(self.0))
    }

    fn is_null(&self) -> bool {
        matches!(self.0, AnyValueKind::Null(_))
    }
}

#[derive(Default)]
pub struct OdbcArguments(Vec<AnyValueKind>);

impl sqlx_core::arguments::Arguments for OdbcArguments {
    type Database = Odbc;

    fn reserve(&mut self, additional: usize, _size: usize) {
        self.0.reserve(additional);
    }

    fn add<'t, T>(&mut self, value: T) -> Result<(), sqlx_core::error::BoxDynError>
    where
        T: sqlx_core::encode::Encode<'t, Odbc> + sqlx_core::types::Type<Odbc>,
    {
        let _null = value.encode(&mut self.0)?;
        Ok(())
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

impl sqlx_core::arguments::IntoArguments<Odbc> for OdbcArguments {
    fn into_arguments(self) -> OdbcArguments {
        self
    }
}

#[derive(Debug, Clone)]
pub struct OdbcStatement {
    sql: SqlStr,
    columns: Vec<OdbcColumn>,
}

impl sqlx_core::statement::Statement for OdbcStatement {
    type Database = Odbc;

    fn into_sql(self) -> SqlStr {
        self.sql
    }

    fn sql(&self) -> &SqlStr {
        &self.sql
    }

    fn parameters(&self) -> Option<Either<&[OdbcTypeInfo], usize>> {
        None
    }

    fn columns(&self) -> &[OdbcColumn] {
        &self.columns
    }

    sqlx_core::impl_statement_query!(OdbcArguments);
}

#[cfg(test)]
mod tests {
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

#[cfg(test)]
mod server_tests {
    //! Against the servers of QIANZHI_TEST_ODBC_PG / QIANZHI_TEST_ODBC_MYSQL (their default
    //! databases), when set.

    async fn round_trip(var: &str, db: &str) {
        let Some(conn) = std::env::var(var).ok().filter(|v| !v.is_empty()) else {
            eprintln!("{var} not set: skipped");
            return;
        };
        let url = format!("{conn};Database={db}");
        let pool = super::super::Db::connect(&url, 1).await.unwrap();
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
