//! Where settings come from: the TOML file and the `QIANZHI_*` environment, layered by the
//! `config` crate, and a record of where each key was written (file line and column, or the
//! variable that set it) so that every issue can point at it.
//!
//! Environment overrides are `QIANZHI_<SECTION>__<KEY>=value`. Keys of `[[job]]` and
//! `[[query]]` entries are addressed by the entry's `name`: `QIANZHI_JOB__ACCEPT__ENABLED=false`.
//! A name matches ignoring case, with `-` read as `_` (a variable name cannot hold `-`), so job
//! `daily-penalties` is `QIANZHI_QUERY__DAILY_PENALTIES__...`. Other segments match the file's
//! keys ignoring case (a field code such as `ApplyerName` keeps the file's spelling). The file's
//! value decides the type: a key the file holds as text stays text (`region_code` "440300"),
//! and so does every secret-looking key; otherwise a number or true/false is read as such.

use std::collections::HashMap;
use std::ops::Range;
use toml::Value;

use super::ConfigIssue;
use super::read::{KeyPath, Seg, Spot, nearest};

/// Where each key came from, for locating issues. `Debug` shows the file name only: the text
/// may hold an inline secret.
#[derive(Default)]
pub struct Origins {
    file: String,
    text: String,
    /// Key path -> (span of the key, span of the value) in `text`.
    spans: HashMap<KeyPath, (Range<usize>, Range<usize>)>,
    /// Key paths set by an environment variable, with the variable's name.
    env: Vec<(KeyPath, String)>,
}

impl std::fmt::Debug for Origins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Origins")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl Origins {
    /// `file:line:column` of a byte offset (both counted from 1, columns in characters).
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let offset = (0..=offset)
            .rev()
            .find(|&i| self.text.is_char_boundary(i))
            .unwrap_or(0);
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[start..].chars().count() + 1)
    }

    fn at_offset(&self, offset: usize) -> String {
        let (line, col) = self.line_col(offset);
        format!("{}:{line}:{col}", self.file)
    }

    /// Where the key at `path` was written: the variable that set it (or set a key above
    /// it), else its place in the file, else the nearest enclosing table's.
    pub fn locate(&self, path: &KeyPath, spot: Spot) -> Option<String> {
        if let Some((_, var)) = self.env.iter().find(|(p, _)| path.starts_with(p)) {
            return Some(format!("environment variable {var} (环境变量)"));
        }
        if self.file.is_empty() {
            return None;
        }
        if let Some((key, value)) = self.spans.get(path) {
            let at = match spot {
                Spot::Key => key.start,
                Spot::Value => value.start,
            };
            return Some(self.at_offset(at));
        }
        // A missing key: point at the table that should hold it.
        (0..path.len())
            .rev()
            .find_map(|n| self.spans.get(&path[..n]))
            .map(|(key, _)| self.at_offset(key.start))
            .or_else(|| Some(self.file.clone()))
    }
}

fn record_spans(
    table: &toml::de::DeTable<'_>,
    path: &mut KeyPath,
    out: &mut HashMap<KeyPath, (Range<usize>, Range<usize>)>,
) {
    for (k, v) in table {
        path.push(Seg::Key(k.get_ref().to_string()));
        out.insert(path.clone(), (k.span(), v.span()));
        match v.get_ref() {
            toml::de::DeValue::Table(t) => record_spans(t, path, out),
            toml::de::DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(Seg::Index(i));
                    out.insert(path.clone(), (item.span(), item.span()));
                    if let toml::de::DeValue::Table(t) = item.get_ref() {
                        record_spans(t, path, out);
                    }
                    path.pop();
                }
            }
            _ => {}
        }
        path.pop();
    }
}

