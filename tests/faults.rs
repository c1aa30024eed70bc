//! Fault injection against the real `kstatsd` binary: what happens to the
//! numbers when the world around the daemon misbehaves. A Kafka REST Proxy (the emulator in
//! `common/kafka_emulator.rs`) that refuses connections for dozens of flush intervals while
//! the console and a real carbon keep receiving every flush: ingest loses nothing, the Kafka
//! queue stays under `max_queue_bytes`, the queued flushes arrive oldest first after recovery,
//! and every record the flush thread produced is either at the proxy or in the sink's own
//! dropped counter, exactly. A console sink slower than the flush interval (stdout read by a
//! slow consumer): ingest keeps reading, overruns are counted, rates divide by the real interval
//! and no increment is lost or counted twice. Shutdown: SIGTERM just before a flush with 10 k
//! keys in the interval delivers exactly what was sent and exits 0 in time; with the proxy
//! refusing or hung it exits by its deadline and counts and logs what it gave up; SIGTERM half a
//! second after a 15 s outage of 503s (with the default backoff, or a minute's `Retry-After`)
//! delivers every one of its 750 increments, the backoff cut short; SIGKILL while
//! the proxy holds a POST, then a restart on the same ports and socket files, starts cleanly.
//! Each test runs its own daemon(s) on ephemeral ports and its own temp dir, so they run in
//! parallel.

mod common;

#[cfg(feature = "peers")]
use common::carbon::Carbon;
use common::kafka_emulator::{Emulator, Fault, RetryAfter, State};
use common::{parse_flush, ports, Daemon, Flush};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bound on any single wait for an event.
const T: Duration = Duration::from_secs(15);

#[cfg(feature = "peers")]
fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn get(f: &Flush, name: &str) -> f64 {
    f.get(name).copied().unwrap_or(0.0)
}

#[cfg(feature = "peers")]
fn kafka_stat(f: &Flush, key: &str) -> f64 {
    get(f, &format!("stats.statsd.kafkaStats.{key}"))
}

/// The sum of `name` over `flushes`.
fn total(flushes: &[Flush], name: &str) -> f64 {
    flushes.iter().map(|f| get(f, name)).sum()
}

/// A fresh directory of this test process under cargo's temp dir.
fn tmp_dir(name: &str) -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("faults-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Sends SIGTERM to `child`.
fn sigterm(child: &Child) {
    // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped yet.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill -TERM");
}

/// `sink <name> at exit: <key> = <value>` lines (the sink's own figures, logged after its
/// shutdown) as key → value.
fn exit_figures(stderr: &[String], sink: &str) -> BTreeMap<String, f64> {
    let marker = format!("sink {sink} at exit: ");
    stderr
        .iter()
        .filter_map(|l| l.split(marker.as_str()).nth(1))
        .filter_map(|kv| kv.split_once(" = "))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap_or_else(|_| panic!("{k} = {v}"))))
        .collect()
}

/// The management port: one command, its answer up to `END`.
fn admin(addr: &str, cmd: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(format!("{cmd}\n").as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let mut out = String::new();
    loop {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "admin closed before END: {out}");
        if line == "END\n" {
            return out;
        }
        out.push_str(&line);
    }
}

#[cfg(feature = "peers")]
/// One figure of an admin `stats` answer.
fn admin_stat(stats: &str, key: &str) -> f64 {
    let prefix = format!("{key}: ");
    let line =
        stats.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no {key} in {stats}"));
    line[prefix.len()..].trim().parse().unwrap_or_else(|_| panic!("{line}"))
}

#[cfg(feature = "peers")]
/// Where each accepted record sits among the console flushes (the JSON console line and the
/// `flat` record value are the same bytes, so they parse to the same map). Panics on a record
/// that is not one whole console flush (a record cut in parts would break the accounting).
fn positions(console: &[Flush], accepted: &[Flush]) -> Vec<usize> {
    accepted
        .iter()
        .map(|r| {
            console
                .iter()
                .position(|f| f == r)
                .unwrap_or_else(|| panic!("a record no console flush matches: {r:?}"))
        })
        .collect()
}

