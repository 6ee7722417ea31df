//! micro: a pluggable framework for microservices and distributed systems.
//!
//! TODO(guide): filled in by the facade implementation.

pub mod client;
pub mod codec;
mod context;
pub mod env;
pub mod selector;
pub mod server;
pub mod service;

pub use client::{Client, ClientBuilder};
pub use codec::ContentType;
pub use context::{Context, is_propagated};
pub use micro_broker as broker;
pub use micro_broker::SubscribeOptions;
pub use micro_core::{BoxError, Error, ErrorKind, Metadata, Result};
pub use micro_registry as registry;
pub use micro_transport as transport;
pub use selector::Selector;
pub use server::Server;
pub use service::{RunningService, Service, ServiceBuilder};
