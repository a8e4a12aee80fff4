//! The deliver stage: a job's calls leave in order (Cd_Batch, then call number) with their
//! stored bytes, up to `delivery.max_in_flight` of them waiting for their answers at once,
//! across consecutive batches. Accepted calls are acknowledged in groups, a refused call is
//! halved until its refused records are isolated (`split`), refusals that look like a
//! connection problem are held back by the safety valve, and batches close in Cd_Batch order.
//!
//! Order: a call goes out only when no RowGuid it carries is in a call still waiting for its
//! answer, and a call held back for that holds back the calls behind it (`order`), so two
//! changes of one row are never in flight together and a later one leaves only after the
//! platform answered the earlier one.
//!
//! Sends, splits and reconciliation uploads run as tasks of their own, and grouped acks,
//! receipts and the closing of batches go to one writer task in order (`write`), so answers
//! keep arriving and calls keep leaving while the database records what happened; only the
//! engine changes its state.

mod order;
mod record;
mod split;
mod write;

use anyhow::{Result, anyhow};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span, debug, info, info_span, warn};

use super::commit::Committed;
use super::{App, Outcome, Run, failpoint, reconcile, retry};
use crate::db::control::{BatchRow, Body, OutboxCall};
use crate::upstream::{Backoff, Receipt, SubmitError};
use order::Busy;
use record::Batch;
use split::{FirstAnswer, Split, Suspect, Verdict, split_call, verdict};
use write::{Finish, Write, Writer, Written};

/// Where the batches to deliver come from.
pub(super) enum Source {
    /// Batches a crash or a stop left pending, oldest first; their calls come from the outbox.
    Pending(Vec<BatchRow>),
    /// Batches the committer numbers and stores while delivery runs, handed over with their
    /// calls; the channel closes when the source is drained.
    Fresh(mpsc::Receiver<Committed>),
}

/// Delivers every batch of `source`. A fatal answer stops sending: the calls in flight are
/// answered and recorded, then the job's error is returned with the rest kept in the outbox.
/// On shutdown the same happens and the outcome is marked interrupted.
pub(super) async fn deliver(
    run: &Run<'_>,
    app: &Arc<App>,
    source: Source,
    out: &mut Outcome,
) -> Result<()> {
    Engine::new(run, app, source, out)?.drive().await
}

/// A call of an open batch: the batch's place in this delivery, the call's index in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    batch: u64,
    call: usize,
}

/// A batch taken up and not closed yet.
struct Open {
    seq: u64,
    b: BatchRow,
    /// The job had open error rows when the batch was taken up.
    resolve: bool,
    calls: Vec<Slot>,
    /// The calls before this one have gone out.
    next: usize,
    /// Accepted calls not recorded yet (see [`Engine::flush`]).
    acked: Vec<usize>,
    /// Calls neither acked nor recorded as refused yet (held-back refusals included).
    unsettled: usize,
    span: Span,
    opened: Instant,
}

/// One call of an open batch.
struct Slot {
    /// None while a split task has it.
    call: Option<OutboxCall>,
    /// What settled the call as a whole, for the safety valve.
    first: Option<FirstAnswer>,
    /// Waiting to be sent again after a temporary failure.
    resending: bool,
}

/// Why delivery stopped before the source was drained.
enum Stop {
    Shutdown,
    Failed(anyhow::Error),
}

/// What a task of the engine came back with.
enum Done {
    Sent {
        key: Key,
        posted: Result<Option<Receipt>, SubmitError>,
    },
    /// The wait before a resend was cut short: the job stops or the service shuts down.
    Halted(Key),
    Split {
        key: Key,
        call: OutboxCall,
        result: Result<Split>,
        out: Outcome,
    },
    Uploaded(Result<()>),
}

/// The engine's tasks and what they need, owned, since each runs on its own.
struct Tasks {
    app: Arc<App>,
    job: Arc<str>,
    url: Arc<str>,
    /// Cancelled when the job stops or the service shuts down: resend waits and splits end
    /// at their next step; a call already on the wire is answered.
    halt: CancellationToken,
    /// The run's lease: the tasks' writes are fenced like the run's own.
    fence: crate::db::lease::Fence,
    set: JoinSet<Done>,
}

