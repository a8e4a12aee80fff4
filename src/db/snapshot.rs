//! The snapshot read (`mode = "snapshot"`): the whole view in the binary order of its key,
//! and the job's `qz_row_state` in the same order (by `key_sort`), each streamed in chunks
//! through a channel by the native driver, so neither side is ever held in memory whole.

use super::dialect::Family;
use anyhow::{Context, Result};
use futures_util::TryStreamExt;
use sea_query::{Expr, ExprTrait, Order, Query};
use sqlx::Row;
use std::collections::HashMap;
use tokio::sync::mpsc;

use super::source::{
    SourceColumn, column_name, decode_lite_rows, decode_my_rows, decode_pg_rows, quote, resolved,
    table_name,
};
use super::{Backend, Db, SourcePool};
use crate::value::SourceRow;

/// One `qz_row_state` row as the snapshot merge needs it: the key's sort bytes and the digest
/// of what was delivered (the source key comes along to name a delete).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateEntry {
    pub key_sort: Vec<u8>,
    pub source_key: String,
    pub digest: String,
}

/// What a delete is built from: the RowGuid and the record last delivered (JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredRecord {
    pub row_guid: String,
    pub record: Option<Vec<u8>>,
}

/// Whether a key column holds text (by the driver's type name), so that its order must be
/// asked for in bytes: the database's collation may ignore case, accents or trailing spaces.
fn is_text(backend: Backend, type_name: &str) -> bool {
    let t = type_name.to_ascii_uppercase();
    match backend.family() {
        Some(Family::Postgres) => {
            matches!(t.as_str(), "TEXT" | "VARCHAR" | "BPCHAR" | "CHAR" | "NAME")
        }
        Some(Family::Mysql) => {
            t.contains("CHAR") || t.contains("TEXT") || t == "ENUM" || t == "SET"
        }
        Some(Family::Oracle) => t.contains("CHAR") || t.contains("CLOB"),
        // SQLite types values, not columns: its BINARY collation is asked for on every key.
        None => true,
    }
}

/// `ORDER BY` of one key column in byte order: PostgreSQL's "C" collation, MySQL's binary
/// cast (no PAD SPACE either), SQLite's BINARY collation. Other types sort by value, as the
/// key's encoding does (`keysort`).
fn order_expr(backend: Backend, key: &str, text: bool) -> Expr {
    let col = quote(backend, &resolved(backend, key));
    if !text {
        return Expr::col(column_name(backend, key));
    }
    Expr::cust(match backend.family() {
        Some(Family::Postgres) => format!("{col} COLLATE \"C\""),
        Some(Family::Mysql) => format!("CAST({col} AS BINARY)"),
        // Oracle and DM compare VARCHAR2 in binary order unless NLS_SORT says otherwise.
        Some(Family::Oracle) => format!("NLSSORT({col}, 'NLS_SORT=BINARY')"),
        None => format!("{col} COLLATE BINARY"),
    })
}

/// The SELECT of a snapshot: `select` from the view, ordered by the key in byte order.
pub fn snapshot_sql(
    backend: Backend,
    table: &str,
    select: &[String],
    key: &[String],
    view: &[SourceColumn],
) -> String {
    let mut q = Query::select();
    for c in select {
        q.column(c.clone());
    }
    q.from(table_name(backend, table));
    for k in key {
        let text = view
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(k) || c.name == resolved(backend, k))
            .is_some_and(|c| is_text(backend, &c.type_name));
        q.order_by_expr(order_expr(backend, k, text), Order::Asc);
    }
    backend.build(&q).0
}

/// Reads a native-pool stream in chunks of `chunk` rows, decodes each chunk and hands it on;
/// stops early (no error) when the receiver is gone.
macro_rules! stream_chunks {
    ($stream:expr, $chunk:expr, $tx:expr, $decode:expr) => {{
        let mut stream = $stream;
        let mut buf = Vec::with_capacity($chunk);
        loop {
            let row = stream.try_next().await?;
            let end = row.is_none();
            if let Some(r) = row {
                buf.push(r);
            }
            if buf.len() == $chunk || (end && !buf.is_empty()) {
                let rows = std::mem::replace(&mut buf, Vec::with_capacity($chunk));
                if $tx.send($decode(rows)?).await.is_err() {
                    break;
                }
            }
            if end {
                break;
            }
        }
    }};
}

impl Db {
    /// Streams the view in key order (`snapshot_sql`), `chunk` decoded rows at a time.
    pub async fn stream_snapshot(
        &self,
        sql: String,
        source: &str,
        chunk: usize,
        tx: mpsc::Sender<Vec<SourceRow>>,
    ) -> Result<()> {
        let backend = self.backend;
        let ctx = || format!("reading source {source} (snapshot)");
        #[cfg(feature = "odbc")]
        if let SourcePool::Odbc(p) = &self.source {
            p.source_rows(sql, Vec::new(), Some((chunk, tx)))
                .await
                .with_context(ctx)?;
            return Ok(());
        }
        let sql = sqlx::AssertSqlSafe(sql);
        let run = async {
            match &self.source {
                SourcePool::Postgres(p) => {
                    stream_chunks!(sqlx::query(sql).fetch(p), chunk, tx, |rows: Vec<_>| {
                        decode_pg_rows(&rows, backend, source)
                    })
                }
                SourcePool::Mysql(p) => {
                    stream_chunks!(sqlx::query(sql).fetch(p), chunk, tx, |rows: Vec<_>| {
                        decode_my_rows(&rows, backend, source)
                    })
                }
                SourcePool::Sqlite(p) => {
                    stream_chunks!(sqlx::query(sql).fetch(p), chunk, tx, |rows| {
                        decode_lite_rows(rows, backend, source)
                    })
                }
                #[cfg(feature = "odbc")]
                SourcePool::Odbc(_) => unreachable!("streamed above"),
            }
            Ok::<(), anyhow::Error>(())
        };
        run.await.with_context(ctx)
    }

