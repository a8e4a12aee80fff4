//! `qianzhi status`: what each job has done and what is waiting, and today's credit-query
//! spend per provider, as text or JSON.

use anyhow::Result;
use serde::Serialize;

use crate::config::Config;
use crate::db::Db;
use crate::db::control::JobStatus;
use crate::db::lease::{Holder, LeaseStatus};
use crate::db::source::{Cursor, Position, SeqPosition, SourceSpec};

/// What `status` reads: the configuration and the database, nothing else. No secret is
/// needed, so a DBA who cannot read the service's secret files can run it.
pub struct StatusApp<'a> {
    pub cfg: &'a Config,
    pub db: &'a Db,
}

/// Counting stops here so status stays fast on a large backlog.
const WAITING_CAP: i64 = 1_000_000;

#[derive(Debug, Serialize)]
pub struct Status {
    pub unit: String,
    pub todays_last_cd_batch_seq: i64,
    pub jobs: Vec<JobStatus>,
    /// Per configured credit-query provider: today's (Beijing) calls and budget left.
    pub providers: Vec<ProviderStatus>,
    pub query_jobs: Vec<QueryJobStatus>,
    /// The `qianzhi run` processes heard from within lease.ttl.
    pub instances: Vec<Holder>,
}

#[derive(Debug, Serialize)]
pub struct ProviderStatus {
    pub provider: String,
    pub day: String,
    pub daily_budget: i64,
    pub calls_today: i64,
    pub billed_today: i64,
    pub budget_left: i64,
    /// active, paused or stopped; the reason keeps the spec's Chinese message.
    pub state: String,
    #[serde(serialize_with = "crate::timefmt::json::opt_time")]
    pub paused_until: Option<String>,
    pub status_code: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct QueryJobStatus {
    pub job: String,
    pub provider: String,
    #[serde(serialize_with = "crate::timefmt::json::opt_time")]
    pub last_run_at: Option<String>,
    pub last_run_result: Option<String>,
    #[serde(serialize_with = "crate::timefmt::json::opt_time")]
    pub last_success_at: Option<String>,
    pub last_error: Option<String>,
    pub lease: Option<LeaseStatus>,
}

/// Per configured credit-query provider: today's (Beijing) calls, billed calls, budget left
/// and state. `/metrics` reads the same.
pub async fn provider_statuses(app: &StatusApp<'_>) -> Result<Vec<ProviderStatus>> {
    let day = crate::query::run::budget_day(chrono::Utc::now());
    let mut out = Vec::new();
    for p in crate::query::Provider::ALL {
        let Some(budget) = p.daily_budget(app.cfg) else {
            continue;
        };
        let (calls, billed) = app.db.ledger_day(p.name(), &day).await?;
        let st = app.db.provider_state(p.name()).await?.unwrap_or_default();
        let paused = st.state == "paused"
            && st
                .paused_until
                .as_deref()
                .is_some_and(|u| u > crate::timefmt::now_text().as_str());
        let state = match st.state.as_str() {
            "stopped" => "stopped",
            _ if paused => "paused",
            _ => "active",
        };
        out.push(ProviderStatus {
            provider: p.name().into(),
            day: day.clone(),
            daily_budget: budget.into(),
            calls_today: calls,
            billed_today: billed,
            budget_left: (i64::from(budget) - calls).max(0),
            state: state.into(),
            paused_until: st.paused_until.filter(|_| paused),
            status_code: st.status_code.filter(|_| state != "active"),
            reason: st.reason.filter(|_| state != "active"),
        });
    }
    Ok(out)
}

pub async fn collect(app: &StatusApp<'_>) -> Result<Status> {
    let leases = app.db.leases().await?;
    let lease_of = |job: &str| leases.iter().find(|l| l.job == job).map(LeaseStatus::from);
    let mut jobs = Vec::new();
    for j in &app.cfg.jobs {
        let mut s = app.db.job_status(&j.name).await?;
        let run = app.db.run_state(&j.name).await?;
        s.last_run_result = run.last_run_result;
        s.retrying = run.retrying;
        s.lease = lease_of(&j.name);
        // A snapshot has no position to count after: it reads the whole view.
        if j.mode == crate::config::Mode::Snapshot {
            jobs.push(s);
            continue;
        }
        let spec = SourceSpec::of(j);
        let after = s
            .position
            .as_ref()
            .and_then(|p| Cursor::parse(j, p).ok())
            .and_then(|c| c.after());
        match app
            .db
            .count_after(&spec, after.as_deref(), WAITING_CAP + 1)
            .await
        {
            Ok(n) => {
                s.rows_waiting_capped = n > WAITING_CAP;
                s.rows_waiting = Some(n.min(WAITING_CAP));
            }
            // Kept apart from the job's own last error: this is status failing, not the job.
            Err(e) => s.status_errors.push(crate::mask::mask_pii(&format!(
                "cannot count waiting rows (无法统计待读行数): {e:#}"
            ))),
        }
        jobs.push(s);
    }
    let mut query_jobs = Vec::new();
    for q in &app.cfg.queries {
        let s = app.db.job_status(&q.name).await?;
        let run = app.db.run_state(&q.name).await?;
        query_jobs.push(QueryJobStatus {
            job: q.name.clone(),
            provider: q.provider.name().to_string(),
            last_run_at: s.last_run_at,
            last_run_result: run.last_run_result,
            last_success_at: s.last_success_at,
            last_error: s.last_error,
            lease: lease_of(&q.name),
        });
    }
    Ok(Status {
        unit: app.cfg.unit.uscc.clone(),
        todays_last_cd_batch_seq: app.db.todays_last_seq(&app.cfg.unit.uscc).await?,
        jobs,
        providers: provider_statuses(app).await?,
        query_jobs,
        instances: app.db.live_instances(app.cfg.lease.ttl).await?,
    })
}

fn lease_line(l: Option<&LeaseStatus>) -> String {
    let shown = l.map(LeaseStatus::shown).unwrap_or_else(|| "-".into());
    format!("  lease                {shown}\n")
}

pub fn render_text(s: &Status) -> String {
    let mut out = format!(
        "报送单位 unit {}   今日最后批次序号 today's last Cd_Batch sequence: {:05}\n",
        s.unit, s.todays_last_cd_batch_seq
    );
    for j in &s.jobs {
        out.push_str(&format!("\n[{}]\n", j.job));
        let pos = j
            .position
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "(not started)".into());
        let pos = j.position.as_ref().and_then(render_position).unwrap_or(pos);
        out.push_str(&format!("  source position      {pos}\n"));
        let waiting = match (j.rows_waiting, j.rows_waiting_capped) {
            (Some(n), true) => format!("more than {n}"),
            (Some(n), false) => n.to_string(),
            (None, _) => "unknown".into(),
        };
        out.push_str(&format!("  rows waiting         {waiting}\n"));
        out.push_str(&lease_line(j.lease.as_ref()));
        out.push_str(&format!(
            "  pending batches      {} ({} records)\n",
            j.pending_batches, j.pending_records
        ));
        out.push_str(&format!(
            "  last run             {}\n",
            last_run(j.last_run_at.as_deref(), j.last_run_result.as_deref())
        ));
        out.push_str(&format!(
            "  last success         {}\n",
            j.last_success_at.as_deref().unwrap_or("-")
        ));
        if let Some(r) = &j.retrying {
            out.push_str(&format!(
                "  retrying             since {} because {} ({} failures in a row, latest {}) \
                 (临时失败，正在重发)\n",
                r.since, r.cause, r.failures, r.last_failure_at
            ));
        }
        if let Some(e) = &j.last_error {
            out.push_str(&format!("  last error           {e}\n"));
        }
        for e in &j.status_errors {
            out.push_str(&format!("  status could not     {e}\n"));
        }
        if j.open_errors_by_rule.is_empty() {
            out.push_str("  open error rows      0\n");
        } else {
            let list: Vec<String> = j
                .open_errors_by_rule
                .iter()
                .map(|(r, n)| format!("{r}: {n}"))
                .collect();
            out.push_str(&format!("  open error rows      {}\n", list.join(", ")));
        }
        if j.reconciliation_uploads_pending > 0 {
            out.push_str(&format!(
                "  reconciliation uploads pending {}\n",
                j.reconciliation_uploads_pending
            ));
        }
    }
    if !s.providers.is_empty() {
        out.push_str("\n信用查询 credit queries (today, Beijing day)\n");
        out.push_str(&format!(
            "  {:<8} {:>6} {:>6} {:>6} {:>6}  state\n",
            "provider", "budget", "calls", "billed", "left"
        ));
        for p in &s.providers {
            let mut state = p.state.clone();
            if let Some(u) = &p.paused_until {
                state.push_str(&format!(" until {u}"));
            }
            if let Some(r) = &p.reason {
                state.push_str(&format!(": {r}"));
            }
            out.push_str(&format!(
                "  {:<8} {:>6} {:>6} {:>6} {:>6}  {state}\n",
                p.provider, p.daily_budget, p.calls_today, p.billed_today, p.budget_left
            ));
        }
    }
    for q in &s.query_jobs {
        out.push_str(&format!(
            "\n[{}] query via {}\n  last run             {}\n  last success         {}\n",
            q.job,
            q.provider,
            last_run(q.last_run_at.as_deref(), q.last_run_result.as_deref()),
            q.last_success_at.as_deref().unwrap_or("-")
        ));
        out.push_str(&lease_line(q.lease.as_ref()));
        if let Some(e) = &q.last_error {
            out.push_str(&format!("  last error           {e}\n"));
        }
    }
    if !s.instances.is_empty() {
        out.push_str("\n运行中的 run 进程 live run processes\n");
        for h in &s.instances {
            out.push_str(&format!("  {h}\n"));
        }
    }
    out
}

/// "2026-11-30 15:39:47", with "(interrupted)" or "(failed)" after a run that did not succeed.
fn last_run(at: Option<&str>, result: Option<&str>) -> String {
    let Some(at) = at else {
        return "-".into();
    };
    match result {
        Some("interrupted") => format!("{at} (interrupted 被中断)"),
        Some("failed") => format!("{at} (failed 失败)"),
        _ => at.to_string(),
    }
}

/// "2026-11-20 10:07:00 / 8" (time order) or "105" (seq order) instead of the stored JSON.
fn render_position(p: &serde_json::Value) -> Option<String> {
    use serde::Deserialize;
    let cursor = match Position::deserialize(p) {
        Ok(time) => Cursor::Time(time),
        Err(_) => Cursor::Seq(SeqPosition::deserialize(p).ok()?),
    };
    Some(cursor.shown())
}
