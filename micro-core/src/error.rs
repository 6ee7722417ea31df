use std::{borrow::Cow, fmt};

/// A boxed error that can cross threads: the `source` of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with micro's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in terms a caller can act on.
///
/// The kinds follow gRPC's status codes one for one, because those are the
/// most widely understood RPC failure vocabulary and they map onto HTTP
/// statuses without loss of meaning. `ErrorKind::Ok` has no variant: success
/// is not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The operation was cancelled, usually by the caller.
    Cancelled,
    /// An error with no better kind; also what an unrecognised wire code becomes.
    Unknown,
    /// The caller sent something invalid: malformed body, bad argument, bad config.
    InvalidArgument,
    /// The deadline passed before the operation finished.
    Timeout,
    /// The thing asked for does not exist: service, endpoint, key.
    NotFound,
    /// The thing being created exists already.
    AlreadyExists,
    /// The caller is not allowed to do this.
    PermissionDenied,
    /// A limit was hit: body too large, buffer full, quota spent.
    ResourceExhausted,
    /// The system is not in the state the operation needs.
    FailedPrecondition,
    /// The operation was aborted by a conflict; retrying may succeed.
    Aborted,
    /// A value was outside its valid range.
    OutOfRange,
    /// The operation is not implemented or not supported by this backend.
    Unimplemented,
    /// A bug or broken invariant on the serving side, including handler panics.
    Internal,
    /// The service or server could not be reached right now; retrying may succeed.
    Unavailable,
    /// Unrecoverable data loss or corruption.
    DataLoss,
    /// The caller did not present valid credentials.
    Unauthenticated,
}

impl ErrorKind {
    /// Every kind, in gRPC code order.
    pub const ALL: [ErrorKind; 16] = [
        ErrorKind::Cancelled,
        ErrorKind::Unknown,
        ErrorKind::InvalidArgument,
        ErrorKind::Timeout,
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::PermissionDenied,
        ErrorKind::ResourceExhausted,
        ErrorKind::FailedPrecondition,
        ErrorKind::Aborted,
        ErrorKind::OutOfRange,
        ErrorKind::Unimplemented,
        ErrorKind::Internal,
        ErrorKind::Unavailable,
        ErrorKind::DataLoss,
        ErrorKind::Unauthenticated,
    ];

    /// The gRPC status code (`google.rpc.Code`) for this kind.
    pub fn grpc_code(self) -> i32 {
        match self {
            ErrorKind::Cancelled => 1,
            ErrorKind::Unknown => 2,
            ErrorKind::InvalidArgument => 3,
            ErrorKind::Timeout => 4,
            ErrorKind::NotFound => 5,
            ErrorKind::AlreadyExists => 6,
            ErrorKind::PermissionDenied => 7,
            ErrorKind::ResourceExhausted => 8,
            ErrorKind::FailedPrecondition => 9,
            ErrorKind::Aborted => 10,
            ErrorKind::OutOfRange => 11,
            ErrorKind::Unimplemented => 12,
            ErrorKind::Internal => 13,
            ErrorKind::Unavailable => 14,
            ErrorKind::DataLoss => 15,
            ErrorKind::Unauthenticated => 16,
        }
    }

    /// The kind for a gRPC status code; `0` (OK) and unknown codes give `Unknown`.
    pub fn from_grpc_code(code: i32) -> ErrorKind {
        ErrorKind::ALL
            .into_iter()
            .find(|kind| kind.grpc_code() == code)
            .unwrap_or(ErrorKind::Unknown)
    }

