//! The statements of `qz_lease` and `qz_instance`, built with sea-query and rendered per
//! backend: every time in them is the database's own (`db_now`).

use super::*;

/// The database's time in milliseconds since the epoch, as an expression of this dialect.
/// PostgreSQL: `clock_timestamp()` (not `now()`, which stops at the transaction's start).
pub(in crate::db) fn db_now(backend: Backend) -> Expr {
    Expr::cust(match backend {
        Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        Backend::Mysql => "CAST(UNIX_TIMESTAMP(CURRENT_TIMESTAMP(3)) * 1000 AS SIGNED)",
        Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
        Backend::Odbc(d) => crate::db::dialect::epoch_ms_now(d),
    })
}

pub(super) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(super) const LEASE_COLS: [&str; 6] = ["job", "holder", "host", "pid", "token", "expires_at"];

/// A job's lease row and the database's time; locked for the transaction when `lock`.
pub(super) fn lease_select(backend: Backend, job: Option<&str>, lock: bool) -> SelectStatement {
    let mut q = Query::select();
    q.columns(LEASE_COLS)
        .expr(db_now(backend))
        .from("qz_lease")
        .order_by("job", Order::Asc);
    if let Some(job) = job {
        q.and_where(Expr::col("job").eq(job));
    }
    if lock {
        q.lock(LockType::Update);
    }
    q
}

/// The row a job's first acquisition starts from; nothing when it exists.
pub(super) fn lease_insert(job: &str) -> InsertStatement {
    Query::insert()
        .into_table("qz_lease")
        .columns(["job", "token", "expires_at"])
        .values_panic([Expr::val(job), lit(0i64), lit(0i64)])
        .on_conflict(OnConflict::new().do_nothing_on(["job"]).to_owned())
        .to_owned()
}

/// Compare-and-set: the lease becomes `me`'s when it is free, expired or already `me`'s.
pub(super) fn acquire_update(
    backend: Backend,
    job: &str,
    me: &Holder,
    ttl: Duration,
) -> UpdateStatement {
    let now = now_text();
    Query::update()
        .table("qz_lease")
        .value("holder", me.instance.as_str())
        .value("host", me.host.as_str())
        .value("pid", me.pid)
        .value("token", Expr::col("token").add(lit(1i64)))
        .value("expires_at", db_now(backend).add(ms(ttl)))
        .value("acquired_at", now.as_str())
        .value("renewed_at", now.as_str())
        .and_where(Expr::col("job").eq(job))
        .and_where(
            Expr::col("holder")
                .is_null()
                .or(Expr::col("holder").eq(me.instance.as_str()))
                .or(Expr::col("expires_at").lte(db_now(backend))),
        )
        .to_owned()
}

/// The holder extends its own lease; nothing happens once another took it over.
pub(super) fn renew_update(backend: Backend, fence: &Fence, ttl: Duration) -> UpdateStatement {
    Query::update()
        .table("qz_lease")
        .value("expires_at", db_now(backend).add(ms(ttl)))
        .value("renewed_at", now_text())
        .and_where(Expr::col("job").eq(fence.job.as_str()))
        .and_where(Expr::col("holder").eq(fence.holder.as_str()))
        .and_where(Expr::col("token").eq(fence.token))
        .to_owned()
}

/// The holder gives its lease up: the next process takes it at once, without waiting for
/// the expiry.
pub(super) fn release_update(fence: &Fence) -> UpdateStatement {
    Query::update()
        .table("qz_lease")
        .value("holder", Expr::null())
        .value("host", Expr::null())
        .value("pid", Expr::null())
        .value("expires_at", lit(0i64))
        .value("renewed_at", now_text())
        .and_where(Expr::col("job").eq(fence.job.as_str()))
        .and_where(Expr::col("holder").eq(fence.holder.as_str()))
        .and_where(Expr::col("token").eq(fence.token))
        .to_owned()
}

/// The fencing check's read: holder and token of the job's row, locked to the commit.
pub(super) fn fence_select(job: &str) -> SelectStatement {
    Query::select()
        .columns(["holder", "token"])
        .from("qz_lease")
        .and_where(Expr::col("job").eq(job))
        .lock(LockType::Update)
        .to_owned()
}

pub(super) fn heartbeat_upsert(backend: Backend, me: &Holder) -> InsertStatement {
    Query::insert()
        .into_table("qz_instance")
        .columns(["instance", "host", "pid", "started_at", "heartbeat_at"])
        .values_panic([
            Expr::val(me.instance.as_str()),
            Expr::val(me.host.as_str()),
            Expr::val(me.pid),
            Expr::val(now_text()),
            db_now(backend),
        ])
        .on_conflict(
            OnConflict::column("instance")
                .update_columns(["heartbeat_at"])
                .to_owned(),
        )
        .to_owned()
}

/// Processes whose heartbeat is younger than `ttl`.
pub(super) fn live_select(backend: Backend, ttl: Duration) -> SelectStatement {
    Query::select()
        .columns(["instance", "host", "pid"])
        .from("qz_instance")
        .and_where(Expr::col("heartbeat_at").gt(db_now(backend).sub(ms(ttl))))
        .order_by("instance", Order::Asc)
        .to_owned()
}

/// Rows of processes silent for `age`: long gone, kept no longer.
pub(super) fn instances_purge(backend: Backend, age: Duration) -> sea_query::DeleteStatement {
    Query::delete()
        .from_table("qz_instance")
        .and_where(Expr::col("heartbeat_at").lt(db_now(backend).sub(ms(age))))
        .to_owned()
}

pub(super) fn instance_delete(me: &Holder) -> sea_query::DeleteStatement {
    Query::delete()
        .from_table("qz_instance")
        .and_where(Expr::col("instance").eq(me.instance.as_str()))
        .to_owned()
}

pub(super) fn lease_row(r: &sqlx::any::AnyRow) -> Result<LeaseInfo> {
    let instance: Option<String> = r.try_get(1)?;
    let holder = match instance {
        Some(instance) => Some(Holder {
            instance,
            host: r.try_get::<Option<String>, _>(2)?.unwrap_or_default(),
            pid: r.try_get::<Option<i64>, _>(3)?.unwrap_or_default(),
        }),
        None => None,
    };
    Ok(LeaseInfo {
        job: r.try_get(0)?,
        holder,
        token: r.try_get(4)?,
        expires_at: r.try_get(5)?,
        db_now: r.try_get(6)?,
    })
}
