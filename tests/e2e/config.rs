//! The configuration as a DBA meets it: `qianzhi check` listing every mistake in one run with
//! where it is, and `QIANZHI_*` overrides that reach `[[job]]` entries by name.

use crate::helpers::*;

/// `file:line:` of the first line of `text` holding `needle`.
fn line_of(path: &std::path::Path, text: &str, needle: &str) -> String {
    let n = text
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle} not in the config"));
    format!("{}:{}:", path.display(), n + 1)
}

/// The output line that holds every one of `parts`.
fn line_with<'a>(out: &'a str, parts: &[&str]) -> &'a str {
    out.lines()
        .find(|l| parts.iter().all(|p| l.contains(p)))
        .unwrap_or_else(|| panic!("no line with {parts:?} in\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_lists_every_kind_of_mistake_in_one_run() {
    let t = spawn_app(Which::Sqlite, Spawn::default()).await.unwrap();
    let dir = t.dir.path();
    let text = t
        .cfg_text
        // 1. A TOML syntax error (an unquoted text value) on a harmless line.
        .replace("system_name = \"示例业务系统\"", "system_name = 示例 业务系统")
        // 2. An unknown key, one letter off.
        .replace("retry_max = \"1s\"", "retry_max = \"1s\"\nretry_mx = \"2s\"")
        // 3. A value out of its documented range.
        .replace("retry_initial = \"50ms\"", "retry_initial = \"50ms\"\nack_every_calls = 0")
        // 4. A wrong type.
        .replace("settle_lag = \"0s\"", "settle_lag = \"0s\"\nbatch_size = \"many\"")
        // 5. A missing secret file...
        .replace(
            &format!("{}", dir.join("token").display()),
            &format!("{}", dir.join("no-such-token").display()),
        )
        // ... and two more in another section: all three are reported.
        + &format!(
            "\n[gansu]\nbase_url = \"http://127.0.0.1:1/submit-server\"\nauthorization_file = \"{}\"\nkey_file = \"{}\"\n",
            dir.join("no-such-auth").display(),
            dir.join("no-such-key").display()
        )
        // 6. An unknown data type and 7. a schedule that is not a cron.
        + "\n[[job]]\nname = \"extra\"\ndata_type = \"nonesuch\"\nsource = \"accept_changes\"\nkey = [\"id\"]\nschedule = \"every day\"\n"
        // 8. A mapped column the source does not have (only the database can tell).
        + "\n[[job]]\nname = \"mapped\"\ndata_type = \"accept\"\nsource = \"accept_changes\"\nkey = [\"id\"]\nseq_column = \"change_id\"\ninterval = \"1m\"\n[job.map]\nTaskName = \"no_such_column\"\n";
    std::fs::write(&t.cfg_path, &text).unwrap();
    // 9. A wrong value given by the environment, addressed by the job's name.
    let out = t.cli(
        &["check"],
        &[("QIANZHI_JOB__ACCEPT__SETTLE_LAG", "forever")],
    );
    let out_text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{out_text}");
    let p = &t.cfg_path;
    let expect: [(String, &[&str]); 11] = [
        (
            line_of(p, &text, "system_name"),
            &["syntax error at line", "system_name = 示例 业务系统"],
        ),
        (
            line_of(p, &text, "retry_mx"),
            &["delivery.retry_mx: unknown key", "did you mean retry_max?"],
        ),
        (
            line_of(p, &text, "ack_every_calls"),
            &["delivery.ack_every_calls: 0 is out of range: use 1 to 1000"],
        ),
        (
            line_of(p, &text, "batch_size = \"many\""),
            &[
                "job[0] (accept).batch_size: wrong type: expected a whole number, found text \"many\"",
            ],
        ),
        (
            line_of(p, &text, "no-such-token"),
            &[
                "gdzw.token_file: cannot read gdzw.token_file",
                "no-such-token",
            ],
        ),
        (
            line_of(p, &text, "no-such-auth"),
            &["gansu.authorization_file: cannot read", "no-such-auth"],
        ),
        (
            line_of(p, &text, "no-such-key"),
            &["gansu.key_file: cannot read", "no-such-key"],
        ),
        (
            line_of(p, &text, "nonesuch"),
            &["job[1] (extra).data_type: unknown data type 'nonesuch'"],
        ),
        (
            line_of(p, &text, "every day"),
            &["job[1] (extra).schedule: 'every day' is not a 6-field cron"],
        ),
        (
            "environment variable QIANZHI_JOB__ACCEPT__SETTLE_LAG".into(),
            &["job[0] (accept).settle_lag: 'forever' is not a duration"],
        ),
        (
            String::new(),
            &["✗ job mapped: mapped column no_such_column is not in accept_changes"],
        ),
    ];
    for (at, parts) in &expect {
        let line = line_with(&out_text, parts);
        assert!(line.starts_with(&format!("✗ {at}")), "{at}: {line}");
    }
    // Each issue says what to change.
    assert!(
        line_with(&out_text, &["batch_size"]).contains("→ write it as batch_size = 10"),
        "{out_text}"
    );
    assert!(out_text.contains("problem(s) found"), "{out_text}");
    assert!(!out_text.contains(TOKEN), "{out_text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_switches_a_job_off_by_its_name() {
    let t = spawn_app(Which::Sqlite, Spawn::default()).await.unwrap();
    t.insert(
        "accept",
        1,
        "I",
        "2026-11-20 10:00:01",
        &t.sample("accept", 1),
    )
    .await;
    let off = t.cli(&["once"], &[("QIANZHI_JOB__ACCEPT__ENABLED", "false")]);
    assert!(
        off.status.success(),
        "{}",
        String::from_utf8_lossy(&off.stderr)
    );
    assert_eq!(t.sim.state.lock().unwrap().calls.len(), 0, "the job is off");
    assert_eq!(t.scalar("SELECT COUNT(*) FROM qz_batch").await, 0);
    // A name that matches no job is an error, not a silent no-op.
    let typo = t.cli(&["once"], &[("QIANZHI_JOB__ACEPT__ENABLED", "false")]);
    let err = String::from_utf8_lossy(&typo.stderr);
    assert!(!typo.status.success(), "{err}");
    assert!(
        err.contains("QIANZHI_JOB__ACEPT__ENABLED") && err.contains("did you mean accept?"),
        "{err}"
    );
    assert_eq!(t.sim.state.lock().unwrap().calls.len(), 0);
    let on = t.cli(&["once"], &[]);
    assert!(
        on.status.success(),
        "{}",
        String::from_utf8_lossy(&on.stderr)
    );
    assert!(
        !t.sim.state.lock().unwrap().calls.is_empty(),
        "sent once switched on"
    );
    assert_eq!(t.scalar("SELECT COUNT(*) FROM qz_batch").await, 1);
}

/// Every secret is read when the configuration loads, and only then: removing the token file
/// afterwards changes nothing for the running process (the file rule is tested in
/// `config::secret`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_read_once_when_the_configuration_loads() {
    let t = spawn_app(Which::Sqlite, Spawn::default()).await.unwrap();
    let cfg = qianzhi::tools::config_from_str(&t.cfg_text).unwrap();
    std::fs::remove_file(t.dir.path().join("token")).unwrap();
    let app = qianzhi::pipeline::App::new(cfg).await.unwrap();
    t.insert(
        "accept",
        1,
        "I",
        "2026-11-20 10:00:01",
        &t.sample("accept", 1),
    )
    .await;
    let o = qianzhi::pipeline::run_once(&app, "accept", &Default::default(), &Default::default())
        .await
        .unwrap();
    assert_eq!(o.delivered, 1, "signed with the token read at load: {o:?}");
    // A new load does read the file, and says which one is gone.
    let e = format!(
        "{:#}",
        qianzhi::tools::config_from_str(&t.cfg_text).unwrap_err()
    );
    assert!(
        e.contains("gdzw.token_file: cannot read gdzw.token_file"),
        "{e}"
    );
}
