use std::{
    sync::Arc,
    task::{Context, Poll},
};

use ::http::{
    HeaderValue, Uri,
    header::{CONTENT_TYPE, InvalidHeaderValue},
    uri::{Authority, PathAndQuery, Scheme},
};
use bytes::Bytes;
use futures::{FutureExt, StreamExt, future::BoxFuture};
use http_body::Body as _;
use http_body_util::{BodyExt, Limited};
use hyper_util::client::legacy::Client;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{
    stream::{self, HttpBody, ReadError},
    wire::{
        BODY, SERVICE, STREAM, TIMEOUT, content_type_value, error_from_response, format_timeout,
        is_stream, metadata_from_headers, metadata_into_headers,
    },
};
use crate::{
    Body, Error, Request, Response, Result,
    call::{StreamLimits, body_too_large, deadline_exceeded, limit_stream},
};

/// The pooled hyper client every channel of one transport shares.
pub(super) type PooledClient = Client<crate::connector::Connector, HttpBody>;

/// The calling side of the HTTP transport: `POST http://{address}/{endpoint}`
/// over the transport's connection pool. Cloned for every call, so it is one
/// shared pointer.
#[derive(Debug, Clone)]
pub(super) struct HttpChannel {
    inner: Arc<ChannelInner>,
}

#[derive(Debug)]
struct ChannelInner {
    client: PooledClient,
    /// `http://{address}`, without a trailing slash, for error messages.
    base: String,
    /// The address, parsed once; every call's URI is built from it.
    authority: Authority,
    /// `http` or `https`.
    scheme: Scheme,
    /// The largest request body this side sends and response body it reads.
    max_body_size: usize,
}

impl HttpChannel {
    /// A channel to `authority` (`host:port`), whose URL is `base`.
    pub(super) fn new(
        client: PooledClient,
        base: String,
        authority: Authority,
        tls: bool,
        max_body_size: usize,
    ) -> HttpChannel {
        HttpChannel {
            inner: Arc::new(ChannelInner {
                client,
                base,
                authority,
                scheme: if tls { Scheme::HTTPS } else { Scheme::HTTP },
                max_body_size,
            }),
        }
    }
}

impl tower::Service<Request> for HttpChannel {
    type Response = Response;
    type Error = Error;
    type Future = BoxFuture<'static, Result<Response>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        self.inner.clone().send(request).boxed()
    }
}

impl ChannelInner {
    /// Sends `request`, giving up with `Timeout` when its deadline passes:
    /// the calling side's one deadline race.
    async fn send(self: Arc<Self>, request: Request) -> Result<Response> {
        match request.deadline {
            Some(deadline) => crate::deadline::within(deadline, self.exchange(request))
                .await
                .unwrap_or_else(|| Err(deadline_exceeded())),
            None => self.exchange(request).await,
        }
    }

    async fn exchange(&self, request: Request) -> Result<Response> {
        let deadline = request.deadline;
        // A streamed request goes on only while the caller waits: until the
        // whole answer is back, or for as long as it reads a streamed answer.
        // Dropping this guard (the call abandoned, a unary answer read, the
        // answer stream dropped) ends the request stream.
        let cancel = CancellationToken::new();
        let guard = cancel.clone().drop_guard();
        let http_request = self.encode(request, cancel)?;
        let response = self.client.request(http_request).await.map_err(|err| {
            Error::unavailable(format!("calling {} failed", self.base)).with_source(err)
        })?;
        let (parts, body) = response.into_parts();
        let body = if parts.status.is_success() && is_stream(&parts.headers) {
            let messages =
                stream::decode(body, self.max_body_size, "response").map(move |message| {
                    let _request_goes_on = &guard;
                    message
                });
            Body::Stream(limit_stream(
                messages.boxed(),
                "response",
                StreamLimits {
                    max_message_size: self.max_body_size,
                    deadline,
                    shutdown: None,
                    _in_flight: None,
                },
            ))
        } else if parts.status.is_success() {
            Body::Full(self.read_body(body).await?)
        } else {
            return Err(error_from_response(
                parts.status,
                &read_error_body(body).await,
            ));
        };
        let content_type = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Ok(Response {
            content_type,
            metadata: metadata_from_headers(&parts.headers),
            body,
        })
    }

