//! Spawn-app helpers: a fresh database (SQLite always; PostgreSQL and MySQL when
//! QIANZHI_TEST_PG / QIANZHI_TEST_MYSQL name a server), change tables, a local simulator,
//! and the App wired to both.

use qianzhi::db::Db;
use qianzhi::db::tools::{ChangeRow, create_database, drop_database};
use qianzhi::pipeline::{App, Outcome, RunOptions, run_once};
use qianzhi::schema::Catalog;
use qianzhi::schema::sample::{Lit, sample_fields};
use qianzhi::tools::demo::{gansu_job, gansu_section, gdzw_config};
use qianzhi::tools::simulate::{SimConfig, Simulator};
use serde_json::Value as Json;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "test-token-9f3a";
pub const GANSU_AUTH: &str = "gansu-auth-5c21";
pub const GANSU_KEY: &str = "c8e8e733ac8c4043a1d6464ae82d70e6";
/// Short job leases in every test config: a process killed by a failpoint leaves its lease
/// behind, and the next process takes it over once it expires (`wait_lease_expired`).
pub const TEST_LEASE: &str = "[lease]\nttl = \"3s\"\nrenew_interval = \"1s\"\n\n";

/// A `[gansu]` section and Gansu jobs (named after their data types, over `<type>_changes`).
pub struct GansuSpawn<'a> {
    pub types: &'a [&'a str],
    /// Extra `[gansu]` lines, read by qianzhi and by the simulator alike.
    pub settings: &'a str,
    /// The SM4 key both sides use, in the settings' key_form.
    pub key: &'a str,
    /// Authorization qianzhi sends (the simulator always expects GANSU_AUTH).
    pub client_authorization: &'a str,
}

impl Default for GansuSpawn<'_> {
    fn default() -> Self {
        GansuSpawn {
            types: &["cclw_jjl"],
            settings: "",
            key: GANSU_KEY,
            client_authorization: GANSU_AUTH,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Sqlite,
    Postgres,
    Mysql,
    /// PostgreSQL through psqlODBC (`database.url = "odbc:..."`, dialect postgres).
    OdbcPostgres,
    /// MariaDB through MariaDB Connector/ODBC (dialect mysql).
    OdbcMysql,
}

impl Which {
    /// The server a scratch database is made on, through its native URL.
    pub fn native(self) -> Which {
        match self {
            Which::OdbcPostgres => Which::Postgres,
            Which::OdbcMysql => Which::Mysql,
            w => w,
        }
    }

    pub fn odbc_dialect(self) -> Option<&'static str> {
        match self {
            Which::OdbcPostgres => Some("postgres"),
            Which::OdbcMysql => Some("mysql"),
            _ => None,
        }
    }
}

/// The server URL for a backend, or None when the suite for it is switched off.
pub fn server(which: Which) -> Option<String> {
    match which {
        Which::Sqlite => Some(String::new()),
        Which::Postgres => std::env::var("QIANZHI_TEST_PG")
            .ok()
            .filter(|s| !s.is_empty()),
        Which::Mysql => std::env::var("QIANZHI_TEST_MYSQL")
            .ok()
            .filter(|s| !s.is_empty()),
        // A connection string without a database: `;Database=` of the scratch one is added.
        Which::OdbcPostgres | Which::OdbcMysql if !qianzhi::db::odbc::BUILT => None,
        Which::OdbcPostgres => std::env::var("QIANZHI_TEST_ODBC_PG")
            .ok()
            .filter(|s| !s.is_empty()),
        Which::OdbcMysql => std::env::var("QIANZHI_TEST_ODBC_MYSQL")
            .ok()
            .filter(|s| !s.is_empty()),
    }
}

pub struct TestApp {
    pub app: Arc<App>,
    pub sim: Simulator,
    pub cfg_text: String,
    pub cfg_path: PathBuf,
    pub catalog: Catalog,
    pub dir: tempfile::TempDir,
    cleanup: Option<(String, String)>,
}

pub struct Spawn<'a> {
    pub types: &'a [&'a str],
    /// Extra lines for every [[job]].
    pub job_extra: &'a str,
    /// Token the qianzhi side signs with (the simulator always expects TOKEN).
    pub client_token: &'a str,
    /// Applied to the config text after it is generated.
    pub edit: &'a dyn Fn(String) -> String,
    pub gansu: Option<GansuSpawn<'a>>,
    /// A `schema_dir` both qianzhi and the simulator read.
    pub schema_dir: Option<&'a std::path::Path>,
    /// How long the simulator waits before each answer.
    pub latency: std::time::Duration,
}

impl Default for Spawn<'_> {
    fn default() -> Self {
        Spawn {
            types: &["accept"],
            job_extra: "",
            client_token: TOKEN,
            edit: &|s| s,
            gansu: None,
            schema_dir: None,
            latency: std::time::Duration::ZERO,
        }
    }
}

