//! `run_once(job)`: resend what is pending, then read, map, validate, number, store and send
//! new changes. Every path (once, run, demo, tests, benchmark) goes through here.
//!
//! One file per stage, each working from the `Run` of one job: `read` (source pages, map,
//! validate), `commit` (number and store in the outbox), `deliver` (send, split refused
//! calls, acknowledge) and `reconcile` (the platform's reconciliation upload). The platform
//! itself is an [`Upstream`], resolved once per run (see ARCHITECTURE.md).
//!
//! A run writes under the job's lease: `run_once` takes it for the run (and fails with
//! `LeaseHeld` when another process has it), `run_held` is for a caller that holds it already
//! (`qianzhi run`). Every control-table write of the run carries the lease's `Fence`.

mod capture;
mod commit;
mod deliver;
mod read;
mod reconcile;
mod retry;
mod seq;
mod snapshot;

use anyhow::{Context, Result, anyhow, bail};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span};

use crate::config::{Config, JobConfig};
use crate::db::Db;
use crate::db::lease::{Fence, Holder, LeaseHeld, LeaseLost};
use crate::db::ops::RunEnd;
use crate::lease::{Acquired, Held};
use crate::mapping::{Plan, PlanInput};
use crate::metrics::{JobKind, JobMetrics, Metrics};
use crate::schema::{Catalog, DataType, Platform};
use crate::upstream::{Upstream, Upstreams};

/// Everything a job needs at run time, built once from the configuration.
pub struct App {
    pub cfg: Config,
    pub catalog: Catalog,
    pub db: Db,
    /// The platforms configured (`[gdzw]`, `[gansu]`), each with its client.
    pub upstreams: Upstreams,
    /// Credit-query providers (`[shuidi]`, `[qcc]`, `[xinshu]`) with their credentials.
    pub query: crate::query::client::Clients,
    /// Counters and states of every job, for `/metrics`, `/healthz` and `STATUS=`.
    pub metrics: Metrics,
    /// Who this process is when it holds a lease (a new instance id per `App`).
    pub me: Holder,
}

impl App {
    /// The parts a credit-query run uses (`query::run_query_once`).
    pub fn query_app(&self) -> crate::query::QueryApp<'_> {
        crate::query::QueryApp {
            cfg: &self.cfg,
            db: &self.db,
            query: &self.query,
            me: &self.me,
        }
    }

    pub async fn new(cfg: Config) -> Result<Arc<App>> {
        let catalog = Catalog::load(cfg.schema_dir.as_deref())?;
        let issues = cfg.validate(&catalog);
        if !issues.is_empty() {
            let list: Vec<String> = issues.iter().map(|i| format!("  - {i}")).collect();
            bail!(
                "the configuration has {} problem(s):\n{}",
                issues.len(),
                list.join("\n")
            );
        }
        let db = Db::connect_as(
            &cfg.database.url,
            cfg.database.dialect,
            cfg.database.max_connections,
        )
        .await?;
        db.set_odbc_packed_rows(cfg.database.odbc_packed_rows);
        let upstreams = Upstreams::from_config(&cfg, &catalog)?;
        let query = crate::query::client::Clients::new(&cfg)?;
        let metrics = Metrics::new(
            cfg.jobs
                .iter()
                .map(|j| (j.name.as_str(), JobKind::Job))
                .chain(
                    cfg.queries
                        .iter()
                        .map(|q| (q.name.as_str(), JobKind::Query)),
                ),
        );
        Ok(Arc::new(App {
            cfg,
            catalog,
            db,
            upstreams,
            query,
            metrics,
            me: Holder::this_process(),
        }))
    }

    /// What `status` reads (configuration and database).
    pub fn status_app(&self) -> crate::status::StatusApp<'_> {
        crate::status::StatusApp {
            cfg: &self.cfg,
            db: &self.db,
        }
    }

    pub fn job(&self, name: &str) -> Result<&JobConfig> {
        self.cfg
            .jobs
            .iter()
            .find(|j| j.name == name)
            .ok_or_else(|| {
                let names: Vec<_> = self.cfg.jobs.iter().map(|j| j.name.as_str()).collect();
                anyhow!("no job named '{name}' (jobs: {})", names.join(", "))
            })
    }
}

