//! Message compression, as gRPC negotiates it: a sender names its encoding
//! in `grpc-encoding` and sets the flag byte of each compressed message; a
//! receiver lists what it can read in `grpc-accept-encoding`.

use std::{fmt, io::Read, str::FromStr};

use ::http::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;
use flate2::{Compression as Level, read::GzDecoder, write::GzEncoder};
use serde::{Deserialize, Serialize};

use crate::{Error, Result, call::body_too_large};

/// The header naming the encoding of a side's compressed messages.
pub(super) const GRPC_ENCODING: HeaderName = HeaderName::from_static("grpc-encoding");
/// The header listing the encodings a side can read.
pub(super) const GRPC_ACCEPT_ENCODING: HeaderName = HeaderName::from_static("grpc-accept-encoding");
/// What micro reads, as [`GRPC_ACCEPT_ENCODING`] says it.
pub(super) const ACCEPTED: HeaderValue = HeaderValue::from_static("gzip,identity");

/// How the messages a gRPC transport sends are compressed.
///
/// Whatever is chosen, both sides read `gzip` and `identity` messages and say
/// so in `grpc-accept-encoding`. A server answers a gzip-compressed request
/// with gzip-compressed messages; with [`Compression::Gzip`] it compresses
/// every answer to a caller that accepts gzip, and a client compresses every
/// request.
///
/// ```
/// use micro_transport::grpc::Compression;
///
/// assert_eq!("gzip".parse::<Compression>().unwrap(), Compression::Gzip);
/// assert_eq!(Compression::default(), Compression::Identity);
/// assert_eq!(Compression::Gzip.to_string(), "gzip");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Compression {
    /// Not compressed (the default).
    #[default]
    Identity,
    /// gzip (RFC 1952), as every gRPC implementation offers it.
    Gzip,
}

impl Compression {
    /// The name gRPC headers use for it.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Identity => "identity",
            Compression::Gzip => "gzip",
        }
    }

    /// The `grpc-encoding` a peer's headers name: identity when absent; an
    /// encoding micro cannot read is `Unimplemented`.
    pub(super) fn of_headers(headers: &HeaderMap) -> Result<Compression> {
        let Some(value) = headers.get(GRPC_ENCODING) else {
            return Ok(Compression::Identity);
        };
        value
            .to_str()
            .ok()
            .and_then(|name| name.trim().parse().ok())
            .ok_or_else(|| {
                Error::unimplemented(format!(
                    "grpc-encoding {:?} is not supported; accepted: {}",
                    String::from_utf8_lossy(value.as_bytes()),
                    "gzip, identity"
                ))
            })
    }

    /// Whether a peer's `grpc-accept-encoding` lists this encoding (identity
    /// is always accepted).
    pub(super) fn accepted_by(self, headers: &HeaderMap) -> bool {
        self == Compression::Identity
            || headers.get_all(GRPC_ACCEPT_ENCODING).iter().any(|value| {
                value.to_str().is_ok_and(|list| {
                    list.split(',')
                        .any(|name| name.trim().eq_ignore_ascii_case(self.name()))
                })
            })
    }

    /// Writes `grpc-encoding` for a body compressed this way (nothing for identity).
    pub(super) fn insert_into(self, headers: &mut HeaderMap) {
        if self == Compression::Gzip {
            headers.insert(GRPC_ENCODING, HeaderValue::from_static("gzip"));
        }
    }

    /// Compresses one message; `None` for identity.
    pub(super) fn compress(self, message: &[u8]) -> Result<Option<Bytes>> {
        match self {
            Compression::Identity => Ok(None),
            Compression::Gzip => {
                // Compressed text is usually far smaller; start at a quarter.
                let mut encoder =
                    GzEncoder::new(Vec::with_capacity(message.len() / 4 + 32), Level::fast());
                std::io::Write::write_all(&mut encoder, message)
                    .and_then(|()| encoder.finish())
                    .map(|compressed| Some(Bytes::from(compressed)))
                    .map_err(|err| {
                        Error::internal("compressing a gRPC message failed").with_source(err)
                    })
            }
        }
    }

    /// Decompresses one message, reading no more than `max` bytes of output:
    /// a message that would inflate past it is `ResourceExhausted` without
    /// being inflated whole. Data that is not this encoding is `Internal`,
    /// as gRPC asks.
    pub(super) fn decompress(self, message: Bytes, max: usize, what: &str) -> Result<Bytes> {
        match self {
            Compression::Identity => Err(Error::internal(format!(
                "a gRPC {what} message is flagged compressed, but no grpc-encoding was named"
            ))),
            Compression::Gzip => {
                let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
                let mut inflated = Vec::with_capacity(message.len().saturating_mul(2).min(max));
                GzDecoder::new(message.as_ref())
                    .take(limit)
                    .read_to_end(&mut inflated)
                    .map_err(|err| {
                        Error::internal(format!("a gRPC {what} message is not valid gzip"))
                            .with_source(err)
                    })?;
                if inflated.len() > max {
                    return Err(body_too_large(
                        &format!("decompressed gRPC {what} message"),
                        format_args!("more than {max}"),
                        max,
                    ));
                }
                Ok(inflated.into())
            }
        }
    }
}

