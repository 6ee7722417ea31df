//! Closed-loop load: N workers each send one call, wait for it, send the next.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

/// What one load run measured.
#[derive(Debug, Clone)]
pub(crate) struct Summary {
    pub(crate) calls: u64,
    pub(crate) errors: u64,
    pub(crate) elapsed: Duration,
    /// Sorted latencies of the successful calls.
    latencies: Vec<Duration>,
}

impl Summary {
    pub(crate) fn calls_per_second(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    pub(crate) fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * (self.latencies.len() - 1) as f64).round() as usize;
        self.latencies[rank.min(self.latencies.len() - 1)]
    }

    /// Folds several runs of the same scenario into one.
    pub(crate) fn merge(runs: Vec<Summary>) -> Summary {
        let mut merged = Summary {
            calls: 0,
            errors: 0,
            elapsed: Duration::ZERO,
            latencies: Vec::new(),
        };
        for run in runs {
            merged.calls += run.calls;
            merged.errors += run.errors;
            merged.elapsed += run.elapsed;
            merged.latencies.extend(run.latencies);
        }
        merged.latencies.sort_unstable();
        merged
    }
}

/// Runs `call` from `concurrency` workers for `duration` and measures every call.
pub(crate) async fn closed_loop<F, Fut>(concurrency: usize, duration: Duration, call: F) -> Summary
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let started = Instant::now();
    let stop_at = started + duration;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let call = Arc::clone(&call);
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(64 * 1024);
                let mut errors = 0;
                while Instant::now() < stop_at {
                    let begun = Instant::now();
                    if call().await {
                        latencies.push(begun.elapsed());
                    } else {
                        errors += 1;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in workers {
        if let Ok((worker_latencies, worker_errors)) = worker.await {
            latencies.extend(worker_latencies);
            errors += worker_errors;
        }
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Summary {
        calls: latencies.len() as u64,
        errors,
        elapsed,
        latencies,
    }
}

/// Runs `call` `count` times in a row and returns the mean time per call.
pub(crate) async fn per_call_cost<F, Fut>(count: u32, call: F) -> (Duration, u64)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let mut errors = 0;
    let started = Instant::now();
    for _ in 0..count {
        if !call().await {
            errors += 1;
        }
    }
    (started.elapsed() / count, errors)
}
