//! Where a rendered control-table statement runs: sqlx's `Any` pool (SQLite, PostgreSQL,
//! MySQL) or an ODBC pool (the `odbc` feature). Both take the same text (`Backend::build`)
//! and the same values, and give rows back as the same cells, so code above chooses neither.

use anyhow::Result;
use sea_query::Value;
use sea_query_sqlx::SqlxValues;

/// One value of a result row. The control tables hold only text and integers; an integer
/// comes back as text through ODBC and is parsed where it is read ([`Cell::int`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
}

impl Cell {
    pub fn int(&self) -> Option<i64> {
        match self {
            Cell::Int(n) => Some(*n),
            Cell::Text(t) => t.trim().parse().ok(),
            Cell::Null => None,
        }
    }

    pub fn text(&self) -> Option<String> {
        match self {
            Cell::Int(n) => Some(n.to_string()),
            Cell::Text(t) => Some(t.clone()),
            Cell::Null => None,
        }
    }
}

/// The connection pool of the control tables.
#[derive(Clone, Debug)]
pub enum Executor {
    Any(sqlx::AnyPool),
    #[cfg(feature = "odbc")]
    Odbc(super::odbc_pool::Pool),
}

impl Executor {
    /// Runs a statement; the rows it changed.
    pub async fn execute(&self, sql: &str, values: Vec<Value>) -> Result<u64> {
        match self {
            Executor::Any(pool) => {
                let q = sqlx::query_with(
                    sqlx::AssertSqlSafe(sql.to_string()),
                    SqlxValues(sea_query::Values(values)),
                );
                Ok(q.execute(pool).await?.rows_affected())
            }
            #[cfg(feature = "odbc")]
            Executor::Odbc(pool) => pool.execute(sql, values).await,
        }
    }

    /// Runs a query; every row as cells, in column order.
    pub async fn fetch_all(&self, sql: &str, values: Vec<Value>) -> Result<Vec<Vec<Cell>>> {
        match self {
            Executor::Any(pool) => {
                use sqlx::Row;
                let q = sqlx::query_with(
                    sqlx::AssertSqlSafe(sql.to_string()),
                    SqlxValues(sea_query::Values(values)),
                );
                let rows = q.fetch_all(pool).await?;
                Ok(rows
                    .iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| {
                                if let Ok(n) = r.try_get::<Option<i64>, _>(i) {
                                    n.map_or(Cell::Null, Cell::Int)
                                } else if let Ok(t) = r.try_get::<Option<String>, _>(i) {
                                    t.map_or(Cell::Null, Cell::Text)
                                } else {
                                    Cell::Null
                                }
                            })
                            .collect()
                    })
                    .collect())
            }
            #[cfg(feature = "odbc")]
            Executor::Odbc(pool) => pool.fetch_all(sql, values).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_read_as_integers_and_text() {
        for (c, int, text) in [
            (Cell::Int(7), Some(7), Some("7")),
            (Cell::Text("42".into()), Some(42), Some("42")),
            (Cell::Text(" 9 ".into()), Some(9), Some(" 9 ")),
            (Cell::Text("x".into()), None, Some("x")),
            (Cell::Null, None, None),
        ] {
            assert_eq!(c.int(), int, "{c:?}");
            assert_eq!(c.text().as_deref(), text, "{c:?}");
        }
    }
}
