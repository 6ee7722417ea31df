//! A file of settings in JSON, TOML or YAML, re-read whenever it changes.
//!
//! The file's directory is watched (notify), not the file itself: editors and
//! deployment tools replace files by renaming a new one over them, and
//! Kubernetes swaps a symlinked directory, all of which a watch on the old
//! file would miss. Every event in the directory re-reads the file; only new
//! content counts. A file that becomes invalid or disappears is reported as
//! an error through the watch, and [`Config`](crate::Config) keeps its last
//! good content until the file is good again.

mod config;
mod format;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use futures::StreamExt;
use notify::{RecursiveMode, Watcher};
use serde_json::Value;
use tokio::sync::Notify;

pub use config::FileSourceConfig;
pub use format::Format;

use crate::{Capabilities, Error, Result, Source, SourceStream, value};

/// How long to let a burst of file events settle before reading: a save is
/// often several events (truncate, write, rename), and reading between them
/// would report a half-written file.
const SETTLE: Duration = Duration::from_millis(25);

/// Settings from a file, watched; see the [module docs](self).
///
/// ```no_run
/// use micro_config::{Config, FileSource};
///
/// # async fn demo() -> micro_config::Result<()> {
/// let config = Config::builder()
///     .source(FileSource::new("/etc/greeter/config.yaml")?)
///     .build()
///     .await?;
/// let port: u16 = config.get_or("server.port", 8080)?;
/// # drop(port);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
    format: Format,
}

impl FileSource {
    /// The file at `path`, its format told by its extension (`.json`,
    /// `.toml`, `.yaml` or `.yml`); `InvalidArgument` for another extension
    /// or a format whose feature is off.
    pub fn new(path: impl Into<PathBuf>) -> Result<FileSource> {
        let path = path.into();
        let format = Format::from_path(&path)?;
        Ok(FileSource { path, format })
    }

    /// The file at `path` in the given format, whatever its extension.
    pub fn with_format(path: impl Into<PathBuf>, format: Format) -> FileSource {
        FileSource {
            path: path.into(),
            format,
        }
    }

    /// A source from a [`FileSourceConfig`].
    pub fn from_config(config: FileSourceConfig) -> Result<FileSource> {
        match config.format {
            Some(format) => Ok(FileSource::with_format(config.path, format)),
            None => FileSource::new(config.path),
        }
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The format it is parsed as.
    pub fn format(&self) -> Format {
        self.format
    }

    async fn read(&self) -> Result<Vec<u8>> {
        tokio::fs::read(&self.path).await.map_err(|err| {
            let what = format!("config file {}", self.path.display());
            match err.kind() {
                std::io::ErrorKind::NotFound => {
                    Error::not_found(format!("{what} does not exist")).with_source(err)
                }
                _ => Error::unavailable(format!("{what} cannot be read: {err}")).with_source(err),
            }
        })
    }

    fn parse(&self, bytes: &[u8]) -> Result<Value> {
        let what = format!("config file {}", self.path.display());
        let value = self.format.parse(bytes).map_err(|err| {
            Error::invalid_argument(format!(
                "{what} is not valid {}: {}",
                self.format,
                err.message()
            ))
        })?;
        value::expect_object(value, &what)
    }

    fn directory(&self) -> PathBuf {
        match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }
}

/// What the last read found, to tell a new state from a repeated event.
#[derive(PartialEq)]
enum Seen {
    Content(Vec<u8>),
    Failed(String),
}

struct WatchState {
    source: FileSource,
    wake: Arc<Notify>,
    /// Kept alive for as long as the stream: dropping it stops the events.
    _watcher: notify::RecommendedWatcher,
    seen: Option<Seen>,
}

impl WatchState {
    /// Reads the file and returns what to report, if it is new.
    async fn check(&mut self) -> Option<Result<Value>> {
        let (seen, outcome) = match self.source.read().await {
            Ok(bytes) => {
                let parsed = self.source.parse(&bytes);
                (Seen::Content(bytes), parsed)
            }
            Err(err) => (Seen::Failed(err.message().to_owned()), Err(err)),
        };
        if self.seen.as_ref() == Some(&seen) {
            return None;
        }
        self.seen = Some(seen);
        Some(outcome)
    }
}

#[async_trait]
impl Source for FileSource {
    fn scheme(&self) -> &'static str {
        "file"
    }

    fn name(&self) -> String {
        format!("file:{}", self.path.display())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::watched()
    }

    async fn load(&self) -> Result<Value> {
        let bytes = self.read().await?;
        self.parse(&bytes)
    }

    async fn watch(&self) -> Result<SourceStream> {
        let wake = Arc::new(Notify::new());
        let notifier = wake.clone();
        // Errors from the watcher itself (a queue overflow) also mean "look again".
        let mut watcher =
            notify::recommended_watcher(move |_event: notify::Result<notify::Event>| {
                notifier.notify_one();
            })
            .map_err(|err| {
                Error::unavailable(format!("cannot watch config files: {err}")).with_source(err)
            })?;
        let directory = self.directory();
        watcher
            .watch(&directory, RecursiveMode::NonRecursive)
            .map_err(|err| {
                Error::unavailable(format!(
                    "cannot watch {} for config changes: {err}",
                    directory.display()
                ))
                .with_source(err)
            })?;
        // Watching starts before the first read, so no change after it is missed.
        let mut state = WatchState {
            source: self.clone(),
            wake,
            _watcher: watcher,
            seen: None,
        };
        let first = state.check().await;
        let rest = futures::stream::unfold(state, |mut state| async move {
            loop {
                state.wake.notified().await;
                tokio::time::sleep(SETTLE).await;
                if let Some(outcome) = state.check().await {
                    return Some((outcome, state));
                }
            }
        });
        Ok(futures::stream::iter(first).chain(rest).boxed())
    }
}
