//! What the running process knows about its jobs, kept in memory for `/metrics`, `/healthz`,
//! systemd's `STATUS=` text and the progress line of `once`: counters the pipeline bumps with
//! atomics, and each job's state (running, retrying since when and why, stopped and why).
//!
//! Nothing here reads the database: the backlog and the credit-query spend, which other
//! processes change too, are read by the HTTP layer when it is scraped (`db::ops`).

use chrono::{DateTime, FixedOffset};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI8, AtomicU64, Ordering};

/// A delivery job (`[[job]]`) or a credit-query job (`[[query]]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Job,
    Query,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Job => "job",
            JobKind::Query => "query",
        }
    }
}

/// A job whose calls fail temporarily, as the pipeline last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retrying {
    /// The first failure of this streak.
    pub since: DateTime<FixedOffset>,
    /// The latest failure.
    pub last: DateTime<FixedOffset>,
    /// Failures in a row, the first one included.
    pub failures: u64,
    /// The whole error chain of the latest failure, masked.
    pub cause: String,
}

/// The state of one job as `/healthz` and `STATUS=` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Idle,
    Running,
    Retrying(Retrying),
    /// JOB STOPPED: scheduled no more; the reason, masked.
    Stopped(String),
}

impl JobState {
    pub fn name(&self) -> &'static str {
        match self {
            JobState::Idle => "idle",
            JobState::Running => "running",
            JobState::Retrying(_) => "retrying",
            JobState::Stopped(_) => "stopped",
        }
    }

    /// Whether `/healthz` counts the job as healthy.
    pub fn healthy(&self) -> bool {
        matches!(self, JobState::Idle | JobState::Running)
    }
}

/// One job's counters and state. Counters count since the process started (Prometheus
/// counters); they are bumped once per committed page or delivered batch, never per record.
#[derive(Debug)]
pub struct JobMetrics {
    pub kind: JobKind,
    rows_read: AtomicU64,
    rows_delivered: AtomicU64,
    rows_invalid: AtomicU64,
    rows_refused: AtomicU64,
    running: AtomicBool,
    /// A cheap "is a retry streak open?" for the path every accepted call takes.
    retrying_flag: AtomicBool,
    retrying: Mutex<Option<Retrying>>,
    stopped: Mutex<Option<String>>,
    /// -1 while leases are not wired (the gauge is then left out), else 0 or 1.
    lease_held: AtomicI8,
}

impl JobMetrics {
    fn new(kind: JobKind) -> Self {
        JobMetrics {
            kind,
            rows_read: AtomicU64::new(0),
            rows_delivered: AtomicU64::new(0),
            rows_invalid: AtomicU64::new(0),
            rows_refused: AtomicU64::new(0),
            running: AtomicBool::new(false),
            retrying_flag: AtomicBool::new(false),
            retrying: Mutex::new(None),
            stopped: Mutex::new(None),
            lease_held: AtomicI8::new(-1),
        }
    }

    /// A page was committed: `rows` read from the source, `invalid` of them error rows.
    pub fn add_read(&self, rows: usize, invalid: usize) {
        self.rows_read.fetch_add(rows as u64, Ordering::Relaxed);
        self.rows_invalid
            .fetch_add(invalid as u64, Ordering::Relaxed);
    }

    /// Records the platform accepted and refused (after splitting).
    pub fn add_delivered(&self, delivered: usize, refused: usize) {
        self.rows_delivered
            .fetch_add(delivered as u64, Ordering::Relaxed);
        self.rows_refused
            .fetch_add(refused as u64, Ordering::Relaxed);
    }

    pub fn rows_read(&self) -> u64 {
        self.rows_read.load(Ordering::Relaxed)
    }
    pub fn rows_delivered(&self) -> u64 {
        self.rows_delivered.load(Ordering::Relaxed)
    }
    pub fn rows_invalid(&self) -> u64 {
        self.rows_invalid.load(Ordering::Relaxed)
    }
    pub fn rows_refused(&self) -> u64 {
        self.rows_refused.load(Ordering::Relaxed)
    }

    pub fn set_running(&self, running: bool) {
        self.running.store(running, Ordering::Relaxed);
    }

    /// A temporary failure at `now`: opens a retry streak or extends it. Returns the streak.
    pub fn retry_failed(&self, now: DateTime<FixedOffset>, cause: &str) -> Retrying {
        let mut r = self.retrying.lock().expect("retry state");
        let streak = match r.take() {
            Some(mut s) => {
                s.failures += 1;
                s.last = now;
                s.cause = cause.to_string();
                s
            }
            None => Retrying {
                since: now,
                last: now,
                failures: 1,
                cause: cause.to_string(),
            },
        };
        *r = Some(streak.clone());
        self.retrying_flag.store(true, Ordering::Release);
        streak
    }

    /// The platform answered (or the run ended): the streak is over. True when one was open.
    pub fn retry_ended(&self) -> bool {
        if !self.retrying_flag.swap(false, Ordering::AcqRel) {
            return false;
        }
        self.retrying.lock().expect("retry state").take().is_some()
    }

    pub fn retrying(&self) -> Option<Retrying> {
        self.retrying.lock().expect("retry state").clone()
    }

