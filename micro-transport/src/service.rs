use std::{
    fmt,
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

boxed_service! {
    /// The serving side: what a [`Transport`](crate::Transport) hands each
    /// incoming request to. Usually micro's router, wrapped in any tower layers.
    Handler
}

boxed_service! {
    /// The calling side: a connection (or pool) to one address, returned by
    /// [`Transport::dial`](crate::Transport::dial). Cheap to clone; clones share
    /// the underlying connections.
    Channel
}
