//! The flush side's configuration: `[aggregate]` (flush interval, percentiles, histograms,
//! naming, idle deletion, limits) and the failure hook (`sinks.on_failure`,
//! `sinks.on_failure_timeout`), each as a raw section read from the file and from the command
//! line alike, and a `validate` into the typed config the flush thread runs with (the defaults
//! are here). The typed configs serialize themselves for `--check-config`. Runs on the main
//! thread at start-up and on the reload thread at SIGHUP; `crate::config` only composes them.

use super::summarize::{BinEdge, HistogramRule, Percentile};
use crate::aggregate::{KeyRules, Limits};
use crate::settings::{err, ser_duration, ser_numbers, ConfigError, Number, Period};
use serde::{Deserialize, Serialize, Serializer};
use std::str::FromStr;
use std::time::Duration;

crate::section! {
    /// `[aggregate]`, and the flags that override it.
    pub struct AggregateSection {
        /// Flush interval, e.g. 10s or 500ms [aggregate.flush_interval; default 10s].
        #[arg(long, env = "KSTATSD_FLUSH_INTERVAL")]
        pub flush_interval: Option<Period>,
        /// Timer percentiles, e.g. 90,99.9,-10 [aggregate.percentiles; default 90].
        #[arg(long, env = "KSTATSD_PERCENTILES", value_delimiter = ',', allow_negative_numbers = true)]
        pub percentiles: Option<Vec<f64>>,
        /// Histogram rules as TOML, e.g. '[{ metric = "api.", bins = [10, 100, "inf"] }]'
        /// [aggregate.histograms].
        #[arg(long, env = "KSTATSD_HISTOGRAMS")]
        pub histograms: Option<Histograms>,
        /// etsy's legacy namespace (stats.k, stats_counts.k) [aggregate.legacy_namespace; true].
        #[arg(long, env = "KSTATSD_LEGACY_NAMESPACE")]
        pub legacy_namespace: Option<bool>,
        /// Non-legacy global prefix [aggregate.global_prefix; default "stats"].
        #[arg(long, env = "KSTATSD_GLOBAL_PREFIX")]
        pub global_prefix: Option<String>,
        /// Non-legacy counter prefix [aggregate.prefix_counter; default "counters"].
        #[arg(long, env = "KSTATSD_PREFIX_COUNTER", visible_alias = "counters-prefix")]
        pub prefix_counter: Option<String>,
        /// Non-legacy timer prefix [aggregate.prefix_timer; default "timers"].
        #[arg(long, env = "KSTATSD_PREFIX_TIMER", visible_alias = "timers-prefix")]
        pub prefix_timer: Option<String>,
        /// Non-legacy gauge prefix [aggregate.prefix_gauge; default "gauges"].
        #[arg(long, env = "KSTATSD_PREFIX_GAUGE", visible_alias = "gauge-prefix")]
        pub prefix_gauge: Option<String>,
        /// Non-legacy set prefix [aggregate.prefix_set; default "sets"].
        #[arg(long, env = "KSTATSD_PREFIX_SET", visible_alias = "sets-prefix")]
        pub prefix_set: Option<String>,
        /// Suffix appended to every name [aggregate.global_suffix; default ""].
        #[arg(long, env = "KSTATSD_GLOBAL_SUFFIX")]
        pub global_suffix: Option<String>,
        /// Prefix of kstatsd's own meta stats [aggregate.meta_prefix; default "statsd"].
        #[arg(long, env = "KSTATSD_META_PREFIX", visible_alias = "metadata-prefix")]
        pub meta_prefix: Option<String>,
        /// Stop reporting keys that saw no data in an interval [aggregate.delete_idle_stats; false].
        #[arg(long, env = "KSTATSD_DELETE_IDLE_STATS", num_args = 0..=1, default_missing_value = "true")]
        pub delete_idle_stats: Option<bool>,
        /// Per type: delete idle counters [aggregate.delete_counters; = delete_idle_stats].
        #[arg(long, env = "KSTATSD_DELETE_COUNTERS")]
        pub delete_counters: Option<bool>,
        /// Per type: delete idle timers [aggregate.delete_timers; = delete_idle_stats].
        #[arg(long, env = "KSTATSD_DELETE_TIMERS")]
        pub delete_timers: Option<bool>,
        /// Per type: delete idle sets [aggregate.delete_sets; = delete_idle_stats].
        #[arg(long, env = "KSTATSD_DELETE_SETS")]
        pub delete_sets: Option<bool>,
        /// Per type: delete idle gauges [aggregate.delete_gauges; = delete_idle_stats].
        #[arg(long, env = "KSTATSD_DELETE_GAUGES")]
        pub delete_gauges: Option<bool>,
        /// Delete a gauge after this many idle intervals [aggregate.gauges_max_ttl].
        #[arg(long, env = "KSTATSD_GAUGES_MAX_TTL")]
        pub gauges_max_ttl: Option<u32>,
        /// Also put counter rates (stats.k) in the JSON output [aggregate.counter_rates; false].
        #[arg(long, env = "KSTATSD_COUNTER_RATES", num_args = 0..=1, default_missing_value = "true")]
        pub counter_rates: Option<bool>,
        /// etsy's key sanitizing [aggregate.sanitize_keys; default true].
        #[arg(long, env = "KSTATSD_SANITIZE_KEYS")]
        pub sanitize_keys: Option<bool>,
        /// Read InfluxDB `name,k=v`, librato `name#k=v` and SignalFx `name[k=v]` tags written into
        /// names as tags [aggregate.name_tags; default true].
        #[arg(long, env = "KSTATSD_NAME_TAGS")]
        pub name_tags: Option<bool>,
        /// Longest metric name accepted, bytes [aggregate.max_name_bytes; default 1024].
        #[arg(long, env = "KSTATSD_MAX_NAME_BYTES")]
        pub max_name_bytes: Option<usize>,
        /// Most tags on one line [aggregate.max_tags; default 64].
        #[arg(long, env = "KSTATSD_MAX_TAGS")]
        pub max_tags: Option<usize>,
        /// Most distinct series per interval [aggregate.max_series; default 1000000].
        #[arg(long, env = "KSTATSD_MAX_SERIES")]
        pub max_series: Option<usize>,
        /// Most distinct set members per interval, all sets together [aggregate.max_set_members].
        #[arg(long, env = "KSTATSD_MAX_SET_MEMBERS")]
        pub max_set_members: Option<usize>,
        /// Most timer values and pending gauge deltas held per interval, all series together; past
        /// it timers are sketched, nothing is dropped [aggregate.max_samples; default 10000000].
        #[arg(long, env = "KSTATSD_MAX_SAMPLES")]
        pub max_samples: Option<usize>,
    }
}

