//! The native Kafka sink's delivery side: librdkafka's delivery reports, statistics and log lines
//! land here, on the sink's own polling thread (`kstatsd-kafka-native`, [`poll_loop`]), never on
//! the flush or ingest thread. Each report updates the figures in [`Stats`]; a record the broker
//! found too large is split and produced again from this thread; every other failure is
//! dropped, counted by [`Reason`], and logged at most once per flush interval per reason.

use super::producer::Producer;
use crate::sink::kafka_rest::encode::split_flat;
use crate::sink::outbox::{Dropped, Figures};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer as _, ProducerContext};
use rdkafka::statistics::Statistics;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why records were given up: the engine's one list ([`Dropped`]); each has its own meta stat
/// `records_dropped.<label>`. This sink gives: `queue_full` (librdkafka's queue,
/// `max_queue_bytes`, refused the new record), `too_large` (over `max_record_bytes`, or the
/// broker's limit and not splittable), `unknown_topic`, `unauthorized` (topic or cluster
/// authorization, or SASL authentication), `timeout` (not acknowledged within `timeout`,
/// librdkafka's `message.timeout.ms`), `shutdown`, `fatal` (the producer hit a fatal error, e.g.
/// fenced: what it held was given up when a new producer took over) and `rejected` (any other
/// error the broker or librdkafka gave for a record).
pub type Reason = Dropped;

impl Dropped {
    /// The reason for a librdkafka error code.
    pub fn of(code: RDKafkaErrorCode) -> Reason {
        use RDKafkaErrorCode as C;
        match code {
            C::QueueFull => Reason::QueueFull,
            C::MessageSizeTooLarge => Reason::TooLarge,
            C::UnknownTopic | C::UnknownTopicOrPartition => Reason::UnknownTopic,
            C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::SaslAuthenticationFailed
            | C::Authentication => Reason::Unauthorized,
            C::MessageTimedOut => Reason::Timeout,
            C::PurgeQueue | C::PurgeInflight => Reason::Shutdown,
            C::Fatal | C::ProducerFenced | C::InvalidProducerEpoch => Reason::Fatal,
            _ => Reason::Rejected,
        }
    }
}

/// One flush's records, for `flush_time` / `flush_length`: shared by its records' delivery
/// opaques; the last answer (delivered or not) of a closed flush sets the figures.
pub struct FlushTrack {
    pub enqueued: Instant,
    /// Records produced and not yet answered.
    pub pending: AtomicU64,
    /// Value bytes produced.
    pub bytes: AtomicU64,
    /// Every record of the flush is produced.
    pub closed: AtomicBool,
    done: AtomicBool,
}

impl FlushTrack {
    pub fn new(enqueued: Instant) -> FlushTrack {
        FlushTrack {
            enqueued,
            pending: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            done: AtomicBool::new(false),
        }
    }

    /// Called when the flush closes and after each answer: records the figures once.
    pub fn settle(&self, stats: &Stats) {
        if self.closed.load(Relaxed) && self.pending.load(Relaxed) == 0 && !self.done.swap(true, Relaxed) {
            stats.flush_done(self.enqueued, self.bytes.load(Relaxed));
        }
    }
}

/// Totals since start, read by `meta()`: the engine's figures ([`Figures`]), fed here by
/// librdkafka's delivery reports and statistics instead of the engine's worker.
pub type Stats = Figures;

/// At most one log line per reason (or per librdkafka facility) per flush interval; what was held
/// back is counted into the next line.
pub struct LogLimit {
    every: Duration,
    last: Mutex<HashMap<String, (Instant, u64)>>,
}

impl LogLimit {
    pub fn new(every: Duration) -> LogLimit {
        LogLimit { every, last: Mutex::new(HashMap::new()) }
    }

    /// Whether to log now for `what`, and how many lines were held back since the last one.
    pub fn allow(&self, what: &str) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match last.get_mut(what) {
            Some((at, held)) if now.duration_since(*at) < self.every => {
                *held += 1;
                None
            }
            Some((at, held)) => {
                *at = now;
                Some(std::mem::take(held))
            }
            None => {
                last.insert(what.to_string(), (now, 0));
                Some(0)
            }
        }
    }
}

/// Epoch bumps with no record acknowledged in between after which the producer is taken as
/// refused for good (one bump follows any timed-out record; a broker that lost its producer
/// state makes librdkafka bump several times a second).
const FENCED_AFTER_BUMPS: u64 = 3;

/// librdkafka's context: delivery reports, statistics, logs and errors.
pub struct Context {
    pub stats: Arc<Stats>,
    pub log: LogLimit,
    pub topic: String,
    /// Halves of records the broker found too large, waiting for the polling thread to
    /// produce them (a delivery report cannot produce from inside librdkafka's callback).
    pub resend: Mutex<Vec<(Vec<u8>, Arc<FlushTrack>)>>,
    /// Last `txretries` seen per broker.
    retries: Mutex<HashMap<String, u64>>,
    /// The idempotent producer id and epoch last logged.
    producer_id: Mutex<(i64, i64)>,
    /// This producer has been replaced after a fatal error: what it gives up is `fatal`.
    pub retired: AtomicBool,
    /// The broker no longer accepts this producer's id or epoch (fenced): replace it.
    pub fenced: AtomicBool,
    /// Epoch bumps since the last record acknowledged.
    bumps: AtomicU64,
}