/// A TOML syntax error, named by line and column. The offending line is quoted only when it
/// plainly cannot hold a secret: a `key = value` or `[table]` line with no secret-looking
/// word, outside any multi-line string (`ExecStartPre=qianzhi check` sends this to the
/// journal, and an unquoted `token = abc123` would land there). toml's own messages name
/// the grammar, never the text.
fn syntax_issue(origins: &Origins, e: &toml::de::Error) -> ConfigIssue {
    let text = origins.text.as_str();
    let message = e.message().trim().replace('\n', "; ");
    let Some(span) = e.span() else {
        return ConfigIssue {
            at: Some(origins.file.clone()),
            path: String::new(),
            reason: format!("TOML 语法错误 syntax error: {message}"),
            fix: None,
        };
    };
    let start = span.start.min(text.len());
    let end = span.end.clamp(start, text.len());
    let (line_no, column) = origins.line_col(start);
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[end..].find('\n').map_or(text.len(), |i| end + i);
    let lines = &text[line_start..line_end];
    // An odd number of triple quotes before the error: it is inside a multi-line string.
    let in_multiline_string =
        (text[..start].matches("\"\"\"").count() + text[..start].matches("'''").count()) % 2 == 1;
    let plain_setting = lines.lines().all(|l| {
        let l = l.trim_start();
        l.starts_with('[') || l.contains('=')
    });
    let head = format!(
        "TOML 语法错误 syntax error at line {line_no}, column {column} (第 {line_no} 行第 {column} 列): {message}"
    );
    let reason = if !in_multiline_string && plain_setting && !crate::mask::is_secret_key(lines) {
        format!("{head}: `{}`", lines.trim_end())
    } else {
        format!("{head}; 该行可能含有口令或令牌，不予显示 line not shown: it may hold a secret")
    };
    ConfigIssue {
        at: Some(origins.at_offset(start)),
        path: String::new(),
        reason,
        fix: Some("quote text values: key = \"value\" (文本值要加引号)".into()),
    }
}

/// One value of the parsed file as a `toml::Value`; a number the recovering parser kept but
/// cannot be read (`0x`, an overflow) is left out, with its issue.
fn owned(
    v: &toml::Spanned<toml::de::DeValue<'_>>,
    shown: &str,
    origins: &Origins,
    issues: &mut Vec<ConfigIssue>,
) -> Option<Value> {
    use toml::de::DeValue;
    let bad_number = |issues: &mut Vec<ConfigIssue>| {
        issues.push(ConfigIssue {
            at: Some(origins.at_offset(v.span().start)),
            path: shown.to_string(),
            reason: "TOML 语法错误 syntax error: not a valid number (数字无效)".into(),
            fix: Some("write a whole number such as 10, or quote text (整数或加引号的文本)".into()),
        });
        None
    };
    Some(match v.get_ref() {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Integer(n) => match i64::from_str_radix(n.as_str(), n.radix()) {
            Ok(n) => Value::Integer(n),
            Err(_) => return bad_number(issues),
        },
        DeValue::Float(f) => match f.as_str().parse::<f64>() {
            Ok(f) => Value::Float(f),
            Err(_) => return bad_number(issues),
        },
        DeValue::Boolean(b) => Value::Boolean(*b),
        DeValue::Datetime(d) => Value::Datetime(*d),
        DeValue::Array(items) => Value::Array(
            items
                .iter()
                .filter_map(|i| owned(i, shown, origins, issues))
                .collect(),
        ),
        DeValue::Table(t) => Value::Table(owned_table(t, shown, origins, issues)),
    })
}

fn owned_table(
    t: &toml::de::DeTable<'_>,
    shown: &str,
    origins: &Origins,
    issues: &mut Vec<ConfigIssue>,
) -> toml::Table {
    t.iter()
        .filter_map(|(k, v)| {
            let key = k.get_ref().to_string();
            let shown = if shown.is_empty() {
                key.clone()
            } else {
                format!("{shown}.{key}")
            };
            Some((key, owned(v, &shown, origins, issues)?))
        })
        .collect()
}

/// The file as parsed: its table (what could be read of it, after syntax errors too) and
/// the syntax errors.
fn parse_file(origins: &mut Origins) -> (toml::Table, Vec<ConfigIssue>) {
    let text = origins.text.clone();
    let (doc, errors) = toml::de::DeTable::parse_recoverable(&text);
    record_spans(doc.get_ref(), &mut Vec::new(), &mut origins.spans);
    let mut errors: Vec<_> = errors.iter().collect();
    errors.sort_by_key(|e| e.span().map_or(0, |s| s.start));
    let mut issues: Vec<ConfigIssue> = errors.iter().map(|e| syntax_issue(origins, e)).collect();
    let table = owned_table(doc.get_ref(), "", origins, &mut issues);
    (table, issues)
}

