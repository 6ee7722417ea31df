use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    time::Instant,
};

/// TLS for a listener: none, or (feature `tls`) a rustls server configuration,
/// such as [`TlsConfig::server_config`](crate::tls::TlsConfig::server_config) builds.
#[derive(Clone, Default)]
pub struct ListenerTls {
    #[cfg(feature = "tls")]
    acceptor: Option<tokio_rustls::TlsAcceptor>,
}

impl ListenerTls {
    /// Plain TCP.
    pub fn none() -> ListenerTls {
        ListenerTls::default()
    }

    /// TLS with `config` (or plain TCP when `None`).
    #[cfg(feature = "tls")]
    pub fn rustls(config: Option<std::sync::Arc<rustls::ServerConfig>>) -> ListenerTls {
        ListenerTls {
            acceptor: config.map(tokio_rustls::TlsAcceptor::from),
        }
    }

    /// Whether connections are TLS.
    pub fn is_enabled(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.acceptor.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    /// Completes the TLS handshake on `stream` (when TLS is on) by
    /// `deadline`; `None` when the peer failed it or was too slow, which has
    /// been logged.
    pub(crate) async fn handshake(&self, stream: TcpStream, deadline: Instant) -> Option<ServerIo> {
        #[cfg(feature = "tls")]
        if let Some(acceptor) = &self.acceptor {
            let peer = stream.peer_addr().ok();
            return match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => Some(ServerIo::Tls(Box::new(tls))),
                Ok(Err(err)) => {
                    tracing::debug!(?peer, error = %err, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(?peer, "TLS handshake not completed in time");
                    None
                }
            };
        }
        let _ = deadline;
        Some(ServerIo::Plain(stream))
    }
}

impl std::fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerTls")
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

/// The subject of the certificate a client presented under mutual TLS, as an
/// extension of each of its requests.
#[derive(Debug, Clone)]
pub(crate) struct PeerSubject(pub(crate) String);

impl ServerIo {
    /// The subject of the client's certificate, when it presented one.
    pub(crate) fn peer_subject(&self) -> Option<PeerSubject> {
        match self {
            ServerIo::Plain(_) => None,
            #[cfg(feature = "tls")]
            ServerIo::Tls(tls) => {
                let certificate = tls.get_ref().1.peer_certificates()?.first()?;
                let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref()).ok()?;
                Some(PeerSubject(parsed.subject().to_string()))
            }
        }
    }
}

/// A server connection's byte stream: plain TCP or TLS over it.
pub(crate) enum ServerIo {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

macro_rules! each_io {
    ($self:ident, $io:ident => $body:expr) => {
        match $self.get_mut() {
            ServerIo::Plain($io) => {
                let $io = Pin::new($io);
                $body
            }
            #[cfg(feature = "tls")]
            ServerIo::Tls($io) => {
                let $io = Pin::new(&mut **$io);
                $body
            }
        }
    };
}

impl AsyncRead for ServerIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each_io!(self, io => io.poll_read(cx, buf))
    }
}

impl AsyncWrite for ServerIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each_io!(self, io => io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each_io!(self, io => io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ServerIo::Plain(io) => io.is_write_vectored(),
            #[cfg(feature = "tls")]
            ServerIo::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_io!(self, io => io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_io!(self, io => io.poll_shutdown(cx))
    }
}
