//! gRPC with micro: tonic-generated clients that find their server through
//! the registry (feature `transport-grpc`).
//!
//! Over the [`GrpcTransport`] a micro service is a plain gRPC service (see
//! [`micro_transport::grpc`] for the wire format, mounted tonic services,
//! health and reflection). [`GrpcChannel`] is the other half: a
//! `tower::Service<http::Request<tonic::body::Body>>`, so any tonic-generated
//! client runs on it (`GreeterClient::new(channel)`), that for every call
//! looks the service up in the registry, picks a node with a [`Selector`],
//! and retries retryable failures (`UNAVAILABLE`, `ABORTED`, a connection
//! that failed) on another node, within the call's `grpc-timeout`.
//!
//! A call's request body is kept while it is sent, up to
//! [`GrpcChannelBuilder::replay_limit`] bytes, so that it can be sent again;
//! a longer client stream is not retried once it has started.
//!
//! ```no_run
//! use micro::{grpc::GrpcChannel, registry::memory::MemoryRegistry, transport::grpc::GrpcTransport};
//! use micro_interop::echo; // your own tonic-generated client here
//!
//! # async fn demo() -> micro::Result<()> {
//! let registry = MemoryRegistry::shared();
//! let transport = GrpcTransport::new();
//! let channel = GrpcChannel::builder("echo", registry).transport(&transport).build();
//! let mut client = echo::echo_client::EchoClient::new(channel);
//! let reply = client
//!     .unary(echo::EchoRequest { message: "hi".into(), ..Default::default() })
//!     .await
//!     .map_err(|status| micro::Error::new(micro::ErrorKind::from_grpc_code(status.code() as i32), status.message().to_owned()))?;
//! assert_eq!(reply.into_inner().message, "hi");
//! # Ok(())
//! # }
//! ```

mod replay;

use std::{
    convert::Infallible,
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use futures::{FutureExt, future::BoxFuture};
use http::{HeaderMap, HeaderValue, Uri, header::CONTENT_TYPE};
use tokio::time::Instant;
use tower::ServiceExt;

use self::replay::Replay;
use crate::{
    Error, ErrorKind, Result, Selector,
    client::{Backoff, Resend, RetryPolicy, Tried},
    registry::{CachingRegistry, DynRegistry, Node, Registry},
    service::NODE_TRANSPORT,
    transport::grpc::{GrpcHttpClient, GrpcTransport},
};

/// The most request body kept for a retry by default: 64 KiB.
pub const DEFAULT_REPLAY_LIMIT: usize = 64 * 1024;

/// A registry-resolving, load-balancing, retrying channel for tonic clients;
/// see the [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct GrpcChannel {
    inner: Arc<Inner>,
}

struct Inner {
    service: String,
    registry: CachingRegistry<DynRegistry>,
    selector: Selector,
    http: GrpcHttpClient,
    retries: u32,
    backoff: Backoff,
    replay_limit: usize,
}

impl GrpcChannel {
    /// A builder for a channel to the service registered as `service` in `registry`.
    pub fn builder(service: impl Into<String>, registry: impl Registry) -> GrpcChannelBuilder {
        GrpcChannelBuilder {
            service: service.into(),
            registry: Arc::new(registry),
            selector: Selector::default(),
            http: None,
            retries: 3,
            backoff: Backoff::default(),
            replay_limit: DEFAULT_REPLAY_LIMIT,
        }
    }

    /// The name of the service this channel calls.
    pub fn service(&self) -> &str {
        &self.inner.service
    }
}

impl fmt::Debug for GrpcChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcChannel")
            .field("service", &self.inner.service)
            .field("retries", &self.inner.retries)
            .finish_non_exhaustive()
    }
}

/// Builds a [`GrpcChannel`].
#[must_use]
pub struct GrpcChannelBuilder {
    service: String,
    registry: DynRegistry,
    selector: Selector,
    http: Option<GrpcHttpClient>,
    retries: u32,
    backoff: Backoff,
    replay_limit: usize,
}

