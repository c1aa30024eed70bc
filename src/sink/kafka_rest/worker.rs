//! The Kafka sink's delivery thread (`kstatsd-kafka`): takes payloads from the queue in order,
//! frames their records into a request body, POSTs it with ureq (one keep-alive connection),
//! reads the answer with simd-json, and decides record by record what happens next. It is the
//! only thread that does network I/O for this sink, so a slow or dead proxy delays nothing but
//! this thread; the flush thread only ever enqueues.
//!
//! Answers (the Confluent REST Proxy v2 produce contract, and Karapace's variant of it):
//! - A body with `offsets` (every 2xx, and a 4xx/5xx that has them, such as Karapace's 422 when
//!   a record failed): one entry per record, in order. No `error_code`: delivered. 50003 and
//!   the legacy 2: retriable, the record stays for the next attempt. Any code whose message says
//!   the record is too large (Confluent's 50002 `RecordTooLargeException`, Karapace's 1
//!   "…larger than this maximum"): a flat record is cut in two and both halves are sent.
//!   Karapace's 1 for a record that timed out or was cancelled in its producer: retriable (its
//!   outcome is unknown, like a timeout of ours). Any other code (50002, 1, …): dropped. A
//!   record the body has no entry for: delivered after a 2xx, else as the status says.
//! - 413 (or a request-level error saying "too large"): the request is halved (a lone flat
//!   record is cut in two), never resent as is.
//! - 408, 429, 500, 502, 503, 504 (other 5xx but 501/505), 50003, timeouts, refused or broken
//!   connections: the same records again after a capped exponential backoff with jitter, or after
//!   `Retry-After` when the proxy gives one (whichever is longer).
//! - 401/403, 404, 415, 400/422 and anything else: dropped, counted by reason.
//!
//! Only the records that failed are resent; a record is never resent once the proxy took it.
//! The backoff belongs to the proxy, not to one payload: after an eviction the next payload
//! still waits its turn. The first answer that shows the proxy working after failed attempts
//! (a 2xx, even with failed records, a 413, a per-record answer, a refusal) restarts the backoff
//! from `retry_backoff`; records that keep failing one by one then grow it again.
//! At shutdown a wait between attempts is cut short: what is queued is tried again at once, then
//! with the backoff from its minimum and without `Retry-After`, until the shutdown deadline.
//!
//! Duplicates: a request that got no answer (timed out, or the connection broke after it went
//! out) may still be produced by the proxy, which keeps working on it after the client gave up.
//! Its records are resent (at-least-once) and counted (`records_resent_after_timeout`), but
//! after a timeout every attempt waits `resend_timeout` (minutes, longer than the proxy's own
//! producer gives a record) for its answer, until one is answered: the proxy then answers for
//! itself, delivered or failed, instead of kstatsd stacking one more copy per `timeout`.
//! Failures are logged at most once per 10 s, with a count of the rest; a per-record failure
//! names the record (its place in the request, size, series or clock) and the proxy's reason.

use super::encode::{split_flat, Framing, REQUEST_HEAD, REQUEST_TAIL};
use super::queue::{unix_now, DropReason, Payload, Shared, Wait};
use std::collections::HashSet;
use std::io::Read;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest answer read (a 200 for a request of many small records is ~70 bytes per record).
const MAX_ANSWER: u64 = 64 << 20;
/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// At most one failure message per this long.
const LOG_EVERY: Duration = Duration::from_secs(10);

pub(crate) struct WorkerConfig {
    pub url: String,
    pub content_type: &'static str,
    pub accept: &'static str,
    /// `Basic …`, when credentials are set.
    pub authorization: Option<String>,
    pub timeout: Duration,
    /// Bound on each attempt after one timed out, until one is answered.
    pub resend_timeout: Duration,
    pub max_request: usize,
    pub framing: Framing,
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    /// Which certificate authorities an https proxy may present (see `sink::tls`).
    pub tls: ureq::tls::TlsConfig,
}

/// What one request came to.
enum Answer {
    /// A body with per-record results (every 2xx, and a 4xx/5xx with `offsets`); a record it has
    /// no result for comes to `otherwise`.
    Results {
        status: u16,
        otherwise: RecordResult,
    },
    /// 413 or a "too large" error for the whole request.
    TooLarge {
        why: String,
    },
    Retry {
        why: String,
        after: Option<Duration>,
        /// No answer came after the request went out: the proxy may still produce it.
        in_doubt: bool,
        /// It was our timeout that ended the attempt.
        timed_out: bool,
    },
    Drop {
        reason: DropReason,
        why: String,
    },
}

