//! The management port (etsy statsd's admin interface, `shared/spec/admin.md`): command parsing,
//! each client's bounded buffers, and the replies. Client handling and the replies that need only
//! the ingest thread's state (`help`, `health`, `config`, `quit`, errors) run on the ingest
//! thread; the ones that read or change the known series (`stats`, `stats json`, `counters`,
//! `timers`, `gauges`, `sets`, `del*`) are a [`Request`] sent to the flush thread, which owns that
//! state and answers with `answer_*` below, on its own thread. The client waits for the
//! [`Reply`] (its later commands stay buffered), the ingest loop does not: the reply arrives on a
//! channel and a `mio::Waker` tells the loop to pick it up.
//!
//! Every reply ends with `END\n\n`, as etsy's `stats` and listings do (etsy sends none after
//! `help`, `health` and errors; here every reply is framed the same way, so a client can always
//! read up to `END`).
//!
//! A client that never reads must not cost the daemon without bound. Its unsent output is
//! counted as replies are queued, and the client is disconnected (counted in
//! `admin_clients_dropped`, logged once per flush interval) as soon as a reply would take it past
//! [`OUTPUT_LIMIT`]. One reply, however long, is always accepted when nothing else is queued, so
//! a big listing can be read by a client that reads. The count is what the kernel has not taken
//! yet, and the kernel takes only a little: each admin connection's send buffer is fixed at
//! [`SEND_BUFFER`]. Left to autotuning, it grows to `net.ipv4.tcp_wmem`'s maximum (4 MiB on a
//! stock kernel) while the client does not read, so the point where the limit trips would depend
//! on the kernel's settings and on how fast the flush thread answers. A client that does not read
//! costs at most [`OUTPUT_LIMIT`] (or one longer reply) here and twice [`SEND_BUFFER`] in the
//! kernel, besides its own receive buffer. More than [`INPUT_LIMIT`] of input not yet answered
//! (a very long line, or commands piled up behind a question to the flush thread) disconnects
//! too, counted and logged the same way, and so does output that has not moved for
//! [`STALL_TIMEOUT`] (logged).

use crate::aggregate::IngestStats;
use crate::flush::Flusher;
use crate::fmt::{write_f64, write_json_str};
use crate::parse::{BadLine, Kind};
use std::io::{self, Write};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

/// Admin clients connected at once; more are refused.
pub const MAX_CLIENTS: usize = 64;
/// Input not yet answered (an unfinished line, or commands waiting behind a question).
pub const INPUT_LIMIT: usize = 64 << 10;
/// Pending output per client beyond which it is disconnected (see the module docs).
pub const OUTPUT_LIMIT: usize = 4 << 20;
/// `SO_SNDBUF` of every admin connection (the kernel doubles it for its bookkeeping). Fixed, so
/// that what the kernel takes off [`OUTPUT_LIMIT`]'s count stays small and the same everywhere.
pub const SEND_BUFFER: usize = 64 << 10;
/// A client whose pending output has not moved for this long is disconnected.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);

pub const END: &[u8] = b"END\n\n";

pub const HELP: &str =
    "Commands: stats, stats json, counters, timers, gauges, sets, delcounters, deltimers, \
delgauges, delsets, health, health up, health down, config, quit\n";

/// One command line.
#[derive(Debug, PartialEq)]
pub enum Command {
    Help,
    Stats {
        json: bool,
    },
    List(Kind),
    Delete {
        kind: Kind,
        patterns: Vec<String>,
    },
    /// `health` (None), `health up`, `health down`.
    Health(Option<bool>),
    Config,
    Quit,
    /// An empty line: no answer.
    Nothing,
    Unknown(String),
}

