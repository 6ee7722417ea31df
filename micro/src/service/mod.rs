//! The [`Service`] builder: a server, a client and the backends they share,
//! registered in the registry for as long as it runs.
//!
//! # Lifecycle
//!
//! [`Service::start`]:
//! 1. runs the `before_start` hooks;
//! 2. listens on the address (default `127.0.0.1:0`: a free loopback port);
//! 3. registers one node with a TTL (default 30 s): id `NAME-` plus 16 random
//!    hex digits, the address the transport bound, and node metadata
//!    `transport` (the transport's scheme), `content-types` (the codecs
//!    understood) and the service's own metadata; the registry entry also
//!    lists every endpoint with its request and response types;
//! 4. starts the subscribers;
//! 5. re-registers every interval (default 10 s) so the node outlives its TTL
//!    only while the process lives; a failing re-registration is logged and
//!    retried sooner (from 500 ms, doubling up to the interval), never fatal;
//! 6. runs the `after_start` hooks.
//!
//! [`RunningService::stop`]: runs the `before_stop` hooks; stops re-registering
//! and deregisters the node at once (callers stop choosing it); stops taking
//! messages and stops accepting calls; lets in-flight calls and messages finish
//! for up to the grace period (default 10 s); runs the `after_stop` hooks.
//!
//! [`Service::run`] is start, then wait for SIGINT or SIGTERM, then stop;
//! [`Service::run_until`] waits for a future instead.

mod running;

use std::{fmt, future::Future, sync::Arc, time::Duration};

use futures::{FutureExt, future::BoxFuture};

pub use running::RunningService;

use crate::{
    Client, ClientBuilder, Context, Error, Metadata, Result, Server,
    broker::{Broker, DynBroker},
    codec::{Decode, Encode},
    env::EnvConfig,
    registry::{DynRegistry, Registry},
    transport::{DynTransport, Transport},
};

/// How long a registration lives unless renewed.
pub const DEFAULT_REGISTER_TTL: Duration = Duration::from_secs(30);
/// How often a running service renews its registration.
pub const DEFAULT_REGISTER_INTERVAL: Duration = Duration::from_secs(10);
/// How long [`RunningService::stop`] lets in-flight calls finish.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);
/// Where a service listens unless told otherwise: a free loopback port.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:0";

/// Node metadata key: the scheme of the transport the node serves on.
pub const NODE_TRANSPORT: &str = "transport";
/// Node metadata key: the content types the node understands, comma-separated.
pub const NODE_CONTENT_TYPES: &str = "content-types";
/// Node metadata key: `true` when the node serves TLS, so clients dial it
/// over TLS (`https://`) without being told.
pub const NODE_TLS: &str = "tls";

/// The address a client dials for `node`: `https://` in front when the node
/// registered that it serves TLS.
pub(crate) fn dial_address(node: &crate::registry::Node) -> std::borrow::Cow<'_, str> {
    if node.metadata.get(NODE_TLS) == Some("true") {
        std::borrow::Cow::Owned(format!("https://{}", node.address))
    } else {
        std::borrow::Cow::Borrowed(node.address.as_str())
    }
}

type Hook = Arc<dyn Fn() -> BoxFuture<'static, Result<()>> + Send + Sync>;
type RunningHook = Arc<dyn Fn(&RunningService) -> BoxFuture<'static, Result<()>> + Send + Sync>;

#[derive(Clone, Default)]
struct Hooks {
    before_start: Vec<Hook>,
    after_start: Vec<RunningHook>,
    before_stop: Vec<RunningHook>,
    after_stop: Vec<Hook>,
}

/// A service ready to start: see [`Service::builder`] and the [module docs](self).
pub struct Service {
    name: String,
    version: String,
    metadata: Metadata,
    address: String,
    registry: DynRegistry,
    broker: DynBroker,
    transport: DynTransport,
    register_ttl: Duration,
    register_interval: Duration,
    grace_period: Duration,
    admin_address: Option<String>,
    server: Server,
    hooks: Hooks,
    client: Client,
}

