//! Call bodies: the records of one call written as JSON objects straight into the body bytes,
//! the building block every platform's encoding starts from (see ARCHITECTURE.md).

use serde_json::Value as Json;
use std::fmt::Write as _;

use crate::config::NullFields;
use crate::mapping::{Op, Record};
use crate::value::Field;

/// What a field's value is when a record is written: its mapped value, one that numbering
/// sets (the same for every record of the batch), or a constant of the job.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    Value,
    Operation,
    Time,
    Batch,
    /// The constant as JSON text, written once per page rather than once per record.
    Constant(String),
}

/// The fields of a page's records in value order: each field's `"Code":` key text, written
/// once per page rather than once per record, and which values numbering sets.
#[derive(Debug, Clone, Default)]
pub struct Fields {
    codes: Vec<String>,
    keys: Vec<String>,
    slots: Vec<Slot>,
}

impl Fields {
    pub fn new(codes: Vec<String>) -> Fields {
        let keys = codes
            .iter()
            .map(|c| format!("{}:", Json::String(c.clone())))
            .collect();
        let slots = codes
            .iter()
            .map(|c| match c.as_str() {
                "Cd_Operation" => Slot::Operation,
                "Cd_Time" => Slot::Time,
                "Cd_Batch" => Slot::Batch,
                _ => Slot::Value,
            })
            .collect();
        Fields { codes, keys, slots }
    }

    /// The fields whose value is the same in every record (`constants`, by position; the
    /// records hold null there) are written with that value.
    pub fn with_constants(mut self, constants: &[Option<Field>]) -> Fields {
        for (slot, c) in self.slots.iter_mut().zip(constants) {
            if let (Slot::Value, Some(c)) = (&slot, c) {
                let mut text = String::new();
                push_field(&mut text, c);
                *slot = Slot::Constant(text);
            }
        }
        self
    }

    pub fn codes(&self) -> &[String] {
        &self.codes
    }
}

/// The records of one call as numbering left them, for a platform to write into its body.
#[derive(Clone, Copy)]
pub struct CallRecords<'a> {
    pub fields: &'a Fields,
    pub records: &'a [(Op, Record)],
    pub cd_time: &'a str,
    pub cd_batch: &'a str,
}

impl CallRecords<'_> {
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Appends record `i` as a JSON object: the fields in order, Cd_* as numbered, nulls as
    /// `nulls` says (numbered fields are always written). Written into a `String` by
    /// [`push_field`], byte for byte what serde_json writes, so the text needs no UTF-8 check
    /// afterwards (that check of every body showed up in profiles).
    pub fn write(&self, i: usize, nulls: NullFields, out: &mut String) {
        let (op, rec) = &self.records[i];
        out.push('{');
        let mut first = true;
        for ((key, slot), v) in self
            .fields
            .keys
            .iter()
            .zip(&self.fields.slots)
            .zip(&rec.values)
        {
            let numbered = match slot {
                Slot::Operation => Some(op.code()),
                Slot::Time => Some(self.cd_time),
                Slot::Batch => Some(self.cd_batch),
                Slot::Value | Slot::Constant(_) => None,
            };
            let constant = match slot {
                Slot::Constant(text) => Some(text.as_str()),
                _ => None,
            };
            if numbered.is_none() && constant.is_none() && v.is_null() && nulls == NullFields::Omit
            {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(key);
            match (numbered, constant, v) {
                (Some(n), _, _) => push_json_str(out, n),
                (None, Some(text), _) => out.push_str(text),
                (None, None, Field::Null) if nulls == NullFields::Empty => out.push_str("\"\""),
                (None, None, v) => push_field(out, v),
            }
        }
        out.push('}');
    }

    /// Record `i` as JSON text (a dry run prints these).
    pub fn text(&self, i: usize, nulls: NullFields) -> String {
        let mut out = String::with_capacity(1500);
        self.write(i, nulls, &mut out);
        out
    }

    /// Every record as its own JSON text, for encodings that treat records one by one.
    pub fn texts(&self, nulls: NullFields) -> Vec<String> {
        (0..self.len()).map(|i| self.text(i, nulls)).collect()
    }

    /// The records as one JSON array, written without an intermediate value.
    pub fn array(&self, nulls: NullFields) -> String {
        let mut body = String::with_capacity(4096);
        body.push('[');
        for i in 0..self.len() {
            if i > 0 {
                body.push(',');
            }
            self.write(i, nulls, &mut body);
            if i == 0 {
                // Room for the rest at the first record's size and an eighth, so the body is
                // not copied as it grows.
                body.reserve((body.len() + body.len() / 8) * (self.len() - 1));
            }
        }
        body.push(']');
        body
    }
}

