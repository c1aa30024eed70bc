//! A minimal HTTP/1.1 server side for test peers (the Backstop stand-ins): an accept loop with a
//! thread per connection, and reading one request with a `Content-Length` body. Runs on the
//! tests' own threads.

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};

/// One request as read off the wire.
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names lower-cased, values trimmed, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Accepts connections forever on a thread of its own, serving each on a new thread.
pub fn accept_loop(listener: TcpListener, serve: impl Fn(TcpStream) + Clone + Send + 'static) {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { break };
            let serve = serve.clone();
            std::thread::spawn(move || serve(conn));
        }
    });
}

/// Reads the next request of a keep-alive connection; `None` when the client closed it. Panics
/// on a chunked body: these peers expect `Content-Length`.
pub fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return None;
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let req = Request { method, path, headers, body: Vec::new() };
    if let Some(te) = req.header("transfer-encoding") {
        panic!("expected a Content-Length body, got Transfer-Encoding: {te}");
    }
    let length: usize = req.header("content-length").map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request { body, ..req })
}
