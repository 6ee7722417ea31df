//! micro's transport: how a request reaches a service and its response comes back.
//!
//! A [`Transport`] does two things: it [serves](Transport::listen) a
//! [`Handler`] on an address and it [dials](Transport::dial) an address,
//! returning a [`Channel`]. Both are `tower::Service<Request>`, so every tower
//! layer (timeout, retry, rate limit, concurrency limit, load shedding,
//! tracing) works unchanged on either side.
//!
//! A [`Request`] names its endpoint (`Greeter.Hello`), carries a content type,
//! [`Metadata`], an optional deadline and a [`Body`], which is either one
//! encoded message or a stream of them (client streaming); a [`Response`]
//! carries the same (server streaming, or both for bidirectional streams).
//! Transports carry bytes: encoding belongs to the codecs in `micro`.
//!
//! TODO(guide): quick start doc test on the memory backend, backend list and
//! feature table (filled in by the transport implementation).

mod body;
#[cfg(any(feature = "memory", feature = "http"))]
mod call;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "memory")]
pub mod memory;
mod request;
mod service;
mod transport;

pub use body::{Body, BodyStream};
pub use micro_core::{BoxError, Error, ErrorKind, Metadata, Result};
pub use request::{Request, Response};
pub use service::{Channel, Handler};
pub use transport::{Capabilities, DynTransport, Listener, Transport};

/// The default largest body (or streamed message) a transport accepts: 4 MiB.
pub const DEFAULT_MAX_BODY_SIZE: usize = 4 * 1024 * 1024;
