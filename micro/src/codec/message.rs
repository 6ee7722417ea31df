//! The [`Encode`], [`Decode`] and [`Codec`] traits: how a message type
//! names its content types and crosses the wire.

use std::any::type_name;

use bytes::{Bytes, BytesMut};
use serde::{Serialize, de::DeserializeOwned};

use super::{ContentType, JSON, MSGPACK};
use crate::{Error, Result};

/// A message type micro can send: a request on the calling side, a reply on
/// the serving side, a published event.
///
/// Implemented for every serde type (sent as JSON or MessagePack, see the
/// [module docs](crate::codec#choosing-the-codec)) and for the wrappers
/// [`Json`](super::Json), [`MsgPack`](super::MsgPack), [`Proto`](super::Proto)
/// and [`Raw`](super::Raw). Implement it (and [`Decode`]) on a wrapper of
/// your own to add a codec; see [`Codec`].
pub trait Encode {
    /// The content types this type is written as, canonical names; the first
    /// is the one sent when the call asks for none of the others.
    const CONTENT_TYPES: &'static [&'static str];

    /// The content type, one of [`CONTENT_TYPES`](Encode::CONTENT_TYPES),
    /// that `content_type` (as a header carries it: any case, with
    /// parameters, an alias) names; `None` when this type cannot be written
    /// as it. The default compares the name without its parameters.
    fn negotiate(content_type: &str) -> Option<&'static str> {
        negotiate(content_type, Self::CONTENT_TYPES)
    }

    /// Appends the message, written as `content_type` (one
    /// [`negotiate`](Encode::negotiate) returned), to `buffer`. On failure
    /// `buffer` must be left as it was: a stream writes all its messages
    /// into one buffer.
    fn encode(&self, content_type: &str, buffer: &mut BytesMut) -> Result<()>;
}

/// A message type micro can receive: a request on the serving side, a reply
/// on the calling side, a subscribed event. The counterpart of [`Encode`].
pub trait Decode: Sized {
    /// The content types this type is read from, canonical names; the first
    /// is the one assumed when a message names none.
    const CONTENT_TYPES: &'static [&'static str];

    /// The content type, one of [`CONTENT_TYPES`](Decode::CONTENT_TYPES),
    /// that `content_type` names; `None` when this type cannot be read from
    /// it, which makes the request an `InvalidArgument` error listing
    /// `CONTENT_TYPES`. The default compares the name without its parameters.
    fn negotiate(content_type: &str) -> Option<&'static str> {
        negotiate(content_type, Self::CONTENT_TYPES)
    }

    /// Reads a message written as `content_type` (one
    /// [`negotiate`](Decode::negotiate) returned). Malformed input is an
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument)
    /// error naming the type.
    fn decode(content_type: &str, body: Bytes) -> Result<Self>;
}

/// A message type that is both [`Encode`] and [`Decode`]: what a codec is.
///
/// micro's codecs are types, as axum's extractors are: a handler or a call
/// taking [`Proto<T>`](super::Proto) speaks protobuf, one taking a plain
/// serde type speaks JSON or MessagePack. To add one (CBOR, say), wrap the
/// message in a type of your own and implement [`Encode`] and [`Decode`] for
/// it; `Codec` then holds for it, and every `handle`, `send`, stream,
/// `publish` and `subscribe` takes it:
///
/// ```
/// use bytes::{BufMut, Bytes, BytesMut};
/// use micro::codec::{Decode, Encode};
///
/// /// Text messages, `text/plain`.
/// struct Text(String);
///
/// impl Encode for Text {
///     const CONTENT_TYPES: &'static [&'static str] = &["text/plain"];
///     fn encode(&self, _content_type: &str, buffer: &mut BytesMut) -> micro::Result<()> {
///         buffer.put_slice(self.0.as_bytes());
///         Ok(())
///     }
/// }
///
/// impl Decode for Text {
///     const CONTENT_TYPES: &'static [&'static str] = &["text/plain"];
///     fn decode(_content_type: &str, body: Bytes) -> micro::Result<Text> {
///         String::from_utf8(body.to_vec())
///             .map(Text)
///             .map_err(|err| micro::Error::invalid_argument(format!("not UTF-8: {err}")))
///     }
/// }
///
/// let server = micro::Server::new().handle("Echo.Shout", |_ctx, Text(text): Text| async move {
///     Ok(Text(text.to_uppercase()))
/// });
/// # let _ = server;
/// ```
pub trait Codec: Encode + Decode {}

