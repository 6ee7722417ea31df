use std::{
    collections::{HashMap, VecDeque},
    fmt,
    future::Future,
    hash::Hash,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use futures::{FutureExt, future::BoxFuture};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::KeyedConfig;
use crate::{Error, Result};

/// A worker pool that runs items with the same key one after another, in the
/// order they were submitted, and items with different keys in parallel.
///
/// See the [module documentation](super) for the guarantees. Clones share
/// one pool.
pub struct KeyedPool<K> {
    shared: Arc<Shared<K>>,
}

impl<K> Clone for KeyedPool<K> {
    fn clone(&self) -> KeyedPool<K> {
        KeyedPool {
            shared: Arc::clone(&self.shared),
        }
    }
}

struct Shared<K> {
    config: KeyedConfig,
    /// The keys in flight, each with the items waiting behind the one running.
    /// A key is present exactly while a runner task serves it.
    queues: Mutex<HashMap<K, VecDeque<Job>>>,
    /// One permit per item allowed to run at once.
    running: Arc<Semaphore>,
    /// One permit per key allowed in flight; a runner holds its key's permit.
    key_slots: Arc<Semaphore>,
    /// One permit per item held (queued or running); a job holds its own.
    room: Arc<Semaphore>,
    /// Cancelled by [`KeyedPool::abort`]: runners drop what they hold.
    abort: CancellationToken,
}

struct Job {
    work: BoxFuture<'static, ()>,
    /// Released when the job is done or dropped, making room for the next.
    _room: OwnedSemaphorePermit,
}

impl<K: Hash + Eq + Clone + Send + 'static> KeyedPool<K> {
    /// A pool with the given limits (normalised with [`KeyedConfig::normalized`]).
    pub fn new(config: KeyedConfig) -> KeyedPool<K> {
        let config = config.normalized();
        KeyedPool {
            shared: Arc::new(Shared {
                running: Arc::new(Semaphore::new(config.concurrency)),
                key_slots: Arc::new(Semaphore::new(config.max_keys)),
                room: Arc::new(Semaphore::new(config.buffer)),
                queues: Mutex::new(HashMap::new()),
                abort: CancellationToken::new(),
                config,
            }),
        }
    }

    /// A pool running `concurrency` items at once, other limits derived from it.
    pub fn with_concurrency(concurrency: usize) -> KeyedPool<K> {
        KeyedPool::new(KeyedConfig::with_concurrency(concurrency))
    }

    /// The limits this pool applies.
    pub fn config(&self) -> &KeyedConfig {
        &self.shared.config
    }

    /// Queues `work` under `key`. It starts once every item submitted before
    /// it under the same key has finished, and once fewer than
    /// [`concurrency`](KeyedConfig::concurrency) items are running.
    ///
    /// Waits (back-pressure) while the pool holds
    /// [`buffer`](KeyedConfig::buffer) items, or while `key` is new and
    /// [`max_keys`](KeyedConfig::max_keys) keys are in flight. Returns once
    /// the work is queued, not once it ran. A panic in `work` is caught and
    /// logged; the key's next item still runs. Fails with
    /// [`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled) after
    /// [`abort`](KeyedPool::abort), and then `work` is dropped unrun.
    pub async fn submit<F>(&self, key: K, work: F) -> Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let shared = &self.shared;
        let room = tokio::select! {
            biased;
            () = shared.abort.cancelled() => return Err(aborted()),
            permit = Arc::clone(&shared.room).acquire_owned() => permit.map_err(|_| aborted())?,
        };
        let job = Job {
            work: work.boxed(),
            _room: room,
        };
        let job = match shared.queue_behind_runner(&key, job) {
            Ok(()) => return Ok(()),
            Err(job) => job,
        };
        // A new key: wait for a key slot without holding the lock, then look
        // again, since another submitter may have started this key meanwhile.
        let slot = tokio::select! {
            biased;
            () = shared.abort.cancelled() => return Err(aborted()),
            permit = Arc::clone(&shared.key_slots).acquire_owned() => permit.map_err(|_| aborted())?,
        };
        let mut queues = shared.lock();
        if let Some(queue) = queues.get_mut(&key) {
            queue.push_back(job);
            return Ok(());
        }
        queues.insert(key.clone(), VecDeque::from([job]));
        drop(queues);
        tokio::spawn(Arc::clone(shared).run_key(key, slot));
        Ok(())
    }

    /// Waits until every submitted item has finished (or was dropped by
    /// [`abort`](KeyedPool::abort)). Submits made while it waits are held
    /// back until it returns.
    pub async fn idle(&self) {
        let all = u32::try_from(self.shared.config.buffer).unwrap_or(u32::MAX);
        // Holding every unit of room means nothing is queued or running.
        if let Ok(permits) = self.shared.room.acquire_many(all).await {
            drop(permits);
        }
    }

    /// Cancels the pool: running items are dropped at their next await point,
    /// queued ones are dropped unrun, and later [`submit`](KeyedPool::submit)s fail.
    pub fn abort(&self) {
        self.shared.abort.cancel();
    }

    /// How many distinct keys have items queued or running right now.
    pub fn keys_in_flight(&self) -> usize {
        self.shared.lock().len()
    }
}

impl<K: Hash + Eq + Clone + Send + 'static> Shared<K> {
    fn lock(&self) -> MutexGuard<'_, HashMap<K, VecDeque<Job>>> {
        // No code holding this lock can panic half-way through a change.
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `job` behind the runner of `key` if it has one; hands the job
    /// back otherwise.
    fn queue_behind_runner(&self, key: &K, job: Job) -> std::result::Result<(), Job> {
        match self.lock().get_mut(key) {
            Some(queue) => {
                queue.push_back(job);
                Ok(())
            }
            None => Err(job),
        }
    }

    /// Serves one key: runs its jobs in order until its queue is empty, then
    /// gives the key (and its slot) up.
    async fn run_key(self: Arc<Self>, key: K, _slot: OwnedSemaphorePermit) {
        loop {
            let job = {
                let mut queues = self.lock();
                let next = queues.get_mut(&key).and_then(VecDeque::pop_front);
                if next.is_none() {
                    // Removed under the same lock submitters look under, so
                    // an item is either seen by this runner or starts a new one.
                    queues.remove(&key);
                }
                next
            };
            let Some(job) = job else { return };
            if self.abort.is_cancelled() {
                drop(job);
                continue;
            }
            let running = tokio::select! {
                biased;
                () = self.abort.cancelled() => continue,
                permit = self.running.acquire() => permit,
            };
            let Ok(_running) = running else { continue };
            tokio::select! {
                biased;
                () = self.abort.cancelled() => {}
                outcome = AssertUnwindSafe(job.work).catch_unwind() => {
                    if outcome.is_err() {
                        tracing::error!("a keyed pool item panicked; the key's next item runs");
                    }
                }
            }
        }
    }
}

fn aborted() -> Error {
    Error::new(crate::ErrorKind::Cancelled, "the keyed pool was aborted")
}

impl<K> fmt::Debug for KeyedPool<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedPool")
            .field("config", &self.shared.config)
            .field("aborted", &self.shared.abort.is_cancelled())
            .finish_non_exhaustive()
    }
}
