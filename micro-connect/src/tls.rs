//! TLS settings, the same for every system.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// TLS settings: which CA to trust, a client certificate for mutual TLS, and
/// the name the server's certificate must carry. Always rustls with the ring
/// provider.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsConfig {
    /// Refuse to connect without TLS (implied by any other field, and by a
    /// `tls://` or `https://` URL).
    pub required: bool,
    /// A PEM file of the CA certificates to trust, for a private CA.
    pub ca_file: Option<PathBuf>,
    /// A PEM client certificate for mutual TLS, with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// The name the server's certificate must carry, when it is not the
    /// host in the URL (connecting by IP address to a certificate for a name).
    pub server_name: Option<String>,
}

impl TlsConfig {
    /// Trusts the CA certificates in `path` (PEM); turns TLS on.
    pub fn with_ca(mut self, path: impl Into<PathBuf>) -> TlsConfig {
        self.ca_file = Some(path.into());
        self.required = true;
        self
    }

    /// Presents this client certificate and key (PEM) for mutual TLS; turns TLS on.
    pub fn with_client_cert(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> TlsConfig {
        self.cert_file = Some(cert.into());
        self.key_file = Some(key.into());
        self.required = true;
        self
    }

    /// Whether any setting asks for TLS.
    pub fn is_requested(&self) -> bool {
        self.required
            || self.ca_file.is_some()
            || self.cert_file.is_some()
            || self.key_file.is_some()
            || self.server_name.is_some()
    }

    pub(crate) fn read(reader: &mut crate::env::Reader<'_>) -> micro_core::Result<TlsConfig> {
        let mut tls = TlsConfig {
            required: false,
            ca_file: reader.path("TLS_CA", "tls.ca_file")?,
            cert_file: reader.path("TLS_CERT", "tls.cert_file")?,
            key_file: reader.path("TLS_KEY", "tls.key_file")?,
            server_name: reader.string("TLS_SERVER_NAME", "tls.server_name")?,
        };
        tls.required = tls.is_requested();
        Ok(tls)
    }

    /// Reads a PEM file named by `field`, naming the variable or field on failure.
    #[cfg(any(feature = "etcd", feature = "consul"))]
    pub(crate) fn read_pem(
        path: &std::path::Path,
        origins: &std::collections::BTreeMap<&'static str, String>,
        field: &'static str,
    ) -> micro_core::Result<Vec<u8>> {
        std::fs::read(path).map_err(|err| {
            micro_core::Error::invalid_argument(format!(
                "{}: cannot read {}: {err}",
                crate::env::label(origins, field),
                path.display()
            ))
            .with_source(err)
        })
    }
}
