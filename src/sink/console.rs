//! The console sink: the default when no other sink is configured, so the daemon runs with zero
//! set-up. Runs on the flush thread. `json` prints one object per flush, exactly the Kafka `flat`
//! record value; `text` prints Graphite plaintext lines (`name value timestamp`). Each flush is
//! rendered into one reused buffer that is written out whenever it holds [`CHUNK`] bytes, so the
//! sink keeps no per-series memory however many series a flush has.
//!
//! Its configuration, `[sinks.console]` and `--console`, is at the top: validated on the main
//! thread at start-up and on the reload thread at SIGHUP.

use super::{FlushReport, Sink, SinkError};
use crate::flush::{CounterNames, Naming, Snapshot};
use crate::fmt::{write_f64, write_json_str, write_u64};
use crate::settings::{err, ConfigError};
use std::io::Write;
use std::time::{Duration, Instant};

/// The console's buffer is written out each time it reaches this many bytes; it is allocated
/// with twice that, so that the entry which crosses it never makes it grow.
pub const CHUNK: usize = 32 << 10;

crate::section! {
    /// `[sinks.console]`, and its flag.
    pub struct ConsoleSection {
        /// Console sink: json, text or off [sinks.console.format; default json].
        #[arg(id = "CONSOLE", long = "console", env = "KSTATSD_CONSOLE")]
        pub format: Option<String>,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleFormat {
    Json,
    Text,
}

impl ConsoleFormat {
    /// Validates `[sinks.console]` with its flag laid over it; `None` is off. The console is the
    /// default sink only when no other sink is configured (`other_sinks`).
    pub fn validate(s: ConsoleSection, other_sinks: bool) -> Result<Option<ConsoleFormat>, ConfigError> {
        match s.format.as_deref() {
            None if other_sinks => Ok(None),
            None | Some("json") => Ok(Some(ConsoleFormat::Json)),
            Some("text") => Ok(Some(ConsoleFormat::Text)),
            Some("off") => Ok(None),
            Some(other) => err(format!("sinks.console.format: `{other}` is not json, text or off")),
        }
    }

    /// The `format` key that reads back to `format` (`None`: off).
    pub fn name(format: Option<ConsoleFormat>) -> &'static str {
        match format {
            Some(ConsoleFormat::Json) => "json",
            Some(ConsoleFormat::Text) => "text",
            None => "off",
        }
    }
}

pub struct Console {
    format: ConsoleFormat,
    counter_rates: bool,
    out: Box<dyn Write + Send>,
    buf: Vec<u8>,
    name: String,
}

impl Console {
    /// A console sink writing to stdout.
    pub fn stdout(format: ConsoleFormat, counter_rates: bool) -> Console {
        Console::new(format, counter_rates, Box::new(std::io::stdout()))
    }

    pub fn new(format: ConsoleFormat, counter_rates: bool, out: Box<dyn Write + Send>) -> Console {
        Console {
            format,
            counter_rates,
            out,
            buf: Vec::with_capacity(2 * CHUNK),
            name: String::with_capacity(256),
        }
    }
}

/// Renders the `flat` record value: `{"gauges":{…},"durationUnit":"milliseconds","clock":…,
/// "rateUnit":"seconds"}` (no trailing newline). Shared with the Kafka sink.
pub fn render_flat(
    snapshot: &Snapshot,
    naming: &Naming,
    which: CounterNames,
    name: &mut String,
    out: &mut Vec<u8>,
) {
    render_flat_spilling(snapshot, naming, which, name, out, &mut |_| {});
}

/// [`render_flat`], handing `out` to `spill` (which empties it) whenever it holds [`CHUNK`]
/// bytes.
fn render_flat_spilling<F: FnMut(&mut Vec<u8>)>(
    snapshot: &Snapshot,
    naming: &Naming,
    which: CounterNames,
    name: &mut String,
    out: &mut Vec<u8>,
    spill: &mut F,
) {
    out.extend_from_slice(b"{\"gauges\":{");
    let mut first = true;
    snapshot.for_each_flat(naming, which, name, &mut |n, v| {
        if !first {
            out.push(b',');
        }
        first = false;
        write_json_str(out, n);
        out.push(b':');
        write_f64(out, v);
        if out.len() >= CHUNK {
            spill(out);
        }
    });
    out.extend_from_slice(b"},\"durationUnit\":\"milliseconds\",\"clock\":");
    write_u64(out, snapshot.clock);
    out.extend_from_slice(b",\"rateUnit\":\"seconds\"}");
}

impl Sink for Console {
    fn name(&self) -> &'static str {
        "console"
    }

    fn flush(&mut self, snapshot: &Snapshot, naming: &Naming) -> Result<FlushReport, SinkError> {
        let started = Instant::now();
        self.buf.clear();
        let mut spill = Spill { out: &mut *self.out, bytes: 0, writing: Duration::ZERO, error: None };
        match self.format {
            ConsoleFormat::Json => {
                let which = CounterNames { rate: self.counter_rates, count: true };
                let write = &mut |b: &mut Vec<u8>| spill.write(b);
                render_flat_spilling(snapshot, naming, which, &mut self.name, &mut self.buf, write);
                self.buf.push(b'\n');
            }
            ConsoleFormat::Text => {
                let buf = &mut self.buf;
                let which = CounterNames { rate: true, count: true };
                snapshot.for_each_flat(naming, which, &mut self.name, &mut |n, v| {
                    buf.extend_from_slice(n.as_bytes());
                    buf.push(b' ');
                    write_f64(buf, v);
                    buf.push(b' ');
                    write_u64(buf, snapshot.clock);
                    buf.push(b'\n');
                    if buf.len() >= CHUNK {
                        spill.write(buf);
                    }
                });
            }
        }
        spill.write(&mut self.buf);
        let Spill { bytes, writing, error, .. } = spill;
        let calculation_ms = started.elapsed().saturating_sub(writing).as_secs_f64() * 1e3;
        if let Some(e) = error {
            return Err(e.into());
        }
        self.out.flush()?;
        Ok(FlushReport { bytes, calculation_ms })
    }
}

