//! The configuration: one TOML file with `QIANZHI_*` environment overrides (`source`), read
//! into typed settings (`Duration`s, parsed cron schedules, enums, secrets read once) by one
//! pass that collects every problem (`read`). What only the schema catalog can tell is
//! checked by [`Config::validate`].
//!
//! Parse, don't validate: a [`Config`] exists only when nothing is wrong with it, so nothing
//! at run time meets a value it cannot hold.

pub mod catalog;
pub mod job;
pub mod platform;
pub mod query;
pub mod read;
pub mod secret;
pub mod source;

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use job::{CronSchedule, JobConfig, Mode, ReadOrder, Trigger, UpstreamKind};
pub use platform::{Envelope, GansuConfig, GdzwConfig, LengthUnit, NullFields};
pub use query::Provider;
pub use secret::{Credential, SecretFrom};

use read::{Ctx, Table};
use source::Origins;

/// The documented ranges of the numeric and duration settings (README, config.toml.example).
/// Reading enforces them, so nothing at run time meets a value it cannot hold.
pub mod ranges {
    use std::time::Duration;
    const fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }
    pub const MAX_CONNECTIONS: (u32, u32) = (1, 100);
    pub const ACK_EVERY_CALLS: (usize, usize) = (1, 1000);
    pub const MAX_IN_FLIGHT: (usize, usize) = (1, 32);
    pub const BATCH_SIZE: (usize, usize) = (1, 100_000);
    pub const RETRY_INITIAL: (Duration, Duration) = (Duration::from_millis(10), s(3600));
    pub const RETRY_MAX: (Duration, Duration) = (s(1), s(86_400));
    pub const HTTP_TIMEOUT: (Duration, Duration) = (s(1), s(3600));
    pub const SETTLE_LAG: (Duration, Duration) = (s(0), s(86_400));
    pub const INTERVAL: (Duration, Duration) = (s(1), s(31 * 86_400));
    pub const FRESH_FOR: (Duration, Duration) = (s(0), s(3650 * 86_400));
    pub const PAUSE_ON_110: (Duration, Duration) = (s(1), s(7 * 86_400));
    pub const MAX_PAGES: (u32, u32) = (1, 1000);
    pub const LEASE_TTL: (Duration, Duration) = (s(2), s(3600));
    /// Also below half of `lease.ttl` (checked with it).
    pub const LEASE_RENEW_INTERVAL: (Duration, Duration) = (Duration::from_millis(500), s(1800));
}

/// One problem found in the configuration: where, which key, why, and what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// `file:line:column`, or the environment variable that set the value.
    pub at: Option<String>,
    /// The key path as the file spells it: `delivery.retry_max`, `job[0] (accept).schedule`.
    pub path: String,
    pub reason: String,
    /// What to change, where the reason does not already say it.
    pub fix: Option<String>,
}

impl std::fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(at) = &self.at {
            write!(f, "{at}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.reason)?;
        if let Some(fix) = &self.fix {
            write!(f, " → {fix}")?;
        }
        Ok(())
    }
}

/// Every problem of a configuration, listed one per line.
#[derive(Debug)]
pub struct ConfigIssues(pub Vec<ConfigIssue>);

