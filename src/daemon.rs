//! Assembly: binds the sockets, starts the flush thread with the configured sinks, and builds the
//! ingest [`Server`]. Runs on the main thread at start-up; `main.rs` adds signals and logging,
//! and tests use it to run a real daemon in-process with sinks of their own.

use crate::aggregate::Tables;
use crate::config::Config;
use crate::flush::thread as flush_thread;
use crate::net::{self, drops::KernelDrops};
use crate::server::{Server, ServerParts};
use crate::sink::{Console, Sink};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// A daemon ready to run, and how to stop it.
pub struct Daemon {
    pub server: Server,
    /// The UDP addresses actually bound (port 0 resolved).
    pub udp: Vec<SocketAddr>,
    /// Set it, then write a byte to `wake`, to stop the loop (what SIGTERM does).
    pub stop: Arc<AtomicBool>,
    pub wake: std::os::unix::net::UnixStream,
}

/// The sinks the config asks for (the console one, for now).
pub fn configured_sinks(config: &Config) -> Vec<Box<dyn Sink>> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if let Some(format) = config.console {
        sinks.push(Box::new(Console::stdout(format, config.aggregate.counter_rates)));
    }
    sinks
}

/// Binds every listener and starts the flush thread with `sinks`.
pub fn build(config: &Config, sinks: Vec<Box<dyn Sink>>) -> io::Result<Daemon> {
    let mut sockets = Vec::new();
    let mut udp = Vec::new();
    for addr in &config.server.udp {
        let bound = net::bind_udp(*addr, config.server.recv_buffer)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot bind udp {addr}: {e}")))?;
        log::info!("udp listening on {} (receive buffer {} bytes)", bound.local, bound.recv_buffer);
        udp.push(bound.local);
        sockets.push(bound.socket);
    }
    let fds: Vec<&dyn AsRawFd> = sockets.iter().map(|s| s as &dyn AsRawFd).collect();
    let drops = KernelDrops::new(&fds);

    if sinks.is_empty() {
        log::warn!("no sink configured: flushes are computed and discarded");
    }
    let capture_packets = sinks.iter().any(|s| s.wants_packets());
    let limits = config.aggregate.limits.clone();
    let flush = flush_thread::spawn(
        config.aggregate.clone(),
        sinks,
        Box::new(Tables::new(limits.clone())),
        net::flush_core(config.server.pin_flush_core, config.server.pin_ingest_core),
        drops,
        config.server.shutdown_timeout,
    )?;

    let stop = Arc::new(AtomicBool::new(false));
    let (wake_read, wake) = std::os::unix::net::UnixStream::pair()?;
    wake_read.set_nonblocking(true)?;
    wake.set_nonblocking(true)?;
    let server = Server::new(ServerParts {
        udp: sockets,
        recv_batch: config.server.recv_batch,
        max_datagram: config.server.max_datagram,
        active: Box::new(Tables::new(limits)),
        flush,
        interval: config.aggregate.flush_interval,
        busy_poll: config.server.busy_poll,
        capture_packets,
        stop: Arc::clone(&stop),
        wake: mio::net::UnixStream::from_std(wake_read),
        shutdown_timeout: config.server.shutdown_timeout,
    })?;
    Ok(Daemon { server, udp, stop, wake })
}
