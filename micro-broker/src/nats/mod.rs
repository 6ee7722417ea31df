//! The NATS broker: native NATS subjects, and durable events on JetStream.
//!
//! [`NatsBroker`] speaks plain NATS: a topic is a subject, a queue group is a
//! NATS queue group, headers are NATS headers. Any NATS client in any
//! language publishes to a micro subscriber and subscribes to what a micro
//! service publishes.
//!
//! # Core NATS (the default)
//!
//! At most once and low latency. `publish` returns once the message is handed
//! to the client, which sends it in order; nothing is stored, so a subscriber
//! that is not connected misses it. Fan-out, queue groups and wildcards
//! (`*`, `>`) work as NATS defines them. There is no back-pressure: a
//! subscription that falls [`NatsConfig::subscription_capacity`] messages
//! behind loses messages (the server and the client log a slow consumer).
//!
//! `subscribe` returns once the server has confirmed the subscription (a
//! probe sent after the SUB came back; within
//! the connection's `connect_timeout`, else `Unavailable`), so a message any
//! connection publishes after that reaches it. Dropping a subscription cannot wait for
//! the server: until the server has read the UNSUB, it may still route to a
//! dropped queue-group member what other connections publish, and that is
//! lost (use JetStream where it matters). Likewise a core `publish` returns
//! once the client holds the message, so a subscription another connection
//! makes right after may still receive it. [`Broker::flush`] waits until what
//! was published is written to the server's socket; a service calls it when it stops,
//! so a process that exits right after publishing loses nothing.
//!
//! While the connection is down the client reconnects on its own (forever,
//! unless [`NatsConfig::max_reconnects`] is set) and `publish` keeps
//! accepting messages into a buffer bounded by
//! [`NatsConfig::reconnect_buffer_messages`] and
//! [`NatsConfig::reconnect_buffer_bytes`]; they are sent after the reconnect.
//! Past the buffer, `publish` fails at once with
//! [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable) and the message
//! is not queued, so nothing accepted is lost silently by the broker.
//! Subscriptions are renewed after a reconnect.
//!
//! # JetStream (durable events)
//!
//! With [`NatsConfig::jetstream`] set, `publish` stores each message in a
//! stream and returns once the server confirmed it; each topic family (first
//! token: `orders` for `orders.eu.created`) gets its own stream, created on
//! first use, or one configured stream takes every topic
//! ([`StreamLayout`]). Every subscription then reads from the stream
//! through a JetStream consumer, so all of them see each stored message once
//! (also when a publisher repeated it), and [`SubscribeOptions`] chooses:
//!
//! - plain options: a consumer that starts at [`StartPosition::New`](crate::StartPosition::New) and
//!   needs no acks, removed by the server once the subscription is dropped;
//! - [`SubscribeOptions::with_manual_ack`] gives at-least-once delivery:
//!   [`Delivery::ack`](crate::Delivery::ack) settles, [`Delivery::nack`](crate::Delivery::nack)
//!   redelivers after its delay, a delivery dropped unsettled is nacked, and
//!   one not settled within [`JetStreamConfig::ack_wait`] is redelivered
//!   (also to another member of its group, if its subscriber died);
//! - a queue group or a [`SubscribeOptions::durable`] name makes a durable
//!   consumer: it keeps its position and unacked messages while every member
//!   is away, and members share its messages. (A group without a durable name
//!   is removed [`JetStreamConfig::group_inactive_threshold`] after its last
//!   member left.);
//! - [`SubscribeOptions::start_at`] replays from the first message kept, a
//!   sequence ([`Delivery::sequence`](crate::Delivery::sequence)) or a time;
//! - [`SubscribeOptions::dead_letter`] gives up on a message after
//!   `max_deliveries` deliveries and publishes it, with its headers plus
//!   [`DEAD_LETTER_TOPIC_HEADER`](crate::DEAD_LETTER_TOPIC_HEADER) and
//!   [`DEAD_LETTER_DELIVERIES_HEADER`](crate::DEAD_LETTER_DELIVERIES_HEADER),
//!   to the dead-letter topic (itself stored in JetStream);
//! - [`Message::with_id`](crate::Message::with_id) travels as `Nats-Msg-Id`:
//!   the server stores a message published again with the same id within
//!   [`JetStreamConfig::duplicate_window`] only once.
//!
//! # Connecting
//!
//! The broker connects on first use ([`NatsBrokerBuilder::build`]), or at
//! once with [`NatsBrokerBuilder::connect`], which reports a wrong address or
//! credentials immediately. Credentials are a token, a user and password, or
//! a `.creds` file; TLS uses rustls with the ring provider.
//!
//! ```no_run
//! use micro_broker::{Broker, Message, SubscribeOptions, nats::NatsBroker};
//!
//! # async fn run() -> micro_broker::Result<()> {
//! let broker = NatsBroker::builder()
//!     .servers(["nats://127.0.0.1:4222"])
//!     .jetstream_defaults()
//!     .connect()
//!     .await?;
//! let mut email = broker
//!     .subscribe(
//!         "user.password_changed",
//!         &SubscribeOptions::queue("email")
//!             .with_manual_ack()
//!             .dead_letter("dead.user.password_changed", 5),
//!     )
//!     .await?;
//! broker
//!     .publish("user.password_changed", Message::new(r#"{"user_id":7}"#).with_id("evt-1"))
//!     .await?;
//! # drop(email);
//! # Ok(())
//! # }
//! ```

