//! The Graphite sink end to end: the real `kstatsd` binary flushing every second to a real
//! carbon-cache (Debian `graphite-carbon`, see `common/carbon.rs`), and the stored points read
//! back with `whisper-fetch`. Over plaintext and pickle: counters (rate and count, sample
//! rates), timer statistics with positive and negative percentiles, gauges with deltas, sets and
//! tagged series equal what was sent, and every name of the flush equals what the console sink
//! printed for that same flush. Carbon restarted under a flushing kstatsd: the queued flushes
//! arrive, the console keeps flushing meanwhile, ingest counts everything. A full queue drops its
//! oldest flushes and counts them. Carbon's own unpickler reads our split pickle frames.
#![cfg(feature = "peers")]

mod common;

use common::carbon::Carbon;
use common::{Daemon, Flush};
use kstatsd::sink::pickle::FrameWriter;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const T: Duration = Duration::from_secs(30);

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// kstatsd flushing every second to `carbon` over `protocol`, console JSON with counter rates
/// (so that it prints every name Graphite gets), short retry delays.
fn kstatsd(carbon: &Carbon, protocol: &str, extra: &[&str]) -> Daemon {
    let port = match protocol {
        "pickle" => carbon.pickle_port,
        _ => carbon.line_port,
    }
    .to_string();
    let mut args = vec![
        "--udp",
        "127.0.0.1:0",
        "--console",
        "json",
        "--counter-rates",
        "--flush-interval",
        "1",
        "--percentiles",
        "90,-10",
        "--graphite-host",
        "127.0.0.1",
        "--graphite-port",
        &port,
        "--graphite-protocol",
        protocol,
        "--graphite-retry-backoff",
        "50ms",
        "--graphite-retry-backoff-max",
        "200ms",
    ];
    args.extend_from_slice(extra);
    Daemon::start_raw(&args)
}

/// One datagram, so that it all lands in one interval.
const TRAFFIC: &str = "e2e.hits:3|c\ne2e.hits:2|c|@0.5\n\
                       e2e.lat:1|ms\ne2e.lat:2|ms\ne2e.lat:3|ms\ne2e.lat:4|ms\ne2e.lat:5|ms\n\
                       e2e.lat:6|ms\ne2e.lat:7|ms\ne2e.lat:8|ms\ne2e.lat:9|ms\ne2e.lat:10|ms\n\
                       e2e.temp:20|g\ne2e.temp:+5|g\ne2e.temp:-2.5|g\n\
                       e2e.users:a|s\ne2e.users:b|s\ne2e.users:a|s\ne2e.users:c|s\n\
                       e2e.req:1|c|#env:prod,host:h1\ne2e.req:2|c|#host:h1,env:prod\n\
                       e2e.tlat:5|ms|#env:prod";

/// What TRAFFIC must give, worked out by hand from aggregation.md.
const EXPECTED: &[(&str, f64)] = &[
    ("stats_counts.e2e.hits", 7.0),
    ("stats.timers.e2e.lat.count", 10.0),
    ("stats.timers.e2e.lat.lower", 1.0),
    ("stats.timers.e2e.lat.upper", 10.0),
    ("stats.timers.e2e.lat.sum", 55.0),
    ("stats.timers.e2e.lat.sum_squares", 385.0),
    ("stats.timers.e2e.lat.mean", 5.5),
    ("stats.timers.e2e.lat.median", 5.5),
    ("stats.timers.e2e.lat.std", 2.8722813232690143),
    ("stats.timers.e2e.lat.count_90", 9.0),
    ("stats.timers.e2e.lat.mean_90", 5.0),
    ("stats.timers.e2e.lat.upper_90", 9.0),
    ("stats.timers.e2e.lat.sum_90", 45.0),
    ("stats.timers.e2e.lat.sum_squares_90", 285.0),
    ("stats.timers.e2e.lat.count_top10", 1.0),
    ("stats.timers.e2e.lat.mean_top10", 10.0),
    ("stats.timers.e2e.lat.lower_top10", 10.0),
    ("stats.timers.e2e.lat.sum_top10", 10.0),
    ("stats.timers.e2e.lat.sum_squares_top10", 100.0),
    ("stats.gauges.e2e.temp", 22.5),
    ("stats.sets.e2e.users.count", 3.0),
    ("stats_counts.e2e.req;env=prod;host=h1", 3.0),
    ("stats.timers.e2e.tlat.upper;env=prod", 5.0),
    ("stats.timers.e2e.tlat.count;env=prod", 1.0),
];

/// Parses a console line with its clock.
fn parse_line(line: &str) -> (u64, Flush) {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    (v["clock"].as_u64().unwrap(), common::parse_flush(line))
}

