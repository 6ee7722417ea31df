//! A small admin listener: `GET /metrics` (the [`Metrics`] page),
//! `GET /health/live` and `GET /health/ready` (JSON, 200 or 503).
//!
//! It speaks just enough HTTP/1.1 for scrapers and probes (one request per
//! connection, no body), so it needs no HTTP server crate and can run beside
//! any transport, gRPC included.
//!
//! ```no_run
//! # async fn run() -> micro::Result<()> {
//! let health = micro::admin::Health::default();
//! let admin = micro::admin::serve("127.0.0.1:9090", health.clone()).await?;
//! health.set_ready(true);
//! // ... later
//! admin.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::oneshot,
    task::JoinHandle,
};

use crate::{Error, Result, metrics::Metrics};

/// The most of a request the listener reads: a probe's request line and
/// headers fit many times over, and a peer cannot make it buffer more.
const MAX_REQUEST: usize = 8 * 1024;

/// How long a peer may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the process should get traffic: `/health/ready` answers 200 while
/// ready and 503 otherwise. Clones share one state.
#[derive(Clone, Debug, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
}

impl Health {
    /// Marks the process ready (or not, when draining).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Whether the process is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// A running admin listener; see [`serve`].
#[derive(Debug)]
pub struct Admin {
    address: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Admin {
    /// The address it listens on (with the port chosen when asked for `:0`).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Binds `address` (`""` is a free loopback port) and answers admin
/// requests there until [shut down](Admin::shutdown).
pub async fn serve(address: &str, health: Health) -> Result<Admin> {
    let bind_to = if address.trim().is_empty() {
        "127.0.0.1:0"
    } else {
        address.trim()
    };
    let listener = TcpListener::bind(bind_to)
        .await
        .map_err(|err| Error::from(err).context(format!("binding the admin address {bind_to}")))?;
    let local = listener
        .local_addr()
        .map_err(|err| Error::from(err).context("reading the admin address"))?;
    let (stop, mut stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        tokio::spawn(answer(stream, health.clone()));
                    }
                    Err(err) => {
                        tracing::debug!(error = %err, "admin accept failed");
                        // Out of descriptors, say: do not spin while it lasts.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
    });
    Ok(Admin {
        address: local.to_string(),
        stop: Some(stop),
        task: Some(task),
    })
}

/// Reads one request and writes its answer; a malformed or slow request
/// gets 400 or nothing.
async fn answer(mut stream: TcpStream, health: Health) {
    let mut request = Vec::with_capacity(512);
    let read = tokio::time::timeout(READ_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            if request.len() >= MAX_REQUEST {
                return false;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => request.extend_from_slice(&chunk[..n]),
            }
        }
        true
    })
    .await;
    let response = if read == Ok(true) {
        route(&request, &health)
    } else if read.is_ok() {
        reply(400, "text/plain", "bad request\n".into())
    } else {
        return;
    };
    let _ = stream.write_all(&response).await;
    let _ = stream.shutdown().await;
}

fn route(request: &[u8], health: &Health) -> Vec<u8> {
    let line = request.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" {
        return reply(405, "text/plain", "only GET\n".into());
    }
    match path {
        "/metrics" => reply(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            Metrics::global().render(),
        ),
        "/health/live" => reply(200, "application/json", r#"{"status":"up"}"#.into()),
        "/health/ready" if health.is_ready() => {
            reply(200, "application/json", r#"{"status":"ready"}"#.into())
        }
        "/health/ready" => reply(503, "application/json", r#"{"status":"not ready"}"#.into()),
        _ => reply(404, "text/plain", "not found\n".into()),
    }
}

fn reply(status: u16, content_type: &str, body: String) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body.as_bytes());
    response
}
