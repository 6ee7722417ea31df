//! The local runtime with real processes: a tiny dependency-free crate,
//! built once through the runtime, that behaves as its `MODE` variable says.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use futures::StreamExt;
use micro_runtime::{
    ErrorKind, LogOptions, LogStream, RestartMode, RestartPolicy, Runtime, ServiceSpec, Source,
    State, local::LocalRuntime,
};

const EVENT_TIMEOUT: Duration = Duration::from_secs(120);

const FIXTURE_MAIN: &str = r#"
use std::{io::Write, os::unix::process::CommandExt, process::Command, time::Duration};

fn main() {
    let mode = std::env::var("MODE").unwrap_or_default();
    let name = std::env::var("MICRO_SERVICE_NAME").unwrap_or_default();
    match mode.as_str() {
        "crash" => {
            println!("crashing");
            std::process::exit(3);
        }
        "stubborn" => {
            // A shell that ignores SIGTERM, as a service that will not stop.
            let err = Command::new("sh")
                .args(["-c", "trap '' TERM; echo ready; while :; do sleep 1; done"])
                .exec();
            panic!("exec sh: {err}");
        }
        "family" => {
            let child = Command::new("sleep").arg("1000").spawn().expect("spawn sleep");
            println!("grandchild {}", child.id());
        }
        _ => {
            println!(
                "hello from {name} foo={} registry={}",
                std::env::var("FOO").unwrap_or_default(),
                std::env::var("MICRO_REGISTRY").unwrap_or_default()
            );
            eprintln!("to stderr");
        }
    }
    std::io::stdout().flush().ok();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
"#;

/// The fixture crate, written once per test build (cargo's per-test temp dir).
fn fixture_crate() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("micro-runtime-fixture");
    std::fs::create_dir_all(dir.join("src")).expect("fixture dir");
    let manifest = "[package]\nname = \"runtime-fixture\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n[workspace]\n";
    write_if_changed(&dir.join("Cargo.toml"), manifest);
    write_if_changed(&dir.join("src/main.rs"), FIXTURE_MAIN);
    dir
}

fn write_if_changed(path: &Path, contents: &str) {
    if std::fs::read_to_string(path).ok().as_deref() != Some(contents) {
        std::fs::write(path, contents).expect("writing the fixture crate");
    }
}

fn runtime() -> LocalRuntime {
    LocalRuntime::builder()
        .release(false)
        .target_dir(Path::new(env!("CARGO_TARGET_TMPDIR")).join("micro-runtime-fixture-target"))
        .grace_period(Duration::from_millis(500))
        .env("MICRO_REGISTRY", "memory")
        .build()
}

async fn built(runtime: &LocalRuntime, name: &str, mode: &str, restart: RestartPolicy) {
    let spec = ServiceSpec::new(name, Source::Path(fixture_crate()))
        .with_env("MODE", mode)
        .with_env("FOO", "bar")
        .with_restart(restart);
    runtime.create(spec).await.expect("create");
    runtime.build(name).await.expect("build");
}

/// Reads `logs` until a line contains `needle`; returns that line.
async fn wait_for_line(logs: &mut LogStream, needle: &str) -> String {
    let found = async {
        while let Some(line) = logs.next().await {
            let line = line.expect("log stream");
            if line.text.contains(needle) {
                return line.text;
            }
        }
        panic!("the log ended before {needle:?}");
    };
    tokio::time::timeout(EVENT_TIMEOUT, found)
        .await
        .unwrap_or_else(|_| panic!("no log line with {needle:?} within {EVENT_TIMEOUT:?}"))
}

/// Whether process `pid` is gone (or a zombie about to be reaped).
fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