impl GrpcChannelBuilder {
    /// Shares the connections of `transport` (default: a fresh gRPC transport's).
    pub fn transport(mut self, transport: &GrpcTransport) -> GrpcChannelBuilder {
        self.http = Some(transport.http_client());
        self
    }

    /// How a node is picked (default: random).
    pub fn selector(mut self, selector: Selector) -> GrpcChannelBuilder {
        self.selector = selector;
        self
    }

    /// How many times a retryable failure is retried (default: 3).
    pub fn retries(mut self, retries: u32) -> GrpcChannelBuilder {
        self.retries = retries;
        self
    }

    /// The pause between retries (default: micro's client backoff).
    pub fn backoff(mut self, backoff: Backoff) -> GrpcChannelBuilder {
        self.backoff = backoff;
        self
    }

    /// The most request body kept to send again on a retry (default:
    /// [`DEFAULT_REPLAY_LIMIT`]).
    pub fn replay_limit(mut self, bytes: usize) -> GrpcChannelBuilder {
        self.replay_limit = bytes;
        self
    }

    /// Builds the channel.
    pub fn build(self) -> GrpcChannel {
        GrpcChannel {
            inner: Arc::new(Inner {
                service: self.service,
                registry: CachingRegistry::new(self.registry),
                selector: self.selector,
                http: self
                    .http
                    .unwrap_or_else(|| GrpcTransport::new().http_client()),
                retries: self.retries,
                backoff: self.backoff,
                replay_limit: self.replay_limit,
            }),
        }
    }
}

impl fmt::Debug for GrpcChannelBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcChannelBuilder")
            .field("service", &self.service)
            .field("retries", &self.retries)
            .field("replay_limit", &self.replay_limit)
            .finish_non_exhaustive()
    }
}

type GrpcResponse = http::Response<tonic::body::Body>;

impl tower::Service<http::Request<tonic::body::Body>> for GrpcChannel {
    type Response = GrpcResponse;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<GrpcResponse, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let inner = self.inner.clone();
        // Failures become gRPC statuses, so the tonic client sees the code.
        async move {
            Ok(inner
                .call(request)
                .await
                .unwrap_or_else(|err| status_response(&err)))
        }
        .boxed()
    }
}

impl Inner {
    async fn call(&self, request: http::Request<tonic::body::Body>) -> Result<GrpcResponse> {
        let (parts, body) = request.into_parts();
        let deadline = deadline(&parts.headers);
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |path| path.as_str())
            .to_owned();
        let (path, tried) = (path.as_str(), &Tried::default());
        let send = tower::service_fn(move |attempt| self.attempt(path, tried, attempt));
        let first = GrpcTry {
            method: parts.method,
            version: parts.version,
            headers: parts.headers,
            replay: Arc::new(Replay::new(body, self.replay_limit)),
        };
        let policy = RetryPolicy::new(self.retries, self.backoff).until(deadline);
        tower::retry::Retry::new(policy, send).oneshot(first).await
    }

    /// One try on a node, preferring one that has not failed this call.
    async fn attempt(&self, path: &str, tried: &Tried, attempt: GrpcTry) -> Result<GrpcResponse> {
        // A copy: the lookup awaits, and the list is shared with no lock held.
        let tried_so_far = tried.lock().clone();
        let node = self.pick(&tried_so_far).await?;
        let scheme = match node.metadata.get(crate::service::NODE_TLS) {
            Some("true") => "https",
            _ => "http",
        };
        let uri: Uri = format!("{scheme}://{}{path}", node.address)
            .parse()
            .map_err(|err| {
                Error::invalid_argument(format!("node address {:?} is not host:port", node.address))
                    .with_source(err)
            })?;
        let mut request = http::Request::new(tonic::body::Body::new(attempt.replay.handle()));
        *request.method_mut() = attempt.method;
        *request.uri_mut() = uri;
        *request.version_mut() = attempt.version;
        *request.headers_mut() = attempt.headers;
        let failure = match self.http.send(request).await {
            Ok(response) => match retryable_status(response.headers()) {
                Some(kind) => Error::new(kind, "the node answered with a retryable status"),
                None => return Ok(response),
            },
            Err(err) => err,
        };
        tracing::debug!(service = %self.service, node = %node.id, error = %failure, "gRPC try failed");
        tried.add(&node.id);
        Err(failure)
    }

    /// A node of the service reachable over gRPC, preferring untried ones.
    async fn pick(&self, tried: &[String]) -> Result<Node> {
        let services = self
            .registry
            .get_service_shared(&self.service)
            .await
            .map_err(|err| err.context(format!("looking up service {:?}", self.service)))?;
        let grpc = |node: &Node| {
            node.metadata
                .get(NODE_TRANSPORT)
                .is_none_or(|t| t == "grpc")
        };
        self.selector
            .pick(&self.service, &services, tried, grpc)
            .cloned()
    }
}

