//! The behaviour every [`Registry`] backend must show, as one `async fn` per
//! case taking `&dyn Registry`, and [`registry_conformance_tests!`](crate::registry_conformance_tests)
//! to run them all as separately named tests.
//!
//! ```
//! // In a backend's tests (needs tokio with the `macros` and `rt-multi-thread` features):
//! mod memory {
//!     micro_registry::registry_conformance_tests!(async { micro_registry::MemoryRegistry::new() });
//! }
//! # fn main() {}
//! ```
//!
//! Every case works under a fresh random prefix of service names, so backends
//! sharing one server (etcd, NATS, ...) can run cases in parallel, and
//! deregisters what it registered. Cases needing TTLs or watches are skipped,
//! with a printed message, when [`Registry::capabilities`] says the backend lacks them.
//!
//! The contract the cases hold a backend to, beyond the trait documentation:
//! - a caller reads its own writes: a lookup after `register` or `deregister`
//!   returned reflects it;
//! - once [`Registry::watch`] has returned, the stream sees every later change to
//!   the services it follows, in order;
//! - changes that happen on their own (TTL expiry) become visible to lookups
//!   soon after the watch reports them, not necessarily at once;
//! - a registration with no nodes or an empty name is `InvalidArgument`.

use std::{collections::BTreeSet, future::Future, time::Duration};

use futures::{StreamExt, future::join_all, stream};

use crate::{
    Endpoint, ErrorKind, Event, EventKind, Node, RegisterOptions, Registry, Service, WatchOptions,
    WatchStream,
};

/// How long a case waits for an event or a change it expects.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(15);

/// The TTL the expiry case registers with.
pub const SHORT_TTL: Duration = Duration::from_millis(300);

/// How long the expiry case waits for a TTL to lapse: generous, because server
/// backends round TTLs up (etcd leases count whole seconds).
pub const EXPIRY_TIMEOUT: Duration = Duration::from_secs(30);

/// A random prefix for the service names of one case.
#[derive(Debug)]
struct Namespace {
    prefix: String,
}

impl Namespace {
    fn new() -> Namespace {
        Namespace {
            prefix: format!("conf-{:016x}", rand::random::<u64>()),
        }
    }

    fn name(&self, service: &str) -> String {
        format!("{}-{service}", self.prefix)
    }

    fn owns(&self, name: &str) -> bool {
        name.starts_with(&self.prefix)
    }
}

fn service(name: &str, version: &str, nodes: &[&str]) -> Service {
    nodes.iter().enumerate().fold(
        Service::new(name).with_version(version),
        |service, (i, id)| service.with_node(Node::new(*id, format!("127.0.0.1:{}", 40000 + i))),
    )
}

fn node_ids(services: &[Service]) -> BTreeSet<String> {
    services
        .iter()
        .flat_map(|service| service.nodes.iter().map(|node| node.id.clone()))
        .collect()
}

fn ids(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|id| (*id).to_owned()).collect()
}

async fn register(registry: &dyn Registry, service: &Service) {
    registry
        .register(service, &RegisterOptions::default())
        .await
        .unwrap_or_else(|err| panic!("registering {}: {err}", service.name));
}

async fn deregister(registry: &dyn Registry, service: &Service) {
    registry
        .deregister(service)
        .await
        .unwrap_or_else(|err| panic!("deregistering {}: {err}", service.name));
}

async fn lookup(registry: &dyn Registry, name: &str) -> Vec<Service> {
    registry
        .get_service(name)
        .await
        .unwrap_or_else(|err| panic!("looking up {name}: {err}"))
}

async fn watch(registry: &dyn Registry, options: &WatchOptions) -> WatchStream {
    registry
        .watch(options)
        .await
        .unwrap_or_else(|err| panic!("opening a watch: {err}"))
}

/// The next event, failing the case if none arrives within `within`.
async fn next_event(stream: &mut WatchStream, within: Duration) -> Event {
    match tokio::time::timeout(within, stream.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(err))) => panic!("watch failed: {err}"),
        Ok(None) => panic!("watch ended unexpectedly"),
        Err(_) => panic!("no watch event within {within:?}"),
    }
}

