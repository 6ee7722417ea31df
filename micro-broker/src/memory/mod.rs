//! The in-process broker: zero setup, bounded buffers, nothing lost silently.
//!
//! [`MemoryBroker`] delivers messages between tasks of one process. It is the
//! default broker of a single-process deployment and the reference the
//! conformance suite is written against. Everything the [`Broker`] trait
//! offers is supported: fan-out, queue groups, manual ack, wildcard patterns
//! and back-pressure.
//!
//! # Delivery semantics
//!
//! - **Fan-out**: every plain subscription whose pattern matches gets its own
//!   copy of every message, in publish order.
//! - **Queue groups**: subscriptions with the same pattern and the same
//!   [`SubscribeOptions::queue`] name form a group; each message goes to
//!   exactly one member, chosen round-robin among members with room in their
//!   buffer. (Same group name with a different pattern is a different group,
//!   as on NATS.) When a member leaves, what it had not yet received is handed
//!   to the remaining members. When the last member leaves, the group is gone:
//!   its undelivered messages are discarded with a warning, and later messages
//!   are not kept for a group that may never come back.
//! - **Bounded buffers**: each subscription holds at most
//!   [`MemoryConfig::buffer`] messages (default
//!   [`MemoryConfig::DEFAULT_BUFFER`]). When one is full the
//!   [`OverflowPolicy`] decides: [`Block`](OverflowPolicy::Block) (default)
//!   makes `publish` wait; [`Fail`](OverflowPolicy::Fail) makes it return
//!   [`ErrorKind::ResourceExhausted`](crate::ErrorKind::ResourceExhausted).
//!   Under `Block`, a task that publishes to a topic it also reads from the
//!   same task can end up waiting on its own full buffer: read and publish
//!   from separate tasks, or use `Fail`.
//! - **All or nothing**: `publish` first reserves a slot with everyone it must
//!   reach, then places the message everywhere at once. A failed publish, or
//!   one whose future is dropped while it waits, reached no subscriber, so
//!   retrying it never duplicates it. When `publish` returns `Ok`, every
//!   subscriber it delivers to holds the message.
//! - **Manual ack** ([`SubscribeOptions::with_manual_ack`]): a delivery keeps
//!   its buffer slot until settled. [`Delivery::ack`](crate::Delivery::ack)
//!   frees it; [`Delivery::nack`](crate::Delivery::nack) delivers the message
//!   again after the delay, to the same subscription (fan-out) or to any
//!   member of the group. A delivery dropped without being settled counts as
//!   `nack(None)` and is redelivered at once, as are the unsettled deliveries
//!   of a group member that leaves. Redeliveries come before new messages.
//!   Nothing bounds the number of redeliveries: a message nobody can handle
//!   comes back until someone acks it.
//! - **Unsubscribe** happens when the [`Subscription`] is dropped: publishers
//!   stop routing to it at once, and a publisher blocked on its full buffer
//!   stops waiting for it.
//! - **Topics** are validated as described in [`crate::topic`]; subscriptions
//!   accept `*` and `>` wildcards, and [`Delivery::topic`](crate::Delivery::topic)
//!   is always the concrete topic published to.
//!
//! Nothing is persisted: a message published while nobody subscribes is
//! delivered to nobody, as on NATS core.
//!
//! ```
//! use futures::StreamExt;
//! use micro_broker::{Broker, Message, SubscribeOptions};
//! use micro_broker::memory::{MemoryBroker, OverflowPolicy};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> micro_broker::Result<()> {
//! let broker = MemoryBroker::builder()
//!     .buffer(64)
//!     .overflow(OverflowPolicy::Fail)
//!     .build();
//! let mut audit = broker.subscribe("orders.>", &SubscribeOptions::fanout()).await?;
//!
//! broker.publish("orders.eu.created", Message::new("order 42")).await?;
//!
//! if let Some(delivery) = audit.next().await {
//!     let delivery = delivery?;
//!     assert_eq!(delivery.topic, "orders.eu.created");
//!     assert_eq!(delivery.message.body, "order 42");
//! }
//! # Ok(())
//! # }
//! ```

mod config;
mod feed;
mod state;
mod subscription;
#[cfg(test)]
mod tests;

use std::{
    fmt,
    sync::{Arc, OnceLock},
};

use async_trait::async_trait;
use tokio::sync::Semaphore;

pub use config::{BUFFER_ENV, MemoryConfig, OVERFLOW_ENV, OverflowPolicy};

use self::{
    state::Shared,
    subscription::{Deliveries, FeedDeliveries},
};
use crate::{
    Broker, Capabilities, Message, Result, SubscribeOptions, Subscription,
    topic::{Pattern, validate_queue_group},
};

/// The scheme naming this backend: `memory`.
pub const SCHEME: &str = "memory";

/// The instance behind [`MemoryBroker::shared`].
static SHARED: OnceLock<MemoryBroker> = OnceLock::new();

