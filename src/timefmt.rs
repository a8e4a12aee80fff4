//! Beijing-time clock and the spec's date formats, plus human duration strings from the TOML.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, Utc};
use std::time::Duration;

/// The spec's date-time format (`yyyy-MM-dd HH:mm:ss`).
pub const SPEC_DATETIME: &str = "%Y-%m-%d %H:%M:%S";

/// Beijing time is UTC+8 all year (no DST), so a fixed offset is exact.
pub fn beijing() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("valid offset")
}

pub fn now_beijing() -> DateTime<FixedOffset> {
    Utc::now().with_timezone(&beijing())
}

/// Timestamp text for control tables and payloads: Beijing time, spec format.
pub fn fmt_spec(t: &DateTime<FixedOffset>) -> String {
    spec_string(&t.naive_local())
}

/// `yyyy-MM-dd HH:mm:ss` without chrono's format-string interpreter or `format!`, which
/// showed up in profiles: every date column of every row passes through here, so the digits
/// are written straight into a buffer.
pub fn spec_string(t: &NaiveDateTime) -> String {
    use chrono::{Datelike, Timelike};
    if !(0..=9999).contains(&t.year()) {
        // Not four digits: as `{:04}` writes such a year (a date validation then refuses).
        return format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
    }
    let mut b = [0u8; 19];
    put_date(&mut b, t.date());
    b[10] = b' ';
    put2(&mut b[11..13], t.hour());
    b[13] = b':';
    put2(&mut b[14..16], t.minute());
    b[16] = b':';
    put2(&mut b[17..19], t.second());
    ascii(&b)
}

/// `yyyy-MM-dd` (chrono's `%Y-%m-%d`), written as [`spec_string`] writes its date.
pub fn spec_date(d: NaiveDate) -> String {
    use chrono::Datelike;
    if !(0..=9999).contains(&d.year()) {
        // chrono writes such a year with its sign.
        return d.format("%Y-%m-%d").to_string();
    }
    let mut b = [0u8; 10];
    put_date(&mut b, d);
    ascii(&b)
}

/// `yyyy-MM-dd` into `b[..10]`, for a year of four digits.
fn put_date(b: &mut [u8], d: NaiveDate) {
    use chrono::Datelike;
    let y = d.year().unsigned_abs();
    put2(&mut b[0..2], y / 100);
    put2(&mut b[2..4], y % 100);
    b[4] = b'-';
    put2(&mut b[5..7], d.month());
    b[7] = b'-';
    put2(&mut b[8..10], d.day());
}

/// Two decimal digits of `n` (below 100).
fn put2(b: &mut [u8], n: u32) {
    b[0] = b'0' + (n / 10) as u8;
    b[1] = b'0' + (n % 10) as u8;
}

/// The digits and separators written above, each byte an ASCII character: pushed as
/// characters, which costs less than std's UTF-8 check of so few bytes (150 instructions).
fn ascii(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    s.extend(b.iter().map(|&c| char::from(c)));
    s
}

pub fn now_text() -> String {
    fmt_spec(&now_beijing())
}

/// A control-table time (`yyyy-MM-dd HH:mm:ss`, Beijing) as the instant it names.
pub fn parse_stored(s: &str) -> Option<DateTime<FixedOffset>> {
    NaiveDateTime::parse_from_str(s.trim(), SPEC_DATETIME)
        .ok()?
        .and_local_timezone(beijing())
        .single()
}

/// A control-table time for JSON: RFC 3339 with the Beijing offset
/// (`2026-11-20T10:07:00+08:00`); text that is not such a time is given back unchanged.
pub fn stored_to_rfc3339(s: &str) -> String {
    match parse_stored(s) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        None => s.to_string(),
    }
}

/// Serde helpers that write control-table times as RFC 3339 with `+08:00` (`status --json`).
pub mod json {
    use serde::Serializer;

    pub fn time<S: Serializer>(t: &str, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::stored_to_rfc3339(t))
    }

    pub fn opt_time<S: Serializer>(t: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => time(t, s),
            None => s.serialize_none(),
        }
    }
}

/// Parse the date-time spellings departments' databases commonly hold in text columns.
pub fn parse_loose_datetime(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y/%m/%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y%m%d%H%M%S",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t);
        }
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&beijing()).naive_local());
    }
    for f in ["%Y-%m-%d", "%Y/%m/%d", "%Y%m%d"] {
        if let Ok(d) = chrono::NaiveDate::parse_from_str(s, f) {
            return d.and_hms_opt(0, 0, 0);
        }
    }
    None
}

/// Parse a duration setting: humantime's spellings ("500ms", "30s", "10m", "2h", "1d",
/// also "1h 30m"), or a bare whole number of seconds ("7"). Read once, when the
/// configuration is loaded.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let too_long = || format!("'{s}' is too long: at most 3650d (时长过长：最多 3650d)");
    let d = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| too_long())?
    } else {
        humantime::parse_duration(s).map_err(|e| match e {
            humantime::DurationError::NumberOverflow => too_long(),
            humantime::DurationError::UnknownUnit { unit, .. } => format!(
                "unknown duration unit '{unit}' in '{s}' (use ms, s, m, h or d) (时长单位无效)"
            ),
            _ => format!("'{s}' is not a duration like 500ms, 30s, 10m, 2h or 1d (不是有效的时长)"),
        })?
    };
    // No setting of qianzhi needs more than ten years.
    if d > MAX_DURATION {
        return Err(too_long());
    }
    Ok(d)
}