mod config;
mod connection;
mod core;
mod headers;
mod jetstream;

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use futures::{
    FutureExt,
    future::{self, BoxFuture},
};
use tokio::sync::OnceCell;

pub use self::config::{
    ACK_WAIT_ENV, ADDRESS_ENV, JETSTREAM_ENV, JetStreamConfig, NatsConfig, NatsConnection,
    RECONNECT_BUFFER_ENV, STREAM_ENV, STREAM_SUBJECTS_ENV, Storage, StreamLayout,
};
use self::{connection::Connection, jetstream::JetStream};
use crate::{
    Broker, Capabilities, Message, Result, SubscribeOptions, Subscription,
    topic::{Pattern, validate_queue_group, validate_topic},
};

/// The scheme naming this backend on core NATS: `nats`.
pub const SCHEME: &str = "nats";
/// The scheme this backend reports when JetStream is on: `jetstream`.
pub const JETSTREAM_SCHEME: &str = "jetstream";

/// A [`Broker`] over NATS, optionally with JetStream; see the
/// [module documentation](self). Clones share one connection.
#[derive(Clone)]
pub struct NatsBroker {
    shared: Arc<Shared>,
}

/// The connection, made once, and the JetStream state.
pub(crate) struct Shared {
    config: NatsConfig,
    connection: OnceCell<Connection>,
    jetstream: Option<JetStream>,
}

impl Shared {
    async fn connection(&self) -> Result<&Connection> {
        match self.connection.get() {
            Some(connection) => Ok(connection),
            // Boxed because opening is a future of about 10 KB: inline, it
            // would make every publish's future that large, and async-trait
            // allocates (and moves) that future on each call.
            None => {
                Box::pin(
                    self.connection
                        .get_or_try_init(|| Connection::open(&self.config)),
                )
                .await
            }
        }
    }

    /// Checks a publish (the topic, and room in the reconnect buffer while
    /// disconnected) and starts it on `connection`, boxing only the future
    /// of the path taken: the core client's, or JetStream's.
    fn start_publish<'a>(
        &'a self,
        connection: &'a Connection,
        topic: &'a str,
        message: Message,
    ) -> Result<BoxFuture<'a, Result<()>>> {
        match &self.jetstream {
            None => {
                // Checks the topic too (once per topic, then remembered).
                let subject = core::subject(topic)?;
                connection.admit(topic, message.body.len())?;
                // Mapped, not unwrapped and boxed: one move of the client's
                // future fewer (measured with callgrind).
                core::publish(&connection.client, topic, subject, message).map(FutureExt::boxed)
            }
            Some(jetstream) => {
                validate_topic(topic)?;
                connection.admit(topic, message.body.len())?;
                let context = jetstream::jetstream_context(connection)?;
                Ok(jetstream.publish(context, topic, message).boxed())
            }
        }
    }

    /// Waits until the client has written everything published so far to
    /// the server's socket (async-nats's flush sends no PING). Never
    /// connected: nothing was published.
    async fn flush(&self) -> Result<()> {
        let Some(connection) = self.connection.get() else {
            return Ok(());
        };
        connection
            .client
            .flush()
            .await
            .map_err(|err| crate::Error::unavailable("NATS flush failed").with_source(err))
    }

    /// Publishes, connecting first if need be.
    async fn publish(&self, topic: &str, message: Message) -> Result<()> {
        // Before connecting: a bad topic is the caller's error, whatever the
        // connection's state.
        validate_topic(topic)?;
        let connection = self.connection().await?;
        self.start_publish(connection, topic, message)?.await
    }
}

impl NatsBroker {
    /// Starts configuring a broker (default: core NATS at
    /// [`NatsConfig::DEFAULT_SERVER`]).
    pub fn builder() -> NatsBrokerBuilder {
        NatsBrokerBuilder::default()
    }

    /// A broker configured from the environment ([`NatsConfig::from_env`]),
    /// connecting on first use.
    pub fn from_env() -> Result<NatsBroker> {
        Ok(NatsBroker::builder()
            .config(NatsConfig::from_env()?)
            .build())
    }

    /// The settings this broker runs with.
    pub fn config(&self) -> &NatsConfig {
        &self.shared.config
    }

    /// The underlying async-nats client (connecting first if needed), for
    /// what micro does not wrap.
    pub async fn client(&self) -> Result<async_nats::Client> {
        Ok(self.shared.connection().await?.client.clone())
    }

