//! The native Kafka sink's producer: [`KafkaNative`], the [`Sink`] that serializes each flush on
//! the flush thread and hands its records to librdkafka, the client configuration it starts
//! librdkafka with, and shutdown (flush within the budget, then purge and count). Runs on the
//! flush thread; librdkafka's own threads and the polling thread in `deliver` do the rest.

use super::config::KafkaConfig;
use super::deliver::{self, Context, FlushTrack, Reason, Stats};
use crate::flush::{Naming, Snapshot};
use crate::sink::kafka_rest::config::RecordKey;
use crate::sink::kafka_rest::encode::{Encoder, Framing, Payload, PayloadOut};
use crate::sink::outbox::{FlushTag, Spelling};
use crate::sink::{FlushReport, Sink, SinkError};
use rdkafka::config::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _, PurgeConfig};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub(super) type Producer = BaseProducer<Context>;

/// Records are grouped this much at a time between the encoder and librdkafka (each is produced
/// on its own; the grouping only bounds the reused buffer).
const BATCH_BYTES: usize = 1 << 20;

pub struct KafkaNative {
    encoder: Encoder,
    /// What a replacement producer is made from.
    config: KafkaConfig,
    flush_interval: Duration,
    producer: Arc<Producer>,
    stats: Arc<Stats>,
    topic: String,
    key: Option<Vec<u8>>,
    /// Emptied payload buffers, reused by the next flush.
    pool: Vec<Payload>,
    /// Records being cut in two (reused).
    split: Vec<(u32, u32)>,
    stop: Arc<AtomicBool>,
    poller: Option<JoinHandle<()>>,
    brokers: String,
}

impl KafkaNative {
    /// Creates the producer and its polling thread. `counter_rates` and `meta_prefix` come from
    /// `[aggregate]`; log lines about failures come at most once per `flush_interval`.
    pub fn new(
        cfg: &KafkaConfig,
        counter_rates: bool,
        meta_prefix: &str,
        flush_interval: Duration,
    ) -> std::io::Result<KafkaNative> {
        let key = match &cfg.key {
            RecordKey::Hostname => Some(
                crate::sys::hostname()
                    .ok_or_else(|| {
                        std::io::Error::other(
                            "cannot read the host name for the Kafka record key: set sinks.kafka.key",
                        )
                    })?
                    .into_bytes(),
            ),
            RecordKey::None => None,
            RecordKey::Fixed(k) => Some(k.clone().into_bytes()),
        };
        let stats = Arc::new(Stats::default());
        let (producer, stop, poller) = start_producer(cfg, &stats, flush_interval, &key)?;
        let brokers = cfg.brokers.join(",");
        log::info!(
            "kafka (native) sink: topic {} on {brokers} ({:?}, acks {}, {}, key {})",
            cfg.topic,
            cfg.format,
            cfg.acks.librdkafka(),
            if cfg.idempotent() { "idempotent" } else { "not idempotent" },
            match &key {
                Some(k) => format!("{:?}", String::from_utf8_lossy(k)),
                None => "none".into(),
            }
        );
        Ok(KafkaNative {
            config: cfg.clone(),
            flush_interval,
            encoder: Encoder::new(
                cfg.format,
                counter_rates,
                meta_prefix.to_string(),
                cfg.max_record_bytes,
                BATCH_BYTES.max(2 * cfg.max_record_bytes),
                Framing::new(None, false),
            ),
            producer,
            stats,
            topic: cfg.topic.clone(),
            key,
            pool: Vec::new(),
            split: Vec::new(),
            stop,
            poller: Some(poller),
            brokers,
        })
    }

    /// Records librdkafka holds unacknowledged (queued or in flight).
    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
    }

    /// Gives up every record librdkafka holds (each counted under `records_dropped.shutdown`)
    /// and waits, at most `wait`, until their reports are served. For benches and tests that
    /// enqueue to an unreachable broker.
    pub fn discard_queued(&self, wait: Duration) {
        self.producer.purge(PurgeConfig::default().queue().inflight());
        let until = Instant::now() + wait;
        while self.producer.in_flight_count() > 0 && Instant::now() < until {
            self.producer.poll(Duration::from_millis(10));
        }
    }
}

/// A producer for `cfg` and its polling thread (and the flag that stops it).
fn start_producer(
    cfg: &KafkaConfig,
    stats: &Arc<Stats>,
    flush_interval: Duration,
    key: &Option<Vec<u8>>,
) -> std::io::Result<(Arc<Producer>, Arc<AtomicBool>, JoinHandle<()>)> {
    let context = Context::new(Arc::clone(stats), cfg.topic.clone(), flush_interval);
    let producer: Producer = client_config(cfg)
        .create_with_context(context)
        .map_err(|e| std::io::Error::other(format!("kafka (native): cannot create the producer: {e}")))?;
    let producer = Arc::new(producer);
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (producer, key, stop) = (Arc::clone(&producer), key.clone(), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("kstatsd-kafka-native".into())
            .spawn(move || deliver::poll_loop(producer, key, stop))?
    };
    Ok((producer, stop, poller))
}

