//! Sample rows that pass the catalog's own rules: a valid value for every field a department
//! supplies. Pure (no I/O); the demo, the benchmark, the end-to-end tests and the `validate`
//! tests build their rows from here, so a catalog change shows up in all of them at once.

use super::{Check, DataType, Field, FieldType, Format, PIPELINE_FIELDS, Platform};

/// The seven Guangdong data types that carry records (all but the reconciliation type).
pub const GDZW_TYPES: [&str; 7] = [
    "accept",
    "process",
    "result",
    "specialprocedure",
    "material",
    "correction",
    "receive",
];

/// Sample unit: the valid 统一社会信用代码 printed in the Gansu spec.
pub const SAMPLE_UNIT: &str = "11620000MB199916XB";
/// A valid 身份证号 (GB 11643 check digit).
pub const SAMPLE_ID: &str = "610431198603210047";

/// A sample 31-character 实施编码 (the start of 办件编号 and 业务办理项编码).
const SAMPLE_TASK_CODE: &str = "11440100MB2C12345X4440100001000";

/// A value for one change-table column. `db::tools` writes it as a literal of the backend's
/// dialect; the tests compare what arrives upstream with it.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Null,
    Text(String),
    Int(i64),
    Num(f64),
}

/// Fields a change table carries: all but those qianzhi supplies itself (Cd_*, a derived
/// RowGuid, and the reporting unit's ProData* identity from `[unit]`).
pub fn sample_columns(dt: &DataType) -> impl Iterator<Item = &Field> {
    dt.fields.iter().filter(|f| {
        let c = f.code.as_str();
        !PIPELINE_FIELDS.contains(&c) && c != "RowGuid" && !c.starts_with("ProData")
    })
}

/// A valid value for every field of `sample_columns(dt)`, varied by `i`.
pub fn sample_fields(p: &Platform, dt: &DataType, i: i64) -> Vec<(String, Lit)> {
    sample_columns(dt)
        .map(|f| (f.code.clone(), sample_value(p, f, i)))
        .collect()
}

fn sample_value(p: &Platform, f: &Field, i: i64) -> Lit {
    let max = f.max_len.unwrap_or(50) as usize;
    if f.check == Some(Check::Uscc) {
        return Lit::Text(SAMPLE_UNIT.into());
    }
    if f.id_type_field.is_some() {
        return Lit::Text(SAMPLE_ID.into());
    }
    if f.code_set.as_deref() == Some("A.2") {
        return Lit::Text("111".into());
    }
    if let Some(cs) = &f.code_set {
        // Stable but varied choice among the code set's codes.
        return match p.codesets.get(cs) {
            Some(set) if !set.codes.is_empty() => {
                Lit::Text(set.codes[(i as usize) % set.codes.len()].0.clone())
            }
            _ => Lit::Text("1".into()),
        };
    }
    match f.ty {
        FieldType::Datetime => Lit::Text(format!("2026-11-{:02} 09:{:02}:00", 1 + i % 20, i % 60)),
        FieldType::Date => Lit::Text(format!("2026-11-{:02}", 1 + i % 20)),
        FieldType::Int => Lit::Int(1 + i % 9),
        FieldType::Number => Lit::Num(100.5 + (i % 10) as f64),
        FieldType::String => Lit::Text(sample_text(f, max, i)),
    }
}

fn sample_text(f: &Field, max: usize, i: i64) -> String {
    let (code, name) = (f.code.as_str(), f.name.as_str());
    let s = match f.format {
        Some(Format::RegionCode) => "440100".to_string(),
        Some(Format::ProjectNo) => format!("{SAMPLE_TASK_CODE}20261120{:04}", i % 10_000),
        Some(Format::TaskHandleItem) => format!("{SAMPLE_TASK_CODE}{:02}", 1 + i % 99),
        Some(Format::Currency) => "CNY".to_string(),
        Some(Format::ProjectCo) => format!("2026-440100-00-00-{:06}", i % 1_000_000),
        Some(Format::Url) => format!("https://ywxt.example.gov.cn/detail/{i}"),
        Some(Format::JsonObject) => format!(r#"{{"id":{i}}}"#),
        Some(Format::Uuid) => uuid::Uuid::from_u128(i as u128).to_string(),
        None if code.contains("Mobile") => "13812345678".to_string(),
        None if code == "ZipCode" => "510000".to_string(),
        None if max <= 5 => "1".to_string(),
        None => {
            let base = if name.is_empty() { code } else { name };
            format!("{base}{i}")
        }
    };
    s.chars().take(max).collect()
}

/// Replaces the value of `code`, if the row has that field.
pub fn set_field(fields: &mut [(String, Lit)], code: &str, v: Lit) {
    if let Some(slot) = fields.iter_mut().find(|(c, _)| c == code) {
        slot.1 = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Catalog;

    /// The sample columns leave out exactly what qianzhi fills in itself.
    #[test]
    fn sample_columns_skip_what_qianzhi_supplies() {
        let cat = Catalog::load(None).unwrap();
        let dt = cat.data_type("gdzw", "accept").unwrap();
        let cols: Vec<&str> = sample_columns(dt).map(|f| f.code.as_str()).collect();
        for skipped in [
            "Cd_Operation",
            "Cd_Time",
            "Cd_Batch",
            "RowGuid",
            "ProDataOrgCode",
        ] {
            assert!(dt.field(skipped).is_some(), "{skipped} is an accept field");
            assert!(
                !cols.contains(&skipped),
                "{skipped} must not be a sample column"
            );
        }
        assert!(cols.contains(&"ApplyerPageCode"));
    }

    /// Rows differ by `i` where the field allows it, and are stable for the same `i`.
    #[test]
    fn sample_rows_are_stable_and_varied() {
        let cat = Catalog::load(None).unwrap();
        let p = cat.platform("gdzw").unwrap();
        let dt = &p.data_types["accept"];
        assert_eq!(sample_fields(p, dt, 3), sample_fields(p, dt, 3));
        let (a, b) = (sample_fields(p, dt, 1), sample_fields(p, dt, 2));
        let project_no = |r: &[(String, Lit)]| r.iter().find(|(c, _)| c == "ProjectNo").cloned();
        assert_ne!(project_no(&a), project_no(&b));
        let mut changed = a.clone();
        set_field(&mut changed, "TaskName", Lit::Null);
        set_field(&mut changed, "NoSuchField", Lit::Int(1));
        assert_eq!(changed.len(), a.len());
        assert_eq!(
            changed.iter().find(|(c, _)| c == "TaskName").unwrap().1,
            Lit::Null
        );
    }
}
