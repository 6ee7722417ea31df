//! The memory broker's fan-out rate against `tokio::sync::broadcast`, and the
//! keyed pool against an unkeyed bounded pool, side by side in one run.
//!
//! ```sh
//! cargo run --release -p micro-bench -- 2 fanout
//! ```
//!
//! **Fan-out**: one publisher, N subscribers of one topic, 128-byte bodies.
//! micro's side is `MemoryBroker::publish` into N fan-out subscriptions
//! (bounded buffers of 1024, back-pressure), each drained by its own task.
//! The peer is a `tokio::sync::broadcast` channel of capacity 1024 with N
//! receivers on their own tasks; broadcast never holds a sender back (it
//! drops the oldest values for a lagging receiver), so to deliver everything
//! as the broker does, its publisher yields while the channel is full. Lost
//! values (`Lagged`) are counted and printed; the rate counts only values
//! delivered. `bc lossy` is broadcast left to its own behaviour (the
//! publisher never waits, lagging receivers lose values): a ceiling, not the
//! same service. Reported: messages published per second (each reaching all N
//! subscribers) and deliveries per second.
//!
//! **Keyed pool**: trivial async work items spread over 1024 keys, through a
//! `KeyedPool` (concurrency 16) against `for_each_concurrent(16)` over the
//! same items (no ordering at all): the price of per-key ordering. That peer
//! runs every item inside the calling task (no spawn, no hand-off between
//! tasks or threads, no type erasure), which a pool whose items run on their
//! own tasks cannot match; so a second reference is printed beside it, an
//! unordered pool of the same shape as `KeyedPool`: 16 spawned worker tasks,
//! each fed boxed items through its own bounded channel (16 deep), round-robin.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::StreamExt;
use micro::broker::{Broker, Message, SubscribeOptions, keyed::KeyedPool, memory::MemoryBroker};
use tokio::sync::broadcast;

const TOPIC: &str = "bench.fanout";
const BODY: usize = 128;
const CAPACITY: usize = 1024;
const ROUNDS: u32 = 3;

/// What one timed run delivered.
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    published: u64,
    delivered: u64,
    lost: u64,
    elapsed: Duration,
}

impl Run {
    fn add(&mut self, other: Run) {
        self.published += other.published;
        self.delivered += other.delivered;
        self.lost += other.lost;
        self.elapsed += other.elapsed;
    }

    fn published_per_second(&self) -> f64 {
        self.published as f64 / self.elapsed.as_secs_f64()
    }

