//! The SQL an ODBC data source speaks: which sea-query builder renders its statements, how
//! its placeholders are written, where its DDL lives, and which dialect a driver's DBMS name
//! means. The one place `database.dialect` is turned into SQL (see `Backend::build`).

use crate::config::Dialect;
use sea_query::{MysqlQueryBuilder, PostgresQueryBuilder};
use sea_query_sqlx::{SqlxBinder, SqlxValues};

use super::oracle::OracleQueryBuilder;

/// The three SQL families behind the six dialects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// PostgreSQL, KingbaseES, openGauss / GaussDB.
    Postgres,
    /// MySQL, MariaDB.
    Mysql,
    /// Oracle, DM (达梦).
    Oracle,
}

impl Family {
    pub fn of(d: Dialect) -> Family {
        match d {
            Dialect::Postgres | Dialect::Kingbase | Dialect::Opengauss => Family::Postgres,
            Dialect::Mysql => Family::Mysql,
            Dialect::Dm | Dialect::Oracle => Family::Oracle,
        }
    }
}

/// The directory under `sql/` with the dialect's control-table DDL.
pub fn ddl_dir(d: Dialect) -> &'static str {
    match d {
        Dialect::Postgres | Dialect::Kingbase | Dialect::Opengauss => "postgres",
        Dialect::Mysql => "mysql",
        Dialect::Dm => "dm",
        Dialect::Oracle => "oracle",
    }
}

/// A statement in the dialect, with ODBC's `?` placeholders, and its values in their order.
pub fn build<S: SqlxBinder>(d: Dialect, stmt: &S) -> (String, SqlxValues) {
    match Family::of(d) {
        Family::Postgres => {
            let (sql, values) = stmt.build_sqlx(PostgresQueryBuilder);
            (question_marks(&sql), values)
        }
        Family::Mysql => stmt.build_sqlx(MysqlQueryBuilder),
        Family::Oracle => stmt.build_sqlx(OracleQueryBuilder),
    }
}

/// `CAST(x AS ...)` to text.
pub fn text_cast_type(d: Dialect) -> &'static str {
    match Family::of(d) {
        Family::Postgres => "TEXT",
        Family::Mysql => "CHAR",
        Family::Oracle => "VARCHAR2(4000)",
    }
}

/// The database's clock in milliseconds since the epoch (the lease clock, `db::lease`).
/// DM and Oracle: the UTC timestamp minus the epoch is an INTERVAL DAY TO SECOND.
pub fn epoch_ms_now(d: Dialect) -> &'static str {
    match Family::of(d) {
        Family::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        Family::Mysql => "CAST(UNIX_TIMESTAMP(CURRENT_TIMESTAMP(3)) * 1000 AS SIGNED)",
        Family::Oracle => {
            "(EXTRACT(DAY FROM (SYS_EXTRACT_UTC(SYSTIMESTAMP) - TIMESTAMP '1970-01-01 00:00:00')) * 86400000 \
             + EXTRACT(HOUR FROM (SYS_EXTRACT_UTC(SYSTIMESTAMP) - TIMESTAMP '1970-01-01 00:00:00')) * 3600000 \
             + EXTRACT(MINUTE FROM (SYS_EXTRACT_UTC(SYSTIMESTAMP) - TIMESTAMP '1970-01-01 00:00:00')) * 60000 \
             + ROUND(EXTRACT(SECOND FROM (SYS_EXTRACT_UTC(SYSTIMESTAMP) - TIMESTAMP '1970-01-01 00:00:00')) * 1000))"
        }
    }
}

/// PostgreSQL's `$1, $2, ...` as ODBC's `?`. sea-query numbers the placeholders in the order
/// it writes them, so the values stay in order; `$` inside a string literal (`'...'`,
/// `E'...'` with its backslash escapes) or a quoted identifier is left alone.
pub fn question_marks(sql: &str) -> String {
    #[derive(PartialEq)]
    enum In {
        Code,
        Str { backslash: bool },
        Ident,
    }
    let mut out = String::with_capacity(sql.len());
    let mut state = In::Code;
    let mut chars = sql.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match state {
            In::Code => match c {
                '\'' => {
                    let e = sql[..i].ends_with(['E', 'e']);
                    state = In::Str { backslash: e };
                    out.push(c);
                }
                '"' => {
                    state = In::Ident;
                    out.push(c);
                }
                '$' if chars.peek().is_some_and(|(_, d)| d.is_ascii_digit()) => {
                    while chars.peek().is_some_and(|(_, d)| d.is_ascii_digit()) {
                        chars.next();
                    }
                    out.push('?');
                }
                _ => out.push(c),
            },
            In::Str { backslash } => {
                out.push(c);
                if backslash && c == '\\' {
                    if let Some((_, n)) = chars.next() {
                        out.push(n);
                    }
                } else if c == '\'' {
                    if chars.peek().is_some_and(|(_, n)| *n == '\'') {
                        chars.next();
                        out.push('\'');
                    } else {
                        state = In::Code;
                    }
                }
            }
            In::Ident => {
                out.push(c);
                if c == '"' {
                    state = In::Code;
                }
            }
        }
    }
    out
}

