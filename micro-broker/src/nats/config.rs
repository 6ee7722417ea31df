use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use micro_connect::nats::NatsConfig as NatsConnection;

use crate::{Error, Result};

/// The environment variable with a comma-separated list of server URLs
/// (the same variable `micro` reads for every broker's address); read
/// through [`micro_connect::nats::NatsConfig::from_env`], after
/// `MICRO_BROKER_NATS_URL` and before `MICRO_NATS_URL`.
pub const ADDRESS_ENV: &str = "MICRO_BROKER_ADDRESS";
/// The environment variable that turns JetStream on (`true`/`false`).
pub const JETSTREAM_ENV: &str = "MICRO_BROKER_NATS_JETSTREAM";
/// The environment variable naming one stream for every topic (with
/// [`STREAM_SUBJECTS_ENV`]); unset means one stream per topic family.
pub const STREAM_ENV: &str = "MICRO_BROKER_NATS_STREAM";
/// The environment variable with the comma-separated subjects of [`STREAM_ENV`].
pub const STREAM_SUBJECTS_ENV: &str = "MICRO_BROKER_NATS_STREAM_SUBJECTS";
/// The environment variable with the JetStream ack wait (`30s`, `500ms`, ...).
pub const ACK_WAIT_ENV: &str = "MICRO_BROKER_NATS_ACK_WAIT";
/// The environment variable with the reconnect buffer in bytes.
pub const RECONNECT_BUFFER_ENV: &str = "MICRO_BROKER_NATS_RECONNECT_BUFFER";

/// Settings of a [`NatsBroker`](super::NatsBroker); every field has a default.
///
/// ```
/// use micro_broker::nats::NatsConfig;
///
/// let config = NatsConfig::default();
/// assert_eq!(config.connection.servers, vec!["nats://127.0.0.1:4222".to_owned()]);
/// assert!(config.jetstream.is_none(), "core NATS unless JetStream is asked for");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct NatsConfig {
    /// Where the server is and how to authenticate, the settings every NATS
    /// backend shares (servers, credentials, TLS, connect timeout).
    pub connection: NatsConnection,
    /// Reconnect attempts before giving up for good; `None` retries forever.
    pub max_reconnects: Option<usize>,
    /// How many messages `publish` may buffer while disconnected; past it
    /// `publish` fails with [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable).
    pub reconnect_buffer_messages: usize,
    /// How many payload bytes `publish` may buffer while disconnected; past it
    /// `publish` fails with [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable).
    pub reconnect_buffer_bytes: usize,
    /// Messages each core subscription may hold before the client drops
    /// them (a slow consumer, reported in the log).
    pub subscription_capacity: usize,
    /// JetStream settings; `None` keeps the broker on core NATS.
    pub jetstream: Option<JetStreamConfig>,
}

impl NatsConfig {
    /// The default server.
    pub const DEFAULT_SERVER: &'static str = NatsConnection::DEFAULT_SERVER;
    /// The default reconnect buffer, in messages.
    pub const DEFAULT_RECONNECT_BUFFER_MESSAGES: usize = 8 * 1024;
    /// The default reconnect buffer, in bytes (as the Go client's).
    pub const DEFAULT_RECONNECT_BUFFER_BYTES: usize = 8 * 1024 * 1024;

