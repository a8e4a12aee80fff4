//! `order = "seq"`: the settle-by-observation guard. Without a time column there is no change
//! time to hold back, yet a transaction that took seq 100 may commit after one that took 105;
//! reading up to the largest seq committed now could pass 100 for ever. So every run observes
//! (database time, MAX(seq)) and stores it in the position; a run reads only up to the largest
//! maximum observed at least `settle_lag` ago. Every value up to such a maximum was taken from
//! the sequence before it was observed, so each transaction holding one has had `settle_lag`
//! to commit: the guarantee the time order's settle lag gives, one poll later.

use anyhow::Result;

use super::{Run, RunOptions};
use crate::db::source::{Seen, SeqPosition};

/// A new observation closer than `settle_lag / SPACING` to the newest one not yet settled is
/// not recorded: the list stays short however often the job runs, and a row waits at most
/// `settle_lag * (1 + 1/SPACING)` plus one interval.
const SPACING: i64 = 8;

/// At most this many observations are kept (`qz_cursor.position` is at most 4,000 characters
/// on DM and Oracle); a full list records nothing new until one settles.
const MAX_SEEN: usize = 16;

/// The observations kept once `now` is observed (its MAX(seq), if the source has a row):
/// `seen` with `now` added, then pruned. Dropping an observation never lets a read go further,
/// it can only hold it back, so every rule below is safe:
/// - one dominated by an earlier one with an equal or larger maximum goes;
/// - of those already settled (at least `lag_ms` old) only the latest is kept, the one with
///   the largest maximum once the dominated are gone;
/// - `now` is not added when the database's clock went back, when it comes within
///   `lag_ms / SPACING` of the newest unsettled one, or when the list is full.
pub(super) fn record(seen: &[Seen], now_ms: i64, max: Option<i64>, lag_ms: i64) -> Vec<Seen> {
    let mut out: Vec<Seen> = seen.to_vec();
    out.sort_by_key(|s| (s.at_ms, s.max));
    let settled = |s: &Seen| s.at_ms <= now_ms - lag_ms;
    let newest_unsettled = out.iter().rev().find(|s| !settled(s)).map(|s| s.at_ms);
    let too_close = newest_unsettled.is_some_and(|at| now_ms - at < lag_ms / SPACING);
    let clock_back = out.last().is_some_and(|s| s.at_ms > now_ms);
    if let Some(max) = max
        && !too_close
        && !clock_back
    {
        out.push(Seen { at_ms: now_ms, max });
    }
    // Dominated: an earlier observation saw as much.
    let mut kept: Vec<Seen> = Vec::with_capacity(out.len());
    for s in out {
        if kept.last().is_some_and(|k| k.max >= s.max) {
            continue;
        }
        kept.push(s);
    }
    // Settled: only the latest counts.
    let settled_count = kept.iter().filter(|s| settled(s)).count();
    kept.drain(..settled_count.saturating_sub(1));
    kept.truncate(MAX_SEEN);
    kept
}

/// The largest seq a run at `now_ms` may read: the largest maximum observed at least `lag_ms`
/// ago; None while no observation is that old (nothing is read).
pub(super) fn bound(seen: &[Seen], now_ms: i64, lag_ms: i64) -> Option<i64> {
    seen.iter()
        .filter(|s| s.at_ms <= now_ms - lag_ms)
        .map(|s| s.max)
        .max()
}

