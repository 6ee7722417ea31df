//! The in-process transport: calls between a client and a server in the same
//! process, with no sockets and no serialization.
//!
//! A request travels by value from caller to handler: the body's bytes (or its
//! stream) are handed over, never copied or encoded. Everything else behaves as
//! over a network: deadlines end calls with `Timeout`, bodies over the size
//! limit are refused with `ResourceExhausted`, an unknown address is
//! `Unavailable`, a handler panic is `Internal`, and a shutdown drains calls in
//! flight. Streaming works in both directions, with back-pressure because
//! streams are pulled.
//!
//! Every [`MemoryTransport::new`] shares one process-wide network, so a server
//! and a client built separately in one process reach each other (as Go
//! Micro's memory transport does); [`MemoryTransport::isolated`] gets a network
//! of its own, for tests that must not see each other.
//!
//! # Addresses
//!
//! Any non-empty name is an address (`orders`, or `memory://orders`).
//! Listening on `""`, `"memory"`, `"memory://"` or any `host:0` address (such
//! as `127.0.0.1:0`) takes a fresh address like `memory-7`, which
//! [`Listener::address`] reports. Listening on a taken address is
//! `AlreadyExists`.
//!
//! ```
//! use micro_transport::{Handler, Request, Response, Transport, memory::MemoryTransport};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> micro_transport::Result<()> {
//! let transport = MemoryTransport::isolated();
//! let handler = Handler::from_fn(|request: Request| async move { Ok(Response::new(request.body)) });
//! let listener = transport.listen("orders", handler).await?;
//! assert_eq!(listener.address(), "orders");
//!
//! let channel = transport.dial("memory://orders").await?;
//! let response = channel.call_once(Request::new("Orders.Echo", "hi")).await?;
//! assert_eq!(response.body.into_bytes()?, "hi");
//! listener.shutdown(std::time::Duration::from_secs(1)).await
//! # }
//! ```

mod client;
mod config;
mod server;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;

pub use self::config::MemoryConfig;
use self::{
    client::{MemoryChannel, unreachable},
    server::{Network, Server, normalize},
};
use crate::{Capabilities, Channel, Handler, Listener, Result, Transport};

/// The in-process transport. Cheap to clone; clones share the network.
#[derive(Debug, Clone)]
pub struct MemoryTransport {
    network: Arc<Network>,
    config: MemoryConfig,
}

impl MemoryTransport {
    /// A transport on the process-wide network, with default settings.
    pub fn new() -> MemoryTransport {
        MemoryTransport::builder().build()
    }

    /// A transport on a network of its own that no other transport reaches.
    pub fn isolated() -> MemoryTransport {
        MemoryTransport::builder().isolated().build()
    }

    /// A transport on the process-wide network, with `config`.
    pub fn from_config(config: MemoryConfig) -> MemoryTransport {
        MemoryTransport {
            network: Network::global(),
            config,
        }
    }

    /// A builder, starting from the defaults.
    pub fn builder() -> MemoryTransportBuilder {
        MemoryTransportBuilder {
            config: MemoryConfig::default(),
            isolated: false,
        }
    }

    /// This transport's settings.
    pub fn config(&self) -> &MemoryConfig {
        &self.config
    }
}

impl Default for MemoryTransport {
    fn default() -> MemoryTransport {
        MemoryTransport::new()
    }
}

/// Builds a [`MemoryTransport`].
///
/// ```
/// use micro_transport::{Transport, memory::MemoryTransport};
///
/// let transport = MemoryTransport::builder().max_body_size(1024).isolated().build();
/// assert_eq!(transport.capabilities().max_body_size, Some(1024));
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct MemoryTransportBuilder {
    config: MemoryConfig,
    isolated: bool,
}

impl MemoryTransportBuilder {
    /// Sets [`MemoryConfig::max_body_size`].
    pub fn max_body_size(mut self, bytes: usize) -> MemoryTransportBuilder {
        self.config.max_body_size = bytes;
        self
    }

    /// Gives the transport a network of its own instead of the process-wide one.
    pub fn isolated(mut self) -> MemoryTransportBuilder {
        self.isolated = true;
        self
    }