/// The proxy's accepted records, parsed.
fn accepted(emu: &Emulator) -> Vec<Flush> {
    emu.with(|s| s.accepted.iter().map(|r| parse_flush(&r.value)).collect())
}

/// Makes the proxy stop taking records in a way that never loses an answer, then refuse
/// connections: first every request gets a retriable 503 (so a request already answered 200
/// is known delivered to the sink before the connection is cut), then the listener closes.
fn take_down(emu: &mut Emulator) {
    let before = emu.with(|s| {
        s.sticky = Some(Fault::status(503));
        s.requests.len()
    });
    emu.wait_for(T, "a request answered 503", |s| {
        s.requests[before..].iter().any(|r| r.status == 503).then_some(())
    });
    emu.down();
}

#[cfg(feature = "peers")]
/// Heals the proxy and listens again on the same port.
fn bring_up(emu: &mut Emulator) {
    emu.with(State::heal);
    emu.up();
}

// ---- 1. downstream outage ----

#[test]
#[cfg(feature = "peers")]
fn a_proxy_outage_delays_no_other_sink_bounds_the_queue_and_accounts_for_every_record() {
    const BOUND: f64 = 16.0 * 1024.0;
    let carbon = Carbon::start();
    let mut emu = Emulator::start();
    let carbon_port = carbon.line_port.to_string();
    let url = emu.url();
    let mut d = Daemon::start(&[
        "--flush-interval",
        "50ms",
        "--admin",
        "127.0.0.1:0",
        "--shutdown-timeout",
        "5s",
        "--graphite-host",
        "127.0.0.1",
        "--graphite-port",
        &carbon_port,
        "--kafka-rest",
        &url,
        "--kafka-topic",
        "metrics",
        "--kafka-key",
        "k",
        "--kafka-max-record-bytes",
        "8KiB",
        "--kafka-max-request-bytes",
        "9KiB",
        "--kafka-max-queue-bytes",
        "16KiB",
        "--kafka-retry-backoff",
        "20ms",
        "--kafka-retry-backoff-max",
        "50ms",
    ]);
    let admin_addr = d.listening("admin")[0].clone();
    let stderr = std::mem::replace(&mut d.stderr, channel().1);
    let mut console: Vec<Flush> = Vec::new();
    let mut sent = 0u64;
    let send = |d: &Daemon, sent: &mut u64| {
        for _ in 0..5 {
            d.send("outage.c:1|c\noutage.c:1|c");
            *sent += 2;
        }
    };

    // Healthy: records flow.
    while emu.with(|s| s.accepted.len()) < 3 {
        send(&d, &mut sent);
        console.push(d.next_flush(T));
    }

    // Outage: 60 intervals (3 s) of refused connections.
    let acked_before_outage = emu.with(|s| s.accepted.len());
    take_down(&mut emu);
    let requests_at_down = emu.with(|s| s.requests.len());
    let first_outage = console.len();
    let t_down = unix_now();
    let mut arrivals = vec![Instant::now()];
    let mut max_queue = 0.0f64;
    for i in 0..60 {
        send(&d, &mut sent);
        let f = d.next_flush(T);
        arrivals.push(Instant::now());
        let q = kafka_stat(&f, "queue_bytes");
        assert!(q <= BOUND, "flush {i} of the outage: kafka queue_bytes {q} over max_queue_bytes");
        max_queue = max_queue.max(q);
        console.push(f);
        if i % 15 == 14 {
            let stats = admin(&admin_addr, "stats");
            let q = admin_stat(&stats, "kafka.queue_bytes");
            assert!(q <= BOUND, "admin stats: kafka.queue_bytes {q} over max_queue_bytes");
            assert!(admin_stat(&stats, "kafka.queue_payloads") >= 1.0, "{stats}");
        }
    }
    let t_up = unix_now();
    assert!(max_queue > BOUND / 2.0, "the outage never filled the queue: at most {max_queue} bytes");
    let last_outage = console.last().unwrap().clone();
    assert!(kafka_stat(&last_outage, "records_dropped.queue_full") > 0.0, "a 16KiB queue overflowed");
    assert_eq!(emu.with(|s| s.requests.len()), requests_at_down, "nothing reached a closed port");
    // The flush thread only enqueues for Kafka: the console kept its 50 ms beat.
    let gaps: Vec<Duration> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|g| *g < Duration::from_secs(1)), "console flushes delayed: {gaps:?}");

    // Recovery: everything still queued arrives, up to the newest flush.
    bring_up(&mut emu);
    send(&d, &mut sent);
    let newest = d.next_flush(T);
    console.push(newest.clone());
    emu.wait_for(T, "the newest flush after recovery", |s| {
        s.accepted.iter().rev().any(|r| parse_flush(&r.value) == newest).then_some(())
    });

    // Carbon got a point for every whole second of the outage (1 s retention, flush clocks).
    carbon.wait_for("stats_counts.outage.c", t_down, T, |p| (t_down + 1..t_up).all(|s| p.contains_key(&s)));

    let (status, rest) = d.terminate_lines(T);
    assert!(status.success(), "{status:?}");
    console.extend(rest.iter().map(|l| parse_flush(l)));
    let stderr: Vec<String> = stderr.iter().collect();

    // Ingest: every increment sent, before, during and after the outage, once.
    assert_eq!(total(&console, "statsd.kernel_drops"), 0.0);
    assert_eq!(total(&console, "stats_counts.outage.c"), sent as f64, "increments sent vs flushed");

    // Delivery order: each flush at most once (the 503 phase makes sure of it), oldest first.
    let got = accepted(&emu);
    let at = positions(&console, &got);
    assert!(at.windows(2).all(|w| w[0] < w[1]), "records out of order or repeated: {at:?}");
    // What was lost is one run of the oldest flushes queued during the outage; the newer ones
    // queued then arrived after recovery.
    let missing: Vec<usize> = (0..console.len()).filter(|i| !at.contains(i)).collect();
    assert!(!missing.is_empty());
    assert!(missing.windows(2).all(|w| w[1] == w[0] + 1), "dropped flushes not one run: {missing:?}");
    let (first_lost, last_lost) = (missing[0], *missing.last().unwrap());
    assert!(first_lost >= acked_before_outage, "a flush the proxy had taken is missing: {missing:?}");
    let queued_survivors = (last_lost + 1..first_outage + 60).count();
    assert!(queued_survivors >= 2, "no flush of the outage survived in the queue: {missing:?}");

    // Exact accounting: produced = delivered + dropped-and-counted, by the sink's own figures.
    let k = exit_figures(&stderr, "kafka");
    assert_eq!(k.get("records_sent"), Some(&(got.len() as f64)), "{k:?}");
    assert_eq!(k["records_dropped"], k["records_dropped.queue_full"], "{k:?}");
    assert_eq!(
        console.len() as f64,
        got.len() as f64 + k["records_dropped"],
        "flushes produced = records delivered + records dropped ({k:?})"
    );
    assert_eq!(k["records_dropped"], missing.len() as f64);
    assert_eq!((k["queue_bytes"], k["queue_payloads"]), (0.0, 0.0), "{k:?}");
    let g = exit_figures(&stderr, "graphite");
    assert_eq!(g.get("dropped"), Some(&0.0), "carbon lost nothing: {g:?}");
}

