//! The gRPC transport as a raw HTTP/2 client and server see it: the frames'
//! flag bytes, compression negotiated by `grpc-encoding` and
//! `grpc-accept-encoding`, a gzip bomb, reserved flag bits, unknown methods
//! and package-qualified routing. The peer here is hyper's bare HTTP/2, so
//! nothing of micro's own framing code judges micro's bytes.
#![cfg(feature = "grpc")]

use std::{convert::Infallible, io::Read, io::Write, sync::Arc, time::Duration};

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Request as HttpRequest, Response as HttpResponse};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
};
use micro_transport::{
    Body, EndpointSet, ErrorKind, Handler, Listener, Request, Response, Transport,
    grpc::{Compression, GrpcTransport},
};
use tokio::sync::Mutex;

const STEP: Duration = Duration::from_secs(30);

/// A handler that answers each message with `{endpoint}:{message}`, streamed
/// when the request was, and declares the endpoints it serves.
fn echo_handler(endpoints: &[&str]) -> Handler {
    Handler::from_fn(|request: Request| async move {
        let endpoint = request.endpoint.clone();
        let body = match request.body {
            Body::Full(bytes) => Body::Full(tagged(&endpoint, &bytes)),
            Body::Stream(stream) => Body::stream(
                stream.map(move |message| message.map(|message| tagged(&endpoint, &message))),
            ),
        };
        Ok(Response::new(body).with_content_type(request.content_type))
    })
    .with_endpoints(EndpointSet::new("echo", endpoints.iter().copied()))
}

fn tagged(endpoint: &str, message: &[u8]) -> Bytes {
    let mut out = format!("{endpoint}:").into_bytes();
    out.extend_from_slice(message);
    out.into()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// One gRPC message frame with the given flag byte.
fn frame(flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![flags];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The (flag byte, payload) of every message in a response body.
fn messages(mut body: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !body.is_empty() {
        assert!(body.len() >= 5, "a truncated frame header");
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        out.push((body[0], body[5..5 + len].to_vec()));
        body = &body[5 + len..];
    }
    out
}

/// What a raw HTTP/2 gRPC call got back.
#[derive(Debug)]
struct RawReply {
    headers: HeaderMap,
    body: Bytes,
    /// The trailers, or for a trailers-only answer the headers.
    status: HeaderMap,
}

impl RawReply {
    fn grpc_status(&self) -> i32 {
        self.status
            .get("grpc-status")
            .expect("a grpc-status")
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }
}

type RawClient = Client<HttpConnector, Full<Bytes>>;

fn raw_client() -> RawClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new())
}

