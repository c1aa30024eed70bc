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
//! The rest of the loop is in child modules, all run by the same thread: the flush deadline and
//! the spare tables (`clock`), the datagram sockets and their batch (`inputs`), stream
//! connections (`streams`), the management port's clients (`admin_clients`) and the SIGHUP
//! reload (`reload`). What is read goes to [`crate::ingest`], which parses and records it.

mod admin_clients;
mod clock;
mod inputs;
pub mod reload;
mod streams;

use admin_clients::AdminClients;
use clock::Clock;
use inputs::Inputs;
use streams::{ListenerInput, Role, Streams};

use crate::admin::management as admin;
use crate::aggregate::{Limits, Tables};
use crate::config::Config;
use crate::flush_thread::{FlushHandle, FlushJob, FlushMsg};
use crate::ingest::dump::DebugDump;
use crate::ingest::{self, Format};
use crate::net::config::BusyPoll;
use crate::net::{BoundInput, DgramSocket, InputAddr, ListenerSocket};
use crate::parse::LineBuf;
use crate::sys::RecvBatch;
use mio::{Events, Interest, Poll, Token, Waker};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

pub struct Server {
    poll: Poll,
    events: Events,
    /// (token, readable, writable) of the last poll, copied out of `events`.
    fired: Vec<(Token, bool, bool)>,
    /// The datagram sockets and the batch they are read into.
    inputs: Inputs,
    /// The stream listeners and connections (management-port clients included).
    streams: Streams,
    /// A receive, accept or admin-limit error was logged this interval: the loop logs such
    /// errors once per interval, since one that persists would recur on every turn.
    error_logged: bool,
    line_buf: LineBuf,
    active: Box<Tables>,
    limits: Limits,
    flush: FlushHandle,
    /// The flush deadline, the spare tables and the overruns.
    clock: Clock,
    last_data: Instant,
    flush_thread_gone: bool,
    busy_poll: BusyPoll,
    capture_packets: bool,
    stop: Arc<AtomicBool>,
    /// Registered with `poll` so that a signal ends `epoll_wait`; never read.
    _wake: mio::net::UnixStream,
    shutdown_timeout: Duration,
    dump: Option<DebugDump>,
    waker: Arc<Waker>,
    /// What the management port's clients are answered from.
    admin: AdminClients,
    /// The running configuration (a reload is compared with it).
    config: Config,
    reload: Option<reload::Reloader>,
}

