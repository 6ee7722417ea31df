use std::{
    any::Any,
    collections::HashMap,
    fmt,
    panic::AssertUnwindSafe,
    sync::Arc,
    task::{Context as TaskContext, Poll},
};

use futures::{FutureExt, future::BoxFuture};

use super::{RouteFn, auth::Authorizer};
use crate::{
    Client, Context, Error, Result,
    config::Config,
    metrics::{self, CallTimer, Metrics, Side},
    transport::{Request, Response},
};

/// The tower service a [`Server`](super::Server) becomes: finds the route,
/// runs it under the caller's deadline and turns a panic into `Internal`.
#[derive(Clone)]
pub(super) struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    routes: HashMap<String, RouteFn>,
    client: Option<Client>,
    config: Option<Config>,
    authorizer: Option<Arc<Authorizer>>,
}

impl Router {
    pub(super) fn new(
        name: String,
        routes: HashMap<String, RouteFn>,
        client: Option<Client>,
        config: Option<Config>,
        authorizer: Option<Arc<Authorizer>>,
    ) -> Router {
        Router {
            inner: Arc::new(Inner {
                name,
                routes,
                client,
                config,
                authorizer,
            }),
        }
    }
}

impl tower::Service<Request> for Router {
    type Response = Response;
    type Error = Error;
    type Future = BoxFuture<'static, Result<Response>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let timer = self.inner.start_timer(&request);
        let dispatch = self.inner.clone().dispatch(request);
        async move { timer.finish(dispatch.await) }.boxed()
    }
}

impl Inner {
    /// Counts and times the call in [`Metrics`]; a call to an endpoint this
    /// server does not serve is labelled `<unknown>`, so callers cannot
    /// choose label values.
    fn start_timer(&self, request: &Request) -> CallTimer {
        let service = if self.name.is_empty() {
            request.service.as_str()
        } else {
            self.name.as_str()
        };
        let endpoint = if self.routes.contains_key(&request.endpoint) {
            request.endpoint.as_str()
        } else {
            metrics::UNKNOWN
        };
        Metrics::global().start(Side::Server, service, endpoint)
    }

    async fn dispatch(self: Arc<Self>, mut request: Request) -> Result<Response> {
        // Before the route is looked up: an unknown caller learns nothing,
        // not even which endpoints exist.
        let account = match &self.authorizer {
            Some(authorizer) => {
                let service = self.service_name(&request);
                authorizer
                    .authorize(service, &request.endpoint, &request.metadata)
                    .await?
            }
            None => None,
        };
        let Some((endpoint, route)) = self.routes.get_key_value(&request.endpoint) else {
            return Err(Error::not_found(format!(
                "unknown endpoint {:?}",
                request.endpoint
            )));
        };
        let deadline = request.deadline;
        let ctx = self.context(&mut request).with_account(account);
        let call = AssertUnwindSafe(route(ctx, request)).catch_unwind();
        let outcome = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, call).await.map_err(|_| {
                Error::timeout(format!(
                    "{endpoint} did not finish before the caller's deadline"
                ))
            })?,
            None => call.await,
        };
        outcome.unwrap_or_else(|panic| {
            tracing::error!(
                service = %self.name,
                endpoint = %endpoint,
                panic = panic_message(panic.as_ref()),
                "handler panicked; the call fails with internal and the server goes on"
            );
            Err(Error::internal(format!(
                "the handler of {endpoint} panicked"
            )))
        })
    }

    /// The handler's context. The request's metadata moves into it: routes
    /// read only the request's content type and body.
    fn service_name<'a>(&'a self, request: &'a Request) -> &'a str {
        if self.name.is_empty() {
            &request.service
        } else {
            &self.name
        }
    }

    fn context(&self, request: &mut Request) -> Context {
        let service = self.service_name(request).to_owned();
        let mut metadata = std::mem::take(&mut request.metadata);
        metadata.insert("content-type", request.content_type.clone());
        let ctx = Context::new(service, request.endpoint.clone())
            .with_metadata(metadata)
            .with_deadline(request.deadline);
        let ctx = match &self.config {
            Some(config) => ctx.with_config(config.clone()),
            None => ctx,
        };
        match &self.client {
            Some(client) => ctx.with_client(client.clone()),
            None => ctx,
        }
    }
}

/// The text of a panic payload, when it has one.
pub(super) fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(text) = panic.downcast_ref::<&'static str>() {
        text
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text
    } else {
        "a non-string panic payload"
    }
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut endpoints: Vec<&String> = self.inner.routes.keys().collect();
        endpoints.sort();
        f.debug_struct("Router")
            .field("name", &self.inner.name)
            .field("endpoints", &endpoints)
            .finish_non_exhaustive()
    }
}
