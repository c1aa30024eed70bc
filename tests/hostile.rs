//! Hostile input, cardinality floods and kernel drops, against the real `kstatsd` binary over
//! real sockets. A million datagrams from a fixed-seed generator written
//! here — lines of every bad class whose reason is known, random bytes, mutated lines, valid
//! lines mixed in — are paced into the live daemon so that the kernel drops none (checked in
//! /proc/net/udp): the process survives and exits 0 on SIGTERM, every valid line is counted
//! exactly, and every bad line under the reason it was built for. Then the edges: names at and
//! over `max_name_bytes`, 65,507-byte datagrams, NUL bytes, invalid UTF-8 (sanitized and not),
//! 1 MiB lines over TCP and 10,000 concurrent TCP connections (the daemon raises its own open
//! files limit). A cardinality flood of 10⁶ distinct names and 10⁶ set members over UDP (and
//! 10⁷ of each in-process through the library) keeps the daemon's peak RSS under a bound derived
//! from `max_series`/`max_set_members`, drops and counts exactly what is over the limits, and
//! keeps the series that existed before the flood exact; spread over many short intervals, it
//! also keeps the series remembered for idle reporting within `max_series`. Last, a socket
//! overflowed on purpose (SIGSTOP, burst, SIGCONT): the drops the kernel reports for it equal the
//! `kernel_drops` meta counter and the admin `stats` figure. Each test runs its own daemon on
//! ephemeral ports; runs on the test's thread plus the harness's reader threads.

mod common;

use common::{Daemon, Flush};
use kstatsd::aggregate::{Limits, Tables};
use kstatsd::ingest::{self, Format};
use kstatsd::parse::{BadLine, LineBuf};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

// ---- a fixed-seed generator ----

/// xorshift64*: fast, deterministic, good enough to pick bytes and branches.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    /// `[a-z][a-z0-9.]{0,len-1}`: a name that cannot start an event, a service check or JSON.
    fn name(&mut self, out: &mut Vec<u8>, len: usize) {
        const FIRST: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
        const REST: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789.";
        out.push(*self.pick(FIRST));
        for _ in 1..len {
            out.push(*self.pick(REST));
        }
    }
}

// ---- the daemon's socket as the kernel sees it ----

/// One row of /proc/net/udp.
#[derive(Debug, Clone, Copy)]
struct SockRow {
    /// Bytes queued for the reader (`sk_rmem_alloc`: datagrams' true size).
    rx_queue: u64,
    drops: u64,
    inode: u64,
}

/// The row of the IPv4 UDP socket bound to `addr` (127.0.0.1:port).
///
/// The kernel does not hold the table still while it is read: when other tests close sockets
/// meanwhile, one read can miss a row that exists. So a missing row is read again a few times.
fn udp_row(addr: SocketAddr) -> SockRow {
    let want = format!("0100007F:{:04X}", addr.port());
    for _ in 0..20 {
        let table = std::fs::read_to_string("/proc/net/udp").unwrap();
        for row in table.lines().skip(1) {
            let cols: Vec<&str> = row.split_whitespace().collect();
            if cols.get(1) == Some(&want.as_str()) {
                let rx = cols[4].split(':').nth(1).unwrap();
                return SockRow {
                    rx_queue: u64::from_str_radix(rx, 16).unwrap(),
                    drops: cols.last().unwrap().parse().unwrap(),
                    inode: cols[9].parse().unwrap(),
                };
            }
        }
    }
    panic!("no /proc/net/udp row for {addr} in 20 reads");
}

/// The receive buffer the daemon logged for its UDP socket (what the kernel granted).
fn granted_buffer(d: &Daemon) -> u64 {
    let line = d.startup_log.iter().find(|l| l.contains("udp listening on")).unwrap();
    let n = line.split("(receive buffer ").nth(1).unwrap().split(' ').next().unwrap();
    n.parse().unwrap()
}

/// Sends datagrams to the daemon no faster than it reads them: after every slice of about an
/// eighth of its receive buffer (counting each datagram at twice its size plus 1 KiB, more than
/// the kernel books for it), waits until the socket's queue is below half the buffer. The queue
/// can then never fill, so the kernel drops nothing; `finish` checks that it did not.
/// Waiting polls /proc (there is no event for "the peer read its socket").
struct Pacer {
    tx: UdpSocket,
    to: SocketAddr,
    slice: u64,
    high: u64,
    pending: u64,
    sent: u64,
}

impl Pacer {
    fn new(d: &Daemon) -> Pacer {
        let buffer = granted_buffer(d);
        assert!(buffer >= 1 << 20, "a receive buffer of {buffer} bytes is too small to pace into");
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        Pacer { tx, to: d.udp, slice: buffer / 8, high: buffer / 2, pending: 0, sent: 0 }
    }

    fn send(&mut self, datagram: &[u8]) {
        if self.pending >= self.slice {
            self.wait_below(self.high);
            self.pending = 0;
        }
        self.tx.send_to(datagram, self.to).unwrap();
        self.pending += 2 * datagram.len() as u64 + 1024;
        self.sent += 1;
    }

