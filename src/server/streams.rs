//! Stream connections on the ingest thread: accepting them from the TCP and Unix stream
//! listeners (management-port clients included, which `admin_clients` then serves), reading the
//! data connections that have data, closing them, and the idle and stall timeouts. [`Streams`]
//! holds the listeners, the connection slots and the shared read buffer.
//!
//! Streams are edge-triggered: a readiness event is reported once, so a connection that still
//! has data after its share of reads stays in the `ready` list until a read comes back
//! `WouldBlock` or at the end of the stream (a short read is not enough: a peer that wrote and
//! closed before the first read has its end of stream behind the data, with no edge of its own).
//! Stream reads land in one shared 64 KiB buffer; complete lines and frames are
//! parsed from there ([`ingest::stream_bytes`]), only an unfinished tail is copied into its
//! connection ([`crate::net::framing::StreamFramer`]: newline lines or length-prefixed
//! DogStatsD frames, per the input's framing setting).

use super::{Server, CONN_BASE, STREAM_BUF, STREAM_READS};
use crate::admin::management::{self as admin, AdminClient};
use crate::ingest;
use crate::net::framing::{self, StreamFramer};
use crate::net::{InputAddr, ListenerSocket};
use mio::event::Source;
use mio::{Interest, Registry, Token};
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

