//! Privacy end to end: what qianzhi stores in qz_error and prints from `check`, `status` and
//! `demo` holds no ID number, mobile number, password or token in the clear.

use super::*;

const ID: &str = "610431198603210047";
const ID_MASKED: &str = "610431********0047";
const MOBILE: &str = "13812345678";
const MOBILE_MASKED: &str = "138****5678";

/// Department databases often keep dates as text and columns wider than the spec: the
/// generated change table is made so, to hold an ID or mobile number in any of these columns.
async fn widen(t: &TestApp, which: Which, columns: &[&str]) {
    for c in columns {
        let sql = match which.native() {
            Which::Sqlite => continue, // SQLite keeps any text in any column
            Which::Postgres => {
                format!("ALTER TABLE accept_changes ALTER COLUMN {c} TYPE VARCHAR(60)")
            }
            Which::Mysql => format!("ALTER TABLE accept_changes MODIFY {c} VARCHAR(60)"),
            Which::OdbcPostgres | Which::OdbcMysql => unreachable!("native() is no ODBC one"),
        };
        t.app.db.execute_script(&sql).await.unwrap();
    }
}

/// An ID number and a mobile number put in a code-set field, a datetime field, a
/// length-limited field and a USCC field: every rule's stored message has them masked.
async fn error_messages_are_masked(which: Which) {
    let Some(t) = spawn_app(which, Spawn::default()).await else {
        return;
    };
    widen(&t, which, &["ApplyerType", "ApplyDate", "ZipCode"]).await;
    let cases: [(&str, String, &str); 8] = [
        ("ApplyerType", ID.into(), "code_set"),
        ("ApplyerType", MOBILE.into(), "code_set"),
        ("ApplyDate", format!("身份证{ID}"), "datetime"),
        ("ApplyDate", format!("电话{MOBILE}"), "datetime"),
        ("ZipCode", ID.into(), "max_length"),
        ("ZipCode", MOBILE.into(), "max_length"),
        ("OrgCode", ID.into(), "uscc_check"),
        ("OrgCode", format!("{MOBILE}号"), "uscc_check"),
    ];
    for (i, (field, value, _)) in cases.iter().enumerate() {
        let id = i as i64 + 1;
        let mut fields = t.sample("accept", id);
        set_field(&mut fields, field, Lit::Text(value.clone()));
        t.insert("accept", id, "I", "2026-11-20 10:00:00", &fields)
            .await;
    }
    let o = t.once("accept").await.unwrap();
    assert_eq!(o.delivered, 0, "{o:?}");
    let errs = t
        .rows("SELECT source_key, field, rule, message FROM qz_error")
        .await;
    for (i, (field, value, rule)) in cases.iter().enumerate() {
        let key = (i + 1).to_string();
        let row = errs
            .iter()
            .find(|e| {
                e[0].as_deref() == Some(&key)
                    && e[1].as_deref() == Some(*field)
                    && e[2].as_deref() == Some(*rule)
            })
            .unwrap_or_else(|| panic!("no {rule} error for {field} = {value}: {errs:?}"));
        let msg = row[3].as_deref().unwrap();
        // The length rule states lengths only; the others quote the value, masked.
        if *rule != "max_length" {
            let masked = if value.contains(ID) {
                ID_MASKED
            } else {
                MOBILE_MASKED
            };
            assert!(msg.contains(masked), "{field} {rule}: {msg}");
        }
    }
    for e in &errs {
        let msg = e[3].as_deref().unwrap();
        assert!(
            !msg.contains(ID) && !msg.contains(MOBILE),
            "unmasked: {msg}"
        );
    }
}
on_all_backends!(
    id_and_mobile_numbers_are_masked_in_every_error_message,
    error_messages_are_masked
);

