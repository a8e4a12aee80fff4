//! A strict local Guangdong gateway (GDZW 0003-2019): checks the x-tif-* signature, the call
//! size and every record against the schema, and remembers what it accepted. The Gansu
//! platform's API is served by the same server (see [`gansu`]).

pub mod gansu;

use anyhow::Result;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::config::LengthUnit;
use crate::schema::{Catalog, FieldType};
use crate::upstream::gdzw::sign;
use crate::value::Field;

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Path part of API_ROOT, e.g. "/ebus/tysb-sjcj".
    pub base_path: String,
    pub paasid: String,
    pub token: String,
    pub path_prefix: String,
    pub max_skew_secs: i64,
    pub max_records: usize,
    /// Keep accepted records in memory (off for benchmarks: count only).
    pub keep_records: bool,
    /// The same schema overlay directory qianzhi uses, so corrected data types are checked
    /// as the DBA defined them.
    pub schema_dir: Option<std::path::PathBuf>,
    pub gansu: gansu::GansuSim,
    /// Every answer waits this long before it leaves, as over a wide-area network; other
    /// connections are served meanwhile.
    pub latency: std::time::Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            base_path: "/ebus/tysb-sjcj".into(),
            paasid: "tysb-sjcj".into(),
            token: "sim-token".into(),
            path_prefix: "uppro".into(),
            max_skew_secs: 180,
            max_records: 99,
            keep_records: true,
            schema_dir: None,
            gansu: Default::default(),
            latency: std::time::Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReceivedCall {
    pub path: String,
    pub data_type: String,
    pub body: String,
    pub status: u16,
    pub answer: String,
}

/// One answer given as it is: status, an optional Location header, body.
#[derive(Debug, Clone, Default)]
pub struct Scripted {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

/// Answers every request with `{"errCode":"0"}`: where a scripted redirect points, so a
/// client that followed it would see a success.
pub const REDIRECT_TARGET: &str = "/_sim/redirected";

#[derive(Debug, Default)]
pub struct SimState {
    pub calls: Vec<ReceivedCall>,
    /// Accepted records per data type, in arrival order.
    pub accepted: HashMap<String, Vec<Json>>,
    pub accepted_count: usize,
    pub reconciliations: Vec<Json>,
    /// Records with these RowGuids are refused (a platform-side business rule).
    pub refuse_row_guids: HashSet<String>,
    /// HTTP statuses to answer the next calls with, before looking at them.
    pub fail_next: VecDeque<u16>,
    /// HTTP statuses to answer the next reconciliation uploads with.
    pub fail_next_reconciliation: VecDeque<u16>,
    /// A reconciliation upload that carries one of these Cd_batch values is refused as a
    /// whole (errCode 1), as a platform refuses a batchSave with one bad record.
    pub refuse_reconciliation_batches: HashSet<String>,
    /// Whole answers for the next calls, before looking at them.
    pub script: VecDeque<Scripted>,
    /// An answer for every call until cleared (a gateway that refuses everything in-band).
    pub answer_all: Option<Scripted>,
    /// Put in front of every answer the platform itself gives (e.g. a UTF-8 byte-order mark).
    pub answer_prefix: String,
    /// Records with these RowGuids are refused with one message that does not name them.
    pub refuse_plain: HashSet<String>,
    nonces: HashSet<String>,
    /// Gansu: accepted records per resource id, decrypted and typed, in arrival order.
    pub gansu_accepted: HashMap<String, Vec<Json>>,
    /// Gansu: every accepted call with the batch number and id it was answered with.
    pub gansu_batches: Vec<gansu::GansuBatch>,
    /// Gansu: a call with a record holding one of these text values is refused.
    pub gansu_refuse: HashSet<String>,
    gansu_seq: u64,
    /// Whole answers for calls by arrival number (0: the first call the simulator received).
    pub answer_at: BTreeMap<usize, Scripted>,
    /// Calls received so far (data and reconciliation).
    pub arrivals: usize,
    /// Data calls received and not answered yet (reconciliation uploads are not counted:
    /// qianzhi sends them beside its `max_in_flight` data calls), and the most at once.
    pub in_flight: usize,
    pub max_in_flight: usize,
    /// Rows that arrived in a call while another call carrying them was still unanswered:
    /// by RowGuid (Guangdong) or by the value of `gansu_identity` (Gansu). Tracked when the
    /// simulator keeps records.
    pub overlaps: Vec<String>,
    /// Gansu records carry no RowGuid: the field whose value stands for a row's identity.
    pub gansu_identity: Option<String>,
    unanswered: HashMap<String, usize>,
}

impl SimState {
    pub fn accepted_of(&self, data_type: &str) -> Vec<Json> {
        self.accepted.get(data_type).cloned().unwrap_or_default()
    }
    pub fn gansu_accepted_of(&self, resource_id: &str) -> Vec<Json> {
        self.gansu_accepted
            .get(resource_id)
            .cloned()
            .unwrap_or_default()
    }
    pub fn accepted_total(&self) -> usize {
        self.accepted.values().map(Vec::len).sum()
    }

