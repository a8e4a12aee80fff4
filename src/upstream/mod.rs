//! The provincial platforms behind one [`Upstream`] trait: call size, null handling, body
//! encoding, sending, answer classification and reconciliation. Nothing here knows the
//! pipeline; the pipeline knows a platform only through the trait (see ARCHITECTURE.md).

pub mod body;
pub mod gansu;
pub mod gdzw;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::config::{Config, JobConfig, LengthUnit, NullFields};
use crate::db::control::{Body, ReconRow};
use crate::schema::{Catalog, DataType};
pub use body::{CallRecords, Fields};

/// The three kinds of answer the pipeline branches on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// Network, timeout, 5xx: try the same call again later.
    #[error("temporary failure: {0}")]
    Retryable(String),
    /// The platform refused the content of this call.
    #[error("refused by the platform: {0}")]
    Rejected(String),
    /// Auth, signature, configuration: stop the job, keep its outbox.
    #[error("fatal: {0}")]
    Fatal(String),
}

/// The platform's own receipt for an accepted call (Gansu answers with one).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Receipt {
    pub batch_num: String,
    pub id: String,
}

/// An answer on its way: one boxed future per call, so platforms can be chosen at run
/// time without a boxed call per record.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, SubmitError>> + Send + 'a>>;

/// One provincial platform: how its calls are sized, encoded, sent and classified, and how a
/// finished batch is reconciled. The pipeline knows platforms only through this; a new
/// province is one new module implementing it, listed in [`Upstreams::from_config`].
pub trait Upstream: Send + Sync {
    /// The platform's name in the schema catalog and in `qz_batch.upstream`.
    fn name(&self) -> &'static str;
    /// The setting that lists answer codes meaning "stop the job", named in messages.
    fn fatal_codes_setting(&self) -> &'static str;
    /// At most this many records go into one call.
    fn records_per_call(&self) -> usize;
    /// How a record's empty values are written.
    fn null_fields(&self) -> NullFields;
    /// How field lengths are counted when records are validated.
    fn length_unit(&self) -> LengthUnit {
        LengthUnit::Chars
    }
    /// The address of a data type's calls.
    fn call_url(&self, dt: &DataType) -> anyhow::Result<String>;
    /// The body of one call: the exact bytes stored in the outbox and sent, every time.
    fn encode(&self, records: &CallRecords<'_>) -> anyhow::Result<String>;
    /// The units a stored body is split into when a call is refused, in record order.
    fn split(&self, body: &str) -> anyhow::Result<Vec<String>>;
    /// A body for some of those units, built exactly as [`Self::encode`] builds it.
    fn join(&self, parts: &[&str]) -> anyhow::Result<String>;
    /// Sends a body as it is and classifies the answer.
    fn post<'a>(&'a self, url: &'a str, body: Body) -> Pending<'a, Option<Receipt>>;
    /// The Table_name a data type's batches are reconciled under.
    fn table_name(&self, dt: &DataType) -> String;
    /// The platform's reconciliation upload, if it has one.
    fn reconciliation(&self) -> Option<&dyn Reconciliation> {
        None
    }
}

/// A platform's reconciliation call (GDZW 7.9): one record per finished batch.
pub trait Reconciliation: Send + Sync {
    /// Whether each finished batch is uploaded (`pending`) or only recorded (`off`).
    fn upload_each_batch(&self) -> bool;
    /// At most this many rows go in one upload (GDZW: the batchSave limit of its data calls).
    fn rows_per_call(&self) -> usize;
    /// Uploads reconciliation rows in one call (the platform takes or refuses them together).
    fn upload<'a>(&'a self, rows: &'a [ReconRow]) -> Pending<'a, ()>;
}

/// The platforms configured, each with its client, built once when the application starts.
pub struct Upstreams(Vec<Box<dyn Upstream>>);

impl Upstreams {
    /// A client for every platform section present; fails when a secret cannot be read.
    pub fn from_config(cfg: &Config, catalog: &Catalog) -> anyhow::Result<Upstreams> {
        let timeout = cfg.delivery.http_timeout();
        let mut all: Vec<Box<dyn Upstream>> = Vec::new();
        if let Some(g) = &cfg.gdzw {
            all.push(Box::new(gdzw::Gdzw::new(g, catalog, timeout)?));
        }
        if let Some(g) = &cfg.gansu {
            all.push(Box::new(gansu::Gansu::new(g, timeout)?));
        }
        Ok(Upstreams(all))
    }

