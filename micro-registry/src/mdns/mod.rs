//! Zero-configuration discovery on one LAN with multicast DNS (DNS-SD over
//! mDNS, via mdns-sd): no server to install, the default for several
//! processes on one machine or one network.
//!
//! # How services travel
//!
//! Every registered node is one DNS-SD instance of the service type
//! `_micro._tcp.local.` ([`MdnsConfig::service_type`]): its SRV record gives
//! the node's port and host, its A/AAAA records the node's IP, and its TXT
//! record the whole registration (version, metadata, endpoints, node metadata)
//! split across TXT strings; see the `txt` module for the layout and why
//! nothing is fetched on demand. One browse of that type finds every service.
//!
//! # Lifetimes
//!
//! - Deregistration unregisters the instance: mDNS sends a goodbye (TTL 0) and
//!   browsers drop the node at once.
//! - A registration with a TTL carries it in its TXT record, and every renewal
//!   (registering the same node again) re-announces it with a new renewal
//!   counter. A browser that hears nothing for a TTL drops the node: that is
//!   how a process killed without a goodbye disappears. The registering
//!   process also stops announcing a registration whose TTL lapsed.
//! - A fresh registry's lookups wait up to [`MdnsConfig::discovery_wait`]
//!   for answers before saying `NotFound`, since it knows nothing yet.
//!
//! # Interfaces
//!
//! By default mDNS runs on every interface that is up.
//! [`MdnsConfig::interfaces`] (`MICRO_MDNS_INTERFACES=lo`) restricts sending
//! and answering to the given ones. mdns-sd still joins the multicast group on
//! every interface when it starts, before the restriction applies; to keep
//! every packet off an interface, run the daemon in a network namespace
//! ([`MdnsConfig::netns`], `MICRO_MDNS_NETNS`): micro's own tests run it in
//! namespaces they create, on their loopback with multicast enabled.
//!
//! Multicast does not cross routers and is often filtered in containers and
//! clouds: when services on different hosts cannot see each other, that is
//! the usual cause, and `MICRO_REGISTRY=gossip`, `etcd` or `nats` is the fix.
//!
//! ```no_run
//! use micro_registry::{Registry, mdns::MdnsRegistry};
//!
//! # async fn demo() -> micro_registry::Result<()> {
//! let registry = MdnsRegistry::builder().interfaces(["lo"]).build()?;
//! let found = registry.get_service("greeter").await?;
//! # Ok(())
//! # }
//! ```

mod config;
mod netns;
mod txt;

