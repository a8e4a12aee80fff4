//! `qianzhi run`: each job and query job on its schedule (6-field cron in Beijing time, or an interval)
//! until SIGTERM, which lets the call in flight finish and starts no new one.
//!
//! tokio-cron-scheduler decides *when*; one supervisor loop here decides *whether*: it owns the
//! running runs (a JoinSet, so a panicking run is seen), never starts a job while its previous
//! run is still going, stops scheduling a job that reported a fatal error, and on shutdown
//! waits for the runs in flight.
//!
//! Leases (`lease::balance`): a job runs only while this process holds its lease. The
//! supervisor's loop runs the balancer every `lease.renew_interval`; a lease it takes starts
//! the job's run at once when the job is an interval job or was taken over from a process
//! that died (a cron job otherwise waits for its next time). Leases above this process's
//! share are given up between runs, and all of them at shutdown.

use anyhow::{Context, Result};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio_cron_scheduler::JobScheduler;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::db::lease::{Fence, LeaseHeld, LeaseLost};
use crate::lease::balance::Balancer;
use crate::notify::Notifier;
use crate::pipeline::{App, JobStopped, RunOptions, run_held, run_once};
use crate::query::{QueryStopped, run_query_held, run_query_once};

mod when;
pub use when::{When, cron_issue};
use when::{cron_job, rerun_after};

/// How a run ended, as far as scheduling is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Run again at the next scheduled time (also after an ordinary failure).
    Again,
    /// Fatal (JOB STOPPED): schedule it no more.
    Stopped,
}

type Run = Pin<Box<dyn Future<Output = Ended> + Send>>;
/// One run of a job under the job's lease (None: the run takes it itself); it finishes its
/// call in flight and returns when the token is cancelled.
pub type Work = Arc<dyn Fn(CancellationToken, Option<Fence>) -> Run + Send + Sync>;

/// A job as the supervisor sees it.
pub struct Entry {
    pub name: String,
    pub when: When,
    pub work: Work,
}

/// Marks a job running in its metrics for as long as it lives (a panic included).
struct Running<'a>(Option<&'a crate::metrics::JobMetrics>);

impl<'a> Running<'a> {
    fn start(app: &'a App, job: &str) -> Self {
        let m = app.metrics.job(job);
        if let Some(m) = m {
            m.set_running(true);
        }
        Running(m)
    }

    fn stopped(&self, why: &str) {
        if let Some(m) = self.0 {
            m.set_stopped(why);
        }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Some(m) = self.0 {
            m.set_running(false);
        }
    }
}

/// A run that ended because the lease went elsewhere: logged, not a failure.
fn lease_gone(e: &anyhow::Error) -> bool {
    e.downcast_ref::<LeaseLost>().is_some() || e.downcast_ref::<LeaseHeld>().is_some()
}

async fn run_job(
    app: Arc<App>,
    name: String,
    cancel: CancellationToken,
    fence: Option<Fence>,
) -> Ended {
    let running = Running::start(&app, &name);
    // Test hook: proves that a job task that dies is logged, recorded and fails `run`.
    if crate::failpoint::active("panic-in-job") {
        panic!("failpoint panic-in-job");
    }
    let opts = RunOptions::default();
    let ran = match &fence {
        Some(f) => run_held(&app, f, &cancel, &opts).await,
        None => run_once(&app, &name, &cancel, &opts).await,
    };
    match ran {
        Ok(o) if o.rows_read > 0 || !o.batches.is_empty() => info!(
            job = %name, rows = o.rows_read, delivered = o.delivered, invalid = o.invalid_rows,
            refused = o.refused_by_platform, batches = o.batches.len(), "run finished"
        ),
        Ok(_) => {}
        Err(e) if e.downcast_ref::<JobStopped>().is_some() => {
            error!(job = %name, error = %format!("{e:#}"), "JOB STOPPED: fix the cause and restart qianzhi; pending batches will be resent");
            running.stopped(&crate::mask::mask_pii(&format!("{e:#}")));
            return Ended::Stopped;
        }
        Err(e) if lease_gone(&e) => {
            warn!(job = %name, error = %format!("{e:#}"), "run stopped: the job's lease is with another process")
        }
        Err(e) => {
            warn!(job = %name, error = %crate::mask::mask_pii(&format!("{e:#}")), "run failed, will try again at the next scheduled time")
        }
    }
    Ended::Again
}