    /// A data call arrived carrying these rows.
    fn call_in(&mut self, rows: &HashSet<String>) {
        self.in_flight += 1;
        self.max_in_flight = self.max_in_flight.max(self.in_flight);
        for r in rows {
            let n = self.unanswered.entry(r.clone()).or_default();
            if *n > 0 {
                self.overlaps.push(r.clone());
            }
            *n += 1;
        }
    }

    /// A data call's answer leaves.
    fn call_out(&mut self, rows: &HashSet<String>) {
        self.in_flight -= 1;
        for r in rows {
            if let Some(n) = self.unanswered.get_mut(r) {
                *n -= 1;
                if *n == 0 {
                    self.unanswered.remove(r);
                }
            }
        }
    }
}

#[derive(Clone)]
struct Ctx {
    cfg: Arc<SimConfig>,
    catalog: Arc<Catalog>,
    state: Arc<Mutex<SimState>>,
}

pub struct Simulator {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<SimState>>,
    pub cfg: Arc<SimConfig>,
    task: tokio::task::JoinHandle<()>,
}

impl Simulator {
    pub fn api_root(&self) -> String {
        format!("http://{}{}", self.addr, self.cfg.base_path)
    }
    /// What `[gansu] base_url` should be.
    pub fn gansu_base_url(&self) -> String {
        format!("http://{}{}", self.addr, self.cfg.gansu.base_path)
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start(cfg: SimConfig, listen: &str) -> Result<Simulator> {
    let catalog = Arc::new(Catalog::load(cfg.schema_dir.as_deref())?);
    let state = Arc::new(Mutex::new(SimState::default()));
    let cfg = Arc::new(cfg);
    let ctx = Ctx {
        cfg: cfg.clone(),
        catalog,
        state: state.clone(),
    };
    let app = Router::new().fallback(handle).with_state(ctx);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    // Without TCP_NODELAY, Nagle and delayed ACKs add tens of milliseconds to each answer.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Simulator {
        addr,
        state,
        cfg,
        task,
    })
}

fn answer(status: StatusCode, code: &str, msg: &str) -> (StatusCode, String) {
    (status, json!({"errCode": code, "errMsg": msg}).to_string())
}

/// Counters for a benchmark that runs the simulator as a separate process.
pub const STATS_PATH: &str = "/_sim/stats";

async fn handle(State(ctx): State<Ctx>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    if path == STATS_PATH {
        let st = ctx.state.lock().expect("sim state");
        let stats = json!({"accepted": st.accepted_count, "calls": st.calls.len(), "reconciliations": st.reconciliations.len(), "max_in_flight": st.max_in_flight});
        return (
            StatusCode::OK,
            [("Content-Type", "application/json")],
            stats.to_string(),
        )
            .into_response();
    }
    let data_call = !path.contains("/reconciliation/");
    let rows = if ctx.cfg.keep_records && data_call {
        call_rows(&ctx, &path, &body)
    } else {
        HashSet::new()
    };
    let scripted = {
        let mut st = ctx.state.lock().expect("sim state");
        let n = st.arrivals;
        st.arrivals += 1;
        if data_call {
            st.call_in(&rows);
        }
        st.answer_at
            .remove(&n)
            .or_else(|| st.script.pop_front())
            .or_else(|| st.answer_all.clone())
    };
    let (status, text, data_type, location) = match scripted {
        _ if path == REDIRECT_TARGET => {
            let (s, t) = answer(StatusCode::OK, "0", "");
            (s, t, String::new(), None)
        }
        Some(a) => (
            StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            a.body,
            String::new(),
            a.location,
        ),
        None => {
            let (s, t, d) = respond(&ctx, &path, &headers, &body);
            let prefix = ctx.state.lock().expect("sim state").answer_prefix.clone();
            (s, prefix + &t, d, None)
        }
    };
    {
        let mut st = ctx.state.lock().expect("sim state");
        let body = if ctx.cfg.keep_records {
            String::from_utf8_lossy(&body).into_owned()
        } else {
            String::new()
        };
        st.calls.push(ReceivedCall {
            path,
            data_type,
            body,
            status: status.as_u16(),
            answer: text.clone(),
        });
    }
    if !ctx.cfg.latency.is_zero() {
        tokio::time::sleep(ctx.cfg.latency).await;
    }
    if data_call {
        ctx.state.lock().expect("sim state").call_out(&rows);
    }
    let mut resp = (status, [("Content-Type", "application/json")], text).into_response();
    if let Some(l) = location.and_then(|l| axum::http::HeaderValue::from_str(&l).ok()) {
        resp.headers_mut().insert(axum::http::header::LOCATION, l);
    }
    resp
}

/// The rows a data call carries, by RowGuid (Guangdong) or by the Gansu identity field.
fn call_rows(ctx: &Ctx, path: &str, body: &[u8]) -> HashSet<String> {
    if path.starts_with(ctx.cfg.gansu.base_path.as_str()) {
        let field = ctx.state.lock().expect("sim state").gansu_identity.clone();
        return field.map_or_else(HashSet::new, |f| {
            gansu::identities(ctx, &String::from_utf8_lossy(body), &f)
        });
    }
    let records = match serde_json::from_slice::<Json>(body) {
        Ok(Json::Array(a)) => a,
        Ok(one) => vec![one],
        Err(_) => Vec::new(),
    };
    records
        .iter()
        .filter_map(|r| r.get("RowGuid").and_then(Json::as_str).map(str::to_string))
        .collect()
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn check_gateway(cfg: &SimConfig, h: &HeaderMap, state: &Mutex<SimState>) -> Result<(), String> {
    let paasid = header(h, "x-tif-paasid").ok_or("缺少 x-tif-paasid")?;
    if paasid != cfg.paasid {
        return Err(format!("x-tif-paasid '{paasid}' 不正确"));
    }
    let ts = header(h, "x-tif-timestamp").ok_or("缺少 x-tif-timestamp")?;
    let t: i64 = ts.parse().map_err(|_| "x-tif-timestamp 不是秒级时间戳")?;
    if (chrono::Utc::now().timestamp() - t).abs() > cfg.max_skew_secs {
        return Err("x-tif-timestamp 与网关时间相差过大".into());
    }
    let nonce = header(h, "x-tif-nonce")
        .filter(|n| !n.is_empty())
        .ok_or("缺少 x-tif-nonce")?;
    let sig = header(h, "x-tif-signature").ok_or("缺少 x-tif-signature")?;
    if !sig.eq_ignore_ascii_case(&sign(ts, &cfg.token, nonce)) {
        return Err("x-tif-signature 签名校验失败".into());
    }
    let ct = header(h, "content-type").unwrap_or("");
    if !ct.starts_with("application/json") {
        return Err(format!("Content-Type 应为 application/json，实为 '{ct}'"));
    }
    if !state
        .lock()
        .expect("sim state")
        .nonces
        .insert(nonce.to_string())
    {
        return Err("x-tif-nonce 重复使用".into());
    }
    Ok(())
}

fn respond(ctx: &Ctx, path: &str, h: &HeaderMap, body: &[u8]) -> (StatusCode, String, String) {
    if let Some(code) = ctx.state.lock().expect("sim state").fail_next.pop_front() {
        let s = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return (s, format!("injected {code}"), String::new());
    }
    if let Some(rest) = path
        .strip_prefix(ctx.cfg.gansu.base_path.as_str())
        .and_then(|r| r.strip_prefix("/data/"))
    {
        return gansu::respond(ctx, rest, h, &String::from_utf8_lossy(body));
    }
    let Some(rest) = path.strip_prefix(ctx.cfg.base_path.as_str()) else {
        let (s, t) = answer(StatusCode::NOT_FOUND, "404", "no such API");
        return (s, t, String::new());
    };
    let parts: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let [prefix, data_type, op] = parts.as_slice() else {
        let (s, t) = answer(StatusCode::NOT_FOUND, "404", "no such API");
        return (s, t, String::new());
    };
    let data_type = data_type.to_string();
    if data_type == "reconciliation"
        && let Some(code) = ctx
            .state
            .lock()
            .expect("sim state")
            .fail_next_reconciliation
            .pop_front()
    {
        let s = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return (s, format!("injected {code}"), data_type);
    }
    if *prefix != ctx.cfg.path_prefix || !matches!(*op, "save" | "batchSave") {
        let (s, t) = answer(StatusCode::NOT_FOUND, "404", "no such API");
        return (s, t, data_type);
    }
    if let Err(msg) = check_gateway(&ctx.cfg, h, &ctx.state) {
        return (
            StatusCode::UNAUTHORIZED,
            json!({"errcode": "401", "errmsg": msg}).to_string(),
            data_type,
        );
    }
    let batch = *op == "batchSave";
    let result = if data_type == "reconciliation" {
        parse_json_records(body, batch).and_then(|records| {
            check_count(ctx, records.len())?;
            check_reconciliation(&ctx.catalog, &records)?;
            let st = ctx.state.lock().expect("sim state");
            let refused = records.iter().find_map(|r| {
                let obj = r.as_object()?;
                let b = obj
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("cd_batch"))?
                    .1;
                let b = b.as_str()?;
                st.refuse_reconciliation_batches
                    .contains(b)
                    .then(|| b.to_string())
            });
            drop(st);
            if let Some(b) = refused {
                return Err(format!("对账批次 {b} 与平台记录不符"));
            }
            Ok((records.len(), records))
        })
    } else {
        check_records(ctx, &data_type, body, batch)
    };
    match result {
        Ok((n, records)) => {
            let mut st = ctx.state.lock().expect("sim state");
            if data_type == "reconciliation" {
                st.reconciliations.extend(records);
            } else {
                st.accepted_count += n;
                if ctx.cfg.keep_records {
                    st.accepted
                        .entry(data_type.clone())
                        .or_default()
                        .extend(records);
                }
            }
            let (s, t) = answer(StatusCode::OK, "0", "");
            (s, t, data_type)
        }
        Err(msg) => {
            let (s, t) = answer(StatusCode::OK, "1", &msg);
            (s, t, data_type)
        }
    }
}

const NOT_JSON: &str = "请求体不是规范要求的 JSON";

/// The body as JSON records: an array for batchSave, one object for save.
fn parse_json_records(body: &[u8], batch: bool) -> Result<Vec<Json>, String> {
    match (serde_json::from_slice::<Json>(body), batch) {
        (Ok(Json::Array(a)), true) => Ok(a),
        (Ok(o @ Json::Object(_)), false) => Ok(vec![o]),
        _ => Err(NOT_JSON.into()),
    }
}

fn check_count(ctx: &Ctx, n: usize) -> Result<(), String> {
    if n == 0 || n > ctx.cfg.max_records {
        return Err(format!(
            "每次应提交 1 至 {} 条记录，实为 {n} 条",
            ctx.cfg.max_records
        ));
    }
    Ok(())
}

/// Checks a call's records against the data type; on success, the number of records and (when
/// the simulator keeps them) the records themselves.
fn check_records(
    ctx: &Ctx,
    data_type: &str,
    body: &[u8],
    batch: bool,
) -> Result<(usize, Vec<Json>), String> {
    let platform = ctx.catalog.platform("gdzw").ok_or("no gdzw catalog")?;
    let dt = platform
        .data_types
        .get(data_type)
        .ok_or_else(|| format!("未知接口 {data_type}"))?;
    let index: HashMap<&str, usize> = dt
        .fields
        .iter()
        .enumerate()
        .map(|(i, f)| (f.code.as_str(), i))
        .collect();
    // Records are read straight into the data type's field order: no per-record map of
    // names is built, which kept the simulator from being the benchmark's bottleneck.
    let records: Vec<wire::Record> = if batch {
        read_body(body, wire::Records(&index))?
    } else {
        vec![read_body(body, wire::One(&index))?]
    };
    check_count(ctx, records.len())?;
    let (refuse, refuse_plain) = {
        let st = ctx.state.lock().expect("sim state");
        (st.refuse_row_guids.clone(), st.refuse_plain.clone())
    };
    let at = |name: &str| index.get(name).copied();
    let (cd_batch_at, guid_at) = (at("Cd_Batch"), at("RowGuid"));
    let mut batch_no: Option<&str> = None;
    for (i, r) in records.iter().enumerate() {
        let n = i + 1;
        if let Some(k) = &r.unknown {
            return Err(format!("第 {n} 条记录含有未定义的字段 {k}"));
        }
        if let Some(k) = &r.duplicate {
            return Err(format!("第 {n} 条记录的字段 {k} 出现了不止一次"));
        }
        for (i, (f, v)) in dt.fields.iter().zip(&r.values).enumerate() {
            let Some(v) = v else { continue };
            let ok = r.not_a_field != Some(i)
                && match f.ty {
                    FieldType::Int => v.is_i64() || v.is_null(),
                    FieldType::Number => v.is_number() || v.is_null(),
                    _ => v.as_str().is_some() || v.is_null(),
                };
            if !ok {
                return Err(format!("第 {n} 条记录字段 {} 的 JSON 类型不对", f.code));
            }
        }
        if let Some(v) =
            crate::validate::validate_present(&r.values, dt, platform, LengthUnit::Chars)
                .into_iter()
                .next()
        {
            return Err(format!("第 {n} 条记录：{}", v.message));
        }
        let text = |at: Option<usize>| {
            at.and_then(|i| r.values[i].as_ref())
                .and_then(Field::as_str)
                .unwrap_or("")
        };
        let cd_batch = text(cd_batch_at);
        if crate::batch::parse_cd_batch(cd_batch)
            .is_none_or(|(unit, _, _)| crate::checkdigit::uscc(&unit).is_err())
        {
            return Err(format!(
                "第 {n} 条记录 Cd_Batch '{cd_batch}' 不符合“统一社会信用代码+日期+五位序号”"
            ));
        }
        match batch_no {
            None => batch_no = Some(cd_batch),
            Some(b) if b != cd_batch => return Err("同一次提交中的 Cd_Batch 不一致".into()),
            _ => {}
        }
        let guid = text(guid_at);
        if refuse.contains(guid) {
            return Err(format!("第 {n} 条记录 RowGuid={guid} 业务校验不通过"));
        }
        if refuse_plain.contains(guid) {
            return Err("数据校验不通过".into());
        }
    }
    let kept = if ctx.cfg.keep_records {
        parse_json_records(body, batch)?
    } else {
        Vec::new()
    };
    Ok((records.len(), kept))
}

/// The whole body through `seed`, with nothing after it.
fn read_body<'de, S: serde::de::DeserializeSeed<'de>>(
    body: &'de [u8],
    seed: S,
) -> Result<S::Value, String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let v = seed
        .deserialize(&mut de)
        .map_err(|_| NOT_JSON.to_string())?;
    de.end().map_err(|_| NOT_JSON.to_string())?;
    Ok(v)
}

