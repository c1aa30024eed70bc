//! Aggregation of one interval: the interned tables that the ingest thread records into, and the
//! per-datagram entry point. The tables are double buffered: the ingest thread fills the active
//! one; at a flush it is handed whole to the flush thread, which summarizes it, clears it (keeping
//! every allocation) and hands it back as the next spare.

mod key;
pub mod sketch;
mod tables;

pub use key::{canonical_key, KeyRules};
pub use sketch::{Sketch, TimerSketch};
pub use tables::{GaugeAcc, IngestStats, Limits, SeriesRef, Tables, TimerAcc};

use crate::parse::{self, BadLine, LineBuf, Parsed, Sample};

/// Sees every metric as it is parsed, before it is recorded: the debug dump. `()` sees nothing
/// and compiles away, so [`ingest_datagram`] is exactly the unobserved path.
pub trait Observe {
    /// `name` and `tags` are raw (as received); set members are ranges into `line`.
    fn metric(&mut self, name: &[u8], tags: &[u8], line: &[u8], samples: &[Sample]);
}

impl Observe for () {
    #[inline(always)]
    fn metric(&mut self, _: &[u8], _: &[u8], _: &[u8], _: &[Sample]) {}
}

/// Parses every line of one datagram and records it into `tables`. `buf` is the caller's
/// reusable parse buffer. Counts the packet, its bytes, every line, and each bad line (or bad
/// segment of a multi-metric line) by reason. A datagram that starts with `{` holds pystatsd
/// JSON messages (see [`ingest_mixed_line`]).
#[inline]
pub fn ingest_datagram(tables: &mut Tables, datagram: &[u8], buf: &mut LineBuf) {
    ingest_datagram_observed(tables, datagram, buf, &mut ());
}

/// [`ingest_datagram`], showing every parsed metric to `obs`.
#[inline]
pub fn ingest_datagram_observed<O: Observe + ?Sized>(
    tables: &mut Tables,
    datagram: &[u8],
    buf: &mut LineBuf,
    obs: &mut O,
) {
    tables.stats.packets += 1;
    tables.stats.bytes += datagram.len() as u64;
    if datagram.first() == Some(&b'{') {
        return ingest_json_datagram(tables, datagram, buf, obs);
    }
    // The lines of `parse::lines`, read in place: a fast-path line tells where it ends; any other
    // is cut at the next `\n`, its `\r` stripped, and skipped when empty.
    let mut start = 0;
    while let Some(rest) = datagram.get(start..).filter(|r| !r.is_empty()) {
        if let Some((name_len, sample, len)) = parse::parse_simple_prefix(rest) {
            record_simple(tables, &rest[..len], name_len, &sample, obs);
            start += len + 1;
        } else {
            let len = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
            let line = rest[..len].strip_suffix(b"\r").unwrap_or(&rest[..len]);
            if !line.is_empty() {
                ingest_line_observed(tables, line, buf, obs);
            }
            start += len + 1;
        }
    }
}

/// Counts and records one line the fast path parsed (its name is the first `name_len` bytes).
#[inline(always)]
fn record_simple<O: Observe + ?Sized>(
    tables: &mut Tables,
    line: &[u8],
    name_len: usize,
    sample: &Sample,
    obs: &mut O,
) {
    tables.stats.metrics += 1;
    obs.metric(&line[..name_len], b"", line, std::slice::from_ref(sample));
    if let Err(why) = tables.record_one(&line[..name_len], line, sample) {
        tables.stats.count_bad(why);
    }
}

#[cold]
#[inline(never)]
fn ingest_json_datagram<O: Observe + ?Sized>(
    tables: &mut Tables,
    datagram: &[u8],
    buf: &mut LineBuf,
    obs: &mut O,
) {
    for line in parse::lines(datagram) {
        ingest_mixed_line(tables, line, buf, obs);
    }
}

/// One datagram from a `json_udp` port: every line is a JSON message.
pub fn ingest_json_only<O: Observe + ?Sized>(
    tables: &mut Tables,
    datagram: &[u8],
    buf: &mut LineBuf,
    obs: &mut O,
) {
    tables.stats.packets += 1;
    tables.stats.bytes += datagram.len() as u64;
    for line in parse::lines(datagram) {
        ingest_json_line(tables, line, buf, obs);
    }
}

/// One line of a stream (TCP, Unix stream), without its `\n`: a trailing `\r` is stripped, an
/// empty line skipped, and the rest go to [`ingest_mixed_line`].
#[inline]
pub fn ingest_stream_line<O: Observe + ?Sized>(
    tables: &mut Tables,
    line: &[u8],
    buf: &mut LineBuf,
    obs: &mut O,
) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if !line.is_empty() {
        ingest_mixed_line(tables, line, buf, obs);
    }
}

/// One non-empty line of a stream or of a JSON datagram: a JSON message when it starts with
/// `{`, a statsd line otherwise.
#[inline]
pub fn ingest_mixed_line<O: Observe + ?Sized>(
    tables: &mut Tables,
    line: &[u8],
    buf: &mut LineBuf,
    obs: &mut O,
) {
    if line.first() == Some(&b'{') {
        ingest_json_line(tables, line, buf, obs);
    } else {
        ingest_line_observed(tables, line, buf, obs);
    }
}

/// Parses and records one pystatsd JSON message.
pub fn ingest_json_line<O: Observe + ?Sized>(
    tables: &mut Tables,
    line: &[u8],
    buf: &mut LineBuf,
    obs: &mut O,
) {
    tables.stats.metrics += 1;
    let json = &mut buf.json;
    match parse::parse_json(line, json) {
        Ok(sample) => {
            let samples = std::slice::from_ref(&sample);
            obs.metric(&json.name, &json.tags, &json.member, samples);
            if let Err(why) = tables.record(&json.name, &json.tags, &json.member, samples) {
                tables.stats.count_bad(why);
            }
        }
        Err(why) => tables.stats.count_bad(why),
    }
}

/// Counts a line dropped for being longer than `max_line_bytes` (streams).
pub fn count_too_long(tables: &mut Tables) {
    tables.stats.metrics += 1;
    tables.stats.count_bad(BadLine::LineTooLong);
}

/// Parses and records one line (no newline).
#[inline]
pub fn ingest_line(tables: &mut Tables, line: &[u8], buf: &mut LineBuf) {
    ingest_line_observed(tables, line, buf, &mut ());
}

/// [`ingest_line`], showing every parsed metric to `obs`.
#[inline]
pub fn ingest_line_observed<O: Observe + ?Sized>(
    tables: &mut Tables,
    line: &[u8],
    buf: &mut LineBuf,
    obs: &mut O,
) {
    if let Some((name_len, sample)) = parse::parse_simple(line) {
        return record_simple(tables, line, name_len, &sample, obs);
    }
    match parse::parse_line(line, buf) {
        Ok(Parsed::Metric { name, tags }) => {
            tables.stats.metrics += 1;
            for &why in &buf.bad {
                tables.stats.count_bad(why);
            }
            if !buf.samples.is_empty() {
                obs.metric(name, tags, line, &buf.samples);
                if let Err(why) = tables.record(name, tags, line, &buf.samples) {
                    tables.stats.count_bad(why);
                }
            }
        }
        Ok(Parsed::Event) => tables.stats.events += 1,
        Ok(Parsed::ServiceCheck) => tables.stats.service_checks += 1,
        Err(why) => {
            tables.stats.metrics += 1;
            tables.stats.count_bad(why);
        }
    }
}
