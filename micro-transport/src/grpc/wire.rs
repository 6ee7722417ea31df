//! The gRPC wire format both sides agree on: paths, content types, the
//! `grpc-timeout` syntax, status trailers and how metadata maps onto headers.

use std::time::Duration;

use ::http::{HeaderMap, HeaderName, HeaderValue, header::CONTENT_TYPE};

use crate::{Error, ErrorKind, Metadata, Result};

/// The header carrying the caller's remaining time (gRPC's own).
pub(super) const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
/// The trailer (or trailers-only header) carrying the status code.
pub(super) const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// The trailer carrying the percent-encoded status message.
pub(super) const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
/// micro's header naming the called service, as over HTTP.
pub(super) const SERVICE: HeaderName = HeaderName::from_static("micro-service");
/// micro's header marking a streamed body (`stream`), so the receiver hands
/// its handler or caller a stream even before a second message arrives.
pub(super) const BODY: HeaderName = HeaderName::from_static("micro-body");
/// The value of [`BODY`] for a streamed body.
pub(super) const STREAM: &str = "stream";
/// micro's header carrying a content type that `application/grpc+{subtype}`
/// cannot express (one outside `application/`, or with parameters).
pub(super) const CONTENT_TYPE_HEADER: HeaderName = HeaderName::from_static("micro-content-type");

/// The plain gRPC content type: protobuf messages.
pub(super) const GRPC: &str = "application/grpc";

/// Whether the headers mark the body as a stream.
pub(super) fn is_stream(headers: &HeaderMap) -> bool {
    headers
        .get(BODY)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(STREAM.as_bytes()))
}

/// The HTTP/2 path of `endpoint` (`Greeter.Hello`) in `package`:
/// `/{package}.Greeter/Hello`, or `/Greeter/Hello` without a package. The
/// method is what follows the last dot.
pub(super) fn path_of(package: &str, endpoint: &str) -> Result<String> {
    let invalid = || {
        Error::invalid_argument(format!(
            "endpoint {endpoint:?} is not Service.Method, as a gRPC path needs"
        ))
    };
    let (service, method) = endpoint.rsplit_once('.').ok_or_else(invalid)?;
    if service.is_empty()
        || method.is_empty()
        || endpoint
            .bytes()
            .any(|b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'.'))
    {
        return Err(invalid());
    }
    let mut path = String::with_capacity(package.len() + endpoint.len() + 3);
    path.push('/');
    if !package.is_empty() {
        path.push_str(package);
        path.push('.');
    }
    path.push_str(service);
    path.push('/');
    path.push_str(method);
    Ok(path)
}

/// The gRPC service name and method of a path: `/pkg.sub.Greeter/Hello`
/// is `("pkg.sub.Greeter", "Hello")`. A path that is not
/// `/{service}/{method}` is `Unimplemented`.
pub(super) fn split_path(path: &str) -> Result<(&str, &str)> {
    let not_found = || {
        Error::unimplemented(format!(
            "no gRPC method at {path:?}: call /{{package}}.{{Service}}/{{Method}}"
        ))
    };
    let rest = path.strip_prefix('/').ok_or_else(not_found)?;
    let (service, method) = rest.split_once('/').ok_or_else(not_found)?;
    if service.is_empty()
        || method.is_empty()
        || method.contains('/')
        || service.split('.').any(str::is_empty)
    {
        return Err(not_found());
    }
    Ok((service, method))
}

/// The gRPC content type for a micro content type: JSON is
/// `application/grpc+json`, protobuf is `application/grpc+proto`, any other
/// `application/{subtype}` is `application/grpc+{subtype}`. Returns `None`
/// for a type that cannot be expressed that way (sent as `application/grpc`
/// plus [`CONTENT_TYPE_HEADER`]).
pub(super) fn grpc_content_type(content_type: &str) -> Option<HeaderValue> {
    match content_type {
        "" | "application/protobuf" => Some(HeaderValue::from_static("application/grpc+proto")),
        "application/json" => Some(HeaderValue::from_static("application/grpc+json")),
        "application/msgpack" => Some(HeaderValue::from_static("application/grpc+msgpack")),
        "application/octet-stream" => {
            Some(HeaderValue::from_static("application/grpc+octet-stream"))
        }
        other => {
            let subtype = other.strip_prefix("application/")?;
            let simple = !subtype.is_empty()
                && subtype
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
            if !simple {
                return None;
            }
            HeaderValue::from_str(&format!("application/grpc+{subtype}")).ok()
        }
    }
}

