//! Three gossip members on loopback UDP ports: they converge on each other's
//! services, a member killed without deregistering has its services removed
//! by failure detection, a member rejoining under the same node id is seen
//! again, and a clean deregistration reaches the others.

use std::time::Duration;

use futures::StreamExt;
use micro_registry::{
    EventKind, Node, RegisterOptions, Registry, Service, WatchOptions, WatchStream,
    gossip::GossipRegistry,
};

/// Generous: failure detection takes about a second here, on a quiet machine.
const WAIT: Duration = Duration::from_secs(30);

fn member(node_id: &str, seeds: &[String]) -> GossipRegistry {
    GossipRegistry::builder()
        .listen("127.0.0.1:0")
        .node_id(node_id)
        .seeds(seeds.iter().cloned())
        .cluster(format!("test-{}", std::process::id()))
        .gossip_interval(Duration::from_millis(100))
        .discovery_wait(Duration::from_millis(500))
        .build()
        .expect("starting a gossip member")
}

fn service(name: &str, node: &str) -> Service {
    Service::new(name)
        .with_version("1.0.0")
        .with_metadata("owner", node)
        .with_node(Node::new(node, "127.0.0.1:4000").with_metadata("zone", "a"))
}

/// Waits for the next `kind` event about `name`, skipping others.
async fn wait_for(watch: &mut WatchStream, kind: EventKind, name: &str) -> Service {
    tokio::time::timeout(WAIT, async {
        loop {
            match watch.next().await {
                Some(Ok(event)) if event.kind == kind && event.service.name == name => {
                    return event.service;
                }
                Some(Ok(_)) => continue,
                other => panic!("watch failed while waiting for {kind:?} {name}: {other:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind:?} for {name} within {WAIT:?}"))
}

/// Waits until `kind` events about every one of `names` arrived, in any order.
async fn wait_for_all(watch: &mut WatchStream, kind: EventKind, names: &[&str]) {
    let mut missing: Vec<&str> = names.to_vec();
    tokio::time::timeout(WAIT, async {
        while !missing.is_empty() {
            match watch.next().await {
                Some(Ok(event)) if event.kind == kind => {
                    missing.retain(|name| *name != event.service.name);
                }
                Some(Ok(_)) => continue,
                other => panic!("watch failed while waiting for {kind:?}: {other:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind:?} for {missing:?} within {WAIT:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_converge_detect_death_and_see_rejoin() {
    let prefix = format!("gossip-{:08x}", rand::random::<u32>());
    let (name_a, name_b, name_c) = (
        format!("{prefix}-a"),
        format!("{prefix}-b"),
        format!("{prefix}-c"),
    );
    let a = member("node-a", &[]);
    let seeds = vec![a.listen_address().to_string()];
    let b = member("node-b", &seeds);
    let c = member("node-c", &seeds);
    let mut seen_by_a = a.watch(&WatchOptions::default()).await.unwrap();
    let mut seen_by_c = c.watch(&WatchOptions::default()).await.unwrap();

    let no_ttl = RegisterOptions::default();
    a.register(&service(&name_a, "a-1"), &no_ttl).await.unwrap();
    b.register(&service(&name_b, "b-1"), &no_ttl).await.unwrap();
    c.register(&service(&name_c, "c-1"), &no_ttl).await.unwrap();

    // Convergence: everyone sees everyone's services, with their content.
    wait_for_all(&mut seen_by_a, EventKind::Create, &[&name_b, &name_c]).await;
    wait_for_all(&mut seen_by_c, EventKind::Create, &[&name_a, &name_b]).await;
    assert_eq!(
        a.get_service(&name_b).await.unwrap(),
        vec![service(&name_b, "b-1")]
    );
    let seen_by_b = b.get_service(&name_c).await.expect("b sees c's service");
    assert_eq!(seen_by_b, vec![service(&name_c, "c-1")]);
    let listed: Vec<String> = a
        .list_services()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .filter(|name| name.starts_with(&prefix))
        .collect();
    assert_eq!(listed.len(), 3, "a lists all three: {listed:?}");

    // b dies without deregistering: failure detection removes its service.
    drop(b);
    wait_for(&mut seen_by_a, EventKind::Delete, &name_b).await;
    wait_for(&mut seen_by_c, EventKind::Delete, &name_b).await;
    assert!(a.get_service(&name_b).await.is_err());

    // b comes back under the same node id (a new generation) and is seen again.
    let b_again = member("node-b", &seeds);
    b_again
        .register(&service(&name_b, "b-2"), &no_ttl)
        .await
        .unwrap();
    wait_for(&mut seen_by_a, EventKind::Create, &name_b).await;
    wait_for(&mut seen_by_c, EventKind::Create, &name_b).await;

    // A clean deregistration reaches the others as a Delete.
    c.deregister(&service(&name_c, "c-1")).await.unwrap();
    wait_for(&mut seen_by_a, EventKind::Delete, &name_c).await;

    a.deregister(&service(&name_a, "a-1")).await.unwrap();
    b_again.deregister(&service(&name_b, "b-2")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrenewed_ttl_expires_on_peers() {
    let name = format!("gossip-ttl-{:08x}", rand::random::<u32>());
    let a = member("ttl-a", &[]);
    let b = member("ttl-b", &[a.listen_address().to_string()]);
    let mut seen_by_b = b.watch(&WatchOptions::service(&name)).await.unwrap();
    a.register(
        &service(&name, "n-1"),
        &RegisterOptions::ttl(Duration::from_millis(500)),
    )
    .await
    .unwrap();
    wait_for(&mut seen_by_b, EventKind::Create, &name).await;
    wait_for(&mut seen_by_b, EventKind::Delete, &name).await;
}

#[test]
fn bad_settings_are_invalid_argument() {
    use micro_registry::ErrorKind;
    let unreachable = GossipRegistry::builder().listen("0.0.0.0:0").build();
    assert_eq!(unreachable.unwrap_err().kind(), ErrorKind::InvalidArgument);
    let no_interval = GossipRegistry::builder()
        .gossip_interval(Duration::ZERO)
        .build();
    assert_eq!(no_interval.unwrap_err().kind(), ErrorKind::InvalidArgument);
    let bad_address = GossipRegistry::builder().listen("nowhere").build();
    assert_eq!(bad_address.unwrap_err().kind(), ErrorKind::InvalidArgument);
}

/// A member asked for any free port holds the port it picked from the
/// moment it is built, so nothing that picks a free port before the member
/// binds it can take it; the member itself then binds it.
#[test]
fn a_picked_port_is_held_until_the_member_binds_it() {
    let registry = GossipRegistry::builder()
        .listen("127.0.0.1:0")
        .build()
        .expect("a member on loopback");
    let picked = registry.listen_address();
    assert_ne!(picked.port(), 0);
    let err = std::net::UdpSocket::bind(picked).expect_err("the picked port is held");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);

    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        // Opening a watch starts the member.
        let _watch = registry
            .watch(&WatchOptions::service("nobody"))
            .await
            .expect("the member starts on the port it held");
    });
    let err = std::net::UdpSocket::bind(picked).expect_err("the member gossips on it");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
}
