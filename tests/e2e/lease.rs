//! One owner per job across processes (issue 10, part 1): real `qianzhi run` and `once`
//! processes on one database — standby and takeover, kill -9 of the holder, fencing of a
//! paused holder, `once` against a held lease, and 21 jobs shared by three processes.

use super::*;
use qianzhi::db::lease::LeaseInfo;
use qianzhi::db::tools::ChangeRow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The short leases every test config has (helpers::TEST_LEASE): a dead holder's jobs move
/// within TTL + RENEW.
const TTL: Duration = Duration::from_secs(3);
const RENEW: Duration = Duration::from_secs(1);
/// What a round of the balancer and the processes' own scheduling may add on a loaded
/// 2-core machine (database round trips, process wake-ups).
const SLACK: Duration = Duration::from_millis(1500);

/// A `qianzhi` process whose log goes to a file, read while it runs.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn start(t: &TestApp, tag: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let log = t.dir.path().join(format!("{tag}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut c = Command::new(env!("CARGO_BIN_EXE_qianzhi"));
        c.arg("--config")
            .arg(&t.cfg_path)
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("QIANZHI_FAILPOINT")
            .stdout(Stdio::null())
            .stderr(Stdio::from(file));
        for (k, v) in env {
            c.env(k, v);
        }
        Proc {
            child: c.spawn().unwrap(),
            log,
        }
    }

    fn run(t: &TestApp, tag: &str) -> Proc {
        Proc::start(t, tag, &["run"], &[])
    }

    fn pid(&self) -> i64 {
        i64::from(self.child.id())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success(), "kill -{sig}");
    }

    fn kill9(&mut self) {
        self.signal("KILL");
        self.child.wait().unwrap();
    }

    /// SIGTERM, then the exit status (within 20 s).
    fn stop(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait(Duration::from_secs(20))
    }

    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                start.elapsed() < limit,
                "process did not end:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stopped by SIGSTOP ('T' in /proc/<pid>/stat).
    fn is_stopped(&self) -> bool {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // pid (comm) STATE ...: the state follows the last ')'.
        stat.rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next())
            == Some("T")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `check` every 50 ms until it holds; fails after `limit`. Returns how long it took.
async fn until(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "no {what} after {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn leases(t: &TestApp) -> Vec<LeaseInfo> {
    t.app.db.leases().await.unwrap()
}

/// The live lease of `job`, if any.
async fn live_lease(t: &TestApp, job: &str) -> Option<LeaseInfo> {
    leases(t)
        .await
        .into_iter()
        .find(|l| l.job == job && l.is_live())
}

/// Live leases per holder's process id.
async fn held_per_pid(t: &TestApp) -> BTreeMap<i64, usize> {
    let mut per = BTreeMap::new();
    for l in leases(t).await.into_iter().filter(LeaseInfo::is_live) {
        *per.entry(l.holder.unwrap().pid).or_default() += 1;
    }
    per
}

/// Every accept batchSave call received (any answer, reconciliation uploads aside): its body
/// and records.
fn sent_records(t: &TestApp) -> Vec<(String, u16, Vec<Json>)> {
    let st = t.sim.state.lock().unwrap();
    st.calls
        .iter()
        .filter(|c| c.path.ends_with("/accept/batchSave"))
        .map(|c| {
            let recs: Vec<Json> = serde_json::from_str(&c.body).unwrap();
            (c.body.clone(), c.status, recs)
        })
        .collect()
}

