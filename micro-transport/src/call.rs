//! The serving-side plumbing every backend shares: running a handler so that a
//! panic, a passed deadline or a server shutdown each end the call with the
//! error the caller can act on, instead of taking the server down or hanging.

use std::{
    any::Any,
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use futures::{FutureExt, Stream, StreamExt};
use tokio::time::{Instant, Sleep};
use tokio_util::{
    sync::{CancellationToken, WaitForCancellationFutureOwned},
    task::task_tracker::TaskTrackerToken,
};

use crate::{BodyStream, Error, Result};

/// Runs `handler` on `request`, racing it against the request's deadline and,
/// for backends that cancel calls with a token, the server's shutdown. The
/// handler's future is dropped (cancelled) when either wins.
#[cfg(any(test, feature = "memory"))]
pub(crate) async fn serve_call(
    handler: &crate::Handler,
    request: crate::Request,
    shutdown: Option<&CancellationToken>,
) -> Result<crate::Response> {
    let deadline = request.deadline;
    guard_call(
        deadline,
        shutdown,
        DeadlineTimer::Tokio,
        handler.call_once(request),
    )
    .await
}

/// What races a call's deadline on the serving side.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DeadlineTimer {
    /// A tokio timer: follows tokio's clock, which tests may pause; for
    /// in-process calls.
    #[cfg(any(test, feature = "memory"))]
    Tokio,
    /// The process-wide deadline thread (see the `deadline` module): no
    /// tokio timer per call; for calls that came over the network.
    #[cfg(any(feature = "http", feature = "grpc"))]
    Shared,
}

/// Runs `call`, the serving side's work on one call, so that a panic in it
/// becomes an `Internal` error, and races it against `deadline` and
/// `shutdown`; `call` is dropped (cancelled) when either wins.
///
/// This is the one deadline race of the serving side. The call is polled
/// before the deadline is armed, so a call that finishes without waiting
/// never arms one.
pub(crate) async fn guard_call<T, E: From<Error>>(
    deadline: Option<Instant>,
    shutdown: Option<&CancellationToken>,
    timer: DeadlineTimer,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    // The timer only notices a deadline at its next tick, so one that has
    // already passed is checked here rather than raced.
    if deadline.is_some_and(|deadline| deadline <= Instant::now()) {
        return Err(deadline_exceeded().into());
    }
    let call = AssertUnwindSafe(call).catch_unwind();
    let shutdown = async {
        match shutdown {
            Some(shutdown) => shutdown.cancelled().await,
            None => std::future::pending().await,
        }
    };
    let guarded = async {
        tokio::select! {
            biased;
            outcome = call => outcome.unwrap_or_else(|panic| Err(panic_error(panic.as_ref()).into())),
            () = shutdown => Err(shutdown_error().into()),
        }
    };
    let Some(deadline) = deadline else {
        return guarded.await;
    };
    let outcome = match timer {
        #[cfg(any(test, feature = "memory"))]
        DeadlineTimer::Tokio => tokio::time::timeout_at(deadline, guarded).await.ok(),
        #[cfg(any(feature = "http", feature = "grpc"))]
        DeadlineTimer::Shared => crate::deadline::within(deadline, guarded).await,
    };
    outcome.unwrap_or_else(|| Err(deadline_exceeded().into()))
}

/// What a streamed body passed between caller and handler is held to.
pub(crate) struct StreamLimits {
    /// The largest message; a larger one ends the stream with `ResourceExhausted`.
    pub(crate) max_message_size: usize,
    /// The stream fails with `Timeout` once this passes.
    pub(crate) deadline: Option<Instant>,
    /// The stream fails with `Unavailable` once this is cancelled (the
    /// server's grace period is over).
    pub(crate) shutdown: Option<CancellationToken>,
    /// Keeps the call counted in flight while the stream is alive.
    pub(crate) _in_flight: Option<TaskTrackerToken>,
}

/// Wraps a stream so that each message is held to `limits`, a panic while
/// producing one becomes an `Internal` error, and the first error ends it.
///
/// The stream is polled first and the deadline and shutdown are only checked
/// (cheaply) per message; their timer and waiter are armed only once the
/// stream has to wait. So a busy stream pays no timer registration per
/// message, and a stream that is always ready still stops at the deadline.
pub(crate) fn limit_stream(
    stream: BodyStream,
    what: &'static str,
    limits: StreamLimits,
) -> BodyStream {
    Box::pin(LimitedStream {
        stream: Some(stream),
        what,
        limits,
        deadline_timer: None,
        shutdown_waiter: None,
        since_shutdown_check: 0,
    })
}

/// The stream [`limit_stream`] returns.
struct LimitedStream {
    /// `None` once the stream has ended or failed.
    stream: Option<BodyStream>,
    what: &'static str,
    limits: StreamLimits,
    /// Armed the first time the stream waits with a deadline set.
    deadline_timer: Option<Pin<Box<Sleep>>>,
    /// Armed the first time the stream waits with a shutdown token set.
    shutdown_waiter: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    /// Messages passed since the shutdown token was last looked at.
    since_shutdown_check: u32,
}

/// How many ready messages may pass between two looks at the shutdown token
/// (each look takes the token's lock); a stream that waits looks every time.
const SHUTDOWN_CHECK_EVERY: u32 = 64;

