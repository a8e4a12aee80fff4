//! The platform sections: `[gdzw]` (Guangdong gateway) and `[gansu]` (Gansu credit platform).

use std::collections::BTreeMap;

use super::read::Table;
use super::secret::{Credential, SecretFrom};
use super::{name_ok, url_ok};
use crate::crypto::{KeyForm, Padding, TextEncoding};
use crate::schema::Subject;
use secrecy::ExposeSecret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NullFields {
    /// Leave the key out of the record.
    Omit,
    /// Send JSON null.
    Null,
    /// Send "" (what the spec's examples do for empty optional fields).
    Empty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LengthUnit {
    Chars,
    Bytes,
}

#[derive(Debug, Clone)]
pub struct GdzwConfig {
    /// API_ROOT including scheme, e.g. http://127.0.0.1:8810/ebus/tysb-sjcj.
    pub api_root: String,
    pub paasid: String,
    /// The gateway token, from `token_file`, `token_env` or (trials only) `token`.
    pub token: Credential,
    /// The normative table says /uppro/; some examples say /upro/.
    pub path_prefix: String,
    pub max_records_per_call: usize,
    pub reconciliation_upload: bool,
    /// Path under API_ROOT; default `<path_prefix>/reconciliation/batchSave`.
    pub reconciliation_path: Option<String>,
    pub reconciliation_tables: BTreeMap<String, String>,
    pub null_fields: NullFields,
    pub length_unit: LengthUnit,
    /// errCode values that mean "stop the job" rather than "this content was refused".
    pub fatal_err_codes: Vec<String>,
}

impl GdzwConfig {
    pub fn reconciliation_path(&self) -> String {
        self.reconciliation_path
            .clone()
            .unwrap_or_else(|| format!("{}/reconciliation/batchSave", self.path_prefix))
    }

    pub(crate) fn read(t: &mut Table) -> GdzwConfig {
        let api_root = t.req_text("api_root");
        if api_root.as_deref().is_some_and(|u| !url_ok(u)) {
            t.issue(
                Some("api_root"),
                "must start with http:// or https:// (须以 http:// 或 https:// 开头)",
            );
        }
        let max = t.number_or("max_records_per_call", 99, (0, usize::MAX));
        if max == 0 || max >= 100 {
            t.issue(
                Some("max_records_per_call"),
                "must be 1..=99: the spec requires fewer than 100 records per batch call (规范要求每次少于 100 条)",
            );
        }
        GdzwConfig {
            api_root: api_root.unwrap_or_default(),
            paasid: t.text_or("paasid", "tysb-sjcj"),
            token: t.credential(
                "token",
                "token_file",
                "token_env",
                Some("token"),
                "the gateway token 网关令牌",
            ),
            path_prefix: t.text_or("path_prefix", "uppro"),
            max_records_per_call: max,
            reconciliation_upload: t.flag("reconciliation_upload", true),
            reconciliation_path: t.text("reconciliation_path"),
            reconciliation_tables: t.map_of("reconciliation_tables"),
            null_fields: t.choice("null_fields", NullFields::Omit),
            length_unit: t.choice("length_unit", LengthUnit::Chars),
            fatal_err_codes: t.list("fatal_err_codes").unwrap_or_default(),
        }
    }
}

/// Where the Gansu ciphertext goes. The platform's helper is not public, so all three are
/// possible readings of "所有入参使用 pwd-crypt-1.1.1.jar 的 Util.SM4EncForCBC 加密".
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Envelope {
    /// The whole JSON array is encrypted; the body is the ciphertext text.
    Body,
    /// Each value is encrypted in place; keys stay readable (the spec's reading: "所有入参").
    Values,
    /// The whole JSON array is encrypted into one field of a JSON object.
    Wrapper,
}

/// `[gansu]`: 甘肃省信用信息共享平台 submission. Defaults marked "Java helper" are those of the
/// widely copied `SM4EncForCBC`, since the platform's own jar is not public.
#[derive(Debug, Clone)]
pub struct GansuConfig {
    /// Everything before `/data/{L|P}/{resource id}`, e.g. http://host:10010/submit-server.
    pub base_url: String,
    /// The Authorization value issued at registration.
    pub authorization: Credential,
    /// The SM4 key, written in `key_form`.
    pub key: Credential,
    /// Java helper: 32 hex digits.
    pub key_form: KeyForm,
    /// Java helper: the ASCII text "1111111111111111". Checked against `iv_form` on reading.
    pub iv: String,
    pub iv_form: KeyForm,
    /// Java helper: 0x80 then zeros.
    pub padding: Padding,
    /// Java helper: lowercase hex.
    pub encoding: TextEncoding,
    pub envelope: Envelope,
    /// The field that holds the ciphertext when envelope = "wrapper".
    pub wrapper_field: String,
    /// Path segment for 法人 data types.
    pub legal_segment: String,
    /// Path segment for 自然人 data types.
    pub natural_segment: String,
    /// The spec: "接口上报条数限制，500条/单次".
    pub max_records_per_call: usize,
    /// The spec's request format prints every key, empty optional ones as "".
    pub null_fields: NullFields,
    /// Data type -> resource id, overriding the schema file's `resource_id`.
    pub resources: BTreeMap<String, String>,
    /// Data type -> L or P, overriding the schema file's `subject`.
    pub subjects: BTreeMap<String, Subject>,
    /// Answer `code`s that mean "stop the job" (bad Authorization) rather than "refused".
    pub fatal_codes: Vec<i64>,
    /// Answer `code`s that mean "try the same call again later".
    pub retry_codes: Vec<i64>,
}

impl GansuConfig {
    /// The resource id and path segment of a data type: configured, else the schema's.
    pub fn route(&self, dt: &crate::schema::DataType) -> Option<(String, String)> {
        let resource = self
            .resources
            .get(&dt.data_type)
            .cloned()
            .or_else(|| dt.resource_id.clone())?;
        let segment = match self.subjects.get(&dt.data_type).copied().or(dt.subject)? {
            Subject::L => self.legal_segment.clone(),
            Subject::P => self.natural_segment.clone(),
        };
        Some((segment, resource))
    }

    pub(crate) fn read(t: &mut Table) -> GansuConfig {
        let base_url = t.req_text("base_url");
        if base_url.as_deref().is_some_and(|u| !url_ok(u)) {
            t.issue(
                Some("base_url"),
                "must start with http:// or https:// (须以 http:// 或 https:// 开头)",
            );
        }
        let authorization = t.credential(
            "authorization",
            "authorization_file",
            "authorization_env",
            None,
            "the Authorization issued at registration 注册时发放的 Authorization",
        );
        let key = t.credential("key", "key_file", "key_env", None, "the SM4 key SM4 密钥");
        let key_form = t.choice("key_form", KeyForm::Hex);
        // The key is checked here, once; the error names its form and length, never its text.
        if key.is_read()
            && let Err(e) = crate::crypto::parse_key(key.value.expose_secret(), key_form)
        {
            let at = match key.from {
                SecretFrom::Env(_) => "key_env",
                _ => "key_file",
            };
            t.issue_fix(
                Some(at),
                format!("gansu SM4 key ({key_form:?} form): {e} (SM4 密钥格式不对)"),
                Some("32 hex digits for key_form = \"hex\", 16 bytes of text for \"utf8\""),
            );
        }
        let iv_form = t.choice("iv_form", KeyForm::Utf8);
        let iv = t.text_or("iv", "1111111111111111");
        // The IV is not secret (the Java helper's is a constant), so its error may be precise.
        if let Err(e) = crate::crypto::parse_key(&iv, iv_form) {
            t.issue(Some("iv"), e.to_string());
        }
        let max = t.number_or("max_records_per_call", 500, (0, usize::MAX));
        if max == 0 || max > 500 {
            t.issue(
                Some("max_records_per_call"),
                "must be 1..=500: the platform takes at most 500 records per call (平台每次最多 500 条)",
            );
        }
        let legal_segment = segment(t, "legal_segment", "L");
        let natural_segment = segment(t, "natural_segment", "P");
        let envelope = t.choice("envelope", Envelope::Values);
        let wrapper_field = t.text_or("wrapper_field", "data");
        if envelope == Envelope::Wrapper && wrapper_field.trim().is_empty() {
            t.issue(
                Some("wrapper_field"),
                "envelope = \"wrapper\" needs a field name (需要字段名)",
            );
        }
        let resources: BTreeMap<String, String> = t.map_of("resources");
        for (dt, r) in &resources {
            if r.is_empty() || !r.chars().all(|c| c.is_ascii_alphanumeric()) {
                t.issue_in(
                    &["resources", dt],
                    "a resource id is letters and digits (资源编号只含字母和数字)",
                );
            }
        }
        GansuConfig {
            base_url: base_url.unwrap_or_default(),
            authorization,
            key,
            key_form,
            iv,
            iv_form,
            padding: t.choice("padding", Padding::Iso7816),
            encoding: t.choice("encoding", TextEncoding::Hex),
            envelope,
            wrapper_field,
            legal_segment,
            natural_segment,
            max_records_per_call: max,
            null_fields: t.choice("null_fields", NullFields::Empty),
            resources,
            subjects: t.map_of("subjects"),
            fatal_codes: t.list("fatal_codes").unwrap_or_else(|| vec![401, 403]),
            retry_codes: t
                .list("retry_codes")
                .unwrap_or_else(|| vec![500, 502, 503, 504]),
        }
    }
}

/// A URL path segment: letters, digits, `_` and `-`.
fn segment(t: &mut Table, key: &'static str, default: &str) -> String {
    let v = t.text_or(key, default);
    if !name_ok(&v) {
        t.issue(
            Some(key),
            "use letters, digits, _ and - only (只能用字母、数字、_ 和 -)",
        );
    }
    v
}

impl<'de> serde::Deserialize<'de> for GansuConfig {
    /// A `[gansu]` table alone, secrets not read (tests, the simulator's defaults).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::standalone(d, GansuConfig::read)
    }
}

impl<'de> serde::Deserialize<'de> for GdzwConfig {
    /// A `[gdzw]` table alone, secrets not read (tests of the platform code).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::standalone(d, GdzwConfig::read)
    }
}
