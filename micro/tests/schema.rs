//! Typed endpoints described with `Endpoint::described` carry the JSON
//! Schemas of their messages into the registry record (feature `schema`).

use micro::{
    Endpoint, Server, Service,
    codec::Json,
    registry::{Registry, memory::MemoryRegistry},
    transport::memory::MemoryTransport,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Who to greet.
#[derive(Serialize, Deserialize, JsonSchema)]
struct HelloRequest {
    /// The name to greet.
    name: String,
    /// How many times.
    times: Option<u8>,
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct HelloReply {
    message: String,
}

const HELLO: Endpoint<HelloRequest, HelloReply> = Endpoint::described("Greeter.Hello");
const COUNT: Endpoint<u32, u64> = Endpoint::described("Greeter.Count");
/// A wrapper that pins the codec is described by the message inside.
const STRICT: Endpoint<Json<HelloRequest>, Json<HelloReply>> =
    Endpoint::described("Greeter.Strict");
/// The same kind of endpoint, not described: no schemas.
const PLAIN: Endpoint<HelloRequest, HelloReply> = Endpoint::new("Greeter.Plain");

#[tokio::test]
async fn described_endpoints_carry_their_schemas_into_the_registry() {
    let registry = MemoryRegistry::new();
    let greet = |_ctx, request: HelloRequest| async move {
        Ok(HelloReply {
            message: format!("Hello, {}", request.name),
        })
    };
    let running = Service::builder("greeter")
        .registry(registry.clone())
        .transport(MemoryTransport::isolated())
        .handle(HELLO, greet)
        .handle(PLAIN, greet)
        .handle(
            STRICT,
            |_ctx, Json(request): Json<HelloRequest>| async move {
                Ok(Json(HelloReply {
                    message: request.name,
                }))
            },
        )
        .server(
            Server::new().handle_server_stream(COUNT, |_ctx, to| async move {
                Ok(futures::stream::iter((0..u64::from(to)).map(Ok)))
            }),
        )
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();

    let services = registry.get_service("greeter").await.unwrap();
    let endpoint = |name: &str| {
        services[0]
            .endpoints
            .iter()
            .find(|endpoint| endpoint.name == name)
            .unwrap_or_else(|| panic!("{name} is registered"))
            .clone()
    };

    let hello = endpoint("Greeter.Hello");
    let request = hello.request_schema.expect("the request schema");
    assert_eq!(request["title"], "HelloRequest");
    assert_eq!(request["properties"]["name"]["type"], "string");
    assert_eq!(
        request["properties"]["name"]["description"],
        "The name to greet."
    );
    assert_eq!(request["required"], serde_json::json!(["name"]));
    let response = hello.response_schema.expect("the response schema");
    assert_eq!(response["properties"]["message"]["type"], "string");

    let count = endpoint("Greeter.Count");
    assert_eq!(count.metadata.get("stream"), Some("server"));
    assert_eq!(count.request_schema.expect("a schema")["type"], "integer");
    assert_eq!(count.response_schema.expect("a schema")["format"], "uint64");

    let strict = endpoint("Greeter.Strict");
    assert_eq!(
        strict.request_schema.expect("a schema")["title"],
        "HelloRequest"
    );
    assert_eq!(
        strict.metadata.get("content-types"),
        Some("application/json")
    );

    let plain = endpoint("Greeter.Plain");
    assert_eq!(plain.request_schema, None);
    assert_eq!(plain.response_schema, None);

    running.stop().await.unwrap();
}

#[test]
fn a_record_with_schemas_round_trips_and_an_older_one_reads_without() {
    let mut endpoint = micro::registry::Endpoint::new("Greeter.Hello");
    endpoint.request_schema = Some(serde_json::json!({ "type": "string" }));
    let json = serde_json::to_string(&endpoint).unwrap();
    let back: micro::registry::Endpoint = serde_json::from_str(&json).unwrap();
    assert_eq!(back, endpoint);
    // Written before the fields existed: they read as None.
    let older: micro::registry::Endpoint =
        serde_json::from_str(r#"{"name":"Greeter.Hello","request":"String"}"#).unwrap();
    assert_eq!(older.request_schema, None);
    assert_eq!(older.response_schema, None);
    // Without schemas nothing new is written.
    let plain = serde_json::to_string(&micro::registry::Endpoint::new("Greeter.Hello")).unwrap();
    assert!(!plain.contains("schema"), "{plain}");
}