pub async fn spawn_app(which: Which, opts: Spawn<'_>) -> Option<TestApp> {
    let conn = server(which)?;
    let dir = tempfile::tempdir().unwrap();
    let name = format!("qz_t_{}", uuid::Uuid::new_v4().simple());
    let (db_url, cleanup) = match which {
        Which::Sqlite => (
            format!("sqlite://{}", dir.path().join("dept.db").display()),
            None,
        ),
        _ => {
            let native = server(which.native()).expect("the ODBC suites need the native URL too");
            let url = create_database(&native, &name, false)
                .await
                .expect("test database server reachable");
            let url = match which.odbc_dialect() {
                Some(_) => format!("{conn};Database={name}"),
                None => url,
            };
            (url, Some((native, name.clone())))
        }
    };
    let mut sim_cfg = SimConfig {
        token: TOKEN.into(),
        schema_dir: opts.schema_dir.map(|d| d.to_path_buf()),
        latency: opts.latency,
        ..Default::default()
    };
    if let Some(g) = &opts.gansu {
        sim_cfg.gansu.authorization = GANSU_AUTH.into();
        sim_cfg.gansu.key = g.key.into();
        sim_cfg.gansu.settings = toml::from_str(&format!(
            "base_url = \"http://127.0.0.1:1/x\"\nkey_env = \"-\"\nauthorization_env = \"-\"\n{}",
            g.settings
        ))
        .unwrap();
    }
    let sim = qianzhi::tools::simulate::start(sim_cfg, "127.0.0.1:0")
        .await
        .unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, opts.client_token).unwrap();
    let mut cfg_text = gdzw_config(
        &db_url,
        &sim.api_root(),
        &token_file,
        "",
        opts.types,
        opts.job_extra,
    );
    cfg_text = cfg_text.replacen("[gdzw]\n", &format!("{TEST_LEASE}[gdzw]\n"), 1);
    if let Some(g) = &opts.gansu {
        let auth = dir.path().join("gansu.auth");
        let key = dir.path().join("gansu.key");
        std::fs::write(&auth, g.client_authorization).unwrap();
        std::fs::write(&key, g.key).unwrap();
        cfg_text.push_str(&gansu_section(
            &sim.gansu_base_url(),
            &auth,
            &key,
            g.settings,
        ));
        for t in g.types {
            cfg_text.push_str(&gansu_job(t, t, &format!("{t}_changes"), opts.job_extra));
        }
    }
    if let Some(d) = opts.schema_dir {
        cfg_text = cfg_text.replacen(
            "[database]\n",
            &format!("schema_dir = \"{}\"\n[database]\n", d.display()),
            1,
        );
    }
    if let Some(d) = which.odbc_dialect() {
        cfg_text = cfg_text.replacen(
            "[database]\n",
            &format!("[database]\ndialect = \"{d}\"\n"),
            1,
        );
    }
    let cfg_text = (opts.edit)(cfg_text);
    let cfg_path = dir.path().join("config.toml");
    std::fs::write(&cfg_path, &cfg_text).unwrap();

    let db = Db::connect(&db_url, 2).await.unwrap();
    qianzhi::db::migrate::migrate(&db).await.unwrap();
    let catalog = Catalog::load(None).unwrap();
    let gansu_types = opts.gansu.as_ref().map(|g| g.types).unwrap_or_default();
    for (platform, t) in opts
        .types
        .iter()
        .map(|t| ("gdzw", t))
        .chain(gansu_types.iter().map(|t| ("gansu", t)))
    {
        let dt = catalog.data_type(platform, t).unwrap();
        db.create_change_table(dt, &format!("{t}_changes"))
            .await
            .unwrap();
    }
    db.close().await;
    let app = App::new(qianzhi::tools::config_from_str(&cfg_text).unwrap())
        .await
        .unwrap();
    Some(TestApp {
        app,
        sim,
        cfg_text,
        cfg_path,
        catalog,
        dir,
        cleanup,
    })
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some((server, name)) = self.cleanup.take() {
            // Best effort: a separate runtime, since Drop cannot await.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let _ = rt.block_on(drop_database(&server, &name));
            })
            .join();
        }
    }
}

impl TestApp {
    pub fn sample(&self, data_type: &str, id: i64) -> Vec<(String, Lit)> {
        let p = self.catalog.platform("gdzw").unwrap();
        sample_fields(p, &p.data_types[data_type], id)
    }

    pub fn gansu_sample(&self, data_type: &str, id: i64) -> Vec<(String, Lit)> {
        let p = self.catalog.platform("gansu").unwrap();
        sample_fields(p, &p.data_types[data_type], id)
    }

    /// Records the Gansu simulator accepted for a resource id, decrypted and typed.
    pub fn gansu_accepted(&self, resource_id: &str) -> Vec<Json> {
        self.sim
            .state
            .lock()
            .unwrap()
            .gansu_accepted_of(resource_id)
    }