/// One run of one job: what every stage works with, resolved once, so no stage looks a
/// setting up by name or asks which platform it is talking to.
#[derive(Clone, Copy)]
struct Run<'a> {
    app: &'a App,
    job: &'a JobConfig,
    upstream: &'a dyn Upstream,
    platform: &'a Platform,
    dt: &'a DataType,
    cancel: &'a CancellationToken,
    /// The job's counters and retry state.
    metrics: &'a JobMetrics,
    /// The job's lease: every control-table write of the run checks it.
    fence: &'a Fence,
}

impl<'a> Run<'a> {
    fn new(
        app: &'a App,
        job: &'a JobConfig,
        cancel: &'a CancellationToken,
        fence: &'a Fence,
    ) -> Result<Self> {
        let upstream = app.upstreams.for_job(job)?;
        let platform = app
            .catalog
            .platform(upstream.name())
            .ok_or_else(|| anyhow!("no schemas for {}", upstream.name()))?;
        let dt = platform
            .data_types
            .get(&job.data_type)
            .ok_or_else(|| anyhow!("unknown data type {}", job.data_type))?;
        let metrics = app
            .metrics
            .job(&job.name)
            .ok_or_else(|| anyhow!("no metrics for job {}", job.name))?;
        Ok(Run {
            app,
            job,
            upstream,
            platform,
            dt,
            cancel,
            metrics,
            fence,
        })
    }

    /// The mapping of the source's `columns` onto the data type's fields.
    fn plan(&self, columns: &[String]) -> Plan {
        Plan::resolve(PlanInput {
            job: &self.job.name,
            data_type: self.dt,
            columns,
            map: &self.job.map,
            constants: &self.job.constants,
            unit: &self.app.cfg.unit,
            null_fields: self.upstream.null_fields(),
        })
    }

