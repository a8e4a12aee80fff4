//! The credit-query provider sections `[shuidi]`, `[qcc]`, `[xinshu]` and `[[query]]` jobs.
//! The query code reads them from here.

use std::time::Duration;

use super::read::Table;
use super::secret::Credential;
use super::{Config, ConfigIssue, Trigger, column_ok, name_ok, ranges, table_ok, url_ok};

/// A paid credit-query provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Shuidi,
    Qcc,
    Xinshu,
}

impl Provider {
    pub const ALL: [Provider; 3] = [Provider::Shuidi, Provider::Qcc, Provider::Xinshu];

    pub fn name(self) -> &'static str {
        match self {
            Provider::Shuidi => "shuidi",
            Provider::Qcc => "qcc",
            Provider::Xinshu => "xinshu",
        }
    }

    pub fn from_name(s: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.name() == s)
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // pad, not write_str: tables line up provider names with a width (`{:<7}`).
        f.pad(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpMethod {
    Get,
    Post,
}

/// Where Xinshu's parameters go: its spec says POST but its example puts them in the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamsIn {
    Form,
    Query,
}

/// What Shuidi and Qichacha search by (both take a name or a 统一社会信用代码).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchBy {
    /// The 统一社会信用代码 when the row has one, else the name.
    Auto,
    Uscc,
    Name,
}

/// 水滴 工商行政处罚 (interface 2032).
#[derive(Debug, Clone)]
pub struct ShuidiConfig {
    /// The full interface address (spec: http://api.shuidi.cn/utn/ic/Punish).
    pub url: String,
    /// 接入ID; not a secret (it travels in every URL).
    pub pname: String,
    pub pkey: Credential,
    pub daily_budget: u32,
    pub page_size: u32,
    pub max_pages: u32,
    /// The spec allows GET or form POST.
    pub method: HttpMethod,
}

/// 企查查 进出口信用核查 (OperationCheck/GetList).
#[derive(Debug, Clone)]
pub struct QccConfig {
    /// The full method address (spec: https://pro.qcc.com/api/yj/OperationCheck/GetList).
    pub url: String,
    pub key: Credential,
    pub secret_key: Credential,
    pub daily_budget: u32,
    pub page_size: u32,
    pub max_pages: u32,
    /// Status 110 says "请等 2 小时后重试".
    pub pause_on_110: Duration,
}

impl QccConfig {
    pub fn pause_on_110(&self) -> Duration {
        self.pause_on_110
    }
}

/// 信数 税务负面信息 (taxBlack).
#[derive(Debug, Clone)]
pub struct XinshuConfig {
    /// The interface address (spec: http://api.xinshucredit.com/ws/repository/taxBlack).
    pub url: String,
    pub apikey: Credential,
    pub private_key: Credential,
    pub daily_budget: u32,
    pub params_in: ParamsIn,
}

fn url(t: &mut Table) -> String {
    let u = t.req_text("url");
    if u.as_deref().is_some_and(|u| !url_ok(u)) {
        t.issue(
            Some("url"),
            "must start with http:// or https:// (须以 http:// 或 https:// 开头)",
        );
    }
    u.unwrap_or_default()
}

/// `page_size` (the spec's maximum is 20) and `max_pages`.
fn pages(t: &mut Table) -> (u32, u32) {
    let size = t.number_or("page_size", 20, (0, u32::MAX));
    if !(1..=20).contains(&size) {
        t.issue(
            Some("page_size"),
            "must be 1..=20 (the spec's maximum) (规范上限为 20)",
        );
    }
    (size, t.number_or("max_pages", 25, ranges::MAX_PAGES))
}

fn budget(t: &mut Table) -> u32 {
    t.req_number("daily_budget", (0, u32::MAX)).unwrap_or(0)
}

