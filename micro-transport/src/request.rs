use tokio::time::Instant;

use crate::{Body, Metadata};

/// The metadata key under which a serving transport passes on the subject
/// (`CN=billing,O=acme`) of the certificate a client presented under mutual
/// TLS. Callers cannot set it: `micro-` keys are per hop, so a header of that
/// name from the network never becomes metadata.
pub const PEER_SUBJECT: &str = "micro-peer-subject";

/// A call on its way to a handler.
#[derive(Debug)]
pub struct Request {
    /// The name of the service being called (`greeter`); empty when the caller
    /// dialed an address directly and did not say.
    pub service: String,
    /// The endpoint being called, `Service.Method` (`Greeter.Hello`).
    pub endpoint: String,
    /// The content type of the body (`application/json`), which picks the codec.
    pub content_type: String,
    /// Caller-supplied key/value pairs (tracing ids, auth tokens, ...).
    pub metadata: Metadata,
    /// When the caller stops waiting. Transports send the remaining time across
    /// the wire and the serving side fails the call with `Timeout` once it passes.
    pub deadline: Option<Instant>,
    /// The request message, or the stream of them.
    pub body: Body,
}

impl Request {
    /// A request for `endpoint` with a body, JSON content type, no metadata and no deadline.
    pub fn new(endpoint: impl Into<String>, body: impl Into<Body>) -> Request {
        Request {
            service: String::new(),
            endpoint: endpoint.into(),
            content_type: "application/json".to_owned(),
            metadata: Metadata::new(),
            deadline: None,
            body: body.into(),
        }
    }

    /// Sets the target service name.
    pub fn with_service(mut self, service: impl Into<String>) -> Request {
        self.service = service.into();
        self
    }

    /// Sets the content type.
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Request {
        self.content_type = content_type.into();
        self
    }

    /// Sets one metadata pair.
    pub fn with_metadata(mut self, key: &str, value: impl Into<String>) -> Request {
        self.metadata.insert(key, value);
        self
    }

    /// Sets the deadline.
    pub fn with_deadline(mut self, deadline: Instant) -> Request {
        self.deadline = Some(deadline);
        self
    }
}

/// A handler's answer.
#[derive(Debug)]
pub struct Response {
    /// The content type of the body.
    pub content_type: String,
    /// Key/value pairs the handler sends back.
    pub metadata: Metadata,
    /// The response message, or the stream of them.
    pub body: Body,
}

impl Response {
    /// A response with a body, JSON content type and no metadata.
    pub fn new(body: impl Into<Body>) -> Response {
        Response {
            content_type: "application/json".to_owned(),
            metadata: Metadata::new(),
            body: body.into(),
        }
    }

    /// Sets the content type.
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Response {
        self.content_type = content_type.into();
        self
    }

    /// Sets one metadata pair.
    pub fn with_metadata(mut self, key: &str, value: impl Into<String>) -> Response {
        self.metadata.insert(key, value);
        self
    }
}
