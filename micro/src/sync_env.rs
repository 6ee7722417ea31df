//! Choosing the lock and election backend ([`micro::sync`](crate::sync)) from
//! the environment, like the registry, broker and transport in
//! [`env`](mod@crate::env).
//!
//! | variable | values | default |
//! |---|---|---|
//! | `MICRO_SYNC` | `memory`, `etcd`, `nats` | `memory` |
//! | `MICRO_SYNC_ADDRESS` | the server's address, comma-separated for several (ignored by `memory`) | |
//!
//! Each backend needs its feature of `micro` (`sync-memory`, `sync-etcd`,
//! `sync-nats`): naming one this build lacks is a `FailedPrecondition`
//! error naming the feature; an unknown name is `InvalidArgument`.
//!
//! ```
//! use std::collections::HashMap;
//! use micro::{ErrorKind, sync_env::sync_from_lookup};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> micro::Result<()> {
//! let backend = sync_from_lookup(|_| None).await?; // MICRO_SYNC unset: memory
//! assert_eq!(backend.lock.scheme(), "memory");
//!
//! let vars = HashMap::from([("MICRO_SYNC", "zookeeper")]);
//! let err = sync_from_lookup(|name| vars.get(name).map(|v| v.to_string())).await.unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::InvalidArgument);
//! # Ok(())
//! # }
//! ```

use crate::{
    Error, Result,
    sync::{DynElection, DynLock},
};

/// The variable naming the lock/election backend.
pub const SYNC: &str = "MICRO_SYNC";

/// The backends this module knows, with the feature each needs.
const KNOWN: [(&str, &str); 3] = [
    ("memory", "sync-memory"),
    ("etcd", "sync-etcd"),
    ("nats", "sync-nats"),
];

/// One backend, as a lock service and an election service.
#[derive(Debug, Clone)]
pub struct SyncBackend {
    /// Distributed locks.
    pub lock: DynLock,
    /// Leader election.
    pub election: DynElection,
}

/// The backend `MICRO_SYNC` names (default `memory`), connected.
pub async fn sync_from_env() -> Result<SyncBackend> {
    sync_from_lookup(|name| std::env::var(name).ok()).await
}

/// Like [`sync_from_env`], reading variables through `lookup`.
pub async fn sync_from_lookup(
    lookup: impl Fn(&str) -> Option<String> + Send + Sync,
) -> Result<SyncBackend> {
    let name = lookup(SYNC)
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "memory".to_owned());
    let Some((_, feature)) = KNOWN.iter().find(|(known, _)| *known == name) else {
        let names: Vec<&str> = KNOWN.iter().map(|(known, _)| *known).collect();
        return Err(Error::invalid_argument(format!(
            "{SYNC}={name} is not a backend micro knows; known: {}",
            names.join(", ")
        )));
    };
    match name.as_str() {
        #[cfg(feature = "sync-memory")]
        "memory" => {
            let backend = crate::sync::memory::MemoryCoordinator::shared();
            Ok(both(backend))
        }
        #[cfg(feature = "sync-etcd")]
        "etcd" => {
            let config = crate::sync::etcd::EtcdConfig::from_lookup(&lookup)?;
            Ok(both(
                crate::sync::etcd::EtcdCoordinator::connect(config).await?,
            ))
        }
        #[cfg(feature = "sync-nats")]
        "nats" => {
            let config = crate::sync::nats::NatsConfig::from_lookup(&lookup)?;
            Ok(both(
                crate::sync::nats::NatsCoordinator::connect(config).await?,
            ))
        }
        _ => Err(Error::failed_precondition(format!(
            "{SYNC}={name} needs micro's cargo feature `{feature}`, which this build does not include"
        ))),
    }
}

#[cfg(any(feature = "sync-memory", feature = "sync-etcd", feature = "sync-nats"))]
fn both<B>(backend: B) -> SyncBackend
where
    B: crate::sync::Lock + crate::sync::Election + Clone,
{
    SyncBackend {
        lock: std::sync::Arc::new(backend.clone()),
        election: std::sync::Arc::new(backend),
    }
}
