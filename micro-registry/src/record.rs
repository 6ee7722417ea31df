//! What the server-backed registries (etcd, NATS, Consul) share: one stored
//! record per node, its JSON encoding, the validation of registrations, and
//! turning records back into one [`Service`] per name and version.
//!
//! Storing one record per node (rather than one per service) lets each node
//! carry its own TTL and lets a node vanish without touching its siblings; the
//! record repeats the service's version, metadata and endpoints so a lookup
//! needs nothing else.

use std::collections::BTreeMap;

use crate::{Error, Result, Service};

/// One record per node of `service`, each a copy of the service with exactly that node.
pub(crate) fn split(service: &Service) -> impl Iterator<Item = Service> + '_ {
    service.nodes.iter().map(|node| Service {
        name: service.name.clone(),
        version: service.version.clone(),
        metadata: service.metadata.clone(),
        endpoints: service.endpoints.clone(),
        nodes: vec![node.clone()],
    })
}

/// The stored form of a one-node record.
pub(crate) fn encode(record: &Service) -> Result<Vec<u8>> {
    serde_json::to_vec(record).map_err(|err| {
        Error::internal(format!(
            "cannot encode the registration of {:?}",
            record.name
        ))
        .with_source(err)
    })
}

/// A stored record, or `None` (logged) when it is not one of ours: a foreign
/// or corrupt value under the registry's prefix must not break lookups.
pub(crate) fn decode(bytes: &[u8], location: &str) -> Option<Service> {
    match serde_json::from_slice::<Service>(bytes) {
        Ok(record) if record.nodes.len() == 1 && !record.name.is_empty() => Some(record),
        Ok(_) => {
            tracing::warn!(
                location,
                "ignoring a registry record without exactly one node"
            );
            None
        }
        Err(err) => {
            tracing::warn!(location, error = %err, "ignoring an undecodable registry record");
            None
        }
    }
}

/// Groups one-node records into one `Service` per name and version, ordered
/// by name, then version; nodes in the order given.
pub(crate) fn group(records: impl IntoIterator<Item = Service>) -> Vec<Service> {
    let mut services: BTreeMap<(String, String), Service> = BTreeMap::new();
    for record in records {
        let key = (record.name.clone(), record.version.clone());
        match services.get_mut(&key) {
            Some(service) => {
                if !service.nodes.iter().any(|n| n.id == record.nodes[0].id) {
                    service.nodes.extend(record.nodes);
                }
            }
            None => {
                services.insert(key, record);
            }
        }
    }
    services.into_values().collect()
}

/// A one-node record carrying only what a key tells: the name, version and
/// node id of a record whose content is gone (a deletion seen without the
/// value it deleted).
#[cfg(any(feature = "etcd", feature = "nats"))]
pub(crate) fn skeleton(name: String, version: String, node_id: String) -> Service {
    Service::new(name)
        .with_version(version)
        .with_node(crate::Node::new(node_id, String::new()))
}

/// Whole seconds covering `ttl`, at least one: servers count TTLs in seconds,
/// and rounding down could expire a node before its next renewal.
pub(crate) fn ttl_seconds(ttl: std::time::Duration) -> u64 {
    let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    seconds.max(1)
}

/// `segment` made safe as one part of a key: ASCII letters, digits, `-` and
/// `_` are kept, every other byte becomes `escape` and two hex digits, and an
/// empty segment becomes `escape` alone (keys cannot hold empty parts on
/// every server). Injective, so distinct names never share a key.
pub(crate) fn escape_segment(segment: &str, escape: char) -> String {
    if segment.is_empty() {
        return escape.to_string();
    }
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            out.push(char::from(byte));
        } else {
            out.push(escape);
            out.push_str(&format!("{byte:02X}"));
        }
    }
    out
}

/// The inverse of [`escape_segment`]; `None` for what it cannot have produced.
#[cfg(any(test, feature = "etcd", feature = "nats"))]
pub(crate) fn unescape_segment(segment: &str, escape: char) -> Option<String> {
    if segment.len() == escape.len_utf8() && segment.starts_with(escape) {
        return Some(String::new());
    }
    let mut bytes = Vec::with_capacity(segment.len());
    let mut chars = segment.chars();
    while let Some(c) = chars.next() {
        if c == escape {
            let hex: String = chars.by_ref().take(2).collect();
            bytes.push(u8::from_str_radix(&hex, 16).ok()?);
        } else {
            bytes.push(u8::try_from(c).ok()?);
        }
    }
    String::from_utf8(bytes).ok()
}

/// The receiving end of a watch task's channel as a [`WatchStream`](crate::WatchStream);
/// dropping it closes the channel, which tells the task to stop.
pub(crate) fn channel_stream(
    receiver: tokio::sync::mpsc::Receiver<Result<crate::Event>>,
) -> crate::WatchStream {
    use futures::StreamExt;
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
    .boxed()
}

/// A watch event about `record` now.
pub(crate) fn event(kind: crate::EventKind, service: Service) -> crate::Event {
    crate::Event {
        kind,
        service,
        timestamp: std::time::SystemTime::now(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Node;

    #[test]
    fn split_then_group_gives_back_the_service() {
        let service = Service::new("greeter")
            .with_version("1")
            .with_metadata("team", "core")
            .with_node(Node::new("a", "127.0.0.1:1"))
            .with_node(Node::new("b", "127.0.0.1:2"));
        let records: Vec<_> = split(&service).collect();
        assert_eq!(records.len(), 2);
        assert!(records.iter().all(|r| r.nodes.len() == 1));
        let decoded = records
            .iter()
            .map(|r| decode(&encode(r).unwrap(), "test").unwrap());
        assert_eq!(group(decoded), vec![service]);
    }

    #[test]
    fn foreign_records_are_ignored() {
        assert!(decode(b"not json", "test").is_none());
        let two = Service::new("x")
            .with_node(Node::new("a", ""))
            .with_node(Node::new("b", ""));
        assert!(decode(&encode(&two).unwrap(), "test").is_none());
    }

    #[test]
    fn segments_escape_injectively_and_back() {
        for segment in ["", "greeter", "1.0.0", "a/b", "x=y", "%", "héllo", "="] {
            for escape in ['%', '='] {
                let escaped = escape_segment(segment, escape);
                assert!(!escaped.is_empty());
                assert!(!escaped.contains('.') && !escaped.contains('/'));
                assert_eq!(unescape_segment(&escaped, escape).as_deref(), Some(segment));
            }
        }
        assert_ne!(escape_segment("a.b", '='), escape_segment("a=2Eb", '='));
    }

    #[test]
    fn ttls_round_up_to_whole_seconds() {
        assert_eq!(ttl_seconds(Duration::from_millis(300)), 1);
        assert_eq!(ttl_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(ttl_seconds(Duration::from_secs(3)), 3);
    }
}
