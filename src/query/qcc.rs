//! Qichacha (企查查) 进出口信用核查, OperationCheck/GetList: key + Token/Timespan headers,
//! paging, the customs-credit and 海关行政处罚 rows, and the status-code table.

use chrono::{DateTime, Utc};
use serde_json::Value as Json;
use std::time::Duration;

use super::{Action, Answer, Call, CodeRow, FlatRow, Pause, TableRows};
use crate::config::query::QccConfig;
use secrecy::{ExposeSecret, SecretString};

pub const CREDIT_TABLE: &str = "qz_qcc_customs_credit";
pub const PUNISH_TABLE: &str = "qz_qcc_customs_punish";

pub const CREDIT_FIELDS: &[&str] = &[
    "Id",
    "RegGov",
    "TradeType",
    "RegDate",
    "RegNo",
    "AdminArea",
    "EconoArea",
    "SpecialArea",
    "CancelFlag",
    "AnnualStatus",
    "ValidityDate",
    "IndustryType",
    "EBusinessType",
    "IdentifyDate",
    "IdentifyLevel",
    "IdentifyCode",
];
pub const CREDIT_COLUMNS: &[&str] = &[
    "record_id",
    "reg_gov",
    "trade_type",
    "reg_date",
    "reg_no",
    "admin_area",
    "econo_area",
    "special_area",
    "cancel_flag",
    "annual_status",
    "validity_date",
    "industry_type",
    "ebusiness_type",
    "identify_date",
    "identify_level",
    "identify_code",
    "punish_count",
];

pub const PUNISH_FIELDS: &[&str] = &["No", "DecisionNo", "Party", "PunishDate", "CaseProp"];
/// `credit_seq` and `credit_id` tie a penalty to its customs-credit row.
pub const PUNISH_COLUMNS: &[&str] = &[
    "credit_seq",
    "credit_id",
    "reg_no",
    "no",
    "decision_no",
    "party",
    "punish_date",
    "case_prop",
];

use Action::*;

