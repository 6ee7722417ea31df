use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use futures::future::BoxFuture;

use crate::{Channel, Handler, Result};

/// What a transport backend supports, so callers choose instead of failing at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Client-streaming, server-streaming and bidirectional bodies ([`Body::Stream`](crate::Body::Stream)).
    pub streaming: bool,
    /// The largest body (or streamed message) the serving side accepts, if it enforces one.
    pub max_body_size: Option<usize>,
}

impl Capabilities {
    /// Capabilities with every optional feature off.
    pub const fn none() -> Capabilities {
        Capabilities {
            streaming: false,
            max_body_size: None,
        }
    }

    /// Sets [`Capabilities::streaming`].
    pub const fn with_streaming(mut self, streaming: bool) -> Capabilities {
        self.streaming = streaming;
        self
    }

    /// Sets [`Capabilities::max_body_size`].
    pub const fn with_max_body_size(mut self, max: Option<usize>) -> Capabilities {
        self.max_body_size = max;
        self
    }
}

/// Carries requests between clients and servers.
///
/// Implementations: the backends listed in the [crate documentation](crate).
/// `Arc<T>` and `Box<T>` forward the trait, so `Arc<dyn Transport>`
/// ([`DynTransport`]) is a transport too.
#[async_trait]
pub trait Transport: fmt::Debug + Send + Sync + 'static {
    /// The scheme naming this backend in configuration (`memory`, `http`, `grpc`).
    fn scheme(&self) -> &'static str;

    /// What this backend supports.
    fn capabilities(&self) -> Capabilities;

    /// Starts serving `handler` on `address` and returns once it accepts calls.
    ///
    /// The address syntax is the backend's (`127.0.0.1:0` for HTTP picks a free
    /// port); [`Listener::address`] tells the address actually bound, which is
    /// what goes into the registry.
    async fn listen(&self, address: &str, handler: Handler) -> Result<Listener>;

    /// Connects to a server at `address` (as a [`Listener::address`] gave it).
    ///
    /// Connecting may be lazy: an unreachable address can surface as an
    /// `Unavailable` error from the first call instead of from `dial`.
    async fn dial(&self, address: &str) -> Result<Channel>;
}

/// A shared, type-erased transport.
pub type DynTransport = Arc<dyn Transport>;

macro_rules! forward_transport {
    ($wrapper:ident) => {
        #[async_trait]
        impl<T: Transport + ?Sized> Transport for $wrapper<T> {
            fn scheme(&self) -> &'static str {
                (**self).scheme()
            }
            fn capabilities(&self) -> Capabilities {
                (**self).capabilities()
            }
            async fn listen(&self, address: &str, handler: Handler) -> Result<Listener> {
                (**self).listen(address, handler).await
            }
            async fn dial(&self, address: &str) -> Result<Channel> {
                (**self).dial(address).await
            }
        }
    };
}

forward_transport!(Arc);
forward_transport!(Box);

/// A running server: its bound address and the way to stop it.
///
/// Dropping a `Listener` without calling [`Listener::shutdown`] stops it with
/// no grace period.
pub struct Listener {
    address: String,
    tls: bool,
    shutdown: Option<ShutdownFn>,
}

/// What a backend gives a [`Listener`] to stop its server with a grace period.
type ShutdownFn = Box<dyn FnOnce(Duration) -> BoxFuture<'static, Result<()>> + Send>;

impl Listener {
    /// A listener bound to `address`, stopped by `shutdown`.
    ///
    /// `shutdown(grace)` must stop accepting new connections and calls at once,
    /// let calls already accepted finish for up to `grace`, then cancel what is
    /// left and resolve. Backends call this; users get a `Listener` from
    /// [`Transport::listen`].
    pub fn new<F>(address: impl Into<String>, shutdown: F) -> Listener
    where
        F: FnOnce(Duration) -> BoxFuture<'static, Result<()>> + Send + 'static,
    {
        Listener {
            address: address.into(),
            tls: false,
            shutdown: Some(Box::new(shutdown)),
        }
    }

    /// Marks the listener as serving TLS, so that a service registers that
    /// clients must dial it over TLS.
    pub fn with_tls(mut self, tls: bool) -> Listener {
        self.tls = tls;
        self
    }

    /// Whether connections to this listener are TLS.
    pub fn speaks_tls(&self) -> bool {
        self.tls
    }

    /// The address actually bound, to register and to dial.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Stops accepting, drains calls in flight for up to `grace`, and returns.
    pub async fn shutdown(mut self, grace: Duration) -> Result<()> {
        match self.shutdown.take() {
            Some(shutdown) => shutdown(grace).await,
            None => Ok(()),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // Dropped without an explicit shutdown: stop now, with no grace.
            // Without a runtime there is nothing left running to stop.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(shutdown(Duration::ZERO));
            }
        }
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}
