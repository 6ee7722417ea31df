//! The registry conformance suite against the gossip backend: each case runs
//! on a fresh member (a cluster of one) on a free loopback UDP port.

use std::time::Duration;

use micro_registry::gossip::GossipRegistry;

async fn registry() -> GossipRegistry {
    GossipRegistry::builder()
        .listen("127.0.0.1:0")
        .gossip_interval(Duration::from_millis(100))
        .discovery_wait(Duration::from_millis(300))
        .build()
        .expect("starting a gossip member on loopback")
}

mod gossip {
    micro_registry::registry_conformance_tests!(super::registry());
}

mod caching_gossip {
    micro_registry::registry_conformance_tests!(async {
        micro_registry::CachingRegistry::new(super::registry().await)
    });
}
