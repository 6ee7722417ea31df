//! micro's distributed locks and leader election.
//!
//! - [`Lock`]: at most one holder of a named lock at a time. A holder acquires
//!   with a TTL and an optional wait, gets a [`LockGuard`] that renews the lock
//!   in the background, and releases it explicitly or by dropping the guard.
//!   A holder that dies loses the lock once its TTL runs out.
//! - [`Election`]: candidates campaign for a named role and one leads at a
//!   time. The winner gets a [`Leadership`] whose [`lost`](Leadership::lost)
//!   future resolves if leadership is lost (its session expired), and which
//!   resigns explicitly or on drop; anyone can ask for the [`leader`](Election::leader)
//!   or [`observe`](Election::observe) the leaders as they change.
//!
//! Every hold carries a fencing token ([`LockGuard::token`], [`Leader::term`])
//! that grows with each new holder: a TTL-based lock cannot stop a holder
//! that stalled past its TTL from acting, but a resource that remembers the
//! largest token it has seen can refuse it.
//!
//! The traits are named for what they do; there is deliberately no trait
//! called `Sync`, which would shadow `std::marker::Sync`.
//!
//! # Quick start
//!
//! ```
//! use std::time::Duration;
//!
//! use futures::StreamExt;
//! use micro_sync::{CampaignOptions, Election, Lock, LockOptions, memory::MemoryCoordinator};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> micro_sync::Result<()> {
//! let backend = MemoryCoordinator::new();
//!
//! // A lock: the second caller waits up to a second, then gives up.
//! let guard = backend.acquire("reports", &LockOptions::ttl(Duration::from_secs(10))).await?;
//! let waiting = LockOptions::ttl(Duration::from_secs(10)).with_wait(Duration::from_millis(10));
//! let err = backend.acquire("reports", &waiting).await.unwrap_err();
//! assert_eq!(err.kind(), micro_sync::ErrorKind::Timeout);
//! guard.release().await?;
//!
//! // An election: watch the role, campaign, resign.
//! let mut leaders = backend.observe("scheduler").await?;
//! let leadership = backend.campaign("scheduler", "node-1", &CampaignOptions::default()).await?;
//! assert_eq!(leaders.next().await.transpose()?.map(|l| l.candidate), Some("node-1".into()));
//! assert_eq!(backend.leader("scheduler").await?.map(|l| l.term), Some(leadership.term()));
//! leadership.resign().await?;
//! assert_eq!(backend.leader("scheduler").await?, None);
//! # Ok(())
//! # }
//! ```
//!
//! # Backends
//!
//! | backend | scheme | how |
//! |---|---|---|
//! | [`memory`] | `memory` | in-process: tasks of one process |
//! | `etcd` | `etcd` | a lease per hold kept alive by keep-alive; etcd's Lock and Election APIs |
//! | `nats` | `nats` | a JetStream key/value bucket: create and renew by compare-and-set on the revision, per-key TTL (nats-server ≥ 2.11) |
//!
//! Each backend type implements both [`Lock`] and [`Election`], declares its
//! [`Capabilities`] and passes the `conformance` suite.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `memory` | yes | [`memory::MemoryCoordinator`] |
//! | `etcd` | no | `etcd::EtcdCoordinator` (etcd-client; building it needs `protoc`) |
//! | `nats` | no | `nats::NatsCoordinator` (async-nats) |
//! | `conformance` | no | the `conformance` module and `sync_conformance_tests!` |
//!
//! # Environment
//!
//! Backends' `from_env()` read `MICRO_SYNC_ADDRESS` (the server address,
//! comma-separated for several) and their own variables, listed on each
//! backend's config.

#[cfg(feature = "memory")]
pub mod memory;

#[cfg(feature = "etcd")]
pub mod etcd;

#[cfg(feature = "nats")]
pub mod nats;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod election;
mod hold;
mod lock;

use std::time::Duration;

