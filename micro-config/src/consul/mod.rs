//! Settings in Consul's KV store under a prefix, followed with blocking queries.
//!
//! Each key under the prefix is one setting; `/` separates sections, so with
//! the prefix `micro/config/greeter/` the key `micro/config/greeter/db/host`
//! is `db.host`. Values are strings, read as the type asked for.
//!
//! Changes are followed the way Consul documents: a recursive read with
//! `?index=N&wait=…` that the agent holds until something under the prefix
//! changes past index N. An agent that cannot be reached is reported through
//! the watch and retried with backoff, and the watch goes on once it answers.
//!
//! Tested against the Consul stand-in of `micro-test-servers` (no Consul
//! binary can be installed where micro is developed), not a real agent.

mod config;

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use futures::StreamExt;
use micro_core::{Attempts, Backoff};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::Value;

pub use config::ConsulSourceConfig;

use crate::{
    Capabilities, Error, ErrorKind, Result, Source, SourceStream,
    kv::{KvTree, normalize_prefix},
};

/// The waits before asking an agent that failed again: from 250 ms,
/// doubling up to 15 s.
const RETRY: Backoff = Backoff::exponential(Duration::from_millis(250), Duration::from_secs(15));

/// Settings under a Consul KV prefix; see the [module docs](self).
#[derive(Clone)]
pub struct ConsulSource {
    http: reqwest::Client,
    address: String,
    prefix: String,
    wait: Duration,
}

/// One KV pair as Consul returns it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KvPair {
    key: String,
    value: Option<String>,
}

impl ConsulSource {
    /// A source to configure.
    pub fn builder() -> ConsulSourceBuilder {
        ConsulSourceBuilder {
            config: ConsulSourceConfig::default(),
        }
    }

    /// A source with the settings of `config`. Nothing is contacted until
    /// the first load.
    pub fn new(config: ConsulSourceConfig) -> Result<ConsulSource> {
        // Sends the ACL token with every request (rustls with ring).
        let http = config.connection.http_client()?;
        Ok(ConsulSource {
            http,
            address: config.connection.base_url().to_owned(),
            prefix: normalize_prefix(config.prefix.trim_start_matches('/'), '/'),
            wait: Duration::from_secs(config.wait_secs.max(1)),
        })
    }

    /// A source with [`ConsulSourceConfig::from_env`].
    pub fn from_env() -> Result<ConsulSource> {
        ConsulSource::new(ConsulSourceConfig::from_env()?)
    }

    /// The key prefix read.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The keys under the prefix and the index they were read at; with
    /// `after`, a blocking query that returns once the index passes it (or
    /// the wait runs out).
    async fn read(&self, after: Option<u64>) -> Result<(KvTree, u64)> {
        let url = format!("{}/v1/kv/{}", self.address, self.prefix);
        let request = match after {
            Some(index) => self
                .http
                .get(format!(
                    "{url}?recurse&index={index}&wait={}s",
                    self.wait.as_secs()
                ))
                // Consul adds up to wait/16 of jitter to a blocking query.
                .timeout(self.wait + self.wait / 16 + Duration::from_secs(5)),
            None => self
                .http
                .get(format!("{url}?recurse"))
                .timeout(Duration::from_secs(10)),
        };
        let response = request.send().await.map_err(|err| {
            let kind = if err.is_timeout() {
                ErrorKind::Timeout
            } else {
                ErrorKind::Unavailable
            };
            Error::new(kind, format!("reading Consul KV at {url}: {err}")).with_source(err)
        })?;
        let index = response
            .headers()
            .get("X-Consul-Index")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or(0);
        let status = response.status();
        let mut tree = KvTree::new('/');
        if status == StatusCode::NOT_FOUND {
            return Ok((tree, index));
        }
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let kind = match status.as_u16() {
                401 | 403 => ErrorKind::PermissionDenied,
                400 => ErrorKind::InvalidArgument,
                _ => ErrorKind::Unavailable,
            };
            return Err(Error::new(
                kind,
                format!("Consul KV at {url} answered {status}: {}", body.trim()),
            ));
        }
        let pairs: Vec<KvPair> = response.json().await.map_err(|err| {
            Error::unavailable(format!(
                "Consul KV at {url} sent an unreadable answer: {err}"
            ))
            .with_source(err)
        })?;
        for pair in pairs {
            let Some(key) = pair.key.strip_prefix(self.prefix.as_str()) else {
                continue;
            };
            // Keys ending in `/` are Consul's folders, not settings.
            if key.is_empty() || key.ends_with('/') {
                continue;
            }
            match decode(pair.value.as_deref()) {
                Some(value) => tree.insert(key.to_owned(), value),
                None => {
                    tracing::warn!(key = %pair.key, "skipping a Consul config value that is not UTF-8 text")
                }
            }
        }
        Ok((tree, index))
    }
}

