//! Serialization of a snapshot into Kafka record values, cut into request-sized payloads. Runs
//! on the flush thread: one pass over the snapshot, straight into the payloads' byte buffers
//! (reused from earlier flushes through the queue's pool), numbers written with
//! `write_f64`/`write_u64`, no allocation per series.
//!
//! `flat` writes exactly the bytes of `console::render_flat` (a unit test holds them equal),
//! except that a flush larger than `max_record_bytes` is cut into several records, each a part of
//! `gauges` followed by the same `durationUnit`, `clock` and `rateUnit`. `tagged` writes one
//! record per series. Records are grouped into payloads whose request body (keys, framing and, for
//! the binary type, base64 included) stays under `max_request_bytes`.
//!
//! Also here: the [`Payload`] the encoder fills and the engine queues, and, for the delivery
//! thread, the framing of records into a request body and the split of a flat record in two
//! when the proxy says it is too large.

use super::config::KafkaFormat;
use crate::flush::{CounterNames, KeyRef, Naming, Snapshot};
use crate::fmt::{write_f64, write_json_str, write_u64};
use crate::sink::outbox::{FlushTag, Item};

pub(crate) const REQUEST_HEAD: &[u8] = b"{\"records\":[";
pub(crate) const REQUEST_TAIL: &[u8] = b"]}";
const FLAT_HEAD: &[u8] = b"{\"gauges\":{";

/// Part of one flush, small enough for one request: record values back to back in `data`,
/// `records` the (offset, length) of each one still to deliver, in order.
pub struct Payload {
    pub data: Vec<u8>,
    pub records: Vec<(u32, u32)>,
    pub flush: FlushTag,
}

impl Payload {
    pub fn value(&self, r: (u32, u32)) -> &[u8] {
        &self.data[r.0 as usize..(r.0 + r.1) as usize]
    }

    /// An empty payload of the flush `flush`: `spent`'s buffers when there is one, else new
    /// buffers large enough for a small flush, so that a flush that grows by a few bytes does not
    /// reallocate (`tests/kafka_rest.rs` counts allocations on the flush thread).
    pub fn fresh(spent: Option<Payload>, flush: FlushTag) -> Payload {
        match spent {
            Some(mut p) => {
                p.flush = flush;
                p
            }
            None => Payload { data: Vec::with_capacity(64 << 10), records: Vec::with_capacity(256), flush },
        }
    }
}

impl Item for Payload {
    fn bytes(&self) -> usize {
        self.data.len()
    }
    fn records(&self) -> usize {
        self.records.len()
    }
    fn flush(&self) -> FlushTag {
        self.flush
    }
    fn capacity(&self) -> usize {
        self.data.capacity()
    }
    fn reset(&mut self) {
        self.data.clear();
        self.records.clear();
    }
}

/// How one record is written into a request: `{"key":K,"value":V}` (or without the key), the
/// value embedded as JSON, or base64 in a string for the binary type.
#[derive(Clone, Debug)]
pub(crate) struct Framing {
    head: Vec<u8>,
    binary: bool,
}

impl Framing {
    pub fn new(key: Option<&str>, binary: bool) -> Framing {
        let mut head = b"{".to_vec();
        if let Some(k) = key {
            head.extend_from_slice(b"\"key\":");
            if binary {
                head.push(b'"');
                base64(&mut head, k.as_bytes());
                head.push(b'"');
            } else {
                write_json_str(&mut head, k);
            }
            head.push(b',');
        }
        head.extend_from_slice(b"\"value\":");
        Framing { head, binary }
    }

    /// Bytes a value of `len` bytes takes in a request body, its separator included.
    pub fn encoded_len(&self, len: usize) -> usize {
        let value = if self.binary { 2 + len.div_ceil(3) * 4 } else { len };
        self.head.len() + value + 2
    }

    pub fn write(&self, out: &mut Vec<u8>, value: &[u8]) {
        out.extend_from_slice(&self.head);
        if self.binary {
            out.push(b'"');
            base64(out, value);
            out.push(b'"');
        } else {
            out.extend_from_slice(value);
        }
        out.push(b'}');
    }
}

/// Standard base64 with padding (the base64 crate), appended to `out` without a new buffer.
fn base64(out: &mut Vec<u8>, input: &[u8]) {
    use base64::Engine as _;
    let start = out.len();
    out.resize(start + input.len().div_ceil(3) * 4, 0);
    let n = base64::engine::general_purpose::STANDARD
        .encode_slice(input, &mut out[start..])
        .expect("sized for the padded encoding");
    out.truncate(start + n);
}

