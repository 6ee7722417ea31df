//! The behaviour every [`Lock`] and [`Election`] backend must show, as one
//! `async fn` per case, and [`sync_conformance_tests!`](crate::sync_conformance_tests)
//! to run them all as separately named tests.
//!
//! ```
//! // In a backend's tests (needs tokio with the `macros` and `rt-multi-thread` features):
//! mod memory {
//!     micro_sync::sync_conformance_tests!(async { micro_sync::memory::MemoryCoordinator::new() });
//! }
//! # fn main() {}
//! ```
//!
//! Every case uses fresh random lock and role names, so backends sharing one
//! server run cases in parallel, and releases what it took. Cases about TTL
//! expiry are skipped, with a printed message, when
//! [`Capabilities::ttl`](crate::Capabilities::ttl) is off; so are observation
//! cases without [`Capabilities::observe`](crate::Capabilities::observe).
//!
//! No case asserts a duration: each waits for the event it expects with a
//! generous timeout, and checks the safety properties (one holder at a time,
//! fencing tokens growing) on every run.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::{StreamExt, future::join_all};

use crate::{
    CampaignOptions, Election, ErrorKind, Leader, LeaderStream, Leadership, Lock, LockGuard,
    LockOptions,
};

/// How long a case waits for something it expects to happen.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// The TTL of holds that a case lets expire. Server backends round it up
/// (etcd to its minimum lease, about 2 s).
pub const SHORT_TTL: Duration = Duration::from_secs(1);

/// The TTL of holds that must not expire during a case: longer than any
/// wait in the suite, so only a release can free them in time.
pub const LONG_TTL: Duration = Duration::from_secs(60);

/// How long a case waits for an expiry: generous, for rounding and noise.
pub const EXPIRY_TIMEOUT: Duration = Duration::from_secs(30);

