//! The HTTP transport: plain JSON-over-HTTP (or any codec's content type) on
//! hyper 1, that curl and any HTTP client can call.
//!
//! The server speaks HTTP/1.1 and HTTP/2 over cleartext (h2c) on the same
//! port; the client keeps a pool of HTTP/1.1 keep-alive connections per
//! address (or one multiplexed h2c connection, with
//! [`HttpTransportBuilder::http2_prior_knowledge`]).
//!
//! # Wire format
//!
//! A unary call:
//!
//! | | |
//! |---|---|
//! | request | `POST /{endpoint}`, e.g. `POST /Greeter.Hello`; `POST /{service}/{endpoint}` is accepted too |
//! | request body | the encoded request message, as is |
//! | `Content-Type` | the codec's content type, both ways; a request without one is taken as `application/json` |
//! | `micro-service` | the called service's name, when the caller names one ([`SERVICE_HEADER`]) |
//! | `micro-timeout` | the time the caller still waits, a humantime duration such as `250ms` or `1.5s` ([`micro_core::duration`], the grammar of every configured duration; [`TIMEOUT_HEADER`]). The server fails the call with 504 `deadline_exceeded` when it runs out |
//! | `micro-body` | `stream` when the body is a stream of frames, both ways (see [Streams](#streams)) |
//! | other headers | the call's metadata, both ways (names lower-cased; repeated headers joined with `", "`) |
//! | success | `200` with the encoded response message |
//! | failure | the kind's HTTP status ([`ErrorKind::http_status`](crate::ErrorKind::http_status)) and the JSON body `{"code":"not_found","message":"..."}`, code being [`ErrorKind::as_str`](crate::ErrorKind::as_str) |
//! | body too large | `413` with code `resource_exhausted`, judged from `Content-Length` before any of the body is read |
//! | not `POST` | `405` with code `unimplemented` and `Allow: POST` |
//!
//! Headers that describe the exchange rather than the call never become
//! metadata: `accept`, `accept-encoding`, `connection`, `content-encoding`,
//! `content-length`, `content-type`, `date`, `expect`, `host`,
//! `http2-settings`, `keep-alive`, `proxy-connection`, `server`, `te`,
//! `trailer`, `transfer-encoding`, `upgrade`, `user-agent` and the three
//! `micro-` headers above.
//!
//! A client maps an error response back into an [`Error`] of
//! the same kind; when the body is not micro's, the kind follows the status
//! ([`ErrorKind::from_http_status`](crate::ErrorKind::from_http_status)). A
//! refused or broken connection is `Unavailable`; a call past its deadline is
//! `Timeout` on the client as well as on the server.
//!
//! # Streams
//!
//! A streamed body (client, server or bidirectional streaming) is marked with
//! the header `micro-body: stream` ([`BODY_HEADER`]) and carries one frame per
//! message: one byte of kind, four bytes of big-endian length, then the
//! payload. Kind 0 is a message; kind 1 is an error whose payload is the JSON
//! error body and which ends the stream; the end of the HTTP body ends the
//! stream. Over HTTP/1.1 the body is chunked, over h2c it is a sequence of
//! DATA frames; either way HTTP's flow control carries the back-pressure,
//! since frames are written only as fast as the receiver pulls messages.
//! Each message is held to the maximum body size, judged from its frame
//! header before its payload is read. Dropping a response stream closes its
//! HTTP stream, which drops the handler's stream on the server.
//!
//! ```no_run
//! use micro_transport::{Handler, Request, Response, Transport, http::HttpTransport};
//!
//! # async fn run() -> micro_transport::Result<()> {
//! let transport = HttpTransport::builder().max_body_size(1024 * 1024).build();
//! let handler = Handler::from_fn(|request: Request| async move { Ok(Response::new(request.body)) });
//! let listener = transport.listen("127.0.0.1:8080", handler).await?;
//! // curl -H 'Content-Type: application/json' -d '{"name":"Ada"}' http://127.0.0.1:8080/Greeter.Hello
//! # Ok(())
//! # }
//! ```

