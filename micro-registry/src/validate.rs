//! The one check of a registration, made by every backend before anything
//! is stored or announced.

use crate::{Error, RegisterOptions, Result, Service};

/// Rejects what no backend may store: a service name that is not a valid
/// name ([`micro_core::name::validate`]: letters, digits, `.`, `-`, `_`),
/// no nodes, a node without an id, a zero TTL.
///
/// Every backend calls it first, so a bad registration fails the same way
/// (`InvalidArgument`) everywhere and never reaches the network. A backend
/// of your own should call it too.
///
/// ```
/// use micro_registry::{Node, RegisterOptions, Service, validate_registration};
///
/// let ok = Service::new("greeter").with_node(Node::new("greeter-1", "127.0.0.1:8080"));
/// assert!(validate_registration(&ok, &RegisterOptions::default()).is_ok());
/// let spaced = Service::new("greeter service").with_node(Node::new("a", "127.0.0.1:1"));
/// assert!(validate_registration(&spaced, &RegisterOptions::default()).is_err());
/// ```
pub fn validate_registration(service: &Service, options: &RegisterOptions) -> Result<()> {
    micro_core::name::validate("service", &service.name)?;
    if service.nodes.is_empty() {
        return Err(Error::invalid_argument(format!(
            "registration of {:?} has no nodes",
            service.name
        )));
    }
    if service.nodes.iter().any(|node| node.id.is_empty()) {
        return Err(Error::invalid_argument(format!(
            "registration of {:?} has a node with an empty id",
            service.name
        )));
    }
    if options.ttl.is_some_and(|ttl| ttl.is_zero()) {
        return Err(Error::invalid_argument("registration TTL is zero"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{ErrorKind, Node};

    #[test]
    fn invalid_registrations_are_rejected() {
        let ok = Service::new("x").with_node(Node::new("a", ""));
        assert!(validate_registration(&ok, &RegisterOptions::default()).is_ok());
        let zero = RegisterOptions::ttl(Duration::ZERO);
        let no_id = Service::new("x").with_node(Node::new("", ""));
        let no_nodes = Service::new("x");
        let cases = [
            (&ok, &zero),
            (&no_id, &RegisterOptions::default()),
            (&no_nodes, &RegisterOptions::default()),
        ];
        for (service, options) in cases {
            assert_eq!(
                validate_registration(service, options).unwrap_err().kind(),
                ErrorKind::InvalidArgument,
                "{service:?}"
            );
        }
        for name in ["", "a b", "a/b", ".x", "x."] {
            let bad = Service::new(name).with_node(Node::new("a", ""));
            let err = validate_registration(&bad, &RegisterOptions::default()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{name:?}");
        }
    }
}
