//! TLS and mutual TLS for the HTTP and gRPC transports (feature `tls`):
//! rustls with the ring provider, no OpenSSL.
//!
//! One [`TlsConfig`] describes both sides of a process, as services are both:
//!
//! - **as a server**, it serves TLS when it has a certificate and key
//!   ([`TlsConfig::cert_file`], [`TlsConfig::key_file`]); with a client CA
//!   ([`TlsConfig::client_ca_file`]) it asks every client for a certificate
//!   signed by that CA and refuses those without one (mutual TLS). The
//!   certificate and key are re-read when their files change, so a rotated
//!   certificate is served without a restart; connections already open keep
//!   theirs.
//! - **as a client**, it verifies servers against [`TlsConfig::ca_file`] (or,
//!   without one, the system's roots), always checks the name the server's
//!   certificate carries (the host dialed, or [`TlsConfig::server_name`]),
//!   and presents its own certificate when a server asks for one.
//!
//! Nothing here skips verification: there is no "insecure" switch. A service
//! that serves TLS registers so, and clients dial it over TLS unasked.
//!
//! ```
//! use micro_transport::tls::TlsConfig;
//!
//! let tls = TlsConfig::default()
//!     .with_identity("certs/server.pem", "certs/server-key.pem")
//!     .with_ca("certs/ca.pem");
//! assert!(tls.serves_tls());
//! ```

mod pem;
mod reload;

use std::{path::PathBuf, sync::Arc};

use rustls::{
    ClientConfig, RootCertStore, ServerConfig, crypto::CryptoProvider, server::WebPkiClientVerifier,
};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// This process's certificate (PEM), served and presented to servers that ask.
pub const CERT_ENV: &str = "MICRO_TLS_CERT";
/// The private key (PEM) of [`CERT_ENV`].
pub const KEY_ENV: &str = "MICRO_TLS_KEY";
/// The CA certificates (PEM) servers are verified against.
pub const CA_ENV: &str = "MICRO_TLS_CA";
/// The CA certificates (PEM) client certificates must chain to; turns mutual TLS on.
pub const CLIENT_CA_ENV: &str = "MICRO_TLS_CLIENT_CA";
/// The name servers' certificates must carry, when not the host dialed.
pub const SERVER_NAME_ENV: &str = "MICRO_TLS_SERVER_NAME";

/// TLS settings of a transport, for its servers and its clients alike; see
/// the [module documentation](self).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsConfig {
    /// This process's certificate chain (PEM): served by its servers, and
    /// presented by its clients to servers that ask for one.
    pub cert_file: Option<PathBuf>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// The CA certificates (PEM) that servers' certificates must chain to.
    /// Default: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// The CA certificates (PEM) that clients' certificates must chain to.
    /// When set, servers refuse clients without such a certificate.
    pub client_ca_file: Option<PathBuf>,
    /// The name a server's certificate must carry, when it is not the host
    /// dialed (dialing an IP address a certificate does not name).
    pub server_name: Option<String>,
}

