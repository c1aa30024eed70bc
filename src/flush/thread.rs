//! The flush thread (optionally pinned to a core): receives each full table from the ingest
//! thread, summarizes it into a snapshot, hands the snapshot to every sink, clears the table and
//! sends it back as the ingest thread's next spare. It is the only thread that waits on sinks, so
//! a slow sink makes the interval longer (counted as an overrun on the ingest side) but never
//! blocks ingest.

use super::{FlushMeta, Flusher, Naming};
use crate::aggregate::Tables;
use crate::config::AggregateConfig;
use crate::net::drops::KernelDrops;
use crate::sink::Sink;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One full interval on its way to the flush thread.
pub struct FlushJob {
    pub tables: Box<Tables>,
    pub meta: FlushMeta,
    /// The final flush at shutdown: sinks are drained and the thread exits after it.
    pub last: bool,
}

/// Figures the flush thread keeps per sink, reported in the next flush as
/// `stats.statsd.<sink>Stats.*`.
#[derive(Clone, Copy, Debug, Default)]
struct SinkFigures {
    last_flush: u64,
    last_exception: u64,
    flush_time_ms: f64,
    flush_length: u64,
    calculation_ms: f64,
    failures: u64,
}

/// The ingest side's ends of the two channels.
pub struct FlushHandle {
    pub jobs: SyncSender<FlushJob>,
    pub spares: Receiver<Box<Tables>>,
    pub thread: JoinHandle<()>,
}

/// Starts the flush thread. `spare` is the second table of the double buffer; it is sent back
/// at once so the ingest thread has a spare for its first flush.
pub fn spawn(
    config: AggregateConfig,
    mut sinks: Vec<Box<dyn Sink>>,
    spare: Box<Tables>,
    pin_core: Option<usize>,
    mut drops: KernelDrops,
    shutdown_timeout: Duration,
) -> std::io::Result<FlushHandle> {
    let (job_tx, job_rx) = sync_channel::<FlushJob>(1);
    let (spare_tx, spare_rx) = sync_channel::<Box<Tables>>(2);
    spare_tx.send(spare).expect("fresh channel");
    let thread = std::thread::Builder::new().name("kstatsd-flush".into()).spawn(move || {
        if let Some(core) = pin_core {
            crate::net::pin_current_thread(core, "flush");
        }
        let naming = Naming::new(&config);
        let mut flusher = Flusher::new(config);
        let mut figures = vec![SinkFigures::default(); sinks.len()];
        let wants_packets = sinks.iter().any(|s| s.wants_packets());
        while let Ok(job) = job_rx.recv() {
            let FlushJob { mut tables, mut meta, last } = job;
            let started = Instant::now();
            meta.kernel_drops = drops.since_last();
            if wants_packets {
                for sink in sinks.iter_mut().filter(|s| s.wants_packets()) {
                    for p in tables.captured_packets() {
                        sink.packet(p);
                    }
                }
            }
            let snapshot = flusher.flush(&mut tables, &meta);
            snapshot.statsd.push(("processing_time".into(), started.elapsed().as_secs_f64() * 1e3));
            for (sink, f) in sinks.iter().zip(&figures) {
                let n = sink.name();
                // The sink's own figures first (a sink that delivers on its own thread reports
                // its real last_flush, queue depth, …); the flush thread's fill in the rest.
                let mut own: Vec<(&'static str, f64)> = Vec::new();
                sink.meta(&mut |k, v| own.push((k, v)));
                let ours = [
                    ("calculationtime", f.calculation_ms),
                    ("last_flush", f.last_flush as f64),
                    ("last_exception", f.last_exception as f64),
                    ("flush_time", f.flush_time_ms),
                    ("flush_length", f.flush_length as f64),
                ];
                let defaults: Vec<_> =
                    ours.into_iter().filter(|(k, _)| !own.iter().any(|(o, _)| o == k)).collect();
                for (k, v) in defaults.into_iter().chain(own) {
                    snapshot.statsd.push((format!("{n}Stats.{k}"), v));
                }
            }
            for (sink, f) in sinks.iter_mut().zip(&mut figures) {
                let t = Instant::now();
                match sink.flush(snapshot, &naming) {
                    Ok(report) => {
                        f.last_flush = snapshot.clock;
                        f.flush_length = report.bytes;
                        f.calculation_ms = report.calculation_ms;
                    }
                    Err(e) => {
                        f.last_exception = snapshot.clock;
                        f.failures += 1;
                        log::error!("sink {}: flush failed: {e}", sink.name());
                    }
                }
                f.flush_time_ms = t.elapsed().as_secs_f64() * 1e3;
            }
            tables.clear();
            // The ingest thread may be gone at shutdown; the table is then simply dropped.
            let _ = spare_tx.send(tables);
            if last {
                let deadline = Instant::now() + shutdown_timeout;
                for sink in &mut sinks {
                    if let Err(e) = sink.shutdown(deadline) {
                        log::error!("sink {}: not drained at shutdown: {e}", sink.name());
                    }
                    sink.status(&mut |k, v| log::info!("sink {} at exit: {k} = {v}", sink.name()));
                }
                break;
            }
        }
    })?;
    Ok(FlushHandle { jobs: job_tx, spares: spare_rx, thread })
}