/// Where the encoder gets empty payloads and puts full ones (the queue, or a test).
pub(crate) trait PayloadOut {
    fn fresh(&mut self, flush: FlushTag) -> Payload;
    fn emit(&mut self, p: Payload);
}

/// What one flush produced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Encoded {
    /// Bytes of record values.
    pub bytes: u64,
    pub records: u64,
    pub payloads: u64,
    /// Records over `max_record_bytes` that could not be cut (a single huge series).
    pub too_large: u64,
}

/// The flush thread's serializer; its buffers live as long as the sink.
pub(crate) struct Encoder {
    pub format: KafkaFormat,
    /// The flat record carries `stats.<k>` rates too (as the console JSON does).
    pub counter_rates: bool,
    /// Tagged names of the daemon's plain figures: `<meta_prefix>.numStats`, ….
    pub meta_prefix: String,
    pub max_record: usize,
    pub max_request: usize,
    pub framing: Framing,
    name: String,
    entry: Vec<u8>,
    trailer: Vec<u8>,
    seq: u64,
}

impl Encoder {
    pub fn new(
        format: KafkaFormat,
        counter_rates: bool,
        meta_prefix: String,
        max_record: usize,
        max_request: usize,
        framing: Framing,
    ) -> Encoder {
        Encoder {
            format,
            counter_rates,
            meta_prefix,
            max_record,
            max_request,
            framing,
            name: String::with_capacity(256),
            entry: Vec::with_capacity(256),
            trailer: Vec::with_capacity(96),
            seq: 0,
        }
    }

    /// Serializes one flush into payloads handed to `out` as each fills up.
    pub fn encode(
        &mut self,
        snap: &Snapshot,
        naming: &Naming,
        out: &mut dyn PayloadOut,
        now: std::time::Instant,
    ) -> Encoded {
        self.seq += 1;
        let tag = FlushTag { seq: self.seq, last: false, enqueued: now };
        self.trailer.clear();
        self.trailer.extend_from_slice(b"},\"durationUnit\":\"milliseconds\",\"clock\":");
        write_u64(&mut self.trailer, snap.clock);
        self.trailer.extend_from_slice(b",\"rateUnit\":\"seconds\"}");
        let cur = out.fresh(tag);
        let mut w = Writer {
            out,
            framing: &self.framing,
            max_record: self.max_record,
            max_request: self.max_request,
            trailer: &self.trailer,
            entry: &mut self.entry,
            clock: snap.clock,
            cur,
            tag,
            request: REQUEST_HEAD.len() + REQUEST_TAIL.len(),
            rec_start: 0,
            entries: 0,
            result: Encoded::default(),
        };
        match self.format {
            KafkaFormat::Flat => {
                let which = CounterNames { rate: self.counter_rates, count: true };
                w.begin_flat();
                snap.for_each_flat(naming, which, &mut self.name, &mut |n, v| w.flat_entry(n, v));
                w.end_flat();
            }
            KafkaFormat::Tagged => tagged(snap, &self.meta_prefix, &mut self.name, &mut w),
        }
        w.finish()
    }
}

/// One record per series: `{"name":…,"type":…,"tags":{…},"clock":…,"values":{…}}`.
fn tagged(snap: &Snapshot, meta_prefix: &str, name: &mut String, w: &mut Writer<'_>) {
    for c in &snap.counters {
        w.tagged(snap.name(c.key), Some((snap, c.key)), "counter", &mut |d| {
            kv(d, true, "count", c.count);
            kv(d, false, "rate", c.rate);
        });
    }
    for t in &snap.timers {
        w.tagged(snap.name(t.key), Some((snap, t.key)), "timer", &mut |d| {
            // keys are the flat names' tails: "count", "mean_90", "histogram.bin_10"
            let mut first = true;
            snap.for_each_timer_stat(t, &mut |stat, v| {
                if !std::mem::take(&mut first) {
                    d.push(b',');
                }
                d.push(b'"');
                for (i, part) in stat.iter().enumerate() {
                    if i > 0 {
                        d.push(b'.');
                    }
                    d.extend_from_slice(part.as_bytes());
                }
                d.extend_from_slice(b"\":");
                write_f64(d, v);
            });
        });
    }
    for g in &snap.gauges {
        w.tagged(snap.name(g.key), Some((snap, g.key)), "gauge", &mut |d| kv(d, true, "value", g.value));
    }
    for s in &snap.sets {
        w.tagged(snap.name(s.key), Some((snap, s.key)), "set", &mut |d| kv(d, true, "count", s.count));
    }
    let plain = std::iter::once(("numStats", snap.num_stats as f64))
        .chain(snap.statsd.iter().map(|(n, v)| (n.as_str(), *v)));
    for (n, v) in plain {
        name.clear();
        name.push_str(meta_prefix);
        name.push('.');
        name.push_str(n);
        w.tagged(name, None, "gauge", &mut |d| kv(d, true, "value", v));
    }
}

