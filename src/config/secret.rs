//! The one secret reader: every token, key and Authorization comes from a file or an
//! environment variable by the same rule, read once when the configuration is loaded, and is
//! held as a `secrecy::SecretString` from then on. Errors name where the secret was looked
//! for, never what it holds.
//!
//! The preferred source under systemd is a credential (`LoadCredential=gdzw.token:/etc/…`):
//! systemd reads the file as root and hands the service a private copy in
//! `$CREDENTIALS_DIRECTORY`, so the secret file can stay root-only. A credential named
//! `<section>.<key>` (`gdzw.token`, `gansu.key`, `qcc.secret_key`, …) is used before the
//! configured `*_file` / `*_env`.

use secrecy::{ExposeSecret, SecretString};
use std::path::{Path, PathBuf};

/// The rule, as README states it: a secret file holds the secret alone. Leading and trailing
/// whitespace (spaces, tabs, the final newline) is not part of it; what remains must be one
/// non-empty line. The same holds for a secret in an environment variable.
pub const RULE: &str = "the file (or variable) must hold the secret alone, on one line; \
surrounding spaces and the final newline are ignored (文件或变量中只放口令本身，一行，首尾空白忽略)";

/// Where a credential comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretFrom {
    File(PathBuf),
    /// The name of the environment variable.
    Env(String),
    /// Written in the configuration file itself (`gdzw.token`, for trials only).
    Inline(InlineSecret),
    /// A systemd credential: the file of that name in `$CREDENTIALS_DIRECTORY`.
    Credential(PathBuf),
    /// Not configured; the issue is reported.
    Missing,
}

/// The file of the systemd credential `name` (`gdzw.token`), when the service manager passed
/// one: `$CREDENTIALS_DIRECTORY/<name>` exists (systemd sets the variable only for a unit with
/// `LoadCredential=` or `SetCredential=`).
pub fn systemd_credential(name: &str) -> Option<PathBuf> {
    credential_in(std::env::var_os("CREDENTIALS_DIRECTORY"), name)
}

/// The credential `name` in the credentials directory `dir` (the variable's value), if there.
fn credential_in(dir: Option<std::ffi::OsString>, name: &str) -> Option<PathBuf> {
    let dir = dir.filter(|d| !d.is_empty())?;
    if name.contains('/') {
        return None;
    }
    let path = Path::new(&dir).join(name);
    path.is_file().then_some(path)
}

/// A secret written in the configuration file; `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct InlineSecret(String);

impl From<String> for InlineSecret {
    fn from(s: String) -> Self {
        InlineSecret(s)
    }
}

impl std::fmt::Debug for InlineSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// A credential as configured, and its value read once at load.
#[derive(Clone)]
pub struct Credential {
    pub from: SecretFrom,
    pub value: SecretString,
}

impl Credential {
    /// A credential that was not read: not configured, unreadable, or a section read alone
    /// by a test. Its value is empty, which the reader never accepts as a secret.
    pub fn unread(from: SecretFrom) -> Self {
        Credential {
            from,
            value: SecretString::from(""),
        }
    }

    /// Whether the value was read (the reader never returns an empty secret).
    pub fn is_read(&self) -> bool {
        !self.value.expose_secret().is_empty()
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

/// Applies [`RULE`] to the text of a file or variable; `label` names where it came from.
fn one_line(text: &str, label: &str) -> Result<SecretString, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(format!("{label} is empty (内容为空)"));
    }
    if t.contains(['\n', '\r']) {
        let lines = t.lines().filter(|l| !l.trim().is_empty()).count();
        return Err(format!(
            "{label} holds {lines} lines; a secret is one line (应只有一行)"
        ));
    }
    Ok(SecretString::from(t))
}

fn read_file(path: &Path, label: &str) -> Result<SecretString, String> {
    let what = format!("{label} {}", path.display());
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => one_line(&text, &what),
            Err(_) => Err(format!("{what} is not UTF-8 text (不是 UTF-8 文本)")),
        },
        Err(e) => Err(format!("cannot read {what}: {e} (无法读取)")),
    }
}

