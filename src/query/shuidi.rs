//! Shuidi (水滴 / 上海凭安) 工商行政处罚, interface 2032: pname/ptime/vkey signing, paging,
//! the answer, the flattened penalty rows and the status-code table.

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use super::{Action, Answer, Call, CodeRow, FlatRow, Pause, Subject, TableRows};
use crate::config::query::{HttpMethod, SearchBy, ShuidiConfig};
use secrecy::{ExposeSecret, SecretString};

pub const TABLE: &str = "qz_shuidi_punish";

/// Item fields in spec order and the result-table column each goes to.
pub const FIELDS: &[&str] = &[
    "PunishCode",
    "IllegalType",
    "Authority",
    "Content",
    "PunishDate",
    "PublicDate",
    "PunishContent",
];
pub const COLUMNS: &[&str] = &[
    "punish_code",
    "illegal_type",
    "authority",
    "content",
    "punish_date",
    "public_date",
    "punish_content",
];

use Action::*;

/// Every code of the spec (服务级 and 系统级), with its message verbatim.
#[rustfmt::skip]
pub const CODES: &[CodeRow] = &[
    CodeRow { code: "1", action: Success, message: "请求成功" },
    CodeRow { code: "2", action: NoResult, message: "查询无结果" },
    CodeRow { code: "3", action: StopProvider, message: "接口权限未开通" },
    CodeRow { code: "4", action: SubjectRejected, message: "查询参数错误, 请检查" },
    CodeRow { code: "5", action: RetryLater, message: "等待处理中" },
    CodeRow { code: "20000", action: StopProvider, message: "请求接口URL不存在, 请确认" },
    CodeRow { code: "20001", action: StopProvider, message: "接口已下线停用" },
    CodeRow { code: "20002", action: StopProvider, message: "您还未购买过该接口, 请先购买" },
    CodeRow { code: "20003", action: StopProvider, message: "您的账号剩余用量已不足或已过期" },
    CodeRow { code: "10000", action: StopProvider, message: "账号无效或者还未生效中" },
    CodeRow { code: "10001", action: StopProvider, message: "账号未实名认证" },
    CodeRow { code: "10002", action: StopProvider, message: "账号状态异常, 请联系管理员" },
    CodeRow { code: "10003", action: StopProvider, message: "账号密钥状态异常, 请联系管理员" },
    CodeRow { code: "10010", action: StopProvider, message: "认证参数缺失, 请确认" },
    CodeRow { code: "10011", action: StopProvider, message: "vkey校验失败, 请核对计算逻辑" },
    CodeRow { code: "10012", action: StopProvider, message: "ptime格式错误, 请确认" },
    CodeRow { code: "30001", action: Resign, message: "请求已过期" },
    CodeRow { code: "30002", action: StopProvider, message: "当前套餐已被禁用, 请联系管理员" },
    CodeRow { code: "30003", action: Pause(Pause::UntilBeijingMidnight), message: "请求超过当前套餐每日调用总量限制" },
    CodeRow { code: "30004", action: StopProvider, message: "当前套餐已消费完毕" },
    CodeRow { code: "40000", action: StopProvider, message: "非法请求过多, 请联系管理员" },
    CodeRow { code: "40001", action: StopProvider, message: "被禁止的IP" },
    CodeRow { code: "40002", action: StopProvider, message: "不支持的请求方法" },
    CodeRow { code: "99999", action: RetryLater, message: "系统未知错误, 请联系技术客服" },
];

/// vkey = lowercase md5(pkey + "_" + ptime + "_" + pkey).
pub fn vkey(pkey: &str, ptime: &str) -> String {
    super::md5_hex(&format!("{pkey}_{ptime}_{pkey}"))
}

/// ptime: milliseconds since the epoch, 13 digits.
pub fn ptime(now: DateTime<Utc>) -> String {
    now.timestamp_millis().to_string()
}

pub struct Client {
    pub cfg: ShuidiConfig,
    pub pkey: SecretString,
}

impl Client {
    pub fn request(&self, keyword: &str, page: u32, now: DateTime<Utc>) -> Call {
        let pt = ptime(now);
        let params = vec![
            ("pname".to_string(), self.cfg.pname.clone()),
            ("ptime".to_string(), pt.clone()),
            ("vkey".to_string(), vkey(self.pkey.expose_secret(), &pt)),
            ("keyword".to_string(), keyword.to_string()),
            ("pageIndex".to_string(), page.to_string()),
            (
                "pageSize".to_string(),
                self.cfg.page_size.min(20).to_string(),
            ),
            ("dtype".to_string(), "json".to_string()),
        ];
        let post = self.cfg.method == HttpMethod::Post;
        Call {
            post,
            url: self.cfg.url.clone(),
            query: if post { vec![] } else { params.clone() },
            headers: vec![],
            form: post.then_some(params),
        }
    }
}

pub fn search_key(s: &Subject, by: SearchBy) -> Option<String> {
    s.search_key(by).map(str::to_string)
}

/// statusCode may arrive as a number or a string.
fn code_text(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::Number(n) => Some(n.to_string()),
        Json::String(s) => Some(s.trim().to_string()),
        _ => None,
    }
}

pub fn parse(body: &str) -> Result<Answer, String> {
    let j: Json = serde_json::from_str(body).map_err(|_| "answer is not JSON".to_string())?;
    let code = code_text(j.get("statusCode")).ok_or("answer has no statusCode")?;
    let data = j.get("data");
    let items = data
        .and_then(|d| d.get("Items"))
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    let total = data
        .and_then(|d| d.get("Paging"))
        .and_then(|p| p.get("TotalRecords"))
        .and_then(|t| {
            t.as_u64()
                .or_else(|| t.as_str().and_then(|s| s.parse().ok()))
        });
    Ok(Answer {
        // 1 "请求成功" without Items is no data: recorded as no result, like 2.
        empty_success: code == "1" && items.is_empty(),
        code,
        message: super::text_of(j.get("statusMessage")).unwrap_or_default(),
        order_no: super::text_of(j.get("orderNo")),
        total,
        items,
    })
}

