//! The flush side: everything that happens to a full table after the swap. Runs on the flush
//! thread (see [`crate::flush_thread`]), never on the ingest thread.
//!
//! [`Flusher`] owns the state that outlives an interval: every known series (for idle reporting
//! and deletion) and each gauge's last value, so that `+N`/`-N` deltas resolve against it. Each
//! flush merges the interval's tables into that state, summarizes timers with etsy's exact maths,
//! and fills a reused [`Snapshot`] that the sinks read.

pub mod config;
pub mod hook;
pub mod snapshot;
pub mod summarize;

pub use snapshot::{CounterNames, CounterOut, GaugeOut, KeyRef, SetOut, Snapshot, TimerOut};

use crate::aggregate::{IngestStats, Tables};
use crate::parse::{BadLine, Kind};
pub use config::AggregateConfig;
use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;
use summarize::{summarize, Scratch};

/// Where each kind of series is named, precomputed from the naming options (legacy namespace,
/// prefixes, suffix, meta prefix).
#[derive(Clone, Debug, PartialEq)]
pub struct Naming {
    pub legacy: bool,
    /// `.suffix` or empty.
    pub suffix: String,
    pub counter_ns: String,
    pub timer_ns: String,
    pub gauge_ns: String,
    pub set_ns: String,
    /// Where the daemon's own figures go: `stats.statsd`.
    pub statsd_ns: String,
    /// The full name of numStats: `statsd.numStats` (legacy) or `stats.statsd.numStats`.
    pub num_stats: String,
}

impl Naming {
    pub fn new(c: &AggregateConfig) -> Naming {
        let join =
            |parts: &[&str]| parts.iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join(".");
        let suffix = if c.global_suffix.is_empty() { String::new() } else { format!(".{}", c.global_suffix) };
        let meta = c.meta_prefix.as_str();
        if c.legacy_namespace {
            Naming {
                legacy: true,
                counter_ns: "stats".into(),
                timer_ns: "stats.timers".into(),
                gauge_ns: "stats.gauges".into(),
                set_ns: "stats.sets".into(),
                statsd_ns: format!("stats.{meta}"),
                num_stats: format!("{meta}.numStats"),
                suffix,
            }
        } else {
            let g = c.global_prefix.as_str();
            let statsd_ns = join(&[g, meta]);
            Naming {
                legacy: false,
                counter_ns: join(&[g, &c.prefix_counter]),
                timer_ns: join(&[g, &c.prefix_timer]),
                gauge_ns: join(&[g, &c.prefix_gauge]),
                set_ns: join(&[g, &c.prefix_set]),
                num_stats: format!("{statsd_ns}.numStats{suffix}"),
                statsd_ns,
                suffix,
            }
        }
    }
}

/// What the ingest side adds to a flush besides its tables.
#[derive(Clone, Copy, Debug, Default)]
pub struct FlushMeta {
    /// Real length of the interval, seconds.
    pub interval: f64,
    /// Unix time of the flush, seconds.
    pub clock: u64,
    /// Flush start minus previous flush start minus the configured interval, ms.
    pub timestamp_lag_ms: f64,
    /// Deadlines missed because the flush thread still held the spare (since the last flush).
    pub overruns: u64,
    /// Datagrams the kernel dropped on our sockets in the interval.
    pub kernel_drops: u64,
}

/// A series that was seen once and is still reported.
struct Known {
    kind: Kind,
    key: Box<str>,
    name_len: u32,
    /// The last gauge value.
    gauge: f64,
    /// The last flushed count of a counter, set or timer (the admin listings).
    last: f64,
    /// Consecutive intervals without data.
    idle: u32,
    seen: bool,
}

pub struct Flusher {
    config: AggregateConfig,
    hasher: DefaultHashBuilder,
    index: HashTable<u32>,
    known: Vec<Known>,
    scratch: Scratch,
    snapshot: Snapshot,
}

impl Flusher {
    pub fn new(config: AggregateConfig) -> Flusher {
        let mut f = Flusher {
            config: config.clone(),
            hasher: DefaultHashBuilder::default(),
            index: HashTable::new(),
            known: Vec::new(),
            scratch: Scratch::default(),
            snapshot: Snapshot::default(),
        };
        f.set_config(config);
        f
    }