impl LimitedStream {
    /// Ends the stream with `error` as its last item.
    fn end_with(&mut self, error: Error) -> Poll<Option<Result<Bytes>>> {
        self.finish();
        Poll::Ready(Some(Err(error)))
    }

    /// Lets go of the source, the timer and the waiter once the stream ends.
    fn finish(&mut self) {
        self.stream = None;
        self.deadline_timer = None;
        self.shutdown_waiter = None;
    }

    /// The error that stops the stream now, if the shutdown or the deadline
    /// has come. The shutdown is looked at every [`SHUTDOWN_CHECK_EVERY`]
    /// messages: a stream that is always ready still ends, a few messages later.
    fn stopped(&mut self) -> Option<Error> {
        if let Some(shutdown) = &self.limits.shutdown {
            self.since_shutdown_check += 1;
            if self.since_shutdown_check >= SHUTDOWN_CHECK_EVERY {
                self.since_shutdown_check = 0;
                if shutdown.is_cancelled() {
                    return Some(shutdown_error());
                }
            }
        }
        if self
            .limits
            .deadline
            .is_some_and(|deadline| deadline <= Instant::now())
        {
            return Some(deadline_exceeded());
        }
        None
    }

    /// Registers for a wake-up at the shutdown or the deadline, whichever
    /// comes first; `Ready` with the error if one already has.
    fn wait_for_stop(&mut self, cx: &mut Context<'_>) -> Poll<Error> {
        if let Some(shutdown) = &self.limits.shutdown {
            let waiter = self
                .shutdown_waiter
                .get_or_insert_with(|| Box::pin(shutdown.clone().cancelled_owned()));
            if waiter.as_mut().poll(cx).is_ready() {
                return Poll::Ready(shutdown_error());
            }
        }
        if let Some(deadline) = self.limits.deadline {
            let timer = self
                .deadline_timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(deadline_exceeded());
            }
        }
        Poll::Pending
    }
}

impl Stream for LimitedStream {
    type Item = Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes>>> {
        let this = self.get_mut();
        if this.stream.is_none() {
            return Poll::Ready(None);
        }
        if let Some(error) = this.stopped() {
            return this.end_with(error);
        }
        let stream = this.stream.as_mut().expect("checked above");
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| stream.poll_next_unpin(cx)));
        match polled {
            Err(panic) => this.end_with(panic_error(panic.as_ref())),
            Ok(Poll::Ready(Some(Ok(message)))) if message.len() > this.limits.max_message_size => {
                let error = body_too_large(
                    &format!("streamed {} message", this.what),
                    message.len(),
                    this.limits.max_message_size,
                );
                this.end_with(error)
            }
            Ok(Poll::Ready(Some(Ok(message)))) => Poll::Ready(Some(Ok(message))),
            Ok(Poll::Ready(Some(Err(error)))) => this.end_with(error),
            Ok(Poll::Ready(None)) => {
                this.finish();
                Poll::Ready(None)
            }
            Ok(Poll::Pending) => match this.wait_for_stop(cx) {
                Poll::Ready(error) => this.end_with(error),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// The error of a call whose deadline passed.
pub(crate) fn deadline_exceeded() -> Error {
    Error::timeout("the call's deadline passed before it finished")
}

/// The error of a call cut short because its server shut down.
pub(crate) fn shutdown_error() -> Error {
    Error::unavailable("the server shut down before the call finished")
}

/// The error of a body (or streamed message) over `limit` bytes.
pub(crate) fn body_too_large(what: &str, size: impl std::fmt::Display, limit: usize) -> Error {
    Error::resource_exhausted(format!(
        "{what} of {size} bytes exceeds the limit of {limit} bytes"
    ))
}

/// Turns a caught handler panic into the `Internal` error its caller receives.
///
/// The panic message is logged on the serving side but not sent: it may hold
/// details the caller has no business seeing.
pub(crate) fn panic_error(panic: &(dyn Any + Send)) -> Error {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    tracing::error!(panic = message, "handler panicked");
    Error::internal("the handler panicked")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{ErrorKind, Handler, Request, Response};

    fn request() -> Request {
        Request::new("Test.Call", "x")
    }

    #[tokio::test]
    async fn a_panicking_handler_becomes_internal() {
        let handler = Handler::from_fn(|_request: Request| async move {
            if true {
                panic!("boom");
            }
            Ok(Response::new("unreachable"))
        });
        let err = serve_call(&handler, request(), None).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
    }

    #[tokio::test]
    async fn a_passed_deadline_is_timeout_and_skips_the_handler() {
        let handler = Handler::from_fn(|_request: Request| async move {
            panic!("the handler must not run past the deadline")
        });
        let past = Instant::now() - Duration::from_millis(1);
        let err = serve_call(&handler, request().with_deadline(past), None)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
    }

    #[tokio::test]
    async fn shutdown_cancels_the_call_as_unavailable() {
        let handler = Handler::from_fn(|_request: Request| std::future::pending());
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let err = serve_call(&handler, request(), Some(&shutdown))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
    }

    #[test]
    fn panic_payloads_of_both_string_types_are_read() {
        let text: Box<dyn Any + Send> = Box::new("static");
        assert_eq!(panic_error(text.as_ref()).kind(), ErrorKind::Internal);
        let owned: Box<dyn Any + Send> = Box::new(String::from("owned"));
        assert_eq!(panic_error(owned.as_ref()).kind(), ErrorKind::Internal);
    }
}
