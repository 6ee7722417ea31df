//! gRPC over TLS: micro's gRPC transport against plain tonic, both serving
//! the same certificate (made for the run by a throwaway CA) with rustls and
//! ring, each called by its own client over TLS, in alternating rounds; and
//! what verifying a JWT costs per call.
//!
//! `cargo run --release -p micro-bench -- 6 tls`

use std::{
    net::SocketAddr,
    pin::Pin,
    task::{Context as TaskContext, Poll},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures::Stream;
use micro::{
    Context, Result,
    auth::{Auth, jwt::JwtAuth},
    codec::Proto,
    registry::memory::MemoryRegistry,
    transport::{grpc::GrpcTransport, tls::TlsConfig},
};
use micro_interop::echo::{self, EchoReply, EchoRequest, TonicEcho, echo_client::EchoClient};
use micro_test_servers::tls::TestCa;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::oneshot,
};

use crate::{
    measure,
    measure::Summary,
    print_header, print_ratios, print_row,
    rounds::{RoundRatios, alternate},
};

const ROUNDS: u32 = 9;

fn request() -> EchoRequest {
    EchoRequest {
        message: "hello Ada Lovelace (math, engines)".to_owned(),
        payload: vec![7; 16],
        count: 0,
    }
}

pub(crate) async fn run(seconds: u64) -> Result<()> {
    let dir = tempfile::tempdir().map_err(micro::Error::from)?;
    let ca = TestCa::new(dir.path(), "bench-ca");
    let server = ca.issue("bench-server", &["127.0.0.1"]);
    let tls = TlsConfig::default()
        .with_identity(&server.cert, &server.key)
        .with_ca(&ca.cert);

    let transport = GrpcTransport::builder()
        .package("micro.echo")
        .tls(tls.clone())
        .build()?;
    let service = micro::Service::builder("bench-tls")
        .registry(MemoryRegistry::new())
        .transport(transport)
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
        .build()?
        .start()
        .await?;
    let micro_client = service.client();
    let tonic = TonicTlsPeer::start(&tls, &ca.cert).await?;

    println!(
        "gRPC over TLS (rustls + ring, one certificate): micro client by name -> micro handler vs \
         tonic client -> tonic server, {seconds} s per scenario and peer, {ROUNDS} alternating rounds\n"
    );
    print_header();
    let round = Duration::from_secs(seconds) / ROUNDS;
    for concurrency in [1, 64] {
        let (mut micro_runs, mut tonic_runs) = (Vec::new(), Vec::new());
        let (mut throughput, mut p99) = (RoundRatios::default(), RoundRatios::default());
        for round_number in 0..ROUNDS {
            let client = micro_client.clone();
            let micro = measure::closed_loop(concurrency, round, move || {
                let call = client.request("bench-tls", "Echo.Unary");
                async move {
                    call.send(&Proto(request()))
                        .await
                        .is_ok_and(|reply: Proto<EchoReply>| reply.payload.len() == 16)
                }
            });
            let client = tonic.client.clone();
            let tonic_run = measure::closed_loop(concurrency, round, move || {
                let mut client = client.clone();
                async move {
                    client
                        .unary(request())
                        .await
                        .is_ok_and(|reply| reply.into_inner().payload.len() == 16)
                }
            });
            let (micro, tonic_run) = alternate(round_number, micro, tonic_run).await;
            throughput.push(micro.calls_per_second(), tonic_run.calls_per_second());
            p99.push(
                tonic_run.percentile(99.0).as_secs_f64(),
                micro.percentile(99.0).as_secs_f64(),
            );
            micro_runs.push(micro);
            tonic_runs.push(tonic_run);
        }
        let (micro, tonic_summary) = (Summary::merge(micro_runs), Summary::merge(tonic_runs));
        print_row(concurrency, "micro", &micro);
        print_row(concurrency, "tonic", &tonic_summary);
        print_ratios("tonic", &micro, &tonic_summary);
        println!(
            "{:>11} rounds throughput micro/tonic {}   p99 tonic/micro {}",
            "",
            throughput.describe(),
            p99.describe()
        );
    }
    // Each client against the other's server: whether a gap sits on the
    // calling or the serving side.
    let micro_address: SocketAddr = service
        .address()
        .parse()
        .map_err(|_| micro::Error::internal("the service's address"))?;
    let tonic_to_micro = tonic_tls_client(micro_address, &ca.cert).await?;
    for concurrency in [1, 64] {
        let client = micro_client.clone();
        let tonic_address = format!("https://{}", tonic.address);
        let micro_to_tonic =
            measure::closed_loop(concurrency, Duration::from_secs(seconds) / 2, move || {
                let call = client
                    .request("bench-tls", "Echo.Unary")
                    .address(tonic_address.clone());
                async move {
                    call.send(&Proto(request()))
                        .await
                        .is_ok_and(|reply: Proto<EchoReply>| reply.payload.len() == 16)
                }
            })
            .await;
        let client = tonic_to_micro.clone();
        let tonic_to_micro_run =
            measure::closed_loop(concurrency, Duration::from_secs(seconds) / 2, move || {
                let mut client = client.clone();
                async move {
                    client
                        .unary(request())
                        .await
                        .is_ok_and(|reply| reply.into_inner().payload.len() == 16)
                }
            })
            .await;
        print_row(concurrency, "mc>tn", &micro_to_tonic);
        print_row(concurrency, "tn>mc", &tonic_to_micro_run);
    }
    println!(
        "{:>11} (mc>tn: micro client to the tonic server; tn>mc: tonic client to the micro server)",
        ""
    );
    service.stop().await?;
    tonic.stop().await;
    jwt_cost()
}

