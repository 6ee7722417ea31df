//! The calling side: call services by name or address, publish messages.
//!
//! A [`Client`] looks a service up in the registry (through a watch-fed
//! cache), lets its [`Selector`] pick a node, dials the node's address with
//! the transport (keeping one [`Channel`] per address) and sends the request
//! encoded with a codec. Publishing goes straight to the broker.
//!
//! # Timeouts and retries
//!
//! | setting | default | per call |
//! |---|---|---|
//! | timeout, for the whole call including every retry | 5 s ([`DEFAULT_TIMEOUT`]) | [`CallBuilder::timeout`] |
//! | retries of retryable errors | 3 ([`DEFAULT_RETRIES`]) | [`CallBuilder::retries`] |
//! | wait before a retry | 10 ms doubling up to 1 s, jittered ([`Backoff::default`]) | |
//!
//! The deadline (now + timeout) travels with the request, so the server stops
//! working on a call its caller gave up on, and a handler's own calls made
//! through [`Context::client`](crate::Context::client) inherit it. Only
//! retryable errors are retried ([`Error::is_retryable`](crate::Error::is_retryable):
//! `Unavailable`, `Aborted`), which includes a service with no reachable node;
//! a retry prefers a node that has not failed this call yet. No retry starts
//! once its backoff would end past the deadline. These rules are one
//! [`RetryPolicy`] (a [`tower::retry::Policy`]), which streams and
//! `GrpcChannel` (feature `transport-grpc`) follow too.

pub(crate) mod call;
mod retry;

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use bytes::Bytes;
use tokio::time::Instant;
use tower::{Layer, Service as TowerService, ServiceExt};

pub use call::CallBuilder;
pub use micro_core::{Attempts, Backoff};
pub(crate) use retry::Tried;
pub use retry::{Resend, RetryPolicy};

use crate::{
    Endpoint, Error, ErrorKind, Metadata, Result,
    broker::{Broker, DynBroker, Message},
    codec::{self, ContentType, Decode, Encode},
    env::EnvConfig,
    registry::{CachingRegistry, DynRegistry, Registry, Service},
    selector::Selector,
    service::NODE_TRANSPORT,
    transport::{Body, Channel, DynTransport, Request, Response, Transport},
};

/// How long a call may take, retries included, unless the call says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How many times a call that failed with a retryable error is tried again.
pub const DEFAULT_RETRIES: u32 = 3;

type ChannelLayer = Arc<dyn Fn(Channel) -> Channel + Send + Sync>;

/// Calls services and publishes messages. Cheap to clone; clones share
/// connections, the registry cache and round-robin positions.
///
/// ```
/// # async fn demo() -> micro::Result<()> {
/// use std::time::Duration;
/// use micro::{Client, registry::memory::MemoryRegistry, broker::memory::MemoryBroker,
///     transport::memory::MemoryTransport};
///
/// let client = Client::builder()
///     .registry(MemoryRegistry::shared())
///     .broker(MemoryBroker::shared())
///     .transport(MemoryTransport::new())
///     .timeout(Duration::from_secs(2))
///     .retries(1)
///     .build()?;
/// let reply: String = client
///     .request("greeter", "Greeter.Hello")
///     .timeout(Duration::from_millis(300))
///     .metadata("trace-id", "abc")
///     .send(&"Ada")
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    scope: Option<Arc<Scope>>,
}

struct Inner {
    backends: Option<Backends>,
    selector: Selector,
    timeout: Duration,
    retries: u32,
    backoff: Backoff,
    layers: Vec<ChannelLayer>,
    content_type: ContentType,
    /// One channel per address, shared so that taking it for a call copies
    /// a pointer rather than the boxed service.
    channels: Mutex<HashMap<String, Arc<Channel>>>,
}

pub(crate) struct Backends {
    registry: CachingRegistry<DynRegistry>,
    transport: DynTransport,
    broker: DynBroker,
}

/// What a client scoped to a handler's call inherits from it.
struct Scope {
    deadline: Option<Instant>,
    metadata: Metadata,
}

