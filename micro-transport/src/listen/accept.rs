use std::{
    collections::HashMap,
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::oneshot,
    task::JoinSet,
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::{Activity, ConnectionLimits, ListenerTls, PeerSubject, drive, io::ServerIo};

/// How long the accept loop pauses after a failed accept (such as running out
/// of file descriptors), so it does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A connection the limits let in, with what serving it needs to know.
pub(crate) struct Admitted {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
    /// When it was accepted: the handshake deadline counts from here.
    pub(crate) accepted_at: Instant,
    /// Cancelled when the server begins to shut down: finish gracefully.
    pub(crate) shutdown: CancellationToken,
    /// Gives the connection's place back when it closes.
    _slot: Slot,
}

impl Admitted {
    /// Completes the TLS handshake, when `tls` is on, within the handshake
    /// deadline: the connection's byte stream and what serving it needs;
    /// `None` when the peer failed or missed the handshake (logged).
    pub(crate) async fn open(
        self,
        tls: &ListenerTls,
        limits: &ConnectionLimits,
    ) -> Option<(ServerIo, OpenConnection)> {
        let io = tls
            .handshake(self.stream, self.accepted_at + limits.handshake_timeout)
            .await?;
        let opened = OpenConnection {
            peer: self.peer,
            subject: io.peer_subject(),
            activity: Activity::new(),
            accepted_at: self.accepted_at,
            shutdown: self.shutdown,
            _slot: self._slot,
        };
        Some((io, opened))
    }
}

/// A connection past its handshake: who is on the other end, and its calls.
pub(crate) struct OpenConnection {
    pub(crate) peer: SocketAddr,
    /// The client certificate's subject, under mutual TLS.
    pub(crate) subject: Option<PeerSubject>,
    /// The calls in flight, for the idle deadline.
    pub(crate) activity: Arc<Activity>,
    accepted_at: Instant,
    shutdown: CancellationToken,
    _slot: Slot,
}

impl OpenConnection {
    /// Runs `connection` under the idle and first-call deadlines and the
    /// server's shutdown (see [`drive`]); `None` when it was dropped.
    pub(crate) async fn run<C: Future>(
        &self,
        connection: C,
        graceful: impl Fn(Pin<&mut C>),
        limits: &ConnectionLimits,
    ) -> Option<C::Output> {
        drive(
            connection,
            graceful,
            &self.activity,
            self.accepted_at,
            limits,
            &self.shutdown,
        )
        .await
    }
}

/// The connections a stopped listener still has open.
pub(crate) struct Draining {
    grace: Duration,
    shutdown: CancellationToken,
    connections: JoinSet<()>,
}

impl Draining {
    /// The grace period the shutdown asked for.
    pub(crate) fn grace(&self) -> Duration {
        self.grace
    }

    /// Asks every connection to close once its calls are answered, and
    /// resolves when all of them have closed.
    pub(crate) async fn drain(&mut self) {
        self.shutdown.cancel();
        while self.connections.join_next().await.is_some() {}
    }

    /// How many connections are still open.
    pub(crate) fn open(&self) -> usize {
        self.connections.len()
    }

    /// Closes what is left, cancelling the calls still running on it.
    pub(crate) async fn close(mut self) {
        self.connections.shutdown().await;
    }
}

/// Accepts connections on `listener` within `limits` and hands each admitted
/// one to `serve` on a task of its own, until `stop` sends a grace period (or
/// is dropped: no grace). The listening socket is closed on return, so new
/// connections fail at once while the open ones drain.
pub(crate) async fn accept_until_stopped<F, Fut>(
    listener: TcpListener,
    limits: &ConnectionLimits,
    stop: &mut oneshot::Receiver<Duration>,
    mut serve: F,
) -> Draining
where
    F: FnMut(Admitted) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Slots::new(limits));
    let shutdown = CancellationToken::new();
    let mut connections = JoinSet::new();
    let grace = loop {
        tokio::select! {
            grace = &mut *stop => break grace.unwrap_or(Duration::ZERO),
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Some(slot) = slots.take(peer.ip()) else {
                        // Closing at once, unread, costs the least and tells
                        // the peer plainly that it was refused.
                        tracing::debug!(%peer, "connection refused: over the connection limit");
                        continue;
                    };
                    // Calls are small request/response exchanges: send them
                    // without Nagle's delay.
                    if let Err(err) = stream.set_nodelay(true) {
                        tracing::debug!(%peer, error = %err, "could not disable Nagle's algorithm");
                    }
                    connections.spawn(serve(Admitted {
                        stream,
                        peer,
                        accepted_at: Instant::now(),
                        shutdown: shutdown.child_token(),
                        _slot: slot,
                    }));
                }
                Err(err) => {
                    tracing::debug!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    };
    drop(listener);
    Draining {
        grace,
        shutdown,
        connections,
    }
}

/// Open connections, in all and per peer address.
struct Slots {
    max_total: usize,
    max_per_peer: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    per_peer: HashMap<IpAddr, usize>,
}

impl Slots {
    fn new(limits: &ConnectionLimits) -> Slots {
        Slots {
            max_total: limits.max_connections,
            max_per_peer: limits.max_connections_per_peer,
            open: Mutex::default(),
        }
    }

    /// A place for one more connection from `peer`, if the limits allow it.
    fn take(self: &Arc<Self>, peer: IpAddr) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.total >= self.max_total {
            return None;
        }
        let from_peer = open.per_peer.entry(peer).or_default();
        if *from_peer >= self.max_per_peer {
            return None;
        }
        *from_peer += 1;
        open.total += 1;
        Some(Slot {
            slots: self.clone(),
            peer,
        })
    }

    fn give_back(&self, peer: IpAddr) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(from_peer) = open.per_peer.get_mut(&peer) {
            *from_peer -= 1;
            if *from_peer == 0 {
                open.per_peer.remove(&peer);
            }
        }
    }
}

/// One open connection's place in [`Slots`], given back on drop.
struct Slot {
    slots: Arc<Slots>,
    peer: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.give_back(self.peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(total: usize, per_peer: usize) -> Arc<Slots> {
        Arc::new(Slots::new(&ConnectionLimits {
            max_connections: total,
            max_connections_per_peer: per_peer,
            ..ConnectionLimits::default()
        }))
    }

    #[test]
    fn a_peer_over_its_share_is_refused_while_others_get_in() {
        let slots = slots(10, 2);
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 3].into();
        let held = [slots.take(a).unwrap(), slots.take(a).unwrap()];
        assert!(slots.take(a).is_none());
        assert!(slots.take(b).is_some());
        drop(held);
        assert!(slots.take(a).is_some());
    }

    #[test]
    fn the_total_limit_holds_across_peers_and_frees_on_close() {
        let slots = slots(2, 5);
        let first = slots.take([127, 0, 0, 2].into()).unwrap();
        let _second = slots.take([127, 0, 0, 3].into()).unwrap();
        assert!(slots.take([127, 0, 0, 4].into()).is_none());
        drop(first);
        let _third = slots.take([127, 0, 0, 4].into()).unwrap();
        let open = slots.open.lock().unwrap();
        assert_eq!((open.total, open.per_peer.len()), (2, 2));
    }
}
