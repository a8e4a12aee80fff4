//! The privileges the service's database account needs: `qianzhi grants` prints them as the
//! GRANT statements of the configured backend, and `qianzhi check` tests them on the account it
//! connects as, naming each missing one with the statement that adds it.
//!
//! What is needed comes from two places only, so the two commands cannot disagree: the control
//! tables (and, on PostgreSQL, the sequences behind their BIGSERIAL ids) that the migrations in
//! `sql/<backend>/` create, and the sources and subjects views the configuration reads.

use anyhow::{Context, Result};
use sea_query::{Expr, ExprTrait, Func, Query};
use std::collections::BTreeSet;
use std::path::PathBuf;

use super::dialect::Family;
use super::source::view_ident;
use super::{Backend, Db};
use crate::config::Config;

/// Read, write and delete rows: everything the service does to a control table.
pub const TABLE_RW: &[&str] = &["SELECT", "INSERT", "UPDATE", "DELETE"];
/// Reading a source or a subjects view.
pub const READ: &[&str] = &["SELECT"];
/// `nextval()` of a BIGSERIAL id's sequence (an INSERT into qz_error, the query ledger, ...).
pub const SEQUENCE_USE: &[&str] = &["USAGE"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Schema,
    Table,
    Sequence,
}

/// One object and the privileges the service needs on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub kind: Kind,
    /// As written in the configuration or the DDL (`accept_changes`, `dept.accept_v`).
    pub name: String,
    pub privileges: &'static [&'static str],
    /// Who needs it: `control table`, `job accept`, `query penalties`.
    pub why: String,
}

/// The database account the statements name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grantee {
    pub name: String,
    /// MySQL's `'name'@'host'`; `%` unless given as `name@host`.
    pub host: String,
}

impl Grantee {
    /// `name` or, on MySQL, `name@host`.
    pub fn parse(backend: Backend, text: &str) -> Grantee {
        match (backend.is(Family::Mysql), text.rsplit_once('@')) {
            (true, Some((name, host))) => Grantee {
                name: name.to_string(),
                host: host.to_string(),
            },
            _ => Grantee {
                name: text.to_string(),
                host: "%".to_string(),
            },
        }
    }

    fn render(&self, backend: Backend) -> String {
        if backend.is(Family::Mysql) {
            format!(
                "'{}'@'{}'",
                self.name.replace('\'', "''"),
                self.host.replace('\'', "''")
            )
        } else {
            view_ident(backend, &self.name)
        }
    }
}

/// The control tables the migrations create, in order, and each BIGSERIAL column with its
/// table (PostgreSQL names its sequence `<table>_<column>_seq`).
fn control_objects(backend: Backend) -> (Vec<String>, Vec<(String, String)>) {
    let ddl = super::migrate::ddl(backend);
    let mut tables: Vec<String> = Vec::new();
    let mut serials = Vec::new();
    let mut current: Option<String> = None;
    for line in ddl.lines().map(str::trim) {
        let upper = line.to_ascii_uppercase();
        if let Some(rest) = upper.strip_prefix("CREATE TABLE IF NOT EXISTS ") {
            let name = rest.split(|c: char| c == '(' || c.is_whitespace()).next();
            let name = name.unwrap_or_default().to_ascii_lowercase();
            if !tables.contains(&name) {
                tables.push(name.clone());
            }
            current = Some(name);
            continue;
        }
        if line.starts_with(')') {
            current = None;
            continue;
        }
        let mut words = upper.split_whitespace();
        if let (Some(table), Some(col), Some(ty)) = (&current, words.next(), words.next())
            && (ty == "BIGSERIAL" || ty == "SERIAL")
        {
            serials.push((table.clone(), col.to_ascii_lowercase()));
        }
    }
    (tables, serials)
}