async fn raw_call(
    client: &RawClient,
    address: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> RawReply {
    let mut request = HttpRequest::post(format!("http://{address}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::from(body))).unwrap();
    let response = tokio::time::timeout(STEP, client.request(request))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    let (parts, body) = response.into_parts();
    let collected = tokio::time::timeout(STEP, body.collect())
        .await
        .unwrap()
        .unwrap();
    let trailers = collected.trailers().cloned();
    let status = trailers.unwrap_or_else(|| parts.headers.clone());
    RawReply {
        headers: parts.headers,
        body: collected.to_bytes(),
        status,
    }
}

async fn serve(transport: &GrpcTransport, handler: Handler) -> Listener {
    transport.listen("127.0.0.1:0", handler).await.unwrap()
}

fn accept_list(headers: &HeaderMap) -> Vec<String> {
    headers
        .get("grpc-accept-encoding")
        .expect("grpc-accept-encoding is advertised")
        .to_str()
        .unwrap()
        .split(',')
        .map(|name| name.trim().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_requests_are_read_and_answered_with_gzip() {
    let transport = GrpcTransport::new();
    let listener = serve(&transport, echo_handler(&["Echo.Say"])).await;
    let client = raw_client();
    let message = b"compress me ".repeat(1000);
    let mut body = frame(1, &gzip(&message));
    body.extend(frame(1, &gzip(b"and me")));
    let reply = raw_call(
        &client,
        listener.address(),
        "/Echo/Say",
        &[
            ("grpc-encoding", "gzip"),
            ("grpc-accept-encoding", "gzip,identity"),
        ],
        body,
    )
    .await;
    assert_eq!(reply.grpc_status(), 0, "{reply:?}");
    assert_eq!(reply.headers["grpc-encoding"], "gzip");
    let accepted = accept_list(&reply.headers);
    assert!(accepted.contains(&"gzip".to_owned()), "{accepted:?}");
    assert!(accepted.contains(&"identity".to_owned()), "{accepted:?}");
    let replies = messages(&reply.body);
    assert_eq!(replies.len(), 2);
    for (flags, _) in &replies {
        assert_eq!(*flags, 1, "every answer is flagged compressed");
    }
    let mut expected = b"Echo.Say:".to_vec();
    expected.extend_from_slice(&message);
    assert_eq!(gunzip(&replies[0].1), expected);
    assert!(
        replies[0].1.len() < expected.len() / 10,
        "really compressed"
    );
    assert_eq!(gunzip(&replies[1].1), b"Echo.Say:and me");
    listener.shutdown(STEP).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_requests_are_answered_compressed_only_by_a_gzip_server_to_a_caller_that_accepts_it()
 {
    let client = raw_client();
    let message = b"x".repeat(500);
    for (compression, accept, compressed) in [
        (Compression::Identity, Some("gzip"), false),
        (Compression::Gzip, Some("identity, gzip"), true),
        (Compression::Gzip, Some("identity"), false),
        (Compression::Gzip, None, false),
    ] {
        let transport = GrpcTransport::builder()
            .compression(compression)
            .build()
            .unwrap();
        let listener = serve(&transport, echo_handler(&["Echo.Say"])).await;
        let headers: Vec<(&str, &str)> = accept
            .map(|accept| ("grpc-accept-encoding", accept))
            .into_iter()
            .collect();
        let reply = raw_call(
            &client,
            listener.address(),
            "/Echo/Say",
            &headers,
            frame(0, &message),
        )
        .await;
        let case = format!("server {compression}, caller accepts {accept:?}");
        assert_eq!(reply.grpc_status(), 0, "{case}");
        let replies = messages(&reply.body);
        assert_eq!(replies.len(), 1, "{case}");
        let payload = if compressed {
            assert_eq!(reply.headers["grpc-encoding"], "gzip", "{case}");
            assert_eq!(replies[0].0, 1, "{case}");
            gunzip(&replies[0].1)
        } else {
            assert!(!reply.headers.contains_key("grpc-encoding"), "{case}");
            assert_eq!(replies[0].0, 0, "{case}");
            replies[0].1.clone()
        };
        assert_eq!(payload.len(), "Echo.Say:".len() + message.len(), "{case}");
        listener.shutdown(STEP).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gzip_bomb_is_resource_exhausted_and_the_server_goes_on() {
    let transport = GrpcTransport::builder()
        .max_message_size(1 << 20)
        .build()
        .unwrap();
    let listener = serve(&transport, echo_handler(&["Echo.Say"])).await;
    let client = raw_client();
    // 64 MiB of zeros: about 64 KiB on the wire, far under the 1 MiB limit.
    let bomb = gzip(&vec![0u8; 64 << 20]);
    assert!(bomb.len() < 1 << 20);
    let reply = raw_call(
        &client,
        listener.address(),
        "/Echo/Say",
        &[("grpc-encoding", "gzip")],
        frame(1, &bomb),
    )
    .await;
    assert_eq!(reply.grpc_status(), 8, "RESOURCE_EXHAUSTED: {reply:?}");
    let reply = raw_call(
        &client,
        listener.address(),
        "/Echo/Say",
        &[("grpc-encoding", "gzip")],
        frame(1, &gzip(b"small")),
    )
    .await;
    assert_eq!(reply.grpc_status(), 0);
    listener.shutdown(STEP).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsupported_encoding_is_unimplemented_and_lists_the_accepted_ones() {
    let transport = GrpcTransport::new();
    let listener = serve(&transport, echo_handler(&["Echo.Say"])).await;
    let reply = raw_call(
        &raw_client(),
        listener.address(),
        "/Echo/Say",
        &[("grpc-encoding", "br")],
        frame(1, b"whatever brotli would be"),
    )
    .await;
    assert_eq!(reply.grpc_status(), 12, "UNIMPLEMENTED: {reply:?}");
    let mut accepted = accept_list(&reply.headers);
    accepted.sort();
    assert_eq!(accepted, ["gzip", "identity"]);
    listener.shutdown(STEP).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn reserved_flag_bits_and_an_unnamed_encoding_are_internal() {
    let transport = GrpcTransport::new();
    let listener = serve(&transport, echo_handler(&["Echo.Say"])).await;
    let client = raw_client();
    for flags in [2u8, 0x81, 0xff] {
        let reply = raw_call(
            &client,
            listener.address(),
            "/Echo/Say",
            &[],
            frame(flags, b"hi"),
        )
        .await;
        assert_eq!(reply.grpc_status(), 13, "INTERNAL for flags {flags:#x}");
    }
    // Flagged compressed, but the request names no grpc-encoding.
    let reply = raw_call(
        &client,
        listener.address(),
        "/Echo/Say",
        &[],
        frame(1, &gzip(b"hi")),
    )
    .await;
    assert_eq!(reply.grpc_status(), 13, "INTERNAL: {reply:?}");
    listener.shutdown(STEP).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn packages_route_apart_and_unknown_methods_are_unimplemented() {
    let transport = GrpcTransport::builder().package("shop").build().unwrap();
    let listener = serve(
        &transport,
        echo_handler(&["pkg.v1.Greeter.Hello", "other.Greeter.Hello", "Plain.Hi"]),
    )
    .await;
    let client = raw_client();
    for (path, endpoint) in [
        ("/pkg.v1.Greeter/Hello", "pkg.v1.Greeter.Hello"),
        ("/other.Greeter/Hello", "other.Greeter.Hello"),
        ("/shop.pkg.v1.Greeter/Hello", "pkg.v1.Greeter.Hello"),
        ("/Plain/Hi", "Plain.Hi"),
        ("/any.package.Plain/Hi", "Plain.Hi"),
    ] {
        let reply = raw_call(&client, listener.address(), path, &[], frame(0, b"!")).await;
        assert_eq!(reply.grpc_status(), 0, "{path}: {reply:?}");
        let replies = messages(&reply.body);
        assert_eq!(replies[0].1, format!("{endpoint}:!").into_bytes(), "{path}");
    }
    for path in [
        "/pkg.v1.Greeter/Bye",
        "/third.Greeter/Hello",
        "/Greeter/Hello",
        "/nobody.Nothing/Hello",
    ] {
        let reply = raw_call(&client, listener.address(), path, &[], frame(0, b"!")).await;
        assert_eq!(
            reply.grpc_status(),
            12,
            "UNIMPLEMENTED at {path}: {reply:?}"
        );
    }
    // micro's own client reaches a fully qualified endpoint by its name.
    let channel = GrpcTransport::new().dial(listener.address()).await.unwrap();
    let response = channel
        .call_once(Request::new("other.Greeter.Hello", "?"))
        .await
        .unwrap();
    assert_eq!(response.body.into_bytes().unwrap(), "other.Greeter.Hello:?");
    let err = channel
        .call_once(Request::new("Greeter.Bye", "?"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unimplemented, "{err}");
    listener.shutdown(STEP).await.unwrap();
}

/// What a raw HTTP/2 server saw of one call.
#[derive(Debug, Default, Clone)]
struct Seen {
    headers: HeaderMap,
    body: Bytes,
}

/// A bare hyper HTTP/2 server that records each call and answers it with
/// one gzip-compressed message, `grpc-encoding: gzip` and status OK.
async fn recording_server() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = record.clone();
            let service = hyper::service::service_fn(move |request: HttpRequest<_>| {
                let record = record.clone();
                async move {
                    let (parts, body) = request.into_parts();
                    let body = BodyExt::collect(body).await?.to_bytes();
                    record.lock().await.push(Seen {
                        headers: parts.headers,
                        body,
                    });
                    let mut trailers = HeaderMap::new();
                    trailers.insert("grpc-status", HeaderValue::from_static("0"));
                    let frames = futures::stream::iter([
                        Ok::<_, Infallible>(Frame::data(Bytes::from(frame(
                            1,
                            &gzip(b"compressed answer"),
                        )))),
                        Ok(Frame::trailers(trailers)),
                    ]);
                    let mut response = HttpResponse::new(StreamBody::new(frames));
                    let headers = response.headers_mut();
                    headers.insert("content-type", HeaderValue::from_static("application/grpc"));
                    headers.insert("grpc-encoding", HeaderValue::from_static("gzip"));
                    Ok::<_, hyper::Error>(response)
                }
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (address, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn micro_clients_send_gzip_when_told_and_always_read_it() {
    let (address, seen) = recording_server().await;
    let message = b"micro says hello ".repeat(200);
    for compression in [Compression::Gzip, Compression::Identity] {
        let transport = GrpcTransport::builder()
            .compression(compression)
            .build()
            .unwrap();
        let channel = transport.dial(&address).await.unwrap();
        let response = channel
            .call_once(
                Request::new("Echo.Say", Bytes::from(message.clone()))
                    .with_content_type("application/protobuf"),
            )
            .await
            .unwrap();
        assert_eq!(
            response.body.into_bytes().unwrap(),
            "compressed answer",
            "{compression}"
        );
        let call = seen.lock().await.pop().expect("the server saw the call");
        let accepted = accept_list(&call.headers);
        assert!(accepted.contains(&"gzip".to_owned()), "{accepted:?}");
        let sent = messages(&call.body);
        assert_eq!(sent.len(), 1);
        match compression {
            Compression::Gzip => {
                assert_eq!(call.headers["grpc-encoding"], "gzip");
                assert_eq!(sent[0].0, 1, "flagged compressed");
                assert!(sent[0].1.len() < message.len() / 10);
                assert_eq!(gunzip(&sent[0].1), message);
            }
            _ => {
                assert!(!call.headers.contains_key("grpc-encoding"));
                assert_eq!(sent[0].0, 0, "not compressed");
                assert_eq!(sent[0].1, message);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_streams_both_ways_between_micro_peers() {
    let transport = GrpcTransport::builder()
        .compression(Compression::Gzip)
        .build()
        .unwrap();
    let listener = serve(&transport, echo_handler(&["Echo.Bidi"])).await;
    let channel = transport.dial(listener.address()).await.unwrap();
    let sent: Vec<String> = (0..300).map(|i| format!("message {i}")).collect();
    let body = Body::stream(futures::stream::iter(
        sent.clone()
            .into_iter()
            .map(|message| Ok(Bytes::from(message))),
    ));
    let response = channel
        .call_once(Request::new("Echo.Bidi", body))
        .await
        .unwrap();
    let received: Vec<String> = response
        .body
        .into_stream()
        .map(|message| String::from_utf8(message.unwrap().to_vec()).unwrap())
        .collect()
        .await;
    let expected: Vec<String> = sent.iter().map(|m| format!("Echo.Bidi:{m}")).collect();
    assert_eq!(received, expected);
    listener.shutdown(STEP).await.unwrap();
}
