//! The reconcile stage: a finished batch's reconciliation row (Table_name, Cd_batch, Cd_count,
//! Cd_time) uploaded when the job's platform has such a call (GDZW 7.9; Gansu has none).

use anyhow::Result;
use tracing::warn;

use super::{JobStopped, Run};
use crate::db::control::ReconRow;
use crate::upstream::{Reconciliation, SubmitError};

/// Reconciliation uploads are best effort per run: a temporary failure leaves the row pending
/// for the next run without holding back deliveries, and a content refusal marks it failed.
/// A fatal answer (credentials, address) also leaves it pending, and stops the job as a data
/// call's would: the upload goes out once the cause is fixed.
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
    for r in pending {
        if !upload_one(run, upload, &r).await? {
            return Ok(());
        }
    }
    Ok(())
}

/// Uploads one row and records how it went; false when the rest must wait for the next run.
async fn upload_one(run: &Run<'_>, upload: &dyn Reconciliation, r: &ReconRow) -> Result<bool> {
    let db = &run.app.db;
    let (state, msg) = match upload.upload(r).await {
        Ok(()) => ("ok", String::new()),
        Err(SubmitError::Retryable(m)) => {
            warn!(cd_batch = %r.cd_batch, error = %m, "reconciliation upload failed, will retry next run");
            let _ = db
                .set_reconciliation_upload(run.fence, &r.cd_batch, "pending", &m)
                .await;
            return Ok(false);
        }
        Err(SubmitError::Fatal(m)) => {
            let _ = db
                .set_reconciliation_upload(
                    run.fence,
                    &r.cd_batch,
                    "pending",
                    &format!("fatal: {m}"),
                )
                .await;
            return Err(JobStopped(format!(
                "job {} stopped, its reconciliation upload of {} is kept pending: {m}",
                run.job.name, r.cd_batch
            ))
            .into());
        }
        Err(e @ SubmitError::Rejected(_)) => ("failed", e.to_string()),
    };
    if state == "failed" {
        warn!(cd_batch = %r.cd_batch, error = %msg, "reconciliation upload refused");
    }
    if let Err(e) = db
        .set_reconciliation_upload(run.fence, &r.cd_batch, state, &msg)
        .await
    {
        warn!(error = %e, "cannot record the reconciliation upload");
    }
    Ok(true)
}
