//! The flush thread (`kstatsd-flush`, optionally pinned to a core): receives each full table
//! from the ingest thread, summarizes it into a snapshot, hands the snapshot to every sink, clears
//! the table and sends it back as the ingest thread's next spare. It is the only thread that
//! waits on sinks, so a slow sink makes the interval longer (counted as an overrun on the ingest
//! side) but never blocks ingest.
//!
//! It owns the state that outlives an interval ([`Flusher`]), so it also answers the management
//! port's questions about it (listings, deletes, `stats`; see [`crate::admin::management`])
//! between flushes, records the sources' latest samples into every interval (through
//! [`source::Interval`]), takes a reloaded configuration (new sinks, prefixes, percentiles,
//! failure hook), and runs the failure hook when a sink fails ([`crate::flush::hook`]). All of
//! these arrive on the one channel the flushes come on, so the thread waits on a single `recv`.
//!
//! This module is the composition of [`crate::flush`], [`crate::sink`], [`crate::source`] and
//! [`crate::admin`], which is why it sits above them, next to the ingest thread's
//! [`crate::server`]: the sinks read flush's snapshot and the management answers read its known
//! series, so a flush thread inside `flush` would make both import each other.

use crate::admin::management::{self, FlushFigures, Query};
use crate::aggregate::{IngestStats, Tables};
use crate::flush::config::{AggregateConfig, FailureHook};
use crate::flush::hook::Hooks;
use crate::flush::{FlushMeta, Flusher, Naming};
use crate::net::drops::KernelDrops;
use crate::parse::Kind;
use crate::sink::Sink;
use crate::source::{self, Feed, Recorder};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// One full interval on its way to the flush thread.
pub struct FlushJob {
    pub tables: Box<Tables>,
    pub meta: FlushMeta,
    /// Set on the final flush at shutdown: the sinks deliver what they hold until then, and the
    /// thread exits after it.
    pub shutdown_by: Option<Instant>,
}

/// A reloaded configuration, as far as the flush thread is concerned.
pub struct Reload {
    pub aggregate: AggregateConfig,
    /// New sinks, when the sink configuration changed (the old ones are shut down).
    pub sinks: Option<Vec<Box<dyn Sink>>>,
    pub on_failure: Option<FailureHook>,
    /// The UDP sockets to watch for kernel drops, when they changed.
    pub drops: Option<KernelDrops>,
}

/// What the flush thread receives.
pub enum FlushMsg {
    Job(FlushJob),
    Admin(Box<management::Request>),
    Reload(Box<Reload>),
    /// A source's feed (the Docker poller): its latest samples are recorded at every flush.
    Source(Feed),
}

/// Capacity of the flush thread's channel: one flush, one question per admin client, a reload,
/// and slack. The ingest thread only sends a flush after the spare came back (the thread is idle
/// then) and every admin client has at most one question outstanding, so a send never waits.
pub const QUEUE: usize = management::MAX_CLIENTS + 4;

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
    /// The newest `last_exception` the sink itself reported (its own delivery failures).
    reported_exception: f64,
}

/// The ingest side's ends of the two channels.
pub struct FlushHandle {
    pub jobs: SyncSender<FlushMsg>,
    pub spares: Receiver<Box<Tables>>,
    pub thread: JoinHandle<()>,
}

/// Starts the flush thread. `spare` is the second table of the double buffer; it is sent back
/// at once so the ingest thread has a spare for its first flush.
pub fn spawn(
    config: AggregateConfig,
    sinks: Vec<Box<dyn Sink>>,
    spare: Box<Tables>,
    pin_core: Option<usize>,
    drops: KernelDrops,
    shutdown_timeout: Duration,
    on_failure: Option<FailureHook>,
) -> std::io::Result<FlushHandle> {
    let (job_tx, job_rx) = sync_channel::<FlushMsg>(QUEUE);
    let (spare_tx, spare_rx) = sync_channel::<Box<Tables>>(2);
    spare_tx.send(spare).expect("fresh channel");
    let thread = std::thread::Builder::new().name("kstatsd-flush".into()).spawn(move || {
        if let Some(core) = pin_core {
            crate::sys::pin_current_thread(core, "flush");
        }
        let mut state = State {
            naming: Naming::new(&config),
            flusher: Flusher::new(config),
            figures: vec![SinkFigures::default(); sinks.len()],
            sinks,
            drops,
            hooks: Hooks::new(on_failure),
            totals: IngestStats::default(),
            kernel_drops: 0,
            overruns: 0,
            shutdown_timeout,
            sources: Vec::new(),
        };
        while let Ok(msg) = job_rx.recv() {
            match msg {
                FlushMsg::Job(job) => {
                    let shutdown_by = job.shutdown_by;
                    state.flush(job, &spare_tx);
                    if let Some(deadline) = shutdown_by {
                        state.shutdown(deadline);
                        break;
                    }
                }
                FlushMsg::Admin(req) => state.answer(*req),
                FlushMsg::Reload(r) => state.reload(*r),
                FlushMsg::Source(feed) => state.sources.push(Recorder::new(feed)),
            }
        }
    })?;
    Ok(FlushHandle { jobs: job_tx, spares: spare_rx, thread })
}

