//! A small blocking HTTP/1.1 client for the Docker Engine API, over its Unix socket or TCP. Runs
//! on the Docker poller's threads only (see [`super`]).
//!
//! One request per connection (`Connection: close`): the poller makes a handful of requests per
//! period, so keep-alive would buy nothing and cost a state machine. The whole response is read
//! to EOF under one deadline, then split into status, headers and body; the body is decoded from
//! `Content-Length` or `Transfer-Encoding: chunked` (the Engine streams `/stats` chunked). A
//! response larger than [`MAX_RESPONSE`] is refused rather than buffered without bound.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Largest response accepted (a `/containers/json` listing of thousands of containers fits).
pub const MAX_RESPONSE: usize = 64 << 20;

/// Where the Engine listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineAddr {
    /// `unix:///var/run/docker.sock`
    Unix(PathBuf),
    /// `http://host:port` or `tcp://host:port`: the `host:port` part.
    Tcp(String),
}

impl EngineAddr {
    /// `unix:///path`, `http://host[:port]` (port 2375 by default) or `tcp://host[:port]`.
    pub fn parse(url: &str) -> Result<EngineAddr, String> {
        if let Some(path) = url.strip_prefix("unix://") {
            if path.is_empty() || !path.starts_with('/') {
                return Err(format!("`{url}`: expected unix:///absolute/path"));
            }
            return Ok(EngineAddr::Unix(PathBuf::from(path)));
        }
        let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("tcp://"));
        let Some(rest) = rest else {
            return Err(format!("`{url}`: expected unix:///path/docker.sock or http://host:port"));
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') || authority.contains('@') {
            return Err(format!("`{url}`: expected http://host:port (no path, no credentials)"));
        }
        let has_port = match authority.rsplit_once(':') {
            Some((_, p)) => !p.ends_with(']') && p.parse::<u16>().is_ok(),
            None => false,
        };
        Ok(EngineAddr::Tcp(if has_port { authority.to_string() } else { format!("{authority}:2375") }))
    }
}

impl std::fmt::Display for EngineAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineAddr::Unix(p) => write!(f, "unix://{}", p.display()),
            EngineAddr::Tcp(a) => write!(f, "http://{a}"),
        }
    }
}

/// A response: status and decoded body.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// `GET path` on `endpoint`, all of it (connect, send, read) within `timeout`.
pub fn get(endpoint: &EngineAddr, path: &str, timeout: Duration) -> Result<Response, String> {
    let deadline = Instant::now() + timeout;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: kstatsd\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    let raw = match endpoint {
        EngineAddr::Unix(p) => {
            let s = UnixStream::connect(p).map_err(|e| format!("connect {}: {e}", p.display()))?;
            s.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
            exchange(s, request.as_bytes(), deadline, |s, t| s.set_read_timeout(Some(t)))
        }
        EngineAddr::Tcp(a) => {
            let addr = a
                .to_socket_addrs()
                .map_err(|e| format!("resolve {a}: {e}"))?
                .next()
                .ok_or_else(|| format!("resolve {a}: no address"))?;
            let s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {a}: {e}"))?;
            s.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
            exchange(s, request.as_bytes(), deadline, |s, t| s.set_read_timeout(Some(t)))
        }
    };
    let raw = raw.map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            format!("GET {path}: timed out after {timeout:?}")
        }
        _ => format!("GET {path}: {e}"),
    })?;
    parse_response(&raw).map_err(|e| format!("GET {path}: {e}"))
}

/// Sends `request` and reads until EOF or `deadline`.
fn exchange<S: Read + Write>(
    mut s: S,
    request: &[u8],
    deadline: Instant,
    set_timeout: impl Fn(&S, Duration) -> io::Result<()>,
) -> io::Result<Vec<u8>> {
    s.write_all(request)?;
    let mut out = Vec::with_capacity(16 << 10);
    let mut buf = [0u8; 16 << 10];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        set_timeout(&s, left)?;
        match s.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => {
                if out.len() + n > MAX_RESPONSE {
                    return Err(io::Error::other(format!("response larger than {MAX_RESPONSE} bytes")));
                }
                out.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Splits a complete HTTP/1.1 response (read to EOF) into status and decoded body.
pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let head_end = find(raw, b"\r\n\r\n").ok_or("truncated response (no end of headers)")?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| "response headers are not UTF-8")?;
    let rest = &raw[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1.x response: {:?}", truncate(status_line, 60)));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {:?}", truncate(status_line, 60)))?;
    let (mut length, mut chunked) = (None, false);
    for line in lines {
        let Some((k, v)) = line.split_once(':') else { continue };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("content-length") {
            length = Some(v.parse::<usize>().map_err(|_| format!("bad Content-Length {v:?}"))?);
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.to_ascii_lowercase().split(',').any(|t| t.trim() == "chunked");
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        if rest.len() < n {
            return Err(format!("truncated body: {} of {n} bytes", rest.len()));
        }
        rest[..n].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { status, body })
}

