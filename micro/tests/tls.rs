//! A service serving TLS registers so, and a client calls it by name over
//! TLS without being told: on the HTTP and gRPC transports, with the
//! settings read from `MICRO_TLS_*`-style variables.

use std::{collections::HashMap, sync::Arc, time::Duration};

use micro::{
    ErrorKind,
    broker::memory::MemoryBroker,
    registry::{DynRegistry, MemoryRegistry, Registry},
    service::NODE_TLS,
    transport::{
        DynTransport,
        grpc::{GrpcConfig, GrpcTransport},
        http::HttpTransport,
        tls::{CA_ENV, CERT_ENV, CLIENT_CA_ENV, KEY_ENV, TlsConfig},
    },
};
use micro_test_servers::tls::TestCa;

#[derive(Clone, Copy, Debug)]
enum Wire {
    Http,
    Grpc,
}

fn transport(wire: Wire, tls: TlsConfig) -> DynTransport {
    match wire {
        Wire::Http => Arc::new(HttpTransport::builder().tls(tls).build()),
        Wire::Grpc => Arc::new(GrpcTransport::builder().tls(tls).build().unwrap()),
    }
}

async fn a_service_serving_tls_is_called_by_name_over_tls(wire: Wire) {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    let server = ca.issue("greeter", &["127.0.0.1"]);
    let client = ca.issue("caller", &["caller.example"]);
    // What a deployment sets: three variables for TLS, one more for mTLS.
    let server_env = HashMap::from([
        (CERT_ENV, server.cert.clone()),
        (KEY_ENV, server.key.clone()),
        (CA_ENV, ca.cert.clone()),
        (CLIENT_CA_ENV, ca.cert.clone()),
    ]);
    let server_tls = TlsConfig::from_lookup(|name| server_env.get(name).cloned()).unwrap();
    let registry: DynRegistry = Arc::new(MemoryRegistry::new());
    let running = micro::Service::builder("greeter")
        .registry(registry.clone())
        .broker(Arc::new(MemoryBroker::new()))
        .transport(transport(wire, server_tls))
        .handle("Greeter.Hello", |_ctx, name: String| async move {
            Ok(format!("Hello, {name}"))
        })
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let nodes = &registry.get_service("greeter").await.unwrap()[0].nodes;
    assert_eq!(nodes[0].metadata.get(NODE_TLS), Some("true"));

    let caller = |tls: TlsConfig| {
        micro::Client::new(
            registry.clone(),
            transport(wire, tls),
            Arc::new(MemoryBroker::new()),
        )
    };
    let trusted = caller(
        TlsConfig::default()
            .with_identity(&client.cert, &client.key)
            .with_ca(&ca.cert),
    );
    let reply: String = trusted
        .call("greeter", "Greeter.Hello", &"Ada".to_owned())
        .await
        .unwrap();
    assert_eq!(reply, "Hello, Ada");

    // Trusting the CA is not enough under mutual TLS: no certificate, no call.
    let anonymous = caller(TlsConfig::default().with_ca(&ca.cert));
    let refused = anonymous
        .request::<String, String>("greeter", "Greeter.Hello")
        .timeout(Duration::from_secs(5))
        .send(&"Eve".to_owned())
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Unavailable, "{refused}");
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_a_service_serving_tls_is_called_by_name_over_tls() {
    a_service_serving_tls_is_called_by_name_over_tls(Wire::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_a_service_serving_tls_is_called_by_name_over_tls() {
    a_service_serving_tls_is_called_by_name_over_tls(Wire::Grpc).await;
}

#[test]
fn the_grpc_transport_reads_its_tls_from_the_environment() {
    let vars = HashMap::from([(CERT_ENV, "/certs/me.pem"), (KEY_ENV, "/certs/me-key.pem")]);
    let config = GrpcConfig::from_lookup(|name| vars.get(name).map(|v| v.to_string())).unwrap();
    assert!(config.tls.serves_tls());
}

/// Under mutual TLS, the verified client certificate says who the caller is:
/// its subject is the account rules decide on, with no token at all.
async fn a_client_certificate_is_the_callers_account(wire: Wire) {
    use micro::auth::{Account, Rule, mtls::CertificateSubjects};
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    let server = ca.issue("orders", &["127.0.0.1"]);
    let billing = ca.issue("billing", &["billing.example"]);
    let stranger = ca.issue("stranger", &["stranger.example"]);
    let registry: DynRegistry = Arc::new(MemoryRegistry::new());
    let server_tls = TlsConfig::default()
        .with_identity(&server.cert, &server.key)
        .with_ca(&ca.cert)
        .with_client_ca(&ca.cert);
    let running = micro::Service::builder("orders")
        .registry(registry.clone())
        .broker(Arc::new(MemoryBroker::new()))
        .transport(transport(wire, server_tls))
        .auth(CertificateSubjects::new().subject(
            "CN=billing",
            Account::new("billing", "mtls").with_scopes(["orders:read"]),
        ))
        .rule(Rule::grant("orders", "Orders.*", "orders:read"))
        .handle("Orders.Who", |ctx, (): ()| async move {
            Ok(ctx.account().map(|account| account.id.clone()))
        })
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let caller = |files: &micro_test_servers::tls::PemFiles| {
        micro::Client::new(
            registry.clone(),
            transport(
                wire,
                TlsConfig::default()
                    .with_identity(&files.cert, &files.key)
                    .with_ca(&ca.cert),
            ),
            Arc::new(MemoryBroker::new()),
        )
    };
    let who: Option<String> = caller(&billing)
        .call("orders", "Orders.Who", &())
        .await
        .unwrap();
    assert_eq!(who.as_deref(), Some("billing"));
    // A certificate the CA signed but the backend does not know: no account.
    let err = caller(&stranger)
        .call::<_, Option<String>>("orders", "Orders.Who", &())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    // A header cannot claim a certificate's identity.
    let err = caller(&stranger)
        .request::<(), Option<String>>("orders", "Orders.Who")
        .metadata("micro-peer-subject", "CN=billing")
        .send(&())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_a_client_certificate_is_the_callers_account() {
    a_client_certificate_is_the_callers_account(Wire::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_a_client_certificate_is_the_callers_account() {
    a_client_certificate_is_the_callers_account(Wire::Grpc).await;
}
