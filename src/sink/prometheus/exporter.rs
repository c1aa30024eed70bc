//! The cumulative state behind `/metrics` and its rendering. Runs on the flush thread: each
//! [`Snapshot`] is merged into the state (counters summed since start, gauges and set counts
//! replaced, timers' counts and sums summed, their quantiles or histogram buckets taken from the
//! interval), then the whole exposition is written into one buffer.
//!
//! Series are keyed by what Prometheus sees, not by the statsd key: the escaped family name, a
//! `\x01`, then the rendered label list. Two statsd keys that escape to the same series (`a.b`
//! and `a-b`) therefore feed one series instead of producing a duplicate. The map is ordered, so
//! every family's samples are contiguous (the `\x01` sorts below every name byte) and the output
//! is deterministic.
//!
//! A family's type is fixed by the first series that creates it. A series of another kind whose
//! family name (or one of the names a summary or histogram adds: `_sum`, `_count`, `_bucket`)
//! is taken is left out of the exposition and counted in
//! `kstatsd_prometheus_dropped_total{reason="conflict"}`, so the exposition always has one
//! `TYPE` per family. The daemon's own figures are merged before the user's series, so their
//! `kstatsd_*` names are never taken by a user series.
//!
//! A series that is not in a snapshot was deleted on the flush side (idle-key rules, the admin
//! `del*` commands, or `max_series`): it disappears from the exposition at once, and its
//! counter starts again from zero if it comes back, which Prometheus reads as a counter reset.
//! The state therefore never holds more series than the last snapshot had, plus a fixed few.
//!
//! In steady state nothing is allocated: names are built in reused buffers and looked up by
//! `&str`; only a series seen for the first time allocates its key.

use super::text::{
    label_number, push_help, push_label_name, push_label_value, push_name, push_sample, push_snake,
};
use crate::flush::summarize::BinEdge;
use crate::flush::{KeyRef, Snapshot};
use crate::parse::BadLine;
use std::collections::{BTreeMap, HashMap};

/// Sorts below every byte of a name: separates the family name from the labels in a key.
const SEP: char = '\x01';

/// The Prometheus type of a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Summary,
    Histogram,
}

impl Kind {
    fn type_name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Summary => "summary",
            Kind::Histogram => "histogram",
        }
    }

    /// The sample names the family adds to its own name.
    fn suffixes(self) -> &'static [&'static str] {
        match self {
            Kind::Counter | Kind::Gauge => &[],
            Kind::Summary => &["_sum", "_count"],
            Kind::Histogram => &["_bucket", "_sum", "_count"],
        }
    }
}

#[derive(Debug)]
enum Value {
    /// A counter: the running total.
    Counter(f64),
    Gauge(f64),
    /// Sample-rate-scaled count and sum (seconds) since start; the interval's quantiles
    /// (seconds, one per configured percentile, NaN when the interval had none).
    Summary {
        count: f64,
        sum: f64,
        quantiles: Vec<f64>,
    },
    /// Count and sum since start; per finite bound (seconds) its `le="…"` label and the values
    /// below it since start (not cumulative across buckets: that is summed when rendered).
    Histogram {
        count: f64,
        sum: f64,
        bounds: Vec<f64>,
        le: Vec<String>,
        bins: Vec<f64>,
    },
}

impl Value {
    fn kind(&self) -> Kind {
        match self {
            Value::Counter(_) => Kind::Counter,
            Value::Gauge(_) => Kind::Gauge,
            Value::Summary { .. } => Kind::Summary,
            Value::Histogram { .. } => Kind::Histogram,
        }
    }
}

#[derive(Debug)]
struct Series {
    value: Value,
    /// The flush that last touched it; series not touched by a flush are removed.
    generation: u64,
    /// Kept even when a flush does not mention it (the fixed `kstatsd_*` series).
    pinned: bool,
}

struct Family {
    kind: Kind,
    live: u32,
}

/// How a merged value changes the series.
#[derive(Clone, Copy)]
enum Update {
    /// Add an interval's count to a counter.
    Add(f64),
    /// Set a counter to a total the daemon already keeps.
    Total(f64),
    Gauge(f64),
}

/// Why a series was left out of a flush's exposition.
#[derive(Clone, Copy)]
enum Dropped {
    Conflict = 0,
    NegativeCounter = 1,
}

const DROPPED: [(&str, Dropped); 2] =
    [("conflict", Dropped::Conflict), ("negative_counter", Dropped::NegativeCounter)];

pub struct Exporter {
    meta_prefix: String,
    series: BTreeMap<Box<str>, Series>,
    families: HashMap<Box<str>, Family>,
    generation: u64,
    /// The configured percentiles the quantile labels were made from, and those labels
    /// (`quantile="0.9"`; `None` for a negative percentile or a repeated one).
    percentiles: Vec<f64>,
    quantiles: Vec<Option<String>>,
    dropped: [u64; 2],
    /// Reused: the family name, the label list, the series key, tag ranges for sorting.
    name: String,
    labels: String,
    key: String,
    tags: Vec<(usize, usize, usize, usize)>,
    tag_buf: String,
}

