//! The immutable result of one flush, handed to every sink, and its rendering into the flat
//! Graphite/etsy names. Built and read on the flush thread; its vectors are reused from flush to
//! flush, and rendering writes names into one reused `String`.
//!
//! The snapshot also holds [`Keys`], the one copy of every known series' key: the flusher
//! (which owns the known series, see [`super::Flusher`]) appends a key when a series is first
//! seen and compacts the table when series are forgotten, and each output entry names its
//! series by index into it, so an idle series costs no key copy per flush.

use super::summarize::{HistogramRule, PctStats, Percentile, TimerStats};
use super::Naming;

/// A known series' canonical key (the name, then `;k=v` tags), by its index in the snapshot's
/// [`Keys`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRef(u32);

impl KeyRef {
    pub(crate) fn new(index: usize) -> KeyRef {
        KeyRef(index as u32)
    }

    pub(crate) fn index(self) -> usize {
        self.0 as usize
    }
}

/// Where one key lies in [`Keys`]' arena.
#[derive(Clone, Copy, Debug)]
struct Span {
    off: u32,
    len: u32,
    name_len: u32,
}

/// Every known series' key, in one byte arena, indexed by the series' position among the
/// flusher's known series (the two are appended and compacted together).
#[derive(Default)]
pub struct Keys {
    pub(super) bytes: String,
    spans: Vec<Span>,
}

impl Keys {
    /// Appends a key whose name is its first `name_len` bytes; returns its index.
    pub(crate) fn push(&mut self, key: &str, name_len: usize) -> KeyRef {
        let off = self.bytes.len() as u32;
        self.bytes.push_str(key);
        self.spans.push(Span { off, len: key.len() as u32, name_len: name_len as u32 });
        KeyRef(self.spans.len() as u32 - 1)
    }

    /// The whole key of index `i`.
    pub(crate) fn key(&self, i: usize) -> &str {
        let s = self.spans[i];
        &self.bytes[s.off as usize..(s.off + s.len) as usize]
    }

    fn span(&self, k: KeyRef) -> Span {
        self.spans[k.0 as usize]
    }

    /// Keeps the keys for which `keep(index)` is true, in order, moving their bytes down over
    /// the dropped ones (no allocation); the kept keys are renumbered from 0.
    pub(crate) fn retain(&mut self, keep: &mut dyn FnMut(usize) -> bool) {
        let mut bytes = std::mem::take(&mut self.bytes).into_bytes();
        let (mut w, mut at) = (0, 0usize);
        for i in 0..self.spans.len() {
            let s = self.spans[i];
            if !keep(i) {
                continue;
            }
            let (off, len) = (s.off as usize, s.len as usize);
            bytes.copy_within(off..off + len, at);
            self.spans[w] = Span { off: at as u32, ..s };
            at += len;
            w += 1;
        }
        self.spans.truncate(w);
        bytes.truncate(at);
        // Whole keys moved, each valid UTF-8: the arena stays valid.
        self.bytes =
            String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    }

    /// Gives back room far beyond what the keys use (after many were forgotten).
    pub(crate) fn shrink(&mut self) {
        shrink_roomy(&mut self.spans);
        if self.bytes.capacity() > 4 * self.bytes.len() && self.bytes.capacity() > 4096 {
            self.bytes.shrink_to(2 * self.bytes.len());
        }
    }
}

/// Cuts a vector's capacity to 2× its length when it is over 4× and more than a few KB.
pub(crate) fn shrink_roomy<T>(v: &mut Vec<T>) {
    if v.capacity() > 4 * v.len() && v.capacity() > 1024 {
        v.shrink_to(2 * v.len());
    }
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
    /// Every known series' key; not cleared between flushes.
    pub(crate) keys: Keys,
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
    /// Empties the outputs for the next flush; the keys stay.
    pub(crate) fn clear(&mut self) {
        self.counters.clear();
        self.gauges.clear();
        self.sets.clear();
        self.timers.clear();
        self.pcts.clear();
        self.hist.clear();
        self.num_stats = 0;
        self.statsd.clear();
    }

    /// The series name, without tags.
    pub fn name(&self, k: KeyRef) -> &str {
        let s = self.keys.span(k);
        &self.keys.bytes[s.off as usize..(s.off + s.name_len) as usize]
    }

    /// The tags in Graphite form: `;k=v;k2=v2`, or empty.
    pub fn tags(&self, k: KeyRef) -> &str {
        let s = self.keys.span(k);
        &self.keys.bytes[(s.off + s.name_len) as usize..(s.off + s.len) as usize]
    }

    /// The name and the tags: `(name(k), tags(k))`.
    pub fn name_tags(&self, k: KeyRef) -> (&str, &str) {
        let s = self.keys.span(k);
        self.keys.bytes[s.off as usize..(s.off + s.len) as usize].split_at(s.name_len as usize)
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
        let mut emit = |buf: &mut String, ns: &str, (name, tags): (&str, &str), parts: &[&str], v: f64| {
            buf.clear();
            if !ns.is_empty() {
                buf.push_str(ns);
                buf.push('.');
            }
            buf.push_str(name);
            for p in parts {
                buf.push('.');
                buf.push_str(p);
            }
            buf.push_str(&naming.suffix);
            buf.push_str(tags);
            f(buf, v);
        };
        for c in &self.counters {
            let key = self.name_tags(c.key);
            if naming.legacy {
                if which.rate {
                    emit(buf, "stats", key, &[], c.rate);
                }
                if which.count {
                    emit(buf, "stats_counts", key, &[], c.count);
                }
            } else {
                if which.rate {
                    emit(buf, &naming.counter_ns, key, &["rate"], c.rate);
                }
                if which.count {
                    emit(buf, &naming.counter_ns, key, &["count"], c.count);
                }
            }
        }
        for t in &self.timers {
            let key = self.name_tags(t.key);
            self.for_each_timer_stat(t, &mut |stat, v| emit(buf, &naming.timer_ns, key, stat, v));
        }
        for g in &self.gauges {
            emit(buf, &naming.gauge_ns, self.name_tags(g.key), &[], g.value);
        }
        for s in &self.sets {
            emit(buf, &naming.set_ns, self.name_tags(s.key), &["count"], s.count);
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
