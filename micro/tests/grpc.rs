//! micro over gRPC: micro handlers and mounted tonic services on one server,
//! tonic-generated clients reaching them by service name through the
//! registry, health, reflection, retries, deadlines, metadata and limits.
#![cfg(feature = "transport-grpc")]

use std::time::Duration;

use futures::StreamExt;
use micro::{
    Context, Error, ErrorKind, RunningService, Selector, Service,
    codec::Proto,
    env::EnvConfig,
    grpc::GrpcChannel,
    registry::{Node, RegisterOptions, Registry, memory::MemoryRegistry},
    transport::grpc::GrpcTransport,
};
use micro_interop::echo::{self, EchoReply, EchoRequest, echo_client::EchoClient};
use serde::{Deserialize, Serialize};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

const STEP: Duration = Duration::from_secs(30);

#[derive(Serialize, Deserialize)]
struct Hello {
    name: String,
}

/// A micro service named `echo` whose `Echo.Unary` is a micro protobuf
/// handler reporting what it saw of the call, beside a JSON handler.
async fn start(registry: &MemoryRegistry, transport: &GrpcTransport) -> RunningService {
    Service::builder("echo")
        .registry(registry.clone())
        .transport(transport.clone())
        .handle(
            "Echo.Unary",
            |ctx: Context, Proto(request): Proto<EchoRequest>| async move {
                if let Some(kind) = request.message.strip_prefix("fail:") {
                    return Err(Error::new(ErrorKind::from_name(kind), "asked to fail"));
                }
                Ok(Proto(EchoReply {
                    message: format!(
                        "{} trace={} deadline={}",
                        request.message,
                        ctx.metadata().get("x-trace-id").unwrap_or("-"),
                        ctx.remaining().is_some()
                    ),
                    payload: request.payload,
                    index: 0,
                }))
            },
        )
        .handle("Greeter.Hello", |_ctx, hello: Hello| async move {
            Ok(format!("Hello, {}", hello.name))
        })
        .build()
        .unwrap()
        .start()
        .await
        .unwrap()
}

fn channel(registry: &MemoryRegistry, transport: &GrpcTransport) -> GrpcChannel {
    GrpcChannel::builder("echo", registry.clone())
        .transport(transport)
        .build()
}

