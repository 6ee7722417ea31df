//! The registry conformance suite against the memory backend, the type-erased
//! wrappers users hold it in, and the caching wrapper clients put in front of it.

use std::sync::Arc;

use micro_registry::{CachingRegistry, DynRegistry, MemoryRegistry, Registry};

mod memory {
    micro_registry::registry_conformance_tests!(async { super::MemoryRegistry::new() });
}

mod memory_shared {
    micro_registry::registry_conformance_tests!(async { super::MemoryRegistry::shared() });
}

mod arc_dyn {
    micro_registry::registry_conformance_tests!(async {
        super::Arc::new(super::MemoryRegistry::new()) as super::DynRegistry
    });
}

mod box_dyn {
    micro_registry::registry_conformance_tests!(async {
        Box::new(super::MemoryRegistry::new()) as Box<dyn super::Registry>
    });
}

mod caching_memory {
    micro_registry::registry_conformance_tests!(async {
        super::CachingRegistry::new(super::MemoryRegistry::new())
    });
}

mod caching_dyn {
    micro_registry::registry_conformance_tests!(async {
        super::CachingRegistry::new(
            super::Arc::new(super::MemoryRegistry::new()) as super::DynRegistry
        )
    });
}
