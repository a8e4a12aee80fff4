//! Credit queries: the paid providers (Shuidi, Qichacha, Xinshu), what their status codes
//! make the daemon do, and the types the runner and the simulator share.

pub mod client;
pub mod qcc;
pub mod run;
pub mod shuidi;
pub mod xinshu;

use serde_json::Value as Json;
use std::time::Duration;

use crate::config::query::SearchBy;
pub use crate::db::query::{FlatRow, TableRows};
pub use run::{QueryOutcome, QueryStopped, run_query_held, run_query_once};

/// What a query run needs of the application: the configuration, the database and the
/// providers' clients. The pipeline's `App` lends them (`App::query_app`), so the query code
/// does not depend on the pipeline.
#[derive(Clone, Copy)]
pub struct QueryApp<'a> {
    pub cfg: &'a crate::config::Config,
    pub db: &'a crate::db::Db,
    pub query: &'a client::Clients,
    /// Who this process is when it holds a query job's lease.
    pub me: &'a crate::db::lease::Holder,
}

/// How long a provider is left alone after it asked for a pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    For(Duration),
    /// Daily limits reset with the provider's (Beijing) day.
    UntilBeijingMidnight,
}

/// What the daemon does with one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Success,
    /// Recorded as such; the subject is not asked again until `fresh_for` has passed.
    NoResult,
    /// The provider will not answer for this subject's parameters (bad keyword, unsupported
    /// company type): recorded like a no-result, with the message, so money is not spent on
    /// the same refusal every run.
    SubjectRejected,
    /// Network, 5xx, "等待处理中": the subject stays due; the call is retried a few times.
    RetryLater,
    /// The request expired: sign again with a fresh timestamp and send once more.
    Resign,
    Pause(Pause),
    /// Bad key, no permission, quota gone, banned IP: no further calls until a person acts.
    StopProvider,
}

impl Action {
    /// Answers we expect to find on the bill: data, or a definitive "no data".
    pub fn billed(self) -> bool {
        matches!(self, Action::Success | Action::NoResult)
    }

    pub fn label(self) -> &'static str {
        match self {
            Action::Success => "success",
            Action::NoResult => "no_result",
            Action::SubjectRejected => "subject_rejected",
            Action::RetryLater => "retry_later",
            Action::Resign => "resign",
            Action::Pause(_) => "pause",
            Action::StopProvider => "stop_provider",
        }
    }
}

/// One row of a provider's status-code table: the code, the action, and the spec's message
/// kept verbatim for the DBA.
#[derive(Debug, Clone, Copy)]
pub struct CodeRow {
    pub code: &'static str,
    pub action: Action,
    pub message: &'static str,
}

/// A code the spec does not list: retried later (it costs nothing when it is not billed) and
/// reported with the provider's own message.
pub fn lookup(table: &'static [CodeRow], code: &str) -> (Action, &'static str) {
    table
        .iter()
        .find(|r| r.code == code)
        .map(|r| (r.action, r.message))
        .unwrap_or((Action::RetryLater, "规范未列出的状态码"))
}

/// The providers are a closed set the configuration reads; defined with it.
pub use crate::config::Provider;

impl Provider {
    pub fn codes(self) -> &'static [CodeRow] {
        match self {
            Provider::Shuidi => shuidi::CODES,
            Provider::Qcc => qcc::CODES,
            Provider::Xinshu => xinshu::CODES,
        }
    }

    /// The result tables a re-query of this provider replaces.
    pub fn tables(self) -> &'static [&'static str] {
        match self {
            Provider::Shuidi => &[shuidi::TABLE],
            Provider::Qcc => &[qcc::CREDIT_TABLE, qcc::PUNISH_TABLE],
            Provider::Xinshu => &[xinshu::TABLE],
        }
    }

    pub fn daily_budget(self, cfg: &crate::config::Config) -> Option<u32> {
        match self {
            Provider::Shuidi => cfg.shuidi.as_ref().map(|c| c.daily_budget),
            Provider::Qcc => cfg.qcc.as_ref().map(|c| c.daily_budget),
            Provider::Xinshu => cfg.xinshu.as_ref().map(|c| c.daily_budget),
        }
    }
}

