//! The real `kstatsd` binary over real UDP sockets: every etsy vector replayed interval by
//! interval, bad lines counted by reason with the rest of each datagram kept, DogStatsD extras,
//! truncated datagrams, the text console, SIGTERM's final flush, and `--check-config`.

mod common;

use common::vectors::{compare, load, toml_for, wanted};
use common::{Daemon, Flush};
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

fn temp_file(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("kstatsd-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// Per-second rates depend on the real interval; everything else must be exact.
fn is_rate(name: &str, want: &Flush) -> bool {
    name.contains("count_ps")
        || name.contains(".rate")
        || name.strip_prefix("stats.").is_some_and(|rest| want.contains_key(&format!("stats_counts.{rest}")))
}

/// Sends each interval's datagrams right after a flush boundary and compares the next flush
/// with what etsy flushed. The daemon flushes every 400 ms; the vectors' rates are per 1 s
/// intervals, so ours are compared as rate × 0.4 s with a 15 % margin for timer jitter.
fn replay_over_udp(file: &str) {
    let v = load(file);
    let config = temp_file(file, &toml_for(&v["etsy_config"]));
    let d = Daemon::start(&["--config", &config, "--flush-interval", "400ms", "--counter-rates"]);
    d.next_flush(WAIT); // a boundary
    let mut failures = Vec::new();
    for (i, flush) in v["flushes"].as_array().unwrap().iter().enumerate() {
        for packet in flush["lines"].as_array().unwrap() {
            d.send(packet.as_str().unwrap());
        }
        let got = d.next_flush(WAIT);
        let want = wanted(flush);
        let equal = |name: &str, g: f64, w: f64| {
            if is_rate(name, &want) {
                (g * 0.4 - w).abs() <= 0.15 * w.abs()
            } else {
                g == w
            }
        };
        compare(i, &want, &got, &equal, &mut failures);
    }
    assert!(failures.is_empty(), "{file} over UDP:\n{}", failures.join("\n"));
}

#[test]
fn vector_counters_over_udp() {
    replay_over_udp("counters.json");
}

#[test]
fn vector_gauges_over_udp() {
    replay_over_udp("gauges.json");
}

#[test]
fn vector_timers_over_udp() {
    replay_over_udp("timers.json");
}

#[test]
fn vector_histograms_over_udp() {
    replay_over_udp("histograms.json");
}

#[test]
fn vector_sets_over_udp() {
    replay_over_udp("sets.json");
}

#[test]
fn vector_bad_lines_over_udp() {
    replay_over_udp("bad_lines.json");
}

#[test]
fn vector_tags_and_names_over_udp() {
    replay_over_udp("tags_and_names.json");
}

#[test]
fn vector_delete_idle_over_udp() {
    replay_over_udp("delete_idle.json");
}

#[test]
fn vector_non_legacy_over_udp() {
    replay_over_udp("non_legacy.json");
}

/// One datagram with a line of every bad class between good ones: each class is counted under
/// its own reason, the good lines all count.
#[test]
fn every_bad_line_class_is_counted_by_reason_and_the_rest_of_the_packet_kept() {
    let d = Daemon::start(&["--flush-interval", "300ms", "--max-name-bytes", "20", "--max-tags", "2"]);
    let cases = [
        ("foo", "no_value"),
        (":1|c", "empty_name"),
        ("foo:1", "no_type"),
        ("foo:1|x", "unknown_type"),
        ("foo:abc|c", "bad_value"),
        ("foo:-1|ms", "negative_timer"),
        ("foo:1|c|@0", "bad_sample_rate"),
        ("foo:1|c|Tnow", "bad_timestamp"),
        ("foo:1|c|#a|#b", "duplicate_tags"),
        ("_e{9,4}:title|text", "bad_event"),
        ("a_name_longer_than_twenty_bytes:1|c", "name_too_long"),
        ("foo:1|c|#a,b,c", "too_many_tags"),
    ];
    let mut datagram = String::from("good:1|c\n");
    for (line, _) in &cases {
        datagram.push_str(line);
        datagram.push_str("\ngood:1|c\n");
    }
    d.send(&datagram);
    let f = d.flush_with("stats_counts.good", WAIT);
    assert_eq!(f["stats_counts.good"], (cases.len() + 1) as f64);
    assert_eq!(f["stats_counts.statsd.bad_lines_seen"], cases.len() as f64);
    assert_eq!(f["stats_counts.statsd.metrics_received"], (2 * cases.len() + 1) as f64);
    assert_eq!(f["stats_counts.statsd.packets_received"], 1.0);
    for (line, reason) in cases {
        assert_eq!(
            f.get(&format!("stats_counts.statsd.bad_lines.{reason}")),
            Some(&1.0),
            "{line} → {reason}"
        );
    }
}

#[test]
fn dogstatsd_tags_events_service_checks_and_fields() {
    let d = Daemon::start(&["--flush-interval", "300ms"]);
    d.send(
        "api.req:1|c|#env:prod,host:a|c:abc123|T1700000000\napi.req:2|c|#host:a,env:prod|x:unknown\n\
         api.lat:1:2:3|ms|@0.5|#env:prod\n_e{5,4}:title|text|#env:prod\n_sc|db.up|0|#env:prod\n\
         mixed:1|c:4|g\n",
    );
    let f = d.flush_with("stats_counts.api.req;env=prod;host=a", WAIT);
    assert_eq!(f["stats_counts.api.req;env=prod;host=a"], 3.0, "tag order does not split a series");
    assert_eq!(f["stats.timers.api.lat.count;env=prod"], 6.0, "three packed values at @0.5");
    assert_eq!(f["stats.timers.api.lat.upper;env=prod"], 3.0);
    assert_eq!(f["stats_counts.mixed"], 1.0);
    assert_eq!(f["stats.gauges.mixed"], 4.0);
    assert_eq!(f["stats_counts.statsd.events_received"], 1.0);
    assert_eq!(f["stats_counts.statsd.service_checks_received"], 1.0);
    assert_eq!(f["stats_counts.statsd.bad_lines_seen"], 0.0);
}

#[test]
fn a_truncated_datagram_keeps_its_complete_lines() {
    let d = Daemon::start(&["--flush-interval", "300ms", "--max-datagram", "512"]);
    let mut datagram = String::new();
    while datagram.len() < 600 {
        datagram.push_str("trunc.c:1|c\n");
    }
    d.send(&datagram);
    let f = d.flush_with("stats_counts.trunc.c", WAIT);
    let complete = (512 / "trunc.c:1|c\n".len()) as f64;
    assert_eq!(f["stats_counts.trunc.c"], complete);
    assert_eq!(f["stats_counts.statsd.bad_lines.truncated_datagram"], 1.0);
}

#[test]
fn sigterm_flushes_what_was_aggregated_and_exits_zero() {
    let d = Daemon::start(&["--flush-interval", "1h"]);
    let n = 2_000;
    for i in 0..n {
        d.send(&format!("term.c:1|c\nterm.k{}:1|c", i % 100));
    }
    // Loopback queues each datagram before send_to returns, and shutdown drains the socket.
    d.send("term.last:1|c");
    let (status, flushes) = d.terminate(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(flushes.len(), 1, "one final flush");
    let f = &flushes[0];
    assert_eq!(f["stats_counts.term.last"], 1.0);
    assert_eq!(f["stats_counts.term.c"], n as f64);
    let per_key: f64 = (0..100).map(|k| f[&format!("stats_counts.term.k{k}")]).sum();
    assert_eq!(per_key, n as f64);
}

#[test]
fn the_text_console_prints_graphite_lines() {
    let d = Daemon::start_raw(&["--udp", "127.0.0.1:0", "--console", "text", "--flush-interval", "1h"]);
    d.send("txt.c:3|c\ntxt.t:5|ms\ntxt.g:7|g\ntxt.s:a|s");
    let (status, lines) = d.terminate_lines(Duration::from_secs(10));
    assert!(status.success());
    let get = |name: &str| {
        let l = lines
            .iter()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in {lines:?}"));
        let parts: Vec<&str> = l.split(' ').collect();
        assert_eq!(parts.len(), 3, "{l}");
        assert!(parts[2].parse::<u64>().unwrap() > 1_600_000_000, "{l}");
        parts[1].parse::<f64>().unwrap()
    };
    assert_eq!(get("stats_counts.txt.c"), 3.0);
    assert!(get("stats.txt.c") > 0.0, "the text form carries counter rates");
    assert_eq!(get("stats.timers.txt.t.upper_90"), 5.0);
    assert_eq!(get("stats.gauges.txt.g"), 7.0);
    assert_eq!(get("stats.sets.txt.s.count"), 1.0);
    // 4 user series + 8 meta counters + the timestamp_lag gauge
    assert_eq!(get("statsd.numStats"), 13.0);
}

#[test]
fn several_listen_addresses_feed_one_aggregate() {
    let d = Daemon::start_raw(&[
        "--udp",
        "127.0.0.1:0,127.0.0.1:0",
        "--udp",
        "[::1]:0",
        "--console",
        "json",
        "--flush-interval",
        "300ms",
    ]);
    assert_eq!(d.udp_all.len(), 3);
    let tx4 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let tx6 = std::net::UdpSocket::bind("[::1]:0").unwrap();
    for addr in &d.udp_all {
        let tx = if addr.is_ipv4() { &tx4 } else { &tx6 };
        tx.send_to(b"multi.c:1|c", addr).unwrap();
    }
    let f = d.flush_with("stats_counts.multi.c", WAIT);
    let more = if f["stats_counts.multi.c"] < 3.0 { d.next_flush(WAIT)["stats_counts.multi.c"] } else { 0.0 };
    assert_eq!(f["stats_counts.multi.c"] + more, 3.0);
}

/// CPU time (user + system) the process has used, from /proc/PID/stat, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_comm.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap() // utime, stime
}

/// With the default busy_poll (2 ms), an idle daemon parks in epoll_wait instead of spinning:
/// over a second of silence it uses a small fraction of a core (a spinning loop would use ~100
/// ticks per second).
#[test]
fn an_idle_daemon_parks_instead_of_spinning() {
    let d = Daemon::start(&["--flush-interval", "1h"]);
    d.send("wake.c:1|c");
    let before = cpu_ticks(d.child.id());
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let used = cpu_ticks(d.child.id()) - before;
    assert!(used < 20, "an idle daemon used {used} clock ticks in one second");
}

#[test]
fn check_config_prints_the_effective_config_and_refuses_bad_ones() {
    let bin = env!("CARGO_BIN_EXE_kstatsd");
    let out = Command::new(bin)
        .args(["--check-config", "--flush-interval", "2s"])
        .env("KSTATSD_PERCENTILES", "90,-10")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("flush_interval = \"2000ms\""), "{text}");
    assert!(text.contains("percentiles = [90, -10]"), "{text}");
    assert!(text.contains("udp = [\"127.0.0.1:8125\"]"), "{text}");

    let bad = temp_file("bad.toml", "[aggregate]\nflush_interval = \"1s\"\npercentile = [90]\n");
    let out = Command::new(bin).args(["--check-config", "--config", &bad]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("bad.toml: line 3: unknown field `percentile`"), "{err}");
}
