//! Pure validation of a mapped record against its data type: required, type, length, code set,
//! check digits. Each failure names the field and the rule so a DBA can fix the source row.

use serde_json::Value as Json;

use crate::checkdigit;
use crate::config::LengthUnit;
use crate::mask::mask_value;
use crate::schema::{Check, DataType, Field, FieldType, Platform};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    /// Stable rule name, used to group error rows in `status`.
    pub rule: &'static str,
    pub message: String,
}

/// Certificate types (A.2) whose numbers have a check digit qianzhi can verify.
const ID_CARD_TYPE: &str = "111";
const USCC_TYPE: &str = "1";

fn label(f: &Field) -> String {
    if f.name.is_empty() {
        f.code.clone()
    } else {
        format!("{}（{}）", f.code, f.name)
    }
}

/// The number written by `b` when it is all ASCII digits.
fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |n, c| {
        c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
    })
}

/// `yyyy-MM-dd` naming a real calendar day, checked by hand: every date of every record
/// passes through here, and chrono's format interpreter showed up in profiles.
fn is_spec_date_bytes(b: &[u8]) -> bool {
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && matches!(
            (digits(&b[0..4]), digits(&b[5..7]), digits(&b[8..10])),
            (Some(y), Some(m), Some(d)) if chrono::NaiveDate::from_ymd_opt(y as i32, m, d).is_some()
        )
}

fn is_spec_date(s: &str) -> bool {
    is_spec_date_bytes(s.as_bytes())
}

/// `yyyy-MM-dd HH:mm:ss` naming a real time (no leap second).
fn is_spec_datetime(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 19
        && is_spec_date_bytes(&b[..10])
        && b[10] == b' '
        && b[13] == b':'
        && b[16] == b':'
        && matches!(
            (digits(&b[11..13]), digits(&b[14..16]), digits(&b[17..19])),
            (Some(h), Some(m), Some(s)) if h < 24 && m < 60 && s < 60
        )
}

/// Full-width as the Gansu platform counts it: CJK symbols and punctuation (U+3000–U+303F,
/// e.g. the ideographic space, 、。〔〕) and the full-width forms (U+FF01–U+FF60,
/// U+FFE0–U+FFE6), except （ and ）, which its rule allows. Chinese characters are not
/// full-width characters in this sense.
pub fn first_fullwidth(s: &str) -> Option<(usize, char)> {
    s.chars().enumerate().find(|(_, c)| {
        let u = *c as u32;
        !matches!(c, '（' | '）')
            && ((0x3000..=0x303F).contains(&u)
                || (0xFF01..=0xFF60).contains(&u)
                || (0xFFE0..=0xFFE6).contains(&u))
    })
}

fn value_text(v: &Json) -> std::borrow::Cow<'_, str> {
    match v {
        Json::String(s) => std::borrow::Cow::Borrowed(s.as_str()),
        other => std::borrow::Cow::Owned(other.to_string()),
    }
}

/// Validates a record given as a JSON object keyed by field code (what the platform receives).
pub fn validate(
    fields: &serde_json::Map<String, Json>,
    dt: &DataType,
    platform: &Platform,
    unit: LengthUnit,
) -> Vec<Violation> {
    validate_by(|i| fields.get(&dt.fields[i].code), dt, platform, unit)
}

/// Validates values laid out in the data type's field order (what mapping produces).
pub fn validate_aligned(
    values: &[Json],
    dt: &DataType,
    platform: &Platform,
    unit: LengthUnit,
) -> Vec<Violation> {
    debug_assert_eq!(values.len(), dt.fields.len());
    validate_by(|i| values.get(i), dt, platform, unit)
}

/// Validates values in the data type's field order where a field may be absent (None).
pub fn validate_present(
    values: &[Option<Json>],
    dt: &DataType,
    platform: &Platform,
    unit: LengthUnit,
) -> Vec<Violation> {
    validate_by(
        |i| values.get(i).and_then(Option::as_ref),
        dt,
        platform,
        unit,
    )
}