    /// Takes a new aggregate config (reload); known series and gauge values are kept.
    pub fn set_config(&mut self, config: AggregateConfig) {
        self.snapshot.percentiles = config.percentiles.clone();
        self.snapshot.histograms = config.histograms.clone();
        self.config = config;
    }

    pub fn config(&self) -> &AggregateConfig {
        &self.config
    }

    /// Number of series currently known (reported every interval unless deleted).
    pub fn known_series(&self) -> usize {
        self.known.len()
    }

    /// Merges one interval into the state and returns the snapshot for the sinks. The tables are
    /// left summarized (timer values sorted); the caller clears them. `statsd` figures (sink
    /// stats, processing time) are appended by the caller afterwards.
    pub fn flush(&mut self, tables: &mut Tables, meta: &FlushMeta) -> &mut Snapshot {
        inject_meta(tables, &self.config.meta_prefix, meta);
        for k in &mut self.known {
            k.seen = false;
        }
        let snap = &mut self.snapshot;
        snap.clear();
        snap.clock = meta.clock;
        snap.interval = meta.interval;
        let interval = meta.interval;

        let Flusher { config, hasher, index, known, scratch, .. } = self;
        for i in 0..tables.series_count() {
            let s = tables.series_at(i);
            let (kind, slot, name_len) = (s.kind, s.slot, s.name_len);
            let id = known_id(index, known, hasher, kind, s.key, name_len);
            let k = &mut known[id];
            k.seen = true;
            k.idle = 0;
            let key_ref = snap.push_key(&k.key, name_len);
            match kind {
                Kind::Counter => {
                    let count = tables.counters[slot];
                    k.last = count;
                    snap.counters.push(CounterOut { key: key_ref, count, rate: count / interval });
                }
                Kind::Gauge => {
                    k.gauge = tables.gauges[slot].resolve(k.gauge);
                    snap.gauges.push(GaugeOut { key: key_ref, value: k.gauge });
                }
                Kind::Set => {
                    k.last = tables.sets[slot] as f64;
                    snap.sets.push(SetOut { key: key_ref, count: tables.sets[slot] as f64 });
                }
                Kind::Timer => {
                    let name = &k.key[..name_len];
                    let rule = config.histograms.iter().position(|h| name.contains(h.metric.as_str()));
                    let bins = rule.map(|r| config.histograms[r].bins.as_slice());
                    let timer = &mut tables.timers_mut()[slot];
                    k.last = timer.count;
                    let (pcts_at, hist_at) = (snap.pcts.len() as u32, snap.hist.len() as u32);
                    let stats =
                        summarize(timer, &config.percentiles, bins, scratch, &mut snap.pcts, &mut snap.hist);
                    snap.timers.push(TimerOut {
                        key: key_ref,
                        count: timer.count,
                        count_ps: timer.count / interval,
                        stats,
                        pcts_at,
                        hist: stats.and(rule).map(|r| (r as u32, hist_at)),
                    });
                }
            }
        }

        self.report_idle();
        let snap = &mut self.snapshot;
        snap.num_stats =
            (snap.counters.len() + snap.timers.len() + snap.gauges.len() + snap.sets.len()) as u64;
        snap
    }

    /// Reports (or deletes) every known series that saw no data this interval.
    fn report_idle(&mut self) {
        let c = &self.config;
        let snap = &mut self.snapshot;
        let mut deleted = false;
        for k in &mut self.known {
            if k.seen {
                continue;
            }
            k.idle += 1;
            k.last = 0.0;
            if expired(c, k) {
                deleted = true;
                continue;
            }
            let key = snap.push_key(&k.key, k.name_len as usize);
            match k.kind {
                Kind::Counter => snap.counters.push(CounterOut { key, count: 0.0, rate: 0.0 }),
                Kind::Gauge => snap.gauges.push(GaugeOut { key, value: k.gauge }),
                Kind::Set => snap.sets.push(SetOut { key, count: 0.0 }),
                Kind::Timer => snap.timers.push(TimerOut {
                    key,
                    count: 0.0,
                    count_ps: 0.0,
                    stats: None,
                    pcts_at: 0,
                    hist: None,
                }),
            }
        }
        if deleted {
            let c = &self.config;
            self.known.retain(|k| k.seen || !expired(c, k));
        }
        // A cardinality flood spread over many intervals admits up to max_series new series in
        // each: remembered for idle reporting, they would pile up without bound. Past
        // max_series known series the longest idle are forgotten (reported idle this last
        // time); series seen this interval are always kept (tests/cardinality.rs,
        // a_cardinality_flood_over_many_intervals_stays_bounded).
        let excess = self.known.len().saturating_sub(self.config.limits.max_series);
        if excess > 0 {
            forget_longest_idle(&mut self.known, excess);
        }
        if deleted || excess > 0 {
            self.rebuild_index();
        }
    }

