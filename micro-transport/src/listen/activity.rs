use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use http_body::{Body, Frame, SizeHint};
use tokio::{
    sync::Notify,
    time::{Instant, sleep_until},
};
use tokio_util::sync::CancellationToken;

use super::ConnectionLimits;

/// How long a connection closed for idleness (or a missed handshake deadline)
/// gets to finish closing gracefully before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What one connection is doing: the calls in flight on it and when that last
/// changed. The idle and handshake deadlines are judged from it.
#[derive(Debug)]
pub(crate) struct Activity {
    in_flight: AtomicUsize,
    /// When the last call started or ended; `None` until the first call.
    last_change: Mutex<Option<Instant>>,
    /// Woken when the last call in flight ends, so the idle clock restarts.
    quiet: Notify,
}

impl Activity {
    pub(crate) fn new() -> Arc<Activity> {
        Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            last_change: Mutex::new(None),
            quiet: Notify::new(),
        })
    }

    /// Marks a call as in flight until the returned guard is dropped (with
    /// the response body, see [`TrackedBody`]).
    pub(crate) fn begin(self: &Arc<Self>) -> CallGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        CallGuard {
            activity: self.clone(),
        }
    }

    fn touch(&self) {
        *self
            .last_change
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    /// When the connection must close unless a call starts first: `None`
    /// while calls are in flight.
    fn deadline(&self, accepted_at: Instant, limits: &ConnectionLimits) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last_change = *self
            .last_change
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Some(match last_change {
            None => accepted_at + limits.handshake_timeout,
            Some(at) => at + limits.idle_timeout,
        })
    }
}

/// One call in flight on a connection; ends the call when dropped.
#[derive(Debug)]
pub(crate) struct CallGuard {
    activity: Arc<Activity>,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.activity.touch();
        if self.activity.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.activity.quiet.notify_one();
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its call counted as in flight until the
    /// body has been sent in full (or dropped): a streaming call is busy for
    /// as long as it streams.
    #[derive(Debug)]
    pub(crate) struct TrackedBody<B> {
        #[pin]
        inner: B,
        guard: Option<CallGuard>,
    }
}

impl<B> TrackedBody<B> {
    pub(crate) fn new(inner: B, guard: CallGuard) -> TrackedBody<B> {
        TrackedBody {
            inner,
            guard: Some(guard),
        }
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.guard.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why [`drive`] asks a connection to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    /// The server is shutting down: the drain's grace period bounds it.
    Shutdown,
    /// Idle, or no first call in time: dropped if it does not close soon.
    Deadline(Instant),
}

/// Runs `connection` to its end, closing it gracefully (with `graceful`) when
/// the server shuts down, when no first call arrives within the handshake
/// timeout, or when no call is in flight for the idle timeout. A connection
/// closed for a deadline that does not finish closing within a second, with
/// no call in flight, is dropped: then the result is `None`.
pub(crate) async fn drive<C: Future>(
    connection: C,
    graceful: impl Fn(Pin<&mut C>),
    activity: &Activity,
    accepted_at: Instant,
    limits: &ConnectionLimits,
    shutdown: &CancellationToken,
) -> Option<C::Output> {
    tokio::pin!(connection);
    let mut closing = None;
    loop {
        let deadline = match closing {
            None => activity.deadline(accepted_at, limits),
            Some(Closing::Deadline(drop_at)) => Some(drop_at),
            Some(Closing::Shutdown) => None,
        };
        tokio::select! {
            result = connection.as_mut() => return Some(result),
            () = shutdown.cancelled(), if closing != Some(Closing::Shutdown) => {
                if closing.is_none() {
                    graceful(connection.as_mut());
                }
                closing = Some(Closing::Shutdown);
            }
            () = activity.quiet.notified() => {}
            () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                match closing {
                    None if activity.deadline(accepted_at, limits).is_some_and(|at| at <= Instant::now()) => {
                        graceful(connection.as_mut());
                        closing = Some(Closing::Deadline(Instant::now() + CLOSE_GRACE));
                    }
                    Some(Closing::Deadline(_)) if activity.in_flight.load(Ordering::Acquire) == 0 => {
                        return None;
                    }
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{future::pending, sync::atomic::AtomicBool};

    use super::*;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(20),
            ..ConnectionLimits::default()
        }
    }

    /// A connection that never ends by itself but records graceful shutdown.
    async fn drive_pending(activity: &Activity, shutdown: &CancellationToken) -> Option<()> {
        let asked = AtomicBool::new(false);
        drive(
            pending::<()>(),
            |_| asked.store(true, Ordering::Release),
            activity,
            Instant::now(),
            &limits(),
            shutdown,
        )
        .await
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_first_call_is_closed_at_the_handshake_deadline() {
        let activity = Activity::new();
        let started = Instant::now();
        assert_eq!(
            drive_pending(&activity, &CancellationToken::new()).await,
            None
        );
        assert_eq!(started.elapsed(), Duration::from_secs(5) + CLOSE_GRACE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_in_flight_holds_the_connection_open_and_idleness_counts_from_its_end() {
        let activity = Activity::new();
        let started = Instant::now();
        let guard = activity.begin();
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(100)).await;
            drop(guard);
        });
        assert_eq!(
            drive_pending(&activity, &CancellationToken::new()).await,
            None
        );
        release.await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(120) + CLOSE_GRACE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_ends_its_call_when_sent_in_full() {
        let activity = Activity::new();
        let mut body = TrackedBody::new(
            http_body_util::Full::new(bytes::Bytes::from_static(b"x")),
            activity.begin(),
        );
        assert!(activity.deadline(Instant::now(), &limits()).is_none());
        while http_body_util::BodyExt::frame(&mut body).await.is_some() {}
        assert!(activity.deadline(Instant::now(), &limits()).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_asks_for_a_graceful_close_and_then_waits_for_the_connection() {
        let activity = Activity::new();
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let _guard = activity.begin();
        let asked = AtomicBool::new(false);
        let driven = tokio::time::timeout(
            Duration::from_secs(1000),
            drive(
                pending::<()>(),
                |_| asked.store(true, Ordering::Release),
                &activity,
                Instant::now(),
                &limits(),
                &shutdown,
            ),
        )
        .await;
        assert!(
            driven.is_err(),
            "a draining connection is left to the drain's grace"
        );
        assert!(asked.load(Ordering::Acquire));
    }
}
