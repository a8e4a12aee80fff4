//! Reading whole configurations: defaults, every problem at once, the environment layer,
//! secrets, and what an error may show.

use super::*;
use crate::schema::Catalog;
use secrecy::ExposeSecret;
use std::sync::OnceLock;

/// A directory of secret files for the test configurations (kept for the whole run).
fn secrets() -> &'static str {
    static DIR: OnceLock<String> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        for (name, text) in [
            ("token", "tok-123\n"),
            ("auth", "auth-456\n"),
            ("key", "0123456789abcdeffedcba9876543210\n"),
            ("pkey", "pk\n"),
            ("qcc.secret", "sk\n"),
        ] {
            std::fs::write(dir.join(name), text).unwrap();
        }
        dir.display().to_string()
    })
}

fn with_secrets(text: &str) -> String {
    text.replace("@S@", secrets())
}

const GOOD: &str = r#"
[database]
url = "sqlite://x.db"
[unit]
uscc = "11620000MB199916XB"
name = "某局"
region_code = "440100"
[gdzw]
api_root = "http://127.0.0.1:1/ebus/tysb-sjcj"
token_file = "@S@/token"
[[job]]
name = "accept"
data_type = "accept"
source = "accept_changes"
key = ["id"]
interval = "30s"
[job.map]
ApplyerName = "applicant"
"#;

fn good() -> String {
    with_secrets(GOOD)
}

