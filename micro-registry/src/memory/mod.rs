//! The in-process registry: services in one process find each other with no
//! server and no network.
//!
//! [`MemoryRegistry::shared()`] is the process-wide instance behind
//! `MICRO_REGISTRY=memory`; [`MemoryRegistry::new()`] makes an isolated one
//! (tests, embedding several independent systems in one process).
//!
//! # Expiry
//!
//! A registration with a TTL that is not renewed in time is removed and every
//! watcher receives a `Delete` for it at the moment it expires. A background
//! task does this; it is started on the tokio runtime of the first
//! [`register`](Registry::register) or [`watch`](Registry::watch) call (so
//! constructing a registry needs no runtime), started again if that runtime
//! shuts down while the registry lives on, and ends when the registry is
//! dropped. Lookups also drop expired registrations themselves, so they never
//! return an expired node even when no runtime runs the task.
//!
//! # Watch buffering
//!
//! Every watcher has a bounded buffer ([`MemoryConfig::watch_capacity`]). A
//! watcher that falls further behind does not block registrations and does not
//! silently miss events: its stream yields one `ResourceExhausted` error saying
//! how many events it missed, then continues with the events that followed.
//! A consumer seeing that error should resynchronise with
//! [`get_service`](Registry::get_service).

mod config;
mod store;

use std::{
    fmt,
    future::ready,
    sync::{
        Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak,
        atomic::{AtomicBool, Ordering},
    },
};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::{
    sync::{Notify, broadcast},
    time::Instant,
};
use tokio_stream::wrappers::{BroadcastStream, errors::BroadcastStreamRecvError};

pub use self::config::MemoryConfig;
use self::store::Store;
use crate::{
    Capabilities, Error, Event, RegisterOptions, Registry, Result, Service, WatchOptions,
    WatchStream,
};

/// The in-process registry. Cloning gives another handle to the same registrations.
///
/// ```
/// use micro_registry::{memory::MemoryRegistry, Node, RegisterOptions, Registry, Service};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> micro_registry::Result<()> {
/// let registry = MemoryRegistry::new();
/// let greeter = Service::new("greeter").with_node(Node::new("greeter-1", "127.0.0.1:4123"));
/// registry.register(&greeter, &RegisterOptions::default()).await?;
/// assert_eq!(registry.get_service("greeter").await?[0].nodes.len(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MemoryRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    events: broadcast::Sender<Event>,
    sweeper: Arc<Sweeper>,
}

struct State {
    store: Store,
    /// When the expiry task will next wake by itself. Kept under the same lock as
    /// the deadlines so a registration can tell, without racing the task, whether
    /// its deadline comes earlier and the task must be woken.
    sweep_at: Option<Instant>,
}

/// What the expiry task shares with the registry without keeping it alive.
#[derive(Debug, Default)]
struct Sweeper {
    /// Wakes the task when an earlier deadline appears or the registry is dropped.
    wake: Notify,
    /// Whether a task is alive; cleared when its future is dropped, including by a
    /// runtime shutting down, so the next call starts a new one.
    running: AtomicBool,
}

impl MemoryRegistry {
    /// A new, isolated registry with default settings.
    pub fn new() -> MemoryRegistry {
        MemoryRegistry::from_config(&MemoryConfig::default())
    }

    /// The process-wide registry: every call returns a handle to the same
    /// registrations, so services started separately in one process find each
    /// other. This is what `MICRO_REGISTRY=memory` selects.
    pub fn shared() -> MemoryRegistry {
        static SHARED: OnceLock<MemoryRegistry> = OnceLock::new();
        SHARED.get_or_init(MemoryRegistry::new).clone()
    }

    /// A builder for a registry with non-default settings.
    pub fn builder() -> MemoryRegistryBuilder {
        MemoryRegistryBuilder {
            config: MemoryConfig::default(),
        }
    }

