//! The native Kafka sink's configuration, `[sinks.kafka]`: the file's raw section (every field
//! optional, unknown keys refused), the flags that override it, and [`KafkaConfig::validate`],
//! which turns both into typed values (durations, sizes, [`Secret`] credentials) or says what to
//! change. The typed config serializes itself for `--check-config` and the admin `config`
//! command, credentials redacted. Runs on the main thread at start-up and on the ingest thread
//! at a reload; `crate::config` only composes it.
//!
//! Some flags are shared with the REST-proxy sink (`--kafka-topic`, `--kafka-format`,
//! `--kafka-key`, `--kafka-timeout`, `--kafka-max-record-bytes`, `--kafka-max-queue-bytes`,
//! `--kafka-username`, `--kafka-password`, `--kafka-ca-file`): each applies to every Kafka
//! sink that is configured, so they arrive here as that sink's [`KafkaRestOverrides`].

use crate::settings::{ser_duration, split_list, ConfigError, Period, Secret, Size};
use crate::sink::kafka_rest::config::{kafka_topic, KafkaFormat, KafkaRestSection, RecordKey};
use crate::sink::tls::CaFile;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

const W: &str = "sinks.kafka";

crate::section! {
    /// `[sinks.kafka]`, and the native sink's own flags (`KSTATSD_KAFKA_…`); the keys it shares
    /// with the REST-proxy sink take their flags from [`KafkaRestSection`].
    pub struct KafkaSection {
        /// Native Kafka sink: bootstrap brokers, HOST:PORT (repeatable or comma-separated); turns the
        /// sink on [sinks.kafka.brokers]. The shared --kafka-topic, --kafka-format, --kafka-key,
        /// --kafka-timeout, --kafka-max-record-bytes, --kafka-max-queue-bytes, --kafka-username,
        /// --kafka-password and --kafka-ca-file apply to it too.
        #[arg(id = "KAFKA_BROKERS", long = "kafka-brokers", env = "KSTATSD_KAFKA_BROKERS", value_delimiter = ',')]
        pub brokers: Option<Vec<String>>,
        #[arg(skip)]
        pub topic: Option<String>,
        #[arg(skip)]
        pub format: Option<KafkaFormat>,
        #[arg(skip)]
        pub key: Option<String>,
        /// all (idempotent), 1 or 0 [sinks.kafka.acks; default all].
        #[arg(id = "KAFKA_ACKS", long = "kafka-acks", env = "KSTATSD_KAFKA_ACKS")]
        pub acks: Option<String>,
        /// none, gzip, snappy, lz4 or zstd [sinks.kafka.compression; default none].
        #[arg(id = "KAFKA_COMPRESSION", long = "kafka-compression", env = "KSTATSD_KAFKA_COMPRESSION")]
        pub compression: Option<String>,
        #[arg(skip)]
        pub timeout: Option<Period>,
        #[arg(skip)]
        pub max_record_bytes: Option<Size>,
        #[arg(skip)]
        pub max_queue_bytes: Option<Size>,
        /// TLS to the brokers (true/false) [sinks.kafka.tls; default false].
        #[arg(id = "KAFKA_TLS", long = "kafka-tls", env = "KSTATSD_KAFKA_TLS")]
        pub tls: Option<bool>,
        #[arg(skip)]
        pub ca_file: Option<PathBuf>,
        /// SASL: plain, scram-sha-256 or scram-sha-512, with --kafka-username and --kafka-password
        /// [sinks.kafka.sasl_mechanism].
        #[arg(id = "KAFKA_SASL_MECHANISM", long = "kafka-sasl-mechanism", env = "KSTATSD_KAFKA_SASL_MECHANISM")]
        pub sasl_mechanism: Option<String>,
        #[arg(skip)]
        pub username: Option<Secret>,
        #[arg(skip)]
        pub password: Option<Secret>,
    }
}

/// How many replicas must have a record before the broker acknowledges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Acks {
    /// Every in-sync replica; the producer is idempotent (the default).
    #[serde(rename = "all")]
    All,
    /// The partition leader only; not idempotent.
    #[serde(rename = "1")]
    Leader,
    /// No acknowledgement at all; not idempotent, and a lost record is never known.
    #[serde(rename = "0")]
    None,
}