// ---- 2. slow downstream ----

/// The binary with its stdout read by a slow consumer: after each console line the reader
/// waits `delay` (changeable while it runs) before reading on. The pipe is shrunk to one page,
/// so once it is full the console sink's `write_all` (on the flush thread) waits for the reader:
/// a sink slower than the flush interval.
struct SlowStdout {
    child: Child,
    udp: SocketAddr,
    lines: Receiver<String>,
    delay_ms: Arc<AtomicU64>,
}

impl SlowStdout {
    /// `keep_log`: read stderr to its end; otherwise close it once the daemon is ready.
    fn start(args: &[&str], delay_ms: u64, keep_log: bool) -> SlowStdout {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kstatsd"))
            .args(["--admin", "off"])
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // SAFETY: fcntl(2) F_SETPIPE_SZ on the pipe's read end, which `stdout` owns and keeps open.
        let rc = unsafe { libc::fcntl(stdout.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
        assert!(rc >= 4096, "F_SETPIPE_SZ: {}", std::io::Error::last_os_error());
        let mut udp = None;
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        for line in stderr.by_ref() {
            let line = line.unwrap();
            if let Some(rest) = line.split("udp listening on ").nth(1) {
                udp = rest.split_whitespace().next().map(|a| a.parse().unwrap());
            }
            if line.ends_with("ready") {
                break;
            }
        }
        if keep_log {
            std::thread::spawn(move || stderr.for_each(drop));
        }
        let delay = Arc::new(AtomicU64::new(delay_ms));
        let (tx, lines) = channel();
        let d = Arc::clone(&delay);
        std::thread::spawn(move || {
            let mut r = BufReader::with_capacity(512, stdout);
            let mut line = String::new();
            while r.read_line(&mut line).is_ok_and(|n| n > 0) {
                std::thread::sleep(Duration::from_millis(d.load(Ordering::Relaxed)));
                if tx.send(std::mem::take(&mut line)).is_err() {
                    break;
                }
            }
        });
        SlowStdout { child, udp: udp.expect("udp listening on"), lines, delay_ms: delay }
    }

    /// SIGTERM with the reader at full speed; the exit status, how long the exit took, and every
    /// console line not read yet.
    fn terminate(mut self) -> (ExitStatus, Duration, Vec<String>) {
        self.delay_ms.store(0, Ordering::Relaxed);
        let t = Instant::now();
        sigterm(&self.child);
        let status = wait_exit(&mut self.child, T);
        let took = t.elapsed();
        (status, took, self.lines.iter().collect())
    }
}

impl Drop for SlowStdout {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `child` to exit; panics after `timeout`.
fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "kstatsd did not exit within {timeout:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_sink_slower_than_the_interval_never_blocks_ingest_and_nothing_is_lost_or_doubled() {
    // A 150 ms console on a 50 ms interval (see `SlowStdout`); a 256 KiB receive buffer holds ~200 of these
    // datagrams, so an ingest thread that waited for the flush thread would lose most of them.
    let d = SlowStdout::start(
        &[
            "--udp",
            "127.0.0.1:0",
            "--console",
            "json",
            "--counter-rates",
            "--flush-interval",
            "50ms",
            "--recv-buffer",
            "256KiB",
            "--shutdown-timeout",
            "2s",
        ],
        150,
        true,
    );
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    // 200 more series, reported in every flush: each console line (~8 KB) is then larger than
    // the pipe, so every flush waits for the reader.
    let pad: String = (0..200).map(|i| format!("slow.padding.series.{i}:1|c\n")).collect();
    tx.send_to(pad.as_bytes(), d.udp).unwrap();
    let (mut sent, mut datagrams) = (0u64, 0u64);
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        tx.send_to(b"slow.c:1|c\nslow.c:2|c", d.udp).unwrap();
        sent += 3;
        datagrams += 1;
        std::thread::sleep(Duration::from_micros(100));
    }
    let (status, took, rest) = d.terminate();
    assert!(status.success(), "{status:?}");
    assert!(took < exit_bound(Duration::from_secs(2)), "exit took {took:?} with a 2 s shutdown_timeout");
    let flushes: Vec<Flush> = rest.iter().map(|l| parse_flush(l)).collect();
    assert!(flushes.len() >= 5, "{} flushes", flushes.len());

    // Nothing lost, nothing counted twice: every increment is in exactly one interval, or in the
    // kernel's drop count for the socket (three per datagram).
    let counted = total(&flushes, "stats_counts.slow.c");
    let kernel_drops = total(&flushes, "statsd.kernel_drops");
    assert_eq!(
        counted + 3.0 * kernel_drops,
        sent as f64,
        "sent {sent}, counted {counted}, dropped {kernel_drops}"
    );
    assert!(
        kernel_drops * 20.0 < datagrams as f64,
        "{kernel_drops} of {datagrams} datagrams dropped: ingest waited for the flush thread"
    );

    // Overruns counted; the late intervals are longer, and rates divide by their real length.
    let overruns = total(&flushes, "stats_counts.statsd.flush_overruns");
    assert!(overruns >= 5.0, "a 150 ms sink on a 50 ms interval overran {overruns} times");
    let mut long = 0;
    for f in &flushes {
        let lag_ms = get(f, "stats.gauges.statsd.timestamp_lag");
        let interval = 0.05 + lag_ms / 1e3;
        if interval > 0.1 {
            long += 1;
        }
        let (count, rate) = (get(f, "stats_counts.slow.c"), get(f, "stats.slow.c"));
        let want = count / interval;
        assert!((rate - want).abs() <= want * 1e-9, "rate {rate} for {count} in {interval} s: {f:?}");
    }
    assert!(long >= 5, "only {long} intervals were longer than twice the configured one");
}

// ---- 3. shutdown ----

/// Exit bound for a daemon with `shutdown_timeout` = `timeout`: the whole exit gets `timeout`,
/// the flush thread half a second more to log what it gave up (`EXIT_GRACE`); one more second of
/// slack for a loaded machine.
fn exit_bound(timeout: Duration) -> Duration {
    timeout + Duration::from_millis(1500)
}

/// SIGTERM; the daemon must exit 0 within `exit_bound(shutdown_timeout)`. Returns the console
/// flushes it printed meanwhile.
fn terminate_in_time(d: Daemon, shutdown_timeout: Duration) -> Vec<Flush> {
    let t = Instant::now();
    let (status, rest) = d.terminate_lines(T);
    let took = t.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < exit_bound(shutdown_timeout), "exit took {took:?} with a {shutdown_timeout:?} budget");
    rest.iter().map(|l| parse_flush(l)).collect()
}

