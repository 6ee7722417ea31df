//! How one registered node travels in a DNS-SD TXT record.
//!
//! A TXT record is a list of strings of at most 255 bytes each. The
//! authoritative content is the node's [`Service`] (name, version, service
//! metadata, endpoints, the one node with its address and metadata) as compact
//! JSON, split into numbered strings `d0=`, `d1=`, ... of at most
//! [`CHUNK`] bytes, cut on character boundaries. Beside it travel `ttl=` (the
//! registration TTL in milliseconds, so browsers expire a node that stops
//! renewing) and `r=` (a renewal counter: every renewal changes the record,
//! which makes browsers hear it and reset that TTL), plus `svc=` and `addr=`
//! for humans reading `avahi-browse` output.
//!
//! Everything travels in the record rather than being fetched on demand: a
//! fetch would need a second protocol (and a listening port) on every node,
//! while mDNS carries records up to about 9000 bytes (RFC 6762, section 17),
//! room for dozens of endpoints. A node whose description exceeds
//! [`MAX_TXT_BYTES`] is refused with `ResourceExhausted` at registration, never
//! announced truncated.

use std::time::Duration;

use mdns_sd::{TxtProperties, TxtProperty};

use crate::{Error, Result, Service};

/// The most bytes of JSON in one TXT string (the key and `=` take the rest of 255).
pub(super) const CHUNK: usize = 240;

/// The most bytes one node's TXT record may take, leaving room in a 9000-byte
/// mDNS packet for the names and the other records of the answer.
pub(super) const MAX_TXT_BYTES: usize = 8000;

/// What a browser learns from one TXT record.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Decoded {
    pub(super) service: Service,
    pub(super) ttl: Option<Duration>,
}

/// The TXT strings announcing `service` (exactly one node).
pub(super) fn encode(
    service: &Service,
    ttl: Option<Duration>,
    renewal: u64,
) -> Result<Vec<TxtProperty>> {
    let json = serde_json::to_string(service)
        .map_err(|err| Error::internal(format!("encoding a service for mDNS: {err}")))?;
    let mut properties = vec![
        TxtProperty::from(("txtvers", "1")),
        TxtProperty::from(("svc", truncate(&service.name, CHUNK))),
        TxtProperty::from(("addr", truncate(&service.nodes[0].address, CHUNK))),
        TxtProperty::from(("r", renewal.to_string())),
    ];
    if let Some(ttl) = ttl {
        properties.push(TxtProperty::from(("ttl", ttl.as_millis().to_string())));
    }
    for (i, chunk) in chunks(&json, CHUNK).into_iter().enumerate() {
        properties.push(TxtProperty::from((format!("d{i}"), chunk)));
    }
    let size: usize = properties
        .iter()
        .map(|p| 1 + p.key().len() + p.val().map_or(0, |v| v.len() + 1))
        .sum();
    if size > MAX_TXT_BYTES {
        return Err(Error::resource_exhausted(format!(
            "the description of {:?} (node {:?}) takes {size} bytes of TXT record, \
             more than the {MAX_TXT_BYTES} one mDNS answer can carry; \
             use fewer endpoints or less metadata, or a server-backed registry",
            service.name, service.nodes[0].id
        )));
    }
    Ok(properties)
}

/// The node a TXT record announces, or `None` if it is not a micro record.
pub(super) fn decode(properties: &TxtProperties) -> Option<Decoded> {
    let mut json = Vec::new();
    for i in 0.. {
        match properties.get_property_val(&format!("d{i}")) {
            Some(Some(chunk)) => json.extend_from_slice(chunk),
            _ => break,
        }
    }
    let service: Service = serde_json::from_slice(&json).ok()?;
    if service.name.is_empty() || service.nodes.len() != 1 {
        return None;
    }
    let ttl = properties
        .get_property_val_str("ttl")
        .and_then(|ms| ms.parse().ok())
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis);
    Some(Decoded { service, ttl })
}

/// `text` cut into pieces of at most `max` bytes, each ending on a character boundary.
fn chunks(text: &str, max: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = rest.len().min(max);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, tail) = rest.split_at(end);
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

fn truncate(text: &str, max: usize) -> &str {
    chunks(text, max).first().copied().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Endpoint, ErrorKind, Node};

    fn properties(list: Vec<TxtProperty>) -> TxtProperties {
        // The same path a browser's record takes: through the wire encoding.
        let info =
            mdns_sd::ServiceInfo::new("_micro._tcp.local.", "x", "x.local.", "127.0.0.1", 1, list)
                .unwrap();
        info.get_properties().clone()
    }

    fn greeter() -> Service {
        Service::new("greeter")
            .with_version("1.0.0")
            .with_metadata("team", "cœur ☕")
            .with_endpoint(Endpoint {
                name: "Greeter.Hello".to_owned(),
                request: Some("HelloRequest".to_owned()),
                response: None,
                metadata: [("stream", "none")].into_iter().collect(),
                request_schema: None,
                response_schema: None,
            })
            .with_node(Node::new("greeter-1", "127.0.0.1:4001").with_metadata("zone", "a"))
    }

    #[test]
    fn a_node_round_trips_with_its_ttl() {
        let service = greeter();
        let encoded = encode(&service, Some(Duration::from_secs(30)), 7).unwrap();
        let decoded = decode(&properties(encoded)).unwrap();
        assert_eq!(decoded.service, service);
        assert_eq!(decoded.ttl, Some(Duration::from_secs(30)));
        let decoded = decode(&properties(encode(&service, None, 0).unwrap())).unwrap();
        assert_eq!(decoded.ttl, None);
    }

    #[test]
    fn many_endpoints_split_across_strings_on_character_boundaries() {
        let mut service = greeter();
        for i in 0..40 {
            service = service.with_endpoint(Endpoint::new(format!("Greeter.Méthode{i}ü")));
        }
        let encoded = encode(&service, None, 0).unwrap();
        assert!(encoded.iter().filter(|p| p.key().starts_with('d')).count() > 5);
        assert!(
            encoded
                .iter()
                .all(|p| p.key().len() + p.val().map_or(0, |v| v.len()) < 255)
        );
        assert_eq!(decode(&properties(encoded)).unwrap().service, service);
    }

    #[test]
    fn oversized_descriptions_are_refused() {
        let mut service = greeter();
        for i in 0..400 {
            service = service.with_endpoint(Endpoint::new(format!("Greeter.Method{i}")));
        }
        let err = encode(&service, None, 0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ResourceExhausted);
    }

    #[test]
    fn foreign_records_are_ignored() {
        let foreign = vec![TxtProperty::from(("path", "/printer"))];
        assert_eq!(decode(&properties(foreign)), None);
        let garbage = vec![TxtProperty::from(("d0", "{not json"))];
        assert_eq!(decode(&properties(garbage)), None);
    }
}
