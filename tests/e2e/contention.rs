//! Seven jobs on one unit code under `qianzhi run` while rows keep arriving: concurrent
//! Cd_Batch allocation, outbox commits, acks and batch closes must never end a run in a
//! deadlock or serialization failure, and every row goes out once under one Cd_Batch.

use super::helpers::*;
use qianzhi::db::tools::ChangeRow;
use qianzhi::schema::sample::GDZW_TYPES;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// How long rows keep arriving; the acceptance test asks for 30 s on MySQL.
fn feed_for() -> Duration {
    let secs = std::env::var("QIANZHI_CONTENTION_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
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
    assert_eq!(t.cfg_text.matches("interval = \"1s\"").count(), 7);
    let daemon = Daemon::start(&t);

    // Rows arrive in small pages on every table, several times a second.
    let mut inserted: HashMap<&str, i64> = HashMap::new();
    let start = Instant::now();
    let mut next_id = 1i64;
    while start.elapsed() < feed_for() {
        for dt in GDZW_TYPES {
            let samples: Vec<_> = (next_id..next_id + 3).map(|id| t.sample(dt, id)).collect();
            let rows: Vec<ChangeRow<'_>> = samples
                .iter()
                .zip(next_id..)
                .map(|(fields, id)| ChangeRow {
                    id,
                    op: "I",
                    cd_time: "2026-11-20 10:00:00",
                    fields,
                })
                .collect();
            t.insert_rows(dt, &rows).await;
            *inserted.entry(dt).or_default() += rows.len() as i64;
        }
        next_id += 3;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let want: usize = inserted.values().map(|n| *n as usize).sum();
    let deadline = Instant::now() + Duration::from_secs(60);
    while t.sim.state.lock().unwrap().accepted_count < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, log) = daemon.stop();

    // What the measurement in the report counts: transient errors retried in place, and
    // deadlocks that reached a run.
    let retried = log.matches("retrying the transaction").count();
    let failed_runs = log.matches("run failed").count();
    let deadlocks = log.matches("Deadlock found").count();
    eprintln!(
        "{which:?}: {want} rows in {:?}; retried transactions: {retried}; \
         'Deadlock found' lines: {deadlocks}; failed runs: {failed_runs}",
        feed_for()
    );
    assert!(status.success(), "{status:?}\n{log}");
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
    let batch_job: HashMap<String, String> = batches
        .iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect();
    assert_eq!(batch_job.len(), batches.len(), "Cd_Batch numbers are unique");
    for r in &batches {
        assert_eq!(r[2].as_deref(), Some("done"), "{r:?}");
        assert_eq!(r[3], r[4], "every record of {r:?} delivered");
    }
    for dt in GDZW_TYPES {
        let got = t.accepted(dt);
        assert_eq!(got.len() as i64, inserted[dt], "{dt}: rows received");
        let guids: HashSet<&str> = got.iter().map(|r| r["RowGuid"].as_str().unwrap()).collect();
        assert_eq!(guids.len(), got.len(), "{dt}: each row exactly once");
        for r in &got {
            let b = r["Cd_Batch"].as_str().unwrap();
            assert_eq!(batch_job.get(b).map(String::as_str), Some(dt), "{b}");
        }
        let stored = t
            .scalar(&format!(
                "SELECT COALESCE(SUM(record_count), 0) FROM qz_batch WHERE job = '{dt}'"
            ))
            .await;
        assert_eq!(stored, inserted[dt], "{dt}: records in qz_batch");
    }
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
