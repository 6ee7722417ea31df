//! The transport conformance suite: one behaviour per function, every backend
//! held to all of them.
//!
//! Each case takes the transport under test and the address to listen on
//! (`""` for memory, `"127.0.0.1:0"` for HTTP), starts its own server with the
//! suite's test handler, checks one behaviour through a dialed [`Channel`],
//! and shuts the server down. Cases match on [`ErrorKind`], never on message
//! text, and assert no timings. Streaming cases follow
//! [`Capabilities::streaming`](crate::Capabilities::streaming): a backend
//! without streaming must answer streamed calls with `Unimplemented`.
//!
//! [`transport_conformance_tests!`](crate::transport_conformance_tests)
//! expands into one named `#[tokio::test]` per case; a backend outside this
//! crate enables the `conformance` feature and writes:
//!
//! ```text
//! mod conformance {
//!     micro_transport::transport_conformance_tests!(MyTransport::new(), "127.0.0.1:0");
//! }
//! ```

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures::{StreamExt, future::join_all};
use tokio::{
    sync::{Notify, mpsc},
    time::Instant,
};

use crate::{
    Body, BodyStream, Channel, Error, ErrorKind, Handler, Listener, Metadata, Request, Response,
    Result, Transport,
};

/// Expands into one `#[tokio::test(flavor = "multi_thread")]` per conformance
/// case, each building its transport with `$make` and listening on `$address`.
///
/// Invoke it once per module; the tests are named after the cases
/// (`echo`, `deadline_exceeded`, ...). The calling crate needs tokio with the
/// `macros` and `rt-multi-thread` features.
#[macro_export]
macro_rules! transport_conformance_tests {
    (@cases ($make:expr, $address:expr) $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $case() {
                let transport = $make;
                $crate::conformance::$case(&transport, $address).await;
            }
        )+
    };
    ($make:expr, $address:expr $(,)?) => {
        $crate::transport_conformance_tests!(@cases ($make, $address)
            echo,
            metadata_round_trip,
            large_payload_near_the_limit,
            over_limit_rejected,
            deadline_exceeded,
            unknown_endpoint_is_not_found,
            error_kinds_cross_the_wire,
            handler_panic_is_internal,
            concurrent_calls,
            shutdown_drains_in_flight_calls,
            shutdown_cancels_calls_past_the_grace_period,
            dial_unreachable_is_unavailable,
            client_stream,
            server_stream,
            bidi_stream,
            stream_cancelled_on_drop,
            stream_deadline_exceeded,
            client_stream_back_pressure,
            server_stream_back_pressure,
            client_stream_cancelled_when_the_handler_returns,
            client_stream_cancelled_by_the_caller,
            bidi_stream_cancelled_on_drop,
            client_stream_deadline_exceeded,
        );
    };
}

/// How long any single step may take before the case fails instead of hanging.
const STEP: Duration = Duration::from_secs(30);

/// The body size used near the limit when a backend declares none.
const UNLIMITED_PROBE_SIZE: usize = 1024 * 1024;

