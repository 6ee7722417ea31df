use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Result;

/// Settings of an [`EtcdCoordinator`](super::EtcdCoordinator), with serde
/// support so they can come from a configuration file. Every field has a default.
///
/// ```
/// use micro_sync::etcd::EtcdConfig;
///
/// let config: EtcdConfig =
///     serde_json::from_str(r#"{ "connection": { "endpoints": ["http://10.0.0.5:2379"] } }"#).unwrap();
/// assert_eq!(config.prefix, "micro/sync/");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct EtcdConfig {
    /// Where etcd is and how to authenticate (endpoints, user, TLS, connect
    /// timeout): the settings every etcd backend shares.
    pub connection: micro_connect::etcd::EtcdConfig,
    /// Prefix of every key this backend writes (`<prefix>lock/<name>/…`,
    /// `<prefix>election/<role>/…`). Default: `micro/sync/`.
    pub prefix: String,
    /// How long a lock acquisition with no wait (`LockOptions::wait` is
    /// `None`) may take when the lock looked free but another caller took it
    /// first. etcd's Lock call cannot fail fast on its own. Default: `2s`.
    #[serde(with = "micro_core::duration::serde")]
    pub try_window: Duration,
}

impl EtcdConfig {
    /// The variable with the key prefix.
    pub const ENV_PREFIX: &'static str = "MICRO_SYNC_ETCD_PREFIX";

    /// The defaults, overridden by `MICRO_SYNC_ETCD_PREFIX` and the
    /// connection variables `MICRO_SYNC_ETCD_*` / `MICRO_ETCD_*` (with
    /// `MICRO_SYNC_ADDRESS` as the URL; `http://` is added when no scheme
    /// is given), see [`micro_connect`].
    pub fn from_env() -> Result<EtcdConfig> {
        EtcdConfig::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](EtcdConfig::from_env), reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<EtcdConfig> {
        let mut config = EtcdConfig {
            connection: micro_connect::etcd::EtcdConfig::from_lookup(
                Some(micro_connect::Block::Sync),
                &micro_connect::Lookup::from_fn(&lookup),
            )?,
            ..EtcdConfig::default()
        };
        for endpoint in &mut config.connection.endpoints {
            if !endpoint.contains("://") {
                *endpoint = format!("http://{endpoint}");
            }
        }
        if let Some(prefix) = lookup(EtcdConfig::ENV_PREFIX).filter(|value| !value.is_empty()) {
            config.prefix = prefix;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        self.connection.validate()
    }

    pub(crate) fn try_window(&self) -> Duration {
        self.try_window.max(Duration::from_millis(1))
    }
}

impl Default for EtcdConfig {
    fn default() -> EtcdConfig {
        EtcdConfig {
            connection: micro_connect::etcd::EtcdConfig::default(),
            prefix: "micro/sync/".to_owned(),
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
            config.connection.endpoints,
            ["http://127.0.0.1:2379", "https://etcd:2379"]
        );
        assert_eq!(config.prefix, "app/");
    }

    #[test]
    fn no_endpoints_is_invalid() {
        let mut config = EtcdConfig::default();
        config.connection.endpoints = vec![];
        assert_eq!(
            config.validate().unwrap_err().kind(),
            crate::ErrorKind::InvalidArgument
        );
    }
}
