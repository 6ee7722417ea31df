//! `subscribe_ordered` through a service: same key in order, keys in
//! parallel, a failed message redelivered (manual-ack brokers), on the memory
//! broker and (feature `broker-http`) on the HTTP broker.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use micro::{
    Context, Error, KeyedOrder, Service,
    broker::{Broker, DynBroker, memory::MemoryBroker},
    registry::memory::MemoryRegistry,
    transport::memory::MemoryTransport,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(20);
const TOPIC: &str = "accounts.entry";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    account: u32,
    seq: u32,
}

#[derive(Default)]
struct Seen {
    order: HashMap<u32, Vec<u32>>,
    busy: HashSet<u32>,
    faults: Vec<String>,
    handled: usize,
    failed_once: bool,
}

async fn ordered_entries_through_a_service(broker: DynBroker, registry: MemoryRegistry) {
    const ACCOUNTS: u32 = 12;
    const PER_ACCOUNT: u32 = 20;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (done_tx, mut done) = watch::channel(0_usize);
    let recorder = Arc::clone(&seen);
    let ledger = Service::builder("ledger")
        .registry(registry.clone())
        .broker(broker.clone())
        .transport(MemoryTransport::isolated())
        .server(micro::Server::new().subscribe_ordered(
            TOPIC,
            KeyedOrder::by(|entry: &Entry| entry.account).concurrency(4),
            move |_ctx: Context, entry: Entry| {
                let seen = Arc::clone(&recorder);
                let done_tx = done_tx.clone();
                async move {
                    {
                        let mut seen = seen.lock().unwrap();
                        if !seen.busy.insert(entry.account) {
                            seen.faults
                                .push(format!("account {} overlapped", entry.account));
                        }
                        // Account 3's entry 5 fails once: it must come back.
                        if entry.account == 3 && entry.seq == 5 && !seen.failed_once {
                            seen.failed_once = true;
                            seen.busy.remove(&entry.account);
                            return Err(Error::unavailable("ledger store busy"));
                        }
                        seen.order.entry(entry.account).or_default().push(entry.seq);
                    }
                    tokio::time::sleep(Duration::from_micros(rand::random_range(0..1_000))).await;
                    let handled = {
                        let mut seen = seen.lock().unwrap();
                        seen.busy.remove(&entry.account);
                        seen.handled += 1;
                        seen.handled
                    };
                    done_tx.send_replace(handled);
                    Ok(())
                }
            },
        ))
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();

    for seq in 0..PER_ACCOUNT {
        for account in 0..ACCOUNTS {
            let body = serde_json::to_vec(&Entry { account, seq }).unwrap();
            let message =
                micro::broker::Message::new(body).with_header("content-type", "application/json");
            broker.publish(TOPIC, message).await.unwrap();
        }
    }
    let all = (ACCOUNTS * PER_ACCOUNT) as usize;
    let reached = tokio::time::timeout(WAIT, done.wait_for(|handled| *handled >= all))
        .await
        .is_ok_and(|changed| changed.is_ok());
    assert!(reached, "only {} of {all} entries handled", *done.borrow());
    ledger.stop().await.unwrap();

    let seen = seen.lock().unwrap();
    assert!(seen.faults.is_empty(), "{:?}", seen.faults);
    assert!(seen.failed_once, "the failing entry was never handled");
    for account in 0..ACCOUNTS {
        let order = &seen.order[&account];
        if account == 3 {
            // The nacked entry comes back after the entries the broker sent
            // meanwhile: every entry exactly once, the others in order.
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..PER_ACCOUNT).collect::<Vec<_>>(), "account 3");
            let without: Vec<u32> = order.iter().copied().filter(|seq| *seq != 5).collect();
            assert!(without.is_sorted(), "account 3: {order:?}");
        } else {
            assert_eq!(
                order,
                &(0..PER_ACCOUNT).collect::<Vec<_>>(),
                "account {account}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_broker() {
    ordered_entries_through_a_service(Arc::new(MemoryBroker::new()), MemoryRegistry::new()).await;
}

#[cfg(feature = "broker-http")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_broker() {
    let registry = MemoryRegistry::new();
    let broker = micro::broker::http::HttpBroker::new(registry.clone());
    ordered_entries_through_a_service(Arc::new(broker), registry).await;
}
