//! Assembly: binds the sockets, starts the flush thread with the configured sinks, and builds the
//! ingest [`Server`]. Runs on the main thread at start-up; `main.rs` adds signals and logging,
//! and tests use it to run a real daemon in-process with sinks of their own.

use crate::aggregate::Tables;
use crate::config::Config;
use crate::flush::thread as flush_thread;
use crate::net::{self, drops::KernelDrops};
use crate::server::{Server, ServerParts};
use crate::sink::backstop::Backstop;
use crate::sink::graphite::Graphite;
use crate::sink::kafka_rest::KafkaRest;
use crate::sink::{Console, Sink};
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

/// The sinks the config asks for. The network sinks start their worker threads here.
pub fn configured_sinks(config: &Config) -> io::Result<Vec<Box<dyn Sink>>> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if let Some(format) = config.console {
        sinks.push(Box::new(Console::stdout(format, config.aggregate.counter_rates)));
    }
    if let Some(g) = &config.graphite {
        sinks.push(Box::new(Graphite::start(g)?));
    }
    if let Some(b) = &config.backstop {
        sinks.push(Box::new(Backstop::start(b)?));
    }
    if let Some(k) = &config.kafka_rest {
        let a = &config.aggregate;
        sinks.push(Box::new(KafkaRest::new(k, a.counter_rates, &a.meta_prefix)?));
    }
    if let Some(k) = &config.kafka {
        let a = &config.aggregate;
        let native =
            crate::sink::kafka::KafkaNative::new(k, a.counter_rates, &a.meta_prefix, a.flush_interval)?;
        sinks.push(Box::new(native));
    }
    Ok(sinks)
}

/// Binds every listener and starts the flush thread with `sinks`.
pub fn build(config: &Config, sinks: Vec<Box<dyn Sink>>) -> io::Result<Daemon> {
    let mut inputs = Vec::new();
    for endpoint in net::Endpoint::all(&config.server) {
        inputs.push(net::bind(&endpoint, &config.server)?);
    }
    let udp: Vec<SocketAddr> = inputs
        .iter()
        .filter_map(|b| match b {
            net::Bound::Dgram { endpoint: net::Endpoint::Udp(_), local, .. } => local.parse().ok(),
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
        net::flush_core(config.server.pin_flush_core, config.server.pin_ingest_core),
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
