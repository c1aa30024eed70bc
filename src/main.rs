//! The `kstatsd` binary: command line, logging, start-up and shutdown. Runs on the main thread,
//! which becomes the ingest thread once everything is bound.

use clap::Parser;
use kstatsd::config::{Config, Overrides};
use kstatsd::{daemon, sys};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// A StatsD-compatible metrics aggregation daemon. Every option can also be set in the TOML
/// file given with --config, and as an environment variable (shown in brackets); a flag beats
/// the environment, which beats the file.
#[derive(Parser, Debug)]
#[command(name = "kstatsd", version, about, max_term_width = 100)]
struct Cli {
    /// Configuration file: TOML, or an etsy statsd config.js (by its .js extension).
    #[arg(long, env = "KSTATSD_CONFIG")]
    config: Option<PathBuf>,
    /// Validate the configuration, print the effective one, and exit (binds nothing).
    #[arg(long)]
    check_config: bool,
    /// Log level: error, warn, info, debug.
    #[arg(long, env = "KSTATSD_LOG", default_value = "info")]
    log: String,
    /// Every component's section: `[server]`, `[aggregate]`, each sink's, `[docker]`, `[http]`.
    #[command(flatten)]
    overrides: Overrides,
}

/// One line per event on stderr: `kstatsd[LEVEL]: message`.
struct StderrLogger(log::LevelFilter);

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= self.0
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            // Not `eprintln!`: it panics when stderr is gone (a log collector that died), and a
            // log line must never take the daemon down (`tests/faults.rs`).
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr().lock(), "kstatsd[{}]: {}", r.level(), r.args());
        }
    }
    fn flush(&self) {}
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = cli.log.parse().unwrap_or(log::LevelFilter::Info);
    let _ = log::set_boxed_logger(Box::new(StderrLogger(level))).map(|()| log::set_max_level(level));

    let config = match Config::load(cli.config.as_ref(), &cli.overrides) {
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
    match run(config, cli.config, cli.overrides) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(1)
        }
    }
}

fn run(config: Config, path: Option<PathBuf>, overrides: Overrides) -> std::io::Result<()> {
    if !sys::pin_mmap_threshold() {
        log::debug!("the allocator's mmap threshold is left as it is");
    }
    match sys::raise_nofile_limit() {
        Ok((before, after)) if after > before => {
            log::info!("open files limit raised from {before} to {after}")
        }
        Ok(_) => {}
        Err(e) => log::warn!("cannot raise the open files limit: {e}"),
    }
    let sinks = kstatsd::sink::start_all(&config.sink_sections())?;
    let mut d = daemon::build(&config, sinks)?;
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&d.stop))?;
        signal_hook::low_level::pipe::register(sig, d.wake.try_clone()?)?;
    }
    // SIGHUP reloads the file (its default action would end the process).
    let reload = Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))?;
    signal_hook::low_level::pipe::register(signal_hook::consts::SIGHUP, d.wake.try_clone()?)?;
    d.server.enable_reload(kstatsd::server::reload::Reloader::new(path, overrides, reload));
    if let Some(core) = config.server.pin_ingest_core {
        sys::pin_current_thread(core, "ingest");
    }
    log::info!("ready");
    d.server.run()
}
