//! The figures every network sink reports (`stats.statsd.<name>Stats.*` through `Sink::meta`),
//! and the one list of reasons for giving points or records up. Totals since start, kept in
//! atomics: the flush thread (what serialization refused, what a full queue pushed out), the
//! sink's worker thread (answers) and, for the native Kafka sink, librdkafka's callbacks on its
//! polling thread all add to them without a lock; `meta` reads them on the flush thread.
//!
//! Two spellings of the same figures, which users' dashboards already know: the carbon-style
//! sinks (Graphite, Backstop) count points (`sent`, `retried`, `dropped_<reason>`, `queued_*`),
//! the Kafka sinks count records (`records_sent`, `records_retried`, `records_dropped.<reason>`,
//! `queue_*`). The meaning is one:
//! - `sent`: points (records) the peer took;
//! - `retried`: points (records) a failed attempt carried, sent again;
//! - `dropped`: points (records) given up, by reason; each reason shows once it is not zero;
//! - `last_flush` / `last_exception`: Unix seconds of the last delivery and of the last failure;
//! - `flush_time` / `flush_length`: the last flush delivered in full (or answered in full): ms
//!   from the flush thread queueing it to its last answer, and the bytes that carried it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// Why points or records were given up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// The queue went over `max_queue_bytes` (the oldest went), or librdkafka's queue was full.
    QueueFull,
    /// A plaintext line (or a pickle item) longer than carbon accepts.
    TooLong,
    /// A record over `max_record_bytes`, or one the peer says is too large and that cannot be
    /// split further.
    TooLarge,
    /// A value that is not a finite number (carbon ignores NaN, JSON has no infinity).
    BadValue,
    /// A name the peer cannot take (whitespace or control bytes in a plaintext line).
    BadName,
    /// HTTP 400 from Backstop: the payload was refused (never retried).
    BadRequest,
    /// HTTP 401 / 403, or a failed Kafka authorization or authentication.
    Unauthorized,
    /// HTTP 404 from Backstop (unknown prefix).
    NotFound,
    /// The Kafka topic does not exist (the proxy's 404 / 40401, the broker's unknown topic).
    UnknownTopic,
    /// HTTP 415 from the proxy.
    UnsupportedMediaType,
    /// HTTP 400 / 422 from the proxy.
    InvalidPayload,
    /// Any other proxy answer that retrying cannot fix.
    HttpError,
    /// A refusal retrying cannot fix: a per-record Kafka error, a 3xx or other 4xx from Backstop.
    Rejected,
    /// Not acknowledged within librdkafka's `message.timeout.ms`.
    Timeout,
    /// The native producer hit a fatal error; what it held went when a new one took over.
    Fatal,
    /// Still unsent when the shutdown deadline came.
    Shutdown,
}

impl Dropped {
    pub const ALL: [Dropped; 16] = [
        Dropped::QueueFull,
        Dropped::TooLong,
        Dropped::TooLarge,
        Dropped::BadValue,
        Dropped::BadName,
        Dropped::BadRequest,
        Dropped::Unauthorized,
        Dropped::NotFound,
        Dropped::UnknownTopic,
        Dropped::UnsupportedMediaType,
        Dropped::InvalidPayload,
        Dropped::HttpError,
        Dropped::Rejected,
        Dropped::Timeout,
        Dropped::Fatal,
        Dropped::Shutdown,
    ];

