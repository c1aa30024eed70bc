//! Configuration: the TOML file format (serde, unknown keys refused; etsy statsd's config.js is
//! translated into the same structure by [`etsy`]), the command-line flags and
//! `KSTATSD_…` environment variables that override it, and the validation pass that turns all
//! of it into typed values. Defaults live here and nowhere else. Runs on the main thread at
//! start-up (and on reload).

use crate::aggregate::{KeyRules, Limits};
use crate::flush::summarize::{BinEdge, HistogramRule, Percentile};
use crate::net::framing::Framing;
use crate::sink::tls::CaFile;
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub mod etsy;
pub use etsy::ConfigFormat;

// ---------------------------------------------------------------------------------------------
// The file format
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerFile,
    #[serde(default)]
    pub aggregate: AggregateFile,
    #[serde(default)]
    pub sinks: SinksFile,
    /// `[docker]`: the Docker Engine stats source (see `crate::source::docker`).
    pub docker: Option<crate::source::docker::DockerFile>,
    /// `[http]`: `/metrics` and `/healthz` (see `crate::admin`).
    pub http: Option<crate::admin::HttpFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    pub udp: Option<Vec<String>>,
    pub recv_buffer: Option<Size>,
    pub recv_batch: Option<usize>,
    pub max_datagram: Option<Size>,
    pub busy_poll: Option<String>,
    pub pin_ingest_core: Option<usize>,
    pub pin_flush_core: Option<usize>,
    pub shutdown_timeout: Option<String>,
    pub tcp: Option<Vec<String>>,
    pub unix_dgram: Option<Vec<String>>,
    pub unix_stream: Option<Vec<String>>,
    pub tcp_framing: Option<String>,
    pub unix_stream_framing: Option<String>,
    pub unix_mode: Option<String>,
    pub json_udp: Option<Vec<String>>,
    pub admin: Option<String>,
    pub admin_allow_mutations: Option<bool>,
    pub max_line_bytes: Option<Size>,
    pub max_tcp_connections: Option<usize>,
    pub tcp_idle_timeout: Option<String>,
    pub debug_dump: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateFile {
    pub flush_interval: Option<String>,
    pub percentiles: Option<Vec<f64>>,
    pub histograms: Option<Vec<HistogramFile>>,
    pub legacy_namespace: Option<bool>,
    pub global_prefix: Option<String>,
    pub prefix_counter: Option<String>,
    pub prefix_timer: Option<String>,
    pub prefix_gauge: Option<String>,
    pub prefix_set: Option<String>,
    pub global_suffix: Option<String>,
    pub meta_prefix: Option<String>,
    pub delete_idle_stats: Option<bool>,
    pub delete_counters: Option<bool>,
    pub delete_timers: Option<bool>,
    pub delete_sets: Option<bool>,
    pub delete_gauges: Option<bool>,
    pub gauges_max_ttl: Option<u32>,
    pub counter_rates: Option<bool>,
    pub sanitize_keys: Option<bool>,
    pub name_tags: Option<bool>,
    pub max_name_bytes: Option<usize>,
    pub max_tags: Option<usize>,
    pub max_series: Option<usize>,
    pub max_set_members: Option<usize>,
    pub max_samples: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistogramFile {
    pub metric: String,
    pub bins: Vec<BinFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum BinFile {
    Number(f64),
    Word(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinksFile {
    pub console: Option<ConsoleFile>,
    pub kafka_rest: Option<KafkaRestFile>,
    /// `[sinks.kafka]`: the native Kafka producer (see `crate::sink::kafka::config`).
    pub kafka: Option<crate::sink::kafka::KafkaFile>,
    pub graphite: Option<GraphiteFile>,
    pub backstop: Option<BackstopFile>,
    /// The failure hook: a command and its arguments, run without a shell.
    pub on_failure: Option<Vec<String>>,
    pub on_failure_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleFile {
    pub format: Option<String>,
}

/// A byte size: a number of bytes, or a string such as `"8MiB"`, `"64KiB"`, `"1GiB"`, `"900KB"`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
pub enum Size {
    Bytes(u64),
    Text(#[serde(deserialize_with = "de_size")] u64),
}

impl Size {
    pub fn bytes(self) -> u64 {
        match self {
            Size::Bytes(n) | Size::Text(n) => n,
        }
    }
}

fn de_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let s = String::deserialize(d)?;
    parse_size(&s).map_err(serde::de::Error::custom)
}

// ---------------------------------------------------------------------------------------------
// The validated configuration
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    pub aggregate: AggregateConfig,
    pub console: Option<ConsoleFormat>,
    pub kafka_rest: Option<KafkaRestConfig>,
    /// `[sinks.kafka]`: the native Kafka producer.
    pub kafka: Option<crate::sink::kafka::KafkaConfig>,
    pub graphite: Option<GraphiteConfig>,
    pub backstop: Option<BackstopConfig>,
    /// `[docker]`: poll the Docker Engine for container stats.
    pub docker: Option<crate::source::docker::DockerConfig>,
    /// `[http]`: serve `/metrics` (the Prometheus sink) and `/healthz`; off by default.
    pub http: Option<crate::admin::HttpConfig>,
    /// `sinks.on_failure`: run when a sink's flush fails (at most once per interval per sink).
    pub on_failure: Option<FailureHook>,
}

/// The failure hook: `command[0]` run with `command[1..]` as arguments (no shell), with
/// `KSTATSD_SINK` and `KSTATSD_ERROR` in its environment; killed after `timeout`.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureHook {
    pub command: Vec<String>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub udp: Vec<SocketAddr>,
    pub recv_buffer: usize,
    pub recv_batch: usize,
    pub max_datagram: usize,
    pub busy_poll: BusyPoll,
    pub pin_ingest_core: Option<usize>,
    pub pin_flush_core: Option<usize>,
    pub shutdown_timeout: Duration,
    /// Newline-framed TCP listeners.
    pub tcp: Vec<SocketAddr>,
    /// Unix datagram socket files (one or more lines per datagram, as UDP).
    pub unix_dgram: Vec<PathBuf>,
    /// Unix stream socket files (framed as `unix_stream_framing` says).
    pub unix_stream: Vec<PathBuf>,
    /// How TCP connections are framed: newlines, length prefixes, or told apart (the default).
    pub tcp_framing: Framing,
    /// How Unix stream connections are framed (the same choice).
    pub unix_stream_framing: Framing,
    /// Permission bits of the socket files.
    pub unix_mode: u32,
    /// UDP listeners where every line is a pystatsd JSON message.
    pub json_udp: Vec<SocketAddr>,
    /// The management port (default [`DEFAULT_ADMIN`]); `None` when `admin = "off"`.
    pub admin: Option<SocketAddr>,
    /// Whether `del*` and `health down|up` are accepted on the management port.
    pub admin_allow_mutations: bool,
    /// Longest line accepted on a stream (TCP, Unix stream); longer ones are dropped and counted.
    pub max_line_bytes: usize,
    /// Stream connections (TCP and Unix stream) open at once; more are refused and counted.
    pub max_tcp_connections: usize,
    /// A stream connection silent this long is closed; `None`: never.
    pub tcp_idle_timeout: Option<Duration>,
    /// `--debug-dump`: print every metric whose name matches this regex to stderr.
    pub debug_dump: Option<String>,
}

/// How long the ingest loop keeps spinning on empty sockets before it parks in `epoll_wait`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BusyPoll {
    Always,
    For(Duration),
}

#[derive(Debug, Clone, PartialEq)]
pub struct AggregateConfig {
    pub flush_interval: Duration,
    pub percentiles: Vec<Percentile>,
    pub histograms: Vec<HistogramRule>,
    pub legacy_namespace: bool,
    pub global_prefix: String,
    pub prefix_counter: String,
    pub prefix_timer: String,
    pub prefix_gauge: String,
    pub prefix_set: String,
    pub global_suffix: String,
    pub meta_prefix: String,
    pub delete_counters: bool,
    pub delete_timers: bool,
    pub delete_sets: bool,
    pub delete_gauges: bool,
    pub gauges_max_ttl: Option<u32>,
    pub counter_rates: bool,
    pub limits: Limits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleFormat {
    Json,
    Text,
}

/// A configuration error, with a message that says what to change.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// Overrides from flags and environment variables; `None` leaves the file's (or default) value.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub udp: Option<Vec<String>>,
    pub recv_buffer: Option<String>,
    pub recv_batch: Option<usize>,
    pub max_datagram: Option<String>,
    pub busy_poll: Option<String>,
    pub pin_ingest_core: Option<usize>,
    pub pin_flush_core: Option<usize>,
    pub shutdown_timeout: Option<String>,
    pub flush_interval: Option<String>,
    pub percentiles: Option<Vec<f64>>,
    pub histograms: Option<String>,
    pub legacy_namespace: Option<bool>,
    pub global_prefix: Option<String>,
    pub prefix_counter: Option<String>,
    pub prefix_timer: Option<String>,
    pub prefix_gauge: Option<String>,
    pub prefix_set: Option<String>,
    pub global_suffix: Option<String>,
    pub meta_prefix: Option<String>,
    pub delete_idle_stats: Option<bool>,
    pub delete_counters: Option<bool>,
    pub delete_timers: Option<bool>,
    pub delete_sets: Option<bool>,
    pub delete_gauges: Option<bool>,
    pub gauges_max_ttl: Option<u32>,
    pub counter_rates: Option<bool>,
    pub sanitize_keys: Option<bool>,
    pub name_tags: Option<bool>,
    pub max_name_bytes: Option<usize>,
    pub max_tags: Option<usize>,
    pub max_series: Option<usize>,
    pub max_set_members: Option<usize>,
    pub max_samples: Option<usize>,
    pub tcp: Option<Vec<String>>,
    pub unix_dgram: Option<Vec<String>>,
    pub unix_stream: Option<Vec<String>>,
    pub tcp_framing: Option<String>,
    pub unix_stream_framing: Option<String>,
    pub unix_mode: Option<String>,
    pub json_udp: Option<Vec<String>>,
    pub admin: Option<String>,
    pub admin_allow_mutations: Option<bool>,
    pub max_line_bytes: Option<String>,
    pub max_tcp_connections: Option<usize>,
    pub tcp_idle_timeout: Option<String>,
    pub debug_dump: Option<String>,
    /// A TOML array, e.g. `["send_nsca", "-H", "nagios"]`.
    pub on_failure: Option<String>,
    pub on_failure_timeout: Option<String>,
    pub console: Option<String>,
    pub kafka_rest: KafkaRestOverrides,
    /// The native Kafka sink's own flags (the shared `--kafka-…` ones are in `kafka_rest`).
    pub kafka: crate::sink::kafka::KafkaOverrides,
    pub graphite: GraphiteOverrides,
    pub backstop: BackstopOverrides,
    pub docker: crate::source::docker::DockerOverrides,
    pub http: crate::admin::HttpOverrides,
    /// `--config-format`: the file's syntax, instead of the one its extension says.
    pub config_format: Option<ConfigFormat>,
}

impl Config {
    /// Reads `path` (if any; TOML, or an etsy config.js by its extension or
    /// `ov.config_format`), applies `ov`, validates.
    pub fn load(path: Option<&PathBuf>, ov: &Overrides) -> Result<Config, ConfigError> {
        let file = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| ConfigError(format!("cannot read {}: {e}", p.display())))?;
                if ov.config_format.unwrap_or_else(|| ConfigFormat::of(p)) == ConfigFormat::Etsy {
                    return etsy::load(&text, ov)
                        .map_err(|e| ConfigError(format!("{}: {}", p.display(), e.0)));
                }
                parse_file(&text).map_err(|e| ConfigError(format!("{}: {}", p.display(), e.0)))?
            }
            None => FileConfig::default(),
        };
        Config::build(file, ov)
    }

    /// The built-in defaults (what `kstatsd` with no arguments runs).
    pub fn defaults() -> Config {
        Config::build(FileConfig::default(), &Overrides::default()).expect("defaults are valid")
    }

    pub fn build(file: FileConfig, ov: &Overrides) -> Result<Config, ConfigError> {
        let (s, a) = (&file.server, &file.aggregate);

        let udp_text =
            ov.udp.clone().or_else(|| s.udp.clone()).unwrap_or_else(|| vec!["127.0.0.1:8125".into()]);
        let mut udp = Vec::new();
        for addr in udp_text.iter().flat_map(|a| a.split(',')).map(str::trim).filter(|a| !a.is_empty()) {
            udp.push(
                addr.parse()
                    .map_err(|_| ConfigError(format!("server.udp: `{addr}` is not an IP:port address")))?,
            );
        }
        let recv_buffer = pick_size(&ov.recv_buffer, s.recv_buffer, 8 << 20, "server.recv_buffer")?;
        let max_datagram = pick_size(&ov.max_datagram, s.max_datagram, 65_536, "server.max_datagram")?;
        if !(512..=(1 << 20)).contains(&max_datagram) {
            return err("server.max_datagram must be between 512 bytes and 1MiB");
        }
        let recv_batch = ov.recv_batch.or(s.recv_batch).unwrap_or(64);
        if !(1..=1024).contains(&recv_batch) {
            return err("server.recv_batch must be between 1 and 1024");
        }
        let busy_poll = match ov.busy_poll.as_deref().or(s.busy_poll.as_deref()).unwrap_or("2ms") {
            "always" => BusyPoll::Always,
            "never" => BusyPoll::For(Duration::ZERO),
            d => BusyPoll::For(
                parse_duration(d)
                    .map_err(|e| ConfigError(format!("server.busy_poll: {e} (or \"always\", \"never\")")))?,
            ),
        };
        let shutdown_timeout =
            pick_duration(&ov.shutdown_timeout, &s.shutdown_timeout, "5s", "server.shutdown_timeout")?;
        let inputs = Inputs::build(s, ov)?;
        let on_failure = FailureHook::build(&file.sinks, ov)?;

        let flush_interval =
            pick_duration(&ov.flush_interval, &a.flush_interval, "10s", "aggregate.flush_interval")?;
        if flush_interval < Duration::from_millis(10) {
            return err("aggregate.flush_interval must be at least 10ms");
        }
        let pcts = ov.percentiles.clone().or_else(|| a.percentiles.clone()).unwrap_or_else(|| vec![90.0]);
        let mut percentiles = Vec::new();
        for p in pcts {
            if !p.is_finite() || p == 0.0 || p.abs() > 100.0 {
                return err(format!("aggregate.percentiles: {p} is not in [-100, 0) or (0, 100]"));
            }
            percentiles.push(Percentile::new(p));
        }
        let hist_file = match &ov.histograms {
            Some(text) => parse_histograms_flag(text)?,
            None => a.histograms.clone().unwrap_or_default(),
        };
        let mut histograms = Vec::new();
        for h in hist_file {
            histograms.push(HistogramRule::new(h.metric.clone(), parse_bins(&h)?));
        }

        let delete_idle = ov.delete_idle_stats.or(a.delete_idle_stats).unwrap_or(false);
        let text = |o: &Option<String>, f: &Option<String>, d: &str| {
            o.clone().or_else(|| f.clone()).unwrap_or_else(|| d.to_string())
        };
        let global_suffix = text(&ov.global_suffix, &a.global_suffix, "");
        let key = KeyRules {
            sanitize: ov.sanitize_keys.or(a.sanitize_keys).unwrap_or(true),
            name_tags: ov.name_tags.or(a.name_tags).unwrap_or(true),
            max_name_bytes: ov.max_name_bytes.or(a.max_name_bytes).unwrap_or(1024),
            max_tags: ov.max_tags.or(a.max_tags).unwrap_or(64),
        };
        let limits = Limits {
            key,
            max_series: ov.max_series.or(a.max_series).unwrap_or(1_000_000),
            max_set_members: ov.max_set_members.or(a.max_set_members).unwrap_or(1_000_000),
            max_samples: ov.max_samples.or(a.max_samples).unwrap_or(10_000_000),
        };
        if limits.max_series == 0 || limits.max_series > u32::MAX as usize / 8 {
            return err("aggregate.max_series must be between 1 and 500000000");
        }
        let aggregate = AggregateConfig {
            flush_interval,
            percentiles,
            histograms,
            legacy_namespace: ov.legacy_namespace.or(a.legacy_namespace).unwrap_or(true),
            global_prefix: text(&ov.global_prefix, &a.global_prefix, "stats"),
            prefix_counter: text(&ov.prefix_counter, &a.prefix_counter, "counters"),
            prefix_timer: text(&ov.prefix_timer, &a.prefix_timer, "timers"),
            prefix_gauge: text(&ov.prefix_gauge, &a.prefix_gauge, "gauges"),
            prefix_set: text(&ov.prefix_set, &a.prefix_set, "sets"),
            global_suffix,
            meta_prefix: text(&ov.meta_prefix, &a.meta_prefix, "statsd"),
            delete_counters: ov.delete_counters.or(a.delete_counters).unwrap_or(delete_idle),
            delete_timers: ov.delete_timers.or(a.delete_timers).unwrap_or(delete_idle),
            delete_sets: ov.delete_sets.or(a.delete_sets).unwrap_or(delete_idle),
            delete_gauges: ov.delete_gauges.or(a.delete_gauges).unwrap_or(delete_idle),
            gauges_max_ttl: ov.gauges_max_ttl.or(a.gauges_max_ttl),
            counter_rates: ov.counter_rates.or(a.counter_rates).unwrap_or(false),
            limits,
        };
        if aggregate.meta_prefix.is_empty() {
            return err("aggregate.meta_prefix must not be empty");
        }

        let console_text =
            ov.console.clone().or_else(|| file.sinks.console.as_ref().and_then(|c| c.format.clone()));
        // The shared `--kafka-…` flags apply to every Kafka sink configured: with the native one
        // on and no REST proxy anywhere, they are the native sink's alone.
        let kafka =
            crate::sink::kafka::KafkaConfig::validate(file.sinks.kafka.as_ref(), &ov.kafka, &ov.kafka_rest)?;
        let kafka_rest = match (&kafka, &file.sinks.kafka_rest, &ov.kafka_rest.url) {
            (Some(_), None, None) => None,
            _ => KafkaRestConfig::build(file.sinks.kafka_rest.as_ref(), &ov.kafka_rest)?,
        };
        let graphite = GraphiteConfig::build(file.sinks.graphite.as_ref(), &ov.graphite)?;
        let backstop = BackstopConfig::build(file.sinks.backstop.as_ref(), &ov.backstop)?;
        let docker = crate::source::docker::DockerConfig::build(file.docker.as_ref(), &ov.docker)
            .map_err(ConfigError)?;
        let http = crate::admin::HttpConfig::build(file.http.as_ref(), &ov.http).map_err(ConfigError)?;
        // The console is the default sink only when no other sink is configured.
        let other_sinks = kafka_rest.is_some()
            || kafka.is_some()
            || graphite.is_some()
            || backstop.is_some()
            || http.is_some();
        let console = match console_text.as_deref() {
            None if other_sinks => None,
            None | Some("json") => Some(ConsoleFormat::Json),
            Some("text") => Some(ConsoleFormat::Text),
            Some("off") => None,
            Some(other) => return err(format!("sinks.console.format: `{other}` is not json, text or off")),
        };

        Ok(Config {
            server: ServerConfig {
                udp,
                recv_buffer,
                recv_batch,
                max_datagram,
                busy_poll,
                pin_ingest_core: ov.pin_ingest_core.or(s.pin_ingest_core),
                pin_flush_core: ov.pin_flush_core.or(s.pin_flush_core),
                shutdown_timeout,
                tcp: inputs.tcp,
                unix_dgram: inputs.unix_dgram,
                unix_stream: inputs.unix_stream,
                tcp_framing: inputs.tcp_framing,
                unix_stream_framing: inputs.unix_stream_framing,
                unix_mode: inputs.unix_mode,
                json_udp: inputs.json_udp,
                admin: inputs.admin,
                admin_allow_mutations: inputs.admin_allow_mutations,
                max_line_bytes: inputs.max_line_bytes,
                max_tcp_connections: inputs.max_tcp_connections,
                tcp_idle_timeout: inputs.tcp_idle_timeout,
                debug_dump: inputs.debug_dump,
            },
            aggregate,
            console,
            kafka_rest,
            kafka,
            graphite,
            backstop,
            docker,
            http,
            on_failure,
        })
    }

    /// The effective configuration as TOML, for `--check-config` and the admin `config` command.
    /// Sink credentials (passwords, user names, credentials in URLs) are redacted.
    pub fn to_toml(&self) -> String {
        let mut out = self.core_toml();
        if let Some(k) = &self.kafka_rest {
            out.push('\n');
            out.push_str(&k.to_toml());
        }
        if let Some(k) = &self.kafka {
            out.push('\n');
            out.push_str(&k.to_toml());
        }
        if let Some(g) = &self.graphite {
            out.push('\n');
            out.push_str(&g.to_toml());
        }
        if let Some(b) = &self.backstop {
            out.push('\n');
            out.push_str(&b.to_toml());
        }
        if let Some(d) = &self.docker {
            out.push('\n');
            out.push_str(&d.to_toml());
        }
        if let Some(h) = &self.http {
            out.push('\n');
            out.push_str(&h.to_toml());
        }
        out
    }

    fn core_toml(&self) -> String {
        let (s, a) = (&self.server, &self.aggregate);
        let list = |v: &[String]| v.iter().map(|x| format!("{x:?}")).collect::<Vec<_>>().join(", ");
        let udp: Vec<String> = s.udp.iter().map(|a| a.to_string()).collect();
        let busy = match s.busy_poll {
            BusyPoll::Always => "always".to_string(),
            BusyPoll::For(d) => format!("{}us", d.as_micros()),
        };
        let opt = |key: &str, o: Option<u64>| match o {
            Some(v) => format!("{key} = {v}"),
            None => format!("# {key} is unset"),
        };
        let pcts: Vec<String> = a.percentiles.iter().map(|p| p.p.to_string()).collect();
        let hists: Vec<String> = a
            .histograms
            .iter()
            .map(|h| {
                let bins: Vec<String> = h
                    .bins
                    .iter()
                    .map(|b| match b {
                        BinEdge::Finite(x) => x.to_string(),
                        BinEdge::Inf => "\"inf\"".into(),
                    })
                    .collect();
                format!("{{ metric = {:?}, bins = [{}] }}", h.metric, bins.join(", "))
            })
            .collect();
        format!(
            "[server]\nudp = [{}]\nrecv_buffer = {}\nrecv_batch = {}\nmax_datagram = {}\nbusy_poll = {:?}\n\
             {}\n{}\nshutdown_timeout = \"{}ms\"\n{}\n\
             [aggregate]\nflush_interval = \"{}ms\"\npercentiles = [{}]\nhistograms = [{}]\n\
             legacy_namespace = {}\nglobal_prefix = {:?}\nprefix_counter = {:?}\nprefix_timer = {:?}\n\
             prefix_gauge = {:?}\nprefix_set = {:?}\nglobal_suffix = {:?}\nmeta_prefix = {:?}\n\
             delete_counters = {}\ndelete_timers = {}\ndelete_sets = {}\ndelete_gauges = {}\n\
             {}\ncounter_rates = {}\nsanitize_keys = {}\nname_tags = {}\nmax_name_bytes = {}\n\
             max_tags = {}\nmax_series = {}\nmax_set_members = {}\nmax_samples = {}\n\n{}[sinks.console]\nformat = {:?}\n",
            list(&udp),
            s.recv_buffer,
            s.recv_batch,
            s.max_datagram,
            busy,
            opt("pin_ingest_core", s.pin_ingest_core.map(|v| v as u64)),
            opt("pin_flush_core", s.pin_flush_core.map(|v| v as u64)),
            s.shutdown_timeout.as_millis(),
            inputs_toml(s),
            a.flush_interval.as_millis(),
            pcts.join(", "),
            hists.join(", "),
            a.legacy_namespace,
            a.global_prefix,
            a.prefix_counter,
            a.prefix_timer,
            a.prefix_gauge,
            a.prefix_set,
            a.global_suffix,
            a.meta_prefix,
            a.delete_counters,
            a.delete_timers,
            a.delete_sets,
            a.delete_gauges,
            opt("gauges_max_ttl", a.gauges_max_ttl.map(u64::from)),
            a.counter_rates,
            a.limits.key.sanitize,
            a.limits.key.name_tags,
            a.limits.key.max_name_bytes,
            a.limits.key.max_tags,
            a.limits.max_series,
            a.limits.max_set_members,
            a.limits.max_samples,
            FailureHook::to_toml(&self.on_failure),
            match self.console {
                Some(ConsoleFormat::Json) => "json",
                Some(ConsoleFormat::Text) => "text",
                None => "off",
            },
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs besides UDP (`[server]` tcp, unix_*, json_udp, admin, stream limits, debug dump) and
// the failure hook (`[sinks]` on_failure)
// ---------------------------------------------------------------------------------------------

/// Where the management port listens unless `admin` says otherwise (etsy's port, on loopback);
/// `admin = "off"` disables it.
pub const DEFAULT_ADMIN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8126);

/// The input keys of `[server]`, validated (their defaults are here).
struct Inputs {
    tcp: Vec<SocketAddr>,
    unix_dgram: Vec<PathBuf>,
    unix_stream: Vec<PathBuf>,
    tcp_framing: Framing,
    unix_stream_framing: Framing,
    unix_mode: u32,
    json_udp: Vec<SocketAddr>,
    admin: Option<SocketAddr>,
    admin_allow_mutations: bool,
    max_line_bytes: usize,
    max_tcp_connections: usize,
    tcp_idle_timeout: Option<Duration>,
    debug_dump: Option<String>,
}

impl Inputs {
    fn build(s: &ServerFile, ov: &Overrides) -> Result<Inputs, ConfigError> {
        let list = |o: &Option<Vec<String>>, f: &Option<Vec<String>>| -> Vec<String> {
            let v = o.as_ref().or(f.as_ref()).cloned().unwrap_or_default();
            v.iter()
                .flat_map(|a| a.split(','))
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(String::from)
                .collect()
        };
        let addrs = |v: Vec<String>, what: &str| -> Result<Vec<SocketAddr>, ConfigError> {
            v.iter()
                .map(|a| {
                    a.parse().map_err(|_| ConfigError(format!("{what}: `{a}` is not an IP:port address")))
                })
                .collect()
        };
        let tcp = addrs(list(&ov.tcp, &s.tcp), "server.tcp")?;
        let json_udp = addrs(list(&ov.json_udp, &s.json_udp), "server.json_udp")?;
        let unix_dgram: Vec<PathBuf> =
            list(&ov.unix_dgram, &s.unix_dgram).into_iter().map(PathBuf::from).collect();
        let unix_stream: Vec<PathBuf> =
            list(&ov.unix_stream, &s.unix_stream).into_iter().map(PathBuf::from).collect();
        let framing = |o: &Option<String>, f: &Option<String>, key: &str| {
            let text = o.as_deref().or(f.as_deref()).unwrap_or("auto");
            Framing::parse(text).ok_or_else(|| {
                ConfigError(format!("server.{key}: `{text}` is not auto, newline or length_prefix"))
            })
        };
        let tcp_framing = framing(&ov.tcp_framing, &s.tcp_framing, "tcp_framing")?;
        let unix_stream_framing =
            framing(&ov.unix_stream_framing, &s.unix_stream_framing, "unix_stream_framing")?;
        let mode_text = ov.unix_mode.as_deref().or(s.unix_mode.as_deref()).unwrap_or("0666");
        let digits = mode_text.trim().trim_start_matches("0o");
        let unix_mode = u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o777).ok_or_else(|| {
            ConfigError(format!("server.unix_mode: `{mode_text}` is not an octal mode such as \"0660\""))
        })?;
        let admin = match ov.admin.as_deref().or(s.admin.as_deref()).map(str::trim) {
            None => Some(DEFAULT_ADMIN),
            Some("") | Some("off") => None,
            Some(a) => Some(match a.parse::<u16>() {
                // A bare port binds loopback.
                Ok(port) => SocketAddr::from(([127, 0, 0, 1], port)),
                Err(_) => a.parse().map_err(|_| {
                    ConfigError(format!("server.admin: `{a}` is not an IP:port address, a port, or \"off\""))
                })?,
            }),
        };
        let max_line_bytes =
            pick_size(&ov.max_line_bytes, s.max_line_bytes, 8 << 10, "server.max_line_bytes")?;
        if !(16..=(16 << 20)).contains(&max_line_bytes) {
            return err("server.max_line_bytes must be between 16 bytes and 16MiB");
        }
        let max_tcp_connections = ov.max_tcp_connections.or(s.max_tcp_connections).unwrap_or(1000);
        if !(1..=1_000_000).contains(&max_tcp_connections) {
            return err("server.max_tcp_connections must be between 1 and 1000000");
        }
        let idle = pick_duration(&ov.tcp_idle_timeout, &s.tcp_idle_timeout, "5m", "server.tcp_idle_timeout")?;
        let debug_dump = ov.debug_dump.clone().or_else(|| s.debug_dump.clone());
        if let Some(re) = &debug_dump {
            regex::bytes::Regex::new(re).map_err(|e| ConfigError(format!("server.debug_dump: {e}")))?;
        }
        Ok(Inputs {
            tcp,
            unix_dgram,
            unix_stream,
            tcp_framing,
            unix_stream_framing,
            unix_mode,
            json_udp,
            admin,
            admin_allow_mutations: ov.admin_allow_mutations.or(s.admin_allow_mutations).unwrap_or(true),
            max_line_bytes,
            max_tcp_connections,
            tcp_idle_timeout: (!idle.is_zero()).then_some(idle),
            debug_dump,
        })
    }
}

