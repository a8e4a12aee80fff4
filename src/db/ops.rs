//! What operators read about the jobs: the retry state and the result of the last run in
//! `qz_cursor` (migration 9), so `qianzhi status` in another process sees them; and the
//! backlog that `/metrics` reads when it is scraped (small indexed queries over pending rows).

use anyhow::Result;
use sea_query::{Asterisk, Expr, ExprTrait, InsertStatement, JoinType, OnConflict, Query};
use sqlx::Row;

use super::{Db, lit};
use crate::timefmt::now_text;

/// The retry state of a job as stored: its calls fail temporarily and are being resent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredRetry {
    #[serde(serialize_with = "crate::timefmt::json::time")]
    pub since: String,
    #[serde(serialize_with = "crate::timefmt::json::time")]
    pub last_failure_at: String,
    pub failures: i64,
    /// The whole error chain of the latest failure, masked.
    pub cause: String,
}

/// A retry streak to store: the first and the latest failure, Beijing time.
pub struct RetryNote<'a> {
    pub since: &'a str,
    pub last: &'a str,
    pub failures: i64,
    pub cause: &'a str,
}

/// How a job's latest run ended, and its retry streak if one is open.
#[derive(Debug, Clone, Default)]
pub struct RunState {
    /// ok, failed or interrupted; None before migration 9's first run.
    pub last_run_result: Option<String>,
    pub retrying: Option<StoredRetry>,
}

/// A job's pending work, for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backlog {
    pub batches: i64,
    pub calls: i64,
    /// `created_at` of the oldest pending batch (Beijing time).
    pub oldest_batch_at: Option<String>,
}

const RETRY_COLS: [&str; 4] = [
    "retrying_since",
    "retry_last_at",
    "retry_failures",
    "retry_error",
];

fn retry_upsert(job: &str, r: &RetryNote<'_>) -> InsertStatement {
    Query::insert()
        .into_table("qz_cursor")
        .columns(["job"].into_iter().chain(RETRY_COLS))
        .values_panic([
            Expr::val(job),
            Expr::val(r.since),
            Expr::val(r.last),
            Expr::val(r.failures),
            Expr::val(r.cause),
        ])
        .on_conflict(
            OnConflict::column("job")
                .update_columns(RETRY_COLS)
                .to_owned(),
        )
        .to_owned()
}

fn interrupted_upsert(job: &str, now: &str) -> InsertStatement {
    let mut on = OnConflict::column("job");
    on.update_columns(["last_run_at", "last_run_result"]);
    for c in RETRY_COLS {
        on.value(c, Expr::null());
    }
    Query::insert()
        .into_table("qz_cursor")
        .columns(["job", "last_run_at", "last_run_result"])
        .values_panic([Expr::val(job), Expr::val(now), Expr::val("interrupted")])
        .on_conflict(on)
        .to_owned()
}

/// How a run of a delivery or query job ended, for [`Db::record_run_end`].
pub enum RunEnd<'a> {
    Done,
    Interrupted,
    Failed(&'a anyhow::Error),
}

impl<'a> RunEnd<'a> {
    /// The end of a run with this result; `interrupted` tells whether an Ok run was cut short.
    pub fn of<T>(result: &'a Result<T>, interrupted: impl Fn(&T) -> bool) -> Self {
        match result {
            Ok(o) if interrupted(o) => RunEnd::Interrupted,
            Ok(_) => RunEnd::Done,
            Err(e) => RunEnd::Failed(e),
        }
    }
}

impl Db {
    /// Stores an open retry streak (one write per failure, seconds apart at most).
    pub async fn record_retry(&self, job: &str, r: &RetryNote<'_>) -> Result<()> {
        self.stmt(&retry_upsert(job, r)).execute(&self.any).await?;
        Ok(())
    }

    /// The platform answered again: the streak is over.
    pub async fn clear_retry(&self, job: &str) -> Result<()> {
        let mut q = Query::update();
        q.table("qz_cursor");
        for c in RETRY_COLS {
            q.value(c, Expr::null());
        }
        q.and_where(Expr::col("job").eq(job));
        self.stmt(&q).execute(&self.any).await?;
        Ok(())
    }

