//! The deliver stage: a batch's calls are sent in order with their stored bytes, accepted
//! calls acknowledged in groups, a refused call halved until its refused records are
//! isolated (each step recorded, so a restart neither loses nor repeats an error row), and
//! refusals that look like a connection problem held back by the safety valve (`Suspect`).

use anyhow::Result;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tracing::{Instrument, debug, info, info_span, warn};

use super::{JobStopped, Outcome, Run, failpoint, reconcile, retry};
use crate::config::JobConfig;
use crate::db::control::{BatchRow, OutboxCall};
use crate::upstream::{Backoff, Receipt, SubmitError};

/// Sends a batch's pending calls: those just committed (`fresh`), else those the outbox
/// still holds.
pub(super) async fn deliver(
    run: &Run<'_>,
    b: &BatchRow,
    fresh: Option<Vec<OutboxCall>>,
    out: &mut Outcome,
) -> Result<()> {
    let span = info_span!("batch", job = %run.job.name, cd_batch = %b.cd_batch);
    async {
        let t_deliver = Instant::now();
        let mut d = Delivery::start(run, b, fresh, out).await?;
        for ci in 0..d.calls.len() {
            let flow = if d.calls[ci].done.is_empty() {
                d.send(ci).await?
            } else {
                d.resume_split(ci).await?
            };
            if flow == Flow::Stop {
                return Ok(());
            }
        }
        d.finish(t_deliver).await
    }
    .instrument(span)
    .await
}

/// What one batch's calls are sent with, shared by the steps that send, split and settle them.
struct Batch<'a> {
    run: &'a Run<'a>,
    b: &'a BatchRow,
    url: String,
    /// Whether accepted records also resolve the job's open error rows.
    resolve: bool,
}

impl Batch<'_> {
    async fn post(&self, body: String) -> Result<Option<Receipt>, SubmitError> {
        self.run.upstream.post(&self.url, body).await
    }

    /// Records accepted calls; with `resolve`, error rows they answer are resolved too.
    async fn ack(&self, calls: &[&OutboxCall], resolve: bool) -> Result<()> {
        let db = &self.run.app.db;
        db.ack_calls(self.run.fence, self.b, calls, resolve).await
    }

    /// Records that some records of a split call were accepted.
    async fn accepted(&self, call: &OutboxCall, part: &[usize]) -> Result<()> {
        let db = &self.run.app.db;
        db.record_split_progress(self.run.fence, self.b, call, part, None, self.resolve)
            .await
    }

    /// Records that some records of a call were refused, as error rows with the answer.
    async fn refused(&self, call: &OutboxCall, part: &[usize], msg: &str) -> Result<()> {
        let why = format!("平台拒收：{msg}");
        let db = &self.run.app.db;
        db.record_split_progress(self.run.fence, self.b, call, part, Some(&why), false)
            .await
    }

    /// Keeps the platform's own batch number of an accepted call (Gansu answers with one).
    async fn note_receipt(
        &self,
        call: &OutboxCall,
        records: usize,
        receipt: Option<Receipt>,
    ) -> Result<()> {
        let Some(r) = receipt else {
            return Ok(());
        };
        debug!(platform_batch_num = %r.batch_num, "call accepted");
        let db = &self.run.app.db;
        db.record_receipt(
            self.run.fence,
            &self.b.cd_batch,
            call.call_no,
            records,
            &r.batch_num,
            &r.id,
        )
        .await
    }
}

/// Whether delivery goes on with the batch's next call or stops here (shutdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Next,
    Stop,
}

/// One batch's delivery under way.
struct Delivery<'a, 'o> {
    at: Batch<'a>,
    calls: Vec<OutboxCall>,
    backoff: Backoff,
    ack_every: usize,
    /// Accepted calls not recorded yet (see [`Delivery::flush_acks`]).
    acked: Vec<usize>,
    /// A call whose records were all refused with one and the same answer: held back until
    /// the next call shows whether the answer is about content or about the connection.
    suspect: Option<Suspect>,
    post_time: Duration,
    out: &'o mut Outcome,
}