/// The next event about a service in `namespace`, skipping other services'.
async fn next_event_in(stream: &mut WatchStream, namespace: &Namespace) -> Event {
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = next_event(stream, left).await;
        if namespace.owns(&event.service.name) {
            return event;
        }
    }
}

fn assert_event(event: &Event, kind: EventKind, name: &str, node: &str) {
    assert_eq!(event.kind, kind, "unexpected event {event:?}");
    assert_eq!(
        event.service.name, name,
        "event for another service: {event:?}"
    );
    let nodes: Vec<_> = event.service.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(
        nodes,
        [node],
        "an event carries exactly its one node: {event:?}"
    );
}

/// Waits until `check` holds, failing the case if it does not within [`EVENT_TIMEOUT`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let waited = tokio::time::timeout(EVENT_TIMEOUT, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{what}: not within {EVENT_TIMEOUT:?}");
}

fn skip(registry: &dyn Registry, case: &str, missing: &str) {
    println!(
        "skipping registry conformance case {case}: the {} backend does not support {missing}",
        registry.scheme()
    );
}

/// A registered service is found with exactly what was registered: version,
/// metadata, endpoints and nodes with their metadata; `list_services` shows it.
pub async fn register_then_lookup(registry: &dyn Registry) {
    let ns = Namespace::new();
    let greeter = Service::new(ns.name("greeter"))
        .with_version("1.0.0")
        .with_metadata("team", "core")
        .with_endpoint(Endpoint {
            name: "Greeter.Hello".to_owned(),
            request: Some("HelloRequest".to_owned()),
            response: Some("HelloReply".to_owned()),
            metadata: [("stream", "none")].into_iter().collect(),
            // Every backend must carry the schemas a service describes its
            // messages with (micro's `schema` feature).
            request_schema: Some(serde_json::json!({
                "type": "object",
                "properties": { "name": { "type": "string" } },
                "required": ["name"]
            })),
            response_schema: Some(serde_json::json!({ "type": "object" })),
        })
        .with_node(Node::new("greeter-1", "127.0.0.1:4001").with_metadata("zone", "a"));
    register(registry, &greeter).await;

    assert_eq!(lookup(registry, &greeter.name).await, vec![greeter.clone()]);
    let listed = registry.list_services().await.expect("listing services");
    assert!(
        listed.contains(&greeter),
        "list_services lacks the registered service"
    );

    deregister(registry, &greeter).await;
}

/// Registering the same node again renews it: still one node, and no watch event.
pub async fn reregister_is_idempotent(registry: &dyn Registry) {
    let ns = Namespace::new();
    let name = ns.name("greeter");
    let greeter = service(&name, "1", &["node-1"]);
    let mut events = if registry.capabilities().watch {
        Some(watch(registry, &WatchOptions::service(&name)).await)
    } else {
        skip(registry, "reregister_is_idempotent (events)", "watch");
        None
    };

    for _ in 0..3 {
        register(registry, &greeter).await;
    }
    let found = lookup(registry, &name).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].nodes, greeter.nodes, "no duplicate nodes");

    let sentinel = service(&name, "1", &["sentinel"]);
    register(registry, &sentinel).await;
    if let Some(events) = &mut events {
        assert_event(
            &next_event(events, EVENT_TIMEOUT).await,
            EventKind::Create,
            &name,
            "node-1",
        );
        // Any event for the re-registrations would arrive before this one.
        assert_event(
            &next_event(events, EVENT_TIMEOUT).await,
            EventKind::Create,
            &name,
            "sentinel",
        );
    }

    deregister(registry, &sentinel).await;
    deregister(registry, &greeter).await;
}

/// Registering a known node with a new address updates it in place.
pub async fn reregister_with_changes_updates_node(registry: &dyn Registry) {
    let ns = Namespace::new();
    let name = ns.name("greeter");
    register(registry, &service(&name, "1", &["node-1"])).await;
    let moved = Service::new(&name)
        .with_version("1")
        .with_node(Node::new("node-1", "127.0.0.1:4999"));
    register(registry, &moved).await;

    let found = lookup(registry, &name).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].nodes, moved.nodes);

    deregister(registry, &moved).await;
}

