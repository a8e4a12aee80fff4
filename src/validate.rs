//! Pure validation of a mapped record against its data type: required (also when another field
//! makes it so), type, length, code set, check digits and the formats the spec states in words.
//! Each failure names the field and the rule so a DBA can fix the source row.

use serde_json::Value as Json;

use crate::checkdigit;
use crate::config::LengthUnit;
use crate::mask::mask_value;
use crate::schema::{
    Check, DataType, Field, FieldRules, FieldType, FormatRule, Platform, When, WhenTest,
};
use crate::value::Field as FieldValue;

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
    Label(f).to_string()
}

/// A field as messages name it: code and name. Written only when a message is, not for
/// every checked value (building it up front showed up in profiles).
struct Label<'f>(&'f Field);

impl std::fmt::Display for Label<'_> {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let f = self.0;
        if f.name.is_empty() {
            out.write_str(&f.code)
        } else {
            write!(out, "{}（{}）", f.code, f.name)
        }
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

/// No value for `required_if` and its conditions: null, or text of spaces only (the request
/// format sends an empty optional field as "").
fn is_blank(v: &FieldValue) -> bool {
    match v {
        FieldValue::Null => true,
        // Text ending in a character other than white space is not blank: its last byte is
        // looked at (every optional field of every record asks) before the text is trimmed.
        FieldValue::Text(s) => !crate::value::ends_in_non_space(s) && s.trim().is_empty(),
        _ => false,
    }
}

/// The digits that name a division's area: trailing all-zero levels dropped (levels end after
/// digit 2, 4, 6, 9 and 12). 440000 → 44, 440100 → 4401, 440106 → 440106, 440106001000 → 440106001.
fn area_prefix(code: &str) -> &str {
    [2, 4, 6, 9, 12]
        .into_iter()
        .find(|&n| n <= code.len() && code.as_bytes()[n..].iter().all(|&b| b == b'0'))
        .map_or(code, |n| &code[..n])
}

fn is_region_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The `^` parts of a value that are in `codes` (the whole value for a single-value field).
fn matching_part<'t>(text: &'t str, multi: bool, codes: &[String]) -> Option<&'t str> {
    let is_code = |p: &&str| codes.iter().any(|c| c == p);
    if multi {
        text.split('^').find(is_code)
    } else {
        Some(text).filter(is_code)
    }
}

/// Whether a `required_if` condition holds for the record.
fn holds<'a>(w: &When, dt: &DataType, get: &impl Fn(usize) -> Option<&'a FieldValue>) -> bool {
    let Some(v) = get(w.at).filter(|v| !is_blank(v)) else {
        return false;
    };
    match &w.test {
        WhenTest::Present => true,
        WhenTest::In(codes) => {
            matching_part(&value_text(v), dt.fields[w.at].multi, codes).is_some()
        }
        WhenTest::Nonzero => match v {
            FieldValue::Number(n) => n.as_f64() != Some(0.0),
            // Text that is no number is not 0; the field's own type check reports it.
            other => value_text(other).trim().parse::<f64>().ok() != Some(0.0),
        },
        WhenTest::OutsideAreaOf(area_at) => {
            let Some(area) = get(*area_at).filter(|a| !is_blank(a)) else {
                return false;
            };
            let (code, area) = (value_text(v), value_text(area));
            is_region_digits(&code)
                && is_region_digits(&area)
                && !code.starts_with(area_prefix(&area))
        }
    }
}

/// The condition in words, for the message of a `required_if` failure.
fn describe<'a>(
    w: &When,
    dt: &DataType,
    platform: &Platform,
    get: &impl Fn(usize) -> Option<&'a FieldValue>,
) -> String {
    let other = &dt.fields[w.at];
    let text = get(w.at).map(value_text).unwrap_or_default();
    match &w.test {
        WhenTest::Present => format!("{} 有值", label(other)),
        WhenTest::In(codes) => {
            let part = matching_part(&text, other.multi, codes).unwrap_or(&text);
            let meaning = other
                .code_set
                .as_ref()
                .and_then(|id| platform.codesets.get(id))
                .and_then(|cs| cs.codes.iter().find(|(c, _)| c == part))
                .map(|(_, m)| format!("（{m}）"))
                .unwrap_or_default();
            format!("{} 为 '{part}'{meaning}", label(other))
        }
        WhenTest::Nonzero => format!("{} 为 {text}（不为 0）", label(other)),
        WhenTest::OutsideAreaOf(area_at) => {
            let area = get(*area_at).map(value_text).unwrap_or_default();
            format!(
                "{} '{text}' 不在 {} '{area}' 的区域内",
                label(other),
                label(&dt.fields[*area_at])
            )
        }
    }
}