/// The interval being flushed, as a source's recorder writes into it: gauges and counters go
/// into its tables, a forgotten gauge leaves the known series.
struct Recording<'a> {
    tables: &'a mut Tables,
    flusher: &'a mut Flusher,
}

impl source::Interval for Recording<'_> {
    fn set_gauge(&mut self, name: &str, value: f64) {
        self.tables.set_gauge(name, value);
    }

    fn add_counter(&mut self, name: &str, value: f64) {
        self.tables.add_counter(name, value);
    }

    fn forget_gauge(&mut self, name: &str) {
        self.flusher.delete(Kind::Gauge, name);
    }

    fn meta_prefix(&self) -> &str {
        &self.flusher.config().meta_prefix
    }
}

struct State {
    naming: Naming,
    flusher: Flusher,
    sinks: Vec<Box<dyn Sink>>,
    figures: Vec<SinkFigures>,
    drops: KernelDrops,
    hooks: Hooks,
    /// Every flushed interval's ingest figures, summed (the admin `stats`).
    totals: IngestStats,
    kernel_drops: u64,
    overruns: u64,
    shutdown_timeout: Duration,
    /// Sources whose latest samples enter every flush as gauges (see [`crate::source`]).
    sources: Vec<Recorder>,
}

impl State {
    fn flush(&mut self, job: FlushJob, spare_tx: &SyncSender<Box<Tables>>) {
        let FlushJob { mut tables, mut meta, .. } = job;
        let started = Instant::now();
        meta.kernel_drops = self.drops.since_last();
        self.kernel_drops += meta.kernel_drops;
        self.overruns += meta.overruns;
        self.totals.add(&tables.stats);
        if self.sinks.iter().any(|s| s.wants_packets()) {
            for sink in self.sinks.iter_mut().filter(|s| s.wants_packets()) {
                for p in tables.captured_packets() {
                    sink.packet(p);
                }
            }
        }
        for source in &mut self.sources {
            source.record(&mut Recording { tables: &mut tables, flusher: &mut self.flusher });
        }
        let snapshot = self.flusher.flush(&mut tables, &meta);
        snapshot.statsd.push(("processing_time".into(), started.elapsed().as_secs_f64() * 1e3));
        for (sink, f) in self.sinks.iter().zip(&self.figures) {
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
        for (sink, f) in self.sinks.iter_mut().zip(&mut self.figures) {
            let t = Instant::now();
            let mut failure = match sink.flush(snapshot, &self.naming) {
                Ok(report) => {
                    f.last_flush = snapshot.clock;
                    f.flush_length = report.bytes;
                    f.calculation_ms = report.calculation_ms;
                    None
                }
                Err(e) => {
                    f.last_exception = snapshot.clock;
                    f.failures += 1;
                    log::error!("sink {}: flush failed: {e}", sink.name());
                    Some(e.to_string())
                }
            };
            f.flush_time_ms = t.elapsed().as_secs_f64() * 1e3;
            // A sink that delivers on its own thread reports its failures as a newer
            // `last_exception` (Unix seconds) in its meta figures.
            let mut reported = None;
            sink.meta(&mut |k, v| {
                if k == "last_exception" {
                    reported = Some(v);
                }
            });
            if let Some(v) = reported {
                if v > f.reported_exception {
                    f.reported_exception = v;
                    failure
                        .get_or_insert_with(|| format!("{} reported a delivery failure at {v}", sink.name()));
                }
            }
            if let Some(error) = failure {
                self.hooks.fire(sink.name(), &error);
            }
        }
        tables.clear();
        // The ingest thread may be gone at shutdown; the table is then simply dropped.
        let _ = spare_tx.send(tables);
    }

    fn shutdown(&mut self, deadline: Instant) {
        for sink in &mut self.sinks {
            if let Err(e) = sink.shutdown(deadline) {
                log::error!("sink {}: not drained at shutdown: {e}", sink.name());
            }
            sink.status(&mut |k, v| log::info!("sink {} at exit: {k} = {v}", sink.name()));
        }
    }

    /// Answers an admin question from the known series and the figures kept here.
    fn answer(&mut self, req: management::Request) {
        let text = match &req.query {
            Query::List(kind) => management::answer_list(&self.flusher, *kind),
            Query::Delete { kind, patterns } => management::answer_delete(&mut self.flusher, *kind, patterns),
            Query::Stats { json, live } => {
                let sinks = self.sink_figures();
                let now_unix =
                    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                let figures = FlushFigures {
                    totals: &self.totals,
                    kernel_drops: self.kernel_drops,
                    overruns: self.overruns,
                    known_series: self.flusher.known_series(),
                    sinks: &sinks,
                    now_unix,
                };
                management::answer_stats(live, &figures, *json)
            }
        };
        req.answer(text);
    }

    /// Each sink's figures for `stats`: etsy's four (the sink's own when it reports them), then
    /// whatever its `status` hook reports.
    fn sink_figures(&self) -> Vec<(String, String, f64)> {
        let mut out = Vec::new();
        for (sink, f) in self.sinks.iter().zip(&self.figures) {
            let mut own: Vec<(&'static str, f64)> = Vec::new();
            sink.meta(&mut |k, v| own.push((k, v)));
            let ours = [
                ("last_flush", f.last_flush as f64),
                ("last_exception", f.last_exception as f64),
                ("flush_time", f.flush_time_ms),
                ("flush_length", f.flush_length as f64),
            ];
            for (k, v) in ours {
                let v = own.iter().find(|(o, _)| *o == k).map_or(v, |(_, v)| *v);
                out.push((sink.name().to_string(), k.to_string(), v));
            }
            out.push((sink.name().to_string(), "failures".to_string(), f.failures as f64));
            sink.status(&mut |k, v| {
                if !out.iter().any(|(s, o, _)| s == sink.name() && o == k) {
                    out.push((sink.name().to_string(), k.to_string(), v));
                }
            });
        }
        out
    }

    /// Applies a reloaded configuration: aggregates and known series are kept; replaced sinks
    /// are shut down on a thread of their own so that the next flush is not delayed.
    fn reload(&mut self, r: Reload) {
        self.naming = Naming::new(&r.aggregate);
        self.flusher.set_config(r.aggregate);
        self.hooks.set(r.on_failure);
        if let Some(d) = r.drops {
            self.drops = d;
        }
        if let Some(mut new) = r.sinks {
            // Sinks that outlive a reload move over to the new list; the others are replaced.
            let (kept, old): (Vec<_>, Vec<_>) =
                std::mem::take(&mut self.sinks).into_iter().partition(|s| s.survives_reload());
            new.extend(kept);
            self.sinks = new;
            self.figures = vec![SinkFigures::default(); self.sinks.len()];
            let deadline = Instant::now() + self.shutdown_timeout;
            let names: Vec<_> = self.sinks.iter().map(|s| s.name()).collect();
            log::info!("sinks now: {names:?}");
            let _ = std::thread::Builder::new().name("kstatsd-old-sinks".into()).spawn(move || {
                for mut sink in old {
                    if let Err(e) = sink.shutdown(deadline) {
                        log::error!("sink {} (replaced): not drained: {e}", sink.name());
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::flush::CounterNames;
    use std::collections::BTreeMap;

    fn g(names: &[(&str, f64)]) -> source::Gauges {
        names.iter().map(|(n, v)| (n.to_string(), *v)).collect()
    }

    /// A source's whole path on the flush side: published sets are recorded at every flush
    /// (repeated while no newer set arrives), the counters are reported, and a series that
    /// disappears from the set disappears from the output (even with idle gauges kept, the
    /// default).
    #[test]
    fn source_gauges_are_flushed_and_vanished_series_are_deleted() {
        let config = Config::defaults().aggregate;
        let naming = Naming::new(&config);
        let mut flusher = Flusher::new(config.clone());
        let mut tables = Tables::new(config.limits.clone());
        let feed = Feed::new("dockerStats");
        let mut rec = Recorder::new(feed.clone());
        let mut flush = |rec: &mut Recorder| {
            rec.record(&mut Recording { tables: &mut tables, flusher: &mut flusher });
            let snap = flusher.flush(&mut tables, &FlushMeta { interval: 1.0, ..FlushMeta::default() });
            let mut out = BTreeMap::new();
            snap.for_each_flat(
                &naming,
                CounterNames { rate: false, count: true },
                &mut String::new(),
                &mut |n, v| {
                    out.insert(n.to_string(), v);
                },
            );
            tables.clear();
            out
        };
        feed.publish(Some(g(&[("web.cpu.percent", 50.0), ("db.pids", 3.0), ("web.cpu.percent", 60.0)])), 1);
        let f = flush(&mut rec);
        assert_eq!(f["stats.gauges.web.cpu.percent"], 60.0, "the later duplicate wins");
        assert_eq!(f["stats.gauges.db.pids"], 3.0);
        assert_eq!(f["stats_counts.statsd.dockerStats.errors"], 1.0);
        assert_eq!(f["stats_counts.statsd.dockerStats.polls"], 1.0);
        let f = flush(&mut rec);
        assert_eq!(f["stats.gauges.web.cpu.percent"], 60.0, "repeated until a newer set");
        assert_eq!(f["stats_counts.statsd.dockerStats.errors"], 0.0);
        feed.publish(None, 2);
        feed.publish(Some(g(&[("db.pids", 4.0)])), 0);
        let f = flush(&mut rec);
        assert!(!f.contains_key("stats.gauges.web.cpu.percent"), "{f:?}");
        assert_eq!(f["stats.gauges.db.pids"], 4.0);
        assert_eq!(f["stats_counts.statsd.dockerStats.errors"], 2.0);
        assert_eq!(f["stats_counts.statsd.dockerStats.polls"], 2.0);
    }
}
