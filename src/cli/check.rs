//! `qianzhi check`: the configuration, the database, the privileges, the views and the
//! platform settings, each problem named with what mends it.

use anyhow::Result;
use std::process::ExitCode;

use super::{Cli, config_path};
use crate::config::{self, Config};
use crate::db::Db;
use crate::mapping::FieldSource;
use crate::schema::Catalog;

/// The privileges the service needs, tested on the account `check` connects as (run it as
/// the service): each missing one is named with the statement that adds it. Returns the
/// number of problems.
async fn check_privileges(cfg: &Config, db: &Db, migrated: bool) -> usize {
    use crate::db::grants;
    if db.backend == crate::db::Backend::Sqlite {
        let Some(path) = grants::sqlite_path(&cfg.database.url) else {
            return 0;
        };
        let problems = grants::sqlite_file_problems(&path);
        for p in &problems {
            println!("✗ database file: {p}; see `qianzhi grants` (数据库文件权限)");
        }
        if problems.is_empty() {
            println!(
                "✓ database file {} is readable and writable",
                path.display()
            );
        }
        return problems.len();
    }
    let report = match db.check_privileges(cfg).await {
        Ok(r) => r,
        Err(e) => {
            println!("✗ privileges could not be checked (无法检查权限): {e:#}");
            return 1;
        }
    };
    let mut problems = 0;
    if migrated {
        for t in &report.invisible {
            println!(
                "✗ {t} does not exist or is not visible to {}: run `qianzhi migrate` \
                 (控制表或序列不存在或不可见)",
                report.account
            );
            problems += 1;
        }
    }
    for m in &report.missing {
        let kind = match m.kind {
            grants::Kind::Schema => "schema",
            grants::Kind::Table => "table",
            grants::Kind::Sequence => "sequence",
        };
        println!(
            "✗ privilege missing (缺少权限): {} may not {} on {kind} {} ({}); fix (修正): {}",
            report.account,
            m.privileges.join(", "),
            m.name,
            m.why,
            m.fix
        );
        problems += 1;
    }
    if report.missing.is_empty() {
        println!(
            "✓ privileges: {} holds every privilege the service needs on {} objects \
             (服务所需权限齐全)",
            report.account, report.checked
        );
    } else {
        println!("  `qianzhi grants` prints every statement the service needs (打印全部授权语句)");
    }
    problems
}

/// `check` of an `odbc:` URL, before the checks every backend gets: the binary has the
/// feature, unixODBC and the driver or DSN are registered, the server answers, and which
/// dialect the SQL will be in. The exit code when it stops there.
async fn check_odbc(cfg: &Config, problems: usize) -> Option<ExitCode> {
    use crate::db::odbc;
    let shown = crate::db::redact_url(&cfg.database.url);
    if !odbc::BUILT {
        println!("✗ database {shown}: {:#}", odbc::not_built());
        println!("{} problem(s) found", problems + 1);
        return Some(ExitCode::FAILURE);
    }
    let url = cfg.database.url.clone();
    let dialect = cfg.database.dialect;
    let probe = tokio::task::spawn_blocking(move || odbc::probe(&url, dialect)).await;
    match probe.map_err(anyhow::Error::from).and_then(|p| p) {
        Ok(p) => {
            println!(
                "✓ database {shown} reachable through ODBC: DBMS {}, dialect {}, text {}, rows {} (经 ODBC 连接成功)",
                p.dbms,
                p.dialect.name(),
                if p.text_utf8 { "UTF-8" } else { "UTF-16" },
                if p.bound_rows {
                    "bound"
                } else {
                    "value by value"
                }
            );
            if !p.text_utf8 {
                // Correct either way; UTF-16 costs the driver a conversion per value.
                println!(
                    "  note: the driver converts text to UTF-16 because the process locale is not \
                     UTF-8; LANG=C.UTF-8 (or zh_CN.UTF-8) in the service's environment lets text \
                     pass unchanged and faster (进程区域设置非 UTF-8，文本经 UTF-16 转换；\
                     在服务环境中设置 LANG=C.UTF-8 可免去转换、更快)"
                );
            }
            None
        }
        Err(e) => {
            println!("✗ database: {e:#}");
            println!("{} problem(s) found", problems + 1);
            Some(ExitCode::FAILURE)
        }
    }
}

