//! The Kafka REST Proxy sink's configuration, `[sinks.kafka_rest]` and the `--kafka-…` flags
//! (`KSTATSD_KAFKA_…`): the raw section, read from the file and the command line alike, and
//! [`KafkaRestConfig::validate`] into typed values (its defaults are there). The settings every
//! Kafka sink reads the same way (`topic`, `format`, `key`: [`kafka_topic`], [`KafkaFormat`],
//! [`RecordKey`]) live here too: the native sink (`crate::sink::kafka::config`) takes the shared
//! flags from this section. The typed config serializes itself, credentials redacted. Runs on
//! the main thread at start-up and on the reload thread at SIGHUP; `crate::config` only
//! composes it.

use super::ProxyUrl;
use crate::settings::{backoff, err, queue_bytes, ser_duration, ConfigError, Period, Secret, Size};
use crate::sink::tls::{ca_file_for, CaFile};
use serde::{Serialize, Serializer};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

const W: &str = "sinks.kafka_rest";

crate::section! {
    /// `[sinks.kafka_rest]`, and the `--kafka-…` flags. Those beside `--kafka-rest` apply to
    /// every Kafka sink configured (the native one reads them from here too).
    pub struct KafkaRestSection {
        /// Kafka REST Proxy sink: the proxy's URL, http(s)://[user:password@]host[:port][/prefix];
        /// turns the sink on [sinks.kafka_rest.url].
        #[arg(id = "KAFKA_REST", long = "kafka-rest", env = "KSTATSD_KAFKA_REST", hide_env_values = true)]
        pub url: Option<Secret>,
        /// Topic to produce to, for every Kafka sink configured [sinks.kafka_rest.topic,
        /// sinks.kafka.topic; required].
        #[arg(id = "KAFKA_TOPIC", long = "kafka-topic", env = "KSTATSD_KAFKA_TOPIC")]
        pub topic: Option<String>,
        /// flat (one record per flush) or tagged (one per series), for every Kafka sink configured
        /// [sinks.kafka_rest.format, sinks.kafka.format; flat].
        #[arg(id = "KAFKA_FORMAT", long = "kafka-format", env = "KSTATSD_KAFKA_FORMAT")]
        pub format: Option<KafkaFormat>,
        /// application/vnd.kafka.json.v2+json, …json.v1+json or …binary.v2+json
        /// [sinks.kafka_rest.content_type; default application/vnd.kafka.json.v2+json].
        #[arg(id = "KAFKA_CONTENT_TYPE", long = "kafka-content-type", env = "KSTATSD_KAFKA_CONTENT_TYPE")]
        pub content_type: Option<KafkaContentType>,
        /// Record key: hostname, none, or a fixed string, for every Kafka sink configured
        /// [sinks.kafka_rest.key, sinks.kafka.key; default hostname].
        #[arg(id = "KAFKA_KEY", long = "kafka-key", env = "KSTATSD_KAFKA_KEY")]
        pub key: Option<String>,
        /// Basic auth user name; the SASL user name of the native sink [sinks.kafka_rest.username,
        /// sinks.kafka.username].
        #[arg(id = "KAFKA_USERNAME", long = "kafka-username", env = "KSTATSD_KAFKA_USERNAME", hide_env_values = true)]
        pub username: Option<Secret>,
        /// Basic auth password; the SASL password of the native sink; prefer the variable to the flag
        /// [sinks.kafka_rest.password, sinks.kafka.password].
        #[arg(id = "KAFKA_PASSWORD", long = "kafka-password", env = "KSTATSD_KAFKA_PASSWORD", hide_env_values = true)]
        pub password: Option<Secret>,
        /// Bound on one request; for the native sink, on one record's delivery
        /// [sinks.kafka_rest.timeout; default 5s; sinks.kafka.timeout; default 30s].
        #[arg(id = "KAFKA_TIMEOUT", long = "kafka-timeout", env = "KSTATSD_KAFKA_TIMEOUT")]
        pub timeout: Option<Period>,
        /// Bound on each attempt after one timed out, until one is answered: longer than the
        /// proxy's producer gives a record [sinks.kafka_rest.resend_timeout; default 6m].
        #[arg(id = "KAFKA_RESEND_TIMEOUT", long = "kafka-resend-timeout", env = "KSTATSD_KAFKA_RESEND_TIMEOUT")]
        pub resend_timeout: Option<Period>,
        /// Largest record value; larger flushes are split; for every Kafka sink configured
        /// [sinks.kafka_rest.max_record_bytes, sinks.kafka.max_record_bytes; 900KiB].
        #[arg(
            id = "KAFKA_MAX_RECORD_BYTES",
            long = "kafka-max-record-bytes",
            env = "KSTATSD_KAFKA_MAX_RECORD_BYTES"
        )]
        pub max_record_bytes: Option<Size>,
        /// Largest request body [sinks.kafka_rest.max_request_bytes; default 1000KiB].
        #[arg(
            id = "KAFKA_MAX_REQUEST_BYTES",
            long = "kafka-max-request-bytes",
            env = "KSTATSD_KAFKA_MAX_REQUEST_BYTES"
        )]
        pub max_request_bytes: Option<Size>,
        /// Bound on unsent records, dropped past it; for every Kafka sink configured
        /// [sinks.kafka_rest.max_queue_bytes, sinks.kafka.max_queue_bytes; default 64MiB].
        #[arg(id = "KAFKA_MAX_QUEUE_BYTES", long = "kafka-max-queue-bytes", env = "KSTATSD_KAFKA_MAX_QUEUE_BYTES")]
        pub max_queue_bytes: Option<Size>,
        /// First retry delay [sinks.kafka_rest.retry_backoff; default 100ms].
        #[arg(id = "KAFKA_RETRY_BACKOFF", long = "kafka-retry-backoff", env = "KSTATSD_KAFKA_RETRY_BACKOFF")]
        pub retry_backoff: Option<Period>,
        /// Longest retry delay [sinks.kafka_rest.retry_backoff_max; default 30s].
        #[arg(
            id = "KAFKA_RETRY_BACKOFF_MAX",
            long = "kafka-retry-backoff-max",
            env = "KSTATSD_KAFKA_RETRY_BACKOFF_MAX"
        )]
        pub retry_backoff_max: Option<Period>,
        /// For an https URL (or the native sink with --kafka-tls): a PEM file of the only CAs to trust
        /// [sinks.kafka_rest.ca_file, sinks.kafka.ca_file].
        #[arg(id = "KAFKA_CA_FILE", long = "kafka-ca-file", env = "KSTATSD_KAFKA_CA_FILE")]
        pub ca_file: Option<PathBuf>,
    }
}

