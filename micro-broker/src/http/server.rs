//! The broker endpoint: one HTTP server per broker instance, started by the
//! first subscription, delivering requests into the subscriptions' inboxes.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, State},
    http::{HeaderMap, StatusCode},
    routing::post,
};
use micro_transport::listen::{ConnectionLimits, ListenerTls, serve_http};
use tokio::{net::TcpListener, sync::oneshot, task::AbortHandle};

use super::{
    inbox::Inbox,
    wire::{ENVELOPE_HEADER, decode_envelope},
};
use crate::{Error, Message, Result};

/// The inboxes of a broker's live subscriptions, by subscription id, and
/// who may deliver to them.
#[derive(Default)]
pub(super) struct Inboxes {
    by_id: Mutex<HashMap<String, Arc<Inbox>>>,
    gate: Option<Gate>,
}

/// Which publishers may deliver which topics: the publisher's credential
/// (the `authorization` header of the message, `Bearer <token>`) inspected
/// by `auth`, and `rules` deciding with the topic as the endpoint and the
/// broker's registry service name as the service.
pub(super) struct Gate {
    pub(super) auth: Option<micro_auth::DynAuth>,
    pub(super) rules: micro_auth::Rules,
    pub(super) service: String,
}

impl Gate {
    /// Whether the message's publisher may publish `topic`; the credential
    /// is taken out of the headers either way, so subscribers never see it.
    async fn admit(&self, topic: &str, headers: &mut micro_core::Metadata) -> Result<()> {
        let credential = headers.remove("authorization");
        let account = match &self.auth {
            Some(auth) => micro_auth::authenticate(&**auth, credential.as_deref()).await?,
            None => None,
        };
        self.rules.verify(account.as_ref(), &self.service, topic)
    }
}

impl Inboxes {
    /// Inboxes that only admit deliveries `gate` lets through.
    pub(super) fn gated(gate: Option<Gate>) -> Inboxes {
        Inboxes {
            by_id: Mutex::default(),
            gate,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Inbox>>> {
        // Inserts and removes cannot panic half-way.
        self.by_id.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn insert(&self, id: String, inbox: Arc<Inbox>) {
        self.lock().insert(id, inbox);
    }

    /// Removes and closes a subscription's inbox: deliveries to it from now on
    /// are answered `404`, so publishers pass it over at once, before the
    /// registry has caught up.
    pub(super) fn remove(&self, id: &str) {
        if let Some(inbox) = self.lock().remove(id) {
            inbox.close();
        }
    }

    fn get(&self, id: &str) -> Option<Arc<Inbox>> {
        self.lock().get(id).cloned()
    }
}

/// A running endpoint; aborted when dropped.
pub(super) struct Endpoint {
    pub(super) advertised: String,
    task: AbortHandle,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `address` and serves deliveries into `inboxes`.
pub(super) async fn start(
    address: &str,
    advertise: Option<&str>,
    max_message_bytes: usize,
    limits: ConnectionLimits,
    tls: ListenerTls,
    inboxes: Arc<Inboxes>,
) -> Result<Endpoint> {
    let listener = TcpListener::bind(address).await.map_err(|err| {
        Error::unavailable(format!("the http broker cannot listen on {address}")).with_source(err)
    })?;
    let bound: SocketAddr = listener.local_addr().map_err(|err| {
        Error::internal("no local address for the broker endpoint").with_source(err)
    })?;
    let router = Router::new()
        .route("/micro/broker/{subscription}", post(deliver))
        .layer(DefaultBodyLimit::max(max_message_bytes))
        .with_state(inboxes);
    // The endpoint lives until the broker drops it, which aborts the task.
    let (keep_running, stop) = oneshot::channel();
    let task = tokio::spawn(async move {
        let _keep_running = keep_running;
        serve_http(listener, limits, tls, router, stop).await;
    });
    Ok(Endpoint {
        advertised: advertise.map_or_else(|| bound.to_string(), str::to_owned),
        task: task.abort_handle(),
    })
}

async fn deliver(
    State(inboxes): State<Arc<Inboxes>>,
    Path(subscription): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let Some(envelope) = headers.get(ENVELOPE_HEADER) else {
        return (StatusCode::BAD_REQUEST, "missing micro-message header");
    };
    let Ok((topic, mut message_headers)) = decode_envelope(envelope.as_bytes()) else {
        return (StatusCode::BAD_REQUEST, "malformed micro-message header");
    };
    if let Some(gate) = &inboxes.gate
        && let Err(refused) = gate.admit(&topic, &mut message_headers).await
    {
        return match refused.kind() {
            crate::ErrorKind::PermissionDenied => (StatusCode::FORBIDDEN, "permission denied"),
            _ => (StatusCode::UNAUTHORIZED, "authentication required"),
        };
    }
    let Some(inbox) = inboxes.get(&subscription) else {
        return (StatusCode::NOT_FOUND, "no such subscription");
    };
    let mut message = Message::new(body);
    message.headers = message_headers;
    match inbox.accept(topic, message).await {
        Ok(()) => (StatusCode::NO_CONTENT, ""),
        Err(_gone) => (StatusCode::NOT_FOUND, "the subscription was dropped"),
    }
}