    /// Reads the connection from `MICRO_BROKER_NATS_*` / `MICRO_NATS_*`
    /// (see [`micro_connect`]) and the `MICRO_BROKER_*` variables listed in
    /// this module; unset variables keep their defaults.
    pub fn from_env() -> Result<NatsConfig> {
        NatsConfig::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`NatsConfig::from_env`], reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<NatsConfig> {
        let get = |name: &str| {
            lookup(name)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        let mut config = NatsConfig {
            connection: NatsConnection::from_lookup(
                Some(micro_connect::Block::Broker),
                &micro_connect::Lookup::from_fn(&lookup),
            )?,
            ..NatsConfig::default()
        };
        if let Some(bytes) = get(RECONNECT_BUFFER_ENV) {
            config.reconnect_buffer_bytes = bytes.parse().map_err(|err| {
                Error::invalid_argument(format!(
                    "{RECONNECT_BUFFER_ENV}=`{bytes}` is not a number of bytes"
                ))
                .with_source(err)
            })?;
        }
        let stream = get(STREAM_ENV);
        let wants_jetstream = match get(JETSTREAM_ENV) {
            Some(flag) => parse_bool(JETSTREAM_ENV, &flag)?,
            None => stream.is_some(),
        };
        if wants_jetstream {
            let mut jetstream = JetStreamConfig::default();
            if let Some(name) = stream {
                let subjects = get(STREAM_SUBJECTS_ENV).ok_or_else(|| {
                    Error::invalid_argument(format!(
                        "{STREAM_ENV}={name} needs {STREAM_SUBJECTS_ENV} (the subjects it captures)"
                    ))
                })?;
                jetstream.streams = StreamLayout::Single {
                    name,
                    subjects: split_list(&subjects),
                };
            }
            if let Some(wait) = get(ACK_WAIT_ENV) {
                jetstream.ack_wait = micro_core::duration::parse_named(ACK_WAIT_ENV, &wait)?;
            }
            config.jetstream = Some(jetstream);
        }
        Ok(config)
    }
}

impl Default for NatsConfig {
    fn default() -> NatsConfig {
        NatsConfig {
            connection: NatsConnection::default(),
            max_reconnects: None,
            reconnect_buffer_messages: NatsConfig::DEFAULT_RECONNECT_BUFFER_MESSAGES,
            reconnect_buffer_bytes: NatsConfig::DEFAULT_RECONNECT_BUFFER_BYTES,
            subscription_capacity: 64 * 1024,
            jetstream: None,
        }
    }
}

/// How topics map onto JetStream streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum StreamLayout {
    /// One stream per topic family (the first token of a topic): topics
    /// `orders` and `orders.>` go to the stream `{prefix}ORDERS`, created on
    /// first use. Subscriptions must then start with a literal token.
    PerFamily {
        /// Prepended to each stream name.
        prefix: String,
    },
    /// One stream, which must capture every topic published or subscribed to
    /// (created with these subjects if missing).
    Single {
        /// The stream's name.
        name: String,
        /// The subjects the stream captures (`orders.>`, `users.>`).
        subjects: Vec<String>,
    },
}

impl Default for StreamLayout {
    fn default() -> StreamLayout {
        StreamLayout::PerFamily {
            prefix: "MICRO_".to_owned(),
        }
    }
}

/// Where JetStream keeps a stream's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Storage {
    /// On disk: survives server restarts (the default).
    #[default]
    File,
    /// In memory: faster, lost when the server restarts.
    Memory,
}

/// JetStream settings: durable, acknowledged, replayable events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct JetStreamConfig {
    /// How topics map onto streams.
    pub streams: StreamLayout,
    /// Where streams the broker creates keep their messages.
    pub storage: Storage,
    /// How long streams the broker creates keep messages; `None` keeps them
    /// until the server's limits discard them.
    #[serde(with = "micro_core::duration::serde_opt")]
    pub max_age: Option<Duration>,
    /// The window in which a repeated [`Message::with_id`](crate::Message::with_id) is recognised.
    #[serde(with = "micro_core::duration::serde")]
    pub duplicate_window: Duration,
    /// How long a delivery may stay unacknowledged before it is redelivered.
    #[serde(with = "micro_core::duration::serde")]
    pub ack_wait: Duration,
    /// Unacknowledged deliveries a consumer may have out at once; the server
    /// holds back further messages until some are acked.
    pub max_ack_pending: i64,
    /// How long `publish` waits for the server to confirm it stored a message.
    #[serde(with = "micro_core::duration::serde")]
    pub publish_timeout: Duration,
    /// How long the durable consumer of a queue group without an explicit
    /// durable name outlives its last member.
    #[serde(with = "micro_core::duration::serde")]
    pub group_inactive_threshold: Duration,
}

