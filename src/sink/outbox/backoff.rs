//! The one wait between two delivery attempts of every queued sink (Graphite, Backstop, the
//! Kafka REST Proxy), run on the sink's worker thread.
//!
//! After the n-th failed attempt in a row (n from 0) the nominal delay is
//! `min(retry_backoff · 2ⁿ, retry_backoff_max)`; the wait is drawn uniformly between
//! `(1 − jitter)` of it and all of it. Every sink uses `jitter = ½` ("equal jitter"): never
//! less than half the nominal delay, so a dead peer is not hammered, and spread enough that
//! many kstatsd instances that lost the same peer at once do not come back in step.
//!
//! The `Retry-After` rule: when the peer's answer asks for a wait (seconds or an HTTP-date), the
//! wait is the longer of the two, the peer's at most [`MAX_RETRY_AFTER`]; once shutdown has
//! begun it is not waited (the budget is what it is: waiting a minute the budget does not have
//! would only drop).

use std::time::Duration;

/// Longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The jitter every sink uses: between half and all of the nominal delay.
pub const EQUAL_JITTER: f64 = 0.5;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// The first delay (`retry_backoff`).
    pub min: Duration,
    /// The longest nominal delay (`retry_backoff_max`).
    pub max: Duration,
    /// The share of the nominal delay that is random, in [0, 1].
    pub jitter: f64,
}

impl Backoff {
    /// `retry_backoff` doubling up to `retry_backoff_max`, with equal jitter.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff { min, max, jitter: EQUAL_JITTER }
    }

    /// The nominal delay after `fails` failed attempts in a row before this one.
    pub fn nominal(&self, fails: u32) -> Duration {
        let base = self.min.as_secs_f64() * 2f64.powi(fails.min(40) as i32);
        Duration::from_secs_f64(base.min(self.max.max(self.min).as_secs_f64()))
    }

    /// The wait after a failed attempt: `fails` failures before it, `retry_after` what the peer
    /// asked for, `closing` once shutdown has begun; `unit` a uniform draw in [0, 1).
    pub fn wait(&self, fails: u32, retry_after: Option<Duration>, closing: bool, unit: f64) -> Duration {
        let nominal = self.nominal(fails).as_secs_f64();
        let jitter = self.jitter.clamp(0.0, 1.0);
        let delay = Duration::from_secs_f64(nominal * (1.0 - jitter + jitter * unit.clamp(0.0, 1.0)));
        match retry_after.filter(|_| !closing) {
            Some(after) => delay.max(after.min(MAX_RETRY_AFTER)),
            None => delay,
        }
    }
}

/// A small xorshift generator for the jitter (no need for a crate: the draw only spreads
/// retries apart).
pub struct Jitter(u64);

impl Jitter {
    /// Seeded from the clock and the process id, so that instances started together differ.
    pub fn seeded() -> Jitter {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Jitter((t ^ u64::from(std::process::id()).rotate_left(32)) | 1)
    }

    /// A uniform draw in [0, 1).
    pub fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_up_to_the_cap_with_equal_jitter() {
        let b = Backoff::new(100 * MS, 1000 * MS);
        let nominal: Vec<u128> = (0..6).map(|n| b.nominal(n).as_millis()).collect();
        assert_eq!(nominal, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.nominal(u32::MAX).as_millis(), 1000);
        // Equal jitter: from half of the nominal delay up to all of it.
        assert_eq!(b.wait(2, None, false, 0.0), 200 * MS);
        assert_eq!(b.wait(2, None, false, 0.5), 300 * MS);
        assert!(b.wait(2, None, false, 0.999_999) <= 400 * MS);
        let mut j = Jitter::seeded();
        let draws: Vec<Duration> = (0..1000).map(|_| b.wait(3, None, false, j.unit())).collect();
        assert!(draws.iter().all(|d| (400 * MS..=800 * MS).contains(d)));
        assert!(draws.iter().any(|d| *d < 500 * MS) && draws.iter().any(|d| *d > 700 * MS), "spread");
        // No jitter: the nominal delay exactly.
        let fixed = Backoff { jitter: 0.0, ..b };
        assert_eq!(fixed.wait(1, None, false, 0.7), 200 * MS);
    }

    #[test]
    fn retry_after_wins_when_longer_up_to_an_hour_and_not_at_shutdown() {
        let b = Backoff { jitter: 0.0, ..Backoff::new(100 * MS, 30_000 * MS) };
        let s = Duration::from_secs;
        assert_eq!(b.wait(0, Some(s(60)), false, 0.0), s(60));
        assert_eq!(b.wait(0, Some(10 * MS), false, 0.0), 100 * MS);
        assert_eq!(b.wait(0, Some(s(86_400)), false, 0.0), MAX_RETRY_AFTER);
        assert_eq!(b.wait(0, Some(s(60)), true, 0.0), 100 * MS);
    }
}