async fn wait_gone(pid: u32) {
    let gone = async {
        while !is_gone(pid) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(EVENT_TIMEOUT, gone)
        .await
        .unwrap_or_else(|_| panic!("process {pid} still alive after {EVENT_TIMEOUT:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_with_its_environment_logs_and_stops_gracefully() {
    let runtime = runtime();
    built(&runtime, "hello", "lines", RestartPolicy::default()).await;
    let mut logs = runtime.logs("hello", &LogOptions::follow()).await.unwrap();
    runtime.start("hello").await.unwrap();
    // Stdout and stderr are separate pipes: their lines may come in either order.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let line = wait_for_line(&mut logs, "").await;
        if line.starts_with("hello from") || line == "to stderr" {
            seen.push(line);
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        ["hello from hello foo=bar registry=memory", "to stderr"]
    );

    let status = runtime.status("hello").await.unwrap();
    assert_eq!(status.state, State::Running);
    let pid = status.pid.expect("a running service has a pid");
    assert_eq!(runtime.list().await.unwrap(), vec![status]);

    runtime.stop("hello").await.unwrap();
    let status = runtime.status("hello").await.unwrap();
    assert_eq!(status.state, State::Stopped);
    assert_eq!(status.pid, None);
    assert!(
        status
            .last_exit
            .as_deref()
            .is_some_and(|exit| exit.contains("15")),
        "stopped by SIGTERM: {status:?}"
    );
    wait_gone(pid).await;

    // Logs stay readable after the stop, without following.
    let lines: Vec<_> = runtime
        .logs("hello", &LogOptions::default())
        .await
        .unwrap()
        .collect()
        .await;
    assert!(
        lines
            .iter()
            .flatten()
            .any(|line| line.text.contains("stopped"))
    );
    runtime.delete("hello").await.unwrap();
    assert_eq!(
        runtime.status("hello").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_service_is_restarted_with_backoff_until_the_policy_gives_up() {
    let runtime = runtime();
    let mut policy = RestartPolicy::default();
    policy.mode = RestartMode::OnFailure;
    policy.max_restarts = Some(3);
    policy.initial_backoff = Duration::from_millis(20);
    policy.max_backoff = Duration::from_millis(100);
    policy.reset_after = Duration::from_secs(60);
    built(&runtime, "crasher", "crash", policy).await;
    let mut logs = runtime
        .logs("crasher", &LogOptions::follow())
        .await
        .unwrap();
    runtime.start("crasher").await.unwrap();
    let mut delays = Vec::new();
    for _ in 0..3 {
        wait_for_line(&mut logs, "exited: exit status: 3").await;
        delays.push(wait_for_line(&mut logs, "restarting in").await);
    }
    wait_for_line(&mut logs, "exited: exit status: 3").await;
    wait_for_line(&mut logs, "not restarted: 3 restarts in a row").await;
    assert_eq!(
        delays,
        [
            "crasher: restarting in 20ms",
            "crasher: restarting in 40ms",
            "crasher: restarting in 80ms"
        ]
    );
    let status = runtime.status("crasher").await.unwrap();
    assert_eq!(status.state, State::Exited);
    assert_eq!(status.restarts, 3);
    assert_eq!(status.last_exit.as_deref(), Some("exit status: 3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_ignoring_sigterm_is_killed_after_the_grace_period() {
    let runtime = runtime();
    built(&runtime, "stubborn", "stubborn", RestartPolicy::default()).await;
    let mut logs = runtime
        .logs("stubborn", &LogOptions::follow())
        .await
        .unwrap();
    runtime.start("stubborn").await.unwrap();
    wait_for_line(&mut logs, "ready").await;
    let pid = runtime.status("stubborn").await.unwrap().pid.expect("pid");
    runtime.stop("stubborn").await.unwrap();
    wait_for_line(&mut logs, "SIGKILL").await;
    let status = runtime.status("stubborn").await.unwrap();
    assert_eq!(status.state, State::Stopped);
    assert!(
        status
            .last_exit
            .as_deref()
            .is_some_and(|exit| exit.contains("9")),
        "killed: {status:?}"
    );
    wait_gone(pid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_runtime_leaves_no_process_behind() {
    let runtime = runtime();
    built(&runtime, "family", "family", RestartPolicy::default()).await;
    let mut logs = runtime.logs("family", &LogOptions::follow()).await.unwrap();
    runtime.start("family").await.unwrap();
    let line = wait_for_line(&mut logs, "grandchild").await;
    let grandchild: u32 = line
        .trim_start_matches("grandchild ")
        .parse()
        .expect("grandchild pid");
    let pid = runtime.status("family").await.unwrap().pid.expect("pid");
    assert!(!is_gone(pid) && !is_gone(grandchild));
    drop(runtime);
    wait_gone(pid).await;
    wait_gone(grandchild).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_replaces_the_process() {
    let runtime = runtime();
    built(&runtime, "again", "lines", RestartPolicy::never()).await;
    runtime.start("again").await.unwrap();
    let first = runtime.status("again").await.unwrap().pid.expect("pid");
    runtime.restart("again").await.unwrap();
    let second = runtime.status("again").await.unwrap().pid.expect("pid");
    assert_ne!(first, second);
    wait_gone(first).await;
    runtime.stop("again").await.unwrap();
    wait_gone(second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistakes_are_typed_errors() {
    let runtime = runtime();
    let spec = ServiceSpec::new("Bad_Name", Source::Path(fixture_crate()));
    assert_eq!(
        runtime.create(spec).await.unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        runtime.start("nobody").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );

    let empty = tempfile::tempdir().unwrap();
    let spec = ServiceSpec::new("empty", Source::Path(empty.path().to_owned()));
    assert_eq!(
        runtime.create(spec).await.unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        runtime.status("empty").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );

    let spec = ServiceSpec::new("twice", Source::Path(fixture_crate()));
    runtime.create(spec.clone()).await.unwrap();
    assert_eq!(
        runtime.create(spec).await.unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        runtime.start("twice").await.unwrap_err().kind(),
        ErrorKind::FailedPrecondition,
        "starting before building"
    );
    let missing = format!("file://{}/no-such-repo", empty.path().display());
    let spec = ServiceSpec::new(
        "gone",
        Source::Git {
            url: missing,
            reference: None,
        },
    );
    assert_eq!(
        runtime.create(spec).await.unwrap_err().kind(),
        ErrorKind::Unavailable
    );
}
