//! The REST Proxy sink's delivery, on its worker thread (`kstatsd-kafka`, run by the engine in
//! [`crate::sink::outbox`]): each attempt frames the first records of a payload into a request
//! body, POSTs it with ureq (one keep-alive connection), reads the answer with simd-json, and
//! decides record by record what happens next; the engine then counts, logs, and waits the
//! backoff or not.
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
//!   connections: the same records again after the engine's backoff (or the `Retry-After` the
//!   proxy gives, when it is longer).
//! - 401/403, 404, 415, 400/422 and anything else: dropped, counted by reason.
//!
//! Only the records that failed are resent; a record is never resent once the proxy took it.
//! Every answer for records (a 2xx, even with failed records, a 413, a per-record answer, a
//! refusal) counts as the proxy at work, for the engine's backoff.
//!
//! Duplicates: a request that got no answer (timed out, or the connection broke after it went
//! out) may still be produced by the proxy, which keeps working on it after the client gave up.
//! Its records are resent (at-least-once) and counted (`records_resent_after_timeout`), but
//! after a timeout every attempt waits `resend_timeout` (minutes, longer than the proxy's own
//! producer gives a record) for its answer, until one is answered: the proxy then answers for
//! itself, delivered or failed, instead of kstatsd stacking one more copy per `timeout`.
//! A per-record failure names the record (its place in the request, size, series or clock) and
//! the proxy's reason.

use super::encode::{split_flat, Framing, Payload, REQUEST_HEAD, REQUEST_TAIL};
use crate::sink::outbox::backoff::MAX_RETRY_AFTER;
use crate::sink::outbox::{Deliver, Dropped, Outcome, Retry};
use std::collections::HashSet;
use std::io::Read;
use std::time::{Duration, Instant};

/// Longest answer read (a 200 for a request of many small records is ~70 bytes per record).
const MAX_ANSWER: u64 = 64 << 20;
pub(crate) struct RestConfig {
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
    /// Which certificate authorities an https proxy may present (see `sink::http::tls`).
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
        reason: Dropped,
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
    Drop(Dropped),
}

pub(crate) struct Rest {
    agent: ureq::Agent,
    cfg: RestConfig,
    body: Vec<u8>,
    answer: Vec<u8>,
    results: Vec<RecordResult>,
    next: Vec<(u32, u32)>,
    /// Records of the payload being delivered whose last attempt got no answer.
    doubt: HashSet<(u32, u32)>,
    /// Attempts in a row that timed out: while above 0, attempts wait `resend_timeout`.
    timeouts: u32,
    /// The request size the proxy accepts, learnt from 413s.
    budget: usize,
}

impl Rest {
    pub fn new(cfg: RestConfig) -> Rest {
        Rest {
            agent: crate::sink::http::agent(cfg.timeout, cfg.tls.clone()),
            budget: cfg.max_request,
            cfg,
            body: Vec::with_capacity(64 << 10),
            answer: Vec::with_capacity(4 << 10),
            results: Vec::new(),
            next: Vec::new(),
            doubt: HashSet::new(),
            timeouts: 0,
        }
    }