impl<T: Encode + Decode> Codec for T {}

/// The default [`Encode::negotiate`] and [`Decode::negotiate`]: the entry
/// of `accepted` that `content_type` names, ignoring case and parameters.
pub fn negotiate(content_type: &str, accepted: &[&'static str]) -> Option<&'static str> {
    if let Some(exact) = accepted.iter().find(|name| **name == content_type) {
        return Some(exact);
    }
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    accepted
        .iter()
        .find(|name| name.eq_ignore_ascii_case(essence))
        .copied()
}

/// The serde formats, JSON first: what a plain serde type is carried as.
const SERDE: &[&str] = &[JSON, MSGPACK];

/// The serde format `content_type` names (an empty one is JSON), if any.
pub(super) fn serde_format(content_type: &str) -> Option<ContentType> {
    ContentType::parse(content_type)
        .ok()
        .filter(|parsed| parsed.is_serde())
}

impl<T: Serialize + ?Sized> Encode for T {
    const CONTENT_TYPES: &'static [&'static str] = SERDE;

    fn negotiate(content_type: &str) -> Option<&'static str> {
        serde_format(content_type).map(ContentType::as_str)
    }

    fn encode(&self, content_type: &str, buffer: &mut BytesMut) -> Result<()> {
        serde_format(content_type)
            .ok_or_else(|| not_serde::<T>(content_type))?
            .encode_into(self, buffer)
    }
}

impl<T: DeserializeOwned> Decode for T {
    const CONTENT_TYPES: &'static [&'static str] = SERDE;

    fn negotiate(content_type: &str) -> Option<&'static str> {
        serde_format(content_type).map(ContentType::as_str)
    }

    fn decode(content_type: &str, body: Bytes) -> Result<T> {
        serde_format(content_type)
            .ok_or_else(|| not_serde::<T>(content_type))?
            .decode(&body)
    }
}

fn not_serde<T: ?Sized>(content_type: &str) -> Error {
    Error::invalid_argument(format!(
        "{} is a serde type, carried as {JSON} or {MSGPACK}, not {content_type}",
        type_name::<T>()
    ))
}

/// Encodes one message into a buffer of its own.
pub(crate) fn encode_message<T: Encode + ?Sized>(message: &T, content_type: &str) -> Result<Bytes> {
    let mut buffer = BytesMut::with_capacity(128);
    message.encode(content_type, &mut buffer)?;
    Ok(buffer.freeze())
}

/// The error for a message whose content type `T` does not read or write.
pub(crate) fn refused(content_type: &str, accepted: &[&str], what: &str) -> Error {
    Error::invalid_argument(format!(
        "{what} accepts {}, not {content_type:?}",
        accepted.join(" or ")
    ))
}

/// The content type a request to an endpoint taking `Req` is read as, or
/// the `InvalidArgument` error naming what `endpoint` accepts.
pub(crate) fn negotiate_request<Req: Decode>(
    content_type: &str,
    endpoint: &str,
) -> Result<&'static str> {
    Req::negotiate(content_type).ok_or_else(|| refused(content_type, Req::CONTENT_TYPES, endpoint))
}

/// The content type a reply of type `Resp` is written as: the request's, if
/// `Resp` writes it, else `Resp`'s first.
pub(crate) fn reply_format<Resp: Encode + ?Sized>(request_format: &str) -> &'static str {
    Resp::negotiate(request_format).unwrap_or(Resp::CONTENT_TYPES[0])
}

/// How a received message with `content_type` is read as `T`: an empty
/// content type is `T`'s first.
pub(crate) fn incoming_format<T: Decode>(content_type: &str) -> Option<&'static str> {
    if content_type.is_empty() {
        return T::CONTENT_TYPES.first().copied();
    }
    T::negotiate(content_type)
}
