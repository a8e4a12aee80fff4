//! Xinshu (信数) 税务负面信息 taxBlack: apikey + sign = md5(private key + Beijing yyyyMMdd),
//! the blacklist rows (every field of the spec) and the status-code table.

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use super::{Action, Answer, Call, CodeRow, Subject, TableRows};
use crate::config::query::{ParamsIn, XinshuConfig};
use secrecy::{ExposeSecret, SecretString};

pub const TABLE: &str = "qz_xinshu_tax_black";

/// data[] fields in spec order.
pub const FIELDS: &[&str] = &[
    "blackType",
    "areaName",
    "taxOrgType",
    "taxOrg",
    "managerOrg",
    "creditNo",
    "computerNo",
    "taxManageNo",
    "taxNo",
    "regName",
    "regNo",
    "orgCode",
    "regType",
    "frName",
    "cardType",
    "cardNo",
    "financeName",
    "financeCardNo",
    "address",
    "contactPhone",
    "evalDate",
    "payLimitDate",
    "evalReason",
    "isOwingTax",
    "taxType",
    "taxSum",
    "taxSumNew",
    "illegal",
    "crawlSource",
    "bizOrg",
    "bizDate",
    "regDate",
    "expireDate",
];
pub const COLUMNS: &[&str] = &[
    "black_type",
    "area_name",
    "tax_org_type",
    "tax_org",
    "manager_org",
    "credit_no",
    "computer_no",
    "tax_manage_no",
    "tax_no",
    "reg_name",
    "reg_no",
    "org_code",
    "reg_type",
    "fr_name",
    "card_type",
    "card_no",
    "finance_name",
    "finance_card_no",
    "address",
    "contact_phone",
    "eval_date",
    "pay_limit_date",
    "eval_reason",
    "is_owing_tax",
    "tax_type",
    "tax_sum",
    "tax_sum_new",
    "illegal",
    "crawl_source",
    "biz_org",
    "biz_date",
    "reg_date",
    "expire_date",
];

use Action::*;

/// Every code of the spec, with its message verbatim. 1002 is re-signed once (a call made
/// across Beijing midnight carries yesterday's date); a second 1002 stops the provider.
#[rustfmt::skip]
pub const CODES: &[CodeRow] = &[
    CodeRow { code: "0000", action: Success, message: "查询成功" },
    CodeRow { code: "0001", action: NoResult, message: "查询成功,无数据" },
    CodeRow { code: "1000", action: StopProvider, message: "apikey 校验失败" },
    CodeRow { code: "1001", action: StopProvider, message: "apikey 暂停使用" },
    CodeRow { code: "1002", action: Resign, message: "sign 校验失败" },
    CodeRow { code: "1003", action: StopProvider, message: "未配置资源访问权限" },
    CodeRow { code: "1004", action: StopProvider, message: "无该资源访问权限" },
    CodeRow { code: "1005", action: StopProvider, message: "未授权的 IP 地址" },
    CodeRow { code: "2000", action: SubjectRejected, message: "参数{}设置错误:{...具体错误信息...}" },
    CodeRow { code: "3000", action: StopProvider, message: "未配置查询次数" },
    CodeRow { code: "3001", action: StopProvider, message: "可用查询次数为 0" },
    CodeRow { code: "3002", action: StopProvider, message: "未配置资源池" },
    CodeRow { code: "3003", action: StopProvider, message: "资源池可用次数为 0" },
    CodeRow { code: "9999", action: RetryLater, message: "查询失败, 服务端异常" },
];

/// The Beijing (UTC+8) calendar date, yyyyMMdd, whatever the host's time zone.
pub fn sign_date(now: DateTime<Utc>) -> String {
    now.with_timezone(&crate::timefmt::beijing())
        .format("%Y%m%d")
        .to_string()
}

/// sign = md5(private key + yyyyMMdd); the spec accepts either case, we send lowercase.
pub fn sign(private_key: &str, now: DateTime<Utc>) -> String {
    super::md5_hex(&format!("{private_key}{}", sign_date(now)))
}

pub struct Client {
    pub cfg: XinshuConfig,
    pub apikey: SecretString,
    pub private_key: SecretString,
}

