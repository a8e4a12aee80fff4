//! Submit protocols of the provincial platforms, and how their answers are classified.

pub mod gansu;
pub mod gdzw;

use std::time::Duration;

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

/// Where one job's calls go. The delivery loop sends, and splits refused calls, through
/// this, whatever the platform's wire format.
pub enum Sender<'a> {
    Gdzw {
        client: &'a gdzw::GdzwClient,
        endpoint: &'a str,
    },
    Gansu {
        client: &'a gansu::GansuClient,
        url: String,
    },
}

impl Sender<'_> {
    /// Sends a stored body as it is; Gansu answers with its own batch number.
    pub async fn post(&self, body: String) -> Result<Option<gansu::Receipt>, SubmitError> {
        match self {
            Sender::Gdzw { client, endpoint } => {
                client.post_batch(endpoint, body).await.map(|()| None)
            }
            Sender::Gansu { client, url } => client.post(url, body).await.map(Some),
        }
    }

    /// The records of a stored body, as the units a refused call is split into.
    pub fn parts(&self, body: &str) -> anyhow::Result<Vec<String>> {
        match self {
            Sender::Gdzw { .. } => {
                let raw: Vec<&serde_json::value::RawValue> = serde_json::from_str(body)
                    .map_err(|e| anyhow::anyhow!("stored call body is not a JSON array: {e}"))?;
                Ok(raw.iter().map(|r| r.get().to_string()).collect())
            }
            Sender::Gansu { client, .. } => client.codec.parts(body),
        }
    }

    /// A body for some of the parts, built exactly as the stored body was.
    pub fn join(&self, parts: &[&str]) -> anyhow::Result<String> {
        match self {
            Sender::Gdzw { .. } => Ok(format!("[{}]", parts.join(","))),
            Sender::Gansu { client, .. } => client.codec.join(parts),
        }
    }
}

/// Which platform settings and client a job uses, by its `upstream`.
impl crate::pipeline::App {
    pub(crate) fn null_fields(&self, job: &crate::config::JobConfig) -> crate::config::NullFields {
        let n = match job.upstream {
            crate::config::UpstreamKind::Gansu => self.cfg.gansu.as_ref().map(|g| g.null_fields),
            crate::config::UpstreamKind::Gdzw => self.cfg.gdzw.as_ref().map(|g| g.null_fields),
        };
        n.unwrap_or(crate::config::NullFields::Omit)
    }

    /// The job's platform client and call address.
    pub(crate) fn sender<'a>(
        &'a self,
        job: &crate::config::JobConfig,
        dt: &'a crate::schema::DataType,
    ) -> anyhow::Result<Sender<'a>> {
        if job.upstream == crate::config::UpstreamKind::Gansu {
            let client = self
                .gansu
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("job {} needs the [gansu] section", job.name))?;
            let (segment, resource) = self
                .cfg
                .gansu
                .as_ref()
                .and_then(|g| g.route(dt))
                .ok_or_else(|| {
                    anyhow::anyhow!("data type {} has no resource id or subject", dt.data_type)
                })?;
            return Ok(Sender::Gansu {
                client,
                url: client.url(&segment, &resource),
            });
        }
        let client = self
            .gdzw
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("job {} needs the [gdzw] section", job.name))?;
        Ok(Sender::Gdzw {
            client,
            endpoint: &dt.endpoint,
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
pub fn submit_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    init_tls();
    reqwest::Client::builder()
        .timeout(timeout)
        .pool_max_idle_per_host(4)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {e}"))
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

#[cfg(test)]
mod tests {
    use super::*;

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
