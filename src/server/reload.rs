//! SIGHUP reload on the ingest thread. A SIGHUP starts a reload on a helper thread
//! ([`crate::reload`]); its result comes back the way the flush thread's answers to the
//! management port do (a `mio::Waker` wakes the loop) and is applied between two turns.

use super::{Server, LISTENER_BASE};
use crate::flush::thread::FlushMsg;
use crate::ingest::dump::DebugDump;
use crate::net::recvmmsg::RecvBatch;
use crate::net::{Bound, DgramSocket, Endpoint, ListenerSocket};
use mio::{Interest, Token};
use std::io;

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

    /// Applies a validated configuration (see [`crate::reload`] for what changes how).
    fn apply_reload(&mut self, loaded: crate::reload::Loaded) {
        let new = loaded.config;
        let old_s = self.config.server.clone();
        let new_s = &new.server;
        let have: Vec<Endpoint> = self.local_addrs().into_iter().map(|(e, _)| e).collect();
        let want = Endpoint::all(new_s);
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
            && fresh.iter().any(|b| matches!(b, Bound::Dgram { socket: DgramSocket::Udp(_), .. }))
            || self
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
            self.batch = RecvBatch::new(new_s.recv_batch, new_s.max_datagram);
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
                if let Endpoint::UnixDgram(p) | Endpoint::UnixStream(p) = e {
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
        if self.interval != new.aggregate.flush_interval {
            self.interval = new.aggregate.flush_interval;
            self.next_flush = self.last_flush + self.interval;
        }
        self.limits = new.aggregate.limits.clone();
        self.active.set_limits(self.limits.clone());
        if let Some(sinks) = &loaded.sinks {
            self.capture_packets = sinks.iter().any(|s| s.wants_packets());
        }
        let drops = udp_changed.then(|| {
            let fds: Vec<&dyn std::os::fd::AsRawFd> = self
                .dgram
                .iter()
                .filter_map(|d| match &d.socket {
                    DgramSocket::Udp(s) => Some(s as &dyn std::os::fd::AsRawFd),
                    DgramSocket::Unix(..) => None,
                })
                .collect();
            crate::net::drops::KernelDrops::new(&fds)
        });
        let msg = crate::flush::thread::Reload {
            aggregate: new.aggregate.clone(),
            sinks: loaded.sinks,
            on_failure: new.on_failure.clone(),
            drops,
        };
        // Room is reserved for it (`flush::thread::QUEUE`): this does not wait.
        if self.flush.jobs.send(FlushMsg::Reload(Box::new(msg))).is_err() {
            self.flush_thread_gone = true;
        }
        self.config_text = new.to_toml();
        self.config = new;
        self.active.stats.config_reloads += 1;
        log::info!("configuration reloaded");
    }

    /// Closes the inputs whose endpoint is no longer wanted (their open connections stay).
    fn remove_inputs(&mut self, want: &[Endpoint]) -> io::Result<()> {
        let registry = self.poll.registry();
        let mut removed = false;
        self.dgram.retain_mut(|d| {
            let keep = want.contains(&d.endpoint);
            if !keep {
                removed = true;
                log::info!("reload: closing {}", d.local);
                let _ = match &mut d.socket {
                    DgramSocket::Udp(s) => registry.deregister(s),
                    DgramSocket::Unix(s, _) => registry.deregister(s),
                };
            }
            keep
        });
        if removed {
            self.retoken_dgram()?;
        }
        let registry = self.poll.registry();
        let before = self.listeners.len();
        self.listeners.retain_mut(|l| {
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
        if self.listeners.len() != before {
            for (i, l) in self.listeners.iter_mut().enumerate() {
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
