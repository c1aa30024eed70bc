//! The Graphite sink's configuration, `[sinks.graphite]` and the `--graphite-…` flags
//! (`KSTATSD_GRAPHITE_…`): the raw section, read from the file and from the command line alike,
//! and [`GraphiteConfig::validate`], which turns it into typed values (its defaults are there)
//! or says what to change. The typed config serializes itself for `--check-config` and the
//! admin `config` command. Runs on the main thread at start-up and on the reload thread at
//! SIGHUP; `crate::config` only composes it.

use crate::settings::{backoff, err, ser_duration, timeout, ConfigError, Period, Size};
use serde::{Serialize, Serializer};
use std::str::FromStr;
use std::time::Duration;

const W: &str = "sinks.graphite";

crate::section! {
    /// `[sinks.graphite]`, and the flags that override it: any `--graphite-…` flag turns the
    /// sink on.
    pub struct GraphiteSection {
        /// `host:port` (`[v6]:port`); or `host` and `port` apart (the deviantART fork's names).
        #[arg(skip)]
        pub address: Option<String>,
        /// Graphite sink: carbon's host; any --graphite-* flag turns the sink on
        /// [sinks.graphite.host; default 127.0.0.1].
        #[arg(id = "GRAPHITE_HOST", long = "graphite-host", env = "KSTATSD_GRAPHITE_HOST")]
        pub host: Option<String>,
        /// Carbon's port [sinks.graphite.port; default 2003 plaintext, 2004 pickle].
        #[arg(id = "GRAPHITE_PORT", long = "graphite-port", env = "KSTATSD_GRAPHITE_PORT")]
        pub port: Option<u16>,
        /// plaintext or pickle [sinks.graphite.protocol; default plaintext].
        #[arg(id = "GRAPHITE_PROTOCOL", long = "graphite-protocol", env = "KSTATSD_GRAPHITE_PROTOCOL")]
        pub protocol: Option<GraphiteProtocol>,
        /// Bound on connecting and on writing one flush [sinks.graphite.timeout; default 10s].
        #[arg(id = "GRAPHITE_TIMEOUT", long = "graphite-timeout", env = "KSTATSD_GRAPHITE_TIMEOUT")]
        pub timeout: Option<Period>,
        /// Bound on unsent flushes; the oldest are dropped past it [sinks.graphite.max_queue_bytes;
        /// default 64MiB].
        #[arg(
            id = "GRAPHITE_MAX_QUEUE_BYTES",
            long = "graphite-max-queue-bytes",
            env = "KSTATSD_GRAPHITE_MAX_QUEUE_BYTES"
        )]
        pub max_queue_bytes: Option<Size>,
        /// First retry delay [sinks.graphite.retry_backoff; default 100ms].
        #[arg(
            id = "GRAPHITE_RETRY_BACKOFF",
            long = "graphite-retry-backoff",
            env = "KSTATSD_GRAPHITE_RETRY_BACKOFF"
        )]
        pub retry_backoff: Option<Period>,
        /// Longest retry delay [sinks.graphite.retry_backoff_max; default 10s].
        #[arg(
            id = "GRAPHITE_RETRY_BACKOFF_MAX",
            long = "graphite-retry-backoff-max",
            env = "KSTATSD_GRAPHITE_RETRY_BACKOFF_MAX"
        )]
        pub retry_backoff_max: Option<Period>,
    }
}

/// Carbon's two TCP receivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GraphiteProtocol {
    /// `name value timestamp\n` lines (carbon's port 2003).
    Plaintext,
    /// Length-prefixed pickle frames (carbon's port 2004).
    Pickle,
}

impl FromStr for GraphiteProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<GraphiteProtocol, String> {
        match s {
            "plaintext" | "line" => Ok(GraphiteProtocol::Plaintext),
            "pickle" => Ok(GraphiteProtocol::Pickle),
            other => Err(format!("`{other}` is not plaintext or pickle")),
        }
    }
}

crate::deserialize_from_str!(GraphiteProtocol);

