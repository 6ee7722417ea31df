//! The registry conformance suite against a real nats-server (JetStream)
//! started by the test (`micro-test-servers`; `MICRO_TEST_REQUIRE_SERVERS=1`
//! makes a missing server a failure).
//!
//! Cases share one server and one bucket per test process and isolate
//! themselves by random service names; each case gets its own registry (its
//! own connection).

use micro_registry::{CachingRegistry, nats::NatsRegistry};
use micro_test_servers::NatsServer;

/// A registry on the shared server, or `None` when nats-server is missing and not required.
async fn nats() -> Option<NatsRegistry> {
    let server = NatsServer::shared().await?;
    Some(
        NatsRegistry::builder()
            .servers([server.url()])
            .build()
            .expect("a valid NATS configuration"),
    )
}

mod nats {
    micro_registry::registry_conformance_tests!(optional: super::nats());
}

mod caching_nats {
    micro_registry::registry_conformance_tests!(optional: async {
        super::nats().await.map(super::CachingRegistry::new)
    });
}
