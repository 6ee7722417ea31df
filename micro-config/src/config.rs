use std::{
    fmt,
    sync::{Arc, RwLock, Weak},
    time::Duration,
};

use futures::{StreamExt, stream::BoxStream};
use micro_core::Backoff;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokio::{sync::broadcast, task::AbortHandle};

use crate::{DynSource, Error, Result, Source, SourceStream, de, value};

/// How many events a slow watcher may fall behind before it skips to the
/// current configuration.
const EVENT_BUFFER: usize = 64;
/// The waits before reopening a source's watch that ended: from half a
/// second, doubling up to 30 seconds.
const REOPEN_BACKOFF: Backoff =
    Backoff::exponential(Duration::from_millis(500), Duration::from_secs(30));

/// Looks environment variables up for `${VAR}` expansion.
type VarsFn = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What happened to a [`Config`], as [`Config::changes`] reports it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConfigEvent {
    /// The merged configuration changed; this is the new one.
    Changed(Arc<Value>),
    /// A source failed (unreadable, invalid, unreachable). The configuration
    /// keeps what that source last gave successfully.
    SourceError {
        /// The source's [`name`](Source::name).
        source: String,
        /// What went wrong.
        error: Arc<Error>,
    },
}

/// The typed values a [`Config::watch`] yields: each new value at the path, or
/// an error when a source fails or the new value does not fit the type.
pub type WatchStream<T> = BoxStream<'static, Result<T>>;

/// The merged configuration of any number of [`Source`]s, kept current.
///
/// Sources are merged in the order they were added, later ones winning: maps
/// merge key by key at every depth, anything else is replaced. Sources that
/// can watch are followed in the background; when one fails (a file becomes
/// invalid, a server goes away) its last good snapshot stays in force, the
/// error is logged and reported to watchers, and the source is retried.
///
/// Cheap to clone: clones share the same state. The background work stops when
/// the last clone is dropped.
#[derive(Clone)]
pub struct Config {
    handle: Arc<Handle>,
}

/// Owns the background tasks, stopping them when the last [`Config`] goes.
struct Handle {
    core: Arc<Core>,
    tasks: Vec<AbortHandle>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

struct Core {
    sources: Vec<DynSource>,
    state: RwLock<State>,
    events: broadcast::Sender<ConfigEvent>,
    vars: VarsFn,
}

struct State {
    /// Each source's last good snapshot, in merge order.
    layers: Vec<Value>,
    merged: Arc<Value>,
}

fn merge_layers(layers: &[Value]) -> Value {
    let mut merged = Value::Object(Map::new());
    for layer in layers {
        value::merge(&mut merged, layer);
    }
    merged
}

impl Core {
    fn snapshot(&self) -> Arc<Value> {
        match self.state.read() {
            Ok(state) => state.merged.clone(),
            Err(poisoned) => poisoned.into_inner().merged.clone(),
        }
    }

    /// Takes a source's new snapshot; announces the merged result if it changed.
    fn apply(&self, index: usize, snapshot: Value) {
        let changed = {
            let mut state = match self.state.write() {
                Ok(state) => state,
                Err(poisoned) => poisoned.into_inner(),
            };
            if state.layers[index] == snapshot {
                return;
            }
            state.layers[index] = snapshot;
            let merged = merge_layers(&state.layers);
            if *state.merged == merged {
                return;
            }
            state.merged = Arc::new(merged);
            state.merged.clone()
        };
        tracing::info!(source = %self.sources[index].name(), "configuration changed");
        // No receiver is fine: nobody watches.
        let _ = self.events.send(ConfigEvent::Changed(changed));
    }