async fn run_query(
    app: Arc<App>,
    name: String,
    cancel: CancellationToken,
    fence: Option<Fence>,
) -> Ended {
    let running = Running::start(&app, &name);
    let ran = match &fence {
        Some(f) => run_query_held(app.query_app(), f, &cancel).await,
        None => run_query_once(app.query_app(), &name, &cancel).await,
    };
    match ran {
        Ok(o) if o.calls > 0 => info!(
            job = %name, calls = o.calls, found = o.found, no_result = o.no_result,
            rejected = o.rejected, fresh = o.fresh, budget_exhausted = o.budget_exhausted, "query run finished"
        ),
        Ok(_) => {}
        Err(e) if e.downcast_ref::<QueryStopped>().is_some() => {
            error!(job = %name, error = %format!("{e:#}"), "QUERY JOB STOPPED: fix the cause and restart qianzhi");
            running.stopped(&crate::mask::mask_pii(&format!("{e:#}")));
            return Ended::Stopped;
        }
        Err(e) if lease_gone(&e) => {
            warn!(job = %name, error = %format!("{e:#}"), "query run stopped: the job's lease is with another process")
        }
        Err(e) => {
            warn!(job = %name, error = %crate::mask::mask_pii(&format!("{e:#}")), "query run failed, will try again at the next scheduled time")
        }
    }
    Ended::Again
}

/// The enabled query jobs and jobs of the configuration, in that order.
fn entries(app: &Arc<App>) -> Vec<Entry> {
    let mut out = Vec::new();
    for q in app.cfg.queries.iter().filter(|q| q.enabled) {
        info!(job = %q.name, provider = %q.provider, subjects = %q.subjects, "query job scheduled");
        let (app, name) = (app.clone(), q.name.clone());
        out.push(Entry {
            name: q.name.clone(),
            when: When::of(q.schedule().map(|s| s.as_str()), q.interval()),
            work: Arc::new(move |c, f| Box::pin(run_query(app.clone(), name.clone(), c, f))),
        });
    }
    for j in app.cfg.jobs.iter().filter(|j| j.enabled) {
        info!(job = %j.name, source = %j.source, data_type = %j.data_type, "job scheduled");
        let (app, name) = (app.clone(), j.name.clone());
        out.push(Entry {
            name: j.name.clone(),
            when: When::of(j.schedule().map(|s| s.as_str()), j.interval()),
            work: Arc::new(move |c, f| Box::pin(run_job(app.clone(), name.clone(), c, f))),
        });
    }
    out
}

/// How `qianzhi run` ended without an error of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// SIGTERM or Ctrl-C: the runs in flight finished their call.
    Shutdown,
    /// Every job stopped by itself (JOB STOPPED after a fatal answer): nothing is left to do,
    /// which the service manager must see as a failure.
    AllJobsStopped,
}

/// The exit code of `qianzhi run` when every job has stopped (README, 运维).
pub const EXIT_ALL_JOBS_STOPPED: u8 = 3;

pub async fn run(app: Arc<App>, cancel: CancellationToken) -> Result<RunEnd> {
    if let Some(addr) = app.cfg.http.listen {
        crate::http::serve(app.clone(), addr, cancel.clone()).await?;
    }
    let recorder = app.clone();
    let entries = entries(&app);
    let leases = Balancer::new(
        app.db.clone(),
        app.me.clone(),
        app.cfg.lease,
        entries.iter().map(|e| e.name.clone()).collect(),
        cancel.clone(),
    )
    .with_observer({
        let app = app.clone();
        Box::new(move |job, held| {
            if let Some(m) = app.metrics.job(job) {
                m.set_lease_held(held);
            }
        })
    });
    let crashed = supervise(
        entries,
        cancel.clone(),
        Some(leases),
        move |job, why| {
            let app = recorder.clone();
            async move {
                if let Some(m) = app.metrics.job(&job) {
                    m.set_stopped(&why);
                }
                if let Err(e) = app.db.record_crash(&job, &why).await {
                    warn!(job = %job, error = %format!("{e:#}"), "could not record the failure in qz_cursor");
                }
            }
        },
        heartbeat(&app),
    )
    .await?;
    if !crashed.is_empty() {
        anyhow::bail!(
            "the task of job(s) {} failed (see the log and `qianzhi status`); \
             作业任务异常退出：{}",
            crashed.join(", "),
            crashed.join(", ")
        );
    }
    if cancel.is_cancelled() {
        return Ok(RunEnd::Shutdown);
    }
    Ok(RunEnd::AllJobsStopped)
}

/// What the supervisor tells systemd (see `notify`): READY=1 once every job is scheduled,
/// then from its own loop WATCHDOG=1 (when `WatchdogSec=` is set) with the STATUS= text.
pub struct Heartbeat {
    pub notifier: Notifier,
    /// The STATUS= text now.
    pub status: Box<dyn Fn() -> String + Send + Sync>,
}

impl Heartbeat {
    /// Tells systemd nothing beyond the plain READY=1 (tests, tools).
    pub fn quiet() -> Heartbeat {
        Heartbeat {
            notifier: Notifier::default(),
            status: Box::new(String::new),
        }
    }
}

