//! Pure mapping of a source row to a record keyed by the platform's field codes.

use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{JobConfig, NullFields, UnitConfig};
use crate::schema::{DataType, FieldType};
use crate::value::{Field, SourceRow, Value};

pub use crate::schema::PIPELINE_FIELDS;

/// Namespace for derived RowGuids (UUID v5 of "job:key"), fixed forever so they stay stable.
const ROW_GUID_NS: uuid::Uuid = uuid::uuid!("6f1c3a52-2f4e-5b8a-9d07-3c1e0a6b4d21");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Insert,
    Update,
    Delete,
}

impl Op {
    /// Accepts I/U/D and the words INSERT/UPDATE/DELETE, any case.
    pub fn parse(s: &str) -> Option<Op> {
        let s = s.trim();
        [
            ("I", "INSERT", Op::Insert),
            ("U", "UPDATE", Op::Update),
            ("D", "DELETE", Op::Delete),
        ]
        .into_iter()
        .find(|(short, word, _)| s.eq_ignore_ascii_case(short) || s.eq_ignore_ascii_case(word))
        .map(|(_, _, op)| op)
    }
    pub fn code(self) -> &'static str {
        match self {
            Op::Insert => "I",
            Op::Update => "U",
            Op::Delete => "D",
        }
    }
}

/// Where one field's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldSource {
    Column(String),
    Constant(Json),
    /// Set by the pipeline (Cd_Operation, Cd_Time, Cd_Batch).
    Pipeline,
    /// RowGuid derived from job and key.
    DerivedGuid,
    Unsupplied,
}

/// The field -> source plan of one job, resolved once against the source's columns.
#[derive(Debug, Clone)]
pub struct Plan {
    pub job: String,
    pub fields: Vec<(String, FieldType, FieldSource)>,
    pub null_fields: NullFields,
}

pub struct PlanInput<'a> {
    pub job: &'a str,
    pub data_type: &'a DataType,
    pub columns: &'a [String],
    pub map: &'a BTreeMap<String, String>,
    pub constants: &'a BTreeMap<String, toml::Value>,
    pub unit: &'a UnitConfig,
    pub null_fields: NullFields,
}

fn toml_to_json(v: &toml::Value) -> Json {
    match v {
        toml::Value::String(s) => Json::String(s.clone()),
        toml::Value::Integer(i) => Json::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .unwrap_or(Json::Null),
        toml::Value::Boolean(b) => Json::String(if *b { "1" } else { "0" }.into()),
        other => Json::String(other.to_string()),
    }
}

impl Plan {
    /// Precedence: explicit map, constant, a column named like the field, the reporting unit's
    /// own identity, derived RowGuid.
    pub fn resolve(i: PlanInput<'_>) -> Plan {
        let find_col = |name: &str| {
            i.columns
                .iter()
                .find(|c| c.eq_ignore_ascii_case(name))
                .cloned()
        };
        let unit_default = |code: &str| -> Option<Json> {
            Some(Json::String(match code {
                "ProDataOrgCode" => i.unit.uscc.clone(),
                "ProDataOrgName" => i.unit.name.clone(),
                "ProDataRegionCode" => i.unit.region_code.clone(),
                "SystemName" => i.unit.system_name.clone()?,
                _ => return None,
            }))
        };
        let fields = i
            .data_type
            .fields
            .iter()
            .map(|f| {
                let code = f.code.as_str();
                let src = if PIPELINE_FIELDS.contains(&code) {
                    FieldSource::Pipeline
                } else if let Some(col) = i.map.get(code) {
                    FieldSource::Column(find_col(col).unwrap_or_else(|| col.clone()))
                } else if let Some(c) = i.constants.get(code) {
                    FieldSource::Constant(toml_to_json(c))
                } else if let Some(col) = find_col(code) {
                    FieldSource::Column(col)
                } else if let Some(v) = unit_default(code) {
                    FieldSource::Constant(v)
                } else if code == "RowGuid" {
                    FieldSource::DerivedGuid
                } else {
                    FieldSource::Unsupplied
                };
                (f.code.clone(), f.ty, src)
            })
            .collect::<Vec<_>>();
        Plan {
            job: i.job.to_string(),
            fields,
            null_fields: i.null_fields,
        }
    }

