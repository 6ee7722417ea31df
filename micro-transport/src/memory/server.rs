use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, OnceLock, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio_util::{
    sync::CancellationToken,
    task::{TaskTracker, task_tracker::TaskTrackerToken},
};

use crate::{Error, Handler, Result};

/// The addresses of one set of in-process servers: every transport sharing a
/// network reaches every server listening on it.
pub(super) struct Network {
    servers: RwLock<HashMap<String, Arc<Server>>>,
    next_address: AtomicU64,
}

impl Network {
    /// The process-wide network shared by every [`MemoryTransport::new`](super::MemoryTransport::new).
    pub(super) fn global() -> Arc<Network> {
        static GLOBAL: OnceLock<Arc<Network>> = OnceLock::new();
        GLOBAL.get_or_init(Network::new).clone()
    }

    /// A network of its own, reached by nobody else.
    pub(super) fn new() -> Arc<Network> {
        Arc::new(Network {
            servers: RwLock::new(HashMap::new()),
            next_address: AtomicU64::new(1),
        })
    }

    /// Puts `server` at `address`, or at a fresh address when `address` asks
    /// for one, and returns the address taken.
    pub(super) fn bind(&self, address: &str, server: Arc<Server>) -> Result<String> {
        let address = normalize(address);
        let mut servers = self.servers.write().unwrap_or_else(PoisonError::into_inner);
        let address = if wants_fresh_address(address) {
            // Skips addresses a user took by name, so this always terminates.
            loop {
                let candidate = format!(
                    "memory-{}",
                    self.next_address.fetch_add(1, Ordering::Relaxed)
                );
                if !servers.contains_key(&candidate) {
                    break candidate;
                }
            }
        } else if servers.contains_key(address) {
            return Err(Error::already_exists(format!(
                "a memory server is already listening on {address:?}"
            )));
        } else {
            address.to_owned()
        };
        servers.insert(address.clone(), server);
        Ok(address)
    }

    /// The server at `address`, if one is listening.
    pub(super) fn lookup(&self, address: &str) -> Option<Arc<Server>> {
        self.servers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(normalize(address))
            .cloned()
    }

    /// Removes `server` from `address`, unless another server took the address since.
    pub(super) fn unbind(&self, address: &str, server: &Arc<Server>) {
        let mut servers = self.servers.write().unwrap_or_else(PoisonError::into_inner);
        if servers
            .get(address)
            .is_some_and(|bound| Arc::ptr_eq(bound, server))
        {
            servers.remove(address);
        }
    }
}

impl fmt::Debug for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let servers = self.servers.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Network")
            .field("servers", &servers.len())
            .finish_non_exhaustive()
    }
}

/// Accepts `memory://name` as well as `name`.
pub(super) fn normalize(address: &str) -> &str {
    let address = address.trim();
    address.strip_prefix("memory://").unwrap_or(address)
}

/// Whether `address` asks for any free address rather than a particular one:
/// empty, `memory`, or a host/port address with port 0 (so the `127.0.0.1:0`
/// a service uses for other transports works here too).
fn wants_fresh_address(address: &str) -> bool {
    address.is_empty() || address == "memory" || address.ends_with(":0")
}

/// One listening server: its handler, its limits and its calls in flight.
pub(super) struct Server {
    pub(super) handler: Handler,
    pub(super) max_body_size: usize,
    /// Counts calls in flight (a streamed response counts until it is dropped)
    /// and, once closed, refuses new ones.
    calls: TaskTracker,
    /// Cancelled when the grace period runs out: calls still running end with `Unavailable`.
    pub(super) shutdown: CancellationToken,
}

impl Server {
    pub(super) fn new(handler: Handler, max_body_size: usize) -> Server {
        Server {
            handler,
            max_body_size,
            calls: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        }
    }

    /// Counts a new call in flight, or refuses it once shutdown has begun.
    pub(super) fn begin_call(&self, address: &str) -> Result<TaskTrackerToken> {
        // Taking the token before looking at `is_closed` means a call either
        // sees the close and backs out, or is counted before `drain` waits.
        let call = self.calls.token();
        if self.calls.is_closed() {
            return Err(Error::unavailable(format!(
                "the memory server at {address:?} is shutting down"
            )));
        }
        Ok(call)
    }

    /// Refuses new calls, waits up to `grace` for the ones in flight, then
    /// cancels whatever is left.
    pub(super) async fn drain(&self, grace: Duration) {
        self.calls.close();
        if tokio::time::timeout(grace, self.calls.wait())
            .await
            .is_err()
        {
            tracing::debug!(
                in_flight = self.calls.len(),
                "memory server grace period over; cancelling calls still in flight"
            );
        }
        self.shutdown.cancel();
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("max_body_size", &self.max_body_size)
            .field("in_flight", &self.calls.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> Arc<Server> {
        let handler = Handler::from_fn(|_request| async { Ok(crate::Response::new("")) });
        Arc::new(Server::new(handler, 1))
    }

    #[test]
    fn fresh_addresses_skip_names_taken_by_hand() {
        let network = Network::new();
        assert_eq!(network.bind("memory-1", server()).unwrap(), "memory-1");
        assert_eq!(network.bind("", server()).unwrap(), "memory-2");
        assert_eq!(network.bind("memory", server()).unwrap(), "memory-3");
        assert_eq!(network.bind("127.0.0.1:0", server()).unwrap(), "memory-4");
        assert_eq!(network.bind("memory://", server()).unwrap(), "memory-5");
    }

    #[test]
    fn a_taken_address_is_already_exists() {
        let network = Network::new();
        network.bind("memory://orders", server()).unwrap();
        let err = network.bind("orders", server()).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::AlreadyExists);
        assert!(network.lookup("memory://orders").is_some());
    }

    #[test]
    fn unbind_leaves_a_newer_server_in_place() {
        let network = Network::new();
        let old = server();
        network.bind("a", old.clone()).unwrap();
        network.unbind("a", &old);
        let new = server();
        network.bind("a", new.clone()).unwrap();
        network.unbind("a", &old);
        assert!(Arc::ptr_eq(&network.lookup("a").unwrap(), &new));
    }

    #[tokio::test]
    async fn a_draining_server_refuses_new_calls() {
        let server = server();
        let in_flight = server.begin_call("a").unwrap();
        let drained = tokio::spawn({
            let server = server.clone();
            async move { server.drain(Duration::from_secs(60)).await }
        });
        tokio::time::timeout(Duration::from_secs(10), async {
            while !server.calls.is_closed() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        assert_eq!(
            server.begin_call("a").unwrap_err().kind(),
            crate::ErrorKind::Unavailable
        );
        assert!(!drained.is_finished());
        drop(in_flight);
        tokio::time::timeout(Duration::from_secs(10), drained)
            .await
            .unwrap()
            .unwrap();
        assert!(server.shutdown.is_cancelled());
    }
}
