//! A broker with no broker server: publishers deliver to subscribers over HTTP,
//! finding them through the registry.
//!
//! [`HttpBroker`] is peer to peer. Each process that subscribes runs a small
//! HTTP endpoint (started by its first subscription, on
//! [`HttpConfig::address`], a free loopback port by default) and registers
//! every subscription in the registry as one node of the service
//! [`HttpConfig::service`] (`micro.broker`), with node metadata `topic` (the
//! pattern), `queue` (the group, if any) and `subscription` (its id at the
//! endpoint). A publisher looks those nodes up through a
//! [`CachingRegistry`] (a watch keeps it
//! fresh, so publishing does not ask the registry each time) and posts the
//! message to every matching subscription, and to one member of each
//! matching queue group. The wire format is plain HTTP/1.1, described in
//! the `wire` module: a curl command can deliver a message.
//!
//! **Lookups are cached** by default ([`HttpConfig::cached_lookups`]): a
//! broker sees its own subscriptions at once, but a subscription made by
//! another process reaches its publishers' caches through the registry's
//! watch, typically within milliseconds; a message published in between does
//! not reach it. Turn caching off to ask the registry on every publish (one
//! registry read per publish, read-your-writes across processes as far as the
//! registry itself offers it).
//!
//! Processes find each other only through the registry they share: in one
//! process the memory registry is enough; across processes use a registry
//! that spans them (mDNS, etcd, NATS, ...).
//!
//! # Delivery semantics
//!
//! - **Publish returns after delivery**: `publish` returns `Ok` once every
//!   subscription it reaches holds the message (its endpoint answered). A
//!   publisher's messages therefore reach each subscription in publish order.
//! - **Failures are returned, never dropped silently**: if a subscription
//!   cannot be reached (connection refused, timeout after
//!   [`HttpConfig::delivery_timeout`], an error status), `publish` fails
//!   with that error (`Unavailable`, `Timeout`, ...) naming the subscriber,
//!   after delivering to every other target. Retrying the publish then
//!   delivers again to the targets that did get it (at-least-once).
//! - **Queue groups**: members rotate per message; a member that is gone or
//!   unreachable is passed over for the next one, and the publish fails
//!   only when no member accepts. (A member that timed out may still have
//!   taken the message, so a group can then see it twice.)
//! - **Subscriptions that went away**: a subscription dropped in its process
//!   answers `404` at once, before the registry has caught up; the publisher
//!   counts it as unsubscribed (for a group, tries the next member). A
//!   process that died without deregistering leaves its nodes until their
//!   TTL ([`HttpConfig::register_ttl`]) expires, and publishing to them fails
//!   with `Unavailable` until then.
//! - **Back-pressure**: each subscription holds at most
//!   [`HttpConfig::buffer`] messages; past that its endpoint answers only
//!   when there is room, so the publisher waits (up to the delivery timeout).
//! - **Manual ack**: as with the memory broker, a delivery holds its slot
//!   until settled; `nack` (or dropping it unsettled) redelivers it to the
//!   same subscription, before newer messages. Unsettled messages live in the
//!   subscriber's memory: if that process dies they are lost (this broker
//!   keeps nothing; use JetStream for durable events).
//! - **Nothing before subscribe**: a message is routed to the subscriptions
//!   registered when it is published; messages for nobody go nowhere.
//! - **Wildcards** `*` and `>` work as on every backend ([`crate::topic`]).
//!
//! ```
//! use futures::StreamExt;
//! use micro_broker::{Broker, Message, SubscribeOptions, http::HttpBroker};
//! use micro_registry::MemoryRegistry;
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> micro_broker::Result<()> {
//! // Two brokers (as in two services) sharing one registry.
//! let registry = MemoryRegistry::new();
//! let users = HttpBroker::new(registry.clone());
//! let email = HttpBroker::new(registry);
//!
//! let mut hooks = email.subscribe("user.*", &SubscribeOptions::queue("email")).await?;
//! users.publish("user.password_changed", Message::new(r#"{"user_id":7}"#)).await?;
//!
//! let delivery = hooks.next().await.expect("a delivery")?;
//! assert_eq!(delivery.topic, "user.password_changed");
//! # Ok(())
//! # }
//! ```

mod config;
mod inbox;
mod publish;
mod server;
mod wire;

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, Mutex as StdMutex, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use async_trait::async_trait;
use futures::{StreamExt, future::join_all};
use micro_registry::{CachingRegistry, DynRegistry, Node, RegisterOptions, Registry, Service};
use tokio::sync::Mutex;

pub use config::{ADDRESS_ENV, ADVERTISE_ENV, BUFFER_ENV, HttpConfig};

use self::{
    inbox::Inbox,
    publish::{Deliverer, Route},
    server::{Endpoint, Inboxes},
    wire::{NODE_BROKER, NODE_QUEUE, NODE_SUBSCRIPTION, NODE_TLS, NODE_TOPIC},
};
use crate::{
    Broker, Capabilities, Error, ErrorKind, Message, Result, SubscribeOptions, Subscription,
    topic::{Pattern, validate_queue_group, validate_topic},
};

/// The scheme naming this backend: `http`.
pub const SCHEME: &str = "http";

/// A peer-to-peer [`Broker`] over HTTP; see the [module documentation](self).
/// Clones share one broker (one endpoint, one registry cache).
#[derive(Clone)]
pub struct HttpBroker {
    shared: Arc<Shared>,
}

struct Shared {
    config: HttpConfig,
    /// Random, so node ids from different processes never collide.
    instance: String,
    registry: CachingRegistry<DynRegistry>,
    deliverer: Deliverer,
    inboxes: Arc<Inboxes>,
    /// Started by the first subscription.
    endpoint: Mutex<Option<Endpoint>>,
    next_subscription: AtomicU64,
    /// Rotation counters of the queue groups this broker has published to.
    rotations: StdMutex<HashMap<(String, String), Arc<AtomicUsize>>>,
}

impl HttpBroker {
    /// A broker finding its peers in `registry`, with the default [`HttpConfig`].
    pub fn new(registry: impl Registry) -> HttpBroker {
        HttpBroker::builder(registry).build()
    }

    /// Starts configuring a broker that finds its peers in `registry`.
    pub fn builder(registry: impl Registry) -> HttpBrokerBuilder {
        HttpBrokerBuilder {
            registry: Arc::new(registry),
            config: HttpConfig::default(),
            auth: None,
            rules: None,
        }
    }

    /// A broker configured from [`ADDRESS_ENV`], [`ADVERTISE_ENV`] and [`BUFFER_ENV`].
    pub fn from_env(registry: impl Registry) -> Result<HttpBroker> {
        Ok(HttpBroker::builder(registry)
            .config(HttpConfig::from_env()?)
            .build())
    }

    /// The settings this broker runs with.
    pub fn config(&self) -> &HttpConfig {
        &self.shared.config
    }

    /// The address other processes deliver to, once a subscription started the endpoint.
    pub async fn endpoint_address(&self) -> Option<String> {
        let endpoint = self.shared.endpoint.lock().await;
        endpoint
            .as_ref()
            .map(|endpoint| endpoint.advertised.clone())
    }
}

/// Configures an [`HttpBroker`]; from [`HttpBroker::builder`].
pub struct HttpBrokerBuilder {
    registry: DynRegistry,
    config: HttpConfig,
    auth: Option<micro_auth::DynAuth>,
    rules: Option<micro_auth::Rules>,
}

impl HttpBrokerBuilder {
    /// Where the endpoint listens (default `127.0.0.1:0`).
    pub fn address(mut self, address: impl Into<String>) -> HttpBrokerBuilder {
        self.config.address = address.into();
        self
    }

    /// The address registered for other processes to deliver to.
    pub fn advertise(mut self, address: impl Into<String>) -> HttpBrokerBuilder {
        self.config.advertise = Some(address.into());
        self
    }

    /// How many messages each subscription holds before publishers wait.
    pub fn buffer(mut self, messages: usize) -> HttpBrokerBuilder {
        self.config.buffer = messages;
        self
    }

    /// Whether publishers look subscribers up through a watch-fed cache
    /// (default) or ask the registry on every publish.
    pub fn cached_lookups(mut self, cached: bool) -> HttpBrokerBuilder {
        self.config.cached_lookups = cached;
        self
    }

    /// Authenticates publishers delivering to this broker's subscriptions:
    /// a message's `authorization` header (`Bearer <token>`, which
    /// `Client::with_bearer_token` adds) is inspected by `auth`, then taken
    /// out of the headers, so subscribers never see it.
    pub fn auth(mut self, auth: impl micro_auth::Auth) -> HttpBrokerBuilder {
        self.auth = Some(Arc::new(auth));
        self
    }

    /// Adds a rule on who may publish what to this broker's subscriptions:
    /// the topic is the rule's endpoint (`user.*` matches `user.created`)
    /// and the broker's registry service name its service. With any rule, a
    /// delivery no rule grants is refused: the publisher gets
    /// `Unauthenticated` without a valid credential, else `PermissionDenied`,
    /// and the message never reaches the subscription.
    pub fn rule(mut self, rule: micro_auth::Rule) -> HttpBrokerBuilder {
        self.rules = Some(self.rules.take().unwrap_or_default().rule(rule));
        self
    }

    /// Replaces every setting with `config`.
    pub fn config(mut self, config: HttpConfig) -> HttpBrokerBuilder {
        self.config = config;
        self
    }

    /// Builds the broker. Nothing listens until the first subscription.
    pub fn build(self) -> HttpBroker {
        let mut config = self.config;
        config.buffer = config.buffer.max(1);
        let gate = (self.auth.is_some() || self.rules.is_some()).then(|| server::Gate {
            auth: self.auth,
            rules: self.rules.unwrap_or_default(),
            service: config.service.clone(),
        });
        HttpBroker {
            shared: Arc::new(Shared {
                instance: format!("{:016x}", rand::random::<u64>()),
                registry: CachingRegistry::new(self.registry),
                deliverer: Deliverer::new(&config),
                inboxes: Arc::new(Inboxes::gated(gate)),
                endpoint: Mutex::new(None),
                next_subscription: AtomicU64::new(1),
                rotations: StdMutex::new(HashMap::new()),
                config,
            }),
        }
    }
}

impl fmt::Debug for HttpBrokerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpBrokerBuilder")
            .field("registry", &self.registry.scheme())
            .field("config", &self.config)
            .finish()
    }
}

