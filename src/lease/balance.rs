//! Sharing the jobs among the `qianzhi run` processes on one database (scale-out), and
//! standing by for the jobs another process holds.
//!
//! Every `renew_interval` a process writes its heartbeat (`qz_instance`), counts the live
//! processes (heartbeat younger than `lease.ttl`) and allows itself at most
//! ceil(jobs / live) leases (jobs: the delivery and query jobs of its configuration). Above
//! that share it gives up leases of jobs that are not running at the moment (between runs,
//! never in the middle of one); below it, it takes leases that are free or expired. A
//! process that dies stops renewing: its leases and its heartbeat age out after `ttl`, the
//! others' share grows, and they take its jobs at their next round, so within `ttl` plus
//! one `renew_interval`.

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Acquired, Held};
use crate::config::LeaseConfig;
use crate::db::Db;
use crate::db::lease::{Holder, LeaseInfo};

/// This process's leases, indexed like the jobs it was given.
pub struct Balancer {
    db: Db,
    me: Holder,
    cfg: LeaseConfig,
    /// Shutdown: the leases' run tokens are its children.
    parent: CancellationToken,
    jobs: Vec<String>,
    held: Vec<Option<Held>>,
    /// The standby line was logged for this job (cleared when this process takes it).
    announced: Vec<bool>,
    /// Last (live processes, share), to log changes only.
    shown: Option<(usize, usize)>,
    /// Where this process starts looking for free jobs, so that processes starting together
    /// do not all race for the same ones.
    start: usize,
    /// Told after every round which jobs this process holds (the `lease_held` gauge).
    observer: Option<Observer>,
}

/// Receives (job, held) for every job after each round and at shutdown.
pub type Observer = Box<dyn Fn(&str, bool) + Send + Sync>;

/// A lease taken in a round: the job's index, and whether it was taken from a process whose
/// lease had expired (which may have left work half done).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    pub job: usize,
    pub took_over: bool,
}

/// At most this many of `jobs` leases for one of `live` processes.
pub fn share(jobs: usize, live: usize) -> usize {
    jobs.div_ceil(live.max(1))
}

impl Balancer {
    pub fn new(
        db: Db,
        me: Holder,
        cfg: LeaseConfig,
        jobs: Vec<String>,
        parent: CancellationToken,
    ) -> Balancer {
        let n = jobs.len();
        let start = me
            .instance
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
        Balancer {
            db,
            me,
            cfg,
            parent,
            jobs,
            held: (0..n).map(|_| None).collect(),
            announced: vec![false; n],
            shown: None,
            start: if n == 0 { 0 } else { start % n },
            observer: None,
        }
    }

    /// Reports which leases this process holds after every round (for `/metrics`).
    pub fn with_observer(mut self, observer: Observer) -> Balancer {
        self.observer = Some(observer);
        self
    }

    fn tell(&self) {
        if let Some(o) = &self.observer {
            for (i, job) in self.jobs.iter().enumerate() {
                o(job, self.held(i).is_some());
            }
        }
    }

    pub fn renew_interval(&self) -> std::time::Duration {
        self.cfg.renew_interval
    }

    /// Job `i`'s lease, while this process holds it and has not lost it.
    pub fn held(&self, i: usize) -> Option<&Held> {
        self.held[i].as_ref().filter(|h| !h.is_lost())
    }

    fn holding(&self) -> usize {
        (0..self.jobs.len())
            .filter(|i| self.held(*i).is_some())
            .count()
    }

    /// One round (see the module doc). `running[i]`: job `i` has a run going. Returns the
    /// leases taken.
    pub async fn tick(&mut self, running: &[bool]) -> Vec<Taken> {
        let taken = self.round(running).await;
        self.tell();
        taken
    }

    async fn round(&mut self, running: &[bool]) -> Vec<Taken> {
        for (i, run) in running.iter().enumerate() {
            if !run {
                self.forget_lost(i);
            }
        }
        let Some(quota) = self.quota().await else {
            return Vec::new();
        };
        let mut surplus = self.holding().saturating_sub(quota);
        for i in (0..self.jobs.len()).rev() {
            if surplus == 0 {
                break;
            }
            if self.held(i).is_some() && !running[i] {
                self.give_up(i).await;
                surplus -= 1;
            }
        }
        if self.holding() >= quota {
            return Vec::new();
        }
        match self.db.leases().await {
            Ok(leases) => self.take_free(&leases, quota).await,
            Err(e) => {
                warn!(error = %format!("{e:#}"), "cannot read the job leases (qz_lease)");
                Vec::new()
            }
        }
    }

    /// Heartbeat, live processes and this one's share; None when the database cannot say.
    async fn quota(&mut self) -> Option<usize> {
        if let Err(e) = self.db.heartbeat(&self.me).await {
            warn!(error = %format!("{e:#}"), "cannot write this process's heartbeat (qz_instance)");
            return None;
        }
        if let Err(e) = self.db.purge_instances(self.cfg.ttl * 10).await {
            warn!(error = %format!("{e:#}"), "cannot remove long-gone processes from qz_instance");
        }
        let live = match self.db.live_instances(self.cfg.ttl).await {
            Ok(l) => l.len().max(1),
            Err(e) => {
                warn!(error = %format!("{e:#}"), "cannot count the live processes (qz_instance)");
                return None;
            }
        };
        let quota = share(self.jobs.len(), live);
        if self.shown != Some((live, quota)) {
            self.shown = Some((live, quota));
            info!(
                instance = %self.me.instance, host = %self.me.host, pid = self.me.pid,
                jobs = self.jobs.len(), live, share = quota,
                "{} 个作业，{live} 个 run 进程在运行，本进程最多持有 {quota} 个作业的租约 / {} jobs, {live} live run processes: this one holds at most {quota} job leases",
                self.jobs.len(), self.jobs.len()
            );
        }
        Some(quota)
    }

