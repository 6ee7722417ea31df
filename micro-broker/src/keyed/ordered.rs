use std::{fmt, future::Future, hash::Hash, panic::AssertUnwindSafe, sync::Arc, time::Duration};

use futures::{FutureExt, Stream, StreamExt};

use super::{KeyedConfig, KeyedPool};
use crate::{Delivery, Result};

/// Keyed ordered processing for any stream of deliveries (a [`Subscription`](crate::Subscription)
/// of any broker): `subscription.ordered_by(key).concurrency(n).handle(handler)`.
pub trait OrderedExt: Stream<Item = Result<Delivery>> + Sized + Send + Unpin + 'static {
    /// Handles deliveries with the same `key` strictly in arrival order, and
    /// deliveries with different keys in parallel; see [`Ordered`].
    fn ordered_by<K, F>(self, key: F) -> Ordered<Self, F>
    where
        K: Hash + Eq + Clone + Send + 'static,
        F: Fn(&Delivery) -> K,
    {
        Ordered {
            stream: self,
            key,
            config: KeyedConfig::default(),
            nack_delay: None,
        }
    }
}

impl<S> OrderedExt for S where S: Stream<Item = Result<Delivery>> + Sized + Send + Unpin + 'static {}

/// A delivery stream with a key function, ready to be handled; from
/// [`OrderedExt::ordered_by`].
///
/// [`handle`](Ordered::handle) reads the stream one delivery at a time and
/// submits each to a [`KeyedPool`] under its key, so:
/// - deliveries with the same key are handled one after another, in the order
///   the stream yielded them;
/// - up to [`concurrency`](Ordered::concurrency) handlers run at once, for
///   different keys;
/// - when the pool is full (too many keys in flight, or too many deliveries
///   held) the stream is not read: the broker's own flow control (its bounded
///   buffers, unacked limits) then holds the publisher back;
/// - a delivery that needs an ack is acked only after its handler returned
///   `Ok`, and before the next delivery of the same key starts; a handler
///   error or panic nacks it with the [`nack_delay`](Ordered::nack_delay),
///   so the broker redelivers it as its semantics say. A redelivery arrives
///   after deliveries the broker sent meanwhile, so after a failure the order
///   within that key is the broker's redelivery order.
pub struct Ordered<S, F> {
    stream: S,
    key: F,
    config: KeyedConfig,
    nack_delay: Option<Duration>,
}

impl<S, F, K> Ordered<S, F>
where
    S: Stream<Item = Result<Delivery>> + Send + Unpin + 'static,
    F: Fn(&Delivery) -> K,
    K: Hash + Eq + Clone + Send + 'static,
{
    /// How many handlers run at once (default
    /// [`KeyedConfig::DEFAULT_CONCURRENCY`]); the bounds on keys in flight and
    /// deliveries held are derived from it unless set after this call.
    pub fn concurrency(mut self, concurrency: usize) -> Ordered<S, F> {
        self.config = KeyedConfig::with_concurrency(concurrency);
        self
    }

    /// How many distinct keys may have deliveries in flight.
    pub fn max_keys(mut self, max_keys: usize) -> Ordered<S, F> {
        self.config.max_keys = max_keys;
        self
    }

    /// How many deliveries may be held, queued or running.
    pub fn buffer(mut self, buffer: usize) -> Ordered<S, F> {
        self.config.buffer = buffer;
        self
    }

    /// Replaces every limit with `config`.
    pub fn config(mut self, config: KeyedConfig) -> Ordered<S, F> {
        self.config = config;
        self
    }

    /// How long the broker waits before redelivering a delivery whose handler
    /// failed (default: at once).
    pub fn nack_delay(mut self, delay: Option<Duration>) -> Ordered<S, F> {
        self.nack_delay = delay;
        self
    }

    /// Handles every delivery with `handler` until the stream ends, then waits
    /// for the handlers still running. The handler gets the delivery without
    /// its acknowledgement, which this function settles. Errors the stream
    /// yields are logged and skipped, as a subscription keeps going after them.
    ///
    /// Dropping the returned future stops reading; handlers already running
    /// finish on their own tasks.
    pub async fn handle<H, Fut>(self, handler: H) -> Result<()>
    where
        H: Fn(Delivery) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        let Ordered {
            mut stream,
            key,
            config,
            nack_delay,
        } = self;
        let pool = KeyedPool::new(config);
        let handler = Arc::new(handler);
        while let Some(next) = stream.next().await {
            let mut delivery = match next {
                Ok(delivery) => delivery,
                Err(err) => {
                    tracing::error!(error = %err, "the subscription yielded an error; skipping it");
                    continue;
                }
            };
            let delivery_key = key(&delivery);
            let handler = Arc::clone(&handler);
            pool.submit(delivery_key, async move {
                // The handler gets the message; this task keeps the rest of
                // the delivery (its acknowledgement) to settle it afterwards.
                let handed = Delivery::new(
                    delivery.topic.clone(),
                    std::mem::take(&mut delivery.message),
                );
                let outcome = AssertUnwindSafe(async move { handler(handed).await })
                    .catch_unwind()
                    .await;
                settle(&mut delivery, outcome, nack_delay).await;
            })
            .await?;
        }
        pool.idle().await;
        Ok(())
    }
}

/// Acks after success, nacks after an error or a panic (no-ops for deliveries
/// that need no ack); a settle failure is logged, since the broker's
/// redelivery (or not) is then out of our hands.
async fn settle(
    delivery: &mut Delivery,
    outcome: std::thread::Result<Result<()>>,
    nack_delay: Option<Duration>,
) {
    let topic = delivery.topic.as_str();
    let redelivered = delivery.needs_ack();
    let settled = match outcome {
        Ok(Ok(())) => delivery.ack().await,
        Ok(Err(err)) => {
            tracing::error!(topic, error = %err, redelivered, "keyed handler failed");
            delivery.nack(nack_delay).await
        }
        Err(_panic) => {
            tracing::error!(topic, redelivered, "keyed handler panicked");
            delivery.nack(nack_delay).await
        }
    };
    if let Err(err) = settled {
        tracing::warn!(topic = %delivery.topic, error = %err, "could not settle a delivery");
    }
}

impl<S, F> fmt::Debug for Ordered<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ordered")
            .field("config", &self.config)
            .field("nack_delay", &self.nack_delay)
            .finish_non_exhaustive()
    }
}
