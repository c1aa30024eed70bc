//! The ingest loop. Runs on the ingest thread (the main thread, optionally pinned), which owns
//! every socket — UDP, pystatsd JSON over UDP, Unix datagram, TCP and Unix stream listeners and
//! their connections, the management port and its clients — and the active tables, and never
//! waits for anything it does not own.
//!
//! Each turn drains every datagram socket with `recvmmsg` until `WouldBlock` (at most
//! `DRAIN_ROUNDS` batches per socket per turn, so one flooded socket cannot starve another),
//! parses and records every datagram into the active tables, then, when there are stream
//! sockets, collects their readiness with a zero-timeout `epoll_wait` and reads the connections
//! that have data (at most `STREAM_READS` reads each per turn, for the same fairness), then checks
//! the flush deadline. While traffic flows the loop spins; after `busy_poll` of silence it parks in
//! `epoll_wait` until a socket is readable, a signal arrives, or the next flush (or connection
//! housekeeping) is due. At the deadline it swaps the active tables with the spare the flush
//! thread returned and sends the full ones over; if no spare is back yet (a slow sink), it keeps
//! aggregating into the same tables, counts one overrun and retries every turn: the interval just
//! gets longer, and rates use its real length.
//!
//! Streams are edge-triggered: a readiness event is reported once, so a connection that still
//! has data after its share of reads stays in the `ready` list until a read comes back short or
//! `WouldBlock`. Stream reads land in one shared 64 KiB buffer; complete lines are parsed from
//! there, only a line's unfinished tail is copied into its connection ([`LineFramer`]).
//!
//! The management port's clients are served here too, but what they ask about the known series
//! is answered by the flush thread (which owns it): the question goes over the flush channel
//! with `try_send`, the answer comes back on `replies` and a `mio::Waker` wakes the loop. A
//! SIGHUP starts a reload on a helper thread ([`crate::reload`]); its result comes back the same
//! way and is applied between two turns.

use crate::aggregate::{
    count_too_long, ingest_datagram, ingest_datagram_observed, ingest_json_line, ingest_json_only,
    ingest_line_observed, ingest_mixed_line, ingest_stream_line, Limits, Observe, Tables,
};
use crate::config::{BusyPoll, Config};
use crate::dump::DebugDump;
use crate::flush::thread::{FlushHandle, FlushJob, FlushMsg};
use crate::flush::FlushMeta;
use crate::net::admin::{self, AdminClient, Command, LiveFigures, Query};
use crate::net::recvmmsg::Batch;
use crate::net::tcp::{Framed, LineFramer};
use crate::net::{Bound, DgramSocket, Endpoint, ListenerSocket};
use crate::parse::{BadLine, LineBuf};
use mio::event::Source;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Batches read from one socket before the loop looks at the others and at the clock. Chosen,
/// not tuned yet: 16 × 64 datagrams is about a millisecond of a full socket, short enough for
/// fairness and flush deadlines, long enough that the per-turn bookkeeping is negligible.
const DRAIN_ROUNDS: usize = 16;
/// Reads from one stream connection per turn (16 × 64 KiB = 1 MiB), for the same fairness.
const STREAM_READS: usize = 16;
/// The shared stream read buffer: as large as a datagram, so a read costs what a datagram does.
const STREAM_BUF: usize = 64 << 10;
/// Tokens: datagram sockets are `0..`, listeners `LISTENER_BASE..`, connections `CONN_BASE..`.
const LISTENER_BASE: usize = 1 << 24;
const CONN_BASE: usize = 1 << 25;
/// After the shutdown deadline, how long the flush thread gets to log what its sinks gave up
/// and end.
const EXIT_GRACE: Duration = Duration::from_millis(500);
const WAKER: Token = Token(usize::MAX - 1);
const SIGNAL: Token = Token(usize::MAX);

struct DgramInput {
    socket: DgramSocket,
    endpoint: Endpoint,
    local: String,
    /// A `json_udp` port: every line is a JSON message.
    json: bool,
}

struct ListenerInput {
    socket: ListenerSocket,
    endpoint: Endpoint,
    local: String,
    admin: bool,
}

