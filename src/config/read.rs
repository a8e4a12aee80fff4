//! The reader that turns the merged TOML tree into typed settings one key at a time. Every
//! problem on the way (wrong type, missing key, unknown key, value out of range, unreadable
//! secret) becomes a [`ConfigIssue`] and the reader goes on with a placeholder, so that one
//! `qianzhi check` lists them all. The keys a table was asked for are its valid keys: whatever
//! else it holds is an unknown key, with the nearest valid one as the suggested fix.

use serde::de::DeserializeOwned;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::PathBuf;
use std::time::Duration;
use toml::Value;

use super::ConfigIssue;
use super::secret::{Credential, SecretFrom};
use super::source::Origins;
use crate::timefmt::duration_in;

/// One step of a key path: a key, or the position of an entry in an array of tables.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    Key(String),
    Index(usize),
}

pub type KeyPath = Vec<Seg>;

/// Which position of a key an issue points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spot {
    /// The value (a wrong type, a value out of range).
    Value,
    /// The key itself (an unknown key).
    Key,
}

/// What one reading pass shares: where things came from, the issues so far, and whether
/// secrets are read (not when a test builds one section from text).
pub struct Ctx<'o> {
    pub origins: &'o Origins,
    pub read_secrets: bool,
    issues: RefCell<Vec<ConfigIssue>>,
}

impl<'o> Ctx<'o> {
    pub fn new(origins: &'o Origins, read_secrets: bool) -> Self {
        Ctx {
            origins,
            read_secrets,
            issues: RefCell::new(Vec::new()),
        }
    }

    pub fn push(&self, issue: ConfigIssue) {
        self.issues.borrow_mut().push(issue);
    }

    pub fn into_issues(self) -> Vec<ConfigIssue> {
        self.issues.into_inner()
    }

    /// An issue at `path`, located in the file or the environment.
    pub fn issue(
        &self,
        path: &KeyPath,
        shown: &str,
        spot: Spot,
        reason: String,
        fix: Option<String>,
    ) {
        self.push(ConfigIssue {
            at: self.origins.locate(path, spot),
            path: shown.to_string(),
            reason,
            fix,
        });
    }
}

/// What a key should hold, for "wrong type" messages (English, Chinese, an example).
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    Text,
    Number,
    Flag,
    Duration,
    List,
    Table,
}

impl Expect {
    fn names(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Expect::Text => ("text", "文本", "\"…\""),
            Expect::Number => ("a whole number", "整数", "10"),
            Expect::Flag => ("true or false", "true 或 false", "true"),
            Expect::Duration => ("a duration as text", "带单位的时长文本", "\"30s\""),
            Expect::List => ("a list", "数组", "[\"…\"]"),
            Expect::Table => ("a table", "表", "{ … }"),
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "text",
        Value::Integer(_) => "integer",
        Value::Float(_) => "float",
        Value::Boolean(_) => "boolean",
        Value::Datetime(_) => "date-time",
        Value::Array(_) => "list",
        Value::Table(_) => "table",
    }
}

/// Text in backquotes or double quotes replaced by `***`: serde quotes the value it could
/// not take, and under a secret-looking key that value may be the secret.
pub fn hide_quoted(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find(['`', '"']) {
        let q = rest[i..].chars().next().unwrap_or('`');
        out.push_str(&rest[..i]);
        match rest[i + 1..].find(q) {
            Some(j) => {
                out.push_str("***");
                rest = &rest[i + 1 + j + 1..];
            }
            None => rest = "",
        }
    }
    out.push_str(rest);
    out
}