    /// A new, isolated registry with these settings.
    pub fn from_config(config: &MemoryConfig) -> MemoryRegistry {
        let (events, _) = broadcast::channel(config.watch_capacity.max(1));
        MemoryRegistry {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    store: Store::default(),
                    sweep_at: None,
                }),
                events,
                sweeper: Arc::new(Sweeper::default()),
            }),
        }
    }

    /// Starts the expiry task on the current runtime unless one is alive.
    fn ensure_sweeper(&self) {
        let sweeper = &self.inner.sweeper;
        if sweeper.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            sweeper.running.store(false, Ordering::Release);
            return;
        };
        let guard = RunningGuard(Arc::clone(sweeper));
        runtime.spawn(expire_until_dropped(Arc::downgrade(&self.inner), guard));
    }
}

impl Default for MemoryRegistry {
    fn default() -> MemoryRegistry {
        MemoryRegistry::new()
    }
}

impl fmt::Debug for MemoryRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRegistry")
            .field("services", &self.inner.lock().store.service_count())
            .field("watchers", &self.inner.events.receiver_count())
            .finish()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the store half-updated in a
        // way later calls would trip over, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Expires what is due, runs `change` and publishes the events both produced
    /// while the lock is still held, so every watcher sees changes in the order
    /// they happened.
    fn change<T>(&self, change: impl FnOnce(&mut State, &mut Vec<Event>) -> T) -> T {
        let mut state = self.lock();
        let mut events = Vec::new();
        state.store.expire(Instant::now(), &mut events);
        let result = change(&mut state, &mut events);
        for event in events {
            // An error only means nobody is watching.
            let _ = self.events.send(event);
        }
        result
    }

    /// Expires what is due and records the next deadline as the expiry task's
    /// wake-up time.
    fn expire_and_plan(&self) -> Option<Instant> {
        self.change(|state, _| {
            state.sweep_at = state.store.next_deadline();
            state.sweep_at
        })
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Lets a task waiting with no deadline notice the registry is gone.
        self.sweeper.wake.notify_one();
    }
}

/// Marks the expiry task dead when its future is dropped, even if never polled.
struct RunningGuard(Arc<Sweeper>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Release);
    }
}

/// Expires registrations at their deadlines until the registry is dropped.
///
/// Holds the registry only while expiring, never while waiting, so it does not
/// keep the registry alive.
async fn expire_until_dropped(registry: Weak<Inner>, guard: RunningGuard) {
    let sweeper = &guard.0;
    loop {
        let next = match registry.upgrade() {
            Some(inner) => inner.expire_and_plan(),
            None => return,
        };
        match next {
            Some(deadline) => {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => {}
                    () = sweeper.wake.notified() => {}
                }
            }
            None => sweeper.wake.notified().await,
        }
    }
}

#[async_trait]
impl Registry for MemoryRegistry {
    fn scheme(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }

    async fn register(&self, service: &Service, options: &RegisterOptions) -> Result<()> {
        crate::validate_registration(service, options)?;
        self.ensure_sweeper();
        let expires_at = options.ttl.map(|ttl| Instant::now() + ttl);
        let wake_sweeper = self.inner.change(|state, events| {
            state.store.register(service, expires_at, events);
            expires_at.is_some_and(|deadline| state.sweep_at.is_none_or(|at| deadline < at))
        });
        if wake_sweeper {
            self.inner.sweeper.wake.notify_one();
        }
        Ok(())
    }

    async fn deregister(&self, service: &Service) -> Result<()> {
        self.inner
            .change(|state, events| state.store.deregister(service, events));
        Ok(())
    }

    async fn get_service(&self, name: &str) -> Result<Vec<Service>> {
        let services = self.inner.change(|state, _| state.store.get(name));
        if services.is_empty() {
            return Err(Error::not_found(format!("no service named {name:?}")));
        }
        Ok(services)
    }

    async fn list_services(&self) -> Result<Vec<Service>> {
        Ok(self.inner.change(|state, _| state.store.list()))
    }

    async fn watch(&self, options: &WatchOptions) -> Result<WatchStream> {
        self.ensure_sweeper();
        let service = options.service.clone();
        let events = BroadcastStream::new(self.inner.events.subscribe());
        Ok(events
            .filter_map(move |item| {
                ready(match item {
                    Ok(event) => service
                        .as_ref()
                        .is_none_or(|name| *name == event.service.name)
                        .then_some(Ok(event)),
                    Err(BroadcastStreamRecvError::Lagged(missed)) => {
                        Some(Err(Error::resource_exhausted(format!(
                            "watcher fell behind and missed {missed} events; \
                             resynchronise with get_service"
                        ))))
                    }
                })
            })
            .boxed())
    }
}

