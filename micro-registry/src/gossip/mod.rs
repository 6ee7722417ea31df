//! Peer-to-peer discovery by gossip (chitchat's scuttlebutt protocol over
//! UDP): no server, every process is a member of the cluster.
//!
//! # How services travel
//!
//! Each registry is one cluster member. Its registrations are keys of its own
//! gossiped key/value state (`svc:` plus the node's name, version and id; the
//! value is the node's [`Service`] as JSON). Every member learns every other
//! member's state within a few gossip rounds, so each process keeps a complete
//! local view and lookups never leave the process.
//!
//! # Lifetimes
//!
//! - Deregistration deletes the key (a tombstone, gossiped at once to every
//!   live peer), and peers drop the node.
//! - A member that stops gossiping (killed, partitioned) is declared dead by
//!   chitchat's phi-accrual failure detector after about
//!   [`GossipConfig::phi_threshold`] heartbeat intervals of silence, and all
//!   of its nodes leave every peer's view. Tune it with
//!   [`GossipConfig::gossip_interval`] and `phi_threshold`.
//! - The registering member stops publishing a registration whose TTL lapsed.
//! - A member restarting under the same node id joins with a new generation;
//!   its services reappear as soon as its state spreads.
//! - A fresh registry's lookups wait up to [`GossipConfig::discovery_wait`]
//!   for peers' state before saying `NotFound`.
//!
//! The member starts on the tokio runtime the registry is built on (or first
//! used on), listening on [`GossipConfig::listen`].
//!
//! ```no_run
//! use micro_registry::{Registry, gossip::GossipRegistry};
//!
//! # async fn demo() -> micro_registry::Result<()> {
//! let registry = GossipRegistry::builder()
//!     .listen("127.0.0.1:7946")
//!     .seeds(["127.0.0.1:7947"])
//!     .build()?;
//! let found = registry.get_service("greeter").await?;
//! # Ok(())
//! # }
//! ```

mod config;

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    net::{SocketAddr, ToSocketAddrs},
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use chitchat::{
    ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, NodeState, ProtocolVersion,
    spawn_chitchat, transport::UdpTransport,
};
use tokio::{sync::OnceCell, time::Instant};

pub use self::config::{
    ENV_ADVERTISE, ENV_CLUSTER, ENV_DISCOVERY_WAIT, ENV_INTERVAL, ENV_LISTEN, ENV_PHI_THRESHOLD,
    ENV_REGISTRY_ADDRESS, ENV_SEEDS, GossipConfig,
};
use crate::{
    Capabilities, Error, RegisterOptions, Registry, Result, Service, WatchOptions, WatchStream,
    local_view::{LocalView, NodeKey, node_key, single},
};

/// The prefix of the keys holding registrations in a member's state.
const KEY_PREFIX: &str = "svc:";

/// The largest registration value: chitchat sends a key/value pair whole in
/// one UDP datagram, so a bigger one could never spread.
const MAX_VALUE_BYTES: usize = 60_000;

/// How long a dead member's state is kept before it is forgotten.
const DEAD_NODE_GRACE: Duration = Duration::from_secs(3600);

/// How long tombstones of deleted keys are kept for peers that missed them.
const TOMBSTONE_GRACE: Duration = Duration::from_secs(600);

/// How often own registrations are checked for an expired TTL.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// How long a deregistration waits after pushing its tombstone to every live
/// peer: the tombstone leaves in this member's reply to the peer's answer, one
/// round trip later, and a process exiting right after deregistering must not
/// cut that short.
const DEREGISTER_FLUSH: Duration = Duration::from_millis(100);

/// The gossip registry. Cloning gives another handle to the same member.
#[derive(Clone)]
pub struct GossipRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    config: GossipConfig,
    node_id: String,
    addresses: std::sync::Mutex<Addresses>,
    /// Whether the port was picked here (port 0 asked), so another free one
    /// may be picked if it cannot be bound after all.
    picks_port: bool,
    /// Whether the advertised address is the listen address (none was set).
    advertises_listen: bool,
    view: LocalView<String>,
    member: OnceCell<ChitchatHandle>,
    /// Whether the task following peers' state was started.
    follower: AtomicBool,
}

/// Where this member gossips.
#[derive(Debug)]
struct Addresses {
    /// The address this member listens on, resolved at build (port 0 picked).
    listen: SocketAddr,
    advertise: SocketAddr,
    /// The port picked for port 0, held bound until the member binds it, so
    /// that no other socket picking a free port meanwhile can take it.
    reserved: Option<std::net::UdpSocket>,
}

