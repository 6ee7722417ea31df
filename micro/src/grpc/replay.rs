//! A request body that can be sent again: what one attempt pulled from the
//! caller's body is kept (up to a limit) and replayed to the next attempt
//! before it goes on pulling from the caller.

use std::{
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame};

/// The shared state of one call's request body across its attempts.
pub(super) struct Replay {
    shared: Arc<Mutex<Shared>>,
}

struct Shared {
    body: tonic::body::Body,
    /// The data frames pulled so far, while they fit in `limit`.
    kept: Vec<Bytes>,
    kept_len: usize,
    limit: usize,
    /// Set once more was pulled than could be kept: no more attempts.
    overflowed: bool,
    trailers: Option<HeaderMap>,
    ended: bool,
}

impl Replay {
    pub(super) fn new(body: tonic::body::Body, limit: usize) -> Replay {
        Replay {
            shared: Arc::new(Mutex::new(Shared {
                body,
                kept: Vec::new(),
                kept_len: 0,
                limit,
                overflowed: false,
                trailers: None,
                ended: false,
            })),
        }
    }

    /// The body for one more attempt.
    pub(super) fn handle(&self) -> ReplayBody {
        ReplayBody {
            shared: self.shared.clone(),
            position: 0,
            trailers_sent: false,
        }
    }

    /// Whether everything pulled so far was kept, so another attempt can
    /// send the same body.
    pub(super) fn can_replay(&self) -> bool {
        !self
            .shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .overflowed
    }
}

/// One attempt's view of the request body.
pub(super) struct ReplayBody {
    shared: Arc<Mutex<Shared>>,
    position: usize,
    trailers_sent: bool,
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let this = self.get_mut();
        let mut shared = this.shared.lock().unwrap_or_else(PoisonError::into_inner);
        if this.position < shared.kept.len() {
            let chunk = shared.kept[this.position].clone();
            this.position += 1;
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if shared.ended {
            if this.trailers_sent {
                return Poll::Ready(None);
            }
            this.trailers_sent = true;
            return Poll::Ready(shared.trailers.clone().map(|t| Ok(Frame::trailers(t))));
        }
        let polled = Pin::new(&mut shared.body).poll_frame(cx);
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                shared.ended = true;
                this.trailers_sent = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(status))) => {
                // A failed body cannot be sent again.
                shared.overflowed = true;
                Poll::Ready(Some(Err(status)))
            }
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    if !shared.overflowed && shared.kept_len + data.len() <= shared.limit {
                        shared.kept_len += data.len();
                        shared.kept.push(data.clone());
                        this.position += 1;
                    } else {
                        shared.overflowed = true;
                        shared.kept = Vec::new();
                    }
                    // Noted now, so `is_end_stream` tells HTTP/2 that this
                    // is the last DATA frame (END_STREAM on it, no empty one
                    // after it), as the caller's own body would have.
                    if shared.body.is_end_stream() {
                        shared.ended = true;
                        this.trailers_sent = true;
                    }
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => {
                    if let Some(trailers) = frame.trailers_ref() {
                        shared.trailers = Some(trailers.clone());
                    }
                    shared.ended = true;
                    this.trailers_sent = true;
                    Poll::Ready(Some(Ok(frame)))
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        let shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        shared.ended && handle_done(self.position, self.trailers_sent, &shared)
    }
}

fn handle_done(position: usize, trailers_sent: bool, shared: &Shared) -> bool {
    position >= shared.kept.len() && (trailers_sent || shared.trailers.is_none())
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    fn body(chunks: &[&'static str]) -> tonic::body::Body {
        let frames = chunks
            .iter()
            .map(|chunk| Ok::<_, tonic::Status>(Frame::data(Bytes::from_static(chunk.as_bytes()))))
            .collect::<Vec<_>>();
        tonic::body::Body::new(http_body_util::StreamBody::new(futures::stream::iter(
            frames,
        )))
    }

    async fn collect(body: ReplayBody) -> Bytes {
        body.collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_sent_again_whole() {
        let replay = Replay::new(body(&["ab", "cd"]), 16);
        assert_eq!(collect(replay.handle()).await, "abcd");
        assert!(replay.can_replay());
        assert_eq!(collect(replay.handle()).await, "abcd");
    }

    #[tokio::test]
    async fn a_partly_sent_body_resumes_after_the_kept_part() {
        let replay = Replay::new(body(&["ab", "cd", "ef"]), 16);
        let mut first = replay.handle();
        let chunk = first.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(chunk, "ab");
        drop(first);
        assert!(replay.can_replay());
        assert_eq!(collect(replay.handle()).await, "abcdef");
    }

    #[tokio::test]
    async fn the_end_of_a_body_that_knows_it_is_told_with_its_last_frame() {
        let replay = Replay::new(
            tonic::body::Body::new(http_body_util::Full::new(Bytes::from_static(b"once"))),
            16,
        );
        for attempt in 0..2 {
            let mut handle = replay.handle();
            assert!(!handle.is_end_stream(), "attempt {attempt}");
            let chunk = handle.frame().await.unwrap().unwrap().into_data().unwrap();
            assert_eq!(chunk, "once");
            assert!(handle.is_end_stream(), "attempt {attempt}");
            assert!(handle.frame().await.is_none());
        }
    }

    #[tokio::test]
    async fn a_body_over_the_limit_cannot_be_replayed() {
        let replay = Replay::new(body(&["abc", "def"]), 4);
        assert_eq!(collect(replay.handle()).await, "abcdef");
        assert!(!replay.can_replay());
    }
}
