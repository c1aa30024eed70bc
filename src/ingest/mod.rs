//! The one ingest path: every datagram (UDP, Unix datagram, a `json_udp` port) and every read of
//! a stream connection (TCP, Unix stream) goes through here into the active tables. Runs on the
//! ingest thread.
//!
//! Each concern has one place. A datagram or a stream read is counted (packets, bytes) in
//! `count_packet`; text is cut into lines in `lines_in`; a line goes to the statsd parser or the
//! pystatsd JSON parser in `line`, by the format of its input (`Lines`). The rest is how the
//! pieces arrive: [`datagrams`] for the datagrams of one `recvmmsg` call and [`datagram`] for
//! one (cut by the kernel or not), [`stream_bytes`]
//! and [`stream_end`] for what a stream connection brings, which its framer cuts into lines,
//! frames and pieces dropped for their length. [`statsd_line`] and [`stream_line`] take one line
//! on its own (tests and fuzz targets compare them with the in-place reading). The debug dump,
//! which sees every parsed metric when it is on, is [`dump`].
//!
//! Hot path essay. A statsd datagram with the debug dump off is the common case, and
//! [`datagrams`] keeps it apart: one branch picks it, and it runs `lines_in` with the statsd
//! format and the observer `()` known at compile time, so the fast line parser and the table
//! lookup inline into one loop. Everything else (the dump on, a truncated datagram, JSON) is one
//! cold call away: inlined next to the normal path, the observed loop doubled the loop's size
//! and LLVM stopped inlining the table lookups into it (+17 % instructions per line in
//! `examples/profile_ingest`, which measures [`datagrams`]). With large tables the fast path's
//! lookups are batched; see `Batch`.

pub mod dump;

use crate::aggregate::Tables;
use crate::net::framing::{self, Framed, StreamFramer};
use crate::parse::{self, BadLine, LineBuf, Parsed, Sample, Simple};
use dump::DebugDump;

/// Sees every metric as it is parsed, before it is recorded: the debug dump ([`dump`]). `()`
/// sees nothing and compiles away, so the unobserved path is exactly the plain one.
trait Observe {
    /// `name` and `tags` are raw (as received); set members are ranges into `line`.
    fn metric(&mut self, name: &[u8], tags: &[u8], line: &[u8], samples: &[Sample]);
}

impl Observe for () {
    #[inline(always)]
    fn metric(&mut self, _: &[u8], _: &[u8], _: &[u8], _: &[Sample]) {}
}

/// What a datagram holds, by the input it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A statsd port: statsd lines, or pystatsd JSON messages between statsd lines when the
    /// datagram starts with `{`.
    Statsd,
    /// A `json_udp` port: every line is a pystatsd JSON message.
    Json,
}

/// How each line of one piece of input is parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lines {
    /// Statsd lines only (a line that starts with `{` is a bad statsd line).
    Statsd,
    /// A JSON message when the line starts with `{`, a statsd line otherwise.
    Mixed,
    /// JSON messages only.
    Json,
}

/// Counts one datagram or stream read and its bytes.
#[inline(always)]
fn count_packet(tables: &mut Tables, len: usize) {
    tables.stats.packets += 1;
    tables.stats.bytes += len as u64;
}

/// Parses and records one received datagram. `truncated`: the kernel cut it at the receive
/// buffer's size (its complete lines still count, the cut tail is one bad line,
/// `truncated_datagram`). `dump` sees every parsed metric when it is on.
#[inline(always)]
pub fn datagram(
    tables: &mut Tables,
    bytes: &[u8],
    format: Format,
    truncated: bool,
    buf: &mut LineBuf,
    dump: &mut Option<DebugDump>,
) {
    let mut batch = Batch::default();
    batched_datagram(tables, &mut batch, bytes, format, truncated, buf, dump);
    batch.record(tables, &mut ());
}

/// Parses and records received datagrams (`(bytes, truncated)`, a `recvmmsg` batch) in order,
/// each as [`datagram`] does, with the fast path's lookups batched across them.
#[inline(always)]
pub fn datagrams<'a>(
    tables: &mut Tables,
    datagrams: impl IntoIterator<Item = (&'a [u8], bool)>,
    format: Format,
    buf: &mut LineBuf,
    dump: &mut Option<DebugDump>,
) {
    let mut batch = Batch::default();
    for (bytes, truncated) in datagrams {
        batched_datagram(tables, &mut batch, bytes, format, truncated, buf, dump);
    }
    batch.record(tables, &mut ());
}

