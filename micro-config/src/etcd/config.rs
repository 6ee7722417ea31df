use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The settings of an [`EtcdSource`](super::EtcdSource).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct EtcdSourceConfig {
    /// etcd client URLs (`http://127.0.0.1:2379`).
    pub endpoints: Vec<String>,
    /// The keys read: everything under this prefix, `/` separating sections
    /// (`micro/config/greeter/db/host` is `db.host`).
    pub prefix: String,
    /// How long to wait for a connection (default `5s`).
    #[serde(with = "micro_core::duration::serde")]
    pub connect_timeout: Duration,
}

impl Default for EtcdSourceConfig {
    fn default() -> EtcdSourceConfig {
        EtcdSourceConfig {
            endpoints: vec!["http://127.0.0.1:2379".to_owned()],
            prefix: "micro/config/".to_owned(),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl EtcdSourceConfig {
    /// The defaults, overridden by `MICRO_CONFIG_ETCD_ENDPOINTS`
    /// (comma-separated) and `MICRO_CONFIG_ETCD_PREFIX`.
    pub fn from_env() -> EtcdSourceConfig {
        let mut config = EtcdSourceConfig::default();
        if let Ok(endpoints) = std::env::var("MICRO_CONFIG_ETCD_ENDPOINTS") {
            config.endpoints = endpoints
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Ok(prefix) = std::env::var("MICRO_CONFIG_ETCD_PREFIX") {
            config.prefix = prefix;
        }
        config
    }
}
