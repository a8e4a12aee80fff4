//! A strict local simulator of the three credit-query APIs: signatures and timestamps checked
//! as the specs say, paging, fixture data per subject, injectable status codes, and counters
//! of the calls received and billed per provider.

use anyhow::Result;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value as Json, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::query::{Provider, md5_hex};

pub const SHUIDI_PATH: &str = "/utn/ic/Punish";
pub const QCC_PATH: &str = "/api/yj/OperationCheck/GetList";
pub const XINSHU_PATH: &str = "/ws/repository/taxBlack";

#[derive(Debug, Clone)]
pub struct QuerySimConfig {
    pub shuidi_pname: String,
    pub shuidi_pkey: String,
    pub qcc_key: String,
    pub qcc_secret_key: String,
    pub xinshu_apikey: String,
    pub xinshu_private_key: String,
    /// Shuidi: "接口的有效期为10分钟"; the same window is used for Qichacha's Timespan.
    pub max_skew_secs: i64,
}

impl Default for QuerySimConfig {
    fn default() -> Self {
        QuerySimConfig {
            shuidi_pname: "sim-pname".into(),
            shuidi_pkey: "sim-pkey".into(),
            qcc_key: "sim-qcc-key".into(),
            qcc_secret_key: "sim-qcc-secret".into(),
            xinshu_apikey: "sim-xinshu-apikey".into(),
            xinshu_private_key: "sim-xinshu-private".into(),
            max_skew_secs: 600,
        }
    }
}

/// One request as the simulator saw it.
#[derive(Debug, Clone)]
pub struct SimCall {
    pub provider: Provider,
    pub method: String,
    pub params: BTreeMap<String, String>,
    pub code: String,
    pub billed: bool,
    pub order_no: Option<String>,
}

impl SimCall {
    pub fn param(&self, k: &str) -> Option<&str> {
        self.params.get(k).map(String::as_str)
    }
}

#[derive(Debug, Default)]
pub struct QuerySimState {
    /// Records per provider and search key (Shuidi keyword, Qichacha searchKey, Xinshu
    /// taxName / idCard / taxNo). A subject without records gets the provider's "no result".
    pub fixtures: HashMap<(Provider, String), Vec<Json>>,
    /// Answers for the next calls of a provider, before anything is checked: a status code
    /// of the spec, or "HTTP 503" for a bare HTTP status.
    pub inject: HashMap<Provider, VecDeque<String>>,
    pub calls: Vec<SimCall>,
    order_seq: u64,
}

impl QuerySimState {
    pub fn set(&mut self, p: Provider, key: &str, records: Vec<Json>) {
        self.fixtures.insert((p, key.to_string()), records);
    }
    pub fn inject(&mut self, p: Provider, code: &str) {
        self.inject
            .entry(p)
            .or_default()
            .push_back(code.to_string());
    }
    pub fn calls_of(&self, p: Provider) -> Vec<&SimCall> {
        self.calls.iter().filter(|c| c.provider == p).collect()
    }
    pub fn billed(&self, p: Provider) -> usize {
        self.calls
            .iter()
            .filter(|c| c.provider == p && c.billed)
            .count()
    }
}

#[derive(Clone)]
struct Ctx {
    cfg: Arc<QuerySimConfig>,
    state: Arc<Mutex<QuerySimState>>,
}

pub struct QuerySim {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<QuerySimState>>,
    pub cfg: Arc<QuerySimConfig>,
    task: tokio::task::JoinHandle<()>,
}