impl std::fmt::Display for ConfigIssues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "配置有 {n} 个问题 the configuration has {n} problem(s):",
            n = self.0.len()
        )?;
        for i in &self.0 {
            write!(f, "\n  - {i}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigIssues {}

#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseConfig,
    pub unit: UnitConfig,
    /// Extra or corrected schema files: `<schema_dir>/<platform>/<data_type>.toml`.
    pub schema_dir: Option<PathBuf>,
    pub delivery: DeliveryConfig,
    pub lease: LeaseConfig,
    pub gdzw: Option<GdzwConfig>,
    pub gansu: Option<GansuConfig>,
    pub jobs: Vec<JobConfig>,
    pub shuidi: Option<query::ShuidiConfig>,
    pub qcc: Option<query::QccConfig>,
    pub xinshu: Option<query::XinshuConfig>,
    pub queries: Vec<query::QueryJobConfig>,
    pub log: LogConfig,
    /// `[http]`: the metrics and health endpoint of `qianzhi run`.
    pub http: HttpConfig,
    /// Where each key was written, to locate what [`Config::validate`] finds.
    origins: Arc<Origins>,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: String,
    pub max_connections: u32,
    /// `database.dialect`: the SQL an `odbc:` URL speaks; `None` elsewhere, and for an
    /// `odbc:` URL without it (then the driver's DBMS name decides, see `db::odbc`).
    pub dialect: Option<Dialect>,
    /// `database.odbc_packed_rows`: PostgreSQL through psqlODBC sends each source row as one
    /// text value, `ROW(...)::text`, split by qianzhi (`db::odbc_pool::packed`); true by
    /// default, read only with `dialect = "postgres"` over ODBC.
    pub odbc_packed_rows: bool,
}

/// The SQL dialect behind an ODBC data source (`database.dialect`). KingbaseES and openGauss
/// (GaussDB) speak PostgreSQL's SQL; DM (达梦) speaks Oracle's (VARCHAR2, CLOB, NUMBER,
/// `FETCH FIRST n ROWS ONLY`, MERGE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    Dm,
    Kingbase,
    Opengauss,
    Oracle,
    Postgres,
    Mysql,
}

impl Dialect {
    pub const ALL: [Dialect; 6] = [
        Dialect::Dm,
        Dialect::Kingbase,
        Dialect::Opengauss,
        Dialect::Oracle,
        Dialect::Postgres,
        Dialect::Mysql,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Dialect::Dm => "dm",
            Dialect::Kingbase => "kingbase",
            Dialect::Opengauss => "opengauss",
            Dialect::Oracle => "oracle",
            Dialect::Postgres => "postgres",
            Dialect::Mysql => "mysql",
        }
    }

    pub fn from_name(name: &str) -> Option<Dialect> {
        Dialect::ALL.into_iter().find(|d| d.name() == name)
    }
}

/// The scheme of the ODBC backend: `odbc:<DSN name>` or `odbc:<connection string>`.
pub const ODBC_SCHEME: &str = "odbc:";

#[derive(Debug, Clone)]
pub struct UnitConfig {
    /// 报送数据单位的统一社会信用代码: the first 18 characters of every Cd_Batch.
    pub uscc: String,
    pub name: String,
    /// 行政区划代码 (GB/T 2260), 6 or 12 digits.
    pub region_code: String,
    /// Default for SystemName (办理本笔业务的系统名称).
    pub system_name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub http_timeout: Duration,
    /// Acknowledged calls are recorded in one transaction per this many calls. After a
    /// crash, at most this many calls are sent again (same Cd_Batch, same bytes).
    pub ack_every_calls: usize,
    /// At most this many calls of one job wait for their answers at once (over keep-alive
    /// connections), across the job's consecutive batches. Two changes of one RowGuid are
    /// never among them (see `pipeline::deliver`).
    pub max_in_flight: usize,
}

impl DeliveryConfig {
    pub fn retry_initial(&self) -> Duration {
        self.retry_initial
    }
    pub fn retry_max(&self) -> Duration {
        self.retry_max
    }
    pub fn http_timeout(&self) -> Duration {
        self.http_timeout
    }
}

/// `[lease]`: how long a job's lease lasts without renewal, and how often its holder renews it
/// (README: 多进程与租约 / several processes and leases).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    /// A holder that stops renewing (killed, paused, cut off) loses its jobs this long after
    /// its last renewal; a `run` process whose heartbeat is this old counts as gone.
    pub ttl: Duration,
    /// Leases and the heartbeat are renewed this often; a holder that could not renew for
    /// `ttl - renew_interval` stops sending before its lease can expire.
    pub renew_interval: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            ttl: Duration::from_secs(30),
            renew_interval: Duration::from_secs(10),
        }
    }
}

