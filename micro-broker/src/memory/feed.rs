//! One shared feed per exact topic for the fan-out subscribers that take
//! their messages for good (no manual ack, no queue group): the common case.
//!
//! With an inbox per subscriber, a publish writes one entry into every
//! subscriber's buffer, so its cost grows with the number of subscribers and
//! every write lands in memory another core last touched. A feed keeps each
//! message once: a publish appends it under one lock, and every reader takes
//! what it has not yet taken in one batch, cloning the messages (which shares
//! their bodies). The feed holds at most [`MemoryConfig::buffer`] messages
//! between the newest one and the oldest one some reader has not handed out
//! yet, so the bound per subscriber is the same as with an inbox: a
//! subscriber that does not read holds back the publishers (or makes them
//! fail, under [`OverflowPolicy::Fail`]) once `buffer` messages wait for it.
//!
//! Readers report how far they have handed out in a counter of their own,
//! which only a publisher looking for room reads; a reader that hands out
//! the oldest message while a publisher waits wakes it at once, so one read
//! makes room, as it does for an inbox.
//!
//! [`MemoryConfig::buffer`]: super::MemoryConfig::buffer
//! [`OverflowPolicy::Fail`]: super::OverflowPolicy::Fail

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll, Waker},
};

use tokio::sync::Notify;

use super::state::{CacheLine, Waiting, lock};
use crate::{Error, Message, Result, topic::Topic};

/// How many messages a reader clones out of the feed per lock. The lock is
/// held while it clones, and publishers wait for it meanwhile; with smaller
/// batches the reader comes back for the lock that much more often. Of 64,
/// 256 and 1024, 1024 gave the best single-subscriber fan-out figures (on a
/// noisy machine, so the margin is not exact).
const READ_BATCH: usize = 1024;

/// The messages published to one exact topic, shared by its feed readers.
#[derive(Debug)]
pub(super) struct Feed {
    /// Its rank among a publish's targets (see `Target::rank`).
    id: u64,
    topic: Topic,
    capacity: usize,
    state: CacheLine<Mutex<FeedState>>,
    /// [`FeedState::handed_by_all`], for readers: one whose progress is
    /// here may be the one holding back a waiting publisher.
    handed_by_all: CacheLine<AtomicU64>,
    /// Publishers waiting for room; readers wake them only then.
    waiting: CacheLine<AtomicUsize>,
    room: Notify,
}

#[derive(Debug, Default)]
struct FeedState {
    /// The sequence number of `messages[0]`.
    oldest: u64,
    messages: VecDeque<Message>,
    /// Every message before this one was handed out by every reader, as of
    /// the last look at their progress. What counts against the buffer is
    /// everything from here on, including what a lone reader moved out of
    /// `messages` and has not handed out yet.
    handed_by_all: u64,
    /// Places promised to publishers that have not placed their message yet.
    reserved: usize,
    readers: Vec<ReaderSlot>,
}

#[derive(Debug)]
struct ReaderSlot {
    id: u64,
    progress: Arc<Progress>,
    waker: Option<Waker>,
}

/// The sequence number of the next message one reader will hand out: every
/// message before it is handed out, so the feed may forget it. Written only
/// by its reader; read by publishers only when the feed looks full.
#[derive(Debug)]
pub(super) struct Progress(CacheLine<AtomicU64>);

