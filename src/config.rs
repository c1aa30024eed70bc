//! Configuration: the TOML file format (serde, unknown keys refused), the command-line flags and
//! `KSTATSD_…` environment variables that override it, and the validation pass that turns all
//! of it into typed values. Defaults live here and nowhere else. Runs on the main thread at
//! start-up (and on reload).

use crate::aggregate::{KeyRules, Limits};
use crate::flush::summarize::{Bound, HistogramRule, Percentile};
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    pub max_name_bytes: Option<usize>,
    pub max_tags: Option<usize>,
    pub max_series: Option<usize>,
    pub max_set_members: Option<usize>,
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
    pub max_name_bytes: Option<usize>,
    pub max_tags: Option<usize>,
    pub max_series: Option<usize>,
    pub max_set_members: Option<usize>,
    pub console: Option<String>,
}

impl Config {
    /// Reads `path` (if any), applies `ov`, validates.
    pub fn load(path: Option<&PathBuf>, ov: &Overrides) -> Result<Config, ConfigError> {
        let file = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| ConfigError(format!("cannot read {}: {e}", p.display())))?;
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
            max_name_bytes: ov.max_name_bytes.or(a.max_name_bytes).unwrap_or(1024),
            max_tags: ov.max_tags.or(a.max_tags).unwrap_or(64),
        };
        let limits = Limits {
            key,
            max_series: ov.max_series.or(a.max_series).unwrap_or(1_000_000),
            max_set_members: ov.max_set_members.or(a.max_set_members).unwrap_or(1_000_000),
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
        let console = match console_text.as_deref() {
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
            },
            aggregate,
            console,
        })
    }

    /// The effective configuration as TOML, for `--check-config` and the admin `config` command.
    /// (No option holds a secret yet; sink credentials will be redacted here.)
    pub fn to_toml(&self) -> String {
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
                        Bound::Finite(x) => x.to_string(),
                        Bound::Inf => "\"inf\"".into(),
                    })
                    .collect();
                format!("{{ metric = {:?}, bins = [{}] }}", h.metric, bins.join(", "))
            })
            .collect();
        format!(
            "[server]\nudp = [{}]\nrecv_buffer = {}\nrecv_batch = {}\nmax_datagram = {}\nbusy_poll = {:?}\n\
             {}\n{}\nshutdown_timeout = \"{}ms\"\n\n\
             [aggregate]\nflush_interval = \"{}ms\"\npercentiles = [{}]\nhistograms = [{}]\n\
             legacy_namespace = {}\nglobal_prefix = {:?}\nprefix_counter = {:?}\nprefix_timer = {:?}\n\
             prefix_gauge = {:?}\nprefix_set = {:?}\nglobal_suffix = {:?}\nmeta_prefix = {:?}\n\
             delete_counters = {}\ndelete_timers = {}\ndelete_sets = {}\ndelete_gauges = {}\n\
             {}\ncounter_rates = {}\nsanitize_keys = {}\nmax_name_bytes = {}\n\
             max_tags = {}\nmax_series = {}\nmax_set_members = {}\n\n[sinks.console]\nformat = {:?}\n",
            list(&udp),
            s.recv_buffer,
            s.recv_batch,
            s.max_datagram,
            busy,
            opt("pin_ingest_core", s.pin_ingest_core.map(|v| v as u64)),
            opt("pin_flush_core", s.pin_flush_core.map(|v| v as u64)),
            s.shutdown_timeout.as_millis(),
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
            a.limits.key.max_name_bytes,
            a.limits.key.max_tags,
            a.limits.max_series,
            a.limits.max_set_members,
            match self.console {
                Some(ConsoleFormat::Json) => "json",
                Some(ConsoleFormat::Text) => "text",
                None => "off",
            },
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

fn parse_bins(h: &HistogramFile) -> Result<Vec<Bound>, ConfigError> {
    let mut bins = Vec::new();
    for b in &h.bins {
        bins.push(match b {
            BinFile::Number(x) if x.is_finite() => Bound::Finite(*x),
            BinFile::Word(w) if w == "inf" => Bound::Inf,
            _ => return err(format!("histogram `{}`: bins are numbers or \"inf\"", h.metric)),
        });
    }
    if bins.is_empty() {
        return err(format!("histogram `{}`: no bins", h.metric));
    }
    Ok(bins)
}

fn pick_size(
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

fn pick_duration(
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

#[cfg(test)]
mod tests {
    use super::*;

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
            vec![Bound::Finite(10.0), Bound::Finite(100.0), Bound::Inf]
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
