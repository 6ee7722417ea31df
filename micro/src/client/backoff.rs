use std::time::Duration;

use rand::Rng;

/// How long a [`Client`](crate::Client) waits before each retry.
///
/// The default is exponential: 10 ms before the first retry, doubling each
/// time, capped at 1 s, with jitter (each wait drawn uniformly between half
/// and all of its nominal value, so callers that failed together do not retry
/// together).
///
/// ```
/// use std::time::Duration;
/// use micro::client::Backoff;
///
/// let backoff = Backoff::exponential(Duration::from_millis(10), Duration::from_millis(50)).without_jitter();
/// assert_eq!(backoff.delay(0), Duration::from_millis(10));
/// assert_eq!(backoff.delay(1), Duration::from_millis(20));
/// assert_eq!(backoff.delay(5), Duration::from_millis(50));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    jitter: bool,
}

impl Backoff {
    /// Waits `initial`, doubling before each further retry, never more than `max`; jittered.
    pub fn exponential(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max: max.max(initial),
            jitter: true,
        }
    }

    /// The same wait before every retry; jittered.
    pub fn constant(delay: Duration) -> Backoff {
        Backoff::exponential(delay, delay)
    }

    /// Retries at once.
    pub fn none() -> Backoff {
        Backoff::constant(Duration::ZERO)
    }

    /// Turns jitter off: every wait is exactly its nominal value.
    pub fn without_jitter(mut self) -> Backoff {
        self.jitter = false;
        self
    }

    /// The wait before retry number `retry` (0 for the first retry).
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        let nominal = self.initial.saturating_mul(factor).min(self.max);
        if self.jitter && !nominal.is_zero() {
            let half = nominal / 2;
            half + rand::rng().random_range(Duration::ZERO..=nominal - half)
        } else {
            nominal
        }
    }
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::exponential(Duration::from_millis(10), Duration::from_secs(1))
    }
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
        for retry in 0..10 {
            let nominal = backoff.without_jitter().delay(retry);
            let jittered = backoff.delay(retry);
            assert!(
                jittered >= nominal / 2 && jittered <= nominal,
                "{jittered:?}"
            );
        }
    }

    #[test]
    fn none_never_waits() {
        assert_eq!(Backoff::none().delay(3), Duration::ZERO);
    }
}
