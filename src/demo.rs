//! `qianzhi demo`: a SQLite department database with change tables for all seven Guangdong
//! data types and one Gansu 仓储物流 type (a few rows deliberately bad), the simulator
//! in-process (both platforms), one full sync, one query
//! job per credit provider against the query simulator, and a summary. The sample-row
//! generator is shared with the tests and the benchmark.

use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::Path;
use tokio_util::sync::CancellationToken;

use crate::db::{Backend, Db};
use crate::pipeline::{App, RunOptions, run_once};
use crate::schema::{DataType, FieldType, Platform};

pub const GDZW_TYPES: [&str; 7] = [
    "accept",
    "process",
    "result",
    "specialprocedure",
    "material",
    "correction",
    "receive",
];

/// Sample unit: the valid 统一社会信用代码 printed in the Gansu spec.
pub const DEMO_UNIT: &str = "11620000MB199916XB";
pub const VALID_ID: &str = "610431198603210047";

/// Fields the sample tables carry: all but those qianzhi supplies itself (Cd_*, a derived
/// RowGuid, and the reporting unit's ProData* identity from `[unit]`).
fn sample_columns(dt: &DataType) -> impl Iterator<Item = &crate::schema::Field> {
    dt.fields.iter().filter(|f| {
        let c = f.code.as_str();
        !crate::mapping::PIPELINE_FIELDS.contains(&c) && c != "RowGuid" && !c.starts_with("ProData")
    })
}

/// A value for a change-table column, rendered as a SQL literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Null,
    Text(String),
    Int(i64),
    Num(f64),
}

impl Lit {
    pub fn sql(&self) -> String {
        match self {
            Lit::Null => "NULL".into(),
            Lit::Text(s) => format!("'{}'", s.replace('\'', "''")),
            Lit::Int(i) => i.to_string(),
            Lit::Num(f) => f.to_string(),
        }
    }
}

/// Columns of a change table: the data type's fields (named as the field codes, so the
/// mapping is identity) plus id, change_id, cd_time, cd_operation.
pub fn change_table_ddl(backend: Backend, dt: &DataType, table: &str) -> String {
    let mut cols = vec![match backend {
        Backend::Postgres => "change_id BIGSERIAL PRIMARY KEY".to_string(),
        Backend::Mysql => "change_id BIGINT AUTO_INCREMENT PRIMARY KEY".to_string(),
        Backend::Sqlite => "change_id INTEGER PRIMARY KEY AUTOINCREMENT".to_string(),
    }];
    cols.push("id BIGINT NOT NULL".into());
    let ts = match backend {
        Backend::Postgres => "TIMESTAMP",
        Backend::Mysql => "DATETIME",
        Backend::Sqlite => "TEXT",
    };
    for f in sample_columns(dt) {
        let ty = match f.ty {
            FieldType::Int => "BIGINT".to_string(),
            FieldType::Number => "DECIMAL(18,2)".to_string(),
            FieldType::Datetime | FieldType::Date => ts.to_string(),
            FieldType::String => match f.max_len {
                // MySQL caps a row's VARCHARs at 64 KiB; long texts go to TEXT.
                Some(n) if n <= 255 || backend != Backend::Mysql => {
                    format!("VARCHAR({})", n.max(1) * 2)
                }
                _ => "TEXT".to_string(),
            },
        };
        cols.push(format!("{} {ty}", f.code));
    }
    cols.push(format!("cd_time {ts} NOT NULL"));
    cols.push("cd_operation CHAR(1) NOT NULL".into());
    let mut ddl = format!("CREATE TABLE {table} (\n  {}\n)", cols.join(",\n  "));
    if backend == Backend::Mysql {
        ddl.push_str(" DEFAULT CHARSET=utf8mb4");
    }
    ddl.push_str(&format!(
        ";\nCREATE INDEX {table}_ct ON {table} (cd_time, change_id)"
    ));
    ddl
}

/// A valid value for every field of the data type, varied by `i`.
pub fn sample_fields(p: &Platform, dt: &DataType, i: i64) -> Vec<(String, Lit)> {
    let mut out = Vec::new();
    for f in sample_columns(dt) {
        let max = f.max_len.unwrap_or(50) as usize;
        let v = if f.check == Some(crate::schema::Check::Uscc) {
            Lit::Text(DEMO_UNIT.into())
        } else if f.id_type_field.is_some() {
            Lit::Text(VALID_ID.into())
        } else if f.code_set.as_deref() == Some("A.2") {
            Lit::Text("111".into())
        } else if let Some(cs) = &f.code_set {
            // Stable but varied choice among the code set's first codes.
            match p.codesets.get(cs) {
                Some(set) if !set.codes.is_empty() => {
                    Lit::Text(set.codes[(i as usize) % set.codes.len()].0.clone())
                }
                _ => Lit::Text("1".into()),
            }
        } else {
            match f.ty {
                FieldType::Datetime => {
                    Lit::Text(format!("2026-11-{:02} 09:{:02}:00", 1 + i % 20, i % 60))
                }
                FieldType::Date => Lit::Text(format!("2026-11-{:02}", 1 + i % 20)),
                FieldType::Int => Lit::Int(1 + i % 9),
                FieldType::Number => Lit::Num(100.5 + (i % 10) as f64),
                FieldType::String => Lit::Text(sample_text(f, max, i)),
            }
        };
        out.push((f.code.clone(), v));
    }
    out
}

