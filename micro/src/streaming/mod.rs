//! Streaming calls: client streaming, server streaming and bidirectional
//! streams of typed messages, over every transport that streams.
//!
//! A streaming endpoint is served with one of [`Server::handle_client_stream`],
//! [`Server::handle_server_stream`] and [`Server::handle_bidi_stream`] (a
//! server given to a service with
//! [`ServiceBuilder::server`](crate::ServiceBuilder::server)), and called with
//! the [`CallBuilder`] methods `client_stream`, `server_stream` and
//! `bidi_stream`. The message types choose the codec, as for unary calls
//! ([`codec`](mod@crate::codec)): serde types are JSON or MessagePack by the
//! request's content type, [`Proto<T>`](crate::codec::Proto) is protobuf,
//! and so on; a typed [`Endpoint`](crate::Endpoint) names both types for
//! both sides. Outgoing messages are any `Stream<Item = Result<T>>`; incoming
//! ones arrive as a [`Streaming<T>`], itself such a stream. [`channel`] makes
//! a bounded pair for pushing messages from a task of your own.
//!
//! | shape | handler | caller |
//! |---|---|---|
//! | client streaming | `Fn(Context, Streaming<Req>) -> Result<Resp>` | [`CallBuilder::client_stream`] → `Resp` |
//! | server streaming | `Fn(Context, Req) -> Result<impl Stream<Item = Result<Resp>>>` | [`CallBuilder::server_stream`] → `Streaming<Resp>` |
//! | bidirectional | `Fn(Context, Streaming<Req>) -> Result<impl Stream<Item = Result<Resp>>>` | [`CallBuilder::bidi_stream`] → `Streaming<Resp>` |
//!
//! # Back-pressure, cancellation, errors
//!
//! Nothing here buffers: a message is encoded when the transport pulls it and
//! decoded when the receiver asks for it, and every transport pulls only as
//! fast as the other end reads (the memory transport hands the stream over;
//! HTTP relies on its flow control). A slow receiver therefore slows its
//! sender down, and memory stays bounded however long a stream runs.
//!
//! Dropping a stream cancels it at its source: a caller that drops its
//! [`Streaming`] (or the future of a client-streaming call) ends the
//! handler's stream, and a handler that returns (or drops its input) ends the
//! caller's outgoing stream; a [`Sender`] then fails with `Cancelled`. An
//! `Err` in an outgoing stream is the last message: it reaches the other side
//! as that error, with its kind, and ends the stream. A message that cannot be
//! decoded ends the stream with `InvalidArgument` (on the serving side) or
//! `Internal` (on the calling side, whose server sent it).
//!
//! # Deadlines
//!
//! A stream may run far longer than a unary call, so the client's default
//! timeout does not bound it: it bounds only opening the stream (finding the
//! node, connecting, and for server streaming the handler's answer). A
//! stream has a deadline when the call sets one ([`CallBuilder::timeout`],
//! [`CallBuilder::deadline`]) or inherits one from the handler that makes it
//! ([`Context::client`](crate::Context::client)); the deadline covers the
//! whole stream, travels to the server, and a stream still open when it
//! passes ends with `Timeout` on both sides. Streaming calls whose request is
//! a stream are never retried (a stream cannot be replayed); a
//! server-streaming call is retried like a unary one until its stream opens.
//!
//! # Example
//!
//! ```
//! use futures::{StreamExt, TryStreamExt};
//! use micro::{Endpoint, Server, Service, registry::memory::MemoryRegistry, transport::memory::MemoryTransport};
//!
//! /// Shared by the server and its callers: a stream of i64 in, one i64 out.
//! const SUM: Endpoint<i64, i64> = Endpoint::new("Numbers.Sum");
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> micro::Result<()> {
//! let server = Server::new()
//!     // client streaming: many requests, one reply
//!     .handle_client_stream(SUM, |_ctx, mut numbers| async move {
//!         let mut sum = 0;
//!         while let Some(n) = numbers.message().await? {
//!             sum += n;
//!         }
//!         Ok(sum)
//!     })
//!     // server streaming: one request, many replies
//!     .handle_server_stream("Numbers.Count", |_ctx, to: u32| async move {
//!         Ok(futures::stream::iter((0..to).map(Ok)))
//!     })
//!     // bidirectional: each request answered as it arrives
//!     .handle_bidi_stream("Numbers.Double", |_ctx, numbers: micro::streaming::Streaming<i64>| async move {
//!         Ok(numbers.map_ok(|n| n * 2))
//!     });
//! let service = Service::builder("numbers")
//!     .registry(MemoryRegistry::new())
//!     .transport(MemoryTransport::isolated())
//!     .server(server)
//!     .build()?;
//! let running = service.start().await?;
//! let client = running.client();
//!
//! let numbers = futures::stream::iter([1i64, 2, 3].map(Ok));
//! let sum = client.request("numbers", SUM).client_stream(numbers).await?;
//! assert_eq!(sum, 6);
//!
//! let counted: Vec<u32> = client
//!     .request::<_, u32>("numbers", "Numbers.Count")
//!     .server_stream(&3u32)
//!     .await?
//!     .try_collect()
//!     .await?;
//! assert_eq!(counted, [0, 1, 2]);
//!
//! let (sender, requests) = micro::streaming::channel::<i64>(1);
//! let mut doubled = client
//!     .request::<i64, i64>("numbers", "Numbers.Double")
//!     .bidi_stream(requests)
//!     .await?;
//! sender.send(21).await?;
//! assert_eq!(doubled.message().await?, Some(42));
//! drop(sender); // ends the request stream, and so the replies
//! assert_eq!(doubled.message().await?, None);
//!
//! running.stop().await
//! # }
//! ```

mod channel;
mod client;
mod server;

use std::{
    fmt,
    pin::Pin,
    sync::Arc,
    task::{Context as TaskContext, Poll, ready},
};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};