    fn wait_below(&self, limit: u64) {
        let deadline = Instant::now() + WAIT;
        while udp_row(self.to).rx_queue > limit {
            assert!(Instant::now() < deadline, "the daemon stopped reading its socket");
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Waits until the daemon has read everything; asserts the kernel dropped nothing.
    fn finish(&self) {
        self.wait_below(0);
        let row = udp_row(self.to);
        assert_eq!(row.drops, 0, "the kernel dropped datagrams despite the pacing: {row:?}");
    }
}

// ---- reading the results ----

/// Adds every flush into one map.
fn sum_flushes(flushes: &[Flush]) -> BTreeMap<String, f64> {
    let mut sums = BTreeMap::new();
    for f in flushes {
        for (k, v) in f {
            *sums.entry(k.clone()).or_insert(0.0) += v;
        }
    }
    sums
}

fn get(s: &BTreeMap<String, f64>, name: &str) -> f64 {
    s.get(name).copied().unwrap_or(0.0)
}

/// Takes the daemon's stderr so that it can be read after `terminate`.
fn take_stderr(d: &mut Daemon) -> Receiver<String> {
    std::mem::replace(&mut d.stderr, std::sync::mpsc::channel().1)
}

/// SIGTERM: the daemon must exit 0, without a panic on stderr; returns the sum of every flush
/// not read yet.
fn terminate_cleanly(mut d: Daemon) -> BTreeMap<String, f64> {
    let pid = d.child.id();
    assert!(std::fs::metadata(format!("/proc/{pid}")).is_ok(), "the daemon is gone");
    let stderr = take_stderr(&mut d);
    let (status, flushes) = d.terminate(WAIT);
    let log: Vec<String> = stderr.iter().collect();
    assert!(!log.iter().any(|l| l.contains("panicked")), "the daemon panicked: {log:#?}");
    assert!(status.success(), "exit status {status:?}; stderr: {log:#?}");
    sum_flushes(&flushes)
}

/// Sums flushes until every `want` name reached its value (panics after `WAIT`).
fn sums_until(d: &Daemon, want: &[(&str, f64)]) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + WAIT;
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    loop {
        if want.iter().all(|(n, v)| get(&sums, n) >= *v) {
            return sums;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "never reached {want:?}; got {:?}", relevant(&sums, want));
        for (k, v) in d.next_flush(left) {
            *sums.entry(k).or_default() += v;
        }
    }
}

fn relevant(sums: &BTreeMap<String, f64>, want: &[(&str, f64)]) -> Vec<(String, f64)> {
    want.iter().map(|(n, _)| (n.to_string(), get(sums, n))).collect()
}

/// Every bad-line reason counter of a flush sum, non-zero ones only.
fn reasons(s: &BTreeMap<String, f64>) -> BTreeMap<&'static str, f64> {
    BadLine::ALL
        .iter()
        .map(|b| (b.name(), get(s, &format!("stats_counts.statsd.bad_lines.{}", b.name()))))
        .filter(|(_, v)| *v != 0.0)
        .collect()
}

/// Lines of a datagram as the daemon splits them (`\n`, one trailing `\r` off, empties skipped).
fn count_lines(datagram: &[u8]) -> u64 {
    datagram.split(|&b| b == b'\n').filter(|l| !l.strip_suffix(b"\r").unwrap_or(l).is_empty()).count() as u64
}

/// One kB-ish field of /proc/PID/status (`VmRSS`, `VmHWM`), in bytes.
fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(&format!("{field}:"))).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

// ---- what the valid lines add up to ----

/// The expected sums of the valid lines mixed into the hostile traffic (names under `hv.`).
#[derive(Default)]
struct Valid {
    counters: BTreeMap<String, f64>,
    timer_count: f64,
    members: BTreeSet<u64>,
    gauge: Option<u64>,
}

impl Valid {
    /// Appends one valid line (no newline) of a random kind and records what it adds.
    fn line(&mut self, r: &mut Rng, out: &mut Vec<u8>) {
        let v = 1 + r.below(100);
        match r.below(10) {
            0..=3 => {
                let k = r.below(64);
                write!(out, "hv.c{k}:{v}|c").unwrap();
                *self.counters.entry(format!("hv.c{k}")).or_default() += v as f64;
            }
            4 => {
                write!(out, "hv.r:{v}|c|@0.5").unwrap();
                *self.counters.entry("hv.r".into()).or_default() += 2.0 * v as f64;
            }
            5 => {
                let az = r.below(3);
                write!(out, "hv.tag:{v}|c|#env:prod,az:{az}").unwrap();
                *self.counters.entry(format!("hv.tag;az={az};env=prod")).or_default() += v as f64;
            }
            6 | 7 => {
                write!(out, "hv.t:{v}|ms").unwrap();
                self.timer_count += 1.0;
            }
            8 => {
                let m = r.below(500);
                write!(out, "hv.s:m{m}|s").unwrap();
                self.members.insert(m);
            }
            _ => {
                write!(out, "hv.g:{v}|g").unwrap();
                self.gauge = Some(v);
            }
        }
    }

    /// Every series at least once: they exist before any hostile line arrives.
    fn warm_up(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for k in 0..64 {
            out.push(format!("hv.c{k}:1|c").into_bytes());
            *self.counters.entry(format!("hv.c{k}")).or_default() += 1.0;
        }
        out.push(b"hv.r:1|c|@0.5".to_vec());
        *self.counters.entry("hv.r".into()).or_default() += 2.0;
        for az in 0..3 {
            out.push(format!("hv.tag:1|c|#env:prod,az:{az}").into_bytes());
            *self.counters.entry(format!("hv.tag;az={az};env=prod")).or_default() += 1.0;
        }
        out.push(b"hv.t:1|ms".to_vec());
        self.timer_count += 1.0;
        let members: Vec<String> = (0..500).map(|m| format!("hv.s:m{m}|s")).collect();
        out.push(members.join("\n").into_bytes());
        self.members.extend(0..500);
        out.push(b"hv.g:1|g".to_vec());
        self.gauge = Some(1);
        out
    }

    /// Compares with a flush sum: exact, series by series.
    fn check(&self, s: &BTreeMap<String, f64>) {
        for (name, want) in &self.counters {
            assert_eq!(get(s, &format!("stats_counts.{name}")), *want, "{name}");
        }
        assert_eq!(get(s, "stats.timers.hv.t.count"), self.timer_count, "hv.t count");
        assert_eq!(get(s, "stats.sets.hv.s.count"), self.members.len() as f64, "hv.s members");
        if let Some(g) = self.gauge {
            assert_eq!(get(s, "stats.gauges.hv.g"), g as f64, "hv.g: the last value sent");
        }
    }
}

// ---- 4. hostile input ----