    /// Writes how a run ended to qz_cursor, under its lease: an interrupted run (SIGTERM,
    /// Ctrl-C) is not a success, and a failure's whole chain is stored masked. A write that
    /// fails is logged, not returned: the run's own result is what its caller reports.
    pub async fn record_run_end(&self, fence: &super::lease::Fence, end: RunEnd<'_>) {
        let recorded = match end {
            RunEnd::Interrupted => self.record_interrupted(fence).await,
            RunEnd::Done => self.record_run(fence, None).await,
            RunEnd::Failed(e) => {
                let err = crate::mask::mask_pii(&format!("{e:#}"));
                self.record_run(fence, Some(&err)).await
            }
        };
        if let Err(e) = recorded {
            tracing::warn!(job = %fence.job, error = %format!("{e:#}"), "could not record the run in qz_cursor");
        }
    }

    /// A run that stopped early on SIGTERM or Ctrl-C: it ran, it did not succeed, and it did
    /// not fail either, so `last_success_at` and `last_error` stay as they were.
    /// Under the run's lease, like every other record of how a run ended.
    async fn record_interrupted(&self, fence: &super::lease::Fence) -> Result<()> {
        let q = interrupted_upsert(&fence.job, &now_text());
        super::retry::retrying("record_interrupted", || self.exec_fenced(fence, &q)).await
    }

    pub async fn run_state(&self, job: &str) -> Result<RunState> {
        let q = Query::select()
            .column("last_run_result")
            .columns(RETRY_COLS)
            .from("qz_cursor")
            .and_where(Expr::col("job").eq(job))
            .to_owned();
        let Some(r) = self.stmt(&q).fetch_optional(&self.any).await? else {
            return Ok(RunState::default());
        };
        let since: Option<String> = r.try_get(1)?;
        let retrying = match since {
            Some(since) => Some(StoredRetry {
                last_failure_at: r
                    .try_get::<Option<String>, _>(2)?
                    .unwrap_or_else(|| since.clone()),
                since,
                failures: r.try_get::<Option<i64>, _>(3)?.unwrap_or(1),
                cause: r.try_get::<Option<String>, _>(4)?.unwrap_or_default(),
            }),
            None => None,
        };
        Ok(RunState {
            last_run_result: r.try_get(0)?,
            retrying,
        })
    }

    /// Pending batches, their pending calls and the oldest pending batch, per job with any.
    pub async fn backlog(&self) -> Result<Vec<(String, Backlog)>> {
        let q = Query::select()
            .column("job")
            .expr(Expr::col(Asterisk).count())
            .expr(Expr::col("created_at").min())
            .from("qz_batch")
            .and_where(Expr::col("state").eq(lit("pending")))
            .group_by_col("job")
            .to_owned();
        let mut out: Vec<(String, Backlog)> = Vec::new();
        for r in self.stmt(&q).fetch_all(&self.any).await? {
            out.push((
                r.try_get(0)?,
                Backlog {
                    batches: r.try_get(1)?,
                    calls: 0,
                    oldest_batch_at: r.try_get(2)?,
                },
            ));
        }
        let q = Query::select()
            .column(("b", "job"))
            .expr(Expr::col(Asterisk).count())
            .from_as("qz_outbox", "o")
            .join_as(
                JoinType::InnerJoin,
                "qz_batch",
                "b",
                Expr::col(("b", "cd_batch")).equals(("o", "cd_batch")),
            )
            .and_where(Expr::col(("b", "state")).eq(lit("pending")))
            .and_where(Expr::col(("o", "state")).eq(lit("pending")))
            .group_by_col(("b", "job"))
            .to_owned();
        for r in self.stmt(&q).fetch_all(&self.any).await? {
            let job: String = r.try_get(0)?;
            let calls: i64 = r.try_get(1)?;
            if let Some((_, b)) = out.iter_mut().find(|(j, _)| *j == job) {
                b.calls = calls;
            }
        }
        Ok(out)
    }

    /// Every job's last success (Beijing time), for `/metrics`.
    pub async fn last_successes(&self) -> Result<Vec<(String, String)>> {
        let q = Query::select()
            .columns(["job", "last_success_at"])
            .from("qz_cursor")
            .and_where(Expr::col("last_success_at").is_not_null())
            .to_owned();
        let mut out = Vec::new();
        for r in self.stmt(&q).fetch_all(&self.any).await? {
            out.push((r.try_get(0)?, r.try_get(1)?));
        }
        Ok(out)
    }
}
