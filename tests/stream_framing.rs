//! DogStatsD length-prefixed frames on the stream inputs, over real sockets against the real
//! binary: frames split across writes at every byte, several frames per write, a frame over
//! `max_datagram`, a connection closed inside a frame, auto detection of framed and newline
//! connections side by side on one Unix stream socket and on TCP, and the fixed settings
//! (`newline`, `length_prefix`) doing what they say. Every flushed name and value is checked,
//! and every bad line by its reason.

mod common;

use common::Daemon;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);
/// The reasons frame errors are counted under.
const FRAME_TOO_LONG: &str = "stats_counts.statsd.bad_lines.line_too_long";
const TRUNCATED_FRAME: &str = "stats_counts.statsd.bad_lines.truncated_datagram";
const BAD: &str = "stats_counts.statsd.bad_lines_seen";
const METRICS: &str = "stats_counts.statsd.metrics_received";

fn sums_until(d: &Daemon, want: &[(&str, f64)]) -> BTreeMap<String, f64> {
    d.sums_until(want, WAIT)
}

/// Asserts that every `want` name has exactly its value, and that no other name (the daemon's
/// own `statsd.*` figures aside) was flushed.
fn assert_exact(got: &BTreeMap<String, f64>, want: &[(&str, f64)]) {
    for (name, v) in want {
        assert_eq!(got.get(*name), Some(v), "{name} in {got:?}");
    }
    // Counters and timer counts name every series a misread line would make up.
    let counted = |k: &str| {
        k.starts_with("stats_counts.")
            || k.starts_with("stats.timers.") && (k.ends_with(".count") || k.contains(".count;"))
    };
    let others: Vec<&String> = got
        .keys()
        .filter(|k| counted(k) && !k.contains(".statsd.") && !want.iter().any(|(n, _)| n == *k))
        .collect();
    assert!(others.is_empty(), "unexpected names {others:?} in {got:?}");
}

fn frame(payload: &str) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_le_bytes().to_vec();
    v.extend_from_slice(payload.as_bytes());
    v
}

fn frames(payloads: &[&str]) -> Vec<u8> {
    payloads.iter().flat_map(|p| frame(p)).collect()
}

fn tmp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kstatsd-framing-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A daemon with one Unix stream socket (and a TCP listener), 200 ms flushes, and `extra` flags.
fn start(name: &str, extra: &[&str]) -> (Daemon, PathBuf, String) {
    let sock = tmp_dir(name).join("dsd.sock");
    let mut args = vec!["--unix-stream", sock.to_str().unwrap(), "--tcp", "127.0.0.1:0"];
    args.extend_from_slice(&["--flush-interval", "200ms"]);
    args.extend_from_slice(extra);
    let d = Daemon::start(&args);
    let tcp = d.listening("tcp").first().expect("a tcp listener").clone();
    (d, sock, tcp)
}

/// The workload of the split test: three frames, one of them holding two lines.
fn workload() -> Vec<u8> {
    frames(&["fr.c:1|c", "fr.c:2|c\nfr.t:5|ms|#env:prod", "fr.g:7|g"])
}

#[test]
fn frames_split_across_writes_at_every_byte() {
    let (d, sock, tcp) = start("split", &[]);
    let s = workload();
    // For each cut point, one connection that writes the stream in two pieces, on the Unix
    // socket and on TCP; and one connection each that writes a byte at a time.
    let mut conns = 0;
    for cut in 0..=s.len() {
        let mut u = UnixStream::connect(&sock).unwrap();
        let mut t = TcpStream::connect(&tcp).unwrap();
        t.set_nodelay(true).unwrap();
        for w in [&mut u as &mut dyn Write, &mut t as &mut dyn Write] {
            w.write_all(&s[..cut]).unwrap();
            w.flush().unwrap();
            w.write_all(&s[cut..]).unwrap();
        }
        conns += 2;
    }
    let mut u = UnixStream::connect(&sock).unwrap();
    let mut t = TcpStream::connect(&tcp).unwrap();
    t.set_nodelay(true).unwrap();
    for b in &s {
        u.write_all(std::slice::from_ref(b)).unwrap();
        t.write_all(std::slice::from_ref(b)).unwrap();
        // Not needed for correctness (the framer is tested on every split in its unit tests):
        // it makes the bytes likely to arrive as separate reads.
        std::thread::sleep(Duration::from_micros(300));
    }
    conns += 2;
    let n = f64::from(conns);
    let got = sums_until(&d, &[("stats_counts.fr.c", 3.0 * n), ("stats.timers.fr.t.count;env=prod", n)]);
    assert_exact(
        &got,
        &[
            ("stats_counts.fr.c", 3.0 * n),
            ("stats.timers.fr.t.count;env=prod", n),
            ("stats.timers.fr.t.sum;env=prod", 5.0 * n),
            (METRICS, 4.0 * n),
        ],
    );
    assert_eq!(got[BAD], 0.0, "no bad line");
    assert_eq!(got["stats.gauges.fr.g"] % 7.0, 0.0, "the gauge is 7 in every flush");
}

