//! Reading a job's source (table or view) in keyset order through the native driver, decoding
//! whatever column types the department's schema uses into `Value`.

use anyhow::{Context, Result, anyhow};
use sea_query::{
    Asterisk, ColumnName, DatabaseName, DynIden, Expr, ExprTrait, Order, Query, SchemaName,
    SelectStatement, TableName, Value as SqValue,
};
use sea_query_sqlx::SqlxValues;
use serde::{Deserialize, Serialize};
use sqlx::{Column, Executor, Row, Statement, TypeInfo, ValueRef};

use std::sync::Arc;

use super::dialect::Family;
use super::{Backend, Db, SourcePool, lit};
use crate::config::{JobConfig, ReadOrder};
use crate::value::{SourceRow, Text, Value};

/// Where a job reading in time order has read up to: change time and order columns (seq
/// column or key) of the last row taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Position {
    pub time: Value,
    pub key: Vec<Value>,
}

impl Position {
    /// The keyset values of the row: change time, then the order columns.
    pub fn values(&self) -> Vec<Value> {
        std::iter::once(self.time.clone())
            .chain(self.key.iter().cloned())
            .collect()
    }
}

/// Where a job reading in seq order has read up to, and what it has observed of its source
/// (the settle-by-observation guard, `pipeline/seq.rs`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeqPosition {
    /// The seq column of the last row taken; None before the first.
    pub seq: Option<i64>,
    /// MAX(seq column) as observed at a time of the database's clock, oldest first.
    pub seen: Vec<Seen>,
}

/// One observation of a source read in seq order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// The database's clock, milliseconds since the epoch.
    pub at_ms: i64,
    /// The largest seq column value committed then.
    pub max: i64,
}

/// A job's position as stored in `qz_cursor.position`: the JSON of its read order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Cursor {
    /// `order = "time"`: `{"time": ..., "key": [...]}`.
    Time(Position),
    /// `order = "seq"`: `{"seq": ..., "seen": [...]}`.
    Seq(SeqPosition),
}

impl Cursor {
    /// The stored position of `job`, read in the job's order. A position the other order
    /// wrote (the job's `order` was changed) is an error that says how to start over.
    pub fn parse(job: &JobConfig, json: &serde_json::Value) -> Result<Cursor> {
        let parsed = match job.order {
            ReadOrder::Time => Position::deserialize(json).map(Cursor::Time),
            ReadOrder::Seq => SeqPosition::deserialize(json).map(Cursor::Seq),
        };
        let order = match job.order {
            ReadOrder::Time => "time",
            ReadOrder::Seq => "seq",
        };
        parsed.map_err(|e| {
            let (name, reset) = (
                &job.name,
                format!("UPDATE qz_cursor SET position = NULL WHERE job = '{}'", job.name),
            );
            anyhow!(
                "作业 {name} 的 qz_cursor.position 不是 order = \"{order}\" 写下的位置（改过 order？）；\
                 要从头重新读取源，请执行 {reset}（已报送的行会再报送一次）\
                 (qz_cursor.position of job {name} was not written in order = \"{order}\" (was \
                 order changed?); to read the source again from its start run {reset}: rows \
                 delivered before are sent again): {e}"
            )
        })
    }

    /// The keyset values to read after; None reads from the first row.
    pub fn after(&self) -> Option<Vec<Value>> {
        match self {
            Cursor::Time(p) => Some(p.values()),
            Cursor::Seq(p) => p.seq.map(|s| vec![Value::Int(s)]),
        }
    }

    /// As `status` shows it: "2026-11-20 10:07:00 / 8", or the seq value.
    pub fn shown(&self) -> String {
        let text = |v: &Value| v.to_text().unwrap_or_else(|| "NULL".into());
        match self {
            Cursor::Time(p) => p.values().iter().map(text).collect::<Vec<_>>().join(" / "),
            Cursor::Seq(p) => p
                .seq
                .map_or_else(|| "(nothing read yet 尚未读取)".into(), |s| s.to_string()),
        }
    }
}

/// What a read of a job's source covers: its keyset (leading column first) and, in seq order,
/// the largest seq it may read.
#[derive(Debug, Clone)]
pub struct SourceSpec<'a> {
    pub table: &'a str,
    /// `JobConfig::keyset`: unique together, the read's order.
    pub keyset: Vec<String>,
    /// Only rows whose leading column is at most this (seq order: the settled bound).
    pub upto: Option<i64>,
}

impl<'a> SourceSpec<'a> {
    /// The job's source in its read order, with no upper bound.
    pub fn of(job: &'a JobConfig) -> Self {
        SourceSpec {
            table: &job.source,
            keyset: job.keyset(),
            upto: None,
        }
    }
}

/// A configured name part as the database resolves it, for sea-query to quote. A plain name
/// (ASCII letters, digits, `_`, `$`) means what it would mean written bare: PostgreSQL folds
/// it to lower case (`CD_TIME` is `cd_time` there) and Oracle and DM to upper case, so it is
/// folded here before quoting; MySQL and SQLite match names without regard to case, quoted
/// or not. Anything else (e.g.
/// Chinese column names) is kept exactly. Config validation has already rejected quote
/// characters.
pub(crate) fn resolved(backend: Backend, part: &str) -> String {
    let plain = part
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    match backend.family() {
        Some(Family::Postgres) if plain => part.to_ascii_lowercase(),
        Some(Family::Oracle) if plain => part.to_ascii_uppercase(),
        _ => part.to_string(),
    }
}

/// A configured table or view name, `table` or `schema.table` (or `db.schema.table`).
pub(crate) fn table_name(backend: Backend, dotted: &str) -> TableName {
    let mut parts: Vec<DynIden> = dotted
        .rsplitn(3, '.')
        .map(|p| resolved(backend, p).into())
        .collect();
    let table = parts.remove(0);
    let schema = match (parts.pop(), parts.pop()) {
        (Some(schema), None) => Some(SchemaName(None, schema)),
        (Some(db), Some(schema)) => Some(SchemaName(Some(DatabaseName(db)), schema)),
        _ => None,
    };
    TableName(schema, table)
}

/// A configured column name (config validation allows no qualifier).
pub(crate) fn column_name(backend: Backend, name: &str) -> ColumnName {
    ColumnName(None, resolved(backend, name).into())
}

/// A name exactly as the database reported it, always quoted, so that its case and every
/// character survive (PostgreSQL folds an unquoted name to lower case).
pub fn quote(backend: Backend, name: &str) -> String {
    if backend.is(Family::Mysql) {
        format!("`{}`", name.replace('`', "``"))
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// A name as a DBA would write it in a view: bare when that keeps it exact, quoted otherwise.
pub(crate) fn view_ident(backend: Backend, name: &str) -> String {
    let bare = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| {
            c == '_'
                || c.is_ascii_digit()
                || (c.is_ascii_lowercase() && !backend.is(Family::Oracle))
                || (c.is_ascii_uppercase() && !backend.is(Family::Postgres))
        });
    if bare {
        name.to_string()
    } else {
        quote(backend, name)
    }
}

/// One column of a source as the driver describes it before any row is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceColumn {
    pub name: String,
    /// The type as the driver names it (INTERVAL, INET, TIME, ...).
    pub type_name: String,
    /// Whether qianzhi can decode its values; the same test the row decoders use.
    pub readable: bool,
}

