//! The configured providers with their credentials, and the one place a `Call` goes on the wire.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use super::{Call, Provider, qcc, shuidi, xinshu};
use crate::config::Config;

pub struct Clients {
    /// Built only when a provider is configured: building a client loads the system's root
    /// certificates, which was a noticeable part of a `once` that sends no query.
    http: Option<reqwest::Client>,
    pub shuidi: Option<shuidi::Client>,
    pub qcc: Option<qcc::Client>,
    pub xinshu: Option<xinshu::Client>,
    /// Providers stopped by an answer in this process: nothing more is sent until restart.
    stopped: Mutex<HashSet<Provider>>,
    /// The runner's idea of now: which Beijing day a call is charged to, freshness, pauses.
    pub clock: QueryClock,
}

/// The real time, which tests move forward to see the next Beijing day's budget without
/// waiting for it. Signatures (ptime, Timespan, Xinshu's sign date) always use the real time:
/// the provider checks them against its own clock.
#[derive(Debug, Default)]
pub struct QueryClock {
    offset_secs: AtomicI64,
}

impl QueryClock {
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::seconds(self.offset_secs.load(Ordering::Relaxed))
    }

    pub fn advance(&self, by: chrono::Duration) {
        self.offset_secs
            .fetch_add(by.num_seconds(), Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients")
            .field("shuidi", &self.shuidi.is_some())
            .field("qcc", &self.qcc.is_some())
            .field("xinshu", &self.xinshu.is_some())
            .finish_non_exhaustive()
    }
}

impl Clients {
    pub fn new(cfg: &Config) -> Result<Clients> {
        let any = cfg.shuidi.is_some() || cfg.qcc.is_some() || cfg.xinshu.is_some();
        let http = if any {
            crate::upstream::init_tls();
            let client = reqwest::Client::builder()
                .timeout(cfg.delivery.http_timeout())
                .build()
                .context("cannot build the HTTP client")?;
            Some(client)
        } else {
            None
        };
        // The credentials were read once, with the configuration.
        let shuidi = cfg.shuidi.as_ref().map(|c| shuidi::Client {
            cfg: c.clone(),
            pkey: c.pkey.value.clone(),
        });
        let qcc = cfg.qcc.as_ref().map(|c| qcc::Client {
            cfg: c.clone(),
            key: c.key.value.clone(),
            secret_key: c.secret_key.value.clone(),
        });
        let xinshu = cfg.xinshu.as_ref().map(|c| xinshu::Client {
            cfg: c.clone(),
            apikey: c.apikey.value.clone(),
            private_key: c.private_key.value.clone(),
        });
        Ok(Clients {
            http,
            shuidi,
            qcc,
            xinshu,
            stopped: Mutex::new(HashSet::new()),
            clock: QueryClock::default(),
        })
    }

    pub fn is_stopped(&self, p: Provider) -> bool {
        self.stopped.lock().expect("stopped set").contains(&p)
    }

    pub fn stop(&self, p: Provider) {
        self.stopped.lock().expect("stopped set").insert(p);
    }

    /// Sends a call; Err is a network failure, described without the URL (it carries keys).
    pub async fn send(&self, call: &Call) -> Result<(u16, String), String> {
        let http = self
            .http
            .as_ref()
            .ok_or("no credit-query provider is configured (未配置信用查询服务商)")?;
        let mut req = if call.post {
            http.post(&call.url)
        } else {
            http.get(&call.url)
        };
        if !call.query.is_empty() {
            req = req.query(&call.query);
        }
        for (k, v) in &call.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some(form) = &call.form {
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form.iter())
                .finish();
            req = req
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body);
        }
        let resp = req.send().await.map_err(|e| {
            let chain = crate::upstream::error_chain(&e.without_url());
            format!("cannot reach the provider: {chain}")
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| {
            let chain = crate::upstream::error_chain(&e.without_url());
            format!("the answer broke off: {chain}")
        })?;
        Ok((status, text))
    }
}
