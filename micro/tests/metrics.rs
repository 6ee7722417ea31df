//! Call metrics: the page `micro::metrics::Metrics::render` writes is parsed
//! by Python's `prometheus_client` text parser, and its counts match the
//! calls made, on the client and the server side, over every transport.

mod common;

use std::{io::Write, process::Stdio};

use common::{Kind, World};
use micro::{Context, Error, ErrorKind, metrics::Metrics};
use serde_json::Value;

/// One sample: metric name, labels, value.
type Sample = (String, serde_json::Map<String, Value>, f64);

/// Parses the current page with Python's Prometheus parser.
fn parsed_page() -> Vec<Sample> {
    let page = Metrics::global().render();
    let mut python = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/metrics_support/parse.py"
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with prometheus_client (pip install prometheus_client) runs this test");
    python
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let output = python.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the parsers rejected the page:\n{}\n{page}",
        String::from_utf8_lossy(&output.stderr)
    );
    let parsed: Value = serde_json::from_slice(&output.stdout).unwrap();
    parsed
        .as_array()
        .unwrap()
        .iter()
        .map(|sample| {
            (
                sample[0].as_str().unwrap().to_owned(),
                sample[1].as_object().unwrap().clone(),
                sample[2].as_f64().unwrap(),
            )
        })
        .collect()
}

/// The value of the one sample called `name` whose labels include `labels`
/// (0 when there is none: a series not yet created has counted nothing).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<f64> = samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).and_then(Value::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
        .collect();
    assert!(
        matching.len() <= 1,
        "{name} {labels:?} matched {matching:?}"
    );
    matching.first().copied().unwrap_or(0.0)
}

async fn counts_match_the_calls(kind: Kind) {
    // Metrics are process-wide: a service name per transport keeps this
    // test's series apart from the other transports' runs.
    let service = format!("metrics-{kind:?}").to_lowercase();
    let world = World::new(kind);
    let running = world
        .service(&service)
        .handle("Calc.Ok", |_ctx: Context, n: u32| async move { Ok(n + 1) })
        .handle("Calc.Fail", |_ctx: Context, _n: u32| async move {
            Err::<u32, _>(Error::invalid_argument("always"))
        })
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let client = world.client();
    for n in 0..5u32 {
        let reply: u32 = client.call(&service, "Calc.Ok", &n).await.unwrap();
        assert_eq!(reply, n + 1);
    }
    for n in 0..3u32 {
        let err = client
            .call::<u32, u32>(&service, "Calc.Fail", &n)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    }
    for n in 0..2u32 {
        let err = client
            .call::<u32, u32>(&service, &format!("Attacker.Chosen{n}"), &n)
            .await
            .unwrap_err();
        // gRPC says UNIMPLEMENTED for a method the server lacks, as gRPC does.
        assert!(
            matches!(err.kind(), ErrorKind::NotFound | ErrorKind::Unimplemented),
            "{err}"
        );
    }

    let page = parsed_page();
    let s = service.as_str();
    for side in ["client", "server"] {
        let at = |endpoint: &'static str| [("service", s), ("side", side), ("endpoint", endpoint)];
        let requests = "micro_rpc_requests_total";
        assert_eq!(value(&page, requests, &at("Calc.Ok")), 5.0, "{side}");
        assert_eq!(value(&page, requests, &at("Calc.Fail")), 3.0, "{side}");
        let errors = "micro_rpc_errors_total";
        assert_eq!(value(&page, errors, &at("Calc.Ok")), 0.0, "{side}");
        let mut failed = at("Calc.Fail").to_vec();
        failed.push(("kind", "invalid_argument"));
        assert_eq!(value(&page, errors, &failed), 3.0, "{side}");
        let histogram = "micro_rpc_duration_seconds_count";
        assert_eq!(value(&page, histogram, &at("Calc.Ok")), 5.0, "{side}");
        assert_eq!(value(&page, histogram, &at("Calc.Fail")), 3.0, "{side}");
        assert_eq!(value(&page, "micro_rpc_in_flight", &at("Calc.Ok")), 0.0);
    }
    // The server does not let callers choose its label values: both
    // unknown endpoints are one series.
    let unknown = [
        ("service", s),
        ("side", "server"),
        ("endpoint", "<unknown>"),
    ];
    // The gRPC transport answers UNIMPLEMENTED for a method path the server
    // does not serve before the call reaches the server's router, so those
    // calls are not in the server's series there.
    let reached = if format!("{kind:?}") == "Grpc" {
        0.0
    } else {
        2.0
    };
    assert_eq!(value(&page, "micro_rpc_requests_total", &unknown), reached);
    let mut not_found = unknown.to_vec();
    not_found.push(("kind", "not_found"));
    assert_eq!(value(&page, "micro_rpc_errors_total", &not_found), reached);
    assert!(
        !page
            .iter()
            .any(
                |(_, labels, _)| labels.get("side").and_then(Value::as_str) == Some("server")
                    && labels
                        .get("endpoint")
                        .and_then(Value::as_str)
                        .is_some_and(|e| e.starts_with("Attacker."))
            ),
        "a server series carries a caller-chosen endpoint"
    );
    running.stop().await.unwrap();
}

on_every_transport!(counts_match_the_calls);

#[test]
fn added_counters_are_on_the_page() {
    let decisions = Metrics::global().counter(
        "metrics_test_decisions_total",
        "A counter another layer added",
        &[("decision", "open \"quoted\"\\path")],
    );
    decisions.inc_by(7);
    let page = parsed_page();
    let labels = [("decision", "open \"quoted\"\\path")];
    assert_eq!(value(&page, "metrics_test_decisions_total", &labels), 7.0);
}