/// Builds a [`MemoryRegistry`] with non-default settings.
#[derive(Debug, Clone)]
pub struct MemoryRegistryBuilder {
    config: MemoryConfig,
}

impl MemoryRegistryBuilder {
    /// Starts from these settings.
    pub fn config(mut self, config: MemoryConfig) -> MemoryRegistryBuilder {
        self.config = config;
        self
    }

    /// Sets [`MemoryConfig::watch_capacity`].
    pub fn watch_capacity(mut self, capacity: usize) -> MemoryRegistryBuilder {
        self.config.watch_capacity = capacity;
        self
    }

    /// The registry.
    pub fn build(self) -> MemoryRegistry {
        MemoryRegistry::from_config(&self.config)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;
    use tokio::time::timeout;

    use super::*;
    use crate::{ErrorKind, EventKind, Node};

    const WAIT: Duration = Duration::from_secs(60);

    fn service(name: &str, node: &str) -> Service {
        Service::new(name).with_node(Node::new(node, "127.0.0.1:1"))
    }

    async fn next(stream: &mut WatchStream) -> Result<Event> {
        timeout(WAIT, stream.next())
            .await
            .expect("no watch item in time")
            .expect("watch ended")
    }

    #[tokio::test(start_paused = true)]
    async fn expiry_emits_delete_without_any_other_call() {
        let registry = MemoryRegistry::new();
        let mut watch = registry.watch(&WatchOptions::default()).await.unwrap();
        registry
            .register(
                &service("greeter", "a"),
                &RegisterOptions::ttl(Duration::from_secs(5)),
            )
            .await
            .unwrap();
        assert_eq!(next(&mut watch).await.unwrap().kind, EventKind::Create);

        let started = Instant::now();
        let deleted = next(&mut watch).await.unwrap();
        assert_eq!(deleted.kind, EventKind::Delete);
        assert_eq!(deleted.service.nodes[0].id, "a");
        assert!(started.elapsed() >= Duration::from_secs(5));
        let err = registry.get_service("greeter").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }

    #[tokio::test(start_paused = true)]
    async fn renewal_extends_the_ttl_without_an_event() {
        let registry = MemoryRegistry::new();
        let ttl = RegisterOptions::ttl(Duration::from_secs(10));
        registry
            .register(&service("greeter", "a"), &ttl)
            .await
            .unwrap();
        let mut watch = registry.watch(&WatchOptions::default()).await.unwrap();

        tokio::time::advance(Duration::from_secs(6)).await;
        registry
            .register(&service("greeter", "a"), &ttl)
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(registry.get_service("greeter").await.unwrap().len(), 1);

        // The first item must be the expiry of the renewed registration, not an
        // event for the renewal itself.
        let deleted = next(&mut watch).await.unwrap();
        assert_eq!(deleted.kind, EventKind::Delete);
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_wakes_the_sweeper() {
        let registry = MemoryRegistry::new();
        let mut watch = registry.watch(&WatchOptions::default()).await.unwrap();
        registry
            .register(
                &service("slow", "a"),
                &RegisterOptions::ttl(Duration::from_secs(3600)),
            )
            .await
            .unwrap();
        // Let the sweeper go to sleep until the one-hour deadline.
        tokio::task::yield_now().await;
        registry
            .register(
                &service("fast", "b"),
                &RegisterOptions::ttl(Duration::from_secs(1)),
            )
            .await
            .unwrap();
        let started = Instant::now();
        let mut deleted = None;
        while deleted.is_none() {
            let event = next(&mut watch).await.unwrap();
            if event.kind == EventKind::Delete {
                deleted = Some(event);
            }
        }
        assert_eq!(deleted.unwrap().service.name, "fast");
        assert!(started.elapsed() < Duration::from_secs(3600));
    }

    #[tokio::test]
    async fn lagging_watcher_gets_resource_exhausted_then_continues() {
        let registry = MemoryRegistry::builder().watch_capacity(2).build();
        let mut watch = registry.watch(&WatchOptions::default()).await.unwrap();
        for i in 0..5 {
            registry
                .register(
                    &service("greeter", &i.to_string()),
                    &RegisterOptions::default(),
                )
                .await
                .unwrap();
        }
        let err = next(&mut watch).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ResourceExhausted);
        let event = next(&mut watch).await.unwrap();
        assert_eq!(event.kind, EventKind::Create);
        assert_eq!(event.service.nodes[0].id, "3");
    }

    #[tokio::test]
    async fn watch_ends_when_the_registry_is_dropped() {
        let registry = MemoryRegistry::new();
        let mut watch = registry.watch(&WatchOptions::default()).await.unwrap();
        drop(registry);
        assert!(timeout(WAIT, watch.next()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn sweeper_stops_when_the_registry_is_dropped() {
        let registry = MemoryRegistry::new();
        registry
            .register(
                &service("greeter", "a"),
                &RegisterOptions::ttl(Duration::from_secs(3600)),
            )
            .await
            .unwrap();
        let sweeper = Arc::clone(&registry.inner.sweeper);
        let inner = Arc::downgrade(&registry.inner);
        assert!(sweeper.running.load(Ordering::Acquire));
        drop(registry);
        assert!(inner.upgrade().is_none());
        timeout(WAIT, async {
            while sweeper.running.load(Ordering::Acquire) {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("sweeper still running after the registry was dropped");
    }

    #[test]
    fn sweeper_restarts_on_a_new_runtime() {
        let registry = MemoryRegistry::new();
        let ttl = RegisterOptions::ttl(Duration::from_millis(50));
        let first = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        first.block_on(async {
            registry
                .register(&service("a", "1"), &RegisterOptions::default())
                .await
                .unwrap();
        });
        drop(first);
        assert!(!registry.inner.sweeper.running.load(Ordering::Acquire));

        let second = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        second.block_on(async {
            let mut watch = registry.watch(&WatchOptions::service("b")).await.unwrap();
            registry.register(&service("b", "1"), &ttl).await.unwrap();
            assert_eq!(next(&mut watch).await.unwrap().kind, EventKind::Create);
            assert_eq!(next(&mut watch).await.unwrap().kind, EventKind::Delete);
        });
    }

    #[test]
    fn lookups_skip_expired_nodes_without_a_runtime() {
        let registry = MemoryRegistry::new();
        let lookup = futures::executor::block_on(async {
            registry
                .register(
                    &service("greeter", "a"),
                    &RegisterOptions::ttl(Duration::from_millis(1)),
                )
                .await
                .unwrap();
            std::thread::sleep(Duration::from_millis(5));
            registry.get_service("greeter").await
        });
        assert_eq!(lookup.unwrap_err().kind(), ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn shared_handles_see_the_same_registrations() {
        let name = format!("shared-{:016x}", rand::random::<u64>());
        MemoryRegistry::shared()
            .register(&service(&name, "a"), &RegisterOptions::default())
            .await
            .unwrap();
        assert_eq!(
            MemoryRegistry::shared().get_service(&name).await.unwrap()[0].nodes[0].id,
            "a"
        );
        assert_eq!(
            MemoryRegistry::new()
                .get_service(&name)
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );
        MemoryRegistry::shared()
            .deregister(&service(&name, "a"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn invalid_registrations_are_rejected() {
        let registry = MemoryRegistry::new();
        let cases = [
            (Service::new("empty"), RegisterOptions::default()),
            (service("", "a"), RegisterOptions::default()),
            (service("greeter", ""), RegisterOptions::default()),
            (
                service("greeter", "a"),
                RegisterOptions::ttl(Duration::ZERO),
            ),
        ];
        for (service, options) in cases {
            let err = registry.register(&service, &options).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{service:?}");
        }
        assert!(registry.list_services().await.unwrap().is_empty());
    }

    #[test]
    fn config_defaults_and_scheme() {
        let config: MemoryConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, MemoryConfig::default());
        assert!(serde_json::from_str::<MemoryConfig>(r#"{"nope":1}"#).is_err());
        let registry = MemoryRegistry::builder().config(config).build();
        assert_eq!(registry.scheme(), "memory");
        assert_eq!(registry.capabilities(), Capabilities::all());
    }
}
