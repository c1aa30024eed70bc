//! The native Kafka sink, `[sinks.kafka]`: every flush becomes Kafka records produced straight
//! to the brokers with librdkafka's idempotent producer (`enable.idempotence`, `acks=all`), in
//! the same `flat` or `tagged` record values as the REST-proxy sink (its encoder is reused, and
//! so is its split of a flush larger than `max_record_bytes`).
//!
//! Two threads. On the flush thread, [`KafkaNative::flush`] serializes into reused buffers and
//! hands each record to librdkafka's queue (a copy, never a wait: a full queue refuses the record,
//! which is dropped and counted). librdkafka's own threads talk to the brokers, retry, and keep
//! order and uniqueness per partition; the sink's polling thread (`kstatsd-kafka-native`, see
//! [`deliver`]) serves the delivery reports that drive the figures. A dead or slow broker
//! therefore never delays a flush, another sink or ingest.
//!
//! Figures (`stats.statsd.kafkaNativeStats.*` via [`Sink::meta`]): `records_sent`,
//! `records_retried`, `records_dropped` and `records_dropped.<reason>`, `queue_bytes`,
//! `last_flush`, `last_exception`, `flush_time`, `flush_length`.
//!
//! The sink needs librdkafka, built from source with the default cargo feature `kafka`; without
//! it (`--no-default-features`, as the fuzz targets build) the section is still read and
//! validated, and a configuration that asks for it is refused at start-up.

pub mod config;
#[cfg(feature = "kafka")]
mod deliver;
#[cfg(feature = "kafka")]
mod producer;

pub use config::{KafkaConfig, KafkaSection};
#[cfg(feature = "kafka")]
pub use deliver::Reason;
#[cfg(feature = "kafka")]
pub use producer::KafkaNative;
