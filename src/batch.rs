//! Cd_Batch numbering (unit USCC + yyyyMMdd in Beijing time + 5-digit daily sequence) and
//! splitting a batch into calls.

use chrono::{DateTime, FixedOffset, NaiveDate};

pub const MAX_DAILY_SEQ: i64 = 99_999;

/// The day a batch number belongs to: the Beijing date of the exchange.
pub fn batch_day(t: &DateTime<FixedOffset>) -> NaiveDate {
    t.with_timezone(&crate::timefmt::beijing()).date_naive()
}

/// `None` when the sequence does not fit the spec's five digits.
pub fn format_cd_batch(uscc: &str, day: NaiveDate, seq: i64) -> Option<String> {
    if !(1..=MAX_DAILY_SEQ).contains(&seq) {
        return None;
    }
    Some(format!("{uscc}{}{seq:05}", day.format("%Y%m%d")))
}

/// Splits a Cd_Batch back into (unit, day, sequence); the simulator uses it to check ours.
pub fn parse_cd_batch(s: &str) -> Option<(String, NaiveDate, i64)> {
    if s.len() != 31 || !s.is_ascii() {
        return None;
    }
    let (unit, rest) = s.split_at(18);
    let (day, seq) = rest.split_at(8);
    let day = NaiveDate::parse_from_str(day, "%Y%m%d").ok()?;
    if !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seq: i64 = seq.parse().ok()?;
    (seq >= 1).then(|| (unit.to_string(), day, seq))
}

/// Call numbers for `n` records, at most `per_call` each, in order.
pub fn call_numbers(n: usize, per_call: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |i| i / per_call.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn formatting() {
        let d = NaiveDate::from_ymd_opt(2018, 7, 15).unwrap();
        let cases = [
            (1, Some("11620000MB199916XB2018071500001")),
            (42, Some("11620000MB199916XB2018071500042")),
            (99_999, Some("11620000MB199916XB2018071599999")),
            (100_000, None),
            (0, None),
        ];
        for (seq, want) in cases {
            assert_eq!(
                format_cd_batch("11620000MB199916XB", d, seq).as_deref(),
                want,
                "{seq}"
            );
        }
        assert_eq!(
            parse_cd_batch("11620000MB199916XB2018071500042"),
            Some(("11620000MB199916XB".to_string(), d, 42))
        );
        for bad in [
            "",
            "11620000MB199916XB201807150004",
            "11620000MB199916XB2018071500000",
            "11620000MB199916XB20181315000AA",
        ] {
            assert_eq!(parse_cd_batch(bad), None, "{bad}");
        }
    }

    #[test]
    fn day_is_beijing_even_when_utc_is_yesterday() {
        // 2026-11-21 23:30 UTC is 2026-11-22 07:30 in Beijing.
        let t = chrono::Utc
            .with_ymd_and_hms(2026, 11, 21, 23, 30, 0)
            .unwrap()
            .fixed_offset();
        assert_eq!(
            batch_day(&t),
            NaiveDate::from_ymd_opt(2026, 11, 22).unwrap()
        );
    }

    #[test]
    fn calls_are_below_the_limit() {
        let calls: Vec<usize> = call_numbers(250, 99).collect();
        assert_eq!(calls.iter().filter(|c| **c == 0).count(), 99);
        assert_eq!(calls.iter().filter(|c| **c == 2).count(), 52);
        assert_eq!(*calls.last().unwrap(), 2);
    }
}
