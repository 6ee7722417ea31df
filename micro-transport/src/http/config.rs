use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{DEFAULT_MAX_BODY_SIZE, listen::ConnectionLimits};

/// Settings of an [`HttpTransport`](super::HttpTransport).
///
/// Deserializes from any serde format; missing fields take their defaults and
/// durations are humantime strings (`250ms`, `5s`).
///
/// ```
/// use std::time::Duration;
/// use micro_transport::http::HttpConfig;
///
/// let config: HttpConfig = serde_json::from_str(r#"{"max_body_size": 1048576, "connect_timeout": "250ms"}"#).unwrap();
/// assert_eq!(config.max_body_size, 1024 * 1024);
/// assert_eq!(config.connect_timeout, Duration::from_millis(250));
/// assert_eq!(config.pool_idle_timeout, HttpConfig::default().pool_idle_timeout);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct HttpConfig {
    /// The largest request body a server reads and the largest response body a
    /// client reads, in bytes. Over it, a server answers 413 with code
    /// `resource_exhausted` (judged from `Content-Length` before reading, and
    /// enforced while reading a body of unknown length), and a client fails
    /// with `ResourceExhausted` without sending or reading the body.
    /// Default: 4 MiB.
    pub max_body_size: usize,
    /// How long a client waits for a TCP connection before the call fails
    /// with `Unavailable`. Default: 5 s.
    #[serde(with = "micro_core::duration::serde")]
    pub connect_timeout: Duration,
    /// How long an idle pooled client connection is kept open. Default: 20 s,
    /// below the 30 s after which micro's HTTP servers close an idle
    /// HTTP/1.1 connection ([`ConnectionLimits::header_read_timeout`]), so
    /// that a call never races the server's close.
    #[serde(with = "micro_core::duration::serde")]
    pub pool_idle_timeout: Duration,
    /// The most idle connections a client keeps per server address. Default: 32.
    pub pool_max_idle_per_host: usize,
    /// Whether a client speaks HTTP/2 over cleartext (h2c, prior knowledge)
    /// instead of HTTP/1.1: one multiplexed connection per server. Servers
    /// always accept both. Default: false.
    pub http2_prior_knowledge: bool,
    /// What a server allows its connections: how many, from whom, how long
    /// before the first call and between calls. See [`ConnectionLimits`].
    pub connections: ConnectionLimits,
    /// TLS for servers (when a certificate is set) and for clients dialing
    /// `https://` addresses (feature `tls`). See [`crate::tls`].
    #[cfg(feature = "tls")]
    pub tls: crate::tls::TlsConfig,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            connect_timeout: Duration::from_secs(5),
            pool_idle_timeout: Duration::from_secs(20),
            pool_max_idle_per_host: 32,
            http2_prior_knowledge: false,
            connections: ConnectionLimits::default(),
            #[cfg(feature = "tls")]
            tls: crate::tls::TlsConfig::default(),
        }
    }
}

impl HttpConfig {
    /// The defaults, with the connection limits
    /// ([`ConnectionLimits::from_env`]) and, with feature `tls`, the TLS
    /// settings (`TlsConfig::from_env`) read from the environment.
    pub fn from_env() -> crate::Result<HttpConfig> {
        Ok(HttpConfig {
            connections: ConnectionLimits::from_env()?,
            #[cfg(feature = "tls")]
            tls: crate::tls::TlsConfig::from_env()?,
            ..HttpConfig::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json() {
        let config = HttpConfig {
            http2_prior_knowledge: true,
            connect_timeout: Duration::from_millis(1500),
            ..HttpConfig::default()
        };
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["connect_timeout"], "1s 500ms");
        assert_eq!(serde_json::from_value::<HttpConfig>(json).unwrap(), config);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(serde_json::from_str::<HttpConfig>(r#"{"max_body":1}"#).is_err());
    }
}
