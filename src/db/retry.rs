//! Transient database errors (deadlock, lock wait timeout, serialization failure, busy SQLite
//! file) and the bounded retry that runs a control-table write again after one, so that a
//! lock conflict between concurrent jobs never ends a run.

use anyhow::Result;
use std::future::Future;
use std::time::Duration;

/// Attempts of one control-table write, the first included. Each waits longer than the one
/// before (see [`backoff`]); together they span about a second plus the servers' own waits.
pub const ATTEMPTS: u32 = 8;

/// A database error that goes away when the transaction runs again: the server rolled the
/// transaction (or its statement) back because of a concurrent one, not because of its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transient {
    /// MySQL/MariaDB 1213, PostgreSQL 40P01: chosen as the victim of a deadlock.
    Deadlock,
    /// MySQL/MariaDB 1205, PostgreSQL 55P03: a lock was not granted within the server's
    /// timeout (`innodb_lock_wait_timeout`, `lock_timeout`).
    LockTimeout,
    /// PostgreSQL 40001, MariaDB 1020 (`innodb_snapshot_isolation`): rows read by the
    /// transaction were changed by a concurrent commit.
    Serialization,
    /// SQLite BUSY and its extended codes (BUSY_RECOVERY, BUSY_SNAPSHOT, BUSY_TIMEOUT):
    /// another connection holds the write lock, or wrote after this one's snapshot.
    Busy,
    /// SQLite LOCKED (LOCKED_SHAREDCACHE, LOCKED_VTAB): a lock inside the same process.
    Locked,
}

impl std::fmt::Display for Transient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transient::Deadlock => "死锁 deadlock",
            Transient::LockTimeout => "等锁超时 lock wait timeout",
            Transient::Serialization => "串行化冲突 serialization failure",
            Transient::Busy => "数据库忙 database busy",
            Transient::Locked => "数据库表被锁 database table locked",
        })
    }
}

/// A database error's code, as its backend reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbCode {
    /// MySQL/MariaDB error number: the SQLSTATE is too coarse (1205 is `HY000`).
    Mysql(u16),
    /// PostgreSQL SQLSTATE.
    Postgres(String),
    /// SQLite extended result code (the primary code is its low byte).
    Sqlite(i32),
    /// What an ODBC driver reports: the SQLSTATE (the server's own through psqlODBC) and the
    /// native error number (MySQL's through MariaDB Connector/ODBC, DM's, Oracle's).
    Odbc { state: String, native: i32 },
}

/// Whether an error with this code is worth running the transaction again for.
pub fn classify(code: &DbCode) -> Option<Transient> {
    match code {
        DbCode::Mysql(1213) => Some(Transient::Deadlock),
        DbCode::Mysql(1205) => Some(Transient::LockTimeout),
        DbCode::Mysql(1020) => Some(Transient::Serialization),
        DbCode::Mysql(_) => None,
        DbCode::Postgres(s) => match s.as_str() {
            "40P01" => Some(Transient::Deadlock),
            "55P03" => Some(Transient::LockTimeout),
            "40001" => Some(Transient::Serialization),
            _ => None,
        },
        DbCode::Sqlite(c) => match c & 0xff {
            5 => Some(Transient::Busy),
            6 => Some(Transient::Locked),
            _ => None,
        },
        // MySQL's numbers first: MariaDB's driver says 40001 for a deadlock and a snapshot
        // conflict alike. DM (-6403) and Oracle (ORA-00060) deadlocks come as 40001 too.
        DbCode::Odbc { state, native } => match (state.as_str(), native) {
            (_, 1213) => Some(Transient::Deadlock),
            (_, 1205) => Some(Transient::LockTimeout),
            (_, 1020) => Some(Transient::Serialization),
            ("40P01", _) => Some(Transient::Deadlock),
            ("55P03" | "HYT00", _) => Some(Transient::LockTimeout),
            ("40001", _) => Some(Transient::Serialization),
            _ => None,
        },
    }
}

/// The code of a driver error, when the database itself answered.
fn code_of_sqlx(e: &sqlx::Error) -> Option<DbCode> {
    let sqlx::Error::Database(d) = e else {
        return None;
    };
    if let Some(m) = d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return Some(DbCode::Mysql(m.number()));
    }
    if let Some(p) = d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        return Some(DbCode::Postgres(p.code().to_string()));
    }
    if d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        return d.code()?.parse().ok().map(DbCode::Sqlite);
    }
    #[cfg(feature = "odbc")]
    if let Some(o) = d.try_downcast_ref::<super::odbc_any::OdbcDatabaseError>() {
        return Some(DbCode::Odbc {
            state: o.state.clone(),
            native: o.native,
        });
    }
    None
}

/// The database error code anywhere in the error's chain (an injected one included).
pub fn db_code(e: &anyhow::Error) -> Option<DbCode> {
    e.chain().find_map(|c| {
        if let Some(s) = c.downcast_ref::<sqlx::Error>() {
            return code_of_sqlx(s);
        }
        c.downcast_ref::<failpoint::Injected>().map(|i| i.0.clone())
    })
}

