//! A registry wrapper for clients that serves lookups from memory, kept fresh by
//! a watch on the backend.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError, Weak},
    time::Duration,
};

use async_trait::async_trait;
use futures::StreamExt;
use micro_core::Backoff;
use tokio::{task::AbortHandle, time::Instant};

use crate::{
    Capabilities, Error, ErrorKind, Event, EventKind, RegisterOptions, Registry, Result, Service,
    WatchOptions, WatchStream,
};

/// A [`Registry`] that answers [`get_service`](Registry::get_service) from an
/// in-memory cache, for clients that look services up on every call.
///
/// - The first lookup of a name asks the backend, then follows the name with a
///   background watch that applies every `Create`, `Update` and `Delete` to the
///   cached entry. While the watch is up, lookups never reach the backend.
/// - When the watch fails it is reopened with exponential backoff, and the entry
///   is fetched again once it is back. Meanwhile the entry is served as it is
///   until it is older than the [entry TTL](CachingRegistryBuilder::entry_ttl),
///   after which lookups fetch it again.
/// - When such a fetch fails, the stale entry is served and a warning is logged
///   (`tracing::warn!`); with nothing cached, the backend's error is returned.
/// - `NotFound` is not cached: asking again for an unknown service, or for one
///   whose every node the watch removed, asks the backend again. So a node
///   replaced by another (`Delete`, then `Create`) is never reported missing
///   in between, and a caller that registered a node then looks it up finds it.
/// - [`register`](Registry::register), [`deregister`](Registry::deregister),
///   [`list_services`](Registry::list_services) and [`watch`](Registry::watch) go
///   to the backend. Registrations and deregistrations made through this
///   wrapper are also applied to the cache at once, so a caller reads its own writes.
///
/// Clones share the cache. The background watches stop when the last clone is dropped.
///
/// ```
/// use micro_registry::{memory::MemoryRegistry, CachingRegistry, Node, RegisterOptions, Registry, Service};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> micro_registry::Result<()> {
/// let backend = MemoryRegistry::new();
/// let cache = CachingRegistry::new(backend.clone());
/// backend
///     .register(&Service::new("greeter").with_node(Node::new("g-1", "127.0.0.1:4123")), &RegisterOptions::default())
///     .await?;
/// // Asks the backend once, then follows `greeter` with a watch.
/// assert_eq!(cache.get_service("greeter").await?[0].nodes[0].id, "g-1");
/// # Ok(())
/// # }
/// ```
pub struct CachingRegistry<R> {
    shared: Arc<Shared<R>>,
}

impl<R> Clone for CachingRegistry<R> {
    fn clone(&self) -> CachingRegistry<R> {
        CachingRegistry {
            shared: Arc::clone(&self.shared),
        }
    }
}

struct Shared<R> {
    backend: R,
    options: CacheOptions,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

#[derive(Debug, Clone, Copy)]
struct CacheOptions {
    entry_ttl: Option<Duration>,
    min_backoff: Duration,
    max_backoff: Duration,
}

/// The cache of one service name.
#[derive(Debug, Default)]
struct Slot {
    entry: Mutex<Entry>,
    /// Held while fetching from the backend, so concurrent misses of one name
    /// make one backend call.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct Entry {
    /// `None` until a fetch succeeded; afterwards the versions that have nodes.
    /// Shared with the lookups that returned it; a change copies it first
    /// when a lookup still holds it.
    services: Option<Arc<Vec<Service>>>,
    refreshed_at: Option<Instant>,
    /// Whether a watch is up and applying changes.
    watching: bool,
    /// Bumped on every change, so a fetch that raced a change does not overwrite it.
    generation: u64,
    follower: Option<AbortHandle>,
}

impl<R: Registry> CachingRegistry<R> {
    /// Caches lookups of `backend` with the default settings: entries whose
    /// watch is down are fetched again after 30 seconds; a failed watch is
    /// reopened after 100 ms, doubling up to 30 seconds.
    pub fn new(backend: R) -> CachingRegistry<R> {
        CachingRegistry::builder(backend).build()
    }

