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

const CHUNK_ROWS: usize = 200;

/// The columns of a qz_error row, in the order `error_values` gives them.
const ERROR_COLS: [&str; 12] = [
    "job",
    "source_key",
    "row_guid",
    "operation",
    "field",
    "rule",
    "message",
    "cd_batch",
    "created_at",
    "resolved_at",
    "resolved_by",
    "exchange_no",
];

/// One column of the job's qz_cursor row.
fn cursor_column(column: &'static str, job: &str) -> SelectStatement {
    Query::select()
        .column(column)
        .from("qz_cursor")
        .and_where(Expr::col("job").eq(job))
        .to_owned()
}

fn cursor_upsert(job: &str, position: &str, now: &str, exchange_no: i64) -> InsertStatement {
    Query::insert()
        .into_table("qz_cursor")
        .columns(["job", "position", "updated_at", "exchange_no"])
        .values_panic([
            Expr::val(job),
            Expr::val(position),
            Expr::val(now),
            Expr::val(exchange_no),
        ])
        .on_conflict(
            OnConflict::column("job")
                .update_columns(["position", "updated_at", "exchange_no"])
                .to_owned(),
        )
        .to_owned()
}

/// The position alone (seq order's observations, stored before any page is read): the
/// exchange number stays, no exchange was committed.
fn position_upsert(job: &str, position: &str, now: &str) -> InsertStatement {
    Query::insert()
        .into_table("qz_cursor")
        .columns(["job", "position", "updated_at"])
        .values_panic([Expr::val(job), Expr::val(position), Expr::val(now)])
        .on_conflict(
            OnConflict::column("job")
                .update_columns(["position", "updated_at"])
                .to_owned(),
        )
        .to_owned()
}

/// One step of the day's sequence, in one statement: the row is created at 1, or its
/// number goes up by one. Its first touch of the row takes the exclusive lock, so jobs that
/// number batches at once queue on it and never deadlock. Two statements did: MySQL's
/// INSERT IGNORE of an existing row takes a shared lock, and two jobs holding it both waited
/// to upgrade it for the UPDATE that followed (1213 several times a minute with seven jobs);
/// an UPDATE first would take a gap lock where the day's row is still missing, and two jobs
/// inserting it then deadlock the same way. On PostgreSQL a concurrent creator waits for the
/// other's insert and then updates; SQLite writers are serialised anyway.
fn seq_step(unit: &str, day: &str) -> InsertStatement {
    Query::insert()
        .into_table("qz_batch_seq")
        .columns(["unit_code", "batch_date", "last_seq"])
        .values_panic([Expr::val(unit), Expr::val(day), lit(1i64)])
        .on_conflict(
            OnConflict::columns(["unit_code", "batch_date"])
                // Qualified: PostgreSQL finds a bare `last_seq` ambiguous with EXCLUDED's.
                .value(
                    "last_seq",
                    Expr::col(("qz_batch_seq", "last_seq")).add(lit(1i64)),
                )
                .to_owned(),
        )
        .to_owned()
}

fn seq_last(unit: &str, day: &str) -> SelectStatement {
    Query::select()
        .column("last_seq")
        .from("qz_batch_seq")
        .and_where(Expr::col("unit_code").eq(unit))
        .and_where(Expr::col("batch_date").eq(day))
        .to_owned()
}

fn batch_insert(
    cd_batch: &str,
    job: &str,
    b: &NewBatch<'_>,
    record_count: i64,
    cd_time: &str,
    now: &str,
    exchange_no: i64,
) -> InsertStatement {
    Query::insert()
        .into_table("qz_batch")
        .columns([
            "cd_batch",
            "job",
            "upstream",
            "data_type",
            "table_name",
            "state",
            "record_count",
            "cd_time",
            "created_at",
            "exchange_no",
        ])
        .values_panic([
            Expr::val(cd_batch),
            Expr::val(job),
            Expr::val(b.upstream),
            Expr::val(b.data_type),
            Expr::val(b.table_name),
            lit("pending"),
            Expr::val(record_count),
            Expr::val(cd_time),
            Expr::val(now),
            Expr::val(exchange_no),
        ])
        .to_owned()
}

/// One outbox call; rendered once per commit, run per call with `outbox_args`. The body is
/// the last value: the driver encodes the values into one growing buffer, and a value after
/// the body made it reallocate, copying the body once more (2% of a run's instructions).
fn outbox_insert() -> InsertStatement {
    Query::insert()
        .into_table("qz_outbox")
        .columns([
            "cd_batch",
            "call_no",
            "record_count",
            "records",
            "body",
            "state",
        ])
        .values_panic(slots(5).chain([lit("pending")]))
        .to_owned()
}

