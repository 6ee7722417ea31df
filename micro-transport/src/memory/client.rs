use std::{
    panic::AssertUnwindSafe,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use futures::{FutureExt, StreamExt, future::BoxFuture};
use tokio::time::Instant;
use tokio_util::{sync::CancellationToken, task::task_tracker::TaskTrackerToken};

use super::server::Network;
use crate::{
    Body, BodyStream, Error, Request, Response, Result,
    call::{
        body_too_large, deadline_exceeded, panic_error, serve_call, shutdown_error,
        sleep_until_deadline,
    },
};

/// The calling side of the memory transport: finds the server by address on
/// every call, so a server restarted on the same address is reached again.
#[derive(Debug, Clone)]
pub(super) struct MemoryChannel {
    pub(super) network: Arc<Network>,
    pub(super) address: Arc<str>,
    /// The largest response body (or streamed response message) this side accepts.
    pub(super) max_body_size: usize,
}

impl tower::Service<Request> for MemoryChannel {
    type Response = Response;
    type Error = Error;
    type Future = BoxFuture<'static, Result<Response>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        self.clone().send(request).boxed()
    }
}

impl MemoryChannel {
    async fn send(self, mut request: Request) -> Result<Response> {
        let server = self
            .network
            .lookup(&self.address)
            .ok_or_else(|| unreachable(&self.address))?;
        let in_flight = server.begin_call(&self.address)?;
        request.body = limit_body(
            request.body,
            "request body",
            Limits {
                max_message_size: server.max_body_size,
                deadline: None,
                shutdown: None,
                _in_flight: None,
            },
        )?;
        let deadline = request.deadline;
        let mut response = serve_call(&server.handler, request, Some(&server.shutdown)).await?;
        response.body = limit_body(
            response.body,
            "response body",
            Limits {
                max_message_size: self.max_body_size,
                deadline,
                shutdown: Some(server.shutdown.clone()),
                _in_flight: Some(in_flight),
            },
        )?;
        Ok(response)
    }
}

/// The error of a call to an address nobody listens on.
pub(super) fn unreachable(address: &str) -> Error {
    Error::unavailable(format!("no memory server is listening on {address:?}"))
}

/// What a body passed between caller and handler is held to.
struct Limits {
    max_message_size: usize,
    /// A streamed body fails with `Timeout` once this passes.
    deadline: Option<Instant>,
    /// A streamed body fails with `Unavailable` once the server's grace period is over.
    shutdown: Option<CancellationToken>,
    /// Keeps the call counted in flight while its streamed body is alive.
    _in_flight: Option<TaskTrackerToken>,
}

/// Checks a unary body against the size limit now, or wraps a stream so that
/// each message is checked as it is pulled.
fn limit_body(body: Body, what: &'static str, limits: Limits) -> Result<Body> {
    match body {
        Body::Full(bytes) if bytes.len() > limits.max_message_size => {
            Err(body_too_large(what, bytes.len(), limits.max_message_size))
        }
        Body::Full(bytes) => Ok(Body::Full(bytes)),
        Body::Stream(stream) => Ok(Body::Stream(limit_stream(stream, what, limits))),
    }
}

/// Wraps a stream so that each message is held to `limits`, a panic while
/// producing one becomes an `Internal` error, and the first error ends it.
fn limit_stream(stream: BodyStream, what: &'static str, limits: Limits) -> BodyStream {
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
    limits: &Limits,
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
