use std::{
    collections::{HashMap, VecDeque},
    fmt,
    future::{Future, poll_fn},
    hash::Hash,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Waker},
};

use futures::task::AtomicWaker;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::KeyedConfig;
use crate::{Error, Result};

/// A worker pool that runs items with the same key one after another, in the
/// order they were submitted, and items with different keys in parallel.
///
/// See the [module documentation](super) for the guarantees. Clones share
/// one pool.
///
/// Items run on at most [`concurrency`](KeyedConfig::concurrency) worker
/// tasks, started as work arrives and kept, parked, while the pool is idle;
/// they end once every clone of the pool is dropped and nothing is left to
/// run. Each worker takes the next key from a queue of keys that have an
/// item ready, runs that key's oldest item, and puts the key back at the end
/// of the queue if it has more: a key is in that queue or on a worker, never
/// both and never twice, which is what keeps its items in order.
pub struct KeyedPool<K> {
    handle: Arc<Handle<K>>,
}

impl<K> Clone for KeyedPool<K> {
    fn clone(&self) -> KeyedPool<K> {
        KeyedPool {
            handle: Arc::clone(&self.handle),
        }
    }
}

/// Held by every clone of a pool; when the last one goes, idle workers end.
struct Handle<K> {
    shared: Arc<Shared<K>>,
}

impl<K> Drop for Handle<K> {
    fn drop(&mut self) {
        let parked = {
            let mut state = self.shared.lock();
            state.closed = true;
            std::mem::take(&mut state.parked)
        };
        parked.into_iter().for_each(|(_, waker)| waker.wake());
    }
}

struct Shared<K> {
    config: KeyedConfig,
    state: Mutex<State<K>>,
    /// One permit per item held (queued or running); a job holds its own.
    /// A fair semaphore, so [`KeyedPool::idle`] holds later submits back.
    room: Arc<Semaphore>,
    /// Signalled when a key leaves while a submitter waits for a key slot.
    key_freed: Notify,
    /// Set by [`KeyedPool::abort`]; read before every poll of an item.
    aborted: AtomicBool,
    /// Cancelled with `aborted`, to wake submitters waiting for room.
    abort: CancellationToken,
    /// The waker of the item each worker seat is running, so that an abort
    /// reaches items waiting on something that may never come.
    running: Box<[AtomicWaker]>,
}

struct State<K> {
    /// The keys in flight, each with the items waiting behind the one
    /// running. A key is present exactly while it is in `ready` or on a worker.
    keys: HashMap<K, VecDeque<Job>>,
    /// Keys with an item ready to run, in the order they became ready.
    ready: VecDeque<K>,
    /// Idle workers, by seat, waiting for a ready key.
    parked: Vec<(usize, Waker)>,
    /// Worker seats with no worker task; at most `concurrency` workers exist.
    free_seats: Vec<usize>,
    /// By seat: the worker was woken or started to take a ready key and has
    /// not looked yet.
    on_the_way: Vec<bool>,
    /// How many workers are on their way; no more are woken while they
    /// outnumber the ready keys.
    arriving: usize,
    /// Emptied queues of keys that left, reused for keys that come.
    spare_queues: Vec<VecDeque<Job>>,
    /// How many spare queues are kept (one per worker).
    spare_limit: usize,
    /// Submitters waiting for a key slot.
    key_waiters: usize,
    /// Every clone of the pool is gone: workers end once nothing is ready.
    closed: bool,
}

struct Job {
    work: Pin<Box<dyn Future<Output = ()> + Send + 'static>>,
    /// Released when the job is dropped unrun, or once it ran and its key
    /// was settled, making room for the next; so once [`KeyedPool::idle`]
    /// returns, no key is left in flight either.
    room: OwnedSemaphorePermit,
}