/// How many free ports a member asked for port 0 tries before giving up.
const PORT_ATTEMPTS: usize = 5;

/// What one registration key holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct Value {
    service: Service,
}

impl GossipRegistry {
    /// A registry with default settings: a cluster of one on a free loopback
    /// port, until peers join it.
    pub fn new() -> Result<GossipRegistry> {
        GossipRegistry::from_config(&GossipConfig::default())
    }

    /// A registry configured by the `MICRO_GOSSIP_*` variables; see [`GossipConfig::from_env`].
    pub fn from_env() -> Result<GossipRegistry> {
        GossipRegistry::from_config(&GossipConfig::from_env()?)
    }

    /// A builder for a registry with non-default settings.
    pub fn builder() -> GossipRegistryBuilder {
        GossipRegistryBuilder {
            config: GossipConfig::default(),
        }
    }

    /// A registry with these settings. Resolves the listen address (picking
    /// a free port for port 0) and, inside a tokio runtime, starts the member
    /// at once; otherwise on first use.
    pub fn from_config(config: &GossipConfig) -> Result<GossipRegistry> {
        config.validate()?;
        let (listen, reserved) = resolve_listen(&config.listen)?;
        let reserved_port = reserved.is_some();
        let advertise = match &config.advertise {
            Some(advertise) => resolve(advertise, "advertise")?,
            None if listen.ip().is_unspecified() => {
                return Err(Error::invalid_argument(format!(
                    "gossip listens on {listen}, which peers cannot dial: \
                     set an advertise address ({})",
                    config::ENV_ADVERTISE
                )));
            }
            None => listen,
        };
        let node_id = config
            .node_id
            .clone()
            .unwrap_or_else(|| format!("micro-{:016x}", rand::random::<u64>()));
        let registry = GossipRegistry {
            inner: Arc::new(Inner {
                config: config.clone(),
                node_id,
                addresses: std::sync::Mutex::new(Addresses {
                    listen,
                    advertise,
                    reserved,
                }),
                picks_port: reserved_port,
                advertises_listen: config.advertise.is_none(),
                view: LocalView::new(config.discovery_wait),
                member: OnceCell::new(),
                follower: AtomicBool::new(false),
            }),
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let starting = registry.clone();
            runtime.spawn(async move {
                if let Err(err) = starting.ensure_follower().await {
                    tracing::warn!("gossip registry: {err}");
                }
            });
        }
        Ok(registry)
    }

    /// The settings this registry runs with.
    pub fn config(&self) -> &GossipConfig {
        &self.inner.config
    }

    /// The UDP address this member gossips on (with the port picked, if port 0 was asked).
    pub fn listen_address(&self) -> SocketAddr {
        self.inner.addresses().listen
    }

    /// This member's node id in the cluster.
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// The running member, started on first call.
    async fn member(&self) -> Result<&ChitchatHandle> {
        self.inner
            .member
            .get_or_try_init(|| start_member(&self.inner))
            .await
    }

    async fn set_key(&self, key: String, value: String) -> Result<()> {
        let member = self.member().await?;
        member
            .with_chitchat(|chitchat| chitchat.self_node_state().set(key.clone(), value.clone()))
            .await;
        Ok(())
    }

    async fn delete_key(&self, key: &str) -> Result<()> {
        let member = self.member().await?;
        member
            .with_chitchat(|chitchat| {
                if chitchat.self_node_state().get(key).is_some() {
                    chitchat.self_node_state().delete(key);
                }
            })
            .await;
        Ok(())
    }

    /// Pushes this member's state to every live peer now, instead of at the
    /// next gossip round, and gives the exchange a moment to complete.
    async fn push_to_peers(&self) -> Result<()> {
        let member = self.member().await?;
        let peers: Vec<SocketAddr> = member
            .with_chitchat(|chitchat| {
                let me = chitchat.self_chitchat_id().clone();
                chitchat
                    .live_nodes()
                    .filter(|id| **id != me)
                    .map(|id| id.gossip_advertise_addr)
                    .collect()
            })
            .await;
        if peers.is_empty() {
            return Ok(());
        }
        for peer in peers {
            // Fails only when the member has shut down.
            let _ = member.gossip(peer);
        }
        tokio::time::sleep(DEREGISTER_FLUSH).await;
        Ok(())
    }
}

