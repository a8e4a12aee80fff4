//! Guangdong GDZW 0003-2019: gateway signing (6.3), batchSave calls (7.2–7.8) and the
//! reconciliation upload (7.9), offered to the pipeline as the `Gdzw` [`Upstream`].

use anyhow::{Result, bail};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::body::{CallRecords, join_array, split_array};
use super::{Pending, Receipt, Reconciliation, SubmitError, Upstream};
use crate::config::{GdzwConfig, LengthUnit, NullFields};
use crate::db::control::{Body, ReconRow};
use crate::schema::{Catalog, DataType, FieldType};
use secrecy::{ExposeSecret, SecretString};

/// x-tif-signature = upper(hex(sha256(timestamp + token + nonce + timestamp))), spec 6.3.2.
pub fn sign(timestamp: &str, token: &str, nonce: &str) -> String {
    let mut h = Sha256::new();
    h.update(timestamp.as_bytes());
    h.update(token.as_bytes());
    h.update(nonce.as_bytes());
    h.update(timestamp.as_bytes());
    hex::encode_upper(h.finalize())
}

#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(rename = "errCode", alias = "errcode")]
    err_code: Option<serde_json::Value>,
    #[serde(rename = "errMsg", alias = "errmsg", default)]
    err_msg: Option<String>,
}

/// Classifies an HTTP answer. Auth failures at the gateway are fatal; so are errCodes the
/// DBA has listed as such; any other non-zero errCode means the content was refused.
pub fn classify(status: u16, body: &[u8], fatal_codes: &[String]) -> Result<(), SubmitError> {
    let snippet = super::escape_answer(body, 300);
    match status {
        401 | 403 => {
            return Err(SubmitError::Fatal(format!(
                "gateway refused the credentials (HTTP {status}): {snippet}"
            )));
        }
        300..=399 => return Err(super::redirect_error(status, None, "gdzw.api_root")),
        408 | 429 => return Err(SubmitError::Retryable(format!("HTTP {status}: {snippet}"))),
        s if s >= 500 => return Err(SubmitError::Retryable(format!("HTTP {status}: {snippet}"))),
        s if !(200..300).contains(&s) => {
            return Err(SubmitError::Fatal(format!(
                "HTTP {status} (check gdzw.api_root and path_prefix): {snippet}"
            )));
        }
        _ => {}
    }
    let answer: Answer = serde_json::from_str(&super::answer_text(body)).map_err(|_| {
        SubmitError::Retryable(format!("answer is not the JSON of spec 7.2.5: {snippet}"))
    })?;
    let code = match answer.err_code {
        Some(serde_json::Value::String(s)) => s,
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => {
            return Err(SubmitError::Retryable(format!(
                "answer has no errCode: {snippet}"
            )));
        }
    };
    if code == "0" {
        return Ok(());
    }
    let msg = crate::mask::mask_pii(&answer.err_msg.unwrap_or_default());
    if fatal_codes.contains(&code) {
        return Err(SubmitError::Fatal(format!("errCode {code}: {msg}")));
    }
    Err(SubmitError::Rejected(format!("errCode {code}: {msg}")))
}

#[derive(Clone)]
pub struct GdzwClient {
    http: reqwest::Client,
    api_root: String,
    paasid: String,
    token: SecretString,
    path_prefix: String,
    reconciliation_path: String,
    fatal_codes: Vec<String>,
}

impl std::fmt::Debug for GdzwClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GdzwClient")
            .field("api_root", &self.api_root)
            .finish_non_exhaustive()
    }
}

impl GdzwClient {
    pub fn new(
        cfg: &GdzwConfig,
        token: SecretString,
        timeout: std::time::Duration,
    ) -> Result<Self> {
        let http = super::submit_client(timeout, &cfg.api_root)?;
        Ok(GdzwClient {
            http,
            api_root: cfg.api_root.trim_end_matches('/').to_string(),
            paasid: cfg.paasid.clone(),
            token,
            path_prefix: cfg.path_prefix.trim_matches('/').to_string(),
            reconciliation_path: cfg.reconciliation_path().trim_matches('/').to_string(),
            fatal_codes: cfg.fatal_err_codes.clone(),
        })
    }

    pub fn batch_url(&self, endpoint: &str) -> String {
        format!(
            "{}/{}/{}/batchSave",
            self.api_root, self.path_prefix, endpoint
        )
    }

