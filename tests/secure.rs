//! Secure defaults, against the real binary: with no configuration every
//! listener binds to loopback (the start-up log and the kernel's socket tables agree); no UDP
//! datagram, however malformed, ever gets an answer, and the daemon holds no socket it could
//! answer from; credentials in sink URLs stay out of the admin `config` and `stats` answers, the
//! sinks' error logs and configuration errors; the https sinks (Kafka REST, Backstop) verify the
//! server's certificate and fail closed: against a TLS server with a self-signed certificate
//! they refuse the handshake, count the failure, never send the payload, and never fall back to
//! plain http. Switching off the admin port's mutating commands is shown by
//! `tests/admin.rs::mutations_can_be_switched_off`; the test here adds the commands it leaves out.
//!
//! The certificate in `tests/fixtures/tls/` is self-signed for 127.0.0.1 and `localhost`, valid
//! 2000–2100 (so a test host's clock cannot make it "not yet valid"); a client that trusts it
//! completes a request with the same server, so kstatsd's refusal is about trust alone.
//! By default kstatsd trusts the Mozilla roots it is built with; a sink's `ca_file` replaces them
//! with the certificates of a PEM file: with the test certificate's own file the same server is
//! trusted, with an unrelated CA's (`other-ca.crt.pem`) it is still refused.

mod common;

use common::{Daemon, Flush};
use std::collections::{BTreeSet, HashSet};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);
const BIN: &str = env!("CARGO_BIN_EXE_kstatsd");

// ---- the default configuration binds loopback only ----

/// One inet socket of a process, from `/proc/<pid>/net/{udp,udp6,tcp,tcp6}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct InetSocket {
    proto: &'static str,
    local: SocketAddr,
    remote: SocketAddr,
    /// The kernel's state code (`0A` is TCP LISTEN, `07` an unconnected UDP socket).
    state: String,
}

/// A `/proc/net` address: `0100007F:1FBD`, or 32 hex digits for IPv6, each 32-bit word in host
/// byte order.
fn proc_addr(text: &str) -> SocketAddr {
    let (ip, port) = text.split_once(':').unwrap();
    let port = u16::from_str_radix(port, 16).unwrap();
    let words: Vec<[u8; 4]> = (0..ip.len() / 8)
        .map(|i| u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16).unwrap().to_ne_bytes())
        .collect();
    match words.len() {
        1 => SocketAddr::from((words[0], port)),
        4 => SocketAddr::from((<[u8; 16]>::try_from(words.concat()).unwrap(), port)),
        _ => panic!("unexpected address {text}"),
    }
}

/// Every inet socket the process `pid` holds (matched by inode against its network namespace's
/// tables, so it works inside `unshare -n` too).
fn inet_sockets(pid: u32) -> Vec<InetSocket> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(String::from))
        .collect();
    let mut out = Vec::new();
    for proto in ["udp", "udp6", "tcp", "tcp6"] {
        let table = std::fs::read_to_string(format!("/proc/{pid}/net/{proto}")).unwrap_or_default();
        for line in table.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && inodes.contains(f[9]) {
                out.push(InetSocket {
                    proto,
                    local: proc_addr(f[1]),
                    remote: proc_addr(f[2]),
                    state: f[3].to_string(),
                });
            }
        }
    }
    out.sort();
    out
}

/// Stderr lines of `child` on a channel.
fn stderr_lines(child: &mut Child) -> Receiver<String> {
    let (tx, rx) = channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn until_ready(lines: &Receiver<String>) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left).unwrap_or_else(|e| panic!("not ready ({e:?}): {seen:#?}"));
        seen.push(line);
        if seen.last().unwrap().ends_with("ready") {
            return seen;
        }
    }
}

