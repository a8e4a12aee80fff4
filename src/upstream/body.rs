//! Call bodies: the records of one call written as JSON objects straight into the body bytes,
//! the building block every platform's encoding starts from (see ARCHITECTURE.md).

use serde_json::Value as Json;

use crate::config::NullFields;
use crate::mapping::{Op, Record};

/// What a field's value is when a record is written: its mapped value, or one that numbering
/// sets (the same for every record of the batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Value,
    Operation,
    Time,
    Batch,
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
    /// `nulls` says (numbered fields are always written).
    pub fn write(&self, i: usize, nulls: NullFields, out: &mut Vec<u8>) {
        let (op, rec) = &self.records[i];
        out.push(b'{');
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
                Slot::Value => None,
            };
            if numbered.is_none() && v.is_null() && nulls == NullFields::Omit {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(key.as_bytes());
            // Writing into a Vec cannot fail, and every value here is plain JSON.
            let _ = match (numbered, v) {
                (Some(n), _) => serde_json::to_writer(&mut *out, n),
                (None, Json::Null) if nulls == NullFields::Empty => {
                    serde_json::to_writer(&mut *out, "")
                }
                (None, v) => serde_json::to_writer(&mut *out, v),
            };
        }
        out.push(b'}');
    }

    /// Record `i` as JSON text (a dry run prints these).
    pub fn text(&self, i: usize, nulls: NullFields) -> String {
        let mut out = Vec::with_capacity(1500);
        self.write(i, nulls, &mut out);
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }

    /// Every record as its own JSON text, for encodings that treat records one by one.
    pub fn texts(&self, nulls: NullFields) -> Vec<String> {
        (0..self.len()).map(|i| self.text(i, nulls)).collect()
    }

    /// The records as one JSON array, written without an intermediate value.
    pub fn array(&self, nulls: NullFields) -> String {
        let mut body = Vec::with_capacity(self.len() * 1500);
        body.push(b'[');
        for i in 0..self.len() {
            if i > 0 {
                body.push(b',');
            }
            self.write(i, nulls, &mut body);
        }
        body.push(b']');
        String::from_utf8(body).expect("serde_json writes UTF-8")
    }
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
            values: vec![a, b, json!("x"), json!("x"), json!("x"), c],
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

    #[test]
    fn field_keys_are_escaped_once() {
        let f = Fields::new(vec!["a\"b".into(), "Cd_Batch".into()]);
        assert_eq!(f.keys, ["\"a\\\"b\":", "\"Cd_Batch\":"]);
        assert_eq!(f.slots, [Slot::Value, Slot::Batch]);
        assert_eq!(f.codes(), ["a\"b", "Cd_Batch"]);
    }
}