impl<K: Hash + Eq + Clone + Send + 'static> KeyedPool<K> {
    /// A pool with the given limits (normalised with [`KeyedConfig::normalized`]).
    pub fn new(config: KeyedConfig) -> KeyedPool<K> {
        let config = config.normalized();
        let shared = Shared {
            room: Arc::new(Semaphore::new(config.buffer)),
            state: Mutex::new(State {
                keys: HashMap::new(),
                ready: VecDeque::new(),
                parked: Vec::new(),
                free_seats: (0..config.concurrency).rev().collect(),
                on_the_way: vec![false; config.concurrency],
                arriving: 0,
                spare_queues: Vec::new(),
                spare_limit: config.concurrency,
                key_waiters: 0,
                closed: false,
            }),
            key_freed: Notify::new(),
            aborted: AtomicBool::new(false),
            abort: CancellationToken::new(),
            running: (0..config.concurrency)
                .map(|_| AtomicWaker::new())
                .collect(),
            config,
        };
        KeyedPool {
            handle: Arc::new(Handle {
                shared: Arc::new(shared),
            }),
        }
    }

    /// A pool running `concurrency` items at once, other limits derived from it.
    pub fn with_concurrency(concurrency: usize) -> KeyedPool<K> {
        KeyedPool::new(KeyedConfig::with_concurrency(concurrency))
    }

    /// The limits this pool applies.
    pub fn config(&self) -> &KeyedConfig {
        &self.shared().config
    }

    fn shared(&self) -> &Arc<Shared<K>> {
        &self.handle.shared
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
        let shared = self.shared();
        if shared.is_aborted() {
            return Err(aborted());
        }
        let room = match Arc::clone(&shared.room).try_acquire_owned() {
            Ok(room) => room,
            Err(_) => tokio::select! {
                biased;
                () = shared.abort.cancelled() => return Err(aborted()),
                permit = Arc::clone(&shared.room).acquire_owned() => permit.map_err(|_| aborted())?,
            },
        };
        let mut job = Job {
            work: Box::pin(work),
            room,
        };
        let mut waiter = KeyWaiter {
            shared,
            registered: false,
        };
        job = match shared.enqueue(&key, job, &mut waiter.registered)? {
            None => return Ok(()),
            Some(job) => job,
        };
        loop {
            // Registered before looking again, so a key leaving right after
            // the look still wakes this submitter.
            let freed = shared.key_freed.notified();
            let mut freed = std::pin::pin!(freed);
            freed.as_mut().enable();
            job = match shared.enqueue(&key, job, &mut waiter.registered)? {
                None => return Ok(()),
                Some(job) => job,
            };
            tokio::select! {
                biased;
                () = shared.abort.cancelled() => return Err(aborted()),
                () = freed => {}
            }
        }
    }

    /// Waits until every submitted item has finished (or was dropped by
    /// [`abort`](KeyedPool::abort)). Submits made while it waits are held
    /// back until it returns.
    pub async fn idle(&self) {
        let shared = self.shared();
        let all = u32::try_from(shared.config.buffer).unwrap_or(u32::MAX);
        // Holding every unit of room means nothing is queued or running.
        if let Ok(permits) = shared.room.acquire_many(all).await {
            drop(permits);
        }
    }

    /// Cancels the pool: running items are dropped at their next await point,
    /// queued ones are dropped unrun, and later [`submit`](KeyedPool::submit)s fail.
    pub fn abort(&self) {
        let shared = self.shared();
        shared.aborted.store(true, Ordering::SeqCst);
        shared.abort.cancel();
        let (unrun, parked) = {
            let mut state = shared.lock();
            let state = &mut *state;
            let mut unrun = Vec::new();
            // Keys waiting in line leave now; the keys on a worker lose their
            // queued items and leave when the worker lets go of them.
            for key in state.ready.drain(..) {
                unrun.extend(state.keys.remove(&key).into_iter().flatten());
            }
            for queue in state.keys.values_mut() {
                unrun.extend(queue.drain(..));
            }
            (unrun, std::mem::take(&mut state.parked))
        };
        drop(unrun);
        parked.into_iter().for_each(|(_, waker)| waker.wake());
        shared.running.iter().for_each(AtomicWaker::wake);
    }

    /// How many distinct keys have items queued or running right now.
    pub fn keys_in_flight(&self) -> usize {
        self.shared().lock().keys.len()
    }
}

/// Counts a submitter among those waiting for a key slot, from the moment
/// [`Shared::enqueue`] finds none free until it is gone (its future may be
/// dropped while it waits).
struct KeyWaiter<'a, K> {
    shared: &'a Shared<K>,
    registered: bool,
}

