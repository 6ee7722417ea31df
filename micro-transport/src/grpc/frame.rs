//! gRPC message framing: each message is one byte of flags (0: not
//! compressed, 1: compressed with the body's `grpc-encoding`; every other bit
//! is reserved), four bytes of big-endian length and the payload; a response
//! ends with status trailers. HTTP/2 flow control carries the back-pressure:
//! a message is framed only when the connection asks for more body, and read
//! only when the receiver pulls the next one.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
};

use ::http::HeaderMap;
use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::{Compression, wire};
use crate::{BodyStream, BoxError, Error, Result, call::body_too_large};

const HEADER_LEN: usize = 5;

/// Payloads up to this size are copied behind their header into one buffer
/// (one DATA chunk); larger ones go out as header and payload, uncopied.
const COPY_LIMIT: usize = 16 * 1024;

/// A stream's small messages that are ready at once are framed into one chunk
/// until it holds this many bytes: one DATA frame and one write for many
/// messages. A message that is not ready yet is never waited for.
const BATCH_LIMIT: usize = 32 * 1024;

/// The flag byte of a compressed message.
const COMPRESSED: u8 = 1;

/// The frame header of a message of `len` bytes.
fn header(flags: u8, len: usize) -> Result<[u8; HEADER_LEN]> {
    let len =
        u32::try_from(len).map_err(|_| body_too_large("gRPC message", len, u32::MAX as usize))?;
    let len = len.to_be_bytes();
    Ok([flags, len[0], len[1], len[2], len[3]])
}

/// A message as it goes on the wire: its flag byte and payload, compressed
/// when the body is.
fn encode(message: Bytes, compression: Compression) -> Result<(u8, Bytes)> {
    Ok(match compression.compress(&message)? {
        Some(compressed) => (COMPRESSED, compressed),
        None => (0, message),
    })
}

/// Frames one message as one or two chunks.
fn frame(message: Bytes, compression: Compression) -> Result<(Bytes, Option<Bytes>)> {
    let (flags, message) = encode(message, compression)?;
    let header = header(flags, message.len())?;
    if message.len() <= COPY_LIMIT {
        let mut buffer = BytesMut::with_capacity(HEADER_LEN + message.len());
        buffer.extend_from_slice(&header);
        buffer.extend_from_slice(&message);
        Ok((buffer.freeze(), None))
    } else {
        Ok((Bytes::copy_from_slice(&header), Some(message)))
    }
}

/// Where an outgoing body's first error goes when the body itself cannot
/// carry it (a request body can only be reset): the caller reads it from here.
pub(super) type ErrorSlot = Arc<Mutex<Option<Error>>>;

/// An outgoing gRPC body: one message or a stream of them, then (on a
/// server's response) the status trailers.
pub(super) struct OutBody {
    state: State,
    /// The next chunk to send (the payload of a large message).
    pending: Option<Bytes>,
    /// An item taken from the stream that did not join the batch before it
    /// (a large message, or an error): it goes next.
    held: Option<Result<Bytes>>,
    /// Where batches of small messages are framed; each batch is split off.
    buffer: BytesMut,
    /// Server side: trailers carry the outcome. Client side: `None`.
    trailers: Option<HeaderMap>,
    /// Client side: where a failing request stream's error goes.
    error_slot: Option<ErrorSlot>,
    /// The largest message sent; a larger one fails the stream.
    max_message_size: usize,
    /// How messages are compressed.
    compression: Compression,
    /// Client side: resolves once the caller is done with the call (its
    /// response dropped or finished), which stops a request stream the
    /// server no longer reads.
    abandoned: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
}

enum State {
    Unary(Option<Bytes>),
    Stream(BodyStream),
    Done,
}

impl OutBody {
    /// A server's response: the messages, then `grpc-status: 0`, or the
    /// status of the stream's first error.
    pub(super) fn response(
        body: crate::Body,
        max_message_size: usize,
        compression: Compression,
    ) -> OutBody {
        OutBody::new(
            body,
            Some(wire::ok_trailers()),
            None,
            max_message_size,
            compression,
        )
    }

