use std::{fmt, time::Duration};

use futures::future::BoxFuture;
use micro_core::Backoff;
use rand::Rng;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Hooks, NODE_CONTENT_TYPES, NODE_TLS, NODE_TRANSPORT, Service};
use crate::{
    Client, Error, Result,
    codec::SUPPORTED,
    registry::{self, DynRegistry, Node, RegisterOptions},
    server::Subscribers,
    transport::Listener,
};

/// The first wait before retrying a failed re-registration.
const REREGISTER_RETRY: Duration = Duration::from_millis(500);

/// A started service: registered, serving and subscribed until
/// [`stop`](RunningService::stop)ped.
///
/// Dropping it without `stop` still stops it, abruptly: calls in flight are
/// cut off and the node is deregistered in the background (if a tokio runtime
/// is still running).
pub struct RunningService {
    name: String,
    address: String,
    registration: registry::Service,
    registry: DynRegistry,
    client: Client,
    grace_period: Duration,
    hooks: Hooks,
    listener: Option<Listener>,
    subscribers: Option<Subscribers>,
    heartbeat: Option<Heartbeat>,
    registered: bool,
    health: crate::admin::Health,
    admin: Option<crate::admin::Admin>,
}

/// The re-registration task and the way to stop it.
struct Heartbeat {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningService {
    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address the transport bound, as registered.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The id of this instance's node in the registry.
    pub fn node_id(&self) -> &str {
        self.registration
            .nodes
            .first()
            .map(|node| node.id.as_str())
            .unwrap_or_default()
    }

    /// What this instance registers: the service, its endpoints and its one node.
    pub fn registration(&self) -> &registry::Service {
        &self.registration
    }

    /// A client sharing the service's registry, transport and broker.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Whether this instance is ready for traffic: ready once registered
    /// with its subscribers running, not ready from the moment it starts
    /// stopping (before its listener closes). Serve it with
    /// [`micro::admin::serve`](crate::admin::serve).
    pub fn health(&self) -> crate::admin::Health {
        self.health.clone()
    }

    /// The admin listener's address, when the service has one
    /// ([`ServiceBuilder::admin_address`](super::ServiceBuilder::admin_address)).
    pub fn admin_address(&self) -> Option<&str> {
        self.admin.as_ref().map(crate::admin::Admin::address)
    }

    /// The service's running subscribers (with their message counts).
    pub fn subscribers(&self) -> Option<&Subscribers> {
        self.subscribers.as_ref()
    }

    /// Stops the service: `before_stop` hooks, deregistration, no new calls or
    /// messages, in-flight ones drained for up to the grace period, then the
    /// `after_stop` hooks. Every step runs even when an earlier one failed;
    /// the first error is returned.
    pub async fn stop(mut self) -> Result<()> {
        let mut outcome = Outcome::default();
        // Probes see the drain before the hooks, the registry or the listener do.
        self.health.set_ready(false);
        for hook in self.hooks.before_stop.clone() {
            outcome.record("a before_stop hook", hook(&self).await);
        }
        self.shut_down(&mut outcome).await;
        for hook in self.hooks.after_stop.clone() {
            outcome.record("an after_stop hook", hook().await);
        }
        outcome.into_result()
    }

    async fn shut_down(&mut self, outcome: &mut Outcome) {
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.stop.cancel();
            // Waited for, so that no renewal lands after the deregistration.
            if let Err(err) = heartbeat.task.await
                && err.is_panic()
            {
                tracing::error!(service = %self.name, "the re-registration task panicked");
            }
        }
        if self.registered {
            self.registered = false;
            let deregistered = tokio::time::timeout(
                self.grace_period,
                self.registry.deregister(&self.registration),
            )
            .await
            .unwrap_or_else(|_| Err(Error::timeout("the registry did not answer")));
            outcome.record("deregistering", deregistered);
        }
        let grace = self.grace_period;
        let subscribers = self.subscribers.take();
        let listener = self.listener.take();
        let (_, drained) = tokio::join!(
            async {
                if let Some(subscribers) = subscribers {
                    subscribers.stop(grace).await;
                }
            },
            async {
                match listener {
                    Some(listener) => listener.shutdown(grace).await,
                    None => Ok(()),
                }
            }
        );
        outcome.record("stopping the listener", drained);
        // Last of the listeners, so probes answer 503 throughout the drain.
        if let Some(admin) = self.admin.take() {
            admin.shutdown().await;
        }
        // Last: handlers that ran during the drain may have published too.
        // What the broker accepted must leave the process before it exits.
        let flushed = tokio::time::timeout(grace, self.client.flush_broker())
            .await
            .unwrap_or_else(|_| Err(Error::timeout("the broker did not flush in time")));
        outcome.record("flushing the broker", flushed);
    }
}

impl Drop for RunningService {
    fn drop(&mut self) {
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.stop.cancel();
        }
        if self.registered
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let registry = self.registry.clone();
            let registration = self.registration.clone();
            runtime.spawn(async move {
                if let Err(err) = registry.deregister(&registration).await {
                    tracing::warn!(error = %err, "deregistering a dropped service failed");
                }
            });
        }
    }
}

impl fmt::Debug for RunningService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningService")
            .field("name", &self.name)
            .field("node_id", &self.node_id())
            .field("address", &self.address)
            .field("subscribers", &self.subscribers)
            .finish_non_exhaustive()
    }
}

/// Collects the first error of a sequence of steps that all run regardless.
#[derive(Default)]
struct Outcome {
    first_error: Option<Error>,
}

impl Outcome {
    fn record(&mut self, step: &str, result: Result<()>) {
        if let Err(err) = result {
            tracing::error!(error = %err, "{step} failed while stopping");
            self.first_error.get_or_insert(err.context(step));
        }
    }

