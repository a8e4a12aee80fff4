//! The one TOML file (plus `QIANZHI_*` environment overrides), its defaults, and `validate()`.

use anyhow::{Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::schema::Catalog;
use crate::timefmt::{duration_in, parse_duration};

/// The `[shuidi]`, `[qcc]`, `[xinshu]` sections and `[[query]]` jobs: part of the configuration,
/// so it lives here and `query` reads it (see ARCHITECTURE.md, "arrows point down").
pub mod query;

/// The documented ranges of the numeric and duration settings (README, config.toml.example).
/// `check` enforces them, so nothing at run time meets a value it cannot hold.
pub mod ranges {
    use std::time::Duration;
    const fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }
    pub const MAX_CONNECTIONS: (u32, u32) = (1, 100);
    pub const ACK_EVERY_CALLS: (usize, usize) = (1, 1000);
    pub const BATCH_SIZE: (usize, usize) = (1, 100_000);
    pub const RETRY_INITIAL: (Duration, Duration) = (Duration::from_millis(10), s(3600));
    pub const RETRY_MAX: (Duration, Duration) = (s(1), s(86_400));
    pub const HTTP_TIMEOUT: (Duration, Duration) = (s(1), s(3600));
    pub const SETTLE_LAG: (Duration, Duration) = (s(0), s(86_400));
    pub const INTERVAL: (Duration, Duration) = (s(1), s(31 * 86_400));
    pub const FRESH_FOR: (Duration, Duration) = (s(0), s(3650 * 86_400));
    pub const PAUSE_ON_110: (Duration, Duration) = (s(1), s(7 * 86_400));
    pub const MAX_PAGES: (u32, u32) = (1, 1000);
}

/// A duration setting outside its range, as a `(path, reason)` issue.
pub fn duration_issue(
    path: &str,
    value: &str,
    (min, max): (Duration, Duration),
) -> Option<(String, String)> {
    duration_in(value, min, max)
        .err()
        .map(|e| (path.to_string(), e))
}

/// A whole-number setting outside its range, as a `(path, reason)` issue.
pub fn number_issue<T: PartialOrd + std::fmt::Display>(
    path: &str,
    value: T,
    (min, max): (T, T),
) -> Option<(String, String)> {
    (value < min || value > max).then(|| {
        (
            path.to_string(),
            format!("{value} is out of range: use {min} to {max} (取值范围 {min} 至 {max})"),
        )
    })
}

/// A secret read from a file or the environment; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub database: DatabaseConfig,
    pub unit: UnitConfig,
    /// Extra or corrected schema files: `<schema_dir>/<platform>/<data_type>.toml`.
    pub schema_dir: Option<PathBuf>,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    pub gdzw: Option<GdzwConfig>,
    pub gansu: Option<GansuConfig>,
    #[serde(default, rename = "job")]
    pub jobs: Vec<JobConfig>,
    pub shuidi: Option<crate::config::query::ShuidiConfig>,
    pub qcc: Option<crate::config::query::QccConfig>,
    pub xinshu: Option<crate::config::query::XinshuConfig>,
    #[serde(default, rename = "query")]
    pub queries: Vec<crate::config::query::QueryJobConfig>,
    #[serde(default)]
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: String,
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

fn default_max_connections() -> u32 {
    5
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitConfig {
    /// 报送数据单位的统一社会信用代码: the first 18 characters of every Cd_Batch.
    pub uscc: String,
    pub name: String,
    /// 行政区划代码 (GB/T 2260), 6 or 12 digits.
    pub region_code: String,
    /// Default for SystemName (办理本笔业务的系统名称).
    pub system_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    pub retry_initial: String,
    pub retry_max: String,
    pub http_timeout: String,
    /// Acknowledged calls are recorded in one transaction per this many calls. After a
    /// crash, at most this many calls are sent again (same Cd_Batch, same bytes).
    pub ack_every_calls: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            retry_initial: "1s".into(),
            retry_max: "5m".into(),
            http_timeout: "30s".into(),
            ack_every_calls: 10,
        }
    }
}

