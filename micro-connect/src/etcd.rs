//! etcd: one [`EtcdConfig`], read from `MICRO_ETCD_*` (see the
//! [crate documentation](crate) for the grammar), and [`EtcdConfig::connect`].
//!
//! TLS is rustls with ring (etcd-client's `tls-ring`): give `https://` URLs
//! and the CA that signed the server's certificate; a client certificate
//! and key for etcd's `--client-cert-auth`.
//!
//! ```
//! use micro_connect::{Block, Lookup, etcd::EtcdConfig};
//!
//! let lookup = Lookup::from_fn(|name| match name {
//!     "MICRO_ETCD_URL" => Some("https://10.0.0.5:2379".to_owned()),
//!     "MICRO_ETCD_USER" => Some("root".to_owned()),
//!     "MICRO_ETCD_PASSWORD" => Some("pw".to_owned()),
//!     "MICRO_SYNC_ETCD_USER" => Some("locker".to_owned()),
//!     "MICRO_SYNC_ETCD_PASSWORD" => Some("pw2".to_owned()),
//!     _ => None,
//! });
//! let sync = EtcdConfig::from_lookup(Some(micro_connect::Block::Sync), &lookup).unwrap();
//! assert_eq!(sync.endpoints, ["https://10.0.0.5:2379"]);
//! assert_eq!(sync.user.as_deref(), Some("locker"));
//! ```

use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use micro_core::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};

use crate::{
    Block, Lookup, TlsConfig,
    env::{Origins, Reader},
};

/// How to reach and authenticate to etcd; every field has a default.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct EtcdConfig {
    /// The members to talk to (`http://host:2379`, `https://host:2379`).
    /// Default: `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// User name, when etcd has authentication on (with `password`).
    pub user: Option<String>,
    /// The password of `user`.
    pub password: Option<String>,
    /// TLS settings (rustls with ring); used with `https://` endpoints.
    pub tls: TlsConfig,
    /// How long connecting (and authenticating) may take. Default: 5 seconds.
    #[serde(with = "micro_core::duration::serde")]
    pub connect_timeout: Duration,
    #[serde(skip)]
    origins: Origins,
}

impl std::fmt::Debug for EtcdConfig {
    /// Everything but the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl Default for EtcdConfig {
    fn default() -> EtcdConfig {
        EtcdConfig {
            endpoints: vec![EtcdConfig::DEFAULT_ENDPOINT.to_owned()],
            user: None,
            password: None,
            tls: TlsConfig::default(),
            connect_timeout: EtcdConfig::DEFAULT_CONNECT_TIMEOUT,
            origins: Origins::default(),
        }
    }
}

impl EtcdConfig {
    /// The default endpoint.
    pub const DEFAULT_ENDPOINT: &'static str = "http://127.0.0.1:2379";
    /// The default connect timeout.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

    /// Starts a config at the defaults.
    pub fn builder() -> EtcdConfigBuilder {
        EtcdConfigBuilder::default()
    }

    /// Reads `MICRO_ETCD_*`, each overridden by `MICRO_<block>_ETCD_*` when
    /// `block` is given (and `MICRO_<block>_ADDRESS` for the URL).
    pub fn from_env(block: Option<Block>) -> Result<EtcdConfig> {
        EtcdConfig::from_lookup(block, &Lookup::env())
    }

    /// Like [`EtcdConfig::from_env`], reading variables through `lookup`.
    pub fn from_lookup(block: Option<Block>, lookup: &Lookup<'_>) -> Result<EtcdConfig> {
        let mut reader = Reader::new("ETCD", block, lookup);
        let mut config = EtcdConfig::default();
        if let Some(endpoints) = reader.list("URL", "endpoints")? {
            config.endpoints = endpoints;
        }
        config.user = reader.string("USER", "user")?;
        config.password = reader.string("PASSWORD", "password")?;
        config.tls = TlsConfig::read(&mut reader)?;
        if let Some(timeout) = reader.duration("CONNECT_TIMEOUT", "connect_timeout")? {
            config.connect_timeout = timeout;
        }
        config.origins = Origins(reader.origins);
        config.validate()?;
        Ok(config)
    }

