//! `mode = "snapshot"`: the whole view, in the byte order of its key, merge-joined with the
//! job's `qz_row_state` in the same order (both streamed): a key only in the view is an
//! insert, a key in both whose record digest differs an update, a key only in the state a
//! delete. The diff pass decides first and holds what it found; the safety valve may then
//! stop the job before anything is sent. Only when more changed than it holds (the first
//! snapshot of a big view, say) is the view read a second time to emit them.

use anyhow::{Result, bail};
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::mpsc;
use tracing::info;

use super::read::{Checker, Prepared, read_plan};
use super::{JobStopped, Outcome, Run, RunOptions};
use crate::db::control::ErrorRow;
use crate::db::row_state::{Delivered, StateChanges, pack_record, unpack_record};
use crate::db::snapshot::{StateEntry, snapshot_sql};
use crate::mapping::{Op, Plan, Record, RowMap, key_text};
use crate::value::{Field, SourceRow};

/// Rows per chunk handed from each stream to the merge.
const CHUNK: usize = 1024;

/// Changed rows the diff pass holds for sending after the safety valve; beyond this the view
/// is read again to emit them (held packed, about 1 KB each with key and digest: some 20 MB).
const HOLD: usize = 20_000;

/// One difference between the view and what was delivered.
enum Change {
    /// A new key (insert) or a changed record (update): the record, its sort key, digest and
    /// JSON packed by `pack_record` (what `qz_row_state` keeps for a later delete).
    Upsert {
        op: Op,
        rec: Record,
        key_sort: Vec<u8>,
        digest: String,
        json: Vec<u8>,
    },
    /// A delivered key gone from the view.
    Delete(StateEntry),
}

impl Change {
    /// The change as the diff pass holds it: an upsert keeps its record only as the packed
    /// JSON (about a fifth of the memory of the values); `Pages::prepare` restores it.
    fn compact(mut self) -> Change {
        if let Change::Upsert { rec, .. } = &mut self {
            rec.values = Vec::new();
        }
        self
    }
}

/// The values of a record held compact, from the JSON it was digested from (the same values:
/// JSON text of strings, integers, floats and null reads back as it was written).
fn restore(rec: &mut Record, json: &[u8], width: usize) -> Result<()> {
    if !rec.values.is_empty() || width == 0 {
        return Ok(());
    }
    let text = unpack_record(json)
        .ok_or_else(|| anyhow::anyhow!("a held snapshot record cannot be unpacked"))?;
    rec.values = fields_from_json(&text)?;
    Ok(())
}

/// A record's values from their JSON array. Mapping makes only text, numbers and null; any
/// other JSON value (none is ever written) is kept as its JSON text, not dropped.
fn fields_from_json(text: &[u8]) -> serde_json::Result<Vec<Field>> {
    let values: Vec<serde_json::Value> = serde_json::from_slice(text)?;
    Ok(values.into_iter().map(Field::from_json_or_text).collect())
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    rows: usize,
    inserts: usize,
    updates: usize,
    deletes: usize,
}

/// What every pass of one snapshot shares.
struct Snap<'a> {
    run: &'a Run<'a>,
    plan: Plan,
    sql: String,
}

/// The snapshot run: diff, safety valve, then the changes as pages to `tx` (the committer).
/// A dry run (no `tx`) diffs and prints what it would send.
pub(super) async fn read_snapshot(
    run: &Run<'_>,
    opts: &RunOptions,
    tx: Option<mpsc::Sender<Prepared>>,
) -> Result<Outcome> {
    let (app, job) = (run.app, run.job);
    let (select, plan) = read_plan(run).await?;
    let view = app.db.source_column_types(&job.source).await?;
    let sql = snapshot_sql(app.db.backend, &job.source, &select, &job.key, &view);
    let snap = Snap { run, plan, sql };
    let known = app.db.state_count(&job.name).await?;
    let mut out = Outcome::default();
    // Nothing delivered yet: nothing to delete, every row is an insert; sent as it is read.
    if known == 0 && !opts.dry_run {
        let counts = snap.pass(&mut Sink::emit(&snap, tx)).await?;
        log_counts(&counts, known);
        return Ok(out);
    }
    let mut hold = Sink::Hold {
        held: Vec::new(),
        overflowed: false,
    };
    let counts = snap.pass(&mut hold).await?;
    log_counts(&counts, known);
    valve(run, &counts, known, opts)?;
    let Some(tx) = tx else {
        println!(
            "snapshot {}: {} rows read; would send {} inserts, {} updates, {} deletes",
            job.name, counts.rows, counts.inserts, counts.updates, counts.deletes
        );
        out.rows_read = counts.rows;
        return Ok(out);
    };
    match hold {
        Sink::Hold {
            held,
            overflowed: false,
        } => {
            let mut sink = Sink::emit(&snap, Some(tx));
            for c in held {
                sink.take(&snap, c).await?;
            }
            sink.finish(&snap).await?;
        }
        _ => {
            snap.pass(&mut Sink::emit(&snap, Some(tx))).await?;
        }
    }
    Ok(out)
}

