//! The local runtime fetches the `greeter_server` example from a git
//! repository (`file://`), builds it with cargo, runs it, and the test calls
//! it through micro's client by service name; then SIGKILLs it, sees the
//! runtime restart it, calls it again, and stops it.
//!
//! The repository is made here: a tiny crate whose `src/main.rs` is this
//! workspace's `examples/greeter_server.rs`, depending on `micro` and
//! `micro-examples` by path, with this workspace's `Cargo.lock` so the build
//! reuses the target directory's artifacts (`CARGO_TARGET_DIR`, else the
//! workspace's `target/`).
//!
//! How "by name" works here: the greeter uses its default registry,
//! `MICRO_REGISTRY=memory`, which lives inside its own process, so another
//! process cannot look it up there. The test reads the address the greeter
//! prints ("listening on ADDRESS") from the runtime's log and registers that
//! node under "greeter" in the client's registry; the client then calls
//! "greeter" by name through that registry, its selector and the HTTP
//! transport. With a shared registry (`MICRO_REGISTRY=etcd|nats` in the spec's
//! env) the greeter would register itself and this step would go away.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use futures::StreamExt;
use micro::{
    Client,
    registry::{Node, RegisterOptions, Registry, Service, memory::MemoryRegistry},
    transport::http::HttpTransport,
};
use micro_runtime::{
    LogOptions, LogStream, Runtime, ServiceSpec, Source, State, Target, local::LocalRuntime,
};
use serde::{Deserialize, Serialize};

const BUILD_TIMEOUT: Duration = Duration::from_secs(900);
const EVENT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Serialize)]
struct HelloRequest {
    name: String,
}

#[derive(Deserialize)]
struct HelloReply {
    message: String,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_owned()
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(["-c", "user.name=micro", "-c", "user.email=micro@localhost"])
        .args(args)
        .current_dir(dir)
        .status()
        .expect("running git");
    assert!(status.success(), "git {args:?} failed");
}

/// A git repository holding the greeter as its own crate; its `file://` URL.
fn greeter_repository(dir: &Path) -> String {
    let workspace = workspace();
    let manifest = format!(
        r#"[package]
name = "greeter-from-git"
version = "0.1.0"
edition = "2024"
publish = false

[[bin]]
name = "greeter_server"
path = "src/main.rs"

[dependencies]
micro = {{ path = "{micro}" }}
micro-examples = {{ path = "{examples}" }}
tokio = {{ version = "1", features = ["rt-multi-thread", "macros", "signal"] }}

[workspace]
"#,
        micro = workspace.join("micro").display(),
        examples = workspace.join("examples").display(),
    );
    std::fs::create_dir_all(dir.join("src")).expect("repo dir");
    std::fs::write(dir.join("Cargo.toml"), manifest).expect("manifest");
    std::fs::copy(
        workspace.join("examples/greeter_server.rs"),
        dir.join("src/main.rs"),
    )
    .expect("copying the greeter example");
    std::fs::copy(workspace.join("Cargo.lock"), dir.join("Cargo.lock")).expect("lock file");
    git(dir, &["init", "--quiet"]);
    git(dir, &["add", "."]);
    git(dir, &["commit", "--quiet", "-m", "greeter"]);
    format!("file://{}", dir.display())
}

/// The address of the next "listening on ADDRESS" line.
async fn next_address(logs: &mut LogStream) -> String {
    let found = async {
        while let Some(line) = logs.next().await {
            let line = line.expect("log stream");
            if let Some(address) = line.text.strip_prefix("listening on ") {
                return address.trim().to_owned();
            }
        }
        panic!("the log ended before the greeter listened");
    };
    tokio::time::timeout(EVENT_TIMEOUT, found)
        .await
        .expect("the greeter printed its address")
}

/// Registers the greeter's node found in its log, replacing the old one.
async fn register(registry: &MemoryRegistry, address: &str, old: Option<&Service>) -> Service {
    if let Some(old) = old {
        registry.deregister(old).await.expect("deregister");
    }
    let service =
        Service::new("greeter").with_node(Node::new(format!("greeter-{address}"), address));
    registry
        .register(&service, &RegisterOptions::default())
        .await
        .expect("register");
    service
}

async fn greet(client: &Client) -> String {
    let reply: HelloReply = client
        .call(
            "greeter",
            "Greeter.Hello",
            &HelloRequest { name: "Ada".into() },
        )
        .await
        .expect("calling greeter by name");
    reply.message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_runs_restarts_and_stops_the_greeter_from_git() {
    let repo = tempfile::tempdir().expect("temp dir");
    let url = greeter_repository(repo.path());
    let work = tempfile::tempdir().expect("temp dir");
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    let runtime = LocalRuntime::builder()
        .workdir(work.path())
        .target_dir(target_dir)
        .release(false)
        .grace_period(Duration::from_secs(10))
        .build();

    let spec = ServiceSpec::new(
        "greeter",
        Source::Git {
            url,
            reference: None,
        },
    )
    .with_target(Target::Bin("greeter_server".into()))
    .with_env("MICRO_REGISTRY", "memory")
    .with_env("MICRO_TRANSPORT", "http");
    runtime.create(spec).await.expect("create from git");
    assert_eq!(
        runtime.status("greeter").await.unwrap().state,
        State::Created
    );
    let built = tokio::time::timeout(BUILD_TIMEOUT, runtime.build("greeter")).await;
    if !matches!(built, Ok(Ok(()))) {
        let log: Vec<_> = runtime
            .logs("greeter", &LogOptions::default())
            .await
            .unwrap()
            .collect()
            .await;
        for line in log.into_iter().flatten() {
            eprintln!("{}", line.text);
        }
        panic!("building the greeter failed: {built:?}");
    }
    assert_eq!(runtime.status("greeter").await.unwrap().state, State::Built);

    let mut logs = runtime
        .logs("greeter", &LogOptions::follow())
        .await
        .unwrap();
    runtime.start("greeter").await.expect("start");
    let address = next_address(&mut logs).await;
    let first_pid = runtime.status("greeter").await.unwrap().pid.expect("pid");

    let registry = MemoryRegistry::new();
    let client = Client::builder()
        .registry(registry.clone())
        .transport(HttpTransport::new())
        .build()
        .expect("client");
    let node = register(&registry, &address, None).await;
    assert_eq!(greet(&client).await, "Hello, Ada");

    // A crash: the runtime restarts it (default policy: on failure, backoff).
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(first_pid).expect("pid")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL the greeter");
    let address = next_address(&mut logs).await;
    let status = runtime.status("greeter").await.unwrap();
    assert_eq!(status.state, State::Running);
    assert_eq!(status.restarts, 1);
    assert!(
        status
            .last_exit
            .as_deref()
            .is_some_and(|exit| exit.contains("9")),
        "{status:?}"
    );
    let second_pid = status.pid.expect("pid");
    assert_ne!(second_pid, first_pid);
    register(&registry, &address, Some(&node)).await;
    assert_eq!(greet(&client).await, "Hello, Ada");

    runtime.stop("greeter").await.expect("stop");
    let status = runtime.status("greeter").await.unwrap();
    assert_eq!(status.state, State::Stopped);
    // The greeter handles SIGTERM (deregisters, drains) and exits 0.
    assert_eq!(
        status.last_exit.as_deref(),
        Some("exit status: 0"),
        "{status:?}"
    );
    runtime.delete("greeter").await.expect("delete");
}