impl Exporter {
    /// `meta_prefix` is the daemon's namespace (`statsd`): counters and gauges under it become
    /// `kstatsd_*` metrics.
    pub fn new(meta_prefix: &str) -> Exporter {
        let mut e = Exporter {
            meta_prefix: format!("{meta_prefix}."),
            series: BTreeMap::new(),
            families: HashMap::new(),
            generation: 0,
            percentiles: Vec::new(),
            quantiles: Vec::new(),
            dropped: [0; 2],
            name: String::with_capacity(256),
            labels: String::with_capacity(256),
            key: String::with_capacity(512),
            tags: Vec::with_capacity(16),
            tag_buf: String::with_capacity(256),
        };
        // Every bad-line reason is there from the start, at 0, so that `rate()` sees the first one.
        for why in BadLine::ALL {
            e.pin_counter("kstatsd_bad_lines_total", "reason", why.name());
        }
        for (reason, _) in DROPPED {
            e.pin_counter("kstatsd_prometheus_dropped_total", "reason", reason);
        }
        e.set_fixed("kstatsd_prometheus_series", "", "", Kind::Gauge, 0.0);
        e
    }

    /// Number of series in the exposition.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    fn pin_counter(&mut self, family: &str, label: &str, value: &str) {
        self.set_fixed(family, label, value, Kind::Counter, 0.0);
    }

    /// Creates or sets a pinned series (the exporter's own figures).
    fn set_fixed(&mut self, family: &str, label: &str, value: &str, kind: Kind, v: f64) {
        self.key.clear();
        self.key.push_str(family);
        self.key.push(SEP);
        if !label.is_empty() {
            self.key.push_str(label);
            self.key.push_str("=\"");
            push_label_value(&mut self.key, value);
            self.key.push('"');
        }
        let generation = self.generation;
        if let Some(s) = self.series.get_mut(self.key.as_str()) {
            s.value = if kind == Kind::Counter { Value::Counter(v) } else { Value::Gauge(v) };
            s.generation = generation;
            return;
        }
        self.families.entry(family.into()).or_insert(Family { kind, live: 0 }).live += 1;
        let value = if kind == Kind::Counter { Value::Counter(v) } else { Value::Gauge(v) };
        self.series.insert(self.key.as_str().into(), Series { value, generation, pinned: true });
    }

    /// Merges one flush into the state.
    pub fn merge(&mut self, snap: &Snapshot) {
        self.generation += 1;
        self.update_quantiles(snap);

        // The daemon's own figures first, so that their names are theirs.
        for c in &snap.counters {
            let name = snap.name(c.key);
            if let Some(rest) = name.strip_prefix(self.meta_prefix.as_str()) {
                self.meta_counter(rest, c.count);
            }
        }
        for g in &snap.gauges {
            let name = snap.name(g.key);
            if let Some(rest) = name.strip_prefix(self.meta_prefix.as_str()) {
                self.name.clear();
                self.name.push_str("kstatsd_");
                let mut v = g.value;
                if rest == "timestamp_lag" {
                    self.name.push_str("timestamp_lag_seconds");
                    v /= 1000.0;
                } else {
                    push_snake(&mut self.name, rest);
                }
                self.labels.clear();
                self.simple(Kind::Gauge, Update::Gauge(v));
            }
        }
        self.daemon_figures(snap);

        // The statsd series.
        for c in &snap.counters {
            if snap.name(c.key).starts_with(self.meta_prefix.as_str()) {
                continue;
            }
            self.user_key(snap, c.key);
            if !self.name.ends_with("_total") {
                self.name.push_str("_total");
            }
            self.simple(Kind::Counter, Update::Add(c.count));
        }
        for g in &snap.gauges {
            if snap.name(g.key).starts_with(self.meta_prefix.as_str()) {
                continue;
            }
            self.user_key(snap, g.key);
            self.simple(Kind::Gauge, Update::Gauge(g.value));
        }
        for s in &snap.sets {
            self.user_key(snap, s.key);
            self.simple(Kind::Gauge, Update::Gauge(s.count));
        }
        for t in &snap.timers {
            self.user_key(snap, t.key);
            self.timer(snap, t);
        }

        self.sweep();
        let gauge = self.series.len() as f64;
        self.set_fixed("kstatsd_prometheus_series", "", "", Kind::Gauge, gauge);
        for (reason, why) in DROPPED {
            let n = self.dropped[why as usize] as f64;
            self.set_fixed("kstatsd_prometheus_dropped_total", "reason", reason, Kind::Counter, n);
        }
    }

    /// `statsd.<rest>` counters: `bad_lines.<reason>` → `kstatsd_bad_lines_total{reason}`; the
    /// total `bad_lines_seen` is left out (it is the sum over reasons); the rest →
    /// `kstatsd_<rest>_total`.
    fn meta_counter(&mut self, rest: &str, count: f64) {
        self.labels.clear();
        self.name.clear();
        if let Some(reason) = rest.strip_prefix("bad_lines.") {
            self.name.push_str("kstatsd_bad_lines_total");
            self.labels.push_str("reason=\"");
            push_label_value(&mut self.labels, reason);
            self.labels.push('"');
        } else if rest == "bad_lines_seen" {
            return;
        } else {
            self.name.push_str("kstatsd_");
            push_snake(&mut self.name, rest);
            self.name.push_str("_total");
        }
        self.simple(Kind::Counter, Update::Add(count));
    }

    /// `numStats`, `processing_time` and every sink's figures (`<sink>Stats.<key>`).
    fn daemon_figures(&mut self, snap: &Snapshot) {
        self.name.clear();
        self.name.push_str("kstatsd_series_flushed");
        self.labels.clear();
        self.simple(Kind::Gauge, Update::Gauge(snap.num_stats as f64));
        for (figure, v) in &snap.statsd {
            let v = *v;
            self.name.clear();
            self.labels.clear();
            if figure == "processing_time" {
                self.name.push_str("kstatsd_processing_time_seconds");
                self.simple(Kind::Gauge, Update::Gauge(v / 1000.0));
                continue;
            }
            let Some((sink, key)) = figure.split_once("Stats.") else {
                self.name.push_str("kstatsd_");
                push_snake(&mut self.name, figure);
                self.simple(Kind::Gauge, Update::Gauge(v));
                continue;
            };
            self.labels.push_str("sink=\"");
            push_label_value(&mut self.labels, sink);
            self.labels.push('"');
            let reason = key.strip_prefix("dropped_").or_else(|| key.strip_prefix("records_dropped."));
            let (name, kind) = match key {
                "sent" | "records_sent" => ("kstatsd_sink_sent_total", Kind::Counter),
                "retried" | "records_retried" => ("kstatsd_sink_retried_total", Kind::Counter),
                "dropped" | "records_dropped" => ("kstatsd_sink_dropped_total", Kind::Counter),
                "requests" => ("kstatsd_sink_requests_total", Kind::Counter),
                "queued_bytes" | "queue_bytes" => ("kstatsd_sink_queue_bytes", Kind::Gauge),
                "queued_flushes" | "queue_payloads" => ("kstatsd_sink_queue_payloads", Kind::Gauge),
                "flush_time" => ("kstatsd_sink_flush_time_seconds", Kind::Gauge),
                "flush_length" => ("kstatsd_sink_flush_length_bytes", Kind::Gauge),
                "calculationtime" => ("kstatsd_sink_calculation_time_seconds", Kind::Gauge),
                "last_flush" => ("kstatsd_sink_last_flush_timestamp_seconds", Kind::Gauge),
                "last_exception" => ("kstatsd_sink_last_exception_timestamp_seconds", Kind::Gauge),
                _ if reason.is_some() => ("kstatsd_sink_dropped_by_reason_total", Kind::Counter),
                _ => ("", Kind::Gauge),
            };
            if name.is_empty() {
                self.name.push_str("kstatsd_sink_");
                push_snake(&mut self.name, key);
            } else {
                self.name.push_str(name);
            }
            if let (Some(reason), "kstatsd_sink_dropped_by_reason_total") = (reason, name) {
                self.labels.push_str(",reason=\"");
                push_label_value(&mut self.labels, reason);
                self.labels.push('"');
            }
            // Times are reported in milliseconds; Prometheus wants seconds.
            let v = if name.ends_with("_time_seconds") { v / 1000.0 } else { v };
            let update = if kind == Kind::Counter { Update::Total(v) } else { Update::Gauge(v) };
            self.simple(kind, update);
        }
    }

    /// Fills `name` and `labels` from a statsd key: the escaped name; the tags as labels, names
    /// escaped (see [`push_label_name`]), values escaped, sorted by label name. A tag without a
    /// value, or with an empty name, is dropped (as statsd_exporter does); of two tags that
    /// escape to the same label name, the first (in the key's order) is kept.
    fn user_key(&mut self, snap: &Snapshot, key: KeyRef) {
        self.name.clear();
        push_name(&mut self.name, snap.name(key));
        self.labels.clear();
        self.tags.clear();
        self.tag_buf.clear();
        for (k, v) in snap.tag_pairs(key) {
            if v.is_empty() {
                continue;
            }
            let ks = self.tag_buf.len();
            push_label_name(&mut self.tag_buf, k);
            let ke = self.tag_buf.len();
            if ks == ke {
                continue;
            }
            push_label_value(&mut self.tag_buf, v);
            self.tags.push((ks, ke, ke, self.tag_buf.len()));
        }
        let buf = &self.tag_buf;
        self.tags.sort_by(|a, b| buf[a.0..a.1].cmp(&buf[b.0..b.1]));
        self.tags.dedup_by(|b, a| buf[a.0..a.1] == buf[b.0..b.1]);
        for (i, &(ks, ke, vs, ve)) in self.tags.iter().enumerate() {
            if i > 0 {
                self.labels.push(',');
            }
            self.labels.push_str(&buf[ks..ke]);
            self.labels.push_str("=\"");
            self.labels.push_str(&buf[vs..ve]);
            self.labels.push('"');
        }
    }

    /// Builds `key` from `name` and `labels`.
    fn make_key(&mut self) {
        self.key.clear();
        self.key.push_str(&self.name);
        self.key.push(SEP);
        self.key.push_str(&self.labels);
    }

    /// Finds the series for `key` (creating it, and its family, when the family's name is free
    /// for `kind`); `None` when the name is taken by another kind.
    fn lookup(&mut self, kind: Kind, fresh: impl FnOnce() -> Value) -> Option<&mut Series> {
        let generation = self.generation;
        if self.series.contains_key(self.key.as_str()) {
            let s = self.series.get_mut(self.key.as_str())?;
            if s.value.kind() != kind {
                self.dropped[Dropped::Conflict as usize] += 1;
                return None;
            }
            if s.generation != generation {
                s.generation = generation;
                if let Value::Summary { quantiles, .. } = &mut s.value {
                    quantiles.iter_mut().for_each(|q| *q = f64::NAN);
                }
            }
            return Some(s);
        }
        let family = &self.key[..self.name.len()];
        match self.families.get_mut(family) {
            Some(f) if f.kind == kind => f.live += 1,
            Some(_) => {
                self.dropped[Dropped::Conflict as usize] += 1;
                return None;
            }
            None => {
                if self.name_taken(family, kind) {
                    self.dropped[Dropped::Conflict as usize] += 1;
                    return None;
                }
                self.families.insert(family.into(), Family { kind, live: 1 });
            }
        }
        let s = Series { value: fresh(), generation, pinned: false };
        Some(self.series.entry(self.key.as_str().into()).or_insert(s))
    }

    /// Whether a new family `name` of `kind` would write a sample name another family writes.
    fn name_taken(&self, name: &str, kind: Kind) -> bool {
        // One of its samples is another family's name.
        if kind.suffixes().iter().any(|s| self.families.contains_key(format!("{name}{s}").as_str())) {
            return true;
        }
        // Its name is one of another family's samples.
        [Kind::Summary, Kind::Histogram].iter().any(|&k| {
            k.suffixes().iter().any(|s| {
                name.strip_suffix(s).and_then(|base| self.families.get(base)).is_some_and(|f| f.kind == k)
            })
        })
    }

    /// A counter or gauge update of the series `name{labels}`.
    fn simple(&mut self, kind: Kind, update: Update) {
        if let Update::Add(n) = update {
            if n < 0.0 {
                self.dropped[Dropped::NegativeCounter as usize] += 1;
                return;
            }
        }
        self.make_key();
        let fresh = || if kind == Kind::Counter { Value::Counter(0.0) } else { Value::Gauge(0.0) };
        let Some(s) = self.lookup(kind, fresh) else { return };
        match (&mut s.value, update) {
            (Value::Counter(c), Update::Add(n)) => *c += n,
            (Value::Counter(c), Update::Total(n)) | (Value::Gauge(c), Update::Gauge(n)) => *c = n,
            _ => {}
        }
    }

    fn update_quantiles(&mut self, snap: &Snapshot) {
        if self.percentiles.len() == snap.percentiles.len()
            && self.percentiles.iter().zip(&snap.percentiles).all(|(a, b)| *a == b.p)
        {
            return;
        }
        self.percentiles = snap.percentiles.iter().map(|p| p.p).collect();
        self.quantiles.clear();
        for (i, &p) in self.percentiles.iter().enumerate() {
            let repeated = self.percentiles[..i].contains(&p);
            self.quantiles
                .push((p > 0.0 && !repeated).then(|| format!("quantile=\"{}\"", label_number(p / 100.0))));
        }
    }

    /// A timer: a histogram when a histogram rule matches its name, a summary otherwise.
    /// Values are converted from milliseconds to seconds.
    fn timer(&mut self, snap: &Snapshot, t: &crate::flush::TimerOut) {
        let name = snap.name(t.key);
        let rule = snap.histograms.iter().position(|h| name.contains(h.metric.as_str()));
        self.make_key();
        let npct = self.percentiles.len();
        let sum = t.stats.map_or(0.0, |s| s.sum / 1000.0);
        match rule {
            None => {
                let fresh = || Value::Summary { count: 0.0, sum: 0.0, quantiles: vec![f64::NAN; npct] };
                let Some(s) = self.lookup(Kind::Summary, fresh) else { return };
                let Value::Summary { count, sum: total, quantiles } = &mut s.value else { return };
                *count += t.count;
                *total += sum;
                quantiles.resize(npct, f64::NAN);
                if t.stats.is_some() {
                    let pcts = &snap.pcts[t.pcts_at as usize..t.pcts_at as usize + npct];
                    for (q, p) in quantiles.iter_mut().zip(pcts) {
                        *q = p.map_or(f64::NAN, |p| p.bound / 1000.0);
                    }
                }
            }
            Some(r) => {
                let rule = &snap.histograms[r];
                let fresh = || Value::Histogram {
                    count: 0.0,
                    sum: 0.0,
                    bounds: Vec::new(),
                    le: Vec::new(),
                    bins: Vec::new(),
                };
                let Some(s) = self.lookup(Kind::Histogram, fresh) else { return };
                let Value::Histogram { count, sum: total, bounds, le, bins } = &mut s.value else { return };
                let finite = rule.bins.iter().take_while(|b| matches!(b, BinEdge::Finite(_))).count();
                let same = bounds.len() == finite
                    && bounds
                        .iter()
                        .zip(&rule.bins)
                        .all(|(a, b)| matches!(b, BinEdge::Finite(x) if *a == x / 1000.0));
                if !same {
                    // New bins (a reload): the buckets start again.
                    bounds.clear();
                    bounds.extend(rule.bins[..finite].iter().map(|b| match b {
                        BinEdge::Finite(x) => x / 1000.0,
                        BinEdge::Inf => f64::INFINITY,
                    }));
                    le.clear();
                    le.extend(bounds.iter().map(|b| format!("le=\"{}\"", label_number(*b))));
                    bins.clear();
                    bins.resize(finite, 0.0);
                }
                *count += t.count;
                *total += sum;
                if let Some((_, at)) = t.hist {
                    for (i, b) in bins.iter_mut().enumerate() {
                        *b += snap.hist[at as usize + i] as f64;
                    }
                }
            }
        }
    }

    /// Removes the series this flush did not mention, and families left without series.
    fn sweep(&mut self) {
        let generation = self.generation;
        let families = &mut self.families;
        self.series.retain(|key, s| {
            let keep = s.pinned || s.generation == generation;
            if !keep {
                let family = key.split(SEP).next().unwrap_or("");
                if let Some(f) = families.get_mut(family) {
                    f.live = f.live.saturating_sub(1);
                }
            }
            keep
        });
        self.families.retain(|_, f| f.live > 0);
    }

    /// Writes the whole exposition into `out` (cleared first).
    pub fn render(&self, out: &mut Vec<u8>) {
        out.clear();
        let mut current = "";
        for (key, s) in &self.series {
            let (family, labels) = key.split_once(SEP).unwrap_or((key, ""));
            let kind = s.value.kind();
            if family != current {
                current = family;
                out.extend_from_slice(b"# HELP ");
                out.extend_from_slice(family.as_bytes());
                out.push(b' ');
                push_help(out, help(family, kind));
                out.extend_from_slice(b"\n# TYPE ");
                out.extend_from_slice(family.as_bytes());
                out.push(b' ');
                out.extend_from_slice(kind.type_name().as_bytes());
                out.push(b'\n');
            }
            match &s.value {
                Value::Counter(v) | Value::Gauge(v) => push_sample(out, family, "", labels, "", *v),
                Value::Summary { count, sum, quantiles } => {
                    for (label, q) in self.quantiles.iter().zip(quantiles) {
                        if let Some(label) = label {
                            push_sample(out, family, "", labels, label, *q);
                        }
                    }
                    push_sample(out, family, "_sum", labels, "", *sum);
                    push_sample(out, family, "_count", labels, "", *count);
                }
                Value::Histogram { count, sum, le, bins, .. } => {
                    let mut below = 0.0;
                    for (le, n) in le.iter().zip(bins) {
                        below += n;
                        push_sample(out, family, "_bucket", labels, le, below);
                    }
                    push_sample(out, family, "_bucket", labels, "le=\"+Inf\"", *count);
                    push_sample(out, family, "_sum", labels, "", *sum);
                    push_sample(out, family, "_count", labels, "", *count);
                }
            }
        }
    }
}

