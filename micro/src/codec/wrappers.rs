//! The codec wrappers: [`Json`], [`MsgPack`], [`Proto`] and [`Raw`].

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Serialize, de::DeserializeOwned};

use super::{
    ContentType, Decode, Encode, JSON, MSGPACK, OCTET_STREAM, PROTOBUF, decode_proto,
    encode_proto_into,
};
use crate::Result;

/// Declares a wrapper's shared impls: construction, access, `Deref`.
macro_rules! wrapper {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name<T>(pub T);

        impl<T> $name<T> {
            /// The message inside.
            pub fn into_inner(self) -> T {
                self.0
            }
        }

        impl<T> From<T> for $name<T> {
            fn from(message: T) -> $name<T> {
                $name(message)
            }
        }

        impl<T> std::ops::Deref for $name<T> {
            type Target = T;

            fn deref(&self) -> &T {
                &self.0
            }
        }

        impl<T> std::ops::DerefMut for $name<T> {
            fn deref_mut(&mut self) -> &mut T {
                &mut self.0
            }
        }

        /// The schema of the message inside: the wrapper only picks the codec.
        #[cfg(feature = "schema")]
        impl<T: schemars::JsonSchema> schemars::JsonSchema for $name<T> {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                T::schema_name()
            }

            fn schema_id() -> std::borrow::Cow<'static, str> {
                T::schema_id()
            }

            fn inline_schema() -> bool {
                T::inline_schema()
            }

            fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                T::json_schema(generator)
            }
        }
    };
}

wrapper! {
    /// A serde message carried as JSON only (`application/json`, also
    /// `text/json` and `application/*+json`; an empty content type is JSON).
    /// A plain serde type also answers MessagePack; this one refuses it.
    Json
}

wrapper! {
    /// A serde message carried as MessagePack only (`application/msgpack`,
    /// also `application/x-msgpack`), structs as maps so other languages
    /// read field names. Sent as MessagePack whatever the client's default.
    MsgPack
}

wrapper! {
    /// A protobuf ([`prost::Message`]) message, `application/protobuf`
    /// (also `application/x-protobuf`).
    Proto
}

impl<T: Serialize> Encode for Json<T> {
    const CONTENT_TYPES: &'static [&'static str] = &[JSON];

    fn negotiate(content_type: &str) -> Option<&'static str> {
        only(content_type, ContentType::Json)
    }

    fn encode(&self, _content_type: &str, buffer: &mut BytesMut) -> Result<()> {
        ContentType::Json.encode_into(&self.0, buffer)
    }
}

impl<T: DeserializeOwned> Decode for Json<T> {
    const CONTENT_TYPES: &'static [&'static str] = &[JSON];

    fn negotiate(content_type: &str) -> Option<&'static str> {
        only(content_type, ContentType::Json)
    }

    fn decode(_content_type: &str, body: Bytes) -> Result<Json<T>> {
        ContentType::Json.decode(&body).map(Json)
    }
}

impl<T: Serialize> Encode for MsgPack<T> {
    const CONTENT_TYPES: &'static [&'static str] = &[MSGPACK];

    fn negotiate(content_type: &str) -> Option<&'static str> {
        only(content_type, ContentType::MsgPack)
    }

    fn encode(&self, _content_type: &str, buffer: &mut BytesMut) -> Result<()> {
        ContentType::MsgPack.encode_into(&self.0, buffer)
    }
}

impl<T: DeserializeOwned> Decode for MsgPack<T> {
    const CONTENT_TYPES: &'static [&'static str] = &[MSGPACK];

    fn negotiate(content_type: &str) -> Option<&'static str> {
        only(content_type, ContentType::MsgPack)
    }

    fn decode(_content_type: &str, body: Bytes) -> Result<MsgPack<T>> {
        ContentType::MsgPack.decode(&body).map(MsgPack)
    }
}

impl<T: prost::Message> Encode for Proto<T> {
    const CONTENT_TYPES: &'static [&'static str] = &[PROTOBUF];

    fn negotiate(content_type: &str) -> Option<&'static str> {
        only(content_type, ContentType::Protobuf)
    }

    fn encode(&self, _content_type: &str, buffer: &mut BytesMut) -> Result<()> {
        encode_proto_into(&self.0, buffer);
        Ok(())
    }
}

impl<T: prost::Message + Default> Decode for Proto<T> {
    const CONTENT_TYPES: &'static [&'static str] = &[PROTOBUF];

    fn negotiate(content_type: &str) -> Option<&'static str> {
        only(content_type, ContentType::Protobuf)
    }

    fn decode(_content_type: &str, body: Bytes) -> Result<Proto<T>> {
        decode_proto(&body).map(Proto)
    }
}

/// `content_type` as `expected`'s canonical name, if it names it.
fn only(content_type: &str, expected: ContentType) -> Option<&'static str> {
    (ContentType::parse(content_type).ok()? == expected).then_some(expected.as_str())
}

/// Raw bytes, passed through unchanged: `application/octet-stream`.
///
/// A handler taking `Raw` accepts a request of any content type (it is in
/// [`Context::metadata`](crate::Context::metadata) under `content-type`,
/// the handler's only way to see it) and replies `application/octet-stream`.
/// A call sending `Raw` labels it `application/octet-stream`, or the content
/// type the call sets ([`CallBuilder::content_type`](crate::client::CallBuilder::content_type)).
///
/// (`bytes::Bytes` itself cannot be the codec: with serde's support for it
/// turned on, it is a serde type.)
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Raw(pub Bytes);

impl Raw {
    /// The bytes inside.
    pub fn into_inner(self) -> Bytes {
        self.0
    }
}

/// Raw from the byte containers `Bytes` converts from.
macro_rules! raw_from {
    ($($source:ty),*) => {
        $(impl From<$source> for Raw {
            fn from(bytes: $source) -> Raw {
                Raw(Bytes::from(bytes))
            }
        })*
    };
}

raw_from!(Bytes, Vec<u8>, String, &'static [u8], &'static str);

impl std::ops::Deref for Raw {
    type Target = Bytes;

    fn deref(&self) -> &Bytes {
        &self.0
    }
}

impl Encode for Raw {
    const CONTENT_TYPES: &'static [&'static str] = &[OCTET_STREAM];

    /// Any content type: the bytes are sent as they are, labelled as asked.
    fn negotiate(_content_type: &str) -> Option<&'static str> {
        Some(OCTET_STREAM)
    }

    fn encode(&self, _content_type: &str, buffer: &mut BytesMut) -> Result<()> {
        buffer.put_slice(&self.0);
        Ok(())
    }
}

impl Decode for Raw {
    const CONTENT_TYPES: &'static [&'static str] = &[OCTET_STREAM];

    /// Any content type: the bytes are taken as they are.
    fn negotiate(_content_type: &str) -> Option<&'static str> {
        Some(OCTET_STREAM)
    }

    fn decode(_content_type: &str, body: Bytes) -> Result<Raw> {
        Ok(Raw(body))
    }
}
