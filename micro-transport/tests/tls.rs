//! TLS and mutual TLS on the HTTP and gRPC transports, tried every way it
//! can go wrong: a server certificate from another CA, for another name, or
//! expired; a client without a certificate (or with a foreign one) under
//! mutual TLS; plaintext to a TLS port; and a certificate rotated on disk,
//! served without a restart while open connections keep theirs. curl and
//! Python's grpcio check the same servers from outside.

mod common;

use std::{path::Path, process::Command, sync::Arc, time::Duration};

use common::Wire;
use micro_test_servers::tls::{PemFiles, TestCa};
use micro_transport::{
    DynTransport, ErrorKind, Handler, Listener, Request, Response, Result, grpc::GrpcTransport,
    http::HttpTransport, tls::TlsConfig,
};
use tempfile::TempDir;
use tokio::time::{Instant, sleep, timeout};

const BOUND: Duration = Duration::from_secs(20);

fn echo() -> Handler {
    Handler::from_fn(
        |request: Request| async move { Ok(Response::new(request.body.into_bytes()?)) },
    )
}

fn transport(wire: Wire, tls: TlsConfig) -> DynTransport {
    match wire {
        Wire::Http => Arc::new(HttpTransport::builder().tls(tls).build()),
        Wire::Grpc => Arc::new(GrpcTransport::builder().tls(tls).build().unwrap()),
    }
}

