//! The routing table and the per-subscriber buffers behind one lock.
//!
//! Capacity lives outside the lock, in one [`Semaphore`] per subscriber: a
//! publisher first reserves a slot (awaiting it under [`OverflowPolicy::Block`])
//! and only then takes the lock to place the message. The permit travels with
//! the message and is released when the subscriber takes it (or, in manual-ack
//! mode, when the delivery is settled), which is what bounds the buffers.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll, Waker},
};

use futures::future::{self, Either};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};

use super::{MemoryConfig, OverflowPolicy};
use crate::{Error, Message, Result, topic::Pattern};

/// One message waiting in a buffer, or delivered and not yet settled.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) topic: String,
    pub(super) message: Message,
    /// The buffer slot this message occupies; dropping it makes room.
    slot: Option<OwnedSemaphorePermit>,
}

impl Entry {
    /// Releases the buffer slot: the subscriber has taken the message for good.
    pub(super) fn release_slot(&mut self) {
        self.slot = None;
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

/// Broker state shared by every clone of a `MemoryBroker`, its subscriptions
/// and their unsettled deliveries.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) config: MemoryConfig,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    /// Routes of patterns without wildcards, found by the topic itself.
    exact: HashMap<String, Route>,
    /// Routes of wildcard patterns, matched one by one.
    wildcard: HashMap<String, Route>,
    subscribers: HashMap<u64, SubscriberState>,
    groups: HashMap<u64, GroupState>,
}

/// Everyone subscribed with one pattern.
#[derive(Debug)]
struct Route {
    pattern: Pattern,
    fanout: Vec<u64>,
    groups: HashMap<String, u64>,
}

#[derive(Debug)]
struct SubscriberState {
    pattern: String,
    group: Option<u64>,
    capacity: Arc<Semaphore>,
    buffer: VecDeque<Entry>,
    /// Redeliveries of a fan-out subscriber; group members share their group's.
    redeliveries: VecDeque<Entry>,
    waker: Option<Waker>,
}

#[derive(Debug)]
struct GroupState {
    name: String,
    pattern: String,
    members: Vec<u64>,
    cursor: usize,
    redeliveries: VecDeque<Entry>,
    /// Signalled when members join or leave, so a blocked publisher looks again.
    membership: Arc<Notify>,
}

/// Someone a published message must reach, in the order slots are reserved.
#[derive(Debug)]
pub(super) enum Target {
    Subscriber {
        id: u64,
        pattern: String,
        capacity: Arc<Semaphore>,
    },
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
            Target::Subscriber { id, .. } | Target::Group { id, .. } => *id,
        }
    }
}

/// A reserved buffer slot, ready to receive the message.
#[derive(Debug)]
pub(super) struct Reservation {
    subscriber: u64,
    group: Option<u64>,
    slot: OwnedSemaphorePermit,
}