/// Everything the service's account needs with this configuration.
pub fn needs(backend: Backend, cfg: &Config) -> Vec<Need> {
    let (tables, serials) = control_objects(backend);
    let mut out: Vec<Need> = tables
        .into_iter()
        .map(|t| Need {
            kind: Kind::Table,
            name: t,
            privileges: TABLE_RW,
            why: "control table".into(),
        })
        .collect();
    if backend.is(Family::Postgres) {
        out.extend(serials.into_iter().map(|(t, c)| Need {
            kind: Kind::Sequence,
            name: format!("{t}_{c}_seq"),
            privileges: SEQUENCE_USE,
            why: format!("id of {t}"),
        }));
    }
    let sources = cfg
        .jobs
        .iter()
        .map(|j| (j.source.as_str(), format!("job {}", j.name)))
        .chain(
            cfg.queries
                .iter()
                .map(|q| (q.subjects.as_str(), format!("query {}", q.name))),
        );
    let mut schemas: Vec<Need> = Vec::new();
    for (source, why) in sources {
        // A schema-qualified source on PostgreSQL is out of reach without USAGE on its schema.
        if backend.is(Family::Postgres)
            && let Some((schema, _)) = source.rsplit_once('.')
        {
            let schema = schema.rsplit('.').next().unwrap_or(schema).to_string();
            add_need(&mut schemas, Kind::Schema, schema, &["USAGE"], why.clone());
        }
        add_need(&mut out, Kind::Table, source.to_string(), READ, why);
    }
    schemas.extend(out);
    schemas
}

/// Adds a need, or the reason to the one already there for the same object.
fn add_need(
    out: &mut Vec<Need>,
    kind: Kind,
    name: String,
    privileges: &'static [&'static str],
    why: String,
) {
    match out.iter_mut().find(|n| n.kind == kind && n.name == name) {
        Some(n) => n.why = format!("{}, {why}", n.why),
        None => out.push(Need {
            kind,
            name,
            privileges,
            why,
        }),
    }
}

/// A name as the database resolves it, written as a DBA would: each dotted part bare when that
/// keeps it exact, quoted otherwise. On MySQL an unqualified table is put in `database`.
pub fn object_text(backend: Backend, name: &str, database: Option<&str>) -> String {
    let mut parts: Vec<String> = name
        .split('.')
        .map(|p| view_ident(backend, &super::source::resolved(backend, p)))
        .collect();
    if backend.is(Family::Mysql)
        && parts.len() == 1
        && let Some(db) = database
    {
        parts.insert(0, view_ident(backend, db));
    }
    parts.join(".")
}

/// `GRANT <privileges> ON <object> TO <grantee>;` in the backend's dialect.
pub fn grant_statement(
    backend: Backend,
    kind: Kind,
    name: &str,
    privileges: &[&str],
    grantee: &Grantee,
    database: Option<&str>,
) -> String {
    let object = match kind {
        Kind::Schema => format!("SCHEMA {}", object_text(backend, name, None)),
        Kind::Sequence => format!("SEQUENCE {}", object_text(backend, name, database)),
        Kind::Table => object_text(backend, name, database),
    };
    format!(
        "GRANT {} ON {object} TO {};",
        privileges.join(", "),
        grantee.render(backend)
    )
}

/// The database name of a MySQL URL (`mysql://u@h:3306/dept?x` → `dept`).
pub fn url_database(url: &str) -> Option<String> {
    // An ODBC connection string: its Database= (or DB=) key.
    if let Some(rest) = url.strip_prefix(crate::config::ODBC_SCHEME) {
        return rest.split(';').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            let k = k.trim().to_ascii_lowercase();
            let v = v.trim().trim_start_matches('{').trim_end_matches('}');
            (matches!(k.as_str(), "database" | "db") && !v.is_empty()).then(|| v.to_string())
        });
    }
    let u = url::Url::parse(&url.replacen("mariadb://", "mysql://", 1)).ok()?;
    let db = u.path().trim_start_matches('/');
    (!db.is_empty()).then(|| percent_decode(db))
}

/// The user of a PostgreSQL or MySQL URL, if it names one.
pub fn url_user(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let user = percent_decode(u.username());
    (!user.is_empty()).then_some(user)
}

fn percent_decode(s: &str) -> String {
    form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

/// The file of a SQLite URL (`sqlite:///var/lib/qianzhi/dept.db?mode=rwc` →
/// `/var/lib/qianzhi/dept.db`); None for an in-memory database.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && !path.starts_with(":memory:")).then(|| PathBuf::from(path))
}