    /// A client's request: the messages and nothing more. A stream's error
    /// goes into `error_slot` and resets the HTTP/2 stream.
    pub(super) fn request(
        body: crate::Body,
        error_slot: ErrorSlot,
        max_message_size: usize,
        compression: Compression,
        abandoned: CancellationToken,
    ) -> OutBody {
        let mut body = OutBody::new(body, None, Some(error_slot), max_message_size, compression);
        if matches!(body.state, State::Stream(_)) {
            body.abandoned = Some(Box::pin(abandoned.cancelled_owned()));
        }
        body
    }

    fn new(
        body: crate::Body,
        trailers: Option<HeaderMap>,
        error_slot: Option<ErrorSlot>,
        max_message_size: usize,
        compression: Compression,
    ) -> OutBody {
        let state = match body {
            crate::Body::Full(bytes) => State::Unary(Some(bytes)),
            crate::Body::Stream(stream) => State::Stream(stream),
        };
        OutBody {
            state,
            pending: None,
            held: None,
            buffer: BytesMut::new(),
            trailers,
            error_slot,
            max_message_size,
            compression,
            abandoned: None,
        }
    }

    /// Ends the body with `error`: in the trailers on a server, as a reset
    /// (and in the error slot) on a client.
    fn fail(&mut self, error: Error) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.state = State::Done;
        match (&mut self.trailers, &self.error_slot) {
            (Some(trailers), _) => {
                wire::insert_status(trailers, &error);
                Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
            (None, Some(slot)) => {
                let reset = Error::cancelled("the request stream failed");
                *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
                Poll::Ready(Some(Err(reset.into())))
            }
            (None, None) => Poll::Ready(Some(Err(error.into()))),
        }
    }

    fn message(&mut self, message: Bytes) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if message.len() > self.max_message_size {
            let what = if self.trailers.is_some() {
                "response"
            } else {
                "request"
            };
            return self.fail(body_too_large(
                &format!("gRPC {what} message"),
                message.len(),
                self.max_message_size,
            ));
        }
        match frame(message, self.compression) {
            Ok((first, rest)) => {
                self.pending = rest;
                Poll::Ready(Some(Ok(Frame::data(first))))
            }
            Err(err) => self.fail(err),
        }
    }
}

impl OutBody {
    /// The next chunk of a stream: every small message that is ready, framed
    /// into one batch of up to [`BATCH_LIMIT`] bytes; a large message or an
    /// error on its own; the trailers at the end.
    fn poll_stream(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut batched = 0;
        loop {
            let next = match (self.held.take(), &mut self.state) {
                (Some(item), _) => Poll::Ready(Some(item)),
                (None, State::Stream(stream)) => stream.poll_next_unpin(cx),
                (None, _) => Poll::Ready(None),
            };
            match next {
                Poll::Ready(Some(Ok(message)))
                    if message.len() <= COPY_LIMIT && message.len() <= self.max_message_size =>
                {
                    let (flags, message) = match encode(message, self.compression) {
                        Ok(encoded) => encoded,
                        Err(err) if batched > 0 => {
                            self.held = Some(Err(err));
                            break;
                        }
                        Err(err) => return self.fail(err),
                    };
                    let framed = HEADER_LEN + message.len();
                    if self.buffer.capacity() - self.buffer.len() < framed {
                        self.buffer.reserve(framed.max(BATCH_LIMIT));
                    }
                    // gzip grows a small message by a few dozen bytes at most:
                    // its length always fits a header.
                    let header =
                        header(flags, message.len()).expect("a small message's length fits");
                    self.buffer.extend_from_slice(&header);
                    self.buffer.extend_from_slice(&message);
                    batched += framed;
                    if batched >= BATCH_LIMIT {
                        break;
                    }
                }
                Poll::Ready(Some(item)) if batched > 0 => {
                    self.held = Some(item);
                    break;
                }
                Poll::Ready(Some(Ok(message))) => return self.message(message),
                Poll::Ready(Some(Err(err))) => return self.fail(err),
                Poll::Ready(None) => {
                    self.state = State::Done;
                    if batched > 0 {
                        break;
                    }
                    return Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))));
                }
                Poll::Pending if batched > 0 => break,
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Some(Ok(Frame::data(self.buffer.split().freeze()))))
    }
}

