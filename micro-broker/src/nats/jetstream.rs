//! JetStream: streams per topic family (or one stream), push consumers per
//! subscription, explicit acks, redelivery with a delay, dead letters,
//! replay, and de-duplication by message id.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, UNIX_EPOCH},
};

use async_nats::jetstream::{
    self, AckKind,
    consumer::{AckPolicy, DeliverPolicy, push},
    context::PublishErrorKind,
    stream::{self, Stream},
};
use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::OnceCell;

use super::{Shared, config::JetStreamConfig, config::Storage, config::StreamLayout, headers};
use crate::{
    Acker, DEAD_LETTER_DELIVERIES_HEADER, DEAD_LETTER_TOPIC_HEADER, DeadLetter, Delivery, Error,
    ErrorKind, MESSAGE_ID_HEADER, Message, Result, StartPosition, SubscribeOptions, Subscription,
    topic::{Pattern, Topic, validate_topic},
};

/// Where durable consumers push their messages; one subject per consumer, so
/// a member that restarts finds the same subject again.
const DELIVER_PREFIX: &str = "_MICRO.deliver";

/// The streams this broker knows exist, created once each.
#[derive(Debug)]
pub(super) struct JetStream {
    pub(super) config: JetStreamConfig,
    streams: Mutex<HashMap<String, Arc<OnceCell<Stream>>>>,
}

/// A stream and the subjects it captures.
struct StreamPlan {
    name: String,
    subjects: Vec<String>,
}

impl JetStream {
    pub(super) fn new(config: JetStreamConfig) -> JetStream {
        JetStream {
            config,
            streams: Mutex::new(HashMap::new()),
        }
    }

    /// Publishes to the stream capturing `topic` and waits for the server to
    /// store it. A message whose id the server saw within the duplicate window
    /// is acknowledged without being stored again.
    pub(super) async fn publish(
        &self,
        context: &jetstream::Context,
        topic: &str,
        message: Message,
    ) -> Result<()> {
        let family = self.family(topic)?;
        if !self.stream_is_ready(family) {
            self.stream(context, family).await?;
        }
        match publish_once(context, topic, &message).await {
            // The stream was deleted behind our back: make it again, once.
            Err(err) if err.kind() == ErrorKind::NotFound => {
                self.forget(family);
                self.stream(context, family).await?;
                publish_once(context, topic, &message).await
            }
            result => result,
        }
    }

    pub(super) async fn subscribe(
        &self,
        shared: Arc<Shared>,
        pattern: &Pattern,
        options: &SubscribeOptions,
    ) -> Result<Subscription> {
        let topic = pattern.as_str();
        check_options(pattern, options)?;
        let connection = shared.connection().await?;
        let context = jetstream_context(connection)?;
        let family = self.family(topic)?;
        let plan = self.plan(family);
        let cell = self.stream(context, family).await?;
        let Some(stream) = cell.get() else {
            return Err(Error::internal("a JetStream stream was not set up"));
        };

        let derived_group_consumer = options.durable.is_none() && options.queue.is_some();
        let consumer_name = match (&options.durable, &options.queue) {
            (Some(durable), _) => Some(durable.clone()),
            (None, Some(group)) => Some(group_consumer_name(group, topic)),
            (None, None) => None,
        };
        let deliver_subject = match &consumer_name {
            Some(name) => format!("{DELIVER_PREFIX}.{}.{name}", plan.name),
            None => connection.client.new_inbox(),
        };
        let mut config = push::Config {
            deliver_subject,
            durable_name: consumer_name.clone(),
            deliver_group: options.queue.clone().or_else(|| options.durable.clone()),
            deliver_policy: deliver_policy(options.start)?,
            filter_subject: topic.to_owned(),
            ..Default::default()
        };
        if options.manual_ack {
            config.ack_policy = AckPolicy::Explicit;
            config.ack_wait = self.config.ack_wait;
            config.max_ack_pending = self.config.max_ack_pending;
            // One delivery more than the limit, so the member that receives
            // it can dead-letter a message whose last ack wait ran out.
            config.max_deliver = options
                .dead_letter
                .as_ref()
                .map_or(-1, |dead| i64::from(dead.max_deliveries) + 1);
        } else {
            config.ack_policy = AckPolicy::None;
        }
        if derived_group_consumer {
            config.inactive_threshold = self.config.group_inactive_threshold;
        }
        let consumer = match &consumer_name {
            Some(name) => stream.get_or_create_consumer(name, config).await,
            None => stream.create_consumer(config).await,
        }
        .map_err(|err| {
            Error::unavailable(format!(
                "cannot create the JetStream consumer for `{topic}` on stream `{}`",
                plan.name
            ))
            .with_source(err)
        })?;
        let messages = consumer.messages().await.map_err(|err| {
            Error::unavailable(format!(
                "cannot subscribe to the JetStream consumer for `{topic}`"
            ))
            .with_source(err)
        })?;

        let manual_ack = options.manual_ack;
        let dead_letter = options.dead_letter.clone().map(Arc::new);
        let deliveries = messages.filter_map(move |item| {
            let shared = Arc::clone(&shared);
            let dead_letter = dead_letter.clone();
            async move {
                match item {
                    Ok(message) => receive(shared, message, manual_ack, dead_letter).await,
                    Err(err) => Some(Err(Error::unavailable(
                        "the JetStream subscription reported a problem",
                    )
                    .with_source(err))),
                }
            }
        });
        Ok(Subscription::new(topic, deliveries.boxed()))
    }