impl<'a, 'o> Delivery<'a, 'o> {
    async fn start(
        run: &'a Run<'a>,
        b: &'a BatchRow,
        fresh: Option<Vec<OutboxCall>>,
        out: &'o mut Outcome,
    ) -> Result<Self> {
        let (app, job) = (run.app, run.job);
        let url = run.upstream.call_url(run.dt)?;
        // A batch just committed is delivered from memory; a pending one from the outbox.
        let calls = match fresh {
            Some(c) => c,
            None => app.db.outbox_pending(&b.cd_batch).await?,
        };
        let resolve = app.db.has_open_errors(&job.name).await?;
        let delivery = &app.cfg.delivery;
        Ok(Delivery {
            at: Batch {
                run,
                b,
                url,
                resolve,
            },
            calls,
            backoff: Backoff::new(delivery.retry_initial(), delivery.retry_max()),
            ack_every: delivery.ack_every_calls.max(1),
            acked: Vec::new(),
            suspect: None,
            post_time: Duration::ZERO,
            out,
        })
    }

    /// Acknowledged calls are recorded together, one transaction per `ack_every_calls`, which
    /// keeps the database's commit rate off the hot path; a crash resends at most those calls.
    async fn flush_acks(&mut self) -> Result<()> {
        let done: Vec<&OutboxCall> = self.acked.iter().map(|i| &self.calls[*i]).collect();
        self.acked.clear();
        self.at.ack(&done, self.at.resolve).await
    }

    /// Sends call `ci` until it is accepted, refused (and split) or the job must stop.
    async fn send(&mut self, ci: usize) -> Result<Flow> {
        loop {
            if self.at.run.cancel.is_cancelled() {
                self.flush_acks().await?;
                self.out.interrupted = true;
                return Ok(Flow::Stop);
            }
            let t_post = Instant::now();
            let posted = self.at.post(self.calls[ci].body.clone()).await;
            self.post_time += t_post.elapsed();
            if !matches!(posted, Err(SubmitError::Retryable(_))) {
                retry::answered(self.at.run).await;
            }
            self.weigh_suspect(&posted).await?;
            match posted {
                Ok(receipt) => {
                    self.accepted(ci, receipt).await?;
                    return Ok(Flow::Next);
                }
                Err(SubmitError::Retryable(msg)) => {
                    // Record progress before waiting: an outage can last long.
                    self.flush_acks().await?;
                    if !wait_to_retry(self.at.run, &mut self.backoff, &msg).await {
                        self.out.interrupted = true;
                        return Ok(Flow::Stop);
                    }
                }
                Err(SubmitError::Rejected(msg)) => {
                    self.flush_acks().await?;
                    return self.refused(ci, msg).await;
                }
                Err(SubmitError::Fatal(msg)) => {
                    self.flush_acks().await?;
                    return Err(self.at.run.stopped(&msg));
                }
            }
        }
    }

    /// The answer to the call after a suspect one settles it: the same refusal again stops
    /// the job (see [`Suspect::stop`]); an acceptance or another refusal shows the held-back
    /// refusals were about content. A temporary failure or a fatal answer settles nothing.
    async fn weigh_suspect(&mut self, posted: &Result<Option<Receipt>, SubmitError>) -> Result<()> {
        let same = match (&self.suspect, posted) {
            (Some(s), Err(SubmitError::Rejected(m))) => *m == s.msg,
            (Some(_), Ok(_)) => false,
            _ => return Ok(()),
        };
        if same {
            self.flush_acks().await?;
            let s = self.suspect.as_ref().expect("checked above");
            return Err(s
                .stop(
                    self.at.run.job,
                    self.at.run.upstream.fatal_codes_setting(),
                    &self.calls[s.call],
                )
                .into());
        }
        let s = self.suspect.take().expect("checked above");
        s.refuse(&self.at, &mut self.calls, self.out).await
    }

    async fn accepted(&mut self, ci: usize, receipt: Option<Receipt>) -> Result<()> {
        let records = self.calls[ci].records.len();
        self.at
            .note_receipt(&self.calls[ci], records, receipt)
            .await?;
        self.out.delivered += records;
        self.acked.push(ci);
        if self.acked.len() >= self.ack_every {
            self.flush_acks().await?;
        }
        self.backoff.reset();
        failpoint("after-first-call");
        Ok(())
    }