impl Service {
    /// Starts describing a service called `name`.
    ///
    /// ```
    /// # async fn demo() -> micro::Result<()> {
    /// let service = micro::Service::builder("greeter")
    ///     .version("1.0.0")
    ///     .handle("Greeter.Hello", |_ctx, name: String| async move { Ok(format!("Hello, {name}")) })
    ///     .build()?;
    /// let running = service.start().await?;
    /// let reply: String = running.client().call("greeter", "Greeter.Hello", "Ada").await?;
    /// assert_eq!(reply, "Hello, Ada");
    /// running.stop().await?;
    /// # Ok(())
    /// # }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    pub fn builder(name: impl Into<String>) -> ServiceBuilder {
        ServiceBuilder::new(name.into())
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The service's version (may be empty).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The configuration given with [`ServiceBuilder::config`], if any.
    pub fn config(&self) -> Option<&crate::config::Config> {
        self.server.configuration()
    }

    /// A client sharing this service's registry, transport and broker; the
    /// same one its handlers reach through [`Context::client`].
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The registry the service registers in.
    pub fn registry(&self) -> &DynRegistry {
        &self.registry
    }

    /// The broker its subscribers listen on.
    pub fn broker(&self) -> &DynBroker {
        &self.broker
    }

    /// The transport it serves on.
    pub fn transport(&self) -> &DynTransport {
        &self.transport
    }

    /// Listens, registers, subscribes and starts re-registering; see the
    /// [module docs](self). Whatever was started is undone when a step fails.
    pub async fn start(self) -> Result<RunningService> {
        running::start(self).await
    }

    /// Starts, serves until SIGINT or SIGTERM (Ctrl-C only, off Unix), then
    /// stops: deregisters, drains in-flight calls for up to the grace period
    /// and returns.
    pub async fn run(self) -> Result<()> {
        // Listening for the signals before starting means a signal that
        // arrives once the node is registered is never the default,
        // process-killing one.
        let signal = running::shutdown_signal()?;
        let running = self.start().await?;
        signal.await;
        running.stop().await
    }

    /// Starts, serves until `shutdown` completes, then stops like [`Service::run`].
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let running = self.start().await?;
        shutdown.await;
        running.stop().await
    }
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("address", &self.address)
            .field("registry", &self.registry.scheme())
            .field("broker", &self.broker.scheme())
            .field("transport", &self.transport.scheme())
            .field("register_ttl", &self.register_ttl)
            .field("register_interval", &self.register_interval)
            .field("grace_period", &self.grace_period)
            .field("server", &self.server)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

/// Describes a [`Service`]; from [`Service::builder`].
///
/// Everything but the name is optional: backends not given come from
/// [`build_from_env`](ServiceBuilder::build_from_env) or default, in
/// [`build`](ServiceBuilder::build), to the process-wide in-memory registry
/// and broker and the HTTP transport on `127.0.0.1:0`.
#[must_use = "a service builder does nothing until built and started"]
pub struct ServiceBuilder {
    name: String,
    version: String,
    metadata: Metadata,
    address: Option<String>,
    registry: Option<DynRegistry>,
    broker: Option<DynBroker>,
    transport: Option<DynTransport>,
    /// `None`: from `MICRO_REGISTER_TTL` in `build_from_env`, else the default.
    register_ttl: Option<Duration>,
    /// `None`: from `MICRO_REGISTER_INTERVAL`, else a third of the TTL if that was set, else the default.
    register_interval: Option<Duration>,
    grace_period: Duration,
    server: Server,
    hooks: Hooks,
    client: ClientBuilder,
    admin_address: Option<String>,
}

impl ServiceBuilder {
    fn new(name: String) -> ServiceBuilder {
        ServiceBuilder {
            server: Server::new().name(name.clone()),
            name,
            version: String::new(),
            metadata: Metadata::new(),
            address: None,
            registry: None,
            broker: None,
            transport: None,
            register_ttl: None,
            register_interval: None,
            grace_period: DEFAULT_GRACE_PERIOD,
            hooks: Hooks::default(),
            client: Client::builder(),
            admin_address: None,
        }
    }