    fn rebuild_index(&mut self) {
        self.index.clear();
        for (i, k) in self.known.iter().enumerate() {
            let h = self.hasher.hash_one((k.kind as u8, k.key.as_bytes()));
            let (known, hasher) = (&self.known, &self.hasher);
            self.index.insert_unique(h, i as u32, |&j| {
                let k = &known[j as usize];
                hasher.hash_one((k.kind as u8, k.key.as_bytes()))
            });
        }
    }

    /// Deletes known series of `kind` whose name equals `pattern`, or starts with it when it ends
    /// in `*` (the admin `del*` commands). Returns how many were deleted.
    pub fn delete(&mut self, kind: Kind, pattern: &str) -> usize {
        self.delete_each(kind, pattern, &mut |_| {})
    }

    /// [`Flusher::delete`], calling `deleted` with each deleted key.
    pub fn delete_each(&mut self, kind: Kind, pattern: &str, deleted: &mut dyn FnMut(&str)) -> usize {
        let before = self.known.len();
        let matches = |key: &str| match pattern.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix),
            None => key == pattern,
        };
        self.known.retain(|k| {
            let gone = k.kind == kind && matches(&k.key);
            if gone {
                deleted(&k.key);
            }
            !gone
        });
        let n = before - self.known.len();
        if n > 0 {
            self.rebuild_index();
        }
        n
    }

    /// Every known series of `kind` with its current value: a gauge's value; the last flushed
    /// interval's count for counters, sets and timers (0 when that interval was idle).
    pub fn for_each_known(&self, kind: Kind, f: &mut dyn FnMut(&str, f64)) {
        for k in self.known.iter().filter(|k| k.kind == kind) {
            f(&k.key, if kind == Kind::Gauge { k.gauge } else { k.last });
        }
    }
}

/// Whether an idle known series is dropped now (delete_* switches, gauges_max_ttl).
fn expired(c: &AggregateConfig, k: &Known) -> bool {
    match k.kind {
        Kind::Counter => c.delete_counters,
        Kind::Timer => c.delete_timers,
        Kind::Set => c.delete_sets,
        Kind::Gauge => match c.gauges_max_ttl {
            Some(ttl) => k.idle > ttl,
            None => c.delete_gauges,
        },
    }
}

/// Forgets up to `n` known series that saw no data this interval, the longest idle first (among
/// equally idle ones, the oldest first).
fn forget_longest_idle(known: &mut Vec<Known>, n: usize) {
    let mut idle: Vec<u32> = known.iter().filter(|k| !k.seen).map(|k| k.idle).collect();
    let n = n.min(idle.len());
    if n == 0 {
        return;
    }
    let (_, &mut threshold, _) = idle.select_nth_unstable_by(n - 1, |a, b| b.cmp(a));
    let mut at_threshold = n - idle.iter().filter(|&&i| i > threshold).count();
    known.retain(|k| {
        if k.seen || k.idle < threshold {
            true
        } else if k.idle > threshold {
            false
        } else if at_threshold > 0 {
            at_threshold -= 1;
            false
        } else {
            true
        }
    });
}