/// Every code of spec section 7 (有效请求 and 无效请求), with its message verbatim. 110's
/// pause is the configured `pause_on_110` (default the spec's two hours); see `action`.
#[rustfmt::skip]
pub const CODES: &[CodeRow] = &[
    CodeRow { code: "200", action: Success, message: "【有效请求】查询成功" },
    CodeRow { code: "201", action: NoResult, message: "【有效请求】查询无结果" },
    CodeRow { code: "202", action: SubjectRejected, message: "【有效请求】查询参数错误，请检查" },
    CodeRow { code: "205", action: RetryLater, message: "【有效请求】等待处理中" },
    CodeRow { code: "207", action: SubjectRejected, message: "【有效请求】请求数据的条目数超过上限（5000）" },
    CodeRow { code: "208", action: SubjectRejected, message: "【有效请求】此接口不支持此公司类型查询" },
    CodeRow { code: "209", action: SubjectRejected, message: "【有效请求】企业数量超过上限" },
    CodeRow { code: "213", action: SubjectRejected, message: "【有效请求】参数长度不能小于 2" },
    CodeRow { code: "215", action: SubjectRejected, message: "【有效请求】不支持的查询关键字" },
    CodeRow { code: "218", action: SubjectRejected, message: "【有效请求】该企业暂不支持空壳扫描" },
    CodeRow { code: "219", action: SubjectRejected, message: "【有效请求】该企业暂不支持准入尽调" },
    CodeRow { code: "105", action: StopProvider, message: "【有效请求】接口已下线停用" },
    CodeRow { code: "110", action: Pause(Pause::For(Duration::from_secs(7200))), message: "【有效请求】当前相同查询连续出错，请等 2 小时后重试" },
    CodeRow { code: "101", action: StopProvider, message: "【无效请求】当前的 KEY 无效或者还未生效中" },
    CodeRow { code: "102", action: StopProvider, message: "【无效请求】当前 KEY 已欠费" },
    CodeRow { code: "103", action: StopProvider, message: "【无效请求】当前 KEY 被暂停使用" },
    CodeRow { code: "104", action: StopProvider, message: "【无效请求】请求 KEY 异常，请联系管理员" },
    CodeRow { code: "106", action: StopProvider, message: "【无效请求】非法请求过多，请联系管理员" },
    CodeRow { code: "107", action: StopProvider, message: "【无效请求】被禁止的 IP 或者签名错误" },
    CodeRow { code: "108", action: StopProvider, message: "【无效请求】异常请求过多，请联系管理员" },
    CodeRow { code: "109", action: Pause(Pause::UntilBeijingMidnight), message: "【无效请求】请求超过每日系统限制" },
    CodeRow { code: "111", action: StopProvider, message: "【无效请求】接口权限未开通，请联系管理员" },
    CodeRow { code: "112", action: StopProvider, message: "【无效请求】您的账号剩余使用量已不足或已过期" },
    CodeRow { code: "113", action: StopProvider, message: "【无效请求】当前接口已被删除，请重新申请" },
    CodeRow { code: "114", action: StopProvider, message: "【无效请求】当前接口已被禁用，请联系管理员" },
    CodeRow { code: "115", action: Resign, message: "【无效请求】身份验证错误或者已过期" },
    CodeRow { code: "116", action: Pause(Pause::UntilBeijingMidnight), message: "【无效请求】请求超过每日调用总量限制" },
    CodeRow { code: "117", action: StopProvider, message: "【无效请求】当前不支持的请求参数调用量过多" },
    CodeRow { code: "118", action: StopProvider, message: "【无效请求】当前接口不支持此方式的调用" },
    CodeRow { code: "119", action: StopProvider, message: "【无效请求】您的帐号出现异常，请联系管理员" },
    CodeRow { code: "120", action: RetryLater, message: "【无效请求】系统流量异常，请稍后再试" },
    CodeRow { code: "121", action: StopProvider, message: "【无效请求】数据不能出境" },
    CodeRow { code: "199", action: RetryLater, message: "【无效请求】系统未知错误，请联系技术客服" },
    CodeRow { code: "203", action: RetryLater, message: "【无效请求】系统查询有异常，请联系技术人员" },
    CodeRow { code: "214", action: StopProvider, message: "【无效请求】您还未购买过该接口，请先购买" },
    CodeRow { code: "223", action: SubjectRejected, message: "【无效请求】当前接口的计费方式不支持此查询参数" },
];

/// The table's action, with 110's pause taken from the configuration.
pub fn action(code: &str, pause_on_110: Duration) -> (Action, &'static str) {
    let (a, m) = super::lookup(CODES, code);
    if code == "110" {
        return (Pause(Pause::For(pause_on_110)), m);
    }
    (a, m)
}

/// Token = uppercase md5(key + Timespan + SecretKey).
pub fn token(key: &str, timespan: &str, secret_key: &str) -> String {
    super::md5_hex(&format!("{key}{timespan}{secret_key}")).to_ascii_uppercase()
}

/// Timespan: seconds since the epoch.
pub fn timespan(now: DateTime<Utc>) -> String {
    now.timestamp().to_string()
}

pub struct Client {
    pub cfg: QccConfig,
    pub key: SecretString,
    pub secret_key: SecretString,
}

impl Client {
    pub fn request(&self, search_key: &str, page: u32, now: DateTime<Utc>) -> Call {
        let ts = timespan(now);
        Call {
            post: false,
            url: self.cfg.url.clone(),
            query: vec![
                ("key".into(), self.key.expose_secret().to_string()),
                ("searchKey".into(), search_key.to_string()),
                ("pageIndex".into(), page.to_string()),
                ("pageSize".into(), self.cfg.page_size.min(20).to_string()),
            ],
            headers: vec![
                (
                    "Token".into(),
                    token(
                        self.key.expose_secret(),
                        &ts,
                        self.secret_key.expose_secret(),
                    ),
                ),
                ("Timespan".into(), ts),
            ],
            form: None,
        }
    }
}