/// What kind of transient error this is, if it is one.
pub fn transient(e: &anyhow::Error) -> Option<Transient> {
    db_code(e).as_ref().and_then(classify)
}

/// A control-table write that kept failing transiently: the last error stays in the chain
/// below this one, so the root cause (the server's own message) is still shown.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "控制表写入 {what} 重试 {attempts} 次后仍失败（{cause}），未写入任何内容；\
     control-table write {what} still failing after {attempts} attempts ({cause}), \
     nothing of it was stored"
)]
pub struct GaveUp {
    pub what: &'static str,
    pub attempts: u32,
    pub cause: Transient,
}

/// The wait before attempt `attempt + 1`: 10 ms doubling up to 500 ms, each drawn at random
/// from its upper half, so jobs that collided do not collide again in step.
pub fn backoff(attempt: u32) -> Duration {
    let ceiling = (10u64 << attempt.saturating_sub(1).min(6)).min(500);
    let half = ceiling / 2;
    Duration::from_millis(half + rand::random::<u64>() % (half + 1))
}

/// Runs `attempt` until it succeeds, fails with an error that is not transient, or has failed
/// transiently [`ATTEMPTS`] times. Each attempt begins its own transaction and commits it; a
/// failed one is dropped, which rolls it back, so the next attempt starts from what is
/// committed. Every retry is logged with its cause.
pub async fn retrying<T, F, Fut>(what: &'static str, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut n = 1;
    loop {
        let e = match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let Some(cause) = transient(&e) else {
            return Err(e);
        };
        if n >= ATTEMPTS {
            return Err(e.context(GaveUp {
                what,
                attempts: n,
                cause,
            }));
        }
        let wait = backoff(n);
        tracing::info!(
            write = %what,
            attempt = n,
            cause = %cause,
            error = %e.root_cause(),
            wait_ms = wait.as_millis() as u64,
            "transient database error, retrying the transaction"
        );
        tokio::time::sleep(wait).await;
        n += 1;
    }
}

/// Test hook: `QIANZHI_FAILPOINT=transient:<write>:<times>` makes the first `<times>`
/// transactions of that control-table write (`commit_exchange`, `ack_calls`,
/// `finish_batch`, ...) fail just before their commit with the backend's own transient
/// error: on MySQL and PostgreSQL the server raises a real deadlock (1213, 40P01) inside the
/// transaction; SQLite cannot raise one on demand, so BUSY_SNAPSHOT (517) is injected.
pub(crate) mod failpoint {
    use super::DbCode;
    use crate::db::Backend;
    use crate::db::dialect::Family;
    use anyhow::Result;
    use sqlx::{Any, Transaction};
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// An injected transient error, for the backend that cannot raise one in SQL.
    #[derive(Debug, thiserror::Error)]
    #[error("database is locked ({0:?}), injected by QIANZHI_FAILPOINT")]
    pub struct Injected(pub DbCode);

