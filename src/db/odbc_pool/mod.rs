//! A small pool of ODBC connections (the `odbc` feature): odbc-api calls block, so every one
//! runs on tokio's blocking threads with the connection moved there and back; at most
//! `max_connections` are open; a transaction is a connection with autocommit off, rolled back
//! if it is dropped unfinished. Values are bound as parameters (text as the connection's
//! [`TextCoding`], integers as BIGINT, dates and timestamps as ODBC's own structs). `migrate`
//! reads results as text or NULL; source rows come back typed by the column types the driver
//! reports ([`Pool::source_rows`]), a row per SQLFetch into bound buffers where the driver
//! allows it (`bound`), or for PostgreSQL through psqlODBC one packed text value a row
//! ([`Pool::packed_page`], `packed`). The control tables of a running job go through sqlx's
//! `Any` instead (`odbc_any`).

mod bound;
mod packed;

pub(crate) use packed::packing_key;

use super::exec::Cell;
use super::odbc_any::{TextBufs, TextCoding, column_type};
use super::source::RowTexts;
use crate::value::{SourceRow, Value as SourceValue};
use anyhow::{Context, Result};
use odbc_api::handles::AsStatementRef;
use odbc_api::{
    Connection, ConnectionOptions, Cursor, DataType, Nullable, ResultSetMetadata,
    parameter::InputParameter,
};
use sea_query::Value;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    conn_str: String,
    /// The URL with its password hidden, for messages.
    shown: String,
    idle: Mutex<Vec<(Connection<'static>, Driver)>>,
    permits: Arc<Semaphore>,
    /// How source pages are read packed ([`packed`]).
    packings: packed::Packings,
}

/// What a connection's driver was found to do when it was opened (`check` shows both).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Driver {
    pub(crate) coding: TextCoding,
    /// Source rows are fetched into bound buffers ([`bound::works`]).
    pub(crate) bound_rows: bool,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "odbc::Pool({})", self.inner.shown)
    }
}

impl Pool {
    /// A pool for an `odbc:` URL; connects once so a wrong DSN fails here, explained.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Pool> {
        let pool = Pool {
            inner: Arc::new(Inner {
                conn_str: super::odbc::connection_string(url)?,
                shown: super::redact_url(url),
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(max_connections.max(1) as usize)),
                packings: packed::Packings::default(),
            }),
        };
        drop(pool.acquire().await?);
        Ok(pool)
    }

    /// A connection of the pool, waiting while all are in use.
    pub async fn acquire(&self) -> Result<Conn> {
        let permit = self.inner.permits.clone().acquire_owned().await?;
        let idle = self.inner.idle.lock().expect("odbc pool lock").pop();
        let conn = match idle {
            Some(c) => c,
            None => {
                let inner = self.inner.clone();
                tokio::task::spawn_blocking(move || open(&inner.conn_str, &inner.shown)).await??
            }
        };
        Ok(Conn {
            conn: Some(conn),
            pool: self.clone(),
            in_tx: false,
            _permit: permit,
        })
    }

    /// Closes the idle connections; those in use close when they come back.
    pub async fn close(&self) {
        self.inner.permits.close();
        let idle = std::mem::take(&mut *self.inner.idle.lock().expect("odbc pool lock"));
        let _ = tokio::task::spawn_blocking(move || drop(idle)).await;
    }

    /// The columns of a query's result, each with the SQL type the driver reports, without
    /// reading a row.
    pub async fn describe(&self, sql: String) -> Result<Vec<(String, String)>> {
        self.acquire()
            .await?
            .run(move |c, _| {
                let mut p = c.prepare(&sql).with_context(|| statement_context(&sql))?;
                let n = u16::try_from(p.num_result_cols()?).unwrap_or(0);
                (1..=n)
                    .map(|i| Ok((p.col_name(i)?, type_name(column_type(&mut p, i)?))))
                    .collect()
            })
            .await
    }

    /// `SQLGetInfo(SQL_DBMS_NAME)`: `PostgreSQL`, `MariaDB`, `DM`, `Oracle`, ...
    pub async fn dbms_name(&self) -> Result<String> {
        let mut c = self.acquire().await?;
        c.run(|c, _| Ok(c.database_management_system_name()?)).await
    }

    pub async fn execute(&self, sql: &str, values: Vec<Value>) -> Result<u64> {
        self.acquire().await?.execute(sql, values).await
    }

    /// The rows of a query on a source, each value typed by its column. With `chunks`, the
    /// rows go there `chunk` at a time as they are read (a snapshot of a large view) and
    /// none is returned; reading stops early when the receiver is gone.
    pub async fn source_rows(
        &self,
        sql: String,
        values: Vec<Value>,
        chunks: Option<(usize, tokio::sync::mpsc::Sender<Vec<SourceRow>>)>,
    ) -> Result<Vec<SourceRow>> {
        let mut conn = self.acquire().await?;
        conn.run(move |c, driver| read_source(c, driver, &sql, values, chunks))
            .await
    }

    pub async fn fetch_all(&self, sql: &str, values: Vec<Value>) -> Result<Vec<Vec<Cell>>> {
        self.acquire().await?.fetch_all(sql, values).await
    }
}