/// Sets `content-type` (and, when needed, [`CONTENT_TYPE_HEADER`]) for a
/// micro content type.
pub(super) fn insert_content_type(headers: &mut HeaderMap, content_type: &str) -> Result<()> {
    match grpc_content_type(content_type) {
        Some(value) => {
            headers.insert(CONTENT_TYPE, value);
        }
        None => {
            let original = HeaderValue::from_str(content_type).map_err(|err| {
                Error::invalid_argument(format!(
                    "the content type {content_type:?} is not a valid header value"
                ))
                .with_source(err)
            })?;
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(GRPC));
            headers.insert(CONTENT_TYPE_HEADER, original);
        }
    }
    Ok(())
}

/// The micro content type of a gRPC exchange: [`CONTENT_TYPE_HEADER`] when
/// present, else from `content-type` (`application/grpc` and
/// `application/grpc+proto` are protobuf). `None` when `content-type` is not
/// a gRPC one.
pub(super) fn micro_content_type(headers: &HeaderMap) -> Option<String> {
    if let Some(original) = headers
        .get(CONTENT_TYPE_HEADER)
        .and_then(|value| value.to_str().ok())
    {
        return Some(original.to_owned());
    }
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or_default().trim();
    let lower;
    let essence = if essence.bytes().any(|b| b.is_ascii_uppercase()) {
        lower = essence.to_ascii_lowercase();
        lower.as_str()
    } else {
        essence
    };
    let subtype = essence.strip_prefix(GRPC)?;
    Some(match subtype {
        "" | "+proto" | "+protobuf" => "application/protobuf".to_owned(),
        "+json" => "application/json".to_owned(),
        other => format!("application/{}", other.strip_prefix('+')?),
    })
}

/// Formats the time left before a deadline as a `grpc-timeout` value: at
/// most eight digits and a unit (`n`, `u`, `m`, `S`, `M`, `H`), in the finest
/// unit that fits, rounded up so the serving side never gives up first.
pub(super) fn format_timeout(remaining: Duration) -> HeaderValue {
    const MAX: u128 = 99_999_999;
    let nanos = remaining.as_nanos();
    let units: [(u128, &str); 6] = [
        (1, "n"),
        (1_000, "u"),
        (1_000_000, "m"),
        (1_000_000_000, "S"),
        (60_000_000_000, "M"),
        (3_600_000_000_000, "H"),
    ];
    let text = units
        .iter()
        .map(|(per, unit)| (nanos.div_ceil(*per), unit))
        .find(|(value, _)| *value <= MAX)
        .map_or_else(
            || format!("{MAX}H"),
            |(value, unit)| format!("{value}{unit}"),
        );
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("99999999H"))
}

/// Parses a `grpc-timeout` value in the gRPC specification's units (`250m`,
/// `5S`, `1H`): the one parser of that header, for the server and for
/// `micro::grpc::GrpcChannel`.
///
/// ```
/// use std::time::Duration;
/// use micro_transport::grpc::parse_timeout;
///
/// assert_eq!(parse_timeout("250m").unwrap(), Duration::from_millis(250));
/// assert!(parse_timeout("5x").is_err());
/// ```
pub fn parse_timeout(value: &str) -> Result<Duration> {
    let invalid = || {
        Error::invalid_argument(format!(
            "invalid grpc-timeout {value:?}: expected up to 8 digits and a unit (H, M, S, m, u, n)"
        ))
    };
    if value.len() < 2 || value.len() > 9 {
        return Err(invalid());
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let number: u64 = digits.parse().map_err(|_| invalid())?;
    Ok(match unit {
        "H" => Duration::from_secs(number * 3600),
        "M" => Duration::from_secs(number * 60),
        "S" => Duration::from_secs(number),
        "m" => Duration::from_millis(number),
        "u" => Duration::from_micros(number),
        "n" => Duration::from_nanos(number),
        _ => return Err(invalid()),
    })
}

/// Writes `error` as gRPC status headers (trailers, or a trailers-only response).
pub(super) fn insert_status(headers: &mut HeaderMap, error: &Error) {
    headers.insert(GRPC_STATUS, status_value(error.kind().grpc_code()));
    let message = percent_encode(error.message());
    if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(message)) {
        headers.insert(GRPC_MESSAGE, value);
    }
}

