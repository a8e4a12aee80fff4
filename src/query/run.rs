//! `run_query_once(job)`: the due subjects of a query job, each asked page by page within the
//! provider's daily budget, every call in the ledger, every page bought kept until the
//! subject's result is stored (continued on a later day when the budget runs out part-way).

use anyhow::{Result, anyhow, bail};
use chrono::{DateTime, FixedOffset, Utc};
use serde_json::Value as Json;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use super::QueryApp;
use super::{Action, Answer, Call, Pause, Provider, Subject, TableRows, http_status_action};
use crate::config::query::QueryJobConfig;
use crate::db::lease::{Fence, LeaseHeld, LeaseLost};
use crate::db::ops::RunEnd;
use crate::db::query::{CallRecord, PageRow, Reserved, SubjectResult};
use crate::lease::{Acquired, Held};
use crate::timefmt::{beijing, fmt_spec, now_text};
use crate::upstream::Backoff;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueryOutcome {
    pub subjects: usize,
    pub fresh: usize,
    pub found: usize,
    pub no_result: usize,
    pub rejected: usize,
    /// View rows with no usable identity, and subjects with nothing to search by.
    pub skipped: usize,
    /// Subjects left due after temporary failures.
    pub retry_later: usize,
    /// Subjects continued from pages bought on an earlier run.
    pub continued: usize,
    /// Subjects left part-way (budget, pause, failure): their pages are kept for the next run.
    pub partial: usize,
    pub calls: usize,
    pub budget_exhausted: bool,
    /// Set when the provider is (or was just) paused: until then nothing is sent.
    pub paused_until: Option<String>,
    pub interrupted: bool,
}

/// One line for `qianzhi once` and the demo.
pub fn summary(o: &QueryOutcome) -> String {
    let mut s = format!(
        "{} subjects, {} fresh, {} calls: {} found, {} no result, {} refused",
        o.subjects, o.fresh, o.calls, o.found, o.no_result, o.rejected
    );
    if o.skipped > 0 {
        s.push_str(&format!(
            ", {} skipped (nothing to identify or search them by)",
            o.skipped
        ));
    }
    if o.retry_later > 0 {
        s.push_str(", temporary failures (retried next run)");
    }
    if o.partial > 0 {
        s.push_str(&format!(
            ", {} part-way (pages kept, continued next run)",
            o.partial
        ));
    }
    if o.budget_exhausted {
        s.push_str(", DAILY BUDGET SPENT");
    }
    if let Some(until) = &o.paused_until {
        s.push_str(&format!(", provider paused until {until}"));
    }
    if o.interrupted {
        s.push_str(" (interrupted)");
    }
    s
}

/// A provider refused our credentials, permission or quota: no more calls until restart.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct QueryStopped(pub String);

/// How asking one subject ended.
enum End {
    Stored(&'static str),
    BudgetSpent,
    RetryLater,
    /// Shutdown between two pages; the pages read are kept.
    Interrupted,
    /// Nothing to search by (e.g. search_by = "uscc" and the row has none).
    Skipped,
    Paused(String),
    Stopped(String),
}

/// Beijing yyyyMMdd: the day the budget belongs to.
pub fn budget_day(now: DateTime<Utc>) -> String {
    now.with_timezone(&beijing()).format("%Y%m%d").to_string()
}

/// When a pause ends, as Beijing text.
pub fn pause_end(p: Pause, now: DateTime<Utc>) -> String {
    let bj: DateTime<FixedOffset> = now.with_timezone(&beijing());
    let end = match p {
        Pause::For(d) => bj + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::hours(2)),
        Pause::UntilBeijingMidnight => {
            let next = bj.date_naive().succ_opt().unwrap_or(bj.date_naive());
            next.and_hms_opt(0, 0, 0)
                .and_then(|t| t.and_local_timezone(beijing()).single())
                .unwrap_or(bj + chrono::Duration::days(1))
        }
    };
    fmt_spec(&end)
}

/// The subjects of a view, in key order, and the rows that had no usable identity.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SubjectRows {
    pub subjects: Vec<Subject>,
    /// Rows without a key: no key column value, or (by default) no 统一社会信用代码, name,
    /// tax number or ID card number. They cannot be asked about or stored.
    pub no_identity: usize,
}

