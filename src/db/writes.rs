//! Statements of one transaction whose answers nobody reads (the inserts of an exchange, the
//! closing writes of a batch), gathered and run in order at one point. Through ODBC every
//! statement is otherwise a hop to a blocking thread and back, and on a busy machine each hop
//! waits for a thread to be scheduled; gathered, they run in one hop (`odbc_any::batch_sql`).
//! The other backends run them one by one, as before.

use anyhow::Result;
use sea_query_sqlx::SqlxBinder;
use sqlx::any::AnyArguments;
use sqlx::{Any, IntoArguments, Transaction};

use super::{Backend, Sql};

/// The gathered statements, each with its arguments, in the order they are to run.
pub(crate) struct Writes {
    backend: Backend,
    items: Vec<(std::sync::Arc<str>, AnyArguments)>,
}

impl Writes {
    pub(crate) fn new(backend: Backend) -> Writes {
        Writes {
            backend,
            items: Vec::new(),
        }
    }

    /// A statement rendered for this backend.
    pub(crate) fn push<S: SqlxBinder>(&mut self, stmt: &S) {
        let (sql, values) = self.backend.build(stmt);
        self.items.push((sql.into(), any_args(values)));
    }

    /// A statement rendered once ([`Sql`]) with one run's values.
    pub(crate) fn push_values(&mut self, sql: &Sql, values: Vec<sea_query::Value>) {
        let args = any_args(sea_query_sqlx::SqlxValues(sea_query::Values(values)));
        self.items.push((sql.0.clone(), args));
    }

    /// A statement rendered once with arguments bound by the caller.
    pub(crate) fn push_args(&mut self, sql: &Sql, args: AnyArguments) {
        self.items.push((sql.0.clone(), args));
    }

    /// Runs the statements in order inside `tx`; the first that fails stops the rest and its
    /// error is returned (the caller's transaction is then rolled back).
    pub(crate) async fn run(self, tx: &mut Transaction<'_, Any>) -> Result<()> {
        if self.items.is_empty() {
            return Ok(());
        }
        #[cfg(feature = "odbc")]
        if matches!(self.backend, Backend::Odbc(_)) && self.items.len() > 1 {
            let (sql, args) = super::odbc_any::batch_sql(self.items)?;
            sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
                .execute(&mut **tx)
                .await?;
            return Ok(());
        }
        for (sql, args) in self.items {
            sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

fn any_args(values: sea_query_sqlx::SqlxValues) -> AnyArguments {
    IntoArguments::<Any>::into_arguments(values)
}
