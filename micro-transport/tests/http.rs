//! The HTTP transport as seen by plain HTTP peers: raw requests written on a
//! TCP socket (as curl would send them) against a micro server, and a micro
//! client against raw HTTP servers.
#![cfg(feature = "http")]

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use micro_transport::{
    Body, Error, ErrorKind, Handler, Listener, Request, Response, Transport, http::HttpTransport,
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    time::timeout,
};

const STEP: Duration = Duration::from_secs(30);

fn handler() -> Handler {
    Handler::from_fn(|request: Request| async move {
        match request.endpoint.as_str() {
            "Greeter.Hello" => {
                let body: Value = serde_json::from_slice(&request.body.into_bytes()?)
                    .map_err(|err| Error::invalid_argument("not JSON").with_source(err))?;
                let name = body["name"].as_str().unwrap_or("stranger");
                let reply = json!({ "message": format!("Hello {name}") });
                Ok(Response::new(reply.to_string().into_bytes())
                    .with_metadata("x-called-service", request.service))
            }
            "Test.Metadata" => {
                let body = serde_json::to_vec(&request.metadata).map_err(|err| {
                    Error::internal("metadata did not serialize").with_source(err)
                })?;
                Ok(Response::new(body).with_metadata("X-Reply", "yes"))
            }
            "Test.Hang" => std::future::pending().await,
            "Test.Panic" => panic!("panic requested by the test"),
            "Test.Stream" => Ok(Response::new(Body::stream(futures::stream::iter([Ok(
                Bytes::from_static(b"one"),
            )])))),
            "Test.Big" => Ok(Response::new(vec![b'x'; 2048])),
            "Test.Join" => {
                let mut messages = Vec::new();
                let mut stream = request.body.into_stream();
                while let Some(message) = stream.next().await {
                    messages.push(String::from_utf8_lossy(&message?).into_owned());
                }
                Ok(Response::new(messages.join(",").into_bytes()))
            }
            other => Err(Error::not_found(format!("no endpoint {other}"))),
        }
    })
}

async fn start(transport: &HttpTransport) -> Listener {
    transport.listen("127.0.0.1:0", handler()).await.unwrap()
}

/// A response read off the socket.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Asserts a micro error response: this status, JSON content and this code.
    fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.header("content-type"), Some("application/json"));
        let body = self.json();
        assert_eq!(body["code"], code, "{body}");
        assert!(body["message"].is_string(), "{body}");
    }
}

/// Writes `request` as is on a fresh connection and reads the response until
/// the server closes the connection (requests say `Connection: close`).
async fn raw(address: &str, request: &[u8]) -> RawResponse {
    timeout(STEP, async {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut received = Vec::new();
        stream.read_to_end(&mut received).await.unwrap();
        parse(&received)
    })
    .await
    .unwrap()
}

fn parse(received: &[u8]) -> RawResponse {
    let split = received
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "no complete head in {:?}",
                String::from_utf8_lossy(received)
            )
        });
    let head = std::str::from_utf8(&received[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|line| {
            let (key, value) = line.split_once(':').unwrap();
            (key.trim().to_owned(), value.trim().to_owned())
        })
        .collect();
    RawResponse {
        status,
        headers,
        body: received[split + 4..].to_vec(),
    }
}