impl DeliveryConfig {
    pub fn retry_initial(&self) -> Duration {
        parse_duration(&self.retry_initial).unwrap_or(Duration::from_secs(1))
    }
    pub fn retry_max(&self) -> Duration {
        parse_duration(&self.retry_max).unwrap_or(Duration::from_secs(300))
    }
    pub fn http_timeout(&self) -> Duration {
        parse_duration(&self.http_timeout).unwrap_or(Duration::from_secs(30))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NullFields {
    /// Leave the key out of the record.
    Omit,
    /// Send JSON null.
    Null,
    /// Send "" (what the spec's examples do for empty optional fields).
    Empty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LengthUnit {
    Chars,
    Bytes,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GdzwConfig {
    /// API_ROOT including scheme, e.g. http://127.0.0.1:8810/ebus/tysb-sjcj.
    pub api_root: String,
    #[serde(default = "default_paasid")]
    pub paasid: String,
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
    /// Allowed for trials only; `check` warns about it.
    pub token: Option<String>,
    /// The normative table says /uppro/; some examples say /upro/.
    #[serde(default = "default_path_prefix")]
    pub path_prefix: String,
    #[serde(default = "default_max_per_call")]
    pub max_records_per_call: usize,
    #[serde(default = "default_true")]
    pub reconciliation_upload: bool,
    /// Path under API_ROOT; default `<path_prefix>/reconciliation/batchSave`.
    pub reconciliation_path: Option<String>,
    #[serde(default)]
    pub reconciliation_tables: BTreeMap<String, String>,
    #[serde(default = "default_null_fields")]
    pub null_fields: NullFields,
    #[serde(default = "default_length_unit")]
    pub length_unit: LengthUnit,
    /// errCode values that mean "stop the job" rather than "this content was refused".
    #[serde(default)]
    pub fatal_err_codes: Vec<String>,
}

fn default_paasid() -> String {
    "tysb-sjcj".into()
}
fn default_path_prefix() -> String {
    "uppro".into()
}
fn default_max_per_call() -> usize {
    99
}
fn default_true() -> bool {
    true
}
fn default_null_fields() -> NullFields {
    NullFields::Omit
}
fn default_length_unit() -> LengthUnit {
    LengthUnit::Chars
}

impl GdzwConfig {
    pub fn reconciliation_path(&self) -> String {
        self.reconciliation_path
            .clone()
            .unwrap_or_else(|| format!("{}/reconciliation/batchSave", self.path_prefix))
    }
}

/// Where the Gansu ciphertext goes. The platform's helper is not public, so all three are
/// possible readings of "所有入参使用 pwd-crypt-1.1.1.jar 的 Util.SM4EncForCBC 加密".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Envelope {
    /// The whole JSON array is encrypted; the body is the ciphertext text.
    Body,
    /// Each value is encrypted in place; keys stay readable (the spec's reading: "所有入参").
    Values,
    /// The whole JSON array is encrypted into one field of a JSON object.
    Wrapper,
}

/// `[gansu]`: 甘肃省信用信息共享平台 submission. Defaults marked "Java helper" are those of the
/// widely copied `SM4EncForCBC` (ARCHITECTURE.md, "Reference facts"), since the platform's own
/// jar is not public.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GansuConfig {
    /// Everything before `/data/{L|P}/{resource id}`, e.g. http://host:10010/submit-server.
    pub base_url: String,
    /// The Authorization value issued at registration, from a file or the environment.
    pub authorization_file: Option<PathBuf>,
    pub authorization_env: Option<String>,
    pub key_file: Option<PathBuf>,
    pub key_env: Option<String>,
    /// Java helper: 32 hex digits.
    #[serde(default = "default_key_form")]
    pub key_form: crate::crypto::KeyForm,
    /// Java helper: the ASCII text "1111111111111111".
    #[serde(default = "default_gansu_iv")]
    pub iv: String,
    #[serde(default = "default_iv_form")]
    pub iv_form: crate::crypto::KeyForm,
    /// Java helper: 0x80 then zeros.
    #[serde(default = "default_gansu_padding")]
    pub padding: crate::crypto::Padding,
    /// Java helper: lowercase hex.
    #[serde(default = "default_gansu_encoding")]
    pub encoding: crate::crypto::TextEncoding,
    #[serde(default = "default_envelope")]
    pub envelope: Envelope,
    /// The field that holds the ciphertext when envelope = "wrapper".
    #[serde(default = "default_wrapper_field")]
    pub wrapper_field: String,
    /// Path segment for 法人 data types.
    #[serde(default = "default_legal_segment")]
    pub legal_segment: String,
    /// Path segment for 自然人 data types.
    #[serde(default = "default_natural_segment")]
    pub natural_segment: String,
    /// The spec: "接口上报条数限制，500条/单次".
    #[serde(default = "default_gansu_max_per_call")]
    pub max_records_per_call: usize,
    /// The spec's request format prints every key, empty optional ones as "".
    #[serde(default = "default_gansu_null_fields")]
    pub null_fields: NullFields,
    /// Data type -> resource id, overriding the schema file's `resource_id`.
    #[serde(default)]
    pub resources: BTreeMap<String, String>,
    /// Data type -> L or P, overriding the schema file's `subject`.
    #[serde(default)]
    pub subjects: BTreeMap<String, crate::schema::Subject>,
    /// Answer `code`s that mean "stop the job" (bad Authorization) rather than "refused".
    #[serde(default = "default_gansu_fatal_codes")]
    pub fatal_codes: Vec<i64>,
    /// Answer `code`s that mean "try the same call again later".
    #[serde(default = "default_gansu_retry_codes")]
    pub retry_codes: Vec<i64>,
}

fn default_key_form() -> crate::crypto::KeyForm {
    crate::crypto::KeyForm::Hex
}
fn default_gansu_iv() -> String {
    "1111111111111111".into()
}
fn default_iv_form() -> crate::crypto::KeyForm {
    crate::crypto::KeyForm::Utf8
}
fn default_gansu_padding() -> crate::crypto::Padding {
    crate::crypto::Padding::Iso7816
}
fn default_gansu_encoding() -> crate::crypto::TextEncoding {
    crate::crypto::TextEncoding::Hex
}
fn default_envelope() -> Envelope {
    Envelope::Values
}
fn default_wrapper_field() -> String {
    "data".into()
}
fn default_legal_segment() -> String {
    "L".into()
}
fn default_natural_segment() -> String {
    "P".into()
}
fn default_gansu_max_per_call() -> usize {
    500
}
fn default_gansu_null_fields() -> NullFields {
    NullFields::Empty
}
fn default_gansu_fatal_codes() -> Vec<i64> {
    vec![401, 403]
}
fn default_gansu_retry_codes() -> Vec<i64> {
    vec![500, 502, 503, 504]
}

impl GansuConfig {
    /// The resource id and path segment of a data type: configured, else the schema's.
    pub fn route(&self, dt: &crate::schema::DataType) -> Option<(String, String)> {
        let resource = self
            .resources
            .get(&dt.data_type)
            .cloned()
            .or_else(|| dt.resource_id.clone())?;
        let segment = match self.subjects.get(&dt.data_type).copied().or(dt.subject)? {
            crate::schema::Subject::L => self.legal_segment.clone(),
            crate::schema::Subject::P => self.natural_segment.clone(),
        };
        Some((segment, resource))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Changelog,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    pub name: String,
    #[serde(default = "default_upstream")]
    pub upstream: String,
    pub data_type: String,
    #[serde(default = "default_mode")]
    pub mode: Mode,
    /// Table or view, optionally schema-qualified.
    pub source: String,
    pub key: Vec<String>,
    #[serde(default = "default_time_column")]
    pub time_column: String,
    #[serde(default = "default_operation_column")]
    pub operation_column: String,
    /// A unique, increasing column of the change table (change id). When set, rows are read
    /// in (time_column, seq_column) order, so several changes of one key in the same second
    /// are all taken; otherwise (time_column, key) must be unique.
    pub seq_column: Option<String>,
    #[serde(default = "default_settle_lag")]
    pub settle_lag: String,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// 6-field cron (sec min hour day month weekday) in Beijing time.
    pub schedule: Option<String>,
    pub interval: Option<String>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Field code -> source column, where the view does not already use the field code.
    #[serde(default)]
    pub map: BTreeMap<String, String>,
    #[serde(default)]
    pub constants: BTreeMap<String, toml::Value>,
}

fn default_upstream() -> String {
    "gdzw".into()
}
fn default_mode() -> Mode {
    Mode::Changelog
}
fn default_time_column() -> String {
    "cd_time".into()
}
fn default_operation_column() -> String {
    "cd_operation".into()
}
fn default_settle_lag() -> String {
    "10s".into()
}
fn default_batch_size() -> usize {
    1000
}

impl JobConfig {
    /// Columns after the change time that make the read order unique.
    pub fn order_columns(&self) -> Vec<String> {
        match &self.seq_column {
            Some(c) => vec![c.clone()],
            None => self.key.clone(),
        }
    }
    pub fn settle_lag(&self) -> Duration {
        parse_duration(&self.settle_lag).unwrap_or(Duration::from_secs(10))
    }
    pub fn interval(&self) -> Option<Duration> {
        self.interval
            .as_deref()
            .and_then(|s| parse_duration(s).ok())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// tracing filter, e.g. "info" or "qianzhi=debug".
    pub level: String,
    /// "text" or "json".
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

/// One problem found in the configuration: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub path: String,
    pub reason: String,
}

impl std::fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// Read the TOML file and lay `QIANZHI_SECTION__KEY=value` variables over it.
pub fn load(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let vars: Vec<(String, String)> = std::env::vars().collect();
    parse_with_env(&text, &vars).with_context(|| format!("in {}", path.display()))
}

pub fn parse_with_env(text: &str, vars: &[(String, String)]) -> Result<Config> {
    let mut doc: toml::Table =
        toml::from_str(text).map_err(|e| anyhow::anyhow!(syntax_error(text, &e)))?;
    for (k, v) in vars {
        let Some(rest) = k.strip_prefix("QIANZHI_") else {
            continue;
        };
        if !rest.contains("__") {
            continue; // QIANZHI_CONFIG and friends are CLI variables, not overrides
        }
        let parts: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        set_path(&mut doc, &parts, v);
    }
    let cfg: Config = toml::Value::Table(doc)
        .try_into()
        .map_err(|e: toml::de::Error| anyhow::anyhow!(type_error(&e)))?;
    Ok(cfg)
}

/// A TOML syntax error, named by line and column. toml's own rendering quotes the offending
/// line, and `ExecStartPre=qianzhi check` sends it to the journal: an unquoted
/// `token = abc123` would land there. So the line is quoted only when it plainly cannot hold
/// a secret: a `key = value` or `[table]` line with no secret-looking word, outside any
/// multi-line string. toml's own messages name the grammar, never the text.
fn syntax_error(text: &str, e: &toml::de::Error) -> String {
    let Some(span) = e.span() else {
        return e.message().replace('\n', "; ");
    };
    let start = span.start.min(text.len());
    let end = span.end.clamp(start, text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_no = text[..start].matches('\n').count() + 1;
    let column = text[line_start..start].chars().count() + 1;
    let line_end = text[end..].find('\n').map_or(text.len(), |i| end + i);
    let lines = &text[line_start..line_end];
    // An odd number of triple quotes before the error: it is inside a multi-line string.
    let in_multiline_string =
        (text[..start].matches("\"\"\"").count() + text[..start].matches("'''").count()) % 2 == 1;
    let plain_setting = lines.lines().all(|l| {
        let l = l.trim_start();
        l.starts_with('[') || l.contains('=')
    });
    if !in_multiline_string && plain_setting && !crate::mask::is_secret_key(lines) {
        return e.to_string();
    }
    format!(
        "TOML 语法错误 syntax error at line {line_no}, column {column} (第 {line_no} 行第 {column} 列): {}; \
         该行可能含有口令或令牌，不予显示 line not shown: it may hold a secret",
        e.message().replace('\n', "; ")
    )
}

/// A value of the wrong type (`token = 12345`, or a number given by an environment variable)
/// is quoted by serde; under a secret-looking key every quoted part goes.
fn type_error(e: &toml::de::Error) -> String {
    let full = e.to_string();
    let path = full
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("in `")?.strip_suffix('`'));
    if !path.is_some_and(crate::mask::is_secret_key) {
        return full;
    }
    let mut out = String::with_capacity(full.len());
    let mut rest = e.message();
    while let Some(i) = rest.find(['`', '"']) {
        let q = rest[i..].chars().next().unwrap_or('`');
        out.push_str(&rest[..i]);
        match rest[i + 1..].find(q) {
            Some(j) => {
                out.push_str("***");
                rest = &rest[i + 1 + j + 1..];
            }
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    format!(
        "{out} (value not shown 值不显示)\nin `{}`",
        path.unwrap_or_default()
    )
}

fn set_path(doc: &mut toml::Table, parts: &[String], raw: &str) {
    let (last, parents) = parts.split_last().expect("non-empty");
    let mut t = doc;
    for p in parents {
        let entry = t
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(Default::default()));
        let toml::Value::Table(next) = entry else {
            return;
        };
        t = next;
    }
    // The file's value decides the type (region_code "440300" stays text); a key the file
    // does not set is read as a number or boolean when it looks like one, except a
    // secret-looking key: a numeric token read as a number would fail to load, quoted.
    let as_string = matches!(t.get(last.as_str()), Some(toml::Value::String(_)))
        || crate::mask::is_secret_key(last);
    let v = if as_string {
        toml::Value::String(raw.to_string())
    } else {
        raw.parse::<i64>()
            .map(toml::Value::Integer)
            .or_else(|_| raw.parse::<bool>().map(toml::Value::Boolean))
            .unwrap_or_else(|_| toml::Value::String(raw.to_string()))
    };
    t.insert(last.clone(), v);
}

/// The one check a job and a query job share: exactly one of schedule (6-field cron) or
/// interval, and it parses. Returns the key path and the reason.
pub fn schedule_issue(
    p: &str,
    schedule: &Option<String>,
    interval: &Option<String>,
) -> Option<(String, String)> {
    match (schedule, interval) {
        (Some(_), Some(_)) => Some((p.to_string(), "set schedule or interval, not both".into())),
        (None, None) => Some((
            p.to_string(),
            "set schedule (6-field cron, Beijing time) or interval".into(),
        )),
        (Some(s), None) => crate::daemon::cron_issue(s).map(|e| {
            (
                format!("{p}.schedule"),
                format!("'{s}' is not a 6-field cron (sec min hour day month weekday): {e}"),
            )
        }),
        (None, Some(s)) => duration_issue(&format!("{p}.interval"), s, ranges::INTERVAL),
    }
}

fn ident_ok(s: &str) -> bool {
    let part_ok = |p: &str| {
        let mut c = p.chars();
        matches!(c.next(), Some(ch) if ch.is_alphabetic() || ch == '_')
            && c.all(|ch| ch.is_alphanumeric() || ch == '_' || ch == '$')
    };
    !s.is_empty() && s.split('.').count() <= 2 && s.split('.').all(part_ok)
}

impl Config {
    /// Every problem at once, so a DBA fixes the file in one pass.
    pub fn validate(&self, catalog: &Catalog) -> Vec<ConfigIssue> {
        let mut out = Vec::new();
        let mut bad = |path: String, reason: String| out.push(ConfigIssue { path, reason });

        let url = &self.database.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.starts_with("mysql://")
            || url.starts_with("mariadb://"))
        {
            bad(
                "database.url".into(),
                "must start with sqlite:, postgres:// or mysql://".into(),
            );
        }
        if let Err(e) = crate::checkdigit::uscc(&self.unit.uscc) {
            bad(
                "unit.uscc".into(),
                format!("'{}' is not a valid 统一社会信用代码: {e}", self.unit.uscc),
            );
        }
        let rc = &self.unit.region_code;
        if !((rc.len() == 6 || rc.len() == 12) && rc.chars().all(|c| c.is_ascii_digit())) {
            bad(
                "unit.region_code".into(),
                format!("'{rc}' must be 6 or 12 digits (GB/T 2260)"),
            );
        }
        if self.unit.name.trim().is_empty() {
            bad("unit.name".into(), "must not be empty".into());
        }
        let d = &self.delivery;
        let numbers = [
            number_issue(
                "database.max_connections",
                self.database.max_connections,
                ranges::MAX_CONNECTIONS,
            ),
            number_issue(
                "delivery.ack_every_calls",
                d.ack_every_calls,
                ranges::ACK_EVERY_CALLS,
            ),
            duration_issue(
                "delivery.retry_initial",
                &d.retry_initial,
                ranges::RETRY_INITIAL,
            ),
            duration_issue("delivery.retry_max", &d.retry_max, ranges::RETRY_MAX),
            duration_issue(
                "delivery.http_timeout",
                &d.http_timeout,
                ranges::HTTP_TIMEOUT,
            ),
        ];
        for (path, reason) in numbers.into_iter().flatten() {
            bad(path, reason);
        }
        if let (Ok(a), Ok(b)) = (
            parse_duration(&d.retry_initial),
            parse_duration(&d.retry_max),
        ) && a > b
        {
            bad(
                "delivery.retry_initial".into(),
                "must not be longer than delivery.retry_max (不能大于 retry_max)".into(),
            );
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            bad("log.format".into(), "must be \"text\" or \"json\"".into());
        }
        if let Some(g) = &self.gdzw {
            if !(g.api_root.starts_with("http://") || g.api_root.starts_with("https://")) {
                bad(
                    "gdzw.api_root".into(),
                    "must start with http:// or https://".into(),
                );
            }
            if g.token_file.is_none() && g.token_env.is_none() && g.token.is_none() {
                bad(
                    "gdzw".into(),
                    "set token_file or token_env (the gateway token)".into(),
                );
            }
            if g.max_records_per_call == 0 || g.max_records_per_call >= 100 {
                bad(
                    "gdzw.max_records_per_call".into(),
                    "must be 1..=99: the spec requires fewer than 100 records per batch call"
                        .into(),
                );
            }
            for t in g.reconciliation_tables.keys() {
                if catalog.data_type("gdzw", t).is_none() {
                    bad(
                        format!("gdzw.reconciliation_tables.{t}"),
                        "no such data type".into(),
                    );
                }
            }
        }
        if let Some(g) = &self.gansu {
            validate_gansu(g, catalog, &mut bad);
        }
        let mut names = std::collections::HashSet::new();
        for (i, j) in self.jobs.iter().enumerate() {
            let p = format!("job[{i}] ({})", j.name);
            if j.name.is_empty()
                || !j
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                bad(
                    format!("{p}.name"),
                    "use letters, digits, _ and - only".into(),
                );
            }
            if !names.insert(j.name.clone()) {
                bad(format!("{p}.name"), "another job has the same name".into());
            }
            match j.upstream.as_str() {
                "gdzw" if self.gdzw.is_none() => bad(
                    format!("{p}.upstream"),
                    "upstream gdzw needs a [gdzw] section".into(),
                ),
                "gdzw" => {}
                "gansu" if self.gansu.is_none() => bad(
                    format!("{p}.upstream"),
                    "upstream gansu needs a [gansu] section".into(),
                ),
                "gansu" => {
                    if let (Some(g), Some(dt)) =
                        (&self.gansu, catalog.data_type("gansu", &j.data_type))
                        && g.route(dt).is_none()
                    {
                        bad(
                            format!("{p}.data_type"),
                            format!(
                                "{} has no resource_id or subject: set them in its schema file or in [gansu] resources / subjects",
                                j.data_type
                            ),
                        );
                    }
                }
                other => bad(
                    format!("{p}.upstream"),
                    format!("unknown upstream '{other}' (known: gdzw, gansu)"),
                ),
            }
            let dt = catalog.data_type(&j.upstream, &j.data_type);
            if dt.is_none() {
                let known: Vec<_> = catalog
                    .platform(&j.upstream)
                    .map(|p| p.data_types.keys().cloned().collect())
                    .unwrap_or_default();
                bad(
                    format!("{p}.data_type"),
                    format!(
                        "unknown data type '{}' (known: {})",
                        j.data_type,
                        known.join(", ")
                    ),
                );
            }
            if !ident_ok(&j.source) {
                bad(
                    format!("{p}.source"),
                    format!("'{}' is not a table or view name", j.source),
                );
            }
            if j.key.is_empty() {
                bad(format!("{p}.key"), "name at least one key column".into());
            }
            for c in j
                .key
                .iter()
                .chain([&j.time_column, &j.operation_column])
                .chain(j.seq_column.iter())
                .chain(j.map.values())
            {
                if !ident_ok(c) || c.contains('.') {
                    bad(p.to_string(), format!("'{c}' is not a column name"));
                }
            }
            let numbers = [
                duration_issue(
                    &format!("{p}.settle_lag"),
                    &j.settle_lag,
                    ranges::SETTLE_LAG,
                ),
                number_issue(&format!("{p}.batch_size"), j.batch_size, ranges::BATCH_SIZE),
            ];
            for (path, reason) in numbers.into_iter().flatten() {
                bad(path, reason);
            }
            if let Some((path, reason)) =
                crate::config::schedule_issue(&p, &j.schedule, &j.interval)
            {
                bad(path, reason);
            }
            if let Some(dt) = dt {
                for f in j.map.keys().chain(j.constants.keys()) {
                    if dt.field(f).is_none() {
                        bad(
                            p.to_string(),
                            format!("field '{f}' is not a field of {}", j.data_type),
                        );
                    }
                    if crate::schema::PIPELINE_FIELDS.contains(&f.as_str()) {
                        bad(
                            p.to_string(),
                            format!("field '{f}' is set by qianzhi and cannot be mapped"),
                        );
                    }
                }
            }
        }
        crate::config::query::validate(self, &mut out);
        out
    }
}

fn validate_gansu(g: &GansuConfig, catalog: &Catalog, bad: &mut impl FnMut(String, String)) {
    if !(g.base_url.starts_with("http://") || g.base_url.starts_with("https://")) {
        bad(
            "gansu.base_url".into(),
            "must start with http:// or https://".into(),
        );
    }
    if g.authorization_file.is_none() && g.authorization_env.is_none() {
        bad(
            "gansu".into(),
            "set authorization_file or authorization_env (the Authorization issued at registration)"
                .into(),
        );
    }
    if g.key_file.is_none() && g.key_env.is_none() {
        bad(
            "gansu".into(),
            "set key_file or key_env (the SM4 key)".into(),
        );
    }
    // The IV is not secret (the Java helper's is a constant), so its error may be precise.
    if let Err(e) = crate::crypto::parse_key(&g.iv, g.iv_form) {
        bad("gansu.iv".into(), e.to_string());
    }
    if g.max_records_per_call == 0 || g.max_records_per_call > 500 {
        bad(
            "gansu.max_records_per_call".into(),
            "must be 1..=500: the platform takes at most 500 records per call".into(),
        );
    }
    for (k, v) in [
        ("gansu.legal_segment", &g.legal_segment),
        ("gansu.natural_segment", &g.natural_segment),
    ] {
        if v.is_empty()
            || !v
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            bad(k.into(), "use letters, digits, _ and - only".into());
        }
    }
    if g.envelope == Envelope::Wrapper && g.wrapper_field.trim().is_empty() {
        bad(
            "gansu.wrapper_field".into(),
            "envelope = \"wrapper\" needs a field name".into(),
        );
    }
    for (t, r) in &g.resources {
        if catalog.data_type("gansu", t).is_none() {
            bad(format!("gansu.resources.{t}"), "no such data type".into());
        }
        if r.is_empty() || !r.chars().all(|c| c.is_ascii_alphanumeric()) {
            bad(
                format!("gansu.resources.{t}"),
                "a resource id is letters and digits".into(),
            );
        }
    }
    for t in g.subjects.keys() {
        if catalog.data_type("gansu", t).is_none() {
            bad(format!("gansu.subjects.{t}"), "no such data type".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[database]
url = "sqlite://x.db"
[unit]
uscc = "11620000MB199916XB"
name = "某局"
region_code = "440100"
[gdzw]
api_root = "http://127.0.0.1:1/ebus/tysb-sjcj"
token_env = "T"
[[job]]
name = "accept"
data_type = "accept"
source = "accept_changes"
key = ["id"]
interval = "30s"
[job.map]
ApplyerName = "applicant"
"#;

    #[test]
    fn good_config_has_no_issues() {
        let cat = Catalog::load(None).unwrap();
        let cfg = parse_with_env(GOOD, &[]).unwrap();
        assert_eq!(cfg.validate(&cat), vec![]);
        assert_eq!(cfg.jobs[0].map["ApplyerName"], "applicant");
        assert_eq!(cfg.gdzw.as_ref().unwrap().max_records_per_call, 99);
    }

    #[test]
    fn env_overrides_file() {
        let vars = vec![
            (
                "QIANZHI_DATABASE__URL".to_string(),
                "postgres://h/db".to_string(),
            ),
            (
                "QIANZHI_GDZW__MAX_RECORDS_PER_CALL".to_string(),
                "50".to_string(),
            ),
            ("QIANZHI_CONFIG".to_string(), "/etc/x.toml".to_string()),
            (
                "QIANZHI_UNIT__REGION_CODE".to_string(),
                "440300".to_string(),
            ),
        ];
        let cfg = parse_with_env(GOOD, &vars).unwrap();
        assert_eq!(cfg.database.url, "postgres://h/db");
        assert_eq!(
            cfg.unit.region_code, "440300",
            "digits stay text where the file has text"
        );
        assert_eq!(cfg.gdzw.unwrap().max_records_per_call, 50);
    }

    #[test]
    fn all_issues_reported_at_once() {
        let cat = Catalog::load(None).unwrap();
        let text = GOOD
            .replace("11620000MB199916XB", "11620000MB199916XA")
            .replace("440100", "44")
            .replace("interval = \"30s\"", "schedule = \"every day\"")
            .replace("ApplyerName", "NoSuchField")
            .replace("accept_changes", "x; drop table y");
        let cfg = parse_with_env(&text, &[]).unwrap();
        let issues = cfg.validate(&cat);
        let paths: Vec<_> = issues.iter().map(|i| i.to_string()).collect();
        let joined = paths.join("\n");
        for want in [
            "unit.uscc",
            "unit.region_code",
            ".schedule",
            "NoSuchField",
            ".source",
        ] {
            assert!(joined.contains(want), "missing {want} in\n{joined}");
        }
    }

    #[test]
    fn out_of_range_values_are_issues_not_panics() {
        let cat = Catalog::load(None).unwrap();
        let text = GOOD
            .replace(
                "url = \"sqlite://x.db\"",
                "url = \"sqlite://x.db\"\nmax_connections = 4294967295",
            )
            .replace(
                "[gdzw]",
                "[delivery]\nhttp_timeout = \"0s\"\nretry_initial = \"99999999999999999999d\"\nretry_max = \"99999999999999999999999\"\nack_every_calls = 0\n[gdzw]",
            )
            .replace(
                "interval = \"30s\"",
                "interval = \"99999999999999999999d\"\nsettle_lag = \"400000d\"\nbatch_size = 0",
            );
        let cfg = parse_with_env(&text, &[]).unwrap();
        let issues: Vec<String> = cfg.validate(&cat).iter().map(|i| i.to_string()).collect();
        let joined = issues.join("\n");
        for want in [
            "database.max_connections: 4294967295 is out of range: use 1 to 100",
            "delivery.http_timeout: '0s' is out of range: use 1s to 1h",
            "delivery.retry_initial: '99999999999999999999d' is too long",
            "delivery.retry_max: '99999999999999999999999' is too long",
            "delivery.ack_every_calls: 0 is out of range",
            ".interval: '99999999999999999999d' is too long",
            ".settle_lag: '400000d' is too long",
            ".batch_size: 0 is out of range",
        ] {
            assert!(joined.contains(want), "missing {want} in\n{joined}");
        }
        let zero = GOOD.replace(
            "url = \"sqlite://x.db\"",
            "url = \"sqlite://x.db\"\nmax_connections = 0",
        );
        let issues = parse_with_env(&zero, &[]).unwrap().validate(&cat);
        assert!(
            issues.iter().any(|i| i.path == "database.max_connections"),
            "{issues:?}"
        );
    }

    const GANSU: &str = r#"
[gansu]
base_url = "http://127.0.0.1:1/submit-server"
authorization_env = "A"
key_env = "K"
[[job]]
name = "jjl"
upstream = "gansu"
data_type = "cclw_jjl"
source = "jjl_changes"
key = ["id"]
interval = "30s"
"#;

    #[test]
    fn gansu_defaults_are_the_java_helpers() {
        let cat = Catalog::load(None).unwrap();
        let cfg = parse_with_env(&format!("{GOOD}{GANSU}"), &[]).unwrap();
        assert_eq!(cfg.validate(&cat), vec![]);
        let g = cfg.gansu.as_ref().unwrap();
        assert_eq!(g.iv, "1111111111111111");
        assert_eq!(g.iv_form, crate::crypto::KeyForm::Utf8);
        assert_eq!(g.key_form, crate::crypto::KeyForm::Hex);
        assert_eq!(g.padding, crate::crypto::Padding::Iso7816);
        assert_eq!(g.encoding, crate::crypto::TextEncoding::Hex);
        assert_eq!(g.envelope, Envelope::Values);
        assert_eq!(g.max_records_per_call, 500);
        let dt = cat.data_type("gansu", "cclw_jjl").unwrap();
        assert_eq!(g.route(dt), Some(("L".into(), "00041759".into())));
    }

    #[test]
    fn gansu_issues() {
        let cat = Catalog::load(None).unwrap();
        let text = format!("{GOOD}{GANSU}")
            .replace("authorization_env = \"A\"\n", "")
            .replace("http://127.0.0.1:1/submit-server", "127.0.0.1")
            .replace("key_env = \"K\"", "key_env = \"K\"\niv = \"0011\"\nmax_records_per_call = 501\nenvelope = \"wrapper\"\nwrapper_field = \"\"\nlegal_segment = \"L/x\"\n[gansu.resources]\nnope = \"1\"");
        let cfg = parse_with_env(&text, &[]).unwrap();
        let joined: Vec<String> = cfg.validate(&cat).iter().map(|i| i.to_string()).collect();
        let joined = joined.join("\n");
        for want in [
            "gansu.base_url",
            "authorization_file or authorization_env",
            "gansu.iv",
            "gansu.max_records_per_call",
            "gansu.wrapper_field",
            "gansu.legal_segment",
            "gansu.resources.nope",
        ] {
            assert!(joined.contains(want), "missing {want} in\n{joined}");
        }
        let no_section = parse_with_env(
            &format!("{GOOD}{}", &GANSU[GANSU.find("[[job]]").unwrap()..]),
            &[],
        )
        .unwrap();
        let issues: Vec<String> = no_section
            .validate(&cat)
            .iter()
            .map(|i| i.to_string())
            .collect();
        assert!(
            issues.iter().any(|i| i.contains("needs a [gansu] section")),
            "{issues:?}"
        );
    }

    #[test]
    fn syntax_errors_never_quote_a_line_that_may_hold_a_secret() {
        // (config text, text the error must name, secret it must not contain)
        let hidden: [(&str, &str, &str); 7] = [
            (
                "[gdzw]\ntoken = abc123secret\n",
                "line 2, column 9",
                "abc123secret",
            ),
            (
                "[database]\nurl = postgres://u:hunter2@h/db\n",
                "line 2, column 7",
                "hunter2",
            ),
            (
                "[gansu]\nAuthorization = Bearer hunter2\n",
                "line 2",
                "hunter2",
            ),
            (
                "[x]\na = { password = hunter2 }\n",
                "line 2, column 18",
                "hunter2",
            ),
            ("[x]\nsecret_key = hunter2 x\n", "line 2", "hunter2"),
            // Inside a multi-line string: the line has no key of its own.
            (
                "[unit]\nname = \"\"\"\nabc\\q hunter2\n\"\"\"\n",
                "line 3, column 5",
                "hunter2",
            ),
            // The continuation of an array.
            ("[x]\nlist = [\n  hunter2 ]\n", "line 3", "hunter2"),
        ];
        for (text, names, secret) in hidden {
            let e = format!("{:#}", parse_with_env(text, &[]).unwrap_err());
            assert!(e.contains(names), "{text:?}: {e}");
            assert!(!e.contains(secret), "{text:?}: {e}");
            assert!(e.contains("line not shown"), "{text:?}: {e}");
        }
        // A harmless line is still shown as toml renders it.
        let e = format!(
            "{:#}",
            parse_with_env("[unit]\nname = x y\n", &[]).unwrap_err()
        );
        assert!(
            e.contains("line 2, column 8") && e.contains("name = x y"),
            "{e}"
        );
    }

    #[test]
    fn type_errors_hide_values_of_secret_keys() {
        let text = GOOD.replace("token_env = \"T\"", "token = 90817263");
        let e = format!("{:#}", parse_with_env(&text, &[]).unwrap_err());
        assert!(e.contains("gdzw.token") && !e.contains("90817263"), "{e}");
        // Elsewhere the value stays, to help find the mistake.
        let text = format!("{GOOD}[delivery]\nhttp_timeout = 30\n");
        let e = format!("{:#}", parse_with_env(&text, &[]).unwrap_err());
        assert!(e.contains("30"), "{e}");
    }

    #[test]
    fn numeric_secret_from_environment_stays_text() {
        let vars = vec![("QIANZHI_GDZW__TOKEN".to_string(), "90817263".to_string())];
        let cfg = parse_with_env(GOOD, &vars).unwrap();
        assert_eq!(cfg.gdzw.unwrap().token.as_deref(), Some("90817263"));
    }

    #[test]
    fn secret_is_not_printed() {
        let s = Secret::new("tok-123");
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }
}
