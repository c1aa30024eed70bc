//! A real daemon (sockets, recvmmsg loop, flush thread) run inside the test process, with sinks
//! written here: proves that the warmed-up ingest path allocates nothing, that a slow sink never
//! blocks ingest (overruns counted, nothing lost or counted twice, rates from the real elapsed
//! time), and that the raw `packet` hook sees every datagram.

mod common;

use common::alloc::counted;
use kstatsd::config::{parse_file, Config, Overrides};
use kstatsd::daemon::{self, Daemon};
use kstatsd::flush::{CounterNames, Naming, Snapshot};
use kstatsd::sink::{FlushReport, Sink, SinkError};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::UdpSocket;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: common::alloc::Counting = common::alloc::Counting;

// ---- a sink that hands every flush to the test ----

/// One flush as the test sees it.
struct Seen {
    names: BTreeMap<String, f64>,
    interval: f64,
}

struct Collect {
    out: Sender<Seen>,
    delay: Duration,
    packets: Option<Arc<Mutex<Vec<Vec<u8>>>>>,
    buf: String,
}

impl Sink for Collect {
    fn name(&self) -> &'static str {
        "collect"
    }
    fn flush(&mut self, snapshot: &Snapshot, naming: &Naming) -> Result<FlushReport, SinkError> {
        std::thread::sleep(self.delay);
        let mut names = BTreeMap::new();
        let which = CounterNames { rate: true, count: true };
        snapshot.for_each_flat(naming, which, &mut self.buf, &mut |n, v| {
            names.insert(n.to_string(), v);
        });
        let _ = self.out.send(Seen { names, interval: snapshot.interval });
        Ok(FlushReport::default())
    }
    fn wants_packets(&self) -> bool {
        self.packets.is_some()
    }
    fn packet(&mut self, datagram: &[u8]) {
        if let Some(p) = &self.packets {
            p.lock().unwrap().push(datagram.to_vec());
        }
    }
}

/// A daemon on an ephemeral port with `server` and `aggregate` lines added to those tables.
fn start(
    server: &str,
    aggregate: &str,
    delay: Duration,
    packets: Option<Arc<Mutex<Vec<Vec<u8>>>>>,
) -> (Daemon, Receiver<Seen>) {
    let toml = format!("[server]\nudp = [\"127.0.0.1:0\"]\nadmin = \"off\"\n{server}\n[aggregate]\n{aggregate}\n[sinks.console]\nformat = \"off\"\n");
    let config = Config::build(parse_file(&toml).unwrap(), &Overrides::default()).unwrap();
    let (tx, rx) = channel();
    let sink = Collect { out: tx, delay, packets, buf: String::new() };
    (daemon::build(&config, vec![Box::new(sink)]).unwrap(), rx)
}

/// 50 datagrams of 20 lines over 1,000 keys of every type, with tags, rates and set members.
fn workload() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut x: u64 = 0x2545F4914F6CDD1D;
    for _ in 0..50 {
        let mut d = String::new();
        for _ in 0..20 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = x % 1000;
            let line = match x % 10 {
                0..=3 => format!("load.c{k}:{}|c|@0.5\n", x % 7),
                4..=6 => format!("load.t{k}:{}.{}|ms|#env:prod,az:{}\n", x % 500, x % 10, k % 3),
                7..=8 => format!("load.g{k}:{}{}|g\n", if x % 3 == 0 { "+" } else { "" }, x % 100),
                _ => format!("load.s{k}:user{}|s\n", x % 50),
            };
            d.push_str(&line);
        }
        out.push(d.into_bytes());
    }
    out
}

/// Sends the datagrams, then runs the loop until it has read them all; returns the allocations
/// made inside `turn()` (the test thread's own sending is not counted).
fn send_and_consume(d: &mut Daemon, tx: &UdpSocket, datagrams: &[Vec<u8>]) -> u64 {
    for dg in datagrams {
        tx.send_to(dg, d.udp[0]).unwrap();
    }
    let (mut got, mut allocations) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while got < datagrams.len() {
        assert!(Instant::now() < deadline, "only {got} of {} datagrams arrived", datagrams.len());
        let (n, a) = counted(|| d.server.turn());
        got += n.unwrap();
        allocations += a;
    }
    allocations
}