    /// The reason as logs name it.
    pub fn label(self) -> &'static str {
        self.keys().0
    }

    /// The meta stat in the points spelling (`dropped_<label>`).
    pub fn point_key(self) -> &'static str {
        self.keys().1
    }

    /// The meta stat in the records spelling (`records_dropped.<label>`).
    pub fn record_key(self) -> &'static str {
        self.keys().2
    }

    fn keys(self) -> (&'static str, &'static str, &'static str) {
        macro_rules! k {
            ($l:literal) => {
                ($l, concat!("dropped_", $l), concat!("records_dropped.", $l))
            };
        }
        match self {
            Dropped::QueueFull => k!("queue_full"),
            Dropped::TooLong => k!("too_long"),
            Dropped::TooLarge => k!("too_large"),
            Dropped::BadValue => k!("bad_value"),
            Dropped::BadName => k!("bad_name"),
            Dropped::BadRequest => k!("bad_request"),
            Dropped::Unauthorized => k!("unauthorized"),
            Dropped::NotFound => k!("not_found"),
            Dropped::UnknownTopic => k!("unknown_topic"),
            Dropped::UnsupportedMediaType => k!("unsupported_media_type"),
            Dropped::InvalidPayload => k!("invalid_payload"),
            Dropped::HttpError => k!("http_error"),
            Dropped::Rejected => k!("rejected"),
            Dropped::Timeout => k!("timeout"),
            Dropped::Fatal => k!("fatal"),
            Dropped::Shutdown => k!("shutdown"),
        }
    }
}

/// Which spelling a sink's figures use, and which of the optional ones it reports.
#[derive(Clone, Copy, Debug)]
pub struct Spelling {
    /// `records_*` (the Kafka sinks) rather than the points names (Graphite, Backstop).
    pub records: bool,
    /// `records_resent_after_timeout` and `requests` (the REST Proxy sink).
    pub requests: bool,
    /// `queue_payloads` / `queued_flushes`: the number of payloads queued (not for librdkafka's
    /// own queue).
    pub payloads: bool,
}

impl Spelling {
    /// Graphite, Backstop.
    pub const POINTS: Spelling = Spelling { records: false, requests: false, payloads: true };
    /// The Kafka REST Proxy sink.
    pub const REST: Spelling = Spelling { records: true, requests: true, payloads: true };
    /// The native Kafka sink.
    pub const NATIVE: Spelling = Spelling { records: true, requests: false, payloads: false };

    /// What the figures count, for messages.
    pub fn unit(self) -> &'static str {
        if self.records {
            "records"
        } else {
            "points"
        }
    }

    pub fn dropped_key(self, why: Dropped) -> &'static str {
        if self.records {
            why.record_key()
        } else {
            why.point_key()
        }
    }
}

/// Totals since start.
#[derive(Default)]
pub struct Figures {
    pub sent: AtomicU64,
    pub retried: AtomicU64,
    /// Records sent again after an attempt that carried them got no answer (it timed out, or
    /// the connection broke after the request went out): possible duplicates.
    pub resent_after_timeout: AtomicU64,
    /// Attempts made (requests sent, answered or not).
    pub requests: AtomicU64,
    pub dropped: [AtomicU64; Dropped::ALL.len()],
    pub last_flush: AtomicU64,
    pub last_exception: AtomicU64,
    /// f64 bits of ms.
    pub flush_time_ms: AtomicU64,
    pub flush_length: AtomicU64,
    /// Bytes queued and not yet answered (librdkafka's queue; the outbox reports its own).
    pub queue_bytes: AtomicU64,
}

impl Figures {
    /// Counts `n` given up for `why` (and the time of it, as the last failure).
    pub fn count_drop(&self, why: Dropped, n: u64) {
        if n > 0 {
            self.dropped[why as usize].fetch_add(n, Relaxed);
            self.failure();
        }
    }

    pub fn dropped(&self, why: Dropped) -> u64 {
        self.dropped[why as usize].load(Relaxed)
    }

    pub fn dropped_total(&self) -> u64 {
        Dropped::ALL.iter().map(|&w| self.dropped(w)).sum()
    }

    /// Something was delivered now.
    pub fn delivered(&self, n: u64) {
        self.sent.fetch_add(n, Relaxed);
        self.last_flush.store(unix_now(), Relaxed);
    }

    /// Something failed now.
    pub fn failure(&self) {
        self.last_exception.store(unix_now(), Relaxed);
    }

