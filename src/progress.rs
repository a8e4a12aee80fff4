//! The progress line of `qianzhi once` on a terminal: rows done of rows waiting, rate and
//! ETA (indicatif). It is drawn only when stderr is a terminal, never into a log file or the
//! journal, and log lines are written above it (`telemetry::show_progress`). Rows done are the
//! job's `rows_read` counter (`metrics`), which the pipeline bumps per committed page.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::db::source::{Cursor, SourceSpec};
use crate::pipeline::App;

/// Counting waiting rows stops here, as in `status`.
const WAITING_CAP: i64 = 1_000_000;

/// A progress line being drawn for one job; [`Progress::finish`] clears it.
pub struct Progress {
    bar: ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

/// Whether a progress line may be drawn: stderr is a terminal.
pub fn wanted() -> bool {
    std::io::stderr().is_terminal()
}

impl Progress {
    /// A line for `job` when stderr is a terminal and it has rows waiting; None otherwise.
    pub async fn start(app: &Arc<App>, job: &str) -> Option<Progress> {
        if !wanted() {
            return None;
        }
        let waiting = waiting_rows(app, job).await?;
        if waiting == 0 {
            return None;
        }
        let m_start = app.metrics.job(job)?.rows_read();
        let bar = ProgressBar::with_draw_target(
            Some(waiting.unsigned_abs()),
            ProgressDrawTarget::stderr_with_hz(4),
        );
        let style = ProgressStyle::with_template(
            "{prefix} [{bar:30}] {human_pos}/{human_len} rows  {per_sec}  ETA {eta}",
        )
        .ok()?
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(job.to_string());
        crate::telemetry::show_progress(Some(bar.clone()));
        bar.tick();
        let (app, name, shown) = (app.clone(), job.to_string(), bar.clone());
        let ticker = tokio::spawn(async move {
            loop {
                if let Some(m) = app.metrics.job(&name) {
                    shown.set_position(m.rows_read().saturating_sub(m_start));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        Some(Progress { bar, ticker })
    }

    /// Takes the line off the terminal; the summary line follows in its place.
    pub fn finish(self) {
        self.ticker.abort();
        crate::telemetry::show_progress(None);
        self.bar.finish_and_clear();
    }
}

/// Rows after the job's position, counted as `status` counts them (capped); None when the
/// count fails (the run then goes on without a progress line).
async fn waiting_rows(app: &App, job: &str) -> Option<i64> {
    let j = app.job(job).ok()?;
    // A snapshot has no position to count after: it reads the whole view.
    if j.mode == crate::config::Mode::Snapshot {
        return None;
    }
    let spec = SourceSpec::of(j);
    let after = app
        .db
        .load_position(job)
        .await
        .ok()?
        .and_then(|p| serde_json::from_str::<serde_json::Value>(&p).ok())
        .and_then(|p| Cursor::parse(j, &p).ok())
        .and_then(|c| c.after());
    app.db
        .count_after(&spec, after.as_deref(), WAITING_CAP)
        .await
        .ok()
}
