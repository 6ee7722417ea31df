//! Interop with gRPC implementations micro did not write: a Python grpcio
//! client calls a micro gRPC server (plain calls; gzip, health, reflection
//! and unknown methods), and micro's client calls a plain tonic server.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures::StreamExt;
use micro_interop::echo::{self, EchoReply, EchoRequest};
use micro_transport::{
    Body, ErrorKind, Request, Transport,
    grpc::{DESCRIPTOR_SET_ENV, GrpcConfig, GrpcTransport, PACKAGE_ENV},
};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

const STEP: Duration = Duration::from_secs(60);

/// Whether interop dependencies must be present (the project's test command sets it).
fn required() -> bool {
    std::env::var_os("MICRO_TEST_REQUIRE_SERVERS").is_some_and(|v| v == "1")
}

/// Whether `python3` with grpcio and grpcio-tools is there; without it the
/// test is skipped loudly, or fails under `MICRO_TEST_REQUIRE_SERVERS=1`.
async fn python_with_grpcio() -> bool {
    let found = tokio::process::Command::new("python3")
        .args([
            "-c",
            "import grpc, grpc_tools, grpc_health.v1.health_pb2, grpc_reflection.v1alpha.proto_reflection_descriptor_database",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|status| status.success());
    if !found {
        let message = "python3 with grpcio, grpcio-tools, grpcio-health-checking and \
                       grpcio-reflection is missing: install them with `python3 -m pip install \
                       grpcio grpcio-tools grpcio-health-checking grpcio-reflection`";
        assert!(!required(), "{message} (MICRO_TEST_REQUIRE_SERVERS=1)");
        eprintln!("SKIPPED python grpcio interop: {message}");
    }
    found
}

const CLIENT: &str = r#"
import json, sys
import grpc
import echo_pb2, echo_pb2_grpc

address = sys.argv[1]
out = {}
with grpc.insecure_channel(address) as channel:
    stub = echo_pb2_grpc.EchoStub(channel)
    reply = stub.Unary(echo_pb2.EchoRequest(message="hello from python", payload=b"\x00\x01\xff"),
                       timeout=30, metadata=[("x-trace-id", "py-1")])
    out["unary"] = {"message": reply.message, "payload": list(reply.payload)}
    replies = stub.ServerStream(echo_pb2.EchoRequest(message="tick", count=5), timeout=30)
    out["stream"] = [[r.message, r.index] for r in replies]
    try:
        stub.Unary(echo_pb2.EchoRequest(message="fail:not_found"), timeout=30)
        out["error"] = "no error"
    except grpc.RpcError as err:
        out["error"] = err.code().name
    try:
        stub.Unary(echo_pb2.EchoRequest(message="fail:permission_denied"), timeout=30)
        out["error2"] = "no error"
    except grpc.RpcError as err:
        out["error2"] = err.code().name
    summary = stub.ClientStream(iter([echo_pb2.EchoRequest(message=m) for m in ["a", "b", "c"]]), timeout=30)
    out["client_stream"] = [summary.message, summary.index]
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_python_grpcio_client_calls_a_micro_grpc_service() {
    if !python_with_grpcio().await {
        return;
    }
    let dir = python_stubs("plain").await;
    std::fs::write(dir.join("client.py"), CLIENT).unwrap();

    let transport = GrpcTransport::new();
    let listener = transport
        .listen("127.0.0.1:0", echo::handler())
        .await
        .unwrap();
    let output = run_python(&dir, &[listener.address()]).await;
    let out: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(out["unary"]["message"], "hello from python");
    assert_eq!(out["unary"]["payload"], serde_json::json!([0, 1, 255]));
    assert_eq!(
        out["stream"],
        serde_json::json!([
            ["tick", 0],
            ["tick", 1],
            ["tick", 2],
            ["tick", 3],
            ["tick", 4]
        ])
    );
    assert_eq!(out["error"], "NOT_FOUND");
    assert_eq!(out["error2"], "PERMISSION_DENIED");
    assert_eq!(out["client_stream"], serde_json::json!(["a,b,c", 3]));
    listener.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A fresh directory with the Python stubs of `echo.proto`.
async fn python_stubs(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("micro-grpcio-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let proto_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    let generated = tokio::process::Command::new("python3")
        .args(["-m", "grpc_tools.protoc"])
        .arg(format!("-I{}", proto_dir.display()))
        .arg(format!("--python_out={}", dir.display()))
        .arg(format!("--grpc_python_out={}", dir.display()))
        .arg(proto_dir.join("echo.proto"))
        .output()
        .await
        .unwrap();
    assert!(
        generated.status.success(),
        "grpc_tools.protoc failed: {}",
        String::from_utf8_lossy(&generated.stderr)
    );
    dir
}

/// Runs `client.py` in `dir` with `args`; fails the test if it fails. The
/// directory is removed afterwards.
async fn run_python(dir: &Path, args: &[&str]) -> std::process::Output {
    let run = tokio::process::Command::new("python3")
        .arg(dir.join("client.py"))
        .args(args)
        .current_dir(dir)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(STEP, run).await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(dir);
    assert!(
        output.status.success(),
        "the python client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A TCP proxy to `target` counting the bytes each way, to see what a
/// foreign client really put on the wire.
struct CountingProxy {
    address: String,
    to_server: Arc<AtomicU64>,
    to_client: Arc<AtomicU64>,
}

impl CountingProxy {
    async fn start(target: String) -> CountingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let to_server = Arc::new(AtomicU64::new(0));
        let to_client = Arc::new(AtomicU64::new(0));
        let (up, down) = (to_server.clone(), to_client.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pump(client_read, server_write, up.clone()));
                tokio::spawn(pump(server_read, client_write, down.clone()));
            }
        });
        CountingProxy {
            address,
            to_server,
            to_client,
        }
    }
}

/// Copies `from` to `to`, counting every byte before it is forwarded.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    count: Arc<AtomicU64>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    while let Ok(read) = from.read(&mut buffer).await {
        if read == 0 {
            break;
        }
        count.fetch_add(read as u64, Ordering::SeqCst);
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

const TOOLS_CLIENT: &str = r#"
import json, sys
import grpc
import echo_pb2, echo_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from google.protobuf.descriptor_pool import DescriptorPool

proxied, direct = sys.argv[1], sys.argv[2]
out = {}
payload = b"0123456789abcdef" * 65536
with grpc.insecure_channel(proxied, compression=grpc.Compression.Gzip) as channel:
    stub = echo_pb2_grpc.EchoStub(channel)
    reply = stub.Unary(echo_pb2.EchoRequest(message="big", payload=payload), timeout=30)
    out["gzip"] = [reply.message, len(reply.payload), reply.payload == payload]
    # The built-in services read a compressed channel's calls too.
    check = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="echo"), timeout=30)
    out["gzip_health"] = health_pb2.HealthCheckResponse.ServingStatus.Name(check.status)
    out["gzip_services"] = sorted(ProtoReflectionDescriptorDatabase(channel).get_services())

