//! `[[job]]` entries: which rows go where, and when (a parsed 6-field cron or an interval).

use std::collections::BTreeMap;
use std::time::Duration;

use super::read::Table;
use super::{column_ok, name_ok, ranges, table_ok};

/// The platform a job submits to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamKind {
    /// Guangdong GDZW 0003-2019.
    Gdzw,
    /// 甘肃省信用信息共享平台.
    Gansu,
}

impl UpstreamKind {
    pub const ALL: [UpstreamKind; 2] = [UpstreamKind::Gdzw, UpstreamKind::Gansu];

    /// The name in the file, and of the schema catalog's platform.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamKind::Gdzw => "gdzw",
            UpstreamKind::Gansu => "gansu",
        }
    }
}

impl std::fmt::Display for UpstreamKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a job finds what changed in its source (README, "三种采集方式").
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A change table: one row per change, with its operation (I/U/D) in `operation_column`.
    Changelog,
    /// A view of current rows with a last-changed time: rows after the stored position are
    /// sent, I or U by whether the key was delivered before (`qz_row_state`), D from
    /// `deleted_column`.
    Incremental,
    /// A view of current rows without any change column: read whole, compared key by key
    /// with what was delivered (`qz_row_state`): I new key, U changed record, D key gone.
    Snapshot,
}

/// The order a changelog or incremental job reads its source in, and what keeps it from
/// passing a row that commits late (README, "三种采集方式").
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadOrder {
    /// `(time_column, seq_column or key)`; rows changed less than `settle_lag` ago wait.
    Time,
    /// `seq_column` alone, a strictly increasing number (an id or a version taken from a
    /// sequence); rows above the largest value observed at least `settle_lag` ago wait.
    Seq,
}

/// A 6-field cron (sec min hour day month weekday) in Beijing time, parsed, with its text.
#[derive(Clone)]
pub struct CronSchedule {
    text: String,
}

impl CronSchedule {
    /// A 6-field cron (seconds required; day of month AND day of week), read by the same
    /// parser with the same settings as the scheduler of `qianzhi run`
    /// (tokio-cron-scheduler's croner), so what `check` passes, `run` schedules.
    pub fn parse(text: &str) -> Result<CronSchedule, String> {
        let parsed = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(text);
        match parsed {
            Ok(_) => Ok(CronSchedule {
                text: text.to_string(),
            }),
            Err(e) => Err(format!(
                "'{text}' is not a 6-field cron (sec min hour day month weekday): {e} (不是 6 段 cron 表达式)"
            )),
        }
    }

    /// As written in the file (what the scheduler is given).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CronSchedule({:?})", self.text)
    }
}

/// When a job or query job runs: exactly one of a cron schedule or an interval.
#[derive(Debug, Clone)]
pub enum Trigger {
    /// Boxed: a parsed schedule is large beside a `Duration`.
    Cron(Box<CronSchedule>),
    Every(Duration),
}

impl Trigger {
    /// `schedule` or `interval` of an entry: exactly one, and it parses.
    pub(crate) fn read(t: &mut Table) -> Trigger {
        let has_schedule = t.has("schedule");
        let has_interval = t.has("interval");
        let schedule = t.text("schedule");
        let interval = t.opt_duration("interval", ranges::INTERVAL);
        // Read a minute apart until the file is fixed (it does not load with an issue).
        let placeholder = Trigger::Every(Duration::from_secs(60));
        match (has_schedule, has_interval) {
            (true, true) => {
                t.issue(
                    None,
                    "set schedule or interval, not both (schedule 与 interval 只能设一个)",
                );
                placeholder
            }
            (false, false) => {
                t.issue_fix(
                    None,
                    "set schedule (6-field cron, Beijing time) or interval (须设 schedule 或 interval)",
                    Some("e.g. interval = \"30s\" or schedule = \"0 */5 * * * *\""),
                );
                placeholder
            }
            (true, false) => match schedule.map(|s| CronSchedule::parse(&s)) {
                Some(Ok(c)) => Trigger::Cron(Box::new(c)),
                Some(Err(e)) => {
                    t.issue(Some("schedule"), e);
                    placeholder
                }
                None => placeholder,
            },
            (false, true) => interval.map(Trigger::Every).unwrap_or(placeholder),
        }
    }

    pub fn interval(&self) -> Option<Duration> {
        match self {
            Trigger::Every(d) => Some(*d),
            Trigger::Cron(_) => None,
        }
    }

