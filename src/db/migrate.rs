//! `qianzhi migrate`: applies the readable DDL in `sql/<backend>/` once, in order.

use anyhow::{Context, Result};
use sea_query::{Expr, ExprTrait, Query};

use super::dialect::Family;
use super::exec::{Cell, Executor};
use super::{Backend, Db};
use crate::config::Dialect;

/// One migration: its version and its DDL per directory of `sql/`.
struct Migration {
    version: i64,
    sqlite: &'static str,
    postgres: &'static str,
    mysql: &'static str,
    /// DM (达梦) and Oracle, for `odbc:` URLs with those dialects (`db::dialect::ddl_dir`).
    dm: &'static str,
    oracle: &'static str,
}

impl Migration {
    fn text(&self, backend: Backend) -> &'static str {
        match backend {
            Backend::Sqlite => self.sqlite,
            Backend::Postgres => self.postgres,
            Backend::Mysql => self.mysql,
            Backend::Odbc(d) => match (Family::of(d), d) {
                (Family::Postgres, _) => self.postgres,
                (Family::Mysql, _) => self.mysql,
                (Family::Oracle, Dialect::Dm) => self.dm,
                (Family::Oracle, _) => self.oracle,
            },
        }
    }
}

/// Every migration's files, by name: `sql/<dir>/<name>.sql`.
macro_rules! migration {
    ($version:literal, $name:literal) => {
        Migration {
            version: $version,
            sqlite: include_str!(concat!("../../sql/sqlite/", $name, ".sql")),
            postgres: include_str!(concat!("../../sql/postgres/", $name, ".sql")),
            mysql: include_str!(concat!("../../sql/mysql/", $name, ".sql")),
            dm: include_str!(concat!("../../sql/dm/", $name, ".sql")),
            oracle: include_str!(concat!("../../sql/oracle/", $name, ".sql")),
        }
    };
}

const MIGRATIONS: &[Migration] = &[
    migration!(1, "001_control"),
    migration!(2, "002_query"),
    migration!(3, "003_gansu"),
    migration!(4, "004_outbox_lz4"),
    migration!(5, "005_query_pages"),
    migration!(6, "006_exchange_order"),
    migration!(7, "007_lease"),
    migration!(9, "009_run_state"),
    migration!(10, "010_capture"),
];

/// A migration file with this line is an improvement the server may not support: its first
/// failing statement ends it with a warning instead of an error.
const OPTIONAL_MARK: &str = "-- qianzhi: optional";

/// Splits a DDL file into statements; the files hold no `;` inside strings or bodies.
fn statements(sql: &str) -> Vec<String> {
    let code: Vec<&str> = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect();
    code.join("\n")
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Returns the versions applied by this call.
/// The table of applied versions. DM and Oracle have no IF NOT EXISTS (before Oracle 23ai):
/// there the runner creates it only when the dictionary does not list it.
pub fn schema_version_ddl(backend: Backend) -> &'static str {
    match backend {
        Backend::Odbc(d) if Family::of(d) == Family::Oracle => {
            "CREATE TABLE qz_schema_version (version NUMBER(19) PRIMARY KEY, applied_at VARCHAR2(19 CHAR) NOT NULL)"
        }
        _ => {
            "CREATE TABLE IF NOT EXISTS qz_schema_version (version BIGINT PRIMARY KEY, applied_at VARCHAR(19) NOT NULL)"
        }
    }
}

pub async fn migrate(db: &Db) -> Result<Vec<i64>> {
    migrate_with(&Executor::Any(db.any.clone()), db.backend).await
}

/// Creates `qz_schema_version` where it is missing. DM and Oracle have no IF NOT EXISTS
/// (before 23ai): their dictionary is asked first.
async fn create_version_table(exec: &Executor, backend: Backend) -> Result<()> {
    if let Backend::Odbc(d) = backend
        && Family::of(d) == Family::Oracle
    {
        let q = Query::select()
            .expr(Expr::cust("COUNT(*)"))
            .from("user_tables")
            .and_where(Expr::col("table_name").eq("QZ_SCHEMA_VERSION"))
            .to_owned();
        let (sql, values) = backend.build(&q);
        let rows = exec.fetch_all(&sql, values.0.0).await?;
        if rows.first().and_then(|r| r.first()).and_then(Cell::int) != Some(0) {
            return Ok(());
        }
    }
    exec.execute(schema_version_ddl(backend), vec![])
        .await
        .context("cannot create qz_schema_version")?;
    Ok(())
}

