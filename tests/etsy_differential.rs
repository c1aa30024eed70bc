//! Differential test against the reference implementation: the same datagrams go to etsy statsd
//! 0.9.0 (Node, its graphite backend writing to a tiny carbon emulator in this test) and to the
//! real `kstatsd` binary (console JSON), interval by interval, and every name etsy flushes must
//! come out of kstatsd with the same value: exactly, bit for bit, except the per-second rates,
//! which kstatsd divides by the real elapsed time (compared within 5 %).
//!
//! The corpus is deterministic (a fixed-seed xorshift): counters with sample rates, negative and
//! float values, multi-value lines, gauges with deltas carried across intervals, timers from 1 to
//! 1000 values with percentiles 90 / 99.9 / -10 / 50, histograms, sets, names that need
//! sanitizing, CRLF line ends, bad lines, and an empty interval. It leaves out the inputs where
//! kstatsd deliberately differs from etsy (`@0`, DogStatsD tags and fields, packed values,
//! `h`/`d`/unknown types, nan/inf/hex numbers, empty names, whitespace around values or types,
//! a `\r` after a set member or a negative timer).
//!
//! Etsy is run by `tests/common/etsy.rs` (found at `$KSTATSD_ETSY_DIR` or
//! `.ci/node/node_modules/statsd`, installed by `.ci/etsy.sh`; a missing etsy is a failure, never
//! a skip). Every run writes its inputs and both daemons' flushes to
//! `$CARGO_TARGET_TMPDIR/etsy_differential/` for diagnosis.
//!
//! Runs on the test thread plus one driver thread per daemon (each waits for its own daemon's
//! flush boundary, then sends that interval's datagrams), a carbon accept thread and log readers.
#![cfg(feature = "peers")]

mod common;

use common::etsy::{assert_same, drive, dump_run, next_carbon_flush, Etsy, Rules, TempDir, FLUSH_TIMEOUT};
use common::{Daemon, Flush};
use std::fmt::Write as _;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

/// Percentiles given to both daemons, in each one's syntax.
const PERCENTILES_CLI: &str = "90,99.9,-10,50";
const PERCENTILES_JS: &str = "[90, 99.9, -10, 50]";

/// Histogram rules given to both daemons (first substring match wins): metric, bins as literals.
const HISTOGRAMS: &[(&str, &[&str])] =
    &[("api_fast", &["1", "2.5", "inf"]), ("api", &["10", "100", "inf"]), ("lat", &["0.5", "5", "50"])];

/// Etsy names that depend on timing or on etsy's own backend, never compared.
fn timing_dependent(name: &str) -> bool {
    name == "statsd.numStats"
        || name == "stats.statsd.processing_time"
        || name == "stats.gauges.statsd.timestamp_lag"
        || name.starts_with("stats.statsd.graphiteStats.")
}