impl SourceColumn {
    /// What to select in the view instead, so that the column arrives in a type qianzhi reads.
    pub fn cast(&self, backend: Backend) -> String {
        let c = view_ident(backend, &self.name);
        let ty = self.type_name.as_str();
        match backend {
            // MONEY as text carries the locale's currency sign and separators.
            Backend::Postgres if ty == "MONEY" => format!("CAST({c} AS NUMERIC) AS {c}"),
            Backend::Postgres | Backend::Sqlite => format!("CAST({c} AS TEXT) AS {c}"),
            Backend::Mysql if ty == "BIT" => format!("CAST({c} AS UNSIGNED) AS {c}"),
            Backend::Mysql if ty == "GEOMETRY" => format!("ST_AsText({c}) AS {c}"),
            Backend::Mysql => format!("CAST({c} AS CHAR) AS {c}"),
            Backend::Odbc(d) => {
                format!("CAST({c} AS {}) AS {c}", super::dialect::text_cast_type(d))
            }
        }
    }

    /// The message naming an unreadable column and the cast to add to the view.
    pub fn unreadable_message(&self, backend: Backend, source: &str) -> String {
        let (name, ty, cast) = (&self.name, &self.type_name, self.cast(backend));
        format!(
            "{source} 的列 {name} 是 {ty} 类型，qianzhi 无法读取，请在视图中写成 {cast} \
             (column {name} of {source} has type {ty}, which qianzhi cannot read; select it in \
             the view as {cast})"
        )
    }
}

/// The job's keyset as columns: leading column (change time or seq), then the order columns.
fn keyset(backend: Backend, spec: &SourceSpec<'_>) -> Vec<ColumnName> {
    spec.keyset
        .iter()
        .map(|c| column_name(backend, c))
        .collect()
}

/// The rows after the position (or every row with a leading value when there is no position
/// yet), and at most `upto` in seq order. PostgreSQL and SQLite compare
/// `(time, key...) > (...)` as a row value and plan it as a range on the keyset index; MySQL
/// and MariaDB use no index for a row value (a full index scan: an idle poll of a large table
/// reads all of it), and Oracle and DM compare row values only for equality, so there it is
/// spelled out as
/// `a > ? OR (a = ? AND b > ?) OR (a = ? AND b = ? AND c > ?)`, which they plan as a range. A
/// keyset of one column (seq order) is a plain `a > ?` everywhere.
fn after_filter(backend: Backend, spec: &SourceSpec<'_>, after: Option<Vec<Value>>) -> Expr {
    let cols = keyset(backend, spec);
    let lead = Expr::col(cols[0].clone());
    let upto = spec.upto.map(|u| lead.clone().lte(u));
    let Some(values) = after else {
        // `lead <= upto` leaves out the NULLs too.
        return upto.unwrap_or_else(|| lead.is_not_null());
    };
    let row_value = !backend.is(Family::Mysql) && !backend.is(Family::Oracle);
    let after = if row_value && cols.len() > 1 {
        Expr::tuple(cols.into_iter().map(Expr::col)).gt(Expr::tuple(
            values.into_iter().map(|v| Expr::val(bind_value(v))),
        ))
    } else {
        expanded_after(cols, values)
    };
    match upto {
        Some(upto) => after.and(upto),
        None => after,
    }
}

/// `(c1..cn) > (v1..vn)` as a disjunction: for each i, the columns before i equal and ci
/// greater.
fn expanded_after(cols: Vec<ColumnName>, values: Vec<Value>) -> Expr {
    let binds: Vec<SqValue> = values.into_iter().map(bind_value).collect();
    let mut any: Option<Expr> = None;
    for i in 0..cols.len().min(binds.len()) {
        let equal = (0..i).map(|j| Expr::col(cols[j].clone()).eq(Expr::val(binds[j].clone())));
        let greater = Expr::col(cols[i].clone()).gt(Expr::val(binds[i].clone()));
        let term = equal
            .chain(std::iter::once(greater))
            .reduce(|a, b| a.and(b))
            .expect("at least the greater term");
        any = Some(match any {
            None => term,
            Some(a) => a.or(term),
        });
    }
    any.unwrap_or_else(|| Expr::val(false))
}

/// The SELECT of one page: `select` (exact names, quoted) in keyset order after the position.
/// The page size is written into the text, not bound: PostgreSQL then plans every page with
/// the real LIMIT, as it did before sea-query (a bound LIMIT is planned as 10% of the rows).
/// `LIMIT n` is the same on all three backends.
fn page_sql(
    backend: Backend,
    spec: &SourceSpec<'_>,
    select: &[String],
    after: Option<Vec<Value>>,
    limit: usize,
) -> (String, SqlxValues) {
    let columns = |q: &mut sea_query::SelectStatement| {
        for c in select {
            q.column(c.clone());
        }
    };
    page_sql_of(backend, spec, columns, after, limit)
}

/// As [`page_sql`], each row's columns packed into one text value, `ROW("a", "b")::text`:
/// PostgreSQL read through psqlODBC (see `odbc_pool::packed`).
#[cfg_attr(not(feature = "odbc"), allow(dead_code))]
fn packed_page_sql(
    backend: Backend,
    spec: &SourceSpec<'_>,
    select: &[String],
    after: Option<Vec<Value>>,
    limit: usize,
) -> (String, SqlxValues) {
    let list = select
        .iter()
        .map(|c| quote(backend, c))
        .collect::<Vec<_>>()
        .join(", ");
    let columns = |q: &mut sea_query::SelectStatement| {
        q.expr(Expr::cust(format!("ROW({list})::text")));
    };
    page_sql_of(backend, spec, columns, after, limit)
}

/// A page's SELECT with the select list `columns` writes.
fn page_sql_of(
    backend: Backend,
    spec: &SourceSpec<'_>,
    columns: impl FnOnce(&mut sea_query::SelectStatement),
    after: Option<Vec<Value>>,
    limit: usize,
) -> (String, SqlxValues) {
    let mut q = Query::select();
    columns(&mut q);
    q.from(table_name(backend, spec.table))
        .and_where(after_filter(backend, spec, after));
    for c in keyset(backend, spec) {
        q.order_by(c, Order::Asc);
    }
    let (mut sql, values) = backend.build(&q);
    sql.push_str(&format!(" LIMIT {limit}"));
    (sql, values)
}

/// A count of the rows after the position, stopped at `cap`.
fn count_select(
    backend: Backend,
    spec: &SourceSpec<'_>,
    after: Option<Vec<Value>>,
    cap: i64,
) -> SelectStatement {
    let rows = Query::select()
        .expr_as(lit(1i64), "one")
        .from(table_name(backend, spec.table))
        .and_where(after_filter(backend, spec, after))
        .limit(u64::try_from(cap).unwrap_or(0))
        .to_owned();
    Query::select()
        .expr(Expr::col(Asterisk).count())
        .from_subquery(rows, "t")
        .to_owned()
}

/// `SELECT MAX(seq), <database clock in ms>` of a source read in seq order.
fn observe_select(backend: Backend, table: &str, seq_column: &str) -> SelectStatement {
    Query::select()
        .expr(Expr::col(column_name(backend, seq_column)).max())
        .expr(super::lease::db_now(backend))
        .from(table_name(backend, table))
        .to_owned()
}

