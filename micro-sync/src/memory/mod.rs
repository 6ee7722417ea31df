//! The in-process backend: locks and elections among the tasks of one
//! process, with the same TTL and renewal behaviour as the server backends.
//!
//! [`MemoryCoordinator::shared()`] is the process-wide instance behind
//! `MICRO_SYNC=memory`; [`MemoryCoordinator::new()`] makes an isolated one.
//! It has no settings, so it has no config struct.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError},
    time::Duration,
};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::{sync::watch, time::Instant};
use tokio_stream::wrappers::WatchStream;

use crate::{
    CampaignOptions, Capabilities, Election, Error, Hold, Leader, LeaderStream, Leadership, Lease,
    Lock, LockGuard, LockOptions, Renewal, Result, election::validate_campaign,
    lock::validate_lock,
};

/// The in-process [`Lock`] and [`Election`] backend. Cloning gives another
/// handle to the same locks and roles.
///
/// ```
/// use std::time::Duration;
/// use micro_sync::{Lock, LockOptions, memory::MemoryCoordinator};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> micro_sync::Result<()> {
/// let locks = MemoryCoordinator::new();
/// let guard = locks.acquire("invoices", &LockOptions::ttl(Duration::from_secs(5))).await?;
/// let busy = locks.acquire("invoices", &LockOptions::default()).await.unwrap_err();
/// assert_eq!(busy.kind(), micro_sync::ErrorKind::Timeout);
/// guard.release().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct MemoryCoordinator {
    store: Arc<Store>,
}

#[derive(Default)]
struct Store {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    cells: HashMap<String, Cell>,
    last_token: u64,
}

/// One lock or role.
struct Cell {
    holder: Option<Holder>,
    /// The current holder as a leader, for waiters (any change may free the
    /// cell) and observers.
    changes: watch::Sender<Option<Leader>>,
}

struct Holder {
    leader: Leader,
    expires_at: Instant,
}

impl MemoryCoordinator {
    /// A new, isolated backend.
    pub fn new() -> MemoryCoordinator {
        MemoryCoordinator::default()
    }

    /// The process-wide backend, shared by every caller in this process.
    pub fn shared() -> MemoryCoordinator {
        static SHARED: OnceLock<MemoryCoordinator> = OnceLock::new();
        SHARED.get_or_init(MemoryCoordinator::new).clone()
    }

    /// Takes `key` for `candidate`, waiting until `deadline` (`None`: forever).
    async fn take(
        &self,
        key: String,
        role: &str,
        candidate: &str,
        ttl: Duration,
        deadline: Option<Instant>,
    ) -> Result<Hold> {
        loop {
            let sent = Instant::now();
            let (mut changes, expires_at) = {
                let mut state = self.store.lock();
                let state = &mut *state;
                let cell = state.cells.entry(key.clone()).or_insert_with(Cell::new);
                match &cell.holder {
                    Some(holder) if holder.expires_at > sent => {
                        (cell.changes.subscribe(), holder.expires_at)
                    }
                    _ => {
                        state.last_token += 1;
                        let leader = Leader::new(role, candidate, state.last_token);
                        cell.changes.send_replace(Some(leader.clone()));
                        cell.holder = Some(Holder {
                            leader,
                            expires_at: sent + ttl,
                        });
                        let lease = MemoryLease {
                            store: Arc::clone(&self.store),
                            key,
                            token: state.last_token,
                            ttl,
                        };
                        return Ok(Hold::start(Arc::new(lease), ttl, state.last_token, sent));
                    }
                }
            };
            if deadline.is_some_and(|deadline| deadline <= Instant::now()) {
                return Err(Error::timeout(format!("{key} is held by someone else")));
            }
            let wake = deadline.map_or(expires_at, |deadline| deadline.min(expires_at));
            tokio::select! {
                _ = changes.changed() => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}

impl fmt::Debug for MemoryCoordinator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryCoordinator")
            .field("keys", &self.store.lock().cells.len())
            .finish()
    }
}

impl Store {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the map consistent before anything
        // that could panic, so a poisoned lock still guards valid data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Cell {
    fn new() -> Cell {
        Cell {
            holder: None,
            changes: watch::channel(None).0,
        }
    }
}

fn lock_key(name: &str) -> String {
    format!("lock/{name}")
}

fn role_key(role: &str) -> String {
    format!("election/{role}")
}

#[async_trait]
impl Lock for MemoryCoordinator {
    fn scheme(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }

    async fn acquire(&self, name: &str, options: &LockOptions) -> Result<LockGuard> {
        validate_lock(name, options)?;
        let hold = self
            .take(lock_key(name), name, "", options.ttl, options.deadline())
            .await?;
        Ok(LockGuard::new(name, hold))
    }
}

#[async_trait]
impl Election for MemoryCoordinator {
    // One coordinator serves both traits: its scheme and capabilities are
    // the lock side's, stated once there.
    fn scheme(&self) -> &'static str {
        Lock::scheme(self)
    }

    fn capabilities(&self) -> Capabilities {
        Lock::capabilities(self)
    }

    async fn campaign(
        &self,
        role: &str,
        candidate: &str,
        options: &CampaignOptions,
    ) -> Result<Leadership> {
        validate_campaign(role, candidate, options)?;
        let hold = self
            .take(
                role_key(role),
                role,
                candidate,
                options.ttl,
                options.deadline(),
            )
            .await?;
        let leader = Leader::new(role, candidate, hold.token());
        Ok(Leadership::new(leader, hold))
    }

    async fn leader(&self, role: &str) -> Result<Option<Leader>> {
        crate::validate_name("role", role)?;
        let state = self.store.lock();
        let now = Instant::now();
        Ok(state
            .cells
            .get(&role_key(role))
            .and_then(|cell| cell.holder.as_ref())
            .filter(|holder| holder.expires_at > now)
            .map(|holder| holder.leader.clone()))
    }

    async fn observe(&self, role: &str) -> Result<LeaderStream> {
        crate::validate_name("role", role)?;
        let changes = {
            let mut state = self.store.lock();
            let cell = state.cells.entry(role_key(role)).or_insert_with(Cell::new);
            cell.changes.subscribe()
        };
        let leaders = WatchStream::new(changes).filter_map(|leader| async move { leader });
        Ok(crate::new_terms_only(leaders.map(Ok)).boxed())
    }
}

/// One hold in the memory backend, identified by its token.
#[derive(Debug)]
struct MemoryLease {
    store: Arc<Store>,
    key: String,
    token: u64,
    ttl: Duration,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

#[async_trait]
impl Lease for MemoryLease {
    async fn renew(&self) -> Result<Renewal> {
        let mut state = self.store.lock();
        let now = Instant::now();
        let holder = state
            .cells
            .get_mut(&self.key)
            .and_then(|cell| cell.holder.as_mut())
            .filter(|holder| holder.leader.term == self.token && holder.expires_at > now);
        Ok(match holder {
            Some(holder) => {
                holder.expires_at = now + self.ttl;
                Renewal::Held
            }
            None => Renewal::Gone,
        })
    }

    async fn release(&self) -> Result<()> {
        let mut state = self.store.lock();
        let Some(cell) = state.cells.get_mut(&self.key) else {
            return Ok(());
        };
        if cell
            .holder
            .as_ref()
            .is_some_and(|holder| holder.leader.term == self.token)
        {
            cell.holder = None;
            cell.changes.send_replace(None);
        }
        if cell.holder.is_none() && cell.changes.receiver_count() == 0 {
            state.cells.remove(&self.key);
        }
        Ok(())
    }
}