    /// The key of the stream capturing `topic` (a topic or a subscription
    /// pattern): its family, or `""` when one stream takes everything.
    fn family<'t>(&self, topic: &'t str) -> Result<&'t str> {
        match &self.config.streams {
            StreamLayout::Single { .. } => Ok(""),
            StreamLayout::PerFamily { .. } => {
                let family = topic.split('.').next().unwrap_or(topic);
                if family == "*" || family == ">" {
                    return Err(Error::invalid_argument(format!(
                        "`{topic}` starts with a wildcard: with one stream per topic family a \
                         subscription must name its family (configure one stream to subscribe \
                         across families)"
                    )));
                }
                Ok(family)
            }
        }
    }

    /// The name and subjects of the stream for `family`.
    fn plan(&self, family: &str) -> StreamPlan {
        match &self.config.streams {
            StreamLayout::Single { name, subjects } => StreamPlan {
                name: name.clone(),
                subjects: subjects.clone(),
            },
            StreamLayout::PerFamily { prefix } => StreamPlan {
                name: format!("{prefix}{}", stream_token(family)),
                subjects: vec![family.to_owned(), format!("{family}.>")],
            },
        }
    }

    /// The stream of `family`, created the first time this broker needs it.
    /// (The publish path calls this per message: a lookup, no allocation.)
    async fn stream(
        &self,
        context: &jetstream::Context,
        family: &str,
    ) -> Result<Arc<OnceCell<Stream>>> {
        let cell = {
            let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
            match streams.get(family) {
                Some(cell) => Arc::clone(cell),
                None => Arc::clone(streams.entry(family.to_owned()).or_default()),
            }
        };
        if !cell.initialized() {
            // Boxed for the reason `Shared::connection` boxes connecting:
            // creating a stream is a large future that would otherwise
            // grow every publish's.
            Box::pin(self.create_stream(context, family, &cell)).await?;
        }
        Ok(cell)
    }

    /// Whether the stream for `family` is known to exist: the check every
    /// publish makes, without taking a counted handle that every concurrent
    /// publish would bump.
    fn stream_is_ready(&self, family: &str) -> bool {
        let streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        streams.get(family).is_some_and(|cell| cell.initialized())
    }

    /// Finds or creates the stream for `family` into `cell`, once.
    async fn create_stream(
        &self,
        context: &jetstream::Context,
        family: &str,
        cell: &OnceCell<Stream>,
    ) -> Result<()> {
        let plan = self.plan(family);
        cell.get_or_try_init(|| async {
            let config = stream::Config {
                name: plan.name.clone(),
                subjects: plan.subjects.clone(),
                storage: match self.config.storage {
                    Storage::Memory => stream::StorageType::Memory,
                    Storage::File => stream::StorageType::File,
                },
                max_age: self.config.max_age.unwrap_or_default(),
                duplicate_window: self.config.duplicate_window,
                ..Default::default()
            };
            context.get_or_create_stream(config).await.map_err(|err| {
                Error::unavailable(format!(
                    "cannot find or create the JetStream stream `{}` for subjects {:?}",
                    plan.name, plan.subjects
                ))
                .with_source(err)
            })
        })
        .await?;
        Ok(())
    }

    fn forget(&self, family: &str) {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        streams.remove(family);
    }
}