impl Progress {
    fn handed(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl Feed {
    pub(super) fn new(id: u64, topic: Topic, capacity: usize) -> Feed {
        Feed {
            id,
            topic,
            capacity,
            state: CacheLine::default(),
            handed_by_all: CacheLine::default(),
            waiting: CacheLine::default(),
            room: Notify::new(),
        }
    }

    pub(super) fn id(&self) -> u64 {
        self.id
    }

    pub(super) fn topic(&self) -> &Topic {
        &self.topic
    }

    /// Adds reader `id`; it receives what is published from now on.
    pub(super) fn join(&self, id: u64) -> Reader {
        let mut state = lock(&self.state);
        let start = state.end();
        let progress = Arc::new(Progress(CacheLine::new(AtomicU64::new(start))));
        state.readers.push(ReaderSlot {
            id,
            progress: Arc::clone(&progress),
            waker: None,
        });
        Reader {
            id,
            progress,
            next: start,
            taken: VecDeque::new(),
            // Its own copy: a count shared by every reader would be bumped
            // by all of them for every message.
            topic: Topic::from(self.topic.as_str()),
        }
    }

    /// Removes reader `id`; returns whether any reader is left. Publishers
    /// it held back look again.
    pub(super) fn leave(&self, id: u64) -> bool {
        let readers_left = {
            let mut state = lock(&self.state);
            state.readers.retain(|reader| reader.id != id);
            if state.readers.is_empty() {
                // Nobody is left to receive what is kept.
                let end = state.end();
                state.messages.clear();
                state.oldest = end;
                state.handed_by_all = end;
                self.handed_by_all.store(end, Ordering::SeqCst);
            }
            !state.readers.is_empty()
        };
        self.room.notify_waiters();
        readers_left
    }

    /// Promises a place to one message, waiting for room (or failing, when
    /// `fail_when_full`). `Ok(false)` when no reader is left.
    pub(super) async fn reserve(&self, fail_when_full: bool) -> Result<bool> {
        if let Some(reserved) = self.try_reserve() {
            return Ok(reserved);
        }
        if fail_when_full {
            return Err(self.full_error());
        }
        let _waiting = Waiting::register(&self.waiting);
        loop {
            let room = self.room.notified();
            let mut room = std::pin::pin!(room);
            // Registered (and counted as waiting) before looking again, so a
            // reader handing out the oldest message right after the look
            // still wakes this publisher.
            room.as_mut().enable();
            if let Some(reserved) = self.try_reserve() {
                return Ok(reserved);
            }
            room.await;
        }
    }

    /// Takes a place if there is room (forgetting what every reader has
    /// handed out first); `Some(false)` when no reader is left, `None` when
    /// full.
    fn try_reserve(&self) -> Option<bool> {
        let mut forgotten = Vec::new();
        let reserved = {
            let mut state = lock(&self.state);
            if state.readers.is_empty() {
                return Some(false);
            }
            if state.held() + state.reserved >= self.capacity {
                forgotten = self.trim(&mut state);
            }
            let full = state.held() + state.reserved >= self.capacity;
            if !full {
                state.reserved += 1;
            }
            !full
        };
        // Dropped after the lock: each drop is a count on a body that the
        // readers' clones count too.
        drop(forgotten);
        reserved.then_some(true)
    }

    /// Looks at every reader's progress again, and forgets the messages all
    /// of them have handed out (returned, to be dropped after the lock).
    fn trim(&self, state: &mut FeedState) -> Vec<Message> {
        let end = state.end();
        let handed_by_all = state
            .readers
            .iter()
            .map(|reader| reader.progress.handed())
            .min()
            .unwrap_or(end)
            .min(end);
        state.handed_by_all = handed_by_all;
        self.handed_by_all.store(handed_by_all, Ordering::SeqCst);
        if handed_by_all <= state.oldest {
            return Vec::new();
        }
        let forgotten = state
            .messages
            .drain(..(handed_by_all - state.oldest) as usize)
            .collect();
        state.oldest = handed_by_all;
        forgotten
    }

    fn full_error(&self) -> Error {
        let state = lock(&self.state);
        let slowest = state
            .readers
            .iter()
            .min_by_key(|reader| reader.progress.handed())
            .map_or(0, |reader| reader.id);
        Error::resource_exhausted(format!(
            "cannot publish to `{}`: the buffer of subscriber #{slowest} on `{}` is full \
             ({} messages); no subscriber received the message",
            self.topic, self.topic, self.capacity
        ))
    }

    /// Appends a message a place was reserved for, and wakes the readers
    /// waiting for one.
    pub(super) fn place(&self, message: Message) {
        let wakers: Vec<Waker> = {
            let mut state = lock(&self.state);
            state.reserved -= 1;
            state.messages.push_back(message);
            state
                .readers
                .iter_mut()
                .filter_map(|reader| reader.waker.take())
                .collect()
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Gives back a place reserved for a message that will not come (its
    /// publish was dropped half-way).
    pub(super) fn unreserve(&self) {
        lock(&self.state).reserved -= 1;
        self.room.notify_waiters();
    }
}

impl FeedState {
    /// The sequence number the next message published gets.
    fn end(&self) -> u64 {
        self.oldest + self.messages.len() as u64
    }

    /// How many messages count against the buffer: those not yet handed out
    /// by every reader (as of the last look).
    fn held(&self) -> usize {
        (self.end() - self.handed_by_all) as usize
    }
}

/// One subscriber's position in its feed, and what it has taken from it but
/// not handed out yet.
#[derive(Debug)]
pub(super) struct Reader {
    id: u64,
    progress: Arc<Progress>,
    /// The sequence number of the next message to take from the feed.
    next: u64,
    taken: VecDeque<Message>,
    topic: Topic,
}

impl Reader {
    pub(super) fn id(&self) -> u64 {
        self.id
    }

    pub(super) fn topic(&self) -> &Topic {
        &self.topic
    }

    /// The next message: from what was taken, or, once that is handed out,
    /// everything the feed holds beyond it, taken with one lock.
    pub(super) fn poll_next(&mut self, feed: &Feed, cx: &mut Context<'_>) -> Poll<Message> {
        if self.taken.is_empty() {
            let mut state = lock(&feed.state);
            if self.next < state.end() {
                // Never before `oldest`: nothing this reader has not taken
                // is forgotten.
                let first = (self.next - state.oldest) as usize;
                let last = state.messages.len().min(first + READ_BATCH);
                if state.readers.len() == 1 {
                    // Nobody else will need these: moved out, not cloned.
                    // They still count against the buffer until handed out
                    // (`held` counts from `handed_by_all`, not `oldest`).
                    if first == 0 {
                        // All of them: the two queues trade their
                        // allocations, so the lock is held for no copying.
                        std::mem::swap(&mut state.messages, &mut self.taken);
                        state.oldest += self.taken.len() as u64;
                    } else {
                        let mut moved = state.messages.drain(..last).skip(first);
                        self.taken.extend(&mut moved);
                        drop(moved);
                        state.oldest += last as u64;
                    }
                    self.next = state.oldest;
                } else {
                    self.taken
                        .extend(state.messages.range(first..last).cloned());
                    self.next = state.oldest + last as u64;
                }
            } else {
                if let Some(slot) = state.readers.iter_mut().find(|slot| slot.id == self.id) {
                    match &mut slot.waker {
                        Some(waker) if waker.will_wake(cx.waker()) => {}
                        waker => *waker = Some(cx.waker().clone()),
                    }
                }
                return Poll::Pending;
            }
        }
        let message = self
            .taken
            .pop_front()
            .expect("a reader with nothing taken either took some or is pending");
        self.hand_out(feed);
        Poll::Ready(message)
    }

    /// Counts one more message handed out, and wakes the publishers waiting
    /// for room if this reader was holding back the oldest message.
    fn hand_out(&self, feed: &Feed) {
        let handed = self.next - self.taken.len() as u64;
        self.progress.0.store(handed, Ordering::SeqCst);
        // SeqCst with the publisher's count of waiters: either it sees this
        // progress when it looks again, or this sees it waiting.
        if feed.waiting.load(Ordering::SeqCst) > 0
            && handed - 1 <= feed.handed_by_all.load(Ordering::SeqCst)
        {
            feed.room.notify_waiters();
        }
    }
}