/// A seq column's value as the whole number seq order needs, or the error naming the column.
pub fn seq_value(v: &Value, table: &str, seq_column: &str) -> Result<i64> {
    v.to_i64().ok_or_else(|| {
        let shown = v.to_text().unwrap_or_else(|| "NULL".into());
        anyhow!(
            "{table} 的序号列 {seq_column} 的值 '{shown}' 不是整数，order = \"seq\" 需要严格递增的整数 \
             (seq_column {seq_column} of {table} holds '{shown}', not a whole number: \
             order = \"seq\" needs a strictly increasing integer)"
        )
    })
}

/// A position value for the native drivers, as the same Rust type as before sea-query.
fn bind_value(v: Value) -> SqValue {
    match v {
        Value::Null => SqValue::String(None),
        Value::Bool(b) => b.into(),
        Value::Int(i) => i.into(),
        Value::Float(f) => f.into(),
        Value::Decimal(s) => s.into(),
        Value::Text(s) => s.into_string().into(),
        Value::Date(d) => SqValue::ChronoDate(Some(d)),
        Value::DateTime(t) => SqValue::ChronoDateTime(Some(t)),
        Value::DateTimeTz(t) => SqValue::ChronoDateTimeUtc(Some(t.with_timezone(&chrono::Utc))),
        Value::Uuid(u) => SqValue::Uuid(Some(u)),
        Value::Bytes(b) => SqValue::Bytes(Some(b)),
    }
}

/// SQLite keeps dates and UUIDs as text, so positions are compared as text there.
fn sqlite_binds(values: Vec<Value>) -> Vec<Value> {
    values
        .into_iter()
        .map(|v| match v {
            Value::Date(_) | Value::DateTime(_) | Value::DateTimeTz(_) | Value::Uuid(_) => {
                Value::Text(v.to_text().unwrap_or_default().into())
            }
            v => v,
        })
        .collect()
}

/// Decimal keys are kept as text in `Value` but PostgreSQL and MySQL compare them as numbers
/// only when bound as numbers.
fn numeric_binds(values: Vec<Value>) -> Vec<Value> {
    values
        .into_iter()
        .map(|v| match v {
            Value::Decimal(d) => d
                .parse::<i64>()
                .map(Value::Int)
                .unwrap_or_else(|_| Value::Float(d.parse().unwrap_or(0.0))),
            v => v,
        })
        .collect()
}