impl LeaseConfig {
    fn read(t: &mut Table) -> Self {
        let d = LeaseConfig::default();
        let ttl = t.duration_or("ttl", d.ttl, ranges::LEASE_TTL);
        let renew_interval = t.duration_or(
            "renew_interval",
            d.renew_interval,
            ranges::LEASE_RENEW_INTERVAL,
        );
        if renew_interval * 2 >= ttl {
            t.issue_fix(
                Some("renew_interval"),
                format!(
                    "must be shorter than half of lease.ttl ({}) (须小于 ttl 的一半)",
                    crate::timefmt::show_duration(ttl)
                ),
                Some("renew at least twice per ttl, e.g. ttl = \"30s\", renew_interval = \"10s\""),
            );
        }
        LeaseConfig {
            ttl,
            renew_interval,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// `[http]`: `/metrics` and `/healthz` of `qianzhi run`; off unless `listen` is set.
#[derive(Debug, Clone, Default)]
pub struct HttpConfig {
    pub listen: Option<std::net::SocketAddr>,
}

impl HttpConfig {
    fn read(t: &mut Table) -> Self {
        let listen = t.text("listen").and_then(|l| match l.trim().parse() {
            Ok(a) => Some(a),
            Err(_) => {
                t.issue_fix(
                    Some("listen"),
                    format!("'{l}' is not an address with a port (不是带端口的地址)"),
                    Some("listen = \"127.0.0.1:9187\"".to_string()),
                );
                None
            }
        });
        HttpConfig { listen }
    }
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    /// tracing filter, e.g. "info" or "qianzhi=debug".
    pub level: String,
    pub format: LogFormat,
}

fn url_ok(u: &str) -> bool {
    u.starts_with("http://") || u.starts_with("https://")
}

/// A job, query or path-segment name: letters, digits, `_` and `-`.
fn name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn column_ok(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_alphanumeric() || ch == '_' || ch == '$')
}

/// A table or view name, optionally schema-qualified.
fn table_ok(s: &str) -> bool {
    !s.is_empty() && s.split('.').count() <= 2 && s.split('.').all(column_ok)
}

impl DatabaseConfig {
    fn read(t: &mut Table) -> Self {
        let url = t.req_text("url");
        if let Some(u) = &url
            && ![
                "sqlite:",
                "postgres://",
                "postgresql://",
                "mysql://",
                "mariadb://",
                ODBC_SCHEME,
            ]
            .iter()
            .any(|p| u.starts_with(p))
        {
            t.issue(
                Some("url"),
                "must start with sqlite:, postgres://, mysql:// or odbc: \
                 (须以 sqlite:、postgres://、mysql:// 或 odbc: 开头)",
            );
        }
        let odbc = url.as_deref().is_some_and(|u| u.starts_with(ODBC_SCHEME));
        if odbc
            && url
                .as_deref()
                .is_some_and(|u| u[ODBC_SCHEME.len()..].trim().is_empty())
        {
            t.issue(
                Some("url"),
                "odbc: needs a DSN name or a connection string, e.g. odbc:DM8 or \
                 odbc:Driver={DM8 ODBC DRIVER};Server=h;TCP_PORT=5236 \
                 (odbc: 后须写数据源名或连接串)",
            );
        }
        let dialect = t.opt_choice::<Dialect>("dialect");
        if dialect.is_some() && !odbc {
            t.issue(
                Some("dialect"),
                "only an odbc: URL takes a dialect; the other backends know their own \
                 (仅 odbc: 连接串需要 dialect)",
            );
        }
        DatabaseConfig {
            url: url.unwrap_or_default(),
            max_connections: t.number_or("max_connections", 5, ranges::MAX_CONNECTIONS),
            dialect,
            odbc_packed_rows: t.flag("odbc_packed_rows", true),
        }
    }
}

impl UnitConfig {
    fn read(t: &mut Table) -> Self {
        let uscc = t.req_text("uscc");
        if let Some(u) = &uscc
            && let Err(e) = crate::checkdigit::uscc(u)
        {
            t.issue(
                Some("uscc"),
                format!("'{u}' is not a valid 统一社会信用代码: {e}"),
            );
        }
        let name = t.req_text("name");
        if name.as_ref().is_some_and(|n| n.trim().is_empty()) {
            t.issue(Some("name"), "must not be empty (不能为空)");
        }
        let region_code = t.req_text("region_code");
        if let Some(rc) = &region_code
            && !((rc.len() == 6 || rc.len() == 12) && rc.chars().all(|c| c.is_ascii_digit()))
        {
            t.issue(
                Some("region_code"),
                format!(
                    "'{rc}' must be 6 or 12 digits (GB/T 2260) (行政区划代码为 6 或 12 位数字)"
                ),
            );
        }
        UnitConfig {
            uscc: uscc.unwrap_or_default(),
            name: name.unwrap_or_default(),
            region_code: region_code.unwrap_or_default(),
            system_name: t.text("system_name"),
        }
    }
}

impl DeliveryConfig {
    fn read(t: &mut Table) -> Self {
        let initial = t.opt_duration("retry_initial", ranges::RETRY_INITIAL);
        let max = t.opt_duration("retry_max", ranges::RETRY_MAX);
        if let (Some(a), Some(b)) = (initial, max)
            && a > b
        {
            t.issue(
                Some("retry_initial"),
                "must not be longer than delivery.retry_max (不能大于 retry_max)",
            );
        }
        DeliveryConfig {
            retry_initial: initial.unwrap_or(Duration::from_secs(1)),
            retry_max: max.unwrap_or(Duration::from_secs(300)),
            http_timeout: t.duration_or(
                "http_timeout",
                Duration::from_secs(30),
                ranges::HTTP_TIMEOUT,
            ),
            ack_every_calls: t.number_or("ack_every_calls", 10, ranges::ACK_EVERY_CALLS),
            max_in_flight: t.number_or("max_in_flight", 4, ranges::MAX_IN_FLIGHT),
        }
    }
}

impl LogConfig {
    fn read(t: &mut Table) -> Self {
        LogConfig {
            level: t.text_or("level", "info"),
            format: t.choice("format", LogFormat::Text),
        }
    }
}

impl Config {
    /// Reads the whole tree; a best-effort `Config` even when there are issues.
    fn read(root: &mut Table) -> Config {
        let database = whole(root.req_section("database"), DatabaseConfig::read);
        let unit = whole(root.req_section("unit"), UnitConfig::read);
        let schema_dir = root.path_buf("schema_dir");
        let delivery = whole(root.opt_section("delivery"), DeliveryConfig::read);
        let lease = whole(root.opt_section("lease"), LeaseConfig::read);
        let gdzw = root.section("gdzw").map(|t| whole(t, GdzwConfig::read));
        let gansu = root.section("gansu").map(|t| whole(t, GansuConfig::read));
        let shuidi = root
            .section("shuidi")
            .map(|t| whole(t, query::ShuidiConfig::read));
        let qcc = root
            .section("qcc")
            .map(|t| whole(t, query::QccConfig::read));
        let xinshu = root
            .section("xinshu")
            .map(|t| whole(t, query::XinshuConfig::read));
        let mut names = std::collections::HashSet::new();
        let mut jobs = Vec::new();
        for mut t in root.entries("job") {
            let entry = entry_index(&t);
            let job = JobConfig::read(&mut t, entry);
            if !names.insert(job.name.clone()) {
                t.issue(Some("name"), "another job has the same name (作业名称重复)");
            }
            t.finish();
            jobs.push(job);
        }
        let mut queries = Vec::new();
        for mut t in root.entries("query") {
            let entry = entry_index(&t);
            let q = query::QueryJobConfig::read(&mut t, entry);
            if !names.insert(q.name.clone()) {
                t.issue(
                    Some("name"),
                    "another job or query has the same name (作业或查询名称重复)",
                );
            }
            t.finish();
            queries.push(q);
        }
        let log = whole(root.opt_section("log"), LogConfig::read);
        let http = whole(root.opt_section("http"), HttpConfig::read);
        Config {
            database,
            unit,
            schema_dir,
            delivery,
            lease,
            gdzw,
            gansu,
            jobs,
            shuidi,
            qcc,
            xinshu,
            queries,
            log,
            http,
            origins: Arc::default(),
        }
    }

    /// Every problem of a configuration text with the environment `vars` laid over it, and
    /// the configuration as far as it could be read. `file` names the text in locations.
    /// `qianzhi check` goes on from here with [`Config::validate`] and the database.
    pub fn read_all(
        text: &str,
        file: &str,
        vars: &[(String, String)],
    ) -> (Config, Vec<ConfigIssue>) {
        Config::read_with(text, file, vars, true)
    }

    /// As [`Config::read_all`]; with `read_secrets` false, secrets are located but not read
    /// (for `status` and `migrate`, which need only the database).
    fn read_with(
        text: &str,
        file: &str,
        vars: &[(String, String)],
        read_secrets: bool,
    ) -> (Config, Vec<ConfigIssue>) {
        let layered = source::layer(text, file, vars);
        let ctx = Ctx::new(&layered.origins, read_secrets);
        let mut root = Table::root(&ctx, layered.table);
        let mut cfg = Config::read(&mut root);
        root.finish();
        let mut issues = layered.issues;
        issues.extend(ctx.into_issues());
        cfg.origins = Arc::new(layered.origins);
        (cfg, issues)
    }

    /// A configuration with no problem, or all of its problems.
    pub fn parse(
        text: &str,
        file: &str,
        vars: &[(String, String)],
    ) -> Result<Config, ConfigIssues> {
        let (cfg, issues) = Config::read_all(text, file, vars);
        if issues.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigIssues(issues))
        }
    }

