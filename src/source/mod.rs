//! Sources: producers of metrics other than statsd traffic (today the Docker Engine poller,
//! [`docker`]). A source runs on its own thread and publishes its latest sample set into a
//! shared [`Feed`]; the flush thread owns the matching [`Recorder`] and, at every flush, records
//! the latest set as gauges into the interval being flushed, just before summarizing, the way the
//! daemon's own meta figures are recorded. So source metrics are named, prefixed and delivered to
//! every sink like any other gauge, and the ingest thread never sees them.
//!
//! A recorder writes through the [`Interval`] trait, which the flush thread implements over its
//! tables and known series: sources know nothing of either, and the flush side nothing of any
//! source.
//!
//! The feed holds one sample set (the newest replaces an unread older one) plus counters that
//! accumulate until a flush takes them (errors, polls). The lock is held for a swap, never for
//! I/O. Series a source stops publishing (a container that went away) are forgotten at the next
//! flush, so they stop being reported instead of repeating their last value forever.

pub mod docker;

use std::sync::{Arc, Mutex};

/// One sample set: `(name, value)` gauges, sorted by name, names unique.
pub type Gauges = Vec<(String, f64)>;

/// The interval being flushed, as a [`Recorder`] writes into it (the flush thread implements
/// it over the interval's tables and the known series).
pub trait Interval {
    /// Sets gauge `name` to `value` in this interval.
    fn set_gauge(&mut self, name: &str, value: f64);
    /// Adds `value` to counter `name` in this interval.
    fn add_counter(&mut self, name: &str, value: f64);
    /// Forgets gauge `name`: it is no longer reported, even where idle gauges are kept.
    fn forget_gauge(&mut self, name: &str);
    /// Where the daemon's own figures are named (`aggregate.meta_prefix`).
    fn meta_prefix(&self) -> &str;
}

#[derive(Default)]
struct Slot {
    latest: Option<Gauges>,
    errors: u64,
    polls: u64,
    /// The recorder (flush thread) is gone: the source thread stops.
    closed: bool,
}

/// The source's end (and, inside a [`Recorder`], the flush thread's).
#[derive(Clone, Default)]
pub struct Feed {
    slot: Arc<Mutex<Slot>>,
    /// Names the counters are reported under: `<meta_prefix>.<stats>.errors`, `….polls`.
    stats: &'static str,
}

impl Feed {
    /// A feed whose figures are reported as `<meta_prefix>.<stats>.{errors,polls}`.
    pub fn new(stats: &'static str) -> Feed {
        Feed { slot: Arc::default(), stats }
    }

    /// Publishes one poll's result: `gauges` (sorted and deduplicated here) replaces the previous
    /// set; `errors` adds to the error count. `None` keeps the previous set (nothing new).
    pub fn publish(&self, gauges: Option<Gauges>, errors: u64) {
        let gauges = gauges.map(|mut g| {
            g.sort_by(|a, b| a.0.cmp(&b.0));
            // Two containers renamed to the same name: the later one wins.
            g.reverse();
            g.dedup_by(|a, b| a.0 == b.0);
            g.reverse();
            g
        });
        let mut s = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if gauges.is_some() {
            s.latest = gauges;
        }
        s.errors += errors;
        s.polls += 1;
    }

    /// Whether the flush side is gone (the source should stop).
    pub fn is_closed(&self) -> bool {
        self.slot.lock().map_or(true, |s| s.closed)
    }
}

/// The flush thread's end of a [`Feed`]: records the latest set at every flush.
pub struct Recorder {
    feed: Feed,
    /// The set recorded at every flush until a newer one arrives.
    current: Gauges,
    /// Reused name buffer for the counters.
    name: String,
}

impl Recorder {
    pub fn new(feed: Feed) -> Recorder {
        Recorder { feed, current: Vec::new(), name: String::with_capacity(64) }
    }