/// Builds the subjects of a view's rows: (key, name, uscc, id card, tax no) by column.
pub fn subjects_from_rows(job: &QueryJobConfig, rows: Vec<Vec<Option<String>>>) -> SubjectRows {
    let cols = subject_columns(job);
    let at = |row: &Vec<Option<String>>, c: &Option<String>| -> Option<String> {
        let c = c.as_ref()?;
        let i = cols.iter().position(|x| x == c)?;
        row[i]
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let mut seen = std::collections::HashSet::new();
    let mut out = SubjectRows::default();
    for row in rows {
        let name = at(&row, &Some(job.name_column.clone()));
        let uscc = at(&row, &job.uscc_column);
        let id_card = at(&row, &job.id_card_column);
        // Since 三证合一 the 统一社会信用代码 is the taxpayer number: offered as taxNo when
        // the job asks for it and the row has no tax number of its own.
        let tax_no =
            at(&row, &job.tax_no_column).or_else(|| uscc.clone().filter(|_| job.uscc_as_tax_no));
        let key = match &job.key_column {
            Some(_) => at(&row, &job.key_column),
            // A Xinshu subject may be known by its tax or ID card number alone.
            None => uscc
                .clone()
                .or_else(|| name.clone())
                .or_else(|| tax_no.clone())
                .or_else(|| id_card.clone()),
        };
        let Some(key) = key else {
            out.no_identity += 1;
            continue;
        };
        if !seen.insert(key.clone()) {
            continue;
        }
        out.subjects.push(Subject {
            key,
            name,
            uscc,
            id_card,
            tax_no,
        });
    }
    // Same order on every backend (they sort NULLs differently).
    out.subjects.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

/// Pages of one subject read so far, on earlier runs and this one.
#[derive(Debug, Default, Clone, PartialEq)]
struct Progress {
    pages: u32,
    items: Vec<Json>,
    /// Calls behind the pages (and the answer that ended the subject).
    calls: i64,
    /// Records in the last page read.
    last_got: usize,
    first_total: Option<u64>,
    last_total: Option<u64>,
    /// Code and order number of the last page.
    code: String,
    order_no: Option<String>,
}

impl Progress {
    fn add(
        &mut self,
        items: Vec<Json>,
        total: Option<u64>,
        calls: i64,
        code: &str,
        order_no: Option<String>,
    ) {
        if self.pages == 0 {
            self.first_total = total;
        }
        self.pages += 1;
        self.last_got = items.len();
        self.items.extend(items);
        self.last_total = total;
        self.calls += calls;
        self.code = code.to_string();
        self.order_no = order_no;
    }

    /// Whether the provider has records after the ones read.
    fn more(&self, page_size: u32) -> bool {
        more_pages(self.last_total, self.items.len(), self.last_got, page_size)
    }
}

/// Whether a paged answer has records after the `read` ones: by TotalRecords when the
/// provider gives it, else by the last page being full.
fn more_pages(total: Option<u64>, read: usize, last_got: usize, page_size: u32) -> bool {
    match total {
        Some(t) => (read as u64) < t && last_got > 0,
        None => last_got >= page_size as usize,
    }
}

/// The pages kept from earlier runs as progress, or why they cannot be continued: pages
/// asked with another keyword or page size, or read before `since` (stale by fresh_for), do
/// not belong to the same answer.
fn resume(
    stored: &[PageRow],
    search_key: &str,
    page_size: u32,
    since: &str,
) -> Result<Progress, String> {
    let mut p = Progress::default();
    for (i, row) in stored.iter().enumerate() {
        let want = i as u32 + 1;
        if row.page != want {
            return Err(format!("page {want} is missing / 缺第 {want} 页"));
        }
        if row.search_key != search_key {
            return Err("the subject's search key changed / 查询关键字已变".into());
        }
        if row.page_size != page_size {
            return Err(format!(
                "page_size changed from {} to {page_size} / 每页条数已变",
                row.page_size
            ));
        }
        if row.fetched_at.as_str() < since {
            return Err(format!(
                "page {want} was read at {}, longer ago than fresh_for / 已超过有效期",
                row.fetched_at
            ));
        }
        let items: Vec<Json> = serde_json::from_str(&row.items_json)
            .map_err(|_| format!("page {want} is not a JSON array / 第 {want} 页内容损坏"))?;
        p.add(
            items,
            row.total,
            row.calls,
            &row.status_code,
            row.order_no.clone(),
        );
    }
    Ok(p)
}

/// The view columns a job reads, each once.
pub fn subject_columns(job: &QueryJobConfig) -> Vec<String> {
    let mut cols: Vec<String> = Vec::new();
    for c in job
        .key_column
        .iter()
        .chain(job.uscc_column.iter())
        .chain(std::iter::once(&job.name_column))
        .chain(job.id_card_column.iter())
        .chain(job.tax_no_column.iter())
    {
        if !cols.contains(c) {
            cols.push(c.clone());
        }
    }
    cols
}

/// (page size, page cap) of a paged provider.
fn paging(app: &QueryApp<'_>, provider: Provider) -> Option<(u32, u32)> {
    match provider {
        Provider::Shuidi => app
            .cfg
            .shuidi
            .as_ref()
            .map(|c| (c.page_size.min(20), c.max_pages)),
        Provider::Qcc => app
            .cfg
            .qcc
            .as_ref()
            .map(|c| (c.page_size.min(20), c.max_pages)),
        Provider::Xinshu => None,
    }
}

fn flatten(provider: Provider, items: &[serde_json::Value]) -> Vec<TableRows> {
    match provider {
        Provider::Shuidi => super::shuidi::flatten(items),
        Provider::Qcc => super::qcc::flatten(items),
        Provider::Xinshu => super::xinshu::flatten(items),
    }
}

/// One run of a query job under its lease, taken for the run and given up after it. Fails
/// with [`LeaseHeld`] (nothing asked, nothing changed) while another process holds it.
pub async fn run_query_once(
    app: QueryApp<'_>,
    job_name: &str,
    cancel: &CancellationToken,
) -> Result<QueryOutcome> {
    let job = query_job(&app, job_name)?;
    let held = match Held::acquire(app.db, app.me, &job.name, &app.cfg.lease, cancel).await? {
        Acquired::Held(h) => h,
        Acquired::Busy(info) => return Err(LeaseHeld(info).into()),
    };
    let result = run_query_held(app, held.fence(), held.cancel()).await;
    let lost = held.is_lost().then(|| LeaseLost {
        job: job.name.clone(),
        token: held.fence().token,
    });
    held.release(app.db).await;
    match (result, lost) {
        (Ok(o), Some(lost)) if o.interrupted => Err(lost.into()),
        (result, _) => result,
    }
}

fn query_job<'a>(app: &QueryApp<'a>, job_name: &str) -> Result<&'a QueryJobConfig> {
    app.cfg
        .queries
        .iter()
        .find(|q| q.name == job_name)
        .ok_or_else(|| anyhow!("no query job named '{job_name}'"))
}