    /// What the answer to the attempt that carried the first `n` records of `p` (framed in
    /// `body`, its answer body in `answer`) means for them.
    fn apply(&mut self, p: &mut Payload, n: usize, answer: Answer) -> Outcome {
        match answer {
            Answer::Results { status, otherwise } => {
                let mut o = self.per_record(p, n, otherwise, status);
                if (200..300).contains(&status) || o.delivered > 0 {
                    o.bytes = self.body.len() as u64;
                }
                o
            }
            Answer::TooLarge { why } => {
                let mut o = Outcome { answered: true, ..Outcome::default() };
                if n > 1 {
                    self.budget = (self.body.len() / 2).max(1);
                    o.note = Some(format!(
                        "{why} for {n} records in {} bytes: sending at most {} bytes a request",
                        self.body.len(),
                        self.budget
                    ));
                } else {
                    let what = describe(p.value(p.records[0]));
                    match split_flat(&mut p.data, p.records[0]) {
                        Some([a, b]) => {
                            p.records.splice(0..1, [a, b]);
                            o.note = Some(format!("{why} for one record ({what}): cut in two"));
                        }
                        None => {
                            let error = format!("{why}: the proxy says the record ({what}) is too large");
                            o.dropped.push((Dropped::TooLarge, 1, error));
                            p.records.remove(0);
                        }
                    }
                }
                o
            }
            Answer::Retry { why, after, in_doubt, timed_out } => {
                if in_doubt {
                    self.doubt.extend(&p.records[..n]);
                }
                if timed_out {
                    self.timeouts = self.timeouts.saturating_add(1);
                }
                Outcome::retry(n as u64, why, after)
            }
            Answer::Drop { reason, why } => {
                p.records.drain(..n);
                Outcome::dropped(reason, n as u64, why)
            }
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
        let after = crate::sink::http::retry_after(&resp).map(|d| d.min(MAX_RETRY_AFTER));
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
    /// are dropped by reason; the first failure of each kind is named (which record, and the
    /// proxy's reason).
    fn per_record(&mut self, p: &mut Payload, n: usize, otherwise: RecordResult, status: u16) -> Outcome {
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
        let mut dropped = [0usize; Dropped::ALL.len()];
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
                    None => dropped[Dropped::TooLarge as usize] += 1,
                },
                RecordResult::Drop(reason) => dropped[reason as usize] += 1,
            }
        }
        self.next.extend_from_slice(&p.records[n..]);
        std::mem::swap(&mut p.records, &mut self.next);
        let [retried, large, refused] = first.map(Option::unwrap_or_default);
        let mut o = Outcome { delivered, answered: true, ..Outcome::default() };
        if split > 0 {
            o.note = Some(format!(
                "HTTP {status}: {large}: {split} records too large for the proxy, each cut in two"
            ));
        }
        for reason in Dropped::ALL.into_iter().filter(|&r| dropped[r as usize] > 0) {
            let why = if reason == Dropped::TooLarge { &large } else { &refused };
            o.dropped.push((reason, dropped[reason as usize] as u64, format!("HTTP {status}: {why}")));
        }
        if retry > 0 {
            let error = format!("HTTP {status}: {retry} records failed with a retriable error ({retried})");
            o.retry = Some(Retry { records: retry as u64, error, after: None });
        }
        o
    }
}

impl Deliver for Rest {
    type Item = Payload;

    fn begin(&mut self, _p: &Payload) {
        self.doubt.clear();
    }