/// An environment variable's path in the file's tree, entries addressed by name.
fn place(segs: &[String], file: &toml::Table) -> Result<KeyPath, String> {
    let mut path = Vec::new();
    let mut here: Option<&Value> = None;
    let mut i = 0;
    while i < segs.len() {
        let table = match here {
            None => Some(file),
            Some(Value::Table(t)) => Some(t),
            _ => None,
        };
        // The file's spelling of the key when it has it, else the variable's (lower case).
        let key = table
            .and_then(|t| t.keys().find(|k| k.eq_ignore_ascii_case(&segs[i])))
            .cloned()
            .unwrap_or_else(|| segs[i].clone());
        let value = table.and_then(|t| t.get(&key));
        path.push(Seg::Key(key.clone()));
        i += 1;
        let is_entries = path.len() == 1 && matches!(key.as_str(), "job" | "query");
        if !is_entries {
            here = value;
            continue;
        }
        // (position in the array, name) of each entry.
        let entries: Vec<(usize, &str)> = match value {
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .filter_map(|(n, v)| {
                    let t = v.as_table()?;
                    Some((n, t.get("name").and_then(Value::as_str).unwrap_or("")))
                })
                .collect(),
            _ => Vec::new(),
        };
        let norm = |n: &str| n.to_ascii_lowercase().replace('-', "_");
        // A name may itself hold "__": try the shortest run of segments first.
        let found = (i..segs.len()).find_map(|end| {
            let wanted = segs[i..=end].join("__");
            let hits: Vec<usize> = entries
                .iter()
                .filter(|(_, name)| norm(name) == wanted)
                .map(|(n, _)| *n)
                .collect();
            (!hits.is_empty()).then_some((end, hits))
        });
        let names: Vec<&str> = entries.iter().map(|(_, name)| *name).collect();
        match found {
            Some((end, hits)) if hits.len() == 1 => {
                if end + 1 >= segs.len() {
                    return Err(format!(
                        "name a key after the {key} name, e.g. QIANZHI_{}__{}__ENABLED (在名称后写键名)",
                        key.to_uppercase(),
                        segs[i].to_uppercase()
                    ));
                }
                path.push(Seg::Index(hits[0]));
                here = value.and_then(|v| v.get(hits[0]));
                i = end + 1;
            }
            Some((_, hits)) => {
                let list: Vec<&str> = entries
                    .iter()
                    .filter(|(n, _)| hits.contains(n))
                    .map(|(_, name)| *name)
                    .collect();
                return Err(format!(
                    "several [[{key}]] entries match: {} (名称仅大小写或 -/_ 不同，无法区分)",
                    list.join(", ")
                ));
            }
            None => {
                let wanted = segs.get(i).cloned().unwrap_or_default();
                let hint = nearest(&wanted, names.iter().copied())
                    .map(|n| format!("; did you mean {n}? (是否应为 {n}？)"))
                    .unwrap_or_default();
                return Err(format!(
                    "no [[{key}]] named '{wanted}' (没有这个名称的 [[{key}]]); names: {}{hint}",
                    names.join(", ")
                ));
            }
        }
    }
    Ok(path)
}

fn value_at<'a>(file: &'a toml::Table, path: &KeyPath) -> Option<&'a Value> {
    let mut here: Option<&Value> = None;
    for seg in path {
        here = match (here, seg) {
            (None, Seg::Key(k)) => file.get(k),
            (Some(Value::Table(t)), Seg::Key(k)) => t.get(k),
            (Some(Value::Array(a)), Seg::Index(i)) => a.get(*i),
            _ => None,
        };
        here?;
    }
    here
}

/// The `config` crate's path expression for a key path (`job[0].enabled`).
fn expression(path: &KeyPath) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The override's value: the file's value decides the type; a key the file does not set is
/// read as a number or true/false when it looks like one, except a secret-looking key (a
/// numeric token read as a number would not load).
fn typed(raw: &str, path: &KeyPath, file: &toml::Table) -> config::Value {
    let last = match path.last() {
        Some(Seg::Key(k)) => k.as_str(),
        _ => "",
    };
    let as_text =
        matches!(value_at(file, path), Some(Value::String(_))) || crate::mask::is_secret_key(last);
    if as_text {
        return config::Value::from(raw.to_string());
    }
    if let Ok(n) = raw.parse::<i64>() {
        return config::Value::from(n);
    }
    match raw.parse::<bool>() {
        Ok(b) => config::Value::from(b),
        Err(_) => config::Value::from(raw.to_string()),
    }
}

