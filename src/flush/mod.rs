//! The flush side: everything that happens to a full table after the swap. Runs on the flush
//! thread (see [`crate::flush_thread`]), never on the ingest thread.
//!
//! [`Flusher`] owns the state that outlives an interval: every known series (for idle reporting
//! and deletion) and each gauge's last value, so that `+N`/`-N` deltas resolve against it. Each
//! flush merges the interval's tables into that state, summarizes timers with etsy's exact maths,
//! and fills a reused [`Snapshot`] that the sinks read.
//!
//! A known series costs a 16-byte [`Known`], its key once in the snapshot's key arena (with a
//! 12-byte span) and a 4-byte index slot: the snapshot's entries name it by index, so reporting
//! it idle copies no key. Series that are deleted or forgotten during a flush are only marked
//! `gone` there (the snapshot being built may still name them) and are dropped from the state at
//! the next change to it (the next flush or an admin delete).

pub mod config;
pub mod hook;
pub mod snapshot;
pub mod summarize;

pub use snapshot::{CounterNames, CounterOut, GaugeOut, KeyRef, SetOut, Snapshot, TimerOut};

use crate::aggregate::{IngestStats, Tables};
use crate::parse::{BadLine, Kind};
pub use config::AggregateConfig;
use hashbrown::{DefaultHashBuilder, HashTable};
use snapshot::{shrink_roomy, Keys};
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

/// A series that was seen once and is still reported. Its key is at the same index in the
/// snapshot's [`Keys`].
struct Known {
    /// A gauge's last value; the last flushed count of a counter, set or timer (the admin
    /// listings), 0 after an idle interval.
    value: f64,
    /// Consecutive intervals without data.
    idle: u32,
    kind: Kind,
    seen: bool,
    /// Deleted or forgotten in the last flush; dropped at the next change to the state.
    gone: bool,
}