/// The `[server]` lines for the inputs above, for `to_toml`.
fn inputs_toml(s: &ServerConfig) -> String {
    let quoted = |v: Vec<String>| v.iter().map(|x| format!("{x:?}")).collect::<Vec<_>>().join(", ");
    let paths = |v: &[PathBuf]| quoted(v.iter().map(|p| p.display().to_string()).collect());
    let addrs = |v: &[SocketAddr]| quoted(v.iter().map(|a| a.to_string()).collect());
    format!(
        "tcp = [{}]\nunix_dgram = [{}]\nunix_stream = [{}]\ntcp_framing = {:?}\nunix_stream_framing = {:?}\n\
         unix_mode = \"{:04o}\"\njson_udp = [{}]\n{}\n\
         admin_allow_mutations = {}\nmax_line_bytes = {}\nmax_tcp_connections = {}\ntcp_idle_timeout = \"{}ms\"\n{}",
        addrs(&s.tcp),
        paths(&s.unix_dgram),
        paths(&s.unix_stream),
        s.tcp_framing.name(),
        s.unix_stream_framing.name(),
        s.unix_mode,
        addrs(&s.json_udp),
        match s.admin {
            Some(a) => format!("admin = \"{a}\""),
            None => "admin = \"off\"".into(),
        },
        s.admin_allow_mutations,
        s.max_line_bytes,
        s.max_tcp_connections,
        s.tcp_idle_timeout.map_or(0, |d| d.as_millis()),
        match &s.debug_dump {
            Some(re) => format!("debug_dump = {re:?}"),
            None => "# debug_dump is off".into(),
        },
    )
}