mod client;
mod config;
mod server;
mod stream;
mod wire;

use std::fmt;

use async_trait::async_trait;
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioTimer},
};

use self::client::{HttpChannel, PooledClient};
pub use self::config::HttpConfig;
pub use self::wire::{BODY_HEADER, SERVICE_HEADER, TIMEOUT_HEADER};
use crate::{
    Capabilities, Channel, Error, Handler, Listener, Result, Transport,
    connector::{Versions, connector, split_scheme},
};

/// The HTTP transport. Cheap to clone; clones share the client connection pool.
#[derive(Clone)]
pub struct HttpTransport {
    config: HttpConfig,
    client: PooledClient,
    /// Why `https://` cannot be dialed (the TLS settings did not load):
    /// its kind and message, given to every such dial.
    tls_error: Option<(crate::ErrorKind, String)>,
}

impl HttpTransport {
    /// A transport with default settings.
    pub fn new() -> HttpTransport {
        HttpTransport::from_config(HttpConfig::default())
    }

    /// A transport with `config`.
    pub fn from_config(config: HttpConfig) -> HttpTransport {
        let (connector, tls_error) = connector(
            config.connect_timeout,
            #[cfg(feature = "tls")]
            &config.tls,
            Versions::Both,
        );
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .http2_only(config.http2_prior_knowledge)
            .build(connector);
        HttpTransport {
            config,
            client,
            tls_error: tls_error.map(|error| (error.kind(), error.to_string())),
        }
    }

    /// A builder, starting from the defaults.
    pub fn builder() -> HttpTransportBuilder {
        HttpTransportBuilder {
            config: HttpConfig::default(),
        }
    }

    /// This transport's settings.
    pub fn config(&self) -> &HttpConfig {
        &self.config
    }
}

impl Default for HttpTransport {
    fn default() -> HttpTransport {
        HttpTransport::new()
    }
}

impl fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpTransport")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Builds an [`HttpTransport`]; every setting is a field of [`HttpConfig`].
///
/// ```
/// use std::time::Duration;
/// use micro_transport::{Transport, http::HttpTransport};
///
/// let transport = HttpTransport::builder()
///     .max_body_size(1024 * 1024)
///     .connect_timeout(Duration::from_secs(1))
///     .build();
/// assert_eq!(transport.capabilities().max_body_size, Some(1024 * 1024));
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct HttpTransportBuilder {
    config: HttpConfig,
}

impl HttpTransportBuilder {
    /// Sets [`HttpConfig::max_body_size`].
    pub fn max_body_size(mut self, bytes: usize) -> HttpTransportBuilder {
        self.config.max_body_size = bytes;
        self
    }

    /// Sets [`HttpConfig::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: std::time::Duration) -> HttpTransportBuilder {
        self.config.connect_timeout = timeout;
        self
    }

    /// Sets [`HttpConfig::pool_idle_timeout`].
    pub fn pool_idle_timeout(mut self, timeout: std::time::Duration) -> HttpTransportBuilder {
        self.config.pool_idle_timeout = timeout;
        self
    }

    /// Sets [`HttpConfig::pool_max_idle_per_host`].
    pub fn pool_max_idle_per_host(mut self, connections: usize) -> HttpTransportBuilder {
        self.config.pool_max_idle_per_host = connections;
        self
    }

    /// Sets [`HttpConfig::http2_prior_knowledge`].
    pub fn http2_prior_knowledge(mut self, enabled: bool) -> HttpTransportBuilder {
        self.config.http2_prior_knowledge = enabled;
        self
    }

    /// Sets [`HttpConfig::connections`]: how many connections a server
    /// allows, from whom, and for how long without a call.
    pub fn connection_limits(
        mut self,
        limits: crate::listen::ConnectionLimits,
    ) -> HttpTransportBuilder {
        self.config.connections = limits;
        self
    }

    /// Sets [`HttpConfig::tls`]: TLS for servers with a certificate, and
    /// what clients trust and present when they dial `https://`.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::tls::TlsConfig) -> HttpTransportBuilder {
        self.config.tls = tls;
        self
    }

    /// Builds the transport.
    pub fn build(self) -> HttpTransport {
        HttpTransport::from_config(self.config)
    }
}