impl ShuidiConfig {
    pub(crate) fn read(t: &mut Table) -> ShuidiConfig {
        let url = url(t);
        let pname = t.req_text("pname");
        if pname.as_ref().is_some_and(|p| p.trim().is_empty()) {
            t.issue(Some("pname"), "must not be empty (不能为空)");
        }
        let (page_size, max_pages) = pages(t);
        ShuidiConfig {
            url,
            pname: pname.unwrap_or_default(),
            pkey: t.credential("pkey", "pkey_file", "pkey_env", None, "水滴 pkey"),
            daily_budget: budget(t),
            page_size,
            max_pages,
            method: t.choice("method", HttpMethod::Get),
        }
    }
}

impl QccConfig {
    pub(crate) fn read(t: &mut Table) -> QccConfig {
        let url = url(t);
        let (page_size, max_pages) = pages(t);
        QccConfig {
            url,
            key: t.credential("key", "key_file", "key_env", None, "企查查 AppKey"),
            secret_key: t.credential(
                "secret_key",
                "secret_key_file",
                "secret_key_env",
                None,
                "企查查 SecretKey",
            ),
            daily_budget: budget(t),
            page_size,
            max_pages,
            pause_on_110: t.duration_or(
                "pause_on_110",
                Duration::from_secs(7200),
                ranges::PAUSE_ON_110,
            ),
        }
    }
}

impl XinshuConfig {
    pub(crate) fn read(t: &mut Table) -> XinshuConfig {
        XinshuConfig {
            url: url(t),
            apikey: t.credential("apikey", "apikey_file", "apikey_env", None, "信数 apikey"),
            private_key: t.credential(
                "private_key",
                "private_key_file",
                "private_key_env",
                None,
                "信数 private key",
            ),
            daily_budget: budget(t),
            params_in: t.choice("params_in", ParamsIn::Form),
        }
    }
}

macro_rules! read_alone {
    ($t:ty) => {
        impl<'de> serde::Deserialize<'de> for $t {
            /// The section alone, secrets not read (tests); a file goes through `Config::parse`.
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                super::standalone(d, <$t>::read)
            }
        }
    };
}
read_alone!(ShuidiConfig);
read_alone!(QccConfig);
read_alone!(XinshuConfig);

#[derive(Debug, Clone)]
pub struct QueryJobConfig {
    pub name: String,
    pub provider: Provider,
    /// Table or view listing the subjects, optionally schema-qualified.
    pub subjects: String,
    pub name_column: String,
    /// Column holding the 统一社会信用代码.
    pub uscc_column: Option<String>,
    /// Xinshu only: 法人身份证号码 (idCard).
    pub id_card_column: Option<String>,
    /// Xinshu only: 税务登记号 (taxNo).
    pub tax_no_column: Option<String>,
    /// Xinshu only: send the 统一社会信用代码 as taxNo when the row has no tax number (or no
    /// tax_no_column is set). Since 三证合一 the USCC is the taxpayer identification number.
    pub uscc_as_tax_no: bool,
    /// Column that identifies a subject in the result tables; default: the 统一社会信用代码
    /// when the row has one, else the name.
    pub key_column: Option<String>,
    pub search_by: SearchBy,
    /// How long a result (or a "no result") stays good before the subject is asked again.
    pub fresh_for: Duration,
    /// Retries of one call after a temporary failure, within a run.
    pub retries: u32,
    pub trigger: Trigger,
    pub enabled: bool,
    /// Position among the file's `[[query]]` entries, to locate later issues.
    pub(crate) entry: usize,
}

impl QueryJobConfig {
    pub fn fresh_for(&self) -> Duration {
        self.fresh_for
    }

    pub fn interval(&self) -> Option<Duration> {
        self.trigger.interval()
    }

    pub fn schedule(&self) -> Option<&super::CronSchedule> {
        self.trigger.schedule()
    }