    pub fn schedule(&self) -> Option<&CronSchedule> {
        match self {
            Trigger::Cron(c) => Some(c),
            Trigger::Every(_) => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct JobConfig {
    pub name: String,
    pub upstream: UpstreamKind,
    pub data_type: String,
    pub mode: Mode,
    /// Table or view, optionally schema-qualified.
    pub source: String,
    pub key: Vec<String>,
    /// Changelog and incremental: what the read is ordered by. `Seq` comes with a
    /// `seq_column` (a config without one does not load).
    pub order: ReadOrder,
    /// The change time (`order = "time"`; not read with `order = "seq"`).
    pub time_column: String,
    pub operation_column: String,
    /// A unique, increasing column of the source (change id, version). With
    /// `order = "time"` rows are read in (time_column, seq_column) order, so several changes
    /// of one key in the same second are all taken (without it (time_column, key) must be
    /// unique); with `order = "seq"` it is the whole order.
    pub seq_column: Option<String>,
    pub settle_lag: Duration,
    /// Incremental mode: a column whose value marks a row as deleted (a soft delete).
    pub deleted_column: Option<String>,
    /// The values of `deleted_column` (as text) that mean deleted.
    pub deleted_values: Vec<String>,
    /// Snapshot mode: the largest share of the delivered keys one snapshot may delete before
    /// the job stops instead (a view that lost its rows must not withdraw them all).
    pub max_delete_ratio: f64,
    pub batch_size: usize,
    pub trigger: Trigger,
    pub enabled: bool,
    /// Field code -> source column, where the view does not already use the field code.
    pub map: BTreeMap<String, String>,
    pub constants: BTreeMap<String, toml::Value>,
    /// Position among the file's `[[job]]` entries, to locate what the catalog finds.
    pub(crate) entry: usize,
}

impl JobConfig {
    /// The columns a changelog or incremental read is ordered by, leading column first:
    /// `(time_column, seq_column)` or `(time_column, key...)` in time order, `(seq_column)`
    /// in seq order. Unique together, so a page ends at a row and the next starts after it.
    pub fn keyset(&self) -> Vec<String> {
        match (self.order, &self.seq_column) {
            (ReadOrder::Seq, Some(seq)) => vec![seq.clone()],
            (_, Some(seq)) => vec![self.time_column.clone(), seq.clone()],
            (_, None) => std::iter::once(&self.time_column)
                .chain(&self.key)
                .cloned()
                .collect(),
        }
    }

    /// The seq column when the job reads in seq order.
    pub fn seq_order(&self) -> Option<&str> {
        match self.order {
            ReadOrder::Seq => self.seq_column.as_deref(),
            ReadOrder::Time => None,
        }
    }

    /// The columns the job's mode reads besides the mapped ones: key, change time (time
    /// order), seq column, and the operation (changelog) or the soft-delete marker
    /// (incremental).
    pub fn change_columns(&self) -> Vec<&str> {
        let key = self.key.iter().map(String::as_str);
        let marker = match self.mode {
            Mode::Changelog => Some(self.operation_column.as_str()),
            Mode::Incremental => self.deleted_column.as_deref(),
            Mode::Snapshot => return key.collect(),
        };
        let time = (self.order == ReadOrder::Time).then_some(self.time_column.as_str());
        key.chain(time)
            .chain(marker)
            .chain(self.seq_column.as_deref())
            .collect()
    }

    /// Incremental mode: whether a row's `deleted_column` value marks it deleted.
    pub fn is_deleted_value(&self, text: &str) -> bool {
        self.deleted_values.iter().any(|v| v == text)
    }

    pub fn settle_lag(&self) -> Duration {
        self.settle_lag
    }

    pub fn interval(&self) -> Option<Duration> {
        self.trigger.interval()
    }

    pub fn schedule(&self) -> Option<&CronSchedule> {
        self.trigger.schedule()
    }

    pub(crate) fn read(t: &mut Table, entry: usize) -> JobConfig {
        let name = t.req_text("name");
        if let Some(n) = &name
            && !name_ok(n)
        {
            t.issue(
                Some("name"),
                "use letters, digits, _ and - only (只能用字母、数字、_ 和 -)",
            );
        }
        let upstream = match t.text("upstream").as_deref() {
            None | Some("gdzw") => UpstreamKind::Gdzw,
            Some("gansu") => UpstreamKind::Gansu,
            Some(other) => {
                t.issue(
                    Some("upstream"),
                    format!("unknown upstream '{other}' (known: gdzw, gansu) (未知的上游平台)"),
                );
                UpstreamKind::Gdzw
            }
        };
        let data_type = t.req_text("data_type");
        let source = t.req_text("source");
        if let Some(s) = &source
            && !table_ok(s)
        {
            t.issue(
                Some("source"),
                format!("'{s}' is not a table or view name (不是表或视图名)"),
            );
        }
        let key: Option<Vec<String>> = t.req_list("key");
        if key.as_ref().is_some_and(Vec::is_empty) {
            t.issue(Some("key"), "name at least one key column (至少写一个键列)");
        }
        let key = key.unwrap_or_default();
        let time_column_set = t.has("time_column");
        let time_column = t.text_or("time_column", "cd_time");
        let operation_column = t.text_or("operation_column", "cd_operation");
        let seq_column = t.text("seq_column");
        let mode = t.choice("mode", Mode::Changelog);
        let order = t.choice("order", ReadOrder::Time);
        check_order(t, order, mode, seq_column.is_some(), time_column_set);
        let deleted_column = t.text("deleted_column");
        let deleted_values: Vec<String> = t.list("deleted_values").unwrap_or_default();
        match (mode, &deleted_column, deleted_values.is_empty()) {
            (Mode::Changelog | Mode::Snapshot, Some(_), _) => t.issue(
                Some("deleted_column"),
                "deleted_column is for mode = \"incremental\" (changelog: D in operation_column; snapshot: a key gone from the view) (deleted_column 仅用于 incremental 模式)",
            ),
            (_, Some(_), true) => t.issue_fix(
                Some("deleted_values"),
                "name the values of deleted_column that mean deleted (须写出表示已删除的取值)",
                Some("e.g. deleted_values = [\"1\"]"),
            ),
            (_, None, false) => t.issue(
                Some("deleted_values"),
                "deleted_values needs deleted_column (须同时设置 deleted_column)",
            ),
            _ => {}
        }
        let max_delete_ratio = t.choice::<f64>("max_delete_ratio", 0.2);
        if !(0.0..=1.0).contains(&max_delete_ratio) {
            t.issue(
                Some("max_delete_ratio"),
                "use 0.0 to 1.0 (取值范围 0.0 至 1.0)",
            );
        }
        let map: BTreeMap<String, String> = t.map_of("map");
        let not_column = |c: &str| format!("'{c}' is not a column name (不是列名)");
        let named = [
            ("time_column", Some(&time_column)),
            ("operation_column", Some(&operation_column)),
            ("seq_column", seq_column.as_ref()),
            ("deleted_column", deleted_column.as_ref()),
        ];
        for (k, c) in key.iter().map(|c| ("key", Some(c))).chain(named) {
            if let Some(c) = c
                && !column_ok(c)
            {
                t.issue(Some(k), not_column(c));
            }
        }
        for (field, c) in &map {
            if !column_ok(c) {
                t.issue_in(&["map", field], not_column(c));
            }
        }
        JobConfig {
            name: name.unwrap_or_default(),
            upstream,
            data_type: data_type.unwrap_or_default(),
            mode,
            source: source.unwrap_or_default(),
            key,
            order,
            time_column,
            operation_column,
            seq_column,
            settle_lag: t.duration_or("settle_lag", Duration::from_secs(10), ranges::SETTLE_LAG),
            deleted_column,
            deleted_values,
            max_delete_ratio,
            batch_size: t.number_or("batch_size", 1000, ranges::BATCH_SIZE),
            trigger: Trigger::read(t),
            enabled: t.flag("enabled", true),
            map,
            constants: t.map_of("constants"),
            entry,
        }
    }
}

/// `order = "seq"` needs a `seq_column`, reads no time column, and has no meaning for a
/// snapshot (which reads the whole view).
fn check_order(t: &Table, order: ReadOrder, mode: Mode, has_seq: bool, has_time: bool) {
    if order == ReadOrder::Time {
        return;
    }
    if mode == Mode::Snapshot {
        t.issue(
            Some("order"),
            "a snapshot reads the whole view: order is for mode = \"changelog\" or \"incremental\" (snapshot 模式读取整个视图，不设 order)",
        );
        return;
    }
    if !has_seq {
        t.issue_fix(
            Some("order"),
            "order = \"seq\" reads in the order of seq_column, which is not set (order = \"seq\" 须设置 seq_column：严格递增的序号列)",
            Some("e.g. seq_column = \"id\" (a column filled from a sequence)"),
        );
    }
    if has_time {
        t.issue_fix(
            Some("time_column"),
            "order = \"seq\" reads no time column (order = \"seq\" 不读取时间列)",
            Some("remove time_column, or use order = \"time\" (删除 time_column，或改用 order = \"time\")"),
        );
    }
}

impl<'de> serde::Deserialize<'de> for JobConfig {
    /// One `[[job]]` table alone (tests); a whole file goes through `Config::parse`.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::standalone(d, |t| JobConfig::read(t, 0))
    }
}