fn log_counts(c: &Counts, known: i64) {
    info!(
        rows = c.rows,
        known,
        inserts = c.inserts,
        updates = c.updates,
        deletes = c.deletes,
        "snapshot compared"
    );
}

/// The safety valve: a snapshot that reads no row while keys are delivered, or would delete
/// more than `max_delete_ratio` of them, sends nothing and stops the job.
fn valve(run: &Run<'_>, c: &Counts, known: i64, opts: &RunOptions) -> Result<()> {
    let job = run.job;
    if opts.confirm_deletes || known == 0 {
        return Ok(());
    }
    let how = format!(
        "若确为源数据的大批删除，请运行一次 `qianzhi once --job {0} --confirm-deletes` 确认（或调高 max_delete_ratio）\
         (if the rows really were deleted, confirm with one run of `qianzhi once --job {0} --confirm-deletes`, \
         or raise max_delete_ratio)",
        job.name
    );
    if c.rows == 0 {
        return Err(JobStopped(format!(
            "快照任务 {job} 从 {src} 读到 0 行，而已报送 {known} 个键，本次未发送任何记录，任务已停止；\
             请先确认视图是否正常。{how} (snapshot job {job} read no row from {src} while {known} keys \
             are delivered; nothing was sent and the job is stopped)",
            job = job.name,
            src = job.source,
        ))
        .into());
    }
    let ratio = c.deletes as f64 / known as f64;
    if ratio > job.max_delete_ratio {
        return Err(JobStopped(format!(
            "快照任务 {job} 将删除 {d} 个已报送的键（共 {known} 个，{pct:.1}%，超过 max_delete_ratio = {max}），\
             本次未发送任何记录，任务已停止。{how} (snapshot job {job} would delete {d} of {known} \
             delivered keys, more than max_delete_ratio = {max}; nothing was sent and the job is stopped)",
            job = job.name,
            d = c.deletes,
            pct = ratio * 100.0,
            max = job.max_delete_ratio,
        ))
        .into());
    }
    Ok(())
}

/// Where a pass puts the changes it finds.
enum Sink<'a> {
    /// The diff pass: up to `HOLD` changes kept for after the valve.
    Hold { held: Vec<Change>, overflowed: bool },
    /// Pages of changes to the committer (or dropped in a dry run).
    Emit(Box<Pages<'a>>),
}

impl<'a> Sink<'a> {
    fn emit(snap: &'a Snap<'a>, tx: Option<mpsc::Sender<Prepared>>) -> Sink<'a> {
        Sink::Emit(Box::new(Pages {
            checker: Checker::new(snap.run, &snap.plan),
            tx,
            page: Vec::new(),
        }))
    }

    async fn take(&mut self, snap: &Snap<'_>, c: Change) -> Result<()> {
        match self {
            Sink::Hold { held, overflowed } => {
                if held.len() < HOLD {
                    held.push(c.compact());
                } else if !*overflowed {
                    *overflowed = true;
                    held.clear();
                    held.shrink_to_fit();
                }
                Ok(())
            }
            Sink::Emit(p) => {
                p.page.push(c);
                if p.page.len() >= snap.run.job.batch_size {
                    p.flush(snap).await?;
                }
                Ok(())
            }
        }
    }

    /// Whether the committer has gone: nothing more can be sent this run.
    fn closed(&self) -> bool {
        match self {
            Sink::Hold { .. } => false,
            Sink::Emit(p) => p.tx.as_ref().is_some_and(|tx| tx.is_closed()),
        }
    }

    async fn finish(&mut self, snap: &Snap<'_>) -> Result<()> {
        match self {
            Sink::Hold { .. } => Ok(()),
            Sink::Emit(p) => p.flush(snap).await,
        }
    }
}

