//! The gRPC transport: micro handlers served as plain gRPC methods that any
//! gRPC client (grpcio, grpc-go, grpcurl, tonic) can call, on hyper's HTTP/2,
//! with tonic-generated services mountable beside them and the standard
//! health and reflection services built in.
//!
//! # Wire format
//!
//! | | |
//! |---|---|
//! | path | endpoint `Service.Method` is `/{package}.Service/Method`, the package from [`GrpcConfig::package`] (none by default: `/Service/Method`); an endpoint named in full (`pkg.v1.Greeter.Hello`) is `/pkg.v1.Greeter/Hello`. A server whose handler declares its endpoints ([`Handler::with_endpoints`], as micro's `Server` does) routes `/pkg.v1.Greeter/Hello` to the first it serves of `pkg.v1.Greeter.Hello`, the same without the server's own package, and `Greeter.Hello` (any package reaches a short name; two full names in different packages never collide); a method it does not serve is `UNIMPLEMENTED`. A handler that declares nothing gets the short name |
//! | content type | `application/grpc+json` is micro's `application/json`; `application/grpc+proto` and plain `application/grpc` are `application/protobuf`; any other `application/{subtype}` is `application/grpc+{subtype}` (`application/grpc+msgpack`, `application/grpc+octet-stream`). The bytes pass through unchanged: the codec is micro's, chosen by content type |
//! | messages | standard gRPC length-prefixed messages (one byte of flags, four of big-endian length, the payload); flag 1 is compressed with the body's `grpc-encoding`, any other reserved bit is `INTERNAL` |
//! | compression | `gzip` and `identity` are read both ways and advertised in `grpc-accept-encoding` on every request and response; another `grpc-encoding` is `UNIMPLEMENTED` (with `grpc-accept-encoding`). A server answers a gzip request with gzip, and with [`GrpcConfig::compression`] `gzip` compresses every answer to a caller that accepts it; a client with it compresses every request. A compressed message must fit [`GrpcConfig::max_message_size`] both as sent and as inflated: inflation stops at the limit (`RESOURCE_EXHAUSTED`), so a gzip bomb costs no more memory than the limit |
//! | `grpc-timeout` | the caller's remaining time, both ways the call's deadline; past it the call ends with `DEADLINE_EXCEEDED` and the handler is cancelled |
//! | metadata | custom headers both ways (names lower-case), as gRPC metadata |
//! | status | `grpc-status` and the percent-encoded `grpc-message` in the trailers, or alone in the headers (trailers-only) for a call that fails before its first message; every [`ErrorKind`](crate::ErrorKind) maps one for one onto a gRPC code and back ([`ErrorKind::grpc_code`](crate::ErrorKind::grpc_code)) |
//! | `micro-service` | the called service's name, when a micro client names one |
//! | `micro-body: stream` | sent by micro on a streamed request or response, so the other side hands over a stream at once; without it (a foreign peer) one message is a unary body and two or more are a stream |
//!
//! A message over [`GrpcConfig::max_message_size`] (4 MiB by default) is
//! `RESOURCE_EXHAUSTED`, judged from its length prefix before it is read, on
//! either side; a client refuses to send one.
//!
//! Client-, server- and bidirectional streaming are gRPC streams, with
//! HTTP/2 flow control carrying the back-pressure; dropping a response stream
//! resets the HTTP/2 stream, which drops the handler's stream on the server.
//!
//! # Mounted services, health and reflection
//!
//! [`GrpcTransportBuilder::add_service`] mounts any tonic-generated service
//! (`GreeterServer::new(my_greeter)`): a request whose gRPC service name it
//! serves goes to it, everything else to micro's handler. Every server also
//! answers `grpc.health.v1.Health`, unless turned off in the [`GrpcConfig`]:
//! the overall status `""`, the micro service's name, every gRPC service its
//! handler declares (bare, `Greeter`, and in the package, `shop.Greeter`) and
//! every mounted service are `SERVING` while it listens and `NOT_SERVING`
//! from the moment its shutdown begins (before the drain); an unknown name is
//! `NOT_FOUND`; see [`GrpcTransport::health_reporter`]. And server reflection
//! (v1 and v1alpha) describes the descriptor sets given to
//! [`GrpcTransportBuilder::file_descriptor_set`],
//! [`GrpcTransportBuilder::descriptor_set_file`] or [`DESCRIPTOR_SET_ENV`],
//! so `grpcurl list` and `describe` show the service's own methods; a lookup
//! that fails (an unknown symbol) answers with the protocol's
//! `ErrorResponse` and the stream stays open.
//!
//! ```
//! use micro_transport::{Handler, Request, Response, Transport, grpc::GrpcTransport};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> micro_transport::Result<()> {
//! let transport = GrpcTransport::builder().max_message_size(1024 * 1024).build()?;
//! let handler = Handler::from_fn(|request: Request| async move {
//!     Ok(Response::new(request.body).with_content_type(request.content_type))
//! });
//! let listener = transport.listen("127.0.0.1:0", handler).await?;
//! let channel = transport.dial(listener.address()).await?;
//! let response = channel.call_once(Request::new("Echo.Say", r#"{"text":"hi"}"#)).await?;
//! assert_eq!(response.body.into_bytes()?, r#"{"text":"hi"}"#);
//! listener.shutdown(std::time::Duration::from_secs(1)).await
//! # }
//! ```