impl Tasks {
    /// Sends a call's stored bytes once, after `wait` for a resend.
    fn send(&mut self, key: Key, body: Body, wait: Option<Duration>, span: Span) {
        let (app, job, url, halt) = self.parts();
        let task = async move {
            if let Some(wait) = wait {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = halt.cancelled() => return Done::Halted(key),
                }
            }
            let posted = match app.job(&job).and_then(|j| app.upstreams.for_job(j)) {
                Ok(upstream) => upstream.post(&url, body).await,
                Err(e) => Err(SubmitError::Fatal(format!("{e:#}"))),
            };
            Done::Sent { key, posted }
        };
        self.set.spawn(task.instrument(span));
    }

    /// Splits a refused call (see [`split_call`]); a finished split acks the call itself.
    fn split(&mut self, key: Key, mut call: OutboxCall, whole: Option<String>, at: SplitAt) {
        let (app, job, url, halt) = self.parts();
        let fence = self.fence.clone();
        let SplitAt { b, resolve, span } = at;
        let task = async move {
            let mut out = Outcome::default();
            let result = async {
                let run = Run::new(&app, app.job(&job)?, &halt, &fence)?;
                let batch = Batch {
                    run: &run,
                    b: &b,
                    url: &url,
                    resolve,
                };
                let d = &app.cfg.delivery;
                let mut backoff = Backoff::new(d.retry_initial(), d.retry_max());
                let split = split_call(&batch, &mut call, whole, &mut backoff, &mut out).await?;
                if matches!(split, Split::Done) {
                    batch.ack(&[&call], false).await?;
                }
                Ok(split)
            }
            .await;
            Done::Split {
                key,
                call,
                result,
                out,
            }
        };
        self.set.spawn(task.instrument(span));
    }

    /// Uploads the job's pending reconciliation rows, oldest Cd_Batch first.
    fn upload(&mut self) {
        let (app, job, _, halt) = self.parts();
        let fence = self.fence.clone();
        let task = async move {
            let result = async {
                let run = Run::new(&app, app.job(&job)?, &halt, &fence)?;
                reconcile::upload_pending(&run).await
            }
            .await;
            Done::Uploaded(result)
        };
        self.set.spawn(task.instrument(Span::current()));
    }

    fn parts(&self) -> (Arc<App>, Arc<str>, Arc<str>, CancellationToken) {
        (
            self.app.clone(),
            self.job.clone(),
            self.url.clone(),
            self.halt.clone(),
        )
    }
}

/// The batch a split task works in.
struct SplitAt {
    b: BatchRow,
    resolve: bool,
    span: Span,
}

/// The reconciliation upload beside the calls: one at a time, again when batches closed
/// while it ran.
#[derive(Default)]
struct Upload {
    running: bool,
    again: bool,
}

/// What the engine waited for.
enum Event {
    Shutdown,
    Done(Result<Done, tokio::task::JoinError>),
    Batch(Option<Committed>),
    Written(Written),
    /// Nothing to wait for (not reached: the loop ends first).
    Idle,
}

/// One job's delivery under way.
struct Engine<'r, 'o> {
    run: &'r Run<'r>,
    tasks: Tasks,
    pending: VecDeque<BatchRow>,
    fresh: Option<mpsc::Receiver<Committed>>,
    open: VecDeque<Open>,
    next_seq: u64,
    busy: Busy,
    /// Calls sent and not answered yet (waiting to be split included): at most `limit`.
    in_flight: usize,
    limit: usize,
    /// Calls waiting to be resent after a temporary failure: no new call goes out meanwhile.
    resending: usize,
    /// Calls refused as a whole, split one at a time in the job's order.
    to_split: BTreeMap<Key, Option<String>>,
    splitting: bool,
    /// Calls whose records were all refused alike, until the next call's answer decides.
    held: Vec<(Key, Suspect)>,
    backoff: Backoff,
    ack_every: usize,
    upload: Upload,
    /// Acks, receipts and closes, written in order behind the calls.
    writer: Writer,
    stop: Option<Stop>,
    /// Refusals were recorded in this delivery: later acks look for error rows to resolve.
    refused_any: bool,
    out: &'o mut Outcome,
}