impl Client {
    /// None when the subject has none of taxName, idCard, taxNo.
    pub fn request(&self, s: &Subject, now: DateTime<Utc>) -> Option<Call> {
        let mut params = vec![
            (
                "apikey".to_string(),
                self.apikey.expose_secret().to_string(),
            ),
            (
                "sign".to_string(),
                sign(self.private_key.expose_secret(), now),
            ),
        ];
        let mut any = false;
        for (k, v) in [
            ("taxName", &s.name),
            ("idCard", &s.id_card),
            ("taxNo", &s.tax_no),
        ] {
            if let Some(v) = v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                params.push((k.to_string(), v.to_string()));
                any = true;
            }
        }
        if !any {
            return None;
        }
        let form = self.cfg.params_in == ParamsIn::Form;
        Some(Call {
            post: true,
            url: self.cfg.url.clone(),
            query: if form { vec![] } else { params.clone() },
            headers: vec![],
            form: form.then_some(params),
        })
    }
}

pub fn parse(body: &str) -> Result<Answer, String> {
    let j: Json = serde_json::from_str(body).map_err(|_| "answer is not JSON".to_string())?;
    let code = match j.get("rc") {
        Some(Json::String(s)) => s.trim().to_string(),
        Some(Json::Number(n)) => format!("{:0>4}", n.to_string()),
        _ => return Err("answer has no rc".into()),
    };
    let items = match j.get("data") {
        Some(Json::Array(a)) => a.clone(),
        Some(Json::Object(o)) if o.is_empty() => vec![],
        Some(o @ Json::Object(_)) => vec![o.clone()],
        _ => vec![],
    };
    Ok(Answer {
        // 0000 "查询成功" without data is no data: recorded as no result, like 0001.
        empty_success: code == "0000" && items.is_empty(),
        code,
        message: super::text_of(j.get("msg")).unwrap_or_default(),
        order_no: super::text_of(j.get("orderNo")),
        total: None,
        items,
    })
}