#[test]
fn several_frames_per_write_a_frame_too_long_and_the_connection_carries_on() {
    let (d, sock, tcp) = start("long", &["--max-datagram", "512"]);
    let mut u = UnixStream::connect(&sock).unwrap();
    let mut t = TcpStream::connect(&tcp).unwrap();
    // 600 bytes of good lines: over max_datagram, so the whole frame is dropped.
    let long: String = (0..60).map(|i| format!("big.c:{:03}|c\n", i % 10)).collect();
    let stream = |who: &str| {
        let members = format!("many.c:2|c\nmany.s:a{who}|s\nmany.s:b{who}|s");
        let mut s = frames(&["many.c:1|c", &members, "many.g:3|g"]);
        s.extend(frame(&long));
        s.extend(frames(&["after.c:5|c", "after.c:6|c"]));
        s
    };
    u.write_all(&stream("u")).unwrap();
    t.write_all(&stream("t")).unwrap();
    let got = sums_until(&d, &[("stats_counts.after.c", 22.0), (FRAME_TOO_LONG, 2.0)]);
    assert_exact(
        &got,
        &[
            ("stats_counts.many.c", 6.0),
            ("stats.sets.many.s.count", 4.0),
            ("stats_counts.after.c", 22.0),
            (FRAME_TOO_LONG, 2.0),
            (BAD, 2.0),
            (METRICS, 2.0 * 8.0),
        ],
    );
    assert!(got.keys().all(|k| !k.contains("big.c")), "nothing of the long frame: {got:?}");
    assert!(got["stats.gauges.many.g"] >= 3.0);
}

#[test]
fn a_connection_closed_inside_a_frame() {
    let (d, sock, tcp) = start("cut", &[]);
    // A frame that says 40 bytes; 15 arrive: one complete line, and a cut one.
    let full = "cut.c:1|c\ncut.c:2|c\ncut.c:4|c\ncut.x:9|c";
    assert_eq!(full.len(), 39);
    let mut stream = frames(&["cut.c:10|c"]);
    stream.extend(&frame(&format!("{full}\n"))[..4 + 15]);
    {
        let mut u = UnixStream::connect(&sock).unwrap();
        u.write_all(&stream).unwrap();
        let mut t = TcpStream::connect(&tcp).unwrap();
        t.write_all(&stream).unwrap();
        // And a connection that ends inside a header.
        let mut h = UnixStream::connect(&sock).unwrap();
        h.write_all(&frames(&["cut.c:100|c"])).unwrap();
        h.write_all(&[9, 0]).unwrap();
    }
    let got = sums_until(&d, &[(TRUNCATED_FRAME, 3.0), ("stats_counts.cut.c", 122.0)]);
    // each cut connection: 10 (whole frame) + 1 (complete line of the cut frame) = 11
    assert_exact(
        &got,
        &[
            ("stats_counts.cut.c", 2.0 * 11.0 + 100.0),
            (TRUNCATED_FRAME, 3.0),
            (BAD, 3.0),
            (METRICS, 2.0 * 3.0 + 2.0),
        ],
    );
}

#[test]
fn auto_tells_framed_and_newline_connections_apart_on_the_same_socket() {
    let (d, sock, tcp) = start("auto", &[]);
    let mut framed_u = UnixStream::connect(&sock).unwrap();
    let mut lines_u = UnixStream::connect(&sock).unwrap();
    let mut framed_t = TcpStream::connect(&tcp).unwrap();
    let mut lines_t = TcpStream::connect(&tcp).unwrap();
    for w in [&mut framed_u as &mut dyn Write, &mut framed_t] {
        w.write_all(&frames(&["auto.f:1|c|#via:frame", "auto.f:2|c|#via:frame\nauto.t:3|ms"])).unwrap();
    }
    for w in [&mut lines_u as &mut dyn Write, &mut lines_t] {
        w.write_all(b"auto.l:4|c\nauto.t:5|ms\r\n{\"metric_name\":\"auto.j\",\"metric_type\":\"counter\",\"count\":6}\n")
            .unwrap();
    }
    let got = sums_until(
        &d,
        &[
            ("stats_counts.auto.f;via=frame", 6.0),
            ("stats_counts.auto.l", 8.0),
            ("stats_counts.auto.j", 12.0),
        ],
    );
    assert_exact(
        &got,
        &[
            ("stats_counts.auto.f;via=frame", 6.0),
            ("stats_counts.auto.l", 8.0),
            ("stats_counts.auto.j", 12.0),
            ("stats.timers.auto.t.count", 4.0),
            ("stats.timers.auto.t.sum", 16.0),
            (METRICS, 12.0),
        ],
    );
    assert_eq!(got[BAD], 0.0, "no bad line");
}