/// One datagram of [`datagrams`]: its fast-path lines may wait in `batch` (see [`lines_in`]).
#[inline(always)]
fn batched_datagram<'a>(
    tables: &mut Tables,
    batch: &mut Batch<'a>,
    bytes: &'a [u8],
    format: Format,
    truncated: bool,
    buf: &mut LineBuf,
    dump: &mut Option<DebugDump>,
) {
    count_packet(tables, bytes.len());
    if dump.is_none() && !truncated && format == Format::Statsd && bytes.first() != Some(&b'{') {
        match tables.raw_keys() > BATCH_FROM {
            true => lines_in::<true, ()>(tables, batch, bytes, Lines::Statsd, buf, &mut ()),
            false => lines_in::<false, ()>(tables, batch, bytes, Lines::Statsd, buf, &mut ()),
        }
    } else {
        batch.record(tables, &mut ());
        unusual_datagram(tables, bytes, format, truncated, buf, dump);
    }
}

/// Every other datagram: the dump on, cut by the kernel, or JSON.
#[cold]
#[inline(never)]
fn unusual_datagram(
    tables: &mut Tables,
    bytes: &[u8],
    format: Format,
    truncated: bool,
    buf: &mut LineBuf,
    dump: &mut Option<DebugDump>,
) {
    let style = match format {
        Format::Json => Lines::Json,
        Format::Statsd if bytes.first() == Some(&b'{') => Lines::Mixed,
        Format::Statsd => Lines::Statsd,
    };
    match dump {
        Some(d) => piece(tables, bytes, style, truncated, buf, d),
        None => piece(tables, bytes, style, truncated, buf, &mut ()),
    }
}

/// The lines of `text`; when `truncated`, only its complete lines, and the cut tail counted as
/// one bad line.
fn piece<O: Observe + ?Sized>(
    tables: &mut Tables,
    text: &[u8],
    style: Lines,
    truncated: bool,
    buf: &mut LineBuf,
    obs: &mut O,
) {
    if !truncated {
        return lines(tables, text, style, buf, obs);
    }
    let complete = memchr::memrchr(b'\n', text).map_or(0, |i| i + 1);
    lines(tables, &text[..complete], style, buf, obs);
    count_bad_piece(tables, BadLine::Truncated);
}

/// Parses and records every line of `text`, one by one ([`lines_in`] without a batch).
#[inline(always)]
fn lines<O: Observe + ?Sized>(
    tables: &mut Tables,
    text: &[u8],
    style: Lines,
    buf: &mut LineBuf,
    obs: &mut O,
) {
    lines_in::<false, O>(tables, &mut Batch::default(), text, style, buf, obs)
}

/// Parses and records every line of `text`: split at `\n`, a trailing `\r` stripped, empty lines
/// skipped. A statsd line of the fast path's shape tells where it ends as it is parsed
/// ([`parse::parse_simple_prefix`]); any other is cut at the next `\n`. `BATCHED`: the fast
/// path's lines wait in `batch` (used once the tables hold more than [`BATCH_FROM`] raw keys),
/// and any other line first records the batch before it.
#[inline(always)]
fn lines_in<'a, const BATCHED: bool, O: Observe + ?Sized>(
    tables: &mut Tables,
    batch: &mut Batch<'a>,
    text: &'a [u8],
    style: Lines,
    buf: &mut LineBuf,
    obs: &mut O,
) {
    let mut start = 0;
    while let Some(rest) = text.get(start..).filter(|r| !r.is_empty()) {
        let statsd = match style {
            Lines::Statsd => true,
            Lines::Mixed => rest[0] != b'{',
            Lines::Json => false,
        };
        if statsd {
            if let Some(simple) = parse::parse_simple_prefix(rest) {
                let line = &rest[..simple.len];
                if BATCHED {
                    batch.push(tables, line, simple);
                    if batch.len == BATCH {
                        batch.record(tables, obs);
                    }
                } else {
                    record_simple(tables, line, &simple, key_hash(tables, line, &simple), obs);
                }
                start += simple.len + 1;
                continue;
            }
        }
        batch.record(tables, obs);
        let len = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        let line = rest[..len].strip_suffix(b"\r").unwrap_or(&rest[..len]);
        if !line.is_empty() {
            self::line(tables, line, style, buf, obs);
        }
        start += len + 1;
    }
}

