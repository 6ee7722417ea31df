//! The attack matrix: every way of presenting a wrong credential, or a right
//! one for the wrong endpoint, over the memory, HTTP and gRPC transports.
//! Each case checks the exact error kind (which is the HTTP status and the
//! gRPC code on the wire) and that the handler never ran.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use common::{Kind, World};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use micro::{
    Context, ErrorKind,
    auth::{Rule, Rules, jwt::JwtAuth},
};
use serde_json::{Value, json};

const RSA_PRIVATE: &[u8] = include_bytes!("../../micro-auth/tests/fixtures/rsa-private.pem");
const RSA_PUBLIC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../micro-auth/tests/fixtures/rsa-public.pem"
);
const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "orders";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(scope: &str) -> Value {
    json!({"sub": "ada", "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600, "scope": scope})
}

fn rs256(claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
    encode(&Header::new(Algorithm::RS256), claims, &key).unwrap()
}

fn with(scope: &str, change: impl FnOnce(&mut Value)) -> String {
    let mut claims = claims(scope);
    change(&mut claims);
    rs256(&claims)
}

/// Unpadded base64url, for hand-built tokens.
fn b64(value: &Value) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = value.to_string().into_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Counts the calls that reached a handler.
#[derive(Clone, Default)]
struct Reached(Arc<AtomicUsize>);

impl Reached {
    fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

struct Orders {
    running: micro::RunningService,
    reached: Reached,
    rules: micro::server::RulesHandle,
}

async fn start(world: &World) -> Orders {
    let reached = Reached::default();
    let auth = JwtAuth::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .leeway(Duration::from_secs(5))
        .rsa_pem_file(RSA_PUBLIC)
        .build()
        .unwrap();
    let counting = |reached: &Reached| {
        let reached = reached.clone();
        move |ctx: Context, _: Value| {
            reached.0.fetch_add(1, Ordering::SeqCst);
            let who = ctx.account().map(|account| account.id.clone());
            async move { Ok(json!({ "account": who })) }
        }
    };
    let mut builder = world
        .service("orders")
        .auth(auth)
        .public("Health.*")
        .rule(Rule::grant("orders", "Orders.*", "orders:read"))
        .rule(Rule::deny("orders", "Orders.Delete", "*").priority(10))
        .handle("Orders.Get", counting(&reached))
        .handle("Orders.List", counting(&reached))
        .handle("Orders.Delete", counting(&reached))
        .handle("Health.Check", counting(&reached))
        .handle("Orders.Proxy", |ctx: Context, _: Value| async move {
            ctx.client()
                .call::<_, Value>("orders", "Orders.Get", &json!({}))
                .await
        })
        .handle(
            "Orders.ProxyAsCaller",
            |ctx: Context, _: Value| async move {
                ctx.client_as_caller()
                    .call::<_, Value>("orders", "Orders.Get", &json!({}))
                    .await
            },
        );
    let rules = builder.rules_handle();
    let running = builder.build().unwrap().start().await.unwrap();
    Orders {
        running,
        reached,
        rules,
    }
}

async fn call(world: &World, endpoint: &str, token: Option<&str>) -> micro::Result<Value> {
    let mut request = world
        .client()
        .request::<Value, Value>("orders", endpoint)
        .timeout(Duration::from_secs(10));
    if let Some(token) = token {
        request = request.metadata("authorization", format!("Bearer {token}"));
    }
    request.send(&json!({})).await
}

async fn wrong_credentials_never_reach_the_handler(kind: Kind) {
    let world = World::new(kind);
    let orders = start(&world).await;
    let other_key = rcgen::KeyPair::generate().unwrap();
    let public_key = std::fs::read(RSA_PUBLIC).unwrap();
    let hs256_confused = encode(
        &Header::new(Algorithm::HS256),
        &claims("orders:read"),
        &EncodingKey::from_secret(&public_key).unwrap(),
    )
    .unwrap();
    let wrong_signature = encode(
        &Header::new(Algorithm::ES256),
        &claims("orders:read"),
        &EncodingKey::from_ec_pem(other_key.serialize_pem().as_bytes()).unwrap(),
    )
    .unwrap();
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims("orders:read"))
    );
    let cases: Vec<(&str, &str, Option<String>, ErrorKind)> = vec![
        ("no token", "Orders.Get", None, ErrorKind::Unauthenticated),
        // gRPC answers unknown methods itself, as gRPC servers do (and its
        // reflection lists the methods anyway); elsewhere an unknown caller
        // does not learn which endpoints exist.
        (
            "no token, unknown endpoint",
            "Orders.Nope",
            None,
            match kind {
                #[cfg(feature = "transport-grpc")]
                Kind::Grpc => ErrorKind::Unimplemented,
                _ => ErrorKind::Unauthenticated,
            },
        ),
        (
            "malformed",
            "Orders.Get",
            Some("not-a-jwt".into()),
            ErrorKind::Unauthenticated,
        ),
        (
            "expired",
            "Orders.Get",
            Some(with("orders:read", |c| c["exp"] = json!(now() - 120))),
            ErrorKind::Unauthenticated,
        ),
        (
            "not yet valid",
            "Orders.Get",
            Some(with("orders:read", |c| c["nbf"] = json!(now() + 120))),
            ErrorKind::Unauthenticated,
        ),
        (
            "wrong signature",
            "Orders.Get",
            Some(wrong_signature),
            ErrorKind::Unauthenticated,
        ),
        (
            "wrong issuer",
            "Orders.Get",
            Some(with("orders:read", |c| {
                c["iss"] = json!("https://evil.example")
            })),
            ErrorKind::Unauthenticated,
        ),
        (
            "wrong audience",
            "Orders.Get",
            Some(with("orders:read", |c| c["aud"] = json!("billing"))),
            ErrorKind::Unauthenticated,
        ),
        (
            "alg none",
            "Orders.Get",
            Some(alg_none),
            ErrorKind::Unauthenticated,
        ),
        (
            "HS256 with the RS256 public key",
            "Orders.Get",
            Some(hs256_confused),
            ErrorKind::Unauthenticated,
        ),
        (
            "valid token, wrong scope",
            "Orders.Get",
            Some(rs256(&claims("billing:read"))),
            ErrorKind::PermissionDenied,
        ),
        (
            "deny rule of higher priority",
            "Orders.Delete",
            Some(rs256(&claims("orders:read"))),
            ErrorKind::PermissionDenied,
        ),
        (
            "bad token on a public endpoint",
            "Health.Check",
            Some("not-a-jwt".into()),
            ErrorKind::Unauthenticated,
        ),
    ];
    for (case, endpoint, token, expected) in cases {
        let err = call(&world, endpoint, token.as_deref()).await.unwrap_err();
        assert_eq!(err.kind(), expected, "{case}: {err}");
        assert_eq!(orders.reached.get(), 0, "{case}: the handler ran");
    }
    orders.running.stop().await.unwrap();
}

async fn granted_calls_reach_the_handler_with_the_account(kind: Kind) {
    let world = World::new(kind);
    let orders = start(&world).await;
    let reader = rs256(&claims("orders:read"));
    // A public endpoint without a token: no account.
    assert_eq!(
        call(&world, "Health.Check", None).await.unwrap(),
        json!({"account": null})
    );
    // The wildcard rule grants an endpoint it does not name.
    assert_eq!(
        call(&world, "Orders.List", Some(&reader)).await.unwrap(),
        json!({"account": "ada"})
    );
    assert_eq!(orders.reached.get(), 2);
    // The caller's credential goes on only when the handler says so.
    let err = call(&world, "Orders.Proxy", Some(&reader))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    assert_eq!(
        call(&world, "Orders.ProxyAsCaller", Some(&reader))
            .await
            .unwrap(),
        json!({"account": "ada"})
    );
    // A rule change (as from configuration) takes effect without a restart.
    let err = call(&world, "Orders.Delete", Some(&reader))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    orders
        .rules
        .replace(Rules::new().rule(Rule::grant("orders", "*", "orders:read")));
    assert_eq!(
        call(&world, "Orders.Delete", Some(&reader)).await.unwrap(),
        json!({"account": "ada"})
    );
    orders.running.stop().await.unwrap();
}

on_every_transport!(
    wrong_credentials_never_reach_the_handler,
    granted_calls_reach_the_handler_with_the_account,
);

/// On the wire: curl-style requests get 401 and 403 with nothing in the
/// body that helps an attacker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_statuses_are_401_and_403() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let world = World::new(Kind::Http);
    let orders = start(&world).await;
    let address = orders.running.address().to_owned();
    for (token, status) in [(None, "401"), (Some(rs256(&claims("billing:read"))), "403")] {
        let authorization = token
            .map(|t| format!("authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "POST /Orders.Get HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n{authorization}content-length: 2\r\nconnection: close\r\n\r\n{{}}"
        );
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer}"
        );
        assert!(
            !answer.contains("orders:read"),
            "the answer names the rule: {answer}"
        );
    }
    assert_eq!(orders.reached.get(), 0);
    orders.running.stop().await.unwrap();
}