    fn into_result(self) -> Result<()> {
        self.first_error.map_or(Ok(()), Err)
    }
}

pub(super) async fn start(service: Service) -> Result<RunningService> {
    for hook in &service.hooks.before_start {
        hook()
            .await
            .map_err(|err| err.context("a before_start hook failed"))?;
    }
    let handler = service.server.handler()?;
    let listener = service
        .transport
        .listen(&service.address, handler)
        .await
        .map_err(|err| err.context(format!("listening on {:?}", service.address)))?;
    let address = listener.address().to_owned();
    let registration = registration(&service, &address, listener.speaks_tls());
    let mut running = RunningService {
        name: service.name.clone(),
        address,
        registration,
        registry: service.registry.clone(),
        client: service.client.clone(),
        grace_period: service.grace_period,
        hooks: service.hooks.clone(),
        listener: Some(listener),
        subscribers: None,
        heartbeat: None,
        registered: false,
        health: crate::admin::Health::default(),
        admin: None,
    };
    // From here on, an early return drops `running`, which undoes what was done.
    let options = RegisterOptions::ttl(service.register_ttl);
    service
        .registry
        .register(&running.registration, &options)
        .await
        .map_err(|err| err.context(format!("registering {}", service.name)))?;
    running.registered = true;
    running.subscribers = Some(
        service
            .server
            .start_subscribers(service.broker.clone())
            .await?,
    );
    running.heartbeat = Some(spawn_heartbeat(
        service.registry.clone(),
        running.registration.clone(),
        options,
        service.register_interval,
    ));
    if let Some(address) = &service.admin_address {
        running.admin = Some(crate::admin::serve(address, running.health.clone()).await?);
    }
    running.health.set_ready(true);
    tracing::info!(
        service = %running.name,
        node = %running.node_id(),
        address = %running.address,
        transport = service.transport.scheme(),
        "service started"
    );
    for hook in &service.hooks.after_start {
        if let Err(err) = hook(&running).await {
            let err = err.context("an after_start hook failed");
            if let Err(stop_err) = running.stop().await {
                tracing::error!(error = %stop_err, "stopping after a failed after_start hook failed too");
            }
            return Err(err);
        }
    }
    Ok(running)
}

fn registration(service: &Service, address: &str, tls: bool) -> registry::Service {
    let suffix: u64 = rand::rng().random();
    let mut node = Node::new(format!("{}-{suffix:016x}", service.name), address)
        .with_metadata(NODE_TRANSPORT, service.transport.scheme())
        .with_metadata(NODE_CONTENT_TYPES, SUPPORTED.join(","));
    if tls {
        node = node.with_metadata(NODE_TLS, "true");
    }
    node.metadata.extend_from(&service.metadata);
    let mut registration = registry::Service::new(service.name.clone())
        .with_version(service.version.clone())
        .with_node(node);
    registration.metadata = service.metadata.clone();
    registration.endpoints = service.server.endpoints();
    registration
}

fn spawn_heartbeat(
    registry: DynRegistry,
    registration: registry::Service,
    options: RegisterOptions,
    interval: Duration,
) -> Heartbeat {
    let stop = CancellationToken::new();
    let task = tokio::spawn(heartbeat(
        registry,
        registration,
        options,
        interval,
        stop.clone(),
    ));
    Heartbeat { stop, task }
}

/// Renews the registration every `interval`; after a failure, sooner.
async fn heartbeat(
    registry: DynRegistry,
    registration: registry::Service,
    options: RegisterOptions,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut wait = interval;
    // After a failure, retry sooner: from REREGISTER_RETRY doubling up to the interval.
    let mut retries = Backoff::exponential(REREGISTER_RETRY.min(interval), interval).attempts();
    loop {
        let renewed = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            renewed = async {
                tokio::time::sleep(wait).await;
                tokio::time::timeout(interval, registry.register(&registration, &options)).await
            } => renewed,
        };
        match renewed {
            Ok(Ok(())) => {
                if retries.count() > 0 {
                    tracing::info!(service = %registration.name, "re-registered after failures");
                }
                wait = interval;
                retries.reset();
            }
            Ok(Err(err)) => {
                wait = retries.next_delay();
                tracing::warn!(service = %registration.name, error = %err, retry_in = ?wait, "re-registering failed");
            }
            Err(_) => {
                wait = retries.next_delay();
                tracing::warn!(service = %registration.name, retry_in = ?wait, "re-registering timed out");
            }
        }
    }
}

/// Resolves on SIGINT or SIGTERM (Ctrl-C only, off Unix). The handlers are
/// installed now, before the returned future is polled.
pub(super) fn shutdown_signal() -> Result<BoxFuture<'static, ()>> {
    #[cfg(unix)]
    {
        use futures::FutureExt;
        use tokio::signal::unix::{SignalKind, signal};

        let mut terminate = signal(SignalKind::terminate())
            .map_err(|err| Error::from(err).context("listening for SIGTERM"))?;
        let mut interrupt = signal(SignalKind::interrupt())
            .map_err(|err| Error::from(err).context("listening for SIGINT"))?;
        Ok(async move {
            let name = tokio::select! {
                _ = terminate.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            };
            tracing::info!("received {name}: stopping");
        }
        .boxed())
    }
    #[cfg(not(unix))]
    {
        use futures::FutureExt;
        Ok(async {
            if let Err(err) = tokio::signal::ctrl_c().await {
                tracing::error!(error = %err, "cannot listen for Ctrl-C; stopping");
            }
            tracing::info!("received Ctrl-C: stopping");
        }
        .boxed())
    }
}