/// An in-process [`Broker`]. Clones share one broker; see the
/// [module documentation](self) for the delivery semantics.
#[derive(Clone)]
pub struct MemoryBroker {
    shared: Arc<Shared>,
}

impl MemoryBroker {
    /// A new, isolated broker with the default [`MemoryConfig`].
    pub fn new() -> MemoryBroker {
        MemoryBroker::builder().build()
    }

    /// The process-wide broker, created with the default [`MemoryConfig`] on
    /// first use. Everything in one process that picks the memory broker
    /// without being handed one (`MICRO_BROKER=memory`) uses this instance, so
    /// two services in one process exchange events.
    pub fn shared() -> MemoryBroker {
        SHARED.get_or_init(MemoryBroker::new).clone()
    }

    /// The process-wide broker of [`MemoryBroker::shared`], created on first
    /// use from [`BUFFER_ENV`] and [`OVERFLOW_ENV`] (a malformed value is an
    /// `InvalidArgument` error naming the variable). The first call creates
    /// it; later calls return that same instance, whatever the variables say
    /// by then, so every service in the process keeps exchanging events.
    pub fn shared_from_env() -> Result<MemoryBroker> {
        let config = MemoryConfig::from_env()?;
        Ok(SHARED
            .get_or_init(|| MemoryBroker::builder().config(config).build())
            .clone())
    }

    /// A new, isolated broker configured from [`BUFFER_ENV`] and [`OVERFLOW_ENV`].
    pub fn from_env() -> Result<MemoryBroker> {
        Ok(MemoryBroker::builder()
            .config(MemoryConfig::from_env()?)
            .build())
    }

    /// Starts configuring a new, isolated broker.
    pub fn builder() -> MemoryBrokerBuilder {
        MemoryBrokerBuilder::default()
    }

    /// The settings this broker runs with.
    pub fn config(&self) -> &MemoryConfig {
        &self.shared.config
    }
}

impl Default for MemoryBroker {
    fn default() -> MemoryBroker {
        MemoryBroker::new()
    }
}

impl fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBroker")
            .field("config", self.config())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    fn scheme(&self) -> &'static str {
        SCHEME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            queue_groups: true,
            manual_ack: true,
            backpressure: self.config().overflow == OverflowPolicy::Block,
            wildcards: true,
            ..Capabilities::default()
        }
    }

    async fn publish(&self, topic: &str, message: Message) -> Result<()> {
        let routing = self.shared.routing(topic)?;
        let mut reservations = Vec::with_capacity(routing.targets.len());
        for target in &routing.targets {
            reservations.extend(self.shared.reserve(topic, target).await?);
        }
        self.shared.deliver(&routing.topic, message, reservations);
        Ok(())
    }

    async fn subscribe(&self, topic: &str, options: &SubscribeOptions) -> Result<Subscription> {
        let pattern = Pattern::parse(topic)?;
        options.check_supported(&self.capabilities())?;
        if let Some(group) = &options.queue {
            validate_queue_group(group)?;
        }
        if options.queue.is_none() && !options.manual_ack && !pattern.has_wildcards() {
            let (feed, reader) = self.shared.subscribe_feed(pattern);
            let deliveries = FeedDeliveries::new(Arc::clone(&self.shared), feed, reader);
            return Ok(Subscription::new(topic, Box::pin(deliveries)));
        }
        let (inbox, redelivery) = self.shared.subscribe(pattern, options.queue.as_deref());
        let deliveries = Deliveries::new(
            Arc::clone(&self.shared),
            inbox,
            redelivery,
            options.manual_ack,
        );
        Ok(Subscription::new(topic, Box::pin(deliveries)))
    }
}

/// Configures a [`MemoryBroker`]; from [`MemoryBroker::builder`].
#[derive(Debug, Clone, Default)]
pub struct MemoryBrokerBuilder {
    config: MemoryConfig,
}

impl MemoryBrokerBuilder {
    /// How many messages each subscription may hold (default
    /// [`MemoryConfig::DEFAULT_BUFFER`]; `0` is taken as `1`).
    pub fn buffer(mut self, messages: usize) -> MemoryBrokerBuilder {
        self.config.buffer = messages;
        self
    }

    /// What `publish` does when a buffer is full (default [`OverflowPolicy::Block`]).
    pub fn overflow(mut self, policy: OverflowPolicy) -> MemoryBrokerBuilder {
        self.config.overflow = policy;
        self
    }

    /// Replaces every setting with `config`.
    pub fn config(mut self, config: MemoryConfig) -> MemoryBrokerBuilder {
        self.config = config;
        self
    }

    /// Builds the broker.
    pub fn build(self) -> MemoryBroker {
        let mut config = self.config;
        config.buffer = config.buffer.clamp(1, Semaphore::MAX_PERMITS);
        MemoryBroker {
            shared: Arc::new(Shared::new(config)),
        }
    }
}
