use std::{collections::HashMap, convert::Infallible, sync::Arc, time::Duration};

use ::http::{HeaderMap, HeaderValue, Method, StatusCode, header::CONTENT_TYPE};
use futures::future::BoxFuture;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::oneshot, time::Instant};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::{
    Compression, MountedService,
    compression::{ACCEPTED, GRPC_ACCEPT_ENCODING},
    frame::{Decoder, OutBody, prepend},
    wire::{self, BODY, SERVICE, STREAM},
};
use crate::{
    Body, Error, Handler, Listener, Request, Result,
    call::{DeadlineTimer, StreamLimits, body_too_large, guard_call, limit_stream},
    listen::{
        Admitted, CallGuard, ConnectionLimits, ListenerTls, PeerSubject, TrackedBody,
        accept_until_stopped,
    },
};

/// How long connections get, once the grace period is over and the calls
/// still running are cancelled, to send those calls their final status.
const FLUSH_AFTER_CANCEL: Duration = Duration::from_secs(1);

/// What every request of one server shares.
pub(super) struct ServerState {
    pub(super) handler: Handler,
    pub(super) max_message_size: usize,
    /// The transport's package, which a path may carry in front of an endpoint.
    pub(super) package: String,
    /// How answers are compressed for callers that accept it.
    pub(super) compression: Compression,
    /// tonic services served beside the handler, by full gRPC service name.
    pub(super) mounted: Arc<HashMap<String, MountedService>>,
    /// Cancelled when the grace period of a shutdown is over.
    pub(super) cancel: CancellationToken,
    /// What the server allows its connections.
    pub(super) limits: ConnectionLimits,
    /// TLS, when the transport has a certificate.
    pub(super) tls: ListenerTls,
}

/// Binds `address` and serves on it until the returned listener is shut down.
/// `on_stop` runs when shutdown begins, before the drain (health goes NOT_SERVING).
pub(super) async fn listen(
    address: &str,
    state: ServerState,
    on_stop: impl FnOnce() -> BoxFuture<'static, ()> + Send + 'static,
) -> Result<Listener> {
    let bind_to = bind_address(address);
    let listener = TcpListener::bind(&bind_to)
        .await
        .map_err(|err| Error::from(err).context(format!("binding {bind_to}")))?;
    let local = listener
        .local_addr()
        .map_err(|err| Error::from(err).context("reading the bound address"))?;
    tracing::debug!(address = %local, "grpc server listening");
    let (stop, stopped) = oneshot::channel();
    let speaks_tls = state.tls.is_enabled();
    let server = tokio::spawn(serve(listener, Arc::new(state), stopped));
    Ok(Listener::new(local.to_string(), move |grace| {
        Box::pin(async move {
            on_stop().await;
            let _ = stop.send(grace);
            server
                .await
                .map_err(|err| Error::internal("the grpc server task failed").with_source(err))
        })
    })
    .with_tls(speaks_tls))
}

/// Where to bind: `""` is a free loopback port, `:50051` is every interface.
fn bind_address(address: &str) -> String {
    let address = address.trim();
    let address = address
        .strip_prefix("grpc://")
        .or_else(|| address.strip_prefix("http://"))
        .unwrap_or(address);
    if address.is_empty() {
        "127.0.0.1:0".to_owned()
    } else if address.starts_with(':') {
        format!("0.0.0.0{address}")
    } else {
        address.to_owned()
    }
}

/// Accepts connections until told to stop, then drains them for the grace
/// period, cancels what is left and closes them.
async fn serve(
    listener: TcpListener,
    state: Arc<ServerState>,
    mut stop: oneshot::Receiver<Duration>,
) {
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder.timer(TokioTimer::new());
    let limits = state.limits.clone();
    // Closing the socket on return makes new connections fail at once;
    // GOAWAY (sent by the graceful shutdown) refuses new calls on open ones.
    let mut draining = accept_until_stopped(listener, &limits, &mut stop, |admitted| {
        serve_connection(admitted, builder.clone(), state.clone())
    })
    .await;
    let grace = draining.grace();
    {
        let drained = draining.drain();
        tokio::pin!(drained);
        if tokio::time::timeout(grace, &mut drained).await.is_err() {
            tracing::debug!("grpc server grace period over; cancelling the calls in flight");
            // Calls still running end with Unavailable, sent as their status.
            state.cancel.cancel();
            let _ = tokio::time::timeout(FLUSH_AFTER_CANCEL, &mut drained).await;
        }
    }
    state.cancel.cancel();
    draining.close().await;
    tracing::debug!("grpc server stopped");
}

