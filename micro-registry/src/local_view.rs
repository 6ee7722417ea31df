//! What one process of a serverless backend (mDNS, gossip) knows: its own
//! registrations plus those it discovered from peers.
//!
//! Both backends keep that knowledge in a private [`MemoryRegistry`], so
//! lookups, listings, watches, event ordering and TTL expiry follow exactly the
//! rules the memory backend is tested for. The backend adds what is specific to
//! its network: announcing its own registrations, feeding what peers announce
//! into the view, and un-announcing its own registrations when they expire.
//!
//! Own registrations enter the view before they are announced, so a caller
//! reads its own writes and its watchers see its changes in order; peers'
//! registrations arrive later, when the network delivers them.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use futures::StreamExt;
use tokio::time::Instant;

use crate::{
    ErrorKind, MemoryRegistry, Node, RegisterOptions, Registry, Result, Service, WatchOptions,
    WatchStream,
};

/// `(service name, version, node id)`: what identifies one registration.
pub(crate) type NodeKey = (String, String, String);

/// The key of the one node of `service`.
pub(crate) fn node_key(service: &Service, node: &Node) -> NodeKey {
    (
        service.name.clone(),
        service.version.clone(),
        node.id.clone(),
    )
}

/// `service` reduced to one of its nodes, the unit both backends announce.
pub(crate) fn single(service: &Service, node: &Node) -> Service {
    Service {
        name: service.name.clone(),
        version: service.version.clone(),
        metadata: service.metadata.clone(),
        endpoints: service.endpoints.clone(),
        nodes: vec![node.clone()],
    }
}

/// One own registration: what was announced and until when it lives.
#[derive(Debug, Clone)]
pub(crate) struct Own<A> {
    /// The service with exactly this node.
    pub(crate) service: Service,
    /// When it expires unless registered again.
    pub(crate) expires_at: Option<Instant>,
    /// The backend's handle on the announcement (an mDNS instance name, a gossip key).
    pub(crate) announced: A,
}

/// The view plus the own registrations a backend announces.
#[derive(Debug)]
pub(crate) struct LocalView<A> {
    view: MemoryRegistry,
    own: Mutex<HashMap<NodeKey, Own<A>>>,
    started: Instant,
    discovery_wait: Duration,
}

impl<A: Clone> LocalView<A> {
    /// An empty view; lookups of unknown services wait up to `discovery_wait`
    /// after creation for peers to answer before saying `NotFound`.
    pub(crate) fn new(discovery_wait: Duration) -> LocalView<A> {
        LocalView {
            view: MemoryRegistry::new(),
            own: Mutex::new(HashMap::new()),
            started: Instant::now(),
            discovery_wait,
        }
    }

    fn own(&self) -> MutexGuard<'_, HashMap<NodeKey, Own<A>>> {
        // Entries are replaced whole, so a panic elsewhere cannot leave one half-written.
        self.own.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records an own registration of one node in the view (emitting its
    /// events) and in the own table. Returns the previous own entry, if any.
    pub(crate) async fn register_own(
        &self,
        service: Service,
        options: &RegisterOptions,
        announced: A,
    ) -> Result<Option<Own<A>>> {
        self.view.register(&service, options).await?;
        let key = node_key(&service, &service.nodes[0]);
        let entry = Own {
            expires_at: options.ttl.map(|ttl| Instant::now() + ttl),
            service,
            announced,
        };
        Ok(self.own().insert(key, entry))
    }

    /// Removes an own registration from the view and the own table, returning it.
    pub(crate) async fn deregister_own(&self, key: &NodeKey) -> Result<Option<Own<A>>> {
        let removed = self.own().remove(key);
        if let Some(own) = &removed {
            self.view.deregister(&own.service).await?;
        }
        Ok(removed)
    }

    /// Removes and returns the own registrations whose TTL has lapsed, so the
    /// backend can stop announcing them. (The view expires them by itself.)
    pub(crate) fn take_expired_own(&self, now: Instant) -> Vec<Own<A>> {
        let mut own = self.own();
        let expired: Vec<NodeKey> = own
            .iter()
            .filter(|(_, entry)| entry.expires_at.is_some_and(|at| at <= now))
            .map(|(key, _)| key.clone())
            .collect();
        expired
            .into_iter()
            .filter_map(|key| own.remove(&key))
            .collect()
    }

    /// Records (or renews) a registration a peer announced. Peers'
    /// registrations never replace this process's own for the same node.
    pub(crate) async fn upsert_remote(&self, service: &Service, ttl: Option<Duration>) {
        let key = node_key(service, &service.nodes[0]);
        if self.own().contains_key(&key) {
            return;
        }
        let options = RegisterOptions { ttl };
        if let Err(err) = self.view.register(service, &options).await {
            tracing::debug!("ignoring an invalid registration from a peer: {err}");
        }
    }

    /// Forgets a registration a peer withdrew or that died with its peer.
    pub(crate) async fn remove_remote(&self, service: &Service) {
        let key = node_key(service, &service.nodes[0]);
        if self.own().contains_key(&key) {
            return;
        }
        // The memory registry's deregister cannot fail.
        let _ = self.view.deregister(service).await;
    }

    /// Every version of `name`. A fresh view waits for peers' answers up to
    /// the discovery wait before saying `NotFound`.
    pub(crate) async fn get_service(&self, name: &str) -> Result<Vec<Service>> {
        let deadline = self.started + self.discovery_wait;
        if Instant::now() >= deadline {
            return self.view.get_service(name).await;
        }
        // Subscribing before looking means an arrival between the two is not missed.
        let mut arrivals = self.view.watch(&WatchOptions::service(name)).await?;
        loop {
            match self.view.get_service(name).await {
                Err(err) if err.kind() == ErrorKind::NotFound => {}
                found => return found,
            }
            match tokio::time::timeout_at(deadline, arrivals.next()).await {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return self.view.get_service(name).await,
            }
        }
    }

    /// Every service known.
    pub(crate) async fn list_services(&self) -> Result<Vec<Service>> {
        self.view.list_services().await
    }

    /// Changes from now on.
    pub(crate) async fn watch(&self, options: &WatchOptions) -> Result<WatchStream> {
        self.view.watch(options).await
    }
}