impl<'r, 'o> Engine<'r, 'o> {
    fn new(run: &'r Run<'r>, app: &Arc<App>, source: Source, out: &'o mut Outcome) -> Result<Self> {
        let delivery = &app.cfg.delivery;
        let (pending, fresh) = match source {
            Source::Pending(p) => (p.into(), None),
            Source::Fresh(rx) => (VecDeque::new(), Some(rx)),
        };
        let tasks = Tasks {
            app: app.clone(),
            job: run.job.name.as_str().into(),
            fence: run.fence.clone(),
            url: run.upstream.call_url(run.dt)?.into(),
            halt: run.cancel.child_token(),
            set: JoinSet::new(),
        };
        let writer = Writer::start(
            app.clone(),
            tasks.job.clone(),
            tasks.url.clone(),
            run.fence.clone(),
        );
        Ok(Engine {
            run,
            tasks,
            pending,
            fresh,
            open: VecDeque::new(),
            next_seq: 0,
            busy: Busy::default(),
            in_flight: 0,
            limit: delivery.max_in_flight.max(1),
            resending: 0,
            to_split: BTreeMap::new(),
            splitting: false,
            held: Vec::new(),
            backoff: Backoff::new(delivery.retry_initial(), delivery.retry_max()),
            ack_every: delivery.ack_every_calls.max(1),
            upload: Upload::default(),
            writer,
            stop: None,
            refused_any: false,
            out,
        })
    }

    async fn drive(mut self) -> Result<()> {
        loop {
            if self.stop.is_none() && self.run.cancel.is_cancelled() {
                self.halt(Stop::Shutdown);
            }
            if self.stop.is_none()
                && let Err(e) = self.step().await
            {
                self.halt(Stop::Failed(e));
            }
            if self.tasks.set.is_empty() && self.writer.queued == 0 {
                if self.stop.is_some() || self.drained() {
                    break;
                }
                if !self.wants_batch() {
                    // Nothing under way and nothing to wait for: a bug, not a state to hang in.
                    let e = anyhow!("delivery has nothing left to wait for but is not done");
                    self.halt(Stop::Failed(e));
                    break;
                }
            }
            let want = self.wants_batch();
            let event = tokio::select! {
                biased;
                _ = self.run.cancel.cancelled(), if self.stop.is_none() => Event::Shutdown,
                Some(done) = self.tasks.set.join_next() => Event::Done(done),
                Some(w) = self.writer.rx.recv() => Event::Written(w),
                got = recv(&mut self.fresh), if want => Event::Batch(got),
                else => Event::Idle,
            };
            let step = match event {
                Event::Shutdown => {
                    self.halt(Stop::Shutdown);
                    Ok(())
                }
                Event::Done(Ok(done)) => self.handle(done).await,
                Event::Done(Err(e)) => Err(anyhow!("a delivery task failed: {e}")),
                Event::Batch(Some((b, calls))) => self.take_up(b, calls).await,
                Event::Batch(None) => {
                    self.fresh = None;
                    Ok(())
                }
                Event::Written(w) => self.written(w),
                Event::Idle => Err(anyhow!("delivery has nothing left to wait for")),
            };
            if let Err(e) = step {
                self.halt(Stop::Failed(e));
            }
        }
        self.wrap_up().await
    }

    /// Everything that follows from the answers so far: held-back refusals decided, the next
    /// split started, calls sent, finished batches closed.
    async fn step(&mut self) -> Result<()> {
        loop {
            self.weigh_suspects().await?;
            self.fill().await?;
            self.start_split().await?;
            // A closed batch makes room for the next pending one.
            if self.close_finished() == 0 {
                return Ok(());
            }
        }
    }

    /// Stops sending; the first failure is the one reported.
    fn halt(&mut self, why: Stop) {
        self.tasks.halt.cancel();
        match (&self.stop, why) {
            (None, why) => self.stop = Some(why),
            (Some(Stop::Shutdown), Stop::Failed(e)) => self.stop = Some(Stop::Failed(e)),
            (Some(Stop::Failed(_)), Stop::Failed(e)) => {
                warn!(error = %format!("{e:#}"), "another failure after the job stopped");
            }
            (Some(_), Stop::Shutdown) => {}
        }
    }

    fn drained(&self) -> bool {
        self.pending.is_empty() && self.fresh.is_none() && self.open.is_empty()
    }

    /// At most this many batches are open at once, so a batch that cannot close (a long
    /// split) does not let the ones after it pile up in memory.
    fn max_open(&self) -> usize {
        self.limit + 2
    }