/// `"k":v`, after a comma unless first. `k` is one of our own stat names: no escaping needed.
fn kv(d: &mut Vec<u8>, first: bool, k: &str, v: f64) {
    if !first {
        d.push(b',');
    }
    d.push(b'"');
    d.extend_from_slice(k.as_bytes());
    d.extend_from_slice(b"\":");
    write_f64(d, v);
}

struct Writer<'a> {
    out: &'a mut dyn PayloadOut,
    framing: &'a Framing,
    max_record: usize,
    max_request: usize,
    trailer: &'a [u8],
    entry: &'a mut Vec<u8>,
    clock: u64,
    /// The payload being filled, and the request body size its records make.
    cur: Payload,
    tag: FlushTag,
    request: usize,
    /// Where the record being written starts in `cur.data`, and its `gauges` entries so far.
    rec_start: usize,
    entries: usize,
    result: Encoded,
}

impl Writer<'_> {
    fn begin_flat(&mut self) {
        // A flat record may grow to max_record: start a new request first if it would not fit.
        if !self.cur.records.is_empty()
            && self.request + self.framing.encoded_len(self.max_record) > self.max_request
        {
            self.next_payload();
        }
        self.rec_start = self.cur.data.len();
        self.cur.data.extend_from_slice(FLAT_HEAD);
        self.entries = 0;
    }

    fn flat_entry(&mut self, name: &str, v: f64) {
        let d = &mut self.cur.data;
        let mark = d.len();
        if self.entries > 0 {
            d.push(b',');
        }
        write_json_str(d, name);
        d.push(b':');
        write_f64(d, v);
        if self.entries > 0 && d.len() - self.rec_start + self.trailer.len() > self.max_record {
            // This entry goes into the next record.
            self.entry.clear();
            self.entry.extend_from_slice(&d[mark + 1..]);
            d.truncate(mark);
            self.end_flat();
            self.begin_flat();
            self.cur.data.extend_from_slice(self.entry);
        }
        self.entries += 1;
    }

    fn end_flat(&mut self) {
        self.cur.data.extend_from_slice(self.trailer);
        self.close_record();
    }

    fn tagged(
        &mut self,
        name: &str,
        key: Option<(&Snapshot, KeyRef)>,
        kind: &str,
        values: &mut dyn FnMut(&mut Vec<u8>),
    ) {
        self.rec_start = self.cur.data.len();
        let d = &mut self.cur.data;
        d.extend_from_slice(b"{\"name\":");
        write_json_str(d, name);
        d.extend_from_slice(b",\"type\":\"");
        d.extend_from_slice(kind.as_bytes());
        d.extend_from_slice(b"\",\"tags\":{");
        if let Some((snap, k)) = key {
            for (i, (tk, tv)) in snap.tag_pairs(k).enumerate() {
                if i > 0 {
                    d.push(b',');
                }
                write_json_str(d, tk);
                d.push(b':');
                write_json_str(d, tv);
            }
        }
        d.extend_from_slice(b"},\"clock\":");
        write_u64(d, self.clock);
        d.extend_from_slice(b",\"values\":{");
        values(d);
        d.extend_from_slice(b"}}");
        self.close_record();
    }

    /// The record from `rec_start` to the end of `cur.data` is complete: keep it in this
    /// payload, or move it to the next one if the request would outgrow `max_request`.
    fn close_record(&mut self) {
        let len = self.cur.data.len() - self.rec_start;
        if len > self.max_record {
            self.cur.data.truncate(self.rec_start);
            self.result.too_large += 1;
            return;
        }
        let enc = self.framing.encoded_len(len);
        if !self.cur.records.is_empty() && self.request + enc > self.max_request {
            let mut next = self.out.fresh(self.tag);
            next.data.extend_from_slice(&self.cur.data[self.rec_start..]);
            self.cur.data.truncate(self.rec_start);
            std::mem::swap(&mut self.cur, &mut next);
            self.emit(next);
            self.rec_start = 0;
        }
        self.cur.records.push((self.rec_start as u32, len as u32));
        self.request += enc;
        self.result.bytes += len as u64;
        self.result.records += 1;
    }

    fn next_payload(&mut self) {
        let fresh = self.out.fresh(self.tag);
        let full = std::mem::replace(&mut self.cur, fresh);
        self.emit(full);
    }

    fn emit(&mut self, p: Payload) {
        self.request = REQUEST_HEAD.len() + REQUEST_TAIL.len();
        self.result.payloads += 1;
        self.out.emit(p);
    }

    fn finish(mut self) -> Encoded {
        let mut last = std::mem::replace(
            &mut self.cur,
            Payload { data: Vec::new(), records: Vec::new(), flush: self.tag },
        );
        last.flush.last = true;
        if !last.records.is_empty() {
            self.emit(last);
        }
        self.result
    }
}

