use std::{
    collections::BTreeSet,
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use tower::{Service, ServiceExt, util::BoxCloneSyncService};

use crate::{Error, Request, Response};

macro_rules! boxed_service {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(BoxCloneSyncService<Request, Response, Error>);

        impl $name {
            /// Erases any cloneable `tower::Service<Request>` into this type.
            pub fn new<S>(service: S) -> $name
            where
                S: Service<Request, Response = Response, Error = Error> + Clone + Send + Sync + 'static,
                S::Future: Send + 'static,
            {
                $name(BoxCloneSyncService::new(service))
            }

            /// Builds one from an async function.
            pub fn from_fn<F, Fut>(f: F) -> $name
            where
                F: Fn(Request) -> Fut + Clone + Send + Sync + 'static,
                Fut: std::future::Future<Output = Result<Response, Error>> + Send + 'static,
            {
                $name::new(tower::service_fn(f))
            }

            /// Waits until ready, then sends one request: the usual way to call it once.
            pub async fn call_once(&self, request: Request) -> Result<Response, Error> {
                self.0.clone().oneshot(request).await
            }
        }

        impl Service<Request> for $name {
            type Response = Response;
            type Error = Error;
            type Future = BoxFuture<'static, Result<Response, Error>>;

            fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
                self.0.poll_ready(cx)
            }

            fn call(&mut self, request: Request) -> Self::Future {
                self.0.call(request)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }
    };
}

/// The serving side: what a [`Transport`](crate::Transport) hands each
/// incoming request to. Usually micro's router, wrapped in any tower layers.
///
/// A handler may say what it serves ([`with_endpoints`](Handler::with_endpoints)):
/// transports that route or report by name use it (gRPC answers an unknown
/// method `UNIMPLEMENTED` itself, routes `/pkg.Service/Method` to a handler
/// registered under its full name, and reports health per service).
#[derive(Clone)]
pub struct Handler {
    service: BoxCloneSyncService<Request, Response, Error>,
    endpoints: Option<Arc<EndpointSet>>,
}

impl Handler {
    /// Erases any cloneable `tower::Service<Request>` into this type.
    pub fn new<S>(service: S) -> Handler
    where
        S: Service<Request, Response = Response, Error = Error> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
    {
        Handler {
            service: BoxCloneSyncService::new(service),
            endpoints: None,
        }
    }

    /// Builds one from an async function.
    pub fn from_fn<F, Fut>(f: F) -> Handler
    where
        F: Fn(Request) -> Fut + Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Response, Error>> + Send + 'static,
    {
        Handler::new(tower::service_fn(f))
    }

    /// Waits until ready, then sends one request: the usual way to call it once.
    pub async fn call_once(&self, request: Request) -> Result<Response, Error> {
        self.service.clone().oneshot(request).await
    }

    /// Declares what this handler serves. micro's `Server` declares its
    /// endpoints; a handler without a declaration is sent every request.
    pub fn with_endpoints(mut self, endpoints: EndpointSet) -> Handler {
        self.endpoints = Some(Arc::new(endpoints));
        self
    }

    /// What this handler serves, when it said so.
    pub fn endpoints(&self) -> Option<&EndpointSet> {
        self.endpoints.as_deref()
    }
}

impl Service<Request> for Handler {
    type Response = Response;
    type Error = Error;
    type Future = BoxFuture<'static, Result<Response, Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.service.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        self.service.call(request)
    }
}

impl fmt::Debug for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handler")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

/// The name of a service and the endpoints (`Greeter.Hello`,
/// `pkg.v1.Greeter.Hello`) its [`Handler`] serves.
///
/// ```
/// use micro_transport::EndpointSet;
///
/// let set = EndpointSet::new("greeter", ["Greeter.Hello", "pkg.v1.Greeter.Hello"]);
/// assert_eq!(set.service(), "greeter");
/// assert!(set.contains("Greeter.Hello"));
/// assert!(!set.contains("Greeter.Bye"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointSet {
    service: String,
    endpoints: BTreeSet<String>,
}

impl EndpointSet {
    /// The endpoints of the service named `service` (may be empty).
    pub fn new<I, E>(service: impl Into<String>, endpoints: I) -> EndpointSet
    where
        I: IntoIterator<Item = E>,
        E: Into<String>,
    {
        EndpointSet {
            service: service.into(),
            endpoints: endpoints.into_iter().map(Into::into).collect(),
        }
    }

    /// The service's name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Whether `endpoint` is served.
    pub fn contains(&self, endpoint: &str) -> bool {
        self.endpoints.contains(endpoint)
    }

    /// The endpoints, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.endpoints.iter().map(String::as_str)
    }
}

boxed_service! {
    /// The calling side: a connection (or pool) to one address, returned by
    /// [`Transport::dial`](crate::Transport::dial). Cheap to clone; clones share
    /// the underlying connections.
    Channel
}
