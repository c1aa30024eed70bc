//! The Kafka REST Proxy sink end to end: a real daemon (in-process with the real sockets, loop,
//! flush thread and sinks, or the real binary) ships its flushes to the REST Proxy emulator in
//! `common/kafka_emulator.rs`, which implements the v2 produce contract and injects faults.
//!
//! In-process daemons run the JSON console sink next to the Kafka sink: both receive the same
//! snapshot, so every console line is exactly the `flat` record value the proxy must receive.
//! That is the oracle for byte-exact checks; what was sent over UDP pins the numbers.

mod common;

use common::kafka_emulator::{
    unbase64, Emulator, Fault, Flavour, Record, RecordFault, RetryAfter, State, BINARY_V2, JSON_V1, JSON_V2,
    MAX_BODY,
};
use common::{parse_flush, Daemon, Flush};
use kstatsd::config::{parse_file, Config, Overrides};
use kstatsd::daemon;
use kstatsd::flush::{Naming, Snapshot};
use kstatsd::sink::console::ConsoleFormat;
use kstatsd::sink::kafka_rest::KafkaRest;
use kstatsd::sink::{Console, FlushReport, Sink, SinkError};
use serde_json::value::RawValue;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(15);

#[global_allocator]
static GLOBAL: common::alloc::Counting = common::alloc::Counting;

/// The Kafka sink, with the allocations its `flush` makes on the flush thread counted, and
/// whether its queue was empty (every earlier payload delivered, its buffers in the pool) when
/// the flush began.
struct Measured(KafkaRest, Arc<Mutex<Vec<(u64, bool)>>>);