/// A new connection and what its driver does; every message has the password hidden
/// (`shown` is the URL as messages give it).
pub(crate) fn open(conn_str: &str, shown: &str) -> Result<(Connection<'static>, Driver)> {
    let env = odbc_api::environment().map_err(|e| {
        anyhow::anyhow!(
            "unixODBC could not start (unixODBC 无法初始化): {}",
            super::redact_url(&e.to_string())
        )
    })?;
    let conn = env
        .connect_with_connection_string(conn_str, ConnectionOptions::default())
        .map_err(|e| super::odbc::connect_error(shown, &e))?;
    let coding = TextCoding::of(&conn).map_err(|e| super::odbc::connect_error(shown, &e))?;
    let bound_rows = bound::works(&conn);
    Ok((conn, Driver { coding, bound_rows }))
}

/// One connection of a [`Pool`], back in it when dropped (rolled back first in a transaction).
pub struct Conn {
    conn: Option<(Connection<'static>, Driver)>,
    pool: Pool,
    in_tx: bool,
    _permit: OwnedSemaphorePermit,
}

impl Conn {
    /// Runs `f` with the connection on a blocking thread. If the caller gives up waiting, the
    /// connection stays there and is closed when `f` ends, never reused half-done.
    async fn run<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Connection<'static>, Driver) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let mut c = self.conn.take().context("ODBC connection lost")?;
        let (c, r) = tokio::task::spawn_blocking(move || {
            let r = f(&mut c.0, c.1);
            (c, r)
        })
        .await?;
        self.conn = Some(c);
        r
    }

    /// Runs a statement; the rows it changed.
    pub async fn execute(&mut self, sql: &str, values: Vec<Value>) -> Result<u64> {
        let sql = sql.to_string();
        self.run(move |c, driver| {
            let params = params(values, driver.coding)?;
            let mut stmt = c.preallocate()?;
            stmt.execute(&sql, &params[..])
                .with_context(|| statement_context(&sql))?;
            Ok(stmt.row_count()?.unwrap_or(0) as u64)
        })
        .await
    }

    /// Runs a query; every row, every column as text or NULL.
    pub async fn fetch_all(&mut self, sql: &str, values: Vec<Value>) -> Result<Vec<Vec<Cell>>> {
        let sql = sql.to_string();
        self.run(move |c, driver| {
            let coding = driver.coding;
            let params = params(values, coding)?;
            let mut rows = Vec::new();
            let Some(mut cursor) = c
                .execute(&sql, &params[..], None)
                .with_context(|| statement_context(&sql))?
            else {
                return Ok(rows);
            };
            let n = u16::try_from(cursor.num_result_cols()?).unwrap_or(0);
            let mut bufs = TextBufs::default();
            while let Some(mut row) = cursor.next_row()? {
                let mut cells = Vec::with_capacity(usize::from(n));
                for i in 1..=n {
                    let cell = match coding
                        .read(&mut row, i, &mut bufs)
                        .map_err(anyhow::Error::from_boxed)?
                    {
                        Some(t) => Cell::Text(t),
                        None => Cell::Null,
                    };
                    cells.push(cell);
                }
                rows.push(cells);
            }
            Ok(rows)
        })
        .await
    }

    pub async fn begin(&mut self) -> Result<()> {
        self.run(|c, _| Ok(c.set_autocommit(false)?)).await?;
        self.in_tx = true;
        Ok(())
    }

    pub async fn commit(&mut self) -> Result<()> {
        self.run(|c, _| {
            c.commit()?;
            Ok(c.set_autocommit(true)?)
        })
        .await?;
        self.in_tx = false;
        Ok(())
    }

