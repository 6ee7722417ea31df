//! The routing table, one inbox per subscriber, and one shared feed per
//! exact topic for that topic's fan-out subscribers that need no ack (see
//! [`feed`](super::feed): a publish writes each message there once, however
//! many such subscribers there are).
//!
//! Publishing is the hot path, so it touches as little shared state as it
//! can: the subscribers a topic reaches are looked up once and kept in a
//! cache of `Arc` snapshots (cleared whenever a subscription comes or goes),
//! each subscriber has its own inbox with its own short lock, and capacity is
//! counted outside any lock, in one [`Slots`] counter per subscriber. A
//! publisher first reserves a slot at everyone it must reach (awaiting one
//! under [`OverflowPolicy::Block`]) and only then places the message. The slot
//! travels with the message and is given back when the subscriber takes it
//! (or, in manual-ack mode, when the delivery is settled), which is what
//! bounds the buffers. The routing table itself, queue groups and
//! redeliveries sit behind one broker-wide lock that publishing takes only on
//! a cache miss or for a queue group.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex, MutexGuard, PoisonError, RwLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll, Waker},
};

use futures::future::{self, Either};
use tokio::sync::Notify;

use super::{
    MemoryConfig, OverflowPolicy,
    feed::{Feed, Reader},
};
use crate::{
    Error, Message, Result,
    topic::{Pattern, Topic, validate_topic},
};

/// How many topics the routing cache remembers before it starts over; it only
/// saves work, so forgetting is always safe, and it must not grow with the
/// number of distinct topics ever published to.
const CACHED_TOPICS: usize = 4096;

/// One message waiting in a buffer, or delivered and not yet settled.
#[derive(Debug)]
pub(super) struct Entry {
    /// The topic, when it is not the subscriber's own pattern (a wildcard
    /// subscriber's). Shared with the routing cache, so a publish allocates
    /// no topic; left out for exact subscribers (the common case) so that
    /// every subscriber of a topic does not bump one shared counter.
    topic: Option<Arc<str>>,
    /// Each subscriber's own copy (a copy shares the body; only headers are
    /// duplicated). Held directly rather than behind one shared `Arc`,
    /// because that `Arc` would be allocated by the publisher's thread and
    /// freed by a subscriber's on every message, which glibc's per-thread
    /// caches cannot serve.
    pub(super) message: Message,
    /// The buffer slot this message occupies.
    slot: Hold,
}

/// Which buffer slot an [`Entry`] occupies.
#[derive(Debug)]
enum Hold {
    /// One of the slots of the inbox it was placed in. That inbox's
    /// subscriber gives it back when it hands the message out;
    /// no counted pointer travels with the message, because that would be
    /// one more counter bumped by the publisher's thread and dropped by the
    /// subscriber's for every message.
    Inbox,
    /// A slot it gives back itself when dropped: a manual-ack delivery that
    /// is out with its acker, or on its way back to be delivered again.
    Own(#[allow(dead_code, reason = "held for its Drop, which gives the slot back")] Slot),
    /// None: its inbox is gone, and nobody waits for that inbox's slots.
    Nothing,
}

/// What a subscriber does with the slot of a message it hands out.
pub(super) enum Handout {
    /// It came from the subscriber's own buffer: the subscriber gives the
    /// slot back itself.
    Counted,
    /// It had no slot of this subscriber's (a redelivery), or its slot went
    /// with it (manual ack).
    Settled,
}

impl Entry {
    /// The topic the message was published to, for a subscriber of
    /// `pattern`: shared, not copied, so a delivery allocates no topic. An
    /// exact subscriber's is its own pattern, whose count only that
    /// subscriber touches.
    pub(super) fn topic(&self, pattern: &Topic) -> Topic {
        match &self.topic {
            Some(topic) => Topic::from(Arc::clone(topic)),
            None => pattern.clone(),
        }
    }

