//! The broker conformance suite: the behaviour every [`Broker`] backend must show.
//!
//! Each case is a `pub async fn` taking `&dyn Broker` and panicking when the
//! backend misbehaves. Every case works on fresh random topic names and drops
//! its subscriptions before returning, so cases can share one broker and run
//! in parallel. Cases for optional behaviour look at
//! [`Broker::capabilities`]: where the capability is missing they check that
//! asking for it fails with [`ErrorKind::Unimplemented`] (where that can be
//! asked), print a loud `SKIPPED` line and return.
//!
//! [`broker_conformance_tests!`](crate::broker_conformance_tests) expands into
//! one `#[tokio::test]` per case, each with a fresh broker. A backend crate
//! runs the whole suite with one line (it needs `tokio` with the `macros` and
//! `rt-multi-thread` features among its dev-dependencies, and this crate's
//! `conformance` feature):
//!
//! ```
//! mod memory {
//!     micro_broker::broker_conformance_tests!(micro_broker::memory::MemoryBroker::new());
//! }
//! # fn main() {}
//! ```
//!
//! No case measures durations. "Held back" means a publish future is still
//! pending after a short wait; everything else waits for the expected event
//! with a generous timeout, so a slow machine makes the suite slower, never
//! flaky.

use std::{
    collections::{BTreeMap, HashSet},
    future::Future,
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};
use tokio::time::timeout;

use crate::{Broker, Delivery, ErrorKind, Message, Result, SubscribeOptions, Subscription};

mod durable;
pub use durable::{
    dead_letter_after_redelivery_limit, duplicates_by_message_id_are_delivered_once,
    durable_subscription_resumes_after_restart, replay_from_first_sequence_and_time,
};

/// How long to wait for something that must happen.
const WAIT: Duration = Duration::from_secs(10);
/// How long a publish must stay pending to count as held back.
const HELD_BACK: Duration = Duration::from_millis(200);
/// Publishes to a subscriber that never reads before back-pressure must show.
const MAX_UNREAD: usize = 100_000;
/// Publishes to a subscriber that never reads when the backend declares no
/// back-pressure: enough to overflow any sensible buffer.
const UNREAD_WITHOUT_BACKPRESSURE: usize = 5_000;

/// A subscriber receives a published message with its body and concrete topic.
pub async fn publish_subscribe_round_trip(broker: &dyn Broker) {
    let topic = fresh_topic("round_trip");
    let mut sub = subscribe(broker, &topic, &SubscribeOptions::fanout()).await;
    assert_eq!(sub.topic(), topic, "Subscription::topic");

    publish(broker, &topic, Message::new("hello")).await;

    let delivery = next(&mut sub, "the published message").await;
    assert_eq!(delivery.topic, topic, "delivery topic");
    assert_eq!(delivery.message.body, "hello", "delivery body");
    assert!(
        !delivery.needs_ack(),
        "a delivery without manual ack must not wait for an ack"
    );
}

/// Every plain subscriber receives every message, in publish order.
pub async fn fan_out_to_all_subscribers(broker: &dyn Broker) {
    const SUBSCRIBERS: usize = 3;
    const MESSAGES: usize = 10;
    let topic = fresh_topic("fan_out");
    let mut subs = Vec::new();
    for _ in 0..SUBSCRIBERS {
        subs.push(subscribe(broker, &topic, &SubscribeOptions::fanout()).await);
    }

    let publishing = publish_numbered(broker, &topic, MESSAGES);
    let receiving = async {
        // Round by round, so no subscriber's buffer holds the publisher back
        // while another is being read.
        for i in 0..MESSAGES {
            for (index, sub) in subs.iter_mut().enumerate() {
                let delivery = next(sub, &format!("message {i} at subscriber {index}")).await;
                assert_eq!(body(&delivery), i.to_string(), "subscriber {index}");
            }
        }
    };
    futures::join!(publishing, receiving);
}

