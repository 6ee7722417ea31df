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
