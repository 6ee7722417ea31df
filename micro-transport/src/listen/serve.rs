use std::{convert::Infallible, time::Duration};

use http_body::Body;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{net::TcpListener, sync::oneshot};
use tower::ServiceExt;

use super::{
    Admitted, CallGuard, ConnectionLimits, ListenerTls, PeerSubject, TrackedBody,
    accept_until_stopped,
};
use crate::BoxError;

/// Serves a tower `service` over HTTP/1.1 and HTTP/2 (h2c, or negotiated by
/// ALPN over `tls`) on `listener`, with the connection defences of `limits`
/// (the TLS handshake counts against the handshake deadline), until `stop` sends a grace period (or is
/// dropped: no grace); then drains the open connections for that long and
/// closes what is left.
///
/// This is how micro's own HTTP listeners serve (the HTTP broker's endpoint
/// is an axum `Router` served by it); any `Service` whose errors are
/// `Infallible`, as axum's are, can be served the same way.
pub async fn serve_http<S, B>(
    listener: TcpListener,
    limits: ConnectionLimits,
    tls: ListenerTls,
    service: S,
    mut stop: oneshot::Receiver<Duration>,
) where
    S: tower::Service<http::Request<Incoming>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let mut draining = accept_until_stopped(listener, &limits, &mut stop, |admitted| {
        serve_connection(
            admitted,
            builder.clone(),
            service.clone(),
            limits.clone(),
            tls.clone(),
        )
    })
    .await;
    // Idle connections close now; busy ones once their calls are answered.
    if tokio::time::timeout(draining.grace(), draining.drain())
        .await
        .is_err()
    {
        tracing::debug!(
            connections = draining.open(),
            "grace period over; closing connections with calls in flight"
        );
    }
    draining.close().await;
}

async fn serve_connection<S, B>(
    admitted: Admitted,
    builder: auto::Builder<TokioExecutor>,
    service: S,
    limits: ConnectionLimits,
    tls: ListenerTls,
) where
    S: tower::Service<http::Request<Incoming>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let Some((io, opened)) = admitted.open(&tls, &limits).await else {
        return;
    };
    let service = hyper::service::service_fn({
        let (activity, subject) = (opened.activity.clone(), opened.subject.clone());
        move |request| answer(service.clone(), request, activity.begin(), subject.clone())
    });
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .into_owned();
    let ended = opened
        .run(
            connection,
            |connection| connection.graceful_shutdown(),
            &limits,
        )
        .await;
    if let Some(Err(err)) = ended {
        tracing::debug!(peer = %opened.peer, error = %err, "http connection ended with an error");
    }
}

/// Answers one request, counted as a call in flight until its response body
/// has been sent.
async fn answer<S, B>(
    service: S,
    mut request: http::Request<Incoming>,
    call: CallGuard,
    subject: Option<PeerSubject>,
) -> Result<http::Response<TrackedBody<B>>, Infallible>
where
    S: tower::Service<http::Request<Incoming>, Response = http::Response<B>, Error = Infallible>,
{
    if let Some(subject) = subject {
        request.extensions_mut().insert(subject);
    }
    let Ok(response) = service.oneshot(request).await;
    Ok(response.map(|body| TrackedBody::new(body, call)))
}
