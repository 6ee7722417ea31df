//! micro's benchmarks, each run side by side with its peer in the same process
//! and printed as ratios.
//!
//! ```sh
//! cargo run --release -p micro-bench            # 6 s per scenario and peer
//! cargo run --release -p micro-bench -- 2       # 2 s per scenario and peer
//! cargo run --release -p micro-bench -- 2 micro  # only micro's side, e.g. to profile it
//! ```
//!
//! `cargo run --release -p micro-bench -- 6 nats` runs micro's NATS broker
//! against raw async-nats instead (see the `nats` module);
//! `cargo run --release -p micro-bench -- 6 fanout` the memory broker's
//! fan-out against `tokio::sync::broadcast` and the keyed pool against an
//! unkeyed one (see the `fanout` module).
//!
//! The optional second argument runs one peer alone (`micro`, `axum`, `mc>ax`
//! or `hy>mc`), at concurrency 1 and 64 or at the one given as a third
//! argument, or only the memory transport's per-call cost (`memory`), with nothing else in the process busy, so that `perf`,
//! `strace -c` or a packet count see that peer only.
//!
//! What it measures:
//! - calls/s and p50/p99 latency of a small JSON request over micro's HTTP
//!   transport (client calling by service name) against the same handler served
//!   by plain axum and called by a plain hyper client, on loopback, at
//!   concurrency 1 and 64; the peers alternate in rounds so that drift in the
//!   machine's load hits both alike;
//! - the per-call cost of the memory transport: a raw transport round trip and
//!   a full micro call (codec, router, selector) through it.

mod axum_peer;
mod discovery;
mod discovery_procs;
mod discovery_servers;
mod fanout;
mod grpc;
mod measure;
mod nats;
mod peers;
mod pipeline;
mod rounds;
mod tls;

use std::{sync::Arc, time::Duration};

use measure::Summary;
use micro::transport::{Handler, Request, Response, Transport, memory::MemoryTransport};
use peers::{Pair, Peers};
use serde::{Deserialize, Serialize};

/// The benchmark's request: about 70 bytes of JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EchoRequest {
    id: u64,
    name: String,
    tags: Vec<String>,
}

/// The benchmark's reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EchoReply {
    id: u64,
    greeting: String,
}

/// The handler both peers serve.
pub(crate) fn echo(request: EchoRequest) -> EchoReply {
    EchoReply {
        id: request.id,
        greeting: format!("hello {} ({} tags)", request.name, request.tags.len()),
    }
}

fn sample_request() -> EchoRequest {
    EchoRequest {
        id: 7,
        name: "Ada Lovelace".to_owned(),
        tags: vec!["math".to_owned(), "engines".to_owned()],
    }
}

const ROUNDS: u32 = 3;

#[tokio::main]
async fn main() -> micro::Result<()> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(6);
    if let Some(peer) = std::env::args().nth(2) {
        if peer == "pipeline" {
            let args: Vec<String> = std::env::args().skip(3).collect();
            return pipeline::run(&args);
        }
        if peer == "nats" {
            let args: Vec<String> = std::env::args().skip(3).collect();
            return nats::run(seconds, &args).await;
        }
        if peer == "fanout" {
            let args: Vec<String> = std::env::args().skip(3).collect();
            return fanout::run(seconds, &args).await;
        }
        if peer == "memory" {
            return memory_transport_cost().await;
        }
        if peer == "discovery" {
            return discovery::run(seconds).await;
        }
        if peer == "tls" {
            return tls::run(seconds).await;
        }
        if peer == "grpc" {
            let args: Vec<String> = std::env::args().skip(3).collect();
            return grpc::run(seconds, &args).await;
        }
        let pair = Pair::parse(&peer)?;
        let concurrencies = match std::env::args().nth(3).and_then(|arg| arg.parse().ok()) {
            Some(concurrency) => vec![concurrency],
            None => vec![1, 64],
        };
        return one_peer(pair, &concurrencies, Duration::from_secs(seconds)).await;
    }
    println!(
        "micro-bench: {seconds} s per scenario and peer, in {ROUNDS} alternating rounds, on loopback\n"
    );

    let round = Duration::from_secs(seconds) / ROUNDS;
    let peers = Peers::start().await?;
    http_versus_axum(&peers, round).await;
    mixed_pairs(&peers, round).await;
    println!();
    peers.stop().await?;
    memory_transport_cost().await
}