/// Decodes a chunked body; fails on a truncated one (no final zero-size chunk).
pub fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(data.len());
    loop {
        let eol = find(data, b"\r\n").ok_or("truncated chunked body (no chunk size)")?;
        let line = std::str::from_utf8(&data[..eol]).map_err(|_| "bad chunk size line")?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err("truncated chunked body".into());
        }
        out.extend_from_slice(&data[..size]);
        if &data[size..size + 2] != b"\r\n" {
            return Err("chunk not followed by CRLF".into());
        }
        data = &data[size + 2..];
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            EngineAddr::parse("unix:///var/run/docker.sock").unwrap(),
            EngineAddr::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(
            EngineAddr::parse("http://10.0.0.1:2376").unwrap(),
            EngineAddr::Tcp("10.0.0.1:2376".into())
        );
        assert_eq!(EngineAddr::parse("tcp://docker/").unwrap(), EngineAddr::Tcp("docker:2375".into()));
        assert_eq!(EngineAddr::parse("http://[::1]:2375").unwrap(), EngineAddr::Tcp("[::1]:2375".into()));
        assert_eq!(EngineAddr::parse("http://[::1]").unwrap(), EngineAddr::Tcp("[::1]:2375".into()));
        for bad in
            ["", "unix://", "unix://rel/path", "https://h:1", "http://h/x", "http://u:p@h:1", "ftp://h"]
        {
            assert!(EngineAddr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn content_length_body() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello").unwrap();
        assert_eq!(r, Response { status: 200, body: b"hello".to_vec() });
        let r = parse_response(b"HTTP/1.0 404 Not Found\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!(r.status, 404);
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhello")
            .unwrap_err()
            .contains("truncated"));
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;x=y\r\n \r\nA\r\n0123456789\r\n0\r\nTrailer: v\r\n\r\n";
        assert_eq!(parse_response(raw).unwrap().body, b"hello 0123456789");
    }

    #[test]
    fn truncated_or_garbage_responses_are_errors_not_panics() {
        let full = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        for cut in 0..full.len() - 4 {
            let _ = parse_response(&full[..cut]); // never panics
        }
        assert!(parse_response(&full[..full.len() - 7]).is_err());
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 abc\r\n\r\n").is_err());
        assert!(dechunk(b"zz\r\nhello\r\n0\r\n\r\n").is_err());
        assert!(dechunk(b"5\r\nhelloXX0\r\n\r\n").is_err());
    }

    #[test]
    fn get_over_tcp() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let n = c.read(&mut buf).unwrap();
            assert!(buf[..n].starts_with(b"GET /containers/json HTTP/1.1\r\n"));
            c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]").unwrap();
        });
        let ep = EngineAddr::parse(&format!("http://{addr}")).unwrap();
        assert_eq!(get(&ep, "/containers/json", Duration::from_secs(5)).unwrap().body, b"[]");
        t.join().unwrap();
        let closed = EngineAddr::Tcp(addr.to_string());
        assert!(get(&closed, "/x", Duration::from_secs(1)).unwrap_err().contains("connect"));
    }

    #[test]
    fn get_over_a_unix_socket_and_a_timeout() {
        let dir = std::env::temp_dir().join(format!("kstatsd-http-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("d.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            // first connection: answers chunked; second: never answers
            let (mut c, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let n = c.read(&mut buf).unwrap();
            assert!(buf[..n].starts_with(b"GET /v1.41/version HTTP/1.1\r\n"));
            c.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
                .unwrap();
            drop(c);
            let (c, _) = listener.accept().unwrap();
            std::thread::sleep(Duration::from_millis(600));
            drop(c);
        });
        let ep = EngineAddr::Unix(path.clone());
        let r = get(&ep, "/v1.41/version", Duration::from_secs(5)).unwrap();
        assert_eq!(r, Response { status: 200, body: b"{}".to_vec() });
        let started = Instant::now();
        let e = get(&ep, "/slow", Duration::from_millis(200)).unwrap_err();
        assert!(e.contains("timed out"), "{e}");
        assert!(started.elapsed() < Duration::from_millis(500));
        t.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