/// A KV value: base64 of UTF-8 text; `null` is the empty string.
fn decode(value: Option<&str>) -> Option<String> {
    let Some(encoded) = value else {
        return Some(String::new());
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok()
}

impl std::fmt::Debug for ConsulSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsulSource")
            .field("address", &self.address)
            .field("prefix", &self.prefix)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

/// What a watch remembers between blocking queries.
struct WatchState {
    source: ConsulSource,
    index: u64,
    /// The last snapshot or error reported, so repeats are not reported again.
    last: std::result::Result<Value, String>,
    retry: Attempts,
}

impl WatchState {
    async fn next(&mut self) -> Result<Value> {
        loop {
            match self.source.read(Some(self.index)).await {
                Ok((tree, index)) => {
                    self.retry.reset();
                    // Consul: an index that goes backwards means the store
                    // was reset; start over. An index of 0 must not be used.
                    self.index = if index < self.index { 1 } else { index.max(1) };
                    let snapshot = tree.snapshot();
                    let seen = snapshot
                        .as_ref()
                        .map(Value::clone)
                        .map_err(|e| e.message().to_owned());
                    if seen == self.last {
                        continue;
                    }
                    self.last = seen;
                    return snapshot;
                }
                Err(err) => {
                    let delay = self.retry.next_delay();
                    self.last = Err(err.message().to_owned());
                    // Report now, ask again after the delay (on the next poll).
                    tokio::time::sleep(delay).await;
                    return Err(err);
                }
            }
        }
    }
}

#[async_trait]
impl Source for ConsulSource {
    fn scheme(&self) -> &'static str {
        "consul"
    }

    fn name(&self) -> String {
        format!("consul:{}", self.prefix)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::watched()
    }

    async fn load(&self) -> Result<Value> {
        self.read(None).await?.0.snapshot()
    }

    async fn watch(&self) -> Result<SourceStream> {
        let (tree, index) = self.read(None).await?;
        let first = tree.snapshot();
        let state = WatchState {
            source: self.clone(),
            index: index.max(1),
            last: first
                .as_ref()
                .map(Value::clone)
                .map_err(|e| e.message().to_owned()),
            retry: RETRY.attempts(),
        };
        let rest = futures::stream::unfold(state, |mut state| async move {
            let item = state.next().await;
            Some((item, state))
        });
        Ok(futures::stream::once(async move { first })
            .chain(rest)
            .boxed())
    }
}

/// Configures a [`ConsulSource`]; from [`ConsulSource::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until built"]
pub struct ConsulSourceBuilder {
    config: ConsulSourceConfig,
}

impl ConsulSourceBuilder {
    /// The agent's HTTP address (default `http://127.0.0.1:8500`).
    pub fn address(mut self, address: impl Into<String>) -> ConsulSourceBuilder {
        self.config.connection.address = address.into();
        self
    }

    /// The agent's address and ACL token: the settings every Consul
    /// backend shares.
    pub fn connection(
        mut self,
        connection: micro_connect::consul::ConsulConfig,
    ) -> ConsulSourceBuilder {
        self.config.connection = connection;
        self
    }

    /// The key prefix to read (default `micro/config/`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> ConsulSourceBuilder {
        self.config.prefix = prefix.into();
        self
    }

    /// An ACL token.
    pub fn token(mut self, token: impl Into<String>) -> ConsulSourceBuilder {
        self.config.connection.token = Some(token.into());
        self
    }

    /// How long one blocking query may wait (default 30 s; whole seconds).
    pub fn wait(mut self, wait: Duration) -> ConsulSourceBuilder {
        self.config.wait_secs = wait.as_secs().max(1);
        self
    }

    /// The source.
    pub fn build(self) -> Result<ConsulSource> {
        ConsulSource::new(self.config)
    }
}
