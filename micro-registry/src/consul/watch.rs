//! Watches as blocking queries: a task holds the last state it saw, fetches
//! the next one when Consul's index moves, and reports the difference; changes
//! made through the same registry are reported at once.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use micro_core::Backoff;
use tokio::sync::{broadcast, mpsc};

use super::{Inner, Instances, LocalChange, agent};
use crate::{Event, EventKind, Result, Service, WatchStream, record};

/// How many events may wait for a slow consumer before the task waits too.
const BUFFER: usize = 256;
/// The first wait before asking again after a failure; it doubles up to the
/// configured maximum.
const MIN_BACKOFF: Duration = Duration::from_millis(50);

/// Where a watch's blocking queries resume.
#[derive(Debug, Clone, Copy)]
enum Indexes {
    /// One service: the index of its health query.
    Service(u64),
    /// Every service: the catalog's service index and the health checks' index.
    All { services: u64, checks: u64 },
}

/// Reads the current state (so later changes are reported) and hands the watch to a task.
pub(super) async fn open(inner: Arc<Inner>, service: Option<String>) -> Result<WatchStream> {
    // Subscribed first: a change made through this registry while the state is
    // read is applied on top of it.
    let local = inner.local.subscribe();
    let (known, indexes) = fetch(&inner, service.as_deref(), None).await?;
    let (sender, receiver) = mpsc::channel(BUFFER);
    tokio::spawn(
        Follower {
            inner,
            service,
            known,
            indexes,
            local,
            sender,
        }
        .run(),
    );
    Ok(record::channel_stream(receiver))
}

/// The state now (`after` is `None`), or once the indexes move past `after`.
async fn fetch(
    inner: &Inner,
    service: Option<&str>,
    after: Option<Indexes>,
) -> Result<(Instances, Indexes)> {
    match service {
        Some(name) => {
            let index = after.map(|indexes| match indexes {
                Indexes::Service(index) => index,
                Indexes::All { services, .. } => services,
            });
            let (instances, index) = inner.instances(name, index).await?;
            Ok((instances, Indexes::Service(index)))
        }
        None => {
            let (services, checks) = match after {
                Some(Indexes::All { services, checks }) => {
                    // Whichever moves first; the other is asked again next time.
                    tokio::select! {
                        index = services_index(inner, services) => (index?, checks),
                        index = agent::checks_index(inner, checks) => (services, index?),
                    }
                }
                _ => (
                    services_index(inner, 0).await?,
                    agent::checks_index(inner, 0).await?,
                ),
            };
            let instances = inner.all_instances().await?;
            Ok((instances, Indexes::All { services, checks }))
        }
    }
}

/// The catalog's service index, blocking until it passes `index` (when not 0).
async fn services_index(inner: &Inner, index: u64) -> Result<u64> {
    let options = rs_consul::QueryOptions {
        index: (index > 0).then_some(index),
        wait: Some(inner.config.watch_wait),
        timeout: Some(inner.blocking_timeout()),
        ..rs_consul::QueryOptions::default()
    };
    inner
        .consul
        .get_all_registered_service_names(Some(options))
        .await
        .map(|answer| answer.index)
        .map_err(|err| super::consul_error("watching the Consul catalog", err))
}

struct Follower {
    inner: Arc<Inner>,
    service: Option<String>,
    /// What the consumer has been told: each visible instance's record.
    known: Instances,
    indexes: Indexes,
    local: broadcast::Receiver<LocalChange>,
    sender: mpsc::Sender<Result<Event>>,
}

