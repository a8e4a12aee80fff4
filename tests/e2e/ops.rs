//! Operations: `/metrics` and `/healthz` of a running daemon, `status` from another process
//! (retrying with its root cause, no secrets needed, JSON shape), interrupted runs, systemd
//! notifications and credentials, the progress line of `once`.

use super::*;
use qianzhi::tools::simulate::Scripted;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nothing listens on right now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `[http] listen` on `port`, appended to a generated config.
fn with_http(port: u16) -> impl Fn(String) -> String {
    move |s| format!("{s}\n[http]\nlisten = \"127.0.0.1:{port}\"\n")
}

/// A qianzhi child process whose stderr goes to a file (a pipe nobody reads could fill up).
struct Proc {
    child: Child,
    log: std::path::PathBuf,
}

impl Proc {
    fn start(t: &TestApp, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let log = t
            .dir
            .path()
            .join(format!("{}.log", uuid::Uuid::new_v4().simple()));
        let mut c = Command::new(env!("CARGO_BIN_EXE_qianzhi"));
        c.arg("--config")
            .arg(&t.cfg_path)
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            c.env(k, v);
        }
        Proc {
            child: c.spawn().unwrap(),
            log,
        }
    }

    /// SIGTERM, then the exit status and everything it logged.
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("no exit 15 s after SIGTERM: {}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        (status, self.log_text())
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `url`: status and body; None while nothing answers.
async fn get(url: &str) -> Option<(u16, String)> {
    let r = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

/// Polls `probe` until it gives Some, for at most `secs`; `what` names it in the failure.
async fn wait_for<T, F, Fut>(secs: u64, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of `name{<label>="<value>"}` in a scrape.
fn sample(body: &str, name: &str, label: &str, value: &str) -> Option<f64> {
    let head = format!("{name}{{{label}=\"{value}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&head))
        .and_then(|v| v.trim().parse().ok())
}

fn job_sample(body: &str, name: &str, job: &str) -> Option<f64> {
    sample(body, name, "job", job)
}

/// `promtool check metrics` on a scrape. CI installs Debian's `prometheus` package and sets
/// QIANZHI_REQUIRE_PROMTOOL=1, so there the check can never be skipped.
fn promtool_check(body: &str) {
    let required = std::env::var("QIANZHI_REQUIRE_PROMTOOL").is_ok_and(|v| v == "1");
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(!required, "promtool is required but cannot run: {e}");
            eprintln!("promtool not installed; scrape not checked with it");
            return;
        }
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{body}"
    );
}

/// While the platform answers 503 the daemon's job shows as retrying in /metrics, /healthz and
/// in `status` from another process, with the answer as its cause; once the platform is back
/// everything is delivered and the retry state is gone everywhere.
async fn retrying_everywhere(which: Which) {
    let port = free_port();
    let edit = with_http(port);
    let Some(t) = spawn_app(
        which,
        Spawn {
            edit: &edit,
            ..Default::default()
        },
    )
    .await
    else {
        return;
    };
    t.insert_many("accept", 3).await;
    t.sim.state.lock().unwrap().answer_all = Some(Scripted {
        status: 503,
        body: "gateway busy".into(),
        ..Default::default()
    });
    let daemon = Proc::start(&t, &["run"], &[]);
    let base = format!("http://127.0.0.1:{port}");
    let body = wait_for(30, "two failures in a row in /metrics", || async {
        let (_, b) = get(&format!("{base}/metrics")).await?;
        let n = job_sample(&b, "qianzhi_job_consecutive_failures", "accept")?;
        // The backlog gauges are read from the control tables at scrape time; wait for the
        // scrape that shows the pending batch as well (seen once at 0 on PostgreSQL, cause
        // not yet found: see the closing note of the session that added this wait).
        let pending = job_sample(&b, "qianzhi_job_batches_pending", "accept")?;
        (n >= 2.0 && pending == 1.0).then_some(b)
    })
    .await;
    for (name, want) in [
        ("qianzhi_job_retrying", 1.0),
        ("qianzhi_job_running", 1.0),
        ("qianzhi_job_stopped", 0.0),
        ("qianzhi_job_rows_read_total", 3.0),
        ("qianzhi_job_rows_delivered_total", 0.0),
        ("qianzhi_job_rows_invalid_total", 0.0),
        ("qianzhi_job_batches_pending", 1.0),
        ("qianzhi_job_calls_pending", 1.0),
    ] {
        assert_eq!(
            job_sample(&body, name, "accept"),
            Some(want),
            "{name}\n{body}"
        );
    }
    let age = job_sample(
        &body,
        "qianzhi_job_oldest_pending_batch_age_seconds",
        "accept",
    );
    assert!(age.is_some_and(|a| (0.0..120.0).contains(&a)), "{body}");
    assert!(body.contains("qianzhi_database_up 1\n"), "{body}");
    assert!(
        body.contains(&format!(
            "qianzhi_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )),
        "{body}"
    );
    promtool_check(&body);
    assert!(t.sim.state.lock().unwrap().calls.len() >= 2);

    let (code, health) = get(&format!("{base}/healthz")).await.unwrap();
    assert_eq!(code, 503, "{health}");
    let h: Json = serde_json::from_str(&health).unwrap();
    assert_eq!(h["status"], "unhealthy");
    let j = &h["jobs"][0];
    assert_eq!(
        (j["job"].as_str(), j["state"].as_str()),
        (Some("accept"), Some("retrying"))
    );
    assert!(j["why"].as_str().unwrap().contains("HTTP 503"), "{health}");
    assert!(j["since"].as_str().unwrap().ends_with("+08:00"), "{health}");

    // `status` in another process reads the retry state from the database.
    let out = t.cli(&["status"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("retrying"))
        .unwrap_or_else(|| panic!("no retrying line:\n{text}"));
    assert!(
        line.contains("since 20") && line.contains("because HTTP 503: gateway busy"),
        "{line}"
    );
    let out = t.cli(&["status", "--json"], &[]);
    let s: Json = serde_json::from_slice(&out.stdout).unwrap();
    let r = &s["jobs"][0]["retrying"];
    assert!(r["since"].as_str().unwrap().ends_with("+08:00"), "{r}");
    assert!(r["cause"].as_str().unwrap().contains("HTTP 503"), "{r}");
    assert!(r["failures"].as_i64().unwrap() >= 1, "{r}");

    // The platform is back: delivered, and the retry state is gone everywhere.
    t.sim.state.lock().unwrap().answer_all = None;
    let body = wait_for(30, "the rows delivered", || async {
        let (_, b) = get(&format!("{base}/metrics")).await?;
        let n = job_sample(&b, "qianzhi_job_rows_delivered_total", "accept")?;
        (n == 3.0).then_some(b)
    })
    .await;
    assert_eq!(
        job_sample(&body, "qianzhi_job_retrying", "accept"),
        Some(0.0)
    );
    assert_eq!(
        job_sample(&body, "qianzhi_job_consecutive_failures", "accept"),
        Some(0.0)
    );
    assert_eq!(
        job_sample(&body, "qianzhi_job_batches_pending", "accept"),
        Some(0.0)
    );
    promtool_check(&body);
    let (code, health) = wait_for(10, "/healthz 200", || async {
        get(&format!("{base}/healthz"))
            .await
            .filter(|(c, _)| *c == 200)
    })
    .await;
    assert_eq!(code, 200);
    assert!(health.contains("\"status\":\"ok\""), "{health}");
    assert_eq!(t.accepted("accept").len(), 3);
    let retry = t
        .rows("SELECT retrying_since, retry_error FROM qz_cursor WHERE job = 'accept'")
        .await;
    assert_eq!(retry, vec![vec![None, None]]);
    let out = t.cli(&["status"], &[]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("retrying"));
    let (status, log) = daemon.stop();
    assert!(status.success(), "{status:?} {log}");
    // A successful run after the retries: its success is recorded.
    let last = t
        .rows("SELECT last_run_result, last_success_at FROM qz_cursor WHERE job = 'accept'")
        .await;
    assert_eq!(last[0][0].as_deref(), Some("ok"), "{last:?}");
    assert!(last[0][1].is_some());
}
on_all_backends!(
    retrying_shows_in_metrics_healthz_and_status,
    retrying_everywhere
);

/// A platform nobody listens for: the root cause ("Connection refused") is in the warning, in
/// `status`, and in the STATUS= text systemd gets with READY=1 and WATCHDOG=1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_named_in_logs_status_and_systemd() {
    let closed = free_port();
    let edit = move |s: String| {
        let root = s
            .lines()
            .find_map(|l| l.strip_prefix("api_root = \""))
            .unwrap()
            .trim_end_matches('"')
            .to_string();
        let path = root.splitn(4, '/').nth(3).unwrap().to_string();
        s.replace(&root, &format!("http://127.0.0.1:{closed}/{path}"))
    };
    let t = spawn_app(
        Which::Sqlite,
        Spawn {
            edit: &edit,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(t.cfg_text.contains(&format!("127.0.0.1:{closed}/")));
    t.insert_many("accept", 1).await;
    let sock_path = t.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let daemon = Proc::start(
        &t,
        &["run"],
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            // Pings every 0.2 s; WATCHDOG_PID unset means "this process".
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let mut got: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    let retrying =
        |m: &str| m.contains("accept retrying since") && m.contains("Connection refused");
    while !got.iter().any(|m| retrying(m))
        || got.iter().filter(|m| m.contains("WATCHDOG=1")).count() < 3
    {
        assert!(
            Instant::now() < deadline,
            "notifications so far: {got:#?}\n{}",
            daemon.log_text()
        );
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    let ready = got.iter().position(|m| m.lines().any(|l| l == "READY=1"));
    let first_ping = got
        .iter()
        .position(|m| m.lines().any(|l| l == "WATCHDOG=1"));
    assert!(ready.is_some() && ready <= first_ping, "{got:#?}");
    let status = got.iter().find(|m| retrying(m)).unwrap();
    let status = status.lines().find(|l| l.starts_with("STATUS=")).unwrap();
    assert!(status.starts_with("STATUS=1 jobs, "), "{status}");

    let out = t.cli(&["status"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("retrying"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains(&format!("because cannot reach http://127.0.0.1:{closed}/"))
            && line.contains("error sending request")
            && line.contains("Connection refused"),
        "{line}"
    );
    let (exit, log) = daemon.stop();
    assert!(exit.success(), "{exit:?} {log}");
    let warning = log
        .lines()
        .find(|l| l.contains("temporary failure"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        warning.contains("error sending request") && warning.contains("Connection refused"),
        "the whole error chain: {warning}"
    );
    // STOPPING=1 on the way out.
    let mut stopping = false;
    while let Ok(n) = sock.recv(&mut buf) {
        stopping |= String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1");
    }
    assert!(stopping);
    // Interrupted while retrying: not a success, and no longer retrying.
    let row = t
        .rows("SELECT last_run_result, last_success_at, retrying_since FROM qz_cursor WHERE job = 'accept'")
        .await;
    assert_eq!(row, vec![vec![Some("interrupted".into()), None, None]]);
}

/// A fatal answer stops one job: /healthz turns 503 and names it with the answer, while the
/// other job goes on (so the daemon keeps serving).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_503_after_a_fatal_answer() {
    let port = free_port();
    let edit = with_http(port);
    let t = spawn_app(
        Which::Sqlite,
        Spawn {
            types: &["accept", "material"],
            client_token: "wrong-token-x1",
            edit: &edit,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    t.insert_many("accept", 1).await;
    let daemon = Proc::start(&t, &["run"], &[]);
    let base = format!("http://127.0.0.1:{port}");
    let (code, body) = wait_for(30, "/healthz 503", || async {
        get(&format!("{base}/healthz"))
            .await
            .filter(|(c, _)| *c == 503)
    })
    .await;
    assert_eq!(code, 503);
    let h: Json = serde_json::from_str(&body).unwrap();
    let jobs = h["jobs"].as_array().unwrap();
    let accept = jobs.iter().find(|j| j["job"] == "accept").unwrap();
    assert_eq!(accept["state"], "stopped", "{body}");
    let why = accept["why"].as_str().unwrap();
    assert!(
        why.contains("401") && !why.contains("wrong-token-x1"),
        "{why}"
    );
    let material = jobs.iter().find(|j| j["job"] == "material").unwrap();
    assert!(material["why"].is_null(), "{body}");
    let (_, m) = get(&format!("{base}/metrics")).await.unwrap();
    assert_eq!(
        job_sample(&m, "qianzhi_job_stopped", "accept"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        job_sample(&m, "qianzhi_job_stopped", "material"),
        Some(0.0),
        "{m}"
    );
    promtool_check(&m);
    let (exit, log) = daemon.stop();
    assert!(exit.success(), "{exit:?} {log}");
}

/// `status` and `migrate` need only the database: a DBA who cannot read the token still gets
/// them, while `once` (which sends) says which secret it cannot read.
async fn status_without_secrets(which: Which) {
    let Some(t) = spawn_app(which, Spawn::default()).await else {
        return;
    };
    t.insert_many("accept", 2).await;
    t.once("accept").await.unwrap();
    std::fs::remove_file(t.dir.path().join("token")).unwrap();
    for args in [&["status"][..], &["status", "--json"], &["migrate"]] {
        let out = t.cli(args, &[]);
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = t.cli(&["status", "--json"], &[]);
    let s: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["jobs"][0]["pending_batches"], Json::from(0));
    assert_eq!(s["jobs"][0]["last_run_result"], "ok");
    let out = t.cli(&["once"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("cannot read gdzw.token_file"), "{err}");
}
on_all_backends!(status_and_migrate_need_no_secrets, status_without_secrets);

/// `once` stopped by SIGTERM while its call is being retried: recorded as interrupted, not
/// as a success, and no longer retrying.
async fn interrupted_once(which: Which) {
    let Some(t) = spawn_app(which, Spawn::default()).await else {
        return;
    };
    t.insert_many("accept", 2).await;
    t.sim.state.lock().unwrap().answer_all = Some(Scripted {
        status: 502,
        body: "bad gateway".into(),
        ..Default::default()
    });
    let once = Proc::start(&t, &["once"], &[]);
    wait_for(30, "the retry state in qz_cursor", || async {
        let r = t
            .rows("SELECT retry_failures FROM qz_cursor WHERE job = 'accept'")
            .await;
        r.first()
            .and_then(|r| r[0].clone())
            .filter(|n| n.parse::<i64>().unwrap_or(0) >= 1)
    })
    .await;
    let (exit, log) = once.stop();
    assert!(log.contains("(interrupted)"), "{exit:?} {log}");
    let row = t
        .rows("SELECT last_run_result, last_success_at, last_run_at, retrying_since FROM qz_cursor WHERE job = 'accept'")
        .await;
    assert_eq!(row[0][0].as_deref(), Some("interrupted"), "{row:?}");
    assert_eq!(row[0][1], None, "an interrupted run is no success: {row:?}");
    assert!(row[0][2].is_some());
    assert_eq!(row[0][3], None);
    let out = t.cli(&["status"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("(interrupted"), "{text}");
    assert!(!text.contains("retrying"), "{text}");
    // The next run delivers the same batch and is a success.
    t.sim.state.lock().unwrap().answer_all = None;
    let o = t.once("accept").await.unwrap();
    assert_eq!(o.delivered, 2);
    let row = t
        .rows("SELECT last_run_result, last_success_at FROM qz_cursor WHERE job = 'accept'")
        .await;
    assert_eq!(row[0][0].as_deref(), Some("ok"));
    assert!(row[0][1].is_some());
}
on_all_backends!(
    an_interrupted_run_is_not_recorded_as_a_success,
    interrupted_once
);

/// systemd's LoadCredential=: a credential named gdzw.token in $CREDENTIALS_DIRECTORY is the
/// token, before the configured token_file (which the service user may not be able to read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_systemd_credential_is_the_token() {
    let t = spawn_app(
        Which::Sqlite,
        Spawn {
            client_token: "wrong-token-x1",
            ..Default::default()
        },
    )
    .await
    .unwrap();
    t.insert_many("accept", 1).await;
    let creds = t.dir.path().join("credentials");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("gdzw.token"), format!("{TOKEN}\n")).unwrap();
    let env = [("CREDENTIALS_DIRECTORY", creds.to_str().unwrap())];
    let out = t.cli(&["check"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = t.cli(&["once"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(t.accepted("accept").len(), 1);
    // Without the credential the configured (wrong) token file is used again.
    t.insert(
        "accept",
        2,
        "I",
        "2026-11-20 10:00:01",
        &t.sample("accept", 2),
    )
    .await;
    let out = t.cli(&["once"], &[]);
    assert!(!out.status.success());
    assert_eq!(t.accepted("accept").len(), 1);
    // A token_file that does not exist is no problem when the credential is there.
    let cfg = t.cfg_text.replace(
        &t.dir.path().join("token").display().to_string(),
        "/nonexistent/gdzw.token",
    );
    std::fs::write(&t.cfg_path, cfg).unwrap();
    let out = t.cli(&["once"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(t.accepted("accept").len(), 2);
}

/// `once` draws a progress line on a terminal, and never when stderr is a file or a pipe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_shows_progress_only_on_a_terminal() {
    let edit = |s: String| {
        s.replace(
            "settle_lag = \"0s\"",
            "settle_lag = \"0s\"\nbatch_size = 50",
        )
    };
    let t = spawn_app(
        Which::Sqlite,
        Spawn {
            edit: &edit,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    t.insert_many("accept", 600).await;
    let out = t.cli(&["once"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("accept: read 600 rows"), "{err}");
    assert!(
        !err.contains("ETA") && !err.contains("/600 rows"),
        "no progress in a pipe: {err}"
    );
    assert_eq!(t.accepted("accept").len(), 600);

    // The same under a terminal (script(1) gives it one).
    t.insert_rows(
        "accept",
        &(601..=1200)
            .map(|id| (id, t.sample("accept", id)))
            .collect::<Vec<_>>()
            .iter()
            .map(|(id, f)| qianzhi::db::tools::ChangeRow {
                id: *id,
                op: "I",
                cd_time: "2026-11-20 11:00:00",
                fields: f,
            })
            .collect::<Vec<_>>(),
    )
    .await;
    let cmd = format!(
        "{} --config {} once",
        env!("CARGO_BIN_EXE_qianzhi"),
        t.cfg_path.display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("/600 rows") && shown.contains("ETA"),
        "{shown}"
    );
    assert!(shown.contains("accept: read 600 rows"), "{shown}");
    assert_eq!(t.accepted("accept").len(), 1200);
}

/// `status --json`: objects, not arrays of pairs, and Beijing times with their offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_uses_objects_and_beijing_times() {
    let t = spawn_app(Which::Sqlite, Spawn::default()).await.unwrap();
    let mut bad = t.sample("accept", 2);
    qianzhi::schema::sample::set_field(&mut bad, "TaskName", Lit::Null);
    t.insert(
        "accept",
        1,
        "I",
        "2026-11-20 10:00:00",
        &t.sample("accept", 1),
    )
    .await;
    t.insert("accept", 2, "I", "2026-11-20 10:00:01", &bad)
        .await;
    t.once("accept").await.unwrap();
    let out = t.cli(&["status", "--json"], &[]);
    let s: Json = serde_json::from_slice(&out.stdout).unwrap();
    let j = &s["jobs"][0];
    assert_eq!(
        j["open_errors_by_rule"],
        serde_json::json!({ "required": 1 })
    );
    for key in ["last_run_at", "last_success_at"] {
        let v = j[key].as_str().unwrap();
        let t = chrono::DateTime::parse_from_rfc3339(v).unwrap();
        assert_eq!(t.offset().local_minus_utc(), 8 * 3600, "{key}: {v}");
        assert!(
            (chrono::Utc::now() - t.to_utc()).num_seconds().abs() < 120,
            "{v}"
        );
    }
    assert_eq!(j["last_run_result"], "ok");
    assert!(j["retrying"].is_null() && j["last_error"].is_null());
    assert_eq!(j["status_errors"], serde_json::json!([]));

    // A status problem (the source view is gone) is kept apart from the job's own last error.
    let cfg = t
        .cfg_text
        .replace("source = \"accept_changes\"", "source = \"no_such_view\"");
    assert_ne!(cfg, t.cfg_text);
    std::fs::write(&t.cfg_path, cfg).unwrap();
    let out = t.cli(&["status", "--json"], &[]);
    let s: Json = serde_json::from_slice(&out.stdout).unwrap();
    let j = &s["jobs"][0];
    assert!(j["last_error"].is_null(), "{j}");
    assert!(
        j["status_errors"][0]
            .as_str()
            .unwrap()
            .contains("cannot count waiting rows"),
        "{j}"
    );
    let out = t.cli(&["status"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("status could not") && !text.contains("last error"),
        "{text}"
    );
}