    /// A builder for a cache with non-default settings.
    pub fn builder(backend: R) -> CachingRegistryBuilder<R> {
        CachingRegistryBuilder {
            backend,
            options: CacheOptions {
                entry_ttl: Some(Duration::from_secs(30)),
                min_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(30),
            },
        }
    }

    /// The wrapped registry.
    pub fn backend(&self) -> &R {
        &self.shared.backend
    }
}

/// Builds a [`CachingRegistry`] with non-default settings.
pub struct CachingRegistryBuilder<R> {
    backend: R,
    options: CacheOptions,
}

impl<R: Registry> CachingRegistryBuilder<R> {
    /// How old an entry may get while its watch is down before a lookup fetches
    /// it again; `None` serves it until the watch is back. Entries whose watch is
    /// up are always fresh. Default: 30 seconds.
    pub fn entry_ttl(mut self, ttl: Option<Duration>) -> CachingRegistryBuilder<R> {
        self.options.entry_ttl = ttl;
        self
    }

    /// How long to wait before reopening a failed watch: `min` at first, doubling
    /// on each failure up to `max`. Default: 100 ms to 30 seconds.
    pub fn watch_backoff(mut self, min: Duration, max: Duration) -> CachingRegistryBuilder<R> {
        self.options.min_backoff = min;
        self.options.max_backoff = max.max(min);
        self
    }

