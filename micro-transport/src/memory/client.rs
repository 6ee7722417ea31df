use std::{
    sync::Arc,
    task::{Context, Poll},
};

use futures::{FutureExt, future::BoxFuture};

use super::server::Network;
use crate::{
    Body, Error, Request, Response, Result,
    call::{StreamLimits, body_too_large, limit_stream, serve_call},
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
            StreamLimits {
                max_message_size: server.max_body_size,
                deadline: None,
                shutdown: None,
                _in_flight: None,
            },
        )?;
        // As over a network: per-hop keys (`micro-peer-subject` among them)
        // are the serving transport's to set, never the caller's.
        request.metadata = request
            .metadata
            .iter()
            .filter(|(key, _)| !crate::is_per_hop(&key.to_ascii_lowercase()))
            .collect();
        let deadline = request.deadline;
        let mut response = serve_call(&server.handler, request, Some(&server.shutdown)).await?;
        response.body = limit_body(
            response.body,
            "response body",
            StreamLimits {
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

/// Checks a unary body against the size limit now, or wraps a stream so that
/// each message is checked as it is pulled.
fn limit_body(body: Body, what: &'static str, limits: StreamLimits) -> Result<Body> {
    match body {
        Body::Full(bytes) if bytes.len() > limits.max_message_size => {
            Err(body_too_large(what, bytes.len(), limits.max_message_size))
        }
        Body::Full(bytes) => Ok(Body::Full(bytes)),
        Body::Stream(stream) => Ok(Body::Stream(limit_stream(stream, what, limits))),
    }
}
