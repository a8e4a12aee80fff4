//! The order guarantee with several calls in flight: a call goes out only when none of the
//! RowGuids it carries is in a call still waiting for its answer. Calls leave in the job's
//! order (Cd_Batch, then call number) and a held call holds back the ones behind it, so a
//! later change of a row is sent only after the platform answered the earlier one.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use crate::db::control::OutboxCall;
use crate::schema::Fnv;

/// The RowGuids of the calls sent and not answered yet, as counts per 64-bit hash of the
/// RowGuid: no RowGuid is copied or SipHashed per record (both showed in profiles). Two
/// RowGuids with one hash only hold a call back until the other is answered; a count per
/// record (taken and released alike) keeps one from freeing the other early.
#[derive(Debug, Default)]
pub(super) struct Busy(HashMap<u64, u32, Fnv>);

fn hash(row_guid: &str) -> u64 {
    let mut h = Fnv.build_hasher();
    h.write(row_guid.as_bytes());
    h.finish()
}

impl Busy {
    /// Whether `call` may go out now: no RowGuid of it is in a call under way.
    pub fn free(&self, call: &OutboxCall) -> bool {
        self.0.is_empty()
            || call
                .records
                .iter()
                .all(|r| !self.0.contains_key(&hash(&r.row_guid)))
    }

    /// The call went out: its RowGuids are under way until [`Busy::release`]. Several
    /// changes of one row inside one call go together, in order.
    pub fn take(&mut self, call: &OutboxCall) {
        for r in &call.records {
            *self.0.entry(hash(&r.row_guid)).or_default() += 1;
        }
    }

    /// Every record of the call has its answer (or the call was given up for this run).
    pub fn release(&mut self, call: &OutboxCall) {
        for r in &call.records {
            let h = hash(&r.row_guid);
            if let Some(n) = self.0.get_mut(&h) {
                *n -= 1;
                if *n == 0 {
                    self.0.remove(&h);
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::control::RecordMeta;

    fn call(guids: &[&str]) -> OutboxCall {
        OutboxCall {
            call_no: 0,
            body: Default::default(),
            records: guids
                .iter()
                .map(|g| RecordMeta {
                    source_key: String::new(),
                    row_guid: g.to_string(),
                    operation: "U".into(),
                })
                .collect(),
            done: Default::default(),
        }
    }

    #[test]
    fn a_call_waits_while_a_row_it_carries_is_under_way() {
        let mut busy = Busy::default();
        let (first, again, other) = (call(&["a", "b", "a"]), call(&["c", "a"]), call(&["c", "d"]));
        assert!(busy.free(&first));
        busy.take(&first);
        assert!(!busy.free(&again), "a is under way");
        assert!(busy.free(&other));
        busy.take(&other);
        busy.release(&first);
        assert!(!busy.free(&again), "c is still under way");
        busy.release(&other);
        assert!(busy.free(&again));
        assert!(busy.is_empty());
    }
}
