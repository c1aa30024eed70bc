//! The Graphite (carbon) sink: plaintext `name value timestamp\n` lines or pickle frames over
//! one long-lived TCP connection. What etsy statsd's graphite backend and the deviantART
//! pystatsd fork sent, under the same names ([`Snapshot::for_each_flat`] with both the counter
//! rate and count).
//!
//! Two threads. On the flush thread, [`Sink::flush`] only serializes the snapshot into a buffer
//! reused from flush to flush (numbers through `write_f64`, no per-series allocation) and queues
//! it in the [`Outbox`]. On the sink's own worker thread (`kstatsd-graphite`), [`Carbon`] keeps
//! the connection, writes each queued flush with `write_all`, and on any failure drops the
//! connection and lets the outbox retry the whole flush after a capped backoff. Carbon never
//! answers, so before each write the worker checks without blocking whether carbon has closed
//! the connection meanwhile (a restarted carbon), and reconnects instead of writing into a dead
//! socket. A flush that failed half-way is sent again in full: carbon stores a point per
//! (name, timestamp), so the repeated part overwrites itself with the same value.
//!
//! What carbon would refuse is dropped here and counted (`graphiteStats.dropped_*`): a plaintext
//! line longer than 16,384 bytes (carbon closes the connection on it), a name with whitespace
//! or control bytes (possible only with `sanitize_keys = false`; it would break the line), and
//! non-finite values (carbon ignores NaN). Pickle frames stay under carbon's 1 MiB limit
//! ([`super::pickle`]).

use super::outbox::{Batch, Deliver, Dropped, Limits, Outbox, Outcome};
use super::pickle::{FrameWriter, MAX_FRAME};
use super::{write_f64, write_u64, FlushReport, Sink, SinkError};
use crate::config::{GraphiteConfig, GraphiteProtocol};
use crate::flush::{CounterNames, Naming, Snapshot};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Longest plaintext line carbon takes (Twisted's `LineOnlyReceiver.MAX_LENGTH`); we count the
/// newline too, to stay clear of the edge.
pub const MAX_LINE: usize = 16_384;

pub struct Graphite {
    outbox: Outbox,
    protocol: GraphiteProtocol,
    frames: FrameWriter,
    name: String,
}

impl Graphite {
    /// Starts the worker thread; it connects on the first flush.
    pub fn start(config: &GraphiteConfig) -> io::Result<Graphite> {
        let limits = Limits {
            queue_bytes: config.max_queue_bytes,
            min_backoff: config.retry_backoff,
            max_backoff: config.retry_backoff_max,
        };
        let carbon = Carbon { address: config.address(), timeout: config.timeout, conn: None };
        log::info!(
            "graphite: sending {} to {}",
            match config.protocol {
                GraphiteProtocol::Plaintext => "plaintext",
                GraphiteProtocol::Pickle => "pickle",
            },
            carbon.address
        );
        Ok(Graphite {
            outbox: Outbox::start("graphite", limits, carbon)?,
            protocol: config.protocol,
            frames: FrameWriter::new(MAX_FRAME),
            name: String::with_capacity(256),
        })
    }

    /// The delivery figures (also what `meta` reports).
    pub fn figures(&self) -> super::outbox::Figures {
        self.outbox.figures()
    }
}

/// Counts of what one serialization kept and dropped.
#[derive(Default)]
struct Tally {
    points: u64,
    too_long: u64,
    bad_value: u64,
    bad_name: u64,
}

/// Whether `name` would break a plaintext line: carbon splits lines on any whitespace
/// (Python's `str.split()`, Unicode included).
fn breaks_line(name: &str) -> bool {
    name.is_empty()
        || name.bytes().any(|b| b <= b' ' || b == 0x7f)
        || (!name.is_ascii() && name.chars().any(char::is_whitespace))
}

/// Appends every point of `snapshot` as plaintext lines.
fn render_plaintext(
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
fn render_pickle(
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

impl Sink for Graphite {
    fn name(&self) -> &'static str {
        "graphite"
    }

    fn flush(&mut self, snapshot: &Snapshot, naming: &Naming) -> Result<FlushReport, SinkError> {
        let started = Instant::now();
        let mut buf = self.outbox.buffer();
        let mut tally = Tally::default();
        match self.protocol {
            GraphiteProtocol::Plaintext => {
                render_plaintext(snapshot, naming, &mut self.name, &mut buf, &mut tally)
            }
            GraphiteProtocol::Pickle => {
                render_pickle(snapshot, naming, &mut self.name, &mut self.frames, &mut buf, &mut tally)
            }
        }
        self.outbox.count_drop(Dropped::TooLong, tally.too_long);
        self.outbox.count_drop(Dropped::BadValue, tally.bad_value);
        self.outbox.count_drop(Dropped::BadName, tally.bad_name);
        let bytes = buf.len() as u64;
        if buf.is_empty() {
            self.outbox.recycle(buf);
        } else {
            self.outbox.push(Batch { bytes: buf, points: tally.points });
        }
        Ok(FlushReport { bytes, calculation_ms: started.elapsed().as_secs_f64() * 1e3 })
    }

    fn meta(&self, write: &mut dyn FnMut(&'static str, f64)) {
        self.outbox.meta(write);
    }

    fn shutdown(&mut self, deadline: Instant) -> Result<(), SinkError> {
        self.outbox.shutdown(deadline)
    }
}

/// The connection to carbon; lives on the worker thread.
struct Carbon {
    address: String,
    timeout: Duration,
    conn: Option<TcpStream>,
}

/// Whether carbon has closed (or reset) the connection. Carbon never writes to us, so a
/// readable socket means EOF or an error; a would-block read means it is still open.
fn peer_closed(conn: &TcpStream) -> bool {
    if conn.set_nonblocking(true).is_err() {
        return true;
    }
    let mut scratch = [0u8; 64];
    let closed = match (&*conn).read(&mut scratch) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    };
    closed || conn.set_nonblocking(false).is_err()
}

fn connect(address: &str, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = None;
    for addr in address.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address")))
}

impl Deliver for Carbon {
    fn deliver(&mut self, batch: &Batch, deadline: Option<Instant>) -> Outcome {
        let timeout = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()).min(self.timeout),
            None => self.timeout,
        };
        if timeout.is_zero() {
            return Outcome::Retry { error: "shutdown deadline reached".into(), after: None };
        }
        if self.conn.as_ref().is_some_and(peer_closed) {
            log::debug!("graphite: carbon at {} closed the connection; reconnecting", self.address);
            self.conn = None;
        }
        if self.conn.is_none() {
            match connect(&self.address, timeout) {
                Ok(c) => {
                    log::debug!("graphite: connected to {}", self.address);
                    self.conn = Some(c);
                }
                Err(e) => {
                    return Outcome::Retry {
                        error: format!("cannot connect to {}: {e}", self.address),
                        after: None,
                    }
                }
            }
        }
        let conn = self.conn.as_mut().expect("connected above");
        let result = conn.set_write_timeout(Some(timeout)).and_then(|()| conn.write_all(&batch.bytes));
        match result {
            Ok(()) => Outcome::Delivered,
            Err(e) => {
                self.conn = None;
                Outcome::Retry { error: format!("writing to {}: {e}", self.address), after: None }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Tables;
    use crate::config::{parse_file, Config, Overrides};
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
        let config =
            Config::build(parse_file(&format!("[aggregate]\n{aggregate}")).unwrap(), &Overrides::default())
                .unwrap();
        let naming = Naming::new(&config.aggregate);
        let mut flusher = Flusher::new(config.aggregate.clone());
        let mut tables = Tables::new(config.aggregate.limits.clone());
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