/// A fresh name for one case.
fn fresh(what: &str) -> String {
    format!("conf-{what}-{:016x}", rand::random::<u64>())
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(EVENT_TIMEOUT, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {EVENT_TIMEOUT:?}"))
}

async fn acquire(lock: &dyn Lock, name: &str, options: &LockOptions) -> LockGuard {
    lock.acquire(name, options)
        .await
        .unwrap_or_else(|err| panic!("acquiring {name}: {err}"))
}

fn waiting(ttl: Duration) -> LockOptions {
    LockOptions::ttl(ttl).with_wait(EVENT_TIMEOUT)
}

async fn campaign(
    election: &dyn Election,
    role: &str,
    candidate: &str,
    ttl: Duration,
) -> Leadership {
    election
        .campaign(role, candidate, &CampaignOptions::ttl(ttl))
        .await
        .unwrap_or_else(|err| panic!("{candidate} campaigning for {role}: {err}"))
}

async fn leader(election: &dyn Election, role: &str) -> Option<Leader> {
    election
        .leader(role)
        .await
        .unwrap_or_else(|err| panic!("asking for the leader of {role}: {err}"))
}

/// Asserts that `name` is held: a try-acquire fails with `Timeout`.
async fn assert_held(lock: &dyn Lock, name: &str) {
    match lock.acquire(name, &LockOptions::ttl(LONG_TTL)).await {
        Ok(guard) => panic!(
            "acquired {name} (token {}) while it was held",
            guard.token()
        ),
        Err(err) => assert_eq!(err.kind(), ErrorKind::Timeout, "{err}"),
    }
}

/// Several tasks contending for one lock take turns: never two inside at
/// once, every task gets in, and tokens grow in the order of entry.
pub async fn lock_excludes_contenders(lock: Arc<dyn Lock>) {
    const TASKS: usize = 4;
    const ROUNDS: usize = 3;
    let name = fresh("mutex");
    let inside = Arc::new(AtomicUsize::new(0));
    let entries = Arc::new(std::sync::Mutex::new(Vec::new()));
    let tasks = (0..TASKS).map(|task| {
        let (lock, name, inside, entries) = (
            Arc::clone(&lock),
            name.clone(),
            Arc::clone(&inside),
            Arc::clone(&entries),
        );
        tokio::spawn(async move {
            for _ in 0..ROUNDS {
                let guard = acquire(&*lock, &name, &waiting(LONG_TTL)).await;
                let others = inside.fetch_add(1, Ordering::SeqCst);
                assert_eq!(
                    others, 0,
                    "task {task} entered while {others} held the lock"
                );
                if let Ok(mut entries) = entries.lock() {
                    entries.push(guard.token());
                }
                // Give any wrongly admitted contender the chance to run.
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(5)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
                guard
                    .release()
                    .await
                    .unwrap_or_else(|err| panic!("releasing: {err}"));
            }
        })
    });
    for result in within("contending tasks", join_all(tasks)).await {
        if let Err(err) = result {
            std::panic::resume_unwind(err.into_panic());
        }
    }
    let entries = entries.lock().map(|e| e.clone()).unwrap_or_default();
    assert_eq!(entries.len(), TASKS * ROUNDS);
    assert!(
        entries.windows(2).all(|pair| pair[0] < pair[1]),
        "fencing tokens must grow with each holder: {entries:?}"
    );
}

/// A held lock is not acquired by a caller that does not wait, nor by one
/// whose wait runs out; both fail with `Timeout`.
pub async fn lock_busy_is_timeout(lock: Arc<dyn Lock>) {
    let name = fresh("busy");
    let guard = acquire(&*lock, &name, &LockOptions::ttl(LONG_TTL)).await;
    assert_held(&*lock, &name).await;
    let short = LockOptions::ttl(LONG_TTL).with_wait(Duration::from_millis(200));
    let err = lock.acquire(&name, &short).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    guard.release().await.expect("release");
}

/// Dropping the guard releases the lock long before its TTL would.
pub async fn lock_released_on_drop(lock: Arc<dyn Lock>) {
    let name = fresh("drop");
    let first = acquire(&*lock, &name, &LockOptions::ttl(LONG_TTL)).await;
    let first_token = first.token();
    drop(first);
    let second = acquire(&*lock, &name, &waiting(LONG_TTL)).await;
    assert!(second.token() > first_token);
    second.release().await.expect("release");
}

/// An explicit release frees the lock at once for the next caller.
pub async fn lock_released_explicitly(lock: Arc<dyn Lock>) {
    let name = fresh("release");
    let first = acquire(&*lock, &name, &LockOptions::ttl(LONG_TTL)).await;
    first.release().await.expect("release");
    let second = acquire(&*lock, &name, &waiting(LONG_TTL)).await;
    second.release().await.expect("release");
}

/// A waiter that gave up leaves nothing queued: once the holder releases,
/// a new caller gets the lock without waiting for the quitter's TTL.
pub async fn lock_timed_out_waiter_leaves_nothing(lock: Arc<dyn Lock>) {
    let name = fresh("quitter");
    let holder = acquire(&*lock, &name, &LockOptions::ttl(LONG_TTL)).await;
    let short = LockOptions::ttl(LONG_TTL).with_wait(Duration::from_millis(300));
    let err = lock.acquire(&name, &short).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    holder.release().await.expect("release");
    let next = acquire(&*lock, &name, &waiting(LONG_TTL)).await;
    next.release().await.expect("release");
}

/// A holder that stops renewing loses the lock once its TTL lapses: a waiter
/// gets it, the old holder's `lost()` fires, and the old holder's release does
/// not free the new holder's lock.
pub async fn lock_expires_when_holder_stops_refreshing(lock: Arc<dyn Lock>) {
    if !lock.capabilities().ttl {
        eprintln!("skipping lock_expires_when_holder_stops_refreshing: no TTL support");
        return;
    }
    let name = fresh("expiry");
    let stale = acquire(&*lock, &name, &LockOptions::ttl(SHORT_TTL)).await;
    stale.stop_refreshing();
    let wait = LockOptions::ttl(LONG_TTL).with_wait(EXPIRY_TIMEOUT);
    let fresh_guard = acquire(&*lock, &name, &wait).await;
    assert!(fresh_guard.token() > stale.token());
    let loss = within("the stale holder's loss", stale.lost()).await;
    assert!(
        matches!(loss.kind(), ErrorKind::Unavailable | ErrorKind::Aborted),
        "{loss}"
    );
    assert!(stale.is_lost());
    stale
        .release()
        .await
        .expect("releasing a lost lock is not an error");
    assert_held(&*lock, &name).await;
    fresh_guard.release().await.expect("release");
}

/// A holder that keeps renewing keeps the lock well past its TTL.
pub async fn lock_renewal_outlives_ttl(lock: Arc<dyn Lock>) {
    if !lock.capabilities().ttl {
        eprintln!("skipping lock_renewal_outlives_ttl: no TTL support");
        return;
    }
    let name = fresh("renew");
    let guard = acquire(&*lock, &name, &LockOptions::ttl(SHORT_TTL)).await;
    // Not a synchronisation: the case is about time passing. Three TTLs (the
    // server may round the TTL up; renewals still have to happen).
    tokio::time::sleep(SHORT_TTL * 3).await;
    assert!(!guard.is_lost(), "a renewed lock was lost");
    assert_held(&*lock, &name).await;
    guard.release().await.expect("release");
}

/// Bad names and TTLs are `InvalidArgument`, before any server is asked.
pub async fn bad_arguments_are_invalid(lock: Arc<dyn Lock>, election: Arc<dyn Election>) {
    for name in ["", "has space", ".dot"] {
        let err = lock
            .acquire(name, &LockOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{name:?}: {err}");
        let err = election.leader(name).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{name:?}: {err}");
    }
    let err = lock
        .acquire(&fresh("ttl"), &LockOptions::ttl(Duration::ZERO))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let err = election
        .campaign(&fresh("role"), "", &CampaignOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
}

/// One leader at a time; on resign the waiting candidate takes over with a
/// larger term, and `leader()` reports each.
pub async fn election_hands_over_on_resign(election: Arc<dyn Election>) {
    let role = fresh("handover");
    assert_eq!(leader(&*election, &role).await, None);
    let first = campaign(&*election, &role, "first", LONG_TTL).await;
    assert_eq!(
        leader(&*election, &role).await.map(|l| l.candidate),
        Some("first".to_owned())
    );

    let mut second = {
        let (election, role) = (Arc::clone(&election), role.clone());
        tokio::spawn(async move { campaign(&*election, &role, "second", LONG_TTL).await })
    };
    // While the first leads, the second must still be campaigning.
    let early = tokio::time::timeout(Duration::from_millis(300), &mut second).await;
    assert!(
        early.is_err(),
        "a second leader was elected while the first led"
    );
    assert_eq!(
        leader(&*election, &role).await.map(|l| l.candidate),
        Some("first".to_owned())
    );

    let first_term = first.term();
    first.resign().await.expect("resign");
    let second = within("the second candidate's election", second)
        .await
        .expect("campaign task");
    assert!(second.term() > first_term);
    assert_eq!(
        leader(&*election, &role).await,
        Some(second.leader().clone())
    );
    second.resign().await.expect("resign");
    assert_eq!(leader(&*election, &role).await, None);
}

/// Dropping a leadership resigns it.
pub async fn election_resigns_on_drop(election: Arc<dyn Election>) {
    let role = fresh("dropped");
    let first = campaign(&*election, &role, "first", LONG_TTL).await;
    drop(first);
    let second = within(
        "election after the leader was dropped",
        campaign(&*election, &role, "second", LONG_TTL),
    )
    .await;
    second.resign().await.expect("resign");
}

/// A campaign that gives up leaves no candidacy behind: it never becomes
/// leader later.
pub async fn election_abandoned_campaign_leaves_nothing(election: Arc<dyn Election>) {
    let role = fresh("abandoned");
    let first = campaign(&*election, &role, "first", LONG_TTL).await;
    let options = CampaignOptions::ttl(LONG_TTL).with_wait(Duration::from_millis(300));
    let err = election
        .campaign(&role, "quitter", &options)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    first.resign().await.expect("resign");
    assert_eq!(leader(&*election, &role).await, None);
}

async fn next_leader(leaders: &mut LeaderStream) -> Leader {
    match within("a leader on the observe stream", leaders.next()).await {
        Some(Ok(leader)) => leader,
        Some(Err(err)) => panic!("observe failed: {err}"),
        None => panic!("observe ended"),
    }
}

/// An observer learns each new leader, including one that took over after
/// a resignation.
pub async fn election_observer_learns_new_leader(election: Arc<dyn Election>) {
    if !election.capabilities().observe {
        eprintln!("skipping election_observer_learns_new_leader: no observe support");
        return;
    }
    let role = fresh("observed");
    let mut leaders = election.observe(&role).await.expect("observe");
    let first = campaign(&*election, &role, "first", LONG_TTL).await;
    assert_eq!(&next_leader(&mut leaders).await, first.leader());

    let second = {
        let (election, role) = (Arc::clone(&election), role.clone());
        tokio::spawn(async move { campaign(&*election, &role, "second", LONG_TTL).await })
    };
    first.resign().await.expect("resign");
    let seen = next_leader(&mut leaders).await;
    assert_eq!(seen.candidate, "second");
    let second = within("the second election", second)
        .await
        .expect("campaign task");
    assert_eq!(&seen, second.leader());
    second.resign().await.expect("resign");
}

/// A leader that stops renewing is told it lost leadership once its session
/// expires, and a waiting candidate takes over.
pub async fn election_loss_reported_on_expiry(election: Arc<dyn Election>) {
    if !election.capabilities().ttl {
        eprintln!("skipping election_loss_reported_on_expiry: no TTL support");
        return;
    }
    let role = fresh("expiring");
    let stale = campaign(&*election, &role, "stale", SHORT_TTL).await;
    let next = {
        let (election, role) = (Arc::clone(&election), role.clone());
        tokio::spawn(async move { campaign(&*election, &role, "next", LONG_TTL).await })
    };
    stale.stop_refreshing();
    let loss = tokio::time::timeout(EXPIRY_TIMEOUT, stale.lost())
        .await
        .expect("leadership loss reported");
    assert!(
        matches!(loss.kind(), ErrorKind::Unavailable | ErrorKind::Aborted),
        "{loss}"
    );
    let next = tokio::time::timeout(EXPIRY_TIMEOUT, next)
        .await
        .expect("a new leader after expiry")
        .expect("campaign task");
    assert!(next.term() > stale.term());
    assert_eq!(leader(&*election, &role).await, Some(next.leader().clone()));
    stale
        .resign()
        .await
        .expect("resigning lost leadership is not an error");
    assert_eq!(leader(&*election, &role).await, Some(next.leader().clone()));
    next.resign().await.expect("resign");
}

/// Expands into one `#[tokio::test]` per conformance case for the backend
/// that `$make` builds: an expression evaluating to a future of a `Clone`
/// type implementing both `Lock` and `Election`. Each test builds its own.
///
/// For a backend that needs a server which may be missing, write
/// `sync_conformance_tests!(optional: async { ... })` with a future of an
/// `Option` of the backend: `None` (the server fixture already printed why)
/// ends the test early.
#[macro_export]
macro_rules! sync_conformance_tests {
    (optional: $make:expr) => {
        $crate::sync_conformance_tests!(@cases $make;
            lock_excludes_contenders,
            lock_busy_is_timeout,
            lock_released_on_drop,
            lock_released_explicitly,
            lock_timed_out_waiter_leaves_nothing,
            lock_expires_when_holder_stops_refreshing,
            lock_renewal_outlives_ttl,
            election_hands_over_on_resign,
            election_resigns_on_drop,
            election_abandoned_campaign_leaves_nothing,
            election_observer_learns_new_leader,
            election_loss_reported_on_expiry,
        );
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn bad_arguments_are_invalid() {
            let Some(backend) = $make.await else { return };
            $crate::conformance::bad_arguments_are_invalid(
                ::std::sync::Arc::new(backend.clone()),
                ::std::sync::Arc::new(backend),
            )
            .await;
        }
    };
    (@cases $make:expr; $($case:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(backend) = $make.await else { return };
                $crate::conformance::$case(::std::sync::Arc::new(backend)).await;
            }
        )*
    };
    ($make:expr) => {
        $crate::sync_conformance_tests!(optional: async { Some($make.await) });
    };
}
