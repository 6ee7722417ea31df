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
//! | [`Server`] | a router of typed handlers (`async fn(Context, Req) -> Result<Resp>`) and broker subscribers, usable on its own ([`server`]) |
//! | [`Client`] | calls by service name or address, publishes; selector, timeout, retries, tower layers ([`client`]) |
//! | [`streaming`] | client-streaming, server-streaming and bidirectional calls of typed messages, with back-pressure, cancellation and deadlines |
//! | [`Context`] | what a handler sees: service, endpoint, metadata, deadline, and a client that inherits them |
//! | [`selector::Selector`] | random or round-robin choice of a node, filtered by version and metadata |
//! | [`codec`] | JSON, MessagePack, protobuf and raw bytes, chosen by content type |
//! | [`env`](mod@crate::env) | backend selection from `MICRO_*` environment variables |
//! | [`registry`] | the `micro-registry` crate: the `Registry` trait and its backends |
//! | [`sync`] | the `micro-sync` crate: distributed `Lock` and leader `Election`, backends memory (`sync-memory`, default), etcd (`sync-etcd`), NATS (`sync-nats`) |
//! | [`broker`] | the `micro-broker` crate: the `Broker` trait and its backends |
//! | [`transport`] | the `micro-transport` crate: the `Transport` trait and its backends |
//! | [`config`] | the `micro-config` crate: a `Config` merged from sources (files, environment, flags, etcd, NATS KV, Consul KV), kept current; handlers read it through [`Context::config`] |
//! | [`Error`], [`ErrorKind`] | one error type whose kinds map both ways onto HTTP and gRPC status codes |
//!
//! Handlers take and return any serde type (structs, tuples, `Vec`, maps,
//! `Option`, `()`), or protobuf messages ([`ServiceBuilder::handle_proto`]),
//! or raw bytes ([`ServiceBuilder::handle_raw`]). Requests and responses
//! cross the transport as `tower::Service`s, so any tower layer wraps the
//! server ([`ServiceBuilder::layer`]) or the client ([`ClientBuilder::layer`]).
//!
//! What callers see when things go wrong, on every transport:
//!
//! | situation | kind | HTTP status |
//! |---|---|---|
//! | malformed body, wrong content type | `InvalidArgument` | 400 |
//! | unknown endpoint, unregistered service | `NotFound` | 404 |
//! | handler panicked (the server keeps serving) | `Internal` | 500 |
//! | call past its deadline | `Timeout` | 504 |
//! | no reachable node, connection refused | `Unavailable` | 503 |
//! | body over the transport's limit | `ResourceExhausted` | 413 over HTTP |
//!
//! # Backends and features
//!
//! | building block | backend | feature | default |
//! |---|---|---|---|
//! | registry | memory (in-process, TTL expiry) | `registry-memory` | yes |
//! | registry | mdns, gossip, etcd, nats, consul (consul tested against a stand-in only) | `registry-mdns`, `registry-gossip`, `registry-etcd`, `registry-nats`, `registry-consul` | no |
//! | broker | memory (bounded buffers, queue groups, manual ack) | `broker-memory` | yes |
//! | broker | http (peer to peer), nats (core and JetStream) | `broker-http`, `broker-nats` | no |
//! | transport | memory (in-process) | `transport-memory` | yes |
//! | transport | http (hyper 1; JSON over HTTP that curl can call) | `transport-http` | yes |
//! | transport | grpc (plain gRPC any gRPC client can call; tonic clients through the registry with [`grpc::GrpcChannel`]) | `transport-grpc` | no |
//! | config | memory and environment sources (always) | | yes |
//! | config | files (JSON, TOML, YAML, watched) | `config` | no |
//! | config | flags (clap), etcd, NATS KV, Consul KV | `config-flags`, `config-etcd`, `config-nats`, `config-consul` | no |
//! | sync | memory locks and elections | `sync-memory` | yes |
//! | sync | etcd, NATS KV | `sync-etcd`, `sync-nats` | no |
//!
//! `full` turns on every feature.
//!
//! # Environment
//!
//! [`ServiceBuilder::build_from_env`] and [`Client::from_env`] read:
//!
//! | variable | values | default |
//! |---|---|---|
//! | `MICRO_REGISTRY` / `MICRO_REGISTRY_ADDRESS` | `memory`, `mdns`, `gossip`, `etcd`, `nats`, `consul` | `memory` |
//! | `MICRO_BROKER` / `MICRO_BROKER_ADDRESS` | `memory`, `http`, `nats` | `memory` |
//! | `MICRO_TRANSPORT` / `MICRO_TRANSPORT_ADDRESS` | `memory`, `http`, `grpc`; the address to listen on | `http` on `127.0.0.1:0` |
//!
//! A backend whose feature this build lacks is an error naming the feature
//! ("MICRO_REGISTRY=etcd needs micro's cargo feature \`registry-etcd\`, which
//! this build does not include"); an unknown name is an error listing the
//! known ones. See [`env`](mod@crate::env).
//!
//! # Defaults
//!
//! | setting | default | where to change it |
//! |---|---|---|
//! | call timeout, whole call including retries; sent to the server as the deadline | 5 s | [`ClientBuilder::timeout`] (a service's own: [`ServiceBuilder::configure_client`]), [`client::CallBuilder::timeout`] |
//! | retries, of retryable errors only (`Unavailable`, `Aborted`) | 3 | [`ClientBuilder::retries`], [`client::CallBuilder::retries`] |
//! | backoff between retries | 10 ms doubling up to 1 s, jittered | [`ClientBuilder::backoff`] |
//! | node selection | random; a retry prefers another node | [`ClientBuilder::selector`] |
//! | registration TTL | 30 s | [`ServiceBuilder::register_ttl`] |
//! | re-registration interval | 10 s | [`ServiceBuilder::register_interval`] |
//! | grace period for in-flight calls on stop | 10 s | [`ServiceBuilder::grace_period`] |
//! | listen address | `127.0.0.1:0` (a free port) | [`ServiceBuilder::address`], `MICRO_TRANSPORT_ADDRESS` |
//! | subscriber queue group | the service's name (one instance handles each message) | [`ServiceBuilder::subscribe_with`] |
//! | content type | `application/json` | [`ClientBuilder::content_type`] |

pub mod client;
pub mod codec;
mod context;
pub mod env;
#[cfg(feature = "transport-grpc")]
pub mod grpc;
pub mod selector;
pub mod server;
pub mod service;
pub mod streaming;
pub mod sync_env;

pub use client::{Client, ClientBuilder};
pub use codec::ContentType;
pub use context::{Context, is_propagated};
pub use micro_broker as broker;
pub use micro_broker::SubscribeOptions;
pub use micro_config as config;
pub use micro_connect as connect;
pub use micro_core::{BoxError, Error, ErrorKind, Metadata, Result};
pub use micro_registry as registry;
pub use micro_sync as sync;
pub use micro_transport as transport;
pub use selector::Selector;
pub use server::{KeyedOrder, Server};
pub use service::{RunningService, Service, ServiceBuilder};
pub use streaming::Streaming;