impl Client {
    /// A client with the given backends and every default (see the
    /// [module docs](crate::client)).
    pub fn new(registry: impl Registry, transport: impl Transport, broker: impl Broker) -> Client {
        Client::builder().build_inner(Some(Backends {
            registry: crate::env::cached(Arc::new(registry)),
            transport: Arc::new(transport),
            broker: Arc::new(broker),
        }))
    }

    /// Starts configuring a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client whose backends come from `MICRO_REGISTRY`, `MICRO_BROKER` and
    /// `MICRO_TRANSPORT` (see [`env`](mod@crate::env)).
    pub fn from_env() -> Result<Client> {
        let config = EnvConfig::from_env()?;
        Client::builder()
            .registry(config.registry()?)
            .transport(config.transport()?)
            .broker(config.broker()?)
            .build()
    }

    /// A client whose every call fails with `FailedPrecondition` saying why:
    /// what a handler served without a client gets from its context.
    pub(crate) fn detached() -> Client {
        ClientBuilder::default().build_inner(None)
    }

    /// This client, with calls bounded by `deadline` and carrying `metadata`.
    pub(crate) fn scoped(&self, deadline: Option<Instant>, metadata: Metadata) -> Client {
        Client {
            inner: self.inner.clone(),
            scope: Some(Arc::new(Scope { deadline, metadata })),
        }
    }

    /// A copy of this client whose calls and publishes carry the credential
    /// `token` (`authorization: Bearer <token>`: the HTTP header, the gRPC
    /// metadata, a broker message header), for servers that authenticate
    /// callers ([`ServiceBuilder::auth`](crate::ServiceBuilder::auth)).
    pub fn with_bearer_token(&self, token: &str) -> Client {
        let mut metadata = self.scope_metadata();
        metadata.insert("authorization", format!("Bearer {token}"));
        let deadline = self.scope.as_ref().and_then(|scope| scope.deadline);
        self.scoped(deadline, metadata)
    }

    /// The timeout of calls that do not set their own.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The number of retries of calls that do not set their own.
    pub fn retries(&self) -> u32 {
        self.inner.retries
    }

    /// Starts a call of `endpoint` on the service `service`, to set per-call
    /// options. `endpoint` is a typed [`Endpoint`] or a name (its types are
    /// then inferred from what is sent and expected).
    pub fn request<Req: ?Sized, Resp>(
        &self,
        service: impl Into<String>,
        endpoint: impl Into<Endpoint<Req, Resp>>,
    ) -> CallBuilder<Req, Resp> {
        CallBuilder::new(self.clone(), service.into(), endpoint.into().into_name())
    }

