//! `[http] listen`: `/metrics` (Prometheus text format) and `/healthz` for `qianzhi run`.
//!
//! Served with axum, which the crate already builds for its simulators: no new dependency and
//! the same hyper stack as the HTTP client. Counters and job states come from memory
//! (`metrics`, bumped by the pipeline with atomics); the backlog, last successes and today's
//! credit-query spend are read from the database per scrape with a few small queries over
//! indexed pending rows, so they are right even for work another process did (`once`).

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::db::ops::Backlog;
use crate::metrics::{JobKind, JobState};
use crate::pipeline::App;

/// How long one scrape waits for the database before it answers without those values.
const DB_WAIT: Duration = Duration::from_secs(3);

/// Binds `addr` (an address in use is a start-up error) and serves until `cancel`.
pub async fn serve(
    app: Arc<App>,
    addr: SocketAddr,
    cancel: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("http.listen {addr}: cannot listen (无法监听)"))?;
    let local = listener.local_addr()?;
    info!(listen = %local, "serving /metrics and /healthz");
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(app);
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await;
        if let Err(e) = served {
            warn!(error = %e, "the metrics endpoint stopped");
        }
    }))
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let text = render(&app).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// What the database says at scrape time; None when it could not be read in time.
struct FromDb {
    backlog: Vec<(String, Backlog)>,
    last_success: Vec<(String, String)>,
    providers: Vec<crate::status::ProviderStatus>,
}

async fn from_db(app: &App) -> Option<FromDb> {
    let read = async {
        Ok::<_, anyhow::Error>(FromDb {
            backlog: app.db.backlog().await?,
            last_success: app.db.last_successes().await?,
            providers: crate::status::provider_statuses(&app.status_app()).await?,
        })
    };
    match tokio::time::timeout(DB_WAIT, read).await {
        Ok(Ok(d)) => Some(d),
        Ok(Err(e)) => {
            warn!(error = %format!("{e:#}"), "metrics: cannot read the control tables");
            None
        }
        Err(_) => {
            warn!("metrics: the database did not answer in time");
            None
        }
    }
}

/// The whole exposition, in the Prometheus text format (version 0.0.4).
pub async fn render(app: &App) -> String {
    let db = from_db(app).await;
    let mut x = Exposition::default();
    x.family(
        "qianzhi_build_info",
        "gauge",
        "Version of the running qianzhi (always 1).",
    );
    x.sample(
        "qianzhi_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    x.family(
        "qianzhi_database_up",
        "gauge",
        "Whether this scrape could read the control tables (1) or not (0).",
    );
    x.sample("qianzhi_database_up", &[], i64::from(db.is_some()));
    job_counters(&mut x, app);
    job_states(&mut x, app, db.as_ref());
    if let Some(db) = &db {
        backlog(&mut x, app, db);
        providers(&mut x, db);
    }
    x.out
}

/// Counters of the delivery jobs since the process started.
fn job_counters(x: &mut Exposition, app: &App) {
    let jobs: Vec<_> = app
        .metrics
        .jobs()
        .filter(|(_, m)| m.kind == JobKind::Job)
        .collect();
    type Get = fn(&crate::metrics::JobMetrics) -> u64;
    let counters: [(&str, &str, Get); 4] = [
        (
            "qianzhi_job_rows_read_total",
            "Source rows read and committed (valid or not).",
            |m| m.rows_read(),
        ),
        (
            "qianzhi_job_rows_delivered_total",
            "Records the platform accepted.",
            |m| m.rows_delivered(),
        ),
        (
            "qianzhi_job_rows_invalid_total",
            "Rows that failed validation and became error rows.",
            |m| m.rows_invalid(),
        ),
        (
            "qianzhi_job_rows_refused_total",
            "Records the platform refused (after splitting).",
            |m| m.rows_refused(),
        ),
    ];
    for (name, help, get) in counters {
        x.family(name, "counter", help);
        for (job, m) in &jobs {
            x.sample(name, &[("job", *job)], get(m));
        }
    }
}

