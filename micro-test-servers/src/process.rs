//! A server process under a watchdog, with kill and restart.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// How long a server gets to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the server in the background, prints its pid, and kills it when stdin
/// reaches end of file, which happens when the test process drops its end or
/// dies, however it dies. Background jobs of a non-interactive shell read
/// /dev/null, so the server never holds the pipe itself.
const WATCHDOG: &str = r#"
"$@" >>"$MICRO_SERVER_LOG" 2>&1 &
server=$!
echo "$server"
# The shell would report "Killed" for its job below; nobody needs that.
exec 2>/dev/null
read -r reason
kill -9 "$server" 2>/dev/null
wait "$server"
# Only kill() says "keep" (a restart follows). Anything else means the test
# process is gone, and nobody will delete the data directory but us: a shared
# server's lives in a static that is never dropped.
[ "$reason" = keep ] || rm -rf "$MICRO_SERVER_DATA"
"#;

/// What a server needs to be started again the same way.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    data: PathBuf,
    log: PathBuf,
    running: Mutex<Option<Running>>,
}

#[derive(Debug)]
struct Running {
    watchdog: Child,
    stdin: ChildStdin,
}

impl ServerProcess {
    /// `data` is the server's data directory: the watchdog deletes it once
    /// the test process is gone (not after [`kill`](Self::kill)).
    pub(crate) fn new(
        name: &'static str,
        program: PathBuf,
        args: Vec<String>,
        data: PathBuf,
        log: PathBuf,
    ) -> Self {
        ServerProcess {
            name,
            program,
            args,
            data,
            log,
            running: Mutex::new(None),
        }
    }

    /// Spawns the server (unless it runs) and waits until `ready` says so.
    pub(crate) async fn spawn_and_wait<F, Fut>(&self, ready: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = bool>,
    {
        self.spawn();
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        while !ready().await {
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "{} did not become ready within {READY_TIMEOUT:?}; its log:\n{}",
                    self.name,
                    log_tail(&self.log)
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn spawn(&self) {
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if running.is_some() {
            return;
        }
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("watchdog")
            .arg(&self.program)
            .args(&self.args)
            .env("MICRO_SERVER_LOG", &self.log)
            .env("MICRO_SERVER_DATA", &self.data)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start {} ({}): {err}",
                    self.name,
                    self.program.display()
                )
            });
        let stdin = watchdog.stdin.take().expect("stdin was piped");
        let stdout = watchdog.stdout.take().expect("stdout was piped");
        // The pid line tells us the server was launched; its value isn't needed
        // because the watchdog does the killing.
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap_or_else(|err| panic!("{} watchdog: {err}", self.name));
        *running = Some(Running { watchdog, stdin });
    }

    /// SIGKILLs the server and waits until it has exited.
    pub(crate) async fn kill(&self) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(Running {
            mut watchdog,
            mut stdin,
        }) = running
        {
            // "keep": a restart will want the data. If the write fails, the
            // watchdog and its server are gone already.
            let _ = stdin.write_all(b"keep\n");
            drop(stdin);
            tokio::task::spawn_blocking(move || watchdog.wait())
                .await
                .ok();
        }
    }

    pub(crate) fn log(&self) -> &Path {
        &self.log
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Closing the pipe makes the watchdog kill the server.
        if let Some(Running {
            mut watchdog,
            stdin,
        }) = self
            .running
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
        {
            drop(stdin);
            let _ = watchdog.wait();
        }
    }
}

/// The last lines of a log, for failure messages.
pub(crate) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Whether `GET path` on a loopback port answers 200 and its body contains `expect`.
pub(crate) async fn http_get_ok(port: u16, path: &str, expect: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let response = String::from_utf8_lossy(&response);
        Some(
            response.starts_with("HTTP/1.")
                && response.contains(" 200 ")
                && response.contains(expect),
        )
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}
