//! The HTTP wire format both sides agree on: reserved headers, the timeout
//! header's syntax, the error body, and how metadata maps onto headers.

use std::time::Duration;

use ::http::{
    HeaderMap, HeaderName, HeaderValue, StatusCode,
    header::{ALLOW, CONTENT_TYPE},
};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{Error, ErrorKind, Metadata, Result};

/// The request header naming the called service, when the caller named one.
pub const SERVICE_HEADER: &str = "micro-service";

/// The header marking a body as a stream of frames rather than one message;
/// its value is `stream`. Sent on requests and responses.
pub const BODY_HEADER: &str = "micro-body";

/// The value of [`BODY_HEADER`] for a streamed body.
pub(super) const STREAM: &str = "stream";

/// Whether the headers mark the body as a stream of frames.
pub(super) fn is_stream(headers: &HeaderMap) -> bool {
    headers
        .get(BODY)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(STREAM.as_bytes()))
}

/// The request header carrying the time the caller still waits, such as `250ms`.
///
/// The value is a whole number followed by a unit: `h`, `m` (minutes), `s`,
/// `ms`, `us` or `ns`. The serving side turns it into the request's deadline.
pub const TIMEOUT_HEADER: &str = "micro-timeout";

/// [`SERVICE_HEADER`] as a header name, built once rather than parsed per call.
pub(super) const SERVICE: HeaderName = HeaderName::from_static(SERVICE_HEADER);
/// [`BODY_HEADER`] as a header name.
pub(super) const BODY: HeaderName = HeaderName::from_static(BODY_HEADER);
/// [`TIMEOUT_HEADER`] as a header name.
pub(super) const TIMEOUT: HeaderName = HeaderName::from_static(TIMEOUT_HEADER);

/// The `Content-Type` value for `content_type`: the codecs' own types are
/// static values, anything else is copied (and refused when it cannot be a
/// header value).
pub(super) fn content_type_value(
    content_type: &str,
) -> std::result::Result<HeaderValue, ::http::header::InvalidHeaderValue> {
    match content_type {
        "application/json" => Ok(HeaderValue::from_static("application/json")),
        "application/msgpack" => Ok(HeaderValue::from_static("application/msgpack")),
        "application/protobuf" => Ok(HeaderValue::from_static("application/protobuf")),
        "application/octet-stream" => Ok(HeaderValue::from_static("application/octet-stream")),
        other => HeaderValue::from_str(other),
    }
}

/// The call's metadata: every header that is not reserved. Repeated headers
/// are joined with `", "` as HTTP allows; values that are not visible ASCII
/// are left out, since [`Metadata`] holds strings.
pub(super) fn metadata_from_headers(headers: &HeaderMap) -> Metadata {
    let mut metadata = Metadata::new();
    for name in headers.keys() {
        if crate::is_per_hop(name.as_str()) {
            continue;
        }
        let mut joined: Option<String> = None;
        for value in headers.get_all(name) {
            match value.to_str() {
                Ok(value) => match &mut joined {
                    Some(joined) => {
                        joined.push_str(", ");
                        joined.push_str(value);
                    }
                    None => joined = Some(value.to_owned()),
                },
                Err(_) => {
                    tracing::debug!(header = %name, "skipping a header value that is not visible ASCII")
                }
            }
        }
        if let Some(joined) = joined {
            metadata.insert(name.as_str(), joined);
        }
    }
    metadata
}

/// Writes `metadata` into `headers`, leaving reserved names out. A key or value
/// that cannot be an HTTP header is an `InvalidArgument` error.
pub(super) fn metadata_into_headers(metadata: &Metadata, headers: &mut HeaderMap) -> Result<()> {
    for (key, value) in metadata.iter() {
        if crate::is_per_hop(key) {
            tracing::debug!(key, "not sending metadata under a reserved header name");
            continue;
        }
        let name = HeaderName::from_bytes(key.as_bytes()).map_err(|err| {
            Error::invalid_argument(format!(
                "metadata key {key:?} is not a valid HTTP header name"
            ))
            .with_source(err)
        })?;
        let value = HeaderValue::from_str(value).map_err(|err| {
            Error::invalid_argument(format!(
                "metadata value of {key:?} is not a valid HTTP header value"
            ))
            .with_source(err)
        })?;
        headers.insert(name, value);
    }
    Ok(())
}

/// Parses a [`TIMEOUT_HEADER`] value: a humantime duration (`250ms`, `1.5s`),
/// the grammar of every configured duration.
pub(super) fn parse_timeout(value: &str) -> Result<Duration> {
    micro_core::duration::parse_named(TIMEOUT_HEADER, value)
}

/// Formats the time left before a deadline as a [`TIMEOUT_HEADER`] value, in
/// milliseconds rounded up so the serving side never gives up first.
pub(super) fn format_timeout(remaining: Duration) -> String {
    let millis = remaining.as_nanos().div_ceil(1_000_000);
    format!("{millis}ms")
}

/// The JSON body of an error response: `{"code":"not_found","message":"..."}`,
/// `code` being [`ErrorKind::as_str`].
#[derive(Debug, Serialize, Deserialize)]
struct ErrorBody {
    code: String,
    #[serde(default)]
    message: String,
}

/// The response for a failed call: the kind's HTTP status and the JSON error body.
pub(super) fn error_response(error: &Error) -> ::http::Response<Bytes> {
    let status = StatusCode::from_u16(error.kind().http_status())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error_response_with_status(status, error)
}

