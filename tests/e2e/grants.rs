//! `qianzhi grants` and the privilege part of `check`: an account given exactly the printed
//! statements passes `check` and runs a job that writes error rows; an account missing one of
//! them is named by `check` with the statement that adds it. On SQLite: the file permissions,
//! with `check` run as an unprivileged user.

use super::*;
use std::process::{Command, Output};

/// The statements of `grants` output: comment lines and trailing comments left out.
fn statements(script: &str) -> Vec<String> {
    script
        .lines()
        .filter(|l| !l.trim_start().starts_with("--") && !l.trim().is_empty())
        .map(|l| match l.find(';') {
            Some(i) => l[..=i].to_string(),
            None => l.to_string(),
        })
        .collect()
}

fn qianzhi(cfg: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qianzhi"))
        .arg("--config")
        .arg(cfg)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The database URL with `account` as its user: `Uid=` of an ODBC connection string.
fn as_account(url: &str, account: &str) -> String {
    if url.starts_with("odbc:") {
        return url
            .split(';')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("uid") => format!("{k}={account}"),
                _ => kv.to_string(),
            })
            .collect::<Vec<_>>()
            .join(";");
    }
    let mut u = url::Url::parse(url).unwrap();
    u.set_username(account).unwrap();
    u.to_string()
}

/// Runs statements as the test's administrator (the owner of the tables).
async fn admin(t: &TestApp, stmts: &[String]) {
    for s in stmts {
        t.app
            .db
            .execute_script(s.trim_end_matches(';'))
            .await
            .unwrap_or_else(|e| panic!("{s}: {e:#}"));
    }
}

/// Valid rows 1 and 2 and row 3 with a wrong ID check digit (an error row), at `minute`.
async fn rows_with_an_invalid_one(t: &TestApp, first: i64, minute: u32) {
    for id in first..first + 2 {
        t.insert(
            "accept",
            id,
            "I",
            &format!("2026-11-20 10:{minute:02}:00"),
            &t.sample("accept", id),
        )
        .await;
    }
    let mut bad = t.sample("accept", first + 2);
    set_field(
        &mut bad,
        "ApplyerPageCode",
        Lit::Text("610431198603210048".into()),
    );
    t.insert(
        "accept",
        first + 2,
        "I",
        &format!("2026-11-20 10:{minute:02}:01"),
        &bad,
    )
    .await;
}

