//! The bounded queue between the flush thread (which serializes each flush into payloads and
//! pushes them) and the Kafka sink's delivery thread (which pops, sends and retries them), and
//! the figures both sides update. The lock is held for a few pointer moves at a time, never
//! across I/O; neither side ever waits on the other except the delivery thread when it is idle
//! and `shutdown` when it drains.
//!
//! The bound counts the bytes of the record values waiting, plus the payload being delivered.
//! When a push goes over it, the oldest payload goes first: the one being delivered (it is given
//! up after its current attempt, unless that attempt succeeds), then the oldest waiting ones.
//! Every record given up is counted by reason.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Part of one flush, small enough for one request: record values back to back in `data`,
/// `records` the (offset, length) of each one still to deliver, in order.
pub(crate) struct Payload {
    pub data: Vec<u8>,
    pub records: Vec<(u32, u32)>,
    pub flush: FlushTag,
}

/// Which flush a payload belongs to, for `flush_time` / `flush_length`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FlushTag {
    pub seq: u64,
    /// The flush's last payload.
    pub last: bool,
    pub enqueued: Instant,
}

impl Payload {
    pub fn value(&self, r: (u32, u32)) -> &[u8] {
        &self.data[r.0 as usize..(r.0 + r.1) as usize]
    }
}

/// Why records were given up; each has its own meta stat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// `max_queue_bytes` reached: the oldest payload went.
    QueueFull,
    /// A single record over `max_record_bytes` that cannot be split, or the proxy said it is
    /// too large and it cannot be split further.
    TooLarge,
    /// A per-record error that is not retriable (50002 other than "too large", …).
    Rejected,
    /// 401 / 403.
    Unauthorized,
    /// 404 / 40401: the topic does not exist.
    UnknownTopic,
    /// 415.
    UnsupportedMediaType,
    /// 400 / 422.
    InvalidPayload,
    /// Any other answer that is not retriable.
    HttpError,
    /// Still unsent when the shutdown deadline came.
    Shutdown,
}

impl DropReason {
    pub const ALL: [DropReason; 9] = [
        DropReason::QueueFull,
        DropReason::TooLarge,
        DropReason::Rejected,
        DropReason::Unauthorized,
        DropReason::UnknownTopic,
        DropReason::UnsupportedMediaType,
        DropReason::InvalidPayload,
        DropReason::HttpError,
        DropReason::Shutdown,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::TooLarge => "too_large",
            DropReason::Rejected => "rejected",
            DropReason::Unauthorized => "unauthorized",
            DropReason::UnknownTopic => "unknown_topic",
            DropReason::UnsupportedMediaType => "unsupported_media_type",
            DropReason::InvalidPayload => "invalid_payload",
            DropReason::HttpError => "http_error",
            DropReason::Shutdown => "shutdown",
        }
    }

    /// The meta stat: `records_dropped.<label>`.
    pub fn key(self) -> &'static str {
        match self {
            DropReason::QueueFull => "records_dropped.queue_full",
            DropReason::TooLarge => "records_dropped.too_large",
            DropReason::Rejected => "records_dropped.rejected",
            DropReason::Unauthorized => "records_dropped.unauthorized",
            DropReason::UnknownTopic => "records_dropped.unknown_topic",
            DropReason::UnsupportedMediaType => "records_dropped.unsupported_media_type",
            DropReason::InvalidPayload => "records_dropped.invalid_payload",
            DropReason::HttpError => "records_dropped.http_error",
            DropReason::Shutdown => "records_dropped.shutdown",
        }
    }
}

/// Totals since start, updated by both threads, read by `meta()`.
#[derive(Default)]
pub(crate) struct Stats {
    pub sent: AtomicU64,
    pub retried: AtomicU64,
    /// Records sent again after an attempt that carried them got no answer (it timed out, or
    /// the connection broke after the request went out): the proxy may have produced the first
    /// copy too, so each is a possible duplicate.
    pub resent_after_timeout: AtomicU64,
    pub requests: AtomicU64,
    pub dropped: [AtomicU64; DropReason::ALL.len()],
    /// Unix seconds of the last request the proxy accepted.
    pub last_flush: AtomicU64,
    /// Unix seconds of the last failed request or dropped record.
    pub last_exception: AtomicU64,
    /// f64 bits: ms from enqueueing the last delivered flush to its last answer.
    pub flush_time_ms: AtomicU64,
    /// Request bytes the last delivered flush took.
    pub flush_length: AtomicU64,
}

impl Stats {
    pub fn drop(&self, reason: DropReason, records: usize) {
        if records > 0 {
            self.dropped[reason as usize].fetch_add(records as u64, Relaxed);
            self.last_exception.store(unix_now(), Relaxed);
        }
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize].load(Relaxed)
    }
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

struct InFlight {
    bytes: usize,
    records: usize,
    evicted: bool,
}