/// Kills the process if the test ends before it did.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn with_no_configuration_every_listener_binds_to_loopback() {
    // `kstatsd` with no argument at all. The default ports (8125, 8126) are fixed: where the
    // system allows it, the daemon runs in a network namespace of its own (`unshare -rn`), so it
    // cannot clash with anything else on the host.
    let isolated = Command::new("unshare")
        .args(["-rn", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let mut cmd = if isolated {
        let mut c = Command::new("unshare");
        c.args(["-rn", BIN]);
        c
    } else {
        Command::new(BIN)
    };
    let mut child = Reap(
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = stderr_lines(&mut child.0);
    let log = until_ready(&lines);
    // What the daemon says it listens on…
    let mut said: Vec<String> = log
        .iter()
        .filter_map(|l| l.split("]: ").nth(1))
        .filter(|l| l.contains(" listening on "))
        .map(|l| {
            let (kind, rest) = l.split_once(" listening on ").unwrap();
            format!("{kind} {}", rest.split_whitespace().next().unwrap())
        })
        .collect();
    said.sort();
    assert_eq!(said, ["admin 127.0.0.1:8126", "udp 127.0.0.1:8125"], "{log:#?}");
    // …and what the kernel says it holds: nothing but those two, both on loopback.
    let sockets = inet_sockets(child.0.id());
    let _ = Command::new("kill").arg("-TERM").arg(child.0.id().to_string()).status();
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(sockets.iter().all(|s| s.local.ip().is_loopback()), "{sockets:#?}");
    let held: Vec<(&str, String, &str)> =
        sockets.iter().map(|s| (s.proto, s.local.to_string(), s.state.as_str())).collect();
    assert_eq!(
        held,
        [("tcp", "127.0.0.1:8126".to_string(), "0A"), ("udp", "127.0.0.1:8125".to_string(), "07")],
        "one UDP socket and one listening TCP socket (isolated: {isolated})"
    );
}

// ---- no UDP reply path ----

#[test]
fn no_udp_datagram_ever_gets_an_answer() {
    let d = Daemon::start(&["--flush-interval", "100ms", "--json-udp", "127.0.0.1:0"]);
    let json_port = d.listening("json (udp)")[0].parse::<SocketAddr>().unwrap();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng as u8
            })
            .collect()
    };
    let mut datagrams: Vec<Vec<u8>> = [
        "ok.c:1|c",
        "help\n",
        "stats\n",
        "health\n",
        "config\n",
        "_e{5,4}:title|text",
        "_sc|check|0",
        "{\"metric_name\":\"j\",\"metric_type\":\"counter\"}",
        "garbage",
        ":|",
        "a:1|zz",
        "",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    datagrams.push(b"nul\0byte:1|c\xff\xfe".to_vec());
    datagrams.push(vec![b'x'; 65_000]);
    for n in [1, 7, 512, 1400, 9000] {
        datagrams.push(random(n));
    }
    // From connected sockets: any datagram from the daemon's port would arrive here (and an ICMP
    // error would surface as ECONNREFUSED).
    let to_statsd = UdpSocket::bind("127.0.0.1:0").unwrap();
    to_statsd.connect(d.udp).unwrap();
    let to_json = UdpSocket::bind("127.0.0.1:0").unwrap();
    to_json.connect(json_port).unwrap();
    for dg in &datagrams {
        to_statsd.send(dg).unwrap();
        to_json.send(dg).unwrap();
    }
    // A datagram is read in order: once the last ones are counted, every one before was read.
    to_statsd.send(b"noreply.marker:1|c").unwrap();
    to_json.send(br#"{"metric_name":"noreply.json_marker","metric_type":"counter"}"#).unwrap();
    let deadline = Instant::now() + WAIT;
    let mut seen = BTreeSet::new();
    while seen.len() < 2 {
        let f: Flush = d.next_flush(deadline.saturating_duration_since(Instant::now()));
        for k in ["stats_counts.noreply.marker", "stats_counts.noreply.json_marker"] {
            if f.get(k).is_some_and(|v| *v > 0.0) {
                seen.insert(k);
            }
        }
    }
    // Everything was read and handled: nothing came back, then or in the next 300 ms.
    for s in [&to_statsd, &to_json] {
        s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut buf = [0u8; 65_536];
        match s.recv(&mut buf) {
            Ok(n) => panic!("the daemon answered a datagram with {n} bytes: {:?}", &buf[..n.min(64)]),
            Err(e) => assert!(matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut), "{e}"),
        }
    }
    // And it has nothing to answer from: its only UDP sockets are the two listeners, never
    // connected to anyone.
    let udp: Vec<InetSocket> =
        inet_sockets(d.child.id()).into_iter().filter(|s| s.proto.starts_with("udp")).collect();
    let locals: BTreeSet<SocketAddr> = udp.iter().map(|s| s.local).collect();
    assert_eq!(locals, BTreeSet::from([d.udp, json_port]), "{udp:#?}");
    assert!(udp.iter().all(|s| s.remote.port() == 0 && s.remote.ip().is_unspecified()), "{udp:#?}");
}

