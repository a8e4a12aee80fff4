//! The `[shuidi]`, `[qcc]`, `[xinshu]` provider sections and `[[query]]` jobs, and their checks.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{ConfigIssue, Secret};
use crate::timefmt::parse_duration;

/// Reads a credential from a file (first line, trimmed) or an environment variable.
pub fn resolve_secret(what: &str, file: &Option<PathBuf>, env: &Option<String>) -> Result<Secret> {
    if let Some(path) = file {
        let t = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {what}_file {}", path.display()))?;
        let t = t.trim();
        if t.is_empty() {
            bail!("{what}_file {} is empty", path.display());
        }
        return Ok(Secret::new(t));
    }
    if let Some(var) = env {
        return match std::env::var(var) {
            Ok(t) if !t.trim().is_empty() => Ok(Secret::new(t.trim())),
            _ => bail!("environment variable {var} ({what}_env) is not set"),
        };
    }
    bail!("set {what}_file or {what}_env")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpMethod {
    Get,
    Post,
}

/// Where Xinshu's parameters go: its spec says POST but its example puts them in the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamsIn {
    Form,
    Query,
}

/// 水滴 工商行政处罚 (interface 2032).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShuidiConfig {
    /// The full interface address (spec: http://api.shuidi.cn/utn/ic/Punish).
    pub url: String,
    /// 接入ID; not a secret (it travels in every URL).
    pub pname: String,
    pub pkey_file: Option<PathBuf>,
    pub pkey_env: Option<String>,
    pub daily_budget: u32,
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
    /// The spec allows GET or form POST.
    #[serde(default = "default_get")]
    pub method: HttpMethod,
}

/// 企查查 进出口信用核查 (OperationCheck/GetList).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QccConfig {
    /// The full method address (spec: https://pro.qcc.com/api/yj/OperationCheck/GetList).
    pub url: String,
    pub key_file: Option<PathBuf>,
    pub key_env: Option<String>,
    pub secret_key_file: Option<PathBuf>,
    pub secret_key_env: Option<String>,
    pub daily_budget: u32,
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
    /// Status 110 says "请等 2 小时后重试".
    #[serde(default = "default_qcc_pause")]
    pub pause_on_110: String,
}

/// 信数 税务负面信息 (taxBlack).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XinshuConfig {
    /// The interface address (spec: http://api.xinshucredit.com/ws/repository/taxBlack).
    pub url: String,
    pub apikey_file: Option<PathBuf>,
    pub apikey_env: Option<String>,
    pub private_key_file: Option<PathBuf>,
    pub private_key_env: Option<String>,
    pub daily_budget: u32,
    #[serde(default = "default_params_in")]
    pub params_in: ParamsIn,
}

fn default_page_size() -> u32 {
    20
}
fn default_max_pages() -> u32 {
    25
}
fn default_get() -> HttpMethod {
    HttpMethod::Get
}
fn default_qcc_pause() -> String {
    "2h".into()
}
fn default_params_in() -> ParamsIn {
    ParamsIn::Form
}

impl QccConfig {
    pub fn pause_on_110(&self) -> Duration {
        parse_duration(&self.pause_on_110).unwrap_or(Duration::from_secs(7200))
    }
}

/// What Shuidi and Qichacha search by (both take a name or a 统一社会信用代码).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchBy {
    /// The 统一社会信用代码 when the row has one, else the name.
    Auto,
    Uscc,
    Name,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryJobConfig {
    pub name: String,
    /// shuidi, qcc or xinshu.
    pub provider: String,
    /// Table or view listing the subjects, optionally schema-qualified.
    pub subjects: String,
    #[serde(default = "default_name_column")]
    pub name_column: String,
    /// Column holding the 统一社会信用代码.
    pub uscc_column: Option<String>,
    /// Xinshu only: 法人身份证号码 (idCard).
    pub id_card_column: Option<String>,
    /// Xinshu only: 税务登记号 (taxNo).
    pub tax_no_column: Option<String>,
    /// Xinshu only: send the 统一社会信用代码 as taxNo when the row has no tax number (or no
    /// tax_no_column is set). Since 三证合一 the USCC is the taxpayer identification number.
    #[serde(default)]
    pub uscc_as_tax_no: bool,
    /// Column that identifies a subject in the result tables; default: the 统一社会信用代码
    /// when the row has one, else the name.
    pub key_column: Option<String>,
    #[serde(default = "default_search_by")]
    pub search_by: SearchBy,
    /// How long a result (or a "no result") stays good before the subject is asked again.
    #[serde(default = "default_fresh_for")]
    pub fresh_for: String,
    /// Retries of one call after a temporary failure, within a run.
    #[serde(default = "default_retries")]
    pub retries: u32,
    pub schedule: Option<String>,
    pub interval: Option<String>,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_true() -> bool {
    true
}
fn default_name_column() -> String {
    "name".into()
}
fn default_search_by() -> SearchBy {
    SearchBy::Auto
}
fn default_fresh_for() -> String {
    "30d".into()
}
fn default_retries() -> u32 {
    2
}

impl QueryJobConfig {
    pub fn fresh_for(&self) -> Duration {
        parse_duration(&self.fresh_for).unwrap_or(Duration::from_secs(30 * 86400))
    }
    pub fn interval(&self) -> Option<Duration> {
        self.interval
            .as_deref()
            .and_then(|s| parse_duration(s).ok())
    }
}

fn url_ok(u: &str) -> bool {
    u.starts_with("http://") || u.starts_with("https://")
}

fn column_ok(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_alphanumeric() || ch == '_' || ch == '$')
}

