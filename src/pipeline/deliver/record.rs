//! What delivery writes to the control tables, each through one `db::control` call: accepted
//! calls (grouped), split progress, refusals as error rows, the platform's receipts, and the
//! closing of a batch with its reconciliation row.

use anyhow::Result;
use tracing::debug;

use super::super::Run;
use crate::db::control::{BatchRow, OutboxCall, ReconRow};
use crate::upstream::{Receipt, SubmitError};

/// One batch as its calls are sent, split and settled.
pub(super) struct Batch<'a> {
    pub run: &'a Run<'a>,
    pub b: &'a BatchRow,
    pub url: &'a str,
    /// Whether accepted records also resolve the job's open error rows.
    pub resolve: bool,
}

impl Batch<'_> {
    pub async fn post(&self, body: String) -> Result<Option<Receipt>, SubmitError> {
        self.run.upstream.post(self.url, body).await
    }

    /// Records accepted calls; with `resolve`, error rows they answer are resolved too.
    pub async fn ack(&self, calls: &[&OutboxCall], resolve: bool) -> Result<()> {
        let db = &self.run.app.db;
        db.ack_calls(self.run.fence, self.b, calls, resolve).await
    }

    /// Records that some records of a split call were accepted.
    pub async fn accepted(&self, call: &OutboxCall, part: &[usize]) -> Result<()> {
        let db = &self.run.app.db;
        db.record_split_progress(self.run.fence, self.b, call, part, None, self.resolve)
            .await
    }

    /// Records that some records of a call were refused, as error rows with the answer.
    pub async fn refused(&self, call: &OutboxCall, part: &[usize], msg: &str) -> Result<()> {
        let why = format!("平台拒收：{msg}");
        let db = &self.run.app.db;
        db.record_split_progress(self.run.fence, self.b, call, part, Some(&why), false)
            .await
    }

    /// Keeps the platform's own batch number of an accepted call (Gansu answers with one).
    pub async fn note_receipt(&self, call_no: i64, records: usize, r: Receipt) -> Result<()> {
        debug!(platform_batch_num = %r.batch_num, "call accepted");
        let db = &self.run.app.db;
        db.record_receipt(
            self.run.fence,
            &self.b.cd_batch,
            call_no,
            records,
            &r.batch_num,
            &r.id,
        )
        .await
    }

    /// Closes the batch once every call is settled: the last acks and the closing share one
    /// transaction, which also writes the reconciliation row (`upload_state`).
    pub async fn finish(&self, last_acks: &[&OutboxCall], upload_state: &str) -> Result<ReconRow> {
        let db = &self.run.app.db;
        db.finish_batch(
            self.run.fence,
            self.b,
            last_acks,
            self.resolve,
            upload_state,
        )
        .await
    }
}