#[test]
fn the_source_has_no_datagram_send_outside_tests() {
    // A guard on the code itself: a reply path would need one of these calls.
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")), &mut files);
    assert!(files.len() > 10);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        for call in ["send_to(", "sendmsg", "sendmmsg", "libc::send(", "send_vectored"] {
            assert!(!code.contains(call), "{} calls {call}: a UDP reply path?", f.display());
        }
    }
}

// ---- admin mutations off (extends tests/admin.rs) ----

struct Admin {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Admin {
    fn connect(d: &Daemon) -> Admin {
        let w = TcpStream::connect(d.listening("admin")[0].as_str()).unwrap();
        w.set_read_timeout(Some(WAIT)).unwrap();
        Admin { r: BufReader::new(w.try_clone().unwrap()), w }
    }

    /// The answer to `cmd`, up to (without) its `END` line.
    fn ask(&mut self, cmd: &str) -> String {
        self.w.write_all(format!("{cmd}\n").as_bytes()).unwrap();
        let mut out = String::new();
        loop {
            let mut line = String::new();
            assert!(self.r.read_line(&mut line).unwrap() > 0, "closed before END: {out}");
            if line == "END\n" {
                self.r.read_line(&mut line).unwrap();
                return out;
            }
            out.push_str(&line);
        }
    }
}

#[test]
fn every_mutating_admin_command_is_refused_when_switched_off() {
    let d = Daemon::start(&[
        "--admin",
        "127.0.0.1:0",
        "--admin-allow-mutations",
        "false",
        "--flush-interval",
        "100ms",
    ]);
    let mut a = Admin::connect(&d);
    d.send("mut.c:1|c\nmut.t:2|ms\nmut.g:3|g\nmut.s:x|s");
    d.flush_with("stats_counts.mut.c", WAIT);
    for cmd in [
        "delcounters mut.c",
        "deltimers mut.*",
        "delgauges mut.g",
        "delsets mut.s",
        "health up",
        "health down",
    ] {
        let answer = a.ask(cmd);
        assert!(answer.starts_with("ERROR: this command is disabled"), "{cmd}: {answer}");
    }
    for (listing, key) in [("counters", "mut.c"), ("timers", "mut.t"), ("gauges", "mut.g"), ("sets", "mut.s")]
    {
        let v: serde_json::Value = serde_json::from_str(&a.ask(listing)).unwrap();
        assert!(v.get(key).is_some(), "{key} survived: {v}");
    }
    assert_eq!(a.ask("health"), "health: up\n");
    assert!(a.ask("config").contains("admin_allow_mutations = false"));
}

// ---- credentials redacted ----

fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

const SECRETS: [&str; 4] = ["kuser", "hunter2", "buser", "s3cret"];

fn assert_no_secret(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{s} in {what}: {text}");
    }
}