/// The certificates of one test: a CA and what it signed, and a foreign CA.
struct Pki {
    dir: TempDir,
    ca: TestCa,
    server: PemFiles,
    client: PemFiles,
    foreign_ca: TestCa,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new(dir.path(), "ca");
        let server = ca.issue("server", &["127.0.0.1", "localhost"]);
        let client = ca.issue("client", &["client.example"]);
        let foreign_ca = TestCa::new(dir.path(), "foreign-ca");
        Pki {
            dir,
            ca,
            server,
            client,
            foreign_ca,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn trusting_ca(&self) -> TlsConfig {
        TlsConfig::default().with_ca(&self.ca.cert)
    }
}

fn identity(files: &PemFiles) -> TlsConfig {
    TlsConfig::default().with_identity(&files.cert, &files.key)
}

async fn serve(wire: Wire, tls: TlsConfig) -> (Listener, String) {
    let listener = transport(wire, tls)
        .listen("127.0.0.1:0", echo())
        .await
        .unwrap();
    assert!(
        listener.speaks_tls(),
        "a listener with a certificate serves TLS"
    );
    let address = format!("https://{}", listener.address());
    (listener, address)
}

async fn call(wire: Wire, tls: TlsConfig, address: &str) -> Result<Vec<u8>> {
    call_with(&transport(wire, tls), address).await
}

async fn call_with(transport: &DynTransport, address: &str) -> Result<Vec<u8>> {
    let channel = transport.dial(address).await?;
    let response = timeout(
        BOUND,
        channel.call_once(Request::new("Echo.Echo", "secret")),
    )
    .await
    .expect("a call over TLS hung");
    Ok(response?.body.into_bytes()?.to_vec())
}

fn assert_refused(outcome: Result<Vec<u8>>, what: &str) {
    match outcome {
        Ok(_) => panic!("{what}: the call succeeded"),
        Err(err) => assert_eq!(err.kind(), ErrorKind::Unavailable, "{what}: {err}"),
    }
}

async fn a_client_trusting_the_ca_calls_over_tls(wire: Wire) {
    let pki = Pki::new();
    let (listener, address) = serve(wire, identity(&pki.server)).await;
    assert_eq!(
        call(wire, pki.trusting_ca(), &address).await.unwrap(),
        b"secret"
    );
    listener.shutdown(Duration::from_secs(5)).await.unwrap();
}

async fn servers_with_untrusted_certificates_are_refused(wire: Wire) {
    let pki = Pki::new();
    let impostor = pki.foreign_ca.issue("impostor", &["127.0.0.1"]);
    let elsewhere = pki.ca.issue("elsewhere", &["elsewhere.example"]);
    let expired = pki.ca.issue_expired("expired", &["127.0.0.1"]);
    for (files, what) in [
        (&impostor, "a certificate from another CA"),
        (&elsewhere, "a certificate for another name"),
        (&expired, "an expired certificate"),
    ] {
        let (listener, address) = serve(wire, identity(files)).await;
        assert_refused(call(wire, pki.trusting_ca(), &address).await, what);
        listener.shutdown(Duration::from_secs(5)).await.unwrap();
    }
    // The name a certificate carries can be asked for explicitly.
    let (listener, address) = serve(wire, identity(&elsewhere)).await;
    let by_name = pki.trusting_ca().with_server_name("elsewhere.example");
    assert_eq!(call(wire, by_name, &address).await.unwrap(), b"secret");
    listener.shutdown(Duration::from_secs(5)).await.unwrap();
}

async fn mutual_tls_admits_only_clients_with_a_certificate_from_its_ca(wire: Wire) {
    let pki = Pki::new();
    let server = identity(&pki.server).with_client_ca(&pki.ca.cert);
    let (listener, address) = serve(wire, server).await;
    assert_refused(
        call(wire, pki.trusting_ca(), &address).await,
        "a client without a certificate",
    );
    let foreign = pki.foreign_ca.issue("foreign-client", &["client.example"]);
    assert_refused(
        call(wire, identity(&foreign).with_ca(&pki.ca.cert), &address).await,
        "a client with a certificate from another CA",
    );
    let client = identity(&pki.client).with_ca(&pki.ca.cert);
    assert_eq!(call(wire, client, &address).await.unwrap(), b"secret");
    listener.shutdown(Duration::from_secs(5)).await.unwrap();
}

async fn plaintext_to_a_tls_port_is_refused_and_the_server_keeps_serving(wire: Wire) {
    let pki = Pki::new();
    let (listener, address) = serve(wire, identity(&pki.server)).await;
    let plain = format!("http://{}", listener.address());
    assert_refused(
        call(wire, TlsConfig::default(), &plain).await,
        "a plaintext call to a TLS port",
    );
    assert_eq!(
        call(wire, pki.trusting_ca(), &address).await.unwrap(),
        b"secret"
    );
    listener.shutdown(Duration::from_secs(5)).await.unwrap();
}

async fn a_rotated_certificate_is_served_without_a_restart(wire: Wire) {
    let pki = Pki::new();
    // The server's files, rewritten in place below.
    let live = PemFiles {
        cert: pki.path().join("live.pem").display().to_string(),
        key: pki.path().join("live-key.pem").display().to_string(),
    };
    std::fs::copy(&pki.server.cert, &live.cert).unwrap();
    std::fs::copy(&pki.server.key, &live.key).unwrap();
    let (listener, address) = serve(wire, identity(&live)).await;
    let old_client = transport(wire, pki.trusting_ca());
    assert_eq!(call_with(&old_client, &address).await.unwrap(), b"secret");

    let rotated = pki.foreign_ca.issue("rotated", &["127.0.0.1"]);
    std::fs::copy(&rotated.key, &live.key).unwrap();
    std::fs::copy(&rotated.cert, &live.cert).unwrap();

    // New connections get the new certificate: a client trusting only the
    // new CA gets in, once the server has looked at its files again.
    let new_client = TlsConfig::default().with_ca(&pki.foreign_ca.cert);
    let started = Instant::now();
    while call(wire, new_client.clone(), &address).await.is_err() {
        assert!(
            started.elapsed() < BOUND,
            "the rotated certificate was never served"
        );
        sleep(Duration::from_millis(100)).await;
    }
    // A fresh client trusting only the old CA is now refused...
    assert_refused(
        call(wire, pki.trusting_ca(), &address).await,
        "the old certificate after rotation",
    );
    // ...while the connection opened before the rotation still works.
    assert_eq!(call_with(&old_client, &address).await.unwrap(), b"secret");
    listener.shutdown(Duration::from_secs(5)).await.unwrap();
}

on_every_wire!(
    a_client_trusting_the_ca_calls_over_tls,
    servers_with_untrusted_certificates_are_refused,
    mutual_tls_admits_only_clients_with_a_certificate_from_its_ca,
    plaintext_to_a_tls_port_is_refused_and_the_server_keeps_serving,
    a_rotated_certificate_is_served_without_a_restart,
);

/// curl, as a user would call the HTTP transport: refused without the CA,
/// answered with it; under mutual TLS, answered only with a client certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_calls_only_with_the_right_certificates() {
    if Command::new("curl").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("MICRO_TEST_REQUIRE_SERVERS").is_none(),
            "curl is required (apt-get install curl)"
        );
        eprintln!("SKIPPED: curl is not installed (apt-get install curl)");
        return;
    }
    let pki = Pki::new();
    let server = identity(&pki.server).with_client_ca(&pki.ca.cert);
    let (listener, address) = serve(Wire::Http, server).await;
    let url = format!("{address}/Echo.Echo");
    let curl = |extra: &[&str]| {
        let mut command = Command::new("curl");
        command
            .args(["-sS", "--max-time", "10", "-d", "hello", &url])
            .args(extra);
        command
    };
    let run = |mut command: Command| tokio::task::spawn_blocking(move || command.output().unwrap());
    let without_ca = run(curl(&[])).await.unwrap();
    assert!(!without_ca.status.success(), "curl trusted an unknown CA");
    let without_cert = run(curl(&["--cacert", &pki.ca.cert])).await.unwrap();
    assert!(
        !without_cert.status.success(),
        "mutual TLS let curl in without a certificate"
    );
    let with_cert = run(curl(&[
        "--cacert",
        &pki.ca.cert,
        "--cert",
        &pki.client.cert,
        "--key",
        &pki.client.key,
    ]))
    .await
    .unwrap();
    assert!(
        with_cert.status.success(),
        "{}",
        String::from_utf8_lossy(&with_cert.stderr)
    );
    assert_eq!(with_cert.stdout, b"hello");
    listener.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// Python's grpcio `secure_channel`, with and without a client certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_calls_only_with_a_client_certificate_under_mutual_tls() {
    let has_grpcio = Command::new("python3")
        .args(["-c", "import grpc"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !has_grpcio {
        assert!(
            std::env::var_os("MICRO_TEST_REQUIRE_SERVERS").is_none(),
            "grpcio is required (python3 -m pip install grpcio)"
        );
        eprintln!("SKIPPED: grpcio is not installed (python3 -m pip install grpcio)");
        return;
    }
    let pki = Pki::new();
    let server = identity(&pki.server).with_client_ca(&pki.ca.cert);
    let (listener, _) = serve(Wire::Grpc, server).await;
    let script = r#"
import sys, grpc
address, ca, cert, key = sys.argv[1:5]
read = lambda path: open(path, "rb").read()
def call(credentials):
    channel = grpc.secure_channel(address, credentials)
    echo = channel.unary_unary("/Echo/Echo")
    try:
        return "ok:" + echo(b"hello", timeout=10).decode()
    except grpc.RpcError as err:
        return "error:" + err.code().name
print(call(grpc.ssl_channel_credentials(read(ca))))
print(call(grpc.ssl_channel_credentials(read(ca), read(key), read(cert))))
"#;
    let output = {
        let mut command = Command::new("python3");
        command.args([
            "-c",
            script,
            listener.address(),
            &pki.ca.cert,
            &pki.client.cert,
            &pki.client.key,
        ]);
        tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap()
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, ["error:UNAVAILABLE", "ok:hello"], "{stdout}");
    listener.shutdown(Duration::from_secs(5)).await.unwrap();
}
