use std::{
    fmt,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use async_trait::async_trait;
use futures::{Stream, stream::BoxStream};

use crate::{Delivery, Message, Result};

/// What a broker backend supports, so callers choose instead of failing at run time.
///
/// `Default` is "nothing optional": a backend outside this crate starts from
/// it and sets the fields it supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Capabilities {
    /// Queue groups: each message goes to exactly one member of a group.
    pub queue_groups: bool,
    /// Manual acknowledgement: deliveries wait for [`Delivery::ack`], and
    /// [`Delivery::nack`] redelivers.
    pub manual_ack: bool,
    /// A publisher is slowed down (not failed, not dropped) when a subscriber's buffer is full.
    pub backpressure: bool,
    /// Subscriptions accept `*` (one token) and `>` (one or more trailing
    /// tokens) wildcards; see [`crate::topic`].
    pub wildcards: bool,
}

/// How a subscription behaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscribeOptions {
    /// Join this queue group: each message goes to exactly one member of the
    /// group. `None` receives every message (fan-out).
    pub queue: Option<String>,
    /// Deliveries wait for an explicit ack; needs [`Capabilities::manual_ack`].
    pub manual_ack: bool,
}

impl SubscribeOptions {
    /// Fan-out: this subscriber receives every message.
    pub fn fanout() -> SubscribeOptions {
        SubscribeOptions::default()
    }

    /// Joins a queue group.
    pub fn queue(group: impl Into<String>) -> SubscribeOptions {
        SubscribeOptions {
            queue: Some(group.into()),
            ..SubscribeOptions::default()
        }
    }

    /// Asks for manual acknowledgement.
    pub fn with_manual_ack(mut self) -> SubscribeOptions {
        self.manual_ack = true;
        self
    }
}

/// A live subscription: a stream of deliveries. Dropping it unsubscribes.
pub struct Subscription {
    topic: String,
    deliveries: BoxStream<'static, Result<Delivery>>,
}

impl Subscription {
    /// Wraps a backend's delivery stream. Its drop must unsubscribe.
    pub fn new(
        topic: impl Into<String>,
        deliveries: BoxStream<'static, Result<Delivery>>,
    ) -> Subscription {
        Subscription {
            topic: topic.into(),
            deliveries,
        }
    }

    /// The topic subscribed to.
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

impl Stream for Subscription {
    type Item = Result<Delivery>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.deliveries.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// Publishes messages to topics and delivers them to subscribers.
///
/// `Arc<T>` and `Box<T>` forward the trait, so `Arc<dyn Broker>`
/// ([`DynBroker`]) is a broker too.
#[async_trait]
pub trait Broker: fmt::Debug + Send + Sync + 'static {
    /// The scheme naming this backend in configuration (`memory`, `nats`, ...).
    fn scheme(&self) -> &'static str;

    /// What this backend supports.
    fn capabilities(&self) -> Capabilities;

    /// Publishes `message` to the concrete `topic` (no wildcards). Returns once
    /// the backend has accepted it (for the memory broker: once every
    /// subscriber's buffer holds it). Publishing to a topic nobody subscribes
    /// to succeeds and delivers to nobody.
    async fn publish(&self, topic: &str, message: Message) -> Result<()>;

    /// Subscribes to `topic`; messages published after this returns are delivered.
    ///
    /// `topic` may be a wildcard pattern (`user.*`, `user.>`) where
    /// [`Capabilities::wildcards`] is set. Options the backend does not support
    /// (a queue group without [`Capabilities::queue_groups`], manual ack
    /// without [`Capabilities::manual_ack`]) fail with
    /// [`ErrorKind::Unimplemented`](crate::ErrorKind::Unimplemented) rather than
    /// being ignored; malformed topics and group names fail with
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument).
    async fn subscribe(&self, topic: &str, options: &SubscribeOptions) -> Result<Subscription>;
}

/// A shared, type-erased broker.
pub type DynBroker = Arc<dyn Broker>;

macro_rules! forward_broker {
    ($wrapper:ident) => {
        #[async_trait]
        impl<T: Broker + ?Sized> Broker for $wrapper<T> {
            fn scheme(&self) -> &'static str {
                (**self).scheme()
            }
            fn capabilities(&self) -> Capabilities {
                (**self).capabilities()
            }
            async fn publish(&self, topic: &str, message: Message) -> Result<()> {
                (**self).publish(topic, message).await
            }
            async fn subscribe(
                &self,
                topic: &str,
                options: &SubscribeOptions,
            ) -> Result<Subscription> {
                (**self).subscribe(topic, options).await
            }
        }
    };
}

forward_broker!(Arc);
forward_broker!(Box);