pub(super) enum Stream {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

impl Stream {
    fn source(&mut self) -> &mut dyn Source {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub(super) enum Role {
    Data(StreamFramer),
    Admin(AdminClient),
}

pub(super) struct Conn {
    pub(super) stream: Stream,
    /// Unique for the daemon's life (slots are reused; admin replies carry this).
    pub(super) id: u64,
    last_active: Instant,
    /// In `ready` (has unread data).
    pub(super) queued: bool,
    pub(super) role: Role,
}

pub(super) struct ListenerInput {
    pub(super) socket: ListenerSocket,
    pub(super) endpoint: InputAddr,
    pub(super) local: String,
    /// The management port.
    pub(super) admin: bool,
}

/// The stream side of the loop: listeners, connection slots (a slot's token is `CONN_BASE` plus
/// its index; freed slots are reused), the connections with unread data, and the shared read
/// buffer.
pub(super) struct Streams {
    pub(super) listeners: Vec<ListenerInput>,
    pub(super) conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Data connections that may have unread data.
    pub(super) ready: Vec<usize>,
    pub(super) stream_buf: Box<[u8]>,
    pub(super) data_conns: usize,
    pub(super) admin_conns: usize,
    next_conn_id: u64,
    pub(super) next_housekeeping: Instant,
    /// A refused connection was logged this interval.
    pub(super) refusal_logged: bool,
}

impl Streams {
    pub(super) fn new(max_conns: usize, now: Instant) -> Streams {
        Streams {
            listeners: Vec::new(),
            conns: Vec::new(),
            free: Vec::new(),
            ready: Vec::with_capacity(max_conns),
            stream_buf: vec![0u8; STREAM_BUF].into_boxed_slice(),
            data_conns: 0,
            admin_conns: 0,
            next_conn_id: 0,
            next_housekeeping: now,
            refusal_logged: false,
        }
    }

    /// Any connection open (data or admin).
    pub(super) fn any_open(&self) -> bool {
        self.data_conns + self.admin_conns > 0
    }

    /// Closes the connection in `slot`, if any, and frees the slot.
    pub(super) fn close(&mut self, registry: &Registry, slot: usize) {
        close_conn(
            &mut self.conns,
            &mut self.free,
            registry,
            slot,
            &mut self.data_conns,
            &mut self.admin_conns,
        );
    }
}

impl Server {
    /// Accepts every pending connection on listener `li`, refusing (and counting) those over
    /// the limit.
    pub(super) fn accept(&mut self, li: usize, now: Instant) {
        loop {
            let l = &self.streams.listeners[li];
            let accepted = match &l.socket {
                ListenerSocket::Tcp(t) => t.accept().map(|(s, _)| {
                    let _ = s.set_nodelay(true);
                    Stream::Tcp(s)
                }),
                ListenerSocket::Unix(u, _) => u.accept().map(|(s, _)| Stream::Unix(s)),
            };
            let mut stream = match accepted {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and the like: what is still queued is accepted with the next event.
                    if !std::mem::replace(&mut self.error_logged, true) {
                        log::error!(
                            "accept on {} failed: {e} (at most one such error is logged per flush interval)",
                            l.local
                        );
                    }
                    return;
                }
            };
            let admin = l.admin;
            let framing = match l.socket {
                ListenerSocket::Tcp(_) => self.config.server.tcp_framing,
                ListenerSocket::Unix(..) => self.config.server.unix_stream_framing,
            };
            if admin && self.streams.admin_conns >= admin::MAX_CLIENTS {
                if !std::mem::replace(&mut self.error_logged, true) {
                    log::warn!(
                        "admin: {} clients already connected; refusing others (at most one such error is logged per flush interval)",
                        admin::MAX_CLIENTS
                    );
                }
                continue;
            }
            if !admin && self.streams.data_conns >= self.config.server.max_tcp_connections {
                self.active.stats.connections_refused += 1;
                if !self.streams.refusal_logged {
                    self.streams.refusal_logged = true;
                    log::warn!(
                        "{} stream connections open (max_tcp_connections): refusing new ones (counted in connections_refused)",
                        self.streams.data_conns
                    );
                }
                continue;
            }
            let slot = self.streams.free.pop().unwrap_or_else(|| {
                self.streams.conns.push(None);
                self.streams.conns.len() - 1
            });
            let interest = if admin { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            if let Err(e) = self.poll.registry().register(stream.source(), Token(CONN_BASE + slot), interest)
            {
                log::error!("cannot register a connection: {e}");
                self.streams.free.push(slot);
                continue;
            }
            let role = if admin {
                self.streams.admin_conns += 1;
                Role::Admin(AdminClient::default())
            } else {
                self.streams.data_conns += 1;
                self.active.stats.connections_opened += 1;
                Role::Data(StreamFramer::new(framing))
            };
            self.streams.next_conn_id += 1;
            // Data may already be there (edge-triggered: no event will say so).
            let queued = !admin;
            self.streams.conns[slot] =
                Some(Conn { stream, id: self.streams.next_conn_id, last_active: now, queued, role });
            if queued {
                self.streams.ready.push(slot);
            }
        }
    }

    pub(super) fn close(&mut self, slot: usize) {
        self.streams.close(self.poll.registry(), slot);
    }

    /// Reads the connections that have data; returns the number of reads that brought some.
    pub(super) fn service_ready(&mut self) -> usize {
        let mut reads = 0;
        let now = Instant::now();
        let mut i = 0;
        while i < self.streams.ready.len() {
            let slot = self.streams.ready[i];
            let (more, n) = self.read_data(slot, now);
            reads += n;
            if more {
                i += 1;
            } else {
                self.streams.ready.swap_remove(i);
                if let Some(Some(c)) = self.streams.conns.get_mut(slot) {
                    c.queued = false;
                }
            }
        }
        reads
    }

    /// Reads one data connection (at most `STREAM_READS` times). Returns whether it may still
    /// have data, and the reads that brought some.
    pub(super) fn read_data(&mut self, slot: usize, now: Instant) -> (bool, usize) {
        let Server {
            streams: Streams { conns, free, data_conns, admin_conns, stream_buf, .. },
            poll,
            active,
            line_buf,
            dump,
            config,
            ..
        } = self;
        let limits = framing::FrameLimits {
            max_line: config.server.max_line_bytes,
            max_frame: config.server.max_datagram,
        };
        let Some(Some(conn)) = conns.get_mut(slot) else { return (false, 0) };
        let Role::Data(framer) = &mut conn.role else { return (false, 0) };
        let mut reads = 0;
        for _ in 0..STREAM_READS {
            match conn.stream.read(stream_buf) {
                Ok(0) => {
                    ingest::stream_end(active, framer, limits, line_buf, dump);
                    close_conn(conns, free, poll.registry(), slot, data_conns, admin_conns);
                    return (false, reads);
                }
                Ok(n) => {
                    reads += 1;
                    conn.last_active = now;
                    ingest::stream_bytes(active, framer, &stream_buf[..n], limits, line_buf, dump);
                    // A short read does not mean drained: the peer's close may already be
                    // behind this data, and it brings no new edge. Only `WouldBlock` (new data
                    // brings a new edge) or the end of the stream stops the reads.
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return (false, reads),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    close_conn(conns, free, poll.registry(), slot, data_conns, admin_conns);
                    return (false, reads);
                }
            }
        }
        (true, reads)
    }

    /// Closes idle data connections, and admin clients whose output has not moved for
    /// `admin::STALL_TIMEOUT`.
    pub(super) fn housekeeping(&mut self, now: Instant) {
        let idle = self.config.server.tcp_idle_timeout;
        for slot in 0..self.streams.conns.len() {
            let Some(c) = &self.streams.conns[slot] else { continue };
            let expired = match &c.role {
                Role::Data(_) => idle.is_some_and(|t| now.duration_since(c.last_active) >= t),
                Role::Admin(a) => {
                    a.stalled_since.is_some_and(|t| now.duration_since(t) >= admin::STALL_TIMEOUT)
                }
            };
            if expired {
                if matches!(c.role, Role::Data(_)) {
                    self.active.stats.connections_timed_out += 1;
                } else {
                    log::warn!(
                        "admin: dropping a client that has not read its output for {:?}",
                        admin::STALL_TIMEOUT
                    );
                }
                self.close(slot);
            }
        }
        // Often enough that a timeout fires within a quarter of itself.
        let tick = idle.map_or(Duration::from_secs(1), |t| {
            (t / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
        });
        self.streams.next_housekeeping = now + tick;
    }
}

fn close_conn(
    conns: &mut [Option<Conn>],
    free: &mut Vec<usize>,
    registry: &Registry,
    slot: usize,
    data_conns: &mut usize,
    admin_conns: &mut usize,
) {
    if let Some(mut c) = conns.get_mut(slot).and_then(Option::take) {
        let _ = registry.deregister(c.stream.source());
        match c.role {
            Role::Data(_) => *data_conns -= 1,
            Role::Admin(_) => *admin_conns -= 1,
        }
        free.push(slot);
    }
}
