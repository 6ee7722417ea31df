//! `Service::run` on SIGTERM: deregisters, lets the call in flight finish and
//! returns `Ok`. In its own test binary because it signals its own process.

#![cfg(unix)]

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use micro::{
    ErrorKind,
    registry::{
        DynRegistry, EventKind, Registry, WatchOptions, WatchStream, memory::MemoryRegistry,
    },
    transport::http::HttpTransport,
};
use tokio::sync::{Notify, mpsc};

const WAIT: Duration = Duration::from_secs(10);

async fn wait_for(watch: &mut WatchStream, kind: EventKind) {
    loop {
        match tokio::time::timeout(WAIT, watch.next()).await {
            Ok(Some(Ok(event))) if event.kind == kind => return,
            Ok(Some(Ok(_))) => continue,
            other => panic!("no {kind:?} event: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_deregisters_drains_and_returns_ok() {
    let registry: DynRegistry = Arc::new(MemoryRegistry::new());
    let mut watch = registry
        .watch(&WatchOptions::service("terminated"))
        .await
        .unwrap();
    let (entered_tx, mut entered_rx) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let release_handler = release.clone();
    let service = micro::Service::builder("terminated")
        .registry(registry.clone())
        .transport(HttpTransport::new())
        .handle("Terminated.Slow", move |_ctx, (): ()| {
            let entered = entered_tx.clone();
            let release = release_handler.clone();
            async move {
                let _ = entered.send(());
                release.notified().await;
                Ok("finished".to_owned())
            }
        })
        .build()
        .unwrap();
    let client = service.client();
    let run = tokio::spawn(service.run());
    wait_for(&mut watch, EventKind::Create).await;

    let call = tokio::spawn(async move {
        client
            .call::<_, String>("terminated", "Terminated.Slow", &())
            .await
    });
    tokio::time::timeout(WAIT, entered_rx.recv())
        .await
        .expect("the call reaches the handler");

    let pid = std::process::id().to_string();
    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(status.success());

    // Deregistered while the call is still in flight.
    wait_for(&mut watch, EventKind::Delete).await;
    let err = registry.get_service("terminated").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(!call.is_finished());

    release.notify_one();
    let reply = tokio::time::timeout(WAIT, call).await.unwrap().unwrap();
    assert_eq!(reply.unwrap(), "finished");
    let ran = tokio::time::timeout(WAIT, run).await.unwrap().unwrap();
    assert!(ran.is_ok(), "{ran:?}");
}