/// One record's result in an answer with `offsets`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RecordResult {
    Delivered,
    /// Sent again; `in_doubt` when the proxy may have produced it anyway.
    Retry {
        in_doubt: bool,
    },
    TooLarge,
    Drop(DropReason),
}

pub(crate) struct Worker {
    shared: Arc<Shared>,
    agent: ureq::Agent,
    cfg: WorkerConfig,
    body: Vec<u8>,
    answer: Vec<u8>,
    results: Vec<RecordResult>,
    next: Vec<(u32, u32)>,
    /// Records of the payload being delivered whose last attempt got no answer.
    doubt: HashSet<(u32, u32)>,
    /// Attempts in a row that timed out: while above 0, attempts wait `resend_timeout`.
    timeouts: u32,
    /// `shutdown` was seen (the backoff was cut short once; `Retry-After` is no longer waited).
    closing: bool,
    /// The last answer was a failed attempt (no answer, 5xx, 429, …), not an answer for records.
    unreachable: bool,
    /// The request size the proxy accepts, learnt from 413s.
    budget: usize,
    /// Consecutive failed attempts, and no attempt before `not_before`.
    fails: u32,
    not_before: Instant,
    rng: u64,
    log: LogLimit,
    /// Request bytes delivered for the flush `flush_seq` so far.
    flush_seq: u64,
    flush_bytes: u64,
}

