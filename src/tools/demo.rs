//! `qianzhi demo`: a SQLite department database with change tables for all seven Guangdong
//! data types and one Gansu 仓储物流 type (a few rows deliberately bad), the simulator
//! in-process (both platforms), one full sync, one query
//! job per credit provider against the query simulator, and a summary. The config-text
//! builders here are shared with the benchmark and the tests; the sample rows come from
//! `schema::sample`, the SQL from `db::tools`.

use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::Path;
use tokio_util::sync::CancellationToken;

use super::{config_from_str, write_secret_file};
use crate::db::Db;
use crate::db::tools::ChangeRow;
use crate::pipeline::{App, RunOptions, run_once};
use crate::schema::sample::{GDZW_TYPES, Lit, SAMPLE_UNIT, sample_fields, set_field};

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
uscc = "{SAMPLE_UNIT}"
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

/// The `[http]` section of the demo's config: off unless set, so the demo shows it.
pub const DEMO_HTTP: &str = "\n[http]\nlisten = \"127.0.0.1:9187\"\n";

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

/// The demo's Gansu data type and its change table.
pub const GANSU_DEMO_TYPE: &str = "cclw_jjl";

/// A demo change row: key, operation, change time, field values.
type DemoRow = (i64, &'static str, String, Vec<(String, Lit)>);

fn as_rows(rows: &[DemoRow]) -> Vec<ChangeRow<'_>> {
    rows.iter()
        .map(|(id, op, cd_time, fields)| ChangeRow {
            id: *id,
            op,
            cd_time,
            fields,
        })
        .collect()
}

