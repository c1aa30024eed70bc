//! Sources: producers of metrics other than statsd traffic (today the Docker Engine poller,
//! [`docker`]). A source runs on its own thread and publishes its latest sample set into a
//! shared [`Feed`]; the flush thread owns the matching [`Recorder`] and, at every flush, records
//! the latest set as gauges into the interval's tables, just before summarizing, the way the
//! daemon's own meta figures are recorded. So source metrics are named, prefixed and delivered to
//! every sink like any other gauge, and the ingest thread never sees them.
//!
//! The feed holds one sample set (the newest replaces an unread older one) plus counters that
//! accumulate until a flush takes them (errors, polls). The lock is held for a swap, never for
//! I/O. Series a source stops publishing (a container that went away) are deleted from the
//! flusher's known series at the next flush, so they stop being reported instead of repeating
//! their last value forever.

pub mod docker;

use crate::aggregate::Tables;
use crate::flush::Flusher;
use crate::parse::Kind;
use std::sync::{Arc, Mutex};

/// One sample set: `(name, value)` gauges, sorted by name, names unique.
pub type Gauges = Vec<(String, f64)>;

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

    /// Records the latest sample set as gauges and the feed's counters as counters into
    /// `tables`; series the newest set no longer has are deleted from `flusher`. Called on the
    /// flush thread just before [`Flusher::flush`].
    pub fn record(&mut self, tables: &mut Tables, flusher: &mut Flusher) {
        let (latest, errors, polls) = {
            let mut s = self.feed.slot.lock().unwrap_or_else(|e| e.into_inner());
            (s.latest.take(), std::mem::take(&mut s.errors), std::mem::take(&mut s.polls))
        };
        if let Some(new) = latest {
            for_each_gone(&self.current, &new, |name| {
                flusher.delete(Kind::Gauge, name);
            });
            self.current = new;
        }
        for (name, value) in &self.current {
            tables.set_gauge(name, *value);
        }
        for (what, n) in [("errors", errors), ("polls", polls)] {
            self.name.clear();
            self.name.push_str(&flusher.config().meta_prefix);
            self.name.push('.');
            self.name.push_str(self.feed.stats);
            self.name.push('.');
            self.name.push_str(what);
            tables.add_counter(&self.name, n as f64);
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
    use crate::flush::config::AggregateConfig;
    use crate::flush::{CounterNames, FlushMeta, Naming};
    use std::collections::BTreeMap;

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

    /// The whole path on the flush side: published sets are recorded at every flush (repeated
    /// while no newer set arrives), the counters are reported, and a series that disappears from
    /// the set disappears from the output (even with idle gauges kept by default).
    #[test]
    fn recorded_at_every_flush_and_vanished_series_are_deleted() {
        let config = AggregateConfig::from_toml("").unwrap();
        let naming = Naming::new(&config);
        let mut flusher = Flusher::new(config.clone());
        let mut tables = Tables::new(config.limits.clone());
        let feed = Feed::new("dockerStats");
        let mut rec = Recorder::new(feed.clone());
        let mut flush = |rec: &mut Recorder| {
            rec.record(&mut tables, &mut flusher);
            let snap = flusher.flush(&mut tables, &FlushMeta { interval: 1.0, ..FlushMeta::default() });
            let mut out = BTreeMap::new();
            snap.for_each_flat(
                &naming,
                CounterNames { rate: false, count: true },
                &mut String::new(),
                &mut |n, v| {
                    out.insert(n.to_string(), v);
                },
            );
            tables.clear();
            out
        };
        feed.publish(Some(g(&[("web.cpu.percent", 50.0), ("db.pids", 3.0), ("web.cpu.percent", 60.0)])), 1);
        let f = flush(&mut rec);
        assert_eq!(f["stats.gauges.web.cpu.percent"], 60.0, "the later duplicate wins");
        assert_eq!(f["stats.gauges.db.pids"], 3.0);
        assert_eq!(f["stats_counts.statsd.dockerStats.errors"], 1.0);
        assert_eq!(f["stats_counts.statsd.dockerStats.polls"], 1.0);
        let f = flush(&mut rec);
        assert_eq!(f["stats.gauges.web.cpu.percent"], 60.0, "repeated until a newer set");
        assert_eq!(f["stats_counts.statsd.dockerStats.errors"], 0.0);
        feed.publish(None, 2);
        feed.publish(Some(g(&[("db.pids", 4.0)])), 0);
        let f = flush(&mut rec);
        assert!(!f.contains_key("stats.gauges.web.cpu.percent"), "{f:?}");
        assert_eq!(f["stats.gauges.db.pids"], 4.0);
        assert_eq!(f["stats_counts.statsd.dockerStats.errors"], 2.0);
        assert_eq!(f["stats_counts.statsd.dockerStats.polls"], 2.0);
        assert!(!feed.is_closed());
        drop(rec);
        assert!(feed.is_closed());
    }
}