impl Shared {
    pub(super) fn new(config: MemoryConfig) -> Shared {
        Shared {
            config,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent before anything
        // can panic, so a poisoned lock still guards valid data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a subscriber (to a queue group when `group` is set). Returns its id
    /// and where its unsettled deliveries go back to.
    pub(super) fn subscribe(&self, pattern: Pattern, group: Option<&str>) -> (u64, Redelivery) {
        let mut state = self.lock();
        let state = &mut *state;
        let id = state.allocate_id();
        let pattern_text = pattern.as_str().to_owned();
        let routes = if pattern.has_wildcards() {
            &mut state.wildcard
        } else {
            &mut state.exact
        };
        let route = routes.entry(pattern_text.clone()).or_insert_with(|| Route {
            pattern,
            fanout: Vec::new(),
            groups: HashMap::new(),
        });
        let group_id = match group {
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
                                redeliveries: VecDeque::new(),
                                membership: Arc::new(Notify::new()),
                            },
                        );
                        created
                    }
                };
                if let Some(group) = state.groups.get_mut(&group_id) {
                    group.members.push(id);
                    group.membership.notify_waiters();
                }
                Some(group_id)
            }
        };
        state.subscribers.insert(
            id,
            SubscriberState {
                pattern: pattern_text,
                group: group_id,
                capacity: Arc::new(Semaphore::new(self.config.buffer)),
                buffer: VecDeque::new(),
                redeliveries: VecDeque::new(),
                waker: None,
            },
        );
        let redelivery = match group_id {
            Some(group) => Redelivery::Group(group),
            None => Redelivery::Subscriber(id),
        };
        (id, redelivery)
    }

    /// Removes subscriber `id`. Publishers stop routing to it at once and any
    /// publisher waiting for its buffer stops waiting. What it had not yet
    /// received goes to the rest of its queue group; a fan-out subscriber's
    /// leftovers, and a group's when its last member leaves, are discarded
    /// (and logged): nobody is left who asked for them.
    pub(super) fn unsubscribe(&self, id: u64) {
        let mut wakers = Vec::new();
        let mut discarded = Vec::new();
        {
            let mut state = self.lock();
            let Some(sub) = state.subscribers.remove(&id) else {
                return;
            };
            sub.capacity.close();
            match sub.group {
                None => {
                    state.remove_fanout(&sub.pattern, id);
                    discarded.extend(sub.buffer);
                    discarded.extend(sub.redeliveries);
                    if !discarded.is_empty() {
                        tracing::debug!(
                            pattern = %sub.pattern,
                            discarded = discarded.len(),
                            "memory broker: subscription dropped with messages it never received"
                        );
                    }
                }
                Some(group_id) => {
                    discarded = state.leave_group(group_id, id, sub.buffer, &mut wakers);
                }
            }
        }
        drop(discarded);
        wakers.into_iter().for_each(Waker::wake);
    }

    /// The next message for subscriber `id`: redeliveries first, then its buffer.
    /// `Ready(None)` once the subscriber is gone.
    pub(super) fn poll_take(&self, id: u64, cx: &mut Context<'_>) -> Poll<Option<Entry>> {
        let mut state = self.lock();
        let State {
            subscribers,
            groups,
            ..
        } = &mut *state;
        let Some(sub) = subscribers.get_mut(&id) else {
            return Poll::Ready(None);
        };
        let redelivered = match sub.group {
            Some(group) => groups
                .get_mut(&group)
                .and_then(|group| group.redeliveries.pop_front()),
            None => sub.redeliveries.pop_front(),
        };
        match redelivered.or_else(|| sub.buffer.pop_front()) {
            Some(entry) => Poll::Ready(Some(entry)),
            None => {
                match &mut sub.waker {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    slot => *slot = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }

    /// Puts an unsettled message back for delivery. Discarded (and logged) if
    /// nobody it could go to is left.
    pub(super) fn requeue(&self, target: Redelivery, entry: Entry) {
        let mut wakers = Vec::new();
        let discarded = {
            let mut state = self.lock();
            match target {
                Redelivery::Subscriber(id) => match state.subscribers.get_mut(&id) {
                    Some(sub) => {
                        sub.redeliveries.push_back(entry);
                        wakers.extend(sub.waker.take());
                        None
                    }
                    None => Some(entry),
                },
                Redelivery::Group(id) => match state.groups.get_mut(&id) {
                    Some(group) => {
                        group.redeliveries.push_back(entry);
                        let members = group.members.clone();
                        state.take_wakers(&members, &mut wakers);
                        None
                    }
                    None => Some(entry),
                },
            }
        };
        if let Some(entry) = discarded {
            tracing::debug!(
                topic = %entry.topic,
                "memory broker: unsettled message discarded: its subscriber and queue group are gone"
            );
        }
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Everyone a message published to `topic` must reach, in reservation order.
    pub(super) fn targets(&self, topic: &str) -> Vec<Target> {
        let state = self.lock();
        let routes = state.exact.get(topic).into_iter().chain(
            state
                .wildcard
                .values()
                .filter(|route| route.pattern.matches(topic)),
        );
        let mut targets = Vec::new();
        for route in routes {
            for id in &route.fanout {
                if let Some(sub) = state.subscribers.get(id) {
                    targets.push(Target::Subscriber {
                        id: *id,
                        pattern: sub.pattern.clone(),
                        capacity: Arc::clone(&sub.capacity),
                    });
                }
            }
            for (name, id) in &route.groups {
                if let Some(group) = state.groups.get(id) {
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

    /// Reserves a slot for one message at `target`, applying the overflow
    /// policy. `Ok(None)` when the target left meanwhile.
    pub(super) async fn reserve(&self, topic: &str, target: Target) -> Result<Option<Reservation>> {
        match target {
            Target::Subscriber {
                id,
                pattern,
                capacity,
            } => {
                let slot = match self.config.overflow {
                    OverflowPolicy::Block => capacity.acquire_owned().await.ok(),
                    OverflowPolicy::Fail => match capacity.try_acquire_owned() {
                        Ok(slot) => Some(slot),
                        Err(TryAcquireError::Closed) => None,
                        Err(TryAcquireError::NoPermits) => {
                            return Err(Error::resource_exhausted(format!(
                                "cannot publish to `{topic}`: the buffer of subscriber #{id} on \
                                 `{pattern}` is full ({} messages); no subscriber received the message",
                                self.config.buffer
                            )));
                        }
                    },
                };
                Ok(slot.map(|slot| Reservation {
                    subscriber: id,
                    group: None,
                    slot,
                }))
            }
            Target::Group {
                id,
                name,
                pattern,
                membership,
            } => {
                self.reserve_in_group(topic, id, &name, &pattern, &membership)
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
    ) -> Result<Option<Reservation>> {
        loop {
            // Created before looking at the members, so a member joining right
            // after the look still wakes this publisher.
            let changed = membership.notified();
            let Some(members) = self.members_in_turn(group) else {
                return Ok(None);
            };
            for (member, capacity) in &members {
                if let Ok(slot) = Arc::clone(capacity).try_acquire_owned() {
                    return Ok(Some(Reservation {
                        subscriber: *member,
                        group: Some(group),
                        slot,
                    }));
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
            let any_room = future::select_all(members.into_iter().map(|(member, capacity)| {
                Box::pin(async move { (member, capacity.acquire_owned().await) })
            }));
            match future::select(any_room, std::pin::pin!(changed)).await {
                Either::Left((((member, Ok(slot)), _, _), _)) => {
                    return Ok(Some(Reservation {
                        subscriber: member,
                        group: Some(group),
                        slot,
                    }));
                }
                // A member left or joined: look at the group again.
                Either::Left((((_, Err(_)), _, _), _)) | Either::Right(_) => {}
            }
        }
    }

    /// The members of `group` with their capacity, starting at the member
    /// whose turn it is; `None` once the group is gone.
    fn members_in_turn(&self, group: u64) -> Option<Vec<(u64, Arc<Semaphore>)>> {
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
            .filter_map(|id| {
                let sub = subscribers.get(id)?;
                Some((*id, Arc::clone(&sub.capacity)))
            })
            .collect();
        Some(members)
    }

    /// Places `message` in every reserved slot at once, so a publish either
    /// reaches everyone it reserved for or (when its future is dropped before
    /// this point) no one.
    pub(super) fn deliver(
        &self,
        topic: &str,
        message: Message,
        mut reservations: Vec<Reservation>,
    ) {
        let mut wakers = Vec::new();
        let mut discarded = Vec::new();
        {
            let mut state = self.lock();
            let mut place = |reservation: Reservation, message: Message| {
                let entry = Entry {
                    topic: topic.to_owned(),
                    message,
                    slot: Some(reservation.slot),
                };
                let unplaced = state.place(
                    reservation.subscriber,
                    reservation.group,
                    entry,
                    &mut wakers,
                );
                discarded.extend(unplaced);
            };
            let last = reservations.pop();
            for reservation in reservations {
                place(reservation, message.clone());
            }
            if let Some(reservation) = last {
                place(reservation, message);
            }
        }
        drop(discarded);
        wakers.into_iter().for_each(Waker::wake);
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

    fn remove_route_if_unused(&mut self, pattern: &str) {
        let unused = self
            .route_mut(pattern)
            .is_some_and(|route| route.fanout.is_empty() && route.groups.is_empty());
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
            group.redeliveries.extend(buffer);
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
        let discarded: Vec<Entry> = group.redeliveries.into_iter().chain(buffer).collect();
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

    /// Puts `entry` in the buffer of `subscriber`, or when it left meanwhile,
    /// with the rest of its group. Returns the entry if nobody is left for it.
    fn place(
        &mut self,
        subscriber: u64,
        group: Option<u64>,
        entry: Entry,
        wakers: &mut Vec<Waker>,
    ) -> Option<Entry> {
        if let Some(sub) = self.subscribers.get_mut(&subscriber) {
            sub.buffer.push_back(entry);
            wakers.extend(sub.waker.take());
            return None;
        }
        let Some(group) = group.and_then(|group| self.groups.get_mut(&group)) else {
            return Some(entry);
        };
        group.redeliveries.push_back(entry);
        let members = group.members.clone();
        self.take_wakers(&members, wakers);
        None
    }

    fn take_wakers(&mut self, members: &[u64], wakers: &mut Vec<Waker>) {
        for id in members {
            if let Some(waker) = self
                .subscribers
                .get_mut(id)
                .and_then(|sub| sub.waker.take())
            {
                wakers.push(waker);
            }
        }
    }
}
