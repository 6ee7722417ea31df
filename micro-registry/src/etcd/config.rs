use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Settings of an [`EtcdRegistry`](super::EtcdRegistry).
///
/// ```
/// use micro_registry::etcd::EtcdConfig;
///
/// let config: EtcdConfig =
///     serde_json::from_str(r#"{"connection": {"endpoints": ["http://10.0.0.5:2379"]}}"#).unwrap();
/// assert_eq!(config.prefix, "/micro/registry/");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct EtcdConfig {
    /// Where etcd is and how to authenticate (endpoints, user, TLS, connect
    /// timeout): the settings every etcd backend shares.
    pub connection: micro_connect::etcd::EtcdConfig,
    /// Every key this registry writes starts with it; registries with different
    /// prefixes do not see each other. Default: `/micro/registry/`.
    pub prefix: String,
    /// How long one request to etcd may take before it fails with `Timeout`.
    /// Default: 5 seconds.
    #[serde(with = "micro_core::duration::serde")]
    pub request_timeout: Duration,
    /// How long a reopened watch waits at most between attempts while etcd is
    /// unreachable. Default: 2 seconds.
    #[serde(with = "micro_core::duration::serde")]
    pub max_reconnect_backoff: Duration,
}

impl EtcdConfig {
    /// The default endpoint.
    pub const DEFAULT_ENDPOINT: &'static str = micro_connect::etcd::EtcdConfig::DEFAULT_ENDPOINT;
    /// The default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "/micro/registry/";

    /// Defaults, overridden by `MICRO_REGISTRY_PREFIX` and the connection
    /// variables `MICRO_REGISTRY_ETCD_*` / `MICRO_ETCD_*` (with
    /// `MICRO_REGISTRY_ADDRESS` as the URL), see [`micro_connect`].
    pub fn from_env() -> Result<EtcdConfig> {
        EtcdConfig::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](EtcdConfig::from_env), reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<EtcdConfig> {
        let set = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut config = EtcdConfig {
            connection: micro_connect::etcd::EtcdConfig::from_lookup(
                Some(micro_connect::Block::Registry),
                &micro_connect::Lookup::from_fn(&lookup),
            )?,
            ..EtcdConfig::default()
        };
        if let Some(prefix) = set("MICRO_REGISTRY_PREFIX") {
            config.prefix = prefix;
        }
        config.validate()?;
        Ok(config)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        self.connection.validate()?;
        if self.request_timeout.is_zero() {
            return Err(Error::invalid_argument(
                "etcd registry: request_timeout is zero",
            ));
        }
        Ok(())
    }
}

impl Default for EtcdConfig {
    fn default() -> EtcdConfig {
        EtcdConfig {
            connection: micro_connect::etcd::EtcdConfig::default(),
            prefix: EtcdConfig::DEFAULT_PREFIX.to_owned(),
            request_timeout: Duration::from_secs(5),
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
        let vars = HashMap::from([
            ("MICRO_REGISTRY_ADDRESS", "http://a:2379, http://b:2379"),
            ("MICRO_REGISTRY_PREFIX", "/team/"),
        ]);
        let config = EtcdConfig::from_lookup(|n| vars.get(n).map(|v| (*v).to_owned())).unwrap();
        assert_eq!(
            config.connection.endpoints,
            ["http://a:2379", "http://b:2379"]
        );
        assert_eq!(config.prefix, "/team/");
        let empty = EtcdConfig::from_lookup(|_| None).unwrap();
        assert_eq!(empty, EtcdConfig::default());
    }

    #[test]
    fn bad_settings_are_invalid_arguments() {
        let vars = HashMap::from([("MICRO_ETCD_USER", "root")]);
        let err = EtcdConfig::from_lookup(|n| vars.get(n).map(|v| (*v).to_owned())).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        let mut config = EtcdConfig::default();
        config.connection.endpoints = Vec::new();
        assert_eq!(
            config.validate().unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn round_trips_through_json() {
        let config = EtcdConfig::default();
        let json = serde_json::to_string(&config).unwrap();
        assert!(json.contains("\"request_timeout\":\"5s\""), "{json}");
        assert_eq!(serde_json::from_str::<EtcdConfig>(&json).unwrap(), config);
    }
}
