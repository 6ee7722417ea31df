//! Environment variables under a prefix: `MICRO_DB_HOST=x` is `db.host = "x"`.
//!
//! The prefix and the separator (`_`) are stripped, the rest is lower-cased
//! and split at each separator. Values stay strings; [`Config`](crate::Config)
//! reads them as the type asked for. When one variable names a section of
//! another (`MICRO_DB` and `MICRO_DB_HOST`), the longer one wins and the
//! shorter is ignored with a debug log: environments are shared with other
//! programs and cannot be made consistent for us.

mod config;

use std::{fmt, sync::Arc};

use async_trait::async_trait;
use serde_json::{Map, Value};

pub use config::EnvSourceConfig;

use crate::{Capabilities, Result, Source, SourceStream, source::watch_once, value};

/// Supplies the variables to read, instead of the process environment.
type VarsFn = Arc<dyn Fn() -> Vec<(String, String)> + Send + Sync>;

/// Settings from environment variables under a prefix; see the [module docs](self).
///
/// ```
/// use micro_config::{Config, EnvSource};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> micro_config::Result<()> {
/// let env = EnvSource::builder()
///     .prefix("APP")
///     .vars([("APP_DB_HOST", "db.local"), ("APP_DB_PORT", "5432"), ("HOME", "/root")])
///     .build();
/// let config = Config::builder().source(env).build().await?;
/// assert_eq!(config.get::<String>("db.host")?, "db.local");
/// assert_eq!(config.get::<u16>("db.port")?, 5432);
/// assert!(!config.contains("home"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct EnvSource {
    config: EnvSourceConfig,
    vars: Option<VarsFn>,
}

impl EnvSource {
    /// The process environment under `prefix` (`"MICRO"` reads `MICRO_*`).
    pub fn new(prefix: impl Into<String>) -> EnvSource {
        EnvSource::builder().prefix(prefix).build()
    }

    /// A source to configure.
    pub fn builder() -> EnvSourceBuilder {
        EnvSourceBuilder {
            config: EnvSourceConfig::default(),
            vars: None,
        }
    }

    /// A source from a [`EnvSourceConfig`].
    pub fn from_config(config: EnvSourceConfig) -> EnvSource {
        EnvSource { config, vars: None }
    }

    fn variables(&self) -> Vec<(String, String)> {
        match &self.vars {
            Some(vars) => vars(),
            None => std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    fn key_of(&self, name: &str) -> Option<Vec<String>> {
        let separator = self.config.separator.as_str();
        let rest = if self.config.prefix.is_empty() {
            name
        } else {
            name.strip_prefix(self.config.prefix.as_str())?
                .strip_prefix(separator)?
        };
        let segments: Vec<String> = rest
            .split(separator)
            .filter(|segment| !segment.is_empty())
            .map(str::to_lowercase)
            .collect();
        (!segments.is_empty()).then_some(segments)
    }
}

impl fmt::Debug for EnvSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvSource")
            .field("config", &self.config)
            .field("custom_vars", &self.vars.is_some())
            .finish()
    }
}

#[async_trait]
impl Source for EnvSource {
    fn scheme(&self) -> &'static str {
        "env"
    }

    fn name(&self) -> String {
        format!("env:{}{}", self.config.prefix, self.config.separator)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::fixed()
    }

    async fn load(&self) -> Result<Value> {
        let mut pairs: Vec<(Vec<String>, String)> = self
            .variables()
            .into_iter()
            .filter_map(|(name, value)| Some((self.key_of(&name)?, value)))
            .collect();
        // Longer keys first, so that a section always beats a shorter variable
        // naming the same place, whatever order the environment lists them in.
        pairs.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        let mut root = Value::Object(Map::new());
        for (segments, text) in pairs {
            let path = segments.join(".");
            if value::lookup(&root, &path).is_some() {
                tracing::debug!(key = %path, "ignoring an environment variable shadowed by a longer one");
                continue;
            }
            match value::from_pairs([(segments, text.as_str())]) {
                Ok(single) if !blocked(&root, &path) => value::merge(&mut root, &single),
                _ => {
                    tracing::debug!(key = %path, "ignoring an environment variable that conflicts with another")
                }
            }
        }
        Ok(root)
    }

    async fn watch(&self) -> Result<SourceStream> {
        watch_once(self).await
    }
}

/// Whether a value (not a map) already sits somewhere on the way to `path`.
fn blocked(root: &Value, path: &str) -> bool {
    let mut prefix = String::new();
    for segment in value::segments(path) {
        if !prefix.is_empty() {
            prefix.push('.');
        }
        prefix.push_str(segment);
        if value::lookup(root, &prefix).is_some_and(|v| !v.is_object()) {
            return true;
        }
    }
    false
}

/// Configures an [`EnvSource`]; from [`EnvSource::builder`].
#[must_use = "a builder does nothing until built"]
pub struct EnvSourceBuilder {
    config: EnvSourceConfig,
    vars: Option<VarsFn>,
}

impl EnvSourceBuilder {
    /// Only variables starting with this and the separator (default `MICRO`);
    /// empty for every variable.
    pub fn prefix(mut self, prefix: impl Into<String>) -> EnvSourceBuilder {
        self.config.prefix = prefix.into();
        self
    }

    /// What separates the parts of a name (default `_`; `__` keeps single
    /// underscores inside keys: `APP__MAX_CONNS` is `max_conns`).
    pub fn separator(mut self, separator: impl Into<String>) -> EnvSourceBuilder {
        self.config.separator = separator.into();
        self
    }

    /// Reads these variables instead of the process environment.
    pub fn vars<K, V>(self, vars: impl IntoIterator<Item = (K, V)>) -> EnvSourceBuilder
    where
        K: Into<String>,
        V: Into<String>,
    {
        let vars: Vec<(String, String)> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self.vars_fn(move || vars.clone())
    }

    /// Reads the variables `vars` returns at each load instead of the process
    /// environment (which a program cannot safely change while threads run).
    pub fn vars_fn(
        mut self,
        vars: impl Fn() -> Vec<(String, String)> + Send + Sync + 'static,
    ) -> EnvSourceBuilder {
        self.vars = Some(Arc::new(vars));
        self
    }

    /// The source.
    pub fn build(self) -> EnvSource {
        EnvSource {
            config: self.config,
            vars: self.vars,
        }
    }
}

impl fmt::Debug for EnvSourceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvSourceBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn prefix_and_separator_are_stripped_and_longer_keys_win() {
        let source = EnvSource::builder()
            .prefix("MICRO")
            .vars([
                ("MICRO_REGISTRY", "etcd"),
                ("MICRO_REGISTRY_ADDRESS", "127.0.0.1:2379"),
                ("MICRO_DB_HOST", "h"),
                ("MICROSCOPE", "no"),
                ("OTHER_DB_HOST", "no"),
            ])
            .build();
        assert_eq!(
            source.load().await.unwrap(),
            json!({"registry": {"address": "127.0.0.1:2379"}, "db": {"host": "h"}})
        );
    }

    #[tokio::test]
    async fn double_underscore_separator_keeps_single_ones() {
        let source = EnvSource::builder()
            .prefix("APP")
            .separator("__")
            .vars([("APP__POOL__MAX_CONNS", "8")])
            .build();
        assert_eq!(
            source.load().await.unwrap(),
            json!({"pool": {"max_conns": "8"}})
        );
    }
}
