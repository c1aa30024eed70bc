//! Streams at their limits against the real `kstatsd` binary: 1 MiB lines over TCP are dropped
//! and counted while the connection carries on, and 10,000 concurrent TCP connections are all
//! served (the daemon raises its own open files limit). Each test runs its own daemon on
//! ephemeral ports; runs on the test's thread plus the harness's reader threads.

mod common;

use common::hostile::*;
use common::Daemon;
use std::io::Write;
use std::net::TcpStream;

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