    /// Calls `endpoint` of a node of `service`, found in the registry.
    ///
    /// The request and reply types choose the codec ([`codec`](mod@crate::codec)):
    /// a plain serde request is sent in the client's content type (JSON unless
    /// [`ClientBuilder::content_type`] says otherwise), a
    /// [`Proto<T>`](crate::codec::Proto) as protobuf, and so on; the reply is
    /// decoded from the content type the server answers with.
    ///
    /// ```
    /// # async fn demo(client: micro::Client) -> micro::Result<()> {
    /// use micro::Endpoint;
    ///
    /// const HELLO: Endpoint<str, String> = Endpoint::new("Greeter.Hello");
    /// let reply = client.call("greeter", HELLO, "Ada").await?;
    /// // or with the types inferred from the request and the reply:
    /// let reply: String = client.call("greeter", "Greeter.Hello", "Ada").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn call<Req, Resp>(
        &self,
        service: &str,
        endpoint: impl Into<Endpoint<Req, Resp>>,
        request: &Req,
    ) -> Result<Resp>
    where
        Req: Encode + ?Sized,
        Resp: Decode,
    {
        self.request(service, endpoint).send(request).await
    }

    /// Calls `endpoint` of the server at `address`, without the registry.
    pub async fn call_address<Req, Resp>(
        &self,
        address: &str,
        endpoint: impl Into<Endpoint<Req, Resp>>,
        request: &Req,
    ) -> Result<Resp>
    where
        Req: Encode + ?Sized,
        Resp: Decode,
    {
        self.request("", endpoint)
            .address(address)
            .send(request)
            .await
    }

    /// Publishes `message` to `topic`, encoded with its type's codec (JSON
    /// for a serde type) and labelled with a `content-type` header.
    ///
    /// A client from [`Context::client`](crate::Context::client) also sends the
    /// handler's propagated metadata as headers. Waits at most the client's
    /// timeout for the broker to accept the message.
    pub async fn publish<T: Encode + ?Sized>(&self, topic: &str, message: &T) -> Result<()> {
        self.publish_with(topic, message, Metadata::new()).await
    }

    /// Publishes `message` to `topic` with extra headers. A `content-type`
    /// header chooses among the content types the message's type can be
    /// written as (`application/msgpack` for a serde type, say); without one
    /// it is the type's first (JSON for a serde type).
    pub async fn publish_with<T: Encode + ?Sized>(
        &self,
        topic: &str,
        message: &T,
        headers: Metadata,
    ) -> Result<()> {
        let backends = self.backends()?;
        let (label, format) = match headers.get("content-type") {
            Some(asked) => {
                let format = T::negotiate(asked).ok_or_else(|| {
                    Error::invalid_argument(format!(
                        "{} is published as {}, not {asked:?}",
                        std::any::type_name::<T>(),
                        T::CONTENT_TYPES.join(" or ")
                    ))
                })?;
                (asked.to_owned(), format)
            }
            None => {
                let format = T::CONTENT_TYPES
                    .first()
                    .copied()
                    .unwrap_or(codec::OCTET_STREAM);
                (format.to_owned(), format)
            }
        };
        let body = codec::encode_message(message, format)?;
        let mut all = self.scope_metadata();
        all.extend_from(&headers);
        all.insert("content-type", label);
        let message = Message { headers: all, body };
        let deadline = self.deadline_after(self.inner.timeout);
        tokio::time::timeout_at(deadline, backends.broker.publish(topic, message))
            .await
            .map_err(|_| {
                Error::timeout(format!(
                    "the broker did not accept a message on {topic:?} in time"
                ))
            })?
            .map_err(|err| err.context(format!("publishing to {topic:?}")))?;
        crate::metrics::Metrics::global().message(topic, "published");
        Ok(())
    }

    /// Waits until the broker has sent on what it accepted ([`Broker::flush`]);
    /// a detached client has published nothing.
    pub(crate) async fn flush_broker(&self) -> Result<()> {
        match &self.inner.backends {
            Some(backends) => backends.broker.flush().await,
            None => Ok(()),
        }
    }

    pub(crate) fn backends(&self) -> Result<&Backends> {
        self.inner.backends.as_ref().ok_or_else(|| {
            Error::failed_precondition(
                "this handler's server has no client: serve it through micro::Service, \
                 or give the Server one with Server::client",
            )
        })
    }

    pub(crate) fn scope_metadata(&self) -> Metadata {
        self.scope
            .as_ref()
            .map(|scope| scope.metadata.clone())
            .unwrap_or_default()
    }

    /// The deadline inherited from a handler's call, for a client from
    /// [`Context::client`](crate::Context::client).
    pub(crate) fn scope_deadline(&self) -> Option<Instant> {
        self.scope.as_ref().and_then(|scope| scope.deadline)
    }

    /// The content type of serde calls that do not choose their own.
    pub(crate) fn default_content_type(&self) -> ContentType {
        self.inner.content_type
    }

    /// The retry policy of a call that does not set its own retries.
    pub(crate) fn retry_policy(&self, retries: Option<u32>) -> RetryPolicy {
        RetryPolicy::new(retries.unwrap_or(self.inner.retries), self.inner.backoff)
    }

    /// Now + `timeout`, but no later than the scope's deadline.
    fn deadline_after(&self, timeout: Duration) -> Instant {
        let deadline = Instant::now() + timeout;
        match self.scope.as_ref().and_then(|scope| scope.deadline) {
            Some(inherited) => deadline.min(inherited),
            None => deadline,
        }
    }

    /// Sends one call, retrying retryable failures until the deadline.
    async fn invoke(
        &self,
        call: call::CallSpec,
        content_type: &'static str,
        body: Bytes,
    ) -> Result<Response> {
        let backends = self.backends()?;
        let timeout = call.timeout.unwrap_or(self.inner.timeout);
        let mut deadline = self.deadline_after(timeout);
        if let Some(requested) = call.deadline {
            deadline = deadline.min(requested);
        }
        let mut metadata = self.scope_metadata();
        metadata.extend_from(&call.metadata);
        let policy = self.retry_policy(call.retries).until(Some(deadline));
        let tried = Tried::default();
        let tries = UnaryTries {
            backends,
            call: &call,
            content_type,
            deadline,
            timeout,
            tried: &tried,
        };
        let send = tower::service_fn(move |attempt| self.attempt(tries, attempt));
        let timer = crate::metrics::Metrics::global().start(
            crate::metrics::Side::Client,
            call.target(),
            &call.endpoint,
        );
        let outcome = tower::retry::Retry::new(policy, send)
            .oneshot(UnaryTry { metadata, body })
            .await;
        timer.finish(outcome)
    }

    /// One try, bounded by the call's deadline.
    ///
    /// Finding the node and its channel is raced against the deadline; it
    /// usually finishes at once (a cached lookup, a known channel), and then
    /// never arms a timer. Every transport fails a call past its request's
    /// deadline with `Timeout` (a rule its conformance suite checks), so a
    /// bare channel is not raced again here: one timer per call, not two.
    /// Channel layers may wait before the transport sees the request (a
    /// concurrency limit, say), so a layered channel is raced.
    async fn attempt(&self, tries: UnaryTries<'_>, attempt: UnaryTry) -> Result<Response> {
        let call = tries.call;
        let deadline = tries.deadline;
        let timeout = tries.timeout;
        let past_deadline = || call.deadline_exceeded(timeout);
        // The node is borrowed from the registry's snapshot, which lives as
        // long as this try: its id and address are copied only when needed.
        let services;
        let (address, node_id) = match &call.address {
            Some(address) => (std::borrow::Cow::Borrowed(address.as_str()), None),
            None => {
                let lookup = self.lookup(tries.backends, &call.service);
                services = tokio::time::timeout_at(deadline, lookup)
                    .await
                    .unwrap_or_else(|_| Err(past_deadline()))?;
                let node = self.pick_node(
                    tries.backends,
                    &call.service,
                    &services,
                    &tries.tried.lock(),
                )?;
                (crate::service::dial_address(node), Some(node.id.as_str()))
            }
        };
        let channel = tokio::time::timeout_at(deadline, self.channel(tries.backends, &address))
            .await
            .unwrap_or_else(|_| Err(past_deadline()))?;
        let request = Request {
            service: call.service.clone(),
            endpoint: call.endpoint.clone(),
            content_type: tries.content_type.to_owned(),
            metadata: attempt.metadata,
            deadline: Some(deadline),
            body: Body::Full(attempt.body),
        };
        let result = if self.inner.layers.is_empty() {
            match channel.call_once(request).await {
                Err(err) if err.kind() == ErrorKind::Timeout && Instant::now() >= deadline => {
                    Err(past_deadline())
                }
                result => result,
            }
        } else {
            tokio::time::timeout_at(deadline, channel.call_once(request))
                .await
                .unwrap_or_else(|_| Err(past_deadline()))
        };
        if let Err(err) = &result {
            if let Some(id) = node_id {
                tries.tried.add(id);
            }
            if err.kind() == ErrorKind::Unavailable {
                // The connection may be what broke: dial afresh next time.
                self.forget_channel(&address);
            }
        }
        result
    }

    /// The versions of `service` with nodes, as the registry cache shares them.
    pub(crate) async fn lookup(
        &self,
        backends: &Backends,
        service: &str,
    ) -> Result<Arc<Vec<Service>>> {
        backends
            .registry
            .get_service_shared(service)
            .await
            .map_err(|err| err.context(format!("looking up service {service:?}")))
    }

    /// A node of `services` reachable over this client's transport, as the
    /// selector picks it.
    pub(crate) fn pick_node<'a>(
        &self,
        backends: &Backends,
        service: &str,
        services: &'a [Service],
        tried: &[String],
    ) -> Result<&'a crate::registry::Node> {
        let scheme = backends.transport.scheme();
        let reachable = |node: &crate::registry::Node| match node.metadata.get(NODE_TRANSPORT) {
            Some(transport) => transport == scheme,
            None => true,
        };
        self.inner
            .selector
            .pick(service, services, tried, reachable)
            .map_err(|err| transport_mismatch(service, services, scheme).unwrap_or(err))
    }

    /// The channel to `address`, shared by every call to it.
    pub(crate) async fn channel(&self, backends: &Backends, address: &str) -> Result<Arc<Channel>> {
        if let Some(channel) = self.channels().get(address) {
            return Ok(Arc::clone(channel));
        }
        let dialed = backends
            .transport
            .dial(address)
            .await
            .map_err(|err| err.context(format!("dialing {address}")))?;
        let layered = self
            .inner
            .layers
            .iter()
            .fold(dialed, |channel, layer| layer(channel));
        Ok(Arc::clone(
            self.channels()
                .entry(address.to_owned())
                .or_insert_with(|| Arc::new(layered)),
        ))
    }

    pub(crate) fn forget_channel(&self, address: &str) {
        self.channels().remove(address);
    }

    fn channels(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Channel>>> {
        // Only cloned into and out of under the lock, so a poisoned map is intact.
        self.inner
            .channels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The error for a service whose nodes all sit on other transports than
/// `scheme`, if that is why no node could be picked.
fn transport_mismatch(service: &str, services: &[Service], scheme: &str) -> Option<Error> {
    let transports = || {
        services
            .iter()
            .flat_map(|entry| entry.nodes.iter())
            .map(|node| node.metadata.get(NODE_TRANSPORT))
    };
    if transports().any(|transport| transport.is_none_or(|transport| transport == scheme)) {
        return None;
    }
    let mut elsewhere: Vec<&str> = transports().flatten().collect();
    if elsewhere.is_empty() {
        return None;
    }
    elsewhere.sort_unstable();
    elsewhere.dedup();
    Some(Error::unavailable(format!(
        "service {service:?} has nodes only on transport(s) {}, but this client uses {scheme}",
        elsewhere.join(", ")
    )))
}

/// One try of a call.
/// What each try of one unary call sends; a retry sends it again.
#[derive(Clone)]
struct UnaryTry {
    metadata: Metadata,
    body: Bytes,
}

impl Resend for UnaryTry {
    fn resend(&self) -> Option<UnaryTry> {
        Some(self.clone())
    }
}

/// What every try of one unary call shares.
#[derive(Clone, Copy)]
struct UnaryTries<'a> {
    backends: &'a Backends,
    call: &'a call::CallSpec,
    content_type: &'static str,
    deadline: Instant,
    timeout: Duration,
    tried: &'a Tried,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Client");
        if let Some(backends) = &self.inner.backends {
            debug
                .field("registry", &backends.registry.scheme())
                .field("transport", &backends.transport.scheme())
                .field("broker", &backends.broker.scheme());
        } else {
            debug.field("detached", &true);
        }
        debug
            .field("selector", &self.inner.selector)
            .field("timeout", &self.inner.timeout)
            .field("retries", &self.inner.retries)
            .field("backoff", &self.inner.backoff)
            .field("content_type", &self.inner.content_type)
            .field("scoped", &self.scope.is_some())
            .finish_non_exhaustive()
    }
}

