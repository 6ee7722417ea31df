//! The cross-process discovery harness: the `greeter_server` and
//! `greeter_client` example binaries, as separate processes, find each other
//! by service name through a registry backend chosen ONLY by environment
//! variables, and the registry forgets a killed server in time.
//!
//! # Adding a backend (etcd, nats, consul, ...)
//!
//! Write one module in `micro/tests/discovery.rs`, behind the backend's
//! feature, whose three tests each build a fresh [`Backend`] and hand it to
//! the three case functions:
//!
//! ```text
//! #[cfg(feature = "registry-etcd")]
//! mod etcd {
//!     use super::support::{self, Backend};
//!
//!     async fn backend() -> Option<Backend> {
//!         let etcd = micro_test_servers::EtcdServer::shared().await?;   // None = loud skip
//!         let prefix = format!("/micro-test-{:08x}/", rand::random::<u32>()); // isolates this case
//!         let observer = EtcdRegistry::builder().endpoints([etcd.endpoint()]).prefix(&prefix).build().await.ok()?;
//!         Some(Backend::new("etcd", observer)
//!             .env("MICRO_REGISTRY", "etcd")
//!             .env("MICRO_REGISTRY_ADDRESS", etcd.endpoint())
//!             .env("MICRO_ETCD_PREFIX", prefix))
//!     }
//!
//!     #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//!     async fn found_by_name() { if let Some(b) = backend().await { support::found_by_name(b).await } }
//!     #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//!     async fn sigkill_expires() { if let Some(b) = backend().await { support::sigkill_expires(b).await } }
//!     #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//!     async fn clean_stop_deregisters() { if let Some(b) = backend().await { support::clean_stop_deregisters(b).await } }
//! }
//! ```
//!
//! A [`Backend`] is: the environment variables that point both processes at
//! the backend (the processes inherit nothing else from the test), and an
//! `observer` registry built in the test process on the same backend, which
//! the cases watch and look up. Every case runs the service `greeter` (the
//! examples' name), so **each case must be isolated** from cases running in
//! parallel: its own network namespace (mDNS), cluster (gossip), key prefix
//! (etcd) or bucket (NATS). The harness adds `MICRO_REGISTER_TTL` and
//! `MICRO_REGISTER_INTERVAL` (short ones for the SIGKILL case, long ones for
//! the clean-stop case, so that only a deregistration can explain a prompt
//! removal), and builds the example binaries once per test process with the
//! registry features this test binary has (add yours to `example_features`).

#![allow(dead_code, unreachable_pub)]

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::OnceLock,
    time::Duration,
};

use futures::StreamExt;
use micro::registry::{DynRegistry, Event, EventKind, Registry, WatchOptions, WatchStream};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    time::Instant,
};

/// The service name the examples register.
pub const SERVICE: &str = "greeter";

/// How long anything that should happen promptly may take on a busy machine.
pub const WAIT: Duration = Duration::from_secs(60);

/// Slack added to TTL + interval when checking how soon a killed server is
/// forgotten: generous for a shared, noisy machine, yet far below what a node
/// that never expires would take.
pub const EXPIRY_SLACK: Duration = Duration::from_secs(10);

/// TTL and interval for the SIGKILL case.
pub const SHORT_TTL: Duration = Duration::from_secs(3);
/// The re-register interval for the SIGKILL case.
pub const SHORT_INTERVAL: Duration = Duration::from_secs(1);
/// TTL for the clean-stop case: a removal before it can only be a deregistration.
pub const LONG_TTL: Duration = Duration::from_secs(120);

/// One registry backend as both processes and the test see it.
#[derive(Clone)]
pub struct Backend {
    /// For messages.
    pub name: String,
    /// The variables given to both processes (besides the harness's own).
    pub env: Vec<(String, String)>,
    /// Variables given to the server process only (a gossip listen port).
    pub server_env: Vec<(String, String)>,
    /// A registry on the same backend, in the test process.
    pub observer: DynRegistry,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("name", &self.name)
            .field("env", &self.env)
            .field("server_env", &self.server_env)
            .finish_non_exhaustive()
    }
}

impl Backend {
    /// A backend with an observer and no variables yet.
    pub fn new(name: impl Into<String>, observer: impl Registry) -> Backend {
        Backend {
            name: name.into(),
            env: Vec::new(),
            server_env: Vec::new(),
            observer: std::sync::Arc::new(observer),
        }
    }

