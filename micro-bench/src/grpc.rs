//! gRPC: micro's gRPC transport against plain tonic, side by side in one
//! process, on loopback, in alternating rounds.
//!
//! - unary: calls/s and p50/p99 of `micro.echo.Echo/Unary` (a small protobuf
//!   request), micro's client calling the service by name and a micro
//!   `handle` handler of `Proto` messages answering, against tonic's generated client and
//!   server ([`TonicEcho`]), at concurrency 1 and 64;
//! - streaming, in each shape (server, client and bidirectional streams of
//!   100,000 messages with 1 KiB payloads): messages/s and MB/s through
//!   micro's typed streaming API (client by name, `handle_*_stream of Proto messages`
//!   handlers) against tonic's generated client and server; each round makes
//!   calls for its share of the seconds given.
//!
//! `cargo run --release -p micro-bench -- 6 grpc`

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use futures::StreamExt;
use micro::{
    Client, Context, Result, Server, codec::Proto, registry::memory::MemoryRegistry,
    streaming::Streaming, transport::grpc::GrpcTransport,
};
use micro_interop::echo::{self, EchoReply, EchoRequest, TonicEcho, echo_client::EchoClient};
use tokio::sync::oneshot;

use crate::{
    measure,
    measure::Summary,
    print_header, print_ratios, print_row,
    rounds::{RoundRatios, alternate},
};

/// Rounds per scenario: many short ones, so the median of their ratios is
/// not decided by a burst of load from another process.
const GRPC_ROUNDS: u32 = 9;

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