/// Each row (RowGuid) went out under exactly one Cd_Batch, in however many sends; every send
/// of a call (same Cd_Batch, same first record) was the same bytes; every one of `rows` rows
/// was accepted. Returns the Cd_Batch numbers seen.
fn one_cd_batch_per_row(t: &TestApp, rows: usize) -> BTreeSet<String> {
    let mut batch_of: HashMap<String, BTreeSet<String>> = HashMap::new();
    let mut body_of: HashMap<(String, String), BTreeSet<String>> = HashMap::new();
    for (body, _, recs) in sent_records(t) {
        for r in &recs {
            batch_of
                .entry(r["RowGuid"].as_str().unwrap().to_string())
                .or_default()
                .insert(r["Cd_Batch"].as_str().unwrap().to_string());
        }
        let first = &recs[0];
        let call = (
            first["Cd_Batch"].as_str().unwrap().to_string(),
            first["RowGuid"].as_str().unwrap().to_string(),
        );
        body_of.entry(call).or_default().insert(body);
    }
    for (guid, batches) in &batch_of {
        assert_eq!(batches.len(), 1, "row {guid} went out under {batches:?}");
    }
    for (call, bodies) in &body_of {
        assert_eq!(
            bodies.len(),
            1,
            "call {call:?} was sent with different bytes"
        );
    }
    let accepted: BTreeSet<String> = t
        .accepted("accept")
        .iter()
        .map(|r| r["RowGuid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(accepted.len(), rows, "every row accepted");
    assert_eq!(batch_of.len(), rows, "no other row sent");
    batch_of.into_values().flatten().collect()
}

/// The control tables agree with what the platform received: every batch done, one
/// reconciliation row per batch, counts adding up to `rows`.
async fn control_tables_agree(t: &TestApp, batches: &BTreeSet<String>, rows: i64) {
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM qz_batch WHERE state <> 'done'")
            .await,
        0
    );
    let done: BTreeSet<String> = t
        .rows("SELECT cd_batch FROM qz_batch")
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    assert_eq!(&done, batches, "qz_batch holds exactly the batches sent");
    let recon = t
        .rows("SELECT cd_batch, cd_count FROM qz_reconciliation ORDER BY cd_batch")
        .await;
    let recon_batches: BTreeSet<String> = recon.iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(&recon_batches, batches);
    let counted: i64 = recon
        .iter()
        .map(|r| r[1].as_deref().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(counted, rows, "reconciliation counts add up to the rows");
    assert_eq!(t.scalar("SELECT COUNT(*) FROM qz_outbox").await, 0);
}

async fn pending_batches(t: &TestApp) -> i64 {
    t.scalar("SELECT COUNT(*) FROM qz_batch WHERE state = 'pending'")
        .await
}

async fn two_runs(which: Which) {
    let Some(t) = spawn_app(which, Spawn::default()).await else {
        return;
    };
    assert!(t.cfg_text.contains(TEST_LEASE));
    t.insert_many("accept", 5000).await;
    let mut a = Proc::run(&t, "a");
    until(
        "lease held by the first process",
        Duration::from_secs(30),
        async || {
            live_lease(&t, "accept")
                .await
                .is_some_and(|l| l.holder.unwrap().pid == a.pid())
        },
    )
    .await;
    let mut b = Proc::run(&t, "b");
    let accepted = async || t.sim.state.lock().unwrap().accepted_count >= 5000;
    until("5,000 rows delivered", Duration::from_secs(180), accepted).await;
    until("every batch closed", Duration::from_secs(30), async || {
        pending_batches(&t).await == 0
    })
    .await;
    until("the standby line", Duration::from_secs(10), async || {
        b.log().contains("standing by")
    })
    .await;
    let standby = b.log();
    let line = standby
        .lines()
        .find(|l| l.contains("standing by"))
        .unwrap()
        .to_string();
    assert!(
        line.contains(&format!("pid {}", a.pid())) && line.contains("Beijing time"),
        "{line}"
    );
    assert!(b.stop().success(), "{}", b.log());
    assert!(a.stop().success(), "{}", a.log());
    assert_eq!(
        t.sim.state.lock().unwrap().accepted_count,
        5000,
        "no row twice"
    );
    let batches = one_cd_batch_per_row(&t, 5000);
    control_tables_agree(&t, &batches, 5000).await;
    assert!(!standby.contains("ERROR"), "{standby}");
}
on_all_backends!(
    two_run_processes_deliver_every_row_under_one_cd_batch,
    two_runs
);

async fn kill_holder(which: Which) {
    let Some(t) = spawn_app(which, Spawn::default()).await else {
        return;
    };
    t.insert_many("accept", 5000).await;
    let mut a = Proc::run(&t, "a");
    until(
        "lease held by the first process",
        Duration::from_secs(30),
        async || {
            live_lease(&t, "accept")
                .await
                .is_some_and(|l| l.holder.unwrap().pid == a.pid())
        },
    )
    .await;
    let mut b = Proc::run(&t, "b");
    until("the standby line", Duration::from_secs(20), async || {
        b.log().contains("standing by")
    })
    .await;
    // Mid-run: once a first part is accepted, the gateway starts answering 503, so the
    // holder keeps resending its current call while it is killed.
    until(
        "a first part delivered",
        Duration::from_secs(120),
        async || t.sim.state.lock().unwrap().accepted_count >= 1000,
    )
    .await;
    {
        let mut st = t.sim.state.lock().unwrap();
        assert!(
            st.accepted_count < 5000,
            "the holder finished before it could be killed"
        );
        st.answer_all = Some(qianzhi::tools::simulate::Scripted {
            status: 503,
            location: None,
            body: "gateway busy".into(),
        });
    }
    let refused = || {
        t.sim
            .state
            .lock()
            .unwrap()
            .calls
            .iter()
            .filter(|c| c.status == 503)
            .count()
    };
    until(
        "the holder resending",
        Duration::from_secs(20),
        async || refused() >= 2,
    )
    .await;
    let before = live_lease(&t, "accept").await.unwrap();
    a.kill9();
    let killed = Instant::now();
    let pending: Vec<String> = t
        .rows("SELECT cd_batch FROM qz_batch WHERE state = 'pending'")
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    assert!(!pending.is_empty(), "the holder left a batch pending");
    t.sim.state.lock().unwrap().answer_all = None;
    until("the takeover", Duration::from_secs(20), async || {
        live_lease(&t, "accept")
            .await
            .is_some_and(|l| l.holder.unwrap().pid == b.pid())
    })
    .await;
    let took = killed.elapsed();
    eprintln!("{which:?}: takeover {took:?} after kill -9 (ttl {TTL:?} + renew {RENEW:?})");
    assert!(
        took <= TTL + RENEW + SLACK,
        "takeover after {took:?}, more than ttl + renew_interval"
    );
    let after = live_lease(&t, "accept").await.unwrap();
    assert!(after.token > before.token, "{before:?} {after:?}");
    until(
        "every row delivered",
        Duration::from_secs(180),
        async || {
            t.accepted("accept")
                .iter()
                .map(|r| r["RowGuid"].as_str().unwrap().to_string())
                .collect::<BTreeSet<_>>()
                .len()
                == 5000
        },
    )
    .await;
    until("every batch closed", Duration::from_secs(30), async || {
        pending_batches(&t).await == 0
    })
    .await;
    let log = b.log();
    assert!(log.contains("took over the job"), "{log}");
    assert!(b.stop().success(), "{}", b.log());
    // The batches pending at the kill went out again under their own Cd_Batch, same bytes
    // (one_cd_batch_per_row checks every resend against the first send).
    let batches = one_cd_batch_per_row(&t, 5000);
    for p in &pending {
        assert!(batches.contains(p), "pending batch {p} resent");
    }
    control_tables_agree(&t, &batches, 5000).await;
}
on_all_backends!(
    the_standby_finishes_after_kill_9_of_the_holder_within_ttl_and_a_round,
    kill_holder
);

async fn fencing(which: Which) {
    let Some(t) = spawn_app(which, Spawn::default()).await else {
        return;
    };
    t.insert_many("accept", 300).await;
    // The first process reads the rows, then stops (SIGSTOP, its lease renewal with it)
    // just before committing them.
    let mut a = Proc::start(
        &t,
        "a",
        &["once", "--job", "accept"],
        &[("QIANZHI_FAILPOINT", "stop-before-outbox-commit")],
    );
    until(
        "the first process stopped",
        Duration::from_secs(30),
        async || a.is_stopped(),
    )
    .await;
    let first = live_lease(&t, "accept").await.expect("held while paused");
    assert_eq!(first.holder.as_ref().unwrap().pid, a.pid());
    until("its lease expired", TTL + SLACK, async || {
        live_lease(&t, "accept").await.is_none()
    })
    .await;
    // Another process takes the lease over and delivers the rows.
    let out = t.cli(&["once", "--job", "accept"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("delivered 300"), "{err}");
    let seq = t.app.db.todays_last_seq(UNIT).await.unwrap();
    // The paused one resumes exactly where it stopped: its commit must fail.
    a.signal("CONT");
    let status = a.wait(Duration::from_secs(30));
    let log = a.log();
    assert_eq!(status.code(), Some(4), "{log}");
    assert!(
        log.contains("continued") && log.contains("was taken over"),
        "{log}"
    );
    assert!(!log.contains("delivered"), "{log}");
    // Nothing of the paused process was committed: one batch (the second process's), the
    // Cd_Batch sequence where the second process left it, each row sent once.
    assert_eq!(t.app.db.todays_last_seq(UNIT).await.unwrap(), seq);
    assert_eq!(t.scalar("SELECT COUNT(*) FROM qz_batch").await, 1);
    assert_eq!(
        t.scalar("SELECT exchange_no FROM qz_cursor WHERE job = 'accept'")
            .await,
        1
    );
    assert_eq!(t.sim.state.lock().unwrap().accepted_count, 300);
    let batches = one_cd_batch_per_row(&t, 300);
    control_tables_agree(&t, &batches, 300).await;
    let last = live_lease(&t, "accept").await;
    assert!(last.is_none(), "both released or expired: {last:?}");
    let row = leases(&t).await;
    assert_eq!(row[0].token, first.token + 1, "one takeover: {row:?}");
}
on_all_backends!(a_holder_whose_lease_was_taken_over_commits_nothing, fencing);

async fn cannot_renew(which: Which) {
    let Some(t) = spawn_app(which, Spawn::default()).await else {
        return;
    };
    t.insert_many("accept", 50).await;
    // The gateway answers 503, so the run keeps resending its call; the lease is never
    // renewed (failpoint), as when the database is out of reach for the renewals.
    t.sim.state.lock().unwrap().answer_all = Some(qianzhi::tools::simulate::Scripted {
        status: 503,
        location: None,
        body: "gateway busy".into(),
    });
    let started = Instant::now();
    let mut a = Proc::start(
        &t,
        "a",
        &["once", "--job", "accept"],
        &[("QIANZHI_FAILPOINT", "lease-renew-fails")],
    );
    let status = a.wait(Duration::from_secs(30));
    let stopped = started.elapsed();
    // It stopped sending before its lease could expire: the lease (taken at the start, never
    // renewed) is still live now that the process has ended.
    let lease = live_lease(&t, "accept").await;
    let log = a.log();
    assert!(
        lease.is_some(),
        "stopped after its lease expired ({stopped:?}):\n{log}"
    );
    assert!(stopped < TTL + SLACK, "{stopped:?}");
    assert_eq!(status.code(), Some(4), "{log}");
    assert!(log.contains("could not be renewed in time"), "{log}");
    let sends = t.sim.state.lock().unwrap().calls.len();
    assert!(sends >= 2, "it was sending until then: {sends}");
    // The batch stays pending for whoever takes the job next, same Cd_Batch and bytes.
    assert_eq!(pending_batches(&t).await, 1);
    t.sim.state.lock().unwrap().answer_all = None;
    t.wait_lease_expired("accept").await;
    let out = t.cli(&["once", "--job", "accept"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let batches = one_cd_batch_per_row(&t, 50);
    control_tables_agree(&t, &batches, 50).await;
}
on_all_backends!(
    a_holder_that_cannot_renew_stops_sending_before_its_lease_expires,
    cannot_renew
);

async fn once_against_a_held_lease(which: Which) {
    let Some(t) = spawn_app(which, Spawn::default()).await else {
        return;
    };
    t.insert_many("accept", 10).await;
    let mut a = Proc::run(&t, "a");
    until(
        "the first rows delivered",
        Duration::from_secs(30),
        async || t.sim.state.lock().unwrap().accepted_count == 10,
    )
    .await;
    until("every batch closed", Duration::from_secs(30), async || {
        pending_batches(&t).await == 0
    })
    .await;
    // The daemon's first run is over and recorded (last_run_at), so the snapshot below is
    // not raced by its own bookkeeping.
    until(
        "the first run recorded",
        Duration::from_secs(30),
        async || {
            t.scalar("SELECT COUNT(*) FROM qz_cursor WHERE last_run_at IS NOT NULL")
                .await
                == 1
        },
    )
    .await;
    // More rows, which the daemon would send at its next run (interval 30 s).
    let more: Vec<_> = (11..=15).map(|id| t.sample("accept", id)).collect();
    let rows: Vec<ChangeRow> = more
        .iter()
        .zip(11..)
        .map(|(fields, id)| ChangeRow {
            id,
            op: "I",
            cd_time: "2026-11-20 10:00:01",
            fields,
        })
        .collect();
    t.insert_rows("accept", &rows).await;
    let snapshot = async || {
        (
            t.rows("SELECT position, exchange_no, last_run_at FROM qz_cursor")
                .await,
            t.rows("SELECT holder, token, pid FROM qz_lease").await,
            t.scalar("SELECT COUNT(*) FROM qz_batch").await,
            t.sim.state.lock().unwrap().calls.len(),
        )
    };
    let before = snapshot().await;
    let out = t.cli(&["once", "--job", "accept"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains(&format!("pid {}", a.pid()))
            && err.contains("Beijing time")
            && err.contains("nothing was changed")
            && err.contains("本进程未做任何更改"),
        "{err}"
    );
    assert_eq!(snapshot().await, before, "once changed nothing");

    // status names the holder and the expiry, in text and JSON.
    let out = t.cli(&["status"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("lease "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains(&format!("pid {}", a.pid())) && line.contains("until"),
        "{line}"
    );
    let out = t.cli(&["status", "--json"], &[]);
    let j: Json = serde_json::from_slice(&out.stdout).unwrap();
    let lease = &j["jobs"][0]["lease"];
    assert_eq!(lease["holder"]["pid"], Json::from(a.pid()), "{j}");
    assert_eq!(lease["free"], Json::from(false));
    let until_text = lease["expires_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(until_text)
            .is_ok_and(|t| t.offset().local_minus_utc() == 8 * 3600),
        "{until_text}"
    );
    assert_eq!(j["instances"][0]["pid"], Json::from(a.pid()));

    // Once the daemon is gone (its lease released at shutdown), once runs at once.
    assert!(a.stop().success(), "{}", a.log());
    let out = t.cli(&["once", "--job", "accept"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("delivered 5"), "{err}");
    let batches = one_cd_batch_per_row(&t, 15);
    control_tables_agree(&t, &batches, 15).await;
}
on_all_backends!(
    once_names_the_holder_and_exits_4_changing_nothing,
    once_against_a_held_lease
);

/// 21 jobs: `accept` and accept_02 .. accept_21 over the same change table.
fn twenty_one_jobs(s: String) -> String {
    let mut s = s;
    for n in 2..=21 {
        s.push_str(&format!(
            "\n[[job]]\nname = \"accept_{n:02}\"\ndata_type = \"accept\"\nsource = \"accept_changes\"\n\
             key = [\"id\"]\nseq_column = \"change_id\"\nsettle_lag = \"0s\"\ninterval = \"30s\"\n"
        ));
    }
    s
}

async fn scale_out(which: Which) {
    let Some(t) = spawn_app(
        which,
        Spawn {
            edit: &twenty_one_jobs,
            ..Default::default()
        },
    )
    .await
    else {
        return;
    };
    assert_eq!(t.app.cfg.jobs.len(), 21);
    let mut procs: Vec<Proc> = (0..3).map(|i| Proc::run(&t, &format!("p{i}"))).collect();
    let pids: BTreeSet<i64> = procs.iter().map(Proc::pid).collect();
    until("7 leases each", Duration::from_secs(60), async || {
        let per = held_per_pid(&t).await;
        per.keys().copied().collect::<BTreeSet<_>>() == pids && per.values().all(|n| *n == 7)
    })
    .await;
    // Stable: a few rounds later still 7 each.
    tokio::time::sleep(RENEW * 3).await;
    let per = held_per_pid(&t).await;
    assert!(per.values().all(|n| *n == 7), "{per:?}");
    let mut dead = procs.remove(0);
    dead.kill9();
    let killed = Instant::now();
    let rest: BTreeSet<i64> = procs.iter().map(Proc::pid).collect();
    until("its jobs moved", Duration::from_secs(30), async || {
        let per = held_per_pid(&t).await;
        per.keys().copied().collect::<BTreeSet<_>>() == rest && per.values().sum::<usize>() == 21
    })
    .await;
    let took = killed.elapsed();
    eprintln!("{which:?}: 7 jobs moved {took:?} after kill -9 (ttl {TTL:?} + renew {RENEW:?})");
    assert!(
        took <= TTL + RENEW + SLACK,
        "the dead process's jobs moved after {took:?}, more than ttl + renew_interval"
    );
    let per = held_per_pid(&t).await;
    assert!(per.values().all(|n| *n <= 11), "{per:?}");
    // A process joins: the two give up their surplus between runs, 7 each again.
    procs.push(Proc::run(&t, "p3"));
    let pids: BTreeSet<i64> = procs.iter().map(Proc::pid).collect();
    until(
        "7 leases each after a process joined",
        Duration::from_secs(60),
        async || {
            let per = held_per_pid(&t).await;
            per.keys().copied().collect::<BTreeSet<_>>() == pids && per.values().all(|n| *n == 7)
        },
    )
    .await;
    assert!(
        procs[0]
            .log()
            .contains("job lease given up to share the jobs"),
        "{}",
        procs[0].log()
    );
    for p in &mut procs {
        assert!(p.stop().success(), "{}", p.log());
    }
    // All gave their leases up at shutdown, and left qz_instance.
    assert!(held_per_pid(&t).await.is_empty());
    assert!(
        t.app
            .db
            .live_instances(TTL)
            .await
            .unwrap()
            .iter()
            .all(|h| h.pid == dead.pid()),
        "only the killed process may still count as live"
    );
}
on_all_backends!(
    three_processes_share_21_jobs_and_take_over_a_dead_ones,
    scale_out
);
