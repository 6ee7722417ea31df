//! Metrics of calls, in the Prometheus text format.
//!
//! One process-wide registry, [`Metrics::global`], holds:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `micro_rpc_requests_total` | counter | `service`, `endpoint`, `side` |
//! | `micro_rpc_errors_total` | counter | `service`, `endpoint`, `side`, `kind` |
//! | `micro_rpc_duration_seconds` | histogram | `service`, `endpoint`, `side` |
//! | `micro_rpc_in_flight` | gauge | `service`, `endpoint`, `side` |
//!
//! | `micro_messages_total` | counter | `topic`, `event` |
//!
//! `side` is `client` (a call made with [`Client`](crate::Client)) or
//! `server` (a call a [`Server`](crate::Server) handled); `kind` is the
//! [`ErrorKind`] in snake case. A message's `event` is `published` (a
//! client's publish the broker accepted), `delivered` (to a server's
//! subscriber), `acked` (its handler succeeded), `nacked` (it failed or
//! panicked) or `undecodable` (dropped, acknowledged).
//!
//! Label values that callers choose (service and endpoint names) are
//! bounded: a server labels a call to an endpoint it does not serve
//! `<unknown>`, and past [`MAX_LABEL_VALUES`] distinct values of one label
//! every new value is counted as `<other>`, so a caller cannot grow the
//! number of series without limit.
//!
//! Other parts of a program (resilience layers, user code) add their own
//! counters to the same page with [`Metrics::counter`]:
//!
//! ```
//! use micro::metrics::Metrics;
//!
//! let shed = Metrics::global().counter("myapp_shed_total", "Calls shed under load", &[("reason", "queue")]);
//! shed.inc();
//! assert!(Metrics::global().render().contains("myapp_shed_total{reason=\"queue\"} 1"));
//! ```
//!
//! The page is the Prometheus text exposition format 0.0.4, written here
//! rather than with a metrics crate so that the default build stays within
//! its crate budget (`scripts/check-lean`).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt::Write as _,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::Instant,
};

use crate::{Error, ErrorKind, Result};

/// How many distinct values one label keeps before new ones become `<other>`.
pub const MAX_LABEL_VALUES: usize = 256;

/// The value a server gives the `endpoint` label of a call to an endpoint it
/// does not serve.
pub const UNKNOWN: &str = "<unknown>";

/// The value a label takes once it has [`MAX_LABEL_VALUES`] values.
pub const OTHER: &str = "<other>";

/// Latency buckets, in seconds: 0.5 ms to 10 s.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Which end of a call a metric describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// A call this process made.
    Client,
    /// A call this process handled.
    Server,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }
}

/// A counter: a count that only goes up. Clones count into the same series.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.inc_by(1);
    }

    /// Adds `n`.
    pub fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Which series one call is counted in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct CallLabels {
    service: String,
    endpoint: String,
    side: Side,
}

/// Everything counted for one [`CallLabels`].
#[derive(Default)]
struct CallSeries {
    requests: AtomicU64,
    in_flight: AtomicI64,
    latency: Mutex<Latency>,
    errors: Mutex<BTreeMap<&'static str, u64>>,
}

#[derive(Default)]
struct Latency {
    /// Calls at or under each of [`BUCKETS`] (not cumulative; summed when written).
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The set of values one label has taken, capped at [`MAX_LABEL_VALUES`].
#[derive(Default)]
struct Bounded {
    seen: Mutex<HashSet<String>>,
}

impl Bounded {
    fn value(&self, value: &str) -> String {
        // A poisoned lock only means another thread panicked while holding
        // it; the set is still a valid set.
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(value) {
            return value.to_owned();
        }
        if seen.len() >= MAX_LABEL_VALUES {
            return OTHER.to_owned();
        }
        seen.insert(value.to_owned());
        value.to_owned()
    }
}

/// Counters registered with [`Metrics::counter`], by name.
type CounterFamilies = BTreeMap<String, (String, BTreeMap<Vec<(String, String)>, Counter>)>;

/// The process's metrics: micro's call metrics and the counters other code
/// [added](Metrics::counter).
pub struct Metrics {
    calls: Mutex<HashMap<CallLabels, Arc<CallSeries>>>,
    counters: Mutex<CounterFamilies>,
    services: Bounded,
    endpoints: Bounded,
    topics: Bounded,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every update leaves the data valid, so a panic elsewhere while the
    // lock was held does not make it unusable.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    /// The process-wide registry that micro's clients and servers record into.
    pub fn global() -> &'static Metrics {
        static GLOBAL: OnceLock<Metrics> = OnceLock::new();
        GLOBAL.get_or_init(|| Metrics {
            calls: Mutex::default(),
            counters: Mutex::default(),
            services: Bounded::default(),
            endpoints: Bounded::default(),
            topics: Bounded::default(),
        })
    }

    /// The counter called `name` (which should end in `_total`) with these
    /// labels, created at 0 the first time; `help` describes the metric
    /// (the first description given for a name is kept). Label values
    /// should come from a small fixed set, not from callers.
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Counter {
        let mut families = lock(&self.counters);
        let (_, series) = families
            .entry(name.to_owned())
            .or_insert_with(|| (help.to_owned(), BTreeMap::new()));
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        series.entry(labels).or_default().clone()
    }

    /// Counts one message `event` on `topic` (at most [`MAX_LABEL_VALUES`]
    /// topics, then `<other>`).
    pub(crate) fn message(&self, topic: &str, event: &'static str) {
        let topic = self.topics.value(topic);
        self.counter(
            "micro_messages_total",
            "Messages published, delivered to subscribers, acked, nacked or dropped as undecodable",
            &[("topic", &topic), ("event", event)],
        )
        .inc();
    }