/// The daemon's heartbeat: watchdog from the environment, status from the jobs' metrics.
fn heartbeat(app: &Arc<App>) -> Heartbeat {
    let app = app.clone();
    Heartbeat {
        notifier: Notifier::from_env(),
        status: Box::new(move || {
            let enabled: Vec<&str> = app
                .cfg
                .queries
                .iter()
                .filter(|q| q.enabled)
                .map(|q| q.name.as_str())
                .chain(
                    app.cfg
                        .jobs
                        .iter()
                        .filter(|j| j.enabled)
                        .map(|j| j.name.as_str()),
                )
                .collect();
            crate::notify::status_line(&app.metrics, &enabled)
        }),
    }
}

/// Runs `entries` on their schedules until every one has stopped, or until `cancel` and the
/// runs in flight have finished. With `leases`, a job runs only while this process holds its
/// lease (see the module doc); without, every run takes its own. A run that panics is logged
/// as JOB STOPPED, handed to `on_crash` and its job scheduled no more. Returns the names of
/// the jobs whose run panicked.
pub async fn supervise<F, Fut>(
    entries: Vec<Entry>,
    cancel: CancellationToken,
    leases: Option<Balancer>,
    on_crash: F,
    beat: Heartbeat,
) -> Result<Vec<String>>
where
    F: Fn(String, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let (fire, mut fired) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let n = entries.len();
    let mut s = Supervisor {
        running: vec![false; n],
        stopped: vec![false; n],
        armed: vec![false; n],
        active: n,
        entries,
        cron_ids: HashMap::new(),
        tasks: tokio::task::JoinSet::new(),
        task_of: HashMap::new(),
        crashed: Vec::new(),
        shutting_down: false,
        leases,
    };
    // The first round before the first runs: the jobs this process can take run at start.
    let first = match &mut s.leases {
        Some(b) => b.tick(&s.running).await,
        None => Vec::new(),
    };
    let (mut sched, cron_ids) = schedule(&s.entries, &fire).await?;
    s.cron_ids = cron_ids;
    for (i, e) in s.entries.iter().enumerate() {
        s.armed[i] = matches!(e.when, When::Every(_));
    }
    s.taken(&first, &fire);
    let every = s
        .leases
        .as_ref()
        .map(|b| b.renew_interval())
        .unwrap_or(Duration::from_secs(3600));
    let mut round = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    round.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    beat.notifier.ready(&(beat.status)());
    // The watchdog is fed from this loop and nowhere else: if the loop hangs, systemd sees it.
    let mut ticks = tokio::time::interval(beat.notifier.period());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while s.active > 0 && !(s.shutting_down && s.tasks.is_empty()) {
        tokio::select! {
            _ = cancel.cancelled(), if !s.shutting_down => {
                // Nothing new starts from here on; the runs in flight see the same token,
                // finish their call and return.
                s.shutting_down = true;
                let _ = sched.shutdown().await;
            }
            Some(i) = fired.recv(), if !s.shutting_down => s.start(i, &cancel),
            Some(done) = s.tasks.join_next_with_id() => {
                if let Some(crash) = s.finished(done, &sched, &fire).await {
                    on_crash(crash.0, crash.1).await;
                }
            }
            _ = ticks.tick() => beat.notifier.beat(&(beat.status)()),
            _ = round.tick(), if s.leases.is_some() && !s.shutting_down => {
                let taken = match &mut s.leases {
                    Some(b) => b.tick(&s.running).await,
                    None => Vec::new(),
                };
                s.taken(&taken, &fire);
            }
        }
    }
    let _ = sched.shutdown().await;
    if let Some(b) = &mut s.leases {
        b.shutdown().await;
    }
    beat.notifier.stopping(&(beat.status)());
    info!("all jobs stopped");
    Ok(s.crashed)
}

/// Puts every cron job into a started scheduler and fires every interval job once (an
/// interval job runs at once, then `interval` after each run ends).
async fn schedule(
    entries: &[Entry],
    fire: &UnboundedSender<usize>,
) -> Result<(JobScheduler, HashMap<usize, uuid::Uuid>)> {
    let sched = JobScheduler::new()
        .await
        .map_err(|e| anyhow::anyhow!("starting the scheduler: {e:?}"))?;
    let mut cron_ids = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        match &e.when {
            When::Cron(expr) => {
                let job = cron_job(expr, fire.clone(), i)
                    .with_context(|| format!("job {}: schedule '{expr}'", e.name))?;
                let id = sched
                    .add(job)
                    .await
                    .map_err(|err| anyhow::anyhow!("job {}: scheduling: {err:?}", e.name))?;
                cron_ids.insert(i, id);
            }
            When::Every(_) => fire.send(i).expect("the receiver is alive"),
        }
    }
    sched
        .start()
        .await
        .map_err(|e| anyhow::anyhow!("starting the scheduler: {e:?}"))?;
    Ok((sched, cron_ids))
}

