//! The ingest loop. Runs on the ingest thread (the main thread, optionally pinned), which owns
//! every socket and the active tables and never waits for anything it does not own.
//!
//! Each turn drains every UDP socket with `recvmmsg` until `WouldBlock` (at most
//! `DRAIN_ROUNDS` batches per socket per turn, so one flooded socket cannot starve another),
//! parses and records every datagram into the active tables, then checks the flush deadline.
//! While traffic flows the loop spins; after `busy_poll` of silence it parks in `epoll_wait`
//! until a socket is readable, a signal arrives, or the next flush is due. At the deadline it
//! swaps the active tables with the spare the flush thread returned and sends the full ones
//! over; if no spare is back yet (a slow sink), it keeps aggregating into the same tables, counts
//! one overrun and retries every turn: the interval just gets longer, and rates use its real
//! length.

use crate::aggregate::{ingest_datagram, ingest_line, Tables};
use crate::config::BusyPoll;
use crate::flush::thread::{FlushHandle, FlushJob};
use crate::flush::FlushMeta;
use crate::net::recvmmsg::Batch;
use crate::parse::{BadLine, LineBuf};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Batches read from one socket before the loop looks at the others and at the clock. Chosen,
/// not tuned yet: 16 × 64 datagrams is about a millisecond of a full socket, short enough for
/// fairness and flush deadlines, long enough that the per-turn bookkeeping is negligible.
const DRAIN_ROUNDS: usize = 16;
const SIGNAL: Token = Token(usize::MAX);

pub struct Server {
    poll: Poll,
    events: Events,
    udp: Vec<UdpSocket>,
    batch: Batch,
    line_buf: LineBuf,
    active: Box<Tables>,
    flush: FlushHandle,
    /// The spare tables when they came back before they were needed (see `wait_for_spare`).
    spare: Option<Box<Tables>>,
    interval: Duration,
    last_flush: Instant,
    next_flush: Instant,
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
}

/// What the caller hands the loop.
pub struct ServerParts {
    pub udp: Vec<UdpSocket>,
    pub recv_batch: usize,
    pub max_datagram: usize,
    pub active: Box<Tables>,
    pub flush: FlushHandle,
    pub interval: Duration,
    pub busy_poll: BusyPoll,
    pub capture_packets: bool,
    /// Set by the SIGTERM/SIGINT handler; `wake` is the read end of the signal pipe.
    pub stop: Arc<AtomicBool>,
    pub wake: mio::net::UnixStream,
    pub shutdown_timeout: Duration,
}

