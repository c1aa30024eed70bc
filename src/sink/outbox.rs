//! The delivery side shared by the network sinks (Graphite, Backstop): a bounded queue of
//! serialized flushes and one worker thread per sink that does every piece of network I/O.
//!
//! The flush thread only serializes into a buffer taken from this outbox's pool and pushes it
//! ([`Outbox::push`]): that takes a mutex for a few instructions and never waits on the network,
//! so a dead peer never delays the flush thread, the other sinks or ingest. The worker pops the
//! oldest batch and hands it to the sink's [`Deliver`] implementation; a failure puts it back at
//! the head of the queue and waits with a capped exponential backoff (`min_backoff` doubling up
//! to `max_backoff`); a rejection (a peer that says the payload is bad) drops it, counted.
//!
//! The queue is bounded in bytes. When a push takes it over the bound the oldest batches are
//! dropped and counted (`dropped_queue_full`, in points), but the newest is always kept, so a
//! single flush larger than the bound is still delivered. At shutdown the worker keeps
//! delivering until the deadline; what is left then is counted (`dropped_shutdown`) and logged.
//!
//! The figures are totals since start, reported through `Sink::meta` as
//! `stats.statsd.<name>Stats.*`.

use super::SinkError;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Why points were dropped; each has its own meta stat `dropped_<name>`, shown once non-zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// The queue of unsent flushes went over its byte bound (oldest dropped).
    QueueFull,
    /// A line (or a pickle item) longer than the peer accepts.
    TooLong,
    /// A value that is not a finite number (carbon ignores NaN, JSON has no infinity).
    BadValue,
    /// A name the peer cannot take (whitespace or control bytes in a plaintext line).
    BadName,
    /// HTTP 400: the peer refused the payload (never retried).
    BadRequest,
    /// HTTP 401 / 403.
    Unauthorized,
    /// HTTP 404 (Backstop: unknown prefix).
    NotFound,
    /// Any other status that retrying cannot fix (3xx, other 4xx).
    Rejected,
    /// Still queued when the shutdown deadline passed.
    Shutdown,
}

impl Dropped {
    pub const ALL: [Dropped; 9] = [
        Dropped::QueueFull,
        Dropped::TooLong,
        Dropped::BadValue,
        Dropped::BadName,
        Dropped::BadRequest,
        Dropped::Unauthorized,
        Dropped::NotFound,
        Dropped::Rejected,
        Dropped::Shutdown,
    ];

    /// The meta stat name.
    pub fn key(self) -> &'static str {
        match self {
            Dropped::QueueFull => "dropped_queue_full",
            Dropped::TooLong => "dropped_too_long",
            Dropped::BadValue => "dropped_bad_value",
            Dropped::BadName => "dropped_bad_name",
            Dropped::BadRequest => "dropped_bad_request",
            Dropped::Unauthorized => "dropped_unauthorized",
            Dropped::NotFound => "dropped_not_found",
            Dropped::Rejected => "dropped_rejected",
            Dropped::Shutdown => "dropped_shutdown",
        }
    }
}

/// One serialized flush (or one part of it) on its way out.
#[derive(Debug)]
pub struct Batch {
    pub bytes: Vec<u8>,
    /// Points (name/value pairs) it carries.
    pub points: u64,
}

/// What a delivery attempt came to.
#[derive(Debug)]
pub enum Outcome {
    Delivered,
    /// Worth trying again (connection refused or lost, timeout, 5xx …); the message is logged.
    /// `after` asks for at least that long before the next attempt (`Retry-After`).
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// Never worth retrying: the batch is dropped and counted under `why`.
    Reject {
        why: Dropped,
        error: String,
    },
}

/// A sink's way of sending one batch. Runs on the sink's worker thread only.
pub trait Deliver: Send + 'static {
    /// Sends `batch`, giving up by `deadline` when there is one (shutdown).
    fn deliver(&mut self, batch: &Batch, deadline: Option<Instant>) -> Outcome;
}

/// Queue and retry settings.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bound on the bytes of unsent batches.
    pub queue_bytes: usize,
    /// First wait after a failure; it doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
}

/// Buffers kept for reuse; a deeper queue allocates (only while the peer is down).
const POOL: usize = 4;

/// Totals since start, what `Sink::meta` reports.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Figures {
    /// Unix seconds of the last delivery, and of the last failure (etsy's graphiteStats).
    pub last_flush: u64,
    pub last_exception: u64,
    /// The last delivered batch: ms spent sending it, and its bytes.
    pub flush_time_ms: f64,
    pub flush_length: u64,
    /// Points delivered, failed attempts that were retried, points dropped by reason.
    pub sent: u64,
    pub retried: u64,
    pub dropped: [u64; Dropped::ALL.len()],
    pub queued_bytes: u64,
    pub queued_batches: u64,
}

