//! gRPC message framing: each message is one byte of flags (0: not
//! compressed), four bytes of big-endian length and the payload; a response
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

use super::wire;
use crate::{BodyStream, BoxError, Error, Result, call::body_too_large};

const HEADER_LEN: usize = 5;

/// Payloads up to this size are copied behind their header into one buffer
/// (one DATA chunk); larger ones go out as header and payload, uncopied.
const COPY_LIMIT: usize = 16 * 1024;

/// The frame header of a message of `len` bytes.
fn header(len: usize) -> Result<[u8; HEADER_LEN]> {
    let len =
        u32::try_from(len).map_err(|_| body_too_large("gRPC message", len, u32::MAX as usize))?;
    let len = len.to_be_bytes();
    Ok([0, len[0], len[1], len[2], len[3]])
}

/// Frames one message as one or two chunks.
fn frame(message: Bytes) -> Result<(Bytes, Option<Bytes>)> {
    let header = header(message.len())?;
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
    /// Server side: trailers carry the outcome. Client side: `None`.
    trailers: Option<HeaderMap>,
    /// Client side: where a failing request stream's error goes.
    error_slot: Option<ErrorSlot>,
    /// The largest message sent; a larger one fails the stream.
    max_message_size: usize,
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
    pub(super) fn response(body: crate::Body, max_message_size: usize) -> OutBody {
        OutBody::new(body, Some(wire::ok_trailers()), None, max_message_size)
    }

    /// A client's request: the messages and nothing more. A stream's error
    /// goes into `error_slot` and resets the HTTP/2 stream.
    pub(super) fn request(
        body: crate::Body,
        error_slot: ErrorSlot,
        max_message_size: usize,
        abandoned: CancellationToken,
    ) -> OutBody {
        let mut body = OutBody::new(body, None, Some(error_slot), max_message_size);
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
    ) -> OutBody {
        let state = match body {
            crate::Body::Full(bytes) => State::Unary(Some(bytes)),
            crate::Body::Stream(stream) => State::Stream(stream),
        };
        OutBody {
            state,
            pending: None,
            trailers,
            error_slot,
            max_message_size,
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
        match frame(message) {
            Ok((first, rest)) => {
                self.pending = rest;
                Poll::Ready(Some(Ok(Frame::data(first))))
            }
            Err(err) => self.fail(err),
        }
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
                Some(message) => this.message(message),
                None => {
                    this.state = State::Done;
                    Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
                }
            },
            State::Stream(stream) => match stream.poll_next_unpin(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Some(Ok(message))) => this.message(message),
                Poll::Ready(Some(Err(err))) => this.fail(err),
                Poll::Ready(None) => {
                    this.state = State::Done;
                    Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
                }
            },
            State::Done => Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_none() && matches!(self.state, State::Done) && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.state, &self.pending) {
            (State::Unary(Some(message)), None) if self.trailers.is_none() => {
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
            what,
            trailers: None,
            ended: false,
        }
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
        if flags & 1 == 1 {
            return Err(Error::unimplemented(
                "compressed gRPC messages are not supported; send them uncompressed",
            ));
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
        if self.partial.is_empty() {
            let message = self.pending.slice(HEADER_LEN..HEADER_LEN + len);
            self.pending.advance(HEADER_LEN + len);
            Ok(Some(message))
        } else {
            self.partial.advance(HEADER_LEN);
            let message = self.partial.split_to(len).freeze();
            Ok(Some(message))
        }
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
