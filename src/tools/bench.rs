//! `qianzhi bench`: loads N accept rows (or, with `--upstream gansu`, 仓储物流寄件量 rows) into a
//! change table of a fresh database and times their delivery to the in-process simulator;
//! also peak memory and an idle poll.

use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config_from_str;
use super::demo::{GANSU_DEMO_TYPE, gansu_job, gansu_section, gdzw_config};
use crate::db::tools::ChangeRow;
use crate::db::{Backend, Db};
use crate::pipeline::{App, RunOptions, run_once};
use crate::schema::sample::sample_fields;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// 测试用的数据库服务器：在其上删除并新建 qianzhi_bench 库（PostgreSQL、MySQL），sqlite:
    /// 则用临时文件，odbc: 则直接用所给的库（须是没有 qz_ 控制表的空库） / Server to benchmark
    /// on; a database `qianzhi_bench` is dropped and created there (PostgreSQL, MySQL), a
    /// temporary file is used (sqlite:), or the database named is used as it is (odbc:, which
    /// must hold no qz_ control tables)
    #[arg(
        long,
        env = "QIANZHI_BENCH_DATABASE",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
    )]
    pub database: String,
    /// 在服务器上删除并新建的库名（几个人共用一台服务器时各用各的） / The database dropped and
    /// created on that server (one each when several people share a server)
    #[arg(long, default_value = "qianzhi_bench")]
    pub db_name: String,
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
    /// 模拟器每个答复的延迟（毫秒，模拟广域网） / Milliseconds the simulator waits before
    /// each answer (a wide-area network)
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub latency: u64,
    /// 写入 [delivery] max_in_flight（1..=32）；不给则用默认值 / [delivery] max_in_flight
    /// (1..=32); the default when not given
    #[arg(long)]
    pub max_in_flight: Option<usize>,
    /// 只装入变更表并把配置写到 DIR/config.toml，不报送；模拟器由调用者另行启动（见
    /// scripts/callgrind-once.sh） / Only load the change table and write DIR/config.toml, deliver
    /// nothing; the caller starts the simulator (see scripts/callgrind-once.sh)
    #[arg(long, value_name = "DIR", requires = "api_root")]
    pub prepare_only: Option<std::path::PathBuf>,
    /// 与 --prepare-only 一起用：模拟器的广东接口根地址（`qianzhi simulate` 打印的那个） / With
    /// --prepare-only: the simulator's Guangdong API root, as `qianzhi simulate` prints it
    #[arg(long, value_name = "URL")]
    pub api_root: Option<String>,
    /// 采集方式：changelog（变更表）或 snapshot（整表比对：先全部报送，再改动 --changed 比例的行
    /// 并计时比对） / Capture mode: changelog (a change table) or snapshot (the whole view
    /// compared: all rows delivered first, then --changed of them changed and the diff timed)
    #[arg(long, default_value = "changelog", value_parser = ["changelog", "snapshot"])]
    pub mode: String,
    /// 与 --mode snapshot 一起用：第二次快照前改动的行的比例（0..=1） / With --mode snapshot:
    /// the share of rows changed before the second snapshot (0..=1)
    #[arg(long, default_value_t = 0.01)]
    pub changed: f64,
}

/// A fresh database for the run: `name` dropped and created on a server, or a file in a
/// temporary directory for SQLite. With `keep`, the SQLite file goes there and outlives the run.
async fn fresh_database(
    url: &str,
    name: &str,
    keep: Option<&std::path::Path>,
) -> Result<(String, Option<tempfile::TempDir>)> {
    if url.starts_with(crate::config::ODBC_SCHEME) {
        return empty_odbc_database(url).await;
    }
    match Backend::from_url(url)? {
        Backend::Sqlite => {
            let dir = match keep {
                Some(_) => None,
                None => Some(tempfile::tempdir()?),
            };
            let at = keep
                .or(dir.as_ref().map(|d| d.path()))
                .context("a directory")?;
            let file = at.join("bench.db");
            let _ = std::fs::remove_file(&file);
            Ok((format!("sqlite://{}", file.display()), dir))
        }
        Backend::Postgres | Backend::Mysql => Ok((
            crate::db::tools::create_database(url, name, true).await?,
            None,
        )),
        Backend::Odbc(_) => unreachable!("odbc: URLs are taken above"),
    }
}

