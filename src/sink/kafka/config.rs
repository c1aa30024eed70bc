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

use crate::config::{
    kafka_topic, pick_duration, pick_size, ConfigError, KafkaFormat, KafkaRestOverrides, RecordKey, Secret,
    Size,
};
use crate::sink::tls::CaFile;
use serde::{Deserialize, Serialize, Serializer};
use std::time::Duration;

const W: &str = "sinks.kafka";

/// `[sinks.kafka]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaFile {
    pub brokers: Option<Vec<String>>,
    pub topic: Option<String>,
    pub format: Option<String>,
    pub key: Option<String>,
    pub acks: Option<String>,
    pub compression: Option<String>,
    pub timeout: Option<String>,
    pub max_record_bytes: Option<Size>,
    pub max_queue_bytes: Option<Size>,
    pub tls: Option<bool>,
    pub ca_file: Option<String>,
    pub sasl_mechanism: Option<String>,
    pub username: Option<Secret>,
    pub password: Option<Secret>,
}

/// The native sink's own flags and `KSTATSD_KAFKA_…` variables.
#[derive(Debug, Default, Clone)]
pub struct KafkaOverrides {
    /// `host:port` entries (the flag is comma-separated).
    pub brokers: Option<Vec<String>>,
    pub acks: Option<String>,
    pub compression: Option<String>,
    pub sasl_mechanism: Option<String>,
    pub tls: Option<bool>,
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
    #[serde(serialize_with = "ser_format")]
    pub format: KafkaFormat,
    #[serde(serialize_with = "ser_key")]
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
    #[serde(serialize_with = "ser_ca_file", skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<CaFile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sasl_mechanism: Option<SaslMechanism>,
    #[serde(serialize_with = "ser_secret", skip_serializing_if = "Option::is_none")]
    pub username: Option<Secret>,
    #[serde(serialize_with = "ser_secret", skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
}

fn ser_format<S: Serializer>(f: &KafkaFormat, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match f {
        KafkaFormat::Flat => "flat",
        KafkaFormat::Tagged => "tagged",
    })
}

fn ser_key<S: Serializer>(k: &RecordKey, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match k {
        RecordKey::Hostname => "hostname",
        RecordKey::None => "none",
        RecordKey::Fixed(k) => k,
    })
}

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{}ms", d.as_millis()))
}

fn ser_ca_file<S: Serializer>(ca: &Option<CaFile>, s: S) -> Result<S::Ok, S::Error> {
    match ca {
        Some(ca) => s.serialize_str(&ca.path().display().to_string()),
        None => s.serialize_none(),
    }
}

fn ser_secret<S: Serializer>(_: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("<redacted>")
}

impl KafkaConfig {
    /// Validates `[sinks.kafka]` with its flags (`own`) and the flags shared with the REST-proxy
    /// sink (`shared`); `None` when no broker is given anywhere.
    pub fn validate(
        file: Option<&KafkaFile>,
        own: &KafkaOverrides,
        shared: &KafkaRestOverrides,
    ) -> Result<Option<KafkaConfig>, ConfigError> {
        Self::check(file, own, shared).map_err(ConfigError)
    }

