//! The `kstatsd` binary: command line, logging, start-up and shutdown. Runs on the main thread,
//! which becomes the ingest thread once everything is bound.

use clap::Parser;
use kstatsd::config::{Config, Overrides};
use kstatsd::{daemon, net};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// A StatsD-compatible metrics aggregation daemon. Every option can also be set in the TOML
/// file given with --config, and as an environment variable (shown in brackets); a flag beats
/// the environment, which beats the file.
#[derive(Parser, Debug)]
#[command(name = "kstatsd", version, about, max_term_width = 100)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "KSTATSD_CONFIG")]
    config: Option<PathBuf>,
    /// Validate the configuration, print the effective one, and exit (binds nothing).
    #[arg(long)]
    check_config: bool,
    /// Log level: error, warn, info, debug.
    #[arg(long, env = "KSTATSD_LOG", default_value = "info")]
    log: String,

    /// UDP listen address (repeatable or comma-separated) [server.udp; default 127.0.0.1:8125].
    #[arg(long, env = "KSTATSD_UDP", value_delimiter = ',')]
    udp: Option<Vec<String>>,
    /// Socket receive buffer requested, e.g. 8MiB [server.recv_buffer].
    #[arg(long, env = "KSTATSD_RECV_BUFFER")]
    recv_buffer: Option<String>,
    /// Datagrams per recvmmsg call [server.recv_batch; default 64].
    #[arg(long, env = "KSTATSD_RECV_BATCH")]
    recv_batch: Option<usize>,
    /// Largest datagram kept whole; longer ones are cut and counted [server.max_datagram; 64KiB].
    #[arg(long, env = "KSTATSD_MAX_DATAGRAM")]
    max_datagram: Option<String>,
    /// Spin this long without traffic before parking in epoll: a duration, "always" or "never"
    /// [server.busy_poll; default 2ms].
    #[arg(long, env = "KSTATSD_BUSY_POLL")]
    busy_poll: Option<String>,
    /// Pin the ingest thread to this core [server.pin_ingest_core].
    #[arg(long, env = "KSTATSD_PIN_INGEST_CORE")]
    pin_ingest_core: Option<usize>,
    /// Pin the flush thread to this core [server.pin_flush_core].
    #[arg(long, env = "KSTATSD_PIN_FLUSH_CORE")]
    pin_flush_core: Option<usize>,
    /// Bound on the final flush at SIGTERM/SIGINT [server.shutdown_timeout; default 5s].
    #[arg(long, env = "KSTATSD_SHUTDOWN_TIMEOUT")]
    shutdown_timeout: Option<String>,

    /// Flush interval, e.g. 10s or 500ms [aggregate.flush_interval; default 10s].
    #[arg(long, env = "KSTATSD_FLUSH_INTERVAL")]
    flush_interval: Option<String>,
    /// Timer percentiles, e.g. 90,99.9,-10 [aggregate.percentiles; default 90].
    #[arg(long, env = "KSTATSD_PERCENTILES", value_delimiter = ',', allow_negative_numbers = true)]
    percentiles: Option<Vec<f64>>,
    /// Histogram rules as TOML, e.g. '[{ metric = "api.", bins = [10, 100, "inf"] }]'
    /// [aggregate.histograms].
    #[arg(long, env = "KSTATSD_HISTOGRAMS")]
    histograms: Option<String>,
    /// etsy's legacy namespace (stats.k, stats_counts.k) [aggregate.legacy_namespace; true].
    #[arg(long, env = "KSTATSD_LEGACY_NAMESPACE")]
    legacy_namespace: Option<bool>,
    /// Non-legacy global prefix [aggregate.global_prefix; default "stats"].
    #[arg(long, env = "KSTATSD_GLOBAL_PREFIX")]
    global_prefix: Option<String>,
    /// Non-legacy counter prefix [aggregate.prefix_counter; default "counters"].
    #[arg(long, env = "KSTATSD_PREFIX_COUNTER")]
    prefix_counter: Option<String>,
    /// Non-legacy timer prefix [aggregate.prefix_timer; default "timers"].
    #[arg(long, env = "KSTATSD_PREFIX_TIMER")]
    prefix_timer: Option<String>,
    /// Non-legacy gauge prefix [aggregate.prefix_gauge; default "gauges"].
    #[arg(long, env = "KSTATSD_PREFIX_GAUGE")]
    prefix_gauge: Option<String>,
    /// Non-legacy set prefix [aggregate.prefix_set; default "sets"].
    #[arg(long, env = "KSTATSD_PREFIX_SET")]
    prefix_set: Option<String>,
    /// Suffix appended to every name [aggregate.global_suffix; default none].
    #[arg(long, env = "KSTATSD_GLOBAL_SUFFIX")]
    global_suffix: Option<String>,
    /// Prefix of kstatsd's own meta stats [aggregate.meta_prefix; default "statsd"].
    #[arg(long, env = "KSTATSD_META_PREFIX")]
    meta_prefix: Option<String>,
    /// Stop reporting keys that saw no data in an interval [aggregate.delete_idle_stats; false].
    #[arg(long, env = "KSTATSD_DELETE_IDLE_STATS", num_args = 0..=1, default_missing_value = "true")]
    delete_idle_stats: Option<bool>,
    /// Per type: delete idle counters [aggregate.delete_counters; = delete_idle_stats].
    #[arg(long, env = "KSTATSD_DELETE_COUNTERS")]
    delete_counters: Option<bool>,
    /// Per type: delete idle timers [aggregate.delete_timers; = delete_idle_stats].
    #[arg(long, env = "KSTATSD_DELETE_TIMERS")]
    delete_timers: Option<bool>,
    /// Per type: delete idle sets [aggregate.delete_sets; = delete_idle_stats].
    #[arg(long, env = "KSTATSD_DELETE_SETS")]
    delete_sets: Option<bool>,
    /// Per type: delete idle gauges [aggregate.delete_gauges; = delete_idle_stats].
    #[arg(long, env = "KSTATSD_DELETE_GAUGES")]
    delete_gauges: Option<bool>,
    /// Delete a gauge after this many idle intervals [aggregate.gauges_max_ttl].
    #[arg(long, env = "KSTATSD_GAUGES_MAX_TTL")]
    gauges_max_ttl: Option<u32>,
    /// Also put counter rates (stats.k) in the JSON output [aggregate.counter_rates; false].
    #[arg(long, env = "KSTATSD_COUNTER_RATES", num_args = 0..=1, default_missing_value = "true")]
    counter_rates: Option<bool>,
    /// etsy's key sanitizing [aggregate.sanitize_keys; default true].
    #[arg(long, env = "KSTATSD_SANITIZE_KEYS")]
    sanitize_keys: Option<bool>,
    /// Longest metric name accepted, bytes [aggregate.max_name_bytes; default 1024].
    #[arg(long, env = "KSTATSD_MAX_NAME_BYTES")]
    max_name_bytes: Option<usize>,
    /// Most tags on one line [aggregate.max_tags; default 64].
    #[arg(long, env = "KSTATSD_MAX_TAGS")]
    max_tags: Option<usize>,
    /// Most distinct series per interval [aggregate.max_series; default 1000000].
    #[arg(long, env = "KSTATSD_MAX_SERIES")]
    max_series: Option<usize>,
    /// Most distinct set members per interval, all sets together [aggregate.max_set_members].
    #[arg(long, env = "KSTATSD_MAX_SET_MEMBERS")]
    max_set_members: Option<usize>,

    /// Console sink: json, text or off [sinks.console.format; default json].
    #[arg(long, env = "KSTATSD_CONSOLE")]
    console: Option<String>,
}