    /// Adds a variable given to both processes.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Backend {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Adds a variable given to the server process only.
    pub fn server_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Backend {
        self.server_env.push((key.into(), value.into()));
        self
    }
}

/// The example binaries, built once per test process with every backend.
pub fn binaries() -> &'static (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| {
        // target/<profile>/deps/discovery-HASH -> target/<profile>
        let exe = std::env::current_exe().expect("the test binary's path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test binary lives in target/<profile>/deps");
        let target_dir = profile_dir.parent().expect("target/<profile> has a parent");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut build = std::process::Command::new(cargo);
        build
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "build",
                "--quiet",
                "-p",
                "micro-examples",
                "--example",
                "greeter_server",
                "--example",
                "greeter_client",
                "--features",
                &example_features(),
                "--target-dir",
            ])
            .arg(target_dir);
        if profile_dir
            .file_name()
            .is_some_and(|name| name == "release")
        {
            build.arg("--release");
        }
        let status = build.status().expect("running cargo to build the examples");
        assert!(status.success(), "building the example binaries failed");
        let examples = profile_dir.join("examples");
        (
            examples.join("greeter_server"),
            examples.join("greeter_client"),
        )
    })
}

/// The registry features this test binary was built with, for the examples
/// (only those: building every feature would tie these tests to every backend).
fn example_features() -> String {
    let features = [
        ("registry-mdns", cfg!(feature = "registry-mdns")),
        ("registry-gossip", cfg!(feature = "registry-gossip")),
        ("registry-etcd", cfg!(feature = "registry-etcd")),
        ("registry-nats", cfg!(feature = "registry-nats")),
        ("registry-consul", cfg!(feature = "registry-consul")),
    ];
    features
        .iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| format!("micro/{name}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A running `greeter_server` process.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// The address it printed (`listening on ADDRESS`).
    pub address: String,
}

impl Server {
    /// Starts the server with the backend's variables and these timings, and
    /// waits until it says where it listens (it has registered by then).
    pub async fn start(backend: &Backend, ttl: Duration, interval: Duration) -> Server {
        let (server, _) = binaries();
        let mut command = Command::new(server);
        configure(&mut command, backend, ttl, interval);
        command
            .envs(
                backend
                    .server_env
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("starting greeter_server");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let address = tokio::time::timeout(WAIT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(address) = line.strip_prefix("listening on ") {
                    return Some(address.trim().to_owned());
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            panic!(
                "{}: greeter_server never said where it listens",
                backend.name
            )
        });
        Server { child, address }
    }

    /// SIGKILL: no deregistration, no goodbye.
    pub async fn kill(&mut self) {
        self.child.start_kill().expect("killing greeter_server");
        let _ = self.child.wait().await;
    }

    /// SIGTERM, then waits for the process to exit; returns whether it exited 0.
    pub async fn terminate(&mut self) -> bool {
        let pid = self
            .child
            .id()
            .expect("greeter_server is running")
            .to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("running kill");
        assert!(status.success(), "kill -TERM {pid} failed");
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("greeter_server did not exit after SIGTERM")
            .is_ok_and(|status| status.success())
    }
}

fn configure(command: &mut Command, backend: &Backend, ttl: Duration, interval: Duration) {
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .env("MICRO_REGISTER_TTL", format!("{}ms", ttl.as_millis()))
        .env(
            "MICRO_REGISTER_INTERVAL",
            format!("{}ms", interval.as_millis()),
        )
        .envs(backend.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
}

/// What one `greeter_client` run printed, and whether it succeeded.
#[derive(Debug)]
pub struct ClientRun {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Runs `greeter_client NAME` (by service name) with the backend's variables.
pub async fn run_client(backend: &Backend, name: &str) -> ClientRun {
    let (_, client) = binaries();
    let mut command = Command::new(client);
    configure(&mut command, backend, SHORT_TTL, SHORT_INTERVAL);
    command
        .arg(name)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let output = tokio::time::timeout(WAIT, command.output())
        .await
        .unwrap_or_else(|_| panic!("{}: greeter_client hung", backend.name))
        .expect("running greeter_client");
    ClientRun {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// The observer's watch on the greeter.
pub async fn watch(backend: &Backend) -> WatchStream {
    backend
        .observer
        .watch(&WatchOptions::service(SERVICE))
        .await
        .unwrap_or_else(|err| panic!("{}: opening a watch: {err}", backend.name))
}

/// The next `kind` event (skipping others), failing after `within`.
pub async fn next(watch: &mut WatchStream, kind: EventKind, within: Duration) -> Event {
    tokio::time::timeout(within, async {
        loop {
            match watch.next().await {
                Some(Ok(event)) if event.kind == kind => return event,
                Some(Ok(_)) => continue,
                other => panic!("watch failed while waiting for {kind:?}: {other:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind:?} of {SERVICE} within {within:?}"))
}

/// Whether the observer's lookups find no greeter.
pub async fn lookup_is_empty(backend: &Backend) -> bool {
    match backend.observer.get_service(SERVICE).await {
        Err(err) => err.kind() == micro::ErrorKind::NotFound,
        Ok(found) => found.iter().all(|service| service.nodes.is_empty()),
    }
}

/// The server registers, the observer sees it with the address the server
/// printed, and a separate client process calls it by name.
pub async fn found_by_name(backend: Backend) {
    let mut changes = watch(&backend).await;
    let mut server = Server::start(&backend, SHORT_TTL, SHORT_INTERVAL).await;
    let created = next(&mut changes, EventKind::Create, WAIT).await;
    assert_eq!(
        created.service.nodes[0].address, server.address,
        "{}: the registered address is the one the server listens on",
        backend.name
    );
    let run = run_client(&backend, "Ada").await;
    assert!(
        run.success && run.stdout.contains("Hello, Ada"),
        "{}: greeter_client by name failed: {run:?}",
        backend.name
    );
    println!(
        "{}: greeter_client found greeter by name and called it in {:?}",
        backend.name, run.elapsed
    );
    assert!(
        server.terminate().await,
        "greeter_server exits 0 on SIGTERM"
    );
}

/// A server killed with SIGKILL leaves the observer's watch (a `Delete`) and
/// lookups within its TTL plus one re-register interval (plus slack), and a
/// fresh client process no longer finds it.
pub async fn sigkill_expires(backend: Backend) {
    let mut changes = watch(&backend).await;
    let mut server = Server::start(&backend, SHORT_TTL, SHORT_INTERVAL).await;
    next(&mut changes, EventKind::Create, WAIT).await;

    let killed = Instant::now();
    server.kill().await;
    let bound = SHORT_TTL + SHORT_INTERVAL + EXPIRY_SLACK;
    let deleted = next(&mut changes, EventKind::Delete, bound).await;
    let elapsed = killed.elapsed();
    assert_eq!(deleted.service.nodes[0].address, server.address);
    println!(
        "{}: SIGKILLed server removed from the watch after {elapsed:?} (TTL {SHORT_TTL:?}, interval {SHORT_INTERVAL:?})",
        backend.name
    );
    let deadline = Instant::now() + WAIT;
    while !lookup_is_empty(&backend).await {
        assert!(
            Instant::now() < deadline,
            "{}: lookups still return the killed server",
            backend.name
        );
        // The watch said it is gone; lookups catch up right after.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let run = run_client(&backend, "Ada").await;
    assert!(
        !run.success,
        "{}: a fresh client still reached the killed server: {run:?}",
        backend.name
    );
}

/// A server stopped with SIGTERM deregisters at once: the observer sees the
/// `Delete` long before its (long) TTL could have expired it.
pub async fn clean_stop_deregisters(backend: Backend) {
    let mut changes = watch(&backend).await;
    let mut server = Server::start(&backend, LONG_TTL, LONG_TTL / 3).await;
    next(&mut changes, EventKind::Create, WAIT).await;

    let stopped = Instant::now();
    assert!(
        server.terminate().await,
        "greeter_server exits 0 on SIGTERM"
    );
    // WAIT is half the TTL: only a deregistration explains a Delete within it.
    next(&mut changes, EventKind::Delete, WAIT).await;
    println!(
        "{}: SIGTERMed server deregistered, seen {:?} after the signal (TTL {LONG_TTL:?})",
        backend.name,
        stopped.elapsed()
    );
    assert!(
        lookup_is_empty(&backend).await,
        "{}: lookups still return the stopped server",
        backend.name
    );
}
