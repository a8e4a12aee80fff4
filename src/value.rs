//! A source column value as the database gave it, kept typed so positions can be bound back.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};

use crate::timefmt::beijing;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "v", rename_all = "lowercase")]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// NUMERIC/DECIMAL as exact text, so money never goes through binary floating point.
    Decimal(String),
    Text(String),
    Date(NaiveDate),
    DateTime(NaiveDateTime),
    DateTimeTz(DateTime<FixedOffset>),
    Uuid(uuid::Uuid),
    Bytes(Vec<u8>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Text form used for keys, constants and string fields.
    pub fn to_text(&self) -> Option<String> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(b) => if *b { "1" } else { "0" }.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Decimal(d) => d.clone(),
            Value::Text(s) => s.clone(),
            Value::Date(d) => crate::timefmt::spec_date(*d),
            Value::DateTime(t) => crate::timefmt::spec_string(t),
            Value::DateTimeTz(t) => {
                crate::timefmt::spec_string(&t.with_timezone(&beijing()).naive_local())
            }
            Value::Uuid(u) => u.to_string(),
            Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        })
    }

    /// As [`Value::to_text`], moving text instead of copying it.
    pub fn into_text(self) -> Option<String> {
        match self {
            Value::Decimal(s) | Value::Text(s) => Some(s),
            v => v.to_text(),
        }
    }

    /// A whole number held by a number column: an integer, or a decimal without a fraction
    /// (a NUMERIC id). Not text: a text column sorts '10' before '9'.
    pub fn to_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Decimal(s) => s.parse().ok(),
            _ => None,
        }
    }

    /// Local (Beijing) wall-clock time, for change-time columns and datetime fields.
    pub fn to_naive_datetime(&self) -> Option<NaiveDateTime> {
        match self {
            Value::DateTime(t) => Some(*t),
            Value::DateTimeTz(t) => Some(t.with_timezone(&beijing()).naive_local()),
            Value::Date(d) => d.and_hms_opt(0, 0, 0),
            Value::Text(s) => crate::timefmt::parse_loose_datetime(s),
            _ => None,
        }
    }
}

/// One row read from a source, columns in the order the database returned them. The names
/// are shared by every row of one read, so a page of rows holds them once.
#[derive(Debug, Clone, Default)]
pub struct SourceRow {
    pub names: std::sync::Arc<[String]>,
    pub values: Vec<Value>,
}

impl SourceRow {
    /// A row from (name, value) pairs, for tests and one-off rows.
    pub fn from_pairs(pairs: Vec<(String, Value)>) -> SourceRow {
        let (names, values): (Vec<String>, Vec<Value>) = pairs.into_iter().unzip();
        SourceRow {
            names: names.into(),
            values,
        }
    }

    /// Column lookup ignores case: PostgreSQL folds unquoted names to lower case while the
    /// spec's field codes are mixed case.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n.eq_ignore_ascii_case(name))
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(self.index_of(name)?)
    }
}

/// Whether `s` ends in a character that is not white space (`char::is_whitespace`): nearly
/// every value does, and mapping and validation ask it of every text value. The last byte
/// settles it unless it can end a white-space character (ASCII 0x09-0x0D and space; the
/// others end in 0x80-0x8A, 0x9F, 0xA0, 0xA8, 0xA9 or 0xAF); only then is the last
/// character decoded.
#[inline]
pub fn ends_in_non_space(s: &str) -> bool {
    let Some(&last) = s.as_bytes().last() else {
        return false;
    };
    match last {
        b' ' | 0x09..=0x0D | 0x80..=0x8A | 0x9F | 0xA0 | 0xA8 | 0xA9 | 0xAF => {
            s.chars().next_back().is_some_and(|c| !c.is_whitespace())
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The last byte decides as the last character would, for every character.
    #[test]
    fn ends_in_non_space_agrees_with_char_is_whitespace() {
        assert!(!ends_in_non_space(""));
        let mut s = String::new();
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            s.clear();
            s.push('x');
            s.push(c);
            assert_eq!(
                ends_in_non_space(&s),
                !c.is_whitespace(),
                "U+{:04X}",
                c as u32
            );
        }
    }

    #[test]
    fn whole_numbers_only_from_number_columns() {
        let cases = [
            (Value::Int(-7), Some(-7)),
            (Value::Decimal("105".into()), Some(105)),
            (Value::Decimal("1.5".into()), None),
            (Value::Decimal("99999999999999999999".into()), None),
            (Value::Text("12".into()), None),
            (Value::Float(3.0), None),
            (Value::Null, None),
        ];
        for (v, want) in cases {
            assert_eq!(v.to_i64(), want, "{v:?}");
        }
    }
}