    /// Whether a new batch from the committer would let a call go out now.
    fn wants_batch(&self) -> bool {
        self.stop.is_none()
            && self.fresh.is_some()
            && self.resending == 0
            && self.in_flight < self.limit
            && self.open.len() < self.max_open()
            && self.open.iter().all(|o| o.next == o.calls.len())
    }

    fn index(&self, key: Key) -> usize {
        (key.batch - self.open[0].seq) as usize
    }

    fn batch<'a>(&'a self, o: &'a Open) -> Batch<'a> {
        batch_of(self.run, &self.tasks.url, o, self.refused_any)
    }

    /// A pending batch: its unfinished calls are read back from the outbox.
    async fn take_up_pending(&mut self, b: BatchRow) -> Result<()> {
        info!(cd_batch = %b.cd_batch, records = b.record_count, "resending pending batch");
        let calls = self.run.app.db.outbox_pending(&b.cd_batch).await?;
        self.take_up(b, calls).await
    }

    async fn take_up(&mut self, b: BatchRow, calls: Vec<OutboxCall>) -> Result<()> {
        let resolve = self.run.app.db.has_open_errors(&self.run.job.name).await?;
        let span = info_span!("batch", job = %self.run.job.name, cd_batch = %b.cd_batch);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.open.push_back(Open {
            seq,
            b,
            resolve,
            unsettled: calls.len(),
            calls: calls
                .into_iter()
                .map(|c| Slot {
                    call: Some(c),
                    first: None,
                    resending: false,
                })
                .collect(),
            next: 0,
            acked: Vec::new(),
            span,
            opened: Instant::now(),
        });
        Ok(())
    }

    /// Sends calls in order while there is room, none waits to be resent, and the next
    /// call's rows are not under way.
    async fn fill(&mut self) -> Result<()> {
        while self.resending == 0
            && self.in_flight < self.limit
            && self.writer.groups < write::MAX_QUEUED
        {
            let Some(i) = self.open.iter().position(|o| o.next < o.calls.len()) else {
                if self.open.len() >= self.max_open() {
                    return Ok(());
                }
                let Some(b) = self.pending.pop_front() else {
                    return Ok(());
                };
                self.take_up_pending(b).await?;
                continue;
            };
            let o = &mut self.open[i];
            let ci = o.next;
            let key = Key {
                batch: o.seq,
                call: ci,
            };
            let slot = &mut o.calls[ci];
            let call = slot.call.as_ref().expect("a call not sent yet is here");
            if !self.busy.free(call) {
                // Held back, and the calls behind it with it: that keeps each row's order.
                return Ok(());
            }
            self.busy.take(call);
            self.in_flight += 1;
            o.next += 1;
            if !call.done.is_empty() {
                // A split the last run left unfinished: taken up where it stopped.
                slot.first = Some(FirstAnswer::Resumed);
                self.to_split.insert(key, None);
                continue;
            }
            let body = call.body.clone();
            self.tasks.send(key, body, None, o.span.clone());
        }
        Ok(())
    }

    async fn handle(&mut self, done: Done) -> Result<()> {
        match done {
            Done::Sent { key, posted } => self.answered(key, posted).await,
            Done::Halted(key) => {
                let i = self.index(key);
                if std::mem::take(&mut self.open[i].calls[key.call].resending) {
                    self.resending -= 1;
                }
                self.release(key);
                Ok(())
            }
            Done::Split {
                key,
                call,
                result,
                out,
            } => self.split_done(key, call, result, out),
            Done::Uploaded(result) => {
                self.upload.running = false;
                result?;
                if self.upload.again && self.stop.is_none() {
                    self.upload.again = false;
                    self.start_upload();
                }
                Ok(())
            }
        }
    }

