use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

/// Settings of a [`LocalRuntime`](super::LocalRuntime), with serde support so
/// they can come from a configuration file. Every field has a default.
///
/// ```
/// use micro_runtime::local::LocalConfig;
///
/// let config: LocalConfig = serde_json::from_str(r#"{ "release": false, "log_lines": 500 }"#).unwrap();
/// assert_eq!(config.grace_period, std::time::Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LocalConfig {
    /// Where sources fetched from git are checked out, one directory per
    /// service. Default: `micro-runtime` in the system's temporary directory.
    pub workdir: PathBuf,
    /// The cargo target directory for builds (`CARGO_TARGET_DIR`); sharing one
    /// between services and runs saves rebuilding common dependencies.
    /// Default: none (cargo's own choice, which honours `CARGO_TARGET_DIR`).
    pub target_dir: Option<PathBuf>,
    /// Build with `--release`. Default: true.
    pub release: bool,
    /// The cargo program. Default: `cargo`.
    pub cargo: String,
    /// The git program. Default: `git`.
    pub git: String,
    /// How long a stopped service may take to exit after SIGTERM before it
    /// is killed. Default: `10s`.
    #[serde(with = "micro_core::duration::serde")]
    pub grace_period: Duration,
    /// How many lines of each service's output are kept. Default: 1000.
    pub log_lines: usize,
    /// Environment variables for every service (`MICRO_REGISTRY`, …), under
    /// each service's own. Services also inherit this process's environment.
    pub env: BTreeMap<String, String>,
}

impl LocalConfig {
    /// The variable naming the work directory.
    pub const ENV_WORKDIR: &'static str = "MICRO_RUNTIME_WORKDIR";
    /// The variable naming the cargo target directory.
    pub const ENV_TARGET_DIR: &'static str = "MICRO_RUNTIME_TARGET_DIR";

    /// The defaults, overridden by `MICRO_RUNTIME_WORKDIR` and
    /// `MICRO_RUNTIME_TARGET_DIR`.
    pub fn from_env() -> LocalConfig {
        LocalConfig::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](LocalConfig::from_env), reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> LocalConfig {
        let mut config = LocalConfig::default();
        if let Some(dir) = lookup(LocalConfig::ENV_WORKDIR).filter(|v| !v.is_empty()) {
            config.workdir = PathBuf::from(dir);
        }
        if let Some(dir) = lookup(LocalConfig::ENV_TARGET_DIR).filter(|v| !v.is_empty()) {
            config.target_dir = Some(PathBuf::from(dir));
        }
        config
    }
}

impl Default for LocalConfig {
    fn default() -> LocalConfig {
        LocalConfig {
            workdir: std::env::temp_dir().join("micro-runtime"),
            target_dir: None,
            release: true,
            cargo: "cargo".to_owned(),
            git: "git".to_owned(),
            grace_period: Duration::from_secs(10),
            log_lines: 1000,
            env: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_directories() {
        let config = LocalConfig::from_lookup(|name| match name {
            "MICRO_RUNTIME_WORKDIR" => Some("/srv/micro".to_owned()),
            "MICRO_RUNTIME_TARGET_DIR" => Some("/srv/target".to_owned()),
            _ => None,
        });
        assert_eq!(config.workdir, PathBuf::from("/srv/micro"));
        assert_eq!(config.target_dir, Some(PathBuf::from("/srv/target")));
    }
}
