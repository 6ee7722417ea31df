//! The Consul registry: each node is one service instance registered with the
//! local Consul agent, with a TTL health check that registering again passes.
//!
//! **Tested only against a stand-in.** No Consul binary can be installed
//! where micro is developed, so this backend is tested against
//! `micro-test-servers`' `ConsulStandIn`, a stateful imitation of exactly the
//! endpoints used here written from Consul's API documentation. It has not
//! been run against a real Consul agent.
//!
//! # What it stores
//!
//! | Consul field | value |
//! |---|---|
//! | `ID` | name, version and node id, escaped (`~XX`) and joined by `.` |
//! | `Name` | the service name |
//! | `Address`, `Port` | the node address split at its last `:` (whole address and port 0 if it has none) |
//! | `Tags` | `micro`, and `micro-record=` followed by the JSON of the service with that one node |
//! | `Meta` | `micro-version`: the service version |
//! | `Check` | a TTL check `service:{ID}` with the registration's TTL, starting `passing`, with `DeregisterCriticalServiceAfter` ([`ConsulConfig::deregister_critical_after`]) |
//!
//! Lookups ask `/v1/health/service/:name?passing`, so only instances whose
//! checks all pass are found: a node that stops renewing turns critical after
//! its TTL and disappears from lookups and watches, and Consul removes it
//! from the catalog later. Registering again with nothing changed only passes
//! the TTL check (`/v1/agent/check/pass/:id`); if the agent no longer knows the
//! check (it restarted without its data), the node is registered in full again.
//! Registrations without a TTL have no check and stay until deregistered.
//! Instances without the `micro-record=` tag (registered by other tools) are
//! ignored.
//!
//! The agent endpoints (`/v1/agent/service/register`,
//! `/v1/agent/service/deregister/:id`, `/v1/agent/check/pass/:id`) and
//! `/v1/health/state/any` are called over reqwest; the catalog and health
//! reads go through rs-consul.
//!
//! # Watches
//!
//! Consul reports states, not changes: a watch holds the state it last saw
//! and turns each new state, fetched with a blocking query (`index`/`wait`)
//! on `/v1/health/service/:name?passing` (or, for every service, on
//! `/v1/catalog/services` and `/v1/health/state/any`), into `Create`, `Update`
//! and `Delete` events. Changes made by another process between two answers
//! are seen as one change (a node created and removed in between is not seen
//! at all). Changes made through the same `ConsulRegistry` reach its watches
//! at once, in order, and are not reported twice. While the agent is
//! unreachable a watch keeps retrying with backoff and reports nothing; once
//! it is back, what changed meanwhile is reported.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use micro_registry::{consul::ConsulRegistry, Node, RegisterOptions, Registry, Service};
//!
//! # async fn example() -> micro_registry::Result<()> {
//! let registry = ConsulRegistry::builder().address("http://127.0.0.1:8500").build()?;
//! let greeter = Service::new("greeter").with_node(Node::new("greeter-1", "127.0.0.1:4123"));
//! registry.register(&greeter, &RegisterOptions::ttl(Duration::from_secs(30))).await?;
//! # Ok(())
//! # }
//! ```

mod agent;
mod config;
mod watch;

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt, stream};
use rs_consul::{Consul, ConsulError, GetServiceNodesRequest, QueryOptions};
use tokio::sync::broadcast;

pub use self::config::ConsulConfig;
use crate::{
    Capabilities, Error, ErrorKind, RegisterOptions, Registry, Result, Service, WatchOptions,
    WatchStream, record,
};

/// The tag marking instances registered by micro.
const MARKER_TAG: &str = "micro";
/// The tag prefix carrying an instance's record.
const RECORD_TAG: &str = "micro-record=";
/// The escape character of service id segments (URL-safe, unlike `%`).
const ESCAPE: char = '~';
/// How many services a listing reads at once.
const LIST_CONCURRENCY: usize = 16;
/// How many changes made through this registry may wait for a slow watch.
const LOCAL_CHANGES: usize = 1024;

/// A registry kept by a Consul agent. Clones share the clients and the state.
#[derive(Clone)]
pub struct ConsulRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    config: ConsulConfig,
    consul: Consul,
    http: reqwest::Client,
    /// The definition last registered for each service id this registry
    /// registered with a TTL, to renew by passing the check when it is unchanged.
    registered: Mutex<HashMap<String, String>>,
    /// Changes made through this registry, for its watches.
    local: broadcast::Sender<LocalChange>,
}

/// A change made through this registry: an instance now holds `record`, or
/// (`None`) is gone.
#[derive(Debug, Clone)]
struct LocalChange {
    id: String,
    record: Option<Service>,
}

/// What a watch knows: each visible instance's record by service id.
type Instances = HashMap<String, Service>;

