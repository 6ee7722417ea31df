//! The etcd registry: each node is one key under a prefix, bound to a lease
//! granted with the registration's TTL.
//!
//! ```text
//! {prefix}{name}/{version}/{node id}  ->  JSON of the service with that one node
//! ```
//!
//! Name, version and node id are escaped (`%XX` for anything but ASCII
//! letters, digits, `-` and `_`), so a `/` in a name cannot reach into
//! another service's keys.
//!
//! # TTLs
//!
//! A registration with a TTL gets its own lease, granted for the TTL rounded
//! up to whole seconds (etcd may round it up further: its minimum is about
//! two seconds). Registering the node again keeps that lease alive with one
//! keep-alive request and rewrites the key only when its content changed, so
//! a running service's re-register loop is what keeps its nodes alive; a
//! process that dies stops renewing and etcd deletes its keys when the lease
//! runs out. Deregistering deletes the key and revokes the lease at once.
//!
//! # Watches and reconnection
//!
//! A watch is an etcd watch on the prefix (or on one service's part of it)
//! asking for previous values, so a `Delete` carries the node as it was and a
//! re-registration that changed nothing emits nothing. When the connection to
//! etcd breaks (etcd restarted, network down), the watch is reopened with
//! backoff from the revision after the last one it delivered, so no change is
//! lost or repeated; if etcd compacted that history meanwhile, the stream
//! yields one `DataLoss` error (resynchronise with
//! [`get_service`](Registry::get_service)) and carries on from the present.
//!
//! The connection is opened on first use, so building the registry needs no
//! running etcd; a failed call is `Unavailable` (or `Timeout`) and the next
//! one tries again. If etcd lost a node's lease or key (restarted without its
//! data, or the lease expired while the service could not reach it), the next
//! re-registration grants a new lease and writes the key again.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use micro_registry::{etcd::EtcdRegistry, Node, RegisterOptions, Registry, Service};
//!
//! # async fn example() -> micro_registry::Result<()> {
//! let registry = EtcdRegistry::builder()
//!     .endpoints(["http://127.0.0.1:2379"])
//!     .prefix("/my-team/registry/")
//!     .build()?;
//! let greeter = Service::new("greeter").with_node(Node::new("greeter-1", "127.0.0.1:4123"));
//! registry.register(&greeter, &RegisterOptions::ttl(Duration::from_secs(30))).await?;
//! # Ok(())
//! # }
//! ```

mod config;
mod watch;

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use async_trait::async_trait;
use etcd_client::{Client, Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp};

pub use self::config::EtcdConfig;
use crate::{
    Capabilities, Error, ErrorKind, RegisterOptions, Registry, Result, Service, WatchOptions,
    WatchStream, record,
};

/// The escape character of key segments.
const ESCAPE: char = '%';

/// A registry kept in etcd. Clones share the connection and the leases.
#[derive(Clone)]
pub struct EtcdRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    config: EtcdConfig,
    /// Connected on first use; `None` until then or after connecting failed.
    client: tokio::sync::Mutex<Option<Client>>,
    /// The lease of each key this registry registered with a TTL.
    leases: Mutex<HashMap<String, Lease>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lease {
    id: i64,
    ttl_seconds: i64,
}

impl EtcdRegistry {
    /// A builder starting from the defaults of [`EtcdConfig`].
    pub fn builder() -> EtcdRegistryBuilder {
        EtcdRegistryBuilder {
            config: EtcdConfig::default(),
        }
    }

