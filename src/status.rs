//! `qianzhi status`: what each job has done and what is waiting, as text or JSON.

use anyhow::Result;
use serde::Serialize;

use crate::db::control::JobStatus;
use crate::db::source::{Position, SourceSpec};
use crate::pipeline::App;

/// Counting stops here so status stays fast on a large backlog.
const WAITING_CAP: i64 = 1_000_000;

#[derive(Debug, Serialize)]
pub struct Status {
    pub unit: String,
    pub todays_last_cd_batch_seq: i64,
    pub jobs: Vec<JobStatus>,
}

pub async fn collect(app: &App) -> Result<Status> {
    let mut jobs = Vec::new();
    for j in &app.cfg.jobs {
        let mut s = app.db.job_status(&j.name).await?;
        let order = j.order_columns();
        let spec = SourceSpec {
            table: &j.source,
            time_column: &j.time_column,
            key: &order,
        };
        let pos: Option<Position> = s
            .position
            .clone()
            .and_then(|p| serde_json::from_value(p).ok());
        match app
            .db
            .count_after(&spec, pos.as_ref(), WAITING_CAP + 1)
            .await
        {
            Ok(n) => {
                s.rows_waiting_capped = n > WAITING_CAP;
                s.rows_waiting = Some(n.min(WAITING_CAP));
            }
            Err(e) => s.last_error = Some(format!("cannot count waiting rows: {e:#}")),
        }
        jobs.push(s);
    }
    Ok(Status {
        unit: app.cfg.unit.uscc.clone(),
        todays_last_cd_batch_seq: app.db.todays_last_seq(&app.cfg.unit.uscc).await?,
        jobs,
    })
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
        out.push_str(&format!("  source position      {pos}\n"));
        let waiting = match (j.rows_waiting, j.rows_waiting_capped) {
            (Some(n), true) => format!("more than {n}"),
            (Some(n), false) => n.to_string(),
            (None, _) => "unknown".into(),
        };
        out.push_str(&format!("  rows waiting         {waiting}\n"));
        out.push_str(&format!(
            "  pending batches      {} ({} records)\n",
            j.pending_batches, j.pending_records
        ));
        out.push_str(&format!(
            "  last run             {}\n",
            j.last_run_at.as_deref().unwrap_or("-")
        ));
        out.push_str(&format!(
            "  last success         {}\n",
            j.last_success_at.as_deref().unwrap_or("-")
        ));
        if let Some(e) = &j.last_error {
            out.push_str(&format!("  last error           {e}\n"));
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
    out
}
