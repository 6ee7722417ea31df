//! The peer: the same handler served by plain axum, called by a plain hyper client.

use std::net::SocketAddr;

use axum::{Json, Router, routing::post, serve::ListenerExt};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

use crate::{EchoReply, EchoRequest, echo};

/// Serves `POST /Bench.Echo` with axum on a free loopback port, with Nagle's
/// algorithm off as micro's server has it, so that both servers send alike.
pub(crate) async fn serve() -> std::io::Result<SocketAddr> {
    let app = Router::new().route(
        "/Bench.Echo",
        post(|Json(request): Json<EchoRequest>| async move { Json::<EchoReply>(echo(request)) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let listener = listener.tap_io(|stream| {
        // A failure only leaves Nagle on; the bench still runs.
        let _ = stream.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(address)
}

/// A keep-alive HTTP/1.1 client for the axum peer, doing the same JSON work micro's client does.
#[derive(Clone)]
pub(crate) struct AxumClient {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: http::Uri,
}

impl AxumClient {
    pub(crate) fn new(address: SocketAddr) -> Result<AxumClient, http::uri::InvalidUri> {
        // Nagle off, as micro's client connector has it.
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let uri = format!("http://{address}/Bench.Echo").parse()?;
        Ok(AxumClient { client, uri })
    }

    /// One call; `true` when it succeeded with the expected reply.
    pub(crate) async fn call(&self, request: &EchoRequest) -> bool {
        let Ok(body) = serde_json::to_vec(request) else {
            return false;
        };
        let Ok(http_request) = http::Request::post(self.uri.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
        else {
            return false;
        };
        let Ok(response) = self.client.request(http_request).await else {
            return false;
        };
        if !response.status().is_success() {
            return false;
        }
        let Ok(collected) = response.into_body().collect().await else {
            return false;
        };
        serde_json::from_slice::<EchoReply>(&collected.to_bytes())
            .is_ok_and(|reply| reply.id == request.id)
    }
}