impl QuerySim {
    pub fn url(&self, p: Provider) -> String {
        let path = match p {
            Provider::Shuidi => SHUIDI_PATH,
            Provider::Qcc => QCC_PATH,
            Provider::Xinshu => XINSHU_PATH,
        };
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for QuerySim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start(cfg: QuerySimConfig, listen: &str) -> Result<QuerySim> {
    let state = Arc::new(Mutex::new(QuerySimState::default()));
    let cfg = Arc::new(cfg);
    let ctx = Ctx {
        cfg: cfg.clone(),
        state: state.clone(),
    };
    let app = Router::new()
        .route(SHUIDI_PATH, any(shuidi))
        .route(QCC_PATH, any(qcc))
        .route(XINSHU_PATH, any(xinshu))
        .with_state(ctx);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(QuerySim {
        addr,
        state,
        cfg,
        task,
    })
}

fn decode(s: &str) -> BTreeMap<String, String> {
    form_urlencoded::parse(s.as_bytes()).into_owned().collect()
}

/// Query string and, for form posts, the body.
fn params(query: Option<String>, headers: &HeaderMap, body: &Bytes) -> BTreeMap<String, String> {
    let mut p = decode(query.as_deref().unwrap_or(""));
    let form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form {
        p.extend(decode(&String::from_utf8_lossy(body)));
    }
    p
}

/// What the simulated provider decided before building its answer.
enum Decision {
    Code(&'static str),
    /// Success with the records of one page and the total.
    Page(Vec<Json>, usize),
}

fn page_of(
    records: &[Json],
    p: &BTreeMap<String, String>,
    index_key: &str,
    size_key: &str,
) -> Option<(Vec<Json>, usize)> {
    let index: usize = match p.get(index_key) {
        Some(s) => s.parse().ok().filter(|i| *i >= 1)?,
        None => 1,
    };
    let size: usize = match p.get(size_key) {
        Some(s) => s.parse().ok().filter(|s| (1..=20).contains(s))?,
        None => 10,
    };
    let page = records
        .iter()
        .skip((index - 1) * size)
        .take(size)
        .cloned()
        .collect();
    Some((page, records.len()))
}

impl Ctx {
    /// The next injected answer, if any.
    fn injected(&self, p: Provider) -> Option<String> {
        self.state
            .lock()
            .expect("sim state")
            .inject
            .get_mut(&p)
            .and_then(VecDeque::pop_front)
    }

    fn fixture(&self, p: Provider, key: &str) -> Option<Vec<Json>> {
        self.state
            .lock()
            .expect("sim state")
            .fixtures
            .get(&(p, key.to_string()))
            .cloned()
    }

    /// Counts the call; billed answers get an order number.
    fn record(
        &self,
        p: Provider,
        method: &Method,
        params: BTreeMap<String, String>,
        code: &str,
    ) -> Option<String> {
        let billed = crate::query::lookup(p.codes(), code).0.billed();
        let mut st = self.state.lock().expect("sim state");
        let order_no = billed.then(|| {
            st.order_seq += 1;
            match p {
                Provider::Shuidi => format!("{}", 1_415_186_916_126_720_000u64 + st.order_seq),
                Provider::Qcc => format!("OPERATIONCHECK{:022}", st.order_seq),
                Provider::Xinshu => format!("XS{:016}", st.order_seq),
            }
        });
        st.calls.push(SimCall {
            provider: p,
            method: method.to_string(),
            params,
            code: code.to_string(),
            billed,
            order_no: order_no.clone(),
        });
        order_no
    }
}

fn http_injection(code: &str) -> Option<StatusCode> {
    code.strip_prefix("HTTP ")
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
}

fn json_response(v: Json) -> Response {
    (
        StatusCode::OK,
        [("Content-Type", "application/json;charset=UTF-8")],
        v.to_string(),
    )
        .into_response()
}

fn message(p: Provider, code: &str) -> &'static str {
    crate::query::lookup(p.codes(), code).1
}

fn within(now: i64, t: i64, skew: i64) -> bool {
    (now - t).abs() <= skew
}

fn shuidi_decide(cfg: &QuerySimConfig, ctx: &Ctx, p: &BTreeMap<String, String>) -> Decision {
    let (Some(pname), Some(ptime), Some(vkey)) = (p.get("pname"), p.get("ptime"), p.get("vkey"))
    else {
        return Decision::Code("10010");
    };
    if pname != &cfg.shuidi_pname {
        return Decision::Code("10000");
    }
    let Some(ms) = ptime
        .parse::<i64>()
        .ok()
        .filter(|_| ptime.len() == 13 && ptime.chars().all(|c| c.is_ascii_digit()))
    else {
        return Decision::Code("10012");
    };
    let want = md5_hex(&format!("{}_{ptime}_{}", cfg.shuidi_pkey, cfg.shuidi_pkey));
    if vkey != &want {
        return Decision::Code("10011");
    }
    if !within(
        chrono::Utc::now().timestamp_millis() / 1000,
        ms / 1000,
        cfg.max_skew_secs,
    ) {
        return Decision::Code("30001");
    }
    let Some(keyword) = p.get("keyword").filter(|k| !k.is_empty()) else {
        return Decision::Code("4");
    };
    let records = ctx.fixture(Provider::Shuidi, keyword).unwrap_or_default();
    match page_of(&records, p, "pageIndex", "pageSize") {
        None => Decision::Code("4"),
        Some((page, _)) if page.is_empty() => Decision::Code("2"),
        Some((page, total)) => Decision::Page(page, total),
    }
}

async fn shuidi(
    State(ctx): State<Ctx>,
    method: Method,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = params(q, &headers, &body);
    let injected = ctx.injected(Provider::Shuidi);
    if let Some(s) = injected.as_deref().and_then(http_injection) {
        ctx.record(Provider::Shuidi, &method, p, &s.as_u16().to_string());
        return (s, "injected").into_response();
    }
    let decision = match injected {
        Some(code) => Decision::Code(leak(code)),
        None if !matches!(method, Method::GET | Method::POST) => Decision::Code("40002"),
        None => shuidi_decide(&ctx.cfg, &ctx, &p),
    };
    let size = p.get("pageSize").cloned().unwrap_or("10".into());
    let index = p.get("pageIndex").cloned().unwrap_or("1".into());
    let (code, data) = match decision {
        Decision::Code(c) => (c, json!({})),
        Decision::Page(items, total) => (
            "1",
            json!({"Paging": {"PageSize": size.parse::<u64>().unwrap_or(10), "PageIndex": index.parse::<u64>().unwrap_or(1), "TotalRecords": total}, "Items": items}),
        ),
    };
    let order = ctx.record(Provider::Shuidi, &method, p, code);
    let mut v = json!({"statusCode": code.parse::<i64>().unwrap_or(99999), "statusMessage": message(Provider::Shuidi, code), "data": data});
    if let Some(o) = order {
        v["orderNo"] = json!(o.parse::<u64>().unwrap_or(0));
    }
    json_response(v)
}

fn qcc_decide(
    cfg: &QuerySimConfig,
    ctx: &Ctx,
    method: &Method,
    h: &HeaderMap,
    p: &BTreeMap<String, String>,
) -> Decision {
    if method != Method::GET {
        return Decision::Code("118");
    }
    if p.get("key") != Some(&cfg.qcc_key) {
        return Decision::Code("101");
    }
    let header = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (Some(token), Some(ts)) = (header("Token"), header("Timespan")) else {
        return Decision::Code("115");
    };
    let Ok(secs) = ts.parse::<i64>() else {
        return Decision::Code("115");
    };
    if !within(chrono::Utc::now().timestamp(), secs, cfg.max_skew_secs) {
        return Decision::Code("115");
    }
    // The spec says uppercase: a lowercase Token is a wrong signature.
    let want = md5_hex(&format!("{}{ts}{}", cfg.qcc_key, cfg.qcc_secret_key)).to_uppercase();
    if token != want {
        return Decision::Code("107");
    }
    let Some(key) = p.get("searchKey") else {
        return Decision::Code("202");
    };
    if key.chars().count() < 2 {
        return Decision::Code("213");
    }
    let records = ctx.fixture(Provider::Qcc, key).unwrap_or_default();
    match page_of(&records, p, "pageIndex", "pageSize") {
        None => Decision::Code("202"),
        Some((page, _)) if page.is_empty() => Decision::Code("201"),
        Some((page, total)) => Decision::Page(page, total),
    }
}

async fn qcc(
    State(ctx): State<Ctx>,
    method: Method,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = params(q, &headers, &body);
    let injected = ctx.injected(Provider::Qcc);
    if let Some(s) = injected.as_deref().and_then(http_injection) {
        ctx.record(Provider::Qcc, &method, p, &s.as_u16().to_string());
        return (s, "injected").into_response();
    }
    let decision = match injected {
        Some(code) => Decision::Code(leak(code)),
        None => qcc_decide(&ctx.cfg, &ctx, &method, &headers, &p),
    };
    let size: u64 = p.get("pageSize").and_then(|s| s.parse().ok()).unwrap_or(10);
    let index: u64 = p.get("pageIndex").and_then(|s| s.parse().ok()).unwrap_or(1);
    let (code, paging, result) = match decision {
        Decision::Code(c) => (c, Json::Null, Json::Null),
        Decision::Page(items, total) => (
            "200",
            json!({"PageSize": size, "PageIndex": index, "TotalRecords": total}),
            json!({"VerifyResult": 1, "Data": items}),
        ),
    };
    let order = ctx.record(Provider::Qcc, &method, p, code);
    let mut v = json!({"Status": code, "Message": message(Provider::Qcc, code)});
    if let Some(o) = order {
        v["OrderNumber"] = json!(o);
    }
    if !paging.is_null() {
        v["Paging"] = paging;
        v["Result"] = result;
    }
    json_response(v)
}

fn xinshu_decide(
    cfg: &QuerySimConfig,
    ctx: &Ctx,
    method: &Method,
    p: &BTreeMap<String, String>,
) -> Decision {
    if method != Method::POST {
        return Decision::Code("2000");
    }
    if p.get("apikey") != Some(&cfg.xinshu_apikey) {
        return Decision::Code("1000");
    }
    let day = chrono::Utc::now()
        .with_timezone(&crate::timefmt::beijing())
        .format("%Y%m%d")
        .to_string();
    let want = md5_hex(&format!("{}{day}", cfg.xinshu_private_key));
    if !p.get("sign").is_some_and(|s| s.eq_ignore_ascii_case(&want)) {
        return Decision::Code("1002");
    }
    let keys: Vec<&String> = ["taxName", "idCard", "taxNo"]
        .iter()
        .filter_map(|k| p.get(*k).filter(|v| !v.is_empty()))
        .collect();
    if keys.is_empty() {
        return Decision::Code("2000");
    }
    let records: Vec<Json> = keys
        .iter()
        .find_map(|k| ctx.fixture(Provider::Xinshu, k))
        .unwrap_or_default();
    if records.is_empty() {
        Decision::Code("0001")
    } else {
        let n = records.len();
        Decision::Page(records, n)
    }
}

async fn xinshu(
    State(ctx): State<Ctx>,
    method: Method,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = params(q, &headers, &body);
    let injected = ctx.injected(Provider::Xinshu);
    if let Some(s) = injected.as_deref().and_then(http_injection) {
        ctx.record(Provider::Xinshu, &method, p, &s.as_u16().to_string());
        return (s, "injected").into_response();
    }
    let decision = match injected {
        Some(code) => Decision::Code(leak(code)),
        None => xinshu_decide(&ctx.cfg, &ctx, &method, &p),
    };
    let (code, data) = match decision {
        Decision::Code(c) => (c, None),
        Decision::Page(items, _) => ("0000", Some(items)),
    };
    let order = ctx.record(Provider::Xinshu, &method, p, code);
    let mut v = json!({"rc": code, "msg": message(Provider::Xinshu, code)});
    if let Some(o) = order {
        v["orderNo"] = json!(o);
    }
    if let Some(d) = data {
        v["data"] = Json::Array(d);
    }
    json_response(v)
}

/// Injected codes are few and live as long as the simulator; a static str keeps `Decision`
/// simple.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Sample records for the demo and tests: `n` penalties for Shuidi.
pub fn shuidi_records(n: usize) -> Vec<Json> {
    (1..=n)
        .map(|i| {
            json!({
                "PunishCode": format!("穗市监罚字〔2024〕{i}号"),
                "IllegalType": "未按规定公示年度报告",
                "Authority": "示例市市场监督管理局",
                "Content": format!("罚款 {} 元", 1000 * i),
                "PunishDate": "2024-05-18 00:00:00",
                "PublicDate": "2024-05-20 00:00:00",
                "PunishContent": null
            })
        })
        .collect()
}

/// `n` customs registrations, each with `punish` penalties.
pub fn qcc_records(n: usize, punish: usize) -> Vec<Json> {
    (1..=n)
        .map(|i| {
            let list: Vec<Json> = (1..=punish)
                .map(|k| json!({"No": k.to_string(), "DecisionNo": format!("黄关缉违字〔2023〕{i}{k:02}号"), "Party": "示例贸易有限公司", "PunishDate": "2023-09-05", "CaseProp": "违规"}))
                .collect();
            json!({
                "Id": format!("sim-{i:04}"), "RegGov": "黄埔海关", "TradeType": "进出口货物收发货人",
                "RegDate": "2010-10-28", "RegNo": format!("44019{i:05}"), "AdminArea": "广东省广州市",
                "EconoArea": "一般经济区域", "SpecialArea": "非特殊区域", "CancelFlag": "正常",
                "AnnualStatus": "已报送", "ValidityDate": "长期", "IndustryType": "", "EBusinessType": "",
                "IdentifyDate": "2022-04-12", "IdentifyLevel": "一般信用企业", "IdentifyCode": "",
                "PunishList": list
            })
        })
        .collect()
}

/// One tax-blacklist record with every field of the spec.
pub fn xinshu_record(name: &str, tax_no: &str) -> Json {
    let mut m = serde_json::Map::new();
    for f in crate::query::xinshu::FIELDS {
        m.insert((*f).to_string(), json!(format!("{f}-值")));
    }
    m.insert("blackType".into(), json!("非正常户"));
    m.insert("regName".into(), json!(name));
    m.insert("taxNo".into(), json!(tax_no));
    m.insert("cardNo".into(), json!("610431198603210047"));
    m.insert("contactPhone".into(), json!("13812345678"));
    m.insert("evalDate".into(), json!("2024-10-15"));
    Json::Object(m)
}
