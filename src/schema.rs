//! Data-type catalogs (fields, types, lengths, code sets) loaded from `schemas/` as data.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

pub mod sample;

/// Fields whose values qianzhi itself sets when it numbers a batch: no column or constant
/// may supply them (`config` refuses such a mapping, `mapping` fills them in).
pub const PIPELINE_FIELDS: &[&str] = &["Cd_Operation", "Cd_Time", "Cd_Batch"];

/// Catalogs shipped inside the binary, so a fresh install needs no extra files.
const EMBEDDED: &[(&str, &str, &str)] = &[
    (
        "gdzw",
        "codesets",
        include_str!("../schemas/gdzw/codesets.toml"),
    ),
    ("gdzw", "rules", include_str!("../schemas/gdzw/rules.toml")),
    (
        "gdzw",
        "accept",
        include_str!("../schemas/gdzw/accept.toml"),
    ),
    (
        "gdzw",
        "process",
        include_str!("../schemas/gdzw/process.toml"),
    ),
    (
        "gdzw",
        "result",
        include_str!("../schemas/gdzw/result.toml"),
    ),
    (
        "gdzw",
        "specialprocedure",
        include_str!("../schemas/gdzw/specialprocedure.toml"),
    ),
    (
        "gdzw",
        "material",
        include_str!("../schemas/gdzw/material.toml"),
    ),
    (
        "gdzw",
        "correction",
        include_str!("../schemas/gdzw/correction.toml"),
    ),
    (
        "gdzw",
        "receive",
        include_str!("../schemas/gdzw/receive.toml"),
    ),
    (
        "gdzw",
        "reconciliation",
        include_str!("../schemas/gdzw/reconciliation.toml"),
    ),
    (
        "gansu",
        "codesets",
        include_str!("../schemas/gansu/codesets.toml"),
    ),
    (
        "gansu",
        "cclw_jjl",
        include_str!("../schemas/gansu/cclw_jjl.toml"),
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    String,
    Int,
    Number,
    Datetime,
    Date,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    /// 统一社会信用代码 check digit (GB 32100).
    Uscc,
    /// 居民身份证号码 check digit (GB 11643).
    Idcard,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    pub code: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub required: bool,
    #[serde(rename = "type")]
    pub ty: FieldType,
    pub max_len: Option<u32>,
    pub code_set: Option<String>,
    #[serde(default)]
    pub multi: bool,
    pub check: Option<Check>,
    /// The field holding the certificate types that pair, `^` by `^`, with this field's numbers.
    pub id_type_field: Option<String>,
    /// An optional field the spec makes 必填 in words when another field says so: required
    /// when any of these conditions holds. One table or an array of tables in the file.
    #[serde(default, deserialize_with = "one_or_many")]
    pub required_if: Vec<Condition>,
    /// A format the spec states in words (`uuid`, `project_no`, `region_code`, ...).
    pub format: Option<Format>,
    #[serde(default)]
    pub note: String,
}

/// A format the spec states in words. A failure's rule name is the format's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// GB/T 17969.8-2010 (ISO/IEC 9834-8) UUID.
    Uuid,
    /// 办件编号: 31-character 实施编码, 8-digit 申请日期 YYYYMMDD, 4-character 顺序号.
    ProjectNo,
    /// 业务办理项编码: 31-character 实施编码 and a 2-digit 业务项代码 01–99.
    TaskHandleItem,
    /// 行政区划代码 (GB/T 2260); accepted lengths in `rules.toml`.
    RegionCode,
    /// 货币代码 (GB/T 12406); strictness in `rules.toml`.
    Currency,
    /// 广东省投资项目统一代码, 24 characters.
    ProjectCo,
    /// A complete URL; accepted schemes in `rules.toml`.
    Url,
    /// JSON key-value data: one complete JSON object.
    JsonObject,
}

impl Format {
    /// The rule name written to `qz_error.rule`.
    pub fn rule(self) -> &'static str {
        match self {
            Format::Uuid => "uuid",
            Format::ProjectNo => "project_no",
            Format::TaskHandleItem => "task_handle_item",
            Format::RegionCode => "region_code",
            Format::Currency => "currency",
            Format::ProjectCo => "project_co",
            Format::Url => "url",
            Format::JsonObject => "json_object",
        }
    }
}

