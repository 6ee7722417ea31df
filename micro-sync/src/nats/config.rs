use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Settings of a [`NatsCoordinator`](super::NatsCoordinator), with serde
/// support so they can come from a configuration file. Every field has a default.
///
/// ```
/// use micro_sync::nats::NatsConfig;
///
/// let config: NatsConfig = serde_json::from_str(r#"{ "bucket": "locks" }"#).unwrap();
/// assert_eq!(config.connection.servers, ["nats://127.0.0.1:4222"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct NatsConfig {
    /// Where the servers are and how to authenticate (servers, credentials,
    /// TLS, connect timeout): the settings every NATS backend shares.
    pub connection: micro_connect::nats::NatsConfig,
    /// The key/value bucket holding locks (`lock.<name>`) and roles
    /// (`election.<role>`); created if missing, with per-key TTLs enabled.
    /// Default: `micro_sync`.
    pub bucket: String,
    /// Keep the bucket in memory rather than in files. Holds do not survive
    /// a server restart then, which for TTL'd locks is rarely a loss.
    /// Default: false.
    pub memory_storage: bool,
    /// How often a waiter re-checks a held key besides watching it: the
    /// watch reports releases and expiries at once, the poll covers a watch
    /// that broke. Default: `1s`.
    #[serde(with = "micro_core::duration::serde")]
    pub poll_interval: Duration,
}

impl NatsConfig {
    /// The variable with the bucket name.
    pub const ENV_BUCKET: &'static str = "MICRO_SYNC_NATS_BUCKET";

    /// The defaults, overridden by `MICRO_SYNC_NATS_BUCKET` and the
    /// connection variables `MICRO_SYNC_NATS_*` / `MICRO_NATS_*` (with
    /// `MICRO_SYNC_ADDRESS` as the URL), see [`micro_connect`].
    pub fn from_env() -> Result<NatsConfig> {
        NatsConfig::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](NatsConfig::from_env), reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<NatsConfig> {
        let mut config = NatsConfig {
            connection: micro_connect::nats::NatsConfig::from_lookup(
                Some(micro_connect::Block::Sync),
                &micro_connect::Lookup::from_fn(&lookup),
            )?,
            ..NatsConfig::default()
        };
        if let Some(bucket) = lookup(NatsConfig::ENV_BUCKET).filter(|value| !value.is_empty()) {
            config.bucket = bucket;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        self.connection.validate()?;
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_');
        if self.bucket.is_empty() || !self.bucket.chars().all(valid) {
            return Err(Error::invalid_argument(format!(
                "nats: a bucket name is made of A-Z a-z 0-9 - _, got {:?}",
                self.bucket
            )));
        }
        Ok(())
    }

    pub(crate) fn poll_interval(&self) -> Duration {
        self.poll_interval.max(Duration::from_millis(10))
    }
}

impl Default for NatsConfig {
    fn default() -> NatsConfig {
        NatsConfig {
            connection: micro_connect::nats::NatsConfig::default(),
            bucket: "micro_sync".to_owned(),
            memory_storage: false,
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
        assert_eq!(
            config.connection.servers,
            ["nats://a:4222", "nats://b:4222"]
        );
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