/// A unary call echoes its body and content type, binary and empty bodies included.
pub async fn echo(transport: &dyn Transport, listen_address: &str) {
    let server = TestServer::start(transport, listen_address).await;
    let binary: Vec<u8> = (0..=255).collect();
    for (content_type, body) in [
        ("application/octet-stream", Bytes::from(binary)),
        ("application/json", Bytes::from_static(br#"{"name":"Ada"}"#)),
        ("application/json", Bytes::new()),
    ] {
        let request = Request::new("Test.Echo", body.clone()).with_content_type(content_type);
        let response = within(server.channel.call_once(request)).await.unwrap();
        assert_eq!(response.content_type, content_type);
        assert_eq!(response.body.into_bytes().unwrap(), body);
    }
    server.stop().await;
}

/// Request metadata, the service name and the presence of a deadline reach the
/// handler; the handler's metadata comes back, keys lower-cased, and nothing else does.
pub async fn metadata_round_trip(transport: &dyn Transport, listen_address: &str) {
    let server = TestServer::start(transport, listen_address).await;
    let request = Request::new("Test.Metadata", "")
        .with_service("conformance")
        .with_metadata("X-Trace-Id", "trace-1")
        .with_metadata("tenant", "acme corp")
        .with_deadline(Instant::now() + Duration::from_secs(600));
    let response = within(server.channel.call_once(request)).await.unwrap();
    let expected = Metadata::new()
        .with("x-trace-id", "trace-1")
        .with("tenant", "acme corp")
        .with("x-service", "conformance")
        .with("x-has-deadline", "true");
    assert_eq!(response.metadata, expected);

    let response = within(server.channel.call_once(Request::new("Test.Metadata", "")))
        .await
        .unwrap();
    let expected = Metadata::new()
        .with("x-service", "")
        .with("x-has-deadline", "false");
    assert_eq!(response.metadata, expected);
    server.stop().await;
}

/// A body exactly at the declared maximum goes through intact, both ways.
pub async fn large_payload_near_the_limit(transport: &dyn Transport, listen_address: &str) {
    let size = transport
        .capabilities()
        .max_body_size
        .unwrap_or(UNLIMITED_PROBE_SIZE);
    let server = TestServer::start(transport, listen_address).await;
    let body = patterned(size);
    let request =
        Request::new("Test.Echo", body.clone()).with_content_type("application/octet-stream");
    let response = within(server.channel.call_once(request)).await.unwrap();
    assert_eq!(response.body.into_bytes().unwrap(), body);
    server.stop().await;
}

/// A body one byte over the maximum is `ResourceExhausted` (so is a streamed
/// message over it), and the server goes on serving.
pub async fn over_limit_rejected(transport: &dyn Transport, listen_address: &str) {
    let capabilities = transport.capabilities();
    let Some(limit) = capabilities.max_body_size else {
        eprintln!(
            "over_limit_rejected: skipped, {} declares no body limit",
            transport.scheme()
        );
        return;
    };
    let server = TestServer::start(transport, listen_address).await;
    let request = Request::new("Test.Echo", patterned(limit + 1));
    let err = within(server.channel.call_once(request)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ResourceExhausted, "{err}");

    if capabilities.streaming {
        let messages =
            futures::stream::iter([Ok(Bytes::from_static(b"small")), Ok(patterned(limit + 1))]);
        let request = Request::new("Test.Collect", Body::stream(messages));
        let err = within(server.channel.call_once(request)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ResourceExhausted, "{err}");
    }

    server.assert_still_serving().await;
    server.stop().await;
}

/// A call past its deadline is `Timeout` for the caller, the handler's work is
/// cancelled on the serving side, and the server goes on serving.
pub async fn deadline_exceeded(transport: &dyn Transport, listen_address: &str) {
    let mut server = TestServer::start(transport, listen_address).await;
    let request =
        Request::new("Test.Hang", "").with_deadline(Instant::now() + Duration::from_millis(100));
    let err = within(server.channel.call_once(request)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    within(server.probes.hang_dropped.recv()).await;

    let passed =
        Request::new("Test.Echo", "late").with_deadline(Instant::now() - Duration::from_millis(1));
    let err = within(server.channel.call_once(passed)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");

    server.assert_still_serving().await;
    server.stop().await;
}

/// The test handler answers `NotFound` for endpoints it does not know, and the
/// kind survives the trip back.
pub async fn unknown_endpoint_is_not_found(transport: &dyn Transport, listen_address: &str) {
    let server = TestServer::start(transport, listen_address).await;
    let err = within(
        server
            .channel
            .call_once(Request::new("Test.NoSuchEndpoint", "")),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    server.stop().await;
}

/// Every [`ErrorKind`] a handler returns reaches the caller as the same kind.
pub async fn error_kinds_cross_the_wire(transport: &dyn Transport, listen_address: &str) {
    let server = TestServer::start(transport, listen_address).await;
    for kind in ErrorKind::ALL {
        let request = Request::new("Test.Fail", kind.as_str());
        let err = within(server.channel.call_once(request)).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{err}");
    }
    server.stop().await;
}

/// A panicking handler is `Internal` for its caller and the server goes on serving.
pub async fn handler_panic_is_internal(transport: &dyn Transport, listen_address: &str) {
    let server = TestServer::start(transport, listen_address).await;
    for _ in 0..2 {
        let err = within(server.channel.call_once(Request::new("Test.Panic", "")))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
        server.assert_still_serving().await;
    }
    server.stop().await;
}

/// 64 calls at once each get their own answer.
pub async fn concurrent_calls(transport: &dyn Transport, listen_address: &str) {
    let server = TestServer::start(transport, listen_address).await;
    let calls = (0..64).map(|i| {
        let channel = server.channel.clone();
        tokio::spawn(async move {
            let body = format!("call-{i}");
            let response = channel
                .call_once(Request::new("Test.Echo", body.clone().into_bytes()))
                .await?;
            Ok::<_, Error>((body, response.body.into_bytes()?))
        })
    });
    for outcome in within(join_all(calls)).await {
        let (sent, received) = outcome.unwrap().unwrap();
        assert_eq!(received, sent.as_bytes());
    }
    server.stop().await;
}

/// Shutdown refuses new calls at once with `Unavailable` while a call in
/// flight finishes normally within the grace period; afterwards the address
/// is unreachable.
pub async fn shutdown_drains_in_flight_calls(transport: &dyn Transport, listen_address: &str) {
    let TestServer {
        listener,
        channel,
        mut probes,
    } = TestServer::start(transport, listen_address).await;
    let address = listener.address().to_owned();
    let slow = tokio::spawn({
        let channel = channel.clone();
        async move { channel.call_once(Request::new("Test.Slow", "")).await }
    });
    within(probes.slow_entered.recv()).await;

    let shutdown = tokio::spawn(listener.shutdown(Duration::from_secs(600)));
    within(async {
        loop {
            match call_echo(transport, &address).await {
                Err(err) if err.kind() == ErrorKind::Unavailable => break,
                Err(err) => {
                    panic!("a call during shutdown must be refused as unavailable, got {err}")
                }
                Ok(()) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    })
    .await;
    assert!(
        !slow.is_finished(),
        "the slow call cannot finish before it is released"
    );

    probes.release_slow.notify_one();
    let response = within(slow).await.unwrap().unwrap();
    assert_eq!(response.body.into_bytes().unwrap(), "finished");
    within(shutdown).await.unwrap().unwrap();

    let err = within(channel.call_once(Request::new("Test.Echo", "")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let err = within(call_echo(transport, &address)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

/// A call still running when the grace period ends is cancelled with
/// `Unavailable`, and shutdown returns instead of waiting for it.
pub async fn shutdown_cancels_calls_past_the_grace_period(
    transport: &dyn Transport,
    listen_address: &str,
) {
    let TestServer {
        listener,
        channel,
        mut probes,
    } = TestServer::start(transport, listen_address).await;
    let hung = tokio::spawn({
        let channel = channel.clone();
        async move { channel.call_once(Request::new("Test.Hang", "")).await }
    });
    within(probes.hang_entered.recv()).await;
    within(listener.shutdown(Duration::from_millis(20)))
        .await
        .unwrap();
    let err = within(hung).await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    within(probes.hang_dropped.recv()).await;
}

/// Dialing (or calling) an address nobody listens on is `Unavailable`.
pub async fn dial_unreachable_is_unavailable(transport: &dyn Transport, listen_address: &str) {
    let server = TestServer::start(transport, listen_address).await;
    let address = server.listener.address().to_owned();
    server.stop().await;
    let err = within(call_echo(transport, &address)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

/// A client stream reaches the handler message by message, in order.
pub async fn client_stream(transport: &dyn Transport, listen_address: &str) {
    let server = TestServer::start(transport, listen_address).await;
    let messages: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
    let stream = futures::stream::iter(messages.clone()).map(|m| Ok(Bytes::from(m)));
    let outcome = within(
        server
            .channel
            .call_once(Request::new("Test.Collect", Body::stream(stream))),
    )
    .await;
    if expect_unimplemented_without_streaming(transport, outcome.as_ref().err()) {
        return server.stop().await;
    }
    let body = outcome.unwrap().body.into_bytes().unwrap();
    assert_eq!(body, messages.join(","));
    server.stop().await;
}

/// A server stream reaches the caller message by message, in order, and ends.
pub async fn server_stream(transport: &dyn Transport, listen_address: &str) {
    let server = TestServer::start(transport, listen_address).await;
    let outcome = within(server.channel.call_once(Request::new("Test.Count", "50"))).await;
    if expect_unimplemented_without_streaming(transport, outcome.as_ref().err()) {
        return server.stop().await;
    }
    let body = outcome.unwrap().body;
    assert!(body.is_stream());
    let received: Vec<Bytes> = within(body.into_stream().map(|m| m.unwrap()).collect()).await;
    let expected: Vec<Bytes> = (0..50).map(|i| Bytes::from(i.to_string())).collect();
    assert_eq!(received, expected);
    server.stop().await;
}

/// Both sides stream at once: each message sent is answered before the next is sent.
pub async fn bidi_stream(transport: &dyn Transport, listen_address: &str) {
    let server = TestServer::start(transport, listen_address).await;
    let (sender, receiver) = mpsc::channel::<Result<Bytes>>(1);
    let request = Request::new("Test.Upper", Body::Stream(receiver_stream(receiver)));
    let outcome = within(server.channel.call_once(request)).await;
    if expect_unimplemented_without_streaming(transport, outcome.as_ref().err()) {
        return server.stop().await;
    }
    let mut replies = outcome.unwrap().body.into_stream();
    for i in 0..10 {
        within(sender.send(Ok(Bytes::from(format!("ping-{i}")))))
            .await
            .unwrap();
        let reply = within(replies.next()).await.unwrap().unwrap();
        assert_eq!(reply, format!("PING-{i}"));
    }
    drop(sender);
    assert!(
        within(replies.next()).await.is_none(),
        "the reply stream ends with the request stream"
    );
    server.stop().await;
}

/// Dropping a response stream part-way cancels its producer on the serving side.
pub async fn stream_cancelled_on_drop(transport: &dyn Transport, listen_address: &str) {
    let mut server = TestServer::start(transport, listen_address).await;
    let outcome = within(server.channel.call_once(Request::new("Test.Ticks", ""))).await;
    if expect_unimplemented_without_streaming(transport, outcome.as_ref().err()) {
        // The transport dropped the handler's stream instead of sending it.
        within(server.probes.ticks_closed.recv()).await;
        return server.stop().await;
    }
    let mut ticks = outcome.unwrap().body.into_stream();
    for expected in ["0", "1"] {
        assert_eq!(within(ticks.next()).await.unwrap().unwrap(), expected);
    }
    drop(ticks);
    within(server.probes.ticks_closed.recv()).await;
    server.assert_still_serving().await;
    server.stop().await;
}

/// A response stream still open when the deadline passes ends with `Timeout`.
pub async fn stream_deadline_exceeded(transport: &dyn Transport, listen_address: &str) {
    let server = TestServer::start(transport, listen_address).await;
    let request =
        Request::new("Test.Trickle", "").with_deadline(Instant::now() + Duration::from_millis(200));
    let outcome = within(server.channel.call_once(request)).await;
    if expect_unimplemented_without_streaming(transport, outcome.as_ref().err()) {
        return server.stop().await;
    }
    let mut stream = outcome.unwrap().body.into_stream();
    assert_eq!(within(stream.next()).await.unwrap().unwrap(), "first");
    let err = within(stream.next()).await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(
        within(stream.next()).await.is_none(),
        "an error ends the stream"
    );
    server.assert_still_serving().await;
    server.stop().await;
}

/// The size of the messages of the back-pressure cases.
const PRESSURE_MESSAGE: usize = 64 * 1024;

/// How many [`PRESSURE_MESSAGE`]s (32 MiB) may be produced ahead of the
/// reader: far more than any transport's buffers (socket buffers, frame
/// buffers) hold, and far fewer than an unbounded buffer lets through.
const IN_FLIGHT_BOUND: u64 = 512;

/// A slow reader of a client stream holds its producer back: while the
/// handler pauses, production stops within `IN_FLIGHT_BOUND` messages, and
/// resumes when the handler reads on.
pub async fn client_stream_back_pressure(transport: &dyn Transport, listen_address: &str) {
    let mut server = TestServer::start(transport, listen_address).await;
    if skip_without_streaming(transport, "client_stream_back_pressure") {
        return server.stop().await;
    }
    let (producer, produced, mut producer_dropped) = endless_producer();
    let read = IN_FLIGHT_BOUND * 2;
    let request = Request::new("Test.ReadSome", Body::Stream(producer))
        .with_metadata("x-read", read.to_string())
        .with_metadata("x-pause", "true");
    let call = tokio::spawn({
        let channel = server.channel.clone();
        async move { channel.call_once(request).await }
    });
    within(server.probes.first_read.recv()).await;
    let settled = within(settle(&produced)).await;
    assert!(
        settled <= 1 + IN_FLIGHT_BOUND,
        "{settled} messages produced while the handler has read 1"
    );
    server.probes.release_reader.notify_one();
    let response = within(call).await.unwrap().unwrap();
    assert_eq!(response.body.into_bytes().unwrap(), read.to_string());
    within(producer_dropped.recv()).await;
    server.stop_promptly().await;
}

/// A slow reader of a server stream holds the handler's producer back, and
/// reading on resumes it.
pub async fn server_stream_back_pressure(transport: &dyn Transport, listen_address: &str) {
    let mut server = TestServer::start(transport, listen_address).await;
    let outcome = within(server.channel.call_once(Request::new("Test.Firehose", ""))).await;
    if expect_unimplemented_without_streaming(transport, outcome.as_ref().err()) {
        return server.stop().await;
    }
    let mut messages = outcome.unwrap().body.into_stream();
    for _ in 0..3 {
        within(messages.next()).await.unwrap().unwrap();
    }
    let settled = within(settle(&server.probes.firehose_produced)).await;
    assert!(
        settled <= 3 + IN_FLIGHT_BOUND,
        "{settled} messages produced while the caller has read 3"
    );
    // More than was produced while paused arrives: production resumed.
    for _ in 3..settled + 10 {
        let message = within(messages.next()).await.unwrap().unwrap();
        assert_eq!(message.len(), PRESSURE_MESSAGE);
    }
    drop(messages);
    within(server.probes.firehose_dropped.recv()).await;
    server.stop_promptly().await;
}

/// A handler that returns before reading its whole request stream cancels
/// the caller's producer: the stream is dropped at its source.
pub async fn client_stream_cancelled_when_the_handler_returns(
    transport: &dyn Transport,
    listen_address: &str,
) {
    let server = TestServer::start(transport, listen_address).await;
    if skip_without_streaming(
        transport,
        "client_stream_cancelled_when_the_handler_returns",
    ) {
        return server.stop().await;
    }
    let (producer, _produced, mut producer_dropped) = endless_producer();
    let request =
        Request::new("Test.ReadSome", Body::Stream(producer)).with_metadata("x-read", "3");
    let response = within(server.channel.call_once(request)).await.unwrap();
    assert_eq!(response.body.into_bytes().unwrap(), "3");
    within(producer_dropped.recv()).await;
    server.assert_still_serving().await;
    server.stop_promptly().await;
}

/// A caller that gives up on a client-streaming call part-way ends the
/// handler (its future is dropped, or its stream fails), and the server
/// holds nothing of the call afterwards.
pub async fn client_stream_cancelled_by_the_caller(
    transport: &dyn Transport,
    listen_address: &str,
) {
    let mut server = TestServer::start(transport, listen_address).await;
    if skip_without_streaming(transport, "client_stream_cancelled_by_the_caller") {
        return server.stop().await;
    }
    let (sender, receiver) = mpsc::channel::<Result<Bytes>>(1);
    let call = tokio::spawn({
        let channel = server.channel.clone();
        let request = Request::new("Test.Drain", Body::Stream(receiver_stream(receiver)));
        async move { channel.call_once(request).await }
    });
    within(sender.send(Ok(Bytes::from_static(b"one"))))
        .await
        .unwrap();
    within(server.probes.drain_entered.recv()).await;
    call.abort();
    within(server.probes.drain_dropped.recv()).await;
    within(sender.closed()).await;
    server.stop_promptly().await;
}

/// Dropping the reply stream of a bidirectional call ends the call on the
/// serving side, which drops the caller's request stream in turn.
pub async fn bidi_stream_cancelled_on_drop(transport: &dyn Transport, listen_address: &str) {
    let server = TestServer::start(transport, listen_address).await;
    let (sender, receiver) = mpsc::channel::<Result<Bytes>>(1);
    let request = Request::new("Test.Upper", Body::Stream(receiver_stream(receiver)));
    let outcome = within(server.channel.call_once(request)).await;
    if expect_unimplemented_without_streaming(transport, outcome.as_ref().err()) {
        return server.stop().await;
    }
    let mut replies = outcome.unwrap().body.into_stream();
    within(sender.send(Ok(Bytes::from_static(b"ping"))))
        .await
        .unwrap();
    assert_eq!(within(replies.next()).await.unwrap().unwrap(), "PING");
    drop(replies);
    within(sender.closed()).await;
    server.assert_still_serving().await;
    server.stop_promptly().await;
}

/// A request stream still open when the deadline passes: the caller gets
/// `Timeout`, the handler is cancelled, and the caller's stream is dropped.
pub async fn client_stream_deadline_exceeded(transport: &dyn Transport, listen_address: &str) {
    let mut server = TestServer::start(transport, listen_address).await;
    if skip_without_streaming(transport, "client_stream_deadline_exceeded") {
        return server.stop().await;
    }
    let (sender, receiver) = mpsc::channel::<Result<Bytes>>(1);
    within(sender.send(Ok(Bytes::from_static(b"one"))))
        .await
        .unwrap();
    let request = Request::new("Test.Drain", Body::Stream(receiver_stream(receiver)))
        .with_deadline(Instant::now() + Duration::from_millis(200));
    let err = within(server.channel.call_once(request)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    within(server.probes.drain_dropped.recv()).await;
    within(sender.closed()).await;
    server.assert_still_serving().await;
    server.stop_promptly().await;
}

/// An endless stream of [`PRESSURE_MESSAGE`]-sized messages, the count of
/// those produced so far, and a signal sent when the stream is dropped.
fn endless_producer() -> (BodyStream, Arc<AtomicU64>, Signal) {
    let produced = Arc::new(AtomicU64::new(0));
    let (dropped, dropped_rx) = mpsc::unbounded_channel();
    let message = patterned(PRESSURE_MESSAGE);
    let count = produced.clone();
    let guard = DropSignal(dropped);
    let stream = futures::stream::repeat_with(move || {
        let _alive = &guard;
        count.fetch_add(1, Ordering::SeqCst);
        Ok(message.clone())
    });
    (stream.boxed(), produced, Signal(dropped_rx))
}

/// The counter's value once it has stopped moving: production has stalled
/// on back-pressure (or, without any, never stops and the case times out).
/// Stillness is judged over a few hundred milliseconds; a stall caused by a
/// busy machine only makes the bound checked afterwards easier to meet.
async fn settle(counter: &AtomicU64) -> u64 {
    let mut last = counter.load(Ordering::SeqCst);
    let mut still = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = counter.load(Ordering::SeqCst);
        if now != last {
            (last, still) = (now, 0);
            continue;
        }
        still += 1;
        if still == 6 {
            return now;
        }
    }
}

/// For cases whose request is a stream: with a backend without streaming,
/// says so and returns true (the streamed-reply cases check its
/// `Unimplemented` answer).
fn skip_without_streaming(transport: &dyn Transport, case: &str) -> bool {
    if transport.capabilities().streaming {
        return false;
    }
    eprintln!(
        "{case}: skipped, {} declares no streaming",
        transport.scheme()
    );
    true
}

/// For a backend without streaming: asserts the streamed call failed with
/// `Unimplemented` and returns true. For one with streaming: returns false.
fn expect_unimplemented_without_streaming(transport: &dyn Transport, err: Option<&Error>) -> bool {
    if transport.capabilities().streaming {
        return false;
    }
    let kind = err.map(Error::kind);
    assert_eq!(
        kind,
        Some(ErrorKind::Unimplemented),
        "{} declares no streaming, so a streamed call must be unimplemented",
        transport.scheme()
    );
    true
}

/// A running server with the suite's handler, a channel to it and the
/// handler's probes.
struct TestServer {
    listener: Listener,
    channel: Channel,
    probes: Probes,
}

impl TestServer {
    async fn start(transport: &dyn Transport, listen_address: &str) -> TestServer {
        let (handler, probes) = test_handler();
        let listener = within(transport.listen(listen_address, handler))
            .await
            .unwrap();
        let channel = within(transport.dial(listener.address())).await.unwrap();
        TestServer {
            listener,
            channel,
            probes,
        }
    }

    async fn assert_still_serving(&self) {
        let response = within(
            self.channel
                .call_once(Request::new("Test.Echo", "still here")),
        )
        .await
        .unwrap();
        assert_eq!(response.body.into_bytes().unwrap(), "still here");
    }

    async fn stop(self) {
        within(self.listener.shutdown(Duration::from_secs(10)))
            .await
            .unwrap();
    }

    /// Shuts down with a grace period longer than a case may take: this
    /// returns in time only if no call is left in flight, so a cancelled
    /// stream that still held server resources fails the case.
    async fn stop_promptly(self) {
        within(self.listener.shutdown(Duration::from_secs(3600)))
            .await
            .unwrap();
    }
}

/// Dials `address` afresh and makes one echo call.
async fn call_echo(transport: &dyn Transport, address: &str) -> Result<()> {
    let channel = transport.dial(address).await?;
    channel
        .call_once(Request::new("Test.Echo", "probe"))
        .await?;
    Ok(())
}

/// What the test handler reports back to the case driving it.
struct Probes {
    slow_entered: Signal,
    release_slow: Arc<Notify>,
    hang_entered: Signal,
    hang_dropped: Signal,
    ticks_closed: Signal,
    first_read: Signal,
    release_reader: Arc<Notify>,
    firehose_produced: Arc<AtomicU64>,
    firehose_dropped: Signal,
    drain_entered: Signal,
    drain_dropped: Signal,
}

/// One-way "it happened" notifications from handler to case, counted.
struct Signal(mpsc::UnboundedReceiver<()>);

impl Signal {
    async fn recv(&mut self) {
        self.0
            .recv()
            .await
            .expect("the test handler outlives the case");
    }
}

/// The handler-side ends of the probes.
#[derive(Clone)]
struct ProbeSenders {
    slow_entered: mpsc::UnboundedSender<()>,
    release_slow: Arc<Notify>,
    hang_entered: mpsc::UnboundedSender<()>,
    hang_dropped: mpsc::UnboundedSender<()>,
    ticks_closed: mpsc::UnboundedSender<()>,
    first_read: mpsc::UnboundedSender<()>,
    release_reader: Arc<Notify>,
    firehose_produced: Arc<AtomicU64>,
    firehose_dropped: mpsc::UnboundedSender<()>,
    drain_entered: mpsc::UnboundedSender<()>,
    drain_dropped: mpsc::UnboundedSender<()>,
}

/// Sends on its channel when dropped: tells the case that a handler future was cancelled.
struct DropSignal(mpsc::UnboundedSender<()>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

fn test_handler() -> (Handler, Probes) {
    let (slow_entered, slow_entered_rx) = mpsc::unbounded_channel();
    let (hang_entered, hang_entered_rx) = mpsc::unbounded_channel();
    let (hang_dropped, hang_dropped_rx) = mpsc::unbounded_channel();
    let (ticks_closed, ticks_closed_rx) = mpsc::unbounded_channel();
    let (first_read, first_read_rx) = mpsc::unbounded_channel();
    let (firehose_dropped, firehose_dropped_rx) = mpsc::unbounded_channel();
    let (drain_entered, drain_entered_rx) = mpsc::unbounded_channel();
    let (drain_dropped, drain_dropped_rx) = mpsc::unbounded_channel();
    let release_slow = Arc::new(Notify::new());
    let release_reader = Arc::new(Notify::new());
    let firehose_produced = Arc::new(AtomicU64::new(0));
    let senders = ProbeSenders {
        slow_entered,
        release_slow: release_slow.clone(),
        hang_entered,
        hang_dropped,
        ticks_closed,
        first_read,
        release_reader: release_reader.clone(),
        firehose_produced: firehose_produced.clone(),
        firehose_dropped,
        drain_entered,
        drain_dropped,
    };
    let probes = Probes {
        slow_entered: Signal(slow_entered_rx),
        release_slow,
        hang_entered: Signal(hang_entered_rx),
        hang_dropped: Signal(hang_dropped_rx),
        ticks_closed: Signal(ticks_closed_rx),
        first_read: Signal(first_read_rx),
        release_reader,
        firehose_produced,
        firehose_dropped: Signal(firehose_dropped_rx),
        drain_entered: Signal(drain_entered_rx),
        drain_dropped: Signal(drain_dropped_rx),
    };
    let handler = Handler::from_fn(move |request: Request| handle(senders.clone(), request));
    (handler, probes)
}

async fn handle(probes: ProbeSenders, request: Request) -> Result<Response> {
    match request.endpoint.as_str() {
        "Test.Echo" => Ok(Response::new(request.body).with_content_type(request.content_type)),
        "Test.Metadata" => {
            let mut response = Response::new(Body::empty());
            response.metadata = request.metadata;
            response.metadata.insert("x-service", request.service);
            response
                .metadata
                .insert("x-has-deadline", request.deadline.is_some().to_string());
            Ok(response)
        }
        "Test.Fail" => {
            let name = request.body.into_bytes()?;
            let kind = ErrorKind::from_name(&String::from_utf8_lossy(&name));
            Err(Error::new(
                kind,
                "failure requested by the conformance suite",
            ))
        }
        "Test.Panic" => panic!("panic requested by the conformance suite"),
        "Test.Slow" => {
            let _ = probes.slow_entered.send(());
            probes.release_slow.notified().await;
            Ok(Response::new("finished"))
        }
        "Test.Hang" => {
            let _dropped = DropSignal(probes.hang_dropped.clone());
            let _ = probes.hang_entered.send(());
            std::future::pending().await
        }
        "Test.Collect" => {
            let mut messages = Vec::new();
            let mut stream = request.body.into_stream();
            while let Some(message) = stream.next().await {
                messages.push(String::from_utf8_lossy(&message?).into_owned());
            }
            Ok(Response::new(messages.join(",").into_bytes()))
        }
        "Test.Count" => {
            let count: u32 = String::from_utf8_lossy(&request.body.into_bytes()?)
                .parse()
                .map_err(|_| Error::invalid_argument("Test.Count wants a count"))?;
            let messages = futures::stream::iter(0..count).map(|i| Ok(Bytes::from(i.to_string())));
            Ok(Response::new(Body::stream(messages)))
        }
        "Test.Upper" => {
            let replies = request
                .body
                .into_stream()
                .map(|message| message.map(|m| Bytes::from(m.to_ascii_uppercase())));
            Ok(Response::new(Body::stream(replies)))
        }
        "Test.Trickle" => {
            let first = futures::stream::once(async { Ok(Bytes::from_static(b"first")) });
            Ok(Response::new(Body::stream(
                first.chain(futures::stream::pending()),
            )))
        }
        "Test.Ticks" => Ok(Response::new(Body::Stream(ticks(
            probes.ticks_closed.clone(),
        )))),
        "Test.ReadSome" => read_some(probes, request).await,
        "Test.Firehose" => {
            let message = patterned(PRESSURE_MESSAGE);
            let produced = probes.firehose_produced.clone();
            let guard = DropSignal(probes.firehose_dropped.clone());
            let messages = futures::stream::repeat_with(move || {
                let _alive = &guard;
                produced.fetch_add(1, Ordering::SeqCst);
                Ok(message.clone())
            });
            Ok(Response::new(Body::stream(messages)))
        }
        "Test.Drain" => {
            let _dropped = DropSignal(probes.drain_dropped.clone());
            let mut stream = request.body.into_stream();
            let mut count = 0u64;
            while let Some(message) = stream.next().await {
                message?;
                count += 1;
                let _ = probes.drain_entered.send(());
            }
            Ok(Response::new(count.to_string().into_bytes()))
        }
        other => Err(Error::not_found(format!("no endpoint named {other:?}"))),
    }
}

/// Reads `x-read` messages of the request stream (pausing after the first
/// until released, with `x-pause: true`), then answers with the count,
/// dropping the rest of the stream unread.
async fn read_some(probes: ProbeSenders, request: Request) -> Result<Response> {
    let wanted: u64 = request
        .metadata
        .get("x-read")
        .and_then(|count| count.parse().ok())
        .ok_or_else(|| Error::invalid_argument("Test.ReadSome wants x-read"))?;
    let pause = request.metadata.get("x-pause") == Some("true");
    let mut stream = request.body.into_stream();
    let mut read = 0u64;
    while read < wanted {
        match stream.next().await {
            Some(message) => message?,
            None => break,
        };
        read += 1;
        if read == 1 && pause {
            let _ = probes.first_read.send(());
            probes.release_reader.notified().await;
        }
    }
    Ok(Response::new(read.to_string().into_bytes()))
}

/// An endless stream of counting messages, produced by a task of its own that
/// reports on `closed` once the consumer is gone.
fn ticks(closed: mpsc::UnboundedSender<()>) -> BodyStream {
    let (sender, receiver) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut tick = 0u64;
        while sender.send(Ok(Bytes::from(tick.to_string()))).await.is_ok() {
            tick += 1;
        }
        let _ = closed.send(());
    });
    receiver_stream(receiver)
}

fn receiver_stream(receiver: mpsc::Receiver<Result<Bytes>>) -> BodyStream {
    futures::stream::unfold(receiver, |mut receiver| async move {
        let message = receiver.recv().await?;
        Some((message, receiver))
    })
    .boxed()
}

/// `size` bytes of a pattern that a truncation or reordering would break.
fn patterned(size: usize) -> Bytes {
    (0..size)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// Awaits `future`, failing the case if it takes longer than [`STEP`].
async fn within<F: Future>(future: F) -> F::Output {
    match tokio::time::timeout(STEP, future).await {
        Ok(output) => output,
        Err(_) => panic!("a conformance step took longer than {STEP:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_is_as_long_as_asked_and_not_uniform() {
        let body = patterned(300);
        assert_eq!(body.len(), 300);
        assert_ne!(body[0], body[1]);
        assert_eq!(body[0], body[251]);
    }
}
