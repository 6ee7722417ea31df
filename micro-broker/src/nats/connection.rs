//! One NATS connection per broker: connect options from [`NatsConfig`], and
//! the reconnect buffer that bounds what `publish` accepts while disconnected.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use async_nats::{
    Client, ConnectErrorKind, ConnectOptions, Event, ServerAddr, connection::State, jetstream,
};

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
        let servers = parse_servers(&config.servers)?;
        let outage = Arc::new(OutageBuffer {
            messages: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            max_messages: config.reconnect_buffer_messages,
            max_bytes: config.reconnect_buffer_bytes,
        });
        let options = connect_options(config, Arc::clone(&outage)).await?;
        let client = options.connect(servers).await.map_err(|err| {
            let kind = match err.kind() {
                ConnectErrorKind::Authentication | ConnectErrorKind::AuthorizationViolation => {
                    crate::ErrorKind::PermissionDenied
                }
                ConnectErrorKind::TimedOut => crate::ErrorKind::Timeout,
                _ => crate::ErrorKind::Unavailable,
            };
            Error::new(
                kind,
                format!("cannot connect to NATS at {}", config.servers.join(", ")),
            )
            .with_source(err)
        })?;
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

fn parse_servers(servers: &[String]) -> Result<Vec<ServerAddr>> {
    if servers.is_empty() {
        return Err(Error::invalid_argument("no NATS server URL given"));
    }
    servers
        .iter()
        .map(|url| {
            url.parse::<ServerAddr>().map_err(|err| {
                Error::invalid_argument(format!("`{url}` is not a NATS server URL"))
                    .with_source(err)
            })
        })
        .collect()
}

async fn connect_options(config: &NatsConfig, outage: Arc<OutageBuffer>) -> Result<ConnectOptions> {
    let auth = &config.auth;
    let methods = [
        auth.token.is_some(),
        auth.user.is_some() || auth.password.is_some(),
        auth.credentials_file.is_some(),
    ];
    if methods.iter().filter(|set| **set).count() > 1 {
        return Err(Error::invalid_argument(
            "NATS credentials: give one of a token, a user and password, or a credentials file",
        ));
    }
    let mut options = match &auth.credentials_file {
        Some(path) => ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|err| {
                Error::invalid_argument(format!(
                    "cannot read the NATS credentials file {}",
                    path.display()
                ))
                .with_source(err)
            })?,
        None => ConnectOptions::new(),
    };
    if let Some(token) = &auth.token {
        options = options.token(token.clone());
    }
    match (&auth.user, &auth.password) {
        (Some(user), Some(password)) => {
            options = options.user_and_password(user.clone(), password.clone());
        }
        (None, None) => {}
        _ => {
            return Err(Error::invalid_argument(
                "NATS credentials: a user needs a password and a password a user",
            ));
        }
    }
    options = tls_options(config, options)?;
    if let Some(name) = &config.name {
        options = options.name(name);
    }
    // Why the command queue is sized from the buffer: while disconnected the
    // client keeps commands in it, and a full queue would make `publish`
    // wait instead of failing with a clear error.
    // Topics were validated by micro (same rules as NATS subjects), so the
    // client need not check each subject again.
    options = options
        .skip_subject_validation(true)
        .connection_timeout(config.connect_timeout)
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

fn tls_options(config: &NatsConfig, mut options: ConnectOptions) -> Result<ConnectOptions> {
    let tls = &config.tls;
    let wants_tls = tls.required
        || tls.ca_file.is_some()
        || tls.cert_file.is_some()
        || config.servers.iter().any(|url| url.starts_with("tls://"));
    if !wants_tls {
        return Ok(options);
    }
    // micro uses rustls with ring only; installing it as the process default
    // keeps rustls from refusing to choose when another crate compiled in a
    // second provider. Someone else having installed one first is fine.
    let _ = async_nats::rustls::crypto::ring::default_provider().install_default();
    options = options.require_tls(true);
    if let Some(ca) = &tls.ca_file {
        options = options.add_root_certificates(ca.clone());
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        (None, None) => {}
        _ => {
            return Err(Error::invalid_argument(
                "NATS TLS: a client certificate needs its key and a key its certificate",
            ));
        }
    }
    Ok(options)
}
