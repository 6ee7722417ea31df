//! NATS: one [`NatsConfig`], read from `MICRO_NATS_*` (see the
//! [crate documentation](crate) for the grammar), and [`NatsConfig::connect`].
//!
//! ```
//! use micro_connect::{Block, Lookup, nats::NatsConfig};
//!
//! let lookup = Lookup::from_fn(|name| match name {
//!     "MICRO_NATS_URL" => Some("tls://nats.internal:4222".to_owned()),
//!     "MICRO_NATS_TOKEN" => Some("s3cret".to_owned()),
//!     "MICRO_BROKER_NATS_TOKEN" => Some("broker-only".to_owned()),
//!     _ => None,
//! });
//! let registry = NatsConfig::from_lookup(Some(Block::Registry), &lookup).unwrap();
//! let broker = NatsConfig::from_lookup(Some(Block::Broker), &lookup).unwrap();
//! assert_eq!(registry.servers, ["tls://nats.internal:4222"]);
//! assert_eq!(registry.auth.token.as_deref(), Some("s3cret"));
//! assert_eq!(broker.auth.token.as_deref(), Some("broker-only"));
//! ```

use std::{path::PathBuf, time::Duration};

use async_nats::{Client, ConnectErrorKind, ConnectOptions, ServerAddr};
use micro_core::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};

use crate::{
    Block, Lookup, TlsConfig,
    env::{Origins, Reader},
};

/// How to reach and authenticate to a NATS server; every field has a default.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct NatsConfig {
    /// Server URLs (`nats://host:4222`, `tls://host:4222`); the client
    /// connects to one and fails over to the others. Default:
    /// `nats://127.0.0.1:4222`.
    pub servers: Vec<String>,
    /// The connection name the server shows in its monitoring.
    pub name: Option<String>,
    /// Credentials: at most one of token, user and password, `.creds` file, nkey.
    pub auth: NatsAuth,
    /// TLS settings (rustls with ring). `server_name` is not supported by
    /// the NATS client: use a URL with the certificate's host name.
    pub tls: TlsConfig,
    /// How long one connection attempt may take. Default: 5 seconds.
    #[serde(with = "micro_core::duration::serde")]
    pub connect_timeout: Duration,
    #[serde(skip)]
    origins: Origins,
}

/// NATS credentials; at most one kind may be set.
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct NatsAuth {
    /// A token (`authorization { token: ... }` on the server).
    pub token: Option<String>,
    /// A user name, with `password`.
    pub user: Option<String>,
    /// The password of `user`.
    pub password: Option<String>,
    /// A `.creds` file holding a user JWT and its nkey seed.
    pub creds_file: Option<PathBuf>,
    /// An nkey seed (`SU...`), for servers configured with nkey users.
    pub nkey: Option<String>,
}

impl std::fmt::Debug for NatsAuth {
    /// Says which credentials are set without printing the secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |value: &Option<String>| value.as_ref().map(|_| "<redacted>");
        f.debug_struct("NatsAuth")
            .field("token", &hidden(&self.token))
            .field("user", &self.user)
            .field("password", &hidden(&self.password))
            .field("creds_file", &self.creds_file)
            .field("nkey", &hidden(&self.nkey))
            .finish()
    }
}

impl std::fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConfig")
            .field("servers", &self.servers)
            .field("name", &self.name)
            .field("auth", &self.auth)
            .field("tls", &self.tls)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl Default for NatsConfig {
    fn default() -> NatsConfig {
        NatsConfig {
            servers: vec![NatsConfig::DEFAULT_SERVER.to_owned()],
            name: None,
            auth: NatsAuth::default(),
            tls: TlsConfig::default(),
            connect_timeout: NatsConfig::DEFAULT_CONNECT_TIMEOUT,
            origins: Origins::default(),
        }
    }
}

impl NatsConfig {
    /// The default server.
    pub const DEFAULT_SERVER: &'static str = "nats://127.0.0.1:4222";
    /// The default connect timeout.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

    /// Starts a config at the defaults.
    pub fn builder() -> NatsConfigBuilder {
        NatsConfigBuilder::default()
    }

