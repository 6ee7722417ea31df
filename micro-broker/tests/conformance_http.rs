//! The broker conformance suite against the HTTP broker, with subscribers and
//! publishers meeting through the memory registry, in three set-ups: one
//! broker doing both (cached lookups); a publishing broker and a subscribing
//! broker, as two services, so every delivery crosses between two endpoints
//! (uncached lookups); and a one-message buffer, so the publisher is held
//! back at almost every step.

use micro_broker::http::HttpBroker;
use micro_registry::MemoryRegistry;

mod one_broker {
    use super::*;

    micro_broker::broker_conformance_tests!(HttpBroker::new(MemoryRegistry::new()));
}

/// Publishes go through one broker, subscriptions through another, so every
/// delivery crosses HTTP between two endpoints that only share the registry.
mod two_brokers {
    use micro_broker::conformance::Split;

    use super::*;

    /// The publisher asks the registry on every publish: with the default
    /// cache it would see the other broker's subscriptions only once the
    /// registry watch delivered them, and the suite publishes right after
    /// subscribing.
    fn split() -> Split<HttpBroker, HttpBroker> {
        let registry = MemoryRegistry::new();
        Split {
            publisher: HttpBroker::builder(registry.clone())
                .cached_lookups(false)
                .build(),
            subscriber: HttpBroker::new(registry),
        }
    }

    micro_broker::broker_conformance_tests!(split());
}

mod tiny_buffer {
    use super::*;

    micro_broker::broker_conformance_tests!(
        HttpBroker::builder(MemoryRegistry::new()).buffer(1).build()
    );
}
