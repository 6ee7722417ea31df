use std::fmt;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};

use crate::Result;

/// A stream of encoded messages, one item per message.
///
/// Pulled by the receiver, so a slow receiver slows the sender down; dropping
/// it cancels the stream at its source.
pub type BodyStream = BoxStream<'static, Result<Bytes>>;

/// The payload of a request or response: one encoded message, or a stream of them.
pub enum Body {
    /// Exactly one encoded message (unary calls).
    Full(Bytes),
    /// Zero or more encoded messages (streaming calls).
    Stream(BodyStream),
}

impl Body {
    /// An empty unary body.
    pub fn empty() -> Body {
        Body::Full(Bytes::new())
    }

    /// A streaming body from any stream of encoded messages.
    pub fn stream(stream: impl futures::Stream<Item = Result<Bytes>> + Send + 'static) -> Body {
        Body::Stream(stream.boxed())
    }

    /// Whether this is a streaming body.
    pub fn is_stream(&self) -> bool {
        matches!(self, Body::Stream(_))
    }

    /// The bytes of a unary body; a streaming body is an `InvalidArgument` error.
    pub fn into_bytes(self) -> Result<Bytes> {
        match self {
            Body::Full(bytes) => Ok(bytes),
            Body::Stream(_) => Err(crate::Error::invalid_argument(
                "expected a unary body but got a stream",
            )),
        }
    }

    /// The messages of this body as a stream; a unary body yields its one message.
    pub fn into_stream(self) -> BodyStream {
        match self {
            Body::Full(bytes) => futures::stream::once(async move { Ok(bytes) }).boxed(),
            Body::Stream(stream) => stream,
        }
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Body {
        Body::Full(bytes)
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Body {
        Body::Full(bytes.into())
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Body {
        Body::Full(Bytes::from_static(text.as_bytes()))
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Full(bytes) => f.debug_tuple("Full").field(&bytes.len()).finish(),
            Body::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}
