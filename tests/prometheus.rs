//! `/metrics` against the real Prometheus tools (Debian's `prometheus` package, which `.ci/run`
//! installs): `promtool check metrics` accepts a real exposition full of awkward names (tags,
//! escaping, names that two kinds want, histograms), and a real Prometheus server, started here
//! on free loopback ports with its storage in a temp dir and a one-second scrape interval,
//! scrapes the real binary: its HTTP API returns a counter summed over two intervals (seen
//! before and after the second one), a gauge and a timer quantile, and `up` for the target;
//! `/healthz` answers 200, then 503 after `health down`.
//!
//! A missing `prometheus` or `promtool` fails these tests.
#![cfg(feature = "peers")]

mod common;

use common::Daemon;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

fn require(program: &str) {
    let found = Command::new(program).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(
        found.is_ok_and(|s| s.success()),
        "`{program}` is not installed: these tests need Debian's prometheus package (.ci/run installs it)"
    );
}

/// GET `path` on `addr`: (status, body).
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    // Prometheus answers small bodies with Content-Length; a chunked one is not expected here.
    assert!(!head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{head}");
    (status, body.to_string())
}

fn http_of(d: &Daemon) -> String {
    d.listening("http").first().expect("an http listener logged").clone()
}

fn scrape_until(addr: &str, line: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, body) = get(addr, "/metrics");
        if body.lines().any(|l| l == line) {
            return body;
        }
        assert!(Instant::now() < deadline, "no `{line}` on /metrics within {WAIT:?}:\n{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn promtool_accepts_a_real_exposition() {
    require("promtool");
    // Two network sinks with nobody listening, so that every sink figure is on the page.
    let down = format!("{}", common::ports::free_port());
    let kafka = format!("http://127.0.0.1:{down}");
    let d = Daemon::start(&[
        "--graphite-host",
        "127.0.0.1",
        "--graphite-port",
        &down,
        "--kafka-rest",
        &kafka,
        "--kafka-topic",
        "metrics",
        "--http",
        "127.0.0.1:0",
        "--flush-interval",
        "200ms",
        "--percentiles",
        "90,99.9,50,-10",
        "--histograms",
        "[{metric = \"api.\", bins = [0.5, 10, 100, \"inf\"]}]",
        "--sanitize-keys",
        "false",
    ]);
    let http = http_of(&d);
    d.send(
        "hits:1|c|#env:prod,path:a\"b\\c,flag,le:5\nhits:2|c\nhits_total:7|g\n9lives:1|c\n\
         api.lat:3|ms\napi.lat:70|ms\napi.lat:5000|ms\nlat:12|ms\nlat:30|ms\n\
         users:a|s\nusers:b|s\nq.depth:-4|g\nneg:-2|c\nmulti.byte.é:1|g\nbroken line",
    );
    let page = scrape_until(&http, "hits_total 2");
    assert!(page.contains("api_lat_bucket{le=\"0.0005\"} 0\n"), "{page}");
    assert!(
        page.contains("hits_total{env=\"prod\",flag=\"true\",path=\"a\\\"b\\\\c\",tag_le=\"5\"} 1\n"),
        "{page}"
    );
    // Once the summary `lat` is there, a gauge `lat_sum` would write into it: it is left out.
    d.send("lat_sum:1|g\nlat:5|ms");
    let page = scrape_until(&http, "lat_count 3");
    for sink in ["graphite", "kafka", "console", "prometheus"] {
        assert!(page.contains(&format!("kstatsd_sink_flush_length_bytes{{sink=\"{sink}\"}}")), "{page}");
    }
    assert!(page.contains("kstatsd_sink_retried_total{sink=\"graphite\"}"), "{page}");
    assert!(!page.contains("# TYPE lat_sum") && !page.contains("lat_sum 1\n"), "{page}");
    assert!(!page.contains("# TYPE hits_total gauge"), "{page}");

    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{page}");
}

/// A Prometheus server on free loopback ports, scraping `target` every second; killed on drop.
struct PromServer {
    child: Child,
    addr: String,
    dir: PathBuf,
}