fn validate_by<'a>(
    get: impl Fn(usize) -> Option<&'a Json>,
    dt: &DataType,
    platform: &Platform,
    unit: LengthUnit,
) -> Vec<Violation> {
    let mut out = Vec::new();
    for (i, f) in dt.fields.iter().enumerate() {
        let v = get(i).unwrap_or(&Json::Null);
        let mut bad = |rule: &'static str, message: String| {
            out.push(Violation {
                field: f.code.clone(),
                rule,
                message,
            })
        };
        if v.is_null() {
            if f.required {
                bad("required", format!("必填字段 {} 没有值", label(f)));
            }
            continue;
        }
        let text = value_text(v);
        match f.ty {
            FieldType::Datetime => {
                if !is_spec_datetime(&text) {
                    bad(
                        "datetime",
                        format!(
                            "{} 的值 '{text}' 不是 yyyy-MM-dd HH:mm:ss 格式的有效时间",
                            label(f)
                        ),
                    );
                    continue;
                }
            }
            FieldType::Date => {
                if !is_spec_date(&text) {
                    bad(
                        "date",
                        format!("{} 的值 '{text}' 不是 yyyy-MM-dd 格式的有效日期", label(f)),
                    );
                    continue;
                }
            }
            FieldType::Int => {
                if !v.is_i64() {
                    bad("integer", format!("{} 应为整数，实为 '{text}'", label(f)));
                    continue;
                }
                let digits = text.trim_start_matches('-').len();
                if let Some(max) = f.max_len
                    && digits > max as usize
                {
                    bad(
                        "max_length",
                        format!("{} 最多 {max} 位数字，实为 {digits} 位", label(f)),
                    );
                }
            }
            FieldType::Number => {
                if !v.is_number() {
                    bad("number", format!("{} 应为数值，实为 '{text}'", label(f)));
                    continue;
                }
                let digits = text.chars().filter(|c| c.is_ascii_digit()).count();
                if let Some(max) = f.max_len
                    && digits > max as usize
                {
                    bad(
                        "max_length",
                        format!("{} 最多 {max} 位数字，实为 {digits} 位", label(f)),
                    );
                }
            }
            FieldType::String => {
                let len = match unit {
                    LengthUnit::Chars => text.chars().count(),
                    LengthUnit::Bytes => text.len(),
                };
                if let Some(max) = f.max_len
                    && len > max as usize
                {
                    let u = if unit == LengthUnit::Chars {
                        "个字符"
                    } else {
                        "字节"
                    };
                    bad(
                        "max_length",
                        format!("{} 最长 {max} {u}，实为 {len}", label(f)),
                    );
                }
                if dt.halfwidth_text
                    && let Some((i, c)) = first_fullwidth(&text)
                {
                    bad(
                        "halfwidth",
                        format!(
                            "{} 第 {} 个字符“{c}”（U+{:04X}）是全角字符：平台不接受除“（”和“）”之外的全角字符，请改为半角",
                            label(f),
                            i + 1,
                            c as u32
                        ),
                    );
                }
            }
        }
        if f.code_set.is_none() && f.check.is_none() && f.id_type_field.is_none() {
            continue;
        }
        let parts: Vec<&str> = if f.multi {
            text.split('^').collect()
        } else {
            vec![&text]
        };
        if let Some(cs_id) = &f.code_set
            && let Some(cs) = platform.codesets.get(cs_id)
        {
            for p in &parts {
                if !cs.contains(p) {
                    bad(
                        "code_set",
                        format!(
                            "{} 的值 '{p}' 不在代码集“{}”（{}）中",
                            label(f),
                            cs.name,
                            cs.id
                        ),
                    );
                }
            }
        }
        match f.check {
            Some(Check::Uscc) => {
                for p in &parts {
                    if let Err(e) = checkdigit::uscc(p) {
                        bad(
                            "uscc_check",
                            format!("{} 的统一社会信用代码 '{p}' 无效：{e}", label(f)),
                        );
                    }
                }
            }
            Some(Check::Idcard) => {
                for p in &parts {
                    if let Err(e) = checkdigit::id_card(p) {
                        bad(
                            "idcard_check",
                            format!("{} 的身份证号码 '{}' 无效：{e}", label(f), mask_value(p)),
                        );
                    }
                }
            }
            None => {}
        }
        if let Some(type_field) = &f.id_type_field {
            let types = dt
                .fields
                .iter()
                .position(|x| &x.code == type_field)
                .and_then(&get)
                .map(value_text)
                .unwrap_or_default();
            let types: &str = &types;
            let types: Vec<&str> = if types.is_empty() {
                vec![]
            } else {
                types.split('^').collect()
            };
            let numbers: Vec<&str> = text.split('^').collect();
            if types.len() != numbers.len() {
                bad(
                    "pairing",
                    format!(
                        "{} 有 {} 个证件号码，而 {type_field} 有 {} 个证件类型，应一一对应（用 ^ 分隔）",
                        label(f),
                        numbers.len(),
                        types.len()
                    ),
                );
                continue;
            }
            for (i, (t, n)) in types.iter().zip(&numbers).enumerate() {
                let nth = i + 1;
                if *t == ID_CARD_TYPE
                    && let Err(e) = checkdigit::id_card(n)
                {
                    bad(
                        "idcard_check",
                        format!(
                            "{} 第 {nth} 个证件（居民身份证）号码 '{}' 无效：{e}",
                            label(f),
                            mask_value(n)
                        ),
                    );
                }
                if *t == USCC_TYPE
                    && let Err(e) = checkdigit::uscc(n)
                {
                    bad(
                        "uscc_check",
                        format!(
                            "{} 第 {nth} 个证件（统一社会信用代码）'{n}' 无效：{e}",
                            label(f)
                        ),
                    );
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Catalog;
    use serde_json::json;

    fn good_accept() -> serde_json::Map<String, Json> {
        // Shared with the simulator's end-to-end test.
        serde_json::from_str(include_str!("../tests/fixtures/accept_record.json")).unwrap()
    }

    #[test]
    fn table() {
        let cat = Catalog::load(None).unwrap();
        let p = cat.platform("gdzw").unwrap();
        let dt = &p.data_types["accept"];
        assert_eq!(validate(&good_accept(), dt, p, LengthUnit::Chars), vec![]);

        let cases: Vec<(&str, Json, &str, &str)> = vec![
            ("TaskName", Json::Null, "TaskName", "required"),
            ("ApplyDate", json!("2019-06-20"), "ApplyDate", "datetime"),
            (
                "ApplyDate",
                json!("2019-02-30 10:00:00"),
                "ApplyDate",
                "datetime",
            ),
            ("TaskVersion", json!("v1"), "TaskVersion", "integer"),
            (
                "TaskVersion",
                json!(12345678901i64),
                "TaskVersion",
                "max_length",
            ),
            ("ApplyerType", json!("7"), "ApplyerType", "code_set"),
            (
                "ApplyerPageType",
                json!("111^1"),
                "ApplyerPageCode",
                "pairing",
            ),
            (
                "ApplyerPageCode",
                json!("610431198603210048"),
                "ApplyerPageCode",
                "idcard_check",
            ),
            (
                "OrgCode",
                json!("11620000MB199916XA"),
                "OrgCode",
                "uscc_check",
            ),
            ("ZipCode", json!("5100000"), "ZipCode", "max_length"),
            ("Cd_Operation", json!("X"), "Cd_Operation", "code_set"),
        ];
        for (field, value, want_field, want_rule) in cases {
            let mut r = good_accept();
            r.insert(field.to_string(), value.clone());
            let v = validate(&r, dt, p, LengthUnit::Chars);
            assert!(
                v.iter()
                    .any(|x| x.field == want_field && x.rule == want_rule),
                "{field}={value}: want {want_field}/{want_rule}, got {v:?}"
            );
        }
    }

    #[test]
    fn multi_certificates_checked_pairwise_and_masked() {
        let cat = Catalog::load(None).unwrap();
        let p = cat.platform("gdzw").unwrap();
        let dt = &p.data_types["accept"];
        let mut r = good_accept();
        r.insert("ApplyerPageType".into(), json!("111^1^414"));
        r.insert(
            "ApplyerPageCode".into(),
            json!("610431198603210047^91620100296583830Q^E12345678"),
        );
        assert_eq!(validate(&r, dt, p, LengthUnit::Chars), vec![]);
        r.insert(
            "ApplyerPageCode".into(),
            json!("610431198603210047^91620100296583830R^E12345678"),
        );
        let v = validate(&r, dt, p, LengthUnit::Chars);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].message.contains("第 2 个"));
        r.insert(
            "ApplyerPageCode".into(),
            json!("610431198603210048^91620100296583830Q^E12345678"),
        );
        let v = validate(&r, dt, p, LengthUnit::Chars);
        assert!(
            !v[0].message.contains("610431198603210048"),
            "ID must be masked: {}",
            v[0].message
        );
    }

    #[test]
    fn gansu_rules() {
        let cat = Catalog::load(None).unwrap();
        let p = cat.platform("gansu").unwrap();
        let dt = &p.data_types["cclw_jjl"];
        let good: serde_json::Map<String, Json> = serde_json::from_value(json!({
            "xy10101001": "甘肃某物流有限公司（兰州分公司）",
            "xy10101002": "91620100296583830Q",
            "xy501001": "2026-10-01",
            "yx501002": 1200.0,
            "xy501003": 35.5,
            "xy501004": 9800.25,
            "xy501005": 3100,
            "xy501006": "6201000000000",
        }))
        .unwrap();
        assert_eq!(validate(&good, dt, p, LengthUnit::Chars), vec![]);
        let cases: Vec<(&str, Json, &str)> = vec![
            ("xy10101001", Json::Null, "required"),
            ("xy10101001", json!("甘肃某物流，有限公司"), "halfwidth"),
            ("xy10101001", json!("甘肃某物流〔2022〕"), "halfwidth"),
            ("xy10101001", json!("甘肃某物流　公司"), "halfwidth"),
            ("xy501006", json!("６２０１"), "halfwidth"),
            ("xy10101002", json!("91620100296583830R"), "uscc_check"),
            ("xy501001", json!("2026-13-01"), "date"),
            ("xy501001", json!("2026年10月"), "date"),
            ("yx501002", json!("一千"), "number"),
            ("xy501005", Json::Null, "required"),
        ];
        for (field, value, rule) in cases {
            let mut r = good.clone();
            r.insert(field.to_string(), value.clone());
            let v = validate(&r, dt, p, LengthUnit::Chars);
            assert!(
                v.len() == 1 && v[0].field == field && v[0].rule == rule,
                "{field}={value}: want {rule}, got {v:?}"
            );
        }
        let mut r = good.clone();
        r.insert("xy10101001".into(), json!("某公司，兰州"));
        let m = &validate(&r, dt, p, LengthUnit::Chars)[0].message;
        assert!(m.contains("第 4 个字符“，”") && m.contains("U+FF0C"), "{m}");
        // The Guangdong types do not carry the rule.
        let g = cat.platform("gdzw").unwrap();
        let mut a = good_accept();
        a.insert("TaskName".into(), json!("食品经营许可，变更"));
        assert_eq!(
            validate(&a, &g.data_types["accept"], g, LengthUnit::Chars),
            vec![]
        );
    }

    #[test]
    fn length_units() {
        let cat = Catalog::load(None).unwrap();
        let p = cat.platform("gdzw").unwrap();
        let dt = &p.data_types["accept"];
        let mut r = good_accept();
        // 34 Chinese characters: 34 chars but 102 UTF-8 bytes; ApplyerName is String(100).
        r.insert("ApplyerName".into(), json!("张".repeat(34)));
        assert_eq!(validate(&r, dt, p, LengthUnit::Chars), vec![]);
        assert_eq!(validate(&r, dt, p, LengthUnit::Bytes)[0].rule, "max_length");
    }

    #[test]
    fn spec_dates_and_times_by_hand_agree_with_the_calendar() {
        for (s, date, datetime) in [
            ("2019-06-20", true, false),
            ("2024-02-29", true, false),
            ("2023-02-29", false, false),
            ("2019-13-01", false, false),
            ("2019-00-10", false, false),
            ("2019-06-31", false, false),
            ("2019-6-20", false, false),
            ("2019/06/20", false, false),
            ("２０１９-06-20", false, false),
            ("2019-06-20 16:24:36", false, true),
            ("2019-06-20 23:59:59", false, true),
            ("2019-06-20 24:00:00", false, false),
            ("2019-06-20 16:60:00", false, false),
            ("2019-06-20 16:24:60", false, false),
            ("2019-06-20T16:24:36", false, false),
            ("2019-06-20 16:24:3", false, false),
            ("2019-06-20 16:24:36.5", false, false),
            ("2019-02-30 00:00:00", false, false),
            ("", false, false),
        ] {
            assert_eq!(is_spec_date(s), date, "date {s:?}");
            assert_eq!(is_spec_datetime(s), datetime, "datetime {s:?}");
            // The hand-written checks accept exactly what chrono accepts in the strict forms.
            let by_chrono = chrono::NaiveDateTime::parse_from_str(s, crate::timefmt::SPEC_DATETIME)
                .is_ok_and(|t| crate::timefmt::spec_string(&t) == s);
            assert_eq!(is_spec_datetime(s), by_chrono, "chrono {s:?}");
        }
    }
}
