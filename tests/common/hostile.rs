//! What the hostile-input, cardinality and kernel-drop suites share: a fixed-seed generator, the
//! daemon's UDP socket as /proc/net/udp shows it, a pacer that keeps the kernel from dropping,
//! flush sums, and the valid lines mixed into hostile traffic with what they must add up to.
//! Runs on the test's own thread.

use super::{Daemon, Flush};
use kstatsd::parse::BadLine;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

pub const WAIT: Duration = Duration::from_secs(30);

// ---- a fixed-seed generator ----

/// xorshift64*: fast, deterministic, good enough to pick bytes and branches.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    /// `[a-z][a-z0-9.]{0,len-1}`: a name that cannot start an event, a service check or JSON.
    pub fn name(&mut self, out: &mut Vec<u8>, len: usize) {
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
pub struct SockRow {
    /// Bytes queued for the reader (`sk_rmem_alloc`: datagrams' true size).
    pub rx_queue: u64,
    pub drops: u64,
    pub inode: u64,
}

/// The row of the IPv4 UDP socket bound to `addr` (127.0.0.1:port).
///
/// The kernel does not hold the table still while it is read: when other tests close sockets
/// meanwhile, one read can miss a row that exists. So a missing row is read again a few times.
pub fn udp_row(addr: SocketAddr) -> SockRow {
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
pub fn granted_buffer(d: &Daemon) -> u64 {
    let line = d.startup_log.iter().find(|l| l.contains("udp listening on")).unwrap();
    let n = line.split("(receive buffer ").nth(1).unwrap().split(' ').next().unwrap();
    n.parse().unwrap()
}

/// Sends datagrams to the daemon no faster than it reads them: after every slice of about an
/// eighth of its receive buffer (counting each datagram at twice its size plus 1 KiB, more than
/// the kernel books for it), waits until the socket's queue is below half the buffer. The queue
/// can then never fill, so the kernel drops nothing; `finish` checks that it did not.
/// Waiting polls /proc (there is no event for "the peer read its socket").
pub struct Pacer {
    tx: UdpSocket,
    to: SocketAddr,
    slice: u64,
    high: u64,
    pending: u64,
    pub sent: u64,
}

impl Pacer {
    pub fn new(d: &Daemon) -> Pacer {
        let buffer = granted_buffer(d);
        assert!(buffer >= 1 << 20, "a receive buffer of {buffer} bytes is too small to pace into");
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        Pacer { tx, to: d.udp, slice: buffer / 8, high: buffer / 2, pending: 0, sent: 0 }
    }

    pub fn send(&mut self, datagram: &[u8]) {
        if self.pending >= self.slice {
            self.wait_below(self.high);
            self.pending = 0;
        }
        self.tx.send_to(datagram, self.to).unwrap();
        self.pending += 2 * datagram.len() as u64 + 1024;
        self.sent += 1;
    }

    pub fn wait_below(&self, limit: u64) {
        let deadline = Instant::now() + WAIT;
        while udp_row(self.to).rx_queue > limit {
            assert!(Instant::now() < deadline, "the daemon stopped reading its socket");
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Waits until the daemon has read everything; asserts the kernel dropped nothing.
    pub fn finish(&self) {
        self.wait_below(0);
        let row = udp_row(self.to);
        assert_eq!(row.drops, 0, "the kernel dropped datagrams despite the pacing: {row:?}");
    }
}

// ---- reading the results ----

/// Adds every flush into one map.
pub fn sum_flushes(flushes: &[Flush]) -> BTreeMap<String, f64> {
    let mut sums = BTreeMap::new();
    for f in flushes {
        for (k, v) in f {
            *sums.entry(k.clone()).or_insert(0.0) += v;
        }
    }
    sums
}

pub fn get(s: &BTreeMap<String, f64>, name: &str) -> f64 {
    s.get(name).copied().unwrap_or(0.0)
}

/// Takes the daemon's stderr so that it can be read after `terminate`.
pub fn take_stderr(d: &mut Daemon) -> Receiver<String> {
    std::mem::replace(&mut d.stderr, std::sync::mpsc::channel().1)
}

/// SIGTERM: the daemon must exit 0, without a panic on stderr; returns the sum of every flush
/// not read yet.
pub fn terminate_cleanly(mut d: Daemon) -> BTreeMap<String, f64> {
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
pub fn sums_until(d: &Daemon, want: &[(&str, f64)]) -> BTreeMap<String, f64> {
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

pub fn relevant(sums: &BTreeMap<String, f64>, want: &[(&str, f64)]) -> Vec<(String, f64)> {
    want.iter().map(|(n, _)| (n.to_string(), get(sums, n))).collect()
}

/// Every bad-line reason counter of a flush sum, non-zero ones only.
pub fn reasons(s: &BTreeMap<String, f64>) -> BTreeMap<&'static str, f64> {
    BadLine::ALL
        .iter()
        .map(|b| (b.name(), get(s, &format!("stats_counts.statsd.bad_lines.{}", b.name()))))
        .filter(|(_, v)| *v != 0.0)
        .collect()
}

/// Lines of a datagram as the daemon splits them (`\n`, one trailing `\r` off, empties skipped).
pub fn count_lines(datagram: &[u8]) -> u64 {
    datagram.split(|&b| b == b'\n').filter(|l| !l.strip_suffix(b"\r").unwrap_or(l).is_empty()).count() as u64
}

/// One kB-ish field of /proc/PID/status (`VmRSS`, `VmHWM`), in bytes.
pub fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(&format!("{field}:"))).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

// ---- what the valid lines add up to ----

/// The expected sums of the valid lines mixed into the hostile traffic (names under `hv.`).
#[derive(Default)]
pub struct Valid {
    pub counters: BTreeMap<String, f64>,
    pub timer_count: f64,
    pub members: BTreeSet<u64>,
    pub gauge: Option<u64>,
}

impl Valid {
    /// Appends one valid line (no newline) of a random kind and records what it adds.
    pub fn line(&mut self, r: &mut Rng, out: &mut Vec<u8>) {
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
    pub fn warm_up(&mut self) -> Vec<Vec<u8>> {
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
    pub fn check(&self, s: &BTreeMap<String, f64>) {
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

/// Reads one admin reply up to `END`.
pub fn admin_stats(addr: &str) -> String {
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

pub fn stat(text: &str, key: &str) -> f64 {
    let prefix = format!("{key}: ");
    let line = text.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no {key} in {text}"));
    line[prefix.len()..].parse().unwrap()
}
