//! The immutable result of one flush, handed to every sink, and its rendering into the flat
//! Graphite/etsy names. Built and read on the flush thread; its vectors and the key arena are
//! reused from flush to flush, and rendering writes names into one reused `String`.

use super::summarize::{HistogramRule, PctStats, Percentile, TimerStats};
use super::Naming;

/// A canonical key inside the snapshot's arena: the name, then `;k=v` tags.
#[derive(Clone, Copy, Debug)]
pub struct KeyRef {
    off: u32,
    name_len: u32,
    len: u32,
}

#[derive(Clone, Copy, Debug)]
pub struct CounterOut {
    pub key: KeyRef,
    pub count: f64,
    pub rate: f64,
}

#[derive(Clone, Copy, Debug)]
pub struct GaugeOut {
    pub key: KeyRef,
    pub value: f64,
}

#[derive(Clone, Copy, Debug)]
pub struct SetOut {
    pub key: KeyRef,
    pub count: f64,
}

#[derive(Clone, Debug)]
pub struct TimerOut {
    pub key: KeyRef,
    /// The sample-rate-scaled count and its per-second rate.
    pub count: f64,
    pub count_ps: f64,
    /// `None` for a known timer without values this interval (only count and count_ps).
    pub stats: Option<TimerStats>,
    /// Index of this timer's first entry in `Snapshot::pcts` (one per configured percentile).
    pub pcts_at: u32,
    /// This timer's histogram rule and the index of its first bin count in `Snapshot::hist`.
    pub hist: Option<(u32, u32)>,
}

/// Which counter names a rendering carries: Graphite gets both, the Kafka flat record and the
/// console JSON only the count unless `counter_rates = true`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterNames {
    pub rate: bool,
    pub count: bool,
}

#[derive(Default)]
pub struct Snapshot {
    /// Unix time of the flush, in seconds.
    pub clock: u64,
    /// Real length of the interval, in seconds.
    pub interval: f64,
    keys: String,
    pub counters: Vec<CounterOut>,
    pub gauges: Vec<GaugeOut>,
    pub sets: Vec<SetOut>,
    pub timers: Vec<TimerOut>,
    pub pcts: Vec<Option<PctStats>>,
    pub hist: Vec<u64>,
    pub percentiles: Vec<Percentile>,
    pub histograms: Vec<HistogramRule>,
    /// Series flushed (`statsd.numStats`).
    pub num_stats: u64,
    /// The daemon's figures rendered as `stats.statsd.<name>`: `processing_time`,
    /// `consoleStats.flush_time`, …
    pub statsd: Vec<(String, f64)>,
}

impl Snapshot {
    pub(crate) fn clear(&mut self) {
        self.keys.clear();
        self.counters.clear();
        self.gauges.clear();
        self.sets.clear();
        self.timers.clear();
        self.pcts.clear();
        self.hist.clear();
        self.num_stats = 0;
        self.statsd.clear();
    }

    pub(crate) fn push_key(&mut self, key: &str, name_len: usize) -> KeyRef {
        let off = self.keys.len() as u32;
        self.keys.push_str(key);
        KeyRef { off, name_len: name_len as u32, len: key.len() as u32 }
    }

    /// The series name, without tags.
    pub fn name(&self, k: KeyRef) -> &str {
        &self.keys[k.off as usize..(k.off + k.name_len) as usize]
    }

    /// The tags in Graphite form: `;k=v;k2=v2`, or empty.
    pub fn tags(&self, k: KeyRef) -> &str {
        &self.keys[(k.off + k.name_len) as usize..(k.off + k.len) as usize]
    }

    /// The tags as (key, value) pairs; a bare tag has an empty value.
    pub fn tag_pairs(&self, k: KeyRef) -> impl Iterator<Item = (&str, &str)> {
        self.tags(k).split(';').filter(|t| !t.is_empty()).map(|t| t.split_once('=').unwrap_or((t, "")))
    }

    /// Calls `f(stat, value)` for every statistic of a timer, in etsy's order of names: `count`,
    /// `count_ps`, then (when it had values) `lower` … `std`, five per percentile (`count_90`, …)
    /// and its histogram bins. `stat` is the name's tail as parts: `["mean_90"]`,
    /// `["histogram", "bin_10"]`.
    pub fn for_each_timer_stat(&self, t: &TimerOut, f: &mut dyn FnMut(&[&str], f64)) {
        f(&["count"], t.count);
        f(&["count_ps"], t.count_ps);
        let Some(s) = &t.stats else { return };
        for (name, v) in [
            ("lower", s.lower),
            ("upper", s.upper),
            ("sum", s.sum),
            ("sum_squares", s.sum_squares),
            ("mean", s.mean),
            ("median", s.median),
            ("std", s.std),
        ] {
            f(&[name], v);
        }
        let pcts = &self.pcts[t.pcts_at as usize..t.pcts_at as usize + self.percentiles.len()];
        for (pct, stats) in self.percentiles.iter().zip(pcts) {
            let Some(p) = stats else { continue };
            let values = [p.count, p.mean, p.bound, p.sum, p.sum_squares];
            for (stat, v) in pct.stat_names.iter().zip(values) {
                f(&[stat], v);
            }
        }
        if let Some((rule, at)) = t.hist {
            let rule = &self.histograms[rule as usize];
            for (i, bin) in rule.names.iter().enumerate() {
                f(&["histogram", bin], self.hist[at as usize + i] as f64);
            }
        }
    }

    /// Calls `f(name, value)` for every flat name of the flush, as etsy's graphite backend
    /// names them under `naming`. `buf` is the reused name buffer.
    pub fn for_each_flat(
        &self,
        naming: &Naming,
        which: CounterNames,
        buf: &mut String,
        f: &mut dyn FnMut(&str, f64),
    ) {
        let mut emit = |buf: &mut String, ns: &str, k: KeyRef, parts: &[&str], v: f64| {
            buf.clear();
            if !ns.is_empty() {
                buf.push_str(ns);
                buf.push('.');
            }
            buf.push_str(self.name(k));
            for p in parts {
                buf.push('.');
                buf.push_str(p);
            }
            buf.push_str(&naming.suffix);
            buf.push_str(self.tags(k));
            f(buf, v);
        };
        for c in &self.counters {
            if naming.legacy {
                if which.rate {
                    emit(buf, "stats", c.key, &[], c.rate);
                }
                if which.count {
                    emit(buf, "stats_counts", c.key, &[], c.count);
                }
            } else {
                if which.rate {
                    emit(buf, &naming.counter_ns, c.key, &["rate"], c.rate);
                }
                if which.count {
                    emit(buf, &naming.counter_ns, c.key, &["count"], c.count);
                }
            }
        }
        for t in &self.timers {
            self.for_each_timer_stat(t, &mut |stat, v| emit(buf, &naming.timer_ns, t.key, stat, v));
        }
        for g in &self.gauges {
            emit(buf, &naming.gauge_ns, g.key, &[], g.value);
        }
        for s in &self.sets {
            emit(buf, &naming.set_ns, s.key, &["count"], s.count);
        }
        // statsd.numStats (legacy) / <global>.statsd.numStats<suffix>
        buf.clear();
        buf.push_str(&naming.num_stats);
        f(buf, self.num_stats as f64);
        for (name, v) in &self.statsd {
            buf.clear();
            buf.push_str(&naming.statsd_ns);
            buf.push('.');
            buf.push_str(name);
            if !naming.legacy {
                buf.push_str(&naming.suffix);
            }
            f(buf, *v);
        }
    }
}
