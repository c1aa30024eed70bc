//! The console sink: the default when no other sink is configured, so the daemon runs with zero
//! set-up. Runs on the flush thread. `json` prints one object per flush, exactly the Kafka `flat`
//! record value; `text` prints Graphite plaintext lines (`name value timestamp`). Each flush is
//! rendered into one reused buffer and written with a single `write_all`.
//!
//! Its configuration, `[sinks.console]` and `--console`, is at the top: validated on the main
//! thread at start-up and on the reload thread at SIGHUP.

use super::{FlushReport, Sink, SinkError};
use crate::flush::{CounterNames, Naming, Snapshot};
use crate::fmt::{write_f64, write_json_str, write_u64};
use crate::settings::{err, ConfigError};
use std::io::Write;
use std::time::Instant;

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
            buf: Vec::with_capacity(1 << 16),
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
        match self.format {
            ConsoleFormat::Json => {
                let which = CounterNames { rate: self.counter_rates, count: true };
                render_flat(snapshot, naming, which, &mut self.name, &mut self.buf);
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
                });
            }
        }
        let calculation_ms = started.elapsed().as_secs_f64() * 1e3;
        self.out.write_all(&self.buf)?;
        self.out.flush()?;
        Ok(FlushReport { bytes: self.buf.len() as u64, calculation_ms })
    }
}
