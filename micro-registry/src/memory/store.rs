//! The registrations of a [`MemoryRegistry`](super::MemoryRegistry), without any
//! locking, timers or channels, so the rules can be read (and tested) in one place.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::SystemTime,
};

use tokio::time::Instant;

use crate::{Endpoint, Event, EventKind, Metadata, Node, Service};

/// `(service name, version, node id)`: what identifies one registration.
type NodeKey = (String, String, String);

/// Every live registration, indexed for lookups by name and for expiry by deadline.
#[derive(Debug, Default)]
pub(super) struct Store {
    services: BTreeMap<String, BTreeMap<String, VersionEntry>>,
    /// Deadlines of the registrations that have a TTL, earliest first, so expiring
    /// costs only the number of expired nodes and not a scan of every node.
    deadlines: BTreeSet<(Instant, NodeKey)>,
}

/// One version of a service: what the last registration said about the service,
/// and its nodes.
#[derive(Debug)]
struct VersionEntry {
    metadata: Metadata,
    endpoints: Vec<Endpoint>,
    nodes: BTreeMap<String, NodeEntry>,
}

#[derive(Debug)]
struct NodeEntry {
    node: Node,
    expires_at: Option<Instant>,
}

impl Store {
    /// Adds or renews every node of `service`, pushing a `Create` for each new node
    /// and an `Update` for each node whose content (or whose service's content) changed.
    pub(super) fn register(
        &mut self,
        service: &Service,
        expires_at: Option<Instant>,
        events: &mut Vec<Event>,
    ) {
        let versions = self.services.entry(service.name.clone()).or_default();
        let entry = versions
            .entry(service.version.clone())
            .or_insert_with(|| VersionEntry {
                metadata: service.metadata.clone(),
                endpoints: service.endpoints.clone(),
                nodes: BTreeMap::new(),
            });
        let service_changed =
            entry.metadata != service.metadata || entry.endpoints != service.endpoints;
        if service_changed {
            entry.metadata = service.metadata.clone();
            entry.endpoints = service.endpoints.clone();
        }
        for node in &service.nodes {
            let key = (
                service.name.clone(),
                service.version.clone(),
                node.id.clone(),
            );
            let kind = match entry.nodes.get_mut(&node.id) {
                Some(existing) => {
                    if let Some(old) = existing.expires_at {
                        self.deadlines.remove(&(old, key.clone()));
                    }
                    existing.expires_at = expires_at;
                    if existing.node == *node && !service_changed {
                        None
                    } else {
                        existing.node = node.clone();
                        Some(EventKind::Update)
                    }
                }
                None => {
                    entry.nodes.insert(
                        node.id.clone(),
                        NodeEntry {
                            node: node.clone(),
                            expires_at,
                        },
                    );
                    Some(EventKind::Create)
                }
            };
            if let Some(deadline) = expires_at {
                self.deadlines.insert((deadline, key));
            }
            if let Some(kind) = kind {
                events.push(node_event(
                    kind,
                    &service.name,
                    &service.version,
                    entry,
                    node,
                ));
            }
        }
    }

    /// Removes every node of `service` that is registered, pushing a `Delete` for each.
    pub(super) fn deregister(&mut self, service: &Service, events: &mut Vec<Event>) {
        for node in &service.nodes {
            self.remove(&service.name, &service.version, &node.id, events);
        }
    }

    /// Removes every registration whose deadline is not after `now`, pushing a
    /// `Delete` for each.
    pub(super) fn expire(&mut self, now: Instant, events: &mut Vec<Event>) {
        while let Some(first) = self.deadlines.first() {
            if first.0 > now {
                break;
            }
            if let Some((_, (name, version, id))) = self.deadlines.pop_first() {
                self.remove(&name, &version, &id, events);
            }
        }
    }

