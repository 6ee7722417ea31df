use std::{
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
};

use ::http::{
    HeaderValue, Uri,
    header::{CONTENT_TYPE, TE},
    uri::{Authority, PathAndQuery, Scheme},
};
use bytes::Bytes;
use futures::{FutureExt, StreamExt, future::BoxFuture};
use hyper_util::client::legacy::Client;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{
    Compression,
    compression::{ACCEPTED, GRPC_ACCEPT_ENCODING},
    frame::{Decoder, ErrorSlot, OutBody, check_trailers, response_stream},
    wire::{self, BODY, SERVICE, STREAM},
};
use crate::{
    Body, BodyStream, Error, Metadata, Request, Response, Result,
    call::{StreamLimits, body_too_large, deadline_exceeded, limit_stream},
};

/// The pooled HTTP/2 client every channel of one transport shares: one
/// multiplexed connection per address.
pub(super) type PooledClient = Client<crate::connector::Connector, tonic::body::Body>;

/// The calling side of the gRPC transport: micro requests as gRPC calls to
/// one address. Cloned for every call, so it is one shared pointer.
#[derive(Debug, Clone)]
pub(super) struct GrpcChannel {
    inner: Arc<ChannelInner>,
}

#[derive(Debug)]
struct ChannelInner {
    client: PooledClient,
    authority: Authority,
    /// `http`, or `https` over TLS.
    scheme: Scheme,
    package: String,
    max_message_size: usize,
    /// How requests are compressed.
    compression: Compression,
}

impl GrpcChannel {
    pub(super) fn new(
        client: PooledClient,
        authority: Authority,
        tls: bool,
        package: String,
        max_message_size: usize,
        compression: Compression,
    ) -> GrpcChannel {
        GrpcChannel {
            inner: Arc::new(ChannelInner {
                client,
                authority,
                scheme: if tls { Scheme::HTTPS } else { Scheme::HTTP },
                package,
                max_message_size,
                compression,
            }),
        }
    }
}

impl tower::Service<Request> for GrpcChannel {
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
    /// Sends `request`, giving up with `Timeout` when its deadline passes
    /// before the response (or, for a unary one, its message) has arrived.
    async fn send(self: Arc<Self>, request: Request) -> Result<Response> {
        let slot: ErrorSlot = Arc::new(Mutex::new(None));
        // Held until the caller is done with the call: with the response
        // for a unary reply, inside the response stream for a streamed one.
        let done = CancellationToken::new().drop_guard();
        let outcome = match request.deadline {
            Some(deadline) => {
                crate::deadline::within(deadline, self.exchange(request, &slot, done))
                    .await
                    .unwrap_or_else(|| Err(deadline_exceeded()))
            }
            None => self.exchange(request, &slot, done).await,
        };
        // A request stream that failed on this side reset the call: its
        // error, not the reset the server saw, is what the caller gets.
        outcome.map_err(|err| take(&slot).unwrap_or(err))
    }

    async fn exchange(
        &self,
        request: Request,
        slot: &ErrorSlot,
        done: DropGuard,
    ) -> Result<Response> {
        let deadline = request.deadline;
        let http_request = self.encode(request, slot, &done)?;
        let response = self.client.request(http_request).await.map_err(|err| {
            Error::unavailable(format!("calling grpc://{} failed", self.authority)).with_source(err)
        })?;
        let (parts, body) = response.into_parts();
        if parts.status != ::http::StatusCode::OK {
            return Err(wire::error_from_http_status(parts.status));
        }
        let content_type = wire::micro_content_type(&parts.headers).ok_or_else(|| {
            Error::new(
                crate::ErrorKind::Unknown,
                "the server answered with a content type that is not gRPC",
            )
        })?;
        // A trailers-only response: the status is in the headers, no message follows.
        if wire::status_of(&parts.headers)? {
            return Ok(Response {
                content_type,
                metadata: metadata_of(&parts.headers, None),
                body: Body::stream(futures::stream::empty()),
            });
        }
        // An encoding micro cannot read is the server's fault, not the caller's.
        let encoding = Compression::of_headers(&parts.headers)
            .map_err(|err| Error::internal(err.message().to_owned()))?;
        let mut decoder =
            Decoder::new(body, self.max_message_size, "response").with_compression(encoding);
        if wire::is_stream(&parts.headers) {
            return Ok(Response {
                content_type,
                metadata: metadata_of(&parts.headers, None),
                body: Body::Stream(self.limit(
                    response_stream(Vec::new(), decoder),
                    deadline,
                    slot,
                    done,
                )),
            });
        }
        // Not marked as a stream (a foreign server): one message is a unary
        // reply, more are a server stream.
        let first = decoder.next_message().await?;
        let second = match first {
            Some(_) => decoder.next_message().await?,
            None => None,
        };
        let body = match (first, second) {
            (Some(first), None) => {
                check_trailers(decoder.trailers())?;
                let metadata = metadata_of(&parts.headers, decoder.trailers());
                return Ok(Response {
                    content_type,
                    metadata,
                    body: Body::Full(first),
                });
            }
            (None, _) => {
                check_trailers(decoder.trailers())?;
                Body::stream(futures::stream::empty())
            }
            (Some(first), Some(second)) => Body::Stream(self.limit(
                response_stream(vec![first, second], decoder),
                deadline,
                slot,
                done,
            )),
        };
        Ok(Response {
            content_type,
            metadata: metadata_of(&parts.headers, None),
            body,
        })
    }