/// Runs the gRPC benchmarks, `seconds` per scenario and peer. With a pair
/// named in `args` (`micro`, `tonic`, `mc>tn` or `tn>mc`, and optionally a
/// concurrency), runs only that pair's unary calls, so that `perf` or
/// `strace -c` see it alone.
pub(crate) async fn run(seconds: u64, args: &[String]) -> Result<()> {
    let peers = GrpcPeers::start().await?;
    if let [stream, side, shape] = args
        && stream == "stream"
    {
        return stream_alone(&peers, side, shape, Duration::from_secs(seconds)).await;
    }
    if let Some(pair) = args.first() {
        let pair = UnaryPair::parse(pair)?;
        let concurrencies = match args.get(1).and_then(|arg| arg.parse().ok()) {
            Some(concurrency) => vec![concurrency],
            None => vec![1, 64],
        };
        println!("{} alone, {seconds} s per concurrency", pair.label());
        for concurrency in concurrencies {
            let summary = peers
                .unary(pair, concurrency, Duration::from_secs(seconds))
                .await;
            print_row(concurrency, pair.label(), &summary);
        }
        return peers.stop().await;
    }
    println!(
        "gRPC: micro (gRPC transport) vs plain tonic, {seconds} s per scenario and peer, \
         {GRPC_ROUNDS} alternating rounds, loopback; `median` is the median of the rounds' \
         micro/tonic ratios (for p99, tonic/micro: below 1 means micro is slower)\n"
    );
    let round = Duration::from_secs(seconds) / GRPC_ROUNDS;
    println!(
        "unary, small protobuf request: micro client by name -> micro handler vs tonic client -> tonic server"
    );
    print_header();
    for concurrency in [1, 64] {
        let mut micro_runs = Vec::new();
        let mut tonic_runs = Vec::new();
        let mut deadline_runs = Vec::new();
        let (mut throughput, mut p99) = (RoundRatios::default(), RoundRatios::default());
        let (mut deadline_throughput, mut deadline_p99) =
            (RoundRatios::default(), RoundRatios::default());
        for round_number in 0..GRPC_ROUNDS {
            // tonic with micro's deadline runs before the pair in even rounds
            // and after it in odd ones, so no peer always goes first.
            let deadline_first = round_number % 2 == 0;
            let mut with_deadline = None;
            if deadline_first {
                with_deadline = Some(
                    peers
                        .unary(UnaryPair::TonicWithDeadline, concurrency, round)
                        .await,
                );
            }
            let (micro, tonic) = alternate(
                round_number,
                peers.unary(UnaryPair::Micro, concurrency, round),
                peers.unary(UnaryPair::Tonic, concurrency, round),
            )
            .await;
            let with_deadline = match with_deadline {
                Some(run) => run,
                None => {
                    peers
                        .unary(UnaryPair::TonicWithDeadline, concurrency, round)
                        .await
                }
            };
            deadline_throughput.push(micro.calls_per_second(), with_deadline.calls_per_second());
            deadline_p99.push(
                with_deadline.percentile(99.0).as_secs_f64(),
                micro.percentile(99.0).as_secs_f64(),
            );
            deadline_runs.push(with_deadline);
            throughput.push(micro.calls_per_second(), tonic.calls_per_second());
            p99.push(
                tonic.percentile(99.0).as_secs_f64(),
                micro.percentile(99.0).as_secs_f64(),
            );
            micro_runs.push(micro);
            tonic_runs.push(tonic);
        }
        let (micro_summary, tonic_summary) =
            (Summary::merge(micro_runs), Summary::merge(tonic_runs));
        let deadline_summary = Summary::merge(deadline_runs);
        print_row(concurrency, "micro", &micro_summary);
        print_row(concurrency, "tonic", &tonic_summary);
        print_ratios("tonic", &micro_summary, &tonic_summary);
        println!(
            "{:>11} rounds throughput micro/tonic {}   p99 tonic/micro {}",
            "",
            throughput.describe(),
            p99.describe()
        );
        print_row(concurrency, "tn+dl", &deadline_summary);
        print_ratios("tn+dl", &micro_summary, &deadline_summary);
        println!(
            "{:>11} rounds throughput micro/tn+dl {}   p99 tn+dl/micro {}",
            "",
            deadline_throughput.describe(),
            deadline_p99.describe()
        );
    }
    println!(
        "{:>11} (tn+dl: tonic with a {:?} deadline per call, as micro's client always sends)",
        "",
        micro::client::DEFAULT_TIMEOUT
    );
    // Each client against the other's server: tells whether a gap sits on
    // the calling or on the serving side.
    for concurrency in [1, 64] {
        let mut client_side = Vec::new();
        let mut server_side = Vec::new();
        for _ in 0..GRPC_ROUNDS {
            client_side.push(
                peers
                    .unary(UnaryPair::MicroToTonic, concurrency, round)
                    .await,
            );
            server_side.push(
                peers
                    .unary(UnaryPair::TonicToMicro, concurrency, round)
                    .await,
            );
        }
        print_row(
            concurrency,
            UnaryPair::MicroToTonic.label(),
            &Summary::merge(client_side),
        );
        print_row(
            concurrency,
            UnaryPair::TonicToMicro.label(),
            &Summary::merge(server_side),
        );
    }
    println!(
        "{:>11} (mc>tn: micro client to the tonic server; tn>mc: tonic client to the micro server)",
        ""
    );

    println!(
        "\nstreaming, {STREAM_MESSAGES} messages of {STREAM_PAYLOAD} B per call: micro typed API (client by name -> handle_*_stream of Proto messages) vs tonic client -> tonic server"
    );
    // Each round streams for its share of `seconds` (at least one call): one
    // call of STREAM_MESSAGES lasts a fraction of a second, too short for a
    // round on a shared machine.
    let per_round = Duration::from_secs(seconds) / GRPC_ROUNDS;
    for shape in [Shape::Server, Shape::Client, Shape::Bidi] {
        let (mut micro_total, mut tonic_total) = (Throughput::default(), Throughput::default());
        let mut ratios = RoundRatios::default();
        for round_number in 0..GRPC_ROUNDS {
            let (micro, tonic) = alternate(
                round_number,
                calls_for(per_round, || micro_stream(&peers.client, shape)),
                calls_for(per_round, || tonic_stream(&peers.tonic.client, shape)),
            )
            .await;
            let (micro, tonic) = (micro?, tonic?);
            ratios.push(micro.per_second(), tonic.per_second());
            micro_total.add(micro);
            tonic_total.add(tonic);
        }
        println!("{:>11} {}", "", shape.describe());
        micro_total.print("micro");
        tonic_total.print("tonic");
        println!(
            "{:>11} ratio  messages/s micro/tonic = {:.3} pooled, {}",
            "",
            micro_total.per_second() / tonic_total.per_second(),
            ratios.describe()
        );
    }

    peers.stop().await
}