pub fn flatten(items: &[Json]) -> Vec<TableRows> {
    vec![TableRows {
        table: TABLE,
        columns: COLUMNS,
        rows: items
            .iter()
            .map(|i| super::flatten_by(i, FIELDS))
            .collect::<Vec<FlatRow>>(),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn vkey_is_md5_of_pkey_ptime_pkey() {
        // The spec's formula with fixed inputs, spelled out.
        let cases = [
            ("pk", "1571990576623", "pk_1571990576623_pk"),
            ("abc123", "1700000000000", "abc123_1700000000000_abc123"),
        ];
        for (pkey, pt, joined) in cases {
            let v = vkey(pkey, pt);
            assert_eq!(v, crate::query::md5_hex(joined));
            assert_eq!(v.len(), 32);
            assert!(
                v.chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
        }
        assert_ne!(vkey("pk", "1571990576623"), vkey("pk", "1571990576624"));
    }

    #[test]
    fn ptime_has_13_digits() {
        let t = Utc.with_ymd_and_hms(2019, 10, 25, 8, 2, 56).unwrap()
            + chrono::Duration::milliseconds(623);
        assert_eq!(ptime(t), "1571990576623");
    }

    #[test]
    fn request_carries_spec_parameters() {
        let mut cfg: ShuidiConfig = toml::from_str(
            "url='http://127.0.0.1:1/utn/ic/Punish'\npname='patest'\npkey_env='K'\ndaily_budget=5",
        )
        .unwrap();
        // More than reading accepts: the request still caps it.
        cfg.page_size = 50;
        let c = Client {
            cfg,
            pkey: SecretString::from("pk"),
        };
        let now = Utc.timestamp_millis_opt(1571990576623).unwrap();
        let call = c.request("阜阳捌零后商贸有限公司", 3, now);
        assert!(!call.post && call.form.is_none());
        let q: std::collections::HashMap<_, _> = call.query.iter().cloned().collect();
        assert_eq!(q["pname"], "patest");
        assert_eq!(q["ptime"], "1571990576623");
        assert_eq!(q["vkey"], vkey("pk", "1571990576623"));
        assert_eq!(q["keyword"], "阜阳捌零后商贸有限公司");
        assert_eq!(q["pageIndex"], "3");
        assert_eq!(q["pageSize"], "20", "never more than the spec's 20");
        assert!(
            !call.query.iter().any(|(_, v)| v == "pk"),
            "pkey never sent"
        );
    }

    #[test]
    fn parses_the_spec_example() {
        let body = r#"{"statusCode": 1, "statusMessage": "请求成功",
          "data": {"Paging": {"PageSize": 10, "PageIndex": 1, "TotalRecords": 2},
            "Items": [{"PunishCode": "六金公（派）行罚决字〔2017〕281号", "IllegalType": "《中华人民共和国治安管理处罚法》",
              "Authority": "金寨县公安局", "Content": "已执行", "PunishDate": "2017-05-18 00:00:00",
              "PublicDate": "2017-05-18 00:00:00", "PunishContent": null}]},
          "orderNo": 1415186916126720000}"#;
        let a = parse(body).unwrap();
        assert_eq!(a.code, "1");
        assert_eq!(a.total, Some(2));
        assert_eq!(a.order_no.as_deref(), Some("1415186916126720000"));
        let t = flatten(&a.items);
        assert_eq!(t[0].rows.len(), 1);
        let row = &t[0].rows[0];
        assert_eq!(
            row.values[0].as_deref(),
            Some("六金公（派）行罚决字〔2017〕281号")
        );
        assert_eq!(row.values[2].as_deref(), Some("金寨县公安局"));
        assert_eq!(row.values[6], None);
        assert!(row.raw.contains("PunishCode"));
        assert!(parse("<html>").is_err());
        assert!(!a.empty_success);
        assert_eq!(
            parse(r#"{"statusCode":"2","statusMessage":"查询无结果"}"#)
                .unwrap()
                .code,
            "2"
        );
    }

    #[test]
    fn success_without_items_is_empty() {
        for (body, empty) in [
            (
                r#"{"statusCode":1,"statusMessage":"请求成功","data":{}}"#,
                true,
            ),
            (r#"{"statusCode":1,"statusMessage":"请求成功"}"#, true),
            (
                r#"{"statusCode":1,"data":{"Paging":{"TotalRecords":0},"Items":[]}}"#,
                true,
            ),
            (
                r#"{"statusCode":1,"data":{"Items":[{"PunishCode":"x"}]}}"#,
                false,
            ),
            (r#"{"statusCode":2,"data":{}}"#, false),
        ] {
            assert_eq!(parse(body).unwrap().empty_success, empty, "{body}");
        }
    }

    #[test]
    fn mapping_rows() {
        for (code, want) in [
            ("1", Action::Success),
            ("2", Action::NoResult),
            ("4", Action::SubjectRejected),
            ("5", Action::RetryLater),
            ("10011", Action::StopProvider),
            ("30001", Action::Resign),
            ("30003", Action::Pause(Pause::UntilBeijingMidnight)),
            ("30004", Action::StopProvider),
            ("40001", Action::StopProvider),
            ("99999", Action::RetryLater),
        ] {
            assert_eq!(super::super::lookup(CODES, code).0, want, "{code}");
        }
        assert_eq!(CODES.len(), 24, "every code of the spec has a row");
    }
}