/// A bad line built so that the daemon must count exactly one `reason` for it.
fn bad_line(r: &mut Rng, class: usize, out: &mut Vec<u8>) -> &'static str {
    let n = 1 + r.below(20) as usize;
    let v = 1 + r.below(1000);
    match class {
        0 => {
            r.name(out, n);
            "no_value"
        }
        1 => {
            write!(out, ":{v}|c").unwrap();
            "empty_name"
        }
        2 => {
            r.name(out, n);
            write!(out, ":{v}").unwrap();
            "no_type"
        }
        3 => {
            r.name(out, n);
            let t = r.pick(&["x", "cc", "mss", "gg", "q", "hd", "z"]);
            write!(out, ":{v}|{t}").unwrap();
            "unknown_type"
        }
        4 => {
            r.name(out, n);
            let (value, t) = *r.pick(&[("abc", "c"), ("nan", "g"), ("inf", "ms"), ("0x10", "c"), ("", "c")]);
            write!(out, ":{value}|{t}").unwrap();
            "bad_value"
        }
        5 => {
            r.name(out, n);
            write!(out, ":-{v}|ms").unwrap();
            "negative_timer"
        }
        6 => {
            r.name(out, n);
            let rate = r.pick(&["0", "-0.5", "abc"]);
            write!(out, ":{v}|c|@{rate}").unwrap();
            "bad_sample_rate"
        }
        7 => {
            r.name(out, n);
            let t = r.pick(&["now", "x1", "12ab"]);
            write!(out, ":{v}|c|T{t}").unwrap();
            "bad_timestamp"
        }
        8 => {
            r.name(out, n);
            write!(out, ":{v}|c|#a:1|#b:2").unwrap();
            "duplicate_tags"
        }
        9 => {
            // The title is one byte longer than announced.
            write!(out, "_e{{{n},4}}:").unwrap();
            r.name(out, n + 1);
            out.extend_from_slice(b"|text");
            "bad_event"
        }
        10 => {
            r.name(out, n);
            let bytes: [&[u8]; 4] = [b"\xff", b"\xc3\x28", b"\xe2\x82", b"\xf0\x9f\x98"];
            let i = r.below(bytes.len() as u64) as usize;
            out.extend_from_slice(bytes[i]);
            write!(out, ":{v}|c").unwrap();
            "invalid_utf8"
        }
        11 => {
            // max_name_bytes is 64.
            let len = 65 + r.below(200) as usize;
            r.name(out, len);
            write!(out, ":{v}|c").unwrap();
            "name_too_long"
        }
        _ => {
            // max_tags is 4.
            r.name(out, n);
            write!(out, ":{v}|c|#a:1,b,c:3,d,e:5").unwrap();
            "too_many_tags"
        }
    }
}

const BAD_CLASSES: u64 = 13;

