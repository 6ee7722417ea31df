use std::collections::{BTreeMap, btree_map};

/// String key/value pairs that travel with a request, a response or a message:
/// HTTP headers, gRPC metadata, NATS headers.
///
/// Keys are case-insensitive and stored lower-case, as HTTP/2 and gRPC require,
/// so a value set as `Trace-Id` is read back as `trace-id` on every transport.
/// Each key holds one value; setting it again replaces the value.
///
/// ```
/// use micro_core::Metadata;
///
/// let mut metadata = Metadata::new();
/// metadata.insert("Trace-Id", "abc123");
/// assert_eq!(metadata.get("trace-id"), Some("abc123"));
/// assert_eq!(metadata.get("TRACE-ID"), Some("abc123"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Metadata(BTreeMap<String, String>);

impl Metadata {
    /// Empty metadata.
    pub fn new() -> Metadata {
        Metadata::default()
    }

    /// Sets `key` (lower-cased) to `value`, returning the value it replaced.
    pub fn insert(&mut self, key: impl AsRef<str>, value: impl Into<String>) -> Option<String> {
        self.0
            .insert(key.as_ref().to_ascii_lowercase(), value.into())
    }

    /// Builder form of [`Metadata::insert`].
    pub fn with(mut self, key: impl AsRef<str>, value: impl Into<String>) -> Metadata {
        self.insert(key, value);
        self
    }

    /// The value of `key`, compared case-insensitively.
    pub fn get(&self, key: &str) -> Option<&str> {
        match self.0.get(key) {
            Some(value) => Some(value),
            None => self.0.get(&key.to_ascii_lowercase()).map(String::as_str),
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.0.remove(&key.to_ascii_lowercase())
    }

    /// Whether `key` is set.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pairs in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
    }

    /// Copies every pair of `other` into `self`, replacing values of equal keys.
    pub fn extend_from(&mut self, other: &Metadata) {
        for (key, value) in other.iter() {
            self.0.insert(key.to_owned(), value.to_owned());
        }
    }
}

impl<K: AsRef<str>, V: Into<String>> FromIterator<(K, V)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Metadata {
        let mut metadata = Metadata::new();
        for (key, value) in iter {
            metadata.insert(key, value);
        }
        metadata
    }
}

impl<K: AsRef<str>, V: Into<String>> Extend<(K, V)> for Metadata {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (key, value) in iter {
            self.insert(key, value);
        }
    }
}

impl IntoIterator for Metadata {
    type Item = (String, String);
    type IntoIter = btree_map::IntoIter<String, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_case_insensitive_and_last_write_wins() {
        let mut metadata: Metadata = [("A", "1"), ("b", "2")].into_iter().collect();
        assert_eq!(metadata.insert("a", "3"), Some("1".to_owned()));
        assert_eq!(metadata.get("A"), Some("3"));
        assert_eq!(metadata.len(), 2);
        assert_eq!(metadata.remove("B"), Some("2".to_owned()));
        assert!(!metadata.contains_key("b"));
    }

    #[test]
    fn serializes_as_a_plain_map() {
        let metadata = Metadata::new().with("Trace-Id", "x");
        assert_eq!(
            serde_json::to_string(&metadata).unwrap(),
            r#"{"trace-id":"x"}"#
        );
    }
}