fn table_ok(s: &str) -> bool {
    !s.is_empty() && s.split('.').count() <= 2 && s.split('.').all(column_ok)
}

/// Every problem of the query sections, in the same style as `Config::validate`.
pub fn validate(cfg: &crate::config::Config, out: &mut Vec<ConfigIssue>) {
    let mut bad = |path: String, reason: String| out.push(ConfigIssue { path, reason });
    let cred = |file: &Option<PathBuf>, env: &Option<String>| file.is_some() || env.is_some();
    let pages = |bad: &mut dyn FnMut(String, String), p: &str, size: u32, max: u32| {
        if !(1..=20).contains(&size) {
            bad(
                format!("{p}.page_size"),
                "must be 1..=20 (the spec's maximum)".into(),
            );
        }
        let range = crate::config::ranges::MAX_PAGES;
        if let Some((path, reason)) =
            crate::config::number_issue(&format!("{p}.max_pages"), max, range)
        {
            bad(path, reason);
        }
    };
    if let Some(s) = &cfg.shuidi {
        if !url_ok(&s.url) {
            bad(
                "shuidi.url".into(),
                "must start with http:// or https://".into(),
            );
        }
        if s.pname.trim().is_empty() {
            bad("shuidi.pname".into(), "must not be empty".into());
        }
        if !cred(&s.pkey_file, &s.pkey_env) {
            bad("shuidi".into(), "set pkey_file or pkey_env".into());
        }
        pages(&mut bad, "shuidi", s.page_size, s.max_pages);
    }
    if let Some(q) = &cfg.qcc {
        if !url_ok(&q.url) {
            bad(
                "qcc.url".into(),
                "must start with http:// or https://".into(),
            );
        }
        if !cred(&q.key_file, &q.key_env) {
            bad("qcc".into(), "set key_file or key_env".into());
        }
        if !cred(&q.secret_key_file, &q.secret_key_env) {
            bad("qcc".into(), "set secret_key_file or secret_key_env".into());
        }
        pages(&mut bad, "qcc", q.page_size, q.max_pages);
        let range = crate::config::ranges::PAUSE_ON_110;
        if let Some((path, reason)) =
            crate::config::duration_issue("qcc.pause_on_110", &q.pause_on_110, range)
        {
            bad(path, reason);
        }
    }
    if let Some(x) = &cfg.xinshu {
        if !url_ok(&x.url) {
            bad(
                "xinshu.url".into(),
                "must start with http:// or https://".into(),
            );
        }
        if !cred(&x.apikey_file, &x.apikey_env) {
            bad("xinshu".into(), "set apikey_file or apikey_env".into());
        }
        if !cred(&x.private_key_file, &x.private_key_env) {
            bad(
                "xinshu".into(),
                "set private_key_file or private_key_env".into(),
            );
        }
    }
    let job_names: std::collections::HashSet<&str> =
        cfg.jobs.iter().map(|j| j.name.as_str()).collect();
    let mut names = std::collections::HashSet::new();
    for (i, q) in cfg.queries.iter().enumerate() {
        let p = format!("query[{i}] ({})", q.name);
        if q.name.is_empty()
            || !q
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            bad(
                format!("{p}.name"),
                "use letters, digits, _ and - only".into(),
            );
        }
        if !names.insert(q.name.as_str()) || job_names.contains(q.name.as_str()) {
            bad(
                format!("{p}.name"),
                "another job or query has the same name".into(),
            );
        }
        let configured = match q.provider.as_str() {
            "shuidi" => cfg.shuidi.is_some(),
            "qcc" => cfg.qcc.is_some(),
            "xinshu" => cfg.xinshu.is_some(),
            other => {
                bad(
                    format!("{p}.provider"),
                    format!("unknown provider '{other}' (known: shuidi, qcc, xinshu)"),
                );
                true
            }
        };
        if !configured {
            bad(
                format!("{p}.provider"),
                format!("provider {} needs a [{}] section", q.provider, q.provider),
            );
        }
        if !table_ok(&q.subjects) {
            bad(
                format!("{p}.subjects"),
                format!("'{}' is not a table or view name", q.subjects),
            );
        }
        for c in std::iter::once(&q.name_column)
            .chain(q.uscc_column.iter())
            .chain(q.id_card_column.iter())
            .chain(q.tax_no_column.iter())
            .chain(q.key_column.iter())
        {
            if !column_ok(c) {
                bad(p.clone(), format!("'{c}' is not a column name"));
            }
        }
        if q.provider != "xinshu" && (q.id_card_column.is_some() || q.tax_no_column.is_some()) {
            bad(
                p.clone(),
                "id_card_column and tax_no_column are for provider xinshu only".into(),
            );
        }
        if q.uscc_as_tax_no && q.provider != "xinshu" {
            bad(
                format!("{p}.uscc_as_tax_no"),
                "uscc_as_tax_no is for provider xinshu only".into(),
            );
        }
        if q.uscc_as_tax_no && q.uscc_column.is_none() {
            bad(
                format!("{p}.uscc_as_tax_no"),
                "uscc_as_tax_no = true needs uscc_column".into(),
            );
        }
        if q.search_by == SearchBy::Uscc && q.uscc_column.is_none() {
            bad(
                format!("{p}.search_by"),
                "search_by = \"uscc\" needs uscc_column".into(),
            );
        }
        let range = crate::config::ranges::FRESH_FOR;
        if let Some((path, reason)) =
            crate::config::duration_issue(&format!("{p}.fresh_for"), &q.fresh_for, range)
        {
            bad(path, reason);
        }
        if let Some((path, reason)) = crate::config::schedule_issue(&p, &q.schedule, &q.interval) {
            bad(path, reason);
        }
    }
}