/// A queue group delivers each message to exactly one member, several members
/// take part, and nothing is lost.
pub async fn queue_group_shares_load_without_duplicates_or_loss(broker: &dyn Broker) {
    const MEMBERS: usize = 3;
    const MESSAGES: usize = 300;
    let topic = fresh_topic("queue_group");
    let group = fresh_name("workers");
    if !broker.capabilities().queue_groups {
        expect_unimplemented(broker, &topic, &SubscribeOptions::queue(&group)).await;
        skip(
            broker,
            "queue_group_shares_load_without_duplicates_or_loss",
            "queue_groups",
        );
        return;
    }
    let mut members = Vec::new();
    for _ in 0..MEMBERS {
        members.push(subscribe(broker, &topic, &SubscribeOptions::queue(&group)).await);
    }
    let mut merged = merge(members);

    let publishing = publish_numbered(broker, &topic, MESSAGES);
    let receiving = async {
        let mut received = Vec::new();
        for _ in 0..MESSAGES {
            let (member, delivery) = next_merged(&mut merged, "a queue group message").await;
            received.push((member, body(&delivery)));
        }
        received
    };
    let ((), received) = futures::join!(publishing, receiving);

    let mut times_received = BTreeMap::new();
    for (_, body) in &received {
        *times_received.entry(body.clone()).or_insert(0_usize) += 1;
    }
    for i in 0..MESSAGES {
        let count = times_received.get(&i.to_string()).copied().unwrap_or(0);
        assert_eq!(count, 1, "message {i} must reach exactly one member");
    }
    assert_eq!(
        times_received.len(),
        MESSAGES,
        "unexpected messages received"
    );
    let busy: HashSet<usize> = received.iter().map(|(member, _)| *member).collect();
    assert!(
        busy.len() > 1,
        "only member(s) {busy:?} of {MEMBERS} received messages: a queue group must share the load"
    );
}

/// Plain subscribers and queue groups on one topic each get what they asked
/// for: every plain subscriber every message, every group each message once.
pub async fn fan_out_and_queue_groups_together(broker: &dyn Broker) {
    const MESSAGES: usize = 20;
    let topic = fresh_topic("fan_out_and_groups");
    if !broker.capabilities().queue_groups {
        skip(broker, "fan_out_and_queue_groups_together", "queue_groups");
        return;
    }
    let (group_a, group_b) = (fresh_name("a"), fresh_name("b"));
    let mut plain = subscribe(broker, &topic, &SubscribeOptions::fanout()).await;
    let mut pair = Vec::new();
    for _ in 0..2 {
        pair.push(subscribe(broker, &topic, &SubscribeOptions::queue(&group_a)).await);
    }
    let mut pair = merge(pair);
    let mut single = subscribe(broker, &topic, &SubscribeOptions::queue(&group_b)).await;

    let publishing = publish_numbered(broker, &topic, MESSAGES);
    let receiving = async {
        let mut pair_received = Vec::new();
        for i in 0..MESSAGES {
            let delivery = next(&mut plain, "a message for the plain subscriber").await;
            assert_eq!(body(&delivery), i.to_string(), "plain subscriber");
            let delivery = next(&mut single, "a message for the one-member group").await;
            assert_eq!(body(&delivery), i.to_string(), "one-member group");
            let (_, delivery) = next_merged(&mut pair, "a message for the two-member group").await;
            pair_received.push(body(&delivery));
        }
        pair_received
    };
    let ((), mut pair_received) = futures::join!(publishing, receiving);
    pair_received.sort_by_key(|body| body.parse::<usize>().unwrap_or(usize::MAX));
    let expected: Vec<String> = (0..MESSAGES).map(|i| i.to_string()).collect();
    assert_eq!(
        pair_received, expected,
        "the two-member group must get each message exactly once"
    );
}

/// Headers and binary bodies arrive exactly as sent.
pub async fn headers_round_trip(broker: &dyn Broker) {
    let topic = fresh_topic("headers");
    let mut sub = subscribe(broker, &topic, &SubscribeOptions::fanout()).await;
    let binary: Vec<u8> = (0..=255).collect();
    let with_headers = Message::new(binary)
        .with_header("Content-Type", "application/json")
        .with_header("x-trace-id", "4bf92f3577b34da6a3ce929d0e0e4736")
        .with_header("x-spaces", "a value  with spaces")
        .with_header("x-unicode", "grüße ✓")
        .with_header("x-punctuation", "a=b; c, d: \"e\"");
    let without_headers = Message::new("no headers");

    let publishing = async {
        publish(broker, &topic, with_headers.clone()).await;
        publish(broker, &topic, without_headers.clone()).await;
    };
    let receiving = async {
        let delivery = next(&mut sub, "the message with headers").await;
        assert_eq!(delivery.message, with_headers, "message with headers");
        assert_eq!(
            delivery.message.headers.get("content-type"),
            Some("application/json"),
            "header keys are case-insensitive"
        );
        let delivery = next(&mut sub, "the message without headers").await;
        assert_eq!(delivery.message, without_headers, "message without headers");
    };
    futures::join!(publishing, receiving);
}