#[test]
fn sigterm_just_before_a_flush_delivers_every_increment_over_10k_keys_exactly_once() {
    // 20 ms before the regular flush is due, at its deadline, and 20 ms after: whichever of the
    // regular and the final flush wins, the sum is the same.
    for offset_ms in [480, 500, 520] {
        sigterm_near_a_flush(offset_ms);
    }
}

fn sigterm_near_a_flush(offset_ms: u64) {
    const KEYS: usize = 10_000;
    const PER_KEY: usize = 5;
    let emu = Emulator::start();
    let url = emu.url();
    let mut d = Daemon::start(&[
        "--flush-interval",
        "500ms",
        "--shutdown-timeout",
        "3s",
        "--kafka-rest",
        &url,
        "--kafka-topic",
        "metrics",
    ]);
    let stderr = std::mem::replace(&mut d.stderr, channel().1);
    let mut console = vec![d.next_flush(T)];
    let flushed_at = Instant::now();
    // 50,000 increments, 5 on each of 10,000 keys, 40 lines a datagram, keys interleaved.
    let lines: Vec<String> =
        (0..KEYS * PER_KEY).map(|j| format!("shut.k{}:1|c\n", j * 7919 % KEYS)).collect();
    for chunk in lines.chunks(40) {
        d.send(&chunk.concat());
    }
    // SIGTERM `offset_ms` after the last flush (at once if sending took longer).
    let term_at = flushed_at + Duration::from_millis(offset_ms);
    if let Some(wait) = term_at.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    console.extend(terminate_in_time(d, Duration::from_secs(3)));
    let stderr: Vec<String> = stderr.iter().collect();

    let n = (KEYS * PER_KEY) as f64;
    assert_eq!(total(&console, "statsd.kernel_drops"), 0.0);
    let per_key = |flushes: &[Flush]| -> Vec<f64> {
        (0..KEYS).map(|k| total(flushes, &format!("stats_counts.shut.k{k}"))).collect()
    };
    let on_console = per_key(&console);
    assert_eq!(on_console.iter().sum::<f64>(), n, "the console's flushes (SIGTERM at +{offset_ms} ms)");
    assert!(on_console.iter().all(|&c| c == PER_KEY as f64), "every key exactly {PER_KEY}");
    // What reached the proxy before the process exited: the same flushes, the same sum.
    let at_proxy = accepted(&emu);
    assert_eq!(at_proxy, console, "the proxy got every flush, once, in order");
    assert_eq!(per_key(&at_proxy).iter().sum::<f64>(), n, "the proxy's records");
    let k = exit_figures(&stderr, "kafka");
    assert_eq!((k["records_sent"], k["records_dropped"]), (console.len() as f64, 0.0), "{k:?}");
}