impl Worker {
    pub fn new(shared: Arc<Shared>, cfg: WorkerConfig) -> Worker {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(cfg.tls.clone())
            .http_status_as_error(false)
            .max_redirects(0)
            // The proxy is addressed directly: HTTP(S)_PROXY variables are not for it.
            .proxy(None)
            .timeout_global(Some(cfg.timeout))
            // A connection that cannot be opened carried nothing: never a reason to wait long.
            .timeout_connect(Some(cfg.timeout))
            .user_agent(concat!("kstatsd/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ std::process::id() as u64;
        Worker {
            shared,
            agent,
            budget: cfg.max_request,
            cfg,
            body: Vec::with_capacity(64 << 10),
            answer: Vec::with_capacity(4 << 10),
            results: Vec::new(),
            next: Vec::new(),
            doubt: HashSet::new(),
            timeouts: 0,
            closing: false,
            unreachable: false,
            fails: 0,
            not_before: Instant::now(),
            rng: seed | 1,
            log: LogLimit::default(),
            flush_seq: 0,
            flush_bytes: 0,
        }
    }

    pub fn run(mut self) {
        while let Some(p) = self.shared.take() {
            if !self.deliver(p) {
                return;
            }
        }
    }

    /// Delivers one payload, or gives it up; `false` when the thread must stop.
    fn deliver(&mut self, mut p: Payload) -> bool {
        if p.flush.seq != self.flush_seq {
            self.flush_seq = p.flush.seq;
            self.flush_bytes = 0;
        }
        self.doubt.clear();
        loop {
            if p.records.is_empty() {
                if p.flush.last && self.flush_bytes > 0 {
                    let s = &self.shared.stats;
                    s.flush_time_ms
                        .store((p.flush.enqueued.elapsed().as_secs_f64() * 1e3).to_bits(), Relaxed);
                    s.flush_length.store(self.flush_bytes, Relaxed);
                }
                self.shared.finish(p);
                return true;
            }
            if self.shared.evicted() {
                self.give_up(DropReason::QueueFull, p.records.len(), "the queue is full (max_queue_bytes)");
                self.shared.finish(p);
                return true;
            }
            if !self.closing && self.shared.closing().is_some() {
                self.closing_now();
            }
            if Instant::now() < self.not_before {
                match self.shared.wait_until(self.not_before, !self.closing) {
                    Wait::Elapsed => {}
                    Wait::Closing => self.closing_now(),
                    Wait::Evicted => continue,
                    Wait::Stop => return false,
                }
            }
            let bound = if self.timeouts > 0 { self.cfg.resend_timeout } else { self.cfg.timeout };
            let timeout = match self.shared.closing() {
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left.min(bound),
                    _ => return false,
                },
                None => bound,
            };
            if self.shared.abandoned() {
                return false;
            }
            let n = self.frame(&p);
            if !self.doubt.is_empty() {
                // This attempt settles the doubt about the records it carries, one way or another.
                let resent = p.records[..n].iter().filter(|r| self.doubt.remove(r)).count();
                self.shared.stats.resent_after_timeout.fetch_add(resent as u64, Relaxed);
            }
            let answer = self.post(timeout);
            if self.shared.abandoned() {
                return false;
            }
            self.shared.stats.requests.fetch_add(1, Relaxed);
            if !matches!(answer, Answer::Retry { timed_out: true, .. }) {
                self.timeouts = 0;
            }
            self.apply(&mut p, n, answer);
            self.shared.update(p.data.len(), p.records.len());
        }
    }

    /// What the answer to the attempt that carried the first `n` records of `p` (framed in
    /// `body`, its answer body in `answer`) means for them, for the figures and for the next
    /// attempt.
    fn apply(&mut self, p: &mut Payload, n: usize, answer: Answer) {
        match answer {
            Answer::Results { status, otherwise } => {
                let (delivered, retry, first) = self.per_record(p, n, otherwise, status);
                if (200..300).contains(&status) || delivered > 0 {
                    self.flush_bytes += self.body.len() as u64;
                    self.shared.stats.last_flush.store(unix_now(), Relaxed);
                }
                // The proxy answered for each record: it is up, whatever it said.
                self.proxy_up();
                if retry > 0 {
                    self.shared.stats.retried.fetch_add(retry as u64, Relaxed);
                    self.failed(
                        &format!("HTTP {status}: {retry} records failed with a retriable error ({first})"),
                        None,
                    );
                } else {
                    self.succeeded();
                }
            }
            Answer::TooLarge { why } => {
                self.proxy_up();
                if n > 1 {
                    self.budget = (self.body.len() / 2).max(1);
                    self.log.split(
                        &self.cfg.url,
                        &format!(
                            "{why} for {n} records in {} bytes: sending at most {} bytes a request",
                            self.body.len(),
                            self.budget
                        ),
                    );
                } else {
                    let what = describe(p.value(p.records[0]));
                    match split_flat(&mut p.data, p.records[0]) {
                        Some([a, b]) => {
                            p.records.splice(0..1, [a, b]);
                            self.log
                                .split(&self.cfg.url, &format!("{why} for one record ({what}): cut in two"));
                        }
                        None => {
                            self.give_up(
                                DropReason::TooLarge,
                                1,
                                &format!("{why}: the proxy says the record ({what}) is too large"),
                            );
                            p.records.remove(0);
                        }
                    }
                }
            }
            Answer::Retry { why, after, in_doubt, timed_out } => {
                if in_doubt {
                    self.doubt.extend(&p.records[..n]);
                }
                if timed_out {
                    self.timeouts = self.timeouts.saturating_add(1);
                }
                self.shared.stats.retried.fetch_add(n as u64, Relaxed);
                self.unreachable = true;
                self.failed(&why, after);
            }
            Answer::Drop { reason, why } => {
                self.proxy_up();
                self.give_up(reason, n, &why);
                p.records.drain(..n);
            }
        }
    }

    /// An answer that shows the proxy at work after it could not be reached or turned the
    /// request away: the backoff grown meanwhile starts again from its minimum (and grows again
    /// if records keep failing one by one).
    fn proxy_up(&mut self) {
        if self.unreachable {
            self.unreachable = false;
            self.fails = 0;
        }
    }

    /// `shutdown` was called: the backoff ends now and starts again from its minimum.
    fn closing_now(&mut self) {
        self.closing = true;
        self.fails = 0;
        if self.not_before > Instant::now() {
            log::info!("kafka: shutting down: trying {} again now, not after the backoff", self.cfg.url);
            self.not_before = Instant::now();
        }
    }

    /// Writes the request for the first records of `p` (as many as fit the budget, at least
    /// one) into `body`; returns how many.
    fn frame(&mut self, p: &Payload) -> usize {
        let b = &mut self.body;
        b.clear();
        b.extend_from_slice(REQUEST_HEAD);
        let mut n = 0;
        for &r in &p.records {
            let enc = self.cfg.framing.encoded_len(r.1 as usize);
            if n > 0 && b.len() + enc + REQUEST_TAIL.len() > self.budget {
                break;
            }
            if n > 0 {
                b.push(b',');
            }
            self.cfg.framing.write(b, p.value(r));
            n += 1;
        }
        b.extend_from_slice(REQUEST_TAIL);
        n
    }

    /// POSTs `body`; the answer body lands in `answer`.
    fn post(&mut self, timeout: Duration) -> Answer {
        let mut req = self
            .agent
            .post(&self.cfg.url)
            .header("Content-Type", self.cfg.content_type)
            .header("Accept", self.cfg.accept);
        if let Some(auth) = &self.cfg.authorization {
            req = req.header("Authorization", auth);
        }
        if timeout != self.cfg.timeout {
            req = req.config().timeout_global(Some(timeout)).build();
        }
        let mut resp = match req.send(&self.body[..]) {
            Ok(r) => r,
            Err(e) => {
                let (in_doubt, timed_out) = unanswered(&e);
                return Answer::Retry { why: transport_error(&e), after: None, in_doubt, timed_out };
            }
        };
        let status = resp.status().as_u16();
        let after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| crate::sink::retry_after::parse(v, std::time::SystemTime::now()))
            .map(|d| d.min(MAX_RETRY_AFTER));
        self.answer.clear();
        let read = resp.body_mut().with_config().limit(MAX_ANSWER).reader().read_to_end(&mut self.answer);
        if let Err(e) = read {
            if (200..300).contains(&status) {
                // The proxy took the request; only its receipt is lost. Resending could
                // duplicate every record: count them delivered.
                log::debug!("kafka: could not read a {status} answer: {e}");
                self.answer.clear();
            } else {
                let why = format!("reading a {status} answer: {e}");
                return Answer::Retry { why, after, in_doubt: false, timed_out: false };
            }
        }
        if (200..300).contains(&status) {
            return Answer::Results { status, otherwise: RecordResult::Delivered };
        }
        if memchr::memmem::find(&self.answer, b"\"offsets\"").is_some() {
            // Per-record results (Karapace's 422): they decide; the status only decides for a
            // record without one.
            let otherwise = match request_answer(status, None, None, format!("HTTP {status}"), None) {
                Answer::Retry { .. } => RecordResult::Retry { in_doubt: false },
                Answer::TooLarge { .. } => RecordResult::TooLarge,
                Answer::Drop { reason, .. } => RecordResult::Drop(reason),
                Answer::Results { otherwise, .. } => otherwise,
            };
            return Answer::Results { status, otherwise };
        }
        let (code, message) = request_error(&mut self.answer);
        let why = match (code, &message) {
            (Some(c), Some(m)) => format!("HTTP {status} (error_code {c}: {m})"),
            (Some(c), None) => format!("HTTP {status} (error_code {c})"),
            _ => format!("HTTP {status}"),
        };
        request_answer(status, code, message.as_deref(), why, after)
    }

