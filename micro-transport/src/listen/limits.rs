use std::time::Duration;

use serde::{Deserialize, Serialize};

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

#[cfg(test)]
mod tests {
    use super::*;

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
