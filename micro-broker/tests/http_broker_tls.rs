//! The HTTP broker over TLS: a subscriber whose endpoint has a certificate
//! registers so, and publishers deliver to it over TLS, verifying it; a
//! publisher that does not trust its CA cannot deliver.

use std::time::Duration;

use futures::StreamExt;
use micro_broker::{Broker, Message, SubscribeOptions, http::HttpBroker, http::HttpConfig};
use micro_registry::{MemoryRegistry, Registry};
use micro_test_servers::tls::TestCa;
use micro_transport::tls::TlsConfig;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

fn broker(registry: &MemoryRegistry, tls: TlsConfig) -> HttpBroker {
    let mut config = HttpConfig::default();
    config.tls = tls;
    HttpBroker::builder(registry.clone()).config(config).build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_to_a_tls_endpoint_are_verified() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    let server = ca.issue("subscriber", &["127.0.0.1"]);
    let registry = MemoryRegistry::new();
    let subscriber = broker(
        &registry,
        TlsConfig::default()
            .with_identity(&server.cert, &server.key)
            .with_ca(&ca.cert),
    );
    let mut subscription = subscriber
        .subscribe("orders", &SubscribeOptions::fanout())
        .await
        .unwrap();
    let nodes = &registry.get_service("micro.broker").await.unwrap()[0].nodes;
    assert_eq!(nodes[0].metadata.get("tls"), Some("true"));

    let trusting = broker(&registry, TlsConfig::default().with_ca(&ca.cert));
    trusting
        .publish("orders", Message::new("over tls"))
        .await
        .unwrap();
    let delivery = timeout(WAIT, subscription.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(delivery.message.body, "over tls");

    let other_ca = TestCa::new(dir.path(), "other-ca");
    let distrustful = broker(&registry, TlsConfig::default().with_ca(&other_ca.cert));
    let err = distrustful
        .publish("orders", Message::new("refused"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), micro_broker::ErrorKind::Unavailable, "{err}");
    assert!(
        timeout(Duration::from_millis(300), subscription.next())
            .await
            .is_err(),
        "a message arrived from a publisher that could not verify the endpoint"
    );
}