/// Index of the known series (kind, key), inserting it when new.
fn known_id(
    index: &mut HashTable<u32>,
    known: &mut Vec<Known>,
    hasher: &DefaultHashBuilder,
    kind: Kind,
    key: &str,
    name_len: usize,
) -> usize {
    let h = hasher.hash_one((kind as u8, key.as_bytes()));
    if let Some(&i) = index.find(h, |&i| {
        let k = &known[i as usize];
        k.kind == kind && &*k.key == key
    }) {
        return i as usize;
    }
    known.push(Known {
        kind,
        key: key.into(),
        name_len: name_len as u32,
        gauge: 0.0,
        last: 0.0,
        idle: 0,
        seen: false,
    });
    let i = known.len() - 1;
    index.insert_unique(h, i as u32, |&j| {
        let k = &known[j as usize];
        hasher.hash_one((k.kind as u8, k.key.as_bytes()))
    });
    i
}

/// Records the daemon's own counters and gauges into the interval's tables, so that they are
/// named, prefixed and reported exactly like user series (etsy does the same).
fn inject_meta(tables: &mut Tables, prefix: &str, meta: &FlushMeta) {
    let stats: IngestStats = tables.stats.clone();
    let mut name = String::with_capacity(64);
    let mut counter = |tables: &mut Tables, suffix: &str, v: u64| {
        name.clear();
        name.push_str(prefix);
        name.push('.');
        name.push_str(suffix);
        tables.add_counter(&name, v as f64);
    };
    counter(tables, "packets_received", stats.packets);
    counter(tables, "metrics_received", stats.metrics);
    counter(tables, "bad_lines_seen", stats.bad_total());
    counter(tables, "bytes_received", stats.bytes);
    counter(tables, "events_received", stats.events);
    counter(tables, "service_checks_received", stats.service_checks);
    counter(tables, "kernel_drops", meta.kernel_drops);
    counter(tables, "flush_overruns", meta.overruns);
    for why in BadLine::ALL {
        let n = stats.bad(why);
        if n > 0 {
            counter(tables, &format!("bad_lines.{}", why.name()), n);
        }
    }
    // Figures of optional features: reported once they happen, like the reasons above.
    let optional = [
        ("connections_opened", stats.connections_opened),
        ("connections_refused", stats.connections_refused),
        ("connections_timed_out", stats.connections_timed_out),
        ("config_reloads", stats.config_reloads),
        ("config_reload_failures", stats.config_reload_failures),
        ("debug_dump_dropped", stats.debug_dump_dropped),
        ("timer_values_sketched", stats.timer_values_sketched),
    ];
    for (suffix, n) in optional {
        if n > 0 {
            counter(tables, suffix, n);
        }
    }
    tables.set_gauge(&format!("{prefix}.timestamp_lag"), meta.timestamp_lag_ms);
}

#[cfg(test)]
mod tests {
    use super::config::AggregateConfig;
    use super::*;
    use crate::ingest::{self, Format};
    use std::collections::BTreeMap;

    /// Feeds one interval per entry of `intervals` and returns every flush as name → value.
    fn run(aggregate_toml: &str, intervals: &[&str]) -> Vec<BTreeMap<String, f64>> {
        let aggregate = AggregateConfig::from_toml(aggregate_toml).unwrap();
        let naming = Naming::new(&aggregate);
        let mut flusher = Flusher::new(aggregate.clone());
        let mut tables = Tables::new(aggregate.limits.clone());
        let mut out = Vec::new();
        for (i, datagram) in intervals.iter().enumerate() {
            if !datagram.is_empty() {
                ingest::datagram(
                    &mut tables,
                    datagram.as_bytes(),
                    Format::Statsd,
                    false,
                    &mut Default::default(),
                    &mut None,
                );
            }
            let meta = FlushMeta { interval: 2.0, clock: i as u64, ..FlushMeta::default() };
            let snap = flusher.flush(&mut tables, &meta);
            let mut names = BTreeMap::new();
            snap.for_each_flat(
                &naming,
                CounterNames { rate: true, count: true },
                &mut String::new(),
                &mut |n, v| {
                    names.insert(n.to_string(), v);
                },
            );
            out.push(names);
            tables.clear();
        }
        out
    }