/// The rows of one Guangdong change table, in the order a department would write them:
/// five inserts, an update, a delete, and deliberately bad rows (one rule each) so the
/// summary shows what error rows look like.
fn gdzw_rows(t: &str, sample: impl Fn(i64) -> Vec<(String, Lit)>) -> Vec<DemoRow> {
    let mut rows: Vec<DemoRow> = (1..=5)
        .map(|id| (id, "I", format!("2026-11-20 10:00:{id:02}"), sample(id)))
        .collect();
    let mut changed = sample(1);
    set_field(
        &mut changed,
        "Remark",
        Lit::Text("补充说明（已更新）".into()),
    );
    rows.push((1, "U", "2026-11-20 10:05:00".into(), changed));
    rows.push((2, "D", "2026-11-20 10:06:00".into(), sample(2)));
    let mut bad = sample(6);
    match t {
        "accept" => {
            set_field(
                &mut bad,
                "ApplyerPageCode",
                Lit::Text("610431198603210048".into()),
            );
            let mut missing = sample(7);
            set_field(&mut missing, "TaskName", Lit::Null);
            rows.push((7, "I", "2026-11-20 10:07:00".into(), missing));
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
    rows.push((6, "I", "2026-11-20 10:06:30".into(), bad));
    rows
}

/// Four Gansu rows and one the platform drops after its asynchronous check (a full-width
/// comma in the company name).
fn gansu_rows(sample: impl Fn(i64) -> Vec<(String, Lit)>) -> Vec<DemoRow> {
    let named = |id: i64, name: String| {
        let mut f = sample(id);
        set_field(&mut f, "xy10101001", Lit::Text(name));
        (id, "I", format!("2026-11-20 10:00:{id:02}"), f)
    };
    let mut rows: Vec<DemoRow> = (1..=4)
        .map(|id| named(id, format!("甘肃示例物流有限公司（第{id}分公司）")))
        .collect();
    rows.push(named(5, "甘肃示例物流有限公司，兰州".into()));
    rows
}

/// The demo's jobs over views without change columns (README, 三种采集方式): the current rows
/// of `accept_current`, read incrementally by their last-changed time and as a snapshot.
const CAPTURE_JOBS: &str = r#"
[[job]]
name = "accept_incremental"
data_type = "accept"
mode = "incremental"
source = "v_accept_incremental"
key = ["id"]
time_column = "updated_at"
deleted_column = "is_deleted"
deleted_values = ["1"]
settle_lag = "0s"
interval = "30s"

[[job]]
name = "accept_snapshot"
data_type = "accept"
mode = "snapshot"
source = "v_accept_snapshot"
key = ["id"]
interval = "1h"
"#;

const CAPTURE_JOB_NAMES: [&str; 2] = ["accept_incremental", "accept_snapshot"];

/// `accept_current`: one valid accept row per id (no change columns but a last-changed time
/// and a soft-delete flag), and the two views the capture jobs read.
async fn create_capture_views(db: &Db, p: &crate::schema::Platform) -> Result<()> {
    let dt = &p.data_types["accept"];
    db.create_change_table(dt, "accept_current").await?;
    let samples: Vec<_> = (1..=20).map(|i| sample_fields(p, dt, i)).collect();
    let rows: Vec<ChangeRow> = samples
        .iter()
        .zip(1..)
        .map(|(fields, id)| ChangeRow {
            id,
            op: "I",
            cd_time: "2026-11-20 10:00:00",
            fields,
        })
        .collect();
    db.insert_change_rows("accept_current", &rows).await?;
    let fields: Vec<String> = crate::schema::sample::sample_columns(dt)
        .map(|f| f.code.clone())
        .collect();
    let fields = fields.join(", ");
    db.execute_script(&format!(
        "ALTER TABLE accept_current ADD COLUMN is_deleted INTEGER NOT NULL DEFAULT 0;\n\
         CREATE VIEW v_accept_incremental AS SELECT id, {fields}, cd_time AS updated_at, \
         is_deleted FROM accept_current;\n\
         CREATE VIEW v_accept_snapshot AS SELECT id, {fields} FROM accept_current"
    ))
    .await
}

pub async fn run(dir: &Path) -> Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let db_path = dir.join("department.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db_path.display()));
    }
    let db_url = format!("sqlite://{}", db_path.display());
    let token_file = dir.join("gdzw.token");
    write_secret_file(&token_file, "demo-token\n")?;

    let sim = super::simulate::start(
        super::simulate::SimConfig {
            token: "demo-token".into(),
            ..Default::default()
        },
        "127.0.0.1:0",
    )
    .await?;
    let qsim = super::query_sim::start(Default::default(), "127.0.0.1:0").await?;
    super::query_demo::load_fixtures(&qsim);
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
    cfg_text.push_str(CAPTURE_JOBS);
    cfg_text.push_str(&super::query_demo::query_config(&qsim, dir, 100, "")?);
    // `qianzhi run` with this config serves /metrics and /healthz here (README, 运维).
    cfg_text.push_str(DEMO_HTTP);
    std::fs::write(dir.join("config.toml"), &cfg_text)?;

    let db = Db::connect(&db_url, 2).await?;
    crate::db::migrate::migrate(&db).await?;
    let catalog = crate::schema::Catalog::load(None)?;
    let p = catalog.platform("gdzw").expect("gdzw catalog");
    for t in GDZW_TYPES {
        let dt = &p.data_types[t];
        let table = format!("{t}_changes");
        db.create_change_table(dt, &table).await?;
        db.insert_change_rows(&table, &as_rows(&gdzw_rows(t, |i| sample_fields(p, dt, i))))
            .await?;
    }
    create_capture_views(&db, p).await?;
    let gp = catalog.platform("gansu").expect("gansu catalog");
    let dt = &gp.data_types[GANSU_DEMO_TYPE];
    db.create_change_table(dt, &gansu_table).await?;
    db.insert_change_rows(
        &gansu_table,
        &as_rows(&gansu_rows(|i| sample_fields(gp, dt, i))),
    )
    .await?;
    db.create_subjects_table(
        super::query_demo::SUBJECTS_TABLE,
        super::query_demo::DEMO_SUBJECTS,
    )
    .await?;
    db.close().await;

    let app = App::new(config_from_str(&cfg_text)?).await?;
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
    let capture = CAPTURE_JOB_NAMES.iter();
    for t in GDZW_TYPES.iter().chain([&GANSU_DEMO_TYPE]).chain(capture) {
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
        super::query_demo::SUBJECTS_TABLE
    );
    for q in &app.cfg.queries {
        let o = crate::query::run_query_once(app.query_app(), &q.name, &cancel).await?;
        let _ = writeln!(
            out,
            "  {:<14} {:<7} {}",
            q.name,
            q.provider,
            crate::query::run::summary(&o)
        );
    }
    for p in crate::status::collect(&app.status_app()).await?.providers {
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