/// Raw keys in the tables past which lookups are batched: about where the index and the keys
/// outgrow a core's L2 cache. Below it a batch only costs (the realistic mix at 1 k keys: 510
/// instructions per line one by one, 574 batched).
const BATCH_FROM: usize = 16_384;

/// Lines the fast path read, at most this many, are hashed first and looked up after.
const BATCH: usize = 16;

/// Lines that the fast path read and hashed, from one or more datagrams, waiting to be looked up
/// and recorded.
///
/// Hot path essay. With 100 k keys the tables do not fit in the cache, and a lookup waits on
/// up to three dependent misses (the index slot, the key's bytes, the accumulator). Parsed one
/// line at a time, each line's misses queue behind the previous line's, because a line's parse
/// and hash (a few hundred instructions) fill the CPU's reorder window before the next lookup
/// starts. Here the lines of a batch are parsed and hashed first, each line's index slot is
/// prefetched as soon as its hash is known ([`Tables::prefetch`]), and the lookups then run back
/// to back, so that the misses of sixteen lines are in flight together. A batch spans the
/// datagrams of one `recvmmsg` call ([`datagrams`]), so one-line datagrams gain too. Order is
/// kept: a line the fast path cannot read, or a datagram it does not take, records the batch
/// before it.
struct Batch<'a> {
    len: usize,
    lines: [Pending<'a>; BATCH],
}

/// One line of a [`Batch`]: its text, what the fast path read, and its raw key's hash.
#[derive(Clone, Copy)]
struct Pending<'a> {
    line: &'a [u8],
    simple: Simple,
    hash: u64,
}

impl Default for Batch<'_> {
    fn default() -> Self {
        let sample =
            Sample { kind: parse::Kind::Counter, value: parse::SampleValue::Number(0.0), weight: 1.0 };
        let pending =
            Pending { line: &[], simple: Simple { name_len: 0, tags: (0, 0), sample, len: 0 }, hash: 0 };
        Batch { len: 0, lines: [pending; BATCH] }
    }
}

impl<'a> Batch<'a> {
    /// Hashes one line the fast path read, starts fetching its index slot, and adds it to the
    /// batch, which must have room.
    #[inline(always)]
    fn push(&mut self, tables: &Tables, line: &'a [u8], simple: Simple) {
        let hash = key_hash(tables, line, &simple);
        tables.prefetch(hash);
        self.lines[self.len] = Pending { line, simple, hash };
        self.len += 1;
    }

    /// Counts and records every waiting line, in order, and empties the batch.
    #[inline(always)]
    fn record<O: Observe + ?Sized>(&mut self, tables: &mut Tables, obs: &mut O) {
        for p in &self.lines[..self.len] {
            record_simple(tables, p.line, &p.simple, p.hash, obs);
        }
        self.len = 0;
    }
}

/// One non-empty line, `\r` stripped, by the format of its input.
#[inline]
fn line<O: Observe + ?Sized>(tables: &mut Tables, line: &[u8], style: Lines, buf: &mut LineBuf, obs: &mut O) {
    match style {
        Lines::Mixed if line.first() == Some(&b'{') => json(tables, line, buf, obs),
        Lines::Json => json(tables, line, buf, obs),
        _ => statsd(tables, line, buf, obs),
    }
}

/// The hash of the raw key of a line the fast path read; an untagged line's leaves the tags out
/// at compile time.
#[inline(always)]
fn key_hash(tables: &Tables, line: &[u8], simple: &Simple) -> u64 {
    let (name, tags) = simple.name_tags(line);
    match tags.is_empty() {
        true => tables.key_hash(simple.sample.kind, name, b""),
        false => tables.key_hash(simple.sample.kind, name, tags),
    }
}

/// Counts and records one line the fast path read, whose raw key's hash is `hash`.
#[inline(always)]
fn record_simple<O: Observe + ?Sized>(
    tables: &mut Tables,
    line: &[u8],
    simple: &Simple,
    hash: u64,
    obs: &mut O,
) {
    tables.stats.metrics += 1;
    let (name, tags) = simple.name_tags(line);
    obs.metric(name, tags, line, std::slice::from_ref(&simple.sample));
    // an untagged line's lookup compares no tags at all
    let recorded = match tags.is_empty() {
        true => tables.record_hashed(hash, name, b"", line, &simple.sample),
        false => tables.record_hashed(hash, name, tags, line, &simple.sample),
    };
    if let Err(why) = recorded {
        tables.stats.count_bad(why);
    }
}