mod client;
mod compression;
mod config;
mod frame;
mod http_client;
mod reflection;
mod server;
mod wire;

pub use wire::parse_timeout;

use std::{collections::HashMap, convert::Infallible, fmt, path::PathBuf, sync::Arc};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{FutureExt, future::BoxFuture};
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioTimer},
};
use tokio_util::sync::CancellationToken;
use tonic::{codec::CompressionEncoding, server::NamedService};
use tonic_health::{ServingStatus, server::HealthReporter};
use tower::util::BoxCloneSyncService;

use self::client::{GrpcChannel, PooledClient};
pub use self::compression::Compression;
pub use self::config::{
    COMPRESSION_ENV, DESCRIPTOR_SET_ENV, GrpcConfig, MAX_MESSAGE_SIZE_ENV, PACKAGE_ENV,
};
pub use self::http_client::GrpcHttpClient;
use crate::{Capabilities, Channel, Error, Handler, Listener, Result, Transport};

/// A mounted tonic service, type-erased.
type MountedService = BoxCloneSyncService<
    ::http::Request<tonic::body::Body>,
    ::http::Response<tonic::body::Body>,
    Infallible,
>;

/// The gRPC transport. Cheap to clone; clones share the client connections,
/// the mounted services and the health reporter.
#[derive(Clone)]
pub struct GrpcTransport {
    config: GrpcConfig,
    client: PooledClient,
    /// Why `https://` cannot be dialed (the TLS settings did not load): its
    /// kind and message, given to every such dial.
    tls_error: Option<(crate::ErrorKind, String)>,
    mounted: Arc<HashMap<String, MountedService>>,
    health: Option<HealthReporter>,
}

impl GrpcTransport {
    /// A transport with default settings: health and reflection on, no package.
    pub fn new() -> GrpcTransport {
        // The defaults mount only the built-in services, whose descriptors
        // always resolve, so building cannot fail.
        GrpcTransport::builder()
            .build()
            .unwrap_or_else(|_| GrpcTransport::bare(GrpcConfig::default()))
    }

    /// A transport with `config` and no mounted services.
    pub fn from_config(config: GrpcConfig) -> Result<GrpcTransport> {
        GrpcTransportBuilder {
            config,
            mounted: HashMap::new(),
            descriptor_sets: Vec::new(),
        }
        .build()
    }

    /// A transport from [`GrpcConfig::from_env`].
    pub fn from_env() -> Result<GrpcTransport> {
        GrpcTransport::from_config(GrpcConfig::from_env()?)
    }

    /// A builder, starting from the defaults.
    pub fn builder() -> GrpcTransportBuilder {
        GrpcTransportBuilder {
            config: GrpcConfig::default(),
            mounted: HashMap::new(),
            descriptor_sets: Vec::new(),
        }
    }

    fn bare(config: GrpcConfig) -> GrpcTransport {
        let (client, tls_error) = http2_client(&config);
        GrpcTransport {
            config,
            client,
            tls_error: tls_error.map(|error| (error.kind(), error.to_string())),
            mounted: Arc::new(HashMap::new()),
            health: None,
        }
    }

    /// This transport's settings.
    pub fn config(&self) -> &GrpcConfig {
        &self.config
    }

    /// The reporter behind the health service, to set the status of named
    /// services (`reporter.set_service_status("greeter", ServingStatus::Serving)`);
    /// `None` when health is off. The overall status `""` follows the
    /// listeners: `SERVING` once one listens, `NOT_SERVING` once one shuts down.
    pub fn health_reporter(&self) -> Option<&HealthReporter> {
        self.health.as_ref()
    }

