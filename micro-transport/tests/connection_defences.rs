//! Connection-level defences of the HTTP and gRPC servers, tried as an
//! attacker would: sockets that never send a byte, that trickle one byte at a
//! time, that stop halfway through the headers or after the HTTP/2 preface,
//! connections that go idle after a call, and more connections than the
//! limits allow, all while real calls keep succeeding.
//!
//! The deadlines are set short (a second) so the tests are quick; each wait
//! below is a bound on liveness, never a measurement.

mod common;

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use common::Wire;
use futures::future::join_all;
use micro_transport::{
    DynTransport, ErrorKind, Handler, Listener, Request, Response, grpc::GrpcTransport,
    http::HttpTransport, listen::ConnectionLimits,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    time::{sleep, timeout},
};

/// How long any connection may take to be closed or answered here: far above
/// the one-second deadlines the servers are given.
const BOUND: Duration = Duration::from_secs(20);

/// The HTTP/2 connection preface, which h2c and gRPC clients send first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: what a client sends right after the preface.
const EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

fn echo() -> Handler {
    Handler::from_fn(
        |request: Request| async move { Ok(Response::new(request.body.into_bytes()?)) },
    )
}

fn transport(wire: Wire, limits: ConnectionLimits) -> DynTransport {
    match wire {
        Wire::Http => Arc::new(HttpTransport::builder().connection_limits(limits).build()),
        Wire::Grpc => Arc::new(
            GrpcTransport::builder()
                .connection_limits(limits)
                .build()
                .unwrap(),
        ),
    }
}

fn quick_limits() -> ConnectionLimits {
    let mut limits = ConnectionLimits::default();
    limits.handshake_timeout = Duration::from_secs(1);
    limits.header_read_timeout = Duration::from_secs(1);
    limits.idle_timeout = Duration::from_secs(1);
    limits
}

async fn serve(wire: Wire, limits: ConnectionLimits) -> (DynTransport, Listener, SocketAddr) {
    let transport = transport(wire, limits);
    let listener = transport.listen("127.0.0.1:0", echo()).await.unwrap();
    let address = listener.address().parse().unwrap();
    (transport, listener, address)
}

/// A TCP connection to `server` from the loopback address `from`, so that
/// one test can play several peers.
async fn connect_from(from: [u8; 4], server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::from(from), 0)).unwrap();
    socket.connect(server).await.unwrap()
}

async fn connect_many(from: [u8; 4], server: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        streams.push(connect_from(from, server).await);
    }
    streams
}

/// Waits until the server closes `stream` (end of stream or a reset),
/// whatever it might send first; fails the test if that takes over `BOUND`.
async fn closed_by_server(mut stream: TcpStream) {
    let mut buffer = [0u8; 1024];
    let closed = timeout(BOUND, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server left the connection open");
}

/// Whether `stream` is still open after a short wait (the server did not
/// close it at once), whatever the server sent on it meanwhile (an HTTP/2
/// server sends its SETTINGS first).
async fn still_open(stream: &mut TcpStream) -> bool {
    let mut buffer = [0u8; 1024];
    timeout(Duration::from_millis(300), async {
        while let Ok(read) = stream.read(&mut buffer).await {
            if read == 0 {
                break;
            }
        }
    })
    .await
    .is_err()
}

/// Asserts that the server closed none of `streams` (checked all at once).
async fn assert_all_open(streams: &mut [TcpStream]) {
    let open = join_all(streams.iter_mut().map(still_open)).await;
    let closed = open.iter().filter(|open| !**open).count();
    assert_eq!(closed, 0, "the server closed connections within the limits");
}

/// Makes `count` calls at once through a fresh client; all must succeed.
async fn calls_succeed(wire: Wire, address: &str, count: usize) {
    let channel = transport(wire, ConnectionLimits::default())
        .dial(address)
        .await
        .unwrap();
    let calls = (0..count).map(|n| {
        let channel = channel.clone();
        async move {
            let body = format!("call {n}");
            let response = timeout(
                BOUND,
                channel.call_once(Request::new("Echo.Echo", body.clone().into_bytes())),
            )
            .await
            .expect("a real call was starved")
            .unwrap();
            assert_eq!(response.body.into_bytes().unwrap(), body.as_bytes());
        }
    });
    join_all(calls).await;
}

/// Sends `bytes` one at a time, a tenth of a second apart, until the server
/// closes the connection.
async fn trickle_until_closed(mut stream: TcpStream, bytes: &'static [u8]) {
    let trickled = timeout(BOUND, async {
        let mut buffer = [0u8; 64];
        for byte in bytes.iter().cycle() {
            if stream.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::select! {
                read = stream.read(&mut buffer) => if matches!(read, Ok(0) | Err(_)) { return },
                () = sleep(Duration::from_millis(100)) => {}
            }
        }
    })
    .await;
    assert!(
        trickled.is_ok(),
        "the server kept a trickling connection open"
    );
}

async fn silent_trickling_and_half_open_connections_are_closed_while_calls_succeed(wire: Wire) {
    let (_transport, listener, address) = serve(wire, quick_limits()).await;
    let silent = connect_many([127, 0, 0, 2], address, 300).await;
    let trickling = connect_many([127, 0, 0, 3], address, 20).await;
    let mut half_open = connect_many([127, 0, 0, 4], address, 20).await;
    for stream in &mut half_open {
        let partial: &[u8] = match wire {
            // Headers begun but never finished.
            Wire::Http => b"POST /Echo.Echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n",
            Wire::Grpc => H2_PREFACE,
        };
        stream.write_all(partial).await.unwrap();
        if let Wire::Grpc = wire {
            stream.write_all(EMPTY_SETTINGS).await.unwrap();
        }
    }
    let trickle: &'static [u8] = match wire {
        Wire::Http => b"POST /Echo.Echo HTTP/1.1\r\nX-Slow: ",
        Wire::Grpc => H2_PREFACE,
    };
    let attackers = tokio::spawn(async move {
        let silent = silent
            .into_iter()
            .map(|stream| tokio::spawn(closed_by_server(stream)));
        let trickling = trickling
            .into_iter()
            .map(|stream| tokio::spawn(trickle_until_closed(stream, trickle)));
        let half_open = half_open
            .into_iter()
            .map(|stream| tokio::spawn(closed_by_server(stream)));
        for outcome in join_all(silent.chain(trickling).chain(half_open)).await {
            outcome.unwrap();
        }
    });
    calls_succeed(wire, listener.address(), 20).await;
    attackers.await.unwrap();
    // Every attacker is gone and the server still answers.
    calls_succeed(wire, listener.address(), 5).await;
    listener.shutdown(Duration::from_secs(5)).await.unwrap();
}

