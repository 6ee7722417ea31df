use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use async_trait::async_trait;
use futures::Stream;

use super::state::{Entry, Inbox, Redelivery, Shared};
use crate::{Acker, Delivery, Message, Result};

/// The delivery stream of one memory subscription; dropping it unsubscribes.
#[derive(Debug)]
pub(super) struct Deliveries {
    shared: Arc<Shared>,
    inbox: Arc<Inbox>,
    redelivery: Redelivery,
    manual_ack: bool,
}

impl Deliveries {
    pub(super) fn new(
        shared: Arc<Shared>,
        inbox: Arc<Inbox>,
        redelivery: Redelivery,
        manual_ack: bool,
    ) -> Deliveries {
        Deliveries {
            shared,
            inbox,
            redelivery,
            manual_ack,
        }
    }
}

impl Stream for Deliveries {
    type Item = Result<Delivery>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Poll::Ready(entry) = this.inbox.poll_take(cx) else {
            return Poll::Pending;
        };
        Poll::Ready(entry.map(|mut entry| {
            if this.manual_ack {
                let (topic, message) = (entry.topic.to_string(), Message::clone(&entry.message));
                let acker = MemoryAcker {
                    shared: Arc::clone(&this.shared),
                    redelivery: this.redelivery,
                    entry: Some(entry),
                };
                Ok(Delivery::with_acker(topic, message, Box::new(acker)))
            } else {
                entry.release_slot();
                // The last subscriber to take a message takes it without a copy.
                let message =
                    Arc::try_unwrap(entry.message).unwrap_or_else(|shared| (*shared).clone());
                Ok(Delivery::new(entry.topic.as_ref(), message))
            }
        }))
    }
}

impl Drop for Deliveries {
    fn drop(&mut self) {
        self.shared.unsubscribe(self.inbox.id());
    }
}

/// Settles one manual-ack delivery. Until settled the message keeps its buffer
/// slot, so unacknowledged messages count against the subscriber's buffer.
///
/// Dropping it unsettled puts the message back at once, exactly like
/// `nack(None)`: in manual-ack mode a message is never lost because a handler
/// forgot to settle it or panicked.
#[derive(Debug)]
struct MemoryAcker {
    shared: Arc<Shared>,
    redelivery: Redelivery,
    entry: Option<Entry>,
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn ack(mut self: Box<Self>) -> Result<()> {
        self.entry = None;
        Ok(())
    }

    async fn nack(self: Box<Self>, delay: Option<Duration>) -> Result<()> {
        let Some(delay) = delay.filter(|delay| !delay.is_zero()) else {
            // Dropping an unsettled acker redelivers now.
            return Ok(());
        };
        match tokio::runtime::Handle::try_current() {
            // The acker rides along and redelivers when the task drops it:
            // after the delay, or early if the runtime shuts down first.
            Ok(runtime) => {
                runtime.spawn(async move {
                    tokio::time::sleep(delay).await;
                    drop(self);
                });
            }
            Err(_) => tracing::warn!(
                ?delay,
                "memory broker: nack outside a Tokio runtime cannot wait; redelivering now"
            ),
        }
        Ok(())
    }
}

impl Drop for MemoryAcker {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            self.shared.requeue(self.redelivery, entry);
        }
    }
}