/// The trailers of a call that succeeded.
pub(super) fn ok_trailers() -> HeaderMap {
    let mut trailers = HeaderMap::with_capacity(1);
    trailers.insert(GRPC_STATUS, HeaderValue::from_static("0"));
    trailers
}

fn status_value(code: i32) -> HeaderValue {
    match code {
        0 => HeaderValue::from_static("0"),
        code => HeaderValue::from(code),
    }
}

/// The outcome a `grpc-status` header stands for: `Ok(true)` when there is a
/// status and it is OK, `Ok(false)` when there is none, or the error.
pub(super) fn status_of(headers: &HeaderMap) -> Result<bool> {
    let Some(status) = headers.get(GRPC_STATUS) else {
        return Ok(false);
    };
    let code: i32 = status
        .to_str()
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .ok_or_else(|| Error::internal("the peer sent an unreadable grpc-status"))?;
    if code == 0 {
        return Ok(true);
    }
    let message = headers
        .get(GRPC_MESSAGE)
        .map(|value| percent_decode(value.as_bytes()))
        .unwrap_or_default();
    Err(Error::new(ErrorKind::from_grpc_code(code), message))
}

/// The error an HTTP response that is not gRPC stands for, following gRPC's
/// mapping of HTTP statuses onto codes.
pub(super) fn error_from_http_status(status: ::http::StatusCode) -> Error {
    let kind = match status.as_u16() {
        400 => ErrorKind::Internal,
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::PermissionDenied,
        404 => ErrorKind::Unimplemented,
        429 | 502 | 503 | 504 => ErrorKind::Unavailable,
        _ => ErrorKind::Unknown,
    };
    Error::new(kind, format!("the server answered HTTP {status}, not gRPC"))
}

