use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Settings of a [`NatsRegistry`](super::NatsRegistry).
///
/// ```
/// use micro_registry::nats::NatsConfig;
///
/// let config: NatsConfig =
///     serde_json::from_str(r#"{"connection": {"servers": ["nats://10.0.0.5:4222"]}}"#).unwrap();
/// assert_eq!(config.bucket, "micro_registry");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct NatsConfig {
    /// Where the servers are and how to authenticate (servers, credentials,
    /// TLS, connect timeout): the settings every NATS backend shares.
    pub connection: micro_connect::nats::NatsConfig,
    /// The JetStream key/value bucket holding registrations, created on first
    /// use; registries on different buckets do not see each other. Letters,
    /// digits, `-` and `_`. Default: `micro_registry`.
    pub bucket: String,
    /// How long one request to NATS may take before it fails with `Timeout`.
    /// Default: 5 seconds.
    #[serde(with = "micro_core::duration::serde")]
    pub request_timeout: Duration,
    /// How long the marker left by a deregistration or an expiry stays in the
    /// bucket, so watchers that were disconnected meanwhile still see the
    /// removal; whole seconds, at least one. Default: 15 minutes.
    #[serde(with = "micro_core::duration::serde")]
    pub marker_ttl: Duration,
    /// How long a reopened watch waits at most between attempts while NATS is
    /// unreachable. Default: 2 seconds.
    #[serde(with = "micro_core::duration::serde")]
    pub max_reconnect_backoff: Duration,
    /// Keep the bucket in memory instead of on disk (lost when the server restarts).
    pub memory_storage: bool,
}

impl NatsConfig {
    /// The default server.
    pub const DEFAULT_SERVER: &'static str = micro_connect::nats::NatsConfig::DEFAULT_SERVER;
    /// The default bucket.
    pub const DEFAULT_BUCKET: &'static str = "micro_registry";

    /// Defaults, overridden by `MICRO_REGISTRY_BUCKET` and the connection
    /// variables `MICRO_REGISTRY_NATS_*` / `MICRO_NATS_*` (with
    /// `MICRO_REGISTRY_ADDRESS` as the URL), see [`micro_connect`].
    pub fn from_env() -> Result<NatsConfig> {
        NatsConfig::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](NatsConfig::from_env), reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<NatsConfig> {
        let set = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut config = NatsConfig {
            connection: micro_connect::nats::NatsConfig::from_lookup(
                Some(micro_connect::Block::Registry),
                &micro_connect::Lookup::from_fn(&lookup),
            )?,
            ..NatsConfig::default()
        };
        if let Some(bucket) = set("MICRO_REGISTRY_BUCKET") {
            config.bucket = bucket;
        }
        config.validate()?;
        Ok(config)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        self.connection.validate()?;
        let bucket_ok = !self.bucket.is_empty()
            && self
                .bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !bucket_ok {
            return Err(Error::invalid_argument(format!(
                "nats registry: bucket {:?} must be letters, digits, '-' and '_'",
                self.bucket
            )));
        }
        if self.request_timeout.is_zero() {
            return Err(Error::invalid_argument(
                "nats registry: request_timeout is zero",
            ));
        }
        Ok(())
    }
}

impl Default for NatsConfig {
    fn default() -> NatsConfig {
        NatsConfig {
            connection: micro_connect::nats::NatsConfig::default(),
            bucket: NatsConfig::DEFAULT_BUCKET.to_owned(),
            request_timeout: Duration::from_secs(5),
            marker_ttl: Duration::from_secs(15 * 60),
            max_reconnect_backoff: Duration::from_secs(2),
            memory_storage: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::ErrorKind;

    fn from(vars: &[(&str, &str)]) -> Result<NatsConfig> {
        let vars: HashMap<_, _> = vars.iter().copied().collect();
        NatsConfig::from_lookup(|n| vars.get(n).map(|v| (*v).to_owned()))
    }

    #[test]
    fn environment_overrides_defaults() {
        let config = from(&[
            ("MICRO_REGISTRY_ADDRESS", "nats://a:4222,nats://b:4222"),
            ("MICRO_REGISTRY_BUCKET", "team_a"),
        ])
        .unwrap();
        assert_eq!(
            config.connection.servers,
            ["nats://a:4222", "nats://b:4222"]
        );
        assert_eq!(config.bucket, "team_a");
        assert_eq!(from(&[]).unwrap(), NatsConfig::default());
    }

    #[test]
    fn bad_settings_are_invalid_arguments() {
        for vars in [
            &[("MICRO_REGISTRY_BUCKET", "a.b")][..],
            &[("MICRO_NATS_PASSWORD", "secret")][..],
        ] {
            assert_eq!(from(vars).unwrap_err().kind(), ErrorKind::InvalidArgument);
        }
    }

    #[test]
    fn round_trips_through_json() {
        let config = NatsConfig::default();
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(serde_json::from_str::<NatsConfig>(&json).unwrap(), config);
    }
}
