//! The management port over real TCP against the real binary: every command's answer, wildcard
//! deletes, health up/down, `config` with secrets redacted, mutations switched off, many clients
//! at once, and clients that never read or send too much: each dropped (counted in
//! `admin_clients_dropped`, logged once per interval) while ingest carries on.

mod common;

use common::{Daemon, Flush};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Client {
    fn connect(d: &Daemon) -> Client {
        let addr = d.listening("admin").first().expect("an admin listener").clone();
        let w = TcpStream::connect(addr).unwrap();
        w.set_read_timeout(Some(WAIT)).unwrap();
        Client { r: BufReader::new(w.try_clone().unwrap()), w }
    }

    /// Sends one command and returns its answer up to (without) the `END` line.
    fn ask(&mut self, cmd: &str) -> String {
        self.w.write_all(format!("{cmd}\n").as_bytes()).unwrap();
        self.read_reply()
    }

    fn read_reply(&mut self) -> String {
        let mut out = String::new();
        loop {
            let mut line = String::new();
            assert!(self.r.read_line(&mut line).unwrap() > 0, "closed before END; got {out:?}");
            if line == "END\n" {
                let mut blank = String::new();
                self.r.read_line(&mut blank).unwrap();
                assert_eq!(blank, "\n", "END is followed by an empty line");
                return out;
            }
            out.push_str(&line);
        }
    }

    fn value(&mut self, cmd: &str) -> serde_json::Value {
        let text = self.ask(cmd);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{cmd}: {e}: {text}"))
    }
}

fn stat(text: &str, key: &str) -> String {
    let prefix = format!("{key}: ");
    let line = text.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no {key} in {text}"));
    line[prefix.len()..].to_string()
}

/// A client with a small receive buffer (4 KiB, set before connecting so that the window is
/// sized for it), which the test never reads until the daemon has dropped it: what the kernel can
/// hold for it is then that buffer and the daemon's fixed send buffer, whatever its sysctls say.
fn silent_client(d: &Daemon) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let addr: std::net::SocketAddr = d.listening("admin")[0].parse().unwrap();
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.connect(&addr.into()).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// Reads until the daemon's end of the connection is gone (end of stream or a reset); returns
/// the bytes read. Panics when the connection is still open after [`WAIT`].
fn read_until_closed(s: &mut TcpStream) -> usize {
    let mut buf = vec![0u8; 1 << 20];
    let mut read = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return read,
            Ok(n) => read += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return read,
            Err(e) => panic!("the client is still connected after {read} bytes: {e}"),
        }
    }
}