/// What `qianzhi grants` prints: comments naming what each statement is for, then the
/// statements, ready for `psql` or `mysql`; for SQLite the file permissions as shell commands.
pub fn script(cfg: &Config, grantee: &Grantee) -> Result<String> {
    let backend = Backend::with_dialect(&cfg.database.url, cfg.database.dialect)?;
    let mut out = String::new();
    if backend == Backend::Sqlite {
        let Some(path) = sqlite_path(&cfg.database.url) else {
            out.push_str("# in-memory SQLite database: nothing to grant (内存数据库，无需授权)\n");
            return Ok(out);
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map(|d| d.display().to_string())
            .unwrap_or_else(|| ".".into());
        let user = &grantee.name;
        out.push_str(&format!(
            "# SQLite 没有 GRANT：服务用户 {user} 要能读写数据库文件，并能在其目录中建立 -wal、-shm 文件\n\
             # SQLite has no GRANT: the service user {user} must read and write the database file and\n\
             # create its -wal and -shm files beside it\n\
             chown {user}: {dir}\nchmod 0750 {dir}\n\
             chown {user}: {file}\nchmod 0600 {file}\n",
            file = path.display()
        ));
        return Ok(out);
    }
    let database = if backend.is(Family::Mysql) {
        Some(
            url_database(&cfg.database.url)
                .context("database.url names no database (连接串中没有库名)")?,
        )
    } else {
        None
    };
    let who = grantee.render(backend);
    out.push_str(&format!(
        "-- qianzhi 服务账号 {who} 需要的权限（{}）；在 `qianzhi migrate` 之后由表的属主或管理员执行\n\
         -- Privileges the service account {who} needs ({}); run as the tables' owner or an\n\
         -- administrator, after `qianzhi migrate`. `qianzhi check`, run as the service, tests each.\n",
        backend.name(),
        backend.name()
    ));
    if backend.is(Family::Mysql) {
        out.push_str(&format!(
            "-- 账号不存在时先建立 / create the account first if it does not exist:\n\
             --   CREATE USER {who} IDENTIFIED BY '...';\n"
        ));
    }
    let mut last_why = String::new();
    for n in needs(backend, cfg) {
        let why = match n.kind {
            Kind::Schema | Kind::Table if n.why != "control table" => {
                "数据源与查询主体 / sources and subjects views"
            }
            Kind::Sequence => "控制表 id 的序列 / sequences of the control tables' ids",
            _ => "控制表 / control tables",
        };
        if why != last_why {
            out.push_str(&format!("-- {why}\n"));
            last_why = why.to_string();
        }
        let stmt = grant_statement(
            backend,
            n.kind,
            &n.name,
            n.privileges,
            grantee,
            database.as_deref(),
        );
        if n.why == "control table" {
            out.push_str(&format!("{stmt}\n"));
        } else {
            out.push_str(&format!("{stmt}  -- {}\n", n.why));
        }
    }
    Ok(out)
}

/// A privilege the connected account lacks, with the statement that adds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub kind: Kind,
    pub name: String,
    pub privileges: Vec<&'static str>,
    pub why: String,
    pub fix: String,
}

/// What `check` found about the connected account's privileges.
#[derive(Debug, Clone, Default)]
pub struct PrivilegeReport {
    /// The account as the database names it (`qianzhi`, `qianzhi@%`).
    pub account: String,
    pub checked: usize,
    pub missing: Vec<Missing>,
    /// Control tables the account cannot see: not migrated, or not on its search path.
    pub invisible: Vec<String>,
}

impl Db {
    /// Tests every privilege of [`needs`] on the account this pool connects as.
    pub async fn check_privileges(&self, cfg: &Config) -> Result<PrivilegeReport> {
        match self.backend {
            Backend::Sqlite => Ok(PrivilegeReport::default()),
            b if b.is(Family::Postgres) => self.pg_privileges(cfg).await,
            b if b.is(Family::Mysql) => self.my_privileges(cfg).await,
            _ => anyhow::bail!(
                "privileges are not checked on dm or oracle: `qianzhi grants` prints what the \
                 service needs (达梦、Oracle 暂不检查权限，请按 qianzhi grants 的输出授权)"
            ),
        }
    }