#[test]
fn credentials_stay_out_of_the_admin_port_and_of_sink_errors() {
    // Both sinks fail (nothing listens): each logs its failures.
    let (kport, bport) = (closed_port(), closed_port());
    let kafka = format!("http://kuser:hunter2@127.0.0.1:{kport}/");
    let backstop = format!("http://buser:s3cret@127.0.0.1:{bport}/publish/statsd");
    let mut d = Daemon::start(&[
        "--admin",
        "127.0.0.1:0",
        "--flush-interval",
        "100ms",
        "--kafka-rest",
        &kafka,
        "--kafka-topic",
        "metrics",
        "--kafka-retry-backoff",
        "20ms",
        "--backstop-url",
        &backstop,
        "--backstop-retry-backoff",
        "20ms",
    ]);
    let stderr = std::mem::replace(&mut d.stderr, channel().1);
    d.send("cred.c:1|c");
    let deadline = Instant::now() + WAIT;
    loop {
        let f = d.next_flush(deadline.saturating_duration_since(Instant::now()));
        let stat = |k: &str| f.get(k).copied().unwrap_or(0.0);
        if stat("stats.statsd.kafkaStats.records_retried") > 0.0
            && stat("stats.statsd.backstopStats.retried") > 0.0
        {
            break;
        }
    }
    let mut a = Admin::connect(&d);
    let config = a.ask("config");
    assert!(
        config.contains(&format!("[sinks.kafka_rest]\nurl = \"http://127.0.0.1:{kport}\"")),
        "the proxy URL without its credentials: {config}"
    );
    assert!(config.contains("username = \"<redacted>\"\npassword = \"<redacted>\""), "{config}");
    assert!(
        config.contains(&format!(
            "[sinks.backstop]\nurl = \"http://<redacted>@127.0.0.1:{bport}/publish/statsd\""
        )),
        "{config}"
    );
    assert_no_secret("the admin config", &config);
    assert_no_secret("the admin stats", &a.ask("stats"));
    assert_no_secret("the admin stats json", &a.ask("stats json"));
    let (status, _) = d.terminate_lines(WAIT);
    assert!(status.success());
    // The process is gone: read its stderr to the end.
    let log = stderr.iter().collect::<Vec<_>>().join("\n");
    assert!(log.contains(&format!("kafka: POST http://127.0.0.1:{kport}/topics/metrics: ")), "{log}");
    assert!(log.contains(&format!("backstop: POST http://127.0.0.1:{bport}/publish/statsd: ")), "{log}");
    assert_no_secret("the log", &log);

    // Configuration errors about those URLs do not echo them.
    for args in [
        ["--backstop-url", "ftp://buser:s3cret@h/publish/x"],
        ["--backstop-url", "https://buser:s3cret@h/not-publish"],
        ["--backstop-url", "https://buser:s3cret@/publish/x"],
    ] {
        let out = Command::new(BIN).arg("--check-config").args(args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(text.contains("sinks.backstop.url"), "{text}");
        assert_no_secret("a configuration error", &text);
    }
}

// ---- https: certificates verified, fail closed ----

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// What a TLS server saw on one connection.
#[derive(Debug)]
struct Seen {
    /// The first byte: 0x16 opens a TLS handshake; `P` would be a plain `POST`.
    first_byte: Option<u8>,
    /// `Ok(())` when the handshake completed, else why it did not.
    handshake: Result<(), String>,
    /// The application bytes received (an HTTP request), decrypted.
    request: Vec<u8>,
}

/// A TLS server on loopback with the self-signed test certificate; answers any request with 200
/// and a REST-proxy-shaped body. Reports every connection on its channel.
fn tls_server() -> (SocketAddr, Receiver<Seen>) {
    let cert =
        rustls::pki_types::CertificateDer::from(include_bytes!("fixtures/tls/self-signed.crt.der").to_vec());
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(
        include_bytes!("fixtures/tls/self-signed.key.der").to_vec(),
    );
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key.into())
            .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            let (config, tx) = (Arc::clone(&config), tx.clone());
            std::thread::spawn(move || serve(stream, config, tx));
        }
    });
    (addr, rx)
}

fn serve(mut sock: TcpStream, config: Arc<rustls::ServerConfig>, tx: Sender<Seen>) {
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut first = [0u8; 1];
    let first_byte = match sock.peek(&mut first) {
        Ok(1) => Some(first[0]),
        _ => None,
    };
    if first_byte != Some(0x16) {
        // Not TLS: keep what came, as evidence.
        let mut request = vec![0u8; 4096];
        let n = sock.read(&mut request).unwrap_or(0);
        request.truncate(n);
        let _ = tx.send(Seen { first_byte, handshake: Err("not TLS".into()), request });
        return;
    }
    let mut conn = rustls::ServerConnection::new(config).unwrap();
    let mut handshake = Ok(());
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut sock) {
            handshake = Err(e.to_string());
            break;
        }
    }
    let mut request = Vec::new();
    if handshake.is_ok() {
        let mut tls = rustls::StreamOwned::new(conn, sock);
        let mut buf = [0u8; 4096];
        // Headers, then Content-Length bytes of body.
        loop {
            let n = tls.read(&mut buf).unwrap_or(0);
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                    })
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                if body.len() >= len {
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        let body = r#"{"offsets":[{"partition":0,"offset":0,"error_code":null,"error":null}]}"#;
        let _ = write!(
            tls,
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.kafka.v2+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tls.flush();
        tls.conn.send_close_notify();
        let _ = tls.conn.complete_io(&mut tls.sock);
    }
    let _ = tx.send(Seen { first_byte, handshake, request });
}

