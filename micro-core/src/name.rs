//! The one validator for names that cross systems: service names, endpoint
//! names, lock and election names, runtime service names.
//!
//! A name must survive every backend unchanged: an etcd key segment, a NATS
//! subject token, a Consul service name, an mDNS instance label, an HTTP path
//! segment. So it is 1 to 253 characters of ASCII letters, digits, `.`, `-`
//! and `_`, and does not start or end with `.` (NATS forbids empty tokens).
//!
//! ```
//! use micro_core::name;
//!
//! assert!(name::validate("service", "greeter").is_ok());
//! assert!(name::validate("service", "go.micro.srv-greeter_v2").is_ok());
//! assert!(name::validate("service", "").is_err());
//! assert!(name::validate("service", "has space").is_err());
//! assert!(name::validate("service", "a/b").is_err());
//! ```

use crate::{Error, Result};

/// The longest name accepted (a DNS name's limit).
pub const MAX_LEN: usize = 253;

/// Checks `name`; `what` says what it names ("service", "lock") for the error.
pub fn validate(what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid_argument(format!("{what} name is empty")));
    }
    if name.len() > MAX_LEN {
        return Err(Error::invalid_argument(format!(
            "{what} name is {} bytes long; the limit is {MAX_LEN}",
            name.len()
        )));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(Error::invalid_argument(format!(
            "{what} name {name:?} contains {bad:?}; use letters, digits, '.', '-' and '_'"
        )));
    }
    if name.starts_with('.') || name.ends_with('.') || name.contains("..") {
        return Err(Error::invalid_argument(format!(
            "{what} name {name:?} has an empty '.'-separated part"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn refuses_what_some_backend_cannot_carry() {
        for bad in [
            "",
            ".a",
            "a.",
            "a..b",
            "a b",
            "a/b",
            "a*",
            "a>",
            "ü",
            &"x".repeat(254),
        ] {
            let err = validate("service", bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad:?}");
        }
        for good in [
            "a",
            "greeter",
            "go.micro.srv.greeter",
            "a-b_c.d9",
            &"x".repeat(253),
        ] {
            validate("service", good).unwrap();
        }
    }
}
