//! Discovery across processes on the server-backed registries, chosen only by
//! environment variables: etcd and nats-server started by the test
//! (`micro-test-servers`; `MICRO_TEST_REQUIRE_SERVERS=1` makes a missing one a
//! failure), and the Consul STAND-IN (the Consul backend has not been run
//! against a real agent).
//!
//! Each backend runs the harness's three cases (`discovery_support`: found by
//! name, SIGKILL expires within TTL + one interval, SIGTERM deregisters at
//! once) and one more, [`registry_restart`]: the registry server is killed
//! and restarted under a running `greeter_server`; meanwhile a client keeps
//! calling it by name from its cache; afterwards the watch opened before the
//! kill still reports changes, and the service restores its own registration
//! when it is lost.

#![cfg(unix)]
#![cfg(any(
    feature = "registry-etcd",
    feature = "registry-nats",
    feature = "registry-consul"
))]

mod discovery_support;

use std::time::Duration;

use micro::registry::{EventKind, Registry};
use support::{Backend, SHORT_INTERVAL, SHORT_TTL, WAIT};
use tokio::time::Instant;

use discovery_support as support;

/// A registry server a case can stop and start again.
enum Fixture {
    #[cfg(feature = "registry-etcd")]
    Etcd(micro_test_servers::EtcdServer),
    #[cfg(feature = "registry-nats")]
    Nats(micro_test_servers::NatsServer),
    #[cfg(feature = "registry-consul")]
    Consul(micro_test_servers::ConsulStandIn),
}

impl Fixture {
    async fn kill(&self) {
        match self {
            #[cfg(feature = "registry-etcd")]
            Fixture::Etcd(server) => server.kill().await,
            #[cfg(feature = "registry-nats")]
            Fixture::Nats(server) => server.kill().await,
            #[cfg(feature = "registry-consul")]
            Fixture::Consul(server) => server.kill().await,
        }
    }

    async fn restart(&self) {
        match self {
            #[cfg(feature = "registry-etcd")]
            Fixture::Etcd(server) => server.restart().await,
            #[cfg(feature = "registry-nats")]
            Fixture::Nats(server) => server.restart().await,
            #[cfg(feature = "registry-consul")]
            Fixture::Consul(server) => server.restart().await,
        }
    }
}