/// Dropping a subscription unsubscribes: publishing goes on without blocking
/// or failing, and messages stop going to the dropped subscriber (a queue
/// group then gives every message to the members left).
pub async fn unsubscribe_on_drop(broker: &dyn Broker) {
    const AFTER: usize = 20;
    let topic = fresh_topic("unsubscribe");
    let mut kept = subscribe(broker, &topic, &SubscribeOptions::fanout()).await;
    let mut dropped = subscribe(broker, &topic, &SubscribeOptions::fanout()).await;
    publish(broker, &topic, Message::new("before")).await;
    assert_eq!(body(&next(&mut kept, "the first message").await), "before");
    assert_eq!(
        body(&next(&mut dropped, "the first message").await),
        "before"
    );
    drop(dropped);

    let publishing = publish_numbered(broker, &topic, AFTER);
    let receiving = async {
        for i in 0..AFTER {
            let delivery = next(&mut kept, "a message after the drop").await;
            assert_eq!(body(&delivery), i.to_string(), "kept subscriber");
        }
    };
    futures::join!(publishing, receiving);

    if !broker.capabilities().queue_groups {
        skip(
            broker,
            "unsubscribe_on_drop (queue group part)",
            "queue_groups",
        );
        return;
    }
    let group = fresh_name("leavers");
    let leaver = subscribe(broker, &topic, &SubscribeOptions::queue(&group)).await;
    let mut stayer = subscribe(broker, &topic, &SubscribeOptions::queue(&group)).await;
    drop(leaver);
    let publishing = publish_numbered(broker, &topic, AFTER);
    let receiving = async {
        for i in 0..AFTER {
            let delivery = next(&mut stayer, "a message for the member left").await;
            assert_eq!(
                body(&delivery),
                i.to_string(),
                "the group member left must get every message"
            );
            let delivery = next(&mut kept, "a message after the drop").await;
            assert_eq!(body(&delivery), i.to_string(), "kept subscriber");
        }
    };
    futures::join!(publishing, receiving);
}

/// A hundred topics, one subscriber each: every subscriber gets the messages
/// of its own topic and nothing else.
pub async fn many_topics(broker: &dyn Broker) {
    const TOPICS: usize = 100;
    let prefix = fresh_topic("many_topics");
    let topics: Vec<String> = (0..TOPICS).map(|i| format!("{prefix}.t{i}")).collect();
    let mut subs = Vec::new();
    for topic in &topics {
        subs.push(subscribe(broker, topic, &SubscribeOptions::fanout()).await);
    }

    // Forward, then backward: a message that leaked to another topic's
    // subscriber would show up in place of that subscriber's own.
    let forward: Vec<usize> = (0..TOPICS).collect();
    let backward: Vec<usize> = (0..TOPICS).rev().collect();
    for (round, order) in [forward, backward].into_iter().enumerate() {
        let publishing = async {
            for &i in &order {
                publish(broker, &topics[i], Message::new(format!("{round}:{i}"))).await;
            }
        };
        let receiving = async {
            for &i in &order {
                let delivery = next(&mut subs[i], &format!("round {round} on topic {i}")).await;
                assert_eq!(delivery.topic, topics[i], "round {round}, topic {i}");
                assert_eq!(
                    body(&delivery),
                    format!("{round}:{i}"),
                    "round {round}, topic {i}"
                );
            }
        };
        futures::join!(publishing, receiving);
    }
}

/// One subscriber receives one publisher's messages in publish order.
pub async fn messages_in_publish_order_for_one_subscriber(broker: &dyn Broker) {
    const MESSAGES: usize = 500;
    let topic = fresh_topic("order");
    let mut sub = subscribe(broker, &topic, &SubscribeOptions::fanout()).await;
    let publishing = publish_numbered(broker, &topic, MESSAGES);
    let receiving = async {
        for i in 0..MESSAGES {
            let delivery = next(&mut sub, &format!("message {i}")).await;
            assert_eq!(body(&delivery), i.to_string(), "publish order");
        }
    };
    futures::join!(publishing, receiving);
}