/// `qianzhi check`: configuration first (all problems at once), then what only the database
/// can tell: connection, control tables, each source and its columns, unsupplied fields.
pub(super) async fn check(cli: &Cli) -> Result<ExitCode> {
    let path = config_path(cli);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            println!(
                "✗ cannot read config file {} (无法读取配置文件): {e}",
                path.display()
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let vars: Vec<(String, String)> = std::env::vars().collect();
    // Every problem of the file and the environment, then what needs the schema catalog.
    let (cfg, mut issues) = Config::read_all(&text, &path.display().to_string(), &vars);
    let mut problems = 0usize;
    let catalog = match Catalog::load(cfg.schema_dir.as_deref()) {
        Ok(c) => {
            // A key already reported (missing, wrong type) is not reported again.
            for i in cfg.validate(&c) {
                if !issues.iter().any(|j| j.path == i.path) {
                    issues.push(i);
                }
            }
            Some(c)
        }
        Err(e) => {
            println!("✗ schemas: {e:#}");
            problems += 1;
            None
        }
    };
    for issue in &issues {
        println!("✗ {issue}");
    }
    problems += issues.len();
    let has_issue = |prefix: &str| issues.iter().any(|i| i.path.starts_with(prefix));
    // Costly but working settings: shown, not counted as problems.
    for w in crate::config::query::warnings(&cfg) {
        println!("! {w}");
    }
    if let Some(g) = &cfg.gdzw {
        if g.token.is_read() {
            println!("✓ gdzw token is readable");
        }
        if matches!(g.token.from, config::SecretFrom::Inline(_)) {
            println!("! gdzw.token is written in the config file; prefer token_file or token_env");
        }
    }
    if let Some(g) = &cfg.gansu
        && g.authorization.is_read()
        && g.key.is_read()
    {
        // Builds the client as `run` would: the key parsed in its key_form.
        match crate::upstream::gansu::GansuClient::from_config(g, cfg.delivery.http_timeout()) {
            Ok(_) => println!("✓ gansu Authorization and SM4 key are readable"),
            Err(e) => {
                println!("✗ gansu: {e:#}");
                problems += 1;
            }
        }
    }
    let credentials = [
        cfg.shuidi.as_ref().map(|c| vec![&c.pkey]),
        cfg.qcc.as_ref().map(|c| vec![&c.key, &c.secret_key]),
        cfg.xinshu.as_ref().map(|c| vec![&c.apikey, &c.private_key]),
    ];
    let credentials: Vec<_> = credentials.into_iter().flatten().flatten().collect();
    if !credentials.is_empty() && credentials.iter().all(|c| c.is_read()) {
        println!("✓ credit-query credentials are readable");
    }
    if has_issue("database") {
        println!("✗ database not checked: fix [database] first (先修正 [database])");
        println!("{problems} problem(s) found");
        return Ok(ExitCode::FAILURE);
    }
    if cfg.database.url.starts_with(crate::config::ODBC_SCHEME)
        && let Some(code) = check_odbc(&cfg, problems).await
    {
        return Ok(code);
    }
    let db = match Db::connect_as(&cfg.database.url, cfg.database.dialect, 2).await {
        Ok(db) => {
            db.set_odbc_packed_rows(cfg.database.odbc_packed_rows);
            println!(
                "✓ database {} reachable",
                crate::db::redact_url(&cfg.database.url)
            );
            db
        }
        Err(e) => {
            println!("✗ database: {e:#}");
            return Ok(ExitCode::FAILURE);
        }
    };
    // qz_lease: migration 7, which every run needs for its lease.
    let migrated = db.source_columns("qz_batch").await.is_ok();
    let leases = db.source_columns("qz_lease").await.is_ok();
    if !migrated || !leases {
        println!("✗ control tables missing: run `qianzhi migrate`");
        problems += 1;
    }
    problems += check_privileges(&cfg, &db, migrated).await;
    for job in &cfg.jobs {
        // A job whose source, platform or data type has a problem is checked against the
        // database once that is fixed; other problems do not hold it back.
        let p = format!("job[{}] ({}).", job.entry, job.name);
        if ["upstream", "data_type", "source"]
            .iter()
            .any(|k| has_issue(&format!("{p}{k}")))
        {
            continue;
        }
        let Some(dt) = catalog
            .as_ref()
            .and_then(|c| c.data_type(job.upstream.as_str(), &job.data_type))
        else {
            continue;
        };
        let described = match db.source_column_types(&job.source).await {
            Ok(c) => c,
            Err(e) => {
                println!("✗ job {}: {e:#}", job.name);
                problems += 1;
                continue;
            }
        };
        let columns: Vec<String> = described.iter().map(|c| c.name.clone()).collect();
        let has = |c: &str| columns.iter().any(|x| x.eq_ignore_ascii_case(c));
        let columns_present = job.change_columns().iter().all(|c| has(c));
        for c in job.change_columns() {
            if !has(c) {
                println!(
                    "✗ job {}: source {} has no column {c}",
                    job.name, job.source
                );
                problems += 1;
            }
        }
        let app_plan = crate::mapping::Plan::resolve(crate::mapping::PlanInput {
            job: &job.name,
            data_type: dt,
            columns: &columns,
            map: &job.map,
            constants: &job.constants,
            unit: &cfg.unit,
            null_fields: cfg
                .gdzw
                .as_ref()
                .map(|g| g.null_fields)
                .unwrap_or(crate::config::NullFields::Omit),
        });
        for c in app_plan.missing_columns(&columns) {
            println!(
                "✗ job {}: mapped column {c} is not in {}",
                job.name, job.source
            );
            problems += 1;
        }
        // Only the columns the job reads matter: the others are never selected.
        let needed = crate::mapping::needed_columns(&columns, &app_plan, job);
        for c in described
            .iter()
            .filter(|c| !c.readable && needed.contains(&c.name))
        {
            println!(
                "✗ job {}: {}",
                job.name,
                c.unreadable_message(db.backend, &job.source)
            );
            problems += 1;
        }
        let unsupplied: Vec<&str> = app_plan
            .fields
            .iter()
            .filter(|(code, _, src)| {
                *src == FieldSource::Unsupplied && dt.field(code).is_some_and(|f| f.required)
            })
            .map(|(c, _, _)| c.as_str())
            .collect();
        if unsupplied.is_empty() {
            println!(
                "✓ job {}: {} ({}) supplies every required field of {}",
                job.name,
                job.source,
                columns.len(),
                job.data_type
            );
        } else {
            println!(
                "✗ job {}: required fields of {} that no column or constant supplies: {}",
                job.name,
                job.data_type,
                unsupplied.join(", ")
            );
            problems += 1;
        }
        if columns_present {
            problems += check_capture(&db, job).await;
            check_packing(&db, job, &needed).await;
        }
    }
    for q in &cfg.queries {
        let p = format!("query[{}] ({}).", q.entry, q.name);
        if has_issue(&format!("{p}subjects")) || has_issue(&format!("{p}provider")) {
            continue;
        }
        match db.source_columns(&q.subjects).await {
            Ok(columns) => {
                let missing: Vec<String> = crate::query::run::subject_columns(q)
                    .into_iter()
                    .filter(|c| !columns.iter().any(|x| x.eq_ignore_ascii_case(c)))
                    .collect();
                if missing.is_empty() {
                    println!(
                        "✓ query {}: subjects view {} has the columns",
                        q.name, q.subjects
                    );
                } else {
                    println!(
                        "✗ query {}: subjects view {} has no column {}",
                        q.name,
                        q.subjects,
                        missing.join(", ")
                    );
                    problems += 1;
                }
            }
            Err(e) => {
                println!("✗ query {}: {e:#}", q.name);
                problems += 1;
            }
        }
    }
    db.close().await;
    if problems == 0 {
        println!("check passed");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{problems} problem(s) found");
        Ok(ExitCode::FAILURE)
    }
}

/// `check` of how a job's pages cross psqlODBC (PostgreSQL through ODBC only): packed, a row
/// a value, or column by column (slower) and which column keeps them so. Never a problem.
async fn check_packing(db: &Db, job: &crate::config::JobConfig, select: &[String]) {
    let spec = crate::db::source::SourceSpec::of(job);
    match db.odbc_packing(&spec, select).await {
        Ok(None) => {}
        Ok(Some(Ok(()))) => println!(
            "✓ job {}: pages read packed through psqlODBC, a row a value (整行打包读取)",
            job.name
        ),
        Ok(Some(Err(why))) => println!(
            "⚠ job {}: pages read column by column through psqlODBC (slower: the driver converts every value): {why}; \
             cast it in the view (to TEXT or INTEGER) to read packed \
             (逐列读取，较慢；在视图中把该列转为 TEXT 或 INTEGER 即可整行打包读取)",
            job.name
        ),
        Err(e) => println!("⚠ job {}: {e:#}", job.name),
    }
}

/// `check` of what a job's mode needs from its source: a unique key where rows stand for
/// themselves (incremental, snapshot: a bounded duplicate query), and the index its read
/// uses (a warning with the `CREATE INDEX` to run). Returns the number of problems.
async fn check_capture(db: &Db, job: &crate::config::JobConfig) -> usize {
    use crate::config::Mode;
    let mut problems = 0;
    if job.mode != Mode::Changelog {
        match db.duplicate_keys(&job.source, &job.key, 5).await {
            Ok(d) if d.is_empty() => println!(
                "✓ job {}: key ({}) is unique in {}",
                job.name,
                job.key.join(", "),
                job.source
            ),
            Ok(d) => {
                println!(
                    "✗ job {}: 键 ({}) 在 {} 中不唯一，例如 [{}] (key ({}) is not unique in {}, e.g. [{}])",
                    job.name,
                    job.key.join(", "),
                    job.source,
                    d.join("], ["),
                    job.key.join(", "),
                    job.source,
                    d.join("], [")
                );
                problems += 1;
            }
            Err(e) => {
                println!("✗ job {}: {e:#}", job.name);
                problems += 1;
            }
        }
    }
    // Seq order: a repeated value would let a page boundary fall between two rows with it,
    // and the next page (after that value) skip the second.
    if let Some(seq) = job.seq_order() {
        match db.duplicate_keys(&job.source, &[seq.to_string()], 5).await {
            Ok(d) if d.is_empty() => println!(
                "✓ job {}: seq_column {seq} is unique in {}",
                job.name, job.source
            ),
            Ok(d) => {
                println!(
                    "✗ job {}: 序号列 {seq} 在 {} 中有重复值，例如 {}；order = \"seq\" 需要严格递增、不重复的序号 \
                     (seq_column {seq} repeats in {}, e.g. {}: order = \"seq\" needs a strictly increasing, unique number)",
                    job.name,
                    job.source,
                    d.join(", "),
                    job.source,
                    d.join(", ")
                );
                problems += 1;
            }
            Err(e) => {
                println!("✗ job {}: {e:#}", job.name);
                problems += 1;
            }
        }
    }
    // The columns the read is ordered by (the keyset), or the key alone for a snapshot.
    let keyset = job.keyset();
    let cols: Vec<&str> = match job.mode {
        Mode::Snapshot => job.key.iter().map(String::as_str).collect(),
        _ => keyset.iter().map(String::as_str).collect(),
    };
    let create = format!(
        "CREATE INDEX {}_qz ON {} ({});",
        job.source.rsplit('.').next().unwrap_or(&job.source),
        job.source,
        cols.join(", ")
    );
    match db.source_indexes(&job.source).await {
        Ok(Some(ix)) if crate::db::inspect::has_leading_index(&ix, &cols) => println!(
            "✓ job {}: {} has an index on ({})",
            job.name,
            job.source,
            cols.join(", ")
        ),
        Ok(Some(_)) => println!(
            "⚠ job {}: {} 没有以 ({}) 开头的索引，每次读取都要扫描全表；建议：{create}              ({} has no index on ({}); every read scans the whole table: {create})",
            job.name,
            job.source,
            cols.join(", "),
            job.source,
            cols.join(", ")
        ),
        Ok(None) if job.mode != Mode::Changelog => println!(
            "ℹ job {}: {} 是视图，请确认其基表有与 ({}) 对应的索引 ({} is a view: make sure its \
             base table has an index on the columns behind ({}))",
            job.name,
            job.source,
            cols.join(", "),
            job.source,
            cols.join(", ")
        ),
        Ok(None) => {}
        Err(e) => println!("⚠ job {}: {e:#}", job.name),
    }
    problems
}
