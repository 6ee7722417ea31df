//! Keyed ordered processing: same key in order, different keys in parallel.
//!
//! Events about one thing (an order, an account, a user) must usually be
//! applied in the order they happened, while events about different things
//! can be handled at the same time. A single consumer loop gives order but no
//! parallelism; a plain worker pool gives parallelism but reorders. This
//! module gives both:
//!
//! - [`KeyedPool`]: a keyed worker pool for any stream of work items. Items
//!   submitted under the same key run one after another, in submission order;
//!   items under different keys run in parallel, up to
//!   [`KeyedConfig::concurrency`] at once. The keys in flight and the items
//!   held are bounded ([`KeyedConfig::max_keys`], [`KeyedConfig::buffer`]):
//!   when full, [`KeyedPool::submit`] waits, so a producer feeding it is slowed
//!   down rather than queueing without limit.
//! - [`OrderedExt::ordered_by`]: the same for a broker [`Subscription`](crate::Subscription)
//!   of any backend, acking each delivery only after its handler finished and
//!   nacking it when the handler fails. `micro`'s `Server::subscribe_ordered`
//!   uses the same pool.
//!
//! It works on every broker because it sits on the consuming side: the broker
//! delivers in its own order (publish order per publisher, on every backend
//! in this crate), and the pool never lets two deliveries with the same key
//! overtake each other.
//!
//! # A keyed worker pool on its own
//!
//! ```
//! use std::sync::{Arc, Mutex};
//!
//! use micro_broker::keyed::KeyedPool;
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> micro_broker::Result<()> {
//! // Bank transfers: each account's entries must be applied in order.
//! let ledger = Arc::new(Mutex::new(Vec::new()));
//! let pool = KeyedPool::with_concurrency(4);
//! for (account, entry) in [("alice", 1), ("bob", 1), ("alice", 2), ("carol", 1), ("alice", 3)] {
//!     let ledger = Arc::clone(&ledger);
//!     pool.submit(account, async move {
//!         ledger.lock().unwrap().push((account, entry));
//!     })
//!     .await?;
//! }
//! pool.idle().await;
//!
//! let ledger = ledger.lock().unwrap();
//! let alice: Vec<i32> = ledger.iter().filter(|(a, _)| *a == "alice").map(|(_, e)| *e).collect();
//! assert_eq!(alice, [1, 2, 3]);
//! assert_eq!(ledger.len(), 5);
//! # Ok(())
//! # }
//! ```
//!
//! # On a subscription
//!
//! ```
//! use futures::StreamExt;
//! use micro_broker::{Broker, Message, SubscribeOptions, keyed::OrderedExt, memory::MemoryBroker};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> micro_broker::Result<()> {
//! let broker = MemoryBroker::new();
//! let orders = broker
//!     .subscribe("orders.*", &SubscribeOptions::queue("billing").with_manual_ack())
//!     .await?;
//! let billing = tokio::spawn(
//!     // Key: the order id header; up to 8 orders handled at once.
//!     orders
//!         .ordered_by(|d| d.message.headers.get("order-id").unwrap_or_default().to_owned())
//!         .concurrency(8)
//!         .handle(|delivery| async move {
//!             println!("{} for order {:?}", delivery.topic, delivery.message.headers.get("order-id"));
//!             Ok(()) // acked now; an Err would be nacked and redelivered
//!         }),
//! );
//! broker.publish("orders.created", Message::new("").with_header("order-id", "7")).await?;
//! broker.publish("orders.paid", Message::new("").with_header("order-id", "7")).await?;
//! # drop(broker);
//! # billing.abort();
//! # Ok(())
//! # }
//! ```

mod config;
mod ordered;
mod pool;

pub use config::{BUFFER_ENV, CONCURRENCY_ENV, KeyedConfig, MAX_KEYS_ENV};
pub use ordered::{Ordered, OrderedExt};
pub use pool::KeyedPool;
