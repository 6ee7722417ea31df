//! What the key/value sources (etcd, NATS KV, Consul KV) share: a flat map of
//! keys under a prefix, turned into a settings tree.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::{Result, value};

/// The keys under a source's prefix (relative to it) and their values.
#[derive(Debug, Clone, Default)]
pub(crate) struct KvTree {
    entries: BTreeMap<String, String>,
    separator: char,
}

impl KvTree {
    /// An empty tree whose keys split into sections at `separator`.
    pub(crate) fn new(separator: char) -> KvTree {
        KvTree {
            entries: BTreeMap::new(),
            separator,
        }
    }

    pub(crate) fn insert(&mut self, key: String, value: String) {
        self.entries.insert(key, value);
    }

    /// Consul re-reads the whole prefix on each change; etcd and NATS apply
    /// deletions one by one.
    #[cfg(any(feature = "etcd", feature = "nats"))]
    pub(crate) fn remove(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// The settings tree; `InvalidArgument` when a key is both a value and a
    /// section (`db` beside `db/host`): no tree holds both.
    pub(crate) fn snapshot(&self) -> Result<Value> {
        value::from_pairs(self.entries.iter().map(|(key, value)| {
            let segments = key
                .split(self.separator)
                .filter(|segment| !segment.is_empty())
                .map(str::to_owned)
                .collect();
            (segments, value.as_str())
        }))
    }
}

/// `prefix` ending with `separator` (unless empty), so that the prefix `app`
/// does not also take `application`'s keys.
pub(crate) fn normalize_prefix(prefix: &str, separator: char) -> String {
    if prefix.is_empty() || prefix.ends_with(separator) {
        prefix.to_owned()
    } else {
        format!("{prefix}{separator}")
    }
}
