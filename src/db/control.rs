//! Control-table operations: cursors, Cd_Batch sequence, batches, outbox, errors, reconciliation.

use anyhow::{Context, Result, bail};
use chrono::{DateTime, FixedOffset};
use sqlx::{Any, Row, Transaction};

use super::{Backend, Db};
use crate::batch::{batch_day, format_cd_batch};
use crate::timefmt::{fmt_spec, now_text};

/// One record's identity inside an outbox call, in body order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordMeta {
    pub source_key: String,
    pub row_guid: String,
    pub operation: String,
}

/// One platform call of a batch: the exact body and who is in it. Resends replay `body`;
/// after a split, `done` says which records (by index) were acked (`a`) or refused (`r`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxCall {
    pub call_no: i64,
    pub body: String,
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

const CHUNK_ROWS: usize = 200;

fn placeholders(cols: usize, rows: usize) -> String {
    let one = format!("({})", vec!["?"; cols].join(", "));
    vec![one; rows].join(", ")
}

impl Db {
    pub async fn load_position(&self, job: &str) -> Result<Option<String>> {
        let pos: Option<Option<String>> =
            sqlx::query_scalar(self.sql("SELECT position FROM qz_cursor WHERE job = ?"))
                .bind(job)
                .fetch_optional(&self.any)
                .await?;
        Ok(pos.flatten())
    }

    /// The number of the exchange being committed: one more than the job's last.
    async fn next_exchange_no(&self, tx: &mut Transaction<'_, Any>, job: &str) -> Result<i64> {
        let last: Option<i64> =
            sqlx::query_scalar(self.sql("SELECT exchange_no FROM qz_cursor WHERE job = ?"))
                .bind(job)
                .fetch_optional(&mut **tx)
                .await?;
        Ok(last.unwrap_or(0) + 1)
    }

