//! The delivery engine of every queued network sink (Graphite, Backstop, the Kafka REST Proxy):
//! a queue bounded in bytes ([`queue`]), one worker thread per sink that does all of that sink's
//! network I/O ([`Outbox::start`], thread `kstatsd-<name>`), one backoff ([`backoff`]), one
//! `Retry-After` rule, and one set of figures ([`figures`]). A sink is an encoder on the flush
//! thread that fills payloads and [`Outbox::push`]es them (a mutex held for a few instructions,
//! never a wait on the network), and a [`Deliver`] on the worker thread that makes one attempt
//! at a time and says what came of it ([`Outcome`]).
//!
//! An outcome allows partial success: the deliverer takes out of the payload what the peer took
//! or refused for good (a Kafka record failed on its own, the half of a record split because
//! the proxy found it too large), and what is left is tried again: at once when the attempt made
//! progress, after the backoff when it failed. The engine counts it all and logs failures at most
//! once per 10 s per kind, with a count of what was not logged.
//!
//! The backoff belongs to the peer, not to one payload: after an eviction the next payload still
//! waits its turn. The first answer that shows the peer at work after failed attempts restarts
//! the backoff from its minimum; records that keep failing one by one then grow it again. At
//! shutdown a wait between attempts is cut short once: what is queued is tried again at once,
//! then with the backoff from its minimum and without `Retry-After`, until the deadline; what is
//! left then is counted (`shutdown`) and logged.

pub mod backoff;
pub mod figures;
pub mod queue;
pub mod sink;

pub use backoff::Backoff;
pub use figures::{Dropped, Figures, Spelling};
pub use queue::{FlushTag, Item};
pub use sink::{Encode, Queued};

use super::SinkError;
use backoff::Jitter;
use queue::{Queue, Wait};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// At most one failure message of a kind per this long.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// What one attempt came to. What the peer took or refused for good has been taken out of the
/// payload by the deliverer; what is left in it is attempted again.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Points or records the peer took.
    pub delivered: u64,
    /// The bytes of the request that carried them.
    pub bytes: u64,
    /// Given up for good, by reason, with the peer's words.
    pub dropped: Vec<(Dropped, u64, String)>,
    /// Records sent again after an attempt that got no answer (possible duplicates).
    pub resent: u64,
    /// The attempt failed: what is left waits for the backoff.
    pub retry: Option<Retry>,
    /// The peer answered for what it was sent (it is up), whatever it said: a failed attempt
    /// without this (no answer, 5xx, 429 …) marks it unreachable.
    pub answered: bool,
    /// Worth a (rate-limited) warning, such as a payload split for a peer's size limit.
    pub note: Option<String>,
}

#[derive(Debug)]
pub struct Retry {
    /// Points or records the failed attempt carried.
    pub records: u64,
    pub error: String,
    /// The peer's `Retry-After`.
    pub after: Option<Duration>,
}

impl Outcome {
    pub fn delivered(records: u64, bytes: u64) -> Outcome {
        Outcome { delivered: records, bytes, answered: true, ..Outcome::default() }
    }

    pub fn retry(records: u64, error: String, after: Option<Duration>) -> Outcome {
        Outcome { retry: Some(Retry { records, error, after }), ..Outcome::default() }
    }

    pub fn dropped(why: Dropped, records: u64, error: String) -> Outcome {
        Outcome { dropped: vec![(why, records, error)], answered: true, ..Outcome::default() }
    }
}

/// A sink's way of sending its payloads. Runs on the sink's worker thread only.
pub trait Deliver: Send + 'static {
    type Item: Item;
    /// One attempt at (the head of) `item`, giving up by `deadline` when there is one
    /// (shutdown).
    fn attempt(&mut self, item: &mut Self::Item, deadline: Option<Instant>) -> Outcome;
    /// A new payload is about to be attempted.
    fn begin(&mut self, _item: &Self::Item) {}
}

/// Queue and retry settings.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bound on the bytes of unsent payloads.
    pub queue_bytes: usize,
    pub backoff: Backoff,
}

