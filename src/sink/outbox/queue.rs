//! The bounded queue between the flush thread (which serializes each flush into payloads and
//! pushes them) and a sink's worker thread (which pops, sends and retries them), with the pool
//! of spent payloads the flush thread fills next. The lock is held for a few pointer moves at a
//! time, never across I/O; neither side waits on the other except the worker when it is idle
//! and `shutdown` while the queue drains.
//!
//! The bound counts the bytes of the payloads waiting, plus what is left of the one being
//! delivered. When a push goes over it, the oldest goes first: the one being delivered (given up
//! after its current attempt, unless that attempt succeeds), then the oldest waiting ones; the
//! newest is always kept, so a single flush larger than the bound is still delivered. Every
//! point or record given up is counted (`queue_full`).

use super::figures::{Dropped, Figures};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Which flush a payload belongs to, for `flush_time` / `flush_length`.
#[derive(Clone, Copy, Debug)]
pub struct FlushTag {
    pub seq: u64,
    /// The flush's last payload.
    pub last: bool,
    pub enqueued: Instant,
}

/// What the queue holds: one payload of a sink, part of a flush.
pub trait Item: Send + 'static {
    /// Bytes counted against the bound.
    fn bytes(&self) -> usize;
    /// Points or records still to deliver; the payload is done at 0.
    fn records(&self) -> usize;
    fn flush(&self) -> FlushTag;
    /// Bytes its buffers hold, for the pool's bound.
    fn capacity(&self) -> usize;
    /// Empties it for reuse (keeping its buffers).
    fn reset(&mut self);
}

struct InFlight {
    bytes: usize,
    records: usize,
    evicted: bool,
}

struct State<T> {
    items: VecDeque<T>,
    /// Bytes of `items`.
    queued: usize,
    inflight: Option<InFlight>,
    /// Set by `shutdown`: drain until then.
    closing: Option<Instant>,
    /// Set when the sink gives up (deadline passed or dropped): the worker exits at once.
    abandoned: bool,
    /// Points dropped for a full queue since the last log line about it.
    unlogged_full: u64,
}

impl<T> State<T> {
    fn total(&self) -> usize {
        self.queued + self.inflight.as_ref().filter(|f| !f.evicted).map_or(0, |f| f.bytes)
    }
}

pub struct Queue<T> {
    name: &'static str,
    state: Mutex<State<T>>,
    /// Wakes the worker: a payload, an eviction, a shutdown.
    wake: Condvar,
    /// Wakes `shutdown`: the queue ran empty.
    idle: Condvar,
    pub figures: Arc<Figures>,
    max_bytes: usize,
    /// Spent payloads handed back by the worker for the next flush.
    pool: Mutex<Vec<T>>,
}

/// What ended a wait between two attempts.
#[derive(Debug, PartialEq, Eq)]
pub enum Wait {
    Elapsed,
    /// `shutdown` was called: the wait is cut short so that what is queued gets one more
    /// attempt at once, within the shutdown budget.
    Closing,
    /// The payload in flight was evicted: give it up.
    Evicted,
    /// The shutdown deadline passed or the sink gave up: stop.
    Stop,
}