/// GETs `path` from the admin listener with curl: (status, body).
fn curl(address: &str, path: &str) -> (u16, String) {
    let output = std::process::Command::new("curl")
        .args([
            "-s",
            "-w",
            "\n%{http_code}",
            &format!("http://{address}{path}"),
        ])
        .output()
        .expect("curl runs this test");
    let text = String::from_utf8(output.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.parse().unwrap(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listener_serves_metrics_and_health() {
    let health = micro::admin::Health::default();
    let admin = micro::admin::serve("", health.clone()).await.unwrap();
    let address = admin.address().to_owned();
    let probe = address.clone();
    let (live, ready_before, page) = tokio::task::spawn_blocking(move || {
        (
            curl(&probe, "/health/live"),
            curl(&probe, "/health/ready"),
            curl(&probe, "/metrics"),
        )
    })
    .await
    .unwrap();
    assert_eq!(live, (200, r#"{"status":"up"}"#.to_owned()));
    assert_eq!(ready_before.0, 503);
    assert_eq!(page.0, 200);
    assert!(
        page.1.contains("# TYPE micro_rpc_requests_total counter"),
        "{}",
        page.1
    );

    health.set_ready(true);
    let probe = address.clone();
    let (ready, missing) = tokio::task::spawn_blocking(move || {
        (curl(&probe, "/health/ready"), curl(&probe, "/nothing"))
    })
    .await
    .unwrap();
    assert_eq!(ready, (200, r#"{"status":"ready"}"#.to_owned()));
    assert_eq!(missing.0, 404);
    health.set_ready(false);
    let probe = address.clone();
    let draining = tokio::task::spawn_blocking(move || curl(&probe, "/health/ready"))
        .await
        .unwrap();
    assert_eq!(draining.0, 503);
    admin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_service_lifecycle() {
    let world = World::new(Kind::Memory);
    let running = world
        .service("metrics-health")
        .handle("Calc.Ok", |_ctx: Context, n: u32| async move { Ok(n + 1) })
        .before_stop(|running| {
            // Stopping has begun: probes must already see the drain.
            let ready = running.health().is_ready();
            async move {
                assert!(!ready, "still ready while stopping");
                Ok(())
            }
        })
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let health = running.health();
    let admin = micro::admin::serve("", health.clone()).await.unwrap();
    let probe = admin.address().to_owned();
    let ready = tokio::task::spawn_blocking(move || curl(&probe, "/health/ready"))
        .await
        .unwrap();
    assert_eq!(ready.0, 200);
    running.stop().await.unwrap();
    assert!(!health.is_ready());
    admin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn micro_admin_address_starts_the_admin_listener() {
    let env = micro::env::EnvConfig::from_lookup(|name| {
        (name == "MICRO_ADMIN_ADDRESS").then(|| "127.0.0.1:0".to_owned())
    })
    .unwrap();
    let world = World::new(Kind::Memory);
    let running = world
        .service("metrics-admin")
        .handle("Calc.Ok", |_ctx: Context, n: u32| async move { Ok(n + 1) })
        .build_from(&env)
        .unwrap()
        .start()
        .await
        .unwrap();
    let address = running.admin_address().unwrap().to_owned();
    let probe = address.clone();
    let (ready, page) = tokio::task::spawn_blocking(move || {
        (curl(&probe, "/health/ready"), curl(&probe, "/metrics"))
    })
    .await
    .unwrap();
    assert_eq!(ready.0, 200);
    assert_eq!(page.0, 200);
    running.stop().await.unwrap();
    // Stopped: the admin listener is closed with the service.
    let closed = tokio::task::spawn_blocking(move || curl(&address, "/health/live"))
        .await
        .unwrap();
    assert_eq!(closed.0, 0, "{closed:?}");
}

/// A subscriber of `topic` that reports each message on `seen`; `ordered`
/// runs it through `subscribe_ordered` (the keyed pool) instead.
fn subscriber(
    topic: &'static str,
    ordered: bool,
    seen: tokio::sync::mpsc::UnboundedSender<u32>,
) -> micro::Server {
    let handler = move |_ctx: Context, n: u32| {
        let seen = seen.clone();
        async move { seen.send(n).map_err(|_| Error::internal("test ended")) }
    };
    if ordered {
        micro::Server::new().subscribe_ordered(
            topic,
            micro::KeyedOrder::by(|n: &u32| *n % 2),
            handler,
        )
    } else {
        micro::Server::new().subscribe(topic, handler)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_counts_match_the_messages() {
    message_counts("metrics.orders", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_message_counts_match_the_messages() {
    message_counts("metrics.ordered", true).await;
}

async fn message_counts(topic: &'static str, ordered: bool) {
    let world = World::new(Kind::Memory);
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let running = world
        .service("metrics-messages")
        .server(subscriber(topic, ordered, seen_tx))
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let client = world.client();
    for n in 0..3u32 {
        client.publish(topic, &n).await.unwrap();
    }
    for _ in 0..3 {
        tokio::time::timeout(common::WAIT, seen_rx.recv())
            .await
            .unwrap()
            .unwrap();
    }
    // Stopping drains the subscriber: every ack is counted by then.
    running.stop().await.unwrap();
    let page = parsed_page();
    for event in ["published", "delivered", "acked"] {
        let labels = [("topic", topic), ("event", event)];
        assert_eq!(
            value(&page, "micro_messages_total", &labels),
            3.0,
            "{event}"
        );
    }
    let nacked = [("topic", topic), ("event", "nacked")];
    assert_eq!(value(&page, "micro_messages_total", &nacked), 0.0);
}