    pub(crate) fn read(t: &mut Table, entry: usize) -> QueryJobConfig {
        let name = t.req_text("name");
        if name.as_deref().is_some_and(|n| !name_ok(n)) {
            t.issue(
                Some("name"),
                "use letters, digits, _ and - only (只能用字母、数字、_ 和 -)",
            );
        }
        let provider = match t.req_text("provider") {
            None => None,
            Some(p) => {
                match Provider::from_name(&p) {
                    Some(p) => Some(p),
                    None => {
                        t.issue(
                        Some("provider"),
                        format!("unknown provider '{p}' (known: shuidi, qcc, xinshu) (未知的查询服务商)"),
                    );
                        None
                    }
                }
            }
        };
        let subjects = t.req_text("subjects");
        if let Some(s) = &subjects
            && !table_ok(s)
        {
            t.issue(
                Some("subjects"),
                format!("'{s}' is not a table or view name (不是表或视图名)"),
            );
        }
        let name_column = t.text_or("name_column", "name");
        let uscc_column = t.text("uscc_column");
        let id_card_column = t.text("id_card_column");
        let tax_no_column = t.text("tax_no_column");
        let key_column = t.text("key_column");
        let columns = [
            ("name_column", Some(&name_column)),
            ("uscc_column", uscc_column.as_ref()),
            ("id_card_column", id_card_column.as_ref()),
            ("tax_no_column", tax_no_column.as_ref()),
            ("key_column", key_column.as_ref()),
        ];
        for (k, c) in columns {
            if let Some(c) = c
                && !column_ok(c)
            {
                t.issue(Some(k), format!("'{c}' is not a column name (不是列名)"));
            }
        }
        let xinshu = provider == Some(Provider::Xinshu);
        if provider.is_some() && !xinshu && (id_card_column.is_some() || tax_no_column.is_some()) {
            t.issue(
                None,
                "id_card_column and tax_no_column are for provider xinshu only (仅用于信数)",
            );
        }
        let uscc_as_tax_no = t.flag("uscc_as_tax_no", false);
        if uscc_as_tax_no && provider.is_some() && !xinshu {
            t.issue(
                Some("uscc_as_tax_no"),
                "uscc_as_tax_no is for provider xinshu only (仅用于信数)",
            );
        }
        if uscc_as_tax_no && uscc_column.is_none() {
            t.issue(
                Some("uscc_as_tax_no"),
                "uscc_as_tax_no = true needs uscc_column (需要 uscc_column)",
            );
        }
        let search_by = t.choice("search_by", SearchBy::Auto);
        if search_by == SearchBy::Uscc && uscc_column.is_none() {
            t.issue(
                Some("search_by"),
                "search_by = \"uscc\" needs uscc_column (需要 uscc_column)",
            );
        }
        QueryJobConfig {
            name: name.unwrap_or_default(),
            provider: provider.unwrap_or(Provider::Shuidi),
            subjects: subjects.unwrap_or_default(),
            name_column,
            uscc_column,
            id_card_column,
            tax_no_column,
            uscc_as_tax_no,
            key_column,
            search_by,
            fresh_for: t.duration_or(
                "fresh_for",
                Duration::from_secs(30 * 86_400),
                ranges::FRESH_FOR,
            ),
            retries: t.number_or("retries", 2, (0, u32::MAX)),
            trigger: Trigger::read(t),
            enabled: t.flag("enabled", true),
            entry,
        }
    }
}

impl<'de> serde::Deserialize<'de> for QueryJobConfig {
    /// One `[[query]]` table alone (tests); a whole file goes through `Config::parse`.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::standalone(d, |t| QueryJobConfig::read(t, 0))
    }
}

/// Settings that work but cost the owner something they may not expect: `qianzhi check`
/// prints them without failing.
pub fn warnings(cfg: &Config) -> Vec<ConfigIssue> {
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
                at: None,
                path: format!("{p}.max_pages"),
                reason: format!(
                    "max_pages ({max_pages}) 大于 daily_budget ({budget})：页数多的主体最多要 {days} 天才能读完（已买的页保留，次日接着读），其间其他主体等待 / \
                     max_pages ({max_pages}) exceeds daily_budget ({budget}): a subject with that many pages takes up to {days} days \
                     (pages bought are kept and continued the next day) while the other subjects wait"
                ),
                fix: None,
            });
        }
    }
    out
}