    /// Holds a response stream to the deadline, and reports a failed request
    /// stream's own error rather than the reset it caused.
    fn limit(
        &self,
        stream: BodyStream,
        deadline: Option<Instant>,
        slot: &ErrorSlot,
        done: DropGuard,
    ) -> BodyStream {
        let slot = slot.clone();
        let limited = limit_stream(
            stream,
            "response",
            StreamLimits {
                max_message_size: self.max_message_size,
                deadline,
                shutdown: None,
                _in_flight: None,
            },
        );
        limited
            .map(move |item| {
                let _held_while_streaming = &done;
                item.map_err(|err| take(&slot).unwrap_or(err))
            })
            .boxed()
    }

    /// Builds the HTTP/2 request for a call, refusing what cannot be sent.
    fn encode(
        &self,
        request: Request,
        slot: &ErrorSlot,
        done: &DropGuard,
    ) -> Result<::http::Request<tonic::body::Body>> {
        let path = wire::path_of(&self.package, &request.endpoint)?;
        let uri = self.uri(path)?;
        let streamed = request.body.is_stream();
        if let Body::Full(bytes) = &request.body
            && bytes.len() > self.max_message_size
        {
            return Err(body_too_large(
                "gRPC request message",
                bytes.len(),
                self.max_message_size,
            ));
        }
        let body = match request.body {
            Body::Full(bytes) => Body::Full(bytes),
            Body::Stream(messages) => Body::Stream(limit_stream(
                messages,
                "request",
                StreamLimits {
                    max_message_size: self.max_message_size,
                    deadline: None,
                    shutdown: None,
                    _in_flight: None,
                },
            )),
        };
        let body = OutBody::request(
            body,
            slot.clone(),
            self.max_message_size,
            self.compression,
            done.token().clone(),
        );
        let mut http_request = ::http::Request::post(uri)
            .body(tonic::body::Body::new(body))
            .map_err(|err| {
                Error::invalid_argument("building the gRPC request failed").with_source(err)
            })?;
        *http_request.version_mut() = ::http::Version::HTTP_2;
        let headers = http_request.headers_mut();
        wire::metadata_into_headers(&request.metadata, headers)?;
        wire::insert_content_type(headers, &request.content_type)?;
        headers.insert(TE, HeaderValue::from_static("trailers"));
        self.compression.insert_into(headers);
        headers.insert(GRPC_ACCEPT_ENCODING, ACCEPTED);
        if streamed {
            headers.insert(BODY, HeaderValue::from_static(STREAM));
        }
        if !request.service.is_empty() {
            let service = HeaderValue::from_str(&request.service).map_err(|err| {
                Error::invalid_argument(format!(
                    "the service name {:?} is not a valid header value",
                    request.service
                ))
                .with_source(err)
            })?;
            headers.insert(SERVICE, service);
        }
        if let Some(deadline) = request.deadline {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(deadline_exceeded());
            }
            headers.insert(wire::GRPC_TIMEOUT, wire::format_timeout(remaining));
        }
        debug_assert!(headers.contains_key(CONTENT_TYPE));
        Ok(http_request)
    }

    fn uri(&self, path: String) -> Result<Uri> {
        let path = PathAndQuery::from_maybe_shared(Bytes::from(path)).map_err(|err| {
            Error::invalid_argument("the endpoint is not a valid gRPC path").with_source(err)
        })?;
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|err| Error::invalid_argument("building the gRPC URI failed").with_source(err))
    }
}

fn take(slot: &ErrorSlot) -> Option<Error> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
}

fn metadata_of(headers: &::http::HeaderMap, trailers: Option<&::http::HeaderMap>) -> Metadata {
    let mut metadata = Metadata::new();
    wire::metadata_from_headers(&mut metadata, headers);
    if let Some(trailers) = trailers {
        wire::metadata_from_headers(&mut metadata, trailers);
    }
    metadata
}