    pub async fn rollback(&mut self) -> Result<()> {
        self.run(|c, _| {
            c.rollback()?;
            Ok(c.set_autocommit(true)?)
        })
        .await?;
        self.in_tx = false;
        Ok(())
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let Some((c, driver)) = self.conn.take() else {
            return;
        };
        // An unfinished transaction: rolled back before the connection is used again. The
        // call is short (one round trip); a connection that cannot roll back is closed.
        if self.in_tx && (c.rollback().is_err() || c.set_autocommit(true).is_err()) {
            return;
        }
        self.pool
            .inner
            .idle
            .lock()
            .expect("odbc pool lock")
            .push((c, driver));
    }
}

/// How a source column's values are read, from the type the driver reports for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceKind {
    Int,
    Float,
    /// NUMERIC/DECIMAL (Oracle and DM NUMBER): the exact text, as the native drivers give it.
    Decimal,
    Bool,
    Date,
    Timestamp,
    Bytes,
    Text,
}

impl SourceKind {
    pub(crate) fn of(t: DataType) -> SourceKind {
        match t {
            DataType::Integer | DataType::SmallInt | DataType::TinyInt | DataType::BigInt => {
                SourceKind::Int
            }
            DataType::Real | DataType::Float { .. } | DataType::Double => SourceKind::Float,
            // NUMBER(p,0) with p ≤ 18 (Oracle's and DM's integer columns) fits an i64.
            DataType::Numeric {
                precision: 1..=18,
                scale: 0,
            }
            | DataType::Decimal {
                precision: 1..=18,
                scale: 0,
            } => SourceKind::Int,
            DataType::Numeric { .. } | DataType::Decimal { .. } => SourceKind::Decimal,
            DataType::Bit => SourceKind::Bool,
            DataType::Date => SourceKind::Date,
            DataType::Timestamp { .. } => SourceKind::Timestamp,
            DataType::Binary { .. }
            | DataType::Varbinary { .. }
            | DataType::LongVarbinary { .. } => SourceKind::Bytes,
            _ => SourceKind::Text,
        }
    }
}

/// A column type as `check` and `inspect` show it.
fn type_name(t: DataType) -> String {
    let len = |l: Option<std::num::NonZeroUsize>| l.map_or(String::new(), |n| format!("({n})"));
    match t {
        DataType::Char { length } => format!("CHAR{}", len(length)),
        DataType::WChar { length } => format!("NCHAR{}", len(length)),
        DataType::Varchar { length } => format!("VARCHAR{}", len(length)),
        DataType::WVarchar { length } => format!("NVARCHAR{}", len(length)),
        DataType::LongVarchar { .. } | DataType::WLongVarchar { .. } => "CLOB".into(),
        DataType::Numeric { precision, scale } => format!("NUMERIC({precision},{scale})"),
        DataType::Decimal { precision, scale } => format!("DECIMAL({precision},{scale})"),
        DataType::Integer => "INTEGER".into(),
        DataType::SmallInt => "SMALLINT".into(),
        DataType::TinyInt => "TINYINT".into(),
        DataType::BigInt => "BIGINT".into(),
        DataType::Real => "REAL".into(),
        DataType::Float { .. } => "FLOAT".into(),
        DataType::Double => "DOUBLE".into(),
        DataType::Bit => "BIT".into(),
        DataType::Date => "DATE".into(),
        DataType::Time { .. } => "TIME".into(),
        DataType::Timestamp { .. } => "TIMESTAMP".into(),
        DataType::Binary { .. } | DataType::Varbinary { .. } => "VARBINARY".into(),
        DataType::LongVarbinary { .. } => "BLOB".into(),
        DataType::Other { data_type, .. } => format!("SQL type {}", data_type.0),
        DataType::Unknown => "UNKNOWN".into(),
    }
}

#[derive(Default)]
struct Bufs {
    text: TextBufs,
    bytes: Vec<u8>,
    /// The row's text values, checked and shared as the native PostgreSQL decoder does: one
    /// allocation per row.
    row_texts: RowTexts,
}