/// The validated `[sinks.kafka_rest]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KafkaRestConfig {
    /// The proxy's base URL, without credentials.
    #[serde(serialize_with = "ser_base")]
    pub url: ProxyUrl,
    pub topic: String,
    pub format: KafkaFormat,
    pub content_type: KafkaContentType,
    pub key: RecordKey,
    /// Basic auth, from the fields or from the URL (the fields win).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Bound on one request, connect to last byte of the answer.
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// Bound on each attempt after one timed out, until one is answered (the proxy may still be
    /// producing the request that timed out: do not stack copies).
    #[serde(serialize_with = "ser_duration")]
    pub resend_timeout: Duration,
    /// Largest record value; a larger flush is split into several records.
    pub max_record_bytes: usize,
    /// Largest request body; a flush of many records is split into several requests.
    pub max_request_bytes: usize,
    /// Bound on the unsent payloads; the oldest is dropped (and counted) when it is reached.
    pub max_queue_bytes: usize,
    /// First retry delay; it doubles up to `retry_backoff_max` (jittered; `Retry-After` wins).
    #[serde(serialize_with = "ser_duration")]
    pub retry_backoff: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub retry_backoff_max: Duration,
    /// For an https URL: the only certificate authorities trusted (else the built-in roots).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<CaFile>,
}

