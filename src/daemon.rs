//! `qianzhi run`: each job and query job on its schedule (6-field cron in Beijing time, or an interval)
//! until SIGTERM, which lets the call in flight finish and starts no new one.

use anyhow::Result;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::JobConfig;
use crate::pipeline::{App, JobStopped, RunOptions, run_once};
use crate::query::config::QueryJobConfig;
use crate::query::{QueryStopped, run_query_once};

/// How long until the job's next run.
pub fn next_delay(job: &JobConfig) -> Duration {
    delay_until_next(job.interval(), job.schedule().map(|s| s.as_str()))
}

/// An interval, else the next time of a 6-field cron in Beijing time.
pub fn delay_until_next(interval: Option<Duration>, schedule: Option<&str>) -> Duration {
    if let Some(iv) = interval {
        return iv;
    }
    let Some(Ok(schedule)) = schedule.map(str::parse::<cron::Schedule>) else {
        return Duration::from_secs(60);
    };
    let now = crate::timefmt::now_beijing();
    schedule
        .after(&now)
        .next()
        .and_then(|t| (t - now).to_std().ok())
        .unwrap_or(Duration::from_secs(60))
}

async fn job_loop(app: Arc<App>, job: JobConfig, cancel: CancellationToken) {
    // Test hook: proves that a job task that dies is logged, recorded and fails `run`.
    if std::env::var("QIANZHI_FAILPOINT").is_ok_and(|v| v == "panic-in-job") {
        panic!("failpoint panic-in-job");
    }
    loop {
        match run_once(&app, &job.name, &cancel, &RunOptions::default()).await {
            Ok(o) if o.rows_read > 0 || !o.batches.is_empty() => info!(
                job = %job.name, rows = o.rows_read, delivered = o.delivered, invalid = o.invalid_rows,
                refused = o.refused_by_platform, batches = o.batches.len(), "run finished"
            ),
            Ok(_) => {}
            Err(e) if e.downcast_ref::<JobStopped>().is_some() => {
                error!(job = %job.name, error = %format!("{e:#}"), "JOB STOPPED: fix the cause and restart qianzhi; pending batches will be resent");
                return;
            }
            Err(e) => {
                warn!(job = %job.name, error = %crate::mask::mask_pii(&format!("{e:#}")), "run failed, will try again at the next scheduled time")
            }
        }
        if cancel.is_cancelled() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(next_delay(&job)) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

async fn query_loop(app: Arc<App>, job: QueryJobConfig, cancel: CancellationToken) {
    loop {
        match run_query_once(&app, &job.name, &cancel).await {
            Ok(o) if o.calls > 0 => info!(
                job = %job.name, calls = o.calls, found = o.found, no_result = o.no_result,
                rejected = o.rejected, fresh = o.fresh, budget_exhausted = o.budget_exhausted, "query run finished"
            ),
            Ok(_) => {}
            Err(e) if e.downcast_ref::<QueryStopped>().is_some() => {
                error!(job = %job.name, error = %format!("{e:#}"), "QUERY JOB STOPPED: fix the cause and restart qianzhi");
                return;
            }
            Err(e) => {
                warn!(job = %job.name, error = %crate::mask::mask_pii(&format!("{e:#}")), "query run failed, will try again at the next scheduled time")
            }
        }
        if cancel.is_cancelled() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay_until_next(job.interval(), job.schedule().map(|s| s.as_str()))) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

pub async fn run(app: Arc<App>, cancel: CancellationToken) -> Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    let mut names = std::collections::HashMap::new();
    for q in app.cfg.queries.iter().filter(|q| q.enabled) {
        info!(job = %q.name, provider = %q.provider, subjects = %q.subjects, "query job scheduled");
        let h = tasks.spawn(query_loop(app.clone(), q.clone(), cancel.clone()));
        names.insert(h.id(), q.name.clone());
    }
    for job in app.cfg.jobs.iter().filter(|j| j.enabled) {
        info!(job = %job.name, source = %job.source, data_type = %job.data_type, "job scheduled");
        let h = tasks.spawn(job_loop(app.clone(), job.clone(), cancel.clone()));
        names.insert(h.id(), job.name.clone());
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    let mut crashed = Vec::new();
    while let Some(done) = tasks.join_next_with_id().await {
        let Err(e) = done else { continue };
        let job = names.get(&e.id()).cloned().unwrap_or_default();
        if let Some(why) = task_failure(&job, e) {
            error!(job = %job, error = %why, "JOB STOPPED: its task failed; the other jobs go on");
            if let Err(e) = app.db.record_run(&job, Some(&why)).await {
                warn!(job = %job, error = %format!("{e:#}"), "could not record the failure in qz_cursor");
            }
            crashed.push(job);
        }
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    info!("all jobs stopped");
    if !crashed.is_empty() {
        anyhow::bail!(
            "the task of job(s) {} failed (see the log and `qianzhi status`); \
             作业任务异常退出：{}",
            crashed.join(", "),
            crashed.join(", ")
        );
    }
    Ok(())
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
    fn cron_next_is_within_the_period() {
        let cfg = crate::config::parse_with_env(
            "[database]\nurl='sqlite://x'\n[unit]\nuscc='11620000MB199916XB'\nname='x'\nregion_code='440100'\n[[job]]\nname='a'\ndata_type='accept'\nsource='s'\nkey=['id']\nschedule='*/5 * * * * *'\n",
            &[],
        )
        .unwrap();
        let d = next_delay(&cfg.jobs[0]);
        assert!(d <= Duration::from_secs(5), "{d:?}");
    }
}
