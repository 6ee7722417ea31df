//! A bounded channel whose receiving end is an outgoing message stream.

use std::{
    fmt,
    pin::Pin,
    task::{Context as TaskContext, Poll},
};

use futures::Stream;
use tokio::sync::mpsc;

use crate::{Error, Result};

/// A bounded channel for pushing the messages of a stream from a task of
/// your own: pass the [`Receiver`] as a call's request stream or return it as
/// a handler's reply stream, and [`send`](Sender::send) into the [`Sender`].
///
/// At most `capacity` messages (at least one) wait in the channel; past that
/// `send` waits for the other side to read, so back-pressure reaches the
/// sending task. Dropping every sender ends the stream cleanly;
/// [`abort`](Sender::abort) ends it with an error.
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    (Sender(sender), Receiver(receiver))
}

/// The sending half of [`channel`]. Cheap to clone.
pub struct Sender<T>(mpsc::Sender<Result<T>>);

impl<T> Sender<T> {
    /// Sends one message, waiting while the channel is full. Fails with
    /// `Cancelled` once the stream was dropped: the call ended or the other
    /// side stopped reading, and there is no point producing more.
    pub async fn send(&self, message: T) -> Result<()> {
        self.0.send(Ok(message)).await.map_err(|_| cancelled())
    }

    /// Ends the stream with `error`, which the other side receives as the
    /// stream's last item. Fails with `Cancelled` like [`send`](Sender::send).
    pub async fn abort(self, error: Error) -> Result<()> {
        self.0.send(Err(error)).await.map_err(|_| cancelled())
    }

    /// Whether the stream was dropped, so nothing sent would be read.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    /// Resolves once the stream is dropped: a producer can race its work
    /// against this to stop as soon as nobody listens.
    pub async fn closed(&self) {
        self.0.closed().await;
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        Sender(self.0.clone())
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// The receiving half of [`channel`]: a `Stream<Item = Result<T>>` to send as
/// a call's or a handler's outgoing messages.
pub struct Receiver<T>(mpsc::Receiver<Result<T>>);

impl<T> Stream for Receiver<T> {
    type Item = Result<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Result<T>>> {
        self.0.poll_recv(cx)
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

fn cancelled() -> Error {
    Error::new(
        crate::ErrorKind::Cancelled,
        "the stream was dropped: the call ended or the other side stopped reading",
    )
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;
    use crate::ErrorKind;

    #[tokio::test]
    async fn messages_and_an_abort_arrive_in_order() {
        let (sender, mut receiver) = channel::<u8>(2);
        sender.send(1).await.unwrap();
        sender
            .clone()
            .abort(Error::not_found("gone"))
            .await
            .unwrap();
        assert_eq!(receiver.next().await.unwrap().unwrap(), 1);
        let err = receiver.next().await.unwrap().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        drop(sender);
        assert!(receiver.next().await.is_none());
    }

    #[tokio::test]
    async fn sending_into_a_dropped_stream_is_cancelled() {
        let (sender, receiver) = channel::<u8>(1);
        drop(receiver);
        assert!(sender.is_closed());
        sender.closed().await;
        assert_eq!(
            sender.send(1).await.unwrap_err().kind(),
            ErrorKind::Cancelled
        );
    }
}