    /// The plan laid over the columns of a page of rows (which share their names), so that
    /// mapping a row neither searches nor compares column names.
    pub fn over(&self, names: &Arc<[String]>) -> RowMap<'_> {
        let at: Vec<Option<usize>> = self
            .fields
            .iter()
            .map(|(_, _, src)| match src {
                FieldSource::Column(c) => names.iter().position(|n| n.eq_ignore_ascii_case(c)),
                _ => None,
            })
            .collect();
        let last_use = at
            .iter()
            .enumerate()
            .map(|(n, i)| i.is_some() && !at[n + 1..].contains(i))
            .collect();
        RowMap {
            plan: self,
            names: names.clone(),
            at,
            last_use,
        }
    }

    /// Per field, the value it has in every record when it is a constant (the unit's
    /// identity, `[job.constants]`), as mapping would make it. Mapping leaves these fields
    /// null in each record: the body writer writes them from here and validation checks them
    /// once (see `upstream::Fields::with_constants`, `validate::Prechecked`).
    pub fn constants(&self) -> Vec<Option<Field>> {
        self.fields
            .iter()
            .map(|(_, _, src)| match src {
                FieldSource::Constant(j) => Some(constant_field(j)).filter(|f| !f.is_null()),
                _ => None,
            })
            .collect()
    }

    pub fn index_of(&self, code: &str) -> Option<usize> {
        self.fields.iter().position(|(c, _, _)| c == code)
    }

    pub fn get<'a>(&self, rec: &'a Record, code: &str) -> Option<&'a Field> {
        rec.values.get(self.index_of(code)?)
    }

    /// The source columns the plan takes values from.
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().filter_map(|(_, _, s)| match s {
            FieldSource::Column(c) => Some(c.as_str()),
            _ => None,
        })
    }

    /// Columns the plan reads that the source does not have.
    pub fn missing_columns(&self, columns: &[String]) -> Vec<String> {
        self.fields
            .iter()
            .filter_map(|(_, _, s)| match s {
                FieldSource::Column(c) if !columns.iter().any(|x| x.eq_ignore_ascii_case(c)) => {
                    Some(c.clone())
                }
                _ => None,
            })
            .collect()
    }
}

/// The columns of `view` a job reads: those its plan (resolved against `view`) maps, and the
/// change time, operation, key and order columns; in the view's order and spelling. A column
/// the view lacks is left out: `check` names it, and reading it would fail the whole query.
pub fn needed_columns(view: &[String], plan: &Plan, job: &JobConfig) -> Vec<String> {
    let wanted: Vec<&str> = plan.columns().chain(job.change_columns()).collect();
    view.iter()
        .filter(|c| wanted.iter().any(|w| w.eq_ignore_ascii_case(c)))
        .cloned()
        .collect()
}

/// A mapped record before Cd_* numbering. `values` follow the plan's field order (the data
/// type's), so no per-row map of field names is built.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub source_key: String,
    pub row_guid: String,
    pub values: Vec<Field>,
}

/// The source key as text: the value itself for one column, a JSON array for several.
pub fn key_text(row: &SourceRow, key: &[String]) -> String {
    let text = |k: &String| row.get(k).and_then(|v| v.to_text()).unwrap_or_default();
    if let [k] = key {
        return text(k);
    }
    let parts: Vec<String> = key.iter().map(text).collect();
    serde_json::to_string(&parts).unwrap_or_default()
}

pub fn derive_row_guid(job: &str, source_key: &str) -> String {
    // "job:key" on the stack when it fits, as it nearly always does: one per row.
    let mut stack = [0u8; 128];
    let mut heap = Vec::new();
    let n = job.len() + 1 + source_key.len();
    let name = if n <= stack.len() {
        &mut stack[..n]
    } else {
        heap.resize(n, 0);
        &mut heap[..]
    };
    name[..job.len()].copy_from_slice(job.as_bytes());
    name[job.len()] = b':';
    name[job.len() + 1..].copy_from_slice(source_key.as_bytes());
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid::Uuid::new_v5(&ROW_GUID_NS, name)
        .hyphenated()
        .encode_lower(&mut text)
        .to_owned()
}

