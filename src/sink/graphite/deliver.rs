//! The Graphite sink's delivery, on its worker thread (`kstatsd-graphite`): one long-lived TCP
//! connection to carbon, each queued flush written with `write_all`; on any failure the
//! connection is dropped and the engine retries the whole flush after the backoff. Carbon never
//! answers, so before each write the worker checks without blocking whether carbon has closed
//! the connection meanwhile (a restarted carbon), and reconnects instead of writing into a dead
//! socket. A flush that failed half-way is sent again in full: carbon stores a point per
//! (name, timestamp), so the repeated part overwrites itself with the same value.

use crate::sink::outbox::{SendBatch, Sent};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The connection to carbon; lives on the worker thread.
pub(super) struct Carbon {
    pub address: String,
    pub timeout: Duration,
    pub conn: Option<TcpStream>,
}

/// Whether carbon has closed (or reset) the connection. Carbon never writes to us, so a
/// readable socket means EOF or an error; a would-block read means it is still open.
fn peer_closed(conn: &TcpStream) -> bool {
    if conn.set_nonblocking(true).is_err() {
        return true;
    }
    let mut scratch = [0u8; 64];
    let closed = match (&*conn).read(&mut scratch) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    };
    closed || conn.set_nonblocking(false).is_err()
}

fn connect(address: &str, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = None;
    for addr in address.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address")))
}

impl SendBatch for Carbon {
    fn send(&mut self, bytes: &[u8], deadline: Option<Instant>) -> Sent {
        let timeout = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()).min(self.timeout),
            None => self.timeout,
        };
        if timeout.is_zero() {
            return Sent::Retry { error: "shutdown deadline reached".into(), after: None };
        }
        if self.conn.as_ref().is_some_and(peer_closed) {
            log::debug!("graphite: carbon at {} closed the connection; reconnecting", self.address);
            self.conn = None;
        }
        if self.conn.is_none() {
            match connect(&self.address, timeout) {
                Ok(c) => {
                    log::debug!("graphite: connected to {}", self.address);
                    self.conn = Some(c);
                }
                Err(e) => return Sent::Retry { error: format!("cannot connect: {e}"), after: None },
            }
        }
        let conn = self.conn.as_mut().expect("connected above");
        let result = conn.set_write_timeout(Some(timeout)).and_then(|()| conn.write_all(bytes));
        match result {
            Ok(()) => Sent::Delivered,
            Err(e) => {
                self.conn = None;
                Sent::Retry { error: format!("writing: {e}"), after: None }
            }
        }
    }
}
