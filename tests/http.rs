//! `[http]` against the real binary over real sockets: `/metrics` carries what was sent (counters
//! summed over intervals), `/healthz` follows the management port's `health down` / `health
//! up`, other paths and methods are refused with the right status, a request past the size limit
//! gets 431, and clients that stall (half a request, nothing at all, or more connections than the
//! limit) neither hold up a scrape nor ingest. No external program is needed; Prometheus itself
//! is in `tests/prometheus.rs`.

mod common;

use common::Daemon;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

fn start() -> (Daemon, String) {
    let d = Daemon::start(&["--http", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--flush-interval", "200ms"]);
    let http = d.listening("http").first().expect("an http listener logged").clone();
    (d, http)
}

/// Sends `request` as is and reads the answer to its end: (status, head, body).
fn exchange(addr: &str, request: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(request).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no header end: {text:?}"));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("{head}"));
    (status, head.to_string(), body.to_string())
}

fn get(addr: &str, path: &str) -> (u16, String, String) {
    exchange(addr, format!("GET {path} HTTP/1.1\r\nHost: kstatsd\r\n\r\n").as_bytes())
}

/// Scrapes until a sample line `series value` is there.
fn wait_for_sample(addr: &str, line: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, _, body) = get(addr, "/metrics");
        if body.lines().any(|l| l == line) {
            return body;
        }
        assert!(Instant::now() < deadline, "no `{line}` within {WAIT:?}; last page:\n{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn admin(d: &Daemon, command: &str) -> String {
    let addr = d.listening("admin").first().expect("an admin listener").clone();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(format!("{command}\nquit\n").as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn metrics_carry_counters_summed_over_intervals_gauges_and_timers() {
    let (d, http) = start();
    let (status, head, _) = get(&http, "/metrics");
    assert_eq!(status, 200);
    assert!(head.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"), "{head}");
    d.send(&"jobs.done:1|c|#queue:mail\n".repeat(10));
    wait_for_sample(&http, "jobs_done_total{queue=\"mail\"} 10");
    d.send("jobs.done:5|c|#queue:mail\nqueue.depth:42|g\nlat:250|ms");
    let page = wait_for_sample(&http, "jobs_done_total{queue=\"mail\"} 15");
    assert!(page.lines().any(|l| l == "queue_depth 42"), "{page}");
    assert!(page.lines().any(|l| l == "lat{quantile=\"0.9\"} 0.25"), "{page}");
    assert!(page.lines().any(|l| l == "lat_count 1"), "{page}");
    assert!(page.contains("# TYPE jobs_done_total counter\n"), "{page}");
    // The daemon's own figures: both datagrams, and their lines.
    assert!(page.lines().any(|l| l == "kstatsd_packets_received_total 2"), "{page}");
    assert!(page.lines().any(|l| l == "kstatsd_metrics_received_total 13"), "{page}");
}

#[test]
fn healthz_follows_the_admin_health_command() {
    let (d, http) = start();
    let (status, _, body) = get(&http, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert!(admin(&d, "health down").contains("health: down"));
    let (status, _, body) = get(&http, "/healthz");
    assert_eq!((status, body.as_str()), (503, "down\n"));
    assert_eq!(get(&http, "/metrics").0, 200, "metrics are still served while down");
    assert!(admin(&d, "health up").contains("health: up"));
    assert_eq!(get(&http, "/healthz").0, 200);
}

#[test]
fn other_paths_methods_and_oversized_requests_are_refused() {
    let (_d, http) = start();
    assert_eq!(get(&http, "/").0, 404);
    assert_eq!(get(&http, "/metrics/extra").0, 404);
    assert_eq!(get(&http, "/metrics?name[]=x").0, 200, "a query string is ignored");
    let (status, head, _) = exchange(&http, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(status, 405);
    assert!(head.contains("\r\nAllow: GET, HEAD"), "{head}");
    let (status, head, body) = exchange(&http, b"HEAD /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status, 200);
    assert!(body.is_empty() && !head.contains("Content-Length: 0\r\n"), "HEAD: the length, no body: {head}");
    let big = format!("GET /metrics HTTP/1.1\r\nX-Filler: {}\r\n\r\n", "a".repeat(9 << 10));
    assert_eq!(exchange(&http, big.as_bytes()).0, 431);
    assert_eq!(exchange(&http, b"\x16\x03\x01 not http\r\n\r\n").0, 400);
}

#[test]
fn stalled_clients_hold_up_neither_a_scrape_nor_ingest() {
    let (d, http) = start();
    // Half a request, nothing at all, and a full request whose answer is never read.
    let mut half = TcpStream::connect(&http).unwrap();
    half.write_all(b"GET /metr").unwrap();
    let silent = TcpStream::connect(&http).unwrap();
    let mut unread = TcpStream::connect(&http).unwrap();
    unread.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    d.send("while.stalled:3|c");
    wait_for_sample(&http, "while_stalled_total 3");

    // More connections than the server takes: the extra ones are closed at once, and scrapes
    // work again as soon as the idle ones are gone.
    let idle: Vec<TcpStream> = (0..70).map(|_| TcpStream::connect(&http).unwrap()).collect();
    let mut extra = TcpStream::connect(&http).unwrap();
    extra.set_read_timeout(Some(WAIT)).unwrap();
    let _ = extra.write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
    let mut buf = [0u8; 64];
    let closed = matches!(extra.read(&mut buf), Ok(0) | Err(_));
    assert!(closed, "a connection past the limit is closed, not served");
    drop(idle);
    let deadline = Instant::now() + WAIT;
    loop {
        let mut s = TcpStream::connect(&http).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut raw = Vec::new();
        let ok = s.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").is_ok()
            && s.read_to_end(&mut raw).is_ok()
            && raw.starts_with(b"HTTP/1.1 200");
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "scrapes did not come back after the idle clients left");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The stalled connections are closed by the server once idle for its timeout (10 s).
    half.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut rest = Vec::new();
    let ended = half.read_to_end(&mut rest);
    assert!(ended.is_ok(), "the half request is still open after 60 s: {ended:?}");
    assert!(rest.is_empty(), "closed without an answer: {rest:?}");
    drop((silent, unread));
}

#[test]
fn a_reload_that_replaces_the_sinks_keeps_the_exposition_and_its_counters() {
    let dir = std::env::temp_dir().join(format!("kstatsd-http-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("kstatsd.toml");
    let base = "[aggregate]\nflush_interval = \"200ms\"\n[http]\nlisten = \"127.0.0.1:0\"\n";
    std::fs::write(&file, base).unwrap();
    let d = Daemon::start(&["--config", file.to_str().unwrap()]);
    let http = d.listening("http").first().expect("an http listener logged").clone();
    d.send("before.reload:3|c");
    wait_for_sample(&http, "before_reload_total 3");
    // counter_rates is an option the sinks are built with: the reload replaces them.
    let changed =
        "[aggregate]\nflush_interval = \"200ms\"\ncounter_rates = true\n[http]\nlisten = \"127.0.0.1:0\"\n";
    std::fs::write(&file, changed).unwrap();
    std::process::Command::new("kill").arg("-HUP").arg(d.child.id().to_string()).status().unwrap();
    let log = d.log_until(|l| l.contains("sinks now"), WAIT);
    let line = log.iter().find(|l| l.contains("sinks now")).unwrap_or_else(|| panic!("no reload: {log:?}"));
    assert!(line.contains("\"console\"") && line.contains("\"prometheus\""), "{line}");
    d.send("before.reload:4|c");
    wait_for_sample(&http, "before_reload_total 7");
    std::fs::remove_dir_all(&dir).unwrap();
}