/// One run of a query job whose lease the caller holds (`fence`).
pub async fn run_query_held(
    app: QueryApp<'_>,
    fence: &Fence,
    cancel: &CancellationToken,
) -> Result<QueryOutcome> {
    let app = &app;
    let job = query_job(app, &fence.job)?;
    let span = info_span!("query", job = %job.name, provider = %job.provider);
    let result = run_inner(app, job, cancel, fence).instrument(span).await;
    let end = RunEnd::of(&result, |o| o.interrupted);
    app.db.record_run_end(fence, end).await;
    result
}

async fn run_inner(
    app: &QueryApp<'_>,
    job: &QueryJobConfig,
    cancel: &CancellationToken,
    fence: &Fence,
) -> Result<QueryOutcome> {
    let provider = job.provider;
    let pname = provider.name();
    let mut out = QueryOutcome::default();
    if app.query.is_stopped(provider) {
        bail!(QueryStopped(format!(
            "provider {pname} was stopped earlier in this process; fix the cause and restart qianzhi"
        )));
    }
    let now = app.query.clock.now();
    if let Some(until) = still_paused(app, fence, pname, now).await? {
        out.paused_until = Some(until);
        return Ok(out);
    }
    let budget = provider
        .daily_budget(app.cfg)
        .ok_or_else(|| anyhow!("provider {pname} has no [{pname}] section"))?;
    let cols = subject_columns(job);
    let col_refs: Vec<&str> = cols.iter().map(String::as_str).collect();
    let rows = app.db.read_text_columns(&job.subjects, &col_refs).await?;
    let SubjectRows {
        subjects,
        no_identity,
    } = subjects_from_rows(job, rows);
    if no_identity > 0 {
        warn!(
            rows = no_identity,
            view = %job.subjects,
            "主体视图中有 {no_identity} 行没有可用的标识（键、名称、统一社会信用代码、税号、身份证号均为空），已跳过 / {no_identity} rows of the subjects view have no usable identity (key, name, USCC, tax and ID card number all empty); skipped"
        );
        out.skipped += no_identity;
    }
    out.subjects = subjects.len();
    let since = fmt_spec(
        &(now.with_timezone(&beijing())
            - chrono::Duration::from_std(job.fresh_for()).unwrap_or_default()),
    );
    let run = QueryRun {
        app,
        job,
        provider,
        cancel,
        fence,
        budget,
        since,
        paging: paging(app, provider),
    };
    run.ask_all(subjects, &mut out).await?;
    Ok(out)
}

/// The end of a pause that still holds; a pause that is over, or a stop by an earlier
/// process, is lifted.
async fn still_paused(
    app: &QueryApp<'_>,
    fence: &Fence,
    pname: &str,
    now: DateTime<Utc>,
) -> Result<Option<String>> {
    let Some(st) = app.db.provider_state(pname).await? else {
        return Ok(None);
    };
    let now = fmt_spec(&now.with_timezone(&beijing()));
    match (st.state.as_str(), st.paused_until) {
        ("paused", Some(until)) if until > now => {
            info!(until = %until, "provider is paused; nothing is sent until then");
            return Ok(Some(until));
        }
        ("paused", _) => {
            info!("provider pause is over");
            app.db
                .set_provider_state(fence, pname, "active", None, None, None)
                .await?;
        }
        // Stopped by an earlier process: a restart is the sign the cause was dealt with.
        ("stopped", _) => {
            warn!(
                reason = st.reason.as_deref().unwrap_or(""),
                "provider was stopped before this start; trying again"
            );
            app.db
                .set_provider_state(fence, pname, "active", None, None, None)
                .await?;
        }
        _ => {}
    }
    Ok(None)
}

/// Counts and says that a subject stops part-way with its pages kept.
fn kept(out: &mut QueryOutcome, got: &Progress, shown: &str, why: &str) {
    if got.pages == 0 {
        return;
    }
    out.partial += 1;
    let next = got.pages + 1;
    warn!(
        subject = %shown,
        pages = got.pages,
        "{why}: 已读的 {} 页保留，下次运行从第 {next} 页接着读 / the {} pages read are kept; the next run continues from page {next}",
        got.pages,
        got.pages
    );
}

/// The message part saying the answer had more than max_pages pages.
fn max_pages_note(max_pages: u32, total: Option<u64>) -> String {
    format!(
        "；只读取了前 {max_pages} 页（max_pages），共 {} 条",
        total.map(|t| t.to_string()).unwrap_or("?".into())
    )
}

/// One run of a query job: what asking and storing each of its subjects needs.
struct QueryRun<'a> {
    app: &'a QueryApp<'a>,
    job: &'a QueryJobConfig,
    provider: Provider,
    cancel: &'a CancellationToken,
    /// The query job's lease: the ledger and result writes check it.
    fence: &'a Fence,
    /// The provider's daily call budget.
    budget: u32,
    /// Beijing time: results and pages read before it are stale (fresh_for).
    since: String,
    /// (page size, page cap) of a paged provider.
    paging: Option<(u32, u32)>,
}

/// Where asking one subject stands: the pages read so far and the page to ask for next.
struct Asking<'s> {
    s: &'s Subject,
    shown: String,
    /// What the subject is searched by; kept pages asked with another one are not continued.
    keyword: Option<String>,
    got: Progress,
    page: u32,
    retries: u32,
    resigned: bool,
    /// Calls of this run not yet behind a kept page.
    calls: i64,
    /// Added to the stored message (max_pages reached, a later page refused).
    note: String,
    backoff: Backoff,
}

