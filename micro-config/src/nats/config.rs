use serde::{Deserialize, Serialize};

/// The settings of a [`NatsSource`](super::NatsSource).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct NatsSourceConfig {
    /// Where the servers are and how to authenticate (servers, credentials,
    /// TLS, connect timeout): the settings every NATS backend shares.
    pub connection: micro_connect::nats::NatsConfig,
    /// The JetStream key/value bucket holding the settings.
    pub bucket: String,
    /// Only keys starting with this (`greeter.`); empty for the whole bucket.
    pub prefix: String,
    /// Create the bucket when it does not exist (otherwise that is `NotFound`).
    pub create_bucket: bool,
}

impl Default for NatsSourceConfig {
    fn default() -> NatsSourceConfig {
        NatsSourceConfig {
            connection: micro_connect::nats::NatsConfig::default(),
            bucket: "micro-config".to_owned(),
            prefix: String::new(),
            create_bucket: true,
        }
    }
}

impl NatsSourceConfig {
    /// The defaults, overridden by `MICRO_CONFIG_NATS_BUCKET`,
    /// `MICRO_CONFIG_NATS_PREFIX` and the connection variables
    /// `MICRO_CONFIG_NATS_*` / `MICRO_NATS_*` (see [`micro_connect`]).
    pub fn from_env() -> crate::Result<NatsSourceConfig> {
        let mut config = NatsSourceConfig {
            connection: micro_connect::nats::NatsConfig::from_env(Some(
                micro_connect::Block::Config,
            ))?,
            ..NatsSourceConfig::default()
        };
        if let Some(bucket) = micro_core::env::var("MICRO_CONFIG_NATS_BUCKET")? {
            config.bucket = bucket;
        }
        if let Some(prefix) = micro_core::env::var("MICRO_CONFIG_NATS_PREFIX")? {
            config.prefix = prefix;
        }
        Ok(config)
    }
}