/// A subscriber that does not read behaves as [`Capabilities::backpressure`](crate::Capabilities::backpressure)
/// declares. With back-pressure, the publisher is held back once the
/// subscriber's buffer is full, resumes when it drains, and nothing is lost.
/// Without, publishing is never held back: each publish either succeeds or
/// fails with [`ErrorKind::ResourceExhausted`].
pub async fn slow_subscriber_as_declared(broker: &dyn Broker) {
    let topic = fresh_topic("slow_subscriber");
    let mut slow = subscribe(broker, &topic, &SubscribeOptions::fanout()).await;
    if !broker.capabilities().backpressure {
        for i in 0..UNREAD_WITHOUT_BACKPRESSURE {
            match timeout(WAIT, broker.publish(&topic, Message::new(i.to_string()))).await {
                Err(_) => panic!(
                    "publish {i} was held back for {WAIT:?}, but `{}` declares no back-pressure",
                    broker.scheme()
                ),
                Ok(Ok(())) => {}
                Ok(Err(err)) => assert_eq!(
                    err.kind(),
                    ErrorKind::ResourceExhausted,
                    "publish {i} to a full subscriber: {err}"
                ),
            }
        }
        skip(
            broker,
            "slow_subscriber_as_declared (back-pressure part)",
            "backpressure",
        );
        return;
    }

    let mut held_back = None;
    for i in 0..MAX_UNREAD {
        let mut publishing = Box::pin(broker.publish(&topic, Message::new(i.to_string())));
        match timeout(HELD_BACK, &mut publishing).await {
            Ok(result) => check(result, &format!("publish {i}")),
            Err(_) => {
                held_back = Some((i, publishing));
                break;
            }
        }
    }
    let Some((last, publishing)) = held_back else {
        panic!(
            "`{}` declares back-pressure, but {MAX_UNREAD} publishes to a subscriber that \
             never reads were never held back",
            broker.scheme()
        );
    };

    assert_eq!(body(&next(&mut slow, "the oldest message").await), "0");
    match timeout(WAIT, publishing).await {
        Ok(result) => check(result, &format!("held-back publish {last}")),
        Err(_) => panic!("publish {last} stayed held back after the subscriber made room"),
    }
    for i in 1..=last {
        let delivery = next(&mut slow, &format!("message {i} of {last}")).await;
        assert_eq!(body(&delivery), i.to_string(), "nothing lost, in order");
    }
}

/// With manual ack, `nack` redelivers (at once, and after a delay: not
/// before it), `ack` settles for good; in a queue group the redelivery goes to a member.
pub async fn manual_ack_and_nack_redelivers(broker: &dyn Broker) {
    let topic = fresh_topic("manual_ack");
    let manual = SubscribeOptions::fanout().with_manual_ack();
    if !broker.capabilities().manual_ack {
        expect_unimplemented(broker, &topic, &manual).await;
        skip(broker, "manual_ack_and_nack_redelivers", "manual_ack");
        return;
    }
    let mut sub = subscribe(broker, &topic, &manual).await;
    let job = Message::new("job").with_header("x-job-id", "42");
    publish(broker, &topic, job.clone()).await;

    let mut first = next(&mut sub, "the first delivery").await;
    assert!(first.needs_ack(), "manual-ack deliveries need an ack");
    assert_eq!(first.message, job);
    check(first.nack(None).await, "nack(None)");

    let mut second = next(&mut sub, "the redelivery after nack(None)").await;
    assert_eq!(second.message, job, "redelivered message");
    assert_eq!(second.topic, topic, "redelivered topic");
    assert!(second.needs_ack(), "a redelivery needs an ack too");
    // The delay is a lower bound: the redelivery must not come sooner. (No
    // upper bound is asserted beyond `next`'s patience: machines are shared.)
    let delay = Duration::from_millis(250);
    let nacked_at = Instant::now();
    check(second.nack(Some(delay)).await, "nack(250ms)");

    let mut third = next(&mut sub, "the redelivery after nack(250ms)").await;
    let waited = nacked_at.elapsed();
    assert!(
        waited >= delay,
        "nack({delay:?}) redelivered after only {waited:?}"
    );
    assert_eq!(third.message, job, "redelivered message");
    check(third.ack().await, "ack");

    publish(broker, &topic, Message::new("next")).await;
    let mut after = next(&mut sub, "the message after the ack").await;
    assert_eq!(body(&after), "next", "an acked message must not come back");
    check(after.ack().await, "ack");

    if !broker.capabilities().queue_groups {
        skip(
            broker,
            "manual_ack_and_nack_redelivers (queue group part)",
            "queue_groups",
        );
        return;
    }
    let topic = fresh_topic("manual_ack_group");
    let group = fresh_name("ackers");
    let in_group = SubscribeOptions::queue(&group).with_manual_ack();
    let mut members = Vec::new();
    for _ in 0..2 {
        members.push(subscribe(broker, &topic, &in_group).await);
    }
    let mut members = merge(members);
    publish(broker, &topic, Message::new("work")).await;
    let (_, mut delivery) = next_merged(&mut members, "the group delivery").await;
    assert!(delivery.needs_ack());
    check(delivery.nack(None).await, "nack(None) in a group");
    let (_, mut redelivery) = next_merged(&mut members, "the group redelivery").await;
    assert_eq!(body(&redelivery), "work", "group redelivery");
    check(redelivery.ack().await, "ack in a group");

    publish(broker, &topic, Message::new("more")).await;
    let (_, mut more) = next_merged(&mut members, "the group message after the ack").await;
    assert_eq!(
        body(&more),
        "more",
        "an acked group message must not come back"
    );
    check(more.ack().await, "ack in a group");
}

