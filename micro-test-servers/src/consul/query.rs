//! Query-string and response helpers shared by the routes: Consul's blocking
//! query parameters (`index`, `wait`), boolean flags, Go durations, and the
//! `X-Consul-*` headers.

use std::{collections::HashMap, time::Duration};

use axum::{
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use super::state::Shared;

/// Consul's default blocking wait.
const DEFAULT_WAIT: Duration = Duration::from_secs(5 * 60);
/// Consul's longest blocking wait.
const MAX_WAIT: Duration = Duration::from_secs(10 * 60);

/// A query string's parameters; a bare `?passing` maps to an empty value.
pub(crate) fn params(raw: Option<String>) -> HashMap<String, String> {
    raw.unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) => (decode(key), decode(value)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

/// Percent-decoding of a query component (`+` is a space); a malformed
/// escape is kept as it is.
fn decode(component: &str) -> String {
    let bytes = component.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (escaped, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, byte) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A boolean flag: absent is false; present bare or `true`/`1` is true.
#[allow(
    clippy::result_large_err,
    reason = "handlers answer failures with ready-made responses"
)]
pub(crate) fn flag(params: &HashMap<String, String>, name: &str) -> Result<bool, Response> {
    match params.get(name).map(String::as_str) {
        None => Ok(false),
        Some("" | "true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(other) => Err(bad_request(format!("invalid boolean {name}={other:?}"))),
    }
}

/// Blocks as a Consul blocking query does when `index` is given: until the
/// state's index passes it or `wait` (default 5 minutes, at most 10) runs out.
#[allow(
    clippy::result_large_err,
    reason = "handlers answer failures with ready-made responses"
)]
pub(crate) async fn block(
    shared: &Shared,
    params: &HashMap<String, String>,
) -> Result<(), Response> {
    let Some(index) = params.get("index") else {
        return Ok(());
    };
    let index: u64 = index
        .parse()
        .map_err(|_| bad_request(format!("invalid index {index:?}")))?;
    let wait = match params.get("wait") {
        Some(wait) => go_duration(wait)
            .ok_or_else(|| bad_request(format!("invalid wait {wait:?}")))?
            .min(MAX_WAIT),
        None => DEFAULT_WAIT,
    };
    if index > 0 {
        shared.wait_past(index, wait).await;
    }
    Ok(())
}

/// A Go duration (`300ms`, `10s`, `1m30s`, `1.5h`).
pub(crate) fn go_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += number * scale;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// A JSON answer with the headers Consul puts on every read.
pub(crate) fn json_with_index(index: u64, body: &impl serde::Serialize) -> Response {
    let body = match serde_json::to_vec(body) {
        Ok(body) => body,
        Err(err) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response();
        }
    };
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ),
        (
            HeaderName::from_static("x-consul-index"),
            HeaderValue::from(index.max(1)),
        ),
        (
            HeaderName::from_static("x-consul-knownleader"),
            HeaderValue::from_static("true"),
        ),
        (
            HeaderName::from_static("x-consul-lastcontact"),
            HeaderValue::from_static("0"),
        ),
    ];
    (StatusCode::OK, headers, body).into_response()
}

/// A 400 with Consul's plain-text style.
pub(crate) fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, message).into_response()
}

/// A 404 with Consul's plain-text style.
pub(crate) fn not_found(message: String) -> Response {
    (StatusCode::NOT_FOUND, message).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        assert_eq!(go_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(go_duration("10"), None);
        assert_eq!(go_duration(""), None);
    }

    #[test]
    fn params_decode_flags_and_percent_escapes() {
        let params = params(Some("passing&index=7&name=a%2Fb+c".to_owned()));
        assert_eq!(flag(&params, "passing").ok(), Some(true));
        assert_eq!(params["index"], "7");
        assert_eq!(params["name"], "a/b c");
    }
}