/// The proxy is unreachable (`hang`: it holds the request and never answers; else: it refuses
/// connections) when SIGTERM comes: the daemon exits 0 by its deadline, and what it could not
/// deliver is counted (`records_dropped.shutdown`) and logged; with what was delivered before,
/// it is every flush produced.
fn sigterm_with_the_proxy_down(hang: bool) {
    let mut emu = Emulator::start();
    let url = emu.url();
    let mut d = Daemon::start(&[
        "--flush-interval",
        "50ms",
        "--shutdown-timeout",
        "500ms",
        "--kafka-rest",
        &url,
        "--kafka-topic",
        "metrics",
        "--kafka-timeout",
        "30s",
        "--kafka-retry-backoff",
        "20ms",
        "--kafka-retry-backoff-max",
        "50ms",
    ]);
    let stderr = std::mem::replace(&mut d.stderr, channel().1);
    let mut console = Vec::new();
    while emu.with(|s| s.accepted.len()) < 2 {
        console.push(d.next_flush(T));
    }
    if hang {
        emu.with(|s| s.sticky = Some(Fault::Hang));
    } else {
        take_down(&mut emu);
    }
    let mut sent = 0.0;
    for _ in 0..6 {
        d.send("down.c:1|c");
        sent += 1.0;
        console.push(d.next_flush(T));
    }
    d.send("down.c:1|c");
    sent += 1.0;
    let t = Instant::now();
    let (status, rest) = d.terminate_lines(T);
    let took = t.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < exit_bound(Duration::from_millis(500)), "exit took {took:?} with a 500 ms deadline");
    console.extend(rest.iter().map(|l| parse_flush(l)));
    assert_eq!(total(&console, "stats_counts.down.c"), sent, "ingest counted every increment");
    let stderr: Vec<String> = stderr.iter().collect();
    let log = stderr.join("\n");
    assert!(log.contains("not delivered to") && log.contains("dropped (records_dropped.shutdown)"), "{log}");

    let got = accepted(&emu);
    let k = exit_figures(&stderr, "kafka");
    assert_eq!(k["records_sent"], got.len() as f64, "{k:?}");
    let lost = k["records_dropped.shutdown"];
    assert!(lost >= 1.0, "{k:?}");
    assert_eq!(k["records_dropped"], lost + k.get("records_dropped.queue_full").copied().unwrap_or(0.0));
    assert_eq!(
        console.len() as f64,
        got.len() as f64 + k["records_dropped"],
        "produced = delivered + dropped ({k:?})"
    );
    // The logged count is the counted one.
    let line = stderr.iter().find(|l| l.contains("not delivered to")).unwrap();
    assert!(line.contains(&format!("kafka: {lost} records in ")), "{line}");
}