impl Default for JetStreamConfig {
    fn default() -> JetStreamConfig {
        JetStreamConfig {
            streams: StreamLayout::default(),
            storage: Storage::default(),
            max_age: None,
            duplicate_window: Duration::from_secs(120),
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 1000,
            publish_timeout: Duration::from_secs(5),
            group_inactive_threshold: Duration::from_secs(3600),
        }
    }
}

fn split_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

fn parse_bool(variable: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::invalid_argument(format!(
            "{variable}=`{value}` is not a boolean (true/false)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    #[test]
    fn environment_overrides_defaults() {
        let config = NatsConfig::from_lookup(lookup(&[
            (ADDRESS_ENV, "nats://a:4222, nats://b:4222"),
            ("MICRO_NATS_TOKEN", "s3cret"),
            (JETSTREAM_ENV, "true"),
            (ACK_WAIT_ENV, "2s"),
            (RECONNECT_BUFFER_ENV, "1024"),
        ]))
        .unwrap();
        assert_eq!(
            config.connection.servers,
            ["nats://a:4222", "nats://b:4222"]
        );
        assert_eq!(config.connection.auth.token.as_deref(), Some("s3cret"));
        assert_eq!(config.reconnect_buffer_bytes, 1024);
        let jetstream = config.jetstream.unwrap();
        assert_eq!(jetstream.ack_wait, Duration::from_secs(2));
        assert_eq!(jetstream.streams, StreamLayout::default());
        assert_eq!(
            NatsConfig::from_lookup(|_| None).unwrap(),
            NatsConfig::default()
        );
    }

    #[test]
    fn a_single_stream_needs_its_subjects() {
        let err = NatsConfig::from_lookup(lookup(&[(STREAM_ENV, "EVENTS")])).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        let config = NatsConfig::from_lookup(lookup(&[
            (STREAM_ENV, "EVENTS"),
            (STREAM_SUBJECTS_ENV, "orders.>,users.>"),
        ]))
        .unwrap();
        assert_eq!(
            config.jetstream.unwrap().streams,
            StreamLayout::Single {
                name: "EVENTS".to_owned(),
                subjects: vec!["orders.>".to_owned(), "users.>".to_owned()],
            }
        );
    }

    #[test]
    fn bad_values_are_invalid_arguments() {
        for (name, value) in [(JETSTREAM_ENV, "maybe"), (RECONNECT_BUFFER_ENV, "lots")] {
            let err = NatsConfig::from_lookup(lookup(&[(name, value)])).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{name}={value}");
        }
        for wait in ["soon", "30"] {
            let err =
                NatsConfig::from_lookup(lookup(&[(JETSTREAM_ENV, "1"), (ACK_WAIT_ENV, wait)]))
                    .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{wait}");
            assert!(err.message().contains(ACK_WAIT_ENV), "{err}");
        }
    }

    #[test]
    fn deserializes_with_defaults_and_human_durations() {
        let config: NatsConfig = serde_json::from_str(
            r#"{"connection": {"servers": ["nats://x:1"]}, "jetstream": {"ack_wait": "1m 30s", "storage": "memory"}}"#,
        )
        .unwrap();
        assert_eq!(config.connection.servers, ["nats://x:1"]);
        let jetstream = config.jetstream.unwrap();
        assert_eq!(jetstream.ack_wait, Duration::from_secs(90));
        assert_eq!(jetstream.storage, Storage::Memory);
        assert_eq!(jetstream.duplicate_window, Duration::from_secs(120));
        let config: NatsConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, NatsConfig::default());
        assert!(serde_json::from_str::<NatsConfig>(r#"{"server": []}"#).is_err());
        let round_trip: NatsConfig =
            serde_json::from_str(&serde_json::to_string(&NatsConfig::default()).unwrap()).unwrap();
        assert_eq!(round_trip, NatsConfig::default());
    }
}
