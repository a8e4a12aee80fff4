//! Splitting a refused call: halved until every record is accepted or refused alone, each
//! step recorded so a restart neither loses nor repeats an error row; and the safety valve
//! (`Suspect`) that holds back refusals which may be about the connection, not the content.

use anyhow::Result;
use std::collections::VecDeque;
use tracing::warn;

use super::super::{JobStopped, Outcome, Run, failpoint, retry};
use super::record::Batch;
use crate::config::JobConfig;
use crate::db::control::OutboxCall;
use crate::upstream::{Backoff, Receipt, SubmitError};

/// Records the failure (metrics, qz_cursor) and sleeps before a retry; false when shutdown
/// (or a stop of the job) came first.
pub(super) async fn wait_to_retry(run: &Run<'_>, backoff: &mut Backoff, msg: &str) -> bool {
    let (wait, cancel) = (backoff.next_delay(), run.cancel);
    warn!(error = %msg, retry_in_ms = wait.as_millis() as u64, "temporary failure, will resend the same call");
    retry::failed(run, msg).await;
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = cancel.cancelled() => false,
    }
}

/// How splitting a refused call ended.
#[derive(Debug)]
pub(super) enum Split {
    /// Every record is acked or recorded as refused.
    Done,
    /// Shutdown (or a stop of the job) came first; the progress so far is recorded.
    Interrupted,
    /// Nothing was accepted and every record was refused alone with this same answer.
    /// Nothing is recorded yet: these records are refused only if the next call shows that
    /// the answer is about content.
    AllRefusedAlike(Suspect),
}

/// The first answer that settled a whole call (a temporary failure settles nothing, it is
/// resent): what the safety valve compares a suspect call's refusals with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FirstAnswer {
    Accepted,
    Refused(String),
    /// A split left unfinished by an earlier run, taken up again without sending the call
    /// whole: the platform had answered it differently from a suspect.
    Resumed,
}

/// What the answer to the call after a suspect one says about the suspect's refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The next call has no answer yet.
    Wait,
    /// An acceptance, another refusal, or no next call in the batch: the refusals were about
    /// content and stand.
    Content,
    /// The next call was refused as a whole with the same answer: not about content.
    Stop,
}

/// `next` is the next call of the suspect's batch (None: the suspect was its last call)
/// and that call's first conclusive answer, if it has one yet.
pub(super) fn verdict(held: &str, next: Option<Option<&FirstAnswer>>) -> Verdict {
    match next {
        None => Verdict::Content,
        Some(None) => Verdict::Wait,
        Some(Some(FirstAnswer::Refused(m))) if m == held => Verdict::Stop,
        Some(Some(_)) => Verdict::Content,
    }
}

/// A call whose records were all refused with one answer, held back (not recorded, not acked).
#[derive(Debug)]
pub(super) struct Suspect {
    pub msg: String,
    pub refused: Vec<usize>,
}

impl Suspect {
    /// The next call was refused with the same answer before anyone looked at its records:
    /// a wrong token or gateway setting answered in-band, not bad content. Nothing of either
    /// call is recorded, so both are resent once the cause is fixed.
    pub fn stop(&self, job: &JobConfig, setting: &str, call: &OutboxCall) -> JobStopped {
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
    pub async fn refuse(
        self,
        at: &Batch<'_>,
        call: &mut OutboxCall,
        out: &mut Outcome,
    ) -> Result<()> {
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
pub(super) async fn split_call(
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
                if let Some(r) = receipt {
                    at.note_receipt(call.call_no, part.len(), r).await?;
                }
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
        Some(s) if !s.refused.is_empty() => Split::AllRefusedAlike(s),
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

/// One record of a call refused on its own: an error row with the answer.
pub(super) async fn refuse_one(
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

    /// "The next call" is the suspect's successor in its batch, whenever its answer arrives
    /// (with several calls in flight it may have come before the suspect's split ended).
    #[test]
    fn the_next_calls_first_answer_decides_a_suspect() {
        let held = "errCode 401: token无效";
        let refused = |m: &str| FirstAnswer::Refused(m.into());
        for (next, want) in [
            (None, Verdict::Content),
            (Some(None), Verdict::Wait),
            (Some(Some(refused(held))), Verdict::Stop),
            (Some(Some(refused("errCode 1: other"))), Verdict::Content),
            (Some(Some(FirstAnswer::Accepted)), Verdict::Content),
            (Some(Some(FirstAnswer::Resumed)), Verdict::Content),
        ] {
            assert_eq!(
                verdict(held, next.as_ref().map(Option::as_ref)),
                want,
                "{next:?}"
            );
        }
    }
}
