//! Gansu credit platform (甘肃省信用信息共享平台) submission: Authorization header, SM4-CBC
//! envelopes, `{base}/data/{L|P}/{resource id}` calls and their `{code, success, data}` answers,
//! offered to the pipeline as the `Gansu` [`Upstream`].

use anyhow::{Context, Result, bail};
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value as Json;

use super::body::{CallRecords, join_array};
use super::{Pending, Receipt, SubmitError, Upstream};
use crate::config::{Envelope, GansuConfig, NullFields};
use crate::crypto::{Sm4Cbc, TextEncoding, parse_key};
use crate::db::control::Body;
use crate::schema::DataType;
use secrecy::{ExposeSecret, SecretString};

/// Encryption and envelope of call bodies. Encryption is deterministic (fixed IV), so a
/// body rebuilt from the same records is byte-identical: splitting a refused call and
/// resending a stored one both send exactly what was stored.
#[derive(Debug, Clone)]
pub struct Codec {
    sm4: Sm4Cbc,
    encoding: TextEncoding,
    envelope: Envelope,
    wrapper_field: String,
}

impl Codec {
    /// The key error never quotes the key (see `CryptoError`).
    pub fn new(cfg: &GansuConfig, key: &SecretString) -> Result<Codec> {
        let key = parse_key(key.expose_secret(), cfg.key_form)
            .map_err(|e| anyhow::anyhow!("gansu SM4 key ({:?} form): {e}", cfg.key_form))?;
        let iv = parse_key(&cfg.iv, cfg.iv_form).context("gansu.iv")?;
        Ok(Codec {
            sm4: Sm4Cbc::new(key, iv, cfg.padding),
            encoding: cfg.encoding,
            envelope: cfg.envelope,
            wrapper_field: cfg.wrapper_field.clone(),
        })
    }

    pub fn envelope(&self) -> Envelope {
        self.envelope
    }

    fn encrypt(&self, plain: &str) -> String {
        self.sm4.encrypt_to_string(plain.as_bytes(), self.encoding)
    }

    fn decrypt(&self, text: &str) -> Result<String> {
        let plain = self.sm4.decrypt_from_str(text, self.encoding)?;
        String::from_utf8(plain).context("decrypted text is not UTF-8")
    }

    /// The call body for plaintext records (each a JSON object's text).
    pub fn seal(&self, records: &[&str]) -> Result<String> {
        match self.envelope {
            Envelope::Values => {
                let mut out = String::with_capacity(records.iter().map(|r| r.len() * 3).sum());
                out.push('[');
                for (i, r) in records.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&self.seal_values(r)?);
                }
                out.push(']');
                Ok(out)
            }
            Envelope::Body => Ok(self.encrypt(&join_array(records))),
            Envelope::Wrapper => {
                let mut m = serde_json::Map::new();
                m.insert(
                    self.wrapper_field.clone(),
                    Json::String(self.encrypt(&join_array(records))),
                );
                Ok(Json::Object(m).to_string())
            }
        }
    }

    /// Every value's text is encrypted: strings as they are, numbers as their JSON text;
    /// null stays null (there is nothing to hide and the platform's reading is unknown).
    fn seal_values(&self, record: &str) -> Result<String> {
        let obj: IndexMap<String, Json> =
            serde_json::from_str(record).context("record is not a JSON object")?;
        let sealed: IndexMap<String, Json> = obj
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Json::Null => Json::Null,
                    Json::String(s) => Json::String(self.encrypt(&s)),
                    other => Json::String(self.encrypt(&other.to_string())),
                };
                (k, v)
            })
            .collect();
        Ok(serde_json::to_string(&sealed)?)
    }

    /// The units a refused call is split into: sealed records for `values` (each is
    /// self-contained), plaintext records for `body` and `wrapper` (resealed by [`Self::join`]).
    pub fn parts(&self, body: &str) -> Result<Vec<String>> {
        let array = match self.envelope {
            Envelope::Values => body.to_string(),
            _ => self.open_array(body)?,
        };
        let raw: Vec<&serde_json::value::RawValue> =
            serde_json::from_str(&array).context("call body is not a JSON array")?;
        Ok(raw.iter().map(|r| r.get().to_string()).collect())
    }

    pub fn join(&self, parts: &[&str]) -> Result<String> {
        match self.envelope {
            Envelope::Values => Ok(join_array(parts)),
            _ => self.seal(parts),
        }
    }

    /// The plaintext JSON array inside a `body` or `wrapper` envelope.
    pub fn open_array(&self, body: &str) -> Result<String> {
        match self.envelope {
            Envelope::Body => self.decrypt(body),
            Envelope::Wrapper => {
                let v: Json = serde_json::from_str(body).context("body is not JSON")?;
                let c = v
                    .get(&self.wrapper_field)
                    .and_then(Json::as_str)
                    .with_context(|| format!("body has no string field {}", self.wrapper_field))?;
                self.decrypt(c)
            }
            Envelope::Values => Ok(body.to_string()),
        }
    }

    /// Decrypts a `values` record: every value comes back as text (or null).
    pub fn open_values(&self, record: &Json) -> Result<IndexMap<String, Json>> {
        let Json::Object(m) = record else {
            bail!("record is not a JSON object");
        };
        m.iter()
            .map(|(k, v)| {
                let v = match v {
                    Json::Null => Json::Null,
                    Json::String(s) => Json::String(
                        self.decrypt(s)
                            .with_context(|| format!("value of {k} does not decrypt"))?,
                    ),
                    _ => bail!("value of {k} is not encrypted text"),
                };
                Ok((k.clone(), v))
            })
            .collect()
    }

    pub fn content_type(&self) -> &'static str {
        match self.envelope {
            Envelope::Body => "text/plain;charset=UTF-8",
            _ => "application/json;charset=UTF-8",
        }
    }
}