impl fmt::Debug for HttpBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpBroker")
            .field("instance", &self.shared.instance)
            .field("registry", &self.shared.registry.backend().scheme())
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Broker for HttpBroker {
    fn scheme(&self) -> &'static str {
        SCHEME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            queue_groups: true,
            manual_ack: true,
            backpressure: true,
            wildcards: true,
            ..Capabilities::default()
        }
    }

    async fn publish(&self, topic: &str, message: Message) -> Result<()> {
        validate_topic(topic)?;
        self.shared.publish(topic, &message).await
    }

    async fn subscribe(&self, topic: &str, options: &SubscribeOptions) -> Result<Subscription> {
        Pattern::parse(topic)?;
        options.check_supported(&self.capabilities())?;
        if let Some(group) = &options.queue {
            validate_queue_group(group)?;
        }
        Arc::clone(&self.shared).subscribe(topic, options).await
    }
}

impl Shared {
    async fn publish(&self, topic: &str, message: &Message) -> Result<()> {
        let lookup = if self.config.cached_lookups {
            self.registry.get_service_shared(&self.config.service).await
        } else {
            let backend = self.registry.backend();
            backend
                .get_service(&self.config.service)
                .await
                .map(Arc::new)
        };
        let services = match lookup {
            Ok(services) => services,
            // No subscription anywhere: delivered to nobody, as on every backend.
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(()),
            Err(err) => {
                return Err(err.context(format_args!(
                    "looking up the subscribers of `{topic}` in the registry"
                )));
            }
        };
        let route = Route::for_topic(
            topic,
            services.iter().flat_map(|service| service.nodes.iter()),
        );
        let fanout = route.fanout.iter().map(|target| async move {
            self.deliverer
                .deliver(target, topic, message)
                .await
                .map(|_outcome| ())
        });
        let groups = route.groups.iter().map(|(group, members)| async move {
            let rotation = self.rotation(group);
            // All members gone: the group has left, like a topic nobody subscribes to.
            self.deliverer
                .deliver_to_group(members, &rotation, topic, message)
                .await
                .map(|_delivered| ())
                .map_err(|err| err.context(format_args!("queue group `{}`", group.1)))
        });
        let (fanout, groups) = futures::join!(join_all(fanout), join_all(groups));
        let failures: Vec<Error> = fanout
            .into_iter()
            .chain(groups)
            .filter_map(Result::err)
            .collect();
        let targets = route.fanout.len() + route.groups.len();
        match failures.into_iter().next() {
            None => Ok(()),
            Some(first) if targets == 1 => Err(first.context(format_args!("publishing to `{topic}`"))),
            Some(first) => Err(first.context(format_args!(
                "publishing to `{topic}`: at least one of {targets} subscribers did not get the message"
            ))),
        }
    }

