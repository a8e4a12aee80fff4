//! Reading a job's source (table or view) in keyset order through the native driver, decoding
//! whatever column types the department's schema uses into `Value`.

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};
use sqlx::{Column, Executor, Row, Statement, TypeInfo, ValueRef};

use std::sync::Arc;

use super::{Backend, Db, SourcePool};
use crate::value::{SourceRow, Value};

/// Where a changelog job has read up to: change time and key of the last row taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    pub time: Value,
    pub key: Vec<Value>,
}

pub struct SourceSpec<'a> {
    pub table: &'a str,
    pub time_column: &'a str,
    pub key: &'a [String],
}

/// Plain identifiers are used as written (so PostgreSQL folds case as the DBA expects);
/// anything else (e.g. Chinese column names) is quoted. Config validation has already
/// rejected quote characters.
pub fn ident(backend: Backend, name: &str) -> String {
    let plain = |p: &str| {
        p.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
    };
    name.split('.')
        .map(|p| {
            if plain(p) {
                p.to_string()
            } else if backend == Backend::Mysql {
                format!("`{p}`")
            } else {
                format!("\"{p}\"")
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn keyset_sql(
    backend: Backend,
    spec: &SourceSpec<'_>,
    has_position: bool,
    limit: Option<usize>,
    count_cap: Option<i64>,
) -> String {
    let cols: Vec<String> = std::iter::once(spec.time_column)
        .chain(spec.key.iter().map(String::as_str))
        .map(|c| ident(backend, c))
        .collect();
    let table = ident(backend, spec.table);
    let mut n = 0;
    let mut ph = || {
        n += 1;
        if backend == Backend::Postgres {
            format!("${n}")
        } else {
            "?".to_string()
        }
    };
    let filter = if has_position {
        let marks: Vec<String> = cols.iter().map(|_| ph()).collect();
        format!("({}) > ({})", cols.join(", "), marks.join(", "))
    } else {
        format!("{} IS NOT NULL", cols[0])
    };
    match count_cap {
        Some(cap) => format!(
            "SELECT COUNT(*) FROM (SELECT 1 AS one FROM {table} WHERE {filter} LIMIT {cap}) t"
        ),
        None => format!(
            "SELECT * FROM {table} WHERE {filter} ORDER BY {} LIMIT {}",
            cols.join(", "),
            limit.unwrap_or(1000)
        ),
    }
}

macro_rules! bind_values {
    ($query:expr, $values:expr, $backend:expr) => {{
        let mut q = $query;
        for v in $values {
            q = match v {
                Value::Null => q.bind(None::<String>),
                Value::Bool(b) => q.bind(*b),
                Value::Int(i) => q.bind(*i),
                Value::Float(f) => q.bind(*f),
                Value::Decimal(d) => q.bind(d.clone()),
                Value::Text(s) => q.bind(s.clone()),
                Value::Date(d) => q.bind(*d),
                Value::DateTime(t) => q.bind(*t),
                Value::DateTimeTz(t) => q.bind(t.with_timezone(&chrono::Utc)),
                Value::Uuid(u) => q.bind(*u),
                Value::Bytes(b) => q.bind(b.clone()),
            };
        }
        q
    }};
}

/// SQLite keeps dates and UUIDs as text, so positions are compared as text there.
fn sqlite_binds(values: Vec<Value>) -> Vec<Value> {
    values
        .into_iter()
        .map(|v| match v {
            Value::Date(_) | Value::DateTime(_) | Value::DateTimeTz(_) | Value::Uuid(_) => {
                Value::Text(v.to_text().unwrap_or_default())
            }
            v => v,
        })
        .collect()
}

fn position_values(p: &Position) -> Vec<Value> {
    std::iter::once(p.time.clone())
        .chain(p.key.iter().cloned())
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
    /// Up to `limit` rows after `after`, in (time, key) order.
    pub async fn read_changes(
        &self,
        spec: &SourceSpec<'_>,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<Vec<SourceRow>> {
        let sql = keyset_sql(self.backend, spec, after.is_some(), Some(limit), None);
        let values = after
            .map(position_values)
            .map(numeric_binds)
            .unwrap_or_default();
        let ctx = || format!("reading source {}", spec.table);
        Ok(match &self.source {
            SourcePool::Postgres(p) => {
                let rows = bind_values!(
                    sqlx::query(sqlx::AssertSqlSafe(sql.clone())),
                    &values,
                    self.backend
                )
                .fetch_all(p)
                .await
                .with_context(ctx)?;
                {
                    let names = column_names(&rows);
                    rows.iter()
                        .map(|r| decode_pg_row(r, &names))
                        .collect::<Result<_>>()?
                }
            }
            SourcePool::Mysql(p) => {
                let rows = bind_values!(
                    sqlx::query(sqlx::AssertSqlSafe(sql.clone())),
                    &values,
                    self.backend
                )
                .fetch_all(p)
                .await
                .with_context(ctx)?;
                {
                    let names = column_names(&rows);
                    rows.iter()
                        .map(|r| decode_my_row(r, &names))
                        .collect::<Result<_>>()?
                }
            }
            SourcePool::Sqlite(p) => {
                let values = sqlite_binds(values);
                let rows = bind_values!(
                    sqlx::query(sqlx::AssertSqlSafe(sql.clone())),
                    &values,
                    self.backend
                )
                .fetch_all(p)
                .await
                .with_context(ctx)?;
                {
                    let names = column_names(&rows);
                    rows.iter()
                        .map(|r| decode_lite_row(r, &names))
                        .collect::<Result<_>>()?
                }
            }
        })
    }

    /// Rows after `after`, counted up to `cap` so status stays cheap on a huge backlog.
    pub async fn count_after(
        &self,
        spec: &SourceSpec<'_>,
        after: Option<&Position>,
        cap: i64,
    ) -> Result<i64> {
        let sql = keyset_sql(self.backend, spec, after.is_some(), None, Some(cap));
        let values = after
            .map(position_values)
            .map(numeric_binds)
            .unwrap_or_default();
        Ok(match &self.source {
            SourcePool::Postgres(p) => {
                bind_values!(
                    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.clone())),
                    &values,
                    self.backend
                )
                .fetch_one(p)
                .await?
            }
            SourcePool::Mysql(p) => {
                bind_values!(
                    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.clone())),
                    &values,
                    self.backend
                )
                .fetch_one(p)
                .await?
            }
            SourcePool::Sqlite(p) => {
                let values = sqlite_binds(values);
                bind_values!(
                    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.clone())),
                    &values,
                    self.backend
                )
                .fetch_one(p)
                .await?
            }
        })
    }

    /// Column names of a table or view, or a clear error when it does not exist.
    pub async fn source_columns(&self, table: &str) -> Result<Vec<String>> {
        let sql = format!("SELECT * FROM {}", ident(self.backend, table));
        let ctx = || {
            format!(
                "source {table} cannot be read (does it exist, and may this user SELECT from it?)"
            )
        };
        let q = || sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(sql.clone()));
        fn names<C: Column>(cols: &[C]) -> Vec<String> {
            cols.iter().map(|c| c.name().to_string()).collect()
        }
        Ok(match &self.source {
            SourcePool::Postgres(p) => names(p.prepare(q()).await.with_context(ctx)?.columns()),
            SourcePool::Mysql(p) => names(p.prepare(q()).await.with_context(ctx)?.columns()),
            SourcePool::Sqlite(p) => names(p.prepare(q()).await.with_context(ctx)?.columns()),
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

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
    v.map(f).unwrap_or(Value::Null)
}

fn decode_pg_row(row: &sqlx::postgres::PgRow, names: &Arc<[String]>) -> Result<SourceRow> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
    // The match on the column's type name already picks a compatible Rust type, so the
    // per-value compatibility check of `try_get` is skipped.
    let mut values = Vec::with_capacity(row.columns().len());
    for (i, col) in row.columns().iter().enumerate() {
        let ty = col.type_info().name();
        let v = match ty {
            "BOOL" => opt(row.try_get_unchecked::<Option<bool>, _>(i)?, Value::Bool),
            "INT2" => opt(row.try_get_unchecked::<Option<i16>, _>(i)?, |x| Value::Int(x.into())),
            "INT4" => opt(row.try_get_unchecked::<Option<i32>, _>(i)?, |x| Value::Int(x.into())),
            "INT8" => opt(row.try_get_unchecked::<Option<i64>, _>(i)?, Value::Int),
            "FLOAT4" => opt(row.try_get_unchecked::<Option<f32>, _>(i)?, |x| Value::Float(x.into())),
            "FLOAT8" => opt(row.try_get_unchecked::<Option<f64>, _>(i)?, Value::Float),
            "NUMERIC" => opt(row.try_get_unchecked::<Option<rust_decimal::Decimal>, _>(i)?, |d| Value::Decimal(d.normalize().to_string())),
            "DATE" => opt(row.try_get_unchecked::<Option<NaiveDate>, _>(i)?, Value::Date),
            "TIMESTAMP" => opt(row.try_get_unchecked::<Option<NaiveDateTime>, _>(i)?, Value::DateTime),
            "TIMESTAMPTZ" => opt(row.try_get_unchecked::<Option<DateTime<Utc>>, _>(i)?, |t| Value::DateTimeTz(t.fixed_offset())),
            "UUID" => opt(row.try_get_unchecked::<Option<uuid::Uuid>, _>(i)?, Value::Uuid),
            "JSON" | "JSONB" => opt(row.try_get_unchecked::<Option<serde_json::Value>, _>(i)?, |j| Value::Text(j.to_string())),
            "BYTEA" => opt(row.try_get_unchecked::<Option<Vec<u8>>, _>(i)?, Value::Bytes),
            "TIME" => opt(row.try_get_unchecked::<Option<chrono::NaiveTime>, _>(i)?, |t| Value::Text(t.to_string())),
            "TEXT" | "VARCHAR" | "CHAR" | "NAME" => {
                opt(row.try_get_unchecked::<Option<String>, _>(i)?, Value::Text)
            }
            // Anything else is read as text only if the driver agrees it is text.
            _ => opt(
                row.try_get::<Option<String>, _>(i)
                    .map_err(|e| anyhow!("column {} has type {ty}, which qianzhi cannot read; cast it to text in the view ({e})", col.name()))?,
                Value::Text,
            ),
        };
        values.push(v);
    }
    Ok(SourceRow {
        names: names.clone(),
        values,
    })
}