/// One row of the subjects view.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    /// Identity in the result tables and the ledger.
    pub key: String,
    pub name: Option<String>,
    pub uscc: Option<String>,
    pub id_card: Option<String>,
    pub tax_no: Option<String>,
}

impl Subject {
    /// What Shuidi's `keyword` and Qichacha's `searchKey` carry.
    pub fn search_key(&self, by: SearchBy) -> Option<&str> {
        let uscc = self.uscc.as_deref().filter(|s| !s.is_empty());
        let name = self.name.as_deref().filter(|s| !s.is_empty());
        match by {
            SearchBy::Auto => uscc.or(name),
            SearchBy::Uscc => uscc,
            SearchBy::Name => name,
        }
    }

    /// The key shown in logs: ID numbers in it are masked.
    pub fn shown(&self) -> String {
        crate::mask::mask_pii(&self.key)
    }
}

/// An HTTP request, fully described, so building and signing stay pure and testable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub post: bool,
    pub url: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    /// Sent as application/x-www-form-urlencoded when set.
    pub form: Option<Vec<(String, String)>>,
}

/// A provider's answer, reduced to what the runner needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub code: String,
    pub message: String,
    pub order_no: Option<String>,
    /// TotalRecords, for paged providers.
    pub total: Option<u64>,
    pub items: Vec<Json>,
    /// The provider said success but that no data exists (Qichacha VerifyResult 0).
    pub empty_success: bool,
}

/// A JSON field as text for a result column: strings as they are, numbers and booleans
/// printed, objects and arrays as JSON, null and missing as SQL NULL.
pub fn text_of(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::Null => None,
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

/// Flattens objects by a (JSON field, column) list.
pub fn flatten_by(item: &Json, fields: &[&str]) -> FlatRow {
    FlatRow {
        values: fields.iter().map(|f| text_of(item.get(*f))).collect(),
        raw: item.to_string(),
    }
}

/// md5 as lowercase hex.
pub fn md5_hex(text: &str) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(text.as_bytes()))
}

/// HTTP-level classification shared by the providers: a status that is not 2xx either says
/// "try later" or means the address is wrong.
pub fn http_status_action(status: u16) -> Option<(Action, String)> {
    match status {
        200..=299 => None,
        408 | 429 | 500..=599 => Some((
            Action::RetryLater,
            format!("HTTP {status}：网络不稳定或服务端繁忙，稍后重试"),
        )),
        _ => Some((
            Action::StopProvider,
            format!("HTTP {status}：请检查接口地址 (url)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_matches_published_vectors() {
        // RFC 1321 test suite.
        for (input, want) in [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
        ] {
            assert_eq!(md5_hex(input), want, "{input}");
        }
    }

    #[test]
    fn text_of_values() {
        let j = serde_json::json!({"s": "甲", "n": 12, "b": true, "z": null, "a": [1]});
        for (k, want) in [
            ("s", Some("甲")),
            ("n", Some("12")),
            ("b", Some("true")),
            ("z", None),
            ("a", Some("[1]")),
            ("missing", None),
        ] {
            assert_eq!(text_of(j.get(k)).as_deref(), want, "{k}");
        }
    }

    #[test]
    fn http_statuses() {
        for (s, want) in [
            (200, None),
            (502, Some(Action::RetryLater)),
            (503, Some(Action::RetryLater)),
            (429, Some(Action::RetryLater)),
            (404, Some(Action::StopProvider)),
            (403, Some(Action::StopProvider)),
        ] {
            assert_eq!(http_status_action(s).map(|a| a.0), want, "{s}");
        }
    }

    #[test]
    fn unknown_codes_retry_later() {
        assert_eq!(lookup(shuidi::CODES, "12345").0, Action::RetryLater);
    }

    #[test]
    fn every_table_has_unique_codes_and_messages() {
        for p in Provider::ALL {
            let mut seen = std::collections::HashSet::new();
            for r in p.codes() {
                assert!(seen.insert(r.code), "{p:?} lists {} twice", r.code);
                assert!(!r.message.is_empty(), "{p:?} {}", r.code);
            }
        }
    }
}