use futures::{Stream, StreamExt};

pub use election::{CampaignOptions, DynElection, Election, Leader, LeaderStream, Leadership};
pub use hold::{Hold, Lease, Renewal};
pub use lock::{DynLock, Lock, LockGuard, LockOptions};
pub use micro_core::{BoxError, Error, ErrorKind, Result};

/// The variable giving the lock/election server's address (`from_env()`).
pub const ENV_ADDRESS: &str = "MICRO_SYNC_ADDRESS";

/// What a backend supports, so callers choose instead of failing at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// A hold that is not renewed expires after its TTL, and the holder's
    /// `lost()` future reports it.
    pub ttl: bool,
    /// [`Election::observe`] streams leader changes.
    pub observe: bool,
}

impl Capabilities {
    /// Every capability on.
    pub const fn all() -> Capabilities {
        Capabilities {
            ttl: true,
            observe: true,
        }
    }
}

/// The longest name of a lock or role.
const MAX_NAME: usize = 256;

/// Lock and role names: a `/`-separated path of names, each valid by
/// [`micro_core::name::validate`] (the one definition of a name), so every
/// backend's key syntax carries it (NATS KV keys are the narrowest).
fn validate_name(what: &str, name: &str) -> Result<()> {
    if name.len() > MAX_NAME {
        return Err(Error::invalid_argument(format!(
            "a {what} name is at most {MAX_NAME} bytes, got {} bytes",
            name.len()
        )));
    }
    for part in name.split('/') {
        micro_core::name::validate(what, part).map_err(|err| {
            Error::invalid_argument(format!(
                "{what} name {name:?} is not a '/'-separated path of names: {}",
                err.message()
            ))
        })?;
    }
    Ok(())
}

fn validate_ttl(ttl: Duration) -> Result<()> {
    if ttl.is_zero() {
        return Err(Error::invalid_argument("a TTL must be positive"));
    }
    // Keep the renewal interval (a third of the TTL) away from busy-looping,
    // and every deadline computable.
    if ttl < Duration::from_millis(30) || ttl > Duration::from_secs(365 * 24 * 3600) {
        return Err(Error::invalid_argument(format!(
            "a TTL must be between 30 ms and a year, got {ttl:?}"
        )));
    }
    Ok(())
}

/// Turns a relative wait into a deadline; waits too long to represent are
/// forever. Shared by the lock and campaign deadlines of the polling backends.
#[cfg(any(feature = "memory", feature = "nats"))]
fn deadline_after(wait: Duration) -> Option<tokio::time::Instant> {
    tokio::time::Instant::now().checked_add(wait)
}

/// Passes each leader on only when its term differs from the previous one's,
/// so renewals and repeated announcements of one leadership appear once.
fn new_terms_only<S>(leaders: S) -> impl Stream<Item = Result<Leader>> + Send + 'static
where
    S: Stream<Item = Result<Leader>> + Send + 'static,
{
    leaders
        .scan(None, |last_term, item| {
            let pass = match &item {
                Ok(leader) if *last_term == Some(leader.term) => None,
                Ok(leader) => {
                    *last_term = Some(leader.term);
                    Some(item)
                }
                Err(_) => Some(item),
            };
            futures::future::ready(Some(pass))
        })
        .filter_map(futures::future::ready)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_for_every_backend() {
        for good in ["a", "orders/db", "svc.leader", "x-1_2.3"] {
            assert!(validate_name("lock", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a b",
            ".a",
            "a.",
            "/a",
            "a/",
            "a//b",
            "a..b",
            "a=b",
            "é",
            &"x".repeat(257),
        ] {
            let err = validate_name("lock", bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn ttls_must_be_usable() {
        assert!(validate_ttl(Duration::from_secs(1)).is_ok());
        assert_eq!(
            validate_ttl(Duration::ZERO).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            validate_ttl(Duration::from_millis(1)).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }
}