/// Reading a call's records into the data type's field order.
mod wire {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde_json::Value as Json;
    use std::borrow::Cow;

    use crate::value::Field;
    use std::collections::HashMap;
    use std::fmt;

    pub struct Record {
        /// Per field of the data type: the value sent, or None when the key was absent.
        pub values: Vec<Option<Field>>,
        /// The first field sent as JSON that is no field value (true, an array, an object);
        /// it is held as its JSON text.
        pub not_a_field: Option<usize>,
        pub unknown: Option<String>,
        pub duplicate: Option<String>,
    }

    /// The array of records of a batchSave call.
    pub struct Records<'a>(pub &'a HashMap<&'a str, usize>);
    /// The single record of a save call.
    pub struct One<'a>(pub &'a HashMap<&'a str, usize>);

    impl<'de> DeserializeSeed<'de> for Records<'_> {
        type Value = Vec<Record>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Record>, D::Error> {
            d.deserialize_seq(self)
        }
    }

    impl<'de> Visitor<'de> for Records<'_> {
        type Value = Vec<Record>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array of records")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Record>, A::Error> {
            let mut out = Vec::new();
            while let Some(r) = seq.next_element_seed(One(self.0))? {
                out.push(r);
            }
            Ok(out)
        }
    }

    impl<'de> DeserializeSeed<'de> for One<'_> {
        type Value = Record;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Record, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for One<'_> {
        type Value = Record;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a record object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Record, A::Error> {
            let mut r = Record {
                values: vec![None; self.0.len()],
                not_a_field: None,
                unknown: None,
                duplicate: None,
            };
            while let Some(Key(k)) = map.next_key::<Key>()? {
                match self.0.get(k.as_ref()) {
                    Some(&i) => {
                        let v = Field::from_json(map.next_value::<Json>()?).unwrap_or_else(|v| {
                            r.not_a_field.get_or_insert(i);
                            v.to_string().into()
                        });
                        if r.values[i].replace(v).is_some() && r.duplicate.is_none() {
                            r.duplicate = Some(k.into_owned());
                        }
                    }
                    None => {
                        map.next_value::<IgnoredAny>()?;
                        if r.unknown.is_none() {
                            r.unknown = Some(k.into_owned());
                        }
                    }
                }
            }
            Ok(r)
        }
    }

    /// An object key, borrowed from the body when it has no escapes.
    struct Key<'de>(Cow<'de, str>);

    impl<'de> serde::Deserialize<'de> for Key<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Key<'de>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a field name")
                }
                fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Borrowed(v)))
                }
                fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Owned(v.to_string())))
                }
            }
            d.deserialize_str(V)
        }
    }
}