/// Cuts a flat record value in two, each half of its `gauges` entries followed by the same
/// `durationUnit`, `clock`, `rateUnit`; appends both to `data`. `None` when the value is not a
/// flat record or has a single entry. Runs on the delivery thread.
pub(crate) fn split_flat(data: &mut Vec<u8>, r: (u32, u32)) -> Option<[(u32, u32); 2]> {
    let (start, end) = (r.0 as usize, (r.0 + r.1) as usize);
    let v = &data[start..end];
    if !v.starts_with(FLAT_HEAD) {
        return None;
    }
    // Entries are "name":number: a string (with escapes), a colon, then bytes up to `,` or `}`.
    let mut commas = Vec::new();
    let mut i = FLAT_HEAD.len();
    let gauges_end = loop {
        match v.get(i)? {
            b'}' => break i,
            b'"' => {}
            _ => return None,
        }
        i += 1;
        loop {
            match v.get(i)? {
                b'\\' => i += 2,
                b'"' => break,
                _ => i += 1,
            }
        }
        i += 1;
        if *v.get(i)? != b':' {
            return None;
        }
        while !matches!(v.get(i)?, b',' | b'}') {
            i += 1;
        }
        if v[i] == b',' {
            commas.push(i);
            i += 1;
        }
    };
    let mid = *commas.get(commas.len() / 2)?;
    let (mid, gauges_end) = (start + mid, start + gauges_end);
    let mut half = |from: usize, to: usize| {
        let at = data.len();
        data.extend_from_within(start..start + FLAT_HEAD.len());
        data.extend_from_within(from..to);
        data.extend_from_within(gauges_end..end);
        (at as u32, (data.len() - at) as u32)
    };
    let a = half(start + FLAT_HEAD.len(), mid);
    let b = half(mid + 1, gauges_end);
    Some([a, b])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flush::config::AggregateConfig;
    use crate::flush::Flusher;
    use crate::sink::console::render_flat;
    use std::time::Instant;

    #[derive(Default)]
    struct Collect(Vec<Payload>);
    impl PayloadOut for Collect {
        fn fresh(&mut self, flush: FlushTag) -> Payload {
            Payload { data: Vec::new(), records: Vec::new(), flush }
        }
        fn emit(&mut self, p: Payload) {
            self.0.push(p);
        }
    }

    /// A real snapshot: `lines` fed through the aggregation tables and the flusher.
    fn with_snapshot(aggregate: &str, lines: &str, f: impl FnOnce(&Snapshot, &Naming)) {
        let aggregate = AggregateConfig::from_toml(aggregate).unwrap();
        let mut tables = crate::aggregate::Tables::new(aggregate.limits.clone());
        crate::ingest::datagram(
            &mut tables,
            lines.as_bytes(),
            crate::ingest::Format::Statsd,
            false,
            &mut crate::parse::LineBuf::default(),
            &mut None,
        );
        let naming = Naming::new(&aggregate);
        let mut flusher = Flusher::new(aggregate.clone());
        let meta = crate::flush::FlushMeta { interval: 1.0, clock: 1_700_000_000, ..Default::default() };
        let snap = flusher.flush(&mut tables, &meta);
        snap.statsd.push(("kafkaStats.flush_time".into(), 1.5));
        f(snap, &naming);
    }

    fn encoder(format: KafkaFormat, max_record: usize, max_request: usize, binary: bool) -> Encoder {
        Encoder::new(
            format,
            false,
            "statsd".into(),
            max_record,
            max_request,
            Framing::new(Some("h1"), binary),
        )
    }

    fn values(c: &Collect) -> Vec<String> {
        let mut out = Vec::new();
        for p in &c.0 {
            for &r in &p.records {
                out.push(String::from_utf8(p.value(r).to_vec()).unwrap());
            }
        }
        out
    }

    const LINES: &str = "api.lat:100|ms|#env:prod,host:h1\napi.lat:200|ms|#env:prod,host:h1\n\
                         hits:3|c|#a:1\nq:12|g\nusers:x|s\nusers:y|s\nweird\\\"na,me:1|c";

    #[test]
    fn flat_is_exactly_the_console_rendering_when_it_fits() {
        with_snapshot("percentiles = [90]\nsanitize_keys = false", LINES, |snap, naming| {
            let mut expected = Vec::new();
            let which = CounterNames { rate: false, count: true };
            render_flat(snap, naming, which, &mut String::new(), &mut expected);
            let mut out = Collect::default();
            let e = encoder(KafkaFormat::Flat, 900 << 10, 4 << 20, false).encode(
                snap,
                naming,
                &mut out,
                Instant::now(),
            );
            assert_eq!(values(&out), vec![String::from_utf8(expected).unwrap()]);
            assert_eq!((e.records, e.payloads, e.too_large), (1, 1, 0));
            assert!(out.0[0].flush.last);
        });
    }

    #[test]
    fn a_large_flat_flush_is_cut_into_records_that_repeat_the_units_and_clock() {
        let lines: String = (0..500).map(|i| format!("series.number.{i}:{i}|c\n")).collect();
        with_snapshot("", &lines, |snap, naming| {
            let mut whole = Vec::new();
            let which = CounterNames { rate: false, count: true };
            render_flat(snap, naming, which, &mut String::new(), &mut whole);
            let whole: serde_json::Value = serde_json::from_slice(&whole).unwrap();
            let mut out = Collect::default();
            let e =
                encoder(KafkaFormat::Flat, 1024, 3000, true).encode(snap, naming, &mut out, Instant::now());
            assert!(e.payloads > 3 && e.records > e.payloads, "{e:?}");
            let framing = Framing::new(Some("h1"), true);
            let mut merged = serde_json::Map::new();
            for p in &out.0 {
                let body: usize = p.records.iter().map(|&r| framing.encoded_len(r.1 as usize)).sum();
                assert!(body + REQUEST_HEAD.len() + REQUEST_TAIL.len() <= 3000, "request of {body}");
                for &r in &p.records {
                    let v = p.value(r);
                    assert!(v.len() <= 1024);
                    let v: serde_json::Value = serde_json::from_slice(v).unwrap();
                    assert_eq!(v["clock"], 1_700_000_000);
                    assert_eq!(v["durationUnit"], "milliseconds");
                    assert_eq!(v["rateUnit"], "seconds");
                    for (k, x) in v["gauges"].as_object().unwrap() {
                        assert!(merged.insert(k.clone(), x.clone()).is_none(), "{k} twice");
                    }
                }
            }
            assert_eq!(&merged, whole["gauges"].as_object().unwrap());
            assert_eq!(out.0.iter().filter(|p| p.flush.last).count(), 1);
            assert!(out.0.last().unwrap().flush.last);
        });
    }

    #[test]
    fn tagged_records_carry_tags_as_an_object() {
        with_snapshot(
            "percentiles = [90]\nhistograms = [{ metric = \"api\", bins = [150, \"inf\"] }]",
            LINES,
            |snap, naming| {
                let mut out = Collect::default();
                encoder(KafkaFormat::Tagged, 4096, 1 << 20, false).encode(
                    snap,
                    naming,
                    &mut out,
                    Instant::now(),
                );
                let v = values(&out);
                let find = |prefix: &str| {
                    v.iter().find(|r| r.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix}: {v:?}"))
                };
                assert_eq!(
                find("{\"name\":\"hits\""),
                "{\"name\":\"hits\",\"type\":\"counter\",\"tags\":{\"a\":\"1\"},\"clock\":1700000000,\"values\":{\"count\":3,\"rate\":3}}"
            );
                assert_eq!(
                find("{\"name\":\"api.lat\""),
                "{\"name\":\"api.lat\",\"type\":\"timer\",\"tags\":{\"env\":\"prod\",\"host\":\"h1\"},\"clock\":1700000000,\
                 \"values\":{\"count\":2,\"count_ps\":2,\"lower\":100,\"upper\":200,\"sum\":300,\"sum_squares\":50000,\
                 \"mean\":150,\"median\":150,\"std\":50,\"count_90\":2,\"mean_90\":150,\"upper_90\":200,\"sum_90\":300,\
                 \"sum_squares_90\":50000,\"histogram.bin_150\":1,\"histogram.bin_inf\":1}}"
            );
                assert_eq!(find("{\"name\":\"q\""), "{\"name\":\"q\",\"type\":\"gauge\",\"tags\":{},\"clock\":1700000000,\"values\":{\"value\":12}}");
                assert_eq!(find("{\"name\":\"users\""), "{\"name\":\"users\",\"type\":\"set\",\"tags\":{},\"clock\":1700000000,\"values\":{\"count\":2}}");
                assert!(find("{\"name\":\"statsd.numStats\"").contains("\"type\":\"gauge\""));
                assert!(find("{\"name\":\"statsd.kafkaStats.flush_time\"")
                    .ends_with("\"values\":{\"value\":1.5}}"));
                for r in &v {
                    serde_json::from_str::<serde_json::Value>(r).unwrap_or_else(|e| panic!("{e}: {r}"));
                }
            },
        );
    }

    #[test]
    fn a_series_larger_than_a_record_is_dropped_and_counted() {
        let long = "x".repeat(1500);
        with_snapshot("max_name_bytes = 4000", &format!("{long}:1|c\nshort:1|c"), |snap, naming| {
            let mut out = Collect::default();
            let e = encoder(KafkaFormat::Tagged, 1024, 4096, false).encode(
                snap,
                naming,
                &mut out,
                Instant::now(),
            );
            assert_eq!(e.too_large, 1);
            assert!(values(&out).iter().all(|r| !r.contains(&long)));
            assert!(values(&out).iter().any(|r| r.contains("\"short\"")));
        });
    }

    #[test]
    fn split_flat_halves_the_gauges_and_repeats_the_rest() {
        let v = br#"{"gauges":{"a":1,"b\",\"c":2,"d":null,"e":-1.5e-7},"durationUnit":"milliseconds","clock":7,"rateUnit":"seconds"}"#;
        let mut data = b"junk".to_vec();
        data.extend_from_slice(v);
        let [a, b] = split_flat(&mut data, (4, v.len() as u32)).unwrap();
        let s = |r: (u32, u32)| String::from_utf8(data[r.0 as usize..(r.0 + r.1) as usize].to_vec()).unwrap();
        assert_eq!(
            s(a),
            r#"{"gauges":{"a":1,"b\",\"c":2},"durationUnit":"milliseconds","clock":7,"rateUnit":"seconds"}"#
        );
        assert_eq!(
            s(b),
            r#"{"gauges":{"d":null,"e":-1.5e-7},"durationUnit":"milliseconds","clock":7,"rateUnit":"seconds"}"#
        );
        let one = br#"{"gauges":{"a":1},"durationUnit":"milliseconds","clock":7,"rateUnit":"seconds"}"#;
        assert!(split_flat(&mut one.to_vec(), (0, one.len() as u32)).is_none());
        let tagged = br#"{"name":"a","type":"gauge"}"#;
        assert!(split_flat(&mut tagged.to_vec(), (0, tagged.len() as u32)).is_none());
    }

    #[test]
    fn binary_records_are_base64_in_the_body() {
        let enc = |s: &[u8]| {
            let mut o = b"x".to_vec();
            base64(&mut o, s);
            String::from_utf8(o).unwrap()
        };
        assert_eq!((enc(b""), enc(b"f"), enc(b"fo")), ("x".into(), "xZg==".into(), "xZm8=".into()));
        assert_eq!((enc(b"foobar"), enc(&[0xff, 0xfe, 0x00])), ("xZm9vYmFy".into(), "x//4A".into()));
        let f = Framing::new(Some("h"), true);
        let mut body = Vec::new();
        f.write(&mut body, b"{}");
        assert_eq!(body, b"{\"key\":\"aA==\",\"value\":\"e30=\"}");
        assert_eq!(f.encoded_len(2), body.len() + 1);
        let f = Framing::new(None, false);
        body.clear();
        f.write(&mut body, b"{}");
        assert_eq!(body, b"{\"value\":{}}");
        assert_eq!(f.encoded_len(2), body.len() + 1);
    }
}
