//! The calling side of streaming: the [`CallBuilder`] methods that open
//! streams, and the client's way of opening one.

use bytes::BytesMut;
use futures::Stream;
use serde::{Serialize, de::DeserializeOwned};
use tokio::time::Instant;
use tower::ServiceExt;

use super::{
    Streaming,
    codec::{Decode, Encode, Proto, Serde},
    encode_stream,
};
use crate::{
    Client, Error, ErrorKind, Metadata, Result,
    client::{
        CallBuilder, Resend, Tried,
        call::{CallSpec, bad_reply, reply_bytes},
    },
    codec::{self, ContentType},
    transport::{Body, Request, Response},
};

impl CallBuilder {
    /// Client streaming: sends `requests` (serde messages, in the call's
    /// content type) as one stream and decodes the one reply. An `Err` in
    /// `requests` ends the stream with that error, which the handler
    /// receives. Never retried. See [`streaming`](crate::streaming).
    pub async fn client_stream<Req, Resp, S>(self, requests: S) -> Result<Resp>
    where
        S: Stream<Item = Result<Req>> + Send + 'static,
        Req: Serialize + Send + 'static,
        Resp: DeserializeOwned,
    {
        let content_type = self.serde_content_type()?;
        self.client_stream_with::<Serde, _, _, _>(content_type, requests)
            .await
    }

    /// Server streaming: sends one serde request and returns the stream of
    /// replies. Retried like a unary call until the stream opens. See
    /// [`streaming`](crate::streaming).
    pub async fn server_stream<Req, Resp>(self, request: &Req) -> Result<Streaming<Resp>>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned + Send + 'static,
    {
        let content_type = self.serde_content_type()?;
        let body = content_type.encode(request)?;
        self.open_replies::<Serde, Resp>(content_type, Body::Full(body))
            .await
    }

    /// Bidirectional streaming: sends `requests` as one stream and returns
    /// the stream of replies; both stay open at once. Never retried. See
    /// [`streaming`](crate::streaming).
    pub async fn bidi_stream<Req, Resp, S>(self, requests: S) -> Result<Streaming<Resp>>
    where
        S: Stream<Item = Result<Req>> + Send + 'static,
        Req: Serialize + Send + 'static,
        Resp: DeserializeOwned + Send + 'static,
    {
        let content_type = self.serde_content_type()?;
        let body = request_body::<Serde, _, _>(requests, content_type);
        self.open_replies::<Serde, Resp>(content_type, body).await
    }

    /// [`client_stream`](CallBuilder::client_stream) of protobuf (prost) messages.
    pub async fn client_stream_proto<Req, Resp, S>(self, requests: S) -> Result<Resp>
    where
        S: Stream<Item = Result<Req>> + Send + 'static,
        Req: prost::Message + Send + 'static,
        Resp: prost::Message + Default,
    {
        self.client_stream_with::<Proto, _, _, _>(ContentType::Protobuf, requests)
            .await
    }

    /// [`server_stream`](CallBuilder::server_stream) of protobuf (prost) messages.
    pub async fn server_stream_proto<Req, Resp>(self, request: &Req) -> Result<Streaming<Resp>>
    where
        Req: prost::Message,
        Resp: prost::Message + Default + Send + 'static,
    {
        let body = Body::Full(codec::encode_proto(request));
        self.open_replies::<Proto, Resp>(ContentType::Protobuf, body)
            .await
    }

    /// [`bidi_stream`](CallBuilder::bidi_stream) of protobuf (prost) messages.
    pub async fn bidi_stream_proto<Req, Resp, S>(self, requests: S) -> Result<Streaming<Resp>>
    where
        S: Stream<Item = Result<Req>> + Send + 'static,
        Req: prost::Message + Send + 'static,
        Resp: prost::Message + Default + Send + 'static,
    {
        let body = request_body::<Proto, _, _>(requests, ContentType::Protobuf);
        self.open_replies::<Proto, Resp>(ContentType::Protobuf, body)
            .await
    }

    /// The call's serde codec: its own, or the client's.
    fn serde_content_type(&self) -> Result<ContentType> {
        let content_type = self
            .content_type
            .unwrap_or_else(|| self.client.default_content_type());
        if content_type.is_serde() {
            return Ok(content_type);
        }
        Err(Error::invalid_argument(format!(
            "serde streams are {} or {}, not {content_type}; use the _proto methods for protobuf",
            codec::JSON,
            codec::MSGPACK
        )))
    }

    async fn client_stream_with<C, Req, Resp, S>(
        self,
        content_type: ContentType,
        requests: S,
    ) -> Result<Resp>
    where
        C: Encode<Req> + Decode<Resp>,
        S: Stream<Item = Result<Req>> + Send + 'static,
        Req: Send + 'static,
    {
        let body = request_body::<C, _, _>(requests, content_type);
        let response = self
            .client
            .open_stream(self.spec, content_type, body)
            .await?;
        let reply_type = ContentType::parse(&response.content_type).map_err(bad_reply)?;
        C::decode(reply_type, &reply_bytes(response)?).map_err(bad_reply)
    }

    async fn open_replies<C, Resp>(
        self,
        content_type: ContentType,
        body: Body,
    ) -> Result<Streaming<Resp>>
    where
        C: Decode<Resp>,
        Resp: 'static,
    {
        let response = self
            .client
            .open_stream(self.spec, content_type, body)
            .await?;
        let reply_type = ContentType::parse(&response.content_type).map_err(bad_reply)?;
        Ok(Streaming::new(
            response.body.into_stream(),
            std::sync::Arc::new(move |bytes: &[u8]| {
                C::decode(reply_type, bytes).map_err(bad_reply)
            }),
        ))
    }
}