    /// The platform a job delivers to, by its `upstream` setting: resolved once per run.
    pub fn for_job(&self, job: &JobConfig) -> anyhow::Result<&dyn Upstream> {
        self.0
            .iter()
            .find(|u| u.name() == job.upstream.as_str())
            .map(|u| &**u)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "job {} needs the [{}] section (作业 {} 需要 [{}] 配置段)",
                    job.name,
                    job.upstream,
                    job.name,
                    job.upstream
                )
            })
    }
}

/// Installs ring as rustls' provider once; reqwest is built without a provider of its own
/// so that no aws-lc or OpenSSL build is needed.
pub fn init_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The HTTP client of submit and reconciliation calls. Redirects are never followed: a
/// client that follows a 302 turns the POST into a GET without a body, and the GET's answer
/// would be taken for the platform accepting records it never received.
///
/// Every call in flight holds a keep-alive connection of its own (HTTP/1.1), so the pool
/// keeps as many idle as a job may use at once (`delivery.max_in_flight` at its largest, and
/// the reconciliation upload beside them): a smaller pool would close connections after each
/// burst and open new ones (a TCP and TLS handshake each) on the next. Connections are only
/// opened when that many calls are really under way, so the bound costs nothing at lower
/// settings.
///
/// The system's root certificates are loaded only for an `https://` platform address
/// (`root`): reading and parsing them is some 18 million instructions at every start, and a
/// plain `http://` gateway needs none. Such a client has an empty certificate store, so it
/// could not reach an https address; it is never given one (redirects are not followed).
pub fn submit_client(timeout: Duration, root: &str) -> anyhow::Result<reqwest::Client> {
    init_tls();
    let builder = reqwest::Client::builder()
        .timeout(timeout)
        .pool_max_idle_per_host(crate::config::ranges::MAX_IN_FLIGHT.1 + 1)
        .redirect(reqwest::redirect::Policy::none());
    let builder = if uses_tls(root) {
        builder
    } else {
        builder.tls_certs_only(std::iter::empty())
    };
    builder
        .build()
        .map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {e}"))
}

/// Whether a platform address is reached over TLS.
fn uses_tls(root: &str) -> bool {
    root.trim_start()
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
}

/// An error with every cause under it, "a: b: c", so a warning says "error sending request
/// ...: tcp connect error: Connection refused (os error 111)" and not only its first words.
/// A cause whose text the chain already holds is not repeated (hyper and reqwest often wrap
/// an error and show it again). Build the error without its URL first where the URL may
/// carry keys (`reqwest::Error::without_url`).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// A 3xx answer to a submit call: never an acceptance, and resending it cannot help until
/// the address is corrected, so the job stops with its outbox kept.
pub fn redirect_error(status: u16, location: Option<&str>, setting: &str) -> SubmitError {
    let to = location
        .map(|l| format!(" to {}", escape_answer(l.as_bytes(), 200)))
        .unwrap_or_default();
    SubmitError::Fatal(format!(
        "HTTP {status}: the server redirected the call{to}; a redirect is not an acceptance \
         and is not followed (服务器要求重定向，重定向不算接收，不跟随；请检查 {setting})"
    ))
}

/// An answer's body as text for parsing: a leading UTF-8 byte-order mark is dropped (some
/// gateways send one) and bytes that are not UTF-8 are kept apart by `escape_answer`.
pub fn answer_text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    String::from_utf8_lossy(bytes)
}

/// At most `max` characters of an answer for a log line or an error row: personal numbers
/// masked, control characters and bytes that are not UTF-8 written as escapes, so a broken
/// or hostile answer cannot forge log lines or terminal sequences.
pub fn escape_answer(bytes: &[u8], max: usize) -> String {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut out = String::new();
    let mut shown = 0;
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if shown >= max {
                break;
            }
            shown += 1;
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            if shown >= max {
                break;
            }
            shown += 1;
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    crate::mask::mask_pii(&out)
}