/// Runs the binary with a config file and environment, returning stdout and stderr together.
fn run(cfg: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_qianzhi"));
    c.arg("--config").arg(cfg).args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `check` and `status` show the database URL (reachable or not) without any password form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_status_print_no_database_password() {
    let t = spawn_app(Which::Sqlite, Spawn::default()).await.unwrap();
    // Nothing listens on port 1: connecting fails and the error names the URL.
    let urls = [
        "postgres://qz:Pw1secret@127.0.0.1:1/db",
        "postgres://qz@127.0.0.1:1/db?password=Pw1secret",
        "postgres://qz@127.0.0.1:1/db?sslmode=disable&password=Pw1secret",
        "postgres://qz:Pw1%40secret@127.0.0.1:1/db",
        "mysql://qz:Pw1secret@127.0.0.1:1/db?ssl-mode=disabled&password=Pw2secret",
        // Not URLs qianzhi takes: refused before connecting, never echoed.
        "host=127.0.0.1 password=Pw1secret user=qz",
        "Server=127.0.0.1;Uid=qz;Password=Pw1secret;",
    ];
    // Each refused connection waits out the pool's acquire timeout: run them side by side.
    let runs: Vec<_> = urls
        .iter()
        .flat_map(|u| [(*u, "check"), (*u, "status")])
        .map(|(u, cmd)| {
            let cfg = t.cfg_path.clone();
            std::thread::spawn(move || (u, cmd, run(&cfg, &[cmd], &[("QIANZHI_DATABASE__URL", u)])))
        })
        .collect();
    for r in runs {
        let (u, cmd, out) = r.join().unwrap();
        assert!(
            !out.contains("Pw1") && !out.contains("Pw2"),
            "{cmd} {u}:\n{out}"
        );
        if u.contains("://") {
            assert!(out.contains("127.0.0.1:1/db"), "{cmd} {u}:\n{out}");
            assert!(out.contains("***"), "{cmd} {u}:\n{out}");
        } else {
            assert!(out.contains("database.url"), "{cmd} {u}:\n{out}");
        }
    }
}

/// A database URL with a `password` parameter: `check` says the server is reachable and shows
/// the URL with the value hidden; `status` does not show it either.
async fn reachable_with_password_parameter(which: Which) {
    let Some(t) = spawn_app(which, Spawn::default()).await else {
        return;
    };
    let url = t
        .cfg_text
        .lines()
        .find_map(|l| l.strip_prefix("url = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap()
        .to_string();
    // An ODBC connection string takes the password as PWD=.
    let with_password = match which.odbc_dialect() {
        Some(_) => format!("{url};PWD=Pw3secret"),
        None if url.contains('?') => format!("{url}&password=Pw3secret"),
        None => format!("{url}?password=Pw3secret"),
    };
    for cmd in ["check", "status"] {
        let out = run(
            &t.cfg_path,
            &[cmd],
            &[("QIANZHI_DATABASE__URL", &with_password)],
        );
        assert!(!out.contains("Pw3secret"), "{cmd}:\n{out}");
        if which == Which::OdbcMysql {
            assert!(out.contains("PWD=***"), "{cmd}:\n{out}");
        }
        // SQLite refuses the unknown parameter; both servers take it and connect (MariaDB's
        // ODBC driver sends the password, which root without one is refused with).
        if cmd == "check" && which != Which::Sqlite && which != Which::OdbcMysql {
            let hidden = match which.odbc_dialect() {
                Some(_) => "PWD=***",
                None => "password=***",
            };
            assert!(out.contains("reachable") && out.contains(hidden), "{out}");
        }
    }
}
on_all_backends!(
    check_hides_password_parameter_of_reachable_database,
    reachable_with_password_parameter
);

/// A syntax error on a line holding an unquoted token names line and column, not the line;
/// one on a harmless line still shows it.
#[test]
fn config_syntax_error_does_not_echo_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        "[database]\nurl = \"sqlite://x.db\"\n[gdzw]\ntoken = abc123secret\n",
    )
    .unwrap();
    let out = run(&cfg, &["check"], &[]);
    assert!(out.contains("line 4, column 9"), "{out}");
    assert!(!out.contains("abc123secret"), "{out}");
    std::fs::write(&cfg, "[unit]\nname = 某 局\n").unwrap();
    let out = run(&cfg, &["check"], &[]);
    assert!(
        out.contains("line 2") && out.contains("name = 某 局"),
        "{out}"
    );
}

/// The demo writes its token and key files for the owner only, also over an older copy.
#[test]
fn demo_secret_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("gdzw.token");
    std::fs::write(&old, "old\n").unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_qianzhi"))
        .arg("demo")
        .arg("--dir")
        .arg(dir.path())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let secrets = [
        "gdzw.token",
        "gansu.authorization",
        "gansu.sm4key",
        "shuidi.pkey",
        "qcc.key",
        "qcc.secret",
        "xinshu.apikey",
        "xinshu.private",
    ];
    for name in secrets {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}: {:o}", mode & 0o777);
    }
    assert_eq!(std::fs::read_to_string(&old).unwrap(), "demo-token\n");
    // Its summary quotes error messages: no ID number there in the clear.
    for line in text.lines() {
        assert!(
            !line.contains("610431198603210048"),
            "unmasked ID in the demo summary: {line}"
        );
    }
}