    /// Applies an answer with per-record results to the first `n` records of `p`: delivered
    /// ones leave, retriable ones stay (in order), too large flat ones are cut in two, the rest
    /// are dropped by reason. Returns how many were delivered and retried, and the first
    /// failure (which record, and the proxy's reason).
    fn per_record(
        &mut self,
        p: &mut Payload,
        n: usize,
        otherwise: RecordResult,
        status: u16,
    ) -> (u64, usize, String) {
        self.results.clear();
        // The first record of each kind of failure (retried, too large, dropped), for the log.
        let mut first: [Option<String>; 3] = [None, None, None];
        let kind = |r: RecordResult| match r {
            RecordResult::Delivered => None,
            RecordResult::Retry { .. } => Some(0),
            RecordResult::TooLarge => Some(1),
            RecordResult::Drop(_) => Some(2),
        };
        let empty = self.answer.is_empty();
        match simd_json::to_borrowed_value(&mut self.answer) {
            Ok(v) => {
                use simd_json::prelude::*;
                if let Some(offsets) = v.get("offsets").and_then(|o| o.as_array()) {
                    for (i, o) in offsets.iter().take(n).enumerate() {
                        let code = o.get("error_code").and_then(|c| c.as_i64());
                        let error = o.get("error").and_then(|e| e.as_str()).unwrap_or("");
                        let r = classify(code, error);
                        if let Some(k) = kind(r).filter(|&k| first[k].is_none()) {
                            first[k] = Some(format!(
                                "record {} of {n} ({}): error_code {}: {}",
                                i + 1,
                                describe(p.value(p.records[i])),
                                code.unwrap_or(0),
                                error.chars().take(300).collect::<String>()
                            ));
                        }
                        self.results.push(r);
                    }
                }
            }
            Err(_) if empty => {}
            Err(e) => log::debug!("kafka: unreadable {status} answer ({e}): records without a result"),
        }
        if let Some(k) = kind(otherwise).filter(|&k| self.results.len() < n && first[k].is_none()) {
            first[k] = Some(format!("no result for records {} to {n} of {n}", self.results.len() + 1));
        }
        self.results.resize(n, otherwise);
        self.next.clear();
        let (mut delivered, mut retry, mut split) = (0, 0, 0);
        let mut dropped = [0usize; DropReason::ALL.len()];
        for (i, &res) in self.results.iter().enumerate() {
            let r = p.records[i];
            match res {
                RecordResult::Delivered => delivered += 1,
                RecordResult::Retry { in_doubt } => {
                    self.next.push(r);
                    if in_doubt {
                        self.doubt.insert(r);
                    }
                    retry += 1;
                }
                RecordResult::TooLarge => match split_flat(&mut p.data, r) {
                    Some(halves) => {
                        self.next.extend_from_slice(&halves);
                        split += 1;
                    }
                    None => dropped[DropReason::TooLarge as usize] += 1,
                },
                RecordResult::Drop(reason) => dropped[reason as usize] += 1,
            }
        }
        self.next.extend_from_slice(&p.records[n..]);
        std::mem::swap(&mut p.records, &mut self.next);
        self.shared.stats.sent.fetch_add(delivered, Relaxed);
        let [retried, large, refused] = first.map(Option::unwrap_or_default);
        if split > 0 {
            let what =
                format!("HTTP {status}: {large}: {split} records too large for the proxy, each cut in two");
            self.log.split(&self.cfg.url, &what);
        }
        for reason in DropReason::ALL.into_iter().filter(|&r| dropped[r as usize] > 0) {
            let why = if reason == DropReason::TooLarge { &large } else { &refused };
            self.give_up(reason, dropped[reason as usize], &format!("HTTP {status}: {why}"));
        }
        (delivered, retry, retried)
    }

