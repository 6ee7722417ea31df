//! Settings stored in etcd under a key prefix, followed with an etcd watch.
//!
//! Each key under the prefix is one setting; `/` separates sections, so with
//! the prefix `micro/config/greeter/` the key `micro/config/greeter/db/host`
//! is `db.host`. Values are strings, read as the type asked for.
//!
//! The watch starts at the revision right after the snapshot it begins with,
//! so no change is missed between the two. When the watch fails (etcd
//! restarts, the revision was compacted) the stream reports the error and
//! ends; [`Config`](crate::Config) keeps the last good values and reopens it.

mod config;

use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Client, EventType, GetOptions, KeyValue, WatchOptions};
use futures::StreamExt;
use serde_json::Value;

pub use config::EtcdSourceConfig;

use crate::{
    Capabilities, Error, Result, Source, SourceStream,
    kv::{KvTree, normalize_prefix},
};

/// Settings under an etcd key prefix; see the [module docs](self).
#[derive(Clone)]
pub struct EtcdSource {
    client: Client,
    prefix: String,
    endpoints: Vec<String>,
}

impl EtcdSource {
    /// A source to configure.
    pub fn builder() -> EtcdSourceBuilder {
        EtcdSourceBuilder {
            config: EtcdSourceConfig::default(),
        }
    }

    /// Connects with the settings of `config`.
    pub async fn connect(config: EtcdSourceConfig) -> Result<EtcdSource> {
        let client = config.connection.connect().await?;
        Ok(EtcdSource::with_client(client, config))
    }

    /// Uses an existing etcd client (shared with other etcd backends of the
    /// process); `config.connection` names the endpoints in messages only.
    pub fn with_client(client: Client, config: EtcdSourceConfig) -> EtcdSource {
        EtcdSource {
            client,
            prefix: normalize_prefix(&config.prefix, '/'),
            endpoints: config.connection.endpoints,
        }
    }

    /// Connects with [`EtcdSourceConfig::from_env`].
    pub async fn from_env() -> Result<EtcdSource> {
        EtcdSource::connect(EtcdSourceConfig::from_env()?).await
    }

    /// The key prefix read.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The keys under the prefix and the revision they were read at.
    async fn read(&self) -> Result<(KvTree, i64)> {
        let response = self
            .client
            .clone()
            .get(self.prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|err| etcd_error(format!("reading etcd prefix {:?}", self.prefix), err))?;
        let mut tree = KvTree::new('/');
        for kv in response.kvs() {
            if let Some((key, value)) = self.entry(kv) {
                tree.insert(key, value);
            }
        }
        let revision = response.header().map_or(0, |header| header.revision());
        Ok((tree, revision))
    }

    /// A key/value pair relative to the prefix; keys and values that are not
    /// UTF-8 are skipped with a warning (settings are text).
    fn entry(&self, kv: &KeyValue) -> Option<(String, String)> {
        let key = self.relative_key(kv)?;
        match kv.value_str() {
            Ok(value) => Some((key, value.to_owned())),
            Err(_) => {
                tracing::warn!(key = %key, "skipping an etcd config value that is not UTF-8");
                None
            }
        }
    }

    fn relative_key(&self, kv: &KeyValue) -> Option<String> {
        let key = kv.key_str().ok()?;
        Some(key.strip_prefix(self.prefix.as_str())?.to_owned())
    }
}

fn etcd_error(context: String, err: etcd_client::Error) -> Error {
    let kind = match &err {
        etcd_client::Error::InvalidArgs(_) | etcd_client::Error::InvalidUri(_) => {
            crate::ErrorKind::InvalidArgument
        }
        _ => crate::ErrorKind::Unavailable,
    };
    Error::new(kind, format!("{context}: {err}")).with_source(err)
}

impl std::fmt::Debug for EtcdSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdSource")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

struct WatchState {
    source: EtcdSource,
    tree: KvTree,
    stream: etcd_client::WatchStream,
    ended: bool,
}

impl WatchState {
    /// The next new snapshot (or error); `None` once the watch has ended.
    async fn next(&mut self) -> Option<Result<Value>> {
        if self.ended {
            return None;
        }
        loop {
            let response = match self.stream.next().await {
                Some(Ok(response)) => response,
                Some(Err(err)) => {
                    self.ended = true;
                    return Some(Err(etcd_error(
                        "the etcd config watch failed".to_owned(),
                        err,
                    )));
                }
                None => return None,
            };
            if response.canceled() {
                self.ended = true;
                return Some(Err(Error::unavailable(format!(
                    "etcd cancelled the config watch: {} (compacted at revision {})",
                    response.cancel_reason(),
                    response.compact_revision()
                ))));
            }
            if response.events().is_empty() {
                continue;
            }
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                match event.event_type() {
                    EventType::Put => {
                        if let Some((key, value)) = self.source.entry(kv) {
                            self.tree.insert(key, value);
                        }
                    }
                    EventType::Delete => {
                        if let Some(key) = self.source.relative_key(kv) {
                            self.tree.remove(&key);
                        }
                    }
                }
            }
            return Some(self.tree.snapshot());
        }
    }
}

#[async_trait]
impl Source for EtcdSource {
    fn scheme(&self) -> &'static str {
        "etcd"
    }

    fn name(&self) -> String {
        format!("etcd:{}", self.prefix)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::watched()
    }

    async fn load(&self) -> Result<Value> {
        self.read().await?.0.snapshot()
    }

    async fn watch(&self) -> Result<SourceStream> {
        let (tree, revision) = self.read().await?;
        let first = tree.snapshot();
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let stream = self
            .client
            .clone()
            .watch(self.prefix.as_str(), Some(options))
            .await
            .map_err(|err| etcd_error(format!("watching etcd prefix {:?}", self.prefix), err))?;
        let state = WatchState {
            source: self.clone(),
            tree,
            stream,
            ended: false,
        };
        let rest = futures::stream::unfold(state, |mut state| async move {
            let item = state.next().await?;
            Some((item, state))
        });
        Ok(futures::stream::once(async move { first })
            .chain(rest)
            .boxed())
    }
}

/// Configures an [`EtcdSource`]; from [`EtcdSource::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until built"]
pub struct EtcdSourceBuilder {
    config: EtcdSourceConfig,
}

impl EtcdSourceBuilder {
    /// etcd client URLs (default `http://127.0.0.1:2379`).
    pub fn endpoints<I, S>(mut self, endpoints: I) -> EtcdSourceBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.connection.endpoints = endpoints.into_iter().map(Into::into).collect();
        self
    }

    /// Where to connect and how to authenticate: the settings every etcd
    /// backend shares.
    pub fn connection(mut self, connection: micro_connect::etcd::EtcdConfig) -> EtcdSourceBuilder {
        self.config.connection = connection;
        self
    }

    /// The key prefix to read (default `micro/config/`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> EtcdSourceBuilder {
        self.config.prefix = prefix.into();
        self
    }

    /// How long to wait for a connection (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> EtcdSourceBuilder {
        self.config.connection.connect_timeout = timeout;
        self
    }

    /// Connects.
    pub async fn build(self) -> Result<EtcdSource> {
        EtcdSource::connect(self.config).await
    }
}
