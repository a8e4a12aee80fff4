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
use chrono::FixedOffset;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::db::lease::{Fence, LeaseHeld, LeaseLost};
use crate::lease::balance::Balancer;
use crate::notify::Notifier;
use crate::pipeline::{App, JobStopped, RunOptions, run_held, run_once};
use crate::query::{QueryStopped, run_query_held, run_query_once};

/// When a job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// A 6-field cron (sec min hour day month weekday), in Beijing time.
    Cron(String),
    /// At start, then this long after each run ends.
    Every(Duration),
}

impl When {
    /// From a job's `schedule` / `interval` settings (`check` makes sure exactly one is set).
    pub fn of(schedule: Option<&str>, interval: Option<Duration>) -> When {
        match (schedule, interval) {
            (_, Some(iv)) => When::Every(iv),
            (Some(s), None) => When::Cron(s.to_string()),
            // Unreachable after `check`; the old loop's fallback.
            (None, None) => When::Every(Duration::from_secs(60)),
        }
    }
}

/// Beijing time, UTC+8 all year: schedules never depend on the host's TZ.
fn beijing() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// Why `expr` is not a schedule the scheduler accepts, or None. `check` uses this, so a
/// schedule that passes `check` is one `run` can schedule.
pub fn cron_issue(expr: &str) -> Option<String> {
    // The parser settings tokio-cron-scheduler's `Job::new_async_tz` uses; the job itself is
    // built too, so the two can never disagree.
    let parsed = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expr);
    match (
        parsed,
        Job::new_async_tz(expr, beijing(), |_, _| Box::pin(async {})),
    ) {
        (Ok(_), Ok(_)) => None,
        (Err(e), _) => Some(e.to_string()),
        (Ok(_), Err(e)) => Some(format!("{e:?}")),
    }
}

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

/// A cron job in Beijing time that only tells the supervisor its time has come.
/// `Job::new_async_tz` parses with day-of-month AND day-of-week (both must match).
fn cron_job(expr: &str, fire: UnboundedSender<usize>, i: usize) -> Result<Job> {
    Job::new_async_tz(expr, beijing(), move |_, _| {
        // The supervisor is gone only at exit, when nothing is left to run.
        let _ = fire.send(i);
        Box::pin(async {})
    })
    .map_err(|e| {
        let why = cron_issue(expr).unwrap_or_else(|| format!("{e:?}"));
        anyhow::anyhow!("not a 6-field cron (sec min hour day month weekday): {why}")
    })
}

/// Schedules the next run of an interval job a one-shot `interval` from now.
async fn rerun_after(
    sched: &JobScheduler,
    interval: Duration,
    fire: UnboundedSender<usize>,
    i: usize,
) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let delay = one_shot_delay(interval, now.subsec_nanos());
    let tell = fire.clone();
    let job = Job::new_one_shot_async(delay, move |_, _| {
        let _ = tell.send(i);
        Box::pin(async {})
    });
    let added = match job {
        Ok(job) => sched.add(job).await.map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(e) = added {
        // Not expected while the scheduler runs; the job must not silently end.
        warn!(error = ?e, "scheduler refused a one-shot; waiting with a timer instead");
        tokio::spawn(async move {
            tokio::time::sleep(interval).await;
            let _ = fire.send(i);
        });
    }
}

