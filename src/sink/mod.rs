//! Sinks: where each flush goes. The [`Sink`] trait carries etsy statsd's three backend hooks
//! (`flush`, `status`, raw `packet`); every sink runs on the flush thread, reads the immutable
//! [`Snapshot`], and must bound its own retries so that it never delays the others for long.
//! This file also holds the number and string writers that every serializer shares.

pub mod backstop;
pub mod console;
pub mod graphite;
pub mod http;
pub mod kafka;
pub mod kafka_rest;
pub mod outbox;
pub mod pickle;
pub mod prometheus;

pub use http::{retry_after, tls};

pub use console::Console;

use crate::flush::{Naming, Snapshot};
use std::fmt;
use std::time::Instant;

/// What a successful flush wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FlushReport {
    /// Bytes written (`flush_length`).
    pub bytes: u64,
    /// Time spent serializing, ms (`calculationtime`).
    pub calculation_ms: f64,
}

/// A sink failure: what happened, for the log, the meta stats and the failure hook.
#[derive(Debug)]
pub enum SinkError {
    Io(std::io::Error),
    Other(String),
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkError::Io(e) => write!(f, "i/o error: {e}"),
            SinkError::Other(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for SinkError {}

impl From<std::io::Error> for SinkError {
    fn from(e: std::io::Error) -> Self {
        SinkError::Io(e)
    }
}

pub trait Sink: Send {
    /// Short name; meta stats go under `<name>Stats` (`consoleStats`, `kafkaStats`, …).
    fn name(&self) -> &'static str;

    /// Ships one flush. Called on the flush thread once per interval.
    fn flush(&mut self, snapshot: &Snapshot, naming: &Naming) -> Result<FlushReport, SinkError>;

    /// Reports the sink's own figures (etsy's `status` event), e.g. for the admin `stats`.
    /// By default the same figures as [`Sink::meta`].
    fn status(&self, write: &mut dyn FnMut(&str, f64)) {
        self.meta(&mut |k, v| write(k, v));
    }

    /// Figures for the meta stats, emitted as `stats.statsd.<name>Stats.<key>` in every flush
    /// (queue depth, records sent / retried / dropped, …). A sink that delivers on its own
    /// thread also reports `last_flush`, `last_exception`, `flush_time`, `flush_length` here:
    /// those then replace the flush thread's measurement of `flush()` (which only enqueued).
    fn meta(&self, _write: &mut dyn FnMut(&'static str, f64)) {}

    /// Whether this sink wants every raw datagram (etsy's `packet` event). Off by default: when
    /// no sink wants them, the ingest thread captures nothing.
    fn wants_packets(&self) -> bool {
        false
    }

    /// One raw datagram of the interval being flushed, delivered before `flush`.
    fn packet(&mut self, _datagram: &[u8]) {}

    /// Whether the sink stays when a reload replaces the configured sinks: the Prometheus
    /// sink does (it is tied to the HTTP listener, which a reload does not rebind).
    fn survives_reload(&self) -> bool {
        false
    }

    /// Called once after the last flush: finish or give up by `deadline`.
    fn shutdown(&mut self, _deadline: Instant) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Appends `v` as a JSON/Graphite number: integers without a fraction, others in the shortest
/// form that reads back to the same f64 (ryu). Never goes through `format!`.
#[inline]
pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        out.extend_from_slice(itoa::Buffer::new().format(v as i64).as_bytes());
    } else if v.is_finite() {
        out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Appends an unsigned integer.
#[inline]
pub fn write_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Appends `s` as a JSON string literal (quotes, backslashes and control bytes escaped).
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 15) as usize]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(v: f64) -> String {
        let mut out = Vec::new();
        write_f64(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn numbers_read_back_exactly() {
        assert_eq!(num(12.0), "12");
        assert_eq!(num(-5.0), "-5");
        assert_eq!(num(-0.0), "0");
        assert_eq!(num(861.6666666666666), "861.6666666666666");
        assert_eq!(num(0.07500000000000001), "0.07500000000000001");
        assert_eq!(num(f64::NAN), "null");
        let mut x: u64 = 88172645463325252;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x);
            if v.is_finite() {
                assert_eq!(num(v).parse::<f64>().unwrap(), v);
            }
        }
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut out = Vec::new();
        write_json_str(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(String::from_utf8(out).unwrap(), "\"a\\\"b\\\\c\\nd\\u0001é\"");
    }
}