async fn an_http1_connection_idle_after_a_call_is_closed(wire: Wire) {
    let (_transport, listener, address) = serve(wire, quick_limits()).await;
    let mut stream = connect_from([127, 0, 0, 2], address).await;
    stream
        .write_all(b"POST /Echo.Echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        .await
        .unwrap();
    let mut answer = [0u8; 512];
    let read = timeout(BOUND, stream.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(
        answer[..read].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&answer[..read])
    );
    closed_by_server(stream).await;
    listener.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// An HTTP/2 client that makes one call and then holds its connection open
/// without calling again: the server must close it once it has been idle.
async fn an_http2_connection_idle_after_a_call_is_closed(wire: Wire) {
    let (_transport, listener, address) = serve(wire, quick_limits()).await;
    let stream = connect_from([127, 0, 0, 2], address).await;
    let (mut client, connection) = h2::client::handshake(stream).await.unwrap();
    let connection = tokio::spawn(connection);
    let request = http::Request::post("/Echo/Echo")
        .header("content-type", "application/grpc")
        .header("micro-service", "test")
        .body(())
        .unwrap();
    let (response, mut body) = client.send_request(request, false).unwrap();
    // One empty gRPC message: not compressed, zero length.
    body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .unwrap();
    let response = timeout(BOUND, response).await.unwrap().unwrap();
    let mut answer = response.into_body();
    while let Some(chunk) = timeout(BOUND, answer.data()).await.unwrap() {
        chunk.unwrap();
    }
    // The server's GOAWAY (and then its close) ends the client's connection.
    let ended = timeout(BOUND, connection).await;
    assert!(
        ended.is_ok(),
        "the server kept an idle HTTP/2 connection open"
    );
    drop(client);
    listener.shutdown(Duration::from_secs(5)).await.unwrap();
}

async fn connections_over_the_limits_are_refused_while_others_get_in(wire: Wire) {
    let mut limits = ConnectionLimits::default();
    limits.max_connections = 30;
    limits.max_connections_per_peer = 10;
    let (transport, listener, address) = serve(wire, limits).await;
    let mut from_one_peer = connect_many([127, 0, 0, 2], address, 10).await;
    assert_all_open(&mut from_one_peer).await;
    // One over the peer's share is closed at once; other peers still get in.
    closed_by_server(connect_from([127, 0, 0, 2], address).await).await;
    calls_succeed(wire, listener.address(), 5).await;
    // Fill the total from two more peers: 10 + 10 + 10 = 30.
    let mut others = connect_many([127, 0, 0, 3], address, 10).await;
    others.extend(connect_many([127, 0, 0, 4], address, 10).await);
    assert_all_open(&mut others).await;
    closed_by_server(connect_from([127, 0, 0, 5], address).await).await;
    let channel = transport.dial(listener.address()).await.unwrap();
    let refused = channel.call_once(Request::new("Echo.Echo", "no room"));
    let refused = timeout(BOUND, refused).await.unwrap().unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Unavailable, "{refused}");
    // Closing some frees their places.
    drop(from_one_peer);
    let mut admitted = false;
    for _ in 0..100 {
        let mut stream = connect_from([127, 0, 0, 5], address).await;
        if still_open(&mut stream).await {
            admitted = true;
            break;
        }
    }
    assert!(admitted, "closed connections did not free their places");
    drop(others);
    calls_succeed(wire, listener.address(), 5).await;
    listener.shutdown(Duration::from_secs(5)).await.unwrap();
}

async fn thousands_of_silent_connections_do_not_starve_calls(wire: Wire) {
    let mut limits = ConnectionLimits::default();
    // Long enough that every silent connection is still held during the calls.
    limits.handshake_timeout = Duration::from_secs(60);
    let (_transport, listener, address) = serve(wire, limits).await;
    let mut silent = connect_many([127, 0, 0, 2], address, 1000).await;
    silent.extend(connect_many([127, 0, 0, 3], address, 1000).await);
    // Over the per-peer default of 1,000: refused, while the others stay.
    closed_by_server(connect_from([127, 0, 0, 2], address).await).await;
    calls_succeed(wire, listener.address(), 50).await;
    assert_all_open(&mut silent).await;
    drop(silent);
    listener.shutdown(Duration::from_secs(5)).await.unwrap();
}

on_every_wire!(
    silent_trickling_and_half_open_connections_are_closed_while_calls_succeed,
    an_http2_connection_idle_after_a_call_is_closed,
    connections_over_the_limits_are_refused_while_others_get_in,
    thousands_of_silent_connections_do_not_starve_calls,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_connection_idle_after_a_call_is_closed_by_the_header_deadline() {
    an_http1_connection_idle_after_a_call_is_closed(Wire::Http).await;
}