    /// JOB STOPPED with this (masked) reason.
    pub fn set_stopped(&self, why: &str) {
        *self.stopped.lock().expect("stopped state") = Some(why.to_string());
    }

    /// The hook for leases: whether this process holds the job's lease. Until something calls
    /// it, the lease gauge is not exported.
    pub fn set_lease_held(&self, held: bool) {
        self.lease_held.store(i8::from(held), Ordering::Relaxed);
    }

    /// None while leases are not wired.
    pub fn lease_held(&self) -> Option<bool> {
        match self.lease_held.load(Ordering::Relaxed) {
            -1 => None,
            v => Some(v == 1),
        }
    }

    pub fn state(&self) -> JobState {
        if let Some(why) = self.stopped.lock().expect("stopped state").clone() {
            return JobState::Stopped(why);
        }
        if let Some(r) = self.retrying() {
            return JobState::Retrying(r);
        }
        if self.running.load(Ordering::Relaxed) {
            JobState::Running
        } else {
            JobState::Idle
        }
    }
}

/// Every job's metrics, fixed when the application is built (the jobs never change while it
/// runs), so looking one up takes no lock.
#[derive(Debug, Default)]
pub struct Metrics {
    jobs: BTreeMap<String, JobMetrics>,
}

impl Metrics {
    /// Metrics for these jobs, by name.
    pub fn new<'a>(jobs: impl IntoIterator<Item = (&'a str, JobKind)>) -> Self {
        Metrics {
            jobs: jobs
                .into_iter()
                .map(|(name, kind)| (name.to_string(), JobMetrics::new(kind)))
                .collect(),
        }
    }

    pub fn job(&self, name: &str) -> Option<&JobMetrics> {
        self.jobs.get(name)
    }

    /// Every job, by name.
    pub fn jobs(&self) -> impl Iterator<Item = (&str, &JobMetrics)> {
        self.jobs.iter().map(|(n, m)| (n.as_str(), m))
    }
}

/// The short root cause of an error chain for one-line summaries (`STATUS=`): the innermost
/// link ("Connection refused (os error 111)"), or the status of an HTTP answer ("HTTP 503").
pub fn root_cause(chain: &str) -> String {
    let chain = chain.trim();
    let short = if let Some(rest) = chain.strip_prefix("HTTP ") {
        let code: String = rest.chars().take_while(char::is_ascii_digit).collect();
        format!("HTTP {code}")
    } else {
        chain
            .rsplit(": ")
            .next()
            .unwrap_or(chain)
            .trim()
            .to_string()
    };
    let short = if short.is_empty() {
        chain.to_string()
    } else {
        short
    };
    if short.chars().count() > 80 {
        let cut: String = short.chars().take(77).collect();
        format!("{cut}...")
    } else {
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    #[test]
    fn a_retry_streak_opens_counts_and_closes() {
        let m = Metrics::new([("accept", JobKind::Job), ("penalties", JobKind::Query)]);
        let j = m.job("accept").unwrap();
        assert_eq!(j.state(), JobState::Idle);
        assert!(!j.retry_ended(), "no streak to end");
        j.set_running(true);
        assert_eq!(j.state(), JobState::Running);
        let first = at("2026-11-20T10:02:00+08:00");
        j.retry_failed(first, "HTTP 503: busy");
        let s = j.retry_failed(at("2026-11-20T10:02:05+08:00"), "cannot reach: refused");
        assert_eq!((s.since, s.failures), (first, 2));
        assert_eq!(s.cause, "cannot reach: refused");
        assert!(matches!(j.state(), JobState::Retrying(r) if r.failures == 2));
        assert!(!j.state().healthy());
        assert!(j.retry_ended());
        assert_eq!(j.retrying(), None);
        assert_eq!(j.state(), JobState::Running);
        j.set_stopped("401");
        assert_eq!(j.state(), JobState::Stopped("401".into()));
        assert!(m.job("nope").is_none());
        assert_eq!(m.jobs().count(), 2);
    }

    #[test]
    fn counters_add_up_and_the_lease_gauge_is_off_until_wired() {
        let m = Metrics::new([("accept", JobKind::Job)]);
        let j = m.job("accept").unwrap();
        j.add_read(10, 2);
        j.add_read(5, 0);
        j.add_delivered(12, 1);
        assert_eq!(
            (
                j.rows_read(),
                j.rows_invalid(),
                j.rows_delivered(),
                j.rows_refused()
            ),
            (15, 2, 12, 1)
        );
        assert_eq!(j.lease_held(), None);
        j.set_lease_held(true);
        assert_eq!(j.lease_held(), Some(true));
        j.set_lease_held(false);
        assert_eq!(j.lease_held(), Some(false));
    }

    #[test]
    fn root_causes_are_the_innermost_link_or_the_http_status() {
        for (chain, want) in [
            (
                "cannot reach http://127.0.0.1:9/x: error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)",
                "Connection refused (os error 111)",
            ),
            ("HTTP 503: {\"errMsg\":\"busy: try later\"}", "HTTP 503"),
            ("answer is not JSON", "answer is not JSON"),
            ("", ""),
        ] {
            assert_eq!(root_cause(chain), want, "{chain}");
        }
        assert_eq!(root_cause(&"x".repeat(200)).chars().count(), 80);
    }
}