#[test]
fn fixed_newline_framing_reads_a_length_as_text() {
    let (d, sock, tcp) = start("newline", &["--unix-stream-framing", "newline", "--tcp-framing", "newline"]);
    // A 65-byte payload: its length's first byte is `A`, kept by the name sanitizer, the three
    // NULs removed. This is what every length-prefixed client got before framing was read.
    let payload = format!("nl.c:1|c\n{}", "nl.d:1|c\n".repeat(5)) + "nl.d:1000|c";
    assert_eq!(payload.len(), 65);
    UnixStream::connect(&sock).unwrap().write_all(&frame(&payload)).unwrap();
    TcpStream::connect(&tcp).unwrap().write_all(b"nl.d:100|c\n").unwrap();
    let got = sums_until(&d, &[("stats_counts.Anl.c", 1.0), ("stats_counts.nl.d", 1105.0)]);
    assert_exact(&got, &[("stats_counts.Anl.c", 1.0), ("stats_counts.nl.d", 1105.0), (METRICS, 8.0)]);
}

#[test]
fn fixed_length_prefix_framing_reads_text_as_a_length() {
    let (d, sock, tcp) =
        start("prefix", &["--unix-stream-framing", "length_prefix", "--tcp-framing", "length_prefix"]);
    // `lp.c` read as a length is 0x632e706c bytes: over max_datagram, one bad line, and the
    // rest of this connection is inside that frame.
    UnixStream::connect(&sock).unwrap().write_all(b"lp.c:1|c\nlp.c:2|c\n").unwrap();
    TcpStream::connect(&tcp).unwrap().write_all(&frames(&["lp.f:3|c"])).unwrap();
    let got = sums_until(&d, &[("stats_counts.lp.f", 3.0), (FRAME_TOO_LONG, 1.0)]);
    assert_exact(&got, &[("stats_counts.lp.f", 3.0), (FRAME_TOO_LONG, 1.0), (BAD, 1.0), (METRICS, 2.0)]);
}

#[test]
fn framing_settings_in_the_file_the_environment_and_check_config() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kstatsd"))
        .args(["--check-config", "--tcp-framing", "length_prefix"])
        .env("KSTATSD_UNIX_STREAM_FRAMING", "newline")
        .env_remove("KSTATSD_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("tcp_framing = \"length_prefix\"\n"), "{text}");
    assert!(text.contains("unix_stream_framing = \"newline\"\n"), "{text}");
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_kstatsd"))
        .args(["--check-config", "--tcp-framing", "lengthprefix"])
        .env_remove("KSTATSD_CONFIG")
        .env_remove("KSTATSD_UNIX_STREAM_FRAMING")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("server.tcp_framing: `lengthprefix` is not auto, newline or length_prefix"),
        "{err}"
    );
}

/// Regression: a client that wrote and closed before the daemon's first read had its end of
/// stream behind the data, which brings no readiness edge of its own; the read stopped at the
/// short read, the unfinished last line was never counted.
#[test]
fn clients_that_write_and_close_at_once_have_their_last_line_counted() {
    let (d, sock, tcp) = start("close", &[]);
    for i in 0..20 {
        UnixStream::connect(&sock).unwrap().write_all(format!("wc.u:{i}|c").as_bytes()).unwrap();
        TcpStream::connect(&tcp).unwrap().write_all(&frame("wc.t:1|c\nwc.t:2|c")[..18]).unwrap();
    }
    let got = sums_until(&d, &[("stats_counts.wc.u", 190.0), (TRUNCATED_FRAME, 20.0)]);
    assert_exact(
        &got,
        &[
            ("stats_counts.wc.u", 190.0),
            ("stats_counts.wc.t", 20.0),
            (TRUNCATED_FRAME, 20.0),
            (BAD, 20.0),
            (METRICS, 60.0),
        ],
    );
}
