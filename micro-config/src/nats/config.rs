use serde::{Deserialize, Serialize};

/// The settings of a [`NatsSource`](super::NatsSource).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct NatsSourceConfig {
    /// The NATS server URL (`nats://127.0.0.1:4222`).
    pub url: String,
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
            url: "nats://127.0.0.1:4222".to_owned(),
            bucket: "micro-config".to_owned(),
            prefix: String::new(),
            create_bucket: true,
        }
    }
}

impl NatsSourceConfig {
    /// The defaults, overridden by `MICRO_CONFIG_NATS_URL`,
    /// `MICRO_CONFIG_NATS_BUCKET` and `MICRO_CONFIG_NATS_PREFIX`.
    pub fn from_env() -> NatsSourceConfig {
        let mut config = NatsSourceConfig::default();
        if let Ok(url) = std::env::var("MICRO_CONFIG_NATS_URL") {
            config.url = url;
        }
        if let Ok(bucket) = std::env::var("MICRO_CONFIG_NATS_BUCKET") {
            config.bucket = bucket;
        }
        if let Ok(prefix) = std::env::var("MICRO_CONFIG_NATS_PREFIX") {
            config.prefix = prefix;
        }
        config
    }
}