/// Changes gathered into pages of `batch_size`, each validated and handed to the committer
/// with the row states it changes.
struct Pages<'a> {
    checker: Checker<'a>,
    tx: Option<mpsc::Sender<Prepared>>,
    page: Vec<Change>,
}

impl Pages<'_> {
    async fn flush(&mut self, snap: &Snap<'_>) -> Result<()> {
        if self.page.is_empty() {
            return Ok(());
        }
        let changes = std::mem::take(&mut self.page);
        let prep = self.prepare(snap, changes).await?;
        if let Some(tx) = &self.tx {
            // A closed channel (the committer stopped) is seen by `Sink::closed`.
            let _ = tx.send(prep).await;
        }
        Ok(())
    }

    /// One page: inserts and updates validated (an invalid row is an error row and is not
    /// recorded as delivered, so the next snapshot tries it again), deletes built from the
    /// records delivered last.
    async fn prepare(&self, snap: &Snap<'_>, changes: Vec<Change>) -> Result<Prepared> {
        let run = snap.run;
        let deleted: Vec<&str> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Delete(e) => Some(e.source_key.as_str()),
                Change::Upsert { .. } => None,
            })
            .collect();
        let mut stored = if deleted.is_empty() {
            Default::default()
        } else {
            run.app.db.stored_records(&run.job.name, &deleted).await?
        };
        let fields = self.checker.fields();
        let width = snap.plan.fields.len();
        let mut p = Prepared {
            fields,
            records: Vec::with_capacity(changes.len()),
            errors: Vec::new(),
            last: None,
            rows: changes.len(),
            drained: false,
            state: StateChanges::default(),
        };
        for c in changes {
            match c {
                Change::Upsert {
                    op,
                    mut rec,
                    key_sort,
                    digest,
                    json,
                } => match restore(&mut rec, &json, width)
                    .map(|()| self.checker.validated(op, rec))?
                {
                    Ok((op, rec)) => {
                        p.state.delivered.push(Delivered {
                            source_key: rec.source_key.clone(),
                            row_guid: rec.row_guid.clone(),
                            digest,
                            key_sort: Some(key_sort),
                            record: Some(json),
                        });
                        p.records.push((op, rec));
                    }
                    Err(errors) => p.errors.extend(errors),
                },
                Change::Delete(e) => {
                    let s = stored.remove(&e.source_key).unwrap_or_default();
                    p.state.deleted.push(e.source_key.clone());
                    if !self.checker.deletes_supported() {
                        p.errors.push(delete_unsupported(e.source_key, s.row_guid));
                        continue;
                    }
                    let mut values: Vec<Field> = s
                        .record
                        .and_then(|r| unpack_record(&r))
                        .and_then(|j| fields_from_json(&j).ok())
                        .unwrap_or_default();
                    values.resize(width, Field::Null);
                    let rec = Record {
                        source_key: e.source_key,
                        row_guid: s.row_guid,
                        values,
                    };
                    p.records.push((Op::Delete, rec));
                }
            }
        }
        Ok(p)
    }
}

fn delete_unsupported(source_key: String, row_guid: String) -> ErrorRow {
    ErrorRow {
        source_key,
        row_guid: Some(row_guid).filter(|g| !g.is_empty()),
        operation: Some(Op::Delete.code().into()),
        field: String::new(),
        rule: "delete_unsupported".into(),
        message: "该平台的接口没有删除操作，视图中消失的记录未报送删除；如需撤回请在平台上处理"
            .into(),
        superseded: false,
    }
}

