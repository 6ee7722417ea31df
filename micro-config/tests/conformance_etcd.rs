//! The source conformance suite against a real etcd (micro-test-servers),
//! each case under its own random key prefix.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use etcd_client::Client;
use micro_config::{DynSource, EtcdSource, conformance::Fixture};
use micro_test_servers::EtcdServer;

struct Etcd {
    client: Client,
    endpoint: String,
    prefix: String,
    /// The key `corrupt` wrote, removed again by the next `set`.
    broken: Mutex<Option<String>>,
}

impl Etcd {
    async fn new() -> Option<Etcd> {
        let server = EtcdServer::shared().await?;
        let endpoint = server.endpoint();
        let client = Client::connect([endpoint.as_str()], None)
            .await
            .expect("connecting to the test etcd");
        Some(Etcd {
            client,
            endpoint,
            prefix: format!("conf-{:016x}/", rand::random::<u64>()),
            broken: Mutex::new(None),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key.replace('.', "/"))
    }
}

#[async_trait]
impl Fixture for Etcd {
    async fn source(&self) -> DynSource {
        Arc::new(
            EtcdSource::builder()
                .endpoints([self.endpoint.as_str()])
                .prefix(self.prefix.as_str())
                .build()
                .await
                .expect("connecting the etcd source"),
        )
    }

    async fn set(&self, key: &str, value: &str) {
        let broken = self.broken.lock().unwrap().take();
        if let Some(broken) = broken {
            self.client
                .clone()
                .delete(broken, None)
                .await
                .expect("repairing");
        }
        self.client
            .clone()
            .put(self.key(key), value, None)
            .await
            .expect("writing to etcd");
    }

    async fn delete(&self, key: &str) {
        self.client
            .clone()
            .delete(self.key(key), None)
            .await
            .expect("deleting from etcd");
    }

    /// A key below `db/host`, which is a value: no tree holds both.
    async fn corrupt(&self) -> bool {
        let broken = self.key("db.host.broken");
        self.client
            .clone()
            .put(broken.as_str(), "x", None)
            .await
            .expect("writing to etcd");
        *self.broken.lock().unwrap() = Some(broken);
        true
    }
}

mod etcd {
    micro_config::config_conformance_tests!(optional: super::Etcd::new());
}
