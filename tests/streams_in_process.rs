//! The stream and JSON inputs run in-process on the real loop: after warm-up, reading TCP and
//! Unix stream connections (lines split across writes, over-long lines dropped; DogStatsD
//! length-prefixed frames split across writes, an over-long frame skipped), pystatsd JSON
//! datagrams, and the debug dump's off path allocate nothing on the ingest thread.

mod common;

use common::alloc::counted;
use kstatsd::config::{parse_file, Config, Overrides};
use kstatsd::daemon::{self, Daemon};
use kstatsd::flush::{CounterNames, Naming, Snapshot};
use kstatsd::net::InputAddr;
use kstatsd::sink::{FlushReport, Sink, SinkError};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: common::alloc::Counting = common::alloc::Counting;

struct Collect {
    out: Sender<BTreeMap<String, f64>>,
    buf: String,
}

impl Sink for Collect {
    fn name(&self) -> &'static str {
        "collect"
    }
    fn flush(&mut self, snapshot: &Snapshot, naming: &Naming) -> Result<FlushReport, SinkError> {
        let mut names = BTreeMap::new();
        let which = CounterNames { rate: false, count: true };
        snapshot.for_each_flat(naming, which, &mut self.buf, &mut |n, v| {
            names.insert(n.to_string(), v);
        });
        let _ = self.out.send(names);
        Ok(FlushReport::default())
    }
}

fn start(dir: &std::path::Path) -> (Daemon, Receiver<BTreeMap<String, f64>>) {
    let toml = format!(
        "[server]\nudp = [\"127.0.0.1:0\"]\nadmin = \"off\"\ntcp = [\"127.0.0.1:0\"]\nunix_stream = [{:?}]\nbusy_poll = \"always\"\n\
         max_line_bytes = 256\nmax_datagram = 1024\n[aggregate]\nflush_interval = \"1h\"\n[sinks.console]\nformat = \"off\"\n",
        dir.join("s.sock").display().to_string()
    );
    let config = Config::build(parse_file(&toml).unwrap(), &Overrides::default()).unwrap();
    let (tx, rx) = channel();
    (daemon::build(&config, vec![Box::new(Collect { out: tx, buf: String::new() })]).unwrap(), rx)
}

/// One round: 20 TCP writes of 10 lines each ending in half a line, the same on the Unix
/// stream, one over-long line on each, 10 JSON datagrams of 5 messages, and on a framed Unix
/// stream 200 frames in 20 writes cut inside frames plus a frame over `max_datagram`. 655
/// metrics.
fn round(tcp: &mut TcpStream, unix: &mut UnixStream, framed: &mut UnixStream, udp: &UdpSocket, to: &str) {
    for stream in [tcp as &mut dyn Write, unix as &mut dyn Write] {
        for w in 0..20 {
            let mut chunk = String::new();
            for l in 0..10 {
                chunk.push_str(&format!("|c\nst.c{}:{}", (w * 10 + l) % 37, l));
            }
            stream.write_all(chunk.as_bytes()).unwrap();
        }
        stream.write_all(b"|c\n").unwrap();
        stream.write_all(format!("x:{}|c\n", "9".repeat(400)).as_bytes()).unwrap();
    }
    let mut frames = Vec::new();
    for i in 0..200 {
        let payload = format!("st.f{}:{}|c", i % 23, i % 3);
        frames.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frames.extend_from_slice(payload.as_bytes());
    }
    let long = format!("st.long:{}|c", "7".repeat(2000));
    frames.extend_from_slice(&(long.len() as u32).to_le_bytes());
    frames.extend_from_slice(long.as_bytes());
    // 20 equal writes, cut inside headers and payloads alike.
    let cut = frames.len().div_ceil(20);
    for chunk in frames.chunks(cut) {
        framed.write_all(chunk).unwrap();
    }
    for i in 0..10 {
        let mut d = String::new();
        for j in 0..5 {
            d.push_str(&format!(
                "{{\"metric_name\":\"js.t{}\",\"metric_type\":\"timer\",\"value\":{i}.5,\"host\":\"h{j}\"}}\n",
                (i + j) % 7
            ));
        }
        udp.send_to(d.as_bytes(), to).unwrap();
    }
}

/// Turns the loop until the interval has counted `metrics` more lines; returns the allocations
/// made inside `turn()`.
fn consume(d: &mut Daemon, metrics: u64) -> u64 {
    let target = d.server.interval_stats().metrics + metrics;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut allocations = 0;
    while d.server.interval_stats().metrics < target {
        assert!(Instant::now() < deadline, "only {} of {target} metrics", d.server.interval_stats().metrics);
        let (r, a) = counted(|| d.server.turn());
        r.unwrap();
        allocations += a;
    }
    allocations
}

#[test]
fn warmed_up_stream_and_json_ingest_allocates_nothing() {
    let dir = std::env::temp_dir().join(format!("kstatsd-alloc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (mut d, flushes) = start(&dir);
    let addrs = d.server.local_addrs();
    let find = |want: fn(&InputAddr) -> bool| addrs.iter().find(|(e, _)| want(e)).unwrap().1.clone();
    let tcp_addr = find(|e| matches!(e, InputAddr::Tcp(_)));
    let udp_addr = find(|e| matches!(e, InputAddr::Udp(_)));
    let mut tcp = TcpStream::connect(&tcp_addr).unwrap();
    let mut unix = UnixStream::connect(dir.join("s.sock")).unwrap();
    let mut framed = UnixStream::connect(dir.join("s.sock")).unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Each stream's first line is `|c` (the chunks start with the previous line's end): a bad
    // line, as are the two over-long ones and the over-long frame.
    let per_round = 2 * (20 * 10 + 1 + 1) + 50 + 201;
    let mut cold = 0;
    for _ in 0..2 {
        for _ in 0..3 {
            round(&mut tcp, &mut unix, &mut framed, &udp, &udp_addr);
            cold += consume(&mut d, per_round);
        }
        assert!(d.server.flush_now());
        flushes.recv_timeout(Duration::from_secs(10)).unwrap();
    }
    assert!(cold > 0, "warming up allocates (the counter counts)");
    round(&mut tcp, &mut unix, &mut framed, &udp, &udp_addr);
    let mut allocations = consume(&mut d, per_round);
    round(&mut tcp, &mut unix, &mut framed, &udp, &udp_addr);
    allocations += consume(&mut d, per_round);
    assert!(d.server.flush_now());
    let seen = flushes.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(seen["stats_counts.statsd.metrics_received"], 2.0 * per_round as f64);
    assert_eq!(seen["stats_counts.statsd.bad_lines.line_too_long"], 6.0, "2 lines and a frame a round");
    // i % 23 == 0 for i = 0, 23, ..., 184 (9 frames), values i % 3: 0, 2, 1, 0, 2, 1, 0, 2, 1
    assert_eq!(seen["stats_counts.st.f0"], 2.0 * 9.0);
    assert_eq!(seen["stats.timers.js.t0.count;host=h0"], 4.0, "i = 0 and 7, twice");
    assert_eq!(allocations, 0, "the ingest thread allocated {allocations} times for two warm rounds");
}