/// The values of `outbox_insert`, bound as sea-query would bind them, except that the body
/// is handed over shared: the Any driver copies a `String` it borrows (as sea-query's values
/// are bound), and bodies are most of the bytes a commit moves. Its `Text` value is the
/// `Arc<String>` delivery sends from, so binding copies nothing.
fn outbox_args(cd_batch: &str, call: &OutboxCall) -> Result<sqlx::any::AnyArguments> {
    use sqlx::Arguments;
    let mut args = sqlx::any::AnyArguments::default();
    let bind = |r: Result<(), sqlx::error::BoxDynError>| r.map_err(|e| anyhow::anyhow!(e));
    bind(args.add(cd_batch))?;
    bind(args.add(call.call_no))?;
    bind(args.add(call.records.len() as i64))?;
    bind(args.add(serde_json::to_string(&call.records)?))?;
    args.values
        .0
        .push(sqlx_core::any::AnyValueKind::Text(call.body.clone()));
    Ok(args)
}

/// `rows` error rows in one statement; rendered once per chunk size, run with `error_values`.
fn error_insert(rows: usize) -> InsertStatement {
    let mut q = Query::insert();
    q.into_table("qz_error").columns(ERROR_COLS);
    for _ in 0..rows {
        q.values_panic(slots(ERROR_COLS.len()));
    }
    q
}

/// The values of one error row, in `ERROR_COLS` order.
fn error_values(
    out: &mut Vec<Value>,
    job: &str,
    e: &ErrorRow,
    (cd_batch, exchange_no): (Option<&str>, Option<i64>),
    now: &str,
) {
    out.extend([
        job.into(),
        e.source_key.as_str().into(),
        e.row_guid.clone().into(),
        e.operation.clone().into(),
        e.field.as_str().into(),
        e.rule.as_str().into(),
        crate::mask::mask_pii(&e.message).into(),
        cd_batch.map(str::to_string).into(),
        now.into(),
        e.superseded.then(|| now.to_string()).into(),
        if e.superseded {
            cd_batch.map(str::to_string)
        } else {
            None
        }
        .into(),
        exchange_no.into(),
    ]);
}

/// Resolves open error rows of `keys` from exchanges before `before` and batches other than
/// `cd_batch`.
fn resolve_errors_update(
    now: &str,
    cd_batch: &str,
    job: &str,
    before: i64,
    keys: &[&str],
) -> UpdateStatement {
    Query::update()
        .table("qz_error")
        .value("resolved_at", now)
        .value("resolved_by", cd_batch)
        .and_where(Expr::col("job").eq(job))
        .and_where(Expr::col("resolved_at").is_null())
        .and_where(
            Expr::col("cd_batch")
                .is_null()
                .or(Expr::col("cd_batch").ne(cd_batch)),
        )
        .and_where(
            Expr::col("exchange_no")
                .is_null()
                .or(Expr::col("exchange_no").lt(before)),
        )
        .and_where(Expr::col("source_key").is_in(keys.iter().copied()))
        .to_owned()
}

fn ack_update(cd_batch: &str, call_nos: impl IntoIterator<Item = i64>) -> UpdateStatement {
    Query::update()
        .table("qz_outbox")
        .value("state", lit("acked"))
        .and_where(Expr::col("cd_batch").eq(cd_batch))
        .and_where(Expr::col("call_no").is_in(call_nos))
        .to_owned()
}

fn batch_done_update(
    cd_batch: &str,
    acked: i64,
    rejected: i64,
    now: &str,
    platform_batch_num: Option<String>,
    platform_id: Option<String>,
) -> UpdateStatement {
    Query::update()
        .table("qz_batch")
        .value("state", lit("done"))
        .value("delivered_count", acked)
        .value("rejected_count", rejected)
        .value("done_at", now)
        .value("platform_batch_num", platform_batch_num)
        .value("platform_id", platform_id)
        .and_where(Expr::col("cd_batch").eq(cd_batch))
        .to_owned()
}

fn recon_insert(
    recon: &ReconRow,
    job: &str,
    now: &str,
    upload_state: &str,
    platform_batch_num: Option<String>,
) -> InsertStatement {
    Query::insert()
        .into_table("qz_reconciliation")
        .columns([
            "cd_batch",
            "job",
            "table_name",
            "cd_count",
            "cd_time",
            "created_at",
            "upload_state",
            "platform_batch_num",
        ])
        .values_panic([
            Expr::val(recon.cd_batch.as_str()),
            Expr::val(job),
            Expr::val(recon.table_name.as_str()),
            Expr::val(recon.cd_count),
            Expr::val(recon.cd_time.as_str()),
            Expr::val(now),
            Expr::val(upload_state),
            Expr::val(platform_batch_num),
        ])
        .to_owned()
}

