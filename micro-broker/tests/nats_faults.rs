//! Fault tests with real processes: nats-server killed and restarted in the
//! middle of a run of durable events, a subscriber process killed with
//! SIGKILL mid-batch, and publishing while disconnected beyond the buffer.

use std::{
    collections::{BTreeSet, HashMap},
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use micro_broker::{
    Broker, ErrorKind, Message, SubscribeOptions,
    nats::{JetStreamConfig, NatsBroker},
};
use micro_test_servers::NatsServer;
use tokio::time::timeout;

/// How long to wait for something that must happen.
const WAIT: Duration = Duration::from_secs(60);

fn jetstream(ack_wait: Duration) -> JetStreamConfig {
    let mut settings = JetStreamConfig::default();
    settings.ack_wait = ack_wait;
    settings.publish_timeout = Duration::from_secs(2);
    settings
}

async fn connect(url: &str, settings: JetStreamConfig) -> NatsBroker {
    match NatsBroker::builder()
        .servers([url])
        .jetstream(settings)
        .connect()
        .await
    {
        Ok(broker) => broker,
        Err(err) => panic!("cannot connect to nats-server at {url}: {err}"),
    }
}

/// 100,000 durable events; the server is SIGKILLed and restarted once a third
/// of them were acknowledged. Every event whose publish was acknowledged is
/// delivered to the durable subscriber and processed at least once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_run_loses_no_acknowledged_event() {
    const EVENTS: usize = 100_000;
    const KILL_AFTER: usize = EVENTS / 3;
    let Some(server) = NatsServer::start().await else {
        return;
    };
    let broker = connect(&server.url(), jetstream(Duration::from_secs(5))).await;
    let topic = "faults.restart.events";
    let options = SubscribeOptions::fanout()
        .with_manual_ack()
        .durable("restart-processor");
    let mut subscription = match broker.subscribe(topic, &options).await {
        Ok(subscription) => subscription,
        Err(err) => panic!("subscribe: {err}"),
    };

    // The processor: counts every delivery of every event, then acks.
    let processed: Arc<Mutex<HashMap<u32, u32>>> = Arc::default();
    let processor = tokio::spawn({
        let processed = Arc::clone(&processed);
        async move {
            let mut errors = 0_usize;
            while let Some(delivery) = subscription.next().await {
                let mut delivery = match delivery {
                    Ok(delivery) => delivery,
                    Err(_) => {
                        errors += 1;
                        continue;
                    }
                };
                let Ok(id) = String::from_utf8_lossy(&delivery.message.body).parse::<u32>() else {
                    panic!("an event with a foreign body arrived: {delivery:?}");
                };
                *processed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(id)
                    .or_default() += 1;
                // An ack lost with the server is fine: the event comes back.
                let _ = delivery.ack().await;
            }
            errors
        }
    });

    let acked_count = Arc::new(AtomicUsize::new(0));
    let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<()>();
    let fault = tokio::spawn({
        async move {
            if kill_rx.await.is_ok() {
                server.kill().await;
                let down = Instant::now();
                server.restart().await;
                eprintln!(
                    "nats-server killed and restarted ({:?} down)",
                    down.elapsed()
                );
            }
            server
        }
    });

    let started = Instant::now();
    let mut kill_tx = Some(kill_tx);
    let mut acked = BTreeSet::new();
    let mut failed = 0_usize;
    let mut results = futures::stream::iter(0..EVENTS as u32)
        .map(|id| {
            let broker = &broker;
            async move {
                let event = Message::new(id.to_string()).with_id(format!("event-{id}"));
                (id, broker.publish(topic, event).await)
            }
        })
        .buffer_unordered(512);
    while let Some((id, result)) = results.next().await {
        match result {
            Ok(()) => {
                acked.insert(id);
                if acked_count.fetch_add(1, Ordering::Relaxed) + 1 >= KILL_AFTER
                    && let Some(kill) = kill_tx.take()
                {
                    let _ = kill.send(());
                }
            }
            Err(err) => {
                assert!(
                    matches!(
                        err.kind(),
                        ErrorKind::Timeout | ErrorKind::Unavailable | ErrorKind::NotFound
                    ),
                    "publish {id} failed with an unexpected kind: {err}"
                );
                failed += 1;
            }
        }
    }
    drop(results);
    let published_in = started.elapsed();
    let Ok(Ok(_server)) = timeout(WAIT, fault).await else {
        panic!("the server was not restarted");
    };

    // Wait until every acknowledged event was processed.
    let deadline = Instant::now() + WAIT;
    let missing = loop {
        let missing: Vec<u32> = {
            let processed = processed.lock().unwrap_or_else(PoisonError::into_inner);
            acked
                .iter()
                .copied()
                .filter(|id| !processed.contains_key(id))
                .collect()
        };
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    processor.abort();
    let processed = processed.lock().unwrap_or_else(PoisonError::into_inner);
    let duplicates: u32 = processed.values().map(|times| times - 1).sum();
    let unacked_but_delivered = processed.keys().filter(|id| !acked.contains(id)).count();
    eprintln!(
        "server restart run: {EVENTS} events published in {published_in:?}: {} acknowledged, \
         {failed} failed (server down); {} distinct events processed, {duplicates} duplicate \
         deliveries, {unacked_but_delivered} processed whose publish had failed; {} \
         acknowledged events missing",
        acked.len(),
        processed.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "{} acknowledged events were never delivered, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        acked.len() > KILL_AFTER,
        "the run must go on after the restart"
    );
}

/// The environment variable that turns `subscriber_child_process` into the
/// child of `killed_subscriber_unacked_messages_go_to_the_other_member`.
const CHILD_URL: &str = "MICRO_NATS_FAULT_CHILD_URL";
const CHILD_TOPIC: &str = "faults.sigkill.jobs";
const CHILD_GROUP: &str = "sigkill-workers";
const BATCH: usize = 20;

fn child_options() -> SubscribeOptions {
    SubscribeOptions::queue(CHILD_GROUP)
        .with_manual_ack()
        .durable(CHILD_GROUP)
}

/// Not a test on its own: the subscriber process that the test below starts
/// and SIGKILLs. It acks even jobs (and flushes the acks) and holds odd ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of killed_subscriber_unacked_messages_go_to_the_other_member"]
async fn subscriber_child_process() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        panic!("{CHILD_URL} is not set: this is started by another test");
    };
    let broker = connect(&url, jetstream(Duration::from_secs(2))).await;
    let mut jobs = match broker.subscribe(CHILD_TOPIC, &child_options()).await {
        Ok(jobs) => jobs,
        Err(err) => panic!("child subscribe: {err}"),
    };
    println!("READY");
    let mut held = Vec::new();
    while let Some(Ok(mut job)) = jobs.next().await {
        let id: usize = String::from_utf8_lossy(&job.message.body)
            .parse()
            .unwrap_or(usize::MAX);
        if id.is_multiple_of(2) {
            if let Err(err) = job.ack().await {
                panic!("child ack {id}: {err}");
            }
            if let Err(err) = broker.flush(WAIT).await {
                panic!("child flush: {err}");
            }
            println!("ACKED {id}");
        } else {
            println!("HELD {id}");
            held.push(job);
        }
    }
}