impl TlsConfig {
    /// Serves (and presents) this certificate chain and key, both PEM files.
    pub fn with_identity(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> TlsConfig {
        self.cert_file = Some(cert.into());
        self.key_file = Some(key.into());
        self
    }

    /// Verifies servers against the CA certificates in `path` (PEM).
    pub fn with_ca(mut self, path: impl Into<PathBuf>) -> TlsConfig {
        self.ca_file = Some(path.into());
        self
    }

    /// Requires clients to present a certificate chaining to the CA
    /// certificates in `path` (PEM): mutual TLS.
    pub fn with_client_ca(mut self, path: impl Into<PathBuf>) -> TlsConfig {
        self.client_ca_file = Some(path.into());
        self
    }

    /// Checks that servers' certificates carry `name`.
    pub fn with_server_name(mut self, name: impl Into<String>) -> TlsConfig {
        self.server_name = Some(name.into());
        self
    }

    /// Whether servers with these settings serve TLS (a certificate is set).
    pub fn serves_tls(&self) -> bool {
        self.cert_file.is_some() || self.key_file.is_some()
    }

    /// The settings from [`CERT_ENV`], [`KEY_ENV`], [`CA_ENV`],
    /// [`CLIENT_CA_ENV`] and [`SERVER_NAME_ENV`]; unset ones stay unset.
    pub fn from_env() -> Result<TlsConfig> {
        TlsConfig::from_lookup(|name| micro_core::env::var(name).ok().flatten())
    }

    /// Like [`from_env`](TlsConfig::from_env), reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<TlsConfig> {
        let read = |name: &str| {
            lookup(name)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        Ok(TlsConfig {
            cert_file: read(CERT_ENV).map(PathBuf::from),
            key_file: read(KEY_ENV).map(PathBuf::from),
            ca_file: read(CA_ENV).map(PathBuf::from),
            client_ca_file: read(CLIENT_CA_ENV).map(PathBuf::from),
            server_name: read(SERVER_NAME_ENV),
        })
    }

    /// The rustls configuration of a server offering `alpn` protocols, or
    /// `None` when no certificate is set. A certificate without a key (or the
    /// reverse), or a file that cannot be read or holds no usable PEM, is
    /// `InvalidArgument` naming the file.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Option<Arc<ServerConfig>>> {
        let (cert_file, key_file) = match (&self.cert_file, &self.key_file) {
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (cert, key),
            _ => {
                return Err(Error::invalid_argument(format!(
                    "TLS needs both a certificate and its key ({CERT_ENV} and {KEY_ENV})"
                )));
            }
        };
        let provider = ring_provider();
        let resolver = reload::ReloadingCert::load(cert_file, key_file, provider.clone())?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(tls_setup_error)?;
        let builder = match &self.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(client_ca) => {
                let roots = pem::roots(client_ca)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|err| {
                            Error::invalid_argument(format!(
                                "{}: not usable as a client CA: {err}",
                                client_ca.display()
                            ))
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Ok(Some(Arc::new(config)))
    }

    /// The rustls configuration of a client offering `alpn` protocols:
    /// servers verified against the CA file or the system's roots, this
    /// process's certificate presented when a server asks for one.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>> {
        let roots = match &self.ca_file {
            Some(ca) => pem::roots(ca)?,
            None => system_roots()?,
        };
        let builder = ClientConfig::builder_with_provider(ring_provider())
            .with_safe_default_protocol_versions()
            .map_err(tls_setup_error)?
            .with_root_certificates(roots);
        let mut config = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(pem::certificates(cert)?, pem::private_key(key)?)
                .map_err(|err| {
                    Error::invalid_argument(format!(
                        "{} and {}: not a usable certificate and key: {err}",
                        cert.display(),
                        key.display()
                    ))
                })?,
            _ => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_setup_error(err: rustls::Error) -> Error {
    Error::internal("setting up TLS failed").with_source(err)
}

/// The system's trusted roots; none found is an error, not an empty store
/// that would refuse every server with a misleading message.
fn system_roots() -> Result<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(Error::failed_precondition(format!(
            "no system CA certificates were found; set {CA_ENV} to the CA that signed the servers' certificates"
        )));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::ErrorKind;

    #[test]
    fn reads_the_environment() {
        let vars = HashMap::from([
            (CERT_ENV, "/certs/me.pem"),
            (KEY_ENV, " /certs/me-key.pem "),
            (CA_ENV, "/certs/ca.pem"),
            (CLIENT_CA_ENV, ""),
        ]);
        let tls = TlsConfig::from_lookup(|name| vars.get(name).map(|v| v.to_string())).unwrap();
        assert_eq!(
            tls,
            TlsConfig::default()
                .with_identity("/certs/me.pem", "/certs/me-key.pem")
                .with_ca("/certs/ca.pem")
        );
        assert!(tls.serves_tls());
        assert!(!TlsConfig::default().serves_tls());
    }

    #[test]
    fn a_certificate_without_its_key_is_refused() {
        let tls = TlsConfig {
            cert_file: Some("/certs/me.pem".into()),
            ..TlsConfig::default()
        };
        let err = tls.server_config(&[b"h2"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.to_string().contains(KEY_ENV), "{err}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let tls = TlsConfig::default().with_identity("/nonexistent/me.pem", "/nonexistent/key.pem");
        let err = tls.server_config(&[b"h2"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.to_string().contains("/nonexistent/me.pem"), "{err}");
        assert!(
            TlsConfig::default()
                .server_config(&[b"h2"])
                .unwrap()
                .is_none()
        );
    }
}
