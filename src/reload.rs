//! SIGHUP: reloading the configuration file without losing what was aggregated.
//!
//! The signal sets a flag (and wakes the loop through the signal pipe). The ingest thread then
//! starts a `kstatsd-reload` thread, because reading the file and starting new sinks (which may
//! resolve names and connect) is I/O the ingest thread does not own. That thread reads and
//! validates the file with the same flags and environment the daemon started with, builds the
//! sinks only when their configuration changed, and hands the result back on a channel, waking
//! the loop. The ingest thread applies it between two turns (`Server::apply_reload`):
//!
//! - inputs: only endpoints that were added are bound (all of them first: if one fails, nothing
//!   changes) and only removed ones are closed; unchanged sockets are never rebound, and open
//!   connections stay open;
//! - limits, flush interval, busy poll, stream limits, admin switches, the debug dump: applied at
//!   once (limits to the active tables now, to the spare when it comes back);
//! - aggregation (prefixes, percentiles, histograms, idle deletion), sinks and the failure hook:
//!   sent to the flush thread, which keeps its known series and gauge values and shuts replaced
//!   sinks down on a thread of their own;
//! - the thread pins, which only a restart can change, are kept (and a warning says so).
//!
//! A file that does not parse or validate changes nothing: the error (with the file and, for
//! syntax errors, the line) is logged and counted in `statsd.config_reload_failures`.

use crate::config::{AggregateConfig, Config, Overrides};
use crate::sink::Sink;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, TryRecvError};
use std::sync::Arc;

/// A validated new configuration, with its sinks already started when they changed.
pub struct Loaded {
    pub config: Config,
    pub sinks: Option<Vec<Box<dyn Sink>>>,
}

/// The ingest thread's handle on reloading.
pub struct Reloader {
    path: Option<PathBuf>,
    overrides: Overrides,
    requested: Arc<AtomicBool>,
    in_flight: Option<Receiver<Result<Loaded, String>>>,
}

impl Reloader {
    /// `requested` is the flag the SIGHUP handler sets; `path` the `--config` file, if any.
    pub fn new(path: Option<PathBuf>, overrides: Overrides, requested: Arc<AtomicBool>) -> Reloader {
        Reloader { path, overrides, requested, in_flight: None }
    }

    /// Whether there is anything to do: a signal not yet acted on, or a load under way.
    #[inline]
    pub fn pending(&self) -> bool {
        self.in_flight.is_some() || self.requested.load(Ordering::Relaxed)
    }

    /// Starts a load when one was requested (and none is running); returns a finished one.
    pub fn poll(&mut self, current: &Config, waker: &Arc<mio::Waker>) -> Option<Result<Loaded, String>> {
        if let Some(rx) = &self.in_flight {
            return match rx.try_recv() {
                Ok(r) => {
                    self.in_flight = None;
                    Some(r)
                }
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => {
                    self.in_flight = None;
                    Some(Err("the reload thread died".into()))
                }
            };
        }
        if !self.requested.swap(false, Ordering::Relaxed) {
            return None;
        }
        let Some(path) = self.path.clone() else {
            log::warn!("SIGHUP: no --config file to reload");
            return None;
        };
        log::info!("SIGHUP: reloading {}", path.display());
        let (tx, rx) = channel();
        let (overrides, current, waker) = (self.overrides.clone(), current.clone(), Arc::clone(waker));
        let spawned = std::thread::Builder::new().name("kstatsd-reload".into()).spawn(move || {
            let _ = tx.send(load(&path, &overrides, &current));
            let _ = waker.wake();
        });
        match spawned {
            Ok(_) => {
                self.in_flight = Some(rx);
                None
            }
            Err(e) => Some(Err(format!("cannot start the reload thread: {e}"))),
        }
    }
}

/// Reads and validates the file; starts new sinks when their configuration changed.
fn load(path: &PathBuf, overrides: &Overrides, current: &Config) -> Result<Loaded, String> {
    let config = Config::load(Some(path), overrides).map_err(|e| {
        let text = e.to_string();
        if text.starts_with(&path.display().to_string()) {
            text
        } else {
            format!("{}: {text}", path.display())
        }
    })?;
    let sinks = if sinks_changed(current, &config) {
        Some(
            crate::daemon::configured_sinks(&config)
                .map_err(|e| format!("cannot start the new sinks: {e}"))?,
        )
    } else {
        None
    };
    Ok(Loaded { config, sinks })
}

/// Whether the sinks must be rebuilt: any sink section changed, or one of the aggregate options
/// sinks are built with (`counter_rates`, `meta_prefix`). Everything in `Config` besides the
/// server, aggregate and hook settings is a sink's, so a sink added later is covered.
pub fn sinks_changed(a: &Config, b: &Config) -> bool {
    let base = Config::defaults();
    let sink_part = |c: &Config| Config {
        server: base.server.clone(),
        aggregate: AggregateConfig {
            counter_rates: c.aggregate.counter_rates,
            meta_prefix: c.aggregate.meta_prefix.clone(),
            ..base.aggregate.clone()
        },
        on_failure: None,
        ..c.clone()
    };
    sink_part(a) != sink_part(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_file;

    fn config(text: &str) -> Config {
        Config::build(parse_file(text).unwrap(), &Overrides::default()).unwrap()
    }

    #[test]
    fn only_sink_settings_rebuild_the_sinks() {
        let a = config("[aggregate]\npercentiles = [90]\n");
        assert!(!sinks_changed(
            &a,
            &config("[aggregate]\npercentiles = [99]\nmax_series = 10\n[server]\ntcp = [\"127.0.0.1:0\"]\n")
        ));
        assert!(!sinks_changed(&a, &config("[sinks]\non_failure = [\"true\"]\n")));
        assert!(sinks_changed(&a, &config("[sinks.console]\nformat = \"text\"\n")));
        assert!(sinks_changed(&a, &config("[aggregate]\ncounter_rates = true\n")));
    }
}