pub fn flatten(items: &[Json]) -> Vec<TableRows> {
    vec![TableRows {
        table: TABLE,
        columns: COLUMNS,
        rows: items.iter().map(|i| super::flatten_by(i, FIELDS)).collect(),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn sign_uses_the_beijing_date() {
        // 23:30 UTC on 2024-03-14 is 07:30 on the 15th in Beijing.
        let late_utc = Utc.with_ymd_and_hms(2024, 3, 14, 23, 30, 0).unwrap();
        assert_eq!(sign_date(late_utc), "20240315");
        assert_eq!(
            sign("my-private-key", late_utc),
            crate::query::md5_hex("my-private-key20240315")
        );
        assert_ne!(
            sign("my-private-key", late_utc),
            crate::query::md5_hex("my-private-key20240314"),
            "the UTC date would be wrong"
        );
        // 15:59:59 UTC is still the same Beijing day; 16:00 UTC is the next.
        let before = Utc.with_ymd_and_hms(2024, 12, 31, 15, 59, 59).unwrap();
        let after = Utc.with_ymd_and_hms(2024, 12, 31, 16, 0, 0).unwrap();
        assert_eq!(sign_date(before), "20241231");
        assert_eq!(sign_date(after), "20250101");
        // Published md5("abc"): private key "abc" signed on no date would be this; with a
        // date it must differ, and it is 32 hex digits.
        assert_eq!(
            crate::query::md5_hex("abc"),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(sign("abc", after).len(), 32);
    }

    fn client(params_in: &str) -> Client {
        Client {
            cfg: toml::from_str(&format!(
                "url='http://127.0.0.1:1/ws/repository/taxBlack'\napikey_env='A'\nprivate_key_env='P'\ndaily_budget=1\nparams_in='{params_in}'"
            ))
            .unwrap(),
            apikey: SecretString::from("ak"),
            private_key: SecretString::from("pk"),
        }
    }

    #[test]
    fn request_sends_what_the_subject_has() {
        let now = Utc.with_ymd_and_hms(2024, 3, 14, 23, 30, 0).unwrap();
        let s = Subject {
            key: "k".into(),
            name: Some("苏州京奥广告传媒有限公司".into()),
            tax_no: Some("91320500MA1MXXXX0X".into()),
            ..Default::default()
        };
        let call = client("form").request(&s, now).unwrap();
        assert!(call.post && call.query.is_empty());
        let f: std::collections::HashMap<_, _> = call.form.unwrap().into_iter().collect();
        assert_eq!(f["apikey"], "ak");
        assert_eq!(f["sign"], crate::query::md5_hex("pk20240315"));
        assert_eq!(f["taxName"], "苏州京奥广告传媒有限公司");
        assert_eq!(f["taxNo"], "91320500MA1MXXXX0X");
        assert!(!f.contains_key("idCard"));
        let q = client("query").request(&s, now).unwrap();
        assert!(q.form.is_none() && q.query.len() == 4);
        assert!(client("form").request(&Subject::default(), now).is_none());
    }

    #[test]
    fn any_one_identity_is_enough() {
        let now = Utc.with_ymd_and_hms(2024, 3, 14, 8, 0, 0).unwrap();
        let t = |v: &str| Some(v.to_string());
        for (name, id_card, tax_no, want) in [
            (
                None,
                t("610431198603210047"),
                None,
                Some(vec![("idCard", "610431198603210047")]),
            ),
            (
                None,
                None,
                t("440104198603210047"),
                Some(vec![("taxNo", "440104198603210047")]),
            ),
            (t(" "), t(""), None, None),
        ] {
            let s = Subject {
                key: "k".into(),
                name,
                id_card,
                tax_no,
                ..Default::default()
            };
            let got = client("form").request(&s, now).map(|c| {
                c.form
                    .unwrap()
                    .into_iter()
                    .filter(|(k, _)| k != "apikey" && k != "sign")
                    .collect::<Vec<_>>()
            });
            let want = want.map(|w| {
                w.into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<Vec<_>>()
            });
            assert_eq!(got, want);
        }
    }

    #[test]
    fn parses_answers() {
        let ok = parse(r#"{"rc":"0000","msg":"查询成功","orderNo":"201511011666","data":[{"blackType":"非正常户","taxNo":"3102305","taxSum":"1","taxSum":"2","cardNo":"3101052"}]}"#).unwrap();
        assert_eq!(ok.code, "0000");
        assert_eq!(ok.order_no.as_deref(), Some("201511011666"));
        let t = flatten(&ok.items);
        let v = &t[0].rows[0].values;
        assert_eq!(v.len(), 33);
        assert_eq!(v[0].as_deref(), Some("非正常户"));
        assert_eq!(v[8].as_deref(), Some("3102305"));
        assert_eq!(
            v[25].as_deref(),
            Some("2"),
            "the later of duplicated keys wins"
        );
        assert!(
            parse(r#"{"rc":"1000","msg":"apikey 校验失败"}"#)
                .unwrap()
                .items
                .is_empty()
        );
        assert!(parse("").is_err());
        assert!(!ok.empty_success);
    }

    #[test]
    fn success_without_data_is_empty() {
        for (body, items, empty) in [
            (r#"{"rc":"0000","msg":"查询成功","data":[]}"#, 0, true),
            (r#"{"rc":"0000","msg":"查询成功"}"#, 0, true),
            (r#"{"rc":"0000","data":null}"#, 0, true),
            (r#"{"rc":"0000","data":{}}"#, 0, true),
            (r#"{"rc":"0000","data":{"blackType":"欠税户"}}"#, 1, false),
            (r#"{"rc":"0001","msg":"查询成功,无数据"}"#, 0, false),
        ] {
            let a = parse(body).unwrap();
            assert_eq!((a.items.len(), a.empty_success), (items, empty), "{body}");
        }
    }

    #[test]
    fn mapping_rows() {
        for (code, want) in [
            ("0000", Action::Success),
            ("0001", Action::NoResult),
            ("1000", Action::StopProvider),
            ("1002", Action::Resign),
            ("1005", Action::StopProvider),
            ("2000", Action::SubjectRejected),
            ("3001", Action::StopProvider),
            ("9999", Action::RetryLater),
        ] {
            assert_eq!(super::super::lookup(CODES, code).0, want, "{code}");
        }
        assert_eq!(CODES.len(), 14, "every code of the spec has a row");
    }
}
