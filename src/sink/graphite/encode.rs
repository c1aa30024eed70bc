//! The Graphite sink's encoder, on the flush thread: a snapshot as carbon's plaintext lines
//! (`name value timestamp\n`) or pickle frames ([`super::super::pickle`]), into a buffer reused
//! from flush to flush (numbers through `write_f64`, no per-series allocation), with both the
//! counter rate and count under etsy's names ([`Snapshot::for_each_flat`]).
//!
//! What carbon would refuse is left out here and counted: a plaintext line longer than 16,384
//! bytes (carbon closes the connection on it), a name with whitespace or control bytes
//! (possible only with `sanitize_keys = false`; it would break the line), and non-finite values
//! (carbon ignores NaN). Pickle frames stay under carbon's 1 MiB limit.

use super::config::GraphiteProtocol;
use crate::flush::{CounterNames, Naming, Snapshot};
use crate::fmt::{write_f64, write_u64};
use crate::sink::outbox::{Batch, Dropped, Encode, FlushTag, Outbox};
use crate::sink::pickle::{FrameWriter, MAX_FRAME};
use std::time::Instant;

/// Longest plaintext line carbon takes (Twisted's `LineOnlyReceiver.MAX_LENGTH`); we count the
/// newline too, to stay clear of the edge.
pub const MAX_LINE: usize = 16_384;

/// Counts of what one serialization kept and dropped.
#[derive(Default)]
pub(super) struct Tally {
    pub points: u64,
    pub too_long: u64,
    pub bad_value: u64,
    pub bad_name: u64,
}

/// Whether `name` would break a plaintext line: carbon splits lines on any whitespace
/// (Python's `str.split()`, Unicode included). Backstop forwards to carbon: the same rule.
pub(crate) fn breaks_line(name: &str) -> bool {
    name.is_empty()
        || name.bytes().any(|b| b <= b' ' || b == 0x7f)
        || (!name.is_ascii() && name.chars().any(char::is_whitespace))
}

/// Appends every point of `snapshot` as plaintext lines.
pub(super) fn render_plaintext(
    snapshot: &Snapshot,
    naming: &Naming,
    name: &mut String,
    out: &mut Vec<u8>,
    tally: &mut Tally,
) {
    let clock = snapshot.clock;
    let which = CounterNames { rate: true, count: true };
    snapshot.for_each_flat(naming, which, name, &mut |n, v| {
        if !v.is_finite() {
            tally.bad_value += 1;
            return;
        }
        if breaks_line(n) {
            tally.bad_name += 1;
            return;
        }
        let start = out.len();
        out.extend_from_slice(n.as_bytes());
        out.push(b' ');
        write_f64(out, v);
        out.push(b' ');
        write_u64(out, clock);
        out.push(b'\n');
        if out.len() - start > MAX_LINE {
            out.truncate(start);
            tally.too_long += 1;
        } else {
            tally.points += 1;
        }
    });
}

/// Appends every point of `snapshot` as pickle frames.
pub(super) fn render_pickle(
    snapshot: &Snapshot,
    naming: &Naming,
    name: &mut String,
    frames: &mut FrameWriter,
    out: &mut Vec<u8>,
    tally: &mut Tally,
) {
    let clock = snapshot.clock;
    let which = CounterNames { rate: true, count: true };
    frames.begin(out);
    snapshot.for_each_flat(naming, which, name, &mut |n, v| {
        if !v.is_finite() {
            tally.bad_value += 1;
        } else if frames.push(out, n, clock, v) {
            tally.points += 1;
        } else {
            tally.too_long += 1;
        }
    });
    frames.finish(out);
}

pub struct Encoder {
    protocol: GraphiteProtocol,
    frames: FrameWriter,
    name: String,
    /// Flushes encoded so far.
    seq: u64,
}