/// The dialect a driver reports with `SQLGetInfo(SQL_DBMS_NAME)`, for an `odbc:` URL without
/// `database.dialect`. Unknown names give `None`: then the dialect must be configured.
pub fn from_dbms_name(name: &str) -> Option<Dialect> {
    let n = name.to_ascii_lowercase();
    let d = if n.starts_with("dm") || n.contains("dameng") || name.contains("达梦") {
        Dialect::Dm
    } else if n.contains("kingbase") {
        Dialect::Kingbase
    } else if n.contains("opengauss") || n.contains("gaussdb") {
        Dialect::Opengauss
    } else if n.contains("oracle") {
        Dialect::Oracle
    } else if n.contains("postgres") {
        Dialect::Postgres
    } else if n.contains("mysql") || n.contains("mariadb") {
        Dialect::Mysql
    } else {
        return None;
    };
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_query::{Expr, ExprTrait, LockType, Order, Query};

    #[test]
    fn placeholders_become_question_marks_outside_literals() {
        for (pg, want) in [
            ("SELECT $1", "SELECT ?"),
            ("a = $1 AND b = $2 LIMIT $10", "a = ? AND b = ? LIMIT ?"),
            ("x = '$1' AND y = $1", "x = '$1' AND y = ?"),
            ("x = 'it''s $2' AND y = $1", "x = 'it''s $2' AND y = ?"),
            ("x = E'a\\'$3' AND y = $1", "x = E'a\\'$3' AND y = ?"),
            ("\"co$1\" = $1", "\"co$1\" = ?"),
            ("price = $ 5", "price = $ 5"),
        ] {
            assert_eq!(question_marks(pg), want, "{pg}");
        }
    }

    /// One statement of each shape the control tables use, in every dialect.
    #[test]
    fn golden_sql_per_dialect() {
        let select = Query::select()
            .columns(["job", "last_seq"])
            .from("qz_cursor")
            .and_where(Expr::col("job").eq("j1"))
            .order_by("job", Order::Asc)
            .limit(5)
            .lock(LockType::Update)
            .to_owned();
        let update = Query::update()
            .table("qz_cursor")
            .value("last_seq", Expr::col("last_seq").add(1))
            .and_where(Expr::col("job").eq("j1"))
            .to_owned();
        let want_select = [
            (
                Dialect::Postgres,
                r#"SELECT "job", "last_seq" FROM "qz_cursor" WHERE "job" = ? ORDER BY "job" ASC LIMIT ? FOR UPDATE"#,
            ),
            (
                Dialect::Kingbase,
                r#"SELECT "job", "last_seq" FROM "qz_cursor" WHERE "job" = ? ORDER BY "job" ASC LIMIT ? FOR UPDATE"#,
            ),
            (
                Dialect::Opengauss,
                r#"SELECT "job", "last_seq" FROM "qz_cursor" WHERE "job" = ? ORDER BY "job" ASC LIMIT ? FOR UPDATE"#,
            ),
            (
                Dialect::Mysql,
                "SELECT `job`, `last_seq` FROM `qz_cursor` WHERE `job` = ? ORDER BY `job` ASC LIMIT ? FOR UPDATE",
            ),
            (
                Dialect::Dm,
                r#"SELECT "JOB", "LAST_SEQ" FROM "QZ_CURSOR" WHERE "JOB" = ? ORDER BY "JOB" ASC FETCH NEXT ? ROWS ONLY FOR UPDATE"#,
            ),
            (
                Dialect::Oracle,
                r#"SELECT "JOB", "LAST_SEQ" FROM "QZ_CURSOR" WHERE "JOB" = ? ORDER BY "JOB" ASC FETCH NEXT ? ROWS ONLY FOR UPDATE"#,
            ),
        ];
        for (d, want) in want_select {
            let (sql, values) = build(d, &select);
            assert_eq!(sql, want, "{d:?}");
            assert_eq!(values.0.0.len(), 2, "{d:?}");
        }
        for d in Dialect::ALL {
            let (sql, values) = build(d, &update);
            let q = match Family::of(d) {
                Family::Mysql => "`",
                _ => "\"",
            };
            let name = |n: &str| match Family::of(d) {
                Family::Oracle => n.to_ascii_uppercase(),
                _ => n.to_string(),
            };
            let want = format!(
                "UPDATE {q}{t}{q} SET {q}{c}{q} = {q}{c}{q} + ? WHERE {q}{j}{q} = ?",
                t = name("qz_cursor"),
                c = name("last_seq"),
                j = name("job"),
            );
            assert_eq!(sql, want, "{d:?}");
            assert_eq!(values.0.0.len(), 2);
            assert!(!sql.contains('$'), "{d:?}: {sql}");
        }
    }

    #[test]
    fn dialect_from_the_driver_dbms_name() {
        for (name, want) in [
            ("DM", Some(Dialect::Dm)),
            ("DM8", Some(Dialect::Dm)),
            ("KingbaseES", Some(Dialect::Kingbase)),
            ("openGauss", Some(Dialect::Opengauss)),
            ("GaussDB", Some(Dialect::Opengauss)),
            ("Oracle", Some(Dialect::Oracle)),
            ("PostgreSQL", Some(Dialect::Postgres)),
            ("MariaDB", Some(Dialect::Mysql)),
            ("MySQL", Some(Dialect::Mysql)),
            ("Informix", None),
        ] {
            assert_eq!(from_dbms_name(name), want, "{name}");
        }
    }
}