/// Running, retrying, stopped, lease and last success of every job (delivery and query).
fn job_states(x: &mut Exposition, app: &App, db: Option<&FromDb>) {
    let states: Vec<(&str, JobState)> = app.metrics.jobs().map(|(j, m)| (j, m.state())).collect();
    x.family(
        "qianzhi_job_running",
        "gauge",
        "Whether a run of the job is going on now.",
    );
    for (job, s) in &states {
        let running = !matches!(s, JobState::Idle | JobState::Stopped(_));
        x.sample("qianzhi_job_running", &[("job", *job)], i64::from(running));
    }
    x.family(
        "qianzhi_job_retrying",
        "gauge",
        "Whether the job's calls fail temporarily and are being resent (1) or not (0).",
    );
    for (job, s) in &states {
        let retrying = matches!(s, JobState::Retrying(_));
        x.sample(
            "qianzhi_job_retrying",
            &[("job", *job)],
            i64::from(retrying),
        );
    }
    x.family(
        "qianzhi_job_consecutive_failures",
        "gauge",
        "Temporary failures in a row of the job's current retry streak (0 when none).",
    );
    for (job, s) in &states {
        let n = match s {
            JobState::Retrying(r) => r.failures,
            _ => 0,
        };
        x.sample("qianzhi_job_consecutive_failures", &[("job", *job)], n);
    }
    x.family(
        "qianzhi_job_stopped",
        "gauge",
        "Whether the job stopped (JOB STOPPED) and is scheduled no more.",
    );
    for (job, s) in &states {
        let stopped = matches!(s, JobState::Stopped(_));
        x.sample("qianzhi_job_stopped", &[("job", *job)], i64::from(stopped));
    }
    let leases: Vec<(&str, bool)> = app
        .metrics
        .jobs()
        .filter_map(|(j, m)| m.lease_held().map(|h| (j, h)))
        .collect();
    if !leases.is_empty() {
        x.family(
            "qianzhi_job_lease_held",
            "gauge",
            "Whether this process holds the job's lease.",
        );
        for (job, held) in leases {
            x.sample("qianzhi_job_lease_held", &[("job", job)], i64::from(held));
        }
    }
    let Some(db) = db else {
        return;
    };
    x.family(
        "qianzhi_job_last_success_timestamp_seconds",
        "gauge",
        "Unix time of the job's last successful run (any process).",
    );
    for (job, at) in &db.last_success {
        if app.metrics.job(job).is_none() {
            continue;
        }
        if let Some(t) = crate::timefmt::parse_stored(at) {
            x.sample(
                "qianzhi_job_last_success_timestamp_seconds",
                &[("job", job.as_str())],
                t.timestamp(),
            );
        }
    }
}

/// Pending batches and calls and the age of the oldest pending batch, per delivery job.
fn backlog(x: &mut Exposition, app: &App, db: &FromDb) {
    let now = chrono::Utc::now().timestamp();
    let jobs: Vec<(&str, Backlog)> = app
        .metrics
        .jobs()
        .filter(|(_, m)| m.kind == JobKind::Job)
        .map(|(j, _)| {
            let b = db.backlog.iter().find(|(n, _)| n == j);
            (j, b.map(|(_, b)| b.clone()).unwrap_or_default())
        })
        .collect();
    x.family(
        "qianzhi_job_batches_pending",
        "gauge",
        "Batches (Cd_Batch) committed to the outbox and not yet settled.",
    );
    for (job, b) in &jobs {
        x.sample("qianzhi_job_batches_pending", &[("job", *job)], b.batches);
    }
    x.family(
        "qianzhi_job_calls_pending",
        "gauge",
        "Calls of pending batches not yet sent and acknowledged.",
    );
    for (job, b) in &jobs {
        x.sample("qianzhi_job_calls_pending", &[("job", *job)], b.calls);
    }
    x.family(
        "qianzhi_job_oldest_pending_batch_age_seconds",
        "gauge",
        "Age of the job's oldest pending batch (0 when none is pending).",
    );
    for (job, b) in &jobs {
        let age = b
            .oldest_batch_at
            .as_deref()
            .and_then(crate::timefmt::parse_stored)
            .map(|t| (now - t.timestamp()).max(0))
            .unwrap_or(0);
        x.sample(
            "qianzhi_job_oldest_pending_batch_age_seconds",
            &[("job", *job)],
            age,
        );
    }
}