/// The registry server dies and comes back under a running service.
async fn registry_restart(backend: Backend, fixture: Fixture) {
    let name = backend.name.clone();
    let mut changes = support::watch(&backend).await;
    let mut server = support::Server::start(&backend, SHORT_TTL, SHORT_INTERVAL).await;
    let created = support::next(&mut changes, EventKind::Create, WAIT).await;
    let node = created.service.clone();

    // A client in this process, looking the greeter up by name through its cache.
    let client = micro::Client::builder()
        .registry(backend.observer.clone())
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a client on the observer registry");
    let hello = || async {
        client
            .call::<_, serde_json::Value>(
                "greeter",
                "Greeter.Hello",
                &serde_json::json!({ "name": "Ada" }),
            )
            .await
    };
    hello()
        .await
        .unwrap_or_else(|err| panic!("{name}: calling greeter by name: {err}"));

    // Down long enough for the service's renewals to fail and its TTL to pass.
    let downtime = SHORT_TTL + SHORT_INTERVAL;
    fixture.kill().await;
    let down = Instant::now();
    let mut calls = 0;
    while down.elapsed() < downtime {
        hello().await.unwrap_or_else(|err| {
            panic!("{name}: a cached call failed while the registry was down: {err}")
        });
        calls += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("{name}: {calls} calls by name succeeded from the cache while the registry was down");
    fixture.restart().await;
    hello().await.unwrap_or_else(|err| {
        panic!("{name}: calling greeter after the registry came back: {err}")
    });

    // The watch opened before the restart reports changes again: a probe node
    // registered now is seen.
    let probe = micro::registry::Service::new(support::SERVICE)
        .with_version(node.version.clone())
        .with_node(micro::registry::Node::new("probe", "127.0.0.1:9"));
    let register_probe = || async {
        backend
            .observer
            .register(&probe, &micro::registry::RegisterOptions::default())
            .await
    };
    let deadline = Instant::now() + WAIT;
    while let Err(err) = register_probe().await {
        assert!(
            Instant::now() < deadline,
            "{name}: registering a probe after the restart: {err}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    next_for(&mut changes, EventKind::Create, "probe").await;
    backend
        .observer
        .deregister(&probe)
        .await
        .expect("removing the probe");
    next_for(&mut changes, EventKind::Delete, "probe").await;

    // The registration is lost behind the service's back: the service writes
    // it again by itself, and the watch reports both.
    backend
        .observer
        .deregister(&node)
        .await
        .unwrap_or_else(|err| panic!("{name}: removing the registration after the restart: {err}"));
    let lost = Instant::now();
    let node_id = node.nodes[0].id.clone();
    next_for(&mut changes, EventKind::Delete, &node_id).await;
    let restored = next_for(&mut changes, EventKind::Create, &node_id).await;
    assert_eq!(
        restored.service.nodes, node.nodes,
        "{name}: the same node came back"
    );
    println!(
        "{name}: after the registry restart, a lost registration was restored by the service in {:?} (interval {SHORT_INTERVAL:?})",
        lost.elapsed()
    );
    let found = backend
        .observer
        .get_service(support::SERVICE)
        .await
        .unwrap_or_else(|err| panic!("{name}: lookup after restoration: {err}"));
    assert_eq!(found[0].nodes, node.nodes);

    assert!(
        server.terminate().await,
        "greeter_server exits 0 on SIGTERM"
    );
    support::next(&mut changes, EventKind::Delete, WAIT).await;
}

/// The next `kind` event about node `id`, skipping others.
async fn next_for(
    changes: &mut micro::registry::WatchStream,
    kind: EventKind,
    id: &str,
) -> micro::registry::Event {
    loop {
        let event = support::next(changes, kind, WAIT).await;
        if event.service.nodes[0].id == id {
            return event;
        }
    }
}

#[cfg(feature = "registry-etcd")]
mod etcd {
    //! Each case under its own key prefix, on the shared etcd (the restart
    //! case on its own etcd).

    use micro::registry::etcd::EtcdRegistry;
    use micro_test_servers::EtcdServer;

    use super::{
        Fixture,
        support::{self, Backend},
    };

    fn backend(endpoint: String) -> Backend {
        let prefix = format!("/micro-test-{:08x}/", rand::random::<u32>());
        let observer = EtcdRegistry::builder()
            .endpoints([endpoint.clone()])
            .prefix(&prefix)
            .build()
            .expect("an etcd registry");
        Backend::new("etcd", observer)
            .env("MICRO_REGISTRY", "etcd")
            .env("MICRO_REGISTRY_ADDRESS", endpoint)
            .env("MICRO_REGISTRY_PREFIX", prefix)
    }

    async fn shared() -> Option<Backend> {
        Some(backend(EtcdServer::shared().await?.endpoint()))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn found_by_name() {
        if let Some(backend) = shared().await {
            support::found_by_name(backend).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sigkill_expires() {
        if let Some(backend) = shared().await {
            support::sigkill_expires(backend).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clean_stop_deregisters() {
        if let Some(backend) = shared().await {
            support::clean_stop_deregisters(backend).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn registry_restart() {
        let Some(etcd) = EtcdServer::start().await else {
            return;
        };
        let backend = backend(etcd.endpoint());
        super::registry_restart(backend, Fixture::Etcd(etcd)).await;
    }
}

#[cfg(feature = "registry-nats")]
mod nats {
    //! Each case in its own bucket, on the shared nats-server (the restart
    //! case on its own server).

    use micro::registry::nats::NatsRegistry;
    use micro_test_servers::NatsServer;

    use super::{
        Fixture,
        support::{self, Backend},
    };

    fn backend(url: String) -> Backend {
        let bucket = format!("micro_test_{:08x}", rand::random::<u32>());
        let observer = NatsRegistry::builder()
            .servers([url.clone()])
            .bucket(&bucket)
            .build()
            .expect("a NATS registry");
        Backend::new("nats", observer)
            .env("MICRO_REGISTRY", "nats")
            .env("MICRO_REGISTRY_ADDRESS", url)
            .env("MICRO_REGISTRY_BUCKET", bucket)
    }

    async fn shared() -> Option<Backend> {
        Some(backend(NatsServer::shared().await?.url()))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn found_by_name() {
        if let Some(backend) = shared().await {
            support::found_by_name(backend).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sigkill_expires() {
        if let Some(backend) = shared().await {
            support::sigkill_expires(backend).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clean_stop_deregisters() {
        if let Some(backend) = shared().await {
            support::clean_stop_deregisters(backend).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn registry_restart() {
        let Some(nats) = NatsServer::start().await else {
            return;
        };
        let backend = backend(nats.url());
        super::registry_restart(backend, Fixture::Nats(nats)).await;
    }
}

#[cfg(feature = "registry-consul")]
mod consul {
    //! Each case on its own Consul STAND-IN (in this test process).

    use std::time::Duration;

    use micro::registry::consul::ConsulRegistry;
    use micro_test_servers::ConsulStandIn;

    use super::{
        Fixture,
        support::{self, Backend},
    };

    async fn backend() -> (Backend, ConsulStandIn) {
        let stand_in = ConsulStandIn::start().await;
        let observer = ConsulRegistry::builder()
            .address(stand_in.url())
            .watch_wait(Duration::from_secs(5))
            .build()
            .expect("a Consul registry");
        let backend = Backend::new("consul", observer)
            .env("MICRO_REGISTRY", "consul")
            .env("MICRO_REGISTRY_ADDRESS", stand_in.url());
        (backend, stand_in)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn found_by_name() {
        let (backend, _stand_in) = backend().await;
        support::found_by_name(backend).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sigkill_expires() {
        let (backend, _stand_in) = backend().await;
        support::sigkill_expires(backend).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clean_stop_deregisters() {
        let (backend, _stand_in) = backend().await;
        support::clean_stop_deregisters(backend).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn registry_restart() {
        let (backend, stand_in) = backend().await;
        super::registry_restart(backend, Fixture::Consul(stand_in)).await;
    }
}
