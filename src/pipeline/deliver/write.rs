//! The engine's writes behind the calls: grouped acks, the platform's receipts and the closing
//! of batches go to one writer task that runs them in the order the engine queued them, so the
//! engine keeps the wire full while a batch is closed (qz_batch, reconciliation row, outbox
//! delete) instead of waiting for each transaction. One writer keeps the order every write
//! relies on: a batch's acks and receipts before its close, batches closed in Cd_Batch order.

use anyhow::Result;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};

use super::super::{App, Run, failpoint};
use super::record::Batch;
use crate::db::control::{BatchRow, OutboxCall, ReconRow};
use crate::db::lease::Fence;
use crate::upstream::Receipt;

/// At most this many groups of acks (an `Ack` or a `Finish`) wait for the writer; beyond that
/// no new call goes out, so a crash resends a bounded number of accepted calls even when the
/// database is slower than the wire.
pub(super) const MAX_QUEUED: usize = 3;

/// One write, with what it needs owned (the engine goes on meanwhile).
pub(super) enum Write {
    /// Accepted calls of a batch, recorded together (`ack_every_calls`).
    Ack {
        b: BatchRow,
        calls: Vec<OutboxCall>,
        resolve: bool,
    },
    /// The platform's own batch number of an accepted call (Gansu).
    Receipt {
        b: BatchRow,
        call_no: i64,
        records: usize,
        receipt: Receipt,
    },
    /// Every call of the batch is settled: its last acks and its closing, in one transaction.
    Finish(Finish),
}

pub(super) struct Finish {
    pub b: BatchRow,
    pub last: Vec<OutboxCall>,
    pub resolve: bool,
    pub upload: bool,
    pub span: Span,
    pub opened: Instant,
}

/// A closed batch (`upload`: its reconciliation row waits for the upload).
pub(super) struct Closed {
    pub recon: ReconRow,
    pub upload: bool,
    pub span: Span,
    pub opened: Instant,
}

/// What the writer reports back.
pub(super) enum Written {
    /// A receipt is written.
    Done,
    /// A group of acks is written.
    Acked,
    /// A batch is closed; its reconciliation row is written.
    Closed(Box<Closed>),
    /// A write failed: nothing queued after it is written, the engine stops the job.
    Failed { group: bool, error: anyhow::Error },
}

enum Job {
    Write(Box<Write>),
    /// Answered once every write queued before it is done (false: one of them failed).
    Barrier(oneshot::Sender<bool>),
}

/// The engine's end of the writer: queue writes, wait for them, read what they did.
pub(super) struct Writer {
    tx: Option<mpsc::UnboundedSender<Job>>,
    pub rx: mpsc::UnboundedReceiver<Written>,
    /// Writes queued and not reported back yet.
    pub queued: usize,
    /// Of those, the groups of acks (`Ack`, `Finish`): see [`MAX_QUEUED`].
    pub groups: usize,
}

impl Writer {
    /// Starts the writer task of a job's delivery; its writes are fenced by the run's lease
    /// and are not cut short by a stop (what was decided is recorded).
    pub fn start(app: Arc<App>, job: Arc<str>, url: Arc<str>, fence: Fence) -> Writer {
        let (tx, mut jobs) = mpsc::unbounded_channel::<Job>();
        let (done_tx, rx) = mpsc::unbounded_channel();
        let task = async move {
            let cancel = CancellationToken::new();
            let run = app
                .job(&job)
                .and_then(|j| Run::new(&app, j, &cancel, &fence));
            let mut failed = false;
            while let Some(j) = jobs.recv().await {
                let w = match j {
                    Job::Barrier(reply) => {
                        let _ = reply.send(!failed && run.is_ok());
                        continue;
                    }
                    Job::Write(w) => *w,
                };
                let group = !matches!(w, Write::Receipt { .. });
                let run = match (&run, failed) {
                    (Ok(run), false) => run,
                    (_, true) => {
                        // Reported so the engine's counts stay right; the job stops anyway.
                        let _ = done_tx.send(if group { Written::Acked } else { Written::Done });
                        continue;
                    }
                    (Err(e), false) => {
                        failed = true;
                        let error = anyhow::anyhow!("the delivery writer cannot start: {e:#}");
                        let _ = done_tx.send(Written::Failed { group, error });
                        continue;
                    }
                };
                let written = match write(run, &url, w).await {
                    Ok(w) => w,
                    Err(error) => {
                        failed = true;
                        Written::Failed { group, error }
                    }
                };
                let _ = done_tx.send(written);
            }
        };
        tokio::spawn(task.instrument(Span::current()));
        Writer {
            tx: Some(tx),
            rx,
            queued: 0,
            groups: 0,
        }
    }

    pub fn queue(&mut self, w: Write) {
        self.queued += 1;
        if !matches!(w, Write::Receipt { .. }) {
            self.groups += 1;
        }
        if let Some(tx) = &self.tx {
            // The writer ends only when this end is dropped.
            let _ = tx.send(Job::Write(Box::new(w)));
        }
    }

    /// Waits until every write queued so far is done; false when one of them failed (its
    /// error comes through `rx`).
    pub async fn settle(&self) -> bool {
        let (reply, done) = oneshot::channel();
        let Some(tx) = &self.tx else {
            return false;
        };
        if tx.send(Job::Barrier(reply)).is_err() {
            return false;
        }
        done.await.unwrap_or(false)
    }
}

async fn write(run: &Run<'_>, url: &str, w: Write) -> Result<Written> {
    match w {
        Write::Ack { b, calls, resolve } => {
            let refs: Vec<&OutboxCall> = calls.iter().collect();
            at(run, url, &b, resolve).ack(&refs, resolve).await?;
            Ok(Written::Acked)
        }
        Write::Receipt {
            b,
            call_no,
            records,
            receipt,
        } => {
            at(run, url, &b, false)
                .note_receipt(call_no, records, receipt)
                .await?;
            Ok(Written::Done)
        }
        Write::Finish(f) => {
            // Test hook: the process dies with the close queued, the next batch's calls out.
            failpoint("before-batch-close");
            let state = if f.upload { "pending" } else { "off" };
            let refs: Vec<&OutboxCall> = f.last.iter().collect();
            let recon = at(run, url, &f.b, f.resolve)
                .finish(&refs, state)
                .instrument(f.span.clone())
                .await?;
            Ok(Written::Closed(Box::new(Closed {
                recon,
                upload: f.upload,
                span: f.span,
                opened: f.opened,
            })))
        }
    }
}

fn at<'a>(run: &'a Run<'a>, url: &'a str, b: &'a BatchRow, resolve: bool) -> Batch<'a> {
    Batch {
        run,
        b,
        url,
        resolve,
    }
}
