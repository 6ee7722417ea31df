//! The source conformance suite against a real nats-server with JetStream
//! (micro-test-servers), each case in its own key/value bucket.

use std::sync::{Arc, Mutex};

use async_nats::jetstream::kv::Store;
use async_trait::async_trait;
use micro_config::{DynSource, NatsSource, conformance::Fixture, nats::NatsSourceConfig};
use micro_test_servers::NatsServer;

struct Nats {
    client: async_nats::Client,
    bucket: String,
    store: Store,
    broken: Mutex<Option<String>>,
}

impl Nats {
    async fn new() -> Option<Nats> {
        let server = NatsServer::shared().await?;
        let client = async_nats::connect(server.url())
            .await
            .expect("connecting to the test nats-server");
        let bucket = format!("conf-{:016x}", rand::random::<u64>());
        let store = async_nats::jetstream::new(client.clone())
            .create_key_value(async_nats::jetstream::kv::Config {
                bucket: bucket.clone(),
                history: 1,
                ..Default::default()
            })
            .await
            .expect("creating the bucket");
        Some(Nats {
            client,
            bucket,
            store,
            broken: Mutex::new(None),
        })
    }
}

#[async_trait]
impl Fixture for Nats {
    async fn source(&self) -> DynSource {
        let mut config = NatsSourceConfig::default();
        config.bucket = self.bucket.clone();
        config.create_bucket = false;
        Arc::new(
            NatsSource::with_client(self.client.clone(), config)
                .await
                .expect("opening the NATS source"),
        )
    }

    async fn set(&self, key: &str, value: &str) {
        let broken = self.broken.lock().unwrap().take();
        if let Some(broken) = broken {
            self.store.delete(broken).await.expect("repairing");
        }
        self.store
            .put(key, value.to_owned().into())
            .await
            .expect("writing to the bucket");
    }

    async fn delete(&self, key: &str) {
        self.store
            .delete(key)
            .await
            .expect("deleting from the bucket");
    }

    /// A key below `db.host`, which is a value: no tree holds both.
    async fn corrupt(&self) -> bool {
        let broken = "db.host.broken".to_owned();
        self.store
            .put(broken.as_str(), "x".into())
            .await
            .expect("writing to the bucket");
        *self.broken.lock().unwrap() = Some(broken);
        true
    }
}

mod nats {
    micro_config::config_conformance_tests!(optional: super::Nats::new());
}