    /// The subscriber of `inbox` takes the message for good (auto ack): its
    /// slot is free once the subscriber counts it back.
    pub(super) fn hand_out(&mut self) -> Handout {
        match std::mem::replace(&mut self.slot, Hold::Nothing) {
            Hold::Inbox => Handout::Counted,
            // Dropped here: the slot goes back to whoever it belongs to.
            Hold::Own(_) | Hold::Nothing => Handout::Settled,
        }
    }

    /// The subscriber of `inbox` hands the message out unsettled (manual
    /// ack): the slot travels with it until it is settled.
    pub(super) fn hand_out_unsettled(&mut self, inbox: &Inbox) {
        if let Hold::Inbox = self.slot {
            self.slot = Hold::Own(Slot(Arc::clone(&inbox.slots)));
        }
    }

    /// Its inbox is gone (and with it anyone waiting for that inbox's room).
    fn detach(mut self) -> Entry {
        if let Hold::Inbox = self.slot {
            self.slot = Hold::Nothing;
        }
        self
    }
}

/// Where an unsettled message goes back to when it must be delivered again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Redelivery {
    /// A fan-out subscriber gets its own copy back.
    Subscriber(u64),
    /// A queue group hands it to whichever member asks first.
    Group(u64),
}

/// The free places of one subscriber's buffer: a counter, awaited through a
/// [`Notify`] only when it is at zero. Unlike a semaphore, giving a slot back
/// takes no lock unless a publisher is waiting.
#[derive(Debug)]
pub(super) struct Slots {
    free: AtomicUsize,
    /// Publishers waiting for a slot; giving one back wakes them only then.
    waiting: AtomicUsize,
    closed: AtomicBool,
    room: Notify,
}

impl Slots {
    fn new(capacity: usize) -> Slots {
        Slots {
            free: AtomicUsize::new(capacity),
            waiting: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            room: Notify::new(),
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Takes a slot if one is free, without waiting.
    fn try_take(&self) -> bool {
        self.free
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |free| {
                free.checked_sub(1)
            })
            .is_ok()
    }

    /// Waits for a slot; `false` once the subscriber is gone.
    async fn take(&self) -> bool {
        if self.is_closed() {
            return false;
        }
        if self.try_take() {
            return true;
        }
        let _waiting = Waiting::register(&self.waiting);
        loop {
            let room = self.room.notified();
            let mut room = std::pin::pin!(room);
            // Registered before looking again, so a slot given back right after
            // the look still wakes this publisher.
            room.as_mut().enable();
            if self.is_closed() {
                return false;
            }
            if self.try_take() {
                return true;
            }
            room.await;
        }
    }

    fn give_back(&self) {
        self.free.fetch_add(1, Ordering::SeqCst);
        // SeqCst on both counters: either a waiter sees the slot when it looks
        // again, or this sees the waiter and wakes it.
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.room.notify_waiters();
        }
    }

    /// The subscriber left: publishers waiting for it stop waiting.
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.room.notify_waiters();
    }
}