    /// The write named by the failpoint and how many of its transactions are still to fail.
    fn armed() -> Option<&'static (String, AtomicU32)> {
        static ARMED: OnceLock<Option<(String, AtomicU32)>> = OnceLock::new();
        ARMED
            .get_or_init(|| {
                let v = std::env::var("QIANZHI_FAILPOINT").ok()?;
                let rest = v.strip_prefix("transient:")?;
                let (write, times) = rest.rsplit_once(':')?;
                Some((write.to_string(), AtomicU32::new(times.parse().ok()?)))
            })
            .as_ref()
    }

    /// Fails this transaction of `write` if the failpoint still has failures left for it.
    pub(crate) async fn check(
        backend: Backend,
        tx: &mut Transaction<'_, Any>,
        write: &str,
    ) -> Result<()> {
        let Some((name, left)) = armed() else {
            return Ok(());
        };
        let take = |n: u32| n.checked_sub(1);
        if name != write
            || left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, take)
                .is_err()
        {
            return Ok(());
        }
        let raise = match backend.family() {
            Some(Family::Mysql) => {
                "SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = 1213, \
                 MESSAGE_TEXT = 'Deadlock found when trying to get lock (QIANZHI_FAILPOINT)'"
            }
            Some(Family::Postgres) => {
                "DO $$ BEGIN RAISE EXCEPTION 'deadlock detected (QIANZHI_FAILPOINT)' \
                 USING ERRCODE = '40P01'; END $$"
            }
            None => return Err(Injected(DbCode::Sqlite(517)).into()),
            Some(Family::Oracle) => {
                anyhow::bail!("QIANZHI_FAILPOINT transient: is not available for dm or oracle")
            }
        };
        sqlx::raw_sql(sqlx::AssertSqlSafe(raise))
            .execute(&mut **tx)
            .await?;
        anyhow::bail!("QIANZHI_FAILPOINT: the server did not raise the transient error")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_each_backends_codes() {
        let pg = |s: &str| DbCode::Postgres(s.to_string());
        let odbc = |s: &str, native| DbCode::Odbc {
            state: s.to_string(),
            native,
        };
        let cases = [
            (DbCode::Mysql(1213), Some(Transient::Deadlock)),
            (DbCode::Mysql(1205), Some(Transient::LockTimeout)),
            (DbCode::Mysql(1020), Some(Transient::Serialization)),
            // Duplicate key, syntax, lost connection, table missing: not transient.
            (DbCode::Mysql(1062), None),
            (DbCode::Mysql(1064), None),
            (DbCode::Mysql(2013), None),
            (DbCode::Mysql(1146), None),
            (pg("40P01"), Some(Transient::Deadlock)),
            (pg("40001"), Some(Transient::Serialization)),
            (pg("55P03"), Some(Transient::LockTimeout)),
            (pg("23505"), None),
            (pg("42P01"), None),
            (pg("57014"), None),
            (pg("40002"), None),
            (odbc("40001", 1213), Some(Transient::Deadlock)),
            (odbc("HY000", 1205), Some(Transient::LockTimeout)),
            (odbc("40001", 7), Some(Transient::Serialization)),
            (odbc("40P01", 7), Some(Transient::Deadlock)),
            (odbc("23505", 7), None),
            (odbc("23000", 1062), None),
            (DbCode::Sqlite(5), Some(Transient::Busy)),
            (DbCode::Sqlite(261), Some(Transient::Busy)),
            (DbCode::Sqlite(517), Some(Transient::Busy)),
            (DbCode::Sqlite(773), Some(Transient::Busy)),
            (DbCode::Sqlite(6), Some(Transient::Locked)),
            (DbCode::Sqlite(262), Some(Transient::Locked)),
            (DbCode::Sqlite(518), Some(Transient::Locked)),
            (DbCode::Sqlite(1555), None), // CONSTRAINT_PRIMARYKEY
            (DbCode::Sqlite(2067), None), // CONSTRAINT_UNIQUE
            (DbCode::Sqlite(8), None),    // READONLY
            (DbCode::Sqlite(13), None),   // FULL
        ];
        for (code, want) in cases {
            assert_eq!(classify(&code), want, "{code:?}");
        }
    }

    #[test]
    fn finds_the_code_anywhere_in_the_chain() {
        let e = anyhow::Error::from(failpoint::Injected(DbCode::Sqlite(517)))
            .context("commit of the exchange failed");
        assert_eq!(db_code(&e), Some(DbCode::Sqlite(517)));
        assert_eq!(transient(&e), Some(Transient::Busy));
        let plain = anyhow::anyhow!("Deadlock found when trying to get lock");
        assert_eq!(transient(&plain), None, "only a code counts, not the text");
        let driver = anyhow::Error::from(sqlx::Error::PoolTimedOut);
        assert_eq!(db_code(&driver), None);
    }

    #[test]
    fn backoff_grows_stays_bounded_and_jitters() {
        for attempt in 1..=ATTEMPTS + 3 {
            let ceiling = (10u64 << (attempt - 1).min(6)).min(500);
            for _ in 0..50 {
                let ms = backoff(attempt).as_millis() as u64;
                assert!((ceiling / 2..=ceiling).contains(&ms), "{attempt}: {ms}");
            }
        }
        let draws: std::collections::HashSet<u128> =
            (0..50).map(|_| backoff(5).as_millis()).collect();
        assert!(draws.len() > 1, "jittered");
    }

    #[tokio::test]
    async fn retries_transient_errors_up_to_the_bound() {
        let busy = || anyhow::Error::from(failpoint::Injected(DbCode::Sqlite(5)));
        // Fails twice, then succeeds: three attempts, the value comes back.
        let mut calls = 0;
        let got = retrying("test write", || {
            calls += 1;
            let n = calls;
            async move { if n < 3 { Err(busy()) } else { Ok(n) } }
        })
        .await
        .unwrap();
        assert_eq!((got, calls), (3, 3));
        // Never succeeds: ATTEMPTS attempts, then the error names the write, the count and
        // the cause, with the original error below.
        let mut calls = 0;
        let e = retrying("test write", || {
            calls += 1;
            async { Err::<(), _>(busy()) }
        })
        .await
        .unwrap_err();
        assert_eq!(calls, ATTEMPTS);
        let text = format!("{e:#}");
        assert!(text.contains("test write") && text.contains("8"), "{text}");
        assert!(
            text.contains("database busy") && text.contains("Sqlite(5)"),
            "{text}"
        );
        assert!(e.downcast_ref::<GaveUp>().is_some());
        // Not transient: returned at once.
        let mut calls = 0;
        let e = retrying("test write", || {
            calls += 1;
            async { Err::<(), _>(anyhow::anyhow!("no such table")) }
        })
        .await
        .unwrap_err();
        assert_eq!(calls, 1);
        assert_eq!(e.to_string(), "no such table");
    }
}