    /// Reads `MICRO_NATS_*`, each overridden by `MICRO_<block>_NATS_*` when
    /// `block` is given (and `MICRO_<block>_ADDRESS` for the URL); unset
    /// variables keep the defaults.
    pub fn from_env(block: Option<Block>) -> Result<NatsConfig> {
        NatsConfig::from_lookup(block, &Lookup::env())
    }

    /// Like [`NatsConfig::from_env`], reading variables through `lookup`.
    pub fn from_lookup(block: Option<Block>, lookup: &Lookup<'_>) -> Result<NatsConfig> {
        let mut reader = Reader::new("NATS", block, lookup);
        let mut config = NatsConfig::default();
        if let Some(servers) = reader.list("URL", "servers")? {
            config.servers = servers;
        }
        config.auth = NatsAuth {
            token: reader.string("TOKEN", "auth.token")?,
            user: reader.string("USER", "auth.user")?,
            password: reader.string("PASSWORD", "auth.password")?,
            creds_file: reader.path("CREDS", "auth.creds_file")?,
            nkey: reader.string("NKEY", "auth.nkey")?,
        };
        config.tls = TlsConfig::read(&mut reader)?;
        if let Some(timeout) = reader.duration("CONNECT_TIMEOUT", "connect_timeout")? {
            config.connect_timeout = timeout;
        }
        config.origins = Origins(reader.origins);
        config.validate()?;
        Ok(config)
    }

    /// Checks the settings without connecting: server URLs, one kind of
    /// credentials, certificate with key.
    pub fn validate(&self) -> Result<()> {
        self.server_addrs()?;
        let auth = &self.auth;
        let kinds = [
            auth.token.is_some(),
            auth.user.is_some() || auth.password.is_some(),
            auth.creds_file.is_some(),
            auth.nkey.is_some(),
        ];
        if kinds.iter().filter(|set| **set).count() > 1 {
            return Err(Error::invalid_argument(format!(
                "NATS credentials: give only one of a token ({}), a user and password ({}), \
                 a .creds file ({}) or an nkey ({})",
                self.label("auth.token"),
                self.label("auth.user"),
                self.label("auth.creds_file"),
                self.label("auth.nkey"),
            )));
        }
        if auth.user.is_some() != auth.password.is_some() {
            return Err(Error::invalid_argument(format!(
                "NATS credentials: {} and {} go together",
                self.label("auth.user"),
                self.label("auth.password")
            )));
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err(Error::invalid_argument(format!(
                "NATS TLS: {} and {} go together",
                self.label("tls.cert_file"),
                self.label("tls.key_file")
            )));
        }
        if self.tls.server_name.is_some() {
            return Err(Error::invalid_argument(format!(
                "{}: the NATS client checks the certificate against the URL's host; \
                 connect by that name instead",
                self.label("tls.server_name")
            )));
        }
        Ok(())
    }

    /// The variable a setting came from, or its field name (`tls.ca_file`).
    pub fn label(&self, field: &'static str) -> String {
        self.origins.label(field)
    }

    fn server_addrs(&self) -> Result<Vec<ServerAddr>> {
        if self.servers.is_empty() {
            return Err(Error::invalid_argument(format!(
                "{}: no NATS server URL given",
                self.label("servers")
            )));
        }
        self.servers
            .iter()
            .map(|url| {
                url.parse::<ServerAddr>().map_err(|err| {
                    Error::invalid_argument(format!(
                        "{}: `{url}` is not a NATS server URL",
                        self.label("servers")
                    ))
                    .with_source(err)
                })
            })
            .collect()
    }

    /// Whether TLS is asked for, by a setting or a `tls://` URL.
    pub fn wants_tls(&self) -> bool {
        self.tls.is_requested() || self.servers.iter().any(|url| url.starts_with("tls://"))
    }