/// Deregistering a node removes only that node; removing the last one makes the
/// service `NotFound`.
pub async fn deregister_removes_node(registry: &dyn Registry) {
    let ns = Namespace::new();
    let name = ns.name("greeter");
    register(registry, &service(&name, "1", &["node-1", "node-2"])).await;
    assert_eq!(
        node_ids(&lookup(registry, &name).await),
        ids(&["node-1", "node-2"])
    );

    deregister(registry, &service(&name, "1", &["node-1"])).await;
    assert_eq!(node_ids(&lookup(registry, &name).await), ids(&["node-2"]));

    deregister(registry, &service(&name, "1", &["node-2"])).await;
    let err = registry
        .get_service(&name)
        .await
        .expect_err("a service without nodes must not be found");
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

/// Looking up a service nobody registered is `NotFound`.
pub async fn unknown_service_is_not_found(registry: &dyn Registry) {
    let ns = Namespace::new();
    let err = registry
        .get_service(&ns.name("nobody"))
        .await
        .expect_err("an unknown service must not be found");
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

/// Deregistering what is not registered succeeds and leaves the rest alone.
pub async fn deregister_unknown_is_ok(registry: &dyn Registry) {
    let ns = Namespace::new();
    let name = ns.name("greeter");
    registry
        .deregister(&service(&ns.name("nobody"), "1", &["ghost"]))
        .await
        .expect("deregistering an unknown service");

    let greeter = service(&name, "1", &["node-1"]);
    register(registry, &greeter).await;
    registry
        .deregister(&service(&name, "1", &["ghost"]))
        .await
        .expect("deregistering an unknown node");
    registry
        .deregister(&service(&name, "2", &["node-1"]))
        .await
        .expect("deregistering a node under an unknown version");
    assert_eq!(node_ids(&lookup(registry, &name).await), ids(&["node-1"]));

    deregister(registry, &greeter).await;
}

/// A registration without nodes or without a name is `InvalidArgument`.
pub async fn register_rejects_invalid(registry: &dyn Registry) {
    let ns = Namespace::new();
    let no_nodes = Service::new(ns.name("empty")).with_version("1");
    let no_name = service("", "1", &["node-1"]);
    for invalid in [no_nodes, no_name] {
        let err = registry
            .register(&invalid, &RegisterOptions::default())
            .await
            .expect_err("an invalid registration must be rejected");
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{invalid:?}");
    }
}

/// A node registered with a short TTL and not renewed disappears: the watcher
/// sees its `Delete` and lookups stop returning it, while a node without a TTL stays.
pub async fn ttl_expiry(registry: &dyn Registry) {
    let capabilities = registry.capabilities();
    if !capabilities.ttl {
        skip(registry, "ttl_expiry", "TTLs");
        return;
    }
    let ns = Namespace::new();
    let name = ns.name("greeter");
    let mut events = if capabilities.watch {
        Some(watch(registry, &WatchOptions::service(&name)).await)
    } else {
        skip(registry, "ttl_expiry (events)", "watch");
        None
    };
    let stays = service(&name, "1", &["stays"]);
    register(registry, &stays).await;
    registry
        .register(
            &service(&name, "1", &["expires"]),
            &RegisterOptions::ttl(SHORT_TTL),
        )
        .await
        .expect("registering with a TTL");

    if let Some(events) = &mut events {
        let deadline = tokio::time::Instant::now() + EXPIRY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = next_event(events, left).await;
            if event.kind == EventKind::Delete {
                assert_event(&event, EventKind::Delete, &name, "expires");
                break;
            }
        }
    }
    eventually("the expired node leaves lookups", || async {
        registry
            .get_service(&name)
            .await
            .is_ok_and(|found| node_ids(&found) == ids(&["stays"]))
    })
    .await;

    deregister(registry, &stays).await;
}

/// A watcher sees `Create`, `Update` and `Delete` for a node, in that order,
/// each carrying the node as it was.
pub async fn watch_sees_create_update_delete_in_order(registry: &dyn Registry) {
    if !registry.capabilities().watch {
        skip(
            registry,
            "watch_sees_create_update_delete_in_order",
            "watch",
        );
        return;
    }
    let ns = Namespace::new();
    let name = ns.name("greeter");
    let mut events = watch(registry, &WatchOptions::service(&name)).await;

    let first = service(&name, "1", &["node-1"]);
    register(registry, &first).await;
    let changed = Service::new(&name)
        .with_version("1")
        .with_node(Node::new("node-1", "127.0.0.1:4999").with_metadata("zone", "b"));
    register(registry, &changed).await;
    deregister(registry, &changed).await;

    let created = next_event(&mut events, EVENT_TIMEOUT).await;
    assert_event(&created, EventKind::Create, &name, "node-1");
    assert_eq!(created.service.nodes, first.nodes);
    let updated = next_event(&mut events, EVENT_TIMEOUT).await;
    assert_event(&updated, EventKind::Update, &name, "node-1");
    assert_eq!(updated.service.nodes, changed.nodes);
    let deleted = next_event(&mut events, EVENT_TIMEOUT).await;
    assert_event(&deleted, EventKind::Delete, &name, "node-1");
    assert_eq!(deleted.service.version, "1");
}

/// A watch on one service sees only that service; a watch on all sees both.
pub async fn watch_filters_by_service(registry: &dyn Registry) {
    if !registry.capabilities().watch {
        skip(registry, "watch_filters_by_service", "watch");
        return;
    }
    let ns = Namespace::new();
    let (a, b) = (ns.name("a"), ns.name("b"));
    let mut only_a = watch(registry, &WatchOptions::service(&a)).await;
    let mut all = watch(registry, &WatchOptions::default()).await;

    let service_b = service(&b, "1", &["node-b"]);
    let service_a = service(&a, "1", &["node-a"]);
    register(registry, &service_b).await;
    register(registry, &service_a).await;

    assert_event(
        &next_event(&mut only_a, EVENT_TIMEOUT).await,
        EventKind::Create,
        &a,
        "node-a",
    );
    assert_event(
        &next_event_in(&mut all, &ns).await,
        EventKind::Create,
        &b,
        "node-b",
    );
    assert_event(
        &next_event_in(&mut all, &ns).await,
        EventKind::Create,
        &a,
        "node-a",
    );

    deregister(registry, &service_a).await;
    deregister(registry, &service_b).await;
}

/// Fifty nodes of one service registered concurrently are all found.
pub async fn concurrent_registrations(registry: &dyn Registry) {
    const NODES: usize = 50;
    let ns = Namespace::new();
    let name = ns.name("greeter");
    let services: Vec<_> = (0..NODES)
        .map(|i| service(&name, "1", &[&format!("node-{i}")]))
        .collect();

    let options = RegisterOptions::default();
    let results = join_all(
        services
            .iter()
            .map(|service| registry.register(service, &options)),
    )
    .await;
    for result in results {
        result.expect("a concurrent registration failed");
    }

    let found = lookup(registry, &name).await;
    assert_eq!(found.len(), 1, "one version");
    assert_eq!(found[0].nodes.len(), NODES, "no node lost or duplicated");
    assert_eq!(node_ids(&found), node_ids(&services));

    for result in join_all(services.iter().map(|service| registry.deregister(service))).await {
        result.expect("a concurrent deregistration failed");
    }
}

/// Two hundred services are all listed.
pub async fn many_services(registry: &dyn Registry) {
    const SERVICES: usize = 200;
    const IN_FLIGHT: usize = 32;
    let ns = Namespace::new();
    let services: Vec<_> = (0..SERVICES)
        .map(|i| service(&ns.name(&format!("svc-{i}")), "1", &["node-1"]))
        .collect();

    stream::iter(&services)
        .for_each_concurrent(IN_FLIGHT, |service| register(registry, service))
        .await;

    let listed: BTreeSet<_> = registry
        .list_services()
        .await
        .expect("listing services")
        .into_iter()
        .filter(|service| ns.owns(&service.name))
        .map(|service| service.name)
        .collect();
    let expected: BTreeSet<_> = services.iter().map(|s| s.name.clone()).collect();
    assert_eq!(listed, expected);
    assert_eq!(
        node_ids(&lookup(registry, &services[SERVICES - 1].name).await),
        ids(&["node-1"])
    );

    stream::iter(&services)
        .for_each_concurrent(IN_FLIGHT, |service| deregister(registry, service))
        .await;
}

/// Versions of one name are kept apart: one `Service` per version, each with
/// its own nodes, in lookups and in listings.
pub async fn multiple_versions(registry: &dyn Registry) {
    let ns = Namespace::new();
    let name = ns.name("greeter");
    let v1 = service(&name, "1.0.0", &["old"]).with_metadata("generation", "one");
    let v2 = service(&name, "2.0.0", &["new-1", "new-2"]).with_metadata("generation", "two");
    register(registry, &v1).await;
    register(registry, &v2).await;

    let mut found = lookup(registry, &name).await;
    found.sort_by(|a, b| a.version.cmp(&b.version));
    assert_eq!(found.len(), 2, "one Service per version: {found:?}");
    assert_eq!(found[0].version, "1.0.0");
    assert_eq!(node_ids(&found[..1]), ids(&["old"]));
    assert_eq!(found[0].metadata.get("generation"), Some("one"));
    assert_eq!(found[1].version, "2.0.0");
    assert_eq!(node_ids(&found[1..]), ids(&["new-1", "new-2"]));
    assert_eq!(found[1].metadata.get("generation"), Some("two"));

    let listed = registry.list_services().await.expect("listing services");
    let versions: BTreeSet<_> = listed
        .iter()
        .filter(|service| service.name == name)
        .map(|service| service.version.as_str())
        .collect();
    assert_eq!(versions, BTreeSet::from(["1.0.0", "2.0.0"]));

    deregister(registry, &v1).await;
    let found = lookup(registry, &name).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].version, "2.0.0");

    deregister(registry, &v2).await;
}