    fn report(&self, index: usize, error: Error) {
        let source = self.sources[index].name();
        tracing::warn!(
            source = %source,
            error = %error,
            "config source failed; keeping its last good configuration"
        );
        let _ = self.events.send(ConfigEvent::SourceError {
            source,
            error: Arc::new(error),
        });
    }
}

/// Follows one source for as long as the [`Config`] lives, reopening its
/// watch with backoff whenever it ends.
async fn follow(core: Arc<Core>, index: usize, mut stream: SourceStream) {
    let source = core.sources[index].clone();
    let mut attempts = REOPEN_BACKOFF.attempts();
    loop {
        while let Some(item) = stream.next().await {
            match item {
                Ok(snapshot) => {
                    attempts.reset();
                    core.apply(index, snapshot);
                }
                Err(error) => core.report(index, error),
            }
        }
        tracing::debug!(source = %source.name(), "config watch ended; reopening");
        stream = loop {
            attempts.wait().await;
            match source.watch().await {
                Ok(stream) => break stream,
                Err(error) => core.report(index, error),
            }
        };
    }
}

impl Config {
    /// A configuration to add sources to.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            sources: Vec::new(),
            vars: Arc::new(|name| std::env::var(name).ok()),
        }
    }

    /// A fixed configuration holding `value` (a map), with no source behind it.
    pub fn from_value(value: Value) -> Result<Config> {
        value::expect_object(value, "Config::from_value").map(Config::fixed)
    }

    /// An empty configuration: every [`get`](Config::get) is `NotFound`.
    pub fn empty() -> Config {
        Config::fixed(Value::Object(Map::new()))
    }

    fn fixed(value: Value) -> Config {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Config {
            handle: Arc::new(Handle {
                core: Arc::new(Core {
                    sources: Vec::new(),
                    state: RwLock::new(State {
                        layers: Vec::new(),
                        merged: Arc::new(value),
                    }),
                    events,
                    vars: Arc::new(|name| std::env::var(name).ok()),
                }),
                tasks: Vec::new(),
            }),
        }
    }

    fn core(&self) -> &Arc<Core> {
        &self.handle.core
    }

    /// The value at `path` (dotted: `server.timeout`; list items by index:
    /// `peers.0.host`; `""` for everything) as a `T`.
    ///
    /// Strings convert to what `T` asks for: `"5432"` to a number, `"true"`
    /// or `"yes"` to a `bool`, `"250ms"` or `"1h 30m"` to a
    /// [`Duration`](std::time::Duration), `"a,b"` to a list. `${VAR}` and
    /// `${VAR:-default}` in strings are replaced by environment variables.
    ///
    /// Errors: `NotFound` when nothing is at `path`; `InvalidArgument`, naming
    /// the path (of the innermost field at fault) and the expected type, when
    /// the value does not fit `T` or references an unset variable.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let snapshot = self.snapshot();
        let value = value::lookup(&snapshot, path)
            .ok_or_else(|| Error::not_found(format!("no config value at `{path}`")))?;
        de::from_value(value, path, &*self.core().vars)
    }

    /// Like [`get`](Config::get), with `default` when nothing is at `path`.
    /// A value that is there but does not fit `T` is still an error.
    pub fn get_or<T: DeserializeOwned>(&self, path: &str, default: T) -> Result<T> {
        let snapshot = self.snapshot();
        match value::lookup(&snapshot, path) {
            Some(value) => de::from_value(value, path, &*self.core().vars),
            None => Ok(default),
        }
    }

    /// Whether something is at `path`.
    pub fn contains(&self, path: &str) -> bool {
        value::lookup(&self.snapshot(), path).is_some()
    }

    /// The whole merged configuration, as the sources gave it (no `${VAR}`
    /// expansion, no conversion).
    pub fn snapshot(&self) -> Arc<Value> {
        self.core().snapshot()
    }

    /// Follows the value at `path`: yields it as a `T` each time it changes,
    /// and an error each time a source fails (the configuration keeps its
    /// last good values meanwhile), a new value does not fit `T`
    /// (`InvalidArgument`) or the value is removed (`NotFound`).
    ///
    /// Changes are followed from the moment of the call, so reading the
    /// current value with [`get`](Config::get) after calling this misses nothing.
    pub fn watch<T: DeserializeOwned + Send + 'static>(&self, path: &str) -> WatchStream<T> {
        let path = path.to_owned();
        let vars = self.core().vars.clone();
        let mut last = value::lookup(&self.snapshot(), &path).cloned();
        self.changes()
            .filter_map(move |event| {
                let item = match event {
                    ConfigEvent::Changed(snapshot) => {
                        let now = value::lookup(&snapshot, &path).cloned();
                        if now == last {
                            None
                        } else {
                            last.clone_from(&now);
                            Some(match now {
                                Some(value) => de::from_value(&value, &path, &*vars),
                                None => Err(Error::not_found(format!(
                                    "the config value at `{path}` was removed"
                                ))),
                            })
                        }
                    }
                    ConfigEvent::SourceError { source, error } => Some(Err(Error::new(
                        error.kind(),
                        format!(
                            "config source {source} failed (its last good values stay in force): {}",
                            error.message()
                        ),
                    ))),
                };
                futures::future::ready(item)
            })
            .boxed()
    }

    /// Every change of the merged configuration and every source failure, from
    /// now on. A watcher that falls far behind skips to the current configuration.
    pub fn changes(&self) -> BoxStream<'static, ConfigEvent> {
        let receiver = self.core().events.subscribe();
        let core = Arc::downgrade(self.core());
        futures::stream::unfold((receiver, core), next_event).boxed()
    }

    /// Loads every source again now and applies what changed. Sources that
    /// watch apply their changes by themselves; this is for those that do not
    /// (environment, flags). A failing source is reported and keeps its last
    /// good snapshot; the first failure is returned.
    pub async fn reload(&self) -> Result<()> {
        let mut first_error = None;
        for (index, source) in self.core().sources.iter().enumerate() {
            match source.load().await {
                Ok(snapshot) => self.core().apply(index, snapshot),
                Err(error) => {
                    let returned = Error::new(error.kind(), error.message().to_owned());
                    self.core().report(index, error);
                    first_error.get_or_insert(returned);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The names of the sources, in merge order.
    pub fn sources(&self) -> Vec<String> {
        self.core().sources.iter().map(|s| s.name()).collect()
    }
}

type EventState = (broadcast::Receiver<ConfigEvent>, Weak<Core>);

async fn next_event((mut receiver, core): EventState) -> Option<(ConfigEvent, EventState)> {
    let event = match receiver.recv().await {
        Ok(event) => event,
        Err(broadcast::error::RecvError::Lagged(_)) => {
            ConfigEvent::Changed(core.upgrade()?.snapshot())
        }
        Err(broadcast::error::RecvError::Closed) => return None,
    };
    Some((event, (receiver, core)))
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("sources", &self.sources())
            .finish_non_exhaustive()
    }
}

/// Collects the sources of a [`Config`]; from [`Config::builder`].
#[must_use = "a config builder does nothing until built"]
pub struct ConfigBuilder {
    sources: Vec<DynSource>,
    vars: VarsFn,
}

impl ConfigBuilder {
    /// Adds a source; sources added later win over earlier ones.
    pub fn source(mut self, source: impl Source) -> ConfigBuilder {
        self.sources.push(Arc::new(source));
        self
    }

    /// Adds a shared source.
    pub fn dyn_source(mut self, source: DynSource) -> ConfigBuilder {
        self.sources.push(source);
        self
    }

    /// Where `${VAR}` references look variables up (default: the process
    /// environment).
    pub fn variables(
        mut self,
        lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> ConfigBuilder {
        self.vars = Arc::new(lookup);
        self
    }

    /// Loads every source and starts following those that watch.
    ///
    /// Fails, naming the source, when a source cannot give a first snapshot:
    /// there is no last good configuration to fall back on yet. Once built,
    /// failures only ever keep the last good values.
    pub async fn build(self) -> Result<Config> {
        let mut layers = Vec::with_capacity(self.sources.len());
        let mut streams = Vec::new();
        for (index, source) in self.sources.iter().enumerate() {
            let failed = |error: Error| {
                Error::new(
                    error.kind(),
                    format!("config source {}: {}", source.name(), error.message()),
                )
                .with_source(error)
            };
            if source.capabilities().watch {
                let mut stream = source.watch().await.map_err(failed)?;
                let first = stream.next().await.unwrap_or_else(|| {
                    Err(Error::unavailable(
                        "the watch ended before its first snapshot",
                    ))
                });
                layers.push(first.map_err(failed)?);
                streams.push((index, stream));
            } else {
                layers.push(source.load().await.map_err(failed)?);
            }
        }
        let merged = Arc::new(merge_layers(&layers));
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let core = Arc::new(Core {
            sources: self.sources,
            state: RwLock::new(State { layers, merged }),
            events,
            vars: self.vars,
        });
        let tasks = streams
            .into_iter()
            .map(|(index, stream)| tokio::spawn(follow(core.clone(), index, stream)).abort_handle())
            .collect();
        Ok(Config {
            handle: Arc::new(Handle { core, tasks }),
        })
    }
}

impl fmt::Debug for ConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigBuilder")
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::json;

    use super::*;
    use crate::{EnvSource, ErrorKind, MemorySource};

    #[tokio::test]
    async fn later_sources_win_and_maps_merge_deeply() {
        let base =
            MemorySource::new(json!({"db": {"host": "a", "port": 1}, "tags": ["x", "y"]})).unwrap();
        let middle = MemorySource::new(json!({"db": {"host": "b"}, "tags": ["z"]})).unwrap();
        let top = MemorySource::new(json!({"db": {"user": "u"}})).unwrap();
        let config = Config::builder()
            .source(base.clone())
            .source(middle.clone())
            .source(top)
            .build()
            .await
            .unwrap();
        assert_eq!(
            *config.snapshot(),
            json!({"db": {"host": "b", "port": 1, "user": "u"}, "tags": ["z"]})
        );
        let mut events = config.changes();
        // A change under a source that is overridden does not show, and is not announced...
        base.set("db.host", json!("c"));
        // ...one that is not overridden does.
        base.set("db.port", json!(2));
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .unwrap()
            .unwrap();
        let ConfigEvent::Changed(snapshot) = event else {
            panic!("expected a change, got {event:?}")
        };
        assert_eq!(snapshot["db"], json!({"host": "b", "port": 2, "user": "u"}));
        // Removing middle's db.host uncovers base's.
        let mut hosts = config.watch::<String>("db.host");
        middle.delete("db.host");
        let host = tokio::time::timeout(Duration::from_secs(10), hosts.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(host.unwrap(), "c");
    }

    #[tokio::test]
    async fn variables_expand_in_reads_only() {
        let config = Config::builder()
            .source(
                MemorySource::new(json!({"url": "postgres://${DB_HOST}/app", "plain": "$5"}))
                    .unwrap(),
            )
            .variables(|name| (name == "DB_HOST").then(|| "db.local".to_owned()))
            .build()
            .await
            .unwrap();
        assert_eq!(
            config.get::<String>("url").unwrap(),
            "postgres://db.local/app"
        );
        assert_eq!(config.get::<String>("plain").unwrap(), "$5");
        assert_eq!(config.snapshot()["url"], json!("postgres://${DB_HOST}/app"));
    }

    #[tokio::test]
    async fn reload_picks_up_sources_that_do_not_watch() {
        let vars = Arc::new(Mutex::new(vec![(
            "APP_LEVEL".to_owned(),
            "info".to_owned(),
        )]));
        let read = vars.clone();
        let env = EnvSource::builder()
            .prefix("APP")
            .vars_fn(move || read.lock().unwrap().clone())
            .build();
        let config = Config::builder().source(env).build().await.unwrap();
        assert_eq!(config.get::<String>("level").unwrap(), "info");
        vars.lock().unwrap()[0].1 = "debug".to_owned();
        config.reload().await.unwrap();
        assert_eq!(config.get::<String>("level").unwrap(), "debug");
    }

    #[test]
    fn fixed_configs() {
        assert_eq!(
            Config::from_value(json!([1])).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        let config = Config::from_value(json!({"a": {"b": "1"}})).unwrap();
        assert_eq!(config.get::<u8>("a.b").unwrap(), 1);
        assert!(config.contains("a"));
        assert_eq!(
            Config::empty().get::<u8>("a").unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }
}
