use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
#[cfg(any(feature = "memory", feature = "nats"))]
use tokio::time::Instant;

use crate::{Capabilities, Hold, Result};

/// How to acquire a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockOptions {
    /// How long the lock outlives its holder's last renewal. The guard renews
    /// it in the background; a holder that dies or hangs loses it this long
    /// after its last renewal. Server backends round up to whole seconds
    /// (etcd may round further up to its minimum lease). Default: 15 s.
    pub ttl: Duration,
    /// How long to wait for a lock someone else holds: `None` fails at once,
    /// `Some(d)` waits up to `d`. Either way failure is `ErrorKind::Timeout`.
    /// Default: `None`.
    pub wait: Option<Duration>,
}

impl LockOptions {
    /// The default TTL.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(15);

    /// Options with this TTL and no wait.
    pub fn ttl(ttl: Duration) -> LockOptions {
        LockOptions { ttl, wait: None }
    }

    /// Waits up to `wait` for the lock.
    pub fn with_wait(mut self, wait: Duration) -> LockOptions {
        self.wait = Some(wait);
        self
    }

    /// When the polling backends (memory, NATS) stop trying: `None` wait
    /// means one attempt (a deadline of now). Kept here, next to
    /// [`CampaignOptions::deadline`](crate::CampaignOptions), so both
    /// backends read `wait` the same way.
    #[cfg(any(feature = "memory", feature = "nats"))]
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.wait {
            None => Some(Instant::now()),
            Some(wait) => crate::deadline_after(wait),
        }
    }
}

impl Default for LockOptions {
    fn default() -> LockOptions {
        LockOptions::ttl(LockOptions::DEFAULT_TTL)
    }
}

/// A held lock. Dropping it releases the lock in the background; call
/// [`release`](LockGuard::release) to release it and see the result.
///
/// While held, the lock is renewed every third of its TTL. If renewals stop
/// succeeding (the server is unreachable, the process stalled) the lock may
/// pass to someone else: [`lost`](LockGuard::lost) resolves then, and
/// [`token`](LockGuard::token) lets a resource reject writes from a holder
/// that was superseded.
#[derive(Debug)]
pub struct LockGuard {
    name: String,
    hold: Hold,
}

impl LockGuard {
    /// A guard for `name` over a backend's hold.
    pub fn new(name: impl Into<String>, hold: Hold) -> LockGuard {
        LockGuard {
            name: name.into(),
            hold,
        }
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fencing token: larger for every later holder of this lock.
    pub fn token(&self) -> u64 {
        self.hold.token()
    }

    /// The TTL the lock is renewed within.
    pub fn ttl(&self) -> Duration {
        self.hold.ttl()
    }

    crate::hold::hold_state_methods! {
        is_lost: "Whether the lock has been lost.",
        lost: "Resolves once the lock is lost (see [`Hold::lost`]); never while held.",
        stop_refreshing: "Stops renewing without releasing (see [`Hold::stop_refreshing`]).",
    }

    /// Releases the lock and waits for the backend to confirm. A lock already
    /// lost is left to its new holder, and that is not an error.
    pub async fn release(self) -> Result<()> {
        self.hold.release().await
    }
}

/// Distributed mutual exclusion: at most one holder per lock name at a time.
///
/// Names are at most 256 characters: a `/`-separated path (`orders/db`) of
/// names valid by [`micro_core::name::validate`] (letters, digits, `.`, `-`,
/// `_`; portable to every backend's key syntax); anything else is
/// `InvalidArgument`.
///
/// `Arc<T>` and `Box<T>` forward the trait, so [`DynLock`] is a lock too.
#[async_trait]
pub trait Lock: fmt::Debug + Send + Sync + 'static {
    /// The scheme naming this backend in configuration (`memory`, `etcd`, `nats`).
    fn scheme(&self) -> &'static str;

    /// What this backend supports.
    fn capabilities(&self) -> Capabilities;

    /// Acquires the named lock, waiting as `options.wait` allows
    /// (`Timeout` when it is not acquired in time).
    async fn acquire(&self, name: &str, options: &LockOptions) -> Result<LockGuard>;
}

/// A shared, type-erased lock backend.
pub type DynLock = Arc<dyn Lock>;

macro_rules! forward_lock {
    ($wrapper:ident) => {
        #[async_trait]
        impl<T: Lock + ?Sized> Lock for $wrapper<T> {
            fn scheme(&self) -> &'static str {
                (**self).scheme()
            }
            fn capabilities(&self) -> Capabilities {
                (**self).capabilities()
            }
            async fn acquire(&self, name: &str, options: &LockOptions) -> Result<LockGuard> {
                (**self).acquire(name, options).await
            }
        }
    };
}

forward_lock!(Arc);
forward_lock!(Box);

/// Checks what every backend accepts, before it reaches one.
pub(crate) fn validate_lock(name: &str, options: &LockOptions) -> Result<()> {
    crate::validate_name("lock", name)?;
    crate::validate_ttl(options.ttl)
}