/// Settings that work but cost the owner something they may not expect: `qianzhi check`
/// prints them without failing.
pub fn warnings(cfg: &crate::config::Config) -> Vec<ConfigIssue> {
    let mut out = Vec::new();
    let paged = [
        (
            "shuidi",
            cfg.shuidi.as_ref().map(|c| (c.max_pages, c.daily_budget)),
        ),
        (
            "qcc",
            cfg.qcc.as_ref().map(|c| (c.max_pages, c.daily_budget)),
        ),
    ];
    for (p, pages) in paged {
        let Some((max_pages, budget)) = pages else {
            continue;
        };
        if max_pages > budget {
            let days = max_pages.div_ceil(budget.max(1));
            out.push(ConfigIssue {
                path: format!("{p}.max_pages"),
                reason: format!(
                    "max_pages ({max_pages}) 大于 daily_budget ({budget})：页数多的主体最多要 {days} 天才能读完（已买的页保留，次日接着读），其间其他主体等待 / \
                     max_pages ({max_pages}) exceeds daily_budget ({budget}): a subject with that many pages takes up to {days} days \
                     (pages bought are kept and continued the next day) while the other subjects wait"
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::schema::Catalog;

    const BASE: &str = r#"
[database]
url = "sqlite://x.db"
[unit]
uscc = "11620000MB199916XB"
name = "某局"
region_code = "440100"
[shuidi]
url = "http://127.0.0.1:1/utn/ic/Punish"
pname = "p"
pkey_env = "K"
daily_budget = 100
[qcc]
url = "http://127.0.0.1:1/api/yj/OperationCheck/GetList"
key_env = "K"
secret_key_file = "/etc/qianzhi/qcc.secret"
daily_budget = 100
[[query]]
name = "penalties"
provider = "shuidi"
subjects = "v_subjects"
uscc_column = "uscc"
interval = "1h"
"#;

    fn issues(text: &str) -> String {
        let cat = Catalog::load(None).unwrap();
        let cfg = crate::config::parse_with_env(text, &[]).unwrap();
        cfg.validate(&cat)
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn good_query_config_has_no_issues() {
        assert_eq!(issues(BASE), "");
        let cfg = crate::config::parse_with_env(BASE, &[]).unwrap();
        let q = &cfg.queries[0];
        assert_eq!(q.fresh_for().as_secs(), 30 * 86400);
        assert_eq!(cfg.shuidi.unwrap().page_size, 20);
        assert_eq!(cfg.qcc.unwrap().pause_on_110().as_secs(), 7200);
    }

    #[test]
    fn every_query_problem_at_once() {
        let text = BASE
            .replace("page_size", "x")
            .replace(
                "daily_budget = 100\n[[query]]",
                "daily_budget = 100\npage_size = 50\n[[query]]",
            )
            .replace("pkey_env = \"K\"\n", "")
            .replace(
                "url = \"http://127.0.0.1:1/utn",
                "url = \"ftp://127.0.0.1:1/utn",
            )
            .replace(
                "interval = \"1h\"",
                "interval = \"soon\"\nfresh_for = \"a while\"\ntax_no_column = \"tax_no\"",
            )
            + "[[query]]\nname = \"penalties\"\nprovider = \"tianyancha\"\nsubjects = \"x; drop table y\"\nschedule = \"0 0 3 * * *\"\n";
        let all = issues(&text);
        for want in [
            "shuidi.url",
            "set pkey_file or pkey_env",
            "qcc.page_size",
            "query[0] (penalties).interval",
            "query[0] (penalties).fresh_for",
            "for provider xinshu only",
            "query[1] (penalties).name",
            "unknown provider 'tianyancha'",
            "query[1] (penalties).subjects",
        ] {
            assert!(all.contains(want), "missing {want} in\n{all}");
        }
    }

    #[test]
    fn uscc_as_tax_no_is_for_xinshu_with_a_uscc_column() {
        let shuidi = BASE.replace(
            "interval = \"1h\"",
            "interval = \"1h\"\nuscc_as_tax_no = true",
        );
        assert!(
            issues(&shuidi).contains("uscc_as_tax_no is for provider xinshu only"),
            "{}",
            issues(&shuidi)
        );
        let xinshu = BASE
            .replace("provider = \"shuidi\"", "provider = \"xinshu\"")
            .replace("uscc_column = \"uscc\"\n", "")
            .replace(
                "interval = \"1h\"",
                "interval = \"1h\"\nuscc_as_tax_no = true",
            )
            + "[xinshu]\nurl = \"http://127.0.0.1:1/x\"\napikey_env = \"A\"\nprivate_key_env = \"P\"\ndaily_budget = 1\n";
        let all = issues(&xinshu);
        assert!(all.contains("needs uscc_column"), "{all}");
        assert!(!all.contains("xinshu only"), "{all}");
        let ok = xinshu.replace(
            "uscc_as_tax_no = true",
            "uscc_as_tax_no = true\nuscc_column = \"uscc\"",
        );
        assert_eq!(issues(&ok), "");
        let cfg = crate::config::parse_with_env(BASE, &[]).unwrap();
        assert!(!cfg.queries[0].uscc_as_tax_no, "off unless asked for");
    }

    #[test]
    fn max_pages_over_daily_budget_is_a_warning_not_an_issue() {
        let warn = |text: &str| -> Vec<String> {
            let cfg = crate::config::parse_with_env(text, &[]).unwrap();
            super::warnings(&cfg)
                .iter()
                .map(|i| i.to_string())
                .collect()
        };
        // BASE: budget 100, max_pages 25 (default): nothing to say.
        assert!(warn(BASE).is_empty());
        for (budget, max_pages, want) in [
            (2, 3, Some(("shuidi.max_pages", "2 days"))),
            (10, 25, Some(("shuidi.max_pages", "3 days"))),
            (25, 25, None),
            (26, 25, None),
        ] {
            let text = BASE.replacen(
                "daily_budget = 100",
                &format!("daily_budget = {budget}\nmax_pages = {max_pages}"),
                1,
            );
            let w = warn(&text);
            match want {
                Some((path, days)) => {
                    assert_eq!(w.len(), 1, "{w:?}");
                    assert!(w[0].starts_with(path) && w[0].contains(days), "{w:?}");
                    assert!(w[0].contains(&format!(
                        "max_pages ({max_pages}) exceeds daily_budget ({budget})"
                    )));
                }
                None => assert!(w.is_empty(), "{budget}/{max_pages}: {w:?}"),
            }
            assert_eq!(issues(&text), "", "a warning is not a problem");
        }
    }
}