    /// The caching registry.
    pub fn build(self) -> CachingRegistry<R> {
        CachingRegistry {
            shared: Arc::new(Shared {
                backend: self.backend,
                options: self.options,
                slots: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl<R: fmt::Debug> fmt::Debug for CachingRegistryBuilder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachingRegistryBuilder")
            .field("backend", &self.backend)
            .field("entry_ttl", &self.options.entry_ttl)
            .field("min_backoff", &self.options.min_backoff)
            .field("max_backoff", &self.options.max_backoff)
            .finish()
    }
}

impl<R: fmt::Debug> fmt::Debug for CachingRegistry<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachingRegistry")
            .field("backend", &self.shared.backend)
            .field("entry_ttl", &self.shared.options.entry_ttl)
            .field("cached_names", &lock(&self.shared.slots).len())
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent before anything that can
    // panic, so a poisoned lock is still usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<R> Drop for Shared<R> {
    fn drop(&mut self) {
        for slot in lock(&self.slots).values() {
            if let Some(follower) = lock(&slot.entry).follower.take() {
                follower.abort();
            }
        }
    }
}

impl<R: Registry> Shared<R> {
    fn slot(&self, name: &str) -> Arc<Slot> {
        let mut slots = lock(&self.slots);
        // Looked up by reference first: the name is copied only the first time.
        if let Some(slot) = slots.get(name) {
            return Arc::clone(slot);
        }
        Arc::clone(slots.entry(name.to_owned()).or_default())
    }

    fn existing_slot(&self, name: &str) -> Option<Arc<Slot>> {
        lock(&self.slots).get(name).cloned()
    }
}

impl Slot {
    /// The cached answer if the entry can be served without asking the backend.
    ///
    /// An entry without nodes is never served: the watch may have applied a
    /// `Delete` and not yet the `Create` of the node that replaces it, and a
    /// client must not be told "no such service" while the backend has one.
    fn fresh(&self, name: &str, entry_ttl: Option<Duration>) -> Option<Result<Arc<Vec<Service>>>> {
        let entry = lock(&self.entry);
        let services = entry
            .services
            .as_ref()
            .filter(|services| !services.is_empty())?;
        let young = match (entry_ttl, entry.refreshed_at) {
            (None, _) => true,
            (Some(ttl), Some(at)) => at.elapsed() < ttl,
            (Some(_), None) => false,
        };
        (entry.watching || young).then(|| answer(name, services))
    }

    /// Stores a fetched answer unless the entry changed since `generation`;
    /// returns what the entry holds afterwards.
    fn store_fetched(&self, generation: u64, services: Vec<Service>) -> Arc<Vec<Service>> {
        let mut entry = lock(&self.entry);
        if entry.generation == generation || entry.services.is_none() {
            entry.replace(services);
        }
        entry.services.clone().unwrap_or_default()
    }

    fn generation(&self) -> u64 {
        lock(&self.entry).generation
    }

    fn stale(&self) -> Option<Arc<Vec<Service>>> {
        lock(&self.entry)
            .services
            .clone()
            .filter(|services| !services.is_empty())
    }

    fn set_watching(&self, watching: bool) {
        lock(&self.entry).watching = watching;
    }

    fn apply(&self, name: &str, event: &Event) {
        if event.service.name != name {
            return;
        }
        let mut entry = lock(&self.entry);
        match event.kind {
            EventKind::Create | EventKind::Update => entry.upsert(&event.service),
            EventKind::Delete => entry.remove(&event.service),
        }
    }
}

impl Entry {
    fn replace(&mut self, services: Vec<Service>) {
        self.services = Some(Arc::new(services));
        self.refreshed_at = Some(Instant::now());
        self.generation += 1;
    }

    /// Adds or replaces the nodes of `service`, taking its metadata and endpoints
    /// as the version's. Does nothing when nothing is cached yet.
    fn upsert(&mut self, service: &Service) {
        let Some(services) = self.services.as_mut().map(Arc::make_mut) else {
            return;
        };
        self.generation += 1;
        let Some(cached) = services.iter_mut().find(|s| s.version == service.version) else {
            services.push(service.clone());
            services.sort_by(|a, b| a.version.cmp(&b.version));
            return;
        };
        cached.metadata = service.metadata.clone();
        cached.endpoints = service.endpoints.clone();
        for node in &service.nodes {
            match cached.nodes.iter_mut().find(|n| n.id == node.id) {
                Some(existing) => *existing = node.clone(),
                None => cached.nodes.push(node.clone()),
            }
        }
    }

    /// Removes the nodes of `service`, and its version once it has none.
    fn remove(&mut self, service: &Service) {
        let Some(services) = self.services.as_mut().map(Arc::make_mut) else {
            return;
        };
        self.generation += 1;
        for cached in services.iter_mut().filter(|s| s.version == service.version) {
            cached
                .nodes
                .retain(|node| !service.nodes.iter().any(|gone| gone.id == node.id));
        }
        services.retain(|s| !s.nodes.is_empty());
    }
}

/// The lookup answer for a cached list of versions.
fn answer(name: &str, services: &Arc<Vec<Service>>) -> Result<Arc<Vec<Service>>> {
    if services.is_empty() {
        Err(Error::not_found(format!("no service named {name:?}")))
    } else {
        Ok(Arc::clone(services))
    }
}

impl<R: Registry> CachingRegistry<R> {
    /// Fetches `name` from the backend into `slot`, starting the watch that keeps
    /// it fresh if none runs; serves the stale entry if the backend fails.
    async fn fetch(&self, name: &str, slot: &Arc<Slot>) -> Result<Arc<Vec<Service>>> {
        let shared = &self.shared;
        let start_follower = lock(&slot.entry).follower.is_none();
        // The watch is opened before the fetch so no change between the two is lost.
        let watch = if start_follower && shared.backend.capabilities().watch {
            Some(
                shared
                    .backend
                    .watch(&WatchOptions::service(name))
                    .await
                    .inspect_err(|err| {
                        tracing::warn!(service = name, error = %err,
                            "registry watch failed to open; will retry with backoff");
                    }),
            )
        } else {
            None
        };
        let generation = slot.generation();
        match shared.backend.get_service(name).await {
            Ok(services) => {
                let services = slot.store_fetched(generation, services);
                if let Some(watch) = watch {
                    self.start_follower(name, slot, watch.ok());
                }
                answer(name, &services)
            }
            Err(err) if err.kind() == ErrorKind::NotFound => {
                if lock(&slot.entry).services.is_some() {
                    slot.store_fetched(generation, Vec::new());
                }
                Err(err)
            }
            Err(err) => match slot.stale() {
                Some(stale) => {
                    tracing::warn!(service = name, error = %err,
                        "registry lookup failed; serving the cached entry");
                    Ok(stale)
                }
                None => Err(err),
            },
        }
    }

    fn start_follower(&self, name: &str, slot: &Arc<Slot>, watch: Option<WatchStream>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut entry = lock(&slot.entry);
        if entry.follower.is_some() {
            return;
        }
        entry.watching = watch.is_some();
        let follower = runtime.spawn(follow(
            Arc::downgrade(&self.shared),
            name.to_owned(),
            Arc::clone(slot),
            watch,
        ));
        entry.follower = Some(follower.abort_handle());
    }
}

/// Keeps `slot` fresh from a watch on `name`, reopening the watch (and fetching
/// the entry again) with backoff whenever it fails, until the cache is dropped.
///
/// Holds the cache only while reopening, never while waiting for events, so it
/// does not keep the cache alive; dropping the cache aborts it.
async fn follow<R: Registry>(
    cache: Weak<Shared<R>>,
    name: String,
    slot: Arc<Slot>,
    mut watch: Option<WatchStream>,
) {
    let Some(options) = cache.upgrade().map(|shared| shared.options) else {
        return;
    };
    let mut attempts = Backoff::exponential(options.min_backoff, options.max_backoff).attempts();
    loop {
        let stream = match watch.take() {
            Some(stream) => stream,
            None => match reopen(&cache, &name, &slot).await {
                Some(Ok(stream)) => stream,
                Some(Err(err)) => {
                    let delay = attempts.next_delay();
                    tracing::warn!(service = %name, error = %err, retry_in = ?delay,
                        "registry watch could not be reopened");
                    tokio::time::sleep(delay).await;
                    continue;
                }
                None => return,
            },
        };
        slot.set_watching(true);
        let opened = Instant::now();
        let err = apply_events(stream, &name, &slot).await;
        slot.set_watching(false);
        if opened.elapsed() > options.max_backoff {
            attempts.reset();
        }
        let delay = attempts.next_delay();
        tracing::warn!(service = %name, error = %err, retry_in = ?delay,
            "registry watch failed; serving cached entries while reopening it");
        tokio::time::sleep(delay).await;
    }
}

/// Opens a new watch on `name` and fetches the entry again; `None` when the
/// cache is gone.
async fn reopen<R: Registry>(
    cache: &Weak<Shared<R>>,
    name: &str,
    slot: &Slot,
) -> Option<Result<WatchStream>> {
    let shared = cache.upgrade()?;
    let stream = match shared.backend.watch(&WatchOptions::service(name)).await {
        Ok(stream) => stream,
        Err(err) => return Some(Err(err)),
    };
    let generation = slot.generation();
    let fetched = match shared.backend.get_service(name).await {
        Ok(services) => services,
        Err(err) if err.kind() == ErrorKind::NotFound => Vec::new(),
        Err(err) => return Some(Err(err)),
    };
    slot.store_fetched(generation, fetched);
    Some(Ok(stream))
}

/// Applies events until the stream fails or ends, returning why it stopped.
async fn apply_events(mut stream: WatchStream, name: &str, slot: &Slot) -> Error {
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => slot.apply(name, &event),
            Err(err) => return err,
        }
    }
    Error::unavailable("registry watch ended")
}

#[async_trait]
impl<R: Registry> Registry for CachingRegistry<R> {
    fn scheme(&self) -> &'static str {
        self.shared.backend.scheme()
    }