    /// The names of the mounted gRPC services (health and reflection included).
    pub fn mounted_services(&self) -> impl Iterator<Item = &str> {
        self.mounted.keys().map(String::as_str)
    }

    /// A raw HTTP/2 client sharing this transport's connections, for
    /// tonic-generated clients (see [`GrpcHttpClient`]).
    pub fn http_client(&self) -> GrpcHttpClient {
        GrpcHttpClient::new(self.client.clone())
    }
}

impl Default for GrpcTransport {
    fn default() -> GrpcTransport {
        GrpcTransport::new()
    }
}

impl fmt::Debug for GrpcTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut mounted: Vec<&str> = self.mounted_services().collect();
        mounted.sort_unstable();
        f.debug_struct("GrpcTransport")
            .field("config", &self.config)
            .field("mounted", &mounted)
            .finish_non_exhaustive()
    }
}

/// The pooled HTTP/2 client, and why `https://` cannot be dialed when the
/// TLS settings did not load.
fn http2_client(config: &GrpcConfig) -> (PooledClient, Option<Error>) {
    let (connector, tls_error) = crate::connector::connector(
        config.connect_timeout,
        #[cfg(feature = "tls")]
        &config.tls,
        crate::connector::Versions::Http2,
    );
    let client = Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .http2_only(true)
        .build(connector);
    (client, tls_error)
}

/// Builds a [`GrpcTransport`]: settings ([`GrpcConfig`]), mounted tonic
/// services and descriptor sets for reflection.
///
/// ```
/// use micro_transport::grpc::GrpcTransport;
///
/// # fn main() -> micro_transport::Result<()> {
/// // Any tonic-generated server mounts the same way (`GreeterServer::new(greeter)`);
/// // here, a health service of one's own instead of the built-in one.
/// let (_reporter, health) = tonic_health::server::health_reporter();
/// let transport = GrpcTransport::builder()
///     .package("shop")
///     .health(false)
///     .add_service(health)
///     .build()?;
/// assert!(transport.mounted_services().any(|name| name == "grpc.health.v1.Health"));
/// # Ok(())
/// # }
/// ```
#[must_use]
pub struct GrpcTransportBuilder {
    config: GrpcConfig,
    mounted: HashMap<String, MountedService>,
    descriptor_sets: Vec<Bytes>,
}

impl GrpcTransportBuilder {
    /// Sets [`GrpcConfig::package`].
    pub fn package(mut self, package: impl Into<String>) -> GrpcTransportBuilder {
        self.config.package = package.into();
        self
    }

    /// Sets [`GrpcConfig::max_message_size`].
    pub fn max_message_size(mut self, bytes: usize) -> GrpcTransportBuilder {
        self.config.max_message_size = bytes;
        self
    }

