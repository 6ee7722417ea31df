//! The one backoff: how long to wait before each retry or reconnection.

use std::time::Duration;

/// Exponential backoff with optional jitter: `initial` before the first
/// retry, doubling each time, never more than `max`.
///
/// With jitter (the default) each wait is drawn uniformly between half and
/// all of its nominal value, so callers that failed together do not retry
/// together. Used for client retries, registry and broker reconnections,
/// watch restarts and heartbeat retries alike.
///
/// ```
/// use std::time::Duration;
/// use micro_core::Backoff;
///
/// let backoff = Backoff::exponential(Duration::from_millis(10), Duration::from_millis(50))
///     .without_jitter();
/// assert_eq!(backoff.delay(0), Duration::from_millis(10));
/// assert_eq!(backoff.delay(1), Duration::from_millis(20));
/// assert_eq!(backoff.delay(5), Duration::from_millis(50));
///
/// // A running sequence, for a reconnect loop: reset it once connected.
/// let mut attempts = backoff.attempts();
/// assert_eq!(attempts.next_delay(), Duration::from_millis(10));
/// assert_eq!(attempts.next_delay(), Duration::from_millis(20));
/// attempts.reset();
/// assert_eq!(attempts.next_delay(), Duration::from_millis(10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    jitter: bool,
}

impl Backoff {
    /// Waits `initial`, doubling before each further retry, never more than `max`; jittered.
    pub const fn exponential(initial: Duration, max: Duration) -> Backoff {
        let max = if max.as_nanos() < initial.as_nanos() {
            initial
        } else {
            max
        };
        Backoff {
            initial,
            max,
            jitter: true,
        }
    }

    /// The same wait before every retry; jittered.
    pub const fn constant(delay: Duration) -> Backoff {
        Backoff::exponential(delay, delay)
    }

    /// Retries at once.
    pub const fn none() -> Backoff {
        Backoff::constant(Duration::ZERO)
    }

    /// Turns jitter off: every wait is exactly its nominal value.
    pub const fn without_jitter(mut self) -> Backoff {
        self.jitter = false;
        self
    }

    /// The first wait.
    pub fn initial(&self) -> Duration {
        self.initial
    }

    /// The longest wait.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The wait before retry number `retry` (0 for the first retry).
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        let nominal = self.initial.saturating_mul(factor).min(self.max);
        if self.jitter && !nominal.is_zero() {
            let half = nominal / 2;
            half + random_up_to(nominal - half)
        } else {
            nominal
        }
    }

    /// A running sequence of waits, for loops that retry until they succeed.
    pub fn attempts(&self) -> Attempts {
        Attempts {
            backoff: *self,
            retry: 0,
        }
    }
}

impl Default for Backoff {
    /// 10 ms doubling up to 1 s, jittered.
    fn default() -> Backoff {
        Backoff::exponential(Duration::from_millis(10), Duration::from_secs(1))
    }
}

/// The state of one retry loop: each [`next_delay`](Attempts::next_delay)
/// is the following wait of its [`Backoff`].
#[derive(Debug, Clone)]
pub struct Attempts {
    backoff: Backoff,
    retry: u32,
}

impl Attempts {
    /// The wait before the next attempt; advances the sequence.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.backoff.delay(self.retry);
        self.retry = self.retry.saturating_add(1);
        delay
    }

    /// Sleeps for the next wait (tokio's timer).
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    /// How many waits were handed out since the last reset.
    pub fn count(&self) -> u32 {
        self.retry
    }

    /// Starts over from the first wait, after a success.
    pub fn reset(&mut self) {
        self.retry = 0;
    }
}

/// A uniformly random duration in `0..=limit`, from a cheap per-thread
/// generator: jitter needs spread, not cryptographic quality.
fn random_up_to(limit: Duration) -> Duration {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    let nanos = limit.as_nanos().min(u128::from(u64::MAX)) as u64;
    let draw = STATE.with(|state| {
        // xorshift64*
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    });
    Duration::from_nanos(if nanos == u64::MAX {
        draw
    } else {
        draw % (nanos + 1)
    })
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::thread::current().id()) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_doubles_up_to_the_cap() {
        let backoff = Backoff::exponential(Duration::from_millis(10), Duration::from_secs(1))
            .without_jitter();
        let delays: Vec<u128> = (0..9).map(|n| backoff.delay(n).as_millis()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_between_half_and_all_of_the_nominal_wait() {
        let backoff = Backoff::default();
        for retry in 0..200 {
            let nominal = backoff.without_jitter().delay(retry % 10);
            let jittered = backoff.delay(retry % 10);
            assert!(
                jittered >= nominal / 2 && jittered <= nominal,
                "{jittered:?}"
            );
        }
    }

    #[test]
    fn jitter_spreads_the_waits() {
        let backoff = Backoff::constant(Duration::from_secs(1));
        let distinct: std::collections::HashSet<Duration> =
            (0..50).map(|_| backoff.delay(0)).collect();
        assert!(
            distinct.len() > 40,
            "{} distinct waits of 50",
            distinct.len()
        );
    }

    #[test]
    fn none_never_waits_and_max_below_initial_is_raised() {
        assert_eq!(Backoff::none().delay(3), Duration::ZERO);
        let backoff = Backoff::exponential(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(backoff.max(), Duration::from_secs(2));
    }

    #[test]
    fn attempts_advance_and_reset() {
        let mut attempts = Backoff::exponential(Duration::from_millis(1), Duration::from_millis(4))
            .without_jitter()
            .attempts();
        let waits: Vec<u128> = (0..4).map(|_| attempts.next_delay().as_millis()).collect();
        assert_eq!(waits, [1, 2, 4, 4]);
        assert_eq!(attempts.count(), 4);
        attempts.reset();
        assert_eq!(attempts.next_delay(), Duration::from_millis(1));
    }
}
