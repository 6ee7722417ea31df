//! The conformance suite on the NATS key/value backend, against a real
//! nats-server (JetStream) started by `micro-test-servers`.

use micro_sync::nats::NatsCoordinator;
use micro_test_servers::NatsServer;

async fn nats() -> Option<NatsCoordinator> {
    let server = NatsServer::shared().await?;
    let backend = NatsCoordinator::builder()
        .servers([server.url()])
        .build()
        .await
        .unwrap_or_else(|err| panic!("connecting to nats: {err}"));
    Some(backend)
}

micro_sync::sync_conformance_tests!(optional: nats());