/// `yyyyMMdd` naming a real calendar day.
fn is_compact_date(b: &[u8]) -> bool {
    b.len() == 8
        && matches!(
            (digits(&b[0..4]), digits(&b[4..6]), digits(&b[6..8])),
            (Some(y), Some(m), Some(d)) if chrono::NaiveDate::from_ymd_opt(y as i32, m, d).is_some()
        )
}

fn is_uuid(s: &str, simple_form: bool) -> bool {
    let b = s.as_bytes();
    let hex = |r: &[u8]| r.iter().all(u8::is_ascii_hexdigit);
    (b.len() == 36
        && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
        && hex(&b[..8])
        && hex(&b[9..13])
        && hex(&b[14..18])
        && hex(&b[19..23])
        && hex(&b[24..]))
        || (simple_form && b.len() == 32 && hex(b))
}

/// Length of the 实施编码 that 办件编号 and 业务办理项编码 start with (表3–表15).
const TASK_CODE_LEN: usize = 31;

/// 办件编号: 31-character 实施编码, 申请日期 YYYYMMDD, 4-character 顺序号 of 0-9, a-z, A-Z.
fn project_no_problem(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let n = TASK_CODE_LEN;
    if !s.is_ascii() || b.len() != n + 12 {
        return Some(format!("共 {} 个字符，应为 43", s.chars().count()));
    }
    if !b[..n].iter().all(u8::is_ascii_alphanumeric) {
        return Some("前 31 位实施编码只能是数字和字母".into());
    }
    if !is_compact_date(&b[n..n + 8]) {
        return Some(format!(
            "第 32–39 位 '{}' 不是有效的申请日期 YYYYMMDD",
            &s[n..n + 8]
        ));
    }
    if !b[n + 8..].iter().all(u8::is_ascii_alphanumeric) {
        return Some(format!(
            "末 4 位顺序号 '{}' 只能是 0-9、a-z、A-Z",
            &s[n + 8..]
        ));
    }
    None
}

/// 业务办理项编码: 31-character 实施编码 and a 2-digit 业务项代码 01–99.
fn task_handle_item_problem(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let n = TASK_CODE_LEN;
    if !s.is_ascii() || b.len() != n + 2 {
        return Some(format!("共 {} 个字符，应为 33", s.chars().count()));
    }
    if !b[..n].iter().all(u8::is_ascii_alphanumeric) {
        return Some("前 31 位实施编码只能是数字和字母".into());
    }
    if !matches!(digits(&b[n..]), Some(1..=99)) {
        return Some(format!("末 2 位业务项代码 '{}' 应为 01~99", &s[n..]));
    }
    None
}

/// A complete URL: an accepted scheme, "://", a host, no white space.
fn is_url(s: &str, schemes: &[String]) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    schemes.iter().any(|x| x.eq_ignore_ascii_case(scheme))
        && !host.is_empty()
        && !has_white_space(s)
}

/// `s.chars().any(char::is_whitespace)`, byte by byte for ASCII text (URLs nearly always
/// are), where only 0x09-0x0D and the space are white space.
fn has_white_space(s: &str) -> bool {
    if s.is_ascii() {
        s.bytes().any(|b| matches!(b, b' ' | 0x09..=0x0D))
    } else {
        s.chars().any(char::is_whitespace)
    }
}