    /// Builds the transport.
    pub fn build(self) -> MemoryTransport {
        MemoryTransport {
            network: if self.isolated {
                Network::new()
            } else {
                Network::global()
            },
            config: self.config,
        }
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    fn scheme(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with_streaming(true)
            .with_max_body_size(Some(self.config.max_body_size))
    }

    async fn listen(&self, address: &str, handler: Handler) -> Result<Listener> {
        let server = Arc::new(Server::new(handler, self.config.max_body_size));
        let address = self.network.bind(address, server.clone())?;
        tracing::debug!(%address, "memory server listening");
        let network = self.network.clone();
        let bound = address.clone();
        Ok(Listener::new(address, move |grace: Duration| {
            Box::pin(async move {
                network.unbind(&bound, &server);
                server.drain(grace).await;
                tracing::debug!(address = %bound, "memory server stopped");
                Ok(())
            })
        }))
    }

    async fn dial(&self, address: &str) -> Result<Channel> {
        let address = normalize(address);
        if self.network.lookup(address).is_none() {
            return Err(unreachable(address));
        }
        Ok(Channel::new(MemoryChannel {
            network: self.network.clone(),
            address: address.into(),
            max_body_size: self.config.max_body_size,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{DynTransport, ErrorKind, Request, Response};

    mod conformance {
        use super::*;

        crate::transport_conformance_tests!(MemoryTransport::isolated(), "");
    }

    mod arc_dyn {
        use super::*;

        crate::transport_conformance_tests!(
            Arc::new(MemoryTransport::isolated()) as DynTransport,
            ""
        );
    }

    mod box_dyn {
        use super::*;

        crate::transport_conformance_tests!(
            Box::new(MemoryTransport::isolated()) as Box<dyn Transport>,
            "memory"
        );
    }

    fn echo() -> Handler {
        Handler::from_fn(|request: Request| async move { Ok(Response::new(request.body)) })
    }

    #[tokio::test]
    async fn transports_built_apart_share_the_process_wide_network() {
        let server_side = MemoryTransport::new();
        let client_side = MemoryTransport::builder().max_body_size(64).build();
        let listener = server_side.listen("", echo()).await.unwrap();
        let channel = client_side.dial(listener.address()).await.unwrap();
        let response = channel
            .call_once(Request::new("Test.Echo", "shared"))
            .await
            .unwrap();
        assert_eq!(response.body.into_bytes().unwrap(), "shared");
        listener.shutdown(Duration::ZERO).await.unwrap();
    }

    #[tokio::test]
    async fn isolated_networks_do_not_see_each_other() {
        let one = MemoryTransport::isolated();
        let other = MemoryTransport::isolated();
        let listener = one.listen("", echo()).await.unwrap();
        let err = other.dial(listener.address()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        let err = MemoryTransport::new()
            .dial(listener.address())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
    }

    #[tokio::test]
    async fn listening_on_a_taken_address_is_already_exists() {
        let transport = MemoryTransport::isolated();
        let first = transport.listen("orders", echo()).await.unwrap();
        let err = transport.listen("orders", echo()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        first.shutdown(Duration::ZERO).await.unwrap();
        let again = transport.listen("orders", echo()).await.unwrap();
        assert_eq!(again.address(), "orders");
    }

    #[tokio::test]
    async fn a_channel_reaches_a_server_restarted_on_its_address() {
        let transport = MemoryTransport::isolated();
        let first = transport.listen("orders", echo()).await.unwrap();
        let channel = transport.dial("orders").await.unwrap();
        first.shutdown(Duration::ZERO).await.unwrap();
        let err = channel
            .call_once(Request::new("Test.Echo", "x"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        let _second = transport.listen("orders", echo()).await.unwrap();
        let response = channel
            .call_once(Request::new("Test.Echo", "back"))
            .await
            .unwrap();
        assert_eq!(response.body.into_bytes().unwrap(), "back");
    }

    #[tokio::test]
    async fn the_body_is_handed_over_without_a_copy() {
        let transport = MemoryTransport::isolated();
        let listener = transport.listen("", echo()).await.unwrap();
        let channel = transport.dial(listener.address()).await.unwrap();
        let sent = bytes::Bytes::from(vec![7u8; 1024]);
        let response = channel
            .call_once(Request::new("Test.Echo", sent.clone()))
            .await
            .unwrap();
        let received = response.body.into_bytes().unwrap();
        assert_eq!(received.as_ptr(), sent.as_ptr());
    }

    #[tokio::test]
    async fn the_client_side_limit_applies_to_responses() {
        let server_side = MemoryTransport::isolated();
        let client_side = MemoryTransport {
            network: server_side.network.clone(),
            config: MemoryConfig { max_body_size: 4 },
        };
        let listener = server_side.listen("", echo()).await.unwrap();
        let channel = client_side.dial(listener.address()).await.unwrap();
        let big_reply =
            Handler::from_fn(|_request: Request| async move { Ok(Response::new(vec![0u8; 5])) });
        let big = server_side.listen("big", big_reply).await.unwrap();
        let err = client_side
            .dial(big.address())
            .await
            .unwrap()
            .call_once(Request::new("Test.Big", ""))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ResourceExhausted);
        let ok = channel.call_once(Request::new("Test.Echo", "four")).await;
        assert_eq!(ok.unwrap().body.into_bytes().unwrap(), "four");
    }
}
