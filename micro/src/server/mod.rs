//! The serving side: a router of typed handlers and broker subscribers.
//!
//! A [`Server`] maps endpoint names (`Greeter.Hello`) to async handlers and
//! topics to subscribers. It becomes the transport's [`Handler`] (a tower
//! service, wrapped in any tower layers added with [`Server::layer`]) and
//! feeds the registry the list of its endpoints. [`Service`](crate::Service)
//! uses one internally; a `Server` can also be served on its own:
//!
//! ```
//! # async fn demo() -> micro::Result<()> {
//! use std::time::Duration;
//! use micro::{Server, transport::memory::MemoryTransport};
//!
//! let server = Server::new()
//!     .name("adder")
//!     .handle("Adder.Add", |_ctx, (a, b): (i64, i64)| async move { Ok(a + b) });
//! let transport = MemoryTransport::isolated();
//! let listener = server.serve(&transport, "").await?;
//! // ... call it at listener.address() ...
//! listener.shutdown(Duration::from_secs(1)).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # What a call goes through
//!
//! 1. An unknown endpoint is `NotFound`, naming the endpoint.
//! 2. The body is decoded as the handler's request type, by the request's
//!    content type ([`codec`](mod@crate::codec): a serde type reads JSON or
//!    MessagePack, [`Proto<T>`](crate::codec::Proto) protobuf,
//!    [`Raw`](crate::codec::Raw) anything). A content type the type does not
//!    read, or malformed input, is `InvalidArgument`, naming the expected
//!    type.
//! 3. The handler runs with a [`Context`] until the caller's deadline; past it
//!    the call ends with `Timeout` and the handler's future is dropped.
//! 4. A handler that panics fails that call with `Internal` (the panic is
//!    logged, not sent); the server goes on serving.
//! 5. The reply is encoded in the request's content type when the reply
//!    type writes it (a serde handler answers JSON with JSON, MessagePack
//!    with MessagePack), else in the reply type's own.
//!
//! # Subscribers
//!
//! [`Server::subscribe`] joins a queue group named after the server (the
//! service's name), so each message is handled once per service however many
//! instances run: N instances of an email service send each email once. Use
//! [`Server::subscribe_with`] and [`SubscribeOptions::fanout`] to have every
//! instance receive every message. Messages of one subscription are handled
//! one at a time, in order. A handler's `Ok` acknowledges the message; an
//! `Err` (or a panic) is logged and, where the broker supports manual
//! acknowledgement, the message is nacked for redelivery after
//! [`NACK_DELAY`]. A message that cannot be decoded into the subscriber's
//! type is logged with its topic, counted
//! ([`Subscribers::undecodable_messages`]) and acknowledged, so it is dropped
//! rather than redelivered forever.

mod auth;
mod ordered;
mod router;
mod subscriber;

use std::{collections::BTreeMap, fmt, future::Future, sync::Arc};

pub use self::auth::RulesHandle;

use futures::{FutureExt, future::BoxFuture};
use tower::{Layer, Service as TowerService};

pub use ordered::KeyedOrder;
pub use subscriber::{NACK_DELAY, Subscribers};

use crate::{
    Client, Context, Error, Result,
    broker::{DynBroker, Message, SubscribeOptions},
    codec::{self, Decode, Encode},
    endpoint::Endpoint as TypedEndpoint,
    registry::Endpoint,
    transport::{EndpointSet, Handler, Listener, Request, Response, Transport},
};

pub(crate) type RouteFn =
    Arc<dyn Fn(Context, Request) -> BoxFuture<'static, Result<Response>> + Send + Sync>;
type HandlerLayer = Arc<dyn Fn(Handler) -> Handler + Send + Sync>;
/// Decodes a message (an error means it is undecodable) into the future that handles it.
type SubscriberFn =
    Arc<dyn Fn(Context, &Message) -> Result<BoxFuture<'static, Result<()>>> + Send + Sync>;

/// Endpoint metadata key listing the content types an endpoint accepts.
const CONTENT_TYPES_KEY: &str = "content-types";
/// Endpoint metadata key marking a subscriber.
const SUBSCRIBER_KEY: &str = "subscriber";