/// Configures a [`Client`]; see [`Client::builder`].
///
/// Backends not given default to the in-process ones
/// ([`MemoryRegistry::shared`](crate::registry::memory::MemoryRegistry::shared),
/// [`MemoryBroker::shared`](crate::broker::memory::MemoryBroker::shared)) and
/// the HTTP transport, when their features are compiled in.
pub struct ClientBuilder {
    registry: Option<DynRegistry>,
    transport: Option<DynTransport>,
    broker: Option<DynBroker>,
    selector: Selector,
    timeout: Duration,
    retries: u32,
    backoff: Backoff,
    layers: Vec<ChannelLayer>,
    content_type: ContentType,
}

impl Default for ClientBuilder {
    fn default() -> ClientBuilder {
        ClientBuilder {
            registry: None,
            transport: None,
            broker: None,
            selector: Selector::default(),
            timeout: DEFAULT_TIMEOUT,
            retries: DEFAULT_RETRIES,
            backoff: Backoff::default(),
            layers: Vec::new(),
            content_type: ContentType::Json,
        }
    }
}

impl ClientBuilder {
    /// Where to look services up. Lookups go through a watch-fed cache.
    pub fn registry(mut self, registry: impl Registry) -> ClientBuilder {
        self.registry = Some(Arc::new(registry));
        self
    }

