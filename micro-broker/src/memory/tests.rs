//! Behaviour specific to the memory broker; the shared behaviour is covered by
//! the conformance suite in `tests/memory_conformance.rs`.

use std::{collections::BTreeSet, pin::pin, time::Duration};

use futures::{FutureExt, StreamExt, poll};
use tokio::time::timeout;

use super::*;
use crate::{Delivery, ErrorKind};

const WAIT: Duration = Duration::from_secs(10);

async fn next(sub: &mut Subscription) -> Delivery {
    timeout(WAIT, sub.next())
        .await
        .expect("a delivery within the timeout")
        .expect("the subscription is open")
        .expect("no delivery error")
}

fn body(delivery: &Delivery) -> String {
    String::from_utf8_lossy(&delivery.message.body).into_owned()
}

/// Publishes the bodies "0", "1", … to `t`.
async fn publish_numbered(broker: &MemoryBroker, count: u32) {
    for i in 0..count {
        broker
            .publish("t", Message::new(i.to_string()))
            .await
            .unwrap();
    }
}

fn fail_fast(buffer: usize) -> MemoryBroker {
    MemoryBroker::builder()
        .buffer(buffer)
        .overflow(OverflowPolicy::Fail)
        .build()
}

fn blocking(buffer: usize) -> MemoryBroker {
    MemoryBroker::builder().buffer(buffer).build()
}

#[tokio::test]
async fn new_brokers_are_isolated_and_clones_share_state() {
    let first = MemoryBroker::new();
    let clone = first.clone();
    let other = MemoryBroker::new();
    let mut on_first = first
        .subscribe("t", &SubscribeOptions::fanout())
        .await
        .unwrap();
    let mut on_other = other
        .subscribe("t", &SubscribeOptions::fanout())
        .await
        .unwrap();

    clone.publish("t", Message::new("via clone")).await.unwrap();
    other.publish("t", Message::new("via other")).await.unwrap();

    assert_eq!(body(&next(&mut on_first).await), "via clone");
    assert_eq!(body(&next(&mut on_other).await), "via other");
    assert!(
        on_first.next().now_or_never().is_none(),
        "isolated brokers leaked"
    );
}

#[tokio::test]
async fn shared_is_one_process_wide_broker() {
    let topic = format!("shared.{:x}", rand::random::<u64>());
    let mut sub = MemoryBroker::shared()
        .subscribe(&topic, &SubscribeOptions::fanout())
        .await
        .unwrap();
    MemoryBroker::shared()
        .publish(&topic, Message::new("hello"))
        .await
        .unwrap();
    assert_eq!(body(&next(&mut sub).await), "hello");
    assert_eq!(MemoryBroker::shared().scheme(), "memory");
}

#[test]
fn capabilities_follow_the_overflow_policy() {
    let blocking = MemoryBroker::new().capabilities();
    assert!(blocking.backpressure && blocking.queue_groups && blocking.manual_ack);
    assert!(blocking.wildcards);
    assert!(!fail_fast(1).capabilities().backpressure);
}

#[test]
fn a_zero_buffer_is_taken_as_one() {
    assert_eq!(blocking(0).config().buffer, 1);
}

#[tokio::test]
async fn publishing_without_subscribers_succeeds() {
    MemoryBroker::new()
        .publish("nobody.listens", Message::new("x"))
        .await
        .unwrap();
}

#[tokio::test]
async fn fail_policy_rejects_and_delivers_to_nobody() {
    let broker = fail_fast(1);
    let mut slow = broker
        .subscribe("t", &SubscribeOptions::fanout())
        .await
        .unwrap();
    let mut reader = broker
        .subscribe("t", &SubscribeOptions::fanout())
        .await
        .unwrap();
    broker.publish("t", Message::new("0")).await.unwrap();
    assert_eq!(body(&next(&mut reader).await), "0");

    let err = broker.publish("t", Message::new("1")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ResourceExhausted);
    assert!(
        err.message().contains("`t`"),
        "the error names the topic: {err}"
    );

    assert_eq!(body(&next(&mut slow).await), "0");
    broker.publish("t", Message::new("2")).await.unwrap();
    assert_eq!(
        body(&next(&mut reader).await),
        "2",
        "the rejected message must reach no subscriber"
    );
}

#[tokio::test]
async fn fail_policy_rejects_a_group_only_when_every_member_is_full() {
    let broker = fail_fast(1);
    let group = SubscribeOptions::queue("workers");
    let _a = broker.subscribe("t", &group).await.unwrap();
    let _b = broker.subscribe("t", &group).await.unwrap();
    broker.publish("t", Message::new("0")).await.unwrap();
    broker.publish("t", Message::new("1")).await.unwrap();
    let err = broker.publish("t", Message::new("2")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ResourceExhausted);
}