impl Command {
    pub fn parse(line: &[u8]) -> Command {
        let text = String::from_utf8_lossy(line);
        let mut words = text.split_whitespace();
        let Some(cmd) = words.next() else { return Command::Nothing };
        let rest: Vec<String> = words.map(String::from).collect();
        let kind = |k| {
            if rest.is_empty() {
                Command::Unknown(text.trim().into())
            } else {
                Command::Delete { kind: k, patterns: rest.clone() }
            }
        };
        match (cmd, rest.first().map(String::as_str)) {
            ("help", _) => Command::Help,
            ("stats", None) => Command::Stats { json: false },
            ("stats", Some("json")) => Command::Stats { json: true },
            ("counters", None) => Command::List(Kind::Counter),
            ("timers", None) => Command::List(Kind::Timer),
            ("gauges", None) => Command::List(Kind::Gauge),
            ("sets", None) => Command::List(Kind::Set),
            ("delcounters", _) => kind(Kind::Counter),
            ("deltimers", _) => kind(Kind::Timer),
            ("delgauges", _) => kind(Kind::Gauge),
            ("delsets", _) => kind(Kind::Set),
            ("health", None) => Command::Health(None),
            ("health", Some("up")) => Command::Health(Some(true)),
            ("health", Some("down")) => Command::Health(Some(false)),
            ("config", None) => Command::Config,
            ("quit", _) => Command::Quit,
            _ => Command::Unknown(text.trim().into()),
        }
    }

    /// Whether the command changes state (refused unless `admin_allow_mutations`).
    pub fn mutates(&self) -> bool {
        matches!(self, Command::Delete { .. } | Command::Health(Some(_)))
    }
}

/// One admin connection's buffers (ingest thread).
#[derive(Debug, Default)]
pub struct AdminClient {
    /// Received bytes not yet parsed as commands.
    pub input: Vec<u8>,
    output: Vec<u8>,
    sent: usize,
    /// A request is with the flush thread; later commands wait in `input`.
    pub waiting: bool,
    /// `quit` was received: close once the output is written.
    pub closing: bool,
    /// Since when the pending output has not moved (the socket is full and nothing went out).
    pub stalled_since: Option<std::time::Instant>,
    /// The connection's send buffer is set to [`SEND_BUFFER`] (done before its first reply).
    pub send_buffer_set: bool,
}

impl AdminClient {
    /// Queues a reply; false when the client is over its output limit and must be dropped.
    pub fn push(&mut self, reply: &[u8]) -> bool {
        let pending = self.output.len() - self.sent;
        if pending > 0 && pending + reply.len() > OUTPUT_LIMIT {
            return false;
        }
        if self.sent > 0 && self.sent == self.output.len() {
            self.output.clear();
            self.sent = 0;
        }
        self.output.extend_from_slice(reply);
        true
    }

    pub fn pending(&self) -> usize {
        self.output.len() - self.sent
    }

