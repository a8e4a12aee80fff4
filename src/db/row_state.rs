//! `qz_row_state`: the keys a job has delivered (incremental and snapshot modes), read to tell
//! an update from an insert and written in the transaction of the exchange that sends them.

use anyhow::Result;
use sea_query::{Expr, ExprTrait, OnConflict, Query, Value as SqValue};
use sqlx::{Any, Row, Transaction};
use std::collections::HashSet;

use super::Db;

/// The columns of a qz_row_state row, in the order `write_row_state` gives them.
const STATE_COLS: [&str; 7] = [
    "job",
    "source_key",
    "row_guid",
    "row_hash",
    "updated_at",
    "key_sort",
    "record",
];

/// Keys per statement: far below every backend's limit on bound values.
const CHUNK_KEYS: usize = 200;

/// A key delivered by an exchange (sent as an insert or an update).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    pub source_key: String,
    pub row_guid: String,
    /// Hex SHA-256 of the record sent (snapshot mode); empty where the mode keeps none.
    pub digest: String,
    /// The key as bytes in the snapshot's order (snapshot mode).
    pub key_sort: Option<Vec<u8>>,
    /// The record sent, as JSON (snapshot mode: what a later delete is built from).
    pub record: Option<Vec<u8>>,
}

/// What one exchange changes in `qz_row_state`: keys delivered and keys deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateChanges {
    pub delivered: Vec<Delivered>,
    pub deleted: Vec<String>,
}

impl StateChanges {
    pub fn is_empty(&self) -> bool {
        self.delivered.is_empty() && self.deleted.is_empty()
    }
}

impl Db {
    /// Which of `keys` the job has delivered and not deleted since.
    pub async fn known_keys(&self, job: &str, keys: &[&str]) -> Result<HashSet<String>> {
        let mut known = HashSet::new();
        for chunk in keys.chunks(CHUNK_KEYS) {
            let q = Query::select()
                .column("source_key")
                .from("qz_row_state")
                .and_where(Expr::col("job").eq(job))
                .and_where(Expr::col("source_key").is_in(chunk.iter().copied()))
                .to_owned();
            for r in self.stmt(&q).fetch_all(&self.any).await? {
                known.insert(r.try_get::<String, _>(0)?);
            }
        }
        Ok(known)
    }

    /// Writes one exchange's row states inside its transaction (`commit_exchange`): no key
    /// counts as delivered unless the records that deliver it are in the outbox.
    pub(crate) async fn write_row_state(
        &self,
        tx: &mut Transaction<'_, Any>,
        job: &str,
        changes: &StateChanges,
        now: &str,
    ) -> Result<()> {
        for chunk in changes.delivered.chunks(CHUNK_KEYS) {
            let mut q = Query::insert();
            q.into_table("qz_row_state").columns(STATE_COLS);
            for d in chunk {
                q.values_panic([
                    Expr::val(job),
                    Expr::val(d.source_key.as_str()),
                    Expr::val(d.row_guid.as_str()),
                    Expr::val(d.digest.as_str()),
                    Expr::val(now),
                    Expr::val(SqValue::Bytes(d.key_sort.clone())),
                    Expr::val(SqValue::Bytes(d.record.clone())),
                ]);
            }
            q.on_conflict(
                OnConflict::columns(["job", "source_key"])
                    .update_columns(STATE_COLS[2..].iter().copied())
                    .to_owned(),
            );
            self.stmt(&q).execute(&mut **tx).await?;
        }
        for chunk in changes.deleted.chunks(CHUNK_KEYS) {
            let q = Query::delete()
                .from_table("qz_row_state")
                .and_where(Expr::col("job").eq(job))
                .and_where(Expr::col("source_key").is_in(chunk.iter().map(String::as_str)))
                .to_owned();
            self.stmt(&q).execute(&mut **tx).await?;
        }
        Ok(())
    }
}
