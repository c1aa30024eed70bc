//! The HTTP server for `/metrics` and `/healthz`, on its own thread (`kstatsd-http`): one mio
//! poll loop over a listener and at most [`MAX_CONNECTIONS`] non-blocking connections, so a
//! slow or silent client delays nobody, and never the ingest or flush threads.
//!
//! Each connection carries one request (parsed with `httparse`) and gets one answer, then is
//! closed (`Connection: close`; Prometheus reconnects for every scrape). The request must fit in
//! [`MAX_REQUEST`] bytes (431 otherwise); only `GET` and `HEAD` are served (405 otherwise);
//! paths other than `/metrics` and `/healthz` get 404. A connection that makes no progress for
//! [`IDLE_TIMEOUT`] (a request that never ends, a client that stops reading) is closed;
//! connections beyond the limit are closed as soon as they are accepted.
//!
//! `/metrics` writes the page last published through a [`MetricsPage`] (the Prometheus sink
//! implements it): the connection holds a reference to that page until it is written, and no
//! rendering happens here.

use super::Health;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Connections served at once; more are closed on accept.
pub const MAX_CONNECTIONS: usize = 64;
/// Largest request (request line and headers).
pub const MAX_REQUEST: usize = 8 << 10;
/// A connection that neither sends nor takes a byte for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The page `/metrics` serves, published by whoever renders it. The server only takes a
/// reference to the current page (on the HTTP thread) and writes its bytes.
pub trait MetricsPage: Send + Sync {
    /// The page to serve now.
    fn current(&self) -> Arc<Vec<u8>>;
}

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX);

