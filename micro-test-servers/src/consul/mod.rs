//! A STAND-IN for a Consul agent: a small in-process HTTP server answering
//! exactly the Consul HTTP API endpoints micro's Consul backends use, written
//! from Consul's API documentation. It is not Consul: micro's Consul backends
//! are tested against this stand-in only, never against a real agent, so a
//! difference between the documentation and the real Consul would go unseen.
//!
//! | endpoint | what the stand-in does |
//! |---|---|
//! | `PUT /v1/agent/service/register` | registers a service with TTL checks (`Check`/`Checks`; no HTTP/TCP/script checks); a new check starts `critical` unless `Status` says otherwise; a re-registered check keeps its status unless `Status` is given; `replace-existing-checks` |
//! | `PUT /v1/agent/service/deregister/:id` | removes the service and its checks; unknown id is 404 |
//! | `PUT /v1/agent/check/pass/:id` | marks a TTL check passing and restarts its TTL; unknown id is 404 |
//! | `GET /v1/health/service/:service` | instances with their checks (plus the node's `serfHealth`); `passing` keeps instances whose checks all pass |
//! | `GET /v1/health/state/:state` | checks in a state (`any`, `passing`, `warning`, `critical`) |
//! | `GET /v1/catalog/services` | service names with their tags, `consul` included |
//!
//! Reads are blocking queries: with `?index=N` they wait until the index passes
//! N or `wait` (default 5 minutes, at most 10) runs out, and answer with
//! `X-Consul-Index`. The stand-in keeps one index for everything (Consul keeps
//! one per table, and documents that an index may move for unrelated
//! reasons). A TTL check that is not passed in time turns critical; a service
//! whose check stays critical for its `DeregisterCriticalServiceAfter` is
//! removed (Consul reaps such services periodically, so there it can take up
//! to a minute longer).
//!
//! The KV endpoints hook in through `kv.rs`.
//!
//! [`ConsulStandIn::start_with_acl_token`] makes it demand an ACL token as
//! Consul with ACLs on does: every request without `X-Consul-Token` equal to
//! it is answered `403 Permission denied` (the stand-in has no policies:
//! one token may do everything).
//!
//! ```no_run
//! # async fn example() {
//! use micro_test_servers::ConsulStandIn;
//!
//! let consul = ConsulStandIn::start().await;
//! println!("agent at {}", consul.url()); // http://127.0.0.1:PORT
//! consul.kill().await; // stop answering and drop every connection
//! consul.restart().await; // same port, services and checks kept (like an agent with its data dir)
//! consul.wipe(); // forget every service and check (like an agent that lost its data dir)
//! # }
//! ```

mod agent;
mod health;
mod kv;
mod query;
mod state;

use std::{
    fmt,
    net::SocketAddr,
    sync::{Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use axum::Router;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::{net::TcpListener, task::JoinSet};
use tower::ServiceExt;

use self::state::Shared;

/// How often TTLs and critical services are checked.
const EXPIRY_TICK: Duration = Duration::from_millis(20);

/// A running Consul agent STAND-IN (see the `consul` module docs): stateful,
/// in-process, on a free loopback port. Dropping it stops it.
pub struct ConsulStandIn {
    addr: SocketAddr,
    shared: Shared,
    acl_token: Option<String>,
    serving: Mutex<Option<JoinSet<()>>>,
}

impl ConsulStandIn {
    /// Starts a stand-in on a free loopback port; it answers once this returns.
    pub async fn start() -> ConsulStandIn {
        ConsulStandIn::start_with(None).await
    }

    /// Starts a stand-in that refuses (403) every request whose
    /// `X-Consul-Token` is not `token`.
    pub async fn start_with_acl_token(token: &str) -> ConsulStandIn {
        ConsulStandIn::start_with(Some(token.to_owned())).await
    }

    async fn start_with(acl_token: Option<String>) -> ConsulStandIn {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap_or_else(|err| {
                panic!("cannot bind a loopback port for the Consul stand-in: {err}")
            });
        let addr = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("the Consul stand-in's listener has no address: {err}"));
        let stand_in = ConsulStandIn {
            addr,
            shared: Shared::new(),
            acl_token,
            serving: Mutex::new(None),
        };
        stand_in.serve(listener);
        stand_in
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its HTTP address, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops answering: closes the listener and drops every open connection,
    /// including blocking queries in flight. Services and checks are kept.
    pub async fn kill(&self) {
        let serving = self.serving().take();
        if let Some(mut tasks) = serving {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
    }

    /// Answers again on the same port, with the services and checks it had
    /// (a check's TTL keeps running from its last update).
    pub async fn restart(&self) {
        self.kill().await;
        let listener = TcpListener::bind(self.addr).await.unwrap_or_else(|err| {
            panic!(
                "cannot bind {} again for the Consul stand-in: {err}",
                self.addr
            )
        });
        self.serve(listener);
    }

    /// Forgets every service and check, as an agent that lost its data would.
    pub fn wipe(&self) {
        let mut state = self.shared.lock();
        state.services.clear();
        state.checks.clear();
        drop(state);
        self.shared.bump();
    }

    fn serving(&self) -> MutexGuard<'_, Option<JoinSet<()>>> {
        self.serving.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn serve(&self, listener: TcpListener) {
        let mut tasks = JoinSet::new();
        tasks.spawn(accept(
            listener,
            router(self.shared.clone()),
            self.acl_token.clone(),
        ));
        tasks.spawn(expire(self.shared.clone()));
        *self.serving() = Some(tasks);
    }
}

impl Drop for ConsulStandIn {
    fn drop(&mut self) {
        if let Some(mut tasks) = self.serving().take() {
            tasks.abort_all();
        }
    }
}

impl fmt::Debug for ConsulStandIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsulStandIn")
            .field("addr", &self.addr)
            .field("index", &self.shared.index())
            .finish()
    }
}

/// Every route of the stand-in: the agent's, the health and catalog reads, and KV.
fn router(shared: Shared) -> Router {
    Router::new()
        .merge(agent::routes())
        .merge(health::routes())
        .merge(kv::routes())
        .with_state(shared)
}

/// Serves connections until aborted; aborting drops every connection too.
async fn accept(listener: TcpListener, router: Router, acl_token: Option<String>) {
    let mut connections = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of descriptors or similar: give it a moment rather than spin.
                tokio::time::sleep(EXPIRY_TICK).await;
                continue;
            }
        };
        let router = router.clone();
        let acl_token = acl_token.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request: axum::extract::Request<_>| {
                let allowed = acl_token.as_deref().is_none_or(|token| {
                    request
                        .headers()
                        .get("X-Consul-Token")
                        .is_some_and(|sent| sent.as_bytes() == token.as_bytes())
                });
                let router = router.clone();
                async move {
                    if allowed {
                        router.oneshot(request.map(axum::body::Body::new)).await
                    } else {
                        Ok(axum::response::IntoResponse::into_response((
                            axum::http::StatusCode::FORBIDDEN,
                            "Permission denied: token not found",
                        )))
                    }
                }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        // Reap finished connections so the set does not grow forever.
        while connections.try_join_next().is_some() {}
    }
}

/// Turns checks critical when their TTL runs out and removes services that
/// stayed critical too long.
async fn expire(shared: Shared) {
    let mut tick = tokio::time::interval(EXPIRY_TICK);
    loop {
        tick.tick().await;
        shared.expire(tokio::time::Instant::now());
    }
}
