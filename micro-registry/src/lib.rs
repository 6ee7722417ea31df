//! micro's service registry: how services announce themselves and find each other.
//!
//! A running service registers its nodes (instances: an id and an address to
//! dial) under its name and version, with a TTL it renews by registering again.
//! Clients look services up by name, or watch them to hear about nodes coming,
//! changing and going. [`Registry`] is the trait every backend implements;
//! users hold a [`DynRegistry`] (`Arc<dyn Registry>`) and pick the backend by
//! feature flag and configuration, never in code.
//!
//! Also here:
//! - [`CachingRegistry`], a wrapper for clients: lookups come from memory, kept
//!   fresh by a watch, and a stale entry is served (and logged) when the backend
//!   is down;
//! - `conformance` (feature `conformance`), the behaviour every backend is
//!   tested against, with `registry_conformance_tests!` to run it.
//!
//! # Quick start
//!
//! ```
//! use std::time::Duration;
//!
//! use futures::StreamExt;
//! use micro_registry::{
//!     EventKind, MemoryRegistry, Node, RegisterOptions, Registry, Service, WatchOptions,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> micro_registry::Result<()> {
//! let registry = MemoryRegistry::new();
//! let mut changes = registry.watch(&WatchOptions::service("greeter")).await?;
//!
//! // A service announces one node; it must register again within 30 seconds.
//! let greeter = Service::new("greeter")
//!     .with_version("1.0.0")
//!     .with_node(Node::new("greeter-1", "127.0.0.1:4123"));
//! registry.register(&greeter, &RegisterOptions::ttl(Duration::from_secs(30))).await?;
//!
//! // A client finds it: one `Service` per version, with its live nodes.
//! let found = registry.get_service("greeter").await?;
//! assert_eq!(found[0].nodes[0].address, "127.0.0.1:4123");
//!
//! // Watchers hear about it, and about its departure.
//! registry.deregister(&greeter).await?;
//! assert_eq!(changes.next().await.transpose()?.map(|e| e.kind), Some(EventKind::Create));
//! assert_eq!(changes.next().await.transpose()?.map(|e| e.kind), Some(EventKind::Delete));
//! assert_eq!(
//!     registry.get_service("greeter").await.unwrap_err().kind(),
//!     micro_registry::ErrorKind::NotFound,
//! );
//! # Ok(())
//! # }
//! ```
//!
//! # Backends
//!
//! | backend | scheme | status | for |
//! |---|---|---|---|
//! | [`memory`] | `memory` | available | one process: tests, and services embedded in one binary ([`MemoryRegistry::shared`]) |
//! | `mdns` (feature `mdns`) | `mdns` | available | one LAN, no server: DNS-SD records over multicast (mdns-sd) |
//! | `gossip` (feature `gossip`) | `gossip` | available | a cluster with no server, peers seeded by address (chitchat) |
//! | `etcd` (feature `etcd`) | `etcd` | available | production, with leases for TTLs |
//! | `nats` (feature `nats`) | `nats` | available | production on NATS (JetStream key/value, per-key TTLs) |
//! | `consul` (feature `consul`) | `consul` | available, tested only against a stand-in | production on Consul (agent services and TTL checks) |
//!
//! Every backend declares what it supports in [`Capabilities`] (TTL expiry,
//! watches) and passes the `conformance` suite.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `memory` | yes | [`MemoryRegistry`], the in-process backend |
//! | `mdns` | no | `mdns::MdnsRegistry`: mDNS / DNS-SD discovery (implies `memory`, its local view) |
//! | `gossip` | no | `gossip::GossipRegistry`: gossip discovery (implies `memory`, its local view) |
//! | `conformance` | no | the `conformance` module and `registry_conformance_tests!`, for testing backends |

#[cfg(feature = "consul")]
pub mod consul;
#[cfg(feature = "etcd")]
pub mod etcd;
#[cfg(feature = "gossip")]
pub mod gossip;
#[cfg(any(feature = "mdns", feature = "gossip"))]
mod local_view;
#[cfg(feature = "mdns")]
pub mod mdns;
#[cfg(feature = "memory")]
pub mod memory;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(any(feature = "etcd", feature = "nats", feature = "consul"))]
mod record;

mod cache;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod registry;
mod service;
mod validate;

pub use cache::{CachingRegistry, CachingRegistryBuilder};
#[cfg(feature = "memory")]
pub use memory::MemoryRegistry;
pub use micro_core::{BoxError, Error, ErrorKind, Metadata, Result};
pub use registry::{
    Capabilities, DynRegistry, RegisterOptions, Registry, WatchOptions, WatchStream,
};
pub use service::{Endpoint, Event, EventKind, Node, Service};
pub use validate::validate_registration;
