//! Alternating rounds and the median of their ratios.
//!
//! The machine is shared, so another process's burst slows whichever peer
//! runs at that moment. Running the peers back to back in many short rounds,
//! in alternating order, and taking the median of the rounds' micro/peer
//! ratios ignores the rounds such a burst skewed, where pooled totals would
//! not. Both figures are printed.

/// Runs both peers one after the other, micro first in even rounds and the
/// peer first in odd ones, so neither always runs on a warmer (or busier)
/// machine.
pub(crate) async fn alternate<M, P>(round: u32, micro: M, peer: P) -> (M::Output, P::Output)
where
    M: Future,
    P: Future,
{
    if round.is_multiple_of(2) {
        let micro = micro.await;
        (micro, peer.await)
    } else {
        let peer = peer.await;
        (micro.await, peer)
    }
}

/// Each round's micro/peer ratio of one measure.
#[derive(Debug, Default)]
pub(crate) struct RoundRatios(Vec<f64>);

impl RoundRatios {
    /// Records one round: micro's figure and the peer's, higher is better.
    pub(crate) fn push(&mut self, micro: f64, peer: f64) {
        self.0.push(micro / peer.max(f64::MIN_POSITIVE));
    }

    /// `median 0.971 (rounds 0.902..1.013)`.
    pub(crate) fn describe(&self) -> String {
        let mut sorted = self.0.clone();
        sorted.sort_unstable_by(f64::total_cmp);
        let (lowest, highest) = match (sorted.first(), sorted.last()) {
            (Some(lowest), Some(highest)) => (*lowest, *highest),
            _ => (0.0, 0.0),
        };
        format!(
            "median {:.3} (rounds {lowest:.3}..{highest:.3})",
            median(&sorted)
        )
    }
}

/// The median of sorted values.
fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}