fn round_trip(protocol: &str) {
    let carbon = Carbon::start();
    let d = kstatsd(&carbon, protocol, &[]);
    let started = unix_now();
    d.send(TRAFFIC);
    let hits = carbon.wait_for("stats_counts.e2e.hits", started, T, |p| p.values().any(|v| *v == 7.0));
    let clock = *hits.iter().find(|(_, v)| **v == 7.0).unwrap().0;
    let (status, lines) = d.terminate_lines(T);
    assert!(status.success(), "{status}");

    // The console's record of the same flush (the same snapshot went to both sinks).
    let flush = lines
        .iter()
        .map(|l| parse_line(l))
        .find(|(c, f)| *c == clock && f.get("stats_counts.e2e.hits") == Some(&7.0))
        .unwrap_or_else(|| panic!("no console flush at {clock} with the traffic: {lines:?}"))
        .1;
    for (name, want) in EXPECTED {
        let got = flush.get(*name).unwrap_or_else(|| panic!("{name} not flushed"));
        assert!((got - want).abs() <= 1e-12 * want.abs(), "{name}: {got}, expected {want}");
    }
    let rate = flush["stats.e2e.hits"];
    assert!((5.0..=7.7).contains(&rate), "rate {rate} for 7 hits in about 1 s");

    // Every name and value of that flush is stored in carbon at its clock, bit for bit.
    let mut missing = Vec::new();
    for (name, want) in &flush {
        let points = carbon.wait_for(name, clock, T, |p| p.contains_key(&clock));
        if points[&clock] != *want {
            missing.push(format!("{name}: carbon has {}, kstatsd flushed {want}", points[&clock]));
        }
    }
    assert!(missing.is_empty(), "{protocol}: {missing:#?}");
    assert!(flush.len() > 60, "{}", flush.len());
    // The sink's own figures went out too, and nothing was dropped.
    assert_eq!(flush.get("stats.statsd.graphiteStats.dropped"), Some(&0.0));
    assert!(flush.contains_key("stats.statsd.graphiteStats.flush_length"));

    // The final flush at SIGTERM was delivered before exit (`sent` grows with every flush, so
    // its value names that flush).
    let (last_clock, last) = parse_line(lines.last().unwrap());
    let sent = last["stats.statsd.graphiteStats.sent"];
    carbon.wait_for("stats.statsd.graphiteStats.sent", last_clock, T, |p| p.get(&last_clock) == Some(&sent));
}

#[test]
fn plaintext_points_in_carbon_equal_what_was_sent() {
    round_trip("plaintext");
}

#[test]
fn pickle_points_in_carbon_equal_what_was_sent() {
    round_trip("pickle");
}

#[test]
fn carbon_restarts_while_kstatsd_keeps_flushing_and_the_queued_flushes_arrive() {
    let mut carbon = Carbon::start();
    let d = kstatsd(&carbon, "plaintext", &[]);
    let t0 = unix_now();
    let total = |p: &BTreeMap<u64, f64>| p.values().sum::<f64>();
    let mut sent = 1.0;
    d.send("restart.hits:1|c");
    carbon.wait_for("stats_counts.restart.hits", t0, T, |p| total(p) == 1.0);

    carbon.stop();
    // Carbon is down: flushes still come out of the console, each counting its traffic, and the
    // Graphite queue holds several of them at once (a flush that waited on carbon would stall
    // them all until it came back). The test waits for that figure, not for a number of flushes
    // or a stretch of time: the console printed flushes while carbon stored the first point, and
    // those, read now, were made with carbon up.
    let mut flushes = Vec::new();
    let deadline = Instant::now() + T;
    loop {
        assert!(Instant::now() < deadline, "no flush queued with carbon down: {:?}", flushes.last());
        d.send("restart.hits:2|c");
        sent += 2.0;
        let f = d.next_flush(T);
        let down = f["stats.statsd.graphiteStats.retried"] > 0.0
            && f["stats.statsd.graphiteStats.queued_flushes"] >= 2.0;
        flushes.push(f);
        if down {
            break;
        }
    }
    let down = flushes.last().unwrap();
    assert!(down["stats.statsd.graphiteStats.last_exception"] >= t0 as f64);

    carbon.restart();
    for _ in 0..2 {
        d.send("restart.hits:4|c");
        sent += 4.0;
        flushes.push(d.next_flush(T));
    }
    // Every flush made while carbon was down arrives: the stored counts add up to what was sent.
    carbon.wait_for("stats_counts.restart.hits", t0, T, |p| total(p) == sent);

    let (status, lines) = d.terminate_lines(T);
    assert!(status.success());
    flushes.extend(lines.iter().map(|l| common::parse_flush(l)));
    let counted: f64 = flushes.iter().filter_map(|f| f.get("stats_counts.restart.hits")).sum();
    assert_eq!(counted, sent, "ingest counted every datagram");
    let end = flushes.last().unwrap();
    assert_eq!(end["stats.statsd.graphiteStats.dropped"], 0.0, "{end:?}");
    assert_eq!(end["stats.statsd.graphiteStats.queued_flushes"], 0.0, "{end:?}");
}