impl HttpBody for OutBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(abandoned) = &mut this.abandoned
            && abandoned.as_mut().poll(cx).is_ready()
        {
            // Dropping the source stream tells its producer; the error
            // resets the HTTP/2 stream, which tells the server.
            this.abandoned = None;
            this.state = State::Done;
            this.pending = None;
            this.held = None;
            return Poll::Ready(Some(Err(Error::cancelled(
                "the caller is done with the call",
            )
            .into())));
        }
        if let Some(chunk) = this.pending.take() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        match &mut this.state {
            State::Unary(message) => match message.take() {
                Some(message) => {
                    if this.trailers.is_none() {
                        // A request's only message ends its body: said now,
                        // `is_end_stream` lets HTTP/2 mark this DATA frame
                        // END_STREAM instead of sending an empty one after it
                        // (one frame less per call, for both ends).
                        this.state = State::Done;
                    }
                    this.message(message)
                }
                None => {
                    this.state = State::Done;
                    Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
                }
            },
            State::Stream(_) => this.poll_stream(cx),
            State::Done => Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_none()
            && self.held.is_none()
            && matches!(self.state, State::Done)
            && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.state, &self.pending) {
            (State::Unary(Some(message)), None)
                if self.trailers.is_none() && self.compression == Compression::Identity =>
            {
                SizeHint::with_exact((HEADER_LEN + message.len()) as u64)
            }
            _ => SizeHint::default(),
        }
    }
}

/// Reads the gRPC messages framed in an incoming body, keeping its trailers.
pub(super) struct Decoder<B> {
    body: B,
    /// Unread bytes of the last chunk, when no message is half-assembled.
    pending: Bytes,
    /// A message spanning chunks, being assembled.
    partial: BytesMut,
    max_message_size: usize,
    /// The body's `grpc-encoding`, for messages flagged compressed.
    compression: Compression,
    what: &'static str,
    trailers: Option<HeaderMap>,
    ended: bool,
}

impl<B> Decoder<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    pub(super) fn new(body: B, max_message_size: usize, what: &'static str) -> Decoder<B> {
        Decoder {
            body,
            pending: Bytes::new(),
            partial: BytesMut::new(),
            max_message_size,
            compression: Compression::Identity,
            what,
            trailers: None,
            ended: false,
        }
    }

    /// Reads messages flagged compressed as `compression` (the body's
    /// `grpc-encoding`).
    pub(super) fn with_compression(mut self, compression: Compression) -> Decoder<B> {
        self.compression = compression;
        self
    }

    /// The trailers, once the body has ended.
    pub(super) fn trailers(&self) -> Option<&HeaderMap> {
        self.trailers.as_ref()
    }

    /// The next message; `None` at the end of the body.
    pub(super) async fn next_message(&mut self) -> Result<Option<Bytes>> {
        loop {
            if let Some(message) = self.take_message()? {
                return Ok(Some(message));
            }
            if self.ended {
                if self.pending.is_empty() && self.partial.is_empty() {
                    return Ok(None);
                }
                return Err(Error::unavailable(format!(
                    "the gRPC {} ended inside a message",
                    self.what
                )));
            }
            match self.body.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if self.partial.is_empty() && self.pending.is_empty() => {
                        self.pending = data;
                    }
                    Ok(data) => {
                        self.move_pending_to_partial();
                        self.partial.extend_from_slice(&data);
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            self.trailers = Some(trailers);
                        }
                    }
                },
                Some(Err(err)) => {
                    self.ended = true;
                    return Err(Error::unavailable(format!(
                        "reading the gRPC {} failed",
                        self.what
                    ))
                    .with_source(err.into()));
                }
                None => self.ended = true,
            }
        }
    }

    fn move_pending_to_partial(&mut self) {
        if !self.pending.is_empty() {
            self.partial.extend_from_slice(&self.pending);
            self.pending = Bytes::new();
        }
    }

    /// A whole message from what has arrived, if there is one. The length is
    /// judged from the header before the payload is buffered, so a peer
    /// cannot make this side allocate what it merely claims.
    fn take_message(&mut self) -> Result<Option<Bytes>> {
        let buffered: &[u8] = if self.partial.is_empty() {
            &self.pending
        } else {
            &self.partial
        };
        if buffered.len() < HEADER_LEN {
            return Ok(None);
        }
        let flags = buffered[0];
        let len = u32::from_be_bytes([buffered[1], buffered[2], buffered[3], buffered[4]]) as usize;
        if flags & !COMPRESSED != 0 {
            return Err(Error::internal(format!(
                "a gRPC {} message has reserved flag bits set ({flags:#04x})",
                self.what
            )));
        }
        if len > self.max_message_size {
            return Err(body_too_large(
                &format!("gRPC {} message", self.what),
                len,
                self.max_message_size,
            ));
        }
        if buffered.len() < HEADER_LEN + len {
            // Assemble across chunks, with room for the whole message.
            self.move_pending_to_partial();
            self.partial.reserve(HEADER_LEN + len - self.partial.len());
            return Ok(None);
        }
        let message = if self.partial.is_empty() {
            let message = self.pending.slice(HEADER_LEN..HEADER_LEN + len);
            self.pending.advance(HEADER_LEN + len);
            message
        } else {
            self.partial.advance(HEADER_LEN);
            self.partial.split_to(len).freeze()
        };
        if flags == COMPRESSED {
            // The limit holds for what the message inflates to, too.
            return self
                .compression
                .decompress(message, self.max_message_size, self.what)
                .map(Some);
        }
        Ok(Some(message))
    }

    /// The rest of the messages as a stream; the first error ends it.
    pub(super) fn into_stream(self) -> BodyStream
    where
        B: Send + 'static,
    {
        futures::stream::try_unfold(self, |mut decoder| async move {
            Ok(decoder
                .next_message()
                .await?
                .map(|message| (message, decoder)))
        })
        .boxed()
    }
}

