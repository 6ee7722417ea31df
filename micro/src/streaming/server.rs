//! The serving side of streaming: routes for the three streaming shapes, and
//! the methods of [`Server`] and [`ServiceBuilder`] that add them.

use std::{future::Future, sync::Arc};

use bytes::BytesMut;
use futures::{FutureExt, Stream};
use serde::{Serialize, de::DeserializeOwned};

use super::{
    STREAM_KEY, Streaming,
    codec::{Codec, Decode, Encode, Proto, Serde},
    encode_stream,
};
use crate::{
    Context, Result, Server, ServiceBuilder,
    codec::{self, ContentType},
    server::{RouteFn, unencodable_reply},
    transport::{Body, Request, Response},
};

/// The request messages of a call, decoded as they are pulled; a message the
/// codec refuses ends the stream with `InvalidArgument`.
fn request_stream<C: Decode<Req>, Req: 'static>(
    request: Request,
    content_type: ContentType,
) -> Streaming<Req> {
    Streaming::new(
        request.body.into_stream(),
        Arc::new(move |bytes: &[u8]| C::decode(content_type, bytes)),
    )
}

/// The reply messages of a handler, encoded as they are pulled.
fn reply_stream<C, Resp, S>(replies: S, content_type: ContentType) -> Response
where
    C: Encode<Resp>,
    Resp: Send + 'static,
    S: Stream<Item = Result<Resp>> + Send + 'static,
{
    let body = encode_stream(replies, move |reply: &Resp, buffer: &mut BytesMut| {
        C::encode_into(content_type, reply, buffer).map_err(unencodable_reply)
    });
    Response::new(Body::Stream(body)).with_content_type(content_type.as_str())
}

/// The part every streaming shape shares: pick the content type the request
/// carries from those the codec accepts (refusing any other, naming the
/// endpoint), then hand the request and that content type to the shape's
/// `serve`. The three shapes differ only in what `serve` does with the body.
fn negotiated_route<C, H, Fut>(
    endpoint: Arc<str>,
    handler: H,
    serve: fn(Arc<H>, Context, Request, ContentType) -> Fut,
) -> RouteFn
where
    C: Codec,
    H: Send + Sync + 'static,
    Fut: Future<Output = Result<Response>> + Send + 'static,
{
    let handler = Arc::new(handler);
    Arc::new(move |ctx, request: Request| {
        let handler = handler.clone();
        let endpoint = endpoint.clone();
        async move {
            let content_type = codec::expect_one_of(&request.content_type, C::ACCEPTS, &endpoint)?;
            serve(handler, ctx, request, content_type).await
        }
        .boxed()
    })
}

// Each shape is written once, generic over the codec `C`: the serde and the
// protobuf public methods below differ only in the bounds they put on the
// message types, so both call the same `add_*_stream` with `Serde` or `Proto`.
// Each `add_*_stream` also pairs its route with its own `STREAM_KEY` value, so
// a shape's route and the kind it advertises cannot drift apart.