/// The supervisor's view of the jobs, indexed like `entries`.
struct Supervisor {
    entries: Vec<Entry>,
    running: Vec<bool>,
    stopped: Vec<bool>,
    /// An interval job's next start is on its way (fired or scheduled as a one-shot).
    armed: Vec<bool>,
    /// Jobs not stopped; the loop ends when none is left.
    active: usize,
    cron_ids: HashMap<usize, uuid::Uuid>,
    tasks: tokio::task::JoinSet<Ended>,
    task_of: HashMap<tokio::task::Id, usize>,
    crashed: Vec<String>,
    shutting_down: bool,
    /// This process's job leases; None: every run takes its own.
    leases: Option<Balancer>,
}

impl Supervisor {
    /// Job `i`'s time has come: start a run unless the job stopped, its last run is still
    /// going, or another process holds its lease (standby).
    fn start(&mut self, i: usize, cancel: &CancellationToken) {
        self.armed[i] = false;
        let e = &self.entries[i];
        if self.stopped[i] {
            return;
        }
        if self.running[i] {
            info!(job = %e.name, "上次运行尚未结束，跳过本次调度时间 / previous run still going; this scheduled time is skipped");
            return;
        }
        let (token, fence) = match &self.leases {
            None => (cancel.clone(), None),
            Some(b) => match b.held(i) {
                Some(h) => (h.cancel().clone(), Some(h.fence().clone())),
                // Standby: the balancer starts the job when it takes the lease.
                None => return,
            },
        };
        self.running[i] = true;
        let h = self.tasks.spawn((e.work)(token, fence));
        self.task_of.insert(h.id(), i);
    }

    /// Leases taken in a round: an interval job not already on its way starts at once (as at
    /// start); a cron job only when taken over from a process that died, whose work may be
    /// half done (otherwise it waits for its next time).
    fn taken(&mut self, taken: &[crate::lease::balance::Taken], fire: &UnboundedSender<usize>) {
        for t in taken {
            let i = t.job;
            let now = match self.entries[i].when {
                When::Every(_) => !self.armed[i],
                When::Cron(_) => t.took_over,
            };
            if now && !self.running[i] && !self.stopped[i] {
                self.armed[i] = true;
                let _ = fire.send(i);
            }
        }
    }

    /// A run ended: schedule the job's next run, or stop it. Returns (job, why) when the run
    /// panicked.
    async fn finished(
        &mut self,
        done: Result<(tokio::task::Id, Ended), tokio::task::JoinError>,
        sched: &JobScheduler,
        fire: &UnboundedSender<usize>,
    ) -> Option<(String, String)> {
        let (id, ended) = match done {
            Ok((id, ended)) => (id, Ok(ended)),
            Err(err) => (err.id(), Err(err)),
        };
        let i = self.task_of.remove(&id)?;
        self.running[i] = false;
        let name = self.entries[i].name.clone();
        let mut crash = None;
        // Between runs: a lost lease is dropped, one above this process's share given up.
        if let Some(b) = &mut self.leases {
            b.run_ended(i).await;
        }
        let held = self.leases.as_ref().is_none_or(|b| b.held(i).is_some());
        match ended {
            Ok(Ended::Again) => {
                if let (When::Every(iv), false, true) =
                    (&self.entries[i].when, self.shutting_down, held)
                {
                    self.armed[i] = true;
                    rerun_after(sched, *iv, fire.clone(), i).await;
                }
                return None;
            }
            Ok(Ended::Stopped) => {}
            Err(err) => {
                if let Some(why) = task_failure(&name, err) {
                    error!(job = %name, error = %why, "JOB STOPPED: its task failed; the other jobs go on");
                    self.crashed.push(name.clone());
                    crash = Some((name, why));
                }
            }
        }
        self.stopped[i] = true;
        self.active -= 1;
        if let Some(id) = self.cron_ids.remove(&i) {
            let _ = sched.remove(&id).await;
        }
        crash
    }
}

/// Why a job's task ended without returning, masked for the log and qz_cursor; None when it
/// was only cancelled.
fn task_failure(job: &str, e: tokio::task::JoinError) -> Option<String> {
    if !e.is_panic() {
        return None;
    }
    let payload = e.into_panic();
    let what = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into());
    Some(crate::mask::mask_pii(&format!(
        "the task of job {job} panicked (bug; please report it): {what}"
    )))
}

/// Cancels the token on SIGTERM or Ctrl-C.
pub fn cancel_on_signal(cancel: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("signal handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        info!("shutdown requested: finishing calls in flight, starting no new ones");
        cancel.cancel();
    });
}

#[cfg(test)]
mod tests;