    /// How to reach nodes.
    pub fn transport(mut self, transport: impl Transport) -> ClientBuilder {
        self.transport = Some(Arc::new(transport));
        self
    }

    /// Where to publish.
    pub fn broker(mut self, broker: impl Broker) -> ClientBuilder {
        self.broker = Some(Arc::new(broker));
        self
    }

    /// How to pick a node (default: random, no filters).
    pub fn selector(mut self, selector: Selector) -> ClientBuilder {
        self.selector = selector;
        self
    }

    /// The time a call may take, retries included (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.timeout = timeout;
        self
    }

    /// How many times a retryable failure is retried (default 3).
    pub fn retries(mut self, retries: u32) -> ClientBuilder {
        self.retries = retries;
        self
    }

    /// The wait before each retry (default: 10 ms doubling up to 1 s, jittered).
    pub fn backoff(mut self, backoff: Backoff) -> ClientBuilder {
        self.backoff = backoff;
        self
    }

    /// The content type of plain serde requests (default JSON; must be JSON
    /// or MessagePack): requests of types that carry one codec only
    /// ([`Proto<T>`](crate::codec::Proto), [`Json<T>`](crate::codec::Json),
    /// ...) are sent in theirs. See [`codec`](mod@crate::codec).
    pub fn content_type(mut self, content_type: ContentType) -> ClientBuilder {
        self.content_type = content_type;
        self
    }

    /// Wraps every dialed [`Channel`] in a tower layer. Layers added later wrap
    /// the ones added before (the last is outermost).
    pub fn layer<L>(mut self, layer: L) -> ClientBuilder
    where
        L: Layer<Channel> + Send + Sync + 'static,
        L::Service: TowerService<Request, Response = Response, Error = Error>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as TowerService<Request>>::Future: Send + 'static,
    {
        self.layers
            .push(Arc::new(move |channel| Channel::new(layer.layer(channel))));
        self
    }

    /// The client. Fails only when a backend was not given and its default's
    /// feature is not compiled in, or the content type cannot encode serde types.
    pub fn build(mut self) -> Result<Client> {
        let defaults = EnvConfig::default();
        let registry = match self.registry.take() {
            Some(registry) => registry,
            None => defaults.registry()?,
        };
        let transport = match self.transport.take() {
            Some(transport) => transport,
            None => defaults.transport()?,
        };
        let broker = match self.broker.take() {
            Some(broker) => broker,
            None => defaults.broker()?,
        };
        self.build_for(registry, transport, broker)
    }

    /// The client over the given backends, replacing any set on this builder:
    /// how a service gives its own client its registry, transport and broker.
    pub(crate) fn build_for(
        self,
        registry: DynRegistry,
        transport: DynTransport,
        broker: DynBroker,
    ) -> Result<Client> {
        if !self.content_type.is_serde() {
            return Err(Error::invalid_argument(format!(
                "a client's default content type must be {} or {}, not {}",
                codec::JSON,
                codec::MSGPACK,
                self.content_type
            )));
        }
        Ok(self.build_inner(Some(Backends {
            registry: crate::env::cached(registry),
            transport,
            broker,
        })))
    }

    fn build_inner(self, backends: Option<Backends>) -> Client {
        Client {
            inner: Arc::new(Inner {
                backends,
                selector: self.selector,
                timeout: self.timeout,
                retries: self.retries,
                backoff: self.backoff,
                layers: self.layers,
                content_type: self.content_type,
                channels: Mutex::new(HashMap::new()),
            }),
            scope: None,
        }
    }
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("selector", &self.selector)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("backoff", &self.backoff)
            .field("layers", &self.layers.len())
            .field("content_type", &self.content_type)
            .finish_non_exhaustive()
    }
}