/// [`migrate`] on any control-table connection (`sqlx` or ODBC); returns the versions applied.
pub async fn migrate_with(exec: &Executor, backend: Backend) -> Result<Vec<i64>> {
    create_version_table(exec, backend).await?;
    let mut applied = Vec::new();
    for m in MIGRATIONS {
        let version = m.version;
        let q = Query::select()
            .column("version")
            .from("qz_schema_version")
            .and_where(Expr::col("version").eq(version))
            .to_owned();
        let (sql, values) = backend.build(&q);
        if !exec.fetch_all(&sql, values.0.0).await?.is_empty() {
            continue;
        }
        let text = m.text(backend);
        // MySQL, DM and Oracle commit DDL implicitly, so statements are applied one by one;
        // on the others every one is IF NOT EXISTS, which makes a re-run after a failure safe.
        let optional = text.lines().any(|l| l.trim() == OPTIONAL_MARK);
        for stmt in statements(text) {
            match exec.execute(&stmt, vec![]).await {
                Ok(_) => {}
                Err(e) if optional => {
                    tracing::warn!(
                        version,
                        statement = %stmt,
                        error = %e,
                        "optional migration step not supported by this server; skipped"
                    );
                    break;
                }
                Err(e) => {
                    return Err(e.context(format!("migration {version} failed at:\n{stmt}")));
                }
            }
        }
        let q = Query::insert()
            .into_table("qz_schema_version")
            .columns(["version", "applied_at"])
            .values_panic([Expr::val(version), Expr::val(crate::timefmt::now_text())])
            .to_owned();
        let (sql, values) = backend.build(&q);
        exec.execute(&sql, values.0.0).await?;
        applied.push(version);
    }
    Ok(applied)
}