/// How a sink names itself and its peer in messages and figures.
#[derive(Clone, Debug)]
pub struct Names {
    /// The sink (`graphite`, `kafka`): log prefix, thread `kstatsd-<name>`.
    pub name: &'static str,
    /// The peer as messages show it (`POST http://proxy/topics/t`, `carbon at h:2003`),
    /// without credentials.
    pub peer: String,
    pub spelling: Spelling,
}

/// The queue and its worker thread.
pub struct Outbox<T: Item> {
    queue: Arc<Queue<T>>,
    names: Names,
    worker: Option<JoinHandle<()>>,
}

impl<T: Item> Outbox<T> {
    /// Starts the worker thread `kstatsd-<name>`.
    pub fn start<D: Deliver<Item = T>>(
        names: Names,
        limits: Limits,
        deliver: D,
    ) -> std::io::Result<Outbox<T>> {
        let queue = Arc::new(Queue::new(names.name, limits.queue_bytes, Arc::default()));
        let worker = Worker::new(Arc::clone(&queue), names.clone(), limits.backoff, deliver);
        let worker = std::thread::Builder::new()
            .name(format!("kstatsd-{}", names.name))
            .spawn(move || worker.run())?;
        Ok(Outbox { queue, names, worker: Some(worker) })
    }

    /// The sink's name (`graphite`, `kafka`).
    pub fn name(&self) -> &'static str {
        self.names.name
    }

    /// A spent payload to fill, when there is one (else the sink makes a new one).
    pub fn fresh(&self) -> Option<T> {
        self.queue.fresh()
    }

    /// Gives back a payload that was not pushed.
    pub fn recycle(&self, p: T) {
        self.queue.recycle(p);
    }

    /// Queues a payload for the worker; drops the oldest ones when over the bound.
    pub fn push(&self, p: T) {
        self.queue.push(p);
    }

    pub fn figures(&self) -> &Figures {
        &self.queue.figures
    }

    /// (bytes, payloads) queued, the one in flight included.
    pub fn depth(&self) -> (usize, usize) {
        self.queue.depth()
    }

    /// An error when the worker thread is gone (it panicked).
    pub fn check(&self) -> Result<(), SinkError> {
        match &self.worker {
            Some(w) if w.is_finished() => Err(SinkError::Other(format!(
                "{}: the delivery thread for {} stopped",
                self.names.name, self.names.peer
            ))),
            _ => Ok(()),
        }
    }

    /// Writes the figures as `Sink::meta` pairs.
    pub fn meta(&self, write: &mut dyn FnMut(&'static str, f64)) {
        let (bytes, payloads) = self.queue.depth();
        self.queue.figures.meta(self.names.spelling, Some((bytes as u64, payloads as u64)), write);
    }

    /// Lets the worker deliver what is queued until `deadline`, then counts the rest as dropped
    /// (`shutdown`). Returns an error naming what was not delivered.
    pub fn shutdown(&mut self, deadline: Instant) -> Result<(), SinkError> {
        let (records, payloads) = self.queue.shutdown(deadline);
        if records == 0 && payloads == 0 {
            if let Some(w) = self.worker.take() {
                // It has nothing left and is on its way out.
                let _ = w.join();
            }
            return Ok(());
        }
        let Names { name, peer, spelling } = &self.names;
        Err(SinkError::Other(format!(
            "{name}: {records} {} in {payloads} payloads not delivered to {peer} by the shutdown \
             deadline: dropped ({})",
            spelling.unit(),
            spelling.dropped_key(Dropped::Shutdown)
        )))
    }
}

impl<T: Item> Drop for Outbox<T> {
    fn drop(&mut self) {
        // Without a shutdown (tests, errors at start-up) the worker gives up at once.
        self.queue.abandon();
    }
}

struct Worker<D: Deliver> {
    queue: Arc<Queue<D::Item>>,
    names: Names,
    backoff: Backoff,
    deliver: D,
    /// `shutdown` was seen (the backoff was cut short once; `Retry-After` is no longer waited).
    closing: bool,
    /// The last attempt failed without an answer for what it carried.
    unreachable: bool,
    /// Failed attempts in a row, and no attempt before `not_before`.
    fails: u32,
    not_before: Instant,
    jitter: Jitter,
    log: LogLimit,
    /// Request bytes delivered for the flush `flush_seq` so far.
    flush_seq: u64,
    flush_bytes: u64,
}

