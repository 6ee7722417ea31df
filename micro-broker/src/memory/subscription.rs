use std::{
    collections::VecDeque,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use async_trait::async_trait;
use futures::Stream;

use super::{
    feed::{Feed, Reader},
    state::{Entry, Handout, Inbox, Redelivery, Shared},
};
use crate::{Acker, Delivery, Result};

/// The delivery stream of one memory subscription; dropping it unsubscribes.
#[derive(Debug)]
pub(super) struct Deliveries {
    shared: Arc<Shared>,
    inbox: Arc<Inbox>,
    redelivery: Redelivery,
    manual_ack: bool,
    /// Taken from the inbox in one go, handed out one by one.
    taken: VecDeque<Entry>,
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
            taken: VecDeque::new(),
        }
    }
}

impl Stream for Deliveries {
    type Item = Result<Delivery>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.taken.is_empty() {
            match this.inbox.poll_take(cx, &mut this.taken) {
                Poll::Ready(true) => {}
                Poll::Ready(false) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
        let Some(mut entry) = this.taken.pop_front() else {
            return Poll::Ready(None);
        };
        let delivery = if this.manual_ack {
            entry.hand_out_unsettled(&this.inbox);
            let topic = entry.topic(this.inbox.pattern());
            let message = entry.message.clone();
            let acker = MemoryAcker {
                shared: Arc::clone(&this.shared),
                redelivery: this.redelivery,
                entry: Some(entry),
            };
            Delivery::with_acker(topic, message, Box::new(acker))
        } else {
            // Taken for good: its slot is free at once, so a publisher
            // held back by a full buffer resumes as soon as one is read.
            if let Handout::Counted = entry.hand_out() {
                this.inbox.give_back_slot();
            }
            let topic = entry.topic(this.inbox.pattern());
            Delivery::new(topic, entry.message)
        };
        Poll::Ready(Some(Ok(delivery)))
    }
}

impl Drop for Deliveries {
    fn drop(&mut self) {
        self.shared
            .unsubscribe(self.inbox.id(), std::mem::take(&mut self.taken));
    }
}

/// The delivery stream of a fan-out subscription of an exact topic that
/// needs no ack: a reader of the topic's shared feed. Dropping it
/// unsubscribes.
#[derive(Debug)]
pub(super) struct FeedDeliveries {
    shared: Arc<Shared>,
    feed: Arc<Feed>,
    reader: Reader,
}

impl FeedDeliveries {
    pub(super) fn new(shared: Arc<Shared>, feed: Arc<Feed>, reader: Reader) -> FeedDeliveries {
        FeedDeliveries {
            shared,
            feed,
            reader,
        }
    }
}

impl Stream for FeedDeliveries {
    type Item = Result<Delivery>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        this.reader
            .poll_next(&this.feed, cx)
            .map(|message| Some(Ok(Delivery::new(this.reader.topic().clone(), message))))
    }
}

impl Drop for FeedDeliveries {
    fn drop(&mut self) {
        self.shared.leave_feed(&self.feed, &self.reader);
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