impl fmt::Debug for GossipRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GossipRegistry")
            .field("node_id", &self.inner.node_id)
            .field("listen", &self.inner.addresses().listen)
            .field("seeds", &self.inner.config.seeds)
            .field("started", &self.inner.member.initialized())
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(member) = self.member.get() {
            // Peers notice by failure detection; services deregistered first
            // (as a stopping service does) are gone from them already.
            let _ = member.initiate_shutdown();
        }
    }
}

impl Inner {
    fn addresses(&self) -> std::sync::MutexGuard<'_, Addresses> {
        self.addresses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Starts the member on its listen address. A port picked for port 0 is let
/// go only right before chitchat binds it; should something take it even
/// so, another free port is picked (a few times), since any port was asked.
async fn start_member(inner: &Inner) -> Result<ChitchatHandle> {
    for attempt in 1.. {
        let (listen, advertise, reserved) = {
            let mut addresses = inner.addresses();
            (
                addresses.listen,
                addresses.advertise,
                addresses.reserved.take(),
            )
        };
        drop(reserved);
        let started = spawn_chitchat(
            chitchat_config(inner, listen, advertise),
            Vec::new(),
            &UdpTransport,
        )
        .await;
        match started {
            Ok(member) => return Ok(member),
            Err(err) if inner.picks_port && attempt < PORT_ATTEMPTS && address_in_use(&*err) => {
                tracing::debug!(%listen, "gossip port taken before it was bound; picking another");
                let (listen, reserved) = resolve_listen(&inner.config.listen)?;
                let mut addresses = inner.addresses();
                addresses.listen = listen;
                if inner.advertises_listen {
                    addresses.advertise = listen;
                }
                addresses.reserved = reserved;
            }
            Err(err) => {
                return Err(Error::unavailable(format!(
                    "starting gossip on {listen}: {err:#}"
                )));
            }
        }
    }
    unreachable!("the attempts end with a return")
}

/// Whether `err`, or an error it was caused by, is "address in use".
fn address_in_use(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(error) = cause {
        let in_use = error
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse);
        if in_use {
            return true;
        }
        cause = error.source();
    }
    false
}

fn chitchat_config(inner: &Inner, listen: SocketAddr, advertise: SocketAddr) -> ChitchatConfig {
    let generation = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
    let id = ChitchatId::new(inner.node_id.clone(), generation, advertise);
    let interval = inner.config.gossip_interval;
    ChitchatConfig {
        chitchat_id: id,
        cluster_id: inner.config.cluster.clone(),
        gossip_interval: interval,
        listen_addr: listen,
        seed_nodes: inner.config.seeds.clone(),
        failure_detector_config: FailureDetectorConfig {
            phi_threshold: inner.config.phi_threshold,
            sampling_window_size: 1000,
            // Gaps longer than this are outages, not samples of the normal rhythm.
            max_interval: interval * 10,
            // Until samples arrive, a peer is expected to be heard of every round.
            initial_interval: interval,
            dead_node_grace_period: DEAD_NODE_GRACE,
        },
        marked_for_deletion_grace_period: TOMBSTONE_GRACE,
        catchup_callback: None,
        extra_liveness_predicate: None,
        protocol_version: ProtocolVersion::V0,
    }
}

#[async_trait]
impl Registry for GossipRegistry {
    fn scheme(&self) -> &'static str {
        "gossip"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }

    async fn register(&self, service: &Service, options: &RegisterOptions) -> Result<()> {
        crate::validate_registration(service, options)?;
        self.ensure_follower().await?;
        let nodes = service
            .nodes
            .iter()
            .map(|node| {
                let one = single(service, node);
                let key = registration_key(&node_key(&one, node))?;
                let value = serde_json::to_string(&Value {
                    service: one.clone(),
                })
                .map_err(|err| Error::internal(format!("encoding a registration: {err}")))?;
                if value.len() > MAX_VALUE_BYTES {
                    return Err(Error::resource_exhausted(format!(
                        "the description of {:?} takes {} bytes, more than the {MAX_VALUE_BYTES} \
                         one gossip message can carry",
                        service.name,
                        value.len()
                    )));
                }
                Ok((one, key, value))
            })
            .collect::<Result<Vec<_>>>()?;
        for (one, key, value) in nodes {
            self.inner
                .view
                .register_own(one, options, key.clone())
                .await?;
            self.set_key(key, value).await?;
        }
        Ok(())
    }

    async fn deregister(&self, service: &Service) -> Result<()> {
        let mut removed = false;
        for node in &service.nodes {
            if let Some(own) = self
                .inner
                .view
                .deregister_own(&node_key(service, node))
                .await?
            {
                self.delete_key(&own.announced).await?;
                removed = true;
            }
        }
        if removed {
            self.push_to_peers().await?;
        }
        Ok(())
    }

    async fn get_service(&self, name: &str) -> Result<Vec<Service>> {
        self.ensure_follower().await?;
        self.inner.view.get_service(name).await
    }

    async fn list_services(&self) -> Result<Vec<Service>> {
        self.ensure_follower().await?;
        self.inner.view.list_services().await
    }

    async fn watch(&self, options: &WatchOptions) -> Result<WatchStream> {
        self.ensure_follower().await?;
        self.inner.view.watch(options).await
    }
}

