//! When a job runs: 6-field cron in Beijing time or an interval, as tokio-cron-scheduler
//! jobs that only tell the supervisor their time has come.

use anyhow::Result;
use chrono::FixedOffset;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio_cron_scheduler::{Job, JobScheduler};
use tracing::warn;

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
pub(super) fn beijing() -> FixedOffset {
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

/// A cron job in Beijing time that only tells the supervisor its time has come.
/// `Job::new_async_tz` parses with day-of-month AND day-of-week (both must match).
pub(super) fn cron_job(expr: &str, fire: UnboundedSender<usize>, i: usize) -> Result<Job> {
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
pub(super) async fn rerun_after(
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
pub(super) fn one_shot_delay(interval: Duration, now_subsec_nanos: u32) -> Duration {
    let wanted = interval + Duration::from_nanos(now_subsec_nanos.into());
    let secs = wanted.as_secs() + u64::from(wanted.subsec_nanos() > 0);
    Duration::from_secs(secs)
}
