//! What `qianzhi check` asks a source about beyond its columns: whether its key is unique
//! (a bounded duplicate query) and which indexes its table has (for the keyset read).

use anyhow::{Context, Result};
use sea_query::{Alias, Expr, ExprTrait, Query};
use sqlx::Row;

use super::dialect::Family;
use super::source::{column_name, table_name};
use super::{Backend, Db};

impl Db {
    /// Up to `limit` key values (as text) that more than one row of `table` has.
    pub async fn duplicate_keys(
        &self,
        table: &str,
        key: &[String],
        limit: u64,
    ) -> Result<Vec<String>> {
        let b = self.backend;
        let mut q = Query::select();
        q.from(table_name(b, table));
        for k in key {
            q.column(column_name(b, k));
            q.group_by_col(column_name(b, k));
        }
        q.and_having(Expr::col(sea_query::Asterisk).count().gt(1))
            .limit(limit);
        // Each key value as text, so any key type reads back the same way.
        let mut text = Query::select();
        for (i, k) in key.iter().enumerate() {
            let as_text = Expr::col(column_name(b, k)).cast_as(Alias::new(b.text_cast_type()));
            text.expr_as(as_text, Alias::new(format!("k{i}")));
        }
        text.from_subquery(q, Alias::new("d"));
        let rows = self
            .stmt(&text)
            .fetch_all(&self.any)
            .await
            .with_context(|| format!("looking for repeated keys in {table}"))?;
        rows.iter()
            .map(|r| {
                let parts: Vec<String> = (0..key.len())
                    .map(|i| {
                        r.try_get::<Option<String>, _>(i)
                            .map(Option::unwrap_or_default)
                    })
                    .collect::<Result<_, _>>()?;
                Ok(parts.join(", "))
            })
            .collect()
    }

    /// The column lists of the indexes of `table` (first column first), or None when it is a
    /// view (its base table's indexes are not looked for) or cannot be found.
    pub async fn source_indexes(&self, table: &str) -> Result<Option<Vec<Vec<String>>>> {
        // The table's own name (the last part of a qualified name), as the catalogs spell it.
        let name = table.rsplit('.').next().unwrap_or(table);
        let name = super::source::resolved(self.backend, name);
        let sql = match self.backend {
            Backend::Postgres => PG_INDEXES,
            Backend::Mysql => MY_INDEXES,
            Backend::Sqlite => {
                "SELECT l.name, i.name FROM sqlite_master m, pragma_index_list(m.name) l, \
                 pragma_index_info(l.name) i WHERE m.type = 'table' AND m.name = ? \
                 ORDER BY l.name, i.seqno"
            }
            Backend::Odbc(d) => match Family::of(d) {
                Family::Postgres => PG_INDEXES,
                Family::Mysql => MY_INDEXES,
                Family::Oracle => {
                    "SELECT INDEX_NAME, COLUMN_NAME FROM USER_IND_COLUMNS WHERE TABLE_NAME = ? \
                     ORDER BY INDEX_NAME, COLUMN_POSITION"
                }
            },
        };
        let sql = placeholders(self.backend, sql);
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name.clone())
            .fetch_all(&self.any)
            .await
            .with_context(|| format!("reading the indexes of {table}"))?;
        if rows.is_empty() && !self.is_table(&name).await? {
            return Ok(None);
        }
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for r in &rows {
            let (index, column): (String, String) = (r.try_get(0)?, r.try_get(1)?);
            match out.last_mut() {
                Some((i, cols)) if *i == index => cols.push(column),
                _ => out.push((index, vec![column])),
            }
        }
        Ok(Some(out.into_iter().map(|(_, c)| c).collect()))
    }

    /// Whether `name` is a base table (not a view) this connection sees.
    async fn is_table(&self, name: &str) -> Result<bool> {
        let sql = match self.backend {
            Backend::Postgres => PG_IS_TABLE,
            Backend::Mysql => MY_IS_TABLE,
            Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
            }
            Backend::Odbc(d) => match Family::of(d) {
                Family::Postgres => PG_IS_TABLE,
                Family::Mysql => MY_IS_TABLE,
                Family::Oracle => "SELECT COUNT(*) FROM USER_TABLES WHERE TABLE_NAME = ?",
            },
        };
        let sql = placeholders(self.backend, sql);
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(name.to_string())
            .fetch_one(&self.any)
            .await?;
        Ok(n > 0)
    }
}

const PG_INDEXES: &str = "SELECT i.relname::text, a.attname::text FROM pg_index x \
     JOIN pg_class t ON t.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid \
     CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, n) \
     JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum \
     WHERE t.relname = $1 AND t.relkind IN ('r', 'p', 'm') ORDER BY i.relname, k.n";

const MY_INDEXES: &str = "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS \
     WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY INDEX_NAME, SEQ_IN_INDEX";

const PG_IS_TABLE: &str =
    "SELECT COUNT(*) FROM pg_class WHERE relname = $1 AND relkind IN ('r', 'p', 'm')";

const MY_IS_TABLE: &str = "SELECT COUNT(*) FROM information_schema.TABLES \
     WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND TABLE_TYPE = 'BASE TABLE'";

/// A catalog query in the placeholders of the connection: ODBC drivers take `?` only.
fn placeholders(backend: Backend, sql: &str) -> String {
    match backend {
        Backend::Odbc(_) => sql.replace("$1", "?"),
        _ => sql.to_string(),
    }
}

/// Whether one of `indexes` starts with `columns` in this order (names compared ignoring
/// case), so the keyset read is a range scan.
pub fn has_leading_index(indexes: &[Vec<String>], columns: &[&str]) -> bool {
    indexes.iter().any(|ix| {
        ix.len() >= columns.len()
            && ix
                .iter()
                .zip(columns)
                .all(|(a, b)| a.eq_ignore_ascii_case(b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_index_columns_in_order() {
        let ix = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let indexes = vec![ix(&["cd_time", "change_id"]), ix(&["ID"])];
        let cases: [(&[&str], bool); 5] = [
            (&["cd_time", "change_id"], true),
            (&["cd_time"], true),
            (&["id"], true),
            (&["change_id", "cd_time"], false),
            (&["cd_time", "id"], false),
        ];
        for (cols, want) in cases {
            assert_eq!(has_leading_index(&indexes, cols), want, "{cols:?}");
        }
    }
}
