//! Codecs: how messages become bytes and back.
//!
//! Codecs are types. A handler, a call, a stream, a publisher and a
//! subscriber each name their message types, and the types say how they
//! cross the wire ([`Encode`], [`Decode`], together [`Codec`]):
//!
//! | message type | content type | also accepted |
//! |---|---|---|
//! | any serde type (`T: Serialize` / `DeserializeOwned`) | `application/json` or `application/msgpack`, see below | `text/json`, `application/*+json`, `application/x-msgpack` |
//! | [`Json<T>`] | `application/json` only (the default when none is given) | `text/json`, `application/*+json` |
//! | [`MsgPack<T>`] | `application/msgpack` only, structs as maps so other languages read field names | `application/x-msgpack` |
//! | [`Proto<T>`] ([`prost::Message`] types) | `application/protobuf` | `application/x-protobuf` |
//! | [`Raw`] | `application/octet-stream`, bytes passed through unchanged | any, on the serving side |
//! | a type of your own | what its [`Encode`]/[`Decode`] impls say | |
//!
//! # Choosing the codec
//!
//! A plain serde type is carried as JSON or MessagePack, chosen per message:
//!
//! - a handler (or subscriber) taking one reads the request in the content
//!   type the request names (none, or an empty one, is JSON) and writes its
//!   reply in the same one, so one handler serves JSON and MessagePack
//!   callers alike;
//! - a call sending one uses the call's content type
//!   ([`CallBuilder::content_type`](crate::client::CallBuilder::content_type)),
//!   else the client's ([`ClientBuilder::content_type`](crate::ClientBuilder::content_type),
//!   JSON unless set); a reply is read in the content type the server
//!   answers with.
//!
//! The wrappers pin one codec: a [`Json<T>`] handler refuses MessagePack and
//! a [`MsgPack<T>`] call sends MessagePack whatever the client's default. A
//! request in a content type the handler's type does not read is an
//! [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) error
//! naming the ones it does. A reply is written in the request's content type
//! when the reply type writes it, else in the reply type's first.
//!
//! An empty JSON body reads as `null`, so endpoints taking `()` or an
//! `Option` need none. Parameters such as `; charset=utf-8` are ignored and names are compared
//! case-insensitively. Every failure is an [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument)
//! error: a malformed body names the type it was decoded into (and, for JSON,
//! the line and column), an unknown content type lists the supported ones.
//!
//! [`ContentType`] is the set of content types micro itself knows, with the
//! serde encoders behind them:
//!
//! ```
//! use micro::codec::ContentType;
//!
//! let json = ContentType::parse("application/json; charset=utf-8")?;
//! let bytes = json.encode(&(1, "one"))?;
//! assert_eq!(&bytes[..], br#"[1,"one"]"#);
//! let back: (u32, String) = json.decode(&bytes)?;
//! assert_eq!(back, (1, "one".to_owned()));
//!
//! let msgpack = ContentType::parse("application/x-msgpack")?;
//! assert_eq!(msgpack, ContentType::MsgPack);
//! # Ok::<(), micro::Error>(())
//! ```

mod message;
mod wrappers;

pub use message::{Codec, Decode, Encode, negotiate};
pub(crate) use message::{encode_message, incoming_format, negotiate_request, reply_format};
pub use wrappers::{Json, MsgPack, Proto, Raw};

use std::{any::type_name, fmt};

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Serialize, de::DeserializeOwned};

use crate::{Error, Result};

/// The JSON content type.
pub const JSON: &str = "application/json";
/// The MessagePack content type.
pub const MSGPACK: &str = "application/msgpack";
/// The protobuf content type.
pub const PROTOBUF: &str = "application/protobuf";
/// The raw bytes content type.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// Every content type micro understands, in its canonical spelling.
pub const SUPPORTED: [&str; 4] = [JSON, MSGPACK, PROTOBUF, OCTET_STREAM];

/// A content type micro can encode and decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ContentType {
    /// `application/json`: any serde type.
    #[default]
    Json,
    /// `application/msgpack`: any serde type, structs encoded as maps.
    MsgPack,
    /// `application/protobuf`: [`prost::Message`] types.
    Protobuf,
    /// `application/octet-stream`: raw bytes.
    Raw,
}

