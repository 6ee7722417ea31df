//! Accepting and guarding server connections, shared by every listener that
//! speaks HTTP (the HTTP and gRPC transports, the HTTP broker).
//!
//! A listener that accepts every connection and waits forever for its first
//! byte can be starved by anyone who reaches its port: a thousand silent
//! sockets exhaust the process's file descriptors and real calls then time
//! out. So every accepted connection here is
//!
//! - **counted**: over [`ConnectionLimits::max_connections`] in all, or
//!   [`ConnectionLimits::max_connections_per_peer`] from one IP address, a
//!   new connection is closed at once, before anything is read from it;
//! - **on a deadline until its first call**: the TLS handshake, the protocol
//!   preface and the first request's headers must all arrive within
//!   [`ConnectionLimits::handshake_timeout`] of the accept, however slowly
//!   the bytes trickle in;
//! - **closed when idle**: with no call in flight for
//!   [`ConnectionLimits::idle_timeout`] it is shut down gracefully (HTTP/2
//!   sends GOAWAY), then dropped if the peer does not let go. HTTP/1.1 also
//!   bounds each request's headers by
//!   [`ConnectionLimits::header_read_timeout`].

mod accept;
mod activity;
mod io;
mod limits;
mod serve;

pub(crate) use accept::{Admitted, accept_until_stopped};
pub(crate) use activity::{Activity, CallGuard, TrackedBody, drive};
pub use io::ListenerTls;
pub(crate) use io::PeerSubject;
pub use limits::{
    ConnectionLimits, HANDSHAKE_TIMEOUT_ENV, HEADER_READ_TIMEOUT_ENV, IDLE_TIMEOUT_ENV,
    MAX_CONNECTIONS_ENV, MAX_CONNECTIONS_PER_PEER_ENV,
};
pub use serve::serve_http;