pub fn parse(body: &str) -> Result<Answer, String> {
    let j: Json = serde_json::from_str(body).map_err(|_| "answer is not JSON".to_string())?;
    let code = match j.get("Status") {
        Some(Json::String(s)) => s.trim().to_string(),
        Some(Json::Number(n)) => n.to_string(),
        _ => return Err("answer has no Status".into()),
    };
    let result = j.get("Result");
    let items = result
        .and_then(|r| r.get("Data"))
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    let verify = result.and_then(|r| r.get("VerifyResult")).and_then(|v| {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    });
    let total = j
        .get("Paging")
        .and_then(|p| p.get("TotalRecords"))
        .and_then(|t| {
            t.as_u64()
                .or_else(|| t.as_str().and_then(|s| s.parse().ok()))
        });
    Ok(Answer {
        empty_success: code == "200" && (verify == Some(0) || items.is_empty()),
        code,
        message: super::text_of(j.get("Message")).unwrap_or_default(),
        order_no: super::text_of(j.get("OrderNumber")),
        total,
        items,
    })
}

/// One customs-credit row per Data item, one penalty row per PunishList entry.
pub fn flatten(items: &[Json]) -> Vec<TableRows> {
    let mut credit = Vec::new();
    let mut punish = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let list = item
            .get("PunishList")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default();
        let mut row = super::flatten_by(item, CREDIT_FIELDS);
        row.values.push(Some(list.len().to_string()));
        credit.push(row);
        for p in &list {
            let inner = super::flatten_by(p, PUNISH_FIELDS);
            let mut values = vec![
                Some((i + 1).to_string()),
                super::text_of(item.get("Id")),
                super::text_of(item.get("RegNo")),
            ];
            values.extend(inner.values);
            punish.push(FlatRow {
                values,
                raw: inner.raw,
            });
        }
    }
    vec![
        TableRows {
            table: CREDIT_TABLE,
            columns: CREDIT_COLUMNS,
            rows: credit,
        },
        TableRows {
            table: PUNISH_TABLE,
            columns: PUNISH_COLUMNS,
            rows: punish,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn token_is_uppercase_md5_of_key_timespan_secret() {
        let cases = [
            ("AppKey", "1654565566", "Secret", "AppKey1654565566Secret"),
            ("k", "0", "s", "k0s"),
        ];
        for (k, ts, s, joined) in cases {
            let t = token(k, ts, s);
            assert_eq!(t, crate::query::md5_hex(joined).to_uppercase());
            assert_eq!(t.len(), 32);
            assert!(
                t.chars()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
            );
        }
        // md5("abc") is a published vector; the Token of key "a", Timespan "b", secret "c".
        assert_eq!(token("a", "b", "c"), "900150983CD24FB0D6963F7D28E17F72");
    }

    #[test]
    fn timespan_is_seconds() {
        let t = Utc.with_ymd_and_hms(2022, 6, 7, 1, 32, 47).unwrap();
        assert_eq!(timespan(t), "1654565567");
    }

    #[test]
    fn request_has_key_in_query_and_token_headers() {
        let c = Client {
            cfg: toml::from_str("url='http://127.0.0.1:1/api/yj/OperationCheck/GetList'\nkey_env='K'\nsecret_key_env='S'\ndaily_budget=1").unwrap(),
            key: SecretString::from("AppKey"),
            secret_key: SecretString::from("Secret"),
        };
        let now = Utc.timestamp_opt(1654565566, 0).unwrap();
        let call = c.request("营口某公司", 2, now);
        let q: std::collections::HashMap<_, _> = call.query.iter().cloned().collect();
        assert_eq!(q["key"], "AppKey");
        assert_eq!(q["searchKey"], "营口某公司");
        assert_eq!(q["pageIndex"], "2");
        assert_eq!(q["pageSize"], "20");
        let h: std::collections::HashMap<_, _> = call.headers.iter().cloned().collect();
        assert_eq!(h["Timespan"], "1654565566");
        assert_eq!(h["Token"], token("AppKey", "1654565566", "Secret"));
        assert!(
            !format!("{call:?}").contains("Secret\""),
            "SecretKey is never sent"
        );
    }

    #[test]
    fn parses_and_flattens_the_spec_example() {
        let body = r#"{"Status": "200", "Message": "【有效请求】查询成功",
          "OrderNumber": "OPERATIONCHECK2022060709324766684283",
          "Paging": {"PageSize": 10, "PageIndex": 1, "TotalRecords": 1},
          "Result": {"VerifyResult": 1, "Data": [{"Id": "x1", "RegGov": "营口海关",
            "TradeType": "进出口货物收发货人", "RegDate": "1997-10-28", "RegNo": "2108950466",
            "AdminArea": "辽宁省营口市", "EconoArea": "一般经济区域", "SpecialArea": "非特殊区域",
            "CancelFlag": "正常", "AnnualStatus": "未报送", "ValidityDate": "", "IndustryType": "",
            "EBusinessType": "", "IdentifyDate": "2022-04-12", "IdentifyLevel": "一般信用企业",
            "IdentifyCode": "", "PunishList": [{"No": "1", "DecisionNo": "x号", "Party": "x公司",
            "PunishDate": "2018-09-05", "CaseProp": "违规"}]}]}}"#;
        let a = parse(body).unwrap();
        assert_eq!(
            (a.code.as_str(), a.total, a.empty_success),
            ("200", Some(1), false)
        );
        assert_eq!(
            a.order_no.as_deref(),
            Some("OPERATIONCHECK2022060709324766684283")
        );
        let t = flatten(&a.items);
        let credit = &t[0].rows[0].values;
        assert_eq!(credit.len(), CREDIT_COLUMNS.len());
        assert_eq!(credit[1].as_deref(), Some("营口海关"));
        assert_eq!(credit[2].as_deref(), Some("进出口货物收发货人"));
        assert_eq!(credit[13].as_deref(), Some("2022-04-12"));
        assert_eq!(credit[14].as_deref(), Some("一般信用企业"));
        assert_eq!(credit[16].as_deref(), Some("1"));
        let p = &t[1].rows[0].values;
        assert_eq!(p.len(), PUNISH_COLUMNS.len());
        assert_eq!(
            p.iter()
                .map(|v| v.as_deref().unwrap_or(""))
                .collect::<Vec<_>>(),
            vec![
                "1",
                "x1",
                "2108950466",
                "1",
                "x号",
                "x公司",
                "2018-09-05",
                "违规"
            ]
        );
        let none = parse(r#"{"Status":"200","Result":{"VerifyResult":0,"Data":[]}}"#).unwrap();
        assert!(none.empty_success);
    }

    #[test]
    fn mapping_rows() {
        let two_hours = Duration::from_secs(7200);
        for (code, want) in [
            ("200", Action::Success),
            ("201", Action::NoResult),
            ("205", Action::RetryLater),
            ("213", Action::SubjectRejected),
            ("110", Action::Pause(Pause::For(two_hours))),
            ("101", Action::StopProvider),
            ("107", Action::StopProvider),
            ("109", Action::Pause(Pause::UntilBeijingMidnight)),
            ("112", Action::StopProvider),
            ("115", Action::Resign),
            ("120", Action::RetryLater),
        ] {
            assert_eq!(action(code, two_hours).0, want, "{code}");
        }
        assert_eq!(
            action("110", Duration::from_secs(60)).0,
            Action::Pause(Pause::For(Duration::from_secs(60)))
        );
        assert_eq!(CODES.len(), 36, "every code of the spec has a row");
    }
}