/// The rows of a source query on one connection (see [`Pool::source_rows`]).
fn read_source(
    c: &Connection<'_>,
    driver: Driver,
    sql: &str,
    values: Vec<Value>,
    chunks: Option<(usize, tokio::sync::mpsc::Sender<Vec<SourceRow>>)>,
) -> Result<Vec<SourceRow>> {
    let coding = driver.coding;
    let params = params(values, coding)?;
    let Some(mut cursor) = c
        .execute(sql, &params[..], None)
        .with_context(|| statement_context(sql))?
    else {
        return Ok(Vec::new());
    };
    let n = u16::try_from(cursor.num_result_cols()?).unwrap_or(0);
    let mut names = Vec::with_capacity(usize::from(n));
    let mut types = Vec::with_capacity(usize::from(n));
    for i in 1..=n {
        names.push(cursor.col_name(i)?);
        types.push(column_type(&mut cursor, i)?);
    }
    let names: Arc<[String]> = names.into();
    let mut sink = Sink {
        names: names.clone(),
        rows: Vec::new(),
        chunks,
    };
    if driver.bound_rows {
        let mut row = bound::BoundRow::new(&types, coding);
        row.read(cursor.as_stmt_ref(), &names, |values| sink.push(values))?;
        return Ok(sink.finish());
    }
    let mut bufs = Bufs::default();
    let kinds: Vec<SourceKind> = types.into_iter().map(SourceKind::of).collect();
    while let Some(mut row) = cursor.next_row()? {
        let mut values = Vec::with_capacity(kinds.len());
        for (i, kind) in (1..=n).zip(&kinds) {
            let v = read_value(&mut row, i, *kind, coding, &mut bufs)
                .with_context(|| format!("column {} ({kind:?})", names[usize::from(i) - 1]))?;
            values.push(v);
        }
        bufs.row_texts.fill(&mut values, &names)?;
        if !sink.push(values) {
            break;
        }
    }
    Ok(sink.finish())
}

/// Where the rows of a source query go: all returned at the end, or `chunk` at a time to a
/// receiver (a snapshot of a large view).
struct Sink {
    names: Arc<[String]>,
    rows: Vec<SourceRow>,
    chunks: Option<(usize, tokio::sync::mpsc::Sender<Vec<SourceRow>>)>,
}

impl Sink {
    /// Takes a row; false when the receiver of the chunks is gone and reading can stop.
    fn push(&mut self, values: Vec<SourceValue>) -> bool {
        self.rows.push(SourceRow {
            names: self.names.clone(),
            values,
        });
        match &self.chunks {
            Some((chunk, tx)) if self.rows.len() >= *chunk => {
                tx.blocking_send(std::mem::take(&mut self.rows)).is_ok()
            }
            _ => true,
        }
    }

    /// The rows read, or none when they went to the receiver (the last chunk sent here).
    fn finish(mut self) -> Vec<SourceRow> {
        let Some((_, tx)) = &self.chunks else {
            return self.rows;
        };
        if !self.rows.is_empty() {
            let _gone = tx.blocking_send(std::mem::take(&mut self.rows));
        }
        Vec::new()
    }
}

/// One value of a source row; a text value is NULL until `bufs.row_texts` fills it in.
fn read_value(
    row: &mut odbc_api::CursorRow<'_>,
    i: u16,
    kind: SourceKind,
    coding: TextCoding,
    bufs: &mut Bufs,
) -> Result<SourceValue> {
    Ok(match kind {
        SourceKind::Int => {
            let mut x = Nullable::<i64>::null();
            row.get_data(i, &mut x)?;
            x.into_opt().map_or(SourceValue::Null, SourceValue::Int)
        }
        SourceKind::Float => {
            let mut x = Nullable::<f64>::null();
            row.get_data(i, &mut x)?;
            x.into_opt().map_or(SourceValue::Null, SourceValue::Float)
        }
        SourceKind::Bool => {
            let mut x = Nullable::<odbc_api::Bit>::null();
            row.get_data(i, &mut x)?;
            x.into_opt()
                .map_or(SourceValue::Null, |b| SourceValue::Bool(b.as_bool()))
        }
        SourceKind::Date => {
            let mut x = Nullable::<odbc_api::sys::Date>::null();
            row.get_data(i, &mut x)?;
            date_value(x)?
        }
        SourceKind::Timestamp => {
            let mut x = Nullable::<odbc_api::sys::Timestamp>::null();
            row.get_data(i, &mut x)?;
            timestamp_value(x)?
        }
        SourceKind::Bytes => {
            if row.get_binary(i, &mut bufs.bytes)? {
                SourceValue::Bytes(std::mem::take(&mut bufs.bytes))
            } else {
                SourceValue::Null
            }
        }
        SourceKind::Decimal | SourceKind::Text => {
            let Some(bytes) = coding
                .read_utf8(row, i, &mut bufs.text)
                .map_err(anyhow::Error::from_boxed)?
            else {
                return Ok(SourceValue::Null);
            };
            if kind == SourceKind::Decimal {
                SourceValue::Decimal(std::str::from_utf8(bytes)?.trim().to_string())
            } else {
                bufs.row_texts.push(usize::from(i) - 1, bytes);
                SourceValue::Null
            }
        }
    })
}