/// 500,000 datagrams of 1–12 lines each, every line valid or of a known bad class, plus
/// pystatsd JSON datagrams with bad messages: each reason is counted exactly as often as it was
/// injected, every valid line is counted, nothing is dropped, the daemon exits 0.
#[test]
fn known_bad_lines_are_counted_by_reason_exactly_among_valid_ones() {
    const DATAGRAMS: u64 = 500_000;
    let d = Daemon::start(&[
        "--flush-interval",
        "1h",
        "--recv-buffer",
        "32MiB",
        "--max-name-bytes",
        "64",
        "--max-tags",
        "4",
        "--sanitize-keys",
        "false",
    ]);
    let mut pacer = Pacer::new(&d);
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    let mut valid = Valid::default();
    let mut want: BTreeMap<&'static str, f64> = BTreeMap::new();
    let mut metrics = 0u64;
    for dg in valid.warm_up() {
        metrics += count_lines(&dg);
        pacer.send(&dg);
    }
    let mut dg = Vec::with_capacity(2048);
    let mut json_count = 0.0;
    for _ in 0..DATAGRAMS {
        dg.clear();
        if r.below(50) == 0 {
            // pystatsd JSON: a datagram that starts with `{`; statsd lines may follow.
            let msgs: [(&[u8], Option<&'static str>); 4] = [
                (br#"{"metric_name":"hv.json","metric_type":"counter","count":2}"#, None),
                (br#"{"metric_type":"counter","count":1}"#, Some("missing_field")),
                (br#"{"metric_name":"x","metric_type":"counter","#, Some("invalid_json")),
                (br#"{"metric_name":"x","metric_type":"histo","value":1}"#, Some("unknown_type")),
            ];
            for i in 0..1 + r.below(6) {
                let (m, why) = if i == 0 { msgs[0] } else { *r.pick(&msgs) };
                dg.extend_from_slice(m);
                dg.push(b'\n');
                match why {
                    Some(w) => *want.entry(w).or_default() += 1.0,
                    None => json_count += 2.0,
                }
                metrics += 1;
            }
            valid.line(&mut r, &mut dg);
            metrics += 1;
        } else {
            for i in 0..1 + r.below(12) {
                if i > 0 {
                    dg.extend_from_slice(if r.below(8) == 0 { b"\r\n" } else { b"\n" });
                }
                if r.below(16) == 0 {
                    dg.push(b'\n'); // an empty line, skipped
                }
                if r.below(2) == 0 {
                    valid.line(&mut r, &mut dg);
                    metrics += 1;
                } else {
                    let class = r.below(BAD_CLASSES) as usize;
                    let why = bad_line(&mut r, class, &mut dg);
                    *want.entry(why).or_default() += 1.0;
                    metrics += 1; // a bad line (a bad event too) is a metric line received
                }
            }
        }
        pacer.send(&dg);
    }
    pacer.finish();
    let sent = pacer.sent;
    let s = terminate_cleanly(d);
    valid.check(&s);
    assert_eq!(get(&s, "stats_counts.hv.json"), json_count, "JSON counters among bad messages");
    assert_eq!(reasons(&s), want, "bad lines by reason");
    let bad_total: f64 = want.values().sum();
    assert_eq!(get(&s, "stats_counts.statsd.bad_lines_seen"), bad_total);
    assert_eq!(get(&s, "stats_counts.statsd.metrics_received"), metrics as f64);
    assert_eq!(get(&s, "stats_counts.statsd.events_received"), 0.0);
    assert_eq!(get(&s, "stats_counts.statsd.packets_received"), sent as f64);
    assert_eq!(get(&s, "stats_counts.statsd.kernel_drops"), 0.0);
    eprintln!("sent {sent} datagrams, {metrics} lines, {bad_total} bad");
}

/// Mutates `dg` in place 1–4 times: flip, insert, delete, duplicate a run, or insert a byte
/// that means something to the parser.
fn mutate(r: &mut Rng, dg: &mut Vec<u8>) {
    const SPECIAL: &[u8] = b":|@#,\n\r{}\"\0e.-+_ ";
    for _ in 0..1 + r.below(4) {
        let at = r.below(dg.len() as u64 + 1) as usize;
        match r.below(5) {
            0 if at < dg.len() => dg[at] = r.next() as u8,
            1 => dg.insert(at, r.next() as u8),
            2 if at < dg.len() => {
                dg.remove(at);
            }
            3 if at < dg.len() => {
                let end = (at + 1 + r.below(16) as usize).min(dg.len());
                let run = dg[at..end].to_vec();
                dg.splice(at..at, run);
            }
            _ => dg.insert(at, *r.pick(SPECIAL)),
        }
    }
}

/// A datagram of well-formed lines of every kind (names under `zm.`) for `mutate` to break.
fn mutable_base(r: &mut Rng, out: &mut Vec<u8>) {
    for i in 0..1 + r.below(6) {
        if i > 0 {
            out.push(b'\n');
        }
        let k = r.below(16);
        let v = r.below(1000);
        let line = match r.below(9) {
            0 => format!("zm.c{k}:{v}|c|@0.25"),
            1 => format!("zm.t{k}:{v}.5:{v}|ms|#env:prod,az:{}", k % 3),
            2 => format!("zm.g{k}:-{v}|g"),
            3 => format!("zm.s{k}:u{v}|s"),
            4 => format!("zm.h{k}:{v}|h|@0.5|#a|c:abc|T1700000000"),
            5 => format!("_e{{4,5}}:zm.e|text{k}|#x:y"),
            6 => format!("_sc|zm.sc{k}|0|#x:y"),
            7 => format!(r#"{{"metric_name":"zm.j{k}","metric_type":"timer","value":{v},"host":"a"}}"#),
            _ => format!("zm.c{k}:{v}|c"),
        };
        out.extend_from_slice(line.as_bytes());
    }
}

/// 500,000 datagrams: random bytes (NUL, `\r`, invalid UTF-8, up to 64 KiB), mutated valid
/// datagrams, and valid lines before, after and between them. No panic; every valid line counted
/// exactly; every line accounted for (metrics + events + service checks = lines sent); the
/// per-reason counters add up to `bad_lines_seen`; nothing dropped.
#[test]
fn random_and_mutated_datagrams_never_hurt_and_every_line_is_accounted_for() {
    const DATAGRAMS: u64 = 500_000;
    let d = Daemon::start(&[
        "--flush-interval",
        "1h",
        "--recv-buffer",
        "32MiB",
        "--max-series",
        "50000",
        "--max-set-members",
        "100000",
    ]);
    let mut pacer = Pacer::new(&d);
    let mut r = Rng(0xD1B5_4A32_D192_ED03);
    let mut valid = Valid::default();
    let mut lines = 0u64;
    for dg in valid.warm_up() {
        lines += count_lines(&dg);
        pacer.send(&dg);
    }
    let mut dg = Vec::with_capacity(70_000);
    for i in 0..DATAGRAMS {
        dg.clear();
        if i % 10_000 == 9_999 {
            // The largest datagram loopback carries, random bytes with a valid line at the end.
            while dg.len() < 65_507 - 40 {
                dg.push(r.next() as u8);
            }
            dg.push(b'\n');
            valid.line(&mut r, &mut dg);
        } else {
            match r.below(10) {
                0..=3 => {
                    if r.below(2) == 0 {
                        valid.line(&mut r, &mut dg);
                        dg.push(b'\n');
                    }
                    for _ in 0..r.below(300) {
                        dg.push(r.next() as u8);
                    }
                    if r.below(2) == 0 {
                        dg.push(b'\n');
                        valid.line(&mut r, &mut dg);
                    }
                }
                4..=7 => {
                    mutable_base(&mut r, &mut dg);
                    mutate(&mut r, &mut dg);
                    if r.below(3) == 0 {
                        dg.push(b'\n');
                        valid.line(&mut r, &mut dg);
                    }
                }
                _ => {
                    for j in 0..1 + r.below(8) {
                        if j > 0 {
                            dg.push(b'\n');
                        }
                        valid.line(&mut r, &mut dg);
                    }
                }
            }
        }
        lines += count_lines(&dg);
        pacer.send(&dg);
    }
    pacer.finish();
    let sent = pacer.sent;
    let s = terminate_cleanly(d);
    valid.check(&s);
    let accounted = get(&s, "stats_counts.statsd.metrics_received")
        + get(&s, "stats_counts.statsd.events_received")
        + get(&s, "stats_counts.statsd.service_checks_received");
    assert_eq!(accounted, lines as f64, "every line is a metric, an event or a service check");
    let by_reason: f64 = reasons(&s).values().sum();
    assert_eq!(get(&s, "stats_counts.statsd.bad_lines_seen"), by_reason);
    assert!(by_reason > 0.0);
    assert_eq!(get(&s, "stats_counts.statsd.packets_received"), sent as f64);
    assert_eq!(get(&s, "stats_counts.statsd.kernel_drops"), 0.0);
    eprintln!("sent {sent} datagrams, {lines} lines; bad by reason: {:?}", reasons(&s));
}

/// Names at and one byte over `max_name_bytes`, 65,507-byte datagrams (the largest loopback
/// carries) of valid lines and of one huge name, NUL bytes and invalid UTF-8 in names, members
/// and tags; once with key sanitizing (they are cleaned) and once without (invalid UTF-8 is a
/// bad line, a NUL is kept and the console output is still valid JSON).
#[test]
fn name_limits_64k_datagrams_nul_bytes_and_invalid_utf8() {
    let d = Daemon::start(&["--flush-interval", "1h", "--max-name-bytes", "100"]);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let at_limit = format!("lim.{}", "a".repeat(96));
    let over = format!("lim.{}", "b".repeat(97));
    assert_eq!((at_limit.len(), over.len()), (100, 101));
    d.send(&format!("{at_limit}:1|c\n{over}:1|c"));
    // 65,507 bytes of valid lines.
    let line = "big.c:1|c\n";
    let mut big = line.repeat(65_507 / line.len());
    let n_big = big.len() / line.len();
    big.push_str(&"x".repeat(65_507 - big.len())); // a last line with no value
    assert_eq!(big.len(), 65_507);
    d.send(&big);
    // One line, one 65,000-byte name.
    let mut huge = "h".repeat(65_503);
    huge.push_str(":1|c");
    d.send(&huge);
    // One byte more than loopback carries: the sender gets an error, not the daemon.
    assert!(tx.send_to(&vec![b'a'; 65_508], d.udp).is_err(), "65,508 bytes over UDP/IPv4");
    d.send_bytes(b"nul\0.c:1|c\nnul.v:1|c\0\n\0\0\0\nnul.s:a\0b|s\nnul.s:a\0c|s\n");
    d.send_bytes(b"inv\xff\xfe.c:1|c\ninv.s:\xff\xfe|s\ninv.s:\xfe\xff|s\ninv.t:1|c|#k\xff:v\xfe\n");
    let s = terminate_cleanly(d);
    assert_eq!(get(&s, &format!("stats_counts.{at_limit}")), 1.0, "a name of exactly max_name_bytes");
    assert!(!s.keys().any(|k| k.contains("lim.bbb")));
    assert_eq!(get(&s, "stats_counts.big.c"), n_big as f64, "every line of a 65,507-byte datagram");
    assert_eq!(get(&s, "stats_counts.statsd.bad_lines.name_too_long"), 2.0);
    assert_eq!(get(&s, "stats_counts.nul.c"), 1.0, "a NUL in a name is sanitized away");
    assert_eq!(get(&s, "stats.sets.nul.s.count"), 2.0, "members are any bytes, NUL included");
    assert_eq!(get(&s, "stats_counts.inv.c"), 1.0, "invalid UTF-8 in a name is sanitized away");
    assert_eq!(get(&s, "stats.sets.inv.s.count"), 2.0, "members are any bytes");
    assert_eq!(get(&s, "stats_counts.inv.t;k=v"), 1.0, "and in tags too");
    // The over-long names, "\0\0\0" and the 64 KiB datagram's last line (no value), and a type
    // `c\0`.
    let want = BTreeMap::from([("name_too_long", 2.0), ("no_value", 2.0), ("unknown_type", 1.0)]);
    assert_eq!(reasons(&s), want);

    let d = Daemon::start(&["--flush-interval", "1h", "--sanitize-keys", "false"]);
    d.send_bytes(b"raw\xff.c:1|c\nraw.t:1|c|#k:\xfe\nraw\0.c:2|c\nraw.ok:3|c\nraw.s:\xff|s");
    let s = terminate_cleanly(d);
    assert_eq!(reasons(&s), BTreeMap::from([("invalid_utf8", 2.0)]), "a name and a tag");
    assert_eq!(get(&s, "stats_counts.raw\0.c"), 2.0, "a NUL is valid UTF-8: kept, and escaped in JSON");
    assert_eq!(get(&s, "stats_counts.raw.ok"), 3.0);
    assert_eq!(get(&s, "stats.sets.raw.s.count"), 1.0, "a member need not be UTF-8");
}

fn tcp_addr(d: &Daemon) -> String {
    d.listening("tcp").first().expect("a tcp listener").clone()
}

/// 1 MiB lines over TCP (128 × `max_line_bytes`): each is dropped and counted once, the
/// connection stays open, and the lines before, between and after them all count.
#[test]
fn one_mebibyte_tcp_lines_are_dropped_and_counted_and_the_connection_carries_on() {
    let d = Daemon::start(&["--tcp", "127.0.0.1:0", "--flush-interval", "200ms"]);
    let mut c = TcpStream::connect(tcp_addr(&d)).unwrap();
    let mut r = Rng(7);
    let mut sent = Vec::new();
    for i in 0..4 {
        sent.extend_from_slice(b"tl.c:1|c\n");
        if i % 2 == 0 {
            // A plausible line with a 1 MiB value.
            sent.extend_from_slice(b"tl.big:");
            sent.extend(std::iter::repeat(b'1').take(1 << 20));
            sent.extend_from_slice(b"|c\n");
        } else {
            // 1 MiB of random bytes without a newline, then one.
            sent.extend((0..1 << 20).map(|_| r.next() as u8).filter(|&b| b != b'\n'));
            sent.push(b'\n');
        }
    }
    c.write_all(&sent).unwrap();
    let s =
        sums_until(&d, &[("stats_counts.tl.c", 4.0), ("stats_counts.statsd.bad_lines.line_too_long", 4.0)]);
    assert_eq!(get(&s, "stats_counts.tl.c"), 4.0);
    assert_eq!(get(&s, "stats_counts.statsd.bad_lines_seen"), 4.0);
    assert!(!s.keys().any(|k| k.contains("tl.big")));
    // The same connection still works.
    c.write_all(b"tl.after:5|c\n").unwrap();
    let s = sums_until(&d, &[("stats_counts.tl.after", 5.0)]);
    assert_eq!(get(&s, "stats_counts.tl.after"), 5.0);
    drop(c);
    let s = terminate_cleanly(d);
    assert_eq!(get(&s, "stats_counts.statsd.bad_lines_seen"), 0.0);
}

/// `RLIMIT_NOFILE` of this process: (soft, hard).
fn nofile() -> (libc::rlim_t, libc::rlim_t) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into a live struct we own.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    (lim.rlim_cur, lim.rlim_max)
}

fn set_nofile_soft(soft: libc::rlim_t) {
    let (_, hard) = nofile();
    let lim = libc::rlimit { rlim_cur: soft, rlim_max: hard };
    // SAFETY: setrlimit reads one rlimit from a live struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
}

/// The soft "Max open files" of a process, from /proc/PID/limits.
fn soft_nofile_of(pid: u32) -> libc::rlim_t {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

/// 10,000 TCP connections open at once, each sending a line. The daemon is started with a soft
/// open files limit of 4,096 (what it inherits here); it raises it to the hard limit itself,
/// so no connection fails with EMFILE and none is refused.
#[test]
fn ten_thousand_concurrent_tcp_connections() {
    const CONNS: usize = 10_000;
    let (_, hard) = nofile();
    assert!(
        hard >= CONNS as libc::rlim_t + 200,
        "the hard open files limit ({hard}) is too low for this test"
    );
    // The daemon inherits a low soft limit; this process then takes the hard limit for its own
    // 10,000 sockets. (nextest runs each test in its own process; under `cargo test` the other
    // tests see a soft limit of 4,096 for a moment, far more than any of them opens.)
    set_nofile_soft(4096);
    let d = Daemon::start(&[
        "--tcp",
        "127.0.0.1:0",
        "--max-tcp-connections",
        "10000",
        "--flush-interval",
        "300ms",
    ]);
    set_nofile_soft(hard);
    let pid = d.child.id();
    assert_eq!(soft_nofile_of(pid), hard, "the daemon raised its soft open files limit");
    assert!(d.startup_log.iter().any(|l| l.contains("open files limit raised from 4096")));
    let addr = tcp_addr(&d);
    let mut conns = Vec::with_capacity(CONNS);
    for i in 0..CONNS {
        let mut c = TcpStream::connect(&addr).unwrap_or_else(|e| panic!("connection {i}: {e}"));
        c.write_all(format!("cc.c:1|c\ncc.k{}:1|c\n", i % 100).as_bytes()).unwrap();
        conns.push(c);
    }
    let s = sums_until(
        &d,
        &[("stats_counts.cc.c", CONNS as f64), ("stats_counts.statsd.connections_opened", CONNS as f64)],
    );
    assert_eq!(get(&s, "stats_counts.cc.c"), CONNS as f64);
    let per_key: f64 = (0..100).map(|k| get(&s, &format!("stats_counts.cc.k{k}"))).sum();
    assert_eq!(per_key, CONNS as f64);
    assert_eq!(get(&s, "stats_counts.statsd.connections_refused"), 0.0);
    // All still open: a line on the last one and the first one still counts.
    conns[0].write_all(b"cc.end:1|c\n").unwrap();
    conns[CONNS - 1].write_all(b"cc.end:1|c\n").unwrap();
    sums_until(&d, &[("stats_counts.cc.end", 2.0)]);
    drop(conns);
    terminate_cleanly(d);
}

// ---- 5. cardinality flood ----

/// 10⁶ distinct counter names and 10⁶ distinct members of one set over UDP, with
/// `max_series` = `max_set_members` = 10,000, while 100 counters and a set made before the flood
/// keep being incremented. Over-limit lines are dropped and counted exactly; the older series
/// stay exact; the daemon's peak RSS stays within a bound derived from the limits (10⁶ series
/// unbounded would need several times more).
#[test]
fn a_cardinality_flood_is_bounded_counted_and_spares_existing_series() {
    const FLOOD: u64 = 1_000_000;
    const LIMIT: u64 = 10_000;
    const PER_DATAGRAM: u64 = 25;
    let d = Daemon::start(&[
        "--flush-interval",
        "1h",
        "--recv-buffer",
        "32MiB",
        "--max-series",
        "10000",
        "--max-set-members",
        "10000",
    ]);
    let pid = d.child.id();
    let mut pacer = Pacer::new(&d);
    // Before the flood: 100 counters and a set of 10 members.
    let mut keep = vec![0.0f64; 100];
    for (k, v) in keep.iter_mut().enumerate() {
        pacer.send(format!("keep.c{k}:1|c").as_bytes());
        *v += 1.0;
    }
    let members: Vec<String> = (0..10).map(|m| format!("keep.s:m{m}|s")).collect();
    pacer.send(members.join("\n").as_bytes());
    pacer.finish();
    let baseline = proc_status_bytes(pid, "VmRSS");
    let existing = 100 + 1; // series
    let mut dg = String::with_capacity(2048);
    let mut line = 0u64;
    let mut sent_names = 0u64;
    let mut sent_members = 0u64;
    while sent_names < FLOOD || sent_members < FLOOD {
        dg.clear();
        for _ in 0..PER_DATAGRAM {
            if sent_names < FLOOD && (line % 2 == 0 || sent_members >= FLOOD) {
                dg.push_str(&format!("flood.name.{sent_names}:1|c\n"));
                sent_names += 1;
            } else {
                dg.push_str(&format!("flood.set:member{sent_members}|s\n"));
                sent_members += 1;
            }
            line += 1;
        }
        // The old series, during the flood: known counters and known members.
        let k = (line / PER_DATAGRAM) % 100;
        dg.push_str(&format!("keep.c{k}:2|c\nkeep.s:m{}|s", k % 10));
        keep[k as usize] += 2.0;
        pacer.send(dg.as_bytes());
    }
    pacer.finish();
    let peak = proc_status_bytes(pid, "VmHWM");
    let rss = proc_status_bytes(pid, "VmRSS");
    let s = terminate_cleanly(d);
    for (k, v) in keep.iter().enumerate() {
        assert_eq!(get(&s, &format!("stats_counts.keep.c{k}")), *v, "keep.c{k} stays exact");
    }
    assert_eq!(get(&s, "stats.sets.keep.s.count"), 10.0);
    // The set `flood.set` is one more series; the rest of the room goes to the first names.
    let admitted_names = LIMIT - existing - 1;
    let flood_names = s.keys().filter(|k| k.starts_with("stats_counts.flood.name.")).count() as u64;
    assert_eq!(flood_names, admitted_names);
    assert_eq!(get(&s, "stats_counts.flood.name.0"), 1.0);
    assert_eq!(get(&s, "stats_counts.statsd.bad_lines.too_many_series"), (FLOOD - admitted_names) as f64);
    let admitted_members = LIMIT - 10;
    assert_eq!(get(&s, "stats.sets.flood.set.count"), admitted_members as f64);
    assert_eq!(
        get(&s, "stats_counts.statsd.bad_lines.too_many_set_members"),
        (FLOOD - admitted_members) as f64
    );
    // Two tables of 10,000 series and 10,000 members with keys of ~20 bytes, the known series
    // and a flush of 10,000: a few MB (the receive batch alone may touch 4 MiB). 16 MiB over the
    // pre-flood RSS is generous; the same flood without the limits grows it by far more.
    let bound = baseline + (16 << 20);
    eprintln!(
        "RSS: {} KiB before the flood, peak {} KiB, after {} KiB (bound {} KiB)",
        baseline >> 10,
        peak >> 10,
        rss >> 10,
        bound >> 10
    );
    assert!(peak < bound, "peak RSS {peak} over {bound}");
}

/// The same flood spread over many short intervals (100 ms): each interval admits up to
/// `max_series` new names, so without a bound on the series remembered across intervals (for
/// idle reporting) they would pile up interval after interval. The series the daemon remembers
/// stay within `max_series`, its peak RSS within the same bound as above, and every flood line
/// is either flushed under its own name exactly once or counted as `too_many_series`.
#[test]
fn a_cardinality_flood_over_many_intervals_stays_bounded() {
    const FLOOD: u64 = 1_000_000;
    const PER_DATAGRAM: u64 = 25;
    let d = Daemon::start(&[
        "--flush-interval",
        "100ms",
        "--recv-buffer",
        "32MiB",
        "--max-series",
        "10000",
        "--admin",
        "127.0.0.1:0",
    ]);
    let pid = d.child.id();
    let admin = d.listening("admin")[0].clone();
    let mut pacer = Pacer::new(&d);
    pacer.send(b"keep.c:1|c");
    pacer.finish();
    let baseline = proc_status_bytes(pid, "VmRSS");
    let mut dg = String::with_capacity(2048);
    let mut name = 0u64;
    let mut keep = 1.0;
    let mut max_known = 0.0f64;
    while name < FLOOD {
        dg.clear();
        for _ in 0..PER_DATAGRAM {
            dg.push_str(&format!("flood.many.{name}:1|c\n"));
            name += 1;
        }
        dg.push_str("keep.c:1|c");
        keep += 1.0;
        pacer.send(dg.as_bytes());
        if name % 200_000 == 0 {
            max_known = max_known.max(stat(&admin_stats(&admin), "kstatsd.series_known"));
        }
    }
    pacer.finish();
    // Two more flushes: the last of the flood is flushed and then idle.
    let read = [d.next_flush(WAIT), d.next_flush(WAIT)];
    let stats = admin_stats(&admin);
    max_known = max_known.max(stat(&stats, "kstatsd.series_known"));
    let peak = proc_status_bytes(pid, "VmHWM");
    let mut s = terminate_cleanly(d);
    for (k, v) in sum_flushes(&read) {
        *s.entry(k).or_default() += v;
    }
    let refused = stat(&stats, "kstatsd.bad_lines.too_many_series");
    // An admitted name is flushed once with 1 (and reported idle with 0 while remembered).
    let admitted: f64 =
        s.iter().filter(|(k, _)| k.starts_with("stats_counts.flood.many.")).map(|(_, v)| v).sum();
    eprintln!(
        "flood over intervals: series known at most {max_known}, {refused} refused, peak RSS {} KiB (baseline {} KiB)",
        peak >> 10,
        baseline >> 10
    );
    assert!(max_known <= 10_000.0 + 64.0, "series remembered across intervals: {max_known}");
    assert!(refused > 0.0 && admitted > 10_000.0, "the flood spans several intervals");
    assert_eq!(admitted + refused, FLOOD as f64, "each flood line is flushed or refused");
    assert_eq!(get(&s, "stats_counts.keep.c"), keep, "an existing series stays exact");
    assert!(peak < baseline + (16 << 20), "peak RSS {peak}, baseline {baseline}");
}

// The tests' one allocator, for its per-thread heap figures: the in-process floods below touch
// their tables only from the test's thread.
#[global_allocator]
static HEAP: common::alloc::Counting = common::alloc::Counting;

/// Feeds 10⁷ flood lines made by `line` (50 per datagram, each datagram ending with
/// `old.c:1|c\nold.s:a|s`, two series made before the flood) into tables limited to 10,000
/// series and 10,000 set members, through the entry point the ingest loop calls. Returns the
/// tables, the sum `old.c` must have, and the peak heap the tables held.
fn flood_in_process(line: fn(&mut Vec<u8>, &[u8])) -> (Tables, f64, isize) {
    const LIMIT: usize = 10_000;
    let limits = Limits { max_series: LIMIT, max_set_members: LIMIT, ..Limits::default() };
    let before = common::alloc::live();
    common::alloc::reset_peak();
    let mut tables = Tables::new(limits);
    let mut buf = LineBuf::default();
    ingest::datagram(&mut tables, b"old.c:1|c\nold.s:a|s", Format::Statsd, false, &mut buf, &mut None);
    let mut dg: Vec<u8> = Vec::with_capacity(4096);
    let mut num = itoa::Buffer::new();
    let mut old = 1.0;
    let started = Instant::now();
    for chunk in 0..IN_PROCESS_FLOOD / 50 {
        dg.clear();
        for i in chunk * 50..(chunk + 1) * 50 {
            line(&mut dg, num.format(i).as_bytes());
        }
        dg.extend_from_slice(b"old.c:1|c\nold.s:a|s");
        old += 1.0;
        ingest::datagram(&mut tables, &dg, Format::Statsd, false, &mut buf, &mut None);
    }
    let peak = common::alloc::peak() - before;
    eprintln!(
        "in-process flood of {IN_PROCESS_FLOOD} lines: {:?}; heap held by the tables: {} KiB at the end, {} KiB at the peak",
        started.elapsed(),
        (common::alloc::live() - before) >> 10,
        peak >> 10
    );
    assert_eq!(tables.stats.metrics, IN_PROCESS_FLOOD + 2 + 2 * (IN_PROCESS_FLOOD / 50));
    (tables, old, peak)
}

const IN_PROCESS_FLOOD: u64 = 10_000_000;

/// The value of counter `name` in `tables`.
fn counter_in(tables: &Tables, name: &str) -> f64 {
    let found = tables.series().find(|s| s.kind == kstatsd::parse::Kind::Counter && s.key == name);
    tables.counters[found.expect(name).slot]
}

/// 10⁷ distinct names in-process: 9,998 admitted (`old.c` and `old.s` hold two of the 10,000
/// places), the rest counted as `too_many_series`; the tables' heap stays under 16 MiB (10⁷
/// series unbounded would be gigabytes); `old.c` stays exact.
#[test]
fn ten_million_distinct_names_in_process_keep_the_tables_bounded() {
    let (tables, old, peak) = flood_in_process(|dg, n| {
        dg.extend_from_slice(b"f.");
        dg.extend_from_slice(n);
        dg.extend_from_slice(b":1|c\n");
    });
    assert_eq!(tables.series_count(), 10_000);
    assert_eq!(tables.stats.bad(BadLine::TooManySeries), IN_PROCESS_FLOOD - 9_998);
    assert_eq!(tables.stats.bad_total(), IN_PROCESS_FLOOD - 9_998);
    assert_eq!(counter_in(&tables, "old.c"), old, "a series from before the flood stays exact");
    assert_eq!(counter_in(&tables, "f.0"), 1.0);
    assert!(peak < 16 << 20, "the tables held up to {peak} bytes");
}

/// A set with 10⁷ distinct members in-process: 9,999 admitted (`old.s` holds one of the 10,000
/// places), the rest counted as `too_many_set_members`; the tables' heap stays under 16 MiB;
/// `old.c` stays exact.
#[test]
fn a_set_with_ten_million_members_in_process_keeps_the_tables_bounded() {
    let (mut tables, old, peak) = flood_in_process(|dg, n| {
        dg.extend_from_slice(b"f.set:");
        dg.extend_from_slice(n);
        dg.extend_from_slice(b"|s\n");
    });
    assert_eq!(tables.stats.bad(BadLine::TooManySetMembers), IN_PROCESS_FLOOD - 9_999);
    assert_eq!(tables.stats.bad_total(), IN_PROCESS_FLOOD - 9_999);
    assert_eq!(counter_in(&tables, "old.c"), old, "a series from before the flood stays exact");
    let set = tables.series().find(|s| s.key == "f.set").map(|s| s.slot).expect("f.set");
    assert_eq!(tables.sets[set], 9_999);
    assert_eq!(tables.series_count(), 3);
    assert!(peak < 16 << 20, "the tables held up to {peak} bytes");
    tables.clear();
}

// ---- 6. kernel drops made visible ----

/// Reads one admin reply up to `END`.
fn admin_stats(addr: &str) -> String {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    c.write_all(b"stats\n").unwrap();
    let mut r = BufReader::new(c);
    let mut out = String::new();
    loop {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "closed before END: {out}");
        if line == "END\n" {
            return out;
        }
        out.push_str(&line);
    }
}

fn stat(text: &str, key: &str) -> f64 {
    let prefix = format!("{key}: ");
    let line = text.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no {key} in {text}"));
    line[prefix.len()..].parse().unwrap()
}

/// The daemon stopped (SIGSTOP) with a small receive buffer, a burst of datagrams, SIGCONT: the
/// kernel's drop count for that socket (/proc/net/udp) equals the sum of the `kernel_drops` meta
/// counter over the flushes and the admin `stats` figure, and every datagram sent was either
/// received or dropped.
#[test]
fn kernel_drops_reach_the_meta_counter_and_admin_stats() {
    const BURST: u64 = 3_000;
    let d = Daemon::start(&["--flush-interval", "200ms", "--recv-buffer", "64KiB", "--admin", "127.0.0.1:0"]);
    let admin = d.listening("admin")[0].clone();
    let pid = d.child.id().to_string();
    let before = udp_row(d.udp);
    assert_eq!(before.drops, 0);
    d.next_flush(WAIT); // the flush thread is up
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    // Stopped: nothing reads the socket. 3,000 × ~200 bytes is far more than 64 KiB holds.
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let payload = format!("kd.c:1|c\n{}", "kd.pad:1|c\n".repeat(17));
    for _ in 0..BURST {
        tx.send_to(payload.as_bytes(), d.udp).unwrap();
    }
    let row = udp_row(d.udp);
    assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    let dropped = row.drops;
    assert!(dropped > 0 && dropped < BURST, "the kernel dropped {dropped} of {BURST}: {row:?}");
    // The sums over the flushes reach both figures; received + dropped = sent.
    let s = sums_until(
        &d,
        &[
            ("stats_counts.statsd.kernel_drops", dropped as f64),
            ("stats_counts.kd.c", (BURST - dropped) as f64),
        ],
    );
    assert_eq!(get(&s, "stats_counts.statsd.kernel_drops"), dropped as f64);
    assert_eq!(get(&s, "stats_counts.kd.c"), (BURST - dropped) as f64, "received + dropped = sent");
    assert_eq!(udp_row(d.udp).drops, dropped, "no more drops after SIGCONT");
    let stats = admin_stats(&admin);
    assert_eq!(stat(&stats, "kstatsd.kernel_drops"), dropped as f64, "{stats}");
    assert_eq!(stat(&stats, "kstatsd.packets_received"), (BURST - dropped) as f64, "{stats}");
    eprintln!("kernel dropped {dropped} of {BURST} datagrams (socket inode {})", row.inode);
    terminate_cleanly(d);
}
