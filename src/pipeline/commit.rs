//! The commit stage: each checked page becomes an exchange, numbered (Cd_Batch) and stored in
//! the outbox as the exact call bodies that will be sent, together with its error rows and
//! the new source position, in one transaction.

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::read::Prepared;
use super::{Outcome, Run, failpoint};
use crate::config::Mode;
use crate::db::control::{BatchRow, NewBatch, OutboxCall, RecordMeta};
use crate::db::row_state::StateChanges;
use crate::upstream::CallRecords;

/// A batch committed to the outbox, handed from the committer to delivery.
pub(super) type Committed = (BatchRow, Vec<OutboxCall>);

/// Numbers and commits each checked page as an exchange, in order, handing each batch on.
pub(super) async fn commit_pages(
    run: &Run<'_>,
    mut pages: mpsc::Receiver<Prepared>,
    tx: mpsc::Sender<Committed>,
) -> Result<Outcome> {
    let mut out = Outcome::default();
    while let Some(mut prep) = pages.recv().await {
        if run.cancel.is_cancelled() {
            out.interrupted = true;
            break;
        }
        let t_commit = std::time::Instant::now();
        let state = match run.job.mode {
            Mode::Changelog => StateChanges::default(),
            Mode::Incremental => super::capture::settle_incremental(run, &mut prep).await?,
            Mode::Snapshot => std::mem::take(&mut prep.state),
        };
        // Test hook: a crash after the page's operations are settled, before they are stored.
        failpoint("before-capture-commit");
        let batch = commit_page(run, &prep, &state, crate::timefmt::now_beijing()).await?;
        debug!(
            commit_ms = t_commit.elapsed().as_millis() as u64,
            "exchange committed"
        );
        out.rows_read += prep.rows;
        out.invalid_rows += prep.errors.len();
        run.metrics.add_read(prep.rows, prep.errors.len());
        failpoint("after-outbox-commit");
        if let Some(batch) = batch
            && tx.send(batch).await.is_err()
        {
            // Delivery stopped (shutdown or a fatal answer): leave the rest for later.
            break;
        }
    }
    Ok(out)
}

/// Stores one page as an exchange: the batch (if any record is valid), its calls, the
/// error rows, the row states and the new position, in one transaction.
async fn commit_page(
    run: &Run<'_>,
    prep: &Prepared,
    state: &StateChanges,
    now: chrono::DateTime<chrono::FixedOffset>,
) -> Result<Option<Committed>> {
    let (app, job) = (run.app, run.job);
    let cd_time = crate::timefmt::fmt_spec(&now);
    let table = run.upstream.table_name(run.dt);
    let new_batch = (!prep.records.is_empty()).then(|| NewBatch {
        upstream: run.upstream.name(),
        data_type: &job.data_type,
        table_name: &table,
        unit_code: &app.cfg.unit.uscc,
        at: now,
    });
    let pos_json = serde_json::to_string(&prep.last).context("position")?;
    let build = |cd_batch: Option<&str>| match cd_batch {
        Some(cd_batch) => build_calls(run, prep, &cd_time, cd_batch),
        None => Ok(vec![]),
    };
    // Test hook: the process stops here, between reading and committing, as a paused one
    // would; the fencing test takes its lease meanwhile.
    crate::failpoint::stop("stop-before-outbox-commit");
    let committed = app
        .db
        .commit_exchange(run.fence, new_batch, build, &prep.errors, state, &pos_json)
        .await?;
    if !prep.errors.is_empty() {
        warn!(
            count = prep.errors.len(),
            "rows failed validation and were written to qz_error"
        );
    }
    let Some(id) = committed.cd_batch else {
        return Ok(None);
    };
    let b = BatchRow {
        cd_batch: id,
        exchange_no: Some(committed.exchange_no),
        data_type: job.data_type.clone(),
        table_name: table,
        record_count: committed.records as i64,
        cd_time,
        created_at: crate::timefmt::now_text(),
    };
    Ok(Some((b, committed.calls)))
}

/// The calls of a numbered batch: the records in order, at most the platform's limit per
/// call, each body encoded here so the outbox holds exactly the bytes sent.
fn build_calls(
    run: &Run<'_>,
    prep: &Prepared,
    cd_time: &str,
    cd_batch: &str,
) -> Result<Vec<OutboxCall>> {
    prep.records
        .chunks(run.upstream.records_per_call())
        .enumerate()
        .map(|(n, chunk)| {
            let records = CallRecords {
                fields: &prep.fields,
                records: chunk,
                cd_time,
                cd_batch,
            };
            Ok(OutboxCall {
                call_no: n as i64,
                body: run.upstream.encode(&records)?,
                records: chunk
                    .iter()
                    .map(|(op, rec)| RecordMeta {
                        source_key: rec.source_key.clone(),
                        row_guid: rec.row_guid.clone(),
                        operation: op.code().to_string(),
                    })
                    .collect(),
                done: Default::default(),
            })
        })
        .collect()
}