/// A stream of the messages already read, then the rest of `decoder`.
pub(super) fn prepend<B>(read: Vec<Bytes>, decoder: Decoder<B>) -> BodyStream
where
    B: HttpBody<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    futures::stream::iter(read.into_iter().map(Ok))
        .chain(decoder.into_stream())
        .boxed()
}

/// A client's response stream: the messages, then the status from the
/// trailers (an error status is the stream's last item).
pub(super) fn response_stream<B>(read: Vec<Bytes>, decoder: Decoder<B>) -> BodyStream
where
    B: HttpBody<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    let rest = futures::stream::try_unfold(Some(decoder), |decoder| async move {
        let Some(mut decoder) = decoder else {
            return Ok(None);
        };
        match decoder.next_message().await? {
            Some(message) => Ok(Some((message, Some(decoder)))),
            None => {
                check_trailers(decoder.trailers())?;
                Ok(None)
            }
        }
    });
    futures::stream::iter(read.into_iter().map(Ok))
        .chain(rest)
        .boxed()
}

/// The outcome the trailers of a finished response report.
pub(super) fn check_trailers(trailers: Option<&HeaderMap>) -> Result<()> {
    match trailers.map(wire::status_of) {
        Some(Ok(true)) => Ok(()),
        Some(Err(err)) => Err(err),
        Some(Ok(false)) | None => Err(Error::internal(
            "the gRPC response ended without a grpc-status",
        )),
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, StreamBody};

    use super::*;
    use crate::ErrorKind;

    /// Every frame an [`OutBody`] yields, until its end.
    async fn frames(mut body: OutBody) -> Vec<Frame<Bytes>> {
        let mut frames = Vec::new();
        while let Some(frame) = body.frame().await {
            frames.push(frame.expect("a server's response body does not fail"));
        }
        frames
    }

    fn response(messages: Vec<Result<Bytes>>) -> OutBody {
        OutBody::response(
            crate::Body::stream(futures::stream::iter(messages)),
            1 << 20,
            Compression::Identity,
        )
    }

    /// Reads `frames` back as a client would: the messages and the trailers.
    async fn decode(frames: Vec<Frame<Bytes>>) -> (Vec<Bytes>, Option<HeaderMap>) {
        let body = StreamBody::new(futures::stream::iter(
            frames.into_iter().map(Ok::<_, std::convert::Infallible>),
        ));
        let mut decoder = Decoder::new(body, 1 << 20, "response");
        let mut messages = Vec::new();
        while let Some(message) = decoder.next_message().await.expect("well framed") {
            messages.push(message);
        }
        (messages, decoder.trailers().cloned())
    }

    fn data_frames(frames: &[Frame<Bytes>]) -> usize {
        frames.iter().filter(|frame| frame.is_data()).count()
    }

    /// Sends `sent` as a response stream, checks that it went out in `chunks`
    /// DATA frames, and that it reads back whole, in order, with status OK.
    async fn round_trip(sent: Vec<Bytes>, chunks: usize) {
        let frames = frames(response(sent.iter().cloned().map(Ok).collect())).await;
        assert_eq!(data_frames(&frames), chunks);
        let (received, trailers) = decode(frames).await;
        assert_eq!(received, sent);
        check_trailers(trailers.as_ref()).expect("grpc-status 0");
    }

    #[tokio::test]
    async fn ready_small_messages_share_chunks_and_read_back_in_order() {
        let sent: Vec<Bytes> = (0..100u32)
            .map(|i| Bytes::from(vec![i as u8; 1000]))
            .collect();
        // 100 framed messages of 1005 bytes fill chunks of 32 KiB: 4 of them.
        round_trip(sent, 4).await;
    }

    #[tokio::test]
    async fn an_error_after_a_batch_comes_after_its_messages() {
        let frames = frames(response(vec![
            Ok(Bytes::from_static(b"one")),
            Ok(Bytes::from_static(b"two")),
            Err(Error::not_found("gone")),
        ]))
        .await;
        assert_eq!(data_frames(&frames), 1);
        let (received, trailers) = decode(frames).await;
        assert_eq!(received, [&b"one"[..], &b"two"[..]]);
        let err = check_trailers(trailers.as_ref()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn a_large_message_goes_on_its_own_after_the_batch_before_it() {
        let large = Bytes::from(vec![9u8; COPY_LIMIT + 1]);
        let sent = vec![
            Bytes::from_static(b"small"),
            large.clone(),
            Bytes::from_static(b"tail"),
        ];
        // The batch, the large one's header, its payload uncopied, the tail.
        round_trip(sent, 4).await;
    }

    #[tokio::test]
    async fn a_message_over_the_limit_after_a_batch_fails_the_stream_after_it() {
        let body = OutBody::response(
            crate::Body::stream(futures::stream::iter(vec![
                Ok(Bytes::from_static(b"fits")),
                Ok(Bytes::from(vec![0u8; 64])),
            ])),
            16,
            Compression::Identity,
        );
        let frames = frames(body).await;
        let (received, trailers) = decode(frames).await;
        assert_eq!(received, [&b"fits"[..]]);
        let err = check_trailers(trailers.as_ref()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ResourceExhausted);
    }

    #[tokio::test]
    async fn a_message_not_yet_ready_is_not_waited_for() {
        let (sender, receiver) = futures::channel::mpsc::unbounded::<Result<Bytes>>();
        sender
            .unbounded_send(Ok(Bytes::from_static(b"now")))
            .expect("open");
        let mut body = OutBody::response(
            crate::Body::stream(receiver),
            1 << 20,
            Compression::Identity,
        );
        let first = body.frame().await.expect("a frame").expect("data");
        // The first message went out alone although the stream is still open.
        assert_eq!(first.into_data().expect("data").len(), HEADER_LEN + 3);
        drop(sender);
        let rest = frames(body).await;
        assert!(rest.iter().all(|frame| frame.is_trailers()));
    }

    fn unary_request(message: Bytes) -> OutBody {
        OutBody::request(
            crate::Body::Full(message),
            ErrorSlot::default(),
            1 << 20,
            Compression::Identity,
            CancellationToken::new(),
        )
    }

    #[tokio::test]
    async fn a_unary_request_says_it_ended_with_its_only_data_frame() {
        let mut body = unary_request(Bytes::from_static(b"hello"));
        assert!(!body.is_end_stream());
        let data = body.frame().await.expect("a frame").expect("data");
        assert_eq!(data.into_data().expect("data").len(), HEADER_LEN + 5);
        // Known before the next poll, so HTTP/2 sets END_STREAM on that frame
        // rather than sending an empty DATA frame after it.
        assert!(body.is_end_stream());
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn a_large_unary_request_ends_with_its_payload() {
        let mut body = unary_request(Bytes::from(vec![1u8; COPY_LIMIT + 1]));
        let header = body.frame().await.expect("a frame").expect("data");
        assert_eq!(header.into_data().expect("data").len(), HEADER_LEN);
        assert!(!body.is_end_stream(), "the payload is still to come");
        let payload = body.frame().await.expect("a frame").expect("data");
        assert_eq!(payload.into_data().expect("data").len(), COPY_LIMIT + 1);
        assert!(body.is_end_stream());
    }

    #[tokio::test]
    async fn a_unary_response_ends_only_after_its_trailers() {
        let mut body = OutBody::response(
            crate::Body::Full(Bytes::from_static(b"ok")),
            1 << 20,
            Compression::Identity,
        );
        body.frame().await.expect("a frame").expect("data");
        assert!(
            !body.is_end_stream(),
            "the status trailers are still to come"
        );
        let trailers = body.frame().await.expect("a frame").expect("trailers");
        check_trailers(trailers.trailers_ref()).expect("grpc-status 0");
        assert!(body.is_end_stream());
    }

    /// Decodes raw framed bytes with `compression` as the body's encoding.
    async fn decode_raw(raw: Vec<u8>, compression: Compression) -> Result<Vec<Bytes>> {
        let body = StreamBody::new(futures::stream::iter([Ok::<_, std::convert::Infallible>(
            Frame::data(Bytes::from(raw)),
        )]));
        let mut decoder = Decoder::new(body, 1 << 20, "request").with_compression(compression);
        let mut messages = Vec::new();
        while let Some(message) = decoder.next_message().await? {
            messages.push(message);
        }
        Ok(messages)
    }

    #[tokio::test]
    async fn gzip_bodies_flag_every_message_compressed_and_read_back() {
        let sent: Vec<Bytes> = vec![
            Bytes::from(vec![b'a'; 100]),
            Bytes::from(vec![b'b'; COPY_LIMIT + 10]),
            Bytes::from_static(b""),
        ];
        let body = OutBody::response(
            crate::Body::stream(futures::stream::iter(sent.clone().into_iter().map(Ok))),
            1 << 20,
            Compression::Gzip,
        );
        let mut raw = Vec::new();
        for frame in frames(body).await {
            if let Ok(data) = frame.into_data() {
                raw.extend_from_slice(&data);
            }
        }
        // Walk the frames: every flag byte says compressed, every payload is gzip.
        let mut at = 0;
        let mut count = 0;
        while at < raw.len() {
            assert_eq!(raw[at], COMPRESSED, "flag byte of message {count}");
            let len = u32::from_be_bytes(raw[at + 1..at + 5].try_into().unwrap()) as usize;
            assert_eq!(&raw[at + 5..at + 7], [0x1f, 0x8b]);
            at += HEADER_LEN + len;
            count += 1;
        }
        assert_eq!(count, sent.len());
        assert_eq!(decode_raw(raw, Compression::Gzip).await.unwrap(), sent);
    }

    #[tokio::test]
    async fn reserved_flag_bits_and_an_unnamed_encoding_are_internal() {
        for flags in [2u8, 3, 0x80] {
            let err = decode_raw(vec![flags, 0, 0, 0, 1, b'x'], Compression::Gzip)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Internal, "{flags:#x}");
        }
        let gzipped = Compression::Gzip.compress(b"hi").unwrap().unwrap();
        let mut raw = vec![COMPRESSED];
        raw.extend_from_slice(&(gzipped.len() as u32).to_be_bytes());
        raw.extend_from_slice(&gzipped);
        let err = decode_raw(raw.clone(), Compression::Identity)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert_eq!(
            decode_raw(raw, Compression::Gzip).await.unwrap(),
            [&b"hi"[..]]
        );
    }

    #[tokio::test]
    async fn a_message_inflating_past_the_limit_is_resource_exhausted() {
        let bomb = Compression::Gzip
            .compress(&vec![0u8; 8 << 20])
            .unwrap()
            .unwrap();
        let mut raw = vec![COMPRESSED];
        raw.extend_from_slice(&(bomb.len() as u32).to_be_bytes());
        raw.extend_from_slice(&bomb);
        let err = decode_raw(raw, Compression::Gzip).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ResourceExhausted);
    }
}
