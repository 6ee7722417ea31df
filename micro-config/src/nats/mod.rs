//! Settings in a NATS JetStream key/value bucket, followed with a KV watch.
//!
//! Each key is one setting; NATS keys already separate sections with dots,
//! so the key `db.host` is `db.host` (after an optional prefix such as
//! `greeter.`). Values are strings, read as the type asked for.
//!
//! The watch is opened before the snapshot is read and an update counts only
//! if its revision is newer than the one read for its key, so no change is
//! missed or applied twice between the two.

mod config;

use std::collections::HashMap;

use async_nats::jetstream::{
    self,
    kv::{Entry, Operation, Store, Watch},
};
use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

pub use config::NatsSourceConfig;

use crate::{
    Capabilities, Error, ErrorKind, Result, Source, SourceStream,
    kv::{KvTree, normalize_prefix},
};

/// Settings in a NATS key/value bucket; see the [module docs](self).
#[derive(Clone)]
pub struct NatsSource {
    store: Store,
    bucket: String,
    prefix: String,
}

impl NatsSource {
    /// A source to configure.
    pub fn builder() -> NatsSourceBuilder {
        NatsSourceBuilder {
            config: NatsSourceConfig::default(),
        }
    }

    /// Connects with the settings of `config`.
    pub async fn connect(config: NatsSourceConfig) -> Result<NatsSource> {
        let client = config.connection.connect().await?;
        NatsSource::with_client(client, config).await
    }

    /// Uses an existing NATS connection (shared with other NATS backends of
    /// the process); `config.connection` is ignored.
    pub async fn with_client(
        client: async_nats::Client,
        config: NatsSourceConfig,
    ) -> Result<NatsSource> {
        let jetstream = jetstream::new(client);
        let store = match jetstream.get_key_value(config.bucket.as_str()).await {
            Ok(store) => store,
            Err(err) if config.create_bucket => {
                tracing::debug!(bucket = %config.bucket, error = %err, "creating the config bucket");
                jetstream
                    .create_key_value(jetstream::kv::Config {
                        bucket: config.bucket.clone(),
                        history: 1,
                        ..Default::default()
                    })
                    .await
                    .map_err(|err| {
                        nats_error(
                            format!("cannot create the KV bucket {:?}", config.bucket),
                            err,
                        )
                    })?
            }
            Err(err) => {
                return Err(Error::not_found(format!(
                    "the NATS KV bucket {:?} cannot be opened: {err}",
                    config.bucket
                ))
                .with_source(err));
            }
        };
        Ok(NatsSource {
            store,
            prefix: normalize_prefix(&config.prefix, '.'),
            bucket: config.bucket,
        })
    }

    /// Connects with [`NatsSourceConfig::from_env`].
    pub async fn from_env() -> Result<NatsSource> {
        NatsSource::connect(NatsSourceConfig::from_env()?).await
    }

    /// The bucket's store, for writing settings.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The keys under the prefix with their values and revisions.
    async fn read(&self) -> Result<(KvTree, HashMap<String, u64>)> {
        let keys: Vec<String> = self
            .store
            .keys()
            .await
            .map_err(|err| nats_error(format!("listing the keys of {:?}", self.bucket), err))?
            .try_collect()
            .await
            .map_err(|err| nats_error(format!("listing the keys of {:?}", self.bucket), err))?;
        let mut tree = KvTree::new('.');
        let mut revisions = HashMap::new();
        for key in keys.into_iter().filter(|key| key.starts_with(&self.prefix)) {
            let entry = self.store.entry(key.as_str()).await.map_err(|err| {
                nats_error(format!("reading {key:?} from {:?}", self.bucket), err)
            })?;
            if let Some(entry) = entry {
                revisions.insert(entry.key.clone(), entry.revision);
                if entry.operation == Operation::Put {
                    self.apply(&mut tree, &entry);
                }
            }
        }
        Ok((tree, revisions))
    }