#[derive(Default)]
struct State {
    items: VecDeque<Payload>,
    /// Bytes of `items`.
    queued: usize,
    inflight: Option<InFlight>,
    /// Set by `shutdown`: drain until then.
    closing: Option<Instant>,
    /// Set when the sink gives up (deadline passed or dropped): the worker exits at once.
    abandoned: bool,
}

impl State {
    fn total(&self) -> usize {
        self.queued + self.inflight.as_ref().filter(|f| !f.evicted).map_or(0, |f| f.bytes)
    }
}

/// A spent payload's `data` and `records`, kept for the next flush.
type Buffers = (Vec<u8>, Vec<(u32, u32)>);

pub(crate) struct Shared {
    state: Mutex<State>,
    /// Wakes the delivery thread: a payload, an eviction, a shutdown.
    wake: Condvar,
    /// Wakes `shutdown`: the queue ran empty.
    idle: Condvar,
    pub stats: Stats,
    max_bytes: usize,
    /// Spent buffers handed back by the delivery thread for the next flush.
    pool: Mutex<Vec<Buffers>>,
}

/// What ended a wait between two attempts.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    Elapsed,
    /// `shutdown` was called: the wait is cut short so that what is queued gets one more
    /// attempt at once, within the shutdown budget.
    Closing,
    /// The payload was evicted: give it up.
    Evicted,
    /// The shutdown deadline passed or the sink gave up: stop.
    Stop,
}

