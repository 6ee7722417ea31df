//! What a lock guard and a leadership share: a hold on a key that lives as long
//! as it is renewed within its TTL, renewed by a background task, and a signal
//! that fires once the hold is lost.

use std::{
    fmt,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{Error, ErrorKind, Result};

/// What a backend answers when asked to renew a hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// The hold is still ours and lives another TTL.
    Held,
    /// The hold is gone: it expired, or someone else holds the key now.
    Gone,
}

/// A backend's handle on one hold: renew it, give it up.
///
/// Backends implement this and wrap it in a [`Hold`]; users never see it.
#[async_trait]
pub trait Lease: fmt::Debug + Send + Sync + 'static {
    /// Extends the hold by its TTL, if it is still ours.
    async fn renew(&self) -> Result<Renewal>;

    /// Gives the hold up, only if it is still ours: a hold that already passed
    /// to someone else is left alone. Releasing a lost hold is not an error.
    async fn release(&self) -> Result<()>;
}

/// Why a hold ended without being released, as the loss signal reports it.
#[derive(Debug, Clone)]
struct Loss {
    kind: ErrorKind,
    message: String,
}

#[derive(Debug)]
struct Shared {
    lost: watch::Sender<Option<Loss>>,
    /// Set by [`Hold::stop_refreshing`]: the task keeps watching the clock but
    /// sends no more renewals.
    paused: AtomicBool,
}

/// One held key, kept alive in the background until released or lost.
///
/// Built by backends with [`Hold::start`]; [`LockGuard`](crate::LockGuard) and
/// [`Leadership`](crate::Leadership) wrap it. Dropping it releases the hold on
/// the current tokio runtime (if none is running, the TTL frees it).
pub struct Hold {
    token: u64,
    ttl: Duration,
    shared: Arc<Shared>,
    lease: Option<Arc<dyn Lease>>,
    stop: CancellationToken,
}

impl Hold {
    /// Starts renewing `lease` every third of `ttl` on the current tokio runtime.
    ///
    /// `valid_from` is when the request that created (or last renewed) the hold
    /// was *sent*: the backend counts the TTL from when it received it, which is
    /// later, so a hold this side reports lost at `valid_from + ttl` without a
    /// renewal is never still believed held after the server let it go.
    /// `token` is the fencing token: it grows with every new hold on a key.
    pub fn start(lease: Arc<dyn Lease>, ttl: Duration, token: u64, valid_from: Instant) -> Hold {
        let (lost, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            lost,
            paused: AtomicBool::new(false),
        });
        let stop = CancellationToken::new();
        tokio::spawn(keep_alive(
            Arc::clone(&lease),
            ttl,
            valid_from + ttl,
            Arc::clone(&shared),
            stop.clone(),
        ));
        Hold {
            token,
            ttl,
            shared,
            lease: Some(lease),
            stop,
        }
    }

    /// The fencing token: larger for every later hold on the same key, so a
    /// resource can refuse writes from a holder that has been superseded.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// The TTL the hold is renewed within.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether the hold has been lost (expired or taken over).
    pub fn is_lost(&self) -> bool {
        self.shared.lost.borrow().is_some()
    }

    /// Resolves once the hold is lost, with the reason as an error
    /// (`Unavailable`: no renewal succeeded within the TTL; `Aborted`: the
    /// backend says the key is no longer ours). Never resolves while held.
    /// The future owns what it needs, so it can be moved into a task.
    pub fn lost(&self) -> impl Future<Output = Error> + Send + 'static {
        let mut lost = self.shared.lost.subscribe();
        async move {
            let loss = match lost.wait_for(Option::is_some).await {
                Ok(loss) => loss.clone(),
                // The sender lives in `Shared`, which this future does not own:
                // once every hold handle is gone, nothing can report a loss.
                Err(_) => None,
            };
            match loss {
                Some(loss) => Error::new(loss.kind, loss.message),
                None => std::future::pending().await,
            }
        }
    }

    /// Stops renewing without releasing, as if this process had hung or lost
    /// its connection: the backend frees the key once the TTL lapses and
    /// [`lost`](Hold::lost) resolves. For fault drills and tests.
    pub fn stop_refreshing(&self) {
        self.shared.paused.store(true, Ordering::Release);
    }

    /// Gives the hold up now and waits for the backend to confirm.
    pub async fn release(mut self) -> Result<()> {
        self.stop.cancel();
        match self.lease.take() {
            Some(lease) => lease.release().await,
            None => Ok(()),
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.stop.cancel();
        let Some(lease) = self.lease.take() else {
            return;
        };
        // Without a runtime the release cannot run; the TTL frees the key.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(err) = lease.release().await {
                    tracing::warn!(%err, "releasing a dropped hold failed; its TTL will free it");
                }
            });
        }
    }
}

impl fmt::Debug for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hold")
            .field("token", &self.token)
            .field("ttl", &self.ttl)
            .field("lost", &self.is_lost())
            .field("lease", &self.lease)
            .finish()
    }
}

/// Renews the lease until stopped, and reports the loss when a renewal says
/// the hold is gone or none succeeded before `valid_until`.
async fn keep_alive(
    lease: Arc<dyn Lease>,
    ttl: Duration,
    mut valid_until: Instant,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let interval = ttl / 3;
    let mut next_renewal = Instant::now() + interval;
    let loss = loop {
        let wake = next_renewal.min(valid_until);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(wake) => {}
        }
        if Instant::now() >= valid_until {
            break Loss {
                kind: ErrorKind::Unavailable,
                message: format!("no renewal succeeded within the TTL of {ttl:?}"),
            };
        }
        if shared.paused.load(Ordering::Acquire) {
            next_renewal = valid_until;
            continue;
        }
        let sent = Instant::now();
        let renewal = tokio::select! {
            () = stop.cancelled() => return,
            renewal = tokio::time::timeout_at(valid_until, lease.renew()) => renewal,
        };
        match renewal {
            Ok(Ok(Renewal::Held)) => {
                valid_until = sent + ttl;
                next_renewal = sent + interval;
            }
            Ok(Ok(Renewal::Gone)) => {
                break Loss {
                    kind: ErrorKind::Aborted,
                    message: "the backend no longer holds the key for us".to_owned(),
                };
            }
            Ok(Err(err)) => {
                tracing::warn!(%err, "renewing a hold failed; retrying");
                // Retry soon, but not in a tight loop against a failing server.
                next_renewal = Instant::now() + (interval / 4).max(Duration::from_millis(50));
            }
            Err(_elapsed) => next_renewal = valid_until,
        }
    };
    tracing::warn!(reason = %loss.message, "hold lost");
    shared.lost.send_replace(Some(loss));
}

/// The state methods [`LockGuard`](crate::LockGuard) and
/// [`Leadership`](crate::Leadership) both expose: each is a `hold` field
/// seen under its own vocabulary, so the forwarding is written once here and
/// each wrapper supplies only its wording.
macro_rules! hold_state_methods {
    (is_lost: $is_lost:literal, lost: $lost:literal, stop_refreshing: $stop:literal $(,)?) => {
        #[doc = $is_lost]
        pub fn is_lost(&self) -> bool {
            self.hold.is_lost()
        }

        #[doc = $lost]
        pub fn lost(&self) -> impl ::std::future::Future<Output = $crate::Error> + Send + 'static {
            self.hold.lost()
        }

        #[doc = $stop]
        pub fn stop_refreshing(&self) {
            self.hold.stop_refreshing()
        }
    };
}
pub(crate) use hold_state_methods;
