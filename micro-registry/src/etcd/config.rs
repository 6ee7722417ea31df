use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Settings of an [`EtcdRegistry`](super::EtcdRegistry).
///
/// ```
/// use micro_registry::etcd::EtcdConfig;
///
/// let config: EtcdConfig = serde_json::from_str(r#"{"endpoints": ["http://10.0.0.5:2379"]}"#).unwrap();
/// assert_eq!(config.prefix, "/micro/registry/");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct EtcdConfig {
    /// The etcd members to talk to (`http://host:2379`). Default: `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
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
    /// User name, if etcd has authentication on.
    pub user: Option<String>,
    /// Password for [`user`](EtcdConfig::user).
    pub password: Option<String>,
}

impl EtcdConfig {
    /// The default endpoint.
    pub const DEFAULT_ENDPOINT: &'static str = "http://127.0.0.1:2379";
    /// The default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "/micro/registry/";

    /// Defaults, overridden by `MICRO_REGISTRY_ADDRESS` (comma-separated
    /// endpoints), `MICRO_REGISTRY_PREFIX`, `MICRO_ETCD_USER` and
    /// `MICRO_ETCD_PASSWORD`.
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
        let mut config = EtcdConfig::default();
        if let Some(address) = set("MICRO_REGISTRY_ADDRESS") {
            config.endpoints = address
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(prefix) = set("MICRO_REGISTRY_PREFIX") {
            config.prefix = prefix;
        }
        config.user = set("MICRO_ETCD_USER");
        config.password = set("MICRO_ETCD_PASSWORD");
        config.validate()?;
        Ok(config)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.endpoints.is_empty() {
            return Err(Error::invalid_argument("etcd registry: no endpoints given"));
        }
        if self.request_timeout.is_zero() {
            return Err(Error::invalid_argument(
                "etcd registry: request_timeout is zero",
            ));
        }
        if self.user.is_some() != self.password.is_some() {
            return Err(Error::invalid_argument(
                "etcd registry: user and password go together",
            ));
        }
        Ok(())
    }
}

impl Default for EtcdConfig {
    fn default() -> EtcdConfig {
        EtcdConfig {
            endpoints: vec![EtcdConfig::DEFAULT_ENDPOINT.to_owned()],
            prefix: EtcdConfig::DEFAULT_PREFIX.to_owned(),
            request_timeout: Duration::from_secs(5),
            max_reconnect_backoff: Duration::from_secs(2),
            user: None,
            password: None,
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
        assert_eq!(config.endpoints, ["http://a:2379", "http://b:2379"]);
        assert_eq!(config.prefix, "/team/");
        let empty = EtcdConfig::from_lookup(|_| None).unwrap();
        assert_eq!(empty, EtcdConfig::default());
    }

    #[test]
    fn bad_settings_are_invalid_arguments() {
        let vars = HashMap::from([("MICRO_ETCD_USER", "root")]);
        let err = EtcdConfig::from_lookup(|n| vars.get(n).map(|v| (*v).to_owned())).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        let config = EtcdConfig {
            endpoints: Vec::new(),
            ..EtcdConfig::default()
        };
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