impl Context {
    pub fn new(stats: Arc<Stats>, topic: String, log_every: Duration) -> Context {
        Context {
            stats,
            log: LogLimit::new(log_every),
            topic,
            resend: Mutex::new(Vec::new()),
            retries: Mutex::new(HashMap::new()),
            producer_id: Mutex::new((-1, -1)),
            retired: AtomicBool::new(false),
            fenced: AtomicBool::new(false),
            bumps: AtomicU64::new(0),
        }
    }

    /// Counts and (rate-limited) logs records given up for `reason`.
    pub fn dropped(&self, reason: Reason, records: u64, detail: &dyn std::fmt::Display) {
        self.stats.count_drop(reason, records);
        if let Some(held) = self.log.allow(reason.record_key()) {
            let more = if held > 0 {
                format!(" ({held} more such reports since the last line)")
            } else {
                String::new()
            };
            log::warn!(
                "kafka (native): {records} records for topic {} dropped ({}): {detail}{more}",
                self.topic,
                reason.record_key()
            );
        }
    }
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let level = match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => log::Level::Error,
            RDKafkaLogLevel::Warning => log::Level::Warn,
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => log::Level::Info,
            RDKafkaLogLevel::Debug => log::Level::Debug,
        };
        if log::log_enabled!(level) {
            if let Some(held) = self.log.allow(fac) {
                let more =
                    if held > 0 { format!(" ({held} more since the last line)") } else { String::new() };
                log::log!(level, "kafka (native): librdkafka {fac}: {message}{more}");
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let what = format!("error {:?}", error.rdkafka_error_code());
        if let Some(held) = self.log.allow(&what) {
            let more = if held > 0 { format!(" ({held} more since the last line)") } else { String::new() };
            log::warn!("kafka (native): {error}: {reason}{more}");
        }
    }

    fn stats(&self, s: Statistics) {
        let mut last = self.retries.lock().unwrap_or_else(|e| e.into_inner());
        for (name, b) in &s.brokers {
            let before = last.insert(name.clone(), b.txretries).unwrap_or(0);
            self.stats.retried.fetch_add(b.txretries.saturating_sub(before), Relaxed);
        }
        drop(last);
        // The idempotent producer's identity: logged whenever the broker hands out a new one
        // (at start, and after a broker lost its state and the producer re-registered).
        if let Some(eos) = s.eos.filter(|e| e.producer_id >= 0) {
            let mut pid = self.producer_id.lock().unwrap_or_else(|e| e.into_inner());
            if *pid != (eos.producer_id, eos.producer_epoch) {
                // librdkafka bumps the epoch itself when the broker says it does not know the
                // producer id; a broker that keeps refusing it (it lost its producer state) is
                // not going to accept this producer again: replace it.
                if pid.0 == eos.producer_id && eos.producer_epoch > pid.1 {
                    let n = (eos.producer_epoch - pid.1) as u64;
                    if self.bumps.fetch_add(n, Relaxed) + n >= FENCED_AFTER_BUMPS {
                        self.fenced.store(true, Relaxed);
                    }
                }
                *pid = (eos.producer_id, eos.producer_epoch);
                // librdkafka bumps the epoch when the broker says it does not know the producer
                // (it lost its state): against such a broker that can repeat every second.
                if let Some(held) = self.log.allow("producer id") {
                    let more = if held > 0 {
                        format!(" ({held} changes since the last line)")
                    } else {
                        String::new()
                    };
                    log::info!(
                        "kafka (native): idempotent producer id {} epoch {} ({}){more}",
                        eos.producer_id,
                        eos.producer_epoch,
                        eos.idemp_state
                    );
                }
            }
        }
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = Arc<FlushTrack>;

    fn delivery(&self, result: &DeliveryResult<'_>, flush: Arc<FlushTrack>) {
        let len = match result {
            Ok(m) | Err((_, m)) => m.payload_len() as u64,
        };
        let _ = self.stats.queue_bytes.fetch_update(Relaxed, Relaxed, |q| Some(q.saturating_sub(len)));
        match result {
            Ok(_) => {
                self.bumps.store(0, Relaxed);
                self.stats.delivered(1);
            }
            Err((e, m)) => {
                let code = e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
                if matches!(code, RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch) {
                    self.fenced.store(true, Relaxed);
                }
                let reason = match Reason::of(code) {
                    Reason::Shutdown if self.retired.load(Relaxed) => Reason::Fatal,
                    r => r,
                };
                if reason == Reason::TooLarge {
                    if let Some(halves) = m.payload().and_then(split_value) {
                        let mut q = self.resend.lock().unwrap_or_else(|e| e.into_inner());
                        for h in halves {
                            flush.pending.fetch_add(1, Relaxed);
                            q.push((h, Arc::clone(&flush)));
                        }
                        flush.pending.fetch_sub(1, Relaxed);
                        return;
                    }
                }
                self.dropped(reason, 1, e);
            }
        }
        flush.pending.fetch_sub(1, Relaxed);
        flush.settle(&self.stats);
    }
}

/// A flat record value cut in two (`None` when it is not flat or has one entry).
pub fn split_value(value: &[u8]) -> Option<[Vec<u8>; 2]> {
    let mut data = value.to_vec();
    let [a, b] = split_flat(&mut data, (0, value.len() as u32))?;
    let part = |r: (u32, u32)| data[r.0 as usize..(r.0 + r.1) as usize].to_vec();
    Some([part(a), part(b)])
}

/// The polling thread: serves delivery reports and statistics, and produces the halves of
/// records the broker refused as too large. Ends soon after `stop` is set (the shutdown has
/// served or purged what was in flight by then).
pub fn poll_loop(producer: Arc<Producer>, key: Option<Vec<u8>>, stop: Arc<AtomicBool>) {
    loop {
        producer.poll(Duration::from_millis(100));
        let ctx = producer.context();
        let halves = std::mem::take(&mut *ctx.resend.lock().unwrap_or_else(|e| e.into_inner()));
        for (value, flush) in halves {
            ctx.stats.queue_bytes.fetch_add(value.len() as u64, Relaxed);
            let mut record = BaseRecord::with_opaque_to(&ctx.topic, flush).payload(&value[..]);
            if let Some(k) = &key {
                record = record.key(&k[..]);
            }
            if let Err((e, record)) = producer.send(record) {
                let flush = record.delivery_opaque;
                ctx.stats.queue_bytes.fetch_sub(value.len() as u64, Relaxed);
                let reason = e.rdkafka_error_code().map_or(Reason::Rejected, Reason::of);
                ctx.dropped(reason, 1, &e);
                flush.pending.fetch_sub(1, Relaxed);
                flush.settle(&ctx.stats);
            }
        }
        if stop.load(Relaxed) {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_map_to_reasons() {
        use RDKafkaErrorCode as C;
        assert_eq!(Reason::of(C::UnknownTopicOrPartition), Reason::UnknownTopic);
        assert_eq!(Reason::of(C::UnknownTopic), Reason::UnknownTopic);
        assert_eq!(Reason::of(C::TopicAuthorizationFailed), Reason::Unauthorized);
        assert_eq!(Reason::of(C::SaslAuthenticationFailed), Reason::Unauthorized);
        assert_eq!(Reason::of(C::MessageSizeTooLarge), Reason::TooLarge);
        assert_eq!(Reason::of(C::MessageTimedOut), Reason::Timeout);
        assert_eq!(Reason::of(C::QueueFull), Reason::QueueFull);
        assert_eq!(Reason::of(C::PurgeInflight), Reason::Shutdown);
        assert_eq!(Reason::of(C::InvalidRecord), Reason::Rejected);
        assert_eq!(Reason::of(C::Fatal), Reason::Fatal);
        assert_eq!(Reason::of(C::ProducerFenced), Reason::Fatal);
    }

    #[test]
    fn a_flat_value_splits_in_two_and_a_tagged_one_does_not() {
        let v =
            br#"{"gauges":{"a":1,"b":2,"c":3},"durationUnit":"milliseconds","clock":7,"rateUnit":"seconds"}"#;
        let [a, b] = split_value(v).unwrap();
        let tail = r#","durationUnit":"milliseconds","clock":7,"rateUnit":"seconds"}"#;
        assert_eq!(String::from_utf8(a).unwrap(), format!(r#"{{"gauges":{{"a":1,"b":2}}{tail}"#));
        assert_eq!(String::from_utf8(b).unwrap(), format!(r#"{{"gauges":{{"c":3}}{tail}"#));
        assert!(split_value(br#"{"name":"a","type":"gauge"}"#).is_none());
    }

    #[test]
    fn logs_are_limited_per_reason_and_count_what_was_held_back() {
        let l = LogLimit::new(Duration::from_secs(3600));
        assert_eq!(l.allow("a"), Some(0));
        assert_eq!(l.allow("a"), None);
        assert_eq!(l.allow("a"), None);
        assert_eq!(l.allow("b"), Some(0));
        let l = LogLimit::new(Duration::ZERO);
        assert_eq!(l.allow("a"), Some(0));
        assert_eq!(l.allow("a"), Some(0));
    }

    #[test]
    fn a_flush_settles_once_when_closed_and_answered() {
        let stats = Stats::default();
        let f = FlushTrack::new(Instant::now());
        f.pending.store(1, Relaxed);
        f.bytes.store(42, Relaxed);
        f.settle(&stats);
        assert_eq!(stats.flush_length.load(Relaxed), 0, "still open");
        f.closed.store(true, Relaxed);
        f.settle(&stats);
        assert_eq!(stats.flush_length.load(Relaxed), 0, "one record unanswered");
        f.pending.store(0, Relaxed);
        f.settle(&stats);
        assert_eq!(stats.flush_length.load(Relaxed), 42);
        stats.flush_length.store(0, Relaxed);
        f.settle(&stats);
        assert_eq!(stats.flush_length.load(Relaxed), 0, "only once");
    }
}
