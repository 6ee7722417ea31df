//! A KV watch that survives server restarts and reports changes as registry
//! events, telling creates from updates from renewals by the last value of
//! each key.

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::StreamExt;
use micro_core::Backoff;
use tokio::sync::mpsc;

use super::{Inner, parse_key};
use crate::{Event, EventKind, Result, WatchStream, record};

/// How many events may wait for a slow consumer before the task waits too.
const BUFFER: usize = 256;
/// The first wait before reopening a broken watcher; it doubles up to the
/// configured maximum.
const MIN_BACKOFF: Duration = Duration::from_millis(50);

/// Opens the watcher now (so every later change is seen) and hands it to a task.
pub(super) async fn open(
    inner: Arc<Inner>,
    filter: String,
    service: Option<String>,
) -> Result<WatchStream> {
    let connection = inner.connection().await?;
    let mut stream = connection.bucket.stream.clone();
    // Entries up to this revision existed before the watch: known, not reported.
    let present = inner
        .timed("reading the registry bucket's state", stream.info())
        .await?
        .state
        .last_sequence;
    let watcher = inner
        .timed(
            "opening a NATS KV watcher",
            connection.bucket.watch_with_history(&filter),
        )
        .await?;
    let (sender, receiver) = mpsc::channel(BUFFER);
    let connections = inner.connections.subscribe();
    tokio::spawn(
        Follower {
            connections,
            inner,
            filter,
            service,
            sender,
            present,
            last_revision: 0,
            values: HashMap::new(),
        }
        .run(watcher),
    );
    Ok(record::channel_stream(receiver))
}

struct Follower {
    inner: Arc<Inner>,
    /// Moves when the client reconnects.
    connections: tokio::sync::watch::Receiver<u64>,
    filter: String,
    service: Option<String>,
    sender: mpsc::Sender<Result<Event>>,
    /// The bucket's last revision when the watch opened.
    present: u64,
    /// The last revision received.
    last_revision: u64,
    /// The current value of every live key the watch covers.
    values: HashMap<String, Bytes>,
}

impl Follower {
    async fn run(mut self, mut watcher: kv::Watch) {
        loop {
            let entry = tokio::select! {
                () = self.sender.closed() => return,
                entry = watcher.next() => Some(entry),
                _ = self.connections.changed() => None,
            };
            let Some(entry) = entry else {
                tracing::debug!(filter = %self.filter, "NATS client reconnected; reopening the KV watcher");
                match self.reopen().await {
                    Some(reopened) => watcher = reopened,
                    None => return,
                }
                continue;
            };
            match entry {
                Some(Ok(entry)) => {
                    self.last_revision = self.last_revision.max(entry.revision);
                    if let Some(event) = self.apply(entry)
                        && self.sender.send(Ok(event)).await.is_err()
                    {
                        return;
                    }
                    continue;
                }
                Some(Err(err)) => {
                    tracing::warn!(filter = %self.filter, error = %err, "NATS KV watcher failed; reopening");
                }
                None => {
                    tracing::warn!(filter = %self.filter, "NATS KV watcher ended; reopening");
                }
            }
            match self.reopen().await {
                Some(reopened) => watcher = reopened,
                None => return,
            }
        }
    }

    /// Reopens the watcher after the last revision received, with backoff,
    /// until it works or the consumer is gone.
    async fn reopen(&mut self) -> Option<kv::Watch> {
        let mut attempts =
            Backoff::exponential(MIN_BACKOFF, self.inner.config.max_reconnect_backoff).attempts();
        loop {
            let reopened = match self.inner.connection().await {
                Ok(connection) => {
                    self.inner
                        .timed(
                            "reopening a NATS KV watcher",
                            connection
                                .bucket
                                .watch_from_revision(&self.filter, self.last_revision + 1),
                        )
                        .await
                }
                Err(err) => Err(err),
            };
            let delay = match reopened {
                Ok(watcher) => return Some(watcher),
                Err(err) => {
                    let delay = attempts.next_delay();
                    tracing::debug!(filter = %self.filter, error = %err, retry_in = ?delay,
                        "reopening the NATS KV watcher failed");
                    delay
                }
            };
            tokio::select! {
                () = self.sender.closed() => return None,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Records the entry as the key's current value and returns the event it
    /// stands for, if any: none for entries older than the watch, renewals that
    /// changed nothing, or removals of keys that had no value.
    fn apply(&mut self, entry: kv::Entry) -> Option<Event> {
        let reported = entry.revision > self.present;
        let (kind, record) = match entry.operation {
            kv::Operation::Put => {
                let previous = self.values.insert(entry.key.clone(), entry.value.clone());
                let kind = match previous {
                    None => EventKind::Create,
                    Some(previous) if previous == entry.value => return None,
                    Some(_) => EventKind::Update,
                };
                (kind, record::decode(&entry.value, &entry.key)?)
            }
            kv::Operation::Delete | kv::Operation::Purge => {
                let previous = self.values.remove(&entry.key)?;
                let record = record::decode(&previous, &entry.key).or_else(|| {
                    let (name, version, node) = parse_key(&entry.key)?;
                    Some(record::skeleton(name, version, node))
                })?;
                (EventKind::Delete, record)
            }
        };
        let wanted = self
            .service
            .as_ref()
            .is_none_or(|name| *name == record.name);
        (reported && wanted).then(|| record::event(kind, record))
    }
}