#[derive(Debug, Deserialize)]
struct Answer {
    code: Option<Json>,
    success: Option<bool>,
    data: Option<Json>,
    msg: Option<String>,
}

fn text_of(v: Option<&Json>) -> String {
    match v {
        Some(Json::String(s)) => s.clone(),
        Some(Json::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Classifies an answer. The spec shows only success (`code` 200, `success` true, `data`
/// with `batchNum` and `id`); the failure codes are settings, defaulting to the conventions
/// of the answer format's framework (401/403 auth, 5xx server trouble).
pub fn classify(
    status: u16,
    body: &[u8],
    fatal_codes: &[i64],
    retry_codes: &[i64],
) -> Result<Receipt, SubmitError> {
    let snippet = super::escape_answer(body, 300);
    match status {
        401 | 403 => {
            return Err(SubmitError::Fatal(format!(
                "the platform refused the Authorization (HTTP {status}): {snippet}"
            )));
        }
        300..=399 => return Err(super::redirect_error(status, None, "gansu.base_url")),
        404 => {
            return Err(SubmitError::Fatal(format!(
                "HTTP 404 (check gansu.base_url and the data type's resource id): {snippet}"
            )));
        }
        408 | 429 => return Err(SubmitError::Retryable(format!("HTTP {status}: {snippet}"))),
        s if s >= 500 => return Err(SubmitError::Retryable(format!("HTTP {status}: {snippet}"))),
        _ => {}
    }
    let Ok(answer) = serde_json::from_str::<Answer>(&super::answer_text(body)) else {
        return Err(if (200..300).contains(&status) {
            SubmitError::Retryable(format!(
                "answer is not the platform's JSON (a proxy?): {snippet}"
            ))
        } else {
            SubmitError::Fatal(format!("HTTP {status}: {snippet}"))
        });
    };
    let code = match &answer.code {
        Some(Json::Number(n)) => n.as_i64(),
        Some(Json::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    let msg = crate::mask::mask_pii(answer.msg.as_deref().unwrap_or(""));
    if code == Some(200) && answer.success == Some(true) {
        let data = answer.data.unwrap_or(Json::Null);
        return Ok(Receipt {
            batch_num: text_of(data.get("batchNum")),
            id: text_of(data.get("id")),
        });
    }
    let code_text = code.map(|c| c.to_string()).unwrap_or_else(|| "?".into());
    match code {
        Some(c) if fatal_codes.contains(&c) => Err(SubmitError::Fatal(format!(
            "code {c} (Authorization refused?): {msg}"
        ))),
        Some(c) if retry_codes.contains(&c) => {
            Err(SubmitError::Retryable(format!("code {c}: {msg}")))
        }
        _ => Err(SubmitError::Rejected(format!("code {code_text}: {msg}"))),
    }
}

#[derive(Clone)]
pub struct GansuClient {
    http: reqwest::Client,
    base_url: String,
    authorization: SecretString,
    pub codec: Codec,
    fatal_codes: Vec<i64>,
    retry_codes: Vec<i64>,
}

impl std::fmt::Debug for GansuClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GansuClient")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl GansuClient {
    /// Takes both secrets as the configuration read them; fails when the key is malformed.
    pub fn from_config(cfg: &GansuConfig, timeout: std::time::Duration) -> Result<Self> {
        let authorization = cfg.authorization.value.clone();
        let codec = Codec::new(cfg, &cfg.key.value)?;
        let http = super::submit_client(timeout, &cfg.base_url)?;
        Ok(GansuClient {
            http,
            base_url: cfg.base_url.trim_end_matches('/').to_string(),
            authorization,
            codec,
            fatal_codes: cfg.fatal_codes.clone(),
            retry_codes: cfg.retry_codes.clone(),
        })
    }

    pub fn url(&self, segment: &str, resource_id: &str) -> String {
        format!("{}/data/{segment}/{resource_id}", self.base_url)
    }

    /// One call with a body taken from the outbox as it is.
    pub async fn post(&self, url: &str, body: reqwest::Body) -> Result<Receipt, SubmitError> {
        let resp = self
            .http
            .post(url)
            .header("Authorization", self.authorization.expose_secret())
            .header("Content-Type", self.codec.content_type())
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
                "gansu.base_url",
            ));
        }
        let body = resp.bytes().await.map_err(|e| {
            let chain = super::error_chain(&e.without_url());
            SubmitError::Retryable(format!("answer from {url} broke off: {chain}"))
        })?;
        classify(status, &body, &self.fatal_codes, &self.retry_codes)
    }
}

/// Gansu as the pipeline sees it: the client with the `[gansu]` settings.
pub struct Gansu {
    client: GansuClient,
    cfg: GansuConfig,
}

impl Gansu {
    /// Reads both secrets; fails when either is unreadable or the key is malformed.
    pub fn new(cfg: &GansuConfig, timeout: std::time::Duration) -> Result<Gansu> {
        Ok(Gansu {
            client: GansuClient::from_config(cfg, timeout)?,
            cfg: cfg.clone(),
        })
    }
}

/// Records are encrypted when the call is built, so the outbox holds exactly the bytes sent;
/// encryption is deterministic, so a refused call's halves rejoin byte for byte. Gansu has no
/// reconciliation call.
impl Upstream for Gansu {
    fn name(&self) -> &'static str {
        "gansu"
    }

    fn fatal_codes_setting(&self) -> &'static str {
        "gansu.fatal_codes"
    }

    fn records_per_call(&self) -> usize {
        self.cfg.max_records_per_call
    }

    fn null_fields(&self) -> NullFields {
        self.cfg.null_fields
    }

    fn call_url(&self, dt: &DataType) -> Result<String> {
        let (segment, resource) = self.cfg.route(dt).ok_or_else(|| {
            anyhow::anyhow!("data type {} has no resource id or subject", dt.data_type)
        })?;
        Ok(self.client.url(&segment, &resource))
    }

    fn encode(&self, records: &CallRecords<'_>) -> Result<String> {
        let plain = records.texts(self.cfg.null_fields);
        let refs: Vec<&str> = plain.iter().map(String::as_str).collect();
        self.client.codec.seal(&refs)
    }

    fn split(&self, body: &str) -> Result<Vec<String>> {
        self.client.codec.parts(body)
    }

    fn join(&self, parts: &[&str]) -> Result<String> {
        self.client.codec.join(parts)
    }

    fn post<'a>(&'a self, url: &'a str, body: Body) -> Pending<'a, Option<Receipt>> {
        let body = super::http_body(body);
        Box::pin(async move { self.client.post(url, body).await.map(Some) })
    }

    /// The schema's reconciliation table, else the data type's name.
    fn table_name(&self, dt: &DataType) -> String {
        dt.reconciliation_table
            .clone()
            .unwrap_or_else(|| dt.data_type.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KeyForm, Padding};

    fn cfg(envelope: Envelope, padding: Padding, encoding: TextEncoding) -> GansuConfig {
        let text =
            "base_url = \"http://127.0.0.1:1/s\"\nkey_env = \"K\"\nauthorization_env = \"A\"\n";
        let mut c: GansuConfig = toml::from_str(text).unwrap();
        c.envelope = envelope;
        c.padding = padding;
        c.encoding = encoding;
        c
    }

    const KEY: &str = "c8e8e733ac8c4043a1d6464ae82d70e6";

    #[test]
    fn default_values_envelope_matches_the_java_helper() {
        let c = cfg(Envelope::Values, Padding::Iso7816, TextEncoding::Hex);
        let codec = Codec::new(&c, &SecretString::from(KEY)).unwrap();
        let body = codec
            .seal(&[r#"{"a":"I Love You","n":12.5,"z":null}"#])
            .unwrap();
        // The widely copied Java helper SM4EncForCBC turns "I Love You" under this key, IV
        // "1111111111111111" and 0x80 padding into 046be2…0c: the defaults are the helper's.
        assert_eq!(
            body,
            format!(
                r#"[{{"a":"046be2948f89c9f78e9248fc562a9d0c","n":"{}","z":null}}]"#,
                Sm4Cbc::new(
                    parse_key(KEY, KeyForm::Hex).unwrap(),
                    *b"1111111111111111",
                    Padding::Iso7816
                )
                .encrypt_to_string(b"12.5", TextEncoding::Hex)
            )
        );
        let rec: Json = serde_json::from_str::<Vec<Json>>(&body).unwrap().remove(0);
        let open = codec.open_values(&rec).unwrap();
        assert_eq!(open["a"], Json::from("I Love You"));
        assert_eq!(open["n"], Json::from("12.5"));
    }

    #[test]
    fn envelopes_round_trip_and_split_byte_identically() {
        let recs = [
            r#"{"a":"甲","n":1}"#,
            r#"{"a":"乙","n":2.5}"#,
            r#"{"a":"丙","n":3}"#,
        ];
        for env in [Envelope::Body, Envelope::Values, Envelope::Wrapper] {
            for pad in [Padding::Pkcs7, Padding::Iso7816] {
                for enc in [TextEncoding::Hex, TextEncoding::Base64] {
                    let codec = Codec::new(&cfg(env, pad, enc), &SecretString::from(KEY)).unwrap();
                    let body = codec.seal(&recs).unwrap();
                    assert!(!body.contains('甲'), "{env:?}: plaintext leaked");
                    let parts = codec.parts(&body).unwrap();
                    assert_eq!(parts.len(), 3, "{env:?}");
                    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
                    assert_eq!(codec.join(&refs).unwrap(), body, "{env:?} {pad:?} {enc:?}");
                    let half = codec.join(&refs[..1]).unwrap();
                    assert_eq!(half, codec.seal(&recs[..1]).unwrap());
                    if env != Envelope::Values {
                        assert_eq!(codec.open_array(&body).unwrap(), join_array(&recs));
                    }
                    if env == Envelope::Wrapper {
                        assert!(body.starts_with("{\"data\":\""), "{body}");
                    }
                }
            }
        }
        let codec = Codec::new(
            &cfg(Envelope::Body, Padding::Iso7816, TextEncoding::Hex),
            &SecretString::from(KEY),
        )
        .unwrap();
        let other = Codec::new(
            &cfg(Envelope::Body, Padding::Iso7816, TextEncoding::Hex),
            &SecretString::from("00000000000000000000000000000000"),
        )
        .unwrap();
        assert!(other.open_array(&codec.seal(&recs).unwrap()).is_err());
    }

    #[test]
    fn key_errors_do_not_quote_the_key() {
        let c = cfg(Envelope::Values, Padding::Iso7816, TextEncoding::Hex);
        let err = Codec::new(&c, &SecretString::from("secret-key-zz")).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            !text.contains("secret-key-zz") && text.contains("32 hex"),
            "{text}"
        );
    }

    #[test]
    fn classification() {
        let fatal = [401, 403];
        let retry = [500, 502, 503, 504];
        let ok = r#"{"code":200,"success":true,"data":{"id":"59169f5af2637619ca8930d817ab0ec1","createDate":"2022-07-25 14:57:05","batchNum":"2022072500001"},"msg":"操作成功"}"#;
        assert_eq!(
            classify(200, ok.as_bytes(), &fatal, &retry),
            Ok(Receipt {
                batch_num: "2022072500001".into(),
                id: "59169f5af2637619ca8930d817ab0ec1".into()
            })
        );
        let cases: Vec<(u16, &str, &str)> = vec![
            (200, r#"{"code":200,"success":false,"msg":"x"}"#, "rejected"),
            (
                200,
                r#"{"code":400,"success":false,"msg":"数据格式错误"}"#,
                "rejected",
            ),
            (
                400,
                r#"{"code":400,"success":false,"msg":"参数错误"}"#,
                "rejected",
            ),
            (
                200,
                r#"{"code":401,"success":false,"msg":"授权信息无效"}"#,
                "fatal",
            ),
            (200, r#"{"code":"403","success":false}"#, "fatal"),
            (401, "", "fatal"),
            (403, "denied", "fatal"),
            (404, "", "fatal"),
            (
                200,
                r#"{"code":500,"success":false,"msg":"系统繁忙"}"#,
                "retryable",
            ),
            (502, "", "retryable"),
            (503, "", "retryable"),
            (429, "", "retryable"),
            (200, "<html>proxy</html>", "retryable"),
            (418, "teapot", "fatal"),
            (302, ok, "fatal"),
            (301, "", "fatal"),
            (
                200,
                "\u{feff}{\"code\":200,\"success\":true,\"data\":{}}",
                "ok",
            ),
        ];
        for (status, body, want) in cases {
            let got = classify(status, body.as_bytes(), &fatal, &retry);
            let kind = match &got {
                Ok(_) => "ok",
                Err(SubmitError::Rejected(_)) => "rejected",
                Err(SubmitError::Fatal(_)) => "fatal",
                Err(SubmitError::Retryable(_)) => "retryable",
            };
            assert_eq!(kind, want, "{status} {body}: {got:?}");
        }
    }
}