impl<D: Deliver> Worker<D> {
    fn new(queue: Arc<Queue<D::Item>>, names: Names, backoff: Backoff, deliver: D) -> Worker<D> {
        Worker {
            queue,
            names,
            backoff,
            deliver,
            closing: false,
            unreachable: false,
            fails: 0,
            not_before: Instant::now(),
            jitter: Jitter::seeded(),
            log: LogLimit::default(),
            flush_seq: 0,
            flush_bytes: 0,
        }
    }

    fn run(mut self) {
        while let Some(p) = self.queue.take() {
            if !self.deliver_one(p) {
                return;
            }
        }
    }

    /// Delivers one payload, or gives it up; `false` when the thread must stop.
    fn deliver_one(&mut self, mut p: D::Item) -> bool {
        let flush = p.flush();
        if flush.seq != self.flush_seq {
            self.flush_seq = flush.seq;
            self.flush_bytes = 0;
        }
        self.deliver.begin(&p);
        loop {
            if p.records() == 0 {
                if flush.last && self.flush_bytes > 0 {
                    self.queue.figures.flush_done(flush.enqueued, self.flush_bytes);
                }
                self.queue.finish(p);
                return true;
            }
            if self.queue.evicted() {
                let why = "the queue is full (max_queue_bytes)".to_string();
                self.give_up(Dropped::QueueFull, p.records() as u64, &why);
                self.queue.finish(p);
                return true;
            }
            if !self.closing && self.queue.closing().is_some() {
                self.closing_now();
            }
            if Instant::now() < self.not_before {
                match self.queue.wait_until(self.not_before, !self.closing) {
                    Wait::Elapsed => {}
                    Wait::Closing => self.closing_now(),
                    Wait::Evicted => continue,
                    Wait::Stop => return false,
                }
            }
            let deadline = self.queue.closing();
            if deadline.is_some_and(|d| Instant::now() >= d) || self.queue.abandoned() {
                return false;
            }
            let outcome = self.deliver.attempt(&mut p, deadline);
            if self.queue.abandoned() {
                return false;
            }
            self.queue.figures.requests.fetch_add(1, Relaxed);
            self.apply(outcome);
            self.queue.update(p.bytes(), p.records());
        }
    }

    /// Counts an outcome, logs it, and sets when the next attempt may start.
    fn apply(&mut self, o: Outcome) {
        let f = &self.queue.figures;
        if o.delivered > 0 {
            f.delivered(o.delivered);
            self.flush_bytes += o.bytes;
        }
        f.resent_after_timeout.fetch_add(o.resent, Relaxed);
        for (why, n, error) in &o.dropped {
            self.give_up(*why, *n, error);
        }
        if let Some(note) = &o.note {
            self.log.note(&self.names, note);
        }
        if o.answered && self.unreachable {
            // The peer is at work again: the backoff grown meanwhile starts from its minimum.
            self.unreachable = false;
            self.fails = 0;
        }
        match o.retry {
            Some(r) => {
                self.queue.figures.retried.fetch_add(r.records, Relaxed);
                self.queue.figures.failure();
                if !o.answered {
                    self.unreachable = true;
                }
                let wait = self.backoff.wait(self.fails, r.after, self.closing, self.jitter.unit());
                self.fails = self.fails.saturating_add(1);
                self.not_before = Instant::now() + wait;
                self.log.failure(&self.names, &r.error, wait);
            }
            None if o.delivered > 0 => {
                self.fails = 0;
                self.log.recovered(self.names.name);
                let full = self.queue.take_unlogged_full();
                if full > 0 {
                    log::warn!(
                        "{}: {full} {} were dropped while the queue was full",
                        self.names.name,
                        self.names.spelling.unit()
                    );
                }
            }
            None => {}
        }
    }

    /// `shutdown` was called: the backoff ends now and starts again from its minimum.
    fn closing_now(&mut self) {
        self.closing = true;
        self.fails = 0;
        if self.not_before > Instant::now() {
            log::info!(
                "{}: shutting down: trying {} again now, not after the backoff",
                self.names.name,
                self.names.peer
            );
            self.not_before = Instant::now();
        }
    }