impl<T: Item> Queue<T> {
    pub fn new(name: &'static str, max_bytes: usize, figures: Arc<Figures>) -> Queue<T> {
        Queue {
            name,
            state: Mutex::new(State {
                items: VecDeque::new(),
                queued: 0,
                inflight: None,
                closing: None,
                abandoned: false,
                unlogged_full: 0,
            }),
            wake: Condvar::new(),
            idle: Condvar::new(),
            figures,
            max_bytes,
            pool: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panicking worker must not take the flush thread down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Flush thread: queues `p`, then drops the oldest payloads while over the bound.
    pub fn push(&self, p: T) {
        let mut st = self.lock();
        st.queued += p.bytes();
        st.items.push_back(p);
        let mut evicted_inflight = false;
        let mut dropped = 0;
        while st.total() > self.max_bytes {
            if let Some(f) = st.inflight.as_mut().filter(|f| !f.evicted) {
                // Counted by the worker once its current attempt is over.
                f.evicted = true;
                evicted_inflight = true;
            } else if st.items.len() > 1 {
                let old = st.items.pop_front().expect("len > 1");
                st.queued -= old.bytes();
                dropped += old.records() as u64;
                self.recycle(old);
            } else {
                break;
            }
        }
        if dropped > 0 {
            self.figures.count_drop(Dropped::QueueFull, dropped);
            if st.unlogged_full == 0 {
                log::warn!(
                    "{}: queue over {} bytes (max_queue_bytes): dropping the oldest payloads (counted as queue_full)",
                    self.name,
                    self.max_bytes
                );
            }
            st.unlogged_full += dropped;
        }
        drop(st);
        if evicted_inflight {
            self.wake.notify_all();
        } else {
            self.wake.notify_one();
        }
    }

    /// Worker: the points dropped for a full queue since this was last asked.
    pub fn take_unlogged_full(&self) -> u64 {
        std::mem::take(&mut self.lock().unlogged_full)
    }

    /// Worker: the next payload, waiting for one; `None` when it should stop (the queue is
    /// drained at shutdown, or the sink gave up).
    pub fn take(&self) -> Option<T> {
        let mut st = self.lock();
        loop {
            if st.abandoned {
                return None;
            }
            if let Some(p) = st.items.pop_front() {
                st.queued -= p.bytes();
                st.inflight = Some(InFlight { bytes: p.bytes(), records: p.records(), evicted: false });
                return Some(p);
            }
            if st.closing.is_some() {
                self.idle.notify_all();
                return None;
            }
            st = self.wake.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Worker: the payload in flight now has `records` left in `bytes`.
    pub fn update(&self, bytes: usize, records: usize) {
        if let Some(f) = self.lock().inflight.as_mut() {
            f.bytes = bytes;
            f.records = records;
        }
    }

    /// Worker: whether the payload in flight was evicted; when it was, it is also finished (the
    /// caller counts what it held as dropped).
    pub fn evicted(&self) -> bool {
        let mut st = self.lock();
        let ev = st.inflight.as_ref().is_some_and(|f| f.evicted);
        if ev {
            st.inflight = None;
        }
        ev
    }

    /// Worker: the payload in flight is done; it goes back to the pool before the queue shows
    /// empty (so that a flush that finds the queue empty finds the buffers there).
    pub fn finish(&self, p: T) {
        self.recycle(p);
        let mut st = self.lock();
        st.inflight = None;
        if st.items.is_empty() {
            self.idle.notify_all();
        }
    }

    /// Whether the sink gave up (the worker then stops without counting anything).
    pub fn abandoned(&self) -> bool {
        self.lock().abandoned
    }

    /// The shutdown deadline, once `shutdown` was called.
    pub fn closing(&self) -> Option<Instant> {
        self.lock().closing
    }

    /// Worker: waits until `until`, unless the payload in flight is evicted or the shutdown
    /// deadline passes first; with `cut_at_close`, also ends (`Closing`) as soon as `shutdown`
    /// is called, or at once when it already was.
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

    /// Lets the worker drain until `deadline`; then gives up on what is left, counts it
    /// (`shutdown`) and returns (points or records, payloads) given up.
    pub fn shutdown(&self, deadline: Instant) -> (u64, usize) {
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
        let mut records: u64 = st.items.iter().map(|p| p.records() as u64).sum();
        let mut payloads = st.items.len();
        if let Some(f) = st.inflight.take() {
            if f.evicted {
                self.figures.count_drop(Dropped::QueueFull, f.records as u64);
            } else {
                records += f.records as u64;
                payloads += 1;
            }
        }
        st.items.clear();
        st.queued = 0;
        st.abandoned = true;
        self.figures.count_drop(Dropped::Shutdown, records);
        drop(st);
        self.wake.notify_all();
        (records, payloads)
    }

    /// The sink is going away without a shutdown: the worker stops at once.
    pub fn abandon(&self) {
        self.lock().abandoned = true;
        self.wake.notify_all();
    }

    /// A spent payload to fill, when the pool has one.
    pub fn fresh(&self) -> Option<T> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    /// Keeps a spent payload for reuse (up to the queue bound in all).
    pub fn recycle(&self, mut p: T) {
        p.reset();
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        let held: usize = pool.iter().map(Item::capacity).sum();
        if pool.len() < 64 && held + p.capacity() <= self.max_bytes {
            pool.push(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    struct P(usize, usize);

    impl Item for P {
        fn bytes(&self) -> usize {
            self.0
        }
        fn records(&self) -> usize {
            self.1
        }
        fn flush(&self) -> FlushTag {
            FlushTag { seq: 0, last: true, enqueued: Instant::now() }
        }
        fn capacity(&self) -> usize {
            self.0
        }
        fn reset(&mut self) {
            self.1 = 0;
        }
    }

    fn queue(max: usize) -> Queue<P> {
        Queue::new("test", max, Arc::default())
    }

    #[test]
    fn a_full_queue_drops_the_oldest_first_and_keeps_the_newest() {
        let q = queue(100);
        q.push(P(40, 1));
        q.push(P(40, 2));
        assert_eq!(q.depth(), (80, 2));
        q.push(P(40, 3));
        assert_eq!(q.depth(), (80, 2));
        assert_eq!(q.figures.dropped(Dropped::QueueFull), 1);
        // The payload in flight is the oldest: it is evicted first, and counted by the worker.
        let p = q.take().unwrap();
        assert_eq!(p.records(), 2);
        q.push(P(40, 4));
        assert_eq!(q.depth(), (80, 2));
        assert_eq!(q.wait_until(Instant::now() + Duration::from_secs(5), true), Wait::Evicted);
        assert!(q.depth().1 == 2 && q.take().unwrap().records() == 3);
        // A payload larger than the bound alone is kept.
        q.push(P(500, 8));
        assert_eq!(q.depth(), (500, 1));
        assert_eq!(q.figures.dropped(Dropped::QueueFull), 1 + 4);
    }

    #[test]
    fn shutdown_cuts_a_backoff_wait_short_once_and_the_deadline_ends_the_next() {
        let q = Arc::new(queue(1000));
        q.push(P(10, 1));
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
        let q = queue(1000);
        q.push(P(10, 5));
        q.push(P(10, 7));
        let _inflight = q.take().unwrap();
        assert_eq!(q.shutdown(Instant::now()), (12, 2));
        assert_eq!(q.figures.dropped(Dropped::Shutdown), 12);
        assert!(q.take().is_none());
    }
}
