use std::{
    fmt,
    task::{Context, Poll},
};

use futures::{FutureExt, future::BoxFuture};

use super::client::PooledClient;
use crate::{Error, Result};

/// A raw HTTP/2 client for gRPC requests, sharing its transport's
/// connections: one multiplexed connection per address.
///
/// A `tower::Service<http::Request<tonic::body::Body>>` taking requests with
/// absolute URIs (`http://127.0.0.1:50051/helloworld.Greeter/SayHello`);
/// micro's registry-aware gRPC channel sends through it. A connection that
/// cannot be made or breaks is an `Unavailable` error.
#[derive(Clone)]
pub struct GrpcHttpClient {
    client: PooledClient,
}

impl GrpcHttpClient {
    pub(super) fn new(client: PooledClient) -> GrpcHttpClient {
        GrpcHttpClient { client }
    }

    /// Sends one request to the address in its URI.
    pub async fn send(
        &self,
        request: ::http::Request<tonic::body::Body>,
    ) -> Result<::http::Response<tonic::body::Body>> {
        let authority = request
            .uri()
            .authority()
            .map(|authority| authority.to_string())
            .unwrap_or_default();
        let response = self.client.request(request).await.map_err(|err| {
            Error::unavailable(format!("calling grpc://{authority} failed")).with_source(err)
        })?;
        Ok(response.map(tonic::body::Body::new))
    }
}

impl tower::Service<::http::Request<tonic::body::Body>> for GrpcHttpClient {
    type Response = ::http::Response<tonic::body::Body>;
    type Error = Error;
    type Future = BoxFuture<'static, Result<Self::Response>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ::http::Request<tonic::body::Body>) -> Self::Future {
        let this = self.clone();
        async move { this.send(request).await }.boxed()
    }
}

impl fmt::Debug for GrpcHttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcHttpClient").finish_non_exhaustive()
    }
}
