//! The conformance suite, run from outside the crate as other backends run it,
//! against the memory broker and its type-erased wrappers.

use micro_broker::memory::{MemoryBroker, OverflowPolicy};

mod memory {
    use super::MemoryBroker;

    micro_broker::broker_conformance_tests!(MemoryBroker::new());
}

mod arc_dyn {
    use std::sync::Arc;

    use micro_broker::{Broker, DynBroker};

    use super::MemoryBroker;

    micro_broker::broker_conformance_tests!(Arc::new(MemoryBroker::new()) as DynBroker);

    #[test]
    fn wrapper_forwards_scheme() {
        let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
        assert_eq!(broker.scheme(), "memory");
    }
}

mod box_dyn {
    use micro_broker::Broker;

    use super::MemoryBroker;

    micro_broker::broker_conformance_tests!(Box::new(MemoryBroker::new()) as Box<dyn Broker>);
}

/// Fail-fast overflow declares no back-pressure, which sends
/// `slow_subscriber_as_declared` down its other branch.
mod memory_fail_fast {
    use super::{MemoryBroker, OverflowPolicy};

    micro_broker::broker_conformance_tests!(
        MemoryBroker::builder()
            .overflow(OverflowPolicy::Fail)
            .build()
    );
}

/// A buffer of one message: every case must still pass, with the publisher
/// held back at almost every step.
mod memory_tiny_buffer {
    use super::MemoryBroker;

    micro_broker::broker_conformance_tests!(MemoryBroker::builder().buffer(1).build());
}