async fn http_versus_axum(peers: &Peers, round: Duration) {
    println!(
        "HTTP, small JSON request: micro (HTTP transport, call by name) vs plain axum + hyper client"
    );
    print_header();
    for concurrency in [1, 64] {
        let (micro_summary, axum_summary) = peers
            .alternate((Pair::Micro, Pair::Axum), concurrency, ROUNDS, round)
            .await;
        print_row(concurrency, Pair::Micro.label(), &micro_summary);
        print_row(concurrency, Pair::Axum.label(), &axum_summary);
        print_ratios("axum", &micro_summary, &axum_summary);
    }
}

/// Each client against the other's server, at concurrency 64: tells whether a
/// gap between the peers sits on the client or on the server side.
async fn mixed_pairs(peers: &Peers, round: Duration) {
    let (client_side, server_side) = peers
        .alternate((Pair::MicroToAxum, Pair::HyperToMicro), 64, ROUNDS, round)
        .await;
    print_row(64, Pair::MicroToAxum.label(), &client_side);
    print_row(64, Pair::HyperToMicro.label(), &server_side);
    println!(
        "{:>11} (mc>ax: micro client to the axum server; hy>mc: plain hyper client to the micro server)",
        ""
    );
}

/// Runs one pair alone at the given concurrencies, with nothing else in the
/// process busy, so that `perf` or `strace -c` see that pair only.
async fn one_peer(pair: Pair, concurrencies: &[usize], duration: Duration) -> micro::Result<()> {
    let peers = Peers::start().await?;
    println!(
        "{} alone, {} s per concurrency",
        pair.label(),
        duration.as_secs()
    );
    for &concurrency in concurrencies {
        print_row(
            concurrency,
            pair.label(),
            &peers.load(pair, concurrency, duration).await,
        );
    }
    peers.stop().await
}

async fn memory_transport_cost() -> micro::Result<()> {
    const CALLS: u32 = 200_000;
    let transport = MemoryTransport::isolated();
    let listener = transport
        .listen(
            "",
            Handler::from_fn(|request: Request| async move { Ok(Response::new(request.body)) }),
        )
        .await?;
    let channel = transport.dial(listener.address()).await?;
    let payload = bytes::Bytes::from(serde_json::to_vec(&sample_request()).unwrap_or_default());
    let (raw_cost, raw_errors) = measure::per_call_cost(CALLS, || {
        let channel = channel.clone();
        let payload = payload.clone();
        async move {
            channel
                .call_once(Request::new("Bench.Echo", payload))
                .await
                .is_ok()
        }
    })
    .await;

    let service = micro::Service::builder("bench-memory")
        .transport(Arc::new(MemoryTransport::isolated()))
        .handle("Bench.Echo", |_ctx, request: EchoRequest| async move {
            Ok(echo(request))
        })
        .build()?
        .start()
        .await?;
    let client = service.client();
    let (full_cost, full_errors) = measure::per_call_cost(CALLS, || {
        let client = client.clone();
        async move {
            client
                .call::<_, EchoReply>("bench-memory", "Bench.Echo", &sample_request())
                .await
                .is_ok()
        }
    })
    .await;

    println!("memory transport, per call ({CALLS} sequential calls each)");
    println!(
        "  raw transport round trip (Channel -> Handler, bytes echoed): {:>8.0} ns  errors {raw_errors}",
        nanos(raw_cost)
    );
    println!(
        "  full micro call (JSON codec, router, selector, by name):     {:>8.0} ns  errors {full_errors}",
        nanos(full_cost)
    );
    listener.shutdown(Duration::from_secs(1)).await?;
    service.stop().await
}

fn print_row(concurrency: usize, peer: &str, summary: &Summary) {
    println!(
        "{concurrency:>11} {peer:>6} {:>12.0} {:>10} {:>10} {:>8}",
        summary.calls_per_second(),
        format!("{:.1}us", micros(summary.percentile(50.0))),
        format!("{:.1}us", micros(summary.percentile(99.0))),
        summary.errors,
    );
}

/// The column titles of the rows [`print_row`] prints.
pub(crate) fn print_header() {
    println!(
        "{:>11} {:>6} {:>12} {:>10} {:>10} {:>8}",
        "concurrency", "peer", "calls/s", "p50", "p99", "errors"
    );
}

/// micro's throughput and latency over a peer's, measured in the same run.
pub(crate) fn print_ratios(peer: &str, micro: &Summary, other: &Summary) {
    println!(
        "{:>11} ratio  throughput micro/{peer} = {:.3}   p50 micro/{peer} = {:.3}   p99 micro/{peer} = {:.3}",
        "",
        micro.calls_per_second() / other.calls_per_second(),
        ratio(micro.percentile(50.0), other.percentile(50.0)),
        ratio(micro.percentile(99.0), other.percentile(99.0)),
    );
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(f64::MIN_POSITIVE)
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn nanos(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e9
}
