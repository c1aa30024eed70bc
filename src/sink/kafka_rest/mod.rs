//! The Kafka REST Proxy sink (the primary one): every flush becomes Kafka records POSTed to
//! `{url}/topics/{topic}` of a Confluent REST Proxy, in statsd-kafka-backend's `flat` shape or
//! one `tagged` record per series.
//!
//! An "encode + deliver" on the delivery engine ([`crate::sink::outbox`]). On the flush thread,
//! `flush` only serializes ([`encode`]: reused buffers, no allocation per series)
//! and pushes request-sized payloads into the engine's queue, bounded in bytes (when full the
//! oldest payload is dropped and counted). The sink's worker thread (`kstatsd-kafka`) does all
//! the network I/O ([`deliver`]): keep-alive HTTP with ureq, per-record results read with
//! simd-json, retries of the failed records only, with the engine's jittered backoff. A dead or
//! slow proxy therefore never delays a flush, another sink or ingest.
//!
//! Figures (`stats.statsd.kafkaStats.*` via `Sink::meta`): `last_flush`, `last_exception`,
//! `flush_time`, `flush_length` as the delivery thread saw them, `records_sent`,
//! `records_retried`, `records_resent_after_timeout` (possible duplicates: records sent again
//! after an attempt that got no answer), `records_dropped` and `records_dropped.<reason>`,
//! `requests`, `queue_bytes`, `queue_payloads`.

pub mod config;
mod deliver;
pub(crate) mod encode;
mod url;

pub use url::{ProxyUrl, UrlCredentials};

use super::outbox::{Backoff, Dropped, Encode, FlushTag, Limits, Names, Outbox, Queued, Spelling};
use crate::flush::{Naming, Snapshot};
pub use config::{KafkaContentType, KafkaFormat, KafkaRestConfig, KafkaRestSection, RecordKey};
use deliver::{Rest, RestConfig};
use encode::{Encoder, Framing, Payload, PayloadOut};
use std::time::Instant;

/// The REST Proxy sink: its encoder on the delivery engine.
pub type KafkaRest = Queued<Records>;

/// The REST Proxy sink's encoder ([`encode`]) as the engine sees it.
pub struct Records(Encoder);

impl KafkaRest {
    /// Starts the delivery thread. `counter_rates` and `meta_prefix` come from `[aggregate]`.
    pub fn new(cfg: &KafkaRestConfig, counter_rates: bool, meta_prefix: &str) -> std::io::Result<KafkaRest> {
        let key = match &cfg.key {
            RecordKey::Hostname => Some(crate::sys::hostname().ok_or_else(|| {
                std::io::Error::other(
                    "cannot read the host name for the Kafka record key: set sinks.kafka_rest.key",
                )
            })?),
            RecordKey::None => None,
            RecordKey::Fixed(k) => Some(k.clone()),
        };
        let binary = cfg.content_type == KafkaContentType::BinaryV2;
        let framing = Framing::new(key.as_deref(), binary);
        let target = cfg.url.produce(&cfg.topic);
        let authorization = cfg.username.as_ref().map(|u| {
            crate::sink::http::url::basic_authorization(
                &u.0,
                cfg.password.as_ref().map_or("", |p| p.0.as_str()),
            )
        });
        let rest = Rest::new(RestConfig {
            url: target.clone(),
            content_type: cfg.content_type.media_type(),
            accept: cfg.content_type.accept(),
            authorization,
            timeout: cfg.timeout,
            resend_timeout: cfg.resend_timeout,
            max_request: cfg.max_request_bytes,
            framing: framing.clone(),
            tls: crate::sink::http::tls::tls_config(cfg.ca_file.as_ref()),
        });
        let limits = Limits {
            queue_bytes: cfg.max_queue_bytes,
            backoff: Backoff::new(cfg.retry_backoff, cfg.retry_backoff_max),
        };
        let names = Names { name: "kafka", peer: format!("POST {target}"), spelling: Spelling::REST };
        let outbox = Outbox::start(names, limits, rest)?;
        log::info!(
            "kafka sink: POST {target} ({:?}, {}, key {})",
            cfg.format,
            cfg.content_type.media_type(),
            match &key {
                Some(k) => format!("{k:?}"),
                None => "none".into(),
            }
        );
        let encoder = Encoder::new(
            cfg.format,
            counter_rates,
            meta_prefix.to_string(),
            cfg.max_record_bytes,
            cfg.max_request_bytes,
            framing,
        );
        Ok(Queued::with(Records(encoder), outbox))
    }
}

/// The encoder's side of the queue.
struct ToQueue<'a>(&'a Outbox<Payload>);

impl PayloadOut for ToQueue<'_> {
    fn fresh(&mut self, flush: FlushTag) -> Payload {
        Payload::fresh(self.0.fresh(), flush)
    }
    fn emit(&mut self, p: Payload) {
        self.0.push(p);
    }
}

impl Encode for Records {
    type Item = Payload;

    fn encode(
        &mut self,
        snapshot: &Snapshot,
        naming: &Naming,
        outbox: &Outbox<Payload>,
        now: Instant,
    ) -> u64 {
        let e = self.0.encode(snapshot, naming, &mut ToQueue(outbox), now);
        if e.too_large > 0 {
            outbox.figures().count_drop(Dropped::TooLarge, e.too_large);
            log::warn!("kafka: {} series larger than max_record_bytes dropped", e.too_large);
        }
        e.bytes
    }
}
