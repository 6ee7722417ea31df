//! micro's message headers ↔ NATS headers.
//!
//! micro keys are lower-case (see [`Metadata`]); NATS header names keep
//! whatever case the sender used, so keys arriving from NATS are lower-cased.
//! The one rename: micro's [`MESSAGE_ID_HEADER`] travels as JetStream's
//! `Nats-Msg-Id`, so the server de-duplicates by it and a client in another
//! language sees the header it knows.

use std::str::FromStr;

use async_nats::{HeaderMap, HeaderName, HeaderValue, header::NATS_MESSAGE_ID};

use crate::{Error, MESSAGE_ID_HEADER, Metadata, Result};

/// NATS headers for `metadata`, or `None` when there are none (a plain `PUB`).
pub(super) fn to_nats(metadata: &Metadata) -> Result<Option<HeaderMap>> {
    if metadata.is_empty() {
        return Ok(None);
    }
    let mut headers = HeaderMap::new();
    for (key, value) in metadata.iter() {
        let value = HeaderValue::from_str(value).map_err(|_| {
            Error::invalid_argument(format!(
                "header `{key}` has a line break in its value, which NATS headers cannot carry"
            ))
        })?;
        if key == MESSAGE_ID_HEADER {
            headers.insert(NATS_MESSAGE_ID, value);
            continue;
        }
        let name = HeaderName::from_str(key).map_err(|_| {
            Error::invalid_argument(format!(
                "`{}` is not a valid NATS header name (ASCII without control characters or `:`)",
                key.escape_debug()
            ))
        })?;
        headers.insert(name, value);
    }
    Ok(Some(headers))
}

/// micro metadata from NATS headers. A header sent several times keeps its last value.
pub(super) fn from_nats(headers: Option<&HeaderMap>) -> Metadata {
    let mut metadata = Metadata::new();
    let Some(headers) = headers else {
        return metadata;
    };
    for (name, values) in headers.iter() {
        let Some(value) = values.last() else {
            continue;
        };
        let name: &str = name.as_ref();
        if name.eq_ignore_ascii_case("Nats-Msg-Id") {
            metadata.insert(MESSAGE_ID_HEADER, value.as_str());
        } else {
            metadata.insert(name, value.as_str());
        }
    }
    metadata
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorKind, Message};

    #[test]
    fn headers_round_trip_and_the_id_becomes_nats_msg_id() {
        let message = Message::new("x")
            .with_header("Content-Type", "application/json")
            .with_header("x-unicode", "grüße ✓")
            .with_id("order-42");
        let headers = to_nats(&message.headers).unwrap().unwrap();
        assert_eq!(
            headers.get(NATS_MESSAGE_ID).map(HeaderValue::as_str),
            Some("order-42")
        );
        assert_eq!(from_nats(Some(&headers)), message.headers);
        assert_eq!(to_nats(&Metadata::new()).unwrap(), None);
        assert!(from_nats(None).is_empty());
    }

    #[test]
    fn keys_from_other_clients_are_lower_cased() {
        let mut headers = HeaderMap::new();
        headers.insert("X-Trace-Id", "abc");
        headers.append("X-Many", "first");
        headers.append("X-Many", "second");
        let metadata = from_nats(Some(&headers));
        assert_eq!(metadata.get("x-trace-id"), Some("abc"));
        assert_eq!(metadata.get("x-many"), Some("second"));
    }

    #[test]
    fn unencodable_headers_are_invalid_arguments() {
        for message in [
            Message::new("x").with_header("bad:name", "v"),
            Message::new("x").with_header("x-line", "a\r\nb"),
        ] {
            let err = to_nats(&message.headers).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        }
    }
}
