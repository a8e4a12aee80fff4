//! Credit-query tables: the subjects view, the spend ledger and budget, provider pauses and
//! stops, per-subject freshness, and the flattened result tables.

use anyhow::{Context, Result};
use sqlx::{Any, Row, Transaction};

use super::source::ident;
use super::{Backend, Db};
use crate::timefmt::now_text;

/// Rows for one result table; the db layer adds subject, fetch time, order and raw JSON.
/// Defined here, below `query`, which fills it (arrows point down: ARCHITECTURE.md).
#[derive(Debug, Clone, PartialEq)]
pub struct TableRows {
    pub table: &'static str,
    pub columns: &'static [&'static str],
    pub rows: Vec<FlatRow>,
}

/// One result row: the column values in `TableRows::columns` order, and the item's JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct FlatRow {
    pub values: Vec<Option<String>>,
    pub raw: String,
}

/// Result columns that hold counts, bound as integers so PostgreSQL accepts them.
const INT_COLUMNS: &[&str] = &["punish_count", "credit_seq"];

/// A call reserved against the day's budget; its ledger row waits for the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserved {
    pub ledger_id: i64,
}

/// What one call got, for its ledger row.
#[derive(Debug, Clone, Default)]
pub struct CallRecord {
    pub status_code: String,
    pub action: &'static str,
    pub billed: bool,
    pub order_no: Option<String>,
    pub message: String,
}

/// One page of a paged answer (Shuidi, Qichacha), kept in `qz_query_page` until the subject's
/// last page is read and its result stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRow {
    pub page: u32,
    pub job: String,
    /// The keyword / searchKey sent; pages asked with another one do not belong together.
    pub search_key: String,
    pub page_size: u32,
    pub total: Option<u64>,
    /// Calls spent on this page, retries included.
    pub calls: i64,
    pub status_code: String,
    pub order_no: Option<String>,
    /// The page's records as received, a JSON array.
    pub items_json: String,
    pub fetched_at: String,
}

/// The outcome stored for a subject, with its rows.
#[derive(Debug, Clone)]
pub struct SubjectResult<'a> {
    pub provider: &'a str,
    pub job: &'a str,
    pub subject_key: &'a str,
    pub subject_name: Option<&'a str>,
    /// found, no_result or rejected.
    pub status: &'a str,
    pub status_code: &'a str,
    pub message: &'a str,
    pub order_no: Option<&'a str>,
    pub calls: i64,
    /// Every table of the provider, even empty, so earlier rows are always replaced.
    pub tables: &'a [TableRows],
    pub tables_of_provider: &'a [&'a str],
    /// The call whose answer this is, completed in the same transaction: a crash cannot
    /// leave a paid answer recorded in the ledger but not stored.
    pub completes: Option<(Reserved, &'a CallRecord)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProviderState {
    pub state: String,
    pub paused_until: Option<String>,
    pub status_code: Option<String>,
    pub reason: Option<String>,
    pub updated_at: Option<String>,
}

/// Deadlocks and serialisation failures (MySQL gap locks, PostgreSQL 40P01) roll the whole
/// transaction back; running it again is safe.
async fn retry_on_conflict<T, F, Fut>(mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 0;
    loop {
        match f().await {
            Err(e) if attempt < 5 && is_conflict(&e) => {
                attempt += 1;
                let ms = 20 * attempt + rand::random::<u64>() % 30;
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            }
            other => return other,
        }
    }
}

fn is_conflict(e: &anyhow::Error) -> bool {
    e.chain().any(|c| match c.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::Database(d)) => {
            matches!(
                d.code().as_deref(),
                Some("40001" | "40P01" | "1213" | "5" | "6")
            )
        }
        _ => false,
    })
}

