//! The Kafka sink's delivery thread (`kstatsd-kafka`): takes payloads from the queue in order,
//! frames their records into a request body, POSTs it with ureq (one keep-alive connection),
//! reads the answer with simd-json, and decides record by record what happens next. It is the
//! only thread that does network I/O for this sink, so a slow or dead proxy delays nothing but
//! this thread; the flush thread only ever enqueues.
//!
//! Answers (Confluent REST Proxy v2 produce contract):
//! - 2xx: one `offsets` entry per record, in order. `error_code` null: delivered. 50003 (and the
//!   legacy 2): retriable, the record stays for the next attempt. 50002 saying the record is too
//!   large: a flat record is cut in two and both halves are sent; anything else: dropped.
//! - 413 (or a request-level 50002 "too large"): the request is halved (a lone flat record is
//!   cut in two), never resent as is.
//! - 408, 429, 500, 502, 503, 504 (other 5xx but 501/505), 50003, timeouts, refused or broken
//!   connections: the same records again after a capped exponential backoff with jitter, or after
//!   `Retry-After` when the proxy gives one (whichever is longer).
//! - 401/403, 404, 415, 400/422 and anything else: dropped, counted by reason.
//!
//! Only the records that failed are resent; a record is never resent once the proxy took it.
//! The backoff belongs to the proxy, not to one payload: after an eviction the next payload
//! still waits its turn. Failures are logged at most once per 10 s, with a count of the rest.

use super::encode::{split_flat, Framing, REQUEST_HEAD, REQUEST_TAIL};
use super::queue::{unix_now, DropReason, Payload, Shared, Wait};
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
    pub max_request: usize,
    pub framing: Framing,
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    /// Which certificate authorities an https proxy may present (see `sink::tls`).
    pub tls: ureq::tls::TlsConfig,
}

/// What one request came to.
enum Answer {
    /// 2xx: the per-record results are in the answer body.
    Accepted,
    /// 413 or a "too large" error for the whole request.
    TooLarge,
    Retry {
        why: String,
        after: Option<Duration>,
    },
    Drop {
        reason: DropReason,
        why: String,
    },
}

/// One record's result in a 200.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RecordResult {
    Delivered,
    Retriable,
    TooLarge,
    Rejected,
}

