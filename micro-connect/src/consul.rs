//! Consul: one [`ConsulConfig`], read from `MICRO_CONSUL_*` (see the
//! [crate documentation](crate) for the grammar), and
//! [`ConsulConfig::http_client`], a client that sends the ACL token as
//! `X-Consul-Token` with every request.
//!
//! Consul's own `CONSUL_HTTP_ADDR` and `CONSUL_HTTP_TOKEN` are read last, so
//! a shell set up for the `consul` CLI works as it is.
//!
//! ```
//! use micro_connect::{Block, Lookup, consul::ConsulConfig};
//!
//! let lookup = Lookup::from_fn(|name| match name {
//!     "CONSUL_HTTP_ADDR" => Some("10.0.0.5:8500".to_owned()),
//!     "MICRO_CONFIG_CONSUL_TOKEN" => Some("config-token".to_owned()),
//!     _ => None,
//! });
//! let config = ConsulConfig::from_lookup(Some(Block::Config), &lookup).unwrap();
//! assert_eq!(config.address, "http://10.0.0.5:8500");
//! assert_eq!(config.token.as_deref(), Some("config-token"));
//! ```

use std::time::Duration;

use micro_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::{
    Block, Lookup, TlsConfig,
    env::{Origins, Reader},
};

/// The ACL token header.
pub const TOKEN_HEADER: &str = "X-Consul-Token";

/// How to reach a Consul agent; every field has a default.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ConsulConfig {
    /// The agent's HTTP address. Default: `http://127.0.0.1:8500`.
    pub address: String,
    /// The ACL token, sent as `X-Consul-Token`.
    pub token: Option<String>,
    /// TLS settings for an `https://` agent (`server_name` is not supported).
    pub tls: TlsConfig,
    /// How long opening a connection may take. Default: 5 seconds.
    #[serde(with = "micro_core::duration::serde")]
    pub connect_timeout: Duration,
    #[serde(skip)]
    origins: Origins,
}

impl std::fmt::Debug for ConsulConfig {
    /// Everything but the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsulConfig")
            .field("address", &self.address)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl Default for ConsulConfig {
    fn default() -> ConsulConfig {
        ConsulConfig {
            address: ConsulConfig::DEFAULT_ADDRESS.to_owned(),
            token: None,
            tls: TlsConfig::default(),
            connect_timeout: Duration::from_secs(5),
            origins: Origins::default(),
        }
    }
}

impl ConsulConfig {
    /// The default agent address.
    pub const DEFAULT_ADDRESS: &'static str = "http://127.0.0.1:8500";

    /// Starts a config at the defaults.
    pub fn builder() -> ConsulConfigBuilder {
        ConsulConfigBuilder::default()
    }

    /// Reads `MICRO_CONSUL_*`, each overridden by `MICRO_<block>_CONSUL_*`
    /// (and `MICRO_<block>_ADDRESS` for the URL), then Consul's own
    /// `CONSUL_HTTP_ADDR` and `CONSUL_HTTP_TOKEN`. An address without a
    /// scheme gets `http://`.
    pub fn from_env(block: Option<Block>) -> Result<ConsulConfig> {
        ConsulConfig::from_lookup(block, &Lookup::env())
    }

    /// Like [`ConsulConfig::from_env`], reading variables through `lookup`.
    pub fn from_lookup(block: Option<Block>, lookup: &Lookup<'_>) -> Result<ConsulConfig> {
        let mut reader = Reader::new("CONSUL", block, lookup);
        let mut config = ConsulConfig::default();
        if let Some(address) = reader.string_or("URL", "address", &["CONSUL_HTTP_ADDR"])? {
            config.address = if address.contains("://") {
                address
            } else {
                format!("http://{address}")
            };
        }
        config.token = reader.string_or("TOKEN", "token", &["CONSUL_HTTP_TOKEN"])?;
        config.tls = TlsConfig::read(&mut reader)?;
        if let Some(timeout) = reader.duration("CONNECT_TIMEOUT", "connect_timeout")? {
            config.connect_timeout = timeout;
        }
        config.origins = Origins(reader.origins);
        config.validate()?;
        Ok(config)
    }

    /// The variable a setting came from, or its field name.
    pub fn label(&self, field: &'static str) -> String {
        self.origins.label(field)
    }

    /// Checks the settings without connecting.
    pub fn validate(&self) -> Result<()> {
        if !(self.address.starts_with("http://") || self.address.starts_with("https://")) {
            return Err(Error::invalid_argument(format!(
                "{}: the Consul address {:?} must start with http:// or https://",
                self.label("address"),
                self.address
            )));
        }
        if self.tls.server_name.is_some() {
            return Err(Error::invalid_argument(format!(
                "{}: not supported for Consul; use an address with the certificate's host name",
                self.label("tls.server_name")
            )));
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err(Error::invalid_argument(format!(
                "Consul TLS: {} and {} go together",
                self.label("tls.cert_file"),
                self.label("tls.key_file")
            )));
        }
        if let Some(token) = &self.token {
            http::HeaderValue::from_str(token).map_err(|err| {
                Error::invalid_argument(format!(
                    "{}: the token is not a valid header value",
                    self.label("token")
                ))
                .with_source(err)
            })?;
        }
        Ok(())
    }