impl<K> Drop for KeyWaiter<'_, K> {
    fn drop(&mut self) {
        if self.registered {
            self.shared.lock().key_waiters -= 1;
        }
    }
}

/// Where a worker wants its next job from.
enum Next<K> {
    /// Run this key's oldest job.
    Run(K, Job),
    /// The pool is closed and nothing is ready: the worker ends.
    Exit,
}

impl<K> Shared<K> {
    fn lock(&self) -> MutexGuard<'_, State<K>> {
        // No code holding this lock can panic half-way through a change.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::SeqCst)
    }
}

impl<K: Hash + Eq + Clone + Send + 'static> Shared<K> {
    /// Queues `job` behind `key` if the key is in flight, or starts the key
    /// if a key slot is free. Hands the job back when all slots are taken,
    /// counting the caller among the waiters (once: `waiting`) under the same
    /// lock, so that the next key to leave wakes it.
    fn enqueue(self: &Arc<Self>, key: &K, job: Job, waiting: &mut bool) -> Result<Option<Job>> {
        let mut state = self.lock();
        // Looked at under the lock `abort` drains under, so no job slips in
        // after the drain.
        if self.is_aborted() {
            return Err(aborted());
        }
        if let Some(queue) = state.keys.get_mut(key) {
            queue.push_back(job);
            return Ok(None);
        }
        if state.keys.len() >= self.config.max_keys {
            if !*waiting {
                state.key_waiters += 1;
                *waiting = true;
            }
            return Ok(Some(job));
        }
        let mut queue = state.spare_queues.pop().unwrap_or_default();
        queue.push_back(job);
        state.keys.insert(key.clone(), queue);
        state.ready.push_back(key.clone());
        let worker = self.find_worker(&mut state);
        drop(state);
        worker.start(self);
        Ok(None)
    }

    /// Who runs a key that just became ready: a worker already on its way if
    /// there are enough of them, else a parked worker, else a new one if a
    /// seat is free, else nobody (a busy worker takes it when done).
    fn find_worker(&self, state: &mut State<K>) -> Worker {
        if state.ready.len() <= state.arriving {
            return Worker::Busy;
        }
        if let Some((seat, waker)) = state.parked.pop() {
            state.set_on_the_way(seat);
            return Worker::Wake(waker);
        }
        match state.free_seats.pop() {
            Some(seat) => {
                state.set_on_the_way(seat);
                Worker::Spawn(seat)
            }
            None => Worker::Busy,
        }
    }

    /// Settles the key a worker just ran (`done`, with the room its item
    /// held), then hands the worker the next job, or parks it until there is one.
    fn poll_next(
        &self,
        seat: usize,
        done: &mut Option<(K, OwnedSemaphorePermit)>,
        cx: &mut Context<'_>,
    ) -> Poll<Next<K>> {
        let mut state = self.lock();
        state.arrived(seat);
        let (mut freed, room) = match done.take() {
            Some((key, room)) => (state.finish(key), Some(room)),
            None => (false, None),
        };
        let next = loop {
            let Some(key) = state.ready.pop_front() else {
                break if state.closed {
                    Poll::Ready(Next::Exit)
                } else {
                    state.park(seat, cx.waker());
                    Poll::Pending
                };
            };
            match state.keys.get_mut(&key).and_then(VecDeque::pop_front) {
                Some(job) => break Poll::Ready(Next::Run(key, job)),
                // Abort dropped the key's items: it leaves.
                None => freed |= state.finish(key),
            }
        };
        let wake_submitters = freed && state.key_waiters > 0;
        drop(state);
        drop(room);
        if wake_submitters {
            self.key_freed.notify_waiters();
        }
        next
    }

    /// Runs one job on seat `seat` until it finishes, panics, or the pool is
    /// aborted; returns the room it held.
    async fn run(&self, seat: usize, job: Job) -> OwnedSemaphorePermit {
        let Job { mut work, room } = job;
        let waker = &self.running[seat];
        let outcome = poll_fn(|cx| {
            waker.register(cx.waker());
            if self.is_aborted() {
                return Poll::Ready(Ok(()));
            }
            match std::panic::catch_unwind(AssertUnwindSafe(|| work.as_mut().poll(cx))) {
                Ok(Poll::Pending) => Poll::Pending,
                Ok(Poll::Ready(())) => Poll::Ready(Ok(())),
                Err(panic) => Poll::Ready(Err(panic)),
            }
        })
        .await;
        if outcome.is_err() {
            tracing::error!("a keyed pool item panicked; the key's next item runs");
        }
        room
    }
}

