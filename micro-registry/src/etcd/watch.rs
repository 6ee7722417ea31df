//! An etcd watch that survives etcd restarts: a task follows the etcd watch and
//! reopens it, from the revision after the last one delivered, whenever the
//! connection breaks.

use std::{sync::Arc, time::Duration};

use etcd_client::{EventType, WatchOptions as EtcdWatchOptions, WatchStream as EtcdWatchStream};
use micro_core::Backoff;
use tokio::sync::mpsc;

use super::Inner;
use crate::{Error, ErrorKind, Event, EventKind, Result, WatchStream, record};

/// How many events may wait for a slow consumer before the task waits too.
const BUFFER: usize = 256;
/// The first wait before reopening a broken watch; it doubles up to the
/// configured maximum.
const MIN_BACKOFF: Duration = Duration::from_millis(50);

/// Opens the watch now (so every later change is seen) and hands it to a task.
pub(super) async fn open(
    inner: Arc<Inner>,
    prefix: String,
    service: Option<String>,
) -> Result<WatchStream> {
    let (stream, revision) = start(&inner, &prefix, None).await?;
    let (sender, receiver) = mpsc::channel(BUFFER);
    tokio::spawn(
        Follower {
            inner,
            prefix,
            service,
            sender,
            last_revision: revision,
        }
        .run(stream),
    );
    Ok(record::channel_stream(receiver))
}

/// Creates an etcd watch on `prefix` from `from` (or from now) and waits for
/// etcd to confirm it; returns it with the revision it starts after.
async fn start(inner: &Inner, prefix: &str, from: Option<i64>) -> Result<(EtcdWatchStream, i64)> {
    let mut client = inner.client().await?;
    let mut options = EtcdWatchOptions::new().with_prefix().with_prev_key();
    if let Some(revision) = from {
        options = options.with_start_revision(revision);
    }
    inner
        .timed("opening an etcd watch", async {
            let mut stream = client.watch(prefix, Some(options)).await?;
            let created = stream.message().await?;
            let revision = created
                .as_ref()
                .and_then(|response| response.header())
                .map_or(0, |header| header.revision());
            match created {
                Some(response) if response.created() => Ok((stream, revision)),
                _ => Err(etcd_client::Error::WatchError(
                    "etcd did not confirm the watch".to_owned(),
                )),
            }
        })
        .await
}

struct Follower {
    inner: Arc<Inner>,
    prefix: String,
    service: Option<String>,
    sender: mpsc::Sender<Result<Event>>,
    /// Every change up to this revision has been delivered.
    last_revision: i64,
}

impl Follower {
    async fn run(mut self, mut stream: EtcdWatchStream) {
        loop {
            let message = tokio::select! {
                () = self.sender.closed() => return,
                message = stream.message() => message,
            };
            let resume_from = match message {
                Ok(Some(response)) if response.canceled() => {
                    if response.compact_revision() > 0 {
                        let lost = Error::new(
                            ErrorKind::DataLoss,
                            "etcd compacted the history this watch had not seen yet; \
                             resynchronise with get_service",
                        );
                        if self.sender.send(Err(lost)).await.is_err() {
                            return;
                        }
                        None
                    } else {
                        Some(self.last_revision + 1)
                    }
                }
                Ok(Some(response)) => {
                    for event in response.events() {
                        if let Some(kv) = event.kv() {
                            self.last_revision = self.last_revision.max(kv.mod_revision());
                        }
                        let Some(event) = self.translate(event) else {
                            continue;
                        };
                        if self.sender.send(Ok(event)).await.is_err() {
                            return;
                        }
                    }
                    continue;
                }
                Ok(None) => Some(self.last_revision + 1),
                Err(err) => {
                    tracing::warn!(prefix = %self.prefix, error = %err, "etcd watch broke; reopening");
                    Some(self.last_revision + 1)
                }
            };
            match self.reopen(resume_from).await {
                Some(reopened) => stream = reopened,
                None => return,
            }
        }
    }

    /// Reopens the watch with backoff until it works or the consumer is gone.
    async fn reopen(&mut self, from: Option<i64>) -> Option<EtcdWatchStream> {
        let mut attempts =
            Backoff::exponential(MIN_BACKOFF, self.inner.config.max_reconnect_backoff).attempts();
        loop {
            let delay = match start(&self.inner, &self.prefix, from).await {
                Ok((stream, revision)) => {
                    if from.is_none() {
                        self.last_revision = revision;
                    }
                    tracing::info!(prefix = %self.prefix, "etcd watch reopened");
                    return Some(stream);
                }
                Err(err) => {
                    let delay = attempts.next_delay();
                    tracing::debug!(prefix = %self.prefix, error = %err, retry_in = ?delay,
                        "reopening the etcd watch failed");
                    delay
                }
            };
            tokio::select! {
                () = self.sender.closed() => return None,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// The registry event for an etcd event, if it is one: a rewrite with the
    /// same value (a renewal under a new lease) is not.
    fn translate(&self, event: &etcd_client::Event) -> Option<Event> {
        let kv = event.kv()?;
        let location = String::from_utf8_lossy(kv.key());
        let (kind, record) = match event.event_type() {
            EventType::Put => {
                let record = record::decode(kv.value(), &location)?;
                match event.prev_kv() {
                    Some(previous) if previous.value() == kv.value() => return None,
                    Some(_) => (EventKind::Update, record),
                    None => (EventKind::Create, record),
                }
            }
            EventType::Delete => {
                let previous = event
                    .prev_kv()
                    .and_then(|previous| record::decode(previous.value(), &location));
                let record = match previous {
                    Some(record) => record,
                    None => {
                        let (name, version, node) = self.inner.parse_key(kv.key())?;
                        record::skeleton(name, version, node)
                    }
                };
                (EventKind::Delete, record)
            }
        };
        let wanted = self
            .service
            .as_ref()
            .is_none_or(|name| *name == record.name);
        wanted.then(|| record::event(kind, record))
    }
}
