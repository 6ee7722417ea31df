use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::{Event, Result, Service};

/// What a registry backend supports, so callers choose instead of failing at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Registrations expire when not renewed within their TTL.
    pub ttl: bool,
    /// [`Registry::watch`] streams changes.
    pub watch: bool,
}

impl Capabilities {
    /// Every capability on.
    pub const fn all() -> Capabilities {
        Capabilities {
            ttl: true,
            watch: true,
        }
    }
}

/// How a registration behaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegisterOptions {
    /// How long the registration lives unless registered again; `None` lives
    /// until deregistered. Services re-register well within this interval.
    pub ttl: Option<Duration>,
}

impl RegisterOptions {
    /// Registration with a TTL.
    pub fn ttl(ttl: Duration) -> RegisterOptions {
        RegisterOptions { ttl: Some(ttl) }
    }
}

/// What a watch follows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatchOptions {
    /// Only this service's events; `None` follows every service.
    pub service: Option<String>,
}

impl WatchOptions {
    /// Follows one service.
    pub fn service(name: impl Into<String>) -> WatchOptions {
        WatchOptions {
            service: Some(name.into()),
        }
    }
}

/// The changes a watch sees, in the order they happened. Dropping it stops the watch.
pub type WatchStream = BoxStream<'static, Result<Event>>;

/// Where services announce their nodes and find each other's.
///
/// Registrations are keyed by service name, version and node id. Registering
/// the same node again is idempotent: it renews the TTL and, if anything about
/// the node or service changed, emits an `Update`.
///
/// `Arc<T>` and `Box<T>` forward the trait, so `Arc<dyn Registry>`
/// ([`DynRegistry`]) is a registry too.
#[async_trait]
pub trait Registry: fmt::Debug + Send + Sync + 'static {
    /// The scheme naming this backend in configuration (`memory`, `etcd`, ...).
    fn scheme(&self) -> &'static str;

    /// What this backend supports.
    fn capabilities(&self) -> Capabilities;

    /// Registers (or renews) every node in `service.nodes`.
    async fn register(&self, service: &Service, options: &RegisterOptions) -> Result<()>;

    /// Removes every node in `service.nodes` from `service`'s name and version.
    /// Removing a node that is not registered is not an error.
    async fn deregister(&self, service: &Service) -> Result<()>;

    /// Every version of the named service that has at least one node;
    /// `NotFound` when there is none.
    async fn get_service(&self, name: &str) -> Result<Vec<Service>>;

    /// Every registered service, one entry per name and version, with its nodes.
    async fn list_services(&self) -> Result<Vec<Service>>;

    /// Follows changes from now on.
    async fn watch(&self, options: &WatchOptions) -> Result<WatchStream>;
}

/// A shared, type-erased registry.
pub type DynRegistry = Arc<dyn Registry>;

macro_rules! forward_registry {
    ($wrapper:ident) => {
        #[async_trait]
        impl<T: Registry + ?Sized> Registry for $wrapper<T> {
            fn scheme(&self) -> &'static str {
                (**self).scheme()
            }
            fn capabilities(&self) -> Capabilities {
                (**self).capabilities()
            }
            async fn register(&self, service: &Service, options: &RegisterOptions) -> Result<()> {
                (**self).register(service, options).await
            }
            async fn deregister(&self, service: &Service) -> Result<()> {
                (**self).deregister(service).await
            }
            async fn get_service(&self, name: &str) -> Result<Vec<Service>> {
                (**self).get_service(name).await
            }
            async fn list_services(&self) -> Result<Vec<Service>> {
                (**self).list_services().await
            }
            async fn watch(&self, options: &WatchOptions) -> Result<WatchStream> {
                (**self).watch(options).await
            }
        }
    };
}

forward_registry!(Arc);
forward_registry!(Box);