pub(crate) struct Worker {
    shared: Arc<Shared>,
    agent: ureq::Agent,
    cfg: WorkerConfig,
    body: Vec<u8>,
    answer: Vec<u8>,
    results: Vec<RecordResult>,
    next: Vec<(u32, u32)>,
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
            if Instant::now() < self.not_before {
                match self.shared.wait_until(self.not_before) {
                    Wait::Elapsed => {}
                    Wait::Evicted => continue,
                    Wait::Stop => return false,
                }
            }
            let timeout = match self.shared.closing() {
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left.min(self.cfg.timeout)),
                    _ => return false,
                },
                None => None,
            };
            if self.shared.abandoned() {
                return false;
            }
            let n = self.frame(&p);
            let answer = self.post(timeout);
            if self.shared.abandoned() {
                return false;
            }
            self.shared.stats.requests.fetch_add(1, Relaxed);
            match answer {
                Answer::Accepted => {
                    self.flush_bytes += self.body.len() as u64;
                    self.shared.stats.last_flush.store(unix_now(), Relaxed);
                    let (retry, why) = self.per_record(&mut p, n);
                    if retry > 0 {
                        self.shared.stats.retried.fetch_add(retry as u64, Relaxed);
                        self.failed(&format!("{retry} records failed with a retriable error ({why})"), None);
                    } else {
                        self.succeeded();
                    }
                }
                Answer::TooLarge => {
                    if n > 1 {
                        self.budget = (self.body.len() / 2).max(1);
                    } else {
                        match split_flat(&mut p.data, p.records[0]) {
                            Some([a, b]) => {
                                p.records.splice(0..1, [a, b]);
                            }
                            None => {
                                self.give_up(
                                    DropReason::TooLarge,
                                    1,
                                    "the proxy says the record is too large",
                                );
                                p.records.remove(0);
                            }
                        }
                    }
                }
                Answer::Retry { why, after } => {
                    self.shared.stats.retried.fetch_add(n as u64, Relaxed);
                    self.failed(&why, after);
                }
                Answer::Drop { reason, why } => {
                    self.give_up(reason, n, &why);
                    p.records.drain(..n);
                }
            }
            self.shared.update(p.data.len(), p.records.len());
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
    fn post(&mut self, timeout: Option<Duration>) -> Answer {
        let mut req = self
            .agent
            .post(&self.cfg.url)
            .header("Content-Type", self.cfg.content_type)
            .header("Accept", self.cfg.accept);
        if let Some(auth) = &self.cfg.authorization {
            req = req.header("Authorization", auth);
        }
        if let Some(t) = timeout {
            req = req.config().timeout_global(Some(t)).build();
        }
        let mut resp = match req.send(&self.body[..]) {
            Ok(r) => r,
            Err(e) => return Answer::Retry { why: transport_error(&e), after: None },
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
                return Answer::Retry { why: format!("reading a {status} answer: {e}"), after };
            }
        }
        if (200..300).contains(&status) {
            return Answer::Accepted;
        }
        let (code, message) = request_error(&mut self.answer);
        let why = match (code, &message) {
            (Some(c), Some(m)) => format!("HTTP {status} (error_code {c}: {m})"),
            (Some(c), None) => format!("HTTP {status} (error_code {c})"),
            _ => format!("HTTP {status}"),
        };
        let too_large = message.as_deref().is_some_and(says_too_large);
        match (status, code) {
            (413, _) => Answer::TooLarge,
            (_, Some(50002)) if too_large => Answer::TooLarge,
            (_, Some(50002)) => Answer::Drop { reason: DropReason::Rejected, why },
            (_, Some(50003)) | (408 | 429 | 500 | 502 | 503 | 504, _) => Answer::Retry { why, after },
            (401 | 403, _) => Answer::Drop { reason: DropReason::Unauthorized, why },
            (404, _) => Answer::Drop { reason: DropReason::UnknownTopic, why },
            (415, _) => Answer::Drop { reason: DropReason::UnsupportedMediaType, why },
            (400 | 422, _) => Answer::Drop { reason: DropReason::InvalidPayload, why },
            (501 | 505, _) => Answer::Drop { reason: DropReason::HttpError, why },
            (500..=599, _) => Answer::Retry { why, after },
            _ => Answer::Drop { reason: DropReason::HttpError, why },
        }
    }

    /// Applies a 2xx answer to the first `n` records of `p`: delivered ones leave, retriable
    /// ones stay (in order), too large flat ones are cut in two. Returns how many are retried,
    /// and the first error.
    fn per_record(&mut self, p: &mut Payload, n: usize) -> (usize, String) {
        self.results.clear();
        let mut first_error = None;
        let empty = self.answer.is_empty();
        match simd_json::to_borrowed_value(&mut self.answer) {
            Ok(v) => {
                use simd_json::prelude::*;
                if let Some(offsets) = v.get("offsets").and_then(|o| o.as_array()) {
                    for o in offsets.iter().take(n) {
                        let code = o.get("error_code").and_then(|c| c.as_i64());
                        let error = o.get("error").and_then(|e| e.as_str());
                        let r = match code {
                            None => RecordResult::Delivered,
                            Some(2 | 50003) => RecordResult::Retriable,
                            Some(50002) if error.is_some_and(says_too_large) => RecordResult::TooLarge,
                            Some(_) => RecordResult::Rejected,
                        };
                        if r != RecordResult::Delivered && first_error.is_none() {
                            first_error =
                                Some(format!("error_code {}: {}", code.unwrap_or(0), error.unwrap_or("")));
                        }
                        self.results.push(r);
                    }
                }
            }
            Err(_) if empty => {}
            Err(e) => log::debug!("kafka: unreadable 2xx answer ({e}): records counted as delivered"),
        }
        // A 2xx without a result for a record took it.
        self.results.resize(n, RecordResult::Delivered);
        self.next.clear();
        let (mut delivered, mut retry, mut too_large, mut rejected) = (0, 0, 0, 0);
        for (i, &res) in self.results.iter().enumerate() {
            let r = p.records[i];
            match res {
                RecordResult::Delivered => delivered += 1,
                RecordResult::Retriable => {
                    self.next.push(r);
                    retry += 1;
                }
                RecordResult::TooLarge => match split_flat(&mut p.data, r) {
                    Some(halves) => self.next.extend_from_slice(&halves),
                    None => too_large += 1,
                },
                RecordResult::Rejected => rejected += 1,
            }
        }
        self.next.extend_from_slice(&p.records[n..]);
        std::mem::swap(&mut p.records, &mut self.next);
        self.shared.stats.sent.fetch_add(delivered, Relaxed);
        let why = first_error.unwrap_or_default();
        if too_large > 0 {
            self.give_up(DropReason::TooLarge, too_large, &why);
        }
        if rejected > 0 {
            self.give_up(DropReason::Rejected, rejected, &why);
        }
        (retry, why)
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
        if let Some(a) = after {
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

/// `error_code` and `message` of a request-level error answer, when it is one.
fn request_error(answer: &mut [u8]) -> (Option<i64>, Option<String>) {
    let Ok(v) = simd_json::to_borrowed_value(answer) else { return (None, None) };
    use simd_json::prelude::*;
    let code = v.get("error_code").and_then(|c| c.as_i64());
    let message = v.get("message").and_then(|m| m.as_str()).map(|m| m.chars().take(300).collect());
    (code, message)
}

/// Whether an error message is Kafka's "record too large" (`RecordTooLargeException`: "The
/// message is N bytes when serialized which is larger than …", or the broker's "…a message
/// larger than the max message size…").
fn says_too_large(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("too large") || m.contains("toolarge") || m.contains("larger than")
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

    fn recovered(&mut self) {
        if self.streak > 0 {
            log::info!("kafka: delivering again after {} failed attempts", self.streak);
            self.streak = 0;
            self.failures = Every::default();
        }
    }
}