impl Server {
    pub fn new(parts: ServerParts) -> io::Result<Server> {
        let poll = Poll::new()?;
        let mut udp = parts.udp;
        for (i, s) in udp.iter_mut().enumerate() {
            poll.registry().register(s, Token(i), Interest::READABLE)?;
        }
        let mut wake = parts.wake;
        poll.registry().register(&mut wake, SIGNAL, Interest::READABLE)?;
        let now = Instant::now();
        Ok(Server {
            poll,
            events: Events::with_capacity(64),
            udp,
            batch: Batch::new(parts.recv_batch, parts.max_datagram),
            line_buf: LineBuf::default(),
            active: parts.active,
            flush: parts.flush,
            spare: None,
            interval: parts.interval,
            last_flush: now,
            next_flush: now + parts.interval,
            last_data: now,
            overruns: 0,
            overrun_pending: false,
            flush_thread_gone: false,
            busy_poll: parts.busy_poll,
            capture_packets: parts.capture_packets,
            stop: parts.stop,
            _wake: wake,
            shutdown_timeout: parts.shutdown_timeout,
        })
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
    /// Returns the number of datagrams read.
    pub fn turn(&mut self) -> io::Result<usize> {
        let got = self.drain();
        let now = Instant::now();
        if got > 0 {
            self.last_data = now;
        }
        if now >= self.next_flush {
            self.try_flush(now);
        }
        if got == 0 {
            let park = match self.busy_poll {
                BusyPoll::Always => false,
                BusyPoll::For(d) => now.duration_since(self.last_data) >= d,
            };
            if park {
                let timeout = self.next_flush.saturating_duration_since(now);
                match self.poll.poll(&mut self.events, Some(timeout)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            } else {
                std::hint::spin_loop();
            }
        }
        Ok(got)
    }

    /// Reads what is waiting on every socket; returns the number of datagrams.
    fn drain(&mut self) -> usize {
        let mut total = 0;
        for i in 0..self.udp.len() {
            for _ in 0..DRAIN_ROUNDS {
                let (socket, batch) = (&self.udp[i], &mut self.batch);
                let n = match socket.try_io(|| batch.recv(socket)) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        log::error!("udp receive failed: {e}");
                        break;
                    }
                };
                for d in 0..n {
                    let (datagram, truncated) = self.batch.datagram(d);
                    if self.capture_packets {
                        self.active.capture_packet(datagram);
                    }
                    if truncated {
                        ingest_truncated(&mut self.active, datagram, &mut self.line_buf);
                    } else {
                        ingest_datagram(&mut self.active, datagram, &mut self.line_buf);
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

    /// At or after the deadline: swap in the spare and send the full tables, or count an overrun.
    fn try_flush(&mut self, now: Instant) {
        let spare = match self.spare.take() {
            Some(s) => Ok(s),
            None => self.flush.spares.try_recv(),
        };
        match spare {
            Ok(spare) => self.send_flush(spare, now, false),
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

    fn send_flush(&mut self, spare: Box<Tables>, now: Instant, last: bool) {
        let full = std::mem::replace(&mut self.active, spare);
        let elapsed = now.duration_since(self.last_flush);
        let meta = FlushMeta {
            interval: elapsed.as_secs_f64(),
            clock: SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            timestamp_lag_ms: (elapsed.as_secs_f64() - self.interval.as_secs_f64()) * 1e3,
            overruns: std::mem::take(&mut self.overruns),
            kernel_drops: 0,
        };
        // The flush thread gave back the spare, so it is idle: this send does not wait.
        if self.flush.jobs.send(FlushJob { tables: full, meta, last }).is_err() {
            self.flush_thread_gone = true;
        }
        self.overrun_pending = false;
        self.last_flush = now;
        self.next_flush += self.interval;
        if self.next_flush <= now {
            self.next_flush = now + self.interval;
        }
    }

    /// Waits (at most `shutdown_timeout`) until the flush thread has returned the spare, and
    /// keeps it for the next flush. For shutdown and tests; the loop itself never waits.
    pub fn wait_for_spare(&mut self) -> bool {
        if self.spare.is_none() {
            self.spare = self.flush.spares.recv_timeout(self.shutdown_timeout).ok();
        }
        self.spare.is_some()
    }

    /// Flushes now, waiting for the spare if needed. Returns false when it did not come back in
    /// time (nothing was flushed).
    pub fn flush_now(&mut self) -> bool {
        self.flush_waiting(false)
    }

    fn flush_waiting(&mut self, last: bool) -> bool {
        if !self.wait_for_spare() {
            return false;
        }
        let spare = self.spare.take().expect("just checked");
        self.send_flush(spare, Instant::now(), last);
        true
    }

    fn shutdown(mut self) -> io::Result<()> {
        log::info!("stopping: draining sockets and flushing");
        while self.drain() > 0 {}
        if !self.flush_waiting(true) {
            log::error!("final flush skipped: the flush thread did not return within the shutdown timeout");
            return Ok(());
        }
        // The flush thread returns the tables once more and then ends, which closes the spare
        // channel: that disconnection is the event to wait for (sinks get shutdown_timeout, plus
        // a second for the flush itself).
        let deadline = Instant::now() + self.shutdown_timeout + Duration::from_secs(1);
        loop {
            match self.flush.spares.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(_tables) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    log::error!("sinks did not finish within the shutdown timeout; exiting anyway");
                    return Ok(());
                }
            }
        }
        let _ = self.flush.thread.join();
        Ok(())
    }
}

/// A datagram the kernel cut at the buffer size: its complete lines still count, the cut tail
/// is one bad line (`truncated_datagram`).
fn ingest_truncated(tables: &mut Tables, datagram: &[u8], buf: &mut LineBuf) {
    tables.stats.packets += 1;
    tables.stats.bytes += datagram.len() as u64;
    let complete = memchr::memrchr(b'\n', datagram).map_or(0, |i| i + 1);
    for line in crate::parse::lines(&datagram[..complete]) {
        ingest_line(tables, line, buf);
    }
    tables.stats.metrics += 1;
    tables.stats.count_bad(BadLine::Truncated);
}
