//! An in-process source: a tree of settings held in memory and changed by
//! code, for tests, defaults and settings a program computes.

use std::{fmt, sync::Arc};

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::{Capabilities, Result, Source, SourceStream, value};

/// Settings held in memory; every clone shares them, and changes made through
/// any clone reach the watchers.
///
/// ```
/// use micro_config::MemorySource;
/// use serde_json::json;
///
/// let source = MemorySource::new(json!({"db": {"host": "localhost"}}))?;
/// source.set("db.port", json!(5432));
/// source.delete("db.host");
/// assert_eq!(*source.snapshot(), json!({"db": {"port": 5432}}));
/// # Ok::<(), micro_config::Error>(())
/// ```
#[derive(Clone)]
pub struct MemorySource {
    data: Arc<watch::Sender<Arc<Value>>>,
}

impl MemorySource {
    /// A source holding `value`, which must be a map (or null, for an empty one).
    pub fn new(value: Value) -> Result<MemorySource> {
        let value = value::expect_object(value, "MemorySource")?;
        Ok(MemorySource {
            data: Arc::new(watch::Sender::new(Arc::new(value))),
        })
    }

    /// An empty source.
    pub fn empty() -> MemorySource {
        MemorySource {
            data: Arc::new(watch::Sender::new(Arc::new(Value::Object(Map::new())))),
        }
    }

    /// Sets the value at a dotted `path`, creating the maps on the way.
    pub fn set(&self, path: &str, value: Value) {
        self.modify(|root| value::set(root, path, value));
    }

    /// Removes the value at `path`; removing what is not there changes nothing.
    pub fn delete(&self, path: &str) {
        self.modify(|root| {
            value::remove(root, path);
        });
    }

    /// Replaces every setting with `value`, which must be a map.
    pub fn replace(&self, value: Value) -> Result<()> {
        let value = value::expect_object(value, "MemorySource")?;
        self.data.send_replace(Arc::new(value));
        Ok(())
    }

    /// The current settings.
    pub fn snapshot(&self) -> Arc<Value> {
        self.data.borrow().clone()
    }

    fn modify(&self, change: impl FnOnce(&mut Value)) {
        self.data.send_if_modified(|current| {
            let mut next = Value::clone(current);
            change(&mut next);
            if next == **current {
                return false;
            }
            *current = Arc::new(next);
            true
        });
    }
}

impl Default for MemorySource {
    fn default() -> MemorySource {
        MemorySource::empty()
    }
}

impl fmt::Debug for MemorySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySource")
            .field("data", &self.snapshot())
            .finish()
    }
}

#[async_trait]
impl Source for MemorySource {
    fn scheme(&self) -> &'static str {
        "memory"
    }

    fn name(&self) -> String {
        "memory".to_owned()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::watched()
    }

    async fn load(&self) -> Result<Value> {
        Ok(Value::clone(&self.snapshot()))
    }

    async fn watch(&self) -> Result<SourceStream> {
        let mut receiver = self.data.subscribe();
        receiver.mark_changed();
        // A watch channel keeps only the newest value: a watcher that is slow
        // skips intermediate states, never the latest.
        let stream = futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.changed().await.ok()?;
            let snapshot = Value::clone(&receiver.borrow_and_update());
            Some((Ok(snapshot), receiver))
        });
        Ok(stream.boxed())
    }
}
