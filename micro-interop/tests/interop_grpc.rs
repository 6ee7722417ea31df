//! Interop with gRPC implementations micro did not write: a Python grpcio
//! client calls a micro gRPC server, and micro's client calls a plain tonic
//! server.

use std::{net::SocketAddr, path::Path, process::Stdio, time::Duration};

use bytes::Bytes;
use futures::StreamExt;
use micro_interop::echo::{self, EchoReply, EchoRequest};
use micro_transport::{Body, ErrorKind, Request, Transport, grpc::GrpcTransport};
use prost::Message;
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
        .args(["-c", "import grpc, grpc_tools"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|status| status.success());
    if !found {
        let message = "python3 with grpcio and grpcio-tools is missing: install them with \
                       `python3 -m pip install grpcio grpcio-tools`";
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
    let dir = std::env::temp_dir().join(format!("micro-grpcio-{}", std::process::id()));
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
    std::fs::write(dir.join("client.py"), CLIENT).unwrap();

    let transport = GrpcTransport::new();
    let listener = transport
        .listen("127.0.0.1:0", echo::handler())
        .await
        .unwrap();
    let run = tokio::process::Command::new("python3")
        .arg(dir.join("client.py"))
        .arg(listener.address())
        .current_dir(&dir)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(STEP, run).await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success(),
        "the python client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
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