    async fn pg_privileges(&self, cfg: &Config) -> Result<PrivilegeReport> {
        // current_user is of type `name`, which the Any driver does not read.
        let q = Query::select()
            .expr(Expr::cust("CAST(current_user AS TEXT)"))
            .to_owned();
        let account: String = self.stmt_scalar(&q).fetch_one(&self.any).await?;
        let grantee = Grantee::parse(self.backend, &account);
        let mut report = PrivilegeReport {
            account,
            ..Default::default()
        };
        for need in needs(self.backend, cfg) {
            let text = object_text(self.backend, &need.name, None);
            // The OID forms answer NULL for an object that does not exist (or is not on the
            // search path) instead of failing the whole statement.
            let (function, lookup) = match need.kind {
                Kind::Schema => ("has_schema_privilege", "to_regnamespace"),
                Kind::Table => ("has_table_privilege", "to_regclass"),
                Kind::Sequence => ("has_sequence_privilege", "to_regclass"),
            };
            let mut q = Query::select();
            // As integers: psqlODBC sends booleans as the text '1' and '0' by default.
            for p in need.privileges {
                q.expr(
                    Expr::from(
                        Func::cust(function)
                            .arg(Func::cust(lookup).arg(Expr::val(text.clone())))
                            .arg(Expr::val(*p)),
                    )
                    .cast_as("INT"),
                );
            }
            let row = self.stmt(&q).fetch_one(&self.any).await?;
            let held: Vec<Option<bool>> = (0..need.privileges.len())
                .map(|i| sqlx::Row::try_get::<Option<i64>, _>(&row, i).map(|h| h.map(|n| n != 0)))
                .collect::<Result<_, _>>()?;
            report.checked += 1;
            if held.iter().all(Option::is_none) {
                // A missing source is reported by the source check; a missing control table
                // means an unapplied migration.
                if need.why == "control table" || need.kind == Kind::Sequence {
                    report.invisible.push(need.name.clone());
                }
                continue;
            }
            let lacking: Vec<&'static str> = need
                .privileges
                .iter()
                .zip(&held)
                .filter(|(_, h)| **h == Some(false))
                .map(|(p, _)| *p)
                .collect();
            report_missing(&mut report, self.backend, &need, lacking, &grantee, None);
        }
        Ok(report)
    }

    async fn my_privileges(&self, cfg: &Config) -> Result<PrivilegeReport> {
        let q = Query::select()
            .expr(Func::cust("CURRENT_USER"))
            .expr(Func::cust("DATABASE"))
            .to_owned();
        let row = self.stmt(&q).fetch_one(&self.any).await?;
        let account: String = sqlx::Row::try_get(&row, 0)?;
        let database: Option<String> = sqlx::Row::try_get(&row, 1)?;
        let grants = self.my_grant_lines().await?;
        let held = MyGrants::parse(&grants);
        let grantee = Grantee::parse(self.backend, &account);
        let mut report = PrivilegeReport {
            account,
            ..Default::default()
        };
        for need in needs(self.backend, cfg) {
            let (db, table) = match need.name.split_once('.') {
                Some((d, t)) => (Some(d.to_string()), t.to_string()),
                None => (database.clone(), need.name.clone()),
            };
            let Some(db) = db else { continue };
            report.checked += 1;
            let lacking: Vec<&'static str> = need
                .privileges
                .iter()
                .filter(|p| !held.allows(&db, &table, p))
                .copied()
                .collect();
            report_missing(
                &mut report,
                self.backend,
                &need,
                lacking,
                &grantee,
                Some(&db),
            );
        }
        Ok(report)
    }

