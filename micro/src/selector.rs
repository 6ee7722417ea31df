//! Choosing which node of a service gets a call.
//!
//! A [`Selector`] filters the nodes the registry returned (by service version
//! and by node metadata), then picks one with its [`Strategy`]. A retry asks
//! the selector to avoid the nodes that already failed; it still returns one
//! of them when no other node is left.
//!
//! ```
//! use micro::registry::{Node, Service};
//! use micro::selector::Selector;
//!
//! let services = vec![
//!     Service::new("greeter").with_version("1").with_node(Node::new("a", "10.0.0.1:80")),
//!     Service::new("greeter").with_version("2").with_node(Node::new("b", "10.0.0.2:80")),
//! ];
//! let selector = Selector::round_robin().version("2");
//! assert_eq!(selector.select("greeter", &services, &[])?.id, "b");
//! # Ok::<(), micro::Error>(())
//! ```

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, PoisonError},
};

use rand::Rng;

use crate::{
    Error, Result,
    registry::{Node, Service},
};

/// How a [`Selector`] picks among the nodes that pass its filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Strategy {
    /// A node chosen uniformly at random for every call (the default).
    #[default]
    Random,
    /// Each node in turn, per service, in node-id order.
    RoundRobin,
}

/// Picks a node of a service for each call; cheap to clone, clones share
/// round-robin positions.
#[derive(Clone, Default)]
pub struct Selector {
    strategy: Strategy,
    version: Option<String>,
    metadata: Vec<(String, String)>,
    positions: Arc<Mutex<HashMap<String, usize>>>,
}

impl Selector {
    /// A selector with a strategy and no filters.
    pub fn new(strategy: Strategy) -> Selector {
        Selector {
            strategy,
            ..Selector::default()
        }
    }

    /// Random choice among the nodes that pass the filters.
    pub fn random() -> Selector {
        Selector::new(Strategy::Random)
    }

    /// Each node in turn.
    pub fn round_robin() -> Selector {
        Selector::new(Strategy::RoundRobin)
    }

    /// Only nodes of services registered with this version.
    pub fn version(mut self, version: impl Into<String>) -> Selector {
        self.version = Some(version.into());
        self
    }

    /// Only nodes whose metadata has `key` set to `value`; several calls must all match.
    pub fn metadata(mut self, key: impl AsRef<str>, value: impl Into<String>) -> Selector {
        self.metadata
            .push((key.as_ref().to_ascii_lowercase(), value.into()));
        self
    }