    /// The HTTP status code for this kind, following the mapping gRPC gateways use.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::Cancelled => 499,
            ErrorKind::Unknown | ErrorKind::Internal | ErrorKind::DataLoss => 500,
            ErrorKind::InvalidArgument | ErrorKind::OutOfRange => 400,
            ErrorKind::Timeout => 504,
            ErrorKind::NotFound => 404,
            ErrorKind::AlreadyExists | ErrorKind::Aborted => 409,
            ErrorKind::PermissionDenied => 403,
            ErrorKind::ResourceExhausted => 429,
            ErrorKind::FailedPrecondition => 412,
            ErrorKind::Unimplemented => 501,
            ErrorKind::Unavailable => 503,
            ErrorKind::Unauthenticated => 401,
        }
    }

    /// The kind for an HTTP status code seen without a micro error body.
    ///
    /// Success codes are not errors and map to `Unknown`; so do codes with no
    /// closer meaning.
    pub fn from_http_status(status: u16) -> ErrorKind {
        match status {
            400 => ErrorKind::InvalidArgument,
            401 => ErrorKind::Unauthenticated,
            403 => ErrorKind::PermissionDenied,
            404 | 405 => ErrorKind::NotFound,
            408 | 504 => ErrorKind::Timeout,
            409 => ErrorKind::Aborted,
            412 => ErrorKind::FailedPrecondition,
            413 | 429 | 431 => ErrorKind::ResourceExhausted,
            415 => ErrorKind::InvalidArgument,
            499 => ErrorKind::Cancelled,
            501 => ErrorKind::Unimplemented,
            502 | 503 => ErrorKind::Unavailable,
            _ => ErrorKind::Unknown,
        }
    }

    /// The stable snake_case name used on the wire (`"not_found"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Unknown => "unknown",
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::Timeout => "deadline_exceeded",
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::ResourceExhausted => "resource_exhausted",
            ErrorKind::FailedPrecondition => "failed_precondition",
            ErrorKind::Aborted => "aborted",
            ErrorKind::OutOfRange => "out_of_range",
            ErrorKind::Unimplemented => "unimplemented",
            ErrorKind::Internal => "internal",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::DataLoss => "data_loss",
            ErrorKind::Unauthenticated => "unauthenticated",
        }
    }

    /// The kind for a wire name; unrecognised names give `Unknown`.
    pub fn from_name(name: &str) -> ErrorKind {
        ErrorKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .unwrap_or(ErrorKind::Unknown)
    }

    /// Whether an operation that failed with this kind may succeed if tried again
    /// unchanged: only `Unavailable` and `Aborted`.
    ///
    /// `Timeout` is not retryable by default: the caller's deadline has passed, so
    /// a retry could only run past it.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Unavailable | ErrorKind::Aborted)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ErrorKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <Cow<'de, str>>::deserialize(deserializer)?;
        Ok(ErrorKind::from_name(&name))
    }
}

/// micro's error: a [`kind`](Error::kind) to act on, a message for people and an
/// optional source for debugging.
///
/// Match on [`Error::kind`], never on the message text.
pub struct Error {
    kind: ErrorKind,
    message: Cow<'static, str>,
    source: Option<BoxError>,
}

