//! etcd and nats-server killed and restarted under open registries, twenty
//! times in a row so that a rare mapping shows up here rather than in CI:
//! the registries reconnect by themselves, watches opened before the
//! restarts report later changes, and registrations made meanwhile fail
//! cleanly, always as `Unavailable` or `Timeout` (never `Cancelled`).

use std::time::Duration;

use futures::StreamExt;
use micro_registry::{
    ErrorKind, EventKind, Node, RegisterOptions, Registry, Service, WatchOptions, WatchStream,
};

/// How long anything expected may take on a busy machine.
const WAIT: Duration = Duration::from_secs(60);
/// How long the server stays down each time.
const DOWNTIME: Duration = Duration::from_millis(250);
/// How many times the server is killed and restarted in one test.
const ROUNDS: usize = 20;

fn node(name: &str, id: &str) -> Service {
    Service::new(name)
        .with_version("1")
        .with_node(Node::new(id, "127.0.0.1:4000"))
}

/// The next `kind` event about node `id`, skipping others.
async fn next(watch: &mut WatchStream, kind: EventKind, id: &str) -> Service {
    tokio::time::timeout(WAIT, async {
        loop {
            match watch.next().await {
                Some(Ok(event)) if event.kind == kind && event.service.nodes[0].id == id => {
                    return event.service;
                }
                Some(Ok(_)) => continue,
                other => panic!("watch failed while waiting for {kind:?}: {other:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind:?} within {WAIT:?}"))
}

/// Registers `service` until it works (the server may still be starting).
async fn register_eventually(registry: &dyn Registry, service: &Service) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match registry
            .register(service, &RegisterOptions::default())
            .await
        {
            Ok(()) => return,
            Err(err) if tokio::time::Instant::now() < deadline => {
                assert!(
                    matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Timeout),
                    "a restart gives Unavailable or Timeout: {err}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("registering after the restart: {err}"),
        }
    }
}

/// The shared scenario: `watcher` watches, the server restarts [`ROUNDS`]
/// times, `writer` registers during each outage and after each restart.
async fn survives_restarts<K, KF, R, RF>(
    watcher: &dyn Registry,
    writer: &dyn Registry,
    mut kill: K,
    mut restart: R,
) where
    K: FnMut() -> KF,
    KF: std::future::Future<Output = ()>,
    R: FnMut() -> RF,
    RF: std::future::Future<Output = ()>,
{
    let name = format!("restart-{:08x}", rand::random::<u32>());
    let mut watch = watcher
        .watch(&WatchOptions::service(&name))
        .await
        .expect("watch");
    register_eventually(writer, &node(&name, "before")).await;
    next(&mut watch, EventKind::Create, "before").await;

    for round in 0..ROUNDS {
        kill().await;
        // Fails, but may still land once the server is back (NATS queues the
        // write while reconnecting): a registration is idempotent, so that is fine.
        let err = writer
            .register(
                &node(&name, &format!("during-{round}")),
                &RegisterOptions::default(),
            )
            .await
            .expect_err("registering while the server is down fails");
        assert!(
            matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Timeout),
            "round {round}: a write during an outage is Unavailable or Timeout, not {:?}: {err}",
            err.kind()
        );
        // Down a while, as a crashed server would be: clients back off meanwhile.
        tokio::time::sleep(DOWNTIME).await;
        restart().await;

        let after = format!("after-{round}");
        register_eventually(writer, &node(&name, &after)).await;
        next(&mut watch, EventKind::Create, &after).await;
    }
    let found = watcher
        .get_service(&name)
        .await
        .expect("lookup after the restarts");
    let ids: Vec<_> = found[0].nodes.iter().map(|n| n.id.as_str()).collect();
    let last = format!("after-{}", ROUNDS - 1);
    assert!(
        ids.contains(&"before") && ids.contains(&last.as_str()),
        "{ids:?}"
    );
}

#[cfg(feature = "etcd")]
#[tokio::test(flavor = "multi_thread")]
async fn etcd_restart() {
    use micro_registry::etcd::EtcdRegistry;
    let Some(server) = micro_test_servers::EtcdServer::start().await else {
        return;
    };
    let build = || {
        EtcdRegistry::builder()
            .endpoints([server.endpoint()])
            .request_timeout(Duration::from_secs(1))
            .build()
            .expect("etcd registry")
    };
    let (watcher, writer) = (build(), build());
    survives_restarts(&watcher, &writer, || server.kill(), || server.restart()).await;
}

#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread")]
async fn nats_restart() {
    use micro_registry::nats::NatsRegistry;
    let Some(server) = micro_test_servers::NatsServer::start().await else {
        return;
    };
    let build = || {
        NatsRegistry::builder()
            .servers([server.url()])
            .request_timeout(Duration::from_secs(1))
            .build()
            .expect("NATS registry")
    };
    let (watcher, writer) = (build(), build());
    survives_restarts(&watcher, &writer, || server.kill(), || server.restart()).await;
}