impl Snap<'_> {
    /// One pass over the view and the state, every change to `sink`. Each stream reads and
    /// decodes on its own task (another core), the merge maps and digests on this one.
    async fn pass(&self, sink: &mut Sink<'_>) -> Result<Counts> {
        let (app, job) = (self.run.app, self.run.job);
        let (src_tx, src_rx) = mpsc::channel(2);
        let (state_tx, state_rx) = mpsc::channel(2);
        let ended = Ended::default();
        let (db, sql, name) = (app.db.clone(), self.sql.clone(), job.source.clone());
        let src_ok = ended.view.clone();
        let source = tokio::spawn(async move {
            let keep = src_tx.clone();
            let r = db.stream_snapshot(sql, &name, CHUNK, src_tx).await;
            src_ok.store(r.is_ok(), Ordering::Release);
            drop(keep);
            r
        });
        let (db, name) = (app.db.clone(), job.name.clone());
        let state_ok = ended.state.clone();
        let state = tokio::spawn(async move {
            let keep = state_tx.clone();
            let r = db.stream_row_state(&name, CHUNK * 4, state_tx).await;
            state_ok.store(r.is_ok(), Ordering::Release);
            drop(keep);
            r
        });
        let merge = async {
            let mut m = Merge::new(self, src_rx, state_rx, ended);
            while let Some(c) = m.next().await? {
                match &c {
                    Change::Upsert { op: Op::Update, .. } => m.counts.updates += 1,
                    Change::Upsert { .. } => m.counts.inserts += 1,
                    Change::Delete(_) => m.counts.deletes += 1,
                }
                sink.take(self, c).await?;
                if sink.closed() {
                    // The committer stopped (shutdown, a fatal answer): the rest waits.
                    return Ok(m.counts);
                }
            }
            sink.finish(self).await?;
            Ok::<Counts, anyhow::Error>(m.counts)
        };
        // The merge ends first (its receivers dropped, so the streams stop sending); a stream's
        // own error is the one to report.
        let merged = merge.await;
        let (source, state) = (source.await?, state.await?);
        source?;
        state?;
        merged
    }
}

/// Set by each stream's task when it has read to the end without error, before its channel
/// closes: a closed channel alone could be a failed read, which must not pass for the end of
/// the view (every delivered key a delete) or of the state (every row an insert).
#[derive(Default)]
struct Ended {
    view: Arc<AtomicBool>,
    state: Arc<AtomicBool>,
}

/// The merge join of the two streams, one change at a time.
struct Merge<'a> {
    snap: &'a Snap<'a>,
    src_rx: mpsc::Receiver<Vec<SourceRow>>,
    state_rx: mpsc::Receiver<Vec<StateEntry>>,
    rows: VecDeque<SourceRow>,
    states: VecDeque<StateEntry>,
    src_done: bool,
    state_done: bool,
    ended: Ended,
    /// The page's columns and the plan over them (rebuilt when a chunk brings new names).
    map: Option<RowMap<'a>>,
    /// Positions of the key columns among the row's columns.
    key_at: Vec<usize>,
    /// The sort key of the front row once `key_ready`, else of the row taken before it;
    /// `prev` is scratch (the order is checked).
    key: Vec<u8>,
    prev: Vec<u8>,
    key_ready: bool,
    /// The JSON of the current record (the digest's input, reused).
    json: String,
    counts: Counts,
}

impl<'a> Merge<'a> {
    fn new(
        snap: &'a Snap<'a>,
        src_rx: mpsc::Receiver<Vec<SourceRow>>,
        state_rx: mpsc::Receiver<Vec<StateEntry>>,
        ended: Ended,
    ) -> Self {
        Merge {
            snap,
            src_rx,
            state_rx,
            rows: VecDeque::new(),
            states: VecDeque::new(),
            src_done: false,
            state_done: false,
            ended,
            map: None,
            key_at: Vec::new(),
            key: Vec::new(),
            prev: Vec::new(),
            key_ready: false,
            json: String::new(),
            counts: Counts::default(),
        }
    }

    /// Refills the row buffer; false when the view is read to the end.
    async fn fill_rows(&mut self) -> Result<bool> {
        while self.rows.is_empty() && !self.src_done {
            match self.src_rx.recv().await {
                Some(chunk) => {
                    if let Some(first) = chunk.first() {
                        self.columns(first)?;
                    }
                    self.rows.extend(chunk);
                }
                None if self.ended.view.load(Ordering::Acquire) => self.src_done = true,
                None => bail!("reading the view stopped before its end"),
            }
        }
        Ok(!self.rows.is_empty())
    }

    async fn fill_states(&mut self) -> Result<bool> {
        while self.states.is_empty() && !self.state_done {
            match self.state_rx.recv().await {
                Some(chunk) => self.states.extend(chunk),
                None if self.ended.state.load(Ordering::Acquire) => self.state_done = true,
                None => bail!("reading qz_row_state stopped before its end"),
            }
        }
        Ok(!self.states.is_empty())
    }