/// What a `required_if` condition asks of the field it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Test {
    /// The value, or any `^`-separated part of a multi-value field, is one of these codes.
    In(Vec<String>),
    /// The field has a value.
    Present,
    /// The field holds a number other than 0.
    Nonzero,
    /// Both fields hold region codes and this one lies outside the other's area
    /// (e.g. 440300 is outside 440100; 440106 is inside 440100 and 440000).
    OutsideAreaOf(String),
}

/// One condition of `required_if`, e.g. `{ field = "SLZTDM", in = ["2", "4"] }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawCondition")]
pub struct Condition {
    pub field: String,
    pub test: Test,
    /// A switch in `rules.toml` that turns this condition on or off: for conditions the spec
    /// words unclearly.
    pub switch: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCondition {
    field: String,
    #[serde(rename = "in")]
    any_of: Option<Vec<String>>,
    present: Option<bool>,
    nonzero: Option<bool>,
    outside_area_of: Option<String>,
    switch: Option<String>,
}

impl TryFrom<RawCondition> for Condition {
    type Error = String;
    fn try_from(r: RawCondition) -> Result<Self, String> {
        let mut tests = Vec::new();
        if let Some(codes) = r.any_of {
            if codes.is_empty() {
                return Err(format!("condition on {}: `in` lists no codes", r.field));
            }
            tests.push(Test::In(codes));
        }
        match r.present {
            Some(true) => tests.push(Test::Present),
            Some(false) => {
                return Err(format!(
                    "condition on {}: only `present = true` is meaningful",
                    r.field
                ));
            }
            None => {}
        }
        match r.nonzero {
            Some(true) => tests.push(Test::Nonzero),
            Some(false) => {
                return Err(format!(
                    "condition on {}: only `nonzero = true` is meaningful",
                    r.field
                ));
            }
            None => {}
        }
        if let Some(other) = r.outside_area_of {
            tests.push(Test::OutsideAreaOf(other));
        }
        if tests.len() != 1 {
            return Err(format!(
                "condition on {} needs exactly one of `in`, `present`, `nonzero`, `outside_area_of`",
                r.field
            ));
        }
        Ok(Condition {
            field: r.field,
            test: tests.remove(0),
            switch: r.switch,
        })
    }
}

/// `required_if = { ... }` or `required_if = [{ ... }, { ... }]`.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Condition>, D::Error> {
    use serde::de::Error;
    match toml::Value::deserialize(d)? {
        t @ toml::Value::Table(_) => Ok(vec![t.try_into().map_err(D::Error::custom)?]),
        toml::Value::Array(a) => a
            .into_iter()
            .map(|t| t.try_into().map_err(D::Error::custom))
            .collect(),
        _ => Err(D::Error::custom(
            "required_if must be a condition table or an array of them",
        )),
    }
}