    /// When the next registration expires, if any has a TTL.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(deadline, _)| *deadline)
    }

    /// One `Service` per version of `name`, ordered by version.
    pub(super) fn get(&self, name: &str) -> Vec<Service> {
        self.services
            .get(name)
            .map(|versions| {
                versions
                    .iter()
                    .map(|(version, entry)| entry.to_service(name, version))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One `Service` per name and version, ordered by name then version.
    pub(super) fn list(&self) -> Vec<Service> {
        self.services
            .iter()
            .flat_map(|(name, versions)| {
                versions
                    .iter()
                    .map(move |(version, entry)| entry.to_service(name, version))
            })
            .collect()
    }

    /// How many services (names) have at least one node.
    pub(super) fn service_count(&self) -> usize {
        self.services.len()
    }

    fn remove(&mut self, name: &str, version: &str, id: &str, events: &mut Vec<Event>) {
        let Some(versions) = self.services.get_mut(name) else {
            return;
        };
        let Some(entry) = versions.get_mut(version) else {
            return;
        };
        let Some(removed) = entry.nodes.remove(id) else {
            return;
        };
        if let Some(deadline) = removed.expires_at {
            self.deadlines.remove(&(
                deadline,
                (name.to_owned(), version.to_owned(), id.to_owned()),
            ));
        }
        events.push(node_event(
            EventKind::Delete,
            name,
            version,
            entry,
            &removed.node,
        ));
        if entry.nodes.is_empty() {
            versions.remove(version);
            if versions.is_empty() {
                self.services.remove(name);
            }
        }
    }
}

impl VersionEntry {
    fn to_service(&self, name: &str, version: &str) -> Service {
        Service {
            name: name.to_owned(),
            version: version.to_owned(),
            metadata: self.metadata.clone(),
            endpoints: self.endpoints.clone(),
            nodes: self
                .nodes
                .values()
                .map(|entry| entry.node.clone())
                .collect(),
        }
    }
}

fn node_event(
    kind: EventKind,
    name: &str,
    version: &str,
    entry: &VersionEntry,
    node: &Node,
) -> Event {
    Event {
        kind,
        service: Service {
            name: name.to_owned(),
            version: version.to_owned(),
            metadata: entry.metadata.clone(),
            endpoints: entry.endpoints.clone(),
            nodes: vec![node.clone()],
        },
        timestamp: SystemTime::now(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn greeter(nodes: &[(&str, &str)]) -> Service {
        nodes.iter().fold(
            Service::new("greeter").with_version("1"),
            |service, (id, address)| service.with_node(Node::new(*id, *address)),
        )
    }

    fn kinds(events: &[Event]) -> Vec<(EventKind, String)> {
        events
            .iter()
            .map(|event| (event.kind, event.service.nodes[0].id.clone()))
            .collect()
    }

    #[test]
    fn first_registration_creates_and_identical_one_is_silent() {
        let mut store = Store::default();
        let mut events = Vec::new();
        store.register(&greeter(&[("a", "1"), ("b", "2")]), None, &mut events);
        store.register(&greeter(&[("a", "1")]), None, &mut events);
        assert_eq!(
            kinds(&events),
            vec![
                (EventKind::Create, "a".to_owned()),
                (EventKind::Create, "b".to_owned())
            ]
        );
        assert_eq!(store.get("greeter")[0].nodes.len(), 2);
    }

    #[test]
    fn changed_node_or_service_content_updates() {
        let mut store = Store::default();
        let mut events = Vec::new();
        store.register(&greeter(&[("a", "1"), ("b", "2")]), None, &mut events);
        events.clear();
        store.register(&greeter(&[("a", "9")]), None, &mut events);
        store.register(
            &greeter(&[("b", "2")]).with_metadata("team", "core"),
            None,
            &mut events,
        );
        assert_eq!(
            kinds(&events),
            vec![
                (EventKind::Update, "a".to_owned()),
                (EventKind::Update, "b".to_owned())
            ]
        );
        let found = store.get("greeter");
        assert_eq!(found[0].nodes[0].address, "9");
        assert_eq!(found[0].metadata.get("team"), Some("core"));
        assert_eq!(events[1].service.metadata.get("team"), Some("core"));
    }

    #[test]
    fn expiry_removes_only_nodes_past_their_deadline() {
        let mut store = Store::default();
        let mut events = Vec::new();
        let now = Instant::now();
        store.register(
            &greeter(&[("short", "1")]),
            Some(now + Duration::from_secs(1)),
            &mut events,
        );
        store.register(
            &greeter(&[("long", "2")]),
            Some(now + Duration::from_secs(5)),
            &mut events,
        );
        store.register(&greeter(&[("forever", "3")]), None, &mut events);
        events.clear();

        store.expire(now + Duration::from_secs(2), &mut events);
        assert_eq!(
            kinds(&events),
            vec![(EventKind::Delete, "short".to_owned())]
        );
        assert_eq!(store.next_deadline(), Some(now + Duration::from_secs(5)));

        store.expire(now + Duration::from_secs(5), &mut events);
        assert_eq!(store.next_deadline(), None);
        let ids: Vec<_> = store.get("greeter")[0]
            .nodes
            .iter()
            .map(|n| n.id.clone())
            .collect();
        assert_eq!(ids, vec!["forever".to_owned()]);
    }

    #[test]
    fn renewal_moves_the_deadline() {
        let mut store = Store::default();
        let mut events = Vec::new();
        let now = Instant::now();
        store.register(
            &greeter(&[("a", "1")]),
            Some(now + Duration::from_secs(1)),
            &mut events,
        );
        store.register(
            &greeter(&[("a", "1")]),
            Some(now + Duration::from_secs(10)),
            &mut events,
        );
        events.clear();
        store.expire(now + Duration::from_secs(2), &mut events);
        assert!(events.is_empty());
        assert_eq!(store.next_deadline(), Some(now + Duration::from_secs(10)));

        store.register(&greeter(&[("a", "1")]), None, &mut events);
        assert_eq!(store.next_deadline(), None);
    }

    #[test]
    fn removing_the_last_node_removes_version_and_name() {
        let mut store = Store::default();
        let mut events = Vec::new();
        store.register(&greeter(&[("a", "1")]), None, &mut events);
        store.register(
            &Service::new("greeter")
                .with_version("2")
                .with_node(Node::new("b", "2")),
            None,
            &mut events,
        );
        assert_eq!(store.get("greeter").len(), 2);
        store.deregister(&greeter(&[("a", "1"), ("unknown", "")]), &mut events);
        let found = store.get("greeter");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].version, "2");
        store.deregister(
            &Service::new("greeter")
                .with_version("2")
                .with_node(Node::new("b", "2")),
            &mut events,
        );
        assert!(store.get("greeter").is_empty());
        assert_eq!(store.service_count(), 0);
        assert!(store.list().is_empty());
    }
}
