//! The TCP (and, with feature `tls`, TLS) connector that the HTTP and gRPC
//! transports' pooled clients dial with, for other HTTP clients of micro's
//! (the HTTP broker's deliveries) to dial the same way.

use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;

use crate::Error;

/// What the pooled clients connect through: `http://` over TCP, and with
/// feature `tls` also `https://` over TLS (ALPN choosing HTTP/2 or HTTP/1.1).
#[cfg(feature = "tls")]
pub type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
/// What the pooled clients connect through: `http://` over TCP.
#[cfg(not(feature = "tls"))]
pub type Connector = HttpConnector;

/// Which HTTP versions a client speaks over TLS.
#[derive(Debug, Clone, Copy)]
pub enum Versions {
    /// HTTP/1.1 and HTTP/2, as ALPN agrees.
    Both,
    /// HTTP/2 only (gRPC).
    Http2,
}

/// A connector with `connect_timeout` and Nagle's algorithm off. With TLS,
/// it also returns the error that settings which could not be loaded (an
/// unreadable CA file, say) give every `https` dial, so that building a
/// transport stays infallible and the error surfaces where TLS is used.
pub fn connector(
    connect_timeout: Duration,
    #[cfg(feature = "tls")] tls: &crate::tls::TlsConfig,
    #[cfg_attr(not(feature = "tls"), allow(unused_variables))] versions: Versions,
) -> (Connector, Option<Error>) {
    let mut tcp = HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(connect_timeout));
    #[cfg(feature = "tls")]
    {
        tcp.enforce_http(false);
        let (client_config, mut error) = match tls.client_config(&[]) {
            Ok(config) => ((*config).clone(), None),
            // Dials over TLS fail with `error` before this config is used.
            Err(error) => (unverifiable_config(), Some(error)),
        };
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(client_config)
            .https_or_http();
        let builder = match tls.server_name.as_deref().map(server_name) {
            None => builder,
            Some(Ok(name)) => {
                builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
            }
            Some(Err(invalid)) => {
                error.get_or_insert(invalid);
                builder
            }
        };
        let connector = match versions {
            Versions::Both => builder.enable_all_versions().wrap_connector(tcp),
            Versions::Http2 => builder.enable_http2().wrap_connector(tcp),
        };
        (connector, error)
    }
    #[cfg(not(feature = "tls"))]
    (tcp, None)
}

/// The name servers' certificates must carry, checked once.
#[cfg(feature = "tls")]
fn server_name(name: &str) -> crate::Result<rustls::pki_types::ServerName<'static>> {
    rustls::pki_types::ServerName::try_from(name.to_owned()).map_err(|err| {
        Error::invalid_argument(format!(
            "{}={name:?} is not a DNS name or IP address: {err}",
            crate::tls::SERVER_NAME_ENV
        ))
    })
}

/// A client configuration that trusts no server at all: what the connector
/// holds when the configured one could not be built (never used to connect).
#[cfg(feature = "tls")]
fn unverifiable_config() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map(|builder| {
        builder
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
    })
    .unwrap_or_else(|_| unreachable!("ring supports the default protocol versions"))
}

/// Splits `scheme://rest` off an address: whether it asks for TLS, and the
/// rest. `https://` (and `grpcs://`) ask for TLS; `http://`, `grpc://` and no
/// scheme do not. Without feature `tls`, asking for TLS is an error naming it.
pub fn split_scheme(address: &str) -> crate::Result<(bool, &str)> {
    let address = address.trim();
    for (prefix, tls) in [
        ("https://", true),
        ("grpcs://", true),
        ("http://", false),
        ("grpc://", false),
    ] {
        if let Some(rest) = address.strip_prefix(prefix) {
            if tls && !cfg!(feature = "tls") {
                return Err(Error::failed_precondition(format!(
                    "{address:?} asks for TLS, which this build of micro-transport lacks: enable its feature `tls` (micro: `tls`)"
                )));
            }
            return Ok((tls, rest));
        }
    }
    Ok((false, address))
}