/// `values` as a JSON array, byte for byte what `serde_json::to_writer` writes for them (the
/// snapshot digest's input: digests stored by earlier versions stay valid).
pub fn json_array(out: &mut String, values: &[Field]) {
    out.push('[');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_field(out, v);
    }
    out.push(']');
}

/// A value as serde_json writes the same JSON value (compact).
fn push_field(out: &mut String, v: &Field) {
    match v {
        Field::Text(s) => push_json_str(out, s),
        Field::Null => out.push_str("null"),
        // serde_json prints a number with the same itoa and ryu it serialises it with.
        Field::Number(n) => {
            let _ = write!(out, "{n}");
        }
    }
}

/// `s` as a JSON string, escaped exactly as serde_json escapes it: `"` and `\\` with a
/// backslash, the short forms \b \f \n \r \t, other control characters below U+0020 as
/// `\u00xx` in lower-case hex, everything else (also non-ASCII) as it is.
fn push_json_str(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut rest = s;
    while let Some(i) = escape_at(rest.as_bytes()) {
        // Byte `i` is ASCII, so both slices end on character boundaries.
        out.push_str(&rest[..i]);
        let b = rest.as_bytes()[i];
        rest = &rest[i + 1..];
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0C => "\\f",
            _ => {
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xF)]));
                continue;
            }
        };
        out.push_str(short);
    }
    out.push_str(rest);
    out.push('"');
}

/// Whether JSON escapes byte `b`.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn escaped(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// The first byte of `b` that JSON escapes. Escapes are rare, and testing byte by byte was
/// most of writing a body: on x86_64 sixteen bytes are tested at once with SSE2 (part of
/// every x86_64 processor), elsewhere eight at a time in a word ([`escape_at_swar`]).
#[cfg(target_arch = "x86_64")]
fn escape_at(b: &[u8]) -> Option<usize> {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    let escapes = |block: &[u8; 16]| {
        // SAFETY: SSE2 is in the x86_64 baseline, and the load reads the 16 bytes of
        // `block` (unaligned loads allowed).
        unsafe {
            let x = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
            // A byte below 0x20 is the one left unchanged by min(byte, 0x1F).
            let control = _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(0x1F)), x);
            let quote = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'"' as i8));
            let backslash = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\\' as i8));
            _mm_movemask_epi8(_mm_or_si128(control, _mm_or_si128(quote, backslash)))
        }
    };
    let (blocks, tail) = b.as_chunks::<16>();
    for (n, block) in blocks.iter().enumerate() {
        let mask = escapes(block);
        if mask != 0 {
            return Some(n * 16 + mask.trailing_zeros() as usize);
        }
    }
    if tail.is_empty() {
        return None;
    }
    // The last bytes (most values are shorter than 16) padded with spaces, which JSON
    // does not escape: one more test instead of one per byte.
    let mut last = [b' '; 16];
    last[..tail.len()].copy_from_slice(tail);
    let mask = escapes(&last);
    (mask != 0).then(|| b.len() - tail.len() + mask.trailing_zeros() as usize)
}

#[cfg(not(target_arch = "x86_64"))]
fn escape_at(b: &[u8]) -> Option<usize> {
    escape_at_swar(b)
}

/// [`escape_at`] eight bytes at a time: a word has a byte below 0x20 when
/// `(x - 0x20…) & !x & 0x80…` is not zero, and a byte equal to `"` or `\\` when the word
/// XOR that byte repeated has a zero byte, tested the same way against 0x01….
#[cfg(any(test, not(target_arch = "x86_64")))]
fn escape_at_swar(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH != 0;
    let mut words = b.chunks_exact(8);
    for (n, w) in (&mut words).enumerate() {
        let x = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        if (below(x, 0x20) || below(x ^ (ONES * 0x22), 1) || below(x ^ (ONES * 0x5C), 1))
            && let Some(i) = w.iter().position(|&c| escaped(c))
        {
            return Some(n * 8 + i);
        }
    }
    let tail = words.remainder();
    let i = tail.iter().position(|&c| escaped(c))?;
    Some(b.len() - tail.len() + i)
}

/// JSON texts joined into one array, exactly as [`CallRecords::array`] writes it.
pub fn join_array(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum::<usize>() + 2);
    out.push('[');
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(p);
    }
    out.push(']');
    out
}

