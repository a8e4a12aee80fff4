//! `run_query_once(job)`: the due subjects of a query job, each asked page by page within the
//! provider's daily budget, every call in the ledger, results stored per subject.

use anyhow::{Result, anyhow, bail};
use chrono::{DateTime, FixedOffset, Utc};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use super::config::QueryJobConfig;
use super::{Action, Answer, Call, Pause, Provider, Subject, TableRows, http_status_action};
use crate::db::query::{CallRecord, SubjectResult};
use crate::pipeline::App;
use crate::timefmt::{beijing, fmt_spec, now_beijing};
use crate::upstream::Backoff;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueryOutcome {
    pub subjects: usize,
    pub fresh: usize,
    pub found: usize,
    pub no_result: usize,
    pub rejected: usize,
    /// Subjects with nothing to search by.
    pub skipped: usize,
    /// Subjects left due after temporary failures.
    pub retry_later: usize,
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
    if o.retry_later > 0 {
        s.push_str(", temporary failures (retried next run)");
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

/// Builds the subjects of a view's rows: (key, name, uscc, id card, tax no) by column.
pub fn subjects_from_rows(job: &QueryJobConfig, rows: Vec<Vec<Option<String>>>) -> Vec<Subject> {
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
    let mut out = Vec::new();
    for row in rows {
        let name = at(&row, &Some(job.name_column.clone()));
        let uscc = at(&row, &job.uscc_column);
        let key = match &job.key_column {
            Some(_) => at(&row, &job.key_column),
            None => uscc.clone().or_else(|| name.clone()),
        };
        let Some(key) = key else { continue };
        if !seen.insert(key.clone()) {
            continue;
        }
        out.push(Subject {
            key,
            name,
            uscc,
            id_card: at(&row, &job.id_card_column),
            tax_no: at(&row, &job.tax_no_column),
        });
    }
    // Same order on every backend (they sort NULLs differently).
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
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

/// The answer's code, its action and the spec's message, or why there is none.
fn classify(
    app: &App,
    provider: Provider,
    sent: Result<(u16, String), String>,
) -> (Action, String, String, Option<Answer>) {
    let (status, body) = match sent {
        Ok(x) => x,
        Err(e) => return (Action::RetryLater, "network".into(), e, None),
    };
    let parsed = match provider {
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
    let (mut action, spec_msg) = match provider {
        Provider::Qcc => {
            let pause = app
                .cfg
                .qcc
                .as_ref()
                .map(|q| q.pause_on_110())
                .unwrap_or(Duration::from_secs(7200));
            super::qcc::action(&answer.code, pause)
        }
        p => super::lookup(p.codes(), &answer.code),
    };
    if action == Action::Success && answer.empty_success {
        action = Action::NoResult;
    }
    (
        action,
        answer.code.clone(),
        spec_msg.to_string(),
        Some(answer),
    )
}

fn build_call(
    app: &App,
    provider: Provider,
    job: &QueryJobConfig,
    s: &Subject,
    page: u32,
) -> Result<Option<Call>> {
    let now = Utc::now();
    let q = &app.query;
    Ok(match provider {
        Provider::Shuidi => {
            let c = q
                .shuidi
                .as_ref()
                .ok_or_else(|| anyhow!("no [shuidi] section"))?;
            s.search_key(job.search_by).map(|k| c.request(k, page, now))
        }
        Provider::Qcc => {
            let c = q.qcc.as_ref().ok_or_else(|| anyhow!("no [qcc] section"))?;
            s.search_key(job.search_by).map(|k| c.request(k, page, now))
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

/// (page size, page cap) of a paged provider.
fn paging(app: &App, provider: Provider) -> Option<(u32, u32)> {
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

pub async fn run_query_once(
    app: &App,
    job_name: &str,
    cancel: &CancellationToken,
) -> Result<QueryOutcome> {
    let job = app
        .cfg
        .queries
        .iter()
        .find(|q| q.name == job_name)
        .ok_or_else(|| anyhow!("no query job named '{job_name}'"))?;
    let span = info_span!("query", job = %job.name, provider = %job.provider);
    let result = run_inner(app, job, cancel).instrument(span).await;
    let err = result
        .as_ref()
        .err()
        .map(|e| crate::mask::mask_pii(&format!("{e:#}")));
    if let Err(e) = app.db.record_run(&job.name, err.as_deref()).await {
        warn!(job = %job.name, error = %e, "could not record the run in qz_cursor");
    }
    result
}

async fn run_inner(
    app: &App,
    job: &QueryJobConfig,
    cancel: &CancellationToken,
) -> Result<QueryOutcome> {
    let provider = Provider::parse(&job.provider)?;
    let pname = provider.name();
    let mut out = QueryOutcome::default();
    if app.query.is_stopped(provider) {
        bail!(QueryStopped(format!(
            "provider {pname} was stopped earlier in this process; fix the cause and restart qianzhi"
        )));
    }
    if let Some(st) = app.db.provider_state(pname).await? {
        let now = crate::timefmt::now_text();
        match (st.state.as_str(), st.paused_until) {
            ("paused", Some(until)) if until > now => {
                info!(until = %until, "provider is paused; nothing is sent until then");
                out.paused_until = Some(until);
                return Ok(out);
            }
            ("paused", _) => {
                info!("provider pause is over");
                app.db
                    .set_provider_state(pname, "active", None, None, None)
                    .await?;
            }
            // Stopped by an earlier process: a restart is the sign the cause was dealt with.
            ("stopped", _) => {
                warn!(
                    reason = st.reason.as_deref().unwrap_or(""),
                    "provider was stopped before this start; trying again"
                );
                app.db
                    .set_provider_state(pname, "active", None, None, None)
                    .await?;
            }
            _ => {}
        }
    }
    let budget = provider
        .daily_budget(&app.cfg)
        .ok_or_else(|| anyhow!("provider {pname} has no [{pname}] section"))?;
    let cols = subject_columns(job);
    let col_refs: Vec<&str> = cols.iter().map(String::as_str).collect();
    let rows = app.db.read_text_columns(&job.subjects, &col_refs).await?;
    let subjects = subjects_from_rows(job, rows);
    out.subjects = subjects.len();
    let since = fmt_spec(
        &(now_beijing() - chrono::Duration::from_std(job.fresh_for()).unwrap_or_default()),
    );
    let fresh = app.db.fresh_subjects(pname, &since).await?;
    for s in &subjects {
        if fresh.contains(&s.key) {
            out.fresh += 1;
            continue;
        }
        if cancel.is_cancelled() {
            out.interrupted = true;
            break;
        }
        match ask(app, provider, job, s, budget, cancel, &mut out).await? {
            End::Stored("found") => out.found += 1,
            End::Stored("no_result") => out.no_result += 1,
            End::Stored(_) => out.rejected += 1,
            End::BudgetSpent => {
                warn!(
                    budget,
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
            End::Skipped => out.skipped += 1,
            End::Paused(until) => {
                out.paused_until = Some(until);
                break;
            }
            End::Stopped(msg) => return Err(QueryStopped(msg).into()),
        }
    }
    Ok(out)
}

/// Asks for one subject, page by page, until every record is read or an answer says stop.
async fn ask(
    app: &App,
    provider: Provider,
    job: &QueryJobConfig,
    s: &Subject,
    budget: u32,
    cancel: &CancellationToken,
    out: &mut QueryOutcome,
) -> Result<End> {
    let pname = provider.name();
    let shown = s.shown();
    let paging = paging(app, provider);
    let mut backoff = Backoff::new(
        app.cfg.delivery.retry_initial(),
        app.cfg.delivery.retry_max(),
    );
    let (mut page, mut retries, mut resigned, mut calls) = (1u32, 0u32, false, 0i64);
    let mut items: Vec<serde_json::Value> = Vec::new();
    let mut last: Option<(String, Option<String>)> = None;
    let mut note = String::new();
    loop {
        let Some(call) = build_call(app, provider, job, s, page)? else {
            warn!(subject = %shown, "subject has nothing to search by (empty name and codes); skipped");
            return Ok(End::Skipped);
        };
        let day = budget_day(Utc::now());
        let Some(reserved) = app
            .db
            .reserve_call(pname, &job.name, &s.key, page, &day, budget)
            .await?
        else {
            if page > 1 {
                warn!(subject = %shown, page, "budget ran out between pages; the pages read are dropped and the subject stays due");
            }
            return Ok(End::BudgetSpent);
        };
        calls += 1;
        out.calls += 1;
        let sent = app.query.send(&call).await;
        let (action, code, spec_msg, answer) = classify(app, provider, sent);
        let provider_msg = answer
            .as_ref()
            .map(|a| crate::mask::mask_pii(&a.message))
            .filter(|m| !m.is_empty());
        let message = provider_msg.clone().unwrap_or_else(|| spec_msg.clone());
        let order_no = answer.as_ref().and_then(|a| a.order_no.clone());
        app.db
            .complete_call(
                reserved,
                &CallRecord {
                    status_code: &code,
                    action: action.label(),
                    billed: action.billed(),
                    order_no: order_no.as_deref(),
                    message: &message,
                },
            )
            .await?;
        let reason = format!("{code} {spec_msg}");
        match action {
            Action::Success => {
                let a = answer.expect("a success has an answer");
                let got = a.items.len();
                items.extend(a.items);
                last = Some((code.clone(), order_no));
                retries = 0;
                if let Some((size, max_pages)) = paging {
                    let more = match a.total {
                        Some(total) => (items.len() as u64) < total && got > 0,
                        None => got >= size as usize,
                    };
                    if more && page < max_pages {
                        page += 1;
                        continue;
                    }
                    if more {
                        note = format!(
                            "；只读取了前 {max_pages} 页（max_pages），共 {} 条",
                            a.total.map(|t| t.to_string()).unwrap_or("?".into())
                        );
                        warn!(subject = %shown, max_pages, "more records than max_pages allows; the rest were not read");
                    }
                }
                break;
            }
            Action::NoResult if page > 1 => break,
            Action::NoResult => {
                store(
                    app,
                    provider,
                    job,
                    s,
                    "no_result",
                    &code,
                    &spec_msg,
                    order_no.as_deref(),
                    calls,
                    &[],
                )
                .await?;
                return Ok(End::Stored("no_result"));
            }
            Action::SubjectRejected => {
                warn!(subject = %shown, code = %code, message = %message, "provider refused this subject's parameters; recorded, asked again when fresh_for has passed");
                store(
                    app,
                    provider,
                    job,
                    s,
                    "rejected",
                    &code,
                    &message,
                    order_no.as_deref(),
                    calls,
                    &[],
                )
                .await?;
                return Ok(End::Stored("rejected"));
            }
            Action::RetryLater => {
                retries += 1;
                if retries > job.retries {
                    warn!(subject = %shown, code = %code, message = %message, "still failing after retries");
                    return Ok(End::RetryLater);
                }
                let wait = backoff.next_delay();
                info!(subject = %shown, code = %code, message = %message, retry_in_ms = wait.as_millis() as u64, "temporary failure, asking again");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = cancel.cancelled() => { out.interrupted = true; return Ok(End::RetryLater); }
                }
            }
            Action::Resign if !resigned => {
                info!(code = %code, "request expired; signing again with a fresh timestamp");
                resigned = true;
            }
            Action::Resign | Action::StopProvider => {
                let why = if action == Action::Resign {
                    format!("{reason} (again after re-signing: check the key and the host clock)")
                } else {
                    reason
                };
                error!(provider = pname, code = %code, message = %message, "PROVIDER STOPPED: {why}; no more calls until the cause is fixed and qianzhi is restarted");
                app.query.stop(provider);
                app.db
                    .set_provider_state(pname, "stopped", None, Some(&code), Some(&why))
                    .await?;
                return Ok(End::Stopped(format!("provider {pname} stopped: {why}")));
            }
            Action::Pause(p) => {
                let until = pause_end(p, Utc::now());
                error!(provider = pname, code = %code, message = %message, until = %until, "PROVIDER PAUSED: {reason}");
                app.db
                    .set_provider_state(pname, "paused", Some(&until), Some(&code), Some(&reason))
                    .await?;
                return Ok(End::Paused(until));
            }
        }
    }
    let (code, order_no) = last.unwrap_or_default();
    let msg = format!("{}{note}", super::lookup(provider.codes(), &code).1);
    let tables = flatten(provider, &items);
    store(
        app,
        provider,
        job,
        s,
        "found",
        &code,
        &msg,
        order_no.as_deref(),
        calls,
        &tables,
    )
    .await?;
    info!(subject = %shown, records = items.len(), calls, "stored");
    Ok(End::Stored("found"))
}

#[allow(clippy::too_many_arguments)]
async fn store(
    app: &App,
    provider: Provider,
    job: &QueryJobConfig,
    s: &Subject,
    status: &str,
    code: &str,
    message: &str,
    order_no: Option<&str>,
    calls: i64,
    tables: &[TableRows],
) -> Result<()> {
    app.db
        .store_subject_result(&SubjectResult {
            provider: provider.name(),
            job: &job.name,
            subject_key: &s.key,
            subject_name: s.name.as_deref(),
            status,
            status_code: code,
            message,
            order_no,
            calls,
            tables,
            tables_of_provider: provider.tables(),
        })
        .await
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
        let s = subjects_from_rows(&j, rows);
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].key.as_str(), s[0].name.as_deref()),
            ("91A", Some("甲公司"))
        );
        assert_eq!(s[1].key, "乙个体户");
        assert_eq!(s[1].id_card.as_deref(), Some("610431198603210047"));
        let k = job("uscc_column='code'\nkey_column='id'");
        assert_eq!(subject_columns(&k), vec!["id", "code", "name"]);
    }
}