/// One call's answer, classified, with its ledger row still to be completed.
struct Reply {
    reserved: Reserved,
    record: CallRecord,
    action: Action,
    code: String,
    spec_msg: String,
    /// The provider's message (masked), else the spec's.
    message: String,
    order_no: Option<String>,
    answer: Option<Answer>,
    /// Code and spec message, for logs and the provider state.
    reason: String,
}

impl QueryRun<'_> {
    /// Asks for the due subjects in turn until one ends the run (budget, pause, shutdown,
    /// temporary failure, stop).
    async fn ask_all(&self, mut subjects: Vec<Subject>, out: &mut QueryOutcome) -> Result<()> {
        let pname = self.provider.name();
        let fresh = self.app.db.fresh_subjects(pname, &self.since).await?;
        // Subjects left part-way by an earlier run go first: their pages are paid for and only
        // the rest of them makes a result. Otherwise key order.
        let part_way = self.app.db.subjects_with_pages(pname).await?;
        subjects.sort_by_key(|s| !part_way.contains(&s.key));
        for s in &subjects {
            if fresh.contains(&s.key) {
                out.fresh += 1;
                continue;
            }
            if self.cancel.is_cancelled() {
                out.interrupted = true;
                break;
            }
            match self.ask(s, out).await? {
                End::Stored("found") => out.found += 1,
                End::Stored("no_result") => out.no_result += 1,
                End::Stored(_) => out.rejected += 1,
                End::BudgetSpent => {
                    warn!(
                        budget = self.budget,
                        "BUDGET SPENT: the daily call budget of {pname} is used up; remaining subjects wait for the next Beijing day"
                    );
                    out.budget_exhausted = true;
                    break;
                }
                End::RetryLater => {
                    out.retry_later += 1;
                    info!("temporary failures: the rest of the subjects wait for the next run");
                    break;
                }
                End::Interrupted => {
                    out.interrupted = true;
                    break;
                }
                End::Skipped => out.skipped += 1,
                End::Paused(until) => {
                    out.paused_until = Some(until);
                    break;
                }
                End::Stopped(msg) => return Err(QueryStopped(msg).into()),
            }
        }
        Ok(())
    }

    /// Asks for one subject, page by page, until every record is read or an answer says stop.
    /// Each page bought is kept with its ledger row, so a subject stopped part-way (budget,
    /// pause, failure, shutdown, crash) continues from the next page on a later run.
    async fn ask(&self, s: &Subject, out: &mut QueryOutcome) -> Result<End> {
        let pname = self.provider.name();
        let mut a = self.start(s, out).await?;
        loop {
            if let Some(end) = self.read_enough(&mut a, out).await? {
                return Ok(end);
            }
            let Some(call) = self.build_call(s, a.page)? else {
                let hint = if self.provider == Provider::Xinshu
                    && s.uscc.is_some()
                    && !self.job.uscc_as_tax_no
                {
                    "（设 uscc_as_tax_no = true 可把统一社会信用代码作为 taxNo 发送 / uscc_as_tax_no = true would send its USCC as taxNo）"
                } else {
                    ""
                };
                warn!(subject = %a.shown, "主体没有可查询的字段，已跳过 / subject has nothing to search by (empty name and codes); skipped{hint}");
                return Ok(End::Skipped);
            };
            let day = budget_day(self.app.query.clock.now());
            let Some(reserved) = self
                .app
                .db
                .reserve_call(self.fence, pname, &s.key, a.page, &day, self.budget)
                .await?
            else {
                kept(out, &a.got, &a.shown, "预算用完 / budget spent part-way");
                return Ok(End::BudgetSpent);
            };
            a.calls += 1;
            out.calls += 1;
            let reply = self.send(&call, reserved).await;
            if let Some(end) = self.answered(&mut a, reply, out).await? {
                return Ok(end);
            }
        }
    }

    /// Starts asking for a subject: from the pages kept by an earlier run when they can be
    /// continued, else from page 1 (dropping them).
    async fn start<'s>(&self, s: &'s Subject, out: &mut QueryOutcome) -> Result<Asking<'s>> {
        let pname = self.provider.name();
        let shown = s.shown();
        let keyword = s.search_key(self.job.search_by).map(str::to_string);
        let mut got = Progress::default();
        if let (Some((size, _)), Some(kw)) = (self.paging, keyword.as_deref()) {
            let stored = self.app.db.stored_pages(pname, &s.key).await?;
            if !stored.is_empty() {
                match resume(&stored, kw, size, &self.since) {
                    Ok(p) => {
                        info!(subject = %shown, pages = p.pages, "继续读取：前 {} 页已在之前购买并保留 / continuing the subject: its first {} pages were bought earlier and kept", p.pages, p.pages);
                        out.continued += 1;
                        got = p;
                    }
                    Err(why) => {
                        warn!(subject = %shown, pages = stored.len(), reason = %why, "保留的页无法接续，从第 1 页重新读取（费用见 qz_query_ledger）/ the kept pages cannot be continued; the subject starts again from page 1 (their cost is in qz_query_ledger)");
                        self.app.db.drop_pages(self.fence, pname, &s.key).await?;
                    }
                }
            }
        }
        let backoff = Backoff::new(
            self.app.cfg.delivery.retry_initial(),
            self.app.cfg.delivery.retry_max(),
        );
        Ok(Asking {
            s,
            shown,
            keyword,
            page: got.pages + 1,
            got,
            retries: 0,
            resigned: false,
            calls: 0,
            note: String::new(),
            backoff,
        })
    }

    /// Before the next call of a paged provider: the subject ends when the pages read (on an
    /// earlier run or this one) are all there is or max_pages of them, or on shutdown.
    async fn read_enough(&self, a: &mut Asking<'_>, out: &mut QueryOutcome) -> Result<Option<End>> {
        let Some((size, max_pages)) = self.paging else {
            return Ok(None);
        };
        if a.got.pages == 0 {
            return Ok(None);
        }
        // Pages kept from an earlier run may already be all there is to read.
        let more = a.got.more(size);
        if !more || a.got.pages >= max_pages {
            if more {
                a.note = max_pages_note(max_pages, a.got.last_total);
            }
            return Ok(Some(self.finish_found(a.s, &a.got, &a.note, None).await?));
        }
        if self.cancel.is_cancelled() {
            kept(out, &a.got, &a.shown, "shutting down / 正在停止");
            return Ok(Some(End::Interrupted));
        }
        Ok(None)
    }

    fn build_call(&self, s: &Subject, page: u32) -> Result<Option<Call>> {
        let now = Utc::now();
        let q = &self.app.query;
        let by = self.job.search_by;
        Ok(match self.provider {
            Provider::Shuidi => {
                let c = q
                    .shuidi
                    .as_ref()
                    .ok_or_else(|| anyhow!("no [shuidi] section"))?;
                s.search_key(by).map(|k| c.request(k, page, now))
            }
            Provider::Qcc => {
                let c = q.qcc.as_ref().ok_or_else(|| anyhow!("no [qcc] section"))?;
                s.search_key(by).map(|k| c.request(k, page, now))
            }
            Provider::Xinshu => {
                let c = q
                    .xinshu
                    .as_ref()
                    .ok_or_else(|| anyhow!("no [xinshu] section"))?;
                c.request(s, now)
            }
        })
    }

    /// Sends one call and classifies its answer for the ledger.
    async fn send(&self, call: &Call, reserved: Reserved) -> Reply {
        let sent = self.app.query.send(call).await;
        let (action, code, spec_msg, answer) = self.classify(sent);
        let provider_msg = answer
            .as_ref()
            .map(|a| crate::mask::mask_pii(&a.message))
            .filter(|m| !m.is_empty());
        let message = provider_msg.unwrap_or_else(|| spec_msg.clone());
        let order_no = answer.as_ref().and_then(|a| a.order_no.clone());
        let record = CallRecord {
            status_code: code.clone(),
            action: action.label(),
            billed: action.billed(),
            order_no: order_no.clone(),
            message: message.clone(),
        };
        let reason = format!("{code} {spec_msg}");
        Reply {
            reserved,
            record,
            action,
            code,
            spec_msg,
            message,
            order_no,
            answer,
            reason,
        }
    }

    /// The answer's code, its action and the spec's message, or why there is none.
    fn classify(
        &self,
        sent: Result<(u16, String), String>,
    ) -> (Action, String, String, Option<Answer>) {
        let (status, body) = match sent {
            Ok(x) => x,
            Err(e) => return (Action::RetryLater, "network".into(), e, None),
        };
        let parsed = match self.provider {
            Provider::Shuidi => super::shuidi::parse(&body),
            Provider::Qcc => super::qcc::parse(&body),
            Provider::Xinshu => super::xinshu::parse(&body),
        };
        let answer = match parsed {
            Ok(a) => a,
            Err(e) => {
                let (action, msg) = http_status_action(status)
                    .unwrap_or((Action::RetryLater, format!("HTTP {status}: {e}")));
                return (action, format!("HTTP {status}"), msg, None);
            }
        };
        let (mut action, spec_msg) = match self.provider {
            Provider::Qcc => {
                let pause = self
                    .app
                    .cfg
                    .qcc
                    .as_ref()
                    .map(|q| q.pause_on_110())
                    .unwrap_or(Duration::from_secs(7200));
                super::qcc::action(&answer.code, pause)
            }
            p => super::lookup(p.codes(), &answer.code),
        };
        let mut spec_msg = spec_msg.to_string();
        // A success without data is a no-result (docs/query-config.md), whatever the code says.
        if action == Action::Success && answer.empty_success {
            action = Action::NoResult;
            spec_msg.push_str("（无数据，按查无结果记录 / no data: recorded as no result）");
        }
        (action, answer.code.clone(), spec_msg, Some(answer))
    }

    /// What one answer means for the subject: `None` to ask again (the next page, a retry,
    /// a fresh signature), else how the subject ended.
    async fn answered(
        &self,
        a: &mut Asking<'_>,
        r: Reply,
        out: &mut QueryOutcome,
    ) -> Result<Option<End>> {
        Ok(Some(match r.action {
            Action::Success => return self.page_read(a, r).await,
            // Past the last page: what was read is the result.
            Action::NoResult if a.got.pages > 0 => {
                a.got.calls += a.calls;
                let done = Some((r.reserved, &r.record));
                self.finish_found(a.s, &a.got, &a.note, done).await?
            }
            Action::NoResult => self.store_no_data(a, &r, "no_result", &r.spec_msg).await?,
            // Pages already bought are not thrown away: they are the result, with the refusal.
            Action::SubjectRejected if a.got.pages > 0 => {
                let page = a.page;
                warn!(subject = %a.shown, page, code = %r.code, message = %r.message, "provider refused a later page; the pages read are stored");
                a.got.calls += a.calls;
                a.note = format!("；第 {page} 页被拒绝 / page {page} refused: {}", r.reason);
                let done = Some((r.reserved, &r.record));
                self.finish_found(a.s, &a.got, &a.note, done).await?
            }
            Action::SubjectRejected => {
                warn!(subject = %a.shown, code = %r.code, message = %r.message, "provider refused this subject's parameters; recorded, asked again when fresh_for has passed");
                self.store_no_data(a, &r, "rejected", &r.message).await?
            }
            Action::RetryLater => return self.retry(a, &r, out).await,
            Action::Resign if !a.resigned => {
                self.app
                    .db
                    .complete_call(self.fence, r.reserved, &r.record)
                    .await?;
                info!(code = %r.code, "request expired; signing again with a fresh timestamp");
                a.resigned = true;
                return Ok(None);
            }
            Action::Resign | Action::StopProvider => self.stop_provider(a, &r, out).await?,
            Action::Pause(p) => self.pause_provider(a, &r, p, out).await?,
        }))
    }

    /// A page (or, unpaged, the whole answer) read: kept, and the next page asked for while
    /// there are more records and max_pages allows.
    async fn page_read(&self, a: &mut Asking<'_>, r: Reply) -> Result<Option<End>> {
        let ans = r.answer.expect("a success has an answer");
        let Some((size, max_pages)) = self.paging else {
            // One answer holds everything (Xinshu).
            a.got
                .add(ans.items, ans.total, a.calls, &r.code, r.order_no);
            let done = Some((r.reserved, &r.record));
            return Ok(Some(self.finish_found(a.s, &a.got, "", done).await?));
        };
        let row = PageRow {
            page: a.page,
            job: self.job.name.clone(),
            search_key: a.keyword.clone().unwrap_or_default(),
            page_size: size,
            total: ans.total,
            calls: a.calls,
            status_code: r.code.clone(),
            order_no: r.order_no.clone(),
            items_json: Json::Array(ans.items.clone()).to_string(),
            fetched_at: now_text(),
        };
        let pname = self.provider.name();
        self.app
            .db
            .complete_call_with_page(self.fence, r.reserved, &r.record, pname, &a.s.key, &row)
            .await?;
        a.got
            .add(ans.items, ans.total, a.calls, &r.code, r.order_no);
        a.calls = 0;
        a.retries = 0;
        if a.got.more(size) && a.page < max_pages {
            a.page += 1;
            return Ok(None);
        }
        if a.got.more(size) {
            a.note = max_pages_note(max_pages, a.got.last_total);
            warn!(subject = %a.shown, max_pages, "more records than max_pages allows; the rest were not read");
        }
        Ok(Some(self.finish_found(a.s, &a.got, &a.note, None).await?))
    }

    /// A temporary failure: asked again after a backoff, up to `retries` times; then the
    /// subject (and the rest of the run) waits for the next run.
    async fn retry(
        &self,
        a: &mut Asking<'_>,
        r: &Reply,
        out: &mut QueryOutcome,
    ) -> Result<Option<End>> {
        self.app
            .db
            .complete_call(self.fence, r.reserved, &r.record)
            .await?;
        a.retries += 1;
        if a.retries > self.job.retries {
            warn!(subject = %a.shown, code = %r.code, message = %r.message, "still failing after retries");
            kept(out, &a.got, &a.shown, "temporary failures / 临时失败");
            return Ok(Some(End::RetryLater));
        }
        let wait = a.backoff.next_delay();
        info!(subject = %a.shown, code = %r.code, message = %r.message, retry_in_ms = wait.as_millis() as u64, "temporary failure, asking again");
        tokio::select! {
            _ = tokio::time::sleep(wait) => Ok(None),
            _ = self.cancel.cancelled() => {
                out.interrupted = true;
                kept(out, &a.got, &a.shown, "shutting down / 正在停止");
                Ok(Some(End::RetryLater))
            }
        }
    }

    /// Credentials, permission or quota refused (or a re-signed request expired again): no
    /// more calls to this provider until restart.
    async fn stop_provider(
        &self,
        a: &Asking<'_>,
        r: &Reply,
        out: &mut QueryOutcome,
    ) -> Result<End> {
        let pname = self.provider.name();
        self.app
            .db
            .complete_call(self.fence, r.reserved, &r.record)
            .await?;
        let why = if r.action == Action::Resign {
            format!(
                "{} (again after re-signing: check the key and the host clock)",
                r.reason
            )
        } else {
            r.reason.clone()
        };
        error!(provider = pname, code = %r.code, message = %r.message, "PROVIDER STOPPED: {why}; no more calls until the cause is fixed and qianzhi is restarted");
        self.app.query.stop(self.provider);
        self.app
            .db
            .set_provider_state(
                self.fence,
                pname,
                "stopped",
                None,
                Some(&r.code),
                Some(&why),
            )
            .await?;
        kept(out, &a.got, &a.shown, "provider stopped / 服务商已停止");
        Ok(End::Stopped(format!("provider {pname} stopped: {why}")))
    }

    /// The provider asks for a pause: nothing is sent to it until the pause ends.
    async fn pause_provider(
        &self,
        a: &Asking<'_>,
        r: &Reply,
        p: Pause,
        out: &mut QueryOutcome,
    ) -> Result<End> {
        let pname = self.provider.name();
        self.app
            .db
            .complete_call(self.fence, r.reserved, &r.record)
            .await?;
        let until = pause_end(p, self.app.query.clock.now());
        error!(provider = pname, code = %r.code, message = %r.message, until = %until, "PROVIDER PAUSED: {}", r.reason);
        self.app
            .db
            .set_provider_state(
                self.fence,
                pname,
                "paused",
                Some(&until),
                Some(&r.code),
                Some(&r.reason),
            )
            .await?;
        kept(out, &a.got, &a.shown, "provider paused / 服务商暂停");
        Ok(End::Paused(until))
    }

    /// Stores the records read as the subject's result ("found"); `completes` is the call
    /// whose answer it is, completed in the same transaction.
    async fn finish_found(
        &self,
        s: &Subject,
        got: &Progress,
        note: &str,
        completes: Option<(Reserved, &CallRecord)>,
    ) -> Result<End> {
        let mut msg = format!(
            "{}{note}",
            super::lookup(self.provider.codes(), &got.code).1
        );
        if let (Some(a), Some(b)) = (got.first_total, got.last_total)
            && a != b
        {
            msg.push_str(&format!(
                "；读取各页期间总数由 {a} 变为 {b} / TotalRecords changed from {a} to {b} between pages"
            ));
        }
        let tables = flatten(self.provider, &got.items);
        self.app
            .db
            .store_subject_result(
                self.fence,
                &SubjectResult {
                    order_no: got.order_no.as_deref(),
                    calls: got.calls,
                    tables: &tables,
                    completes,
                    ..self.result(s, ("found", &got.code, &msg))
                },
            )
            .await?;
        info!(subject = %s.shown(), records = got.items.len(), pages = got.pages, calls = got.calls, "stored");
        Ok(End::Stored("found"))
    }

    /// Stores a subject the answer `r` gives no records for (`status` no_result or
    /// rejected), completing its call in the same transaction.
    async fn store_no_data(
        &self,
        a: &Asking<'_>,
        r: &Reply,
        status: &'static str,
        message: &str,
    ) -> Result<End> {
        self.app
            .db
            .store_subject_result(
                self.fence,
                &SubjectResult {
                    order_no: r.order_no.as_deref(),
                    calls: a.calls,
                    completes: Some((r.reserved, &r.record)),
                    ..self.result(a.s, (status, &r.code, message))
                },
            )
            .await?;
        Ok(End::Stored(status))
    }

    /// A subject's result, (status, status code, message), with no order number, calls,
    /// records or call to complete: the caller sets those it has.
    fn result<'r>(
        &'r self,
        s: &'r Subject,
        (status, status_code, message): (&'r str, &'r str, &'r str),
    ) -> SubjectResult<'r> {
        SubjectResult {
            provider: self.provider.name(),
            job: &self.job.name,
            subject_key: &s.key,
            subject_name: s.name.as_deref(),
            status,
            status_code,
            message,
            order_no: None,
            calls: 0,
            tables: &[],
            tables_of_provider: self.provider.tables(),
            completes: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn budget_day_is_beijing() {
        let t = Utc.with_ymd_and_hms(2024, 3, 14, 23, 30, 0).unwrap();
        assert_eq!(budget_day(t), "20240315");
        let t = Utc.with_ymd_and_hms(2024, 3, 14, 15, 59, 0).unwrap();
        assert_eq!(budget_day(t), "20240314");
    }

    #[test]
    fn pause_ends() {
        let t = Utc.with_ymd_and_hms(2024, 3, 14, 23, 30, 0).unwrap();
        assert_eq!(
            pause_end(Pause::For(Duration::from_secs(7200)), t),
            "2024-03-15 09:30:00"
        );
        assert_eq!(
            pause_end(Pause::UntilBeijingMidnight, t),
            "2024-03-16 00:00:00"
        );
    }

    fn job(extra: &str) -> QueryJobConfig {
        toml::from_str(&format!(
            "name='q'\nprovider='xinshu'\nsubjects='v'\ninterval='1h'\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn subjects_are_keyed_and_deduplicated() {
        let j = job("uscc_column='code'\nid_card_column='idc'");
        assert_eq!(subject_columns(&j), vec!["code", "name", "idc"]);
        let t = |s: &str| Some(s.to_string());
        let rows = vec![
            vec![t("91A"), t("甲公司"), None],
            vec![t("91A"), t("甲公司（重复）"), None],
            vec![None, t("乙个体户"), t("610431198603210047")],
            vec![t(" "), t(""), None],
        ];
        let r = subjects_from_rows(&j, rows);
        let s = &r.subjects;
        assert_eq!(s.len(), 2);
        assert_eq!(r.no_identity, 1, "the blank row is counted");
        assert_eq!(
            (s[0].key.as_str(), s[0].name.as_deref()),
            ("91A", Some("甲公司"))
        );
        assert_eq!(s[1].key, "乙个体户");
        assert_eq!(s[1].id_card.as_deref(), Some("610431198603210047"));
        let k = job("uscc_column='code'\nkey_column='id'");
        assert_eq!(subject_columns(&k), vec!["id", "code", "name"]);
    }

    #[test]
    fn a_tax_or_id_card_number_alone_identifies_a_subject() {
        // Columns: code, name, idc, tax.
        let t = |s: &str| Some(s.to_string());
        let rows = || {
            vec![
                vec![None, None, t("610431198603210047"), None],
                vec![None, t(" "), None, t("440104198603210047")],
                vec![t("91440101MA59XQ4T2K"), None, None, None],
                vec![None, None, None, None],
                vec![t(""), t(""), t(" "), t("")],
            ]
        };
        // (extra settings, keys in order, taxNo of the USCC-only row, rows without identity)
        for (extra, keys, uscc_tax, none) in [
            (
                "",
                vec![
                    "440104198603210047",
                    "610431198603210047",
                    "91440101MA59XQ4T2K",
                ],
                None,
                2,
            ),
            (
                "uscc_as_tax_no=true",
                vec![
                    "440104198603210047",
                    "610431198603210047",
                    "91440101MA59XQ4T2K",
                ],
                Some("91440101MA59XQ4T2K"),
                2,
            ),
        ] {
            let j = job(&format!(
                "uscc_column='code'\nid_card_column='idc'\ntax_no_column='tax'\n{extra}"
            ));
            let r = subjects_from_rows(&j, rows());
            let got: Vec<&str> = r.subjects.iter().map(|s| s.key.as_str()).collect();
            assert_eq!(got, keys, "{extra}");
            assert_eq!(r.no_identity, none, "{extra}");
            let id_only = &r.subjects[1];
            assert_eq!(
                (
                    id_only.name.as_deref(),
                    id_only.id_card.as_deref(),
                    id_only.tax_no.as_deref()
                ),
                (None, Some("610431198603210047"), None)
            );
            assert_eq!(r.subjects[0].tax_no.as_deref(), Some("440104198603210047"));
            assert_eq!(r.subjects[2].tax_no.as_deref(), uscc_tax, "{extra}");
        }
        // A row's own tax number wins over the USCC.
        let j = job("uscc_column='code'\ntax_no_column='tax'\nuscc_as_tax_no=true");
        let r = subjects_from_rows(&j, vec![vec![t("91A"), t("甲"), t("3101")]]);
        assert_eq!(r.subjects[0].tax_no.as_deref(), Some("3101"));
        // Without a tax_no_column the USCC is offered only when asked for.
        let j = job("uscc_column='code'\nuscc_as_tax_no=true");
        let r = subjects_from_rows(&j, vec![vec![t("91A"), t("甲")]]);
        assert_eq!(r.subjects[0].tax_no.as_deref(), Some("91A"));
        let j = job("uscc_column='code'");
        let r = subjects_from_rows(&j, vec![vec![t("91A"), t("甲")]]);
        assert_eq!(r.subjects[0].tax_no, None);
        // With key_column, a row without that value has no identity whatever else it has.
        let j = job("uscc_column='code'\nkey_column='id'");
        let r = subjects_from_rows(&j, vec![vec![None, t("91A"), t("甲")]]);
        assert_eq!((r.subjects.len(), r.no_identity), (0, 1));
    }

    #[test]
    fn more_pages_by_total_or_full_page() {
        for (total, read, last_got, size, want) in [
            (Some(45), 20, 20, 20, true),
            (Some(45), 45, 5, 20, false),
            (Some(45), 40, 0, 20, false),
            (None, 20, 20, 20, true),
            (None, 25, 5, 20, false),
        ] {
            assert_eq!(
                more_pages(total, read, last_got, size),
                want,
                "{total:?} {read} {last_got} {size}"
            );
        }
    }

    fn page_row(page: u32, items: usize, total: u64) -> PageRow {
        let list: Vec<Json> = (0..items).map(|i| serde_json::json!({"n": i})).collect();
        PageRow {
            page,
            job: "q".into(),
            search_key: "91A".into(),
            page_size: 2,
            total: Some(total),
            calls: 1,
            status_code: "1".into(),
            order_no: Some(format!("o{page}")),
            items_json: Json::Array(list).to_string(),
            fetched_at: "2026-01-02 03:04:05".into(),
        }
    }

    #[test]
    fn kept_pages_resume_only_when_they_belong_together() {
        let since = "2026-01-01 00:00:00";
        let pages = vec![page_row(1, 2, 5), page_row(2, 2, 5)];
        let p = resume(&pages, "91A", 2, since).unwrap();
        assert_eq!((p.pages, p.items.len(), p.calls), (2, 4, 2));
        assert_eq!(p.order_no.as_deref(), Some("o2"));
        assert!(p.more(2), "4 of 5 read");
        let mut changed = pages.clone();
        changed[1].total = Some(6);
        let p = resume(&changed, "91A", 2, since).unwrap();
        assert_eq!((p.first_total, p.last_total), (Some(5), Some(6)));

        let mut gap = pages.clone();
        gap[1].page = 3;
        let mut other_key = pages.clone();
        other_key[0].search_key = "甲公司".into();
        let mut broken = pages.clone();
        broken[1].items_json = "{".into();
        for (rows, size, why) in [
            (gap, 2, "page 2 is missing"),
            (other_key, 2, "search key changed"),
            (pages.clone(), 20, "page_size changed from 2 to 20"),
            (broken, 2, "not a JSON array"),
        ] {
            let e = resume(&rows, "91A", size, since).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        let e = resume(&pages, "91A", 2, "2026-02-01 00:00:00").unwrap_err();
        assert!(e.contains("fresh_for"), "{e}");
        assert_eq!(resume(&[], "91A", 2, since).unwrap(), Progress::default());
    }

    #[test]
    fn summary_mentions_skipped_and_part_way() {
        let o = QueryOutcome {
            subjects: 3,
            skipped: 2,
            partial: 1,
            budget_exhausted: true,
            ..Default::default()
        };
        let s = summary(&o);
        assert!(s.contains("2 skipped"), "{s}");
        assert!(s.contains("1 part-way (pages kept"), "{s}");
        assert!(!summary(&QueryOutcome::default()).contains("skipped"));
    }
}
