//! A single-member `etcd` cluster.

use std::path::PathBuf;

use tempfile::TempDir;
use tokio::sync::OnceCell;

use crate::process::{ServerProcess, http_get_ok};
use crate::{free_port, locate, missing};

const INSTALL: &str = "apt-get install etcd-server (or set MICRO_ETCD)";

/// An `etcd` member on free loopback ports, killed on drop.
#[derive(Debug)]
pub struct EtcdServer {
    process: ServerProcess,
    port: u16,
    /// Where `/health` answers over plain HTTP: the client port, or with
    /// TLS a metrics port of its own.
    health_port: u16,
    scheme: &'static str,
    data: TempDir,
}

/// The TLS files of an etcd started with [`EtcdServer::start_tls`].
#[derive(Debug, Clone)]
pub struct EtcdTls {
    /// The server's certificate (PEM).
    pub cert_file: PathBuf,
    /// The server certificate's key (PEM).
    pub key_file: PathBuf,
    /// The CA that client certificates must chain to (PEM); with it etcd
    /// runs with `--client-cert-auth`.
    pub client_ca_file: Option<PathBuf>,
}

impl EtcdServer {
    /// Starts a server of its own and waits until it reports itself healthy.
    pub async fn start() -> Option<EtcdServer> {
        EtcdServer::start_with(None).await
    }

    /// Starts a server whose client port speaks TLS only (`https://`), with
    /// `--cert-file`, `--key-file` and, when a client CA is given,
    /// `--trusted-ca-file` and `--client-cert-auth`. Health is checked on a
    /// plain-HTTP metrics port of its own.
    pub async fn start_tls(tls: &EtcdTls) -> Option<EtcdServer> {
        EtcdServer::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<&EtcdTls>) -> Option<EtcdServer> {
        let Some(program) = locate::binary("MICRO_ETCD", &[], "etcd", |_| true) else {
            return missing("etcd", INSTALL);
        };
        let data = tempfile::Builder::new()
            .prefix("micro-etcd-")
            .tempdir()
            .unwrap_or_else(|err| panic!("cannot create a data directory for etcd: {err}"));
        let (port, peer_port) = (free_port(), free_port());
        let scheme = if tls.is_some() { "https" } else { "http" };
        let client_url = format!("{scheme}://127.0.0.1:{port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let name = format!("micro-test-{port}");
        let mut args = vec![
            format!("--name={name}"),
            format!("--data-dir={}", data.path().join("member").display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster={name}={peer_url}"),
            "--logger=zap".into(),
            "--log-level=warn".into(),
        ];
        let mut health_port = port;
        if let Some(tls) = tls {
            health_port = free_port();
            args.push(format!(
                "--listen-metrics-urls=http://127.0.0.1:{health_port}"
            ));
            args.push(format!("--cert-file={}", tls.cert_file.display()));
            args.push(format!("--key-file={}", tls.key_file.display()));
            if let Some(ca) = &tls.client_ca_file {
                args.push(format!("--trusted-ca-file={}", ca.display()));
                args.push("--client-cert-auth".into());
            }
        }
        let log = data.path().join("etcd.log");
        let server = EtcdServer {
            process: ServerProcess::new("etcd", program, args, data.path().to_path_buf(), log),
            port,
            health_port,
            scheme,
            data,
        };
        server.wait_ready().await;
        Some(server)
    }

    /// One server for the whole test process, started on first use.
    ///
    /// Cases sharing it must isolate themselves (random key prefixes) and
    /// must not kill or restart it.
    pub async fn shared() -> Option<&'static EtcdServer> {
        static SHARED: OnceCell<Option<EtcdServer>> = OnceCell::const_new();
        SHARED.get_or_init(EtcdServer::start).await.as_ref()
    }

    /// The client endpoint, `http://127.0.0.1:PORT` (`https://` with TLS).
    pub fn endpoint(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log file (appended to across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.process.log().to_path_buf()
    }

    /// SIGKILLs the server and waits for it to exit; port and data are kept.
    pub async fn kill(&self) {
        self.process.kill().await;
    }

    /// Starts the server again on the same port with the same data, and waits
    /// until it is healthy. Starting a running server only waits.
    pub async fn restart(&self) {
        self.wait_ready().await;
    }

    async fn wait_ready(&self) {
        let port = self.health_port;
        self.process
            .spawn_and_wait(|| http_get_ok(port, "/health", "true"))
            .await;
        let _ = &self.data;
    }
}
