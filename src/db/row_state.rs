//! `qz_row_state`: the keys a job has delivered (incremental and snapshot modes), read to tell
//! an update from an insert and written in the transaction of the exchange that sends them.

use anyhow::Result;
use sea_query::{Expr, ExprTrait, OnConflict, Query, Value as SqValue};
use sqlx::{Any, Row, Transaction};
use std::collections::HashSet;

use super::Db;
use super::writes::Writes;

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
    /// The record sent, as JSON packed by `pack_record` (snapshot mode: what a later delete is
    /// built from).
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

/// The first byte of a record stored compressed: LZ4 block (size prepended). A plain JSON
/// record begins with `[`, so rows written before compression stay readable.
const LZ4_TAG: u8 = 0x01;

/// The record kept for a later delete, compressed: the tag byte, then the LZ4 block of the
/// JSON (about a third of its size for a typical Guangdong record; README, 快照模式).
pub fn pack_record(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 4 + json.len() / 2);
    out.push(LZ4_TAG);
    out.extend_from_slice(&lz4_flex::compress_prepend_size(json));
    out
}

/// The JSON of a stored record, compressed or plain; None when it is neither (a damaged row:
/// the delete is then sent with the key and RowGuid alone).
pub fn unpack_record(stored: &[u8]) -> Option<Vec<u8>> {
    match stored.first()? {
        &LZ4_TAG => lz4_flex::decompress_size_prepended(&stored[1..]).ok(),
        b'[' => Some(stored.to_vec()),
        _ => None,
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
    pub(crate) fn write_row_state(
        &self,
        w: &mut Writes,
        job: &str,
        changes: &StateChanges,
        now: &str,
    ) {
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
            w.push(&q);
        }
        for chunk in changes.deleted.chunks(CHUNK_KEYS) {
            let q = Query::delete()
                .from_table("qz_row_state")
                .and_where(Expr::col("job").eq(job))
                .and_where(Expr::col("source_key").is_in(chunk.iter().map(String::as_str)))
                .to_owned();
            w.push(&q);
        }
    }

    /// Forgets what the platform refused (inside the transaction that writes its error rows):
    /// a refused insert no longer counts as delivered, a refused update keeps its key but not
    /// its digest, so the next snapshot sends the row again (as I or U) and the next change of
    /// an incremental job is not sent as an update of a key the platform never took.
    pub(crate) async fn forget_refused(
        &self,
        tx: &mut Transaction<'_, Any>,
        job: &str,
        refused: &[(&str, &str)],
    ) -> Result<()> {
        let of = |op: &str| -> Vec<&str> {
            refused
                .iter()
                .filter(|(_, o)| *o == op)
                .map(|(k, _)| *k)
                .collect()
        };
        for chunk in of("I").chunks(CHUNK_KEYS) {
            let q = Query::delete()
                .from_table("qz_row_state")
                .and_where(Expr::col("job").eq(job))
                .and_where(Expr::col("source_key").is_in(chunk.iter().copied()))
                .to_owned();
            self.stmt(&q).execute(&mut **tx).await?;
        }
        for chunk in of("U").chunks(CHUNK_KEYS) {
            let q = Query::update()
                .table("qz_row_state")
                .value("row_hash", "")
                .and_where(Expr::col("job").eq(job))
                .and_where(Expr::col("source_key").is_in(chunk.iter().copied()))
                .to_owned();
            self.stmt(&q).execute(&mut **tx).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_records_unpack_compressed_or_plain() {
        let json = r#"["44000000","广东","2026-11-20 10:00:00",null,"x","x","x","x"]"#.as_bytes();
        let packed = pack_record(json);
        let cases: [(&[u8], Option<&[u8]>); 5] = [
            (&packed, Some(json)),
            (json, Some(json)),
            (b"", None),
            (b"{\"a\":1}", None),
            (&[LZ4_TAG, 9, 9], None),
        ];
        for (stored, want) in cases {
            assert_eq!(unpack_record(stored).as_deref(), want, "{stored:?}");
        }
        assert_eq!(packed[0], LZ4_TAG);
    }
}
