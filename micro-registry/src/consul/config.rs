use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Settings of a [`ConsulRegistry`](super::ConsulRegistry).
///
/// ```
/// use micro_registry::consul::ConsulConfig;
///
/// let config: ConsulConfig =
///     serde_json::from_str(r#"{"connection": {"address": "http://10.0.0.5:8500"}}"#).unwrap();
/// assert_eq!(config.deregister_critical_after.as_secs(), 60);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ConsulConfig {
    /// The local agent's address and the ACL token (sent as
    /// `X-Consul-Token`): the settings every Consul backend shares.
    pub connection: micro_connect::consul::ConsulConfig,
    /// How long one ordinary request may take before it fails with `Timeout`.
    /// Default: 5 seconds.
    #[serde(with = "micro_core::duration::serde")]
    pub request_timeout: Duration,
    /// How long a watch's blocking query waits for a change before asking
    /// again (Consul's `wait`, whole seconds). Default: 30 seconds.
    #[serde(with = "micro_core::duration::serde")]
    pub watch_wait: Duration,
    /// Consul's `DeregisterCriticalServiceAfter` on each node's TTL check: a
    /// node whose check stays critical this long is removed from the catalog
    /// (Consul's minimum is one minute). Default: 60 seconds.
    #[serde(with = "micro_core::duration::serde")]
    pub deregister_critical_after: Duration,
    /// How long a watch waits at most between attempts while the agent is
    /// unreachable. Default: 2 seconds.
    #[serde(with = "micro_core::duration::serde")]
    pub max_reconnect_backoff: Duration,
}

impl ConsulConfig {
    /// The default agent address.
    pub const DEFAULT_ADDRESS: &'static str = micro_connect::consul::ConsulConfig::DEFAULT_ADDRESS;

    /// Defaults, overridden by the connection variables
    /// `MICRO_REGISTRY_CONSUL_*` / `MICRO_CONSUL_*` (with
    /// `MICRO_REGISTRY_ADDRESS` as the address, `http://` added when no
    /// scheme is given), see [`micro_connect`].
    pub fn from_env() -> Result<ConsulConfig> {
        ConsulConfig::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](ConsulConfig::from_env), reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<ConsulConfig> {
        let config = ConsulConfig {
            connection: micro_connect::consul::ConsulConfig::from_lookup(
                Some(micro_connect::Block::Registry),
                &micro_connect::Lookup::from_fn(&lookup),
            )?,
            ..ConsulConfig::default()
        };
        config.validate()?;
        Ok(config)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        self.connection.validate()?;
        if self.request_timeout.is_zero() || self.watch_wait < Duration::from_secs(1) {
            return Err(Error::invalid_argument(
                "consul registry: request_timeout must be above zero and watch_wait at least a second",
            ));
        }
        Ok(())
    }

    /// The address without a trailing slash.
    pub(crate) fn base(&self) -> &str {
        self.connection.base_url()
    }
}

impl Default for ConsulConfig {
    fn default() -> ConsulConfig {
        ConsulConfig {
            connection: micro_connect::consul::ConsulConfig::default(),
            request_timeout: Duration::from_secs(5),
            watch_wait: Duration::from_secs(30),
            deregister_critical_after: Duration::from_secs(60),
            max_reconnect_backoff: Duration::from_secs(2),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::ErrorKind;

    #[test]
    fn environment_overrides_defaults() {
        let vars = HashMap::from([("MICRO_REGISTRY_ADDRESS", "127.0.0.1:8501")]);
        let config = ConsulConfig::from_lookup(|n| vars.get(n).map(|v| (*v).to_owned())).unwrap();
        assert_eq!(config.connection.address, "http://127.0.0.1:8501");
        assert_eq!(
            ConsulConfig::from_lookup(|_| None).unwrap(),
            ConsulConfig::default()
        );
    }

    #[test]
    fn bad_settings_are_invalid_arguments() {
        let mut config = ConsulConfig::default();
        config.connection.address = "ftp://x".to_owned();
        assert_eq!(
            config.validate().unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn round_trips_through_json() {
        let config = ConsulConfig::default();
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(serde_json::from_str::<ConsulConfig>(&json).unwrap(), config);
    }
}