#[derive(Clone)]
struct Route {
    endpoint: Endpoint,
    call: RouteFn,
}

#[derive(Clone)]
struct SubscriberSpec {
    topic: String,
    options: Option<SubscribeOptions>,
    message_type: &'static str,
    handle: SubscriberFn,
    /// Set for [`Server::subscribe_ordered`]: messages go through a keyed pool.
    ordered: Option<ordered::OrderedSpec>,
}

/// A router of typed handlers and broker subscribers; see the [module docs](self).
///
/// Built by chaining: every method takes and returns the server. Cheap to clone.
#[derive(Clone, Default)]
pub struct Server {
    name: String,
    routes: BTreeMap<String, Route>,
    duplicates: Vec<String>,
    subscribers: Vec<SubscriberSpec>,
    layers: Vec<HandlerLayer>,
    client: Option<Client>,
    config: Option<crate::config::Config>,
    authorizer: Option<Arc<auth::Authorizer>>,
}

impl Server {
    /// An empty server with no name.
    pub fn new() -> Server {
        Server::default()
    }

    /// Names the server: the service name its handlers see in their
    /// [`Context`] and the default queue group of its subscribers.
    pub fn name(mut self, name: impl Into<String>) -> Server {
        self.name = name.into();
        self
    }

    /// The client handlers reach through [`Context::client`].
    pub fn client(mut self, client: Client) -> Server {
        self.client = Some(client);
        self
    }

    /// The configuration handlers read through [`Context::config`].
    pub fn config(mut self, config: crate::config::Config) -> Server {
        self.config = Some(config);
        self
    }

    /// The configuration given with [`Server::config`], if any.
    pub fn configuration(&self) -> Option<&crate::config::Config> {
        self.config.as_ref()
    }

    /// The server's name (empty when unnamed).
    pub fn server_name(&self) -> &str {
        &self.name
    }

