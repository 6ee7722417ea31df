//! The one retry policy of micro's callers: unary calls, streams and
//! `GrpcChannel` (feature `transport-grpc`) all send their tries through
//! [`tower::retry::Retry`] with a [`RetryPolicy`].

use std::time::Duration;

use tokio::time::Instant;

use crate::{Error, client::Backoff};

/// When a failed call is tried again, as a [`tower::retry::Policy`].
///
/// A failure is retried when all of these hold:
///
/// - its kind is retryable ([`Error::is_retryable`]: `Unavailable`, `Aborted`);
/// - fewer than `retries` retries were made;
/// - the request can be sent again ([`Resend`]: a streamed body cannot);
/// - the backoff before it ends before the deadline, if there is one: a
///   retry never outlives its caller.
///
/// Which node a retry goes to is the caller's business: micro's callers
/// record each failed node so that the retry prefers another one.
///
/// One policy serves one call (tower clones it for each): build it with the
/// call's own retries and deadline.
///
/// ```
/// use std::time::Duration;
/// use micro::{Error, client::{Backoff, RetryPolicy}};
///
/// let backoff = Backoff::constant(Duration::from_millis(10)).without_jitter();
/// let mut policy = RetryPolicy::new(1, backoff);
/// assert!(policy.next_delay(&Error::not_found("no such user")).is_none());
/// assert_eq!(policy.next_delay(&Error::unavailable("node down")), Some(Duration::from_millis(10)));
/// // Out of retries.
/// assert!(policy.next_delay(&Error::unavailable("node down")).is_none());
/// ```
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    retries: u32,
    backoff: Backoff,
    deadline: Option<Instant>,
    made: u32,
}

impl RetryPolicy {
    /// At most `retries` retries, waiting as `backoff` says before each; no deadline.
    pub fn new(retries: u32, backoff: Backoff) -> RetryPolicy {
        RetryPolicy {
            retries,
            backoff,
            deadline: None,
            made: 0,
        }
    }

    /// No retry whose wait would end at or past `deadline` (`None`: no bound).
    pub fn until(mut self, deadline: Option<Instant>) -> RetryPolicy {
        self.deadline = deadline;
        self
    }

    /// How many retries this policy has allowed so far.
    pub fn retries_made(&self) -> u32 {
        self.made
    }

    /// The wait before retrying after `error`, counting the retry; `None`
    /// when it is not retried (not retryable, out of retries, or the wait
    /// would end past the deadline).
    pub fn next_delay(&mut self, error: &Error) -> Option<Duration> {
        if !error.is_retryable() || self.made >= self.retries {
            return None;
        }
        let delay = self.backoff.delay(self.made);
        if self
            .deadline
            .is_some_and(|deadline| Instant::now() + delay >= deadline)
        {
            return None;
        }
        self.made += 1;
        Some(delay)
    }
}

/// A request a [`RetryPolicy`] can send again.
pub trait Resend: Sized {
    /// A copy to send on a retry, or `None` when this request cannot be sent
    /// again (a streamed body, or one larger than what was kept of it).
    fn resend(&self) -> Option<Self>;
}

impl<Req: Resend, Res> tower::retry::Policy<Req, Res, Error> for RetryPolicy {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        request: &mut Req,
        result: &mut Result<Res, Error>,
    ) -> Option<Self::Future> {
        let error = result.as_ref().err()?;
        // Checked first: a request that cannot be sent again uses no retry.
        request.resend()?;
        let delay = self.next_delay(error)?;
        tracing::debug!(retry = self.made, error = %error, retry_in = ?delay, "retrying");
        Some(tokio::time::sleep(delay))
    }

    fn clone_request(&mut self, request: &Req) -> Option<Req> {
        request.resend()
    }
}

/// The nodes that failed one call so far, shared by its tries, so that a
/// retry prefers a node that has not failed yet.
#[derive(Debug, Default)]
pub(crate) struct Tried(std::sync::Mutex<Vec<String>>);

impl Tried {
    /// Records that `node` failed this call.
    pub(crate) fn add(&self, node: &str) {
        self.lock().push(node.to_owned());
    }

