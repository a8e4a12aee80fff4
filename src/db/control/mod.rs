//! Control-table operations: cursors, Cd_Batch sequence, batches, outbox, errors, reconciliation.

use anyhow::{Context, Result, bail};
use chrono::{DateTime, FixedOffset};
use sea_query::{
    Asterisk, Expr, ExprTrait, InsertStatement, JoinType, OnConflict, Order, Query,
    SelectStatement, UpdateStatement, Value,
};
use sqlx::{Any, Row, Transaction};

use super::lease::Fence;
use super::retry::retrying;
use super::row_state::StateChanges;
use super::writes::Writes;
use super::{Db, Sql, lit, slots};
use crate::batch::{batch_day, format_cd_batch};
use crate::timefmt::{fmt_spec, now_text};

/// One record's identity inside an outbox call, in body order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordMeta {
    pub source_key: String,
    pub row_guid: String,
    pub operation: String,
}

/// A call body as written once: the outbox insert, every send and every resend share these
/// bytes instead of copying them (each copy of every body showed up in profiles).
pub type Body = std::sync::Arc<String>;

/// One platform call of a batch: the exact body and who is in it. Resends replay `body`;
/// after a split, `done` says which records (by index) were acked (`a`) or refused (`r`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxCall {
    pub call_no: i64,
    pub body: Body,
    pub records: Vec<RecordMeta>,
    pub done: std::collections::BTreeMap<usize, char>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorRow {
    pub source_key: String,
    pub row_guid: Option<String>,
    pub operation: Option<String>,
    pub field: String,
    pub rule: String,
    pub message: String,
    /// A later version of the same row in the same exchange is valid and goes out with it:
    /// the error row is stored already resolved by that batch.
    pub superseded: bool,
}

/// The batch a new exchange opens, numbered inside the commit.
pub struct NewBatch<'a> {
    pub upstream: &'a str,
    pub data_type: &'a str,
    pub table_name: &'a str,
    pub unit_code: &'a str,
    pub at: DateTime<FixedOffset>,
}

#[derive(Debug, Clone)]
pub struct BatchRow {
    pub cd_batch: String,
    /// The job's exchange that produced the batch (None for batches from before migration 6):
    /// it resolves only error rows of earlier exchanges.
    pub exchange_no: Option<i64>,
    pub data_type: String,
    pub table_name: String,
    pub record_count: i64,
    pub cd_time: String,
    pub created_at: String,
}

#[derive(Debug, Clone)]
pub struct ReconRow {
    pub cd_batch: String,
    pub table_name: String,
    pub cd_count: i64,
    pub cd_time: String,
}

/// What one commit stored.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    pub cd_batch: Option<String>,
    pub exchange_no: i64,
    pub records: usize,
    pub errors: usize,
    /// The calls as stored, handed straight to delivery instead of being read back.
    pub calls: Vec<OutboxCall>,
}

mod settle;
mod sql;
mod status;
#[cfg(test)]
mod tests;

use sql::*;
pub use status::JobStatus;

impl Db {
    pub async fn load_position(&self, job: &str) -> Result<Option<String>> {
        let pos: Option<Option<String>> = self
            .stmt_scalar(&cursor_column("position", job))
            .fetch_optional(&self.any)
            .await?;
        Ok(pos.flatten())
    }

    /// Stores the job's position outside an exchange, under its lease: what a run in seq
    /// order observed of its source (`pipeline/seq.rs`), before it reads a page.
    pub async fn store_position(&self, fence: &Fence, position: &str) -> Result<()> {
        let q = position_upsert(&fence.job, position, &now_text());
        retrying("store_position", || self.exec_fenced(fence, &q)).await
    }

    /// The number of the exchange being committed: one more than the job's last.
    async fn next_exchange_no(&self, tx: &mut Transaction<'_, Any>, job: &str) -> Result<i64> {
        let last: Option<i64> = self
            .stmt_scalar(&cursor_column("exchange_no", job))
            .fetch_optional(&mut **tx)
            .await?;
        Ok(last.unwrap_or(0) + 1)
    }

    /// Next Cd_Batch for the unit and Beijing day; the row lock on qz_batch_seq serialises
    /// concurrent jobs. A transaction rolled back into a retry undoes its increment: the
    /// number it held was never stored nor sent, so the retry numbering the batch again
    /// (with that number, or a later one if another job took it meanwhile) reuses nothing
    /// that went out, and `build` serialises the records under the new number.
    async fn allocate_cd_batch(
        &self,
        tx: &mut Transaction<'_, Any>,
        unit: &str,
        at: &DateTime<FixedOffset>,
    ) -> Result<String> {
        let day = batch_day(at);
        let day_text = day.format("%Y%m%d").to_string();
        self.stmt(&seq_step(unit, &day_text))
            .execute(&mut **tx)
            .await?;
        // The row is locked by the step above: no other job can move it before this read.
        let seq: i64 = self
            .stmt_scalar(&seq_last(unit, &day_text))
            .fetch_one(&mut **tx)
            .await?;
        match format_cd_batch(unit, day, seq) {
            Some(b) => Ok(b),
            None => bail!(
                "the daily Cd_Batch sequence for {day_text} is exhausted (99999 batches); raise batch_size"
            ),
        }
    }

