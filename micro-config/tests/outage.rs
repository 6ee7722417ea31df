//! Fault tests with real servers: a configuration server that dies under a
//! running `Config` leaves the last good values in force, the failure is
//! reported to watchers where the client library surfaces it, and the source
//! is followed again once the server is back, every one of [`ROUNDS`] times.

use std::time::Duration;

use futures::StreamExt;
use micro_config::{
    Config, ConsulSource, ErrorKind, EtcdSource, NatsSource, WatchStream, nats::NatsSourceConfig,
};
use micro_test_servers::{ConsulStandIn, EtcdServer, NatsServer};

const WAIT: Duration = Duration::from_secs(30);
/// How many times each server is killed and restarted in one test, so that a
/// rare error mapping shows up here rather than in CI.
const ROUNDS: usize = 20;
/// Rounds for NATS: async-nats reconnects and the KV watch comes back on
/// their own schedule, about ten seconds a round, so fewer rounds.
const NATS_ROUNDS: usize = 3;

async fn next<T>(watch: &mut WatchStream<T>, what: &str) -> micro_config::Result<T> {
    tokio::time::timeout(WAIT, watch.next())
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {WAIT:?}"))
        .unwrap_or_else(|| panic!("{what}: the watch ended"))
}

/// The next value, skipping the errors reported while the server was away.
async fn next_value<T>(watch: &mut WatchStream<T>, what: &str) -> T {
    loop {
        match next(watch, what).await {
            Ok(value) => return value,
            Err(err) => println!("{what}: reported while recovering: {err}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn etcd_outage_keeps_the_last_good_values() {
    let Some(etcd) = EtcdServer::start().await else {
        return;
    };
    let mut client = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .expect("connecting to etcd");
    client.put("app/db/host", "primary", None).await.unwrap();
    let source = EtcdSource::builder()
        .endpoints([etcd.endpoint()])
        .prefix("app/")
        .connect_timeout(Duration::from_secs(2))
        .build()
        .await
        .expect("connecting the source");
    let config = Config::builder().source(source).build().await.unwrap();
    let mut hosts = config.watch::<String>("db.host");

    let mut last = "primary".to_owned();
    for round in 0..ROUNDS {
        etcd.kill().await;
        let error = next(&mut hosts, "the outage")
            .await
            .expect_err("the watch reports the lost server");
        assert_eq!(
            error.kind(),
            ErrorKind::Unavailable,
            "round {round}: {error}"
        );
        assert_eq!(config.get::<String>("db.host").unwrap(), last);

        etcd.restart().await;
        let mut client = etcd_client::Client::connect([etcd.endpoint()], None)
            .await
            .expect("connecting to etcd again");
        last = format!("secondary-{round}");
        client
            .put("app/db/host", last.as_str(), None)
            .await
            .unwrap();
        assert_eq!(
            next_value(&mut hosts, "the change after the restart").await,
            last
        );
        assert_eq!(config.get::<String>("db.host").unwrap(), last);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn consul_outage_keeps_the_last_good_values() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let consul = ConsulStandIn::start().await;
    let http = reqwest::Client::new();
    let put = |value: String| {
        http.put(format!("{}/v1/kv/app/db/host", consul.url()))
            .body(value)
            .send()
    };
    assert!(
        put("primary".to_owned())
            .await
            .unwrap()
            .status()
            .is_success()
    );
    let source = ConsulSource::builder()
        .address(consul.url())
        .prefix("app/")
        .wait(Duration::from_secs(2))
        .build()
        .unwrap();
    let config = Config::builder().source(source).build().await.unwrap();
    let mut hosts = config.watch::<String>("db.host");

    let mut last = "primary".to_owned();
    for round in 0..ROUNDS {
        consul.kill().await;
        let error = next(&mut hosts, "the outage")
            .await
            .expect_err("the watch reports the lost agent");
        assert_eq!(
            error.kind(),
            ErrorKind::Unavailable,
            "round {round}: {error}"
        );
        assert_eq!(config.get::<String>("db.host").unwrap(), last);

        consul.restart().await;
        last = format!("secondary-{round}");
        assert!(put(last.clone()).await.unwrap().status().is_success());
        assert_eq!(
            next_value(&mut hosts, "the change after the restart").await,
            last
        );
    }
}

/// async-nats reconnects by itself; whether the KV watch reports the outage
/// (as a missed heartbeat) depends on how long it lasts, so this test checks
/// what a user can rely on: the last good values during the outage and the
/// changes after it.
#[tokio::test(flavor = "multi_thread")]
async fn nats_outage_keeps_the_last_good_values() {
    let Some(nats) = NatsServer::start().await else {
        return;
    };
    let mut config_of_source = NatsSourceConfig::default();
    config_of_source.connection.servers = vec![nats.url()];
    config_of_source.bucket = "outage".to_owned();
    let source = NatsSource::connect(config_of_source)
        .await
        .expect("connecting");
    source
        .store()
        .put("db.host", "primary".into())
        .await
        .unwrap();
    let config = Config::builder()
        .source(source.clone())
        .build()
        .await
        .unwrap();
    assert_eq!(config.get::<String>("db.host").unwrap(), "primary");
    let mut hosts = config.watch::<String>("db.host");

    let mut last = "primary".to_owned();
    for round in 0..NATS_ROUNDS {
        nats.kill().await;
        assert_eq!(config.get::<String>("db.host").unwrap(), last);
        nats.restart().await;

        // The source's own connection reconnects; write through it.
        last = format!("secondary-{round}");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match source.store().put("db.host", last.clone().into()).await {
                Ok(_) => break,
                Err(err) if tokio::time::Instant::now() < deadline => {
                    println!("writing after the restart: {err}; once more when reconnected");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) => panic!("cannot write after the restart: {err}"),
            }
        }
        assert_eq!(
            next_value(&mut hosts, "the change after the restart").await,
            last
        );
    }
}