    /// The strategy.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// The nodes of `services` that pass the filters, sorted by id.
    pub fn filter<'a>(&self, services: &'a [Service]) -> Vec<&'a Node> {
        let mut nodes: Vec<&Node> = services
            .iter()
            .filter(|service| {
                self.version
                    .as_deref()
                    .is_none_or(|version| service.version == version)
            })
            .flat_map(|service| service.nodes.iter())
            .filter(|node| {
                self.metadata
                    .iter()
                    .all(|(key, value)| node.metadata.get(key) == Some(value.as_str()))
            })
            .collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        nodes.dedup_by(|a, b| a.id == b.id);
        nodes
    }

    /// Picks a node of `name` from `services` (as the registry returned them),
    /// preferring nodes whose id is not in `avoid`.
    ///
    /// No service at all is `NotFound`; services without a node passing the
    /// filters are `Unavailable` (retryable: nodes come and go), naming the filters.
    pub fn select(&self, name: &str, services: &[Service], avoid: &[String]) -> Result<Node> {
        self.pick(name, services, avoid, |_| true).cloned()
    }

    /// Like [`select`](Selector::select), among the nodes `usable` accepts,
    /// and borrowing the node rather than copying it (a client needs only its
    /// id and address).
    pub(crate) fn pick<'a>(
        &self,
        name: &str,
        services: &'a [Service],
        avoid: &[String],
        usable: impl Fn(&Node) -> bool,
    ) -> Result<&'a Node> {
        if services.is_empty() {
            return Err(Error::not_found(format!(
                "service {name:?} is not registered"
            )));
        }
        let mut candidates = self.filter(services);
        candidates.retain(|node| usable(node));
        if candidates.is_empty() {
            return Err(Error::unavailable(format!(
                "service {name:?} has no node{}",
                self.describe_filters()
            )));
        }
        if candidates.iter().any(|node| avoid.contains(&node.id)) {
            let fresh: Vec<&Node> = candidates
                .iter()
                .copied()
                .filter(|node| !avoid.contains(&node.id))
                .collect();
            if !fresh.is_empty() {
                candidates = fresh;
            }
        }
        let index = match self.strategy {
            Strategy::Random if candidates.len() == 1 => 0,
            Strategy::Random => rand::rng().random_range(0..candidates.len()),
            Strategy::RoundRobin => self.next_position(name) % candidates.len(),
        };
        Ok(candidates[index])
    }

    fn next_position(&self, name: &str) -> usize {
        // The map is only touched synchronously, so a poisoned lock still
        // holds consistent positions.
        let mut positions = self
            .positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(position) = positions.get_mut(name) {
            let current = *position;
            *position = position.wrapping_add(1);
            return current;
        }
        positions.insert(name.to_owned(), 1);
        0
    }

    fn describe_filters(&self) -> String {
        let mut filters = Vec::new();
        if let Some(version) = &self.version {
            filters.push(format!("version={version}"));
        }
        for (key, value) in &self.metadata {
            filters.push(format!("metadata {key}={value}"));
        }
        if filters.is_empty() {
            String::new()
        } else {
            format!(" matching {}", filters.join(", "))
        }
    }
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Selector")
            .field("strategy", &self.strategy)
            .field("version", &self.version)
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::ErrorKind;

    fn services() -> Vec<Service> {
        vec![
            Service::new("svc")
                .with_version("1")
                .with_node(Node::new("a", "addr-a").with_metadata("zone", "eu"))
                .with_node(Node::new("b", "addr-b").with_metadata("zone", "us")),
            Service::new("svc")
                .with_version("2")
                .with_node(Node::new("c", "addr-c").with_metadata("zone", "eu")),
        ]
    }

    #[test]
    fn round_robin_visits_every_node_in_turn() {
        let selector = Selector::round_robin();
        let picks: Vec<String> = (0..6)
            .map(|_| selector.select("svc", &services(), &[]).unwrap().id)
            .collect();
        assert_eq!(picks, ["a", "b", "c", "a", "b", "c"]);
    }

    #[test]
    fn random_reaches_every_node() {
        let selector = Selector::random();
        let mut seen = BTreeSet::new();
        for _ in 0..1000 {
            seen.insert(selector.select("svc", &services(), &[]).unwrap().id);
            if seen.len() == 3 {
                break;
            }
        }
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn version_and_metadata_filters_exclude_nodes() {
        let by_version = Selector::round_robin().version("1");
        let ids: BTreeSet<String> = (0..4)
            .map(|_| by_version.select("svc", &services(), &[]).unwrap().id)
            .collect();
        assert_eq!(ids, BTreeSet::from(["a".to_owned(), "b".to_owned()]));

        let by_zone = Selector::round_robin().metadata("Zone", "eu");
        let ids: BTreeSet<String> = (0..4)
            .map(|_| by_zone.select("svc", &services(), &[]).unwrap().id)
            .collect();
        assert_eq!(ids, BTreeSet::from(["a".to_owned(), "c".to_owned()]));

        let both = Selector::random().version("2").metadata("zone", "eu");
        assert_eq!(both.select("svc", &services(), &[]).unwrap().id, "c");
    }

    #[test]
    fn avoided_nodes_are_skipped_unless_nothing_else_is_left() {
        let selector = Selector::random();
        let avoid = vec!["a".to_owned(), "b".to_owned()];
        for _ in 0..20 {
            assert_eq!(selector.select("svc", &services(), &avoid).unwrap().id, "c");
        }
        let all = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        assert!(selector.select("svc", &services(), &all).is_ok());
    }

    #[test]
    fn no_service_is_not_found_and_no_matching_node_is_unavailable() {
        let selector = Selector::random().version("9");
        let err = selector.select("svc", &[], &[]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        let err = selector.select("svc", &services(), &[]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert!(err.message().contains("version=9"), "{err}");
        let nodeless = vec![Service::new("svc")];
        let err = Selector::random()
            .select("svc", &nodeless, &[])
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
    }
}