impl FromStr for Compression {
    type Err = Error;

    /// `identity` or `gzip`, in any case; anything else is `InvalidArgument`.
    fn from_str(name: &str) -> Result<Compression> {
        if name.eq_ignore_ascii_case("identity") {
            Ok(Compression::Identity)
        } else if name.eq_ignore_ascii_case("gzip") {
            Ok(Compression::Gzip)
        } else {
            Err(Error::invalid_argument(format!(
                "{name:?} is not a gRPC compression micro supports: use gzip or identity"
            )))
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn gzip_round_trips_and_identity_is_not_compressed() {
        let message = b"hello hello hello hello".repeat(100);
        let compressed = Compression::Gzip.compress(&message).unwrap().unwrap();
        assert!(compressed.len() < message.len() / 10);
        assert_eq!(&compressed[..2], [0x1f, 0x8b], "a gzip member");
        let back = Compression::Gzip
            .decompress(compressed, message.len(), "request")
            .unwrap();
        assert_eq!(back, message);
        assert!(Compression::Identity.compress(&message).unwrap().is_none());
    }

    #[test]
    fn inflating_past_the_limit_stops_at_the_limit() {
        // 64 MiB of zeros is about 64 KiB of gzip: a small bomb.
        let bomb = Compression::Gzip
            .compress(&vec![0u8; 64 << 20])
            .unwrap()
            .unwrap();
        assert!(bomb.len() < 1 << 20);
        let err = Compression::Gzip
            .decompress(bomb, 1 << 20, "request")
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ResourceExhausted);
    }

    #[test]
    fn bad_data_and_a_missing_encoding_are_internal() {
        let err = Compression::Gzip
            .decompress(Bytes::from_static(b"not gzip"), 100, "request")
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
        let err = Compression::Identity
            .decompress(Bytes::from_static(b"x"), 100, "request")
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
    }

    #[test]
    fn headers_name_and_accept_encodings() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            Compression::of_headers(&headers).unwrap(),
            Compression::Identity
        );
        headers.insert(GRPC_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(
            Compression::of_headers(&headers).unwrap(),
            Compression::Gzip
        );
        headers.insert(GRPC_ENCODING, HeaderValue::from_static("br"));
        let err = Compression::of_headers(&headers).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unimplemented);

        assert!(!Compression::Gzip.accepted_by(&headers));
        headers.insert(
            GRPC_ACCEPT_ENCODING,
            HeaderValue::from_static("identity, deflate, GZIP"),
        );
        assert!(Compression::Gzip.accepted_by(&headers));
        assert!(Compression::Identity.accepted_by(&HeaderMap::new()));
        assert_eq!(
            "deflate".parse::<Compression>().unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }
}
