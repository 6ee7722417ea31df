//! What crosses the wire between a publisher and a subscriber's endpoint.
//!
//! One delivery is one plain HTTP/1.1 request:
//!
//! ```text
//! POST /micro/broker/{subscription} HTTP/1.1
//! micro-message: {"topic":"user.password_changed","headers":{"content-type":"application/json"}}
//!
//! {"user_id":7}
//! ```
//!
//! The body is the message body, byte for byte. The `micro-message` header is
//! a JSON object with the concrete topic and the message headers; characters
//! outside visible ASCII are written as JSON `\u` escapes so the header is
//! valid in every HTTP stack and curl can send one by hand. The answer is
//! `204` once the subscription holds the message, `404` when there is no
//! such subscription (it was dropped), `400` for a malformed request and `413`
//! for a body over the limit.

use serde::{Deserialize, Serialize};

use crate::{Error, Message, Metadata, Result};

/// The path prefix of delivery requests; the subscription id follows.
pub(super) const PATH_PREFIX: &str = "/micro/broker/";
/// The request header carrying the topic and the message headers.
pub(super) const ENVELOPE_HEADER: &str = "micro-message";

/// Node metadata keys describing a subscription in the registry.
pub(super) const NODE_BROKER: &str = "broker";
pub(super) const NODE_TOPIC: &str = "topic";
pub(super) const NODE_QUEUE: &str = "queue";
pub(super) const NODE_SUBSCRIPTION: &str = "subscription";
/// `true` when the subscription's endpoint serves TLS.
pub(super) const NODE_TLS: &str = "tls";

#[derive(Debug, Serialize, Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    topic: std::borrow::Cow<'a, str>,
    #[serde(default)]
    headers: Metadata,
}

/// The `micro-message` header value for a message published to `topic`.
pub(super) fn encode_envelope(topic: &str, message: &Message) -> Result<String> {
    let envelope = Envelope {
        topic: topic.into(),
        headers: message.headers.clone(),
    };
    let json = serde_json::to_string(&envelope)
        .map_err(|err| Error::invalid_argument("unencodable message headers").with_source(err))?;
    Ok(ascii_only(&json))
}

/// The topic and headers from a `micro-message` header value.
pub(super) fn decode_envelope(value: &[u8]) -> Result<(String, Metadata)> {
    let envelope: Envelope<'_> = serde_json::from_slice(value).map_err(|err| {
        Error::invalid_argument(format!("malformed `{ENVELOPE_HEADER}` header")).with_source(err)
    })?;
    let mut headers = Metadata::new();
    // Re-inserted so that keys are lower-case whoever wrote the header.
    for (key, value) in envelope.headers.iter() {
        headers.insert(key, value);
    }
    Ok((envelope.topic.into_owned(), headers))
}

/// JSON text with every character outside visible ASCII (and DEL) written as
/// `\u` escapes. Only valid on serde_json's output, where such characters can
/// only stand inside strings (control characters are escaped already).
fn ascii_only(json: &str) -> String {
    if json.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return json.to_owned();
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if (' '..='~').contains(&c) {
            out.push(c);
        } else {
            let mut units = [0_u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_any_header_text_as_ascii() {
        let message = Message::new("x")
            .with_header("x-unicode", "grüße ✓ 𝄞")
            .with_header("x-control", "tab\tdel\u{7f}")
            .with_header("Content-Type", "application/json");
        let encoded = encode_envelope("grüße.topic", &message).unwrap();
        assert!(
            encoded.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "{encoded}"
        );
        let (topic, headers) = decode_envelope(encoded.as_bytes()).unwrap();
        assert_eq!(topic, "grüße.topic");
        assert_eq!(headers, message.headers);
    }

    #[test]
    fn a_malformed_envelope_is_an_invalid_argument() {
        for bad in [&b"not json"[..], b"{}", b"{\"topic\": 7}"] {
            let err = decode_envelope(bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
        }
        let (topic, headers) = decode_envelope(br#"{"topic":"a.b"}"#).unwrap();
        assert_eq!(topic, "a.b");
        assert!(headers.is_empty());
    }
}
