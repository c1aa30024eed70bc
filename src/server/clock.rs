//! The swap/flush clock of the ingest loop: the flush interval, the next deadline, the spare
//! tables when they came back early, and the overruns counted while no spare was back. Owned by
//! [`super::Server`] and run on the ingest thread; it never touches a socket or the active tables.

use crate::aggregate::Tables;
use crate::flush::FlushMeta;
use std::time::{Duration, Instant, SystemTime};

pub(super) struct Clock {
    pub(super) interval: Duration,
    pub(super) last_flush: Instant,
    pub(super) next_flush: Instant,
    /// The Unix second of the last flush (see [`flush_clock`]).
    last_clock: u64,
    /// Overruns since the last flush (reported with it).
    pub(super) overruns: u64,
    /// An overrun was counted for the current deadline.
    overrun_pending: bool,
    /// The spare tables when they came back before they were needed (see `wait_for_spare`).
    pub(super) spare: Option<Box<Tables>>,
}

impl Clock {
    pub(super) fn new(interval: Duration, now: Instant) -> Clock {
        Clock {
            interval,
            last_flush: now,
            next_flush: now + interval,
            last_clock: 0,
            overruns: 0,
            overrun_pending: false,
            spare: None,
        }
    }

    /// The deadline passed and no spare is back: counts (and logs) one overrun per deadline.
    pub(super) fn overrun(&mut self) {
        if !self.overrun_pending {
            self.overrun_pending = true;
            self.overruns += 1;
            log::warn!("flush overrun: the previous flush is still running; this interval gets longer");
        }
    }

    /// The interval was discarded (no flush thread): the next deadline is an interval from now.
    pub(super) fn skip(&mut self, now: Instant) {
        self.next_flush = now + self.interval;
    }

    /// A flush happens at `now`: returns what the flush reports about its interval and moves the
    /// deadline on by one interval (or to an interval from now when it fell that far behind).
    pub(super) fn advance(&mut self, now: Instant) -> FlushMeta {
        let elapsed = now.duration_since(self.last_flush);
        let meta_clock = flush_clock(self.last_clock, self.interval);
        let meta = FlushMeta {
            interval: elapsed.as_secs_f64(),
            clock: meta_clock,
            timestamp_lag_ms: (elapsed.as_secs_f64() - self.interval.as_secs_f64()) * 1e3,
            overruns: std::mem::take(&mut self.overruns),
            kernel_drops: 0,
        };
        self.overrun_pending = false;
        self.last_flush = now;
        self.last_clock = meta_clock;
        self.next_flush += self.interval;
        if self.next_flush <= now {
            self.next_flush = now + self.interval;
        }
        meta
    }

    /// A reloaded flush interval: the next deadline is that long after the last flush.
    pub(super) fn set_interval(&mut self, interval: Duration) {
        if self.interval != interval {
            self.interval = interval;
            self.next_flush = self.last_flush + interval;
        }
    }
}

/// The Unix second a flush is stamped with: now, but with a flush interval of a second or more
/// never the same second as the previous flush. The deadlines keep a fixed cadence, so a swap
/// that was late (a loaded machine) can be followed by an on-time one within the same second,
/// and Graphite keeps one point per name and second: the later flush would silently overwrite
/// the earlier (it did, in `tests/graphite.rs` under a loaded CI run). Such a clock is at most a
/// second ahead of the wall clock (over n flushes at a fixed cadence the wall clock's second
/// advances at least n − 1). Shorter intervals (tests, mostly) keep the plain clock, which would
/// otherwise run ahead without bound.
fn flush_clock(last: u64, interval: Duration) -> u64 {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if interval >= Duration::from_secs(1) && now <= last {
        last + 1
    } else {
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_clocks_never_repeat_a_second_at_intervals_of_a_second_or_more() {
        let now = flush_clock(0, Duration::from_secs(1));
        assert!(now > 1_700_000_000, "the wall clock when nothing was flushed yet");
        assert_eq!(flush_clock(now, Duration::from_secs(1)), now + 1, "the same second: the next one");
        assert_eq!(flush_clock(now, Duration::from_secs(10)), now + 1);
        let fast = Duration::from_millis(50);
        assert!(flush_clock(now + 100, fast) < now + 100, "short intervals keep the wall clock");
    }
}