    fn capabilities(&self) -> Capabilities {
        self.shared.backend.capabilities()
    }

    async fn register(&self, service: &Service, options: &RegisterOptions) -> Result<()> {
        self.shared.backend.register(service, options).await?;
        if let Some(slot) = self.shared.existing_slot(&service.name) {
            lock(&slot.entry).upsert(service);
        }
        Ok(())
    }

    async fn deregister(&self, service: &Service) -> Result<()> {
        self.shared.backend.deregister(service).await?;
        if let Some(slot) = self.shared.existing_slot(&service.name) {
            lock(&slot.entry).remove(service);
        }
        Ok(())
    }

    async fn get_service(&self, name: &str) -> Result<Vec<Service>> {
        self.get_service_shared(name)
            .await
            .map(Arc::unwrap_or_clone)
    }

    async fn list_services(&self) -> Result<Vec<Service>> {
        self.shared.backend.list_services().await
    }

    async fn watch(&self, options: &WatchOptions) -> Result<WatchStream> {
        self.shared.backend.watch(options).await
    }
}

impl<R: Registry> CachingRegistry<R> {
    /// Like [`get_service`](Registry::get_service), but shares the cached
    /// answer instead of copying it: for callers that look a service up on
    /// every call and only read the answer, such as a client picking a node.
    pub async fn get_service_shared(&self, name: &str) -> Result<Arc<Vec<Service>>> {
        let entry_ttl = self.shared.options.entry_ttl;
        let slot = self.shared.slot(name);
        if let Some(hit) = slot.fresh(name, entry_ttl) {
            return hit;
        }
        let _fetching = slot.fetching.lock().await;
        if let Some(hit) = slot.fresh(name, entry_ttl) {
            return hit;
        }
        self.fetch(name, &slot).await
    }
}