impl Encoder {
    pub fn new(protocol: GraphiteProtocol) -> Encoder {
        Encoder { protocol, frames: FrameWriter::new(MAX_FRAME), name: String::with_capacity(256), seq: 0 }
    }
}

impl Encode for Encoder {
    type Item = Batch;

    /// One batch per flush.
    fn encode(&mut self, snapshot: &Snapshot, naming: &Naming, outbox: &Outbox<Batch>, now: Instant) -> u64 {
        self.seq += 1;
        let mut batch = Batch::fresh(outbox, FlushTag { seq: self.seq, last: true, enqueued: now });
        let buf = &mut batch.bytes;
        let mut tally = Tally::default();
        match self.protocol {
            GraphiteProtocol::Plaintext => {
                render_plaintext(snapshot, naming, &mut self.name, buf, &mut tally)
            }
            GraphiteProtocol::Pickle => {
                render_pickle(snapshot, naming, &mut self.name, &mut self.frames, buf, &mut tally)
            }
        }
        let f = outbox.figures();
        f.count_drop(Dropped::TooLong, tally.too_long);
        f.count_drop(Dropped::BadValue, tally.bad_value);
        f.count_drop(Dropped::BadName, tally.bad_name);
        let bytes = buf.len() as u64;
        batch.points = tally.points;
        if batch.points == 0 {
            outbox.recycle(batch);
        } else {
            outbox.push(batch);
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Tables;
    use crate::flush::config::AggregateConfig;
    use crate::flush::{FlushMeta, Flusher};
    use crate::ingest::{self, Format};

    const TRAFFIC: &str = "api.hits:3|c\napi.hits:2|c|@0.5\napi.lat:10|ms\napi.lat:20|ms\napi.lat:30|ms\n\
                           q.depth:7|g\nq.depth:+3|g\nusers:a|s\nusers:b|s\nusers:a|s\n\
                           req:1|c|#env:prod,host:h1\nreq.lat:5|ms|#env:prod";

    /// One flush: its flat names, and both renderings with what they kept and dropped.
    struct Rendered {
        flat: Vec<(String, f64)>,
        plain: Vec<u8>,
        pickle: Vec<u8>,
        t1: Tally,
        t2: Tally,
    }

    /// Renders `datagrams` (one flush) with `aggregate` settings, in both protocols.
    fn render(aggregate: &str, datagrams: &[&[u8]]) -> Rendered {
        let config = AggregateConfig::from_toml(aggregate).unwrap();
        let naming = Naming::new(&config);
        let mut flusher = Flusher::new(config.clone());
        let mut tables = Tables::new(config.limits.clone());
        let mut buf = Default::default();
        for d in datagrams {
            ingest::datagram(&mut tables, d, Format::Statsd, false, &mut buf, &mut None);
        }
        let meta = FlushMeta { interval: 2.0, clock: 1_800_000_000, ..FlushMeta::default() };
        let snapshot = flusher.flush(&mut tables, &meta);
        let mut flat = Vec::new();
        let which = CounterNames { rate: true, count: true };
        snapshot.for_each_flat(&naming, which, &mut String::new(), &mut |n, v| flat.push((n.to_string(), v)));
        let (mut plain, mut pickle) = (Vec::new(), Vec::new());
        let (mut t1, mut t2) = (Tally::default(), Tally::default());
        render_plaintext(snapshot, &naming, &mut String::new(), &mut plain, &mut t1);
        let mut frames = FrameWriter::new(MAX_FRAME);
        render_pickle(snapshot, &naming, &mut String::new(), &mut frames, &mut pickle, &mut t2);
        Rendered { flat, plain, pickle, t1, t2 }
    }

    /// The points of pickle frames, in order (the opcodes `pickle.rs` writes, nothing else).
    fn unpickle(mut buf: &[u8]) -> Vec<(String, u64, f64)> {
        let mut points = Vec::new();
        while !buf.is_empty() {
            let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
            assert!(len <= MAX_FRAME);
            let mut p = &buf[8..4 + len];
            buf = &buf[4 + len..];
            while p[0] == b'X' {
                let n = u32::from_le_bytes(p[1..5].try_into().unwrap()) as usize;
                let name = std::str::from_utf8(&p[5..5 + n]).unwrap().to_string();
                p = &p[5 + n..];
                assert_eq!(p[0], b'J');
                let ts = i32::from_le_bytes(p[1..5].try_into().unwrap()) as u64;
                let v = f64::from_be_bytes(p[6..14].try_into().unwrap());
                p = &p[16..];
                points.push((name, ts, v));
            }
            assert_eq!(p, b"e.");
        }
        points
    }

    #[test]
    fn both_protocols_carry_exactly_the_flat_names_with_rates_and_counts() {
        let Rendered { flat, plain, pickle, t1, t2 } =
            render("percentiles = [90, -10]", &[TRAFFIC.as_bytes()]);
        let names: Vec<&str> = flat.iter().map(|(n, _)| n.as_str()).collect();
        for want in [
            "stats.api.hits",
            "stats_counts.api.hits",
            "stats.timers.api.lat.upper_90",
            "stats.timers.req.lat.lower_top10;env=prod",
            "stats.gauges.q.depth",
            "stats.sets.users.count",
            "stats_counts.req;env=prod;host=h1",
            "stats.timers.req.lat.mean;env=prod",
            "statsd.numStats",
        ] {
            assert!(names.contains(&want), "{want} not in {names:?}");
        }
        let want: String = flat
            .iter()
            .map(|(n, v)| {
                let mut num = Vec::new();
                write_f64(&mut num, *v);
                format!("{n} {} 1800000000\n", String::from_utf8(num).unwrap())
            })
            .collect();
        assert_eq!(String::from_utf8(plain).unwrap(), want);
        let points = unpickle(&pickle);
        assert_eq!(points.len(), flat.len());
        for ((n, ts, v), (fnm, fv)) in points.iter().zip(&flat) {
            assert_eq!((n, *ts), (fnm, 1_800_000_000));
            assert_eq!(v.to_bits(), fv.to_bits(), "{n}");
        }
        assert_eq!((t1.points, t1.too_long, t1.bad_name, t1.bad_value), (flat.len() as u64, 0, 0, 0));
        assert_eq!((t2.points, t2.too_long), (flat.len() as u64, 0));
    }

    #[test]
    fn lines_carbon_would_refuse_are_dropped_and_counted() {
        let long = format!("{}:1|c", "x".repeat(16_370));
        let Rendered { flat, plain, pickle, t1, t2 } =
            render("sanitize_keys = false\nmax_name_bytes = 20000", &[b"a b:1|c\nok:1|c", long.as_bytes()]);
        let text = String::from_utf8(plain).unwrap();
        assert!(text.lines().all(|l| l.len() < MAX_LINE && l.split(' ').count() == 3), "{text}");
        assert!(text.contains("stats_counts.ok 1 1800000000\n"));
        // `a b` as rate and count, the long name as rate and count (16,370 + "stats_counts.")
        assert_eq!((t1.bad_name, t1.too_long), (2, 2));
        assert_eq!(t1.points as usize, flat.len() - 4);
        // pickle takes both: it has no line limit, and a space is fine in a str
        assert_eq!((t2.points as usize, t2.too_long), (flat.len(), 0));
        assert!(unpickle(&pickle).iter().any(|(n, _, _)| n == "stats_counts.a b"));
    }

    #[test]
    fn names_that_break_a_line() {
        assert!(!breaks_line("stats.a.b;k=v"));
        assert!(!breaks_line("stats.é"));
        for bad in ["", "a b", "a\nb", "a\tb", "a\rb", "a\u{7f}", "a\u{2003}b", "a\u{a0}b"] {
            assert!(breaks_line(bad), "{bad:?}");
        }
    }
}