fn ser_base<S: Serializer>(url: &ProxyUrl, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&url.base())
}

/// `flat`: one JSON object per flush (statsd-kafka-backend's shape). `tagged`: one per series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KafkaFormat {
    Flat,
    Tagged,
}

impl FromStr for KafkaFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<KafkaFormat, String> {
        match s {
            "flat" => Ok(KafkaFormat::Flat),
            "tagged" => Ok(KafkaFormat::Tagged),
            other => Err(format!("`{other}` is not flat or tagged")),
        }
    }
}

crate::deserialize_from_str!(KafkaFormat);

/// The REST Proxy embedded formats kstatsd can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaContentType {
    /// `application/vnd.kafka.json.v2+json` (the default).
    JsonV2,
    /// `application/vnd.kafka.json.v1+json`: what statsd-kafka-backend sent; gone since
    /// Confluent Platform 6.0.
    JsonV1,
    /// `application/vnd.kafka.binary.v2+json`: key and value base64-encoded.
    BinaryV2,
}

impl KafkaContentType {
    const ALL: [KafkaContentType; 3] =
        [KafkaContentType::JsonV2, KafkaContentType::JsonV1, KafkaContentType::BinaryV2];

    pub fn media_type(self) -> &'static str {
        match self {
            KafkaContentType::JsonV2 => "application/vnd.kafka.json.v2+json",
            KafkaContentType::JsonV1 => "application/vnd.kafka.json.v1+json",
            KafkaContentType::BinaryV2 => "application/vnd.kafka.binary.v2+json",
        }
    }

    /// The `Accept` header that goes with it.
    pub fn accept(self) -> &'static str {
        match self {
            KafkaContentType::JsonV1 => "application/vnd.kafka.v1+json, application/json",
            _ => "application/vnd.kafka.v2+json, application/json",
        }
    }
}

impl FromStr for KafkaContentType {
    type Err = String;
    fn from_str(s: &str) -> Result<KafkaContentType, String> {
        KafkaContentType::ALL.into_iter().find(|c| c.media_type().eq_ignore_ascii_case(s.trim())).ok_or_else(
            || {
                let all: Vec<&str> = KafkaContentType::ALL.iter().map(|c| c.media_type()).collect();
                format!("`{s}` is not one of {}", all.join(", "))
            },
        )
    }
}

crate::deserialize_from_str!(KafkaContentType);

impl Serialize for KafkaContentType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.media_type())
    }
}

/// The Kafka record key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    /// This host's name (the default): one host's records stay in order in one partition.
    Hostname,
    None,
    Fixed(String),
}

impl RecordKey {
    /// A Kafka sink's `key` (default hostname) under `section`.
    pub fn parse(text: Option<&str>, section: &str) -> Result<RecordKey, ConfigError> {
        match text.unwrap_or("hostname") {
            "hostname" => Ok(RecordKey::Hostname),
            "none" => Ok(RecordKey::None),
            "" => err(format!("{section}.key must not be empty (use \"none\" for no key)")),
            k => Ok(RecordKey::Fixed(k.to_string())),
        }
    }
}

impl Serialize for RecordKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            RecordKey::Hostname => "hostname",
            RecordKey::None => "none",
            RecordKey::Fixed(k) => k,
        })
    }
}

/// A Kafka sink's `topic` (required) under `section`.
pub fn kafka_topic(topic: Option<&String>, section: &str) -> Result<String, ConfigError> {
    let topic = topic
        .cloned()
        .ok_or_else(|| ConfigError(format!("{section}.topic is required (or --kafka-topic TOPIC)")))?;
    if topic.is_empty()
        || topic.len() > 249
        || topic == "."
        || topic == ".."
        || !topic.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return err(format!(
            "{section}.topic: `{topic}` is not a Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)"
        ));
    }
    Ok(topic)
}