pub(super) fn jetstream_context(
    connection: &super::connection::Connection,
) -> Result<&jetstream::Context> {
    connection
        .jetstream
        .as_ref()
        .ok_or_else(|| Error::internal("JetStream is configured but has no context"))
}

async fn publish_once(context: &jetstream::Context, topic: &str, message: &Message) -> Result<()> {
    let body = message.body.clone();
    let sent = match headers::to_nats(&message.headers)? {
        None => context.publish(topic.to_owned(), body).await,
        Some(headers) => {
            context
                .publish_with_headers(topic.to_owned(), headers, body)
                .await
        }
    };
    let acknowledged = match sent {
        Ok(ack) => ack.await,
        Err(err) => Err(err),
    };
    acknowledged.map(drop).map_err(|err| {
        let kind = match err.kind() {
            PublishErrorKind::StreamNotFound => ErrorKind::NotFound,
            PublishErrorKind::TimedOut => ErrorKind::Timeout,
            PublishErrorKind::MaxAckPending => ErrorKind::ResourceExhausted,
            PublishErrorKind::MaxPayloadExceeded => ErrorKind::ResourceExhausted,
            PublishErrorKind::WrongLastMessageId | PublishErrorKind::WrongLastSequence => {
                ErrorKind::FailedPrecondition
            }
            _ => ErrorKind::Unavailable,
        };
        Error::new(
            kind,
            format!("JetStream did not confirm the message to `{topic}`"),
        )
        .with_source(err)
    })
}

fn check_options(pattern: &Pattern, options: &SubscribeOptions) -> Result<()> {
    if let Some(durable) = &options.durable {
        validate_consumer_name(durable)?;
    }
    if let Some(dead) = &options.dead_letter {
        if !options.manual_ack {
            return Err(Error::invalid_argument(
                "a dead-letter topic needs manual ack: only nacked or unacked messages are given up on",
            ));
        }
        if dead.max_deliveries == 0 {
            return Err(Error::invalid_argument(
                "dead letters: max_deliveries must be at least 1",
            ));
        }
        validate_topic(&dead.topic).map_err(|err| err.context("dead-letter topic"))?;
        if pattern.matches(&dead.topic) {
            return Err(Error::invalid_argument(format!(
                "the dead-letter topic `{}` matches the subscription `{pattern}` itself",
                dead.topic
            )));
        }
    }
    Ok(())
}

fn validate_consumer_name(name: &str) -> Result<()> {
    let bad =
        |c: char| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\');
    if name.is_empty() || name.chars().any(bad) {
        return Err(Error::invalid_argument(format!(
            "invalid durable name `{}`: it must be non-empty, without whitespace, `.`, `*`, `>` or slashes",
            name.escape_debug()
        )));
    }
    Ok(())
}

fn deliver_policy(start: StartPosition) -> Result<DeliverPolicy> {
    Ok(match start {
        StartPosition::First => DeliverPolicy::All,
        StartPosition::Sequence(start_sequence) => DeliverPolicy::ByStartSequence {
            start_sequence: start_sequence.max(1),
        },
        StartPosition::Time(time) => {
            let nanos = time
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_nanos();
            let start_time = async_nats::datetime::from_nanos(nanos as i128).map_err(|err| {
                Error::invalid_argument(format!("start time {time:?} is out of range"))
                    .with_source(err)
            })?;
            DeliverPolicy::ByStartTime { start_time }
        }
        _ => DeliverPolicy::New,
    })
}

/// A stream or consumer name made from a topic token: letters, digits, `-`
/// and `_` stay; anything else becomes `_` and its hex code, so two
/// different tokens never share a name.
fn stream_token(token: &str) -> String {
    let mut name = String::with_capacity(token.len());
    for c in token.chars() {
        if c.is_ascii_alphanumeric() || c == '-' {
            name.push(c);
        } else {
            name.push_str(&format!("_{:x}", u32::from(c)));
        }
    }
    name
}