/// `*` matches exactly one token, `>` one or more trailing tokens, and
/// deliveries name the concrete topic.
pub async fn wildcard_subscriptions(broker: &dyn Broker) {
    if !broker.capabilities().wildcards {
        skip(broker, "wildcard_subscriptions", "wildcards");
        return;
    }
    let prefix = fresh_topic("wildcards");
    let mut one = subscribe(broker, &format!("{prefix}.*"), &SubscribeOptions::fanout()).await;
    let mut many = subscribe(broker, &format!("{prefix}.>"), &SubscribeOptions::fanout()).await;
    let mut middle = subscribe(
        broker,
        &format!("{prefix}.*.created"),
        &SubscribeOptions::fanout(),
    )
    .await;

    let published: Vec<String> = ["a", "a.b", "", "x.created", "x.deleted", "z", "y.created"]
        .iter()
        .map(|suffix| match *suffix {
            "" => prefix.clone(),
            suffix => format!("{prefix}.{suffix}"),
        })
        .collect();
    let publishing = async {
        for topic in &published {
            publish(broker, topic, Message::new(topic.clone())).await;
        }
    };
    let expectations = [
        ("`*`", &mut one, vec!["a", "z"]),
        (
            "`>`",
            &mut many,
            vec!["a", "a.b", "x.created", "x.deleted", "z", "y.created"],
        ),
        ("`*.created`", &mut middle, vec!["x.created", "y.created"]),
    ];
    // Each subscriber is read by its own future, so a small buffer at one of
    // them never holds the publisher back while another is being read.
    let receiving = expectations.map(|(name, sub, suffixes)| {
        let prefix = &prefix;
        async move {
            for suffix in suffixes {
                let expected = format!("{prefix}.{suffix}");
                let delivery = next(sub, &format!("{expected} at the {name} subscriber")).await;
                assert_eq!(
                    delivery.topic, expected,
                    "{name} subscriber: delivery topic"
                );
                assert_eq!(body(&delivery), expected, "{name} subscriber: body");
            }
        }
    });
    futures::join!(publishing, futures::future::join_all(receiving));
}

/// A subscriber does not receive messages published before it subscribed.
pub async fn no_message_before_subscribe(broker: &dyn Broker) {
    let topic = fresh_topic("before_subscribe");
    publish(broker, &topic, Message::new("before")).await;
    let mut sub = subscribe(broker, &topic, &SubscribeOptions::fanout()).await;
    publish(broker, &topic, Message::new("after")).await;
    let delivery = next(&mut sub, "the message published after subscribing").await;
    assert_eq!(
        body(&delivery),
        "after",
        "a message published before the subscription was delivered"
    );
}

