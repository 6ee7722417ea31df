use std::{
    fmt,
    panic::AssertUnwindSafe,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::{FutureExt, StreamExt, future::BoxFuture};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Server, SubscriberSpec, ordered::OrderedSpec, router::panic_message};
use crate::{
    Client, Context, Error, Result,
    broker::{Delivery, DynBroker, SubscribeOptions, Subscription, keyed::KeyedPool},
    metrics::Metrics,
};

/// How long a message whose handler failed waits before it is delivered
/// again, on brokers with manual acknowledgement.
pub const NACK_DELAY: Duration = Duration::from_secs(1);

/// Message counts shared by a server's subscriber tasks.
#[derive(Debug, Default)]
struct Counters {
    handled: AtomicU64,
    failed: AtomicU64,
    undecodable: AtomicU64,
}

/// A server's running subscribers, from [`Server::start_subscribers`].
///
/// Dropping it stops them after the message each is handling;
/// [`Subscribers::stop`] also waits for that.
pub struct Subscribers {
    topics: Vec<String>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl Subscribers {
    /// The topics subscribed to.
    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    /// Messages whose handler returned `Ok`.
    pub fn handled_messages(&self) -> u64 {
        self.counters.handled.load(Ordering::Relaxed)
    }

    /// Messages whose handler returned an error or panicked.
    pub fn failed_messages(&self) -> u64 {
        self.counters.failed.load(Ordering::Relaxed)
    }

    /// Messages dropped because they could not be decoded into the subscriber's type.
    pub fn undecodable_messages(&self) -> u64 {
        self.counters.undecodable.load(Ordering::Relaxed)
    }

    /// Stops taking messages, lets each subscriber finish the message it is
    /// handling for up to `grace`, then cancels what is left and unsubscribes.
    pub async fn stop(mut self, grace: Duration) {
        self.stop.cancel();
        let tasks = std::mem::take(&mut self.tasks);
        let aborts: Vec<_> = tasks.iter().map(JoinHandle::abort_handle).collect();
        let all = futures::future::join_all(tasks);
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!(
                topics = ?self.topics,
                ?grace,
                "subscribers still busy after the grace period; cancelling them"
            );
            for abort in aborts {
                abort.abort();
            }
        }
    }
}

impl Drop for Subscribers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl fmt::Debug for Subscribers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscribers")
            .field("topics", &self.topics)
            .field("handled", &self.handled_messages())
            .field("failed", &self.failed_messages())
            .field("undecodable", &self.undecodable_messages())
            .finish()
    }
}

/// The options a subscriber subscribes with.
fn options_for(spec: &SubscriberSpec, server_name: &str, broker: &DynBroker) -> SubscribeOptions {
    let capabilities = broker.capabilities();
    let options = match &spec.options {
        Some(options) => options.clone(),
        None if server_name.is_empty() => SubscribeOptions::fanout(),
        None if !capabilities.queue_groups => {
            tracing::warn!(
                topic = %spec.topic,
                broker = broker.scheme(),
                "the broker has no queue groups: every instance of {server_name} receives every message"
            );
            SubscribeOptions::fanout()
        }
        None => SubscribeOptions::queue(server_name),
    };
    if capabilities.manual_ack {
        options.with_manual_ack()
    } else {
        options
    }
}

pub(super) async fn start(server: &Server, broker: DynBroker) -> Result<Subscribers> {
    // Built first so that, if a later subscribe fails, dropping it stops the
    // subscribers already running.
    let mut subscribers = Subscribers {
        topics: Vec::new(),
        stop: CancellationToken::new(),
        tasks: Vec::new(),
        counters: Arc::new(Counters::default()),
    };
    for spec in &server.subscribers {
        let options = options_for(spec, &server.name, &broker);
        let subscription = broker
            .subscribe(&spec.topic, &options)
            .await
            .map_err(|err| err.context(format!("subscribing to {:?}", spec.topic)))?;
        let worker = Worker {
            spec: spec.clone(),
            server_name: server.name.clone(),
            client: server.client.clone(),
            config: server.config.clone(),
            counters: subscribers.counters.clone(),
        };
        let stop = subscribers.stop.clone();
        subscribers.topics.push(spec.topic.clone());
        let task = match &spec.ordered {
            Some(ordered) => tokio::spawn(worker.run_ordered(subscription, stop, ordered.clone())),
            None => tokio::spawn(worker.run(subscription, stop)),
        };
        subscribers.tasks.push(task);
    }
    Ok(subscribers)
}

/// Handles the deliveries of one subscription, one at a time.
struct Worker {
    spec: SubscriberSpec,
    server_name: String,
    client: Option<Client>,
    config: Option<crate::config::Config>,
    counters: Arc<Counters>,
}

