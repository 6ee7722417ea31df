//! gRPC: micro's gRPC transport against plain tonic, side by side in one
//! process, on loopback, in alternating rounds.
//!
//! - unary: calls/s and p50/p99 of `micro.echo.Echo/Unary` (a small protobuf
//!   request), micro's client calling the service by name and a micro
//!   `handle_proto` handler answering, against tonic's generated client and
//!   server ([`TonicEcho`]), at concurrency 1 and 64;
//! - streaming: messages/s and MB/s of a server stream of 1 KiB messages,
//!   micro's transport channel and its [`echo::handler`] against tonic's
//!   client and server.
//!
//! `cargo run --release -p micro-bench -- 6 grpc`

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use futures::StreamExt;
use micro::{
    Context, Result,
    registry::memory::MemoryRegistry,
    transport::{
        Body, Channel, Request, Transport,
        grpc::{
            GrpcTransport,
            echo::{self, EchoReply, EchoRequest, TonicEcho, echo_client::EchoClient},
        },
    },
};
use prost::Message;
use tokio::sync::oneshot;

use crate::{ROUNDS, measure, measure::Summary, print_row, ratio};

/// The unary request: about 60 bytes of protobuf.
fn unary_request() -> EchoRequest {
    EchoRequest {
        message: "hello Ada Lovelace (math, engines)".to_owned(),
        payload: vec![7; 16],
        count: 0,
    }
}

/// Messages per streamed call, and their payload size.
const STREAM_MESSAGES: u32 = 100_000;
const STREAM_PAYLOAD: usize = 1024;

/// Runs the gRPC benchmarks, `seconds` per scenario and peer.
pub(crate) async fn run(seconds: u64) -> Result<()> {
    println!(
        "gRPC: micro (gRPC transport) vs plain tonic, {seconds} s per scenario and peer, {ROUNDS} alternating rounds, loopback\n"
    );
    let round = Duration::from_secs(seconds) / ROUNDS;
    let tonic = TonicPeer::start().await;

    let registry = MemoryRegistry::new();
    let transport = GrpcTransport::builder().package("micro.echo").build()?;
    let service = micro::Service::builder("bench-grpc")
        .registry(registry)
        .transport(transport.clone())
        .handle_proto(
            "Echo.Unary",
            |_ctx: Context, request: EchoRequest| async move {
                Ok(EchoReply {
                    message: request.message,
                    payload: request.payload,
                    index: 0,
                })
            },
        )
        .build()?
        .start()
        .await?;
    let client = service.client();

    println!(
        "unary, small protobuf request: micro client by name -> micro handler vs tonic client -> tonic server"
    );
    println!(
        "{:>11} {:>6} {:>12} {:>10} {:>10} {:>8}",
        "concurrency", "peer", "calls/s", "p50", "p99", "errors"
    );
    for concurrency in [1, 64] {
        let mut micro_runs = Vec::new();
        let mut tonic_runs = Vec::new();
        for _ in 0..ROUNDS {
            let client = client.clone();
            micro_runs.push(
                measure::closed_loop(concurrency, round, move || {
                    let client = client.clone();
                    async move {
                        client
                            .call_proto::<_, EchoReply>(
                                "bench-grpc",
                                "Echo.Unary",
                                &unary_request(),
                            )
                            .await
                            .is_ok_and(|reply| reply.payload.len() == 16)
                    }
                })
                .await,
            );
            let tonic_client = tonic.client.clone();
            tonic_runs.push(
                measure::closed_loop(concurrency, round, move || {
                    let mut client = tonic_client.clone();
                    async move {
                        client
                            .unary(unary_request())
                            .await
                            .is_ok_and(|reply| reply.into_inner().payload.len() == 16)
                    }
                })
                .await,
            );
        }
        let (micro_summary, tonic_summary) =
            (Summary::merge(micro_runs), Summary::merge(tonic_runs));
        print_row(concurrency, "micro", &micro_summary);
        print_row(concurrency, "tonic", &tonic_summary);
        println!(
            "{:>11} ratio  throughput micro/tonic = {:.3}   p50 micro/tonic = {:.3}   p99 micro/tonic = {:.3}",
            "",
            micro_summary.calls_per_second() / tonic_summary.calls_per_second(),
            ratio(
                micro_summary.percentile(50.0),
                tonic_summary.percentile(50.0)
            ),
            ratio(
                micro_summary.percentile(99.0),
                tonic_summary.percentile(99.0)
            ),
        );
    }

    println!(
        "\nserver streaming, {STREAM_MESSAGES} messages of {STREAM_PAYLOAD} B per call: micro transport channel -> micro handler vs tonic client -> tonic server"
    );
    let listener = transport.listen("127.0.0.1:0", echo::handler()).await?;
    let channel = transport.dial(listener.address()).await?;
    let (mut micro_total, mut tonic_total) = (Throughput::default(), Throughput::default());
    let deadline = Instant::now() + Duration::from_secs(seconds) * 2;
    for _ in 0..ROUNDS {
        micro_total.add(micro_stream(&channel).await?);
        tonic_total.add(tonic_stream(&tonic.client).await?);
        if Instant::now() > deadline {
            break;
        }
    }
    micro_total.print("micro");
    tonic_total.print("tonic");
    println!(
        "{:>11} ratio  messages/s micro/tonic = {:.3}",
        "",
        micro_total.per_second() / tonic_total.per_second()
    );

    listener.shutdown(Duration::from_secs(1)).await?;
    service.stop().await?;
    tonic.stop().await;
    Ok(())
}