    /// Connect options carrying the credentials, TLS, name and connect
    /// timeout; a backend adds its own (callbacks, capacities) before
    /// [`NatsConfig::connect_with`].
    pub async fn options(&self) -> Result<ConnectOptions> {
        self.validate()?;
        let auth = &self.auth;
        let mut options = match &auth.creds_file {
            Some(path) => ConnectOptions::with_credentials_file(path)
                .await
                .map_err(|err| {
                    Error::invalid_argument(format!(
                        "{}: cannot read the NATS credentials file {}: {err}",
                        self.label("auth.creds_file"),
                        path.display()
                    ))
                    .with_source(err)
                })?,
            None => ConnectOptions::new(),
        };
        if let Some(token) = &auth.token {
            options = options.token(token.clone());
        }
        if let (Some(user), Some(password)) = (&auth.user, &auth.password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(seed) = &auth.nkey {
            options = options.nkey(seed.clone());
        }
        if self.wants_tls() {
            // micro uses rustls with ring only; installing it as the process
            // default keeps rustls from refusing to choose when another crate
            // compiled in a second provider. One installed first is fine.
            let _ = async_nats::rustls::crypto::ring::default_provider().install_default();
            options = options.require_tls(true);
            if let Some(ca) = &self.tls.ca_file {
                self.check_readable(ca, "tls.ca_file")?;
                options = options.add_root_certificates(ca.clone());
            }
            if let (Some(cert), Some(key)) = (&self.tls.cert_file, &self.tls.key_file) {
                self.check_readable(cert, "tls.cert_file")?;
                self.check_readable(key, "tls.key_file")?;
                options = options.add_client_certificate(cert.clone(), key.clone());
            }
        }
        if let Some(name) = &self.name {
            options = options.name(name);
        }
        Ok(options.connection_timeout(self.connect_timeout))
    }

    /// Connects with [`NatsConfig::options`].
    pub async fn connect(&self) -> Result<Client> {
        let options = self.options().await?;
        self.connect_with(options).await
    }

    /// Connects with `options` (from [`NatsConfig::options`], extended),
    /// mapping failures onto error kinds that name the setting at fault.
    pub async fn connect_with(&self, options: ConnectOptions) -> Result<Client> {
        let servers = self.server_addrs()?;
        options
            .connect(servers)
            .await
            .map_err(|err| self.connect_error(err))
    }

    fn check_readable(&self, path: &std::path::Path, field: &'static str) -> Result<()> {
        std::fs::metadata(path).map(|_| ()).map_err(|err| {
            Error::invalid_argument(format!(
                "{}: cannot read {}: {err}",
                self.label(field),
                path.display()
            ))
            .with_source(err)
        })
    }

    /// The credentials in use, named for an error message.
    fn credentials_label(&self) -> String {
        let auth = &self.auth;
        if auth.token.is_some() {
            self.label("auth.token")
        } else if auth.user.is_some() {
            format!(
                "{}/{}",
                self.label("auth.user"),
                self.label("auth.password")
            )
        } else if auth.creds_file.is_some() {
            self.label("auth.creds_file")
        } else if auth.nkey.is_some() {
            self.label("auth.nkey")
        } else {
            "no credentials (set MICRO_NATS_TOKEN, MICRO_NATS_USER/PASSWORD, MICRO_NATS_CREDS or MICRO_NATS_NKEY)".to_owned()
        }
    }

    fn connect_error(&self, err: async_nats::ConnectError) -> Error {
        let servers = self.servers.join(", ");
        let (kind, message) = match err.kind() {
            ConnectErrorKind::Authentication | ConnectErrorKind::AuthorizationViolation => (
                ErrorKind::Unauthenticated,
                format!(
                    "NATS at {servers} refused the credentials of {}: {err}",
                    self.credentials_label()
                ),
            ),
            ConnectErrorKind::Tls => (
                ErrorKind::Unavailable,
                format!(
                    "TLS with NATS at {servers} failed (CA {}, client certificate {}): {err}",
                    self.label("tls.ca_file"),
                    self.label("tls.cert_file")
                ),
            ),
            _ if self.wants_tls() => (
                ErrorKind::Unavailable,
                format!(
                    "cannot connect to NATS at {} over TLS (CA {}): {err}",
                    servers,
                    self.label("tls.ca_file")
                ),
            ),
            _ => (
                ErrorKind::Unavailable,
                format!(
                    "cannot connect to NATS at {servers} ({}): {err}",
                    self.label("servers")
                ),
            ),
        };
        Error::new(kind, message).with_source(err)
    }
}

/// Builds a [`NatsConfig`] in code.
#[derive(Debug, Clone, Default)]
pub struct NatsConfigBuilder {
    config: NatsConfig,
}

impl NatsConfigBuilder {
    /// The server URLs.
    pub fn servers<S: Into<String>>(mut self, servers: impl IntoIterator<Item = S>) -> Self {
        self.config.servers = servers.into_iter().map(Into::into).collect();
        self
    }