/// The durable consumer of a queue group without a durable name: one per
/// group and pattern (the same group on another pattern is another group),
/// stable across processes and builds.
fn group_consumer_name(group: &str, pattern: &str) -> String {
    // FNV-1a: tiny, and stable where std's hasher is not promised to be.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in pattern.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{}_{hash:016x}", stream_token(group))
}

/// Turns a pushed JetStream message into a delivery, or dead-letters it when
/// it came back more often than the subscription allows.
async fn receive(
    shared: Arc<Shared>,
    message: jetstream::Message,
    manual_ack: bool,
    dead_letter: Option<Arc<DeadLetter>>,
) -> Option<Result<Delivery>> {
    let (stream, sequence, attempt) = match message.info() {
        Ok(info) => (
            info.stream.to_owned(),
            Some(info.stream_sequence),
            Some(u32::try_from(info.delivered).unwrap_or(u32::MAX)),
        ),
        Err(_) => (String::new(), None, None),
    };
    let (message, acker) = message.split();
    let topic = Topic::from(message.subject);
    let body = Message {
        headers: headers::from_nats(message.headers.as_ref()),
        body: message.payload,
    };
    if !manual_ack {
        return Some(Ok(
            Delivery::new(topic, body).with_position(sequence, attempt)
        ));
    }
    let plan = dead_letter.map(|dead_letter| DeadLetterPlan {
        shared,
        dead_letter,
        topic: topic.clone(),
        message: body.clone(),
        attempt: attempt.unwrap_or(1),
        stream,
        sequence: sequence.unwrap_or(0),
    });
    if let Some(plan) = &plan
        && plan.attempt > plan.dead_letter.max_deliveries
    {
        if let Err(err) = plan.give_up(&acker).await {
            tracing::warn!("could not dead-letter a message from `{topic}`: {err}");
        }
        return None;
    }
    let acker = JetStreamAcker {
        acker: Some(acker),
        dead_letter: plan,
    };
    Some(Ok(
        Delivery::with_acker(topic, body, Box::new(acker)).with_position(sequence, attempt)
    ))
}

/// What a delivery needs to be dead-lettered.
struct DeadLetterPlan {
    shared: Arc<Shared>,
    dead_letter: Arc<DeadLetter>,
    topic: Topic,
    message: Message,
    attempt: u32,
    stream: String,
    sequence: u64,
}

impl DeadLetterPlan {
    /// Publishes the message to the dead-letter topic, then tells the server
    /// to stop redelivering it. If publishing fails the message is nacked
    /// with a delay instead, so it is never dropped.
    async fn give_up(&self, acker: &jetstream::message::Acker) -> Result<()> {
        let mut message = self.message.clone();
        message
            .headers
            .insert(DEAD_LETTER_TOPIC_HEADER, self.topic.clone());
        message
            .headers
            .insert(DEAD_LETTER_DELIVERIES_HEADER, self.attempt.to_string());
        // Dead-lettering twice (a crash between publish and term) stores it once.
        message.headers.insert(
            MESSAGE_ID_HEADER,
            format!("dead-letter.{}.{}", self.stream, self.sequence),
        );
        if let Err(err) = self.shared.publish(&self.dead_letter.topic, message).await {
            settle(acker, AckKind::Nak(Some(Duration::from_secs(1)))).await?;
            return Err(err.context(format_args!(
                "dead-lettering to `{}`; nacked instead",
                self.dead_letter.topic
            )));
        }
        settle(acker, AckKind::Term).await
    }
}

/// Settles one JetStream delivery. Dropped unsettled, it is nacked at once,
/// as the memory broker does.
struct JetStreamAcker {
    acker: Option<jetstream::message::Acker>,
    dead_letter: Option<DeadLetterPlan>,
}