impl Db {
    /// Up to `limit` rows after `after` (keyset values), in keyset order, with only the
    /// columns in `select` (names exactly as `source_column_types` reported them): a column
    /// the job does not need is never read, so its type cannot stop the job.
    pub async fn read_changes(
        &self,
        spec: &SourceSpec<'_>,
        select: &[String],
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<SourceRow>> {
        let after = self.position_binds(after);
        #[cfg(feature = "odbc")]
        if let Some(rows) = self.read_packed(spec, select, after.clone(), limit).await? {
            return Ok(rows);
        }
        let (sql, values) = page_sql(self.backend, spec, select, after, limit);
        self.source_rows(sql, values, spec.table).await
    }

    /// `database.odbc_packed_rows`; only an `odbc:` source reads it.
    pub fn set_odbc_packed_rows(&self, on: bool) {
        #[cfg(feature = "odbc")]
        if let SourcePool::Odbc(p) = &self.source {
            p.set_packed_rows(on);
        }
        #[cfg(not(feature = "odbc"))]
        let _ = on;
    }

    /// Source pages read packed so far (PostgreSQL through psqlODBC, `odbc_pool::packed`);
    /// 0 on every other source.
    pub fn odbc_packed_pages(&self) -> u64 {
        #[cfg(feature = "odbc")]
        if let SourcePool::Odbc(p) = &self.source {
            return p.packed_pages();
        }
        0
    }

    /// A page of PostgreSQL through psqlODBC read packed, a row a value
    /// (`odbc_pool::packed`); None when it is read column by column instead: another
    /// dialect, `database.odbc_packed_rows = false`, a column of a type packed text would
    /// not give alike, or a value on this page that psqlODBC would read otherwise.
    #[cfg(feature = "odbc")]
    async fn read_packed(
        &self,
        spec: &SourceSpec<'_>,
        select: &[String],
        after: Option<Vec<Value>>,
        limit: usize,
    ) -> Result<Option<Vec<SourceRow>>> {
        let (SourcePool::Odbc(p), Backend::Odbc(crate::config::Dialect::Postgres)) =
            (&self.source, self.backend)
        else {
            return Ok(None);
        };
        if !p.packs_rows() {
            return Ok(None);
        }
        let table = spec.table;
        let key = super::odbc_pool::packing_key(table, select);
        let plain = || page_sql(self.backend, spec, select, None, 1).0;
        let Some(packing) = p.packing(&key, plain).await? else {
            return Ok(None);
        };
        let (sql, values) = packed_page_sql(self.backend, spec, select, after, limit);
        let rows = p
            .packed_page(sql, values.0.0, packing)
            .await
            .with_context(|| format!("reading source {table}"))?;
        if rows.is_none() {
            tracing::debug!(
                table,
                "a value of this page is read column by column (packed text would differ)"
            );
        }
        Ok(rows)
    }

    /// For `check`: None when pages of `table` are never packed here (another source or
    /// dialect, or `database.odbc_packed_rows = false`), else whether the columns a job
    /// selects are packed, or why they are read column by column.
    pub async fn odbc_packing(
        &self,
        spec: &SourceSpec<'_>,
        select: &[String],
    ) -> Result<Option<Result<(), String>>> {
        #[cfg(feature = "odbc")]
        if let (SourcePool::Odbc(p), Backend::Odbc(crate::config::Dialect::Postgres)) =
            (&self.source, self.backend)
            && p.packs_rows()
        {
            let (plain, _) = page_sql(self.backend, spec, select, None, 1);
            return Ok(Some(p.explain_packing(plain).await?));
        }
        let _ = (spec, select);
        Ok(None)
    }

    /// The rows of a statement on the source, decoded as the pages are.
    async fn source_rows(
        &self,
        sql: String,
        values: SqlxValues,
        table: &str,
    ) -> Result<Vec<SourceRow>> {
        let ctx = || format!("reading source {table}");
        #[cfg(feature = "odbc")]
        if let SourcePool::Odbc(p) = &self.source {
            return p.source_rows(sql, values.0.0, None).await.with_context(ctx);
        }
        let sql = sqlx::AssertSqlSafe(sql);
        Ok(match &self.source {
            SourcePool::Postgres(p) => {
                let q = sqlx::query_with(sql, values);
                let rows = q.fetch_all(p).await.with_context(ctx)?;
                decode_pg_rows(&rows, self.backend, table)?
            }
            SourcePool::Mysql(p) => {
                let q = sqlx::query_with(sql, values);
                let rows = q.fetch_all(p).await.with_context(ctx)?;
                decode_my_rows(&rows, self.backend, table)?
            }
            SourcePool::Sqlite(p) => {
                let q = sqlx::query_with(sql, values);
                let rows = q.fetch_all(p).await.with_context(ctx)?;
                decode_lite_rows(rows, self.backend, table)?
            }
            #[cfg(feature = "odbc")]
            SourcePool::Odbc(_) => unreachable!("read above"),
        })
    }

    /// Seq order: MAX(`seq_column`) of the source (None while it has no row) and the
    /// database's clock (ms since the epoch), in one statement, so every value up to that
    /// maximum was taken from its sequence before that time.
    pub async fn observe_seq(&self, table: &str, seq_column: &str) -> Result<(Option<i64>, i64)> {
        let (sql, values) = self
            .backend
            .build(&observe_select(self.backend, table, seq_column));
        let rows = self.source_rows(sql, values, table).await?;
        let row = rows.first().context("MAX() answered no row")?;
        let max = match row.values.first() {
            None | Some(Value::Null) => None,
            Some(v) => Some(seq_value(v, table, seq_column)?),
        };
        let now = row.values.get(1).and_then(Value::to_i64);
        Ok((max, now.context("the database's clock answered no number")?))
    }

    /// The SELECT `read_changes` runs for this page, with its values (for `EXPLAIN` in the
    /// tools and tests: the plan checked is the plan of the statement really sent).
    pub fn page_query(
        &self,
        spec: &SourceSpec<'_>,
        select: &[String],
        after: Option<&[Value]>,
        limit: usize,
    ) -> (String, SqlxValues) {
        page_sql(
            self.backend,
            spec,
            select,
            self.position_binds(after),
            limit,
        )
    }

    /// The position as values to compare the keyset with, typed for this source's driver.
    fn position_binds(&self, after: Option<&[Value]>) -> Option<Vec<Value>> {
        let values = numeric_binds(after?.to_vec());
        Some(match self.source {
            SourcePool::Sqlite(_) => sqlite_binds(values),
            _ => values,
        })
    }

    /// Rows after `after`, counted up to `cap` so status stays cheap on a huge backlog.
    pub async fn count_after(
        &self,
        spec: &SourceSpec<'_>,
        after: Option<&[Value]>,
        cap: i64,
    ) -> Result<i64> {
        let after = self.position_binds(after);
        let (sql, values) = self
            .backend
            .build(&count_select(self.backend, spec, after, cap));
        #[cfg(feature = "odbc")]
        if let SourcePool::Odbc(p) = &self.source {
            let rows = p.source_rows(sql, values.0.0, None).await?;
            return rows
                .first()
                .and_then(|r| r.values.first())
                .and_then(Value::to_i64)
                .context("COUNT answered no number");
        }
        let sql = sqlx::AssertSqlSafe(sql);
        Ok(match &self.source {
            SourcePool::Postgres(p) => sqlx::query_scalar_with(sql, values).fetch_one(p).await?,
            SourcePool::Mysql(p) => sqlx::query_scalar_with(sql, values).fetch_one(p).await?,
            SourcePool::Sqlite(p) => sqlx::query_scalar_with(sql, values).fetch_one(p).await?,
            #[cfg(feature = "odbc")]
            SourcePool::Odbc(_) => unreachable!("counted above"),
        })
    }

    /// Column names of a table or view, or a clear error when it does not exist.
    pub async fn source_columns(&self, table: &str) -> Result<Vec<String>> {
        Ok(self
            .source_column_types(table)
            .await?
            .into_iter()
            .map(|c| c.name)
            .collect())
    }

    /// The columns of a table or view with their types, from a prepared `SELECT *` that reads
    /// no row; or a clear error when the source does not exist.
    pub async fn source_column_types(&self, table: &str) -> Result<Vec<SourceColumn>> {
        let q = Query::select()
            .column(Asterisk)
            .from(table_name(self.backend, table))
            .to_owned();
        let (sql, _) = self.backend.build(&q);
        let ctx = || {
            format!(
                "source {table} cannot be read (does it exist, and may this user SELECT from it?)"
            )
        };
        let q = || sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(sql.clone()));
        fn describe<C: Column>(cols: &[C], readable: impl Fn(&C) -> bool) -> Vec<SourceColumn> {
            cols.iter()
                .map(|c| SourceColumn {
                    name: c.name().to_string(),
                    type_name: c.type_info().name().to_string(),
                    readable: readable(c),
                })
                .collect()
        }
        Ok(match &self.source {
            SourcePool::Postgres(p) => {
                describe(p.prepare(q()).await.with_context(ctx)?.columns(), |c| {
                    pg_decoder(c.type_info()).is_some()
                })
            }
            SourcePool::Mysql(p) => {
                describe(p.prepare(q()).await.with_context(ctx)?.columns(), |c| {
                    my_decoder(c.type_info()).is_some()
                })
            }
            // SQLite types values, not columns: every value is read as what it holds.
            SourcePool::Sqlite(p) => {
                describe(p.prepare(q()).await.with_context(ctx)?.columns(), |_| true)
            }
            // The driver converts any type it has to text, so every column can be read. A
            // run starts here: how its pages are packed is found again from these columns.
            #[cfg(feature = "odbc")]
            SourcePool::Odbc(p) => {
                p.forget_packings(table);
                p.describe(sql.clone())
                    .await
                    .with_context(ctx)?
                    .into_iter()
                    .map(|(name, type_name)| SourceColumn {
                        name,
                        type_name,
                        readable: true,
                    })
                    .collect()
            }
        })
    }

    /// Runs DDL or DML that the department would run itself (demo data, tests, benchmarks).
    pub async fn execute_script(&self, sql: &str) -> Result<()> {
        for stmt in sql.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
            sqlx::query(sqlx::AssertSqlSafe(stmt.to_string()))
                .execute(&self.any)
                .await
                .with_context(|| format!("failed: {stmt}"))?;
        }
        Ok(())
    }
}

/// The column names of a result, taken once for all its rows.
fn column_names<R: Row>(rows: &[R]) -> Arc<[String]> {
    rows.first()
        .map(|r| r.columns().iter().map(|c| c.name().to_string()).collect())
        .unwrap_or_else(|| Arc::from(Vec::new()))
}

/// The decoder of every column of a page, chosen once from the first row's column types, or
/// the message naming the first column qianzhi cannot read.
fn page_decoders<R: Row, D>(
    rows: &[R],
    decoder: impl Fn(&<R::Database as sqlx::Database>::TypeInfo) -> Option<D>,
    backend: Backend,
    source: &str,
) -> Result<Vec<D>> {
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    first
        .columns()
        .iter()
        .map(|c| {
            decoder(c.type_info()).ok_or_else(|| {
                let col = SourceColumn {
                    name: c.name().to_string(),
                    type_name: c.type_info().name().to_string(),
                    readable: false,
                };
                anyhow!(col.unreadable_message(backend, source))
            })
        })
        .collect()
}

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
    v.map(f).unwrap_or(Value::Null)
}

/// How a PostgreSQL column is decoded. `None` from `pg_decoder` means qianzhi cannot read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PgDecoder {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric,
    Date,
    Timestamp,
    TimestampTz,
    Uuid,
    Json,
    Bytea,
    Time,
    Text,
}