macro_rules! kind_constructors {
    ($($(#[$doc:meta])* $name:ident => $kind:ident,)*) => {
        $(
            $(#[$doc])*
            pub fn $name(message: impl Into<Cow<'static, str>>) -> Error {
                Error::new(ErrorKind::$kind, message)
            }
        )*
    };
}

impl Error {
    /// An error of `kind` with a message for people.
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Error {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    kind_constructors! {
        /// A [`ErrorKind::NotFound`] error.
        not_found => NotFound,
        /// An [`ErrorKind::InvalidArgument`] error.
        invalid_argument => InvalidArgument,
        /// An [`ErrorKind::Timeout`] error.
        timeout => Timeout,
        /// An [`ErrorKind::Unavailable`] error.
        unavailable => Unavailable,
        /// An [`ErrorKind::Internal`] error.
        internal => Internal,
        /// An [`ErrorKind::ResourceExhausted`] error.
        resource_exhausted => ResourceExhausted,
        /// An [`ErrorKind::Unimplemented`] error.
        unimplemented => Unimplemented,
        /// An [`ErrorKind::AlreadyExists`] error.
        already_exists => AlreadyExists,
        /// An [`ErrorKind::FailedPrecondition`] error.
        failed_precondition => FailedPrecondition,
        /// An [`ErrorKind::Cancelled`] error.
        cancelled => Cancelled,
        /// An [`ErrorKind::Unauthenticated`] error.
        unauthenticated => Unauthenticated,
        /// An [`ErrorKind::PermissionDenied`] error.
        permission_denied => PermissionDenied,
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Error {
        self.source = Some(source.into());
        self
    }

    /// What went wrong, to act on.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message for people. Do not match on it.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether trying the same operation again may succeed; see [`ErrorKind::is_retryable`].
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    /// Prefixes the message with context, keeping kind and source.
    pub fn context(mut self, context: impl fmt::Display) -> Error {
        self.message = format!("{context}: {}", self.message).into();
        self
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Error");
        debug
            .field("kind", &self.kind)
            .field("message", &self.message);
        if let Some(source) = &self.source {
            debug.field("source", source);
        }
        debug.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Error {
        use std::io::ErrorKind as Io;
        let kind = match err.kind() {
            Io::NotFound => ErrorKind::NotFound,
            Io::PermissionDenied => ErrorKind::PermissionDenied,
            Io::AlreadyExists | Io::AddrInUse => ErrorKind::AlreadyExists,
            Io::InvalidInput | Io::InvalidData => ErrorKind::InvalidArgument,
            Io::TimedOut => ErrorKind::Timeout,
            Io::ConnectionRefused
            | Io::ConnectionReset
            | Io::ConnectionAborted
            | Io::NotConnected
            | Io::BrokenPipe
            | Io::UnexpectedEof
            | Io::AddrNotAvailable => ErrorKind::Unavailable,
            Io::OutOfMemory => ErrorKind::ResourceExhausted,
            Io::Unsupported => ErrorKind::Unimplemented,
            _ => ErrorKind::Internal,
        };
        Error::new(kind, "i/o error").with_source(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_round_trip_for_every_kind() {
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_grpc_code(kind.grpc_code()), kind);
        }
        assert_eq!(ErrorKind::from_grpc_code(0), ErrorKind::Unknown);
        assert_eq!(ErrorKind::from_grpc_code(99), ErrorKind::Unknown);
    }

    #[test]
    fn wire_names_round_trip_for_every_kind() {
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_name(kind.as_str()), kind);
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(serde_json::from_str::<ErrorKind>(&json).unwrap(), kind);
        }
        assert_eq!(ErrorKind::from_name("no_such_code"), ErrorKind::Unknown);
    }

    #[test]
    fn http_status_maps_back_to_the_same_kind_where_unambiguous() {
        for kind in [
            ErrorKind::InvalidArgument,
            ErrorKind::Unauthenticated,
            ErrorKind::PermissionDenied,
            ErrorKind::NotFound,
            ErrorKind::Timeout,
            ErrorKind::ResourceExhausted,
            ErrorKind::FailedPrecondition,
            ErrorKind::Unimplemented,
            ErrorKind::Unavailable,
            ErrorKind::Cancelled,
        ] {
            assert_eq!(
                ErrorKind::from_http_status(kind.http_status()),
                kind,
                "{kind}"
            );
        }
        assert_eq!(
            ErrorKind::from_http_status(413),
            ErrorKind::ResourceExhausted
        );
    }

    #[test]
    fn only_unavailable_and_aborted_are_retryable() {
        let retryable: Vec<_> = ErrorKind::ALL
            .into_iter()
            .filter(|k| k.is_retryable())
            .collect();
        assert_eq!(retryable, vec![ErrorKind::Aborted, ErrorKind::Unavailable]);
    }

    #[test]
    fn display_includes_kind_message_and_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = Error::from(io).context("dialing 127.0.0.1:1");
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert_eq!(
            err.to_string(),
            "unavailable: dialing 127.0.0.1:1: i/o error: refused"
        );
        assert!(std::error::Error::source(&err).is_some());
    }
}