/// Malformed topics, patterns and group names fail with
/// [`ErrorKind::InvalidArgument`]; publishing to a wildcard does too.
pub async fn invalid_names_are_rejected(broker: &dyn Broker) {
    let topic = fresh_topic("invalid");
    for bad in ["", "a..b", ".a", "a.", "a b", "a.*", "a.>"] {
        let result = timeout(WAIT, broker.publish(bad, Message::new("x"))).await;
        let Ok(result) = result else {
            panic!("publish to {bad:?} hung");
        };
        expect_kind(
            result,
            ErrorKind::InvalidArgument,
            &format!("publish to {bad:?}"),
        );
    }
    for bad in ["", "a..b", "a b", "a.>.b"] {
        let result = broker.subscribe(bad, &SubscribeOptions::fanout()).await;
        expect_kind(
            result,
            ErrorKind::InvalidArgument,
            &format!("subscribe to {bad:?}"),
        );
    }
    if broker.capabilities().queue_groups {
        for bad in ["", "two words"] {
            let result = broker
                .subscribe(&topic, &SubscribeOptions::queue(bad))
                .await;
            expect_kind(
                result,
                ErrorKind::InvalidArgument,
                &format!("queue group {bad:?}"),
            );
        }
    }
}

/// Keyed ordered processing ([`crate::keyed`]) on this broker: under parallel
/// load with random handler delays, each key's messages are handled exactly
/// once, strictly in publish order and never two at a time, while different
/// keys really run in parallel (two keys must meet inside their handlers) and
/// no more than the configured number of handlers run at once. With
/// [`Capabilities::manual_ack`](crate::Capabilities::manual_ack) the same load
/// runs again with manual acknowledgement (acked by the pool after each
/// handler; parallelism is then not required, as a broker may allow a single
/// unacknowledged message).
pub async fn ordered_by_key_under_parallel_load(broker: &dyn Broker) {
    ordered_by_key_run(broker, SubscribeOptions::fanout(), true).await;
    if !broker.capabilities().manual_ack {
        skip(
            broker,
            "ordered_by_key_under_parallel_load (manual ack part)",
            "manual_ack",
        );
        return;
    }
    ordered_by_key_run(broker, SubscribeOptions::fanout().with_manual_ack(), false).await;
}

async fn ordered_by_key_run(broker: &dyn Broker, options: SubscribeOptions, meet: bool) {
    use std::sync::{Arc, Mutex, PoisonError};

    use rand::seq::SliceRandom;

    use crate::keyed::OrderedExt;

    const KEYS: usize = 24;
    const PER_KEY: usize = 25;
    const CONCURRENCY: usize = 8;

    #[derive(Default)]
    struct Seen {
        order: Vec<Vec<usize>>,
        busy: HashSet<usize>,
        running: usize,
        max_running: usize,
        handled: usize,
        faults: Vec<String>,
    }

    let topic = fresh_topic("ordered_by_key");
    let sub = subscribe(broker, &topic, &options).await;
    let seen = Arc::new(Mutex::new(Seen {
        order: vec![Vec::new(); KEYS],
        ..Seen::default()
    }));
    let meeting = Arc::new(tokio::sync::Barrier::new(2));
    let (done_tx, done_rx) = tokio::sync::watch::channel(0_usize);
    let handler = {
        let seen = Arc::clone(&seen);
        move |delivery: Delivery| {
            let seen = Arc::clone(&seen);
            let meeting = Arc::clone(&meeting);
            let done_tx = done_tx.clone();
            async move {
                let field = |name: &str| {
                    delivery
                        .message
                        .headers
                        .get(name)
                        .and_then(|value| value.parse::<usize>().ok())
                };
                let (Some(key), Some(seq)) = (field("x-key"), field("x-seq")) else {
                    panic!("a keyed message lost its x-key/x-seq headers: {delivery:?}");
                };
                {
                    let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
                    if !seen.busy.insert(key) {
                        seen.faults.push(format!(
                            "key {key}: message {seq} started while another of the same key ran"
                        ));
                    }
                    seen.running += 1;
                    seen.max_running = seen.max_running.max(seen.running);
                    seen.order[key].push(seq);
                }
                if meet && seq == 0 && key < 2 && timeout(WAIT, meeting.wait()).await.is_err() {
                    let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
                    seen.faults.push(format!(
                        "the first messages of keys 0 and 1 never ran at the same time within {WAIT:?}: \
                         different keys must run in parallel"
                    ));
                }
                let pause = Duration::from_micros(rand::random_range(0..2_000));
                tokio::time::sleep(pause).await;
                let handled = {
                    let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
                    seen.busy.remove(&key);
                    seen.running -= 1;
                    seen.handled += 1;
                    seen.handled
                };
                done_tx.send_replace(handled);
                Ok(())
            }
        }
    };
    let consumer = tokio::spawn(
        sub.ordered_by(|delivery: &Delivery| {
            delivery
                .message
                .headers
                .get("x-key")
                .unwrap_or_default()
                .to_owned()
        })
        .concurrency(CONCURRENCY)
        .handle(handler),
    );

    let mut schedule: Vec<usize> = (0..KEYS).flat_map(|key| [key; PER_KEY]).collect();
    schedule.shuffle(&mut rand::rng());
    let publishing = async {
        let mut next_seq = [0_usize; KEYS];
        for key in schedule {
            let seq = next_seq[key];
            next_seq[key] += 1;
            let message = Message::new(format!("{key}:{seq}"))
                .with_header("x-key", key.to_string())
                .with_header("x-seq", seq.to_string());
            publish(broker, &topic, message).await;
        }
    };
    let waiting = async {
        let mut done = done_rx.clone();
        let all = KEYS * PER_KEY;
        let reached = timeout(WAIT * 3, done.wait_for(|handled| *handled >= all))
            .await
            .is_ok_and(|waited| waited.is_ok());
        if !reached {
            panic!(
                "only {} of {all} keyed messages were handled",
                *done.borrow()
            );
        }
    };
    futures::join!(publishing, waiting);
    consumer.abort();

    let seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
    assert!(seen.faults.is_empty(), "{}", seen.faults.join("\n"));
    let expected: Vec<usize> = (0..PER_KEY).collect();
    for (key, order) in seen.order.iter().enumerate() {
        assert_eq!(
            order, &expected,
            "key {key}: messages must be handled once each, in publish order ({options:?})"
        );
    }
    assert!(
        seen.max_running <= CONCURRENCY,
        "{} handlers ran at once with concurrency {CONCURRENCY}",
        seen.max_running
    );
}