fn pg_decoder(ty: &sqlx::postgres::PgTypeInfo) -> Option<PgDecoder> {
    use PgDecoder::*;
    Some(match ty.name() {
        "BOOL" => Bool,
        "INT2" => Int2,
        "INT4" => Int4,
        "INT8" => Int8,
        "FLOAT4" => Float4,
        "FLOAT8" => Float8,
        "NUMERIC" => Numeric,
        "DATE" => Date,
        "TIMESTAMP" => Timestamp,
        "TIMESTAMPTZ" => TimestampTz,
        "UUID" => Uuid,
        "JSON" | "JSONB" => Json,
        "BYTEA" => Bytea,
        "TIME" => Time,
        "TEXT" | "VARCHAR" | "CHAR" | "NAME" => Text,
        // Anything else is read as text only if the driver agrees it is text (citext, ...).
        _ if <String as sqlx::Type<sqlx::Postgres>>::compatible(ty) => Text,
        _ => return None,
    })
}

pub(super) fn decode_pg_rows(
    rows: &[sqlx::postgres::PgRow],
    backend: Backend,
    source: &str,
) -> Result<Vec<SourceRow>> {
    let names = column_names(rows);
    let decoders = page_decoders(rows, pg_decoder, backend, source)?;
    let mut texts = RowTexts::default();
    rows.iter()
        .map(|r| decode_pg_row(r, &names, &decoders, &mut texts))
        .collect()
}

fn decode_pg_row(
    row: &sqlx::postgres::PgRow,
    names: &Arc<[String]>,
    decoders: &[PgDecoder],
    texts: &mut RowTexts,
) -> Result<SourceRow> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
    // The decoder, chosen from the column's type, already picks a compatible Rust type, so
    // the per-value compatibility check of `try_get` is skipped.
    let mut values = Vec::with_capacity(decoders.len());
    for (i, d) in decoders.iter().enumerate() {
        let v = match d {
            PgDecoder::Bool => opt(row.try_get_unchecked::<Option<bool>, _>(i)?, Value::Bool),
            PgDecoder::Int2 => opt(row.try_get_unchecked::<Option<i16>, _>(i)?, |x| {
                Value::Int(x.into())
            }),
            PgDecoder::Int4 => opt(row.try_get_unchecked::<Option<i32>, _>(i)?, |x| {
                Value::Int(x.into())
            }),
            PgDecoder::Int8 => opt(row.try_get_unchecked::<Option<i64>, _>(i)?, Value::Int),
            PgDecoder::Float4 => opt(row.try_get_unchecked::<Option<f32>, _>(i)?, |x| {
                Value::Float(x.into())
            }),
            PgDecoder::Float8 => opt(row.try_get_unchecked::<Option<f64>, _>(i)?, Value::Float),
            PgDecoder::Numeric => opt(
                row.try_get_unchecked::<Option<rust_decimal::Decimal>, _>(i)?,
                |d| Value::Decimal(d.normalize().to_string()),
            ),
            PgDecoder::Date => opt(
                row.try_get_unchecked::<Option<NaiveDate>, _>(i)?,
                Value::Date,
            ),
            PgDecoder::Timestamp => opt(
                row.try_get_unchecked::<Option<NaiveDateTime>, _>(i)?,
                Value::DateTime,
            ),
            PgDecoder::TimestampTz => {
                opt(row.try_get_unchecked::<Option<DateTime<Utc>>, _>(i)?, |t| {
                    Value::DateTimeTz(t.fixed_offset())
                })
            }
            PgDecoder::Uuid => opt(
                row.try_get_unchecked::<Option<uuid::Uuid>, _>(i)?,
                Value::Uuid,
            ),
            PgDecoder::Json => opt(
                row.try_get_unchecked::<Option<serde_json::Value>, _>(i)?,
                |j| Value::Text(j.to_string().into()),
            ),
            PgDecoder::Bytea => opt(
                row.try_get_unchecked::<Option<Vec<u8>>, _>(i)?,
                Value::Bytes,
            ),
            PgDecoder::Time => opt(
                row.try_get_unchecked::<Option<chrono::NaiveTime>, _>(i)?,
                |t| Value::Text(t.to_string().into()),
            ),
            PgDecoder::Text => match row.try_get_raw(i)?.as_bytes() {
                // Only a NULL has no bytes; text is filled in below, checked all at once.
                Ok(bytes) => {
                    texts.push(i, bytes);
                    Value::Null
                }
                Err(_) => Value::Null,
            },
        };
        values.push(v);
    }
    texts.fill(&mut values, names)?;
    Ok(SourceRow {
        names: names.clone(),
        values,
    })
}

/// The text values of one PostgreSQL row, copied side by side so that their UTF-8 is checked
/// in one pass, as the driver's `String` decoding would check each. simdutf8 hands input
/// under 64 bytes to std, and std's check of each short value was 7.5% of a run's
/// instructions; one check of the row's text together is a few hundred.
#[derive(Default)]
pub(super) struct RowTexts {
    bytes: Vec<u8>,
    /// (column, end in `bytes`) per text value, in column order.
    ends: Vec<(usize, usize)>,
}

impl RowTexts {
    pub(super) fn push(&mut self, column: usize, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
        self.ends.push((column, self.bytes.len()));
    }

    /// Puts each text value in its column, emptying `self` for the next row: all of them
    /// ranges of one shared buffer, one allocation per row. Valid UTF-8 side by side is
    /// valid one by one when every value starts on a character boundary (no value begins
    /// with the continuation of the one before), which is checked here; only when that fails
    /// is each value checked on its own, to name the column that is not UTF-8.
    pub(super) fn fill(&mut self, values: &mut [Value], names: &[String]) -> Result<()> {
        if self.ends.is_empty() {
            return Ok(());
        }
        if let Ok(all) = simdutf8::basic::from_utf8(&self.bytes) {
            let buf: Arc<str> = Arc::from(all);
            let mut start = 0;
            let shared = self.ends.iter().all(|&(column, end)| {
                let Some(text) = Text::shared(&buf, start..end) else {
                    return false;
                };
                values[column] = Value::Text(text);
                start = end;
                true
            });
            if shared {
                self.clear();
                return Ok(());
            }
        }
        let result = self.fill_one_by_one(values, names);
        self.clear();
        result
    }

