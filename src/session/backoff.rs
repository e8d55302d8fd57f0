//! Reconnect delays: exponential growth with "equal jitter", so that many devices losing the
//! same server do not all come back in the same millisecond.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    rng: XorShift,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            rng: XorShift::new(seed),
        }
    }

    /// Delay before try `attempt` (1-based): a uniform pick in [d/2, d] where
    /// d = min(max, initial · 2^(attempt-1)).
    pub fn delay(&mut self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(30);
        let full = self.initial.saturating_mul(1u32 << shift).min(self.max);
        let half = full / 2;
        let span = (full - half).as_micros() as u64;
        let extra = if span == 0 {
            0
        } else {
            self.rng.next() % (span + 1)
        };
        half + Duration::from_micros(extra)
    }
}

/// A tiny deterministic generator: jitter needs spread, not cryptographic quality, and tests
/// need to be reproducible.
#[derive(Debug, Clone)]
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_bounds_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000), 42);
        for (attempt, full) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (30, 1000),
            (u32::MAX, 1000),
        ] {
            let d = b.delay(attempt).as_millis() as u64;
            assert!(
                d >= full / 2 && d <= full,
                "attempt {attempt}: {d} ms not in [{}, {full}]",
                full / 2
            );
        }
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut b = Backoff::new(Duration::from_millis(1000), Duration::from_secs(10), 7);
        let picks: std::collections::HashSet<u128> =
            (0..20).map(|_| b.delay(1).as_micros()).collect();
        assert!(
            picks.len() > 10,
            "jitter produced too few distinct delays: {picks:?}"
        );
    }
}