    /// The agent's address without a trailing `/`.
    pub fn base_url(&self) -> &str {
        self.address.trim_end_matches('/')
    }

    /// An HTTP client for the agent: every request carries the ACL token,
    /// TLS is rustls with ring (the CA and client certificate configured).
    pub fn http_client(&self) -> Result<reqwest::Client> {
        self.validate()?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut headers = http::HeaderMap::new();
        if let Some(token) = &self.token {
            let mut value = http::HeaderValue::from_str(token).map_err(|err| {
                Error::invalid_argument(format!("{}: not a header value", self.label("token")))
                    .with_source(err)
            })?;
            value.set_sensitive(true);
            headers.insert(TOKEN_HEADER, value);
        }
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(self.connect_timeout);
        if let Some(ca) = &self.tls.ca_file {
            let pem = TlsConfig::read_pem(ca, &self.origins.0, "tls.ca_file")?;
            let certificate = reqwest::Certificate::from_pem(&pem).map_err(|err| {
                Error::invalid_argument(format!(
                    "{}: {} is not a PEM certificate",
                    self.label("tls.ca_file"),
                    ca.display()
                ))
                .with_source(err)
            })?;
            builder = builder.add_root_certificate(certificate);
        }
        if let (Some(cert), Some(key)) = (&self.tls.cert_file, &self.tls.key_file) {
            let mut pem = TlsConfig::read_pem(cert, &self.origins.0, "tls.cert_file")?;
            pem.extend(TlsConfig::read_pem(key, &self.origins.0, "tls.key_file")?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|err| {
                Error::invalid_argument(format!(
                    "{}/{}: not a PEM certificate and key",
                    self.label("tls.cert_file"),
                    self.label("tls.key_file")
                ))
                .with_source(err)
            })?;
            builder = builder.identity(identity);
        }
        builder.build().map_err(|err| {
            Error::internal("cannot build the HTTP client for Consul").with_source(err)
        })
    }
}

/// Builds a [`ConsulConfig`] in code.
#[derive(Debug, Clone, Default)]
pub struct ConsulConfigBuilder {
    config: ConsulConfig,
}

impl ConsulConfigBuilder {
    /// The agent's HTTP address.
    pub fn address(mut self, address: impl Into<String>) -> Self {
        self.config.address = address.into();
        self
    }

    /// The ACL token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.config.token = Some(token.into());
        self
    }

    shared_builder_methods!(ConsulConfig);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_token_overrides_shared_and_consuls_own() {
        let lookup = Lookup::from_fn(|name| match name {
            "MICRO_CONSUL_URL" => Some("http://c:8500/".to_owned()),
            "MICRO_CONSUL_TOKEN" => Some("shared".to_owned()),
            "MICRO_REGISTRY_CONSUL_TOKEN" => Some("registry".to_owned()),
            "CONSUL_HTTP_TOKEN" => Some("cli".to_owned()),
            _ => None,
        });
        let registry = ConsulConfig::from_lookup(Some(Block::Registry), &lookup).unwrap();
        let config = ConsulConfig::from_lookup(Some(Block::Config), &lookup).unwrap();
        assert_eq!(registry.token.as_deref(), Some("registry"));
        assert_eq!(config.token.as_deref(), Some("shared"));
        assert_eq!(config.base_url(), "http://c:8500");
        assert!(!format!("{config:?}").contains("shared"));
        let only_cli =
            Lookup::from_fn(|name| (name == "CONSUL_HTTP_TOKEN").then(|| "cli".to_owned()));
        let config = ConsulConfig::from_lookup(None, &only_cli).unwrap();
        assert_eq!(config.token.as_deref(), Some("cli"));
        assert_eq!(config.label("token"), "CONSUL_HTTP_TOKEN");
    }

    #[test]
    fn a_bad_token_or_address_names_its_variable() {
        for (name, value) in [
            ("MICRO_CONSUL_TOKEN", "a\nb"),
            ("MICRO_CONSUL_URL", "ftp://x"),
        ] {
            let lookup = Lookup::from_fn(|n| (n == name).then(|| value.to_owned()));
            let err = ConsulConfig::from_lookup(None, &lookup).unwrap_err();
            assert_eq!(err.kind(), micro_core::ErrorKind::InvalidArgument);
            assert!(err.message().contains(name), "{err}");
        }
    }
}
