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
//! # Quick start
//!
//! Serve a handler on the in-process [`memory`] backend, dial it and call it:
//!
//! ```
//! use std::time::Duration;
//! use micro_transport::{Handler, Request, Response, Transport, memory::MemoryTransport};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> micro_transport::Result<()> {
//! let transport = MemoryTransport::new();
//! let handler = Handler::from_fn(|request: Request| async move {
//!     let name = String::from_utf8_lossy(&request.body.into_bytes()?).into_owned();
//!     Ok(Response::new(format!("Hello {name}").into_bytes()).with_content_type("text/plain"))
//! });
//! let listener = transport.listen("", handler).await?; // "" takes a fresh address
//!
//! let channel = transport.dial(listener.address()).await?;
//! let request = Request::new("Greeter.Hello", "Ada")
//!     .with_content_type("text/plain")
//!     .with_metadata("trace-id", "abc123")
//!     .with_deadline(tokio::time::Instant::now() + Duration::from_secs(5));
//! let response = channel.call_once(request).await?;
//! assert_eq!(response.body.into_bytes()?, "Hello Ada");
//!
//! listener.shutdown(Duration::from_secs(5)).await // drains calls in flight
//! # }
//! ```
//!
//! Swap `MemoryTransport::new()` for `HttpTransport::new()` and `""` for
//! `"127.0.0.1:0"` and the same code runs over HTTP.
//!
//! # Backends
//!
//! | backend | scheme | streaming | notes |
//! |---|---|---|---|
//! | [`memory::MemoryTransport`] | `memory` | yes | in-process, no serialization or copies; one process-wide network ([`MemoryTransport::new`](memory::MemoryTransport::new)) or a private one ([`isolated`](memory::MemoryTransport::isolated)) |
//! | [`http::HttpTransport`] | `http` | yes | hyper 1, HTTP/1.1 and h2c; plain HTTP that curl can call; streams as length-prefixed frames |
//! | [`grpc::GrpcTransport`] | `grpc` | yes | hyper's HTTP/2; plain gRPC that any gRPC client can call, tonic services mountable beside micro handlers, health and reflection built in |
//!
//! Every backend enforces the same rules, checked by the conformance suite
//! (`micro_transport::conformance`, feature `conformance`):
//! a call past its deadline is `Timeout` (and cancelled on the serving side);
//! a body over the maximum size (default [`DEFAULT_MAX_BODY_SIZE`], 4 MiB) is
//! `ResourceExhausted`; an address nobody listens on is `Unavailable`; a
//! handler panic is `Internal` and the server goes on serving; every
//! [`ErrorKind`] a handler returns reaches the caller unchanged; and
//! [`Listener::shutdown`] refuses new calls at once (`Unavailable`), lets the
//! ones in flight finish within the grace period, then cancels the rest.
//!
//! # The HTTP wire format
//!
//! A call is `POST /{endpoint}` (`POST /Greeter.Hello`; `POST
//! /{service}/{endpoint}` works too) with the request message as the body, so
//!
//! ```text
//! curl -H 'Content-Type: application/json' -d '{"name":"Ada"}' http://127.0.0.1:PORT/Greeter.Hello
//! ```
//!
//! calls a micro service. `Content-Type` carries the codec's content type both
//! ways. Other headers are the call's metadata, both ways, except the ones
//! describing the exchange itself (`content-length`, `host`, `user-agent`, ...,
//! listed in [`http`]). Three headers are micro's own: `micro-service` names
//! the called service; `micro-timeout` carries the time the caller still
//! waits, a whole number and a unit (`h`, `m`, `s`, `ms`, `us`, `ns`) such as
//! `250ms`, and the server fails the call with `Timeout` when it runs out;
//! `micro-body: stream` marks a streamed body, sent as length-prefixed frames
//! (one byte of kind, four of big-endian length, the payload).
//!
//! Success is `200` with the response message. A failure is the kind's HTTP
//! status ([`ErrorKind::http_status`]: `not_found` 404, `invalid_argument`
//! 400, `deadline_exceeded` 504, `unavailable` 503, `internal` 500, ...) with
//! a JSON body `{"code":"not_found","message":"..."}` whose code is
//! [`ErrorKind::as_str`]. A body over the maximum is `413` with code
//! `resource_exhausted`, judged from `Content-Length` before any of it is read
//! and enforced while reading one of unknown length; a method other than
//! `POST` is `405`. A micro client turns the error body back into an [`Error`]
//! of the same kind, and falls back to the status's kind for bodies that are
//! not micro's.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `memory` | yes | [`memory::MemoryTransport`] |
//! | `http` | yes | [`http::HttpTransport`] (hyper, hyper-util, tokio's `net`) |
//! | `grpc` | no | [`grpc::GrpcTransport`] (hyper, tonic, tonic-health, tonic-reflection; protox and tonic-prost-build at build time, no `protoc`) |
//! | `conformance` | no | the `conformance` module and the `transport_conformance_tests!` macro, to hold a backend outside this crate to the suite |

mod body;
#[cfg(any(feature = "memory", feature = "http", feature = "grpc"))]
mod call;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
#[cfg(any(feature = "http", feature = "grpc"))]
pub mod connector;
#[cfg(any(feature = "http", feature = "grpc"))]
mod deadline;
#[cfg(feature = "grpc")]
pub mod grpc;
mod hop;
#[cfg(feature = "http")]
pub mod http;
#[cfg(any(feature = "http", feature = "grpc"))]
pub mod listen;
#[cfg(feature = "memory")]
pub mod memory;
mod request;
mod service;
#[cfg(feature = "tls")]
pub mod tls;
mod transport;

pub use body::{Body, BodyStream};
pub use hop::is_per_hop;
pub use micro_core::{BoxError, Error, ErrorKind, Metadata, Result};
pub use request::{PEER_SUBJECT, Request, Response};
pub use service::{Channel, EndpointSet, Handler};
pub use transport::{Capabilities, DynTransport, Listener, Transport};

/// The default largest body (or streamed message) a transport accepts: 4 MiB.
pub const DEFAULT_MAX_BODY_SIZE: usize = 4 * 1024 * 1024;