    /// As [`Config::parse`], but no secret is read: every credential stays unread (and an
    /// unreadable secret file is no problem). For commands that need only the database.
    pub fn parse_without_secrets(
        text: &str,
        file: &str,
        vars: &[(String, String)],
    ) -> Result<Config, ConfigIssues> {
        let (cfg, issues) = Config::read_with(text, file, vars, false);
        if issues.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigIssues(issues))
        }
    }

    /// What needs the whole configuration and the schema catalog: each entry's platform or
    /// provider section, data types, their fields, Gansu routes. Reading has checked
    /// everything else.
    pub fn validate(&self, catalog: &crate::schema::Catalog) -> Vec<ConfigIssue> {
        catalog::validate(self, catalog)
    }

    pub(crate) fn origins(&self) -> &Origins {
        &self.origins
    }
}

/// Reads a whole table and reports the keys it does not know.
fn whole<T>(mut t: Table, read: impl FnOnce(&mut Table) -> T) -> T {
    let v = read(&mut t);
    t.finish();
    v
}

/// The position of an `[[entry]]` table in its array.
fn entry_index(t: &Table) -> usize {
    match t.path().last() {
        Some(read::Seg::Index(i)) => *i,
        _ => 0,
    }
}

/// Reads the TOML file and lays the `QIANZHI_*` environment over it.
pub fn load(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read config file {} (无法读取配置文件)",
            path.display()
        )
    })?;
    let vars: Vec<(String, String)> = std::env::vars().collect();
    Ok(Config::parse(&text, &path.display().to_string(), &vars)?)
}

