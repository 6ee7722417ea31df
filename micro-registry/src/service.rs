use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::Metadata;

/// A service as the registry knows it: one name and version, and the nodes
/// (running instances) serving it.
///
/// The same name may be registered under several versions; lookups return one
/// `Service` per version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// The name callers use (`greeter`).
    pub name: String,
    /// The version of this deployment (`1.0.0`); may be empty.
    #[serde(default)]
    pub version: String,
    /// Free-form key/value pairs describing the service.
    #[serde(default)]
    pub metadata: Metadata,
    /// The endpoints the service serves.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// The running instances.
    #[serde(default)]
    pub nodes: Vec<Node>,
}

impl Service {
    /// A service with a name and no version, metadata, endpoints or nodes.
    pub fn new(name: impl Into<String>) -> Service {
        Service {
            name: name.into(),
            version: String::new(),
            metadata: Metadata::new(),
            endpoints: Vec::new(),
            nodes: Vec::new(),
        }
    }

    /// Sets the version.
    pub fn with_version(mut self, version: impl Into<String>) -> Service {
        self.version = version.into();
        self
    }

    /// Adds one metadata pair.
    pub fn with_metadata(mut self, key: &str, value: impl Into<String>) -> Service {
        self.metadata.insert(key, value);
        self
    }

    /// Adds an endpoint.
    pub fn with_endpoint(mut self, endpoint: Endpoint) -> Service {
        self.endpoints.push(endpoint);
        self
    }

    /// Adds a node.
    pub fn with_node(mut self, node: Node) -> Service {
        self.nodes.push(node);
        self
    }
}

/// One running instance of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Unique among the nodes of a service (`greeter-6f1c...`).
    pub id: String,
    /// Where to dial it, in the syntax of its transport (`127.0.0.1:4123`).
    pub address: String,
    /// Free-form key/value pairs (transport, codecs, zone, ...), used by selector filters.
    #[serde(default)]
    pub metadata: Metadata,
}

impl Node {
    /// A node with an id and address and no metadata.
    pub fn new(id: impl Into<String>, address: impl Into<String>) -> Node {
        Node {
            id: id.into(),
            address: address.into(),
            metadata: Metadata::new(),
        }
    }

    /// Adds one metadata pair.
    pub fn with_metadata(mut self, key: &str, value: impl Into<String>) -> Node {
        self.metadata.insert(key, value);
        self
    }
}

/// One endpoint a service serves, with the shapes of its messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// `Service.Method` (`Greeter.Hello`).
    pub name: String,
    /// The request message's type name, if known.
    #[serde(default)]
    pub request: Option<String>,
    /// The response message's type name, if known.
    #[serde(default)]
    pub response: Option<String>,
    /// Free-form key/value pairs (`stream=server`, ...).
    #[serde(default)]
    pub metadata: Metadata,
    /// The JSON Schema of the request message, if the service described it
    /// (micro's `schema` feature, `Endpoint::described`). Records written
    /// before this field existed read as `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_schema: Option<serde_json::Value>,
    /// The JSON Schema of the response message, if the service described it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_schema: Option<serde_json::Value>,
}

impl Endpoint {
    /// An endpoint with a name and nothing else.
    pub fn new(name: impl Into<String>) -> Endpoint {
        Endpoint {
            name: name.into(),
            request: None,
            response: None,
            metadata: Metadata::new(),
            request_schema: None,
            response_schema: None,
        }
    }
}

/// What changed, in a [`Event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A node appeared.
    Create,
    /// A node was registered again with different content.
    Update,
    /// A node was deregistered or expired.
    Delete,
}

/// One change seen by a watch: a node of a service appeared, changed or went away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// What changed.
    pub kind: EventKind,
    /// The service, with exactly the one node the event is about in `nodes`.
    pub service: Service,
    /// When the registry saw the change.
    pub timestamp: SystemTime,
}