/// Expands into one `#[tokio::test(flavor = "multi_thread")]` per conformance
/// case, each calling the case with a fresh broker built by `$make` (any
/// expression whose value is a [`Broker`]; it may use `.await`).
///
/// Put each invocation in its own module so test names stay unique:
///
/// ```
/// use std::sync::Arc;
///
/// use micro_broker::{DynBroker, memory::MemoryBroker};
///
/// mod memory {
///     micro_broker::broker_conformance_tests!(micro_broker::memory::MemoryBroker::new());
/// }
///
/// mod arc_dyn {
///     use super::*;
///
///     micro_broker::broker_conformance_tests!(Arc::new(MemoryBroker::new()) as DynBroker);
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! broker_conformance_tests {
    (@cases $make:expr; $($case:ident,)+) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $case() {
                let broker = $make;
                $crate::conformance::$case(&broker).await;
            }
        )+
    };
    ($make:expr) => {
        $crate::broker_conformance_tests!(@cases $make;
            publish_subscribe_round_trip,
            fan_out_to_all_subscribers,
            queue_group_shares_load_without_duplicates_or_loss,
            fan_out_and_queue_groups_together,
            headers_round_trip,
            unsubscribe_on_drop,
            many_topics,
            messages_in_publish_order_for_one_subscriber,
            slow_subscriber_as_declared,
            manual_ack_and_nack_redelivers,
            wildcard_subscriptions,
            no_message_before_subscribe,
            invalid_names_are_rejected,
            dead_letter_after_redelivery_limit,
            durable_subscription_resumes_after_restart,
            replay_from_first_sequence_and_time,
            duplicates_by_message_id_are_delivered_once,
            ordered_by_key_under_parallel_load,
        );
    };
}

/// Two instances of a backend as one broker: publishes go through
/// `publisher`, subscriptions through `subscriber`. Run the suite on it to
/// hold a backend to its promises across instances (two services, two
/// connections): what is published after `subscribe` returns reaches the
/// subscriber even when it was published through another instance.
///
/// ```
/// mod two_instances {
///     use micro_broker::{conformance::Split, memory::MemoryBroker};
///
///     fn split() -> Split<MemoryBroker, MemoryBroker> {
///         let shared = MemoryBroker::new();
///         Split { publisher: shared.clone(), subscriber: shared }
///     }
///
///     micro_broker::broker_conformance_tests!(split());
/// }
/// # fn main() {}
/// ```
#[derive(Debug)]
pub struct Split<P, S> {
    /// Publishes (and flushes).
    pub publisher: P,
    /// Subscribes.
    pub subscriber: S,
}

