//! The `hooks` example as two processes: `hooks subscriber` (the `email`
//! service) and `hooks publisher` (the `users` service), the broker chosen
//! only by environment variables: over NATS, and over the HTTP broker with a
//! registry both processes share (the NATS registry; the memory registry is
//! per process). Each case checks that the email was "sent" (printed) by the
//! subscriber process.
//!
//! A TLS-only deployment runs it too: the HTTP transport, the HTTP broker's
//! endpoint and the registry's server (NATS, or etcd with client
//! certificates) all speak only TLS, configured by environment variables.
//!
//! The example binary is built with every backend (`micro-examples/full`)
//! once per test process, into this test's target directory.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::OnceLock,
    time::Duration,
};

use micro_test_servers::{EtcdServer, EtcdTls, NatsServer, tls::TestCa};
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{ChildStdout, Command},
    time::timeout,
};

/// Starting a process, connecting and subscribing: generous, the machine is shared.
const WAIT: Duration = Duration::from_secs(60);
const EMAIL: &str = "email to user42@example.com: your password was changed (user 42)";

/// The variables micro reads, cleared so the parent's environment cannot leak in.
const MICRO_VARIABLES: [&str; 13] = [
    "MICRO_TLS_CERT",
    "MICRO_TLS_KEY",
    "MICRO_TLS_CA",
    "MICRO_TLS_CLIENT_CA",
    "MICRO_TLS_SERVER_NAME",
    "MICRO_REGISTRY",
    "MICRO_REGISTRY_ADDRESS",
    "MICRO_BROKER",
    "MICRO_BROKER_ADDRESS",
    "MICRO_TRANSPORT",
    "MICRO_TRANSPORT_ADDRESS",
    "MICRO_REGISTER_TTL",
    "MICRO_REGISTER_INTERVAL",
];

fn hooks_binary() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        // target/<profile>/deps/hooks_processes-HASH -> target/<profile>
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
                "hooks",
                "--features",
                "micro-examples/full",
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
            .expect("running cargo to build the hooks example");
        assert!(status.success(), "building the hooks example failed");
        profile_dir.join("examples").join("hooks")
    })
}

fn hooks(mode: &[&str], env: &[(&str, String)]) -> Command {
    let mut command = Command::new(hooks_binary());
    command.args(mode).kill_on_drop(true).stdin(Stdio::null());
    for name in MICRO_VARIABLES {
        command.env_remove(name);
    }
    command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    command
}

/// Reads lines until one equals `wanted`, returning every line read.
async fn read_until(
    lines: &mut Lines<BufReader<ChildStdout>>,
    wanted: &str,
    who: &str,
) -> Vec<String> {
    let mut seen = Vec::new();
    let found = timeout(WAIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            let done = line == wanted;
            seen.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(found, Ok(true)),
        "{who} never printed {wanted:?}; it printed {seen:?}"
    );
    seen
}

async fn email_sent_across_processes(env: &[(&str, String)]) {
    let mut subscriber = hooks(&["subscriber", "--emails", "1"], env)
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting `hooks subscriber`");
    let stdout = subscriber.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    read_until(&mut lines, "email: ready", "the subscriber").await;

    let publisher = hooks(&["publisher"], env).stdout(Stdio::piped()).output();
    let publisher = timeout(WAIT, publisher)
        .await
        .expect("the publisher finished")
        .expect("running `hooks publisher`");
    let printed = String::from_utf8_lossy(&publisher.stdout);
    assert!(
        publisher.status.success(),
        "the publisher failed ({}): {printed}\n{}",
        publisher.status,
        String::from_utf8_lossy(&publisher.stderr)
    );
    assert!(
        printed.contains("users: password of user 42 changed, hook published"),
        "{printed}"
    );
    assert!(
        printed.contains("users: refused a weak password (invalid_argument)"),
        "{printed}"
    );

    read_until(&mut lines, EMAIL, "the subscriber").await;
    // It exits by itself after its one email.
    let status = timeout(WAIT, subscriber.wait())
        .await
        .expect("the subscriber exits after one email")
        .expect("waiting for the subscriber");
    assert!(status.success(), "the subscriber exited with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_nats() {
    let Some(nats) = NatsServer::start().await else {
        return;
    };
    email_sent_across_processes(&[
        ("MICRO_BROKER", "nats".to_owned()),
        ("MICRO_BROKER_ADDRESS", nats.url()),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_http_broker_with_a_shared_registry() {
    let Some(nats) = NatsServer::start().await else {
        return;
    };
    email_sent_across_processes(&[
        ("MICRO_BROKER", "http".to_owned()),
        ("MICRO_REGISTRY", "nats".to_owned()),
        ("MICRO_REGISTRY_ADDRESS", nats.url()),
    ])
    .await;
}

/// Certificates of a TLS-only deployment: one CA; both processes use the
/// same identity (a certificate for 127.0.0.1), as services of one team would.
fn tls_everywhere(ca: &TestCa) -> Vec<(&'static str, String)> {
    let identity = ca.issue("service", &["127.0.0.1", "localhost"]);
    vec![
        ("MICRO_TRANSPORT", "http".to_owned()),
        ("MICRO_BROKER", "http".to_owned()),
        ("MICRO_TLS_CERT", identity.cert),
        ("MICRO_TLS_KEY", identity.key),
        ("MICRO_TLS_CA", ca.cert.clone()),
        ("MICRO_TLS_CLIENT_CA", ca.cert.clone()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_only_with_the_http_broker_and_a_nats_registry() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ca = TestCa::new(dir.path(), "ca");
    let nats_cert = ca.issue("nats", &["127.0.0.1"]);
    let Some(nats) = NatsServer::start_with_args(&[
        "--tls",
        "--tlscert",
        &nats_cert.cert,
        "--tlskey",
        &nats_cert.key,
    ])
    .await
    else {
        return;
    };
    let mut env = tls_everywhere(&ca);
    env.extend([
        ("MICRO_REGISTRY", "nats".to_owned()),
        ("MICRO_NATS_URL", format!("tls://127.0.0.1:{}", nats.port())),
        ("MICRO_NATS_TLS_CA", ca.cert.clone()),
    ]);
    email_sent_across_processes(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_only_with_the_http_broker_and_an_etcd_registry() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ca = TestCa::new(dir.path(), "ca");
    let etcd_cert = ca.issue("etcd", &["127.0.0.1", "localhost"]);
    let Some(etcd) = EtcdServer::start_tls(&EtcdTls {
        cert_file: etcd_cert.cert.clone().into(),
        key_file: etcd_cert.key.clone().into(),
        client_ca_file: Some(ca.cert.clone().into()),
    })
    .await
    else {
        return;
    };
    let mut env = tls_everywhere(&ca);
    let client = ca.issue("etcd-client", &["client.example"]);
    env.extend([
        ("MICRO_REGISTRY", "etcd".to_owned()),
        ("MICRO_ETCD_URL", etcd.endpoint()),
        ("MICRO_ETCD_TLS_CA", ca.cert.clone()),
        ("MICRO_ETCD_TLS_CERT", client.cert),
        ("MICRO_ETCD_TLS_KEY", client.key),
    ]);
    email_sent_across_processes(&env).await;
}
