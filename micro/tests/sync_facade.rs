//! `micro::sync` is micro-sync: a service reaches locks and elections
//! through the facade, with the memory backend of the default features.

#![cfg(feature = "sync-memory")]

use std::time::Duration;

use micro::sync::{
    CampaignOptions, DynElection, DynLock, Election, Lock, LockOptions, memory::MemoryCoordinator,
};

#[tokio::test]
async fn locks_and_elections_through_the_facade() {
    let backend = MemoryCoordinator::new();
    let locks: DynLock = std::sync::Arc::new(backend.clone());
    let elections: DynElection = std::sync::Arc::new(backend);

    let guard = locks
        .acquire("jobs", &LockOptions::ttl(Duration::from_secs(5)))
        .await
        .unwrap();
    let busy = locks
        .acquire("jobs", &LockOptions::default())
        .await
        .unwrap_err();
    assert_eq!(busy.kind(), micro::ErrorKind::Timeout);
    guard.release().await.unwrap();

    let leadership = elections
        .campaign("scheduler", "node-1", &CampaignOptions::default())
        .await
        .unwrap();
    let leader = elections.leader("scheduler").await.unwrap().unwrap();
    assert_eq!(
        (leader.candidate.as_str(), leader.term),
        ("node-1", leadership.term())
    );
    leadership.resign().await.unwrap();
    assert_eq!(elections.leader("scheduler").await.unwrap(), None);
}

#[tokio::test]
async fn the_environment_picks_the_backend() {
    use std::collections::HashMap;

    let lookup = |vars: HashMap<&'static str, &'static str>| {
        move |name: &str| vars.get(name).map(|value| value.to_string())
    };
    let backend = micro::sync_env::sync_from_lookup(lookup(HashMap::new()))
        .await
        .unwrap();
    assert_eq!(backend.lock.scheme(), "memory");
    assert_eq!(backend.election.scheme(), "memory");

    let err = micro::sync_env::sync_from_lookup(lookup(HashMap::from([("MICRO_SYNC", "zk")])))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), micro::ErrorKind::InvalidArgument);

    // Without the feature, naming the backend says which feature is missing.
    #[cfg(not(feature = "sync-etcd"))]
    {
        let err =
            micro::sync_env::sync_from_lookup(lookup(HashMap::from([("MICRO_SYNC", "etcd")])))
                .await
                .unwrap_err();
        assert_eq!(err.kind(), micro::ErrorKind::FailedPrecondition);
        assert!(err.message().contains("sync-etcd"), "{err}");
    }
}

#[cfg(feature = "sync-nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn micro_sync_nats_from_the_environment_takes_real_locks() {
    let Some(nats) = micro_test_servers::NatsServer::shared().await else {
        return;
    };
    let url = nats.url();
    let backend = micro::sync_env::sync_from_lookup(move |name| match name {
        "MICRO_SYNC" => Some("nats".to_owned()),
        "MICRO_SYNC_ADDRESS" => Some(url.clone()),
        _ => None,
    })
    .await
    .unwrap();
    assert_eq!(backend.lock.scheme(), "nats");
    let guard = backend
        .lock
        .acquire("facade-env", &LockOptions::ttl(Duration::from_secs(5)))
        .await
        .unwrap();
    let busy = backend
        .lock
        .acquire("facade-env", &LockOptions::default())
        .await
        .unwrap_err();
    assert_eq!(busy.kind(), micro::ErrorKind::Timeout);
    guard.release().await.unwrap();
}