/// A sample 31-character 实施编码 (the start of 办件编号 and 业务办理项编码).
const SAMPLE_TASK_CODE: &str = "11440100MB2C12345X4440100001000";

fn sample_text(f: &crate::schema::Field, max: usize, i: i64) -> String {
    use crate::schema::Format;
    let (code, name) = (f.code.as_str(), f.name.as_str());
    let s = match f.format {
        Some(Format::RegionCode) => "440100".to_string(),
        Some(Format::ProjectNo) => format!("{SAMPLE_TASK_CODE}20261120{:04}", i % 10_000),
        Some(Format::TaskHandleItem) => format!("{SAMPLE_TASK_CODE}{:02}", 1 + i % 99),
        Some(Format::Currency) => "CNY".to_string(),
        Some(Format::ProjectCo) => format!("2026-440100-00-00-{:06}", i % 1_000_000),
        Some(Format::Url) => format!("https://ywxt.example.gov.cn/detail/{i}"),
        Some(Format::JsonObject) => format!(r#"{{"id":{i}}}"#),
        Some(Format::Uuid) => uuid::Uuid::from_u128(i as u128).to_string(),
        None if code.contains("Mobile") => "13812345678".to_string(),
        None if code == "ZipCode" => "510000".to_string(),
        None if max <= 5 => "1".to_string(),
        None => {
            let base = if name.is_empty() { code } else { name };
            format!("{base}{i}")
        }
    };
    s.chars().take(max).collect()
}

pub fn insert_sql(
    table: &str,
    id: i64,
    op: &str,
    cd_time: &str,
    fields: &[(String, Lit)],
) -> String {
    let mut cols = vec!["id".to_string()];
    let mut vals = vec![id.to_string()];
    for (c, v) in fields {
        cols.push(c.clone());
        vals.push(v.sql());
    }
    cols.push("cd_time".into());
    vals.push(Lit::Text(cd_time.into()).sql());
    cols.push("cd_operation".into());
    vals.push(Lit::Text(op.into()).sql());
    format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        cols.join(", "),
        vals.join(", ")
    )
}

pub fn set_field(fields: &mut [(String, Lit)], code: &str, v: Lit) {
    if let Some(slot) = fields.iter_mut().find(|(c, _)| c == code) {
        slot.1 = v;
    }
}

/// Config text for jobs named after the data types over tables `<prefix><type>_changes`.
pub fn gdzw_config(
    db_url: &str,
    api_root: &str,
    token_file: &Path,
    prefix: &str,
    types: &[&str],
    extra_job: &str,
) -> String {
    let mut s = format!(
        r#"# Written by qianzhi demo; every key is documented in config.toml.example.
[database]
url = "{db_url}"

[unit]
uscc = "{DEMO_UNIT}"
name = "示例市政务服务数据管理局"
region_code = "440100"
system_name = "示例业务系统"

[delivery]
retry_initial = "50ms"
retry_max = "1s"

[gdzw]
api_root = "{api_root}"
token_file = "{}"
"#,
        token_file.display()
    );
    for t in types {
        let _ = write!(
            s,
            r#"
[[job]]
name = "{t}"
data_type = "{t}"
source = "{prefix}{t}_changes"
key = ["id"]
seq_column = "change_id"
settle_lag = "0s"
interval = "30s"
{extra_job}
"#
        );
    }
    s
}

/// The `[gansu]` section; `extra` holds further keys (envelope, padding, ...).
pub fn gansu_section(
    base_url: &str,
    authorization_file: &Path,
    key_file: &Path,
    extra: &str,
) -> String {
    format!(
        r#"
[gansu]
base_url = "{base_url}"
authorization_file = "{}"
key_file = "{}"
{extra}
"#,
        authorization_file.display(),
        key_file.display()
    )
}

/// A Gansu job over `<source>`, a change table with the field codes as columns.
pub fn gansu_job(name: &str, data_type: &str, source: &str, extra: &str) -> String {
    format!(
        r#"
[[job]]
name = "{name}"
upstream = "gansu"
data_type = "{data_type}"
source = "{source}"
key = ["id"]
seq_column = "change_id"
settle_lag = "0s"
interval = "30s"
{extra}
"#
    )
}