/// Why a present value breaks its field's format, or None. The message quotes the value only
/// for codes; URLs and JSON data may carry personal details.
fn format_problem(f: &Field, rule: &FormatRule, text: &str, platform: &Platform) -> Option<String> {
    let l = Label(f);
    match rule {
        FormatRule::Uuid { simple_form } => (!is_uuid(text, *simple_form)).then(|| {
            format!(
                "{l} 的值 '{text}' 不是 GB/T 17969.8-2010 规定的 UUID（形如 4d239bbe-781c-49d3-bfad-6e13ac738f4d{}）",
                if *simple_form { "，或不带连字符的 32 位十六进制数" } else { "" }
            )
        }),
        FormatRule::ProjectNo => project_no_problem(text).map(|why| {
            format!("{l} 的值 '{text}' 不是 31 位实施编码 + 8 位申请日期 + 4 位顺序号组成的办件编号：{why}")
        }),
        FormatRule::TaskHandleItem => task_handle_item_problem(text).map(|why| {
            format!("{l} 的值 '{text}' 不是 31 位实施编码 + 2 位业务项代码组成的业务办理项编码：{why}")
        }),
        FormatRule::RegionCode { lengths } => (!(is_region_digits(text)
            && lengths.contains(&text.len())))
        .then(|| {
            let ls: Vec<String> = lengths.iter().map(usize::to_string).collect();
            format!(
                "{l} 的值 '{text}' 不是 {} 位数字的行政区划代码（GB/T 2260）",
                ls.join(" 或 ")
            )
        }),
        FormatRule::Currency { numeric, code_set } => {
            let b = text.as_bytes();
            let letters = b.len() == 3 && b.iter().all(u8::is_ascii_uppercase);
            let number = *numeric && b.len() == 3 && b.iter().all(u8::is_ascii_digit);
            if !letters && !number {
                return Some(format!(
                    "{l} 的值 '{text}' 不是 GB/T 12406 的三位{}货币代码（如 CNY）",
                    if *numeric { "大写字母或三位数字" } else { "大写字母" }
                ));
            }
            let cs = code_set.as_ref().and_then(|id| platform.codesets.get(id))?;
            (!cs.contains(text)).then(|| {
                format!("{l} 的值 '{text}' 不在代码集“{}”（{}）中", cs.name, cs.id)
            })
        }
        FormatRule::ProjectCo => (!(text.len() == 24
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')))
        .then(|| {
            format!(
                "{l} 的值 '{text}' 不是 24 位的投资项目统一代码（数字、字母和 -，共 {} 个字符）",
                text.chars().count()
            )
        }),
        FormatRule::Url { schemes } => (!is_url(text, schemes)).then(|| {
            format!(
                "{l} 不是完整的 URL：应以 {} 开头，含主机名，不含空白",
                schemes
                    .iter()
                    .map(|x| format!("{x}://"))
                    .collect::<Vec<_>>()
                    .join(" 或 ")
            )
        }),
        FormatRule::JsonObject => {
            let parsed = serde_json::from_str::<serde::de::IgnoredAny>(text);
            match parsed {
                Err(e) => Some(format!("{l} 不是完整的 JSON：{e}")),
                Ok(_) if !text.trim_start().starts_with('{') => {
                    Some(format!("{l} 应为 JSON 对象（键值对，以 {{ 开头）"))
                }
                Ok(_) => None,
            }
        }
    }
}

fn value_text(v: &FieldValue) -> std::borrow::Cow<'_, str> {
    match v {
        FieldValue::Text(s) => std::borrow::Cow::Borrowed(s.as_str()),
        FieldValue::Number(n) => std::borrow::Cow::Owned(n.to_string()),
        FieldValue::Null => std::borrow::Cow::Borrowed("null"),
    }
}

/// Validates a record given as a JSON object keyed by field code (what the platform
/// receives). A value that is no field value (true, an array, an object) is checked as its
/// JSON text.
pub fn validate(
    fields: &serde_json::Map<String, Json>,
    dt: &DataType,
    platform: &Platform,
    unit: LengthUnit,
) -> Vec<Violation> {
    let values: Vec<Option<FieldValue>> = dt
        .fields
        .iter()
        .map(|f| Some(FieldValue::from_json_or_text(fields.get(&f.code)?.clone())))
        .collect();
    validate_present(&values, dt, platform, unit)
}

/// Validates values in the data type's field order where a field may be absent (None).
pub fn validate_present(
    values: &[Option<FieldValue>],
    dt: &DataType,
    platform: &Platform,
    unit: LengthUnit,
) -> Vec<Violation> {
    validate_record(
        |i| values.get(i).and_then(Option::as_ref),
        dt,
        platform,
        unit,
        &Prechecked::default(),
    )
}

/// Fields whose value is the same in every record of a page (the job's constants, the
/// unit's identity, Cd_Time and Cd_Batch) and passed their own checks once: they are not
/// checked again per record (checking the unit's USCC on every row showed up in profiles).
#[derive(Debug, Clone, Default)]
pub struct Prechecked(Vec<bool>);

impl Prechecked {
    /// Checks each shared `(position, value)` once. A value that fails is checked again in
    /// every record, so each record still gets its error rows. A blank value (its field may be
    /// required by another's value) and an ID number (checked against its type field) depend
    /// on the record and are always checked there.
    pub fn new<'a>(
        shared: impl IntoIterator<Item = (usize, &'a FieldValue)>,
        dt: &DataType,
        platform: &Platform,
        unit: LengthUnit,
    ) -> Prechecked {
        let ctx = Ctx { dt, platform, unit };
        let mut skip = vec![false; dt.fields.len()];
        for (i, v) in shared {
            if i >= skip.len() || is_blank(v) || dt.fields[i].id_type_field.is_some() {
                continue;
            }
            let mut found = Vec::new();
            check_field(&ctx, i, v, &|_: usize| None::<&FieldValue>, &mut found);
            skip[i] = found.is_empty();
        }
        Prechecked(skip)
    }

    fn skips(&self, i: usize) -> bool {
        self.0.get(i).copied().unwrap_or(false)
    }
}

/// Validates one record whose values `get` gives by position, skipping the fields checked
/// once in `pre`. The same violations as [`validate`] over the same values.
pub fn validate_record<'a>(
    get: impl Fn(usize) -> Option<&'a FieldValue>,
    dt: &DataType,
    platform: &Platform,
    unit: LengthUnit,
    pre: &Prechecked,
) -> Vec<Violation> {
    let mut out = Vec::new();
    let ctx = Ctx { dt, platform, unit };
    for i in (0..dt.fields.len()).filter(|i| !pre.skips(*i)) {
        check_field(&ctx, i, get(i).unwrap_or(&FieldValue::Null), &get, &mut out);
    }
    out
}

