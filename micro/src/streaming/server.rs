//! The serving side of streaming: routes for the three streaming shapes, and
//! the methods of [`Server`] that add them.

use std::{future::Future, sync::Arc};

use bytes::BytesMut;
use futures::{FutureExt, Stream};

use super::{STREAM_KEY, Streaming, encode_stream};
use crate::{
    Context, Endpoint, Result, Server,
    codec::{self, Decode, Encode},
    server::{RouteFn, describe, unencodable_reply},
    transport::{Body, Request, Response},
};

/// The request messages of a call, decoded as they are pulled; a message the
/// codec refuses ends the stream with `InvalidArgument`.
fn request_stream<Req: Decode + 'static>(request: Request, format: &'static str) -> Streaming<Req> {
    Streaming::new(
        request.body.into_stream(),
        Arc::new(move |bytes| Req::decode(format, bytes)),
    )
}

/// The reply messages of a handler, encoded as they are pulled.
fn reply_stream<Resp, S>(replies: S, request_format: &str) -> Response
where
    Resp: Encode + Send + 'static,
    S: Stream<Item = Result<Resp>> + Send + 'static,
{
    let format = codec::reply_format::<Resp>(request_format);
    let body = encode_stream(replies, move |reply: &Resp, buffer: &mut BytesMut| {
        reply.encode(format, buffer).map_err(unencodable_reply)
    });
    Response::new(Body::Stream(body)).with_content_type(format)
}

/// The part every streaming shape shares: pick the content type the request
/// carries from those `Req` reads (refusing any other, naming the
/// endpoint), then hand the request and that content type to the shape's
/// `serve`. The three shapes differ only in what `serve` does with the body.
fn negotiated_route<Req, H, Fut>(
    endpoint: Arc<str>,
    handler: H,
    serve: fn(Arc<H>, Context, Request, &'static str) -> Fut,
) -> RouteFn
where
    Req: Decode,
    H: Send + Sync + 'static,
    Fut: Future<Output = Result<Response>> + Send + 'static,
{
    let handler = Arc::new(handler);
    Arc::new(move |ctx, request: Request| {
        let handler = handler.clone();
        let endpoint = endpoint.clone();
        async move {
            let content_type = codec::negotiate_request::<Req>(&request.content_type, &endpoint)?;
            serve(handler, ctx, request, content_type).await
        }
        .boxed()
    })
}

/// Adds a streaming route of shape `kind` (its [`STREAM_KEY`] value, paired
/// here with its route so the two cannot drift apart) to `server`.
fn add<Req: Decode, Resp: Encode>(
    server: Server,
    endpoint: Endpoint<Req, Resp>,
    kind: &str,
    route: impl FnOnce(Arc<str>) -> RouteFn,
) -> Server {
    let mut description = describe::<Req, Resp>(&endpoint);
    description.metadata.insert(STREAM_KEY, kind);
    let name = endpoint.into_name();
    let call = route(Arc::from(name.as_str()));
    server.route(name, description, call)
}

impl Server {
    /// Serves `endpoint` with a client-streaming handler: it reads a stream
    /// of requests and answers once. The types choose the codec, as for
    /// [`handle`](Server::handle). See [`streaming`](crate::streaming).
    pub fn handle_client_stream<Req, Resp, F, Fut>(
        self,
        endpoint: impl Into<Endpoint<Req, Resp>>,
        handler: F,
    ) -> Server
    where
        F: Fn(Context, Streaming<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp>> + Send + 'static,
        Req: Decode + Send + 'static,
        Resp: Encode + Send + 'static,
    {
        add(self, endpoint.into(), "client", |name| {
            negotiated_route::<Req, F, _>(
                name,
                handler,
                |handler, ctx, request, format| async move {
                    let reply = handler(ctx, request_stream::<Req>(request, format)).await?;
                    let reply_format = codec::reply_format::<Resp>(format);
                    let body =
                        codec::encode_message(&reply, reply_format).map_err(unencodable_reply)?;
                    Ok(Response::new(body).with_content_type(reply_format))
                },
            )
        })
    }

    /// Serves `endpoint` with a server-streaming handler: one request, a
    /// stream of replies. See [`streaming`](crate::streaming).
    pub fn handle_server_stream<Req, Resp, S, F, Fut>(
        self,
        endpoint: impl Into<Endpoint<Req, Resp>>,
        handler: F,
    ) -> Server
    where
        F: Fn(Context, Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<S>> + Send + 'static,
        S: Stream<Item = Result<Resp>> + Send + 'static,
        Req: Decode + Send + 'static,
        Resp: Encode + Send + 'static,
    {
        add(self, endpoint.into(), "server", |name| {
            negotiated_route::<Req, F, _>(
                name,
                handler,
                |handler, ctx, request, format| async move {
                    let input = Req::decode(format, request.body.into_bytes()?)?;
                    let replies = handler(ctx, input).await?;
                    Ok(reply_stream::<Resp, S>(replies, format))
                },
            )
        })
    }

    /// Serves `endpoint` with a bidirectional handler: a stream of requests
    /// in, a stream of replies out, both open at once. See
    /// [`streaming`](crate::streaming).
    pub fn handle_bidi_stream<Req, Resp, S, F, Fut>(
        self,
        endpoint: impl Into<Endpoint<Req, Resp>>,
        handler: F,
    ) -> Server
    where
        F: Fn(Context, Streaming<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<S>> + Send + 'static,
        S: Stream<Item = Result<Resp>> + Send + 'static,
        Req: Decode + Send + 'static,
        Resp: Encode + Send + 'static,
    {
        add(self, endpoint.into(), "bidi", |name| {
            negotiated_route::<Req, F, _>(
                name,
                handler,
                |handler, ctx, request, format| async move {
                    let replies = handler(ctx, request_stream::<Req>(request, format)).await?;
                    Ok(reply_stream::<Resp, S>(replies, format))
                },
            )
        })
    }
}
