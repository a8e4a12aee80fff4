//! A small pool of ODBC connections (the `odbc` feature): odbc-api calls block, so every one
//! runs on tokio's blocking threads with the connection moved there and back; at most
//! `max_connections` are open; a transaction is a connection with autocommit off, rolled back
//! if it is dropped unfinished. Values are bound as parameters (text as UTF-16, integers as
//! BIGINT); results come back as text or NULL, which is all the control tables hold.

use super::exec::Cell;
use anyhow::{Context, Result};
use odbc_api::{
    Connection, ConnectionOptions, Cursor, Nullable, ResultSetMetadata, parameter::InputParameter,
    parameter::VarWCharBox,
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
    idle: Mutex<Vec<Connection<'static>>>,
    permits: Arc<Semaphore>,
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

    /// `SQLGetInfo(SQL_DBMS_NAME)`: `PostgreSQL`, `MariaDB`, `DM`, `Oracle`, ...
    pub async fn dbms_name(&self) -> Result<String> {
        let mut c = self.acquire().await?;
        c.run(|c| Ok(c.database_management_system_name()?)).await
    }

    pub async fn execute(&self, sql: &str, values: Vec<Value>) -> Result<u64> {
        self.acquire().await?.execute(sql, values).await
    }

    pub async fn fetch_all(&self, sql: &str, values: Vec<Value>) -> Result<Vec<Vec<Cell>>> {
        self.acquire().await?.fetch_all(sql, values).await
    }
}

fn open(conn_str: &str, shown: &str) -> Result<Connection<'static>> {
    let env = odbc_api::environment().map_err(|e| {
        anyhow::anyhow!(
            "unixODBC could not start (unixODBC 无法初始化): {}",
            super::redact_url(&e.to_string())
        )
    })?;
    env.connect_with_connection_string(conn_str, ConnectionOptions::default())
        .map_err(|e| super::odbc::connect_error(shown, &e))
}

/// One connection of a [`Pool`], back in it when dropped (rolled back first in a transaction).
pub struct Conn {
    conn: Option<Connection<'static>>,
    pool: Pool,
    in_tx: bool,
    _permit: OwnedSemaphorePermit,
}

impl Conn {
    /// Runs `f` with the connection on a blocking thread. If the caller gives up waiting, the
    /// connection stays there and is closed when `f` ends, never reused half-done.
    async fn run<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Connection<'static>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let mut c = self.conn.take().context("ODBC connection lost")?;
        let (c, r) = tokio::task::spawn_blocking(move || {
            let r = f(&mut c);
            (c, r)
        })
        .await?;
        self.conn = Some(c);
        r
    }

    /// Runs a statement; the rows it changed.
    pub async fn execute(&mut self, sql: &str, values: Vec<Value>) -> Result<u64> {
        let sql = sql.to_string();
        self.run(move |c| {
            let params = params(values)?;
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
        self.run(move |c| {
            let params = params(values)?;
            let mut rows = Vec::new();
            let Some(mut cursor) = c
                .execute(&sql, &params[..], None)
                .with_context(|| statement_context(&sql))?
            else {
                return Ok(rows);
            };
            let n = u16::try_from(cursor.num_result_cols()?).unwrap_or(0);
            let mut buf = Vec::new();
            while let Some(mut row) = cursor.next_row()? {
                let mut cells = Vec::with_capacity(usize::from(n));
                for i in 1..=n {
                    let cell = if row.get_wide_text(i, &mut buf)? {
                        Cell::Text(String::from_utf16(&buf).context("driver sent bad UTF-16")?)
                    } else {
                        Cell::Null
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
        self.run(|c| Ok(c.set_autocommit(false)?)).await?;
        self.in_tx = true;
        Ok(())
    }

    pub async fn commit(&mut self) -> Result<()> {
        self.run(|c| {
            c.commit()?;
            Ok(c.set_autocommit(true)?)
        })
        .await?;
        self.in_tx = false;
        Ok(())
    }

    pub async fn rollback(&mut self) -> Result<()> {
        self.run(|c| {
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
        let Some(c) = self.conn.take() else {
            return;
        };
        // An unfinished transaction: rolled back before the connection is used again. The
        // call is short (one round trip); a connection that cannot roll back is closed.
        if self.in_tx && (c.rollback().is_err() || c.set_autocommit(true).is_err()) {
            return;
        }
        self.pool.inner.idle.lock().expect("odbc pool lock").push(c);
    }
}

fn statement_context(sql: &str) -> String {
    format!("ODBC statement failed (语句执行失败): {sql}")
}

/// The values of a rendered statement as ODBC parameters, in placeholder order. Text goes as
/// UTF-16 (SQL_C_WCHAR), which every Unicode driver converts to the database's encoding
/// itself; integers as BIGINT.
fn params(values: Vec<Value>) -> Result<Vec<Box<dyn InputParameter>>> {
    values.into_iter().map(param).collect()
}

fn param(v: Value) -> Result<Box<dyn InputParameter>> {
    let int = |n: Option<i64>| -> Box<dyn InputParameter> {
        Box::new(n.map_or_else(Nullable::null, Nullable::new))
    };
    Ok(match v {
        Value::String(s) => {
            Box::new(s.map_or_else(VarWCharBox::null, |s| VarWCharBox::from_str_slice(&s)))
        }
        Value::Char(c) => Box::new(c.map_or_else(VarWCharBox::null, |c| {
            VarWCharBox::from_str_slice(&c.to_string())
        })),
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
        // Only the type, never the value (it may be a source row's ID number).
        other => anyhow::bail!(
            "ODBC cannot bind a value of this type yet: {}",
            value_kind(&other)
        ),
    })
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