/// What every field check of one record needs besides the value.
struct Ctx<'c> {
    dt: &'c DataType,
    platform: &'c Platform,
    unit: LengthUnit,
}

/// The checks of field `i` with value `v`; `get` gives the record's other values (for
/// `required_if` and the pairing of ID numbers with their types).
fn check_field<'a>(
    ctx: &Ctx<'_>,
    i: usize,
    v: &FieldValue,
    get: &impl Fn(usize) -> Option<&'a FieldValue>,
    out: &mut Vec<Violation>,
) {
    let (dt, platform, unit) = (ctx.dt, ctx.platform, ctx.unit);
    let f = &dt.fields[i];
    static NONE: FieldRules = FieldRules {
        required_if: Vec::new(),
        id_type_at: None,
        format: None,
    };
    let rules = dt.resolved.get(i).unwrap_or(&NONE);
    let mut bad = |rule: &'static str, message: String| {
        out.push(Violation {
            field: f.code.clone(),
            rule,
            message,
        })
    };
    if !f.required
        && is_blank(v)
        && let Some(w) = rules.required_if.iter().find(|w| holds(w, dt, &get))
    {
        bad(
            "required_if",
            format!(
                "{} 没有值，而 {} 时此项必填",
                label(f),
                describe(w, dt, platform, &get)
            ),
        );
    }
    if v.is_null() {
        if f.required {
            bad("required", format!("必填字段 {} 没有值", label(f)));
        }
        return;
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
                return;
            }
        }
        FieldType::Date => {
            if !is_spec_date(&text) {
                bad(
                    "date",
                    format!("{} 的值 '{text}' 不是 yyyy-MM-dd 格式的有效日期", label(f)),
                );
                return;
            }
        }
        FieldType::Int => {
            if !v.is_i64() {
                bad("integer", format!("{} 应为整数，实为 '{text}'", label(f)));
                return;
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
                return;
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
            let too_long = f.max_len.and_then(|max| {
                let len = match unit {
                    LengthUnit::Bytes => text.len(),
                    // At most `max` bytes is at most `max` characters: only longer text is
                    // counted (counting every value showed up in profiles).
                    LengthUnit::Chars if text.len() <= max as usize => return None,
                    LengthUnit::Chars => text.chars().count(),
                };
                (len > max as usize).then_some((max, len))
            });
            if let Some((max, len)) = too_long {
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
            if let Some(rule) = &rules.format
                && !is_blank(v)
                && let Some(message) = format_problem(f, rule, &text, platform)
            {
                bad(rule.format().rule(), message);
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
        return;
    }
    // The `^` parts of a multi-value field, else the whole value.
    let parts = || text.splitn(if f.multi { usize::MAX } else { 1 }, '^');
    if let Some(cs_id) = &f.code_set
        && let Some(cs) = platform.codesets.get(cs_id)
    {
        for p in parts() {
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
            for p in parts() {
                if let Err(e) = checkdigit::uscc(p) {
                    bad(
                        "uscc_check",
                        format!("{} 的统一社会信用代码 '{p}' 无效：{e}", label(f)),
                    );
                }
            }
        }
        Some(Check::Idcard) => {
            for p in parts() {
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
        let types = rules
            .id_type_at
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
            return;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Catalog;
    use serde_json::json;

    /// The ASCII shortcut agrees with `char::is_whitespace` on every ASCII character and on
    /// text with other characters.
    #[test]
    fn white_space_is_found_as_char_is_whitespace_finds_it() {
        for c in (0..=0x7Fu8)
            .map(char::from)
            .chain(['\u{3000}', '\u{a0}', '中'])
        {
            let s = format!("https://a.cn/{c}x");
            assert_eq!(has_white_space(&s), c.is_whitespace(), "U+{:04X}", c as u32);
        }
    }

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

    /// A valid record of a Guangdong data type: the catalog's sample row plus the fields the
    /// pipeline supplies.
    fn good(p: &Platform, t: &str) -> serde_json::Map<String, Json> {
        use crate::schema::sample::Lit;
        let dt = &p.data_types[t];
        let mut m = serde_json::Map::new();
        for (c, lit) in crate::schema::sample::sample_fields(p, dt, 1) {
            let v = match lit {
                Lit::Null => Json::Null,
                Lit::Text(s) => Json::from(s),
                Lit::Int(i) => Json::from(i),
                Lit::Num(f) => json!(f),
            };
            m.insert(c, v);
        }
        for (c, v) in [
            ("RowGuid", "4d239bbe-781c-49d3-bfad-6e13ac738f4d"),
            ("Cd_Operation", "I"),
            ("Cd_Time", "2026-11-20 10:00:00"),
            ("Cd_Batch", "11620000MB199916XB2026112000001"),
            ("ProDataRegionCode", "440100"),
            ("ProDataOrgCode", "11620000MB199916XB"),
            ("ProDataOrgName", "某局"),
            ("SystemName", "业务系统"),
        ] {
            if dt.field(c).is_some() {
                m.insert(c.into(), v.into());
            }
        }
        assert_eq!(validate(&m, dt, p, LengthUnit::Chars), vec![], "{t} sample");
        m
    }

    /// Applies the changes to a valid record and returns the violations.
    fn check_with(cat: &Catalog, t: &str, changes: &[(&str, Json)]) -> Vec<Violation> {
        let p = cat.platform("gdzw").unwrap();
        let mut r = good(p, t);
        for (k, v) in changes {
            r.insert(k.to_string(), v.clone());
        }
        validate(&r, &p.data_types[t], p, LengthUnit::Chars)
    }

    #[test]
    fn required_if_holds_and_does_not() {
        let cat = Catalog::load(None).unwrap();
        let n = Json::Null;
        // (data type, changes, the required_if failure expected (field, words in its message)).
        type Case<'a> = (&'a str, Vec<(&'a str, Json)>, Option<(&'a str, &'a str)>);
        let cases: Vec<Case> = vec![
            // 表3 Legal: legal-person applicant types, or a 营业执照 among the certificates.
            (
                "accept",
                vec![("ApplyerType", json!("2")), ("Legal", n.clone())],
                Some(("Legal", "ApplyerType（申请人类型） 为 '2'（企业法人）")),
            ),
            (
                "accept",
                vec![("ApplyerType", json!("4")), ("Legal", n.clone())],
                Some(("Legal", "'4'（社会组织法人）")),
            ),
            (
                "accept",
                vec![
                    ("ApplyerType", json!("1")),
                    ("ApplyerPageType", json!("111^821")),
                    (
                        "ApplyerPageCode",
                        json!("610431198603210047^4401012019000123"),
                    ),
                    ("Legal", n.clone()),
                ],
                Some((
                    "Legal",
                    "ApplyerPageType（申请人证件类型） 为 '821'（营业执照）",
                )),
            ),
            (
                "accept",
                vec![
                    ("ApplyerType", json!("1")),
                    ("ApplyerPageType", json!("111")),
                    ("Legal", n.clone()),
                ],
                None,
            ),
            (
                "accept",
                vec![("ApplyerType", json!("6")), ("Legal", n.clone())],
                None,
            ),
            // 表3 BSLYY: both refusals of 表 A.16; a blank string is no value either.
            (
                "accept",
                vec![("SLZTDM", json!("4")), ("BSLYY", n.clone())],
                Some(("BSLYY", "SLZTDM（受理状态代码） 为 '4'（不予受理）")),
            ),
            (
                "accept",
                vec![("SLZTDM", json!("2")), ("BSLYY", json!("  "))],
                Some(("BSLYY", "'2'（不受理）")),
            ),
            (
                "accept",
                vec![("SLZTDM", json!("1")), ("BSLYY", n.clone())],
                None,
            ),
            // 表3 CatalogCode with TaskCode.
            (
                "accept",
                vec![
                    ("TaskCode", json!("11440100MB2C12345X4440100001000")),
                    ("CatalogCode", n.clone()),
                ],
                Some(("CatalogCode", "TaskCode（实施编码） 有值")),
            ),
            (
                "accept",
                vec![("TaskCode", n.clone()), ("CatalogCode", n.clone())],
                None,
            ),
            (
                "accept",
                vec![
                    ("TaskCode", n.clone()),
                    ("CatalogCode", json!("000105410000")),
                ],
                None,
            ),
            // 表3 TargetOrgName: business outside the reporting department's area.
            (
                "accept",
                vec![
                    ("RegionCode", json!("440300")),
                    ("TargetOrgName", n.clone()),
                ],
                Some((
                    "TargetOrgName",
                    "RegionCode（业务发生所在行政区划代码） '440300' 不在 ProDataRegionCode（数据提供部门行政区划代码） '440100' 的区域内",
                )),
            ),
            (
                "accept",
                vec![
                    ("RegionCode", json!("450100")),
                    ("ProDataRegionCode", json!("440000")),
                    ("TargetOrgName", n.clone()),
                ],
                Some(("TargetOrgName", "'450100'")),
            ),
            (
                "accept",
                vec![
                    ("RegionCode", json!("440106")),
                    ("TargetOrgName", n.clone()),
                ],
                None,
            ),
            (
                "accept",
                vec![
                    ("RegionCode", json!("440106001000")),
                    ("TargetOrgName", n.clone()),
                ],
                None,
            ),
            (
                "accept",
                vec![
                    ("RegionCode", json!("440300")),
                    ("ProDataRegionCode", json!("440000")),
                    ("TargetOrgName", n.clone()),
                ],
                None,
            ),
            (
                "accept",
                vec![
                    ("RegionCode", json!("440300")),
                    ("TargetOrgName", json!("深圳市某局")),
                ],
                None,
            ),
            // 表5 HandleExplain once the step has ended.
            (
                "process",
                vec![
                    ("EventEndTime", json!("2019-06-21 18:17:50")),
                    ("HandleExplain", n.clone()),
                ],
                Some(("HandleExplain", "EventEndTime（环节结束时间） 有值")),
            ),
            (
                "process",
                vec![("EventEndTime", n.clone()), ("HandleExplain", n.clone())],
                None,
            ),
            // 表9 EndTime once there is a result; the unit of a charge other than 0.
            (
                "specialprocedure",
                vec![("Result", json!("准予延长")), ("EndTime", n.clone())],
                Some(("EndTime", "Result（特别程序结果） 有值")),
            ),
            (
                "specialprocedure",
                vec![("Result", n.clone()), ("EndTime", n.clone())],
                None,
            ),
            (
                "specialprocedure",
                vec![("Charge", json!(40.0)), ("MonetaryUnitCode", n.clone())],
                Some((
                    "MonetaryUnitCode",
                    "Charge（特别程序收费金额） 为 40.0（不为 0）",
                )),
            ),
            (
                "specialprocedure",
                vec![("Charge", json!(0.0)), ("MonetaryUnitCode", n.clone())],
                None,
            ),
            (
                "specialprocedure",
                vec![("Charge", json!(0)), ("MonetaryUnitCode", n.clone())],
                None,
            ),
            (
                "specialprocedure",
                vec![("Charge", n.clone()), ("MonetaryUnitCode", n.clone())],
                None,
            ),
            // 表11 GetMaterialURL for uploaded files and licence-library references.
            (
                "material",
                vec![("GetType", json!("2")), ("GetMaterialURL", n.clone())],
                Some((
                    "GetMaterialURL",
                    "GetType（收取方式） 为 '2'（上传电子文件）",
                )),
            ),
            (
                "material",
                vec![("GetType", json!("3")), ("GetMaterialURL", n.clone())],
                Some(("GetMaterialURL", "'3'（证照库引用）")),
            ),
            (
                "material",
                vec![("GetType", json!("1")), ("GetMaterialURL", n.clone())],
                None,
            ),
        ];
        for (t, changes, want) in cases {
            let v = check_with(&cat, t, &changes);
            match want {
                Some((field, words)) => {
                    assert!(
                        v.len() == 1
                            && v[0].field == field
                            && v[0].rule == "required_if"
                            && v[0].message.contains(words)
                            && v[0].message.contains("时此项必填"),
                        "{t} {changes:?}: want {field}/required_if with '{words}', got {v:?}"
                    );
                }
                None => assert_eq!(v, vec![], "{t} {changes:?}"),
            }
        }
    }

    #[test]
    fn formats_the_spec_states_in_words() {
        let cat = Catalog::load(None).unwrap();
        const TASK: &str = "11440100MB2C12345X4440100001000";
        // (data type, field, value, expected rule or None when valid).
        let cases: Vec<(&str, &str, String, Option<&str>)> = vec![
            (
                "accept",
                "RowGuid",
                "4d239bbe-781c-49d3-bfad-6e13ac738f4d".into(),
                None,
            ),
            (
                "process",
                "RowGuid",
                "4D239BBE-781C-49D3-BFAD-6E13AC738F4D".into(),
                None,
            ),
            (
                "accept",
                "RowGuid",
                "4d239bbe781c49d3bfad6e13ac738f4d".into(),
                Some("uuid"),
            ),
            (
                "accept",
                "RowGuid",
                "1111-1111-1111-111111111111111111111111d".into(),
                Some("uuid"),
            ),
            (
                "receive",
                "RowGuid",
                "4d239bbe-781c-49d3-bfad-6e13ac738f4g".into(),
                Some("uuid"),
            ),
            ("accept", "ProjectNo", format!("{TASK}201906200001"), None),
            ("result", "ProjectNo", format!("{TASK}20240229aZ9z"), None),
            (
                "accept",
                "ProjectNo",
                format!("{TASK}2019062000001"),
                Some("project_no"),
            ),
            (
                "accept",
                "ProjectNo",
                format!("{TASK}201902300001"),
                Some("project_no"),
            ),
            (
                "material",
                "ProjectNo",
                format!("{TASK}2019062000_1"),
                Some("project_no"),
            ),
            (
                "accept",
                "ProjectNo",
                format!("{}-201906200001", &TASK[..30]),
                Some("project_no"),
            ),
            ("accept", "ProjectNo", "P1".into(), Some("project_no")),
            ("accept", "TaskHandleItem", format!("{TASK}01"), None),
            ("accept", "TaskHandleItem", format!("{TASK}99"), None),
            (
                "accept",
                "TaskHandleItem",
                format!("{TASK}00"),
                Some("task_handle_item"),
            ),
            (
                "accept",
                "TaskHandleItem",
                format!("{TASK}1a"),
                Some("task_handle_item"),
            ),
            (
                "accept",
                "TaskHandleItem",
                TASK.into(),
                Some("task_handle_item"),
            ),
            ("accept", "RegionCode", "440106".into(), None),
            ("accept", "RegionCode", "440106001000".into(), None),
            ("process", "RegionCode", "44010".into(), Some("region_code")),
            (
                "result",
                "HandleRegionCode",
                "4401060".into(),
                Some("region_code"),
            ),
            (
                "correction",
                "AcceptRegionCode",
                "44010a".into(),
                Some("region_code"),
            ),
            (
                "correction",
                "InformRegionCode",
                "４４０１００".into(),
                Some("region_code"),
            ),
            (
                "receive",
                "ReceiveRegionCode",
                "广州市".into(),
                Some("region_code"),
            ),
            (
                "material",
                "ProDataRegionCode",
                "4401".into(),
                Some("region_code"),
            ),
            ("result", "MonetaryUnitCode", "CNY".into(), None),
            ("specialprocedure", "MonetaryUnitCode", "USD".into(), None),
            ("result", "MonetaryUnitCode", "cny".into(), Some("currency")),
            ("result", "MonetaryUnitCode", "156".into(), Some("currency")),
            (
                "specialprocedure",
                "MonetaryUnitCode",
                "11".into(),
                Some("currency"),
            ),
            (
                "specialprocedure",
                "MonetaryUnitCode",
                "元".into(),
                Some("currency"),
            ),
            (
                "accept",
                "ProjectCo",
                "2019-440106-70-03-012345".into(),
                None,
            ),
            (
                "process",
                "ProjectCo",
                "2019-440106-70-03-01234".into(),
                Some("project_co"),
            ),
            (
                "receive",
                "ProjectCo",
                "2019-440106-70-03-01234５".into(),
                Some("project_co"),
            ),
            (
                "accept",
                "DetailURL",
                "https://ywxt.example.gov.cn/detail?id=1".into(),
                None,
            ),
            ("accept", "DetailURL", "HTTP://host".into(), None),
            (
                "accept",
                "DetailURL",
                "ywxt.example.gov.cn/detail".into(),
                Some("url"),
            ),
            ("accept", "DetailURL", "ftp://host/x".into(), Some("url")),
            ("accept", "DetailURL", "https:///detail".into(), Some("url")),
            (
                "material",
                "GetMaterialURL",
                "https://host/a b.pdf".into(),
                Some("url"),
            ),
            (
                "accept",
                "ApplyForm",
                r#"{"申请事项":"食品经营许可","份数":2}"#.into(),
                None,
            ),
            ("accept", "ApplyForm", " {} ".into(), None),
            ("accept", "ApplyForm", "[1, 2]".into(), Some("json_object")),
            (
                "accept",
                "ApplyForm",
                r#"{"a": "#.into(),
                Some("json_object"),
            ),
            (
                "receive",
                "ResultCetrData",
                "证照已领取".into(),
                Some("json_object"),
            ),
            // An empty optional value (the request format's "") is no value, not a bad one.
            ("accept", "DetailURL", "".into(), None),
            ("accept", "ProjectCo", " ".into(), None),
        ];
        for (t, field, value, want) in cases {
            let v = check_with(&cat, t, &[(field, Json::from(value.clone()))]);
            match want {
                Some(rule) => assert!(
                    v.len() == 1 && v[0].field == field && v[0].rule == rule,
                    "{t}.{field}={value:?}: want {rule}, got {v:?}"
                ),
                None => assert_eq!(v, vec![], "{t}.{field}={value:?}"),
            }
        }
    }

    #[test]
    fn format_messages_quote_codes_but_not_urls_or_json() {
        let cat = Catalog::load(None).unwrap();
        let m = |field: &str, value: &str| {
            check_with(&cat, "accept", &[(field, json!(value))])[0]
                .message
                .clone()
        };
        let pn = m("ProjectNo", "11440100MB2C12345X4440100001000201902300001");
        assert!(pn.contains("'20190230' 不是有效的申请日期"), "{pn}");
        assert!(m("RegionCode", "4401").contains("'4401' 不是 6 或 12 位数字"));
        let url = m("DetailURL", "ywxt/detail?idcard=610431198603210047");
        assert!(
            !url.contains("610431198603210047") && url.contains("https://"),
            "{url}"
        );
        let js = m("ApplyForm", r#"{"姓名":"张三""#);
        assert!(!js.contains("张三") && js.contains("JSON"), "{js}");
    }

    #[test]
    fn area_prefixes() {
        for (code, area) in [
            ("440000", "44"),
            ("440100", "4401"),
            ("440106", "440106"),
            ("440106001000", "440106001"),
            ("440106001002", "440106001002"),
            ("440100000000", "4401"),
        ] {
            assert_eq!(area_prefix(code), area, "{code}");
        }
    }

    /// The strictness settings of rules.toml, changed by an overlay that names only what it
    /// changes; the rest keeps the shipped values.
    #[test]
    fn rules_toml_overlay_changes_strictness() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("gdzw")).unwrap();
        std::fs::write(
            dir.path().join("gdzw/rules.toml"),
            "[uuid]\nsimple_form = true\n[region_code]\nlengths = [6]\n\
             [currency]\nnumeric = true\ncode_set = \"GB12406\"\n\
             [switch]\ncross_region_target = false\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("gdzw/codesets.toml"),
            "[[codeset]]\nid = \"GB12406\"\nname = \"货币代码\"\n\
             codes = [[\"CNY\", \"人民币\"], [\"HKD\", \"港元\"], [\"156\", \"人民币\"]]\n",
        )
        .unwrap();
        let shipped = Catalog::load(None).unwrap();
        let relaxed = Catalog::load(Some(dir.path())).unwrap();
        let rules = |cat: &Catalog, t: &str, changes: &[(&str, Json)]| -> Vec<&'static str> {
            check_with(cat, t, changes).iter().map(|v| v.rule).collect()
        };
        let simple = [("RowGuid", json!("4d239bbe781c49d3bfad6e13ac738f4d"))];
        assert_eq!(rules(&shipped, "accept", &simple), vec!["uuid"]);
        assert_eq!(rules(&relaxed, "accept", &simple), Vec::<&str>::new());
        let twelve = [("RegionCode", json!("440106001000"))];
        assert_eq!(rules(&shipped, "accept", &twelve), Vec::<&str>::new());
        assert_eq!(rules(&relaxed, "accept", &twelve), vec!["region_code"]);
        let cross = [
            ("RegionCode", json!("440300")),
            ("TargetOrgName", Json::Null),
        ];
        assert_eq!(rules(&shipped, "accept", &cross), vec!["required_if"]);
        assert_eq!(rules(&relaxed, "accept", &cross), Vec::<&str>::new());
        for (code, shipped_ok, relaxed_ok) in [
            ("CNY", true, true),
            ("156", false, true),
            ("RMB", true, false),
            ("840", false, false),
        ] {
            let c = [("MonetaryUnitCode", json!(code))];
            assert_eq!(
                rules(&shipped, "result", &c).is_empty(),
                shipped_ok,
                "{code}"
            );
            assert_eq!(
                rules(&relaxed, "result", &c).is_empty(),
                relaxed_ok,
                "{code}"
            );
        }
        // Keys the overlay does not name keep the shipped values.
        let p = relaxed.platform("gdzw").unwrap();
        assert_eq!(
            p.rules.url.as_ref().unwrap().schemes,
            vec!["http".to_string(), "https".to_string()]
        );
        assert_eq!(p.rules.switch.get("charge_unit"), Some(&true));
    }
}