/// Serves one HTTP/2 connection until it closes, misses a deadline, or a
/// graceful shutdown closes it.
async fn serve_connection(
    admitted: Admitted,
    builder: hyper::server::conn::http2::Builder<TokioExecutor>,
    state: Arc<ServerState>,
) {
    let limits = state.limits.clone();
    let Some((io, opened)) = admitted.open(&state.tls, &limits).await else {
        return;
    };
    let service = hyper::service::service_fn({
        let (activity, subject) = (opened.activity.clone(), opened.subject.clone());
        move |request| handle(state.clone(), request, activity.begin(), subject.clone())
    });
    let connection = builder.serve_connection(TokioIo::new(io), service);
    let ended = opened
        .run(
            connection,
            |connection| connection.graceful_shutdown(),
            &limits,
        )
        .await;
    if let Some(Err(err)) = ended {
        tracing::debug!(peer = %opened.peer, error = %err, "grpc connection ended with an error");
    }
}

type GrpcResponse = ::http::Response<tonic::body::Body>;

/// Answers one HTTP/2 request, counted as a call in flight until its
/// response body has been sent.
async fn handle(
    state: Arc<ServerState>,
    mut request: ::http::Request<Incoming>,
    call: CallGuard,
    subject: Option<PeerSubject>,
) -> Result<::http::Response<TrackedBody<tonic::body::Body>>, Infallible> {
    if let Some(subject) = subject {
        request.extensions_mut().insert(subject);
    }
    let Ok(response) = respond(state, request).await;
    Ok(response.map(|body| TrackedBody::new(body, call)))
}

/// Answers one HTTP/2 request: a mounted tonic service's, or a micro call.
/// Every failure becomes a gRPC status, so a connection never fails because
/// of what a request contained.
async fn respond(
    state: Arc<ServerState>,
    request: ::http::Request<Incoming>,
) -> Result<GrpcResponse, Infallible> {
    let (service, method) = match wire::split_path(request.uri().path()) {
        Ok(route) => route,
        Err(err) => return Ok(status_response(&err)),
    };
    if let Some(mounted) = state.mounted.get(service) {
        let mounted = mounted.clone();
        let request = request.map(tonic::body::Body::new);
        return mounted.oneshot(request).await;
    }
    if request.method() != Method::POST {
        return Ok(status_response(&Error::unimplemented(
            "gRPC calls are POST requests",
        )));
    }
    let Some(content_type) = wire::micro_content_type(request.headers()) else {
        // gRPC asks for HTTP 415 when the content type is not gRPC's.
        let mut response = ::http::Response::new(tonic::body::Body::empty());
        *response.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        return Ok(response);
    };
    let Some(endpoint) = route(&state, service, method) else {
        return Ok(status_response(&Error::unimplemented(format!(
            "unknown endpoint {service}.{method} (gRPC method /{service}/{method})"
        ))));
    };
    let encodings = match Encodings::negotiate(&state, request.headers()) {
        Ok(encodings) => encodings,
        Err(err) => return Ok(status_response(&err)),
    };
    Ok(
        match answer(&state, request, endpoint, content_type, encodings).await {
            Ok(response) => response,
            Err(err) => status_response(&err),
        },
    )
}

/// The endpoint a call of `/{service}/{method}` goes to. A handler that
/// declares its endpoints gets the first of these it serves: the full name
/// (`pkg.v1.Greeter.Hello`), the name without the transport's own package,
/// the short name (`Greeter.Hello`); `None` when it serves none. Other
/// handlers get the short name.
fn route(state: &ServerState, service: &str, method: &str) -> Option<String> {
    let endpoint = |service: &str| {
        let mut endpoint = String::with_capacity(service.len() + method.len() + 1);
        endpoint.push_str(service);
        endpoint.push('.');
        endpoint.push_str(method);
        endpoint
    };
    let short = endpoint(service.rsplit('.').next().unwrap_or(service));
    let Some(endpoints) = state.handler.endpoints() else {
        return Some(short);
    };
    let unpackaged = service
        .strip_prefix(state.package.as_str())
        .filter(|_| !state.package.is_empty())
        .and_then(|rest| rest.strip_prefix('.'));
    [Some(service), unpackaged]
        .into_iter()
        .flatten()
        .map(endpoint)
        .chain([short])
        .find(|candidate| endpoints.contains(candidate))
}

/// How a call's messages are compressed each way.
#[derive(Debug, Clone, Copy)]
struct Encodings {
    request: Compression,
    response: Compression,
}