/// Messages received and the time they took, over several calls.
#[derive(Debug, Default)]
struct Throughput {
    messages: u64,
    bytes: u64,
    elapsed: Duration,
}

impl Throughput {
    fn add(&mut self, other: Throughput) {
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.elapsed += other.elapsed;
    }

    fn per_second(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&self, peer: &str) {
        println!(
            "{:>11} {peer:>6} {:>12.0} msg/s {:>8.1} MB/s ({} messages)",
            "",
            self.per_second(),
            self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64(),
            self.messages
        );
    }
}

fn stream_request() -> EchoRequest {
    EchoRequest {
        message: "s".to_owned(),
        payload: vec![3; STREAM_PAYLOAD],
        count: STREAM_MESSAGES,
    }
}

async fn micro_stream(channel: &Channel) -> Result<Throughput> {
    let started = Instant::now();
    let request = Request::new(
        "Echo.ServerStream",
        Body::Full(stream_request().encode_to_vec().into()),
    )
    .with_content_type("application/protobuf");
    let mut replies = channel.call_once(request).await?.body.into_stream();
    let mut total = Throughput::default();
    while let Some(reply) = replies.next().await {
        let reply = EchoReply::decode(reply?)
            .map_err(|err| micro::Error::internal("bad reply").with_source(err))?;
        total.messages += 1;
        total.bytes += reply.payload.len() as u64;
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

async fn tonic_stream(client: &EchoClient<tonic::transport::Channel>) -> Result<Throughput> {
    let started = Instant::now();
    let mut replies = client
        .clone()
        .server_stream(stream_request())
        .await
        .map_err(|status| micro::Error::internal(status.message().to_owned()))?
        .into_inner();
    let mut total = Throughput::default();
    while let Some(reply) = replies.next().await {
        let reply = reply.map_err(|status| micro::Error::internal(status.message().to_owned()))?;
        total.messages += 1;
        total.bytes += reply.payload.len() as u64;
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

/// A plain tonic server with [`TonicEcho`] and a plain tonic client to it.
struct TonicPeer {
    client: EchoClient<tonic::transport::Channel>,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

impl TonicPeer {
    async fn start() -> TonicPeer {
        let address: SocketAddr = ([127, 0, 0, 1], 0).into();
        let incoming = tonic::transport::server::TcpIncoming::bind(address)
            .expect("binding a loopback port for the tonic peer")
            .with_nodelay(Some(true));
        let address = incoming.local_addr().expect("the tonic peer's address");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(echo::echo_server::EchoServer::new(TonicEcho))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(err) = served {
                eprintln!("the tonic peer failed: {err}");
            }
        });
        let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
            .expect("a valid URI")
            .tcp_nodelay(true)
            .connect()
            .await
            .expect("connecting to the tonic peer");
        TonicPeer {
            client: EchoClient::new(channel),
            stop,
            server,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
    }
}
