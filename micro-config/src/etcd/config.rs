use serde::{Deserialize, Serialize};

/// The settings of an [`EtcdSource`](super::EtcdSource).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct EtcdSourceConfig {
    /// Where etcd is and how to authenticate (endpoints, user, TLS, connect
    /// timeout): the settings every etcd backend shares.
    pub connection: micro_connect::etcd::EtcdConfig,
    /// The keys read: everything under this prefix, `/` separating sections
    /// (`micro/config/greeter/db/host` is `db.host`).
    pub prefix: String,
}

impl Default for EtcdSourceConfig {
    fn default() -> EtcdSourceConfig {
        EtcdSourceConfig {
            connection: micro_connect::etcd::EtcdConfig::default(),
            prefix: "micro/config/".to_owned(),
        }
    }
}

impl EtcdSourceConfig {
    /// The defaults, overridden by `MICRO_CONFIG_ETCD_PREFIX` and the
    /// connection variables `MICRO_CONFIG_ETCD_*` / `MICRO_ETCD_*` (see
    /// [`micro_connect`]).
    pub fn from_env() -> crate::Result<EtcdSourceConfig> {
        let mut config = EtcdSourceConfig {
            connection: micro_connect::etcd::EtcdConfig::from_env(Some(
                micro_connect::Block::Config,
            ))?,
            ..EtcdSourceConfig::default()
        };
        if let Some(prefix) = micro_core::env::var("MICRO_CONFIG_ETCD_PREFIX")? {
            config.prefix = prefix;
        }
        Ok(config)
    }
}