/// `requests`, encoded as the transport pulls them.
fn request_body<C, Req, S>(requests: S, content_type: ContentType) -> Body
where
    C: Encode<Req>,
    S: Stream<Item = Result<Req>> + Send + 'static,
    Req: Send + 'static,
{
    Body::Stream(encode_stream(
        requests,
        move |request: &Req, buffer: &mut BytesMut| C::encode_into(content_type, request, buffer),
    ))
}

/// The deadline of a stream: only one the call or its scope asks for (see
/// [Deadlines](crate::streaming#deadlines)).
fn stream_deadline(inherited: Option<Instant>, call: &CallSpec) -> Option<Instant> {
    let from_timeout = call
        .timeout
        .and_then(|timeout| Instant::now().checked_add(timeout));
    [inherited, from_timeout, call.deadline]
        .into_iter()
        .flatten()
        .min()
}

impl Client {
    /// Opens a streaming call: the response's head once the server sends
    /// it (the whole reply, for client streaming).
    ///
    /// The client's timeout bounds finding a node and connecting, and, for a
    /// unary request, the handler's answer; the stream itself is bounded only
    /// by its deadline. A unary request is retried like any call until the
    /// stream opens; a streamed one cannot be replayed and is tried once.
    pub(crate) async fn open_stream(
        &self,
        call: CallSpec,
        content_type: ContentType,
        body: Body,
    ) -> Result<Response> {
        let deadline = stream_deadline(self.scope_deadline(), &call);
        let opening = Instant::now()
            .checked_add(self.timeout())
            .map_or(deadline, |by| Some(deadline.map_or(by, |d| d.min(by))));
        let mut metadata = self.scope_metadata();
        metadata.extend_from(&call.metadata);
        let attempt = Attempt {
            call: &call,
            content_type,
            metadata,
            deadline,
            opening,
            tried: Tried::default(),
        };
        // A streamed request cannot be replayed: it is tried once.
        let policy = self.retry_policy(call.retries).until(opening);
        let attempt = &attempt;
        let send = tower::service_fn(move |StreamTry(body)| self.stream_attempt(attempt, body));
        tower::retry::Retry::new(policy, send)
            .oneshot(StreamTry(body))
            .await
    }

    async fn stream_attempt(&self, attempt: &Attempt<'_>, body: Body) -> Result<Response> {
        let backends = self.backends()?;
        let call = attempt.call;
        let services;
        let (address, node_id) = match &call.address {
            Some(address) => (address.as_str(), None),
            None => {
                let lookup = self.lookup(backends, &call.service);
                services = until(attempt.opening, lookup, || not_opened(call)).await?;
                let node =
                    self.pick_node(backends, &call.service, &services, &attempt.tried.lock())?;
                (node.address.as_str(), Some(node.id.as_str()))
            }
        };
        let channel = until(attempt.opening, self.channel(backends, address), || {
            not_opened(call)
        })
        .await?;
        // A unary request's stream opens when the handler answers; a streamed
        // one's answer may come only once the whole stream is sent.
        let wait_until = if body.is_stream() {
            attempt.deadline
        } else {
            attempt.opening
        };
        let request = Request {
            service: call.service.clone(),
            endpoint: call.endpoint.clone(),
            content_type: attempt.content_type.as_str().to_owned(),
            metadata: attempt.metadata.clone(),
            deadline: attempt.deadline,
            body,
        };
        let result = until(wait_until, channel.call_once(request), || {
            if attempt.deadline == wait_until {
                Error::timeout(format!(
                    "{} on {}: the stream's deadline passed",
                    call.endpoint,
                    call.target()
                ))
            } else {
                not_opened(call)
            }
        })
        .await;
        if let Err(err) = &result {
            if let Some(id) = node_id {
                attempt.tried.add(id);
            }
            if err.kind() == ErrorKind::Unavailable {
                self.forget_channel(address);
            }
        }
        result
    }
}

/// What every try of one streaming call shares.
struct Attempt<'a> {
    call: &'a CallSpec,
    content_type: ContentType,
    metadata: Metadata,
    /// The stream's own deadline, sent to the server.
    deadline: Option<Instant>,
    /// When opening the stream gives up.
    opening: Option<Instant>,
    tried: Tried,
}

/// What one try of a streaming call sends: a unary request can be sent
/// again, a streamed one cannot.
struct StreamTry(Body);

impl Resend for StreamTry {
    fn resend(&self) -> Option<StreamTry> {
        match &self.0 {
            Body::Full(bytes) => Some(StreamTry(Body::Full(bytes.clone()))),
            _ => None,
        }
    }
}

/// Runs `work` until `deadline`, failing with `on_timeout()` past it.
async fn until<T>(
    deadline: Option<Instant>,
    work: impl Future<Output = Result<T>>,
    on_timeout: impl FnOnce() -> Error,
) -> Result<T> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, work)
            .await
            .unwrap_or_else(|_| Err(on_timeout())),
        None => work.await,
    }
}

fn not_opened(call: &CallSpec) -> Error {
    Error::timeout(format!(
        "{} on {}: the stream did not open within the client's timeout",
        call.endpoint,
        call.target()
    ))
}
