//! micro's benchmarks, each run side by side with its peer in the same process
//! and printed as ratios.
//!
//! ```sh
//! cargo run --release -p micro-bench            # 6 s per scenario and peer
//! cargo run --release -p micro-bench -- 2       # 2 s per scenario and peer
//! cargo run --release -p micro-bench -- 2 micro  # only micro's side, e.g. to profile it
//! ```
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
mod measure;

use std::{sync::Arc, time::Duration};

use measure::Summary;
use micro::transport::{
    Handler, Request, Response, Transport, http::HttpTransport, memory::MemoryTransport,
};
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
    let round = Duration::from_secs(seconds) / ROUNDS;
    if let Some(peer) = std::env::args().nth(2) {
        if peer == "memory" {
            return memory_transport_cost().await;
        }
        let concurrencies = match std::env::args().nth(3).and_then(|arg| arg.parse().ok()) {
            Some(concurrency) => vec![concurrency],
            None => vec![1, 64],
        };
        return one_peer(&peer, &concurrencies, Duration::from_secs(seconds)).await;
    }
    println!(
        "micro-bench: {seconds} s per scenario and peer, in {ROUNDS} alternating rounds, on loopback\n"
    );

    http_versus_axum(round).await?;
    memory_transport_cost().await?;
    Ok(())
}

async fn http_versus_axum(round: Duration) -> micro::Result<()> {
    let service = micro::Service::builder("bench")
        .transport(Arc::new(HttpTransport::new()))
        .handle("Bench.Echo", |_ctx, request: EchoRequest| async move {
            Ok(echo(request))
        })
        .build()?
        .start()
        .await?;
    let micro_client = service.client();
    let axum_address = axum_peer::serve().await?;
    let axum_client = axum_peer::AxumClient::new(axum_address)
        .map_err(|error| micro::Error::internal("axum peer address").with_source(error))?;

    println!(
        "HTTP, small JSON request: micro (HTTP transport, call by name) vs plain axum + hyper client"
    );
    println!(
        "{:>11} {:>6} {:>12} {:>10} {:>10} {:>8}",
        "concurrency", "peer", "calls/s", "p50", "p99", "errors"
    );
    for concurrency in [1, 64] {
        let (mut micro_runs, mut axum_runs) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let client = micro_client.clone();
            micro_runs.push(
                measure::closed_loop(concurrency, round, move || {
                    let client = client.clone();
                    async move {
                        let request = sample_request();
                        client
                            .call::<_, EchoReply>("bench", "Bench.Echo", &request)
                            .await
                            .is_ok_and(|reply| reply.id == request.id)
                    }
                })
                .await,
            );
            let client = axum_client.clone();
            axum_runs.push(
                measure::closed_loop(concurrency, round, move || {
                    let client = client.clone();
                    async move { client.call(&sample_request()).await }
                })
                .await,
            );
        }
        let (micro_summary, axum_summary) = (Summary::merge(micro_runs), Summary::merge(axum_runs));
        print_row(concurrency, "micro", &micro_summary);
        print_row(concurrency, "axum", &axum_summary);
        println!(
            "{:>11} ratio  throughput micro/axum = {:.3}   p50 micro/axum = {:.3}   p99 micro/axum = {:.3}",
            "",
            micro_summary.calls_per_second() / axum_summary.calls_per_second(),
            ratio(
                micro_summary.percentile(50.0),
                axum_summary.percentile(50.0)
            ),
            ratio(
                micro_summary.percentile(99.0),
                axum_summary.percentile(99.0)
            ),
        );
    }
    mixed_pairs(&micro_client, &service, axum_address, round).await?;
    println!();
    service.stop().await
}

/// Runs one peer (or mixed pair) alone at the given concurrencies.
async fn one_peer(peer: &str, concurrencies: &[usize], duration: Duration) -> micro::Result<()> {
    let service = micro::Service::builder("bench")
        .transport(Arc::new(HttpTransport::new()))
        .handle("Bench.Echo", |_ctx, request: EchoRequest| async move {
            Ok(echo(request))
        })
        .build()?
        .start()
        .await?;
    let micro_client = service.client();
    let micro_server: std::net::SocketAddr = service
        .address()
        .parse()
        .map_err(|error| micro::Error::internal("micro server address").with_source(error))?;
    let axum_address = axum_peer::serve().await?;
    let target = match peer {
        "micro" => None,
        "axum" | "mc>ax" => Some(axum_address),
        "hy>mc" => Some(micro_server),
        other => {
            return Err(micro::Error::invalid_argument(format!(
                "unknown peer {other:?}: expected micro, axum, mc>ax or hy>mc"
            )));
        }
    };
    println!("{peer} alone, {} s per concurrency", duration.as_secs());
    for &concurrency in concurrencies {
        let summary = match (peer, target) {
            ("mc>ax", Some(address)) => {
                let (client, target) = (micro_client.clone(), address.to_string());
                measure::closed_loop(concurrency, duration, move || {
                    let (client, target) = (client.clone(), target.clone());
                    async move {
                        client
                            .call_address::<_, EchoReply>(&target, "Bench.Echo", &sample_request())
                            .await
                            .is_ok()
                    }
                })
                .await
            }
            (_, Some(address)) => {
                let client = axum_peer::AxumClient::new(address)
                    .map_err(|error| micro::Error::internal("peer address").with_source(error))?;
                measure::closed_loop(concurrency, duration, move || {
                    let client = client.clone();
                    async move { client.call(&sample_request()).await }
                })
                .await
            }
            (_, None) => {
                let client = micro_client.clone();
                measure::closed_loop(concurrency, duration, move || {
                    let client = client.clone();
                    async move {
                        client
                            .call::<_, EchoReply>("bench", "Bench.Echo", &sample_request())
                            .await
                            .is_ok()
                    }
                })
                .await
            }
        };
        print_row(concurrency, peer, &summary);
    }
    service.stop().await
}

/// Each client against the other's server, at concurrency 64: tells whether a
/// gap between the peers sits on the client or on the server side.
async fn mixed_pairs(
    micro_client: &micro::Client,
    service: &micro::RunningService,
    axum_address: std::net::SocketAddr,
    round: Duration,
) -> micro::Result<()> {
    let micro_server: std::net::SocketAddr = service
        .address()
        .parse()
        .map_err(|error| micro::Error::internal("micro server address").with_source(error))?;
    let hyper_to_micro = axum_peer::AxumClient::new(micro_server)
        .map_err(|error| micro::Error::internal("micro server address").with_source(error))?;
    let (mut client_side, mut server_side) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let client = micro_client.clone();
        let target = axum_address.to_string();
        client_side.push(
            measure::closed_loop(64, round, move || {
                let (client, target) = (client.clone(), target.clone());
                async move {
                    let request = sample_request();
                    client
                        .call_address::<_, EchoReply>(&target, "Bench.Echo", &request)
                        .await
                        .is_ok_and(|reply| reply.id == request.id)
                }
            })
            .await,
        );
        let client = hyper_to_micro.clone();
        server_side.push(
            measure::closed_loop(64, round, move || {
                let client = client.clone();
                async move { client.call(&sample_request()).await }
            })
            .await,
        );
    }
    print_row(64, "mc>ax", &Summary::merge(client_side));
    print_row(64, "hy>mc", &Summary::merge(server_side));
    println!(
        "{:>11} (mc>ax: micro client to the axum server; hy>mc: plain hyper client to the micro server)",
        ""
    );
    Ok(())
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

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(f64::MIN_POSITIVE)
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn nanos(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e9
}