impl Sink for Measured {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn flush(&mut self, snapshot: &Snapshot, naming: &Naming) -> Result<FlushReport, SinkError> {
        let mut idle = false;
        self.0.meta(&mut |k, v| idle |= k == "queue_payloads" && v == 0.0);
        let (r, allocations) = common::alloc::counted(|| self.0.flush(snapshot, naming));
        self.1.lock().unwrap().push((allocations, idle));
        r
    }
    fn meta(&self, write: &mut dyn FnMut(&'static str, f64)) {
        self.0.meta(write)
    }
    fn shutdown(&mut self, deadline: Instant) -> Result<(), SinkError> {
        self.0.shutdown(deadline)
    }
}

// ---- an in-process daemon with a console sink the test reads and the Kafka sink ----

/// A `Write` that hands each complete line to the test.
struct Lines(Sender<(Instant, String)>, Vec<u8>);

impl Write for Lines {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.1.extend_from_slice(b);
        while let Some(i) = self.1.iter().position(|&c| c == b'\n') {
            let line: Vec<u8> = self.1.drain(..=i).collect();
            let _ = self.0.send((Instant::now(), String::from_utf8(line[..i].to_vec()).unwrap()));
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Running {
    udp: SocketAddr,
    stop: Arc<AtomicBool>,
    wake: UnixStream,
    runner: Option<JoinHandle<std::io::Result<()>>>,
    console: Receiver<(Instant, String)>,
    sender: UdpSocket,
    /// Every console line so far, with when it arrived.
    lines: Vec<(Instant, String)>,
}

/// A daemon flushing to the console (read by the test) and to the proxy per `kafka` (lines of
/// `[sinks.kafka_rest]`), with `aggregate` and `server` lines added to those tables.
fn start(kafka: &str, aggregate: &str, server: &str) -> Running {
    start_with(kafka, aggregate, server, |k| Box::new(k))
}

/// `start`, with the Kafka sink wrapped by `wrap`.
fn start_with(
    kafka: &str,
    aggregate: &str,
    server: &str,
    wrap: impl FnOnce(KafkaRest) -> Box<dyn Sink>,
) -> Running {
    let toml = format!(
        "[server]\nudp = [\"127.0.0.1:0\"]\nadmin = \"off\"\n{server}\n[aggregate]\n{aggregate}\n\
         [sinks.console]\nformat = \"json\"\n[sinks.kafka_rest]\n{kafka}\n"
    );
    let config = Config::build(parse_file(&toml).unwrap(), &Overrides::default()).unwrap();
    let (tx, console) = channel();
    let a = &config.aggregate;
    let sinks: Vec<Box<dyn Sink>> = vec![
        Box::new(Console::new(ConsoleFormat::Json, a.counter_rates, Box::new(Lines(tx, Vec::new())))),
        wrap(KafkaRest::new(config.kafka_rest.as_ref().unwrap(), a.counter_rates, &a.meta_prefix).unwrap()),
    ];
    let daemon::Daemon { server, udp, stop, wake } = daemon::build(&config, sinks).unwrap();
    let runner = std::thread::spawn(move || server.run());
    Running {
        udp: udp[0],
        stop,
        wake,
        runner: Some(runner),
        console,
        sender: UdpSocket::bind("127.0.0.1:0").unwrap(),
        lines: Vec::new(),
    }
}

/// `[sinks.kafka_rest]` lines pointing at `emu`, plus `extra`.
fn kafka(emu: &Emulator, extra: &str) -> String {
    format!("url = \"{}\"\ntopic = \"metrics\"\n{extra}", emu.url())
}

impl Running {
    fn send(&self, datagram: &str) {
        self.sender.send_to(datagram.as_bytes(), self.udp).unwrap();
    }

    /// The next console line.
    fn next_line(&mut self) -> String {
        let (at, line) = self.console.recv_timeout(T).expect("a console flush");
        self.lines.push((at, line.clone()));
        line
    }

    /// The next console line whose flush satisfies `pred`.
    fn line_with(&mut self, what: &str, pred: impl Fn(&Flush) -> bool) -> String {
        let deadline = Instant::now() + T;
        loop {
            assert!(Instant::now() < deadline, "no console flush with {what} within {T:?}");
            let line = self.next_line();
            if pred(&parse_flush(&line)) {
                return line;
            }
        }
    }

    /// Stops the loop (final flush, sinks drained until `shutdown_timeout`); returns how long it took.
    fn stop(&mut self) -> Duration {
        let t = Instant::now();
        if let Some(r) = self.runner.take() {
            self.stop.store(true, Ordering::SeqCst);
            let _ = self.wake.write_all(b"x");
            r.join().unwrap().unwrap();
        }
        t.elapsed()
    }

    fn lines(&self) -> Vec<String> {
        self.lines.iter().map(|(_, l)| l.clone()).collect()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.stop();
        } else {
            self.stop.store(true, Ordering::SeqCst);
            let _ = self.wake.write_all(b"x");
        }
    }
}

fn kafka_stat(f: &Flush, key: &str) -> f64 {
    f.get(&format!("stats.statsd.kafkaStats.{key}")).copied().unwrap_or(0.0)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string()
}

/// Splits a flat record value into the text inside `gauges` and what follows it.
fn flat_parts(v: &str) -> (&str, &str) {
    let inner = v.strip_prefix("{\"gauges\":{").unwrap_or_else(|| panic!("not a flat record: {v:.200}"));
    let at = inner.rfind("},\"durationUnit\":").expect("a flat record's trailer");
    (&inner[..at], &inner[at..])
}

/// A run of consecutive accepted records that, put back together, make `line` exactly: each a
/// piece of its `gauges` cut between two entries, each ending with the same durationUnit,
/// clock and rateUnit.
fn run_of(accepted: &[Record], line: &str) -> Option<Vec<Record>> {
    let (inner, trailer) = flat_parts(line);
    'start: for i in 0..accepted.len() {
        let mut pos = 0;
        let mut run = Vec::new();
        for r in &accepted[i..] {
            if !r.value.starts_with("{\"gauges\":{") {
                continue 'start;
            }
            let (ri, rt) = flat_parts(&r.value);
            if rt != trailer {
                continue 'start;
            }
            if pos > 0 {
                if !inner[pos..].starts_with(',') {
                    continue 'start;
                }
                pos += 1;
            }
            if ri.is_empty() || !inner[pos..].starts_with(ri) {
                continue 'start;
            }
            pos += ri.len();
            run.push(r.clone());
            if pos == inner.len() {
                return Some(run);
            }
        }
    }
    None
}

/// Whether `r` is the tagged record of the series `name`.
fn named(r: &Record, name: &str) -> bool {
    r.value.contains(&format!("\"name\":\"{name}\""))
}

/// Waits until the proxy accepted the tagged record of `name`; returns every request and record
/// so far, and where the first request that carried it sits.
fn once_accepted(emu: &Emulator, name: &str) -> (Vec<common::kafka_emulator::Request>, Vec<Record>, usize) {
    emu.wait_for(T, name, |s| s.accepted.iter().any(|r| named(r, name)).then_some(()));
    let (requests, accepted) = emu.with(|s| (s.requests.clone(), s.accepted.clone()));
    let k = requests.iter().position(|r| r.records.iter().any(|x| named(x, name))).unwrap();
    (requests, accepted, k)
}

/// Asserts the per-record results of `r`: the record of each series named in `codes` failed with
/// its code, every other one was produced. Returns where each named record sits (from 1).
fn results_are(r: &common::kafka_emulator::Request, codes: &[(&str, i64)]) -> Vec<usize> {
    let mut at = vec![0; codes.len()];
    for (i, (rec, res)) in r.records.iter().zip(&r.results).enumerate() {
        let want = codes.iter().position(|(n, _)| named(rec, n));
        if let Some(j) = want {
            at[j] = i + 1;
        }
        assert_eq!(*res, want.map(|j| codes[j].1), "{}", rec.value);
    }
    assert!(at.iter().all(|&i| i > 0), "{codes:?} not all in the request");
    at
}

fn accepted_values(s: &State) -> Vec<String> {
    s.accepted.iter().map(|r| r.value.clone()).collect()
}

// ---- formats and key ----

#[test]
fn flat_records_are_the_console_flushes_byte_for_byte_keyed_by_the_host_name() {
    let emu = Emulator::start();
    let mut d = start(&kafka(&emu, ""), "flush_interval = \"100ms\"\npercentiles = [90]", "");
    d.send("api.lat:100|ms|#env:prod,host:h1\napi.lat:200|ms|#env:prod,host:h1\nhits:3|c|#a:1\nq:12|g\nusers:x|s\nusers:y|s");
    let line =
        d.line_with("the datagram", |f| f.contains_key("stats.timers.api.lat.upper_90;env=prod;host=h1"));
    let f = parse_flush(&line);
    assert_eq!(f["stats_counts.hits;a=1"], 3.0);
    assert_eq!(f["stats.timers.api.lat.sum;env=prod;host=h1"], 300.0);
    assert_eq!(f["stats.gauges.q"], 12.0);
    assert_eq!(f["stats.sets.users.count"], 2.0);
    let rec = emu.wait_for(T, "that flush", |s| s.accepted.iter().find(|r| r.value == line).cloned());
    assert_eq!(rec.key, Some(hostname()));

    // Three more flushes: everything accepted so far is the console's lines, in order, once each.
    for _ in 0..3 {
        d.next_line();
    }
    let last = d.lines().last().unwrap().clone();
    emu.wait_for(T, "the last flush", |s| s.accepted.iter().any(|r| r.value == last).then_some(()));
    let lines = d.lines();
    let (requests, accepted) = emu.with(|s| (s.requests.clone(), accepted_values(s)));
    assert_eq!(accepted[..], lines[..accepted.len()]);
    assert!(accepted.len() >= 4);
    for r in &requests {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/topics/metrics"));
        assert_eq!(r.content_type, JSON_V2);
        assert_eq!(r.accept, "application/vnd.kafka.v2+json, application/json");
        assert_eq!(r.status, 200);
        assert_eq!(r.conn, requests[0].conn, "one keep-alive connection for every flush");
    }
}

#[test]
fn tagged_records_are_one_per_series_with_tags_as_a_json_object() {
    let emu = Emulator::start();
    let mut d = start(
        &kafka(&emu, "format = \"tagged\"\nkey = \"rack-7\""),
        "flush_interval = \"100ms\"\npercentiles = [90]\ncounter_rates = true",
        "",
    );
    d.send("api.lat:100|ms|#env:prod,host:h1\napi.lat:200|ms|#host:h1,env:prod\nhits:3|c|#a:1\nq:12|g\nusers:x|s\nusers:y|s");
    let line =
        d.line_with("the datagram", |f| f.contains_key("stats.timers.api.lat.upper_90;env=prod;host=h1"));
    #[derive(serde::Deserialize)]
    struct Raw {
        gauges: BTreeMap<String, Box<RawValue>>,
        clock: u64,
    }
    let raw: Raw = serde_json::from_str(&line).unwrap();
    let n = |k: &str| raw.gauges.get(k).unwrap_or_else(|| panic!("{k} not flushed")).get().to_string();
    let c = raw.clock;
    let t =
        |stat: &str| format!("\"{stat}\":{}", n(&format!("stats.timers.api.lat.{stat};env=prod;host=h1")));
    let timer_stats = [
        "count",
        "count_ps",
        "lower",
        "upper",
        "sum",
        "sum_squares",
        "mean",
        "median",
        "std",
        "count_90",
        "mean_90",
        "upper_90",
        "sum_90",
        "sum_squares_90",
    ];
    let expected = [
        format!(
            "{{\"name\":\"hits\",\"type\":\"counter\",\"tags\":{{\"a\":\"1\"}},\"clock\":{c},\"values\":{{\"count\":3,\"rate\":{}}}}}",
            n("stats.hits;a=1")
        ),
        format!(
            "{{\"name\":\"api.lat\",\"type\":\"timer\",\"tags\":{{\"env\":\"prod\",\"host\":\"h1\"}},\"clock\":{c},\"values\":{{{}}}}}",
            timer_stats.map(t).join(",")
        ),
        format!("{{\"name\":\"q\",\"type\":\"gauge\",\"tags\":{{}},\"clock\":{c},\"values\":{{\"value\":12}}}}"),
        format!("{{\"name\":\"users\",\"type\":\"set\",\"tags\":{{}},\"clock\":{c},\"values\":{{\"count\":2}}}}"),
        format!(
            "{{\"name\":\"statsd.numStats\",\"type\":\"gauge\",\"tags\":{{}},\"clock\":{c},\"values\":{{\"value\":{}}}}}",
            n("statsd.numStats")
        ),
    ];
    assert!(expected[1].contains("\"lower\":100,\"upper\":200,\"sum\":300"), "{}", expected[1]);
    let found = emu.wait_for(T, "the tagged records of that flush", |s| {
        let got: Vec<&Record> =
            expected.iter().filter_map(|e| s.accepted.iter().find(|r| &r.value == e)).collect();
        (got.len() == expected.len()).then(|| got.into_iter().cloned().collect::<Vec<_>>())
    });
    assert!(found.iter().all(|r| r.key.as_deref() == Some("rack-7")));
    // One record per series: the flush's records are exactly its series.
    let of_flush: Vec<Record> = emu.with(|s| {
        s.accepted.iter().filter(|r| r.value.contains(&format!("\"clock\":{c},"))).cloned().collect()
    });
    let names: HashSet<String> = of_flush
        .iter()
        .map(|r| {
            serde_json::from_str::<serde_json::Value>(&r.value).unwrap()["name"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(
        names.contains("statsd.packets_received") && names.contains("statsd.kafkaStats.records_sent"),
        "{names:?}"
    );
}

#[test]
fn binary_content_type_without_key_carries_the_same_value_base64_encoded() {
    let emu = Emulator::start();
    let mut d = start(
        &kafka(&emu, &format!("content_type = \"{BINARY_V2}\"\nkey = \"none\"")),
        "flush_interval = \"100ms\"",
        "",
    );
    d.send("bin.c:5|c");
    let line = d.line_with("bin.c", |f| f.get("stats_counts.bin.c") == Some(&5.0));
    let rec = emu.wait_for(T, "that flush", |s| s.accepted.iter().find(|r| r.value == line).cloned());
    assert_eq!(rec.key, None);
    let requests = emu.with(|s| s.requests.clone());
    let body: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
    let first = &body["records"][0];
    assert!(first.get("key").is_none(), "{first}");
    assert!(unbase64(first["value"].as_str().unwrap()).is_some());
    assert!(requests.iter().all(|r| r.content_type == BINARY_V2));
}

#[test]
fn the_v1_content_type_is_sent_with_its_accept_header() {
    let emu = Emulator::start();
    let mut d =
        start(&kafka(&emu, &format!("content_type = \"{JSON_V1}\"")), "flush_interval = \"100ms\"", "");
    let line = d.next_line();
    emu.wait_for(T, "the first flush", |s| s.accepted.iter().any(|r| r.value == line).then_some(()));
    let r = emu.with(|s| s.requests[0].clone());
    assert_eq!(r.content_type, JSON_V1);
    assert_eq!(r.accept, "application/vnd.kafka.v1+json, application/json");
}

#[test]
fn basic_auth_from_the_url_reaches_the_proxy() {
    let emu = Emulator::start();
    // user `k user`, password `s3cr:t@` (percent-encoded in the URL)
    emu.with(|s| s.credentials = Some("Basic ayB1c2VyOnMzY3I6dEA=".into()));
    let url = format!("http://k%20user:s3cr%3At%40@{}", emu.addr);
    let mut d = start(&format!("url = \"{url}\"\ntopic = \"metrics\""), "flush_interval = \"100ms\"", "");
    let line = d.next_line();
    emu.wait_for(T, "the first flush", |s| s.accepted.iter().any(|r| r.value == line).then_some(()));
}

#[test]
fn once_warm_the_flush_thread_serializes_and_enqueues_without_allocating() {
    for format in ["flat", "tagged"] {
        let emu = Emulator::start();
        let counts = Arc::new(Mutex::new(Vec::new()));
        let c = Arc::clone(&counts);
        let mut d = start_with(
            &kafka(&emu, &format!("format = \"{format}\"")),
            "flush_interval = \"100ms\"\npercentiles = [90, 99]",
            "",
            move |k| Box::new(Measured(k, c)),
        );
        let lines: String = (0..200)
            .map(|i| format!("w.c{i}:1|c|#env:prod\nw.t{i}:{i}|ms\nw.g{i}:{i}|g\nw.s{i}:u{i}|s\n"))
            .collect();
        d.send(&lines);
        // Flushes that begin once every earlier one was delivered find their buffers in the pool
        // (on a loaded machine a delivery can take longer than the interval: those flushes need
        // fresh buffers, and are not the ones measured). Five such flushes once warm.
        let warm = |c: &[(u64, bool)]| c.iter().skip(4).filter(|(_, idle)| *idle).count();
        let deadline = Instant::now() + T;
        while warm(&counts.lock().unwrap()) < 5 {
            assert!(
                Instant::now() < deadline,
                "{format}: the queue was never empty: {:?}",
                counts.lock().unwrap()
            );
            d.next_line();
        }
        let last = d.lines().last().unwrap().clone();
        if format == "flat" {
            emu.wait_for(T, "the last flush", |s| s.accepted.iter().any(|r| r.value == last).then_some(()));
        }
        let counts = counts.lock().unwrap().clone();
        assert!(parse_flush(&last)["statsd.numStats"] > 800.0);
        assert!(counts[0].0 > 0, "the first flush allocates its buffers: {counts:?}");
        let measured: Vec<u64> = counts.iter().skip(4).filter(|(_, idle)| *idle).map(|(a, _)| *a).collect();
        assert!(measured.iter().all(|&a| a == 0), "{format}: allocations per flush {counts:?}");
    }
}

// ---- size limits ----

#[test]
fn a_flush_of_100k_series_is_split_into_records_and_requests_under_the_limits() {
    let emu = Emulator::start();
    let mut d = start(&kafka(&emu, ""), "flush_interval = \"500ms\"", "recv_buffer = \"16MiB\"");
    let datagrams: Vec<String> = (0..100_000)
        .collect::<Vec<u32>>()
        .chunks(250)
        .map(|c| c.iter().map(|i| format!("split.series.{i}:1|c\n")).collect())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let line = 'found: loop {
        assert!(Instant::now() < deadline, "100k series never reached one flush");
        for dg in &datagrams {
            d.send(dg);
        }
        // Known series are reported every interval: the next flush or the one after has them
        // all, unless the kernel dropped datagrams (then send them again).
        for _ in 0..3 {
            let line = d.next_line();
            if parse_flush(&line)["statsd.numStats"] >= 100_000.0 {
                break 'found line;
            }
        }
    };
    assert!(line.len() > 2 * 900 * 1024, "a flush of {} bytes", line.len());
    let run = emu.wait_for(T, "the 100k flush, split", |s| run_of(&s.accepted, &line));
    assert!(run.len() >= 3, "{} records", run.len());
    for r in &run {
        assert!(r.value.len() <= 900 * 1024, "a record of {} bytes", r.value.len());
        let v: serde_json::Value = serde_json::from_str(&r.value).unwrap();
        assert_eq!(v["durationUnit"], "milliseconds");
        assert_eq!(v["rateUnit"], "seconds");
        assert!(v["clock"].as_u64().is_some());
        assert_eq!(r.key, Some(hostname()));
    }
    // The default max_request_bytes fits Karapace's 1 MiB body limit: no 413 round trip.
    let answers: Vec<(usize, u16)> =
        emu.with(|s| s.requests.iter().map(|r| (r.body.len(), r.status)).collect());
    assert!(answers.iter().all(|&(b, _)| b <= MAX_BODY), "request sizes {answers:?}");
    assert!(answers.iter().all(|&(_, status)| status == 200), "answers {answers:?}");
    assert!(answers.iter().any(|&(b, _)| b > 900 << 10), "requests filled to the limit: {answers:?}");
}

#[test]
fn records_the_proxy_finds_too_large_are_split_and_never_resent_as_is() {
    split_case(|s| s.max_record = Some(1500), 1500, |r| r.results.contains(&Some(50002)));
}

#[test]
fn records_karapace_refuses_as_too_large_in_a_422_are_split_and_never_resent_as_is() {
    split_case(
        |s| {
            s.flavour = Flavour::Karapace;
            s.max_record = Some(1500);
        },
        1500,
        |r| r.status == 422 && r.results.contains(&Some(1)),
    );
}

#[test]
fn a_413_splits_the_request_and_never_resends_it_as_is() {
    split_case(|s| s.max_body = Some(2500), usize::MAX, |r| r.status == 413);
}

/// 60 counters (a ~4 KB flat record) against a proxy limited by `limit`: the flush arrives
/// whole, cut between entries, and nothing the proxy refused for its size is sent again.
fn split_case(
    limit: impl FnOnce(&mut State),
    max_record: usize,
    refused: impl Fn(&common::kafka_emulator::Request) -> bool,
) {
    let emu = Emulator::start();
    emu.with(limit);
    let mut d = start(
        &kafka(&emu, "retry_backoff = \"10ms\""),
        "flush_interval = \"100ms\"\ndelete_idle_stats = true",
        "",
    );
    let lines: String = (0..60).map(|i| format!("big.metric.number.{i}:{i}|c\n")).collect();
    d.send(&lines);
    let line = d.line_with("the counters", |f| f.contains_key("stats_counts.big.metric.number.59"));
    assert!(line.len() > 3000);
    let run = emu.wait_for(T, "the flush, split", |s| run_of(&s.accepted, &line));
    assert!(run.len() >= 2 && run.iter().all(|r| r.value.len() <= max_record));
    let requests = emu.with(|s| s.requests.clone());
    assert!(requests.iter().any(&refused), "the proxy never refused anything");
    for (i, r) in requests.iter().enumerate().filter(|(_, r)| refused(r)) {
        for later in &requests[i + 1..] {
            assert_ne!(later.body, r.body, "a refused request was resent as is");
            for (rec, res) in r.records.iter().zip(&r.results) {
                if res.is_some() {
                    assert!(!later.records.contains(rec), "a record refused as too large was resent as is");
                }
            }
        }
    }
    let f = parse_flush(&d.next_line());
    assert_eq!(kafka_stat(&f, "records_dropped"), 0.0);
}

// ---- failures ----

#[test]
fn records_wait_out_an_outage_and_arrive_once_in_order() {
    let mut emu = Emulator::start();
    emu.down();
    let mut d = start(
        &kafka(&emu, "retry_backoff = \"20ms\"\nretry_backoff_max = \"100ms\""),
        "flush_interval = \"100ms\"",
        "",
    );
    for i in 1..=5 {
        d.send(&format!("outage.c:{i}|c"));
        d.next_line();
    }
    assert!(emu.with(|s| s.requests.is_empty()));
    emu.up();
    let last = d.lines().last().unwrap().clone();
    emu.wait_for(T, "the flushes made during the outage", |s| {
        s.accepted.iter().any(|r| r.value == last).then_some(())
    });
    let accepted = emu.with(|s| accepted_values(s));
    let lines = d.lines();
    assert_eq!(accepted[..], lines[..accepted.len()], "every flush once, in order");
    let f = parse_flush(&d.line_with("the retries counted", |f| kafka_stat(f, "records_sent") >= 5.0));
    assert!(kafka_stat(&f, "records_retried") > 0.0);
    assert!(kafka_stat(&f, "last_exception") > 0.0);
    assert!(kafka_stat(&f, "last_flush") >= kafka_stat(&f, "last_exception"));
    assert_eq!(kafka_stat(&f, "records_dropped"), 0.0);
}

#[test]
fn retriable_answers_resend_the_same_records_after_backoff_honouring_retry_after() {
    let emu = Emulator::start();
    emu.with(|s| {
        s.faults = [
            Fault::Status { status: 429, error_code: 42901, retry_after: Some(RetryAfter::Seconds(1)) },
            // An HTTP-date 2 s after the answer, to the second: at least a second's wait.
            Fault::Status { status: 503, error_code: 50302, retry_after: Some(RetryAfter::DateIn(2)) },
            Fault::status(500),
            Fault::status(502),
            Fault::status(504),
            Fault::Hang,
            Fault::Close,
        ]
        .into()
    });
    let mut d = start(
        &kafka(&emu, "timeout = \"300ms\"\nretry_backoff = \"20ms\"\nretry_backoff_max = \"100ms\""),
        "flush_interval = \"100ms\"",
        "",
    );
    let reqs =
        emu.wait_for(T, "eight attempts", |s| (s.requests.len() >= 8).then(|| s.requests[..8].to_vec()));
    let statuses: Vec<u16> = reqs.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 503, 500, 502, 504, 0, 0, 200]);
    assert!(reqs.iter().all(|r| r.body == reqs[0].body), "each attempt resends the same records");
    let waited = reqs[1].at - reqs[0].at;
    assert!(waited >= Duration::from_millis(990), "Retry-After: 1 honoured, waited {waited:?}");
    let waited = reqs[2].at - reqs[1].at;
    assert!(waited >= Duration::from_millis(990), "Retry-After as an HTTP-date honoured, waited {waited:?}");
    for w in reqs[2..5].windows(2) {
        assert!(w[1].at - w[0].at >= Duration::from_millis(10), "a backoff between attempts");
    }
    let value = reqs[7].records[0].value.clone();
    let f = parse_flush(&d.line_with("the retries counted", |f| {
        kafka_stat(f, "records_retried") >= 7.0 && kafka_stat(f, "records_sent") >= 1.0
    }));
    assert_eq!(kafka_stat(&f, "records_dropped"), 0.0);
    assert_eq!(emu.with(|s| s.accepted.iter().filter(|r| r.value == value).count()), 1);
    // The attempts after the hang and after the close went out while the proxy might have had
    // the record already: the two possible duplicates, counted. The 5xx answers were answers.
    assert_eq!(kafka_stat(&f, "records_resent_after_timeout"), 2.0);
}

#[test]
fn a_record_karapace_timed_out_is_resent_and_counted_as_a_possible_duplicate() {
    let emu = Emulator::start();
    emu.with(|s| {
        s.flavour = Flavour::Karapace;
        s.record_faults = vec![RecordFault {
            value_contains: "\"name\":\"late.c\"".into(),
            error_code: 1,
            error: "timed out waiting to publish message".into(),
            times: 1,
        }]
    });
    let mut d = start(
        &kafka(&emu, "format = \"tagged\"\nretry_backoff = \"10ms\""),
        "flush_interval = \"100ms\"\ndelete_idle_stats = true",
        "",
    );
    d.send("late.c:4|c");
    let (requests, accepted, k) = once_accepted(&emu, "late.c");
    results_are(&requests[k], &[("late.c", 1)]);
    assert_eq!(requests[k].status, 422);
    let late = requests[k].records.iter().find(|r| named(r, "late.c")).unwrap();
    assert_eq!(requests[k + 1].records, std::slice::from_ref(late), "the timed-out record alone, again");
    assert_eq!(accepted.iter().filter(|r| named(r, "late.c")).count(), 1);
    let f = parse_flush(
        &d.line_with("the resend counted", |f| kafka_stat(f, "records_resent_after_timeout") > 0.0),
    );
    assert_eq!(kafka_stat(&f, "records_resent_after_timeout"), 1.0);
    assert_eq!(kafka_stat(&f, "records_dropped"), 0.0);
}

#[test]
fn per_record_errors_resend_only_the_failed_records() {
    let emu = Emulator::start();
    emu.with(|s| {
        s.record_faults = vec![
            RecordFault {
                value_contains: "\"name\":\"partial.retry\"".into(),
                error_code: 50003,
                error: "org.apache.kafka.common.errors.NotLeaderOrFollowerException".into(),
                times: 2,
            },
            RecordFault {
                value_contains: "\"name\":\"partial.reject\"".into(),
                error_code: 50002,
                error: "org.apache.kafka.common.errors.InvalidRecordException: rejected".into(),
                times: usize::MAX,
            },
        ]
    });
    let mut d = start(
        &kafka(&emu, "format = \"tagged\"\nretry_backoff = \"10ms\""),
        "flush_interval = \"100ms\"\ndelete_idle_stats = true",
        "",
    );
    d.send("partial.retry:1|c\npartial.reject:1|c\npartial.ok:1|c");
    let has = named;
    let (requests, accepted, k) = once_accepted(&emu, "partial.retry");
    let first = &requests[k];
    assert!(first.records.len() > 3);
    results_are(first, &[("partial.retry", 50003), ("partial.reject", 50002)]);
    let retry = first.records.iter().find(|x| has(x, "partial.retry")).unwrap();
    assert_eq!(requests[k + 1].records, std::slice::from_ref(retry), "only the failed record is resent");
    assert_eq!(requests[k + 1].results, [Some(50003)]);
    assert_eq!(requests[k + 2].records, std::slice::from_ref(retry));
    assert_eq!(requests[k + 2].results, [None]);
    let count = |n: &str| accepted.iter().filter(|r| has(r, n)).count();
    assert_eq!((count("partial.retry"), count("partial.ok"), count("partial.reject")), (1, 1, 0));
    let f =
        parse_flush(&d.line_with("the drop counted", |f| kafka_stat(f, "records_dropped.rejected") > 0.0));
    assert_eq!(kafka_stat(&f, "records_dropped.rejected"), 1.0);
    assert!(kafka_stat(&f, "records_retried") >= 2.0);
}

#[test]
fn client_errors_are_dropped_and_counted_never_retried() {
    let emu = Emulator::start();
    let mut d = start(&kafka(&emu, "retry_backoff = \"10ms\""), "flush_interval = \"100ms\"", "");
    type Setup = dyn Fn(&mut State);
    let cases: [(&str, u16, &Setup); 6] = [
        ("unknown_topic", 404, &|s| s.topics.clear()),
        ("unauthorized", 401, &|s| s.credentials = Some("Basic bm9ib2R5Og==".into())),
        ("unauthorized", 403, &|s| s.sticky = Some(Fault::status(403))),
        ("unsupported_media_type", 415, &|s| s.sticky = Some(Fault::status(415))),
        ("invalid_payload", 422, &|s| s.sticky = Some(Fault::status(422))),
        ("invalid_payload", 400, &|s| s.sticky = Some(Fault::status(400))),
    ];
    for (reason, status, setup) in cases {
        let key = format!("records_dropped.{reason}");
        let before = kafka_stat(&parse_flush(&d.next_line()), &key);
        emu.with(|s| {
            s.heal();
            setup(s);
        });
        // The proxy answered this case's status, and a drop under its reason followed (a payload
        // still in flight from the case before can count under the same reason first).
        emu.wait_for(T, "the case's answer", |s| s.requests.iter().any(|r| r.status == status).then_some(()));
        d.line_with(&key, |f| kafka_stat(f, &key) > before);
    }
    emu.with(|s| {
        let mut seen = HashSet::new();
        for (i, r) in s.requests.iter().enumerate() {
            let answers: Vec<(u16, u64)> = s.requests[..=i].iter().map(|r| (r.status, r.conn)).collect();
            assert!(
                seen.insert(r.body.clone()),
                "request {i} repeats an earlier one; (status, connection) so far: {answers:?}"
            );
        }
        let statuses: HashSet<u16> = s.requests.iter().map(|r| r.status).collect();
        assert!([400, 401, 403, 404, 415, 422].iter().all(|c| statuses.contains(c)), "{statuses:?}");
    });
}

#[test]
fn a_full_queue_drops_the_oldest_flushes_and_counts_them() {
    let mut emu = Emulator::start();
    emu.down();
    let mut d = start(
        &kafka(
            &emu,
            "key = \"k\"\nmax_record_bytes = \"4KiB\"\nmax_request_bytes = \"6KiB\"\nmax_queue_bytes = \"6KiB\"\n\
             retry_backoff = \"20ms\"\nretry_backoff_max = \"50ms\"",
        ),
        "flush_interval = \"100ms\"",
        "",
    );
    for _ in 0..12 {
        let f = parse_flush(&d.next_line());
        assert!(kafka_stat(&f, "queue_bytes") <= 6144.0, "queue over its bound: {f:?}");
    }
    emu.up();
    let last = d.lines().last().unwrap().clone();
    emu.wait_for(T, "the newest flush", |s| s.accepted.iter().any(|r| r.value == last).then_some(()));
    let accepted = emu.with(|s| accepted_values(s));
    let lines = d.lines();
    let i0 = lines.iter().position(|l| *l == accepted[0]).expect("accepted a flush the console saw");
    assert!(i0 >= 4, "a 6KiB queue cannot hold 12 flushes of ~1.5KB; kept from #{i0}");
    assert_eq!(accepted[..], lines[i0..i0 + accepted.len()], "the newest flushes, in order, none missing");
    let f = parse_flush(&d.line_with("the drops counted", |f| kafka_stat(f, "records_sent") > 0.0));
    assert!(kafka_stat(&f, "records_dropped.queue_full") >= i0 as f64, "{f:?}");
}

#[test]
fn a_hung_proxy_delays_neither_flushes_nor_ingest_and_shutdown_stops_at_its_deadline() {
    let emu = Emulator::start();
    emu.with(|s| s.sticky = Some(Fault::Hang));
    let mut d = start(
        &kafka(&emu, "timeout = \"30s\""),
        "flush_interval = \"100ms\"",
        "shutdown_timeout = \"300ms\"",
    );
    for _ in 0..200 {
        d.send("hung.c:1|c");
    }
    let mut flushes = Vec::new();
    for _ in 0..10 {
        flushes.push(parse_flush(&d.next_line()));
    }
    let gaps: Vec<Duration> = d.lines.windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert!(gaps.iter().all(|g| *g < Duration::from_millis(700)), "console flushes delayed: {gaps:?}");
    let counted: f64 = flushes.iter().map(|f| f.get("stats_counts.hung.c").copied().unwrap_or(0.0)).sum();
    assert_eq!(counted, 200.0, "ingest counted every datagram");
    let overruns: f64 = flushes.iter().map(|f| f["stats_counts.statsd.flush_overruns"]).sum();
    assert_eq!(overruns, 0.0);
    assert!(kafka_stat(flushes.last().unwrap(), "queue_payloads") >= 5.0);
    assert_eq!(emu.with(|s| s.requests.len()), 1, "one request, hung");
    let took = d.stop();
    assert!(took < Duration::from_secs(3), "shutdown took {took:?} with a 300ms deadline");
}

#[test]
fn karapace_legacy_codes_in_a_422_resend_only_the_retriable_record_and_log_the_one_dropped() {
    let emu = Emulator::start();
    emu.with(|s| {
        s.flavour = Flavour::Karapace;
        s.record_faults = vec![
            RecordFault {
                value_contains: "\"name\":\"legacy.retry\"".into(),
                error_code: 2,
                error: "NOT_LEADER_OR_FOLLOWER".into(),
                times: 2,
            },
            RecordFault {
                value_contains: "\"name\":\"legacy.reject\"".into(),
                error_code: 1,
                error: "INVALID_RECORD".into(),
                times: usize::MAX,
            },
        ]
    });
    let mut d = Daemon::start(&[
        "--flush-interval",
        "100ms",
        "--delete-idle-stats",
        "true",
        "--kafka-rest",
        &emu.url(),
        "--kafka-topic",
        "metrics",
        "--kafka-format",
        "tagged",
        "--kafka-retry-backoff",
        "10ms",
    ]);
    let stderr = std::mem::replace(&mut d.stderr, channel().1);
    d.send("legacy.retry:1|c\nlegacy.reject:1|c\nlegacy.ok:1|c");
    let has = named;
    let (requests, accepted, k) = once_accepted(&emu, "legacy.retry");
    let first = &requests[k];
    assert_eq!(first.status, 422, "Karapace answers 422 when a record failed");
    let reject_at = results_are(first, &[("legacy.retry", 2), ("legacy.reject", 1)])[1];
    let retry = first.records.iter().find(|x| has(x, "legacy.retry")).unwrap();
    assert_eq!(requests[k + 1].records, std::slice::from_ref(retry), "only the code-2 record is resent");
    assert_eq!((requests[k + 1].status, &requests[k + 1].results[..]), (422, &[Some(2)][..]));
    assert_eq!((requests[k + 2].status, &requests[k + 2].results[..]), (200, &[None][..]));
    let count = |n: &str| accepted.iter().filter(|r| has(r, n)).count();
    // The records Karapace produced in the 422 are not sent again.
    assert_eq!((count("legacy.retry"), count("legacy.ok"), count("legacy.reject")), (1, 1, 0));
    let f = d.flush_with("stats.statsd.kafkaStats.records_dropped.rejected", T);
    assert_eq!(f["stats.statsd.kafkaStats.records_dropped.rejected"], 1.0);
    assert_eq!(f["stats.statsd.kafkaStats.records_dropped"], 1.0);
    let (status, _) = d.terminate(T);
    assert!(status.success());
    let log = stderr.iter().collect::<Vec<_>>().join("\n");
    let n = first.records.len();
    let named = format!(
        "dropped 1 records (rejected): HTTP 422: record {reject_at} of {n} ({} bytes, series legacy.reject, clock ",
        first.records[reject_at - 1].value.len()
    );
    assert!(log.contains(&named) && log.contains("): error_code 1: INVALID_RECORD"), "{log}");
    assert!(log.contains("1 records failed with a retriable error (record "), "{log}");
}

#[test]
fn a_request_that_timed_out_is_resent_once_and_waited_for_not_stacked_while_the_proxy_holds_it() {
    let emu = Emulator::start();
    // A broker outage behind a live proxy: it holds the first two requests 2 s each and then
    // produces them, whether or not kstatsd still waits.
    emu.with(|s| {
        s.faults = [Fault::Hold(Duration::from_secs(2)), Fault::Hold(Duration::from_secs(2))].into()
    });
    let mut d = start(
        &kafka(&emu, "timeout = \"300ms\"\nretry_backoff = \"10ms\"\nretry_backoff_max = \"50ms\""),
        "flush_interval = \"100ms\"",
        "",
    );
    let head = emu.wait_for(T, "a request", |s| s.requests.first().map(|r| r.body.clone()));
    // The flushes queued behind it arrive once the resend is answered.
    let f = parse_flush(&d.line_with("later flushes delivered", |f| kafka_stat(f, "records_sent") >= 5.0));
    let requests = emu.with(|s| s.requests.clone());
    let of_head: Vec<&common::kafka_emulator::Request> = requests.iter().filter(|r| r.body == head).collect();
    assert_eq!(of_head.len(), 2, "the head request was sent twice: timed out once, then waited for");
    assert!(of_head.iter().all(|r| r.status == 200), "both produced by the proxy");
    let value = &of_head[0].records[0].value;
    assert_eq!(emu.with(|s| s.accepted.iter().filter(|r| &r.value == value).count()), 2, "one duplicate");
    assert_eq!(kafka_stat(&f, "records_resent_after_timeout"), 1.0, "the duplicate at risk, counted");
    assert_eq!(kafka_stat(&f, "records_dropped"), 0.0);
    // Everything after the head, once each and in order.
    let accepted = emu.with(|s| accepted_values(s));
    let lines = d.lines();
    assert_eq!(accepted[0], accepted[1]);
    assert_eq!(accepted[1..], lines[..accepted.len() - 1]);
}

// ---- the binary: flags, redaction, logs, SIGTERM ----

#[test]
fn the_documented_kafka_example_parses_and_states_the_defaults() {
    let doc = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/kafka-rest-proxy.md");
    let doc = std::fs::read_to_string(doc).unwrap();
    let section = doc.split("## Configuration").nth(1).expect("a Configuration section");
    let block = section.split("```toml\n").nth(1).unwrap().split("```").next().unwrap();
    let example = Config::build(parse_file(block).unwrap(), &Overrides::default()).unwrap();
    let minimal = "[sinks.kafka_rest]\nurl = \"http://127.0.0.1:8082\"\ntopic = \"metrics\"\n";
    assert_eq!(example, Config::build(parse_file(minimal).unwrap(), &Overrides::default()).unwrap());
    let uncommented = block.replace("# username", "username").replace("# password", "password");
    let c = Config::build(parse_file(&uncommented).unwrap(), &Overrides::default()).unwrap();
    assert!(c.kafka_rest.unwrap().password.is_some());
}

#[test]
fn check_config_help_and_errors_never_show_credentials() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_kstatsd"))
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap() + &String::from_utf8(out.stderr).unwrap())
    };
    let (code, out) = run(
        &[
            "--check-config",
            "--kafka-rest",
            "https://kuser:hunter2@proxy.example:8082/kafka/",
            "--kafka-topic",
            "metrics",
        ],
        &[("KSTATSD_KAFKA_PASSWORD", "envpass9")],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("[sinks.kafka_rest]\nurl = \"https://proxy.example:8082/kafka\"\ntopic = \"metrics\""),
        "{out}"
    );
    assert!(out.contains("username = \"<redacted>\"\npassword = \"<redacted>\""), "{out}");
    assert!(
        out.contains("[sinks.console]\nformat = \"off\""),
        "the console is off when Kafka is configured: {out}"
    );
    for secret in ["hunter2", "kuser", "envpass9"] {
        assert!(!out.contains(secret), "{secret} in: {out}");
    }
    let (_, help) = run(
        &["--help"],
        &[("KSTATSD_KAFKA_REST", "http://u:hunter2@h:1"), ("KSTATSD_KAFKA_PASSWORD", "envpass9")],
    );
    assert!(
        help.contains("--kafka-rest") && !help.contains("hunter2") && !help.contains("envpass9"),
        "{help}"
    );
    let (code, err) =
        run(&["--check-config", "--kafka-rest", "ftp://kuser:hunter2@h", "--kafka-topic", "m"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("sinks.kafka_rest.url") && !err.contains("hunter2"), "{err}");
    let (code, err) = run(&["--check-config", "--kafka-topic", "metrics"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--kafka-rest"), "{err}");
}

#[test]
fn logs_never_show_credentials() {
    let mut emu = Emulator::start();
    emu.with(|s| s.credentials = Some("Basic c29tZW9uZTplbHNl".into()));
    let url = format!("http://kuser:hunter2@{}", emu.addr);
    let mut d = Daemon::start(&[
        "--flush-interval",
        "100ms",
        "--shutdown-timeout",
        "200ms",
        "--kafka-rest",
        &url,
        "--kafka-topic",
        "metrics",
    ]);
    let stderr = std::mem::replace(&mut d.stderr, channel().1);
    d.flush_with("stats.statsd.kafkaStats.records_dropped.unauthorized", T);
    emu.down();
    d.flush_with("stats.statsd.kafkaStats.records_retried", T);
    let auth = emu.with(|s| s.requests[0].authorization.clone());
    assert_eq!(auth.as_deref(), Some("Basic a3VzZXI6aHVudGVyMg=="), "kuser:hunter2 sent as basic auth");
    let (status, _) = d.terminate(T);
    assert!(status.success());
    let stderr = stderr.iter().collect::<Vec<_>>().join("\n");
    assert!(stderr.contains(&format!("kafka: POST http://{}/topics/metrics: ", emu.addr)), "{stderr}");
    assert!(stderr.contains("(unauthorized)"), "{stderr}");
    assert!(stderr.contains("retrying in"), "{stderr}");
    assert!(!stderr.contains("hunter2") && !stderr.contains("kuser"), "{stderr}");
}

#[test]
fn sigterm_delivers_the_final_flush() {
    let emu = Emulator::start();
    let d =
        Daemon::start(&["--flush-interval", "1h", "--kafka-rest", &emu.url(), "--kafka-topic", "metrics"]);
    // Nothing is flushed for an hour: the only flush is SIGTERM's, of what the socket holds.
    d.send("final.c:7|c");
    let (status, lines) = d.terminate_lines(T);
    assert!(status.success());
    let last = lines.last().expect("the final flush on the console");
    assert_eq!(parse_flush(last).get("stats_counts.final.c"), Some(&7.0), "{last}");
    let accepted = emu.with(|s| accepted_values(s));
    assert_eq!(accepted, std::slice::from_ref(last), "the final flush reached the proxy before exit");
}

#[test]
fn sigterm_with_a_hung_proxy_exits_by_the_deadline_and_reports_what_it_dropped() {
    let emu = Emulator::start();
    emu.with(|s| s.sticky = Some(Fault::Hang));
    let mut d = Daemon::start(&[
        "--flush-interval",
        "100ms",
        "--shutdown-timeout",
        "300ms",
        "--kafka-rest",
        &emu.url(),
        "--kafka-topic",
        "metrics",
        "--kafka-timeout",
        "30s",
    ]);
    let stderr = std::mem::replace(&mut d.stderr, channel().1);
    for _ in 0..3 {
        d.next_flush(T);
    }
    let t = Instant::now();
    let (status, _) = d.terminate_lines(T);
    assert!(status.success());
    // 300 ms for the exit, 500 ms for the flush thread to log what it dropped, a second of slack.
    assert!(t.elapsed() < Duration::from_millis(1800), "exit took {:?}", t.elapsed());
    let stderr = stderr.iter().collect::<Vec<_>>().join("\n");
    assert!(stderr.contains("by the shutdown deadline: dropped (records_dropped.shutdown)"), "{stderr}");
    assert_eq!(emu.with(|s| s.requests.len()), 1, "one request, hung: {stderr}");
}