/// What one try of a gRPC call sends; a retry sends it again, replaying
/// the body kept so far.
struct GrpcTry {
    method: http::Method,
    version: http::Version,
    headers: HeaderMap,
    replay: Arc<Replay>,
}

impl Resend for GrpcTry {
    fn resend(&self) -> Option<GrpcTry> {
        self.replay.can_replay().then(|| GrpcTry {
            method: self.method.clone(),
            version: self.version,
            headers: self.headers.clone(),
            replay: Arc::clone(&self.replay),
        })
    }
}

/// The kind of a trailers-only response's retryable status, if it is one.
fn retryable_status(headers: &HeaderMap) -> Option<ErrorKind> {
    let code: i32 = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    let kind = ErrorKind::from_grpc_code(code);
    (code != 0 && kind.is_retryable()).then_some(kind)
}

/// The call's deadline from its `grpc-timeout`, which tonic sets from
/// `Request::set_timeout`.
fn deadline(headers: &HeaderMap) -> Option<Instant> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    Instant::now().checked_add(crate::transport::grpc::parse_timeout(value).ok()?)
}

/// A trailers-only gRPC response carrying `error`'s code and message.
fn status_response(error: &Error) -> GrpcResponse {
    let mut response = http::Response::new(tonic::body::Body::empty());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(error.kind().grpc_code()));
    let message: String = error
        .to_string()
        .bytes()
        .map(|b| {
            if (0x20..=0x7e).contains(&b) && b != b'%' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    if let Ok(value) = HeaderValue::from_str(&message) {
        headers.insert("grpc-message", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timeouts_become_deadlines() {
        let mut headers = HeaderMap::new();
        assert!(deadline(&headers).is_none());
        headers.insert("grpc-timeout", HeaderValue::from_static("5S"));
        let left = deadline(&headers).unwrap() - Instant::now();
        assert!(left <= Duration::from_secs(5) && left > Duration::from_secs(1));
        headers.insert("grpc-timeout", HeaderValue::from_static("5x"));
        assert!(deadline(&headers).is_none());
    }

    #[test]
    fn only_retryable_codes_are_retried() {
        let mut headers = HeaderMap::new();
        assert_eq!(retryable_status(&headers), None);
        headers.insert("grpc-status", HeaderValue::from_static("14"));
        assert_eq!(retryable_status(&headers), Some(ErrorKind::Unavailable));
        headers.insert("grpc-status", HeaderValue::from_static("5"));
        assert_eq!(retryable_status(&headers), None);
        headers.insert("grpc-status", HeaderValue::from_static("0"));
        assert_eq!(retryable_status(&headers), None);
    }

    #[test]
    fn failures_become_statuses() {
        let response = status_response(&Error::not_found("no service \"x\" 100%"));
        assert_eq!(response.headers()["grpc-status"], "5");
        assert!(
            response.headers()["grpc-message"]
                .to_str()
                .unwrap()
                .contains("100%25")
        );
    }
}