impl Encodings {
    /// The request's `grpc-encoding` (one micro cannot read is
    /// `Unimplemented`), and for the answer: gzip for a gzip request (as
    /// grpc-go does), else the server's own compression when the caller
    /// accepts it, else none.
    fn negotiate(state: &ServerState, headers: &HeaderMap) -> Result<Encodings> {
        let request = Compression::of_headers(headers)?;
        let response = if request != Compression::Identity {
            request
        } else if state.compression.accepted_by(headers) {
            state.compression
        } else {
            Compression::Identity
        };
        Ok(Encodings { request, response })
    }
}

async fn answer(
    state: &ServerState,
    request: ::http::Request<Incoming>,
    endpoint: String,
    content_type: String,
    encodings: Encodings,
) -> Result<GrpcResponse> {
    let (parts, body) = request.into_parts();
    let deadline = deadline(&parts.headers)?;
    let service = parts
        .headers
        .get(SERVICE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut metadata = crate::Metadata::new();
    wire::metadata_from_headers(&mut metadata, &parts.headers);
    if let Some(PeerSubject(subject)) = parts.extensions.get() {
        metadata.insert(crate::PEER_SUBJECT, subject.clone());
    }
    let streamed = wire::is_stream(&parts.headers);
    let max = state.max_message_size;
    let call = async move {
        let decoder = Decoder::new(body, max, "request").with_compression(encodings.request);
        let body = if streamed {
            Body::Stream(decoder.into_stream())
        } else {
            request_body(decoder).await?
        };
        let request = Request {
            service,
            endpoint,
            content_type,
            metadata,
            deadline,
            body,
        };
        state.handler.call_once(request).await
    };
    let response = guard_call(deadline, Some(&state.cancel), DeadlineTimer::Shared, call).await?;
    let streamed = response.body.is_stream();
    let body = match response.body {
        Body::Full(bytes) if bytes.len() > max => {
            return Err(body_too_large("gRPC response message", bytes.len(), max));
        }
        Body::Full(bytes) => Body::Full(bytes),
        Body::Stream(messages) => Body::Stream(limit_stream(
            messages,
            "response",
            StreamLimits {
                max_message_size: max,
                deadline,
                shutdown: Some(state.cancel.clone()),
                _in_flight: None,
            },
        )),
    };
    let mut answer = ::http::Response::new(tonic::body::Body::new(OutBody::response(
        body,
        max,
        encodings.response,
    )));
    let headers = answer.headers_mut();
    encodings.response.insert_into(headers);
    headers.insert(GRPC_ACCEPT_ENCODING, ACCEPTED);
    wire::metadata_into_headers(&response.metadata, headers)
        .map_err(|err| err.context("the handler's response metadata"))?;
    wire::insert_content_type(headers, &response.content_type)?;
    if streamed {
        headers.insert(BODY, HeaderValue::from_static(STREAM));
    }
    Ok(answer)
}

/// The body of a request not marked as a stream (a foreign client's call):
/// one message is a unary body; two or more (or none) are a stream, for
/// client-streaming methods.
async fn request_body(mut decoder: Decoder<Incoming>) -> Result<Body> {
    let Some(first) = decoder.next_message().await? else {
        return Ok(Body::stream(futures::stream::empty()));
    };
    match decoder.next_message().await? {
        None => Ok(Body::Full(first)),
        Some(second) => Ok(Body::Stream(prepend(vec![first, second], decoder))),
    }
}

/// The deadline the caller's `grpc-timeout` asks for, if any.
fn deadline(headers: &HeaderMap) -> Result<Option<Instant>> {
    let Some(timeout) = headers.get(wire::GRPC_TIMEOUT) else {
        return Ok(None);
    };
    let timeout = timeout
        .to_str()
        .map_err(|_| Error::invalid_argument("grpc-timeout is not visible ASCII"))?;
    let timeout = wire::parse_timeout(timeout)?;
    Ok(Instant::now().checked_add(timeout))
}

/// A trailers-only response: the status in the headers and no body. It says
/// which encodings are read, as gRPC asks of an `UNIMPLEMENTED` for an
/// unsupported `grpc-encoding`.
pub(super) fn status_response(error: &Error) -> GrpcResponse {
    let mut response = ::http::Response::new(tonic::body::Body::empty());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(wire::GRPC));
    headers.insert(GRPC_ACCEPT_ENCODING, ACCEPTED);
    wire::insert_status(headers, error);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_addresses_default_to_loopback() {
        assert_eq!(bind_address(""), "127.0.0.1:0");
        assert_eq!(bind_address(":50051"), "0.0.0.0:50051");
        assert_eq!(bind_address("grpc://127.0.0.1:9"), "127.0.0.1:9");
    }
}