    /// The transactional outbox: the batch, its records, the error rows, the row states they
    /// change (`qz_row_state`) and the new source position are stored together or not at all,
    /// under the job's lease (`fence`). `build`
    /// receives the allocated Cd_Batch and returns the serialised records; a transaction
    /// rolled back by a deadlock or a serialization failure runs again and calls it again,
    /// under the number allocated then.
    pub async fn commit_exchange(
        &self,
        fence: &Fence,
        batch: Option<NewBatch<'_>>,
        build: impl Fn(Option<&str>) -> Result<Vec<OutboxCall>>,
        errors: &[ErrorRow],
        state: &StateChanges,
        position: &str,
    ) -> Result<Committed> {
        retrying("commit_exchange", || {
            self.commit_exchange_once(fence, batch.as_ref(), &build, errors, state, position)
        })
        .await
    }

    /// One attempt. The locks it takes, in this order in every exchange of every job: the
    /// job's own qz_lease row (the fencing check; no other job takes it), the day's
    /// qz_batch_seq row (the first shared lock, and only when a batch opens), the new qz_batch
    /// and qz_outbox rows, the new qz_error rows, the job's own qz_row_state rows, the job's
    /// own qz_cursor row. Delivery's
    /// transactions never take the sequence row, so no cycle runs through it.
    async fn commit_exchange_once(
        &self,
        fence: &Fence,
        batch: Option<&NewBatch<'_>>,
        build: &impl Fn(Option<&str>) -> Result<Vec<OutboxCall>>,
        errors: &[ErrorRow],
        state: &StateChanges,
        position: &str,
    ) -> Result<Committed> {
        let job = fence.job.as_str();
        let mut tx = self.begin_fenced(fence).await?;
        let now = now_text();
        let exchange_no = self.next_exchange_no(&mut tx, job).await?;
        let mut cd_batch = None;
        if let Some(b) = batch {
            let id = self.allocate_cd_batch(&mut tx, b.unit_code, &b.at).await?;
            cd_batch = Some(id);
        }
        let t_build = std::time::Instant::now();
        let rows = build(cd_batch.as_deref())?;
        let t_insert = std::time::Instant::now();
        // Nothing below is read back: the writes go together (one hop through ODBC).
        let mut w = Writes::new(self.backend);
        if let (Some(id), Some(b)) = (&cd_batch, batch) {
            let count = rows.iter().map(|c| c.records.len() as i64).sum::<i64>();
            let at = fmt_spec(&b.at);
            w.push(&batch_insert(id, job, b, count, &at, &now, exchange_no));
            let insert = Sql::new(self.backend, &outbox_insert());
            for call in &rows {
                w.push_args(&insert, outbox_args(id, call)?);
            }
        }
        let at = (cd_batch.as_deref(), Some(exchange_no));
        self.insert_errors(&mut w, job, errors, at, &now);
        self.write_row_state(&mut w, job, state, &now);
        w.push(&cursor_upsert(job, position, &now_text(), exchange_no));
        w.run(&mut tx).await?;
        let t_commit = std::time::Instant::now();
        tracing::debug!(
            build_ms = (t_insert - t_build).as_millis() as u64,
            insert_ms = (t_commit - t_insert).as_millis() as u64,
            "outbox rows written"
        );
        self.commit_write(tx, "commit_exchange").await.context(
            "commit of the exchange failed; nothing was stored, the rows will be read again",
        )?;
        Ok(Committed {
            cd_batch,
            exchange_no,
            records: rows.iter().map(|c| c.records.len()).sum(),
            errors: errors.len(),
            calls: rows,
        })
    }

    /// Error rows found in one exchange (`at`: its batch, if any, and its number). Every
    /// qz_error row is written here, so this is where messages are masked: a rule that quotes
    /// the offending value (code set, date, USCC, ...) would otherwise store an ID or mobile
    /// number put in the wrong column as it is.
    fn insert_errors(
        &self,
        w: &mut Writes,
        job: &str,
        errors: &[ErrorRow],
        at: (Option<&str>, Option<i64>),
        now: &str,
    ) {
        // Every chunk but the last has CHUNK_ROWS rows: at most two texts are rendered.
        let mut insert: Option<(usize, Sql)> = None;
        for chunk in errors.chunks(CHUNK_ROWS) {
            if insert.as_ref().map(|(n, _)| *n) != Some(chunk.len()) {
                let sql = Sql::new(self.backend, &error_insert(chunk.len()));
                insert = Some((chunk.len(), sql));
            }
            let mut values = Vec::with_capacity(chunk.len() * ERROR_COLS.len());
            for e in chunk {
                error_values(&mut values, job, e, at, now);
            }
            if let Some((_, sql)) = &insert {
                w.push_values(sql, values);
            }
        }
    }

