//! Server reflection (v1 and v1alpha) that answers a failed lookup with the
//! protocol's `ErrorResponse` and keeps the stream open.
//!
//! tonic-reflection describes the descriptor sets, but ends the whole stream
//! with a status when one lookup fails (an unknown symbol is `NOT_FOUND`),
//! which breaks clients that resolve many symbols over one stream
//! (grpcio-reflection's descriptor pool, grpcurl). So each request goes to
//! tonic-reflection's service on its own, in-process, and a failure becomes
//! that request's `ErrorResponse`.

use std::convert::Infallible;

use futures::{StreamExt, stream::BoxStream};
use tonic::codec::CompressionEncoding;

use super::Compression;

/// What the wrapper needs of tonic-reflection's server: an in-process HTTP
/// service it can clone and call once per reflection request.
pub(super) trait ReflectionServer:
    tower::Service<
        ::http::Request<tonic::body::Body>,
        Response = ::http::Response<tonic::body::Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> ReflectionServer for S where
    S: tower::Service<
            ::http::Request<tonic::body::Body>,
            Response = ::http::Response<tonic::body::Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// Both versions share one shape; only the generated types differ.
macro_rules! forgiving_reflection {
    ($version:ident) => {
        pub(super) mod $version {
            use super::*;
            use tonic_reflection::pb::$version::{
                ErrorResponse, ServerReflectionRequest, ServerReflectionResponse,
                server_reflection_client::ServerReflectionClient,
                server_reflection_response::MessageResponse,
                server_reflection_server::{ServerReflection, ServerReflectionServer},
            };

            /// Reflection that answers each request through `inner`, a
            /// tonic-reflection server.
            pub(in super::super) struct Forgiving<S> {
                inner: ServerReflectionClient<S>,
            }

            impl<S> Forgiving<S>
            where
                S: ReflectionServer,
            {
                /// Wraps tonic-reflection's server in one that keeps streams
                /// open, reads gzip and compresses as `compression` says.
                pub(in super::super) fn server(
                    inner: S,
                    compression: Compression,
                ) -> ServerReflectionServer<Forgiving<S>> {
                    let server = ServerReflectionServer::new(Forgiving {
                        inner: ServerReflectionClient::new(inner),
                    })
                    .accept_compressed(CompressionEncoding::Gzip);
                    match compression {
                        Compression::Gzip => server.send_compressed(CompressionEncoding::Gzip),
                        Compression::Identity => server,
                    }
                }
            }

            /// The answer to one request: tonic-reflection's, or its failure
            /// as an `ErrorResponse`.
            async fn answer<S>(
                mut client: ServerReflectionClient<S>,
                request: ServerReflectionRequest,
            ) -> ServerReflectionResponse
            where
                S: ReflectionServer,
            {
                let outcome = match client
                    .server_reflection_info(futures::stream::iter([request.clone()]))
                    .await
                {
                    Ok(responses) => responses.into_inner().message().await,
                    Err(status) => Err(status),
                };
                let status = match outcome {
                    Ok(Some(response)) => return response,
                    Ok(None) => tonic::Status::internal("reflection gave no answer"),
                    Err(status) => status,
                };
                ServerReflectionResponse {
                    valid_host: request.host.clone(),
                    original_request: Some(request),
                    message_response: Some(MessageResponse::ErrorResponse(ErrorResponse {
                        error_code: status.code() as i32,
                        error_message: status.message().to_owned(),
                    })),
                }
            }

            #[tonic::async_trait]
            impl<S> ServerReflection for Forgiving<S>
            where
                S: ReflectionServer,
            {
                type ServerReflectionInfoStream =
                    BoxStream<'static, Result<ServerReflectionResponse, tonic::Status>>;

                async fn server_reflection_info(
                    &self,
                    request: tonic::Request<tonic::Streaming<ServerReflectionRequest>>,
                ) -> Result<tonic::Response<Self::ServerReflectionInfoStream>, tonic::Status>
                {
                    let client = self.inner.clone();
                    let answers = request.into_inner().then(move |request| {
                        let client = client.clone();
                        async move {
                            match request {
                                Ok(request) => Ok(answer(client, request).await),
                                Err(status) => Err(status),
                            }
                        }
                    });
                    Ok(tonic::Response::new(answers.boxed()))
                }
            }
        }
    };
}

forgiving_reflection!(v1);
forgiving_reflection!(v1alpha);