impl KafkaRestConfig {
    /// Validates `[sinks.kafka_rest]` (`file`) under its flags; `None` when no URL is given
    /// anywhere.
    pub fn validate(
        file: Option<KafkaRestSection>,
        flags: &KafkaRestSection,
    ) -> Result<Option<KafkaRestConfig>, ConfigError> {
        let present = file.is_some();
        let s = flags.clone().or(file.unwrap_or_default());
        let Some(url_text) = &s.url else {
            if present {
                return err(format!("{W}.url is required (or --kafka-rest URL)"));
            }
            if let Some(field) = flags.set_fields().first() {
                return err(format!(
                    "--kafka-{} (or its KSTATSD_KAFKA_… variable) is set but no Kafka REST Proxy URL is: \
                     add --kafka-rest URL or {W}.url",
                    field.replace('_', "-")
                ));
            }
            return Ok(None);
        };
        let (url, creds) = ProxyUrl::parse(&url_text.0).map_err(|e| ConfigError(format!("{W}.url {e}")))?;

        let topic = kafka_topic(s.topic.as_ref(), W)?;
        let format = s.format.unwrap_or(KafkaFormat::Flat);
        let content_type = s.content_type.unwrap_or(KafkaContentType::JsonV2);
        let key = RecordKey::parse(s.key.as_deref(), W)?;
        let username = s.username.or(creds.username.map(Secret));
        let password = s.password.or(creds.password.map(Secret));
        if password.is_some() && username.is_none() {
            return err(format!("{W}: a password is set but no username"));
        }
        if username.as_ref().is_some_and(|u| u.0.contains(':')) {
            return err(format!("{W}.username must not contain `:` (basic auth)"));
        }

        let timeout = Period::or(s.timeout, Duration::from_secs(5));
        if timeout.is_zero() {
            return err(format!("{W}.timeout must be above 0"));
        }
        let resend_timeout = Period::or(s.resend_timeout, Duration::from_secs(360));
        if resend_timeout < timeout {
            return err(format!("{W}.resend_timeout must be at least timeout"));
        }
        let max_record_bytes = Size::or(s.max_record_bytes, 900 << 10, &format!("{W}.max_record_bytes"))?;
        if !(1024..=(64 << 20)).contains(&max_record_bytes) {
            return err(format!("{W}.max_record_bytes must be between 1KiB and 64MiB"));
        }
        // One record of max_record_bytes, encoded (base64 for the binary type), with its key and
        // the request's own brackets, must fit in a request.
        let encoded = match content_type {
            KafkaContentType::BinaryV2 => max_record_bytes.div_ceil(3) * 4,
            _ => max_record_bytes,
        };
        let key_len = match &key {
            RecordKey::Fixed(k) => k.len() * 6,
            _ => 1024,
        };
        let min_request = encoded + key_len + 64;
        let max_request_bytes = Size::or(
            s.max_request_bytes,
            // Under Karapace's body limit (aiohttp's 1 MiB `client_max_size`, which a body of
            // 1 MiB already reaches): a default flush never needs a 413 round trip.
            (1000u64 << 10).max(min_request as u64),
            &format!("{W}.max_request_bytes"),
        )?;
        if max_request_bytes < min_request || max_request_bytes > (256 << 20) {
            return err(format!(
                "{W}.max_request_bytes must be between {min_request} bytes (one record of \
                 max_record_bytes, encoded, with its key) and 256MiB"
            ));
        }
        let max_queue_bytes = queue_bytes(s.max_queue_bytes, max_request_bytes, W)?;
        let (retry_backoff, retry_backoff_max) =
            backoff(s.retry_backoff, s.retry_backoff_max, Duration::from_secs(30), W)?;
        let ca_file = ca_file_for(s.ca_file.as_deref(), url.base().starts_with("https://"), W)?;
        Ok(Some(KafkaRestConfig {
            url,
            topic,
            format,
            content_type,
            key,
            username,
            password,
            timeout,
            resend_timeout,
            max_record_bytes,
            max_request_bytes,
            max_queue_bytes,
            retry_backoff,
            retry_backoff_max,
            ca_file,
        }))
    }
}
