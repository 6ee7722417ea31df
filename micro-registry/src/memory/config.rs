use serde::{Deserialize, Serialize};

/// Settings of a [`MemoryRegistry`](super::MemoryRegistry), with serde support so
/// they can come from a configuration file. Every field has a default.
///
/// ```
/// use micro_registry::memory::{MemoryConfig, MemoryRegistry};
///
/// let config: MemoryConfig = serde_json::from_str(r#"{ "watch_capacity": 64 }"#).unwrap();
/// let registry = MemoryRegistry::from_config(&config);
/// # let _ = registry;
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// How many events a watcher may fall behind before it receives a
    /// `ResourceExhausted` error item in place of the events it missed.
    /// Values below 1 are treated as 1. Default: 1024.
    pub watch_capacity: usize,
}

impl MemoryConfig {
    /// The default [`MemoryConfig::watch_capacity`].
    pub const DEFAULT_WATCH_CAPACITY: usize = 1024;
}

impl Default for MemoryConfig {
    fn default() -> MemoryConfig {
        MemoryConfig {
            watch_capacity: MemoryConfig::DEFAULT_WATCH_CAPACITY,
        }
    }
}
