//! `qianzhi migrate`: applies the readable DDL in `sql/<backend>/` once, in order.

use anyhow::{Context, Result};
use sea_query::{Expr, ExprTrait, Query};

use super::{Backend, Db};

const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        include_str!("../../sql/sqlite/001_control.sql"),
        include_str!("../../sql/postgres/001_control.sql"),
        include_str!("../../sql/mysql/001_control.sql"),
    ),
    (
        2,
        include_str!("../../sql/sqlite/002_query.sql"),
        include_str!("../../sql/postgres/002_query.sql"),
        include_str!("../../sql/mysql/002_query.sql"),
    ),
    (
        3,
        include_str!("../../sql/sqlite/003_gansu.sql"),
        include_str!("../../sql/postgres/003_gansu.sql"),
        include_str!("../../sql/mysql/003_gansu.sql"),
    ),
    (
        4,
        include_str!("../../sql/sqlite/004_outbox_lz4.sql"),
        include_str!("../../sql/postgres/004_outbox_lz4.sql"),
        include_str!("../../sql/mysql/004_outbox_lz4.sql"),
    ),
    (
        5,
        include_str!("../../sql/sqlite/005_query_pages.sql"),
        include_str!("../../sql/postgres/005_query_pages.sql"),
        include_str!("../../sql/mysql/005_query_pages.sql"),
    ),
    (
        6,
        include_str!("../../sql/sqlite/006_exchange_order.sql"),
        include_str!("../../sql/postgres/006_exchange_order.sql"),
        include_str!("../../sql/mysql/006_exchange_order.sql"),
    ),
    (
        7,
        include_str!("../../sql/sqlite/007_lease.sql"),
        include_str!("../../sql/postgres/007_lease.sql"),
        include_str!("../../sql/mysql/007_lease.sql"),
    ),
    (
        9,
        include_str!("../../sql/sqlite/009_run_state.sql"),
        include_str!("../../sql/postgres/009_run_state.sql"),
        include_str!("../../sql/mysql/009_run_state.sql"),
    ),
    (
        10,
        include_str!("../../sql/sqlite/010_capture.sql"),
        include_str!("../../sql/postgres/010_capture.sql"),
        include_str!("../../sql/mysql/010_capture.sql"),
    ),
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
pub async fn migrate(db: &Db) -> Result<Vec<i64>> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS qz_schema_version (version BIGINT PRIMARY KEY, applied_at VARCHAR(19) NOT NULL)",
    )
    .execute(&db.any)
    .await
    .context("cannot create qz_schema_version")?;
    let mut applied = Vec::new();
    for (version, sqlite, pg, my) in MIGRATIONS {
        let q = Query::select()
            .column("version")
            .from("qz_schema_version")
            .and_where(Expr::col("version").eq(*version))
            .to_owned();
        let done: Option<i64> = db.stmt_scalar(&q).fetch_optional(&db.any).await?;
        if done.is_some() {
            continue;
        }
        let text = match db.backend {
            Backend::Sqlite => sqlite,
            Backend::Postgres => pg,
            Backend::Mysql => my,
        };
        // MySQL commits DDL implicitly, so statements are applied one by one; every one is
        // IF NOT EXISTS, which makes a re-run after a failure safe.
        let optional = text.lines().any(|l| l.trim() == OPTIONAL_MARK);
        for stmt in statements(text) {
            let done = sqlx::query(sqlx::AssertSqlSafe(stmt.clone()))
                .execute(&db.any)
                .await;
            match done {
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
                    return Err(anyhow::Error::new(e)
                        .context(format!("migration {version} failed at:\n{stmt}")));
                }
            }
        }
        let q = Query::insert()
            .into_table("qz_schema_version")
            .columns(["version", "applied_at"])
            .values_panic([Expr::val(*version), Expr::val(crate::timefmt::now_text())])
            .to_owned();
        db.stmt(&q).execute(&db.any).await?;
        applied.push(*version);
    }
    Ok(applied)
}

pub fn ddl(backend: Backend) -> String {
    MIGRATIONS
        .iter()
        .map(|(_, s, p, m)| match backend {
            Backend::Sqlite => *s,
            Backend::Postgres => *p,
            Backend::Mysql => *m,
        })
        .collect::<Vec<_>>()
        .join("\n")
}
