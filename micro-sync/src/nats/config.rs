use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{ENV_ADDRESS, Error, Result};

/// Settings of a [`NatsCoordinator`](super::NatsCoordinator), with serde
/// support so they can come from a configuration file. Every field has a default.
///
/// ```
/// use micro_sync::nats::NatsConfig;
///
/// let config: NatsConfig = serde_json::from_str(r#"{ "bucket": "locks" }"#).unwrap();
/// assert_eq!(config.servers, ["nats://127.0.0.1:4222"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct NatsConfig {
    /// The NATS servers to connect to. Default: `nats://127.0.0.1:4222`.
    pub servers: Vec<String>,
    /// The key/value bucket holding locks (`lock.<name>`) and roles
    /// (`election.<role>`); created if missing, with per-key TTLs enabled.
    /// Default: `micro_sync`.
    pub bucket: String,
    /// Keep the bucket in memory rather than in files. Holds do not survive
    /// a server restart then, which for TTL'd locks is rarely a loss.
    /// Default: false.
    pub memory_storage: bool,
    /// How long connecting may take. Default: `5s`.
    #[serde(with = "micro_core::duration::serde")]
    pub connect_timeout: Duration,
    /// How often a waiter re-checks a held key besides watching it: the
    /// watch reports releases and expiries at once, the poll covers a watch
    /// that broke. Default: `1s`.
    #[serde(with = "micro_core::duration::serde")]
    pub poll_interval: Duration,
}

impl NatsConfig {
    /// The variable with the bucket name.
    pub const ENV_BUCKET: &'static str = "MICRO_SYNC_NATS_BUCKET";

    /// The defaults, overridden by `MICRO_SYNC_ADDRESS` (comma-separated
    /// servers) and `MICRO_SYNC_NATS_BUCKET`.
    pub fn from_env() -> Result<NatsConfig> {
        NatsConfig::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](NatsConfig::from_env), reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<NatsConfig> {
        let mut config = NatsConfig::default();
        if let Some(address) = lookup(ENV_ADDRESS).filter(|value| !value.trim().is_empty()) {
            config.servers = address
                .split(',')
                .map(str::trim)
                .filter(|server| !server.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(bucket) = lookup(NatsConfig::ENV_BUCKET).filter(|value| !value.is_empty()) {
            config.bucket = bucket;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.servers.is_empty() {
            return Err(Error::invalid_argument("nats: no servers configured"));
        }
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_');
        if self.bucket.is_empty() || !self.bucket.chars().all(valid) {
            return Err(Error::invalid_argument(format!(
                "nats: a bucket name is made of A-Z a-z 0-9 - _, got {:?}",
                self.bucket
            )));
        }
        Ok(())
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        self.connect_timeout.max(Duration::from_millis(1))
    }

    pub(crate) fn poll_interval(&self) -> Duration {
        self.poll_interval.max(Duration::from_millis(10))
    }
}

impl Default for NatsConfig {
    fn default() -> NatsConfig {
        NatsConfig {
            servers: vec!["nats://127.0.0.1:4222".to_owned()],
            bucket: "micro_sync".to_owned(),
            memory_storage: false,
            connect_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_gives_servers_and_bucket() {
        let config = NatsConfig::from_lookup(|name| match name {
            "MICRO_SYNC_ADDRESS" => Some("nats://a:4222,nats://b:4222".to_owned()),
            "MICRO_SYNC_NATS_BUCKET" => Some("locks".to_owned()),
            _ => None,
        })
        .unwrap();
        assert_eq!(config.servers, ["nats://a:4222", "nats://b:4222"]);
        assert_eq!(config.bucket, "locks");
    }

    #[test]
    fn bad_bucket_is_invalid() {
        let config = NatsConfig {
            bucket: "a.b".to_owned(),
            ..NatsConfig::default()
        };
        assert_eq!(
            config.validate().unwrap_err().kind(),
            crate::ErrorKind::InvalidArgument
        );
    }
}
