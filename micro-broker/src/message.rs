use std::{fmt, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;

use crate::{Metadata, Result, topic::Topic};

/// What a publisher sends: headers and an encoded body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// Key/value pairs delivered with the body (content type, ids, tracing).
    pub headers: Metadata,
    /// The encoded payload.
    pub body: Bytes,
}

impl Message {
    /// A message with a body and no headers.
    pub fn new(body: impl Into<Bytes>) -> Message {
        Message {
            headers: Metadata::new(),
            body: body.into(),
        }
    }

    /// Sets one header.
    pub fn with_header(mut self, key: &str, value: impl Into<String>) -> Message {
        self.headers.insert(key, value);
        self
    }

    /// Sets the message id (header [`MESSAGE_ID_HEADER`]): a backend with
    /// [`Capabilities::deduplication`](crate::Capabilities::deduplication)
    /// delivers a message published twice with the same id only once.
    pub fn with_id(self, id: impl Into<String>) -> Message {
        self.with_header(MESSAGE_ID_HEADER, id)
    }

    /// The message id, if one was set.
    pub fn id(&self) -> Option<&str> {
        self.headers.get(MESSAGE_ID_HEADER)
    }
}

/// The header holding a message's id, used for publisher de-duplication.
pub const MESSAGE_ID_HEADER: &str = "message-id";

/// Settles a delivery with the backend that made it. Backends implement this;
/// users call [`Delivery::ack`] and [`Delivery::nack`].
#[async_trait]
pub trait Acker: Send + Sync + 'static {
    /// The message was handled; do not deliver it again.
    async fn ack(self: Box<Self>) -> Result<()>;
    /// The message was not handled; deliver it again after `delay` (to this or
    /// another member of the queue group).
    async fn nack(self: Box<Self>, delay: Option<Duration>) -> Result<()>;
}

/// One message as a subscriber receives it.
pub struct Delivery {
    /// The topic it was published to, shared rather than copied (see [`Topic`]).
    pub topic: Topic,
    /// The message.
    pub message: Message,
    /// Where the backend keeps this message (JetStream's stream sequence),
    /// for replaying from it with [`StartPosition::Sequence`](crate::StartPosition::Sequence).
    /// `None` where the backend keeps nothing.
    pub sequence: Option<u64>,
    /// Which delivery of this message this is (1 for the first), where the backend counts.
    pub attempt: Option<u32>,
    acker: Option<Box<dyn Acker>>,
}

impl Delivery {
    /// A delivery that needs no acknowledgement.
    pub fn new(topic: impl Into<Topic>, message: Message) -> Delivery {
        Delivery {
            topic: topic.into(),
            message,
            sequence: None,
            attempt: None,
            acker: None,
        }
    }

    /// A delivery that the subscriber must settle with [`Delivery::ack`] or [`Delivery::nack`].
    pub fn with_acker(
        topic: impl Into<Topic>,
        message: Message,
        acker: Box<dyn Acker>,
    ) -> Delivery {
        Delivery {
            topic: topic.into(),
            message,
            sequence: None,
            attempt: None,
            acker: Some(acker),
        }
    }

    /// Records where the backend keeps this message and which delivery it is.
    pub fn with_position(mut self, sequence: Option<u64>, attempt: Option<u32>) -> Delivery {
        self.sequence = sequence;
        self.attempt = attempt;
        self
    }

    /// Whether this delivery waits for an ack.
    pub fn needs_ack(&self) -> bool {
        self.acker.is_some()
    }

    /// Marks the message handled. A no-op for deliveries that need no ack.
    pub async fn ack(&mut self) -> Result<()> {
        match self.acker.take() {
            Some(acker) => acker.ack().await,
            None => Ok(()),
        }
    }

    /// Marks the message not handled, to be delivered again after `delay`.
    /// A no-op for deliveries that need no ack.
    pub async fn nack(&mut self, delay: Option<Duration>) -> Result<()> {
        match self.acker.take() {
            Some(acker) => acker.nack(delay).await,
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("topic", &self.topic)
            .field("message", &self.message)
            .field("sequence", &self.sequence)
            .field("attempt", &self.attempt)
            .field("needs_ack", &self.needs_ack())
            .finish()
    }
}