#[test]
fn sigterm_with_the_proxy_refusing_exits_by_the_deadline_and_counts_what_it_dropped() {
    sigterm_with_the_proxy_down(false);
}

#[test]
fn sigterm_with_the_proxy_hung_exits_by_the_deadline_and_counts_what_it_dropped() {
    sigterm_with_the_proxy_down(true);
}

/// The proxy answers 503 for 15 s (15 flushes of 50 increments), recovers, and SIGTERM comes
/// half a second later, with the default backoff (100 ms doubling to 30 s) and shutdown budget
/// (5 s): by then the sink waits out a backoff of seconds, or the `Retry-After` the proxy gave.
/// At shutdown that wait is cut short and the queue is tried again at once: every one of the 750
/// increments reaches the proxy, every flush once and in order, nothing is dropped.
fn sigterm_right_after_an_outage(retry_after: Option<u64>) {
    const FLUSHES: usize = 15;
    const PER_FLUSH: usize = 50;
    let emu = Emulator::start();
    let outage =
        Fault::Status { status: 503, error_code: 50302, retry_after: retry_after.map(RetryAfter::Seconds) };
    emu.with(|s| s.sticky = Some(outage));
    let url = emu.url();
    let mut d = Daemon::start(&["--flush-interval", "1s", "--kafka-rest", &url, "--kafka-topic", "metrics"]);
    let stderr = std::mem::replace(&mut d.stderr, channel().1);
    let mut console = Vec::new();
    for _ in 0..FLUSHES {
        for _ in 0..PER_FLUSH / 10 {
            d.send(&"outage.inc:1|c\n".repeat(10));
        }
        console.push(d.next_flush(T));
    }
    let during = emu.with(|s| s.requests.len());
    assert!(during > 0 && emu.with(|s| s.accepted.is_empty()), "the outage refused every attempt");
    emu.with(|s| s.sticky = None);
    // The timing, not a wait for an event: SIGTERM half a second after the recovery.
    std::thread::sleep(Duration::from_millis(500));
    console.extend(terminate_in_time(d, Duration::from_secs(5)));
    let stderr: Vec<String> = stderr.iter().collect();
    let n = (FLUSHES * PER_FLUSH) as f64;
    assert_eq!(total(&console, "statsd.kernel_drops"), 0.0);
    assert_eq!(total(&console, "stats_counts.outage.inc"), n, "ingest counted every increment");
    let got = accepted(&emu);
    assert_eq!(total(&got, "stats_counts.outage.inc"), n, "increments at the proxy ({retry_after:?})");
    assert_eq!(got, console, "every flush at the proxy, once, in order");
    let k = exit_figures(&stderr, "kafka");
    assert_eq!((k["records_sent"], k["records_dropped"]), (console.len() as f64, 0.0), "{k:?}");
    if retry_after.is_some() {
        assert!(stderr.iter().any(|l| l.contains("shutting down: trying")), "{stderr:?}");
    }
}