    /// A registry with these settings; connects on first use.
    pub fn from_config(config: EtcdConfig) -> Result<EtcdRegistry> {
        config.validate()?;
        Ok(EtcdRegistry {
            inner: Arc::new(Inner {
                config,
                client: tokio::sync::Mutex::new(None),
                leases: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// A registry configured by [`EtcdConfig::from_env`] (`MICRO_REGISTRY_ADDRESS`, ...).
    pub fn from_env() -> Result<EtcdRegistry> {
        EtcdRegistry::from_config(EtcdConfig::from_env()?)
    }

    /// The settings in use.
    pub fn config(&self) -> &EtcdConfig {
        &self.inner.config
    }
}

impl fmt::Debug for EtcdRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdRegistry")
            .field("endpoints", &self.inner.config.connection.endpoints)
            .field("prefix", &self.inner.config.prefix)
            .field("leases", &self.inner.leases().len())
            .finish()
    }
}

impl Inner {
    fn leases(&self) -> MutexGuard<'_, HashMap<String, Lease>> {
        // Every critical section is a single map operation: never half-done.
        self.leases.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connected client, connecting first if needed.
    async fn client(&self) -> Result<Client> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let timeout = self.config.request_timeout;
        // Credentials, TLS and the connect timeout are the shared etcd settings.
        let options = self
            .config
            .connection
            .options()?
            // Notices a silently dead connection (a watch would otherwise wait forever).
            .with_keep_alive(timeout, timeout)
            .with_keep_alive_while_idle(true);
        let client = self.config.connection.connect_with(options).await?;
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Runs one etcd request under the request timeout, mapping its error.
    async fn timed<T>(
        &self,
        what: &str,
        request: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.config.request_timeout, request).await {
            Ok(result) => result.map_err(|err| etcd_error(what, err)),
            Err(_) => Err(Error::timeout(format!(
                "{what}: no answer from etcd within {:?}",
                self.config.request_timeout
            ))),
        }
    }

    fn service_prefix(&self, name: &str) -> String {
        format!(
            "{}{}/",
            self.config.prefix,
            record::escape_segment(name, ESCAPE)
        )
    }

    fn key(&self, record: &Service) -> String {
        format!(
            "{}{}/{}",
            self.service_prefix(&record.name),
            record::escape_segment(&record.version, ESCAPE),
            record::escape_segment(&record.nodes[0].id, ESCAPE)
        )
    }

    /// The name, version and node id a key stands for.
    fn parse_key(&self, key: &[u8]) -> Option<(String, String, String)> {
        let key = std::str::from_utf8(key).ok()?;
        let mut parts = key.strip_prefix(&self.config.prefix)?.split('/');
        let mut next = || record::unescape_segment(parts.next()?, ESCAPE);
        let parsed = (next()?, next()?, next()?);
        parts.next().is_none().then_some(parsed)
    }

    /// A live lease for `key` with this TTL: the one it has, kept alive, or a new one.
    async fn lease_for(&self, client: &mut Client, key: &str, ttl_seconds: i64) -> Result<i64> {
        let known = self.leases().get(key).copied();
        if let Some(lease) = known.filter(|lease| lease.ttl_seconds == ttl_seconds) {
            if self.keep_alive(client, lease.id).await? {
                return Ok(lease.id);
            }
            tracing::info!(
                key,
                lease = lease.id,
                "etcd lost the lease; granting a new one"
            );
        }
        let granted = self
            .timed(
                "granting an etcd lease",
                client.lease_grant(ttl_seconds, None),
            )
            .await?;
        self.leases().insert(
            key.to_owned(),
            Lease {
                id: granted.id(),
                ttl_seconds,
            },
        );
        Ok(granted.id())
    }

    /// Renews a lease once; `false` when etcd no longer has it.
    async fn keep_alive(&self, client: &mut Client, id: i64) -> Result<bool> {
        self.timed("renewing an etcd lease", async {
            let (mut keeper, mut responses) = client.lease_keep_alive(id).await?;
            keeper.keep_alive().await?;
            Ok(responses.message().await?.is_some_and(|r| r.ttl() > 0))
        })
        .await
    }

    async fn register_record(&self, record: &Service, ttl_seconds: Option<i64>) -> Result<()> {
        let mut client = self.client().await?;
        let key = self.key(record);
        let value = record::encode(record)?;
        let lease = match ttl_seconds {
            Some(ttl) => Some(self.lease_for(&mut client, &key, ttl).await?),
            None => None,
        };
        // Written only if something differs, so a renewal is not a change.
        let unchanged = [
            Compare::value(key.clone(), CompareOp::Equal, value.clone()),
            Compare::lease(key.clone(), CompareOp::Equal, lease.unwrap_or(0)),
        ];
        let put_options = lease.map(|id| PutOptions::new().with_lease(id));
        let txn = Txn::new()
            .when(unchanged)
            .or_else([TxnOp::put(key.clone(), value, put_options)]);
        self.timed("writing a registration to etcd", client.txn(txn))
            .await?;
        if lease.is_none() {
            // Registered without a TTL after having had one: the old lease is no longer needed.
            let dropped = self.leases().remove(&key);
            if let Some(old) = dropped {
                self.revoke(&mut client, old.id).await;
            }
        }
        Ok(())
    }

    async fn deregister_record(&self, record: &Service) -> Result<()> {
        let mut client = self.client().await?;
        let key = self.key(record);
        self.timed(
            "deleting a registration from etcd",
            client.delete(key.clone(), None::<DeleteOptions>),
        )
        .await?;
        let dropped = self.leases().remove(&key);
        if let Some(lease) = dropped {
            self.revoke(&mut client, lease.id).await;
        }
        Ok(())
    }

    /// Revokes a lease whose key is already gone or moved; failing only leaves
    /// it to expire by itself, so the error is logged, not returned.
    async fn revoke(&self, client: &mut Client, id: i64) {
        let revoked = self
            .timed("revoking an etcd lease", client.lease_revoke(id))
            .await;
        if let Err(err) = revoked
            && err.kind() != ErrorKind::NotFound
        {
            tracing::debug!(lease = id, error = %err, "revoking an etcd lease failed; it will expire");
        }
    }

    async fn records_under(&self, prefix: String) -> Result<Vec<Service>> {
        let mut client = self.client().await?;
        let response = self
            .timed(
                "reading registrations from etcd",
                client.get(prefix, Some(GetOptions::new().with_prefix())),
            )
            .await?;
        Ok(response
            .kvs()
            .iter()
            .filter_map(|kv| record::decode(kv.value(), &String::from_utf8_lossy(kv.key())))
            .collect())
    }
}

fn ttl_seconds(options: &RegisterOptions) -> Option<i64> {
    options
        .ttl
        .map(|ttl| i64::try_from(record::ttl_seconds(ttl)).unwrap_or(i64::MAX))
}

/// An etcd client error as a micro error of the matching kind.
fn etcd_error(what: &str, err: etcd_client::Error) -> Error {
    let kind = match &err {
        _ if micro_core::is_connection_failure(&err) => ErrorKind::Unavailable,
        etcd_client::Error::GRpcStatus(status) => {
            match ErrorKind::from_grpc_code(status.code() as i32) {
                // micro never cancels a request it still waits for: a
                // Cancelled answer means the server or the connection went.
                ErrorKind::Cancelled => ErrorKind::Unavailable,
                kind => kind,
            }
        }
        etcd_client::Error::InvalidArgs(_) | etcd_client::Error::InvalidUri(_) => {
            ErrorKind::InvalidArgument
        }
        _ => ErrorKind::Unavailable,
    };
    Error::new(kind, format!("{what}: {err}")).with_source(err)
}

#[async_trait]
impl Registry for EtcdRegistry {
    fn scheme(&self) -> &'static str {
        "etcd"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }

    async fn register(&self, service: &Service, options: &RegisterOptions) -> Result<()> {
        crate::validate_registration(service, options)?;
        let ttl = ttl_seconds(options);
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
        let records = self
            .inner
            .records_under(self.inner.service_prefix(name))
            .await?;
        // The prefix of `a` does not cover `a/b` (escaped), but be exact anyway.
        let services = record::group(records.into_iter().filter(|r| r.name == name));
        if services.is_empty() {
            return Err(Error::not_found(format!("no service named {name:?}")));
        }
        Ok(services)
    }

    async fn list_services(&self) -> Result<Vec<Service>> {
        let records = self
            .inner
            .records_under(self.inner.config.prefix.clone())
            .await?;
        Ok(record::group(records))
    }

    async fn watch(&self, options: &WatchOptions) -> Result<WatchStream> {
        let prefix = match &options.service {
            Some(name) => self.inner.service_prefix(name),
            None => self.inner.config.prefix.clone(),
        };
        watch::open(Arc::clone(&self.inner), prefix, options.service.clone()).await
    }
}

/// Builds an [`EtcdRegistry`].
#[derive(Debug, Clone)]
pub struct EtcdRegistryBuilder {
    config: EtcdConfig,
}

impl EtcdRegistryBuilder {
    /// Starts from these settings.
    pub fn config(mut self, config: EtcdConfig) -> EtcdRegistryBuilder {
        self.config = config;
        self
    }