/// Asks `stats` until `key` reads `want` (within [`WAIT`]), and returns that answer.
fn stats_until(c: &mut Client, key: &str, want: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = c.ask("stats");
        if stat(&stats, key) == want {
            return stats;
        }
        assert!(Instant::now() < deadline, "{key} is not {want}: {stats}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const DROP_LOG: &str = "admin: dropping a client";

/// Waits for a flush that has `name` (any value).
fn flush_having(d: &Daemon, name: &str) -> Flush {
    let deadline = Instant::now() + WAIT;
    loop {
        let f = d.next_flush(deadline.saturating_duration_since(Instant::now()));
        if f.contains_key(name) {
            return f;
        }
    }
}

#[test]
fn every_command_is_answered() {
    let d = Daemon::start(&[
        "--admin",
        "127.0.0.1:0",
        "--flush-interval",
        "200ms",
        "--backstop-url",
        "http://metrics:hunter2@127.0.0.1:9/publish/x",
    ]);
    let mut c = Client::connect(&d);
    assert!(c.ask("help").starts_with("Commands: stats, stats json, counters"));
    assert_eq!(c.ask("health"), "health: up\n");

    d.send("adm.c:3|c\nadm.other:1|c\napi.x:1|c\nadm.t:5|ms\nadm.g:7|g\nadm.s:u1|s\nadm.s:u2|s\nbad line");
    flush_having(&d, "stats_counts.adm.c");

    assert_eq!(c.value("counters")["adm.c"], 3.0);
    assert_eq!(c.value("timers")["adm.t"], 1.0, "a timer's count in the last interval");
    assert_eq!(c.value("gauges")["adm.g"], 7.0);
    assert_eq!(c.value("sets")["adm.s"], 2.0);

    let stats = c.ask("stats");
    assert!(stat(&stats, "uptime").parse::<u64>().is_ok());
    assert!(stat(&stats, "messages.last_msg_seen").parse::<u64>().unwrap() < 10);
    assert_eq!(stat(&stats, "messages.bad_lines_seen"), "1");
    assert!(stat(&stats, "console.last_flush").parse::<u64>().unwrap() < 10);
    stat(&stats, "console.flush_time");
    stat(&stats, "console.flush_length");
    stat(&stats, "backstop.last_exception");
    assert_eq!(stat(&stats, "kstatsd.metrics_received"), "8");
    assert_eq!(stat(&stats, "kstatsd.bad_lines.no_value"), "1");
    assert_eq!(stat(&stats, "kstatsd.health"), "up");
    assert!(stat(&stats, "kstatsd.memory_rss_bytes").parse::<u64>().unwrap() > 0);
    let json = c.value("stats json");
    assert_eq!(json["messages.bad_lines_seen"], 1.0);
    assert_eq!(json["kstatsd.metrics_received"], 8.0);
    assert!(json["uptime"].is_number() && json["kstatsd.series_known"].as_f64().unwrap() >= 6.0);

    // deletes: by name, by prefix, and a name that matches nothing
    let del = c.ask("delcounters adm.* api.x nope");
    let mut lines: Vec<&str> = del.lines().collect();
    lines.sort();
    assert_eq!(lines, ["deleted: adm.c", "deleted: adm.other", "deleted: api.x", "metric nope not found"]);
    assert!(c.value("counters").get("adm.c").is_none());
    assert_eq!(c.ask("delgauges adm.g"), "deleted: adm.g\n");
    assert_eq!(c.ask("deltimers adm.t"), "deleted: adm.t\n");
    assert_eq!(c.ask("delsets adm.*"), "deleted: adm.s\n");
    // a deleted idle series is no longer reported
    let f = d.next_flush(WAIT);
    let f = if f.contains_key("stats_counts.adm.c") { d.next_flush(WAIT) } else { f };
    assert!(!f.contains_key("stats_counts.adm.c") && !f.contains_key("stats.gauges.adm.g"), "{f:?}");
    assert!(f.contains_key("stats_counts.statsd.packets_received"));

    assert_eq!(c.ask("health down"), "health: down\n");
    assert_eq!(c.ask("health"), "health: down\n");
    assert_eq!(stat(&c.ask("stats"), "kstatsd.health"), "down");
    assert_eq!(c.ask("health up"), "health: up\n");

    let config = c.ask("config");
    assert!(config.contains("[server]") && config.contains("[sinks.backstop]"), "{config}");
    assert!(!config.contains("hunter2"), "secrets are redacted: {config}");

    assert!(c.ask("frobnicate").starts_with("ERROR"));
    // several commands in one write are answered in order
    c.w.write_all(b"health\nhelp\nhealth\n").unwrap();
    assert_eq!(c.read_reply(), "health: up\n");
    assert!(c.read_reply().starts_with("Commands"));
    assert_eq!(c.read_reply(), "health: up\n");

    c.w.write_all(b"quit\n").unwrap();
    let mut rest = Vec::new();
    c.r.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "quit closes the connection");
}

#[test]
fn mutations_can_be_switched_off() {
    let d = Daemon::start(&[
        "--admin",
        "127.0.0.1:0",
        "--admin-allow-mutations",
        "false",
        "--flush-interval",
        "200ms",
    ]);
    let mut c = Client::connect(&d);
    d.send("keep.c:1|c");
    flush_having(&d, "stats_counts.keep.c");
    assert!(c.ask("delcounters keep.c").starts_with("ERROR: this command is disabled"));
    assert!(c.ask("health down").starts_with("ERROR"));
    assert_eq!(c.ask("health"), "health: up\n");
    assert_eq!(c.value("counters")["keep.c"], 1.0);
}

#[test]
fn many_clients_at_once_and_a_client_that_never_reads_does_not_block_ingest() {
    let d = Daemon::start(&["--admin", "127.0.0.1:0", "--flush-interval", "200ms"]);
    // Enough series that a `counters` listing is about 0.5 MB.
    for chunk in 0..200 {
        let lines: Vec<String> = (0..100).map(|i| format!("many.series.number_{chunk}_{i}:1|c")).collect();
        d.send(&lines.join("\n"));
    }
    flush_having(&d, "stats_counts.many.series.number_0_0");
    // A client that asks for a listing 40 times and never reads: 23 MB of replies, of which the
    // kernel holds a few hundred KB at most (see `silent_client`); the rest queues in the daemon
    // until the output limit drops the client.
    let mut silent = silent_client(&d);
    silent.write_all("counters\n".repeat(40).as_bytes()).unwrap();
    // Ingest carries on meanwhile: every one of these is flushed.
    for _ in 0..100 {
        d.send("flow.c:1|c");
    }
    let deadline = Instant::now() + WAIT;
    let mut total = 0.0;
    while total < 100.0 {
        let f = d.next_flush(deadline.saturating_duration_since(Instant::now()));
        total += f.get("stats_counts.flow.c").copied().unwrap_or(0.0);
    }
    assert_eq!(total, 100.0);
    // 20 clients at once, each answered.
    let mut clients: Vec<Client> = (0..20).map(|_| Client::connect(&d)).collect();
    for c in &mut clients {
        c.w.write_all(b"stats\n").unwrap();
    }
    for c in &mut clients {
        assert!(c.read_reply().starts_with("uptime: "));
    }
    // The silent client is dropped once its queued replies pass the limit, which the listings
    // it asked for do whatever the kernel accepts: counted, and logged.
    let stats = stats_until(&mut clients[0], "kstatsd.admin_clients_dropped", "1");
    assert_eq!(stat(&stats, "kstatsd.admin_clients"), "20");
    let log = d.log_until(|l| l.contains(DROP_LOG), WAIT);
    let drops: Vec<&String> = log.iter().filter(|l| l.contains(DROP_LOG)).collect();
    assert_eq!(drops.len(), 1, "{log:?}");
    assert!(drops[0].contains("does not read its replies"), "{}", drops[0]);
    // Reading now finds what the kernel held for it, then the end: the replies queued in the
    // daemon went with the connection.
    let read = read_until_closed(&mut silent);
    assert!(read < 1 << 20, "only what the kernel held reached it ({read} bytes)");
}

/// Output queued for a client that does not read, and input piled up without a newline, each
/// disconnect the client at a limit that does not depend on the kernel (locally answered
/// commands queue their replies before any is written). Three such clients in one interval:
/// three counted, one line logged.
#[test]
fn clients_over_their_limits_are_dropped_counted_and_logged_once_per_interval() {
    let d = Daemon::start(&["--admin", "127.0.0.1:0", "--flush-interval", "1h"]);
    let mut watcher = Client::connect(&d);
    let config_len = watcher.ask("config").len() + "END\n\n".len();
    // Twice the 4 MiB output limit in `config` replies, asked in one write and never read.
    let asks = (8 << 20) / config_len + 1;
    let mut non_readers = [silent_client(&d), silent_client(&d)];
    for s in &mut non_readers {
        // The daemon may drop the client (and reset it) before it has read every command.
        let _ = s.write_all("config\n".repeat(asks).as_bytes());
    }
    // A line that never ends: more than the 64 KiB input limit.
    let mut talker = silent_client(&d);
    let _ = talker.write_all(&vec![b'x'; 100 << 10]);

    let stats = stats_until(&mut watcher, "kstatsd.admin_clients_dropped", "3");
    assert_eq!(stat(&stats, "kstatsd.admin_clients"), "1", "only the watcher is left");
    for s in non_readers.iter_mut().chain([&mut talker]) {
        let read = read_until_closed(s);
        assert!(read < 1 << 20, "only what the kernel held reached it ({read} bytes)");
    }
    // Each drop is logged before its connection is closed, and the counter read 3 after the
    // last close: every line about them is in the pipe, which the reader thread forwards.
    let mut log = d.log_until(|l| l.contains(DROP_LOG), WAIT);
    while let Ok(line) = d.stderr.recv_timeout(Duration::from_secs(1)) {
        log.push(line);
    }
    let drops = log.iter().filter(|l| l.contains(DROP_LOG)).count();
    assert_eq!(drops, 1, "one line for three drops in one interval: {log:?}");
    assert_eq!(watcher.ask("health"), "health: up\n", "the watcher is still served");
}

#[test]
fn clients_over_the_limit_are_refused_and_logged_once_per_interval() {
    let d = Daemon::start(&["--admin", "127.0.0.1:0", "--flush-interval", "1h"]);
    let addr = d.listening("admin")[0].clone();
    let mut held: Vec<Client> = (0..64).map(|_| Client::connect(&d)).collect();
    for c in &mut held {
        assert_eq!(c.ask("health"), "health: up\n");
    }
    // 30 more: each closed unanswered, and the loop logs the refusal once in the interval.
    for _ in 0..30 {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let _ = s.write_all(b"health\n");
        let mut buf = [0u8; 64];
        assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "a client over the limit gets no answer");
    }
    assert_eq!(held[63].ask("health"), "health: up\n", "the held clients are still served");
    // Every refusal is logged before its connection is closed, so all are in the pipe by now;
    // the reader thread forwards them within moments.
    let mut refusals = 0;
    while let Ok(line) = d.stderr.recv_timeout(Duration::from_secs(1)) {
        refusals += usize::from(line.contains("clients already connected"));
    }
    assert_eq!(refusals, 1, "one log line for 30 refusals in one interval");
}
