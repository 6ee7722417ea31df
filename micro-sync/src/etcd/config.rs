use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{ENV_ADDRESS, Error, Result};

/// Settings of an [`EtcdCoordinator`](super::EtcdCoordinator), with serde
/// support so they can come from a configuration file. Every field has a default.
///
/// ```
/// use micro_sync::etcd::EtcdConfig;
///
/// let config: EtcdConfig =
///     serde_json::from_str(r#"{ "endpoints": ["http://10.0.0.5:2379"] }"#).unwrap();
/// assert_eq!(config.prefix, "micro/sync/");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct EtcdConfig {
    /// The etcd endpoints to connect to. Default: `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Prefix of every key this backend writes (`<prefix>lock/<name>/…`,
    /// `<prefix>election/<role>/…`). Default: `micro/sync/`.
    pub prefix: String,
    /// How long connecting may take. Default: `5s`.
    #[serde(with = "micro_core::duration::serde")]
    pub connect_timeout: Duration,
    /// How long a lock acquisition with no wait (`LockOptions::wait` is
    /// `None`) may take when the lock looked free but another caller took it
    /// first. etcd's Lock call cannot fail fast on its own. Default: `2s`.
    #[serde(with = "micro_core::duration::serde")]
    pub try_window: Duration,
}

impl EtcdConfig {
    /// The variable with the key prefix.
    pub const ENV_PREFIX: &'static str = "MICRO_SYNC_ETCD_PREFIX";

    /// The defaults, overridden by `MICRO_SYNC_ADDRESS` (comma-separated
    /// endpoints; `http://` is added when no scheme is given) and
    /// `MICRO_SYNC_ETCD_PREFIX`.
    pub fn from_env() -> Result<EtcdConfig> {
        EtcdConfig::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](EtcdConfig::from_env), reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<EtcdConfig> {
        let mut config = EtcdConfig::default();
        if let Some(address) = lookup(ENV_ADDRESS).filter(|value| !value.trim().is_empty()) {
            config.endpoints = address
                .split(',')
                .map(str::trim)
                .filter(|endpoint| !endpoint.is_empty())
                .map(|endpoint| {
                    if endpoint.contains("://") {
                        endpoint.to_owned()
                    } else {
                        format!("http://{endpoint}")
                    }
                })
                .collect();
        }
        if let Some(prefix) = lookup(EtcdConfig::ENV_PREFIX).filter(|value| !value.is_empty()) {
            config.prefix = prefix;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.endpoints.is_empty() {
            return Err(Error::invalid_argument("etcd: no endpoints configured"));
        }
        Ok(())
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        self.connect_timeout.max(Duration::from_millis(1))
    }

    pub(crate) fn try_window(&self) -> Duration {
        self.try_window.max(Duration::from_millis(1))
    }
}

impl Default for EtcdConfig {
    fn default() -> EtcdConfig {
        EtcdConfig {
            endpoints: vec!["http://127.0.0.1:2379".to_owned()],
            prefix: "micro/sync/".to_owned(),
            connect_timeout: Duration::from_secs(5),
            try_window: Duration::from_secs(2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_gives_endpoints_and_prefix() {
        let config = EtcdConfig::from_lookup(|name| match name {
            "MICRO_SYNC_ADDRESS" => Some("127.0.0.1:2379, https://etcd:2379".to_owned()),
            "MICRO_SYNC_ETCD_PREFIX" => Some("app/".to_owned()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            config.endpoints,
            ["http://127.0.0.1:2379", "https://etcd:2379"]
        );
        assert_eq!(config.prefix, "app/");
    }

    #[test]
    fn no_endpoints_is_invalid() {
        let config = EtcdConfig {
            endpoints: vec![],
            ..EtcdConfig::default()
        };
        assert_eq!(
            config.validate().unwrap_err().kind(),
            crate::ErrorKind::InvalidArgument
        );
    }
}