fn echo_request(message: &str) -> EchoRequest {
    EchoRequest {
        message: message.into(),
        ..EchoRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tonic_client_reaches_micro_handlers_by_service_name() {
    let registry = MemoryRegistry::new();
    let transport = GrpcTransport::builder()
        .package("micro.echo")
        .build()
        .unwrap();
    let running = start(&registry, &transport).await;
    let mut client = EchoClient::new(channel(&registry, &transport));

    let mut request = tonic::Request::new(echo_request("hi"));
    request
        .metadata_mut()
        .insert("x-trace-id", "t-42".parse().unwrap());
    request.set_timeout(STEP);
    let reply = client.unary(request).await.unwrap().into_inner();
    assert_eq!(reply.message, "hi trace=t-42 deadline=true");
    let reply = client
        .unary(echo_request("plain"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.message, "plain trace=- deadline=false");

    for (kind, code) in [
        ("not_found", tonic::Code::NotFound),
        ("permission_denied", tonic::Code::PermissionDenied),
        ("deadline_exceeded", tonic::Code::DeadlineExceeded),
    ] {
        let status = client
            .unary(echo_request(&format!("fail:{kind}")))
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{status}");
    }

    // micro's own client, over the same gRPC transport, by service name.
    let greeting: String = running
        .client()
        .call("echo", "Greeter.Hello", &Hello { name: "Ada".into() })
        .await
        .unwrap();
    assert_eq!(greeting, "Hello, Ada");
    let Proto(reply): Proto<EchoReply> = running
        .client()
        .call("echo", "Echo.Unary", &Proto(echo_request("proto")))
        .await
        .unwrap();
    assert!(reply.message.starts_with("proto "), "{}", reply.message);

    let mut unknown = EchoClient::new(
        GrpcChannel::builder("nobody", registry.clone())
            .transport(&transport)
            .build(),
    );
    let status = unknown.unary(echo_request("x")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status}");
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn mounted_tonic_services_health_and_reflection_sit_beside_micro_handlers() {
    let registry = MemoryRegistry::new();
    let transport = GrpcTransport::builder()
        .add_service(echo::echo_server::EchoServer::new(echo::TonicEcho))
        .file_descriptor_set(echo::FILE_DESCRIPTOR_SET)
        .build()
        .unwrap();
    let running = start(&registry, &transport).await;
    let channel = channel(&registry, &transport);

    // The mounted tonic service answers its own methods (server streaming here)...
    let mut client = EchoClient::new(channel.clone());
    let request = EchoRequest {
        message: "tick".into(),
        count: 3,
        ..EchoRequest::default()
    };
    let replies: Vec<u32> = client
        .server_stream(request)
        .await
        .unwrap()
        .into_inner()
        .map(|reply| reply.unwrap().index)
        .collect()
        .await;
    assert_eq!(replies, [0, 1, 2]);
    // ...while micro handlers keep theirs.
    let greeting: String = running
        .client()
        .call("echo", "Greeter.Hello", &Hello { name: "Bo".into() })
        .await
        .unwrap();
    assert_eq!(greeting, "Hello, Bo");

    let mut health = HealthClient::new(channel.clone());
    for service in ["", "micro.echo.Echo"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }

    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = tokio::time::timeout(STEP, responses.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a list of services");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"micro.echo.Echo".to_owned()), "{names:?}");
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_retry_on_another_node_when_one_is_down() {
    let registry = MemoryRegistry::new();
    let transport = GrpcTransport::builder()
        .package("micro.echo")
        .build()
        .unwrap();
    let running = start(&registry, &transport).await;
    // A node that sorts first but where nothing listens any more.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_address = dead.local_addr().unwrap().to_string();
    drop(dead);
    let ghost = micro::registry::Service::new("echo")
        .with_node(Node::new("0-dead", dead_address).with_metadata("transport", "grpc"));
    registry
        .register(&ghost, &RegisterOptions::default())
        .await
        .unwrap();
    let channel = GrpcChannel::builder("echo", registry.clone())
        .transport(&transport)
        .selector(Selector::round_robin())
        .build();
    let mut client = EchoClient::new(channel);
    for i in 0..4 {
        let reply = client
            .unary(echo_request(&format!("call-{i}")))
            .await
            .unwrap()
            .into_inner();
        assert!(
            reply.message.starts_with(&format!("call-{i} ")),
            "{}",
            reply.message
        );
    }

    let no_retries = GrpcChannel::builder("echo", registry.clone())
        .transport(&transport)
        .selector(Selector::round_robin())
        .retries(0)
        .build();
    let mut client = EchoClient::new(no_retries);
    let mut codes = Vec::new();
    for i in 0..2 {
        codes.push(match client.unary(echo_request(&format!("n-{i}"))).await {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        });
    }
    codes.sort_by_key(|code| *code as i32);
    assert_eq!(codes, [tonic::Code::Ok, tonic::Code::Unavailable]);
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_over_the_limit_are_resource_exhausted() {
    let registry = MemoryRegistry::new();
    let transport = GrpcTransport::builder()
        .package("micro.echo")
        .max_message_size(1024)
        .build()
        .unwrap();
    let running = start(&registry, &transport).await;
    let big = EchoRequest {
        message: "big".into(),
        payload: vec![1; 4096],
        count: 0,
    };
    let err = running
        .client()
        .call::<_, Proto<EchoReply>>("echo", "Echo.Unary", &Proto(big.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ResourceExhausted, "{err}");
    // A tonic client with its own (default 4 MiB) limit sends it; the server refuses it.
    let mut client = EchoClient::new(channel(&registry, &transport));
    let status = client.unary(big).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
    let reply = client.unary(echo_request("small")).await.unwrap();
    assert!(reply.into_inner().message.starts_with("small "));
    running.stop().await.unwrap();
}

#[tokio::test]
async fn micro_transport_grpc_selects_the_grpc_transport() {
    let config =
        EnvConfig::from_lookup(|name| (name == "MICRO_TRANSPORT").then(|| "grpc".to_owned()))
            .unwrap();
    assert_eq!(config.transport().unwrap().scheme(), "grpc");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_answers_per_service_and_turns_not_serving_when_the_service_stops() {
    let registry = MemoryRegistry::new();
    let transport = GrpcTransport::builder()
        .package("micro.echo")
        .build()
        .unwrap();
    let running = start(&registry, &transport).await;
    let mut health = HealthClient::new(channel(&registry, &transport));
    // The overall status, the micro service, and each gRPC service it
    // serves, bare and in the transport's package.
    for service in [
        "",
        "echo",
        "Echo",
        "micro.echo.Echo",
        "Greeter",
        "micro.echo.Greeter",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
    let status = health
        .check(HealthCheckRequest {
            service: "nobody".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status}");

    // Watches opened while serving see NOT_SERVING once the stop begins.
    let mut watches = Vec::new();
    for service in ["", "echo", "micro.echo.Echo"] {
        let mut updates = health
            .watch(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        let first = tokio::time::timeout(STEP, updates.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(first.status, ServingStatus::Serving as i32, "{service:?}");
        watches.push((service, updates));
    }
    let watched = async {
        for (service, updates) in &mut watches {
            let next = tokio::time::timeout(STEP, updates.message())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(next.status, ServingStatus::NotServing as i32, "{service:?}");
        }
    };
    let (stopped, ()) = tokio::join!(running.stop(), watched);
    stopped.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_methods_are_unimplemented_and_packages_route_apart() {
    let registry = MemoryRegistry::new();
    let transport = GrpcTransport::new();
    let running = Service::builder("greeters")
        .registry(registry.clone())
        .transport(transport.clone())
        .handle("pkg.v1.Greeter.Hello", |_ctx, hello: Hello| async move {
            Ok(format!("v1 hello, {}", hello.name))
        })
        .handle("other.Greeter.Hello", |_ctx, hello: Hello| async move {
            Ok(format!("other hello, {}", hello.name))
        })
        .handle("Greeter.Bye", |_ctx, hello: Hello| async move {
            Ok(format!("bye, {}", hello.name))
        })
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let client = running.client();
    let hello = Hello { name: "Ada".into() };
    for (endpoint, expected) in [
        ("pkg.v1.Greeter.Hello", "v1 hello, Ada"),
        ("other.Greeter.Hello", "other hello, Ada"),
        ("Greeter.Bye", "bye, Ada"),
        ("any.pkg.Greeter.Bye", "bye, Ada"),
    ] {
        let reply: String = client.call("greeters", endpoint, &hello).await.unwrap();
        assert_eq!(reply, expected, "{endpoint}");
    }
    for endpoint in ["Greeter.Hello", "third.Greeter.Hello", "Nobody.Hello"] {
        let err = client
            .call::<_, String>("greeters", endpoint, &hello)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unimplemented, "{endpoint}: {err}");
    }
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn reflection_describes_the_services_own_methods_and_survives_unknown_symbols() {
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("echo.bin");
    std::fs::write(&set, echo::FILE_DESCRIPTOR_SET).unwrap();
    let registry = MemoryRegistry::new();
    let transport = GrpcTransport::builder()
        .package("micro.echo")
        .descriptor_set_file(&set)
        .build()
        .unwrap();
    let running = start(&registry, &transport).await;
    let mut reflection = ServerReflectionClient::new(channel(&registry, &transport));
    let request = |message: MessageRequest| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(message),
    };
    // One stream: a list, a known symbol, an unknown one, a known one again.
    let (sender, receiver) = futures::channel::mpsc::unbounded();
    let mut responses = reflection
        .server_reflection_info(receiver)
        .await
        .unwrap()
        .into_inner();
    let mut next = async |message: MessageRequest| {
        sender.unbounded_send(request(message)).unwrap();
        tokio::time::timeout(STEP, responses.message())
            .await
            .unwrap()
            .unwrap()
            .expect("the stream stays open")
            .message_response
            .unwrap()
    };
    let MessageResponse::ListServicesResponse(list) =
        next(MessageRequest::ListServices(String::new())).await
    else {
        panic!("expected a list of services");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"micro.echo.Echo".to_owned()), "{names:?}");
    for symbol in [
        "micro.echo.Echo",
        "micro.echo.Nope",
        "micro.echo.EchoRequest",
    ] {
        let response = next(MessageRequest::FileContainingSymbol(symbol.into())).await;
        match (symbol, response) {
            ("micro.echo.Nope", MessageResponse::ErrorResponse(error)) => {
                assert_eq!(error.error_code, tonic::Code::NotFound as i32);
            }
            (_, MessageResponse::FileDescriptorResponse(files)) => {
                assert_eq!(files.file_descriptor_proto.len(), 1, "{symbol}");
            }
            (symbol, other) => panic!("{symbol}: unexpected {other:?}"),
        }
    }
    drop(sender);
    running.stop().await.unwrap();
}