/// A constant (TOML text, number or null) as the field value every record has: text as
/// [`tidy_in_place`] leaves it. Anything else, which TOML constants do not become, is sent as
/// its JSON text rather than dropped.
fn constant_field(j: &Json) -> Field {
    let mut f = Field::from_json_or_text(j.clone());
    tidy_in_place(&mut f);
    f
}

/// Blank text counts as absent (a required field of spaces is still missing); trailing
/// blanks are dropped. Done where the value lies: the hot path of mapping, which would
/// otherwise move every value in and out.
#[inline]
fn tidy_in_place(v: &mut Field) {
    let Field::Text(s) = v else {
        return;
    };
    // Text ending in a character other than white space (nearly all) is neither blank nor
    // has trailing blanks: its last byte is looked at, not the text trimmed.
    if crate::value::ends_in_non_space(s) {
        return;
    }
    let kept = s.trim_end().len();
    if kept == 0 {
        *v = Field::Null;
    } else {
        s.truncate(kept);
    }
}

/// Typed conversion; a value that cannot take the field's type is passed through as text so
/// that validation names it, rather than being dropped here. Text is moved, not copied.
pub fn convert(v: Value, ty: FieldType) -> Field {
    match (ty, v) {
        (_, Value::Null) => Field::Null,
        (FieldType::Datetime, v) => match v.to_naive_datetime() {
            Some(t) => crate::timefmt::spec_string(&t).into(),
            None => as_text(v),
        },
        (FieldType::Date, v) => match v.to_naive_datetime() {
            Some(t) => crate::timefmt::spec_date(t.date()).into(),
            None => as_text(v),
        },
        (FieldType::Int, Value::Int(i)) => Field::from(i),
        (FieldType::Int, Value::Bool(b)) => Field::from(b as i64),
        (FieldType::Int, Value::Float(f)) if f.fract() == 0.0 && f.abs() < 9e15 => {
            Field::from(f as i64)
        }
        (FieldType::Int, v @ (Value::Decimal(_) | Value::Text(_))) => {
            let t = number_text(&v).trim();
            let t = t.strip_suffix(".0").unwrap_or(t);
            match t.parse::<i64>() {
                Ok(i) => Field::from(i),
                Err(_) => as_text(v),
            }
        }
        (FieldType::Number, Value::Int(i)) => Field::from(i),
        (FieldType::Number, Value::Float(f)) => serde_json::Number::from_f64(f)
            .map(Field::Number)
            .unwrap_or_else(|| f.to_string().into()),
        (FieldType::Number, v @ (Value::Decimal(_) | Value::Text(_))) => {
            match number_text(&v)
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .and_then(serde_json::Number::from_f64)
            {
                Some(n) => Field::Number(n),
                None => as_text(v),
            }
        }
        (_, v) => as_text(v),
    }
}

/// The text of a decimal or text value, read as a number.
fn number_text(v: &Value) -> &str {
    match v {
        Value::Decimal(d) => d,
        Value::Text(t) => t,
        _ => "",
    }
}

/// A value as text: text columns keep their (shared) text, anything else is formatted.
fn as_text(v: Value) -> Field {
    match v {
        Value::Text(t) => Field::Text(t),
        v => v.into_text().unwrap_or_default().into(),
    }
}

/// A [`Plan`] over the columns of one page of rows; see [`Plan::over`].
pub struct RowMap<'p> {
    plan: &'p Plan,
    /// The column names of the page's rows.
    names: Arc<[String]>,
    /// Per field, the position of its column among `names`.
    at: Vec<Option<usize>>,
    /// Per field, whether it is the last to read its column: its value is then moved out of
    /// the row instead of copied (copying every value showed up in profiles).
    last_use: Vec<bool>,
}