impl ContentType {
    /// Recognises a content type; an empty string is JSON.
    ///
    /// Unknown types are an `InvalidArgument` error listing the supported ones.
    pub fn parse(content_type: &str) -> Result<ContentType> {
        // Every call parses its content type, nearly always a canonical name:
        // recognise those without lower-casing a copy.
        match content_type {
            "" | JSON => return Ok(ContentType::Json),
            MSGPACK => return Ok(ContentType::MsgPack),
            PROTOBUF => return Ok(ContentType::Protobuf),
            OCTET_STREAM => return Ok(ContentType::Raw),
            _ => {}
        }
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "" | JSON | "text/json" => Ok(ContentType::Json),
            MSGPACK | "application/x-msgpack" | "application/vnd.msgpack" => {
                Ok(ContentType::MsgPack)
            }
            PROTOBUF | "application/x-protobuf" => Ok(ContentType::Protobuf),
            OCTET_STREAM => Ok(ContentType::Raw),
            other if other.starts_with("application/") && other.ends_with("+json") => {
                Ok(ContentType::Json)
            }
            _ => Err(Error::invalid_argument(format!(
                "unsupported content type {content_type:?}; supported: {}",
                SUPPORTED.join(", ")
            ))),
        }
    }

    /// The canonical name (`application/json`).
    pub fn as_str(self) -> &'static str {
        match self {
            ContentType::Json => JSON,
            ContentType::MsgPack => MSGPACK,
            ContentType::Protobuf => PROTOBUF,
            ContentType::Raw => OCTET_STREAM,
        }
    }

    /// Whether this codec encodes serde types (JSON and MessagePack).
    pub fn is_serde(self) -> bool {
        matches!(self, ContentType::Json | ContentType::MsgPack)
    }

    /// Encodes a serde value. Only JSON and MessagePack encode serde types;
    /// the others are an `InvalidArgument` error.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Bytes> {
        let mut buffer = BytesMut::with_capacity(128);
        self.encode_into(value, &mut buffer)?;
        Ok(buffer.freeze())
    }

    /// Appends an encoded serde value to `buffer`; on failure `buffer` is
    /// left as it was. Streams encode every message into one buffer this way.
    pub(crate) fn encode_into<T: Serialize + ?Sized>(
        self,
        value: &T,
        buffer: &mut BytesMut,
    ) -> Result<()> {
        let start = buffer.len();
        let encoded = match self {
            ContentType::Json => {
                serde_json::to_writer((&mut *buffer).writer(), value).map_err(|err| err.to_string())
            }
            ContentType::MsgPack => {
                rmp_serde::encode::write_named(&mut (&mut *buffer).writer(), value)
                    .map_err(|err| err.to_string())
            }
            ContentType::Protobuf | ContentType::Raw => return Err(self.not_serde::<T>()),
        };
        encoded.map_err(|err| {
            buffer.truncate(start);
            Error::invalid_argument(format!(
                "cannot encode {} as {}: {err}",
                type_name::<T>(),
                self.as_str()
            ))
        })
    }

    /// Decodes a serde value. Only JSON and MessagePack decode serde types;
    /// the others are an `InvalidArgument` error.
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T> {
        match self {
            // An empty body reads as `null`, so `()` and `Option` take no body.
            ContentType::Json if bytes.is_empty() => {
                serde_json::from_slice(b"null").map_err(|err| {
                    Error::invalid_argument(format!(
                        "empty {JSON} body, but {} needs one: {err}",
                        type_name::<T>()
                    ))
                })
            }
            ContentType::Json => serde_json::from_slice(bytes).map_err(|err| {
                Error::invalid_argument(format!(
                    "malformed {JSON} body for {} at line {} column {}: {err}",
                    type_name::<T>(),
                    err.line(),
                    err.column()
                ))
            }),
            ContentType::MsgPack => rmp_serde::from_slice(bytes).map_err(|err| {
                Error::invalid_argument(format!(
                    "malformed {MSGPACK} body for {}: {err}",
                    type_name::<T>()
                ))
            }),
            ContentType::Protobuf | ContentType::Raw => Err(self.not_serde::<T>()),
        }
    }

    fn not_serde<T: ?Sized>(self) -> Error {
        Error::invalid_argument(format!(
            "{} carries {}, which is not a {} message; use {JSON} or {MSGPACK}",
            type_name::<T>(),
            self.as_str(),
            self.as_str()
        ))
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Encodes a protobuf message (`application/protobuf`).
#[cfg(test)]
fn encode_proto<T: prost::Message>(message: &T) -> Bytes {
    Bytes::from(message.encode_to_vec())
}

/// Appends an encoded protobuf message to `buffer`, which grows to fit it.
pub(crate) fn encode_proto_into<T: prost::Message>(message: &T, buffer: &mut BytesMut) {
    buffer.reserve(message.encoded_len());
    // Only a buffer that cannot grow fails to take a message; this one grows.
    message.encode_raw(buffer);
}

/// Decodes a protobuf message; malformed input is an `InvalidArgument` error
/// naming the expected type.
pub(crate) fn decode_proto<T: prost::Message + Default>(bytes: &[u8]) -> Result<T> {
    T::decode(bytes).map_err(|err| {
        Error::invalid_argument(format!(
            "malformed {PROTOBUF} body for {}: {err}",
            type_name::<T>()
        ))
    })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::ErrorKind;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Inner {
        id: u64,
        tags: Vec<String>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Outer {
        name: String,
        inner: Inner,
        maybe: Option<f64>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Ping {
        #[prost(string, tag = "1")]
        text: String,
        #[prost(uint32, tag = "2")]
        count: u32,
    }

    fn outer() -> Outer {
        Outer {
            name: "ada".into(),
            inner: Inner {
                id: 7,
                tags: vec!["a".into(), "b".into()],
            },
            maybe: Some(1.5),
        }
    }

    #[test]
    fn encoding_into_a_buffer_appends_and_a_failure_leaves_it_as_it_was() {
        for codec in [ContentType::Json, ContentType::MsgPack] {
            let mut buffer = BytesMut::from(&b"kept"[..]);
            codec.encode_into(&outer(), &mut buffer).unwrap();
            assert_eq!(&buffer[..4], b"kept");
            let decoded: Outer = codec.decode(&buffer[4..]).unwrap();
            assert_eq!(decoded, outer());
        }
        // JSON map keys must be strings: this fails after writing "{".
        let unencodable: std::collections::BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
        let mut buffer = BytesMut::from(&b"kept"[..]);
        let err = ContentType::Json
            .encode_into(&unencodable, &mut buffer)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert_eq!(&buffer[..], b"kept");
    }

    #[test]
    fn parses_canonical_names_aliases_parameters_and_empty() {
        for (text, expected) in [
            ("", ContentType::Json),
            ("application/json", ContentType::Json),
            ("Application/JSON; charset=utf-8", ContentType::Json),
            ("application/problem+json", ContentType::Json),
            ("application/msgpack", ContentType::MsgPack),
            ("application/x-msgpack", ContentType::MsgPack),
            ("application/protobuf", ContentType::Protobuf),
            ("application/x-protobuf", ContentType::Protobuf),
            ("application/octet-stream", ContentType::Raw),
        ] {
            assert_eq!(ContentType::parse(text).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn unknown_content_type_lists_the_supported_ones() {
        let err = ContentType::parse("text/xml").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        for supported in SUPPORTED {
            assert!(err.message().contains(supported), "{err}");
        }
    }

    #[test]
    fn json_and_msgpack_round_trip_nested_structs() {
        for codec in [ContentType::Json, ContentType::MsgPack] {
            let bytes = codec.encode(&outer()).unwrap();
            assert_eq!(codec.decode::<Outer>(&bytes).unwrap(), outer());
        }
    }

    #[test]
    fn msgpack_encodes_structs_as_maps_with_field_names() {
        let bytes = ContentType::MsgPack.encode(&outer()).unwrap();
        // Read back schema-less, as a reader in another language would.
        let generic: serde_json::Value = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(generic["name"], "ada");
        assert_eq!(generic["inner"]["id"], 7);
        assert_eq!(generic["inner"]["tags"][1], "b");
    }

    #[test]
    fn malformed_json_names_the_type_and_position() {
        let err = ContentType::Json
            .decode::<Outer>(b"{\n  \"name\": 5\n}")
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.message().contains("Outer"), "{err}");
        assert!(err.message().contains("line 2"), "{err}");
    }

    #[test]
    fn empty_json_reads_as_null() {
        ContentType::Json.decode::<()>(b"").unwrap();
        assert_eq!(ContentType::Json.decode::<Option<u8>>(b"").unwrap(), None);
        let err = ContentType::Json.decode::<Outer>(b"").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.message().contains("Outer"), "{err}");
    }

    #[test]
    fn malformed_msgpack_names_the_type() {
        let err = ContentType::MsgPack
            .decode::<Outer>(&[0xc1, 0x00])
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.message().contains("Outer"), "{err}");
    }

    #[test]
    fn serde_types_are_rejected_by_protobuf_and_raw_codecs() {
        for codec in [ContentType::Protobuf, ContentType::Raw] {
            assert_eq!(
                codec.encode(&1u8).unwrap_err().kind(),
                ErrorKind::InvalidArgument
            );
            assert_eq!(
                codec.decode::<u8>(b"1").unwrap_err().kind(),
                ErrorKind::InvalidArgument
            );
        }
    }

    #[test]
    fn protobuf_round_trips_and_rejects_garbage() {
        let ping = Ping {
            text: "hi".into(),
            count: 3,
        };
        let bytes = encode_proto(&ping);
        assert_eq!(decode_proto::<Ping>(&bytes).unwrap(), ping);
        let err = decode_proto::<Ping>(&[0x0a, 0xff]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.message().contains("Ping"), "{err}");
    }
}
