//! Request/response end to end, over the memory, HTTP and (with
//! `transport-grpc`) gRPC transports: by name and by address, every kind of
//! serde type, MessagePack, protobuf and raw bodies, bad input, panics,
//! deadlines, retries and tower layers.

mod common;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::{CountLayer, Kind, World};
use micro::{
    Context, Endpoint, Error, ErrorKind,
    codec::{ContentType, Proto, Raw},
    registry::Registry,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct HelloRequest {
    name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct HelloReply {
    message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Address {
    city: String,
    zip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Person {
    name: String,
    age: u8,
    addresses: Vec<Address>,
    tags: BTreeMap<String, i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ProtoPing {
    #[prost(string, tag = "1")]
    text: String,
    #[prost(uint64, tag = "2")]
    count: u64,
}

fn greeter(world: &World) -> micro::ServiceBuilder {
    world.service("greeter").version("1.0.0").handle(
        "Greeter.Hello",
        |_ctx, request: HelloRequest| async move {
            Ok(HelloReply {
                message: format!("Hello, {}", request.name),
            })
        },
    )
}

/// Calls `Greeter.Hello` for Ada by name and checks the greeting: the call
/// every test uses to show the greeter answers (still).
async fn assert_greets_ada(client: &micro::Client) {
    let reply: HelloReply = client
        .call(
            "greeter",
            "Greeter.Hello",
            &HelloRequest { name: "Ada".into() },
        )
        .await
        .unwrap();
    assert_eq!(reply.message, "Hello, Ada");
}

async fn call_by_name(kind: Kind) {
    let world = World::new(kind);
    let running = greeter(&world).build().unwrap().start().await.unwrap();
    assert_greets_ada(&world.client()).await;

    let registered = world.registry.get_service("greeter").await.unwrap();
    assert_eq!(registered.len(), 1);
    assert_eq!(registered[0].version, "1.0.0");
    let node = &registered[0].nodes[0];
    assert_eq!(node.id, running.node_id());
    assert_eq!(node.address, running.address());
    assert_eq!(
        node.metadata.get("transport"),
        Some(world.transport.scheme())
    );
    let endpoint = &registered[0].endpoints[0];
    assert_eq!(endpoint.name, "Greeter.Hello");
    assert!(
        endpoint
            .request
            .as_deref()
            .unwrap()
            .ends_with("HelloRequest")
    );
    assert!(
        endpoint
            .response
            .as_deref()
            .unwrap()
            .ends_with("HelloReply")
    );
    running.stop().await.unwrap();
}

async fn call_address(kind: Kind) {
    let world = World::new(kind);
    let running = greeter(&world).build().unwrap().start().await.unwrap();
    // A client with an empty registry: only the address leads to the server.
    let client = micro::Client::new(
        micro::registry::memory::MemoryRegistry::new(),
        world.transport.clone(),
        world.broker.clone(),
    );
    let reply: HelloReply = client
        .call_address(
            running.address(),
            "Greeter.Hello",
            &HelloRequest { name: "Bo".into() },
        )
        .await
        .unwrap();
    assert_eq!(reply.message, "Hello, Bo");
    let err = client
        .call::<_, HelloReply>(
            "greeter",
            "Greeter.Hello",
            &HelloRequest { name: "Bo".into() },
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    running.stop().await.unwrap();
}

async fn every_serde_shape(kind: Kind) {
    let world = World::new(kind);
    let running = world
        .service("shapes")
        .handle("Shapes.Swap", |_ctx, (a, b): (String, i32)| async move {
            Ok((b, a))
        })
        .handle("Shapes.Sort", |_ctx, mut list: Vec<i64>| async move {
            list.sort_unstable();
            Ok(list)
        })
        .handle(
            "Shapes.Invert",
            |_ctx, map: HashMap<String, u32>| async move {
                Ok(map
                    .into_iter()
                    .map(|(k, v)| (v.to_string(), k))
                    .collect::<BTreeMap<String, String>>())
            },
        )
        .handle("Shapes.Find", |_ctx, id: Option<u32>| async move {
            Ok(id.filter(|id| *id == 1).map(|_| "one".to_owned()))
        })
        .handle("Shapes.Nothing", |_ctx, (): ()| async move { Ok(()) })
        .handle("Shapes.Birthday", |_ctx, mut person: Person| async move {
            person.age += 1;
            person.addresses.push(Address {
                city: "Paris".into(),
                zip: None,
            });
            Ok(person)
        })
        .handle("Shapes.Float", |_ctx, x: f64| async move { Ok(x * 2.0) })
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();

    for content_type in [ContentType::Json, ContentType::MsgPack] {
        let client = micro::Client::builder()
            .registry(world.registry.clone())
            .transport(world.transport.clone())
            .broker(world.broker.clone())
            .content_type(content_type)
            .build()
            .unwrap();
        let swapped: (i32, String) = client
            .call("shapes", "Shapes.Swap", &("x".to_owned(), 7))
            .await
            .unwrap();
        assert_eq!(swapped, (7, "x".to_owned()));
        let sorted: Vec<i64> = client
            .call("shapes", "Shapes.Sort", &vec![3, -1, 2])
            .await
            .unwrap();
        assert_eq!(sorted, [-1, 2, 3]);
        let inverted: BTreeMap<String, String> = client
            .call(
                "shapes",
                "Shapes.Invert",
                &HashMap::from([("a".to_owned(), 1u32)]),
            )
            .await
            .unwrap();
        assert_eq!(inverted, BTreeMap::from([("1".to_owned(), "a".to_owned())]));
        let some: Option<String> = client
            .call("shapes", "Shapes.Find", &Some(1u32))
            .await
            .unwrap();
        assert_eq!(some.as_deref(), Some("one"));
        let none: Option<String> = client
            .call("shapes", "Shapes.Find", &None::<u32>)
            .await
            .unwrap();
        assert_eq!(none, None);
        let (): () = client.call("shapes", "Shapes.Nothing", &()).await.unwrap();
        let person = Person {
            name: "Ada".into(),
            age: 36,
            addresses: vec![Address {
                city: "London".into(),
                zip: Some("W1".into()),
            }],
            tags: BTreeMap::from([("score".to_owned(), -4)]),
        };
        let older: Person = client
            .call("shapes", "Shapes.Birthday", &person)
            .await
            .unwrap();
        assert_eq!(older.age, 37);
        assert_eq!(older.addresses.len(), 2);
        assert_eq!(older.tags, person.tags);
        let doubled: f64 = client.call("shapes", "Shapes.Float", &1.25).await.unwrap();
        assert_eq!(doubled, 2.5);
    }
    running.stop().await.unwrap();
}

/// A protobuf endpoint, typed: the server and the client share it.
const PING: Endpoint<Proto<ProtoPing>, Proto<ProtoPing>> = Endpoint::new("Bytes.Ping");

async fn protobuf_and_raw(kind: Kind) {
    let world = World::new(kind);
    let running = world
        .service("bytes")
        .handle(PING, |_ctx, Proto(ping)| async move {
            Ok(Proto(ProtoPing {
                text: ping.text.to_uppercase(),
                count: ping.count + 1,
            }))
        })
        .handle("Bytes.Reverse", |_ctx, body: Raw| async move {
            Ok(Raw::from(body.iter().rev().copied().collect::<Vec<u8>>()))
        })
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let client = world.client();
    let Proto(pong) = client
        .call(
            "bytes",
            PING,
            &Proto(ProtoPing {
                text: "hi".into(),
                count: 1,
            }),
        )
        .await
        .unwrap();
    assert_eq!(
        pong,
        ProtoPing {
            text: "HI".into(),
            count: 2
        }
    );
    let reversed: Raw = client
        .call("bytes", "Bytes.Reverse", &Raw::from(&b"\x00\x01\xff"[..]))
        .await
        .unwrap();
    assert_eq!(&reversed[..], b"\xff\x01\x00");
    // A JSON request to a protobuf endpoint is refused, naming what it takes.
    let err = client
        .call::<_, ProtoPingJson>("bytes", "Bytes.Ping", &ProtoPingJson { text: "x".into() })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.message().contains("application/protobuf"), "{err}");
    running.stop().await.unwrap();
}

#[derive(Debug, Serialize, Deserialize)]
struct ProtoPingJson {
    text: String,
}

async fn malformed_json_is_invalid_argument(kind: Kind) {
    let world = World::new(kind);
    let running = greeter(&world).build().unwrap().start().await.unwrap();
    let err = world
        .client()
        .request::<_, Raw>("greeter", "Greeter.Hello")
        .content_type(ContentType::Json)
        .send(&Raw::from(&b"{\"name\":"[..]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.message().contains("HelloRequest"), "{err}");
    assert!(err.message().contains("line 1"), "{err}");
    // Well-formed JSON of the wrong shape is refused the same way.
    let err = world
        .client()
        .call::<_, HelloReply>("greeter", "Greeter.Hello", &vec![1, 2])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    running.stop().await.unwrap();
}

/// `NotFound`, except over gRPC, where every gRPC tool expects an unknown
/// method to be `UNIMPLEMENTED`.
async fn unknown_endpoint_is_not_found(kind: Kind) {
    let expected = match kind {
        #[cfg(feature = "transport-grpc")]
        Kind::Grpc => ErrorKind::Unimplemented,
        _ => ErrorKind::NotFound,
    };
    let world = World::new(kind);
    let running = greeter(&world).build().unwrap().start().await.unwrap();
    let err = world
        .client()
        .call::<_, HelloReply>(
            "greeter",
            "Greeter.Nope",
            &HelloRequest { name: "x".into() },
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), expected, "{err}");
    assert!(err.message().contains("Greeter.Nope"), "{err}");
    running.stop().await.unwrap();
}

async fn handler_panic_is_internal_and_the_server_keeps_serving(kind: Kind) {
    let world = World::new(kind);
    let running = greeter(&world)
        .handle("Greeter.Panic", |_ctx, (): ()| async move {
            if true {
                panic!("this handler always panics");
            }
            Ok(())
        })
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let client = world.client();
    for _ in 0..2 {
        let err = client
            .call::<_, ()>("greeter", "Greeter.Panic", &())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
        assert!(!err.message().contains("always panics"), "{err}");
        assert_greets_ada(&client).await;
    }
    running.stop().await.unwrap();
}

async fn call_past_its_deadline_times_out_and_the_server_keeps_serving(kind: Kind) {
    let world = World::new(kind);
    let running = greeter(&world)
        .handle("Greeter.Slow", |_ctx, (): ()| async move {
            // Far longer than the caller waits; dropped at the caller's deadline.
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        })
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let client = world.client();
    let err = client
        .request::<_, ()>("greeter", "Greeter.Slow")
        .timeout(Duration::from_millis(200))
        .send(&())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert_greets_ada(&client).await;
    running.stop().await.unwrap();
}

async fn retryable_errors_are_retried_and_others_are_not(kind: Kind) {
    let world = World::new(kind);
    let flaky_attempts = Arc::new(AtomicUsize::new(0));
    let missing_attempts = Arc::new(AtomicUsize::new(0));
    let flaky = flaky_attempts.clone();
    let missing = missing_attempts.clone();
    let running = world
        .service("flaky")
        .handle("Flaky.Call", move |_ctx, (): ()| {
            let attempt = flaky.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if attempt <= 2 {
                    return Err(Error::unavailable(format!("attempt {attempt} fails")));
                }
                Ok(attempt)
            }
        })
        .handle("Flaky.Missing", move |_ctx, (): ()| {
            missing.fetch_add(1, Ordering::SeqCst);
            async move { Err::<(), _>(Error::not_found("no such thing")) }
        })
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let client = world.client();
    let attempt: usize = client.call("flaky", "Flaky.Call", &()).await.unwrap();
    assert_eq!(attempt, 3);
    assert_eq!(flaky_attempts.load(Ordering::SeqCst), 3);

    let err = client
        .call::<_, ()>("flaky", "Flaky.Missing", &())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(missing_attempts.load(Ordering::SeqCst), 1);

    // With retries off, the first Unavailable is the answer.
    flaky_attempts.store(0, Ordering::SeqCst);
    let err = client
        .request::<_, usize>("flaky", "Flaky.Call")
        .retries(0)
        .send(&())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_eq!(flaky_attempts.load(Ordering::SeqCst), 1);
    running.stop().await.unwrap();
}

/// The client's retry count applies to calls that set none, and no retry is
/// made when its backoff would end past the call's deadline.
async fn retries_follow_the_client_and_never_outlive_the_deadline(kind: Kind) {
    let world = World::new(kind);
    let tries = Arc::new(AtomicUsize::new(0));
    let counter = tries.clone();
    let running = world
        .service("down")
        .handle("Down.Call", move |_ctx, (): ()| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move { Err::<(), _>(Error::unavailable("always down")) }
        })
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let client = |retries: u32, backoff: micro::client::Backoff| {
        micro::Client::builder()
            .registry(world.registry.clone())
            .transport(world.transport.clone())
            .broker(world.broker.clone())
            .retries(retries)
            .backoff(backoff)
            .build()
            .unwrap()
    };
    let quick = micro::client::Backoff::none();
    // One try and the client's two retries.
    let err = client(2, quick)
        .call::<_, ()>("down", "Down.Call", &())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_eq!(tries.swap(0, Ordering::SeqCst), 3);
    // The call's own count wins over the client's.
    let err = client(2, quick)
        .request::<(), ()>("down", "Down.Call")
        .retries(4)
        .send(&())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_eq!(tries.swap(0, Ordering::SeqCst), 5);
    // A first wait of an hour would outlive the 5 s timeout: no retry is
    // made, and the caller gets the failure, not a timeout.
    let slow = micro::client::Backoff::constant(Duration::from_secs(3600)).without_jitter();
    let err = client(3, slow)
        .call::<_, ()>("down", "Down.Call", &())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_eq!(tries.swap(0, Ordering::SeqCst), 1);
    running.stop().await.unwrap();
}

async fn a_retry_prefers_another_node(kind: Kind) {
    let world = World::new(kind);
    let broken = world
        .service("pair")
        .handle("Pair.Who", |_ctx, (): ()| async move {
            Err::<String, _>(Error::unavailable("this instance is broken"))
        })
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let healthy = world
        .service("pair")
        .handle("Pair.Who", |_ctx, (): ()| async move {
            Ok("healthy".to_owned())
        })
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let client = world.client();
    for _ in 0..20 {
        let who: String = client
            .request("pair", "Pair.Who")
            .retries(1)
            .send(&())
            .await
            .unwrap();
        assert_eq!(who, "healthy");
    }
    broken.stop().await.unwrap();
    healthy.stop().await.unwrap();
}

async fn tower_layers_on_server_and_client_see_every_call(kind: Kind) {
    let world = World::new(kind);
    let server_layer = CountLayer::default();
    let client_layer = CountLayer::default();
    let running = greeter(&world)
        .server(micro::Server::new().layer(server_layer.clone()))
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let client = micro::Client::builder()
        .registry(world.registry.clone())
        .transport(world.transport.clone())
        .broker(world.broker.clone())
        .layer(client_layer.clone())
        .build()
        .unwrap();
    for name in ["a", "b", "c"] {
        let _: HelloReply = client
            .call(
                "greeter",
                "Greeter.Hello",
                &HelloRequest { name: name.into() },
            )
            .await
            .unwrap();
    }
    assert_eq!(server_layer.get(), 3);
    assert_eq!(client_layer.get(), 3);
    running.stop().await.unwrap();
}

async fn handlers_call_downstream_with_the_inherited_deadline_and_metadata(kind: Kind) {
    let world = World::new(kind);
    let backend = world
        .service("backend")
        .handle("Backend.Inspect", |ctx: Context, (): ()| async move {
            Ok((
                ctx.remaining().map(|left| left.as_millis()),
                ctx.metadata().get("trace-id").map(str::to_owned),
            ))
        })
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let frontend = world
        .service("frontend")
        .handle("Frontend.Relay", |ctx: Context, (): ()| async move {
            let seen: (Option<u128>, Option<String>) =
                ctx.client().call("backend", "Backend.Inspect", &()).await?;
            Ok(seen)
        })
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let (remaining, trace_id): (Option<u128>, Option<String>) = world
        .client()
        .request("frontend", "Frontend.Relay")
        .timeout(Duration::from_secs(2))
        .metadata("Trace-Id", "abc123")
        .send(&())
        .await
        .unwrap();
    // The backend sees the caller's 2 s budget, not its client's default 5 s.
    let remaining = remaining.expect("the backend sees a deadline");
    assert!(remaining <= 2000, "{remaining} ms left");
    assert_eq!(trace_id.as_deref(), Some("abc123"));
    frontend.stop().await.unwrap();
    backend.stop().await.unwrap();
}

async fn unregistered_service_is_not_found(kind: Kind) {
    let world = World::new(kind);
    let err = world
        .client()
        .call::<_, ()>("nobody", "Nobody.Home", &())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.message().contains("nobody"), "{err}");
}

on_every_transport!(
    call_by_name,
    call_address,
    every_serde_shape,
    protobuf_and_raw,
    malformed_json_is_invalid_argument,
    unknown_endpoint_is_not_found,
    handler_panic_is_internal_and_the_server_keeps_serving,
    call_past_its_deadline_times_out_and_the_server_keeps_serving,
    retryable_errors_are_retried_and_others_are_not,
    retries_follow_the_client_and_never_outlive_the_deadline,
    a_retry_prefers_another_node,
    tower_layers_on_server_and_client_see_every_call,
    handlers_call_downstream_with_the_inherited_deadline_and_metadata,
    unregistered_service_is_not_found,
);