    async fn post(&self, url: &str, body: reqwest::Body) -> Result<(), SubmitError> {
        let ts = chrono::Utc::now().timestamp().to_string();
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let sig = sign(&ts, self.token.expose_secret(), &nonce);
        let resp = self
            .http
            .post(url)
            .header("x-tif-paasid", &self.paasid)
            .header("x-tif-timestamp", &ts)
            .header("x-tif-nonce", &nonce)
            .header("x-tif-signature", sig)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                let chain = super::error_chain(&e.without_url());
                SubmitError::Retryable(crate::mask::mask_pii(&format!(
                    "cannot reach {url}: {chain}"
                )))
            })?;
        let status = resp.status().as_u16();
        if resp.status().is_redirection() {
            let to = resp.headers().get(reqwest::header::LOCATION);
            let to = to.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            return Err(super::redirect_error(
                status,
                to.as_deref(),
                "gdzw.api_root",
            ));
        }
        let body = resp.bytes().await.map_err(|e| {
            let chain = super::error_chain(&e.without_url());
            SubmitError::Retryable(format!("answer from {url} broke off: {chain}"))
        })?;
        classify(status, &body, &self.fatal_codes)
    }

    /// Spec 7.9: the rows as the reconciliation schema file spells them (keys and JSON types),
    /// so a DBA who overlays it with the 7.9.6 example's spelling is followed.
    pub async fn upload_reconciliation(
        &self,
        dt: &DataType,
        rows: &[ReconRow],
    ) -> Result<(), SubmitError> {
        let body = rows
            .iter()
            .map(|r| reconciliation_record(dt, r))
            .collect::<Result<Vec<_>>>()
            .map_err(|e| SubmitError::Fatal(format!("{e:#}")))?;
        let url = format!("{}/{}", self.api_root, self.reconciliation_path);
        let body = serde_json::Value::Array(body).to_string();
        self.post(&url, body.into()).await
    }
}

/// Guangdong as the pipeline sees it: the client with the `[gdzw]` settings, and the
/// reconciliation data type of the schema catalog.
pub struct Gdzw {
    client: GdzwClient,
    cfg: GdzwConfig,
    reconciliation: DataType,
}

impl Gdzw {
    /// Reads the token; fails when it is unreadable.
    pub fn new(cfg: &GdzwConfig, catalog: &Catalog, timeout: std::time::Duration) -> Result<Gdzw> {
        let client = GdzwClient::new(cfg, cfg.token.value.clone(), timeout)?;
        let Some(reconciliation) = catalog.data_type("gdzw", "reconciliation") else {
            bail!("the gdzw schemas have no reconciliation data type");
        };
        Ok(Gdzw {
            client,
            cfg: cfg.clone(),
            reconciliation: reconciliation.clone(),
        })
    }
}

/// A call body is a plain JSON array of records (7.2.4); a refused call splits into its
/// records' texts and joins back byte for byte.
impl Upstream for Gdzw {
    fn name(&self) -> &'static str {
        "gdzw"
    }

    fn fatal_codes_setting(&self) -> &'static str {
        "gdzw.fatal_err_codes"
    }

    fn records_per_call(&self) -> usize {
        self.cfg.max_records_per_call
    }

    fn null_fields(&self) -> NullFields {
        self.cfg.null_fields
    }

    fn length_unit(&self) -> LengthUnit {
        self.cfg.length_unit
    }

    fn call_url(&self, dt: &DataType) -> Result<String> {
        Ok(self.client.batch_url(&dt.endpoint))
    }

    fn encode(&self, records: &CallRecords<'_>) -> Result<String> {
        Ok(records.array(self.cfg.null_fields))
    }

    fn split(&self, body: &str) -> Result<Vec<String>> {
        split_array(body)
    }

    fn join(&self, parts: &[&str]) -> Result<String> {
        Ok(join_array(parts))
    }

    fn post<'a>(&'a self, url: &'a str, body: Body) -> Pending<'a, Option<Receipt>> {
        let body = super::http_body(body);
        Box::pin(async move { self.client.post(url, body).await.map(|()| None) })
    }

    /// Configured in `reconciliation_tables`, else the schema's, else `up_pro_<type>_v3`.
    fn table_name(&self, dt: &DataType) -> String {
        self.cfg
            .reconciliation_tables
            .get(&dt.data_type)
            .cloned()
            .or_else(|| dt.reconciliation_table.clone())
            .unwrap_or_else(|| format!("up_pro_{}_v3", dt.data_type))
    }

    fn reconciliation(&self) -> Option<&dyn Reconciliation> {
        Some(self)
    }
}

impl Reconciliation for Gdzw {
    fn upload_each_batch(&self) -> bool {
        self.cfg.reconciliation_upload
    }

    fn rows_per_call(&self) -> usize {
        self.cfg.max_records_per_call.max(1)
    }

    fn upload<'a>(&'a self, rows: &'a [ReconRow]) -> Pending<'a, ()> {
        Box::pin(
            self.client
                .upload_reconciliation(&self.reconciliation, rows),
        )
    }
}

/// What a field of the reconciliation data type carries, read from its code whatever its
/// case: 表17 spells `Table_name` / `Cd_batch` / `Cd_count` / `Cd_time`, the 7.9.6 example
/// `Table_Name` / `Cd_Batch` / `Cd_Count` / `Cd_Time`.
fn reconciliation_value(code: &str, r: &ReconRow) -> Option<ReconValue> {
    Some(match code.to_ascii_lowercase().as_str() {
        "table_name" => ReconValue::Text(r.table_name.clone()),
        "cd_batch" => ReconValue::Text(r.cd_batch.clone()),
        "cd_count" => ReconValue::Count(r.cd_count),
        "cd_time" => ReconValue::Text(r.cd_time.clone()),
        _ => return None,
    })
}