#[test]
fn warmed_up_ingest_allocates_nothing_per_datagram() {
    let (mut d, flushes) = start("busy_poll = \"always\"", "flush_interval = \"1h\"", Duration::ZERO, None);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let work = workload();
    // Warm both tables of the double buffer with three times the measured load.
    for _ in 0..2 {
        for _ in 0..3 {
            send_and_consume(&mut d, &tx, &work);
        }
        assert!(d.server.flush_now());
        flushes.recv_timeout(Duration::from_secs(10)).unwrap();
    }
    let mut allocations = send_and_consume(&mut d, &tx, &work);
    allocations += send_and_consume(&mut d, &tx, &work);
    // Waiting is the test's business (the loop only ever polls for the spare); the swap is not.
    assert!(d.server.wait_for_spare());
    let (flushed, a) = counted(|| d.server.flush_now());
    assert!(flushed);
    allocations += a;
    let seen = flushes.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(seen.names["stats_counts.statsd.packets_received"], 100.0);
    assert_eq!(seen.names["stats_counts.statsd.metrics_received"], 2000.0);
    assert_eq!(seen.names["stats_counts.statsd.bad_lines_seen"], 0.0);
    assert_eq!(
        allocations, 0,
        "the ingest thread allocated {allocations} times for 100 warm datagrams and a flush swap"
    );
}

#[test]
fn a_slow_sink_never_blocks_ingest_and_nothing_is_lost_or_doubled() {
    let (d, flushes) = start("", "flush_interval = \"50ms\"", Duration::from_millis(130), None);
    let Daemon { server, udp, stop, mut wake } = d;
    let runner = std::thread::spawn(move || server.run());
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut sent = 0u64;
    // Traffic flows until the sink has seen four flushes, however slowly the machine runs (the
    // test waits for flushes, not for a stretch of time).
    let mut all: Vec<Seen> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while all.len() < 4 {
        assert!(Instant::now() < deadline, "only {} flushes reached the sink", all.len());
        tx.send_to(b"slow.c:1|c\nslow.c:2|c", udp[0]).unwrap();
        sent += 3;
        std::thread::sleep(Duration::from_micros(200));
        all.extend(flushes.try_iter());
    }
    stop.store(true, Ordering::Relaxed);
    wake.write_all(b"x").unwrap();
    runner.join().unwrap().unwrap();
    all.extend(flushes.try_iter());
    let total: f64 = all.iter().map(|s| s.names.get("stats_counts.slow.c").copied().unwrap_or(0.0)).sum();
    assert_eq!(total, sent as f64, "every increment reaches the sink exactly once");
    // Each 130 ms flush outlasts the next 50 ms deadline: every flush after the first reports
    // the overrun its predecessor caused.
    let overruns: f64 = all.iter().map(|s| s.names["stats_counts.statsd.flush_overruns"]).sum();
    assert!(overruns >= 3.0, "a 130 ms sink on a 50 ms interval must overrun, counted {overruns}");
    for s in &all {
        let count = s.names.get("stats_counts.slow.c").copied().unwrap_or(0.0);
        let rate = s.names.get("stats.slow.c").copied().unwrap_or(0.0);
        assert_eq!(rate, count / s.interval, "rate uses the real interval");
    }
    assert!(
        all.iter().any(|s| s.interval > 0.1),
        "overrun intervals are longer than configured: {:?}",
        all.iter().map(|s| s.interval).collect::<Vec<_>>()
    );
}

#[test]
fn the_packet_hook_sees_every_datagram() {
    let packets = Arc::new(Mutex::new(Vec::new()));
    let (mut d, flushes) = start("", "flush_interval = \"1h\"", Duration::ZERO, Some(Arc::clone(&packets)));
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sent: Vec<Vec<u8>> = vec![b"a:1|c".to_vec(), b"bad line".to_vec(), b"b:2|ms\nc:3|g".to_vec()];
    send_and_consume(&mut d, &tx, &sent);
    assert!(d.server.flush_now());
    let seen = flushes.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(seen.names["stats_counts.statsd.bad_lines_seen"], 1.0);
    assert_eq!(*packets.lock().unwrap(), sent);
}

/// A SIGTERM that lands while a turn is under way: the turn's zero-timeout poll (there is a
/// stream listener to poll) takes the signal pipe's one edge-triggered event, and nothing was
/// read. That turn must end instead of parking until the next flush, an hour away, or the
/// daemon would sleep through the signal.
#[test]
fn a_stop_signal_taken_by_a_turns_first_poll_ends_the_turn_instead_of_parking() {
    let (d, _flushes) = start(
        "tcp = [\"127.0.0.1:0\"]\nbusy_poll = \"0ms\"",
        "flush_interval = \"1h\"",
        Duration::ZERO,
        None,
    );
    let Daemon { mut server, stop, mut wake, .. } = d;
    stop.store(true, Ordering::Relaxed);
    wake.write_all(b"x").unwrap();
    let (done, turned) = channel();
    std::thread::spawn(move || {
        let _ = done.send(server.turn().map_err(|e| e.to_string()));
    });
    let got = turned.recv_timeout(Duration::from_secs(20)).expect("the turn parked through the stop signal");
    assert_eq!(got, Ok(0), "nothing was sent, so the turn read nothing");
}