    /// The answer to a call sent whole.
    async fn answered(
        &mut self,
        key: Key,
        posted: Result<Option<Receipt>, SubmitError>,
    ) -> Result<()> {
        let i = self.index(key);
        let slot = &mut self.open[i].calls[key.call];
        if slot.resending {
            slot.resending = false;
            self.resending -= 1;
        }
        let first = match &posted {
            Ok(_) => Some(FirstAnswer::Accepted),
            Err(SubmitError::Rejected(m)) => Some(FirstAnswer::Refused(m.clone())),
            Err(_) => None,
        };
        if slot.first.is_none() {
            slot.first = first;
        }
        let stopping = self.stop.is_some();
        match &posted {
            Err(SubmitError::Retryable(msg)) if !stopping => retry::failed(self.run, msg).await,
            Err(SubmitError::Retryable(_)) => {}
            _ => retry::answered(self.run).await,
        }
        match posted {
            Ok(receipt) => self.accepted(key, receipt).await,
            Err(SubmitError::Fatal(msg)) => {
                self.release(key);
                Err(self.run.stopped(&msg))
            }
            // The job stops: whatever else this call needs is left for the next run.
            Err(_) if stopping => {
                self.release(key);
                Ok(())
            }
            Err(SubmitError::Retryable(msg)) => {
                // Record progress before waiting: an outage can last long.
                self.flush_all();
                let wait = self.backoff.next_delay();
                let o = &mut self.open[i];
                warn!(parent: &o.span, error = %msg, retry_in_ms = wait.as_millis() as u64, "temporary failure, will resend the same call");
                let slot = &mut o.calls[key.call];
                slot.resending = true;
                self.resending += 1;
                let body = slot.call.as_ref().expect("held here").body.clone();
                self.tasks.send(key, body, Some(wait), o.span.clone());
                Ok(())
            }
            Err(SubmitError::Rejected(msg)) => self.refused(key, msg).await,
        }
    }

    async fn accepted(&mut self, key: Key, receipt: Option<Receipt>) -> Result<()> {
        let i = self.index(key);
        let o = &self.open[i];
        let call = o.calls[key.call].call.as_ref().expect("held here");
        let records = call.records.len();
        if let Some(receipt) = receipt {
            self.writer.queue(Write::Receipt {
                b: o.b.clone(),
                call_no: call.call_no,
                records,
                receipt,
            });
        }
        self.out.delivered += records;
        let o = &mut self.open[i];
        let call = o.calls[key.call].call.as_mut().expect("held here");
        self.busy.release(call);
        // Accepted: its bytes are not needed any more, only who was in it.
        call.body = Body::default();
        self.in_flight -= 1;
        o.unsettled -= 1;
        o.acked.push(key.call);
        // Counted over the open batches, so a crash resends at most `ack_every_calls`
        // accepted calls besides those on the wire.
        if self.open.iter().map(|o| o.acked.len()).sum::<usize>() >= self.ack_every {
            self.flush_all();
        }
        self.backoff.reset();
        if crate::failpoint::active("after-first-call") {
            // The test hook dies with what was decided written, as before the writer task.
            self.settle().await?;
        }
        failpoint("after-first-call");
        Ok(())
    }

    /// A call refused as a whole: one record is refused outright, more are split.
    async fn refused(&mut self, key: Key, msg: String) -> Result<()> {
        let i = self.index(key);
        let records = self.open[i].calls[key.call]
            .call
            .as_ref()
            .map_or(0, |c| c.records.len());
        info!(parent: &self.open[i].span, records, error = %msg, "call refused, splitting it to find the refused records");
        if records > 1 {
            self.to_split.insert(key, Some(msg));
            return Ok(());
        }
        // Error rows and acks are written in the order they were decided.
        self.settle().await?;
        let mut call = self.open[i].calls[key.call].call.take().expect("held here");
        call.done.insert(0, 'r');
        let o = &self.open[i];
        let at = self.batch(o);
        let recorded = async {
            at.refused(&call, &[0], &msg).await?;
            at.ack(&[&call], false).await
        }
        .await;
        self.busy.release(&call);
        self.open[i].calls[key.call].call = Some(call);
        recorded?;
        self.out.refused_by_platform += 1;
        self.refused_any = true;
        self.in_flight -= 1;
        self.open[i].unsettled -= 1;
        Ok(())
    }