    /// Waits until everything published so far has been written to the
    /// server, or `timeout` passes ([`Broker::flush`] with a time limit).
    pub async fn flush(&self, timeout: Duration) -> Result<()> {
        tokio::time::timeout(timeout, self.shared.flush())
            .await
            .unwrap_or_else(|_| {
                Err(crate::Error::timeout(format!(
                    "NATS flush did not finish within {timeout:?}"
                )))
            })
    }
}

impl fmt::Debug for NatsBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBroker")
            .field("config", self.config())
            .field("connected", &self.shared.connection.initialized())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Broker for NatsBroker {
    fn scheme(&self) -> &'static str {
        match self.shared.jetstream {
            Some(_) => JETSTREAM_SCHEME,
            None => SCHEME,
        }
    }

    fn capabilities(&self) -> Capabilities {
        let jetstream = self.shared.jetstream.is_some();
        Capabilities {
            queue_groups: true,
            manual_ack: jetstream,
            backpressure: false,
            wildcards: true,
            durable: jetstream,
            replay: jetstream,
            deduplication: jetstream,
            dead_letter: jetstream,
            ..Capabilities::default()
        }
    }

    // Written out rather than left to async-trait: a core NATS publish on an
    // open connection does its checks at once and boxes only the client's
    // own future. The async-trait box would hold the whole publish future,
    // which is over the size glibc serves from its per-thread cache, so
    // every publish paid a slow allocation (measured with callgrind).
    fn publish<'life0, 'life1, 'async_trait>(
        &'life0 self,
        topic: &'life1 str,
        message: Message,
    ) -> BoxFuture<'async_trait, Result<()>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        match self.shared.connection.get() {
            Some(connection) => self
                .shared
                .start_publish(connection, topic, message)
                .unwrap_or_else(|err| future::ready(Err(err)).boxed()),
            // Not connected yet: the whole publish, connecting first, boxed.
            None => self.shared.publish(topic, message).boxed(),
        }
    }

    async fn subscribe(&self, topic: &str, options: &SubscribeOptions) -> Result<Subscription> {
        let pattern = Pattern::parse(topic)?;
        options.check_supported(&self.capabilities())?;
        if let Some(group) = &options.queue {
            validate_queue_group(group)?;
        }
        match &self.shared.jetstream {
            Some(jetstream) => {
                jetstream
                    .subscribe(Arc::clone(&self.shared), &pattern, options)
                    .await
            }
            None => {
                let connection = self.shared.connection().await?;
                core::subscribe(
                    &connection.client,
                    topic,
                    options.queue.as_deref(),
                    self.shared.config.connection.connect_timeout,
                )
                .await
            }
        }
    }

    async fn flush(&self) -> Result<()> {
        self.shared.flush().await
    }
}

/// Configures a [`NatsBroker`]; from [`NatsBroker::builder`].
#[derive(Debug, Clone, Default)]
pub struct NatsBrokerBuilder {
    config: NatsConfig,
}

impl NatsBrokerBuilder {
    /// The server URLs to connect to (replacing the default).
    pub fn servers<S: Into<String>>(mut self, urls: impl IntoIterator<Item = S>) -> Self {
        self.config.connection.servers = urls.into_iter().map(Into::into).collect();
        self
    }

    /// Where to connect and how to authenticate: the connection settings
    /// every NATS backend shares ([`micro_connect::nats::NatsConfig`]).
    pub fn connection(mut self, connection: NatsConnection) -> Self {
        self.config.connection = connection;
        self
    }

    /// Bounds what `publish` buffers while disconnected.
    pub fn reconnect_buffer(mut self, messages: usize, bytes: usize) -> Self {
        self.config.reconnect_buffer_messages = messages;
        self.config.reconnect_buffer_bytes = bytes;
        self
    }

    /// Turns JetStream on with these settings.
    pub fn jetstream(mut self, jetstream: JetStreamConfig) -> Self {
        self.config.jetstream = Some(jetstream);
        self
    }

    /// Turns JetStream on with [`JetStreamConfig::default`].
    pub fn jetstream_defaults(self) -> Self {
        self.jetstream(JetStreamConfig::default())
    }

    /// Replaces every setting with `config`.
    pub fn config(mut self, config: NatsConfig) -> Self {
        self.config = config;
        self
    }

    /// Builds a broker that connects on first use.
    pub fn build(self) -> NatsBroker {
        let jetstream = self.config.jetstream.clone().map(JetStream::new);
        NatsBroker {
            shared: Arc::new(Shared {
                config: self.config,
                connection: OnceCell::new(),
                jetstream,
            }),
        }
    }

    /// Builds the broker and connects now, so a wrong address or credentials
    /// show at start-up: [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable),
    /// [`Timeout`](crate::ErrorKind::Timeout) or
    /// [`PermissionDenied`](crate::ErrorKind::PermissionDenied).
    pub async fn connect(self) -> Result<NatsBroker> {
        let broker = self.build();
        broker.shared.connection().await?;
        Ok(broker)
    }
}