    fn attempt(&mut self, p: &mut Payload, deadline: Option<Instant>) -> Outcome {
        let bound = if self.timeouts > 0 { self.cfg.resend_timeout } else { self.cfg.timeout };
        let timeout = deadline.map_or(bound, |d| d.saturating_duration_since(Instant::now()).min(bound));
        let n = self.frame(p);
        let mut resent = 0;
        if !self.doubt.is_empty() {
            // This attempt settles the doubt about the records it carries, one way or another.
            resent = p.records[..n].iter().filter(|r| self.doubt.remove(r)).count() as u64;
        }
        let answer = self.post(timeout.max(Duration::from_millis(1)));
        if !matches!(answer, Answer::Retry { timed_out: true, .. }) {
            self.timeouts = 0;
        }
        let mut o = self.apply(p, n, answer);
        o.resent = resent;
        o
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
        (_, Some(50002)) => Answer::Drop { reason: Dropped::Rejected, why },
        (_, Some(50003)) | (408 | 429 | 500 | 502 | 503 | 504, _) => retry(why),
        (401 | 403, _) => Answer::Drop { reason: Dropped::Unauthorized, why },
        (404, _) => Answer::Drop { reason: Dropped::UnknownTopic, why },
        (415, _) => Answer::Drop { reason: Dropped::UnsupportedMediaType, why },
        (400 | 422, _) => Answer::Drop { reason: Dropped::InvalidPayload, why },
        (501 | 505, _) => Answer::Drop { reason: Dropped::HttpError, why },
        (500..=599, _) => retry(why),
        _ => Answer::Drop { reason: Dropped::HttpError, why },
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
        Some(_) => RecordResult::Drop(Dropped::Rejected),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::outbox::FlushTag;

    fn rest() -> Rest {
        let cfg = RestConfig {
            url: "http://127.0.0.1:9/topics/metrics".into(),
            content_type: "application/vnd.kafka.json.v2+json",
            accept: "application/vnd.kafka.v2+json, application/json",
            authorization: None,
            timeout: Duration::from_secs(5),
            resend_timeout: Duration::from_secs(360),
            max_request: 1 << 20,
            framing: Framing::new(Some("h"), false),
            tls: crate::sink::http::tls::tls_config(None),
        };
        Rest::new(cfg)
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
    fn answer(w: &mut Rest, p: &mut Payload, status: u16, body: &str) -> Outcome {
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
        w.apply(p, n, Answer::Results { status, otherwise })
    }

    fn dropped(o: &Outcome, why: Dropped) -> u64 {
        o.dropped.iter().filter(|d| d.0 == why).map(|d| d.1).sum()
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
            (Some(50002), "InvalidRecordException", RecordResult::Drop(Dropped::Rejected)),
            (Some(1), "Unknown error", RecordResult::Drop(Dropped::Rejected)),
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
        assert_eq!(drop(500, Some(50002)), Some(Dropped::Rejected));
        assert_eq!(drop(500, Some(50003)), None);
        assert_eq!(drop(422, Some(42205)), Some(Dropped::InvalidPayload));
        let karapace_413 =
            request_answer(413, Some(413), Some("HTTP Request Entity Too Large"), String::new(), None);
        assert!(matches!(karapace_413, Answer::TooLarge { .. }));
    }

    #[test]
    fn a_karapace_422_delivers_the_produced_records_and_resends_or_drops_the_others_by_code() {
        let mut w = rest();
        let mut p = payload(&["ok.1", "retry.me", "ok.2", "reject.me", "late"]);
        // Karapace's shape: an entry without error_code for a produced record.
        let o = answer(
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
        let retried = o.retry.as_ref().map(|r| r.records);
        assert_eq!((o.delivered, retried, dropped(&o, Dropped::Rejected)), (2, Some(2), 1));
        assert!(o.answered, "records were delivered: the proxy is up");
        assert_eq!(w.doubt.len(), 1, "Karapace's timed-out record may have been produced");
        // A 422 with fewer entries than records: the status decides for the rest (invalid
        // payload), and the log says which.
        let mut p = payload(&["a", "b"]);
        let o = answer(&mut w, &mut p, 422, r#"{"offsets":[{"offset":9,"partition":0}]}"#);
        assert!(p.records.is_empty() && o.retry.is_none());
        assert_eq!((o.delivered, dropped(&o, Dropped::InvalidPayload)), (1, 1));
        assert!(o.dropped[0].2.contains("no result for records 2 to 2 of 2"), "{:?}", o.dropped);
    }

    #[test]
    fn a_request_that_got_no_answer_is_retried_whole_and_its_records_are_in_doubt() {
        let mut w = rest();
        let mut p = payload(&["x", "y"]);
        let why = "timed out".to_string();
        let o = w.apply(&mut p, 2, Answer::Retry { why, after: None, in_doubt: true, timed_out: true });
        assert!(!o.answered && o.delivered == 0);
        assert_eq!(o.retry.map(|r| r.records), Some(2));
        assert_eq!((w.doubt.len(), w.timeouts, p.records.len()), (2, 1, 2));
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
