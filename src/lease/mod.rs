//! Holding a job's lease while its runs send: acquired once, renewed in the background every
//! `lease.renew_interval`, and given up at the end. A holder that cannot renew stops its runs
//! (cancels their token) `ttl - renew_interval` after its last successful renewal began,
//! that is, before the lease can expire in the database; one that finds the lease taken
//! over stops them at once. The SQL and the fencing check are in `db::lease`; how the jobs
//! are shared among several `run` processes is in [`balance`].

pub mod balance;

use anyhow::Result;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use crate::config::LeaseConfig;
use crate::db::Db;
use crate::db::lease::{Acquire, Fence, Holder, LeaseInfo};

/// A lease held by this process, renewed until [`Held::release`] (or until dropped, after
/// which it expires by itself).
pub struct Held {
    fence: Fence,
    /// Cancelled on the parent's cancel (shutdown) and when the lease is lost: what the
    /// job's runs stop on.
    cancel: CancellationToken,
    lost: Arc<AtomicBool>,
    /// Ends the renewal task.
    stop: CancellationToken,
    /// The previous holder when the lease was taken from a process whose lease had expired.
    pub took_over: Option<LeaseInfo>,
}

/// How an attempt to take a lease ended.
pub enum Acquired {
    Held(Held),
    /// Another live process holds it.
    Busy(LeaseInfo),
}

impl Held {
    /// Takes the job's lease if it is free or expired, and starts renewing it. The runs of
    /// the job stop on [`Held::cancel`], a child of `parent`.
    pub async fn acquire(
        db: &Db,
        me: &Holder,
        job: &str,
        cfg: &LeaseConfig,
        parent: &CancellationToken,
    ) -> Result<Acquired> {
        let started = Instant::now();
        let (fence, took_over) = match db.acquire_lease(job, me, cfg.ttl).await? {
            Acquire::Got { fence, took_over } => (fence, took_over),
            Acquire::Busy(info) => return Ok(Acquired::Busy(info)),
        };
        let held = Held {
            fence,
            cancel: parent.child_token(),
            lost: Arc::new(AtomicBool::new(false)),
            stop: CancellationToken::new(),
            took_over,
        };
        let keeper = Keeper {
            db: db.clone(),
            fence: held.fence.clone(),
            ttl: cfg.ttl,
            every: cfg.renew_interval,
            cancel: held.cancel.clone(),
            lost: held.lost.clone(),
            last_ok: started,
        };
        tokio::spawn(keeper.run(held.stop.clone()));
        Ok(Acquired::Held(held))
    }

    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// What the job's runs stop on: shutdown, or the lease lost or about to expire.
    pub fn cancel(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The lease was taken over or could not be renewed in time: its runs are stopping and
    /// nothing of theirs commits any more once another process holds it.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Stops renewing and gives the lease up, so another process can take it at once.
    pub async fn release(self, db: &Db) {
        self.stop.cancel();
        if self.is_lost() {
            return;
        }
        if let Err(e) = db.release_lease(&self.fence).await {
            warn!(job = %self.fence.job, error = %format!("{e:#}"), "could not release the lease; it expires by itself after lease.ttl");
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The renewal task of one lease.
struct Keeper {
    db: Db,
    fence: Fence,
    ttl: Duration,
    every: Duration,
    cancel: CancellationToken,
    lost: Arc<AtomicBool>,
    /// When the last successful renewal (or the acquisition) was sent: the lease lasts at
    /// least `ttl` from then in the database's time.
    last_ok: Instant,
}

impl Keeper {
    /// From here on the runs must have stopped: one renewal interval before the earliest
    /// moment the lease can expire.
    fn deadline(&self) -> Instant {
        self.last_ok + stop_after(self.ttl, self.every)
    }

    async fn run(mut self, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.every) => {}
            }
            if crate::failpoint::active("lease-renew-fails") {
                warn!(job = %self.fence.job, "failpoint lease-renew-fails: renewal skipped");
            } else if let Some(done) = self.renew_once().await {
                if done {
                    continue;
                }
                error!(
                    job = %self.fence.job, token = self.fence.token,
                    "作业的租约已被其他进程接管，本进程停止发送 / the job's lease was taken over by another process; this process stops sending"
                );
                return self.lose();
            }
            if Instant::now() >= self.deadline() {
                error!(
                    job = %self.fence.job, ttl_ms = self.ttl.as_millis() as u64,
                    "租约无法按时续期，在到期前停止发送 / the lease could not be renewed in time; sending stops before it can expire"
                );
                return self.lose();
            }
        }
    }

    /// One renewal, given until the deadline at most: Some(true) renewed, Some(false) no
    /// longer ours, None failed (error or timeout).
    async fn renew_once(&mut self) -> Option<bool> {
        let sent = Instant::now();
        let left = self.deadline().saturating_duration_since(sent);
        let renewed = tokio::time::timeout(
            left.max(Duration::from_millis(100)),
            self.db.renew_lease(&self.fence, self.ttl),
        )
        .await;
        match renewed {
            Ok(Ok(true)) => {
                self.last_ok = sent;
                Some(true)
            }
            Ok(Ok(false)) => Some(false),
            Ok(Err(e)) => {
                warn!(job = %self.fence.job, error = %format!("{e:#}"), "租约续期失败，稍后重试 / lease renewal failed; trying again");
                None
            }
            Err(_) => {
                warn!(job = %self.fence.job, "租约续期超时 / lease renewal timed out");
                None
            }
        }
    }

    fn lose(self) {
        self.lost.store(true, Ordering::SeqCst);
        self.cancel.cancel();
    }
}

/// How long after a successful renewal began a holder that cannot renew goes on sending.
pub fn stop_after(ttl: Duration, renew_interval: Duration) -> Duration {
    ttl.saturating_sub(renew_interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_that_cannot_renew_stops_before_its_lease_expires() {
        let s = Duration::from_secs;
        // Defaults: the renewal at 10 s fails, the one at 20 s too, and sending stops at
        // 20 s, 10 s before the lease (30 s from the last renewal) can expire. Any setting
        // `check` accepts (renew_interval below ttl / 2) leaves a retry before stopping.
        assert_eq!(stop_after(s(30), s(10)), s(20));
        for (ttl, every) in [(s(30), s(10)), (s(3), s(1)), (s(5), s(2)), (s(60), s(29))] {
            let stop = stop_after(ttl, every);
            assert!(stop < ttl && stop > every, "{ttl:?} {every:?}");
        }
    }
}