impl RowMap<'_> {
    /// The column names this map was placed over.
    pub fn names(&self) -> &Arc<[String]> {
        &self.names
    }

    /// The value of field `i` in `row`: moved out of a row with the page's columns when no
    /// later field reads it, else copied (a row with other columns is searched by name).
    fn take(&self, row: &mut SourceRow, i: usize, column: &str) -> Option<Value> {
        if !Arc::ptr_eq(&row.names, &self.names) {
            return row.get(column).cloned();
        }
        let v = row.values.get_mut(self.at[i]?)?;
        Some(if self.last_use[i] {
            std::mem::take(v)
        } else {
            v.clone()
        })
    }

    /// Maps a row to a record, taking the row's values. Constant fields stay null here: see
    /// [`Plan::constants`].
    pub fn map_row(&self, mut row: SourceRow, source_key: String) -> Record {
        let plan = self.plan;
        let mut values = Vec::with_capacity(plan.fields.len());
        let mut row_guid = String::new();
        for (i, (code, ty, src)) in plan.fields.iter().enumerate() {
            let v = match src {
                FieldSource::Column(c) => self
                    .take(&mut row, i, c)
                    .map(|v| convert(v, *ty))
                    .unwrap_or(Field::Null),
                FieldSource::Constant(j) => {
                    if code == "RowGuid" {
                        row_guid = constant_field(j).as_str().unwrap_or_default().to_string();
                    }
                    Field::Null
                }
                FieldSource::Pipeline => Field::Null,
                FieldSource::DerivedGuid => derive_row_guid(&plan.job, &source_key).into(),
                FieldSource::Unsupplied => Field::Null,
            };
            values.push(v);
            let v = values.last_mut().expect("just pushed");
            tidy_in_place(v);
            if code == "RowGuid" && !v.is_null() {
                row_guid = v.as_str().map(str::to_string).unwrap_or_default();
            }
        }
        // Data types without a RowGuid field (Gansu) still get a stable identity for the
        // outbox and error rows; it is not sent.
        if row_guid.is_empty() && !plan.fields.iter().any(|(c, _, _)| c == "RowGuid") {
            row_guid = derive_row_guid(&plan.job, &source_key);
        }
        Record {
            source_key,
            row_guid,
            values,
        }
    }
}

/// Maps one row (see [`RowMap::map_row`]); a page maps its rows through one [`Plan::over`].
pub fn map_row(plan: &Plan, row: SourceRow, source_key: String) -> Record {
    let names = row.names.clone();
    plan.over(&names).map_row(row, source_key)
}