/// Names under the daemon's own `statsd.` meta paths: kstatsd may flush more of these than etsy.
fn meta(name: &str) -> bool {
    [
        "statsd.",
        "stats.statsd.",
        "stats_counts.statsd.",
        "stats.gauges.statsd.",
        "stats.timers.statsd.",
        "stats.sets.statsd.",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// A per-second rate: a counter's `stats.<k>` (etsy also flushed `stats_counts.<k>`) or a
/// timer's `count_ps` (a graphite `;tag` suffix, as etsy renders `;` in names, is allowed).
fn per_second(name: &str, etsy: &Flush) -> bool {
    if let Some(k) = name.strip_prefix("stats.") {
        if etsy.contains_key(&format!("stats_counts.{k}")) {
            return true;
        }
    }
    name.starts_with("stats.timers.") && name.split(';').next().unwrap().ends_with(".count_ps")
}

#[test]
fn same_numbers_as_etsy_statsd_0_9_0() {
    let started = Instant::now();
    let corpus = Arc::new(corpus());
    let tmp = TempDir::new("etsy-differential");

    // Start both daemons first: etsy (Node) takes the longer to come up.
    let mut etsy = Etsy::start(&tmp.0, |p| etsy_config(p.udp, p.mgmt, p.carbon));
    let toml = tmp.0.join("kstatsd.toml");
    std::fs::write(&toml, kstatsd_toml()).unwrap();
    let kstatsd = Daemon::start(&[
        "--flush-interval",
        "1s",
        "--counter-rates",
        "--percentiles",
        PERCENTILES_CLI,
        "--config",
        toml.to_str().unwrap(),
    ]);
    etsy.wait_up();

    // One driver per daemon: the two flush clocks are independent.
    let k_corpus = Arc::clone(&corpus);
    let k_driver = thread::spawn(move || {
        let d = kstatsd;
        drive(&k_corpus, |dg| d.send_bytes(dg), || d.next_flush(FLUSH_TIMEOUT))
        // `d` drops here: kstatsd is killed as soon as its intervals are in.
    });
    let e_corpus = Arc::clone(&corpus);
    let (e_sock, e_addr, e_flushes, e_log) =
        (etsy.sock.try_clone().unwrap(), etsy.udp, etsy.flushes.take().unwrap(), etsy.log.clone());
    let e_driver = thread::spawn(move || {
        drive(
            &e_corpus,
            |dg| {
                e_sock.send_to(dg, e_addr).unwrap();
            },
            || next_carbon_flush(&e_flushes, &e_log),
        )
    });
    let k_result = k_driver.join();
    let e_result = e_driver.join();
    drop(etsy);
    let (k_flushes, e_flushes) = match (k_result, e_result) {
        (Ok(k), Ok(e)) => (k, e),
        (Err(p), _) => std::panic::resume_unwind(p),
        (_, Err(p)) => std::panic::resume_unwind(p),
    };

    let dump = dump_run("etsy_differential", &corpus, &e_flushes, &k_flushes);

    // The harness itself must have worked: etsy saw each interval's datagrams in one flush.
    for (i, (e, sent)) in e_flushes.iter().zip(corpus.iter()).enumerate() {
        let got = e.get("stats_counts.statsd.packets_received").copied();
        assert_eq!(
            got,
            Some(sent.len() as f64),
            "harness problem: etsy's flush for interval {i} did not hold exactly the {} datagrams \
             sent (alignment or loss); see {}",
            sent.len(),
            dump.display()
        );
    }

    let rules = Rules { timing_dependent, meta, per_second };
    let compared = assert_same(&e_flushes, &k_flushes, &rules, &dump);
    eprintln!(
        "etsy differential: {} intervals, {} names compared, in {:?}",
        e_flushes.len(),
        compared,
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// The corpus.

/// xorshift64: a fixed seed gives the same corpus on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    /// A non-negative decimal below `max` with 0 to 3 fraction digits, e.g. `17`, `3.5`, `0.125`.
    fn decimal(&mut self, max: u64) -> String {
        let int = self.below(max);
        match self.below(4) {
            0 => format!("{int}"),
            1 => format!("{int}.{}", self.below(10)),
            2 => format!("{int}.{:02}", self.below(100)),
            _ => format!("{int}.{:03}", self.below(1000)),
        }
    }
}

/// Lines of one interval, packed later into datagrams.
#[derive(Default)]
struct Lines(Vec<Vec<u8>>);

impl Lines {
    fn add(&mut self, line: &str) {
        self.0.push(line.as_bytes().to_vec());
    }
    fn add_bytes(&mut self, line: &[u8]) {
        self.0.push(line.to_vec());
    }
    fn timer(&mut self, rng: &mut Rng, name: &str, n: usize, max: u64) {
        for _ in 0..n {
            let v = rng.decimal(max);
            self.add(&format!("{name}:{v}|ms"));
        }
    }
}

const RATES: &[&str] = &["0.5", "0.1", "0.25", "0.3", "0.75", "0.9", "0.2", "0.7"];

/// One random, valid line over a small pool of keys, each key with a fixed type.
fn random_line(rng: &mut Rng) -> String {
    let rate = |rng: &mut Rng| {
        if rng.chance(3) {
            format!("|@{}", rng.pick(RATES))
        } else {
            String::new()
        }
    };
    match rng.below(10) {
        0..=2 => {
            let key = format!("r.c{}", rng.below(6));
            let v = match rng.below(4) {
                0 => format!("-{}", rng.decimal(50)),
                1 => rng.decimal(1000),
                _ => format!("{}", rng.below(20)),
            };
            if rng.chance(6) {
                format!("{key}:{v}|c{}:{}|c{}", rate(rng), rng.below(9), rate(rng))
            } else {
                format!("{key}:{v}|c{}", rate(rng))
            }
        }
        3..=5 => {
            let key =
                if rng.chance(4) { format!("api.r{}", rng.below(2)) } else { format!("r.t{}", rng.below(6)) };
            let v = rng.decimal(300);
            if rng.chance(6) {
                format!("{key}:{v}|ms{}:{}|ms", rate(rng), rng.decimal(300))
            } else {
                format!("{key}:{v}|ms{}", rate(rng))
            }
        }
        6..=7 => {
            let key = format!("r.g{}", rng.below(4));
            match rng.below(3) {
                0 => format!("{key}:{}|g", rng.decimal(500)),
                1 => format!("{key}:+{}|g", rng.decimal(20)),
                _ => format!("{key}:-{}|g", rng.decimal(20)),
            }
        }
        _ => format!("r.s{}:m{}|s", rng.below(3), rng.below(25)),
    }
}

/// The bad lines: each counted in `bad_lines_seen`, none creating a key.
const BAD_LINES: &[&str] = &[
    "bad.notype:1",
    "bad.nocolon",
    "bad.nan:abc|c",
    "bad.negtimer:-1|ms",
    "bad.negtimer_rate:-2.5|ms|@0.5",
    "bad.rate:1|c|@x",
    "bad.rate_empty:1|c|@",
    "bad.rate_dot:1|c|@.",
    "bad.negrate:1|c|@-0.5",
    "bad.empty:|c",
    "bad.empty_g:|g",
    "bad.empty_ms:|ms",
    "bad.dots:1.2.3|c",
    "bad.gauge:xyz|g",
    "bad.gauge_delta:+x|g",
    "bad.timer:abc|ms",
    "bad.timer2:12abc|ms",
];

/// Every interval's datagrams, in sending order.
fn corpus() -> Vec<Vec<Vec<u8>>> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut intervals = Vec::new();

    // 0: one of everything.
    let mut l = Lines::default();
    for _ in 0..5 {
        l.add("c.plain:1|c");
    }
    for v in ["0.1", "0.2", "0.7", "1.1", "0.3"] {
        l.add(&format!("c.float:{v}|c"));
    }
    for v in ["-3", "1.5", "-0.25"] {
        l.add(&format!("c.neg:{v}|c"));
    }
    for _ in 0..3 {
        l.add("c.half:1|c|@0.5");
    }
    l.add("c.tenth:3|c|@0.1");
    l.add("c.odd_rate:7|c|@0.3");
    l.add("c.odd_rate:1|c|@0.7");
    l.add("c.odd_rate:0.1|c|@0.9");
    l.add("c.above_one:4|c|@2");
    l.add("c.exp:1e3|c");
    l.add("c.exp:2.5E-1|c");
    l.add("c.plus:+2|c");
    l.add("c.dot:.5|c");
    l.add("c.dot:5.|c");
    l.add("c.multi:1|c:2|c:3|c|@0.5");
    l.add("c.big:123456789012|c");
    l.add("c.big:0.000001|c");
    l.add("mix:1|c:2|ms:3|g");
    l.add("g.abs:10|g");
    l.add("g.abs:12.5|g");
    l.add("g.delta:5|g");
    l.add("g.delta:+2.5|g");
    l.add("g.delta:-1|g");
    l.add("g.new_delta:-5|g");
    l.add("g.plus_new:+7|g");
    l.add("g.rate:3|g|@0.5");
    l.add("g.float:0.1|g");
    l.add("g.float:+0.2|g");
    l.add("g.float:+0.3|g");
    l.add("g.zero:0|g");
    l.add("g.zero:-5|g");
    l.add("g.exp:1e2|g");
    l.add("t.one:42|ms");
    l.add("t.two:1|ms");
    l.add("t.two:2.5|ms");
    l.timer(&mut rng, "t.three", 3, 100);
    l.timer(&mut rng, "t.five", 5, 100);
    l.timer(&mut rng, "t.fifteen", 15, 1000);
    l.timer(&mut rng, "t.hundred", 100, 1000);
    for _ in 0..4 {
        l.add("t.rate:5|ms|@0.5");
    }
    l.add("t.rate:7|ms|@0.1");
    l.add("t.rate:6.5|ms|@0.3");
    l.add("t.zero:0|ms");
    l.add("t.zero:0|ms");
    l.add("t.multi:1|ms:2|ms:3|ms|@0.25");
    l.add("t.exp:1e1|ms");
    l.add("t.exp:2.5e0|ms");
    l.timer(&mut rng, "api.req", 30, 250);
    l.timer(&mut rng, "api_fast.x", 12, 4);
    l.timer(&mut rng, "lat.db", 20, 80);
    for m in ["alice", "bob", "alice", "carol", "bob"] {
        l.add(&format!("s.users:{m}|s"));
    }
    for m in ["1", "01", "1.0", "1"] {
        l.add(&format!("s.num:{m}|s"));
    }
    l.add("s.rate:x|s|@0.5");
    l.add("s.rate:y|s|@0.1");
    l.add("s.space:hello world|s");
    l.add("s.space:hello  world|s");
    l.add("san my  key\twith spaces:1|c");
    l.add("san/a/b:2|ms");
    l.add("san.odd!chars$%&*()~,'\"<>?:3|c");
    l.add("san.caf\u{e9}:1|c");
    l.add_bytes(b"san.bad\xffbyte:1|c");
    l.add_bytes(b"san.ctl\x01\x7fchars:1|c");
    l.add("san.merge:1|c");
    l.add("san.mer!ge:2|c");
    l.add("san.tag;env=prod:1|c");
    l.add("san.ttag;env=prod:4|ms");
    l.add("san.gauge/x y:3|g");
    l.add("san.set/x:a|s");
    for b in BAD_LINES {
        l.add(b);
    }
    l.add("bad.partial:1|c:x|c:2|c");
    intervals.push(pack(&mut rng, l, 8));

    // 1: gauges carried over, deltas on them; some keys idle; random traffic.
    let mut l = Lines::default();
    l.add("c.plain:2|c");
    for _ in 0..3 {
        l.add("c.float:0.3|c");
    }
    l.add("c.late:1|c");
    l.add("g.abs:+1|g");
    l.add("g.delta:-10|g");
    l.add("g.new_delta:+5|g");
    l.add("g.float:-0.1|g");
    l.add("g.zero:+5|g");
    l.add("t.one:17.25|ms");
    l.timer(&mut rng, "t.hundred", 7, 1000);
    l.timer(&mut rng, "t.ten", 10, 50);
    l.add("s.users:alice|s");
    l.add("s.users:dave|s");
    // CRLF line ends (etsy trims the type; kstatsd strips the '\r').
    l.add("crlf.c:2|c\r");
    l.add("crlf.t:3.5|ms|@0.5\r");
    l.add("crlf.g:4|g\r");
    l.add("crlf.g:+1|g\r");
    for _ in 0..60 {
        let line = random_line(&mut rng);
        l.add(&line);
    }
    l.add("bad.nan:abc|c");
    intervals.push(pack(&mut rng, l, 8));

    // 2: histograms (with values on the bin bounds) and big timers.
    let mut l = Lines::default();
    l.timer(&mut rng, "api.req", 200, 250);
    l.timer(&mut rng, "api_fast.x", 50, 4);
    l.timer(&mut rng, "lat.db", 40, 80);
    for v in ["0", "0.5", "5", "50", "10", "100", "1", "2.5", "49.999"] {
        l.add(&format!("lat.db:{v}|ms"));
        l.add(&format!("api.req:{v}|ms"));
        l.add(&format!("api_fast.x:{v}|ms"));
    }
    l.timer(&mut rng, "t.big", 500, 10_000);
    l.timer(&mut rng, "t.huge", 1000, 100);
    for _ in 0..20 {
        let v = rng.decimal(100);
        l.add(&format!("t.big_rate:{v}|ms|@0.1"));
    }
    l.add("g.delta:+0.5|g");
    intervals.push(pack(&mut rng, l, 60));

    // 3: nothing at all: every key idle.
    intervals.push(Vec::new());

    // 4: after the idle interval.
    let mut l = Lines::default();
    l.add("g.abs:-0.5|g");
    l.add("g.new_delta:-5|g");
    l.add("g.zero:0|g");
    l.add("g.zero:+0|g");
    l.add("c.plain:-1|c");
    l.add("c.half:3|c|@0.5");
    for _ in 0..3 {
        l.add("t.rate:1|ms|@0.25");
    }
    l.timer(&mut rng, "t.four", 4, 10);
    l.timer(&mut rng, "t.twenty", 20, 1000);
    for m in ["alice", "alice", "alice"] {
        l.add(&format!("s.users:{m}|s"));
    }
    for _ in 0..40 {
        let line = random_line(&mut rng);
        l.add(&line);
    }
    l.add("bad.negtimer:-1|ms");
    intervals.push(pack(&mut rng, l, 8));

    // 5: heavy random traffic with a few bad lines mixed in.
    let mut l = Lines::default();
    for i in 0..300 {
        let line = if i % 37 == 0 { rng.pick(BAD_LINES).to_string() } else { random_line(&mut rng) };
        l.add(&line);
    }
    intervals.push(pack(&mut rng, l, 16));

    intervals
}

/// Packs lines, in order, into datagrams of 1 to `max_lines` lines (at most ~1400 bytes), some
/// with an empty line inside or a trailing newline, plus one datagram that is only a newline.
fn pack(rng: &mut Rng, lines: Lines, max_lines: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut it = lines.0.into_iter().peekable();
    while it.peek().is_some() {
        let want = 1 + rng.below(max_lines);
        let mut dg = Vec::new();
        for n in 0..want {
            let Some(line) = it.peek() else { break };
            if n > 0 && dg.len() + line.len() + 2 > 1400 {
                break;
            }
            if n > 0 {
                dg.push(b'\n');
                if rng.chance(8) {
                    dg.push(b'\n');
                }
            }
            dg.extend_from_slice(&it.next().unwrap());
        }
        if rng.chance(5) {
            dg.push(b'\n');
        }
        out.push(dg);
    }
    if !out.is_empty() {
        let at = rng.below(out.len() as u64) as usize;
        out.insert(at, b"\n".to_vec());
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Configuration of both daemons.

fn kstatsd_toml() -> String {
    let mut s = String::from("[aggregate]\nhistograms = [\n");
    for (metric, bins) in HISTOGRAMS {
        let _ = writeln!(s, "  {{ metric = \"{metric}\", bins = [{}] }},", bins_literal(bins));
    }
    s.push_str("]\n");
    s
}

fn etsy_config(udp: u16, mgmt: u16, carbon: u16) -> String {
    let mut h = String::new();
    for (metric, bins) in HISTOGRAMS {
        let _ = write!(h, "{{ metric: \"{metric}\", bins: [{}] }}, ", bins_literal(bins));
    }
    format!(
        "{{\n  port: {udp},\n  address: \"127.0.0.1\",\n  mgmt_port: {mgmt},\n  \
         mgmt_address: \"127.0.0.1\",\n  flushInterval: 1000,\n  \
         backends: [\"./backends/graphite\"],\n  graphiteHost: \"127.0.0.1\",\n  \
         graphitePort: {carbon},\n  percentThreshold: {PERCENTILES_JS},\n  \
         histogram: [{h}],\n  automaticConfigReload: false\n}}\n"
    )
}

/// `[10, 100, "inf"]` in both TOML and JavaScript.
fn bins_literal(bins: &[&str]) -> String {
    let quoted: Vec<String> =
        bins.iter().map(|b| if *b == "inf" { "\"inf\"".into() } else { b.to_string() }).collect();
    quoted.join(", ")
}
