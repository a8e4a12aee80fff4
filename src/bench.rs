//! `qianzhi bench`: loads N accept rows (or, with `--upstream gansu`, 仓储物流寄件量 rows) into a
//! change table of a fresh database and times their delivery to the in-process simulator;
//! also peak memory and an idle poll.

use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::db::{Backend, Db};
use crate::demo::{change_table_ddl, gdzw_config, insert_sql, sample_fields};
use crate::pipeline::{App, RunOptions, run_once};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// 测试用的数据库服务器：在其上删除并新建 qianzhi_bench 库（PostgreSQL、MySQL），sqlite:
    /// 则用临时文件 / Server to benchmark on; a database `qianzhi_bench` is dropped and created
    /// there (PostgreSQL, MySQL), or a temporary file is used (sqlite:)
    #[arg(
        long,
        env = "QIANZHI_BENCH_DATABASE",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
    )]
    pub database: String,
    /// 要投递的变更表行数 / Change-table rows to deliver
    #[arg(long, default_value_t = 100_000)]
    pub rows: i64,
    /// 每个批次（Cd_Batch）的行数 / Rows per batch (Cd_Batch)
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    /// 平台：gdzw（accept 行，每次调用 99 条）或 gansu（cclw_jjl 行，SM4 加密，每次
    /// --per-call 条） / Platform: gdzw (accept rows, 99 per call) or gansu (cclw_jjl rows,
    /// SM4-encrypted, `--per-call` per call)
    #[arg(long, default_value = "gdzw", value_parser = ["gdzw", "gansu"])]
    pub upstream: String,
    /// 甘肃每次调用的记录数（1..=500） / Records per Gansu call (1..=500)
    #[arg(long, default_value_t = 500)]
    pub per_call: usize,
}

fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let slash = base[scheme_end..].find('/').map(|i| i + scheme_end);
    let host = match slash {
        Some(s) => &base[..s],
        None => base,
    };
    format!("{host}/{name}{query}")
}

async fn fresh_database(url: &str) -> Result<(String, Option<tempfile::TempDir>)> {
    sqlx::any::install_default_drivers();
    match Backend::from_url(url)? {
        Backend::Sqlite => {
            let dir = tempfile::tempdir()?;
            Ok((
                format!("sqlite://{}", dir.path().join("bench.db").display()),
                Some(dir),
            ))
        }
        _ => {
            let admin = sqlx::AnyPool::connect(url)
                .await
                .with_context(|| format!("cannot connect to {}", crate::db::redact_url(url)))?;
            sqlx::query("DROP DATABASE IF EXISTS qianzhi_bench")
                .execute(&admin)
                .await?;
            sqlx::query("CREATE DATABASE qianzhi_bench")
                .execute(&admin)
                .await?;
            admin.close().await;
            Ok((with_database(url, "qianzhi_bench"), None))
        }
    }
}

