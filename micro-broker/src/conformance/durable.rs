//! Cases for durable, acknowledged events: dead letters, resuming a durable
//! subscription, replay and de-duplication. Each looks at the capability it
//! tests and, where it is missing, checks that asking for it fails with
//! [`ErrorKind::Unimplemented`](crate::ErrorKind::Unimplemented) and skips.

use std::{collections::BTreeSet, time::Duration};

use super::{
    body, check, expect_unimplemented, fresh_name, fresh_topic, next, publish, publish_numbered,
    skip, subscribe,
};
use crate::{
    Broker, DEAD_LETTER_DELIVERIES_HEADER, DEAD_LETTER_TOPIC_HEADER, Message, StartPosition,
    SubscribeOptions,
};

/// After `max_deliveries` deliveries that were nacked, a message is published
/// to the dead-letter topic, with its body and headers plus the original
/// topic and the delivery count, and is not delivered again; deliveries count
/// their attempts where the backend reports them.
pub async fn dead_letter_after_redelivery_limit(broker: &dyn Broker) {
    const LIMIT: u32 = 3;
    let topic = fresh_topic("dead_letter");
    let dead_topic = format!("{topic}_dead");
    let options = SubscribeOptions::queue(fresh_name("workers"))
        .with_manual_ack()
        .dead_letter(&dead_topic, LIMIT);
    if !broker.capabilities().dead_letter || !broker.capabilities().manual_ack {
        expect_unimplemented(broker, &topic, &options).await;
        skip(broker, "dead_letter_after_redelivery_limit", "dead_letter");
        return;
    }
    let mut dead = subscribe(broker, &dead_topic, &SubscribeOptions::fanout()).await;
    let mut work = subscribe(broker, &topic, &options).await;
    let poison = Message::new("poison").with_header("x-order", "17");
    publish(broker, &topic, poison.clone()).await;

    for attempt in 1..=LIMIT {
        let mut delivery = next(
            &mut work,
            &format!("delivery {attempt} of the poison message"),
        )
        .await;
        assert_eq!(delivery.message, poison, "delivery {attempt}");
        if let Some(counted) = delivery.attempt {
            assert_eq!(counted, attempt, "Delivery::attempt");
        }
        let delay = (attempt == 2).then(|| Duration::from_millis(20));
        check(delivery.nack(delay).await, &format!("nack {attempt}"));
    }

    let dead_letter = next(&mut dead, "the dead letter").await;
    assert_eq!(dead_letter.topic, dead_topic, "dead letter topic");
    assert_eq!(dead_letter.message.body, poison.body, "dead letter body");
    let headers = &dead_letter.message.headers;
    assert_eq!(headers.get("x-order"), Some("17"), "original headers kept");
    assert_eq!(headers.get(DEAD_LETTER_TOPIC_HEADER), Some(topic.as_str()));
    assert_eq!(
        headers.get(DEAD_LETTER_DELIVERIES_HEADER),
        Some(LIMIT.to_string().as_str())
    );

    // Publish order is kept, so the next delivery being the next message
    // shows the poison message did not come back.
    publish(broker, &topic, Message::new("healthy")).await;
    let mut after = next(&mut work, "the message after the dead letter").await;
    assert_eq!(body(&after), "healthy", "a dead-lettered message came back");
    check(after.ack().await, "ack");
}

/// A durable subscription that is dropped and made again under the same
/// name resumes: it gets the message that was delivered but not acked and
/// the messages published while nobody was subscribed, and none it acked.
pub async fn durable_subscription_resumes_after_restart(broker: &dyn Broker) {
    let topic = fresh_topic("durable");
    let options = SubscribeOptions::fanout()
        .with_manual_ack()
        .durable(fresh_name("resumer"));
    if !broker.capabilities().durable || !broker.capabilities().manual_ack {
        expect_unimplemented(broker, &topic, &options).await;
        skip(
            broker,
            "durable_subscription_resumes_after_restart",
            "durable",
        );
        return;
    }
    let mut first = subscribe(broker, &topic, &options).await;
    publish_numbered(broker, &topic, 2).await;
    let mut acked = next(&mut first, "message 0").await;
    assert_eq!(body(&acked), "0");
    check(acked.ack().await, "ack 0");
    let unsettled = next(&mut first, "message 1").await;
    assert_eq!(body(&unsettled), "1");
    // The subscriber "crashes": message 1 was never acked.
    drop(unsettled);
    drop(first);

    for i in 2..4 {
        publish(broker, &topic, Message::new(i.to_string())).await;
    }
    let mut resumed = subscribe(broker, &topic, &options).await;
    let mut bodies = BTreeSet::new();
    while bodies.len() < 3 {
        let mut delivery = next(&mut resumed, "a message kept for the durable subscription").await;
        let text = body(&delivery);
        assert_ne!(text, "0", "an acked message came back after the restart");
        bodies.insert(text);
        check(delivery.ack().await, "ack after resume");
    }
    let expected: BTreeSet<String> = ["1", "2", "3"].map(String::from).into();
    assert_eq!(bodies, expected, "resumed deliveries");

    publish(broker, &topic, Message::new("4")).await;
    let mut latest = next(&mut resumed, "the message after resuming").await;
    assert_eq!(body(&latest), "4", "nothing acked may come back");
    check(latest.ack().await, "ack 4");
}