/// Exponential backoff with full jitter, capped.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            attempt: 0,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let exp = self.initial.saturating_mul(1u32 << self.attempt.min(20));
        self.attempt += 1;
        let ceiling = exp.min(self.max);
        // Half fixed, half random: never hammers, never waits far beyond the ceiling.
        let half = ceiling / 2;
        half + half.mul_f64(rand::random::<f64>())
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A shared call body as the HTTP request's body, the same bytes rather than a copy.
fn http_body(body: Body) -> reqwest::Body {
    struct Shared(Body);
    impl AsRef<[u8]> for Shared {
        fn as_ref(&self) -> &[u8] {
            self.0.as_bytes()
        }
    }
    reqwest::Body::from(bytes::Bytes::from_owner(Shared(body)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{GansuConfig, GdzwConfig};
    use crate::mapping::{Op, Record};

    fn catalog() -> Catalog {
        Catalog::load(None).unwrap()
    }

    fn gdzw(settings: &str) -> gdzw::Gdzw {
        let text = format!("api_root = \"http://127.0.0.1:1/ebus/\"\ntoken = \"t\"\n{settings}");
        let cfg: GdzwConfig = toml::from_str(&text).unwrap();
        gdzw::Gdzw::new(&cfg, &catalog(), Duration::from_secs(1)).unwrap()
    }

    /// A Gansu platform whose secrets are read from files in `dir`, as a DBA would keep them.
    fn gansu(dir: &tempfile::TempDir, settings: &str) -> gansu::Gansu {
        let (key, auth) = (dir.path().join("key"), dir.path().join("auth"));
        std::fs::write(&key, "c8e8e733ac8c4043a1d6464ae82d70e6\n").unwrap();
        std::fs::write(&auth, "auth-token\n").unwrap();
        let text = format!(
            "base_url = \"http://127.0.0.1:1/submit/\"\nkey_file = {:?}\nauthorization_file = {:?}\n{settings}",
            key.display().to_string(),
            auth.display().to_string()
        );
        // A section read alone keeps its secrets unread; `Config::parse` reads them once.
        let mut cfg: GansuConfig = toml::from_str(&text).unwrap();
        cfg.key.value = secrecy::SecretString::from("c8e8e733ac8c4043a1d6464ae82d70e6");
        cfg.authorization.value = secrecy::SecretString::from("auth-token");
        gansu::Gansu::new(&cfg, Duration::from_secs(1)).unwrap()
    }

    fn platforms(dir: &tempfile::TempDir) -> Vec<(&'static str, Box<dyn Upstream>)> {
        vec![
            ("gdzw omit", Box::new(gdzw(""))),
            ("gdzw null", Box::new(gdzw("null_fields = \"null\""))),
            ("gdzw empty", Box::new(gdzw("null_fields = \"empty\""))),
            ("gansu values", Box::new(gansu(dir, ""))),
            (
                "gansu values omit",
                Box::new(gansu(dir, "null_fields = \"omit\"")),
            ),
            ("gansu body", Box::new(gansu(dir, "envelope = \"body\""))),
            (
                "gansu wrapper pkcs7 base64",
                Box::new(gansu(
                    dir,
                    "envelope = \"wrapper\"\npadding = \"pkcs7\"\nencoding = \"base64\"",
                )),
            ),
        ]
    }

    fn call<'a>(fields: &'a Fields, records: &'a [(Op, Record)]) -> CallRecords<'a> {
        CallRecords {
            fields,
            records,
            cd_time: "2026-01-02 03:04:05",
            cd_batch: "11620000MB199916XB2026010200001",
        }
    }

    /// What refused-call splitting relies on: a stored body splits into one unit per record,
    /// the units join back to the stored bytes, and any subset joins to exactly the body that
    /// encoding those records alone gives.
    #[test]
    fn every_platform_splits_and_rejoins_its_bodies_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let (fields, records) = body::tests::sample();
        for (name, up) in platforms(&dir) {
            let body = up.encode(&call(&fields, &records)).unwrap();
            if name.starts_with("gdzw") {
                assert_eq!(
                    body,
                    call(&fields, &records).array(up.null_fields()),
                    "{name}"
                );
            } else {
                assert!(
                    !body.contains('甲') && !body.contains("12.5"),
                    "{name}: {body}"
                );
            }
            let parts = up.split(&body).unwrap();
            assert_eq!(parts.len(), records.len(), "{name}");
            let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
            assert_eq!(up.join(&refs).unwrap(), body, "{name}");
            for subset in [&[0][..], &[1], &[2], &[0, 1], &[1, 2], &[0, 2]] {
                let chosen: Vec<(Op, Record)> =
                    subset.iter().map(|i| records[*i].clone()).collect();
                let units: Vec<&str> = subset.iter().map(|i| refs[*i]).collect();
                assert_eq!(
                    up.join(&units).unwrap(),
                    up.encode(&call(&fields, &chosen)).unwrap(),
                    "{name} {subset:?}"
                );
            }
            assert!(up.split("not a body").is_err(), "{name}");
        }
    }

    /// Each platform writes empty values as its own section says: its body is the one built
    /// from the records written under that setting (Gansu's `body` envelope reseals them).
    #[test]
    fn null_handling_is_the_platforms_setting() {
        let dir = tempfile::tempdir().unwrap();
        let (fields, records) = body::tests::sample();
        let records = call(&fields, &records);
        let body = "envelope = \"body\"";
        let cases: Vec<(Box<dyn Upstream>, NullFields)> = vec![
            (Box::new(gdzw("")), NullFields::Omit),
            (Box::new(gdzw("null_fields = \"null\"")), NullFields::Null),
            (Box::new(gdzw("null_fields = \"empty\"")), NullFields::Empty),
            (Box::new(gansu(&dir, body)), NullFields::Empty),
            (
                Box::new(gansu(&dir, &format!("{body}\nnull_fields = \"omit\""))),
                NullFields::Omit,
            ),
        ];
        for (up, nulls) in cases {
            for written in [NullFields::Omit, NullFields::Null, NullFields::Empty] {
                let texts = records.texts(written);
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                let same = up.encode(&records).unwrap() == up.join(&refs).unwrap();
                assert_eq!(
                    same,
                    written == nulls,
                    "{} {nulls:?} {written:?}",
                    up.name()
                );
            }
        }
    }

    #[test]
    fn platform_settings_come_from_their_sections() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = catalog();
        let accept = catalog.data_type("gdzw", "accept").unwrap();
        let jjl = catalog.data_type("gansu", "cclw_jjl").unwrap();
        let mut bare = jjl.clone();
        (bare.resource_id, bare.subject, bare.reconciliation_table) = (None, None, None);
        let tuned = [
            "max_records_per_call = 50",
            "null_fields = \"empty\"",
            "length_unit = \"bytes\"",
            "reconciliation_upload = false",
            "path_prefix = \"upro\"",
            "reconciliation_tables = { accept = \"t_accept\" }",
        ]
        .join("\n");
        let routed = [
            "max_records_per_call = 7",
            "null_fields = \"null\"",
            "resources = { cclw_jjl = \"r9\" }",
            "subjects = { cclw_jjl = \"P\" }",
        ]
        .join("\n");
        type Row<'a> = (
            Box<dyn Upstream>,
            &'a crate::schema::DataType,
            usize,
            NullFields,
            LengthUnit,
            Option<&'a str>,
            &'a str,
            Option<bool>,
        );
        let rows: Vec<Row> = vec![
            (
                Box::new(gdzw("")),
                accept,
                99,
                NullFields::Omit,
                LengthUnit::Chars,
                Some("http://127.0.0.1:1/ebus/uppro/accept/batchSave"),
                "up_pro_accept_v3",
                Some(true),
            ),
            (
                Box::new(gdzw(&tuned)),
                accept,
                50,
                NullFields::Empty,
                LengthUnit::Bytes,
                Some("http://127.0.0.1:1/ebus/upro/accept/batchSave"),
                "t_accept",
                Some(false),
            ),
            (
                Box::new(gansu(&dir, "")),
                jjl,
                500,
                NullFields::Empty,
                LengthUnit::Chars,
                Some("http://127.0.0.1:1/submit/data/L/00041759"),
                "cclw_jjl",
                None,
            ),
            (
                Box::new(gansu(&dir, &routed)),
                &bare,
                7,
                NullFields::Null,
                LengthUnit::Chars,
                Some("http://127.0.0.1:1/submit/data/P/r9"),
                "cclw_jjl",
                None,
            ),
            (
                Box::new(gansu(&dir, "")),
                &bare,
                500,
                NullFields::Empty,
                LengthUnit::Chars,
                None,
                "cclw_jjl",
                None,
            ),
        ];
        for (up, dt, per_call, nulls, unit, url, table, upload) in rows {
            let what = format!("{} {}", up.name(), dt.data_type);
            assert_eq!(up.records_per_call(), per_call, "{what}");
            assert_eq!(up.null_fields(), nulls, "{what}");
            assert_eq!(up.length_unit(), unit, "{what}");
            assert_eq!(up.call_url(dt).ok().as_deref(), url, "{what}");
            assert_eq!(up.table_name(dt), table, "{what}");
            assert_eq!(
                up.reconciliation().map(|r| r.upload_each_batch()),
                upload,
                "{what}"
            );
        }
    }

    #[test]
    fn a_job_resolves_to_its_platform_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let job = |upstream: &str| -> JobConfig {
            toml::from_str(&format!(
                "name = \"j\"\nupstream = \"{upstream}\"\ndata_type = \"accept\"\nsource = \"v\"\nkey = [\"id\"]\ninterval = \"30s\""
            ))
            .unwrap()
        };
        let both = Upstreams(vec![Box::new(gdzw("")), Box::new(gansu(&dir, ""))]);
        assert_eq!(both.for_job(&job("gdzw")).unwrap().name(), "gdzw");
        assert_eq!(both.for_job(&job("gansu")).unwrap().name(), "gansu");
        let only_gdzw = Upstreams(vec![Box::new(gdzw(""))]);
        let err = only_gdzw.for_job(&job("gansu")).err().unwrap().to_string();
        assert!(err.contains("[gansu]"), "{err}");
    }

    #[test]
    fn an_error_chain_names_every_cause_once() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let e = E(
            "error sending request",
            Some(Box::new(E(
                "client error (Connect)",
                Some(Box::new(E(
                    "Connection refused (os error 111)",
                    Some(Box::new(E("Connection refused (os error 111)", None))),
                ))),
            ))),
        );
        assert_eq!(
            error_chain(&e),
            "error sending request: client error (Connect): Connection refused (os error 111)"
        );
    }

    /// Certificates are loaded for https addresses only, whatever the case of the scheme.
    #[test]
    fn only_https_addresses_load_certificates() {
        for (root, tls) in [
            ("https://gd.example/api", true),
            ("HTTPS://gd.example", true),
            (" https://gd.example", true),
            ("http://10.0.0.1:8080/gateway", false),
            ("http://https.example", false),
            ("", false),
        ] {
            assert_eq!(uses_tls(root), tls, "{root}");
        }
    }

    /// A real refused connection: the warning carries the root cause, not only "error sending
    /// request".
    #[tokio::test]
    async fn a_refused_connection_keeps_its_root_cause() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let client = submit_client(Duration::from_secs(2), "http://127.0.0.1").unwrap();
        let e = client
            .post(format!("http://127.0.0.1:{port}/x"))
            .send()
            .await
            .unwrap_err()
            .without_url();
        let text = error_chain(&e);
        assert!(
            text.starts_with("error sending request") && text.contains("onnection refused"),
            "{text}"
        );
    }

    #[test]
    fn answers_are_escaped_and_cut() {
        for (bytes, max, want) in [
            (&b"ok"[..], 10, "ok"),
            (b"\xEF\xBB\xBF{\"a\":1}", 10, "{\"a\":1}"),
            (b"bad \xFF\xFE end", 20, "bad \\xFF\\xFE end"),
            (b"line\nforged\x1b[31m", 40, "line\\nforged\\u{1b}[31m"),
            ("中文答复".as_bytes(), 2, "中文"),
            (b"id 610431198603210047", 40, "id 610431********0047"),
        ] {
            assert_eq!(escape_answer(bytes, max), want, "{bytes:?}");
        }
        assert_eq!(answer_text(b"\xEF\xBB\xBF{}"), "{}");
        assert_eq!(answer_text(b"{}"), "{}");
    }

    #[test]
    fn backoff_grows_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let d: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(50) && d[0] <= Duration::from_millis(100));
        assert!(d[3] >= Duration::from_millis(400) && d[3] <= Duration::from_millis(800));
        assert!(d.iter().all(|x| *x <= Duration::from_secs(2)));
        assert!(d[9] >= Duration::from_secs(1));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