    fn succeeded(&mut self) {
        self.fails = 0;
        self.log.recovered();
    }

    /// A failed attempt: counted, logged (rate-limited), and the next one waits.
    fn failed(&mut self, why: &str, after: Option<Duration>) {
        self.shared.stats.last_exception.store(unix_now(), Relaxed);
        let base = self.cfg.retry_backoff.as_secs_f64() * 2f64.powi(self.fails.min(30) as i32);
        let capped = base.min(self.cfg.retry_backoff_max.as_secs_f64());
        // "Equal jitter": between half and all of the capped delay.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let jitter = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        let mut delay = Duration::from_secs_f64(capped * (0.5 + 0.5 * jitter));
        // At shutdown the budget is what it is: waiting out a long Retry-After would only drop.
        if let Some(a) = after.filter(|_| !self.closing) {
            delay = delay.max(a);
        }
        self.fails = self.fails.saturating_add(1);
        self.not_before = Instant::now() + delay;
        self.log.failure(&self.cfg.url, why, delay);
    }

    fn give_up(&mut self, reason: DropReason, records: usize, why: &str) {
        if records == 0 {
            return;
        }
        self.shared.stats.drop(reason, records);
        self.log.dropped(&self.cfg.url, reason, records, why);
    }
}

/// What a request-level answer (a status without per-record results) means.
fn request_answer(
    status: u16,
    code: Option<i64>,
    message: Option<&str>,
    why: String,
    after: Option<Duration>,
) -> Answer {
    let retry = |why| Answer::Retry { why, after, in_doubt: false, timed_out: false };
    match (status, code) {
        (413, _) => Answer::TooLarge { why },
        _ if message.is_some_and(says_too_large) => Answer::TooLarge { why },
        (_, Some(50002)) => Answer::Drop { reason: DropReason::Rejected, why },
        (_, Some(50003)) | (408 | 429 | 500 | 502 | 503 | 504, _) => retry(why),
        (401 | 403, _) => Answer::Drop { reason: DropReason::Unauthorized, why },
        (404, _) => Answer::Drop { reason: DropReason::UnknownTopic, why },
        (415, _) => Answer::Drop { reason: DropReason::UnsupportedMediaType, why },
        (400 | 422, _) => Answer::Drop { reason: DropReason::InvalidPayload, why },
        (501 | 505, _) => Answer::Drop { reason: DropReason::HttpError, why },
        (500..=599, _) => retry(why),
        _ => Answer::Drop { reason: DropReason::HttpError, why },
    }
}