    async fn upsert_cursor(
        &self,
        tx: &mut Transaction<'_, Any>,
        job: &str,
        position: &str,
        exchange_no: i64,
    ) -> Result<()> {
        let now = now_text();
        let q = match self.backend {
            Backend::Mysql => {
                "INSERT INTO qz_cursor (job, position, updated_at, exchange_no) VALUES (?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE position = VALUES(position), updated_at = VALUES(updated_at), \
                 exchange_no = VALUES(exchange_no)"
            }
            _ => {
                "INSERT INTO qz_cursor (job, position, updated_at, exchange_no) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (job) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at, \
                 exchange_no = excluded.exchange_no"
            }
        };
        sqlx::query(self.sql(q))
            .bind(job)
            .bind(position)
            .bind(now)
            .bind(exchange_no)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Next Cd_Batch for the unit and Beijing day; the row lock on qz_batch_seq serialises
    /// concurrent jobs, and the number is burnt even if the transaction later rolls back
    /// into a retry (a rolled-back number was never sent, so reuse cannot happen).
    async fn allocate_cd_batch(
        &self,
        tx: &mut Transaction<'_, Any>,
        unit: &str,
        at: &DateTime<FixedOffset>,
    ) -> Result<String> {
        let day = batch_day(at);
        let day_text = day.format("%Y%m%d").to_string();
        let ins = match self.backend {
            Backend::Mysql => {
                "INSERT IGNORE INTO qz_batch_seq (unit_code, batch_date, last_seq) VALUES (?, ?, 0)"
            }
            _ => {
                "INSERT INTO qz_batch_seq (unit_code, batch_date, last_seq) VALUES (?, ?, 0) ON CONFLICT DO NOTHING"
            }
        };
        sqlx::query(self.sql(ins))
            .bind(unit)
            .bind(&day_text)
            .execute(&mut **tx)
            .await?;
        sqlx::query(self.sql("UPDATE qz_batch_seq SET last_seq = last_seq + 1 WHERE unit_code = ? AND batch_date = ?"))
            .bind(unit)
            .bind(&day_text)
            .execute(&mut **tx)
            .await?;
        let seq: i64 = sqlx::query_scalar(
            self.sql("SELECT last_seq FROM qz_batch_seq WHERE unit_code = ? AND batch_date = ?"),
        )
        .bind(unit)
        .bind(&day_text)
        .fetch_one(&mut **tx)
        .await?;
        match format_cd_batch(unit, day, seq) {
            Some(b) => Ok(b),
            None => bail!(
                "the daily Cd_Batch sequence for {day_text} is exhausted (99999 batches); raise batch_size"
            ),
        }
    }

    /// The transactional outbox: the batch, its records, the error rows and the new source
    /// position are stored together or not at all. `build` receives the allocated Cd_Batch
    /// and returns the serialised records.
    pub async fn commit_exchange(
        &self,
        job: &str,
        batch: Option<NewBatch<'_>>,
        build: impl FnOnce(Option<&str>) -> Result<Vec<OutboxCall>>,
        errors: &[ErrorRow],
        position: &str,
    ) -> Result<Committed> {
        let mut tx = self.begin_write().await?;
        let now = now_text();
        let exchange_no = self.next_exchange_no(&mut tx, job).await?;
        let mut cd_batch = None;
        if let Some(b) = &batch {
            let id = self.allocate_cd_batch(&mut tx, b.unit_code, &b.at).await?;
            cd_batch = Some(id);
        }
        let t_build = std::time::Instant::now();
        let rows = build(cd_batch.as_deref())?;
        let t_insert = std::time::Instant::now();
        if let (Some(id), Some(b)) = (&cd_batch, &batch) {
            sqlx::query(self.sql(
                "INSERT INTO qz_batch (cd_batch, job, upstream, data_type, table_name, state, record_count, cd_time, created_at, exchange_no) \
                 VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)",
            ))
            .bind(id)
            .bind(job)
            .bind(b.upstream)
            .bind(b.data_type)
            .bind(b.table_name)
            .bind(rows.iter().map(|c| c.records.len() as i64).sum::<i64>())
            .bind(fmt_spec(&b.at))
            .bind(&now)
            .bind(exchange_no)
            .execute(&mut *tx)
            .await?;
            for call in &rows {
                sqlx::query(self.sql(
                    "INSERT INTO qz_outbox (cd_batch, call_no, record_count, body, records, state) VALUES (?, ?, ?, ?, ?, 'pending')",
                ))
                .bind(id)
                .bind(call.call_no)
                .bind(call.records.len() as i64)
                .bind(&call.body)
                .bind(serde_json::to_string(&call.records)?)
                .execute(&mut *tx)
                .await?;
            }
        }
        let at = (cd_batch.as_deref(), Some(exchange_no));
        self.insert_errors(&mut tx, job, errors, at, &now).await?;
        self.upsert_cursor(&mut tx, job, position, exchange_no)
            .await?;
        let t_commit = std::time::Instant::now();
        tracing::debug!(
            build_ms = (t_insert - t_build).as_millis() as u64,
            insert_ms = (t_commit - t_insert).as_millis() as u64,
            "outbox rows written"
        );
        tx.commit().await.context(
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
    async fn insert_errors(
        &self,
        tx: &mut Transaction<'_, Any>,
        job: &str,
        errors: &[ErrorRow],
        (cd_batch, exchange_no): (Option<&str>, Option<i64>),
        now: &str,
    ) -> Result<()> {
        for chunk in errors.chunks(CHUNK_ROWS) {
            let q = format!(
                "INSERT INTO qz_error (job, source_key, row_guid, operation, field, rule, message, cd_batch, created_at, resolved_at, resolved_by, exchange_no) VALUES {}",
                placeholders(12, chunk.len())
            );
            let q = self.sql(&q);
            let mut query = sqlx::query(q);
            for e in chunk {
                query = query
                    .bind(job)
                    .bind(&e.source_key)
                    .bind(e.row_guid.clone())
                    .bind(e.operation.clone())
                    .bind(&e.field)
                    .bind(&e.rule)
                    .bind(crate::mask::mask_pii(&e.message))
                    .bind(cd_batch.map(str::to_string))
                    .bind(now)
                    .bind(e.superseded.then(|| now.to_string()))
                    .bind(if e.superseded {
                        cd_batch.map(str::to_string)
                    } else {
                        None
                    })
                    .bind(exchange_no);
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    pub async fn pending_batches(&self, job: &str) -> Result<Vec<BatchRow>> {
        let rows = sqlx::query(self.sql(
            "SELECT cd_batch, data_type, table_name, record_count, cd_time, created_at, exchange_no FROM qz_batch \
             WHERE job = ? AND state = 'pending' ORDER BY created_at, cd_batch",
        ))
        .bind(job)
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
        let rows = sqlx::query(self.sql(
            "SELECT call_no, body, records, done FROM qz_outbox WHERE cd_batch = ? AND state = 'pending' ORDER BY call_no",
        ))
        .bind(cd_batch)
        .fetch_all(&self.any)
        .await?;
        rows.iter()
            .map(|r| {
                let records: String = r.try_get(2)?;
                let done: Option<String> = r.try_get(3)?;
                Ok(OutboxCall {
                    call_no: r.try_get(0)?,
                    body: r.try_get(1)?,
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

    /// Resolves the open error rows of these source rows that come from exchanges before the
    /// batch's own: a later, still invalid version keeps its error row open. Earlier rows of
    /// the batch's own exchange were marked superseded when it was committed.
    async fn resolve_errors(
        &self,
        tx: &mut Transaction<'_, Any>,
        job: &str,
        b: &BatchRow,
        keys: &[&str],
    ) -> Result<()> {
        // A batch from before migration 6 is older than every numbered exchange.
        let before = b.exchange_no.unwrap_or(0);
        // Bounded IN lists keep every backend under its bind-parameter limit.
        for chunk in keys.chunks(CHUNK_ROWS) {
            let q = format!(
                "UPDATE qz_error SET resolved_at = ?, resolved_by = ? WHERE job = ? AND resolved_at IS NULL \
                 AND (cd_batch IS NULL OR cd_batch <> ?) AND (exchange_no IS NULL OR exchange_no < ?) \
                 AND source_key IN ({})",
                vec!["?"; chunk.len()].join(", ")
            );
            let mut query = sqlx::query(self.sql(&q))
                .bind(now_text())
                .bind(&b.cd_batch)
                .bind(job)
                .bind(&b.cd_batch)
                .bind(before);
            for k in chunk {
                query = query.bind(*k);
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Marks whole calls delivered and, where the job has open error rows, resolves those of
    /// the same source rows found in earlier exchanges.
    pub async fn ack_calls(
        &self,
        job: &str,
        b: &BatchRow,
        calls: &[&OutboxCall],
        resolve_errors: bool,
    ) -> Result<()> {
        if calls.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        self.ack_in(&mut tx, job, b, calls, resolve_errors).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn ack_in(
        &self,
        tx: &mut Transaction<'_, Any>,
        job: &str,
        b: &BatchRow,
        calls: &[&OutboxCall],
        resolve_errors: bool,
    ) -> Result<()> {
        if calls.is_empty() {
            return Ok(());
        }
        let q = format!(
            "UPDATE qz_outbox SET state = 'acked' WHERE cd_batch = ? AND call_no IN ({})",
            vec!["?"; calls.len()].join(", ")
        );
        let mut query = sqlx::query(self.sql(&q)).bind(&b.cd_batch);
        for c in calls {
            query = query.bind(c.call_no);
        }
        query.execute(&mut **tx).await?;
        if resolve_errors {
            let keys: Vec<&str> = calls
                .iter()
                .flat_map(|c| {
                    c.records
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| c.done.get(i) != Some(&'r'))
                        .map(|(_, m)| m.source_key.as_str())
                })
                .collect();
            self.resolve_errors(tx, job, b, &keys).await?;
        }
        Ok(())
    }

    /// Progress inside a split call: which records were acked or refused so far. Refused
    /// records become error rows carrying the platform's answer, in the same transaction.
    pub async fn record_split_progress(
        &self,
        job: &str,
        b: &BatchRow,
        call: &OutboxCall,
        newly: &[usize],
        refused_message: Option<&str>,
        resolve_errors: bool,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(self.sql("UPDATE qz_outbox SET done = ? WHERE cd_batch = ? AND call_no = ?"))
            .bind(serde_json::to_string(&call.done)?)
            .bind(&b.cd_batch)
            .bind(call.call_no)
            .execute(&mut *tx)
            .await?;
        match refused_message {
            Some(msg) => {
                let errors: Vec<ErrorRow> = newly
                    .iter()
                    .map(|i| {
                        let m = &call.records[*i];
                        ErrorRow {
                            source_key: m.source_key.clone(),
                            row_guid: Some(m.row_guid.clone()),
                            operation: Some(m.operation.clone()),
                            field: "*".into(),
                            rule: "platform_rejected".into(),
                            message: msg.to_string(),
                            superseded: false,
                        }
                    })
                    .collect();
                let at = (Some(b.cd_batch.as_str()), b.exchange_no);
                self.insert_errors(&mut tx, job, &errors, at, &now_text())
                    .await?;
            }
            None if resolve_errors => {
                let keys: Vec<&str> = newly
                    .iter()
                    .map(|i| call.records[*i].source_key.as_str())
                    .collect();
                self.resolve_errors(&mut tx, job, b, &keys).await?;
            }
            None => {}
        }
        tx.commit().await?;
        Ok(())
    }

    /// The platform's receipt for one accepted call (or part of a split call). Written on its
    /// own: the platform issued the number whether or not the ack below is recorded.
    pub async fn record_receipt(
        &self,
        cd_batch: &str,
        call_no: i64,
        records: usize,
        platform_batch_num: &str,
        platform_id: &str,
    ) -> Result<()> {
        sqlx::query(self.sql(
            "INSERT INTO qz_platform_receipt (cd_batch, call_no, record_count, platform_batch_num, platform_id, received_at) VALUES (?, ?, ?, ?, ?, ?)",
        ))
        .bind(cd_batch)
        .bind(call_no)
        .bind(records as i64)
        .bind(platform_batch_num)
        .bind(platform_id)
        .bind(now_text())
        .execute(&self.any)
        .await?;
        Ok(())
    }

    /// Closes a batch whose calls are all done: counts, the reconciliation row, and the
    /// outbox bodies are no longer needed.
    /// Closes a batch whose calls are all answered; `last_acks` are calls accepted since the
    /// last ack, recorded in the same transaction.
    pub async fn finish_batch(
        &self,
        job: &str,
        b: &BatchRow,
        last_acks: &[&OutboxCall],
        resolve_errors: bool,
        upload_state: &str,
    ) -> Result<ReconRow> {
        let mut tx = self.begin_write().await?;
        self.ack_in(&mut tx, job, b, last_acks, resolve_errors)
            .await?;
        let calls = sqlx::query(
            self.sql("SELECT record_count, done, state FROM qz_outbox WHERE cd_batch = ?"),
        )
        .bind(&b.cd_batch)
        .fetch_all(&mut *tx)
        .await?;
        let (mut total, mut rejected, mut pending) = (0i64, 0i64, 0i64);
        for r in &calls {
            let n: i64 = r.try_get(0)?;
            total += n;
            if let Some(done) = r.try_get::<Option<String>, _>(1)? {
                let done: std::collections::BTreeMap<usize, char> = serde_json::from_str(&done)?;
                rejected += done.values().filter(|c| **c == 'r').count() as i64;
            }
            if r.try_get::<String, _>(2)? == "pending" {
                pending += 1;
            }
        }
        if pending > 0 {
            bail!("batch {} still has {pending} pending calls", b.cd_batch);
        }
        let acked = total - rejected;
        let now = now_text();
        // The platform's batch numbers (Gansu), in call order; none for Guangdong.
        let receipts = sqlx::query(self.sql(
            "SELECT platform_batch_num, platform_id FROM qz_platform_receipt WHERE cd_batch = ? ORDER BY id",
        ))
        .bind(&b.cd_batch)
        .fetch_all(&mut *tx)
        .await?;
        let mut nums: Vec<String> = Vec::new();
        let mut ids: Vec<String> = Vec::new();
        for r in &receipts {
            nums.push(r.try_get::<Option<String>, _>(0)?.unwrap_or_default());
            ids.push(r.try_get::<Option<String>, _>(1)?.unwrap_or_default());
        }
        let joined = |v: &[String]| (!v.is_empty()).then(|| v.join(","));
        let (platform_batch_num, platform_id) = (joined(&nums), joined(&ids));
        sqlx::query(self.sql(
            "UPDATE qz_batch SET state = 'done', delivered_count = ?, rejected_count = ?, done_at = ?, \
             platform_batch_num = ?, platform_id = ? WHERE cd_batch = ?",
        ))
        .bind(acked)
        .bind(rejected)
        .bind(&now)
        .bind(platform_batch_num.clone())
        .bind(platform_id)
        .bind(&b.cd_batch)
        .execute(&mut *tx)
        .await?;
        let recon = ReconRow {
            cd_batch: b.cd_batch.clone(),
            table_name: b.table_name.clone(),
            cd_count: acked,
            cd_time: b.cd_time.clone(),
        };
        sqlx::query(self.sql(
            "INSERT INTO qz_reconciliation (cd_batch, job, table_name, cd_count, cd_time, created_at, upload_state, platform_batch_num) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(&recon.cd_batch)
        .bind(job)
        .bind(&recon.table_name)
        .bind(recon.cd_count)
        .bind(&recon.cd_time)
        .bind(&now)
        .bind(upload_state)
        .bind(platform_batch_num)
        .execute(&mut *tx)
        .await?;
        sqlx::query(self.sql("DELETE FROM qz_outbox WHERE cd_batch = ?"))
            .bind(&b.cd_batch)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(recon)
    }

    pub async fn pending_reconciliations(&self, job: &str) -> Result<Vec<ReconRow>> {
        let rows = sqlx::query(self.sql(
            "SELECT cd_batch, table_name, cd_count, cd_time FROM qz_reconciliation \
             WHERE job = ? AND upload_state = 'pending' ORDER BY cd_batch",
        ))
        .bind(job)
        .fetch_all(&self.any)
        .await?;
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

    pub async fn set_reconciliation_upload(
        &self,
        cd_batch: &str,
        state: &str,
        message: &str,
    ) -> Result<()> {
        sqlx::query(self.sql("UPDATE qz_reconciliation SET upload_state = ?, upload_message = ?, uploaded_at = ? WHERE cd_batch = ?"))
            .bind(state)
            .bind(message)
            .bind(now_text())
            .bind(cd_batch)
            .execute(&self.any)
            .await?;
        Ok(())
    }

    pub async fn has_open_errors(&self, job: &str) -> Result<bool> {
        let n: Option<String> = sqlx::query_scalar(
            self.sql("SELECT job FROM qz_error WHERE job = ? AND resolved_at IS NULL LIMIT 1"),
        )
        .bind(job)
        .fetch_optional(&self.any)
        .await?;
        Ok(n.is_some())
    }

    /// Records how a run ended; `error` is already free of secrets.
    pub async fn record_run(&self, job: &str, error: Option<&str>) -> Result<()> {
        let now = now_text();
        let (q_ok, q_err) = match self.backend {
            Backend::Mysql => (
                "INSERT INTO qz_cursor (job, last_run_at, last_success_at, last_error) VALUES (?, ?, ?, NULL) \
                 ON DUPLICATE KEY UPDATE last_run_at = VALUES(last_run_at), last_success_at = VALUES(last_success_at), last_error = NULL",
                "INSERT INTO qz_cursor (job, last_run_at, last_error) VALUES (?, ?, ?) \
                 ON DUPLICATE KEY UPDATE last_run_at = VALUES(last_run_at), last_error = VALUES(last_error)",
            ),
            _ => (
                "INSERT INTO qz_cursor (job, last_run_at, last_success_at, last_error) VALUES (?, ?, ?, NULL) \
                 ON CONFLICT (job) DO UPDATE SET last_run_at = excluded.last_run_at, last_success_at = excluded.last_success_at, last_error = NULL",
                "INSERT INTO qz_cursor (job, last_run_at, last_error) VALUES (?, ?, ?) \
                 ON CONFLICT (job) DO UPDATE SET last_run_at = excluded.last_run_at, last_error = excluded.last_error",
            ),
        };
        match error {
            None => {
                sqlx::query(self.sql(q_ok))
                    .bind(job)
                    .bind(&now)
                    .bind(&now)
                    .execute(&self.any)
                    .await?
            }
            Some(e) => {
                sqlx::query(self.sql(q_err))
                    .bind(job)
                    .bind(&now)
                    .bind(e)
                    .execute(&self.any)
                    .await?
            }
        };
        Ok(())
    }
}

/// Everything `status` shows for one job.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct JobStatus {
    pub job: String,
    pub position: Option<serde_json::Value>,
    pub last_run_at: Option<String>,
    pub last_success_at: Option<String>,
    pub last_error: Option<String>,
    pub pending_batches: i64,
    pub pending_records: i64,
    pub open_errors_by_rule: Vec<(String, i64)>,
    pub reconciliation_uploads_pending: i64,
    pub rows_waiting: Option<i64>,
    pub rows_waiting_capped: bool,
}

impl Db {
    pub async fn job_status(&self, job: &str) -> Result<JobStatus> {
        let mut s = JobStatus {
            job: job.to_string(),
            ..Default::default()
        };
        if let Some(r) = sqlx::query(self.sql("SELECT position, last_run_at, last_success_at, last_error FROM qz_cursor WHERE job = ?"))
            .bind(job)
            .fetch_optional(&self.any)
            .await?
        {
            s.position = r.try_get::<Option<String>, _>(0)?.and_then(|p| serde_json::from_str(&p).ok());
            s.last_run_at = r.try_get(1)?;
            s.last_success_at = r.try_get(2)?;
            s.last_error = r.try_get(3)?;
        }
        s.pending_batches = sqlx::query_scalar(
            self.sql("SELECT COUNT(*) FROM qz_batch WHERE job = ? AND state = 'pending'"),
        )
        .bind(job)
        .fetch_one(&self.any)
        .await?;
        // record_count is read per call and added here: SUM() is DECIMAL on MySQL.
        let counts: Vec<i64> = sqlx::query_scalar(self.sql(
            "SELECT o.record_count FROM qz_outbox o JOIN qz_batch b ON b.cd_batch = o.cd_batch WHERE b.job = ? AND o.state = 'pending'",
        ))
        .bind(job)
        .fetch_all(&self.any)
        .await?;
        s.pending_records = counts.iter().sum();
        let rows = sqlx::query(self.sql(
            "SELECT rule, COUNT(*) FROM qz_error WHERE job = ? AND resolved_at IS NULL GROUP BY rule ORDER BY rule",
        ))
        .bind(job)
        .fetch_all(&self.any)
        .await?;
        for r in rows {
            s.open_errors_by_rule.push((r.try_get(0)?, r.try_get(1)?));
        }
        s.reconciliation_uploads_pending = sqlx::query_scalar(self.sql(
            "SELECT COUNT(*) FROM qz_reconciliation WHERE job = ? AND upload_state = 'pending'",
        ))
        .bind(job)
        .fetch_one(&self.any)
        .await?;
        Ok(s)
    }

    /// Today's (Beijing) last Cd_Batch sequence for the unit, 0 when none was allocated yet.
    pub async fn todays_last_seq(&self, unit: &str) -> Result<i64> {
        let day = crate::timefmt::now_beijing().format("%Y%m%d").to_string();
        let seq: Option<i64> = sqlx::query_scalar(
            self.sql("SELECT last_seq FROM qz_batch_seq WHERE unit_code = ? AND batch_date = ?"),
        )
        .bind(unit)
        .bind(day)
        .fetch_optional(&self.any)
        .await?;
        Ok(seq.unwrap_or(0))
    }
}

impl Db {
    /// Newest open error rows: (job, source key, field, rule, message).
    pub async fn recent_errors(
        &self,
        limit: i64,
    ) -> Result<Vec<(String, String, String, String, String)>> {
        let rows = sqlx::query(self.sql(&format!(
            "SELECT job, source_key, field, rule, message FROM qz_error WHERE resolved_at IS NULL ORDER BY id LIMIT {limit}"
        )))
        .fetch_all(&self.any)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                ))
            })
            .collect()
    }
}
