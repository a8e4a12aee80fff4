//! Credit-query tables: the subjects view, the spend ledger and budget, provider pauses and
//! stops, per-subject freshness, and the flattened result tables.

use anyhow::{Context, Result};
use sea_query::{
    Asterisk, Cond, Condition, Expr, ExprTrait, InsertStatement, OnConflict, Order, Query,
    SelectStatement, UpdateStatement, Value,
};
use sqlx::{Any, Row, Transaction};

use super::dialect::Family;
use super::lease::Fence;
use super::retry::retrying;
use super::source::{column_name, table_name};
use super::{Backend, Db, Sql, lit, slots};
use crate::timefmt::now_text;

/// Rows for one result table; the db layer adds subject, fetch time, order and raw JSON.
/// Defined here, below `query`, which fills it (arrows point down: ARCHITECTURE.md).
#[derive(Debug, Clone, PartialEq)]
pub struct TableRows {
    pub table: &'static str,
    pub columns: &'static [&'static str],
    pub rows: Vec<FlatRow>,
}

/// One result row: the column values in `TableRows::columns` order, and the item's JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct FlatRow {
    pub values: Vec<Option<String>>,
    pub raw: String,
}

/// Result columns that hold counts, bound as integers so PostgreSQL accepts them.
const INT_COLUMNS: &[&str] = &["punish_count", "credit_seq"];

/// A call reserved against the day's budget; its ledger row waits for the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserved {
    pub ledger_id: i64,
}

/// What one call got, for its ledger row.
#[derive(Debug, Clone, Default)]
pub struct CallRecord {
    pub status_code: String,
    pub action: &'static str,
    pub billed: bool,
    pub order_no: Option<String>,
    pub message: String,
}

/// One page of a paged answer (Shuidi, Qichacha), kept in `qz_query_page` until the subject's
/// last page is read and its result stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRow {
    pub page: u32,
    pub job: String,
    /// The keyword / searchKey sent; pages asked with another one do not belong together.
    pub search_key: String,
    pub page_size: u32,
    pub total: Option<u64>,
    /// Calls spent on this page, retries included.
    pub calls: i64,
    pub status_code: String,
    pub order_no: Option<String>,
    /// The page's records as received, a JSON array.
    pub items_json: String,
    pub fetched_at: String,
}

/// The outcome stored for a subject, with its rows.
#[derive(Debug, Clone)]
pub struct SubjectResult<'a> {
    pub provider: &'a str,
    pub job: &'a str,
    pub subject_key: &'a str,
    pub subject_name: Option<&'a str>,
    /// found, no_result or rejected.
    pub status: &'a str,
    pub status_code: &'a str,
    pub message: &'a str,
    pub order_no: Option<&'a str>,
    pub calls: i64,
    /// Every table of the provider, even empty, so earlier rows are always replaced.
    pub tables: &'a [TableRows],
    pub tables_of_provider: &'a [&'a str],
    /// The call whose answer this is, completed in the same transaction: a crash cannot
    /// leave a paid answer recorded in the ledger but not stored.
    pub completes: Option<(Reserved, &'a CallRecord)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProviderState {
    pub state: String,
    pub paused_until: Option<String>,
    pub status_code: Option<String>,
    pub reason: Option<String>,
    pub updated_at: Option<String>,
}

/// The subjects view's columns as text, aliased `c0, c1, ...` (cast in SQL, since the `Any`
/// driver cannot decode dates or decimals).
fn text_columns_select(backend: Backend, table: &str, columns: &[&str]) -> SelectStatement {
    let mut q = Query::select();
    for (i, c) in columns.iter().enumerate() {
        let col = Expr::col(column_name(backend, c));
        q.expr_as(col.cast_as(backend.text_cast_type()), format!("c{i}"));
    }
    q.from(table_name(backend, table)).to_owned()
}

/// Creates the provider's budget row for the day at 0 unless it exists (on MySQL
/// `ON DUPLICATE KEY UPDATE provider = provider`: sea-query has no INSERT IGNORE).
fn budget_insert(provider: &str, day: &str) -> InsertStatement {
    Query::insert()
        .into_table("qz_query_budget")
        .columns(["provider", "call_day", "calls"])
        .values_panic([Expr::val(provider), Expr::val(day), lit(0i64)])
        .on_conflict(OnConflict::new().do_nothing_on(["provider"]).to_owned())
        .to_owned()
}