/// Reads a credential by [`RULE`]. `label` is its key path, e.g. `gansu.key_file`.
pub fn read(from: &SecretFrom, label: &str) -> Result<SecretString, String> {
    match from {
        SecretFrom::File(path) => read_file(path, label),
        SecretFrom::Credential(path) => read_file(path, &format!("systemd credential ({label})")),
        SecretFrom::Env(var) => match std::env::var(var) {
            Ok(t) => one_line(&t, &format!("environment variable {var} ({label})")),
            Err(_) => Err(format!(
                "environment variable {var} ({label}) is not set (环境变量未设置)"
            )),
        },
        SecretFrom::Inline(InlineSecret(t)) => one_line(t, label),
        SecretFrom::Missing => Err(format!("{label} is not configured (未配置)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_file_is_read_whole_and_trimmed_and_must_be_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, Result<&str, &str>); 7] = [
            ("tok-123\n", Ok("tok-123")),
            ("  tok-123 \r\n\n", Ok("tok-123")),
            ("\n\ntok-123", Ok("tok-123")),
            ("tok 123\n", Ok("tok 123")),
            ("", Err("is empty")),
            (" \n\t\n", Err("is empty")),
            ("tok-123\nsecond line\n", Err("holds 2 lines")),
        ];
        for (i, (text, want)) in cases.into_iter().enumerate() {
            let p = dir.path().join(format!("s{i}"));
            std::fs::write(&p, text).unwrap();
            let got = read(&SecretFrom::File(p), "gdzw.token_file");
            match (got, want) {
                (Ok(s), Ok(w)) => assert_eq!(s.expose_secret(), w, "{text:?}"),
                (Err(e), Err(w)) => {
                    assert!(e.contains(w) && e.contains("gdzw.token_file"), "{e}");
                    assert!(!e.contains("tok-123"), "the content is never shown: {e}");
                }
                (got, want) => panic!("{text:?}: {:?} vs {want:?}", got.map(|_| "***")),
            }
        }
        let e = read(&SecretFrom::File(dir.path().join("nope")), "gansu.key_file").unwrap_err();
        assert!(e.starts_with("cannot read gansu.key_file"), "{e}");
        std::fs::write(dir.path().join("bin"), [0xff, 0xfe, b'a']).unwrap();
        let e = read(&SecretFrom::File(dir.path().join("bin")), "k").unwrap_err();
        assert!(e.contains("not UTF-8"), "{e}");
    }

    #[test]
    fn a_systemd_credential_is_found_by_name_in_the_credentials_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("gdzw.token"), "cred-tok\n").unwrap();
        // The directory as systemd would set $CREDENTIALS_DIRECTORY (not set here: other
        // tests of this binary read secrets at the same time).
        let found = |name: &str| credential_in(Some(dir.path().into()), name);
        let p = found("gdzw.token").unwrap();
        assert_eq!(p, dir.path().join("gdzw.token"));
        let s = read(&SecretFrom::Credential(p), "gdzw.token").unwrap();
        assert_eq!(s.expose_secret(), "cred-tok");
        assert_eq!(found("gansu.key"), None);
        assert_eq!(found("../gdzw.token"), None);
        assert_eq!(credential_in(None, "gdzw.token"), None, "variable unset");
        assert_eq!(credential_in(Some("".into()), "gdzw.token"), None);
        let e = read(
            &SecretFrom::Credential(dir.path().join("gone")),
            "gansu.key",
        )
        .unwrap_err();
        assert!(e.contains("systemd credential (gansu.key)"), "{e}");
    }

    #[test]
    fn environment_and_inline_secrets_follow_the_same_rule() {
        let var = "QIANZHI_TEST_SECRET_RULE_7731";
        // SAFETY: a variable of this test alone; no other thread reads it.
        unsafe { std::env::set_var(var, " abc \n") };
        let s = read(&SecretFrom::Env(var.into()), "qcc.key_env").unwrap();
        assert_eq!(s.expose_secret(), "abc");
        unsafe { std::env::set_var(var, "a\nb") };
        assert!(read(&SecretFrom::Env(var.into()), "x").is_err());
        unsafe { std::env::remove_var(var) };
        let e = read(&SecretFrom::Env(var.into()), "qcc.key_env").unwrap_err();
        assert!(e.contains("is not set"), "{e}");
        let inline = SecretFrom::Inline(InlineSecret("90817263".into()));
        assert_eq!(
            read(&inline, "gdzw.token").unwrap().expose_secret(),
            "90817263"
        );
        assert_eq!(format!("{inline:?}"), "Inline(***)");
    }
}