    fn check(
        file: Option<&KafkaFile>,
        own: &KafkaOverrides,
        shared: &KafkaRestOverrides,
    ) -> Result<Option<KafkaConfig>, String> {
        let empty = KafkaFile::default();
        let f = file.unwrap_or(&empty);
        let Some(list) = own.brokers.as_ref().or(f.brokers.as_ref()) else {
            if file.is_some() {
                return Err(format!("{W}.brokers is required (or --kafka-brokers HOST:PORT,…)"));
            }
            let given = [
                ("--kafka-acks", own.acks.is_some()),
                ("--kafka-compression", own.compression.is_some()),
                ("--kafka-sasl-mechanism", own.sasl_mechanism.is_some()),
                ("--kafka-tls", own.tls.is_some()),
            ];
            if let Some((flag, _)) = given.iter().find(|(_, set)| *set) {
                return Err(format!(
                    "{flag} (or its KSTATSD_KAFKA_… variable) is set but no Kafka broker is: add \
                     --kafka-brokers HOST:PORT or {W}.brokers"
                ));
            }
            return Ok(None);
        };
        let brokers: Vec<String> = list
            .iter()
            .flat_map(|b| b.split(','))
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .map(String::from)
            .collect();
        if brokers.is_empty() {
            return Err(format!("{W}.brokers is empty"));
        }
        for b in &brokers {
            let port = b.rsplit_once(':').map(|(host, port)| (host, port.parse::<u16>()));
            if !matches!(port, Some((host, Ok(p))) if !host.is_empty() && p > 0) {
                return Err(format!("{W}.brokers: `{b}` is not HOST:PORT"));
            }
        }

        let topic = kafka_topic(shared.topic.as_ref().or(f.topic.as_ref()), W).map_err(|e| e.0)?;
        let format =
            KafkaFormat::parse(shared.format.as_deref().or(f.format.as_deref()), W).map_err(|e| e.0)?;
        let key = RecordKey::parse(shared.key.as_deref().or(f.key.as_deref()), W).map_err(|e| e.0)?;
        let acks = match own.acks.as_deref().or(f.acks.as_deref()).unwrap_or("all") {
            "all" | "-1" => Acks::All,
            "1" => Acks::Leader,
            "0" => Acks::None,
            other => return Err(format!("{W}.acks: `{other}` is not all, 1 or 0")),
        };
        let compression_text = own.compression.as_deref().or(f.compression.as_deref()).unwrap_or("none");
        let compression =
            Compression::ALL.iter().find(|(_, n)| *n == compression_text).map(|(c, _)| *c).ok_or_else(
                || format!("{W}.compression: `{compression_text}` is not none, gzip, snappy, lz4 or zstd"),
            )?;

        let timeout =
            pick_duration(&shared.timeout, &f.timeout, "30s", &format!("{W}.timeout")).map_err(|e| e.0)?;
        if timeout < Duration::from_millis(1) || timeout.as_millis() > i32::MAX as u128 {
            return Err(format!("{W}.timeout must be between 1ms and 24 days"));
        }
        let size = |ov: &Option<String>, file: Option<Size>, default: u64, what: &str| {
            pick_size(ov, file, default, &format!("{W}.{what}")).map_err(|e| e.0)
        };
        let max_record_bytes =
            size(&shared.max_record_bytes, f.max_record_bytes, 900 << 10, "max_record_bytes")?;
        if !(1024..=(64 << 20)).contains(&max_record_bytes) {
            return Err(format!("{W}.max_record_bytes must be between 1KiB and 64MiB"));
        }
        let max_queue_bytes = size(&shared.max_queue_bytes, f.max_queue_bytes, 64 << 20, "max_queue_bytes")?;
        // librdkafka counts the queue in KiB, up to i32::MAX of them.
        if max_queue_bytes < 2 * max_record_bytes || max_queue_bytes / 1024 > i32::MAX as usize {
            return Err(format!(
                "{W}.max_queue_bytes ({max_queue_bytes}) must be at least twice max_record_bytes \
                 ({max_record_bytes}) and at most 2TiB"
            ));
        }

        let tls = own.tls.or(f.tls).unwrap_or(false);
        let ca_file = match shared.ca_file.as_ref().or(f.ca_file.as_ref()) {
            None => None,
            Some(_) if !tls => {
                return Err(format!("{W}.ca_file is set but tls is not (tls = true, or --kafka-tls true)"))
            }
            Some(path) => {
                Some(CaFile::load(std::path::Path::new(path)).map_err(|e| format!("{W}.ca_file: {e}"))?)
            }
        };
        let sasl_mechanism = match own.sasl_mechanism.as_deref().or(f.sasl_mechanism.as_deref()) {
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
        let username = shared.username.clone().or_else(|| f.username.clone());
        let password = shared.password.clone().or_else(|| f.password.clone());
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

    /// The section as TOML (`[sinks.kafka]` and its keys), credentials redacted.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).unwrap_or_else(|e| format!("# cannot print [{W}]: {e}\n"));
        format!("[{W}]\n{body}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> KafkaFile {
        toml::from_str(text).unwrap()
    }

    fn ok(text: &str) -> KafkaConfig {
        KafkaConfig::validate(Some(&file(text)), &KafkaOverrides::default(), &KafkaRestOverrides::default())
            .unwrap()
            .unwrap()
    }

    fn bad(text: &str) -> String {
        KafkaConfig::validate(Some(&file(text)), &KafkaOverrides::default(), &KafkaRestOverrides::default())
            .unwrap_err()
            .0
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
        let none = KafkaConfig::validate(None, &KafkaOverrides::default(), &KafkaRestOverrides::default());
        assert_eq!(none.unwrap(), None);
    }

    #[test]
    fn flags_turn_it_on_and_shared_flags_apply() {
        let own = KafkaOverrides {
            brokers: Some(vec!["a:1,b:2".into()]),
            acks: Some("1".into()),
            compression: Some("zstd".into()),
            ..KafkaOverrides::default()
        };
        let shared = KafkaRestOverrides {
            topic: Some("t.1".into()),
            format: Some("tagged".into()),
            key: Some("rack-7".into()),
            timeout: Some("1500ms".into()),
            max_record_bytes: Some("64KiB".into()),
            ..KafkaRestOverrides::default()
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
        let k = KafkaConfig::validate(Some(&file(MIN)), &own, &shared).unwrap().unwrap();
        assert_eq!((k.brokers.len(), k.topic.as_str()), (2, "t.1"));
        // Its own flags without a broker say what is missing.
        let e = KafkaConfig::validate(
            None,
            &KafkaOverrides { acks: Some("all".into()), ..KafkaOverrides::default() },
            &KafkaRestOverrides::default(),
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
        let e = toml::from_str::<KafkaFile>(&format!("{MIN}colour = \"blue\"")).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }

    #[test]
    fn printed_redacted_and_reads_back_to_the_same_config() {
        let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/self-signed.crt.pem");
        let text = format!(
            "{MIN}format = \"tagged\"\nkey = \"none\"\ncompression = \"lz4\"\ntimeout = \"2s\"\ntls = true\n\
             ca_file = {ca:?}\nsasl_mechanism = \"scram-sha-512\"\nusername = \"alice\"\npassword = \"s3cret\"\n"
        );
        let k = ok(&text);
        let shown = k.to_toml();
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
        let shown = ok(MIN).to_toml();
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
