//! The registry conformance suite against a real etcd started by the test
//! (`micro-test-servers`; `MICRO_TEST_REQUIRE_SERVERS=1` makes a missing etcd a failure).
//!
//! Cases share one etcd per test process and isolate themselves by random
//! service names; each case gets its own registry (its own connection and leases).

use micro_registry::{CachingRegistry, etcd::EtcdRegistry};
use micro_test_servers::EtcdServer;

/// A registry on the shared etcd, or `None` when etcd is missing and not required.
async fn etcd() -> Option<EtcdRegistry> {
    let server = EtcdServer::shared().await?;
    Some(
        EtcdRegistry::builder()
            .endpoints([server.endpoint()])
            .build()
            .expect("a valid etcd configuration"),
    )
}

mod etcd {
    micro_registry::registry_conformance_tests!(optional: super::etcd());
}

mod caching_etcd {
    micro_registry::registry_conformance_tests!(optional: async {
        super::etcd().await.map(super::CachingRegistry::new)
    });
}