/// Every issue of a text, reading and catalog, one per line.
fn issues_with(text: &str, vars: &[(String, String)]) -> String {
    let cat = Catalog::load(None).unwrap();
    let (cfg, mut issues) = Config::read_all(text, "config.toml", vars);
    issues.extend(cfg.validate(&cat));
    issues
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn issues(text: &str) -> String {
    issues_with(text, &[])
}

fn vars(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn good_config_has_no_issues_and_typed_values() {
    let cat = Catalog::load(None).unwrap();
    let cfg = parse_with_env(&good(), &[]).unwrap();
    assert_eq!(cfg.validate(&cat), vec![]);
    assert_eq!(cfg.jobs[0].map["ApplyerName"], "applicant");
    assert_eq!(cfg.jobs[0].upstream, UpstreamKind::Gdzw);
    assert_eq!(cfg.jobs[0].interval(), Some(Duration::from_secs(30)));
    assert_eq!(cfg.jobs[0].settle_lag(), Duration::from_secs(10));
    assert_eq!(cfg.delivery.retry_max, Duration::from_secs(300));
    assert_eq!(cfg.delivery.max_in_flight, 4);
    assert_eq!(cfg.log.format, LogFormat::Text);
    let g = cfg.gdzw.as_ref().unwrap();
    assert_eq!(g.max_records_per_call, 99);
    assert_eq!(g.token.value.expose_secret(), "tok-123");
    let cron = parse_with_env(
        &good().replace("interval = \"30s\"", "schedule = \"0 */5 * * * *\""),
        &[],
    )
    .unwrap();
    let s = cron.jobs[0].schedule().unwrap();
    assert_eq!(s.as_str(), "0 */5 * * * *");
}

#[test]
fn env_overrides_file() {
    let vars = vars(&[
        ("QIANZHI_DATABASE__URL", "postgres://h/db"),
        ("QIANZHI_GDZW__MAX_RECORDS_PER_CALL", "50"),
        ("QIANZHI_CONFIG", "/etc/x.toml"),
        ("QIANZHI_UNIT__REGION_CODE", "440300"),
    ]);
    let cfg = parse_with_env(&good(), &vars).unwrap();
    assert_eq!(cfg.database.url, "postgres://h/db");
    assert_eq!(
        cfg.unit.region_code, "440300",
        "digits stay text where the file has text"
    );
    assert_eq!(cfg.gdzw.unwrap().max_records_per_call, 50);
}

#[test]
fn env_overrides_reach_job_and_query_entries_by_name() {
    let text = with_secrets(&format!(
        "{GOOD}[[job]]\nname = \"daily-process\"\ndata_type = \"process\"\nsource = \"p\"\nkey = [\"id\"]\ninterval = \"1h\"\n{QUERY}"
    ));
    let cfg = parse_with_env(
        &text,
        &vars(&[
            ("QIANZHI_JOB__ACCEPT__ENABLED", "false"),
            ("QIANZHI_JOB__ACCEPT__SETTLE_LAG", "1m"),
            ("QIANZHI_JOB__ACCEPT__MAP__APPLYERNAME", "applicant_name"),
            ("QIANZHI_JOB__DAILY_PROCESS__BATCH_SIZE", "50"),
            ("QIANZHI_QUERY__PENALTIES__INTERVAL", "2h"),
            ("QIANZHI_SHUIDI__DAILY_BUDGET", "9"),
        ]),
    )
    .unwrap();
    let accept = &cfg.jobs[0];
    assert!(!accept.enabled);
    assert_eq!(accept.settle_lag, Duration::from_secs(60));
    assert_eq!(
        accept.map["ApplyerName"], "applicant_name",
        "the file's spelling of the key"
    );
    assert_eq!(cfg.jobs[1].name, "daily-process");
    assert_eq!(cfg.jobs[1].batch_size, 50);
    assert!(cfg.jobs[1].enabled, "only the named entry changes");
    assert_eq!(cfg.queries[0].interval(), Some(Duration::from_secs(7200)));
    assert_eq!(cfg.shuidi.as_ref().unwrap().daily_budget, 9);
    // The query's own budget key does not exist: reported at the variable.
    let e = issues_with(
        &text,
        &vars(&[("QIANZHI_QUERY__PENALTIES__DAILY_BUDGET", "7")]),
    );
    assert!(
        e.contains("environment variable QIANZHI_QUERY__PENALTIES__DAILY_BUDGET (环境变量): query[0] (penalties).daily_budget: unknown key"),
        "{e}"
    );
    // A wrong value from the environment names the variable.
    let e = issues_with(&text, &vars(&[("QIANZHI_JOB__ACCEPT__BATCH_SIZE", "0")]));
    assert!(
        e.contains("environment variable QIANZHI_JOB__ACCEPT__BATCH_SIZE (环境变量): job[0] (accept).batch_size: 0 is out of range"),
        "{e}"
    );
    let e = issues_with(&text, &vars(&[("QIANZHI_JOB__NOPE__ENABLED", "false")]));
    assert!(e.contains("no [[job]] named 'nope'"), "{e}");
}

const QUERY: &str = r#"
[shuidi]
url = "http://127.0.0.1:1/utn/ic/Punish"
pname = "p"
pkey_file = "@S@/pkey"
daily_budget = 100
[[query]]
name = "penalties"
provider = "shuidi"
subjects = "v_subjects"
uscc_column = "uscc"
interval = "1h"
"#;

#[test]
fn all_issues_reported_at_once() {
    let text = good()
        .replace("11620000MB199916XB", "11620000MB199916XA")
        .replace("440100", "44")
        .replace("interval = \"30s\"", "schedule = \"every day\"")
        .replace("ApplyerName", "NoSuchField")
        .replace("accept_changes", "x; drop table y");
    let joined = issues(&text);
    for want in [
        "unit.uscc",
        "unit.region_code",
        ".schedule",
        "NoSuchField",
        ".source",
    ] {
        assert!(joined.contains(want), "missing {want} in\n{joined}");
    }
    assert!(parse_with_env(&text, &[]).is_err());
}

#[test]
fn out_of_range_values_are_issues_not_panics() {
    let text = good()
        .replace(
            "url = \"sqlite://x.db\"",
            "url = \"sqlite://x.db\"\nmax_connections = 4294967295",
        )
        .replace(
            "[gdzw]",
            "[delivery]\nhttp_timeout = \"0s\"\nretry_initial = \"99999999999999999999d\"\nretry_max = \"99999999999999999999999\"\nack_every_calls = 0\nmax_in_flight = 33\n[gdzw]",
        )
        .replace(
            "interval = \"30s\"",
            "interval = \"99999999999999999999d\"\nsettle_lag = \"400000d\"\nbatch_size = 0",
        );
    let joined = issues(&text);
    for want in [
        "database.max_connections: 4294967295 is out of range: use 1 to 100",
        "delivery.http_timeout: '0s' is out of range: use 1s to 1h",
        "delivery.retry_initial: '99999999999999999999d' is too long",
        "delivery.retry_max: '99999999999999999999999' is too long",
        "delivery.ack_every_calls: 0 is out of range",
        "delivery.max_in_flight: 33 is out of range: use 1 to 32",
        ".interval: '99999999999999999999d' is too long",
        ".settle_lag: '400000d' is too long",
        ".batch_size: 0 is out of range",
    ] {
        assert!(joined.contains(want), "missing {want} in\n{joined}");
    }
    let zero = good().replace(
        "url = \"sqlite://x.db\"",
        "url = \"sqlite://x.db\"\nmax_connections = 0",
    );
    let (_, issues) = Config::read_all(&zero, "c.toml", &[]);
    assert!(
        issues.iter().any(|i| i.path == "database.max_connections"
            && i.at.as_deref() == Some("c.toml:4:19")),
        "{issues:?}"
    );
}

#[test]
fn durations_keep_their_spellings() {
    for (text, secs) in [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("10m", 600.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("7", 7.0),
    ] {
        let cfg = parse_with_env(
            &good().replace(
                "interval = \"30s\"",
                &format!("interval = \"{text}\"\nsettle_lag = \"{text}\""),
            ),
            &[],
        );
        // 500ms is below the interval's 1s minimum: only the settle lag is checked there.
        if text == "500ms" {
            let e = format!("{:#}", cfg.unwrap_err());
            assert!(e.contains("interval: '500ms' is out of range"), "{e}");
            continue;
        }
        let cfg = cfg.unwrap();
        assert_eq!(cfg.jobs[0].settle_lag.as_secs_f64(), secs, "{text}");
        assert_eq!(
            cfg.jobs[0].interval().unwrap().as_secs_f64(),
            secs,
            "{text}"
        );
    }
}

const GANSU: &str = r#"
[gansu]
base_url = "http://127.0.0.1:1/submit-server"
authorization_file = "@S@/auth"
key_file = "@S@/key"
[[job]]
name = "jjl"
upstream = "gansu"
data_type = "cclw_jjl"
source = "jjl_changes"
key = ["id"]
interval = "30s"
"#;

#[test]
fn gansu_defaults_are_the_java_helpers() {
    let cat = Catalog::load(None).unwrap();
    let cfg = parse_with_env(&with_secrets(&format!("{GOOD}{GANSU}")), &[]).unwrap();
    assert_eq!(cfg.validate(&cat), vec![]);
    let g = cfg.gansu.as_ref().unwrap();
    assert_eq!(g.iv, "1111111111111111");
    assert_eq!(g.iv_form, crate::crypto::KeyForm::Utf8);
    assert_eq!(g.key_form, crate::crypto::KeyForm::Hex);
    assert_eq!(g.padding, crate::crypto::Padding::Iso7816);
    assert_eq!(g.encoding, crate::crypto::TextEncoding::Hex);
    assert_eq!(g.envelope, Envelope::Values);
    assert_eq!(g.max_records_per_call, 500);
    assert_eq!(g.authorization.value.expose_secret(), "auth-456");
    assert_eq!(cfg.jobs[1].upstream, UpstreamKind::Gansu);
    let dt = cat.data_type("gansu", "cclw_jjl").unwrap();
    assert_eq!(g.route(dt), Some(("L".into(), "00041759".into())));
}

#[test]
fn gansu_issues() {
    let text = with_secrets(&format!("{GOOD}{GANSU}"))
        .replace(&format!("authorization_file = \"{}/auth\"\n", secrets()), "")
        .replace("http://127.0.0.1:1/submit-server", "127.0.0.1")
        .replace("key_file", "key_file = \"/nonexistent/gansu.key\"\nx_key_file")
        .replace("x_key_file", "iv = \"0011\"\nmax_records_per_call = 501\nenvelope = \"wrapper\"\nwrapper_field = \"\"\nlegal_segment = \"L/x\"\n[gansu.resources]\nnope = \"1\"\n[gansu.x]\nx_key_file");
    let joined = issues(&text);
    for want in [
        "gansu.base_url",
        "authorization_file or authorization_env",
        "gansu.iv",
        "gansu.max_records_per_call",
        "gansu.wrapper_field",
        "gansu.legal_segment",
        "gansu.resources.nope",
        "cannot read gansu.key_file /nonexistent/gansu.key",
    ] {
        assert!(joined.contains(want), "missing {want} in\n{joined}");
    }
    let no_section = issues(&with_secrets(&format!(
        "{GOOD}{}",
        &GANSU[GANSU.find("[[job]]").unwrap()..]
    )));
    assert!(
        no_section.contains("needs a [gansu] section"),
        "{no_section}"
    );
}

#[test]
fn syntax_errors_never_quote_a_line_that_may_hold_a_secret() {
    // (config text, text the error must name, secret it must not contain)
    let hidden: [(&str, &str, &str); 7] = [
        (
            "[gdzw]\ntoken = abc123secret\n",
            "line 2, column 9",
            "abc123secret",
        ),
        (
            "[database]\nurl = postgres://u:hunter2@h/db\n",
            "line 2, column 7",
            "hunter2",
        ),
        (
            "[gansu]\nAuthorization = Bearer hunter2\n",
            "line 2",
            "hunter2",
        ),
        (
            "[x]\na = { password = hunter2 }\n",
            "line 2, column 18",
            "hunter2",
        ),
        ("[x]\nsecret_key = hunter2 x\n", "line 2", "hunter2"),
        // Inside a multi-line string: the line has no key of its own.
        (
            "[unit]\nname = \"\"\"\nabc\\q hunter2\n\"\"\"\n",
            "line 3, column 5",
            "hunter2",
        ),
        // The continuation of an array.
        ("[x]\nlist = [\n  hunter2 ]\n", "line 3", "hunter2"),
    ];
    for (text, names, secret) in hidden {
        let e = format!("{:#}", parse_with_env(text, &[]).unwrap_err());
        assert!(e.contains(names), "{text:?}: {e}");
        assert!(!e.contains(secret), "{text:?}: {e}");
        assert!(e.contains("line not shown"), "{text:?}: {e}");
    }
    // A harmless line is still shown.
    let e = format!(
        "{:#}",
        parse_with_env("[unit]\nname = x y\n", &[]).unwrap_err()
    );
    assert!(
        e.contains("line 2, column 8") && e.contains("name = x y"),
        "{e}"
    );
}

#[test]
fn type_errors_hide_values_of_secret_keys() {
    let text = good().replace(
        &format!("token_file = \"{}/token\"", secrets()),
        "token = 90817263",
    );
    let e = format!("{:#}", parse_with_env(&text, &[]).unwrap_err());
    assert!(e.contains("gdzw.token") && !e.contains("90817263"), "{e}");
    // Elsewhere the value stays, to help find the mistake.
    let text = format!("{}[delivery]\nhttp_timeout = 30\n", good());
    let e = format!("{:#}", parse_with_env(&text, &[]).unwrap_err());
    assert!(
        e.contains("30") && e.contains("delivery.http_timeout"),
        "{e}"
    );
}

#[test]
fn numeric_secret_from_environment_stays_text() {
    let vars = vars(&[("QIANZHI_GDZW__TOKEN", "90817263")]);
    let text = good().replace(&format!("token_file = \"{}/token\"\n", secrets()), "");
    let cfg = parse_with_env(&text, &vars).unwrap();
    let token = &cfg.gdzw.unwrap().token;
    assert_eq!(token.value.expose_secret(), "90817263");
    assert_eq!(format!("{token:?}"), "Credential { from: Inline(***), .. }");
}

#[test]
fn unknown_keys_name_the_nearest_valid_key() {
    let text = good()
        .replace("[gdzw]", "[delivery]\nretry_mx = \"1m\"\n[gdzw]")
        .replace(
            "interval = \"30s\"",
            "interval = \"30s\"\nbatchsize = 5\ncolour = \"red\"",
        )
        + "[loog]\nlevel = \"debug\"\n";
    let all = issues(&text);
    for want in [
        "config.toml:9:1: delivery.retry_mx: unknown key (未知的键) → did you mean retry_max? (是否应为 retry_max？)",
        "job[0] (accept).batchsize: unknown key (未知的键) → did you mean batch_size?",
        "job[0] (accept).colour: unknown key (未知的键) → valid keys here: name, upstream, data_type",
        "loog: unknown key (未知的键) → did you mean log?",
    ] {
        assert!(all.contains(want), "missing {want} in\n{all}");
    }
}

#[test]
fn every_secret_problem_is_reported_not_the_first() {
    let text = with_secrets(&format!("{GOOD}{GANSU}"))
        .replace(&format!("{}/token", secrets()), "/nonexistent/gdzw.token")
        .replace(&format!("{}/auth", secrets()), "/nonexistent/gansu.auth")
        .replace(
            &format!("key_file = \"{}/key\"", secrets()),
            "key_env = \"QIANZHI_TEST_UNSET_9127\"",
        );
    let all = issues(&text);
    for want in [
        "gdzw.token_file: cannot read gdzw.token_file /nonexistent/gdzw.token",
        "gansu.authorization_file: cannot read gansu.authorization_file /nonexistent/gansu.auth",
        "gansu.key_env: environment variable QIANZHI_TEST_UNSET_9127 (gansu.key_env) is not set",
    ] {
        assert!(all.contains(want), "missing {want} in\n{all}");
    }
}

#[test]
fn wrong_types_and_missing_keys_are_all_listed() {
    let text = good()
        .replace("region_code = \"440100\"", "region_code = 440100")
        .replace("key = [\"id\"]", "key = \"id\"")
        .replace("source = \"accept_changes\"\n", "")
        .replace("[gdzw]", "[log]\nformat = \"xml\"\n[gdzw]")
        + "[delivery]\nack_every_calls = \"ten\"\n";
    let all = issues(&text);
    for want in [
        "unit.region_code: wrong type: expected text, found integer 440100",
        // `key` looks like a secret's name: its value is not shown.
        "job[0] (accept).key: wrong type: expected a list, found text (value not shown 值不显示)",
        "job[0] (accept).source: missing: this key is required",
        "log.format: unknown variant `xml`, expected `text` or `json`",
        "delivery.ack_every_calls: wrong type: expected a whole number, found text \"ten\"",
    ] {
        assert!(all.contains(want), "missing {want} in\n{all}");
    }
    // A missing section is reported once, not as each of its keys.
    let all = issues(&good().replace(
        "[unit]\nuscc = \"11620000MB199916XB\"\nname = \"某局\"\nregion_code = \"440100\"\n",
        "",
    ));
    assert!(all.contains("unit: missing section [unit]"), "{all}");
    assert_eq!(all.matches("job[0] (accept).key").count(), 0, "{all}");
    assert!(!all.contains("unit.uscc"), "{all}");
}

#[test]
fn query_entries_are_typed() {
    let cfg = parse_with_env(&with_secrets(&format!("{GOOD}{QUERY}")), &[]).unwrap();
    let q = &cfg.queries[0];
    assert_eq!(q.provider, Provider::Shuidi);
    assert_eq!(q.fresh_for(), Duration::from_secs(30 * 86400));
    let s = cfg.shuidi.as_ref().unwrap();
    assert_eq!(s.page_size, 20);
    assert_eq!(s.pkey.value.expose_secret(), "pk");
}

/// The credit-query sections (formerly in `query::config`).
mod query_sections {
    use super::*;

    const BASE: &str = r#"
[database]
url = "sqlite://x.db"
[unit]
uscc = "11620000MB199916XB"
name = "某局"
region_code = "440100"
[shuidi]
url = "http://127.0.0.1:1/utn/ic/Punish"
pname = "p"
pkey_file = "@S@/pkey"
daily_budget = 100
[qcc]
url = "http://127.0.0.1:1/api/yj/OperationCheck/GetList"
key_file = "@S@/pkey"
secret_key_file = "@S@/qcc.secret"
daily_budget = 100
[[query]]
name = "penalties"
provider = "shuidi"
subjects = "v_subjects"
uscc_column = "uscc"
interval = "1h"
"#;

    fn base() -> String {
        with_secrets(BASE)
    }

    #[test]
    fn good_query_config_has_no_issues() {
        assert_eq!(issues(&base()), "");
        let cfg = parse_with_env(&base(), &[]).unwrap();
        let q = &cfg.queries[0];
        assert_eq!(q.fresh_for().as_secs(), 30 * 86400);
        assert_eq!(cfg.shuidi.unwrap().page_size, 20);
        let qcc = cfg.qcc.unwrap();
        assert_eq!(qcc.pause_on_110().as_secs(), 7200);
        assert_eq!(qcc.secret_key.value.expose_secret(), "sk");
    }

    #[test]
    fn every_query_problem_at_once() {
        let text = base()
            .replace("page_size", "x")
            .replace(
                "daily_budget = 100\n[[query]]",
                "daily_budget = 100\npage_size = 50\n[[query]]",
            )
            .replace(&format!("pkey_file = \"{}/pkey\"\n", secrets()), "")
            .replace(
                "url = \"http://127.0.0.1:1/utn",
                "url = \"ftp://127.0.0.1:1/utn",
            )
            .replace(
                "interval = \"1h\"",
                "interval = \"soon\"\nfresh_for = \"a while\"\ntax_no_column = \"tax_no\"",
            )
            + "[[query]]\nname = \"penalties\"\nprovider = \"tianyancha\"\nsubjects = \"x; drop table y\"\nschedule = \"0 0 3 * * *\"\n";
        let all = issues(&text);
        for want in [
            "shuidi.url",
            "set pkey_file or pkey_env",
            "qcc.page_size",
            "query[0] (penalties).interval",
            "query[0] (penalties).fresh_for",
            "for provider xinshu only",
            "query[1] (penalties).name",
            "unknown provider 'tianyancha'",
            "query[1] (penalties).subjects",
        ] {
            assert!(all.contains(want), "missing {want} in\n{all}");
        }
    }

    #[test]
    fn uscc_as_tax_no_is_for_xinshu_with_a_uscc_column() {
        let shuidi = base().replace(
            "interval = \"1h\"",
            "interval = \"1h\"\nuscc_as_tax_no = true",
        );
        assert!(
            issues(&shuidi).contains("uscc_as_tax_no is for provider xinshu only"),
            "{}",
            issues(&shuidi)
        );
        let xinshu = base()
            .replace("provider = \"shuidi\"", "provider = \"xinshu\"")
            .replace("uscc_column = \"uscc\"\n", "")
            .replace(
                "interval = \"1h\"",
                "interval = \"1h\"\nuscc_as_tax_no = true",
            )
            + &with_secrets(
                "[xinshu]\nurl = \"http://127.0.0.1:1/x\"\napikey_file = \"@S@/pkey\"\nprivate_key_file = \"@S@/pkey\"\ndaily_budget = 1\n",
            );
        let all = issues(&xinshu);
        assert!(all.contains("needs uscc_column"), "{all}");
        assert!(!all.contains("xinshu only"), "{all}");
        let ok = xinshu.replace(
            "uscc_as_tax_no = true",
            "uscc_as_tax_no = true\nuscc_column = \"uscc\"",
        );
        assert_eq!(issues(&ok), "");
        let cfg = parse_with_env(&base(), &[]).unwrap();
        assert!(!cfg.queries[0].uscc_as_tax_no, "off unless asked for");
    }

    #[test]
    fn a_query_provider_needs_its_section() {
        let all = issues(&base().replace("provider = \"shuidi\"", "provider = \"xinshu\""));
        assert!(
            all.contains("query[0] (penalties).provider: provider xinshu needs a [xinshu] section"),
            "{all}"
        );
    }

    #[test]
    fn max_pages_over_daily_budget_is_a_warning_not_an_issue() {
        let warn = |text: &str| -> Vec<String> {
            let cfg = parse_with_env(text, &[]).unwrap();
            query::warnings(&cfg)
                .iter()
                .map(|i| i.to_string())
                .collect()
        };
        // BASE: budget 100, max_pages 25 (default): nothing to say.
        assert!(warn(&base()).is_empty());
        for (budget, max_pages, want) in [
            (2, 3, Some(("shuidi.max_pages", "2 days"))),
            (10, 25, Some(("shuidi.max_pages", "3 days"))),
            (25, 25, None),
            (26, 25, None),
        ] {
            let text = base().replacen(
                "daily_budget = 100",
                &format!("daily_budget = {budget}\nmax_pages = {max_pages}"),
                1,
            );
            let w = warn(&text);
            match want {
                Some((path, days)) => {
                    assert_eq!(w.len(), 1, "{w:?}");
                    assert!(w[0].starts_with(path) && w[0].contains(days), "{w:?}");
                    assert!(w[0].contains(&format!(
                        "max_pages ({max_pages}) exceeds daily_budget ({budget})"
                    )));
                }
                None => assert!(w.is_empty(), "{budget}/{max_pages}: {w:?}"),
            }
            assert_eq!(issues(&text), "", "a warning is not a problem");
        }
    }
}

#[test]
fn lease_settings_default_range_and_renew_below_half_the_ttl() {
    let cfg = parse_with_env(&good(), &[]).unwrap();
    assert_eq!(cfg.lease.ttl, Duration::from_secs(30));
    assert_eq!(cfg.lease.renew_interval, Duration::from_secs(10));
    let with = |lease: &str| good().replace("[gdzw]", &format!("[lease]\n{lease}\n[gdzw]"));
    let cfg = parse_with_env(&with("ttl = \"3s\"\nrenew_interval = \"1s\""), &[]).unwrap();
    assert_eq!(
        (cfg.lease.ttl, cfg.lease.renew_interval),
        (Duration::from_secs(3), Duration::from_secs(1))
    );
    let joined = issues(&with("ttl = \"30s\"\nrenew_interval = \"15s\""));
    assert!(
        joined.contains("lease.renew_interval: must be shorter than half of lease.ttl (30s)"),
        "{joined}"
    );
    let joined = issues(&with(
        "ttl = \"1s\"\nrenew_interval = \"100ms\"\nttll = \"5s\"",
    ));
    for want in [
        "lease.ttl: '1s' is out of range: use 2s to 1h",
        "lease.renew_interval: '100ms' is out of range: use 500ms to 30m",
        "lease.ttll: unknown key (未知的键) → did you mean ttl?",
    ] {
        assert!(joined.contains(want), "missing {want} in\n{joined}");
    }
}

/// `order`: time (the default, also with a seq_column as tie-breaker) or seq (seq_column
/// alone); the keyset and the columns each reads, or the issue a wrong combination raises.
#[test]
fn read_order_is_parsed_once_with_its_keyset() {
    // (job lines, Ok((order, keyset, change columns)) or Err(issue text))
    type Want = Result<(ReadOrder, &'static [&'static str], &'static [&'static str]), &'static str>;
    let cases: [(&str, Want); 10] = [
        (
            "",
            Ok((
                ReadOrder::Time,
                &["cd_time", "id"],
                &["id", "cd_time", "cd_operation"],
            )),
        ),
        (
            "seq_column = \"change_id\"",
            Ok((
                ReadOrder::Time,
                &["cd_time", "change_id"],
                &["id", "cd_time", "cd_operation", "change_id"],
            )),
        ),
        // Incremental with a seq_column and no time_column keeps its meaning: (cd_time, seq).
        (
            "mode = \"incremental\"\nseq_column = \"ver\"",
            Ok((
                ReadOrder::Time,
                &["cd_time", "ver"],
                &["id", "cd_time", "ver"],
            )),
        ),
        (
            "mode = \"incremental\"\norder = \"seq\"\nseq_column = \"ver\"",
            Ok((ReadOrder::Seq, &["ver"], &["id", "ver"])),
        ),
        (
            "mode = \"incremental\"\norder = \"seq\"\nseq_column = \"ver\"\ndeleted_column = \"del\"\ndeleted_values = [\"1\"]",
            Ok((ReadOrder::Seq, &["ver"], &["id", "del", "ver"])),
        ),
        (
            "order = \"seq\"\nseq_column = \"change_id\"",
            Ok((
                ReadOrder::Seq,
                &["change_id"],
                &["id", "cd_operation", "change_id"],
            )),
        ),
        (
            "mode = \"incremental\"\norder = \"seq\"",
            Err(".order: order = \"seq\" reads in the order of seq_column, which is not set"),
        ),
        (
            "mode = \"incremental\"\norder = \"seq\"\nseq_column = \"ver\"\ntime_column = \"updated_at\"",
            Err(".time_column: order = \"seq\" reads no time column"),
        ),
        (
            "mode = \"snapshot\"\norder = \"seq\"\nseq_column = \"ver\"",
            Err(".order: a snapshot reads the whole view"),
        ),
        ("order = \"id\"", Err(".order: unknown variant `id`")),
    ];
    for (lines, want) in cases {
        let text = good().replace(
            "interval = \"30s\"",
            &format!("interval = \"30s\"\n{lines}"),
        );
        match want {
            Ok((order, keyset, columns)) => {
                let cfg = parse_with_env(&text, &[]).unwrap_or_else(|e| panic!("{lines}: {e:#}"));
                let job = &cfg.jobs[0];
                assert_eq!(job.order, order, "{lines}");
                assert_eq!(job.keyset(), keyset, "{lines}");
                assert_eq!(job.change_columns(), columns, "{lines}");
                let seq = (order == ReadOrder::Seq).then_some(keyset[0]);
                assert_eq!(job.seq_order(), seq, "{lines}");
            }
            Err(issue) => {
                let joined = issues(&text);
                assert!(
                    joined.contains(issue),
                    "{lines}: missing {issue} in\n{joined}"
                );
                let chinese = joined
                    .chars()
                    .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c));
                assert!(chinese, "bilingual: {joined}");
            }
        }
    }
}