pub fn ddl(backend: Backend) -> String {
    MIGRATIONS
        .iter()
        .map(|m| m.text(backend))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Oracle's reserved words (V$RESERVED_WORDS with RESERVED = 'Y'), which an unquoted name
    /// in the DDL may not be.
    const ORACLE_RESERVED: &[&str] = &[
        "ACCESS",
        "ADD",
        "ALL",
        "ALTER",
        "AND",
        "ANY",
        "AS",
        "ASC",
        "AUDIT",
        "BETWEEN",
        "BY",
        "CHAR",
        "CHECK",
        "CLUSTER",
        "COLUMN",
        "COMMENT",
        "COMPRESS",
        "CONNECT",
        "CREATE",
        "CURRENT",
        "DATE",
        "DECIMAL",
        "DEFAULT",
        "DELETE",
        "DESC",
        "DISTINCT",
        "DROP",
        "ELSE",
        "EXCLUSIVE",
        "EXISTS",
        "FILE",
        "FLOAT",
        "FOR",
        "FROM",
        "GRANT",
        "GROUP",
        "HAVING",
        "IDENTIFIED",
        "IMMEDIATE",
        "IN",
        "INCREMENT",
        "INDEX",
        "INITIAL",
        "INSERT",
        "INTEGER",
        "INTERSECT",
        "INTO",
        "IS",
        "LEVEL",
        "LIKE",
        "LOCK",
        "LONG",
        "MAXEXTENTS",
        "MINUS",
        "MLSLABEL",
        "MODE",
        "MODIFY",
        "NOAUDIT",
        "NOCOMPRESS",
        "NOT",
        "NOWAIT",
        "NULL",
        "NUMBER",
        "OF",
        "OFFLINE",
        "ON",
        "ONLINE",
        "OPTION",
        "OR",
        "ORDER",
        "PCTFREE",
        "PRIOR",
        "PUBLIC",
        "RAW",
        "RENAME",
        "RESOURCE",
        "REVOKE",
        "ROW",
        "ROWID",
        "ROWNUM",
        "ROWS",
        "SELECT",
        "SESSION",
        "SET",
        "SHARE",
        "SIZE",
        "SMALLINT",
        "START",
        "SUCCESSFUL",
        "SYNONYM",
        "SYSDATE",
        "TABLE",
        "THEN",
        "TO",
        "TRIGGER",
        "UID",
        "UNION",
        "UNIQUE",
        "UPDATE",
        "USER",
        "VALIDATE",
        "VALUES",
        "VARCHAR",
        "VARCHAR2",
        "VIEW",
        "WHENEVER",
        "WHERE",
        "WITH",
    ];

    /// Table name -> column names (in order) of every CREATE TABLE and ADD of a directory.
    fn columns(backend: Backend) -> BTreeMap<String, Vec<String>> {
        let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for stmt in statements(&ddl(backend)) {
            let words: Vec<&str> = stmt.split_whitespace().collect();
            match words.as_slice() {
                ["CREATE", "TABLE", rest @ ..] => {
                    let name = rest
                        .iter()
                        .find(|w| !matches!(**w, "IF" | "NOT" | "EXISTS"))
                        .unwrap();
                    let cols = tables.entry(name.to_string()).or_default();
                    let body = &stmt[stmt.find('(').unwrap() + 1..stmt.rfind(')').unwrap()];
                    for line in body.lines() {
                        let line = line.split("--").next().unwrap().trim();
                        let first = line.split_whitespace().next().unwrap_or("");
                        if !first.is_empty() && first != "PRIMARY" {
                            cols.push(first.to_lowercase());
                        }
                    }
                }
                ["ALTER", "TABLE", t, "ADD", rest @ ..] => {
                    let rest: Vec<&str> = rest
                        .iter()
                        .copied()
                        .filter(|w| !matches!(*w, "COLUMN" | "IF" | "NOT" | "EXISTS"))
                        .collect();
                    let col = rest[0].trim_start_matches('(').to_lowercase();
                    tables.get_mut(*t).unwrap().push(col);
                }
                _ => {}
            }
        }
        tables
    }

    #[test]
    fn dm_and_oracle_ddl_mirror_every_postgres_migration() {
        let pg = columns(Backend::Postgres);
        assert!(pg.len() >= 15, "{pg:?}");
        for d in [Dialect::Dm, Dialect::Oracle] {
            let got = columns(Backend::Odbc(d));
            assert_eq!(
                got, pg,
                "{d:?}: tables and columns differ from sql/postgres"
            );
        }
        // Every migration has its own file in both directories (include_str! checks that they
        // exist; this checks that none was left a copy of the PostgreSQL text).
        for m in MIGRATIONS {
            for (d, text) in [("dm", m.dm), ("oracle", m.oracle)] {
                assert_ne!(text, m.postgres, "{d} migration {}", m.version);
            }
        }
    }

    #[test]
    fn dm_and_oracle_ddl_use_their_own_types() {
        for (d, number) in [(Dialect::Dm, "BIGINT"), (Dialect::Oracle, "NUMBER(19)")] {
            let backend = Backend::Odbc(d);
            let text = ddl(backend);
            let stmts = statements(&text);
            assert!(stmts.len() > 30, "{d:?}: {} statements", stmts.len());
            for stmt in &stmts {
                let code: String = stmt
                    .lines()
                    .map(|l| l.split("--").next().unwrap())
                    .collect::<Vec<_>>()
                    .join("\n");
                for banned in [
                    "IF NOT EXISTS",
                    " TEXT",
                    "BIGSERIAL",
                    "VARCHAR(",
                    "AUTO_INCREMENT",
                    "NOT NULL DEFAULT",
                    "ALTER COLUMN",
                    "STORAGE",
                    "COMPRESSION",
                ] {
                    assert!(!code.contains(banned), "{d:?}: {banned} in\n{stmt}");
                }
                if d == Dialect::Oracle {
                    assert!(!code.contains("BIGINT"), "{d:?}: BIGINT in\n{stmt}");
                }
                for word in code.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
                    let upper = word.to_ascii_uppercase();
                    if word.starts_with("qz_") {
                        assert!(word.len() <= 30, "{d:?}: name {word} longer than 30");
                    }
                    // Names are lower case in the files, keywords upper case.
                    if word.chars().any(|c| c.is_ascii_lowercase()) {
                        assert!(
                            !ORACLE_RESERVED.contains(&upper.as_str()),
                            "{d:?}: reserved word {word} used as a name in\n{stmt}"
                        );
                    }
                }
            }
            assert!(text.contains(number), "{d:?}");
            assert!(text.contains("CLOB"), "{d:?}");
            assert!(text.contains("VARCHAR2(50 CHAR)"), "{d:?}");
            let identity = match d {
                Dialect::Dm => "BIGINT IDENTITY(1, 1) PRIMARY KEY",
                _ => "NUMBER(19) GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
            };
            assert!(text.contains(identity), "{d:?}");
            assert!(
                schema_version_ddl(backend).starts_with("CREATE TABLE qz_schema_version ("),
                "{d:?}"
            );
        }
    }

    #[test]
    fn odbc_dialects_pick_their_family_ddl() {
        for (d, same_as) in [
            (Dialect::Postgres, Backend::Postgres),
            (Dialect::Kingbase, Backend::Postgres),
            (Dialect::Opengauss, Backend::Postgres),
            (Dialect::Mysql, Backend::Mysql),
        ] {
            assert_eq!(ddl(Backend::Odbc(d)), ddl(same_as), "{d:?}");
        }
        assert_ne!(
            ddl(Backend::Odbc(Dialect::Dm)),
            ddl(Backend::Odbc(Dialect::Oracle))
        );
    }
}