/// ODBC cannot make a database everywhere (DM has none to make): the one named is used, and it
/// must hold no control tables, so a bench never writes over a department's.
async fn empty_odbc_database(url: &str) -> Result<(String, Option<tempfile::TempDir>)> {
    let db = Db::connect(url, 1).await?;
    let used = db.source_columns("qz_batch").await.is_ok();
    db.close().await;
    anyhow::ensure!(
        !used,
        "bench --database odbc: needs an empty database, and {} holds qianzhi's control \
         tables: create a new one for the bench (经 ODBC 测试需使用空库，该库已有 qz_ 控制表，\
         请新建一个库)",
        crate::db::redact_url(url)
    );
    Ok((url.to_string(), None))
}

/// Starts `qianzhi simulate --count-only` on a free port and reads its address.
async fn spawn_simulator(latency_ms: u64) -> Result<(tokio::process::Child, String)> {
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
            "--latency",
            &latency_ms.to_string(),
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

/// `http://127.0.0.1:port` of a simulator's API root.
fn host_of(api_root: &str) -> String {
    api_root
        .split("/ebus")
        .next()
        .unwrap_or(api_root)
        .to_string()
}

/// The configuration of a bench run against the simulator at `api_root`; its secret files
/// are written into `dir`.
fn config_text(
    args: &BenchArgs,
    url: &str,
    api_root: &str,
    dir: &std::path::Path,
) -> Result<String> {
    let text = config_base(args, url, api_root, dir)?;
    Ok(match args.max_in_flight {
        Some(n) => text.replacen(
            "[delivery]\n",
            &format!("[delivery]\nmax_in_flight = {n}\n"),
            1,
        ),
        None => text,
    })
}

/// The config of a bench run before the `--max-in-flight` override.
fn config_base(
    args: &BenchArgs,
    url: &str,
    api_root: &str,
    dir: &std::path::Path,
) -> Result<String> {
    let token = dir.join("token");
    std::fs::write(&token, "bench-token")?;
    let extra = format!("batch_size = {}", args.batch_size);
    if args.upstream != "gansu" {
        let text = gdzw_config(url, api_root, &token, "bench_", &["accept"], &extra);
        return Ok(match args.mode.as_str() {
            "snapshot" => text.replacen("seq_column = \"change_id\"\n", "mode = \"snapshot\"\n", 1),
            _ => text,
        });
    }
    // The simulator process's default Gansu credentials (see `qianzhi simulate --help`).
    let defaults = super::simulate::gansu::GansuSim::default();
    let (auth, key) = (dir.join("auth"), dir.join("key"));
    std::fs::write(&auth, &defaults.authorization)?;
    std::fs::write(&key, &defaults.key)?;
    let job = GANSU_DEMO_TYPE;
    let mut t = gdzw_config(url, api_root, &token, "bench_", &[], "");
    t.push_str(&gansu_section(
        &format!("{}{}", host_of(api_root), defaults.base_path),
        &auth,
        &key,
        &format!("max_records_per_call = {}", args.per_call),
    ));
    t.push_str(&gansu_job(
        job,
        job,
        &format!("bench_{job}_changes"),
        &extra,
    ));
    Ok(t)
}

pub async fn run(args: &BenchArgs) -> Result<()> {
    if args.mode == "snapshot" && (args.upstream == "gansu" || args.prepare_only.is_some()) {
        bail!("--mode snapshot is measured with --upstream gdzw and without --prepare-only");
    }
    if !(0.0..=1.0).contains(&args.changed) {
        bail!("--changed is a share of the rows, 0 to 1");
    }
    let (url, _tmp) =
        fresh_database(&args.database, &args.db_name, args.prepare_only.as_deref()).await?;
    let db = Db::connect(&url, 4).await?;
    let backend = db.backend;
    crate::db::migrate::migrate(&db).await?;
    let catalog = crate::schema::Catalog::load(None)?;
    let gansu = args.upstream == "gansu";
    let (platform, job) = if gansu {
        ("gansu", GANSU_DEMO_TYPE)
    } else {
        ("gdzw", "accept")
    };
    let p = catalog.platform(platform).expect("catalog");
    let dt = &p.data_types[job];
    let table = format!("bench_{job}_changes");
    db.create_change_table(dt, &table).await?;

    let t0 = Instant::now();
    let per_stmt = 500;
    let mut i = 0;
    while i < args.rows {
        let n = per_stmt.min(args.rows - i);
        let samples: Vec<_> = (i + 1..=i + n)
            .map(|id| (id, sample_fields(p, dt, id)))
            .collect();
        let rows: Vec<ChangeRow> = samples
            .iter()
            .map(|(id, fields)| ChangeRow {
                id: *id,
                op: "I",
                cd_time: "2026-11-20 10:00:00",
                fields,
            })
            .collect();
        db.insert_change_rows(&table, &rows).await?;
        i += n;
    }
    let load = t0.elapsed();
    if args.mode == "snapshot" {
        // The key the snapshot orders by, indexed as a DBA would (README, 快照模式).
        db.execute_script(&format!("CREATE UNIQUE INDEX {table}_id ON {table} (id)"))
            .await?;
    }
    db.close().await;

    if let Some(dir) = &args.prepare_only {
        let api_root = args.api_root.as_deref().context("--api-root")?;
        let text = config_text(args, &url, api_root, dir)?;
        let path = dir.join("config.toml");
        std::fs::write(&path, text)?;
        println!(
            "{} {job} rows loaded on {}; config {}",
            args.rows,
            backend.name(),
            path.display()
        );
        return Ok(());
    }
    // The simulator runs as its own process, so the memory figure is qianzhi's alone.
    let (mut sim_child, api_root) = spawn_simulator(args.latency).await?;
    let tmp = tempfile::tempdir()?;
    let text = config_text(args, &url, &api_root, tmp.path())?;
    let host = host_of(&api_root);
    let app = App::new(config_from_str(&text)?).await?;
    let cancel = CancellationToken::new();

    if args.mode == "snapshot" {
        let r = snapshot_runs(args, &app, &table).await;
        let _ = sim_child.kill().await;
        app.db.close().await;
        let r = r?;
        println!(
            "qianzhi bench: snapshot of {} {job} rows on {}, {:.1}% changed, batch_size {}",
            args.rows,
            backend.name(),
            args.changed * 100.0,
            args.batch_size
        );
        println!(
            "  load view            {:>8.1} s (not counted)",
            load.as_secs_f64()
        );
        print!("{r}");
        return Ok(());
    }
    // Peak memory is measured from here: loading the table above is not qianzhi's work.
    reset_peak_rss();
    let t1 = Instant::now();
    let o = run_once(&app, job, &cancel, &RunOptions::default()).await?;
    let took = t1.elapsed();
    let peak = peak_rss_mb();
    let idle = idle_polls(&app, job, &cancel).await?;
    let stats: serde_json::Value = reqwest::get(format!("{host}{}", super::simulate::STATS_PATH))
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
        "  network              latency {} ms per answer, max_in_flight {} (at most {} calls seen at once)",
        args.latency,
        app.cfg.delivery.max_in_flight,
        stats["max_in_flight"].as_u64().unwrap_or(0)
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
    let _ = write!(out, "{idle}");
    let _ = writeln!(out, "  simulator accepted   {accepted}");
    print!("{out}");
    app.db.close().await;
    Ok(())
}

/// Runs over the delivered table with nothing new, timed: as `qianzhi once` polls (taking
/// and giving up the job's lease each time) and as `qianzhi run` polls (its lease held across
/// runs). Median and range of `IDLE_POLLS` each.
async fn idle_polls(
    app: &std::sync::Arc<App>,
    job: &str,
    cancel: &CancellationToken,
) -> Result<String> {
    const IDLE_POLLS: usize = 7;
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1000.0;
    let mut once = Vec::new();
    let mut rows = 0;
    for _ in 0..IDLE_POLLS {
        let t = Instant::now();
        rows += run_once(app, job, cancel, &RunOptions::default())
            .await?
            .rows_read;
        once.push(ms(t));
    }
    let held =
        match crate::lease::Held::acquire(&app.db, &app.me, job, &app.cfg.lease, cancel).await? {
            crate::lease::Acquired::Held(h) => h,
            crate::lease::Acquired::Busy(_) => bail!("the bench job's lease is held elsewhere"),
        };
    let mut daemon = Vec::new();
    for _ in 0..IDLE_POLLS {
        let t = Instant::now();
        let o = crate::pipeline::run_held(app, held.fence(), held.cancel(), &RunOptions::default())
            .await;
        daemon.push(ms(t));
        rows += o?.rows_read;
    }
    held.release(&app.db).await;
    let show = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        format!(
            "median {:.1} ms ({:.1}–{:.1})",
            v[v.len() / 2],
            v[0],
            v[v.len() - 1]
        )
    };
    Ok(format!(
        "  idle poll, once      {} over {IDLE_POLLS} runs, rows read {rows}\n  idle poll, run       {} (lease held, as the daemon polls)\n",
        show(once),
        show(daemon)
    ))
}

