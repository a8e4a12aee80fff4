//! Job leases (`qz_lease`), the fencing check every control-table transaction of a run makes,
//! and the heartbeats of `qianzhi run` processes (`qz_instance`).
//!
//! One clock: every expiry and heartbeat is written and compared in the DATABASE's time
//! (milliseconds since the epoch, computed by the server in the statement itself). Two
//! 前置机 whose clocks disagree by minutes still agree on who holds a lease, because neither
//! clock is ever compared with a stored time. The one local measure is a monotonic one: a
//! holder stops sending `ttl - renew_interval` after its last successful renewal started
//! (the `lease` module above `db`), which only assumes the two clocks run at the same rate.
//!
//! Fencing: acquiring a lease increments its `token`. A run carries a [`Fence`] (job, holder,
//! token); each of its transactions first locks the job's lease row (`SELECT ... FOR UPDATE`;
//! SQLite transactions here hold the write lock from their start) and fails with
//! [`LeaseLost`] unless holder and token are still the run's. A takeover has to update that
//! row, so it waits for a fenced transaction in progress and every later one of the old
//! holder fails: a process that was paused or cut off commits nothing after losing its lease.

use anyhow::{Context, Result};
use sea_query::{
    Expr, ExprTrait, InsertStatement, LockType, OnConflict, Order, Query, SelectStatement,
    UpdateStatement,
};
use sqlx::{Any, Row, Transaction};
use std::time::Duration;

use super::{Backend, Db, lit};
use crate::timefmt::now_text;

mod sql;

pub(in crate::db) use sql::db_now;
use sql::*;

/// One process that holds or wants leases: a random instance id (new at every start), the
/// host name and the process id, so an operator can find it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Holder {
    pub instance: String,
    pub host: String,
    pub pid: i64,
}

impl Holder {
    /// This process, under a fresh random instance id.
    pub fn this_process() -> Holder {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Holder {
            instance: id[..12].to_string(),
            host: host_name(),
            pid: i64::from(std::process::id()),
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "主机 host {} 进程 pid {} 实例 instance {}",
            self.host, self.pid, self.instance
        )
    }
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// What a run writes under: the job, the holder and the token it acquired the lease with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub job: String,
    pub holder: String,
    pub token: i64,
}

impl Fence {
    /// For a run that writes nothing (a dry run): it matches no lease, so a write under it
    /// would fail instead of going through unfenced.
    pub fn none(job: &str) -> Fence {
        Fence {
            job: job.to_string(),
            holder: String::new(),
            token: -1,
        }
    }
}

/// A job's lease row as read, with the database's time at the reading.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaseInfo {
    pub job: String,
    /// None once released.
    pub holder: Option<Holder>,
    pub token: i64,
    /// Database time, milliseconds since the epoch.
    pub expires_at: i64,
    /// The database's time when the row was read.
    pub db_now: i64,
}

impl LeaseInfo {
    /// Held and not expired.
    pub fn is_live(&self) -> bool {
        self.holder.is_some() && self.expires_at > self.db_now
    }

    /// The expiry in Beijing time, `yyyy-MM-dd HH:mm:ss`.
    pub fn expires_beijing(&self) -> String {
        ms_beijing(self.expires_at)
    }
}

/// A job's lease as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaseStatus {
    /// None: released (or never taken).
    pub holder: Option<Holder>,
    pub token: i64,
    /// Beijing time (`--json`: RFC 3339 with `+08:00`, like every other time there).
    #[serde(serialize_with = "crate::timefmt::json::opt_time")]
    pub expires_at: Option<String>,
    /// Held by nobody or expired: the next process to look takes it.
    pub free: bool,
}

impl From<&LeaseInfo> for LeaseStatus {
    fn from(l: &LeaseInfo) -> Self {
        LeaseStatus {
            holder: l.holder.clone(),
            token: l.token,
            expires_at: l.holder.as_ref().map(|_| l.expires_beijing()),
            free: !l.is_live(),
        }
    }
}