impl GossipRegistry {
    /// Starts the member and, once, the task feeding peers' state into the view.
    async fn ensure_follower(&self) -> Result<()> {
        let member = self.member().await?;
        if !self.inner.follower.swap(true, Ordering::AcqRel) {
            let watcher = member
                .with_chitchat(|chitchat| chitchat.live_nodes_watcher())
                .await;
            tokio::spawn(follow(
                Arc::downgrade(&self.inner),
                watcher,
                member.chitchat_id().clone(),
            ));
        }
        Ok(())
    }
}

/// Feeds the live members' registrations into the view whenever membership or
/// state changes, and stops publishing own registrations whose TTL lapsed.
/// Ends when the registry is dropped or the member shuts down.
async fn follow(
    registry: Weak<Inner>,
    mut live: tokio::sync::watch::Receiver<BTreeMap<ChitchatId, NodeState>>,
    me: ChitchatId,
) {
    let mut known: HashMap<NodeKey, Service> = HashMap::new();
    let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = live.changed() => {
                if changed.is_err() {
                    return;
                }
                let Some(inner) = registry.upgrade() else { return };
                let current = registrations(&live.borrow_and_update(), &me);
                apply(&inner, &mut known, current).await;
            }
            _ = sweep.tick() => {
                let Some(inner) = registry.upgrade() else { return };
                let handle = GossipRegistry { inner };
                for own in handle.inner.view.take_expired_own(Instant::now()) {
                    if let Err(err) = handle.delete_key(&own.announced).await {
                        tracing::warn!("gossip: withdrawing an expired registration: {err}");
                    }
                }
            }
        }
    }
}

/// Every registration published by a live member other than this one.
fn registrations(
    live: &BTreeMap<ChitchatId, NodeState>,
    me: &ChitchatId,
) -> HashMap<NodeKey, Service> {
    let mut found = HashMap::new();
    for (id, state) in live {
        if id == me {
            continue;
        }
        for (key, value) in state.key_values() {
            if !key.starts_with(KEY_PREFIX) {
                continue;
            }
            match serde_json::from_str::<Value>(value) {
                Ok(Value { service }) if service.nodes.len() == 1 => {
                    found.insert(node_key(&service, &service.nodes[0]), service);
                }
                _ => tracing::debug!("gossip: ignoring a malformed registration {key:?} of {id:?}"),
            }
        }
    }
    found
}

/// Moves the view from the registrations `known` to `current`.
async fn apply(
    inner: &Inner,
    known: &mut HashMap<NodeKey, Service>,
    current: HashMap<NodeKey, Service>,
) {
    for (key, service) in known.iter() {
        if !current.contains_key(key) {
            inner.view.remove_remote(service).await;
        }
    }
    for (key, service) in &current {
        if known.get(key) != Some(service) {
            inner.view.upsert_remote(service, None).await;
        }
    }
    *known = current;
}

fn registration_key(key: &NodeKey) -> Result<String> {
    serde_json::to_string(key)
        .map(|encoded| format!("{KEY_PREFIX}{encoded}"))
        .map_err(|err| Error::internal(format!("encoding a registration key: {err}")))
}

fn resolve(address: &str, what: &str) -> Result<SocketAddr> {
    address
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .ok_or_else(|| {
            Error::invalid_argument(format!(
                "gossip {what} address {address:?} is not host:port"
            ))
        })
}