/// One `offsets` entry's `error_code` and `error`, as Confluent and Karapace use them.
fn classify(code: Option<i64>, error: &str) -> RecordResult {
    match code {
        None | Some(0) => RecordResult::Delivered,
        Some(_) if says_too_large(error) => RecordResult::TooLarge,
        Some(2 | 50003) => RecordResult::Retry { in_doubt: false },
        // Karapace gives its producer's timeouts and cancellations the legacy 1, though its own
        // source calls them retriable; the record may or may not have reached Kafka.
        Some(1) if says_timed_out(error) => RecordResult::Retry { in_doubt: true },
        Some(_) => RecordResult::Drop(DropReason::Rejected),
    }
}

/// Karapace's per-record "timed out waiting to publish message…" and "Publish message
/// cancelled".
fn says_timed_out(error: &str) -> bool {
    let m = error.to_ascii_lowercase();
    m.contains("timed out") || m.contains("cancelled")
}

/// A record in a few words for the log: its size, and its series and clock when it has them
/// (`tagged`: the series name; `flat`: the flush's clock).
fn describe(value: &[u8]) -> String {
    use memchr::memmem;
    let after = |at: usize| &value[at..];
    let name = memmem::find(value, b"\"name\":\"").and_then(|i| {
        let rest = after(i + 8);
        let end = memchr::memchr(b'"', rest)?;
        Some(String::from_utf8_lossy(&rest[..end.min(120)]).into_owned())
    });
    let clock = memmem::rfind(value, b"\"clock\":").and_then(|i| {
        let rest = after(i + 8);
        let end = rest.iter().position(|b| !b.is_ascii_digit()).unwrap_or(rest.len());
        (end > 0).then(|| String::from_utf8_lossy(&rest[..end]).into_owned())
    });
    match (name, clock) {
        (Some(n), Some(c)) => format!("{} bytes, series {n}, clock {c}", value.len()),
        (None, Some(c)) => format!("{} bytes, flush of clock {c}", value.len()),
        (Some(n), None) => format!("{} bytes, series {n}", value.len()),
        (None, None) => format!("{} bytes", value.len()),
    }
}

/// `error_code` and `message` of a request-level error answer, when it is one.
fn request_error(answer: &mut [u8]) -> (Option<i64>, Option<String>) {
    let Ok(v) = simd_json::to_borrowed_value(answer) else { return (None, None) };
    use simd_json::prelude::*;
    let code = v.get("error_code").and_then(|c| c.as_i64());
    let message = v.get("message").and_then(|m| m.as_str()).map(|m| m.chars().take(300).collect());
    (code, message)
}

/// Whether an error message is Kafka's "record too large" (`RecordTooLargeException`: "The
/// message is N bytes when serialized which is larger than …", the broker's "…a message
/// larger than the max message size…", Karapace's "…a message larger than this maximum").
fn says_too_large(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("too large") || m.contains("toolarge") || m.contains("larger than")
}

/// Whether a failed request may have reached the proxy (`in_doubt`: no answer came after it
/// went out), and whether our timeout ended it. A connection that could not be opened carried
/// nothing.
fn unanswered(e: &ureq::Error) -> (bool, bool) {
    use ureq::{Error, Timeout};
    match e {
        Error::Timeout(Timeout::Resolve | Timeout::Connect) => (false, false),
        Error::Timeout(_) => (true, true),
        Error::ConnectionFailed | Error::HostNotFound | Error::BadUri(_) | Error::Tls(_) => (false, false),
        Error::Rustls(_) => (false, false),
        Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => (false, false),
        _ => (true, false),
    }
}

/// A transport error in a few words (the URL in it never holds credentials: they are in a
/// header).
fn transport_error(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(t) => format!("timed out ({t:?})"),
        ureq::Error::Io(io) => format!("{io}"),
        other => format!("{other}"),
    }
}

/// Logs the first failed attempt of a streak and the first drop, then at most one message of
/// each kind per `LOG_EVERY`, with a count of those not logged.
#[derive(Default)]
struct LogLimit {
    failures: Every,
    drops: Every,
    splits: Every,
    streak: u64,
}

#[derive(Default)]
struct Every {
    last: Option<Instant>,
    suppressed: u64,
}

impl Every {
    fn allow(&mut self) -> Option<u64> {
        if self.last.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.suppressed))
    }
}

impl LogLimit {
    fn failure(&mut self, url: &str, why: &str, retry_in: Duration) {
        self.streak += 1;
        if let Some(more) = self.failures.allow() {
            log::warn!(
                "kafka: POST {url}: {why}; retrying in {} ms{}",
                retry_in.as_millis(),
                if more > 0 { format!(" ({more} more failures not logged)") } else { String::new() }
            );
        }
    }

