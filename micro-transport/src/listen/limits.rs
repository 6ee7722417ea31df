use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Overrides [`ConnectionLimits::max_connections`].
pub const MAX_CONNECTIONS_ENV: &str = "MICRO_CONNECTIONS_MAX";
/// Overrides [`ConnectionLimits::max_connections_per_peer`].
pub const MAX_CONNECTIONS_PER_PEER_ENV: &str = "MICRO_CONNECTIONS_MAX_PER_PEER";
/// Overrides [`ConnectionLimits::handshake_timeout`].
pub const HANDSHAKE_TIMEOUT_ENV: &str = "MICRO_CONNECTIONS_HANDSHAKE_TIMEOUT";
/// Overrides [`ConnectionLimits::header_read_timeout`].
pub const HEADER_READ_TIMEOUT_ENV: &str = "MICRO_CONNECTIONS_HEADER_TIMEOUT";
/// Overrides [`ConnectionLimits::idle_timeout`].
pub const IDLE_TIMEOUT_ENV: &str = "MICRO_CONNECTIONS_IDLE_TIMEOUT";

/// What a server allows its connections: how many, from whom, and for how
/// long without a call. Part of [`HttpConfig`](crate::http::HttpConfig) and
/// [`GrpcConfig`](crate::grpc::GrpcConfig).
///
/// Deserializes from any serde format; missing fields take their defaults and
/// durations are humantime strings.
///
/// ```
/// use std::time::Duration;
/// use micro_transport::listen::ConnectionLimits;
///
/// let limits: ConnectionLimits =
///     serde_json::from_str(r#"{"max_connections": 512, "handshake_timeout": "2s"}"#).unwrap();
/// assert_eq!(limits.max_connections, 512);
/// assert_eq!(limits.handshake_timeout, Duration::from_secs(2));
/// assert_eq!(limits.idle_timeout, ConnectionLimits::default().idle_timeout);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ConnectionLimits {
    /// The most connections open at once; one more is closed as soon as it is
    /// accepted, before anything is read from it. Keep it below the process's
    /// file-descriptor limit (`ulimit -n`) less what the service itself
    /// needs. Default: 10,000.
    pub max_connections: usize,
    /// The most connections open at once from one IP address. Default: 1,000.
    pub max_connections_per_peer: usize,
    /// How long a new connection has, from its accept, to complete the TLS
    /// handshake and the protocol preface and to send its first request's
    /// headers; a peer that sends nothing, or one byte at a time, is closed
    /// then. Default: 10 s.
    #[serde(with = "micro_core::duration::serde")]
    pub handshake_timeout: Duration,
    /// How long an HTTP/1.1 connection may take to send each later request's
    /// headers, the keep-alive wait before them included. Clients keep pooled
    /// connections for less than this. Default: 30 s.
    #[serde(with = "micro_core::duration::serde")]
    pub header_read_timeout: Duration,
    /// How long a connection may stay open with no call in flight before the
    /// server closes it (gracefully: HTTP/2 peers get GOAWAY and reconnect
    /// for their next call). Default: 60 s.
    #[serde(with = "micro_core::duration::serde")]
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            max_connections: 10_000,
            max_connections_per_peer: 1_000,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl ConnectionLimits {
    /// The defaults, overridden by the `MICRO_CONNECTIONS_*` variables where
    /// set ([`MAX_CONNECTIONS_ENV`], [`MAX_CONNECTIONS_PER_PEER_ENV`],
    /// [`HANDSHAKE_TIMEOUT_ENV`], [`HEADER_READ_TIMEOUT_ENV`],
    /// [`IDLE_TIMEOUT_ENV`]). A count that is not a positive whole number, or
    /// a duration that is not a humantime string, is `InvalidArgument` naming
    /// the variable.
    pub fn from_env() -> Result<ConnectionLimits> {
        ConnectionLimits::from_lookup(|name| micro_core::env::var(name).ok().flatten())
    }

    /// Like [`from_env`](ConnectionLimits::from_env), reading variables
    /// through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<ConnectionLimits> {
        let read = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let count = |name: &str, default: usize| -> Result<usize> {
            let Some(text) = read(name) else {
                return Ok(default);
            };
            match text.trim().parse::<usize>() {
                Ok(count) if count > 0 => Ok(count),
                _ => Err(Error::invalid_argument(format!(
                    "{name}={text:?} is not a positive whole number"
                ))),
            }
        };
        let duration = |name: &str, default: Duration| -> Result<Duration> {
            read(name).map_or(Ok(default), |text| {
                micro_core::duration::parse_named(name, text.trim())
            })
        };
        let defaults = ConnectionLimits::default();
        Ok(ConnectionLimits {
            max_connections: count(MAX_CONNECTIONS_ENV, defaults.max_connections)?,
            max_connections_per_peer: count(
                MAX_CONNECTIONS_PER_PEER_ENV,
                defaults.max_connections_per_peer,
            )?,
            handshake_timeout: duration(HANDSHAKE_TIMEOUT_ENV, defaults.handshake_timeout)?,
            header_read_timeout: duration(HEADER_READ_TIMEOUT_ENV, defaults.header_read_timeout)?,
            idle_timeout: duration(IDLE_TIMEOUT_ENV, defaults.idle_timeout)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::ErrorKind;

    fn from(vars: &[(&str, &str)]) -> Result<ConnectionLimits> {
        let vars: HashMap<_, _> = vars.iter().copied().collect();
        ConnectionLimits::from_lookup(|name| vars.get(name).map(|value| value.to_string()))
    }

    #[test]
    fn reads_the_environment() {
        let limits = from(&[
            (MAX_CONNECTIONS_ENV, "500"),
            (MAX_CONNECTIONS_PER_PEER_ENV, " 20 "),
            (HANDSHAKE_TIMEOUT_ENV, "2s"),
            (HEADER_READ_TIMEOUT_ENV, ""),
            (IDLE_TIMEOUT_ENV, "5m"),
        ])
        .unwrap();
        assert_eq!(
            limits,
            ConnectionLimits {
                max_connections: 500,
                max_connections_per_peer: 20,
                handshake_timeout: Duration::from_secs(2),
                idle_timeout: Duration::from_secs(300),
                ..ConnectionLimits::default()
            }
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            (MAX_CONNECTIONS_ENV, "0"),
            (MAX_CONNECTIONS_PER_PEER_ENV, "many"),
            (IDLE_TIMEOUT_ENV, "30"),
        ] {
            let err = from(&[(name, value)]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument);
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn round_trips_through_json() {
        let limits = ConnectionLimits {
            max_connections_per_peer: 3,
            idle_timeout: Duration::from_millis(1500),
            ..ConnectionLimits::default()
        };
        let json = serde_json::to_value(&limits).unwrap();
        assert_eq!(json["idle_timeout"], "1s 500ms");
        assert_eq!(
            serde_json::from_value::<ConnectionLimits>(json).unwrap(),
            limits
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(serde_json::from_str::<ConnectionLimits>(r#"{"max_conns":1}"#).is_err());
    }
}