    /// Sets [`GrpcConfig::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: std::time::Duration) -> GrpcTransportBuilder {
        self.config.connect_timeout = timeout;
        self
    }

    /// Sets [`GrpcConfig::health`].
    pub fn health(mut self, enabled: bool) -> GrpcTransportBuilder {
        self.config.health = enabled;
        self
    }

    /// Sets [`GrpcConfig::connections`]: how many connections a server
    /// allows, from whom, and for how long without a call.
    pub fn connection_limits(
        mut self,
        limits: crate::listen::ConnectionLimits,
    ) -> GrpcTransportBuilder {
        self.config.connections = limits;
        self
    }

    /// Sets [`GrpcConfig::tls`]: TLS for servers with a certificate, and
    /// what clients trust and present when they dial `https://`.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::tls::TlsConfig) -> GrpcTransportBuilder {
        self.config.tls = tls;
        self
    }

    /// Sets [`GrpcConfig::reflection`].
    pub fn reflection(mut self, enabled: bool) -> GrpcTransportBuilder {
        self.config.reflection = enabled;
        self
    }

    /// Sets [`GrpcConfig::compression`]: how this transport's clients
    /// compress requests and its servers compress answers to callers that
    /// accept it. gzip and identity are read either way.
    pub fn compression(mut self, compression: Compression) -> GrpcTransportBuilder {
        self.config.compression = compression;
        self
    }

    /// Adds a file holding an encoded `FileDescriptorSet` for server
    /// reflection to describe (see [`GrpcConfig::descriptor_set_files`]); it
    /// is read when the transport is built.
    pub fn descriptor_set_file(mut self, path: impl Into<PathBuf>) -> GrpcTransportBuilder {
        self.config.descriptor_set_files.push(path.into());
        self
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: GrpcConfig) -> GrpcTransportBuilder {
        self.config = config;
        self
    }

    /// Mounts a tonic-generated service (`GreeterServer::new(greeter)`, or any
    /// tower service of gRPC HTTP requests with a [`NamedService`] name)
    /// beside micro's handler on every server of this transport.
    pub fn add_service<S>(mut self, service: S) -> GrpcTransportBuilder
    where
        S: tower::Service<
                ::http::Request<tonic::body::Body>,
                Response = ::http::Response<tonic::body::Body>,
                Error = Infallible,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.mounted
            .insert(S::NAME.to_owned(), BoxCloneSyncService::new(service));
        self
    }

    /// Adds an encoded `FileDescriptorSet` (as `tonic-prost-build` writes with
    /// `file_descriptor_set_path`, or `protoc --descriptor_set_out
    /// --include_imports`) for server reflection to describe: with it,
    /// grpcurl's `list` and `describe` show the service's own methods.
    pub fn file_descriptor_set(mut self, encoded: impl Into<Bytes>) -> GrpcTransportBuilder {
        self.descriptor_sets.push(encoded.into());
        self
    }

    /// Builds the transport. A descriptor set reflection cannot read is
    /// `InvalidArgument`; a descriptor set file that cannot be opened is the
    /// I/O error's kind (`NotFound`, `PermissionDenied`, ...), naming the file.
    pub fn build(mut self) -> Result<GrpcTransport> {
        for path in &self.config.descriptor_set_files {
            let encoded = std::fs::read(path).map_err(|err| {
                Error::from(err).context(format!(
                    "reading the descriptor set {} for gRPC reflection",
                    path.display()
                ))
            })?;
            self.descriptor_sets.push(encoded.into());
        }
        let health = if self.config.health {
            let (reporter, service) = tonic_health::server::health_reporter();
            // Reads gzip like micro's handlers (a caller may compress a whole
            // channel), and compresses as the configuration says.
            let service = service.accept_compressed(CompressionEncoding::Gzip);
            self = match self.config.compression {
                Compression::Gzip => {
                    self.add_service(service.send_compressed(CompressionEncoding::Gzip))
                }
                Compression::Identity => self.add_service(service),
            };
            Some(reporter)
        } else {
            None
        };
        if self.config.reflection {
            self = self.add_reflection()?;
        }
        let mut transport = GrpcTransport::bare(self.config);
        transport.mounted = Arc::new(self.mounted);
        transport.health = health;
        Ok(transport)
    }

    fn add_reflection(self) -> Result<GrpcTransportBuilder> {
        fn configure(sets: &[Bytes]) -> tonic_reflection::server::Builder<'_> {
            let mut builder = tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
            for set in sets {
                builder = builder.register_encoded_file_descriptor_set(set);
            }
            builder
        }
        let invalid = |err: tonic_reflection::server::Error| {
            Error::invalid_argument("a file descriptor set for reflection is unreadable")
                .with_source(err)
        };
        let v1 = configure(&self.descriptor_sets)
            .build_v1()
            .map_err(invalid)?;
        let v1alpha = configure(&self.descriptor_sets)
            .build_v1alpha()
            .map_err(invalid)?;
        let compression = self.config.compression;
        Ok(self
            .add_service(reflection::v1::Forgiving::server(v1, compression))
            .add_service(reflection::v1alpha::Forgiving::server(v1alpha, compression)))
    }
}

impl fmt::Debug for GrpcTransportBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcTransportBuilder")
            .field("config", &self.config)
            .field("mounted", &self.mounted.keys().collect::<Vec<_>>())
            .field("descriptor_sets", &self.descriptor_sets.len())
            .finish()
    }
}

