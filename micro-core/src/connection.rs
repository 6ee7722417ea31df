//! Telling a lost connection from an answer: one rule for every backend, so
//! a server that goes away is `Unavailable` (and retried) whichever client
//! library noticed it first and however it named it.

use std::io;

/// Whether `error`, or any error in its source chain, says the connection
/// to the server failed rather than that the server answered: refused,
/// reset, aborted or closed connections, broken pipes, unexpected EOFs,
/// HTTP/2 `GOAWAY` and resets, and the "transport error" / "connection
/// closed" failures of hyper, h2 and tonic.
///
/// Client libraries report these under many names (tonic reports a closed
/// connection as `Cancelled`, hyper as "connection closed before message
/// completed"); a backend maps an error for which this is true to
/// [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable).
///
/// ```
/// use std::io;
/// use micro_core::is_connection_failure;
///
/// let reset = io::Error::new(io::ErrorKind::ConnectionReset, "peer reset");
/// assert!(is_connection_failure(&reset));
/// let denied = io::Error::new(io::ErrorKind::PermissionDenied, "no");
/// assert!(!is_connection_failure(&denied));
/// ```
pub fn is_connection_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(io) = error.downcast_ref::<io::Error>()
            && is_connection_kind(io.kind())
        {
            return true;
        }
        if says_connection_failed(&error.to_string()) {
            return true;
        }
        current = error.source();
    }
    false
}

fn is_connection_kind(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::AddrNotAvailable
    )
}

/// The wording hyper, h2, tonic and the NATS client use for a connection
/// that failed, where the error carries no `io::Error` to look at.
fn says_connection_failed(message: &str) -> bool {
    const PHRASES: [&str; 11] = [
        "connection closed",
        "connection reset",
        "connection refused",
        "connection aborted",
        "broken pipe",
        "transport error",
        "error trying to connect",
        "tcp connect error",
        "go away",
        "goaway",
        "disconnected",
    ];
    let message = message.to_ascii_lowercase();
    PHRASES.iter().any(|phrase| message.contains(phrase))
}

#[cfg(test)]
mod tests {
    use std::fmt;

    use super::*;

    /// An error with a message and an optional source, as client libraries wrap them.
    #[derive(Debug)]
    struct Wrapped {
        message: &'static str,
        source: Option<Box<dyn std::error::Error + 'static>>,
    }

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.message)
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.source.as_deref()
        }
    }

    fn wrapped(message: &'static str, source: Option<Box<dyn std::error::Error>>) -> Wrapped {
        Wrapped { message, source }
    }

    #[test]
    fn connection_failures_are_found_anywhere_in_the_chain() {
        for kind in [
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::BrokenPipe,
            io::ErrorKind::UnexpectedEof,
        ] {
            let deep = wrapped(
                "status: Unknown",
                Some(Box::new(wrapped(
                    "request failed",
                    Some(Box::new(io::Error::new(kind, "x"))),
                ))),
            );
            assert!(is_connection_failure(&deep), "{kind:?}");
        }
        for message in [
            "status: Cancelled, message: \"operation was canceled: connection closed\"",
            "transport error",
            "h2 protocol error: connection reset",
            "received GOAWAY",
            "connection closed before message completed",
        ] {
            assert!(is_connection_failure(&wrapped(message, None)), "{message}");
        }
    }

    #[test]
    fn answers_are_not_connection_failures() {
        for message in [
            "etcdserver: requested lease not found",
            "permission denied",
            "key not found",
            "request timed out",
        ] {
            assert!(!is_connection_failure(&wrapped(message, None)), "{message}");
        }
        let denied = io::Error::new(io::ErrorKind::PermissionDenied, "no");
        assert!(!is_connection_failure(&wrapped(
            "x",
            Some(Box::new(denied))
        )));
    }
}
