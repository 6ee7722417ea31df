use std::time::Duration;

use serde::{Deserialize, Serialize};

use micro_transport::listen::ConnectionLimits;

use crate::{Error, Result};

/// The environment variable holding the address the broker endpoint listens on.
pub const ADDRESS_ENV: &str = "MICRO_BROKER_ADDRESS";
/// The environment variable holding the address other processes reach the
/// endpoint at, when it differs from the listen address (NAT, containers).
pub const ADVERTISE_ENV: &str = "MICRO_BROKER_ADVERTISE";
/// The environment variable holding the per-subscription buffer, in messages.
pub const BUFFER_ENV: &str = "MICRO_BROKER_BUFFER";

/// Settings of an [`HttpBroker`](super::HttpBroker); every field has a default.
///
/// ```
/// use micro_broker::http::HttpConfig;
///
/// let config: HttpConfig = serde_json::from_str(r#"{"buffer": 64}"#)?;
/// assert_eq!(config.buffer, 64);
/// assert_eq!(config.address, "127.0.0.1:0");
/// assert_eq!(config.service, "micro.broker");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct HttpConfig {
    /// Where the broker endpoint listens once the first subscription is made
    /// (a process that only publishes never listens). Default `127.0.0.1:0`:
    /// a free loopback port.
    pub address: String,
    /// The address registered for other processes to deliver to; default:
    /// the address actually bound.
    pub advertise: Option<String>,
    /// The registry service under which subscriptions are registered, one
    /// node per subscription.
    pub service: String,
    /// Whether publishers look subscribers up through a watch-fed cache
    /// (`true`, the default: no registry read per publish, but subscriptions
    /// of other processes become visible only when the watch delivers them)
    /// or ask the registry on every publish.
    pub cached_lookups: bool,
    /// How many accepted messages each subscription holds before deliveries
    /// to it wait (back-pressure onto the publisher). At least 1.
    pub buffer: usize,
    /// The largest message body accepted, in bytes; bigger ones are refused
    /// with `ResourceExhausted`.
    pub max_message_bytes: usize,
    /// How long a publish waits for one subscriber to accept a message
    /// (including waiting for room in its buffer) before failing with `Timeout`.
    #[serde(with = "micro_core::duration::serde")]
    pub delivery_timeout: Duration,
    /// How long a subscription's registration lives unless renewed.
    #[serde(with = "micro_core::duration::serde")]
    pub register_ttl: Duration,
    /// How often a subscription renews its registration.
    #[serde(with = "micro_core::duration::serde")]
    pub register_interval: Duration,
    /// What the endpoint allows its connections: how many, from whom, how
    /// long before the first delivery and between deliveries. Read from the
    /// `MICRO_CONNECTIONS_*` variables by [`HttpConfig::from_env`], like the
    /// transports' servers.
    pub connections: ConnectionLimits,
    /// TLS for the endpoint (when a certificate is set; subscriptions then
    /// register `tls=true`) and for deliveries to endpoints that registered
    /// so (feature `tls`). Read from `MICRO_TLS_*` by [`HttpConfig::from_env`].
    #[cfg(feature = "tls")]
    pub tls: micro_transport::tls::TlsConfig,
}

impl HttpConfig {
    /// The default registry service name for subscriptions.
    pub const DEFAULT_SERVICE: &str = "micro.broker";
    /// The default per-subscription buffer, in messages.
    pub const DEFAULT_BUFFER: usize = 1024;

    /// Reads [`ADDRESS_ENV`], [`ADVERTISE_ENV`], [`BUFFER_ENV`] and the
    /// connection limits' variables ([`ConnectionLimits::from_env`]); unset
    /// variables keep their defaults.
    pub fn from_env() -> Result<HttpConfig> {
        HttpConfig::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`HttpConfig::from_env`], reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<HttpConfig> {
        let set = |name: &str| {
            lookup(name)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        let mut config = HttpConfig {
            connections: ConnectionLimits::from_lookup(&lookup)?,
            #[cfg(feature = "tls")]
            tls: micro_transport::tls::TlsConfig::from_lookup(&lookup)?,
            ..HttpConfig::default()
        };
        if let Some(address) = set(ADDRESS_ENV) {
            config.address = address;
        }
        config.advertise = set(ADVERTISE_ENV);
        if let Some(buffer) = set(BUFFER_ENV) {
            config.buffer = buffer.parse().map_err(|err| {
                Error::invalid_argument(format!(
                    "{BUFFER_ENV}=`{buffer}` is not a number of messages"
                ))
                .with_source(err)
            })?;
        }
        Ok(config)
    }
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            address: "127.0.0.1:0".to_owned(),
            advertise: None,
            service: HttpConfig::DEFAULT_SERVICE.to_owned(),
            cached_lookups: true,
            buffer: HttpConfig::DEFAULT_BUFFER,
            max_message_bytes: 4 * 1024 * 1024,
            delivery_timeout: Duration::from_secs(30),
            register_ttl: Duration::from_secs(30),
            register_interval: Duration::from_secs(10),
            connections: ConnectionLimits::default(),
            #[cfg(feature = "tls")]
            tls: micro_transport::tls::TlsConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn environment_overrides_defaults() {
        let config = HttpConfig::from_lookup(|name| match name {
            ADDRESS_ENV => Some("127.0.0.1:7000".to_owned()),
            ADVERTISE_ENV => Some("broker.example:7000".to_owned()),
            BUFFER_ENV => Some(" 16 ".to_owned()),
            _ => None,
        })
        .unwrap();
        assert_eq!(config.address, "127.0.0.1:7000");
        assert_eq!(config.advertise.as_deref(), Some("broker.example:7000"));
        assert_eq!(config.buffer, 16);
        assert_eq!(
            HttpConfig::from_lookup(|_| None).unwrap(),
            HttpConfig::default()
        );
        let err = HttpConfig::from_lookup(|name| (name == BUFFER_ENV).then(|| "lots".into()))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    }

    #[test]
    fn durations_are_humantime_strings() {
        let config: HttpConfig =
            serde_json::from_str(r#"{"delivery_timeout": "1.5s", "register_ttl": "1m"}"#).unwrap();
        assert_eq!(config.delivery_timeout, Duration::from_millis(1500));
        assert_eq!(config.register_ttl, Duration::from_secs(60));
        // A bare number has no unit: refused rather than guessed.
        assert!(serde_json::from_str::<HttpConfig>(r#"{"delivery_timeout": 1500}"#).is_err());
        assert!(serde_json::from_str::<HttpConfig>(r#"{"delivery_timeout": "1500"}"#).is_err());
        assert!(serde_json::from_str::<HttpConfig>(r#"{"bufer": 1}"#).is_err());
    }
}
