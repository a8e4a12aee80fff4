//! What a page means in the modes without an operation column (`mode = "incremental"`):
//! each key once in its latest state, I or U by whether it was delivered before
//! (`qz_row_state`), D only for a key that was, and the row states the exchange changes.

use anyhow::Result;
use std::collections::{HashMap, HashSet};

use super::Run;
use super::read::Prepared;
use crate::db::row_state::{Delivered, StateChanges};
use crate::mapping::{Op, Record};

/// Settles the operations of an incremental page against the keys the job has delivered,
/// and returns the row states its commit writes. Called by the committer, which commits the
/// pages one after another under the job's lease: the state it reads already holds every
/// earlier page of the run.
pub(super) async fn settle_incremental(run: &Run<'_>, prep: &mut Prepared) -> Result<StateChanges> {
    let keys: Vec<&str> = prep
        .records
        .iter()
        .map(|(_, r)| r.source_key.as_str())
        .collect();
    let known = run.app.db.known_keys(&run.job.name, &keys).await?;
    let records = std::mem::take(&mut prep.records);
    let (records, state) = settle(records, &known);
    prep.records = records;
    Ok(state)
}

/// The pure part of [`settle_incremental`]: the last row of a key in the page wins (a row
/// changed several times is sent once, as it is now); an insert of a known key is an update;
/// a delete of a key never delivered is dropped, there is nothing to withdraw.
pub(super) fn settle(
    records: Vec<(Op, Record)>,
    known: &HashSet<String>,
) -> (Vec<(Op, Record)>, StateChanges) {
    let last: HashMap<&str, usize> = records
        .iter()
        .enumerate()
        .map(|(i, (_, r))| (r.source_key.as_str(), i))
        .collect();
    let keep: Vec<bool> = records
        .iter()
        .enumerate()
        .map(|(i, (_, r))| last.get(r.source_key.as_str()) == Some(&i))
        .collect();
    let mut state = StateChanges::default();
    let mut out = Vec::with_capacity(records.len());
    for ((op, rec), keep) in records.into_iter().zip(keep) {
        if !keep {
            continue;
        }
        let was_delivered = known.contains(&rec.source_key);
        let op = match (op, was_delivered) {
            (Op::Delete, false) => continue,
            (Op::Delete, true) => {
                state.deleted.push(rec.source_key.clone());
                Op::Delete
            }
            (_, true) => Op::Update,
            (_, false) => Op::Insert,
        };
        if op != Op::Delete {
            state.delivered.push(Delivered {
                source_key: rec.source_key.clone(),
                row_guid: rec.row_guid.clone(),
                ..Default::default()
            });
        }
        out.push((op, rec));
    }
    (out, state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, v: i64) -> Record {
        Record {
            source_key: key.into(),
            row_guid: format!("g-{key}"),
            values: vec![v.into()],
        }
    }

    /// (page rows, sent as (op, key, value), keys delivered, keys deleted)
    type Case<'a> = (
        Vec<(Op, &'a str, i64)>,
        Vec<(Op, &'a str, i64)>,
        Vec<&'a str>,
        Vec<&'a str>,
    );

    #[test]
    fn settles_each_key_once_against_what_was_delivered() {
        use Op::*;
        let known: HashSet<String> = ["b", "d"].map(String::from).into();
        let cases: Vec<Case> = vec![
            (
                vec![(Insert, "a", 1)],
                vec![(Insert, "a", 1)],
                vec!["a"],
                vec![],
            ),
            (
                vec![(Insert, "b", 1)],
                vec![(Update, "b", 1)],
                vec!["b"],
                vec![],
            ),
            // Changed twice in the page: sent once, as it is last.
            (
                vec![(Insert, "a", 1), (Insert, "c", 5), (Insert, "a", 2)],
                vec![(Insert, "c", 5), (Insert, "a", 2)],
                vec!["c", "a"],
                vec![],
            ),
            // A soft delete of a delivered key, and of one never delivered (dropped).
            (
                vec![(Delete, "d", 1), (Delete, "e", 1)],
                vec![(Delete, "d", 1)],
                vec![],
                vec!["d"],
            ),
            // Deleted, then back within the page: the last state wins.
            (
                vec![(Delete, "b", 1), (Insert, "b", 3)],
                vec![(Update, "b", 3)],
                vec!["b"],
                vec![],
            ),
        ];
        for (page, want, delivered, deleted) in cases {
            let records = page.iter().map(|(o, k, v)| (*o, rec(k, *v))).collect();
            let (got, state) = settle(records, &known);
            let got: Vec<(Op, String, i64)> = got
                .into_iter()
                .map(|(o, r)| (o, r.source_key, r.values[0].as_i64().unwrap()))
                .collect();
            let want: Vec<(Op, String, i64)> = want
                .iter()
                .map(|(o, k, v)| (*o, k.to_string(), *v))
                .collect();
            assert_eq!(got, want, "{page:?}");
            let keys: Vec<&str> = state
                .delivered
                .iter()
                .map(|d| d.source_key.as_str())
                .collect();
            assert_eq!(keys, delivered, "{page:?}");
            assert_eq!(state.deleted, deleted, "{page:?}");
            assert!(
                state
                    .delivered
                    .iter()
                    .all(|d| d.row_guid == format!("g-{}", d.source_key))
            );
        }
    }
}