#[cfg(all(test, feature = "memory"))]
mod tests {
    use std::{
        future::Future,
        sync::atomic::{AtomicUsize, Ordering},
    };

    use futures::stream;
    use tokio::{sync::watch, time::timeout};

    use super::*;
    use crate::{MemoryRegistry, Node};

    const WAIT: Duration = Duration::from_secs(10);

    /// A memory registry that counts lookups and open watches, and can be
    /// switched to fail: lookups and new watches then fail with `Unavailable`
    /// and open watches end with that error.
    #[derive(Debug, Clone)]
    struct Flaky {
        inner: MemoryRegistry,
        lookups: Arc<AtomicUsize>,
        open_watches: Arc<AtomicUsize>,
        failing: Arc<watch::Sender<bool>>,
    }

    impl Flaky {
        fn new() -> Flaky {
            Flaky {
                inner: MemoryRegistry::new(),
                lookups: Arc::default(),
                open_watches: Arc::default(),
                failing: Arc::new(watch::channel(false).0),
            }
        }

        fn fail(&self, failing: bool) {
            self.failing.send_replace(failing);
        }

        fn is_failing(&self) -> bool {
            *self.failing.borrow()
        }

        fn lookups(&self) -> usize {
            self.lookups.load(Ordering::SeqCst)
        }
    }

    /// Counts a watch as open for as long as it lives.
    struct OpenWatch(Arc<AtomicUsize>);