    /// The version registered (`1.0.0`), for selectors that filter by version.
    pub fn version(mut self, version: impl Into<String>) -> ServiceBuilder {
        self.version = version.into();
        self
    }

    /// Adds a metadata pair, registered on the service and on its node (where
    /// selectors can filter by it).
    pub fn metadata(mut self, key: &str, value: impl Into<String>) -> ServiceBuilder {
        self.metadata.insert(key, value);
        self
    }

    /// Where to listen, in the transport's syntax (default `127.0.0.1:0`).
    pub fn address(mut self, address: impl Into<String>) -> ServiceBuilder {
        self.address = Some(address.into());
        self
    }

    /// The registry to register in.
    pub fn registry(mut self, registry: impl Registry) -> ServiceBuilder {
        self.registry = Some(Arc::new(registry));
        self
    }

    /// The broker for subscribers and publishing.
    pub fn broker(mut self, broker: impl Broker) -> ServiceBuilder {
        self.broker = Some(Arc::new(broker));
        self
    }

    /// The transport to serve on and call with.
    pub fn transport(mut self, transport: impl Transport) -> ServiceBuilder {
        self.transport = Some(Arc::new(transport));
        self
    }

    /// The service's configuration: its handlers and subscribers read it
    /// through [`Context::config`]. See [`config`](crate::config) for
    /// sources (files, environment, flags, etcd, NATS KV, Consul KV); a
    /// source that fails later leaves the service on its last good values.
    pub fn config(mut self, config: crate::config::Config) -> ServiceBuilder {
        self.server = self.server.config(config);
        self
    }

    /// Configures the service's own client (the one [`Service::client`],
    /// [`RunningService::client`] and handlers' [`Context::client`] use):
    /// timeout, retries, backoff, selector, content type, tower layers.
    ///
    /// The client always uses the service's registry, transport and broker;
    /// backends set on the [`ClientBuilder`] here are replaced by those.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use micro::{Selector, Service};
    ///
    /// let service = Service::builder("frontend")
    ///     .configure_client(|client| {
    ///         client.timeout(Duration::from_secs(2)).retries(1).selector(Selector::round_robin())
    ///     })
    ///     .build()?;
    /// assert_eq!(service.client().timeout(), Duration::from_secs(2));
    /// assert_eq!(service.client().retries(), 1);
    /// # Ok::<(), micro::Error>(())
    /// ```
    pub fn configure_client(
        mut self,
        configure: impl FnOnce(ClientBuilder) -> ClientBuilder,
    ) -> ServiceBuilder {
        self.client = configure(self.client);
        self
    }

    /// How long the registration lives unless renewed (default 30 s).
    pub fn register_ttl(mut self, ttl: Duration) -> ServiceBuilder {
        self.register_ttl = Some(ttl);
        self
    }

    /// How often the registration is renewed (default 10 s); must be shorter
    /// than the TTL.
    pub fn register_interval(mut self, interval: Duration) -> ServiceBuilder {
        self.register_interval = Some(interval);
        self
    }

    /// How long stopping lets in-flight calls and messages finish (default 10 s).
    pub fn grace_period(mut self, grace: Duration) -> ServiceBuilder {
        self.grace_period = grace;
        self
    }

    /// Serves `/metrics`, `/health/live` and `/health/ready` on `address`
    /// ([`micro::admin`](crate::admin)) while the service runs; else
    /// `MICRO_ADMIN_ADDRESS` in `build_from_env`, else no admin listener.
    pub fn admin_address(mut self, address: impl Into<String>) -> ServiceBuilder {
        self.admin_address = Some(address.into());
        self
    }

