use serde::{Deserialize, Serialize};

/// The settings of a [`ConsulSource`](super::ConsulSource).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ConsulSourceConfig {
    /// The agent's address and the ACL token (sent as `X-Consul-Token`):
    /// the settings every Consul backend shares.
    pub connection: micro_connect::consul::ConsulConfig,
    /// The keys read: everything under this prefix, `/` separating sections.
    pub prefix: String,
    /// How long one blocking query may wait for a change, in seconds.
    pub wait_secs: u64,
}

impl Default for ConsulSourceConfig {
    fn default() -> ConsulSourceConfig {
        ConsulSourceConfig {
            connection: micro_connect::consul::ConsulConfig::default(),
            prefix: "micro/config/".to_owned(),
            wait_secs: 30,
        }
    }
}

impl ConsulSourceConfig {
    /// The defaults, overridden by `MICRO_CONFIG_CONSUL_PREFIX` and the
    /// connection variables `MICRO_CONFIG_CONSUL_*` / `MICRO_CONSUL_*`, then
    /// Consul's own `CONSUL_HTTP_ADDR` and `CONSUL_HTTP_TOKEN` (see
    /// [`micro_connect`]).
    pub fn from_env() -> crate::Result<ConsulSourceConfig> {
        let mut config = ConsulSourceConfig {
            connection: micro_connect::consul::ConsulConfig::from_env(Some(
                micro_connect::Block::Config,
            ))?,
            ..ConsulSourceConfig::default()
        };
        if let Some(prefix) = micro_core::env::var("MICRO_CONFIG_CONSUL_PREFIX")? {
            config.prefix = prefix;
        }
        Ok(config)
    }
}