/// The listen address with a free port picked for port 0 (chitchat
/// advertises the address it is given, so it must be the real one), and the
/// socket holding that port until the member binds it.
fn resolve_listen(listen: &str) -> Result<(SocketAddr, Option<std::net::UdpSocket>)> {
    let address = resolve(listen, "listen")?;
    if address.port() != 0 {
        return Ok((address, None));
    }
    let picked = std::net::UdpSocket::bind(address)
        .and_then(|socket| Ok((socket.local_addr()?, socket)))
        .map_err(|err| Error::unavailable(format!("picking a gossip port on {address}: {err}")))?;
    Ok((picked.0, Some(picked.1)))
}

/// Builds a [`GossipRegistry`] with non-default settings.
#[derive(Debug, Clone)]
pub struct GossipRegistryBuilder {
    config: GossipConfig,
}

impl GossipRegistryBuilder {
    /// Starts from these settings.
    pub fn config(mut self, config: GossipConfig) -> GossipRegistryBuilder {
        self.config = config;
        self
    }

    /// Sets [`GossipConfig::listen`].
    pub fn listen(mut self, listen: impl Into<String>) -> GossipRegistryBuilder {
        self.config.listen = listen.into();
        self
    }

    /// Sets [`GossipConfig::advertise`].
    pub fn advertise(mut self, advertise: impl Into<String>) -> GossipRegistryBuilder {
        self.config.advertise = Some(advertise.into());
        self
    }

    /// Sets [`GossipConfig::seeds`].
    pub fn seeds<I, S>(mut self, seeds: I) -> GossipRegistryBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.seeds = seeds.into_iter().map(Into::into).collect();
        self
    }

    /// Sets [`GossipConfig::cluster`].
    pub fn cluster(mut self, cluster: impl Into<String>) -> GossipRegistryBuilder {
        self.config.cluster = cluster.into();
        self
    }

    /// Sets [`GossipConfig::node_id`].
    pub fn node_id(mut self, node_id: impl Into<String>) -> GossipRegistryBuilder {
        self.config.node_id = Some(node_id.into());
        self
    }

    /// Sets [`GossipConfig::gossip_interval`].
    pub fn gossip_interval(mut self, interval: Duration) -> GossipRegistryBuilder {
        self.config.gossip_interval = interval;
        self
    }

    /// Sets [`GossipConfig::phi_threshold`].
    pub fn phi_threshold(mut self, phi: f64) -> GossipRegistryBuilder {
        self.config.phi_threshold = phi;
        self
    }

    /// Sets [`GossipConfig::discovery_wait`].
    pub fn discovery_wait(mut self, wait: Duration) -> GossipRegistryBuilder {
        self.config.discovery_wait = wait;
        self
    }

    /// The registry; see [`GossipRegistry::from_config`].
    pub fn build(self) -> Result<GossipRegistry> {
        GossipRegistry::from_config(&self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_picked_port_taken_before_the_bind_is_replaced_by_another() {
        let registry = GossipRegistry::builder()
            .listen("127.0.0.1:0")
            .build()
            .expect("a member on loopback");
        // Let go of the reservation and take the port, as an unrelated
        // socket could between the pick and the bind.
        let picked = registry.listen_address();
        let taken = {
            let mut addresses = registry.inner.addresses();
            drop(addresses.reserved.take());
            std::net::UdpSocket::bind(picked).expect("the released port")
        };
        let _watch = registry
            .watch(&WatchOptions::service("nobody"))
            .await
            .expect("the member starts on another free port");
        let moved = registry.listen_address();
        assert_ne!(moved, picked);
        assert_eq!(registry.inner.addresses().advertise, moved);
        drop(taken);
    }

    #[tokio::test]
    async fn a_port_that_was_asked_for_is_not_replaced() {
        let blocker = std::net::UdpSocket::bind("127.0.0.1:0").expect("a free port");
        let asked = blocker.local_addr().expect("its address");
        let registry = GossipRegistry::builder()
            .listen(asked.to_string())
            .build()
            .expect("a member on loopback");
        let err = registry
            .watch(&WatchOptions::service("nobody"))
            .await
            .err()
            .expect("the asked-for port is in use");
        assert_eq!(err.kind(), crate::ErrorKind::Unavailable);
        assert!(err.message().contains(&asked.to_string()), "{err}");
        assert_eq!(registry.listen_address(), asked);
    }
}