#[tokio::test]
async fn a_blocked_publisher_is_released_when_the_full_subscriber_drops() {
    let broker = blocking(1);
    let full = broker
        .subscribe("t", &SubscribeOptions::fanout())
        .await
        .unwrap();
    broker.publish("t", Message::new("0")).await.unwrap();

    let mut publishing = pin!(broker.publish("t", Message::new("1")));
    assert!(
        poll!(publishing.as_mut()).is_pending(),
        "the buffer is full"
    );
    drop(full);
    timeout(WAIT, publishing)
        .await
        .expect("the publisher is released")
        .unwrap();
}

#[tokio::test]
async fn a_dropped_publish_reaches_nobody() {
    let broker = blocking(1);
    let mut reader = broker
        .subscribe("t", &SubscribeOptions::fanout())
        .await
        .unwrap();
    let mut full = broker
        .subscribe("t", &SubscribeOptions::fanout())
        .await
        .unwrap();
    broker.publish("t", Message::new("0")).await.unwrap();
    assert_eq!(body(&next(&mut reader).await), "0");

    {
        let mut publishing = pin!(broker.publish("t", Message::new("dropped")));
        assert!(poll!(publishing.as_mut()).is_pending(), "waits for `full`");
    }

    assert_eq!(body(&next(&mut full).await), "0");
    broker.publish("t", Message::new("2")).await.unwrap();
    assert_eq!(body(&next(&mut reader).await), "2");
    assert_eq!(body(&next(&mut full).await), "2");
}

#[tokio::test]
async fn a_member_joining_releases_a_publisher_blocked_on_its_group() {
    let broker = blocking(1);
    let group = SubscribeOptions::queue("workers");
    let _full = broker.subscribe("t", &group).await.unwrap();
    broker.publish("t", Message::new("0")).await.unwrap();

    let mut publishing = pin!(broker.publish("t", Message::new("1")));
    assert!(
        poll!(publishing.as_mut()).is_pending(),
        "the only member is full"
    );
    let mut joined = broker.subscribe("t", &group).await.unwrap();
    timeout(WAIT, publishing)
        .await
        .expect("the new member has room")
        .unwrap();
    assert_eq!(body(&next(&mut joined).await), "1");
}

#[tokio::test]
async fn a_leaving_member_hands_its_backlog_to_the_rest_of_the_group() {
    let broker = MemoryBroker::new();
    let group = SubscribeOptions::queue("workers");
    let leaver = broker.subscribe("t", &group).await.unwrap();
    let mut stayer = broker.subscribe("t", &group).await.unwrap();
    publish_numbered(&broker, 10).await;
    drop(leaver);

    let mut received = BTreeSet::new();
    for _ in 0..10 {
        assert!(received.insert(body(&next(&mut stayer).await)), "duplicate");
    }
    let expected: BTreeSet<String> = (0..10).map(|i| i.to_string()).collect();
    assert_eq!(received, expected);
}

/// A member takes its buffer in batches; what it moved out and had not yet
/// handed out when it leaves is backlog too, not lost.
#[tokio::test]
async fn a_member_leaving_mid_batch_hands_the_rest_of_the_batch_on() {
    let broker = MemoryBroker::new();
    let group = SubscribeOptions::queue("workers");
    let mut leaver = broker.subscribe("t", &group).await.unwrap();
    let mut stayer = broker.subscribe("t", &group).await.unwrap();
    publish_numbered(&broker, 10).await;
    // The leaver's first take moves its whole buffer out; it hands out one.
    let handled = body(&next(&mut leaver).await);
    drop(leaver);

    let mut received = BTreeSet::from([handled]);
    for _ in 0..9 {
        assert!(received.insert(body(&next(&mut stayer).await)), "duplicate");
    }
    let expected: BTreeSet<String> = (0..10).map(|i| i.to_string()).collect();
    assert_eq!(received, expected);
    assert!(
        timeout(Duration::from_millis(50), stayer.next())
            .await
            .is_err(),
        "nothing is delivered twice"
    );
}