/// Expands into one `#[tokio::test(flavor = "multi_thread")]` per conformance
/// case, each running it against a fresh registry.
///
/// `$make` is an expression evaluating to a future that resolves to the registry
/// (anything implementing [`Registry`]: a backend, `Arc<dyn Registry>`,
/// `Box<dyn Registry>`, a [`CachingRegistry`](crate::CachingRegistry)). It is
/// evaluated once per test; wrap a synchronous constructor in `async { ... }`.
/// With `optional:` before it, the future resolves to an `Option` and `None`
/// ends the case early: for server-backed backends whose test fixture skips
/// (loudly) when the server binary is missing and not required.
/// Invoke it inside a module named after the backend so test names read
/// `memory::ttl_expiry`. The calling crate needs tokio with the `macros` and
/// `rt-multi-thread` features.
///
/// ```
/// use micro_registry::{DynRegistry, MemoryRegistry};
///
/// /// Stands for a backend whose construction is asynchronous (connecting to a server).
/// async fn connect() -> DynRegistry {
///     std::sync::Arc::new(MemoryRegistry::new())
/// }
///
/// mod connected {
///     micro_registry::registry_conformance_tests!(super::connect());
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! registry_conformance_tests {
    (optional: $make:expr) => {
        $crate::registry_conformance_tests!(@each (optional) $make);
    };
    ($make:expr) => {
        $crate::registry_conformance_tests!(@each (required) $make);
    };
    (@each $mode:tt $make:expr) => {
        $crate::registry_conformance_tests!(@cases $mode $make;
            register_then_lookup,
            reregister_is_idempotent,
            reregister_with_changes_updates_node,
            deregister_removes_node,
            unknown_service_is_not_found,
            deregister_unknown_is_ok,
            register_rejects_invalid,
            ttl_expiry,
            watch_sees_create_update_delete_in_order,
            watch_filters_by_service,
            concurrent_registrations,
            many_services,
            multiple_versions,
        );
    };
    (@cases (required) $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread")]
            async fn $case() {
                let registry = $make.await;
                $crate::conformance::$case(&registry).await;
            }
        )+
    };
    (@cases (optional) $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread")]
            async fn $case() {
                let Some(registry) = $make.await else {
                    return;
                };
                $crate::conformance::$case(&registry).await;
            }
        )+
    };
}