    /// The variable a setting came from, or its field name (`tls.ca_file`).
    pub fn label(&self, field: &'static str) -> String {
        self.origins.label(field)
    }

    /// Checks the settings without connecting.
    pub fn validate(&self) -> Result<()> {
        if self.endpoints.is_empty() {
            return Err(Error::invalid_argument(format!(
                "{}: no etcd endpoint given",
                self.label("endpoints")
            )));
        }
        if self.user.is_some() != self.password.is_some() {
            return Err(Error::invalid_argument(format!(
                "etcd credentials: {} and {} go together",
                self.label("user"),
                self.label("password")
            )));
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err(Error::invalid_argument(format!(
                "etcd TLS: {} and {} go together",
                self.label("tls.cert_file"),
                self.label("tls.key_file")
            )));
        }
        let https = self
            .endpoints
            .iter()
            .filter(|e| e.starts_with("https://"))
            .count();
        if self.tls.is_requested() && https != self.endpoints.len() {
            return Err(Error::invalid_argument(format!(
                "{}: TLS settings are given, so every etcd endpoint must be https:// (got {})",
                self.label("endpoints"),
                self.endpoints.join(", ")
            )));
        }
        Ok(())
    }

    /// Whether the endpoints or settings ask for TLS.
    pub fn wants_tls(&self) -> bool {
        self.tls.is_requested() || self.endpoints.iter().any(|e| e.starts_with("https://"))
    }

    /// Connect options carrying the credentials, TLS and connect timeout; a
    /// backend may add its own (keep-alive) before [`EtcdConfig::connect_with`].
    pub fn options(&self) -> Result<ConnectOptions> {
        self.validate()?;
        let mut options = ConnectOptions::new().with_connect_timeout(self.connect_timeout);
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            options = options.with_user(user.clone(), password.clone());
        }
        if self.wants_tls() {
            // One crypto provider for the process (ring), whoever asks first.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let mut tls = TlsOptions::new();
            if let Some(ca) = &self.tls.ca_file {
                let pem = TlsConfig::read_pem(ca, &self.origins.0, "tls.ca_file")?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            if let (Some(cert), Some(key)) = (&self.tls.cert_file, &self.tls.key_file) {
                let cert = TlsConfig::read_pem(cert, &self.origins.0, "tls.cert_file")?;
                let key = TlsConfig::read_pem(key, &self.origins.0, "tls.key_file")?;
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            if let Some(name) = &self.tls.server_name {
                tls = tls.domain_name(name.clone());
            }
            options = options.with_tls(tls);
        }
        Ok(options)
    }

    /// Connects, authenticates when a user is set, and checks the cluster
    /// answers, so a wrong address, CA or password fails here.
    pub async fn connect(&self) -> Result<Client> {
        let options = self.options()?;
        self.connect_with(options).await
    }

    /// Like [`EtcdConfig::connect`] with `options` (from [`EtcdConfig::options`], extended).
    pub async fn connect_with(&self, options: ConnectOptions) -> Result<Client> {
        let attempt = async {
            let mut client = Client::connect(&self.endpoints, Some(options))
                .await
                .map_err(|err| self.connect_error(err))?;
            // Without a user, connecting opens no connection yet; ask for the
            // member's status so an unreachable server or a failed handshake
            // is reported now.
            client
                .status()
                .await
                .map_err(|err| self.connect_error(err))?;
            Ok(client)
        };
        tokio::time::timeout(self.connect_timeout, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(Error::unavailable(format!(
                    "etcd at {} did not answer within {} ({})",
                    self.endpoints.join(", "),
                    micro_core::duration::format(self.connect_timeout),
                    self.label("connect_timeout")
                )))
            })
    }

