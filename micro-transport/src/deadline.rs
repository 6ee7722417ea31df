//! Call deadlines on the network clients without a tokio timer per call.
//!
//! Every micro call carries a deadline, so a tokio timer per call would be
//! armed and disarmed on every request. Those timers share one wheel behind
//! one lock that every worker also takes whenever it parks; at high call
//! rates the workers queue on it (measured: most of the `sched_yield`s of a
//! unary gRPC benchmark were spins on that lock). Here, one thread per
//! process keeps the deadlines of the calls in flight in order and sleeps
//! until the earliest: arming one is an insert into a map under a lock that
//! only callers and that thread take, and the thread is woken only when a
//! new deadline comes before the one it sleeps until.
//!
//! It reads the real clock, so it is for calls that cross a real network;
//! the in-process paths keep tokio's timers, which follow tokio's paused
//! test clock.

use std::{
    collections::BTreeMap,
    future::Future,
    pin::pin,
    sync::{
        Arc, Condvar, LazyLock, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    task::Poll,
    time::Instant,
};

use futures::task::AtomicWaker;

/// Runs `future` until it finishes or `deadline` passes; `None` when the
/// deadline came first (the future is then dropped, which cancels it).
///
/// The future is polled before anything is armed, so one that finishes
/// without waiting costs no registration.
pub(crate) async fn within<F: Future>(
    deadline: tokio::time::Instant,
    future: F,
) -> Option<F::Output> {
    let deadline = deadline.into_std();
    let mut future = pin!(future);
    let mut armed: Option<Armed> = None;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        let armed = armed.get_or_insert_with(|| WATCH.arm(deadline));
        armed.expiry.waker.register(cx.waker());
        if armed.expiry.expired.load(Ordering::Acquire) {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// The process's deadline watch, started on first use.
static WATCH: LazyLock<Watch> = LazyLock::new(Watch::start);

/// The deadlines in flight and the thread that fires them.
struct Watch {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a deadline earlier than the one slept until arrives.
    earlier: Condvar,
}

#[derive(Default)]
struct State {
    /// By deadline, then by arrival (so equal deadlines stay distinct).
    pending: BTreeMap<(Instant, u64), Arc<Expiry>>,
    next_id: u64,
    /// The deadline the thread sleeps until; `None` while it waits for any.
    sleeping_until: Option<Instant>,
}

/// What the thread tells a call whose deadline passed.
#[derive(Default)]
struct Expiry {
    expired: AtomicBool,
    waker: AtomicWaker,
}

/// One call's deadline, withdrawn when the call is done.
struct Armed {
    key: (Instant, u64),
    expiry: Arc<Expiry>,
}

impl Drop for Armed {
    fn drop(&mut self) {
        WATCH.shared.lock().pending.remove(&self.key);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it, and the map stays whole if it did.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Watch {
    fn start() -> Watch {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            earlier: Condvar::new(),
        });
        let watched = Arc::clone(&shared);
        let started = std::thread::Builder::new()
            .name("micro-deadlines".to_owned())
            .spawn(move || watch(&watched));
        if let Err(err) = started {
            // Without the thread no deadline would fire; every call already
            // holds its server to the deadline too (grpc-timeout), but a
            // vanished server would then hang a call: say so loudly.
            tracing::error!(error = %err, "could not start the deadline thread; client-side deadlines will not fire");
        }
        Watch { shared }
    }

    fn arm(&self, deadline: Instant) -> Armed {
        let expiry = Arc::new(Expiry::default());
        let mut state = self.shared.lock();
        let key = (deadline, state.next_id);
        state.next_id += 1;
        state.pending.insert(key, Arc::clone(&expiry));
        if state.sleeping_until.is_none_or(|until| deadline < until) {
            state.sleeping_until = Some(deadline);
            drop(state);
            self.shared.earlier.notify_one();
        }
        Armed { key, expiry }
    }
}

/// The thread: fires every deadline that has passed, then sleeps until the
/// earliest left (or until an earlier one is armed).
fn watch(shared: &Shared) {
    let mut state = shared.lock();
    loop {
        let now = Instant::now();
        while let Some(entry) = state.pending.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let expiry = entry.remove();
            expiry.expired.store(true, Ordering::Release);
            expiry.waker.wake();
        }
        let next = state.pending.first_key_value().map(|(key, _)| key.0);
        state.sleeping_until = next;
        state = match next {
            Some(next) => {
                let wait = next.saturating_duration_since(now);
                shared
                    .earlier
                    .wait_timeout(state, wait)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
            None => shared
                .earlier
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner),
        };
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn after(millis: u64) -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_millis(millis)
    }

    #[tokio::test]
    async fn a_future_that_finishes_first_gives_its_output() {
        assert_eq!(within(after(5_000), async { 7 }).await, Some(7));
        let slow_enough = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            8
        };
        assert_eq!(within(after(5_000), slow_enough).await, Some(8));
    }

    #[tokio::test]
    async fn a_passed_deadline_ends_a_waiting_future() {
        let started = Instant::now();
        assert_eq!(within(after(50), std::future::pending::<()>()).await, None);
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[tokio::test]
    async fn an_earlier_deadline_armed_later_still_fires_first() {
        // The thread sleeps until the far deadline, then must wake for the near one.
        let far = tokio::spawn(within(after(60_000), std::future::pending::<()>()));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(within(after(30), std::future::pending::<()>()).await, None);
        far.abort();
    }

    #[tokio::test]
    async fn a_finished_call_withdraws_its_deadline() {
        let deadline = after(60_000);
        assert_eq!(within(deadline, async { 1 }).await, Some(1));
        let _ = within(deadline, tokio::time::sleep(Duration::from_millis(5))).await;
        let key = deadline.into_std();
        let state = WATCH.shared.lock();
        assert!(
            state.pending.keys().all(|(at, _)| *at != key),
            "a finished call left its deadline armed"
        );
    }

    #[test]
    fn deadlines_fire_for_calls_on_several_runtimes() {
        let threads: Vec<_> = (0..3)
            .map(|_| {
                std::thread::spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build()
                        .expect("a runtime");
                    runtime.block_on(within(after(40), std::future::pending::<()>()))
                })
            })
            .collect();
        for thread in threads {
            assert_eq!(thread.join().expect("the runtime thread"), None);
        }
    }
}
