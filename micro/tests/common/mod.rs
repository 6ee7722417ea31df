//! Helpers shared by micro's end-to-end tests.

#![allow(dead_code, unreachable_pub)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context as TaskContext, Poll},
    time::Duration,
};

use micro::{
    Error, ServiceBuilder,
    broker::{DynBroker, memory::MemoryBroker},
    registry::{DynRegistry, memory::MemoryRegistry},
    transport::{DynTransport, Request, Response, http::HttpTransport, memory::MemoryTransport},
};

/// How long a test waits for something that should happen at once.
pub const WAIT: Duration = Duration::from_secs(10);

/// Which transport a test runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Memory,
    Http,
    #[cfg(feature = "transport-grpc")]
    Grpc,
}

/// Backends of one test, shared by every service and client it builds and
/// reached by no other test.
#[derive(Clone)]
pub struct World {
    pub registry: DynRegistry,
    pub broker: DynBroker,
    pub transport: DynTransport,
}

impl World {
    pub fn new(kind: Kind) -> World {
        let transport: DynTransport = match kind {
            Kind::Memory => Arc::new(MemoryTransport::isolated()),
            Kind::Http => Arc::new(HttpTransport::new()),
            #[cfg(feature = "transport-grpc")]
            Kind::Grpc => Arc::new(micro::transport::grpc::GrpcTransport::new()),
        };
        World {
            registry: Arc::new(MemoryRegistry::new()),
            broker: Arc::new(MemoryBroker::new()),
            transport,
        }
    }

    /// A service builder on this world's backends.
    pub fn service(&self, name: &str) -> ServiceBuilder {
        micro::Service::builder(name)
            .registry(self.registry.clone())
            .broker(self.broker.clone())
            .transport(self.transport.clone())
            .grace_period(WAIT)
    }

    /// A client on this world's backends with the default settings.
    pub fn client(&self) -> micro::Client {
        micro::Client::new(
            self.registry.clone(),
            self.transport.clone(),
            self.broker.clone(),
        )
    }
}

/// Expands one `async fn name(kind: Kind)` test body into a test per
/// transport (gRPC when the `transport-grpc` feature is on, as under
/// `--all-features`).
#[macro_export]
macro_rules! on_every_transport {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn memory() {
                    super::$name($crate::common::Kind::Memory).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn http() {
                    super::$name($crate::common::Kind::Http).await;
                }

                #[cfg(feature = "transport-grpc")]
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn grpc() {
                    super::$name($crate::common::Kind::Grpc).await;
                }
            }
        )*
    };
}

/// A tower layer counting the requests that pass through it.
#[derive(Debug, Clone, Default)]
pub struct CountLayer {
    pub count: Arc<AtomicUsize>,
}

impl CountLayer {
    pub fn get(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

impl<S> tower::Layer<S> for CountLayer {
    type Service = CountService<S>;

    fn layer(&self, inner: S) -> CountService<S> {
        CountService {
            inner,
            count: self.count.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CountService<S> {
    inner: S,
    count: Arc<AtomicUsize>,
}

impl<S> tower::Service<Request> for CountService<S>
where
    S: tower::Service<Request, Response = Response, Error = Error>,
{
    type Response = Response;
    type Error = Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> S::Future {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.inner.call(request)
    }
}