    /// `SHOW GRANTS` of the current account. MariaDB includes its current role's grants; on
    /// MySQL 8 the active roles are expanded with `USING`.
    async fn my_grant_lines(&self) -> Result<Vec<String>> {
        use sqlx::Row;
        let version: String = self
            .stmt_scalar(&Query::select().expr(Func::cust("VERSION")).to_owned())
            .fetch_one(&self.any)
            .await?;
        let mut sql = "SHOW GRANTS".to_string();
        if !version.to_ascii_lowercase().contains("mariadb") {
            let roles: Option<String> = self
                .stmt_scalar(&Query::select().expr(Func::cust("CURRENT_ROLE")).to_owned())
                .fetch_one(&self.any)
                .await
                .ok()
                .flatten();
            if let Some(r) = roles.filter(|r| !r.is_empty() && r != "NONE") {
                sql = format!("SHOW GRANTS FOR CURRENT_USER() USING {r}");
            }
        }
        let rows = match sqlx::query(sqlx::AssertSqlSafe(sql))
            .persistent(false)
            .fetch_all(&self.any)
            .await
        {
            Ok(r) => r,
            Err(_) => sqlx::query("SHOW GRANTS")
                .persistent(false)
                .fetch_all(&self.any)
                .await
                .context("SHOW GRANTS")?,
        };
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(Into::into))
            .collect()
    }
}

/// Records the privileges a need lacks, with the statement that adds exactly those.
fn report_missing(
    report: &mut PrivilegeReport,
    backend: Backend,
    need: &Need,
    lacking: Vec<&'static str>,
    grantee: &Grantee,
    database: Option<&str>,
) {
    if lacking.is_empty() {
        return;
    }
    let fix = grant_statement(backend, need.kind, &need.name, &lacking, grantee, database);
    report.missing.push(Missing {
        kind: need.kind,
        name: need.name.clone(),
        privileges: lacking,
        why: need.why.clone(),
        fix,
    });
}

/// The table-level privileges of MySQL `SHOW GRANTS` lines: global, per database (a `LIKE`
/// pattern) and per table. Column privileges and procedure grants are left out, as they do
/// not let the service read or write whole rows.
#[derive(Debug, Default)]
pub struct MyGrants {
    /// (database pattern or None for `*`, table or None for `*`, privileges upper-case)
    entries: Vec<(Option<String>, Option<String>, BTreeSet<String>)>,
}

impl MyGrants {
    pub fn parse(lines: &[String]) -> MyGrants {
        let mut out = MyGrants::default();
        for line in lines {
            let Some(rest) = line.strip_prefix("GRANT ") else {
                continue;
            };
            let Some((privs, rest)) = rest.split_once(" ON ") else {
                continue; // a role granted to the account
            };
            let Some((target, _)) = rest.split_once(" TO ") else {
                continue;
            };
            let target = target.trim();
            if target.starts_with("PROCEDURE ") || target.starts_with("FUNCTION ") {
                continue;
            }
            let target = target.strip_prefix("TABLE ").unwrap_or(target);
            let Some((db, table)) = split_target(target) else {
                continue;
            };
            let privs: BTreeSet<String> = split_privileges(privs)
                .into_iter()
                .filter(|p| !p.contains('('))
                .map(|p| {
                    if p == "ALL" || p == "ALL PRIVILEGES" {
                        "ALL".to_string()
                    } else {
                        p
                    }
                })
                .collect();
            out.entries.push((db, table, privs));
        }
        out
    }

    /// Whether `privilege` on `db`.`table` is granted at some level.
    pub fn allows(&self, db: &str, table: &str, privilege: &str) -> bool {
        self.entries.iter().any(|(d, t, privs)| {
            let db_ok = d.as_deref().is_none_or(|p| like(p, db));
            let table_ok = t.as_deref().is_none_or(|x| x.eq_ignore_ascii_case(table));
            // A database-level pattern counts only at that level; a table grant names its
            // database exactly.
            let exact_db = t.is_none() || d.as_deref().is_none_or(|x| x.eq_ignore_ascii_case(db));
            db_ok && table_ok && exact_db && (privs.contains(privilege) || privs.contains("ALL"))
        })
    }
}

/// `a, b, SELECT (c, d)` → `["a", "b", "SELECT (c, d)"]`: commas inside parentheses stay.
fn split_privileges(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(cur.trim().to_ascii_uppercase());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_ascii_uppercase());
    }
    out
}