    /// Call `ci` was refused as a whole: one record is refused outright, more are split.
    async fn refused(&mut self, ci: usize, msg: String) -> Result<Flow> {
        let records = self.calls[ci].records.len();
        info!(records, error = %msg, "call refused, splitting it to find the refused records");
        if records == 1 {
            self.calls[ci].done.insert(0, 'r');
            self.at.refused(&self.calls[ci], &[0], &msg).await?;
            self.out.refused_by_platform += 1;
            self.at.ack(&[&self.calls[ci]], false).await?;
            return Ok(Flow::Next);
        }
        let at = &self.at;
        match split_call(
            at,
            &mut self.calls[ci],
            Some(msg),
            &mut self.backoff,
            self.out,
        )
        .await?
        {
            Split::Done => at.ack(&[&self.calls[ci]], false).await?,
            Split::Interrupted => return Ok(Flow::Stop),
            Split::AllRefusedAlike(msg, refused) => {
                warn!(records = refused.len(), error = %msg, "every record of the call was refused with the same answer; the next call decides whether that is about content");
                self.suspect = Some(Suspect {
                    call: ci,
                    msg,
                    refused,
                });
            }
        }
        Ok(Flow::Next)
    }

    /// A split was under way when the last run stopped: finish it.
    async fn resume_split(&mut self, ci: usize) -> Result<Flow> {
        self.flush_acks().await?;
        let at = &self.at;
        if let Some(s) = self.suspect.take() {
            s.refuse(at, &mut self.calls, self.out).await?;
        }
        match split_call(at, &mut self.calls[ci], None, &mut self.backoff, self.out).await? {
            Split::Done => at.ack(&[&self.calls[ci]], false).await?,
            Split::Interrupted => return Ok(Flow::Stop),
            // Not reached (a resumed split holds nothing back); if it were, the refusals stand.
            Split::AllRefusedAlike(msg, refused) => {
                let s = Suspect {
                    call: ci,
                    msg,
                    refused,
                };
                s.refuse(at, &mut self.calls, self.out).await?
            }
        }
        Ok(Flow::Next)
    }

    /// Closes the batch once every call is settled, and uploads its reconciliation if the
    /// platform wants one per batch.
    async fn finish(mut self, t_deliver: Instant) -> Result<()> {
        // The batch's last call has no next call to compare with: its refusals stand.
        if let Some(s) = self.suspect.take() {
            s.refuse(&self.at, &mut self.calls, self.out).await?;
        }
        let (run, b) = (self.at.run, self.at.b);
        let upload = run
            .upstream
            .reconciliation()
            .is_some_and(|r| r.upload_each_batch());
        let state = if upload { "pending" } else { "off" };
        // The last acks and the batch's closing share one transaction.
        let last_acks: Vec<&OutboxCall> = self.acked.iter().map(|i| &self.calls[*i]).collect();
        let db = &run.app.db;
        let recon = db
            .finish_batch(run.fence, b, &last_acks, self.at.resolve, state)
            .await?;
        self.out.batches.push(b.cd_batch.clone());
        info!(delivered = recon.cd_count, "batch done");
        debug!(
            deliver_ms = t_deliver.elapsed().as_millis() as u64,
            post_ms = self.post_time.as_millis() as u64,
            "batch delivered"
        );
        if upload {
            reconcile::upload_pending(run).await?;
        }
        Ok(())
    }
}

/// Records the failure (metrics, qz_cursor) and sleeps before a retry; false when shutdown
/// came first.
async fn wait_to_retry(run: &Run<'_>, backoff: &mut Backoff, msg: &str) -> bool {
    let (wait, cancel) = (backoff.next_delay(), run.cancel);
    warn!(error = %msg, retry_in_ms = wait.as_millis() as u64, "temporary failure, will resend the same call");
    retry::failed(run, msg).await;
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = cancel.cancelled() => false,
    }
}

/// How splitting a refused call ended.
enum Split {
    /// Every record is acked or recorded as refused.
    Done,
    /// Shutdown came first; the progress so far is recorded.
    Interrupted,
    /// Nothing was accepted and every record was refused alone with this same answer.
    /// Nothing is recorded yet: these indexes are refused only if the next call shows that
    /// the answer is about content.
    AllRefusedAlike(String, Vec<usize>),
}