/// `stream micro|tonic server|client|bidi`: one side's streaming calls, one
/// after another for `duration`, for `perf`.
async fn stream_alone(
    peers: &GrpcPeers,
    side: &str,
    shape: &str,
    duration: Duration,
) -> Result<()> {
    let shape = match shape {
        "server" => Shape::Server,
        "client" => Shape::Client,
        "bidi" => Shape::Bidi,
        other => {
            return Err(micro::Error::invalid_argument(format!(
                "unknown stream shape {other:?}: server, client or bidi"
            )));
        }
    };
    let total = match side {
        "micro" => calls_for(duration, || micro_stream(&peers.client, shape)).await?,
        "tonic" => calls_for(duration, || tonic_stream(&peers.tonic.client, shape)).await?,
        other => {
            return Err(micro::Error::invalid_argument(format!(
                "unknown side {other:?}: micro or tonic"
            )));
        }
    };
    println!("{:>11} {}", "", shape.describe());
    total.print(side);
    Ok(())
}

/// Streaming calls made by `call`, one after another until `duration` has
/// passed (at least one), added up.
async fn calls_for<F, Fut>(duration: Duration, mut call: F) -> Result<Throughput>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Throughput>>,
{
    let started = Instant::now();
    let mut total = Throughput::default();
    loop {
        total.add(call().await?);
        if started.elapsed() >= duration {
            return Ok(total);
        }
    }
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

/// The three streaming shapes, each measured on both peers.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Server,
    Client,
    Bidi,
}

impl Shape {
    fn describe(self) -> &'static str {
        match self {
            Shape::Server => "server streaming (one request, the replies counted)",
            Shape::Client => "client streaming (the requests counted, one reply)",
            Shape::Bidi => "bidirectional (each request answered; the replies counted)",
        }
    }
}

/// The request that asks for a server stream of [`STREAM_MESSAGES`] replies,
/// and each request of a client or bidirectional stream.
fn stream_request() -> EchoRequest {
    EchoRequest {
        message: "s".to_owned(),
        payload: vec![3; STREAM_PAYLOAD],
        count: STREAM_MESSAGES,
    }
}

/// The requests of a client or bidirectional stream.
fn stream_requests() -> impl futures::Stream<Item = EchoRequest> + Send + 'static {
    futures::stream::iter(0..STREAM_MESSAGES).map(|_| stream_request())
}

/// The reply the streaming handlers of both peers send for each message.
fn stream_reply(request: &EchoRequest, index: u32) -> EchoReply {
    EchoReply {
        message: request.message.clone(),
        payload: request.payload.clone(),
        index,
    }
}

fn status_error(status: tonic::Status) -> micro::Error {
    micro::Error::internal(status.message().to_owned())
}