impl JetStreamAcker {
    async fn nack_or_give_up(
        acker: jetstream::message::Acker,
        plan: Option<DeadLetterPlan>,
        delay: Option<Duration>,
    ) -> Result<()> {
        match plan {
            Some(plan) if plan.attempt >= plan.dead_letter.max_deliveries => {
                plan.give_up(&acker).await
            }
            _ => settle(&acker, AckKind::Nak(delay)).await,
        }
    }
}

#[async_trait]
impl Acker for JetStreamAcker {
    async fn ack(mut self: Box<Self>) -> Result<()> {
        match self.acker.take() {
            Some(acker) => settle(&acker, AckKind::Ack).await,
            None => Ok(()),
        }
    }

    async fn nack(mut self: Box<Self>, delay: Option<Duration>) -> Result<()> {
        match self.acker.take() {
            Some(acker) => {
                JetStreamAcker::nack_or_give_up(acker, self.dead_letter.take(), delay).await
            }
            None => Ok(()),
        }
    }
}

impl Drop for JetStreamAcker {
    fn drop(&mut self) {
        let Some(acker) = self.acker.take() else {
            return;
        };
        let plan = self.dead_letter.take();
        // Without a runtime (process exit) the ack wait redelivers it instead.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(err) = JetStreamAcker::nack_or_give_up(acker, plan, None).await {
                    tracing::warn!("nacking a dropped delivery failed: {err}");
                }
            });
        }
    }
}

async fn settle(acker: &jetstream::message::Acker, kind: AckKind) -> Result<()> {
    acker.ack_with(kind).await.map_err(|err| {
        Error::unavailable("could not settle a JetStream delivery (it will be redelivered)")
            .with_source(err)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn names_are_safe_and_distinct() {
        assert_eq!(stream_token("orders"), "orders");
        assert_ne!(stream_token("a_b"), stream_token("a-b"));
        assert_ne!(stream_token("a$b"), stream_token("a_24b"));
        let name = group_consumer_name("email workers", "user.*");
        assert!(validate_consumer_name(&name).is_ok(), "{name}");
        assert_ne!(name, group_consumer_name("email workers", "user.>"));
        assert_eq!(name, group_consumer_name("email workers", "user.*"));
    }

    #[test]
    fn per_family_streams_need_a_literal_family() {
        let jetstream = JetStream::new(JetStreamConfig::default());
        let family = jetstream.family("orders.eu.created").unwrap();
        let plan = jetstream.plan(family);
        assert_eq!(plan.name, "MICRO_orders");
        assert_eq!(plan.subjects, ["orders", "orders.>"]);
        for pattern in ["*.created", ">"] {
            let err = jetstream.family(pattern).err().unwrap();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        }
    }

    #[test]
    fn bad_durable_names_and_dead_letters_are_invalid() {
        let pattern = Pattern::parse("orders.>").unwrap();
        for options in [
            SubscribeOptions::fanout().durable("a.b"),
            SubscribeOptions::fanout().durable(""),
            SubscribeOptions::fanout().dead_letter("dead.orders", 3),
            SubscribeOptions::fanout()
                .with_manual_ack()
                .dead_letter("dead.orders", 0),
            SubscribeOptions::fanout()
                .with_manual_ack()
                .dead_letter("orders.dead", 3),
            SubscribeOptions::fanout()
                .with_manual_ack()
                .dead_letter("dead.*", 3),
        ] {
            let err = check_options(&pattern, &options).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{options:?}");
        }
        let fine = SubscribeOptions::queue("email")
            .with_manual_ack()
            .durable("email")
            .dead_letter("dead.orders", 3);
        assert!(check_options(&pattern, &fine).is_ok());
    }

    #[test]
    fn start_positions_map_to_deliver_policies() {
        assert_eq!(
            deliver_policy(StartPosition::New).unwrap(),
            DeliverPolicy::New
        );
        assert_eq!(
            deliver_policy(StartPosition::First).unwrap(),
            DeliverPolicy::All
        );
        assert_eq!(
            deliver_policy(StartPosition::Sequence(7)).unwrap(),
            DeliverPolicy::ByStartSequence { start_sequence: 7 }
        );
        assert!(matches!(
            deliver_policy(StartPosition::Time(SystemTime::now())).unwrap(),
            DeliverPolicy::ByStartTime { .. }
        ));
    }
}