impl Acks {
    /// librdkafka's `acks`.
    pub fn librdkafka(self) -> &'static str {
        match self {
            Acks::All => "all",
            Acks::Leader => "1",
            Acks::None => "0",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    const ALL: [(Compression, &'static str); 5] = [
        (Compression::None, "none"),
        (Compression::Gzip, "gzip"),
        (Compression::Snappy, "snappy"),
        (Compression::Lz4, "lz4"),
        (Compression::Zstd, "zstd"),
    ];

    /// librdkafka's `compression.codec` (the same words).
    pub fn librdkafka(self) -> &'static str {
        Compression::ALL.iter().find(|(c, _)| *c == self).map_or("none", |(_, n)| n)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SaslMechanism {
    #[serde(rename = "plain")]
    Plain,
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// librdkafka's `sasl.mechanism`.
    pub fn librdkafka(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// The validated `[sinks.kafka]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    pub topic: String,
    pub format: KafkaFormat,
    pub key: RecordKey,
    pub acks: Acks,
    pub compression: Compression,
    /// librdkafka's `message.timeout.ms`: a record not acknowledged by then is dropped.
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// Largest record value; a larger flush is split into several records.
    pub max_record_bytes: usize,
    /// Bound on the records librdkafka holds unacknowledged (`queue.buffering.max.kbytes`).
    pub max_queue_bytes: usize,
    pub tls: bool,
    /// With `tls`: the only certificate authorities trusted (else the system's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<CaFile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sasl_mechanism: Option<SaslMechanism>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
}

impl KafkaConfig {
    /// Validates `[sinks.kafka]` (`file`) under its own flags (`own`) and the flags shared with
    /// the REST-proxy sink (`shared`); `None` when no broker is given anywhere.
    pub fn validate(
        file: Option<KafkaSection>,
        own: &KafkaSection,
        shared: &KafkaRestSection,
    ) -> Result<Option<KafkaConfig>, ConfigError> {
        Self::check(file, own, shared).map_err(ConfigError)
    }

    fn check(
        file: Option<KafkaSection>,
        own: &KafkaSection,
        shared: &KafkaRestSection,
    ) -> Result<Option<KafkaConfig>, String> {
        let present = file.is_some();
        let shared = shared.clone();
        let flags = KafkaSection {
            topic: shared.topic,
            format: shared.format,
            key: shared.key,
            timeout: shared.timeout,
            max_record_bytes: shared.max_record_bytes,
            max_queue_bytes: shared.max_queue_bytes,
            ca_file: shared.ca_file,
            username: shared.username,
            password: shared.password,
            ..own.clone()
        };
        let f = flags.or(file.unwrap_or_default());
        let Some(list) = f.brokers.clone() else {
            if present {
                return Err(format!("{W}.brokers is required (or --kafka-brokers HOST:PORT,…)"));
            }
            if let Some(field) = own.set_fields().first() {
                return Err(format!(
                    "--kafka-{} (or its KSTATSD_KAFKA_… variable) is set but no Kafka broker is: add \
                     --kafka-brokers HOST:PORT or {W}.brokers",
                    field.replace('_', "-")
                ));
            }
            return Ok(None);
        };
        let brokers = split_list(Some(list));
        if brokers.is_empty() {
            return Err(format!("{W}.brokers is empty"));
        }
        for b in &brokers {
            let port = b.rsplit_once(':').map(|(host, port)| (host, port.parse::<u16>()));
            if !matches!(port, Some((host, Ok(p))) if !host.is_empty() && p > 0) {
                return Err(format!("{W}.brokers: `{b}` is not HOST:PORT"));
            }
        }

        let topic = kafka_topic(f.topic.as_ref(), W).map_err(|e| e.0)?;
        let format = f.format.unwrap_or(KafkaFormat::Flat);
        let key = RecordKey::parse(f.key.as_deref(), W).map_err(|e| e.0)?;
        let acks = match f.acks.as_deref().unwrap_or("all") {
            "all" | "-1" => Acks::All,
            "1" => Acks::Leader,
            "0" => Acks::None,
            other => return Err(format!("{W}.acks: `{other}` is not all, 1 or 0")),
        };
        let compression_text = f.compression.as_deref().unwrap_or("none");
        let compression =
            Compression::ALL.iter().find(|(_, n)| *n == compression_text).map(|(c, _)| *c).ok_or_else(
                || format!("{W}.compression: `{compression_text}` is not none, gzip, snappy, lz4 or zstd"),
            )?;

        let timeout = Period::or(f.timeout, Duration::from_secs(30));
        if timeout < Duration::from_millis(1) || timeout.as_millis() > i32::MAX as u128 {
            return Err(format!("{W}.timeout must be between 1ms and 24 days"));
        }
        let size = |v: Option<Size>, default: u64, what: &str| {
            Size::or(v, default, &format!("{W}.{what}")).map_err(|e| e.0)
        };
        let max_record_bytes = size(f.max_record_bytes, 900 << 10, "max_record_bytes")?;
        if !(1024..=(64 << 20)).contains(&max_record_bytes) {
            return Err(format!("{W}.max_record_bytes must be between 1KiB and 64MiB"));
        }
        let max_queue_bytes = size(f.max_queue_bytes, 64 << 20, "max_queue_bytes")?;
        // librdkafka counts the queue in KiB, up to i32::MAX of them.
        if max_queue_bytes < 2 * max_record_bytes || max_queue_bytes / 1024 > i32::MAX as usize {
            return Err(format!(
                "{W}.max_queue_bytes ({max_queue_bytes}) must be at least twice max_record_bytes \
                 ({max_record_bytes}) and at most 2TiB"
            ));
        }

        let tls = f.tls.unwrap_or(false);
        let ca_file = match &f.ca_file {
            None => None,
            Some(_) if !tls => {
                return Err(format!("{W}.ca_file is set but tls is not (tls = true, or --kafka-tls true)"))
            }
            Some(path) => Some(CaFile::load(path).map_err(|e| format!("{W}.ca_file: {e}"))?),
        };
        let sasl_mechanism = match f.sasl_mechanism.as_deref() {
            None => None,
            Some("plain" | "PLAIN") => Some(SaslMechanism::Plain),
            Some("scram-sha-256" | "SCRAM-SHA-256") => Some(SaslMechanism::ScramSha256),
            Some("scram-sha-512" | "SCRAM-SHA-512") => Some(SaslMechanism::ScramSha512),
            Some(other) => {
                return Err(format!(
                    "{W}.sasl_mechanism: `{other}` is not plain, scram-sha-256 or scram-sha-512"
                ))
            }
        };
        let (username, password) = (f.username, f.password);
        match (sasl_mechanism, &username, &password) {
            (Some(_), Some(_), Some(_)) | (None, None, None) => {}
            (Some(_), _, _) => return Err(format!("{W}: sasl_mechanism needs both username and password")),
            (None, _, _) => {
                return Err(format!(
                    "{W}: a username or password is set but no sasl_mechanism (plain, scram-sha-256, scram-sha-512)"
                ))
            }
        }
        Ok(Some(KafkaConfig {
            brokers,
            topic,
            format,
            key,
            acks,
            compression,
            timeout,
            max_record_bytes,
            max_queue_bytes,
            tls,
            ca_file,
            sasl_mechanism,
            username,
            password,
        }))
    }

    /// Whether librdkafka's idempotent producer is on (it needs `acks = all`).
    pub fn idempotent(&self) -> bool {
        self.acks == Acks::All
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> KafkaSection {
        toml::from_str(text).unwrap()
    }

    fn ok(text: &str) -> KafkaConfig {
        KafkaConfig::validate(Some(file(text)), &KafkaSection::default(), &KafkaRestSection::default())
            .unwrap()
            .unwrap()
    }

    /// The error a section gives, when it is read or when it is validated.
    fn bad(text: &str) -> String {
        match toml::from_str::<KafkaSection>(text) {
            Err(e) => e.to_string(),
            Ok(f) => {
                KafkaConfig::validate(Some(f), &KafkaSection::default(), &KafkaRestSection::default())
                    .unwrap_err()
                    .0
            }
        }
    }

    /// The section as `--check-config` prints it.
    fn printed(k: &KafkaConfig) -> String {
        format!("[{W}]\n{}", toml::to_string(k).unwrap())
    }

    const MIN: &str = "brokers = [\"127.0.0.1:9092\"]\ntopic = \"metrics\"\n";

    #[test]
    fn defaults() {
        let k = ok(MIN);
        assert_eq!(k.brokers, vec!["127.0.0.1:9092".to_string()]);
        assert_eq!(
            (k.format, &k.key, k.acks, k.compression),
            (KafkaFormat::Flat, &RecordKey::Hostname, Acks::All, Compression::None)
        );
        assert_eq!(k.timeout, Duration::from_secs(30));
        assert_eq!((k.max_record_bytes, k.max_queue_bytes), (900 << 10, 64 << 20));
        assert!(!k.tls && k.ca_file.is_none() && k.sasl_mechanism.is_none());
        assert!(k.idempotent());
        let none = KafkaConfig::validate(None, &KafkaSection::default(), &KafkaRestSection::default());
        assert_eq!(none.unwrap(), None);
    }

    #[test]
    fn flags_turn_it_on_and_shared_flags_apply() {
        let own = KafkaSection {
            brokers: Some(vec!["a:1,b:2".into()]),
            acks: Some("1".into()),
            compression: Some("zstd".into()),
            ..KafkaSection::default()
        };
        let shared = KafkaRestSection {
            topic: Some("t.1".into()),
            format: Some(KafkaFormat::Tagged),
            key: Some("rack-7".into()),
            timeout: Some("1500ms".parse().unwrap()),
            max_record_bytes: Some("64KiB".parse().unwrap()),
            ..KafkaRestSection::default()
        };
        let k = KafkaConfig::validate(None, &own, &shared).unwrap().unwrap();
        assert_eq!(k.brokers, vec!["a:1".to_string(), "b:2".to_string()]);
        assert_eq!(
            (k.topic.as_str(), k.format, &k.key),
            ("t.1", KafkaFormat::Tagged, &RecordKey::Fixed("rack-7".into()))
        );
        assert_eq!(
            (k.acks, k.compression, k.timeout),
            (Acks::Leader, Compression::Zstd, Duration::from_millis(1500))
        );
        assert_eq!(k.max_record_bytes, 64 << 10);
        assert!(!k.idempotent());
        // The flag beats the file.
        let k = KafkaConfig::validate(Some(file(MIN)), &own, &shared).unwrap().unwrap();
        assert_eq!((k.brokers.len(), k.topic.as_str()), (2, "t.1"));
        // Its own flags without a broker say what is missing.
        let e = KafkaConfig::validate(
            None,
            &KafkaSection { acks: Some("all".into()), ..KafkaSection::default() },
            &KafkaRestSection::default(),
        );
        assert!(e.unwrap_err().0.contains("--kafka-acks"));
    }

    #[test]
    fn bad_settings_say_what_to_change() {
        assert!(bad("topic = \"m\"").contains("brokers is required"));
        assert!(bad("brokers = [\"nohost\"]\ntopic = \"m\"").contains("not HOST:PORT"));
        assert!(bad("brokers = [\"h:0\"]\ntopic = \"m\"").contains("not HOST:PORT"));
        assert!(bad("brokers = []\ntopic = \"m\"").contains("empty"));
        assert!(bad("brokers = [\"h:1\"]").contains("topic is required"));
        assert!(bad(&format!("{MIN}format = \"csv\"")).contains("flat or tagged"));
        assert!(bad(&format!("{MIN}acks = \"2\"")).contains("all, 1 or 0"));
        assert!(bad(&format!("{MIN}compression = \"brotli\"")).contains("zstd"));
        assert!(bad(&format!("{MIN}timeout = \"0s\"")).contains("timeout"));
        assert!(bad(&format!("{MIN}max_record_bytes = 10")).contains("between 1KiB"));
        assert!(bad(&format!("{MIN}max_queue_bytes = \"1MiB\"")).contains("twice max_record_bytes"));
        assert!(bad(&format!("{MIN}ca_file = \"/x.pem\"")).contains("tls is not"));
        assert!(bad(&format!("{MIN}tls = true\nca_file = \"/nonexistent.pem\"")).contains("ca_file"));
        assert!(bad(&format!("{MIN}sasl_mechanism = \"gssapi\"")).contains("scram-sha-512"));
        assert!(bad(&format!("{MIN}sasl_mechanism = \"plain\"\nusername = \"u\"")).contains("both"));
        assert!(bad(&format!("{MIN}password = \"p\"")).contains("no sasl_mechanism"));
        assert!(bad(&format!("{MIN}key = \"\"")).contains("none"));
        assert!(bad(&format!("{MIN}colour = \"blue\"")).contains("unknown field"));
    }

    #[test]
    fn printed_redacted_and_reads_back_to_the_same_config() {
        let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/self-signed.crt.pem");
        let text = format!(
            "{MIN}format = \"tagged\"\nkey = \"none\"\ncompression = \"lz4\"\ntimeout = \"2s\"\ntls = true\n\
             ca_file = {ca:?}\nsasl_mechanism = \"scram-sha-512\"\nusername = \"alice\"\npassword = \"s3cret\"\n"
        );
        let k = ok(&text);
        let shown = printed(&k);
        assert!(shown.starts_with("[sinks.kafka]\n"), "{shown}");
        assert!(!shown.contains("s3cret") && !shown.contains("alice"), "{shown}");
        assert!(
            shown.contains("password = \"<redacted>\"") && shown.contains("timeout = \"2000ms\""),
            "{shown}"
        );
        assert!(!format!("{k:?}").contains("s3cret"));
        let back: toml::Table = toml::from_str(&shown).unwrap();
        let section = toml::to_string(&back["sinks"]["kafka"]).unwrap();
        let mut again = ok(&section);
        assert_eq!(again.password, Some(Secret("<redacted>".into())));
        again.username = Some(Secret("alice".into()));
        again.password = Some(Secret("s3cret".into()));
        assert_eq!(again, k);
        // The defaults print every key that has one.
        let shown = printed(&ok(MIN));
        for key in [
            "brokers",
            "topic",
            "format",
            "key",
            "acks",
            "compression",
            "timeout",
            "max_record_bytes",
            "max_queue_bytes",
            "tls",
        ] {
            assert!(shown.contains(&format!("\n{key} = ")), "{key}: {shown}");
        }
    }
}