#[async_trait::async_trait]
impl<P: Broker, S: Broker> Broker for Split<P, S> {
    fn scheme(&self) -> &'static str {
        self.publisher.scheme()
    }
    fn capabilities(&self) -> crate::Capabilities {
        self.publisher.capabilities()
    }
    async fn publish(&self, topic: &str, message: Message) -> Result<()> {
        self.publisher.publish(topic, message).await
    }
    async fn subscribe(&self, topic: &str, options: &SubscribeOptions) -> Result<Subscription> {
        self.subscriber.subscribe(topic, options).await
    }
    async fn flush(&self) -> Result<()> {
        self.publisher.flush().await
    }
}

fn fresh_name(purpose: &str) -> String {
    format!("{purpose}-{:016x}", rand::random::<u64>())
}

fn fresh_topic(case: &str) -> String {
    format!("conformance.{case}.{:016x}", rand::random::<u64>())
}

fn skip(broker: &dyn Broker, case: &str, capability: &str) {
    eprintln!(
        "\n*** SKIPPED broker conformance case `{case}` on `{}`: the backend does not declare \
         the `{capability}` capability ***\n",
        broker.scheme()
    );
}

fn body(delivery: &Delivery) -> String {
    String::from_utf8_lossy(&delivery.message.body).into_owned()
}

fn check(result: Result<()>, what: &str) {
    if let Err(err) = result {
        panic!("{what} failed: {err}");
    }
}

fn expect_kind<T: std::fmt::Debug>(result: Result<T>, kind: ErrorKind, what: &str) {
    match result {
        Ok(value) => panic!("{what} succeeded with {value:?}; expected a {kind} error"),
        Err(err) => assert_eq!(err.kind(), kind, "{what}: {err}"),
    }
}

async fn expect_unimplemented(broker: &dyn Broker, topic: &str, options: &SubscribeOptions) {
    let result = broker.subscribe(topic, options).await;
    expect_kind(
        result,
        ErrorKind::Unimplemented,
        &format!("subscribing with {options:?} to a backend without the capability"),
    );
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match timeout(WAIT, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: nothing happened within {WAIT:?}"),
    }
}

async fn subscribe(broker: &dyn Broker, topic: &str, options: &SubscribeOptions) -> Subscription {
    let what = format!("subscribe to `{topic}` with {options:?}");
    match within(&what, broker.subscribe(topic, options)).await {
        Ok(sub) => sub,
        Err(err) => panic!("{what} failed: {err}"),
    }
}

async fn publish(broker: &dyn Broker, topic: &str, message: Message) {
    let what = format!("publish to `{topic}`");
    check(within(&what, broker.publish(topic, message)).await, &what);
}

/// Publishes the messages `"0"`, `"1"`, ... `count - 1` to `topic`, in order.
async fn publish_numbered(broker: &dyn Broker, topic: &str, count: usize) {
    for i in 0..count {
        publish(broker, topic, Message::new(i.to_string())).await;
    }
}

async fn next(sub: &mut Subscription, what: &str) -> Delivery {
    match within(what, sub.next()).await {
        Some(Ok(delivery)) => delivery,
        Some(Err(err)) => panic!("{what}: the subscription yielded an error: {err}"),
        None => panic!("{what}: the subscription ended"),
    }
}

type Merged = stream::SelectAll<stream::BoxStream<'static, (usize, Result<Delivery>)>>;

/// One stream of `(member index, delivery)` over several subscriptions.
fn merge(subs: Vec<Subscription>) -> Merged {
    stream::select_all(
        subs.into_iter()
            .enumerate()
            .map(|(index, sub)| sub.map(move |delivery| (index, delivery)).boxed()),
    )
}

async fn next_merged(merged: &mut Merged, what: &str) -> (usize, Delivery) {
    match within(what, merged.next()).await {
        Some((index, Ok(delivery))) => (index, delivery),
        Some((index, Err(err))) => panic!("{what}: subscription {index} yielded an error: {err}"),
        None => panic!("{what}: every subscription ended"),
    }
}
