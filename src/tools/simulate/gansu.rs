//! The Gansu side of the simulator: checks the Authorization header, opens the envelope with
//! the configured SM4 settings, checks every record against the schema and answers as the
//! spec shows (`code` 200, `success`, `data.batchNum`, `data.id`).

use axum::http::{HeaderMap, StatusCode};
use indexmap::IndexMap;
use serde_json::{Value as Json, json};

use super::Ctx;
use crate::config::{Envelope, GansuConfig, LengthUnit};
use crate::schema::{DataType, FieldType, Subject};
use crate::upstream::gansu::Codec;
use secrecy::SecretString;

#[derive(Debug, Clone)]
pub struct GansuSim {
    /// Path before `/data/{L|P}/{resource id}`.
    pub base_path: String,
    pub authorization: String,
    /// The SM4 key in `settings.key_form`.
    pub key: String,
    /// Envelope, padding, encoding, IV and path segments, read as qianzhi reads `[gansu]`.
    pub settings: GansuConfig,
}

impl Default for GansuSim {
    fn default() -> Self {
        GansuSim {
            base_path: "/submit-server".into(),
            authorization: "sim-authorization".into(),
            key: "0123456789abcdeffedcba9876543210".into(),
            settings: default_settings(),
        }
    }
}

/// `[gansu]` with every default, for the simulator and the tests to adjust.
pub fn default_settings() -> GansuConfig {
    toml::from_str("base_url = \"http://127.0.0.1:1/submit-server\"\nauthorization_env = \"-\"\nkey_env = \"-\"\n")
        .expect("defaults parse")
}

/// One call the simulator accepted.
#[derive(Debug, Clone)]
pub struct GansuBatch {
    pub batch_num: String,
    pub id: String,
    pub resource_id: String,
    pub records: usize,
}

fn fail(status: StatusCode, code: i64, msg: &str) -> (StatusCode, String) {
    (
        status,
        json!({"code": code, "success": false, "data": null, "msg": msg}).to_string(),
    )
}

pub(super) fn respond(
    ctx: &Ctx,
    rest: &str,
    h: &HeaderMap,
    body: &str,
) -> (StatusCode, String, String) {
    let g = &ctx.cfg.gansu;
    let parts: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let [segment, resource] = parts.as_slice() else {
        let (s, t) = fail(StatusCode::NOT_FOUND, 404, "no such API");
        return (s, t, String::new());
    };
    let platform = ctx.catalog.platform("gansu");
    let dt = platform.and_then(|p| {
        p.data_types
            .values()
            .find(|d| d.resource_id.as_deref() == Some(*resource))
    });
    let Some(dt) = dt else {
        let (s, t) = fail(StatusCode::NOT_FOUND, 404, "no such resource");
        return (s, t, resource.to_string());
    };
    let want_segment = match dt.subject {
        Some(Subject::P) => &g.settings.natural_segment,
        _ => &g.settings.legal_segment,
    };
    if segment != want_segment {
        let (s, t) = fail(StatusCode::NOT_FOUND, 404, "no such API");
        return (s, t, dt.data_type.clone());
    }
    let auth = h.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(g.authorization.as_str()) {
        let (s, t) = fail(StatusCode::UNAUTHORIZED, 401, "授权信息无效");
        return (s, t, dt.data_type.clone());
    }
    let out = match check_call(ctx, dt, body) {
        Ok(records) => {
            let mut st = ctx.state.lock().expect("sim state");
            st.gansu_seq += 1;
            let day = crate::timefmt::now_beijing();
            let batch_num = format!("{}{:05}", day.format("%Y%m%d"), st.gansu_seq);
            let id = uuid::Uuid::new_v4().simple().to_string();
            st.accepted_count += records.len();
            st.gansu_batches.push(GansuBatch {
                batch_num: batch_num.clone(),
                id: id.clone(),
                resource_id: resource.to_string(),
                records: records.len(),
            });
            if ctx.cfg.keep_records {
                st.gansu_accepted
                    .entry(resource.to_string())
                    .or_default()
                    .extend(
                        records
                            .into_iter()
                            .map(|r| Json::Object(r.into_iter().collect())),
                    );
            }
            (
                StatusCode::OK,
                json!({
                    "code": 200,
                    "success": true,
                    "data": {
                        "id": id,
                        "createDate": crate::timefmt::fmt_spec(&day),
                        "batchNum": batch_num,
                    },
                    "msg": "操作成功",
                })
                .to_string(),
            )
        }
        Err(msg) => fail(StatusCode::OK, 400, &msg),
    };
    (out.0, out.1, dt.data_type.clone())
}