    /// The error of a fatal answer: the daemon stops scheduling the job, its outbox is kept.
    fn stopped(&self, msg: &str) -> anyhow::Error {
        JobStopped(format!(
            "job {} stopped, its outbox is kept for resending: {msg}",
            self.job.name
        ))
        .into()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Outcome {
    pub rows_read: usize,
    pub batches: Vec<String>,
    pub delivered: usize,
    pub refused_by_platform: usize,
    pub invalid_rows: usize,
    /// True when the run stopped early (shutdown) and left work pending.
    pub interrupted: bool,
}

/// A fatal upstream answer: the daemon stops scheduling this job until restarted.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct JobStopped(pub String);

impl Outcome {
    fn merge(&mut self, o: Outcome) {
        self.rows_read += o.rows_read;
        self.batches.extend(o.batches);
        self.delivered += o.delivered;
        self.refused_by_platform += o.refused_by_platform;
        self.invalid_rows += o.invalid_rows;
        self.interrupted |= o.interrupted;
    }
}

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub dry_run: bool,
    /// Snapshot mode: send the deletes even past the safety valve (`max_delete_ratio`, or a
    /// view that reads empty), for a mass delete the DBA has confirmed.
    pub confirm_deletes: bool,
}

/// The read stage of the job's mode: change pages after the position, or the snapshot diff.
async fn read_stage(
    run: &Run<'_>,
    opts: &RunOptions,
    tx: Option<mpsc::Sender<read::Prepared>>,
) -> Result<Outcome> {
    match run.job.mode {
        crate::config::Mode::Snapshot => snapshot::read_snapshot(run, opts, tx).await,
        _ => read::read_pages(run, opts, tx).await,
    }
}

/// Test hook: `QIANZHI_FAILPOINT=after-outbox-commit` (or `after-first-call`,
/// `after-split-progress`, `before-batch-close`) ends the process
/// at that point, as a crash or kill -9 would.
fn failpoint(name: &str) {
    crate::failpoint::exit(name);
}

/// One run of a job under its lease, taken for the run and given up after it. Fails with
/// [`LeaseHeld`] (nothing read, nothing changed) while another process holds the lease. A
/// dry run writes nothing and takes no lease.
pub async fn run_once(
    app: &Arc<App>,
    job_name: &str,
    cancel: &CancellationToken,
    opts: &RunOptions,
) -> Result<Outcome> {
    let job = app.job(job_name)?;
    if opts.dry_run {
        return run_held(app, &Fence::none(&job.name), cancel, opts).await;
    }
    let held = match Held::acquire(&app.db, &app.me, &job.name, &app.cfg.lease, cancel).await? {
        Acquired::Held(h) => h,
        Acquired::Busy(info) => return Err(LeaseHeld(info).into()),
    };
    let result = run_held(app, held.fence(), held.cancel(), opts).await;
    let lost = held.is_lost().then(|| LeaseLost {
        job: job.name.clone(),
        token: held.fence().token,
    });
    held.release(&app.db).await;
    match (result, lost) {
        // Stopped because the lease went elsewhere: said as such, not as a clean interruption.
        (Ok(o), Some(lost)) if o.interrupted => Err(lost.into()),
        (result, _) => result,
    }
}

/// One run of a job whose lease the caller holds (`fence`); `cancel` stops it at the next
/// call (shutdown, or the lease lost).
pub async fn run_held(
    app: &Arc<App>,
    fence: &Fence,
    cancel: &CancellationToken,
    opts: &RunOptions,
) -> Result<Outcome> {
    let job = app.job(&fence.job)?;
    let span = info_span!("job", job = %job.name);
    let result = run_inner(app, job, cancel, opts, fence)
        .instrument(span)
        .await;
    if let Some(m) = app.metrics.job(&job.name) {
        // The run is over, and with it any retry streak.
        m.retry_ended();
    }
    if !opts.dry_run {
        let end = RunEnd::of(&result, |o| o.interrupted);
        app.db.record_run_end(fence, end).await;
    }
    result
}

async fn run_inner(
    app: &Arc<App>,
    job: &JobConfig,
    cancel: &CancellationToken,
    opts: &RunOptions,
    fence: &Fence,
) -> Result<Outcome> {
    let run = Run::new(app, job, cancel, fence)?;
    let mut out = Outcome::default();
    if opts.dry_run {
        out.merge(read_stage(&run, opts, None).await?);
        return Ok(out);
    }
    // Resend first: a batch left pending by a crash or a stop keeps its Cd_Batch.
    let pending = app.db.pending_batches(&job.name).await?;
    if !pending.is_empty() {
        let source = deliver::Source::Pending(pending);
        deliver_counted(&run, app, source, &mut out).await?;
        if out.interrupted {
            return Ok(out);
        }
    }
    reconcile::upload_pending(&run).await?;
    run_stages(app, &run, opts, out).await
}

/// Three stages, each on its own task, so they overlap and use both cores: pages are read
/// and checked (reader), numbered and committed to the outbox (committer), and delivered
/// (this task, with up to `delivery.max_in_flight` calls in flight). Pages and batches keep
/// their order; the channels bound how far each stage runs ahead of the next.
async fn run_stages(
    app: &Arc<App>,
    run: &Run<'_>,
    opts: &RunOptions,
    mut out: Outcome,
) -> Result<Outcome> {
    let (page_tx, page_rx) = mpsc::channel::<read::Prepared>(1);
    let (tx, rx) = mpsc::channel::<commit::Committed>(1);
    let spawn_stage = |stage: Stage| {
        let (app, name, cancel, opts, fence) = (
            app.clone(),
            run.job.name.clone(),
            run.cancel.clone(),
            opts.clone(),
            run.fence.clone(),
        );
        tokio::spawn(
            async move {
                let run = Run::new(&app, app.job(&name)?, &cancel, &fence)?;
                match stage {
                    Stage::Read(pages) => read_stage(&run, &opts, Some(pages)).await,
                    Stage::Commit(pages, batches) => {
                        commit::commit_pages(&run, pages, batches).await
                    }
                }
            }
            .instrument(tracing::Span::current()),
        )
    };
    let reader = spawn_stage(Stage::Read(page_tx));
    let committer = spawn_stage(Stage::Commit(page_rx, tx));
    // Delivery takes the channel: when it returns, the channel closes, which stops the
    // committer at its next hand-over, and with it the reader; what was committed stays
    // pending in the outbox for the next run, what was only read is read again.
    let delivered = deliver_counted(run, app, deliver::Source::Fresh(rx), &mut out).await;
    let committed = committer.await.context("the committing task failed")?;
    let read = reader.await.context("the reading task failed")?;
    delivered?;
    out.merge(committed?);
    out.merge(read?);
    Ok(out)
}

/// [`deliver::deliver`], with what it delivered and what was refused added to the job's
/// counters when it returns.
async fn deliver_counted(
    run: &Run<'_>,
    app: &Arc<App>,
    source: deliver::Source,
    out: &mut Outcome,
) -> Result<()> {
    let before = (out.delivered, out.refused_by_platform);
    let result = deliver::deliver(run, app, source, out).await;
    run.metrics
        .add_delivered(out.delivered - before.0, out.refused_by_platform - before.1);
    result
}

enum Stage {
    Read(mpsc::Sender<read::Prepared>),
    Commit(
        mpsc::Receiver<read::Prepared>,
        mpsc::Sender<commit::Committed>,
    ),
}
