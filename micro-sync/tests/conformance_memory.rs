//! The conformance suite on the memory backend, directly and through the
//! `Arc` and `Box` forwarding impls.

use std::sync::Arc;

use micro_sync::memory::MemoryCoordinator;

mod memory {
    micro_sync::sync_conformance_tests!(async { super::MemoryCoordinator::new() });
}

mod arc {
    micro_sync::sync_conformance_tests!(async { super::Arc::new(super::MemoryCoordinator::new()) });
}

mod boxed {
    micro_sync::sync_conformance_tests!(async { Box::new(super::MemoryCoordinator::new()) });
}
