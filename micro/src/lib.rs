//! micro: a pluggable framework for microservices and distributed systems.
//!
//! TODO(guide): filled in by the facade implementation.

pub use micro_broker as broker;
pub use micro_core::{BoxError, Error, ErrorKind, Metadata, Result};
pub use micro_registry as registry;
pub use micro_transport as transport;