/// Subscriptions can start at the first message kept, at a sequence number
/// taken from an earlier delivery, or at a time.
pub async fn replay_from_first_sequence_and_time(broker: &dyn Broker) {
    const EARLY: usize = 5;
    let topic = fresh_topic("replay");
    if !broker.capabilities().replay {
        let from_first = SubscribeOptions::fanout().start_at(StartPosition::First);
        expect_unimplemented(broker, &topic, &from_first).await;
        skip(broker, "replay_from_first_sequence_and_time", "replay");
        return;
    }
    publish_numbered(broker, &topic, EARLY).await;

    let mut from_first = subscribe(
        broker,
        &topic,
        &SubscribeOptions::fanout().start_at(StartPosition::First),
    )
    .await;
    let mut sequences = Vec::new();
    for i in 0..EARLY {
        let delivery = next(&mut from_first, &format!("replayed message {i}")).await;
        assert_eq!(
            body(&delivery),
            i.to_string(),
            "replay from the first message"
        );
        let Some(sequence) = delivery.sequence else {
            panic!(
                "`{}` declares replay but gives no Delivery::sequence",
                broker.scheme()
            );
        };
        sequences.push(sequence);
    }
    assert!(
        sequences.windows(2).all(|pair| pair[0] < pair[1]),
        "sequences must grow in publish order: {sequences:?}"
    );
    drop(from_first);

    let mut from_sequence = subscribe(
        broker,
        &topic,
        &SubscribeOptions::fanout().start_at(StartPosition::Sequence(sequences[2])),
    )
    .await;
    for (i, expected_sequence) in sequences.iter().enumerate().skip(2) {
        let delivery = next(&mut from_sequence, &format!("message {i} from sequence")).await;
        assert_eq!(body(&delivery), i.to_string(), "replay from a sequence");
        assert_eq!(
            delivery.sequence,
            Some(*expected_sequence),
            "sequence of message {i}"
        );
    }
    drop(from_sequence);

    // Every early message was confirmed before this instant, every late one
    // is published after it.
    let boundary = std::time::SystemTime::now();
    publish(broker, &topic, Message::new("late 0")).await;
    publish(broker, &topic, Message::new("late 1")).await;
    let mut from_time = subscribe(
        broker,
        &topic,
        &SubscribeOptions::fanout().start_at(StartPosition::Time(boundary)),
    )
    .await;
    for i in 0..2 {
        let delivery = next(&mut from_time, &format!("late message {i}")).await;
        assert_eq!(body(&delivery), format!("late {i}"), "replay from a time");
    }
}

/// A message published again with the same id is accepted but delivered
/// once; messages with other ids or none are delivered as usual.
pub async fn duplicates_by_message_id_are_delivered_once(broker: &dyn Broker) {
    let topic = fresh_topic("dedup");
    if !broker.capabilities().deduplication {
        skip(
            broker,
            "duplicates_by_message_id_are_delivered_once",
            "deduplication",
        );
        return;
    }
    let mut sub = subscribe(broker, &topic, &SubscribeOptions::fanout()).await;
    let id = fresh_name("order");
    let first = Message::new("first").with_id(&id);
    publish(broker, &topic, first.clone()).await;
    publish(broker, &topic, Message::new("retry of first").with_id(&id)).await;
    publish(
        broker,
        &topic,
        Message::new("second").with_id(fresh_name("order")),
    )
    .await;
    publish(broker, &topic, Message::new("no id")).await;

    let delivery = next(&mut sub, "the first message").await;
    assert_eq!(delivery.message, first, "first message, with its id");
    assert_eq!(delivery.message.id(), Some(id.as_str()), "Message::id");
    // Publish order is kept, so the duplicate would have come before these.
    for expected in ["second", "no id"] {
        let delivery = next(&mut sub, &format!("message `{expected}`")).await;
        assert_eq!(body(&delivery), expected, "the duplicate was delivered");
    }
}
