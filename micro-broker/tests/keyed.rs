//! The keyed worker pool and keyed ordered subscriptions, beyond the
//! conformance case: bounds, back-pressure, acks after the handler, nack on
//! failure, panics.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use futures::{StreamExt, stream};
use micro_broker::{
    Acker, Broker, Delivery, Error, ErrorKind, Message, Result, SubscribeOptions,
    keyed::{KeyedConfig, KeyedPool, OrderedExt},
    memory::MemoryBroker,
};
use tokio::{
    sync::{Semaphore, watch},
    time::timeout,
};

const WAIT: Duration = Duration::from_secs(10);
/// How long a call must stay pending to count as held back.
const HELD_BACK: Duration = Duration::from_millis(200);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_key_in_order_and_never_two_at_once() {
    const KEYS: u32 = 10;
    const PER_KEY: u32 = 30;
    let pool = KeyedPool::with_concurrency(4);
    let log = Arc::new(Mutex::new(Vec::new()));
    let busy = Arc::new(Mutex::new(std::collections::HashSet::new()));
    let running = Arc::new(AtomicUsize::new(0));
    let max_running = Arc::new(AtomicUsize::new(0));
    for seq in 0..PER_KEY {
        for key in 0..KEYS {
            let (log, busy, running, max_running) = (
                Arc::clone(&log),
                Arc::clone(&busy),
                Arc::clone(&running),
                Arc::clone(&max_running),
            );
            pool.submit(key, async move {
                assert!(
                    busy.lock().unwrap().insert(key),
                    "key {key} ran twice at once"
                );
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                max_running.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_micros(rand::random_range(0..1_500))).await;
                log.lock().unwrap().push((key, seq));
                running.fetch_sub(1, Ordering::SeqCst);
                busy.lock().unwrap().remove(&key);
            })
            .await
            .unwrap();
        }
    }
    timeout(WAIT, pool.idle()).await.expect("the pool drains");
    let log = log.lock().unwrap();
    assert_eq!(log.len(), (KEYS * PER_KEY) as usize);
    for key in 0..KEYS {
        let order: Vec<u32> = log
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(order, (0..PER_KEY).collect::<Vec<_>>(), "key {key}");
    }
    assert!(max_running.load(Ordering::SeqCst) <= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_keys_wait_when_max_keys_are_in_flight() {
    let mut config = KeyedConfig::with_concurrency(2);
    config.max_keys = 2;
    let pool = KeyedPool::new(config);
    let gate = Arc::new(Semaphore::new(0));
    for key in ["a", "b"] {
        let gate = Arc::clone(&gate);
        pool.submit(key, async move {
            let _ = gate.acquire().await;
        })
        .await
        .unwrap();
    }
    // An item for a key already in flight is queued at once...
    pool.submit("a", async {}).await.unwrap();
    // ... but a third key waits for a slot.
    let mut third = Box::pin(pool.submit("c", async {}));
    assert!(
        timeout(HELD_BACK, &mut third).await.is_err(),
        "a third key was admitted with max_keys = 2"
    );
    assert_eq!(pool.keys_in_flight(), 2);
    gate.add_permits(2);
    timeout(WAIT, third)
        .await
        .expect("admitted once a key finished")
        .unwrap();
    timeout(WAIT, pool.idle()).await.expect("the pool drains");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_waits_when_the_buffer_is_full() {
    let mut config = KeyedConfig::with_concurrency(1);
    config.max_keys = 1;
    config.buffer = 3;
    let pool = KeyedPool::new(config);
    let gate = Arc::new(Semaphore::new(0));
    for _ in 0..3 {
        let gate = Arc::clone(&gate);
        pool.submit(1, async move {
            let _ = gate.acquire().await.map(|permit| permit.forget());
        })
        .await
        .unwrap();
    }
    let mut fourth = Box::pin(pool.submit(1, async {}));
    assert!(
        timeout(HELD_BACK, &mut fourth).await.is_err(),
        "the buffer of 3 let a 4th in"
    );
    gate.add_permits(1);
    timeout(WAIT, fourth)
        .await
        .expect("admitted once one finished")
        .unwrap();
    gate.add_permits(2);
    timeout(WAIT, pool.idle()).await.expect("the pool drains");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_does_not_stop_the_key() {
    let pool = KeyedPool::with_concurrency(2);
    let ran = Arc::new(AtomicUsize::new(0));
    pool.submit("k", async { panic!("handler bug") })
        .await
        .unwrap();
    let after = Arc::clone(&ran);
    pool.submit("k", async move {
        after.fetch_add(1, Ordering::SeqCst);
    })
    .await
    .unwrap();
    timeout(WAIT, pool.idle()).await.expect("the pool drains");
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_refuses_later_work() {
    let pool: KeyedPool<u8> = KeyedPool::with_concurrency(1);
    pool.abort();
    let err = pool.submit(1, async {}).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_come_back_after_the_pool_was_idle() {
    let pool = KeyedPool::with_concurrency(3);
    let log = Arc::new(Mutex::new(Vec::new()));
    for round in 0..5_u32 {
        for seq in 0..20_u32 {
            let log = Arc::clone(&log);
            pool.submit(seq % 4, async move {
                tokio::task::yield_now().await;
                log.lock().unwrap().push((round, seq % 4, seq));
            })
            .await
            .unwrap();
        }
        timeout(WAIT, pool.idle()).await.expect("the pool drains");
        assert_eq!(pool.keys_in_flight(), 0);
        let log = log.lock().unwrap();
        assert_eq!(log.len(), 20 * (round as usize + 1), "round {round}");
        for key in 0..4 {
            let order: Vec<u32> = log
                .iter()
                .filter(|(r, k, _)| *r == round && *k == key)
                .map(|(_, _, seq)| *seq)
                .collect();
            let expected: Vec<u32> = (0..20).filter(|seq| seq % 4 == key).collect();
            assert_eq!(order, expected, "round {round}, key {key}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_after_an_await_leave_the_workers_running() {
    // One worker: if a panic took it down, nothing after it would run.
    let pool = KeyedPool::with_concurrency(1);
    let ran = Arc::new(Mutex::new(Vec::new()));
    for item in 0..6_u32 {
        let ran = Arc::clone(&ran);
        pool.submit(item % 2, async move {
            tokio::task::yield_now().await;
            if item % 3 == 0 {
                panic!("handler bug in item {item}");
            }
            ran.lock().unwrap().push(item);
        })
        .await
        .unwrap();
    }
    timeout(WAIT, pool.idle()).await.expect("the pool drains");
    let mut ran = ran.lock().unwrap().clone();
    ran.sort_unstable();
    assert_eq!(ran, [1, 2, 4, 5]);
    assert_eq!(pool.keys_in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_drops_a_stuck_item_and_the_queued_ones() {
    struct SetOnDrop(Arc<AtomicUsize>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let pool = KeyedPool::with_concurrency(2);
    let (started_tx, mut started) = watch::channel(false);
    let dropped = Arc::new(AtomicUsize::new(0));
    let stuck = SetOnDrop(Arc::clone(&dropped));
    pool.submit("k", async move {
        let _stuck = stuck;
        let _ = started_tx.send(true);
        std::future::pending::<()>().await;
    })
    .await
    .unwrap();
    let queued_ran = Arc::new(AtomicUsize::new(0));
    let queued = Arc::clone(&queued_ran);
    pool.submit("k", async move {
        queued.fetch_add(1, Ordering::SeqCst);
    })
    .await
    .unwrap();
    timeout(WAIT, started.wait_for(|started| *started))
        .await
        .expect("the first item starts")
        .unwrap();
    pool.abort();
    timeout(WAIT, pool.idle())
        .await
        .expect("the aborted pool drains");
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the stuck item was dropped"
    );
    assert_eq!(
        queued_ran.load(Ordering::SeqCst),
        0,
        "a queued item ran after abort"
    );
    assert_eq!(pool.keys_in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_items_run_after_the_pool_is_dropped() {
    let pool = KeyedPool::with_concurrency(2);
    let gate = Arc::new(Semaphore::new(0));
    let (done_tx, mut done) = tokio::sync::mpsc::channel(16);
    for item in 0..8_u32 {
        let (gate, done_tx) = (Arc::clone(&gate), done_tx.clone());
        pool.submit(item % 3, async move {
            let _ = gate.acquire().await;
            let _ = done_tx.send(item).await;
        })
        .await
        .unwrap();
    }
    drop((pool, done_tx));
    gate.add_permits(8);
    let mut finished = Vec::new();
    while let Some(item) = timeout(WAIT, done.recv()).await.expect("items finish") {
        finished.push(item);
    }
    finished.sort_unstable();
    assert_eq!(finished, (0..8).collect::<Vec<_>>());
}

/// Records, in one log, when handlers finish and when deliveries are settled.
struct Recorder {
    log: Arc<Mutex<Vec<String>>>,
    name: String,
}

#[async_trait]
impl Acker for Recorder {
    async fn ack(self: Box<Self>) -> Result<()> {
        self.log.lock().unwrap().push(format!("ack {}", self.name));
        Ok(())
    }
    async fn nack(self: Box<Self>, delay: Option<Duration>) -> Result<()> {
        self.log
            .lock()
            .unwrap()
            .push(format!("nack {} {delay:?}", self.name));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_follow_the_handler_and_failures_nack() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let deliveries: Vec<Result<Delivery>> = ["k1:a", "k1:b", "k2:fail", "k1:c"]
        .into_iter()
        .map(|name| {
            let acker = Recorder {
                log: Arc::clone(&log),
                name: name.to_owned(),
            };
            Ok(Delivery::with_acker(
                "t",
                Message::new(name),
                Box::new(acker),
            ))
        })
        .chain([Err(Error::unavailable("a broker hiccup, skipped"))])
        .collect();
    let handler_log = Arc::clone(&log);
    stream::iter(deliveries)
        .ordered_by(|d: &Delivery| {
            d.message
                .body
                .split(|b| *b == b':')
                .next()
                .map(<[u8]>::to_vec)
        })
        .concurrency(2)
        .nack_delay(Some(Duration::from_millis(5)))
        .handle(move |delivery| {
            let log = Arc::clone(&handler_log);
            async move {
                assert!(!delivery.needs_ack(), "the handler must not settle");
                let name = String::from_utf8_lossy(&delivery.message.body).into_owned();
                tokio::time::sleep(Duration::from_millis(2)).await;
                log.lock().unwrap().push(format!("handled {name}"));
                if name.ends_with("fail") {
                    return Err(Error::internal("cannot"));
                }
                Ok(())
            }
        })
        .await
        .unwrap();
    let log = log.lock().unwrap();
    let position = |entry: &str| {
        log.iter()
            .position(|e| e == entry)
            .unwrap_or_else(|| panic!("{entry:?} missing from {log:?}"))
    };
    for name in ["k1:a", "k1:b", "k1:c"] {
        assert!(position(&format!("handled {name}")) < position(&format!("ack {name}")));
    }
    assert!(
        position("ack k1:a") < position("handled k1:b"),
        "acked before the key's next"
    );
    assert!(position("ack k1:b") < position("handled k1:c"));
    assert!(position("handled k2:fail") < position("nack k2:fail Some(5ms)"));
    assert!(!log.iter().any(|e| e == "ack k2:fail"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_message_is_redelivered_by_a_manual_ack_broker() {
    let broker = MemoryBroker::new();
    let sub = broker
        .subscribe("orders.*", &SubscribeOptions::fanout().with_manual_ack())
        .await
        .unwrap();
    let attempts = Arc::new(AtomicUsize::new(0));
    let (done_tx, mut done) = watch::channel(false);
    let counted = Arc::clone(&attempts);
    let consumer = tokio::spawn(sub.ordered_by(|d: &Delivery| d.topic.clone()).handle(
        move |delivery| {
            let attempts = Arc::clone(&counted);
            let done_tx = done_tx.clone();
            async move {
                assert_eq!(delivery.message.body, "charge");
                if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Err(Error::unavailable("payment provider down"));
                }
                done_tx.send_replace(true);
                Ok(())
            }
        },
    ));
    broker
        .publish("orders.paid", Message::new("charge"))
        .await
        .unwrap();
    timeout(WAIT, done.wait_for(|done| *done))
        .await
        .expect("the nacked message comes back and succeeds")
        .unwrap();
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    consumer.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_stream_ends_the_handle_future() {
    let broker = MemoryBroker::new();
    let sub = broker
        .subscribe("jobs", &SubscribeOptions::fanout())
        .await
        .unwrap();
    // A subscription never ends by itself; take a fixed number of deliveries.
    let jobs = sub.take(3);
    let publishing = async {
        for i in 0..3 {
            broker
                .publish("jobs", Message::new(i.to_string()))
                .await
                .unwrap();
        }
    };
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&handled);
    let handling = jobs.ordered_by(|_| ()).concurrency(1).handle(move |_| {
        let counter = Arc::clone(&counter);
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    let ((), result) = tokio::join!(publishing, timeout(WAIT, handling));
    result
        .expect("handle returns when the stream ends")
        .unwrap();
    assert_eq!(handled.load(Ordering::SeqCst), 3);
}
