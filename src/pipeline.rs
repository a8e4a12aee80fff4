//! `run_once(job)`: resend what is pending, then read, map, validate, number, store and send
//! new changes. Every path (once, run, demo, tests, benchmark) goes through here.

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value as Json;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::config::{Config, JobConfig, UpstreamKind};
use crate::db::Db;
use crate::db::control::{BatchRow, ErrorRow, NewBatch, OutboxCall, RecordMeta};
use crate::db::source::{Position, SourceSpec};
use crate::mapping::{Op, Plan, PlanInput, key_text, map_row};
use crate::schema::{Catalog, DataType, Platform};
use crate::upstream::gansu::{GansuClient, Receipt};
use crate::upstream::gdzw::GdzwClient;
use crate::upstream::{Backoff, Sender, SubmitError};
use crate::validate::validate_aligned;
use crate::value::SourceRow;

/// Everything a job needs at run time, built once from the configuration.
pub struct App {
    pub cfg: Config,
    pub catalog: Catalog,
    pub db: Db,
    pub gdzw: Option<GdzwClient>,
    pub gansu: Option<GansuClient>,
    /// Credit-query providers ([shuidi], [qcc], [xinshu]) with their credentials.
    pub query: crate::query::client::Clients,
}

impl App {
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
        let db = Db::connect(&cfg.database.url, cfg.database.max_connections).await?;
        let gdzw = match &cfg.gdzw {
            Some(g) => Some(GdzwClient::new(
                g,
                g.token.value.clone(),
                cfg.delivery.http_timeout(),
            )?),
            None => None,
        };
        let gansu = match &cfg.gansu {
            Some(g) => Some(GansuClient::from_config(g, cfg.delivery.http_timeout())?),
            None => None,
        };
        let query = crate::query::client::Clients::new(&cfg)?;
        Ok(Arc::new(App {
            cfg,
            catalog,
            db,
            gdzw,
            gansu,
            query,
        }))
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

    fn platform(&self, job: &JobConfig) -> Result<(&Platform, &DataType)> {
        let p = self
            .catalog
            .platform(job.upstream.as_str())
            .ok_or_else(|| anyhow!("no schemas for {}", job.upstream))?;
        let dt = p
            .data_types
            .get(&job.data_type)
            .ok_or_else(|| anyhow!("unknown data type {}", job.data_type))?;
        Ok((p, dt))
    }

    /// The reconciliation Table_name of a data type: configured, else the schema's default.
    pub fn table_name(&self, job: &JobConfig, dt: &DataType) -> String {
        if job.upstream == UpstreamKind::Gansu {
            return dt
                .reconciliation_table
                .clone()
                .unwrap_or_else(|| job.data_type.clone());
        }
        self.cfg
            .gdzw
            .as_ref()
            .and_then(|g| g.reconciliation_tables.get(&job.data_type).cloned())
            .or_else(|| dt.reconciliation_table.clone())
            .unwrap_or_else(|| format!("up_pro_{}_v3", job.data_type))
    }

