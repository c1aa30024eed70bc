//! Cardinality floods. 10⁶ distinct names and 10⁶ set members over UDP into the real `kstatsd`
//! binary (and 10⁷ of each in-process through the library) keep the peak memory under a bound
//! derived from `max_series`/`max_set_members`, drop and count exactly what is over the limits,
//! and keep the series that existed before the flood exact; spread over many short intervals,
//! the series remembered for idle reporting also stay within `max_series`. Runs on the test's
//! thread plus the harness's reader threads.

mod common;

use common::hostile::*;
use common::Daemon;
use kstatsd::aggregate::{Limits, Tables};
use kstatsd::ingest::{self, Format};
use kstatsd::parse::{BadLine, LineBuf};
use std::time::{Duration, Instant};

// ---- over UDP ----

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

// ---- a timer flood past max_samples ----

/// One timer gets 20,000 values (the whole milliseconds 1..=20,000, scrambled) with room for
/// 1,000 held values in the interval, after three values of another timer. Nothing is refused or
/// lost: `count`, `sum`, `sum_squares`, `lower`, `upper`, `mean` and `std` are exact, the
/// percentiles and median come from the sketch within its stated relative error (1/128), the
/// small timer is exact, and the 19,003 values past the budget are `timer_values_sketched` (the
/// meta counter and the admin `stats` figure), not bad lines.
#[test]
fn timer_values_past_max_samples_are_sketched_not_lost() {
    const N: u64 = 20_000;
    const HELD: u64 = 1_000;
    let args = ["--flush-interval=1h", "--max-samples=1000", "--percentiles=90,-10", "--admin=127.0.0.1:0"];
    let d = Daemon::start(&args);
    let admin = d.listening("admin")[0].clone();
    d.send("small:5|ms\nsmall:7|ms\nsmall:9|ms");
    let values: Vec<u64> = (0..N).map(|i| i * 7919 % N + 1).collect();
    for chunk in values.chunks(100) {
        d.send(&chunk.iter().map(|v| format!("big:{v}|ms\n")).collect::<String>());
    }
    let deadline = Instant::now() + WAIT;
    let stats = loop {
        let stats = admin_stats(&admin);
        if stat(&stats, "kstatsd.metrics_received") >= (N + 3) as f64 {
            break stats;
        }
        assert!(Instant::now() < deadline, "the daemon never read every line: {stats}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(stat(&stats, "kstatsd.metrics_received"), (N + 3) as f64);
    assert_eq!(stat(&stats, "kstatsd.timer_values_sketched"), (N + 3 - HELD) as f64);
    assert_eq!(stat(&stats, "messages.bad_lines_seen"), 0.0);

    let (status, flushes) = d.terminate(WAIT);
    assert!(status.success());
    let s =
        flushes.iter().find(|f| f.contains_key("stats.timers.big.count")).expect("no flush with the timers");
    let n = N as f64;
    let squares = (N as u128 * (N as u128 + 1) * (2 * N as u128 + 1) / 6) as f64;
    let exact = [
        ("count", n),
        ("lower", 1.0),
        ("upper", n),
        ("sum", n * (n + 1.0) / 2.0),
        ("sum_squares", squares),
        ("mean", (n + 1.0) / 2.0),
        ("count_90", 18_000.0),
        ("count_top10", 2_000.0),
    ];
    for (stat, want) in exact {
        assert_eq!(get(s, &format!("stats.timers.big.{stat}")), want, "big.{stat}");
    }
    let std = ((n * n - 1.0) / 12.0).sqrt();
    assert!((get(s, "stats.timers.big.std") - std).abs() < std * 1e-12, "big.std");
    let sketched = [
        ("median", (n + 1.0) / 2.0),
        ("upper_90", 18_000.0),
        ("sum_90", 18_000.0 * 18_001.0 / 2.0),
        ("mean_90", 18_001.0 / 2.0),
        ("lower_top10", 18_001.0),
    ];
    for (stat, want) in sketched {
        let got = get(s, &format!("stats.timers.big.{stat}"));
        assert!((got - want).abs() <= want / 128.0, "big.{stat}: {got} for {want}");
    }
    for (stat, want) in [("count", 3.0), ("sum", 21.0), ("mean", 7.0), ("median", 7.0), ("upper_90", 9.0)] {
        assert_eq!(get(s, &format!("stats.timers.small.{stat}")), want, "small.{stat}");
    }
    assert_eq!(get(s, "stats_counts.statsd.timer_values_sketched"), (N + 3 - HELD) as f64);
    assert_eq!(get(s, "stats_counts.statsd.bad_lines_seen"), 0.0);
}