impl LeaseStatus {
    /// One line for `status`: who holds the lease and until when.
    pub fn shown(&self) -> String {
        match (&self.holder, &self.expires_at) {
            (Some(h), Some(until)) if !self.free => {
                format!("{h}, until {until} (token {})", self.token)
            }
            (Some(h), Some(until)) => format!("expired {until} ({h}) (token {})", self.token),
            _ => format!("free (token {})", self.token),
        }
    }
}

/// Database milliseconds as Beijing time text.
pub fn ms_beijing(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| crate::timefmt::fmt_spec(&t.with_timezone(&crate::timefmt::beijing())))
        .unwrap_or_else(|| "-".into())
}

/// Another live process holds the job's lease: this one changed nothing for the job.
#[derive(Debug, Clone, thiserror::Error)]
pub struct LeaseHeld(pub LeaseInfo);

impl std::fmt::Display for LeaseHeld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = &self.0;
        let who = l
            .holder
            .as_ref()
            .map(|h| h.to_string())
            .unwrap_or_else(|| "-".into());
        write!(
            f,
            "作业 {job} 的租约由另一进程持有（{who}），到期时间 {until}（北京时间），本进程未做任何更改 / \
             job {job}: its lease is held by another process ({who}) until {until} Beijing time; \
             nothing was changed",
            job = l.job,
            until = l.expires_beijing()
        )
    }
}

/// A run's lease was taken over (or released) since it acquired it: the transaction that
/// found out was rolled back, and the run must stop.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "作业 {job} 的租约已被其他进程接管（令牌 {token} 已失效），本次写入已回滚 / job {job}: the lease \
     was taken over by another process (token {token} is no longer valid); this write was rolled back"
)]
pub struct LeaseLost {
    pub job: String,
    pub token: i64,
}

/// How an acquisition ended.
#[derive(Debug, Clone)]
pub enum Acquire {
    /// The lease is ours under `fence`. `took_over`: it was taken from another holder whose
    /// lease had expired (that process may have left work half done).
    Got {
        fence: Fence,
        took_over: Option<LeaseInfo>,
    },
    /// Another live process holds it.
    Busy(LeaseInfo),
}

impl Db {
    /// Takes the job's lease for `ttl` when it is free, expired or already ours; every
    /// acquisition increments the token.
    pub async fn acquire_lease(&self, job: &str, me: &Holder, ttl: Duration) -> Result<Acquire> {
        for _ in 0..2 {
            let mut tx = self.begin_write().await?;
            let row = self
                .stmt(&lease_select(self.backend, Some(job), true))
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = row else {
                // The job's first lease: its row is created outside the transaction (a
                // concurrent creator is no error), then taken as any free lease is.
                tx.rollback().await?;
                self.stmt(&lease_insert(job)).execute(&self.any).await?;
                continue;
            };
            let before = lease_row(&row)?;
            let ours = before
                .holder
                .as_ref()
                .is_some_and(|h| h.instance == me.instance);
            if before.is_live() && !ours {
                tx.rollback().await?;
                return Ok(Acquire::Busy(before));
            }
            let n = self
                .stmt(&acquire_update(self.backend, job, me, ttl))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n != 1 {
                // Renewed by its holder between our read and write (only possible where the
                // read takes no lock); read again.
                tx.rollback().await?;
                continue;
            }
            tx.commit().await?;
            let took_over = (before.holder.is_some() && !ours).then_some(before.clone());
            return Ok(Acquire::Got {
                fence: Fence {
                    job: job.to_string(),
                    holder: me.instance.clone(),
                    token: before.token + 1,
                },
                took_over,
            });
        }
        // The row appeared and changed hands twice while we looked: report who has it now.
        match self.lease(job).await? {
            Some(l) => Ok(Acquire::Busy(l)),
            None => anyhow::bail!("qz_lease: the row of job {job} cannot be created"),
        }
    }