def code_of(call):
    try:
        call()
        return "OK"
    except grpc.RpcError as err:
        return err.code().name

with grpc.insecure_channel(direct) as channel:
    stub = echo_pb2_grpc.EchoStub(channel)
    out["deflate"] = code_of(lambda: stub.Unary(echo_pb2.EchoRequest(message="x"), timeout=30,
                                                compression=grpc.Compression.Deflate))
    out["unknown_method"] = code_of(lambda: channel.unary_unary("/micro.echo.Echo/Nope")(b"", timeout=30))
    out["unknown_service"] = code_of(lambda: channel.unary_unary("/micro.echo.Nobody/Unary")(b"", timeout=30))

    health = health_pb2_grpc.HealthStub(channel)
    out["health"] = {}
    for name in ["", "echo", "Echo", "micro.echo.Echo", "nope"]:
        try:
            status = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=30).status
            out["health"][name] = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
        except grpc.RpcError as err:
            out["health"][name] = err.code().name

    database = ProtoReflectionDescriptorDatabase(channel)
    out["services"] = sorted(database.get_services())
    pool = DescriptorPool(database)
    out["methods"] = [m.name for m in pool.FindServiceByName("micro.echo.Echo").methods]
    try:
        pool.FindMessageTypeByName("micro.echo.NoSuchMessage")
        out["unknown_symbol"] = "found"
    except KeyError:
        out["unknown_symbol"] = "KeyError"
    except grpc.RpcError as err:
        out["unknown_symbol"] = "RpcError " + err.code().name
    out["after_unknown"] = pool.FindMessageTypeByName("micro.echo.EchoReply").full_name
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn python_grpc_tools_see_gzip_health_reflection_and_unimplemented() {
    if !python_with_grpcio().await {
        return;
    }
    let dir = python_stubs("tools").await;
    std::fs::write(dir.join("client.py"), TOOLS_CLIENT).unwrap();
    // The descriptor set comes from a file named by the environment variable
    // `build_from_env` reads (looked up here, not set, to keep the test's
    // process environment alone).
    let set = dir.join("echo.bin");
    std::fs::write(&set, echo::FILE_DESCRIPTOR_SET).unwrap();
    let config = GrpcConfig::from_lookup(|name| match name {
        DESCRIPTOR_SET_ENV => Some(set.display().to_string()),
        PACKAGE_ENV => Some("micro.echo".to_owned()),
        _ => None,
    })
    .unwrap();
    let transport = GrpcTransport::from_config(config).unwrap();
    let listener = transport
        .listen("127.0.0.1:0", echo::handler())
        .await
        .unwrap();
    let proxy = CountingProxy::start(listener.address().to_owned()).await;
    let output = run_python(&dir, &[&proxy.address, listener.address()]).await;
    let out: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    // 1 MiB went each way, compressed: far fewer bytes crossed the proxy.
    assert_eq!(out["gzip"], serde_json::json!(["big", 1 << 20, true]));
    let (up, down) = (
        proxy.to_server.load(Ordering::SeqCst),
        proxy.to_client.load(Ordering::SeqCst),
    );
    assert!(up < 100_000, "{up} bytes to the server: not compressed");
    assert!(down < 100_000, "{down} bytes to the client: not compressed");

    assert_eq!(out["gzip_health"], "SERVING");
    assert!(
        out["gzip_services"]
            .as_array()
            .unwrap()
            .contains(&"micro.echo.Echo".into()),
        "{}",
        out["gzip_services"]
    );
    assert_eq!(out["deflate"], "UNIMPLEMENTED");
    assert_eq!(out["unknown_method"], "UNIMPLEMENTED");
    assert_eq!(out["unknown_service"], "UNIMPLEMENTED");
    assert_eq!(
        out["health"],
        serde_json::json!({
            "": "SERVING",
            "echo": "SERVING",
            "Echo": "SERVING",
            "micro.echo.Echo": "SERVING",
            "nope": "NOT_FOUND",
        })
    );
    let services = out["services"].as_array().unwrap();
    assert!(services.contains(&"micro.echo.Echo".into()), "{services:?}");
    assert!(
        services.contains(&"grpc.health.v1.Health".into()),
        "{services:?}"
    );
    assert_eq!(
        out["methods"],
        serde_json::json!(["Unary", "ServerStream", "ClientStream", "Bidi"])
    );
    assert_eq!(out["unknown_symbol"], "KeyError");
    assert_eq!(out["after_unknown"], "micro.echo.EchoReply");
    listener.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A plain tonic server (tonic's own transport and router) serving [`echo::TonicEcho`].
async fn plain_tonic_server() -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let incoming =
        tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let address = incoming.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(echo::echo_server::EchoServer::new(echo::TonicEcho))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (address, stop, server)
}

fn proto(request: &EchoRequest) -> Bytes {
    request.encode_to_vec().into()
}

fn reply(bytes: &[u8]) -> EchoReply {
    EchoReply::decode(bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_micro_client_calls_a_plain_tonic_server() {
    let (address, stop, server) = plain_tonic_server().await;
    let transport = GrpcTransport::builder()
        .package("micro.echo")
        .build()
        .unwrap();
    let channel = transport.dial(&address.to_string()).await.unwrap();
    let call = |endpoint: &str, body: Body| {
        Request::new(endpoint, body)
            .with_content_type("application/protobuf")
            .with_deadline(tokio::time::Instant::now() + STEP)
    };

    let request = EchoRequest {
        message: "hi tonic".into(),
        payload: vec![7; 100],
        count: 0,
    };
    let response = channel
        .call_once(call("Echo.Unary", Body::Full(proto(&request))))
        .await
        .unwrap();
    assert_eq!(response.content_type, "application/protobuf");
    let unary = reply(&response.body.into_bytes().unwrap());
    assert_eq!(
        (unary.message.as_str(), unary.payload.len()),
        ("hi tonic", 100)
    );

    let request = EchoRequest {
        message: "tick".into(),
        count: 4,
        ..EchoRequest::default()
    };
    let response = channel
        .call_once(call("Echo.ServerStream", Body::Full(proto(&request))))
        .await
        .unwrap();
    let indices: Vec<u32> = response
        .body
        .into_stream()
        .map(|message| reply(&message.unwrap()).index)
        .collect()
        .await;
    assert_eq!(indices, [0, 1, 2, 3]);

    let messages = ["x", "y"].map(|m| {
        Ok(proto(&EchoRequest {
            message: m.into(),
            ..EchoRequest::default()
        }))
    });
    let response = channel
        .call_once(call(
            "Echo.ClientStream",
            Body::stream(futures::stream::iter(messages)),
        ))
        .await
        .unwrap();
    let summary = reply(&response.body.into_bytes().unwrap());
    assert_eq!((summary.message.as_str(), summary.index), ("x,y", 2));

    let request = EchoRequest {
        message: "fail:already_exists".into(),
        ..EchoRequest::default()
    };
    let err = channel
        .call_once(call("Echo.Unary", Body::Full(proto(&request))))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");

    let err = channel
        .call_once(call("Echo.NoSuchMethod", Body::Full(Bytes::new())))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unimplemented, "{err}");

    let _ = stop.send(());
    server.await.unwrap();
}