    #[test]
    fn gauges_max_ttl_keeps_an_idle_gauge_for_n_intervals_then_forgets_it() {
        let f = run("gauges_max_ttl = 2", &["g:5|g", "", "", "", "g:+1|g"]);
        assert_eq!(f[1]["stats.gauges.g"], 5.0);
        assert_eq!(f[2]["stats.gauges.g"], 5.0);
        assert!(!f[3].contains_key("stats.gauges.g"), "dropped after 2 idle intervals");
        assert_eq!(f[4]["stats.gauges.g"], 1.0, "a forgotten gauge starts again from 0");
    }

    #[test]
    fn per_type_delete_switches() {
        let f = run("delete_counters = true", &["c:1|c\nt:1|ms\ns:a|s\ng:1|g", ""]);
        assert!(!f[1].contains_key("stats_counts.c"));
        assert_eq!(f[1]["stats.timers.t.count"], 0.0);
        assert_eq!(f[1]["stats.sets.s.count"], 0.0);
        assert_eq!(f[1]["stats.gauges.g"], 1.0);
        // the daemon's own counters are always reported
        assert_eq!(f[1]["stats_counts.statsd.packets_received"], 0.0);
    }

    #[test]
    fn rates_use_the_real_interval_and_idle_timers_report_only_counts() {
        let f = run("", &["c:3|c\nt:4|ms|@0.5", ""]);
        assert_eq!((f[0]["stats_counts.c"], f[0]["stats.c"]), (3.0, 1.5));
        assert_eq!((f[0]["stats.timers.t.count"], f[0]["stats.timers.t.count_ps"]), (2.0, 1.0));
        let idle: Vec<_> = f[1].keys().filter(|k| k.starts_with("stats.timers.t.")).collect();
        assert_eq!(idle, ["stats.timers.t.count", "stats.timers.t.count_ps"]);
    }

    #[test]
    fn known_series_stay_within_max_series_the_longest_idle_forgotten_first() {
        let names = |p: &str| (0..30).map(|i| format!("{p}{i}:1|c")).collect::<Vec<_>>().join("\n");
        let (a, b, c) = (names("a"), names("b"), names("c"));
        let f = run("max_series = 60", &[&a, &b, &c, "b0:1|c"]);
        // 30 user series and the daemon's own each interval; the idle `a`s go first, then `b`s.
        assert_eq!(f[1]["stats_counts.a0"], 0.0, "an idle series is reported while it fits");
        assert!(!f[3].contains_key("stats_counts.a29"), "the longest idle are forgotten");
        assert_eq!(f[3]["stats_counts.b0"], 1.0);
        assert_eq!(f[3]["stats_counts.c29"], 0.0, "the most recent idle are kept");
        let mut config = AggregateConfig::from_toml("").unwrap();
        config.limits.max_series = 60;
        let mut flusher = Flusher::new(config.clone());
        let mut tables = Tables::new(config.limits.clone());
        for p in ["a", "b", "c", "d"] {
            ingest::datagram(
                &mut tables,
                names(p).as_bytes(),
                Format::Statsd,
                false,
                &mut Default::default(),
                &mut None,
            );
            flusher.flush(&mut tables, &FlushMeta { interval: 1.0, ..FlushMeta::default() });
            tables.clear();
            assert!(flusher.known_series() <= 60, "{p}: {}", flusher.known_series());
        }
    }

    #[test]
    fn delete_by_name_or_prefix() {
        let config = AggregateConfig::from_toml("").unwrap();
        let mut flusher = Flusher::new(config.clone());
        let mut tables = Tables::new(config.limits.clone());
        ingest::datagram(
            &mut tables,
            b"api.a:1|c\napi.b:1|c\ndb.a:1|c\napi.a:1|g",
            Format::Statsd,
            false,
            &mut Default::default(),
            &mut None,
        );
        flusher.flush(&mut tables, &FlushMeta { interval: 1.0, ..FlushMeta::default() });
        let before = flusher.known_series();
        assert_eq!(flusher.delete(Kind::Counter, "api.*"), 2);
        assert_eq!(flusher.delete(Kind::Counter, "db.a"), 1);
        assert_eq!(flusher.delete(Kind::Counter, "nothing"), 0);
        assert_eq!(flusher.known_series(), before - 3, "the gauge api.a stays");
    }
}