    fn rotation(&self, group: &(String, String)) -> Arc<AtomicUsize> {
        let mut rotations = self
            .rotations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(rotations.entry(group.clone()).or_default())
    }

    async fn subscribe(
        self: Arc<Self>,
        topic: &str,
        options: &SubscribeOptions,
    ) -> Result<Subscription> {
        let address = self.endpoint_address().await?;
        let id = self
            .next_subscription
            .fetch_add(1, Ordering::Relaxed)
            .to_string();
        let inbox = Inbox::new(self.config.buffer, options.manual_ack);
        self.inboxes.insert(id.clone(), Arc::clone(&inbox));

        let mut node = Node::new(format!("{}-{id}", self.instance), address)
            .with_metadata(NODE_BROKER, SCHEME)
            .with_metadata(NODE_TOPIC, topic)
            .with_metadata(NODE_SUBSCRIPTION, id.as_str());
        if self.endpoint_speaks_tls() {
            node = node.with_metadata(NODE_TLS, "true");
        }
        if let Some(group) = &options.queue {
            node = node.with_metadata(NODE_QUEUE, group.as_str());
        }
        let service = Service::new(self.config.service.clone()).with_node(node);
        let register = RegisterOptions::ttl(self.config.register_ttl);
        if let Err(err) = self.registry.register(&service, &register).await {
            self.inboxes.remove(&id);
            return Err(err.context(format_args!("registering a subscription to `{topic}`")));
        }
        let heartbeat = tokio::spawn(renew(
            self.registry.clone(),
            service.clone(),
            register,
            self.config.register_interval,
        ));
        let guard = Registration {
            shared: Arc::clone(&self),
            id,
            service,
            heartbeat: heartbeat.abort_handle(),
        };
        let deliveries = futures::stream::unfold((inbox, guard), |(inbox, guard)| async move {
            let delivery = inbox.next().await;
            Some((Ok(delivery), (inbox, guard)))
        });
        Ok(Subscription::new(topic, deliveries.boxed()))
    }