    impl Drop for OpenWatch {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[async_trait]
    impl Registry for Flaky {
        fn scheme(&self) -> &'static str {
            "flaky"
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::all()
        }
        async fn register(&self, service: &Service, options: &RegisterOptions) -> Result<()> {
            self.inner.register(service, options).await
        }
        async fn deregister(&self, service: &Service) -> Result<()> {
            self.inner.deregister(service).await
        }
        async fn get_service(&self, name: &str) -> Result<Vec<Service>> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            if self.is_failing() {
                return Err(Error::unavailable("switched off"));
            }
            self.inner.get_service(name).await
        }
        async fn list_services(&self) -> Result<Vec<Service>> {
            self.inner.list_services().await
        }
        async fn watch(&self, options: &WatchOptions) -> Result<WatchStream> {
            if self.is_failing() {
                return Err(Error::unavailable("switched off"));
            }
            let events = self.inner.watch(options).await?;
            self.open_watches.fetch_add(1, Ordering::SeqCst);
            let open = OpenWatch(Arc::clone(&self.open_watches));
            let mut failing = self.failing.subscribe();
            let switched_off = async move {
                let _ = failing.wait_for(|failing| *failing).await;
            };
            let failure = stream::once(async move {
                drop(open);
                Err(Error::unavailable("switched off"))
            });
            Ok(events
                .take_until(Box::pin(switched_off))
                .chain(failure)
                .boxed())
        }
    }

    fn greeter(nodes: &[&str]) -> Service {
        nodes.iter().fold(Service::new("greeter"), |service, id| {
            service.with_node(Node::new(*id, "127.0.0.1:1"))
        })
    }

    fn ids(services: &[Service]) -> Vec<String> {
        let mut ids: Vec<_> = services
            .iter()
            .flat_map(|s| s.nodes.iter().map(|n| n.id.clone()))
            .collect();
        ids.sort();
        ids
    }

    async fn wait_until<F, Fut>(what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let waited = timeout(WAIT, async {
            while !check().await {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(waited.is_ok(), "{what}: not within {WAIT:?}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn hits_are_served_without_asking_the_backend() {
        let backend = Flaky::new();
        backend
            .register(&greeter(&["a"]), &RegisterOptions::default())
            .await
            .unwrap();
        let cache = CachingRegistry::new(backend.clone());
        for _ in 0..10 {
            assert_eq!(ids(&cache.get_service("greeter").await.unwrap()), ["a"]);
        }
        assert_eq!(backend.lookups(), 1);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_watch_keeps_the_entry_fresh() {
        let backend = Flaky::new();
        backend
            .register(&greeter(&["a"]), &RegisterOptions::default())
            .await
            .unwrap();
        let cache = CachingRegistry::new(backend.clone());
        assert_eq!(ids(&cache.get_service("greeter").await.unwrap()), ["a"]);

        // Registered behind the cache's back, straight on the backend.
        backend
            .register(&greeter(&["b"]), &RegisterOptions::default())
            .await
            .unwrap();
        wait_until("the new node reaches the cache", || async {
            ids(&cache.get_service("greeter").await.unwrap()) == ["a", "b"]
        })
        .await;

        backend.deregister(&greeter(&["a"])).await.unwrap();
        wait_until("the removal reaches the cache", || async {
            ids(&cache.get_service("greeter").await.unwrap()) == ["b"]
        })
        .await;
        assert_eq!(backend.lookups(), 1, "every answer came from the cache");

        // With no node left the cache asks the backend rather than trust an
        // entry that may be between a Delete and a Create.
        backend.deregister(&greeter(&["b"])).await.unwrap();
        wait_until("the last removal reaches the backend's answer", || async {
            cache
                .get_service("greeter")
                .await
                .is_err_and(|err| err.kind() == ErrorKind::NotFound)
        })
        .await;
        assert!(
            backend.lookups() > 1,
            "an empty entry is checked with the backend"
        );
    }

    /// The window a watch-fed cache has: its own deregistration emptied the
    /// entry, and the backend already holds the replacement whose `Create`
    /// the watch has not delivered yet. On a current-thread runtime the
    /// follower cannot run between the register and the lookup, so the
    /// lookup sees exactly that window.
    #[tokio::test(flavor = "current_thread")]
    async fn a_replaced_node_is_never_reported_missing() {
        let backend = Flaky::new();
        backend
            .register(&greeter(&["old"]), &RegisterOptions::default())
            .await
            .unwrap();
        let cache = CachingRegistry::new(backend.clone());
        assert_eq!(ids(&cache.get_service("greeter").await.unwrap()), ["old"]);
        wait_until("the cache follows the name", || async {
            cache
                .shared
                .existing_slot("greeter")
                .is_some_and(|slot| lock(&slot.entry).watching)
        })
        .await;

        cache.deregister(&greeter(&["old"])).await.unwrap();
        backend
            .register(&greeter(&["new"]), &RegisterOptions::default())
            .await
            .unwrap();
        assert_eq!(
            ids(&cache.get_service("greeter").await.unwrap()),
            ["new"],
            "the replacement is found, not reported missing"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_stale_entry_is_served_when_the_backend_fails() {
        let backend = Flaky::new();
        backend
            .register(&greeter(&["a"]), &RegisterOptions::default())
            .await
            .unwrap();
        // With a zero TTL every lookup goes to the backend once the watch is down.
        let cache = CachingRegistry::builder(backend.clone())
            .entry_ttl(Some(Duration::ZERO))
            .build();
        assert_eq!(ids(&cache.get_service("greeter").await.unwrap()), ["a"]);

        backend.fail(true);
        wait_until("a lookup reaches the failing backend", || async {
            let found = cache.get_service("greeter").await;
            assert_eq!(ids(&found.unwrap()), ["a"], "the stale entry is served");
            backend.lookups() > 1
        })
        .await;
        assert_eq!(ids(&cache.get_service("greeter").await.unwrap()), ["a"]);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_watch_is_reopened_and_the_entry_refetched_after_a_failure() {
        let backend = Flaky::new();
        backend
            .register(&greeter(&["a"]), &RegisterOptions::default())
            .await
            .unwrap();
        let cache = CachingRegistry::builder(backend.clone())
            .entry_ttl(None)
            .watch_backoff(Duration::from_millis(10), Duration::from_millis(50))
            .build();
        assert_eq!(ids(&cache.get_service("greeter").await.unwrap()), ["a"]);

        backend.fail(true);
        wait_until("the watch notices the failure", || async {
            backend.open_watches.load(Ordering::SeqCst) == 0
        })
        .await;
        // Missed by the cache: its watch is down.
        backend
            .register(&greeter(&["b"]), &RegisterOptions::default())
            .await
            .unwrap();
        backend.fail(false);
        wait_until(
            "the refetch after reopening brings the missed node",
            || async { ids(&cache.get_service("greeter").await.unwrap()) == ["a", "b"] },
        )
        .await;
        // And the reopened watch delivers later changes.
        backend
            .register(&greeter(&["c"]), &RegisterOptions::default())
            .await
            .unwrap();
        wait_until("the reopened watch applies changes", || async {
            ids(&cache.get_service("greeter").await.unwrap()) == ["a", "b", "c"]
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn with_nothing_cached_the_backend_error_is_returned() {
        let backend = Flaky::new();
        let cache = CachingRegistry::new(backend.clone());
        assert_eq!(
            cache.get_service("greeter").await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
        backend
            .register(&greeter(&["a"]), &RegisterOptions::default())
            .await
            .unwrap();
        backend.fail(true);
        assert_eq!(
            cache.get_service("greeter").await.unwrap_err().kind(),
            ErrorKind::Unavailable
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn own_writes_are_visible_at_once() {
        let backend = Flaky::new();
        let cache = CachingRegistry::new(backend.clone());
        cache
            .register(&greeter(&["a"]), &RegisterOptions::default())
            .await
            .unwrap();
        assert_eq!(ids(&cache.get_service("greeter").await.unwrap()), ["a"]);
        cache
            .register(&greeter(&["b"]), &RegisterOptions::default())
            .await
            .unwrap();
        assert_eq!(
            ids(&cache.get_service("greeter").await.unwrap()),
            ["a", "b"]
        );
        cache.deregister(&greeter(&["a"])).await.unwrap();
        assert_eq!(ids(&cache.get_service("greeter").await.unwrap()), ["b"]);
        assert_eq!(backend.lookups(), 1);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn shared_answers_are_snapshots_that_later_changes_leave_alone() {
        let backend = Flaky::new();
        let cache = CachingRegistry::new(backend.clone());
        cache
            .register(&greeter(&["a"]), &RegisterOptions::default())
            .await
            .unwrap();
        let first = cache.get_service_shared("greeter").await.unwrap();
        let again = cache.get_service_shared("greeter").await.unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "a hit shares the cached answer"
        );
        cache
            .register(&greeter(&["b"]), &RegisterOptions::default())
            .await
            .unwrap();
        assert_eq!(ids(&first), ["a"], "a handed-out answer does not change");
        let after = cache.get_service_shared("greeter").await.unwrap();
        assert_eq!(ids(&after), ["a", "b"]);
        assert_eq!(
            ids(&cache.get_service("greeter").await.unwrap()),
            ["a", "b"]
        );
        assert_eq!(backend.lookups(), 1);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn dropping_the_cache_stops_its_watches() {
        let backend = Flaky::new();
        backend
            .register(&greeter(&["a"]), &RegisterOptions::default())
            .await
            .unwrap();
        let cache = CachingRegistry::new(backend.clone());
        let clone = cache.clone();
        cache.get_service("greeter").await.unwrap();
        assert_eq!(backend.open_watches.load(Ordering::SeqCst), 1);

        drop(cache);
        assert_eq!(
            backend.open_watches.load(Ordering::SeqCst),
            1,
            "a clone keeps the cache alive"
        );
        drop(clone);
        wait_until("the background watch is dropped", || async {
            backend.open_watches.load(Ordering::SeqCst) == 0
        })
        .await;
    }
}
