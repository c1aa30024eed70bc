#![cfg(feature = "peers")]
//! Real client libraries against the real binary: Python `statsd` (UDP, TCP, Unix stream),
//! Python `datadog` DogStatsd (UDP, its buffered mode that packs many lines per datagram, Unix
//! datagram, Unix stream with its length-prefixed frames) and Node `hot-shots` (UDP, TCP, Unix
//! datagram). Each sends the same kind of known workload through the library's own API (counts,
//! sample rates, timers with known values, gauges and deltas, sets, tags, events, service
//! checks; the scripts are in `tests/fixtures/clients/`), the test waits on the management port
//! until the daemon has counted every line, and SIGTERM's final flush then holds the whole
//! workload in one interval: every name and value is checked exactly.
//!
//! The libraries come from `.ci/run` (PyPI into `.ci/venv`, npm into `.ci/node`); a missing one
//! fails the test with the command that installs it.

mod common;

use common::{Daemon, Flush};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures/clients").join(name)
}

fn python() -> PathBuf {
    let p = repo().join(".ci/venv/bin/python");
    assert!(
        p.exists(),
        "{} not found: `bash .ci/run` installs the Python client libraries into .ci/venv",
        p.display()
    );
    p
}

fn node_modules() -> PathBuf {
    let m = repo().join(".ci/node/node_modules");
    assert!(
        m.join("hot-shots/package.json").exists(),
        "hot-shots not found in {}: `.ci/clients.sh` installs it",
        m.display()
    );
    m
}

/// Runs a client script to its end (a blocked client is killed after `WAIT`); panics with its
/// output when it fails.
fn run(mut cmd: Command) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("{cmd:?} failed ({s}):\n{text}"),
        None => panic!("{cmd:?} still running after {WAIT:?} (blocked on a full socket?):\n{text}"),
    }
}

/// A daemon with every input a client may use, a management port, and no flush but the last.
struct Target {
    d: Daemon,
    tcp: String,
    unix_dgram: PathBuf,
    unix_stream: PathBuf,
}

