use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The environment variable holding the per-subscriber buffer size.
pub const BUFFER_ENV: &str = "MICRO_BROKER_BUFFER";
/// The environment variable holding the overflow policy (`block` or `fail`).
pub const OVERFLOW_ENV: &str = "MICRO_BROKER_OVERFLOW";

/// What `publish` does when a subscriber's buffer is full.
///
/// Neither policy drops a message silently: either the publisher waits, or it
/// is told, and then no subscriber received the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// Back-pressure: `publish` waits until every subscriber it delivers to
    /// has room. A subscription dropped meanwhile no longer holds it back.
    #[default]
    Block,
    /// `publish` fails at once with
    /// [`ErrorKind::ResourceExhausted`](crate::ErrorKind::ResourceExhausted),
    /// naming the topic and the full subscriber (or queue group), and the
    /// message is delivered to nobody, so retrying it never duplicates it.
    Fail,
}

impl OverflowPolicy {
    /// The configuration name: `block` or `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            OverflowPolicy::Block => "block",
            OverflowPolicy::Fail => "fail",
        }
    }
}

impl fmt::Display for OverflowPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OverflowPolicy {
    type Err = Error;

    fn from_str(name: &str) -> Result<OverflowPolicy> {
        match name.trim().to_ascii_lowercase().as_str() {
            "block" => Ok(OverflowPolicy::Block),
            "fail" => Ok(OverflowPolicy::Fail),
            _ => Err(Error::invalid_argument(format!(
                "unknown overflow policy `{name}`: expected `block` or `fail`"
            ))),
        }
    }
}

/// Settings of a [`MemoryBroker`](super::MemoryBroker); every field has a default.
///
/// ```
/// use micro_broker::memory::{MemoryConfig, OverflowPolicy};
///
/// let config = MemoryConfig::default();
/// assert_eq!(config.buffer, MemoryConfig::DEFAULT_BUFFER);
/// assert_eq!(config.overflow, OverflowPolicy::Block);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// How many messages each subscriber may hold before the overflow policy
    /// applies. In manual-ack mode a delivered message keeps its place until it
    /// is settled. At least 1.
    pub buffer: usize,
    /// What `publish` does when a buffer is full.
    pub overflow: OverflowPolicy,
}

impl MemoryConfig {
    /// The default per-subscriber buffer, in messages.
    pub const DEFAULT_BUFFER: usize = 1024;

    /// Reads [`BUFFER_ENV`] and [`OVERFLOW_ENV`]; unset variables keep their defaults.
    pub fn from_env() -> Result<MemoryConfig> {
        MemoryConfig::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`MemoryConfig::from_env`], reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<MemoryConfig> {
        let mut config = MemoryConfig::default();
        if let Some(buffer) = lookup(BUFFER_ENV) {
            config.buffer = buffer.trim().parse().map_err(|err| {
                Error::invalid_argument(format!(
                    "{BUFFER_ENV}=`{buffer}` is not a number of messages"
                ))
                .with_source(err)
            })?;
        }
        if let Some(overflow) = lookup(OVERFLOW_ENV) {
            config.overflow = overflow
                .parse()
                .map_err(|err: Error| err.context(OVERFLOW_ENV))?;
        }
        Ok(config)
    }
}

impl Default for MemoryConfig {
    fn default() -> MemoryConfig {
        MemoryConfig {
            buffer: MemoryConfig::DEFAULT_BUFFER,
            overflow: OverflowPolicy::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn environment_overrides_defaults() {
        let config = MemoryConfig::from_lookup(|name| match name {
            BUFFER_ENV => Some("16".to_owned()),
            OVERFLOW_ENV => Some("Fail".to_owned()),
            _ => None,
        })
        .unwrap();
        assert_eq!(config.buffer, 16);
        assert_eq!(config.overflow, OverflowPolicy::Fail);

        assert_eq!(
            MemoryConfig::from_lookup(|_| None).unwrap(),
            MemoryConfig::default()
        );
    }

    #[test]
    fn bad_environment_values_are_invalid_arguments() {
        for (name, value) in [(BUFFER_ENV, "lots"), (OVERFLOW_ENV, "drop")] {
            let err = MemoryConfig::from_lookup(|asked| (asked == name).then(|| value.to_owned()))
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{name}={value}");
        }
    }

    #[test]
    fn deserializes_with_defaults_for_missing_fields() {
        let config: MemoryConfig =
            serde_json::from_str(r#"{"buffer": 8, "overflow": "fail"}"#).unwrap();
        assert_eq!(config.buffer, 8);
        assert_eq!(config.overflow, OverflowPolicy::Fail);
        let config: MemoryConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, MemoryConfig::default());
        assert!(serde_json::from_str::<MemoryConfig>(r#"{"bufer": 8}"#).is_err());
    }

    #[test]
    fn policy_names_round_trip() {
        for policy in [OverflowPolicy::Block, OverflowPolicy::Fail] {
            assert_eq!(policy.as_str().parse::<OverflowPolicy>().unwrap(), policy);
        }
    }
}