/// The start of a read in seq order: observes the source, stores the observations kept (not
/// in a dry run), and returns the position to read after with the bound to read up to.
pub(super) async fn observe(
    run: &Run<'_>,
    opts: &RunOptions,
    seq_column: &str,
    stored: SeqPosition,
) -> Result<(SeqPosition, Option<i64>)> {
    let (app, job) = (run.app, run.job);
    let (max, now_ms) = app.db.observe_seq(&job.source, seq_column).await?;
    let lag_ms = i64::try_from(job.settle_lag().as_millis()).unwrap_or(i64::MAX);
    let seen = record(&stored.seen, now_ms, max, lag_ms);
    let upto = bound(&seen, now_ms, lag_ms);
    tracing::debug!(?max, ?upto, position = ?stored.seq, "seq order observed");
    let position = SeqPosition {
        seq: stored.seq,
        seen,
    };
    if position != stored && !opts.dry_run {
        let json = serde_json::to_string(&position)?;
        app.db.store_position(run.fence, &json).await?;
    }
    Ok((position, upto))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at_ms: i64, max: i64) -> Seen {
        Seen { at_ms, max }
    }

    /// (observations, now, MAX(seq) now, lag) → (observations kept, bound)
    #[test]
    fn observations_kept_and_the_bound_they_give() {
        type Case = (Vec<Seen>, i64, Option<i64>, i64, Vec<Seen>, Option<i64>);
        let cases: Vec<Case> = vec![
            // The first run only observes: nothing is old enough yet.
            (vec![], 1_000, Some(50), 10_000, vec![s(1_000, 50)], None),
            // No settle lag: what is seen now is read now.
            (vec![], 1_000, Some(50), 0, vec![s(1_000, 50)], Some(50)),
            // An empty source: nothing to observe, nothing to read.
            (vec![], 1_000, None, 10_000, vec![], None),
            // The first observation has settled: read up to it, not up to what is seen now.
            (
                vec![s(1_000, 50)],
                11_000,
                Some(80),
                10_000,
                vec![s(1_000, 50), s(11_000, 80)],
                Some(50),
            ),
            // Not yet settled by a millisecond.
            (
                vec![s(1_000, 50)],
                10_999,
                Some(80),
                10_000,
                vec![s(1_000, 50), s(10_999, 80)],
                None,
            ),
            // Of the settled, the latest stays; the unsettled all stay.
            (
                vec![s(1_000, 50), s(5_000, 60), s(9_000, 70), s(20_000, 90)],
                21_500,
                Some(95),
                10_000,
                vec![s(9_000, 70), s(20_000, 90), s(21_500, 95)],
                Some(70),
            ),
            // Dominated: seen later with no larger maximum (nothing new, or a row deleted).
            (
                vec![s(1_000, 50), s(3_000, 50)],
                5_000,
                Some(40),
                10_000,
                vec![s(1_000, 50)],
                None,
            ),
            // Too close to the newest unsettled one (lag / 8 = 1,250 ms): not recorded.
            (
                vec![s(1_000, 50)],
                2_000,
                Some(60),
                10_000,
                vec![s(1_000, 50)],
                None,
            ),
            (
                vec![s(1_000, 50)],
                2_250,
                Some(60),
                10_000,
                vec![s(1_000, 50), s(2_250, 60)],
                None,
            ),
            // Close to a settled one only: recorded.
            (
                vec![s(1_000, 50)],
                11_500,
                Some(60),
                10_000,
                vec![s(1_000, 50), s(11_500, 60)],
                Some(50),
            ),
            // The database's clock went back: nothing recorded, the bound waits for it.
            (
                vec![s(50_000, 50)],
                40_000,
                Some(60),
                10_000,
                vec![s(50_000, 50)],
                None,
            ),
            // Stored out of order (a hand-edited position): sorted first.
            (
                vec![s(20_000, 90), s(1_000, 50)],
                21_000,
                Some(90),
                10_000,
                vec![s(1_000, 50), s(20_000, 90)],
                Some(50),
            ),
        ];
        for (seen, now, max, lag, want_seen, want_bound) in cases {
            let got = record(&seen, now, max, lag);
            assert_eq!(
                got, want_seen,
                "{seen:?} at {now} seeing {max:?}, lag {lag}"
            );
            assert_eq!(
                bound(&got, now, lag),
                want_bound,
                "{got:?} at {now}, lag {lag}"
            );
        }
    }

    /// However often a job runs, the list stays within MAX_SEEN, and the bound keeps moving.
    #[test]
    fn the_list_stays_short_and_the_bound_follows() {
        let lag = 600_000;
        let mut seen = Vec::new();
        let mut last_bound = None;
        // Every second for an hour, one more row each second.
        for t in 0..3_600 {
            let now = t * 1_000;
            seen = record(&seen, now, Some(t), lag);
            assert!(seen.len() <= MAX_SEEN, "{} at {now}", seen.len());
            let b = bound(&seen, now, lag);
            assert!(b >= last_bound, "the bound never goes back");
            if let Some(b) = b {
                // Every row up to the bound was seen at least the lag ago …
                assert!(b <= (now - lag) / 1_000, "{b} at {now}");
                // … and the bound trails the lag by at most lag / SPACING.
                assert!(
                    b * 1_000 >= now - lag - lag / SPACING - 1_000,
                    "{b} at {now}"
                );
            }
            last_bound = b;
        }
        assert!(last_bound.is_some());
    }
}