    pub fn plan(&self, job: &JobConfig, dt: &DataType, columns: &[String]) -> Plan {
        Plan::resolve(PlanInput {
            job: &job.name,
            data_type: dt,
            columns,
            map: &job.map,
            constants: &job.constants,
            unit: &self.cfg.unit,
            null_fields: self.null_fields(job),
        })
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
}

/// Test hook: `QIANZHI_FAILPOINT=after-outbox-commit` (or `after-first-call`,
/// `after-split-progress`) ends the process
/// at that point, as a crash or kill -9 would.
fn failpoint(name: &str) {
    if std::env::var("QIANZHI_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("qianzhi: failpoint {name} reached, exiting without cleanup");
        std::process::exit(86);
    }
}

/// One new exchange, mapped and validated, ready to be committed.
struct Prepared {
    /// Field codes in the order of each record's values.
    codes: Vec<String>,
    records: Vec<(Op, crate::mapping::Record)>,
    errors: Vec<ErrorRow>,
    last: Option<Position>,
    rows: usize,
    /// The page ended at the settle lag (or was short): no more rows to read now.
    drained: bool,
}

fn row_position(row: &SourceRow, job: &JobConfig) -> Position {
    Position {
        time: row
            .get(&job.time_column)
            .cloned()
            .unwrap_or(crate::value::Value::Null),
        key: job
            .order_columns()
            .iter()
            .map(|k| row.get(k).cloned().unwrap_or(crate::value::Value::Null))
            .collect(),
    }
}

pub async fn run_once(
    app: &Arc<App>,
    job_name: &str,
    cancel: &CancellationToken,
    opts: &RunOptions,
) -> Result<Outcome> {
    let job = app.job(job_name)?;
    let span = info_span!("job", job = %job.name);
    let result = run_inner(app, job, cancel, opts).instrument(span).await;
    if !opts.dry_run {
        let err = result
            .as_ref()
            .err()
            .map(|e| crate::mask::mask_pii(&format!("{e:#}")));
        if let Err(e) = app.db.record_run(&job.name, err.as_deref()).await {
            warn!(job = %job.name, error = %e, "could not record the run in qz_cursor");
        }
    }
    result
}

/// A batch committed to the outbox, handed from the producer to the delivery loop.
type Committed = (BatchRow, Vec<OutboxCall>);

async fn run_inner(
    app: &Arc<App>,
    job: &JobConfig,
    cancel: &CancellationToken,
    opts: &RunOptions,
) -> Result<Outcome> {
    let mut out = Outcome::default();
    if opts.dry_run {
        let produced = read_pages(app, job, cancel, opts, None).await?;
        out.merge(produced);
        return Ok(out);
    }
    // Resend first: a batch left pending by a crash or a stop keeps its Cd_Batch.
    for b in app.db.pending_batches(&job.name).await? {
        if cancel.is_cancelled() {
            out.interrupted = true;
            return Ok(out);
        }
        info!(cd_batch = %b.cd_batch, records = b.record_count, "resending pending batch");
        deliver(app, job, &b, None, cancel, &mut out).await?;
        if out.interrupted {
            return Ok(out);
        }
    }
    upload_pending_reconciliations(app, job).await?;

    // Three stages, each on its own task, so they overlap and use both cores: pages are read
    // and checked (reader), numbered and committed to the outbox (committer), and delivered
    // (this loop). Pages and batches keep their order; the channels bound how far each stage
    // runs ahead of the next.
    let (page_tx, page_rx) = tokio::sync::mpsc::channel::<Prepared>(1);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Committed>(1);
    let spawn_stage = |stage: Stage| {
        let (app, name, cancel, opts) =
            (app.clone(), job.name.clone(), cancel.clone(), opts.clone());
        tokio::spawn(
            async move {
                let job = app.job(&name)?;
                match stage {
                    Stage::Read(pages) => read_pages(&app, job, &cancel, &opts, Some(pages)).await,
                    Stage::Commit(pages, batches) => {
                        commit_pages(&app, job, &cancel, pages, batches).await
                    }
                }
            }
            .instrument(tracing::Span::current()),
        )
    };
    let reader = spawn_stage(Stage::Read(page_tx));
    let committer = spawn_stage(Stage::Commit(page_rx, tx));
    let mut failed = None;
    while let Some((b, calls)) = rx.recv().await {
        if let Err(e) = deliver(app, job, &b, Some(calls), cancel, &mut out).await {
            failed = Some(e);
            break;
        }
        if out.interrupted {
            break;
        }
    }
    // Closing the channel stops the committer at its next hand-over, and with it the reader;
    // what was committed stays pending in the outbox for the next run, what was only read is
    // read again.
    drop(rx);
    let committed = committer.await.context("the committing task failed")?;
    let read = reader.await.context("the reading task failed")?;
    if let Some(e) = failed {
        return Err(e);
    }
    out.merge(committed?);
    out.merge(read?);
    Ok(out)
}

enum Stage {
    Read(tokio::sync::mpsc::Sender<Prepared>),
    Commit(
        tokio::sync::mpsc::Receiver<Prepared>,
        tokio::sync::mpsc::Sender<Committed>,
    ),
}

/// Reads and checks pages until the source is drained, handing each to `tx`; with no `tx`
/// (dry run) it prints the records instead.
async fn read_pages(
    app: &App,
    job: &JobConfig,
    cancel: &CancellationToken,
    opts: &RunOptions,
    tx: Option<tokio::sync::mpsc::Sender<Prepared>>,
) -> Result<Outcome> {
    let (platform, dt) = app.platform(job)?;
    let mut out = Outcome::default();
    let (select, plan) = read_plan(app, job, dt).await?;
    let order = job.order_columns();
    let spec = SourceSpec {
        table: &job.source,
        time_column: &job.time_column,
        key: &order,
    };
    let mut position: Option<Position> = app
        .db
        .load_position(&job.name)
        .await?
        .map(|p| serde_json::from_str(&p).context("qz_cursor.position is not valid JSON"))
        .transpose()?;
    let mut dry_seq = if opts.dry_run {
        app.db.todays_last_seq(&app.cfg.unit.uscc).await?
    } else {
        0
    };
    loop {
        if cancel.is_cancelled() {
            out.interrupted = true;
            break;
        }
        let t_read = std::time::Instant::now();
        let rows = app
            .db
            .read_changes(&spec, &select, position.as_ref(), job.batch_size)
            .await?;
        let page_full = rows.len() == job.batch_size;
        let t_prep = std::time::Instant::now();
        let prep = prepare(app, job, dt, platform, &plan, rows, page_full);
        debug!(
            rows = prep.rows,
            read_ms = (t_prep - t_read).as_millis() as u64,
            prepare_ms = t_prep.elapsed().as_millis() as u64,
            "page read"
        );
        if prep.rows == 0 {
            break;
        }
        let (last, drained) = (prep.last.clone(), prep.drained);
        match &tx {
            None => {
                let now = crate::timefmt::now_beijing();
                let cd_time = crate::timefmt::fmt_spec(&now);
                let cd_batch = crate::batch::format_cd_batch(
                    &app.cfg.unit.uscc,
                    crate::batch::batch_day(&now),
                    dry_seq + 1,
                )
                .unwrap_or_default();
                for (op, rec) in &prep.records {
                    println!(
                        "{}",
                        serialize(app, job, &prep.codes, rec, *op, &cd_time, &cd_batch)
                    );
                }
                for e in &prep.errors {
                    eprintln!(
                        "invalid row {}: {} [{}] {}",
                        e.source_key, e.field, e.rule, e.message
                    );
                }
                out.rows_read += prep.rows;
                out.invalid_rows += prep.errors.len();
                dry_seq += 1;
            }
            Some(tx) => {
                if tx.send(prep).await.is_err() {
                    // The committer stopped (shutdown, a fatal answer or an error).
                    break;
                }
            }
        }
        position = last;
        if drained {
            break;
        }
    }
    Ok(out)
}

/// The columns a run reads and the plan over them, resolved once from the source's columns
/// before the first page. A needed column whose type qianzhi cannot decode stops the run here,
/// with the cast to add to the view; one that is not needed is never read.
async fn read_plan(app: &App, job: &JobConfig, dt: &DataType) -> Result<(Vec<String>, Plan)> {
    let view = app.db.source_column_types(&job.source).await?;
    let names: Vec<String> = view.iter().map(|c| c.name.clone()).collect();
    let select = crate::mapping::needed_columns(&names, &app.plan(job, dt, &names), job);
    if !select
        .iter()
        .any(|c| c.eq_ignore_ascii_case(&job.time_column))
    {
        bail!(
            "{} 没有变更时间列 {} (source {} has no change-time column {})",
            job.source,
            job.time_column,
            job.source,
            job.time_column
        );
    }
    if let Some(c) = view
        .iter()
        .find(|c| !c.readable && select.contains(&c.name))
    {
        bail!(c.unreadable_message(app.db.backend, &job.source));
    }
    let plan = app.plan(job, dt, &select);
    Ok((select, plan))
}

/// Numbers and commits each checked page as an exchange, in order, handing each batch on.
async fn commit_pages(
    app: &App,
    job: &JobConfig,
    cancel: &CancellationToken,
    mut pages: tokio::sync::mpsc::Receiver<Prepared>,
    tx: tokio::sync::mpsc::Sender<Committed>,
) -> Result<Outcome> {
    let dt = app.platform(job)?.1;
    let mut out = Outcome::default();
    while let Some(prep) = pages.recv().await {
        if cancel.is_cancelled() {
            out.interrupted = true;
            break;
        }
        let t_commit = std::time::Instant::now();
        let batch = commit_page(app, job, dt, &prep, crate::timefmt::now_beijing()).await?;
        debug!(
            commit_ms = t_commit.elapsed().as_millis() as u64,
            "exchange committed"
        );
        out.rows_read += prep.rows;
        out.invalid_rows += prep.errors.len();
        failpoint("after-outbox-commit");
        if let Some(batch) = batch
            && tx.send(batch).await.is_err()
        {
            // Delivery stopped (shutdown or a fatal answer): leave the rest for later.
            break;
        }
    }
    Ok(out)
}

/// Stores one page as an exchange: the batch (if any record is valid), its calls, the
/// error rows and the new position, in one transaction.
async fn commit_page(
    app: &App,
    job: &JobConfig,
    dt: &DataType,
    prep: &Prepared,
    now: chrono::DateTime<chrono::FixedOffset>,
) -> Result<Option<(BatchRow, Vec<OutboxCall>)>> {
    let cd_time = crate::timefmt::fmt_spec(&now);
    let table = app.table_name(job, dt);
    let new_batch = (!prep.records.is_empty()).then(|| NewBatch {
        upstream: job.upstream.as_str(),
        data_type: &job.data_type,
        table_name: &table,
        unit_code: &app.cfg.unit.uscc,
        at: now,
    });
    let per_call = match (job.upstream, &app.cfg.gansu, &app.cfg.gdzw) {
        (UpstreamKind::Gansu, Some(g), _) => g.max_records_per_call,
        (_, _, Some(g)) => g.max_records_per_call,
        _ => 99,
    };
    let codec = (job.upstream == UpstreamKind::Gansu)
        .then(|| app.gansu.as_ref().map(|c| &c.codec))
        .flatten();
    let pos_json = serde_json::to_string(&prep.last).context("position")?;
    let keys = json_keys(&prep.codes);
    let how = app.null_fields(job);
    let committed = app
        .db
        .commit_exchange(
            &job.name,
            new_batch,
            |cd_batch| {
                let Some(cd_batch) = cd_batch else {
                    return Ok(vec![]);
                };
                prep.records
                    .chunks(per_call)
                    .enumerate()
                    .map(|(n, chunk)| {
                        let body = match codec {
                            // Encrypted here, so the outbox holds exactly the bytes sent.
                            Some(codec) => {
                                let plain: Vec<String> = chunk
                                    .iter()
                                    .map(|(op, rec)| {
                                        let mut out = Vec::with_capacity(1500);
                                        write_record(
                                            &mut out,
                                            how,
                                            &keys,
                                            &prep.codes,
                                            rec,
                                            *op,
                                            &cd_time,
                                            cd_batch,
                                        );
                                        String::from_utf8(out).expect("serde_json writes UTF-8")
                                    })
                                    .collect();
                                let refs: Vec<&str> = plain.iter().map(String::as_str).collect();
                                codec.seal(&refs)?
                            }
                            None => {
                                let mut body = Vec::with_capacity(chunk.len() * 1500);
                                body.push(b'[');
                                for (i, (op, rec)) in chunk.iter().enumerate() {
                                    if i > 0 {
                                        body.push(b',');
                                    }
                                    write_record(
                                        &mut body,
                                        how,
                                        &keys,
                                        &prep.codes,
                                        rec,
                                        *op,
                                        &cd_time,
                                        cd_batch,
                                    );
                                }
                                body.push(b']');
                                String::from_utf8(body).expect("serde_json writes UTF-8")
                            }
                        };
                        Ok(OutboxCall {
                            call_no: n as i64,
                            body,
                            records: chunk
                                .iter()
                                .map(|(op, rec)| RecordMeta {
                                    source_key: rec.source_key.clone(),
                                    row_guid: rec.row_guid.clone(),
                                    operation: op.code().to_string(),
                                })
                                .collect(),
                            done: Default::default(),
                        })
                    })
                    .collect()
            },
            &prep.errors,
            &pos_json,
        )
        .await?;
    if !prep.errors.is_empty() {
        warn!(
            count = prep.errors.len(),
            "rows failed validation and were written to qz_error"
        );
    }
    let Some(id) = committed.cd_batch else {
        return Ok(None);
    };
    let b = BatchRow {
        cd_batch: id,
        exchange_no: Some(committed.exchange_no),
        data_type: job.data_type.clone(),
        table_name: table.clone(),
        record_count: committed.records as i64,
        cd_time: cd_time.clone(),
        created_at: crate::timefmt::now_text(),
    };
    Ok(Some((b, committed.calls)))
}

/// Maps and validates one page. Rows past the settle lag are left for a later run.
fn prepare(
    app: &App,
    job: &JobConfig,
    dt: &DataType,
    platform: &Platform,
    plan: &Plan,
    rows: Vec<SourceRow>,
    page_full: bool,
) -> Prepared {
    let cutoff = crate::timefmt::now_beijing().naive_local()
        - chrono::Duration::from_std(job.settle_lag()).unwrap_or_default();
    let (cd_op, cd_time, cd_batch) = (
        plan.index_of("Cd_Operation"),
        plan.index_of("Cd_Time"),
        plan.index_of("Cd_Batch"),
    );
    let length_unit = match job.upstream {
        UpstreamKind::Gdzw => app.cfg.gdzw.as_ref().map(|g| g.length_unit),
        UpstreamKind::Gansu => None,
    }
    .unwrap_or(crate::config::LengthUnit::Chars);
    let mut p = Prepared {
        codes: Vec::new(),
        records: Vec::new(),
        errors: Vec::new(),
        last: None,
        rows: 0,
        drained: !page_full,
    };
    let placeholder_batch = format!(
        "{}{}00001",
        app.cfg.unit.uscc,
        crate::timefmt::now_beijing().format("%Y%m%d")
    );
    let now_text = crate::timefmt::now_text();
    // Page row number of each error row and of each record, to tell earlier from later.
    let mut error_rows: Vec<usize> = Vec::new();
    let mut record_rows: Vec<usize> = Vec::new();
    for row in rows {
        let t = row
            .get(&job.time_column)
            .and_then(|v| v.to_naive_datetime());
        if t.is_some_and(|t| t > cutoff) {
            p.drained = true;
            break;
        }
        p.rows += 1;
        p.last = Some(row_position(&row, job));
        let key = key_text(&row, &job.key);
        let op_text = row
            .get(&job.operation_column)
            .and_then(|v| v.to_text())
            .unwrap_or_default();
        let Some(op) = Op::parse(&op_text) else {
            p.errors.push(ErrorRow {
                source_key: key,
                row_guid: None,
                operation: None,
                field: job.operation_column.clone(),
                rule: "operation".into(),
                message: format!(
                    "变更类型列 {} 的值 '{op_text}' 不是 I、U、D 之一",
                    job.operation_column
                ),
                superseded: false,
            });
            error_rows.push(p.rows);
            continue;
        };
        if cd_op.is_none() && op == Op::Delete {
            p.errors.push(ErrorRow {
                source_key: key,
                row_guid: None,
                operation: Some(op.code().into()),
                field: job.operation_column.clone(),
                rule: "delete_unsupported".into(),
                message: "该平台的接口没有删除操作，删除的记录未报送；如需撤回请在平台上处理"
                    .into(),
                superseded: false,
            });
            error_rows.push(p.rows);
            continue;
        }
        let mut rec = map_row(plan, &row, key);
        // Checked with the values numbering will give them; the real Cd_Batch is set at commit.
        for (slot, v) in [
            (cd_op, op.code()),
            (cd_time, now_text.as_str()),
            (cd_batch, placeholder_batch.as_str()),
        ] {
            if let Some(i) = slot {
                rec.values[i] = v.into();
            }
        }
        let violations = validate_aligned(&rec.values, dt, platform, length_unit);
        if violations.is_empty() {
            p.records.push((op, rec));
            record_rows.push(p.rows);
        } else {
            for v in violations {
                p.errors.push(ErrorRow {
                    source_key: rec.source_key.clone(),
                    row_guid: Some(rec.row_guid.clone()).filter(|g| !g.is_empty()),
                    operation: Some(op.code().into()),
                    field: v.field,
                    rule: v.rule.into(),
                    message: v.message,
                    superseded: false,
                });
                error_rows.push(p.rows);
            }
        }
    }
    p.codes = plan.fields.iter().map(|(c, _, _)| c.clone()).collect();
    // A bad version followed by a good one of the same row in this page: the good one is
    // delivered in this very batch, so the error is already answered.
    let mut last_valid: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for ((_, rec), row) in p.records.iter().zip(&record_rows) {
        last_valid.insert(rec.source_key.clone(), *row);
    }
    for (e, row) in p.errors.iter_mut().zip(&error_rows) {
        e.superseded = last_valid
            .get(&e.source_key)
            .is_some_and(|valid| valid > row);
    }
    p
}

/// Field codes written once as JSON object keys (`"Code":`), for every record of a page.
fn json_keys(codes: &[String]) -> Vec<String> {
    codes
        .iter()
        .map(|c| format!("{}:", Json::String(c.clone())))
        .collect()
}

fn serialize(
    app: &App,
    job: &JobConfig,
    codes: &[String],
    rec: &crate::mapping::Record,
    op: Op,
    cd_time: &str,
    cd_batch: &str,
) -> String {
    let mut out = Vec::with_capacity(1500);
    let keys = json_keys(codes);
    write_record(
        &mut out,
        app.null_fields(job),
        &keys,
        codes,
        rec,
        op,
        cd_time,
        cd_batch,
    );
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// Appends one record as a JSON object: the plan's fields in order, Cd_* as numbered, nulls
/// as the platform setting wants them.
#[allow(clippy::too_many_arguments)]
fn write_record(
    out: &mut Vec<u8>,
    how: crate::config::NullFields,
    keys: &[String],
    codes: &[String],
    rec: &crate::mapping::Record,
    op: Op,
    cd_time: &str,
    cd_batch: &str,
) {
    use crate::config::NullFields;
    out.push(b'{');
    let mut first = true;
    for ((key, code), v) in keys.iter().zip(codes).zip(&rec.values) {
        let pipeline = match code.as_str() {
            "Cd_Operation" => Some(op.code()),
            "Cd_Time" => Some(cd_time),
            "Cd_Batch" => Some(cd_batch),
            _ => None,
        };
        if pipeline.is_none() && v.is_null() && how == NullFields::Omit {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(key.as_bytes());
        // Writing into a Vec cannot fail, and every value here is plain JSON.
        let _ = match (pipeline, v) {
            (Some(p), _) => serde_json::to_writer(&mut *out, p),
            (None, Json::Null) if how == NullFields::Empty => serde_json::to_writer(&mut *out, ""),
            (None, v) => serde_json::to_writer(&mut *out, v),
        };
    }
    out.push(b'}');
}

/// Sends a batch's pending calls; a refused call is halved until the refused records are
/// isolated, each step recorded so a restart neither loses nor repeats an error row.
async fn deliver(
    app: &App,
    job: &JobConfig,
    b: &BatchRow,
    fresh: Option<Vec<OutboxCall>>,
    cancel: &CancellationToken,
    out: &mut Outcome,
) -> Result<()> {
    let span = info_span!("batch", job = %job.name, cd_batch = %b.cd_batch);
    async {
        let t_deliver = std::time::Instant::now();
        let dt = app.platform(job)?.1;
        let client = app.sender(job, dt)?;
        // A batch just committed is delivered from memory; a pending one from the outbox.
        let mut calls = match fresh {
            Some(c) => c,
            None => app.db.outbox_pending(&b.cd_batch).await?,
        };
        let resolve = app.db.has_open_errors(&job.name).await?;
        let mut backoff = Backoff::new(app.cfg.delivery.retry_initial(), app.cfg.delivery.retry_max());
        let ack_every = app.cfg.delivery.ack_every_calls.max(1);
        let mut acked: Vec<usize> = Vec::new();
        let mut post_time = std::time::Duration::ZERO;
        let at = Call { app, job, b, client: &client, resolve, cancel };
        // A call whose records were all refused with one and the same answer: held back until
        // the next call shows whether the answer is about content or about the connection.
        let mut suspect: Option<Suspect> = None;
        for ci in 0..calls.len() {
            if !calls[ci].done.is_empty() {
                // A split was under way when the last run stopped: finish it.
                flush_acks(app, job, b, resolve, &mut acked, &calls).await?;
                if let Some(s) = suspect.take() {
                    s.refuse(&at, &mut calls, out).await?;
                }
                match split_call(&at, &mut calls[ci], None, &mut backoff, out).await? {
                    Split::Done => app.db.ack_calls(&job.name, b, &[&calls[ci]], false).await?,
                    Split::Interrupted => return Ok(()),
                    // Not reached (a resumed split holds nothing back); if it were, the refusals stand.
                    Split::AllRefusedAlike(msg, refused) => Suspect { call: ci, msg, refused }.refuse(&at, &mut calls, out).await?,
                }
                continue;
            }
            loop {
                if cancel.is_cancelled() {
                    flush_acks(app, job, b, resolve, &mut acked, &calls).await?;
                    out.interrupted = true;
                    return Ok(());
                }
                let t_post = std::time::Instant::now();
                let posted = client.post(calls[ci].body.clone()).await;
                post_time += t_post.elapsed();
                if let (Some(s), Ok(_) | Err(SubmitError::Rejected(_))) = (&suspect, &posted) {
                    if matches!(&posted, Err(SubmitError::Rejected(m)) if *m == s.msg) {
                        flush_acks(app, job, b, resolve, &mut acked, &calls).await?;
                        return Err(s.stop(job, &calls[s.call]).into());
                    }
                    let s = suspect.take().expect("checked above");
                    s.refuse(&at, &mut calls, out).await?;
                }
                match posted {
                    Ok(receipt) => {
                        note_receipt(app, b, &calls[ci], calls[ci].records.len(), receipt).await?;
                        out.delivered += calls[ci].records.len();
                        acked.push(ci);
                        if acked.len() >= ack_every {
                            flush_acks(app, job, b, resolve, &mut acked, &calls).await?;
                        }
                        backoff.reset();
                        failpoint("after-first-call");
                        break;
                    }
                    Err(SubmitError::Retryable(msg)) => {
                        // Record progress before waiting: an outage can last long.
                        flush_acks(app, job, b, resolve, &mut acked, &calls).await?;
                        if !wait_to_retry(&mut backoff, &msg, cancel).await {
                            out.interrupted = true;
                            return Ok(());
                        }
                    }
                    Err(SubmitError::Rejected(msg)) => {
                        flush_acks(app, job, b, resolve, &mut acked, &calls).await?;
                        info!(records = calls[ci].records.len(), error = %msg, "call refused, splitting it to find the refused records");
                        if calls[ci].records.len() == 1 {
                            calls[ci].done.insert(0, 'r');
                            app.db.record_split_progress(&job.name, b, &calls[ci], &[0], Some(&format!("平台拒收：{msg}")), false).await?;
                            out.refused_by_platform += 1;
                            app.db.ack_calls(&job.name, b, &[&calls[ci]], false).await?;
                            break;
                        }
                        match split_call(&at, &mut calls[ci], Some(msg), &mut backoff, out).await? {
                            Split::Done => app.db.ack_calls(&job.name, b, &[&calls[ci]], false).await?,
                            Split::Interrupted => return Ok(()),
                            Split::AllRefusedAlike(msg, refused) => {
                                warn!(records = refused.len(), error = %msg, "every record of the call was refused with the same answer; the next call decides whether that is about content");
                                suspect = Some(Suspect { call: ci, msg, refused });
                            }
                        }
                        break;
                    }
                    Err(SubmitError::Fatal(msg)) => {
                        flush_acks(app, job, b, resolve, &mut acked, &calls).await?;
                        return Err(JobStopped(format!("job {} stopped, its outbox is kept for resending: {msg}", job.name)).into());
                    }
                }
            }
        }
        // The batch's last call has no next call to compare with: its refusals stand.
        if let Some(s) = suspect.take() {
            s.refuse(&at, &mut calls, out).await?;
        }
        let upload = job.upstream == UpstreamKind::Gdzw && app.cfg.gdzw.as_ref().is_some_and(|g| g.reconciliation_upload);
        // The last acks and the batch's closing share one transaction.
        let last_acks: Vec<&OutboxCall> = acked.iter().map(|i| &calls[*i]).collect();
        let recon = app.db.finish_batch(&job.name, b, &last_acks, resolve, if upload { "pending" } else { "off" }).await?;
        out.batches.push(b.cd_batch.clone());
        info!(delivered = recon.cd_count, "batch done");
        debug!(
            deliver_ms = t_deliver.elapsed().as_millis() as u64,
            post_ms = post_time.as_millis() as u64,
            "batch delivered"
        );
        if upload {
            upload_pending_reconciliations(app, job).await?;
        }
        Ok(())
    }
    .instrument(span)
    .await
}

/// Acknowledged calls are recorded together, one transaction per `ack_every_calls`, which
/// keeps the database's commit rate off the hot path; a crash resends at most those calls.
async fn flush_acks(
    app: &App,
    job: &JobConfig,
    b: &BatchRow,
    resolve: bool,
    acked: &mut Vec<usize>,
    calls: &[OutboxCall],
) -> Result<()> {
    let done: Vec<&OutboxCall> = acked.iter().map(|i| &calls[*i]).collect();
    acked.clear();
    app.db.ack_calls(&job.name, b, &done, resolve).await
}

/// Keeps the platform's own batch number of an accepted call (Gansu answers with one).
async fn note_receipt(
    app: &App,
    b: &BatchRow,
    call: &OutboxCall,
    records: usize,
    receipt: Option<Receipt>,
) -> Result<()> {
    match receipt {
        Some(r) => {
            debug!(platform_batch_num = %r.batch_num, "call accepted");
            app.db
                .record_receipt(&b.cd_batch, call.call_no, records, &r.batch_num, &r.id)
                .await
        }
        None => Ok(()),
    }
}

/// Sleeps before a retry; false when shutdown came first.
async fn wait_to_retry(backoff: &mut Backoff, msg: &str, cancel: &CancellationToken) -> bool {
    let wait = backoff.next_delay();
    warn!(error = %msg, retry_in_ms = wait.as_millis() as u64, "temporary failure, will resend the same call");
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = cancel.cancelled() => false,
    }
}

/// What one call's delivery works with, shared by the steps that split and settle it.
struct Call<'a> {
    app: &'a App,
    job: &'a JobConfig,
    b: &'a BatchRow,
    client: &'a Sender<'a>,
    resolve: bool,
    cancel: &'a CancellationToken,
}

/// How splitting a refused call ended.
enum Split {
    /// Every record is acked or recorded as refused.
    Done,
    /// Shutdown came first; the progress so far is recorded.
    Interrupted,
    /// Nothing was accepted and every record was refused alone with this same answer.
    /// Nothing is recorded yet: these indexes are refused only if the next call shows that
    /// the answer is about content.
    AllRefusedAlike(String, Vec<usize>),
}

/// A call whose records were all refused with one answer, held back (not recorded, not acked).
struct Suspect {
    call: usize,
    msg: String,
    refused: Vec<usize>,
}

impl Suspect {
    /// The next call was refused with the same answer before anyone looked at its records:
    /// a wrong token or gateway setting answered in-band, not bad content. Nothing of either
    /// call is recorded, so both are resent once the cause is fixed.
    fn stop(&self, job: &JobConfig, call: &OutboxCall) -> JobStopped {
        JobStopped(format!(
            "job {} stopped, its outbox is kept for resending: all {} records of call {} were \
             refused one by one with the same answer and the next call was refused with it too, \
             so the answer is not about their content (a wrong token or gateway setting?): {}. \
             Nothing was recorded as refused. If this errCode always means a configuration \
             problem, list it in gdzw.fatal_err_codes. \
             (作业已停止，待发箱保留：一次提交的全部记录逐条被拒且答复相同，下一次提交也得到同样答复，\
             说明与数据内容无关，请检查令牌或网关设置；没有任何记录被记为拒收。)",
            job.name,
            self.refused.len(),
            call.call_no,
            self.msg
        ))
    }

