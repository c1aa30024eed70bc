//! An in-process Kafka REST Proxy for the Kafka sink's tests: a plain HTTP/1.1 server (std
//! `TcpListener`, a thread per connection, keep-alive) implementing the v2 produce contract:
//! `POST /topics/{topic}` with one of the three content types, a body
//! `{"records":[{"key":…,"value":…},…]}` (base64 strings for the binary type), answered with one
//! `offsets` entry per record, or a request-level `{"error_code":…,"message":…}` (404/40401
//! unknown topic, 401, 415, 413, 400, 422).
//!
//! It answers as one of the two real proxies does ([`Flavour`]). Confluent's REST Proxy: a 200
//! whose failed records carry `error_code` 50003 (retriable) or 50002 (its generic Kafka error;
//! a record over the producer's `max.request.size` is a 50002 `RecordTooLargeException`), with
//! `partition`/`offset`/`error_code`/`error` in every entry. Karapace (Aiven): entries are
//! `{"offset","partition"}` when produced and `{"error_code","error"}` when not, with the legacy
//! codes 2 (retriable) and 1 (not; a record too large is a 1 saying "…larger than this
//! maximum"), and the whole answer is a 422 as soon as one record failed (the others are
//! produced). Both refuse a body of 1 MiB or more with 413 (Karapace's aiohttp `client_max_size`).
//!
//! It keeps every request and every record it accepted (raw value bytes), and can be told to
//! fail: refuse connections (`down`), hang, hold a request and produce it later even after the
//! client gave up (as a proxy whose broker is down does), answer slowly, close without
//! answering, answer any status with `Retry-After`, fail chosen records with any code, or
//! refuse bodies or records over a size. Runs on the tests' threads plus one per connection.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const JSON_V2: &str = "application/vnd.kafka.json.v2+json";
pub const JSON_V1: &str = "application/vnd.kafka.json.v1+json";
pub const BINARY_V2: &str = "application/vnd.kafka.binary.v2+json";

/// The largest body taken: Karapace's default limit is aiohttp's `client_max_size` of 1 MiB,
/// and aiohttp refuses a body that reaches it.
pub const MAX_BODY: usize = (1 << 20) - 1;

/// How Karapace words a record over its producer's `message.max.bytes` (aiokafka's
/// `MessageSizeTooLargeError`), with error code 1.
pub const KARAPACE_TOO_LARGE: &str = "The server has a configurable maximum message size to avoid unbounded \
     memory allocation. This error is thrown if the client attempt to produce a message larger than this \
     maximum.";

/// Which proxy's answers to give.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Flavour {
    /// Confluent REST Proxy: 200 with per-record 50003 / 50002.
    #[default]
    Confluent,
    /// Karapace: 422 with per-record legacy codes 2 / 1 as soon as one record failed.
    Karapace,
}

/// What to do with one request instead of producing it.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer `status` with a request-level error body (and `Retry-After` when given).
    Status { status: u16, error_code: i64, retry_after: Option<RetryAfter> },
    /// Read the request and never answer, until `release_hangs` or the emulator goes.
    Hang,
    /// Read the request, say nothing for this long, then produce it (whether or not the client
    /// is still there) and answer: a proxy whose broker was down.
    Hold(Duration),
    /// Produce normally, but answer after this long.
    Slow(Duration),
    /// Read the request and close the connection without a word.
    Close,
}

/// A `Retry-After` header: seconds, or the HTTP-date that many seconds after the answer.
#[derive(Clone, Copy, Debug)]
pub enum RetryAfter {
    Seconds(u64),
    DateIn(u64),
}

impl RetryAfter {
    /// The header's value. The date is the `date` program's, in IMF-fixdate form, to the second.
    fn value(self) -> String {
        match self {
            RetryAfter::Seconds(s) => s.to_string(),
            RetryAfter::DateIn(s) => {
                let out = std::process::Command::new("date")
                    .args(["-u", "-d", &format!("+{s} seconds"), "+%a, %d %b %Y %H:%M:%S GMT"])
                    .env("LC_ALL", "C")
                    .output()
                    .unwrap();
                String::from_utf8(out.stdout).unwrap().trim().to_string()
            }
        }
    }
}

impl Fault {
    /// A request-level error as the proxy words it.
    pub fn status(status: u16) -> Fault {
        let error_code = match status {
            401 => 40101,
            403 => 40301,
            404 => 40401,
            422 => 42201,
            429 => 42901,
            503 => 50302,
            s => s as i64,
        };
        Fault::Status { status, error_code, retry_after: None }
    }
}