async fn printed_grants_are_enough(which: Which) {
    let Some(t) = spawn_app(which, Spawn::default()).await else {
        return;
    };
    if which == Which::Sqlite {
        return sqlite_file_permissions(&t).await;
    }
    let account = format!(
        "qz_svc_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let (create, drop) = match which.native() {
        Which::Postgres => (
            format!("CREATE ROLE {account} LOGIN"),
            vec![
                format!("DROP OWNED BY {account}"),
                format!("DROP ROLE {account}"),
            ],
        ),
        _ => (
            format!("CREATE USER '{account}'@'%'"),
            vec![format!("DROP USER '{account}'@'%'")],
        ),
    };
    admin(&t, &[create]).await;

    // The statements exactly as printed, run by the owner.
    let out = t.cli(&["grants", "--user", &account], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let script = String::from_utf8(out.stdout).unwrap();
    let grants = statements(&script);
    let want_first = match which.native() {
        Which::Postgres => "GRANT SELECT, INSERT, UPDATE, DELETE ON qz_cursor TO",
        _ => "GRANT SELECT, INSERT, UPDATE, DELETE ON qz_t_",
    };
    assert!(grants[0].starts_with(want_first), "{script}");
    if which.native() == Which::Postgres {
        assert!(
            grants.contains(&format!(
                "GRANT USAGE ON SEQUENCE qz_error_id_seq TO {account};"
            )),
            "{script}"
        );
    }
    assert!(
        grants.iter().any(|g| g.contains("accept_changes")),
        "{script}"
    );
    admin(&t, &grants).await;

    // The service's own configuration: the same, connecting as the account.
    let url = as_account(&t.app.cfg.database.url, &account);
    let svc_cfg = t.dir.path().join("service.toml");
    std::fs::write(&svc_cfg, t.cfg_text.replace(&t.app.cfg.database.url, &url)).unwrap();

    let out = qianzhi(&svc_cfg, &["check"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("✓ privileges: {account}")),
        "{}",
        text(&out)
    );

    // A run that writes error rows works with exactly these grants.
    rows_with_an_invalid_one(&t, 1, 0).await;
    let out = qianzhi(&svc_cfg, &["once", "--job", "accept"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(t.accepted("accept").len(), 2, "{}", text(&out));
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM qz_error WHERE job = 'accept'")
            .await,
        1
    );

    // Each grant taken away is named with the statement that gives it back.
    let db = qianzhi::db::grants::url_database(&t.app.cfg.database.url).unwrap();
    let (grantee, on) = match which.native() {
        Which::Postgres => (account.clone(), String::new()),
        _ => (format!("'{account}'@'%'"), format!("{db}.")),
    };
    let mut cases = vec![
        (
            format!("REVOKE INSERT ON {on}qz_outbox FROM {grantee}"),
            format!("GRANT INSERT ON {on}qz_outbox TO {grantee};"),
        ),
        (
            format!("REVOKE SELECT ON {on}accept_changes FROM {grantee}"),
            format!("GRANT SELECT ON {on}accept_changes TO {grantee};"),
        ),
        (
            format!("REVOKE UPDATE, DELETE ON {on}qz_error FROM {grantee}"),
            format!("GRANT UPDATE, DELETE ON {on}qz_error TO {grantee};"),
        ),
    ];
    if which.native() == Which::Postgres {
        cases.push((
            format!("REVOKE USAGE ON SEQUENCE qz_error_id_seq FROM {account}"),
            format!("GRANT USAGE ON SEQUENCE qz_error_id_seq TO {account};"),
        ));
    }
    for (revoke, fix) in &cases {
        admin(&t, std::slice::from_ref(revoke)).await;
        let out = qianzhi(&svc_cfg, &["check"]);
        let shown = text(&out);
        assert!(!out.status.success(), "{revoke}: {shown}");
        let lines: Vec<&str> = shown
            .lines()
            .filter(|l| l.contains("privilege missing"))
            .collect();
        assert_eq!(lines.len(), 1, "{revoke}: {shown}");
        assert!(lines[0].ends_with(fix.as_str()), "{revoke}: {shown}");
        admin(&t, std::slice::from_ref(fix)).await;
        let out = qianzhi(&svc_cfg, &["check"]);
        assert!(out.status.success(), "after {fix}: {}", text(&out));
    }

    if which.native() == Which::Postgres {
        // The reported bug: without the sequence, the first error row fails the run (and
        // nothing is lost: the same rows go once the grant is back).
        admin(
            &t,
            &[format!(
                "REVOKE USAGE ON SEQUENCE qz_error_id_seq FROM {account}"
            )],
        )
        .await;
        rows_with_an_invalid_one(&t, 11, 5).await;
        let out = qianzhi(&svc_cfg, &["once", "--job", "accept"]);
        assert!(!out.status.success(), "{}", text(&out));
        assert!(
            text(&out).contains("permission denied for sequence qz_error_id_seq"),
            "{}",
            text(&out)
        );
        assert_eq!(t.accepted("accept").len(), 2);
        admin(
            &t,
            &[format!(
                "GRANT USAGE ON SEQUENCE qz_error_id_seq TO {account}"
            )],
        )
        .await;
        let out = qianzhi(&svc_cfg, &["once", "--job", "accept"]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(t.accepted("accept").len(), 4);
        assert_eq!(
            t.scalar("SELECT COUNT(*) FROM qz_error WHERE job = 'accept'")
                .await,
            2
        );
    }
    admin(&t, &drop).await;
}

/// SQLite: `grants` prints the ownership commands for the file and its directory; `check`
/// run as a user who cannot write them says so, and passes once the commands are applied.
async fn sqlite_file_permissions(t: &TestApp) {
    use std::os::unix::fs::PermissionsExt;
    let db_path = qianzhi::db::grants::sqlite_path(&t.app.cfg.database.url).unwrap();
    let out = t.cli(&["grants", "--user", "nobody"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let script = String::from_utf8(out.stdout).unwrap();
    let dir = t.dir.path().display().to_string();
    for want in [
        format!("chown nobody: {dir}\n"),
        format!("chown nobody: {}\n", db_path.display()),
        format!("chmod 0600 {}\n", db_path.display()),
    ] {
        assert!(script.contains(&want), "{want}: {script}");
    }
    // As root every file is writable: `check` runs as nobody, from a copy of the binary
    // that nobody may run, with the config and token readable.
    let bin = t.dir.path().join("qianzhi");
    std::fs::copy(env!("CARGO_BIN_EXE_qianzhi"), &bin).unwrap();
    for (p, mode) in [
        (t.dir.path().to_path_buf(), 0o755),
        (bin.clone(), 0o755),
        (t.cfg_path.clone(), 0o644),
        (t.dir.path().join("token"), 0o644),
        (db_path.clone(), 0o644),
    ] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    for side in ["-wal", "-shm"] {
        let p = format!("{}{side}", db_path.display());
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666));
    }
    let as_nobody = || {
        Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(&bin)
            .arg("--config")
            .arg(&t.cfg_path)
            .arg("check")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    let out = as_nobody();
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(
        shown.contains(&format!(
            "✗ database file: {} cannot be read and written by this user",
            db_path.display()
        )),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("✗ database file: {dir} does not let this user")),
        "{shown}"
    );
    // The printed commands, applied.
    for line in script.lines().filter(|l| !l.starts_with('#')) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let st = Command::new(words[0]).args(&words[1..]).status().unwrap();
        assert!(st.success(), "{line}");
    }
    let out = as_nobody();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "✓ database file {} is readable and writable",
            db_path.display()
        )),
        "{}",
        text(&out)
    );
}

on_all_backends!(printed_grants_are_enough, printed_grants_are_enough);