enum Stream {
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

enum Role {
    Data(LineFramer),
    Admin(AdminClient),
}

struct Conn {
    stream: Stream,
    /// Unique for the daemon's life (slots are reused; admin replies carry this).
    id: u64,
    last_active: Instant,
    /// In `ready` (has unread data).
    queued: bool,
    role: Role,
}

pub struct Server {
    poll: Poll,
    events: Events,
    /// (token, readable, writable) of the last poll, copied out of `events`.
    fired: Vec<(Token, bool, bool)>,
    dgram: Vec<DgramInput>,
    listeners: Vec<ListenerInput>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    ready: Vec<usize>,
    stream_buf: Box<[u8]>,
    data_conns: usize,
    admin_conns: usize,
    next_conn_id: u64,
    next_housekeeping: Instant,
    refusal_logged: bool,
    /// A receive, accept or admin-limit error was logged this interval: the loop logs such
    /// errors once per interval, since one that persists would recur on every turn.
    error_logged: bool,
    batch: Batch,
    line_buf: LineBuf,
    active: Box<Tables>,
    limits: Limits,
    flush: FlushHandle,
    /// The spare tables when they came back before they were needed (see `wait_for_spare`).
    spare: Option<Box<Tables>>,
    interval: Duration,
    last_flush: Instant,
    next_flush: Instant,
    /// The Unix second of the last flush (see [`flush_clock`]).
    last_clock: u64,
    last_data: Instant,
    overruns: u64,
    overrun_pending: bool,
    flush_thread_gone: bool,
    busy_poll: BusyPoll,
    capture_packets: bool,
    stop: Arc<AtomicBool>,
    /// Registered with `poll` so that a signal ends `epoll_wait`; never read.
    _wake: mio::net::UnixStream,
    shutdown_timeout: Duration,
    dump: Option<DebugDump>,
    waker: Arc<Waker>,
    replies_tx: mpsc::Sender<admin::Reply>,
    replies: mpsc::Receiver<admin::Reply>,
    healthy: bool,
    config_text: String,
    started: Instant,
    /// The running configuration (a reload is compared with it).
    config: Config,
    reload: Option<crate::reload::Reloader>,
}

/// What the caller hands the loop.
pub struct ServerParts {
    pub config: Config,
    /// Every bound input (see [`crate::net::bind`]).
    pub inputs: Vec<Bound>,
    pub active: Box<Tables>,
    pub flush: FlushHandle,
    pub capture_packets: bool,
    /// Set by the SIGTERM/SIGINT handler; `wake` is the read end of the signal pipe.
    pub stop: Arc<AtomicBool>,
    pub wake: mio::net::UnixStream,
}

impl Server {
    pub fn new(parts: ServerParts) -> io::Result<Server> {
        let poll = Poll::new()?;
        let config = parts.config;
        let s = &config.server;
        let mut wake = parts.wake;
        poll.registry().register(&mut wake, SIGNAL, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let dump = match &s.debug_dump {
            Some(re) => {
                log::info!("debug dump on: metrics whose name matches /{re}/ go to stderr");
                Some(DebugDump::start(re)?)
            }
            None => None,
        };
        let (replies_tx, replies) = mpsc::channel();
        let now = Instant::now();
        let mut server = Server {
            poll,
            events: Events::with_capacity(256),
            fired: Vec::with_capacity(256),
            dgram: Vec::new(),
            listeners: Vec::new(),
            conns: Vec::new(),
            free: Vec::new(),
            ready: Vec::with_capacity(s.max_tcp_connections + admin::MAX_CLIENTS),
            stream_buf: vec![0u8; STREAM_BUF].into_boxed_slice(),
            data_conns: 0,
            admin_conns: 0,
            next_conn_id: 0,
            next_housekeeping: now,
            refusal_logged: false,
            error_logged: false,
            batch: Batch::new(s.recv_batch, s.max_datagram),
            line_buf: LineBuf::default(),
            active: parts.active,
            limits: config.aggregate.limits.clone(),
            flush: parts.flush,
            spare: None,
            interval: config.aggregate.flush_interval,
            last_flush: now,
            next_flush: now + config.aggregate.flush_interval,
            last_clock: 0,
            last_data: now,
            overruns: 0,
            overrun_pending: false,
            flush_thread_gone: false,
            busy_poll: s.busy_poll,
            capture_packets: parts.capture_packets,
            stop: parts.stop,
            _wake: wake,
            shutdown_timeout: s.shutdown_timeout,
            dump,
            waker,
            replies_tx,
            replies,
            healthy: true,
            config_text: config.to_toml(),
            started: now,
            config,
            reload: None,
        };
        for b in parts.inputs {
            server.add_input(b)?;
        }
        Ok(server)
    }

    /// Takes over one bound input (registering it with the poll).
    fn add_input(&mut self, b: Bound) -> io::Result<()> {
        match b {
            Bound::Dgram { mut socket, endpoint, local } => {
                // Datagram sockets are drained every turn; their events only end a park.
                let token = Token(self.dgram.len());
                match &mut socket {
                    DgramSocket::Udp(s) => self.poll.registry().register(s, token, Interest::READABLE)?,
                    DgramSocket::Unix(s, _) => self.poll.registry().register(s, token, Interest::READABLE)?,
                }
                let json = matches!(endpoint, Endpoint::JsonUdp(_));
                self.dgram.push(DgramInput { socket, endpoint, local, json });
                self.retoken_dgram()?;
            }
            Bound::Listener { mut socket, endpoint, local } => {
                let token = Token(LISTENER_BASE + self.listeners.len());
                match &mut socket {
                    ListenerSocket::Tcp(l) => self.poll.registry().register(l, token, Interest::READABLE)?,
                    ListenerSocket::Unix(l, _) => {
                        self.poll.registry().register(l, token, Interest::READABLE)?
                    }
                }
                let admin = matches!(endpoint, Endpoint::Admin(_));
                self.listeners.push(ListenerInput { socket, endpoint, local, admin });
                // A connection may have queued before registration: accept it now.
                self.accept(self.listeners.len() - 1, Instant::now());
            }
        }
        Ok(())
    }

    /// Re-registers the datagram sockets with their current index as token (after a removal).
    fn retoken_dgram(&mut self) -> io::Result<()> {
        for (i, d) in self.dgram.iter_mut().enumerate() {
            match &mut d.socket {
                DgramSocket::Udp(s) => self.poll.registry().reregister(s, Token(i), Interest::READABLE)?,
                DgramSocket::Unix(s, _) => {
                    self.poll.registry().reregister(s, Token(i), Interest::READABLE)?
                }
            }
        }
        Ok(())
    }

    /// Where each input listens: (what it was configured as, the address or path it bound).
    pub fn local_addrs(&self) -> Vec<(Endpoint, String)> {
        let d = self.dgram.iter().map(|d| (d.endpoint.clone(), d.local.clone()));
        d.chain(self.listeners.iter().map(|l| (l.endpoint.clone(), l.local.clone()))).collect()
    }

    /// What the current (unflushed) interval counted so far.
    pub fn interval_stats(&self) -> &crate::aggregate::IngestStats {
        &self.active.stats
    }

    /// Lets SIGHUP reload the configuration file (see [`crate::reload`]).
    pub fn enable_reload(&mut self, reloader: crate::reload::Reloader) {
        self.reload = Some(reloader);
    }

    /// Runs until SIGTERM/SIGINT, then drains the sockets once more, hands the last interval to
    /// the flush thread and waits (at most `shutdown_timeout`) for it to finish.
    pub fn run(mut self) -> io::Result<()> {
        while !self.stop.load(Ordering::Relaxed) {
            self.turn()?;
        }
        self.shutdown()
    }

    /// One iteration of the loop: drain every socket, flush if due, and when there was nothing
    /// to read either spin once or (after `busy_poll` of silence) park until something happens.
    /// Returns the number of datagrams and stream reads.
    pub fn turn(&mut self) -> io::Result<usize> {
        let mut got = self.drain();
        let evented = !self.listeners.is_empty() || self.data_conns + self.admin_conns > 0;
        if evented {
            self.poll_events(Some(Duration::ZERO))?;
        }
        if !self.ready.is_empty() {
            got += self.service_ready();
        }
        let now = Instant::now();
        if got > 0 {
            self.last_data = now;
        }
        if now >= self.next_flush {
            self.try_flush(now);
        }
        if now >= self.next_housekeeping {
            self.housekeeping(now);
        }
        if self.reload.as_ref().is_some_and(|r| r.pending()) {
            self.reload_step();
        }
        if got == 0 && self.ready.is_empty() {
            let park = match self.busy_poll {
                BusyPoll::Always => false,
                BusyPoll::For(d) => now.duration_since(self.last_data) >= d,
            };
            if park {
                let mut until = self.next_flush;
                if self.data_conns + self.admin_conns > 0 {
                    until = until.min(self.next_housekeeping);
                }
                self.poll_events(Some(until.saturating_duration_since(now)))?;
            } else {
                std::hint::spin_loop();
            }
        }
        Ok(got)
    }

    /// Reads what is waiting on every datagram socket; returns the number of datagrams.
    fn drain(&mut self) -> usize {
        let mut total = 0;
        for i in 0..self.dgram.len() {
            for _ in 0..DRAIN_ROUNDS {
                let (input, batch) = (&self.dgram[i], &mut self.batch);
                let received = match &input.socket {
                    DgramSocket::Udp(s) => s.try_io(|| batch.recv(s)),
                    DgramSocket::Unix(s, _) => s.try_io(|| batch.recv(s)),
                };
                let n = match received {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        if !std::mem::replace(&mut self.error_logged, true) {
                            log::error!("receive on {} failed: {e} (at most one such error is logged per flush interval)", input.local);
                        }
                        break;
                    }
                };
                let json = input.json;
                for d in 0..n {
                    let (datagram, truncated) = self.batch.datagram(d);
                    if self.capture_packets {
                        self.active.capture_packet(datagram);
                    }
                    if truncated || json {
                        ingest_unusual(
                            &mut self.active,
                            datagram,
                            truncated,
                            json,
                            &mut self.line_buf,
                            &mut self.dump,
                        );
                    } else {
                        ingest_received(&mut self.active, datagram, &mut self.line_buf, &mut self.dump);
                    }
                }
                total += n;
                if n < self.batch.capacity() {
                    break;
                }
            }
        }
        total
    }