/// Like [`error_response`] with an explicit status, for the few statuses that
/// say more than the kind's own (413, 405).
pub(super) fn error_response_with_status(
    status: StatusCode,
    error: &Error,
) -> ::http::Response<Bytes> {
    let mut response = ::http::Response::new(Bytes::from(error_body_json(error)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
    }
    response
}

/// The JSON error body for `error`.
pub(super) fn error_body_json(error: &Error) -> Vec<u8> {
    let body = ErrorBody {
        code: error.kind().as_str().to_owned(),
        message: error.message().to_owned(),
    };
    // Serializing two strings cannot fail; the fallback keeps this panic-free anyway.
    serde_json::to_vec(&body).unwrap_or_else(|_| br#"{"code":"internal"}"#.to_vec())
}

/// The error a JSON error body stands for; `Unknown` when it is not one.
pub(super) fn error_from_json(body: &[u8]) -> Error {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { code, message }) => Error::new(ErrorKind::from_name(&code), message),
        Err(err) => {
            Error::new(ErrorKind::Unknown, "the peer sent an unreadable error").with_source(err)
        }
    }
}

/// The error a non-success response stands for: micro's JSON error body when
/// there is one, else the kind the HTTP status suggests.
pub(super) fn error_from_response(status: StatusCode, body: &[u8]) -> Error {
    let from_status = ErrorKind::from_http_status(status.as_u16());
    if let Ok(ErrorBody { code, message }) = serde_json::from_slice::<ErrorBody>(body) {
        let kind = match ErrorKind::from_name(&code) {
            ErrorKind::Unknown if code != ErrorKind::Unknown.as_str() => from_status,
            kind => kind,
        };
        return Error::new(kind, message);
    }
    const MAX_QUOTED: usize = 512;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_QUOTED)]);
    let message = if text.trim().is_empty() {
        format!("the server answered {status}")
    } else {
        format!("the server answered {status}: {}", text.trim())
    };
    Error::new(from_status, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_in_every_unit() {
        for (text, expected) in [
            ("250ms", Duration::from_millis(250)),
            (" 2s ", Duration::from_secs(2)),
            ("3m", Duration::from_secs(180)),
            ("1h", Duration::from_secs(3600)),
            ("7us", Duration::from_micros(7)),
            ("9ns", Duration::from_nanos(9)),
            ("0ms", Duration::ZERO),
            ("1.5s", Duration::from_millis(1500)),
            ("1m 30s", Duration::from_secs(90)),
        ] {
            assert_eq!(parse_timeout(text).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn bad_timeouts_are_invalid_argument() {
        for text in [
            "",
            "ms",
            "10",
            "soon",
            "-1s",
            "10x",
            "99999999999999999999999s",
            "18446744073709551615h",
        ] {
            let err = parse_timeout(text).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{text}");
        }
    }

    #[test]
    fn formatted_timeouts_round_up_and_parse_back() {
        assert_eq!(format_timeout(Duration::from_micros(1)), "1ms");
        assert_eq!(format_timeout(Duration::from_millis(1500)), "1500ms");
        assert_eq!(
            parse_timeout(&format_timeout(Duration::from_secs(5))).unwrap(),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn error_bodies_round_trip_every_kind() {
        for kind in ErrorKind::ALL {
            let response = error_response(&Error::new(kind, "why"));
            let status = response.status();
            assert_eq!(status.as_u16(), kind.http_status());
            let body = serde_json::to_vec(&ErrorBody {
                code: kind.as_str().into(),
                message: "why".into(),
            })
            .unwrap();
            let err = error_from_response(status, &body);
            assert_eq!(err.kind(), kind);
            assert_eq!(err.message(), "why");
        }
    }

    #[test]
    fn foreign_error_bodies_fall_back_to_the_status() {
        let err = error_from_response(StatusCode::SERVICE_UNAVAILABLE, b"<html>busy</html>");
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        let err = error_from_response(StatusCode::NOT_FOUND, br#"{"code":404,"message":"nope"}"#);
        assert_eq!(err.kind(), ErrorKind::NotFound);
        let err = error_from_response(StatusCode::TOO_MANY_REQUESTS, br#"{"code":"slow_down"}"#);
        assert_eq!(err.kind(), ErrorKind::ResourceExhausted);
        let err = error_from_response(StatusCode::BAD_GATEWAY, b"");
        assert_eq!(err.kind(), ErrorKind::Unavailable);
    }

    #[test]
    fn reserved_headers_stay_out_of_metadata_both_ways() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert("micro-timeout", HeaderValue::from_static("1s"));
        headers.insert("x-trace-id", HeaderValue::from_static("abc"));
        headers.append("x-multi", HeaderValue::from_static("a"));
        headers.append("x-multi", HeaderValue::from_static("b"));
        headers.insert("x-binary", HeaderValue::from_bytes(b"\xff").unwrap());
        let metadata = metadata_from_headers(&headers);
        assert_eq!(
            metadata,
            Metadata::new()
                .with("x-trace-id", "abc")
                .with("x-multi", "a, b")
        );

        let mut out = HeaderMap::new();
        let metadata = Metadata::new()
            .with("Content-Length", "1")
            .with("x-ok", "yes");
        metadata_into_headers(&metadata, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out["x-ok"], "yes");
    }

    #[test]
    fn metadata_that_cannot_be_a_header_is_invalid_argument() {
        let mut out = HeaderMap::new();
        for metadata in [
            Metadata::new().with("bad key", "v"),
            Metadata::new().with("k", "line\nbreak"),
        ] {
            let err = metadata_into_headers(&metadata, &mut out).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        }
    }
}
