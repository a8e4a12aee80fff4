//! Subcommands: check, migrate, grants, once, run, status, simulate, demo, bench.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config};
use crate::db::Db;
use crate::db::lease::{LeaseHeld, LeaseLost};
use crate::pipeline::{App, RunOptions, run_once};

mod check;
use check::check;

#[derive(Debug, Parser)]
#[command(
    name = "qianzhi",
    version,
    about = "前置机守护进程：把部门数据库的变更报送省级平台，并做信用查询 / \
             前置机 daemon: department database changes to provincial platforms, and credit queries",
    // Help texts are Chinese with English beside; clap's own help flag, version flag and
    // `help` subcommand would print English only, so the first two are declared below and
    // the third is left out (`qianzhi <command> --help` does its job).
    disable_help_flag = true,
    disable_version_flag = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// 配置文件；默认 ./config.toml，否则 /etc/qianzhi/config.toml / Config file; default
    /// ./config.toml, else /etc/qianzhi/config.toml
    #[arg(long, short, env = "QIANZHI_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// 显示帮助 / Print help
    #[arg(short, long, action = clap::ArgAction::Help, global = true, display_order = 900)]
    help: Option<bool>,
    /// 显示版本 / Print version
    #[arg(short = 'V', long, action = clap::ArgAction::Version, display_order = 901)]
    version: Option<bool>,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// 列出配置的全部问题，再检查数据库、数据源和映射 / Report every configuration problem,
    /// then check the database, sources and mappings
    Check,
    /// 建立或升级 qz_ 控制表（见 sql/<后端>/） / Create or upgrade the qz_ control tables (see
    /// sql/<backend>/)
    Migrate {
        /// 只打印本数据库方言的 DDL，不执行 / Print the DDL instead of running it
        #[arg(long)]
        print: bool,
    },
    /// 打印服务的数据库账号需要的 GRANT 语句（按配置的数据库） / Print the GRANT statements
    /// the service's database account needs, for the configured database
    ///
    /// 控制表（PostgreSQL 上含 id 序列）、每个任务的数据源和查询主体视图；由表的属主在
    /// `qianzhi migrate` 之后执行，例如 `qianzhi grants --user qianzhi | psql`。SQLite 打印
    /// 文件权限命令。 / Control tables (with their id sequences on PostgreSQL), each job's
    /// source and each query's subjects view; run them as the tables' owner after `qianzhi
    /// migrate`, e.g. `qianzhi grants --user qianzhi | psql`. For SQLite, the file permissions.
    Grants {
        /// 服务使用的数据库账号（MySQL 可写 名称@主机）；默认取 database.url 中的用户 / The
        /// service's database account (on MySQL name@host); default: the user of database.url
        #[arg(long)]
        user: Option<String>,
    },
    /// 把每个启用的任务和查询任务（或指定的一个）运行一遍后退出 / One pass of every enabled job
    /// and query job (or one), then exit
    ///
    /// 某任务的租约由另一进程持有时，打印持有者，该任务不做任何更改，退出码 4 / When another
    /// process holds a job's lease, it names the holder, leaves that job unchanged and exits
    /// with code 4.
    Once {
        /// 只运行这个任务或查询任务（未启用的也可以） / Run only this job or query job (a
        /// disabled one too)
        #[arg(long)]
        job: Option<String>,
        /// 把将要发送的记录按 JSON 行打印，不改任何东西、不发送 / Print the records that would
        /// be sent as JSON lines; change and send nothing
        #[arg(long)]
        dry_run: bool,
        /// 快照任务：确认这次的大批删除，越过安全阀（max_delete_ratio、视图读到 0 行）发送 /
        /// Snapshot jobs: confirm this run's mass delete and send it past the safety valve
        /// (max_delete_ratio, a view that reads no row)
        #[arg(long)]
        confirm_deletes: bool,
    },
    /// 守护进程：每个任务按自己的调度运行，直到收到 SIGTERM / The daemon: every job on its
    /// schedule until SIGTERM
    Run,
    /// 每个任务的读取位置、待读行数、未完成批次、错误、今天的批次序号 / Per job: position,
    /// waiting rows, pending batches, errors, today's Cd_Batch sequence
    Status {
        /// 以 JSON 输出 / Print JSON
        #[arg(long)]
        json: bool,
    },
    /// 本机的严格广东网关和甘肃平台模拟器，上线前试用配置 / A strict local Guangdong gateway
    /// and Gansu platform for trying a setup before going live
    ///
    /// 甘肃一侧使用配置中 [gansu] 节的 SM4 设置（如有） / The Gansu side uses the SM4 settings
    /// of the config's [gansu] section when there is one.
    Simulate {
        /// 监听地址（只用本机地址） / Address to listen on (a local one)
        #[arg(long, default_value = "127.0.0.1:8810")]
        listen: String,
        /// 模拟器校验签名用的令牌 / Token the simulator expects in signatures
        #[arg(
            long,
            env = "QIANZHI_SIM_TOKEN",
            default_value = "sim-token",
            hide_env_values = true
        )]
        token: String,
        /// 广东网关的基础路径 / Base path of the Guangdong gateway
        #[arg(long, default_value = "/ebus/tysb-sjcj")]
        base_path: String,
        /// 接口路径前缀（同 gdzw.path_prefix） / Interface path prefix (as gdzw.path_prefix)
        #[arg(long, default_value = "uppro")]
        path_prefix: String,
        /// 数据类型目录覆盖（同配置中的 schema_dir） / Schema overlay directory (as
        /// `schema_dir` in the config)
        #[arg(long)]
        schema_dir: Option<PathBuf>,
        /// 只计数收到的记录，不保留、不逐次打印（性能测试用） / Count accepted records without
        /// keeping them or printing each call (benchmarks)
        #[arg(long)]
        count_only: bool,
        /// 模拟的甘肃平台要求的 Authorization / Authorization the simulated Gansu platform
        /// expects
        #[arg(
            long,
            env = "QIANZHI_SIM_GANSU_AUTHORIZATION",
            default_value = "sim-authorization",
            hide_env_values = true
        )]
        gansu_authorization: String,
        /// 模拟的甘肃平台的 SM4 密钥，按 [gansu] 的 key_form / SM4 key of the simulated Gansu
        /// platform, in the [gansu] key_form
        #[arg(
            long,
            env = "QIANZHI_SIM_GANSU_KEY",
            default_value = "0123456789abcdeffedcba9876543210",
            hide_env_values = true
        )]
        gansu_key: String,
        /// 每个答复延迟这么多毫秒再发出（模拟广域网），不耽误其他连接 / Delay every answer by
        /// this many milliseconds (a wide-area network); other connections are served meanwhile
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=60_000))]
        latency: u64,
    },
    /// 建一个带样例数据的 SQLite 部门库，启动模拟器，完整同步一遍并汇总 / A SQLite department
    /// database with sample data, the simulator, one full sync, a summary
    Demo {
        /// 演示数据库和配置写到这个目录 / Where the demo database and config are written
        #[arg(long, default_value = "qianzhi-demo")]
        dir: PathBuf,
    },
    /// 吞吐量测试：变更表的行投递到进程内的模拟器 / Throughput benchmark: change-table rows
    /// delivered to the in-process simulator
    Bench(crate::tools::bench::BenchArgs),
}