    /// Serves `endpoint` with an async function from its request type to its
    /// reply type; the types choose the codec ([`codec`](mod@crate::codec)).
    ///
    /// `endpoint` is a typed [`Endpoint`] constant shared with the callers,
    /// or a name whose types are inferred from the handler. Plain serde types
    /// (structs, tuples, `Vec`, maps, `Option`, `()`, ...) are read as JSON
    /// (the default when no content type is given) or MessagePack, by the
    /// request's content type, and answered in the same one; an empty JSON
    /// body reads as `null`, so endpoints taking `()` or an `Option` accept
    /// none. [`Proto<T>`](crate::codec::Proto) takes protobuf,
    /// [`Raw`](crate::codec::Raw) any bytes; see the [module docs](self).
    ///
    /// ```
    /// use micro::{Server, codec::{Proto, Raw}};
    /// # #[derive(Clone, PartialEq, prost::Message)] struct Ping { #[prost(string, tag = "1")] text: String }
    ///
    /// let server = Server::new()
    ///     .handle("Adder.Add", |_ctx, (a, b): (i64, i64)| async move { Ok(a + b) })
    ///     .handle("Pinger.Ping", |_ctx, Proto(ping): Proto<Ping>| async move { Ok(Proto(ping)) })
    ///     .handle("Echo.Bytes", |_ctx, body: Raw| async move { Ok(body) });
    /// # let _ = server;
    /// ```
    pub fn handle<Req, Resp, F, Fut>(
        self,
        endpoint: impl Into<TypedEndpoint<Req, Resp>>,
        handler: F,
    ) -> Server
    where
        F: Fn(Context, Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp>> + Send + 'static,
        Req: Decode + Send + 'static,
        Resp: Encode + Send + 'static,
    {
        let endpoint = endpoint.into();
        let description = describe::<Req, Resp>(&endpoint);
        let endpoint = endpoint.into_name();
        let name: Arc<str> = Arc::from(endpoint.as_str());
        let handler = Arc::new(handler);
        let call: RouteFn = Arc::new(move |ctx, request: Request| {
            let handler = handler.clone();
            let name = name.clone();
            async move {
                let format = codec::negotiate_request::<Req>(&request.content_type, &name)?;
                let bytes = request.body.into_bytes()?;
                let input = Req::decode(format, bytes)?;
                let output = handler(ctx, input).await?;
                let reply_format = codec::reply_format::<Resp>(format);
                let body =
                    codec::encode_message(&output, reply_format).map_err(unencodable_reply)?;
                Ok(Response::new(body).with_content_type(reply_format))
            }
            .boxed()
        });
        self.route(endpoint, description, call)
    }

    pub(crate) fn route(mut self, name: String, mut endpoint: Endpoint, call: RouteFn) -> Server {
        endpoint.name.clone_from(&name);
        if self
            .routes
            .insert(name.clone(), Route { endpoint, call })
            .is_some()
        {
            self.duplicates.push(name);
        }
        self
    }

    /// Handles messages on `topic`, decoded into `T` by the message's
    /// `content-type` header (the codec is `T`'s, as for [`handle`](Server::handle):
    /// a serde type reads JSON or MessagePack, JSON when the header is
    /// absent), in the server's queue group; see [Subscribers](self#subscribers).
    pub fn subscribe<T, F, Fut>(self, topic: impl Into<String>, handler: F) -> Server
    where
        F: Fn(Context, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
        T: Decode + Send + 'static,
    {
        self.add_subscriber(topic.into(), None, handler)
    }

    /// Like [`subscribe`](Server::subscribe) with explicit options, e.g.
    /// [`SubscribeOptions::fanout`] so every instance gets every message.
    /// Manual acknowledgement is asked for whenever the broker supports it.
    pub fn subscribe_with<T, F, Fut>(
        self,
        topic: impl Into<String>,
        options: SubscribeOptions,
        handler: F,
    ) -> Server
    where
        F: Fn(Context, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
        T: Decode + Send + 'static,
    {
        self.add_subscriber(topic.into(), Some(options), handler)
    }

    fn add_subscriber<T, F, Fut>(
        mut self,
        topic: String,
        options: Option<SubscribeOptions>,
        handler: F,
    ) -> Server
    where
        F: Fn(Context, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
        T: Decode + Send + 'static,
    {
        let handler = Arc::new(handler);
        let handle: SubscriberFn = Arc::new(move |ctx, message: &Message| {
            let event: T = ordered::decode(message)?;
            let handler = handler.clone();
            // The handler is called inside the future so that a panic in its
            // synchronous part is caught like one in its async part.
            Ok(async move { handler(ctx, event).await }.boxed())
        });
        self.subscribers.push(SubscriberSpec {
            topic,
            options,
            message_type: std::any::type_name::<T>(),
            handle,
            ordered: None,
        });
        self
    }

    /// Like [`subscribe`](Server::subscribe), handling messages with the same
    /// key strictly in arrival order and messages with different keys in
    /// parallel, up to the order's concurrency (a keyed worker pool,
    /// [`broker::keyed`](crate::broker::keyed)). The number of keys in flight
    /// and of messages held is bounded: when full, the subscriber stops
    /// taking messages and the broker's flow control holds publishers back.
    /// Each message is acknowledged only after its handler returned `Ok`;
    /// an error or panic nacks it as [`subscribe`](Server::subscribe) does
    /// (its redelivery then comes after the key's later messages).
    ///
    /// ```
    /// # #[derive(serde::Deserialize)] struct OrderEvent { order_id: u64, status: String }
    /// use micro::{KeyedOrder, Server};
    ///
    /// let server = Server::new().name("billing").subscribe_ordered(
    ///     "orders.>",
    ///     KeyedOrder::by(|event: &OrderEvent| event.order_id).concurrency(8),
    ///     |_ctx, event: OrderEvent| async move {
    ///         println!("order {} is now {}", event.order_id, event.status);
    ///         Ok(())
    ///     },
    /// );
    /// ```
    pub fn subscribe_ordered<T, F, Fut>(
        mut self,
        topic: impl Into<String>,
        order: KeyedOrder<T>,
        handler: F,
    ) -> Server
    where
        F: Fn(Context, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
        T: Decode + Send + 'static,
    {
        let handler = Arc::new(handler);
        let key = order.key;
        let decode: ordered::KeyedFn = Arc::new(move |ctx, message: &Message| {
            let event: T = ordered::decode(message)?;
            let key = key(&event);
            let handler = handler.clone();
            Ok((key, async move { handler(ctx, event).await }.boxed()))
        });
        let unkeyed = decode.clone();
        let handle: SubscriberFn = Arc::new(move |ctx, message: &Message| {
            unkeyed(ctx, message).map(|(_key, future)| future)
        });
        self.subscribers.push(SubscriberSpec {
            topic: topic.into(),
            options: order.options,
            message_type: std::any::type_name::<T>(),
            handle,
            ordered: Some(ordered::OrderedSpec {
                config: order.config,
                decode,
            }),
        });
        self
    }

    /// This server with everything `other` serves added: its handlers (one
    /// served by both is reported by [`validate`](Server::validate)), its
    /// subscribers, its layers (outside this server's), and its client and
    /// config where it has them. The name stays this server's.
    pub(crate) fn merge(mut self, other: Server) -> Server {
        for (name, route) in other.routes {
            if self.routes.insert(name.clone(), route).is_some() {
                self.duplicates.push(name);
            }
        }
        self.duplicates.extend(other.duplicates);
        self.subscribers.extend(other.subscribers);
        self.layers.extend(other.layers);
        self.client = other.client.or(self.client);
        self.config = other.config.or(self.config);
        self.authorizer = other.authorizer.or(self.authorizer);
        self
    }

    /// Authenticates callers with `auth`: a call's `authorization` metadata
    /// (`Bearer <token>`; the HTTP header of that name) is inspected into
    /// the [`Account`](crate::auth::Account) its handler sees in
    /// [`Context::account`]. A credential that does not check out is
    /// `Unauthenticated`. Which accounts may call what is up to the
    /// [`rule`](Server::rule)s; with none, every caller may call everything.
    pub fn auth(mut self, auth: impl crate::auth::Auth) -> Server {
        self.authorizer().set_auth(auth);
        self
    }

    /// Adds an access rule; with any rule, a call no rule grants is refused
    /// (`Unauthenticated` without a credential, else `PermissionDenied`),
    /// before its handler runs or its body is read. See
    /// [`micro::auth::Rules`](crate::auth::Rules).
    pub fn rule(mut self, rule: crate::auth::Rule) -> Server {
        self.authorizer().update_rules(|rules| rules.rule(rule));
        self
    }

    /// Lets anyone call `endpoint` (exact, or `Prefix.*`), with or without a
    /// credential.
    pub fn public(self, endpoint: impl Into<String>) -> Server {
        self.rule(crate::auth::Rule::grant("*", endpoint, ""))
    }

    /// A handle to replace this server's rules while it runs (say, when the
    /// configuration they are read from changes).
    pub fn rules_handle(&mut self) -> RulesHandle {
        self.authorizer();
        RulesHandle(self.authorizer.clone().unwrap_or_default())
    }

    fn authorizer(&mut self) -> &auth::Authorizer {
        self.authorizer.get_or_insert_with(Default::default)
    }

    /// Wraps the router in a tower layer, e.g. a concurrency limit or a
    /// tracing layer. Layers added later wrap the ones added before (the last
    /// is outermost). The layered service must keep micro's `Error` as its
    /// error type (map other errors with `tower::util::MapErrLayer`).
    pub fn layer<L>(mut self, layer: L) -> Server
    where
        L: Layer<Handler> + Send + Sync + 'static,
        L::Service: TowerService<Request, Response = Response, Error = Error>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as TowerService<Request>>::Future: Send + 'static,
    {
        self.layers
            .push(Arc::new(move |handler| Handler::new(layer.layer(handler))));
        self
    }

    /// The endpoints, for the registry: one per handler (name, request and
    /// response type names, accepted content types) and one per subscriber
    /// (the topic, the message type, `subscriber=true`).
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let handlers = self.routes.values().map(|route| route.endpoint.clone());
        let subscribers = self.subscribers.iter().map(|spec| {
            let mut endpoint = Endpoint::new(spec.topic.clone());
            endpoint.request = Some(spec.message_type.to_owned());
            endpoint.metadata.insert(SUBSCRIBER_KEY, "true");
            endpoint
        });
        handlers.chain(subscribers).collect()
    }

    /// Checks the server is well formed: every endpoint served once.
    pub fn validate(&self) -> Result<()> {
        if self.duplicates.is_empty() {
            return Ok(());
        }
        Err(Error::already_exists(format!(
            "endpoint(s) handled more than once: {}",
            self.duplicates.join(", ")
        )))
    }

    /// The router as the transport's [`Handler`], wrapped in the layers.
    /// Fails like [`validate`](Server::validate).
    pub fn handler(&self) -> Result<Handler> {
        self.validate()?;
        let router = router::Router::new(
            self.name.clone(),
            self.routes
                .iter()
                .map(|(name, route)| (name.clone(), route.call.clone()))
                .collect(),
            self.client.clone(),
            self.config.clone(),
            self.authorizer.clone(),
        );
        // Declared after the layers, which wrap the router in new handlers.
        let endpoints = EndpointSet::new(self.name.clone(), self.routes.keys().cloned());
        Ok(self
            .layers
            .iter()
            .fold(Handler::new(router), |handler, layer| layer(handler))
            .with_endpoints(endpoints))
    }

    /// Serves the handlers on `address` with `transport` until the listener is shut down.
    pub async fn serve(&self, transport: &dyn Transport, address: &str) -> Result<Listener> {
        transport.listen(address, self.handler()?).await
    }

    /// Subscribes every subscriber on `broker` and starts handling messages;
    /// [`Subscribers::stop`] ends them.
    pub async fn start_subscribers(&self, broker: DynBroker) -> Result<Subscribers> {
        subscriber::start(self, broker).await
    }
}

/// The registry description of an endpoint taking `Req` and answering
/// `Resp`: the type names, the content types `Req` is read from and, with
/// the `schema` feature, the JSON Schemas the endpoint carries.
pub(crate) fn describe<Req: Decode, Resp: Encode>(endpoint: &TypedEndpoint<Req, Resp>) -> Endpoint {
    let mut described = Endpoint::new(endpoint.name());
    described.request = Some(std::any::type_name::<Req>().to_owned());
    described.response = Some(std::any::type_name::<Resp>().to_owned());
    described
        .metadata
        .insert(CONTENT_TYPES_KEY, Req::CONTENT_TYPES.join(","));
    #[cfg(feature = "schema")]
    if let Some((request, response)) = endpoint.schemas() {
        described.request_schema = request;
        described.response_schema = response;
    }
    described
}

/// A handler whose reply the codec refuses (a map with non-string keys in
/// JSON, say) is a bug on the serving side.
pub(crate) fn unencodable_reply(err: Error) -> Error {
    Error::internal(err.message().to_owned())
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("name", &self.name)
            .field("endpoints", &self.routes.keys().collect::<Vec<_>>())
            .field(
                "subscribers",
                &self
                    .subscribers
                    .iter()
                    .map(|spec| spec.topic.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("layers", &self.layers.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use serde::Serialize;
    use tokio::time::Instant;

    use super::*;
    use crate::{
        ErrorKind, Metadata,
        codec::{ContentType, Proto, Raw},
    };

    fn json(value: &impl Serialize) -> Bytes {
        ContentType::Json.encode(value).unwrap()
    }

    async fn call(server: &Server, request: Request) -> Result<Response> {
        server.handler().unwrap().call_once(request).await
    }

    fn adder() -> Server {
        Server::new()
            .name("adder")
            .handle(
                "Adder.Add",
                |_ctx, (a, b): (i64, i64)| async move { Ok(a + b) },
            )
    }

    #[tokio::test]
    async fn answers_in_the_codec_of_the_request() {
        let server = adder();
        let response = call(&server, Request::new("Adder.Add", json(&(2, 3))))
            .await
            .unwrap();
        assert_eq!(response.content_type, codec::JSON);
        assert_eq!(&response.body.into_bytes().unwrap()[..], b"5");

        let body = ContentType::MsgPack.encode(&(2, 3)).unwrap();
        let request = Request::new("Adder.Add", body).with_content_type("application/x-msgpack");
        let response = call(&server, request).await.unwrap();
        assert_eq!(response.content_type, codec::MSGPACK);
        let sum: i64 = ContentType::MsgPack
            .decode(&response.body.into_bytes().unwrap())
            .unwrap();
        assert_eq!(sum, 5);
    }

    #[tokio::test]
    async fn unknown_endpoint_and_content_type_are_refused() {
        let server = adder();
        let err = call(&server, Request::new("Adder.Sub", json(&(1, 1))))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(err.message().contains("Adder.Sub"), "{err}");

        let request = Request::new("Adder.Add", "<a/>").with_content_type("text/xml");
        let err = call(&server, request).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.message().contains(codec::JSON), "{err}");
    }

    #[tokio::test]
    async fn a_panic_fails_only_its_own_call() {
        let server = adder().handle("Adder.Panic", |_ctx, (): ()| async move {
            if true {
                panic!("boom");
            }
            Ok(())
        });
        let err = call(&server, Request::new("Adder.Panic", "null"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert!(
            call(&server, Request::new("Adder.Add", json(&(1, 1))))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_call_past_its_deadline_is_timeout() {
        let server = adder().handle("Adder.Never", |_ctx, (): ()| async move {
            std::future::pending::<()>().await;
            Ok(())
        });
        let request = Request::new("Adder.Never", "null")
            .with_deadline(Instant::now() + Duration::from_millis(20));
        let err = call(&server, request).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
    }

    #[tokio::test]
    async fn handlers_see_their_context() {
        let server = Server::new().name("echo").handle(
            "Echo.Context",
            |ctx: Context, _body: Raw| async move {
                Ok(Raw::from(format!(
                    "{} {} {} {} {}",
                    ctx.service(),
                    ctx.endpoint(),
                    ctx.metadata().get("content-type").unwrap_or_default(),
                    ctx.metadata().get("trace-id").unwrap_or_default(),
                    ctx.remaining().is_some(),
                )))
            },
        );
        let request = Request::new("Echo.Context", "x")
            .with_content_type("text/plain")
            .with_metadata("trace-id", "t1")
            .with_deadline(Instant::now() + Duration::from_secs(60));
        let response = call(&server, request).await.unwrap();
        assert_eq!(response.content_type, codec::OCTET_STREAM);
        assert_eq!(
            &response.body.into_bytes().unwrap()[..],
            b"echo Echo.Context text/plain t1 true"
        );
    }

    #[test]
    fn endpoints_describe_handlers_and_subscribers() {
        #[derive(Clone, PartialEq, prost::Message)]
        struct Ping {
            #[prost(string, tag = "1")]
            text: String,
        }
        let server = adder()
            .handle(
                "Adder.Ping",
                |_ctx, ping: Proto<Ping>| async move { Ok(ping) },
            )
            .subscribe(
                "adder.reset",
                |_ctx, _event: Metadata| async move { Ok(()) },
            );
        let endpoints = server.endpoints();
        let names: Vec<&str> = endpoints.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["Adder.Add", "Adder.Ping", "adder.reset"]);
        assert_eq!(endpoints[0].request.as_deref(), Some("(i64, i64)"));
        assert_eq!(endpoints[0].response.as_deref(), Some("i64"));
        assert_eq!(
            endpoints[0].metadata.get(CONTENT_TYPES_KEY),
            Some("application/json,application/msgpack")
        );
        assert_eq!(
            endpoints[1].metadata.get(CONTENT_TYPES_KEY),
            Some(codec::PROTOBUF)
        );
        assert_eq!(endpoints[2].metadata.get(SUBSCRIBER_KEY), Some("true"));
    }

    #[test]
    fn an_endpoint_handled_twice_is_refused() {
        let server = adder().handle("Adder.Add", |_ctx, (): ()| async move { Ok(()) });
        assert_eq!(
            server.validate().unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );
        assert_eq!(
            server.handler().unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );
    }

    #[tokio::test]
    async fn without_a_client_downstream_calls_fail_clearly() {
        let server = Server::new().handle("Relay.Call", |ctx: Context, (): ()| async move {
            ctx.client().call::<_, ()>("other", "Other.Call", &()).await
        });
        let err = call(&server, Request::new("Relay.Call", "null"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
    }
}
