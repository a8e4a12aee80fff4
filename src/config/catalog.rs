//! What needs the whole configuration and the schema catalog: that each job's platform and
//! each query's provider has its section, that the data type exists on that platform, that
//! mapped fields are fields of it, that Gansu can route it.

use super::read::{KeyPath, Seg, Spot};
use super::{Config, ConfigIssue, Provider, UpstreamKind};
use crate::schema::{Catalog, PIPELINE_FIELDS};

struct Sink<'a> {
    cfg: &'a Config,
    out: Vec<ConfigIssue>,
}

impl Sink<'_> {
    fn issue(&mut self, path: KeyPath, shown: String, reason: String) {
        self.out.push(ConfigIssue {
            at: self.cfg.origins().locate(&path, Spot::Value),
            path: shown,
            reason,
            fix: None,
        });
    }
}

fn keys(parts: &[&str]) -> KeyPath {
    parts.iter().map(|p| Seg::Key(p.to_string())).collect()
}

pub fn validate(cfg: &Config, catalog: &Catalog) -> Vec<ConfigIssue> {
    let mut sink = Sink {
        cfg,
        out: Vec::new(),
    };
    let no_such = "no such data type (没有这个数据类型)".to_string();
    if let Some(g) = &cfg.gdzw {
        for t in g.reconciliation_tables.keys() {
            if catalog.data_type("gdzw", t).is_none() {
                sink.issue(
                    keys(&["gdzw", "reconciliation_tables", t]),
                    format!("gdzw.reconciliation_tables.{t}"),
                    no_such.clone(),
                );
            }
        }
    }
    if let Some(g) = &cfg.gansu {
        for (map, names) in [
            ("resources", g.resources.keys().collect::<Vec<_>>()),
            ("subjects", g.subjects.keys().collect()),
        ] {
            for t in names {
                if catalog.data_type("gansu", t).is_none() {
                    sink.issue(
                        keys(&["gansu", map, t]),
                        format!("gansu.{map}.{t}"),
                        no_such.clone(),
                    );
                }
            }
        }
    }
    for j in &cfg.jobs {
        let at = |key: Option<&str>| {
            let mut p = vec![Seg::Key("job".into()), Seg::Index(j.entry)];
            p.extend(key.map(|k| Seg::Key(k.into())));
            p
        };
        let shown = format!("job[{}] ({})", j.entry, j.name);
        let platform = j.upstream.as_str();
        let present = match j.upstream {
            UpstreamKind::Gdzw => cfg.gdzw.is_some(),
            UpstreamKind::Gansu => cfg.gansu.is_some(),
        };
        if !present {
            sink.issue(
                at(Some("upstream")),
                format!("{shown}.upstream"),
                format!("upstream {platform} needs a [{platform}] section (缺少 [{platform}] 节)"),
            );
        }
        let Some(dt) = catalog.data_type(platform, &j.data_type) else {
            let known: Vec<_> = catalog
                .platform(platform)
                .map(|p| p.data_types.keys().cloned().collect())
                .unwrap_or_default();
            sink.issue(
                at(Some("data_type")),
                format!("{shown}.data_type"),
                format!(
                    "unknown data type '{}' (known: {}) (未知的数据类型)",
                    j.data_type,
                    known.join(", ")
                ),
            );
            continue;
        };
        if j.upstream == UpstreamKind::Gansu
            && let Some(g) = &cfg.gansu
            && g.route(dt).is_none()
        {
            sink.issue(
                at(Some("data_type")),
                format!("{shown}.data_type"),
                format!(
                    "{} has no resource_id or subject: set them in its schema file or in [gansu] resources / subjects (缺少资源编号或主体类别)",
                    j.data_type
                ),
            );
        }
        for (table, fields) in [
            ("map", j.map.keys().collect::<Vec<_>>()),
            ("constants", j.constants.keys().collect()),
        ] {
            for f in fields {
                let mut path = at(Some(table));
                path.push(Seg::Key(f.clone()));
                let field_shown = format!("{shown}.{table}.{f}");
                if dt.field(f).is_none() {
                    sink.issue(
                        path.clone(),
                        field_shown.clone(),
                        format!(
                            "field '{f}' is not a field of {} (不是该数据类型的字段)",
                            j.data_type
                        ),
                    );
                }
                if PIPELINE_FIELDS.contains(&f.as_str()) {
                    sink.issue(
                        path,
                        field_shown,
                        format!("field '{f}' is set by qianzhi and cannot be mapped (由 qianzhi 填写，不能映射)"),
                    );
                }
            }
        }
    }
    for q in &cfg.queries {
        let p = q.provider;
        let present = match p {
            Provider::Shuidi => cfg.shuidi.is_some(),
            Provider::Qcc => cfg.qcc.is_some(),
            Provider::Xinshu => cfg.xinshu.is_some(),
        };
        if !present {
            sink.issue(
                vec![
                    Seg::Key("query".into()),
                    Seg::Index(q.entry),
                    Seg::Key("provider".into()),
                ],
                format!("query[{}] ({}).provider", q.entry, q.name),
                format!("provider {p} needs a [{p}] section (缺少 [{p}] 节)"),
            );
        }
    }
    sink.out
}
