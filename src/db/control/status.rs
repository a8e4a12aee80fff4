//! What `qianzhi status` reads of one job's control rows: position, last run, pending
//! batches and records, open errors, reconciliation uploads.

use super::*;

/// Everything `status` shows for one job. In JSON, times are RFC 3339 with `+08:00`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct JobStatus {
    pub job: String,
    pub position: Option<serde_json::Value>,
    #[serde(serialize_with = "crate::timefmt::json::opt_time")]
    pub last_run_at: Option<String>,
    /// ok, failed or interrupted (migration 9).
    pub last_run_result: Option<String>,
    #[serde(serialize_with = "crate::timefmt::json::opt_time")]
    pub last_success_at: Option<String>,
    /// The job's own last error (its last run failed); never one of `status` itself.
    pub last_error: Option<String>,
    /// Calls failing temporarily and being resent right now (by a run in any process).
    pub retrying: Option<crate::db::ops::StoredRetry>,
    pub pending_batches: i64,
    pub pending_records: i64,
    pub open_errors_by_rule: indexmap::IndexMap<String, i64>,
    pub reconciliation_uploads_pending: i64,
    pub rows_waiting: Option<i64>,
    pub rows_waiting_capped: bool,
    /// What `status` itself could not find out for this job (e.g. counting waiting rows).
    pub status_errors: Vec<String>,
    /// Who holds the job's lease and until when (None: never taken).
    pub lease: Option<crate::db::lease::LeaseStatus>,
}

impl Db {
    pub async fn job_status(&self, job: &str) -> Result<JobStatus> {
        let mut s = JobStatus {
            job: job.to_string(),
            ..Default::default()
        };
        let of_job = || Expr::col("job").eq(job);
        let q = Query::select()
            .columns(["position", "last_run_at", "last_success_at", "last_error"])
            .from("qz_cursor")
            .and_where(of_job())
            .to_owned();
        if let Some(r) = self.stmt(&q).fetch_optional(&self.any).await? {
            s.position = r
                .try_get::<Option<String>, _>(0)?
                .and_then(|p| serde_json::from_str(&p).ok());
            s.last_run_at = r.try_get(1)?;
            s.last_success_at = r.try_get(2)?;
            s.last_error = r.try_get(3)?;
        }
        let q = Query::select()
            .expr(Expr::col(Asterisk).count())
            .from("qz_batch")
            .and_where(of_job())
            .and_where(Expr::col("state").eq(lit("pending")))
            .to_owned();
        s.pending_batches = self.stmt_scalar(&q).fetch_one(&self.any).await?;
        // record_count is read per call and added here: SUM() is DECIMAL on MySQL.
        let counts: Vec<i64> = self
            .stmt_scalar(&pending_calls_select(job))
            .fetch_all(&self.any)
            .await?;
        s.pending_records = counts.iter().sum();
        let q = Query::select()
            .column("rule")
            .expr(Expr::col(Asterisk).count())
            .from("qz_error")
            .and_where(of_job())
            .and_where(Expr::col("resolved_at").is_null())
            .group_by_col("rule")
            .order_by("rule", Order::Asc)
            .to_owned();
        for r in self.stmt(&q).fetch_all(&self.any).await? {
            s.open_errors_by_rule.insert(r.try_get(0)?, r.try_get(1)?);
        }
        let q = Query::select()
            .expr(Expr::col(Asterisk).count())
            .from("qz_reconciliation")
            .and_where(of_job())
            .and_where(Expr::col("upload_state").eq(lit("pending")))
            .to_owned();
        s.reconciliation_uploads_pending = self.stmt_scalar(&q).fetch_one(&self.any).await?;
        Ok(s)
    }

    /// Today's (Beijing) last Cd_Batch sequence for the unit, 0 when none was allocated yet.
    pub async fn todays_last_seq(&self, unit: &str) -> Result<i64> {
        let day = crate::timefmt::now_beijing().format("%Y%m%d").to_string();
        let seq: Option<i64> = self
            .stmt_scalar(&seq_last(unit, &day))
            .fetch_optional(&self.any)
            .await?;
        Ok(seq.unwrap_or(0))
    }
}

impl Db {
    /// Newest open error rows: (job, source key, field, rule, message).
    pub async fn recent_errors(
        &self,
        limit: i64,
    ) -> Result<Vec<(String, String, String, String, String)>> {
        let q = Query::select()
            .columns(["job", "source_key", "field", "rule", "message"])
            .from("qz_error")
            .and_where(Expr::col("resolved_at").is_null())
            .order_by("id", Order::Asc)
            .limit(u64::try_from(limit).unwrap_or(0))
            .to_owned();
        let rows = self.stmt(&q).fetch_all(&self.any).await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                ))
            })
            .collect()
    }
}
