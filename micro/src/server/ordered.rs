//! Keyed ordered subscribers: [`Server::subscribe_ordered`](super::Server::subscribe_ordered).

use std::{
    fmt,
    hash::{DefaultHasher, Hash, Hasher},
    sync::Arc,
};

use futures::future::BoxFuture;

use crate::{
    Context, Error, Result, SubscribeOptions,
    broker::{Message, keyed::KeyedConfig},
    codec::{self, Decode},
};

/// Decodes a message into its key and the future that handles it.
pub(super) type KeyedFn =
    Arc<dyn Fn(Context, &Message) -> Result<(u64, BoxFuture<'static, Result<()>>)> + Send + Sync>;

/// How an ordered subscriber keys and spreads its messages; see
/// [`Server::subscribe_ordered`](super::Server::subscribe_ordered).
///
/// Messages whose key is equal are handled one after another in arrival
/// order; others in parallel, up to [`concurrency`](KeyedOrder::concurrency)
/// at once. Keys are compared by hash: two different keys with the same
/// 64-bit hash are kept in order together, which costs parallelism, never
/// correctness.
///
/// ```
/// # #[derive(serde::Deserialize)] struct OrderEvent { order_id: u64 }
/// use micro::KeyedOrder;
///
/// let order = KeyedOrder::by(|event: &OrderEvent| event.order_id).concurrency(8);
/// ```
pub struct KeyedOrder<T> {
    pub(super) key: Arc<dyn Fn(&T) -> u64 + Send + Sync>,
    pub(super) config: KeyedConfig,
    pub(super) options: Option<SubscribeOptions>,
}

impl<T> KeyedOrder<T> {
    /// Orders by `key`, with [`KeyedConfig::default`] limits.
    pub fn by<K, F>(key: F) -> KeyedOrder<T>
    where
        K: Hash,
        F: Fn(&T) -> K + Send + Sync + 'static,
    {
        KeyedOrder {
            key: Arc::new(move |event: &T| {
                let mut hasher = DefaultHasher::new();
                key(event).hash(&mut hasher);
                hasher.finish()
            }),
            config: KeyedConfig::default(),
            options: None,
        }
    }

    /// How many messages are handled at once (different keys); the bounds on
    /// keys in flight and messages held derive from it unless set afterwards.
    pub fn concurrency(mut self, concurrency: usize) -> KeyedOrder<T> {
        self.config = KeyedConfig::with_concurrency(concurrency);
        self
    }

    /// How many distinct keys may have messages in flight.
    pub fn max_keys(mut self, max_keys: usize) -> KeyedOrder<T> {
        self.config.max_keys = max_keys;
        self
    }

    /// How many messages may be held, queued or being handled.
    pub fn buffer(mut self, buffer: usize) -> KeyedOrder<T> {
        self.config.buffer = buffer;
        self
    }

    /// Subscribes with these options instead of the server's queue group
    /// (as [`Server::subscribe_with`](super::Server::subscribe_with)).
    pub fn options(mut self, options: SubscribeOptions) -> KeyedOrder<T> {
        self.options = Some(options);
        self
    }
}

impl<T> fmt::Debug for KeyedOrder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedOrder")
            .field("config", &self.config)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// What the subscriber task needs to run an ordered subscriber.
#[derive(Clone)]
pub(super) struct OrderedSpec {
    pub(super) config: KeyedConfig,
    pub(super) decode: KeyedFn,
}

/// A message's body decoded by its `content-type` header (when absent, the
/// first content type `T` reads: JSON for serde types).
pub(super) fn decode<T: Decode>(message: &Message) -> Result<T> {
    let content_type = message.headers.get("content-type").unwrap_or_default();
    let format = codec::incoming_format::<T>(content_type).ok_or_else(|| {
        Error::invalid_argument(format!(
            "{} is read from {}, not {content_type:?}",
            std::any::type_name::<T>(),
            T::CONTENT_TYPES.join(" or ")
        ))
    })?;
    T::decode(format, message.body.clone())
}
