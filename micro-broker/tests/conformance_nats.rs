//! The broker conformance suite on NATS, against a real nats-server: core
//! NATS, and JetStream (durable, acknowledged) with one stream per topic
//! family and with one configured stream.
//!
//! One server serves the core and per-family cases (`NatsServer::shared`);
//! cases isolate themselves by random topic names. The single-stream layout
//! gets a server of its own, as its stream captures the same subjects as the
//! per-family streams, which JetStream does not allow on one server.

use std::time::Duration;

use micro_broker::nats::{JetStreamConfig, NatsBroker, Storage, StreamLayout};
use micro_test_servers::NatsServer;

/// The shared server's URL, or `None` when nats-server is missing and not required.
async fn server_url() -> Option<String> {
    NatsServer::shared().await.map(|server| server.url())
}

/// A second server, for the single-stream layout.
async fn second_server_url() -> Option<String> {
    static SECOND: tokio::sync::OnceCell<Option<NatsServer>> = tokio::sync::OnceCell::const_new();
    SECOND
        .get_or_init(NatsServer::start)
        .await
        .as_ref()
        .map(NatsServer::url)
}

fn jetstream_settings() -> JetStreamConfig {
    let mut settings = JetStreamConfig::default();
    // Memory storage keeps the suite fast; the fault tests use files.
    settings.storage = Storage::Memory;
    settings.ack_wait = Duration::from_secs(10);
    settings
}

macro_rules! nats_broker {
    ($builder:expr) => {
        nats_broker!($builder, server_url())
    };
    ($builder:expr, $url:expr) => {{
        let Some(url) = $url.await else {
            return;
        };
        match $builder.servers([url]).connect().await {
            Ok(broker) => broker,
            Err(err) => panic!("cannot connect to the test nats-server: {err}"),
        }
    }};
}

mod core {
    use super::*;

    micro_broker::broker_conformance_tests!(nats_broker!(NatsBroker::builder()));
}

mod jetstream_per_family {
    use super::*;

    micro_broker::broker_conformance_tests!(nats_broker!(
        NatsBroker::builder().jetstream(jetstream_settings())
    ));
}

mod jetstream_single_stream {
    use super::*;

    fn single() -> JetStreamConfig {
        let mut settings = jetstream_settings();
        settings.streams = StreamLayout::Single {
            name: "CONFORMANCE_ONE".to_owned(),
            subjects: vec!["conformance.>".to_owned()],
        };
        settings
    }

    micro_broker::broker_conformance_tests!(nats_broker!(
        NatsBroker::builder().jetstream(single()),
        second_server_url()
    ));
}
