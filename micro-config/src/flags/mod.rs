//! Command-line flags: `--db-host x` (or `--db.host=x`) is `db.host = "x"`.
//!
//! Two ways in: [`FlagsSource::from_matches`] takes what clap parsed, so flags
//! keep clap's help, validation and defaults; [`FlagsSource::from_args`]
//! reads plain `--key value` arguments with no declaration. Either way only
//! flags given on the command line count (a clap default would otherwise
//! override every file and server below it); dashes in names become dots.

use async_trait::async_trait;
use clap::{ArgMatches, parser::ValueSource};
use serde_json::{Map, Value};

use crate::{Capabilities, Error, Result, Source, SourceStream, source::watch_once, value};

/// Settings from the command line; see the [module docs](self).
///
/// ```
/// use clap::{Arg, Command};
/// use micro_config::{Config, FlagsSource};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> micro_config::Result<()> {
/// let matches = Command::new("app")
///     .arg(Arg::new("server-timeout").long("server-timeout"))
///     .arg(Arg::new("db.port").long("db-port").default_value("5432"))
///     .get_matches_from(["app", "--server-timeout", "250ms"]);
/// let config = Config::builder().source(FlagsSource::from_matches(&matches)).build().await?;
/// assert_eq!(config.get::<std::time::Duration>("server.timeout")?.as_millis(), 250);
/// assert!(!config.contains("db.port"), "defaults are not settings");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct FlagsSource {
    flags: Vec<(String, FlagValue)>,
}

#[derive(Debug, Clone)]
enum FlagValue {
    One(String),
    Many(Vec<String>),
}

impl FlagValue {
    /// A flag given again becomes a list.
    fn push(&mut self, value: String) {
        match self {
            FlagValue::Many(values) => values.push(value),
            FlagValue::One(first) => *self = FlagValue::Many(vec![std::mem::take(first), value]),
        }
    }
}

impl FlagsSource {
    /// The flags clap parsed that were given on the command line.
    pub fn from_matches(matches: &ArgMatches) -> FlagsSource {
        FlagsSource::collect(matches, false)
    }

    /// Like [`from_matches`](FlagsSource::from_matches), also taking clap's
    /// default values and values clap read from environment variables.
    pub fn from_matches_with_defaults(matches: &ArgMatches) -> FlagsSource {
        FlagsSource::collect(matches, true)
    }

    fn collect(matches: &ArgMatches, with_defaults: bool) -> FlagsSource {
        let flags = matches
            .ids()
            .filter(|id| {
                with_defaults || matches.value_source(id.as_str()) == Some(ValueSource::CommandLine)
            })
            .filter_map(|id| {
                let raw = matches.try_get_raw(id.as_str()).ok()??;
                let mut values: Vec<String> = raw
                    .map(|value| value.to_string_lossy().into_owned())
                    .collect();
                let value = match values.len() {
                    0 => return None,
                    1 => FlagValue::One(values.remove(0)),
                    _ => FlagValue::Many(values),
                };
                Some((key_of(id.as_str()), value))
            })
            .collect();
        FlagsSource { flags }
    }

    /// Plain arguments (without the program name): `--key value`,
    /// `--key=value`, and `--switch` alone (followed by another flag or
    /// nothing) for `true`. A flag given twice is a list. Anything that is not
    /// a flag is an `InvalidArgument` error; `--` ends the flags.
    pub fn from_args<I, S>(args: I) -> Result<FlagsSource>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let args: Vec<String> = args.into_iter().map(Into::into).collect();
        let mut flags: Vec<(String, FlagValue)> = Vec::new();
        let mut index = 0;
        while index < args.len() {
            let arg = &args[index];
            if arg == "--" {
                break;
            }
            let Some(flag) = arg.strip_prefix("--").filter(|flag| !flag.is_empty()) else {
                return Err(Error::invalid_argument(format!(
                    "expected a flag such as --key=value, found {arg:?}"
                )));
            };
            let (name, value) = match flag.split_once('=') {
                Some((name, value)) => (name, value.to_owned()),
                None => match args.get(index + 1).filter(|next| !next.starts_with("--")) {
                    Some(next) => {
                        index += 1;
                        (flag, next.clone())
                    }
                    None => (flag, "true".to_owned()),
                },
            };
            let key = key_of(name);
            match flags.iter_mut().find(|(existing, _)| *existing == key) {
                Some((_, existing)) => existing.push(value),
                None => flags.push((key, FlagValue::One(value))),
            }
            index += 1;
        }
        Ok(FlagsSource { flags })
    }
}

/// `db-host` and `db.host` both name `db.host`.
fn key_of(name: &str) -> String {
    name.replace('-', ".")
}

#[async_trait]
impl Source for FlagsSource {
    fn scheme(&self) -> &'static str {
        "flags"
    }

    fn name(&self) -> String {
        "flags".to_owned()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::fixed()
    }

    async fn load(&self) -> Result<Value> {
        let mut root = Value::Object(Map::new());
        for (key, flag) in &self.flags {
            if value::lookup(&root, key).is_some_and(Value::is_object) {
                return Err(Error::invalid_argument(format!(
                    "flag --{key} is both a value and a section of other flags"
                )));
            }
            let value = match flag {
                FlagValue::One(one) => Value::String(one.clone()),
                FlagValue::Many(many) => many.iter().cloned().map(Value::String).collect(),
            };
            value::set(&mut root, key, value);
        }
        Ok(root)
    }

    async fn watch(&self) -> Result<SourceStream> {
        watch_once(self).await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn plain_arguments() {
        let source = FlagsSource::from_args([
            "--db-host",
            "h",
            "--db.port=5432",
            "--verbose",
            "--peer",
            "a",
            "--peer",
            "b",
        ])
        .unwrap();
        assert_eq!(
            source.load().await.unwrap(),
            json!({"db": {"host": "h", "port": "5432"}, "verbose": "true", "peer": ["a", "b"]})
        );
        let err = FlagsSource::from_args(["positional"]).unwrap_err();
        assert_eq!(err.kind(), micro_core::ErrorKind::InvalidArgument);
    }

    #[tokio::test]
    async fn clap_matches_keep_only_given_flags() {
        use clap::{Arg, ArgAction, Command};
        let matches = Command::new("t")
            .arg(Arg::new("db-host").long("db-host"))
            .arg(Arg::new("tls").long("tls").action(ArgAction::SetTrue))
            .arg(Arg::new("peer").long("peer").action(ArgAction::Append))
            .arg(Arg::new("level").long("level").default_value("info"))
            .get_matches_from(["t", "--db-host", "h", "--tls", "--peer", "a", "--peer", "b"]);
        assert_eq!(
            FlagsSource::from_matches(&matches).load().await.unwrap(),
            json!({"db": {"host": "h"}, "tls": "true", "peer": ["a", "b"]})
        );
        let with_defaults = FlagsSource::from_matches_with_defaults(&matches);
        assert_eq!(with_defaults.load().await.unwrap()["level"], json!("info"));
    }
}