fn decode_my_row(row: &sqlx::mysql::MySqlRow, names: &Arc<[String]>) -> Result<SourceRow> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
    let mut values = Vec::with_capacity(row.columns().len());
    for (i, col) in row.columns().iter().enumerate() {
        let ty = col.type_info().name();
        if row.try_get_raw(i)?.is_null() {
            values.push(Value::Null);
            continue;
        }
        let v = match ty {
            "BOOLEAN" => Value::Bool(row.try_get::<bool, _>(i)?),
            t if t.ends_with("UNSIGNED") => Value::Int(row.try_get::<u64, _>(i)? as i64),
            "TINYINT" | "SMALLINT" | "INT" | "MEDIUMINT" | "BIGINT" | "YEAR" => {
                Value::Int(row.try_get::<i64, _>(i)?)
            }
            "FLOAT" => Value::Float(row.try_get::<f32, _>(i)?.into()),
            "DOUBLE" => Value::Float(row.try_get::<f64, _>(i)?),
            "DECIMAL" => Value::Decimal(
                row.try_get::<rust_decimal::Decimal, _>(i)?
                    .normalize()
                    .to_string(),
            ),
            "DATE" => Value::Date(row.try_get::<NaiveDate, _>(i)?),
            "DATETIME" => Value::DateTime(row.try_get::<NaiveDateTime, _>(i)?),
            "TIMESTAMP" => Value::DateTimeTz(row.try_get::<DateTime<Utc>, _>(i)?.fixed_offset()),
            "JSON" => Value::Text(row.try_get::<serde_json::Value, _>(i)?.to_string()),
            _ => match row.try_get::<String, _>(i) {
                Ok(s) => Value::Text(s),
                Err(_) => match row.try_get::<Vec<u8>, _>(i) {
                    Ok(b) => match String::from_utf8(b) {
                        Ok(s) => Value::Text(s),
                        Err(e) => Value::Bytes(e.into_bytes()),
                    },
                    Err(e) => {
                        return Err(anyhow!(
                            "column {} has type {ty}, which qianzhi cannot read; cast it to CHAR in the view ({e})",
                            col.name()
                        ));
                    }
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

fn decode_lite_row(row: &sqlx::sqlite::SqliteRow, names: &Arc<[String]>) -> Result<SourceRow> {
    let mut values = Vec::with_capacity(row.columns().len());
    for i in 0..row.columns().len() {
        let raw = row.try_get_raw(i)?;
        // SQLite types values, not columns: ask each value what it holds.
        let kind = if raw.is_null() {
            "NULL".to_string()
        } else {
            raw.type_info().name().to_string()
        };
        let v = match kind.as_str() {
            "NULL" => Value::Null,
            "INTEGER" => Value::Int(row.try_get::<i64, _>(i)?),
            "REAL" => Value::Float(row.try_get::<f64, _>(i)?),
            "BLOB" => Value::Bytes(row.try_get::<Vec<u8>, _>(i)?),
            _ => Value::Text(row.try_get::<String, _>(i)?),
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

    #[test]
    fn keyset_sql_per_backend() {
        let key = vec!["id".to_string(), "seq".to_string()];
        let spec = SourceSpec {
            table: "ods.accept_changes",
            time_column: "cd_time",
            key: &key,
        };
        assert_eq!(
            keyset_sql(Backend::Postgres, &spec, true, Some(500), None),
            "SELECT * FROM ods.accept_changes WHERE (cd_time, id, seq) > ($1, $2, $3) ORDER BY cd_time, id, seq LIMIT 500"
        );
        assert_eq!(
            keyset_sql(Backend::Mysql, &spec, false, Some(10), None),
            "SELECT * FROM ods.accept_changes WHERE cd_time IS NOT NULL ORDER BY cd_time, id, seq LIMIT 10"
        );
        assert_eq!(
            keyset_sql(Backend::Sqlite, &spec, true, None, Some(100)),
            "SELECT COUNT(*) FROM (SELECT 1 AS one FROM ods.accept_changes WHERE (cd_time, id, seq) > (?, ?, ?) LIMIT 100) t"
        );
        assert_eq!(ident(Backend::Mysql, "办件"), "`办件`");
        assert_eq!(ident(Backend::Postgres, "办件"), "\"办件\"");
    }
}