/// Rules kept in configuration change with it, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_follow_the_configuration() {
    use micro::config::{Config, MemorySource};
    let world = World::new(Kind::Memory);
    let source = MemorySource::new(json!({"auth": {"rules": [
        {"service": "orders", "endpoint": "Orders.*", "scope": "orders:read", "access": "grant"},
        {"service": "orders", "endpoint": "Orders.Delete", "scope": "*", "access": "deny", "priority": 10},
    ]}}))
    .unwrap();
    let config = Config::builder()
        .source(source.clone())
        .build()
        .await
        .unwrap();
    let orders = start(&world).await;
    let follow = tokio::spawn(orders.rules.clone().follow(config, "auth.rules".to_owned()));
    let reader = rs256(&claims("orders:read"));
    let err = call(&world, "Orders.Delete", Some(&reader))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    source.set(
        "auth.rules",
        json!([{"service": "orders", "endpoint": "*", "scope": "orders:read", "access": "grant"}]),
    );
    let started = tokio::time::Instant::now();
    while call(&world, "Orders.Delete", Some(&reader)).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the new rules never applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A value that is not rules is skipped, and the follower goes on: the
    // rules set after it still apply.
    source.set("auth.rules", json!("not rules"));
    source.set(
        "auth.rules",
        json!([{"service": "orders", "endpoint": "Orders.Get", "scope": "orders:read", "access": "grant"}]),
    );
    let started = tokio::time::Instant::now();
    while call(&world, "Orders.Delete", Some(&reader)).await.is_ok() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the follower stopped at a bad value"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    follow.abort();
    orders.running.stop().await.unwrap();
}

/// A client given a token carries it on every call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_a_bearer_token_is_its_account() {
    let world = World::new(Kind::Http);
    let orders = start(&world).await;
    let client = world
        .client()
        .with_bearer_token(&rs256(&claims("orders:read")));
    let reply: Value = client
        .call("orders", "Orders.Get", &json!({}))
        .await
        .unwrap();
    assert_eq!(reply, json!({"account": "ada"}));
    orders.running.stop().await.unwrap();
}