/// `histograms = [{ metric = "api.", bins = [10, 100, "inf"] }, …]`; as a flag, the same array
/// in TOML.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Histograms(pub Vec<HistogramFile>);

impl FromStr for Histograms {
    type Err = String;
    fn from_str(text: &str) -> Result<Histograms, String> {
        #[derive(Deserialize)]
        struct Wrap {
            h: Vec<HistogramFile>,
        }
        toml::from_str::<Wrap>(&format!("h = {text}")).map(|w| Histograms(w.h)).map_err(|e| {
            format!("{} (expected e.g. [{{ metric = \"api.\", bins = [10, 100, \"inf\"] }}])", e.message())
        })
    }
}

/// One histogram rule as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistogramFile {
    pub metric: String,
    pub bins: Vec<BinFile>,
}

/// A bin bound as written: a number, or `"inf"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum BinFile {
    Number(f64),
    Word(String),
}

/// The validated `[aggregate]`.
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

impl AggregateConfig {
    /// Validates `[aggregate]` with its flags laid over it.
    pub fn validate(a: AggregateSection) -> Result<AggregateConfig, ConfigError> {
        let flush_interval = Period::or(a.flush_interval, Duration::from_secs(10));
        if flush_interval < Duration::from_millis(10) {
            return err("aggregate.flush_interval must be at least 10ms");
        }
        let mut percentiles = Vec::new();
        for p in a.percentiles.unwrap_or_else(|| vec![90.0]) {
            if !p.is_finite() || p == 0.0 || p.abs() > 100.0 {
                return err(format!("aggregate.percentiles: {p} is not in [-100, 0) or (0, 100]"));
            }
            percentiles.push(Percentile::new(p));
        }
        let mut histograms = Vec::new();
        for h in a.histograms.map(|h| h.0).unwrap_or_default() {
            let bins = parse_bins(&h)?;
            histograms.push(HistogramRule::new(h.metric, bins));
        }
        let delete_idle = a.delete_idle_stats.unwrap_or(false);
        let key = KeyRules {
            sanitize: a.sanitize_keys.unwrap_or(true),
            name_tags: a.name_tags.unwrap_or(true),
            max_name_bytes: a.max_name_bytes.unwrap_or(1024),
            max_tags: a.max_tags.unwrap_or(64),
        };
        let limits = Limits {
            key,
            max_series: a.max_series.unwrap_or(1_000_000),
            max_set_members: a.max_set_members.unwrap_or(1_000_000),
            max_samples: a.max_samples.unwrap_or(10_000_000),
        };
        if limits.max_series == 0 || limits.max_series > u32::MAX as usize / 8 {
            return err("aggregate.max_series must be between 1 and 500000000");
        }
        let text = |v: Option<String>, d: &str| v.unwrap_or_else(|| d.to_string());
        let aggregate = AggregateConfig {
            flush_interval,
            percentiles,
            histograms,
            legacy_namespace: a.legacy_namespace.unwrap_or(true),
            global_prefix: text(a.global_prefix, "stats"),
            prefix_counter: text(a.prefix_counter, "counters"),
            prefix_timer: text(a.prefix_timer, "timers"),
            prefix_gauge: text(a.prefix_gauge, "gauges"),
            prefix_set: text(a.prefix_set, "sets"),
            global_suffix: text(a.global_suffix, ""),
            meta_prefix: text(a.meta_prefix, "statsd"),
            delete_counters: a.delete_counters.unwrap_or(delete_idle),
            delete_timers: a.delete_timers.unwrap_or(delete_idle),
            delete_sets: a.delete_sets.unwrap_or(delete_idle),
            delete_gauges: a.delete_gauges.unwrap_or(delete_idle),
            gauges_max_ttl: a.gauges_max_ttl,
            counter_rates: a.counter_rates.unwrap_or(false),
            limits,
        };
        if aggregate.meta_prefix.is_empty() {
            return err("aggregate.meta_prefix must not be empty");
        }
        Ok(aggregate)
    }
}