/// Takes one call from the budget unless it is spent (no row changes then).
fn budget_take(provider: &str, day: &str, budget: u32) -> UpdateStatement {
    Query::update()
        .table("qz_query_budget")
        .value("calls", Expr::col("calls").add(lit(1i64)))
        .and_where(Expr::col("provider").eq(provider))
        .and_where(Expr::col("call_day").eq(day))
        .and_where(Expr::col("calls").lt(i64::from(budget)))
        .to_owned()
}

/// The ledger row of a reserved call, returning its id where the backend has RETURNING
/// (sea-query leaves the clause out on MySQL, whose driver reports the last insert id).
fn ledger_insert(
    provider: &str,
    job: &str,
    subject_key: &str,
    page: u32,
    day: &str,
    now: &str,
    returning: bool,
) -> InsertStatement {
    let mut q = Query::insert();
    q.into_table("qz_query_ledger")
        .columns([
            "provider",
            "job",
            "subject_key",
            "page",
            "call_day",
            "called_at",
            "billed",
        ])
        .values_panic([
            Expr::val(provider),
            Expr::val(job),
            Expr::val(subject_key),
            Expr::val(i64::from(page)),
            Expr::val(day),
            Expr::val(now),
            lit(0i64),
        ]);
    if returning {
        q.returning_col("id");
    }
    q
}

fn ledger_complete(r: Reserved, c: &CallRecord) -> UpdateStatement {
    Query::update()
        .table("qz_query_ledger")
        .value("status_code", c.status_code.as_str())
        .value("action", c.action)
        .value("billed", i64::from(c.billed))
        .value("order_no", c.order_no.clone())
        .value("message", c.message.as_str())
        .and_where(Expr::col("id").eq(r.ledger_id))
        .to_owned()
}