    /// Takes free or expired leases, in this process's order, until it holds `quota`; logs
    /// the standby line for jobs another live process holds.
    async fn take_free(&mut self, leases: &[LeaseInfo], quota: usize) -> Vec<Taken> {
        let n = self.jobs.len();
        let mut taken = Vec::new();
        for k in 0..n {
            let i = (self.start + k) % n;
            if self.held[i].is_some() {
                continue;
            }
            let row = leases.iter().find(|l| l.job == self.jobs[i]);
            if let Some(l) = row.filter(|l| l.is_live() && !self.is_mine(l)) {
                self.announce(i, l);
                continue;
            }
            if self.holding() >= quota {
                continue;
            }
            if let Some(t) = self.try_take(i).await {
                taken.push(t);
            }
        }
        taken
    }

    fn is_mine(&self, l: &LeaseInfo) -> bool {
        l.holder
            .as_ref()
            .is_some_and(|h| h.instance == self.me.instance)
    }

    async fn try_take(&mut self, i: usize) -> Option<Taken> {
        let job = &self.jobs[i];
        let got = Held::acquire(&self.db, &self.me, job, &self.cfg, &self.parent).await;
        let held = match got {
            Ok(Acquired::Held(h)) => h,
            Ok(Acquired::Busy(l)) => {
                self.announce(i, &l);
                return None;
            }
            Err(e) => {
                warn!(job = %job, error = %format!("{e:#}"), "cannot take the job's lease");
                return None;
            }
        };
        let took_over = held.took_over.is_some();
        match &held.took_over {
            Some(prev) => info!(
                job = %job, token = held.fence().token,
                "接管作业：原持有者（{}）的租约已于 {}（北京时间）过期 / took over the job: the lease of its previous holder ({}) expired at {} Beijing time",
                who(prev), prev.expires_beijing(), who(prev), prev.expires_beijing()
            ),
            None => {
                info!(job = %job, token = held.fence().token, "取得作业租约 / job lease acquired")
            }
        }
        self.held[i] = Some(held);
        self.announced[i] = false;
        Some(Taken { job: i, took_over })
    }

    /// The standby line, once per job until this process takes it.
    fn announce(&mut self, i: usize, l: &LeaseInfo) {
        if self.announced[i] {
            return;
        }
        self.announced[i] = true;
        info!(
            job = %self.jobs[i], holder = %who(l), until = %l.expires_beijing(),
            "作业的租约由另一进程持有（{}，到期 {} 北京时间），本进程待命，租约过期后接管 / the job's lease is held by another process ({}, until {} Beijing time); standing by, taking over when it expires",
            who(l), l.expires_beijing(), who(l), l.expires_beijing()
        );
    }

    /// Drops a lease found lost once its run has stopped.
    fn forget_lost(&mut self, i: usize) {
        if self.held[i].as_ref().is_some_and(|h| h.is_lost()) {
            self.held[i] = None;
            warn!(job = %self.jobs[i], "作业租约已失去，本进程待命 / the job's lease is lost; this process stands by");
        }
    }

    async fn give_up(&mut self, i: usize) {
        if let Some(h) = self.held[i].take() {
            info!(job = %self.jobs[i], "让出作业租约，由其他进程分担 / job lease given up to share the jobs with the other processes");
            h.release(&self.db).await;
        }
    }

    /// A run of job `i` ended: a lost lease is dropped, and a lease above this process's
    /// share is given up now that the job is between runs.
    pub async fn run_ended(&mut self, i: usize) {
        self.forget_lost(i);
        let over = self.shown.is_some_and(|(_, q)| self.holding() > q);
        if over && self.held(i).is_some() {
            self.give_up(i).await;
        }
    }

    /// Shutdown: every lease given up and the heartbeat removed, so the other processes
    /// take the jobs at once instead of after `ttl`.
    pub async fn shutdown(&mut self) {
        for i in 0..self.jobs.len() {
            if let Some(h) = self.held[i].take() {
                h.release(&self.db).await;
            }
        }
        self.tell();
        if let Err(e) = self.db.remove_instance(&self.me).await {
            warn!(error = %format!("{e:#}"), "cannot remove this process from qz_instance; it ages out after lease.ttl");
        }
    }
}

fn who(l: &LeaseInfo) -> String {
    l.holder
        .as_ref()
        .map(|h| h.to_string())
        .unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_live_process_holds_at_most_its_share() {
        for (jobs, live, want) in [
            (21, 3, 7),
            (21, 2, 11),
            (21, 1, 21),
            (1, 2, 1),
            (7, 3, 3),
            (0, 2, 0),
            (5, 0, 5),
        ] {
            assert_eq!(share(jobs, live), want, "{jobs} jobs, {live} live");
        }
    }
}