impl PromServer {
    fn start(target: &str) -> PromServer {
        require("prometheus");
        let dir = std::env::temp_dir().join(format!(
            "kstatsd-prometheus-{}-{}",
            std::process::id(),
            target.replace(':', "_")
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: kstatsd\n    static_configs:\n      - targets: [\"{target}\"]\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = common::ports::free_port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("start prometheus");
        let server = PromServer { child, addr, dir };
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(&server.addr).is_err() || get(&server.addr, "/-/ready").0 != 200 {
            assert!(Instant::now() < deadline, "prometheus not ready within {WAIT:?}:\n{}", server.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// The value of an instant query's single result, if it has one.
    fn query(&self, promql: &str) -> Option<f64> {
        let (status, body) = get(&self.addr, &format!("/api/v1/query?query={}", encode(promql)));
        assert_eq!(status, 200, "{promql}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(v["status"], "success", "{body}");
        let result = v["data"]["result"].as_array()?;
        assert!(result.len() <= 1, "{promql}: more than one series: {body}");
        result.first()?["value"][1].as_str()?.parse().ok()
    }

    /// Queries until `promql` gives `want`.
    fn wait_for(&self, promql: &str, want: f64) {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self.query(promql);
            if got == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{promql} = {got:?}, not {want}, within {WAIT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for PromServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn a_real_prometheus_scrapes_counters_gauges_and_timer_quantiles() {
    let d = Daemon::start(&["--http", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--flush-interval", "1s"]);
    let http = http_of(&d);
    let prom = PromServer::start(&http);
    prom.wait_for("up{job=\"kstatsd\"}", 1.0);

    // 10 increments in one interval, scraped; then 5 in another: Prometheus reads 15.
    d.send(&"jobs.done:1|c|#queue:mail\n".repeat(10));
    scrape_until(&http, "jobs_done_total{queue=\"mail\"} 10");
    prom.wait_for("jobs_done_total{queue=\"mail\"}", 10.0);
    d.send("jobs.done:5|c|#queue:mail");
    scrape_until(&http, "jobs_done_total{queue=\"mail\"} 15");
    prom.wait_for("jobs_done_total{queue=\"mail\"}", 15.0);
    prom.wait_for("min_over_time(jobs_done_total{queue=\"mail\"}[10m])", 10.0);
    assert!(
        prom.query("count_over_time(jobs_done_total{queue=\"mail\"}[10m])").is_some_and(|n| n >= 2.0),
        "at least two scrapes of the counter"
    );

    // A gauge, and a timer's 90th percentile (seconds) from an interval with 10 values.
    let timer: String = (1..=10).map(|i| format!("api.latency:{}|ms\n", i * 10)).collect();
    let deadline = Instant::now() + WAIT;
    loop {
        // Quantiles are the last interval's: keep sending until a scrape has caught one.
        d.send(&format!("{timer}queue.depth:42|g"));
        let q = prom.query("api_latency{quantile=\"0.9\"}");
        if q == Some(0.09) {
            break;
        }
        assert!(Instant::now() < deadline, "api_latency{{quantile=\"0.9\"}} = {q:?}:\n{}", prom.log());
        std::thread::sleep(Duration::from_millis(300));
    }
    prom.wait_for("queue_depth", 42.0);
    assert!(prom.query("api_latency_count").is_some_and(|n| n >= 10.0 && n % 10.0 == 0.0));
    prom.wait_for("kstatsd_bad_lines_total{reason=\"no_type\"}", 0.0);

    // /healthz: 200, then 503 after `health down` on the management port.
    assert_eq!(get(&http, "/healthz"), (200, "ok\n".to_string()));
    let admin = d.listening("admin").first().expect("an admin listener").clone();
    let mut s = TcpStream::connect(admin).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"health down\nquit\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.contains("health: down"), "{answer}");
    assert_eq!(get(&http, "/healthz"), (503, "down\n".to_string()));
    prom.wait_for("up{job=\"kstatsd\"}", 1.0);
}