pub use self::channel::{Receiver, Sender, channel};
use crate::{Result, transport::BodyStream};
#[cfg(doc)]
use crate::{Server, client::CallBuilder};

/// Endpoint metadata key naming a streaming endpoint's shape: `client`,
/// `server` or `bidi`.
pub const STREAM_KEY: &str = "stream";

/// A stream of typed messages received from the other side of a call: the
/// requests of a client-streaming or bidirectional handler, or the replies of
/// a server-streaming or bidirectional call.
///
/// It is a `Stream<Item = Result<T>>`; [`message`](Streaming::message) reads
/// one. The first error ends it. Dropping it cancels the stream at its
/// source (see the [module docs](self)).
pub struct Streaming<T> {
    /// `None` once the stream has ended, so the source is dropped at once.
    messages: Option<BodyStream>,
    decode: Decoder<T>,
}

type Decoder<T> = Arc<dyn Fn(Bytes) -> Result<T> + Send + Sync>;

impl<T> Streaming<T> {
    pub(crate) fn new(messages: BodyStream, decode: Decoder<T>) -> Streaming<T> {
        Streaming {
            messages: Some(messages),
            decode,
        }
    }

    /// The next message; `Ok(None)` once the stream has ended cleanly.
    pub async fn message(&mut self) -> Result<Option<T>> {
        self.next().await.transpose()
    }
}

impl<T> Stream for Streaming<T> {
    type Item = Result<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Result<T>>> {
        let Some(messages) = self.messages.as_mut() else {
            return Poll::Ready(None);
        };
        let next = match ready!(messages.poll_next_unpin(cx)) {
            Some(Ok(bytes)) => Some((self.decode)(bytes)),
            Some(Err(err)) => Some(Err(err)),
            None => None,
        };
        if !matches!(next, Some(Ok(_))) {
            // Ended, cleanly or not: let go of the source now.
            self.messages = None;
        }
        Poll::Ready(next)
    }
}

impl<T> fmt::Debug for Streaming<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Streaming")
            .field("message_type", &std::any::type_name::<T>())
            .field("ended", &self.messages.is_none())
            .finish()
    }
}

/// How much a stream's encoding buffer takes at a time: the messages encoded
/// into one such block share its allocation (each is split off as it is
/// done), so small messages cost no allocation each.
const ENCODE_BLOCK: usize = 32 * 1024;

/// Encodes each message of `messages` as it is pulled, appending it with
/// `encode` to a buffer the stream keeps; the first error (the stream's own,
/// or one encoding) is the last item.
pub(crate) fn encode_stream<T, S, E>(messages: S, encode: E) -> BodyStream
where
    S: Stream<Item = Result<T>> + Send + 'static,
    E: Fn(&T, &mut BytesMut) -> Result<()> + Send + 'static,
{
    let mut buffer = BytesMut::new();
    messages
        .map(move |message| {
            let message = message?;
            if buffer.capacity() - buffer.len() < ENCODE_BLOCK / 8 {
                buffer.reserve(ENCODE_BLOCK);
            }
            encode(&message, &mut buffer)?;
            Ok(buffer.split().freeze())
        })
        .scan(false, |failed, item| {
            let end = *failed;
            *failed = item.is_err();
            futures::future::ready((!end).then_some(item))
        })
        .boxed()
}