    /// Serves `endpoint` with `handler`: [`Server::handle`] on the
    /// service's server, the one shortcut the builder keeps for the most
    /// common case. Everything else a server does (streaming endpoints,
    /// subscribers, tower layers) is built on a [`Server`] given to
    /// [`server`](ServiceBuilder::server).
    pub fn handle<Req, Resp, F, Fut>(
        mut self,
        endpoint: impl Into<crate::Endpoint<Req, Resp>>,
        handler: F,
    ) -> ServiceBuilder
    where
        F: Fn(Context, Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp>> + Send + 'static,
        Req: Decode + Send + 'static,
        Resp: Encode + Send + 'static,
    {
        self.server = self.server.handle(endpoint, handler);
        self
    }

    /// Serves everything `server` serves: its handlers, streaming endpoints,
    /// subscribers and tower layers are added to those of the service (an
    /// endpoint served twice fails [`build`](ServiceBuilder::build) with
    /// `AlreadyExists`), and its config, if it has one, becomes the
    /// service's. The service's name names the server: its handlers see it
    /// in their [`Context`] and its subscribers' queue group is it.
    ///
    /// ```
    /// use micro::{Server, Service, SubscribeOptions};
    ///
    /// let server = Server::new()
    ///     .handle_server_stream("Numbers.Count", |_ctx, to: u32| async move {
    ///         Ok(futures::stream::iter((0..to).map(Ok)))
    ///     })
    ///     .subscribe_with("numbers.reset", SubscribeOptions::fanout(), |_ctx, (): ()| async move {
    ///         Ok(())
    ///     })
    ///     .layer(tower::limit::ConcurrencyLimitLayer::new(64));
    /// let service = Service::builder("numbers").server(server).build()?;
    /// # Ok::<(), micro::Error>(())
    /// ```
    pub fn server(mut self, server: Server) -> ServiceBuilder {
        self.server = self.server.merge(server);
        self
    }

    /// Authenticates callers with `auth` ([`Server::auth`]): handlers see
    /// the caller's account in [`Context::account`].
    ///
    /// ```
    /// use micro::auth::{Account, Rule, tokens::StaticTokens};
    ///
    /// let service = micro::Service::builder("orders")
    ///     .auth(StaticTokens::new().token("t-1", Account::new("ada", "static").with_scopes(["orders:read"])))
    ///     .public("Health.*")
    ///     .rule(Rule::grant("orders", "Orders.*", "orders:read"))
    ///     .handle("Orders.Get", |ctx, id: u64| async move {
    ///         let who = ctx.account().map(|account| account.id.clone());
    ///         Ok(format!("order {id} for {who:?}"))
    ///     })
    ///     .build()?;
    /// # drop(service);
    /// # Ok::<(), micro::Error>(())
    /// ```
    pub fn auth(mut self, auth: impl crate::auth::Auth) -> ServiceBuilder {
        self.server = self.server.auth(auth);
        self
    }

    /// Adds an access rule ([`Server::rule`]): with any rule, a call no rule
    /// grants is refused before its handler runs or its body is read.
    pub fn rule(mut self, rule: crate::auth::Rule) -> ServiceBuilder {
        self.server = self.server.rule(rule);
        self
    }

    /// Lets anyone call `endpoint` (exact, or `Prefix.*`) ([`Server::public`]).
    pub fn public(mut self, endpoint: impl Into<String>) -> ServiceBuilder {
        self.server = self.server.public(endpoint);
        self
    }

    /// A handle to replace the service's rules while it runs
    /// ([`Server::rules_handle`]), for rules kept in configuration.
    pub fn rules_handle(&mut self) -> crate::server::RulesHandle {
        self.server.rules_handle()
    }

    /// Runs before the service listens; an error aborts the start.
    pub fn before_start<F, Fut>(mut self, hook: F) -> ServiceBuilder
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.hooks
            .before_start
            .push(Arc::new(move || hook().boxed()));
        self
    }