/// A call whose records were all refused with one answer, held back (not recorded, not acked).
struct Suspect {
    call: usize,
    msg: String,
    refused: Vec<usize>,
}

impl Suspect {
    /// The next call was refused with the same answer before anyone looked at its records:
    /// a wrong token or gateway setting answered in-band, not bad content. Nothing of either
    /// call is recorded, so both are resent once the cause is fixed.
    fn stop(&self, job: &JobConfig, setting: &str, call: &OutboxCall) -> JobStopped {
        JobStopped(format!(
            "job {} stopped, its outbox is kept for resending: all {} records of call {} were \
             refused one by one with the same answer and the next call was refused with it too, \
             so the answer is not about their content (a wrong token or gateway setting?): {}. \
             Nothing was recorded as refused. If this errCode always means a configuration \
             problem, list it in {}. \
             (作业已停止，待发箱保留：一次提交的全部记录逐条被拒且答复相同，下一次提交也得到同样答复，\
             说明与数据内容无关，请检查令牌或网关设置；没有任何记录被记为拒收。)",
            job.name,
            self.refused.len(),
            call.call_no,
            self.msg,
            setting
        ))
    }

    /// The next call was answered differently, so the refusals were about content after all:
    /// record them as error rows and close the call.
    async fn refuse(
        self,
        at: &Batch<'_>,
        calls: &mut [OutboxCall],
        out: &mut Outcome,
    ) -> Result<()> {
        let call = &mut calls[self.call];
        self.record(at, call, out).await?;
        at.ack(&[&*call], false).await
    }

    /// Writes held-back refusals as error rows (in a split, the call is acked later as a whole).
    async fn record(&self, at: &Batch<'_>, call: &mut OutboxCall, out: &mut Outcome) -> Result<()> {
        if self.refused.is_empty() {
            return Ok(());
        }
        for i in &self.refused {
            warn!(row_guid = %call.records[*i].row_guid, error = %self.msg, "record refused by the platform");
            call.done.insert(*i, 'r');
        }
        at.refused(call, &self.refused, &self.msg).await?;
        out.refused_by_platform += self.refused.len();
        Ok(())
    }
}

/// Halves a refused call until every record is acked or refused alone. Each record's
/// bytes are taken from the stored body unchanged. `whole` is the answer that refused the
/// whole call (None when resuming a split): while nothing is accepted and every answer is
/// that same one, single refusals are held back for the safety valve (see `Split`).
async fn split_call(
    at: &Batch<'_>,
    call: &mut OutboxCall,
    whole: Option<String>,
    backoff: &mut Backoff,
    out: &mut Outcome,
) -> Result<Split> {
    let upstream = at.run.upstream;
    let raw = upstream.split(&call.body)?;
    let mut queue = first_halves(raw.len(), call);
    // Refusals held back while every answer so far is `whole` and nothing was accepted.
    let mut alike: Option<Suspect> = whole.map(|msg| Suspect {
        call: 0,
        msg,
        refused: Vec::new(),
    });
    while let Some(part) = queue.pop_front() {
        if at.run.cancel.is_cancelled() {
            out.interrupted = true;
            return Ok(Split::Interrupted);
        }
        let body = upstream.join(&part.iter().map(|i| raw[*i].as_str()).collect::<Vec<_>>())?;
        let posted = at.post(body).await;
        if !matches!(posted, Err(SubmitError::Retryable(_))) {
            retry::answered(at.run).await;
        }
        if !answers_alike(alike.as_ref(), &posted)
            && let Some(s) = alike.take()
        {
            // An acceptance or another answer: the held-back refusals were about content.
            s.record(at, call, out).await?;
        }
        match posted {
            Ok(receipt) => {
                at.note_receipt(call, part.len(), receipt).await?;
                part.iter().for_each(|i| {
                    call.done.insert(*i, 'a');
                });
                at.accepted(call, &part).await?;
                out.delivered += part.len();
                backoff.reset();
                failpoint("after-split-progress");
            }
            Err(SubmitError::Retryable(msg)) => {
                if !wait_to_retry(at.run, backoff, &msg).await {
                    out.interrupted = true;
                    return Ok(Split::Interrupted);
                }
                queue.push_front(part);
            }
            Err(SubmitError::Rejected(_)) if part.len() == 1 && alike.is_some() => {
                alike.as_mut().expect("checked").refused.push(part[0]);
            }
            Err(SubmitError::Rejected(msg)) if part.len() == 1 => {
                refuse_one(at, call, part[0], &msg, out).await?;
            }
            Err(SubmitError::Rejected(_)) => {
                let (a, c) = part.split_at(part.len() / 2);
                queue.push_front(c.to_vec());
                queue.push_front(a.to_vec());
            }
            Err(SubmitError::Fatal(msg)) => return Err(at.run.stopped(&msg)),
        }
    }
    Ok(match alike {
        Some(s) if !s.refused.is_empty() => Split::AllRefusedAlike(s.msg, s.refused),
        _ => Split::Done,
    })
}