/// The exit code of `qianzhi once` when another process holds the lease of a job it was to
/// run (that job was left unchanged), or took it over during the run (README, 运维).
pub const EXIT_LEASE_HELD: u8 = 4;

/// How one job of `once` ended, as far as the exit code is concerned.
#[derive(Default)]
struct OnceEnd {
    failed: bool,
    lease_elsewhere: bool,
}

impl OnceEnd {
    /// Prints a job's failure; one because another process has the lease is told apart.
    fn failure(&mut self, name: &str, e: &anyhow::Error) {
        let text = crate::mask::mask_pii(&format!("{e:#}"));
        if e.downcast_ref::<LeaseHeld>().is_some() || e.downcast_ref::<LeaseLost>().is_some() {
            self.lease_elsewhere = true;
            eprintln!("{name}: {text}");
            return;
        }
        self.failed = true;
        eprintln!("{name}: FAILED: {text}");
    }

    /// Any other failure first (1), then a lease held elsewhere (4), else success.
    fn code(&self) -> ExitCode {
        if self.failed {
            ExitCode::FAILURE
        } else if self.lease_elsewhere {
            ExitCode::from(EXIT_LEASE_HELD)
        } else {
            ExitCode::SUCCESS
        }
    }
}

fn config_path(cli: &Cli) -> PathBuf {
    if let Some(p) = &cli.config {
        return p.clone();
    }
    let local = PathBuf::from("config.toml");
    if local.exists() {
        local
    } else {
        PathBuf::from("/etc/qianzhi/config.toml")
    }
}