    /// Waits (at most `timeout`) for readiness and handles every event: accepts, marks
    /// connections with data as ready, writes admin output, picks up flush-thread replies.
    fn poll_events(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        self.fired.clear();
        for e in self.events.iter() {
            let readable = e.is_readable() || e.is_read_closed() || e.is_error();
            self.fired.push((e.token(), readable, e.is_writable() || e.is_write_closed()));
        }
        let now = Instant::now();
        for i in 0..self.fired.len() {
            let (Token(t), readable, writable) = self.fired[i];
            if Token(t) == WAKER {
                self.take_replies(now);
            } else if Token(t) == SIGNAL || t < LISTENER_BASE {
                // Signals are flags checked every turn; datagram sockets are drained every turn.
            } else if t < CONN_BASE {
                if t - LISTENER_BASE < self.listeners.len() {
                    self.accept(t - LISTENER_BASE, now);
                }
            } else {
                let slot = t - CONN_BASE;
                let Some(Some(conn)) = self.conns.get_mut(slot) else { continue };
                match conn.role {
                    Role::Data(_) => {
                        if readable && !conn.queued {
                            conn.queued = true;
                            self.ready.push(slot);
                        }
                    }
                    Role::Admin(_) => {
                        if readable {
                            self.admin_read(slot, now);
                        }
                        if writable {
                            self.admin_write(slot, now);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Accepts every pending connection on listener `li`, refusing (and counting) those over
    /// the limit.
    fn accept(&mut self, li: usize, now: Instant) {
        loop {
            let l = &self.listeners[li];
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
            if admin && self.admin_conns >= admin::MAX_CLIENTS {
                if !std::mem::replace(&mut self.error_logged, true) {
                    log::warn!(
                        "admin: {} clients already connected; refusing others (at most one such error is logged per flush interval)",
                        admin::MAX_CLIENTS
                    );
                }
                continue;
            }
            if !admin && self.data_conns >= self.config.server.max_tcp_connections {
                self.active.stats.connections_refused += 1;
                if !self.refusal_logged {
                    self.refusal_logged = true;
                    log::warn!(
                        "{} stream connections open (max_tcp_connections): refusing new ones (counted in connections_refused)",
                        self.data_conns
                    );
                }
                continue;
            }
            let slot = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            let interest = if admin { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            if let Err(e) = self.poll.registry().register(stream.source(), Token(CONN_BASE + slot), interest)
            {
                log::error!("cannot register a connection: {e}");
                self.free.push(slot);
                continue;
            }
            let role = if admin {
                self.admin_conns += 1;
                Role::Admin(AdminClient::default())
            } else {
                self.data_conns += 1;
                self.active.stats.connections_opened += 1;
                Role::Data(LineFramer::default())
            };
            self.next_conn_id += 1;
            // Data may already be there (edge-triggered: no event will say so).
            let queued = !admin;
            self.conns[slot] = Some(Conn { stream, id: self.next_conn_id, last_active: now, queued, role });
            if queued {
                self.ready.push(slot);
            }
        }
    }

    fn close(&mut self, slot: usize) {
        close_conn(
            &mut self.conns,
            &mut self.free,
            self.poll.registry(),
            slot,
            &mut self.data_conns,
            &mut self.admin_conns,
        );
    }

    /// Reads the connections that have data; returns the number of reads that brought some.
    fn service_ready(&mut self) -> usize {
        let mut reads = 0;
        let now = Instant::now();
        let mut i = 0;
        while i < self.ready.len() {
            let slot = self.ready[i];
            let (more, n) = self.read_data(slot, now);
            reads += n;
            if more {
                i += 1;
            } else {
                self.ready.swap_remove(i);
                if let Some(Some(c)) = self.conns.get_mut(slot) {
                    c.queued = false;
                }
            }
        }
        reads
    }

    /// Reads one data connection (at most `STREAM_READS` times). Returns whether it may still
    /// have data, and the reads that brought some.
    fn read_data(&mut self, slot: usize, now: Instant) -> (bool, usize) {
        let Server {
            conns,
            free,
            poll,
            data_conns,
            admin_conns,
            stream_buf,
            active,
            line_buf,
            dump,
            config,
            ..
        } = self;
        let max_line = config.server.max_line_bytes;
        let Some(Some(conn)) = conns.get_mut(slot) else { return (false, 0) };
        let Role::Data(framer) = &mut conn.role else { return (false, 0) };
        let mut noop = ();
        let obs: &mut dyn Observe = match dump {
            Some(d) => d,
            None => &mut noop,
        };
        let mut reads = 0;
        for _ in 0..STREAM_READS {
            match conn.stream.read(stream_buf) {
                Ok(0) => {
                    framer.finish(&mut |f: Framed<'_>| stream_line(active, line_buf, obs, f));
                    close_conn(conns, free, poll.registry(), slot, data_conns, admin_conns);
                    return (false, reads);
                }
                Ok(n) => {
                    reads += 1;
                    conn.last_active = now;
                    active.stats.packets += 1;
                    active.stats.bytes += n as u64;
                    framer.feed(&stream_buf[..n], max_line, &mut |f: Framed<'_>| {
                        stream_line(active, line_buf, obs, f)
                    });
                    if n < stream_buf.len() {
                        // Drained: new data brings a new edge.
                        return (false, reads);
                    }
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
    fn housekeeping(&mut self, now: Instant) {
        let idle = self.config.server.tcp_idle_timeout;
        for slot in 0..self.conns.len() {
            let Some(c) = &self.conns[slot] else { continue };
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
        self.next_housekeeping = now + tick;
    }

    // ---- the management port ----

    fn admin_read(&mut self, slot: usize, now: Instant) {
        loop {
            let Some(Some(conn)) = self.conns.get_mut(slot) else { return };
            let Role::Admin(client) = &mut conn.role else { return };
            match conn.stream.read(&mut self.stream_buf) {
                Ok(0) => {
                    self.close(slot);
                    return;
                }
                Ok(n) => {
                    client.input.extend_from_slice(&self.stream_buf[..n]);
                    self.admin_commands(slot, now);
                    // What is left is an unfinished line, or commands queued behind a question
                    // to the flush thread: either way, bounded.
                    let Some(Some(Conn { role: Role::Admin(client), .. })) = self.conns.get(slot) else {
                        return;
                    };
                    if client.input.len() > admin::INPUT_LIMIT {
                        log::warn!(
                            "admin: dropping a client with over {} bytes of unanswered input",
                            admin::INPUT_LIMIT
                        );
                        self.close(slot);
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close(slot);
                    return;
                }
            }
        }
    }

    /// Runs the client's buffered commands until one needs the flush thread.
    fn admin_commands(&mut self, slot: usize, now: Instant) {
        loop {
            let Some(Some(conn)) = self.conns.get_mut(slot) else { return };
            let id = conn.id;
            let Role::Admin(client) = &mut conn.role else { return };
            if client.waiting || client.closing {
                break;
            }
            let Some(line) = client.next_line() else { break };
            let cmd = Command::parse(&line);
            let reply = if cmd.mutates() && !self.config.server.admin_allow_mutations {
                Some(admin::text_reply(
                    "ERROR: this command is disabled (server.admin_allow_mutations = false)",
                ))
            } else {
                match cmd {
                    Command::Nothing => None,
                    Command::Help => Some(admin::text_reply(admin::HELP)),
                    Command::Health(set) => {
                        if let Some(up) = set {
                            self.healthy = up;
                        }
                        Some(admin::text_reply(if self.healthy { "health: up" } else { "health: down" }))
                    }
                    Command::Config => Some(admin::text_reply(&self.config_text)),
                    Command::Quit => {
                        client.closing = true;
                        None
                    }
                    Command::Unknown(c) => {
                        Some(admin::text_reply(&format!("ERROR: unknown command `{c}` (try help)")))
                    }
                    Command::Stats { json } => {
                        let live = Box::new(self.live_figures());
                        self.ask_flush_thread(slot, id, Query::Stats { json, live })
                    }
                    Command::List(kind) => self.ask_flush_thread(slot, id, Query::List(kind)),
                    Command::Delete { kind, patterns } => {
                        self.ask_flush_thread(slot, id, Query::Delete { kind, patterns })
                    }
                }
            };
            if let Some(r) = reply {
                if !self.admin_push(slot, &r) {
                    return;
                }
            }
        }
        self.admin_write(slot, now);
    }

    /// Sends a question to the flush thread; an error reply when it cannot take it now.
    fn ask_flush_thread(&mut self, slot: usize, id: u64, query: Query) -> Option<Vec<u8>> {
        let req = admin::Request {
            slot,
            id,
            query,
            reply: self.replies_tx.clone(),
            waker: Arc::clone(&self.waker),
        };
        match self.flush.jobs.try_send(FlushMsg::Admin(Box::new(req))) {
            Ok(()) => {
                if let Some(Some(Conn { role: Role::Admin(c), .. })) = self.conns.get_mut(slot) {
                    c.waiting = true;
                }
                None
            }
            Err(TrySendError::Full(_)) => {
                Some(admin::text_reply("ERROR: the flush thread is busy; try again"))
            }
            Err(TrySendError::Disconnected(_)) => {
                Some(admin::text_reply("ERROR: the flush thread has stopped"))
            }
        }
    }

    fn live_figures(&self) -> LiveFigures {
        let now = Instant::now();
        LiveFigures {
            uptime_s: now.duration_since(self.started).as_secs(),
            last_msg_seen_s: now.duration_since(self.last_data).as_secs(),
            interval: self.active.stats.clone(),
            interval_series: self.active.series_count(),
            connections_open: self.data_conns,
            admin_clients: self.admin_conns,
            overruns_pending: self.overruns,
            healthy: self.healthy,
        }
    }

    /// Queues output for an admin client; drops the client (returning false) over its limit.
    fn admin_push(&mut self, slot: usize, reply: &[u8]) -> bool {
        let Some(Some(Conn { role: Role::Admin(c), .. })) = self.conns.get_mut(slot) else { return false };
        if c.push(reply) {
            return true;
        }
        log::warn!("admin: dropping a client that does not read its replies ({} bytes pending)", c.pending());
        self.close(slot);
        false
    }

    fn admin_write(&mut self, slot: usize, now: Instant) {
        let Some(Some(conn)) = self.conns.get_mut(slot) else { return };
        let Role::Admin(client) = &mut conn.role else { return };
        match client.write_to(&mut conn.stream, now) {
            Ok(true) if client.closing => self.close(slot),
            Ok(_) => {}
            Err(_) => self.close(slot),
        }
    }

    /// Hands the flush thread's answers to their clients and runs what they sent meanwhile.
    fn take_replies(&mut self, now: Instant) {
        while let Ok(r) = self.replies.try_recv() {
            let Some(Some(conn)) = self.conns.get_mut(r.slot) else { continue };
            if conn.id != r.id {
                continue; // that client is gone and its slot reused
            }
            if let Role::Admin(c) = &mut conn.role {
                c.waiting = false;
            }
            if self.admin_push(r.slot, &r.text) {
                self.admin_commands(r.slot, now);
            }
        }
        if self.reload.is_some() {
            self.reload_step();
        }
    }

    // ---- reload ----

    /// Starts a requested reload, or applies a finished one.
    fn reload_step(&mut self) {
        let Some(r) = self.reload.as_mut() else { return };
        match r.poll(&self.config, &self.waker) {
            None => {}
            Some(Ok(loaded)) => self.apply_reload(loaded),
            Some(Err(why)) => {
                log::error!("reload refused, the running configuration is kept: {why}");
                self.active.stats.config_reload_failures += 1;
            }
        }
    }

    /// Applies a validated configuration (see [`crate::reload`] for what changes how).
    fn apply_reload(&mut self, loaded: crate::reload::Loaded) {
        let new = loaded.config;
        let old_s = self.config.server.clone();
        let new_s = &new.server;
        let have: Vec<Endpoint> = self.local_addrs().into_iter().map(|(e, _)| e).collect();
        let want = Endpoint::all(new_s);
        // Bind every new endpoint first: one failure and nothing changes.
        let mut fresh = Vec::new();
        for e in want.iter().filter(|e| !have.contains(e)) {
            match crate::net::bind(e, new_s) {
                Ok(b) => fresh.push(b),
                Err(err) => {
                    log::error!("reload refused, the running configuration is kept: {err}");
                    self.active.stats.config_reload_failures += 1;
                    return;
                }
            }
        }
        let udp_changed = !fresh.is_empty()
            && fresh.iter().any(|b| matches!(b, Bound::Dgram { socket: DgramSocket::Udp(_), .. }))
            || self
                .dgram
                .iter()
                .any(|d| !want.contains(&d.endpoint) && matches!(d.socket, DgramSocket::Udp(_)));
        if let Err(e) = self.remove_inputs(&want) {
            log::error!("reload: removing an input failed: {e}");
        }
        for b in fresh {
            if let Err(e) = self.add_input(b) {
                log::error!("reload: cannot register a new input: {e}");
            }
        }
        if (old_s.recv_batch, old_s.max_datagram) != (new_s.recv_batch, new_s.max_datagram) {
            self.batch = Batch::new(new_s.recv_batch, new_s.max_datagram);
        }
        if (old_s.pin_ingest_core, old_s.pin_flush_core) != (new_s.pin_ingest_core, new_s.pin_flush_core) {
            log::warn!("reload: thread pinning changes only at a restart");
        }
        if old_s.debug_dump != new_s.debug_dump {
            self.dump = match new_s.debug_dump.as_deref().map(DebugDump::start).transpose() {
                Ok(d) => d,
                Err(e) => {
                    log::error!("reload: debug dump off: {e}");
                    None
                }
            };
        }
        if old_s.unix_mode != new_s.unix_mode {
            for (e, _) in self.local_addrs() {
                if let Endpoint::UnixDgram(p) | Endpoint::UnixStream(p) = e {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = std::fs::Permissions::from_mode(new_s.unix_mode);
                    if let Err(err) = std::fs::set_permissions(&p, mode) {
                        log::error!("reload: cannot change the mode of {}: {err}", p.display());
                    }
                }
            }
        }
        if old_s.recv_buffer != new_s.recv_buffer {
            log::info!("reload: the new recv_buffer applies to sockets bound from now on");
        }
        self.busy_poll = new_s.busy_poll;
        self.shutdown_timeout = new_s.shutdown_timeout;
        if self.interval != new.aggregate.flush_interval {
            self.interval = new.aggregate.flush_interval;
            self.next_flush = self.last_flush + self.interval;
        }
        self.limits = new.aggregate.limits.clone();
        self.active.set_limits(self.limits.clone());
        if let Some(sinks) = &loaded.sinks {
            self.capture_packets = sinks.iter().any(|s| s.wants_packets());
        }
        let drops = udp_changed.then(|| {
            let fds: Vec<&dyn std::os::fd::AsRawFd> = self
                .dgram
                .iter()
                .filter_map(|d| match &d.socket {
                    DgramSocket::Udp(s) => Some(s as &dyn std::os::fd::AsRawFd),
                    DgramSocket::Unix(..) => None,
                })
                .collect();
            crate::net::drops::KernelDrops::new(&fds)
        });
        let msg = crate::flush::thread::Reload {
            aggregate: new.aggregate.clone(),
            sinks: loaded.sinks,
            on_failure: new.on_failure.clone(),
            drops,
        };
        // Room is reserved for it (`flush::thread::QUEUE`): this does not wait.
        if self.flush.jobs.send(FlushMsg::Reload(Box::new(msg))).is_err() {
            self.flush_thread_gone = true;
        }
        self.config_text = new.to_toml();
        self.config = new;
        self.active.stats.config_reloads += 1;
        log::info!("configuration reloaded");
    }

    /// Closes the inputs whose endpoint is no longer wanted (their open connections stay).
    fn remove_inputs(&mut self, want: &[Endpoint]) -> io::Result<()> {
        let registry = self.poll.registry();
        let mut removed = false;
        self.dgram.retain_mut(|d| {
            let keep = want.contains(&d.endpoint);
            if !keep {
                removed = true;
                log::info!("reload: closing {}", d.local);
                let _ = match &mut d.socket {
                    DgramSocket::Udp(s) => registry.deregister(s),
                    DgramSocket::Unix(s, _) => registry.deregister(s),
                };
            }
            keep
        });
        if removed {
            self.retoken_dgram()?;
        }
        let registry = self.poll.registry();
        let before = self.listeners.len();
        self.listeners.retain_mut(|l| {
            let keep = want.contains(&l.endpoint);
            if !keep {
                log::info!("reload: closing {}", l.local);
                let _ = match &mut l.socket {
                    ListenerSocket::Tcp(t) => registry.deregister(t),
                    ListenerSocket::Unix(u, _) => registry.deregister(u),
                };
            }
            keep
        });
        if self.listeners.len() != before {
            for (i, l) in self.listeners.iter_mut().enumerate() {
                let token = Token(LISTENER_BASE + i);
                match &mut l.socket {
                    ListenerSocket::Tcp(t) => registry.reregister(t, token, Interest::READABLE)?,
                    ListenerSocket::Unix(u, _) => registry.reregister(u, token, Interest::READABLE)?,
                }
            }
        }
        Ok(())
    }

    // ---- flushing ----

    /// At or after the deadline: swap in the spare and send the full tables, or count an overrun.
    fn try_flush(&mut self, now: Instant) {
        let spare = match self.spare.take() {
            Some(s) => Ok(s),
            None => self.flush.spares.try_recv(),
        };
        match spare {
            Ok(spare) => self.send_flush(spare, now, None),
            Err(TryRecvError::Empty) => {
                if !self.overrun_pending {
                    self.overrun_pending = true;
                    self.overruns += 1;
                    log::warn!(
                        "flush overrun: the previous flush is still running; this interval gets longer"
                    );
                }
            }
            Err(TryRecvError::Disconnected) => {
                if !self.flush_thread_gone {
                    self.flush_thread_gone = true;
                    log::error!("the flush thread has stopped; aggregates are being discarded");
                }
                self.active.clear();
                self.next_flush = now + self.interval;
            }
        }
    }

    /// Hands the active tables to the flush thread and makes `spare` the active one;
    /// `shutdown_by` marks the last flush and when its sinks must be done.
    fn send_flush(&mut self, mut spare: Box<Tables>, now: Instant, shutdown_by: Option<Instant>) {
        if spare.limits() != &self.limits {
            spare.set_limits(self.limits.clone());
        }
        if let Some(d) = &mut self.dump {
            self.active.stats.debug_dump_dropped += d.take_dropped();
        }
        let full = std::mem::replace(&mut self.active, spare);
        let elapsed = now.duration_since(self.last_flush);
        let meta_clock = flush_clock(self.last_clock, self.interval);
        let meta = FlushMeta {
            interval: elapsed.as_secs_f64(),
            clock: meta_clock,
            timestamp_lag_ms: (elapsed.as_secs_f64() - self.interval.as_secs_f64()) * 1e3,
            overruns: std::mem::take(&mut self.overruns),
            kernel_drops: 0,
        };
        // The flush thread gave back the spare, so it is idle, and the channel has room for this
        // job besides every admin question (see `flush::thread::QUEUE`): this send does not wait.
        if self.flush.jobs.send(FlushMsg::Job(FlushJob { tables: full, meta, shutdown_by })).is_err() {
            self.flush_thread_gone = true;
        }
        self.overrun_pending = false;
        self.refusal_logged = false;
        self.error_logged = false;
        self.last_flush = now;
        self.last_clock = meta_clock;
        self.next_flush += self.interval;
        if self.next_flush <= now {
            self.next_flush = now + self.interval;
        }
    }

    /// Waits (at most `shutdown_timeout`) until the flush thread has returned the spare, and
    /// keeps it for the next flush. For tests; the loop itself never waits.
    pub fn wait_for_spare(&mut self) -> bool {
        self.wait_for_spare_until(Instant::now() + self.shutdown_timeout)
    }

    fn wait_for_spare_until(&mut self, deadline: Instant) -> bool {
        if self.spare.is_none() {
            self.spare =
                self.flush.spares.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok();
        }
        self.spare.is_some()
    }

    /// Flushes now, waiting for the spare if needed. Returns false when it did not come back in
    /// time (nothing was flushed).
    pub fn flush_now(&mut self) -> bool {
        self.flush_waiting(Instant::now() + self.shutdown_timeout, None)
    }

    fn flush_waiting(&mut self, deadline: Instant, shutdown_by: Option<Instant>) -> bool {
        match self.wait_for_spare_until(deadline).then(|| self.spare.take()).flatten() {
            Some(spare) => {
                self.send_flush(spare, Instant::now(), shutdown_by);
                true
            }
            None => false,
        }
    }

    /// One budget, `shutdown_timeout`, for the whole exit: reading what the sockets already hold
    /// (at most a quarter of it, so that senders that never stop cannot hold the exit), waiting
    /// for a flush under way, the last flush, and the sinks delivering what they hold.
    fn shutdown(mut self) -> io::Result<()> {
        log::info!("stopping: draining sockets and flushing");
        let started = Instant::now();
        let deadline = started + self.shutdown_timeout;
        let reading_until = started + self.shutdown_timeout / 4;
        while self.drain() > 0 && Instant::now() < reading_until {}
        // What stream clients already sent is in the socket buffers: read it.
        let now = Instant::now();
        for slot in 0..self.conns.len() {
            while self.read_data(slot, now).0 && Instant::now() < reading_until {}
        }
        if !self.flush_waiting(deadline, Some(deadline)) {
            log::error!("final flush skipped: the flush thread did not return within the shutdown timeout");
            return Ok(());
        }
        // The flush thread returns the tables once more and then ends, which closes the spare
        // channel: that disconnection is the event to wait for.
        let exit_by = deadline + EXIT_GRACE;
        loop {
            match self.flush.spares.recv_timeout(exit_by.saturating_duration_since(Instant::now())) {
                Ok(_tables) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    log::error!("sinks did not finish within the shutdown timeout; exiting anyway");
                    return Ok(());
                }
            }
        }
        let Server { flush, .. } = self;
        let _ = flush.thread.join();
        Ok(())
    }
}

/// One framed line of a stream connection.
#[inline]
fn stream_line(tables: &mut Tables, buf: &mut LineBuf, obs: &mut dyn Observe, f: Framed<'_>) {
    match f {
        Framed::Line(line) => ingest_stream_line(tables, line, buf, obs),
        Framed::TooLong => count_too_long(tables),
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

/// One received datagram on the normal path (statsd lines, or pystatsd JSON when it starts with
/// `{`). With the debug dump off this is [`ingest_datagram`] itself: the dump costs one
/// predictable branch per datagram (`examples/profile_ingest` measures this function).
#[inline]
pub fn ingest_received(
    tables: &mut Tables,
    datagram: &[u8],
    buf: &mut LineBuf,
    dump: &mut Option<DebugDump>,
) {
    match dump {
        None => ingest_datagram(tables, datagram, buf),
        Some(d) => ingest_dumped(tables, datagram, buf, d),
    }
}

/// The Unix second a flush is stamped with: now, but with a flush interval of a second or more
/// never the same second as the previous flush. The deadlines keep a fixed cadence, so a swap
/// that was late (a loaded machine) can be followed by an on-time one within the same second,
/// and Graphite keeps one point per name and second: the later flush would silently overwrite
/// the earlier (it did, in `tests/graphite.rs` under a loaded CI run). Such a clock is at most a
/// second ahead of the wall clock (over n flushes at a fixed cadence the wall clock's second
/// advances at least n − 1). Shorter intervals (tests, mostly) keep the plain clock, which would
/// otherwise run ahead without bound.
fn flush_clock(last: u64, interval: Duration) -> u64 {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if interval >= Duration::from_secs(1) && now <= last {
        last + 1
    } else {
        now
    }
}

/// The observed path, kept out of line: inlined next to the normal path it doubled the loop's
/// size and LLVM stopped inlining the table lookups into it (+17 % instructions per line in
/// `profile_ingest`).
#[cold]
#[inline(never)]
fn ingest_dumped(tables: &mut Tables, datagram: &[u8], buf: &mut LineBuf, dump: &mut DebugDump) {
    ingest_datagram_observed(tables, datagram, buf, dump);
}

/// A datagram the kernel cut at the buffer size (its complete lines still count, the cut tail
/// is one bad line, `truncated_datagram`), or one from a `json_udp` port.
#[cold]
#[inline(never)]
fn ingest_unusual(
    tables: &mut Tables,
    datagram: &[u8],
    truncated: bool,
    json: bool,
    buf: &mut LineBuf,
    dump: &mut Option<DebugDump>,
) {
    let mut noop = ();
    let obs: &mut dyn Observe = match dump {
        Some(d) => d,
        None => &mut noop,
    };
    if !truncated {
        return ingest_json_only(tables, datagram, buf, obs);
    }
    tables.stats.packets += 1;
    tables.stats.bytes += datagram.len() as u64;
    let complete = memchr::memrchr(b'\n', datagram).map_or(0, |i| i + 1);
    let mixed = datagram.first() == Some(&b'{');
    for line in crate::parse::lines(&datagram[..complete]) {
        if json {
            ingest_json_line(tables, line, buf, obs);
        } else if mixed {
            ingest_mixed_line(tables, line, buf, obs);
        } else {
            ingest_line_observed(tables, line, buf, obs);
        }
    }
    tables.stats.metrics += 1;
    tables.stats.count_bad(BadLine::Truncated);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_clocks_never_repeat_a_second_at_intervals_of_a_second_or_more() {
        let now = flush_clock(0, Duration::from_secs(1));
        assert!(now > 1_700_000_000, "the wall clock when nothing was flushed yet");
        assert_eq!(flush_clock(now, Duration::from_secs(1)), now + 1, "the same second: the next one");
        assert_eq!(flush_clock(now, Duration::from_secs(10)), now + 1);
        let fast = Duration::from_millis(50);
        assert!(flush_clock(now + 100, fast) < now + 100, "short intervals keep the wall clock");
    }
}
