//! micro's broker: publish messages to topics, subscribe to them as streams.
//!
//! Services use a broker for events: a `users` service publishes
//! `user.password_changed` and never learns who listens; an `email` service
//! subscribes and sends the mail. This crate holds the [`Broker`] trait, the
//! types that cross it ([`Message`], [`Delivery`], [`Subscription`],
//! [`SubscribeOptions`]), topic rules ([`topic`]), the backends, and a
//! conformance suite (module `conformance`, feature `conformance`) that holds
//! every backend to the same behaviour.
//!
//! What a subscriber can ask for:
//! - **fan-out** (the default): every subscriber receives every message;
//! - **queue groups** ([`SubscribeOptions::queue`]): each message goes to
//!   exactly one member of the group, to share work between replicas;
//! - **manual ack** ([`SubscribeOptions::with_manual_ack`]): a message counts as
//!   handled only after [`Delivery::ack`]; [`Delivery::nack`] redelivers it;
//! - **wildcards**: `user.*` (one token) and `user.>` (one or more tokens).
//!
//! Any subscription can be handled with **keyed ordering** ([`keyed`]):
//! messages with the same key strictly in order, different keys in parallel,
//! with bounded keys in flight and acks after each handler; [`keyed::KeyedPool`]
//! is the same keyed worker pool for any stream of work.
//!
//! A backend declares which of these it supports in [`Capabilities`] and
//! refuses what it does not support, rather than silently doing something else.
//! `Arc<dyn Broker>` ([`DynBroker`]) and `Box<dyn Broker>` are brokers too.
//!
//! # Quick start
//!
//! ```
//! use futures::StreamExt;
//! use micro_broker::{Broker, Message, SubscribeOptions, memory::MemoryBroker};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> micro_broker::Result<()> {
//! let broker = MemoryBroker::new();
//!
//! // Two replicas of the email service share the work: one of them gets each event.
//! let mut replica_a = broker.subscribe("user.*", &SubscribeOptions::queue("email")).await?;
//! let mut replica_b = broker.subscribe("user.*", &SubscribeOptions::queue("email")).await?;
//!
//! let event = Message::new(r#"{"user_id":7}"#).with_header("Content-Type", "application/json");
//! broker.publish("user.password_changed", event.clone()).await?;
//! broker.publish("user.password_changed", event).await?;
//!
//! for replica in [&mut replica_a, &mut replica_b] {
//!     if let Some(delivery) = replica.next().await {
//!         let delivery = delivery?;
//!         assert_eq!(delivery.topic, "user.password_changed");
//!         assert_eq!(delivery.message.headers.get("content-type"), Some("application/json"));
//!     }
//! }
//! // Dropping a subscription unsubscribes.
//! drop((replica_a, replica_b));
//! # Ok(())
//! # }
//! ```
//!
//! # Backends
//!
//! | backend | scheme | status | notes |
//! |---|---|---|---|
//! | [`memory::MemoryBroker`] | `memory` | available | in-process; bounded buffers with back-pressure or fail-fast overflow; everything in [`Capabilities`] |
//! | `http::HttpBroker` | `http` | available (feature `http`) | peer to peer over plain HTTP, no broker server: subscriptions registered in a micro registry, publishers deliver to them; back-pressure, queue groups, manual ack, wildcards |
//! | NATS core (`nats::NatsBroker`) | `nats` | available (feature `nats`) | native NATS subjects, queue groups and headers; at most once; bounded reconnect buffer |
//! | NATS JetStream (`nats::NatsBroker` with JetStream on) | `jetstream` | available (feature `nats`) | streams per topic family or one stream; durable consumers, manual ack, nack delay, dead letters, replay, de-duplication |
//!
//! Every backend is held to the same conformance suite.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `memory` | yes | [`memory::MemoryBroker`] |
//! | `nats` | no | `nats::NatsBroker` (async-nats; TLS through rustls with ring) |
//! | `http` | no | `http::HttpBroker` (hyper/axum; needs `micro-registry`) |
//! | `conformance` | no | the `conformance` module and the `broker_conformance_tests!` macro, to run the suite against a backend outside this crate |

mod broker;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
#[cfg(feature = "http")]
pub mod http;
pub mod keyed;
#[cfg(feature = "memory")]
pub mod memory;
mod message;
#[cfg(feature = "nats")]
pub mod nats;
pub mod topic;

pub use broker::{
    Broker, Capabilities, DEAD_LETTER_DELIVERIES_HEADER, DEAD_LETTER_TOPIC_HEADER, DeadLetter,
    DynBroker, StartPosition, SubscribeOptions, Subscription,
};
pub use message::{Acker, Delivery, MESSAGE_ID_HEADER, Message};
pub use micro_core::{BoxError, Error, ErrorKind, Metadata, Result};
pub use topic::Topic;
