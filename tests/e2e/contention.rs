//! Seven jobs on one unit code under `qianzhi run` while rows keep arriving: concurrent
//! Cd_Batch allocation, outbox commits, acks and batch closes must never end a run in a
//! deadlock or serialization failure, and every row goes out once under one Cd_Batch.

use super::helpers::*;
use qianzhi::db::tools::ChangeRow;
use qianzhi::schema::sample::{GDZW_TYPES, Lit, set_field};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// A setting of the feed, overridable for measuring (`QIANZHI_CONTENTION_SECS`, `_ROWS`).
fn knob(name: &str, default: u64) -> u64 {
    std::env::var(format!("QIANZHI_CONTENTION_{name}"))
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// How long rows keep arriving: the acceptance test asks for 30 s on MySQL, where the
/// deadlocks were; PostgreSQL and SQLite get a shorter run of the same scenario.
fn feed_for(which: Which) -> Duration {
    let default = if which.native() == Which::Mysql {
        30
    } else {
        10
    };
    Duration::from_secs(knob("SECS", default))
}

/// A change-table row as the feed owns it: id, operation, field values.
type Arrival = (i64, &'static str, Vec<(String, Lit)>);

/// One tick of arrivals on one table: `n` new rows from `first`, every fifth of them with an
/// invalid ProjectNo (it becomes a qz_error row), and the corrected versions of the
/// previous tick's invalid rows (their delivery resolves those error rows).
fn tick_rows(t: &TestApp, dt: &str, first: i64, n: i64) -> Vec<Arrival> {
    let mut rows = Vec::new();
    for id in (first - n..first).filter(|id| *id >= 1 && id % 5 == 0) {
        rows.push((id, "U", t.sample(dt, id)));
    }
    for id in first..first + n {
        let mut fields = t.sample(dt, id);
        if id % 5 == 0 {
            set_field(
                &mut fields,
                "ProjectNo",
                Lit::Text("not-a-project-no".into()),
            );
        }
        rows.push((id, "I", fields));
    }
    rows
}

/// `qianzhi run` with its stderr in a file (a pipe nobody reads would fill up and block it).
struct Daemon {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Daemon {
    fn start(t: &TestApp) -> Daemon {
        let log = t.dir.path().join("run.log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_qianzhi"))
            .arg("--config")
            .arg(&t.cfg_path)
            .arg("run")
            // Retries are logged at info; the pipeline's own chatter is not needed.
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Daemon { child, log }
    }

    /// SIGTERM, then the exit status and the whole log.
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        (status, std::fs::read_to_string(&self.log).unwrap())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // A failed assertion must not leave the daemon running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn seven_jobs_in_run(which: Which) {
    // Every job every second, so the seven committers and deliverers keep overlapping.
    let edit = |s: String| s.replace("interval = \"30s\"", "interval = \"1s\"");
    let Some(t) = spawn_app(
        which,
        Spawn {
            types: &GDZW_TYPES,
            edit: &edit,
            ..Default::default()
        },
    )
    .await
    else {
        return;
    };
    // Job intervals only: `[lease] renew_interval` ends the same way.
    let every_second = t
        .cfg_text
        .lines()
        .filter(|l| l.trim_start().starts_with("interval = \"1s\""))
        .count();
    assert_eq!(every_second, 7);

    // Rows arrive in small pages on every table, several times a second. The first tick is
    // there before `run` starts, so the seven first runs number their batches at once, on a
    // day whose sequence row does not exist yet.
    let mut daemon = None;
    let per_tick = knob("ROWS", 3) as i64;
    let start = Instant::now();
    let mut next_id = 1i64;
    while start.elapsed() < feed_for(which) {
        for dt in GDZW_TYPES {
            let rows = tick_rows(&t, dt, next_id, per_tick);
            let rows: Vec<ChangeRow<'_>> = rows
                .iter()
                .map(|(id, op, fields)| ChangeRow {
                    id: *id,
                    op,
                    cd_time: "2026-11-20 10:00:00",
                    fields,
                })
                .collect();
            t.insert_rows(dt, &rows).await;
        }
        next_id += per_tick;
        daemon.get_or_insert_with(|| Daemon::start(&t));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // The last tick's invalid rows are corrected too, so every id ends valid.
    for dt in GDZW_TYPES {
        let rows = tick_rows(&t, dt, next_id, per_tick);
        let rows: Vec<ChangeRow<'_>> = rows
            .iter()
            .filter(|(_, op, _)| *op == "U")
            .map(|(id, op, fields)| ChangeRow {
                id: *id,
                op,
                cd_time: "2026-11-20 10:00:00",
                fields,
            })
            .collect();
        t.insert_rows(dt, &rows).await;
    }
    // Each id goes out once: valid at once, or in its corrected version.
    let ids = next_id - 1;
    let want = ids as usize * GDZW_TYPES.len();
    let deadline = Instant::now() + Duration::from_secs(60);
    while t.sim.state.lock().unwrap().accepted_count < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, log) = daemon.expect("started with the first tick").stop();

    // What the measurement in the report counts: transient errors retried in place, and
    // deadlocks that reached a run.
    let retried = log.matches("retrying the transaction").count();
    let failed_runs = log.matches("run failed").count();
    let deadlocks = log.matches("Deadlock found").count();
    eprintln!(
        "{which:?}: {want} rows in {:?}; retried transactions: {retried}; \
         'Deadlock found' lines: {deadlocks}; failed runs: {failed_runs}",
        feed_for(which)
    );
    assert!(status.success(), "{status:?}\n{log}");
    if which.native() == Which::Mysql {
        // Numbering batches takes the sequence row's lock at its first touch: the jobs queue
        // on it instead of deadlocking (with INSERT IGNORE and UPDATE they did, ~2 a second).
        let numbering = log
            .lines()
            .filter(|l| {
                l.contains("retrying the transaction") && l.contains("write=commit_exchange")
            })
            .filter(|l| l.contains("deadlock"))
            .count();
        assert_eq!(numbering, 0, "{log}");
    }
    assert_eq!(failed_runs, 0, "{log}");
    assert!(!log.contains("JOB STOPPED"), "{log}");
    assert!(!log.contains("gave up after"), "{log}");
    let errors = t
        .rows("SELECT job, last_error FROM qz_cursor WHERE last_error IS NOT NULL")
        .await;
    assert!(errors.is_empty(), "failed runs recorded: {errors:?}");
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM qz_cursor WHERE last_success_at IS NOT NULL")
            .await,
        7
    );

    // Every row once, under a batch of its own job that is closed with the right counts.
    let batches = t
        .rows("SELECT cd_batch, job, state, record_count, delivered_count FROM qz_batch")
        .await;
    let mut stored: HashMap<String, i64> = HashMap::new();
    for r in &batches {
        let n: i64 = r[3].as_deref().unwrap().parse().unwrap();
        *stored.entry(r[1].clone().unwrap()).or_default() += n;
    }
    let batch_job: HashMap<String, String> = batches
        .iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect();
    assert_eq!(
        batch_job.len(),
        batches.len(),
        "Cd_Batch numbers are unique"
    );
    for r in &batches {
        assert_eq!(r[2].as_deref(), Some("done"), "{r:?}");
        assert_eq!(r[3], r[4], "every record of {r:?} delivered");
    }
    for dt in GDZW_TYPES {
        let got = t.accepted(dt);
        assert_eq!(got.len() as i64, ids, "{dt}: rows received");
        let guids: HashSet<&str> = got.iter().map(|r| r["RowGuid"].as_str().unwrap()).collect();
        assert_eq!(guids.len(), got.len(), "{dt}: each row exactly once");
        for r in &got {
            let b = r["Cd_Batch"].as_str().unwrap();
            assert_eq!(batch_job.get(b).map(String::as_str), Some(dt), "{b}");
        }
        assert_eq!(stored.get(dt), Some(&ids), "{dt}: records in qz_batch");
    }
    // Every invalid version was recorded, and resolved by its corrected one.
    let invalid = ids / 5 * GDZW_TYPES.len() as i64;
    assert_eq!(t.scalar("SELECT COUNT(*) FROM qz_error").await, invalid);
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM qz_error WHERE resolved_at IS NULL")
            .await,
        0
    );
    assert_eq!(t.scalar("SELECT COUNT(*) FROM qz_outbox").await, 0);
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM qz_reconciliation").await,
        batches.len() as i64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(qianzhi_test_mysql),
    ignore = "QIANZHI_TEST_MYSQL not set: MySQL suite off"
)]
async fn seven_jobs_in_run_on_mysql_never_fail_a_run() {
    require(Which::Mysql);
    seven_jobs_in_run(Which::Mysql).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(qianzhi_test_pg),
    ignore = "QIANZHI_TEST_PG not set: PostgreSQL suite off"
)]
async fn seven_jobs_in_run_on_postgres_never_fail_a_run() {
    require(Which::Postgres);
    seven_jobs_in_run(Which::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seven_jobs_in_run_on_sqlite_never_fail_a_run() {
    seven_jobs_in_run(Which::Sqlite).await
}