/// Counts one waiting publisher for as long as it lives (its future may be
/// dropped while it waits).
pub(super) struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    pub(super) fn register(waiting: &'a AtomicUsize) -> Waiting<'a> {
        waiting.fetch_add(1, Ordering::SeqCst);
        Waiting(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One reserved place in a subscriber's buffer, given back on drop.
#[derive(Debug)]
struct Slot(Arc<Slots>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.give_back();
    }
}

/// Broker state shared by every clone of a `MemoryBroker`, its subscriptions
/// and their unsettled deliveries.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) config: MemoryConfig,
    state: Mutex<State>,
    /// Who each recently published topic reaches. Written only while `state`
    /// is locked, and cleared there whenever a route changes, so it never
    /// outlives the table it was computed from.
    routes: RwLock<HashMap<String, Arc<Routing>>>,
}

/// Where messages published to one topic go, as the routing cache keeps it.
#[derive(Debug)]
pub(super) struct Routing {
    /// The topic, shared by every message published to it while cached.
    pub(super) topic: Arc<str>,
    /// Everyone a message must reach, in reservation order.
    pub(super) targets: Vec<Target>,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    /// Routes of patterns without wildcards, found by the topic itself.
    exact: HashMap<String, Route>,
    /// Routes of wildcard patterns, matched one by one.
    wildcard: HashMap<String, Route>,
    subscribers: HashMap<u64, Arc<Inbox>>,
    groups: HashMap<u64, GroupState>,
}

/// Everyone subscribed with one pattern.
#[derive(Debug)]
struct Route {
    pattern: Pattern,
    /// Fan-out subscribers with an inbox of their own.
    fanout: Vec<u64>,
    groups: HashMap<String, u64>,
    /// An exact pattern's fan-out subscribers that need no ack share this.
    feed: Option<Arc<Feed>>,
}

impl Route {
    /// A route nobody is on yet.
    fn new(pattern: Pattern) -> Route {
        Route {
            pattern,
            fanout: Vec::new(),
            groups: HashMap::new(),
            feed: None,
        }
    }
}

/// What one subscriber has been sent and not yet taken.
#[derive(Debug)]
pub(super) struct Inbox {
    id: u64,
    /// Also the topic of everything an exact subscriber receives.
    pattern: Topic,
    /// Whether `pattern` has no wildcards, so it is the topic of everything
    /// this subscriber receives.
    exact: bool,
    /// The queue group it belongs to, with the group's redeliveries.
    group: Option<(u64, Arc<GroupQueue>)>,
    slots: Arc<Slots>,
    /// On a cache line of its own: publisher and subscriber both write it,
    /// and the fields beside it (the `Arc`'s counts among them) would
    /// otherwise bounce between their cores with it.
    queue: CacheLine<Mutex<InboxQueue>>,
}

#[derive(Debug, Default)]
struct InboxQueue {
    buffer: VecDeque<Entry>,
    /// Redeliveries of a fan-out subscriber; group members share their group's.
    redeliveries: VecDeque<Entry>,
    waker: Option<Waker>,
    /// Set when the subscriber leaves; nothing is placed here afterwards.
    closed: bool,
}

/// A value alone on its cache line (128 bytes covers adjacent-line prefetch).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(super) struct CacheLine<T>(T);

impl<T> CacheLine<T> {
    pub(super) fn new(value: T) -> CacheLine<T> {
        CacheLine(value)
    }
}

impl<T> std::ops::Deref for CacheLine<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// Redeliveries of a queue group, taken by whichever member asks first.
#[derive(Debug, Default)]
struct GroupQueue {
    redeliveries: Mutex<VecDeque<Entry>>,
}

#[derive(Debug)]
struct GroupState {
    name: String,
    pattern: String,
    members: Vec<u64>,
    cursor: usize,
    queue: Arc<GroupQueue>,
    /// Signalled when members join or leave, so a blocked publisher looks again.
    membership: Arc<Notify>,
}

/// Someone a published message must reach, in the order slots are reserved.
#[derive(Debug)]
pub(super) enum Target {
    Subscriber(Arc<Inbox>),
    Feed(Arc<Feed>),
    Group {
        id: u64,
        name: String,
        pattern: String,
        membership: Arc<Notify>,
    },
}

impl Target {
    /// Publishers reserve slots in ascending rank. Two publishers each holding
    /// a slot the other waits for would deadlock; a single global order makes
    /// that cycle impossible. Ids come from one counter, so ranks are unique.
    fn rank(&self) -> u64 {
        match self {
            Target::Subscriber(inbox) => inbox.id,
            Target::Feed(feed) => feed.id(),
            Target::Group { id, .. } => *id,
        }
    }
}

/// A reserved buffer slot, ready to receive the message; given back if the
/// message is never placed (the publish was dropped half-way).
///
/// A fan-out subscriber's inbox is borrowed from the routing the publish
/// holds, not cloned: the count of an `Arc<Inbox>` sits next to the inbox's
/// lock, so bumping it for every message contends with the subscriber.
#[derive(Debug)]
pub(super) struct Reservation<'a> {
    place: Place<'a>,
    placed: bool,
}