/// Writes a token or key file readable by its owner only (0600), as the README asks of the
/// real ones. The file is created with that mode, never widened then narrowed; a copy left by
/// an earlier demo run is removed first, since opening it would keep its old mode.
pub fn write_secret_file(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot replace {}", path.display())),
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The demo's Gansu data type and its change table.
pub const GANSU_DEMO_TYPE: &str = "cclw_jjl";

pub async fn run(dir: &Path) -> Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let db_path = dir.join("department.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db_path.display()));
    }
    let db_url = format!("sqlite://{}", db_path.display());
    let token_file = dir.join("gdzw.token");
    write_secret_file(&token_file, "demo-token\n")?;

    let sim = crate::simulate::start(
        crate::simulate::SimConfig {
            token: "demo-token".into(),
            ..Default::default()
        },
        "127.0.0.1:0",
    )
    .await?;
    let qsim = crate::query::sim::start(Default::default(), "127.0.0.1:0").await?;
    crate::query::demo::load_fixtures(&qsim);
    let mut cfg_text = gdzw_config(&db_url, &sim.api_root(), &token_file, "", &GDZW_TYPES, "");
    let gansu_auth = dir.join("gansu.authorization");
    let gansu_key = dir.join("gansu.sm4key");
    write_secret_file(&gansu_auth, &format!("{}\n", sim.cfg.gansu.authorization))?;
    write_secret_file(&gansu_key, &format!("{}\n", sim.cfg.gansu.key))?;
    cfg_text.push_str(&gansu_section(
        &sim.gansu_base_url(),
        &gansu_auth,
        &gansu_key,
        "",
    ));
    let gansu_table = format!("{GANSU_DEMO_TYPE}_changes");
    cfg_text.push_str(&gansu_job(
        GANSU_DEMO_TYPE,
        GANSU_DEMO_TYPE,
        &gansu_table,
        "",
    ));
    cfg_text.push_str(&crate::query::demo::query_config(&qsim, dir, 100, "")?);
    std::fs::write(dir.join("config.toml"), &cfg_text)?;

    let db = Db::connect(&db_url, 2).await?;
    crate::db::migrate::migrate(&db).await?;
    let catalog = crate::schema::Catalog::load(None)?;
    let p = catalog.platform("gdzw").expect("gdzw catalog");
    for t in GDZW_TYPES {
        let dt = &p.data_types[t];
        let table = format!("{t}_changes");
        db.execute_script(&change_table_ddl(Backend::Sqlite, dt, &table))
            .await?;
        let mut script = String::new();
        for id in 1..=5 {
            let _ = writeln!(
                script,
                "{};",
                insert_sql(
                    &table,
                    id,
                    "I",
                    &format!("2026-11-20 10:00:{id:02}"),
                    &sample_fields(p, dt, id)
                )
            );
        }
        let mut changed = sample_fields(p, dt, 1);
        set_field(
            &mut changed,
            "Remark",
            Lit::Text("补充说明（已更新）".into()),
        );
        let _ = writeln!(
            script,
            "{};",
            insert_sql(&table, 1, "U", "2026-11-20 10:05:00", &changed)
        );
        let _ = writeln!(
            script,
            "{};",
            insert_sql(
                &table,
                2,
                "D",
                "2026-11-20 10:06:00",
                &sample_fields(p, dt, 2)
            )
        );
        // Deliberately bad rows, one rule each, so the summary shows what error rows look like.
        let mut bad = sample_fields(p, dt, 6);
        match t {
            "accept" => {
                set_field(
                    &mut bad,
                    "ApplyerPageCode",
                    Lit::Text("610431198603210048".into()),
                );
                let mut missing = sample_fields(p, dt, 7);
                set_field(&mut missing, "TaskName", Lit::Null);
                let _ = writeln!(
                    script,
                    "{};",
                    insert_sql(&table, 7, "I", "2026-11-20 10:07:00", &missing)
                );
            }
            "process" => set_field(&mut bad, "EventName", Lit::Text("7".into())),
            "material" => set_field(&mut bad, "GetTime", Lit::Text("昨天下午".into())),
            // Result is given, so the end time is required (表9: 有结果时要补全).
            "specialprocedure" => set_field(&mut bad, "EndTime", Lit::Null),
            "result" => set_field(
                &mut bad,
                "HandleOrgCode",
                Lit::Text("11620000MB199916XA".into()),
            ),
            _ => {}
        }
        let _ = writeln!(
            script,
            "{};",
            insert_sql(&table, 6, "I", "2026-11-20 10:06:30", &bad)
        );
        db.execute_script(&script).await?;
    }
    {
        let gp = catalog.platform("gansu").expect("gansu catalog");
        let dt = &gp.data_types[GANSU_DEMO_TYPE];
        db.execute_script(&change_table_ddl(Backend::Sqlite, dt, &gansu_table))
            .await?;
        let mut script = String::new();
        for id in 1..=4 {
            let mut f = sample_fields(gp, dt, id);
            set_field(
                &mut f,
                "xy10101001",
                Lit::Text(format!("甘肃示例物流有限公司（第{id}分公司）")),
            );
            let _ = writeln!(
                script,
                "{};",
                insert_sql(
                    &gansu_table,
                    id,
                    "I",
                    &format!("2026-11-20 10:00:{id:02}"),
                    &f
                )
            );
        }
        // A full-width comma: the platform would drop this row after its asynchronous check.
        let mut bad = sample_fields(gp, dt, 5);
        set_field(
            &mut bad,
            "xy10101001",
            Lit::Text("甘肃示例物流有限公司，兰州".into()),
        );
        let _ = writeln!(
            script,
            "{};",
            insert_sql(&gansu_table, 5, "I", "2026-11-20 10:00:05", &bad)
        );
        db.execute_script(&script).await?;
    }
    let mut script = crate::query::demo::subjects_ddl(Backend::Sqlite) + ";\n";
    for r in crate::query::demo::DEMO_SUBJECTS {
        script.push_str(&crate::query::demo::subject_insert(r));
        script.push_str(";\n");
    }
    db.execute_script(&script).await?;
    db.close().await;

    let app = App::new(crate::cli::config_from_str(&cfg_text)?).await?;
    let cancel = CancellationToken::new();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "qianzhi demo: SQLite department database {} + simulated Guangdong gateway {}\n",
        db_path.display(),
        sim.api_root()
    );
    let _ = writeln!(
        out,
        "{:<18} {:>5} {:>9} {:>8} {:>8}  Cd_Batch",
        "job", "rows", "delivered", "invalid", "refused"
    );
    for t in GDZW_TYPES.iter().chain([&GANSU_DEMO_TYPE]) {
        let o = run_once(&app, t, &cancel, &RunOptions::default()).await?;
        let _ = writeln!(
            out,
            "{:<18} {:>5} {:>9} {:>8} {:>8}  {}",
            t,
            o.rows_read,
            o.delivered,
            o.invalid_rows,
            o.refused_by_platform,
            o.batches.join(" ")
        );
    }
    let errors = app.db.recent_errors(20).await?;
    let _ = writeln!(
        out,
        "\nerror rows in qz_error (not sent; fix the source row and it goes out with its next change):"
    );
    for e in &errors {
        let _ = writeln!(
            out,
            "  {:<16} key {:<3} {:<16} {:<13} {}",
            e.0, e.1, e.2, e.3, e.4
        );
    }
    let (accepted, recon, gansu_batches) = {
        let st = sim.state.lock().expect("sim state");
        let g: Vec<String> = st
            .gansu_batches
            .iter()
            .map(|b| format!("{} ({} records)", b.batch_num, b.records))
            .collect();
        (st.accepted_count, st.reconciliations.len(), g)
    };
    let _ = writeln!(
        out,
        "\nsimulator: {accepted} records accepted, {recon} reconciliation rows uploaded (see qz_reconciliation)"
    );
    let _ = writeln!(
        out,
        "simulated Gansu platform batch numbers (qz_batch.platform_batch_num): {}",
        gansu_batches.join(", ")
    );
    let _ = writeln!(
        out,
        "\ncredit queries against the simulated Shuidi, Qichacha and Xinshu APIs (subjects: table {}):",
        crate::query::demo::SUBJECTS_TABLE
    );
    for q in &app.cfg.queries {
        let o = crate::query::run_query_once(&app, &q.name, &cancel).await?;
        let _ = writeln!(
            out,
            "  {:<14} {:<7} {}",
            q.name,
            q.provider,
            crate::query::run::summary(&o)
        );
    }
    for p in crate::status::collect(&app).await?.providers {
        let _ = writeln!(
            out,
            "  {:<14} calls today {}, billed {}, budget left {} of {}",
            p.provider, p.calls_today, p.billed_today, p.budget_left, p.daily_budget
        );
    }
    let _ = writeln!(
        out,
        "  results: qz_shuidi_punish, qz_qcc_customs_credit, qz_qcc_customs_punish, qz_xinshu_tax_black; ledger: qz_query_ledger"
    );
    let _ = writeln!(
        out,
        "config written to {}; try: qianzhi --config {} status",
        dir.join("config.toml").display(),
        dir.join("config.toml").display()
    );
    app.db.close().await;
    Ok(out)
}