    /// Runs once the service serves, is registered and subscribed; sees the
    /// running service (its address, node id, client). An error stops the
    /// service again and is returned by [`Service::start`].
    pub fn after_start<F, Fut>(mut self, hook: F) -> ServiceBuilder
    where
        F: Fn(&RunningService) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.hooks
            .after_start
            .push(Arc::new(move |running| hook(running).boxed()));
        self
    }

    /// Runs first thing when stopping, while the service still serves. An
    /// error is logged, the stop goes on, and [`RunningService::stop`] returns it.
    pub fn before_stop<F, Fut>(mut self, hook: F) -> ServiceBuilder
    where
        F: Fn(&RunningService) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.hooks
            .before_stop
            .push(Arc::new(move |running| hook(running).boxed()));
        self
    }

    /// Runs last when stopping, once calls are drained. An error is returned
    /// by [`RunningService::stop`].
    pub fn after_stop<F, Fut>(mut self, hook: F) -> ServiceBuilder
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.hooks.after_stop.push(Arc::new(move || hook().boxed()));
        self
    }

    /// The service, with backends not given defaulting to the process-wide
    /// in-memory registry and broker and the HTTP transport.
    ///
    /// Fails on an empty name, a re-register interval not shorter than the
    /// TTL, an endpoint handled twice, a client content type that cannot encode
    /// serde types, or a default backend whose feature is not compiled in.
    pub fn build(self) -> Result<Service> {
        self.build_from(&EnvConfig::default())
    }

    /// The service, with backends not given (and the address, if not given)
    /// chosen by `MICRO_REGISTRY`, `MICRO_BROKER`, `MICRO_TRANSPORT` and their
    /// `_ADDRESS` variables; see [`env`](mod@crate::env). Explicit settings win.
    pub fn build_from_env(self) -> Result<Service> {
        self.build_from(&EnvConfig::from_env()?)
    }

    /// Like [`build_from_env`](ServiceBuilder::build_from_env), from an
    /// [`EnvConfig`] read elsewhere.
    pub fn build_from(self, env: &EnvConfig) -> Result<Service> {
        let (register_ttl, register_interval) = self.register_timing(env);
        self.validate(register_ttl, register_interval)?;
        let registry = match self.registry {
            Some(registry) => registry,
            None => env.registry()?,
        };
        let broker = match self.broker {
            Some(broker) => broker,
            None => env.broker_with_registry(registry.clone())?,
        };
        let transport = match self.transport {
            Some(transport) => transport,
            None => env.transport()?,
        };
        let address = self
            .address
            .or_else(|| env.listen_address().map(str::to_owned))
            .unwrap_or_else(|| DEFAULT_ADDRESS.to_owned());
        let client = self
            .client
            .build_for(registry.clone(), transport.clone(), broker.clone())?;
        Ok(Service {
            name: self.name,
            version: self.version,
            metadata: self.metadata,
            address,
            registry,
            broker,
            transport,
            register_ttl,
            register_interval,
            grace_period: self.grace_period,
            admin_address: self.admin_address.or_else(|| env.admin_address.clone()),
            server: self.server.client(client.clone()),
            hooks: self.hooks,
            client,
        })
    }

    /// The TTL and re-register interval: set on the builder, else from the
    /// environment, else the defaults; an interval given nowhere is a third of
    /// a TTL given somewhere.
    fn register_timing(&self, env: &EnvConfig) -> (Duration, Duration) {
        let ttl = self.register_ttl.or(env.register_ttl);
        let interval = self
            .register_interval
            .or(env.register_interval)
            .or(ttl.map(|ttl| ttl / 3))
            .unwrap_or(DEFAULT_REGISTER_INTERVAL);
        (ttl.unwrap_or(DEFAULT_REGISTER_TTL), interval)
    }

    fn validate(&self, register_ttl: Duration, register_interval: Duration) -> Result<()> {
        micro_core::name::validate("service", &self.name)?;
        if register_interval.is_zero() || register_interval >= register_ttl {
            return Err(Error::invalid_argument(format!(
                "register_interval ({:?}) must be above zero and shorter than register_ttl ({:?}), \
                 or the registration expires between renewals",
                register_interval, register_ttl
            )));
        }
        self.server.validate()
    }
}

impl fmt::Debug for ServiceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceBuilder")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("address", &self.address)
            .field("register_ttl", &self.register_ttl)
            .field("register_interval", &self.register_interval)
            .field("grace_period", &self.grace_period)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}