impl KafkaNative {
    /// After a fatal error (librdkafka: "the application must create a new producer"), or once
    /// the broker fenced the idempotent producer (it refuses its id and epoch for good), a new
    /// producer takes over with a new producer id; what the old one held is given up
    /// (`records_dropped.fatal`) on a thread of its own.
    fn replace_producer(&mut self, code: RDKafkaErrorCode, reason: &str) -> Result<(), SinkError> {
        let (producer, stop, poller) =
            start_producer(&self.config, &self.stats, self.flush_interval, &self.key)
                .map_err(|e| SinkError::Other(e.to_string()))?;
        let old = std::mem::replace(&mut self.producer, producer);
        let old_stop = std::mem::replace(&mut self.stop, stop);
        let old_poller = self.poller.replace(poller);
        log::error!(
            "kafka (native): the producer for {} hit a fatal error ({code:?}: {reason}); a new one takes \
             over, the {} records the old one held are dropped (records_dropped.fatal)",
            self.brokers,
            old.in_flight_count()
        );
        old.context().retired.store(true, Relaxed);
        let _ = std::thread::Builder::new().name("kstatsd-kafka-retired".into()).spawn(move || {
            old.purge(PurgeConfig::default().queue().inflight());
            let until = Instant::now() + Duration::from_secs(5);
            while old.in_flight_count() > 0 && Instant::now() < until {
                old.poll(Duration::from_millis(10));
            }
            old_stop.store(true, Relaxed);
            if let Some(p) = old_poller {
                let _ = p.join();
            }
        });
        Ok(())
    }
}

/// librdkafka's settings for `cfg`. Credentials go into librdkafka only (never into a log line).
fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", cfg.brokers.join(","))
        .set("client.id", "kstatsd")
        .set("acks", cfg.acks.librdkafka())
        .set("enable.idempotence", if cfg.idempotent() { "true" } else { "false" })
        .set("compression.codec", cfg.compression.librdkafka())
        .set("message.timeout.ms", cfg.timeout.as_millis().to_string())
        // The queue is bounded in bytes only: a tagged flush of a million series is a million
        // records.
        .set("queue.buffering.max.kbytes", (cfg.max_queue_bytes / 1024).max(1).to_string())
        .set("queue.buffering.max.messages", "0")
        .set("message.max.bytes", (cfg.max_record_bytes + (64 << 10)).max(1_000_000).to_string())
        .set("linger.ms", "5")
        .set("statistics.interval.ms", "1000");
    let protocol = match (cfg.tls, cfg.sasl_mechanism.is_some()) {
        (false, false) => "plaintext",
        (true, false) => "ssl",
        (false, true) => "sasl_plaintext",
        (true, true) => "sasl_ssl",
    };
    c.set("security.protocol", protocol);
    if let Some(ca) = &cfg.ca_file {
        c.set("ssl.ca.location", ca.path().display().to_string());
    }
    if let (Some(m), Some(u), Some(p)) = (cfg.sasl_mechanism, &cfg.username, &cfg.password) {
        c.set("sasl.mechanism", m.librdkafka()).set("sasl.username", &u.0).set("sasl.password", &p.0);
    }
    c
}

/// The encoder's side of librdkafka: each full payload's records are produced at once, and its
/// buffer goes back to the pool.
struct Produce<'a> {
    producer: &'a Producer,
    topic: &'a str,
    key: Option<&'a [u8]>,
    pool: &'a mut Vec<Payload>,
    flush: &'a Arc<FlushTrack>,
    /// Records refused at once, by reason.
    refused: [u64; Reason::ALL.len()],
    split: &'a mut Vec<(u32, u32)>,
}

