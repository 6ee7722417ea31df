//! The publishing side: which subscriptions a topic reaches, and delivering
//! one message to one of them over HTTP.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, StatusCode};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

use micro_transport::connector::{Connector, Versions};

use super::wire::{
    ENVELOPE_HEADER, NODE_QUEUE, NODE_SUBSCRIPTION, NODE_TLS, NODE_TOPIC, PATH_PREFIX,
    encode_envelope,
};
use crate::{Error, ErrorKind, Message, Result, topic::Pattern};

/// How long a delivery may take to connect, within its delivery timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One subscription as the registry describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    pub(super) node_id: String,
    pub(super) address: String,
    pub(super) subscription: String,
    /// Whether the endpoint serves TLS.
    pub(super) tls: bool,
}

/// Where one message goes: every fan-out subscription, and one member of
/// each queue group (members in a stable order, to rotate through).
#[derive(Debug, Default)]
pub(super) struct Route {
    pub(super) fanout: Vec<Target>,
    pub(super) groups: BTreeMap<(String, String), Vec<Target>>,
}

impl Route {
    /// The subscriptions among `nodes` whose pattern matches `topic`. Nodes
    /// with missing or malformed metadata are skipped with a warning: they
    /// were not registered by a compatible broker.
    pub(super) fn for_topic<'a>(
        topic: &str,
        nodes: impl Iterator<Item = &'a micro_registry::Node>,
    ) -> Route {
        let mut route = Route::default();
        for node in nodes {
            let (Some(pattern), Some(subscription)) = (
                node.metadata.get(NODE_TOPIC),
                node.metadata.get(NODE_SUBSCRIPTION),
            ) else {
                tracing::warn!(node = %node.id, "skipping a broker node without topic/subscription metadata");
                continue;
            };
            let matches = match Pattern::parse(pattern) {
                Ok(parsed) => parsed.matches(topic),
                Err(err) => {
                    tracing::warn!(node = %node.id, error = %err, "skipping a broker node with a malformed topic");
                    continue;
                }
            };
            if !matches {
                continue;
            }
            let target = Target {
                node_id: node.id.clone(),
                address: node.address.clone(),
                subscription: subscription.to_owned(),
                tls: node.metadata.get(NODE_TLS) == Some("true"),
            };
            match node.metadata.get(NODE_QUEUE) {
                // Same group name on another pattern is another group, as on NATS.
                Some(group) => route
                    .groups
                    .entry((pattern.to_owned(), group.to_owned()))
                    .or_default()
                    .push(target),
                None => route.fanout.push(target),
            }
        }
        for members in route.groups.values_mut() {
            members.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        }
        route
    }
}

/// What one delivery attempt came to.
#[derive(Debug)]
pub(super) enum Outcome {
    /// The subscription holds the message.
    Delivered,
    /// The subscription no longer exists (its endpoint answered 404).
    Gone,
}

/// Delivers messages to subscription endpoints, reusing connections.
#[derive(Debug, Clone)]
pub(super) struct Deliverer {
    client: Client<Connector, Full<Bytes>>,
    timeout: Duration,
    /// Why deliveries over TLS cannot be made (the TLS settings did not load).
    tls_error: Option<(ErrorKind, String)>,
}

impl Deliverer {
    pub(super) fn new(config: &super::HttpConfig) -> Deliverer {
        // Nagle off (small requests, answered at once) and TLS when asked.
        let (connector, tls_error) = micro_transport::connector::connector(
            CONNECT_TIMEOUT,
            #[cfg(feature = "tls")]
            &config.tls,
            Versions::Both,
        );
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(20))
            .build(connector);
        Deliverer {
            client,
            timeout: config.delivery_timeout,
            tls_error: tls_error.map(|error| (error.kind(), error.to_string())),
        }
    }

    /// Posts `message` to one subscription.
    pub(super) async fn deliver(
        &self,
        target: &Target,
        topic: &str,
        message: &Message,
    ) -> Result<Outcome> {
        if let (true, Some((kind, message))) = (target.tls, &self.tls_error) {
            return Err(Error::new(
                *kind,
                format!("delivering to {}: {message}", target.address),
            ));
        }
        let scheme = if target.tls { "https" } else { "http" };
        let uri = format!(
            "{scheme}://{}{PATH_PREFIX}{}",
            target.address, target.subscription
        );
        let request = Request::builder()
            .method(Method::POST)
            .uri(&uri)
            .header(ENVELOPE_HEADER, encode_envelope(topic, message)?)
            .body(Full::new(message.body.clone()))
            .map_err(|err| {
                Error::invalid_argument(format!(
                    "cannot build a delivery request to {uri} (node {})",
                    target.node_id
                ))
                .with_source(err)
            })?;
        let response = match tokio::time::timeout(self.timeout, self.client.request(request)).await
        {
            Ok(Ok(response)) => response,
            Ok(Err(err)) => {
                return Err(Error::unavailable(format!(
                    "cannot deliver to subscriber {} at {}",
                    target.node_id, target.address
                ))
                .with_source(err));
            }
            Err(_) => {
                return Err(Error::timeout(format!(
                    "subscriber {} at {} did not accept the message within {:?}",
                    target.node_id, target.address, self.timeout
                )));
            }
        };
        match response.status() {
            status if status.is_success() => Ok(Outcome::Delivered),
            StatusCode::NOT_FOUND => Ok(Outcome::Gone),
            StatusCode::PAYLOAD_TOO_LARGE => Err(Error::new(
                ErrorKind::ResourceExhausted,
                format!(
                    "subscriber {} refused a {}-byte message as too large",
                    target.node_id,
                    message.body.len()
                ),
            )),
            status => Err(Error::new(
                ErrorKind::from_http_status(status.as_u16()),
                format!(
                    "subscriber {} at {} answered {status}",
                    target.node_id, target.address
                ),
            )),
        }
    }

    /// Delivers to one member of a queue group, starting at the member the
    /// rotation `counter` points at and trying the next one when a member is
    /// gone or unreachable. `Ok(false)` when every member is gone.
    pub(super) async fn deliver_to_group(
        &self,
        members: &[Target],
        counter: &AtomicUsize,
        topic: &str,
        message: &Message,
    ) -> Result<bool> {
        let start = counter.fetch_add(1, Ordering::Relaxed);
        let mut last_error = None;
        for offset in 0..members.len() {
            let member = &members[(start + offset) % members.len()];
            match self.deliver(member, topic, message).await {
                Ok(Outcome::Delivered) => return Ok(true),
                Ok(Outcome::Gone) => {}
                // Retrying elsewhere cannot help a message that is too large.
                Err(err) if err.kind() == ErrorKind::ResourceExhausted => return Err(err),
                Err(err) => {
                    tracing::debug!(member = %member.node_id, error = %err, "trying the next group member");
                    last_error = Some(err);
                }
            }
        }
        match last_error {
            Some(err) => Err(err),
            None => Ok(false),
        }
    }
}
