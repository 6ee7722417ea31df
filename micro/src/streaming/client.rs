//! The calling side of streaming: the [`CallBuilder`] methods that open
//! streams, and the client's way of opening one.

use bytes::BytesMut;
use futures::Stream;
use tokio::time::Instant;
use tower::ServiceExt;

use super::{Streaming, encode_stream};
use crate::{
    Client, Error, ErrorKind, Metadata, Result,
    client::{
        CallBuilder, Resend, Tried,
        call::{CallSpec, bad_reply, decode_reply, reply_format},
    },
    codec::{self, Decode, Encode},
    transport::{Body, Request, Response},
};

impl<Req: ?Sized, Resp> CallBuilder<Req, Resp> {
    /// Client streaming: sends `requests` as one stream and decodes the one
    /// reply, each with the codec its type chooses. An `Err` in `requests`
    /// ends the stream with that error, which the handler receives. Never
    /// retried. See [`streaming`](crate::streaming).
    pub async fn client_stream<S>(self, requests: S) -> Result<Resp>
    where
        S: Stream<Item = Result<Req>> + Send + 'static,
        Req: Encode + Sized + Send + 'static,
        Resp: Decode,
    {
        let (label, format) = self.request_format()?;
        let body = request_body(requests, format);
        let response = self.client.open_stream(self.spec, label, body).await?;
        decode_reply(response)
    }

    /// Server streaming: sends one request and returns the stream of
    /// replies. Retried like a unary call until the stream opens. See
    /// [`streaming`](crate::streaming).
    pub async fn server_stream(self, request: &Req) -> Result<Streaming<Resp>>
    where
        Req: Encode,
        Resp: Decode + Send + 'static,
    {
        let (label, format) = self.request_format()?;
        let body = codec::encode_message(request, format)?;
        self.open_replies(label, Body::Full(body)).await
    }

    /// Bidirectional streaming: sends `requests` as one stream and returns
    /// the stream of replies; both stay open at once. Never retried. See
    /// [`streaming`](crate::streaming).
    pub async fn bidi_stream<S>(self, requests: S) -> Result<Streaming<Resp>>
    where
        S: Stream<Item = Result<Req>> + Send + 'static,
        Req: Encode + Sized + Send + 'static,
        Resp: Decode + Send + 'static,
    {
        let (label, format) = self.request_format()?;
        let body = request_body(requests, format);
        self.open_replies(label, body).await
    }

    async fn open_replies(self, label: &'static str, body: Body) -> Result<Streaming<Resp>>
    where
        Resp: Decode + 'static,
    {
        let response = self.client.open_stream(self.spec, label, body).await?;
        let format = reply_format::<Resp>(&response.content_type)?;
        Ok(Streaming::new(
            response.body.into_stream(),
            std::sync::Arc::new(move |bytes| Resp::decode(format, bytes).map_err(bad_reply)),
        ))
    }
}

/// `requests`, encoded as the transport pulls them.
fn request_body<Req, S>(requests: S, format: &'static str) -> Body
where
    Req: Encode + Send + 'static,
    S: Stream<Item = Result<Req>> + Send + 'static,
{
    Body::Stream(encode_stream(
        requests,
        move |request: &Req, buffer: &mut BytesMut| request.encode(format, buffer),
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
        content_type: &'static str,
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
            Some(address) => (std::borrow::Cow::Borrowed(address.as_str()), None),
            None => {
                let lookup = self.lookup(backends, &call.service);
                services = until(attempt.opening, lookup, || not_opened(call)).await?;
                let node =
                    self.pick_node(backends, &call.service, &services, &attempt.tried.lock())?;
                (crate::service::dial_address(node), Some(node.id.as_str()))
            }
        };
        let channel = until(attempt.opening, self.channel(backends, &address), || {
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
            content_type: attempt.content_type.to_owned(),
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
                self.forget_channel(&address);
            }
        }
        result
    }
}

/// What every try of one streaming call shares.
struct Attempt<'a> {
    call: &'a CallSpec,
    content_type: &'static str,
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
