//! SIGHUP: reloading the configuration file without losing what was aggregated. Runs on the
//! ingest thread ([`Reloader`], `Server::apply_reload`) and on a short-lived `kstatsd-reload`
//! thread (reading the file, starting the new sinks).
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

use super::{Server, LISTENER_BASE};
use crate::config::{AggregateConfig, Config, Overrides};
use crate::flush_thread::FlushMsg;
use crate::ingest::dump::DebugDump;
use crate::net::{BoundInput, DgramSocket, InputAddr, ListenerSocket};
use crate::sink::{self, Sink};
use crate::sys::RecvBatch;
use mio::{Interest, Token};
use std::io;
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
            sink::start_all(&config.sink_sections())
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

impl Server {
    /// Starts a requested reload, or applies a finished one.
    pub(super) fn reload_step(&mut self) {
        let Some(r) = self.reload.as_mut() else { return };
        match r.poll(&self.config, &self.waker) {
            None => {}
            Some(Ok(loaded)) => self.apply_reload(loaded),
            Some(Err(why)) => {
                log::error!("reload refused, the running configuration is kept: {why}");
                self.active.stats.config_reload_failures += 1;
            }
        }
    }

    /// Applies a validated configuration (see the module docs for what changes how).
    fn apply_reload(&mut self, loaded: Loaded) {
        let new = loaded.config;
        let old_s = self.config.server.clone();
        let new_s = &new.server;
        let have: Vec<InputAddr> = self.local_addrs().into_iter().map(|(e, _)| e).collect();
        let want = InputAddr::all(new_s);
        // Bind every new endpoint first: one failure and nothing changes.
        let mut fresh = Vec::new();
        for e in want.iter().filter(|e| !have.contains(e)) {
            match crate::net::bind(e, new_s) {
                Ok(b) => fresh.push(b),
                Err(err) => {
                    log::error!("reload refused, the running configuration is kept: {err}");
                    self.active.stats.config_reload_failures += 1;
                    return;
                }
            }
        }
        let udp_changed = !fresh.is_empty()
            && fresh.iter().any(|b| matches!(b, BoundInput::Dgram { socket: DgramSocket::Udp(_), .. }))
            || self
                .inputs
                .dgram
                .iter()
                .any(|d| !want.contains(&d.endpoint) && matches!(d.socket, DgramSocket::Udp(_)));
        if let Err(e) = self.remove_inputs(&want) {
            log::error!("reload: removing an input failed: {e}");
        }
        for b in fresh {
            if let Err(e) = self.add_input(b) {
                log::error!("reload: cannot register a new input: {e}");
            }
        }
        if (old_s.recv_batch, old_s.max_datagram) != (new_s.recv_batch, new_s.max_datagram) {
            self.inputs.batch = RecvBatch::new(new_s.recv_batch, new_s.max_datagram);
        }
        if (old_s.pin_ingest_core, old_s.pin_flush_core) != (new_s.pin_ingest_core, new_s.pin_flush_core) {
            log::warn!("reload: thread pinning changes only at a restart");
        }
        if old_s.debug_dump != new_s.debug_dump {
            self.dump = match new_s.debug_dump.as_deref().map(DebugDump::start).transpose() {
                Ok(d) => d,
                Err(e) => {
                    log::error!("reload: debug dump off: {e}");
                    None
                }
            };
        }
        if old_s.unix_mode != new_s.unix_mode {
            for (e, _) in self.local_addrs() {
                if let InputAddr::UnixDgram(p) | InputAddr::UnixStream(p) = e {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = std::fs::Permissions::from_mode(new_s.unix_mode);
                    if let Err(err) = std::fs::set_permissions(&p, mode) {
                        log::error!("reload: cannot change the mode of {}: {err}", p.display());
                    }
                }
            }
        }
        if old_s.recv_buffer != new_s.recv_buffer {
            log::info!("reload: the new recv_buffer applies to sockets bound from now on");
        }
        self.busy_poll = new_s.busy_poll;
        self.shutdown_timeout = new_s.shutdown_timeout;
        self.clock.set_interval(new.aggregate.flush_interval);
        self.limits = new.aggregate.limits.clone();
        self.active.set_limits(self.limits.clone());
        if let Some(sinks) = &loaded.sinks {
            self.capture_packets = sinks.iter().any(|s| s.wants_packets());
        }
        let drops = udp_changed.then(|| {
            let fds: Vec<&dyn std::os::fd::AsRawFd> = self
                .inputs
                .dgram
                .iter()
                .filter_map(|d| match &d.socket {
                    DgramSocket::Udp(s) => Some(s as &dyn std::os::fd::AsRawFd),
                    DgramSocket::Unix(..) => None,
                })
                .collect();
            crate::net::drops::KernelDrops::new(&fds)
        });
        let msg = crate::flush_thread::Reload {
            aggregate: new.aggregate.clone(),
            sinks: loaded.sinks,
            on_failure: new.on_failure.clone(),
            drops,
        };
        // Room is reserved for it (`flush_thread::QUEUE`): this does not wait.
        if self.flush.jobs.send(FlushMsg::Reload(Box::new(msg))).is_err() {
            self.flush_thread_gone = true;
        }
        self.admin.config_text = new.to_toml();
        self.config = new;
        self.active.stats.config_reloads += 1;
        log::info!("configuration reloaded");
    }

    /// Closes the inputs whose endpoint is no longer wanted (their open connections stay).
    fn remove_inputs(&mut self, want: &[InputAddr]) -> io::Result<()> {
        let registry = self.poll.registry();
        self.inputs.remove(registry, want)?;
        let before = self.streams.listeners.len();
        self.streams.listeners.retain_mut(|l| {
            let keep = want.contains(&l.endpoint);
            if !keep {
                log::info!("reload: closing {}", l.local);
                let _ = match &mut l.socket {
                    ListenerSocket::Tcp(t) => registry.deregister(t),
                    ListenerSocket::Unix(u, _) => registry.deregister(u),
                };
            }
            keep
        });
        if self.streams.listeners.len() != before {
            for (i, l) in self.streams.listeners.iter_mut().enumerate() {
                let token = Token(LISTENER_BASE + i);
                match &mut l.socket {
                    ListenerSocket::Tcp(t) => registry.reregister(t, token, Interest::READABLE)?,
                    ListenerSocket::Unix(u, _) => registry.reregister(u, token, Interest::READABLE)?,
                }
            }
        }
        Ok(())
    }
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
