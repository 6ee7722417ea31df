//! Publish/subscribe through services: queue groups named after the service,
//! fan-out by option, redelivery of failed messages, undecodable messages
//! dropped and counted.

mod common;

use std::{
    collections::BTreeSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use common::{Kind, WAIT, World};
use micro::{Context, Error, SubscribeOptions, broker::Broker};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PasswordChanged {
    user_id: u64,
}

const TOPIC: &str = "user.password_changed";

/// Receives `count` items or fails the test after [`WAIT`].
async fn receive<T>(rx: &mut mpsc::UnboundedReceiver<T>, count: usize) -> Vec<T> {
    let mut items = Vec::with_capacity(count);
    while items.len() < count {
        match tokio::time::timeout(WAIT, rx.recv()).await {
            Ok(Some(item)) => items.push(item),
            _ => panic!("received {} of {count} items", items.len()),
        }
    }
    items
}

/// An `email` instance that reports each event with its own instance number.
async fn email_instance(
    world: &World,
    instance: usize,
    seen: mpsc::UnboundedSender<(usize, u64)>,
) -> micro::RunningService {
    world
        .service("email")
        .server(micro::Server::new().subscribe(
            TOPIC,
            move |ctx: Context, event: PasswordChanged| {
                let seen = seen.clone();
                async move {
                    assert_eq!(ctx.endpoint(), TOPIC);
                    seen.send((instance, event.user_id))
                        .map_err(|_| Error::internal("test ended"))
                }
            },
        ))
        .build()
        .unwrap()
        .start()
        .await
        .unwrap()
}

async fn instances_of_a_service_share_each_message(kind: Kind) {
    let world = World::new(kind);
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let first = email_instance(&world, 1, seen_tx.clone()).await;
    let second = email_instance(&world, 2, seen_tx.clone()).await;
    // Another service, fanning out, sees every message too.
    let (audit_tx, mut audit_rx) = mpsc::unbounded_channel();
    let audit = world
        .service("audit")
        .server(micro::Server::new().subscribe_with(
            TOPIC,
            SubscribeOptions::fanout(),
            move |_ctx, event: PasswordChanged| {
                let audit = audit_tx.clone();
                async move {
                    audit
                        .send(event.user_id)
                        .map_err(|_| Error::internal("test ended"))
                }
            },
        ))
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();

    let client = world.client();
    const MESSAGES: u64 = 40;
    for user_id in 0..MESSAGES {
        client
            .publish(TOPIC, &PasswordChanged { user_id })
            .await
            .unwrap();
    }
    let seen = receive(&mut seen_rx, MESSAGES as usize).await;
    let ids: BTreeSet<u64> = seen.iter().map(|(_, id)| *id).collect();
    assert_eq!(
        ids.len(),
        MESSAGES as usize,
        "a message was handled twice: {seen:?}"
    );
    assert_eq!(ids, (0..MESSAGES).collect());
    let audited: BTreeSet<u64> = receive(&mut audit_rx, MESSAGES as usize)
        .await
        .into_iter()
        .collect();
    assert_eq!(audited, (0..MESSAGES).collect());

    first.stop().await.unwrap();
    second.stop().await.unwrap();
    audit.stop().await.unwrap();
    // Every message was delivered to the email group exactly once.
    assert!(seen_rx.try_recv().is_err());
}

async fn a_failed_message_is_redelivered(kind: Kind) {
    let world = World::new(kind);
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let failed_once = Arc::new(AtomicBool::new(false));
    let running = world
        .service("flaky-consumer")
        .server(
            micro::Server::new().subscribe(TOPIC, move |_ctx, event: PasswordChanged| {
                let seen = seen_tx.clone();
                let failed_once = failed_once.clone();
                async move {
                    seen.send(event.user_id)
                        .map_err(|_| Error::internal("test ended"))?;
                    if !failed_once.swap(true, Ordering::SeqCst) {
                        return Err(Error::unavailable("not now"));
                    }
                    Ok(())
                }
            }),
        )
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    world
        .client()
        .publish(TOPIC, &PasswordChanged { user_id: 7 })
        .await
        .unwrap();
    let seen = receive(&mut seen_rx, 2).await;
    assert_eq!(seen, [7, 7]);
    let subscribers = running.subscribers().unwrap();
    assert_eq!(subscribers.failed_messages(), 1);
    running.stop().await.unwrap();
}

async fn undecodable_messages_are_dropped_and_counted(kind: Kind) {
    let world = World::new(kind);
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let running = email_instance(&world, 1, seen_tx).await;
    world
        .broker
        .publish(
            TOPIC,
            micro::broker::Message::new(&b"not json"[..])
                .with_header("content-type", "application/json"),
        )
        .await
        .unwrap();
    world
        .client()
        .publish(TOPIC, &PasswordChanged { user_id: 3 })
        .await
        .unwrap();
    // The good message after the bad one arrives; the bad one never does.
    assert_eq!(receive(&mut seen_rx, 1).await, [(1, 3)]);
    let subscribers = running.subscribers().unwrap();
    assert_eq!(subscribers.undecodable_messages(), 1);
    // The handler reports the event before it returns, and the message counts
    // as handled only once it has returned, so the count may lag a moment.
    let counted = tokio::time::timeout(WAIT, async {
        while subscribers.handled_messages() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(counted.is_ok(), "the handled message was never counted");
    assert_eq!(subscribers.handled_messages(), 1);
    running.stop().await.unwrap();
}

async fn handlers_publish_through_their_context(kind: Kind) {
    let world = World::new(kind);
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let email = email_instance(&world, 1, seen_tx).await;
    let users = world
        .service("users")
        .handle(
            "Users.ChangePassword",
            |ctx: Context, user_id: u64| async move {
                ctx.client()
                    .publish(TOPIC, &PasswordChanged { user_id })
                    .await
            },
        )
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let (): () = users
        .client()
        .request("users", "Users.ChangePassword")
        .timeout(Duration::from_secs(5))
        .send(&42u64)
        .await
        .unwrap();
    assert_eq!(receive(&mut seen_rx, 1).await, [(1, 42)]);
    users.stop().await.unwrap();
    email.stop().await.unwrap();
}

on_every_transport!(
    instances_of_a_service_share_each_message,
    a_failed_message_is_redelivered,
    undecodable_messages_are_dropped_and_counted,
    handlers_publish_through_their_context,
);