impl ConsulRegistry {
    /// A builder starting from the defaults of [`ConsulConfig`].
    pub fn builder() -> ConsulRegistryBuilder {
        ConsulRegistryBuilder {
            config: ConsulConfig::default(),
        }
    }

    /// A registry with these settings. Talks to the agent on first use.
    pub fn from_config(config: ConsulConfig) -> Result<ConsulRegistry> {
        config.validate()?;
        // Sends the ACL token with every request (rustls with ring).
        let http = config.connection.http_client()?;
        let consul = Consul::new(rs_consul::Config {
            address: config.base().to_owned(),
            token: config.connection.token.clone(),
            ..rs_consul::Config::default()
        });
        let (local, _) = broadcast::channel(LOCAL_CHANGES);
        Ok(ConsulRegistry {
            inner: Arc::new(Inner {
                config,
                consul,
                http,
                registered: Mutex::new(HashMap::new()),
                local,
            }),
        })
    }

    /// A registry configured by [`ConsulConfig::from_env`] (`MICRO_REGISTRY_ADDRESS`, ...).
    pub fn from_env() -> Result<ConsulRegistry> {
        ConsulRegistry::from_config(ConsulConfig::from_env()?)
    }

    /// The settings in use.
    pub fn config(&self) -> &ConsulConfig {
        &self.inner.config
    }
}

impl fmt::Debug for ConsulRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsulRegistry")
            .field("address", &self.inner.config.connection.address)
            .field("registered", &self.inner.registered().len())
            .finish()
    }
}

impl Inner {
    fn registered(&self) -> MutexGuard<'_, HashMap<String, String>> {
        // Every critical section is a single map operation: never half-done.
        self.registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn announce(&self, id: String, record: Option<Service>) {
        // An error only means no watch is open.
        let _ = self.local.send(LocalChange { id, record });
    }

    async fn register_record(&self, record: &Service, ttl: Option<Duration>) -> Result<()> {
        let id = service_id(record);
        let definition = agent::definition(&id, record, ttl, &self.config)?;
        let fingerprint = definition.to_string();
        let unchanged = ttl.is_some() && self.registered().get(&id) == Some(&fingerprint);
        if unchanged && self.pass(&id).await? {
            return Ok(());
        }
        agent::register(self, &definition).await?;
        if ttl.is_some() {
            self.registered().insert(id.clone(), fingerprint);
        } else {
            self.registered().remove(&id);
        }
        self.announce(id, Some(record.clone()));
        Ok(())
    }

    /// Passes the node's TTL check; `false` when the agent does not know it.
    async fn pass(&self, id: &str) -> Result<bool> {
        match agent::pass(self, &check_id(id)).await {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == ErrorKind::NotFound => {
                tracing::info!(
                    service_id = id,
                    "the Consul agent lost the check; registering again"
                );
                Ok(false)
            }
            Err(err) => Err(err),
        }
    }

    async fn deregister_record(&self, record: &Service) -> Result<()> {
        let id = service_id(record);
        match agent::deregister(self, &id).await {
            Ok(()) => {}
            Err(err) if err.kind() == ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        self.registered().remove(&id);
        self.announce(id, None);
        Ok(())
    }

    /// The passing instances of `name`, and the index of the answer; blocks
    /// as a blocking query when `index` is given.
    async fn instances(&self, name: &str, index: Option<u64>) -> Result<(Instances, u64)> {
        let timeout = match index {
            Some(_) => self.blocking_timeout(),
            None => self.config.request_timeout,
        };
        let encoded = path_segment(name);
        let request = GetServiceNodesRequest {
            service: &encoded,
            passing: true,
            ..Default::default()
        };
        let options = QueryOptions {
            index,
            wait: index.map(|_| self.config.watch_wait),
            timeout: Some(timeout),
            ..QueryOptions::default()
        };
        let answer = self
            .consul
            .get_service_nodes(request, Some(options))
            .await
            .map_err(|err| consul_error(&format!("looking up {name:?} in Consul"), err))?;
        let instances = answer
            .response
            .into_iter()
            .filter_map(|node| {
                let record = record_of(&node.service.tags, &node.service.id)?;
                (record.name == name).then_some((node.service.id, record))
            })
            .collect();
        Ok((instances, answer.index))
    }

    /// Every micro instance of every service.
    async fn all_instances(&self) -> Result<Instances> {
        let options = QueryOptions {
            timeout: Some(self.config.request_timeout),
            ..QueryOptions::default()
        };
        let names = self
            .consul
            .get_all_registered_service_names(Some(options))
            .await
            .map_err(|err| consul_error("listing Consul services", err))?
            .response;
        stream::iter(names)
            .map(|name| async move { self.instances(&name, None).await.map(|(found, _)| found) })
            .buffer_unordered(LIST_CONCURRENCY)
            .try_fold(Instances::new(), |mut all, found| async move {
                all.extend(found);
                Ok(all)
            })
            .await
    }

    /// How long a blocking query may take: Consul waits up to `wait` plus a
    /// sixteenth of it as jitter.
    fn blocking_timeout(&self) -> Duration {
        self.config.watch_wait + self.config.watch_wait / 16 + self.config.request_timeout
    }
}

/// The Consul service id of a one-node record.
fn service_id(record: &Service) -> String {
    format!(
        "{}.{}.{}",
        record::escape_segment(&record.name, ESCAPE),
        record::escape_segment(&record.version, ESCAPE),
        record::escape_segment(&record.nodes[0].id, ESCAPE)
    )
}

/// The id of a node's TTL check.
fn check_id(service_id: &str) -> String {
    format!("service:{service_id}")
}

/// The record carried in an instance's tags, if micro registered it.
fn record_of(tags: &[String], id: &str) -> Option<Service> {
    let json = tags.iter().find_map(|tag| tag.strip_prefix(RECORD_TAG))?;
    record::decode(json.as_bytes(), id)
}

/// `segment` percent-encoded for a URL path (unreserved characters kept).
fn path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// An rs-consul error as a micro error of the matching kind.
fn consul_error(what: &str, err: ConsulError) -> Error {
    let kind = match &err {
        ConsulError::TimeoutExceeded(_) => ErrorKind::Timeout,
        _ if micro_core::is_connection_failure(&err) => ErrorKind::Unavailable,
        ConsulError::UnexpectedResponseCode(status, _) => {
            ErrorKind::from_http_status(status.as_u16())
        }
        ConsulError::ResponseDeserializationFailed(_) => ErrorKind::Internal,
        _ => ErrorKind::Unavailable,
    };
    Error::new(kind, format!("{what}: {err}")).with_source(err)
}

#[async_trait]
impl Registry for ConsulRegistry {
    fn scheme(&self) -> &'static str {
        "consul"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }

