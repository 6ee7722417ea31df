use std::{fmt, path::Path, str::FromStr};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Result};

/// A file format settings can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Format {
    /// JSON (always available).
    Json,
    /// TOML (feature `toml`).
    Toml,
    /// YAML (feature `yaml`).
    Yaml,
}

impl Format {
    /// The format a file's extension names.
    pub fn from_path(path: &Path) -> Result<Format> {
        let extension = path
            .extension()
            .and_then(|ext| ext.to_str())
            .unwrap_or_default();
        extension.parse().map_err(|_| {
            Error::invalid_argument(format!(
                "cannot tell the format of config file {} from its extension: \
                 use .json, .toml, .yaml or .yml, or give the format",
                path.display()
            ))
        })
    }

    /// Parses a document into a settings tree.
    pub fn parse(self, bytes: &[u8]) -> Result<Value> {
        match self {
            Format::Json => serde_json::from_slice(bytes)
                .map_err(|err| Error::invalid_argument(err.to_string())),
            Format::Toml => parse_toml(bytes),
            Format::Yaml => parse_yaml(bytes),
        }
    }

    /// The lower-case name: `json`, `toml`, `yaml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Toml => "toml",
            Format::Yaml => "yaml",
        }
    }
}

#[cfg(feature = "toml")]
fn parse_toml(bytes: &[u8]) -> Result<Value> {
    let text = std::str::from_utf8(bytes)
        .map_err(|err| Error::invalid_argument(format!("not UTF-8: {err}")))?;
    toml::from_str(text).map_err(|err| Error::invalid_argument(err.to_string()))
}

#[cfg(not(feature = "toml"))]
fn parse_toml(_: &[u8]) -> Result<Value> {
    Err(Error::invalid_argument(
        "TOML config files need micro-config's cargo feature `toml`, which this build does not include",
    ))
}

#[cfg(feature = "yaml")]
fn parse_yaml(bytes: &[u8]) -> Result<Value> {
    yaml_serde::from_slice(bytes).map_err(|err| Error::invalid_argument(err.to_string()))
}

#[cfg(not(feature = "yaml"))]
fn parse_yaml(_: &[u8]) -> Result<Value> {
    Err(Error::invalid_argument(
        "YAML config files need micro-config's cargo feature `yaml`, which this build does not include",
    ))
}

impl FromStr for Format {
    type Err = Error;

    fn from_str(name: &str) -> Result<Format> {
        match name.to_ascii_lowercase().as_str() {
            "json" => Ok(Format::Json),
            "toml" => Ok(Format::Toml),
            "yaml" | "yml" => Ok(Format::Yaml),
            other => Err(Error::invalid_argument(format!(
                "unknown config format {other:?}: use json, toml or yaml"
            ))),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn formats_parse_to_the_same_tree() {
        let expected = json!({"server": {"port": 8080, "timeout": "5s"}});
        assert_eq!(
            Format::Json
                .parse(br#"{"server": {"port": 8080, "timeout": "5s"}}"#)
                .unwrap(),
            expected
        );
        #[cfg(feature = "toml")]
        assert_eq!(
            Format::Toml
                .parse(b"[server]\nport = 8080\ntimeout = \"5s\"\n")
                .unwrap(),
            expected
        );
        #[cfg(feature = "yaml")]
        assert_eq!(
            Format::Yaml
                .parse(b"server:\n  port: 8080\n  timeout: 5s\n")
                .unwrap(),
            expected
        );
        assert_eq!(
            Format::Json.parse(b"{nope").unwrap_err().kind(),
            crate::ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn extensions_name_formats() {
        assert_eq!(
            Format::from_path(Path::new("a/b.yml")).unwrap(),
            Format::Yaml
        );
        assert_eq!(
            Format::from_path(Path::new("b.TOML")).unwrap(),
            Format::Toml
        );
        assert!(Format::from_path(Path::new("b.ini")).is_err());
    }
}
