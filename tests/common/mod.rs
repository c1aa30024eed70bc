//! Shared harness for the end-to-end tests: runs the real `kstatsd` binary on loopback with an
//! ephemeral UDP port, reads the address it bound from its stderr, and collects every console
//! flush it prints on stdout (one JSON object per line with `--console json`).
//! Runs on the test's own thread plus two reader threads per daemon.
#![allow(dead_code)]

pub mod alloc;
#[cfg(feature = "peers")]
pub mod carbon;
#[cfg(feature = "peers")]
pub mod dockerd;
#[cfg(feature = "peers")]
pub mod etsy;
pub mod hostile;
pub mod http;
pub mod kafka_emulator;
pub mod ports;
#[cfg(feature = "peers")]
pub mod tansu;
pub mod vectors;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// One flush as printed by `--console json`: every name and its value.
pub type Flush = BTreeMap<String, f64>;

pub struct Daemon {
    pub child: Child,
    /// The first UDP address the daemon bound; `udp_all` has every one, in order.
    pub udp: SocketAddr,
    pub udp_all: Vec<SocketAddr>,
    /// Every stderr line up to "ready" (see [`Daemon::listening`]).
    pub startup_log: Vec<String>,
    stdout: Receiver<String>,
    pub stderr: Receiver<String>,
    sender: UdpSocket,
}

impl Daemon {
    /// Starts `kstatsd --udp 127.0.0.1:0 --console json <extra args>` and waits until it is ready.
    pub fn start(extra: &[&str]) -> Daemon {
        let mut args = vec!["--udp", "127.0.0.1:0", "--console", "json"];
        args.extend_from_slice(extra);
        Self::start_raw(&args)
    }

    /// Starts `kstatsd <args>`; the args must configure one UDP listener. The management port is
    /// on by default (127.0.0.1:8126), which daemons running in parallel would fight over: unless
    /// the args (or the `--config` file they name) mention `admin`, `--admin off` comes first.
    pub fn start_raw(args: &[&str]) -> Daemon {
        let admin_off: &[&str] = if mentions_admin(args) { &[] } else { &["--admin", "off"] };
        let mut child = Command::new(env!("CARGO_BIN_EXE_kstatsd"))
            .args(admin_off)
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kstatsd");
        let stdout = lines_of(child.stdout.take().unwrap());
        let stderr = lines_of(child.stderr.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut udp_all = Vec::new();
        let mut startup_log = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match stderr.recv_timeout(left) {
                Ok(l) => l,
                Err(e) => panic!("kstatsd did not become ready: {e:?}"),
            };
            if let Some(rest) = line.split("udp listening on ").nth(1) {
                let addr = rest.split_whitespace().next().unwrap();
                udp_all.push(addr.parse().expect("bound address"));
            }
            startup_log.push(line.clone());
            if line.ends_with("ready") {
                break;
            }
        }
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let udp = *udp_all.first().expect("no udp listener logged");
        Daemon { child, udp, udp_all, startup_log, stdout, stderr, sender }
    }

    /// Where the daemon said `<kind> listening on <where>` at start-up (`tcp`, `admin`,
    /// `json (udp)`, `unix dgram`, …), in order.
    pub fn listening(&self, kind: &str) -> Vec<String> {
        let marker = format!("]: {kind} listening on ");
        let found = self.startup_log.iter().filter_map(|l| l.split(marker.as_str()).nth(1));
        found.map(|rest| rest.split_whitespace().next().unwrap_or("").to_string()).collect()
    }

    /// Sends one datagram to the daemon's UDP port.
    pub fn send(&self, datagram: &str) {
        self.send_bytes(datagram.as_bytes());
    }

    pub fn send_bytes(&self, datagram: &[u8]) {
        self.sender.send_to(datagram, self.udp).unwrap();
    }

