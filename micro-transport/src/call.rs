//! The serving-side plumbing every backend shares: running a handler so that a
//! panic, a passed deadline or a server shutdown each end the call with the
//! error the caller can act on, instead of taking the server down or hanging.

use std::{any::Any, future::Future, panic::AssertUnwindSafe};

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use tokio::time::Instant;
use tokio_util::{sync::CancellationToken, task::task_tracker::TaskTrackerToken};

use crate::{BodyStream, Error, Handler, Request, Response, Result};

/// Runs `handler` on `request`, racing it against the request's deadline and,
/// for backends that cancel calls with a token, the server's shutdown. The
/// handler's future is dropped (cancelled) when either wins.
pub(crate) async fn serve_call(
    handler: &Handler,
    request: Request,
    shutdown: Option<&CancellationToken>,
) -> Result<Response> {
    let deadline = request.deadline;
    guard_call(deadline, shutdown, handler.call_once(request)).await
}

/// Runs `call`, the serving side's work on one call, so that a panic in it
/// becomes an `Internal` error, and races it against `deadline` and
/// `shutdown`; `call` is dropped (cancelled) when either wins.
///
/// This is the one deadline race of the serving side. The call is polled
/// before the timer, so a call that finishes without waiting never arms one.
pub(crate) async fn guard_call<T, E: From<Error>>(
    deadline: Option<Instant>,
    shutdown: Option<&CancellationToken>,
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
    tokio::select! {
        biased;
        outcome = call => outcome.unwrap_or_else(|panic| Err(panic_error(panic.as_ref()).into())),
        () = shutdown => Err(shutdown_error().into()),
        () = sleep_until_deadline(deadline) => Err(deadline_exceeded().into()),
    }
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
pub(crate) fn limit_stream(
    stream: BodyStream,
    what: &'static str,
    limits: StreamLimits,
) -> BodyStream {
    futures::stream::unfold(Some((stream, limits)), move |state| async move {
        let (mut stream, limits) = state?;
        let message = next_message(&mut stream, what, &limits).await?;
        let go_on = message.is_ok();
        Some((message, go_on.then_some((stream, limits))))
    })
    .boxed()
}

async fn next_message(
    stream: &mut BodyStream,
    what: &'static str,
    limits: &StreamLimits,
) -> Option<Result<Bytes>> {
    let shutdown = async {
        match &limits.shutdown {
            Some(shutdown) => shutdown.cancelled().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        () = shutdown => Some(Err(shutdown_error())),
        () = sleep_until_deadline(limits.deadline) => Some(Err(deadline_exceeded())),
        next = AssertUnwindSafe(stream.next()).catch_unwind() => match next {
            Err(panic) => Some(Err(panic_error(panic.as_ref()))),
            Ok(Some(Ok(message))) if message.len() > limits.max_message_size => Some(Err(
                body_too_large(&format!("streamed {what} message"), message.len(), limits.max_message_size),
            )),
            Ok(next) => next,
        },
    }
}

/// Resolves when `deadline` passes; never, when there is none.
pub(crate) async fn sleep_until_deadline(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
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
    use crate::ErrorKind;

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
