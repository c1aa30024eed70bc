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

#[cfg(test)]
mod tests {
    use super::config::*;
    use crate::config::{parse_file, Config, ConfigError, Overrides, Secret};
    use crate::sink::console::ConsoleFormat;
    use std::time::Duration;

    fn build(toml: &str, ov: KafkaRestSection) -> Result<Config, ConfigError> {
        Config::build(parse_file(toml)?, &Overrides { kafka_rest: ov, ..Overrides::default() })
    }

    const MIN: &str = "[sinks.kafka_rest]\nurl = \"http://127.0.0.1:8082\"\ntopic = \"metrics\"\n";

    #[test]
    fn defaults_and_the_console_default() {
        let c = build(MIN, KafkaRestSection::default()).unwrap();
        let k = c.kafka_rest.as_ref().unwrap();
        assert_eq!(k.url.base(), "http://127.0.0.1:8082");
        assert_eq!(
            (k.format, k.content_type, &k.key),
            (KafkaFormat::Flat, KafkaContentType::JsonV2, &RecordKey::Hostname)
        );
        assert_eq!((k.timeout, k.resend_timeout), (Duration::from_secs(5), Duration::from_secs(360)));
        // A default request fits Karapace's body limit: aiohttp refuses a body of 1 MiB or more.
        assert_eq!(
            (k.max_record_bytes, k.max_request_bytes, k.max_queue_bytes),
            (900 << 10, 1000 << 10, 64 << 20)
        );
        assert!(k.max_request_bytes < 1 << 20);
        assert_eq!(
            (k.retry_backoff, k.retry_backoff_max),
            (Duration::from_millis(100), Duration::from_secs(30))
        );
        assert_eq!(c.console, None, "the console is the default only when no other sink is configured");
        let c =
            build(&format!("{MIN}[sinks.console]\nformat = \"json\""), KafkaRestSection::default()).unwrap();
        assert_eq!(c.console, Some(ConsoleFormat::Json));
        assert_eq!(Config::defaults().kafka_rest, None);
    }

    #[test]
    fn flags_configure_it_alone_and_beat_the_file() {
        let ov = KafkaRestSection {
            url: Some(Secret("https://u:p@proxy:8082/".into())),
            topic: Some("t.1".into()),
            format: Some(KafkaFormat::Tagged),
            key: Some("none".into()),
            ..KafkaRestSection::default()
        };
        let k = build("", ov.clone()).unwrap().kafka_rest.unwrap();
        assert_eq!((k.url.base().as_str(), k.topic.as_str()), ("https://proxy:8082", "t.1"));
        assert_eq!((k.format, &k.key), (KafkaFormat::Tagged, &RecordKey::None));
        assert_eq!((k.username, k.password), (Some(Secret("u".into())), Some(Secret("p".into()))));
        let k = build(MIN, ov).unwrap().kafka_rest.unwrap();
        assert_eq!(k.topic, "t.1");
    }

    #[test]
    fn bad_settings_say_what_to_change() {
        let bad = |extra: &str| build(&format!("{MIN}{extra}"), KafkaRestSection::default()).unwrap_err().0;
        assert!(bad("format = \"csv\"").contains("flat or tagged"));
        assert!(bad("content_type = \"application/json\"").contains("application/vnd.kafka.json.v2+json"));
        assert!(bad("key = \"\"").contains("none"));
        assert!(bad("max_record_bytes = 100").contains("between 1KiB"));
        assert!(bad("max_record_bytes = \"2MiB\"\nmax_request_bytes = \"2MiB\"")
            .contains("max_request_bytes must be"));
        assert!(bad("max_queue_bytes = \"960KiB\"").contains("at least max_request_bytes"));
        assert!(bad("retry_backoff = \"1s\"\nretry_backoff_max = \"10ms\"").contains("retry_backoff"));
        assert!(bad("password = \"x\"").contains("no username"));
        assert!(bad("timeout = \"0s\"").contains("timeout"));
        assert!(bad("timeout = \"10s\"\nresend_timeout = \"5s\"").contains("resend_timeout must be at least"));
        assert!(bad("colour = \"blue\"").contains("unknown field"));
        let e = build("[sinks.kafka_rest]\ntopic = \"metrics\"", KafkaRestSection::default()).unwrap_err();
        assert!(e.0.contains("url is required"), "{e}");
        let e =
            build("[sinks.kafka_rest]\nurl = \"http://h:1\"\ntopic = \"a b\"", KafkaRestSection::default());
        assert!(e.unwrap_err().0.contains("not a Kafka topic name"));
        let e = build("", KafkaRestSection { topic: Some("metrics".into()), ..KafkaRestSection::default() });
        assert!(e.unwrap_err().0.contains("--kafka-topic"));
        // A binary record is a third larger once base64-encoded: the default request grows.
        let c = build(
            &format!(
                "{MIN}content_type = \"application/vnd.kafka.binary.v2+json\"\nmax_record_bytes = \"4MiB\""
            ),
            KafkaRestSection::default(),
        );
        assert!(c.unwrap().kafka_rest.unwrap().max_request_bytes > (4 << 20) * 4 / 3);
    }

    #[test]
    fn the_effective_config_redacts_credentials_and_round_trips_the_rest() {
        let text = "[sinks.kafka_rest]\nurl = \"http://al%69ce:s3cret@127.0.0.1:8082/k\"\ntopic = \"metrics\"\n\
                    format = \"tagged\"\nkey = \"rack-7\"\ntimeout = \"1500ms\"\nmax_queue_bytes = \"8MiB\"\n";
        let c = build(text, KafkaRestSection::default()).unwrap();
        let shown = c.to_toml();
        assert!(
            !shown.contains("s3cret") && !shown.contains("alice") && !shown.contains("al%69ce"),
            "{shown}"
        );
        assert!(shown.contains("url = \"http://127.0.0.1:8082/k\""), "{shown}");
        assert!(format!("{c:?}").find("s3cret").is_none());
        let mut again =
            build(&shown.replace("\"<redacted>\"", "\"x\""), KafkaRestSection::default()).unwrap();
        let k = again.kafka_rest.as_mut().unwrap();
        assert_eq!(k.username, Some(Secret("x".into())));
        k.username = Some(Secret("alice".into()));
        k.password = Some(Secret("s3cret".into()));
        assert_eq!(again, c);
    }
}