    /// Sets the endpoints of [`EtcdConfig::connection`].
    pub fn endpoints<S: Into<String>>(
        mut self,
        endpoints: impl IntoIterator<Item = S>,
    ) -> EtcdRegistryBuilder {
        self.config.connection.endpoints = endpoints.into_iter().map(Into::into).collect();
        self
    }

    /// Sets [`EtcdConfig::connection`]: endpoints, credentials, TLS, the
    /// settings every etcd backend shares.
    pub fn connection(
        mut self,
        connection: micro_connect::etcd::EtcdConfig,
    ) -> EtcdRegistryBuilder {
        self.config.connection = connection;
        self
    }

    /// Sets [`EtcdConfig::prefix`].
    pub fn prefix(mut self, prefix: impl Into<String>) -> EtcdRegistryBuilder {
        self.config.prefix = prefix.into();
        self
    }

    /// Sets [`EtcdConfig::request_timeout`].
    pub fn request_timeout(mut self, timeout: std::time::Duration) -> EtcdRegistryBuilder {
        self.config.request_timeout = timeout;
        self
    }

    /// Sets the user and password of [`EtcdConfig::connection`].
    pub fn credentials(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> EtcdRegistryBuilder {
        self.config.connection.user = Some(user.into());
        self.config.connection.password = Some(password.into());
        self
    }

    /// The registry; fails only on invalid settings (it connects on first use).
    pub fn build(self) -> Result<EtcdRegistry> {
        EtcdRegistry::from_config(self.config)
    }
}