/// Reconciliation records as the reconciliation schema defines them: exactly its keys, a
/// number where the field is `int`, text otherwise.
fn check_reconciliation(catalog: &Catalog, records: &[Json]) -> Result<(), String> {
    let dt = catalog
        .data_type("gdzw", "reconciliation")
        .ok_or("no reconciliation schema")?;
    for (i, r) in records.iter().enumerate() {
        let n = i + 1;
        let obj = r
            .as_object()
            .ok_or(format!("第 {n} 条对账记录不是 JSON 对象"))?;
        if let Some(k) = obj.keys().find(|k| dt.field(k).is_none()) {
            return Err(format!("第 {n} 条对账记录含有未定义的字段 {k}"));
        }
        for f in &dt.fields {
            let code = &f.code;
            let v = obj.get(code);
            let text = v.and_then(Json::as_str).unwrap_or("");
            let ok = match code.to_ascii_lowercase().as_str() {
                "table_name" => {
                    !text.is_empty() && text.chars().count() <= f.max_len.unwrap_or(32) as usize
                }
                "cd_batch" => crate::batch::parse_cd_batch(text).is_some(),
                "cd_count" if f.ty == FieldType::Int => v.is_some_and(Json::is_i64),
                "cd_count" => text.parse::<u64>().is_ok(),
                "cd_time" => {
                    chrono::NaiveDateTime::parse_from_str(text, crate::timefmt::SPEC_DATETIME)
                        .is_ok()
                }
                _ => false,
            };
            if !ok {
                return Err(format!("第 {n} 条对账记录 {code} 缺失或不符合表17"));
            }
        }
    }
    Ok(())
}