/// Today's (Beijing) calls, billed calls and budget left per credit-query provider.
fn providers(x: &mut Exposition, db: &FromDb) {
    type Get = fn(&crate::status::ProviderStatus) -> i64;
    let gauges: [(&str, &str, Get); 4] = [
        (
            "qianzhi_provider_calls_today",
            "Credit-query calls today (Beijing day).",
            |p| p.calls_today,
        ),
        (
            "qianzhi_provider_billed_calls_today",
            "Credit-query calls today that the provider bills.",
            |p| p.billed_today,
        ),
        (
            "qianzhi_provider_budget_left",
            "Calls left of today's daily budget.",
            |p| p.budget_left,
        ),
        (
            "qianzhi_provider_daily_budget",
            "The provider's configured daily_budget.",
            |p| p.daily_budget,
        ),
    ];
    if db.providers.is_empty() {
        return;
    }
    for (name, help, get) in gauges {
        x.family(name, "gauge", help);
        for p in &db.providers {
            x.sample(name, &[("provider", p.provider.as_str())], get(p));
        }
    }
}

/// `/healthz`: 200 when every enabled job is running or idle, else 503; the body names each
/// job's state and, for one that is stopped or retrying, why.
async fn healthz(State(app): State<Arc<App>>) -> Response {
    let (healthy, body) = health(&app);
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

/// Whether every enabled job is healthy, and the JSON body saying so.
pub fn health(app: &App) -> (bool, serde_json::Value) {
    let enabled = app
        .cfg
        .jobs
        .iter()
        .filter(|j| j.enabled)
        .map(|j| j.name.as_str())
        .chain(
            app.cfg
                .queries
                .iter()
                .filter(|q| q.enabled)
                .map(|q| q.name.as_str()),
        );
    let mut healthy = true;
    let mut jobs = Vec::new();
    for name in enabled {
        let Some(m) = app.metrics.job(name) else {
            continue;
        };
        let state = m.state();
        healthy &= state.healthy();
        let mut j = json!({ "job": name, "kind": m.kind.as_str(), "state": state.name() });
        match &state {
            JobState::Retrying(r) => {
                j["since"] = json!(r.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, false));
                j["failures"] = json!(r.failures);
                j["why"] = json!(r.cause);
            }
            JobState::Stopped(why) => j["why"] = json!(why),
            JobState::Idle | JobState::Running => {}
        }
        jobs.push(j);
    }
    let status = if healthy { "ok" } else { "unhealthy" };
    (healthy, json!({ "status": status, "jobs": jobs }))
}

/// The text format, one family (HELP, TYPE, samples) at a time.
#[derive(Default)]
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// A label value as the text format wants it: backslash, double quote and newline escaped.
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_written_in_the_text_format() {
        let mut x = Exposition::default();
        x.family("qianzhi_job_retrying", "gauge", "Retrying.");
        x.sample("qianzhi_job_retrying", &[("job", "a\"b\\c\nd")], 1);
        x.sample("qianzhi_database_up", &[], 0);
        assert_eq!(
            x.out,
            "# HELP qianzhi_job_retrying Retrying.\n# TYPE qianzhi_job_retrying gauge\n\
             qianzhi_job_retrying{job=\"a\\\"b\\\\c\\nd\"} 1\nqianzhi_database_up 0\n"
        );
    }
}