    /// The connection name shown by the server.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = Some(name.into());
        self
    }

    /// Token authentication.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.config.auth.token = Some(token.into());
        self
    }

    /// User and password authentication.
    pub fn user_and_password(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.config.auth.user = Some(user.into());
        self.config.auth.password = Some(password.into());
        self
    }

    /// A `.creds` file (JWT and nkey seed).
    pub fn creds_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.auth.creds_file = Some(path.into());
        self
    }

    /// An nkey seed.
    pub fn nkey(mut self, seed: impl Into<String>) -> Self {
        self.config.auth.nkey = Some(seed.into());
        self
    }

    shared_builder_methods!(NatsConfig);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(block: Option<Block>, vars: &[(&str, &str)]) -> Result<NatsConfig> {
        NatsConfig::from_lookup(block, &crate::env::test_lookup(vars))
    }

    #[test]
    fn reads_every_variable() {
        let config = from(
            Some(Block::Sync),
            &[
                ("MICRO_NATS_URL", "tls://a:4222, tls://b:4222"),
                ("MICRO_NATS_USER", "ada"),
                ("MICRO_SYNC_NATS_PASSWORD", "pw"),
                ("MICRO_NATS_TLS_CA", "/ca.pem"),
                ("MICRO_NATS_TLS_CERT", "/c.pem"),
                ("MICRO_NATS_TLS_KEY", "/k.pem"),
                ("MICRO_NATS_CONNECT_TIMEOUT", "1.5s"),
            ],
        )
        .unwrap();
        assert_eq!(config.servers, ["tls://a:4222", "tls://b:4222"]);
        assert_eq!(config.auth.user.as_deref(), Some("ada"));
        assert_eq!(config.auth.password.as_deref(), Some("pw"));
        assert!(config.tls.required);
        assert_eq!(config.tls.ca_file, Some(PathBuf::from("/ca.pem")));
        assert_eq!(config.connect_timeout, Duration::from_millis(1500));
        assert_eq!(config.label("auth.password"), "MICRO_SYNC_NATS_PASSWORD");
        assert_eq!(from(None, &[]).unwrap(), NatsConfig::default());
    }

    #[test]
    fn contradictions_are_invalid_arguments_naming_the_variables() {
        let cases: [&[(&str, &str)]; 4] = [
            &[("MICRO_NATS_TOKEN", "t"), ("MICRO_NATS_NKEY", "SU")],
            &[("MICRO_BROKER_NATS_USER", "ada")],
            &[("MICRO_NATS_TLS_CERT", "/c.pem")],
            &[("MICRO_NATS_TLS_SERVER_NAME", "nats.internal")],
        ];
        for vars in cases {
            let err = from(Some(Block::Broker), vars).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{vars:?}");
            assert!(err.message().contains(vars[0].0), "{err}");
        }
    }

    #[test]
    fn serde_has_defaults_and_humantime_durations() {
        let config: NatsConfig = serde_json::from_str(
            r#"{"servers": ["nats://x:1"], "auth": {"token": "t"}, "connect_timeout": "2s"}"#,
        )
        .unwrap();
        assert_eq!(config.auth.token.as_deref(), Some("t"));
        assert_eq!(config.connect_timeout, Duration::from_secs(2));
        let json = serde_json::to_string(&NatsConfig::default()).unwrap();
        assert_eq!(
            serde_json::from_str::<NatsConfig>(&json).unwrap(),
            NatsConfig::default()
        );
        assert!(serde_json::from_str::<NatsConfig>(r#"{"server": []}"#).is_err());
    }

    #[test]
    fn secrets_are_not_printed() {
        let config = NatsConfig::builder().token("s3cret").build().unwrap();
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[tokio::test]
    async fn an_unreadable_ca_names_its_variable() {
        let config = from(None, &[("MICRO_NATS_TLS_CA", "/nonexistent/ca.pem")]).unwrap();
        let err = config.connect().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.message().contains("MICRO_NATS_TLS_CA"), "{err}");
    }
}