    fn apply(&self, tree: &mut KvTree, entry: &Entry) {
        let Some(key) = entry.key.strip_prefix(self.prefix.as_str()) else {
            return;
        };
        match entry.operation {
            Operation::Put => match std::str::from_utf8(&entry.value) {
                Ok(value) => tree.insert(key.to_owned(), value.to_owned()),
                Err(_) => {
                    tracing::warn!(key = %entry.key, "skipping a NATS config value that is not UTF-8");
                }
            },
            Operation::Delete | Operation::Purge => tree.remove(key),
        }
    }

    async fn open_watch(&self) -> Result<Watch> {
        let watch = if self.prefix.is_empty() {
            self.store.watch_all().await
        } else {
            self.store.watch(format!("{}>", self.prefix)).await
        };
        watch.map_err(|err| nats_error(format!("watching the KV bucket {:?}", self.bucket), err))
    }
}

fn nats_error(context: String, err: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::Unavailable, format!("{context}: {err}")).with_source(err)
}

impl std::fmt::Debug for NatsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSource")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

struct WatchState {
    source: NatsSource,
    tree: KvTree,
    revisions: HashMap<String, u64>,
    watch: Watch,
    ended: bool,
}

impl WatchState {
    async fn next(&mut self) -> Option<Result<Value>> {
        if self.ended {
            return None;
        }
        loop {
            let entry = match self.watch.next().await? {
                Ok(entry) => entry,
                Err(err) => {
                    self.ended = true;
                    return Some(Err(nats_error(
                        "the NATS config watch failed".to_owned(),
                        err,
                    )));
                }
            };
            // Read before the watch caught up: already in the snapshot.
            let known = self.revisions.get(&entry.key).copied().unwrap_or(0);
            if entry.revision <= known {
                continue;
            }
            self.revisions.insert(entry.key.clone(), entry.revision);
            self.source.apply(&mut self.tree, &entry);
            return Some(self.tree.snapshot());
        }
    }
}

#[async_trait]
impl Source for NatsSource {
    fn scheme(&self) -> &'static str {
        "nats"
    }

    fn name(&self) -> String {
        format!("nats:{}/{}", self.bucket, self.prefix)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::watched()
    }

    async fn load(&self) -> Result<Value> {
        self.read().await?.0.snapshot()
    }

    async fn watch(&self) -> Result<SourceStream> {
        let watch = self.open_watch().await?;
        let (tree, revisions) = self.read().await?;
        let first = tree.snapshot();
        let state = WatchState {
            source: self.clone(),
            tree,
            revisions,
            watch,
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

/// Configures a [`NatsSource`]; from [`NatsSource::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until built"]
pub struct NatsSourceBuilder {
    config: NatsSourceConfig,
}

impl NatsSourceBuilder {
    /// The NATS server URL (default `nats://127.0.0.1:4222`).
    pub fn url(mut self, url: impl Into<String>) -> NatsSourceBuilder {
        self.config.connection.servers = vec![url.into()];
        self
    }

    /// Where to connect and how to authenticate: the settings every NATS
    /// backend shares.
    pub fn connection(mut self, connection: micro_connect::nats::NatsConfig) -> NatsSourceBuilder {
        self.config.connection = connection;
        self
    }

    /// The key/value bucket (default `micro-config`).
    pub fn bucket(mut self, bucket: impl Into<String>) -> NatsSourceBuilder {
        self.config.bucket = bucket.into();
        self
    }

    /// Only keys under this prefix (`greeter` takes `greeter.*`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> NatsSourceBuilder {
        self.config.prefix = prefix.into();
        self
    }

    /// Whether to create the bucket when it is missing (default yes).
    pub fn create_bucket(mut self, create: bool) -> NatsSourceBuilder {
        self.config.create_bucket = create;
        self
    }

    /// Connects.
    pub async fn build(self) -> Result<NatsSource> {
        NatsSource::connect(self.config).await
    }
}
