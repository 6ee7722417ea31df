//! Streamed bodies over HTTP: each message is a frame of the HTTP body.
//!
//! A frame is one byte of kind, four bytes of big-endian payload length, and
//! the payload. Kind 0 is a message; kind 1 is an error whose payload is the
//! JSON error body and which ends the stream. The end of the HTTP body is the
//! end of the stream. HTTP's own flow control carries the back-pressure: a
//! frame is produced only when the connection can take it, and read only when
//! the receiver pulls the next message.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use http_body::{Body as _, Frame};
use http_body_util::{BodyExt, Either, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;

use super::wire::{error_body_json, error_from_json};
use crate::{BodyStream, BoxError, Error, Result, call::body_too_large};

/// The body type both sides send: a unary message, held as is (no box per
/// call), or a stream of frames.
pub(super) type HttpBody = Either<Full<Bytes>, UnsyncBoxBody<Bytes, BoxError>>;

const MESSAGE: u8 = 0;
const ERROR: u8 = 1;
const HEADER_LEN: usize = 5;

/// A unary body.
pub(super) fn full(bytes: Bytes) -> HttpBody {
    Either::Left(Full::new(bytes))
}

/// Why a unary body could not be read.
#[derive(Debug)]
pub(super) enum ReadError {
    /// The body is over the limit; reading stopped as soon as it passed it.
    TooLarge,
    /// The connection failed while the body was read.
    Failed(hyper::Error),
}

/// Reads a whole unary body of at most `max` bytes. A body that arrives in
/// one piece, as a small message does, is returned as it came, without a copy
/// or a buffer list.
pub(super) async fn read_full(
    mut body: Incoming,
    max: usize,
) -> std::result::Result<Bytes, ReadError> {
    let mut whole = Bytes::new();
    let mut joined: Option<BytesMut> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(ReadError::Failed)?.into_data() else {
            // Trailers carry nothing of the message.
            continue;
        };
        let size = joined.as_ref().map_or(whole.len(), BytesMut::len) + data.len();
        if size > max {
            return Err(ReadError::TooLarge);
        }
        match &mut joined {
            Some(joined) => joined.extend_from_slice(&data),
            None if whole.is_empty() => whole = data,
            None => {
                let mut buffer = BytesMut::with_capacity(size);
                buffer.extend_from_slice(&whole);
                buffer.extend_from_slice(&data);
                joined = Some(buffer);
            }
        }
    }
    Ok(joined.map_or(whole, BytesMut::freeze))
}

/// Frames `stream` as an HTTP body. The first error is sent as an error frame
/// and ends the body.
pub(super) fn encode(stream: BodyStream) -> HttpBody {
    let frames = futures::stream::unfold(Some(stream), |stream| async move {
        let mut stream = stream?;
        match stream.next().await? {
            Ok(message) => match header(MESSAGE, message.len()) {
                Ok(header) => Some((vec![header, message], Some(stream))),
                Err(err) => Some((error_frame(&err), None)),
            },
            Err(err) => Some((error_frame(&err), None)),
        }
    })
    .flat_map(|frames| {
        futures::stream::iter(frames.into_iter().map(|frame| Ok(Frame::data(frame))))
    });
    Either::Right(StreamBody::new(frames).boxed_unsync())
}

fn header(kind: u8, len: usize) -> Result<Bytes> {
    let len = u32::try_from(len)
        .map_err(|_| body_too_large("streamed message", len, u32::MAX as usize))?;
    let mut header = BytesMut::with_capacity(HEADER_LEN);
    header.extend_from_slice(&[kind]);
    header.extend_from_slice(&len.to_be_bytes());
    Ok(header.freeze())
}

fn error_frame(err: &Error) -> Vec<Bytes> {
    let payload = Bytes::from(error_body_json(err));
    match header(ERROR, payload.len()) {
        Ok(header) => vec![header, payload],
        Err(_) => Vec::new(),
    }
}

/// Reads the messages framed in `body`. A message over `max_message_size` is
/// refused from its header, before its payload is read; a body that ends
/// inside a frame is `Unavailable`.
pub(super) fn decode(body: Incoming, max_message_size: usize, what: &'static str) -> BodyStream {
    decoder_stream(Decoder {
        body: Some(body),
        buffer: BytesMut::new(),
        max_message_size,
        what,
        drain_on_drop: false,
    })
}

