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
    data: TempDir,
}

impl EtcdServer {
    /// Starts a server of its own and waits until it reports itself healthy.
    pub async fn start() -> Option<EtcdServer> {
        let Some(program) = locate::binary("MICRO_ETCD", &[], "etcd", |_| true) else {
            return missing("etcd", INSTALL);
        };
        let data = tempfile::Builder::new()
            .prefix("micro-etcd-")
            .tempdir()
            .unwrap_or_else(|err| panic!("cannot create a data directory for etcd: {err}"));
        let (port, peer_port) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let name = format!("micro-test-{port}");
        let args = vec![
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
        let log = data.path().join("etcd.log");
        let server = EtcdServer {
            process: ServerProcess::new("etcd", program, args, data.path().to_path_buf(), log),
            port,
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

    /// The client endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
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
        let port = self.port;
        self.process
            .spawn_and_wait(|| http_get_ok(port, "/health", "true"))
            .await;
        let _ = &self.data;
    }
}