    fn dropped(&mut self, url: &str, reason: DropReason, records: usize, why: &str) {
        if let Some(more) = self.drops.allow() {
            log::error!(
                "kafka: POST {url}: dropped {records} records ({}): {why}{}",
                reason.label(),
                if more > 0 { format!(" ({more} more drops not logged)") } else { String::new() }
            );
        }
    }

    fn split(&mut self, url: &str, what: &str) {
        if let Some(more) = self.splits.allow() {
            log::warn!(
                "kafka: POST {url}: {what}{}",
                if more > 0 { format!(" ({more} more splits not logged)") } else { String::new() }
            );
        }
    }

    fn recovered(&mut self) {
        if self.streak > 0 {
            log::info!("kafka: delivering again after {} failed attempts", self.streak);
            self.streak = 0;
            self.failures = Every::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::kafka_rest::queue::FlushTag;

    fn worker() -> Worker {
        let cfg = WorkerConfig {
            url: "http://127.0.0.1:9/topics/metrics".into(),
            content_type: "application/vnd.kafka.json.v2+json",
            accept: "application/vnd.kafka.v2+json, application/json",
            authorization: None,
            timeout: Duration::from_secs(5),
            resend_timeout: Duration::from_secs(360),
            max_request: 1 << 20,
            framing: Framing::new(Some("h"), false),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(3600),
            tls: crate::sink::tls::tls_config(None),
        };
        Worker::new(Arc::new(Shared::new(1 << 20)), cfg)
    }

    /// A payload of tagged-looking records `a`, `b`, `c`, … in one flush.
    fn payload(names: &[&str]) -> Payload {
        let mut p = Payload {
            data: Vec::new(),
            records: Vec::new(),
            flush: FlushTag { seq: 1, last: true, enqueued: Instant::now() },
        };
        for n in names {
            let start = p.data.len() as u32;
            p.data.extend_from_slice(format!("{{\"name\":\"{n}\",\"clock\":1700000000}}").as_bytes());
            p.records.push((start, p.data.len() as u32 - start));
        }
        p
    }

    fn names(p: &Payload) -> Vec<String> {
        p.records.iter().map(|&r| describe(p.value(r))).collect()
    }

    /// Applies an answer of `status` whose body is `body` to the whole payload.
    fn answer(w: &mut Worker, p: &mut Payload, status: u16, body: &str) {
        w.answer = body.as_bytes().to_vec();
        let otherwise = if (200..300).contains(&status) {
            RecordResult::Delivered
        } else {
            match request_answer(status, None, None, String::new(), None) {
                Answer::Retry { .. } => RecordResult::Retry { in_doubt: false },
                Answer::Drop { reason, .. } => RecordResult::Drop(reason),
                _ => RecordResult::TooLarge,
            }
        };
        let n = p.records.len();
        w.apply(p, n, Answer::Results { status, otherwise });
    }

    #[test]
    fn confluent_and_karapace_codes() {
        let large = "org.apache.kafka.common.errors.RecordTooLargeException: The message is 2000000 bytes \
                     when serialized which is larger than 1048576, which is the value of the \
                     max.request.size configuration.";
        let karapace_large = "The server has a configurable maximum message size to avoid unbounded \
                              memory allocation. This error is thrown if the client attempt to produce a \
                              message larger than this maximum.";
        let cases = [
            (None, "", RecordResult::Delivered),
            (Some(50003), "NotLeaderOrFollowerException", RecordResult::Retry { in_doubt: false }),
            (Some(2), "NOT_LEADER_FOR_PARTITION", RecordResult::Retry { in_doubt: false }),
            (Some(50002), large, RecordResult::TooLarge),
            (Some(1), karapace_large, RecordResult::TooLarge),
            // 50002 is Confluent's generic Kafka error, not "too large".
            (Some(50002), "InvalidRecordException", RecordResult::Drop(DropReason::Rejected)),
            (Some(1), "Unknown error", RecordResult::Drop(DropReason::Rejected)),
            (Some(1), "timed out waiting to publish message", RecordResult::Retry { in_doubt: true }),
            (Some(1), "Publish message cancelled", RecordResult::Retry { in_doubt: true }),
        ];
        for (code, error, want) in cases {
            assert_eq!(classify(code, error), want, "{code:?} {error}");
        }
        let drop = |status, code| match request_answer(status, code, None, String::new(), None) {
            Answer::Drop { reason, .. } => Some(reason),
            _ => None,
        };
        assert_eq!(drop(500, Some(50002)), Some(DropReason::Rejected));
        assert_eq!(drop(500, Some(50003)), None);
        assert_eq!(drop(422, Some(42205)), Some(DropReason::InvalidPayload));
        let karapace_413 =
            request_answer(413, Some(413), Some("HTTP Request Entity Too Large"), String::new(), None);
        assert!(matches!(karapace_413, Answer::TooLarge { .. }));
    }

    #[test]
    fn a_karapace_422_delivers_the_produced_records_and_resends_or_drops_the_others_by_code() {
        let mut w = worker();
        let mut p = payload(&["ok.1", "retry.me", "ok.2", "reject.me", "late"]);
        // Karapace's shape: an entry without error_code for a produced record.
        answer(
            &mut w,
            &mut p,
            422,
            r#"{"key_schema_id":null,"value_schema_id":null,"offsets":[{"offset":7,"partition":0},
               {"error_code":2,"error":"NOT_LEADER_OR_FOLLOWER"},{"offset":8,"partition":1},
               {"error_code":1,"error":"INVALID_RECORD"},{"error_code":1,"error":"timed out waiting to publish message"}]}"#,
        );
        assert_eq!(
            names(&p),
            ["38 bytes, series retry.me, clock 1700000000", "34 bytes, series late, clock 1700000000"]
        );
        let shared = Arc::clone(&w.shared);
        let s = &shared.stats;
        assert_eq!(
            (s.sent.load(Relaxed), s.retried.load(Relaxed), s.dropped(DropReason::Rejected)),
            (2, 2, 1)
        );
        assert!(s.last_flush.load(Relaxed) > 0, "records were delivered");
        assert_eq!(w.doubt.len(), 1, "Karapace's timed-out record may have been produced");
        // A 422 with fewer entries than records: the status decides for the rest (invalid
        // payload), and the log says which.
        let mut p = payload(&["a", "b"]);
        answer(&mut w, &mut p, 422, r#"{"offsets":[{"offset":9,"partition":0}]}"#);
        assert!(p.records.is_empty());
        assert_eq!((s.sent.load(Relaxed), s.dropped(DropReason::InvalidPayload)), (3, 1));
    }

    #[test]
    fn an_answer_for_each_record_restarts_the_backoff_from_its_minimum() {
        let mut w = worker();
        let mut p = payload(&["x", "y"]);
        for _ in 0..12 {
            let why = "HTTP 503".to_string();
            w.apply(&mut p, 2, Answer::Retry { why, after: None, in_doubt: false, timed_out: false });
        }
        let grown = w.not_before - Instant::now();
        assert!(grown > Duration::from_secs(100), "after 12 failures the backoff is {grown:?}");
        // A 200 with a retriable per-record failure: the proxy is up; the next attempt is soon.
        answer(
            &mut w,
            &mut p,
            200,
            r#"{"offsets":[{"partition":0,"offset":1,"error_code":null,"error":null},
               {"partition":null,"offset":null,"error_code":50003,"error":"NotEnoughReplicasException"}]}"#,
        );
        assert_eq!(p.records.len(), 1);
        let wait = w.not_before.saturating_duration_since(Instant::now());
        assert!(wait <= Duration::from_millis(100), "the retry waits {wait:?}, not the grown backoff");
        // The same record failing again: the backoff grows from its minimum, it does not spin.
        let body = r#"{"offsets":[{"partition":null,"offset":null,"error_code":50003,"error":"NotEnoughReplicas"}]}"#;
        answer(&mut w, &mut p, 200, body);
        let wait = w.not_before.saturating_duration_since(Instant::now());
        assert!(wait <= Duration::from_millis(200), "{wait:?}");
        assert_eq!(w.fails, 2, "the second failure in a row doubles the delay");
    }

    #[test]
    fn records_are_described_by_series_or_clock() {
        assert_eq!(
            describe(br#"{"name":"api.lat","type":"timer","tags":{"clock":"x"},"clock":17,"values":{}}"#),
            "77 bytes, series api.lat, clock 17"
        );
        assert_eq!(
            describe(br#"{"gauges":{"a":1},"durationUnit":"milliseconds","clock":1462375597,"rateUnit":"seconds"}"#),
            "88 bytes, flush of clock 1462375597"
        );
        assert_eq!(describe(b"12"), "2 bytes");
    }
}