/// The validated `[sinks.graphite]`.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphiteConfig {
    /// Host name or IP (without brackets); resolved at each connection.
    pub host: String,
    pub port: u16,
    pub protocol: GraphiteProtocol,
    /// Bound on connecting and on writing one flush.
    pub timeout: Duration,
    /// Bound on the unsent flushes; the oldest is dropped (and counted) past it.
    pub max_queue_bytes: usize,
    /// First wait after a failed attempt; it doubles up to `retry_backoff_max`.
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
}

/// Printed with `address` (`host:port`) in place of `host` and `port`.
impl Serialize for GraphiteConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shown {
            address: String,
            protocol: GraphiteProtocol,
            #[serde(serialize_with = "ser_duration")]
            timeout: Duration,
            max_queue_bytes: usize,
            #[serde(serialize_with = "ser_duration")]
            retry_backoff: Duration,
            #[serde(serialize_with = "ser_duration")]
            retry_backoff_max: Duration,
        }
        Shown {
            address: self.address(),
            protocol: self.protocol,
            timeout: self.timeout,
            max_queue_bytes: self.max_queue_bytes,
            retry_backoff: self.retry_backoff,
            retry_backoff_max: self.retry_backoff_max,
        }
        .serialize(s)
    }
}

impl GraphiteConfig {
    /// `host:port`, with brackets around an IPv6 host.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Validates `[sinks.graphite]` (`file`) under its flags; `None` when neither the section
    /// nor any `--graphite-…` flag (or variable) is given. The flags' host and port replace the
    /// parts of the file's `address`.
    pub fn validate(
        file: Option<GraphiteSection>,
        flags: &GraphiteSection,
    ) -> Result<Option<GraphiteConfig>, ConfigError> {
        if file.is_none() && flags.set_fields().is_empty() {
            return Ok(None);
        }
        let mut f = file.unwrap_or_default();
        if let Some(a) = f.address.take() {
            if f.host.is_some() || f.port.is_some() {
                return err(format!("{W}: give either address, or host and port, not both"));
            }
            (f.host, f.port) = split_host_port(&a).map_err(|e| ConfigError(format!("{W}.address: {e}")))?;
        }
        let s = flags.clone().or(f);
        let protocol = s.protocol.unwrap_or(GraphiteProtocol::Plaintext);
        let default_port = match protocol {
            GraphiteProtocol::Plaintext => 2003,
            GraphiteProtocol::Pickle => 2004,
        };
        let host = s.host.unwrap_or_else(|| "127.0.0.1".into());
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
            return err(format!("{W}.host: `{host}` is not a host name or IP address"));
        }
        let port = s.port.unwrap_or(default_port);
        if port == 0 {
            return err(format!("{W}.port must not be 0"));
        }
        let timeout = timeout(s.timeout, W)?;
        let max_queue_bytes = Size::or(s.max_queue_bytes, 64 << 20, &format!("{W}.max_queue_bytes"))?;
        if max_queue_bytes < 1024 {
            return err(format!("{W}.max_queue_bytes must be at least 1KiB"));
        }
        let (retry_backoff, retry_backoff_max) =
            backoff(s.retry_backoff, s.retry_backoff_max, Duration::from_secs(10), W)?;
        Ok(Some(GraphiteConfig {
            host,
            port,
            protocol,
            timeout,
            max_queue_bytes,
            retry_backoff,
            retry_backoff_max,
        }))
    }
}

/// `host:port`, `[v6]:port`, or a bare `host` (port `None`).
fn split_host_port(a: &str) -> Result<(Option<String>, Option<u16>), String> {
    let a = a.trim();
    let bad_port = |p: &str| format!("`{p}` is not a port number");
    if let Some(rest) = a.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| format!("`{a}`: unclosed `[`"))?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((Some(host.to_string()), Some(p.parse().map_err(|_| bad_port(p))?))),
            None if after.is_empty() => Ok((Some(host.to_string()), None)),
            None => Err(format!("`{a}` is not host:port")),
        };
    }
    match a.split_once(':') {
        Some((_, rest)) if rest.contains(':') => {
            Err(format!("`{a}`: write an IPv6 address in brackets, e.g. [::1]:2003"))
        }
        Some((host, p)) => Ok((Some(host.to_string()), Some(p.parse().map_err(|_| bad_port(p))?))),
        None => Ok((Some(a.to_string()), None)),
    }
}
