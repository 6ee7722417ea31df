//! One NATS connection per broker: connect options from [`NatsConfig`], and
//! the reconnect buffer that bounds what `publish` accepts while disconnected.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use async_nats::{Client, ConnectOptions, Event, connection::State, jetstream};

use super::config::NatsConfig;
use crate::{Error, Result};

/// Commands the client may queue beyond the reconnect buffer (subscribes,
/// acks, flushes), so accounting for publishes never makes the client's own
/// queue the limit.
const COMMAND_HEADROOM: usize = 1024;

/// A connected client and what it holds while disconnected.
#[derive(Debug)]
pub(super) struct Connection {
    pub(super) client: Client,
    pub(super) jetstream: Option<jetstream::Context>,
    outage: Arc<OutageBuffer>,
}

/// What `publish` has handed the client since the connection was lost; the
/// client sends it after reconnecting. Emptied by the `Connected` event.
#[derive(Debug)]
struct OutageBuffer {
    messages: AtomicUsize,
    bytes: AtomicUsize,
    max_messages: usize,
    max_bytes: usize,
}

impl Connection {
    pub(super) async fn open(config: &NatsConfig) -> Result<Connection> {
        let outage = Arc::new(OutageBuffer {
            messages: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            max_messages: config.reconnect_buffer_messages,
            max_bytes: config.reconnect_buffer_bytes,
        });
        let options = connect_options(config, Arc::clone(&outage)).await?;
        let client = config.connection.connect_with(options).await?;
        let jetstream = config.jetstream.as_ref().map(|settings| {
            let mut context = jetstream::new(client.clone());
            context.set_timeout(settings.publish_timeout);
            context
        });
        Ok(Connection {
            client,
            jetstream,
            outage,
        })
    }

    /// Lets a publish of `bytes` through, counting it against the reconnect
    /// buffer while the connection is down; past the buffer it fails with
    /// `Unavailable` and the message is not queued at all.
    pub(super) fn admit(&self, topic: &str, bytes: usize) -> Result<()> {
        if self.client.connection_state() == State::Connected {
            return Ok(());
        }
        let outage = &self.outage;
        let messages = outage.messages.fetch_add(1, Ordering::Relaxed) + 1;
        let total = outage.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if messages <= outage.max_messages && total <= outage.max_bytes {
            return Ok(());
        }
        outage.messages.fetch_sub(1, Ordering::Relaxed);
        outage.bytes.fetch_sub(bytes, Ordering::Relaxed);
        Err(Error::unavailable(format!(
            "not connected to NATS and the reconnect buffer is full ({} messages / {} bytes): \
             the message to `{topic}` was not queued",
            outage.max_messages, outage.max_bytes
        )))
    }
}

/// The shared connection settings (credentials, TLS, timeout) plus what
/// the broker needs of its own connection.
async fn connect_options(config: &NatsConfig, outage: Arc<OutageBuffer>) -> Result<ConnectOptions> {
    let mut options = config.connection.options().await?;
    // Why the command queue is sized from the buffer: while disconnected the
    // client keeps commands in it, and a full queue would make `publish`
    // wait instead of failing with a clear error.
    // Topics were validated by micro (same rules as NATS subjects), so the
    // client need not check each subject again.
    options = options
        .skip_subject_validation(true)
        .max_reconnects(config.max_reconnects)
        .client_capacity(
            config
                .reconnect_buffer_messages
                .saturating_add(COMMAND_HEADROOM),
        )
        .subscription_capacity(config.subscription_capacity.max(1))
        .event_callback(move |event| {
            let outage = Arc::clone(&outage);
            async move {
                match event {
                    Event::Connected => {
                        outage.messages.store(0, Ordering::Relaxed);
                        outage.bytes.store(0, Ordering::Relaxed);
                        tracing::info!("NATS broker connected");
                    }
                    Event::Disconnected => tracing::warn!("NATS broker disconnected; reconnecting"),
                    Event::SlowConsumer(sid) => tracing::warn!(
                        "NATS subscription {sid} is too slow: the client dropped messages for it"
                    ),
                    other => tracing::info!("NATS broker: {other}"),
                }
            }
        });
    Ok(options)
}
