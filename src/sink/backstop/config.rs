//! The Backstop sink's configuration, `[sinks.backstop]` and the `--backstop-…` flags
//! (`KSTATSD_BACKSTOP_…`, and docker-stats-to-backstop's `--backstop` / `SRV_BACKSTOP`): the raw
//! section, read from the file and the command line alike, and [`BackstopConfig::validate`]
//! into typed values (its defaults are there). The typed config serializes itself, the URL's
//! credentials redacted. Runs on the main thread at start-up and on the reload thread at SIGHUP;
//! `crate::config` only composes it.

use super::PublishUrl;
use crate::settings::{backoff, err, queue_bytes, ser_duration, timeout, ConfigError, Period, Secret, Size};
use crate::sink::tls::{ca_file_for, CaFile};
use serde::{Serialize, Serializer};
use std::path::PathBuf;
use std::time::Duration;

const W: &str = "sinks.backstop";

crate::section! {
    /// `[sinks.backstop]`, and the flags that override it: any of them turns the sink on.
    pub struct BackstopSection {
        /// Backstop sink: the publish URL, http(s)://[user:password@]host[:port]/publish/NAME; any
        /// --backstop-* flag turns the sink on [sinks.backstop.url].
        #[arg(id = "BACKSTOP_URL", long = "backstop-url", env = "KSTATSD_BACKSTOP_URL", hide_env_values = true)]
        pub url: Option<Secret>,
        /// Backstop publish URL, as docker-stats-to-backstop's --backstop (same as --backstop-url)
        /// [sinks.backstop.url].
        #[arg(id = "BACKSTOP", long = "backstop", env = "SRV_BACKSTOP", hide_env_values = true)]
        #[serde(skip)]
        pub srv_backstop: Option<Secret>,
        /// Bound on one POST [sinks.backstop.timeout; default 10s].
        #[arg(id = "BACKSTOP_TIMEOUT", long = "backstop-timeout", env = "KSTATSD_BACKSTOP_TIMEOUT")]
        pub timeout: Option<Period>,
        /// Largest POST body; a larger flush is split [sinks.backstop.max_request_bytes; 1MiB].
        #[arg(
            id = "BACKSTOP_MAX_REQUEST_BYTES",
            long = "backstop-max-request-bytes",
            env = "KSTATSD_BACKSTOP_MAX_REQUEST_BYTES"
        )]
        pub max_request_bytes: Option<Size>,
        /// Bound on unsent bodies; the oldest are dropped past it [sinks.backstop.max_queue_bytes;
        /// default 64MiB].
        #[arg(
            id = "BACKSTOP_MAX_QUEUE_BYTES",
            long = "backstop-max-queue-bytes",
            env = "KSTATSD_BACKSTOP_MAX_QUEUE_BYTES"
        )]
        pub max_queue_bytes: Option<Size>,
        /// First retry delay [sinks.backstop.retry_backoff; default 100ms].
        #[arg(
            id = "BACKSTOP_RETRY_BACKOFF",
            long = "backstop-retry-backoff",
            env = "KSTATSD_BACKSTOP_RETRY_BACKOFF"
        )]
        pub retry_backoff: Option<Period>,
        /// Longest retry delay [sinks.backstop.retry_backoff_max; default 10s].
        #[arg(
            id = "BACKSTOP_RETRY_BACKOFF_MAX",
            long = "backstop-retry-backoff-max",
            env = "KSTATSD_BACKSTOP_RETRY_BACKOFF_MAX"
        )]
        pub retry_backoff_max: Option<Period>,
        /// For an https URL: a PEM file of the only CAs to trust, instead of the built-in public roots
        /// [sinks.backstop.ca_file].
        #[arg(id = "BACKSTOP_CA_FILE", long = "backstop-ca-file", env = "KSTATSD_BACKSTOP_CA_FILE")]
        pub ca_file: Option<PathBuf>,
    }
}

/// The validated `[sinks.backstop]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackstopConfig {
    /// The publish URL; credentials kept apart and never printed.
    #[serde(serialize_with = "ser_url")]
    pub url: PublishUrl,
    /// Bound on one POST, connect to the last byte of the answer.
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// Largest request body; a larger flush is split into several POSTs.
    pub max_request_bytes: usize,
    /// Bound on the unsent bodies; the oldest is dropped (and counted) past it.
    pub max_queue_bytes: usize,
    #[serde(serialize_with = "ser_duration")]
    pub retry_backoff: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub retry_backoff_max: Duration,
    /// For an https URL: the only certificate authorities trusted (else the built-in roots).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<CaFile>,
}

/// The URL as its `Display` shows it: credentials replaced by `<redacted>`.
fn ser_url<S: Serializer>(url: &PublishUrl, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&url.to_string())
}

impl BackstopConfig {
    /// Validates `[sinks.backstop]` (`file`) under its flags; `None` when neither the section
    /// nor any `--backstop-…` flag (or variable) is given.
    pub fn validate(
        file: Option<BackstopSection>,
        flags: &BackstopSection,
    ) -> Result<Option<BackstopConfig>, ConfigError> {
        if file.is_none() && flags.set_fields().is_empty() {
            return Ok(None);
        }
        let mut flags = flags.clone();
        flags.url = flags.url.or(flags.srv_backstop.take());
        let s = flags.or(file.unwrap_or_default());
        let url = s.url.ok_or_else(|| ConfigError(format!("{W}.url is required (or --backstop-url URL)")))?;
        let url = PublishUrl::parse(&url.0).map_err(|e| ConfigError(format!("{W}.url {e}")))?;
        let timeout = timeout(s.timeout, W)?;
        let max_request_bytes = Size::or(s.max_request_bytes, 1 << 20, &format!("{W}.max_request_bytes"))?;
        if !(1024..=(64 << 20)).contains(&max_request_bytes) {
            return err(format!("{W}.max_request_bytes must be between 1KiB and 64MiB"));
        }
        let max_queue_bytes = queue_bytes(s.max_queue_bytes, max_request_bytes, W)?;
        let (retry_backoff, retry_backoff_max) =
            backoff(s.retry_backoff, s.retry_backoff_max, Duration::from_secs(10), W)?;
        let https = url.without_credentials().starts_with("https://");
        let ca_file = ca_file_for(s.ca_file.as_deref(), https, W)?;
        Ok(Some(BackstopConfig {
            url,
            timeout,
            max_request_bytes,
            max_queue_bytes,
            retry_backoff,
            retry_backoff_max,
            ca_file,
        }))
    }
}