    /// Every metric in the Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut calls: Vec<(CallLabels, Arc<CallSeries>)> = lock(&self.calls)
            .iter()
            .map(|(labels, series)| (labels.clone(), series.clone()))
            .collect();
        calls.sort_by(|a, b| a.0.cmp(&b.0));
        let mut page = String::new();
        header(
            &mut page,
            "micro_rpc_requests_total",
            "Calls made (side=client) or handled (side=server)",
            "counter",
        );
        for (labels, series) in &calls {
            sample(
                &mut page,
                "micro_rpc_requests_total",
                &call_labels(labels, &[]),
                series.requests.load(Ordering::Relaxed),
            );
        }
        header(
            &mut page,
            "micro_rpc_errors_total",
            "Calls that failed, by error kind",
            "counter",
        );
        for (labels, series) in &calls {
            for (kind, count) in lock(&series.errors).iter() {
                sample(
                    &mut page,
                    "micro_rpc_errors_total",
                    &call_labels(labels, &[("kind", kind)]),
                    count,
                );
            }
        }
        header(
            &mut page,
            "micro_rpc_in_flight",
            "Calls started and not yet finished",
            "gauge",
        );
        for (labels, series) in &calls {
            sample(
                &mut page,
                "micro_rpc_in_flight",
                &call_labels(labels, &[]),
                series.in_flight.load(Ordering::Relaxed),
            );
        }
        header(
            &mut page,
            "micro_rpc_duration_seconds",
            "How long calls took, failed ones included",
            "histogram",
        );
        for (labels, series) in &calls {
            let latency = lock(&series.latency);
            let mut cumulative = 0;
            for (bound, count) in BUCKETS.iter().zip(latency.buckets) {
                cumulative += count;
                let le = bound.to_string();
                sample(
                    &mut page,
                    "micro_rpc_duration_seconds_bucket",
                    &call_labels(labels, &[("le", &le)]),
                    cumulative,
                );
            }
            sample(
                &mut page,
                "micro_rpc_duration_seconds_bucket",
                &call_labels(labels, &[("le", "+Inf")]),
                latency.count,
            );
            sample(
                &mut page,
                "micro_rpc_duration_seconds_sum",
                &call_labels(labels, &[]),
                latency.sum,
            );
            sample(
                &mut page,
                "micro_rpc_duration_seconds_count",
                &call_labels(labels, &[]),
                latency.count,
            );
        }
        for (name, (help, series)) in lock(&self.counters).iter() {
            header(&mut page, name, help, "counter");
            for (labels, counter) in series {
                let labels: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                sample(&mut page, name, &labels, counter.get());
            }
        }
        page
    }

    /// Starts timing one call; the returned guard records it when
    /// [finished](CallTimer::finish) (or, if dropped unfinished, as
    /// cancelled).
    pub(crate) fn start(&self, side: Side, service: &str, endpoint: &str) -> CallTimer {
        let labels = CallLabels {
            service: self.services.value(service),
            endpoint: self.endpoints.value(endpoint),
            side,
        };
        let series = lock(&self.calls).entry(labels).or_default().clone();
        series.requests.fetch_add(1, Ordering::Relaxed);
        series.in_flight.fetch_add(1, Ordering::Relaxed);
        CallTimer {
            series: Some(series),
            started: Instant::now(),
        }
    }
}

fn call_labels<'a>(
    labels: &'a CallLabels,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut all = vec![
        ("service", labels.service.as_str()),
        ("endpoint", labels.endpoint.as_str()),
        ("side", labels.side.as_str()),
    ];
    all.extend_from_slice(extra);
    all
}

/// Writes a metric's `# HELP` and `# TYPE` lines.
fn header(page: &mut String, name: &str, help: &str, kind: &str) {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    // Writing into a String cannot fail.
    let _ = writeln!(page, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Writes one sample line, escaping label values as the format asks.
fn sample(page: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    page.push_str(name);
    if !labels.is_empty() {
        page.push('{');
        for (i, (key, value)) in labels.iter().enumerate() {
            if i > 0 {
                page.push(',');
            }
            let value = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            let _ = write!(page, "{key}=\"{value}\"");
        }
        page.push('}');
    }
    let _ = writeln!(page, " {value}");
}

/// One call being timed; see [`Metrics::start`].
pub(crate) struct CallTimer {
    series: Option<Arc<CallSeries>>,
    started: Instant,
}

impl CallTimer {
    /// Records the call's outcome and returns it unchanged.
    pub(crate) fn finish<T>(mut self, outcome: Result<T>) -> Result<T> {
        self.record(outcome.as_ref().err().map(Error::kind));
        outcome
    }

    fn record(&mut self, error: Option<ErrorKind>) {
        let Some(series) = self.series.take() else {
            return;
        };
        let seconds = self.started.elapsed().as_secs_f64();
        {
            let mut latency = lock(&series.latency);
            if let Some(bucket) = BUCKETS.iter().position(|bound| seconds <= *bound) {
                latency.buckets[bucket] += 1;
            }
            latency.count += 1;
            latency.sum += seconds;
        }
        series.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some(kind) = error {
            *lock(&series.errors).entry(kind.as_str()).or_default() += 1;
        }
    }
}

impl Drop for CallTimer {
    fn drop(&mut self) {
        // A call whose future was dropped (the caller went away) still
        // leaves the in-flight gauge and is counted as cancelled.
        if self.series.is_some() {
            self.record(Some(ErrorKind::Cancelled));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_capped() {
        let bounded = Bounded::default();
        for i in 0..MAX_LABEL_VALUES {
            assert_eq!(bounded.value(&format!("e{i}")), format!("e{i}"));
        }
        assert_eq!(bounded.value("one-too-many"), OTHER);
        assert_eq!(bounded.value("e0"), "e0");
    }
}
