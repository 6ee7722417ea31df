//! The registry conformance suite against the Consul STAND-IN from
//! `micro-test-servers` (no Consul binary can be installed here; the backend
//! has not been run against a real Consul agent).
//!
//! Each case gets its own stand-in (it is in-process and starts at once) and
//! its own registry.

use std::time::Duration;

use micro_registry::{CachingRegistry, consul::ConsulRegistry};
use micro_test_servers::ConsulStandIn;

/// A registry on a fresh stand-in, which lives as long as the test process.
async fn consul() -> ConsulRegistry {
    let stand_in: &'static ConsulStandIn = Box::leak(Box::new(ConsulStandIn::start().await));
    ConsulRegistry::builder()
        .address(stand_in.url())
        .watch_wait(Duration::from_secs(5))
        .build()
        .expect("a valid Consul configuration")
}

mod consul {
    micro_registry::registry_conformance_tests!(super::consul());
}

mod caching_consul {
    micro_registry::registry_conformance_tests!(async {
        super::CachingRegistry::new(super::consul().await)
    });
}
