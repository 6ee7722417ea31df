//! Processes and namespaces for the discovery benchmark: the example binaries
//! (`greeter_server`, `greeter_client`) built with every backend, and a
//! network namespace that keeps mDNS off the host's interfaces.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use micro::{Error, Result};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// How long a process may take to say or do what it should.
const WAIT: Duration = Duration::from_secs(60);

/// The example binaries beside this benchmark's binary, built (once, by
/// cargo) with the registry backends measured here.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    server: PathBuf,
    client: PathBuf,
}

impl Binaries {
    /// Builds `greeter_server` and `greeter_client` into this binary's target
    /// directory and profile.
    pub(crate) fn build() -> Result<Binaries> {
        let exe = std::env::current_exe()
            .map_err(|err| Error::internal(format!("locating micro-bench: {err}")))?;
        let profile_dir = exe
            .parent()
            .ok_or_else(|| Error::internal("micro-bench has no parent directory"))?;
        let target_dir = profile_dir
            .parent()
            .ok_or_else(|| Error::internal("micro-bench is not in target/<profile>"))?;
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut build = std::process::Command::new(cargo);
        build
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
                // The registry backends this benchmark measures (see discovery.rs).
                "micro/registry-mdns,micro/registry-gossip",
                "--target-dir",
            ])
            .arg(target_dir);
        if profile_dir
            .file_name()
            .is_some_and(|name| name == "release")
        {
            build.arg("--release");
        }
        let status = build
            .status()
            .map_err(|err| Error::unavailable(format!("running cargo: {err}")))?;
        if !status.success() {
            return Err(Error::unavailable("building the example binaries failed"));
        }
        let examples = profile_dir.join("examples");
        Ok(Binaries {
            server: examples.join("greeter_server"),
            client: examples.join("greeter_client"),
        })
    }
}

/// The variables of one two-process run.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProcessEnv {
    /// Given to both processes.
    pub(crate) both: Vec<(String, String)>,
    /// Given to the server only.
    pub(crate) server: Vec<(String, String)>,
}

fn command(path: &Path, env: &[(String, String)], ttl: Duration, interval: Duration) -> Command {
    let mut command = Command::new(path);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "error")
        .env("MICRO_REGISTER_TTL", format!("{}ms", ttl.as_millis()))
        .env(
            "MICRO_REGISTER_INTERVAL",
            format!("{}ms", interval.as_millis()),
        )
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    command
}

/// A running `greeter_server`.
#[derive(Debug)]
pub(crate) struct Server {
    child: Child,
    pub(crate) address: String,
}

impl Server {
    /// Starts it and waits until it has registered and says where it listens.
    pub(crate) async fn start(
        binaries: &Binaries,
        env: &ProcessEnv,
        ttl: Duration,
        interval: Duration,
    ) -> Result<Server> {
        let all: Vec<_> = env.both.iter().chain(&env.server).cloned().collect();
        let mut child = command(&binaries.server, &all, ttl, interval)
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|err| Error::unavailable(format!("starting greeter_server: {err}")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::internal("greeter_server's stdout is not piped"))?;
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
        .ok_or_else(|| Error::unavailable("greeter_server never said where it listens"))?;
        Ok(Server { child, address })
    }

    /// SIGKILL, and waits for the process to be gone.
    pub(crate) async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// Runs `greeter_client` (by name, or at `address`) and returns how long it
/// took to print the greeting; an error if it failed.
pub(crate) async fn run_client(
    binaries: &Binaries,
    env: &ProcessEnv,
    address: Option<&str>,
) -> Result<Duration> {
    let mut command = command(
        &binaries.client,
        &env.both,
        Duration::from_secs(30),
        Duration::from_secs(10),
    );
    if let Some(address) = address {
        command.arg(address);
    }
    command.arg("Ada").stdout(Stdio::piped());
    let started = Instant::now();
    let output = tokio::time::timeout(WAIT, command.output())
        .await
        .map_err(|_| Error::timeout("greeter_client hung"))?
        .map_err(|err| Error::unavailable(format!("running greeter_client: {err}")))?;
    let elapsed = started.elapsed();
    if output.status.success() && String::from_utf8_lossy(&output.stdout).contains("Hello, Ada") {
        Ok(elapsed)
    } else {
        Err(Error::unavailable(format!(
            "greeter_client failed: {}",
            String::from_utf8_lossy(&output.stdout)
        )))
    }
}

/// A named network namespace with loopback up and multicast on; deleted on drop.
#[derive(Debug)]
pub(crate) struct Netns {
    pub(crate) name: String,
}

impl Netns {
    /// A new namespace, or an error saying why not (needs root and iproute2).
    pub(crate) fn create() -> Result<Netns> {
        let name = format!("micro-bench-{}", std::process::id());
        ip(&["netns", "add", &name])?;
        let netns = Netns { name };
        ip(&[
            "-n",
            &netns.name,
            "link",
            "set",
            "dev",
            "lo",
            "up",
            "multicast",
            "on",
        ])?;
        Ok(netns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "delete", &self.name]);
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let status = std::process::Command::new("ip")
        .args(args)
        .stderr(Stdio::null())
        .status()
        .map_err(|err| Error::unavailable(format!("running ip: {err}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::unavailable(format!(
            "ip {} failed (needs root and iproute2)",
            args.join(" ")
        )))
    }
}

/// A free loopback UDP port, as `127.0.0.1:PORT`.
pub(crate) fn free_udp_address() -> Result<String> {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .map(|address| address.to_string())
        .map_err(|err| Error::unavailable(format!("finding a free UDP port: {err}")))
}