#[tokio::test]
async fn the_last_member_leaving_removes_the_group_and_its_backlog() {
    let broker = MemoryBroker::new();
    let group = SubscribeOptions::queue("workers");
    let only = broker.subscribe("t", &group).await.unwrap();
    broker.publish("t", Message::new("old")).await.unwrap();
    drop(only);
    assert_eq!(
        broker.shared.route_count(),
        0,
        "nothing kept for a gone group"
    );

    broker.publish("t", Message::new("unheard")).await.unwrap();
    let mut newcomer = broker.subscribe("t", &group).await.unwrap();
    broker.publish("t", Message::new("new")).await.unwrap();
    assert_eq!(body(&next(&mut newcomer).await), "new");
}

#[tokio::test]
async fn dropping_subscriptions_removes_every_route() {
    let broker = MemoryBroker::new();
    let subs = [
        broker
            .subscribe("a.b", &SubscribeOptions::fanout())
            .await
            .unwrap(),
        broker
            .subscribe("a.*", &SubscribeOptions::fanout())
            .await
            .unwrap(),
        broker
            .subscribe("a.>", &SubscribeOptions::queue("g"))
            .await
            .unwrap(),
        broker
            .subscribe("a.b", &SubscribeOptions::queue("g").with_manual_ack())
            .await
            .unwrap(),
    ];
    assert!(broker.shared.route_count() > 0);
    drop(subs);
    assert_eq!(broker.shared.route_count(), 0);
}

#[tokio::test]
async fn an_unsettled_delivery_dropped_is_redelivered() {
    let broker = MemoryBroker::new();
    let mut sub = broker
        .subscribe("t", &SubscribeOptions::fanout().with_manual_ack())
        .await
        .unwrap();
    broker.publish("t", Message::new("job")).await.unwrap();
    let first = next(&mut sub).await;
    drop(first);
    let mut again = next(&mut sub).await;
    assert_eq!(body(&again), "job");
    again.ack().await.unwrap();
}

#[tokio::test]
async fn unsettled_deliveries_of_a_leaving_member_go_to_another_member() {
    let broker = MemoryBroker::new();
    let group = SubscribeOptions::queue("workers").with_manual_ack();
    let mut a = broker.subscribe("t", &group).await.unwrap();
    let mut b = broker.subscribe("t", &group).await.unwrap();
    broker.publish("t", Message::new("job")).await.unwrap();

    let (holder, mut other, delivery) = match a.next().now_or_never() {
        Some(Some(delivery)) => (a, b, delivery.unwrap()),
        _ => {
            let delivery = next(&mut b).await;
            (b, a, delivery)
        }
    };
    drop(holder);
    drop(delivery);
    let mut redelivered = next(&mut other).await;
    assert_eq!(body(&redelivered), "job");
    redelivered.ack().await.unwrap();
}

#[tokio::test]
async fn an_unsettled_delivery_keeps_its_buffer_slot() {
    let broker = blocking(1);
    let mut sub = broker
        .subscribe("t", &SubscribeOptions::fanout().with_manual_ack())
        .await
        .unwrap();
    broker.publish("t", Message::new("0")).await.unwrap();
    let mut delivery = next(&mut sub).await;

    let mut publishing = pin!(broker.publish("t", Message::new("1")));
    assert!(
        poll!(publishing.as_mut()).is_pending(),
        "slot held until settled"
    );
    delivery.ack().await.unwrap();
    timeout(WAIT, publishing)
        .await
        .expect("the ack freed the slot")
        .unwrap();
    assert_eq!(body(&next(&mut sub).await), "1");
}

#[tokio::test(start_paused = true)]
async fn nack_waits_for_its_delay() {
    let broker = MemoryBroker::new();
    let mut sub = broker
        .subscribe("t", &SubscribeOptions::fanout().with_manual_ack())
        .await
        .unwrap();
    broker.publish("t", Message::new("job")).await.unwrap();
    let mut delivery = next(&mut sub).await;
    delivery
        .nack(Some(Duration::from_secs(3600)))
        .await
        .unwrap();

    assert!(
        timeout(Duration::from_secs(1800), sub.next())
            .await
            .is_err(),
        "redelivered before its delay"
    );
    let mut again = timeout(Duration::from_secs(3600), sub.next())
        .await
        .expect("redelivered after the delay")
        .unwrap()
        .unwrap();
    assert_eq!(body(&again), "job");
    again.ack().await.unwrap();
}