/// Where a flush's rendered chunks go: the output, with the bytes rendered, the time spent
/// writing (not part of `calculationtime`) and the first write error (nothing more is written
/// after it).
struct Spill<'a> {
    out: &'a mut dyn Write,
    bytes: u64,
    writing: Duration,
    error: Option<std::io::Error>,
}

impl Spill<'_> {
    /// Writes `buf` out and empties it.
    fn write(&mut self, buf: &mut Vec<u8>) {
        self.bytes += buf.len() as u64;
        if self.error.is_none() {
            let t = Instant::now();
            if let Err(e) = self.out.write_all(buf) {
                self.error = Some(e);
            }
            self.writing += t.elapsed();
        }
        buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flush::{AggregateConfig, FlushMeta, Flusher};
    use std::sync::{Arc, Mutex};

    /// A writer the test reads back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_flush_larger_than_a_chunk_is_written_whole_and_counted() {
        let aggregate = AggregateConfig::from_toml("").unwrap();
        let mut tables = crate::aggregate::Tables::new(aggregate.limits.clone());
        for i in 0..20_000 {
            tables.add_counter(&format!("some.series.name.k{i}"), i as f64);
        }
        let naming = Naming::new(&aggregate);
        let mut flusher = Flusher::new(aggregate.clone());
        let meta = FlushMeta { interval: 1.0, clock: 1_700_000_000, ..Default::default() };
        let snap = flusher.flush(&mut tables, &meta);
        for format in [ConsoleFormat::Json, ConsoleFormat::Text] {
            let out = Shared::default();
            let mut console = Console::new(format, true, Box::new(out.clone()));
            let report = console.flush(snap, &naming).unwrap();
            let written = out.0.lock().unwrap().clone();
            let mut expected = Vec::new();
            if format == ConsoleFormat::Json {
                let which = CounterNames { rate: true, count: true };
                render_flat(snap, &naming, which, &mut String::new(), &mut expected);
                expected.push(b'\n');
            } else {
                let which = CounterNames { rate: true, count: true };
                snap.for_each_flat(&naming, which, &mut String::new(), &mut |n, v| {
                    expected.extend_from_slice(format!("{n} ").as_bytes());
                    write_f64(&mut expected, v);
                    expected.extend_from_slice(b" 1700000000\n");
                });
            }
            assert!(expected.len() > 4 * CHUNK);
            assert!(written == expected, "{format:?}");
            assert_eq!(report.bytes, expected.len() as u64);
            assert!(console.buf.capacity() <= 2 * CHUNK, "{}", console.buf.capacity());
        }
    }
}
