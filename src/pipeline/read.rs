//! The read stage: source pages in change order, each row mapped to the data type's fields and
//! validated, rows past the settle lag left for a later run.

use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::{Outcome, Run, RunOptions};
use crate::config::{JobConfig, LengthUnit, Mode, ReadOrder};
use crate::db::control::ErrorRow;
use crate::db::row_state::StateChanges;
use crate::db::source::{Cursor, Position, SeqPosition, SourceSpec};
use crate::mapping::{Op, Plan, Record, RowMap, key_text};
use crate::upstream::{CallRecords, Fields};
use crate::validate::{Prechecked, validate_record};
use crate::value::{Field, SourceRow, Value};

/// One new exchange, mapped and validated, ready to be committed.
pub(super) struct Prepared {
    /// The fields in the order of each record's values.
    pub fields: Fields,
    pub records: Vec<(Op, Record)>,
    pub errors: Vec<ErrorRow>,
    /// The position after the page's last row, stored with it.
    pub last: Option<Cursor>,
    pub rows: usize,
    /// The page ended at the settle lag (or was short): no more rows to read now.
    pub drained: bool,
    /// The row states the exchange changes (snapshot mode; incremental mode settles them at
    /// commit).
    pub state: StateChanges,
}

/// Reads and checks pages until the source is drained, handing each to `tx`; with no `tx`
/// (dry run) it prints the records instead.
pub(super) async fn read_pages(
    run: &Run<'_>,
    opts: &RunOptions,
    tx: Option<mpsc::Sender<Prepared>>,
) -> Result<Outcome> {
    let (app, job) = (run.app, run.job);
    let mut out = Outcome::default();
    let (select, plan) = read_plan(run).await?;
    let mut spec = SourceSpec::of(job);
    let stored = app
        .db
        .load_position(&job.name)
        .await?
        .map(|p| serde_json::from_str(&p).context("qz_cursor.position is not valid JSON"))
        .transpose()?
        .map(|p| Cursor::parse(job, &p))
        .transpose()?;
    let mut position = stored;
    if let Some(seq_column) = job.seq_order() {
        let stored = match position.take() {
            Some(Cursor::Seq(p)) => p,
            _ => SeqPosition::default(),
        };
        let (observed, upto) = super::seq::observe(run, opts, seq_column, stored).await?;
        let Some(upto) = upto else {
            info!(
                "按序号读取：还没有早于 settle_lag 的观测，本次只记录观测 (order = \"seq\": \
                 nothing observed settle_lag ago yet; this run only observed the source)"
            );
            return Ok(out);
        };
        spec.upto = Some(upto);
        position = Some(Cursor::Seq(observed));
    }
    let mut dry_seq = if opts.dry_run {
        app.db.todays_last_seq(&app.cfg.unit.uscc).await?
    } else {
        0
    };
    loop {
        if run.cancel.is_cancelled() {
            out.interrupted = true;
            break;
        }
        let t_read = std::time::Instant::now();
        let after = position.as_ref().and_then(Cursor::after);
        let rows = app
            .db
            .read_changes(&spec, &select, after.as_deref(), job.batch_size)
            .await?;
        let page_full = rows.len() == job.batch_size;
        let t_prep = std::time::Instant::now();
        let prep = Checker::new(run, &plan).prepare(rows, page_full, position.as_ref())?;
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
                dry_seq += 1;
                print_page(run, &prep, dry_seq, &mut out);
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

/// A dry run's page: its records as they would be sent under the `seq`th Cd_Batch of the day
/// (before encryption), its invalid rows on stderr.
fn print_page(run: &Run<'_>, prep: &Prepared, seq: i64, out: &mut Outcome) {
    let now = crate::timefmt::now_beijing();
    let cd_time = crate::timefmt::fmt_spec(&now);
    let unit = &run.app.cfg.unit.uscc;
    let cd_batch =
        crate::batch::format_cd_batch(unit, crate::batch::batch_day(&now), seq).unwrap_or_default();
    let call = CallRecords {
        fields: &prep.fields,
        records: &prep.records,
        cd_time: &cd_time,
        cd_batch: &cd_batch,
    };
    for i in 0..call.len() {
        println!("{}", call.text(i, run.upstream.null_fields()));
    }
    for e in &prep.errors {
        eprintln!(
            "invalid row {}: {} [{}] {}",
            e.source_key, e.field, e.rule, e.message
        );
    }
    out.rows_read += prep.rows;
    out.invalid_rows += prep.errors.len();
}

/// The columns a run reads and the plan over them, resolved once from the source's columns
/// before the first page. A needed column whose type qianzhi cannot decode stops the run here,
/// with the cast to add to the view; one that is not needed is never read.
pub(super) async fn read_plan(run: &Run<'_>) -> Result<(Vec<String>, Plan)> {
    let (app, job) = (run.app, run.job);
    let view = app.db.source_column_types(&job.source).await?;
    let names: Vec<String> = view.iter().map(|c| c.name.clone()).collect();
    let select = crate::mapping::needed_columns(&names, &run.plan(&names), job);
    let lead = job.keyset().swap_remove(0);
    if job.mode != Mode::Snapshot && !select.iter().any(|c| c.eq_ignore_ascii_case(&lead)) {
        let (zh, en) = match job.order {
            ReadOrder::Time => ("变更时间列", "change-time column"),
            ReadOrder::Seq => ("序号列", "seq column"),
        };
        let source = &job.source;
        bail!("{source} 没有{zh} {lead} (source {source} has no {en} {lead})");
    }
    if let Some(c) = view
        .iter()
        .find(|c| !c.readable && select.contains(&c.name))
    {
        bail!(c.unreadable_message(app.db.backend, &job.source));
    }
    let plan = run.plan(&select);
    Ok((select, plan))
}

/// The position after `row`, read in the job's order from `from` (seq order keeps what
/// the run observed).
fn advance(job: &JobConfig, from: Option<&Cursor>, row: &SourceRow) -> Result<Cursor> {
    let value = |c: &String| row.get(c).cloned().unwrap_or(Value::Null);
    let mut keyset = job
        .keyset()
        .iter()
        .map(value)
        .collect::<Vec<_>>()
        .into_iter();
    let lead = keyset.next().unwrap_or_default();
    let Some(seq_column) = job.seq_order() else {
        return Ok(Cursor::Time(Position {
            time: lead,
            key: keyset.collect(),
        }));
    };
    let seen = match from {
        Some(Cursor::Seq(p)) => p.seen.clone(),
        _ => Vec::new(),
    };
    Ok(Cursor::Seq(SeqPosition {
        seq: Some(crate::db::source::seq_value(
            &lead,
            &job.source,
            seq_column,
        )?),
        seen,
    }))
}

/// Maps and validates the rows of one page, with what every row of the page shares.
pub(super) struct Checker<'a> {
    run: &'a Run<'a>,
    plan: &'a Plan,
    /// Rows changed after this (the settle lag) are left for a later run; None in seq order,
    /// whose read stops at the settled bound instead.
    cutoff: Option<chrono::NaiveDateTime>,
    /// Where Cd_Operation is among the plan's fields.
    cd_op: Option<usize>,
    length_unit: LengthUnit,
    /// Per field, the value every record of the page has: the job's constants, and the
    /// values numbering will give Cd_Time and Cd_Batch. Records hold null there.
    shared: Vec<Option<Field>>,
    /// Cd_Operation as validation sees it, by operation.
    ops: [Field; 3],
    /// The shared values that passed their checks, not checked again per record.
    prechecked: Prechecked,
}

impl<'a> Checker<'a> {
    pub(super) fn new(run: &'a Run<'a>, plan: &'a Plan) -> Self {
        let cutoff = (run.job.order == ReadOrder::Time).then(|| {
            crate::timefmt::now_beijing().naive_local()
                - chrono::Duration::from_std(run.job.settle_lag()).unwrap_or_default()
        });
        let placeholder_batch = format!(
            "{}{}00001",
            run.app.cfg.unit.uscc,
            crate::timefmt::now_beijing().format("%Y%m%d")
        );
        let mut shared = plan.constants();
        // Checked with the values numbering will give them; the real Cd_Batch is set at commit.
        for (code, v) in [
            ("Cd_Time", crate::timefmt::now_text()),
            ("Cd_Batch", placeholder_batch),
        ] {
            if let Some(i) = plan.index_of(code) {
                shared[i] = Some(Field::from(v));
            }
        }
        let length_unit = run.upstream.length_unit();
        let prechecked = Prechecked::new(
            shared
                .iter()
                .enumerate()
                .filter_map(|(i, v)| Some((i, v.as_ref()?))),
            run.dt,
            run.platform,
            length_unit,
        );
        Checker {
            run,
            plan,
            cutoff,
            cd_op: plan.index_of("Cd_Operation"),
            length_unit,
            shared,
            ops: [Op::Insert, Op::Update, Op::Delete].map(|o| Field::from(o.code())),
            prechecked,
        }
    }

    /// The first row of a page that changed after the settle lag (time order), if any. The
    /// time column is found once per page, not by name in every row.
    fn first_too_recent(&self, rows: &[SourceRow]) -> Option<usize> {
        let cutoff = self.cutoff?;
        let column = &self.run.job.time_column;
        let mut at = None;
        rows.iter().position(|row| {
            let i = match at {
                Some((ref names, i)) if Arc::ptr_eq(names, &row.names) => i,
                _ => {
                    let i = row.index_of(column);
                    at = Some((row.names.clone(), i));
                    i
                }
            };
            i.and_then(|i| row.values.get(i))
                .and_then(Value::to_naive_datetime)
                .is_some_and(|t| t > cutoff)
        })
    }

    /// Maps and validates one page read after `from`. Rows past the settle lag are left for a
    /// later run.
    fn prepare(
        &self,
        mut rows: Vec<SourceRow>,
        page_full: bool,
        from: Option<&Cursor>,
    ) -> Result<Prepared> {
        let job = self.run.job;
        let mut p = Prepared {
            fields: Fields::default(),
            records: Vec::new(),
            errors: Vec::new(),
            last: None,
            rows: 0,
            drained: !page_full,
            state: StateChanges::default(),
        };
        // The first row past the settle lag and every row after it wait for a later run.
        if let Some(n) = self.first_too_recent(&rows) {
            rows.truncate(n);
            p.drained = true;
        }
        p.rows = rows.len();
        p.last = rows.last().map(|row| advance(job, from, row)).transpose()?;
        // Page row number (from 1) of each error row and of each record, to tell earlier
        // from later.
        let mut error_rows: Vec<usize> = Vec::new();
        let mut record_rows: Vec<usize> = Vec::new();
        p.records.reserve(rows.len());
        let names = rows.first().map(|r| r.names.clone()).unwrap_or_default();
        let map = self.plan.over(&names);
        for (n, row) in (1..).zip(rows) {
            match self.check(&map, row) {
                Ok(record) => {
                    p.records.push(record);
                    record_rows.push(n);
                }
                Err(errors) => {
                    error_rows.extend(std::iter::repeat_n(n, errors.len()));
                    p.errors.extend(errors);
                }
            }
        }
        p.fields = self.fields();
        mark_superseded(&p.records, &record_rows, &mut p.errors, &error_rows);
        Ok(p)
    }

    /// The fields of the page's records, with the values they all share.
    pub(super) fn fields(&self) -> Fields {
        Fields::new(self.plan.fields.iter().map(|(c, _, _)| c.clone()).collect())
            .with_constants(&self.shared)
    }

    /// Whether the platform takes deletes (its data type has Cd_Operation).
    pub(super) fn deletes_supported(&self) -> bool {
        self.cd_op.is_some()
    }

    /// One row as a record, or the error rows that keep it back.
    fn check(&self, map: &RowMap<'_>, row: SourceRow) -> Result<(Op, Record), Vec<ErrorRow>> {
        let job = self.run.job;
        let key = key_text(&row, &job.key);
        let op = self.operation(&row, &key)?;
        self.validated(op, map.map_row(row, key))
    }

    /// A mapped record as it will be sent with `op`, or the error rows that keep it back.
    pub(super) fn validated(&self, op: Op, rec: Record) -> Result<(Op, Record), Vec<ErrorRow>> {
        let op_value = &self.ops[op as usize];
        let get = |i: usize| {
            if Some(i) == self.cd_op {
                return Some(op_value);
            }
            match self.shared.get(i) {
                Some(Some(v)) => Some(v),
                _ => rec.values.get(i),
            }
        };
        let (dt, platform) = (self.run.dt, self.run.platform);
        let violations = validate_record(get, dt, platform, self.length_unit, &self.prechecked);
        if violations.is_empty() {
            return Ok((op, rec));
        }
        Err(violations
            .into_iter()
            .map(|v| ErrorRow {
                source_key: rec.source_key.clone(),
                row_guid: Some(rec.row_guid.clone()).filter(|g| !g.is_empty()),
                operation: Some(op.code().into()),
                field: v.field,
                rule: v.rule.into(),
                message: v.message,
                superseded: false,
            })
            .collect())
    }

    /// The row's change type, if it is one qianzhi can send to this platform. In incremental
    /// mode a row is an insert here, or a delete by its `deleted_column`; the commit stage
    /// tells an update from an insert (`qz_row_state`).
    fn operation(&self, row: &SourceRow, key: &str) -> Result<Op, Vec<ErrorRow>> {
        let job = self.run.job;
        let column = match (job.mode, &job.deleted_column) {
            (Mode::Changelog, _) => &job.operation_column,
            (Mode::Incremental, None) | (Mode::Snapshot, _) => return Ok(Op::Insert),
            (Mode::Incremental, Some(c)) => c,
        };
        let op_text = match row.get(column) {
            Some(Value::Text(t)) => std::borrow::Cow::Borrowed(t.as_str()),
            v => v.and_then(Value::to_text).unwrap_or_default().into(),
        };
        let error = |operation: Option<Op>, rule: &str, message: String| {
            vec![ErrorRow {
                source_key: key.to_string(),
                row_guid: None,
                operation: operation.map(|o| o.code().into()),
                field: column.clone(),
                rule: rule.into(),
                message,
                superseded: false,
            }]
        };
        let parsed = match job.mode {
            Mode::Changelog => Op::parse(&op_text),
            Mode::Incremental if job.is_deleted_value(op_text.trim()) => Some(Op::Delete),
            Mode::Incremental | Mode::Snapshot => Some(Op::Insert),
        };
        let Some(op) = parsed else {
            let why = format!("变更类型列 {column} 的值 '{op_text}' 不是 I、U、D 之一");
            return Err(error(None, "operation", why));
        };
        if self.cd_op.is_none() && op == Op::Delete {
            let why = "该平台的接口没有删除操作，删除的记录未报送；如需撤回请在平台上处理";
            return Err(error(Some(op), "delete_unsupported", why.into()));
        }
        Ok(op)
    }
}

/// A bad version followed by a good one of the same row in this page: the good one is
/// delivered in this very batch, so the error is already answered.
fn mark_superseded(
    records: &[(Op, Record)],
    record_rows: &[usize],
    errors: &mut [ErrorRow],
    error_rows: &[usize],
) {
    // Nearly every page has no error: no map of its keys then.
    if errors.is_empty() {
        return;
    }
    let mut last_valid: HashMap<&str, usize> = HashMap::new();
    for ((_, rec), row) in records.iter().zip(record_rows) {
        last_valid.insert(&rec.source_key, *row);
    }
    for (e, row) in errors.iter_mut().zip(error_rows) {
        e.superseded = last_valid
            .get(e.source_key.as_str())
            .is_some_and(|valid| valid > row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(key: &str) -> ErrorRow {
        ErrorRow {
            source_key: key.into(),
            row_guid: None,
            operation: None,
            field: "f".into(),
            rule: "r".into(),
            message: String::new(),
            superseded: false,
        }
    }

    fn record(key: &str) -> (Op, Record) {
        let rec = Record {
            source_key: key.into(),
            row_guid: String::new(),
            values: vec![],
        };
        (Op::Update, rec)
    }

    #[test]
    fn only_a_later_valid_version_supersedes_an_error() {
        // Page rows: 1 a(bad) 2 a(good) 3 b(good) 4 b(bad) 5 c(bad, twice) 6 a(bad)
        let records = [record("a"), record("b")];
        let mut errors = [error("a"), error("b"), error("c"), error("c"), error("a")];
        mark_superseded(&records, &[2, 3], &mut errors, &[1, 4, 5, 5, 6]);
        let got: Vec<bool> = errors.iter().map(|e| e.superseded).collect();
        assert_eq!(got, [true, false, false, false, false]);
    }
}