/// Adds a client-streaming route: a stream of requests, one reply.
fn add_client_stream<C, Req, Resp, F, Fut>(server: Server, endpoint: String, handler: F) -> Server
where
    C: Decode<Req> + Encode<Resp>,
    F: Fn(Context, Streaming<Req>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp>> + Send + 'static,
    Req: Send + 'static,
    Resp: Send + 'static,
{
    add::<C, Req, Resp>(server, endpoint, "client", |name| {
        negotiated_route::<C, F, _>(
            name,
            handler,
            |handler, ctx, request, content_type| async move {
                let reply = handler(ctx, request_stream::<C, Req>(request, content_type)).await?;
                let body = C::encode(content_type, &reply).map_err(unencodable_reply)?;
                Ok(Response::new(body).with_content_type(content_type.as_str()))
            },
        )
    })
}

/// Adds a server-streaming route: one request, a stream of replies.
fn add_server_stream<C, Req, Resp, S, F, Fut>(
    server: Server,
    endpoint: String,
    handler: F,
) -> Server
where
    C: Decode<Req> + Encode<Resp>,
    F: Fn(Context, Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<S>> + Send + 'static,
    S: Stream<Item = Result<Resp>> + Send + 'static,
    Req: Send + 'static,
    Resp: Send + 'static,
{
    add::<C, Req, Resp>(server, endpoint, "server", |name| {
        negotiated_route::<C, F, _>(
            name,
            handler,
            |handler, ctx, request, content_type| async move {
                let input = C::decode(content_type, &request.body.into_bytes()?)?;
                let replies = handler(ctx, input).await?;
                Ok(reply_stream::<C, Resp, S>(replies, content_type))
            },
        )
    })
}

/// Adds a bidirectional route: a stream each way, both open at once.
fn add_bidi_stream<C, Req, Resp, S, F, Fut>(server: Server, endpoint: String, handler: F) -> Server
where
    C: Decode<Req> + Encode<Resp>,
    F: Fn(Context, Streaming<Req>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<S>> + Send + 'static,
    S: Stream<Item = Result<Resp>> + Send + 'static,
    Req: Send + 'static,
    Resp: Send + 'static,
{
    add::<C, Req, Resp>(server, endpoint, "bidi", |name| {
        negotiated_route::<C, F, _>(
            name,
            handler,
            |handler, ctx, request, content_type| async move {
                let replies = handler(ctx, request_stream::<C, Req>(request, content_type)).await?;
                Ok(reply_stream::<C, Resp, S>(replies, content_type))
            },
        )
    })
}

/// Adds a streaming route of shape `kind` to `server`.
fn add<C: Codec, Req, Resp>(
    server: Server,
    endpoint: String,
    kind: &str,
    route: impl FnOnce(Arc<str>) -> RouteFn,
) -> Server {
    let call = route(Arc::from(endpoint.as_str()));
    server
        .route::<Req, Resp>(endpoint.clone(), C::ACCEPTS, call)
        .endpoint_metadata(&endpoint, STREAM_KEY, kind)
}

impl Server {
    /// Serves `endpoint` with a client-streaming handler: it reads a stream
    /// of serde requests (JSON or MessagePack) and answers once. See
    /// [`streaming`](crate::streaming).
    pub fn handle_client_stream<Req, Resp, F, Fut>(
        self,
        endpoint: impl Into<String>,
        handler: F,
    ) -> Server
    where
        F: Fn(Context, Streaming<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp>> + Send + 'static,
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
    {
        add_client_stream::<Serde, _, _, _, _>(self, endpoint.into(), handler)
    }

    /// Serves `endpoint` with a server-streaming handler: one serde request,
    /// a stream of replies. See [`streaming`](crate::streaming).
    pub fn handle_server_stream<Req, Resp, S, F, Fut>(
        self,
        endpoint: impl Into<String>,
        handler: F,
    ) -> Server
    where
        F: Fn(Context, Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<S>> + Send + 'static,
        S: Stream<Item = Result<Resp>> + Send + 'static,
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
    {
        add_server_stream::<Serde, _, _, _, _, _>(self, endpoint.into(), handler)
    }

    /// Serves `endpoint` with a bidirectional handler: a stream of serde
    /// requests in, a stream of replies out, both open at once. See
    /// [`streaming`](crate::streaming).
    pub fn handle_bidi_stream<Req, Resp, S, F, Fut>(
        self,
        endpoint: impl Into<String>,
        handler: F,
    ) -> Server
    where
        F: Fn(Context, Streaming<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<S>> + Send + 'static,
        S: Stream<Item = Result<Resp>> + Send + 'static,
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
    {
        add_bidi_stream::<Serde, _, _, _, _, _>(self, endpoint.into(), handler)
    }

    /// [`handle_client_stream`](Server::handle_client_stream) for protobuf
    /// (prost) messages; requests must be `application/protobuf`.
    pub fn handle_client_stream_proto<Req, Resp, F, Fut>(
        self,
        endpoint: impl Into<String>,
        handler: F,
    ) -> Server
    where
        F: Fn(Context, Streaming<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp>> + Send + 'static,
        Req: prost::Message + Default + Send + 'static,
        Resp: prost::Message + Send + 'static,
    {
        add_client_stream::<Proto, _, _, _, _>(self, endpoint.into(), handler)
    }

    /// [`handle_server_stream`](Server::handle_server_stream) for protobuf
    /// (prost) messages; requests must be `application/protobuf`.
    pub fn handle_server_stream_proto<Req, Resp, S, F, Fut>(
        self,
        endpoint: impl Into<String>,
        handler: F,
    ) -> Server
    where
        F: Fn(Context, Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<S>> + Send + 'static,
        S: Stream<Item = Result<Resp>> + Send + 'static,
        Req: prost::Message + Default + Send + 'static,
        Resp: prost::Message + Send + 'static,
    {
        add_server_stream::<Proto, _, _, _, _, _>(self, endpoint.into(), handler)
    }

    /// [`handle_bidi_stream`](Server::handle_bidi_stream) for protobuf
    /// (prost) messages; requests must be `application/protobuf`.
    pub fn handle_bidi_stream_proto<Req, Resp, S, F, Fut>(
        self,
        endpoint: impl Into<String>,
        handler: F,
    ) -> Server
    where
        F: Fn(Context, Streaming<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<S>> + Send + 'static,
        S: Stream<Item = Result<Resp>> + Send + 'static,
        Req: prost::Message + Default + Send + 'static,
        Resp: prost::Message + Send + 'static,
    {
        add_bidi_stream::<Proto, _, _, _, _, _>(self, endpoint.into(), handler)
    }
}

impl ServiceBuilder {
    /// Serves `endpoint` with a client-streaming handler; see
    /// [`Server::handle_client_stream`].
    pub fn handle_client_stream<Req, Resp, F, Fut>(
        self,
        endpoint: impl Into<String>,
        handler: F,
    ) -> ServiceBuilder
    where
        F: Fn(Context, Streaming<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp>> + Send + 'static,
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
    {
        self.with_server(|server| server.handle_client_stream(endpoint, handler))
    }

    /// Serves `endpoint` with a server-streaming handler; see
    /// [`Server::handle_server_stream`].
    pub fn handle_server_stream<Req, Resp, S, F, Fut>(
        self,
        endpoint: impl Into<String>,
        handler: F,
    ) -> ServiceBuilder
    where
        F: Fn(Context, Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<S>> + Send + 'static,
        S: Stream<Item = Result<Resp>> + Send + 'static,
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
    {
        self.with_server(|server| server.handle_server_stream(endpoint, handler))
    }

    /// Serves `endpoint` with a bidirectional handler; see
    /// [`Server::handle_bidi_stream`].
    pub fn handle_bidi_stream<Req, Resp, S, F, Fut>(
        self,
        endpoint: impl Into<String>,
        handler: F,
    ) -> ServiceBuilder
    where
        F: Fn(Context, Streaming<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<S>> + Send + 'static,
        S: Stream<Item = Result<Resp>> + Send + 'static,
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
    {
        self.with_server(|server| server.handle_bidi_stream(endpoint, handler))
    }

    /// Serves `endpoint` with a protobuf client-streaming handler; see
    /// [`Server::handle_client_stream_proto`].
    pub fn handle_client_stream_proto<Req, Resp, F, Fut>(
        self,
        endpoint: impl Into<String>,
        handler: F,
    ) -> ServiceBuilder
    where
        F: Fn(Context, Streaming<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp>> + Send + 'static,
        Req: prost::Message + Default + Send + 'static,
        Resp: prost::Message + Send + 'static,
    {
        self.with_server(|server| server.handle_client_stream_proto(endpoint, handler))
    }

    /// Serves `endpoint` with a protobuf server-streaming handler; see
    /// [`Server::handle_server_stream_proto`].
    pub fn handle_server_stream_proto<Req, Resp, S, F, Fut>(
        self,
        endpoint: impl Into<String>,
        handler: F,
    ) -> ServiceBuilder
    where
        F: Fn(Context, Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<S>> + Send + 'static,
        S: Stream<Item = Result<Resp>> + Send + 'static,
        Req: prost::Message + Default + Send + 'static,
        Resp: prost::Message + Send + 'static,
    {
        self.with_server(|server| server.handle_server_stream_proto(endpoint, handler))
    }

    /// Serves `endpoint` with a protobuf bidirectional handler; see
    /// [`Server::handle_bidi_stream_proto`].
    pub fn handle_bidi_stream_proto<Req, Resp, S, F, Fut>(
        self,
        endpoint: impl Into<String>,
        handler: F,
    ) -> ServiceBuilder
    where
        F: Fn(Context, Streaming<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<S>> + Send + 'static,
        S: Stream<Item = Result<Resp>> + Send + 'static,
        Req: prost::Message + Default + Send + 'static,
        Resp: prost::Message + Send + 'static,
    {
        self.with_server(|server| server.handle_bidi_stream_proto(endpoint, handler))
    }
}