/// The next `n` connections the server reports.
fn connections(rx: &Receiver<Seen>, n: usize) -> Vec<Seen> {
    let deadline = Instant::now() + WAIT;
    (0..n)
        .map(|i| {
            rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|e| panic!("connection {i} of {n}: {e:?}"))
        })
        .collect()
}

#[test]
fn the_test_tls_server_serves_a_client_that_trusts_its_certificate() {
    // The control for the test below: same server, same certificate, but trusted.
    let (addr, seen) = tls_server();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            include_bytes!("fixtures/tls/self-signed.crt.der").to_vec(),
        ))
        .unwrap();
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let body = r#"{"records":[{"value":{"a":1}}]}"#;
    write!(
        tls,
        "POST /topics/metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    let _ = tls.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    let s = connections(&seen, 1).remove(0);
    assert_eq!((s.first_byte, s.handshake.clone()), (Some(0x16), Ok(())), "{s:?}");
    assert!(String::from_utf8_lossy(&s.request).ends_with(body), "{s:?}");
}

#[test]
fn https_sinks_refuse_a_certificate_they_cannot_verify_and_never_fall_back_to_http() {
    let (kafka_addr, kafka_seen) = tls_server();
    let (backstop_addr, backstop_seen) = tls_server();
    let mut d = Daemon::start(&[
        "--flush-interval",
        "100ms",
        "--kafka-rest",
        &format!("https://kuser:hunter2@{kafka_addr}/"),
        "--kafka-topic",
        "metrics",
        "--kafka-retry-backoff",
        "20ms",
        "--kafka-retry-backoff-max",
        "50ms",
        "--backstop-url",
        &format!("https://buser:s3cret@{backstop_addr}/publish/statsd"),
        "--backstop-retry-backoff",
        "20ms",
        "--backstop-retry-backoff-max",
        "50ms",
    ]);
    let stderr = std::mem::replace(&mut d.stderr, channel().1);
    d.send("tls.c:1|c");
    // Several attempts each: all refused at the handshake, by the client (kstatsd).
    let mut seen = connections(&kafka_seen, 3);
    seen.extend(connections(&backstop_seen, 3));
    for s in &seen {
        assert_eq!(
            s.first_byte,
            Some(0x16),
            "every connection opens a TLS handshake, none is plain http: {s:?}"
        );
        // kstatsd hangs up once it has seen the certificate (with or without an alert).
        assert!(s.handshake.is_err(), "the handshake never completes: {s:?}");
        assert!(s.request.is_empty(), "no request was sent: {s:?}");
    }
    // The failures are counted as such: retried, never sent.
    let deadline = Instant::now() + WAIT;
    let f = loop {
        let f = d.next_flush(deadline.saturating_duration_since(Instant::now()));
        let stat = |k: &str| f.get(k).copied().unwrap_or(0.0);
        if stat("stats.statsd.kafkaStats.records_retried") >= 2.0
            && stat("stats.statsd.backstopStats.retried") >= 2.0
        {
            break f;
        }
    };
    assert_eq!(f["stats.statsd.kafkaStats.records_sent"], 0.0, "{f:?}");
    assert_eq!(f["stats.statsd.backstopStats.sent"], 0.0, "{f:?}");
    let (status, _) = d.terminate_lines(WAIT);
    assert!(status.success());
    // Whatever else was tried meanwhile was TLS too, and refused (or, cut short by the exit,
    // closed before sending a byte).
    for s in kafka_seen.try_iter().chain(backstop_seen.try_iter()) {
        assert!(
            matches!(s.first_byte, None | Some(0x16)) && s.handshake.is_err() && s.request.is_empty(),
            "{s:?}"
        );
    }
    // The process is gone: read its stderr to the end.
    let log = stderr.iter().collect::<Vec<_>>().join("\n");
    // Why, in the log: the certificate (rustls: "invalid peer certificate: UnknownIssuer").
    for marker in [
        format!("kafka: POST https://{kafka_addr}/topics/metrics: "),
        format!("backstop: POST https://{backstop_addr}/publish/statsd: "),
    ] {
        let line = log.lines().find(|l| l.contains(&marker)).unwrap_or_else(|| panic!("{marker} in {log}"));
        assert!(line.contains("invalid peer certificate"), "{line}");
    }
    assert_no_secret("the log", &log);
}