    /// Records the latest sample set as gauges and the feed's counters as counters into the
    /// interval; gauges the newest set no longer has are forgotten. Called on the flush thread
    /// just before the interval is summarized.
    pub fn record(&mut self, into: &mut dyn Interval) {
        let (latest, errors, polls) = {
            let mut s = self.feed.slot.lock().unwrap_or_else(|e| e.into_inner());
            (s.latest.take(), std::mem::take(&mut s.errors), std::mem::take(&mut s.polls))
        };
        if let Some(new) = latest {
            for_each_gone(&self.current, &new, |name| into.forget_gauge(name));
            self.current = new;
        }
        for (name, value) in &self.current {
            into.set_gauge(name, *value);
        }
        for (what, n) in [("errors", errors), ("polls", polls)] {
            self.name.clear();
            self.name.push_str(into.meta_prefix());
            self.name.push('.');
            self.name.push_str(self.feed.stats);
            self.name.push('.');
            self.name.push_str(what);
            into.add_counter(&self.name, n as f64);
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Ok(mut s) = self.feed.slot.lock() {
            s.closed = true;
        }
    }
}

/// Calls `gone` with every name of `old` that `new` does not have (both sorted by name).
fn for_each_gone(old: &Gauges, new: &Gauges, mut gone: impl FnMut(&str)) {
    let mut j = 0;
    for (name, _) in old {
        while j < new.len() && new[j].0.as_str() < name.as_str() {
            j += 1;
        }
        if j >= new.len() || new[j].0 != *name {
            gone(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(names: &[(&str, f64)]) -> Gauges {
        names.iter().map(|(n, v)| (n.to_string(), *v)).collect()
    }

    #[test]
    fn gone_names_by_sorted_merge() {
        let mut gone = Vec::new();
        for_each_gone(&g(&[("a", 0.), ("b", 0.), ("d", 0.)]), &g(&[("b", 0.), ("c", 0.)]), |n| {
            gone.push(n.to_string())
        });
        assert_eq!(gone, ["a", "d"]);
    }

    /// What a recorder writes, by name: `+` set, `-` forgotten.
    #[derive(Default)]
    struct Written(Vec<String>);

    impl Interval for Written {
        fn set_gauge(&mut self, name: &str, value: f64) {
            self.0.push(format!("g {name}={value}"));
        }
        fn add_counter(&mut self, name: &str, value: f64) {
            self.0.push(format!("c {name}={value}"));
        }
        fn forget_gauge(&mut self, name: &str) {
            self.0.push(format!("forget {name}"));
        }
        fn meta_prefix(&self) -> &str {
            "statsd"
        }
    }

    /// Published sets are recorded at every flush (repeated while no newer set arrives), the
    /// counters are reported and reset, a gauge that leaves the set is forgotten once, and the
    /// source learns when the recorder is gone.
    #[test]
    fn the_latest_set_is_recorded_at_every_flush() {
        let feed = Feed::new("dockerStats");
        let mut rec = Recorder::new(feed.clone());
        let flush = |rec: &mut Recorder| {
            let mut w = Written::default();
            rec.record(&mut w);
            w.0
        };
        feed.publish(Some(g(&[("web.cpu", 50.0), ("db.pids", 3.0), ("web.cpu", 60.0)])), 1);
        let first =
            ["g db.pids=3", "g web.cpu=60", "c statsd.dockerStats.errors=1", "c statsd.dockerStats.polls=1"];
        assert_eq!(flush(&mut rec), first, "sorted, and the later duplicate wins");
        let again =
            ["g db.pids=3", "g web.cpu=60", "c statsd.dockerStats.errors=0", "c statsd.dockerStats.polls=0"];
        assert_eq!(flush(&mut rec), again, "repeated until a newer set");
        feed.publish(None, 2);
        feed.publish(Some(g(&[("db.pids", 4.0)])), 0);
        let after = [
            "forget web.cpu",
            "g db.pids=4",
            "c statsd.dockerStats.errors=2",
            "c statsd.dockerStats.polls=2",
        ];
        assert_eq!(flush(&mut rec), after);
        assert!(!feed.is_closed());
        drop(rec);
        assert!(feed.is_closed());
    }
}
