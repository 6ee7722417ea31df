//! micro's service registry: how services announce themselves and find each other.
//!
//! TODO(guide): quick start doc test on the memory backend, backend list and
//! feature table (filled in by the registry implementation).

mod registry;
mod service;

pub use micro_core::{BoxError, Error, ErrorKind, Metadata, Result};
pub use registry::{
    Capabilities, DynRegistry, RegisterOptions, Registry, WatchOptions, WatchStream,
};
pub use service::{Endpoint, Event, EventKind, Node, Service};
