//! A job's retry streak: its calls fail temporarily (network, timeout, 5xx) and are resent.
//! Each failure updates the job's metrics (`/metrics`, `/healthz`, `STATUS=`) and qz_cursor
//! (so `qianzhi status` in another process shows "retrying since … because …"); the first
//! answer from the platform ends the streak. When no streak is open, ending it costs one
//! atomic load: accepted calls pay nothing more.

use tracing::warn;

use super::Run;
use crate::db::ops::RetryNote;
use crate::timefmt::fmt_spec;

/// A temporary failure of `run`'s job with this (masked) error chain.
pub(super) async fn failed(run: &Run<'_>, cause: &str) {
    let streak = run
        .metrics
        .retry_failed(crate::timefmt::now_beijing(), cause);
    let (since, last) = (fmt_spec(&streak.since), fmt_spec(&streak.last));
    let note = RetryNote {
        since: &since,
        last: &last,
        failures: i64::try_from(streak.failures).unwrap_or(i64::MAX),
        cause,
    };
    if let Err(e) = run.app.db.record_retry(&run.job.name, &note).await {
        // Delivery goes on: the record is for the operator, the outbox is what matters.
        warn!(error = %format!("{e:#}"), "could not record the retry state in qz_cursor");
    }
}

/// The platform answered (accepted or refused): an open streak is over.
pub(super) async fn answered(run: &Run<'_>) {
    if !run.metrics.retry_ended() {
        return;
    }
    if let Err(e) = run.app.db.clear_retry(&run.job.name).await {
        warn!(error = %format!("{e:#}"), "could not clear the retry state in qz_cursor");
    }
}