/// The running server; stops (and joins its thread) when stopped or dropped.
pub struct HttpServer {
    local: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Binds `listen` and starts the thread.
    pub fn start(listen: SocketAddr, page: Arc<dyn MetricsPage>, health: Health) -> io::Result<HttpServer> {
        let mut listener = TcpListener::bind(listen)
            .map_err(|e| io::Error::new(e.kind(), format!("http: cannot listen on {listen}: {e}")))?;
        let local = listener.local_addr()?;
        let poll = Poll::new()?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let stop = Arc::new(AtomicBool::new(false));
        let mut lp = Loop { poll, listener, conns: Vec::new(), page, health, stop: Arc::clone(&stop) };
        let thread = std::thread::Builder::new().name("kstatsd-http".into()).spawn(move || lp.run())?;
        Ok(HttpServer { local, stop, waker, thread: Some(thread) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops the thread and waits for it (it closes every connection).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What is still to be written to a connection.
struct Answer {
    head: Vec<u8>,
    body: Option<Arc<Vec<u8>>>,
    /// Bytes of `head` then `body` already written.
    sent: usize,
}

struct Conn {
    stream: TcpStream,
    request: Vec<u8>,
    answer: Option<Answer>,
    last_progress: Instant,
}

struct Loop {
    poll: Poll,
    listener: TcpListener,
    conns: Vec<Option<Conn>>,
    page: Arc<dyn MetricsPage>,
    health: Health,
    stop: Arc<AtomicBool>,
}

impl Loop {
    fn run(&mut self) {
        let mut events = Events::with_capacity(128);
        while !self.stop.load(Ordering::Relaxed) {
            let timeout = self.next_timeout();
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("http: poll failed, the server stops: {e}");
                    return;
                }
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(slot) => self.drive(slot),
                }
            }
            let now = Instant::now();
            for slot in 0..self.conns.len() {
                if self.conns[slot].as_ref().is_some_and(|c| now - c.last_progress >= IDLE_TIMEOUT) {
                    self.close(slot);
                }
            }
        }
    }

    /// Until the oldest connection times out (a second when there is none).
    fn next_timeout(&self) -> Duration {
        let now = Instant::now();
        self.conns
            .iter()
            .flatten()
            .map(|c| (c.last_progress + IDLE_TIMEOUT).saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_millis(1))
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    let open = self.conns.iter().flatten().count();
                    if open >= MAX_CONNECTIONS {
                        drop(stream);
                        continue;
                    }
                    let slot = match self.conns.iter().position(Option::is_none) {
                        Some(s) => s,
                        None => {
                            self.conns.push(None);
                            self.conns.len() - 1
                        }
                    };
                    let mut conn =
                        Conn { stream, request: Vec::new(), answer: None, last_progress: Instant::now() };
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if self.poll.registry().register(&mut conn.stream, Token(slot), interest).is_err() {
                        continue;
                    }
                    self.conns[slot] = Some(conn);
                    // Data may already be there (edge-triggered: no event would tell).
                    self.drive(slot);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of file descriptors, typically: try again on the next event.
                    log::warn!("http: accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// Reads what the connection sent, answers once the request is complete, writes what the
    /// socket takes; closes the connection when it is done or broken.
    fn drive(&mut self, slot: usize) {
        let Some(Some(conn)) = self.conns.get_mut(slot) else { return };
        let done = match conn.answer {
            None => read_request(conn, &*self.page, &self.health),
            Some(_) => Ok(false),
        }
        .and_then(|answered| if answered || conn.answer.is_some() { write_answer(conn) } else { Ok(false) });
        if done.unwrap_or(true) {
            self.close(slot);
        }
    }

    fn close(&mut self, slot: usize) {
        if let Some(mut c) = self.conns[slot].take() {
            let _ = self.poll.registry().deregister(&mut c.stream);
            // Read what the client sent beyond the request (a body, a pipelined request): closing
            // with unread bytes would reset the connection and could cut off the answer.
            let mut scratch = [0u8; 4096];
            for _ in 0..16 {
                if !matches!(c.stream.read(&mut scratch), Ok(n) if n > 0) {
                    break;
                }
            }
            let _ = c.stream.shutdown(std::net::Shutdown::Write);
        }
    }
}

/// Reads until the request is complete (then sets the answer and returns true), the socket is
/// drained (false) or the peer is gone (an error).
fn read_request(conn: &mut Conn, page: &dyn MetricsPage, health: &Health) -> io::Result<bool> {
    let mut buf = [0u8; 2048];
    loop {
        match conn.stream.read(&mut buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                conn.last_progress = Instant::now();
                let room = MAX_REQUEST - conn.request.len();
                conn.request.extend_from_slice(&buf[..n.min(room)]);
                if let Some(answer) = answer_for(&conn.request, page, health) {
                    conn.answer = Some(answer);
                    return Ok(true);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Writes what the socket takes; true when everything was written.
fn write_answer(conn: &mut Conn) -> io::Result<bool> {
    let Some(a) = &mut conn.answer else { return Ok(true) };
    loop {
        let body: &[u8] = a.body.as_deref().map_or(&[], Vec::as_slice);
        let (chunk, total) = if a.sent < a.head.len() {
            (&a.head[a.sent..], a.head.len() + body.len())
        } else {
            (&body[a.sent - a.head.len()..], a.head.len() + body.len())
        };
        if a.sent == total {
            return Ok(true);
        }
        match conn.stream.write(chunk) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                a.sent += n;
                conn.last_progress = Instant::now();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The answer to `request` once it is complete (or can never be: too large, malformed); `None`
/// while more of it is to come.
fn answer_for(request: &[u8], page: &dyn MetricsPage, health: &Health) -> Option<Answer> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let (method, path) = match req.parse(request) {
        Ok(httparse::Status::Complete(_)) => (req.method.unwrap_or(""), req.path.unwrap_or("")),
        Ok(httparse::Status::Partial) if request.len() < MAX_REQUEST => return None,
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            return Some(text(431, "Request Header Fields Too Large", "request too large\n", false))
        }
        Err(_) => return Some(text(400, "Bad Request", "bad request\n", false)),
    };
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        let mut a = text(405, "Method Not Allowed", "only GET and HEAD\n", false);
        a.head.splice(a.head.len() - 2..a.head.len() - 2, b"Allow: GET, HEAD\r\n".iter().copied());
        return Some(a);
    }
    let path = path.split('?').next().unwrap_or("");
    Some(match path {
        "/metrics" => {
            let page = page.current();
            let head = head(200, "OK", CONTENT_TYPE, page.len());
            Answer { head, body: (!head_only).then_some(page), sent: 0 }
        }
        "/healthz" if health.is_up() => text(200, "OK", "ok\n", head_only),
        "/healthz" => text(503, "Service Unavailable", "down\n", head_only),
        _ => text(404, "Not Found", "not found\n", head_only),
    })
}

fn head(status: u16, reason: &str, content_type: &str, len: usize) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n\
         Connection: close\r\n\r\n"
    )
    .into_bytes()
}

fn text(status: u16, reason: &str, body: &str, head_only: bool) -> Answer {
    let body = Arc::new(body.as_bytes().to_vec());
    let head = head(status, reason, "text/plain; charset=utf-8", body.len());
    Answer { head, body: (!head_only).then_some(body), sent: 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page that was never published: empty.
    struct Empty;

    impl MetricsPage for Empty {
        fn current(&self) -> Arc<Vec<u8>> {
            Arc::default()
        }
    }

    fn answer(request: &str) -> Option<String> {
        let health = Health::default();
        answer_for(request.as_bytes(), &Empty, &health).map(|a| {
            let mut out = a.head.clone();
            out.extend_from_slice(a.body.as_deref().map_or(&[][..], Vec::as_slice));
            String::from_utf8(out).unwrap()
        })
    }

    #[test]
    fn requests_are_answered_once_complete() {
        assert_eq!(answer("GET /metrics HTTP/1.1\r\nHost: x\r\n"), None, "headers not finished");
        let ok = answer("GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"), "{ok}");
        assert!(ok.contains("Content-Length: 0\r\n"), "{ok}");
        let health = answer("GET /healthz HTTP/1.0\r\n\r\n").unwrap();
        assert!(health.starts_with("HTTP/1.1 200 OK\r\n") && health.ends_with("\r\n\r\nok\n"), "{health}");
        let head = answer("HEAD /healthz HTTP/1.1\r\n\r\n").unwrap();
        assert!(head.contains("Content-Length: 3\r\n") && head.ends_with("\r\n\r\n"), "{head}");
        assert!(answer("GET / HTTP/1.1\r\n\r\n").unwrap().starts_with("HTTP/1.1 404 "));
        let post = answer("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert!(post.starts_with("HTTP/1.1 405 ") && post.contains("\r\nAllow: GET, HEAD\r\n\r\n"), "{post}");
        assert!(answer("\x01\x02 nonsense\r\n\r\n").unwrap().starts_with("HTTP/1.1 400 "));
        let huge = format!("GET /metrics HTTP/1.1\r\nX: {}", "a".repeat(MAX_REQUEST));
        assert!(answer(&huge[..MAX_REQUEST]).unwrap().starts_with("HTTP/1.1 431 "));
    }

    #[test]
    fn healthz_follows_the_health_state() {
        let health = Health::default();
        health.set(false);
        let a = answer_for(b"GET /healthz HTTP/1.1\r\n\r\n", &Empty, &health).unwrap();
        assert!(a.head.starts_with(b"HTTP/1.1 503 Service Unavailable\r\n"));
    }
}