    /// As [`RowTexts::fill`] when the buffer as a whole is not valid text: each value is
    /// checked and copied on its own, so the error names the column.
    fn fill_one_by_one(&self, values: &mut [Value], names: &[String]) -> Result<()> {
        let mut start = 0;
        for &(column, end) in &self.ends {
            match std::str::from_utf8(&self.bytes[start..end]) {
                Ok(t) => values[column] = Value::Text(t.into()),
                Err(e) => {
                    let column = names.get(column).map_or("?", String::as_str);
                    return Err(anyhow!("column {column}: text is not UTF-8: {e}"));
                }
            }
            start = end;
        }
        Ok(())
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

/// How a MySQL column is decoded. `None` from `my_decoder` means qianzhi cannot read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MyDecoder {
    Bool,
    Unsigned,
    Int,
    Float,
    Double,
    Decimal,
    Date,
    DateTime,
    Timestamp,
    Json,
    /// Text, else bytes (binary strings and blobs).
    Text,
}

fn my_decoder(ty: &sqlx::mysql::MySqlTypeInfo) -> Option<MyDecoder> {
    use MyDecoder::*;
    use sqlx::{MySql, Type};
    // Each choice is kept only where the driver agrees to decode that Rust type.
    fn when<T: Type<MySql> + ?Sized>(
        ty: &sqlx::mysql::MySqlTypeInfo,
        d: MyDecoder,
    ) -> Option<MyDecoder> {
        T::compatible(ty).then_some(d)
    }
    match ty.name() {
        // Only NULL values: nothing to decode.
        "NULL" => Some(Text),
        "BOOLEAN" => when::<bool>(ty, Bool),
        t if t.ends_with("UNSIGNED") => when::<u64>(ty, Unsigned),
        "TINYINT" | "SMALLINT" | "INT" | "MEDIUMINT" | "BIGINT" | "YEAR" => when::<i64>(ty, Int),
        "FLOAT" => when::<f32>(ty, Float),
        "DOUBLE" => when::<f64>(ty, Double),
        "DECIMAL" => when::<rust_decimal::Decimal>(ty, Decimal),
        "DATE" => when::<chrono::NaiveDate>(ty, Date),
        "DATETIME" => when::<chrono::NaiveDateTime>(ty, DateTime),
        "TIMESTAMP" => when::<chrono::DateTime<chrono::Utc>>(ty, Timestamp),
        "JSON" => when::<serde_json::Value>(ty, Json),
        _ => when::<String>(ty, Text).or_else(|| when::<Vec<u8>>(ty, Text)),
    }
}

pub(super) fn decode_my_rows(
    rows: &[sqlx::mysql::MySqlRow],
    backend: Backend,
    source: &str,
) -> Result<Vec<SourceRow>> {
    let names = column_names(rows);
    let decoders = page_decoders(rows, my_decoder, backend, source)?;
    rows.iter()
        .map(|r| decode_my_row(r, &names, &decoders))
        .collect()
}

fn decode_my_row(
    row: &sqlx::mysql::MySqlRow,
    names: &Arc<[String]>,
    decoders: &[MyDecoder],
) -> Result<SourceRow> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
    let mut values = Vec::with_capacity(decoders.len());
    for (i, d) in decoders.iter().enumerate() {
        if row.try_get_raw(i)?.is_null() {
            values.push(Value::Null);
            continue;
        }
        let v = match d {
            MyDecoder::Bool => Value::Bool(row.try_get::<bool, _>(i)?),
            MyDecoder::Unsigned => Value::Int(row.try_get::<u64, _>(i)? as i64),
            MyDecoder::Int => Value::Int(row.try_get::<i64, _>(i)?),
            MyDecoder::Float => Value::Float(row.try_get::<f32, _>(i)?.into()),
            MyDecoder::Double => Value::Float(row.try_get::<f64, _>(i)?),
            MyDecoder::Decimal => Value::Decimal(
                row.try_get::<rust_decimal::Decimal, _>(i)?
                    .normalize()
                    .to_string(),
            ),
            MyDecoder::Date => Value::Date(row.try_get::<NaiveDate, _>(i)?),
            MyDecoder::DateTime => Value::DateTime(row.try_get::<NaiveDateTime, _>(i)?),
            MyDecoder::Timestamp => {
                Value::DateTimeTz(row.try_get::<DateTime<Utc>, _>(i)?.fixed_offset())
            }
            MyDecoder::Json => {
                Value::Text(row.try_get::<serde_json::Value, _>(i)?.to_string().into())
            }
            MyDecoder::Text => match row.try_get::<String, _>(i) {
                Ok(s) => Value::Text(s.into()),
                Err(_) => match String::from_utf8(row.try_get::<Vec<u8>, _>(i)?) {
                    Ok(s) => Value::Text(s.into()),
                    Err(e) => Value::Bytes(e.into_bytes()),
                },
            },
        };
        values.push(v);
    }
    Ok(SourceRow {
        names: names.clone(),
        values,
    })
}

/// Each row is dropped as soon as it is decoded: SQLite rows own copies of their values, so a
/// page is not held twice over (peak memory).
pub(super) fn decode_lite_rows(
    rows: Vec<sqlx::sqlite::SqliteRow>,
    _backend: Backend,
    _source: &str,
) -> Result<Vec<SourceRow>> {
    let names = column_names(&rows);
    rows.into_iter()
        .map(|r| decode_lite_row(&r, &names))
        .collect()
}

