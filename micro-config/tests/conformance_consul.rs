//! The source conformance suite against the Consul STAND-IN of
//! micro-test-servers (no Consul binary can be installed here; the stand-in
//! follows Consul's documented KV API), each case under its own prefix.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use micro_config::{ConsulSource, DynSource, conformance::Fixture};
use micro_test_servers::ConsulStandIn;

struct Consul {
    stand_in: ConsulStandIn,
    http: reqwest::Client,
    prefix: String,
    broken: Mutex<Option<String>>,
}

impl Consul {
    async fn new() -> Consul {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Consul {
            stand_in: ConsulStandIn::start().await,
            http: reqwest::Client::new(),
            prefix: format!("conf-{:016x}/", rand::random::<u64>()),
            broken: Mutex::new(None),
        }
    }

    fn url(&self, key: &str) -> String {
        format!(
            "{}/v1/kv/{}{}",
            self.stand_in.url(),
            self.prefix,
            key.replace('.', "/")
        )
    }

    async fn send(&self, request: reqwest::RequestBuilder) {
        let response = request.send().await.expect("reaching the Consul stand-in");
        assert!(response.status().is_success(), "{}", response.status());
        assert_eq!(response.text().await.expect("an answer"), "true");
    }
}

#[async_trait]
impl Fixture for Consul {
    async fn source(&self) -> DynSource {
        Arc::new(
            ConsulSource::builder()
                .address(self.stand_in.url())
                .prefix(self.prefix.as_str())
                .wait(Duration::from_secs(5))
                .build()
                .expect("building the Consul source"),
        )
    }

    async fn set(&self, key: &str, value: &str) {
        let broken = self.broken.lock().unwrap().take();
        if let Some(broken) = broken {
            self.send(self.http.delete(self.url(&broken))).await;
        }
        self.send(self.http.put(self.url(key)).body(value.to_owned()))
            .await;
    }

    async fn delete(&self, key: &str) {
        self.send(self.http.delete(self.url(key))).await;
    }

    /// A key below `db/host`, which is a value: no tree holds both.
    async fn corrupt(&self) -> bool {
        let broken = "db.host.broken".to_owned();
        self.send(self.http.put(self.url(&broken)).body("x")).await;
        *self.broken.lock().unwrap() = Some(broken);
        true
    }
}

mod consul {
    micro_config::config_conformance_tests!(super::Consul::new());
}