#[test]
fn a_full_queue_drops_the_oldest_flushes_and_counts_them() {
    // Carbon's ports, with nothing listening yet.
    let mut carbon = Carbon::start();
    carbon.stop();
    let t0 = unix_now();
    // A flush is a few KiB of lines: a 1 KiB bound keeps only the newest one.
    let d = kstatsd(&carbon, "pickle", &["--graphite-max-queue-bytes", "1KiB"]);
    let deadline = Instant::now() + T;
    let dropped = loop {
        assert!(Instant::now() < deadline, "no drops counted");
        let f = d.next_flush(T);
        if let Some(n) = f.get("stats.statsd.graphiteStats.dropped_queue_full") {
            assert_eq!(f["stats.statsd.graphiteStats.queued_flushes"], 1.0, "{f:?}");
            assert_eq!(f["stats.statsd.graphiteStats.sent"], 0.0);
            assert!(f["stats.statsd.graphiteStats.dropped"] >= *n);
            break *n;
        }
    };
    assert!(dropped > 0.0);

    carbon.restart();
    d.send("late.hits:5|c");
    carbon.wait_for("stats_counts.late.hits", t0, T, |p| p.values().any(|v| *v == 5.0));
    // The drop count itself reaches carbon with the next flushes.
    carbon.wait_for("stats.statsd.graphiteStats.dropped_queue_full", t0, T, |p| {
        p.values().any(|v| *v >= dropped)
    });
}

/// Carbon's safe unpickler (what its pickle receiver runs) reads our frames back, split under
/// a small limit, with timestamps before and after 2038 and awkward floats.
#[test]
fn pickle_frames_are_read_by_carbons_own_unpickler() {
    let mut out = Vec::new();
    let limit = 2048;
    let mut frames = FrameWriter::new(limit);
    frames.begin(&mut out);
    let mut want = Vec::new();
    for i in 0..400u64 {
        let name = format!("stats.timers.api.é{i}.upper_90;env=prod");
        let ts = if i % 2 == 0 { 1_800_000_000 + i } else { 4_000_000_000 + i };
        let v = match i % 5 {
            0 => -0.0,
            1 => 1e300,
            2 => 5e-324,
            _ => i as f64 / 7.0,
        };
        assert!(frames.push(&mut out, &name, ts, v));
        want.push((name, ts, v));
    }
    let n = frames.finish(&mut out);
    assert!(n >= 10, "{n} frames");
    let script = r#"
import json, struct, sys
from carbon.util import get_unpickler
unpickler = get_unpickler(insecure=False)
data = sys.stdin.buffer.read()
out, at = [], 0
while at < len(data):
    (length,) = struct.unpack('!L', data[at:at + 4])
    assert length <= int(sys.argv[1]), length
    for path, (ts, value) in unpickler.loads(data[at + 4:at + 4 + length]):
        assert type(path) is str and type(ts) is int and type(value) is float
        out.append([path, ts, repr(value)])
    at += 4 + length
print(json.dumps(out))
"#;
    let mut py = Command::new("/usr/bin/python3")
        .args(["-c", script, &limit.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 (with graphite-carbon installed)");
    py.stdin.take().unwrap().write_all(&out).unwrap();
    let res = py.wait_with_output().unwrap();
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let got: Vec<(String, u64, String)> = serde_json::from_slice(&res.stdout).unwrap();
    assert_eq!(got.len(), want.len());
    for ((gn, gt, gv), (wn, wt, wv)) in got.iter().zip(&want) {
        assert_eq!((gn, gt), (wn, wt));
        // Python's repr is the shortest string that reads back to the same bits
        assert_eq!(gv.parse::<f64>().unwrap().to_bits(), wv.to_bits(), "{gn}: {gv}");
    }
}

/// A carbon that never answers: a listener whose accept queue is full, so that connecting hangs
/// until the 30 s timeout (as a host that drops packets). Flushes go on meanwhile, and SIGTERM
/// exits without waiting for that connect, counting the flushes it could not deliver.
#[test]
fn a_carbon_that_never_answers_delays_neither_flushes_nor_shutdown() {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    // Fill the accept queue (nobody accepts) until a connection attempt hangs.
    let mut held = Vec::new();
    loop {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
        assert!(held.len() < 64, "the accept queue never filled");
    }
    let port = addr.port().to_string();
    let d = Daemon::start_raw(&[
        "--udp",
        "127.0.0.1:0",
        "--console",
        "json",
        "--flush-interval",
        "1",
        "--graphite-port",
        &port,
        "--graphite-timeout",
        "30s",
        "--shutdown-timeout",
        "1s",
    ]);
    for i in 0..4 {
        d.send(&format!("hang.hits:{}|c", i + 1));
        let f = d.next_flush(Duration::from_secs(10));
        if i == 3 {
            // Four flushes out while the worker is still inside its first connect (nothing sent,
            // nothing failed yet, the flushes queued): none of them waited for it.
            assert_eq!(f["stats.statsd.graphiteStats.sent"], 0.0);
            assert_eq!(f["stats.statsd.graphiteStats.retried"], 0.0);
            assert!(f["stats.statsd.graphiteStats.queued_flushes"] >= 2.0, "{f:?}");
        }
    }
    // The exit does not wait for the connect either: 10 s is well short of its 30 s timeout and
    // far above the 1 s shutdown_timeout (whose bound tests/faults.rs checks), so this holds
    // however busy the machine is.
    let (status, lines) = d.terminate_lines(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    assert!(!lines.is_empty(), "the final flush was printed");
    drop(held);
}
