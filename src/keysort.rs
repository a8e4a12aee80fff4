//! Source keys as bytes that sort like the snapshot read orders them (`mode = "snapshot"`):
//! integers by value, text and bytes by their bytes (the database is asked for that binary
//! order: `COLLATE "C"`, `CAST(.. AS BINARY)`, SQLite's BINARY), NULL first. The snapshot
//! merge-joins the view and `qz_row_state` (ordered by these bytes) with a plain byte
//! comparison, so no collation can make the two sides disagree.
//!
//! Layout per key column: a tag byte (NULL 1 < number 2 < text 3 < bytes 4, SQLite's order of
//! storage classes), then for a number 8 bytes big-endian with the sign bit flipped, for text
//! and bytes the bytes with 0x00 written as 0x00 0xFF, ended by 0x00 0x00 (so "a" < "a\0" <
//! "ab" holds for the encoding of every column, not only the last).

use crate::value::Value;

const NULL: u8 = 1;
const NUMBER: u8 = 2;
const TEXT: u8 = 3;
const BYTES: u8 = 4;

/// Appends the encoding of one key column's value to `out`. `Err` names a value that has no
/// order-preserving encoding here (a fractional number, a float): the view should cast it.
pub fn push(out: &mut Vec<u8>, v: &Value) -> Result<(), String> {
    match v {
        Value::Null => out.push(NULL),
        Value::Bool(b) => push_int(out, i64::from(*b)),
        Value::Int(i) => push_int(out, *i),
        Value::Decimal(d) => match d.parse::<i64>() {
            Ok(i) => push_int(out, i),
            Err(_) => return Err(format!("decimal key {d}")),
        },
        Value::Float(f) => return Err(format!("floating-point key {f}")),
        Value::Text(s) => push_bytes(out, TEXT, s.as_bytes()),
        Value::Bytes(b) => push_bytes(out, BYTES, b),
        // Their ISO text sorts as the values do; a UUID's hex as its bytes do.
        v @ (Value::Date(_) | Value::DateTime(_) | Value::DateTimeTz(_)) => {
            let t = v.to_text().unwrap_or_default();
            push_bytes(out, TEXT, t.as_bytes())
        }
        Value::Uuid(u) => push_bytes(out, TEXT, u.hyphenated().to_string().as_bytes()),
    }
    Ok(())
}

fn push_int(out: &mut Vec<u8>, i: i64) {
    out.push(NUMBER);
    out.extend_from_slice(&((i as u64) ^ (1 << 63)).to_be_bytes());
}

fn push_bytes(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    for chunk in bytes.split_inclusive(|b| *b == 0) {
        out.extend_from_slice(chunk);
        if chunk.last() == Some(&0) {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

/// The whole key, `out` cleared first (a buffer reused for every row).
pub fn encode_into<'a>(
    out: &mut Vec<u8>,
    values: impl IntoIterator<Item = &'a Value>,
) -> Result<(), String> {
    out.clear();
    for v in values {
        push(out, v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(values: &[Value]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_into(&mut out, values).unwrap();
        out
    }

    /// Each list is in ascending order as the database sorts it in binary order; the
    /// encodings must sort the same, and differ.
    #[test]
    fn encodings_sort_like_the_binary_order() {
        use Value::*;
        let t = |s: &str| Text(s.into());
        let ordered: Vec<Vec<Vec<Value>>> = vec![
            vec![
                vec![Null],
                vec![Int(i64::MIN)],
                vec![Int(-1)],
                vec![Int(0)],
                vec![Int(9)],
                vec![Int(10)],
                vec![Int(i64::MAX)],
            ],
            // Byte order: upper case before lower case, ASCII before Chinese, a prefix first.
            vec![
                vec![t("")],
                vec![t("A")],
                vec![t("B")],
                vec![t("a")],
                vec![t("a\0")],
                vec![t("a b")],
                vec![t("ab")],
                vec![t("b")],
                vec![t("Ä")],
                // 乙 U+4E59 before 甲 U+7532: code point order, not pinyin or stroke order.
                vec![t("乙")],
                vec![t("甲")],
                vec![t("甲乙")],
            ],
            // Two columns: the first decides, a prefix of the first does not leak into the
            // second.
            vec![
                vec![t("a"), t("z")],
                vec![t("a\0"), t("a")],
                vec![t("ab"), t("a")],
            ],
            vec![
                vec![Int(1), t("b")],
                vec![Int(1), t("c")],
                vec![Int(2), t("a")],
            ],
        ];
        for list in ordered {
            for pair in list.windows(2) {
                assert!(
                    enc(&pair[0]) < enc(&pair[1]),
                    "{:?} < {:?}",
                    pair[0],
                    pair[1]
                );
            }
        }
        assert_eq!(enc(&[Decimal("12".into())]), enc(&[Int(12)]));
        assert!(encode_into(&mut Vec::new(), &[Decimal("1.5".into())]).is_err());
        assert!(encode_into(&mut Vec::new(), &[Float(1.5)]).is_err());
    }
}