    /// Extends the lease by `ttl` from now (database time). False: it is no longer ours.
    pub async fn renew_lease(&self, fence: &Fence, ttl: Duration) -> Result<bool> {
        let n = self
            .stmt(&renew_update(self.backend, fence, ttl))
            .execute(&self.any)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// Gives the lease up. False: it was no longer ours.
    pub async fn release_lease(&self, fence: &Fence) -> Result<bool> {
        let n = self
            .stmt(&release_update(fence))
            .execute(&self.any)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// The fencing check, first in every control-table transaction of a run: locks the
    /// job's lease row to the commit and fails with [`LeaseLost`] unless it is still held
    /// under `fence`.
    pub(crate) async fn check_fence(
        &self,
        tx: &mut Transaction<'_, Any>,
        fence: &Fence,
    ) -> Result<()> {
        let row = self
            .stmt(&fence_select(&fence.job))
            .fetch_optional(&mut **tx)
            .await
            .context("reading the job's lease (qz_lease; run `qianzhi migrate`?)")?;
        let held = match &row {
            Some(r) => {
                let holder: Option<String> = r.try_get(0)?;
                let token: i64 = r.try_get(1)?;
                holder.as_deref() == Some(fence.holder.as_str()) && token == fence.token
            }
            None => false,
        };
        if !held {
            return Err(LeaseLost {
                job: fence.job.clone(),
                token: fence.token,
            }
            .into());
        }
        Ok(())
    }

    /// A fenced transaction: [`Db::begin_write`] followed by the fencing check.
    pub(crate) async fn begin_fenced(&self, fence: &Fence) -> Result<Transaction<'static, Any>> {
        let mut tx = self.begin_write().await?;
        self.check_fence(&mut tx, fence).await?;
        Ok(tx)
    }

    /// One statement under the fence, in its own transaction.
    pub(crate) async fn exec_fenced<S: sea_query_sqlx::SqlxBinder>(
        &self,
        fence: &Fence,
        stmt: &S,
    ) -> Result<()> {
        let mut tx = self.begin_fenced(fence).await?;
        self.stmt(stmt).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The job's lease row, if it ever had one.
    pub async fn lease(&self, job: &str) -> Result<Option<LeaseInfo>> {
        let row = self
            .stmt(&lease_select(self.backend, Some(job), false))
            .fetch_optional(&self.any)
            .await?;
        row.as_ref().map(lease_row).transpose()
    }

    /// Every lease row, by job.
    pub async fn leases(&self) -> Result<Vec<LeaseInfo>> {
        let rows = self
            .stmt(&lease_select(self.backend, None, false))
            .fetch_all(&self.any)
            .await?;
        rows.iter().map(lease_row).collect()
    }

    /// This `run` process is alive (database time).
    pub async fn heartbeat(&self, me: &Holder) -> Result<()> {
        self.stmt(&heartbeat_upsert(self.backend, me))
            .execute(&self.any)
            .await?;
        Ok(())
    }

    /// Removes the rows of processes silent for `age`.
    pub async fn purge_instances(&self, age: Duration) -> Result<()> {
        self.stmt(&instances_purge(self.backend, age))
            .execute(&self.any)
            .await?;
        Ok(())
    }

    /// The `run` processes heard from within `ttl`.
    pub async fn live_instances(&self, ttl: Duration) -> Result<Vec<Holder>> {
        let rows = self
            .stmt(&live_select(self.backend, ttl))
            .fetch_all(&self.any)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Holder {
                    instance: r.try_get(0)?,
                    host: r.try_get(1)?,
                    pid: r.try_get(2)?,
                })
            })
            .collect()
    }

    /// This process is leaving: the others stop counting it at once.
    pub async fn remove_instance(&self, me: &Holder) -> Result<()> {
        self.stmt(&instance_delete(me)).execute(&self.any).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKENDS: [Backend; 3] = [Backend::Postgres, Backend::Mysql, Backend::Sqlite];

    fn me() -> Holder {
        Holder {
            instance: "i1".into(),
            host: "h".into(),
            pid: 7,
        }
    }

    fn fence() -> Fence {
        Fence {
            job: "j".into(),
            holder: "i1".into(),
            token: 3,
        }
    }

    /// The compare-and-set conditions, in each dialect with the database's clock.
    #[test]
    fn lease_statements_are_compare_and_set_on_the_database_clock() {
        let ttl = Duration::from_secs(30);
        for b in BACKENDS {
            let now = match b {
                Backend::Postgres => {
                    "(CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT))"
                }
                Backend::Mysql => "(CAST(UNIX_TIMESTAMP(CURRENT_TIMESTAMP(3)) * 1000 AS SIGNED))",
                Backend::Sqlite => "(CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER))",
                Backend::Odbc(_) => unreachable!("BACKENDS holds the sqlx three"),
            };
            // The PostgreSQL text with this backend's quotes and placeholders.
            let q = |s: &str| {
                let mut out = s.to_string();
                if b != Backend::Postgres {
                    for n in (1..=9).rev() {
                        out = out.replace(&format!("${n}"), "?");
                    }
                }
                if b == Backend::Mysql {
                    out = out.replace('"', "`");
                }
                out.replace("NOW", now)
            };
            let cases = [
                (
                    b.build(&acquire_update(b, "j", &me(), ttl)),
                    r#"UPDATE "qz_lease" SET "holder" = $1, "host" = $2, "pid" = $3, "token" = "token" + 1, "expires_at" = NOW + $4, "acquired_at" = $5, "renewed_at" = $6 WHERE "job" = $7 AND ("holder" IS NULL OR "holder" = $8 OR "expires_at" <= NOW)"#,
                    8,
                ),
                (
                    b.build(&renew_update(b, &fence(), ttl)),
                    r#"UPDATE "qz_lease" SET "expires_at" = NOW + $1, "renewed_at" = $2 WHERE "job" = $3 AND "holder" = $4 AND "token" = $5"#,
                    5,
                ),
                (
                    b.build(&release_update(&fence())),
                    r#"UPDATE "qz_lease" SET "holder" = NULL, "host" = NULL, "pid" = NULL, "expires_at" = 0, "renewed_at" = $1 WHERE "job" = $2 AND "holder" = $3 AND "token" = $4"#,
                    4,
                ),
                (
                    b.build(&live_select(b, ttl)),
                    r#"SELECT "instance", "host", "pid" FROM "qz_instance" WHERE "heartbeat_at" > NOW - $1 ORDER BY "instance" ASC"#,
                    1,
                ),
            ];
            for ((sql, values), want, binds) in cases {
                assert_eq!(sql, q(want), "{b:?}");
                assert_eq!(values.0.0.len(), binds, "{sql}");
            }
            // The fencing read locks the row to the commit; SQLite's write transaction holds
            // the whole database from its start instead (sea-query leaves a blank there).
            let (sql, _) = b.build(&fence_select("j"));
            let lock = if b == Backend::Sqlite {
                " "
            } else {
                " FOR UPDATE"
            };
            assert_eq!(
                sql,
                q(&format!(
                    r#"SELECT "holder", "token" FROM "qz_lease" WHERE "job" = $1{lock}"#
                ))
            );
        }
    }

    #[test]
    fn expiry_is_shown_in_beijing_time() {
        // 2026-01-01 00:00:00 UTC
        assert_eq!(ms_beijing(1_767_225_600_000), "2026-01-01 08:00:00");
        let l = LeaseInfo {
            job: "accept".into(),
            holder: Some(me()),
            token: 4,
            expires_at: 1_767_225_600_000,
            db_now: 1_767_225_599_000,
        };
        assert!(l.is_live());
        let text = LeaseHeld(l.clone()).to_string();
        assert!(
            text.contains("host h") && text.contains("pid 7") && text.contains("instance i1"),
            "{text}"
        );
        assert!(text.contains("2026-01-01 08:00:00"), "{text}");
        let expired = LeaseInfo {
            db_now: 1_767_225_600_000,
            ..l
        };
        assert!(!expired.is_live());
    }
}