fn date_value(x: Nullable<odbc_api::sys::Date>) -> Result<SourceValue> {
    let Some(d) = x.into_opt() else {
        return Ok(SourceValue::Null);
    };
    Ok(SourceValue::Date(
        chrono::NaiveDate::from_ymd_opt(d.year.into(), d.month.into(), d.day.into())
            .context("the driver sent an impossible date")?,
    ))
}

fn timestamp_value(x: Nullable<odbc_api::sys::Timestamp>) -> Result<SourceValue> {
    let Some(t) = x.into_opt() else {
        return Ok(SourceValue::Null);
    };
    Ok(SourceValue::DateTime(
        chrono::NaiveDate::from_ymd_opt(t.year.into(), t.month.into(), t.day.into())
            .and_then(|d| {
                d.and_hms_nano_opt(t.hour.into(), t.minute.into(), t.second.into(), t.fraction)
            })
            .context("the driver sent an impossible timestamp")?,
    ))
}

fn statement_context(sql: &str) -> String {
    format!("ODBC statement failed (语句执行失败): {sql}")
}

/// The values of a rendered statement as ODBC parameters, in placeholder order. Text goes as
/// UTF-16 (SQL_C_WCHAR), which every Unicode driver converts to the database's encoding
/// itself; integers as BIGINT.
fn params(values: Vec<Value>, coding: TextCoding) -> Result<Vec<Box<dyn InputParameter>>> {
    values.into_iter().map(|v| param(v, coding)).collect()
}

fn param(v: Value, coding: TextCoding) -> Result<Box<dyn InputParameter>> {
    let int = |n: Option<i64>| -> Box<dyn InputParameter> {
        Box::new(n.map_or_else(Nullable::null, Nullable::new))
    };
    Ok(match v {
        Value::String(Some(s)) => coding.param_string(s),
        Value::String(None) => coding.param(None),
        Value::Char(c) => coding.param(c.map(String::from).as_deref()),
        Value::Bool(b) => int(b.map(i64::from)),
        Value::TinyInt(n) => int(n.map(i64::from)),
        Value::SmallInt(n) => int(n.map(i64::from)),
        Value::Int(n) => int(n.map(i64::from)),
        Value::BigInt(n) => int(n),
        Value::TinyUnsigned(n) => int(n.map(i64::from)),
        Value::SmallUnsigned(n) => int(n.map(i64::from)),
        Value::Unsigned(n) => int(n.map(i64::from)),
        Value::BigUnsigned(n) => int(n
            .map(i64::try_from)
            .transpose()
            .context("an unsigned value beyond BIGINT")?),
        Value::Double(f) => Box::new(f.map_or_else(Nullable::null, Nullable::new)),
        Value::Float(f) => Box::new(f.map(f64::from).map_or_else(Nullable::null, Nullable::new)),
        // A keyset position in a date or timestamp column.
        Value::ChronoDate(d) => {
            Box::new(d.map_or_else(Nullable::null, |d| Nullable::new(odbc_date(&d))))
        }
        Value::ChronoDateTime(t) => Box::new(odbc_api::parameter::WithDataType::new(
            t.map_or_else(Nullable::null, |t| Nullable::new(odbc_timestamp(&t))),
            DataType::Timestamp { precision: 6 },
        )),
        // Only the type, never the value (it may be a source row's ID number).
        other => anyhow::bail!(
            "ODBC cannot bind a value of this type yet: {}",
            value_kind(&other)
        ),
    })
}

fn odbc_date(d: &chrono::NaiveDate) -> odbc_api::sys::Date {
    use chrono::Datelike;
    odbc_api::sys::Date {
        year: d.year() as i16,
        month: d.month() as u16,
        day: d.day() as u16,
    }
}

fn odbc_timestamp(t: &chrono::NaiveDateTime) -> odbc_api::sys::Timestamp {
    use chrono::Timelike;
    let d = odbc_date(&t.date());
    odbc_api::sys::Timestamp {
        year: d.year,
        month: d.month,
        day: d.day,
        hour: t.hour() as u16,
        minute: t.minute() as u16,
        second: t.second() as u16,
        fraction: t.nanosecond(),
    }
}

fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::Bytes(_) => "bytes",
        Value::ChronoDate(_) => "date",
        Value::ChronoDateTime(_) => "timestamp",
        Value::Uuid(_) => "uuid",
        _ => "other",
    }
}

#[cfg(test)]
mod tests;