    /// A flush queued at `enqueued` had its last answer now, after `bytes` carried it.
    pub fn flush_done(&self, enqueued: Instant, bytes: u64) {
        self.flush_time_ms.store((enqueued.elapsed().as_secs_f64() * 1e3).to_bits(), Relaxed);
        self.flush_length.store(bytes, Relaxed);
    }

    /// Writes the figures as `Sink::meta` pairs; `queue` is (bytes, payloads) when the sink
    /// keeps its own queue, else `queue_bytes` is reported from the figures.
    pub fn meta(&self, s: Spelling, queue: Option<(u64, u64)>, write: &mut dyn FnMut(&'static str, f64)) {
        let r = s.records;
        write("last_flush", self.last_flush.load(Relaxed) as f64);
        write("last_exception", self.last_exception.load(Relaxed) as f64);
        write("flush_time", f64::from_bits(self.flush_time_ms.load(Relaxed)));
        write("flush_length", self.flush_length.load(Relaxed) as f64);
        write(if r { "records_sent" } else { "sent" }, self.sent.load(Relaxed) as f64);
        write(if r { "records_retried" } else { "retried" }, self.retried.load(Relaxed) as f64);
        if s.requests {
            write("records_resent_after_timeout", self.resent_after_timeout.load(Relaxed) as f64);
        }
        write(if r { "records_dropped" } else { "dropped" }, self.dropped_total() as f64);
        for why in Dropped::ALL {
            let n = self.dropped(why);
            if n > 0 {
                write(s.dropped_key(why), n as f64);
            }
        }
        if s.requests {
            write("requests", self.requests.load(Relaxed) as f64);
        }
        let (bytes, payloads) = queue.unwrap_or((self.queue_bytes.load(Relaxed), 0));
        write(if r { "queue_bytes" } else { "queued_bytes" }, bytes as f64);
        if s.payloads {
            write(if r { "queue_payloads" } else { "queued_flushes" }, payloads as f64);
        }
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(f: &Figures, s: Spelling) -> Vec<(&'static str, f64)> {
        let mut out = Vec::new();
        f.meta(s, Some((10, 2)), &mut |k, v| out.push((k, v)));
        out
    }

    #[test]
    fn both_spellings_carry_the_same_figures() {
        let f = Figures::default();
        f.delivered(7);
        f.retried.fetch_add(3, Relaxed);
        f.count_drop(Dropped::QueueFull, 2);
        f.count_drop(Dropped::Shutdown, 1);
        let points = meta(&f, Spelling::POINTS);
        let keys = |m: &[(&str, f64)]| m.iter().map(|p| p.0).collect::<Vec<_>>().join(" ");
        assert_eq!(
            keys(&points),
            "last_flush last_exception flush_time flush_length sent retried dropped dropped_queue_full \
             dropped_shutdown queued_bytes queued_flushes"
        );
        let rest = meta(&f, Spelling::REST);
        assert_eq!(
            keys(&rest),
            "last_flush last_exception flush_time flush_length records_sent records_retried \
             records_resent_after_timeout records_dropped records_dropped.queue_full \
             records_dropped.shutdown requests queue_bytes queue_payloads"
        );
        let values =
            |m: &[(&str, f64)]| m.iter().skip(4).map(|p| p.1).filter(|&v| v != 0.0).collect::<Vec<_>>();
        assert_eq!(values(&points), [7.0, 3.0, 3.0, 2.0, 1.0, 10.0, 2.0]);
        assert_eq!(values(&rest), values(&points));
        assert!(!meta(&f, Spelling::NATIVE).iter().any(|p| p.0 == "queue_payloads" || p.0 == "requests"));
        for why in Dropped::ALL {
            assert_eq!(why.point_key(), format!("dropped_{}", why.label()));
            assert_eq!(why.record_key(), format!("records_dropped.{}", why.label()));
            assert_eq!(Dropped::ALL[why as usize], why);
        }
    }
}