/// How a run ended on the job's cursor row: success clears the last error, a failure keeps
/// the last success.
/// A finished run: its time and result (ok or failed, migration 9); a run that ended also
/// ends its retry streak.
fn run_upsert(job: &str, now: &str, error: Option<&str>) -> InsertStatement {
    let mut q = Query::insert();
    q.into_table("qz_cursor");
    let mut on = OnConflict::column("job");
    for c in [
        "retrying_since",
        "retry_last_at",
        "retry_failures",
        "retry_error",
    ] {
        on.value(c, Expr::null());
    }
    match error {
        None => q
            .columns([
                "job",
                "last_run_at",
                "last_success_at",
                "last_error",
                "last_run_result",
            ])
            .values_panic([
                Expr::val(job),
                Expr::val(now),
                Expr::val(now),
                Expr::null(),
                Expr::val("ok"),
            ])
            .on_conflict(
                on.update_columns(["last_run_at", "last_success_at", "last_run_result"])
                    .value("last_error", Expr::null())
                    .to_owned(),
            ),
        Some(e) => q
            .columns(["job", "last_run_at", "last_error", "last_run_result"])
            .values_panic([
                Expr::val(job),
                Expr::val(now),
                Expr::val(e),
                Expr::val("failed"),
            ])
            .on_conflict(
                on.update_columns(["last_run_at", "last_error", "last_run_result"])
                    .to_owned(),
            ),
    };
    q
}