impl Shared {
    pub fn new(max_bytes: usize) -> Shared {
        Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            idle: Condvar::new(),
            stats: Stats::default(),
            max_bytes,
            pool: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Flush thread: queues `p`, then drops the oldest payloads while over the bound.
    pub fn push(&self, p: Payload) {
        let mut st = self.lock();
        st.queued += p.data.len();
        st.items.push_back(p);
        let mut evicted_inflight = false;
        while st.total() > self.max_bytes {
            if let Some(f) = st.inflight.as_mut().filter(|f| !f.evicted) {
                // Counted by the worker once its current attempt is over.
                f.evicted = true;
                evicted_inflight = true;
            } else if let Some(old) = st.items.pop_front() {
                st.queued -= old.data.len();
                self.stats.drop(DropReason::QueueFull, old.records.len());
                self.recycle(old);
            } else {
                break;
            }
        }
        drop(st);
        self.wake.notify_one();
        if evicted_inflight {
            self.wake.notify_all();
        }
    }

    /// Delivery thread: the next payload, waiting for one; `None` when it should stop (the
    /// queue is drained at shutdown, or the sink gave up).
    pub fn take(&self) -> Option<Payload> {
        let mut st = self.lock();
        loop {
            if st.abandoned {
                return None;
            }
            if let Some(p) = st.items.pop_front() {
                st.queued -= p.data.len();
                st.inflight =
                    Some(InFlight { bytes: p.data.len(), records: p.records.len(), evicted: false });
                return Some(p);
            }
            if st.closing.is_some() {
                self.idle.notify_all();
                return None;
            }
            st = self.wake.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Delivery thread: the payload in flight now has `records` left in `bytes`.
    pub fn update(&self, bytes: usize, records: usize) {
        if let Some(f) = self.lock().inflight.as_mut() {
            f.bytes = bytes;
            f.records = records;
        }
    }

    /// Delivery thread: whether the payload in flight was evicted; when it was, it is also
    /// finished (the caller counts its records as dropped).
    pub fn evicted(&self) -> bool {
        let mut st = self.lock();
        let ev = st.inflight.as_ref().is_some_and(|f| f.evicted);
        if ev {
            st.inflight = None;
        }
        ev
    }

    /// Delivery thread: the payload in flight is done; its buffers go back to the pool, before
    /// the queue shows empty (so that a flush that finds it empty finds them there).
    pub fn finish(&self, p: Payload) {
        self.recycle(p);
        let mut st = self.lock();
        st.inflight = None;
        if st.items.is_empty() {
            self.idle.notify_all();
        }
    }

    /// Whether the sink gave up (the delivery thread then stops without counting anything).
    pub fn abandoned(&self) -> bool {
        self.lock().abandoned
    }

    /// The shutdown deadline, once `shutdown` was called.
    pub fn closing(&self) -> Option<Instant> {
        self.lock().closing
    }

    /// Delivery thread: waits until `until`, unless the payload in flight is evicted or the
    /// shutdown deadline passes first; with `cut_at_close`, also ends (`Closing`) as soon as
    /// `shutdown` is called, or at once when it already was.
    pub fn wait_until(&self, until: Instant, cut_at_close: bool) -> Wait {
        let mut st = self.lock();
        loop {
            if st.abandoned {
                return Wait::Stop;
            }
            if st.inflight.as_ref().is_some_and(|f| f.evicted) {
                return Wait::Evicted;
            }
            let now = Instant::now();
            if st.closing.is_some_and(|d| now >= d) {
                return Wait::Stop;
            }
            if cut_at_close && st.closing.is_some() {
                return Wait::Closing;
            }
            if now >= until {
                return Wait::Elapsed;
            }
            let end = st.closing.map_or(until, |d| d.min(until));
            st = self.wake.wait_timeout(st, end - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// (bytes, payloads) waiting, the one in flight included.
    pub fn depth(&self) -> (usize, usize) {
        let st = self.lock();
        let inflight = st.inflight.as_ref().is_some_and(|f| !f.evicted);
        (st.total(), st.items.len() + inflight as usize)
    }

    /// Lets the delivery thread drain until `deadline`; then gives up on what is left, counts
    /// it (`shutdown`) and returns (records, payloads) given up.
    pub fn shutdown(&self, deadline: Instant) -> (usize, usize) {
        let mut st = self.lock();
        st.closing = Some(deadline);
        self.wake.notify_all();
        loop {
            if st.abandoned || (st.items.is_empty() && st.inflight.is_none()) {
                return (0, 0);
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = self.idle.wait_timeout(st, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
        let mut records: usize = st.items.iter().map(|p| p.records.len()).sum();
        let mut payloads = st.items.len();
        if let Some(f) = st.inflight.take() {
            if f.evicted {
                self.stats.drop(DropReason::QueueFull, f.records);
            } else {
                records += f.records;
                payloads += 1;
            }
        }
        st.items.clear();
        st.queued = 0;
        st.abandoned = true;
        self.stats.drop(DropReason::Shutdown, records);
        drop(st);
        self.wake.notify_all();
        (records, payloads)
    }

    /// The sink is going away without a shutdown: the delivery thread stops at once.
    pub fn abandon(&self) {
        self.lock().abandoned = true;
        self.wake.notify_all();
    }

    /// A payload to fill, with buffers from an earlier one when there are any. New buffers
    /// start large enough for a small flush, so that a flush that grows by a few bytes does not
    /// reallocate (`tests/kafka_rest.rs` counts allocations on the flush thread).
    pub fn fresh(&self, flush: FlushTag) -> Payload {
        let pooled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let (data, records) =
            pooled.unwrap_or_else(|| (Vec::with_capacity(64 << 10), Vec::with_capacity(256)));
        Payload { data, records, flush }
    }

    /// Keeps a spent payload's buffers for reuse (up to the queue bound in all).
    pub fn recycle(&self, mut p: Payload) {
        p.data.clear();
        p.records.clear();
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        let held: usize = pool.iter().map(|(d, _)| d.capacity()).sum();
        if pool.len() < 64 && held + p.data.capacity() <= self.max_bytes {
            pool.push((p.data, p.records));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn payload(bytes: usize, records: usize) -> Payload {
        let flush = FlushTag { seq: 0, last: true, enqueued: Instant::now() };
        Payload { data: vec![b'x'; bytes], records: vec![(0, 1); records], flush }
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts_its_records() {
        let q = Shared::new(100);
        q.push(payload(40, 1));
        q.push(payload(40, 2));
        assert_eq!(q.depth(), (80, 2));
        q.push(payload(40, 3));
        assert_eq!(q.depth(), (80, 2));
        assert_eq!(q.stats.dropped(DropReason::QueueFull), 1);
        // The payload in flight is the oldest: it is evicted first, and counted by the worker.
        let p = q.take().unwrap();
        assert_eq!(p.records.len(), 2);
        q.push(payload(40, 4));
        assert_eq!(q.depth(), (80, 2));
        assert_eq!(q.wait_until(Instant::now() + std::time::Duration::from_secs(5), true), Wait::Evicted);
        assert!(q.depth().1 == 2 && q.take().unwrap().records.len() == 3);
    }

    #[test]
    fn shutdown_cuts_a_backoff_wait_short_once_and_the_deadline_ends_the_next() {
        use std::time::Duration;
        let q = Arc::new(Shared::new(1000));
        q.push(payload(10, 1));
        let _inflight = q.take().unwrap();
        let waiter = {
            let q = Arc::clone(&q);
            std::thread::spawn(move || q.wait_until(Instant::now() + Duration::from_secs(3600), true))
        };
        let closer = {
            let q = Arc::clone(&q);
            std::thread::spawn(move || q.shutdown(Instant::now() + Duration::from_millis(300)))
        };
        assert_eq!(waiter.join().unwrap(), Wait::Closing, "an hour's backoff ended by the shutdown");
        // Once seen, the shutdown no longer cuts a wait: the deadline does.
        assert_eq!(q.wait_until(Instant::now() + Duration::from_secs(3600), false), Wait::Stop);
        assert_eq!(closer.join().unwrap(), (1, 1));
    }

    #[test]
    fn shutdown_counts_what_is_left() {
        let q = Shared::new(1000);
        q.push(payload(10, 5));
        q.push(payload(10, 7));
        let _inflight = q.take().unwrap();
        assert_eq!(q.shutdown(Instant::now()), (12, 2));
        assert_eq!(q.stats.dropped(DropReason::Shutdown), 12);
        assert!(q.take().is_none());
    }
}
