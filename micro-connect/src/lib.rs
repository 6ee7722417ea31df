//! One way to connect to each external system micro talks to.
//!
//! Every backend of a system (the registry, the broker, sync and config
//! sources) takes the same connection settings, read from the same
//! environment variables, and connects with the same function, so a NATS
//! server that wants TLS and a token, or an etcd with client certificates and
//! users, works for every building block alike.
//!
//! | system | settings | connects to | feature |
//! |---|---|---|---|
//! | NATS | `nats::NatsConfig` | `async_nats::Client` | `nats` |
//! | etcd | `etcd::EtcdConfig` | `etcd_client::Client` | `etcd` |
//! | Consul | `consul::ConsulConfig` | `reqwest::Client` sending the ACL token | `consul` |
//!
//! # The environment grammar
//!
//! Each setting has one shared variable, `MICRO_<SYSTEM>_<KEY>`
//! (`MICRO_NATS_URL`, `MICRO_ETCD_USER`, `MICRO_CONSUL_TOKEN`), read by every
//! block. A block may override any of them with its own prefix,
//! `MICRO_<BLOCK>_<SYSTEM>_<KEY>` (`MICRO_REGISTRY_NATS_URL`,
//! `MICRO_BROKER_NATS_TOKEN`, `MICRO_SYNC_ETCD_TLS_CA`,
//! `MICRO_CONFIG_CONSUL_TOKEN`), where `<BLOCK>` is one of [`Block`]. The
//! address a block already had, `MICRO_<BLOCK>_ADDRESS`
//! (`MICRO_REGISTRY_ADDRESS`, `MICRO_BROKER_ADDRESS`, `MICRO_SYNC_ADDRESS`),
//! still works as that block's URL, between the two.
//!
//! | key | NATS | etcd | Consul | meaning |
//! |---|---|---|---|---|
//! | `URL` | yes | yes | yes | comma-separated server URLs |
//! | `TOKEN` | yes | | yes | NATS token, or Consul ACL token (`X-Consul-Token`) |
//! | `USER`, `PASSWORD` | yes | yes | | user name and password |
//! | `CREDS` | yes | | | a NATS `.creds` file (user JWT and nkey seed) |
//! | `NKEY` | yes | | | a NATS nkey seed (`SU...`) |
//! | `TLS_CA` | yes | yes | yes | PEM file of the CA to trust |
//! | `TLS_CERT`, `TLS_KEY` | yes | yes | yes | PEM client certificate and key (mutual TLS) |
//! | `TLS_SERVER_NAME` | | yes | | the name the server's certificate must carry |
//! | `CONNECT_TIMEOUT` | yes | yes | yes | a humantime duration (`5s`) |
//!
//! Errors name the variable a bad or refused setting came from (or the field,
//! for settings built in code): wrong credentials are `Unauthenticated` or
//! `PermissionDenied`, an unreachable server or a failed TLS handshake is
//! `Unavailable`, an unreadable file or a contradictory setting is
//! `InvalidArgument`.

mod env;
mod tls;

/// The builder methods every system's config builder has: TLS, connect
/// timeout and `build`, written once.
#[cfg(any(feature = "nats", feature = "etcd", feature = "consul"))]
macro_rules! shared_builder_methods {
    ($config:ty) => {
        /// All TLS settings at once ([`TlsConfig::with_ca`](crate::TlsConfig::with_ca),
        /// [`TlsConfig::with_client_cert`](crate::TlsConfig::with_client_cert)).
        pub fn tls(mut self, tls: $crate::TlsConfig) -> Self {
            self.config.tls = tls;
            self
        }

        /// How long connecting may take.
        pub fn connect_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.config.connect_timeout = timeout;
            self
        }

        /// The config, checked.
        pub fn build(self) -> micro_core::Result<$config> {
            self.config.validate()?;
            Ok(self.config)
        }
    };
}

#[cfg(feature = "consul")]
pub mod consul;
#[cfg(feature = "etcd")]
pub mod etcd;
#[cfg(feature = "nats")]
pub mod nats;

pub use self::env::{Block, Lookup};
pub use self::tls::TlsConfig;
pub use micro_core::{Error, ErrorKind, Result};
