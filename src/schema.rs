//! Data-type catalogs (fields, types, lengths, code sets) loaded from `schemas/` as data.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// Catalogs shipped inside the binary, so a fresh install needs no extra files.
const EMBEDDED: &[(&str, &str, &str)] = &[
    (
        "gdzw",
        "codesets",
        include_str!("../schemas/gdzw/codesets.toml"),
    ),
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
    #[serde(default)]
    pub note: String,
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
    lookup: HashSet<String>,
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
    pub codesets: HashMap<String, CodeSet>,
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
        cat.check_references()?;
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

    fn check_references(&self) -> Result<()> {
        for (pname, p) in &self.platforms {
            for dt in p.data_types.values() {
                for f in &dt.fields {
                    if let Some(cs) = &f.code_set
                        && !p.codesets.contains_key(cs)
                    {
                        bail!(
                            "{pname}/{}: field {} names unknown code set {cs}",
                            dt.data_type,
                            f.code
                        );
                    }
                    if let Some(t) = &f.id_type_field
                        && dt.field(t).is_none()
                    {
                        bail!(
                            "{pname}/{}: field {} pairs with unknown field {t}",
                            dt.data_type,
                            f.code
                        );
                    }
                }
            }
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
}
