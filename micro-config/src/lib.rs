//! micro's dynamic configuration: settings from any number of sources,
//! merged into one [`Config`] that stays current while the program runs.
//!
//! A [`Source`] reads a snapshot of settings (a tree: maps of values) and
//! watches for changes as a stream. A [`Config`] merges its sources in the
//! order they were added, later ones winning (maps merge key by key at every
//! depth), follows the sources that can watch, and offers:
//!
//! - typed reads by dotted path: [`Config::get`] (`get::<Duration>("server.timeout")`,
//!   where `"250ms"` or `"5s"` read as durations and `"5432"` as a number),
//!   [`Config::get_or`] with a default, and whole sections deserialized into
//!   serde structs;
//! - [`Config::watch`]: each new value at a path, typed, as a stream;
//! - `${VAR}` and `${VAR:-default}` in values, expanded from the environment;
//! - safe fallbacks: when a source fails (a file becomes invalid or
//!   disappears, a server goes away) the configuration keeps that source's
//!   last good values, the error is logged and delivered to watchers, and the
//!   source is followed again; nothing panics. A value of the wrong type is an
//!   `InvalidArgument` error naming its path and the expected type.
//!
//! `micro`'s service builder takes a `Config` (`ServiceBuilder::config`), and
//! handlers and subscribers read it through `Context::config`.
//!
//! # Quick start
//!
//! Defaults in memory, overridden by environment variables (given here as a
//! list; by default the process environment):
//!
//! ```
//! use std::time::Duration;
//!
//! use futures::StreamExt;
//! use micro_config::{Config, EnvSource, MemorySource};
//! use serde::Deserialize;
//! use serde_json::json;
//!
//! #[derive(Debug, Deserialize, PartialEq)]
//! struct Db {
//!     host: String,
//!     port: u16,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> micro_config::Result<()> {
//! let defaults = MemorySource::new(json!({
//!     "db": {"host": "localhost", "port": 5432},
//!     "server": {"timeout": "5s"},
//! }))?;
//! let env = EnvSource::builder()
//!     .prefix("MICRO")
//!     .vars([("MICRO_DB_HOST", "db.internal"), ("MICRO_SERVER_TIMEOUT", "250ms")])
//!     .build();
//! let config = Config::builder()
//!     .source(defaults.clone())
//!     .source(env) // later sources win
//!     .build()
//!     .await?;
//!
//! assert_eq!(config.get::<Duration>("server.timeout")?, Duration::from_millis(250));
//! assert_eq!(config.get::<Db>("db")?, Db { host: "db.internal".into(), port: 5432 });
//! assert_eq!(config.get_or("server.workers", 4)?, 4);
//!
//! // A wrong type names the path and the type expected.
//! let err = config.get::<u16>("db.host").unwrap_err();
//! assert_eq!(err.kind(), micro_config::ErrorKind::InvalidArgument);
//! assert!(err.message().contains("db.host") && err.message().contains("u16"));
//!
//! // Watchers get each new value.
//! let mut ports = config.watch::<u16>("db.port");
//! defaults.set("db.port", json!(6543));
//! assert_eq!(ports.next().await.transpose()?, Some(6543));
//! # Ok(())
//! # }
//! ```
//!
//! # Sources
//!
//! | source | scheme | watches | feature | keys |
//! |---|---|---|---|---|
//! | [`MemorySource`] | `memory` | yes | always | set by code |
//! | [`EnvSource`] | `env` | no ([`Config::reload`]) | always | `MICRO_DB_HOST` is `db.host` |
//! | `FlagsSource` | `flags` | no | `flags` | `--db-host` / `--db.host` is `db.host`; from clap's `ArgMatches` or plain arguments |
//! | `FileSource` | `file` | yes (notify; the directory, so renames and symlink swaps count) | `file`, `toml`, `yaml` | the document's own tree; JSON, TOML, YAML |
//! | `EtcdSource` | `etcd` | yes (etcd watch from the snapshot's revision) | `etcd` | `<prefix>db/host` is `db.host` |
//! | `NatsSource` | `nats` | yes (KV watch) | `nats` | key `db.host` in the bucket (after an optional prefix) |
//! | `ConsulSource` | `consul` | yes (blocking queries) | `consul` | `<prefix>db/host` is `db.host` |
//!
//! Sources that hold only strings (environment, flags, key/value stores) are
//! read as the type asked for. In key/value stores, a key that is both a value
//! and a section (`db` beside `db/host`) makes the data invalid: an error is
//! reported and the last good values stay. Every source declares what it
//! supports in [`Capabilities`] and passes the `conformance` suite.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `file` | yes | `FileSource` for JSON files, watched with notify |
//! | `toml` | yes | TOML files (toml 1) |
//! | `yaml` | yes | YAML files (yaml_serde) |
//! | `flags` | no | `FlagsSource` (clap 4) |
//! | `etcd` | no | `EtcdSource` (etcd-client; protoc at build time) |
//! | `nats` | no | `NatsSource` (async-nats JetStream KV) |
//! | `consul` | no | `ConsulSource` (reqwest, rustls with ring) |
//! | `conformance` | no | the `conformance` module and `config_conformance_tests!`, for testing sources |

mod config;
#[cfg(feature = "consul")]
pub mod consul;
mod de;
#[cfg(any(feature = "etcd", feature = "nats", feature = "consul"))]
mod kv;
mod source;
mod value;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod env;
#[cfg(feature = "etcd")]
pub mod etcd;
#[cfg(feature = "file")]
pub mod file;
#[cfg(feature = "flags")]
pub mod flags;
pub mod memory;
#[cfg(feature = "nats")]
pub mod nats;

pub use config::{Config, ConfigBuilder, ConfigEvent, WatchStream};
#[cfg(feature = "consul")]
pub use consul::ConsulSource;
pub use env::EnvSource;
#[cfg(feature = "etcd")]
pub use etcd::EtcdSource;
#[cfg(feature = "file")]
pub use file::FileSource;
#[cfg(feature = "flags")]
pub use flags::FlagsSource;
pub use memory::MemorySource;
pub use micro_core::{BoxError, Error, ErrorKind, Result};
#[cfg(feature = "nats")]
pub use nats::NatsSource;
pub use serde_json::Value;
pub use source::{Capabilities, DynSource, Source, SourceStream};