/// Parses and records one statsd line: the fast path's shape first, then the full parser.
#[inline]
fn statsd<O: Observe + ?Sized>(tables: &mut Tables, line: &[u8], buf: &mut LineBuf, obs: &mut O) {
    if let Some(simple) = parse::parse_simple(line) {
        let hash = key_hash(tables, line, &simple);
        return record_simple(tables, line, &simple, hash, obs);
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

/// Parses and records one pystatsd JSON message.
fn json<O: Observe + ?Sized>(tables: &mut Tables, line: &[u8], buf: &mut LineBuf, obs: &mut O) {
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

/// A line or frame dropped whole (over its length limit, or cut by the end of its stream).
#[cold]
fn count_bad_piece(tables: &mut Tables, why: BadLine) {
    tables.stats.metrics += 1;
    tables.stats.count_bad(why);
}

/// One read of a stream connection: counted as a packet, then cut by the connection's framer,
/// whose complete pieces are parsed and recorded (an unfinished tail waits in the framer).
pub fn stream_bytes(
    tables: &mut Tables,
    framer: &mut StreamFramer,
    bytes: &[u8],
    limits: framing::FrameLimits,
    buf: &mut LineBuf,
    dump: &mut Option<DebugDump>,
) {
    count_packet(tables, bytes.len());
    match dump {
        Some(d) => framer.feed(bytes, limits, &mut |f: Framed<'_>| stream_piece(tables, f, buf, d)),
        None => framer.feed(bytes, limits, &mut |f: Framed<'_>| stream_piece(tables, f, buf, &mut ())),
    }
}

/// The end of a stream connection: what its framer still holds.
pub fn stream_end(
    tables: &mut Tables,
    framer: &mut StreamFramer,
    limits: framing::FrameLimits,
    buf: &mut LineBuf,
    dump: &mut Option<DebugDump>,
) {
    match dump {
        Some(d) => framer.finish(limits, &mut |f: Framed<'_>| stream_piece(tables, f, buf, d)),
        None => framer.finish(limits, &mut |f: Framed<'_>| stream_piece(tables, f, buf, &mut ())),
    }
}

/// One framed piece of a stream: a line, a frame's payload (lines, as in a datagram), or a piece
/// dropped for its length. Frame errors are counted under the reasons of their datagram and line
/// counterparts: a frame longer than `max_datagram` as `line_too_long`, a connection closed
/// inside a frame as `truncated_datagram`.
#[inline]
fn stream_piece<O: Observe + ?Sized>(tables: &mut Tables, f: Framed<'_>, buf: &mut LineBuf, obs: &mut O) {
    match f {
        Framed::Line(l) => stream_line_observed(tables, l, buf, obs),
        Framed::Frame(payload) => lines(tables, payload, Lines::Mixed, buf, obs),
        Framed::TruncatedFrame(part) => piece(tables, part, Lines::Mixed, true, buf, obs),
        Framed::TooLong | Framed::FrameTooLong => count_bad_piece(tables, BadLine::LineTooLong),
    }
}

/// Parses and records one line of a stream (without its `\n`): a trailing `\r` is stripped, an
/// empty line skipped; a line that starts with `{` is a pystatsd JSON message.
pub fn stream_line(tables: &mut Tables, line: &[u8], buf: &mut LineBuf) {
    stream_line_observed(tables, line, buf, &mut ());
}

/// Parses and records one line of a statsd datagram (without its `\n`) on its own, as
/// [`datagram`] does in place: a trailing `\r` is stripped, an empty line skipped.
pub fn statsd_line(tables: &mut Tables, line: &[u8], buf: &mut LineBuf) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if !line.is_empty() {
        statsd(tables, line, buf, &mut ());
    }
}

#[inline]
fn stream_line_observed<O: Observe + ?Sized>(tables: &mut Tables, l: &[u8], buf: &mut LineBuf, obs: &mut O) {
    let l = l.strip_suffix(b"\r").unwrap_or(l);
    if !l.is_empty() {
        line(tables, l, Lines::Mixed, buf, obs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Limits;
    use crate::net::framing::Framing;
    use crate::parse::Kind;

    fn counter(t: &Tables, key: &str) -> Option<f64> {
        t.series().find(|s| s.kind == Kind::Counter && s.key == key).map(|s| t.counters[s.slot])
    }

    fn fed(bytes: &[u8], format: Format, truncated: bool) -> Tables {
        let mut t = Tables::new(Limits::default());
        datagram(&mut t, bytes, format, truncated, &mut LineBuf::default(), &mut None);
        t
    }

    #[test]
    fn a_statsd_datagram_counts_once_per_packet_byte_and_line() {
        let t = fed(b"a:1|c\r\n\nb:x|c\n_sc|c|0\na:2|c|@0.5\n{\"metric_name\":\"j\"}", Format::Statsd, false);
        assert_eq!((t.stats.packets, t.stats.bytes), (1, 52));
        assert_eq!((t.stats.metrics, t.stats.service_checks, t.stats.bad_total()), (4, 1, 2));
        assert_eq!(counter(&t, "a"), Some(5.0));
    }

    #[test]
    fn json_lines_are_read_on_a_json_port_and_in_a_datagram_that_starts_with_a_brace() {
        let j = br#"{"metric_name":"j","metric_type":"counter","value":2}"#;
        let mixed = [&j[..], b"\na:1|c\n", j].concat();
        let t = fed(&mixed, Format::Statsd, false);
        assert_eq!((counter(&t, "j"), counter(&t, "a"), t.stats.bad_total()), (Some(4.0), Some(1.0), 0));
        let t = fed(&mixed, Format::Json, false);
        assert_eq!((counter(&t, "j"), counter(&t, "a")), (Some(4.0), None));
        assert_eq!(t.stats.bad(BadLine::InvalidJson), 1, "a statsd line on a JSON port");
        let t = fed(&[&b"a:1|c\n"[..], j].concat(), Format::Statsd, false);
        assert_eq!(counter(&t, "j"), None, "JSON after a statsd first line is a bad statsd line");
    }

    #[test]
    fn a_truncated_datagram_keeps_its_complete_lines_and_counts_the_cut_tail_once() {
        let t = fed(b"a:1|c\nb:2|c\nc:3", Format::Statsd, true);
        assert_eq!((counter(&t, "a"), counter(&t, "b"), counter(&t, "c")), (Some(1.0), Some(2.0), None));
        assert_eq!((t.stats.metrics, t.stats.bad(BadLine::Truncated), t.stats.packets), (3, 1, 1));
    }

    #[test]
    fn stream_reads_count_as_packets_and_their_lines_and_frames_are_recorded() {
        let limits = framing::FrameLimits { max_line: 16, max_frame: 32 };
        let (mut t, mut buf) = (Tables::new(Limits::default()), LineBuf::default());
        let mut lines = StreamFramer::new(Framing::Newline);
        stream_bytes(&mut t, &mut lines, b"a:1|c\r\nb:", limits, &mut buf, &mut None);
        stream_bytes(&mut t, &mut lines, b"2|c\nx:1111111111111111|c\nc:3|c", limits, &mut buf, &mut None);
        stream_end(&mut t, &mut lines, limits, &mut buf, &mut None);
        assert_eq!((counter(&t, "a"), counter(&t, "b"), counter(&t, "c")), (Some(1.0), Some(2.0), Some(3.0)));
        assert_eq!((t.stats.packets, t.stats.metrics, t.stats.bad(BadLine::LineTooLong)), (2, 4, 1));
        let mut frames = StreamFramer::new(Framing::LengthPrefix);
        let mut bytes = 12u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"d:1|c\ne:2|c\n");
        bytes.extend_from_slice(&20u32.to_le_bytes());
        bytes.extend_from_slice(b"f:1|c\ng:");
        stream_bytes(&mut t, &mut frames, &bytes, limits, &mut buf, &mut None);
        stream_end(&mut t, &mut frames, limits, &mut buf, &mut None);
        assert_eq!((counter(&t, "e"), counter(&t, "f"), counter(&t, "g")), (Some(2.0), Some(1.0), None));
        assert_eq!(t.stats.bad(BadLine::Truncated), 1, "a stream closed inside a frame");
    }

    #[test]
    fn one_line_on_its_own_reads_as_in_a_datagram() {
        let (mut t, mut buf) = (Tables::new(Limits::default()), LineBuf::default());
        statsd_line(&mut t, b"a:1|c\r", &mut buf);
        statsd_line(&mut t, b"", &mut buf);
        stream_line(&mut t, br#"{"metric_name":"j","metric_type":"counter","value":2}"#, &mut buf);
        assert_eq!((counter(&t, "a"), counter(&t, "j"), t.stats.metrics), (Some(1.0), Some(2.0), 2));
    }
}
