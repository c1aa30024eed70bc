//! The debug dump (`-d`/`--debug-dump [REGEX]`, the deviantART pystatsd fork's `-d`): every
//! parsed metric whose raw name matches is printed to stderr as it arrives, one line per sample:
//!
//! ```text
//! debug-dump: api.req c 2 @0.5 #env:prod
//! ```
//!
//! (name, type `c`/`g`/`ms`/`s`, the value as recorded — a counter already scaled by its rate,
//! a gauge delta with its sign, a set's member — then the sample rate and the raw tags when there
//! are any.)
//!
//! Matching and formatting run on the ingest thread, inside the parse (see
//! [`super::Observe`]); writing runs on a `kstatsd-dump` thread, because the ingest
//! thread must never wait on stderr. The two share a bounded buffer (1 MiB): when the writer
//! falls behind, lines are dropped and counted (`statsd.debug_dump_dropped`), never queued
//! without bound. When the dump is off the ingest loop takes the unobserved path, whose
//! observer is `()`: the only cost is one predictable branch per datagram (README, "Debug dump").

use super::Observe;
use crate::parse::{Kind, Sample, SampleValue};
use regex::bytes::Regex;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};

/// Bound on formatted lines not yet written to stderr.
const BUFFER: usize = 1 << 20;

struct Shared {
    state: Mutex<State>,
    ready: Condvar,
}

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    closed: bool,
}

/// The ingest thread's side of the dump.
pub struct DebugDump {
    regex: Regex,
    line: Vec<u8>,
    dropped: u64,
    shared: Arc<Shared>,
}

impl DebugDump {
    /// Starts the writer thread. `pattern` is a regex over the raw metric name (empty: all).
    pub fn start(pattern: &str) -> std::io::Result<DebugDump> {
        let regex = Regex::new(pattern)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), ready: Condvar::new() });
        let writer = Arc::clone(&shared);
        std::thread::Builder::new().name("kstatsd-dump".into()).spawn(move || write_loop(&writer))?;
        Ok(DebugDump { regex, line: Vec::with_capacity(256), dropped: 0, shared })
    }

    /// Lines dropped since the last call.
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }
}

impl Drop for DebugDump {
    fn drop(&mut self) {
        if let Ok(mut st) = self.shared.state.lock() {
            st.closed = true;
        }
        self.shared.ready.notify_one();
    }
}

impl Observe for DebugDump {
    fn metric(&mut self, name: &[u8], tags: &[u8], line: &[u8], samples: &[Sample]) {
        if !self.regex.is_match(name) {
            return;
        }
        let out = &mut self.line;
        out.clear();
        for s in samples {
            out.extend_from_slice(b"debug-dump: ");
            out.extend_from_slice(name);
            out.extend_from_slice(match s.kind {
                Kind::Counter => b" c ",
                Kind::Gauge => b" g ",
                Kind::Timer => b" ms ",
                Kind::Set => b" s ",
            });
            match s.value {
                SampleValue::Number(v) => crate::fmt::write_f64(out, v),
                SampleValue::Delta(d) => {
                    if d >= 0.0 {
                        out.push(b'+');
                    }
                    crate::fmt::write_f64(out, d);
                }
                SampleValue::Member { start, end } => {
                    out.extend_from_slice(line.get(start as usize..end as usize).unwrap_or(b""))
                }
            }
            if s.weight != 1.0 {
                out.extend_from_slice(b" @");
                crate::fmt::write_f64(out, 1.0 / s.weight);
            }
            if !tags.is_empty() {
                out.extend_from_slice(b" #");
                out.extend_from_slice(tags);
            }
            out.push(b'\n');
        }
        let Ok(mut st) = self.shared.state.lock() else { return };
        if st.pending.len() + out.len() > BUFFER {
            self.dropped += samples.len() as u64;
            return;
        }
        st.pending.extend_from_slice(out);
        drop(st);
        self.shared.ready.notify_one();
    }
}

/// The writer thread: takes whatever is pending and writes it to stderr, until closed.
fn write_loop(shared: &Shared) {
    let mut local = Vec::new();
    loop {
        {
            let Ok(mut st) = shared.state.lock() else { return };
            while st.pending.is_empty() && !st.closed {
                st = match shared.ready.wait(st) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            }
            if st.pending.is_empty() {
                return;
            }
            std::mem::swap(&mut st.pending, &mut local);
        }
        let _ = std::io::stderr().lock().write_all(&local);
        local.clear();
    }
}
