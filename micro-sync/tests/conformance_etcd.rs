//! The conformance suite on the etcd backend, against a real etcd started
//! by `micro-test-servers` (one per test process; cases use fresh names).

use micro_sync::etcd::EtcdCoordinator;
use micro_test_servers::EtcdServer;

async fn etcd() -> Option<EtcdCoordinator> {
    let server = EtcdServer::shared().await?;
    let backend = EtcdCoordinator::builder()
        .endpoints([server.endpoint()])
        .build()
        .await
        .unwrap_or_else(|err| panic!("connecting to etcd: {err}"));
    Some(backend)
}

micro_sync::sync_conformance_tests!(optional: etcd());
