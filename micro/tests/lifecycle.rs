//! A service's life: hooks in order, re-registration (also through registry
//! failures), and stop() draining in-flight calls after deregistering.

mod common;

use std::{
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use common::{Kind, WAIT, World};
use futures::StreamExt;
use micro::{
    Error, ErrorKind, Result,
    registry::{
        Capabilities, EventKind, RegisterOptions, Registry, Service, WatchOptions, WatchStream,
        memory::MemoryRegistry,
    },
};
use tokio::sync::{Notify, mpsc};

async fn stop_drains_in_flight_calls_after_deregistering(kind: Kind) {
    let world = World::new(kind);
    let (entered_tx, mut entered_rx) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let release_handler = release.clone();
    let mut watch = world
        .registry
        .watch(&WatchOptions::service("slow"))
        .await
        .unwrap();
    let running = world
        .service("slow")
        .handle("Slow.Wait", move |_ctx, (): ()| {
            let entered = entered_tx.clone();
            let release = release_handler.clone();
            async move {
                let _ = entered.send(());
                release.notified().await;
                Ok("done".to_owned())
            }
        })
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let address = running.address().to_owned();
    let client = world.client();
    let call = {
        let client = client.clone();
        tokio::spawn(async move { client.call::<_, String>("slow", "Slow.Wait", &()).await })
    };
    tokio::time::timeout(WAIT, entered_rx.recv())
        .await
        .expect("the call reaches the handler");

    let stop = tokio::spawn(running.stop());
    wait_for(&mut watch, EventKind::Delete).await;
    let err = world.registry.get_service("slow").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(!call.is_finished());

    release.notify_one();
    let reply = tokio::time::timeout(WAIT, call).await.unwrap().unwrap();
    assert_eq!(reply.unwrap(), "done");
    tokio::time::timeout(WAIT, stop)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    // Stopped means stopped: the address no longer answers.
    let err = client
        .request::<_, String>("", "Slow.Wait")
        .address(address)
        .retries(0)
        .timeout(Duration::from_secs(2))
        .send(&())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

async fn wait_for(watch: &mut WatchStream, kind: EventKind) {
    loop {
        match tokio::time::timeout(WAIT, watch.next()).await {
            Ok(Some(Ok(event))) if event.kind == kind => return,
            Ok(Some(Ok(_))) => continue,
            other => panic!("no {kind:?} event: {other:?}"),
        }
    }
}

async fn hooks_run_in_order(kind: Kind) {
    let world = World::new(kind);
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let entry = |log: &Arc<Mutex<Vec<String>>>, text: String| {
        log.lock().unwrap().push(text);
    };
    let (l1, l2, l3, l4) = (log.clone(), log.clone(), log.clone(), log.clone());
    let running = world
        .service("hooked")
        .before_start(move || {
            entry(&l1, "before_start".into());
            async { Ok(()) }
        })
        .after_start(move |running| {
            entry(
                &l2,
                format!("after_start {}", !running.address().is_empty()),
            );
            async { Ok(()) }
        })
        .before_stop(move |running| {
            entry(&l3, format!("before_stop {}", running.name()));
            async { Ok(()) }
        })
        .after_stop(move || {
            entry(&l4, "after_stop".into());
            async { Ok(()) }
        })
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    assert_eq!(*log.lock().unwrap(), ["before_start", "after_start true"]);
    running.stop().await.unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        [
            "before_start",
            "after_start true",
            "before_stop hooked",
            "after_stop"
        ]
    );
}

async fn a_failing_hook_fails_start_and_leaves_nothing_registered(kind: Kind) {
    let world = World::new(kind);
    let err = world
        .service("refused")
        .before_start(|| async { Err(Error::failed_precondition("not today")) })
        .build()
        .unwrap()
        .start()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FailedPrecondition);

    let err = world
        .service("refused")
        .after_start(|_running| async { Err(Error::failed_precondition("changed my mind")) })
        .build()
        .unwrap()
        .start()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
    let err = world.registry.get_service("refused").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

on_every_transport!(
    stop_drains_in_flight_calls_after_deregistering,
    hooks_run_in_order,
    a_failing_hook_fails_start_and_leaves_nothing_registered,
);

/// A memory registry that reports every registration and fails the ones it is told to.
#[derive(Clone)]
struct FlakyRegistry {
    inner: MemoryRegistry,
    failures_left: Arc<AtomicUsize>,
    registrations: mpsc::UnboundedSender<bool>,
}

impl fmt::Debug for FlakyRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlakyRegistry").finish_non_exhaustive()
    }
}

