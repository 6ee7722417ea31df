//! Two mDNS registries (two daemons) in a network namespace the test creates,
//! on its loopback only: a registration with everything `Service` holds
//! reaches the other side whole; renewals keep it there past its TTL; a
//! deregistration's goodbye removes it; an unrenewed one expires; and a
//! registry restricted to another interface hears nothing. Needs root and iproute2.

mod mdns_support;

use std::time::Duration;

use futures::StreamExt;
use micro_registry::{
    Endpoint, ErrorKind, EventKind, Node, RegisterOptions, Registry, Service, WatchOptions,
    WatchStream, mdns::MdnsRegistry,
};

const WAIT: Duration = Duration::from_secs(30);

async fn wait_for(watch: &mut WatchStream, kind: EventKind) -> Service {
    tokio::time::timeout(WAIT, async {
        loop {
            match watch.next().await {
                Some(Ok(event)) if event.kind == kind => return event.service,
                Some(Ok(_)) => continue,
                other => panic!("watch failed while waiting for {kind:?}: {other:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind:?} within {WAIT:?}"))
}

fn greeter(name: &str) -> Service {
    Service::new(name)
        .with_version("1.0.0")
        .with_metadata("team", "core")
        .with_endpoint(Endpoint {
            name: "Greeter.Hello".to_owned(),
            request: Some("HelloRequest".to_owned()),
            response: Some("HelloReply".to_owned()),
            metadata: [("stream", "none")].into_iter().collect(),
            request_schema: None,
            response_schema: None,
        })
        .with_node(Node::new("greeter-1", "127.0.0.1:4001").with_metadata("zone", "a"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_loopback() {
    let Some(netns) = mdns_support::Netns::create() else {
        return;
    };
    let a = netns.registry();
    let b = netns.registry();
    let deaf = MdnsRegistry::builder()
        .netns(&netns.name)
        .interfaces(["micro-none0"])
        .discovery_wait(Duration::from_millis(500))
        .build()
        .unwrap();
    let name = format!("mdns-{:08x}", rand::random::<u32>());
    let mut seen_by_b = b.watch(&WatchOptions::service(&name)).await.unwrap();

    // Everything the Service holds arrives, and renewals keep it past its TTL.
    let ttl = RegisterOptions::ttl(Duration::from_secs(2));
    a.register(&greeter(&name), &ttl).await.unwrap();
    assert_eq!(
        wait_for(&mut seen_by_b, EventKind::Create).await,
        greeter(&name)
    );
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        a.register(&greeter(&name), &ttl).await.unwrap();
    }
    assert_eq!(b.get_service(&name).await.unwrap(), vec![greeter(&name)]);

    // A registry restricted to an interface that does not exist hears nothing.
    assert_eq!(
        deaf.get_service(&name).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );

    // Deregistration's goodbye removes it at the other side.
    a.deregister(&greeter(&name)).await.unwrap();
    wait_for(&mut seen_by_b, EventKind::Delete).await;
    assert_eq!(
        b.get_service(&name).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );

    // Not renewed: it expires at the other side.
    let fading = format!("{name}-fading");
    let mut fading_seen = b.watch(&WatchOptions::service(&fading)).await.unwrap();
    a.register(
        &greeter(&fading),
        &RegisterOptions::ttl(Duration::from_millis(800)),
    )
    .await
    .unwrap();
    wait_for(&mut fading_seen, EventKind::Create).await;
    wait_for(&mut fading_seen, EventKind::Delete).await;
}

#[test]
fn a_missing_namespace_is_invalid_argument() {
    let err = MdnsRegistry::builder()
        .netns("micro-no-such-namespace")
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}