    /// Starts splitting the earliest refused call, unless a split is under way. It waits until
    /// every earlier call of its batch has answered: answers come back in any order with
    /// several calls in flight, and the safety valve must judge the calls in their own order
    /// (a later call split first would be judged by no "next call" at all).
    async fn start_split(&mut self) -> Result<()> {
        if self.splitting {
            return Ok(());
        }
        let Some(&key) = self.to_split.keys().next() else {
            return Ok(());
        };
        let i = self.index(key);
        if self.open[i].calls[..key.call]
            .iter()
            .any(|s| s.first.is_none())
        {
            return Ok(());
        }
        // The split writes for itself: what was acked before it is recorded first.
        self.flush_all();
        self.settle().await?;
        let Some((key, whole)) = self.to_split.pop_first() else {
            return Ok(());
        };
        let i = self.index(key);
        let resolve = self.batch(&self.open[i]).resolve;
        let o = &mut self.open[i];
        let call = o.calls[key.call].call.take().expect("held here");
        let at = SplitAt {
            b: o.b.clone(),
            resolve,
            span: o.span.clone(),
        };
        self.splitting = true;
        self.tasks.split(key, call, whole, at);
        Ok(())
    }

    fn split_done(
        &mut self,
        key: Key,
        call: OutboxCall,
        result: Result<Split>,
        part: Outcome,
    ) -> Result<()> {
        self.splitting = false;
        if part.refused_by_platform > 0 {
            self.refused_any = true;
        }
        self.out.merge(part);
        let i = self.index(key);
        self.open[i].calls[key.call].call = Some(call);
        match result {
            Err(e) => {
                self.release(key);
                Err(e)
            }
            Ok(Split::Interrupted) => {
                self.release(key);
                Ok(())
            }
            Ok(Split::AllRefusedAlike(_)) if self.stop.is_some() => {
                self.release(key);
                Ok(())
            }
            Ok(split) => {
                self.release(key);
                match split {
                    Split::AllRefusedAlike(s) => {
                        // Answered, so later changes of its rows may go; recorded (or not)
                        // once the next call's answer is known.
                        warn!(parent: &self.open[i].span, records = s.refused.len(), error = %s.msg, "every record of the call was refused with the same answer; the next call decides whether that is about content");
                        self.held.push((key, s));
                    }
                    _ => self.open[i].unsettled -= 1,
                }
                Ok(())
            }
        }
    }

    /// A call leaves the calls under way: answered, or given up for this run (it stays
    /// pending in the outbox and the next run sends it again).
    fn release(&mut self, key: Key) {
        let i = self.index(key);
        if let Some(call) = &self.open[i].calls[key.call].call {
            self.busy.release(call);
        }
        self.in_flight -= 1;
    }

    /// Held-back refusals whose next call has answered: recorded, or the job stops.
    async fn weigh_suspects(&mut self) -> Result<()> {
        let mut k = 0;
        while k < self.held.len() {
            let (key, msg) = (self.held[k].0, &self.held[k].1.msg);
            let i = self.index(key);
            let o = &self.open[i];
            let next = o.calls.get(key.call + 1).map(|s| s.first.as_ref());
            match verdict(msg, next) {
                Verdict::Wait => k += 1,
                Verdict::Stop => {
                    let (key, s) = self.held.remove(k);
                    let call = o.calls[key.call].call.as_ref().expect("held here");
                    let setting = self.run.upstream.fatal_codes_setting();
                    return Err(s.stop(self.run.job, setting, call).into());
                }
                Verdict::Content => {
                    self.settle().await?;
                    let (key, s) = self.held.remove(k);
                    let mut call = self.open[i].calls[key.call].call.take().expect("held here");
                    let at = batch_of(self.run, &self.tasks.url, &self.open[i], self.refused_any);
                    let recorded = s.refuse(&at, &mut call, self.out).await;
                    self.open[i].calls[key.call].call = Some(call);
                    recorded?;
                    self.refused_any = true;
                    self.open[i].unsettled -= 1;
                }
            }
        }
        Ok(())
    }

    /// Closes the oldest batches whose calls are all settled, in Cd_Batch order: the closing
    /// goes to the writer, so the next batch's calls keep going out meanwhile.
    fn close_finished(&mut self) -> usize {
        let mut closed = 0;
        while let Some(o) = self.open.front() {
            if o.next < o.calls.len() || o.unsettled > 0 {
                break;
            }
            let upload = self
                .run
                .upstream
                .reconciliation()
                .is_some_and(|r| r.upload_each_batch());
            let resolve = self.batch(o).resolve;
            let mut o = self.open.pop_front().expect("checked above");
            let last = take_acked(&mut o);
            self.writer.queue(Write::Finish(Finish {
                b: o.b,
                last,
                resolve,
                upload,
                span: o.span,
                opened: o.opened,
            }));
            closed += 1;
        }
        closed
    }