/// The `# HELP` text of a family.
fn help(family: &str, kind: Kind) -> &'static str {
    match family {
        "kstatsd_packets_received_total" => "Datagrams and stream reads received.",
        "kstatsd_metrics_received_total" => "Metric lines received, bad ones included.",
        "kstatsd_bytes_received_total" => "Bytes received on every input.",
        "kstatsd_bad_lines_total" => "Lines discarded, by reason.",
        "kstatsd_kernel_drops_total" => "Datagrams the kernel dropped on the daemon's UDP sockets.",
        "kstatsd_flush_overruns_total" => {
            "Flush deadlines missed because the previous flush was still running."
        }
        "kstatsd_events_received_total" => "DogStatsD events received.",
        "kstatsd_service_checks_received_total" => "DogStatsD service checks received.",
        "kstatsd_timestamp_lag_seconds" => "Lateness of the last flush against its schedule.",
        "kstatsd_series_flushed" => "Series in the last flush (statsd numStats).",
        "kstatsd_processing_time_seconds" => "Time the last flush took to summarize.",
        "kstatsd_sink_sent_total" => "Points or records each sink delivered.",
        "kstatsd_sink_retried_total" => "Deliveries each sink retried.",
        "kstatsd_sink_dropped_total" => "Points or records each sink gave up on.",
        "kstatsd_sink_dropped_by_reason_total" => "Points or records each sink gave up on, by reason.",
        "kstatsd_sink_requests_total" => "Requests each sink sent.",
        "kstatsd_sink_queue_bytes" => "Bytes waiting in each sink's queue.",
        "kstatsd_sink_queue_payloads" => "Payloads waiting in each sink's queue.",
        "kstatsd_sink_flush_time_seconds" => "Time each sink's last flush took.",
        "kstatsd_sink_flush_length_bytes" => "Bytes each sink's last flush wrote.",
        "kstatsd_sink_calculation_time_seconds" => "Time each sink spent serializing its last flush.",
        "kstatsd_sink_last_flush_timestamp_seconds" => {
            "Unix time of each sink's last successful flush (0: never)."
        }
        "kstatsd_sink_last_exception_timestamp_seconds" => {
            "Unix time of each sink's last failure (0: never)."
        }
        "kstatsd_prometheus_series" => "Series in this exposition.",
        "kstatsd_prometheus_dropped_total" => "Series left out of a flush's exposition, by reason.",
        _ if family.starts_with("kstatsd_") => "A kstatsd figure.",
        _ => match kind {
            Kind::Counter => "statsd counter, summed since start.",
            Kind::Gauge => "statsd gauge, or the member count of a statsd set in the last interval.",
            Kind::Summary => {
                "statsd timer, seconds: count and sum since start, quantiles of the last interval."
            }
            Kind::Histogram => "statsd timer, seconds: buckets, count and sum since start.",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Tables;
    use crate::flush::config::AggregateConfig;
    use crate::flush::{FlushMeta, Flusher};
    use crate::ingest::{self, Format};

    /// Feeds one interval per entry (through the real aggregation and flush) and returns the
    /// exposition after each.
    fn run(aggregate_toml: &str, intervals: &[&str]) -> Vec<String> {
        let aggregate = AggregateConfig::from_toml(aggregate_toml).unwrap();
        let mut flusher = Flusher::new(aggregate.clone());
        let mut tables = Tables::new(aggregate.limits.clone());
        let mut exporter = Exporter::new(&aggregate.meta_prefix);
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
            let meta = FlushMeta { interval: 1.0, clock: i as u64, ..FlushMeta::default() };
            let snap = flusher.flush(&mut tables, &meta);
            exporter.merge(snap);
            let mut page = Vec::new();
            exporter.render(&mut page);
            out.push(String::from_utf8(page).unwrap());
            tables.clear();
        }
        out
    }

    /// The exposition without the daemon's own `kstatsd_*` families.
    fn user(page: &str) -> String {
        page.lines()
            .filter(|l| {
                let name = l.strip_prefix("# HELP ").or_else(|| l.strip_prefix("# TYPE ")).unwrap_or(l);
                !name.starts_with("kstatsd_")
            })
            .map(|l| format!("{l}\n"))
            .collect()
    }

    fn sample(page: &str, series: &str) -> Option<f64> {
        page.lines().find_map(|l| {
            let (s, v) = l.rsplit_once(' ')?;
            (s == series).then(|| v.parse().unwrap())
        })
    }

    #[test]
    fn counters_are_cumulative_since_start() {
        let ten = "hits:1|c\n".repeat(10);
        let pages = run("", &[&ten, "hits:5|c", ""]);
        let expected = |v: u32| {
            format!(
                "# HELP hits_total statsd counter, summed since start.\n# TYPE hits_total counter\n\
                 hits_total {v}\n"
            )
        };
        assert_eq!(user(&pages[0]), expected(10));
        assert_eq!(user(&pages[1]), expected(15), "10 then 5 read 15");
        assert_eq!(user(&pages[2]), expected(15), "an idle interval adds nothing");
    }

    #[test]
    fn a_sampled_counter_counts_what_it_stands_for_and_a_negative_one_is_dropped() {
        let pages = run("", &["c:1|c|@0.1\nneg:-3|c", "c:2|c\nneg:-1|c"]);
        assert_eq!(sample(&pages[1], "c_total"), Some(12.0));
        assert_eq!(sample(&pages[1], "neg_total"), None);
        assert_eq!(
            sample(&pages[1], "kstatsd_prometheus_dropped_total{reason=\"negative_counter\"}"),
            Some(2.0)
        );
    }

    #[test]
    fn gauges_and_sets() {
        let pages = run("", &["g:3|g\nu:a|s\nu:b|s\nu:a|s", "g:+2|g\nu:c|s"]);
        assert_eq!(
            user(&pages[0]),
            "# HELP g statsd gauge, or the member count of a statsd set in the last interval.\n\
             # TYPE g gauge\ng 3\n\
             # HELP u statsd gauge, or the member count of a statsd set in the last interval.\n\
             # TYPE u gauge\nu 2\n"
        );
        assert_eq!(sample(&pages[1], "g"), Some(5.0));
        assert_eq!(sample(&pages[1], "u"), Some(1.0), "a set is the last interval's count");
    }

    #[test]
    fn timers_are_summaries_in_seconds() {
        let values: String = (1..=10).map(|i| format!("lat:{}|ms\n", i * 10)).collect();
        let pages = run("percentiles = [90, 50, -10, 90]", &[&values, "lat:1000|ms", ""]);
        assert_eq!(
            user(&pages[0]),
            "# HELP lat statsd timer, seconds: count and sum since start, quantiles of the last interval.\n\
             # TYPE lat summary\n\
             lat{quantile=\"0.9\"} 0.09\nlat{quantile=\"0.5\"} 0.05\nlat_sum 0.55\nlat_count 10\n"
        );
        let second = user(&pages[1]);
        assert!(
            second.contains("lat{quantile=\"0.9\"} 1\nlat{quantile=\"0.5\"} 1\nlat_sum 1.55\nlat_count 11\n"),
            "{second}"
        );
        let idle = user(&pages[2]);
        assert!(
            idle.contains(
                "lat{quantile=\"0.9\"} NaN\nlat{quantile=\"0.5\"} NaN\nlat_sum 1.55\nlat_count 11\n"
            ),
            "{idle}"
        );
    }

    #[test]
    fn timers_with_bins_are_histograms() {
        let pages = run(
            "histograms = [{ metric = \"api.\", bins = [10, 100, \"inf\"] }]",
            &["api.t:1|ms\napi.t:9|ms\napi.t:10|ms\napi.t:50|ms\napi.t:100|ms\napi.t:5000|ms", "api.t:20|ms"],
        );
        assert_eq!(
            user(&pages[0]),
            "# HELP api_t statsd timer, seconds: buckets, count and sum since start.\n\
             # TYPE api_t histogram\n\
             api_t_bucket{le=\"0.01\"} 2\napi_t_bucket{le=\"0.1\"} 4\napi_t_bucket{le=\"+Inf\"} 6\n\
             api_t_sum 5.17\napi_t_count 6\n"
        );
        let second = user(&pages[1]);
        assert!(
            second.contains(
                "api_t_bucket{le=\"0.01\"} 2\napi_t_bucket{le=\"0.1\"} 5\napi_t_bucket{le=\"+Inf\"} 7\n"
            ),
            "{second}"
        );
    }

    #[test]
    fn tags_become_sorted_escaped_labels() {
        let pages = run(
            "sanitize_keys = false",
            &["req:1|c|#zone:eu,path:a\"b\\c,flag,le:5,host-name:h1,host_name:h2\nreq:2|c|#zone:us"],
        );
        let page = user(&pages[0]);
        assert!(
            page.contains(
                "req_total{flag=\"true\",host_name=\"h1\",path=\"a\\\"b\\\\c\",tag_le=\"5\",zone=\"eu\"} 1\n"
            ),
            "a bare tag reads `true`, first of two equal label names kept, `le` renamed: {page}"
        );
        assert!(page.contains("req_total{zone=\"us\"} 2\n"), "{page}");
        assert_eq!(page.matches("# TYPE req_total counter").count(), 1, "one family: {page}");
    }

    #[test]
    fn names_that_escape_alike_share_a_series() {
        let pages = run("", &["a.b:1|c\na-b:2|c\n9x:1|g"]);
        let page = user(&pages[0]);
        assert!(page.contains("a_b_total 3\n"), "{page}");
        assert!(page.contains("# TYPE _9x gauge\n_9x 1\n"), "{page}");
    }

    #[test]
    fn a_name_two_kinds_share_is_kept_by_the_first_and_counted() {
        // The counter `x` is `x_total`; the gauge `x_total` would be a second family of that name
        // (counters are merged before gauges, so the counter has it). The summary `lat`, once
        // there, writes `lat_sum` and `lat_count`, which the gauges of the next interval want.
        let pages =
            run("", &["x:1|c\nx_total:5|g\nlat:10|ms", "lat:10|ms\nlat_sum:1|g\nlat.count:2|g\nok:1|g"]);
        assert_eq!(sample(&pages[0], "kstatsd_prometheus_dropped_total{reason=\"conflict\"}"), Some(1.0));
        let page = &pages[1];
        assert_eq!(page.matches("# TYPE x_total ").count(), 1, "{page}");
        assert!(page.contains("# TYPE x_total counter\nx_total 1\n"), "{page}");
        assert!(page.contains("lat_sum 0.02\nlat_count 2\n"), "{page}");
        assert!(!page.contains("# TYPE lat_sum") && !page.contains("# TYPE lat_count"), "{page}");
        // Counted per flush: the idle gauge `x_total` is refused again, with the two new ones.
        assert_eq!(sample(page, "kstatsd_prometheus_dropped_total{reason=\"conflict\"}"), Some(4.0));
        assert_eq!(sample(page, "ok"), Some(1.0));
        // Every family has exactly one TYPE line, and its samples follow it.
        let mut types = std::collections::BTreeSet::new();
        for l in page.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            assert!(types.insert(l.split(' ').next().unwrap().to_string()), "second TYPE for {l}");
        }
    }

    #[test]
    fn a_gauge_named_like_a_histogram_sample_is_refused_either_way() {
        let bins = "histograms = [{ metric = \"h\", bins = [1] }]";
        let pages = run(bins, &["h_bucket:1|g", "h:1|ms\nh_bucket:2|g"]);
        // The gauge came first: the histogram `h` would write `h_bucket`, so it is left out.
        assert_eq!(sample(&pages[1], "h_bucket"), Some(2.0));
        assert!(!pages[1].contains("# TYPE h histogram"), "{}", pages[1]);
    }

    #[test]
    fn series_deleted_by_the_idle_rules_disappear() {
        let pages = run("delete_counters = true\ndelete_gauges = true", &["c:1|c\ng:1|g", "", "c:4|c"]);
        assert!(user(&pages[0]).contains("c_total 1\n"));
        assert_eq!(user(&pages[1]), "", "{}", pages[1]);
        assert_eq!(
            user(&pages[2]),
            "# HELP c_total statsd counter, summed since start.\n# TYPE c_total counter\nc_total 4\n"
        );
        let kept = run("", &["c:1|c", ""]);
        assert!(user(&kept[1]).contains("c_total 1\n"), "without the rule the series stays");
    }

    #[test]
    fn memory_stays_bounded_by_max_series() {
        let mut intervals = Vec::new();
        for round in 0..5 {
            intervals.push((0..50).map(|i| format!("k{round}_{i}:1|c\n")).collect::<String>());
        }
        let refs: Vec<&str> = intervals.iter().map(String::as_str).collect();
        let pages = run("max_series = 60", &refs);
        // A flush reports the known series (at most max_series) plus the interval's new ones,
        // and the exposition holds what the last flush reported, no more.
        let counts: Vec<usize> =
            pages.iter().map(|p| user(p).lines().filter(|l| !l.starts_with('#')).count()).collect();
        assert!(counts.iter().all(|&n| n <= 2 * 60), "{counts:?}");
        assert_eq!(counts[2..], [counts[2]; 3], "no growth once max_series is reached: {counts:?}");
        let last = user(pages.last().unwrap());
        assert!(last.contains("k4_49_total 1\n"), "the newest are kept");
        assert!(!last.contains("k0_0_total"), "the oldest idle ones are gone");
    }

    #[test]
    fn the_daemons_own_figures() {
        let pages = run("", &["a:1|c\nb:2|c\nbroken\n", "a:1|c\nstatsd.dockerStats.errors:2|c"]);
        let p = &pages[1];
        assert_eq!(sample(p, "kstatsd_packets_received_total"), Some(2.0), "{p}");
        assert_eq!(sample(p, "kstatsd_metrics_received_total"), Some(5.0), "lines, the bad one too: {p}");
        assert_eq!(sample(p, "kstatsd_bad_lines_total{reason=\"no_value\"}"), Some(1.0), "{p}");
        assert_eq!(
            sample(p, "kstatsd_bad_lines_total{reason=\"no_type\"}"),
            Some(0.0),
            "every reason from the start"
        );
        assert_eq!(sample(p, "kstatsd_kernel_drops_total"), Some(0.0));
        assert_eq!(sample(p, "kstatsd_flush_overruns_total"), Some(0.0));
        assert!(p.contains("# HELP kstatsd_bad_lines_total Lines discarded, by reason.\n# TYPE kstatsd_bad_lines_total counter\n"));
        assert!(!p.lines().any(|l| l.starts_with("statsd_")), "not also as user series: {p}");
        assert!(!p.contains("bad_lines_seen"), "{p}");
        assert_eq!(sample(p, "kstatsd_docker_stats_errors_total"), Some(2.0), "snake case: {p}");
    }

    #[test]
    fn sink_figures_carry_the_sink_as_a_label() {
        let aggregate = AggregateConfig::from_toml("").unwrap();
        let mut flusher = Flusher::new(aggregate.clone());
        let mut tables = Tables::new(aggregate.limits.clone());
        let mut exporter = Exporter::new("statsd");
        let snap = flusher.flush(&mut tables, &FlushMeta { interval: 1.0, ..FlushMeta::default() });
        for (k, v) in [
            ("graphiteStats.sent", 40.0),
            ("graphiteStats.dropped_queue_full", 2.0),
            ("graphiteStats.queued_bytes", 512.0),
            ("graphiteStats.flush_time", 25.0),
            ("kafkaStats.records_sent", 7.0),
            ("kafkaStats.records_dropped.too_large", 1.0),
            ("processing_time", 3.0),
        ] {
            snap.statsd.push((k.into(), v));
        }
        exporter.merge(snap);
        let mut page = Vec::new();
        exporter.render(&mut page);
        let p = String::from_utf8(page).unwrap();
        assert_eq!(sample(&p, "kstatsd_sink_sent_total{sink=\"graphite\"}"), Some(40.0), "{p}");
        assert_eq!(sample(&p, "kstatsd_sink_sent_total{sink=\"kafka\"}"), Some(7.0));
        assert_eq!(
            sample(&p, "kstatsd_sink_dropped_by_reason_total{sink=\"graphite\",reason=\"queue_full\"}"),
            Some(2.0)
        );
        assert_eq!(
            sample(&p, "kstatsd_sink_dropped_by_reason_total{sink=\"kafka\",reason=\"too_large\"}"),
            Some(1.0)
        );
        assert_eq!(sample(&p, "kstatsd_sink_queue_bytes{sink=\"graphite\"}"), Some(512.0));
        assert_eq!(sample(&p, "kstatsd_sink_flush_time_seconds{sink=\"graphite\"}"), Some(0.025));
        assert_eq!(sample(&p, "kstatsd_processing_time_seconds"), Some(0.003));
    }
}