/// Render nulls as the platform setting wants, after validation has seen them as absent.
pub fn finish_nulls(fields: &mut serde_json::Map<String, Json>, how: NullFields) {
    match how {
        NullFields::Omit => fields.retain(|_, v| !v.is_null()),
        NullFields::Null => {}
        NullFields::Empty => fields
            .values_mut()
            .filter(|v| v.is_null())
            .for_each(|v| *v = Json::String(String::new())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Catalog;
    use chrono::NaiveDate;

    fn unit() -> UnitConfig {
        UnitConfig {
            uscc: "11620000MB199916XB".into(),
            name: "某局".into(),
            region_code: "440100".into(),
            system_name: Some("业务系统".into()),
        }
    }

    #[test]
    fn conversions() {
        let dt = NaiveDate::from_ymd_opt(2019, 6, 20)
            .unwrap()
            .and_hms_opt(16, 24, 36)
            .unwrap();
        let cases: Vec<(Value, FieldType, Json)> = vec![
            (
                Value::DateTime(dt),
                FieldType::Datetime,
                Json::from("2019-06-20 16:24:36"),
            ),
            (
                Value::Text("2019-06-20T16:24:36.5".into()),
                FieldType::Datetime,
                Json::from("2019-06-20 16:24:36"),
            ),
            (
                Value::Text("yesterday".into()),
                FieldType::Datetime,
                Json::from("yesterday"),
            ),
            (
                Value::Date(dt.date()),
                FieldType::Datetime,
                Json::from("2019-06-20 00:00:00"),
            ),
            (Value::Int(3), FieldType::Int, Json::from(3)),
            (Value::Text("12".into()), FieldType::Int, Json::from(12)),
            (Value::Decimal("7.0".into()), FieldType::Int, Json::from(7)),
            (Value::Text("abc".into()), FieldType::Int, Json::from("abc")),
            (
                Value::Decimal("100.50".into()),
                FieldType::Number,
                serde_json::json!(100.5),
            ),
            (Value::Int(40), FieldType::Number, Json::from(40)),
            (Value::Int(40), FieldType::String, Json::from("40")),
            (Value::Null, FieldType::String, Json::Null),
        ];
        for (v, ty, want) in cases {
            assert_eq!(convert(v.clone(), ty).to_json(), want, "{v:?} as {ty:?}");
        }
    }

    #[test]
    fn plan_precedence_and_mapping() {
        let cat = Catalog::load(None).unwrap();
        let dt = cat.data_type("gdzw", "process").unwrap();
        let columns: Vec<String> = [
            "id",
            "projectno",
            "applicant",
            "EventName",
            "cd_time",
            "cd_operation",
        ]
        .map(String::from)
        .to_vec();
        let mut map = BTreeMap::new();
        map.insert("HandleUserName".to_string(), "applicant".to_string());
        let mut constants = BTreeMap::new();
        constants.insert(
            "ProcessName".to_string(),
            toml::Value::String("审核".into()),
        );
        let plan = Plan::resolve(PlanInput {
            job: "p",
            data_type: dt,
            columns: &columns,
            map: &map,
            constants: &constants,
            unit: &unit(),
            null_fields: NullFields::Omit,
        });
        let src = |c: &str| plan.fields.iter().find(|f| f.0 == c).unwrap().2.clone();
        assert_eq!(src("ProjectNo"), FieldSource::Column("projectno".into()));
        assert_eq!(
            src("HandleUserName"),
            FieldSource::Column("applicant".into())
        );
        assert_eq!(
            src("ProcessName"),
            FieldSource::Constant(Json::from("审核"))
        );
        assert_eq!(
            src("ProDataOrgCode"),
            FieldSource::Constant(Json::from("11620000MB199916XB"))
        );
        assert_eq!(
            src("SystemName"),
            FieldSource::Constant(Json::from("业务系统"))
        );
        assert_eq!(src("RowGuid"), FieldSource::DerivedGuid);
        assert_eq!(src("Cd_Batch"), FieldSource::Pipeline);
        assert_eq!(src("Remark"), FieldSource::Unsupplied);

        let row = SourceRow::from_pairs(vec![
            ("id".into(), Value::Int(7)),
            ("projectno".into(), Value::Text("P1  ".into())),
            ("applicant".into(), Value::Text("张三".into())),
            ("EventName".into(), Value::Text("   ".into())),
        ]);
        let rec = map_row(&plan, row.clone(), key_text(&row, &["id".to_string()]));
        assert_eq!(rec.source_key, "7");
        assert_eq!(plan.get(&rec, "ProjectNo"), Some(&Field::from("P1")));
        assert_eq!(plan.get(&rec, "EventName"), Some(&Field::Null));
        assert_eq!(rec.row_guid, derive_row_guid("p", "7"));
        // Same key, same guid: stable across I, U and D.
        assert_eq!(
            derive_row_guid("p", "7"),
            map_row(&plan, row.clone(), "7".into()).row_guid
        );
        assert_ne!(derive_row_guid("p", "7"), derive_row_guid("p", "8"));
    }

    #[test]
    fn gansu_plan_has_no_pipeline_fields() {
        let cat = Catalog::load(None).unwrap();
        let dt = cat.data_type("gansu", "cclw_jjl").unwrap();
        let columns: Vec<String> = ["id", "qymc", "xy10101002"].map(String::from).to_vec();
        let mut map = BTreeMap::new();
        map.insert("xy10101001".to_string(), "qymc".to_string());
        let plan = Plan::resolve(PlanInput {
            job: "g",
            data_type: dt,
            columns: &columns,
            map: &map,
            constants: &BTreeMap::new(),
            unit: &unit(),
            null_fields: NullFields::Empty,
        });
        assert!(
            plan.fields
                .iter()
                .all(|(c, _, s)| *s != FieldSource::Pipeline && !c.starts_with("Cd_"))
        );
        let row = SourceRow::from_pairs(vec![
            ("id".into(), Value::Int(3)),
            ("qymc".into(), Value::Text("甲公司".into())),
            (
                "xy10101002".into(),
                Value::Text("91620100296583830Q".into()),
            ),
        ]);
        let rec = map_row(&plan, row, "3".into());
        let keys: Vec<&str> = plan.fields.iter().map(|(c, _, _)| c.as_str()).collect();
        assert_eq!(
            keys,
            dt.fields
                .iter()
                .map(|f| f.code.as_str())
                .collect::<Vec<_>>()
        );
        assert_eq!(rec.values.len(), keys.len());
        assert_eq!(plan.get(&rec, "xy10101001"), Some(&Field::from("甲公司")));
        assert_eq!(rec.row_guid, derive_row_guid("g", "3"));
    }

    #[test]
    fn a_job_reads_only_the_columns_it_needs() {
        let cat = Catalog::load(None).unwrap();
        let dt = cat.data_type("gdzw", "process").unwrap();
        let job: JobConfig = toml::from_str(
            r#"
name = "p"
data_type = "process"
source = "v"
key = ["ID"]
seq_column = "change_id"
time_column = "changed_at"
interval = "1m"
[map]
HandleUserName = "applicant"
TaskName = "no_such_column"
"#,
        )
        .unwrap();
        // Upper-case names as a PostgreSQL view with quoted aliases reports them.
        let view: Vec<String> = [
            "change_id",
            "wait_interval",
            "id",
            "ProjectNo",
            "APPLICANT",
            "client_ip",
            "changed_at",
            "cd_operation",
            "remark_internal",
        ]
        .map(String::from)
        .to_vec();
        let plan = Plan::resolve(PlanInput {
            job: "p",
            data_type: dt,
            columns: &view,
            map: &job.map,
            constants: &BTreeMap::new(),
            unit: &unit(),
            null_fields: NullFields::Omit,
        });
        assert_eq!(
            needed_columns(&view, &plan, &job),
            [
                "change_id",
                "id",
                "ProjectNo",
                "APPLICANT",
                "changed_at",
                "cd_operation"
            ]
        );
        // Resolved again over only those columns, the plan maps the same fields.
        let needed = needed_columns(&view, &plan, &job);
        let again = Plan::resolve(PlanInput {
            job: "p",
            data_type: dt,
            columns: &needed,
            map: &job.map,
            constants: &BTreeMap::new(),
            unit: &unit(),
            null_fields: NullFields::Omit,
        });
        assert_eq!(again.fields, plan.fields);
    }

    #[test]
    fn composite_keys_and_ops() {
        let row = SourceRow::from_pairs(vec![
            ("a".into(), Value::Int(1)),
            ("b".into(), Value::Text("x".into())),
        ]);
        assert_eq!(key_text(&row, &["a".into(), "b".into()]), r#"["1","x"]"#);
        for (s, want) in [
            ("I", Some(Op::Insert)),
            ("u", Some(Op::Update)),
            ("DELETE", Some(Op::Delete)),
            ("X", None),
            ("", None),
        ] {
            assert_eq!(Op::parse(s), want, "{s}");
        }
    }

    #[test]
    fn null_rendering() {
        let mut f = serde_json::Map::new();
        f.insert("A".to_string(), Json::Null);
        f.insert("B".to_string(), Json::from("x"));
        let mut omit = f.clone();
        finish_nulls(&mut omit, NullFields::Omit);
        assert_eq!(serde_json::to_string(&omit).unwrap(), r#"{"B":"x"}"#);
        let mut empty = f.clone();
        finish_nulls(&mut empty, NullFields::Empty);
        assert_eq!(
            serde_json::to_string(&empty).unwrap(),
            r#"{"A":"","B":"x"}"#
        );
    }
}
