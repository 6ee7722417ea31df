use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Format;

/// The settings of a [`FileSource`](super::FileSource).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct FileSourceConfig {
    /// The file to read.
    pub path: PathBuf,
    /// Its format; `None` tells it by the extension.
    pub format: Option<Format>,
}

impl FileSourceConfig {
    /// The file at `path`, its format told by its extension.
    pub fn new(path: impl Into<PathBuf>) -> FileSourceConfig {
        FileSourceConfig {
            path: path.into(),
            format: None,
        }
    }

    /// From `MICRO_CONFIG_FILE` (the path) and `MICRO_CONFIG_FORMAT`
    /// (`json`, `toml` or `yaml`; optional). `NotFound` when no file is named.
    pub fn from_env() -> crate::Result<FileSourceConfig> {
        let path = std::env::var_os("MICRO_CONFIG_FILE")
            .ok_or_else(|| crate::Error::not_found("MICRO_CONFIG_FILE is not set"))?;
        let format = match std::env::var("MICRO_CONFIG_FORMAT") {
            Ok(name) => Some(name.parse()?),
            Err(_) => None,
        };
        Ok(FileSourceConfig {
            path: path.into(),
            format,
        })
    }
}