/// `--mode snapshot`: the first snapshot (every row an insert), then `--changed` of the rows
/// changed and a second snapshot timed with its peak memory, then one with nothing changed
/// (the diff pass alone).
async fn snapshot_runs(args: &BenchArgs, app: &std::sync::Arc<App>, table: &str) -> Result<String> {
    let cancel = CancellationToken::new();
    let opts = RunOptions::default();
    let mut out = String::new();
    let t = Instant::now();
    let first = run_once(app, "accept", &cancel, &opts).await?;
    let _ = writeln!(
        out,
        "  first snapshot       {:>8.1} s   {} rows delivered",
        t.elapsed().as_secs_f64(),
        first.delivered
    );
    let every = (1.0 / args.changed.max(1e-9)).round().max(1.0) as i64;
    let changed = if args.changed == 0.0 {
        0
    } else {
        args.rows / every
    };
    if changed > 0 {
        app.db
            .execute_script(&format!(
                "UPDATE {table} SET ContactName = 'bench-changed' WHERE id % {every} = 0"
            ))
            .await?;
    }
    reset_peak_rss();
    let t = Instant::now();
    let second = run_once(app, "accept", &cancel, &opts).await?;
    let took = t.elapsed();
    let peak = peak_rss_mb();
    if second.delivered as i64 != changed {
        bail!(
            "the snapshot sent {} updates, {changed} rows were changed",
            second.delivered
        );
    }
    let _ = writeln!(
        out,
        "  diff + send changes  {:>8.2} s   {} of {} rows changed, peak memory (VmHWM) {:.1} MB",
        took.as_secs_f64(),
        second.delivered,
        args.rows,
        peak.unwrap_or(f64::NAN)
    );
    let t = Instant::now();
    let idle = run_once(app, "accept", &cancel, &opts).await?;
    let _ = writeln!(
        out,
        "  diff, none changed   {:>8.2} s   {} sent",
        t.elapsed().as_secs_f64(),
        idle.delivered
    );
    Ok(out)
}
