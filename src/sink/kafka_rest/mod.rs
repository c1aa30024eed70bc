//! The Kafka REST Proxy sink (the primary one): every flush becomes Kafka records POSTed to
//! `{url}/topics/{topic}` of a Confluent REST Proxy, in statsd-kafka-backend's `flat` shape or
//! one `tagged` record per series.
//!
//! Two threads. On the flush thread, [`KafkaRest::flush`] only serializes ([`encode`]: reused
//! buffers, no allocation per series) and pushes request-sized payloads into a queue bounded in
//! bytes ([`queue`]; when full the oldest payload is dropped and counted). The sink's own
//! delivery thread ([`worker`]) does all the network I/O: keep-alive HTTP with ureq, per-record
//! results read with simd-json, retries of the failed records only, with capped and jittered
//! backoff. A dead or slow proxy therefore never delays a flush, another sink or ingest.
//!
//! Figures (`stats.statsd.kafkaStats.*` via [`Sink::meta`]): `last_flush`, `last_exception`,
//! `flush_time`, `flush_length` as the delivery thread saw them, `records_sent`,
//! `records_retried`, `records_resent_after_timeout` (possible duplicates: records sent again
//! after an attempt that got no answer), `records_dropped` and `records_dropped.<reason>`,
//! `requests`,
//! `queue_bytes`, `queue_payloads`.

pub mod config;
pub(crate) mod encode;
pub(crate) mod queue;
mod url;
mod worker;

pub use queue::DropReason;
pub use url::{ProxyUrl, UrlCredentials};

use super::{FlushReport, Sink, SinkError};
use crate::flush::{Naming, Snapshot};
pub use config::{KafkaContentType, KafkaFormat, KafkaRestConfig, KafkaRestSection, RecordKey};
use encode::{Encoder, Framing, PayloadOut};
use queue::{FlushTag, Payload, Shared};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;
use worker::{Worker, WorkerConfig};

pub struct KafkaRest {
    encoder: Encoder,
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
    /// `{base}/topics/{topic}`, without credentials (for messages).
    target: String,
}

impl KafkaRest {
    /// Starts the delivery thread. `counter_rates` and `meta_prefix` come from `[aggregate]`.
    pub fn new(cfg: &KafkaRestConfig, counter_rates: bool, meta_prefix: &str) -> std::io::Result<KafkaRest> {
        let key = match &cfg.key {
            RecordKey::Hostname => Some(hostname()?),
            RecordKey::None => None,
            RecordKey::Fixed(k) => Some(k.clone()),
        };
        let binary = cfg.content_type == KafkaContentType::BinaryV2;
        let framing = Framing::new(key.as_deref(), binary);
        let target = cfg.url.produce(&cfg.topic);
        let shared = Arc::new(Shared::new(cfg.max_queue_bytes));
        let authorization = cfg.username.as_ref().map(|u| {
            let pass = cfg.password.as_ref().map_or("", |p| p.0.as_str());
            let mut b64 = b"Basic ".to_vec();
            encode::base64(&mut b64, format!("{}:{pass}", u.0).as_bytes());
            String::from_utf8(b64).expect("base64 is ASCII")
        });
        let worker = Worker::new(
            Arc::clone(&shared),
            WorkerConfig {
                url: target.clone(),
                content_type: cfg.content_type.media_type(),
                accept: cfg.content_type.accept(),
                authorization,
                timeout: cfg.timeout,
                resend_timeout: cfg.resend_timeout,
                max_request: cfg.max_request_bytes,
                framing: framing.clone(),
                retry_backoff: cfg.retry_backoff,
                retry_backoff_max: cfg.retry_backoff_max,
                tls: crate::sink::tls::tls_config(cfg.ca_file.as_ref()),
            },
        );
        let handle = std::thread::Builder::new().name("kstatsd-kafka".into()).spawn(move || worker.run())?;
        log::info!(
            "kafka sink: POST {target} ({:?}, {}, key {})",
            cfg.format,
            cfg.content_type.media_type(),
            match &key {
                Some(k) => format!("{k:?}"),
                None => "none".into(),
            }
        );
        Ok(KafkaRest {
            encoder: Encoder::new(
                cfg.format,
                counter_rates,
                meta_prefix.to_string(),
                cfg.max_record_bytes,
                cfg.max_request_bytes,
                framing,
            ),
            shared,
            worker: Some(handle),
            target,
        })
    }
}

/// This host's name, for the record key.
fn hostname() -> std::io::Result<String> {
    crate::net::hostname().ok_or_else(|| {
        std::io::Error::other("cannot read the host name for the Kafka record key: set sinks.kafka_rest.key")
    })
}

/// The encoder's side of the queue.
struct ToQueue<'a>(&'a Shared);

impl PayloadOut for ToQueue<'_> {
    fn fresh(&mut self, flush: FlushTag) -> Payload {
        self.0.fresh(flush)
    }
    fn emit(&mut self, p: Payload) {
        self.0.push(p);
    }
}

impl Sink for KafkaRest {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn flush(&mut self, snapshot: &Snapshot, naming: &Naming) -> Result<FlushReport, SinkError> {
        if self.worker.as_ref().is_some_and(|w| w.is_finished()) {
            return Err(SinkError::Other(format!("kafka: the delivery thread for {} stopped", self.target)));
        }
        let started = Instant::now();
        let e = self.encoder.encode(snapshot, naming, &mut ToQueue(&self.shared), started);
        if e.too_large > 0 {
            self.shared.stats.drop(DropReason::TooLarge, e.too_large as usize);
            log::warn!("kafka: {} series larger than max_record_bytes dropped", e.too_large);
        }
        Ok(FlushReport { bytes: e.bytes, calculation_ms: started.elapsed().as_secs_f64() * 1e3 })
    }

    fn meta(&self, write: &mut dyn FnMut(&'static str, f64)) {
        let s = &self.shared.stats;
        write("last_flush", s.last_flush.load(Relaxed) as f64);
        write("last_exception", s.last_exception.load(Relaxed) as f64);
        write("flush_time", f64::from_bits(s.flush_time_ms.load(Relaxed)));
        write("flush_length", s.flush_length.load(Relaxed) as f64);
        write("records_sent", s.sent.load(Relaxed) as f64);
        write("records_retried", s.retried.load(Relaxed) as f64);
        write("records_resent_after_timeout", s.resent_after_timeout.load(Relaxed) as f64);
        let total: u64 = DropReason::ALL.iter().map(|&r| s.dropped(r)).sum();
        write("records_dropped", total as f64);
        for r in DropReason::ALL {
            let n = s.dropped(r);
            if n > 0 {
                write(r.key(), n as f64);
            }
        }
        write("requests", s.requests.load(Relaxed) as f64);
        let (bytes, payloads) = self.shared.depth();
        write("queue_bytes", bytes as f64);
        write("queue_payloads", payloads as f64);
    }

    fn shutdown(&mut self, deadline: Instant) -> Result<(), SinkError> {
        let (records, payloads) = self.shared.shutdown(deadline);
        if records == 0 {
            if let Some(w) = self.worker.take() {
                // It has nothing left and is on its way out.
                let _ = w.join();
            }
            return Ok(());
        }
        Err(SinkError::Other(format!(
            "kafka: {records} records in {payloads} requests not delivered to {} by the shutdown \
             deadline: dropped (records_dropped.shutdown)",
            self.target
        )))
    }
}

impl Drop for KafkaRest {
    fn drop(&mut self) {
        self.shared.abandon();
    }
}