impl Db {
    /// The given columns of a table or view as text (cast in SQL, since the `Any` driver
    /// cannot decode dates or decimals).
    pub async fn read_text_columns(
        &self,
        table: &str,
        columns: &[&str],
    ) -> Result<Vec<Vec<Option<String>>>> {
        let ty = if self.backend == Backend::Mysql {
            "CHAR"
        } else {
            "TEXT"
        };
        let cols: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("CAST({} AS {ty}) AS c{i}", ident(self.backend, c)))
            .collect();
        let sql = format!(
            "SELECT {} FROM {}",
            cols.join(", "),
            ident(self.backend, table)
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.any)
            .await
            .with_context(|| {
                format!("subjects view {table} cannot be read (do it and its columns {columns:?} exist?)")
            })?;
        rows.iter()
            .map(|r| {
                (0..columns.len())
                    .map(|i| Ok(r.try_get::<Option<String>, _>(i)?))
                    .collect()
            })
            .collect()
    }

    /// Subjects of a provider fetched at or after `since` (Beijing text).
    pub async fn fresh_subjects(
        &self,
        provider: &str,
        since: &str,
    ) -> Result<std::collections::HashSet<String>> {
        let keys: Vec<String> = sqlx::query_scalar(self.sql(
            "SELECT subject_key FROM qz_query_subject WHERE provider = ? AND fetched_at >= ?",
        ))
        .bind(provider)
        .bind(since)
        .fetch_all(&self.any)
        .await?;
        Ok(keys.into_iter().collect())
    }

    /// Takes one call from the provider's budget for `day` and writes its ledger row, or
    /// returns None when the budget is spent. The conditional UPDATE locks the budget row,
    /// so concurrent jobs and restarts cannot overspend.
    pub async fn reserve_call(
        &self,
        provider: &str,
        job: &str,
        subject_key: &str,
        page: u32,
        day: &str,
        budget: u32,
    ) -> Result<Option<Reserved>> {
        // Created outside the transaction: on MySQL, INSERT IGNORE of an existing row takes a
        // shared lock that would deadlock two reservations upgrading it to exclusive.
        let ins = match self.backend {
            Backend::Mysql => {
                "INSERT IGNORE INTO qz_query_budget (provider, call_day, calls) VALUES (?, ?, 0)"
            }
            _ => {
                "INSERT INTO qz_query_budget (provider, call_day, calls) VALUES (?, ?, 0) ON CONFLICT DO NOTHING"
            }
        };
        sqlx::query(self.sql(ins))
            .bind(provider)
            .bind(day)
            .execute(&self.any)
            .await?;
        retry_on_conflict(|| async {
            let mut tx = self.begin_write().await?;
            let took = sqlx::query(self.sql(
                "UPDATE qz_query_budget SET calls = calls + 1 WHERE provider = ? AND call_day = ? AND calls < ?",
            ))
            .bind(provider)
            .bind(day)
            .bind(i64::from(budget))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if took != 1 {
                tx.rollback().await?;
                return Ok(None);
            }
            let ledger_id = self
                .insert_ledger(&mut tx, provider, job, subject_key, page, day)
                .await?;
            tx.commit().await?;
            Ok(Some(Reserved { ledger_id }))
        })
        .await
    }

    async fn insert_ledger(
        &self,
        tx: &mut Transaction<'_, Any>,
        provider: &str,
        job: &str,
        subject_key: &str,
        page: u32,
        day: &str,
    ) -> Result<i64> {
        let q = "INSERT INTO qz_query_ledger (provider, job, subject_key, page, call_day, called_at, billed) VALUES (?, ?, ?, ?, ?, ?, 0)";
        let now = now_text();
        // SQLite's Any driver reports no last insert id; RETURNING needs SQLite 3.35 (bundled).
        if self.backend != Backend::Mysql {
            let id: i64 = sqlx::query_scalar(self.sql(&format!("{q} RETURNING id")))
                .bind(provider)
                .bind(job)
                .bind(subject_key)
                .bind(i64::from(page))
                .bind(day)
                .bind(&now)
                .fetch_one(&mut **tx)
                .await?;
            return Ok(id);
        }
        let r = sqlx::query(self.sql(q))
            .bind(provider)
            .bind(job)
            .bind(subject_key)
            .bind(i64::from(page))
            .bind(day)
            .bind(&now)
            .execute(&mut **tx)
            .await?;
        r.last_insert_id()
            .context("the database did not report the ledger row's id")
    }

    pub async fn complete_call(&self, r: Reserved, c: &CallRecord) -> Result<()> {
        let mut tx = self.any.begin().await?;
        self.complete_call_in(&mut tx, r, c).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn complete_call_in(
        &self,
        tx: &mut Transaction<'_, Any>,
        r: Reserved,
        c: &CallRecord,
    ) -> Result<()> {
        sqlx::query(self.sql(
            "UPDATE qz_query_ledger SET status_code = ?, action = ?, billed = ?, order_no = ?, message = ? WHERE id = ?",
        ))
        .bind(c.status_code.clone())
        .bind(c.action)
        .bind(i64::from(c.billed))
        .bind(c.order_no.clone())
        .bind(c.message.clone())
        .bind(r.ledger_id)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Completes a call that brought a page and keeps the page, in one transaction: what was
    /// paid for is on disk before anything else happens.
    pub async fn complete_call_with_page(
        &self,
        r: Reserved,
        c: &CallRecord,
        provider: &str,
        subject_key: &str,
        p: &PageRow,
    ) -> Result<()> {
        let upsert = match self.backend {
            Backend::Mysql => {
                "INSERT INTO qz_query_page (provider, subject_key, page, job, search_key, page_size, total, calls, status_code, order_no, items_json, fetched_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE job = VALUES(job), search_key = VALUES(search_key), \
                 page_size = VALUES(page_size), total = VALUES(total), calls = VALUES(calls), status_code = VALUES(status_code), \
                 order_no = VALUES(order_no), items_json = VALUES(items_json), fetched_at = VALUES(fetched_at)"
            }
            _ => {
                "INSERT INTO qz_query_page (provider, subject_key, page, job, search_key, page_size, total, calls, status_code, order_no, items_json, fetched_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (provider, subject_key, page) DO UPDATE SET job = excluded.job, \
                 search_key = excluded.search_key, page_size = excluded.page_size, total = excluded.total, calls = excluded.calls, \
                 status_code = excluded.status_code, order_no = excluded.order_no, items_json = excluded.items_json, fetched_at = excluded.fetched_at"
            }
        };
        retry_on_conflict(|| async {
            let mut tx = self.any.begin().await?;
            self.complete_call_in(&mut tx, r, c).await?;
            sqlx::query(self.sql(upsert))
                .bind(provider)
                .bind(subject_key)
                .bind(i64::from(p.page))
                .bind(p.job.clone())
                .bind(p.search_key.clone())
                .bind(i64::from(p.page_size))
                .bind(p.total.map(|t| t as i64))
                .bind(p.calls)
                .bind(p.status_code.clone())
                .bind(p.order_no.clone())
                .bind(p.items_json.clone())
                .bind(p.fetched_at.clone())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
        .context("keeping a page of the answer failed")
    }

    /// The pages kept for a subject, in page order.
    pub async fn stored_pages(&self, provider: &str, subject_key: &str) -> Result<Vec<PageRow>> {
        let rows = sqlx::query(self.sql(
            "SELECT page, job, search_key, page_size, total, calls, status_code, order_no, items_json, fetched_at \
             FROM qz_query_page WHERE provider = ? AND subject_key = ? ORDER BY page",
        ))
        .bind(provider)
        .bind(subject_key)
        .fetch_all(&self.any)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PageRow {
                    page: u32::try_from(r.try_get::<i64, _>(0)?).unwrap_or(0),
                    job: r.try_get(1)?,
                    search_key: r.try_get(2)?,
                    page_size: u32::try_from(r.try_get::<i64, _>(3)?).unwrap_or(0),
                    total: r
                        .try_get::<Option<i64>, _>(4)?
                        .and_then(|t| u64::try_from(t).ok()),
                    calls: r.try_get(5)?,
                    status_code: r.try_get(6)?,
                    order_no: r.try_get(7)?,
                    items_json: r.try_get(8)?,
                    fetched_at: r.try_get(9)?,
                })
            })
            .collect()
    }

    /// Subjects of a provider with pages kept: left part-way by an earlier run.
    pub async fn subjects_with_pages(
        &self,
        provider: &str,
    ) -> Result<std::collections::HashSet<String>> {
        let keys: Vec<String> = sqlx::query_scalar(
            self.sql("SELECT DISTINCT subject_key FROM qz_query_page WHERE provider = ?"),
        )
        .bind(provider)
        .fetch_all(&self.any)
        .await?;
        Ok(keys.into_iter().collect())
    }

    /// Forgets a subject's kept pages (they answer another question, or are stale).
    pub async fn drop_pages(&self, provider: &str, subject_key: &str) -> Result<()> {
        sqlx::query(self.sql("DELETE FROM qz_query_page WHERE provider = ? AND subject_key = ?"))
            .bind(provider)
            .bind(subject_key)
            .execute(&self.any)
            .await?;
        Ok(())
    }

    /// Replaces the subject's rows of every table of the provider and its freshness row, in
    /// one transaction: a reader sees the old result or the new one, never a mix.
    pub async fn store_subject_result(&self, r: &SubjectResult<'_>) -> Result<()> {
        retry_on_conflict(|| self.store_subject_once(r))
            .await
            .context("storing the query result failed; the subject stays due")
    }

    async fn store_subject_once(&self, r: &SubjectResult<'_>) -> Result<()> {
        let now = now_text();
        let mut tx = self.begin_write().await?;
        // The subject's row first: its lock serialises writers of the same subject.
        self.upsert_subject(&mut tx, r, &now).await?;
        if let Some((reserved, call)) = r.completes {
            self.complete_call_in(&mut tx, reserved, call).await?;
        }
        // The pages the result was assembled from go with it.
        sqlx::query(self.sql("DELETE FROM qz_query_page WHERE provider = ? AND subject_key = ?"))
            .bind(r.provider)
            .bind(r.subject_key)
            .execute(&mut *tx)
            .await?;
        for table in r.tables_of_provider {
            sqlx::query(self.sql(&format!("DELETE FROM {table} WHERE subject_key = ?")))
                .bind(r.subject_key)
                .execute(&mut *tx)
                .await?;
        }
        for t in r.tables {
            let cols = format!(
                "subject_key, subject_name, fetched_at, seq, {}, raw_json",
                t.columns.join(", ")
            );
            let marks = vec!["?"; t.columns.len() + 5].join(", ");
            let q = format!("INSERT INTO {} ({cols}) VALUES ({marks})", t.table);
            for (i, row) in t.rows.iter().enumerate() {
                let mut query = sqlx::query(self.sql(&q))
                    .bind(r.subject_key)
                    .bind(r.subject_name.map(str::to_string))
                    .bind(&now)
                    .bind(i as i64 + 1);
                for (c, v) in t.columns.iter().zip(&row.values) {
                    query = if INT_COLUMNS.contains(c) {
                        query.bind(v.as_deref().and_then(|s| s.parse::<i64>().ok()))
                    } else {
                        query.bind(v.clone())
                    };
                }
                query
                    .bind(&row.raw)
                    .execute(&mut *tx)
                    .await
                    .with_context(|| format!("storing a row of {}", t.table))?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn upsert_subject(
        &self,
        tx: &mut Transaction<'_, Any>,
        r: &SubjectResult<'_>,
        now: &str,
    ) -> Result<()> {
        let count: i64 = r.tables.first().map(|t| t.rows.len() as i64).unwrap_or(0);
        let q = match self.backend {
            Backend::Mysql => {
                "INSERT INTO qz_query_subject (provider, subject_key, subject_name, job, last_status, status_code, message, record_count, calls, order_no, fetched_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE subject_name = VALUES(subject_name), job = VALUES(job), \
                 last_status = VALUES(last_status), status_code = VALUES(status_code), message = VALUES(message), record_count = VALUES(record_count), \
                 calls = VALUES(calls), order_no = VALUES(order_no), fetched_at = VALUES(fetched_at)"
            }
            _ => {
                "INSERT INTO qz_query_subject (provider, subject_key, subject_name, job, last_status, status_code, message, record_count, calls, order_no, fetched_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (provider, subject_key) DO UPDATE SET subject_name = excluded.subject_name, job = excluded.job, \
                 last_status = excluded.last_status, status_code = excluded.status_code, message = excluded.message, record_count = excluded.record_count, \
                 calls = excluded.calls, order_no = excluded.order_no, fetched_at = excluded.fetched_at"
            }
        };
        sqlx::query(self.sql(q))
            .bind(r.provider)
            .bind(r.subject_key)
            .bind(r.subject_name.map(str::to_string))
            .bind(r.job)
            .bind(r.status)
            .bind(r.status_code)
            .bind(r.message)
            .bind(count)
            .bind(r.calls)
            .bind(r.order_no.map(str::to_string))
            .bind(now)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    pub async fn provider_state(&self, provider: &str) -> Result<Option<ProviderState>> {
        let row = sqlx::query(self.sql(
            "SELECT state, paused_until, status_code, reason, updated_at FROM qz_query_provider WHERE provider = ?",
        ))
        .bind(provider)
        .fetch_optional(&self.any)
        .await?;
        row.map(|r| {
            Ok(ProviderState {
                state: r.try_get(0)?,
                paused_until: r.try_get(1)?,
                status_code: r.try_get(2)?,
                reason: r.try_get(3)?,
                updated_at: r.try_get(4)?,
            })
        })
        .transpose()
    }

    /// `reason` is already free of secrets.
    pub async fn set_provider_state(
        &self,
        provider: &str,
        state: &str,
        paused_until: Option<&str>,
        status_code: Option<&str>,
        reason: Option<&str>,
    ) -> Result<()> {
        let q = match self.backend {
            Backend::Mysql => {
                "INSERT INTO qz_query_provider (provider, state, paused_until, status_code, reason, updated_at) VALUES (?, ?, ?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE state = VALUES(state), paused_until = VALUES(paused_until), status_code = VALUES(status_code), \
                 reason = VALUES(reason), updated_at = VALUES(updated_at)"
            }
            _ => {
                "INSERT INTO qz_query_provider (provider, state, paused_until, status_code, reason, updated_at) VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (provider) DO UPDATE SET state = excluded.state, paused_until = excluded.paused_until, \
                 status_code = excluded.status_code, reason = excluded.reason, updated_at = excluded.updated_at"
            }
        };
        sqlx::query(self.sql(q))
            .bind(provider)
            .bind(state)
            .bind(paused_until.map(str::to_string))
            .bind(status_code.map(str::to_string))
            .bind(reason.map(str::to_string))
            .bind(now_text())
            .execute(&self.any)
            .await?;
        Ok(())
    }

    /// (calls sent, of which billed) on a Beijing day, counted from the ledger.
    pub async fn ledger_day(&self, provider: &str, day: &str) -> Result<(i64, i64)> {
        let rows = sqlx::query(self.sql(
            "SELECT billed, COUNT(*) FROM qz_query_ledger WHERE provider = ? AND call_day = ? GROUP BY billed",
        ))
        .bind(provider)
        .bind(day)
        .fetch_all(&self.any)
        .await?;
        let (mut calls, mut billed) = (0, 0);
        for r in rows {
            let b: i64 = r.try_get(0)?;
            let n: i64 = r.try_get(1)?;
            calls += n;
            if b != 0 {
                billed += n;
            }
        }
        Ok((calls, billed))
    }
}
