//! The NATS registry: each node is one entry of a JetStream key/value bucket,
//! written with a per-message TTL (nats-server 2.11 or later).
//!
//! ```text
//! bucket micro_registry:  {name}.{version}.{node id}  ->  JSON of the service with that one node
//! ```
//!
//! Name, version and node id are escaped (`=XX` for anything but ASCII
//! letters, digits, `-` and `_`; an empty part is `=`), since `.` separates
//! key tokens and not every character is allowed in a key.
//!
//! # TTLs
//!
//! The bucket is created on first use with per-message TTLs and delete
//! markers enabled ([`NatsConfig::marker_ttl`]). A registration with a TTL is
//! written with a `Nats-TTL` header (whole seconds, at least one); registering
//! again writes it again, which renews it. When a node is not renewed in time
//! the server removes it and leaves a marker that watchers see as its
//! `Delete`. Registrations without a TTL stay until deregistered.
//! Deregistering purges the key (leaving a marker that expires by itself).
//!
//! # Watches and reconnection
//!
//! A watch is a KV watcher on the bucket (or on one service's keys) that
//! starts with the last value of every key: those are not reported, but let
//! the watch tell a `Create` from an `Update`, skip renewals that changed
//! nothing, and give each `Delete` the node as it was. The client reconnects
//! by itself after the server restarts; a watcher that ends or fails is
//! reopened with backoff from the revision after the last one it delivered.
//!
//! The connection is opened on first use, so building the registry needs no
//! running server; a failed call is `Unavailable` (or `Timeout`) and the next
//! one tries again.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use micro_registry::{nats::NatsRegistry, Node, RegisterOptions, Registry, Service};
//!
//! # async fn example() -> micro_registry::Result<()> {
//! let registry = NatsRegistry::builder()
//!     .servers(["nats://127.0.0.1:4222"])
//!     .bucket("my_team_registry")
//!     .build()?;
//! let greeter = Service::new("greeter").with_node(Node::new("greeter-1", "127.0.0.1:4123"));
//! registry.register(&greeter, &RegisterOptions::ttl(Duration::from_secs(30))).await?;
//! # Ok(())
//! # }
//! ```

mod config;
mod watch;

use std::{fmt, future::Future, sync::Arc, time::Duration};

use async_nats::{
    HeaderMap,
    jetstream::{self, consumer, kv},
};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

pub use self::config::NatsConfig;
use crate::{
    Capabilities, Error, RegisterOptions, Registry, Result, Service, WatchOptions, WatchStream,
    record,
};

/// The escape character of key tokens.
const ESCAPE: char = '=';
/// The most entries one snapshot request asks for.
const SNAPSHOT_BATCH: u64 = 1000;

/// A registry kept in a NATS JetStream key/value bucket. Clones share the connection.
#[derive(Clone)]
pub struct NatsRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    config: NatsConfig,
    /// Connected (and the bucket opened) on first use.
    connection: tokio::sync::Mutex<Option<Connection>>,
    /// Counts the client's (re)connections. Watches reopen their KV watcher
    /// when it moves: the watcher's own consumer recreation after a server
    /// restart was seen to stall when the server's JetStream was not ready yet.
    connections: tokio::sync::watch::Sender<u64>,
}

#[derive(Clone)]
struct Connection {
    jetstream: jetstream::Context,
    bucket: kv::Store,
}

impl NatsRegistry {
    /// A builder starting from the defaults of [`NatsConfig`].
    pub fn builder() -> NatsRegistryBuilder {
        NatsRegistryBuilder {
            config: NatsConfig::default(),
        }
    }

    /// A registry with these settings; connects on first use.
    pub fn from_config(config: NatsConfig) -> Result<NatsRegistry> {
        config.validate()?;
        Ok(NatsRegistry {
            inner: Arc::new(Inner {
                config,
                connection: tokio::sync::Mutex::new(None),
                connections: tokio::sync::watch::Sender::new(0),
            }),
        })
    }