    async fn register(&self, service: &Service, options: &RegisterOptions) -> Result<()> {
        crate::validate_registration(service, options)?;
        for record in record::split(service) {
            self.inner.register_record(&record, options.ttl).await?;
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
        let (instances, _) = self.inner.instances(name, None).await?;
        let services = record::group(instances.into_values());
        if services.is_empty() {
            return Err(Error::not_found(format!("no service named {name:?}")));
        }
        Ok(services)
    }

    async fn list_services(&self) -> Result<Vec<Service>> {
        Ok(record::group(
            self.inner.all_instances().await?.into_values(),
        ))
    }

    async fn watch(&self, options: &WatchOptions) -> Result<WatchStream> {
        watch::open(Arc::clone(&self.inner), options.service.clone()).await
    }
}

/// Builds a [`ConsulRegistry`].
#[derive(Debug, Clone)]
pub struct ConsulRegistryBuilder {
    config: ConsulConfig,
}

impl ConsulRegistryBuilder {
    /// Starts from these settings.
    pub fn config(mut self, config: ConsulConfig) -> ConsulRegistryBuilder {
        self.config = config;
        self
    }

    /// Sets the agent address of [`ConsulConfig::connection`].
    pub fn address(mut self, address: impl Into<String>) -> ConsulRegistryBuilder {
        self.config.connection.address = address.into();
        self
    }

    /// Sets the ACL token of [`ConsulConfig::connection`].
    pub fn token(mut self, token: impl Into<String>) -> ConsulRegistryBuilder {
        self.config.connection.token = Some(token.into());
        self
    }

    /// Sets [`ConsulConfig::connection`]: the agent's address and ACL
    /// token, the settings every Consul backend shares.
    pub fn connection(
        mut self,
        connection: micro_connect::consul::ConsulConfig,
    ) -> ConsulRegistryBuilder {
        self.config.connection = connection;
        self
    }

    /// Sets [`ConsulConfig::watch_wait`].
    pub fn watch_wait(mut self, wait: Duration) -> ConsulRegistryBuilder {
        self.config.watch_wait = wait;
        self
    }

    /// Sets [`ConsulConfig::deregister_critical_after`].
    pub fn deregister_critical_after(mut self, after: Duration) -> ConsulRegistryBuilder {
        self.config.deregister_critical_after = after;
        self
    }

    /// The registry; fails only on invalid settings.
    pub fn build(self) -> Result<ConsulRegistry> {
        ConsulRegistry::from_config(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Node;

    #[test]
    fn ids_are_url_safe_and_distinct() {
        let a = Service::new("a.b").with_node(Node::new("n", ""));
        let b = Service::new("a")
            .with_version("b")
            .with_node(Node::new("n", ""));
        let (a, b) = (service_id(&a), service_id(&b));
        assert_ne!(a, b);
        assert_eq!(path_segment(&a), a);
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
    }
}
