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

/// Publishes through one connection, subscribes through another, as two
/// services do: a subscription must be in force at the server when
/// `subscribe` returns, or a publish from the other connection right after
/// it can overtake it and be lost.
///
/// Every case but two, which promise an order between two connections that
/// core NATS does not give (both hold on one connection, where commands
/// reach the server in order; the crate guide says so):
/// - `unsubscribe_on_drop`: dropping a subscription cannot wait for the
///   server, so until it has read the UNSUB it may still route to a dropped
///   queue-group member what another connection publishes, and at most once
///   loses that (JetStream redelivers what a dropped member never acked);
/// - `no_message_before_subscribe`: a core publish returns once the client
///   holds the message, so one published "before" on another connection may
///   reach the server after the subscription did.
mod core_two_connections {
    use micro_broker::conformance::Split;

    use super::*;

    micro_broker::broker_conformance_tests!(@cases Split {
            publisher: nats_broker!(NatsBroker::builder()),
            subscriber: nats_broker!(NatsBroker::builder()),
        };
        publish_subscribe_round_trip,
        fan_out_to_all_subscribers,
        queue_group_shares_load_without_duplicates_or_loss,
        fan_out_and_queue_groups_together,
        headers_round_trip,
        many_topics,
        messages_in_publish_order_for_one_subscriber,
        slow_subscriber_as_declared,
        manual_ack_and_nack_redelivers,
        wildcard_subscriptions,
        invalid_names_are_rejected,
        dead_letter_after_redelivery_limit,
        durable_subscription_resumes_after_restart,
        replay_from_first_sequence_and_time,
        duplicates_by_message_id_are_delivered_once,
        ordered_by_key_under_parallel_load,
    );
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