impl Produce<'_> {
    /// Produces the value at `r` of `data`; a value librdkafka finds too large is cut in two
    /// (flat records) and each half produced in its place.
    fn record(&mut self, data: &mut Vec<u8>, r: (u32, u32)) {
        self.split.clear();
        self.split.push(r);
        while let Some(r) = self.split.pop() {
            let value = &data[r.0 as usize..(r.0 + r.1) as usize];
            let mut record = BaseRecord::with_opaque_to(self.topic, Arc::clone(self.flush)).payload(value);
            if let Some(k) = self.key {
                record = record.key(k);
            }
            self.flush.pending.fetch_add(1, Relaxed);
            match self.producer.send(record) {
                Ok(()) => {
                    self.flush.bytes.fetch_add(r.1 as u64, Relaxed);
                    self.producer.context().stats.queue_bytes.fetch_add(r.1 as u64, Relaxed);
                }
                Err((e, _)) => {
                    self.flush.pending.fetch_sub(1, Relaxed);
                    let code = e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
                    if code == RDKafkaErrorCode::MessageSizeTooLarge {
                        if let Some([a, b]) = crate::sink::kafka_rest::encode::split_flat(data, r) {
                            // Produced in order: the first half last pushed.
                            self.split.push(b);
                            self.split.push(a);
                            continue;
                        }
                    }
                    self.refused[Reason::of(code) as usize] += 1;
                }
            }
        }
    }
}

impl PayloadOut for Produce<'_> {
    fn fresh(&mut self, flush: FlushTag) -> Payload {
        match self.pool.pop() {
            Some(mut p) => {
                p.flush = flush;
                p
            }
            None => Payload { data: Vec::with_capacity(BATCH_BYTES), records: Vec::new(), flush },
        }
    }

    fn emit(&mut self, mut p: Payload) {
        let records = std::mem::take(&mut p.records);
        for &r in &records {
            self.record(&mut p.data, r);
        }
        p.records = records;
        p.records.clear();
        p.data.clear();
        self.pool.push(p);
    }
}

impl Sink for KafkaNative {
    fn name(&self) -> &'static str {
        "kafkaNative"
    }

    fn flush(&mut self, snapshot: &Snapshot, naming: &Naming) -> Result<FlushReport, SinkError> {
        if self.poller.as_ref().is_some_and(|p| p.is_finished()) {
            return Err(SinkError::Other(format!(
                "kafka (native): the polling thread for {} stopped",
                self.brokers
            )));
        }
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            self.replace_producer(code, &reason)?;
        } else if self.producer.context().fenced.load(Relaxed) {
            self.replace_producer(
                RDKafkaErrorCode::ProducerFenced,
                "the broker refuses this producer id and epoch",
            )?;
        }
        let started = Instant::now();
        let track = Arc::new(FlushTrack::new(started));
        let mut out = Produce {
            producer: &self.producer,
            topic: &self.topic,
            key: self.key.as_deref(),
            pool: &mut self.pool,
            flush: &track,
            refused: [0; Reason::ALL.len()],
            split: &mut self.split,
        };
        let e = self.encoder.encode(snapshot, naming, &mut out, started);
        let mut refused = out.refused;
        refused[Reason::TooLarge as usize] += e.too_large;
        track.closed.store(true, Relaxed);
        track.settle(&self.stats);
        let ctx = self.producer.context();
        for r in Reason::ALL {
            let n = refused[r as usize];
            if n > 0 {
                let why: &dyn std::fmt::Display = match r {
                    Reason::QueueFull => &"librdkafka's queue is full (max_queue_bytes)",
                    Reason::TooLarge => &"a single series is larger than max_record_bytes",
                    _ => &"refused by librdkafka",
                };
                ctx.dropped(r, n, why);
            }
        }
        Ok(FlushReport { bytes: e.bytes, calculation_ms: started.elapsed().as_secs_f64() * 1e3 })
    }

    fn meta(&self, write: &mut dyn FnMut(&'static str, f64)) {
        // librdkafka's own queue: its bytes come from the delivery reports.
        self.stats.meta(Spelling::NATIVE, None, write);
    }

    fn shutdown(&mut self, deadline: Instant) -> Result<(), SinkError> {
        let left = deadline.saturating_duration_since(Instant::now());
        let flushed = self.producer.flush(left).is_ok();
        let before = self.stats.dropped(Reason::Shutdown);
        if !flushed {
            // What is still queued or in flight is given up: its delivery reports count it.
            self.producer.purge(PurgeConfig::default().queue().inflight());
            let until = Instant::now() + Duration::from_secs(1);
            while self.producer.in_flight_count() > 0 && Instant::now() < until {
                self.producer.poll(Duration::from_millis(10));
            }
        }
        self.stop.store(true, Relaxed);
        if let Some(p) = self.poller.take() {
            let _ = p.join();
        }
        let given_up = self.stats.dropped(Reason::Shutdown) - before;
        if flushed && given_up == 0 {
            return Ok(());
        }
        Err(SinkError::Other(format!(
            "kafka (native): {given_up} records not acknowledged by {} within the shutdown deadline: \
             dropped (records_dropped.shutdown)",
            self.brokers
        )))
    }
}

impl Drop for KafkaNative {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        self.producer.purge(PurgeConfig::default().queue().inflight());
    }
}