fn decode_lite_row(row: &sqlx::sqlite::SqliteRow, names: &Arc<[String]>) -> Result<SourceRow> {
    let mut values = Vec::with_capacity(row.columns().len());
    for i in 0..row.columns().len() {
        let raw = row.try_get_raw(i)?;
        // SQLite types values, not columns: ask each value what it holds.
        let v = if raw.is_null() {
            Value::Null
        } else {
            match raw.type_info().name() {
                "INTEGER" => Value::Int(row.try_get::<i64, _>(i)?),
                "REAL" => Value::Float(row.try_get::<f64, _>(i)?),
                "BLOB" => Value::Bytes(row.try_get::<Vec<u8>, _>(i)?),
                _ => Value::Text(row.try_get::<String, _>(i)?.into()),
            }
        };
        values.push(v);
    }
    Ok(SourceRow {
        names: names.clone(),
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// A row's text values are checked together; each still fails alone, with its column,
    /// also when the values side by side would be valid ("中" split over two columns).
    #[test]
    fn row_texts_are_checked_together_and_blamed_one_by_one() {
        let names: Vec<String> = ["a", "b", "c", "d"].map(String::from).into();
        let zhong = "中".as_bytes();
        // (column, bytes) pushed; the values filled in, or the start of the error.
        type Case<'a> = (
            &'a [(usize, &'a [u8])],
            Result<&'a [Option<&'a str>], &'a str>,
        );
        let cases: &[Case] = &[
            (
                &[(0, "甘肃省".as_bytes()), (2, b""), (3, b"x\"y")],
                Ok(&[Some("甘肃省"), None, Some(""), Some("x\"y")]),
            ),
            (&[], Ok(&[None, None, None, None])),
            (
                &[(1, &zhong[..2]), (2, &zhong[2..])],
                Err("column b: text is not UTF-8"),
            ),
            (
                &[(0, b"ok"), (3, &[0xFF, b'a'])],
                Err("column d: text is not UTF-8"),
            ),
            (
                &[(0, &zhong[1..]), (1, b"ok")],
                Err("column a: text is not UTF-8"),
            ),
        ];
        let mut texts = RowTexts::default();
        for (pushed, want) in cases {
            let mut values = vec![Value::Null; names.len()];
            for (column, bytes) in *pushed {
                texts.push(*column, bytes);
            }
            let got = texts.fill(&mut values, &names);
            match want {
                Ok(want) => {
                    got.unwrap();
                    let want: Vec<Value> = want
                        .iter()
                        .map(|v| v.map_or(Value::Null, |t| Value::Text(t.into())))
                        .collect();
                    assert_eq!(values, want, "{pushed:?}");
                }
                Err(want) => {
                    let e = got.unwrap_err().to_string();
                    assert!(e.starts_with(want), "{pushed:?}: {e}");
                }
            }
            // Emptied for the next row whatever happened.
            assert!(texts.bytes.is_empty() && texts.ends.is_empty());
        }
    }

    /// Golden SQL of the source reads: statement × backend → text and number of values
    /// bound. Plain configured names resolve as PostgreSQL would fold them bare; the
    /// selected names are the database's own, exact.
    #[test]
    fn source_reads_per_backend() {
        use Backend::*;
        let spec = SourceSpec {
            table: "ods.Accept_Changes",
            keyset: ["cd_time", "ID", "办件号"].map(String::from).to_vec(),
            upto: None,
        };
        // Seq order: the seq column alone, up to the settled bound.
        let seq = SourceSpec {
            table: "ods.Accept_Changes",
            keyset: vec!["Ver".to_string()],
            upto: Some(120),
        };
        let select = ["cd_time", "ID", "ApplyerName", "办件号"].map(String::from);
        let pos = || {
            Some(vec![
                Value::Text("2025-01-02 03:04:05".into()),
                Value::Int(7),
                Value::Null,
            ])
        };
        let render = |what: &str, b: Backend| {
            let (sql, values) = match what {
                "page" => page_sql(b, &spec, &select, pos(), 500),
                "first page" => page_sql(b, &spec, &select[..2], None, 10),
                "count" => b.build(&count_select(b, &spec, pos(), 100)),
                "seq page" => page_sql(b, &seq, &select[1..3], Some(vec![Value::Int(100)]), 500),
                "seq first page" => page_sql(b, &seq, &select[1..3], None, 500),
                "seq count" => b.build(&count_select(
                    b,
                    &SourceSpec {
                        upto: None,
                        ..seq.clone()
                    },
                    Some(vec![Value::Int(100)]),
                    100,
                )),
                "observe" => b.build(&observe_select(b, "ods.Accept_Changes", "Ver")),
                "columns" => b.build(
                    &Query::select()
                        .column(Asterisk)
                        .from(table_name(b, "V_办件"))
                        .to_owned(),
                ),
                _ => unreachable!(),
            };
            (sql, values.0.0.len())
        };
        let cases = [
            (
                "page",
                Postgres,
                r#"SELECT "cd_time", "ID", "ApplyerName", "办件号" FROM "ods"."accept_changes" WHERE ("cd_time", "id", "办件号") > ($1, $2, $3) ORDER BY "cd_time" ASC, "id" ASC, "办件号" ASC LIMIT 500"#,
                3,
            ),
            (
                "page",
                Mysql,
                r#"SELECT `cd_time`, `ID`, `ApplyerName`, `办件号` FROM `ods`.`Accept_Changes` WHERE `cd_time` > ? OR (`cd_time` = ? AND `ID` > ?) OR (`cd_time` = ? AND `ID` = ? AND `办件号` > ?) ORDER BY `cd_time` ASC, `ID` ASC, `办件号` ASC LIMIT 500"#,
                6,
            ),
            (
                "page",
                Sqlite,
                r#"SELECT "cd_time", "ID", "ApplyerName", "办件号" FROM "ods"."Accept_Changes" WHERE ("cd_time", "ID", "办件号") > (?, ?, ?) ORDER BY "cd_time" ASC, "ID" ASC, "办件号" ASC LIMIT 500"#,
                3,
            ),
            (
                "first page",
                Postgres,
                r#"SELECT "cd_time", "ID" FROM "ods"."accept_changes" WHERE "cd_time" IS NOT NULL ORDER BY "cd_time" ASC, "id" ASC, "办件号" ASC LIMIT 10"#,
                0,
            ),
            (
                "first page",
                Mysql,
                r#"SELECT `cd_time`, `ID` FROM `ods`.`Accept_Changes` WHERE `cd_time` IS NOT NULL ORDER BY `cd_time` ASC, `ID` ASC, `办件号` ASC LIMIT 10"#,
                0,
            ),
            (
                "first page",
                Sqlite,
                r#"SELECT "cd_time", "ID" FROM "ods"."Accept_Changes" WHERE "cd_time" IS NOT NULL ORDER BY "cd_time" ASC, "ID" ASC, "办件号" ASC LIMIT 10"#,
                0,
            ),
            (
                "count",
                Postgres,
                r#"SELECT COUNT(*) FROM (SELECT 1 AS "one" FROM "ods"."accept_changes" WHERE ("cd_time", "id", "办件号") > ($1, $2, $3) LIMIT $4) AS "t""#,
                4,
            ),
            (
                "count",
                Mysql,
                r#"SELECT COUNT(*) FROM (SELECT 1 AS `one` FROM `ods`.`Accept_Changes` WHERE `cd_time` > ? OR (`cd_time` = ? AND `ID` > ?) OR (`cd_time` = ? AND `ID` = ? AND `办件号` > ?) LIMIT ?) AS `t`"#,
                7,
            ),
            (
                "count",
                Sqlite,
                r#"SELECT COUNT(*) FROM (SELECT 1 AS "one" FROM "ods"."Accept_Changes" WHERE ("cd_time", "ID", "办件号") > (?, ?, ?) LIMIT ?) AS "t""#,
                4,
            ),
            (
                "seq page",
                Postgres,
                r#"SELECT "ID", "ApplyerName" FROM "ods"."accept_changes" WHERE "ver" > $1 AND "ver" <= $2 ORDER BY "ver" ASC LIMIT 500"#,
                2,
            ),
            (
                "seq page",
                Mysql,
                r#"SELECT `ID`, `ApplyerName` FROM `ods`.`Accept_Changes` WHERE `Ver` > ? AND `Ver` <= ? ORDER BY `Ver` ASC LIMIT 500"#,
                2,
            ),
            (
                "seq page",
                Sqlite,
                r#"SELECT "ID", "ApplyerName" FROM "ods"."Accept_Changes" WHERE "Ver" > ? AND "Ver" <= ? ORDER BY "Ver" ASC LIMIT 500"#,
                2,
            ),
            (
                "seq first page",
                Postgres,
                r#"SELECT "ID", "ApplyerName" FROM "ods"."accept_changes" WHERE "ver" <= $1 ORDER BY "ver" ASC LIMIT 500"#,
                1,
            ),
            (
                "seq first page",
                Mysql,
                r#"SELECT `ID`, `ApplyerName` FROM `ods`.`Accept_Changes` WHERE `Ver` <= ? ORDER BY `Ver` ASC LIMIT 500"#,
                1,
            ),
            (
                "seq count",
                Postgres,
                r#"SELECT COUNT(*) FROM (SELECT 1 AS "one" FROM "ods"."accept_changes" WHERE "ver" > $1 LIMIT $2) AS "t""#,
                2,
            ),
            (
                "observe",
                Postgres,
                r#"SELECT MAX("ver"), CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) FROM "ods"."accept_changes""#,
                0,
            ),
            (
                "observe",
                Mysql,
                r#"SELECT MAX(`Ver`), CAST(UNIX_TIMESTAMP(CURRENT_TIMESTAMP(3)) * 1000 AS SIGNED) FROM `ods`.`Accept_Changes`"#,
                0,
            ),
            (
                "observe",
                Sqlite,
                r#"SELECT MAX("Ver"), CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER) FROM "ods"."Accept_Changes""#,
                0,
            ),
            ("columns", Postgres, r#"SELECT * FROM "V_办件""#, 0),
            ("columns", Mysql, r#"SELECT * FROM `V_办件`"#, 0),
            ("columns", Sqlite, r#"SELECT * FROM "V_办件""#, 0),
        ];
        for (what, backend, sql, binds) in cases {
            assert_eq!(
                render(what, backend),
                (sql.to_string(), binds),
                "{what} on {backend:?}"
            );
        }
        assert_eq!(quote(Backend::Postgres, "a\"b"), "\"a\"\"b\"");
        assert_eq!(quote(Backend::Mysql, "a`b"), "`a``b`");

        // PostgreSQL through psqlODBC: the same page, each row packed into one value.
        let odbc = Backend::Odbc(crate::config::Dialect::Postgres);
        let names = ["cd_time", "ID", "a\"b", "办件号"].map(String::from);
        let (sql, values) = packed_page_sql(odbc, &spec, &names, pos(), 500);
        assert_eq!(
            (sql, values.0.0.len()),
            (
                r#"SELECT ROW("cd_time", "ID", "a""b", "办件号")::text FROM "ods"."accept_changes" WHERE ("cd_time", "id", "办件号") > (?, ?, ?) ORDER BY "cd_time" ASC, "id" ASC, "办件号" ASC LIMIT 500"#
                    .to_string(),
                3
            )
        );
        let (plain, _) = page_sql(odbc, &spec, &names, pos(), 500);
        assert_eq!(
            plain.replacen(r#""cd_time", "ID", "a""b", "办件号""#, "", 1),
            sql_without_row(&packed_page_sql(odbc, &spec, &names, pos(), 500).0),
            "the packed page differs from the page only in its select list"
        );
    }

    fn sql_without_row(sql: &str) -> String {
        sql.replacen(r#"ROW("cd_time", "ID", "a""b", "办件号")::text"#, "", 1)
    }

    /// Position values reach the native drivers as the Rust types they were bound as before.
    #[test]
    fn position_values_keep_their_types() {
        let d = chrono::NaiveDate::from_ymd_opt(2025, 1, 2).unwrap();
        let t = d.and_hms_opt(3, 4, 5).unwrap();
        let tz = chrono::FixedOffset::east_opt(8 * 3600)
            .unwrap()
            .from_local_datetime(&t)
            .unwrap();
        let u = uuid::Uuid::nil();
        let cases = [
            (Value::Null, SqValue::String(None)),
            (Value::Bool(true), SqValue::Bool(Some(true))),
            (Value::Int(-3), SqValue::BigInt(Some(-3))),
            (Value::Float(1.5), SqValue::Double(Some(1.5))),
            (Value::Text("甲".into()), SqValue::String(Some("甲".into()))),
            (Value::Date(d), SqValue::ChronoDate(Some(d))),
            (Value::DateTime(t), SqValue::ChronoDateTime(Some(t))),
            (
                Value::DateTimeTz(tz),
                SqValue::ChronoDateTimeUtc(Some(tz.with_timezone(&chrono::Utc))),
            ),
            (Value::Uuid(u), SqValue::Uuid(Some(u))),
            (Value::Bytes(vec![1, 2]), SqValue::Bytes(Some(vec![1, 2]))),
        ];
        for (v, want) in cases {
            assert_eq!(bind_value(v.clone()), want, "{v:?}");
        }
        // A decimal key compares as a number on PostgreSQL and MySQL.
        assert_eq!(
            numeric_binds(vec![
                Value::Decimal("12".into()),
                Value::Decimal("1.5".into())
            ]),
            vec![Value::Int(12), Value::Float(1.5)]
        );
    }

    /// The stored position keeps the time order's JSON as it was, has its own for the seq
    /// order, and a position of the other order is refused with the way to start over.
    #[test]
    fn cursors_stored_per_order() {
        let job = |order: &str| -> JobConfig {
            toml::from_str(&format!(
                "name = \"j\"\ndata_type = \"accept\"\nsource = \"v\"\nkey = [\"id\"]\n\
                 seq_column = \"ver\"\norder = \"{order}\"\ninterval = \"1m\"\n"
            ))
            .unwrap()
        };
        let (time_job, seq_job) = (job("time"), job("seq"));
        let time = Cursor::Time(Position {
            time: Value::Text("2026-11-20 10:07:00".into()),
            key: vec![Value::Int(8)],
        });
        let seq = Cursor::Seq(SeqPosition {
            seq: Some(105),
            seen: vec![Seen {
                at_ms: 1_700_000_000_000,
                max: 110,
            }],
        });
        let cases = [
            (
                &time,
                &time_job,
                r#"{"time":{"t":"text","v":"2026-11-20 10:07:00"},"key":[{"t":"int","v":8}]}"#,
                "2026-11-20 10:07:00 / 8",
                Some(vec![
                    Value::Text("2026-11-20 10:07:00".into()),
                    Value::Int(8),
                ]),
            ),
            (
                &seq,
                &seq_job,
                r#"{"seq":105,"seen":[{"at_ms":1700000000000,"max":110}]}"#,
                "105",
                Some(vec![Value::Int(105)]),
            ),
        ];
        for (cursor, job, json, shown, after) in cases {
            assert_eq!(serde_json::to_string(cursor).unwrap(), json);
            let value: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(&Cursor::parse(job, &value).unwrap(), cursor);
            assert_eq!(cursor.shown(), shown);
            assert_eq!(cursor.after(), after);
        }
        // Nothing read yet in seq order: read from the first row.
        assert_eq!(Cursor::Seq(SeqPosition::default()).after(), None);
        // The order was changed under a stored position.
        for (job, json) in [
            (&seq_job, serde_json::to_value(&time).unwrap()),
            (&time_job, serde_json::to_value(&seq).unwrap()),
        ] {
            let e = Cursor::parse(job, &json).unwrap_err().to_string();
            assert!(
                e.contains("UPDATE qz_cursor SET position = NULL WHERE job = 'j'")
                    && e.contains("改过 order"),
                "{e}"
            );
        }
    }

    #[test]
    fn casts_to_add_to_the_view() {
        let col = |name: &str, ty: &str| SourceColumn {
            name: name.into(),
            type_name: ty.into(),
            readable: false,
        };
        let cases = [
            (
                Backend::Postgres,
                "wait",
                "INTERVAL",
                "CAST(wait AS TEXT) AS wait",
            ),
            (
                Backend::Postgres,
                "client_ip",
                "INET",
                "CAST(client_ip AS TEXT) AS client_ip",
            ),
            (
                Backend::Postgres,
                "fee",
                "MONEY",
                "CAST(fee AS NUMERIC) AS fee",
            ),
            // A name PostgreSQL would fold stays quoted; MySQL names ignore case.
            (
                Backend::Postgres,
                "Wait",
                "INTERVAL",
                "CAST(\"Wait\" AS TEXT) AS \"Wait\"",
            ),
            (Backend::Mysql, "Wait", "TIME", "CAST(Wait AS CHAR) AS Wait"),
            (
                Backend::Mysql,
                "办理时长",
                "TIME",
                "CAST(`办理时长` AS CHAR) AS `办理时长`",
            ),
            (
                Backend::Mysql,
                "flags",
                "BIT",
                "CAST(flags AS UNSIGNED) AS flags",
            ),
            (
                Backend::Mysql,
                "place",
                "GEOMETRY",
                "ST_AsText(place) AS place",
            ),
        ];
        for (backend, name, ty, want) in cases {
            assert_eq!(col(name, ty).cast(backend), want, "{name} {ty}");
        }
        let msg = col("wait", "INTERVAL").unreadable_message(Backend::Postgres, "v_accept");
        assert!(
            msg.contains("v_accept")
                && msg.contains("INTERVAL")
                && msg.contains("CAST(wait AS TEXT) AS wait"),
            "{msg}"
        );
    }
}
