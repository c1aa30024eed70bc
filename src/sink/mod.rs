//! Sinks: where each flush goes. The [`Sink`] trait carries etsy statsd's three backend hooks
//! (`flush`, `status`, raw `packet`); every sink runs on the flush thread, reads the immutable
//! [`Snapshot`], and must bound its own retries so that it never delays the others for long.

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
use backstop::BackstopConfig;
use console::ConsoleFormat;
use graphite::GraphiteConfig;
use kafka_rest::KafkaRestConfig;
use std::fmt;
use std::time::{Duration, Instant};

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

/// The sink sections of a configuration, borrowed: what [`start_all`] builds the sinks from. The
/// last three options are `[aggregate]`'s, which every sink is built with.
#[derive(Clone, Copy)]
pub struct Sections<'a> {
    pub console: Option<ConsoleFormat>,
    pub graphite: Option<&'a GraphiteConfig>,
    pub backstop: Option<&'a BackstopConfig>,
    pub kafka_rest: Option<&'a KafkaRestConfig>,
    pub kafka: Option<&'a kafka::KafkaConfig>,
    /// Counters also go out as per-second rates.
    pub counter_rates: bool,
    /// Where the daemon's own figures are named (`statsd`).
    pub meta_prefix: &'a str,
    /// The flush interval (the native Kafka sink logs one failure per interval at most).
    pub flush_interval: Duration,
}

/// Starts every sink the sections ask for (the network sinks start their worker threads here),
/// at start-up on the main thread and at a reload on the `kstatsd-reload` thread. The
/// Prometheus sink is not among them: it comes with the HTTP listener, which outlives reloads.
pub fn start_all(s: &Sections<'_>) -> std::io::Result<Vec<Box<dyn Sink>>> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if let Some(format) = s.console {
        sinks.push(Box::new(Console::stdout(format, s.counter_rates)));
    }
    if let Some(g) = s.graphite {
        sinks.push(Box::new(graphite::Graphite::start(g)?));
    }
    if let Some(b) = s.backstop {
        sinks.push(Box::new(backstop::Backstop::start(b)?));
    }
    if let Some(k) = s.kafka_rest {
        sinks.push(Box::new(kafka_rest::KafkaRest::new(k, s.counter_rates, s.meta_prefix)?));
    }
    #[cfg(feature = "kafka")]
    if let Some(k) = s.kafka {
        let native = kafka::KafkaNative::new(k, s.counter_rates, s.meta_prefix, s.flush_interval)?;
        sinks.push(Box::new(native));
    }
    #[cfg(not(feature = "kafka"))]
    if s.kafka.is_some() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "[sinks.kafka]: this kstatsd was built without the native Kafka sink (cargo feature `kafka`)",
        ));
    }
    Ok(sinks)
}
