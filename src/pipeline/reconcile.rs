//! The reconcile stage: a finished batch's reconciliation row (Table_name, Cd_batch, Cd_count,
//! Cd_time) uploaded when the job's platform has such a call (GDZW 7.9; Gansu has none).

use anyhow::Result;
use tracing::warn;

use super::{JobStopped, Run};
use crate::db::control::ReconRow;
use crate::upstream::{Reconciliation, SubmitError};

/// Reconciliation uploads are best effort per run: a temporary failure leaves the rows pending
/// for the next run without holding back deliveries, and a content refusal marks them failed.
/// A fatal answer (credentials, address) also leaves them pending, and stops the job as a data
/// call's would: the upload goes out once the cause is fixed.
///
/// The pending rows go up to `rows_per_call` in one call (GDZW 7.9 batchSave), so finished
/// batches do not wait for one round trip each on a slow network. A refused call of several
/// rows is sent again row by row, so only the row the platform refuses is marked failed.
pub(super) async fn upload_pending(run: &Run<'_>) -> Result<()> {
    let Some(upload) = run.upstream.reconciliation() else {
        return Ok(());
    };
    let pending = match run.app.db.pending_reconciliations(&run.job.name).await {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "cannot read pending reconciliation rows");
            return Ok(());
        }
    };
    for rows in pending.chunks(upload.rows_per_call()) {
        match upload_rows(run, upload, rows).await? {
            Uploaded::Settled => {}
            // Only a call of several rows comes back refused (one row is marked failed):
            // each goes again alone, so only the refused one fails.
            Uploaded::Refused => {
                for row in rows {
                    if upload_rows(run, upload, std::slice::from_ref(row)).await? == Uploaded::Wait
                    {
                        return Ok(());
                    }
                }
            }
            Uploaded::Wait => return Ok(()),
        }
    }
    Ok(())
}

/// How one upload call went, once recorded.
#[derive(Debug, PartialEq, Eq)]
enum Uploaded {
    /// Taken (recorded ok), or refused as a single row (recorded failed).
    Settled,
    /// Several rows refused together: not recorded, each is to be sent alone.
    Refused,
    /// A temporary failure: recorded, and the rest waits for the next run.
    Wait,
}

/// Uploads some rows in one call and records how it went.
async fn upload_rows(
    run: &Run<'_>,
    upload: &dyn Reconciliation,
    rows: &[ReconRow],
) -> Result<Uploaded> {
    let db = &run.app.db;
    let batches: Vec<&str> = rows.iter().map(|r| r.cd_batch.as_str()).collect();
    let first = batches.first().copied().unwrap_or_default();
    let (state, msg) = match upload.upload(rows).await {
        Ok(()) => ("ok", String::new()),
        Err(SubmitError::Retryable(m)) => {
            warn!(cd_batch = %first, rows = rows.len(), error = %m, "reconciliation upload failed, will retry next run");
            let _ = db
                .set_reconciliation_upload(run.fence, &batches, "pending", &m)
                .await;
            return Ok(Uploaded::Wait);
        }
        Err(SubmitError::Fatal(m)) => {
            let _ = db
                .set_reconciliation_upload(run.fence, &batches, "pending", &format!("fatal: {m}"))
                .await;
            return Err(JobStopped(format!(
                "job {} stopped, its reconciliation upload of {first} is kept pending: {m}",
                run.job.name
            ))
            .into());
        }
        Err(SubmitError::Rejected(_)) if rows.len() > 1 => return Ok(Uploaded::Refused),
        Err(e @ SubmitError::Rejected(_)) => ("failed", e.to_string()),
    };
    if state == "failed" {
        warn!(cd_batch = %first, error = %msg, "reconciliation upload refused");
    }
    if let Err(e) = db
        .set_reconciliation_upload(run.fence, &batches, state, &msg)
        .await
    {
        warn!(error = %e, "cannot record the reconciliation upload");
    }
    Ok(Uploaded::Settled)
}
