//! The stream and Unix socket inputs and pystatsd JSON, over real sockets against the real
//! binary: TCP lines split across writes, over-long lines, 1,000 concurrent connections, the
//! connection limit and the idle timeout; Unix datagram and stream sockets (mode, stale file);
//! JSON messages with tags reaching the console output as `name;k=v` series, on any input and on
//! a dedicated `json_udp` port, and bad messages counted by reason.

mod common;

use common::{Daemon, Flush};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

/// Sums every flush until each `want` name reached its value (or panics after `WAIT`); returns
/// the sums of every name seen.
fn sums_until(d: &Daemon, want: &[(&str, f64)]) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + WAIT;
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    loop {
        if want.iter().all(|(n, v)| sums.get(*n).copied().unwrap_or(0.0) >= *v) {
            return sums;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "never reached {want:?}; got {sums:?}");
        let f: Flush = d.next_flush(left);
        for (k, v) in f {
            *sums.entry(k).or_default() += v;
        }
    }
}

fn tcp_addr(d: &Daemon) -> String {
    d.listening("tcp").first().expect("a tcp listener").clone()
}

fn tmp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kstatsd-inputs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn tcp_lines_split_across_writes_and_over_long_lines() {
    let d = Daemon::start(&["--tcp", "127.0.0.1:0", "--max-line-bytes", "1KiB", "--flush-interval", "200ms"]);
    let mut c = TcpStream::connect(tcp_addr(&d)).unwrap();
    c.set_nodelay(true).unwrap();
    let long = format!("tcp.long:{}|c", "1".repeat(5000));
    let pieces: Vec<Vec<u8>> = vec![
        b"tcp.c:1|c\ntcp.c:2".to_vec(),
        b"|c\r\ntcp.t:5|ms\n".to_vec(),
        long.as_bytes()[..3000].to_vec(),
        long.as_bytes()[3000..].to_vec(),
        b"\ntcp.c:4|c\n{\"metric_name\":\"tcp.j\",\"metric_type\":\"counter\",\"count\":3}\ntcp.c:8|c"
            .to_vec(),
    ];
    for p in &pieces {
        c.write_all(p).unwrap();
        // Not needed for correctness (the framer is tested on every split); it makes the
        // pieces likely to arrive as separate reads.
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(c); // the last line has no newline: it counts at the end of the stream
    let s = sums_until(
        &d,
        &[
            ("stats_counts.tcp.c", 15.0),
            ("stats_counts.tcp.j", 3.0),
            ("stats.timers.tcp.t.count", 1.0),
            ("stats_counts.statsd.bad_lines.line_too_long", 1.0),
        ],
    );
    assert_eq!(s["stats_counts.tcp.c"], 15.0);
    assert_eq!(s["stats_counts.tcp.j"], 3.0, "JSON on a stream");
    assert_eq!(s["stats.timers.tcp.t.count"], 1.0);
    assert_eq!(s["stats_counts.statsd.bad_lines.line_too_long"], 1.0);
    assert_eq!(s["stats_counts.statsd.bad_lines_seen"], 1.0);
    assert!(!s.keys().any(|k| k.contains("tcp.long")));
}

#[test]
fn a_thousand_concurrent_tcp_connections() {
    let d = Daemon::start(&["--tcp", "127.0.0.1:0", "--flush-interval", "200ms"]);
    let addr = tcp_addr(&d);
    let mut conns: Vec<TcpStream> = (0..1000).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    for (i, c) in conns.iter_mut().enumerate() {
        c.write_all(format!("conn.c:1|c\nconn.g{}:{i}|g\n", i % 10).as_bytes()).unwrap();
    }
    let s = sums_until(
        &d,
        &[("stats_counts.conn.c", 1000.0), ("stats_counts.statsd.connections_opened", 1000.0)],
    );
    assert_eq!(s["stats_counts.conn.c"], 1000.0);
    assert_eq!(s["stats_counts.statsd.connections_opened"], 1000.0);
    assert!(!s.contains_key("stats_counts.statsd.connections_refused"));
    drop(conns);
}

#[test]
fn connections_over_the_limit_are_refused_and_counted() {
    let d =
        Daemon::start(&["--tcp", "127.0.0.1:0", "--max-tcp-connections", "3", "--flush-interval", "200ms"]);
    let addr = tcp_addr(&d);
    let mut kept: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    for c in &mut kept {
        c.write_all(b"lim.c:1|c\n").unwrap();
    }
    sums_until(&d, &[("stats_counts.lim.c", 3.0)]);
    // The 4th gets through the kernel's handshake, then the daemon closes it: EOF.
    let mut extra = TcpStream::connect(&addr).unwrap();
    extra.set_read_timeout(Some(WAIT)).unwrap();
    let mut b = [0u8; 1];
    assert_eq!(extra.read(&mut b).unwrap_or(0), 0, "the refused connection is closed");
    let s = sums_until(&d, &[("stats_counts.statsd.connections_refused", 1.0)]);
    assert_eq!(s["stats_counts.statsd.connections_refused"], 1.0);
    // The kept ones still work.
    kept[0].write_all(b"lim.c:5|c\n").unwrap();
    sums_until(&d, &[("stats_counts.lim.c", 5.0)]);
}

#[test]
fn idle_connections_are_closed_after_the_timeout() {
    let d =
        Daemon::start(&["--tcp", "127.0.0.1:0", "--tcp-idle-timeout", "300ms", "--flush-interval", "200ms"]);
    let mut c = TcpStream::connect(tcp_addr(&d)).unwrap();
    c.write_all(b"idle.c:1|c\n").unwrap();
    let sent = Instant::now();
    c.set_read_timeout(Some(WAIT)).unwrap();
    let mut b = [0u8; 1];
    assert_eq!(c.read(&mut b).unwrap(), 0, "closed by the daemon");
    let waited = sent.elapsed();
    assert!(waited >= Duration::from_millis(290), "closed after {waited:?}, before the timeout");
    assert!(waited < Duration::from_secs(5), "closed only after {waited:?}");
    let s =
        sums_until(&d, &[("stats_counts.statsd.connections_timed_out", 1.0), ("stats_counts.idle.c", 1.0)]);
    assert_eq!(s["stats_counts.statsd.connections_timed_out"], 1.0);
}

#[test]
fn unix_datagram_and_stream_sockets_with_mode_and_a_stale_file_replaced() {
    let dir = tmp_dir("uds");
    let (dgram, stream) = (dir.join("dsd.sock"), dir.join("stream.sock"));
    // A stale file left by a daemon that died.
    drop(UnixDatagram::bind(&dgram).unwrap());
    let d = Daemon::start(&[
        "--unix-dgram",
        dgram.to_str().unwrap(),
        "--unix-stream",
        stream.to_str().unwrap(),
        "--unix-mode",
        "0620",
        "--flush-interval",
        "200ms",
    ]);
    assert_eq!(d.listening("unix dgram"), vec![dgram.display().to_string()]);
    for p in [&dgram, &stream] {
        assert_eq!(std::fs::metadata(p).unwrap().permissions().mode() & 0o777, 0o620, "{}", p.display());
    }
    let tx = UnixDatagram::unbound().unwrap();
    tx.send_to(b"uds.d:1|c\nuds.d:2|c|#env:prod", &dgram).unwrap();
    let mut s = UnixStream::connect(&stream).unwrap();
    s.write_all(b"uds.s:4|c\nuds.s:").unwrap();
    s.write_all(b"5|c\n").unwrap();
    let got = sums_until(
        &d,
        &[("stats_counts.uds.s", 9.0), ("stats_counts.uds.d", 1.0), ("stats_counts.uds.d;env=prod", 2.0)],
    );
    assert_eq!(got["stats_counts.uds.s"], 9.0);
    drop(s);
    let (status, _) = d.terminate(WAIT);
    assert!(status.success());
    assert!(!dgram.exists() && !stream.exists(), "socket files removed at exit");
}

#[test]
fn pystatsd_json_with_tags_on_any_input_and_on_the_json_port() {
    let d = Daemon::start(&["--json-udp", "127.0.0.1:0", "--flush-interval", "200ms", "--percentiles", "90"]);
    let json_port = d.listening("json (udp)").first().expect("a json port").clone();
    // On the statsd port: a datagram that starts with `{`, one message per line, statsd lines
    // allowed among them.
    d.send(concat!(
        r#"{"metric_name": "user.latency", "metric_type": "timer", "value": 4.4, "stage": "Init app", "env": "dev"}"#,
        "\n",
        r#"{"metric_name": "user.logins", "metric_type": "counter", "count": 3, "host": "a"}"#,
        "\nplain.c:1|c\n",
        r#"{"metric_name": "user.temp", "metric_type": "guage", "value": 21.5, "host": "a"}"#,
    ));
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let on_json_port = [
        r#"{"metric_name": "user.trace", "metric_type": "trace", "value": 9, "route": "/x"}"#,
        r#"{"metric_name": "user.ids", "metric_type": "set", "value": "u1"}"#,
        r#"{"metric_name": "user.ids", "metric_type": "set", "value": "u2"}"#,
        "not json:1|c",
        r#"{"metric_type": "counter"}"#,
        r#"{"metric_name": "x", "metric_type": "histo", "value": 1}"#,
        r#"{"metric_name": "x", "metric_type": "counter", "#,
    ];
    tx.send_to(on_json_port.join("\n").as_bytes(), &json_port).unwrap();
    let s = sums_until(
        &d,
        &[
            ("stats_counts.user.logins;host=a", 3.0),
            ("stats.timers.user.latency.count;env=dev;stage=Init_app", 1.0),
            ("stats_counts.user.trace;route=-x", 1.0),
            ("stats.sets.user.ids.count", 2.0),
            ("stats_counts.statsd.bad_lines_seen", 4.0),
        ],
    );
    assert_eq!(s["stats_counts.plain.c"], 1.0);
    assert_eq!(s["stats.timers.user.latency.mean;env=dev;stage=Init_app"], 4.4);
    assert_eq!(s["stats.gauges.user.temp;host=a"], 21.5);
    assert_eq!(
        s["stats_counts.statsd.bad_lines.invalid_json"], 2.0,
        "a statsd line on the JSON port, a cut message"
    );
    assert_eq!(s["stats_counts.statsd.bad_lines.missing_field"], 1.0);
    assert_eq!(s["stats_counts.statsd.bad_lines.unknown_type"], 1.0);
    assert_eq!(s["stats_counts.statsd.metrics_received"], 11.0);
}
