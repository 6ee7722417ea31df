//! The HTTP broker beyond the conformance suite: failures reach the
//! publisher, a dead queue-group member is passed over, and the wire format
//! is plain HTTP a hand-written request can use.

use std::time::Duration;

use futures::StreamExt;
use micro_broker::{Broker, ErrorKind, Message, SubscribeOptions, http::HttpBroker};
use micro_registry::{MemoryRegistry, Node, RegisterOptions, Registry, Service};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    time::timeout,
};

const WAIT: Duration = Duration::from_secs(10);

/// A loopback address nothing listens on (bound, then closed).
async fn dead_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    address
}

/// Registers a subscription node the way a broker would, at `address`.
async fn register_subscription(
    registry: &MemoryRegistry,
    id: &str,
    address: &str,
    topic: &str,
    queue: Option<&str>,
) {
    let mut node = Node::new(id, address)
        .with_metadata("broker", "http")
        .with_metadata("topic", topic)
        .with_metadata("subscription", "1");
    if let Some(queue) = queue {
        node = node.with_metadata("queue", queue);
    }
    registry
        .register(
            &Service::new("micro.broker").with_node(node),
            &RegisterOptions::default(),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_subscriber_is_an_error_for_the_publisher() {
    let registry = MemoryRegistry::new();
    register_subscription(&registry, "dead-1", &dead_address().await, "jobs.*", None).await;
    let broker = HttpBroker::new(registry);
    let err = timeout(WAIT, broker.publish("jobs.run", Message::new("x")))
        .await
        .expect("publish returns")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        err.message().contains("dead-1"),
        "names the subscriber: {err}"
    );
    // A topic the dead node does not match is not affected.
    broker
        .publish("other.run", Message::new("x"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_group_member_is_passed_over() {
    let registry = MemoryRegistry::new();
    let broker = HttpBroker::new(registry.clone());
    let mut live = broker
        .subscribe("jobs.run", &SubscribeOptions::queue("workers"))
        .await
        .unwrap();
    // Sorted before the live member's id, so rotation meets it first half the time.
    register_subscription(
        &registry,
        "0000-dead",
        &dead_address().await,
        "jobs.run",
        Some("workers"),
    )
    .await;
    for i in 0..6 {
        broker
            .publish("jobs.run", Message::new(i.to_string()))
            .await
            .unwrap();
        let delivery = timeout(WAIT, live.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(delivery.message.body, i.to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_written_http_request_delivers() {
    let registry = MemoryRegistry::new();
    let broker = HttpBroker::new(registry.clone());
    let mut sub = broker
        .subscribe("user.*", &SubscribeOptions::fanout())
        .await
        .unwrap();
    let nodes = &registry.get_service("micro.broker").await.unwrap()[0].nodes;
    let (address, subscription) = (
        nodes[0].address.clone(),
        nodes[0].metadata.get("subscription").unwrap().to_owned(),
    );

    let body = r#"{"user_id":7}"#;
    let request = format!(
        "POST /micro/broker/{subscription} HTTP/1.1\r\nhost: {address}\r\n\
         micro-message: {{\"topic\":\"user.password_changed\",\"headers\":{{\"content-type\":\"application/json\",\"x-name\":\"gr\\u00fc\\u00dfe\"}}}}\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(&address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");

    let delivery = timeout(WAIT, sub.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(delivery.topic, "user.password_changed");
    assert_eq!(delivery.message.body, body);
    assert_eq!(
        delivery.message.headers.get("content-type"),
        Some("application/json")
    );
    assert_eq!(delivery.message.headers.get("x-name"), Some("grüße"));

    // A subscription that does not exist is 404; a missing envelope is 400.
    for (path, envelope, status) in [
        ("/micro/broker/999", true, "404"),
        (&format!("/micro/broker/{subscription}")[..], false, "400"),
    ] {
        let envelope = if envelope {
            "micro-message: {\"topic\":\"user.x\"}\r\n"
        } else {
            ""
        };
        let request = format!(
            "POST {path} HTTP/1.1\r\nhost: {address}\r\n{envelope}content-length: 0\r\nconnection: close\r\n\r\n"
        );
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{path}: {answer}"
        );
    }
}

/// The endpoint's listener has the transports' connection defences: a socket
/// that never sends a byte is closed at the handshake deadline, one over the
/// per-peer limit at once, while deliveries keep arriving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_to_the_endpoint_are_closed_while_deliveries_arrive() {
    let registry = MemoryRegistry::new();
    let mut config = micro_broker::http::HttpConfig::default();
    config.connections.handshake_timeout = Duration::from_secs(1);
    config.connections.max_connections_per_peer = 50;
    let broker = HttpBroker::builder(registry.clone()).config(config).build();
    let mut sub = broker
        .subscribe("orders", &SubscribeOptions::fanout())
        .await
        .unwrap();
    let address = registry.get_service("micro.broker").await.unwrap()[0].nodes[0]
        .address
        .clone();
    // From another loopback address than the publisher's, which must get in.
    let connect = || async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        socket.connect(address.parse().unwrap()).await.unwrap()
    };
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(connect().await);
    }
    // The 51st from the same address is refused: closed unread.
    let mut over = connect().await;
    let mut byte = [0u8; 1];
    let refused = timeout(WAIT, over.read(&mut byte)).await.unwrap();
    assert!(matches!(refused, Ok(0) | Err(_)), "{refused:?}");

    broker
        .publish("orders", Message::new("first"))
        .await
        .unwrap();
    let delivery = timeout(WAIT, sub.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(delivery.message.body, "first");

    for mut stream in silent {
        let closed = timeout(WAIT * 2, stream.read(&mut byte)).await;
        assert!(
            matches!(closed, Ok(Ok(0) | Err(_))),
            "a silent connection was left open: {closed:?}"
        );
    }
}

/// Who may publish what: the endpoint checks each message's publisher
/// against its rules by topic, and subscribers never see the credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_are_restricted_by_topic() {
    use micro_auth::{Account, Rule, tokens::StaticTokens};
    let registry = MemoryRegistry::new();
    let subscriber = HttpBroker::builder(registry.clone())
        .auth(StaticTokens::new().token(
            "t-users",
            Account::new("users", "static").with_scopes(["publish:user"]),
        ))
        .rule(Rule::grant("micro.broker", "user.*", "publish:user"))
        .build();
    let mut sub = subscriber
        .subscribe(">", &SubscribeOptions::fanout())
        .await
        .unwrap();
    let publisher = HttpBroker::new(registry.clone());
    let with_token = |token: &str, body: &str| {
        let mut message = Message::new(body.to_owned());
        message
            .headers
            .insert("authorization", format!("Bearer {token}"));
        message
    };
    publisher
        .publish("user.created", with_token("t-users", "allowed"))
        .await
        .unwrap();
    let delivery = timeout(WAIT, sub.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(delivery.message.body, "allowed");
    assert_eq!(delivery.message.headers.get("authorization"), None);

    for (topic, message, kind) in [
        (
            "user.created",
            Message::new("no token"),
            ErrorKind::Unauthenticated,
        ),
        (
            "user.created",
            with_token("t-guess", "bad token"),
            ErrorKind::Unauthenticated,
        ),
        (
            "billing.charged",
            with_token("t-users", "wrong topic"),
            ErrorKind::PermissionDenied,
        ),
    ] {
        let err = publisher.publish(topic, message).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{topic}: {err}");
    }
    assert!(
        timeout(Duration::from_millis(300), sub.next())
            .await
            .is_err(),
        "a refused message reached the subscriber"
    );
}