/// The settings with the environment laid over the file, where each came from, and the
/// problems found so far (syntax errors, variables that address nothing).
pub struct Layered {
    pub table: toml::Table,
    pub origins: Origins,
    pub issues: Vec<ConfigIssue>,
}

/// Lays `QIANZHI_*` variables over the file's text. `file` names it in issue locations.
pub fn layer(text: &str, file: &str, vars: &[(String, String)]) -> Layered {
    let mut origins = Origins {
        file: file.to_string(),
        text: text.to_string(),
        ..Default::default()
    };
    let (file_table, mut issues) = parse_file(&mut origins);
    // After a syntax error the config crate gets what could be read, so that the rest of the
    // file is still checked.
    let loaded = if issues.is_empty() {
        text.to_string()
    } else {
        toml::to_string(&file_table).unwrap_or_default()
    };
    let mut builder = config::Config::builder()
        .add_source(config::File::from_str(&loaded, config::FileFormat::Toml));

    let ours: config::Map<String, String> = vars
        .iter()
        .filter(|(k, _)| k.starts_with("QIANZHI_"))
        .cloned()
        .collect();
    let env = config::Environment::with_prefix("QIANZHI")
        .prefix_separator("_")
        .separator("__")
        .source(Some(ours));
    let collected = match config::Source::collect(&env) {
        Ok(m) => m,
        Err(e) => {
            issues.push(ConfigIssue {
                at: Some("environment (环境变量)".into()),
                path: String::new(),
                reason: e.to_string(),
                fix: None,
            });
            Default::default()
        }
    };
    let mut overrides: Vec<(String, config::Value)> = collected.into_iter().collect();
    overrides.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, value) in overrides {
        // QIANZHI_CONFIG and friends name no section: they are command-line settings.
        if !key.contains('.') {
            continue;
        }
        let segs: Vec<String> = key.split('.').map(str::to_string).collect();
        let var = format!("QIANZHI_{}", key.replace('.', "__").to_uppercase());
        let raw = value.into_string().unwrap_or_default();
        let at = Some(format!("environment variable {var} (环境变量)"));
        let path = match place(&segs, &file_table) {
            Ok(p) => p,
            Err(reason) => {
                issues.push(ConfigIssue {
                    at,
                    path: segs.join("."),
                    reason,
                    fix: Some(
                        "address [[job]] and [[query]] keys by the entry's name: QIANZHI_JOB__<NAME>__<KEY> (按名称指定)"
                            .into(),
                    ),
                });
                continue;
            }
        };
        let v = typed(&raw, &path, &file_table);
        // A key the config crate's paths cannot spell (a quoted key with a dot) is refused
        // without losing the overrides before it.
        match builder.clone().set_override(expression(&path), v) {
            Ok(b) => {
                builder = b;
                origins.env.push((path, var));
            }
            Err(e) => issues.push(ConfigIssue {
                at,
                path: segs.join("."),
                reason: format!(
                    "cannot set this key from the environment: {e} (无法由环境变量设置)"
                ),
                fix: None,
            }),
        }
    }
    let table = builder
        .build()
        .and_then(|c| c.try_deserialize::<toml::Table>());
    let table = match table {
        Ok(t) => t,
        Err(e) => {
            issues.push(ConfigIssue {
                at: Some(file.to_string()),
                path: String::new(),
                reason: format!("cannot load: {e} (无法加载)"),
                fix: None,
            });
            file_table
        }
    };
    Layered {
        table,
        origins,
        issues,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "[unit]\nregion_code = \"440100\"\n[[job]]\nname = \"accept\"\nenabled = true\n[job.map]\nApplyerName = \"a\"\n[[job]]\nname = \"daily-penalties\"\nbatch_size = 5\n[[query]]\nname = \"penalties\"\n";

    fn vars(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn entries_are_addressed_by_name() {
        let l = layer(
            FILE,
            "c.toml",
            &vars(&[
                ("QIANZHI_JOB__ACCEPT__ENABLED", "false"),
                ("QIANZHI_JOB__DAILY_PENALTIES__BATCH_SIZE", "50"),
                ("QIANZHI_JOB__ACCEPT__MAP__APPLYERNAME", "applicant"),
                ("QIANZHI_QUERY__PENALTIES__DAILY_BUDGET", "7"),
                ("QIANZHI_UNIT__REGION_CODE", "440300"),
                ("QIANZHI_CONFIG", "/etc/x.toml"),
            ]),
        );
        assert!(l.issues.is_empty(), "{:?}", l.issues);
        let job = l.table["job"].as_array().unwrap();
        assert_eq!(job[0]["enabled"], Value::Boolean(false));
        assert_eq!(job[0]["map"]["ApplyerName"].as_str(), Some("applicant"));
        assert_eq!(job[1]["batch_size"].as_integer(), Some(50));
        assert_eq!(job[1]["name"].as_str(), Some("daily-penalties"));
        assert_eq!(l.table["query"][0]["daily_budget"].as_integer(), Some(7));
        assert_eq!(l.table["unit"]["region_code"].as_str(), Some("440300"));
        let at = l.origins.locate(
            &vec![
                Seg::Key("job".into()),
                Seg::Index(0),
                Seg::Key("enabled".into()),
            ],
            Spot::Value,
        );
        assert_eq!(
            at.as_deref(),
            Some("environment variable QIANZHI_JOB__ACCEPT__ENABLED (环境变量)")
        );
        let at = l.origins.locate(
            &vec![
                Seg::Key("job".into()),
                Seg::Index(1),
                Seg::Key("batch_size".into()),
            ],
            Spot::Value,
        );
        assert_eq!(
            at.as_deref(),
            Some("environment variable QIANZHI_JOB__DAILY_PENALTIES__BATCH_SIZE (环境变量)")
        );
    }

    #[test]
    fn an_unknown_entry_name_is_an_issue_with_a_suggestion() {
        let l = layer(
            FILE,
            "c.toml",
            &vars(&[
                ("QIANZHI_JOB__ACEPT__ENABLED", "false"),
                ("QIANZHI_JOB__ACCEPT", "x"),
            ]),
        );
        let all: Vec<String> = l.issues.iter().map(|i| i.to_string()).collect();
        let all = all.join("\n");
        assert!(all.contains("QIANZHI_JOB__ACEPT__ENABLED"), "{all}");
        assert!(all.contains("no [[job]] named 'acept'"), "{all}");
        assert!(all.contains("did you mean accept?"), "{all}");
        assert!(all.contains("name a key after the job name"), "{all}");
        assert_eq!(l.table["job"][0]["enabled"], Value::Boolean(true));
    }

    #[test]
    fn the_file_places_each_key() {
        let l = layer(FILE, "c.toml", &[]);
        let at = |p: KeyPath, s| l.origins.locate(&p, s);
        let k = |s: &str| Seg::Key(s.into());
        assert_eq!(
            at(vec![k("unit"), k("region_code")], Spot::Value).as_deref(),
            Some("c.toml:2:15")
        );
        assert_eq!(
            at(vec![k("unit"), k("region_code")], Spot::Key).as_deref(),
            Some("c.toml:2:1")
        );
        assert_eq!(
            at(vec![k("job"), Seg::Index(1), k("batch_size")], Spot::Value).as_deref(),
            Some("c.toml:10:14")
        );
        // A key the file lacks: the table that should hold it.
        assert_eq!(
            at(vec![k("unit"), k("uscc")], Spot::Value).as_deref(),
            Some("c.toml:1:2")
        );
    }

    #[test]
    fn several_syntax_errors_are_all_reported_and_the_rest_is_read() {
        let text = "[database]\nurl = \"sqlite://x\"\nmax_connections = 5 6\n[unit]\nname = 某 局\nregion_code = \"440100\"\n";
        let l = layer(text, "c.toml", &[]);
        let all: Vec<String> = l.issues.iter().map(|i| i.to_string()).collect();
        assert_eq!(all.len(), 2, "{all:?}");
        assert!(all[0].starts_with("c.toml:3:19: "), "{all:?}");
        assert!(
            all[1].contains("line 5") && all[1].contains("name = 某 局"),
            "{all:?}"
        );
        assert_eq!(l.table["unit"]["region_code"].as_str(), Some("440100"));
        assert_eq!(l.table["database"]["url"].as_str(), Some("sqlite://x"));
    }
}