/// The whole seconds to give tokio-cron-scheduler for a one-shot `interval` from now. It
/// counts from the current whole second (it drops the fraction), so the fraction is added
/// back and the total rounded up: the job never runs before `interval` has passed.
fn one_shot_delay(interval: Duration, now_subsec_nanos: u32) -> Duration {
    let wanted = interval + Duration::from_nanos(now_subsec_nanos.into());
    let secs = wanted.as_secs() + u64::from(wanted.subsec_nanos() > 0);
    Duration::from_secs(secs)
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
mod tests {
    use super::*;
    use chrono::{Datelike, Timelike, Utc, Weekday};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    #[tokio::test]
    async fn a_panicking_task_is_reported_with_its_message() {
        let h = tokio::spawn(async { panic!("boom 13812345678") });
        let why = task_failure("accept", h.await.unwrap_err()).unwrap();
        assert!(
            why.contains("job accept panicked") && why.contains("boom 138****5678"),
            "{why}"
        );
        let h = tokio::spawn(std::future::pending::<()>());
        h.abort();
        assert_eq!(task_failure("accept", h.await.unwrap_err()), None);
    }

    #[test]
    fn one_shot_delays_never_fall_short_of_the_interval() {
        let s = Duration::from_secs;
        for (interval, subsec, want) in [
            (s(30), 0, s(30)),
            (s(30), 1, s(31)),
            (s(30), 999_999_999, s(31)),
            (Duration::from_millis(1500), 400_000_000, s(2)),
            (Duration::from_millis(1500), 600_000_000, s(3)),
            (s(1), 0, s(1)),
        ] {
            let got = one_shot_delay(interval, subsec);
            assert_eq!(got, want, "{interval:?} at .{subsec}");
            // The library fires at floor(now) + got; that is never before now + interval.
            assert!(got >= interval + Duration::from_nanos(subsec.into()));
        }
    }

    #[test]
    fn when_follows_the_setting_that_is_present() {
        assert_eq!(
            When::of(Some("0 0 2 * * *"), None),
            When::Cron("0 0 2 * * *".into())
        );
        assert_eq!(
            When::of(None, Some(Duration::from_secs(30))),
            When::Every(Duration::from_secs(30))
        );
    }

    #[test]
    fn check_and_the_scheduler_accept_the_same_schedules() {
        for ok in [
            "0 */5 * * * *",
            "0 0 2 * * *",
            "0 30 9 * * MON-FRI",
            "0 0 0 13 * 5",
            "0 0 12 * * 0",
            "0 0 12 * * 7",
            "0 0 0 1 1 * 2030",
        ] {
            assert_eq!(cron_issue(ok), None, "{ok}");
        }
        for bad in ["every day", "0 0 2 * *", "61 * * * * *", "0 0 25 * * *", ""] {
            let why = cron_issue(bad);
            assert!(why.is_some_and(|w| !w.is_empty()), "{bad}");
        }
    }

    /// The next time the scheduler itself would fire a job with this schedule, in Beijing time.
    async fn next_fire(expr: &str) -> chrono::DateTime<FixedOffset> {
        let mut sched = JobScheduler::new().await.unwrap();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let id = sched.add(cron_job(expr, tx, 0).unwrap()).await.unwrap();
        let t = sched.next_tick_for_job(id).await.unwrap().unwrap();
        t.with_timezone(&beijing())
    }

    #[tokio::test]
    async fn cron_times_are_beijing_time_with_day_of_month_and_day_of_week() {
        // 02:00 Beijing is 18:00 UTC the day before, whatever the host's TZ is.
        let t = next_fire("0 0 2 * * *").await;
        assert_eq!((t.hour(), t.minute(), t.second()), (2, 0, 0), "{t}");
        assert_eq!(t.with_timezone(&Utc).hour(), 18, "{t}");
        assert!(t - Utc::now().with_timezone(&beijing()) <= chrono::Duration::days(1));
        // Day of month AND day of week: a Friday the 13th, not every 13th and every Friday.
        let t = next_fire("0 0 0 13 * FRI").await;
        assert_eq!((t.day(), t.weekday()), (13, Weekday::Fri), "{t}");
        let t = next_fire("0 0 0 13 * 5").await;
        assert_eq!((t.day(), t.weekday()), (13, Weekday::Fri), "{t}");
        // Weekday numbers: 0 and 7 are Sunday, 1 is Monday.
        for (expr, day) in [
            ("0 0 12 * * 0", Weekday::Sun),
            ("0 0 12 * * 7", Weekday::Sun),
            ("0 0 12 * * 1", Weekday::Mon),
            ("0 0 12 * * SAT", Weekday::Sat),
        ] {
            let t = next_fire(expr).await;
            assert_eq!((t.weekday(), t.hour()), (day, 12), "{expr}: {t}");
        }
    }

    /// A job that counts its starts and how many of its runs were going at once, made of
    /// `calls` calls of `call` each; like the pipeline, it checks the token between calls.
    #[derive(Default)]
    struct Probe {
        starts: Mutex<Vec<Instant>>,
        ends: Mutex<Vec<Instant>>,
        now_running: AtomicUsize,
        most_running: AtomicUsize,
        calls_begun: AtomicUsize,
        calls_done: AtomicUsize,
    }

    fn probe_work(p: Arc<Probe>, calls: usize, call: Duration) -> Work {
        Arc::new(move |cancel: CancellationToken, _| {
            let p = p.clone();
            Box::pin(async move {
                p.starts.lock().unwrap().push(Instant::now());
                let n = p.now_running.fetch_add(1, Ordering::SeqCst) + 1;
                p.most_running.fetch_max(n, Ordering::SeqCst);
                for _ in 0..calls {
                    if cancel.is_cancelled() {
                        break;
                    }
                    p.calls_begun.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(call).await;
                    p.calls_done.fetch_add(1, Ordering::SeqCst);
                }
                p.now_running.fetch_sub(1, Ordering::SeqCst);
                p.ends.lock().unwrap().push(Instant::now());
                Ended::Again
            })
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cron_job_never_overlaps_itself_and_shutdown_is_prompt() {
        // Every second, but each run takes 2.5 s (five calls of 0.5 s).
        let p = Arc::new(Probe::default());
        let cancel = CancellationToken::new();
        let entries = vec![Entry {
            name: "slow".into(),
            when: When::Cron("* * * * * *".into()),
            work: probe_work(p.clone(), 5, Duration::from_millis(500)),
        }];
        let sup = tokio::spawn(supervise(
            entries,
            cancel.clone(),
            None,
            |_, _| async {},
            Heartbeat::quiet(),
        ));
        tokio::time::sleep(Duration::from_millis(6800)).await;
        let before = p.starts.lock().unwrap().len();
        let stop = Instant::now();
        cancel.cancel();
        let crashed = tokio::time::timeout(Duration::from_secs(3), sup)
            .await
            .expect("supervise returns soon after the cancel")
            .unwrap()
            .unwrap();
        let took = stop.elapsed();
        assert!(crashed.is_empty());
        assert_eq!(p.most_running.load(Ordering::SeqCst), 1, "runs overlapped");
        let starts = p.starts.lock().unwrap().clone();
        let ends = p.ends.lock().unwrap().clone();
        // Ticks came every second; only those after a run ended started one: 2 or 3 in 6.8 s,
        // where overlapping runs would have started about 6.
        assert!((2..=3).contains(&starts.len()), "{} starts", starts.len());
        for (end, next) in ends.iter().zip(starts.iter().skip(1)) {
            assert!(next >= end, "a run started before the previous one ended");
        }
        // The call in flight finished; nothing started after the cancel.
        assert_eq!(starts.len(), before);
        assert_eq!(
            p.calls_begun.load(Ordering::SeqCst),
            p.calls_done.load(Ordering::SeqCst)
        );
        assert!(took < Duration::from_millis(1500), "shutdown took {took:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_interval_job_runs_at_once_then_waits_the_interval_after_each_run() {
        // Runs take 1.2 s; the interval is 1 s from the end of a run, not from its start.
        let p = Arc::new(Probe::default());
        let cancel = CancellationToken::new();
        let begin = Instant::now();
        let entries = vec![Entry {
            name: "every".into(),
            when: When::Every(Duration::from_secs(1)),
            work: probe_work(p.clone(), 3, Duration::from_millis(400)),
        }];
        let sup = tokio::spawn(supervise(
            entries,
            cancel.clone(),
            None,
            |_, _| async {},
            Heartbeat::quiet(),
        ));
        tokio::time::sleep(Duration::from_millis(5500)).await;
        cancel.cancel();
        sup.await.unwrap().unwrap();
        let starts = p.starts.lock().unwrap().clone();
        let ends = p.ends.lock().unwrap().clone();
        assert!(
            starts[0] - begin < Duration::from_millis(800),
            "first run at once"
        );
        assert!(starts.len() >= 2, "{} starts", starts.len());
        for (end, next) in ends.iter().zip(starts.iter().skip(1)) {
            let gap = *next - *end;
            assert!(
                gap >= Duration::from_secs(1) && gap < Duration::from_millis(3000),
                "gap {gap:?}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stopped_and_panicking_jobs_end_the_run_and_only_panics_count_as_crashes() {
        let fatal_runs = Arc::new(AtomicUsize::new(0));
        let f = fatal_runs.clone();
        let fatal: Work = Arc::new(move |_, _| {
            f.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ended::Stopped })
        });
        let boom: Work = Arc::new(|_, _| Box::pin(async { panic!("boom 13812345678") }));
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let r = recorded.clone();
        let entries = vec![
            Entry {
                name: "fatal".into(),
                when: When::Cron("* * * * * *".into()),
                work: fatal,
            },
            Entry {
                name: "boom".into(),
                when: When::Every(Duration::from_secs(1)),
                work: boom,
            },
        ];
        // No cancel: the run ends by itself once both jobs have stopped.
        let crashed = tokio::time::timeout(
            Duration::from_secs(10),
            supervise(
                entries,
                CancellationToken::new(),
                None,
                move |job, why| {
                    r.lock().unwrap().push((job, why));
                    async {}
                },
                Heartbeat::quiet(),
            ),
        )
        .await
        .expect("run ends when every job has stopped")
        .unwrap();
        assert_eq!(crashed, vec!["boom".to_string()]);
        let recorded = recorded.lock().unwrap();
        assert_eq!(recorded.len(), 1);
        assert!(recorded[0].1.contains("boom 138****5678"), "{recorded:?}");
        assert_eq!(
            fatal_runs.load(Ordering::SeqCst),
            1,
            "a stopped job runs no more"
        );
    }

    #[tokio::test]
    async fn a_schedule_the_scheduler_refuses_fails_the_run_naming_the_job() {
        let entries = vec![Entry {
            name: "nightly".into(),
            when: When::Cron("every night".into()),
            work: Arc::new(|_, _| Box::pin(async { Ended::Again })),
        }];
        let e = supervise(
            entries,
            CancellationToken::new(),
            None,
            |_, _| async {},
            Heartbeat::quiet(),
        )
        .await
        .unwrap_err();
        let text = format!("{e:#}");
        assert!(
            text.contains("nightly") && text.contains("every night"),
            "{text}"
        );
    }
}
