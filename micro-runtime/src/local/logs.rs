//! A service's bounded log: the last N lines, and a broadcast of new ones
//! for followers.

use std::{
    collections::VecDeque,
    sync::{Mutex, MutexGuard, PoisonError},
    time::SystemTime,
};

use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_stream::wrappers::{BroadcastStream, errors::BroadcastStreamRecvError};

use crate::{Error, LogLine, LogOptions, LogSource, LogStream};

#[derive(Debug)]
pub(crate) struct LogBuffer {
    lines: Mutex<VecDeque<LogLine>>,
    capacity: usize,
    new_lines: broadcast::Sender<LogLine>,
}

impl LogBuffer {
    pub(crate) fn new(capacity: usize) -> LogBuffer {
        let capacity = capacity.max(1);
        LogBuffer {
            lines: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            capacity,
            new_lines: broadcast::channel(capacity).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<LogLine>> {
        // Pushing and popping cannot leave the deque inconsistent.
        self.lines.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn push(&self, source: LogSource, text: impl Into<String>) {
        let line = LogLine {
            at: SystemTime::now(),
            source,
            text: text.into(),
        };
        let mut lines = self.lock();
        if lines.len() == self.capacity {
            lines.pop_front();
        }
        lines.push_back(line.clone());
        // Sent under the lock, so a follower's snapshot and subscription
        // (taken under the same lock) neither miss nor repeat a line.
        let _no_followers = self.new_lines.send(line);
    }

    /// The runtime's own note about the service.
    pub(crate) fn note(&self, text: impl Into<String>) {
        let text = text.into();
        tracing::info!(target: "micro_runtime", "{text}");
        self.push(LogSource::Runtime, text);
    }

    pub(crate) fn stream(&self, options: &LogOptions) -> LogStream {
        let (snapshot, receiver) = {
            let lines = self.lock();
            let skip = options
                .tail
                .map_or(0, |tail| lines.len().saturating_sub(tail));
            let snapshot: Vec<LogLine> = lines.iter().skip(skip).cloned().collect();
            (snapshot, options.follow.then(|| self.new_lines.subscribe()))
        };
        let buffered = futures::stream::iter(snapshot.into_iter().map(Ok));
        match receiver {
            None => buffered.boxed(),
            Some(receiver) => {
                let new_lines = BroadcastStream::new(receiver).map(|item| {
                    item.map_err(|BroadcastStreamRecvError::Lagged(missed)| {
                        Error::resource_exhausted(format!(
                            "the log follower fell behind and missed {missed} lines"
                        ))
                    })
                });
                buffered.chain(new_lines).boxed()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lines: Vec<crate::Result<LogLine>>) -> Vec<String> {
        lines.into_iter().map(|line| line.unwrap().text).collect()
    }

    #[tokio::test]
    async fn keeps_the_last_lines_and_follows_new_ones() {
        let buffer = LogBuffer::new(3);
        for n in 0..5 {
            buffer.push(LogSource::Stdout, format!("line {n}"));
        }
        let all = buffer.stream(&LogOptions::default()).collect().await;
        assert_eq!(texts(all), ["line 2", "line 3", "line 4"]);
        let tail = LogOptions {
            tail: Some(1),
            follow: false,
        };
        assert_eq!(texts(buffer.stream(&tail).collect().await), ["line 4"]);

        let mut follower = buffer.stream(&LogOptions {
            tail: Some(1),
            follow: true,
        });
        buffer.push(LogSource::Stderr, "line 5");
        let first = follower.next().await.unwrap().unwrap();
        let second = follower.next().await.unwrap().unwrap();
        assert_eq!(
            (first.text.as_str(), second.text.as_str()),
            ("line 4", "line 5")
        );
        assert_eq!(second.source, LogSource::Stderr);
    }

    #[tokio::test]
    async fn a_lagging_follower_is_told_what_it_missed() {
        let buffer = LogBuffer::new(2);
        let mut follower = buffer.stream(&LogOptions::follow());
        for n in 0..5 {
            buffer.push(LogSource::Stdout, format!("line {n}"));
        }
        let err = follower.next().await.unwrap().unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::ResourceExhausted);
        assert_eq!(follower.next().await.unwrap().unwrap().text, "line 3");
    }
}