#[test]
fn sigterm_half_a_second_after_a_15s_outage_of_503s_delivers_all_750_increments() {
    sigterm_right_after_an_outage(None);
}

#[test]
fn sigterm_after_an_outage_whose_503s_asked_for_a_minute_still_delivers_all_750_increments() {
    sigterm_right_after_an_outage(Some(60));
}

/// Senders that never stop cannot hold the exit: reading what the socket holds at SIGTERM gets
/// at most a quarter of `shutdown_timeout`, and the whole exit stays within its bound while two
/// threads keep the socket full. (Before, the final drain read until the socket was empty, which
/// under such a flood it never is.)
#[test]
fn sigterm_under_a_flood_that_never_stops_exits_within_the_bound() {
    let mut d = Daemon::start(&["--flush-interval", "200ms", "--shutdown-timeout", "1s"]);
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..2)
        .map(|_| {
            let (stop, to) = (Arc::clone(&stop), d.udp);
            std::thread::spawn(move || {
                let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let _ = tx.send_to(b"flood.c:1|c", to);
                }
            })
        })
        .collect();
    // The flood is on: lines are arriving.
    d.flush_with("stats_counts.flood.c", T);
    let t = Instant::now();
    sigterm(&d.child);
    let status = wait_exit(&mut d.child, T);
    let took = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    for h in senders {
        h.join().unwrap();
    }
    assert!(status.success(), "{status:?}");
    assert!(took < exit_bound(Duration::from_secs(1)), "exit took {took:?} with a 1 s shutdown_timeout");
}