async fn micro_stream(client: &Client, shape: Shape) -> Result<Throughput> {
    let started = Instant::now();
    let mut total = Throughput::default();
    let call = client.request("bench-grpc", shape_endpoint(shape));
    let mut replies: Streaming<Proto<EchoReply>> = match shape {
        Shape::Server => call.server_stream(&Proto(stream_request())).await?,
        Shape::Bidi => {
            call.bidi_stream(stream_requests().map(|request| Ok(Proto(request))))
                .await?
        }
        Shape::Client => {
            let Proto(reply) = call
                .client_stream(stream_requests().map(|request| Ok(Proto(request))))
                .await?;
            total.messages = u64::from(reply.index);
            total.bytes = total.messages * STREAM_PAYLOAD as u64;
            total.elapsed = started.elapsed();
            return Ok(total);
        }
    };
    while let Some(reply) = replies.message().await? {
        total.messages += 1;
        total.bytes += reply.payload.len() as u64;
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

fn shape_endpoint(shape: Shape) -> &'static str {
    match shape {
        Shape::Server => "Echo.ServerStream",
        Shape::Client => "Echo.ClientStream",
        Shape::Bidi => "Echo.Bidi",
    }
}

async fn tonic_stream(
    client: &EchoClient<tonic::transport::Channel>,
    shape: Shape,
) -> Result<Throughput> {
    let started = Instant::now();
    let mut total = Throughput::default();
    let mut client = client.clone();
    let mut replies = match shape {
        Shape::Server => client.server_stream(stream_request()).await,
        Shape::Bidi => client.bidi(stream_requests()).await,
        Shape::Client => {
            let reply = client
                .client_stream(stream_requests())
                .await
                .map_err(status_error)?
                .into_inner();
            total.messages = u64::from(reply.index);
            total.bytes = total.messages * STREAM_PAYLOAD as u64;
            total.elapsed = started.elapsed();
            return Ok(total);
        }
    }
    .map_err(status_error)?
    .into_inner();
    while let Some(reply) = replies.message().await.map_err(status_error)? {
        total.messages += 1;
        total.bytes += reply.payload.len() as u64;
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

/// Who calls and who answers in a unary measurement.
#[derive(Debug, Clone, Copy)]
enum UnaryPair {
    /// micro's client, by name, to the micro service.
    Micro,
    /// tonic's generated client to the tonic server.
    Tonic,
    /// micro's client, by address, to the tonic server.
    MicroToTonic,
    /// tonic's generated client to the micro service.
    TonicToMicro,
    /// tonic's client to the tonic server, each call with the deadline micro's
    /// client always sends ([`micro::client::DEFAULT_TIMEOUT`] as
    /// `grpc-timeout`), which the tonic server then enforces: the same
    /// semantics as micro's calls.
    TonicWithDeadline,
}

impl UnaryPair {
    fn parse(name: &str) -> Result<UnaryPair> {
        match name {
            "micro" => Ok(UnaryPair::Micro),
            "tonic" => Ok(UnaryPair::Tonic),
            "mc>tn" => Ok(UnaryPair::MicroToTonic),
            "tn>mc" => Ok(UnaryPair::TonicToMicro),
            "tn+dl" => Ok(UnaryPair::TonicWithDeadline),
            other => Err(micro::Error::invalid_argument(format!(
                "unknown gRPC pair {other:?}: micro, tonic, mc>tn, tn>mc or tn+dl"
            ))),
        }
    }

    fn label(self) -> &'static str {
        match self {
            UnaryPair::Micro => "micro",
            UnaryPair::Tonic => "tonic",
            UnaryPair::MicroToTonic => "mc>tn",
            UnaryPair::TonicToMicro => "tn>mc",
            UnaryPair::TonicWithDeadline => "tn+dl",
        }
    }
}

/// Both servers and the clients that call them.
struct GrpcPeers {
    tonic: TonicPeer,
    service: micro::RunningService,
    /// The micro service's client (calls it by name).
    client: Client,
    /// A tonic client of the micro service.
    tonic_to_micro: EchoClient<tonic::transport::Channel>,
}

impl GrpcPeers {
    async fn start() -> Result<GrpcPeers> {
        let tonic = TonicPeer::start().await;
        let registry = MemoryRegistry::new();
        let transport = GrpcTransport::builder().package("micro.echo").build()?;
        let service = micro::Service::builder("bench-grpc")
            .registry(registry)
            .transport(transport.clone())
            .server(
                Server::new()
                    .handle(
                        "Echo.Unary",
                        |_ctx: Context, Proto(request): Proto<EchoRequest>| async move {
                            Ok(Proto(EchoReply {
                                message: request.message,
                                payload: request.payload,
                                index: 0,
                            }))
                        },
                    )
                    .handle_server_stream(
                        "Echo.ServerStream",
                        |_ctx: Context, Proto(request): Proto<EchoRequest>| async move {
                            Ok(futures::stream::iter(0..request.count)
                                .map(move |index| Ok(Proto(stream_reply(&request, index)))))
                        },
                    )
                    .handle_client_stream(
                        "Echo.ClientStream",
                        |_ctx: Context, mut requests: Streaming<Proto<EchoRequest>>| async move {
                            let mut messages = Vec::new();
                            while let Some(Proto(request)) = requests.message().await? {
                                messages.push(request.message);
                            }
                            Ok(Proto(EchoReply {
                                index: messages.len() as u32,
                                message: messages.join(","),
                                payload: Vec::new(),
                            }))
                        },
                    )
                    .handle_bidi_stream(
                        "Echo.Bidi",
                        |_ctx: Context, requests: Streaming<Proto<EchoRequest>>| async move {
                            Ok(requests.enumerate().map(|(index, request)| {
                                request.map(|r| Proto(stream_reply(&r, index as u32)))
                            }))
                        },
                    ),
            )
            .build()?
            .start()
            .await?;
        let client = service.client();
        let tonic_to_micro = TonicPeer::connect(service.address()).await;
        Ok(GrpcPeers {
            tonic,
            service,
            client,
            tonic_to_micro,
        })
    }

    /// Runs `pair`'s unary calls in a closed loop.
    async fn unary(&self, pair: UnaryPair, concurrency: usize, duration: Duration) -> Summary {
        match pair {
            UnaryPair::Micro | UnaryPair::MicroToTonic => {
                let client = self.client.clone();
                let address =
                    matches!(pair, UnaryPair::MicroToTonic).then(|| self.tonic.address.to_string());
                measure::closed_loop(concurrency, duration, move || {
                    let mut call = client.request("bench-grpc", "Echo.Unary");
                    if let Some(address) = &address {
                        call = call.address(address.clone());
                    }
                    async move {
                        call.send(&Proto(unary_request()))
                            .await
                            .is_ok_and(|reply: Proto<EchoReply>| reply.payload.len() == 16)
                    }
                })
                .await
            }
            UnaryPair::Tonic | UnaryPair::TonicToMicro | UnaryPair::TonicWithDeadline => {
                let client = match pair {
                    UnaryPair::TonicToMicro => self.tonic_to_micro.clone(),
                    _ => self.tonic.client.clone(),
                };
                let deadline = matches!(pair, UnaryPair::TonicWithDeadline)
                    .then_some(micro::client::DEFAULT_TIMEOUT);
                measure::closed_loop(concurrency, duration, move || {
                    let mut client = client.clone();
                    let mut request = tonic::Request::new(unary_request());
                    if let Some(timeout) = deadline {
                        request.set_timeout(timeout);
                    }
                    async move {
                        client
                            .unary(request)
                            .await
                            .is_ok_and(|reply| reply.into_inner().payload.len() == 16)
                    }
                })
                .await
            }
        }
    }

    async fn stop(self) -> Result<()> {
        self.service.stop().await?;
        self.tonic.stop().await;
        Ok(())
    }
}

/// A plain tonic server with [`TonicEcho`] and a plain tonic client to it.
struct TonicPeer {
    address: SocketAddr,
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
        TonicPeer {
            address,
            client: TonicPeer::connect(&address.to_string()).await,
            stop,
            server,
        }
    }

    /// A plain tonic client of the server at `address`.
    async fn connect(address: &str) -> EchoClient<tonic::transport::Channel> {
        let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
            .expect("a valid URI")
            .tcp_nodelay(true)
            .connect()
            .await
            .expect("connecting to a gRPC server");
        EchoClient::new(channel)
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
    }
}