/// As [`load`], but no secret is read: `status` and `migrate` need only the database, so a
/// DBA who cannot read the service's secret files can still use them.
pub fn load_without_secrets(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read config file {} (无法读取配置文件)",
            path.display()
        )
    })?;
    let vars: Vec<(String, String)> = std::env::vars().collect();
    Ok(Config::parse_without_secrets(
        &text,
        &path.display().to_string(),
        &vars,
    )?)
}

/// A configuration from text, with `vars` as the environment (tests, the demo).
pub fn parse_with_env(text: &str, vars: &[(String, String)]) -> Result<Config> {
    Ok(Config::parse(text, "config.toml", vars)?)
}

/// Reads one section type alone from TOML text, secrets not read: for tests and the
/// simulator's defaults, which build a `[gansu]` or a `[[job]]` without a whole file.
fn standalone<'de, D, T>(d: D, read: impl FnOnce(&mut Table) -> T) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize;
    let map = toml::Table::deserialize(d)?;
    let origins = Origins::default();
    let ctx = Ctx::new(&origins, false);
    let mut t = Table::root(&ctx, map);
    let v = read(&mut t);
    t.finish();
    let issues = ctx.into_issues();
    if issues.is_empty() {
        Ok(v)
    } else {
        let list: Vec<String> = issues.iter().map(|i| i.to_string()).collect();
        Err(serde::de::Error::custom(list.join("; ")))
    }
}

#[cfg(test)]
mod tests;