impl FailureHook {
    fn build(f: &SinksFile, ov: &Overrides) -> Result<Option<FailureHook>, ConfigError> {
        let command = match &ov.on_failure {
            Some(text) => {
                #[derive(Deserialize)]
                struct Wrap {
                    c: Vec<String>,
                }
                toml::from_str::<Wrap>(&format!("c = {text}")).map(|w| w.c).map_err(|e| {
                    ConfigError(format!(
                        "--on-failure: {} (expected a TOML array, e.g. [\"/usr/local/bin/notify\", \"--urgent\"])",
                        e.message()
                    ))
                })?
            }
            None => f.on_failure.clone().unwrap_or_default(),
        };
        let timeout =
            pick_duration(&ov.on_failure_timeout, &f.on_failure_timeout, "10s", "sinks.on_failure_timeout")?;
        if command.is_empty() {
            return Ok(None);
        }
        if command[0].is_empty() {
            return err("sinks.on_failure: the command (first element) is empty");
        }
        if timeout < Duration::from_millis(1) {
            return err("sinks.on_failure_timeout must be at least 1ms");
        }
        Ok(Some(FailureHook { command, timeout }))
    }

    /// The `[sinks]` table for `to_toml` (empty when there is no hook).
    fn to_toml(hook: &Option<FailureHook>) -> String {
        match hook {
            Some(h) => format!(
                "[sinks]\non_failure = [{}]\non_failure_timeout = \"{}ms\"\n\n",
                h.command.iter().map(|x| format!("{x:?}")).collect::<Vec<_>>().join(", "),
                h.timeout.as_millis()
            ),
            None => String::new(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The Kafka REST Proxy sink: `[sinks.kafka_rest]` (its defaults are in `KafkaRestConfig::build`)
// ---------------------------------------------------------------------------------------------

/// A string that may hold a credential (a password, a URL with `user:password@`): its `Debug`
/// never shows it, so neither does any `{:?}` of a config.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaRestFile {
    pub url: Option<Secret>,
    pub topic: Option<String>,
    pub format: Option<String>,
    pub content_type: Option<String>,
    pub key: Option<String>,
    pub username: Option<Secret>,
    pub password: Option<Secret>,
    pub timeout: Option<String>,
    pub resend_timeout: Option<String>,
    pub max_record_bytes: Option<Size>,
    pub max_request_bytes: Option<Size>,
    pub max_queue_bytes: Option<Size>,
    pub retry_backoff: Option<String>,
    pub retry_backoff_max: Option<String>,
    pub ca_file: Option<String>,
}

/// Flags and `KSTATSD_KAFKA_…` variables for `[sinks.kafka_rest]`.
#[derive(Debug, Default, Clone)]
pub struct KafkaRestOverrides {
    pub url: Option<Secret>,
    pub topic: Option<String>,
    pub format: Option<String>,
    pub content_type: Option<String>,
    pub key: Option<String>,
    pub username: Option<Secret>,
    pub password: Option<Secret>,
    pub timeout: Option<String>,
    pub resend_timeout: Option<String>,
    pub max_record_bytes: Option<String>,
    pub max_request_bytes: Option<String>,
    pub max_queue_bytes: Option<String>,
    pub retry_backoff: Option<String>,
    pub retry_backoff_max: Option<String>,
    pub ca_file: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KafkaRestConfig {
    /// The proxy's base URL, without credentials.
    pub url: crate::sink::kafka_rest::ProxyUrl,
    pub topic: String,
    pub format: KafkaFormat,
    pub content_type: KafkaContentType,
    pub key: RecordKey,
    /// Basic auth, from the fields or from the URL (the fields win).
    pub username: Option<Secret>,
    pub password: Option<Secret>,
    /// Bound on one request, connect to last byte of the answer.
    pub timeout: Duration,
    /// Bound on each attempt after one timed out, until one is answered (the proxy may still be
    /// producing the request that timed out: do not stack copies).
    pub resend_timeout: Duration,
    /// Largest record value; a larger flush is split into several records.
    pub max_record_bytes: usize,
    /// Largest request body; a flush of many records is split into several requests.
    pub max_request_bytes: usize,
    /// Bound on the unsent payloads; the oldest is dropped (and counted) when it is reached.
    pub max_queue_bytes: usize,
    /// First retry delay; it doubles up to `retry_backoff_max` (jittered; `Retry-After` wins).
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    /// For an https URL: the only certificate authorities trusted (else the built-in roots).
    pub ca_file: Option<CaFile>,
}

/// `flat`: one JSON object per flush (statsd-kafka-backend's shape). `tagged`: one per series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaFormat {
    Flat,
    Tagged,
}

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

/// The Kafka record key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    /// This host's name (the default): one host's records stay in order in one partition.
    Hostname,
    None,
    Fixed(String),
}

// Settings every Kafka sink (`[sinks.kafka_rest]`, `[sinks.kafka]`) reads the same way.

/// A Kafka sink's `topic` (required) under `section`.
pub(crate) fn kafka_topic(topic: Option<&String>, section: &str) -> Result<String, ConfigError> {
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

impl KafkaFormat {
    /// A Kafka sink's `format` (default flat) under `section`.
    pub(crate) fn parse(text: Option<&str>, section: &str) -> Result<KafkaFormat, ConfigError> {
        match text.unwrap_or("flat") {
            "flat" => Ok(KafkaFormat::Flat),
            "tagged" => Ok(KafkaFormat::Tagged),
            other => err(format!("{section}.format: `{other}` is not flat or tagged")),
        }
    }
}

impl RecordKey {
    /// A Kafka sink's `key` (default hostname) under `section`.
    pub(crate) fn parse(text: Option<&str>, section: &str) -> Result<RecordKey, ConfigError> {
        match text.unwrap_or("hostname") {
            "hostname" => Ok(RecordKey::Hostname),
            "none" => Ok(RecordKey::None),
            "" => err(format!("{section}.key must not be empty (use \"none\" for no key)")),
            k => Ok(RecordKey::Fixed(k.to_string())),
        }
    }
}

impl KafkaRestConfig {
    /// Validates `[sinks.kafka_rest]` and its overrides; `None` when no URL is given anywhere.
    pub fn build(
        file: Option<&KafkaRestFile>,
        ov: &KafkaRestOverrides,
    ) -> Result<Option<KafkaRestConfig>, ConfigError> {
        const W: &str = "sinks.kafka_rest";
        let empty = KafkaRestFile::default();
        let f = file.unwrap_or(&empty);
        let Some(url_text) = ov.url.as_ref().or(f.url.as_ref()) else {
            if file.is_some() {
                return err(format!("{W}.url is required (or --kafka-rest URL)"));
            }
            let given = [
                ("--kafka-topic", ov.topic.is_some()),
                ("--kafka-format", ov.format.is_some()),
                ("--kafka-content-type", ov.content_type.is_some()),
                ("--kafka-key", ov.key.is_some()),
                ("--kafka-username", ov.username.is_some()),
                ("--kafka-password", ov.password.is_some()),
                ("--kafka-timeout", ov.timeout.is_some()),
                ("--kafka-resend-timeout", ov.resend_timeout.is_some()),
                ("--kafka-max-record-bytes", ov.max_record_bytes.is_some()),
                ("--kafka-max-request-bytes", ov.max_request_bytes.is_some()),
                ("--kafka-max-queue-bytes", ov.max_queue_bytes.is_some()),
                ("--kafka-retry-backoff", ov.retry_backoff.is_some()),
                ("--kafka-retry-backoff-max", ov.retry_backoff_max.is_some()),
                ("--kafka-ca-file", ov.ca_file.is_some()),
            ];
            if let Some((flag, _)) = given.iter().find(|(_, set)| *set) {
                return err(format!(
                    "{flag} (or its KSTATSD_KAFKA_… variable) is set but no Kafka REST Proxy URL is: \
                     add --kafka-rest URL or {W}.url"
                ));
            }
            return Ok(None);
        };
        let (url, creds) = crate::sink::kafka_rest::ProxyUrl::parse(&url_text.0)
            .map_err(|e| ConfigError(format!("{W}.url {e}")))?;

        let topic = kafka_topic(ov.topic.as_ref().or(f.topic.as_ref()), W)?;
        let format = KafkaFormat::parse(ov.format.as_deref().or(f.format.as_deref()), W)?;
        let ct_text = ov
            .content_type
            .as_deref()
            .or(f.content_type.as_deref())
            .unwrap_or(KafkaContentType::JsonV2.media_type());
        let content_type = KafkaContentType::ALL
            .into_iter()
            .find(|c| c.media_type().eq_ignore_ascii_case(ct_text.trim()))
            .ok_or_else(|| {
                let all: Vec<&str> = KafkaContentType::ALL.iter().map(|c| c.media_type()).collect();
                ConfigError(format!("{W}.content_type: `{ct_text}` is not one of {}", all.join(", ")))
            })?;
        let key = RecordKey::parse(ov.key.as_deref().or(f.key.as_deref()), W)?;
        let username = ov.username.clone().or_else(|| f.username.clone()).or(creds.username.map(Secret));
        let password = ov.password.clone().or_else(|| f.password.clone()).or(creds.password.map(Secret));
        if password.is_some() && username.is_none() {
            return err(format!("{W}: a password is set but no username"));
        }
        if username.as_ref().is_some_and(|u| u.0.contains(':')) {
            return err(format!("{W}.username must not contain `:` (basic auth)"));
        }

        let timeout = pick_duration(&ov.timeout, &f.timeout, "5s", &format!("{W}.timeout"))?;
        if timeout.is_zero() {
            return err(format!("{W}.timeout must be above 0"));
        }
        let resend_timeout =
            pick_duration(&ov.resend_timeout, &f.resend_timeout, "6m", &format!("{W}.resend_timeout"))?;
        if resend_timeout < timeout {
            return err(format!("{W}.resend_timeout must be at least timeout"));
        }
        let max_record_bytes =
            pick_size(&ov.max_record_bytes, f.max_record_bytes, 900 << 10, &format!("{W}.max_record_bytes"))?;
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
        let max_request_bytes = pick_size(
            &ov.max_request_bytes,
            f.max_request_bytes,
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
        let max_queue_bytes =
            pick_size(&ov.max_queue_bytes, f.max_queue_bytes, 64 << 20, &format!("{W}.max_queue_bytes"))?;
        if max_queue_bytes < max_request_bytes {
            return err(format!(
                "{W}.max_queue_bytes ({max_queue_bytes}) must be at least max_request_bytes ({max_request_bytes})"
            ));
        }
        let (retry_backoff, retry_backoff_max) = pick_backoff(
            (&ov.retry_backoff, &f.retry_backoff),
            (&ov.retry_backoff_max, &f.retry_backoff_max),
            "30s",
            W,
        )?;
        let ca_file = pick_ca_file(&ov.ca_file, &f.ca_file, url.base().starts_with("https://"), W)?;
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

    /// The section as TOML, credentials redacted.
    pub fn to_toml(&self) -> String {
        let secret = |key: &str, s: &Option<Secret>| match s {
            Some(_) => format!("{key} = \"<redacted>\""),
            None => format!("# {key} is unset"),
        };
        format!(
            "[sinks.kafka_rest]\nurl = {:?}\ntopic = {:?}\nformat = {:?}\ncontent_type = {:?}\nkey = {:?}\n\
             {}\n{}\ntimeout = \"{}ms\"\nresend_timeout = \"{}ms\"\nmax_record_bytes = {}\nmax_request_bytes = {}\nmax_queue_bytes = {}\n\
             retry_backoff = \"{}ms\"\nretry_backoff_max = \"{}ms\"\n{}",
            self.url.base(),
            self.topic,
            match self.format {
                KafkaFormat::Flat => "flat",
                KafkaFormat::Tagged => "tagged",
            },
            self.content_type.media_type(),
            match &self.key {
                RecordKey::Hostname => "hostname",
                RecordKey::None => "none",
                RecordKey::Fixed(k) => k,
            },
            secret("username", &self.username),
            secret("password", &self.password),
            self.timeout.as_millis(),
            self.resend_timeout.as_millis(),
            self.max_record_bytes,
            self.max_request_bytes,
            self.max_queue_bytes,
            self.retry_backoff.as_millis(),
            self.retry_backoff_max.as_millis(),
            ca_file_toml(&self.ca_file),
        )
    }
}

/// `ca_file` from the override or the file, read now; only for an https URL.
fn pick_ca_file(
    ov: &Option<String>,
    file: &Option<String>,
    https: bool,
    section: &str,
) -> Result<Option<CaFile>, ConfigError> {
    let Some(path) = ov.as_ref().or(file.as_ref()) else { return Ok(None) };
    if !https {
        return err(format!("{section}.ca_file is set but the url is not https"));
    }
    CaFile::load(std::path::Path::new(path))
        .map(Some)
        .map_err(|e| ConfigError(format!("{section}.ca_file: {e}")))
}

/// The `ca_file` line of a section's TOML.
fn ca_file_toml(ca: &Option<CaFile>) -> String {
    match ca {
        Some(ca) => format!("ca_file = {:?}\n", ca.path().display().to_string()),
        None => "# ca_file is unset: https is verified against the built-in public roots\n".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// The Graphite and Backstop sinks: `[sinks.graphite]`, `[sinks.backstop]` (their defaults are in
// `GraphiteConfig::build` and `BackstopConfig::build`)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphiteFile {
    /// `host:port` (`[v6]:port`); or `host` and `port` apart (the deviantART fork's names).
    pub address: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub protocol: Option<String>,
    pub timeout: Option<String>,
    pub max_queue_bytes: Option<Size>,
    pub retry_backoff: Option<String>,
    pub retry_backoff_max: Option<String>,
}

/// Flags and `KSTATSD_GRAPHITE_…` variables for `[sinks.graphite]`.
#[derive(Debug, Default, Clone)]
pub struct GraphiteOverrides {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub protocol: Option<String>,
    pub timeout: Option<String>,
    pub max_queue_bytes: Option<String>,
    pub retry_backoff: Option<String>,
    pub retry_backoff_max: Option<String>,
}

/// Carbon's two TCP receivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphiteProtocol {
    /// `name value timestamp\n` lines (carbon's port 2003).
    Plaintext,
    /// Length-prefixed pickle frames (carbon's port 2004).
    Pickle,
}

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

impl GraphiteConfig {
    /// `host:port`, with brackets around an IPv6 host.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Validates `[sinks.graphite]` and its overrides; `None` when neither the section nor any
    /// `--graphite-…` flag (or variable) is given.
    pub fn build(
        file: Option<&GraphiteFile>,
        ov: &GraphiteOverrides,
    ) -> Result<Option<GraphiteConfig>, ConfigError> {
        const W: &str = "sinks.graphite";
        let GraphiteOverrides {
            host,
            port,
            protocol,
            timeout,
            max_queue_bytes,
            retry_backoff,
            retry_backoff_max,
        } = ov;
        let any_override = host.is_some()
            || port.is_some()
            || protocol.is_some()
            || timeout.is_some()
            || max_queue_bytes.is_some()
            || retry_backoff.is_some()
            || retry_backoff_max.is_some();
        if file.is_none() && !any_override {
            return Ok(None);
        }
        let empty = GraphiteFile::default();
        let f = file.unwrap_or(&empty);
        let protocol = match protocol.as_deref().or(f.protocol.as_deref()).unwrap_or("plaintext") {
            "plaintext" | "line" => GraphiteProtocol::Plaintext,
            "pickle" => GraphiteProtocol::Pickle,
            other => return err(format!("{W}.protocol: `{other}` is not plaintext or pickle")),
        };
        if f.address.is_some() && (f.host.is_some() || f.port.is_some()) {
            return err(format!("{W}: give either address, or host and port, not both"));
        }
        let (file_host, file_port) = match &f.address {
            Some(a) => split_host_port(a).map_err(|e| ConfigError(format!("{W}.address: {e}")))?,
            None => (f.host.clone(), f.port),
        };
        let default_port = match protocol {
            GraphiteProtocol::Plaintext => 2003,
            GraphiteProtocol::Pickle => 2004,
        };
        let host = host.clone().or(file_host).unwrap_or_else(|| "127.0.0.1".into());
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
            return err(format!("{W}.host: `{host}` is not a host name or IP address"));
        }
        let port = port.or(file_port).unwrap_or(default_port);
        if port == 0 {
            return err(format!("{W}.port must not be 0"));
        }
        let timeout = pick_timeout(timeout, &f.timeout, W)?;
        let max_queue_bytes =
            pick_size(max_queue_bytes, f.max_queue_bytes, 64 << 20, &format!("{W}.max_queue_bytes"))?;
        if max_queue_bytes < 1024 {
            return err(format!("{W}.max_queue_bytes must be at least 1KiB"));
        }
        let (retry_backoff, retry_backoff_max) = pick_backoff(
            (retry_backoff, &f.retry_backoff),
            (retry_backoff_max, &f.retry_backoff_max),
            "10s",
            W,
        )?;
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

    /// The section as TOML.
    pub fn to_toml(&self) -> String {
        format!(
            "[sinks.graphite]\naddress = {:?}\nprotocol = {:?}\ntimeout = \"{}ms\"\nmax_queue_bytes = {}\n\
             retry_backoff = \"{}ms\"\nretry_backoff_max = \"{}ms\"\n",
            self.address(),
            match self.protocol {
                GraphiteProtocol::Plaintext => "plaintext",
                GraphiteProtocol::Pickle => "pickle",
            },
            self.timeout.as_millis(),
            self.max_queue_bytes,
            self.retry_backoff.as_millis(),
            self.retry_backoff_max.as_millis(),
        )
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackstopFile {
    pub url: Option<Secret>,
    pub timeout: Option<String>,
    pub max_request_bytes: Option<Size>,
    pub max_queue_bytes: Option<Size>,
    pub retry_backoff: Option<String>,
    pub retry_backoff_max: Option<String>,
    pub ca_file: Option<String>,
}

/// Flags and `KSTATSD_BACKSTOP_…` variables for `[sinks.backstop]`.
#[derive(Debug, Default, Clone)]
pub struct BackstopOverrides {
    pub url: Option<Secret>,
    pub timeout: Option<String>,
    pub max_request_bytes: Option<String>,
    pub max_queue_bytes: Option<String>,
    pub retry_backoff: Option<String>,
    pub retry_backoff_max: Option<String>,
    pub ca_file: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackstopConfig {
    /// The publish URL; credentials kept apart and never printed.
    pub url: crate::sink::backstop::PublishUrl,
    /// Bound on one POST, connect to the last byte of the answer.
    pub timeout: Duration,
    /// Largest request body; a larger flush is split into several POSTs.
    pub max_request_bytes: usize,
    /// Bound on the unsent bodies; the oldest is dropped (and counted) past it.
    pub max_queue_bytes: usize,
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    /// For an https URL: the only certificate authorities trusted (else the built-in roots).
    pub ca_file: Option<CaFile>,
}

impl BackstopConfig {
    /// Validates `[sinks.backstop]` and its overrides; `None` when neither the section nor any
    /// `--backstop-…` flag (or variable) is given.
    pub fn build(
        file: Option<&BackstopFile>,
        ov: &BackstopOverrides,
    ) -> Result<Option<BackstopConfig>, ConfigError> {
        const W: &str = "sinks.backstop";
        let BackstopOverrides {
            url,
            timeout,
            max_request_bytes,
            max_queue_bytes,
            retry_backoff,
            retry_backoff_max,
            ca_file,
        } = ov;
        let any_override = url.is_some()
            || timeout.is_some()
            || max_request_bytes.is_some()
            || max_queue_bytes.is_some()
            || retry_backoff.is_some()
            || retry_backoff_max.is_some()
            || ca_file.is_some();
        if file.is_none() && !any_override {
            return Ok(None);
        }
        let empty = BackstopFile::default();
        let f = file.unwrap_or(&empty);
        let url = url
            .as_ref()
            .or(f.url.as_ref())
            .ok_or_else(|| ConfigError(format!("{W}.url is required (or --backstop-url URL)")))?;
        let url = crate::sink::backstop::PublishUrl::parse(&url.0)
            .map_err(|e| ConfigError(format!("{W}.url {e}")))?;
        let timeout = pick_timeout(timeout, &f.timeout, W)?;
        let max_request_bytes =
            pick_size(max_request_bytes, f.max_request_bytes, 1 << 20, &format!("{W}.max_request_bytes"))?;
        if !(1024..=(64 << 20)).contains(&max_request_bytes) {
            return err(format!("{W}.max_request_bytes must be between 1KiB and 64MiB"));
        }
        let max_queue_bytes =
            pick_size(max_queue_bytes, f.max_queue_bytes, 64 << 20, &format!("{W}.max_queue_bytes"))?;
        if max_queue_bytes < max_request_bytes {
            return err(format!(
                "{W}.max_queue_bytes ({max_queue_bytes}) must be at least max_request_bytes ({max_request_bytes})"
            ));
        }
        let (retry_backoff, retry_backoff_max) = pick_backoff(
            (retry_backoff, &f.retry_backoff),
            (retry_backoff_max, &f.retry_backoff_max),
            "10s",
            W,
        )?;
        let ca_file =
            pick_ca_file(ca_file, &f.ca_file, url.without_credentials().starts_with("https://"), W)?;
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

    /// The section as TOML, the URL's credentials redacted.
    pub fn to_toml(&self) -> String {
        format!(
            "[sinks.backstop]\nurl = {:?}\ntimeout = \"{}ms\"\nmax_request_bytes = {}\nmax_queue_bytes = {}\n\
             retry_backoff = \"{}ms\"\nretry_backoff_max = \"{}ms\"\n{}",
            self.url.to_string(),
            self.timeout.as_millis(),
            self.max_request_bytes,
            self.max_queue_bytes,
            self.retry_backoff.as_millis(),
            self.retry_backoff_max.as_millis(),
            ca_file_toml(&self.ca_file),
        )
    }
}

/// Parses the TOML text; errors name the line and column.
pub fn parse_file(text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let at = e.span().map(|sp| {
            let line = text[..sp.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: ")
        });
        ConfigError(format!("{}{}", at.unwrap_or_default(), e.message()))
    })
}

fn parse_histograms_flag(text: &str) -> Result<Vec<HistogramFile>, ConfigError> {
    #[derive(Deserialize)]
    struct Wrap {
        h: Vec<HistogramFile>,
    }
    toml::from_str::<Wrap>(&format!("h = {text}")).map(|w| w.h).map_err(|e| {
        ConfigError(format!(
            "--histograms: {} (expected e.g. [{{ metric = \"api.\", bins = [10, 100, \"inf\"] }}])",
            e.message()
        ))
    })
}

fn parse_bins(h: &HistogramFile) -> Result<Vec<BinEdge>, ConfigError> {
    let mut bins = Vec::new();
    for b in &h.bins {
        bins.push(match b {
            BinFile::Number(x) if x.is_finite() => BinEdge::Finite(*x),
            BinFile::Word(w) if w == "inf" => BinEdge::Inf,
            _ => return err(format!("histogram `{}`: bins are numbers or \"inf\"", h.metric)),
        });
    }
    if bins.is_empty() {
        return err(format!("histogram `{}`: no bins", h.metric));
    }
    Ok(bins)
}

pub(crate) fn pick_size(
    ov: &Option<String>,
    file: Option<Size>,
    default: u64,
    what: &str,
) -> Result<usize, ConfigError> {
    let n = match (ov, file) {
        (Some(text), _) => parse_size(text).map_err(|e| ConfigError(format!("{what}: {e}")))?,
        (None, Some(s)) => s.bytes(),
        (None, None) => default,
    };
    usize::try_from(n).map_err(|_| ConfigError(format!("{what}: too large")))
}

/// A network sink's `timeout` (default 10 s, at least 1 ms) under section `w`.
fn pick_timeout(ov: &Option<String>, file: &Option<String>, w: &str) -> Result<Duration, ConfigError> {
    let timeout = pick_duration(ov, file, "10s", &format!("{w}.timeout"))?;
    if timeout < Duration::from_millis(1) {
        return err(format!("{w}.timeout must be at least 1ms"));
    }
    Ok(timeout)
}

/// A network sink's `retry_backoff` (default 100 ms, at least 1 ms) and `retry_backoff_max`
/// (default `max_default`, not below the first) under section `w`; each as (override, file).
fn pick_backoff(
    first: (&Option<String>, &Option<String>),
    max: (&Option<String>, &Option<String>),
    max_default: &str,
    w: &str,
) -> Result<(Duration, Duration), ConfigError> {
    let retry_backoff = pick_duration(first.0, first.1, "100ms", &format!("{w}.retry_backoff"))?;
    let retry_backoff_max = pick_duration(max.0, max.1, max_default, &format!("{w}.retry_backoff_max"))?;
    if retry_backoff < Duration::from_millis(1) || retry_backoff_max < retry_backoff {
        return err(format!("{w}: retry_backoff must be at least 1ms and at most retry_backoff_max"));
    }
    Ok((retry_backoff, retry_backoff_max))
}

pub(crate) fn pick_duration(
    ov: &Option<String>,
    file: &Option<String>,
    default: &str,
    what: &str,
) -> Result<Duration, ConfigError> {
    let text = ov.as_deref().or(file.as_deref()).unwrap_or(default);
    parse_duration(text).map_err(|e| ConfigError(format!("{what}: {e}")))
}

/// `"10s"`, `"500ms"`, `"250us"`, `"1m"`, `"1h"`, `"1.5s"`, or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("`{s}` is not a duration such as \"10s\" or \"500ms\""))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "ns" => n / 1e9,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("`{s}`: unknown unit (use ns, us, ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{s}` is out of range"))
}

/// `"8MiB"`, `"64KiB"`, `"1GiB"`, `"900KB"`, `"4096"` (bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("`{s}` is not a size such as \"8MiB\""))?;
    let mul: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(format!("`{s}`: unknown unit (use B, KiB, MiB, GiB, KB, MB, GB)")),
    };
    n.checked_mul(mul).ok_or_else(|| format!("`{s}` is too large"))
}

impl Config {
    /// The sink sections, for [`crate::sink::start_all`].
    pub fn sink_sections(&self) -> crate::sink::Sections<'_> {
        crate::sink::Sections {
            console: self.console,
            graphite: self.graphite.as_ref(),
            backstop: self.backstop.as_ref(),
            kafka_rest: self.kafka_rest.as_ref(),
            kafka: self.kafka.as_ref(),
            counter_rates: self.aggregate.counter_rates,
            meta_prefix: &self.aggregate.meta_prefix,
            flush_interval: self.aggregate.flush_interval,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphite_section_keys_and_flags() {
        let build = |text: &str, ov: &Overrides| Config::build(parse_file(text).unwrap(), ov);
        let none = Overrides::default();
        let c = Config::defaults();
        assert!(c.graphite.is_none() && c.backstop.is_none());
        // The section alone turns the sink on, with its defaults, and the console off.
        let c = build("[sinks.graphite]\n", &none).unwrap();
        let g = c.graphite.clone().unwrap();
        assert_eq!((g.address(), g.protocol), ("127.0.0.1:2003".into(), GraphiteProtocol::Plaintext));
        assert_eq!((g.timeout, g.max_queue_bytes), (Duration::from_secs(10), 64 << 20));
        assert_eq!(c.console, None);
        assert_eq!(build(&c.to_toml(), &none).unwrap(), c);
        let g = build("[sinks.graphite]\nprotocol = \"pickle\"", &none).unwrap().graphite.unwrap();
        assert_eq!(g.address(), "127.0.0.1:2004");
        // The deviantART flags: --graphite-port replaces the port of the file's address.
        let ov = Overrides {
            graphite: GraphiteOverrides { port: Some(2113), ..GraphiteOverrides::default() },
            ..Overrides::default()
        };
        let g = build("[sinks.graphite]\naddress = \"carbon.example:2013\"", &ov).unwrap().graphite.unwrap();
        assert_eq!(g.address(), "carbon.example:2113");
        let g = build("[sinks.graphite]\nhost = \"::1\"\nport = 2003", &none).unwrap().graphite.unwrap();
        assert_eq!(g.address(), "[::1]:2003");
        let g = build("[sinks.graphite]\naddress = \"[::1]\"", &none).unwrap().graphite.unwrap();
        assert_eq!(g.address(), "[::1]:2003");
        // A flag alone turns it on; an explicit console stays on.
        let ov = Overrides {
            graphite: GraphiteOverrides { host: Some("carbon".into()), ..GraphiteOverrides::default() },
            ..Overrides::default()
        };
        let c = build("[sinks.console]\nformat = \"text\"", &ov).unwrap();
        assert_eq!(
            (c.graphite.unwrap().address(), c.console),
            ("carbon:2003".into(), Some(ConsoleFormat::Text))
        );
        for (bad, says) in [
            ("address = \"a:1\"\nhost = \"b\"", "not both"),
            ("protocol = \"udp\"", "plaintext or pickle"),
            ("address = \"a:b\"", "port number"),
            ("address = \"::1:2003\"", "brackets"),
            ("port = 0", "must not be 0"),
            ("max_queue_bytes = 10", "at least 1KiB"),
            ("retry_backoff = \"1s\"\nretry_backoff_max = \"10ms\"", "at most retry_backoff_max"),
            ("hosts = \"a\"", "unknown field"),
        ] {
            let e = parse_file(&format!("[sinks.graphite]\n{bad}"))
                .and_then(|f| Config::build(f, &none))
                .expect_err(bad);
            assert!(e.0.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn backstop_credentials_never_leave_the_config() {
        let text = "[sinks.backstop]\nurl = \"https://bob:p%40ss@backstop.example:8443/publish/statsd\"";
        let c = Config::build(parse_file(text).unwrap(), &Overrides::default()).unwrap();
        let b = c.backstop.clone().unwrap();
        assert_eq!(b.url.without_credentials(), "https://backstop.example:8443/publish/statsd");
        assert_eq!((b.max_request_bytes, b.max_queue_bytes), (1 << 20, 64 << 20));
        assert_eq!(c.console, None);
        let toml = c.to_toml();
        assert!(toml.contains("url = \"https://<redacted>@backstop.example:8443/publish/statsd\""), "{toml}");
        for shown in [toml, format!("{c:?}")] {
            assert!(
                !shown.contains("p%40ss") && !shown.contains("p@ss") && !shown.contains("bob"),
                "{shown}"
            );
        }
        // The redacted TOML still reads back (with a placeholder user).
        let again = Config::build(parse_file(&c.to_toml()).unwrap(), &Overrides::default()).unwrap();
        let b2 = again.backstop.unwrap();
        assert_eq!(b2.url.without_credentials(), b.url.without_credentials());
        assert_eq!(
            (b2.timeout, b2.max_request_bytes, b2.retry_backoff_max),
            (b.timeout, b.max_request_bytes, b.retry_backoff_max)
        );
        // Errors about the URL never echo it.
        let ov = Overrides {
            backstop: BackstopOverrides {
                url: Some(Secret("http://bob:hunter2@h/collectd".into())),
                ..BackstopOverrides::default()
            },
            ..Overrides::default()
        };
        let e = Config::build(FileConfig::default(), &ov).unwrap_err();
        assert!(e.0.contains("/publish/{name}") && !e.0.contains("hunter2"), "{e}");
        let e =
            Config::build(parse_file("[sinks.backstop]\ntimeout = \"1s\"").unwrap(), &Overrides::default())
                .unwrap_err();
        assert!(e.0.contains("sinks.backstop.url is required"), "{e}");
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::defaults();
        assert_eq!(c.server.udp, vec!["127.0.0.1:8125".parse::<SocketAddr>().unwrap()]);
        assert_eq!(c.server.recv_buffer, 8 << 20);
        assert_eq!(c.aggregate.flush_interval, Duration::from_secs(10));
        assert_eq!(c.aggregate.percentiles, vec![Percentile::new(90.0)]);
        assert!(c.aggregate.legacy_namespace);
        assert!(!c.aggregate.delete_counters && !c.aggregate.counter_rates);
        assert_eq!(c.console, Some(ConsoleFormat::Json));
    }

    #[test]
    fn the_issue_example_parses() {
        let text = r#"
[server]
udp = ["127.0.0.1:8125"]
recv_buffer = "8MiB"
pin_ingest_core = 0          # optional
[aggregate]
flush_interval = "10s"
percentiles = [90]
histograms = [{ metric = "api.", bins = [10, 100, "inf"] }]
legacy_namespace = true
delete_idle_stats = false
counter_rates = false
[sinks.console]
format = "json"              # json | text
"#;
        let c = Config::build(parse_file(text).unwrap(), &Overrides::default()).unwrap();
        assert_eq!(c.server.pin_ingest_core, Some(0));
        assert_eq!(
            c.aggregate.histograms[0].bins,
            vec![BinEdge::Finite(10.0), BinEdge::Finite(100.0), BinEdge::Inf]
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_a_line() {
        let e = parse_file("[aggregate]\nflush_intervall = \"1s\"\n").unwrap_err();
        assert!(e.0.starts_with("line 2: unknown field `flush_intervall`"), "{e}");
        let bad = |text: &str| Config::build(parse_file(text).unwrap(), &Overrides::default()).unwrap_err().0;
        assert!(bad("[server]\nudp = [\"nope\"]").contains("not an IP:port"));
        assert!(bad("[aggregate]\nflush_interval = \"5 parsecs\"").contains("unknown unit"));
        assert!(bad("[aggregate]\npercentiles = [0]").contains("percentiles"));
        assert!(bad("[aggregate]\nhistograms = [{ metric = \"a\", bins = [\"x\"] }]").contains("bins"));
        assert!(bad("[sinks.console]\nformat = \"xml\"").contains("json, text or off"));
    }

    #[test]
    fn overrides_beat_the_file_and_delete_idle_sets_each_type() {
        let file = parse_file(
            "[aggregate]\nflush_interval = \"10s\"\ndelete_idle_stats = true\ndelete_gauges = false",
        )
        .unwrap();
        let ov = Overrides {
            flush_interval: Some("250ms".into()),
            percentiles: Some(vec![90.0, 99.9, -10.0]),
            udp: Some(vec!["127.0.0.1:1,127.0.0.1:2".into()]),
            histograms: Some("[{ metric = \"db\", bins = [0.01, \"inf\"] }]".into()),
            console: Some("off".into()),
            ..Overrides::default()
        };
        let c = Config::build(file, &ov).unwrap();
        assert_eq!(c.aggregate.flush_interval, Duration::from_millis(250));
        assert_eq!(c.aggregate.percentiles.len(), 3);
        assert_eq!(c.server.udp.len(), 2);
        assert_eq!(c.aggregate.histograms[0].names, vec!["bin_0_01", "bin_inf"]);
        assert!(c.aggregate.delete_counters && c.aggregate.delete_timers && c.aggregate.delete_sets);
        assert!(!c.aggregate.delete_gauges);
        assert_eq!(c.console, None);
    }

    #[test]
    fn effective_config_round_trips() {
        let c = Config::defaults();
        let again = Config::build(parse_file(&c.to_toml()).unwrap(), &Overrides::default()).unwrap();
        assert_eq!(c, again);
    }

    #[test]
    fn inputs_admin_and_hook_keys() {
        let build = |text: &str, ov: &Overrides| Config::build(parse_file(text).unwrap(), ov);
        let text = "[server]\ntcp = [\"127.0.0.1:8125\"]\nunix_dgram = [\"/run/k/dsd.sock\"]\n\
                    unix_stream = [\"/run/k/s.sock\"]\nunix_mode = \"0620\"\njson_udp = [\"127.0.0.1:5090\"]\n\
                    admin = \"8126\"\nadmin_allow_mutations = false\nmax_line_bytes = \"1KiB\"\n\
                    max_tcp_connections = 10\ntcp_idle_timeout = \"0\"\ndebug_dump = \"^api\\\\.\"\n\
                    [sinks]\non_failure = [\"send_nsca\", \"-H\", \"nagios\"]\non_failure_timeout = \"2s\"\n";
        let c = build(text, &Overrides::default()).unwrap();
        let s = &c.server;
        assert_eq!(s.admin, Some("127.0.0.1:8126".parse().unwrap()), "a bare port binds loopback");
        assert_eq!((s.unix_mode, s.max_line_bytes, s.max_tcp_connections), (0o620, 1024, 10));
        assert_eq!(s.tcp_idle_timeout, None, "0 never times out");
        assert_eq!(s.debug_dump.as_deref(), Some("^api\\."));
        let hook = c.on_failure.clone().unwrap();
        assert_eq!((hook.command.len(), hook.timeout), (3, Duration::from_secs(2)));
        // every key survives the effective config's round trip
        assert_eq!(build(&c.to_toml(), &Overrides::default()).unwrap(), c);
        let ov = Overrides {
            admin: Some("off".into()),
            on_failure: Some("[\"/bin/notify\", \"x y\"]".into()),
            ..Overrides::default()
        };
        let c = build(text, &ov).unwrap();
        assert_eq!(c.server.admin, None);
        assert_eq!(build(&c.to_toml(), &Overrides::default()).unwrap().server.admin, None, "off round-trips");
        assert_eq!(Config::defaults().server.admin, Some(DEFAULT_ADMIN), "on, on loopback, by default");
        assert_eq!(c.on_failure.unwrap().command, vec!["/bin/notify", "x y"]);
        let bad = |t: &str| build(t, &Overrides::default()).unwrap_err().0;
        assert!(bad("[server]\nunix_mode = \"999\"").contains("octal"));
        assert!(bad("[server]\nadmin = \"nope\"").contains("server.admin"));
        assert!(bad("[server]\ndebug_dump = \"(\"").contains("server.debug_dump"));
        assert!(bad("[server]\nmax_line_bytes = 1").contains("max_line_bytes"));
        assert!(bad("[sinks]\non_failure = [\"\"]").contains("on_failure"));
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("900KiB"), Ok(900 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("8 parsecs").is_err());
    }
}