impl<K: Hash + Eq + Clone> State<K> {
    /// A worker finished an item of `key`: the key goes back in line if it
    /// has more, or leaves. Returns whether it left (freeing a key slot).
    fn finish(&mut self, key: K) -> bool {
        let more = self.keys.get(&key).is_some_and(|queue| !queue.is_empty());
        if more {
            self.ready.push_back(key);
            return false;
        }
        if let Some(queue) = self.keys.remove(&key)
            && self.spare_queues.len() < self.spare_limit
        {
            self.spare_queues.push(queue);
        }
        true
    }

    fn set_on_the_way(&mut self, seat: usize) {
        if !std::mem::replace(&mut self.on_the_way[seat], true) {
            self.arriving += 1;
        }
    }

    fn arrived(&mut self, seat: usize) {
        if std::mem::take(&mut self.on_the_way[seat]) {
            self.arriving -= 1;
        }
    }

    fn park(&mut self, seat: usize, waker: &Waker) {
        match self.parked.iter_mut().find(|(parked, _)| *parked == seat) {
            Some((_, parked)) => parked.clone_from(waker),
            None => self.parked.push((seat, waker.clone())),
        }
    }
}

/// What to do, once the lock is released, so that a ready key gets run.
enum Worker {
    Wake(Waker),
    Spawn(usize),
    Busy,
}

impl Worker {
    fn start<K: Hash + Eq + Clone + Send + 'static>(self, shared: &Arc<Shared<K>>) {
        match self {
            Worker::Wake(waker) => waker.wake(),
            Worker::Spawn(seat) => {
                tokio::spawn(work(Seat {
                    shared: Arc::clone(shared),
                    seat,
                    current: None,
                }));
            }
            Worker::Busy => {}
        }
    }
}

/// One worker: takes ready keys and runs their oldest item, one at a time.
async fn work<K: Hash + Eq + Clone + Send + 'static>(mut seat: Seat<K>) {
    let shared = Arc::clone(&seat.shared);
    let mut done = None;
    loop {
        match poll_fn(|cx| shared.poll_next(seat.seat, &mut done, cx)).await {
            Next::Exit => return,
            Next::Run(key, job) => {
                seat.current = Some(key);
                let room = shared.run(seat.seat, job).await;
                done = seat.current.take().map(|key| (key, room));
            }
        }
    }
}

/// A worker's place. Given back when the worker ends, also when its task is
/// dropped half-way (its runtime shutting down): the key it was running goes
/// back in line, so the key's later items are not stranded.
struct Seat<K: Hash + Eq + Clone> {
    shared: Arc<Shared<K>>,
    seat: usize,
    current: Option<K>,
}

impl<K: Hash + Eq + Clone> Drop for Seat<K> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        let seat = self.seat;
        state.parked.retain(|(parked, _)| *parked != seat);
        state.arrived(seat);
        state.free_seats.push(seat);
        let freed = self.current.take().is_some_and(|key| state.finish(key));
        let wake_submitters = freed && state.key_waiters > 0;
        // A key this worker put back in line needs someone else.
        let successor = match state.ready.is_empty() {
            true => None,
            false => state.parked.pop().map(|(seat, waker)| {
                state.set_on_the_way(seat);
                waker
            }),
        };
        drop(state);
        if wake_submitters {
            self.shared.key_freed.notify_waiters();
        }
        successor.into_iter().for_each(Waker::wake);
    }
}

fn aborted() -> Error {
    Error::new(crate::ErrorKind::Cancelled, "the keyed pool was aborted")
}

impl<K> fmt::Debug for KeyedPool<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.handle.shared;
        f.debug_struct("KeyedPool")
            .field("config", &shared.config)
            .field("aborted", &shared.is_aborted())
            .finish_non_exhaustive()
    }
}
