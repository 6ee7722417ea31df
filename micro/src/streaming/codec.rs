//! How the streaming methods encode and decode messages: one codec type per
//! family of message types, so each streaming shape is written once.

use bytes::{Bytes, BytesMut};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    Result,
    codec::{self, ContentType},
};

/// A family of message types and the content types that carry them.
pub(crate) trait Codec: Send + Sync + 'static {
    /// The content types a handler of this family accepts.
    const ACCEPTS: &'static [ContentType];
}

/// Encodes messages of type `T`.
pub(crate) trait Encode<T>: Codec {
    fn encode(content_type: ContentType, message: &T) -> Result<Bytes>;

    /// Appends the encoded message to `buffer` (left as it was on failure).
    /// A stream encodes all its messages into one buffer and splits each off,
    /// so small messages cost no allocation each.
    fn encode_into(content_type: ContentType, message: &T, buffer: &mut BytesMut) -> Result<()>;
}

/// Decodes messages of type `T`.
pub(crate) trait Decode<T>: Codec {
    fn decode(content_type: ContentType, bytes: &[u8]) -> Result<T>;
}

/// serde types, as JSON or MessagePack.
pub(crate) struct Serde;

impl Codec for Serde {
    const ACCEPTS: &'static [ContentType] = &[ContentType::Json, ContentType::MsgPack];
}

impl<T: Serialize> Encode<T> for Serde {
    fn encode(content_type: ContentType, message: &T) -> Result<Bytes> {
        content_type.encode(message)
    }

    fn encode_into(content_type: ContentType, message: &T, buffer: &mut BytesMut) -> Result<()> {
        content_type.encode_into(message, buffer)
    }
}

impl<T: DeserializeOwned> Decode<T> for Serde {
    fn decode(content_type: ContentType, bytes: &[u8]) -> Result<T> {
        content_type.decode(bytes)
    }
}

/// prost messages, as protobuf.
pub(crate) struct Proto;

impl Codec for Proto {
    const ACCEPTS: &'static [ContentType] = &[ContentType::Protobuf];
}

impl<T: prost::Message> Encode<T> for Proto {
    fn encode(_content_type: ContentType, message: &T) -> Result<Bytes> {
        Ok(codec::encode_proto(message))
    }

    fn encode_into(_content_type: ContentType, message: &T, buffer: &mut BytesMut) -> Result<()> {
        codec::encode_proto_into(message, buffer);
        Ok(())
    }
}

impl<T: prost::Message + Default> Decode<T> for Proto {
    fn decode(_content_type: ContentType, bytes: &[u8]) -> Result<T> {
        codec::decode_proto(bytes)
    }
}
