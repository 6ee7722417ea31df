use serde::{Deserialize, Serialize};

/// The settings of a [`ConsulSource`](super::ConsulSource).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ConsulSourceConfig {
    /// The Consul agent's HTTP address (`http://127.0.0.1:8500`).
    pub address: String,
    /// The keys read: everything under this prefix, `/` separating sections.
    pub prefix: String,
    /// An ACL token, sent as `X-Consul-Token`.
    pub token: Option<String>,
    /// How long one blocking query may wait for a change, in seconds.
    pub wait_secs: u64,
}

impl Default for ConsulSourceConfig {
    fn default() -> ConsulSourceConfig {
        ConsulSourceConfig {
            address: "http://127.0.0.1:8500".to_owned(),
            prefix: "micro/config/".to_owned(),
            token: None,
            wait_secs: 30,
        }
    }
}

impl ConsulSourceConfig {
    /// The defaults, overridden by `MICRO_CONFIG_CONSUL_ADDRESS` (else
    /// Consul's own `CONSUL_HTTP_ADDR`), `MICRO_CONFIG_CONSUL_PREFIX` and
    /// `CONSUL_HTTP_TOKEN`.
    pub fn from_env() -> ConsulSourceConfig {
        let mut config = ConsulSourceConfig::default();
        if let Ok(address) = std::env::var("MICRO_CONFIG_CONSUL_ADDRESS")
            .or_else(|_| std::env::var("CONSUL_HTTP_ADDR"))
        {
            config.address = if address.contains("://") {
                address
            } else {
                format!("http://{address}")
            };
        }
        if let Ok(prefix) = std::env::var("MICRO_CONFIG_CONSUL_PREFIX") {
            config.prefix = prefix;
        }
        if let Ok(token) = std::env::var("CONSUL_HTTP_TOKEN") {
            config.token = Some(token);
        }
        config
    }
}