    /// The next flush printed on stdout, parsed; panics after `timeout`.
    pub fn next_flush(&self, timeout: Duration) -> Flush {
        let line = match self.stdout.recv_timeout(timeout) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) => panic!("no flush within {timeout:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("kstatsd closed stdout"),
        };
        parse_flush(&line)
    }

    /// Waits for flushes until one has `name` with a non-zero value; returns that flush.
    pub fn flush_with(&self, name: &str, timeout: Duration) -> Flush {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no flush carried {name} within {timeout:?}");
            let f = self.next_flush(left);
            if f.get(name).is_some_and(|v| *v != 0.0) {
                return f;
            }
        }
    }

    /// Adds up the flushes until every `want` name reached its value (each at least), or panics
    /// after `timeout` with what it saw; returns the sums of every name (a gauge's sum is its
    /// value times the flushes that carried it).
    pub fn sums_until(&self, want: &[(&str, f64)], timeout: Duration) -> Flush {
        let reached = |s: &Flush| want.iter().all(|(n, v)| s.get(*n).is_some_and(|x| x >= v));
        let deadline = Instant::now() + timeout;
        let mut sums = Flush::new();
        while !reached(&sums) {
            assert!(Instant::now() < deadline, "never reached {want:?} within {timeout:?}; got {sums:?}");
            let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
            for (k, v) in self.next_flush(left) {
                *sums.entry(k).or_insert(0.0) += v;
            }
        }
        sums
    }

    /// Sends SIGTERM and waits for exit; returns the status and every flush printed meanwhile.
    pub fn terminate(self, timeout: Duration) -> (ExitStatus, Vec<Flush>) {
        let (status, lines) = self.terminate_lines(timeout);
        (status, lines.iter().map(|l| parse_flush(l)).collect())
    }

    /// The stderr lines logged so far, waiting (at most `timeout`) until one matches `want`:
    /// the log is a pipe of its own, so a line written before a figure that already showed on
    /// stdout can still be on its way.
    pub fn log_until(&self, want: impl Fn(&str) -> bool, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = Vec::new();
        while !lines.iter().any(|l: &String| want(l)) {
            match self.stderr.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => lines.push(line),
                Err(_) => break,
            }
        }
        lines.extend(self.stderr.try_iter());
        lines
    }

    /// Sends SIGTERM and waits for exit; returns the status and the stdout lines not yet read.
    pub fn terminate_lines(mut self, timeout: Duration) -> (ExitStatus, Vec<String>) {
        Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "kstatsd did not exit within {timeout:?}");
            std::thread::sleep(Duration::from_millis(10));
        };
        // stdout is closed once the process is gone: read until the reader thread ends.
        let rest = self.stdout.iter().collect();
        (status, rest)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `args` set the management port: `--admin[=…]`, or a `--config` file with an `admin`
/// key (or, for an etsy config.js, a `mgmt_port` key).
pub fn mentions_admin(args: &[&str]) -> bool {
    let sets_admin = |text: &str| {
        text.lines().any(|l| {
            l.trim_start().strip_prefix("admin").is_some_and(|r| r.trim_start().starts_with('='))
                || l.contains("mgmt_port:")
        })
    };
    args.iter().enumerate().any(|(i, a)| {
        let file = match a.strip_prefix("--config") {
            Some("") => args.get(i + 1).copied(),
            Some(rest) => rest.strip_prefix('='),
            None => None,
        };
        *a == "--admin"
            || a.starts_with("--admin=")
            || file.is_some_and(|f| std::fs::read_to_string(f).is_ok_and(|t| sets_admin(&t)))
    })
}

/// Parses one console JSON flush into name → value (the `gauges` object).
pub fn parse_flush(line: &str) -> Flush {
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["durationUnit"], "milliseconds", "{line}");
    assert_eq!(v["rateUnit"], "seconds", "{line}");
    assert!(v["clock"].as_u64().is_some(), "{line}");
    v["gauges"]
        .as_object()
        .unwrap_or_else(|| panic!("no gauges object: {line}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_f64().unwrap_or_else(|| panic!("{k} not a number"))))
        .collect()
}

fn lines_of<R: std::io::Read + Send + 'static>(r: R) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