use std::{
    collections::HashMap,
    fmt,
    net::SocketAddr,
    sync::{
        Arc, Mutex, PoisonError, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use mdns_sd::{IfKind, Receiver, ServiceDaemon, ServiceEvent, ServiceInfo};
use tokio::time::Instant;

pub use self::config::{
    ENV_DISCOVERY_WAIT, ENV_INTERFACES, ENV_NETNS, ENV_PORT, ENV_SERVICE_TYPE, MdnsConfig,
};
use crate::{
    Capabilities, Error, RegisterOptions, Registry, Result, Service, WatchOptions, WatchStream,
    local_view::{LocalView, node_key, single},
};

/// How often own registrations are checked for an expired TTL.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// How long a full daemon command queue is retried before giving up.
const QUEUE_RETRY: Duration = Duration::from_secs(5);

/// The mDNS registry. Cloning gives another handle to the same daemon and view.
#[derive(Clone)]
pub struct MdnsRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    daemon: ServiceDaemon,
    config: MdnsConfig,
    /// Starts every instance name this registry announces, so its own
    /// announcements echoing back from the network are recognised and ignored.
    token: String,
    view: LocalView<Announced>,
    /// Browse events waiting for the background task, taken when it starts.
    browse: Mutex<Option<Receiver<ServiceEvent>>>,
    task_running: AtomicBool,
    renewals: AtomicU64,
}

/// What this registry announced for one own node.
#[derive(Debug, Clone)]
struct Announced {
    fullname: String,
}

impl MdnsRegistry {
    /// A registry with default settings (every interface, port 5353).
    pub fn new() -> Result<MdnsRegistry> {
        MdnsRegistry::from_config(&MdnsConfig::default())
    }

    /// A registry configured by the `MICRO_MDNS_*` variables; see [`MdnsConfig::from_env`].
    pub fn from_env() -> Result<MdnsRegistry> {
        MdnsRegistry::from_config(&MdnsConfig::from_env()?)
    }

    /// A builder for a registry with non-default settings.
    pub fn builder() -> MdnsRegistryBuilder {
        MdnsRegistryBuilder {
            config: MdnsConfig::default(),
        }
    }

    /// A registry with these settings. Starts the mDNS daemon (a thread) and
    /// its browse; needs no tokio runtime until first used.
    pub fn from_config(config: &MdnsConfig) -> Result<MdnsRegistry> {
        let daemon = netns::start_daemon(config.port, config.netns.as_deref())?;
        let setup = restrict_interfaces(&daemon, &config.interfaces)
            .and_then(|()| browse(&daemon, &config.service_type));
        let browse = match setup {
            Ok(browse) => browse,
            Err(err) => {
                let _ = daemon.shutdown();
                return Err(err);
            }
        };
        let registry = MdnsRegistry {
            inner: Arc::new(Inner {
                daemon,
                config: config.clone(),
                token: format!("{:08x}", rand::random::<u32>()),
                view: LocalView::new(config.discovery_wait),
                browse: Mutex::new(Some(browse)),
                task_running: AtomicBool::new(false),
                renewals: AtomicU64::new(0),
            }),
        };
        registry.ensure_task();
        Ok(registry)
    }

    /// The settings this registry runs with.
    pub fn config(&self) -> &MdnsConfig {
        &self.inner.config
    }

    /// Starts the task following the browse on the current runtime, once.
    fn ensure_task(&self) {
        if self.inner.task_running.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.inner.task_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let taken = self
            .inner
            .browse
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(events) = taken {
            runtime.spawn(follow(Arc::downgrade(&self.inner), events));
        }
    }

    fn instance_name(&self, service: &Service) -> String {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        node_key(service, &service.nodes[0]).hash(&mut hasher);
        format!("{}-{:016x}", self.inner.token, hasher.finish())
    }

    fn service_info(&self, service: &Service, ttl: Option<Duration>) -> Result<ServiceInfo> {
        let node = &service.nodes[0];
        let properties = txt::encode(
            service,
            ttl,
            self.inner.renewals.fetch_add(1, Ordering::Relaxed),
        )?;
        let instance = self.instance_name(service);
        let host = format!("{instance}.local.");
        let (ip, port) = match node.address.parse::<SocketAddr>() {
            Ok(address) if !address.ip().is_unspecified() => {
                (address.ip().to_string(), address.port())
            }
            // Not an IP address (a host name, a memory transport name) or a
            // wildcard: announce the interfaces' own addresses; the exact
            // address is in the TXT record.
            _ => (String::new(), port_of(&node.address)),
        };
        let mut info = ServiceInfo::new(
            &self.inner.config.service_type,
            &instance,
            &host,
            ip.as_str(),
            port,
            properties,
        )
        .map_err(|err| Error::invalid_argument(format!("describing {:?}: {err}", service.name)))?;
        if ip.is_empty() {
            info = info.enable_addr_auto();
        }
        // Instance names are unique by construction (a random per-registry
        // prefix), so the probing that guards against name clashes would only
        // delay every announcement by 750 ms.
        info.set_requires_probe(false);
        Ok(info)
    }

    async fn announce(&self, info: ServiceInfo) -> Result<()> {
        let daemon = &self.inner.daemon;
        retry_full_queue(|| daemon.register(info.clone())).await
    }

    async fn unannounce(&self, fullname: &str) -> Result<()> {
        let daemon = &self.inner.daemon;
        let mut sent = None;
        retry_full_queue(|| {
            daemon
                .unregister(fullname)
                .map(|status| sent = Some(status))
        })
        .await?;
        // The daemon's thread sends the goodbye and then reports it. Waiting
        // for that report matters to a process that exits right after
        // deregistering: otherwise it can exit before the goodbye leaves, and
        // browsers keep the node until its TTL runs out.
        if let Some(status) = sent {
            let _ = tokio::task::spawn_blocking(move || status.recv_timeout(GOODBYE_WAIT)).await;
        }
        Ok(())
    }
}

impl fmt::Debug for MdnsRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MdnsRegistry")
            .field("config", &self.inner.config)
            .field("token", &self.inner.token)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Ends the daemon thread; the browse channel closes and the task ends.
        let _ = self.daemon.shutdown();
    }
}

