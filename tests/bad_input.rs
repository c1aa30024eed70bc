//! Hostile input against the real `kstatsd` binary over real sockets. A million datagrams from a
//! fixed-seed generator (lines of every bad class whose reason is known, random bytes, mutated
//! lines, valid lines mixed in) are paced into the live daemon so that the kernel drops none
//! (checked in /proc/net/udp): the process survives and exits 0 on SIGTERM, every valid line is
//! counted exactly, and every bad line under the reason it was built for. Then the edges: names
//! at and over `max_name_bytes`, 65,507-byte datagrams, NUL bytes, invalid UTF-8 (sanitized and
//! not). Each test runs its own daemon on ephemeral ports; runs on the test's thread plus the
//! harness's reader threads.

mod common;

use common::hostile::*;
use common::Daemon;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::UdpSocket;

// ---- bad lines of every class ----

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