/// Nanoseconds per `inspect` of one valid token, RS256 and HS256.
fn jwt_cost() -> Result<()> {
    let runtime = tokio::runtime::Handle::current();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let claims = serde_json::json!({"sub": "ada", "iss": "bench", "exp": now + 3600, "scope": "orders:read"});
    let dir = tempfile::tempdir().map_err(micro::Error::from)?;
    let rsa = rsa_key(dir.path())?;
    let secret = b"a benchmark secret of at least thirty-two bytes";
    let cases: Vec<(&str, JwtAuth, String)> = vec![
        (
            "RS256 (2048-bit)",
            JwtAuth::builder()
                .issuer("bench")
                .rsa_pem_file(&rsa.public)
                .build()?,
            sign(&claims, jsonwebtoken::Algorithm::RS256, &rsa.private)?,
        ),
        (
            "HS256",
            JwtAuth::builder()
                .issuer("bench")
                .hmac_secret(secret)
                .build()?,
            sign_hmac(&claims, secret)?,
        ),
    ];
    println!("\nJWT verification per call (`Auth::inspect` of a valid token):");
    for (name, auth, token) in cases {
        let iterations = 2_000u32;
        let started = Instant::now();
        for _ in 0..iterations {
            let checked = tokio::task::block_in_place(|| runtime.block_on(auth.inspect(&token)));
            checked?;
        }
        let per_call = started.elapsed() / iterations;
        println!(
            "{name:>18}: {:>8.1} µs per token",
            per_call.as_secs_f64() * 1e6
        );
    }
    Ok(())
}

struct RsaFiles {
    private: Vec<u8>,
    public: std::path::PathBuf,
}

/// The RSA key pair kept with micro-auth's tests (ring cannot generate RSA keys).
fn rsa_key(dir: &std::path::Path) -> Result<RsaFiles> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../micro-auth/tests/fixtures");
    let private = std::fs::read(format!("{root}/rsa-private.pem")).map_err(micro::Error::from)?;
    let public = dir.join("rsa-public.pem");
    std::fs::copy(format!("{root}/rsa-public.pem"), &public).map_err(micro::Error::from)?;
    Ok(RsaFiles { private, public })
}

fn sign(
    claims: &serde_json::Value,
    algorithm: jsonwebtoken::Algorithm,
    pem: &[u8],
) -> Result<String> {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem)
        .map_err(|err| micro::Error::internal("the RSA key").with_source(err))?;
    jsonwebtoken::encode(&jsonwebtoken::Header::new(algorithm), claims, &key)
        .map_err(|err| micro::Error::internal("signing").with_source(err))
}

fn sign_hmac(claims: &serde_json::Value, secret: &[u8]) -> Result<String> {
    let key = jsonwebtoken::EncodingKey::from_secret(secret)
        .map_err(|err| micro::Error::internal("the secret").with_source(err))?;
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), claims, &key)
        .map_err(|err| micro::Error::internal("signing").with_source(err))
}

/// A plain tonic server behind rustls, and a plain tonic client over TLS.
struct TonicTlsPeer {
    address: SocketAddr,
    client: EchoClient<tonic::transport::Channel>,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

impl TonicTlsPeer {
    async fn start(tls: &TlsConfig, ca: &str) -> Result<TonicTlsPeer> {
        let server_config = tls
            .server_config(&[b"h2"])?
            .ok_or_else(|| micro::Error::internal("the benchmark's TLS has a certificate"))?;
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config);
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(micro::Error::from)?;
        let address: SocketAddr = listener.local_addr().map_err(micro::Error::from)?;
        let incoming = async_stream_of_tls(listener, acceptor);
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(echo::echo_server::EchoServer::new(TonicEcho))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(err) = served {
                eprintln!("the tonic TLS peer failed: {err}");
            }
        });
        Ok(TonicTlsPeer {
            address,
            client: tonic_tls_client(address, ca).await?,
            stop,
            server,
        })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
    }
}

/// A plain tonic client of the TLS server at `address`, trusting `ca`.
async fn tonic_tls_client(
    address: SocketAddr,
    ca: &str,
) -> Result<EchoClient<tonic::transport::Channel>> {
    {
        let client_config = TlsConfig::default().with_ca(ca).client_config(&[])?;
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*client_config).clone())
            .https_only()
            .enable_http2()
            .wrap_connector(http);
        // tonic without its own TLS feature refuses `https` URIs, so it is
        // given `http` and this connector speaks TLS whatever the scheme.
        let connector = tower::service_fn(move |uri: http::Uri| {
            let mut https = https.clone();
            async move {
                let mut parts = uri.into_parts();
                parts.scheme = Some(http::uri::Scheme::HTTPS);
                let uri = http::Uri::from_parts(parts)?;
                tower::Service::call(&mut https, uri).await
            }
        });
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .map_err(|err| micro::Error::internal("the tonic endpoint").with_source(err))?
            .connect_with_connector(connector)
            .await
            .map_err(|err| {
                micro::Error::unavailable("connecting the tonic client").with_source(err)
            })?;
        Ok(EchoClient::new(channel))
    }
}

/// Accepted TLS connections, handshakes done on their own tasks.
fn async_stream_of_tls(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
) -> impl Stream<Item = std::io::Result<TlsIo>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let (acceptor, sender) = (acceptor.clone(), sender.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(stream).await {
                    let _ = sender.send(Ok(TlsIo(tls))).await;
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(receiver)
}

/// A server TLS stream tonic can serve (it wants to know the peer).
struct TlsIo(tokio_rustls::server::TlsStream<TcpStream>);

impl tonic::transport::server::Connected for TlsIo {
    type ConnectInfo = ();

    fn connect_info(&self) {}
}

impl AsyncRead for TlsIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}
