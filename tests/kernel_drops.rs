//! Kernel drops made visible: a socket overflowed on purpose (SIGSTOP, burst, SIGCONT) against
//! the real `kstatsd` binary; the drops the kernel reports for it equal the `kernel_drops` meta
//! counter and the admin `stats` figure. Runs on the test's thread plus the harness's reader
//! threads.

mod common;

use common::hostile::*;
use common::Daemon;
use std::net::UdpSocket;
use std::process::Command;

/// The daemon stopped (SIGSTOP) with a small receive buffer, a burst of datagrams, SIGCONT: the
/// kernel's drop count for that socket (/proc/net/udp) equals the sum of the `kernel_drops` meta
/// counter over the flushes and the admin `stats` figure, and every datagram sent was either
/// received or dropped.
#[test]
fn kernel_drops_reach_the_meta_counter_and_admin_stats() {
    const BURST: u64 = 3_000;
    let d = Daemon::start(&["--flush-interval", "200ms", "--recv-buffer", "64KiB", "--admin", "127.0.0.1:0"]);
    let admin = d.listening("admin")[0].clone();
    let pid = d.child.id().to_string();
    let before = udp_row(d.udp);
    assert_eq!(before.drops, 0);
    d.next_flush(WAIT); // the flush thread is up
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    // Stopped: nothing reads the socket. 3,000 × ~200 bytes is far more than 64 KiB holds.
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let payload = format!("kd.c:1|c\n{}", "kd.pad:1|c\n".repeat(17));
    for _ in 0..BURST {
        tx.send_to(payload.as_bytes(), d.udp).unwrap();
    }
    let row = udp_row(d.udp);
    assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    let dropped = row.drops;
    assert!(dropped > 0 && dropped < BURST, "the kernel dropped {dropped} of {BURST}: {row:?}");
    // The sums over the flushes reach both figures; received + dropped = sent.
    let s = sums_until(
        &d,
        &[
            ("stats_counts.statsd.kernel_drops", dropped as f64),
            ("stats_counts.kd.c", (BURST - dropped) as f64),
        ],
    );
    assert_eq!(get(&s, "stats_counts.statsd.kernel_drops"), dropped as f64);
    assert_eq!(get(&s, "stats_counts.kd.c"), (BURST - dropped) as f64, "received + dropped = sent");
    assert_eq!(udp_row(d.udp).drops, dropped, "no more drops after SIGCONT");
    let stats = admin_stats(&admin);
    assert_eq!(stat(&stats, "kstatsd.kernel_drops"), dropped as f64, "{stats}");
    assert_eq!(stat(&stats, "kstatsd.packets_received"), (BURST - dropped) as f64, "{stats}");
    eprintln!("kernel dropped {dropped} of {BURST} datagrams (socket inode {})", row.inode);
    terminate_cleanly(d);
}