/// `` `db`.`t` ``, `` `db`.* ``, `*.*` → (database, table), None for `*`.
fn split_target(s: &str) -> Option<(Option<String>, Option<String>)> {
    let (db, rest) = ident(s)?;
    let rest = rest.strip_prefix('.')?;
    let (table, rest) = ident(rest)?;
    rest.trim().is_empty().then_some((db, table))
}

/// One backquoted identifier (doubled backquotes inside) or `*`, and what follows it.
fn ident(s: &str) -> Option<(Option<String>, &str)> {
    if let Some(rest) = s.strip_prefix('*') {
        return Some((None, rest));
    }
    let Some(body) = s.strip_prefix('`') else {
        let end = s.find('.').unwrap_or(s.len());
        return Some((Some(s[..end].to_string()), &s[end..]));
    };
    let mut out = String::new();
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '`' {
            if chars.peek().is_some_and(|(_, n)| *n == '`') {
                chars.next();
                out.push('`');
                continue;
            }
            return Some((Some(out), &body[i + 1..]));
        }
        out.push(c);
    }
    None
}

/// SQL `LIKE` with `%`, `_` and `\` escapes, case-insensitive as MySQL database names usually
/// are: the pattern of a database-level grant.
fn like(pattern: &str, s: &str) -> bool {
    fn go(p: &[char], s: &[char]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some('%') => (0..=s.len()).any(|i| go(&p[1..], &s[i..])),
            Some('_') => !s.is_empty() && go(&p[1..], &s[1..]),
            Some('\\') if p.len() > 1 => {
                !s.is_empty() && p[1].eq_ignore_ascii_case(&s[0]) && go(&p[2..], &s[1..])
            }
            Some(c) => !s.is_empty() && c.eq_ignore_ascii_case(&s[0]) && go(&p[1..], &s[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    go(&p, &s)
}

/// What the service's user cannot do with a SQLite database file and its directory.
pub fn sqlite_file_problems(path: &std::path::Path) -> Vec<String> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let access = |p: &std::path::Path, mode: libc::c_int| -> bool {
        let Ok(c) = CString::new(p.as_os_str().as_bytes()) else {
            return false;
        };
        // SAFETY: a NUL-terminated path; access(2) only reads it.
        unsafe { libc::access(c.as_ptr(), mode) == 0 }
    };
    let mut out = Vec::new();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !access(path, libc::R_OK | libc::W_OK) {
        out.push(format!(
            "{} cannot be read and written by this user (数据库文件不可读写)",
            path.display()
        ));
    }
    if !access(&dir, libc::W_OK | libc::X_OK) {
        out.push(format!(
            "{} does not let this user create the -wal and -shm files (目录不可写)",
            dir.display()
        ));
    }
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let side = PathBuf::from(side);
        if side.exists() && !access(&side, libc::R_OK | libc::W_OK) {
            out.push(format!(
                "{} cannot be read and written by this user (不可读写)",
                side.display()
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_tables_and_sequences_come_from_the_migrations() {
        let (tables, serials) = control_objects(Backend::Postgres);
        for t in [
            "qz_cursor",
            "qz_batch_seq",
            "qz_outbox",
            "qz_error",
            "qz_query_page",
        ] {
            assert!(tables.contains(&t.to_string()), "{t}: {tables:?}");
        }
        assert!(!tables.contains(&"qz_schema_version".to_string()));
        assert!(
            serials.contains(&("qz_error".into(), "id".into())),
            "{serials:?}"
        );
        assert!(serials.contains(&("qz_query_ledger".into(), "id".into())));
        // Every backend creates the same tables.
        for b in [Backend::Mysql, Backend::Sqlite] {
            let (other, serial) = control_objects(b);
            assert_eq!(other, tables, "{b:?}");
            assert!(serial.is_empty(), "{b:?}: {serial:?}");
        }
    }

    #[test]
    fn statements_per_dialect() {
        let pg = Grantee::parse(Backend::Postgres, "qianzhi");
        assert_eq!(
            grant_statement(
                Backend::Postgres,
                Kind::Sequence,
                "qz_error_id_seq",
                SEQUENCE_USE,
                &pg,
                None
            ),
            "GRANT USAGE ON SEQUENCE qz_error_id_seq TO qianzhi;"
        );
        assert_eq!(
            grant_statement(
                Backend::Postgres,
                Kind::Table,
                "Dept.Accept_V",
                READ,
                &pg,
                None
            ),
            "GRANT SELECT ON dept.accept_v TO qianzhi;"
        );
        assert_eq!(
            grant_statement(
                Backend::Postgres,
                Kind::Table,
                "部门.受理",
                READ,
                &Grantee::parse(Backend::Postgres, "QZ"),
                None
            ),
            "GRANT SELECT ON \"部门\".\"受理\" TO \"QZ\";"
        );
        let my = Grantee::parse(Backend::Mysql, "qianzhi@10.0.0.%");
        assert_eq!(
            grant_statement(
                Backend::Mysql,
                Kind::Table,
                "qz_error",
                TABLE_RW,
                &my,
                Some("dept")
            ),
            "GRANT SELECT, INSERT, UPDATE, DELETE ON dept.qz_error TO 'qianzhi'@'10.0.0.%';"
        );
        assert_eq!(
            grant_statement(
                Backend::Mysql,
                Kind::Table,
                "other.v",
                READ,
                &Grantee::parse(Backend::Mysql, "u"),
                Some("dept")
            ),
            "GRANT SELECT ON other.v TO 'u'@'%';"
        );
    }

    #[test]
    fn urls() {
        assert_eq!(
            url_database("mysql://u:p@h:3306/dept?ssl-mode=x").as_deref(),
            Some("dept")
        );
        assert_eq!(url_database("mariadb://u@h/"), None);
        assert_eq!(
            url_user("postgres://qz%40x:pw@h/db").as_deref(),
            Some("qz@x")
        );
        assert_eq!(url_user("postgres://h/db"), None);
        assert_eq!(
            sqlite_path("sqlite:///var/lib/qianzhi/dept.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/qianzhi/dept.db"))
        );
        assert_eq!(
            sqlite_path("sqlite:dept.db"),
            Some(PathBuf::from("dept.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
    }

    #[test]
    fn mysql_grant_lines() {
        let lines: Vec<String> = [
            "GRANT USAGE ON *.* TO `qz`@`%`",
            "GRANT SELECT, INSERT, UPDATE (a, b) ON `dept`.`qz_error` TO `qz`@`%`",
            "GRANT DELETE ON `de\\_pt%`.* TO `qz`@`%`",
            "GRANT `r` TO `qz`@`%`",
            "GRANT ALL PRIVILEGES ON `all``db`.* TO `r`",
            "GRANT EXECUTE ON PROCEDURE `dept`.`p` TO `qz`@`%`",
        ]
        .map(String::from)
        .to_vec();
        let g = MyGrants::parse(&lines);
        assert!(g.allows("dept", "qz_error", "SELECT"));
        assert!(g.allows("dept", "QZ_ERROR", "INSERT"));
        // Column privilege only: not a table-level UPDATE.
        assert!(!g.allows("dept", "qz_error", "UPDATE"));
        assert!(!g.allows("dept", "qz_cursor", "SELECT"));
        // Database pattern with an escaped underscore.
        assert!(g.allows("de_pt2", "qz_cursor", "DELETE"));
        assert!(!g.allows("dexpt", "qz_cursor", "DELETE"));
        assert!(g.allows("all`db", "x", "UPDATE"));
        assert!(!g.allows("dept", "p", "EXECUTE"));
    }

    #[test]
    fn like_patterns() {
        assert!(like("te%", "test"));
        assert!(like("t_st", "test"));
        assert!(!like("t\\_st", "test"));
        assert!(like("t\\_st", "t_st"));
        assert!(like("%", ""));
        assert!(!like("a", "ab"));
    }

    #[test]
    fn sqlite_file_checks() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("dept.db");
        let missing = sqlite_file_problems(&f);
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(missing[0].contains("dept.db"), "{missing:?}");
        std::fs::write(&f, b"").unwrap();
        assert!(sqlite_file_problems(&f).is_empty());
    }
}