/// Fails the records whose value contains `value_contains`, `times` times (then accepts them).
#[derive(Clone, Debug)]
pub struct RecordFault {
    pub value_contains: String,
    pub error_code: i64,
    pub error: String,
    pub times: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub key: Option<String>,
    /// The value exactly as sent: raw JSON text, or the decoded bytes for the binary type.
    pub value: String,
}

#[derive(Clone, Debug)]
pub struct Request {
    pub at: Instant,
    /// Which TCP connection carried it (counted from 1 in accept order).
    pub conn: u64,
    pub method: String,
    pub path: String,
    pub content_type: String,
    pub accept: String,
    pub authorization: Option<String>,
    pub body: Vec<u8>,
    /// The records, when the body parsed.
    pub records: Vec<Record>,
    /// What was answered (0: nothing, hung or closed).
    pub status: u16,
    /// Per record: the error code answered, `None` when accepted.
    pub results: Vec<Option<i64>>,
}

#[derive(Default)]
pub struct State {
    /// Consumed one per request, before `sticky`.
    pub faults: VecDeque<Fault>,
    /// Applies to every request while set.
    pub sticky: Option<Fault>,
    pub record_faults: Vec<RecordFault>,
    pub flavour: Flavour,
    /// Bodies over this get 413 ([`MAX_BODY`] unless set).
    pub max_body: Option<usize>,
    /// Record values over this are refused as too large (Confluent: per-record 50002
    /// `RecordTooLargeException`; Karapace: per-record 1, in a 422).
    pub max_record: Option<usize>,
    pub topics: Vec<String>,
    /// The exact `Authorization` header required, if any (else 401).
    pub credentials: Option<String>,
    pub requests: Vec<Request>,
    pub accepted: Vec<Record>,
    next_offset: i64,
    hangs_released: bool,
}

impl State {
    /// Back to a healthy proxy (faults, record limits and credentials cleared, the default body
    /// limit, topic `metrics`), keeping what arrived and the flavour.
    pub fn heal(&mut self) {
        self.faults.clear();
        self.sticky = None;
        self.record_faults.clear();
        self.max_body = Some(MAX_BODY);
        self.max_record = None;
        self.topics = vec!["metrics".into()];
        self.credentials = None;
    }
}

struct Inner {
    state: Mutex<State>,
    changed: Condvar,
    conns: Mutex<Vec<TcpStream>>,
    conn_ids: AtomicU64,
    stopping: AtomicBool,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct Emulator {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    acceptor: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Emulator {
    /// Listening on an ephemeral loopback port, topic `metrics` known.
    pub fn start() -> Emulator {
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                topics: vec!["metrics".into()],
                max_body: Some(MAX_BODY),
                ..State::default()
            }),
            changed: Condvar::new(),
            conns: Mutex::new(Vec::new()),
            conn_ids: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
        });
        // Below the ephemeral range: `down` frees the port, and no other test may get it before
        // `up` takes it back (see `ports`).
        let listener = super::ports::tcp_listener();
        let addr = listener.local_addr().unwrap();
        let mut e = Emulator { addr, inner, acceptor: None };
        e.listen(listener);
        e
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn listen(&mut self, listener: TcpListener) {
        let run = Arc::new(AtomicBool::new(true));
        let (inner, flag) = (Arc::clone(&self.inner), Arc::clone(&run));
        let t = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if !flag.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let id = inner.conn_ids.fetch_add(1, Ordering::SeqCst) + 1;
                inner.conns.lock().unwrap().push(stream.try_clone().unwrap());
                let inner = Arc::clone(&inner);
                std::thread::spawn(move || serve(&inner, stream, id));
            }
        });
        self.acceptor = Some((run, t));
    }

    /// Stops listening and closes every connection: from now on connections are refused.
    pub fn down(&mut self) {
        if let Some((run, t)) = self.acceptor.take() {
            run.store(false, Ordering::SeqCst);
            let _ = TcpStream::connect(self.addr);
            t.join().unwrap();
        }
        for c in self.inner.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Listens again on the same address (waiting, at most 10 s, for a connection of another
    /// test that was given the port meanwhile to go).
    pub fn up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.addr) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("the emulator's port {}: {e}", self.addr),
            }
        };
        self.listen(listener);
    }

    /// Runs `f` on the state (to script faults or read what arrived).
    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let r = f(&mut self.inner.lock());
        self.inner.changed.notify_all();
        r
    }

    /// Waits until `f` returns something, re-checking at every request; panics after `timeout`.
    pub fn wait_for<R>(&self, timeout: Duration, what: &str, mut f: impl FnMut(&State) -> Option<R>) -> R {
        let deadline = Instant::now() + timeout;
        let mut st = self.inner.lock();
        loop {
            if let Some(r) = f(&st) {
                return r;
            }
            let now = Instant::now();
            assert!(now < deadline, "the REST proxy emulator did not see {what} within {timeout:?}");
            st = self.inner.changed.wait_timeout(st, deadline - now).unwrap().0;
        }
    }

    /// Lets every hung request go (their connections are closed without an answer).
    pub fn release_hangs(&self) {
        self.with(|s| s.hangs_released = true);
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.release_hangs();
        self.down();
    }
}

