//! Interop on NATS: a Python `nats-py` client publishes an event that a micro
//! service handles, and receives an event a micro service publishes, headers
//! preserved both ways. The service picks the NATS broker only through
//! `MICRO_BROKER=nats` and `MICRO_BROKER_ADDRESS`.
//!
//! Needs `python3` with `nats-py` (`python3 -m pip install nats-py`); with
//! `MICRO_TEST_REQUIRE_SERVERS=1` a missing one fails the test.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use micro::{Metadata, Service, env::EnvConfig};
use micro_test_servers::NatsServer;
use serde::{Deserialize, Serialize};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PasswordChanged {
    user_id: u64,
    source: String,
}

/// Publishes one event with headers, as a Python service would.
const PYTHON_PUBLISHER: &str = r#"
import asyncio, json, sys
import nats

async def main():
    nc = await nats.connect(sys.argv[1])
    body = json.dumps({"user_id": 7, "source": "python"}).encode()
    await nc.publish("interop.py_to_micro.password_changed", body,
                     headers={"Content-Type": "application/json", "X-Trace-Id": "py-trace-1"})
    await nc.flush()
    await nc.close()

asyncio.run(main())
"#;

/// Subscribes, says READY once the subscription is on the server, prints the
/// first message as JSON and exits.
const PYTHON_SUBSCRIBER: &str = r#"
import asyncio, json, sys
import nats

async def main():
    nc = await nats.connect(sys.argv[1])
    sub = await nc.subscribe("interop.micro_to_py.password_changed")
    await nc.flush()
    print("READY", flush=True)
    msg = await sub.next_msg(timeout=30)
    print(json.dumps({"subject": msg.subject, "data": msg.data.decode(),
                      "headers": dict(msg.headers or {})}), flush=True)
    await nc.close()

asyncio.run(main())
"#;

/// Whether `python3` can import `nats`; panics under
/// MICRO_TEST_REQUIRE_SERVERS=1 when it cannot.
fn nats_py_available() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import nats"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        let message = "python3 with the PyPI package nats-py is missing \
                       (install it: python3 -m pip install nats-py)";
        if micro_test_servers::servers_required() {
            panic!("MICRO_TEST_REQUIRE_SERVERS=1 and {message}");
        }
        eprintln!("\n*** SKIPPING the nats-py interop test: {message} ***\n");
    }
    found
}

fn env_for(url: &str) -> EnvConfig {
    let vars = [
        ("MICRO_BROKER", "nats"),
        ("MICRO_BROKER_ADDRESS", url),
        ("MICRO_TRANSPORT", "memory"),
    ];
    match EnvConfig::from_lookup(|name| {
        vars.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
    }) {
        Ok(env) => env,
        Err(err) => panic!("MICRO_BROKER=nats must be accepted with broker-nats: {err}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_publishes_to_micro_and_subscribes_to_micro() {
    let Some(server) = NatsServer::shared().await else {
        return;
    };
    if !nats_py_available() {
        return;
    }
    let url = server.url();

    // A micro service handling what Python publishes.
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let service = Service::builder("interop-inbox")
        .server(micro::Server::new().subscribe(
            "interop.py_to_micro.password_changed",
            move |ctx, event: PasswordChanged| {
                let events_tx = events_tx.clone();
                async move {
                    let _ = events_tx.send((event, ctx.metadata().clone()));
                    Ok(())
                }
            },
        ))
        .build_from(&env_for(&url));
    let service = match service {
        Ok(service) => service,
        Err(err) => panic!("build the service: {err}"),
    };
    assert_eq!(service.broker().scheme(), "nats");
    let client = service.client();
    let running = match service.start().await {
        Ok(running) => running,
        Err(err) => panic!("start the service: {err}"),
    };

    let publisher = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            Command::new("python3")
                .args(["-c", PYTHON_PUBLISHER, &url])
                .output()
        }
    });
    let output = match publisher.await {
        Ok(Ok(output)) => output,
        other => panic!("cannot run the Python publisher: {other:?}"),
    };
    assert!(
        output.status.success(),
        "the Python publisher failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let Ok(Some((event, headers))) = timeout(WAIT, events.recv()).await else {
        panic!("the micro subscriber never handled the Python event");
    };
    assert_eq!(
        event,
        PasswordChanged {
            user_id: 7,
            source: "python".to_owned()
        }
    );
    assert_eq!(headers.get("x-trace-id"), Some("py-trace-1"), "{headers:?}");
    assert_eq!(headers.get("content-type"), Some("application/json"));

    // A Python subscriber receiving what a micro service publishes.
    let mut python = match Command::new("python3")
        .args(["-c", PYTHON_SUBSCRIBER, &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
    {
        Ok(child) => child,
        Err(err) => panic!("cannot start the Python subscriber: {err}"),
    };
    let Some(stdout) = python.stdout.take() else {
        panic!("no stdout from the Python subscriber");
    };
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let Ok(Some(ready)) = timeout(WAIT, lines.recv()).await else {
        panic!("the Python subscriber did not start");
    };
    assert_eq!(ready, "READY");

    let event = PasswordChanged {
        user_id: 42,
        source: "micro".to_owned(),
    };
    let headers = Metadata::new().with("X-Trace-Id", "micro-trace-2");
    if let Err(err) = client
        .publish_with("interop.micro_to_py.password_changed", &event, headers)
        .await
    {
        panic!("micro publish: {err}");
    }
    let Ok(Some(line)) = timeout(WAIT, lines.recv()).await else {
        panic!("the Python subscriber received nothing");
    };
    let _ = python.wait();
    let received: serde_json::Value = match serde_json::from_str(&line) {
        Ok(value) => value,
        Err(err) => panic!("the Python subscriber printed {line:?}: {err}"),
    };
    assert_eq!(received["subject"], "interop.micro_to_py.password_changed");
    let data: PasswordChanged = match serde_json::from_str(received["data"].as_str().unwrap_or(""))
    {
        Ok(data) => data,
        Err(err) => panic!("the body Python got is not the event: {received}: {err}"),
    };
    assert_eq!(data, event);
    assert_eq!(
        received["headers"]["x-trace-id"], "micro-trace-2",
        "{received}"
    );
    assert_eq!(
        received["headers"]["content-type"], "application/json",
        "{received}"
    );

    if let Err(err) = running.stop().await {
        panic!("stop the service: {err}");
    }
}
