use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The environment variable holding the default concurrency of keyed pools.
pub const CONCURRENCY_ENV: &str = "MICRO_KEYED_CONCURRENCY";
/// The environment variable holding the default bound on keys in flight.
pub const MAX_KEYS_ENV: &str = "MICRO_KEYED_MAX_KEYS";
/// The environment variable holding the default bound on queued items.
pub const BUFFER_ENV: &str = "MICRO_KEYED_BUFFER";

/// Limits of a [`KeyedPool`](super::KeyedPool); every field has a default.
///
/// Three bounds, so that memory stays bounded whatever the input looks like:
/// `concurrency` items run at once, at most `max_keys` distinct keys have work
/// queued or running, and at most `buffer` items are held in total (queued
/// plus running). Whichever is reached first makes
/// [`KeyedPool::submit`](super::KeyedPool::submit) wait: back-pressure, never
/// an unbounded queue and never a dropped item.
///
/// ```
/// use micro_broker::keyed::KeyedConfig;
///
/// let config: KeyedConfig = serde_json::from_str(r#"{"concurrency": 4}"#)?;
/// assert_eq!(config.concurrency, 4);
/// assert_eq!(config.max_keys, KeyedConfig::default().max_keys);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct KeyedConfig {
    /// How many items run at the same time (at least 1).
    pub concurrency: usize,
    /// How many distinct keys may have items queued or running (at least
    /// `concurrency`: fewer keys than workers would leave workers idle).
    pub max_keys: usize,
    /// How many items the pool holds in total, queued or running (at least
    /// `max_keys`, so every key in flight can hold one item).
    pub buffer: usize,
}

impl KeyedConfig {
    /// The default number of items running at once.
    pub const DEFAULT_CONCURRENCY: usize = 16;
    /// The default bound on keys in flight, as a multiple of the concurrency.
    pub const DEFAULT_KEYS_PER_WORKER: usize = 4;
    /// The default bound on items held, as a multiple of the keys in flight.
    pub const DEFAULT_ITEMS_PER_KEY: usize = 4;

    /// A configuration running `concurrency` items at once, with the other
    /// bounds derived from it.
    pub fn with_concurrency(concurrency: usize) -> KeyedConfig {
        let concurrency = concurrency.max(1);
        let max_keys = concurrency.saturating_mul(KeyedConfig::DEFAULT_KEYS_PER_WORKER);
        KeyedConfig {
            concurrency,
            max_keys,
            buffer: max_keys.saturating_mul(KeyedConfig::DEFAULT_ITEMS_PER_KEY),
        }
    }

    /// Reads [`CONCURRENCY_ENV`], [`MAX_KEYS_ENV`] and [`BUFFER_ENV`]; unset
    /// variables keep their defaults (derived from the concurrency).
    pub fn from_env() -> Result<KeyedConfig> {
        KeyedConfig::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`KeyedConfig::from_env`], reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<KeyedConfig> {
        let number = |name: &str| -> Result<Option<usize>> {
            lookup(name)
                .map(|value| {
                    value.trim().parse::<usize>().map_err(|err| {
                        Error::invalid_argument(format!("{name}=`{value}` is not a count"))
                            .with_source(err)
                    })
                })
                .transpose()
        };
        let mut config = match number(CONCURRENCY_ENV)? {
            Some(concurrency) => KeyedConfig::with_concurrency(concurrency),
            None => KeyedConfig::default(),
        };
        if let Some(max_keys) = number(MAX_KEYS_ENV)? {
            config.max_keys = max_keys;
        }
        if let Some(buffer) = number(BUFFER_ENV)? {
            config.buffer = buffer;
        }
        Ok(config.normalized())
    }

    /// The bounds as the pool applies them: each at least 1 and at least the
    /// one before it (`concurrency <= max_keys <= buffer`), and none above
    /// what a semaphore can count.
    pub fn normalized(mut self) -> KeyedConfig {
        let limit = tokio::sync::Semaphore::MAX_PERMITS;
        self.concurrency = self.concurrency.clamp(1, limit);
        self.max_keys = self.max_keys.clamp(self.concurrency, limit);
        self.buffer = self.buffer.clamp(self.max_keys, limit);
        self
    }
}

impl Default for KeyedConfig {
    fn default() -> KeyedConfig {
        KeyedConfig::with_concurrency(KeyedConfig::DEFAULT_CONCURRENCY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn bounds_are_ordered_and_at_least_one() {
        let config = KeyedConfig {
            concurrency: 0,
            max_keys: 0,
            buffer: 0,
        }
        .normalized();
        assert_eq!(
            (config.concurrency, config.max_keys, config.buffer),
            (1, 1, 1)
        );
        let config = KeyedConfig {
            concurrency: 8,
            max_keys: 2,
            buffer: 4,
        }
        .normalized();
        assert_eq!(
            (config.concurrency, config.max_keys, config.buffer),
            (8, 8, 8)
        );
    }

    #[test]
    fn environment_overrides_defaults() {
        let config = KeyedConfig::from_lookup(|name| match name {
            CONCURRENCY_ENV => Some("3".to_owned()),
            BUFFER_ENV => Some("100".to_owned()),
            _ => None,
        })
        .unwrap();
        assert_eq!(config.concurrency, 3);
        assert_eq!(config.max_keys, 3 * KeyedConfig::DEFAULT_KEYS_PER_WORKER);
        assert_eq!(config.buffer, 100);
        let err = KeyedConfig::from_lookup(|name| (name == MAX_KEYS_ENV).then(|| "many".into()))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    }
}