    fn connect_error(&self, err: etcd_client::Error) -> Error {
        let endpoints = self.endpoints.join(", ");
        if let etcd_client::Error::GRpcStatus(status) = &err {
            // gRPC codes, read as numbers (etcd-client does not re-export tonic's `Code`).
            let refused = match i32::from(status.code()) {
                16 => Some(ErrorKind::Unauthenticated),
                7 => Some(ErrorKind::PermissionDenied),
                // etcd answers a wrong user or password with InvalidArgument.
                _ if status.message().contains("authentication failed") => {
                    Some(ErrorKind::Unauthenticated)
                }
                _ => None,
            };
            if let Some(kind) = refused {
                return Error::new(
                    kind,
                    format!(
                        "etcd at {endpoints} refused the credentials of {}/{}: {}",
                        self.label("user"),
                        self.label("password"),
                        status.message()
                    ),
                )
                .with_source(err);
            }
        }
        let message = if self.wants_tls() {
            format!(
                "cannot reach etcd at {endpoints} over TLS (CA {}, client certificate {}): {err}",
                self.label("tls.ca_file"),
                self.label("tls.cert_file")
            )
        } else {
            format!(
                "cannot reach etcd at {endpoints} ({}): {err}",
                self.label("endpoints")
            )
        };
        Error::new(ErrorKind::Unavailable, message).with_source(err)
    }
}

/// Builds an [`EtcdConfig`] in code.
#[derive(Debug, Clone, Default)]
pub struct EtcdConfigBuilder {
    config: EtcdConfig,
}

impl EtcdConfigBuilder {
    /// The members to talk to.
    pub fn endpoints<S: Into<String>>(mut self, endpoints: impl IntoIterator<Item = S>) -> Self {
        self.config.endpoints = endpoints.into_iter().map(Into::into).collect();
        self
    }

    /// User and password, for etcd with authentication on.
    pub fn user_and_password(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.config.user = Some(user.into());
        self.config.password = Some(password.into());
        self
    }

    shared_builder_methods!(EtcdConfig);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(block: Option<Block>, vars: &[(&str, &str)]) -> Result<EtcdConfig> {
        EtcdConfig::from_lookup(block, &crate::env::test_lookup(vars))
    }

    #[test]
    fn reads_every_variable() {
        let config = from(
            Some(Block::Config),
            &[
                ("MICRO_ETCD_URL", "https://a:2379"),
                ("MICRO_ETCD_USER", "root"),
                ("MICRO_ETCD_PASSWORD", "pw"),
                ("MICRO_CONFIG_ETCD_TLS_CA", "/ca.pem"),
                ("MICRO_ETCD_TLS_CERT", "/c.pem"),
                ("MICRO_ETCD_TLS_KEY", "/k.pem"),
                ("MICRO_ETCD_TLS_SERVER_NAME", "etcd.internal"),
                ("MICRO_ETCD_CONNECT_TIMEOUT", "250ms"),
            ],
        )
        .unwrap();
        assert_eq!(config.endpoints, ["https://a:2379"]);
        assert_eq!(config.tls.server_name.as_deref(), Some("etcd.internal"));
        assert_eq!(config.connect_timeout, Duration::from_millis(250));
        assert_eq!(config.label("tls.ca_file"), "MICRO_CONFIG_ETCD_TLS_CA");
        assert_eq!(from(None, &[]).unwrap(), EtcdConfig::default());
        assert!(!format!("{config:?}").contains("\"pw\""));
    }

    #[test]
    fn contradictions_are_invalid_arguments_naming_the_variables() {
        let cases: [&[(&str, &str)]; 3] = [
            &[("MICRO_ETCD_PASSWORD", "pw")],
            &[("MICRO_REGISTRY_ETCD_TLS_KEY", "/k.pem")],
            &[
                ("MICRO_REGISTRY_ADDRESS", "http://a:2379"),
                ("MICRO_ETCD_TLS_CA", "/ca.pem"),
            ],
        ];
        for vars in cases {
            let err = from(Some(Block::Registry), vars).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{vars:?}");
            assert!(err.message().contains(vars[0].0), "{err}");
        }
    }
}
