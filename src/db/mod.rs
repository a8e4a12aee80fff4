//! The only place SQL runs: connection pools per backend, migrations, control tables, sources.

pub mod control;
pub mod migrate;
pub mod query;
pub mod source;

use anyhow::{Context, Result};
use sqlx::any::AnyPoolOptions;
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    Mysql,
}

impl Backend {
    pub fn from_url(url: &str) -> Result<Backend> {
        Ok(if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            Backend::Mysql
        } else {
            anyhow::bail!("database.url must start with sqlite:, postgres:// or mysql://")
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::Mysql => "mysql",
        }
    }
}

/// Native pool for reading sources: only per-backend drivers decode DATE, TIMESTAMP, NUMERIC.
#[derive(Clone, Debug)]
pub enum SourcePool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
    Mysql(sqlx::MySqlPool),
}

/// Control tables use only text and integers, so one `Any` pool serves all three backends.
#[derive(Clone, Debug)]
pub struct Db {
    pub backend: Backend,
    pub any: sqlx::AnyPool,
    pub source: SourcePool,
}

/// The password part of a URL, hidden for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl Db {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db> {
        let (lo, hi) = crate::config::ranges::MAX_CONNECTIONS;
        anyhow::ensure!(
            (lo..=hi).contains(&max_connections),
            "database.max_connections = {max_connections} is out of range: use {lo} to {hi}"
        );
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let url = url.replacen("mariadb://", "mysql://", 1);
        let shown = redact_url(&url);
        let acquire = Duration::from_secs(10);
        let source = match backend {
            Backend::Sqlite => {
                let opts = sqlx::sqlite::SqliteConnectOptions::from_str(&url)?
                    .create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(30));
                SourcePool::Sqlite(
                    sqlx::pool::PoolOptions::new()
                        .max_connections(max_connections)
                        .acquire_timeout(acquire)
                        .connect_with(opts)
                        .await
                        .with_context(|| format!("cannot open {shown}"))?,
                )
            }
            Backend::Postgres => SourcePool::Postgres(
                sqlx::pool::PoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(acquire)
                    .connect(&url)
                    .await
                    .with_context(|| format!("cannot connect to {shown}"))?,
            ),
            Backend::Mysql => SourcePool::Mysql(
                sqlx::pool::PoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(acquire)
                    .connect(&url)
                    .await
                    .with_context(|| format!("cannot connect to {shown}"))?,
            ),
        };
        // SQLite: the WAL journal was set by the source pool; the Any pool only needs the
        // busy timeout so writers queue instead of failing.
        let any_url = if backend == Backend::Sqlite && !url.contains('?') {
            format!("{url}?mode=rwc")
        } else {
            url.clone()
        };
        let any = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        sqlx::Executor::execute(&mut *conn, "PRAGMA busy_timeout = 30000").await?;
                    }
                    Ok(())
                })
            })
            .connect(&any_url)
            .await
            .with_context(|| format!("cannot connect to {shown}"))?;
        Ok(Db {
            backend,
            any,
            source,
        })
    }

    /// A transaction that writes control tables. On PostgreSQL its commit is made durable
    /// whatever the server, database or role default says: with `synchronous_commit = off`
    /// a crash right after the outbox commit could lose it, and the same changes would be
    /// numbered again under a reused Cd_Batch. `SET LOCAL` (not a session setting) also
    /// holds behind a transaction-pooling PgBouncer.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        let mut tx = self.any.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SET LOCAL synchronous_commit = on")
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }

    /// Control-table SQL is written with `?`; PostgreSQL wants `$1, $2, ...`.
    pub fn sql(&self, q: &str) -> sqlx::AssertSqlSafe<String> {
        sqlx::AssertSqlSafe(self.placeholders(q))
    }

    fn placeholders(&self, q: &str) -> String {
        if self.backend != Backend::Postgres {
            return q.to_string();
        }
        let mut out = String::with_capacity(q.len() + 16);
        let mut n = 0;
        for c in q.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        out
    }

    pub async fn close(&self) {
        self.any.close().await;
        match &self.source {
            SourcePool::Sqlite(p) => p.close().await,
            SourcePool::Postgres(p) => p.close().await,
            SourcePool::Mysql(p) => p.close().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        for (u, want) in [
            (
                "postgres://qz:s3cret@db:5432/x",
                "postgres://qz:***@db:5432/x",
            ),
            ("mysql://root@127.0.0.1/test", "mysql://root@127.0.0.1/test"),
            ("sqlite://a.db", "sqlite://a.db"),
        ] {
            assert_eq!(redact_url(u), want);
        }
    }
}
