//! The one grammar for durations: humantime strings (`250ms`, `1.5s`,
//! `1h 30m`), read from environment variables, config fields and headers.
//!
//! Every place that configures a duration goes through [`parse`] (or
//! [`from_env`] for a variable, or the serde adaptors [`serde`] and
//! [`serde_opt`]), so `MICRO_REGISTER_TTL=1.5s` means the same thing as a
//! `ttl = "1.5s"` field in a TOML file or a `micro-timeout: 1.5s` header.
//! The only exception is gRPC's `grpc-timeout` header, which keeps the units
//! of the gRPC specification.
//!
//! ```
//! use std::time::Duration;
//! use micro_core::duration;
//!
//! assert_eq!(duration::parse("250ms").unwrap(), Duration::from_millis(250));
//! assert_eq!(duration::parse("1.5s").unwrap(), Duration::from_millis(1500));
//! assert_eq!(duration::parse("1h 30m").unwrap(), Duration::from_secs(5400));
//! assert_eq!(duration::format(Duration::from_millis(1500)), "1s 500ms");
//! assert!(duration::parse("soon").is_err());
//! ```

use std::time::Duration;

use crate::{Error, Result};

/// Parses a humantime duration: one or more numbers with units (`ns`, `us`,
/// `ms`, `s`, `m`, `h`, `d`; `1.5s` and `1h 30m` both work). A bare number is
/// refused: without a unit nobody can tell whether it meant seconds or
/// milliseconds.
pub fn parse(text: &str) -> Result<Duration> {
    let text = text.trim();
    let invalid = || {
        Error::invalid_argument(format!(
            "{text:?} is not a duration (write a number with a unit: 250ms, 1.5s, 1m, 1h 30m)"
        ))
    };
    if text.is_empty() || text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(invalid());
    }
    if let Some(parsed) = parse_decimal(text) {
        return parsed.ok_or_else(invalid);
    }
    humantime::parse_duration(text).map_err(|err| invalid().with_source(err))
}

/// Parses the value of `variable` (a variable or field name, for the error).
pub fn parse_named(variable: &str, text: &str) -> Result<Duration> {
    parse(text).map_err(|err| {
        Error::invalid_argument(format!("{variable}: {}", err.message())).with_source(err)
    })
}

/// Reads an environment variable as a duration; unset or empty is `None`.
pub fn from_env(variable: &str) -> Result<Option<Duration>> {
    crate::env::var(variable)?
        .map(|text| parse_named(variable, &text))
        .transpose()
}

/// Writes a duration the way [`parse`] reads it back (`1s 500ms`).
pub fn format(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// humantime has no fractions (`1.5s`); a single decimal number with one unit
/// is read here. Returns `None` when `text` is not of that shape, and
/// `Some(None)` when it is but is out of range.
fn parse_decimal(text: &str) -> Option<Option<Duration>> {
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (number, unit) = text.split_at(split);
    if !number.contains('.') {
        return None;
    }
    let seconds_per_unit = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" | "sec" | "secs" => 1.0,
        "m" | "min" | "mins" => 60.0,
        "h" | "hr" | "hrs" => 3600.0,
        "d" | "day" | "days" => 86400.0,
        _ => return None,
    };
    let value: f64 = number.parse().ok()?;
    Some(Duration::try_from_secs_f64(value * seconds_per_unit).ok())
}

/// `#[serde(with = "micro_core::duration::serde")]` for a `Duration` field:
/// reads and writes humantime strings.
pub mod serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    /// Writes the duration as a humantime string.
    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&super::format(*value))
    }

    /// Reads a humantime string.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        super::parse(&text).map_err(|err| D::Error::custom(err.message()))
    }
}

/// `#[serde(with = "micro_core::duration::serde_opt")]` for an
/// `Option<Duration>` field (add `#[serde(default)]` to allow it missing).
pub mod serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the duration as a humantime string, or nothing.
    pub fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => super::serde::serialize(value, serializer),
            None => serializer.serialize_none(),
        }
    }

    /// Reads a humantime string, or nothing.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super::serde")] Duration);
        Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|Wrapped(value)| value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn reads_every_unit_and_compound_forms() {
        let cases = [
            ("1ns", Duration::from_nanos(1)),
            ("7us", Duration::from_micros(7)),
            ("250ms", Duration::from_millis(250)),
            ("2s", Duration::from_secs(2)),
            ("1.5s", Duration::from_millis(1500)),
            ("0.25m", Duration::from_secs(15)),
            ("1m", Duration::from_secs(60)),
            ("1h 30m", Duration::from_secs(5400)),
            ("1h30m", Duration::from_secs(5400)),
            (" 10s ", Duration::from_secs(10)),
            ("0s", Duration::ZERO),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn refuses_bare_numbers_garbage_and_negative_values() {
        for text in ["", "250", "1.5", "soon", "-1s", "1x", "s", "1.5.5s"] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{text}");
        }
    }

    #[test]
    fn named_errors_name_the_variable() {
        let err = parse_named("MICRO_REGISTER_TTL", "soon").unwrap_err();
        assert!(err.message().contains("MICRO_REGISTER_TTL"), "{err}");
    }

    #[test]
    fn format_round_trips() {
        for value in [
            Duration::ZERO,
            Duration::from_millis(1500),
            Duration::from_secs(5400),
            Duration::from_nanos(1_000_000_007),
        ] {
            assert_eq!(parse(&format(value)).unwrap(), value);
        }
    }

    #[test]
    fn serde_adaptors_read_and_write_strings() {
        #[derive(::serde::Serialize, ::serde::Deserialize, Debug, PartialEq)]
        struct Settings {
            #[serde(with = "super::serde")]
            ttl: Duration,
            #[serde(with = "super::serde_opt", default)]
            wait: Option<Duration>,
        }
        let settings: Settings = serde_json::from_str(r#"{"ttl":"1.5s"}"#).unwrap();
        assert_eq!(
            settings,
            Settings {
                ttl: Duration::from_millis(1500),
                wait: None
            }
        );
        let json = serde_json::to_string(&Settings {
            ttl: Duration::from_secs(2),
            wait: Some(Duration::from_millis(5)),
        })
        .unwrap();
        assert_eq!(json, r#"{"ttl":"2s","wait":"5ms"}"#);
        assert!(serde_json::from_str::<Settings>(r#"{"ttl":"250"}"#).is_err());
    }
}