    /// Streams the job's `qz_row_state` by `key_sort` (key, sort bytes and digest only: the
    /// stored records are read for deletes alone), through the native pool.
    pub async fn stream_row_state(
        &self,
        job: &str,
        chunk: usize,
        tx: mpsc::Sender<Vec<StateEntry>>,
    ) -> Result<()> {
        let q = Query::select()
            .columns(["key_sort", "source_key", "row_hash"])
            .from("qz_row_state")
            .and_where(Expr::col("job").eq(job))
            .order_by("key_sort", Order::Asc)
            .to_owned();
        let (sql, values) = self.backend.build(&q);
        let sql = sqlx::AssertSqlSafe(sql);
        fn entries<R: Row>(rows: Vec<R>) -> Result<Vec<StateEntry>>
        where
            for<'r> Option<Vec<u8>>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            usize: sqlx::ColumnIndex<R>,
        {
            rows.iter()
                .map(|r| {
                    Ok(StateEntry {
                        key_sort: r.try_get::<Option<Vec<u8>>, _>(0)?.unwrap_or_default(),
                        source_key: r.try_get(1)?,
                        digest: r.try_get(2)?,
                    })
                })
                .collect()
        }
        let run = async {
            match &self.source {
                SourcePool::Postgres(p) => {
                    stream_chunks!(sqlx::query_with(sql, values).fetch(p), chunk, tx, entries)
                }
                SourcePool::Mysql(p) => {
                    stream_chunks!(sqlx::query_with(sql, values).fetch(p), chunk, tx, entries)
                }
                SourcePool::Sqlite(p) => {
                    stream_chunks!(sqlx::query_with(sql, values).fetch(p), chunk, tx, entries)
                }
                // The control tables over ODBC are `Any`'s (`odbc_any`).
                #[cfg(feature = "odbc")]
                SourcePool::Odbc(_) => {
                    let rows = sqlx::query_with(sql, values).fetch(&self.any);
                    stream_chunks!(rows, chunk, tx, entries)
                }
            }
            Ok::<(), anyhow::Error>(())
        };
        run.await.context("reading qz_row_state")
    }

    /// How many keys the job has delivered and not deleted.
    pub async fn state_count(&self, job: &str) -> Result<i64> {
        let q = Query::select()
            .expr(Expr::col("source_key").count())
            .from("qz_row_state")
            .and_where(Expr::col("job").eq(job))
            .to_owned();
        Ok(self.stmt_scalar(&q).fetch_one(&self.any).await?)
    }

    /// The RowGuid and last delivered record of each of `keys` (the deletes of a snapshot).
    pub async fn stored_records(
        &self,
        job: &str,
        keys: &[&str],
    ) -> Result<HashMap<String, StoredRecord>> {
        let mut out = HashMap::new();
        for chunk in keys.chunks(200) {
            let q = Query::select()
                .columns(["source_key", "row_guid", "record"])
                .from("qz_row_state")
                .and_where(Expr::col("job").eq(job))
                .and_where(Expr::col("source_key").is_in(chunk.iter().copied()))
                .to_owned();
            for r in self.stmt(&q).fetch_all(&self.any).await? {
                out.insert(
                    r.try_get::<String, _>(0)?,
                    StoredRecord {
                        row_guid: r.try_get(1)?,
                        record: r.try_get(2)?,
                    },
                );
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_reads_order_text_keys_by_their_bytes() {
        let col = |name: &str, ty: &str| SourceColumn {
            name: name.into(),
            type_name: ty.into(),
            readable: true,
        };
        let select = ["id", "code", "name"].map(String::from);
        let key = ["code", "id"].map(String::from);
        let cases = [
            (
                Backend::Postgres,
                vec![col("id", "INT8"), col("code", "VARCHAR")],
                r#"SELECT "id", "code", "name" FROM "v" ORDER BY "code" COLLATE "C" ASC, "id" ASC"#,
            ),
            (
                Backend::Mysql,
                vec![col("id", "BIGINT"), col("code", "VARCHAR")],
                r#"SELECT `id`, `code`, `name` FROM `v` ORDER BY CAST(`code` AS BINARY) ASC, `id` ASC"#,
            ),
            (
                Backend::Sqlite,
                vec![col("id", "INTEGER"), col("code", "TEXT")],
                r#"SELECT "id", "code", "name" FROM "v" ORDER BY "code" COLLATE BINARY ASC, "id" COLLATE BINARY ASC"#,
            ),
        ];
        for (backend, view, want) in cases {
            assert_eq!(
                snapshot_sql(backend, "v", &select, &key, &view),
                want,
                "{backend:?}"
            );
        }
    }
}