impl Figures {
    pub fn dropped(&self, why: Dropped) -> u64 {
        self.dropped[why as usize]
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

struct State {
    queue: VecDeque<Batch>,
    queued_bytes: usize,
    free: Vec<Vec<u8>>,
    /// Set by `shutdown`: deliver until then, then stop.
    deadline: Option<Instant>,
    /// The worker has exited.
    done: bool,
    figures: Figures,
    /// Failed attempts in a row (for the log: first failure and recovery only).
    failing: u64,
    /// Points dropped for a full queue since the last log line about it.
    unlogged_queue_drops: u64,
}

struct Shared {
    name: &'static str,
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking worker must not take the flush thread down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The queue and its worker thread.
pub struct Outbox {
    shared: Arc<Shared>,
    limits: Limits,
    worker: Option<JoinHandle<()>>,
}

impl Outbox {
    /// Starts the worker thread `kstatsd-<name>`.
    pub fn start(name: &'static str, limits: Limits, deliver: impl Deliver) -> std::io::Result<Outbox> {
        let shared = Arc::new(Shared {
            name,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                queued_bytes: 0,
                free: Vec::new(),
                deadline: None,
                done: false,
                figures: Figures::default(),
                failing: 0,
                unlogged_queue_drops: 0,
            }),
            wake: Condvar::new(),
        });
        let worker = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("kstatsd-{name}"))
                .spawn(move || run(&shared, limits, deliver))?
        };
        Ok(Outbox { shared, limits, worker: Some(worker) })
    }

    /// An empty buffer to serialize the next batch into (a returned one when there is one).
    pub fn buffer(&self) -> Vec<u8> {
        let mut b = self.shared.lock().free.pop().unwrap_or_default();
        b.clear();
        b
    }

    /// Gives back a buffer that was not pushed.
    pub fn recycle(&self, b: Vec<u8>) {
        let mut st = self.shared.lock();
        if st.free.len() < POOL {
            st.free.push(b);
        }
    }

    /// Queues a batch for the worker; drops the oldest ones when over the bound.
    pub fn push(&self, batch: Batch) {
        let mut st = self.shared.lock();
        st.queued_bytes += batch.bytes.len();
        st.queue.push_back(batch);
        enforce_bound(&mut st, self.limits.queue_bytes, self.shared.name);
        drop(st);
        self.shared.wake.notify_all();
    }

    /// Counts points dropped before they were queued (serialization: too long, bad value …).
    pub fn count_drop(&self, why: Dropped, points: u64) {
        if points > 0 {
            self.shared.lock().figures.dropped[why as usize] += points;
        }
    }

    pub fn figures(&self) -> Figures {
        let st = self.shared.lock();
        let mut f = st.figures;
        f.queued_bytes = st.queued_bytes as u64;
        f.queued_batches = st.queue.len() as u64;
        f
    }

    /// Writes the figures as `Sink::meta` pairs.
    pub fn meta(&self, write: &mut dyn FnMut(&'static str, f64)) {
        let f = self.figures();
        write("last_flush", f.last_flush as f64);
        write("last_exception", f.last_exception as f64);
        write("flush_time", f.flush_time_ms);
        write("flush_length", f.flush_length as f64);
        write("sent", f.sent as f64);
        write("retried", f.retried as f64);
        write("dropped", f.dropped_total() as f64);
        for why in Dropped::ALL {
            let n = f.dropped(why);
            if n > 0 {
                write(why.key(), n as f64);
            }
        }
        write("queued_bytes", f.queued_bytes as f64);
        write("queued_flushes", f.queued_batches as f64);
    }

    /// Lets the worker deliver what is queued until `deadline`, then counts the rest as
    /// dropped. Returns an error naming what was not delivered.
    pub fn shutdown(&mut self, deadline: Instant) -> Result<(), SinkError> {
        let name = self.shared.name;
        let mut st = self.shared.lock();
        st.deadline = Some(deadline);
        self.shared.wake.notify_all();
        while !st.done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self.shared.wake.wait_timeout(st, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        let done = st.done;
        let (batches, points) = (st.queue.len(), st.queue.iter().map(|b| b.points).sum::<u64>());
        st.queue.clear();
        st.queued_bytes = 0;
        st.figures.dropped[Dropped::Shutdown as usize] += points;
        drop(st);
        if done {
            if let Some(w) = self.worker.take() {
                let _ = w.join();
            }
        }
        if batches > 0 || !done {
            return Err(SinkError::Other(format!(
                "{name}: {batches} flushes ({points} points) not delivered by the shutdown deadline"
            )));
        }
        Ok(())
    }
}

impl std::ops::Drop for Outbox {
    fn drop(&mut self) {
        // Without a shutdown (tests, errors at start-up) the worker gives up at once.
        let mut st = self.shared.lock();
        if st.deadline.is_none() {
            st.deadline = Some(Instant::now());
        }
        drop(st);
        self.shared.wake.notify_all();
    }
}

fn enforce_bound(st: &mut State, bound: usize, name: &str) {
    while st.queued_bytes > bound && st.queue.len() > 1 {
        let old = st.queue.pop_front().expect("len > 1");
        st.queued_bytes -= old.bytes.len();
        st.figures.dropped[Dropped::QueueFull as usize] += old.points;
        if st.unlogged_queue_drops == 0 {
            log::warn!(
                "{name}: queue of unsent flushes over {bound} bytes: dropping the oldest (counted in {name}Stats.dropped_queue_full)"
            );
        }
        st.unlogged_queue_drops += old.points;
        if st.free.len() < POOL {
            st.free.push(old.bytes);
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The worker: pop the oldest batch, deliver it, retry with backoff, until shut down.
fn run(shared: &Shared, limits: Limits, mut deliver: impl Deliver) {
    let name = shared.name;
    let mut backoff = limits.min_backoff.min(limits.max_backoff);
    let mut st = shared.lock();
    loop {
        let Some(batch) = st.queue.pop_front() else {
            if st.deadline.is_some() {
                break;
            }
            st = shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
            continue;
        };
        st.queued_bytes -= batch.bytes.len();
        let deadline = st.deadline;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            // Out of time: put it back for `shutdown` to count.
            st.queued_bytes += batch.bytes.len();
            st.queue.push_front(batch);
            break;
        }
        drop(st);

        let started = Instant::now();
        let outcome = deliver.deliver(&batch, deadline);
        let took = started.elapsed();

        st = shared.lock();
        match outcome {
            Outcome::Delivered => {
                let f = &mut st.figures;
                f.last_flush = unix_now();
                f.flush_time_ms = took.as_secs_f64() * 1e3;
                f.flush_length = batch.bytes.len() as u64;
                f.sent += batch.points;
                if st.failing > 0 {
                    log::info!("{name}: delivering again after {} failed attempts", st.failing);
                    st.failing = 0;
                }
                if st.unlogged_queue_drops > 0 {
                    log::warn!(
                        "{name}: {} points were dropped while the queue was full",
                        st.unlogged_queue_drops
                    );
                    st.unlogged_queue_drops = 0;
                }
                backoff = limits.min_backoff.min(limits.max_backoff);
                if st.free.len() < POOL {
                    st.free.push(batch.bytes);
                }
            }
            Outcome::Reject { why, error } => {
                st.figures.last_exception = unix_now();
                st.figures.dropped[why as usize] += batch.points;
                log::error!(
                    "{name}: payload refused, {} points dropped (not retried): {error}",
                    batch.points
                );
                if st.free.len() < POOL {
                    st.free.push(batch.bytes);
                }
            }
            Outcome::Retry { error, after } => {
                st.figures.last_exception = unix_now();
                st.figures.retried += 1;
                if st.failing == 0 {
                    log::warn!("{name}: delivery failed, retrying with backoff: {error}");
                } else {
                    log::debug!("{name}: delivery failed again: {error}");
                }
                st.failing += 1;
                st.queued_bytes += batch.bytes.len();
                st.queue.push_front(batch);
                enforce_bound(&mut st, limits.queue_bytes, name);
                // Wait out the backoff; a shutdown does not cut it short, its deadline does.
                let wait = after.map_or(backoff, |a| a.max(backoff)).min(limits.max_backoff.max(backoff));
                let until = Instant::now() + wait;
                loop {
                    let until = st.deadline.map_or(until, |d| d.min(until));
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    st = shared.wake.wait_timeout(st, left).unwrap_or_else(|e| e.into_inner()).0;
                }
                backoff = (backoff * 2).min(limits.max_backoff);
            }
        }
    }
    st.done = true;
    drop(st);
    shared.wake.notify_all();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Answers from a script, and reports each batch it was given.
    struct Scripted {
        answers: mpsc::Receiver<Outcome>,
        seen: mpsc::Sender<Vec<u8>>,
    }

    impl Deliver for Scripted {
        fn deliver(&mut self, batch: &Batch, _deadline: Option<Instant>) -> Outcome {
            self.seen.send(batch.bytes.clone()).unwrap();
            self.answers.recv().unwrap_or(Outcome::Delivered)
        }
    }

    fn outbox(queue_bytes: usize) -> (Outbox, mpsc::Sender<Outcome>, mpsc::Receiver<Vec<u8>>) {
        let (atx, arx) = mpsc::channel();
        let (stx, srx) = mpsc::channel();
        let limits = Limits {
            queue_bytes,
            min_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
        };
        let ob = Outbox::start("test", limits, Scripted { answers: arx, seen: stx }).unwrap();
        (ob, atx, srx)
    }

    fn batch(s: &str, points: u64) -> Batch {
        Batch { bytes: s.as_bytes().to_vec(), points }
    }

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn retried_until_delivered_and_rejections_are_dropped() {
        let (mut ob, answer, seen) = outbox(1 << 20);
        answer.send(Outcome::Retry { error: "down".into(), after: None }).unwrap();
        answer.send(Outcome::Retry { error: "down".into(), after: None }).unwrap();
        answer.send(Outcome::Delivered).unwrap();
        answer.send(Outcome::Reject { why: Dropped::BadRequest, error: "400".into() }).unwrap();
        ob.push(batch("one", 3));
        ob.push(batch("two", 2));
        let got: Vec<Vec<u8>> = (0..4).map(|_| seen.recv_timeout(T).unwrap()).collect();
        assert_eq!(got, [b"one".to_vec(), b"one".to_vec(), b"one".to_vec(), b"two".to_vec()]);
        ob.shutdown(Instant::now() + T).unwrap();
        let f = ob.figures();
        assert_eq!((f.sent, f.retried, f.dropped(Dropped::BadRequest)), (3, 2, 2));
        assert!(f.last_flush > 0 && f.last_exception > 0);
        assert_eq!(f.flush_length, 3);
    }

    #[test]
    fn the_oldest_are_dropped_past_the_bound_but_the_newest_is_kept() {
        let (mut ob, answer, seen) = outbox(10);
        // The worker takes "aaaa" and is held there until answered.
        ob.push(batch("aaaa", 1));
        assert_eq!(seen.recv_timeout(T).unwrap(), b"aaaa");
        ob.push(batch("bbbbbb", 2));
        ob.push(batch("cccccc", 4)); // 12 bytes queued > 10: "bbbbbb" goes
        ob.push(batch("this one is longer than the bound", 8)); // kept alone
        let f = ob.figures();
        assert_eq!(f.dropped(Dropped::QueueFull), 6);
        assert_eq!(f.queued_batches, 1);
        answer.send(Outcome::Retry { error: "x".into(), after: None }).unwrap();
        // "aaaa" goes back to the head: 4 + 33 bytes > 10, so it is the one dropped now.
        assert_eq!(seen.recv_timeout(T).unwrap(), b"this one is longer than the bound");
        answer.send(Outcome::Delivered).unwrap();
        ob.shutdown(Instant::now() + T).unwrap();
        let f = ob.figures();
        assert_eq!((f.sent, f.dropped(Dropped::QueueFull), f.dropped_total()), (8, 7, 7));
    }

    #[test]
    fn shutdown_gives_up_at_the_deadline_and_counts_the_rest() {
        let (mut ob, answer, _seen) = outbox(1 << 20);
        for _ in 0..100 {
            answer.send(Outcome::Retry { error: "down".into(), after: None }).unwrap();
        }
        ob.push(batch("x", 5));
        ob.push(batch("y", 7));
        let started = Instant::now();
        let e = ob.shutdown(Instant::now() + Duration::from_millis(150)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(e.to_string().contains("12 points"), "{e}");
        assert_eq!(ob.figures().dropped(Dropped::Shutdown), 12);
    }

    #[test]
    fn buffers_are_reused() {
        let (mut ob, answer, seen) = outbox(1 << 20);
        drop(answer); // every delivery succeeds
        let mut b = ob.buffer();
        b.reserve(4096);
        b.extend_from_slice(b"abc");
        let ptr = b.as_ptr();
        ob.push(Batch { bytes: b, points: 1 });
        seen.recv_timeout(T).unwrap();
        ob.shutdown(Instant::now() + T).unwrap();
        let again = ob.buffer();
        assert!(again.is_empty() && again.capacity() >= 4096);
        assert_eq!(again.as_ptr(), ptr);
    }
}