/// [`decode`] for a request stream on the serving side: when the handler
/// drops it unfinished, the rest of the body is read and discarded (up to
/// [`MAX_DRAIN`] bytes or [`DRAIN_TIME`]) instead of left unread. Closing a
/// connection with unread bytes makes TCP reset it, which can destroy the
/// answer the handler just gave before the caller reads it; draining lets
/// the caller read the answer and stop sending.
pub(super) fn decode_request(body: Incoming, max_message_size: usize) -> BodyStream {
    decoder_stream(Decoder {
        body: Some(body),
        buffer: BytesMut::new(),
        max_message_size,
        what: "request",
        drain_on_drop: true,
    })
}

/// The most of an abandoned request stream read and discarded.
const MAX_DRAIN: usize = 64 * 1024 * 1024;
/// The longest an abandoned request stream is read and discarded.
const DRAIN_TIME: Duration = Duration::from_secs(10);

fn decoder_stream(decoder: Decoder) -> BodyStream {
    // try_unfold ends the stream after its first error.
    futures::stream::try_unfold(decoder, |mut decoder| async move {
        Ok(decoder
            .next_frame()
            .await?
            .map(|message| (message, decoder)))
    })
    .boxed()
}

struct Decoder {
    /// `None` once the body has ended.
    body: Option<Incoming>,
    buffer: BytesMut,
    max_message_size: usize,
    what: &'static str,
    drain_on_drop: bool,
}

impl Drop for Decoder {
    fn drop(&mut self) {
        let Some(mut body) = self.body.take() else {
            return;
        };
        if !self.drain_on_drop || body.is_end_stream() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let drain = async {
                let mut left = MAX_DRAIN;
                while let Some(Ok(frame)) = body.frame().await {
                    let size = frame.data_ref().map_or(0, Bytes::len);
                    if size >= left {
                        break;
                    }
                    left -= size;
                }
            };
            let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
        });
    }
}

/// Ends `messages` with a `Cancelled` error as soon as `cancel` fires: how a
/// caller that stopped waiting for a call stops sending its request stream
/// (the stream's end then tells the server, on HTTP/2 as on HTTP/1.1).
pub(super) fn until_cancelled(messages: BodyStream, cancel: CancellationToken) -> BodyStream {
    futures::stream::unfold(Some((messages, cancel)), |state| async move {
        let (mut messages, cancel) = state?;
        tokio::select! {
            biased;
            () = cancel.cancelled() => Some((
                Err(Error::cancelled("the caller stopped waiting for the call")),
                None,
            )),
            next = messages.next() => next.map(|message| (message, Some((messages, cancel)))),
        }
    })
    .boxed()
}

impl Decoder {
    /// The next message, `None` at the clean end of the body, or the error
    /// that ends the stream.
    async fn next_frame(&mut self) -> Result<Option<Bytes>> {
        loop {
            if self.buffer.len() >= HEADER_LEN {
                let kind = self.buffer[0];
                let len = u32::from_be_bytes([
                    self.buffer[1],
                    self.buffer[2],
                    self.buffer[3],
                    self.buffer[4],
                ]) as usize;
                // The length is judged before any payload is buffered, so a
                // peer cannot make this side allocate what it merely claims.
                let max = match kind {
                    MESSAGE => self.max_message_size,
                    ERROR => MAX_ERROR_FRAME,
                    other => {
                        return Err(Error::invalid_argument(format!(
                            "unknown stream frame kind {other}"
                        )));
                    }
                };
                if len > max {
                    return Err(body_too_large(
                        &format!("streamed {} frame", self.what),
                        len,
                        max,
                    ));
                }
                if self.buffer.len() >= HEADER_LEN + len {
                    self.buffer.advance(HEADER_LEN);
                    let payload = self.buffer.split_to(len).freeze();
                    return if kind == ERROR {
                        Err(error_from_json(&payload))
                    } else {
                        Ok(Some(payload))
                    };
                }
                self.buffer.reserve(HEADER_LEN + len - self.buffer.len());
            }
            let Some(body) = self.body.as_mut() else {
                return Ok(None);
            };
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
                Some(Err(err)) => {
                    return Err(Error::unavailable(format!(
                        "reading the streamed {} failed",
                        self.what
                    ))
                    .with_source(err));
                }
                None if self.buffer.is_empty() => {
                    self.body = None;
                    return Ok(None);
                }
                None => {
                    return Err(Error::unavailable(format!(
                        "the streamed {} ended inside a message",
                        self.what
                    )));
                }
            }
        }
    }
}

/// The largest error frame accepted: error bodies are a code and a message.
const MAX_ERROR_FRAME: usize = 64 * 1024;