impl Worker {
    async fn run(self, mut subscription: Subscription, stop: CancellationToken) {
        loop {
            let next = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                next = subscription.next() => next,
            };
            match next {
                Some(Ok(delivery)) => self.handle(delivery).await,
                Some(Err(err)) => tracing::error!(
                    topic = %self.spec.topic,
                    error = %err,
                    "the broker reported an error on a subscription"
                ),
                None => {
                    tracing::warn!(topic = %self.spec.topic, "the broker ended the subscription");
                    break;
                }
            }
        }
    }

    /// Like [`run`](Worker::run), but deliveries go to a keyed pool: same key
    /// one after another in arrival order, different keys in parallel.
    async fn run_ordered(
        self,
        mut subscription: Subscription,
        stop: CancellationToken,
        ordered: OrderedSpec,
    ) {
        let pool = KeyedPool::new(ordered.config);
        // If `Subscribers::stop` runs out of grace and aborts this task, the
        // handlers running on the pool's tasks are cancelled with it.
        let _cancel_handlers = AbortPoolOnDrop(pool.clone());
        let worker = Arc::new(self);
        loop {
            let next = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                next = subscription.next() => next,
            };
            let delivery = match next {
                Some(Ok(delivery)) => delivery,
                Some(Err(err)) => {
                    tracing::error!(
                        topic = %worker.spec.topic,
                        error = %err,
                        "the broker reported an error on a subscription"
                    );
                    continue;
                }
                None => {
                    tracing::warn!(topic = %worker.spec.topic, "the broker ended the subscription");
                    break;
                }
            };
            Metrics::global().message(&worker.spec.topic, "delivered");
            let ctx = worker.context(&delivery);
            let (key, future) = match (ordered.decode)(ctx, &delivery.message) {
                Ok(decoded) => decoded,
                Err(err) => {
                    worker.drop_undecodable(delivery, err).await;
                    continue;
                }
            };
            let job = {
                let worker = Arc::clone(&worker);
                async move { worker.finish(delivery, future).await }
            };
            // A delivery dropped here, unsettled, is redelivered by manual-ack brokers.
            let submitted = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                submitted = pool.submit(key, job) => submitted,
            };
            if submitted.is_err() {
                break;
            }
        }
        pool.idle().await;
    }

    async fn handle(&self, delivery: Delivery) {
        Metrics::global().message(&self.spec.topic, "delivered");
        let ctx = self.context(&delivery);
        match (self.spec.handle)(ctx, &delivery.message) {
            Ok(future) => self.finish(delivery, future).await,
            Err(err) => self.drop_undecodable(delivery, err).await,
        }
    }

    async fn drop_undecodable(&self, mut delivery: Delivery, err: Error) {
        let topic = &self.spec.topic;
        self.counters.undecodable.fetch_add(1, Ordering::Relaxed);
        Metrics::global().message(topic, "undecodable");
        tracing::error!(
            topic = %topic,
            expected = self.spec.message_type,
            error = %err,
            "dropping a message that cannot be decoded (acknowledged, not redelivered)"
        );
        settle(topic, "ack", delivery.ack().await);
    }

    /// Runs the handler's future, then acks (success) or nacks (error, panic).
    async fn finish(&self, mut delivery: Delivery, future: BoxFuture<'static, Result<()>>) {
        let topic = &self.spec.topic;
        match AssertUnwindSafe(future).catch_unwind().await {
            Ok(Ok(())) => {
                self.counters.handled.fetch_add(1, Ordering::Relaxed);
                Metrics::global().message(topic, "acked");
                settle(topic, "ack", delivery.ack().await);
            }
            Ok(Err(err)) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                Metrics::global().message(topic, "nacked");
                tracing::error!(topic = %topic, error = %err, redelivered = delivery.needs_ack(), "subscriber failed");
                settle(topic, "nack", delivery.nack(Some(NACK_DELAY)).await);
            }
            Err(panic) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                Metrics::global().message(topic, "nacked");
                tracing::error!(
                    topic = %topic,
                    panic = panic_message(panic.as_ref()),
                    redelivered = delivery.needs_ack(),
                    "subscriber panicked"
                );
                settle(topic, "nack", delivery.nack(Some(NACK_DELAY)).await);
            }
        }
    }

    fn context(&self, delivery: &Delivery) -> Context {
        let ctx = Context::new(self.server_name.clone(), delivery.topic.clone())
            .with_metadata(delivery.message.headers.clone());
        let ctx = match &self.config {
            Some(config) => ctx.with_config(config.clone()),
            None => ctx,
        };
        match &self.client {
            Some(client) => ctx.with_client(client.clone()),
            None => ctx,
        }
    }
}

/// Cancels a keyed pool when dropped.
struct AbortPoolOnDrop(KeyedPool<u64>);

impl Drop for AbortPoolOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn settle(topic: &str, what: &str, result: Result<()>) {
    if let Err(err) = result {
        tracing::warn!(topic = %topic, error = %err, "could not {what} a message");
    }
}