fn load_config(cli: &Cli) -> Result<Config> {
    let path = config_path(cli);
    let cfg = config::load(&path)?;
    crate::telemetry::init(&cfg.log.level, cfg.log.format.as_str());
    Ok(cfg)
}

/// The configuration without reading any secret, for the commands that need only the
/// database (`status`, `migrate`).
fn load_config_without_secrets(cli: &Cli) -> Result<Config> {
    let path = config_path(cli);
    let cfg = config::load_without_secrets(&path)?;
    crate::telemetry::init(&cfg.log.level, cfg.log.format.as_str());
    Ok(cfg)
}

pub async fn main_entry() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.cmd, Cmd::Run | Cmd::Simulate { .. }) {
        // Printing commands end quietly when their output is piped into `head`, as shell
        // tools do; the daemon keeps Rust's default of ignoring SIGPIPE.
        // SAFETY: called before any other thread writes to a pipe; restores the default action.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    crate::upstream::init_tls();
    match dispatch(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", crate::mask::mask_pii(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    match &cli.cmd {
        Cmd::Check => check(&cli).await,
        Cmd::Migrate { print } => {
            let cfg = load_config_without_secrets(&cli)?;
            let backend =
                crate::db::Backend::with_dialect(&cfg.database.url, cfg.database.dialect)?;
            if *print {
                println!("{}", crate::db::migrate::ddl(backend));
                return Ok(ExitCode::SUCCESS);
            }
            let applied = if cfg.database.url.starts_with(crate::config::ODBC_SCHEME) {
                let (exec, backend) =
                    crate::db::odbc::control(&cfg.database.url, cfg.database.dialect, 2).await?;
                crate::db::migrate::migrate_with(&exec, backend).await?
            } else {
                let db = Db::connect_as(&cfg.database.url, cfg.database.dialect, 2).await?;
                crate::db::migrate::migrate(&db).await?
            };
            if applied.is_empty() {
                println!("control tables are up to date ({})", backend.name());
            } else {
                println!("applied migrations {applied:?} on {}", backend.name());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Grants { user } => {
            let cfg = load_config_without_secrets(&cli)?;
            let backend =
                crate::db::Backend::with_dialect(&cfg.database.url, cfg.database.dialect)?;
            let user = match (user, backend) {
                (Some(u), _) => u.clone(),
                (None, crate::db::Backend::Sqlite) => "qianzhi".to_string(),
                (None, _) => crate::db::grants::url_user(&cfg.database.url).context(
                    "database.url names no user: give the service's account with --user \
                     (连接串中没有用户名，请用 --user 指定服务账号)",
                )?,
            };
            let grantee = crate::db::grants::Grantee::parse(backend, &user);
            print!("{}", crate::db::grants::script(&cfg, &grantee)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Once {
            job,
            dry_run,
            confirm_deletes,
        } => {
            let app = App::new(load_config(&cli)?).await?;
            let cancel = CancellationToken::new();
            crate::daemon::cancel_on_signal(cancel.clone());
            let is_query = job
                .as_ref()
                .is_some_and(|j| app.cfg.queries.iter().any(|q| &q.name == j));
            let names: Vec<String> = match job {
                Some(_) if is_query => vec![],
                Some(j) => vec![app.job(j)?.name.clone()],
                None => app
                    .cfg
                    .jobs
                    .iter()
                    .filter(|j| j.enabled)
                    .map(|j| j.name.clone())
                    .collect(),
            };
            let mut end = OnceEnd::default();
            for name in names {
                let progress = match dry_run {
                    false => crate::progress::Progress::start(&app, &name).await,
                    true => None,
                };
                let opts = RunOptions {
                    dry_run: *dry_run,
                    confirm_deletes: *confirm_deletes,
                };
                let result = run_once(&app, &name, &cancel, &opts).await;
                if let Some(p) = progress {
                    p.finish();
                }
                match result {
                    Ok(o) => eprintln!(
                        "{name}: read {} rows, delivered {}, invalid {}, refused by platform {}, batches {}{}",
                        o.rows_read,
                        o.delivered,
                        o.invalid_rows,
                        o.refused_by_platform,
                        if o.batches.is_empty() {
                            "-".to_string()
                        } else {
                            o.batches.join(" ")
                        },
                        if o.interrupted { " (interrupted)" } else { "" }
                    ),
                    Err(e) => end.failure(&name, &e),
                }
            }
            if !*dry_run {
                let queries: Vec<String> = match job {
                    Some(j) => app
                        .cfg
                        .queries
                        .iter()
                        .filter(|q| &q.name == j)
                        .map(|q| q.name.clone())
                        .collect(),
                    None => app
                        .cfg
                        .queries
                        .iter()
                        .filter(|q| q.enabled)
                        .map(|q| q.name.clone())
                        .collect(),
                };
                for name in queries {
                    match crate::query::run_query_once(app.query_app(), &name, &cancel).await {
                        Ok(o) => eprintln!("{name}: {}", crate::query::run::summary(&o)),
                        Err(e) => end.failure(&name, &e),
                    }
                }
            }
            Ok(end.code())
        }
        Cmd::Run => {
            // Signals are handled from the first instant: a SIGTERM while connecting ends the
            // daemon cleanly as soon as it can, instead of killing it with 143.
            let cancel = CancellationToken::new();
            crate::daemon::cancel_on_signal(cancel.clone());
            let app = App::new(load_config(&cli)?).await?;
            match crate::daemon::run(app, cancel).await? {
                crate::daemon::RunEnd::Shutdown => Ok(ExitCode::SUCCESS),
                crate::daemon::RunEnd::AllJobsStopped => {
                    eprintln!(
                        "error: every job has stopped (JOB STOPPED, see the log and `qianzhi status`); \
                         exiting with code {} (所有作业均已停止，退出码 {})",
                        crate::daemon::EXIT_ALL_JOBS_STOPPED,
                        crate::daemon::EXIT_ALL_JOBS_STOPPED
                    );
                    Ok(ExitCode::from(crate::daemon::EXIT_ALL_JOBS_STOPPED))
                }
            }
        }
        Cmd::Status { json } => {
            // Only the database: no secret is read, so any DBA with the config can run it.
            let cfg = load_config_without_secrets(&cli)?;
            let db = Db::connect_as(&cfg.database.url, cfg.database.dialect, 2).await?;
            let app = crate::status::StatusApp { cfg: &cfg, db: &db };
            let s = crate::status::collect(&app).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{}", crate::status::render_text(&s));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Simulate {
            listen,
            token,
            base_path,
            path_prefix,
            schema_dir,
            count_only,
            gansu_authorization,
            gansu_key,
            latency,
        } => {
            crate::telemetry::init("info", "text");
            let mut gansu = crate::tools::simulate::gansu::GansuSim {
                authorization: gansu_authorization.clone(),
                key: gansu_key.clone(),
                ..Default::default()
            };
            if let Some(g) = config::load(&config_path(&cli)).ok().and_then(|c| c.gansu) {
                gansu.settings = g;
            }
            let sim = crate::tools::simulate::start(
                crate::tools::simulate::SimConfig {
                    base_path: base_path.clone(),
                    token: token.clone(),
                    path_prefix: path_prefix.clone(),
                    schema_dir: schema_dir.clone(),
                    keep_records: !*count_only,
                    gansu,
                    latency: std::time::Duration::from_millis(*latency),
                    ..Default::default()
                },
                listen,
            )
            .await?;
            println!(
                "simulated Guangdong gateway at {} (paasid tysb-sjcj)",
                sim.api_root()
            );
            println!(
                "simulated Gansu platform at {} ({:?} envelope); Ctrl-C to stop",
                sim.gansu_base_url(),
                sim.cfg.gansu.settings.envelope
            );
            let mut seen = 0;
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => break,
                    _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                }
                let st = sim.state.lock().expect("sim state");
                if *count_only {
                    continue;
                }
                for c in &st.calls[seen..] {
                    println!(
                        "{} {} -> {} {}",
                        c.path,
                        c.body.len(),
                        c.status,
                        crate::mask::mask_pii(&c.answer)
                    );
                }
                seen = st.calls.len();
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Demo { dir } => {
            // The summary shows the error rows; per-row warnings would only repeat them.
            crate::telemetry::init("error", "text");
            let summary = crate::tools::demo::run(dir).await?;
            print!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench(args) => {
            crate::telemetry::init("warn", "text");
            crate::tools::bench::run(args).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