/// The longest duration any setting accepts.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);

/// A duration setting with its documented range, both ends included.
pub fn duration_in(s: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < min || d > max {
        return Err(format!(
            "'{s}' is out of range: use {} to {} (取值范围 {} 至 {})",
            show_duration(min),
            show_duration(max),
            show_duration(min),
            show_duration(max)
        ));
    }
    Ok(d)
}

/// The shortest spelling `parse_duration` reads back as the same value.
pub fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, n) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= n && ms.is_multiple_of(n) {
            return format!("{}{unit}", ms / n);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_times_are_beijing_instants_and_json_carries_the_offset() {
        let t = parse_stored("2026-11-20 10:07:00").unwrap();
        assert_eq!(t.timestamp(), 1_795_140_420);
        assert_eq!(
            stored_to_rfc3339("2026-11-20 10:07:00"),
            "2026-11-20T10:07:00+08:00"
        );
        assert_eq!(stored_to_rfc3339("not a time"), "not a time");
        assert_eq!(parse_stored("2026-11-20"), None);
    }

    #[test]
    fn durations_out_of_range_are_errors_not_panics() {
        for s in [
            "99999999999999999999d",
            "99999999999999999999999",
            "1e300",
            "3651d",
            "1000000h",
        ] {
            assert!(parse_duration(s).is_err(), "{s}");
        }
        assert_eq!(parse_duration("3650d"), Ok(MAX_DURATION));
        let (lo, hi) = (Duration::from_secs(1), Duration::from_secs(600));
        assert_eq!(duration_in("30s", lo, hi), Ok(Duration::from_secs(30)));
        let e = duration_in("0s", lo, hi).unwrap_err();
        assert!(e.contains("1s to 10m"), "{e}");
        assert!(duration_in("11m", lo, hi).is_err());
        assert!(duration_in("99999999999999999999d", lo, hi).is_err());
        for (d, s) in [
            (500, "500ms"),
            (1000, "1s"),
            (90_000, "90s"),
            (3_600_000, "1h"),
        ] {
            assert_eq!(show_duration(Duration::from_millis(d)), s);
        }
    }

    #[test]
    fn durations() {
        for (s, ms) in [
            ("500ms", 500),
            ("5s", 5000),
            ("10m", 600_000),
            ("2h", 7_200_000),
            ("1d", 86_400_000),
            ("7", 7000),
        ] {
            assert_eq!(parse_duration(s).unwrap().as_millis(), ms, "{s}");
        }
        // humantime's longer spellings are read too.
        assert_eq!(parse_duration("1h 30m").unwrap().as_secs(), 5400);
        assert_eq!(parse_duration("10min").unwrap().as_secs(), 600);
        assert_eq!(parse_duration("1.5h").unwrap().as_secs(), 5400);
        for bad in ["", "x", "5 parsecs", "-1s", "30 s s", "1e300"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn spec_string_matches_chrono_format() {
        for s in [
            "2019-06-20 16:24:36",
            "0999-01-02 03:04:05",
            "2026-12-31 23:59:59",
            "0000-01-01 00:00:00",
            "9999-12-31 23:59:59",
        ] {
            let t = NaiveDateTime::parse_from_str(s, SPEC_DATETIME).unwrap();
            assert_eq!(spec_string(&t), t.format(SPEC_DATETIME).to_string());
            assert_eq!(spec_date(t.date()), t.format("%Y-%m-%d").to_string());
        }
        // Every day of a few years, and the years around the four-digit edges: as `format!`
        // and chrono wrote them before the digits were written by hand.
        let days = (1999..=2001)
            .chain([-1, 0, 1, 9998, 9999, 10_000, 12_345])
            .flat_map(|y| (1..=366).filter_map(move |o| NaiveDate::from_yo_opt(y, o)));
        for d in days {
            let t = d.and_hms_opt(7, 8, 9).unwrap();
            {
                use chrono::{Datelike, Timelike};
                let old = format!(
                    "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                    t.year(),
                    t.month(),
                    t.day(),
                    t.hour(),
                    t.minute(),
                    t.second()
                );
                assert_eq!(spec_string(&t), old);
            }
            assert_eq!(spec_date(d), d.format("%Y-%m-%d").to_string());
        }
    }

    #[test]
    fn loose_datetimes() {
        for (s, want) in [
            ("2019-06-20 16:24:36", "2019-06-20 16:24:36"),
            ("2019-06-20T16:24:36.123", "2019-06-20 16:24:36"),
            ("2019/06/20 16:24:36", "2019-06-20 16:24:36"),
            ("2019-06-20", "2019-06-20 00:00:00"),
            ("2019-06-20T08:24:36Z", "2019-06-20 16:24:36"),
        ] {
            let t = parse_loose_datetime(s).unwrap();
            assert_eq!(t.format(SPEC_DATETIME).to_string(), want, "{s}");
        }
        assert!(parse_loose_datetime("20th June").is_none());
    }
}