    /// What the writer did: a closed batch is counted (and its reconciliation row uploaded),
    /// a failed write stops the job.
    fn written(&mut self, w: Written) -> Result<()> {
        self.writer.queued -= 1;
        match w {
            Written::Done => Ok(()),
            Written::Acked => {
                self.writer.groups -= 1;
                Ok(())
            }
            Written::Closed(closed) => {
                let write::Closed {
                    recon,
                    upload,
                    span,
                    opened,
                } = *closed;
                self.writer.groups -= 1;
                info!(parent: &span, delivered = recon.cd_count, "batch done");
                debug!(
                    parent: &span,
                    deliver_ms = opened.elapsed().as_millis() as u64,
                    "batch delivered"
                );
                self.out.batches.push(recon.cd_batch);
                if upload && self.stop.is_none() {
                    self.start_upload();
                }
                Ok(())
            }
            Written::Failed { group, error } => {
                if group {
                    self.writer.groups -= 1;
                }
                Err(error)
            }
        }
    }

    /// Waits until everything queued for the writer is written, and takes in what it did;
    /// for the writes the engine does itself, which must come after those.
    async fn settle(&mut self) -> Result<()> {
        let ok = self.writer.settle().await;
        let mut first = None;
        while let Ok(w) = self.writer.rx.try_recv() {
            if let Err(e) = self.written(w) {
                first.get_or_insert(e);
            }
        }
        match (first, ok) {
            (Some(e), _) => Err(e),
            (None, true) => Ok(()),
            (None, false) => Err(anyhow!("an earlier write of this delivery failed")),
        }
    }

    /// Uploads reconciliation rows beside the calls; one upload task at a time.
    fn start_upload(&mut self) {
        if self.upload.running {
            self.upload.again = true;
            return;
        }
        self.upload.running = true;
        self.tasks.upload();
    }

    /// Acknowledged calls are recorded together, one transaction per `ack_every_calls`, which
    /// keeps the database's commit rate off the hot path; a crash resends at most those calls
    /// and the groups still with the writer.
    fn flush(&mut self, i: usize) {
        if self.open[i].acked.is_empty() {
            return;
        }
        let resolve = self.batch(&self.open[i]).resolve;
        let o = &mut self.open[i];
        let calls = take_acked(o);
        self.writer.queue(Write::Ack {
            b: o.b.clone(),
            calls,
            resolve,
        });
    }

    fn flush_all(&mut self) {
        for i in 0..self.open.len() {
            self.flush(i);
        }
    }

    /// After a stop, the answers that came in are recorded; the rest stays in the outbox.
    async fn wrap_up(mut self) -> Result<()> {
        let Some(stop) = self.stop.take() else {
            debug_assert!(
                self.busy.is_empty() && self.in_flight == 0 && self.writer.queued == 0,
                "every call was answered and recorded"
            );
            return Ok(());
        };
        self.flush_all();
        let flushed = self.settle().await;
        match stop {
            Stop::Shutdown => {
                flushed?;
                self.out.interrupted = true;
                Ok(())
            }
            Stop::Failed(e) => {
                if let Err(f) = flushed {
                    warn!(error = %format!("{f:#}"), "could not record the last acknowledged calls");
                }
                Err(e)
            }
        }
    }
}

/// The accepted calls of a batch not recorded yet, taken from their slots for the writer
/// (their bodies are gone already; only who was in them is written).
fn take_acked(o: &mut Open) -> Vec<OutboxCall> {
    std::mem::take(&mut o.acked)
        .into_iter()
        .map(|ci| o.calls[ci].call.take().expect("acked calls stay here"))
        .collect()
}

/// How an open batch's calls are recorded. Accepted records resolve open error rows when the
/// job had some as the batch was taken up, or refusals were recorded since.
fn batch_of<'a>(run: &'a Run<'a>, url: &'a str, o: &'a Open, refused_any: bool) -> Batch<'a> {
    Batch {
        run,
        b: &o.b,
        url,
        resolve: o.resolve || refused_any,
    }
}

/// The committer's next batch; never ready once the channel is closed.
async fn recv(fresh: &mut Option<mpsc::Receiver<Committed>>) -> Option<Committed> {
    match fresh {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