#[derive(Debug)]
enum Place<'a> {
    Inbox(InboxRef<'a>),
    Feed(&'a Feed),
}

#[derive(Debug)]
enum InboxRef<'a> {
    Borrowed(&'a Inbox),
    /// A queue group's member, looked up for this one publish.
    Owned(Arc<Inbox>),
}

impl<'a> Reservation<'a> {
    fn new(place: Place<'a>) -> Reservation<'a> {
        Reservation {
            place,
            placed: false,
        }
    }
}

impl InboxRef<'_> {
    fn inbox(&self) -> &Inbox {
        match self {
            InboxRef::Borrowed(inbox) => inbox,
            InboxRef::Owned(inbox) => inbox,
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.placed {
            match &self.place {
                Place::Inbox(inbox) => inbox.inbox().slots.give_back(),
                Place::Feed(feed) => feed.unreserve(),
            }
        }
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent before anything can
    // panic, so a poisoned lock still guards valid data.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inbox {
    pub(super) fn id(&self) -> u64 {
        self.id
    }

    pub(super) fn pattern(&self) -> &Topic {
        &self.pattern
    }

    /// Gives back the slot of a message handed out with [`Handout::Counted`].
    pub(super) fn give_back_slot(&self) {
        self.slots.give_back();
    }

    /// Places `entry` in the buffer and wakes the subscriber; hands the entry
    /// back if the subscriber left meanwhile.
    fn place(&self, entry: Entry) -> std::result::Result<(), Entry> {
        let waker = {
            let mut queue = lock(&self.queue);
            if queue.closed {
                return Err(entry);
            }
            queue.buffer.push_back(entry);
            queue.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Moves what this subscriber is to receive next into `taken`, which
    /// must be empty: one redelivery if there is one (they come first),
    /// otherwise its whole buffer at once, so a busy subscriber takes this
    /// lock (which publishers placing messages contend for) once per batch
    /// rather than once per message. The entries keep their buffer slots
    /// until the subscriber hands them out, so the bound still holds.
    /// `Ready(false)` once the subscriber is gone.
    pub(super) fn poll_take(
        &self,
        cx: &mut Context<'_>,
        taken: &mut VecDeque<Entry>,
    ) -> Poll<bool> {
        debug_assert!(taken.is_empty());
        let mut queue = lock(&self.queue);
        // The group's queue is looked at with this inbox locked, so a
        // redelivery pushed after the look finds this subscriber's waker.
        let redelivered = match &self.group {
            Some((_, group)) => lock(&group.redeliveries).pop_front(),
            None => queue.redeliveries.pop_front(),
        };
        if let Some(entry) = redelivered {
            taken.push_back(entry);
            return Poll::Ready(true);
        }
        if !queue.buffer.is_empty() {
            // Swapped, not drained: the two queues trade their allocations.
            std::mem::swap(&mut queue.buffer, taken);
            return Poll::Ready(true);
        }
        if queue.closed {
            return Poll::Ready(false);
        }
        match &mut queue.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    fn take_waker(&self) -> Option<Waker> {
        lock(&self.queue).waker.take()
    }

    /// Marks the subscriber gone and hands back what it had not yet received.
    fn close(&self) -> (VecDeque<Entry>, VecDeque<Entry>) {
        self.slots.close();
        let mut queue = lock(&self.queue);
        queue.closed = true;
        (
            std::mem::take(&mut queue.buffer)
                .into_iter()
                .map(Entry::detach)
                .collect(),
            std::mem::take(&mut queue.redeliveries),
        )
    }
}

impl Shared {
    pub(super) fn new(config: MemoryConfig) -> Shared {
        Shared {
            config,
            state: Mutex::new(State::default()),
            routes: RwLock::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Forgets every cached route; called with `state` locked, after a change.
    fn routes_changed(&self) {
        self.routes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Adds a subscriber (to a queue group when `group` is set). Returns its
    /// inbox and where its unsettled deliveries go back to.
    pub(super) fn subscribe(
        &self,
        pattern: Pattern,
        group: Option<&str>,
    ) -> (Arc<Inbox>, Redelivery) {
        let mut state = self.lock();
        let state = &mut *state;
        let id = state.allocate_id();
        let pattern_text = pattern.as_str().to_owned();
        let exact = !pattern.has_wildcards();
        let routes = if pattern.has_wildcards() {
            &mut state.wildcard
        } else {
            &mut state.exact
        };
        let route = routes
            .entry(pattern_text.clone())
            .or_insert_with(|| Route::new(pattern));
        let group = match group {
            None => {
                route.fanout.push(id);
                None
            }
            Some(name) => {
                let group_id = match route.groups.get(name) {
                    Some(&existing) => existing,
                    None => {
                        state.next_id += 1;
                        let created = state.next_id;
                        route.groups.insert(name.to_owned(), created);
                        state.groups.insert(
                            created,
                            GroupState {
                                name: name.to_owned(),
                                pattern: pattern_text.clone(),
                                members: Vec::new(),
                                cursor: 0,
                                queue: Arc::default(),
                                membership: Arc::new(Notify::new()),
                            },
                        );
                        created
                    }
                };
                state.groups.get_mut(&group_id).map(|group| {
                    group.members.push(id);
                    group.membership.notify_waiters();
                    (group_id, Arc::clone(&group.queue))
                })
            }
        };
        let redelivery = match &group {
            Some((group, _)) => Redelivery::Group(*group),
            None => Redelivery::Subscriber(id),
        };
        let inbox = Arc::new(Inbox {
            id,
            pattern: Topic::from(pattern_text),
            exact,
            group,
            slots: Arc::new(Slots::new(self.config.buffer)),
            queue: CacheLine::default(),
        });
        state.subscribers.insert(id, Arc::clone(&inbox));
        self.routes_changed();
        (inbox, redelivery)
    }

    /// Removes subscriber `id`. Publishers stop routing to it at once and any
    /// publisher waiting for its buffer stops waiting. What it had not yet
    /// received goes to the rest of its queue group; a fan-out subscriber's
    /// leftovers, and a group's when its last member leaves, are discarded
    /// (and logged): nobody is left who asked for them.
    ///
    /// `taken` is what the subscriber had moved out of its buffer and not yet
    /// handed out; it counts as not received.
    pub(super) fn unsubscribe(&self, id: u64, taken: VecDeque<Entry>) {
        let mut wakers = Vec::new();
        let mut discarded = Vec::new();
        {
            let mut state = self.lock();
            let Some(inbox) = state.subscribers.remove(&id) else {
                return;
            };
            let (rest, redeliveries) = inbox.close();
            let mut buffer: VecDeque<Entry> = taken.into_iter().map(Entry::detach).collect();
            buffer.extend(rest);
            match &inbox.group {
                None => {
                    state.remove_fanout(&inbox.pattern, id);
                    discarded.extend(buffer);
                    discarded.extend(redeliveries);
                    if !discarded.is_empty() {
                        tracing::debug!(
                            pattern = %inbox.pattern,
                            discarded = discarded.len(),
                            "memory broker: subscription dropped with messages it never received"
                        );
                    }
                }
                Some((group_id, _)) => {
                    discarded = state.leave_group(*group_id, id, buffer, &mut wakers);
                }
            }
            self.routes_changed();
        }
        drop(discarded);
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Adds a fan-out subscriber of the exact topic `pattern` that needs no
    /// ack: a reader of the topic's feed (made on first use).
    pub(super) fn subscribe_feed(&self, pattern: Pattern) -> (Arc<Feed>, Reader) {
        let mut state = self.lock();
        let state = &mut *state;
        let id = state.allocate_id();
        let feed_id = state.allocate_id();
        let capacity = self.config.buffer;
        let route = state
            .exact
            .entry(pattern.as_str().to_owned())
            .or_insert_with(|| Route::new(pattern));
        let created = route.feed.is_none();
        let feed = route
            .feed
            .get_or_insert_with(|| {
                let topic = Topic::from(route.pattern.as_str());
                Arc::new(Feed::new(feed_id, topic, capacity))
            })
            .clone();
        let reader = feed.join(id);
        if created {
            // Publishes to this topic now have one more target.
            self.routes_changed();
        }
        (feed, reader)
    }

    /// Removes a feed reader; the feed goes with its last reader, and what it
    /// still held for this reader is discarded with it (nobody else asked).
    pub(super) fn leave_feed(&self, feed: &Feed, reader: &Reader) {
        let mut state = self.lock();
        if feed.leave(reader.id()) {
            return;
        }
        let topic = feed.topic().as_str();
        if let Some(route) = state.exact.get_mut(topic)
            && route
                .feed
                .as_deref()
                .is_some_and(|kept| std::ptr::eq(kept, feed))
        {
            route.feed = None;
        }
        state.remove_route_if_unused(topic);
        self.routes_changed();
    }

    /// Puts an unsettled message back for delivery. Discarded (and logged) if
    /// nobody it could go to is left.
    pub(super) fn requeue(&self, target: Redelivery, entry: Entry) {
        let mut wakers = Vec::new();
        let discarded = {
            let mut state = self.lock();
            match target {
                Redelivery::Subscriber(id) => match state.subscribers.get(&id) {
                    Some(inbox) => {
                        let mut queue = lock(&inbox.queue);
                        queue.redeliveries.push_back(entry);
                        wakers.extend(queue.waker.take());
                        None
                    }
                    None => Some(entry),
                },
                Redelivery::Group(id) => state.redeliver_to_group(id, entry, &mut wakers),
            }
        };
        if let Some(entry) = discarded {
            tracing::debug!(
                topic = entry
                    .topic
                    .as_deref()
                    .unwrap_or("(the subscriber's pattern)"),
                "memory broker: unsettled message discarded: its subscriber and queue group are gone"
            );
        }
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Where a message published to `topic` goes; validates `topic` the
    /// first time it is seen.
    pub(super) fn routing(&self, topic: &str) -> Result<Arc<Routing>> {
        let cached = self
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(topic)
            .cloned();
        if let Some(routing) = cached {
            return Ok(routing);
        }
        validate_topic(topic)?;
        let state = self.lock();
        let routing = Arc::new(Routing {
            topic: Arc::from(topic),
            targets: state.targets(topic),
        });
        let mut cache = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHED_TOPICS {
            cache.clear();
        }
        cache.insert(topic.to_owned(), Arc::clone(&routing));
        Ok(routing)
    }

    /// Reserves a slot for one message at `target`, applying the overflow
    /// policy. `Ok(None)` when the target left meanwhile.
    pub(super) async fn reserve<'a>(
        &self,
        topic: &str,
        target: &'a Target,
    ) -> Result<Option<Reservation<'a>>> {
        match target {
            Target::Subscriber(inbox) => {
                let reserved = if inbox.slots.try_take() {
                    true
                } else {
                    match self.config.overflow {
                        OverflowPolicy::Block => inbox.slots.take().await,
                        OverflowPolicy::Fail if inbox.slots.is_closed() => false,
                        OverflowPolicy::Fail => {
                            return Err(Error::resource_exhausted(format!(
                                "cannot publish to `{topic}`: the buffer of subscriber #{} on \
                                 `{}` is full ({} messages); no subscriber received the message",
                                inbox.id, inbox.pattern, self.config.buffer
                            )));
                        }
                    }
                };
                Ok(reserved.then(|| Reservation::new(Place::Inbox(InboxRef::Borrowed(inbox)))))
            }
            Target::Feed(feed) => {
                let fail_when_full = self.config.overflow == OverflowPolicy::Fail;
                let reserved = feed.reserve(fail_when_full).await?;
                // Built only when reserved: dropped unplaced, it gives its place back.
                Ok(reserved.then(|| Reservation::new(Place::Feed(feed))))
            }
            Target::Group {
                id,
                name,
                pattern,
                membership,
            } => {
                self.reserve_in_group(topic, *id, name, pattern, membership)
                    .await
            }
        }
    }

    /// Reserves a slot at one member of a queue group: the next member in
    /// round-robin order that has room, or, when all are full, whichever makes
    /// room first (or joins).
    async fn reserve_in_group(
        &self,
        topic: &str,
        group: u64,
        name: &str,
        pattern: &str,
        membership: &Notify,
    ) -> Result<Option<Reservation<'static>>> {
        loop {
            // Created before looking at the members, so a member joining right
            // after the look still wakes this publisher.
            let changed = membership.notified();
            let Some(members) = self.members_in_turn(group) else {
                return Ok(None);
            };
            for inbox in &members {
                if inbox.slots.try_take() {
                    return Ok(Some(Reservation::new(Place::Inbox(InboxRef::Owned(
                        Arc::clone(inbox),
                    )))));
                }
            }
            if self.config.overflow == OverflowPolicy::Fail {
                return Err(Error::resource_exhausted(format!(
                    "cannot publish to `{topic}`: all {} members of queue group `{name}` on \
                     `{pattern}` have a full buffer ({} messages each); no subscriber received \
                     the message",
                    members.len(),
                    self.config.buffer
                )));
            }
            let any_room = future::select_all(members.into_iter().map(|inbox| {
                Box::pin(async move {
                    let reserved = inbox.slots.take().await;
                    (inbox, reserved)
                })
            }));
            match future::select(any_room, std::pin::pin!(changed)).await {
                Either::Left((((inbox, true), _, _), _)) => {
                    return Ok(Some(Reservation::new(Place::Inbox(InboxRef::Owned(inbox)))));
                }
                // A member left or joined: look at the group again.
                Either::Left((((_, false), _, _), _)) | Either::Right(_) => {}
            }
        }
    }

    /// The members of `group`, starting at the member whose turn it is; `None`
    /// once the group is gone.
    fn members_in_turn(&self, group: u64) -> Option<Vec<Arc<Inbox>>> {
        let mut state = self.lock();
        let State {
            subscribers,
            groups,
            ..
        } = &mut *state;
        let group = groups.get_mut(&group)?;
        if group.members.is_empty() {
            return None;
        }
        let start = group.cursor % group.members.len();
        group.cursor = group.cursor.wrapping_add(1);
        let (before, after) = group.members.split_at(start);
        let members = after
            .iter()
            .chain(before)
            .filter_map(|id| subscribers.get(id).map(Arc::clone))
            .collect();
        Some(members)
    }

    /// Places `message` in every reserved slot, without waiting in between,
    /// so a publish either reaches everyone it reserved for or (when its
    /// future is dropped before this point) no one.
    pub(super) fn deliver(
        &self,
        topic: &Arc<str>,
        message: Message,
        reservations: Vec<Reservation<'_>>,
    ) {
        let mut reservations = reservations.into_iter();
        let Some(last) = reservations.next_back() else {
            return;
        };
        for reservation in reservations {
            self.place(topic, message.clone(), reservation);
        }
        // The last one takes the original.
        self.place(topic, message, last);
    }

    fn place(&self, topic: &Arc<str>, message: Message, mut reservation: Reservation<'_>) {
        let inbox = match &reservation.place {
            Place::Feed(feed) => {
                feed.place(message);
                reservation.placed = true;
                return;
            }
            Place::Inbox(inbox) => inbox.inbox(),
        };
        let entry = Entry {
            topic: (!inbox.exact).then(|| Arc::clone(topic)),
            message,
            slot: Hold::Inbox,
        };
        match inbox.place(entry) {
            Ok(()) => reservation.placed = true,
            Err(entry) => self.left_meanwhile(inbox, entry.detach()),
        }
    }

    /// A subscriber left between its reservation and the delivery: a group
    /// member's message goes to the rest of its group, a fan-out
    /// subscriber's is dropped with it.
    fn left_meanwhile(&self, inbox: &Inbox, entry: Entry) {
        match &inbox.group {
            Some((group, _)) => self.requeue(Redelivery::Group(*group), entry),
            None => drop(entry),
        }
    }

    #[cfg(test)]
    pub(super) fn route_count(&self) -> usize {
        let state = self.lock();
        state.exact.len() + state.wildcard.len() + state.subscribers.len() + state.groups.len()
    }
}

impl State {
    fn allocate_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn route_mut(&mut self, pattern: &str) -> Option<&mut Route> {
        match self.exact.get_mut(pattern) {
            Some(route) => Some(route),
            None => self.wildcard.get_mut(pattern),
        }
    }

    /// Everyone a message published to `topic` must reach, in reservation order.
    fn targets(&self, topic: &str) -> Vec<Target> {
        let routes = self.exact.get(topic).into_iter().chain(
            self.wildcard
                .values()
                .filter(|route| route.pattern.matches(topic)),
        );
        let mut targets = Vec::new();
        for route in routes {
            if let Some(feed) = &route.feed {
                targets.push(Target::Feed(Arc::clone(feed)));
            }
            for id in &route.fanout {
                if let Some(inbox) = self.subscribers.get(id) {
                    targets.push(Target::Subscriber(Arc::clone(inbox)));
                }
            }
            for (name, id) in &route.groups {
                if let Some(group) = self.groups.get(id) {
                    targets.push(Target::Group {
                        id: *id,
                        name: name.clone(),
                        pattern: group.pattern.clone(),
                        membership: Arc::clone(&group.membership),
                    });
                }
            }
        }
        targets.sort_by_key(Target::rank);
        targets
    }

    fn remove_route_if_unused(&mut self, pattern: &str) {
        let unused = self.route_mut(pattern).is_some_and(|route| {
            route.fanout.is_empty() && route.groups.is_empty() && route.feed.is_none()
        });
        if unused {
            self.exact.remove(pattern);
            self.wildcard.remove(pattern);
        }
    }

    fn remove_fanout(&mut self, pattern: &str, id: u64) {
        if let Some(route) = self.route_mut(pattern) {
            route.fanout.retain(|member| *member != id);
        }
        self.remove_route_if_unused(pattern);
    }

    /// Takes member `id` out of `group_id`. Its undelivered `buffer` goes to
    /// the remaining members; returns what must be discarded because no member
    /// remains.
    fn leave_group(
        &mut self,
        group_id: u64,
        id: u64,
        buffer: VecDeque<Entry>,
        wakers: &mut Vec<Waker>,
    ) -> Vec<Entry> {
        let Some(group) = self.groups.get_mut(&group_id) else {
            return buffer.into();
        };
        group.members.retain(|member| *member != id);
        group.membership.notify_waiters();
        if !group.members.is_empty() {
            lock(&group.queue.redeliveries).extend(buffer);
            let members = group.members.clone();
            self.take_wakers(&members, wakers);
            return Vec::new();
        }
        let Some(group) = self.groups.remove(&group_id) else {
            return buffer.into();
        };
        if let Some(route) = self.route_mut(&group.pattern) {
            route.groups.remove(&group.name);
        }
        self.remove_route_if_unused(&group.pattern);
        let redeliveries = std::mem::take(&mut *lock(&group.queue.redeliveries));
        let discarded: Vec<Entry> = redeliveries.into_iter().chain(buffer).collect();
        if !discarded.is_empty() {
            tracing::warn!(
                pattern = %group.pattern,
                group = %group.name,
                discarded = discarded.len(),
                "memory broker: the last member of a queue group left; its undelivered messages are discarded"
            );
        }
        discarded
    }

    /// Hands `entry` to whichever member of `group` asks first. Returns the
    /// entry if the group is gone.
    fn redeliver_to_group(
        &mut self,
        group: u64,
        entry: Entry,
        wakers: &mut Vec<Waker>,
    ) -> Option<Entry> {
        let Some(group) = self.groups.get(&group) else {
            return Some(entry);
        };
        lock(&group.queue.redeliveries).push_back(entry);
        let members = group.members.clone();
        self.take_wakers(&members, wakers);
        None
    }

    fn take_wakers(&self, members: &[u64], wakers: &mut Vec<Waker>) {
        wakers.extend(
            members
                .iter()
                .filter_map(|id| self.subscribers.get(id)?.take_waker()),
        );
    }
}