#[async_trait]
impl Transport for HttpTransport {
    fn scheme(&self) -> &'static str {
        "http"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with_streaming(true)
            .with_max_body_size(Some(self.config.max_body_size))
    }

    /// Binds `address` (`host:port`; `""` is a free loopback port, `:port` is
    /// every interface) and serves `handler` there.
    async fn listen(&self, address: &str, handler: Handler) -> Result<Listener> {
        #[cfg(feature = "tls")]
        let tls = crate::listen::ListenerTls::rustls(
            self.config.tls.server_config(&[b"h2", b"http/1.1"])?,
        );
        #[cfg(not(feature = "tls"))]
        let tls = crate::listen::ListenerTls::none();
        server::listen(
            address,
            handler,
            self.config.max_body_size,
            self.config.connections.clone(),
            tls,
        )
        .await
    }

    /// Returns a channel to `address` (`host:port`, optionally `http://host:port`,
    /// or `https://host:port` for TLS with feature `tls`). Connections open
    /// on the first call, so an unreachable address is an `Unavailable` error
    /// from that call.
    async fn dial(&self, address: &str) -> Result<Channel> {
        let (tls, address) = split_scheme(address)?;
        if let (true, Some((kind, message))) = (tls, &self.tls_error) {
            return Err(Error::new(
                *kind,
                format!("dialing https://{address}: {message}"),
            ));
        }
        let base = format!("{}://{address}", if tls { "https" } else { "http" });
        let parsed: ::http::Uri = base.parse().map_err(|err| {
            Error::invalid_argument(format!("{address:?} is not a host:port address"))
                .with_source(err)
        })?;
        let authority = match parsed.authority() {
            Some(authority)
                if !address.is_empty()
                    && parsed.path() == "/"
                    && parsed.query().is_none()
                    && !base.ends_with('/') =>
            {
                authority.clone()
            }
            _ => {
                return Err(Error::invalid_argument(format!(
                    "{address:?} is not a host:port address"
                )));
            }
        };
        Ok(Channel::new(HttpChannel::new(
            self.client.clone(),
            base,
            authority,
            tls,
            self.config.max_body_size,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorKind, Request, Response};

    mod conformance {
        use super::*;

        crate::transport_conformance_tests!(HttpTransport::new(), "127.0.0.1:0");
    }

    mod h2c_conformance {
        use super::*;

        crate::transport_conformance_tests!(
            HttpTransport::builder().http2_prior_knowledge(true).build(),
            "127.0.0.1:0"
        );
    }

    #[test]
    fn builds_outside_a_runtime() {
        let transport = HttpTransport::builder().max_body_size(10).build();
        assert_eq!(transport.config().max_body_size, 10);
        assert!(transport.capabilities().streaming);
    }

    #[tokio::test]
    async fn addresses_that_are_not_host_and_port_are_invalid_argument() {
        let transport = HttpTransport::new();
        for address in [
            "",
            "127.0.0.1:1/path",
            "127.0.0.1:1?q",
            "not an address",
            "127.0.0.1:1/",
        ] {
            let err = transport.dial(address).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{address}");
        }
        assert!(transport.dial("http://127.0.0.1:1").await.is_ok());
    }

    #[tokio::test]
    async fn endpoints_that_cannot_be_a_path_segment_are_invalid_argument() {
        let transport = HttpTransport::new();
        let handler = Handler::from_fn(|_request: Request| async { Ok(Response::new("")) });
        let listener = transport.listen("127.0.0.1:0", handler).await.unwrap();
        let channel = transport.dial(listener.address()).await.unwrap();
        for endpoint in ["", "a/b", "a?b", "a#b", "a b", "a%2Fb"] {
            let err = channel
                .call_once(Request::new(endpoint, ""))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{endpoint}");
        }
        listener.shutdown(std::time::Duration::ZERO).await.unwrap();
    }
}