/// Starts `qianzhi simulate --count-only` on a free port and reads its address.
async fn spawn_simulator() -> Result<(tokio::process::Child, String)> {
    use tokio::io::AsyncBufReadExt;
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .args([
            "simulate",
            "--listen",
            "127.0.0.1:0",
            "--token",
            "bench-token",
            "--count-only",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the simulator process")?;
    let stdout = child.stdout.take().context("simulator stdout")?;
    let mut reader = tokio::io::BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    // Keep reading, so the simulator never writes into a closed pipe.
    tokio::spawn(async move {
        let mut sink = String::new();
        while reader.read_line(&mut sink).await.is_ok_and(|n| n > 0) {
            sink.clear();
        }
    });
    let root = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .with_context(|| format!("unexpected simulator banner: {line}"))?
        .to_string();
    Ok((child, root))
}

/// Linux resets VmHWM to the current RSS when 5 is written to clear_refs.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident set size of this process, from the kernel.
pub fn peak_rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub async fn run(args: &BenchArgs) -> Result<()> {
    let (url, _tmp) = fresh_database(&args.database).await?;
    let backend = Backend::from_url(&url)?;
    let db = Db::connect(&url, 4).await?;
    crate::db::migrate::migrate(&db).await?;
    let catalog = crate::schema::Catalog::load(None)?;
    let gansu = args.upstream == "gansu";
    let (platform, job) = if gansu {
        ("gansu", crate::demo::GANSU_DEMO_TYPE)
    } else {
        ("gdzw", "accept")
    };
    let p = catalog.platform(platform).expect("catalog");
    let dt = &p.data_types[job];
    let table = format!("bench_{job}_changes");
    db.execute_script(&change_table_ddl(backend, dt, &table))
        .await?;

    let t0 = Instant::now();
    let per_stmt = 500;
    let mut i = 0;
    while i < args.rows {
        let n = per_stmt.min(args.rows - i);
        let mut values = Vec::with_capacity(n as usize);
        let mut head = String::new();
        for k in 0..n {
            let id = i + k + 1;
            let stmt = insert_sql(
                &table,
                id,
                "I",
                "2026-11-20 10:00:00",
                &sample_fields(p, dt, id),
            );
            let (h, v) = stmt.split_once(" VALUES ").expect("insert");
            head = h.to_string();
            values.push(v.to_string());
        }
        // Not kept as a prepared statement: each of these texts is used once.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "{head} VALUES {}",
            values.join(", ")
        )))
        .persistent(false)
        .execute(&db.any)
        .await?;
        i += n;
    }
    let load = t0.elapsed();
    db.close().await;

    // The simulator runs as its own process, so the memory figure is qianzhi's alone.
    let (mut sim_child, api_root) = spawn_simulator().await?;
    let tmp = tempfile::tempdir()?;
    let token = tmp.path().join("token");
    std::fs::write(&token, "bench-token")?;
    let extra = format!("batch_size = {}", args.batch_size);
    let host = api_root
        .split("/ebus")
        .next()
        .unwrap_or(&api_root)
        .to_string();
    let text = if gansu {
        // The simulator process's default Gansu credentials (see `qianzhi simulate --help`).
        let defaults = crate::simulate::gansu::GansuSim::default();
        let (auth, key) = (tmp.path().join("auth"), tmp.path().join("key"));
        std::fs::write(&auth, &defaults.authorization)?;
        std::fs::write(&key, &defaults.key)?;
        let mut t = gdzw_config(&url, &api_root, &token, "bench_", &[], "");
        t.push_str(&crate::demo::gansu_section(
            &format!("{host}{}", defaults.base_path),
            &auth,
            &key,
            &format!("max_records_per_call = {}", args.per_call),
        ));
        t.push_str(&crate::demo::gansu_job(job, job, &table, &extra));
        t
    } else {
        gdzw_config(&url, &api_root, &token, "bench_", &["accept"], &extra)
    };
    let app = App::new(crate::cli::config_from_str(&text)?).await?;
    let cancel = CancellationToken::new();

    // Peak memory is measured from here: loading the table above is not qianzhi's work.
    reset_peak_rss();
    let t1 = Instant::now();
    let o = run_once(&app, job, &cancel, &RunOptions::default()).await?;
    let took = t1.elapsed();
    let peak = peak_rss_mb();
    let t2 = Instant::now();
    let idle = run_once(&app, job, &cancel, &RunOptions::default()).await?;
    let idle_took = t2.elapsed();
    let stats: serde_json::Value = reqwest::get(format!("{host}{}", crate::simulate::STATS_PATH))
        .await?
        .json()
        .await?;
    let _ = sim_child.kill().await;
    let accepted = stats["accepted"].as_u64().unwrap_or(0);
    let calls = stats["calls"].as_u64().unwrap_or(0);
    if accepted as i64 != args.rows || o.delivered as i64 != args.rows {
        bail!(
            "benchmark lost rows: delivered {} of {}, simulator accepted {accepted}",
            o.delivered,
            args.rows
        );
    }
    let mut out = String::new();
    let per_call = if gansu {
        format!(
            "{} records per call, SM4-CBC {:?} envelope",
            args.per_call,
            app.cfg
                .gansu
                .as_ref()
                .map(|g| g.envelope)
                .unwrap_or(crate::config::Envelope::Values)
        )
    } else {
        "99 records per call".to_string()
    };
    let _ = writeln!(
        out,
        "qianzhi bench: {} {job} rows ({}) on {}, batch_size {}, {per_call}",
        args.rows,
        args.upstream,
        backend.name(),
        args.batch_size
    );
    let _ = writeln!(
        out,
        "  load change table    {:>8.1} s (not counted)",
        load.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "  deliver end to end   {:>8.1} s   {:.0} rows/s   ({} batches, {calls} calls{})",
        took.as_secs_f64(),
        args.rows as f64 / took.as_secs_f64(),
        o.batches.len(),
        if gansu { "" } else { " incl. reconciliation" }
    );
    let _ = writeln!(
        out,
        "  peak memory (VmHWM)  {:>8.1} MB (qianzhi process while delivering; simulator runs separately)",
        peak.unwrap_or(f64::NAN)
    );
    let _ = writeln!(
        out,
        "  idle poll            rows read {}, {:.1} ms",
        idle.rows_read,
        idle_took.as_secs_f64() * 1000.0
    );
    let _ = writeln!(out, "  simulator accepted   {accepted}");
    print!("{out}");
    app.db.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_name_is_replaced() {
        for (u, want) in [
            (
                "postgres://postgres@127.0.0.1:5432/test",
                "postgres://postgres@127.0.0.1:5432/qianzhi_bench",
            ),
            (
                "mysql://root@127.0.0.1:3306/test?ssl-mode=disabled",
                "mysql://root@127.0.0.1:3306/qianzhi_bench?ssl-mode=disabled",
            ),
            ("postgres://h", "postgres://h/qianzhi_bench"),
        ] {
            assert_eq!(super::with_database(u, "qianzhi_bench"), want);
        }
    }
}