/// What the caller hands the loop.
pub struct ServerParts {
    pub config: Config,
    /// Every bound input (see [`crate::net::bind`]).
    pub inputs: Vec<BoundInput>,
    pub active: Box<Tables>,
    pub flush: FlushHandle,
    pub capture_packets: bool,
    /// Set by the SIGTERM/SIGINT handler; `wake` is the read end of the signal pipe.
    pub stop: Arc<AtomicBool>,
    pub wake: mio::net::UnixStream,
    /// The `health` state, shared with `/healthz`.
    pub health: crate::admin::Health,
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
        let now = Instant::now();
        let mut server = Server {
            poll,
            events: Events::with_capacity(256),
            fired: Vec::with_capacity(256),
            inputs: Inputs::new(RecvBatch::new(s.recv_batch, s.max_datagram)),
            streams: Streams::new(s.max_tcp_connections + admin::MAX_CLIENTS, now),
            error_logged: false,
            line_buf: LineBuf::default(),
            active: parts.active,
            limits: config.aggregate.limits.clone(),
            flush: parts.flush,
            clock: Clock::new(config.aggregate.flush_interval, now),
            last_data: now,
            flush_thread_gone: false,
            busy_poll: s.busy_poll,
            capture_packets: parts.capture_packets,
            stop: parts.stop,
            _wake: wake,
            shutdown_timeout: s.shutdown_timeout,
            dump,
            waker,
            admin: AdminClients::new(parts.health, config.to_toml(), now),
            config,
            reload: None,
        };
        for b in parts.inputs {
            server.add_input(b)?;
        }
        Ok(server)
    }

    /// Takes over one bound input (registering it with the poll).
    fn add_input(&mut self, b: BoundInput) -> io::Result<()> {
        match b {
            BoundInput::Dgram { socket, endpoint, local } => {
                self.inputs.add(self.poll.registry(), socket, endpoint, local)?
            }
            BoundInput::Listener { mut socket, endpoint, local } => {
                let token = Token(LISTENER_BASE + self.streams.listeners.len());
                match &mut socket {
                    ListenerSocket::Tcp(l) => self.poll.registry().register(l, token, Interest::READABLE)?,
                    ListenerSocket::Unix(l, _) => {
                        self.poll.registry().register(l, token, Interest::READABLE)?
                    }
                }
                let admin = matches!(endpoint, InputAddr::Admin(_));
                self.streams.listeners.push(ListenerInput { socket, endpoint, local, admin });
                // A connection may have queued before registration: accept it now.
                self.accept(self.streams.listeners.len() - 1, Instant::now());
            }
        }
        Ok(())
    }

    /// Where each input listens: (what it was configured as, the address or path it bound).
    pub fn local_addrs(&self) -> Vec<(InputAddr, String)> {
        let d = self.inputs.dgram.iter().map(|d| (d.endpoint.clone(), d.local.clone()));
        d.chain(self.streams.listeners.iter().map(|l| (l.endpoint.clone(), l.local.clone()))).collect()
    }

    /// What the current (unflushed) interval counted so far.
    pub fn interval_stats(&self) -> &crate::aggregate::IngestStats {
        &self.active.stats
    }

    /// Lets SIGHUP reload the configuration file (see [`reload`]).
    pub fn enable_reload(&mut self, reloader: reload::Reloader) {
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
        self.inputs.event = false;
        let mut got = self.drain();
        let evented = !self.streams.listeners.is_empty() || self.streams.any_open();
        if evented {
            self.poll_events(Some(Duration::ZERO))?;
        }
        if !self.streams.ready.is_empty() {
            got += self.service_ready();
        }
        let now = Instant::now();
        if got > 0 {
            self.last_data = now;
        }
        if now >= self.clock.next_flush {
            self.try_flush(now);
        }
        if now >= self.streams.next_housekeeping {
            self.housekeeping(now);
        }
        if self.reload.as_ref().is_some_and(|r| r.pending()) {
            self.reload_step();
        }
        // A signal's event may have been taken by this turn's zero-timeout poll, and will not
        // come again: the stop flag (set before the signal pipe is written) is checked here too,
        // or the park would sleep through the signal until the next flush.
        let stopping = self.stop.load(Ordering::Relaxed);
        if got == 0 && self.streams.ready.is_empty() && !self.inputs.event && !stopping {
            let park = match self.busy_poll {
                BusyPoll::Always => false,
                BusyPoll::For(d) => now.duration_since(self.last_data) >= d,
            };
            if park {
                let mut until = self.clock.next_flush;
                if self.streams.any_open() {
                    until = until.min(self.streams.next_housekeeping);
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
        for i in 0..self.inputs.dgram.len() {
            for _ in 0..DRAIN_ROUNDS {
                let (input, batch) = (&self.inputs.dgram[i], &mut self.inputs.batch);
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
                let format = if input.json { Format::Json } else { Format::Statsd };
                let batch = &self.inputs.batch;
                if self.capture_packets {
                    (0..n).for_each(|d| self.active.capture_packet(batch.datagram(d).0));
                }
                let received = (0..n).map(|d| batch.datagram(d));
                ingest::datagrams(&mut self.active, received, format, &mut self.line_buf, &mut self.dump);
                total += n;
                if n < self.inputs.batch.capacity() {
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
                self.inputs.event |= t < LISTENER_BASE;
            } else if t < CONN_BASE {
                if t - LISTENER_BASE < self.streams.listeners.len() {
                    self.accept(t - LISTENER_BASE, now);
                }
            } else {
                let slot = t - CONN_BASE;
                let Some(Some(conn)) = self.streams.conns.get_mut(slot) else { continue };
                match conn.role {
                    Role::Data(_) => {
                        if readable && !conn.queued {
                            conn.queued = true;
                            self.streams.ready.push(slot);
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

    // ---- flushing ----

    /// At or after the deadline: swap in the spare and send the full tables, or count an overrun.
    fn try_flush(&mut self, now: Instant) {
        let spare = match self.clock.spare.take() {
            Some(s) => Ok(s),
            None => self.flush.spares.try_recv(),
        };
        match spare {
            Ok(spare) => self.send_flush(spare, now, None),
            Err(TryRecvError::Empty) => self.clock.overrun(),
            Err(TryRecvError::Disconnected) => {
                if !self.flush_thread_gone {
                    self.flush_thread_gone = true;
                    log::error!("the flush thread has stopped; aggregates are being discarded");
                }
                self.active.clear();
                self.clock.skip(now);
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
        let meta = self.clock.advance(now);
        // The flush thread gave back the spare, so it is idle, and the channel has room for this
        // job besides every admin question (see `flush::thread::QUEUE`): this send does not wait.
        if self.flush.jobs.send(FlushMsg::Job(FlushJob { tables: full, meta, shutdown_by })).is_err() {
            self.flush_thread_gone = true;
        }
        self.streams.refusal_logged = false;
        self.error_logged = false;
    }

    /// Waits (at most `shutdown_timeout`) until the flush thread has returned the spare, and
    /// keeps it for the next flush. For tests; the loop itself never waits.
    pub fn wait_for_spare(&mut self) -> bool {
        self.wait_for_spare_until(Instant::now() + self.shutdown_timeout)
    }

    fn wait_for_spare_until(&mut self, deadline: Instant) -> bool {
        if self.clock.spare.is_none() {
            self.clock.spare =
                self.flush.spares.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok();
        }
        self.clock.spare.is_some()
    }

    /// Flushes now, waiting for the spare if needed. Returns false when it did not come back in
    /// time (nothing was flushed).
    pub fn flush_now(&mut self) -> bool {
        self.flush_waiting(Instant::now() + self.shutdown_timeout, None)
    }

    fn flush_waiting(&mut self, deadline: Instant, shutdown_by: Option<Instant>) -> bool {
        if !self.wait_for_spare_until(deadline) {
            return false;
        }
        let spare = self.clock.spare.take().expect("just checked");
        self.send_flush(spare, Instant::now(), shutdown_by);
        true
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
        for slot in 0..self.streams.conns.len() {
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