#[async_trait]
impl Registry for MdnsRegistry {
    fn scheme(&self) -> &'static str {
        "mdns"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }

    async fn register(&self, service: &Service, options: &RegisterOptions) -> Result<()> {
        crate::validate_registration(service, options)?;
        self.ensure_task();
        // Encode every node first, so an oversized one is refused before any is announced.
        let nodes = service
            .nodes
            .iter()
            .map(|node| {
                let one = single(service, node);
                let info = self.service_info(&one, options.ttl)?;
                Ok((one, info))
            })
            .collect::<Result<Vec<_>>>()?;
        for (one, info) in nodes {
            let announced = Announced {
                fullname: info.get_fullname().to_owned(),
            };
            self.inner
                .view
                .register_own(one.clone(), options, announced)
                .await?;
            if let Err(err) = self.announce(info).await {
                let _ = self
                    .inner
                    .view
                    .deregister_own(&node_key(&one, &one.nodes[0]))
                    .await;
                return Err(err);
            }
        }
        Ok(())
    }

    async fn deregister(&self, service: &Service) -> Result<()> {
        for node in &service.nodes {
            let key = node_key(service, node);
            if let Some(own) = self.inner.view.deregister_own(&key).await? {
                self.unannounce(&own.announced.fullname).await?;
            }
        }
        Ok(())
    }

    async fn get_service(&self, name: &str) -> Result<Vec<Service>> {
        self.ensure_task();
        self.inner.view.get_service(name).await
    }

    async fn list_services(&self) -> Result<Vec<Service>> {
        self.ensure_task();
        self.inner.view.list_services().await
    }

    async fn watch(&self, options: &WatchOptions) -> Result<WatchStream> {
        self.ensure_task();
        self.inner.view.watch(options).await
    }
}

/// Follows the browse, feeding peers' nodes into the view, and stops
/// announcing own registrations whose TTL lapsed. Ends when the registry is
/// dropped (the daemon shuts down and the browse channel closes).
async fn follow(registry: Weak<Inner>, events: Receiver<ServiceEvent>) {
    // Peers' nodes by instance name, to know what a removal removes.
    let mut peers: HashMap<String, Service> = HashMap::new();
    let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = events.recv_async() => {
                let Ok(event) = event else { return };
                let Some(inner) = registry.upgrade() else { return };
                apply(&inner, &mut peers, event).await;
            }
            _ = sweep.tick() => {
                let Some(inner) = registry.upgrade() else { return };
                let handle = MdnsRegistry { inner };
                for own in handle.inner.view.take_expired_own(Instant::now()) {
                    if let Err(err) = handle.unannounce(&own.announced.fullname).await {
                        tracing::warn!("mDNS: withdrawing an expired registration: {err}");
                    }
                }
            }
        }
    }
}

async fn apply(inner: &Inner, peers: &mut HashMap<String, Service>, event: ServiceEvent) {
    match event {
        ServiceEvent::ServiceResolved(resolved) => {
            if is_own(inner, &resolved.fullname) {
                return;
            }
            let Some(decoded) = txt::decode(&resolved.txt_properties) else {
                tracing::debug!("mDNS: ignoring {} (not a micro record)", resolved.fullname);
                return;
            };
            // The same instance now announcing another node: the old one is gone.
            if let Some(previous) = peers.get(&resolved.fullname)
                && node_key(previous, &previous.nodes[0])
                    != node_key(&decoded.service, &decoded.service.nodes[0])
            {
                inner.view.remove_remote(previous).await;
            }
            inner
                .view
                .upsert_remote(&decoded.service, decoded.ttl)
                .await;
            peers.insert(resolved.fullname, decoded.service);
        }
        ServiceEvent::ServiceRemoved(_, fullname) => {
            if let Some(service) = peers.remove(&fullname) {
                inner.view.remove_remote(&service).await;
            }
        }
        _ => {}
    }
}