#[tokio::test]
async fn publishing_to_a_wildcard_or_subscribing_to_garbage_is_invalid() {
    let broker = MemoryBroker::new();
    let err = broker.publish("a.*", Message::new("x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    let err = broker
        .subscribe("a.>.b", &SubscribeOptions::fanout())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

/// Fan-out subscribers of an exact topic share one feed: readers at
/// different speeds, beside a subscriber with an inbox of its own (a
/// wildcard), each receive every message of several concurrent publishers,
/// each publisher's in its order, while a small buffer keeps holding the
/// publishers back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_readers_at_different_speeds_each_get_every_message_in_order() {
    const PUBLISHERS: u32 = 3;
    const EACH: u32 = 300;
    let broker = blocking(8);
    let mut readers = Vec::new();
    for (pattern, pause_every) in [("t", 0), ("t", 7), ("t", 50), ("*", 11)] {
        let mut sub = broker
            .subscribe(pattern, &SubscribeOptions::fanout())
            .await
            .unwrap();
        readers.push(tokio::spawn(async move {
            let mut last_seen = vec![None::<u32>; PUBLISHERS as usize];
            for received in 1..=PUBLISHERS * EACH {
                let delivery = next(&mut sub).await;
                assert_eq!(delivery.topic, "t");
                let text = body(&delivery);
                let (publisher, index) = text.split_once('-').expect("publisher-index");
                let (publisher, index): (usize, u32) =
                    (publisher.parse().unwrap(), index.parse().unwrap());
                assert_eq!(
                    last_seen[publisher].map_or(0, |last| last + 1),
                    index,
                    "{pattern}: publisher {publisher}'s messages in order, none lost"
                );
                last_seen[publisher] = Some(index);
                if pause_every > 0 && received % pause_every == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            pattern
        }));
    }
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|publisher| {
            let broker = broker.clone();
            tokio::spawn(async move {
                for index in 0..EACH {
                    let message = Message::new(format!("{publisher}-{index}"));
                    broker.publish("t", message).await.unwrap();
                }
            })
        })
        .collect();
    for publisher in publishers {
        timeout(WAIT, publisher)
            .await
            .expect("publishing finishes")
            .unwrap();
    }
    for reader in readers {
        timeout(WAIT, reader)
            .await
            .expect("every reader finishes")
            .unwrap();
    }
}

/// A fan-out subscriber that never reads holds a feed's publishers back
/// only until it leaves; the readers left see nothing lost and nothing twice.
#[tokio::test]
async fn a_feed_reader_leaving_releases_the_publisher_it_held_back() {
    let broker = blocking(2);
    let mut reader = broker
        .subscribe("t", &SubscribeOptions::fanout())
        .await
        .unwrap();
    let stalled = broker
        .subscribe("t", &SubscribeOptions::fanout())
        .await
        .unwrap();
    publish_numbered(&broker, 2).await;
    assert_eq!(body(&next(&mut reader).await), "0");
    assert_eq!(body(&next(&mut reader).await), "1");
    let mut publishing = pin!(broker.publish("t", Message::new("2")));
    assert!(
        poll!(publishing.as_mut()).is_pending(),
        "the stalled reader's buffer is full"
    );
    drop(stalled);
    timeout(WAIT, publishing)
        .await
        .expect("the publisher is released")
        .unwrap();
    assert_eq!(body(&next(&mut reader).await), "2");
    broker.publish("t", Message::new("3")).await.unwrap();
    assert_eq!(body(&next(&mut reader).await), "3");
    assert!(
        poll!(reader.next()).is_pending(),
        "nothing more, nothing twice"
    );
}

/// A lone feed reader moves its messages out of the feed instead of cloning
/// them; what it moved out still counts against its buffer until handed
/// out, also after a second reader joins.
#[tokio::test]
async fn messages_a_lone_reader_moved_out_count_until_handed_out() {
    let broker = blocking(2);
    let mut first = broker
        .subscribe("t", &SubscribeOptions::fanout())
        .await
        .unwrap();
    publish_numbered(&broker, 2).await;
    // Takes "0" and "1" out of the feed, hands out "0": room for one more.
    assert_eq!(body(&next(&mut first).await), "0");
    broker.publish("t", Message::new("2")).await.unwrap();
    let mut publishing = pin!(broker.publish("t", Message::new("3")));
    assert!(
        poll!(publishing.as_mut()).is_pending(),
        "\"1\" (moved out, not handed out) and \"2\" fill the buffer"
    );
    let mut second = broker
        .subscribe("t", &SubscribeOptions::fanout())
        .await
        .unwrap();
    assert!(poll!(publishing.as_mut()).is_pending(), "still full");
    assert_eq!(body(&next(&mut first).await), "1");
    timeout(WAIT, publishing)
        .await
        .expect("one read made room")
        .unwrap();
    assert_eq!(body(&next(&mut first).await), "2");
    assert_eq!(body(&next(&mut first).await), "3");
    assert_eq!(
        body(&next(&mut second).await),
        "3",
        "a reader gets only what was published after it joined"
    );
}
