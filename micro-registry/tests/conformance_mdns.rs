//! The registry conformance suite against the mDNS backend, each case with its
//! own daemon in a network namespace of its own (loopback only, multicast on),
//! so no packet reaches the host's interfaces. Needs root and iproute2.

mod mdns_support;

use micro_registry::mdns::MdnsRegistry;

/// A registry in a fresh namespace; the namespace's name is deleted once the
/// daemon is in it (the daemon keeps the namespace alive).
async fn registry() -> MdnsRegistry {
    let netns = mdns_support::Netns::create()
        .expect("the mDNS conformance suite needs a network namespace (root and iproute2)");
    netns.registry()
}

mod mdns {
    micro_registry::registry_conformance_tests!(super::registry());
}

mod caching_mdns {
    micro_registry::registry_conformance_tests!(async {
        micro_registry::CachingRegistry::new(super::registry().await)
    });
}
