//! A source column value as the database gave it, kept typed so positions can be bound back;
//! its text, owned or shared by the columns of one row; and a mapped record's field value.

use std::sync::Arc;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

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
    Text(Text),
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
            Value::Text(s) => s.to_string(),
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
            Value::Decimal(s) => Some(s),
            Value::Text(s) => Some(s.into_string()),
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

/// Text of a value: owned, or a range of a buffer shared by the text columns of one row.
/// A row's text columns are one allocation instead of one each (allocating and freeing them
/// one by one was about a tenth of the instructions per row in profiles).
#[derive(Clone)]
pub struct Text(Repr);

#[derive(Clone)]
enum Repr {
    Owned(String),
    Shared { buf: Arc<str>, start: u32, end: u32 },
}

impl Text {
    /// `buf[range]`, sharing `buf`; None unless `range` is text of `buf` (both ends on
    /// character boundaries) and `buf` is shorter than 4 GiB.
    pub fn shared(buf: &Arc<str>, range: std::ops::Range<usize>) -> Option<Text> {
        buf.get(range.clone())?;
        Some(Text(Repr::Shared {
            buf: Arc::clone(buf),
            start: u32::try_from(range.start).ok()?,
            end: u32::try_from(range.end).ok()?,
        }))
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Owned(s) => s,
            // SAFETY: `shared` checked that both ends are character boundaries of `buf`,
            // which never changes.
            Repr::Shared { buf, start, end } => unsafe {
                buf.get_unchecked(*start as usize..*end as usize)
            },
        }
    }

    pub fn into_string(self) -> String {
        match self.0 {
            Repr::Owned(s) => s,
            Repr::Shared { .. } => self.as_str().to_owned(),
        }
    }

    /// Drops the text from byte `at` on (a character boundary) without copying the rest.
    pub fn truncate(&mut self, at: usize) {
        assert!(self.as_str().is_char_boundary(at), "truncate at {at}");
        match &mut self.0 {
            Repr::Owned(s) => s.truncate(at),
            Repr::Shared { start, end, .. } => *end = (*start + at as u32).min(*end),
        }
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text(Repr::Owned(s))
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text(Repr::Owned(s.to_owned()))
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        String::deserialize(d).map(Text::from)
    }
}

/// A mapped field value as the platform receives it: null, text or a number. What mapping
/// makes and validation and the body writer read; JSON arrays, objects and booleans never
/// come out of mapping, so they have no place here.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Field {
    #[default]
    Null,
    Text(Text),
    Number(serde_json::Number),
}

impl Field {
    pub fn is_null(&self) -> bool {
        matches!(self, Field::Null)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Field::Text(t) => Some(t),
            _ => None,
        }
    }

    pub fn is_i64(&self) -> bool {
        matches!(self, Field::Number(n) if n.is_i64())
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Field::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    pub fn is_number(&self) -> bool {
        matches!(self, Field::Number(_))
    }

    /// A JSON value as a field: strings, numbers and null; anything else is given back.
    pub fn from_json(v: Json) -> Result<Field, Json> {
        match v {
            Json::Null => Ok(Field::Null),
            Json::String(s) => Ok(Field::Text(s.into())),
            Json::Number(n) => Ok(Field::Number(n)),
            other => Err(other),
        }
    }

    /// [`Field::from_json`], keeping anything else (which mapping never makes) as its JSON
    /// text rather than dropping it.
    pub fn from_json_or_text(v: Json) -> Field {
        Field::from_json(v).unwrap_or_else(|other| other.to_string().into())
    }

    pub fn to_json(&self) -> Json {
        match self {
            Field::Null => Json::Null,
            Field::Text(t) => Json::String(t.to_string()),
            Field::Number(n) => Json::Number(n.clone()),
        }
    }
}

impl From<&str> for Field {
    fn from(s: &str) -> Field {
        Field::Text(s.into())
    }
}

impl From<String> for Field {
    fn from(s: String) -> Field {
        Field::Text(s.into())
    }
}

impl From<i64> for Field {
    fn from(i: i64) -> Field {
        Field::Number(i.into())
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
    // A reversed range is one of the cases: it must give no text.
    #[allow(clippy::reversed_empty_ranges)]
    fn shared_text_is_its_range() {
        let buf: Arc<str> = Arc::from("甲公司abc");
        let mut t = Text::shared(&buf, 3..9).unwrap();
        assert_eq!(t.as_str(), "公司");
        assert_eq!(t, Text::from("公司"));
        t.truncate(3);
        assert_eq!(t.as_str(), "公");
        assert_eq!(t.clone().into_string(), "公");
        assert_eq!(Text::shared(&buf, 9..12).unwrap().as_str(), "abc");
        assert_eq!(Text::shared(&buf, 12..12).unwrap().as_str(), "");
        // Not text of the buffer: off a character boundary, reversed, past the end.
        for range in [1..3, 3..4, 6..3, 9..13] {
            assert!(Text::shared(&buf, range.clone()).is_none(), "{range:?}");
        }
        let mut owned = Text::from("abc");
        owned.truncate(1);
        assert_eq!(owned.as_str(), "a");
    }

    /// A value holding shared text is stored as the same JSON as one holding owned text.
    #[test]
    fn text_values_serialise_as_plain_strings() {
        let buf: Arc<str> = Arc::from("xx甲");
        let shared = Value::Text(Text::shared(&buf, 2..5).unwrap());
        let json = serde_json::to_string(&shared).unwrap();
        assert_eq!(json, r#"{"t":"text","v":"甲"}"#);
        let back: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Value::Text("甲".into()));
    }

    #[test]
    fn fields_from_json() {
        use serde_json::json;
        assert_eq!(Field::from_json(json!(null)), Ok(Field::Null));
        assert_eq!(Field::from_json(json!("a")), Ok(Field::from("a")));
        assert_eq!(Field::from_json(json!(7)), Ok(Field::from(7)));
        assert_eq!(Field::from_json(json!(true)), Err(json!(true)));
        assert_eq!(Field::from_json(json!([1])), Err(json!([1])));
        assert_eq!(Field::from_json_or_text(json!(true)), Field::from("true"));
        assert!(Field::from(7).is_i64() && Field::from(7).is_number());
        assert!(!Field::from("7").is_number());
        assert_eq!(Field::from(7).to_json(), json!(7));
        assert_eq!(Field::from("7").to_json(), json!("7"));
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