#[async_trait]
impl Registry for FlakyRegistry {
    fn scheme(&self) -> &'static str {
        "flaky"
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn register(&self, service: &Service, options: &RegisterOptions) -> Result<()> {
        let fail = self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        let _ = self.registrations.send(!fail);
        if fail {
            return Err(Error::unavailable("the registry is down"));
        }
        self.inner.register(service, options).await
    }
    async fn deregister(&self, service: &Service) -> Result<()> {
        self.inner.deregister(service).await
    }
    async fn get_service(&self, name: &str) -> Result<Vec<Service>> {
        self.inner.get_service(name).await
    }
    async fn list_services(&self) -> Result<Vec<Service>> {
        self.inner.list_services().await
    }
    async fn watch(&self, options: &WatchOptions) -> Result<WatchStream> {
        self.inner.watch(options).await
    }
}

async fn next_registration(rx: &mut mpsc::UnboundedReceiver<bool>) -> bool {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a registration within the wait")
        .expect("the registry is alive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_registration_goes_on_through_registry_failures() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let registry = FlakyRegistry {
        inner: MemoryRegistry::new(),
        failures_left: Arc::new(AtomicUsize::new(0)),
        registrations: tx,
    };
    let world = World::new(Kind::Memory);
    let running = world
        .service("heartbeat")
        .registry(registry.clone())
        .register_ttl(Duration::from_secs(5))
        .register_interval(Duration::from_millis(50))
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    assert!(next_registration(&mut rx).await, "the first registration");
    assert!(next_registration(&mut rx).await, "a renewal");

    registry.failures_left.store(3, Ordering::SeqCst);
    let mut outcomes = Vec::new();
    loop {
        let ok = next_registration(&mut rx).await;
        outcomes.push(ok);
        if ok {
            break;
        }
    }
    assert_eq!(outcomes, [false, false, false, true]);
    let nodes = registry.get_service("heartbeat").await.unwrap();
    assert_eq!(nodes[0].nodes[0].id, running.node_id());
    running.stop().await.unwrap();
    let err = registry.get_service("heartbeat").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[test]
fn build_refuses_inconsistent_settings() {
    let world = World::new(Kind::Memory);
    let err = world.service(" ").build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);

    let err = world
        .service("svc")
        .register_ttl(Duration::from_secs(10))
        .register_interval(Duration::from_secs(10))
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);

    let err = world
        .service("svc")
        .handle("Svc.Call", |_ctx, (): ()| async { Ok(()) })
        .handle("Svc.Call", |_ctx, (): ()| async { Ok(()) })
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert!(err.message().contains("Svc.Call"), "{err}");

    let err = world
        .service("svc")
        .configure_client(|client| client.content_type(micro::ContentType::Protobuf))
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn the_service_client_takes_the_configured_options() {
    let world = World::new(Kind::Memory);
    let service = world
        .service("svc")
        .configure_client(|client| client.timeout(Duration::from_millis(250)).retries(0))
        .build()
        .unwrap();
    assert_eq!(service.client().timeout(), Duration::from_millis(250));
    assert_eq!(service.client().retries(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_chooses_backends_and_the_listen_address() {
    let vars = std::collections::HashMap::from([
        ("MICRO_TRANSPORT", "memory"),
        ("MICRO_TRANSPORT_ADDRESS", "memory://env-chosen"),
    ]);
    let env =
        micro::env::EnvConfig::from_lookup(|name| vars.get(name).map(|v| v.to_string())).unwrap();
    let service = micro::Service::builder("env-chosen")
        .registry(MemoryRegistry::new())
        .handle("Env.Ping", |_ctx, (): ()| async { Ok("pong".to_owned()) })
        .build_from(&env)
        .unwrap();
    assert_eq!(service.transport().scheme(), "memory");
    assert_eq!(service.registry().scheme(), "memory");
    let running = service.start().await.unwrap();
    assert_eq!(running.address(), "env-chosen");
    let pong: String = running
        .client()
        .call("env-chosen", "Env.Ping", &())
        .await
        .unwrap();
    assert_eq!(pong, "pong");
    running.stop().await.unwrap();
}