    /// Writes what the socket takes. Ok(true) when nothing is left. Keeps `stalled_since` up to
    /// date: set when output is left over, cleared whenever some of it went out.
    pub fn write_to(&mut self, w: &mut impl Write, now: std::time::Instant) -> io::Result<bool> {
        let before = self.sent;
        while self.sent < self.output.len() {
            match w.write(&self.output[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.sent > before {
                        self.stalled_since = None;
                    }
                    self.stalled_since.get_or_insert(now);
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.output.clear();
        self.sent = 0;
        self.stalled_since = None;
        Ok(true)
    }

    /// Takes the next complete command line out of `input`, if there is one.
    pub fn next_line(&mut self) -> Option<Vec<u8>> {
        let i = memchr::memchr(b'\n', &self.input)?;
        let line = self.input[..i].to_vec();
        self.input.drain(..=i);
        Some(line)
    }
}

/// The ingest thread's figures that go into `stats` (the current, unflushed interval and the
/// loop's own state).
#[derive(Clone, Debug, Default)]
pub struct LiveFigures {
    pub uptime_s: u64,
    /// Seconds since the last metric (etsy's `messages.last_msg_seen`).
    pub last_msg_seen_s: u64,
    pub interval: IngestStats,
    pub interval_series: usize,
    pub connections_open: usize,
    pub admin_clients: usize,
    pub overruns_pending: u64,
    pub healthy: bool,
}

/// What the flush thread is asked.
#[derive(Debug)]
pub enum Query {
    Stats { json: bool, live: Box<LiveFigures> },
    List(Kind),
    Delete { kind: Kind, patterns: Vec<String> },
}

/// A question for the flush thread, with the way back.
pub struct Request {
    /// The client's slot and its connection id (a slot is reused; the id is not).
    pub slot: usize,
    pub id: u64,
    pub query: Query,
    pub reply: Sender<Reply>,
    pub waker: Arc<mio::Waker>,
}

impl Request {
    /// Sends the answer back and wakes the ingest loop (flush thread).
    pub fn answer(self, text: Vec<u8>) {
        let _ = self.reply.send(Reply { slot: self.slot, id: self.id, text });
        let _ = self.waker.wake();
    }
}

pub struct Reply {
    pub slot: usize,
    pub id: u64,
    pub text: Vec<u8>,
}

/// What the flush thread knows for `stats`: totals of every flushed interval and its own state.
pub struct FlushFigures<'a> {
    pub totals: &'a IngestStats,
    pub kernel_drops: u64,
    pub overruns: u64,
    pub known_series: usize,
    /// `(sink, key, value)`: the sinks' figures; `last_*` keys are Unix times (0: never).
    pub sinks: &'a [(String, String, f64)],
    pub now_unix: u64,
}

/// `stats` / `stats json` (flush thread): etsy's lines first, then kstatsd's own.
pub fn answer_stats(live: &LiveFigures, f: &FlushFigures<'_>, json: bool) -> Vec<u8> {
    let mut all = IngestStats::default();
    all.add(f.totals);
    all.add(&live.interval);
    let mut lines: Vec<(String, Value)> = vec![
        ("uptime".into(), Value::N(live.uptime_s as f64)),
        ("messages.last_msg_seen".into(), Value::N(live.last_msg_seen_s as f64)),
        ("messages.bad_lines_seen".into(), Value::N(all.bad_total() as f64)),
    ];
    for (sink, key, v) in f.sinks {
        // etsy prints `last_*` as seconds since then (since start-up when it never happened).
        let v = if key.starts_with("last_") {
            if *v > 0.0 {
                f.now_unix.saturating_sub(*v as u64) as f64
            } else {
                live.uptime_s as f64
            }
        } else {
            *v
        };
        lines.push((format!("{sink}.{key}"), Value::N(v)));
    }
    let own: [(&str, u64); 22] = [
        ("packets_received", all.packets),
        ("metrics_received", all.metrics),
        ("bytes_received", all.bytes),
        ("events_received", all.events),
        ("service_checks_received", all.service_checks),
        ("kernel_drops", f.kernel_drops),
        ("flush_overruns", f.overruns + live.overruns_pending),
        ("series_known", f.known_series as u64),
        ("series_this_interval", live.interval_series as u64),
        ("connections_open", live.connections_open as u64),
        ("connections_opened", all.connections_opened),
        ("connections_refused", all.connections_refused),
        ("connections_timed_out", all.connections_timed_out),
        ("admin_clients", live.admin_clients as u64),
        ("admin_clients_dropped", all.admin_clients_dropped),
        ("config_reloads", all.config_reloads),
        ("config_reload_failures", all.config_reload_failures),
        ("debug_dump_dropped", all.debug_dump_dropped),
        ("packets_not_captured", all.packets_not_captured),
        ("timer_values_sketched", all.timer_values_sketched),
        ("memory_rss_bytes", rss_bytes()),
        ("healthy", u64::from(live.healthy)),
    ];
    for (k, v) in own {
        lines.push((format!("kstatsd.{k}"), Value::N(v as f64)));
    }
    for why in BadLine::ALL {
        lines.push((format!("kstatsd.bad_lines.{}", why.name()), Value::N(all.bad(why) as f64)));
    }
    lines.push(("kstatsd.health".into(), Value::S(if live.healthy { "up" } else { "down" })));
    let mut out = Vec::with_capacity(64 * lines.len());
    if json {
        out.push(b'{');
        for (i, (k, v)) in lines.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_json_str(&mut out, k);
            out.push(b':');
            match v {
                Value::N(x) => write_f64(&mut out, *x),
                Value::S(s) => write_json_str(&mut out, s),
            }
        }
        out.extend_from_slice(b"}\n");
    } else {
        for (k, v) in &lines {
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b": ");
            match v {
                Value::N(x) => write_f64(&mut out, *x),
                Value::S(s) => out.extend_from_slice(s.as_bytes()),
            }
            out.push(b'\n');
        }
    }
    out.extend_from_slice(END);
    out
}