#[test]
fn sigkill_while_the_proxy_holds_a_post_then_a_restart_on_the_same_sockets_starts_cleanly() {
    let dir = tmp_dir("sigkill");
    let emu = Emulator::start();
    emu.with(|s| s.sticky = Some(Fault::Hang));
    // Below the ephemeral range, so that no other test is given them while the daemon is down.
    let (udp, tcp, admin_port) = (ports::free_port(), ports::free_port(), ports::free_port());
    let (dgram, stream) = (dir.join("dgram.sock"), dir.join("stream.sock"));
    let config = dir.join("kstatsd.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nudp = [\"127.0.0.1:{udp}\"]\ntcp = [\"127.0.0.1:{tcp}\"]\n\
             unix_dgram = [{dgram:?}]\nunix_stream = [{stream:?}]\nadmin = \"127.0.0.1:{admin_port}\"\n\
             shutdown_timeout = \"1s\"\n[aggregate]\nflush_interval = \"50ms\"\n\
             [sinks.console]\nformat = \"json\"\n\
             [sinks.kafka_rest]\nurl = \"{}\"\ntopic = \"metrics\"\ntimeout = \"30s\"\n",
            emu.url()
        ),
    )
    .unwrap();
    let args = ["--config", config.to_str().unwrap()];
    let mut first = Daemon::start_raw(&args);
    assert_eq!(first.udp.port(), udp);
    // Clients connected on every kind of input, and the proxy in the middle of a POST.
    let mut tcp_client = TcpStream::connect(("127.0.0.1", tcp)).unwrap();
    tcp_client.write_all(b"kill.tcp:1|c\n").unwrap();
    let mut uds_client = UnixStream::connect(&stream).unwrap();
    uds_client.write_all(b"kill.uds:1|c\n").unwrap();
    let admin_addr = format!("127.0.0.1:{admin_port}");
    let mut admin_client = TcpStream::connect(&admin_addr).unwrap();
    admin_client.write_all(b"health\n").unwrap();
    first.flush_with("stats_counts.kill.uds", T);
    emu.wait_for(T, "a POST held open", |s| {
        (s.requests.len() == 1 && s.requests[0].status == 0).then_some(())
    });
    first.child.kill().unwrap();
    let status = first.child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    drop(first);
    assert!(dgram.exists() && stream.exists(), "SIGKILL leaves the socket files behind");

    // Same config, same ports, same socket files; the proxy healthy again.
    emu.with(State::heal);
    emu.release_hangs();
    let second = Daemon::start_raw(&args);
    assert_eq!(second.udp.port(), udp);
    let errors: Vec<&String> = second.startup_log.iter().filter(|l| l.contains("[ERROR]")).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let replaced = second.startup_log.iter().filter(|l| l.contains("replacing a stale socket file"));
    assert_eq!(replaced.count(), 2, "{:?}", second.startup_log);
    second.send("restart.udp:1|c");
    UnixDatagram::unbound().unwrap().send_to(b"restart.dgram:2|c", &dgram).unwrap();
    TcpStream::connect(("127.0.0.1", tcp)).unwrap().write_all(b"restart.tcp:3|c\n").unwrap();
    UnixStream::connect(&stream).unwrap().write_all(b"restart.stream:4|c\n").unwrap();
    let want = [("restart.udp", 1.0), ("restart.dgram", 2.0), ("restart.tcp", 3.0), ("restart.stream", 4.0)];
    let deadline = Instant::now() + T;
    let mut seen = BTreeMap::new();
    while seen.len() < want.len() {
        assert!(Instant::now() < deadline, "after the restart only {seen:?} arrived");
        let f = second.next_flush(T);
        for (name, _) in want {
            let v = get(&f, &format!("stats_counts.{name}"));
            if v != 0.0 {
                *seen.entry(name).or_insert(0.0) += v;
            }
        }
    }
    assert_eq!(seen, want.into_iter().collect::<BTreeMap<_, _>>());
    assert_eq!(admin(&admin_addr, "health").trim(), "health: up");
    // The new daemon's records reach the proxy.
    emu.wait_for(T, "a record from the restarted daemon", |s| {
        s.accepted.iter().any(|r| r.value.contains("\"stats_counts.restart.udp\":1")).then_some(())
    });
    let (status, _) = second.terminate_lines(T);
    assert!(status.success());
    assert!(!dgram.exists() && !stream.exists(), "a clean exit removes its socket files");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- the log going away ----

#[test]
fn a_closed_stderr_does_not_take_the_daemon_down() {
    // A log collector that dies closes the pipe on stderr: the next log line (SIGTERM's
    // "stopping") must not kill the daemon, as `eprintln!` would by panicking.
    let d =
        SlowStdout::start(&["--udp", "127.0.0.1:0", "--console", "json", "--flush-interval", "1h"], 0, false);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.send_to(b"stderr.c:1|c", d.udp).unwrap();
    let (status, _, lines) = d.terminate();
    assert!(status.success(), "{status:?}");
    let last = parse_flush(lines.last().expect("the final flush"));
    assert_eq!(get(&last, "stats_counts.stderr.c"), 1.0);
}