impl Follower {
    async fn run(mut self) {
        let mut pending: Option<BoxFuture<'static, Result<(Instances, Indexes)>>> = None;
        // Set by a change made through this registry while a query was out:
        // that answer may predate the change, so the next query asks for the
        // state at once instead of blocking.
        let mut stale = false;
        let mut read_now = false;
        let mut backoff = Duration::ZERO;
        let mut attempts =
            Backoff::exponential(MIN_BACKOFF, self.inner.config.max_reconnect_backoff).attempts();
        loop {
            let query = pending.get_or_insert_with(|| {
                let inner = Arc::clone(&self.inner);
                let service = self.service.clone();
                let after = (!read_now).then_some(self.indexes);
                let delay = backoff;
                Box::pin(async move {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    fetch(&inner, service.as_deref(), after).await
                })
            });
            let events = tokio::select! {
                () = self.sender.closed() => return,
                change = self.local.recv() => {
                    stale = true;
                    match change {
                        Ok(change) => self.apply_local(change).into_iter().collect(),
                        // Missed some: the next answer brings the state anyway.
                        Err(_) => Vec::new(),
                    }
                }
                answer = query => {
                    pending = None;
                    match answer {
                        Ok((instances, indexes)) => {
                            backoff = Duration::ZERO;
                            attempts.reset();
                            self.indexes = resumable(self.indexes, indexes);
                            read_now = stale;
                            if stale {
                                stale = false;
                                Vec::new()
                            } else {
                                self.apply_state(instances)
                            }
                        }
                        Err(err) => {
                            tracing::debug!(service = ?self.service, error = %err,
                                "Consul watch query failed; retrying");
                            backoff = attempts.next_delay();
                            Vec::new()
                        }
                    }
                }
            };
            for event in events {
                if self.sender.send(Ok(event)).await.is_err() {
                    return;
                }
            }
        }
    }

    fn wants(&self, record: &Service) -> bool {
        self.service
            .as_ref()
            .is_none_or(|name| *name == record.name)
    }

    /// The event for a change made through this registry, if it changes what
    /// the consumer knows.
    fn apply_local(&mut self, change: LocalChange) -> Option<Event> {
        match change.record {
            Some(record) if self.wants(&record) => {
                let kind = match self.known.insert(change.id, record.clone()) {
                    None => EventKind::Create,
                    Some(previous) if previous == record => return None,
                    Some(_) => EventKind::Update,
                };
                Some(record::event(kind, record))
            }
            Some(_) => None,
            None => self
                .known
                .remove(&change.id)
                .map(|gone| record::event(EventKind::Delete, gone)),
        }
    }

    /// The events turning what the consumer knows into `instances`:
    /// removals first, then creations and updates, each in id order.
    fn apply_state(&mut self, instances: Instances) -> Vec<Event> {
        let instances: BTreeMap<_, _> = instances
            .into_iter()
            .filter(|(_, record)| self.wants(record))
            .collect();
        let mut gone: Vec<_> = self
            .known
            .iter()
            .filter(|(id, _)| !instances.contains_key(*id))
            .map(|(id, record)| (id.clone(), record.clone()))
            .collect();
        gone.sort_by(|a, b| a.0.cmp(&b.0));
        let mut events: Vec<Event> = gone
            .into_iter()
            .map(|(_, record)| record::event(EventKind::Delete, record))
            .collect();
        for (id, record) in &instances {
            match self.known.get(id) {
                None => events.push(record::event(EventKind::Create, record.clone())),
                Some(previous) if previous != record => {
                    events.push(record::event(EventKind::Update, record.clone()));
                }
                Some(_) => {}
            }
        }
        self.known = instances.into_iter().collect();
        events
    }
}

/// The indexes to block on next. Consul's documentation: an index that went
/// backwards (the agent's state was reset) means starting over from 0, and an
/// index is never below 1.
fn resumable(previous: Indexes, next: Indexes) -> Indexes {
    let fix = |before: u64, after: u64| if after < before { 0 } else { after.max(1) };
    match (previous, next) {
        (Indexes::Service(before), Indexes::Service(after)) => Indexes::Service(fix(before, after)),
        (
            Indexes::All {
                services: s0,
                checks: c0,
            },
            Indexes::All {
                services: s1,
                checks: c1,
            },
        ) => Indexes::All {
            services: fix(s0, s1),
            checks: fix(c0, c1),
        },
        (_, next) => next,
    }
}
