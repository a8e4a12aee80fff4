//! The control-table statements of `control`, built once with sea-query and rendered per
//! backend by `Backend::build`: cursors, the Cd_Batch sequence, batches, outbox calls, error
//! rows, acks, reconciliation rows and run results.

use super::*;

pub(super) const CHUNK_ROWS: usize = 200;

/// The columns of a qz_error row, in the order `error_values` gives them.
pub(super) const ERROR_COLS: [&str; 12] = [
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
pub(super) fn cursor_column(column: &'static str, job: &str) -> SelectStatement {
    Query::select()
        .column(column)
        .from("qz_cursor")
        .and_where(Expr::col("job").eq(job))
        .to_owned()
}

pub(super) fn cursor_upsert(
    job: &str,
    position: &str,
    now: &str,
    exchange_no: i64,
) -> InsertStatement {
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
pub(super) fn position_upsert(job: &str, position: &str, now: &str) -> InsertStatement {
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
pub(super) fn seq_step(unit: &str, day: &str) -> InsertStatement {
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

pub(super) fn seq_last(unit: &str, day: &str) -> SelectStatement {
    Query::select()
        .column("last_seq")
        .from("qz_batch_seq")
        .and_where(Expr::col("unit_code").eq(unit))
        .and_where(Expr::col("batch_date").eq(day))
        .to_owned()
}

pub(super) fn batch_insert(
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
pub(super) fn outbox_insert() -> InsertStatement {
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
pub(super) fn outbox_args(cd_batch: &str, call: &OutboxCall) -> Result<sqlx::any::AnyArguments> {
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
pub(super) fn error_insert(rows: usize) -> InsertStatement {
    let mut q = Query::insert();
    q.into_table("qz_error").columns(ERROR_COLS);
    for _ in 0..rows {
        q.values_panic(slots(ERROR_COLS.len()));
    }
    q
}

/// The values of one error row, in `ERROR_COLS` order.
pub(super) fn error_values(
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
pub(super) fn resolve_errors_update(
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

pub(super) fn ack_update(
    cd_batch: &str,
    call_nos: impl IntoIterator<Item = i64>,
) -> UpdateStatement {
    Query::update()
        .table("qz_outbox")
        .value("state", lit("acked"))
        .and_where(Expr::col("cd_batch").eq(cd_batch))
        .and_where(Expr::col("call_no").is_in(call_nos))
        .to_owned()
}

pub(super) fn batch_done_update(
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

pub(super) fn recon_insert(
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
pub(super) fn run_upsert(job: &str, now: &str, error: Option<&str>) -> InsertStatement {
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

pub(super) fn pending_batches_select(job: &str) -> SelectStatement {
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

/// The record counts of the job's calls still to send.
pub(super) fn pending_calls_select(job: &str) -> SelectStatement {
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