fn is_own(inner: &Inner, fullname: &str) -> bool {
    fullname
        .strip_prefix(inner.token.as_str())
        .is_some_and(|rest| rest.starts_with('-'))
}

fn port_of(address: &str) -> u16 {
    address
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or(0)
}

fn restrict_interfaces(daemon: &ServiceDaemon, interfaces: &[String]) -> Result<()> {
    if interfaces.is_empty() {
        return Ok(());
    }
    let kinds: Vec<IfKind> = interfaces
        .iter()
        .map(|interface| match interface.parse() {
            Ok(ip) => IfKind::Addr(ip),
            Err(_) => IfKind::Name(interface.clone()),
        })
        .collect();
    // Later selections win over earlier ones: everything off, then the chosen ones on.
    daemon
        .disable_interface(IfKind::All)
        .and_then(|()| daemon.enable_interface(kinds))
        .map_err(|err| Error::unavailable(format!("restricting mDNS interfaces: {err}")))
}

fn browse(daemon: &ServiceDaemon, service_type: &str) -> Result<Receiver<ServiceEvent>> {
    daemon.browse(service_type).map_err(|err| {
        Error::invalid_argument(format!(
            "browsing mDNS service type {service_type:?}: {err}"
        ))
    })
}

/// Runs a daemon command, retrying while its bounded command queue is full
/// (a burst of registrations) rather than failing the caller.
/// How long a deregistration waits for the daemon to report its goodbye sent.
const GOODBYE_WAIT: Duration = Duration::from_secs(2);

async fn retry_full_queue(mut command: impl FnMut() -> mdns_sd::Result<()>) -> Result<()> {
    let deadline = Instant::now() + QUEUE_RETRY;
    loop {
        match command() {
            Ok(()) => return Ok(()),
            Err(mdns_sd::Error::Again) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(mdns_sd::Error::Again) => {
                return Err(Error::resource_exhausted(
                    "the mDNS daemon's command queue stayed full",
                ));
            }
            Err(err) => return Err(Error::unavailable(format!("mDNS daemon: {err}"))),
        }
    }
}

/// Builds an [`MdnsRegistry`] with non-default settings.
#[derive(Debug, Clone)]
pub struct MdnsRegistryBuilder {
    config: MdnsConfig,
}

impl MdnsRegistryBuilder {
    /// Starts from these settings.
    pub fn config(mut self, config: MdnsConfig) -> MdnsRegistryBuilder {
        self.config = config;
        self
    }

    /// Restricts mDNS to these interfaces (names or addresses); see [`MdnsConfig::interfaces`].
    pub fn interfaces<I, S>(mut self, interfaces: I) -> MdnsRegistryBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.interfaces = interfaces.into_iter().map(Into::into).collect();
        self
    }

    /// Runs the daemon in this network namespace; see [`MdnsConfig::netns`].
    pub fn netns(mut self, netns: impl Into<String>) -> MdnsRegistryBuilder {
        self.config.netns = Some(netns.into());
        self
    }

    /// Sets [`MdnsConfig::port`].
    pub fn port(mut self, port: u16) -> MdnsRegistryBuilder {
        self.config.port = port;
        self
    }

    /// Sets [`MdnsConfig::service_type`].
    pub fn service_type(mut self, service_type: impl Into<String>) -> MdnsRegistryBuilder {
        self.config.service_type = service_type.into();
        self
    }

    /// Sets [`MdnsConfig::discovery_wait`].
    pub fn discovery_wait(mut self, wait: Duration) -> MdnsRegistryBuilder {
        self.config.discovery_wait = wait;
        self
    }

    /// The registry; starts the mDNS daemon.
    pub fn build(self) -> Result<MdnsRegistry> {
        MdnsRegistry::from_config(&self.config)
    }
}