    /// The next call was answered differently, so the refusals were about content after all:
    /// record them as error rows and close the call.
    async fn refuse(
        self,
        at: &Call<'_>,
        calls: &mut [OutboxCall],
        out: &mut Outcome,
    ) -> Result<()> {
        let call = &mut calls[self.call];
        self.record(at, call, out).await?;
        at.app
            .db
            .ack_calls(&at.job.name, at.b, &[&*call], false)
            .await
    }

    /// Writes held-back refusals as error rows (in a split, the call is acked later as a whole).
    async fn record(&self, at: &Call<'_>, call: &mut OutboxCall, out: &mut Outcome) -> Result<()> {
        if self.refused.is_empty() {
            return Ok(());
        }
        for i in &self.refused {
            warn!(row_guid = %call.records[*i].row_guid, error = %self.msg, "record refused by the platform");
            call.done.insert(*i, 'r');
        }
        let why = format!("平台拒收：{}", self.msg);
        at.app
            .db
            .record_split_progress(&at.job.name, at.b, call, &self.refused, Some(&why), false)
            .await?;
        out.refused_by_platform += self.refused.len();
        Ok(())
    }
}

/// Halves a refused call until every record is acked or refused alone. Each record's
/// bytes are taken from the stored body unchanged. `whole` is the answer that refused the
/// whole call (None when resuming a split): while nothing is accepted and every answer is
/// that same one, single refusals are held back for the safety valve (see `Split`).
async fn split_call(
    at: &Call<'_>,
    call: &mut OutboxCall,
    whole: Option<String>,
    backoff: &mut Backoff,
    out: &mut Outcome,
) -> Result<Split> {
    let Call {
        app,
        job,
        b,
        client,
        resolve,
        cancel,
    } = *at;
    let raw = client.parts(&call.body)?;
    let todo: Vec<usize> = (0..raw.len())
        .filter(|i| !call.done.contains_key(i))
        .collect();
    let mut queue: VecDeque<Vec<usize>> = VecDeque::new();
    // The whole remainder was just refused (or is being resumed): start with its halves.
    let (a, c) = todo.split_at(todo.len() / 2);
    for part in [c, a] {
        if !part.is_empty() {
            queue.push_front(part.to_vec());
        }
    }
    // Refusals held back while every answer so far is `whole` and nothing was accepted.
    let mut alike: Option<Suspect> = whole.map(|msg| Suspect {
        call: 0,
        msg,
        refused: Vec::new(),
    });
    while let Some(part) = queue.pop_front() {
        if cancel.is_cancelled() {
            out.interrupted = true;
            return Ok(Split::Interrupted);
        }
        let body = client.join(&part.iter().map(|i| raw[*i].as_str()).collect::<Vec<_>>())?;
        let posted = client.post(body).await;
        let same = match (&alike, &posted) {
            (Some(s), Err(SubmitError::Rejected(m))) => *m == s.msg,
            (_, Err(SubmitError::Retryable(_))) => true,
            _ => false,
        };
        if !same && let Some(s) = alike.take() {
            // An acceptance or another answer: the held-back refusals were about content.
            s.record(at, call, out).await?;
        }
        match posted {
            Ok(receipt) => {
                note_receipt(app, b, call, part.len(), receipt).await?;
                part.iter().for_each(|i| {
                    call.done.insert(*i, 'a');
                });
                app.db
                    .record_split_progress(&job.name, b, call, &part, None, resolve)
                    .await?;
                out.delivered += part.len();
                backoff.reset();
                failpoint("after-split-progress");
            }
            Err(SubmitError::Retryable(msg)) => {
                if !wait_to_retry(backoff, &msg, cancel).await {
                    out.interrupted = true;
                    return Ok(Split::Interrupted);
                }
                queue.push_front(part);
            }
            Err(SubmitError::Rejected(_)) if part.len() == 1 && alike.is_some() => {
                alike.as_mut().expect("checked").refused.push(part[0]);
            }
            Err(SubmitError::Rejected(msg)) if part.len() == 1 => {
                let m = &call.records[part[0]];
                warn!(row_guid = %m.row_guid, error = %msg, "record refused by the platform");
                call.done.insert(part[0], 'r');
                app.db
                    .record_split_progress(
                        &job.name,
                        b,
                        call,
                        &part,
                        Some(&format!("平台拒收：{msg}")),
                        false,
                    )
                    .await?;
                out.refused_by_platform += 1;
            }
            Err(SubmitError::Rejected(_)) => {
                let (a, c) = part.split_at(part.len() / 2);
                queue.push_front(c.to_vec());
                queue.push_front(a.to_vec());
            }
            Err(SubmitError::Fatal(msg)) => {
                return Err(JobStopped(format!(
                    "job {} stopped, its outbox is kept for resending: {msg}",
                    job.name
                ))
                .into());
            }
        }
    }
    Ok(match alike {
        Some(s) if !s.refused.is_empty() => Split::AllRefusedAlike(s.msg, s.refused),
        _ => Split::Done,
    })
}

/// Reconciliation uploads are best effort per run: a temporary failure leaves the row pending
/// for the next run without holding back deliveries, and a content refusal marks it failed.
/// A fatal answer (credentials, address) also leaves it pending, and stops the job as a data
/// call's would: the upload goes out once the cause is fixed.
async fn upload_pending_reconciliations(app: &App, job: &JobConfig) -> Result<()> {
    let Some(client) = app.gdzw.as_ref() else {
        return Ok(());
    };
    let pending = match app.db.pending_reconciliations(&job.name).await {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "cannot read pending reconciliation rows");
            return Ok(());
        }
    };
    let Some(dt) = app.catalog.data_type("gdzw", "reconciliation") else {
        bail!("the gdzw schemas have no reconciliation data type");
    };
    for r in pending {
        let (state, msg) = match client
            .upload_reconciliation(dt, std::slice::from_ref(&r))
            .await
        {
            Ok(()) => ("ok", String::new()),
            Err(SubmitError::Retryable(m)) => {
                warn!(cd_batch = %r.cd_batch, error = %m, "reconciliation upload failed, will retry next run");
                let _ = app
                    .db
                    .set_reconciliation_upload(&r.cd_batch, "pending", &m)
                    .await;
                return Ok(());
            }
            Err(SubmitError::Fatal(m)) => {
                let _ = app
                    .db
                    .set_reconciliation_upload(&r.cd_batch, "pending", &format!("fatal: {m}"))
                    .await;
                return Err(JobStopped(format!(
                    "job {} stopped, its reconciliation upload of {} is kept pending: {m}",
                    job.name, r.cd_batch
                ))
                .into());
            }
            Err(e @ SubmitError::Rejected(_)) => ("failed", e.to_string()),
        };
        if state == "failed" {
            warn!(cd_batch = %r.cd_batch, error = %msg, "reconciliation upload refused");
        }
        if let Err(e) = app
            .db
            .set_reconciliation_upload(&r.cd_batch, state, &msg)
            .await
        {
            warn!(error = %e, "cannot record the reconciliation upload");
        }
    }
    Ok(())
}