    pub async fn insert(
        &self,
        data_type: &str,
        id: i64,
        op: &str,
        cd_time: &str,
        fields: &[(String, Lit)],
    ) {
        let row = ChangeRow {
            id,
            op,
            cd_time,
            fields,
        };
        self.insert_rows(data_type, &[row]).await;
    }

    /// Rows appended to the change table of `data_type`, in order.
    pub async fn insert_rows(&self, data_type: &str, rows: &[ChangeRow<'_>]) {
        self.app
            .db
            .insert_change_rows(&format!("{data_type}_changes"), rows)
            .await
            .unwrap();
    }

    /// Ids 1..=n as inserts of valid sample rows of a Guangdong data type.
    pub async fn insert_many(&self, data_type: &str, n: i64) {
        let samples: Vec<_> = (1..=n).map(|id| self.sample(data_type, id)).collect();
        self.insert_rows(data_type, &inserts(&samples)).await;
    }

    pub async fn once(&self, job: &str) -> anyhow::Result<Outcome> {
        run_once(
            &self.app,
            job,
            &CancellationToken::new(),
            &RunOptions::default(),
        )
        .await
    }

    /// Waits until nobody holds the job's lease, as after a process that held it crashed and
    /// its lease (TEST_LEASE: 3 s) ran out.
    pub async fn wait_lease_expired(&self, job: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let l = self.app.db.lease(job).await.unwrap();
            if !l.as_ref().is_some_and(|l| l.is_live()) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "lease still held: {l:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    pub fn accepted(&self, data_type: &str) -> Vec<Json> {
        self.sim.state.lock().unwrap().accepted_of(data_type)
    }

    /// Rows of a query, every column read as text (integers printed).
    pub async fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        self.app.db.text_rows(sql).await.unwrap()
    }

    pub async fn scalar(&self, sql: &str) -> i64 {
        self.app.db.scalar_i64(sql).await.unwrap()
    }

    /// Runs the qianzhi binary against this app's config.
    pub fn cli(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_qianzhi"));
        c.arg("--config")
            .arg(&self.cfg_path)
            .args(args)
            .env_remove("RUST_LOG");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }
}

/// A config edit: `[delivery] max_in_flight = n`.
pub fn in_flight(n: usize) -> impl Fn(String) -> String {
    move |s: String| {
        s.replacen(
            "[delivery]\n",
            &format!("[delivery]\nmax_in_flight = {n}\n"),
            1,
        )
    }
}

/// Inserts with ids 1, 2, ... of the given rows, all at the same change time.
pub fn inserts(samples: &[Vec<(String, Lit)>]) -> Vec<ChangeRow<'_>> {
    samples
        .iter()
        .zip(1..)
        .map(|(fields, id)| ChangeRow {
            id,
            op: "I",
            cd_time: "2026-11-20 10:00:00",
            fields,
        })
        .collect()
}

/// The value a sample literal must arrive as, by the field's type in the spec.
pub fn expected_json(lit: &Lit) -> Json {
    match lit {
        Lit::Null => Json::Null,
        Lit::Text(s) => Json::String(s.clone()),
        Lit::Int(i) => Json::from(*i),
        Lit::Num(f) => serde_json::json!(f),
    }
}

pub fn today_beijing() -> String {
    (chrono::Utc::now() + chrono::Duration::hours(8))
        .format("%Y%m%d")
        .to_string()
}

/// Declares one test per backend. The PostgreSQL and MySQL ones are compiled as ignored unless
/// QIANZHI_TEST_PG / QIANZHI_TEST_MYSQL were set when the tests were built (see build.rs), so
/// `cargo test` reports a switched-off suite as ignored, never as passed.
#[macro_export]
macro_rules! on_all_backends {
    ($name:ident, $body:path) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $body(Which::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(qianzhi_test_pg),
                ignore = "QIANZHI_TEST_PG not set: PostgreSQL suite off"
            )]
            async fn postgres() {
                require(Which::Postgres);
                $body(Which::Postgres).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(qianzhi_test_mysql),
                ignore = "QIANZHI_TEST_MYSQL not set: MySQL suite off"
            )]
            async fn mysql() {
                require(Which::Mysql);
                $body(Which::Mysql).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(qianzhi_test_odbc_pg),
                ignore = "QIANZHI_TEST_ODBC_PG not set or built without --features odbc: ODBC PostgreSQL suite off"
            )]
            async fn odbc_postgres() {
                require(Which::OdbcPostgres);
                require(Which::Postgres);
                $body(Which::OdbcPostgres).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(qianzhi_test_odbc_mysql),
                ignore = "QIANZHI_TEST_ODBC_MYSQL not set or built without --features odbc: ODBC MariaDB suite off"
            )]
            async fn odbc_mysql() {
                require(Which::OdbcMysql);
                require(Which::Mysql);
                $body(Which::OdbcMysql).await
            }
        }
    };
}

/// A suite that was switched on at build time fails loudly when its server variable is gone.
pub fn require(which: Which) {
    assert!(
        server(which).is_some(),
        "{which:?} suite built on but its server variable is not set now"
    );
}