/// The records of a call not settled yet, as the two halves to send first (the whole
/// remainder was just refused, or is being resumed).
fn first_halves(records: usize, call: &OutboxCall) -> VecDeque<Vec<usize>> {
    let todo: Vec<usize> = (0..records)
        .filter(|i| !call.done.contains_key(i))
        .collect();
    let mut queue = VecDeque::new();
    let (a, c) = todo.split_at(todo.len() / 2);
    for part in [c, a] {
        if !part.is_empty() {
            queue.push_front(part.to_vec());
        }
    }
    queue
}

/// Whether an answer keeps refusals held back: the same refusal again, or a temporary
/// failure that says nothing either way.
fn answers_alike(alike: Option<&Suspect>, posted: &Result<Option<Receipt>, SubmitError>) -> bool {
    match (alike, posted) {
        (Some(s), Err(SubmitError::Rejected(m))) => *m == s.msg,
        (_, Err(SubmitError::Retryable(_))) => true,
        _ => false,
    }
}

/// One record of a split call refused on its own: an error row with the answer.
async fn refuse_one(
    at: &Batch<'_>,
    call: &mut OutboxCall,
    i: usize,
    msg: &str,
    out: &mut Outcome,
) -> Result<()> {
    warn!(row_guid = %call.records[i].row_guid, error = %msg, "record refused by the platform");
    call.done.insert(i, 'r');
    at.refused(call, &[i], msg).await?;
    out.refused_by_platform += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(done: &[(usize, char)]) -> OutboxCall {
        OutboxCall {
            call_no: 0,
            body: String::new(),
            records: vec![],
            done: done.iter().copied().collect(),
        }
    }

    #[test]
    fn a_split_starts_with_the_halves_of_what_is_left() {
        for (records, done, want) in [
            (5, vec![], vec![vec![0, 1], vec![2, 3, 4]]),
            (2, vec![], vec![vec![0], vec![1]]),
            (1, vec![], vec![vec![0]]),
            (
                5,
                vec![(0, 'a'), (1, 'a'), (3, 'r')],
                vec![vec![2], vec![4]],
            ),
            (4, vec![(0, 'a'), (1, 'r'), (2, 'a')], vec![vec![3]]),
            (2, vec![(0, 'a'), (1, 'a')], vec![]),
        ] {
            let got: Vec<Vec<usize>> = first_halves(records, &call(&done)).into();
            assert_eq!(got, want, "{records} records, done {done:?}");
        }
    }

    #[test]
    fn only_the_same_refusal_or_a_temporary_failure_keeps_refusals_held_back() {
        let held = Suspect {
            call: 0,
            msg: "errCode 1: bad".into(),
            refused: vec![],
        };
        let rejected = |m: &str| Err(SubmitError::Rejected(m.into()));
        for (alike, posted, want) in [
            (Some(&held), rejected("errCode 1: bad"), true),
            (Some(&held), rejected("errCode 2: other"), false),
            (Some(&held), Err(SubmitError::Retryable("503".into())), true),
            (Some(&held), Err(SubmitError::Fatal("401".into())), false),
            (Some(&held), Ok(None), false),
            (None, rejected("errCode 1: bad"), false),
            (None, Err(SubmitError::Retryable("503".into())), true),
        ] {
            assert_eq!(answers_alike(alike, &posted), want, "{posted:?}");
        }
    }
}
