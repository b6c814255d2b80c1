//! One small typed backoff: the waits between attempts of anything capstan
//! retries (the runner lock's polling, migrations that hit a lock timeout).

use std::time::Duration;

/// Exponential backoff: the first wait, doubled after each attempt, never
/// longer than the longest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the first retry.
    pub first: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Backoff {
    /// A backoff from `first` up to `max`.
    pub const fn new(first: Duration, max: Duration) -> Self {
        Backoff { first, max }
    }

    /// The wait before retry `n` (0: the first retry): `first` doubled `n`
    /// times (at most 2^16), at most `max`.
    pub fn delay(&self, n: u32) -> Duration {
        self.first.saturating_mul(1 << n.min(16)).min(self.max)
    }

    /// [`Backoff::delay`] plus a random part below `spread`, so that
    /// several waiters do not retry in step.
    pub fn jittered(&self, n: u32, spread: Duration) -> Duration {
        let spread = spread.as_millis() as u64;
        let jitter = match spread {
            0 => 0,
            s => rand::random::<u64>() % s,
        };
        self.delay(n) + Duration::from_millis(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_longest() {
        let b = Backoff::new(Duration::from_millis(10), Duration::from_millis(250));
        let waits: Vec<u128> = (0..7).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 250, 250]);
        assert_eq!(b.delay(u32::MAX), Duration::from_millis(250));
    }

    #[test]
    fn jitter_stays_below_its_spread() {
        let b = Backoff::new(Duration::from_millis(10), Duration::from_millis(250));
        for _ in 0..100 {
            let w = b.jittered(0, Duration::from_millis(10));
            assert!(w >= Duration::from_millis(10) && w < Duration::from_millis(20));
        }
        assert_eq!(b.jittered(1, Duration::ZERO), Duration::from_millis(20));
    }
}