fn pending_batches_select(job: &str) -> SelectStatement {
    Query::select()
        .columns([
            "cd_batch",
            "data_type",
            "table_name",
            "record_count",
            "cd_time",
            "created_at",
            "exchange_no",
        ])
        .from("qz_batch")
        .and_where(Expr::col("job").eq(job))
        .and_where(Expr::col("state").eq(lit("pending")))
        .order_by("created_at", Order::Asc)
        .order_by("cd_batch", Order::Asc)
        .to_owned()
}

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

    async fn upsert_cursor(
        &self,
        tx: &mut Transaction<'_, Any>,
        job: &str,
        position: &str,
        exchange_no: i64,
    ) -> Result<()> {
        self.stmt(&cursor_upsert(job, position, &now_text(), exchange_no))
            .execute(&mut **tx)
            .await?;
        Ok(())
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
        if let (Some(id), Some(b)) = (&cd_batch, batch) {
            let count = rows.iter().map(|c| c.records.len() as i64).sum::<i64>();
            let at = fmt_spec(&b.at);
            self.stmt(&batch_insert(id, job, b, count, &at, &now, exchange_no))
                .execute(&mut *tx)
                .await?;
            let insert = Sql::new(self.backend, &outbox_insert());
            for call in &rows {
                insert
                    .with_args(outbox_args(id, call)?)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let at = (cd_batch.as_deref(), Some(exchange_no));
        self.insert_errors(&mut tx, job, errors, at, &now).await?;
        self.write_row_state(&mut tx, job, state, &now).await?;
        self.upsert_cursor(&mut tx, job, position, exchange_no)
            .await?;
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
    async fn insert_errors(
        &self,
        tx: &mut Transaction<'_, Any>,
        job: &str,
        errors: &[ErrorRow],
        at: (Option<&str>, Option<i64>),
        now: &str,
    ) -> Result<()> {
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
                sql.with(values).execute(&mut **tx).await?;
            }
        }
        Ok(())
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
            let q = resolve_errors_update(&now_text(), &b.cd_batch, job, before, chunk);
            self.stmt(&q).execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Marks whole calls delivered and, where the job has open error rows, resolves those of
    /// the same source rows found in earlier exchanges.
    pub async fn ack_calls(
        &self,
        fence: &Fence,
        b: &BatchRow,
        calls: &[&OutboxCall],
        resolve_errors: bool,
    ) -> Result<()> {
        if calls.is_empty() {
            return Ok(());
        }
        retrying("ack_calls", || async {
            let mut tx = self.begin_fenced(fence).await?;
            self.ack_in(&mut tx, &fence.job, b, calls, resolve_errors)
                .await?;
            self.commit_write(tx, "ack_calls").await
        })
        .await
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
        self.stmt(&ack_update(&b.cd_batch, calls.iter().map(|c| c.call_no)))
            .execute(&mut **tx)
            .await?;
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
        fence: &Fence,
        b: &BatchRow,
        call: &OutboxCall,
        newly: &[usize],
        refused_message: Option<&str>,
        resolve_errors: bool,
    ) -> Result<()> {
        retrying("record_split_progress", || {
            self.record_split_progress_once(fence, b, call, newly, refused_message, resolve_errors)
        })
        .await
    }

    async fn record_split_progress_once(
        &self,
        fence: &Fence,
        b: &BatchRow,
        call: &OutboxCall,
        newly: &[usize],
        refused_message: Option<&str>,
        resolve_errors: bool,
    ) -> Result<()> {
        let job = fence.job.as_str();
        let mut tx = self.begin_fenced(fence).await?;
        let q = Query::update()
            .table("qz_outbox")
            .value("done", serde_json::to_string(&call.done)?)
            .and_where(Expr::col("cd_batch").eq(b.cd_batch.as_str()))
            .and_where(Expr::col("call_no").eq(call.call_no))
            .to_owned();
        self.stmt(&q).execute(&mut *tx).await?;
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
                let refused: Vec<(&str, &str)> = newly
                    .iter()
                    .map(|i| &call.records[*i])
                    .map(|m| (m.source_key.as_str(), m.operation.as_str()))
                    .collect();
                self.forget_refused(&mut tx, job, &refused).await?;
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
        self.commit_write(tx, "record_split_progress").await
    }

    /// The platform's receipt for one accepted call (or part of a split call). Written on its
    /// own: the platform issued the number whether or not the ack below is recorded.
    pub async fn record_receipt(
        &self,
        fence: &Fence,
        cd_batch: &str,
        call_no: i64,
        records: usize,
        platform_batch_num: &str,
        platform_id: &str,
    ) -> Result<()> {
        let q = Query::insert()
            .into_table("qz_platform_receipt")
            .columns([
                "cd_batch",
                "call_no",
                "record_count",
                "platform_batch_num",
                "platform_id",
                "received_at",
            ])
            .values_panic([
                Expr::val(cd_batch),
                Expr::val(call_no),
                Expr::val(records as i64),
                Expr::val(platform_batch_num),
                Expr::val(platform_id),
                Expr::val(now_text()),
            ])
            .to_owned();
        retrying("record_receipt", || self.exec_fenced(fence, &q)).await
    }

    /// Closes a batch whose calls are all done: counts, the reconciliation row, and the
    /// outbox bodies are no longer needed.
    /// Closes a batch whose calls are all answered; `last_acks` are calls accepted since the
    /// last ack, recorded in the same transaction.
    pub async fn finish_batch(
        &self,
        fence: &Fence,
        b: &BatchRow,
        last_acks: &[&OutboxCall],
        resolve_errors: bool,
        upload_state: &str,
    ) -> Result<ReconRow> {
        retrying("finish_batch", || {
            self.finish_batch_once(fence, b, last_acks, resolve_errors, upload_state)
        })
        .await
    }

    async fn finish_batch_once(
        &self,
        fence: &Fence,
        b: &BatchRow,
        last_acks: &[&OutboxCall],
        resolve_errors: bool,
        upload_state: &str,
    ) -> Result<ReconRow> {
        let job = fence.job.as_str();
        let mut tx = self.begin_fenced(fence).await?;
        self.ack_in(&mut tx, job, b, last_acks, resolve_errors)
            .await?;
        let of_batch = || Expr::col("cd_batch").eq(b.cd_batch.as_str());
        let q = Query::select()
            .columns(["record_count", "done", "state"])
            .from("qz_outbox")
            .and_where(of_batch())
            .to_owned();
        let calls = self.stmt(&q).fetch_all(&mut *tx).await?;
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
        // The platform's batch numbers (Gansu), in call order (answers to calls in flight
        // together come back in any order); none for Guangdong.
        let q = Query::select()
            .columns(["platform_batch_num", "platform_id"])
            .from("qz_platform_receipt")
            .and_where(of_batch())
            .order_by("call_no", Order::Asc)
            .order_by("id", Order::Asc)
            .to_owned();
        let receipts = self.stmt(&q).fetch_all(&mut *tx).await?;
        let mut nums: Vec<String> = Vec::new();
        let mut ids: Vec<String> = Vec::new();
        for r in &receipts {
            nums.push(r.try_get::<Option<String>, _>(0)?.unwrap_or_default());
            ids.push(r.try_get::<Option<String>, _>(1)?.unwrap_or_default());
        }
        let joined = |v: &[String]| (!v.is_empty()).then(|| v.join(","));
        let (platform_batch_num, platform_id) = (joined(&nums), joined(&ids));
        let q = batch_done_update(
            &b.cd_batch,
            acked,
            rejected,
            &now,
            platform_batch_num.clone(),
            platform_id,
        );
        self.stmt(&q).execute(&mut *tx).await?;
        let recon = ReconRow {
            cd_batch: b.cd_batch.clone(),
            table_name: b.table_name.clone(),
            cd_count: acked,
            cd_time: b.cd_time.clone(),
        };
        let q = recon_insert(&recon, job, &now, upload_state, platform_batch_num);
        self.stmt(&q).execute(&mut *tx).await?;
        let q = Query::delete()
            .from_table("qz_outbox")
            .and_where(of_batch())
            .to_owned();
        self.stmt(&q).execute(&mut *tx).await?;
        self.commit_write(tx, "finish_batch").await?;
        Ok(recon)
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

/// Everything `status` shows for one job. In JSON, times are RFC 3339 with `+08:00`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct JobStatus {
    pub job: String,
    pub position: Option<serde_json::Value>,
    #[serde(serialize_with = "crate::timefmt::json::opt_time")]
    pub last_run_at: Option<String>,
    /// ok, failed or interrupted (migration 9).
    pub last_run_result: Option<String>,
    #[serde(serialize_with = "crate::timefmt::json::opt_time")]
    pub last_success_at: Option<String>,
    /// The job's own last error (its last run failed); never one of `status` itself.
    pub last_error: Option<String>,
    /// Calls failing temporarily and being resent right now (by a run in any process).
    pub retrying: Option<super::ops::StoredRetry>,
    pub pending_batches: i64,
    pub pending_records: i64,
    pub open_errors_by_rule: indexmap::IndexMap<String, i64>,
    pub reconciliation_uploads_pending: i64,
    pub rows_waiting: Option<i64>,
    pub rows_waiting_capped: bool,
    /// What `status` itself could not find out for this job (e.g. counting waiting rows).
    pub status_errors: Vec<String>,
    /// Who holds the job's lease and until when (None: never taken).
    pub lease: Option<super::lease::LeaseStatus>,
}

/// The record counts of the job's calls still to send.
fn pending_calls_select(job: &str) -> SelectStatement {
    Query::select()
        .column(("o", "record_count"))
        .from_as("qz_outbox", "o")
        .join_as(
            JoinType::InnerJoin,
            "qz_batch",
            "b",
            Expr::col(("b", "cd_batch")).equals(("o", "cd_batch")),
        )
        .and_where(Expr::col(("b", "job")).eq(job))
        .and_where(Expr::col(("o", "state")).eq(lit("pending")))
        .to_owned()
}

impl Db {
    pub async fn job_status(&self, job: &str) -> Result<JobStatus> {
        let mut s = JobStatus {
            job: job.to_string(),
            ..Default::default()
        };
        let of_job = || Expr::col("job").eq(job);
        let q = Query::select()
            .columns(["position", "last_run_at", "last_success_at", "last_error"])
            .from("qz_cursor")
            .and_where(of_job())
            .to_owned();
        if let Some(r) = self.stmt(&q).fetch_optional(&self.any).await? {
            s.position = r
                .try_get::<Option<String>, _>(0)?
                .and_then(|p| serde_json::from_str(&p).ok());
            s.last_run_at = r.try_get(1)?;
            s.last_success_at = r.try_get(2)?;
            s.last_error = r.try_get(3)?;
        }
        let q = Query::select()
            .expr(Expr::col(Asterisk).count())
            .from("qz_batch")
            .and_where(of_job())
            .and_where(Expr::col("state").eq(lit("pending")))
            .to_owned();
        s.pending_batches = self.stmt_scalar(&q).fetch_one(&self.any).await?;
        // record_count is read per call and added here: SUM() is DECIMAL on MySQL.
        let counts: Vec<i64> = self
            .stmt_scalar(&pending_calls_select(job))
            .fetch_all(&self.any)
            .await?;
        s.pending_records = counts.iter().sum();
        let q = Query::select()
            .column("rule")
            .expr(Expr::col(Asterisk).count())
            .from("qz_error")
            .and_where(of_job())
            .and_where(Expr::col("resolved_at").is_null())
            .group_by_col("rule")
            .order_by("rule", Order::Asc)
            .to_owned();
        for r in self.stmt(&q).fetch_all(&self.any).await? {
            s.open_errors_by_rule.insert(r.try_get(0)?, r.try_get(1)?);
        }
        let q = Query::select()
            .expr(Expr::col(Asterisk).count())
            .from("qz_reconciliation")
            .and_where(of_job())
            .and_where(Expr::col("upload_state").eq(lit("pending")))
            .to_owned();
        s.reconciliation_uploads_pending = self.stmt_scalar(&q).fetch_one(&self.any).await?;
        Ok(s)
    }

    /// Today's (Beijing) last Cd_Batch sequence for the unit, 0 when none was allocated yet.
    pub async fn todays_last_seq(&self, unit: &str) -> Result<i64> {
        let day = crate::timefmt::now_beijing().format("%Y%m%d").to_string();
        let seq: Option<i64> = self
            .stmt_scalar(&seq_last(unit, &day))
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
        let q = Query::select()
            .columns(["job", "source_key", "field", "rule", "message"])
            .from("qz_error")
            .and_where(Expr::col("resolved_at").is_null())
            .order_by("id", Order::Asc)
            .limit(u64::try_from(limit).unwrap_or(0))
            .to_owned();
        let rows = self.stmt(&q).fetch_all(&self.any).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Backend;
    use chrono::TimeZone;
    use sea_query_sqlx::SqlxBinder;

    const BACKENDS: [Backend; 3] = [Backend::Postgres, Backend::Mysql, Backend::Sqlite];

    fn render<S: SqlxBinder>(s: &S) -> [(String, usize); 3] {
        BACKENDS.map(|b| {
            let (sql, v) = b.build(s);
            (sql, v.0.0.len())
        })
    }

    /// Golden SQL of the control-table statements: statement × backend (PostgreSQL, MySQL,
    /// SQLite) → text, and how many values are bound.
    #[test]
    fn control_statements_per_backend() {
        let at = chrono::FixedOffset::east_opt(8 * 3600)
            .unwrap()
            .with_ymd_and_hms(2025, 1, 2, 3, 4, 5)
            .unwrap();
        let batch = NewBatch {
            upstream: "gdzw",
            data_type: "accept",
            table_name: "t",
            unit_code: "u",
            at,
        };
        let cases = [
            (
                "cursor upsert",
                render(&cursor_upsert("j", "p", "n", 3)),
                [
                    r#"INSERT INTO "qz_cursor" ("job", "position", "updated_at", "exchange_no") VALUES ($1, $2, $3, $4) ON CONFLICT ("job") DO UPDATE SET "position" = "excluded"."position", "updated_at" = "excluded"."updated_at", "exchange_no" = "excluded"."exchange_no""#,
                    r#"INSERT INTO `qz_cursor` (`job`, `position`, `updated_at`, `exchange_no`) VALUES (?, ?, ?, ?) ON DUPLICATE KEY UPDATE `position` = VALUES(`position`), `updated_at` = VALUES(`updated_at`), `exchange_no` = VALUES(`exchange_no`)"#,
                    r#"INSERT INTO "qz_cursor" ("job", "position", "updated_at", "exchange_no") VALUES (?, ?, ?, ?) ON CONFLICT ("job") DO UPDATE SET "position" = "excluded"."position", "updated_at" = "excluded"."updated_at", "exchange_no" = "excluded"."exchange_no""#,
                ],
                4,
            ),
            (
                "position upsert",
                render(&position_upsert("j", "p", "n")),
                [
                    r#"INSERT INTO "qz_cursor" ("job", "position", "updated_at") VALUES ($1, $2, $3) ON CONFLICT ("job") DO UPDATE SET "position" = "excluded"."position", "updated_at" = "excluded"."updated_at""#,
                    r#"INSERT INTO `qz_cursor` (`job`, `position`, `updated_at`) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE `position` = VALUES(`position`), `updated_at` = VALUES(`updated_at`)"#,
                    r#"INSERT INTO "qz_cursor" ("job", "position", "updated_at") VALUES (?, ?, ?) ON CONFLICT ("job") DO UPDATE SET "position" = "excluded"."position", "updated_at" = "excluded"."updated_at""#,
                ],
                3,
            ),
            (
                "run succeeded",
                render(&run_upsert("j", "n", None)),
                [
                    r#"INSERT INTO "qz_cursor" ("job", "last_run_at", "last_success_at", "last_error", "last_run_result") VALUES ($1, $2, $3, NULL, $4) ON CONFLICT ("job") DO UPDATE SET "retrying_since" = NULL, "retry_last_at" = NULL, "retry_failures" = NULL, "retry_error" = NULL, "last_run_at" = "excluded"."last_run_at", "last_success_at" = "excluded"."last_success_at", "last_run_result" = "excluded"."last_run_result", "last_error" = NULL"#,
                    r#"INSERT INTO `qz_cursor` (`job`, `last_run_at`, `last_success_at`, `last_error`, `last_run_result`) VALUES (?, ?, ?, NULL, ?) ON DUPLICATE KEY UPDATE `retrying_since` = NULL, `retry_last_at` = NULL, `retry_failures` = NULL, `retry_error` = NULL, `last_run_at` = VALUES(`last_run_at`), `last_success_at` = VALUES(`last_success_at`), `last_run_result` = VALUES(`last_run_result`), `last_error` = NULL"#,
                    r#"INSERT INTO "qz_cursor" ("job", "last_run_at", "last_success_at", "last_error", "last_run_result") VALUES (?, ?, ?, NULL, ?) ON CONFLICT ("job") DO UPDATE SET "retrying_since" = NULL, "retry_last_at" = NULL, "retry_failures" = NULL, "retry_error" = NULL, "last_run_at" = "excluded"."last_run_at", "last_success_at" = "excluded"."last_success_at", "last_run_result" = "excluded"."last_run_result", "last_error" = NULL"#,
                ],
                4,
            ),
            (
                "run failed",
                render(&run_upsert("j", "n", Some("e"))),
                [
                    r#"INSERT INTO "qz_cursor" ("job", "last_run_at", "last_error", "last_run_result") VALUES ($1, $2, $3, $4) ON CONFLICT ("job") DO UPDATE SET "retrying_since" = NULL, "retry_last_at" = NULL, "retry_failures" = NULL, "retry_error" = NULL, "last_run_at" = "excluded"."last_run_at", "last_error" = "excluded"."last_error", "last_run_result" = "excluded"."last_run_result""#,
                    r#"INSERT INTO `qz_cursor` (`job`, `last_run_at`, `last_error`, `last_run_result`) VALUES (?, ?, ?, ?) ON DUPLICATE KEY UPDATE `retrying_since` = NULL, `retry_last_at` = NULL, `retry_failures` = NULL, `retry_error` = NULL, `last_run_at` = VALUES(`last_run_at`), `last_error` = VALUES(`last_error`), `last_run_result` = VALUES(`last_run_result`)"#,
                    r#"INSERT INTO "qz_cursor" ("job", "last_run_at", "last_error", "last_run_result") VALUES (?, ?, ?, ?) ON CONFLICT ("job") DO UPDATE SET "retrying_since" = NULL, "retry_last_at" = NULL, "retry_failures" = NULL, "retry_error" = NULL, "last_run_at" = "excluded"."last_run_at", "last_error" = "excluded"."last_error", "last_run_result" = "excluded"."last_run_result""#,
                ],
                4,
            ),
            (
                "day sequence step",
                render(&seq_step("u", "d")),
                [
                    r#"INSERT INTO "qz_batch_seq" ("unit_code", "batch_date", "last_seq") VALUES ($1, $2, 1) ON CONFLICT ("unit_code", "batch_date") DO UPDATE SET "last_seq" = "qz_batch_seq"."last_seq" + 1"#,
                    r#"INSERT INTO `qz_batch_seq` (`unit_code`, `batch_date`, `last_seq`) VALUES (?, ?, 1) ON DUPLICATE KEY UPDATE `last_seq` = `qz_batch_seq`.`last_seq` + 1"#,
                    r#"INSERT INTO "qz_batch_seq" ("unit_code", "batch_date", "last_seq") VALUES (?, ?, 1) ON CONFLICT ("unit_code", "batch_date") DO UPDATE SET "last_seq" = "qz_batch_seq"."last_seq" + 1"#,
                ],
                2,
            ),
            (
                "batch",
                render(&batch_insert("b", "j", &batch, 3, "t", "n", 4)),
                [
                    r#"INSERT INTO "qz_batch" ("cd_batch", "job", "upstream", "data_type", "table_name", "state", "record_count", "cd_time", "created_at", "exchange_no") VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9)"#,
                    r#"INSERT INTO `qz_batch` (`cd_batch`, `job`, `upstream`, `data_type`, `table_name`, `state`, `record_count`, `cd_time`, `created_at`, `exchange_no`) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)"#,
                    r#"INSERT INTO "qz_batch" ("cd_batch", "job", "upstream", "data_type", "table_name", "state", "record_count", "cd_time", "created_at", "exchange_no") VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)"#,
                ],
                9,
            ),
            (
                "outbox call",
                render(&outbox_insert()),
                [
                    r#"INSERT INTO "qz_outbox" ("cd_batch", "call_no", "record_count", "records", "body", "state") VALUES ($1, $2, $3, $4, $5, 'pending')"#,
                    r#"INSERT INTO `qz_outbox` (`cd_batch`, `call_no`, `record_count`, `records`, `body`, `state`) VALUES (?, ?, ?, ?, ?, 'pending')"#,
                    r#"INSERT INTO "qz_outbox" ("cd_batch", "call_no", "record_count", "records", "body", "state") VALUES (?, ?, ?, ?, ?, 'pending')"#,
                ],
                5,
            ),
            (
                "two error rows",
                render(&error_insert(2)),
                [
                    r#"INSERT INTO "qz_error" ("job", "source_key", "row_guid", "operation", "field", "rule", "message", "cd_batch", "created_at", "resolved_at", "resolved_by", "exchange_no") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12), ($13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)"#,
                    r#"INSERT INTO `qz_error` (`job`, `source_key`, `row_guid`, `operation`, `field`, `rule`, `message`, `cd_batch`, `created_at`, `resolved_at`, `resolved_by`, `exchange_no`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"#,
                    r#"INSERT INTO "qz_error" ("job", "source_key", "row_guid", "operation", "field", "rule", "message", "cd_batch", "created_at", "resolved_at", "resolved_by", "exchange_no") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"#,
                ],
                24,
            ),
            (
                "resolve errors",
                render(&resolve_errors_update("n", "b", "j", 4, &["k1", "k2"])),
                [
                    r#"UPDATE "qz_error" SET "resolved_at" = $1, "resolved_by" = $2 WHERE "job" = $3 AND "resolved_at" IS NULL AND ("cd_batch" IS NULL OR "cd_batch" <> $4) AND ("exchange_no" IS NULL OR "exchange_no" < $5) AND "source_key" IN ($6, $7)"#,
                    r#"UPDATE `qz_error` SET `resolved_at` = ?, `resolved_by` = ? WHERE `job` = ? AND `resolved_at` IS NULL AND (`cd_batch` IS NULL OR `cd_batch` <> ?) AND (`exchange_no` IS NULL OR `exchange_no` < ?) AND `source_key` IN (?, ?)"#,
                    r#"UPDATE "qz_error" SET "resolved_at" = ?, "resolved_by" = ? WHERE "job" = ? AND "resolved_at" IS NULL AND ("cd_batch" IS NULL OR "cd_batch" <> ?) AND ("exchange_no" IS NULL OR "exchange_no" < ?) AND "source_key" IN (?, ?)"#,
                ],
                7,
            ),
            (
                "ack calls",
                render(&ack_update("b", [1, 2])),
                [
                    r#"UPDATE "qz_outbox" SET "state" = 'acked' WHERE "cd_batch" = $1 AND "call_no" IN ($2, $3)"#,
                    r#"UPDATE `qz_outbox` SET `state` = 'acked' WHERE `cd_batch` = ? AND `call_no` IN (?, ?)"#,
                    r#"UPDATE "qz_outbox" SET "state" = 'acked' WHERE "cd_batch" = ? AND "call_no" IN (?, ?)"#,
                ],
                3,
            ),
            (
                "pending batches",
                render(&pending_batches_select("j")),
                [
                    r#"SELECT "cd_batch", "data_type", "table_name", "record_count", "cd_time", "created_at", "exchange_no" FROM "qz_batch" WHERE "job" = $1 AND "state" = 'pending' ORDER BY "created_at" ASC, "cd_batch" ASC"#,
                    r#"SELECT `cd_batch`, `data_type`, `table_name`, `record_count`, `cd_time`, `created_at`, `exchange_no` FROM `qz_batch` WHERE `job` = ? AND `state` = 'pending' ORDER BY `created_at` ASC, `cd_batch` ASC"#,
                    r#"SELECT "cd_batch", "data_type", "table_name", "record_count", "cd_time", "created_at", "exchange_no" FROM "qz_batch" WHERE "job" = ? AND "state" = 'pending' ORDER BY "created_at" ASC, "cd_batch" ASC"#,
                ],
                1,
            ),
            (
                "batch done",
                render(&batch_done_update("b", 1, 2, "n", None, None)),
                [
                    r#"UPDATE "qz_batch" SET "state" = 'done', "delivered_count" = $1, "rejected_count" = $2, "done_at" = $3, "platform_batch_num" = $4, "platform_id" = $5 WHERE "cd_batch" = $6"#,
                    r#"UPDATE `qz_batch` SET `state` = 'done', `delivered_count` = ?, `rejected_count` = ?, `done_at` = ?, `platform_batch_num` = ?, `platform_id` = ? WHERE `cd_batch` = ?"#,
                    r#"UPDATE "qz_batch" SET "state" = 'done', "delivered_count" = ?, "rejected_count" = ?, "done_at" = ?, "platform_batch_num" = ?, "platform_id" = ? WHERE "cd_batch" = ?"#,
                ],
                6,
            ),
            (
                "pending calls",
                render(&pending_calls_select("j")),
                [
                    r#"SELECT "o"."record_count" FROM "qz_outbox" AS "o" INNER JOIN "qz_batch" AS "b" ON "b"."cd_batch" = "o"."cd_batch" WHERE "b"."job" = $1 AND "o"."state" = 'pending'"#,
                    r#"SELECT `o`.`record_count` FROM `qz_outbox` AS `o` INNER JOIN `qz_batch` AS `b` ON `b`.`cd_batch` = `o`.`cd_batch` WHERE `b`.`job` = ? AND `o`.`state` = 'pending'"#,
                    r#"SELECT "o"."record_count" FROM "qz_outbox" AS "o" INNER JOIN "qz_batch" AS "b" ON "b"."cd_batch" = "o"."cd_batch" WHERE "b"."job" = ? AND "o"."state" = 'pending'"#,
                ],
                1,
            ),
        ];

        for (name, got, want, binds) in cases {
            for ((b, got), want) in BACKENDS.iter().zip(got).zip(want) {
                assert_eq!(got, (want.to_string(), binds), "{name} on {b:?}");
            }
        }
    }

    /// The outbox and error inserts are rendered once and bound per row: the values given
    /// per row must fill exactly the placeholders, in column order.
    #[test]
    fn per_row_values_fill_the_rendered_placeholders() {
        let call = OutboxCall {
            call_no: 3,
            body: Body::new("{}".into()),
            records: vec![RecordMeta {
                source_key: "k".into(),
                row_guid: "g".into(),
                operation: "I".into(),
            }],
            done: Default::default(),
        };
        // What each value is, is checked end to end (the outbox rows the e2e tests read).
        let args = outbox_args("B1", &call).unwrap();
        assert_eq!(sqlx::Arguments::len(&args), render(&outbox_insert())[0].1);
        let e = ErrorRow {
            source_key: "k".into(),
            row_guid: None,
            operation: Some("U".into()),
            field: "Phone".into(),
            rule: "format".into(),
            message: "13800138000 is not valid".into(),
            superseded: true,
        };
        let mut values = Vec::new();
        error_values(&mut values, "j", &e, (Some("B1"), Some(4)), "now");
        error_values(&mut values, "j", &e, (None, None), "now");
        assert_eq!(values.len(), render(&error_insert(2))[0].1);
        let col = |c: &str| ERROR_COLS.iter().position(|x| *x == c).unwrap();
        assert_eq!(values[col("exchange_no")], Value::from(4i64));
        // Superseded: resolved at once by the batch it went out with.
        assert_eq!(values[col("resolved_by")], Value::from("B1"));
        assert_eq!(values[col("resolved_at")], Value::from("now"));
        let second = ERROR_COLS.len();
        assert_eq!(values[second + col("resolved_by")], Value::String(None));
        // The mobile number in the message is masked before it is stored.
        let Value::String(Some(msg)) = &values[col("message")] else {
            panic!("message is text");
        };
        assert!(!msg.contains("13800138000"), "{msg}");
    }
}