/// The records of a call, decrypted and typed by the schema, or why the call is refused.
fn check_call(ctx: &Ctx, dt: &DataType, body: &str) -> Result<Vec<IndexMap<String, Json>>, String> {
    let g = &ctx.cfg.gansu;
    let codec = Codec::new(&g.settings, &SecretString::from(g.key.clone()))
        .map_err(|e| format!("simulator key: {e}"))?;
    let array = codec
        .open_array(body)
        .map_err(|e| format!("报文解密失败：{e}"))?;
    let raw: Vec<Json> = match serde_json::from_str(&array) {
        Ok(Json::Array(a)) => a,
        _ => return Err("请求体不是 JSON 数组".into()),
    };
    let max = g.settings.max_records_per_call;
    if raw.is_empty() || raw.len() > max {
        return Err(format!("每次应上报 1 至 {max} 条，实为 {} 条", raw.len()));
    }
    let platform = ctx.catalog.platform("gansu").ok_or("no gansu catalog")?;
    let refuse = ctx.state.lock().expect("sim state").gansu_refuse.clone();
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let n = i + 1;
        let rec = match codec.envelope() {
            Envelope::Values => {
                let text = codec
                    .open_values(r)
                    .map_err(|e| format!("第 {n} 条记录解密失败：{e:#}"))?;
                typed(dt, text).map_err(|e| format!("第 {n} 条记录：{e}"))?
            }
            _ => match r {
                Json::Object(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                _ => return Err(format!("第 {n} 条记录不是 JSON 对象")),
            },
        };
        for (k, v) in &rec {
            let Some(f) = dt.field(k) else {
                return Err(format!("第 {n} 条记录含有未定义的字段 {k}"));
            };
            let ok = match f.ty {
                FieldType::Int | FieldType::Number => v.is_number() || is_blank(v),
                _ => v.is_string() || v.is_null(),
            };
            if !ok {
                return Err(format!("第 {n} 条记录字段 {k} 的类型不对"));
            }
        }
        // The request format sends empty optional fields as "": absent for the rules.
        let fields: serde_json::Map<String, Json> = rec
            .iter()
            .map(|(k, v)| (k.clone(), if is_blank(v) { Json::Null } else { v.clone() }))
            .collect();
        if let Some(v) = crate::validate::validate(&fields, dt, platform, LengthUnit::Chars)
            .into_iter()
            .next()
        {
            return Err(format!("第 {n} 条记录：{}", v.message));
        }
        if rec
            .values()
            .any(|v| v.as_str().is_some_and(|s| refuse.contains(s)))
        {
            return Err(format!("第 {n} 条记录业务校验不通过"));
        }
        out.push(rec);
    }
    Ok(out)
}

/// The values of `field` in a call's records, decrypted as [`check_call`] reads them.
pub(super) fn identities(ctx: &Ctx, body: &str, field: &str) -> std::collections::HashSet<String> {
    let g = &ctx.cfg.gansu;
    let Ok(codec) = Codec::new(&g.settings, &SecretString::from(g.key.clone())) else {
        return Default::default();
    };
    let raw = match codec.open_array(body).map(|a| serde_json::from_str(&a)) {
        Ok(Ok(Json::Array(a))) => a,
        _ => return Default::default(),
    };
    raw.iter()
        .filter_map(|r| {
            let v = match codec.envelope() {
                Envelope::Values => codec.open_values(r).ok()?.get(field).cloned(),
                _ => r.get(field).cloned(),
            }?;
            Some(v.as_str().map_or_else(|| v.to_string(), str::to_string))
        })
        .collect()
}

fn is_blank(v: &Json) -> bool {
    v.is_null() || v.as_str().is_some_and(str::is_empty)
}

/// A `values` record arrives as text only; numbers are read back by the schema's types.
fn typed(dt: &DataType, text: IndexMap<String, Json>) -> Result<IndexMap<String, Json>, String> {
    text.into_iter()
        .map(|(k, v)| {
            let ty = dt.field(&k).map(|f| f.ty);
            let v = match (ty, v) {
                (Some(FieldType::Number | FieldType::Int), Json::String(s)) if !s.is_empty() => {
                    serde_json::from_str::<serde_json::Number>(&s)
                        .map(Json::Number)
                        .map_err(|_| format!("字段 {k} 应为数值，实为 '{s}'"))?
                }
                (_, v) => v,
            };
            Ok((k, v))
        })
        .collect()
}