/// Strictness settings of one platform (`<platform>/rules.toml`), for the rules whose spec
/// wording leaves room; the file's comments say why each setting exists.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSettings {
    pub uuid: Option<UuidSettings>,
    pub region_code: Option<RegionCodeSettings>,
    pub currency: Option<CurrencySettings>,
    pub url: Option<UrlSettings>,
    /// Named on/off switches that `required_if` conditions refer to.
    #[serde(default)]
    pub switch: BTreeMap<String, bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UuidSettings {
    /// Also accept the 32 hex digits without hyphens.
    pub simple_form: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionCodeSettings {
    /// Accepted numbers of digits.
    pub lengths: Vec<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurrencySettings {
    /// Also accept GB/T 12406's three-digit numeric codes.
    pub numeric: bool,
    /// When set, the code must also be in this code set.
    pub code_set: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlSettings {
    /// Accepted schemes, lower case.
    pub schemes: Vec<String>,
}

/// A field's rules with every field name resolved to a position once, at load, so that
/// checking a row does no name look-ups.
#[derive(Debug, Clone, Default)]
pub struct FieldRules {
    /// The `required_if` conditions whose switch is on.
    pub required_if: Vec<When>,
    /// Position of the `id_type_field`.
    pub id_type_at: Option<usize>,
    pub format: Option<FormatRule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct When {
    /// Position of the field the condition reads.
    pub at: usize,
    pub test: WhenTest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WhenTest {
    In(Vec<String>),
    Present,
    Nonzero,
    /// Position of the field whose area the value must lie outside of.
    OutsideAreaOf(usize),
}

/// A format with the platform's settings for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatRule {
    Uuid {
        simple_form: bool,
    },
    ProjectNo,
    TaskHandleItem,
    RegionCode {
        lengths: Vec<usize>,
    },
    Currency {
        numeric: bool,
        code_set: Option<String>,
    },
    ProjectCo,
    Url {
        schemes: Vec<String>,
    },
    JsonObject,
}

impl FormatRule {
    pub fn format(&self) -> Format {
        match self {
            FormatRule::Uuid { .. } => Format::Uuid,
            FormatRule::ProjectNo => Format::ProjectNo,
            FormatRule::TaskHandleItem => Format::TaskHandleItem,
            FormatRule::RegionCode { .. } => Format::RegionCode,
            FormatRule::Currency { .. } => Format::Currency,
            FormatRule::ProjectCo => Format::ProjectCo,
            FormatRule::Url { .. } => Format::Url,
            FormatRule::JsonObject => Format::JsonObject,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Subject {
    /// 法人 (legal persons, including 个体工商户).
    L,
    /// 自然人 (natural persons).
    P,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataType {
    pub data_type: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub section: String,
    #[serde(default)]
    pub endpoint: String,
    pub reconciliation_table: Option<String>,
    /// Gansu: the resource id, last segment of `{base}/data/{L|P}/{resource id}`.
    pub resource_id: Option<String>,
    /// Gansu: whose records these are, `L` (法人) or `P` (自然人); mapped to the configured
    /// path segments.
    pub subject: Option<Subject>,
    /// Text fields may hold no full-width characters other than （ and ） (Gansu's rule).
    #[serde(default)]
    pub halfwidth_text: bool,
    #[serde(rename = "field")]
    pub fields: Vec<Field>,
    /// Per field (same order as `fields`), its rules resolved when the catalog is loaded.
    #[serde(skip)]
    pub resolved: Vec<FieldRules>,
}

impl DataType {
    pub fn field(&self, code: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.code == code)
    }
}

#[derive(Debug, Clone, Deserialize)]
struct CodeSetFile {
    #[serde(rename = "codeset", default)]
    codesets: Vec<CodeSetDef>,
}

#[derive(Debug, Clone, Deserialize)]
struct CodeSetDef {
    id: String,
    name: String,
    codes: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct CodeSet {
    pub id: String,
    pub name: String,
    pub codes: Vec<(String, String)>,
    lookup: HashSet<String, Fnv>,
}

/// FNV-1a for the code-set tables: every code-set field of every row is looked up twice
/// (its code set, then its code), and SipHash's setup for such short keys showed up in
/// profiles. The tables are fixed when the schema is loaded; rows only look codes up, so
/// colliding codes could slow a look-up but never grow a table.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fnv;

impl std::hash::BuildHasher for Fnv {
    type Hasher = FnvHasher;
    fn build_hasher(&self) -> FnvHasher {
        FnvHasher(0xcbf2_9ce4_8422_2325)
    }
}

pub struct FnvHasher(u64);

impl std::hash::Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

impl CodeSet {
    pub fn contains(&self, code: &str) -> bool {
        self.lookup.contains(code)
    }
}

/// All data types and code sets of one platform (`gdzw`, later `gansu`).
#[derive(Debug, Clone, Default)]
pub struct Platform {
    pub data_types: BTreeMap<String, DataType>,
    pub codesets: HashMap<String, CodeSet, Fnv>,
    /// `rules.toml`, parsed once every file is read.
    pub rules: RuleSettings,
    /// `rules.toml` as read so far: an overlay's keys replace the embedded ones one by one.
    rules_text: toml::Table,
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub platforms: BTreeMap<String, Platform>,
}

impl Catalog {
    /// The embedded catalogs, overlaid by `<dir>/<platform>/*.toml` when a directory is given,
    /// so a DBA can add or correct a data type without rebuilding.
    pub fn load(extra_dir: Option<&Path>) -> Result<Catalog> {
        let mut cat = Catalog::default();
        for (platform, name, text) in EMBEDDED {
            cat.add(platform, name, text)
                .with_context(|| format!("embedded schema {platform}/{name}.toml"))?;
        }
        if let Some(dir) = extra_dir {
            cat.overlay_dir(dir)?;
        }
        cat.resolve()?;
        Ok(cat)
    }

    fn overlay_dir(&mut self, dir: &Path) -> Result<()> {
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read schema_dir {}", dir.display()))?;
        let mut platforms: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        platforms.sort();
        for pdir in platforms.into_iter().filter(|p| p.is_dir()) {
            let platform = pdir
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            let mut files: Vec<_> = std::fs::read_dir(&pdir)?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            // Code sets first, so data types added alongside can name them.
            files.sort_by_key(|p| (p.file_stem() != Some("codesets".as_ref()), p.clone()));
            // (rules.toml is merged key by key and read only once all files are in.)
            for f in files {
                let name = f
                    .file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .to_string();
                let text = std::fs::read_to_string(&f)
                    .with_context(|| format!("cannot read {}", f.display()))?;
                self.add(&platform, &name, &text)
                    .with_context(|| format!("schema file {}", f.display()))?;
            }
        }
        Ok(())
    }

    fn add(&mut self, platform: &str, name: &str, text: &str) -> Result<()> {
        let p = self.platforms.entry(platform.to_string()).or_default();
        if name == "codesets" {
            let file: CodeSetFile = toml::from_str(text)?;
            for c in file.codesets {
                let lookup = c.codes.iter().map(|(k, _)| k.clone()).collect();
                p.codesets.insert(
                    c.id.clone(),
                    CodeSet {
                        id: c.id,
                        name: c.name,
                        codes: c.codes,
                        lookup,
                    },
                );
            }
            return Ok(());
        }
        if name == "rules" {
            let table: toml::Table = toml::from_str(text)?;
            merge_tables(&mut p.rules_text, table);
            return Ok(());
        }
        let dt: DataType = toml::from_str(text)?;
        if dt.data_type != name {
            bail!(
                "data_type = \"{}\" does not match the file name {name}.toml",
                dt.data_type
            );
        }
        let mut seen = HashSet::new();
        for f in &dt.fields {
            if !seen.insert(&f.code) {
                bail!("field {} is listed twice", f.code);
            }
        }
        p.data_types.insert(name.to_string(), dt);
        Ok(())
    }

    /// Parses each platform's `rules.toml`, checks every reference between fields, code sets
    /// and switches, and resolves each field's rules to positions.
    fn resolve(&mut self) -> Result<()> {
        for (pname, p) in &mut self.platforms {
            p.rules = p
                .rules_text
                .clone()
                .try_into()
                .with_context(|| format!("{pname}/rules.toml"))?;
            let mut types = std::mem::take(&mut p.data_types);
            for dt in types.values_mut() {
                dt.resolved = dt
                    .fields
                    .iter()
                    .map(|f| resolve_field(f, dt, p))
                    .collect::<Result<_>>()
                    .with_context(|| format!("{pname}/{}", dt.data_type))?;
            }
            p.data_types = types;
        }
        Ok(())
    }

    pub fn platform(&self, name: &str) -> Option<&Platform> {
        self.platforms.get(name)
    }

    pub fn data_type(&self, platform: &str, data_type: &str) -> Option<&DataType> {
        self.platforms.get(platform)?.data_types.get(data_type)
    }
}

/// `overlay`'s keys replace `base`'s; tables are merged key by key.
fn merge_tables(base: &mut toml::Table, overlay: toml::Table) {
    for (k, v) in overlay {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge_tables(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn resolve_field(f: &Field, dt: &DataType, p: &Platform) -> Result<FieldRules> {
    let at = |code: &str| {
        dt.fields
            .iter()
            .position(|x| x.code == code)
            .with_context(|| format!("field {} names unknown field {code}", f.code))
    };
    if let Some(cs) = &f.code_set
        && !p.codesets.contains_key(cs)
    {
        bail!("field {} names unknown code set {cs}", f.code);
    }
    let id_type_at = match &f.id_type_field {
        Some(t) => {
            Some(at(t).with_context(|| format!("field {} pairs with unknown field {t}", f.code))?)
        }
        None => None,
    };
    if f.required && !f.required_if.is_empty() {
        bail!("field {} is required: required_if adds nothing", f.code);
    }
    let mut required_if = Vec::new();
    for c in &f.required_if {
        let on = match &c.switch {
            Some(s) => *p.rules.switch.get(s).with_context(|| {
                format!(
                    "field {}: switch {s} is not defined under [switch] in rules.toml",
                    f.code
                )
            })?,
            None => true,
        };
        let other = at(&c.field)?;
        if other
            == dt
                .fields
                .iter()
                .position(|x| x.code == f.code)
                .unwrap_or(usize::MAX)
        {
            bail!("field {}: required_if names the field itself", f.code);
        }
        let test = match &c.test {
            Test::In(codes) => {
                if let Some(cs) = dt.fields[other]
                    .code_set
                    .as_ref()
                    .and_then(|id| p.codesets.get(id))
                    && let Some(bad) = codes.iter().find(|c| !cs.contains(c))
                {
                    bail!(
                        "field {}: required_if code '{bad}' is not in {}'s code set {}",
                        f.code,
                        c.field,
                        cs.id
                    );
                }
                WhenTest::In(codes.clone())
            }
            Test::Present => WhenTest::Present,
            Test::Nonzero => WhenTest::Nonzero,
            Test::OutsideAreaOf(area) => WhenTest::OutsideAreaOf(at(area)?),
        };
        if on {
            required_if.push(When { at: other, test });
        }
    }
    let missing = |section: &str| {
        anyhow::anyhow!(
            "field {} has format = \"{section}\" but rules.toml has no [{section}] settings",
            f.code
        )
    };
    let format = match f.format {
        None => None,
        Some(fmt) => {
            if f.ty != FieldType::String {
                bail!("field {}: a format applies to string fields only", f.code);
            }
            Some(match fmt {
                Format::Uuid => FormatRule::Uuid {
                    simple_form: p
                        .rules
                        .uuid
                        .as_ref()
                        .ok_or_else(|| missing("uuid"))?
                        .simple_form,
                },
                Format::ProjectNo => FormatRule::ProjectNo,
                Format::TaskHandleItem => FormatRule::TaskHandleItem,
                Format::RegionCode => {
                    let s = p
                        .rules
                        .region_code
                        .as_ref()
                        .ok_or_else(|| missing("region_code"))?;
                    if s.lengths.is_empty() || s.lengths.contains(&0) {
                        bail!("rules.toml [region_code] lengths must list positive lengths");
                    }
                    FormatRule::RegionCode {
                        lengths: s.lengths.clone(),
                    }
                }
                Format::Currency => {
                    let s = p
                        .rules
                        .currency
                        .as_ref()
                        .ok_or_else(|| missing("currency"))?;
                    let code_set = s.code_set.clone().filter(|c| !c.is_empty());
                    if let Some(cs) = &code_set
                        && !p.codesets.contains_key(cs)
                    {
                        bail!("rules.toml [currency] names unknown code set {cs}");
                    }
                    FormatRule::Currency {
                        numeric: s.numeric,
                        code_set,
                    }
                }
                Format::ProjectCo => FormatRule::ProjectCo,
                Format::Url => {
                    let s = p.rules.url.as_ref().ok_or_else(|| missing("url"))?;
                    if s.schemes.is_empty() {
                        bail!("rules.toml [url] schemes must not be empty");
                    }
                    FormatRule::Url {
                        schemes: s.schemes.iter().map(|x| x.to_ascii_lowercase()).collect(),
                    }
                }
                Format::JsonObject => FormatRule::JsonObject,
            })
        }
    };
    Ok(FieldRules {
        required_if,
        id_type_at,
        format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_has_all_seven_types() {
        let cat = Catalog::load(None).unwrap();
        let p = cat.platform("gdzw").unwrap();
        for t in [
            "accept",
            "process",
            "result",
            "specialprocedure",
            "material",
            "correction",
            "receive",
        ] {
            let dt = p.data_types.get(t).unwrap_or_else(|| panic!("{t} missing"));
            for f in [
                "RowGuid",
                "Cd_Operation",
                "Cd_Time",
                "Cd_Batch",
                "ProDataOrgCode",
            ] {
                assert!(dt.field(f).is_some_and(|f| f.required), "{t}.{f}");
            }
        }
        let accept = &p.data_types["accept"];
        assert_eq!(
            accept.reconciliation_table.as_deref(),
            Some("up_pro_accept_v3")
        );
        let tv = accept.field("TaskVersion").unwrap();
        assert_eq!((tv.ty, tv.max_len), (FieldType::Int, Some(10)));
        let pt = accept.field("ApplyerPageType").unwrap();
        assert!(pt.multi && pt.code_set.as_deref() == Some("A.2"));
        assert!(p.codesets["A.2"].contains("111"));
        assert_eq!(
            p.data_types["result"].field("Charge").unwrap().ty,
            FieldType::Number
        );
    }

    #[test]
    fn gansu_storage_logistics_as_printed() {
        let cat = Catalog::load(None).unwrap();
        let dt = cat.data_type("gansu", "cclw_jjl").unwrap();
        assert_eq!(dt.resource_id.as_deref(), Some("00041759"));
        assert_eq!(dt.subject, Some(Subject::L));
        assert!(dt.halfwidth_text);
        let codes: Vec<(&str, FieldType, bool)> = dt
            .fields
            .iter()
            .map(|f| (f.code.as_str(), f.ty, f.required))
            .collect();
        assert_eq!(
            codes,
            vec![
                ("xy10101001", FieldType::String, true),
                ("xy10101002", FieldType::String, true),
                ("xy501001", FieldType::Date, true),
                ("yx501002", FieldType::Number, true),
                ("xy501003", FieldType::Number, true),
                ("xy501004", FieldType::Number, true),
                ("xy501005", FieldType::Number, true),
                ("xy501006", FieldType::String, false),
            ]
        );
        assert_eq!(dt.field("xy10101002").unwrap().check, Some(Check::Uscc));
    }

    #[test]
    fn overlay_adds_a_data_type() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("gdzw")).unwrap();
        std::fs::write(
            dir.path().join("gdzw/extra.toml"),
            "data_type = \"extra\"\n[[field]]\ncode = \"X\"\ntype = \"string\"\nmax_len = 3\ncode_set = \"A.1\"\n",
        )
        .unwrap();
        let cat = Catalog::load(Some(dir.path())).unwrap();
        assert!(cat.data_type("gdzw", "extra").is_some());

        std::fs::write(
            dir.path().join("gdzw/extra.toml"),
            "data_type = \"extra\"\n[[field]]\ncode = \"X\"\ntype = \"string\"\ncode_set = \"NOPE\"\n",
        )
        .unwrap();
        let err = Catalog::load(Some(dir.path())).unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown code set NOPE"),
            "{err:#}"
        );
    }

    #[test]
    fn conditions_and_formats_resolve_to_positions() {
        let cat = Catalog::load(None).unwrap();
        let accept = cat.data_type("gdzw", "accept").unwrap();
        let pos = |c: &str| accept.fields.iter().position(|f| f.code == c).unwrap();
        let legal = &accept.resolved[pos("Legal")];
        assert_eq!(
            legal.required_if,
            vec![
                When {
                    at: pos("ApplyerType"),
                    test: WhenTest::In(vec!["2".into(), "3".into(), "4".into()])
                },
                When {
                    at: pos("ApplyerPageType"),
                    test: WhenTest::In(vec!["3".into(), "821".into()])
                },
            ]
        );
        assert_eq!(
            accept.resolved[pos("TargetOrgName")].required_if,
            vec![When {
                at: pos("RegionCode"),
                test: WhenTest::OutsideAreaOf(pos("ProDataRegionCode"))
            }]
        );
        assert_eq!(
            accept.resolved[pos("RegionCode")].format,
            Some(FormatRule::RegionCode {
                lengths: vec![6, 12]
            })
        );
        assert_eq!(
            accept.resolved[pos("ApplyerPageCode")].id_type_at,
            Some(pos("ApplyerPageType"))
        );
        // Every Guangdong type checks RowGuid, ProjectNo and the reporting region.
        for t in sample::GDZW_TYPES {
            let dt = cat.data_type("gdzw", t).unwrap();
            for (f, fmt) in [
                ("RowGuid", Format::Uuid),
                ("ProjectNo", Format::ProjectNo),
                ("ProDataRegionCode", Format::RegionCode),
                ("ProjectCo", Format::ProjectCo),
            ] {
                assert_eq!(dt.field(f).unwrap().format, Some(fmt), "{t}.{f}");
            }
        }
    }

    /// Mistakes in a DBA's overlay are refused at load with the field and the reason.
    #[test]
    fn bad_rules_are_refused_at_load() {
        let field = |extra: &str| {
            format!(
                "data_type = \"extra\"\n\
                 [[field]]\ncode = \"A\"\ntype = \"string\"\ncode_set = \"A.1\"\n\
                 [[field]]\ncode = \"N\"\ntype = \"int\"\n\
                 [[field]]\ncode = \"B\"\ntype = \"string\"\n{extra}\n"
            )
        };
        let cases = [
            (
                "required_if = { field = \"Nope\", present = true }",
                "names unknown field Nope",
            ),
            (
                "required_if = { field = \"A\", in = [\"7\"] }",
                "code '7' is not in A's code set A.1",
            ),
            (
                "required_if = { field = \"A\", in = [\"2\"], present = true }",
                "exactly one of",
            ),
            ("required_if = { field = \"A\" }", "exactly one of"),
            ("required_if = { field = \"A\", in = [] }", "lists no codes"),
            (
                "required_if = { field = \"A\", present = true, switch = \"nope\" }",
                "switch nope is not defined",
            ),
            (
                "required_if = { field = \"A\", presnt = true }",
                "unknown field `presnt`",
            ),
            (
                "required_if = { field = \"B\", present = true }",
                "names the field itself",
            ),
            (
                "required = true\nrequired_if = { field = \"A\", present = true }",
                "required_if adds nothing",
            ),
            ("required_if = \"A\"", "condition table or an array"),
            ("format = \"postcode\"", "unknown variant `postcode`"),
        ];
        for (extra, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("gdzw")).unwrap();
            std::fs::write(dir.path().join("gdzw/extra.toml"), field(extra)).unwrap();
            let err = format!("{:#}", Catalog::load(Some(dir.path())).unwrap_err());
            assert!(err.contains(want), "{extra}: want '{want}' in: {err}");
        }
        // A format on a number, and a format whose settings are missing (Gansu has no rules.toml).
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("gdzw")).unwrap();
        std::fs::write(
            dir.path().join("gdzw/extra.toml"),
            "data_type = \"extra\"\n[[field]]\ncode = \"N\"\ntype = \"int\"\nformat = \"uuid\"\n",
        )
        .unwrap();
        let err = format!("{:#}", Catalog::load(Some(dir.path())).unwrap_err());
        assert!(err.contains("string fields only"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("gansu")).unwrap();
        std::fs::write(
            dir.path().join("gansu/extra.toml"),
            "data_type = \"extra\"\n[[field]]\ncode = \"U\"\ntype = \"string\"\nformat = \"url\"\n",
        )
        .unwrap();
        let err = format!("{:#}", Catalog::load(Some(dir.path())).unwrap_err());
        assert!(err.contains("rules.toml has no [url] settings"), "{err}");
    }
}
