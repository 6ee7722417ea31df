use serde::{Deserialize, Serialize};

/// The settings of an [`EnvSource`](super::EnvSource).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct EnvSourceConfig {
    /// Only variables starting with this and the separator; empty for all.
    pub prefix: String,
    /// What separates the parts of a name.
    pub separator: String,
}

impl Default for EnvSourceConfig {
    fn default() -> EnvSourceConfig {
        EnvSourceConfig {
            prefix: "MICRO".to_owned(),
            separator: "_".to_owned(),
        }
    }
}