    /// Builds the HTTP request for a call, refusing what cannot be sent.
    fn encode(
        &self,
        request: Request,
        cancel: CancellationToken,
    ) -> Result<::http::Request<HttpBody>> {
        let uri = self.uri(&request.endpoint)?;
        let streamed = request.body.is_stream();
        let body = match request.body {
            Body::Full(bytes) if bytes.len() > self.max_body_size => {
                return Err(body_too_large(
                    "request body",
                    bytes.len(),
                    self.max_body_size,
                ));
            }
            Body::Full(bytes) => stream::full(bytes),
            // Checking messages here as well as on the server means an
            // oversized one is never sent: the server learns of it from an
            // error frame and answers while the connection is still usable.
            Body::Stream(messages) => stream::encode(limit_stream(
                stream::until_cancelled(messages, cancel),
                "request",
                StreamLimits {
                    max_message_size: self.max_body_size,
                    deadline: None,
                    shutdown: None,
                    _in_flight: None,
                },
            )),
        };
        let mut http_request = ::http::Request::post(uri).body(body).map_err(|err| {
            Error::invalid_argument("building the http request failed").with_source(err)
        })?;
        let headers = http_request.headers_mut();
        metadata_into_headers(&request.metadata, headers)?;
        let content_type = content_type_value(&request.content_type)
            .map_err(|err| invalid_header_value("content type", &request.content_type, err))?;
        headers.insert(CONTENT_TYPE, content_type);
        if streamed {
            headers.insert(BODY, HeaderValue::from_static(STREAM));
        }
        if !request.service.is_empty() {
            headers.insert(SERVICE, header_value("service name", &request.service)?);
        }
        if let Some(deadline) = request.deadline {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(deadline_exceeded());
            }
            // Handing the formatted text over saves copying it.
            let timeout = HeaderValue::from_maybe_shared(Bytes::from(format_timeout(remaining)))
                .map_err(|err| {
                    Error::internal("a formatted timeout is not a header value").with_source(err)
                })?;
            headers.insert(TIMEOUT, timeout);
        }
        Ok(http_request)
    }

    /// `http://{address}/{endpoint}`, from the parsed address and a path
    /// checked here, so that no whole URL is parsed per call.
    fn uri(&self, endpoint: &str) -> Result<Uri> {
        let invalid = || {
            Error::invalid_argument(format!(
                "endpoint {endpoint:?} cannot be a URL path segment"
            ))
        };
        if endpoint.is_empty() || endpoint.contains(['/', '?', '#', '%']) {
            return Err(invalid());
        }
        let mut path = String::with_capacity(endpoint.len() + 1);
        path.push('/');
        path.push_str(endpoint);
        let path = PathAndQuery::from_maybe_shared(Bytes::from(path))
            .map_err(|err| invalid().with_source(err))?;
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|err| invalid().with_source(err))
    }

    /// Reads a response body, refusing one over the limit without reading it
    /// when its length is declared, and as soon as it passes the limit otherwise.
    async fn read_body(&self, body: hyper::body::Incoming) -> Result<Bytes> {
        let max = self.max_body_size;
        let declared = body.size_hint().lower();
        if declared > max as u64 {
            return Err(body_too_large("response body", declared, max));
        }
        match stream::read_full(body, max).await {
            Ok(bytes) => Ok(bytes),
            Err(ReadError::TooLarge) => Err(body_too_large(
                "response body",
                format!("more than {max}"),
                max,
            )),
            Err(ReadError::Failed(err)) => Err(Error::unavailable(format!(
                "reading the response from {} failed",
                self.base
            ))
            .with_source(err)),
        }
    }
}

/// The most of an error response's body read: enough for any micro error,
/// and a bound on what a foreign server's error page can make this side buffer.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// An error response's body, or nothing when it is too large or unreadable:
/// the status alone then says what went wrong.
async fn read_error_body(body: hyper::body::Incoming) -> Bytes {
    if body.size_hint().lower() > MAX_ERROR_BODY as u64 {
        return Bytes::new();
    }
    match Limited::new(body, MAX_ERROR_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            tracing::debug!(error = %err, "could not read an error response's body");
            Bytes::new()
        }
    }
}

fn header_value(what: &str, value: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(value).map_err(|err| invalid_header_value(what, value, err))
}

fn invalid_header_value(what: &str, value: &str, err: InvalidHeaderValue) -> Error {
    Error::invalid_argument(format!(
        "the {what} {value:?} is not a valid HTTP header value"
    ))
    .with_source(err)
}