#[async_trait]
impl Transport for GrpcTransport {
    fn scheme(&self) -> &'static str {
        "grpc"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with_streaming(true)
            .with_max_body_size(Some(self.config.max_message_size))
    }

    /// Binds `address` (`host:port`; `""` is a free loopback port, `:port` is
    /// every interface) and serves `handler` there over HTTP/2.
    async fn listen(&self, address: &str, handler: Handler) -> Result<Listener> {
        let health_names = self.health_names(&handler);
        let state = server::ServerState {
            handler,
            max_message_size: self.config.max_message_size,
            package: self.config.package.clone(),
            compression: self.config.compression,
            mounted: self.mounted.clone(),
            cancel: CancellationToken::new(),
            limits: self.config.connections.clone(),
            #[cfg(feature = "tls")]
            tls: crate::listen::ListenerTls::rustls(self.config.tls.server_config(&[b"h2"])?),
            #[cfg(not(feature = "tls"))]
            tls: crate::listen::ListenerTls::none(),
        };
        let health = self.health.clone();
        let listener = server::listen(address, state, {
            let health = health.clone();
            let names = health_names.clone();
            move || set_statuses(health, names, ServingStatus::NotServing)
        })
        .await?;
        set_statuses(health, health_names, ServingStatus::Serving).await;
        Ok(listener)
    }

    /// Returns a channel to `address` (`host:port`, optionally `grpc://` or
    /// `http://host:port`). The connection opens on the first call, so an
    /// unreachable address is an `Unavailable` error from that call.
    async fn dial(&self, address: &str) -> Result<Channel> {
        let (tls, bare) = crate::connector::split_scheme(address)?;
        if let (true, Some((kind, message))) = (tls, &self.tls_error) {
            return Err(Error::new(*kind, format!("dialing {address}: {message}")));
        }
        let authority = parse_authority(bare)?;
        Ok(Channel::new(GrpcChannel::new(
            self.client.clone(),
            authority,
            tls,
            self.config.package.clone(),
            self.config.max_message_size,
            self.config.compression,
        )))
    }
}

impl GrpcTransport {
    /// The names health reports for a server of `handler`: the overall `""`,
    /// the mounted services, and, when the handler declares its endpoints,
    /// the micro service's name and the gRPC service of every endpoint, bare
    /// (`Greeter`, `pkg.v1.Greeter`) and in the configured package.
    fn health_names(&self, handler: &Handler) -> Vec<String> {
        let mut names = vec![String::new()];
        names.extend(self.mounted.keys().cloned());
        if let Some(endpoints) = handler.endpoints() {
            if !endpoints.service().is_empty() {
                names.push(endpoints.service().to_owned());
            }
            for endpoint in endpoints.iter() {
                let Some((service, _method)) = endpoint.rsplit_once('.') else {
                    continue;
                };
                names.push(service.to_owned());
                if !self.config.package.is_empty() {
                    names.push(format!("{}.{service}", self.config.package));
                }
            }
        }
        names.sort_unstable();
        names.dedup();
        names
    }
}

/// Sets every name's health status (nothing when health is off).
fn set_statuses(
    health: Option<HealthReporter>,
    names: Vec<String>,
    status: ServingStatus,
) -> BoxFuture<'static, ()> {
    async move {
        if let Some(health) = health {
            for name in &names {
                health.set_service_status(name, status).await;
            }
        }
    }
    .boxed()
}

/// The `host:port` of an address, refusing anything else.
pub(crate) fn parse_authority(address: &str) -> Result<::http::uri::Authority> {
    let address = address.trim();
    let (_tls, bare) = crate::connector::split_scheme(address)?;
    let invalid = || Error::invalid_argument(format!("{address:?} is not a host:port address"));
    if bare.is_empty() || bare.contains(['/', '?', '#', '@']) {
        return Err(invalid());
    }
    bare.parse::<::http::uri::Authority>()
        .map_err(|err| invalid().with_source(err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn builds_outside_a_runtime_with_health_and_reflection() {
        let transport = GrpcTransport::new();
        let mut names: Vec<&str> = transport.mounted_services().collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection"
            ]
        );
        assert!(transport.capabilities().streaming);
        let bare = GrpcTransport::builder()
            .health(false)
            .reflection(false)
            .build()
            .unwrap();
        assert_eq!(bare.mounted_services().count(), 0);
        assert!(bare.health_reporter().is_none());
    }

    #[test]
    fn unreadable_descriptor_sets_are_invalid_argument() {
        let err = GrpcTransport::builder()
            .file_descriptor_set(&b"\xff\xff not a descriptor set"[..])
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    }

    #[test]
    fn addresses_that_are_not_host_and_port_are_invalid_argument() {
        for address in [
            "",
            "127.0.0.1:1/path",
            "127.0.0.1:1?q",
            "not an address",
            "a@b:1",
        ] {
            let err = parse_authority(address).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{address}");
        }
        assert!(parse_authority("grpc://127.0.0.1:1").is_ok());
        assert!(parse_authority("127.0.0.1:50051").is_ok());
    }
}