/// A member of a durable group is SIGKILLed holding unacked messages; they
/// are redelivered to the group's other member, and the ones it acked are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_subscriber_unacked_messages_go_to_the_other_member() {
    let Some(server) = NatsServer::shared().await else {
        return;
    };
    let url = server.url();
    let broker = connect(&url, jetstream(Duration::from_secs(2))).await;

    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(err) => panic!("cannot find the test binary: {err}"),
    };
    let mut child = match Command::new(exe)
        .args([
            "--exact",
            "subscriber_child_process",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_URL, &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
    {
        Ok(child) => child,
        Err(err) => panic!("cannot start the subscriber process: {err}"),
    };
    let Some(stdout) = child.stdout.take() else {
        panic!("no stdout from the subscriber process");
    };
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut next_line = async || match timeout(WAIT, lines.recv()).await {
        Ok(Some(line)) => line,
        _ => panic!("the subscriber process stopped talking"),
    };
    while next_line().await != "READY" {}

    for id in 0..BATCH {
        if let Err(err) = broker
            .publish(CHILD_TOPIC, Message::new(id.to_string()))
            .await
        {
            panic!("publish job {id}: {err}");
        }
    }
    let mut held = BTreeSet::new();
    let mut acked = 0;
    while held.len() + acked < BATCH {
        let line = next_line().await;
        if let Some(id) = line.strip_prefix("HELD ") {
            held.insert(id.to_owned());
        } else if line.starts_with("ACKED ") {
            acked += 1;
        }
    }
    // SIGKILL: the child gets no chance to nack or unsubscribe.
    if let Err(err) = child.kill() {
        panic!("cannot kill the subscriber process: {err}");
    }
    let _ = child.wait();
    eprintln!(
        "subscriber process killed holding {} unacked jobs",
        held.len()
    );

    let mut survivor = match broker.subscribe(CHILD_TOPIC, &child_options()).await {
        Ok(survivor) => survivor,
        Err(err) => panic!("survivor subscribe: {err}"),
    };
    let mut redelivered = BTreeSet::new();
    while redelivered.len() < held.len() {
        let Ok(Some(Ok(mut job))) = timeout(WAIT, survivor.next()).await else {
            panic!("only {redelivered:?} of the held jobs {held:?} were redelivered");
        };
        let id = String::from_utf8_lossy(&job.message.body).into_owned();
        assert!(
            held.contains(&id),
            "job {id} was acked by the killed member but came back"
        );
        redelivered.insert(id);
        if let Err(err) = job.ack().await {
            panic!("survivor ack: {err}");
        }
    }
    // Publish order is kept: an acked job coming back would show before this.
    if let Err(err) = broker.publish(CHILD_TOPIC, Message::new("sentinel")).await {
        panic!("publish sentinel: {err}");
    }
    let Ok(Some(Ok(mut last))) = timeout(WAIT, survivor.next()).await else {
        panic!("the sentinel job did not arrive");
    };
    assert_eq!(
        last.message.body, "sentinel",
        "an extra job was redelivered"
    );
    let _ = last.ack().await;
}

/// With the server down, `publish` buffers up to the reconnect buffer and
/// then fails with `Unavailable`; what was buffered is delivered after the
/// server comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_while_disconnected_beyond_the_buffer_is_unavailable() {
    const BUFFER: usize = 10;
    let Some(server) = NatsServer::start().await else {
        return;
    };
    let broker = match NatsBroker::builder()
        .servers([server.url()])
        .reconnect_buffer(BUFFER, 1024 * 1024)
        .connect()
        .await
    {
        Ok(broker) => broker,
        Err(err) => panic!("connect: {err}"),
    };
    let topic = "faults.buffer.events";
    let mut subscription = match broker.subscribe(topic, &SubscribeOptions::fanout()).await {
        Ok(subscription) => subscription,
        Err(err) => panic!("subscribe: {err}"),
    };
    let client = match broker.client().await {
        Ok(client) => client,
        Err(err) => panic!("client: {err}"),
    };

    server.kill().await;
    let deadline = Instant::now() + WAIT;
    while client.connection_state() == async_nats::connection::State::Connected {
        assert!(
            Instant::now() < deadline,
            "the client never noticed the server died"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for i in 0..BUFFER {
        if let Err(err) = broker.publish(topic, Message::new(i.to_string())).await {
            panic!("buffered publish {i} while disconnected: {err}");
        }
    }
    let err = match broker.publish(topic, Message::new("overflow")).await {
        Ok(()) => panic!("a publish beyond the reconnect buffer was accepted"),
        Err(err) => err,
    };
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");

    server.restart().await;
    for i in 0..BUFFER {
        let Ok(Some(Ok(delivery))) = timeout(WAIT, subscription.next()).await else {
            panic!("buffered message {i} was not delivered after the reconnect");
        };
        assert_eq!(delivery.message.body, i.to_string(), "buffered message {i}");
    }
}