    fn give_up(&mut self, why: Dropped, n: u64, error: &str) {
        if n == 0 {
            return;
        }
        self.queue.figures.count_drop(why, n);
        self.log.dropped(&self.names, why, n, error);
    }
}

/// Logs the first failed attempt of a streak and the first drop, then at most one message of
/// each kind per `LOG_EVERY`, with a count of those not logged.
#[derive(Default)]
struct LogLimit {
    failures: Every,
    drops: Every,
    notes: Every,
    streak: u64,
}

#[derive(Default)]
struct Every {
    last: Option<Instant>,
    suppressed: u64,
}

impl Every {
    /// `Some(n)`: log now, `n` held back since the last line.
    fn allow(&mut self) -> Option<u64> {
        if self.last.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.suppressed))
    }
}

fn more(n: u64, what: &str) -> String {
    if n > 0 {
        format!(" ({n} more {what} not logged)")
    } else {
        String::new()
    }
}

impl LogLimit {
    fn failure(&mut self, n: &Names, why: &str, retry_in: Duration) {
        self.streak += 1;
        if let Some(held) = self.failures.allow() {
            log::warn!(
                "{}: {}: {why}; retrying in {} ms{}",
                n.name,
                n.peer,
                retry_in.as_millis(),
                more(held, "failures")
            );
        }
    }

    fn dropped(&mut self, n: &Names, why: Dropped, count: u64, error: &str) {
        if let Some(held) = self.drops.allow() {
            log::error!(
                "{}: {}: dropped {count} {} ({}): {error}{}",
                n.name,
                n.peer,
                n.spelling.unit(),
                why.label(),
                more(held, "drops")
            );
        }
    }

    fn note(&mut self, n: &Names, what: &str) {
        if let Some(held) = self.notes.allow() {
            log::warn!("{}: {}: {what}{}", n.name, n.peer, more(held, "such messages"));
        }
    }

    fn recovered(&mut self, name: &str) {
        if self.streak > 0 {
            log::info!("{name}: delivering again after {} failed attempts", self.streak);
            self.streak = 0;
            self.failures = Every::default();
        }
    }
}

/// One serialized flush (or one part of it) for a peer that takes a payload whole or not at
/// all (Graphite, Backstop).
#[derive(Debug)]
pub struct Batch {
    pub bytes: Vec<u8>,
    /// Points (name/value pairs) it carries; 0 once delivered or given up.
    pub points: u64,
    pub flush: FlushTag,
}

impl Item for Batch {
    fn bytes(&self) -> usize {
        self.bytes.len()
    }
    fn records(&self) -> usize {
        self.points as usize
    }
    fn flush(&self) -> FlushTag {
        self.flush
    }
    fn capacity(&self) -> usize {
        self.bytes.capacity()
    }
    fn reset(&mut self) {
        self.bytes.clear();
        self.points = 0;
    }
}

/// What sending a whole batch came to.
#[derive(Debug)]
pub enum Sent {
    Delivered,
    /// Worth trying again (connection refused or lost, timeout, 5xx …); `after` is the peer's
    /// `Retry-After`.
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

/// A peer that takes a batch whole or not at all.
pub trait SendBatch: Send + 'static {
    fn send(&mut self, bytes: &[u8], deadline: Option<Instant>) -> Sent;
}

/// The [`Deliver`] of a [`SendBatch`] peer.
pub struct Whole<S>(pub S);

impl<S: SendBatch> Deliver for Whole<S> {
    type Item = Batch;

    fn attempt(&mut self, b: &mut Batch, deadline: Option<Instant>) -> Outcome {
        match self.0.send(&b.bytes, deadline) {
            Sent::Delivered => Outcome::delivered(std::mem::take(&mut b.points), b.bytes.len() as u64),
            Sent::Retry { error, after } => Outcome::retry(b.points, error, after),
            Sent::Reject { why, error } => Outcome::dropped(why, std::mem::take(&mut b.points), error),
        }
    }
}