    pub async fn pending_batches(&self, job: &str) -> Result<Vec<BatchRow>> {
        let rows = self
            .stmt(&pending_batches_select(job))
            .fetch_all(&self.any)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(BatchRow {
                    cd_batch: r.try_get(0)?,
                    data_type: r.try_get(1)?,
                    table_name: r.try_get::<Option<String>, _>(2)?.unwrap_or_default(),
                    record_count: r.try_get(3)?,
                    cd_time: r.try_get(4)?,
                    created_at: r.try_get(5)?,
                    exchange_no: r.try_get(6)?,
                })
            })
            .collect()
    }

    pub async fn outbox_pending(&self, cd_batch: &str) -> Result<Vec<OutboxCall>> {
        let q = Query::select()
            .columns(["call_no", "body", "records", "done"])
            .from("qz_outbox")
            .and_where(Expr::col("cd_batch").eq(cd_batch))
            .and_where(Expr::col("state").eq(lit("pending")))
            .order_by("call_no", Order::Asc)
            .to_owned();
        let rows = self.stmt(&q).fetch_all(&self.any).await?;
        rows.iter()
            .map(|r| {
                let records: String = r.try_get(2)?;
                let done: Option<String> = r.try_get(3)?;
                Ok(OutboxCall {
                    call_no: r.try_get(0)?,
                    body: Body::new(r.try_get(1)?),
                    records: serde_json::from_str(&records).context("qz_outbox.records")?,
                    done: done
                        .map(|d| serde_json::from_str(&d))
                        .transpose()
                        .context("qz_outbox.done")?
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    pub async fn pending_reconciliations(&self, job: &str) -> Result<Vec<ReconRow>> {
        let q = Query::select()
            .columns(["cd_batch", "table_name", "cd_count", "cd_time"])
            .from("qz_reconciliation")
            .and_where(Expr::col("job").eq(job))
            .and_where(Expr::col("upload_state").eq(lit("pending")))
            .order_by("cd_batch", Order::Asc)
            .to_owned();
        let rows = self.stmt(&q).fetch_all(&self.any).await?;
        rows.iter()
            .map(|r| {
                Ok(ReconRow {
                    cd_batch: r.try_get(0)?,
                    table_name: r.try_get(1)?,
                    cd_count: r.try_get(2)?,
                    cd_time: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// Records how the upload of some reconciliation rows went, in one fenced transaction.
    pub async fn set_reconciliation_upload(
        &self,
        fence: &Fence,
        cd_batches: &[&str],
        state: &str,
        message: &str,
    ) -> Result<()> {
        if cd_batches.is_empty() {
            return Ok(());
        }
        let q = Query::update()
            .table("qz_reconciliation")
            .value("upload_state", state)
            .value("upload_message", message)
            .value("uploaded_at", now_text())
            .and_where(Expr::col("cd_batch").is_in(cd_batches.iter().copied()))
            .to_owned();
        retrying("set_reconciliation_upload", || self.exec_fenced(fence, &q)).await
    }

    pub async fn has_open_errors(&self, job: &str) -> Result<bool> {
        let q = Query::select()
            .column("job")
            .from("qz_error")
            .and_where(Expr::col("job").eq(job))
            .and_where(Expr::col("resolved_at").is_null())
            .limit(1)
            .to_owned();
        let n: Option<String> = self.stmt_scalar(&q).fetch_optional(&self.any).await?;
        Ok(n.is_some())
    }

    /// Records how a run ended, under the run's lease; `error` is already free of secrets.
    pub async fn record_run(&self, fence: &Fence, error: Option<&str>) -> Result<()> {
        let q = run_upsert(&fence.job, &now_text(), error);
        retrying("record_run", || self.exec_fenced(fence, &q)).await
    }

    /// Records that a job's task panicked (`qianzhi run`). Not fenced: the supervisor that
    /// calls it still holds the job's lease, and the row only says how the run ended.
    pub async fn record_crash(&self, job: &str, error: &str) -> Result<()> {
        let q = run_upsert(job, &now_text(), Some(error));
        retrying("record_crash", || async {
            self.stmt(&q).execute(&self.any).await?;
            Ok(())
        })
        .await
    }
}
