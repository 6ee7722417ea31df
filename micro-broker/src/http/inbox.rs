//! One subscription's receiving side: a bounded queue the endpoint fills and
//! the subscription stream drains, with manual acknowledgement.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use async_trait::async_trait;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::{Acker, Delivery, Message, Result};

/// A message the subscription holds, with the buffer slot it occupies until
/// it is taken (automatic ack) or settled (manual ack).
struct Held {
    topic: String,
    message: Message,
    _slot: OwnedSemaphorePermit,
}

/// Why [`Inbox::accept`] did not take a message.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refused {
    /// The subscription was dropped (before or while waiting for room).
    Gone,
}

pub(super) struct Inbox {
    queue: Mutex<VecDeque<Held>>,
    room: Arc<Semaphore>,
    ready: Notify,
    closed: CancellationToken,
    manual_ack: bool,
}

impl Inbox {
    pub(super) fn new(buffer: usize, manual_ack: bool) -> Arc<Inbox> {
        Arc::new(Inbox {
            queue: Mutex::new(VecDeque::new()),
            room: Arc::new(Semaphore::new(buffer.clamp(1, Semaphore::MAX_PERMITS))),
            ready: Notify::new(),
            closed: CancellationToken::new(),
            manual_ack,
        })
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Held>> {
        // Pushes and pops cannot panic half-way.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a message once there is room for it: the endpoint answers the
    /// publisher only after this returns, which is the back-pressure.
    pub(super) async fn accept(
        &self,
        topic: String,
        message: Message,
    ) -> std::result::Result<(), Refused> {
        let slot = tokio::select! {
            biased;
            () = self.closed.cancelled() => return Err(Refused::Gone),
            slot = Arc::clone(&self.room).acquire_owned() => slot.map_err(|_| Refused::Gone)?,
        };
        self.lock().push_back(Held {
            topic,
            message,
            _slot: slot,
        });
        self.ready.notify_one();
        Ok(())
    }

    /// Waits for the next message, oldest (or redelivered) first.
    pub(super) async fn next(self: &Arc<Self>) -> Delivery {
        loop {
            if let Some(held) = self.lock().pop_front() {
                return self.deliver(held);
            }
            // `notify_one` keeps a permit when nobody waits, so a message
            // pushed between the check above and this wait is not missed.
            self.ready.notified().await;
        }
    }

    fn deliver(self: &Arc<Self>, held: Held) -> Delivery {
        if !self.manual_ack {
            return Delivery::new(held.topic, held.message);
        }
        let (topic, message) = (held.topic.clone(), held.message.clone());
        let acker = InboxAcker {
            inbox: Arc::clone(self),
            held: Some(held),
        };
        Delivery::with_acker(topic, message, Box::new(acker))
    }

    /// Puts a message back at the front, for redelivery.
    fn redeliver(&self, held: Held) {
        if self.closed.is_cancelled() {
            return;
        }
        self.lock().push_front(held);
        self.ready.notify_one();
    }

    /// Marks the subscription gone: waiting and later deliveries are refused.
    pub(super) fn close(&self) {
        self.closed.cancel();
        self.lock().clear();
    }
}

struct InboxAcker {
    inbox: Arc<Inbox>,
    held: Option<Held>,
}

#[async_trait]
impl Acker for InboxAcker {
    async fn ack(mut self: Box<Self>) -> Result<()> {
        // Dropping the held message frees its slot.
        self.held = None;
        Ok(())
    }

    async fn nack(mut self: Box<Self>, delay: Option<Duration>) -> Result<()> {
        let Some(held) = self.held.take() else {
            return Ok(());
        };
        match delay {
            None | Some(Duration::ZERO) => self.inbox.redeliver(held),
            Some(delay) => {
                let inbox = Arc::clone(&self.inbox);
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    inbox.redeliver(held);
                });
            }
        }
        Ok(())
    }
}

impl Drop for InboxAcker {
    /// A delivery dropped without being settled is redelivered at once, as
    /// with the memory broker.
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            self.inbox.redeliver(held);
        }
    }
}