    /// TLS for the endpoint's listener, when a certificate is configured.
    fn listener_tls(&self) -> Result<micro_transport::listen::ListenerTls> {
        #[cfg(feature = "tls")]
        return Ok(micro_transport::listen::ListenerTls::rustls(
            self.config.tls.server_config(&[b"h2", b"http/1.1"])?,
        ));
        #[cfg(not(feature = "tls"))]
        Ok(micro_transport::listen::ListenerTls::none())
    }

    /// Whether the endpoint serves TLS (a certificate is configured).
    fn endpoint_speaks_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.config.tls.serves_tls();
        #[cfg(not(feature = "tls"))]
        false
    }

    /// The endpoint's advertised address, starting it on first use.
    async fn endpoint_address(&self) -> Result<String> {
        let mut endpoint = self.endpoint.lock().await;
        if let Some(endpoint) = endpoint.as_ref() {
            return Ok(endpoint.advertised.clone());
        }
        let started = server::start(
            &self.config.address,
            self.config.advertise.as_deref(),
            self.config.max_message_bytes,
            self.config.connections.clone(),
            self.listener_tls()?,
            Arc::clone(&self.inboxes),
        )
        .await?;
        let address = started.advertised.clone();
        *endpoint = Some(started);
        Ok(address)
    }
}

/// Renews a subscription's registration until aborted; a failure is logged
/// and retried at the next interval, never fatal.
async fn renew(
    registry: CachingRegistry<DynRegistry>,
    service: Service,
    options: RegisterOptions,
    interval: std::time::Duration,
) {
    loop {
        tokio::time::sleep(interval).await;
        if let Err(err) = registry.register(&service, &options).await {
            tracing::warn!(error = %err, "could not renew an http broker subscription's registration");
        }
    }
}

/// Held by a subscription's stream: dropping it unsubscribes.
struct Registration {
    shared: Arc<Shared>,
    id: String,
    service: Service,
    heartbeat: tokio::task::AbortHandle,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.heartbeat.abort();
        // At once, so publishers are answered 404 before the registry catches up.
        self.shared.inboxes.remove(&self.id);
        let registry = self.shared.registry.clone();
        let service = self.service.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(err) = registry.deregister(&service).await {
                        tracing::warn!(error = %err, "could not deregister a dropped http broker subscription; it expires with its TTL");
                    }
                });
            }
            Err(_) => tracing::warn!(
                "http broker subscription dropped outside a tokio runtime; its registration expires with its TTL"
            ),
        }
    }
}