impl AggregateConfig {
    /// `[aggregate]`'s keys as TOML text (without the header), validated, with no flags.
    pub fn from_toml(keys: &str) -> Result<AggregateConfig, ConfigError> {
        let section: AggregateSection =
            toml::from_str(keys).map_err(|e| ConfigError(e.message().to_string()))?;
        AggregateConfig::validate(section)
    }
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

/// Printed under the file's keys (the limits are flat keys of `[aggregate]`).
impl Serialize for AggregateConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(untagged)]
        enum Bin {
            Number(Number),
            Word(&'static str),
        }
        #[derive(Serialize)]
        struct Rule<'a> {
            metric: &'a str,
            bins: Vec<Bin>,
        }
        #[derive(Serialize)]
        struct Shown<'a> {
            #[serde(serialize_with = "ser_duration")]
            flush_interval: Duration,
            #[serde(serialize_with = "ser_numbers")]
            percentiles: Vec<f64>,
            histograms: Vec<Rule<'a>>,
            legacy_namespace: bool,
            global_prefix: &'a str,
            prefix_counter: &'a str,
            prefix_timer: &'a str,
            prefix_gauge: &'a str,
            prefix_set: &'a str,
            global_suffix: &'a str,
            meta_prefix: &'a str,
            delete_counters: bool,
            delete_timers: bool,
            delete_sets: bool,
            delete_gauges: bool,
            gauges_max_ttl: Option<u32>,
            counter_rates: bool,
            sanitize_keys: bool,
            name_tags: bool,
            max_name_bytes: usize,
            max_tags: usize,
            max_series: usize,
            max_set_members: usize,
            max_samples: usize,
        }
        fn rule(h: &HistogramRule) -> Rule<'_> {
            let bins = h
                .bins
                .iter()
                .map(|b| match b {
                    BinEdge::Finite(x) => Bin::Number(Number(*x)),
                    BinEdge::Inf => Bin::Word("inf"),
                })
                .collect();
            Rule { metric: &h.metric, bins }
        }
        let (l, k) = (&self.limits, &self.limits.key);
        Shown {
            flush_interval: self.flush_interval,
            percentiles: self.percentiles.iter().map(|p| p.p).collect(),
            histograms: self.histograms.iter().map(rule).collect(),
            legacy_namespace: self.legacy_namespace,
            global_prefix: &self.global_prefix,
            prefix_counter: &self.prefix_counter,
            prefix_timer: &self.prefix_timer,
            prefix_gauge: &self.prefix_gauge,
            prefix_set: &self.prefix_set,
            global_suffix: &self.global_suffix,
            meta_prefix: &self.meta_prefix,
            delete_counters: self.delete_counters,
            delete_timers: self.delete_timers,
            delete_sets: self.delete_sets,
            delete_gauges: self.delete_gauges,
            gauges_max_ttl: self.gauges_max_ttl,
            counter_rates: self.counter_rates,
            sanitize_keys: k.sanitize,
            name_tags: k.name_tags,
            max_name_bytes: k.max_name_bytes,
            max_tags: k.max_tags,
            max_series: l.max_series,
            max_set_members: l.max_set_members,
            max_samples: l.max_samples,
        }
        .serialize(s)
    }
}