    /// A registry configured by [`NatsConfig::from_env`] (`MICRO_REGISTRY_ADDRESS`, ...).
    pub fn from_env() -> Result<NatsRegistry> {
        NatsRegistry::from_config(NatsConfig::from_env()?)
    }

    /// The settings in use.
    pub fn config(&self) -> &NatsConfig {
        &self.inner.config
    }
}

impl fmt::Debug for NatsRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsRegistry")
            .field("servers", &self.inner.config.connection.servers)
            .field("bucket", &self.inner.config.bucket)
            .finish()
    }
}

impl Inner {
    /// The connection and bucket, connecting and opening (or creating) first if needed.
    async fn connection(&self) -> Result<Connection> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let connection = self.connect().await?;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    async fn connect(&self) -> Result<Connection> {
        let config = &self.config;
        let connections = self.connections.clone();
        // Credentials, TLS and the connect timeout are the shared NATS settings.
        let options = config
            .connection
            .options()
            .await?
            .event_callback(move |event| {
                if matches!(event, async_nats::Event::Connected) {
                    connections.send_modify(|count| *count += 1);
                }
                std::future::ready(())
            })
            .request_timeout(Some(config.request_timeout))
            // Once connected, keep reconnecting for as long as the registry lives.
            .max_reconnects(None);
        let client = config.connection.connect_with(options).await?;
        let mut jetstream = jetstream::new(client);
        jetstream.set_timeout(config.request_timeout);
        let bucket = self.open_bucket(&jetstream).await?;
        Ok(Connection { jetstream, bucket })
    }

    /// The bucket, created if it does not exist; one without per-message TTLs is refused.
    async fn open_bucket(&self, jetstream: &jetstream::Context) -> Result<kv::Store> {
        let name = &self.config.bucket;
        let bucket = match jetstream.get_key_value(name).await {
            Ok(bucket) => bucket,
            Err(_) => {
                let created = self
                    .timed(
                        "creating the registry bucket",
                        jetstream.create_key_value(self.bucket_config()),
                    )
                    .await;
                match created {
                    Ok(bucket) => bucket,
                    // Another process may have created it meanwhile.
                    Err(err) => jetstream.get_key_value(name).await.map_err(|_| err)?,
                }
            }
        };
        if !bucket.stream.cached_info().config.allow_message_ttl {
            return Err(Error::failed_precondition(format!(
                "the NATS bucket {name:?} exists without per-message TTLs; \
                 delete it or choose another bucket (it is created with them)"
            )));
        }
        Ok(bucket)
    }

    fn bucket_config(&self) -> kv::Config {
        kv::Config {
            bucket: self.config.bucket.clone(),
            description: "micro service registry".to_owned(),
            history: 1,
            storage: if self.config.memory_storage {
                jetstream::stream::StorageType::Memory
            } else {
                jetstream::stream::StorageType::File
            },
            num_replicas: 1,
            limit_markers: Some(Duration::from_secs(record::ttl_seconds(
                self.config.marker_ttl,
            ))),
            ..kv::Config::default()
        }
    }

    /// Runs one NATS request under the request timeout, mapping its error.
    async fn timed<T, E>(
        &self,
        what: &str,
        request: impl Future<Output = std::result::Result<T, E>>,
    ) -> Result<T>
    where
        E: fmt::Display + Into<crate::BoxError>,
    {
        match tokio::time::timeout(self.config.request_timeout, request).await {
            Ok(result) => result.map_err(|err| {
                // The server or the connection failed; callers may retry.
                Error::unavailable(format!("{what}: {err}")).with_source(err)
            }),
            Err(_) => Err(Error::timeout(format!(
                "{what}: no answer from NATS within {:?}",
                self.config.request_timeout
            ))),
        }
    }

    async fn register_record(&self, record: &Service, ttl_seconds: Option<u64>) -> Result<()> {
        let connection = self.connection().await?;
        let subject = format!("{}{}", put_prefix(&connection.bucket), key(record));
        let value = Bytes::from(record::encode(record)?);
        let mut headers = HeaderMap::new();
        if let Some(ttl) = ttl_seconds {
            headers.insert(
                async_nats::header::NATS_MESSAGE_TTL,
                ttl.to_string().as_str(),
            );
        }
        let jetstream = &connection.jetstream;
        self.timed("writing a registration to NATS", async {
            jetstream
                .publish_with_headers(subject, headers, value)
                .await?
                .await
        })
        .await?;
        Ok(())
    }