impl Cli {
    fn overrides(&self) -> Overrides {
        Overrides {
            udp: self.udp.clone(),
            recv_buffer: self.recv_buffer.clone(),
            recv_batch: self.recv_batch,
            max_datagram: self.max_datagram.clone(),
            busy_poll: self.busy_poll.clone(),
            pin_ingest_core: self.pin_ingest_core,
            pin_flush_core: self.pin_flush_core,
            shutdown_timeout: self.shutdown_timeout.clone(),
            flush_interval: self.flush_interval.clone(),
            percentiles: self.percentiles.clone(),
            histograms: self.histograms.clone(),
            legacy_namespace: self.legacy_namespace,
            global_prefix: self.global_prefix.clone(),
            prefix_counter: self.prefix_counter.clone(),
            prefix_timer: self.prefix_timer.clone(),
            prefix_gauge: self.prefix_gauge.clone(),
            prefix_set: self.prefix_set.clone(),
            global_suffix: self.global_suffix.clone(),
            meta_prefix: self.meta_prefix.clone(),
            delete_idle_stats: self.delete_idle_stats,
            delete_counters: self.delete_counters,
            delete_timers: self.delete_timers,
            delete_sets: self.delete_sets,
            delete_gauges: self.delete_gauges,
            gauges_max_ttl: self.gauges_max_ttl,
            counter_rates: self.counter_rates,
            sanitize_keys: self.sanitize_keys,
            max_name_bytes: self.max_name_bytes,
            max_tags: self.max_tags,
            max_series: self.max_series,
            max_set_members: self.max_set_members,
            console: self.console.clone(),
        }
    }
}

/// One line per event on stderr: `kstatsd[LEVEL]: message`.
struct StderrLogger(log::LevelFilter);

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= self.0
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            eprintln!("kstatsd[{}]: {}", r.level(), r.args());
        }
    }
    fn flush(&self) {}
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = cli.log.parse().unwrap_or(log::LevelFilter::Info);
    let _ = log::set_boxed_logger(Box::new(StderrLogger(level))).map(|()| log::set_max_level(level));

    let config = match Config::load(cli.config.as_ref(), &cli.overrides()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kstatsd: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(1)
        }
    }
}

fn run(config: Config) -> std::io::Result<()> {
    let sinks = daemon::configured_sinks(&config);
    let d = daemon::build(&config, sinks)?;
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&d.stop))?;
        signal_hook::low_level::pipe::register(sig, d.wake.try_clone()?)?;
    }
    if let Some(core) = config.server.pin_ingest_core {
        net::pin_current_thread(core, "ingest");
    }
    log::info!("ready");
    d.server.run()
}