fn start(name: &str) -> Target {
    let dir = std::env::temp_dir().join(format!("kstatsd-clients-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (unix_dgram, unix_stream) = (dir.join("dsd.sock"), dir.join("stream.sock"));
    let d = Daemon::start(&[
        "--admin",
        "127.0.0.1:0",
        "--tcp",
        "127.0.0.1:0",
        "--unix-dgram",
        unix_dgram.to_str().unwrap(),
        "--unix-stream",
        unix_stream.to_str().unwrap(),
        "--flush-interval",
        "1h",
    ]);
    let tcp = d.listening("tcp").first().expect("a tcp listener").clone();
    Target { d, tcp, unix_dgram, unix_stream }
}

/// `stats json` from the management port.
fn admin_stats(d: &Daemon) -> serde_json::Value {
    let addr = d.listening("admin").first().expect("an admin listener").clone();
    let mut w = TcpStream::connect(addr).unwrap();
    w.set_read_timeout(Some(WAIT)).unwrap();
    w.write_all(b"stats json\n").unwrap();
    let mut r = BufReader::new(w);
    let mut text = String::new();
    loop {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "admin closed before END: {text}");
        if line == "END\n" {
            break;
        }
        text.push_str(&line);
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Waits until the daemon has counted `metrics` lines, `events` events and `checks` service
/// checks, then stops it and returns its final flush (the whole workload, one interval).
fn final_flush(t: Target, metrics: u64, events: u64, checks: u64) -> Flush {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = admin_stats(&t.d);
        let got = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("no {k} in {s}"));
        let now = (
            got("kstatsd.metrics_received"),
            got("kstatsd.events_received"),
            got("kstatsd.service_checks_received"),
        );
        if now == (metrics, events, checks) {
            break;
        }
        assert!(now.0 <= metrics && now.1 <= events && now.2 <= checks, "more than sent: {s}");
        assert!(Instant::now() < deadline, "counted {now:?} of {:?}: {s}", (metrics, events, checks));
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, flushes) = t.d.terminate(WAIT);
    assert!(status.success(), "{status}");
    flushes.into_iter().last().expect("the final flush")
}

/// Asserts every name's exact value, and that the flush has no other user counter, timer or
/// set than the ones named (a misread line would make one up).
fn assert_flush(f: &Flush, want: &[(&str, f64)]) {
    for (name, v) in want {
        assert_eq!(f.get(*name), Some(v), "{name} in {f:?}");
    }
    // Every user counter, and every timer's count, names a series.
    let names_a_series = |k: &str| {
        let timer_count = |r: &str| r.ends_with(".count") || r.contains(".count;");
        match (k.strip_prefix("stats_counts."), k.strip_prefix("stats.timers.")) {
            (Some(r), _) => !r.starts_with("statsd."),
            (_, Some(r)) => !r.starts_with("statsd.") && timer_count(r),
            _ => false,
        }
    };
    for k in f.keys().filter(|k| names_a_series(k)) {
        assert!(want.iter().any(|(n, _)| n == k), "unexpected {k} in {f:?}");
    }
    assert_eq!(f["stats_counts.statsd.bad_lines_seen"], 0.0, "{f:?}");
}

// ---- Python statsd ----

/// What `python_clients.py statsd` sends (34 lines), as flushed.
const PY_STATSD: &[(&str, f64)] = &[
    ("stats_counts.py.hits", 12.0),
    ("stats_counts.py.sampled", 16.0),
    ("stats_counts.py.piped", 5.0),
    ("stats.timers.py.lat.count", 5.0),
    ("stats.timers.py.lat.sum", 150.0),
    ("stats.timers.py.lat.sum_squares", 5500.0),
    ("stats.timers.py.lat.mean", 30.0),
    ("stats.timers.py.lat.lower", 10.0),
    ("stats.timers.py.lat.upper", 50.0),
    ("stats.timers.py.lat.median", 30.0),
    ("stats.timers.py.lat_sampled.count", 4.0),
    ("stats.timers.py.lat_sampled.sum", 14.0),
    ("stats.timers.py.piped_lat.count", 1.0),
    ("stats.timers.py.piped_lat.sum", 8.0),
    ("stats.gauges.py.level", 80.0),
    ("stats.gauges.py.below", -4.0),
    ("stats.sets.py.users.count", 2.0),
    ("stats_counts.statsd.metrics_received", 34.0),
];

fn python_statsd(transport: &str, name: &str, address: impl Fn(&Target) -> String) {
    let t = start(name);
    let mut cmd = Command::new(python());
    cmd.arg(fixture("python_clients.py")).args(["statsd", transport]).arg(address(&t));
    run(cmd);
    let f = final_flush(t, 34, 0, 0);
    assert_flush(&f, PY_STATSD);
}

#[test]
fn python_statsd_over_udp() {
    python_statsd("udp", "py-udp", |t| t.d.udp.to_string());
}

#[test]
fn python_statsd_over_tcp() {
    python_statsd("tcp", "py-tcp", |t| t.tcp.clone());
}

#[test]
fn python_statsd_over_a_unix_stream_newline_framed() {
    python_statsd("unix_stream", "py-unix", |t| t.unix_stream.display().to_string());
}

// ---- Python datadog (DogStatsd) ----

/// What `python_clients.py datadog` sends (31 lines, an event, a service check), as flushed.
const DOGSTATSD: &[(&str, f64)] = &[
    ("stats_counts.dd.hits;env=prod;role=web", 12.0),
    ("stats_counts.dd.sampled", 16.0),
    ("stats.timers.dd.lat.count", 5.0),
    ("stats.timers.dd.lat.sum", 150.0),
    ("stats.timers.dd.lat.sum_squares", 5500.0),
    ("stats.timers.dd.lat.lower", 10.0),
    ("stats.timers.dd.lat.upper", 50.0),
    ("stats.timers.dd.hist.count;env=prod", 3.0),
    ("stats.timers.dd.hist.sum;env=prod", 6.0),
    ("stats.timers.dd.hist.mean;env=prod", 2.0),
    ("stats.timers.dd.dist.count", 4.0),
    ("stats.timers.dd.dist.sum", 9.0),
    ("stats.gauges.dd.level;env=prod", 43.0),
    ("stats.sets.dd.users.count", 2.0),
    ("stats_counts.statsd.events_received", 1.0),
    ("stats_counts.statsd.service_checks_received", 1.0),
];

fn dogstatsd(transport: &str, name: &str, address: impl Fn(&Target) -> String, extra: u64) -> Flush {
    let t = start(name);
    let mut cmd = Command::new(python());
    cmd.arg(fixture("python_clients.py")).args(["datadog", transport]).arg(address(&t));
    run(cmd);
    let f = final_flush(t, 31 + extra, 1, 1);
    let mut want = DOGSTATSD.to_vec();
    if extra > 0 {
        want.push(("stats_counts.dd.volume", extra as f64));
    }
    want.push(("stats_counts.statsd.metrics_received", (31 + extra) as f64));
    assert_flush(&f, &want);
    f
}

#[test]
fn dogstatsd_over_udp() {
    let f = dogstatsd("udp", "dd-udp", |t| t.d.udp.to_string(), 0);
    assert_eq!(f["stats_counts.statsd.packets_received"], 33.0, "one datagram per call");
}

#[test]
fn dogstatsd_buffered_packs_many_lines_per_datagram() {
    let f = dogstatsd("buffered", "dd-buffered", |t| t.d.udp.to_string(), 0);
    // 33 calls, well under one 1432-byte payload: one datagram.
    assert_eq!(f["stats_counts.statsd.packets_received"], 1.0, "{f:?}");
}

#[test]
fn dogstatsd_over_a_unix_datagram_socket_blocking_loses_nothing() {
    // 700 more one-line datagrams than the receive queue holds (net.unix.max_dgram_qlen).
    let f = dogstatsd("unix_dgram", "dd-dgram", |t| t.unix_dgram.display().to_string(), 700);
    assert_eq!(f["stats_counts.dd.volume"], 700.0);
}

#[test]
fn dogstatsd_over_a_unix_stream_length_prefixed() {
    let f = dogstatsd("unix_stream", "dd-stream", |t| t.unix_stream.display().to_string(), 0);
    assert_eq!(f["stats_counts.statsd.connections_opened"], 1.0);
}

// ---- Node hot-shots ----

/// What `hot_shots.js` sends (33 lines, an event, a service check), as flushed.
const HOT_SHOTS: &[(&str, f64)] = &[
    ("stats_counts.hs.hits;env=prod;role=web", 12.0),
    ("stats_counts.hs.sampled", 16.0),
    ("stats.timers.hs.lat.count", 5.0),
    ("stats.timers.hs.lat.sum", 150.0),
    ("stats.timers.hs.lat.sum_squares", 5500.0),
    ("stats.timers.hs.lat.lower", 10.0),
    ("stats.timers.hs.lat.upper", 50.0),
    ("stats.timers.hs.lat_sampled.count", 4.0),
    ("stats.timers.hs.lat_sampled.sum", 14.0),
    ("stats.timers.hs.hist.count;env=prod", 3.0),
    ("stats.timers.hs.hist.sum;env=prod", 6.0),
    ("stats.timers.hs.dist.count", 1.0),
    ("stats.timers.hs.dist.sum", 4.5),
    ("stats.gauges.hs.level", 80.0),
    ("stats.sets.hs.users.count", 2.0),
    ("stats_counts.statsd.events_received", 1.0),
    ("stats_counts.statsd.service_checks_received", 1.0),
    ("stats_counts.statsd.metrics_received", 33.0),
];

fn hot_shots(transport: &str, name: &str, address: impl Fn(&Target) -> String) -> Flush {
    let t = start(name);
    let mut cmd = Command::new("node");
    cmd.arg(fixture("hot_shots.js"))
        .arg(transport)
        .arg(address(&t))
        .env("KSTATSD_NODE_MODULES", node_modules());
    run(cmd);
    let f = final_flush(t, 33, 1, 1);
    assert_flush(&f, HOT_SHOTS);
    f
}

#[test]
fn hot_shots_over_udp() {
    hot_shots("udp", "hs-udp", |t| t.d.udp.to_string());
}

#[test]
fn hot_shots_over_tcp() {
    let f = hot_shots("tcp", "hs-tcp", |t| t.tcp.clone());
    assert_eq!(f["stats_counts.statsd.connections_opened"], 1.0);
}

#[test]
fn hot_shots_over_a_unix_datagram_socket() {
    let f = hot_shots("uds", "hs-uds", |t| t.unix_dgram.display().to_string());
    assert_eq!(f["stats_counts.statsd.packets_received"], 35.0, "unbuffered: one datagram per call");
}
