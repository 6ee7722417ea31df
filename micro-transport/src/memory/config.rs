use serde::{Deserialize, Serialize};

use crate::DEFAULT_MAX_BODY_SIZE;

/// Settings of a [`MemoryTransport`](super::MemoryTransport).
///
/// Deserializes from any serde format; missing fields take their defaults.
///
/// ```
/// use micro_transport::memory::MemoryConfig;
///
/// let config: MemoryConfig = serde_json::from_str(r#"{"max_body_size": 1024}"#).unwrap();
/// assert_eq!(config.max_body_size, 1024);
/// assert_eq!(MemoryConfig::default().max_body_size, 4 * 1024 * 1024);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// The largest unary body, or streamed message, in bytes. A server refuses
    /// larger requests and a client larger responses, with `ResourceExhausted`.
    /// Default: 4 MiB, like the HTTP transport, so a service behaves the same
    /// whichever transport carries it.
    pub max_body_size: usize,
}

impl Default for MemoryConfig {
    fn default() -> MemoryConfig {
        MemoryConfig {
            max_body_size: DEFAULT_MAX_BODY_SIZE,
        }
    }
}
