//! The vocabulary every micro building block shares.
//!
//! `micro-core` is deliberately tiny. It holds the pieces that must be the same
//! in every crate of the workspace so that values cross crate boundaries (and
//! the wire) without conversion layers:
//!
//! - [`Error`] and [`ErrorKind`]: one error type whose kind maps both ways onto
//!   HTTP status codes and gRPC status codes, so a curl user, a Python gRPC
//!   client and a micro client all see the same failure;
//! - [`Metadata`]: the string key/value pairs that travel with a request or a
//!   message (HTTP headers, gRPC metadata, NATS headers);
//! - [`duration`]: the one grammar for configured durations (humantime:
//!   `250ms`, `1.5s`, `1h 30m`), with serde adaptors;
//! - [`Backoff`]: the one backoff for retries and reconnections;
//! - [`name`]: the one validator for service, endpoint and lock names;
//! - [`env`](mod@env): reading `MICRO_*` variables (empty is unset, errors name the variable);
//! - [`is_connection_failure`]: the one rule that makes a lost server `Unavailable`.
//!
//! Users rarely depend on this crate directly: `micro` and every building-block
//! crate re-export these types.
//!
//! ```
//! use micro_core::{Error, ErrorKind};
//!
//! let err = Error::not_found("no service named greeter");
//! assert_eq!(err.kind(), ErrorKind::NotFound);
//! assert_eq!(err.kind().http_status(), 404);
//! assert_eq!(err.kind().grpc_code(), 5);
//! assert!(!err.is_retryable());
//! assert_eq!(ErrorKind::from_grpc_code(14), ErrorKind::Unavailable);
//! ```

mod backoff;
mod connection;
pub mod duration;
pub mod env;
mod error;
mod metadata;
pub mod name;

pub use backoff::{Attempts, Backoff};
pub use connection::is_connection_failure;
pub use error::{BoxError, Error, ErrorKind, Result};
pub use metadata::Metadata;