/// An INSERT that replaces the row with the same key: every column but the key is updated.
fn upsert(
    table: &'static str,
    key: &[&'static str],
    columns: &[&'static str],
    values: Vec<Expr>,
) -> InsertStatement {
    let rest = columns.iter().copied().filter(|c| !key.contains(c));
    Query::insert()
        .into_table(table)
        .columns(columns.iter().copied())
        .values_panic(values)
        .on_conflict(
            OnConflict::columns(key.iter().copied())
                .update_columns(rest)
                .to_owned(),
        )
        .to_owned()
}

fn page_upsert(provider: &str, subject_key: &str, p: &PageRow) -> InsertStatement {
    upsert(
        "qz_query_page",
        &["provider", "subject_key", "page"],
        &[
            "provider",
            "subject_key",
            "page",
            "job",
            "search_key",
            "page_size",
            "total",
            "calls",
            "status_code",
            "order_no",
            "items_json",
            "fetched_at",
        ],
        vec![
            Expr::val(provider),
            Expr::val(subject_key),
            Expr::val(i64::from(p.page)),
            Expr::val(p.job.as_str()),
            Expr::val(p.search_key.as_str()),
            Expr::val(i64::from(p.page_size)),
            Expr::val(p.total.map(|t| t as i64)),
            Expr::val(p.calls),
            Expr::val(p.status_code.as_str()),
            Expr::val(p.order_no.clone()),
            Expr::val(p.items_json.as_str()),
            Expr::val(p.fetched_at.as_str()),
        ],
    )
}

fn subject_upsert(r: &SubjectResult<'_>, count: i64, now: &str) -> InsertStatement {
    upsert(
        "qz_query_subject",
        &["provider", "subject_key"],
        &[
            "provider",
            "subject_key",
            "subject_name",
            "job",
            "last_status",
            "status_code",
            "message",
            "record_count",
            "calls",
            "order_no",
            "fetched_at",
        ],
        vec![
            Expr::val(r.provider),
            Expr::val(r.subject_key),
            Expr::val(r.subject_name.map(str::to_string)),
            Expr::val(r.job),
            Expr::val(r.status),
            Expr::val(r.status_code),
            Expr::val(r.message),
            Expr::val(count),
            Expr::val(r.calls),
            Expr::val(r.order_no.map(str::to_string)),
            Expr::val(now),
        ],
    )
}

fn provider_upsert(
    provider: &str,
    state: &str,
    paused_until: Option<&str>,
    status_code: Option<&str>,
    reason: Option<&str>,
    now: &str,
) -> InsertStatement {
    let text = |v: Option<&str>| Expr::val(v.map(str::to_string));
    upsert(
        "qz_query_provider",
        &["provider"],
        &[
            "provider",
            "state",
            "paused_until",
            "status_code",
            "reason",
            "updated_at",
        ],
        vec![
            Expr::val(provider),
            Expr::val(state),
            text(paused_until),
            text(status_code),
            text(reason),
            Expr::val(now),
        ],
    )
}

/// One result row of a provider table; rendered once per table, run per row with its values.
fn result_insert(table: &'static str, columns: &'static [&'static str]) -> InsertStatement {
    let cols = ["subject_key", "subject_name", "fetched_at", "seq"]
        .into_iter()
        .chain(columns.iter().copied())
        .chain(["raw_json"]);
    Query::insert()
        .into_table(table)
        .columns(cols)
        .values_panic(slots(columns.len() + 5))
        .to_owned()
}

/// The kept pages of a subject, or (for DELETE) their key.
fn of_subject_pages(provider: &str, subject_key: &str) -> Condition {
    Cond::all()
        .add(Expr::col("provider").eq(provider))
        .add(Expr::col("subject_key").eq(subject_key))
}

impl Db {
    /// The given columns of a table or view as text (cast in SQL, since the `Any` driver
    /// cannot decode dates or decimals).
    pub async fn read_text_columns(
        &self,
        table: &str,
        columns: &[&str],
    ) -> Result<Vec<Vec<Option<String>>>> {
        let rows = self
            .stmt(&text_columns_select(self.backend, table, columns))
            .fetch_all(&self.any)
            .await
            .with_context(|| {
                format!("subjects view {table} cannot be read (do it and its columns {columns:?} exist?)")
            })?;
        rows.iter()
            .map(|r| {
                (0..columns.len())
                    .map(|i| Ok(r.try_get::<Option<String>, _>(i)?))
                    .collect()
            })
            .collect()
    }

    /// Subjects of a provider fetched at or after `since` (Beijing text).
    pub async fn fresh_subjects(
        &self,
        provider: &str,
        since: &str,
    ) -> Result<std::collections::HashSet<String>> {
        let q = Query::select()
            .column("subject_key")
            .from("qz_query_subject")
            .and_where(Expr::col("provider").eq(provider))
            .and_where(Expr::col("fetched_at").gte(since))
            .to_owned();
        let keys: Vec<String> = self.stmt_scalar(&q).fetch_all(&self.any).await?;
        Ok(keys.into_iter().collect())
    }

    /// Takes one call from the provider's budget for `day` and writes its ledger row, or
    /// returns None when the budget is spent. The conditional UPDATE locks the budget row,
    /// so concurrent jobs and restarts cannot overspend.
    pub async fn reserve_call(
        &self,
        fence: &Fence,
        provider: &str,
        subject_key: &str,
        page: u32,
        day: &str,
        budget: u32,
    ) -> Result<Option<Reserved>> {
        // Created outside the transaction, so that on MySQL the lock the insert takes on an
        // existing row is not held to the commit (with INSERT IGNORE's shared lock, two
        // reservations upgrading it used to deadlock).
        let insert = budget_insert(provider, day);
        retrying("create_budget_row", || async {
            self.stmt(&insert).execute(&self.any).await?;
            Ok(())
        })
        .await?;
        retrying("reserve_call", || async {
            let mut tx = self.begin_fenced(fence).await?;
            let took = self
                .stmt(&budget_take(provider, day, budget))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if took != 1 {
                tx.rollback().await?;
                return Ok(None);
            }
            let ledger_id = self
                .insert_ledger(&mut tx, provider, &fence.job, subject_key, page, day)
                .await?;
            self.commit_write(tx, "reserve_call").await?;
            Ok(Some(Reserved { ledger_id }))
        })
        .await
    }

    async fn insert_ledger(
        &self,
        tx: &mut Transaction<'_, Any>,
        provider: &str,
        job: &str,
        subject_key: &str,
        page: u32,
        day: &str,
    ) -> Result<i64> {
        let now = now_text();
        let q = ledger_insert(provider, job, subject_key, page, day, &now, true);
        match self.backend.family() {
            // SQLite's Any driver reports no last insert id, so PostgreSQL and SQLite (3.35+,
            // bundled) return it.
            None | Some(Family::Postgres) => {
                let id: i64 = self.stmt_scalar(&q).fetch_one(&mut **tx).await?;
                Ok(id)
            }
            // MySQL has no RETURNING: its driver reports the id, or (ODBC) the same
            // connection asks for it.
            Some(Family::Mysql) => {
                let q = ledger_insert(provider, job, subject_key, page, day, &now, false);
                let r = self.stmt(&q).execute(&mut **tx).await?;
                if let Some(id) = r.last_insert_id() {
                    return Ok(id);
                }
                let last = Query::select()
                    .expr(Expr::cust("LAST_INSERT_ID()"))
                    .to_owned();
                let id: i64 = self.stmt_scalar(&last).fetch_one(&mut **tx).await?;
                Ok(id)
            }
            // Oracle and DM return values only INTO variables: the row just inserted is
            // found again by everything it holds (the job's lease keeps others off it).
            Some(Family::Oracle) => {
                let q = ledger_insert(provider, job, subject_key, page, day, &now, false);
                self.stmt(&q).execute(&mut **tx).await?;
                let find = Query::select()
                    .expr(Expr::col("id").max())
                    .from("qz_query_ledger")
                    .and_where(Expr::col("provider").eq(provider))
                    .and_where(Expr::col("job").eq(job))
                    .and_where(Expr::col("subject_key").eq(subject_key))
                    .and_where(Expr::col("page").eq(i64::from(page)))
                    .and_where(Expr::col("call_day").eq(day))
                    .and_where(Expr::col("called_at").eq(now.as_str()))
                    .to_owned();
                let id: Option<i64> = self.stmt_scalar(&find).fetch_one(&mut **tx).await?;
                id.context("the ledger row just inserted was not found again")
            }
        }
    }

    pub async fn complete_call(&self, fence: &Fence, r: Reserved, c: &CallRecord) -> Result<()> {
        retrying("complete_call", || async {
            let mut tx = self.begin_fenced(fence).await?;
            self.complete_call_in(&mut tx, r, c).await?;
            self.commit_write(tx, "complete_call").await
        })
        .await
    }

    async fn complete_call_in(
        &self,
        tx: &mut Transaction<'_, Any>,
        r: Reserved,
        c: &CallRecord,
    ) -> Result<()> {
        self.stmt(&ledger_complete(r, c)).execute(&mut **tx).await?;
        Ok(())
    }

    /// Completes a call that brought a page and keeps the page, in one transaction: what was
    /// paid for is on disk before anything else happens.
    pub async fn complete_call_with_page(
        &self,
        fence: &Fence,
        r: Reserved,
        c: &CallRecord,
        provider: &str,
        subject_key: &str,
        p: &PageRow,
    ) -> Result<()> {
        let upsert = page_upsert(provider, subject_key, p);
        retrying("complete_call_with_page", || async {
            let mut tx = self.begin_fenced(fence).await?;
            self.complete_call_in(&mut tx, r, c).await?;
            self.stmt(&upsert).execute(&mut *tx).await?;
            self.commit_write(tx, "complete_call_with_page").await
        })
        .await
        .context("keeping a page of the answer failed")
    }

    /// The pages kept for a subject, in page order.
    pub async fn stored_pages(&self, provider: &str, subject_key: &str) -> Result<Vec<PageRow>> {
        let q = Query::select()
            .columns([
                "page",
                "job",
                "search_key",
                "page_size",
                "total",
                "calls",
                "status_code",
                "order_no",
                "items_json",
                "fetched_at",
            ])
            .from("qz_query_page")
            .cond_where(of_subject_pages(provider, subject_key))
            .order_by("page", Order::Asc)
            .to_owned();
        let rows = self.stmt(&q).fetch_all(&self.any).await?;
        rows.iter()
            .map(|r| {
                Ok(PageRow {
                    page: u32::try_from(r.try_get::<i64, _>(0)?).unwrap_or(0),
                    job: r.try_get(1)?,
                    search_key: r.try_get(2)?,
                    page_size: u32::try_from(r.try_get::<i64, _>(3)?).unwrap_or(0),
                    total: r
                        .try_get::<Option<i64>, _>(4)?
                        .and_then(|t| u64::try_from(t).ok()),
                    calls: r.try_get(5)?,
                    status_code: r.try_get(6)?,
                    order_no: r.try_get(7)?,
                    items_json: r.try_get(8)?,
                    fetched_at: r.try_get(9)?,
                })
            })
            .collect()
    }

    /// Subjects of a provider with pages kept: left part-way by an earlier run.
    pub async fn subjects_with_pages(
        &self,
        provider: &str,
    ) -> Result<std::collections::HashSet<String>> {
        let q = Query::select()
            .distinct()
            .column("subject_key")
            .from("qz_query_page")
            .and_where(Expr::col("provider").eq(provider))
            .to_owned();
        let keys: Vec<String> = self.stmt_scalar(&q).fetch_all(&self.any).await?;
        Ok(keys.into_iter().collect())
    }

    /// Forgets a subject's kept pages (they answer another question, or are stale).
    pub async fn drop_pages(&self, fence: &Fence, provider: &str, subject_key: &str) -> Result<()> {
        let q = Query::delete()
            .from_table("qz_query_page")
            .cond_where(of_subject_pages(provider, subject_key))
            .to_owned();
        retrying("drop_pages", || self.exec_fenced(fence, &q)).await
    }

    /// Replaces the subject's rows of every table of the provider and its freshness row, in
    /// one transaction: a reader sees the old result or the new one, never a mix.
    pub async fn store_subject_result(&self, fence: &Fence, r: &SubjectResult<'_>) -> Result<()> {
        retrying("store_subject_result", || self.store_subject_once(fence, r))
            .await
            .context("storing the query result failed; the subject stays due")
    }

    async fn store_subject_once(&self, fence: &Fence, r: &SubjectResult<'_>) -> Result<()> {
        let now = now_text();
        let mut tx = self.begin_fenced(fence).await?;
        // The subject's row first: its lock serialises writers of the same subject.
        let count: i64 = r.tables.first().map(|t| t.rows.len() as i64).unwrap_or(0);
        self.stmt(&subject_upsert(r, count, &now))
            .execute(&mut *tx)
            .await?;
        if let Some((reserved, call)) = r.completes {
            self.complete_call_in(&mut tx, reserved, call).await?;
        }
        // The pages the result was assembled from go with it.
        let q = Query::delete()
            .from_table("qz_query_page")
            .cond_where(of_subject_pages(r.provider, r.subject_key))
            .to_owned();
        self.stmt(&q).execute(&mut *tx).await?;
        for table in r.tables_of_provider {
            let q = Query::delete()
                .from_table(table.to_string())
                .and_where(Expr::col("subject_key").eq(r.subject_key))
                .to_owned();
            self.stmt(&q).execute(&mut *tx).await?;
        }
        for t in r.tables {
            let insert = Sql::new(self.backend, &result_insert(t.table, t.columns));
            for (i, row) in t.rows.iter().enumerate() {
                let mut values: Vec<Value> = Vec::with_capacity(t.columns.len() + 5);
                values.extend([
                    r.subject_key.into(),
                    r.subject_name.map(str::to_string).into(),
                    now.as_str().into(),
                    (i as i64 + 1).into(),
                ]);
                for (c, v) in t.columns.iter().zip(&row.values) {
                    values.push(if INT_COLUMNS.contains(c) {
                        v.as_deref().and_then(|s| s.parse::<i64>().ok()).into()
                    } else {
                        v.clone().into()
                    });
                }
                values.push(row.raw.as_str().into());
                insert
                    .with(values)
                    .execute(&mut *tx)
                    .await
                    .with_context(|| format!("storing a row of {}", t.table))?;
            }
        }
        self.commit_write(tx, "store_subject_result").await
    }

    pub async fn provider_state(&self, provider: &str) -> Result<Option<ProviderState>> {
        let q = Query::select()
            .columns([
                "state",
                "paused_until",
                "status_code",
                "reason",
                "updated_at",
            ])
            .from("qz_query_provider")
            .and_where(Expr::col("provider").eq(provider))
            .to_owned();
        let row = self.stmt(&q).fetch_optional(&self.any).await?;
        row.map(|r| {
            Ok(ProviderState {
                state: r.try_get(0)?,
                paused_until: r.try_get(1)?,
                status_code: r.try_get(2)?,
                reason: r.try_get(3)?,
                updated_at: r.try_get(4)?,
            })
        })
        .transpose()
    }

    /// `reason` is already free of secrets.
    pub async fn set_provider_state(
        &self,
        fence: &Fence,
        provider: &str,
        state: &str,
        paused_until: Option<&str>,
        status_code: Option<&str>,
        reason: Option<&str>,
    ) -> Result<()> {
        let q = provider_upsert(
            provider,
            state,
            paused_until,
            status_code,
            reason,
            &now_text(),
        );
        retrying("set_provider_state", || self.exec_fenced(fence, &q)).await
    }

    /// (calls sent, of which billed) on a Beijing day, counted from the ledger.
    pub async fn ledger_day(&self, provider: &str, day: &str) -> Result<(i64, i64)> {
        let q = Query::select()
            .column("billed")
            .expr(Expr::col(Asterisk).count())
            .from("qz_query_ledger")
            .and_where(Expr::col("provider").eq(provider))
            .and_where(Expr::col("call_day").eq(day))
            .group_by_col("billed")
            .to_owned();
        let rows = self.stmt(&q).fetch_all(&self.any).await?;
        let (mut calls, mut billed) = (0, 0);
        for r in rows {
            let b: i64 = r.try_get(0)?;
            let n: i64 = r.try_get(1)?;
            calls += n;
            if b != 0 {
                billed += n;
            }
        }
        Ok((calls, billed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_query_sqlx::SqlxBinder;

    const BACKENDS: [Backend; 3] = [Backend::Postgres, Backend::Mysql, Backend::Sqlite];

    fn render<S: SqlxBinder>(s: &S) -> [(String, usize); 3] {
        BACKENDS.map(|b| {
            let (sql, v) = b.build(s);
            (sql, v.0.0.len())
        })
    }

    /// Golden SQL of the credit-query statements: statement × backend (PostgreSQL, MySQL,
    /// SQLite) → text, and how many values are bound.
    #[test]
    fn query_statements_per_backend() {
        let page = PageRow::default();
        let cases = [
            (
                "budget row",
                render(&budget_insert("p", "d")),
                [
                    r#"INSERT INTO "qz_query_budget" ("provider", "call_day", "calls") VALUES ($1, $2, 0) ON CONFLICT  DO NOTHING"#,
                    r#"INSERT INTO `qz_query_budget` (`provider`, `call_day`, `calls`) VALUES (?, ?, 0) ON DUPLICATE KEY UPDATE `provider` = `provider`"#,
                    r#"INSERT INTO "qz_query_budget" ("provider", "call_day", "calls") VALUES (?, ?, 0) ON CONFLICT  DO NOTHING"#,
                ],
                2,
            ),
            (
                "budget take",
                render(&budget_take("p", "d", 5)),
                [
                    r#"UPDATE "qz_query_budget" SET "calls" = "calls" + 1 WHERE "provider" = $1 AND "call_day" = $2 AND "calls" < $3"#,
                    r#"UPDATE `qz_query_budget` SET `calls` = `calls` + 1 WHERE `provider` = ? AND `call_day` = ? AND `calls` < ?"#,
                    r#"UPDATE "qz_query_budget" SET "calls" = "calls" + 1 WHERE "provider" = ? AND "call_day" = ? AND "calls" < ?"#,
                ],
                3,
            ),
            (
                "ledger row",
                render(&ledger_insert("p", "j", "k", 1, "d", "n", true)),
                [
                    r#"INSERT INTO "qz_query_ledger" ("provider", "job", "subject_key", "page", "call_day", "called_at", "billed") VALUES ($1, $2, $3, $4, $5, $6, 0) RETURNING "id""#,
                    r#"INSERT INTO `qz_query_ledger` (`provider`, `job`, `subject_key`, `page`, `call_day`, `called_at`, `billed`) VALUES (?, ?, ?, ?, ?, ?, 0)"#,
                    r#"INSERT INTO "qz_query_ledger" ("provider", "job", "subject_key", "page", "call_day", "called_at", "billed") VALUES (?, ?, ?, ?, ?, ?, 0) RETURNING "id""#,
                ],
                6,
            ),
            (
                "page upsert",
                render(&page_upsert("p", "k", &page)),
                [
                    r#"INSERT INTO "qz_query_page" ("provider", "subject_key", "page", "job", "search_key", "page_size", "total", "calls", "status_code", "order_no", "items_json", "fetched_at") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT ("provider", "subject_key", "page") DO UPDATE SET "job" = "excluded"."job", "search_key" = "excluded"."search_key", "page_size" = "excluded"."page_size", "total" = "excluded"."total", "calls" = "excluded"."calls", "status_code" = "excluded"."status_code", "order_no" = "excluded"."order_no", "items_json" = "excluded"."items_json", "fetched_at" = "excluded"."fetched_at""#,
                    r#"INSERT INTO `qz_query_page` (`provider`, `subject_key`, `page`, `job`, `search_key`, `page_size`, `total`, `calls`, `status_code`, `order_no`, `items_json`, `fetched_at`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE `job` = VALUES(`job`), `search_key` = VALUES(`search_key`), `page_size` = VALUES(`page_size`), `total` = VALUES(`total`), `calls` = VALUES(`calls`), `status_code` = VALUES(`status_code`), `order_no` = VALUES(`order_no`), `items_json` = VALUES(`items_json`), `fetched_at` = VALUES(`fetched_at`)"#,
                    r#"INSERT INTO "qz_query_page" ("provider", "subject_key", "page", "job", "search_key", "page_size", "total", "calls", "status_code", "order_no", "items_json", "fetched_at") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT ("provider", "subject_key", "page") DO UPDATE SET "job" = "excluded"."job", "search_key" = "excluded"."search_key", "page_size" = "excluded"."page_size", "total" = "excluded"."total", "calls" = "excluded"."calls", "status_code" = "excluded"."status_code", "order_no" = "excluded"."order_no", "items_json" = "excluded"."items_json", "fetched_at" = "excluded"."fetched_at""#,
                ],
                12,
            ),
            (
                "provider upsert",
                render(&provider_upsert("p", "s", None, None, None, "n")),
                [
                    r#"INSERT INTO "qz_query_provider" ("provider", "state", "paused_until", "status_code", "reason", "updated_at") VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT ("provider") DO UPDATE SET "state" = "excluded"."state", "paused_until" = "excluded"."paused_until", "status_code" = "excluded"."status_code", "reason" = "excluded"."reason", "updated_at" = "excluded"."updated_at""#,
                    r#"INSERT INTO `qz_query_provider` (`provider`, `state`, `paused_until`, `status_code`, `reason`, `updated_at`) VALUES (?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE `state` = VALUES(`state`), `paused_until` = VALUES(`paused_until`), `status_code` = VALUES(`status_code`), `reason` = VALUES(`reason`), `updated_at` = VALUES(`updated_at`)"#,
                    r#"INSERT INTO "qz_query_provider" ("provider", "state", "paused_until", "status_code", "reason", "updated_at") VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT ("provider") DO UPDATE SET "state" = "excluded"."state", "paused_until" = "excluded"."paused_until", "status_code" = "excluded"."status_code", "reason" = "excluded"."reason", "updated_at" = "excluded"."updated_at""#,
                ],
                6,
            ),
            (
                "result row",
                render(&result_insert(
                    "qz_shuidi_punish",
                    &["punish_count", "case_no"],
                )),
                [
                    r#"INSERT INTO "qz_shuidi_punish" ("subject_key", "subject_name", "fetched_at", "seq", "punish_count", "case_no", "raw_json") VALUES ($1, $2, $3, $4, $5, $6, $7)"#,
                    r#"INSERT INTO `qz_shuidi_punish` (`subject_key`, `subject_name`, `fetched_at`, `seq`, `punish_count`, `case_no`, `raw_json`) VALUES (?, ?, ?, ?, ?, ?, ?)"#,
                    r#"INSERT INTO "qz_shuidi_punish" ("subject_key", "subject_name", "fetched_at", "seq", "punish_count", "case_no", "raw_json") VALUES (?, ?, ?, ?, ?, ?, ?)"#,
                ],
                7,
            ),
        ];

        for (name, got, want, binds) in cases {
            for ((b, got), want) in BACKENDS.iter().zip(got).zip(want) {
                assert_eq!(got, (want.to_string(), binds), "{name} on {b:?}");
            }
        }
        // The subjects view: configured names resolve as PostgreSQL folds them bare, and
        // MySQL casts to CHAR.
        let want = [
            r#"SELECT CAST("uscc" AS TEXT) AS "c0", CAST("名称" AS TEXT) AS "c1" FROM "ods"."v_subjects""#,
            r#"SELECT CAST(`USCC` AS CHAR) AS `c0`, CAST(`名称` AS CHAR) AS `c1` FROM `ods`.`V_Subjects`"#,
            r#"SELECT CAST("USCC" AS TEXT) AS "c0", CAST("名称" AS TEXT) AS "c1" FROM "ods"."V_Subjects""#,
        ];
        for (b, want) in BACKENDS.iter().zip(want) {
            let q = text_columns_select(*b, "ods.V_Subjects", &["USCC", "名称"]);
            assert_eq!(b.build(&q).0, want, "subjects view on {b:?}");
        }
    }
}
