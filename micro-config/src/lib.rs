//! micro's dynamic configuration.
//!
//! (Guide written below.)

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

#[cfg(feature = "consul")]
pub use consul::ConsulSource;
pub use config::{Config, ConfigBuilder, ConfigEvent, WatchStream};
pub use env::EnvSource;
#[cfg(feature = "etcd")]
pub use etcd::EtcdSource;
#[cfg(feature = "file")]
pub use file::FileSource;
#[cfg(feature = "flags")]
pub use flags::FlagsSource;
pub use memory::MemorySource;
#[cfg(feature = "nats")]
pub use nats::NatsSource;
pub use micro_core::{BoxError, Error, ErrorKind, Result};
pub use serde_json::Value;
pub use source::{Capabilities, DynSource, Source, SourceStream};