/// The elements of a JSON array, each as the exact text it has in `array`.
pub fn split_array(array: &str) -> anyhow::Result<Vec<String>> {
    let raw: Vec<&serde_json::value::RawValue> = serde_json::from_str(array)
        .map_err(|e| anyhow::anyhow!("stored call body is not a JSON array: {e}"))?;
    Ok(raw.iter().map(|r| r.get().to_string()).collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A JSON string, number or null as a field value.
    fn field(v: Json) -> Field {
        Field::from_json(v).expect("a field value")
    }

    /// Both scans find the first byte JSON escapes, as a byte-by-byte search does: every
    /// escaped and a few neighbouring plain bytes at every place of texts up to 40 bytes,
    /// after plain bytes of both kinds (ASCII and the high bytes of UTF-8).
    #[test]
    fn escape_scans_find_the_first_escaped_byte() {
        let naive = |b: &[u8]| b.iter().position(|&c| escaped(c));
        for len in 0..40 {
            for fill in [b'a', 0xE4] {
                let plain = vec![fill; len];
                assert_eq!(escape_at(&plain), None);
                assert_eq!(escape_at_swar(&plain), None);
                for at in 0..len {
                    for byte in [0x00, 0x08, 0x1F, 0x20, b'"', b'\\', 0x7F, 0x80, 0xFF, b'!'] {
                        let mut b = plain.clone();
                        b[at] = byte;
                        if at + 1 < len {
                            b[len - 1] = b'"';
                        }
                        let want = naive(&b);
                        assert_eq!(escape_at(&b), want, "{b:?}");
                        assert_eq!(escape_at_swar(&b), want, "{b:?}");
                    }
                }
            }
        }
    }

    /// Two records over fields A (text), B (may be null), the three numbered Cd_* fields and
    /// C (a number): what the upstream tests encode.
    pub(crate) fn sample() -> (Fields, Vec<(Op, Record)>) {
        let fields = Fields::new(
            ["A", "B", "Cd_Operation", "Cd_Time", "Cd_Batch", "C"]
                .map(String::from)
                .to_vec(),
        );
        let rec = |key: &str, a: Json, b: Json, c: Json| Record {
            source_key: key.into(),
            row_guid: format!("g-{key}"),
            values: [a, b, json!("x"), json!("x"), json!("x"), c]
                .map(field)
                .to_vec(),
        };
        let records = vec![
            (
                Op::Insert,
                rec("1", json!("甲\"1"), Json::Null, json!(12.5)),
            ),
            (Op::Update, rec("2", json!("乙,2"), json!("b"), json!(3))),
            (Op::Delete, rec("3", json!("]丙"), Json::Null, Json::Null)),
        ];
        (fields, records)
    }

    #[test]
    fn records_follow_the_null_setting_and_numbering() {
        let (fields, records) = sample();
        let call = CallRecords {
            fields: &fields,
            records: &records,
            cd_time: "2026-01-02 03:04:05",
            cd_batch: "B1",
        };
        let numbered = r#""Cd_Operation":"I","Cd_Time":"2026-01-02 03:04:05","Cd_Batch":"B1""#;
        for (nulls, i, want) in [
            (
                NullFields::Omit,
                0,
                format!(r#"{{"A":"甲\"1",{numbered},"C":12.5}}"#),
            ),
            (
                NullFields::Null,
                0,
                format!(r#"{{"A":"甲\"1","B":null,{numbered},"C":12.5}}"#),
            ),
            (
                NullFields::Empty,
                0,
                format!(r#"{{"A":"甲\"1","B":"",{numbered},"C":12.5}}"#),
            ),
            (
                NullFields::Omit,
                2,
                r#"{"A":"]丙","Cd_Operation":"D","Cd_Time":"2026-01-02 03:04:05","Cd_Batch":"B1"}"#
                    .to_string(),
            ),
        ] {
            assert_eq!(call.text(i, nulls), want, "{nulls:?} record {i}");
        }
        let array = call.array(NullFields::Null);
        let texts = call.texts(NullFields::Null);
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        assert_eq!(array, join_array(&refs));
        assert_eq!(split_array(&array).unwrap(), texts);
        assert!(split_array("{\"a\":1}").is_err());
        assert_eq!(join_array(&[]), "[]");
    }

    /// The body as serde_json wrote it before the hand-written writer: each value through
    /// `serde_json::to_writer` into bytes. The new text must be the same bytes.
    fn serde_json_array(call: &CallRecords<'_>, nulls: NullFields) -> Vec<u8> {
        let mut out = vec![b'['];
        for (i, (op, rec)) in call.records.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'{');
            let mut first = true;
            for ((key, slot), v) in call
                .fields
                .keys
                .iter()
                .zip(&call.fields.slots)
                .zip(&rec.values)
            {
                let numbered = match slot {
                    Slot::Operation => Some(op.code()),
                    Slot::Time => Some(call.cd_time),
                    Slot::Batch => Some(call.cd_batch),
                    Slot::Value => None,
                    Slot::Constant(_) => unreachable!("the reference has no constants"),
                };
                if numbered.is_none() && v.is_null() && nulls == NullFields::Omit {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(key.as_bytes());
                match (numbered, v) {
                    (Some(n), _) => serde_json::to_writer(&mut out, n),
                    (None, Field::Null) if nulls == NullFields::Empty => {
                        serde_json::to_writer(&mut out, "")
                    }
                    (None, v) => serde_json::to_writer(&mut out, &v.to_json()),
                }
                .unwrap();
            }
            out.push(b'}');
        }
        out.push(b']');
        out
    }

    /// Every character that JSON escapes (all of U+0000–U+001F, `"`, `\\`), DEL, non-ASCII,
    /// characters beside escapes, numbers of every kind and the sample rows of every Guangdong
    /// data type: the same bytes as serde_json wrote.
    #[test]
    fn bodies_are_the_bytes_serde_json_wrote() {
        let all_ascii: String = (0u8..=0x7F).map(char::from).collect();
        let strings = [
            all_ascii.clone(),
            all_ascii.chars().rev().collect(),
            "\"".into(),
            "\\".into(),
            "".into(),
            "a\u{1}b\u{1f}\u{7f}\u{80}é甲\u{3000}\u{FFFF}\u{10FFFF}😀".into(),
            "\n\r\t\u{8}\u{c}x\"\\".into(),
            "trailing\\".into(),
        ];
        let mut values: Vec<Json> = strings.iter().map(|s| json!(s)).collect();
        values.extend([
            json!(0),
            json!(-1),
            json!(i64::MIN),
            json!(u64::MAX),
            json!(12.5),
            json!(1e-7),
            json!(1.0e21),
            json!(-0.0),
            json!(f64::MAX),
            json!(100.0),
            Json::Null,
        ]);
        let mut values: Vec<Field> = values.into_iter().map(field).collect();
        // Text shared with the other columns of its row, as read from PostgreSQL.
        let row: std::sync::Arc<str> = strings.concat().into();
        let mut at = 0;
        for s in &strings {
            values.push(Field::Text(
                crate::value::Text::shared(&row, at..at + s.len()).unwrap(),
            ));
            at += s.len();
        }
        let mut codes: Vec<String> = (0..values.len()).map(|i| format!("F{i}")).collect();
        codes.extend(["Cd_Operation", "Cd_Time", "Cd_Batch"].map(String::from));
        let fields = Fields::new(codes);
        let rec = |vals: Vec<Field>| Record {
            source_key: "k".into(),
            row_guid: "g".into(),
            values: vals
                .into_iter()
                .chain([Field::Null, Field::Null, Field::Null])
                .collect(),
        };
        // Each value alone, and all of them together (rotated, so neighbours change).
        let mut records: Vec<(Op, Record)> = values
            .iter()
            .map(|v| {
                let mut vals = vec![Field::Null; values.len()];
                vals[0] = v.clone();
                (Op::Update, rec(vals))
            })
            .collect();
        for r in 0..values.len() {
            let mut vals = values.clone();
            vals.rotate_left(r);
            records.push((Op::Insert, rec(vals)));
        }
        let mut calls = vec![(fields, records)];
        // Each escaped byte, and bytes on either side of the ranges, at every position of
        // texts of 1 to 19 bytes among ASCII and three-byte characters (word boundaries).
        let mut texts = Vec::new();
        for c in [
            '\u{0}', '\u{8}', '\u{1f}', ' ', '!', '"', '#', '[', '\\', ']', '\u{7f}',
        ] {
            for len in 1..20 {
                for at in 0..len {
                    let s: String = (0..len).map(|i| if i == at { c } else { 'a' }).collect();
                    texts.push(format!("甲{s}乙"));
                    texts.push(s);
                }
            }
        }
        calls.push((
            Fields::new(vec!["T".into()]),
            texts
                .into_iter()
                .map(|t| {
                    let values = vec![Field::from(t)];
                    (
                        Op::Insert,
                        Record {
                            source_key: String::new(),
                            row_guid: String::new(),
                            values,
                        },
                    )
                })
                .collect(),
        ));
        // The sample rows of every Guangdong data type, mapped as the pipeline maps them.
        let cat = crate::schema::Catalog::load(None).unwrap();
        let p = cat.platform("gdzw").unwrap();
        for dt in p.data_types.values() {
            let fields = Fields::new(dt.fields.iter().map(|f| f.code.clone()).collect());
            let records = (1..=20)
                .map(|id| {
                    use crate::schema::sample::{Lit, sample_fields};
                    let sample = sample_fields(p, dt, id);
                    let vals = dt
                        .fields
                        .iter()
                        .map(|f| match sample.iter().find(|(c, _)| *c == f.code) {
                            Some((_, Lit::Text(t))) => field(json!(t)),
                            Some((_, Lit::Int(i))) => field(json!(i)),
                            Some((_, Lit::Num(n))) => field(json!(n)),
                            Some((_, Lit::Null)) | None => Field::Null,
                        })
                        .collect();
                    (
                        Op::Delete,
                        Record {
                            source_key: id.to_string(),
                            row_guid: String::new(),
                            values: vals,
                        },
                    )
                })
                .collect();
            calls.push((fields, records));
        }
        for (fields, records) in &calls {
            let call = CallRecords {
                fields,
                records,
                cd_time: "2026-01-02 03:04:05",
                cd_batch: "11620000MB199916XB2026010200001",
            };
            for nulls in [NullFields::Omit, NullFields::Null, NullFields::Empty] {
                let want = serde_json_array(&call, nulls);
                assert_eq!(
                    call.array(nulls).as_bytes(),
                    want.as_slice(),
                    "{nulls:?}: {}",
                    String::from_utf8_lossy(&want)
                );
            }
        }
    }

    /// A field written from `with_constants` reads exactly as the same value held by each
    /// record, whatever the null setting; records hold null there.
    #[test]
    fn constants_are_written_as_record_values_would_be() {
        let (fields, records) = sample();
        let constants = vec![
            None,
            Some(Field::from("常\"量")),
            None,
            None,
            None,
            Some(Field::from(7)),
        ];
        let with = fields.clone().with_constants(&constants);
        let held: Vec<(Op, Record)> = records
            .iter()
            .map(|(op, r)| {
                let mut r = r.clone();
                r.values[1] = Field::from("常\"量");
                r.values[5] = Field::from(7);
                (*op, r)
            })
            .collect();
        let nulled: Vec<(Op, Record)> = records
            .iter()
            .map(|(op, r)| {
                let mut r = r.clone();
                r.values[1] = Field::Null;
                r.values[5] = Field::Null;
                (*op, r)
            })
            .collect();
        let call = |fields, records| CallRecords {
            fields,
            records,
            cd_time: "t",
            cd_batch: "b",
        };
        for nulls in [NullFields::Omit, NullFields::Null, NullFields::Empty] {
            assert_eq!(
                call(&with, &nulled).array(nulls),
                call(&fields, &held).array(nulls),
                "{nulls:?}"
            );
        }
    }

    #[test]
    fn arrays_are_the_bytes_serde_json_writes() {
        let all_ascii: String = (0u8..=0x7F).map(char::from).collect();
        let cases: Vec<Vec<Json>> = vec![
            vec![],
            vec![Json::Null],
            vec![json!("办件"), json!(1), json!(-7), json!(2.5), json!(1e300)],
            vec![
                json!(all_ascii),
                json!("a\"b\\c\u{1}\u{7f}\u{2028}"),
                Json::Null,
            ],
            vec![json!(u64::MAX), json!(i64::MIN), json!(0.1)],
        ];
        for values in cases {
            let mut ours = String::new();
            let fields: Vec<Field> = values.iter().cloned().map(field).collect();
            json_array(&mut ours, &fields);
            assert_eq!(ours, serde_json::to_string(&values).unwrap(), "{values:?}");
        }
    }

    #[test]
    fn field_keys_are_escaped_once() {
        let f = Fields::new(vec!["a\"b".into(), "Cd_Batch".into()]);
        assert_eq!(f.keys, ["\"a\\\"b\":", "\"Cd_Batch\":"]);
        assert_eq!(f.slots, [Slot::Value, Slot::Batch]);
        assert_eq!(f.codes(), ["a\"b", "Cd_Batch"]);
    }
}