impl Batch {
    /// An empty batch of the flush `flush`, reusing a spent one's buffer when there is one.
    pub fn fresh(outbox: &Outbox<Batch>, flush: FlushTag) -> Batch {
        match outbox.fresh() {
            Some(mut b) => {
                b.flush = flush;
                b
            }
            None => Batch { bytes: Vec::new(), points: 0, flush },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Answers from a script, and reports each batch it was given.
    struct Scripted {
        answers: mpsc::Receiver<Sent>,
        seen: mpsc::Sender<Vec<u8>>,
    }

    impl SendBatch for Scripted {
        fn send(&mut self, bytes: &[u8], _deadline: Option<Instant>) -> Sent {
            self.seen.send(bytes.to_vec()).unwrap();
            self.answers.recv().unwrap_or(Sent::Delivered)
        }
    }

    fn outbox(queue_bytes: usize) -> (Outbox<Batch>, mpsc::Sender<Sent>, mpsc::Receiver<Vec<u8>>) {
        let (atx, arx) = mpsc::channel();
        let (stx, srx) = mpsc::channel();
        let limits = Limits {
            queue_bytes,
            backoff: Backoff::new(Duration::from_millis(5), Duration::from_millis(20)),
        };
        let names = Names { name: "test", peer: "the peer".into(), spelling: Spelling::POINTS };
        let ob = Outbox::start(names, limits, Whole(Scripted { answers: arx, seen: stx })).unwrap();
        (ob, atx, srx)
    }

    fn batch(s: &str, points: u64, seq: u64) -> Batch {
        Batch {
            bytes: s.as_bytes().to_vec(),
            points,
            flush: FlushTag { seq, last: true, enqueued: Instant::now() },
        }
    }

    const T: Duration = Duration::from_secs(5);

    fn retry() -> Sent {
        Sent::Retry { error: "down".into(), after: None }
    }

    #[test]
    fn retried_until_delivered_and_rejections_are_dropped() {
        let (mut ob, answer, seen) = outbox(1 << 20);
        answer.send(retry()).unwrap();
        answer.send(retry()).unwrap();
        answer.send(Sent::Delivered).unwrap();
        answer.send(Sent::Reject { why: Dropped::BadRequest, error: "400".into() }).unwrap();
        ob.push(batch("one", 3, 1));
        ob.push(batch("two", 2, 2));
        let got: Vec<Vec<u8>> = (0..4).map(|_| seen.recv_timeout(T).unwrap()).collect();
        assert_eq!(got, [b"one".to_vec(), b"one".to_vec(), b"one".to_vec(), b"two".to_vec()]);
        ob.shutdown(Instant::now() + T).unwrap();
        let f = ob.figures();
        assert_eq!(f.sent.load(Relaxed), 3);
        assert_eq!(f.retried.load(Relaxed), 6, "two failed attempts of three points each");
        assert_eq!((f.dropped(Dropped::BadRequest), f.requests.load(Relaxed)), (2, 4));
        assert!(f.last_flush.load(Relaxed) > 0 && f.last_exception.load(Relaxed) > 0);
        assert_eq!(f.flush_length.load(Relaxed), 3, "the last flush delivered");
    }

    #[test]
    fn the_oldest_are_dropped_past_the_bound_but_the_newest_is_kept() {
        let (mut ob, answer, seen) = outbox(10);
        // The worker takes "aaaa" and is held there until answered.
        ob.push(batch("aaaa", 1, 1));
        assert_eq!(seen.recv_timeout(T).unwrap(), b"aaaa");
        ob.push(batch("bbbbbb", 2, 2)); // 4 in flight + 6 = 10: fits
        ob.push(batch("cccccc", 4, 3)); // "aaaa" (in flight) is evicted, then "bbbbbb"
        ob.push(batch("this one is longer than the bound", 8, 4)); // "cccccc" goes, it stays
        assert_eq!(ob.figures().dropped(Dropped::QueueFull), 6);
        assert_eq!(ob.depth(), (33, 1));
        // The attempt at "aaaa" fails: it was evicted, so it is given up and counted.
        answer.send(retry()).unwrap();
        assert_eq!(seen.recv_timeout(T).unwrap(), b"this one is longer than the bound");
        answer.send(Sent::Delivered).unwrap();
        ob.shutdown(Instant::now() + T).unwrap();
        let f = ob.figures();
        assert_eq!((f.sent.load(Relaxed), f.dropped(Dropped::QueueFull), f.dropped_total()), (8, 7, 7));
    }

    #[test]
    fn shutdown_gives_up_at_the_deadline_and_counts_the_rest() {
        let (mut ob, answer, _seen) = outbox(1 << 20);
        for _ in 0..1000 {
            answer.send(retry()).unwrap();
        }
        ob.push(batch("x", 5, 1));
        ob.push(batch("y", 7, 2));
        let e = ob.shutdown(Instant::now() + Duration::from_millis(150)).unwrap_err();
        assert!(e.to_string().contains("12 points in 2 payloads not delivered to the peer"), "{e}");
        assert!(e.to_string().ends_with("dropped (dropped_shutdown)"), "{e}");
        assert_eq!(ob.figures().dropped(Dropped::Shutdown), 12);
    }

    /// A worker whose deliverer is never called: `apply` is driven by hand.
    fn worker() -> Worker<Whole<Scripted>> {
        let (_atx, arx) = mpsc::channel();
        let (stx, _srx) = mpsc::channel();
        Worker::new(
            Arc::new(Queue::new("test", 1 << 20, Arc::default())),
            Names { name: "test", peer: "the peer".into(), spelling: Spelling::REST },
            Backoff::new(Duration::from_millis(100), Duration::from_secs(3600)),
            Whole(Scripted { answers: arx, seen: stx }),
        )
    }

    #[test]
    fn an_answer_for_the_records_restarts_the_backoff_from_its_minimum() {
        let mut w = worker();
        for _ in 0..12 {
            w.apply(Outcome::retry(2, "HTTP 503".into(), None));
        }
        let grown = w.not_before - Instant::now();
        assert!(grown > Duration::from_secs(100), "after 12 failures the backoff is {grown:?}");
        // A 200 with a retriable per-record failure: the peer is up; the next attempt is soon.
        let partial = || Outcome {
            delivered: 1,
            answered: true,
            retry: Some(Retry { records: 1, error: "50003".into(), after: None }),
            ..Outcome::default()
        };
        w.apply(partial());
        let wait = w.not_before.saturating_duration_since(Instant::now());
        assert!(wait <= Duration::from_millis(100), "the retry waits {wait:?}, not the grown backoff");
        // The same record failing again: the backoff grows from its minimum, it does not spin.
        w.apply(partial());
        let wait = w.not_before.saturating_duration_since(Instant::now());
        assert!(wait <= Duration::from_millis(200), "{wait:?}");
        assert_eq!(w.fails, 2, "the second failure in a row doubles the delay");
        let f = &w.queue.figures;
        assert_eq!((f.sent.load(Relaxed), f.retried.load(Relaxed)), (2, 12 * 2 + 2));
        // A Retry-After longer than the backoff wins; at shutdown it is not waited.
        w.apply(Outcome::retry(1, "429".into(), Some(Duration::from_secs(60))));
        assert!(w.not_before - Instant::now() > Duration::from_secs(59));
        w.closing_now();
        w.apply(Outcome::retry(1, "429".into(), Some(Duration::from_secs(60))));
        assert!(w.not_before - Instant::now() <= Duration::from_millis(100));
    }

    #[test]
    fn buffers_are_reused() {
        let (mut ob, answer, seen) = outbox(1 << 20);
        drop(answer); // every delivery succeeds
        let mut b = Batch::fresh(&ob, FlushTag { seq: 1, last: true, enqueued: Instant::now() });
        b.bytes.reserve(4096);
        b.bytes.extend_from_slice(b"abc");
        b.points = 1;
        let ptr = b.bytes.as_ptr();
        ob.push(b);
        seen.recv_timeout(T).unwrap();
        ob.shutdown(Instant::now() + T).unwrap();
        let again = Batch::fresh(&ob, FlushTag { seq: 2, last: true, enqueued: Instant::now() });
        assert!(again.bytes.is_empty() && again.bytes.capacity() >= 4096);
        assert_eq!(again.bytes.as_ptr(), ptr);
    }
}