enum ReconValue {
    Text(String),
    Count(i64),
}

/// One reconciliation record in the schema's field order, each value of its field's type:
/// an `int` or `number` field is a JSON number, any other a JSON string (`"10"`).
pub fn reconciliation_record(dt: &DataType, r: &ReconRow) -> Result<serde_json::Value> {
    let mut obj = serde_json::Map::new();
    for f in &dt.fields {
        let Some(v) = reconciliation_value(&f.code, r) else {
            bail!(
                "reconciliation field {} is not one of Table_name, Cd_batch, Cd_count, Cd_time \
                 (对账字段 {} 不是表17的字段)",
                f.code,
                f.code
            );
        };
        let numeric = matches!(f.ty, FieldType::Int | FieldType::Number);
        let json = match v {
            ReconValue::Count(n) if numeric => serde_json::Value::from(n),
            ReconValue::Count(n) => serde_json::Value::String(n.to_string()),
            ReconValue::Text(t) => serde_json::Value::String(t),
        };
        obj.insert(f.code.clone(), json);
    }
    Ok(serde_json::Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciliation_follows_the_schema_file() {
        let row = ReconRow {
            cd_batch: "11620000MB199916XB2026112200001".into(),
            table_name: "up_pro_accept_v3".into(),
            cd_count: 10,
            cd_time: "2026-11-22 10:00:00".into(),
        };
        let table17 = crate::schema::Catalog::load(None).unwrap();
        let dt = table17.data_type("gdzw", "reconciliation").unwrap();
        assert_eq!(
            reconciliation_record(dt, &row).unwrap().to_string(),
            r#"{"Table_name":"up_pro_accept_v3","Cd_batch":"11620000MB199916XB2026112200001","Cd_count":10,"Cd_time":"2026-11-22 10:00:00"}"#
        );
        // The 7.9.6 example's spelling, with the count as text.
        let mut example = dt.clone();
        for (f, code) in
            example
                .fields
                .iter_mut()
                .zip(["Table_Name", "Cd_Batch", "Cd_Count", "Cd_Time"])
        {
            f.code = code.into();
        }
        example.fields[2].ty = FieldType::String;
        assert_eq!(
            reconciliation_record(&example, &row).unwrap().to_string(),
            r#"{"Table_Name":"up_pro_accept_v3","Cd_Batch":"11620000MB199916XB2026112200001","Cd_Count":"10","Cd_Time":"2026-11-22 10:00:00"}"#
        );
        example.fields[0].code = "TableName".into();
        assert!(reconciliation_record(&example, &row).is_err());
    }

    #[test]
    fn signature_follows_spec_formula() {
        // The formula spelled out: the timestamp goes both first and last.
        let ts = "1561017876";
        let s = sign(ts, "tok", "abc");
        let expect = hex::encode_upper(Sha256::digest(b"1561017876tokabc1561017876"));
        assert_eq!(s, expect);
        assert_eq!(s.len(), 64);
        assert!(
            s.chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
        // Published SHA-256 of the empty string, so the digest itself is checked too.
        assert_eq!(
            sign("", "", ""),
            "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
        );
        assert_ne!(sign(ts, "tok", "abd"), s);
    }

    #[test]
    fn classification() {
        let none: Vec<String> = vec![];
        let fatal = vec!["40001".to_string()];
        type Case<'a> = (u16, &'a str, &'a [String], Result<(), &'a str>);
        let cases: Vec<Case> = vec![
            (200, r#"{"errCode":"0","errMsg":""}"#, &none, Ok(())),
            (200, r#"{"errCode":0}"#, &none, Ok(())),
            (
                200,
                r#"{"errCode":"1","errMsg":"RowGuid重复"}"#,
                &none,
                Err("rejected"),
            ),
            (
                200,
                r#"{"errCode":"40001","errMsg":"token无效"}"#,
                &fatal,
                Err("fatal"),
            ),
            (200, "<html>proxy</html>", &none, Err("retryable")),
            (
                200,
                "\u{feff}{\"errCode\":\"0\",\"errMsg\":\"\"}",
                &none,
                Ok(()),
            ),
            (200, "\u{feff}{\"errCode\":\"1\"}", &none, Err("rejected")),
            (302, "", &none, Err("fatal")),
            (301, r#"{"errCode":"0"}"#, &none, Err("fatal")),
            (307, "", &none, Err("fatal")),
            (401, "", &none, Err("fatal")),
            (403, "{}", &none, Err("fatal")),
            (404, "", &none, Err("fatal")),
            (429, "", &none, Err("retryable")),
            (502, "", &none, Err("retryable")),
            (503, "", &none, Err("retryable")),
        ];
        for (status, body, codes, want) in cases {
            let got = classify(status, body.as_bytes(), codes);
            let kind = match &got {
                Ok(()) => Ok(()),
                Err(SubmitError::Rejected(_)) => Err("rejected"),
                Err(SubmitError::Fatal(_)) => Err("fatal"),
                Err(SubmitError::Retryable(_)) => Err("retryable"),
            };
            assert_eq!(kind, want, "{status} {body}: {got:?}");
        }
    }
}
