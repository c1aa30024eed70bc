//! Assembly: binds the sockets, starts the flush thread with the configured sinks, and builds the
//! ingest [`Server`]. Runs on the main thread at start-up; `main.rs` adds signals and logging,
//! and tests use it to run a real daemon in-process with sinks of their own.

use crate::aggregate::Tables;
use crate::config::Config;
use crate::flush_thread;
use crate::net::{self, drops::KernelDrops};
use crate::server::{Server, ServerParts};
use crate::sink::Sink;
use std::io;
use std::net::SocketAddr;
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

/// Binds every listener and starts the flush thread with `sinks`.
pub fn build(config: &Config, sinks: Vec<Box<dyn Sink>>) -> io::Result<Daemon> {
    let mut inputs = Vec::new();
    for endpoint in net::InputAddr::all(&config.server) {
        inputs.push(net::bind(&endpoint, &config.server)?);
    }
    let udp: Vec<SocketAddr> = inputs
        .iter()
        .filter_map(|b| match b {
            net::BoundInput::Dgram { endpoint: net::InputAddr::Udp(_), local, .. } => local.parse().ok(),
            _ => None,
        })
        .collect();
    let drops = KernelDrops::new(&net::udp_fds(&inputs));

    // `[http]`: the Prometheus sink, with its server for /metrics and /healthz.
    let health = crate::admin::Health::default();
    let mut sinks = sinks;
    if let Some(http) = &config.http {
        let meta = &config.aggregate.meta_prefix;
        sinks.push(Box::new(crate::sink::prometheus::Prometheus::serve(http.listen, meta, health.clone())?));
    }
    if sinks.is_empty() {
        log::warn!("no sink configured: flushes are computed and discarded");
    }
    let capture_packets = sinks.iter().any(|s| s.wants_packets());
    let limits = config.aggregate.limits.clone();
    let flush = flush_thread::spawn(
        config.aggregate.clone(),
        sinks,
        Box::new(Tables::new(limits.clone())),
        crate::sys::flush_core(config.server.pin_flush_core, config.server.pin_ingest_core),
        drops,
        config.server.shutdown_timeout,
        config.on_failure.clone(),
    )?;
    // The Docker poller runs on its own thread; the flush thread records its samples.
    if let Some(docker) = &config.docker {
        let feed = crate::source::docker::start(docker)?;
        let _ = flush.jobs.send(flush_thread::FlushMsg::Source(feed));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let (wake_read, wake) = std::os::unix::net::UnixStream::pair()?;
    wake_read.set_nonblocking(true)?;
    wake.set_nonblocking(true)?;
    let server = Server::new(ServerParts {
        config: config.clone(),
        inputs,
        active: Box::new(Tables::new(limits)),
        flush,
        capture_packets,
        stop: Arc::clone(&stop),
        wake: mio::net::UnixStream::from_std(wake_read),
        health,
    })?;
    Ok(Daemon { server, udp, stop, wake })
}