crate::section! {
    /// The failure hook's keys (in `[sinks]` in the file), and their flags.
    pub struct HookSection {
        /// Command run when a sink's flush fails, as a TOML array (no shell), e.g.
        /// '["/usr/local/bin/notify", "--urgent"]'; it gets KSTATSD_SINK and KSTATSD_ERROR
        /// [sinks.on_failure].
        #[arg(long, env = "KSTATSD_ON_FAILURE")]
        pub on_failure: Option<HookCommand>,
        /// The failure hook is killed after this long [sinks.on_failure_timeout; default 10s].
        #[arg(long, env = "KSTATSD_ON_FAILURE_TIMEOUT")]
        pub on_failure_timeout: Option<Period>,
    }
}

/// A command and its arguments, run without a shell; as a flag, a TOML array.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct HookCommand(pub Vec<String>);

impl FromStr for HookCommand {
    type Err = String;
    fn from_str(text: &str) -> Result<HookCommand, String> {
        #[derive(Deserialize)]
        struct Wrap {
            c: Vec<String>,
        }
        toml::from_str::<Wrap>(&format!("c = {text}")).map(|w| HookCommand(w.c)).map_err(|e| {
            format!("{} (expected a TOML array, e.g. [\"/usr/local/bin/notify\", \"--urgent\"])", e.message())
        })
    }
}

/// The failure hook: `command[0]` run with `command[1..]` as arguments (no shell), with
/// `KSTATSD_SINK` and `KSTATSD_ERROR` in its environment; killed after `timeout`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailureHook {
    #[serde(rename = "on_failure")]
    pub command: Vec<String>,
    #[serde(rename = "on_failure_timeout", serialize_with = "ser_duration")]
    pub timeout: Duration,
}

impl FailureHook {
    /// Validates the hook's keys with their flags laid over them; `None` without a command.
    pub fn validate(h: HookSection) -> Result<Option<FailureHook>, ConfigError> {
        let command = h.on_failure.map(|c| c.0).unwrap_or_default();
        let timeout = Period::or(h.on_failure_timeout, Duration::from_secs(10));
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
}