    fn delivered_per_second(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs the fan-out and keyed-pool comparisons for about `seconds` each, or,
/// with `args` (`micro 16`, `broadcast 4`, `keyed`), one side alone for `perf`.
pub(crate) async fn run(seconds: u64, args: &[String]) -> micro::Result<()> {
    if let Some(side) = args.first() {
        return run_alone(side, args.get(1), Duration::from_secs(seconds.max(1))).await;
    }
    let per_round = Duration::from_secs(seconds.max(1)) / ROUNDS;
    println!(
        "fan-out, {BODY}-byte bodies, one publisher: micro memory broker vs tokio::sync::broadcast \
         (capacity {CAPACITY}), {ROUNDS} alternating rounds of {per_round:?}"
    );
    println!(
        "{:>11} {:>10} {:>14} {:>16} {:>8}",
        "subscribers", "peer", "published/s", "deliveries/s", "lost"
    );
    for subscribers in [1, 4, 16] {
        let (mut micro, mut peer, mut lossy) = (Run::default(), Run::default(), Run::default());
        for _ in 0..ROUNDS {
            micro.add(memory_broker(subscribers, per_round).await?);
            peer.add(tokio_broadcast(subscribers, per_round, true).await);
            lossy.add(tokio_broadcast(subscribers, per_round, false).await);
        }
        print_row(subscribers, "micro", &micro);
        print_row(subscribers, "broadcast", &peer);
        print_row(subscribers, "bc lossy", &lossy);
        println!(
            "{:>11} ratio  deliveries/s micro/broadcast = {:.3}   micro/lossy broadcast = {:.3}",
            "",
            micro.delivered_per_second() / peer.delivered_per_second(),
            micro.delivered_per_second() / lossy.delivered_per_second()
        );
    }

    println!(
        "\nkeyed pool, trivial items over 1024 keys, concurrency 16: KeyedPool vs for_each_concurrent (unordered)"
    );
    let (mut keyed, mut unkeyed, mut workers) = (0.0, 0.0, 0.0);
    for _ in 0..ROUNDS {
        keyed += keyed_pool(per_round).await?;
        unkeyed += for_each_concurrent(per_round).await;
        workers += spawned_workers(per_round).await;
    }
    println!(
        "{:>22} {:>12.0} items/s",
        "KeyedPool",
        keyed / f64::from(ROUNDS)
    );
    println!(
        "{:>22} {:>12.0} items/s",
        "for_each_concurrent",
        unkeyed / f64::from(ROUNDS)
    );
    println!(
        "{:>22} {:>12.0} items/s",
        "spawned workers",
        workers / f64::from(ROUNDS)
    );
    println!("{:>22} {:>12.3}", "ratio keyed/unkeyed", keyed / unkeyed);
    println!("{:>22} {:>12.3}", "keyed/spawned workers", keyed / workers);
    Ok(())
}

async fn run_alone(
    side: &str,
    subscribers: Option<&String>,
    duration: Duration,
) -> micro::Result<()> {
    let subscribers = match subscribers.map(|count| count.parse::<usize>()) {
        None => 1,
        Some(Ok(count)) if count > 0 => count,
        Some(_) => {
            return Err(micro::Error::invalid_argument(
                "the subscriber count must be a positive number",
            ));
        }
    };
    let run = match side {
        "micro" => memory_broker(subscribers, duration).await?,
        "broadcast" => tokio_broadcast(subscribers, duration, true).await,
        "keyed" => {
            println!("KeyedPool: {:.0} items/s", keyed_pool(duration).await?);
            return Ok(());
        }
        other => {
            return Err(micro::Error::invalid_argument(format!(
                "unknown fan-out side {other:?}: micro, broadcast or keyed"
            )));
        }
    };
    print_row(subscribers, side, &run);
    Ok(())
}

fn print_row(subscribers: usize, peer: &str, run: &Run) {
    println!(
        "{subscribers:>11} {peer:>10} {:>14.0} {:>16.0} {:>8}",
        run.published_per_second(),
        run.delivered_per_second(),
        run.lost
    );
}

/// Publishes for `duration`, then waits until every subscriber drained.
async fn memory_broker(subscribers: usize, duration: Duration) -> micro::Result<Run> {
    let broker = MemoryBroker::builder().buffer(CAPACITY).build();
    let delivered = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..subscribers {
        let mut subscription = broker.subscribe(TOPIC, &SubscribeOptions::fanout()).await?;
        let delivered = Arc::clone(&delivered);
        readers.push(tokio::spawn(async move {
            let mut count = 0_u64;
            while let Some(Ok(delivery)) = subscription.next().await {
                if delivery.message.body.is_empty() {
                    break;
                }
                count += 1;
            }
            delivered.fetch_add(count, Ordering::Relaxed);
        }));
    }
    let body = Bytes::from(vec![7_u8; BODY]);
    let start = Instant::now();
    let mut published = 0_u64;
    while start.elapsed() < duration {
        for _ in 0..64 {
            broker.publish(TOPIC, Message::new(body.clone())).await?;
        }
        published += 64;
    }
    // An empty body tells each reader to stop.
    broker.publish(TOPIC, Message::new(Bytes::new())).await?;
    for reader in readers {
        reader
            .await
            .map_err(|err| micro::Error::internal(format!("a reader failed: {err}")))?;
    }
    Ok(Run {
        published,
        delivered: delivered.load(Ordering::Relaxed),
        lost: 0,
        elapsed: start.elapsed(),
    })
}

/// `lossless`: the publisher yields while the channel is full, as the broker
/// holds a publisher back; otherwise broadcast's own behaviour (a lagging
/// receiver loses the oldest values, counted as lost).
async fn tokio_broadcast(subscribers: usize, duration: Duration, lossless: bool) -> Run {
    let (sender, _) = broadcast::channel::<Bytes>(CAPACITY);
    let delivered = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..subscribers {
        let mut receiver = sender.subscribe();
        let (delivered, lost) = (Arc::clone(&delivered), Arc::clone(&lost));
        readers.push(tokio::spawn(async move {
            let mut count = 0_u64;
            loop {
                match receiver.recv().await {
                    Ok(body) if body.is_empty() => break,
                    Ok(_) => count += 1,
                    Err(broadcast::error::RecvError::Lagged(skipped)) => {
                        lost.fetch_add(skipped, Ordering::Relaxed);
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
            delivered.fetch_add(count, Ordering::Relaxed);
        }));
    }
    let body = Bytes::from(vec![7_u8; BODY]);
    let start = Instant::now();
    let mut published = 0_u64;
    while start.elapsed() < duration {
        for _ in 0..64 {
            // Lossless like the broker: wait for room instead of overwriting.
            while lossless && sender.len() >= CAPACITY - 1 {
                tokio::task::yield_now().await;
            }
            let _ = sender.send(body.clone());
        }
        published += 64;
    }
    while sender.len() >= CAPACITY - 1 {
        tokio::task::yield_now().await;
    }
    let _ = sender.send(Bytes::new());
    for reader in readers {
        let _ = reader.await;
    }
    Run {
        published,
        delivered: delivered.load(Ordering::Relaxed),
        lost: lost.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
    }
}

const KEYS: u64 = 1024;
const CONCURRENCY: usize = 16;

/// Items per second through a keyed pool, trivial work per item.
async fn keyed_pool(duration: Duration) -> micro::Result<f64> {
    let pool = KeyedPool::with_concurrency(CONCURRENCY);
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut submitted = 0_u64;
    while start.elapsed() < duration {
        for _ in 0..64 {
            let done = Arc::clone(&done);
            pool.submit(submitted % KEYS, async move {
                tokio::task::yield_now().await;
                done.fetch_add(1, Ordering::Relaxed);
            })
            .await?;
            submitted += 1;
        }
    }
    pool.idle().await;
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

/// Items per second through `for_each_concurrent`, same work, no keys.
async fn for_each_concurrent(duration: Duration) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let items = futures::stream::unfold(0_u64, |i| async move {
        (start.elapsed() < duration || i % 64 != 0).then_some((i, i + 1))
    });
    items
        .for_each_concurrent(CONCURRENCY, |_| {
            let done = Arc::clone(&done);
            async move {
                tokio::task::yield_now().await;
                done.fetch_add(1, Ordering::Relaxed);
            }
        })
        .await;
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// Items per second through an unordered pool of spawned workers, same work.
async fn spawned_workers(duration: Duration) -> f64 {
    type Item = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
    let done = Arc::new(AtomicU64::new(0));
    let (senders, workers): (Vec<_>, Vec<_>) = (0..CONCURRENCY)
        .map(|_| {
            let (sender, mut receiver) = tokio::sync::mpsc::channel::<Item>(CONCURRENCY);
            let worker = tokio::spawn(async move {
                while let Some(item) = receiver.recv().await {
                    item.await;
                }
            });
            (sender, worker)
        })
        .unzip();
    let start = Instant::now();
    let mut submitted = 0_usize;
    while start.elapsed() < duration {
        for _ in 0..64 {
            let done = Arc::clone(&done);
            let item: Item = Box::pin(async move {
                tokio::task::yield_now().await;
                done.fetch_add(1, Ordering::Relaxed);
            });
            if senders[submitted % CONCURRENCY].send(item).await.is_err() {
                break;
            }
            submitted += 1;
        }
    }
    drop(senders);
    for worker in workers {
        let _ = worker.await;
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}
