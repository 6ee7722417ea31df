//! micro: a pluggable framework for microservices and distributed systems.
//!
//! Services register themselves in a registry, find each other by name, call
//! each other over a transport and exchange events through a broker. Each of
//! those building blocks is a trait with interchangeable backends, chosen by
//! cargo feature and environment variable; this crate composes them into one
//! [`Service`] builder (a [`Server`] of typed handlers and subscribers, a
//! [`Client`], and the lifecycle that registers, heartbeats, drains and
//! deregisters) that you embed in any tokio program.
//!
//! On one machine everything runs in-process with no server to install; in
//! production, `MICRO_REGISTRY=etcd` or `MICRO_BROKER=nats` changes the
//! backend, not the code. Over HTTP a micro service is plain JSON-over-HTTP
//! that curl can call: `POST /Greeter.Hello` with a JSON body.
//!
//! # Quick start
//!
//! A service with one handler on the in-process memory transport, called
//! through the client by its name:
//!
//! ```
//! use micro::{
//!     Service, registry::memory::MemoryRegistry, transport::memory::MemoryTransport,
//! };
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct HelloRequest {
//!     name: String,
//! }
//!
//! #[derive(Serialize, Deserialize)]
//! struct HelloReply {
//!     message: String,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> micro::Result<()> {
//! let service = Service::builder("greeter")
//!     .version("1.0.0")
//!     .registry(MemoryRegistry::new())
//!     .transport(MemoryTransport::new())
//!     .handle("Greeter.Hello", |_ctx, request: HelloRequest| async move {
//!         Ok(HelloReply { message: format!("Hello, {}", request.name) })
//!     })
//!     .build()?;
//! let running = service.start().await?; // listens, registers, subscribes
//!
//! let client = running.client(); // shares the service's registry and transport
//! let reply: HelloReply = client
//!     .call("greeter", "Greeter.Hello", &HelloRequest { name: "Ada".into() })
//!     .await?;
//! assert_eq!(reply.message, "Hello, Ada");
//!
//! running.stop().await // deregisters, drains in-flight calls
//! # }
//! ```
//!
//! A long-running process ends with `service.run().await` instead: it serves
//! until SIGINT or SIGTERM, then deregisters, drains and returns.
//! [`ServiceBuilder::build_from_env`] picks the backends from the environment.
//!
//! # Building blocks
//!
//! | item | what it is |
//! |---|---|
//! | [`Service`], [`ServiceBuilder`], [`RunningService`] | name, version, metadata, backends, handlers, subscribers, hooks; start/run/stop ([`service`]) |
//! | [`Server`] | a router of typed handlers (`async fn(Context, Req) -> Result<Resp>`), streaming endpoints and broker subscribers, given to a service with [`ServiceBuilder::server`] or used on its own ([`server`]) |
//! | [`Endpoint`] | an endpoint's name with its request and reply types, shared by server and client |
//! | [`Client`] | calls by service name or address, publishes; selector, timeout, retries, tower layers ([`client`]) |
//! | [`streaming`] | client-streaming, server-streaming and bidirectional calls of typed messages, with back-pressure, cancellation and deadlines |
//! | [`Context`] | what a handler sees: service, endpoint, metadata, deadline, and a client that inherits them |
//! | [`selector::Selector`] | random or round-robin choice of a node, filtered by version and metadata |
//! | [`codec`] | codecs as types: serde (JSON or MessagePack), `Json<T>`, `MsgPack<T>`, `Proto<T>`, `Raw`, and the `Encode`/`Decode` traits for your own |
//! | [`env`](mod@crate::env) | backend selection from `MICRO_*` environment variables |
//! | [`registry`] | the `micro-registry` crate: the `Registry` trait and its backends |
//! | [`sync`] | the `micro-sync` crate: distributed `Lock` and leader `Election`, backends memory (`sync-memory`, default), etcd (`sync-etcd`), NATS (`sync-nats`) |
//! | [`broker`] | the `micro-broker` crate: the `Broker` trait and its backends |
//! | [`transport`] | the `micro-transport` crate: the `Transport` trait and its backends |
//! | [`config`] | the `micro-config` crate: a `Config` merged from sources (files, environment, flags, etcd, NATS KV, Consul KV), kept current; handlers read it through [`Context::config`] |
//! | [`Error`], [`ErrorKind`] | one error type whose kinds map both ways onto HTTP and gRPC status codes |
//!
//! Codecs are types ([`codec`]): handlers take and return any serde type
//! (structs, tuples, `Vec`, maps, `Option`, `()`; JSON or MessagePack, as
//! the caller sends), or [`Json<T>`](codec::Json), [`MsgPack<T>`](codec::MsgPack),
//! protobuf messages ([`Proto<T>`](codec::Proto)), raw bytes
//! ([`Raw`](codec::Raw)), or a codec of your own; the same [`Server::handle`]
//! and [`Client::call`] serve them all. A typed [`Endpoint`] constant names an
//! endpoint with its request and reply types, shared by server and client so
//! that a mismatch does not compile. Requests and responses cross the
//! transport as `tower::Service`s, so any tower layer wraps the server
//! ([`Server::layer`]) or the client ([`ClientBuilder::layer`]).
//!
//! What callers see when things go wrong, on every transport:
//!
//! | situation | kind | HTTP status |
//! |---|---|---|
//! | malformed body, wrong content type | `InvalidArgument` | 400 |
//! | unknown endpoint, unregistered service | `NotFound` (an unknown endpoint over gRPC: `Unimplemented`, as gRPC tools expect) | 404 |
//! | handler panicked (the server keeps serving) | `Internal` | 500 |
//! | call past its deadline | `Timeout` | 504 |
//! | no reachable node, connection refused | `Unavailable` | 503 |
//! | body over the transport's limit | `ResourceExhausted` | 413 over HTTP |
//!
//! # Configuration
//!
//! The tables below are `micro/CONFIGURATION.md`, which the README repeats;
//! a test keeps the two and the variables the code reads in step.
#![doc = include_str!("../CONFIGURATION.md")]

pub mod admin;
pub mod client;
pub mod codec;
mod context;
mod endpoint;
pub mod env;
#[cfg(feature = "transport-grpc")]
pub mod grpc;
pub mod metrics;
pub mod selector;
pub mod server;
pub mod service;
pub mod streaming;
pub mod sync_env;

pub use client::{Client, ClientBuilder};
pub use codec::ContentType;
pub use context::{Context, is_propagated};
pub use endpoint::Endpoint;
pub use micro_auth as auth;
pub use micro_broker as broker;
pub use micro_broker::SubscribeOptions;
pub use micro_config as config;
pub use micro_connect as connect;
pub use micro_core::{BoxError, Error, ErrorKind, Metadata, Result};
pub use micro_registry as registry;
pub use micro_sync as sync;
pub use micro_transport as transport;
/// The `prost` micro is built with, so protobuf types of one's own work in
/// [`codec::Proto`] without depending on the same version of prost by hand:
///
/// ```
/// use micro::prost::Message;
///
/// #[derive(Clone, PartialEq, micro::prost::Message)]
/// #[prost(prost_path = "micro::prost")]
/// struct HelloRequest {
///     #[prost(string, tag = "1")]
///     name: String,
/// }
///
/// let request = HelloRequest { name: "Ada".into() };
/// let decoded = HelloRequest::decode(request.encode_to_vec().as_slice()).unwrap();
/// assert_eq!(decoded, request);
///
/// // The same type is a handler's protobuf message:
/// use micro::codec::Proto;
/// let server = micro::Server::new()
///     .handle("Greeter.Hello", |_ctx, Proto(request): Proto<HelloRequest>| async move {
///         Ok(Proto(request))
///     });
/// # let _ = server;
/// ```
///
/// `#[prost(prost_path = "micro::prost")]` tells the derive where prost is
/// when the crate does not depend on `prost` itself.
pub use prost;
pub use selector::Selector;
pub use server::{KeyedOrder, Server};
pub use service::{RunningService, Service, ServiceBuilder};
pub use streaming::Streaming;
