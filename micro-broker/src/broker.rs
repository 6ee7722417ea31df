use std::{
    fmt,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::SystemTime,
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
    /// Durable subscriptions ([`SubscribeOptions::durable`]): messages are
    /// kept while the subscriber is away, and a subscription with the same
    /// durable name resumes where the last one stopped.
    pub durable: bool,
    /// Start positions other than [`StartPosition::New`]
    /// ([`SubscribeOptions::start_at`]): replay from the first message kept,
    /// a sequence number or a time. Deliveries carry [`Delivery::sequence`](crate::Delivery::sequence).
    pub replay: bool,
    /// Publisher de-duplication: a message published again with the same
    /// [`Message::with_id`](crate::Message::with_id) within the backend's
    /// window is accepted but not delivered twice.
    pub deduplication: bool,
    /// A redelivery limit with a dead-letter topic ([`SubscribeOptions::dead_letter`]).
    pub dead_letter: bool,
}

/// Where a subscription starts reading; anything but [`StartPosition::New`]
/// needs [`Capabilities::replay`].
///
/// For a durable subscription that already exists, the stored position wins:
/// the start position only applies when the durable subscription is created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartPosition {
    /// Only messages published after the subscription was made (the default).
    #[default]
    New,
    /// Every message the backend still keeps.
    First,
    /// From the message with this sequence number (see [`Delivery::sequence`](crate::Delivery::sequence)).
    Sequence(u64),
    /// From the first message published at or after this time.
    Time(SystemTime),
}

/// Gives up on a message after `max_deliveries` attempts and publishes it to
/// `topic` instead; needs [`Capabilities::dead_letter`] and manual ack.
///
/// The dead-lettered message keeps its headers and body and gains
/// [`DEAD_LETTER_TOPIC_HEADER`] (the topic it was published to) and
/// [`DEAD_LETTER_DELIVERIES_HEADER`] (how often it was delivered).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The concrete topic dead letters are published to.
    pub topic: String,
    /// Deliveries before giving up (at least 1): after the last of them is
    /// nacked, or not acked in time, the message goes to `topic`.
    pub max_deliveries: u32,
}

/// The header naming the topic a dead letter was first published to.
pub const DEAD_LETTER_TOPIC_HEADER: &str = "micro-dead-letter-topic";
/// The header saying how often a dead letter was delivered before it was given up on.
pub const DEAD_LETTER_DELIVERIES_HEADER: &str = "micro-dead-letter-deliveries";

/// How a subscription behaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscribeOptions {
    /// Join this queue group: each message goes to exactly one member of the
    /// group. `None` receives every message (fan-out).
    pub queue: Option<String>,
    /// Deliveries wait for an explicit ack; needs [`Capabilities::manual_ack`].
    pub manual_ack: bool,
    /// Names a durable subscription (needs [`Capabilities::durable`]): the
    /// backend keeps its position and its unacked messages while no member is
    /// subscribed. Members subscribing with the same durable name share its
    /// messages as a queue group does.
    pub durable: Option<String>,
    /// Where to start reading (needs [`Capabilities::replay`] unless [`StartPosition::New`]).
    pub start: StartPosition,
    /// A redelivery limit and where messages go after it (needs [`Capabilities::dead_letter`]).
    pub dead_letter: Option<DeadLetter>,
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

    /// Makes the subscription durable under `name`.
    pub fn durable(mut self, name: impl Into<String>) -> SubscribeOptions {
        self.durable = Some(name.into());
        self
    }

    /// Starts reading at `position`.
    pub fn start_at(mut self, position: StartPosition) -> SubscribeOptions {
        self.start = position;
        self
    }

    /// Sends a message to `topic` after `max_deliveries` unsuccessful deliveries.
    pub fn dead_letter(
        mut self,
        topic: impl Into<String>,
        max_deliveries: u32,
    ) -> SubscribeOptions {
        self.dead_letter = Some(DeadLetter {
            topic: topic.into(),
            max_deliveries,
        });
        self
    }

    /// Fails with [`ErrorKind::Unimplemented`](crate::ErrorKind::Unimplemented)
    /// naming the first option that `capabilities` does not cover, so a
    /// backend refuses what it cannot do instead of ignoring it.
    pub fn check_supported(&self, capabilities: &Capabilities) -> crate::Result<()> {
        let missing = [
            (
                self.queue.is_some() && !capabilities.queue_groups,
                "queue groups",
                "queue_groups",
            ),
            (
                self.manual_ack && !capabilities.manual_ack,
                "manual ack",
                "manual_ack",
            ),
            (
                self.durable.is_some() && !capabilities.durable,
                "durable subscriptions",
                "durable",
            ),
            (
                self.start != StartPosition::New && !capabilities.replay,
                "start positions",
                "replay",
            ),
            (
                self.dead_letter.is_some() && !capabilities.dead_letter,
                "dead letters",
                "dead_letter",
            ),
        ];
        match missing.into_iter().find(|(asked, _, _)| *asked) {
            Some((_, what, capability)) => Err(crate::Error::unimplemented(format!(
                "this broker does not support {what} (capability `{capability}`)"
            ))),
            None => Ok(()),
        }
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

    /// Waits until every message [`publish`](Broker::publish) accepted has
    /// left this process (for NATS: written to the server's socket), so
    /// that a process may exit right after without losing them. A service
    /// calls it when it stops. Backends whose `publish` returns only once
    /// the message is delivered or stored have nothing to wait for; that is
    /// the default.
    async fn flush(&self) -> Result<()> {
        Ok(())
    }
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
            async fn flush(&self) -> Result<()> {
                (**self).flush().await
            }
        }
    };
}

forward_broker!(Arc);
forward_broker!(Box);