/// One connection: requests one after the other (keep-alive) until it closes.
fn serve(inner: &Inner, stream: TcpStream, conn: u64) {
    stream.set_nodelay(true).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    while let Some(mut req) = read_request(&mut reader, conn) {
        // One lock for the fault, the records taken and the request's log: whoever waits sees
        // the request and its records together.
        let (fault, answer, held) = {
            let mut st = inner.lock();
            let fault = st.faults.pop_front().or_else(|| st.sticky.clone());
            let answer = match &fault {
                Some(Fault::Hang) | Some(Fault::Close) | Some(Fault::Hold(_)) => None,
                Some(Fault::Status { status, error_code, retry_after }) => {
                    let body = format!("{{\"error_code\":{error_code},\"message\":\"injected {status}\"}}");
                    Some((*status, body, *retry_after))
                }
                Some(Fault::Slow(_)) | None => {
                    let (status, body) = produce(&mut st, &mut req);
                    Some((status, body, None))
                }
            };
            req.status = answer.as_ref().map_or(0, |a| a.0);
            let held = matches!(fault, Some(Fault::Hold(_))).then(|| req.clone());
            st.requests.push(req);
            (fault, answer, held)
        };
        inner.changed.notify_all();
        let mut answer = answer;
        match fault {
            Some(Fault::Hold(d)) => {
                let until = Instant::now() + d;
                while Instant::now() < until && !inner.stopping.load(Ordering::SeqCst) {
                    std::thread::sleep(
                        Duration::from_millis(10).min(until.saturating_duration_since(Instant::now())),
                    );
                }
                let mut req = held.unwrap();
                let mut st = inner.lock();
                let at = st.requests.iter().rposition(|r| r.conn == req.conn && r.at == req.at).unwrap();
                let (status, body) = produce(&mut st, &mut req);
                st.requests[at] = Request { status, ..req };
                answer = Some((status, body, None));
                drop(st);
                inner.changed.notify_all();
            }
            Some(Fault::Hang) => {
                let mut st = inner.lock();
                while !st.hangs_released && !inner.stopping.load(Ordering::SeqCst) {
                    st = inner.changed.wait_timeout(st, Duration::from_millis(100)).unwrap().0;
                }
                return;
            }
            Some(Fault::Close) => {
                // `down` keeps a clone of the stream: dropping ours would not close it.
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
            Some(Fault::Slow(d)) => std::thread::sleep(d),
            _ => {}
        }
        let (status, body, retry_after) = answer.unwrap();
        let mut head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: application/vnd.kafka.v2+json\r\nContent-Length: {}\r\n",
            reason(status),
            body.len()
        );
        if let Some(r) = retry_after {
            head.push_str(&format!("Retry-After: {}\r\n", r.value()));
        }
        head.push_str("\r\n");
        head.push_str(&body);
        if writer.write_all(head.as_bytes()).is_err() {
            return;
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Other",
    }
}

/// Reads one request (headers, then a `Content-Length` body); `None` at the end of the stream.
fn read_request(r: &mut BufReader<TcpStream>, conn: u64) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let (mut len, mut content_type, mut accept, mut authorization) =
        (None, String::new(), String::new(), None);
    loop {
        line.clear();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':')?;
        let v = v.trim().to_string();
        match k.to_ascii_lowercase().as_str() {
            "content-length" => len = v.parse::<usize>().ok(),
            "content-type" => content_type = v,
            "accept" => accept = v,
            "authorization" => authorization = Some(v),
            "transfer-encoding" => panic!("the sink must send a Content-Length, not {v}"),
            _ => {}
        }
    }
    let mut body = vec![0; len.expect("POST without Content-Length")];
    r.read_exact(&mut body).ok()?;
    Some(Request {
        at: Instant::now(),
        conn,
        method,
        path,
        content_type,
        accept,
        authorization,
        body,
        records: Vec::new(),
        status: 0,
        results: Vec::new(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BodyIn<'a> {
    #[serde(borrow)]
    records: Vec<RecordIn<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordIn<'a> {
    #[serde(borrow)]
    key: Option<&'a RawValue>,
    #[serde(borrow)]
    value: &'a RawValue,
    #[allow(dead_code)]
    partition: Option<i64>,
}

fn error(status: u16, code: i64, message: &str) -> (u16, String) {
    if status == 413 {
        // Karapace's answer to a body over aiohttp's limit.
        return (413, r#"{"error_code":413,"message":"HTTP Request Entity Too Large"}"#.to_string());
    }
    (status, serde_json::json!({ "error_code": code, "message": message }).to_string())
}

/// The produce contract, for a request no fault intercepted.
fn produce(st: &mut State, req: &mut Request) -> (u16, String) {
    let Some(topic) = req.path.strip_prefix("/topics/").filter(|_| req.method == "POST") else {
        return error(404, 404, "HTTP 404 Not Found");
    };
    if !st.topics.iter().any(|t| t == topic) {
        return error(404, 40401, "Topic not found.");
    }
    if st.credentials.is_some() && req.authorization != st.credentials {
        return error(401, 40101, "Unauthorized");
    }
    let ct = req.content_type.split(';').next().unwrap_or("").trim().to_string();
    let binary = ct == BINARY_V2;
    if ct != JSON_V2 && ct != JSON_V1 && !binary {
        return error(415, 415, "HTTP 415 Unsupported Media Type");
    }
    if st.max_body.is_some_and(|m| req.body.len() > m) {
        return error(413, 413, "HTTP Request Entity Too Large");
    }
    let parsed: BodyIn = match serde_json::from_slice(&req.body) {
        Ok(b) => b,
        Err(e) if e.is_data() => return error(422, 42201, &e.to_string()),
        Err(e) => return error(400, 400, &e.to_string()),
    };
    for r in &parsed.records {
        let key = match r.key {
            None => None,
            Some(k) if binary => {
                match serde_json::from_str::<String>(k.get()).ok().and_then(|s| unbase64(&s)) {
                    Some(k) => Some(String::from_utf8_lossy(&k).into_owned()),
                    None => return error(422, 42203, "Binary key is not base64"),
                }
            }
            Some(k) => Some(serde_json::from_str::<String>(k.get()).unwrap_or_else(|_| k.get().to_string())),
        };
        let value = if binary {
            match serde_json::from_str::<String>(r.value.get()).ok().and_then(|s| unbase64(&s)) {
                Some(v) => String::from_utf8_lossy(&v).into_owned(),
                None => return error(422, 42204, "Binary value is not base64"),
            }
        } else {
            r.value.get().to_string()
        };
        req.records.push(Record { key, value });
    }
    let karapace = st.flavour == Flavour::Karapace;
    let mut offsets = Vec::new();
    for rec in &req.records {
        let mut fail = None;
        if let Some(m) = st.max_record.filter(|m| rec.value.len() > *m) {
            fail = Some(if karapace {
                (1, KARAPACE_TOO_LARGE.to_string())
            } else {
                (
                    50002,
                    format!(
                        "org.apache.kafka.common.errors.RecordTooLargeException: The message is {} bytes \
                         when serialized which is larger than {m}, which is the value of the \
                         max.request.size configuration.",
                        rec.value.len()
                    ),
                )
            });
        } else if let Some(f) =
            st.record_faults.iter_mut().find(|f| f.times > 0 && rec.value.contains(&f.value_contains))
        {
            f.times -= 1;
            fail = Some((f.error_code, f.error.clone()));
        }
        match fail {
            Some((code, msg)) => {
                req.results.push(Some(code));
                offsets.push(if karapace {
                    serde_json::json!({"error_code": code, "error": msg})
                } else {
                    serde_json::json!({"partition": null, "offset": null, "error_code": code, "error": msg})
                });
            }
            None => {
                req.results.push(None);
                st.next_offset += 1;
                st.accepted.push(rec.clone());
                let offset = st.next_offset - 1;
                offsets.push(if karapace {
                    serde_json::json!({"offset": offset, "partition": 0})
                } else {
                    serde_json::json!({"partition": 0, "offset": offset, "error_code": null, "error": null})
                });
            }
        }
    }
    let body = serde_json::json!({"offsets": offsets, "key_schema_id": null, "value_schema_id": null});
    let failed = req.results.iter().any(Option::is_some);
    (if karapace && failed { 422 } else { 200 }, body.to_string())
}

/// Standard base64 with padding; `None` if it is not.
pub fn unbase64(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if b.len() % 4 != 0 {
        return None;
    }
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(b.len() / 4 * 3);
    for (i, q) in b.chunks(4).enumerate() {
        let last = i == b.len() / 4 - 1;
        let pad = if last { q.iter().rev().take_while(|&&c| c == b'=').count() } else { 0 };
        if pad > 2 {
            return None;
        }
        let mut n = 0u32;
        for &c in &q[..4 - pad] {
            n = n << 6 | val(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}