    async fn deregister_record(&self, record: &Service) -> Result<()> {
        let connection = self.connection().await?;
        let marker_ttl = Duration::from_secs(record::ttl_seconds(self.config.marker_ttl));
        self.timed(
            "removing a registration from NATS",
            connection.bucket.purge_with_ttl(key(record), marker_ttl),
        )
        .await
    }

    /// The live records whose keys match `filter` (a key pattern relative to the bucket).
    async fn snapshot(&self, filter: &str) -> Result<Vec<Service>> {
        let connection = self.connection().await?;
        let bucket = &connection.bucket;
        let consumer = self
            .timed(
                "reading registrations from NATS",
                bucket.stream.create_consumer(consumer::pull::Config {
                    deliver_policy: consumer::DeliverPolicy::LastPerSubject,
                    filter_subject: format!("{}{filter}", bucket.prefix),
                    ack_policy: consumer::AckPolicy::None,
                    // Deleted below; the server drops it by itself if that fails.
                    inactive_threshold: Duration::from_secs(30),
                    memory_storage: true,
                    ..Default::default()
                }),
            )
            .await?;
        let result = self.drain(&consumer, bucket).await;
        let stream = bucket.stream.clone();
        let name = consumer.cached_info().name.clone();
        tokio::spawn(async move {
            let _ = stream.delete_consumer(&name).await;
        });
        result
    }

    /// Reads everything a snapshot consumer had pending when it was created.
    async fn drain(
        &self,
        consumer: &consumer::Consumer<consumer::pull::Config>,
        bucket: &kv::Store,
    ) -> Result<Vec<Service>> {
        let mut pending = consumer.cached_info().num_pending;
        let mut records = Vec::new();
        while pending > 0 {
            let batch = pending.min(SNAPSHOT_BATCH);
            let received = self
                .timed("reading registrations from NATS", async {
                    let mut messages = consumer
                        .fetch()
                        .max_messages(usize::try_from(batch).unwrap_or(usize::MAX))
                        .messages()
                        .await?;
                    let mut received = Vec::new();
                    while let Some(message) = messages.next().await {
                        received.push(message?);
                    }
                    Ok::<_, async_nats::Error>(received)
                })
                .await?;
            if received.is_empty() {
                // Entries expired between the consumer's creation and the fetch.
                break;
            }
            pending = pending.saturating_sub(received.len() as u64);
            records.extend(
                received
                    .iter()
                    .filter(|m| !is_removal(m.headers.as_ref()))
                    .filter_map(|message| {
                        let key = message.subject.strip_prefix(bucket.prefix.as_str())?;
                        record::decode(&message.payload, key)
                    }),
            );
        }
        Ok(records)
    }
}

/// Where writes to `bucket` go (`$KV.{bucket}.`, unless it is a mirror).
fn put_prefix(bucket: &kv::Store) -> &str {
    bucket.put_prefix.as_deref().unwrap_or(&bucket.prefix)
}

/// Whether a bucket message removes its key: a delete, a purge, or the marker
/// the server leaves when a TTL runs out.
fn is_removal(headers: Option<&HeaderMap>) -> bool {
    headers.is_some_and(|headers| {
        headers
            .get(async_nats::header::NATS_MARKER_REASON)
            .is_some()
            || headers
                .get("KV-Operation")
                .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"))
    })
}

fn service_filter(name: &str) -> String {
    format!("{}.>", record::escape_segment(name, ESCAPE))
}

fn key(record: &Service) -> String {
    format!(
        "{}.{}.{}",
        record::escape_segment(&record.name, ESCAPE),
        record::escape_segment(&record.version, ESCAPE),
        record::escape_segment(&record.nodes[0].id, ESCAPE)
    )
}