/// Percent-encodes a status message as gRPC asks: bytes outside printable
/// ASCII, and `%` itself.
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn percent_decode(encoded: &[u8]) -> String {
    let mut out = Vec::with_capacity(encoded.len());
    let mut i = 0;
    while i < encoded.len() {
        let decoded = (encoded[i] == b'%')
            .then(|| encoded.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match decoded {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(encoded[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The call's metadata from request headers or response headers and
/// trailers: every name that is not per-hop. Repeated names are joined with
/// `", "`; values that are not visible ASCII are left out.
pub(super) fn metadata_from_headers(metadata: &mut Metadata, headers: &HeaderMap) {
    for name in headers.keys() {
        if crate::is_per_hop(name.as_str()) {
            continue;
        }
        let mut joined: Option<String> = None;
        for value in headers.get_all(name) {
            let Ok(value) = value.to_str() else { continue };
            match &mut joined {
                Some(joined) => {
                    joined.push_str(", ");
                    joined.push_str(value);
                }
                None => joined = Some(value.to_owned()),
            }
        }
        if let Some(joined) = joined {
            metadata.insert(name.as_str(), joined);
        }
    }
}

/// Writes `metadata` into `headers`, leaving per-hop names out. A key or
/// value that cannot be a header is `InvalidArgument`.
pub(super) fn metadata_into_headers(metadata: &Metadata, headers: &mut HeaderMap) -> Result<()> {
    for (key, value) in metadata.iter() {
        if crate::is_per_hop(key) {
            continue;
        }
        let name = HeaderName::from_bytes(key.as_bytes()).map_err(|err| {
            Error::invalid_argument(format!(
                "metadata key {key:?} is not a valid gRPC metadata key"
            ))
            .with_source(err)
        })?;
        let value = HeaderValue::from_str(value).map_err(|err| {
            Error::invalid_argument(format!(
                "metadata value of {key:?} is not a valid gRPC metadata value"
            ))
            .with_source(err)
        })?;
        headers.insert(name, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_paths_map_both_ways() {
        assert_eq!(path_of("", "Greeter.Hello").unwrap(), "/Greeter/Hello");
        assert_eq!(
            path_of("helloworld", "Greeter.SayHello").unwrap(),
            "/helloworld.Greeter/SayHello"
        );
        assert_eq!(
            path_of("", "a.b.Greeter.Hello").unwrap(),
            "/a.b.Greeter/Hello"
        );
        for bad in ["", "Hello", ".Hello", "Greeter.", "Gree ter.Hello", "a/b.c"] {
            assert_eq!(
                path_of("", bad).unwrap_err().kind(),
                ErrorKind::InvalidArgument,
                "{bad}"
            );
        }
        assert_eq!(
            split_path("/helloworld.Greeter/SayHello").unwrap(),
            ("helloworld.Greeter", "SayHello")
        );
        assert_eq!(split_path("/Greeter/Hello").unwrap(), ("Greeter", "Hello"));
        for bad in [
            "/",
            "/Greeter",
            "/Greeter/",
            "//Hello",
            "/a./Hello",
            "/a/b/c",
        ] {
            assert_eq!(
                split_path(bad).unwrap_err().kind(),
                ErrorKind::Unimplemented,
                "{bad}"
            );
        }
    }

    #[test]
    fn content_types_map_both_ways() {
        for (micro, grpc) in [
            ("application/json", "application/grpc+json"),
            ("application/protobuf", "application/grpc+proto"),
            ("application/msgpack", "application/grpc+msgpack"),
            ("application/octet-stream", "application/grpc+octet-stream"),
            ("application/cbor", "application/grpc+cbor"),
        ] {
            let mut headers = HeaderMap::new();
            insert_content_type(&mut headers, micro).unwrap();
            assert_eq!(headers[CONTENT_TYPE], grpc);
            assert_eq!(micro_content_type(&headers).unwrap(), micro);
        }
        let mut headers = HeaderMap::new();
        insert_content_type(&mut headers, "text/plain; charset=utf-8").unwrap();
        assert_eq!(headers[CONTENT_TYPE], GRPC);
        assert_eq!(
            micro_content_type(&headers).unwrap(),
            "text/plain; charset=utf-8"
        );
        for (grpc, micro) in [
            ("application/grpc", "application/protobuf"),
            ("Application/GRPC+Proto", "application/protobuf"),
            ("application/grpc+json; charset=utf-8", "application/json"),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(grpc));
            assert_eq!(micro_content_type(&headers).unwrap(), micro, "{grpc}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert_eq!(micro_content_type(&headers), None);
    }

    #[test]
    fn timeouts_round_trip_and_round_up() {
        for duration in [
            Duration::from_nanos(1),
            Duration::from_millis(250),
            Duration::from_secs(5),
            Duration::from_secs(86_400 * 365),
        ] {
            let value = format_timeout(duration);
            let text = value.to_str().unwrap();
            assert!(text.len() <= 9, "{text}");
            assert!(parse_timeout(text).unwrap() >= duration, "{text}");
        }
        assert_eq!(format_timeout(Duration::from_millis(250)), "250000u");
        assert_eq!(parse_timeout("3S").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_timeout("2M").unwrap(), Duration::from_secs(120));
        for bad in ["", "S", "1", "1s", "123456789S", "-1S", "1.5S"] {
            assert_eq!(
                parse_timeout(bad).unwrap_err().kind(),
                ErrorKind::InvalidArgument,
                "{bad}"
            );
        }
    }

    #[test]
    fn statuses_round_trip_every_kind_and_odd_messages() {
        for kind in ErrorKind::ALL {
            let mut headers = HeaderMap::new();
            insert_status(&mut headers, &Error::new(kind, "why: 100% \"sure\"\nnot é"));
            let err = status_of(&headers).unwrap_err();
            assert_eq!(err.kind(), kind);
            assert_eq!(err.message(), "why: 100% \"sure\"\nnot é");
        }
        assert!(status_of(&ok_trailers()).unwrap());
        assert!(!status_of(&HeaderMap::new()).unwrap());
    }
}