enum Value {
    N(f64),
    S(&'static str),
}

/// `counters`, `timers`, `gauges`, `sets` (flush thread): one JSON object, key → value.
pub fn answer_list(flusher: &Flusher, kind: Kind) -> Vec<u8> {
    let mut out = vec![b'{'];
    let mut first = true;
    flusher.for_each_known(kind, &mut |key, v| {
        if !first {
            out.push(b',');
        }
        first = false;
        write_json_str(&mut out, key);
        out.push(b':');
        write_f64(&mut out, v);
    });
    out.extend_from_slice(b"}\n");
    out.extend_from_slice(END);
    out
}

/// `del<type>s <name…>` (flush thread), as etsy answers: `deleted: <key>` per deleted series,
/// `metric <name> not found` for a name that matched nothing.
pub fn answer_delete(flusher: &mut Flusher, kind: Kind, patterns: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in patterns {
        let n = flusher.delete_each(kind, p, &mut |key| {
            out.extend_from_slice(b"deleted: ");
            out.extend_from_slice(key.as_bytes());
            out.push(b'\n');
        });
        if n == 0 {
            out.extend_from_slice(format!("metric {p} not found\n").as_bytes());
        }
    }
    out.extend_from_slice(END);
    out
}

/// Resident memory of this process, from `/proc/self/statm` (0 if unreadable).
fn rss_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .unwrap_or(0);
    pages * 4096
}

/// A reply made of one line of text.
pub fn text_reply(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 8);
    out.extend_from_slice(text.as_bytes());
    if !text.ends_with('\n') {
        out.push(b'\n');
    }
    out.extend_from_slice(END);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(Command::parse(b"stats\r"), Command::Stats { json: false });
        assert_eq!(Command::parse(b"  stats json "), Command::Stats { json: true });
        assert_eq!(Command::parse(b"gauges"), Command::List(Kind::Gauge));
        assert_eq!(
            Command::parse(b"delcounters a.b api.*"),
            Command::Delete { kind: Kind::Counter, patterns: vec!["a.b".into(), "api.*".into()] }
        );
        assert!(matches!(Command::parse(b"delcounters"), Command::Unknown(_)));
        assert_eq!(Command::parse(b"health down"), Command::Health(Some(false)));
        assert_eq!(Command::parse(b""), Command::Nothing);
        assert!(matches!(Command::parse(b"stats foo"), Command::Unknown(_)));
        assert!(Command::parse(b"delsets x").mutates() && Command::parse(b"health up").mutates());
        assert!(!Command::parse(b"health").mutates());
    }

    #[test]
    fn output_is_bounded_but_one_reply_always_fits() {
        let mut c = AdminClient::default();
        assert!(c.push(&vec![b'x'; OUTPUT_LIMIT * 2]), "one big reply when nothing is pending");
        assert!(!c.push(b"more"), "anything after it while unread is over the limit");
        let mut sink = Vec::new();
        assert!(c.write_to(&mut sink, std::time::Instant::now()).unwrap());
        assert_eq!(c.pending(), 0);
        assert!(c.push(b"more"));
    }
}