fn post(path: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\n{extra_headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn assert_still_serving(address: &str) {
    let response = raw(address, &post("/Greeter.Hello", "", r#"{"name":"Ada"}"#)).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json(), json!({ "message": "Hello Ada" }));
}

#[tokio::test]
async fn a_curl_style_call_gets_json_back() {
    let transport = HttpTransport::new();
    let listener = start(&transport).await;
    let response = raw(
        listener.address(),
        &post("/Greeter.Hello", "", r#"{"name":"Ada"}"#),
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.json(), json!({ "message": "Hello Ada" }));
    assert_eq!(response.header("x-called-service"), Some(""));
    listener.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn the_service_comes_from_the_path_or_the_service_header() {
    let transport = HttpTransport::new();
    let listener = start(&transport).await;
    let address = listener.address();
    let by_path = raw(address, &post("/greeter/Greeter.Hello", "", "{}")).await;
    assert_eq!(by_path.status, 200);
    assert_eq!(by_path.header("x-called-service"), Some("greeter"));
    let by_header = raw(
        address,
        &post("/Greeter.Hello", "micro-service: greeter\r\n", "{}"),
    )
    .await;
    assert_eq!(by_header.header("x-called-service"), Some("greeter"));
    listener.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn arbitrary_headers_become_metadata_and_metadata_becomes_headers() {
    let transport = HttpTransport::new();
    let listener = start(&transport).await;
    let headers = "X-Trace-Id: abc123\r\nTenant: acme\r\nUser-Agent: curl/8\r\nAccept: */*\r\nmicro-timeout: 10s\r\n";
    let response = raw(listener.address(), &post("/Test.Metadata", headers, "")).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json(),
        json!({ "x-trace-id": "abc123", "tenant": "acme" })
    );
    assert_eq!(response.header("x-reply"), Some("yes"));
    listener.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn an_absurd_content_length_is_413_before_any_body_is_read() {
    let transport = HttpTransport::new();
    let listener = start(&transport).await;
    // Ten gigabytes claimed, none sent: an answer proves nothing waited for
    // (or allocated) the claimed body.
    let request = b"POST /Greeter.Hello HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n";
    let response = raw(listener.address(), request).await;
    response.assert_error(413, "resource_exhausted");
    assert_still_serving(listener.address()).await;
    listener.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn a_malformed_content_length_is_400() {
    let transport = HttpTransport::new();
    let listener = start(&transport).await;
    for length in ["abc", "-1", "99999999999999999999999"] {
        let request = format!(
            "POST /Greeter.Hello HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {length}\r\n\r\n"
        );
        let response = raw(listener.address(), request.as_bytes()).await;
        assert_eq!(response.status, 400, "Content-Length: {length}");
    }
    assert_still_serving(listener.address()).await;
    listener.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn a_chunked_body_is_cut_off_at_the_limit_with_413() {
    let transport = HttpTransport::builder().max_body_size(1024).build();
    let listener = start(&transport).await;
    let chunk = "x".repeat(2048);
    let request = format!(
        "POST /Greeter.Hello HTTP/1.1\r\nHost: test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let response = raw(listener.address(), request.as_bytes()).await;
    response.assert_error(413, "resource_exhausted");
    assert_still_serving(listener.address()).await;
    listener.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn a_method_other_than_post_is_405_with_a_json_error() {
    let transport = HttpTransport::new();
    let listener = start(&transport).await;
    for method in ["GET", "PUT", "DELETE"] {
        let request = format!(
            "{method} /Greeter.Hello HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        );
        let response = raw(listener.address(), request.as_bytes()).await;
        response.assert_error(405, "unimplemented");
        assert_eq!(response.header("allow"), Some("POST"));
    }
    listener.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn errors_are_json_bodies_with_the_matching_status() {
    let transport = HttpTransport::new();
    let listener = start(&transport).await;
    let address = listener.address();
    raw(address, &post("/No.Such", "", "{}"))
        .await
        .assert_error(404, "not_found");
    raw(address, &post("/", "", "{}"))
        .await
        .assert_error(404, "not_found");
    raw(address, &post("/Greeter.Hello", "", "{not json"))
        .await
        .assert_error(400, "invalid_argument");
    raw(address, &post("/Test.Panic", "", ""))
        .await
        .assert_error(500, "internal");
    assert_still_serving(address).await;
    listener.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn the_timeout_header_sets_the_deadline() {
    let transport = HttpTransport::new();
    let listener = start(&transport).await;
    let address = listener.address();
    raw(address, &post("/Test.Hang", "micro-timeout: 50ms\r\n", ""))
        .await
        .assert_error(504, "deadline_exceeded");
    raw(address, &post("/Test.Hang", "micro-timeout: soon\r\n", ""))
        .await
        .assert_error(400, "invalid_argument");
    assert_still_serving(address).await;
    listener.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn a_client_reads_no_response_body_over_its_limit() {
    let server = HttpTransport::new();
    let listener = start(&server).await;
    let client = HttpTransport::builder().max_body_size(1024).build();
    let channel = client.dial(listener.address()).await.unwrap();
    let err = channel
        .call_once(Request::new("Test.Big", ""))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ResourceExhausted);
    let response = channel
        .call_once(Request::new("Greeter.Hello", r#"{"name":"Bo"}"#))
        .await
        .unwrap();
    assert_eq!(
        response.body.into_bytes().unwrap(),
        r#"{"message":"Hello Bo"}"#
    );
    listener.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// Serves one connection with a canned answer, whatever was asked.
async fn canned_server(answer: impl Into<Vec<u8>>) -> String {
    let answer = answer.into();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut request = vec![0; 4096];
        let _ = stream.read(&mut request).await;
        let _ = stream.write_all(&answer).await;
        let _ = stream.shutdown().await;
    });
    address
}

fn canned(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn a_foreign_error_response_maps_by_status() {
    let address = canned_server(canned(
        "503 Service Unavailable",
        "text/html",
        "<html></html>",
    ))
    .await;
    let channel = HttpTransport::new().dial(&address).await.unwrap();
    let err = channel
        .call_once(Request::new("Any.Thing", ""))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
}

#[tokio::test]
async fn a_micro_error_body_keeps_its_kind_whatever_the_status() {
    let body = r#"{"code":"out_of_range","message":"too far"}"#;
    let address = canned_server(canned("400 Bad Request", "application/json", body)).await;
    let channel = HttpTransport::new().dial(&address).await.unwrap();
    let err = channel
        .call_once(Request::new("Any.Thing", ""))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfRange);
    assert_eq!(err.message(), "too far");
}

#[tokio::test]
async fn a_connection_closed_without_an_answer_is_unavailable() {
    let address = canned_server("").await;
    let channel = HttpTransport::new().dial(&address).await.unwrap();
    let err = channel
        .call_once(Request::new("Any.Thing", ""))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
}

#[tokio::test]
async fn garbage_instead_of_http_is_unavailable() {
    let address = canned_server("SSH-2.0-OpenSSH_9.6\r\n").await;
    let channel = HttpTransport::new().dial(&address).await.unwrap();
    let err = channel
        .call_once(Request::new("Any.Thing", ""))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
}

#[tokio::test]
async fn a_server_limit_below_the_client_limit_is_resource_exhausted() {
    let server = HttpTransport::builder().max_body_size(1024).build();
    let listener = start(&server).await;
    let channel = HttpTransport::new().dial(listener.address()).await.unwrap();
    for size in [2048, 1024 * 1024] {
        let err = channel
            .call_once(Request::new("Greeter.Hello", vec![b' '; size]))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ResourceExhausted, "{size}: {err}");
    }
    let response = channel
        .call_once(Request::new("Greeter.Hello", r#"{"name":"Cy"}"#))
        .await
        .unwrap();
    assert_eq!(
        response.body.into_bytes().unwrap(),
        r#"{"message":"Hello Cy"}"#
    );
    listener.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// Frames a message as the HTTP transport streams it: kind, big-endian length, payload.
fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![kind];
    frame.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The payload of a chunked HTTP/1.1 body.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap(), 16).unwrap();
        body = &body[line_end + 2..];
        if size == 0 {
            return payload;
        }
        payload.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

fn post_stream(path: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: text/plain\r\nmicro-body: stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

#[tokio::test]
async fn a_streamed_response_is_a_chunked_body_of_frames() {
    let transport = HttpTransport::new();
    let listener = start(&transport).await;
    let response = raw(listener.address(), &post("/Test.Stream", "", "")).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("micro-body"), Some("stream"));
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    assert_eq!(dechunk(&response.body), frame(0, b"one"));
    listener.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn a_streamed_request_is_read_frame_by_frame() {
    let transport = HttpTransport::new();
    let listener = start(&transport).await;
    let body = [frame(0, b"a"), frame(0, b""), frame(0, b"bc")].concat();
    let response = raw(listener.address(), &post_stream("/Test.Join", &body)).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.body, b"a,,bc");
    listener.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn bad_request_streams_end_with_the_matching_error() {
    let transport = HttpTransport::new();
    let listener = start(&transport).await;
    let address = listener.address();
    // A frame claiming 4 GiB is refused from its header, before any payload.
    let absurd = [frame(0, b"ok"), vec![0, 0xff, 0xff, 0xff, 0xff]].concat();
    raw(address, &post_stream("/Test.Join", &absurd))
        .await
        .assert_error(429, "resource_exhausted");
    let truncated = [frame(0, b"ok"), vec![0, 0, 0, 0, 9, b'x']].concat();
    raw(address, &post_stream("/Test.Join", &truncated))
        .await
        .assert_error(503, "unavailable");
    let unknown_kind = frame(7, b"?");
    raw(address, &post_stream("/Test.Join", &unknown_kind))
        .await
        .assert_error(400, "invalid_argument");
    let error = [
        frame(0, b"ok"),
        frame(1, br#"{"code":"aborted","message":"client gave up"}"#),
    ]
    .concat();
    raw(address, &post_stream("/Test.Join", &error))
        .await
        .assert_error(409, "aborted");
    assert_still_serving(address).await;
    listener.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn a_frame_of_unknown_kind_is_refused_before_its_claimed_length_is_buffered() {
    let transport = HttpTransport::new();
    let listener = start(&transport).await;
    let unknown_and_huge = vec![9, 0xff, 0xff, 0xff, 0xff];
    raw(
        listener.address(),
        &post_stream("/Test.Join", &unknown_and_huge),
    )
    .await
    .assert_error(400, "invalid_argument");
    let huge_error = vec![1, 0xff, 0xff, 0xff, 0xff];
    raw(listener.address(), &post_stream("/Test.Join", &huge_error))
        .await
        .assert_error(429, "resource_exhausted");
    listener.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn a_huge_foreign_error_page_still_maps_by_status() {
    let page = "x".repeat(200 * 1024);
    let address = canned_server(canned("502 Bad Gateway", "text/html", &page)).await;
    let channel = HttpTransport::builder()
        .max_body_size(1024 * 1024)
        .build()
        .dial(&address)
        .await
        .unwrap();
    let err = channel
        .call_once(Request::new("Any.Thing", ""))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
}