/// The name, version and node id a key stands for.
fn parse_key(key: &str) -> Option<(String, String, String)> {
    let mut parts = key.split('.');
    let mut next = || record::unescape_segment(parts.next()?, ESCAPE);
    let parsed = (next()?, next()?, next()?);
    parts.next().is_none().then_some(parsed)
}

#[async_trait]
impl Registry for NatsRegistry {
    fn scheme(&self) -> &'static str {
        "nats"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }

    async fn register(&self, service: &Service, options: &RegisterOptions) -> Result<()> {
        crate::validate_registration(service, options)?;
        let ttl = options.ttl.map(record::ttl_seconds);
        for record in record::split(service) {
            self.inner.register_record(&record, ttl).await?;
        }
        Ok(())
    }

    async fn deregister(&self, service: &Service) -> Result<()> {
        for record in record::split(service) {
            self.inner.deregister_record(&record).await?;
        }
        Ok(())
    }

    async fn get_service(&self, name: &str) -> Result<Vec<Service>> {
        let records = self.inner.snapshot(&service_filter(name)).await?;
        let services = record::group(records.into_iter().filter(|r| r.name == name));
        if services.is_empty() {
            return Err(Error::not_found(format!("no service named {name:?}")));
        }
        Ok(services)
    }

    async fn list_services(&self) -> Result<Vec<Service>> {
        Ok(record::group(self.inner.snapshot(">").await?))
    }

    async fn watch(&self, options: &WatchOptions) -> Result<WatchStream> {
        let filter = match &options.service {
            Some(name) => service_filter(name),
            None => ">".to_owned(),
        };
        watch::open(Arc::clone(&self.inner), filter, options.service.clone()).await
    }
}

/// Builds a [`NatsRegistry`].
#[derive(Debug, Clone)]
pub struct NatsRegistryBuilder {
    config: NatsConfig,
}

impl NatsRegistryBuilder {
    /// Starts from these settings.
    pub fn config(mut self, config: NatsConfig) -> NatsRegistryBuilder {
        self.config = config;
        self
    }

    /// Sets the servers of [`NatsConfig::connection`].
    pub fn servers<S: Into<String>>(
        mut self,
        servers: impl IntoIterator<Item = S>,
    ) -> NatsRegistryBuilder {
        self.config.connection.servers = servers.into_iter().map(Into::into).collect();
        self
    }

    /// Sets [`NatsConfig::connection`]: servers, credentials, TLS, the
    /// settings every NATS backend shares.
    pub fn connection(
        mut self,
        connection: micro_connect::nats::NatsConfig,
    ) -> NatsRegistryBuilder {
        self.config.connection = connection;
        self
    }

    /// Sets [`NatsConfig::bucket`].
    pub fn bucket(mut self, bucket: impl Into<String>) -> NatsRegistryBuilder {
        self.config.bucket = bucket.into();
        self
    }

    /// Sets [`NatsConfig::request_timeout`].
    pub fn request_timeout(mut self, timeout: Duration) -> NatsRegistryBuilder {
        self.config.request_timeout = timeout;
        self
    }

    /// Sets [`NatsConfig::memory_storage`].
    pub fn memory_storage(mut self, memory: bool) -> NatsRegistryBuilder {
        self.config.memory_storage = memory;
        self
    }

    /// The registry; fails only on invalid settings (it connects on first use).
    pub fn build(self) -> Result<NatsRegistry> {
        NatsRegistry::from_config(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Node;

    #[test]
    fn keys_are_valid_nats_keys_and_parse_back() {
        let record = Service::new("a.b/c")
            .with_version("")
            .with_node(Node::new("node 1", ""));
        let key = key(&record);
        assert!(
            key.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_=.".contains(&b)),
            "{key}"
        );
        assert_eq!(
            parse_key(&key),
            Some(("a.b/c".to_owned(), String::new(), "node 1".to_owned()))
        );
        assert!(key.starts_with(service_filter("a.b/c").trim_end_matches('>')));
    }
}