/// A sink's `ca_file` is what it trusts, and all it trusts: with the file of the server's own
/// certificate, both https sinks complete their requests (the server decrypts the flush); with an
/// unrelated CA's file, the same server is refused as before. A `ca_file` that cannot be used is
/// a configuration error, not a silent fallback to the built-in roots.
#[test]
fn a_ca_file_replaces_the_built_in_roots_for_the_https_sinks() {
    let start = |ca: &str, kafka: SocketAddr, backstop: SocketAddr| {
        Daemon::start(&[
            "--flush-interval",
            "100ms",
            "--kafka-rest",
            &format!("https://{kafka}/"),
            "--kafka-topic",
            "metrics",
            "--kafka-ca-file",
            &fixture(ca),
            "--kafka-retry-backoff",
            "20ms",
            "--backstop-url",
            &format!("https://{backstop}/publish/statsd"),
            "--backstop-ca-file",
            &fixture(ca),
            "--backstop-retry-backoff",
            "20ms",
            "--shutdown-timeout",
            "1s",
        ])
    };
    // Trusted: the flush arrives over TLS at both servers.
    let (kafka_addr, kafka_seen) = tls_server();
    let (backstop_addr, backstop_seen) = tls_server();
    let d = start("self-signed.crt.pem", kafka_addr, backstop_addr);
    d.send("tls.trusted:5|c");
    for (seen, path) in [(&kafka_seen, "POST /topics/metrics "), (&backstop_seen, "POST /publish/statsd ")] {
        let deadline = Instant::now() + WAIT;
        let s = loop {
            let s = seen.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("a request");
            if String::from_utf8_lossy(&s.request).contains("tls.trusted") {
                break s;
            }
        };
        assert_eq!(s.first_byte, Some(0x16), "{s:?}");
        assert_eq!(s.handshake, Ok(()), "{s:?}");
        assert!(String::from_utf8_lossy(&s.request).starts_with(path), "{s:?}");
    }
    let (status, _) = d.terminate_lines(WAIT);
    assert!(status.success());

    // An unrelated CA: refused at the handshake, nothing sent.
    let (kafka_addr, kafka_seen) = tls_server();
    let (backstop_addr, backstop_seen) = tls_server();
    let d = start("other-ca.crt.pem", kafka_addr, backstop_addr);
    d.send("tls.untrusted:5|c");
    let mut seen = connections(&kafka_seen, 2);
    seen.extend(connections(&backstop_seen, 2));
    for s in &seen {
        assert_eq!(s.first_byte, Some(0x16), "{s:?}");
        assert!(s.handshake.is_err() && s.request.is_empty(), "{s:?}");
    }
    let (status, _) = d.terminate_lines(WAIT);
    assert!(status.success());

    // Unusable files and an http URL are refused when the configuration is read.
    for (args, why) in [
        (
            vec![
                "--kafka-rest",
                "https://127.0.0.1:1/",
                "--kafka-topic",
                "t",
                "--kafka-ca-file",
                "/nonexistent.pem",
            ],
            "sinks.kafka_rest.ca_file: /nonexistent.pem: No such file",
        ),
        (
            vec![
                "--backstop-url",
                "https://127.0.0.1:1/publish/x",
                "--backstop-ca-file",
                &fixture("self-signed.crt.der"),
            ],
            "no certificate",
        ),
        (
            vec![
                "--kafka-rest",
                "http://127.0.0.1:1/",
                "--kafka-topic",
                "t",
                "--kafka-ca-file",
                &fixture("self-signed.crt.pem"),
            ],
            "sinks.kafka_rest.ca_file is set but the url is not https",
        ),
    ] {
        let out = Command::new(BIN).arg("--check-config").args(&args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {text}");
        assert!(text.contains(why), "{args:?}: {text}");
    }
    // A good one is shown in the effective configuration.
    let out = Command::new(BIN)
        .args([
            "--check-config",
            "--kafka-rest",
            "https://127.0.0.1:1/",
            "--kafka-topic",
            "t",
            "--kafka-ca-file",
        ])
        .arg(fixture("self-signed.crt.pem"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("ca_file = {:?}", fixture("self-signed.crt.pem"))), "{text}");
}