    /// The row map and key positions of a chunk's columns.
    fn columns(&mut self, row: &SourceRow) -> Result<()> {
        if self
            .map
            .as_ref()
            .is_some_and(|m| Arc::ptr_eq(m.names(), &row.names))
        {
            return Ok(());
        }
        let job = self.snap.run.job;
        self.key_at = job
            .key
            .iter()
            .map(|k| {
                row.index_of(k).ok_or_else(|| {
                    anyhow::anyhow!(
                        "{} 没有键列 {k} (source {} has no key column {k})",
                        job.source,
                        job.source
                    )
                })
            })
            .collect::<Result<_>>()?;
        self.map = Some(self.snap.plan.over(&row.names));
        Ok(())
    }

    /// The sort key of the front row into `self.key`, checked to come after the key of the
    /// row before: a database order that disagrees with the encoding (or a duplicate key)
    /// stops the run rather than send false inserts and deletes.
    fn front_key(&mut self) -> Result<()> {
        let job = self.snap.run.job;
        let row = self.rows.front().expect("a row");
        let values = self.key_at.iter().map(|i| &row.values[*i]);
        // `prev` is scratch here; `key` still holds the key of the row before.
        if let Err(e) = crate::keysort::encode_into(&mut self.prev, values) {
            bail!(
                "{src} 的键列不能用于快照比对：{e}；请在视图中把键转换为整数或文本 \
                 (a key of {src} cannot be compared in a snapshot: {e}; cast it to an integer \
                 or text in the view)",
                src = job.source
            );
        }
        if self.counts.rows > 0 && self.prev <= self.key {
            bail!(
                "{src} 的键 {k} 重复或未按顺序读出，快照已中止，未发送任何记录；请确认键 {cols:?} 在视图中唯一 \
                 (key {k} of {src} is repeated or out of order; the snapshot stopped and sent \
                 nothing: make the key {cols:?} unique in the view)",
                src = job.source,
                k = key_text(row, &job.key),
                cols = job.key,
            );
        }
        std::mem::swap(&mut self.key, &mut self.prev);
        Ok(())
    }

    /// The front row, taken: its key stays in `self.key` until the next row's is known.
    fn take_row(&mut self) -> SourceRow {
        self.counts.rows += 1;
        self.key_ready = false;
        self.rows.pop_front().expect("a row")
    }

    /// The next change, or None when both sides are read to the end.
    async fn next(&mut self) -> Result<Option<Change>> {
        use std::cmp::Ordering::*;
        loop {
            let has_row = self.fill_rows().await?;
            let has_state = self.fill_states().await?;
            if !has_row {
                return Ok(self.states.pop_front().map(Change::Delete));
            }
            if !self.key_ready {
                self.front_key()?;
                self.key_ready = true;
            }
            let ord = match self.states.front() {
                Some(s) if has_state => self.key.as_slice().cmp(&s.key_sort),
                _ => Less,
            };
            match ord {
                // The state's key comes first: it is gone from the view.
                Greater => return Ok(self.states.pop_front().map(Change::Delete)),
                Less => {
                    let row = self.take_row();
                    return Ok(self.upsert(row, Op::Insert, None));
                }
                Equal => {
                    let row = self.take_row();
                    let state = self.states.pop_front().expect("a state");
                    if let Some(c) = self.upsert(row, Op::Update, Some(&state.digest)) {
                        return Ok(Some(c));
                    }
                }
            }
        }
    }

    /// The row mapped and digested: a change unless its digest is the delivered one.
    fn upsert(&mut self, row: SourceRow, op: Op, delivered: Option<&str>) -> Option<Change> {
        let job = self.snap.run.job;
        let key = key_text(&row, &job.key);
        let map = self.map.as_ref().expect("columns known");
        let rec = map.map_row(row, key);
        self.json.clear();
        // The bytes serde_json would write (digests stored before stay valid), written faster.
        crate::upstream::body::json_array(&mut self.json, &rec.values);
        let digest = Sha256::digest(&self.json);
        let mut hex = [0u8; 64];
        let _ = hex::encode_to_slice(digest, &mut hex);
        if delivered.is_some_and(|d| d.as_bytes() == hex) {
            return None;
        }
        Some(Change::Upsert {
            op,
            rec,
            key_sort: self.key.clone(),
            digest: String::from_utf8_lossy(&hex).into_owned(),
            json: pack_record(self.json.as_bytes()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_start_empty() {
        let c = Counts::default();
        assert_eq!((c.rows, c.inserts, c.updates, c.deletes), (0, 0, 0, 0));
    }
}