pub struct Flusher {
    config: AggregateConfig,
    hasher: DefaultHashBuilder,
    /// Index into `known` (and the snapshot's keys) by (kind, key).
    index: HashTable<u32>,
    known: Vec<Known>,
    /// How many of `known` are `gone`.
    gone: usize,
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
            gone: 0,
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
        self.known.len() - self.gone
    }

    /// Merges one interval into the state and returns the snapshot for the sinks. The tables are
    /// left summarized (timer values sorted); the caller clears them. `statsd` figures (sink
    /// stats, processing time) are appended by the caller afterwards.
    pub fn flush(&mut self, tables: &mut Tables, meta: &FlushMeta) -> &mut Snapshot {
        inject_meta(tables, &self.config.meta_prefix, meta);
        self.drop_gone();
        for k in &mut self.known {
            k.seen = false;
        }
        let snap = &mut self.snapshot;
        snap.clear();
        snap.clock = meta.clock;
        snap.interval = meta.interval;
        let interval = meta.interval;

        let Flusher { config, hasher, index, known, scratch, .. } = self;
        for i in 0..tables.held_series() {
            // Keys kept warm from earlier intervals are skipped unless this one touched them.
            let Some(s) = tables.live_at(i) else { continue };
            let (kind, slot, name_len) = (s.kind, s.slot, s.name_len);
            let key_ref = known_id(index, known, &mut snap.keys, hasher, kind, s.key, name_len);
            let k = &mut known[key_ref.index()];
            k.seen = true;
            k.idle = 0;
            match kind {
                Kind::Counter => {
                    let count = tables.counters[slot];
                    k.value = count;
                    snap.counters.push(CounterOut { key: key_ref, count, rate: count / interval });
                }
                Kind::Gauge => {
                    k.value = tables.gauges[slot].resolve(k.value);
                    snap.gauges.push(GaugeOut { key: key_ref, value: k.value });
                }
                Kind::Set => {
                    k.value = tables.sets[slot] as f64;
                    snap.sets.push(SetOut { key: key_ref, count: tables.sets[slot] as f64 });
                }
                Kind::Timer => {
                    let name = &s.key[..name_len];
                    let rule = config.histograms.iter().position(|h| name.contains(h.metric.as_str()));
                    let bins = rule.map(|r| config.histograms[r].bins.as_slice());
                    let timer = &mut tables.timers_mut()[slot];
                    k.value = timer.count;
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

    /// Reports (or deletes) every known series that saw no data this interval. Deleted and
    /// forgotten series are marked `gone`, not dropped: the snapshot names series by index.
    fn report_idle(&mut self) {
        let Flusher { config: c, known, gone, snapshot: snap, .. } = self;
        for (i, k) in known.iter_mut().enumerate() {
            if k.seen {
                continue;
            }
            k.idle = k.idle.saturating_add(1);
            if k.kind != Kind::Gauge {
                k.value = 0.0;
            }
            if expired(c, k) {
                k.gone = true;
                *gone += 1;
                continue;
            }
            let key = KeyRef::new(i);
            match k.kind {
                Kind::Counter => snap.counters.push(CounterOut { key, count: 0.0, rate: 0.0 }),
                Kind::Gauge => snap.gauges.push(GaugeOut { key, value: k.value }),
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
        // A cardinality flood spread over many intervals admits up to max_series new series in
        // each: remembered for idle reporting, they would pile up without bound. Past
        // max_series known series the longest idle are forgotten (reported idle this last
        // time); series seen this interval are always kept (tests/cardinality.rs,
        // a_cardinality_flood_over_many_intervals_stays_bounded).
        let excess = (known.len() - *gone).saturating_sub(c.limits.max_series);
        if excess > 0 {
            *gone += forget_longest_idle(known, excess);
        }
    }

    /// Drops the series marked `gone` and those `keep` refuses (it sees only the others) from
    /// the known series and the key arena, and rebuilds the index if any went. Returns how many
    /// `keep` refused.
    fn retain(&mut self, keep: &mut dyn FnMut(&Known, &str) -> bool) -> usize {
        let (known, keys) = (&mut self.known, &mut self.snapshot.keys);
        let mut refused = 0;
        for (i, k) in known.iter_mut().enumerate() {
            if !k.gone && !keep(k, keys.key(i)) {
                k.gone = true;
                refused += 1;
            }
        }
        self.gone += refused;
        if self.gone > 0 {
            keys.retain(&mut |i| !known[i].gone);
            known.retain(|k| !k.gone);
            self.gone = 0;
            shrink_roomy(known);
            keys.shrink();
            self.rebuild_index();
        }
        refused
    }

    /// Drops the series a flush marked `gone`.
    fn drop_gone(&mut self) {
        if self.gone > 0 {
            self.retain(&mut |_, _| true);
        }
    }

    fn rebuild_index(&mut self) {
        let (known, keys, hasher) = (&self.known, &self.snapshot.keys, &self.hasher);
        let hash = |j: u32| hasher.hash_one((known[j as usize].kind as u8, keys.key(j as usize).as_bytes()));
        self.index.clear();
        for i in 0..known.len() as u32 {
            self.index.insert_unique(hash(i), i, |&j| hash(j));
        }
    }

    /// Deletes known series of `kind` whose name equals `pattern`, or starts with it when it ends
    /// in `*` (the admin `del*` commands). Returns how many were deleted.
    pub fn delete(&mut self, kind: Kind, pattern: &str) -> usize {
        self.delete_each(kind, pattern, &mut |_| {})
    }

    /// [`Flusher::delete`], calling `deleted` with each deleted key.
    pub fn delete_each(&mut self, kind: Kind, pattern: &str, deleted: &mut dyn FnMut(&str)) -> usize {
        let matches = |key: &str| match pattern.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix),
            None => key == pattern,
        };
        self.retain(&mut |k, key| {
            let gone = k.kind == kind && matches(key);
            if gone {
                deleted(key);
            }
            !gone
        })
    }

    /// Every known series of `kind` with its current value: a gauge's value; the last flushed
    /// interval's count for counters, sets and timers (0 when that interval was idle).
    pub fn for_each_known(&self, kind: Kind, f: &mut dyn FnMut(&str, f64)) {
        for (i, k) in self.known.iter().enumerate() {
            if k.kind == kind && !k.gone {
                f(self.snapshot.keys.key(i), k.value);
            }
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

/// Marks up to `n` known series that saw no data this interval `gone`, the longest idle first
/// (among equally idle ones, the oldest first). Returns how many it marked.
fn forget_longest_idle(known: &mut [Known], n: usize) -> usize {
    let candidate = |k: &Known| !k.seen && !k.gone;
    let mut idle: Vec<u32> = known.iter().filter(|k| candidate(k)).map(|k| k.idle).collect();
    let n = n.min(idle.len());
    if n == 0 {
        return 0;
    }
    let (_, &mut threshold, _) = idle.select_nth_unstable_by(n - 1, |a, b| b.cmp(a));
    let mut at_threshold = n - idle.iter().filter(|&&i| i > threshold).count();
    for k in known.iter_mut().filter(|k| candidate(k)) {
        if k.idle > threshold {
            k.gone = true;
        } else if k.idle == threshold && at_threshold > 0 {
            at_threshold -= 1;
            k.gone = true;
        }
    }
    n
}

/// The known series (kind, key), inserted (with its key appended to `keys`) when new.
fn known_id(
    index: &mut HashTable<u32>,
    known: &mut Vec<Known>,
    keys: &mut Keys,
    hasher: &DefaultHashBuilder,
    kind: Kind,
    key: &str,
    name_len: usize,
) -> KeyRef {
    let h = hasher.hash_one((kind as u8, key.as_bytes()));
    if let Some(&i) = index.find(h, |&i| known[i as usize].kind == kind && keys.key(i as usize) == key) {
        return KeyRef::new(i as usize);
    }
    known.push(Known { value: 0.0, idle: 0, kind, seen: false, gone: false });
    let id = keys.push(key, name_len);
    index.insert_unique(h, id.index() as u32, |&j| {
        hasher.hash_one((known[j as usize].kind as u8, keys.key(j as usize).as_bytes()))
    });
    id
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

    /// The tables keep their keys from one interval to the next: a series that got nothing is
    /// reported as idle (or deleted) by the flush, never with the last interval's figures, and
    /// its key serves it again when it comes back.
    #[test]
    fn a_series_skipped_by_one_interval_is_idle_in_it_and_counts_afresh_when_it_comes_back() {
        let intervals = ["c:1|c\nd:2|c\nt:3|ms\ns:a|s", "d:3|c", "c:4|c\nd:5|c\nt:6|ms\ns:b|s"];
        for (toml, idle_counter) in [("", Some(0.0)), ("delete_counters = true", None)] {
            let f = run(toml, &intervals);
            assert_eq!(f[1].get("stats_counts.c").copied(), idle_counter, "{toml}");
            assert_eq!(f[1]["stats_counts.d"], 3.0, "{toml}");
            assert_eq!((f[1]["stats.timers.t.count"], f[1]["stats.sets.s.count"]), (0.0, 0.0), "{toml}");
            assert!(!f[1].contains_key("stats.timers.t.upper"), "{toml}");
            assert_eq!((f[2]["stats_counts.c"], f[2]["stats_counts.d"]), (4.0, 5.0), "{toml}");
            assert_eq!((f[2]["stats.timers.t.count"], f[2]["stats.timers.t.upper"]), (1.0, 6.0), "{toml}");
            assert_eq!(f[2]["stats.sets.s.count"], 1.0, "{toml}");
        }
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
    fn deleted_series_leave_the_key_arena_and_the_others_keep_their_names() {
        let f = run(
            "delete_counters = true",
            &["a:1|c\nb:1|g\nc:1|c\nd;x=1:2|c", "b:2|g", "c:3|c\ne:1|ms", "", "a:4|c"],
        );
        assert!(!f[1].contains_key("stats_counts.a"), "an idle counter is deleted");
        assert_eq!(f[1]["stats.gauges.b"], 2.0);
        assert_eq!(f[2]["stats_counts.c"], 3.0, "a deleted counter comes back");
        assert_eq!(f[3]["stats.gauges.b"], 2.0, "an idle gauge keeps its name and value");
        assert_eq!(f[3]["stats.timers.e.count"], 0.0);
        assert!(!f[3].contains_key("stats_counts.c"));
        assert_eq!(f[4]["stats_counts.a"], 4.0);
        assert_eq!(f[4]["stats.gauges.b"], 2.0);
    }

    #[test]
    fn idle_series_add_no_key_bytes_from_flush_to_flush() {
        let config = AggregateConfig::from_toml("").unwrap();
        let mut flusher = Flusher::new(config.clone());
        let mut tables = Tables::new(config.limits.clone());
        let names: String = (0..100).map(|i| format!("idle.k{i}:1|c\n")).collect();
        ingest::datagram(
            &mut tables,
            names.as_bytes(),
            Format::Statsd,
            false,
            &mut Default::default(),
            &mut None,
        );
        let meta = FlushMeta { interval: 1.0, ..FlushMeta::default() };
        let mut arena = Vec::new();
        for _ in 0..4 {
            flusher.flush(&mut tables, &meta);
            tables.clear();
            arena.push((flusher.snapshot.keys.bytes.len(), flusher.known_series()));
        }
        assert!(arena.windows(2).all(|w| w[0] == w[1]), "{arena:?}");
        assert!(flusher.known_series() > 100);
        let mut listed = 0;
        flusher.for_each_known(Kind::Counter, &mut |k, v| {
            if k.starts_with("idle.k") {
                assert_eq!(v, 0.0);
                listed += 1;
            }
        });
        assert_eq!(listed, 100);
        assert_eq!(flusher.delete(Kind::Counter, "idle.*"), 100);
        let snap = flusher.flush(&mut tables, &meta);
        assert!(snap.counters.iter().all(|c| !snap.name(c.key).starts_with("idle.")));
        assert!(snap.counters.iter().any(|c| snap.name(c.key) == "statsd.packets_received"));
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
