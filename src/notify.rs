//! What `qianzhi run` tells systemd over `$NOTIFY_SOCKET` (sd_notify(3), via the `sd-notify`
//! crate): `READY=1` once every job is scheduled, `WATCHDOG=1` from the scheduler loop itself
//! (so a loop that hangs is restarted by `WatchdogSec=`), `STATUS=` text for `systemctl
//! status`, and `STOPPING=1`. Without `$NOTIFY_SOCKET` every message is dropped.

use sd_notify::NotifyState;
use std::time::Duration;

use crate::metrics::{JobState, Metrics};

/// How often the scheduler loop sends `STATUS=` when systemd asks for no watchdog.
const STATUS_EVERY: Duration = Duration::from_secs(10);

/// The notifier of this process, with its watchdog period when systemd set one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Notifier {
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From `$WATCHDOG_USEC` (and `$WATCHDOG_PID`, which must be this process when set, as
    /// sd_watchdog_enabled(3) says; the crate's own check also requires it to be set).
    pub fn from_env() -> Notifier {
        let usec = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|u| *u > 0);
        let ours = std::env::var("WATCHDOG_PID")
            .ok()
            .is_none_or(|p| p.trim() == std::process::id().to_string());
        Notifier {
            watchdog: usec.filter(|_| ours).map(Duration::from_micros),
        }
    }

    /// How often the scheduler loop pings: half the watchdog period (systemd's advice), or
    /// [`STATUS_EVERY`] to refresh `STATUS=` alone.
    pub fn period(&self) -> Duration {
        match self.watchdog {
            Some(w) => (w / 2).max(Duration::from_millis(100)),
            None => STATUS_EVERY,
        }
    }

    pub fn ready(&self, status: &str) {
        send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// One beat of the scheduler loop: `WATCHDOG=1` when systemd watches, and the status.
    pub fn beat(&self, status: &str) {
        if self.watchdog.is_some() {
            send(&[NotifyState::Watchdog, NotifyState::Status(status)]);
        } else {
            send(&[NotifyState::Status(status)]);
        }
    }

    pub fn stopping(&self, status: &str) {
        send(&[NotifyState::Stopping, NotifyState::Status(status)]);
    }
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// One line for `STATUS=`: "7 jobs, 2 running, accept retrying since 10:02 (Connection
/// refused (os error 111))"; stopped jobs are named with their root cause too.
pub fn status_line(metrics: &Metrics, enabled: &[&str]) -> String {
    let mut parts = vec![format!("{} jobs", enabled.len())];
    let states: Vec<(&str, JobState)> = enabled
        .iter()
        .filter_map(|j| metrics.job(j).map(|m| (*j, m.state())))
        .collect();
    let running = states
        .iter()
        .filter(|(_, s)| *s == JobState::Running)
        .count();
    if running > 0 {
        parts.push(format!("{running} running"));
    }
    for (job, s) in &states {
        match s {
            JobState::Retrying(r) => parts.push(format!(
                "{job} retrying since {} ({})",
                r.since.format("%H:%M"),
                crate::metrics::root_cause(&r.cause)
            )),
            JobState::Stopped(why) => parts.push(format!(
                "{job} stopped ({})",
                crate::metrics::root_cause(why)
            )),
            JobState::Idle | JobState::Running => {}
        }
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::JobKind;

    #[test]
    fn the_status_line_names_retrying_and_stopped_jobs_with_their_root_cause() {
        let m = Metrics::new([
            ("accept", JobKind::Job),
            ("material", JobKind::Job),
            ("penalties", JobKind::Query),
            ("off", JobKind::Job),
        ]);
        let enabled = ["accept", "material", "penalties"];
        assert_eq!(status_line(&m, &enabled), "3 jobs");
        m.job("material").unwrap().set_running(true);
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-20T10:02:30+08:00").unwrap();
        m.job("accept").unwrap().retry_failed(
            at,
            "cannot reach http://127.0.0.1:9/x: error sending request: Connection refused (os error 111)",
        );
        m.job("penalties")
            .unwrap()
            .set_stopped("HTTP 401: wrong key");
        assert_eq!(
            status_line(&m, &enabled),
            "3 jobs, 1 running, accept retrying since 10:02 (Connection refused (os error 111)), \
             penalties stopped (HTTP 401)"
        );
    }
}