    /// The nodes tried so far.
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    };

    use tower::{ServiceExt, retry::Retry, service_fn};

    use super::*;
    use crate::ErrorKind;

    #[derive(Clone)]
    struct Request {
        resendable: bool,
    }

    impl Resend for Request {
        fn resend(&self) -> Option<Request> {
            self.resendable.then(|| self.clone())
        }
    }

    /// Sends `request` through a `Retry` whose service fails with `kind`
    /// `failures` times; returns the result and the number of tries.
    async fn run(
        policy: RetryPolicy,
        request: Request,
        kind: ErrorKind,
        failures: u32,
    ) -> (Result<u32, Error>, u32) {
        let tries = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&tries);
        let service = service_fn(move |_: Request| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if n <= failures {
                    Err(Error::new(kind, "try failed"))
                } else {
                    Ok(n)
                }
            }
        });
        let result = Retry::new(policy, service).oneshot(request).await;
        (result, tries.load(Ordering::SeqCst))
    }

    fn quick(retries: u32) -> RetryPolicy {
        RetryPolicy::new(retries, Backoff::none())
    }

    #[tokio::test]
    async fn retryable_kinds_are_retried_up_to_the_count() {
        let resendable = Request { resendable: true };
        for kind in [ErrorKind::Unavailable, ErrorKind::Aborted] {
            let (result, tries) = run(quick(3), resendable.clone(), kind, 2).await;
            assert_eq!(result.unwrap(), 3, "{kind:?}");
            assert_eq!(tries, 3);
            let (result, tries) = run(quick(3), resendable.clone(), kind, 10).await;
            assert_eq!(result.unwrap_err().kind(), kind);
            assert_eq!(tries, 4, "one try and three retries");
        }
        let (result, tries) = run(quick(0), resendable, ErrorKind::Unavailable, 1).await;
        assert_eq!(result.unwrap_err().kind(), ErrorKind::Unavailable);
        assert_eq!(tries, 1);
    }

    #[tokio::test]
    async fn other_kinds_are_not_retried() {
        for kind in [
            ErrorKind::NotFound,
            ErrorKind::InvalidArgument,
            ErrorKind::Timeout,
            ErrorKind::Cancelled,
            ErrorKind::Internal,
        ] {
            let (result, tries) = run(quick(3), Request { resendable: true }, kind, 1).await;
            assert_eq!(result.unwrap_err().kind(), kind);
            assert_eq!(tries, 1, "{kind:?}");
        }
    }

    #[tokio::test]
    async fn a_request_that_cannot_be_sent_again_is_tried_once() {
        let (result, tries) = run(
            quick(3),
            Request { resendable: false },
            ErrorKind::Unavailable,
            1,
        )
        .await;
        assert_eq!(result.unwrap_err().kind(), ErrorKind::Unavailable);
        assert_eq!(tries, 1);
    }

    #[tokio::test]
    async fn a_retry_that_would_outlive_the_deadline_is_not_made() {
        // The first wait (1 s) ends past the deadline (100 ms away): no retry.
        let backoff = Backoff::constant(Duration::from_secs(1)).without_jitter();
        let deadline = Instant::now() + Duration::from_millis(100);
        let policy = RetryPolicy::new(3, backoff).until(Some(deadline));
        let (result, tries) = run(
            policy,
            Request { resendable: true },
            ErrorKind::Unavailable,
            1,
        )
        .await;
        assert_eq!(result.unwrap_err().kind(), ErrorKind::Unavailable);
        assert_eq!(tries, 1);
        // A deadline already past allows no retry, even without a wait.
        let mut policy = quick(3).until(Some(Instant::now()));
        assert_eq!(policy.next_delay(&Error::unavailable("down")), None);
    }

    #[test]
    fn retries_wait_as_the_backoff_says() {
        let backoff = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(1))
            .without_jitter();
        let mut policy = RetryPolicy::new(3, backoff);
        let unavailable = Error::unavailable("down");
        let waits: Vec<_> = (0..4).map(|_| policy.next_delay(&unavailable)).collect();
        let ms = |n| Some(Duration::from_millis(n));
        assert_eq!(waits, [ms(100), ms(200), ms(400), None]);
        assert_eq!(policy.retries_made(), 3);
    }
}