/// The valid key nearest to an unknown one, when it is close enough to be a typo.
pub fn nearest<'a>(key: &str, valid: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let key = key.to_ascii_lowercase();
    valid
        .into_iter()
        .map(|v| (strsim::levenshtein(&key, &v.to_ascii_lowercase()), v))
        .filter(|(d, v)| *d <= (v.len().max(key.len()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v)
}

/// The outcome of reading one key.
enum Got<T> {
    Absent,
    /// Present but unusable; the issue is recorded.
    Bad,
    Ok(T),
}

impl<T> Got<T> {
    fn ok(self) -> Option<T> {
        match self {
            Got::Ok(v) => Some(v),
            _ => None,
        }
    }
}

/// One table of the configuration being read.
pub struct Table<'c, 'o> {
    ctx: &'c Ctx<'o>,
    path: KeyPath,
    /// The path as issues show it: `delivery`, `job[0] (accept)`.
    shown: String,
    map: toml::Table,
    asked: Vec<&'static str>,
    /// A placeholder for a missing section: its own problems are not reported again.
    quiet: bool,
}

impl<'c, 'o> Table<'c, 'o> {
    pub fn root(ctx: &'c Ctx<'o>, map: toml::Table) -> Self {
        Table {
            ctx,
            path: Vec::new(),
            shown: String::new(),
            map,
            asked: Vec::new(),
            quiet: false,
        }
    }

    pub fn ctx(&self) -> &'c Ctx<'o> {
        self.ctx
    }

    pub fn shown(&self) -> &str {
        &self.shown
    }

    pub fn path(&self) -> &KeyPath {
        &self.path
    }

    fn child(&self, key: &str) -> (KeyPath, String) {
        let mut path = self.path.clone();
        path.push(Seg::Key(key.to_string()));
        let shown = if self.shown.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.shown)
        };
        (path, shown)
    }

    /// An issue about `key` of this table (or the table itself for `None`).
    pub fn issue(&self, key: Option<&str>, reason: impl Into<String>) {
        self.issue_fix(key, reason, None::<String>);
    }

    pub fn issue_fix(
        &self,
        key: Option<&str>,
        reason: impl Into<String>,
        fix: Option<impl Into<String>>,
    ) {
        if self.quiet {
            return;
        }
        let (path, shown) = match key {
            Some(k) => self.child(k),
            None => (self.path.clone(), self.shown.clone()),
        };
        self.ctx.issue(
            &path,
            &shown,
            Spot::Value,
            reason.into(),
            fix.map(Into::into),
        );
    }

    /// An issue about a key below this table (`resources.<data type>`).
    pub fn issue_in(&self, keys: &[&str], reason: impl Into<String>) {
        if self.quiet {
            return;
        }
        let mut path = self.path.clone();
        let mut shown = self.shown.clone();
        for k in keys {
            path.push(Seg::Key(k.to_string()));
            if !shown.is_empty() {
                shown.push('.');
            }
            shown.push_str(k);
        }
        self.ctx
            .issue(&path, &shown, Spot::Value, reason.into(), None);
    }

    fn raw(&mut self, key: &'static str) -> Option<Value> {
        if !self.asked.contains(&key) {
            self.asked.push(key);
        }
        self.map.get(key).cloned()
    }

    fn wrong_type(&self, key: &str, found: &Value, want: Expect) {
        let (en, zh, example) = want.names();
        let shown = match found {
            _ if crate::mask::is_secret_key(key) => " (value not shown 值不显示)".to_string(),
            Value::String(s) => format!(" \"{s}\""),
            Value::Table(_) | Value::Array(_) => String::new(),
            v => format!(" {v}"),
        };
        self.issue_fix(
            Some(key),
            format!(
                "wrong type: expected {en}, found {}{shown} (类型错误：应为{zh})",
                type_name(found)
            ),
            Some(format!(
                "write it as {key} = {example} (写成 {key} = {example})"
            )),
        );
    }

    fn missing(&self, key: &str, want: Expect) {
        let (_, _, example) = want.names();
        self.issue_fix(
            Some(key),
            "missing: this key is required (缺少必填的键)",
            Some(format!(
                "add {key} = {example} under [{}] (在 [{}] 下添加)",
                self.shown, self.shown
            )),
        );
    }

    fn get<T>(
        &mut self,
        key: &'static str,
        want: Expect,
        f: impl FnOnce(&Value) -> Option<T>,
    ) -> Got<T> {
        match self.raw(key) {
            None => Got::Absent,
            Some(v) => match f(&v) {
                Some(t) => Got::Ok(t),
                None => {
                    self.wrong_type(key, &v, want);
                    Got::Bad
                }
            },
        }
    }

    fn required<T>(&self, key: &str, want: Expect, got: Got<T>) -> Option<T> {
        match got {
            Got::Absent => {
                self.missing(key, want);
                None
            }
            g => g.ok(),
        }
    }

    pub fn text(&mut self, key: &'static str) -> Option<String> {
        self.get(key, Expect::Text, |v| v.as_str().map(str::to_string))
            .ok()
    }

    /// A required text; `None` (with the issue recorded) when missing or of the wrong type.
    pub fn req_text(&mut self, key: &'static str) -> Option<String> {
        let got = self.get(key, Expect::Text, |v| v.as_str().map(str::to_string));
        self.required(key, Expect::Text, got)
    }

    pub fn text_or(&mut self, key: &'static str, default: &str) -> String {
        self.text(key).unwrap_or_else(|| default.to_string())
    }

    pub fn path_buf(&mut self, key: &'static str) -> Option<PathBuf> {
        self.text(key).map(PathBuf::from)
    }

    pub fn flag(&mut self, key: &'static str, default: bool) -> bool {
        self.get(key, Expect::Flag, Value::as_bool)
            .ok()
            .unwrap_or(default)
    }

    fn number<T>(&mut self, key: &'static str, (min, max): (T, T)) -> Got<T>
    where
        T: Copy + Display + PartialOrd + TryFrom<i64>,
    {
        match self.get(key, Expect::Number, Value::as_integer) {
            Got::Ok(n) => match T::try_from(n) {
                Ok(v) if v >= min && v <= max => Got::Ok(v),
                _ => {
                    self.issue_fix(
                        Some(key),
                        format!(
                            "{n} is out of range: use {min} to {max} (取值范围 {min} 至 {max})"
                        ),
                        None::<String>,
                    );
                    Got::Bad
                }
            },
            Got::Absent => Got::Absent,
            Got::Bad => Got::Bad,
        }
    }

    /// A whole number in its documented range, both ends included.
    pub fn number_or<T>(&mut self, key: &'static str, default: T, range: (T, T)) -> T
    where
        T: Copy + Display + PartialOrd + TryFrom<i64>,
    {
        self.number(key, range).ok().unwrap_or(default)
    }

    pub fn req_number<T>(&mut self, key: &'static str, range: (T, T)) -> Option<T>
    where
        T: Copy + Display + PartialOrd + TryFrom<i64>,
    {
        let got = self.number(key, range);
        self.required(key, Expect::Number, got)
    }

    /// A duration (`500ms`, `30s`, `10m`, `2h`, `1d`, a bare number of seconds) in its range.
    pub fn opt_duration(
        &mut self,
        key: &'static str,
        (min, max): (Duration, Duration),
    ) -> Option<Duration> {
        let text = self.get(key, Expect::Duration, |v| v.as_str().map(str::to_string));
        match text {
            Got::Ok(s) => match duration_in(&s, min, max) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.issue_fix(
                        Some(key),
                        e,
                        Some("write a number and a unit: 500ms, 30s, 10m, 2h or 1d (数字加单位)"),
                    );
                    None
                }
            },
            _ => None,
        }
    }

    pub fn duration_or(
        &mut self,
        key: &'static str,
        default: Duration,
        range: (Duration, Duration),
    ) -> Duration {
        self.opt_duration(key, range).unwrap_or(default)
    }

    /// A value serde reads (an enum of names, a list of numbers): serde's own message says
    /// what it expected.
    fn serde<T: DeserializeOwned>(&mut self, key: &'static str) -> Got<T> {
        let Some(v) = self.raw(key) else {
            return Got::Absent;
        };
        match T::deserialize(v) {
            Ok(t) => Got::Ok(t),
            Err(e) => {
                let msg = e.message().replace('\n', "; ");
                let msg = if crate::mask::is_secret_key(key) {
                    hide_quoted(&msg)
                } else {
                    msg
                };
                self.issue(Some(key), format!("{msg} (取值无效)"));
                Got::Bad
            }
        }
    }

    /// One of a closed set of names (an enum).
    pub fn choice<T: DeserializeOwned>(&mut self, key: &'static str, default: T) -> T {
        self.serde(key).ok().unwrap_or(default)
    }

    /// One of a closed set of names, `None` when absent (or wrong, which is reported).
    pub fn opt_choice<T: DeserializeOwned>(&mut self, key: &'static str) -> Option<T> {
        self.serde(key).ok()
    }

    /// A required one of a closed set of names.
    pub fn req_choice<T: DeserializeOwned>(&mut self, key: &'static str) -> Option<T> {
        let got = self.serde(key);
        self.required(key, Expect::Text, got)
    }

    /// A list (of texts, of numbers); `None` when absent.
    pub fn list<T: DeserializeOwned>(&mut self, key: &'static str) -> Option<Vec<T>> {
        match self.map.get(key) {
            None | Some(Value::Array(_)) => self.serde(key).ok(),
            Some(v) => {
                let v = v.clone();
                self.raw(key);
                self.wrong_type(key, &v, Expect::List);
                None
            }
        }
    }

    /// A required list.
    pub fn req_list<T: DeserializeOwned>(&mut self, key: &'static str) -> Option<Vec<T>> {
        if !self.map.contains_key(key) {
            self.raw(key);
            self.missing(key, Expect::List);
            return None;
        }
        self.list(key)
    }

    /// A table of names to values (field codes to columns, data types to resource ids).
    pub fn map_of<T: DeserializeOwned>(&mut self, key: &'static str) -> BTreeMap<String, T> {
        match self.map.get(key) {
            None | Some(Value::Table(_)) => self.serde(key).ok().unwrap_or_default(),
            Some(v) => {
                let v = v.clone();
                self.raw(key);
                self.wrong_type(key, &v, Expect::Table);
                BTreeMap::new()
            }
        }
    }

    /// A sub-table, when present.
    pub fn section(&mut self, key: &'static str) -> Option<Table<'c, 'o>> {
        match self.raw(key) {
            None => None,
            Some(Value::Table(map)) => {
                let (path, shown) = self.child(key);
                Some(Table {
                    ctx: self.ctx,
                    path,
                    shown,
                    map,
                    asked: Vec::new(),
                    quiet: self.quiet,
                })
            }
            Some(v) => {
                self.wrong_type(key, &v, Expect::Table);
                None
            }
        }
    }

    /// An optional section: absent, it is read as an empty table (every key its default).
    pub fn opt_section(&mut self, key: &'static str) -> Table<'c, 'o> {
        self.section(key).unwrap_or_else(|| {
            let (path, shown) = self.child(key);
            Table {
                ctx: self.ctx,
                path,
                shown,
                map: toml::Table::new(),
                asked: Vec::new(),
                quiet: self.quiet,
            }
        })
    }

    /// Whether the table holds `key` (asking for it).
    pub fn has(&mut self, key: &'static str) -> bool {
        self.raw(key).is_some()
    }

    /// A required section; a missing one is reported once and read as an empty, quiet table
    /// so that the rest of the file is still checked.
    pub fn req_section(&mut self, key: &'static str) -> Table<'c, 'o> {
        if let Some(t) = self.section(key) {
            return t;
        }
        if !self.map.contains_key(key) {
            self.issue_fix(
                Some(key),
                format!("missing section [{key}] (缺少 [{key}] 节)"),
                Some(format!(
                    "add a [{key}] section, see config.toml.example (参见 config.toml.example)"
                )),
            );
        }
        let (path, shown) = self.child(key);
        Table {
            ctx: self.ctx,
            path,
            shown,
            map: toml::Table::new(),
            asked: Vec::new(),
            quiet: true,
        }
    }

    /// The entries of an array of tables (`[[job]]`), each shown with its name.
    pub fn entries(&mut self, key: &'static str) -> Vec<Table<'c, 'o>> {
        let items = match self.raw(key) {
            None => return Vec::new(),
            Some(Value::Array(items)) => items,
            Some(v) => {
                self.wrong_type(key, &v, Expect::List);
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let mut path = self.path.clone();
            path.push(Seg::Key(key.to_string()));
            path.push(Seg::Index(i));
            match item {
                Value::Table(map) => {
                    let name = map.get("name").and_then(Value::as_str).unwrap_or("");
                    let shown = format!("{key}[{i}] ({name})");
                    out.push(Table {
                        ctx: self.ctx,
                        path,
                        shown,
                        map,
                        asked: Vec::new(),
                        quiet: self.quiet,
                    });
                }
                v => self.ctx.issue(
                    &path,
                    &format!("{key}[{i}]"),
                    Spot::Value,
                    format!(
                        "wrong type: expected a table, found {} (类型错误：应为表)",
                        type_name(&v)
                    ),
                    Some(format!(
                        "write each entry as a [[{key}]] table (每项写成 [[{key}]] 表)"
                    )),
                ),
            }
        }
        out
    }

    /// A credential from `<what>_file` or `<what>_env` (or, where allowed, written inline),
    /// read once here by the one secret reader.
    pub fn credential(
        &mut self,
        what: &'static str,
        file_key: &'static str,
        env_key: &'static str,
        inline_key: Option<&'static str>,
        purpose: &str,
    ) -> Credential {
        let file = self.path_buf(file_key);
        let env = self.text(env_key);
        let inline = inline_key.and_then(|k| self.text(k));
        // A credential systemd passed (LoadCredential=<section>.<what>) comes first: the unit
        // says so explicitly, and the service user need not be able to read the original.
        let name = format!("{}.{what}", self.shown);
        let passed = super::secret::systemd_credential(&name);
        let (from, key) = match (passed, file, env, inline) {
            (Some(p), ..) => (SecretFrom::Credential(p), what),
            (None, Some(p), _, _) => (SecretFrom::File(p), file_key),
            (None, None, Some(v), _) => (SecretFrom::Env(v), env_key),
            (None, None, None, Some(t)) => {
                (SecretFrom::Inline(t.into()), inline_key.unwrap_or(what))
            }
            (None, None, None, None) if !self.ctx.read_secrets => {
                // `status` and `migrate` read no secret, so one that only the service's
                // LoadCredential= provides is no problem for them.
                return Credential::unread(SecretFrom::Missing);
            }
            (None, None, None, None) => {
                self.issue_fix(
                    None,
                    format!(
                        "set {file_key} or {env_key}, or pass systemd credential {name} \
                         (LoadCredential=) ({purpose})"
                    ),
                    Some(format!(
                        "{file_key} = \"/etc/qianzhi/{name}\" (口令文件，权限 0600)"
                    )),
                );
                return Credential::unread(SecretFrom::Missing);
            }
        };
        if !self.ctx.read_secrets {
            return Credential::unread(from);
        }
        let label = format!("{}.{key}", self.shown);
        match super::secret::read(&from, &label) {
            Ok(value) => Credential { from, value },
            Err(reason) => {
                self.issue_fix(Some(key), reason, Some(super::secret::RULE));
                Credential::unread(from)
            }
        }
    }

    /// Reports the keys nobody asked for, with the nearest valid key.
    pub fn finish(self) {
        if self.quiet {
            return;
        }
        for key in self.map.keys() {
            if self.asked.iter().any(|a| a == key) {
                continue;
            }
            let (path, shown) = self.child(key);
            let fix = match nearest(key, self.asked.iter().copied()) {
                Some(k) => format!("did you mean {k}? (是否应为 {k}？)"),
                None => format!("valid keys here: {} (此处可用的键)", self.asked.join(", ")),
            };
            self.ctx.issue(
                &path,
                &shown,
                Spot::Key,
                "unknown key (未知的键)".into(),
                Some(fix),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_key_is_a_close_typo_only() {
        let valid = [
            "retry_initial",
            "retry_max",
            "http_timeout",
            "ack_every_calls",
        ];
        for (typo, want) in [
            ("retry_mx", Some("retry_max")),
            ("retrymax", Some("retry_max")),
            ("Retry_Max", Some("retry_max")),
            ("http_timout", Some("http_timeout")),
            ("ack_every_call", Some("ack_every_calls")),
            ("colour", None),
            ("x", None),
        ] {
            assert_eq!(nearest(typo, valid), want, "{typo}");
        }
    }

    #[test]
    fn quoted_parts_are_hidden() {
        assert_eq!(
            hide_quoted("invalid type: integer `90817263`, expected a string"),
            "invalid type: integer ***, expected a string"
        );
        assert_eq!(hide_quoted("a \"b\" c `d"), "a *** c ");
    }
}
