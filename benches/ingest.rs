//! Criterion benches of the ingest path (parse + aggregate, Throughput::Bytes) across key
//! cardinalities and line mixes, and of the flush path (summarize + serialize) by series count.
//! Every bench checks its result (lines counted, bad lines equal to those injected, series
//! flushed) before it is timed, so a fast wrong answer cannot pass.
//!
//! `cargo bench --bench ingest` runs everything; `cargo bench --bench ingest -- parse_aggregate`
//! one group.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kstatsd::aggregate::{Limits, Tables};
use kstatsd::config::{parse_file, Config, Overrides};
use kstatsd::flush::{CounterNames, FlushMeta, Flusher, Naming, Snapshot};
use kstatsd::ingest::{self, Format};
use kstatsd::parse::LineBuf;
use kstatsd::sink::console::render_flat;
#[cfg(feature = "kafka")]
use kstatsd::sink::kafka::KafkaNative;
use kstatsd::sink::kafka_rest::KafkaRest;
use kstatsd::sink::Sink;
use std::hint::black_box;

#[path = "support/corpus.rs"]
mod support;
use std::time::{Duration, Instant};
use support::{corpus, Corpus, Mix, Rng};

fn ingest_all(tables: &mut Tables, buf: &mut LineBuf, c: &Corpus) {
    for d in &c.datagrams {
        ingest::datagram(tables, d, Format::Statsd, false, buf, &mut None);
    }
}

fn parse_aggregate(cr: &mut Criterion) {
    let mut group = cr.benchmark_group("parse_aggregate");
    group.sample_size(10);
    let cases: &[(u64, Mix, &str)] = &[
        (100, Mix::Plain, "plain"),
        (1_000, Mix::Plain, "plain"),
        (10_000, Mix::Plain, "plain"),
        (100_000, Mix::Plain, "plain"),
        (10_000, Mix::Tagged, "tagged"),
        (10_000, Mix::Malformed, "malformed1pct"),
        (1_000_000, Mix::Plain, "plain"),
    ];
    for &(keys, mix, name) in cases {
        let c = corpus(keys, mix, 4 << 20);
        let limits = Limits { max_series: 10_000_000, ..Limits::default() };
        let mut tables = Tables::new(limits);
        let mut buf = LineBuf::default();
        // Check once: every line counted, exactly the injected bad lines refused.
        ingest_all(&mut tables, &mut buf, &c);
        assert_eq!(tables.stats.metrics, c.lines);
        assert_eq!(tables.stats.bad_total(), c.bad);
        assert!(tables.series_count() as u64 <= 4 * keys);
        tables.clear();
        eprintln!(
            "corpus {name}/{keys}: {} datagrams, {} lines, {} bytes, {:.1} bytes/line",
            c.datagrams.len(),
            c.lines,
            c.bytes,
            c.bytes as f64 / c.lines as f64
        );
        group.throughput(Throughput::Bytes(c.bytes));
        group.bench_function(BenchmarkId::new(name, keys), |b| {
            b.iter(|| {
                ingest_all(&mut tables, &mut buf, black_box(&c));
                // An interval of about 2 M lines, as at 200 k lines/s and 10 s: then the flush
                // thread clears the tables (O(series), small next to parsing them).
                if tables.stats.metrics > 2_000_000 {
                    tables.clear();
                }
            })
        });
    }
    group.finish();
}

fn flush_serialize(cr: &mut Criterion) {
    let mut group = cr.benchmark_group("flush_serialize");
    group.sample_size(10);
    let config = Config::defaults();
    let naming = Naming::new(&config.aggregate);
    for series in [1_000u64, 100_000, 1_000_000] {
        let text = counters_and_timers(series, 100);
        let limits = Limits { max_series: 10_000_000, ..Limits::default() };
        let mut tables = Tables::new(limits);
        let mut flusher = Flusher::new(config.aggregate.clone());
        let mut buf = LineBuf::default();
        let mut out = Vec::new();
        let mut name = String::new();
        let meta = FlushMeta { interval: 10.0, clock: 1_700_000_000, ..FlushMeta::default() };
        group.throughput(Throughput::Elements(series));
        group.bench_function(BenchmarkId::from_parameter(series), |b| {
            // Only the flush is timed; refilling the tables between iterations is not.
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    tables.clear();
                    for d in &text {
                        ingest::datagram(&mut tables, d, Format::Statsd, false, &mut buf, &mut None);
                    }
                    let started = Instant::now();
                    let snap = flusher.flush(&mut tables, &meta);
                    assert!(snap.num_stats >= series, "every series flushed");
                    out.clear();
                    render_flat(
                        snap,
                        &naming,
                        CounterNames { rate: false, count: true },
                        &mut name,
                        &mut out,
                    );
                    black_box(out.len());
                    spent += started.elapsed();
                }
                spent
            })
        });
    }
    group.finish();
}

/// Datagrams holding `series` series, half counters and half timers with `values` values each
/// (written packed, `t:1:2:…|ms`, so that 1 M series fit in a few hundred MB of text).
fn counters_and_timers(series: u64, values: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(series);
    let (mut out, mut d) = (Vec::new(), Vec::new());
    for k in 0..series {
        if k % 2 == 0 {
            d.extend_from_slice(format!("f.c{k}:1|c\n").as_bytes());
        } else {
            d.extend_from_slice(format!("f.t{k}").as_bytes());
            for _ in 0..values {
                d.extend_from_slice(format!(":{}", rng.next() % 1000).as_bytes());
            }
            d.extend_from_slice(b"|ms\n");
        }
        if d.len() > 60_000 {
            out.push(std::mem::take(&mut d));
        }
    }
    out.push(d);
    out
}

/// What one timer value costs the flush thread: summarizing (sort, sums, percentiles, etsy's
/// default 90th) a fixed 1 M values split over timers of 10, 100 or 10 000 values
/// (Throughput::Elements = values).
fn summarize_timers(cr: &mut Criterion) {
    let mut group = cr.benchmark_group("summarize_timers");
    group.sample_size(10);
    let config = Config::defaults();
    const VALUES: u64 = 1_000_000;
    for per_timer in [10u64, 100, 10_000] {
        let timers = VALUES / per_timer;
        let mut rng = Rng(per_timer);
        let mut text = Vec::new();
        for k in 0..timers {
            for _ in 0..per_timer {
                text.push(format!("s.t{k}:{}.{}|ms", rng.next() % 1000, rng.next() % 10));
            }
        }
        let datagrams: Vec<Vec<u8>> = text.chunks(20).map(|c| c.join("\n").into_bytes()).collect();
        let mut tables = Tables::new(Limits { max_series: 10_000_000, ..Limits::default() });
        let mut flusher = Flusher::new(config.aggregate.clone());
        let mut buf = LineBuf::default();
        let meta = FlushMeta { interval: 10.0, clock: 1_700_000_000, ..FlushMeta::default() };
        group.throughput(Throughput::Elements(VALUES));
        group.bench_function(BenchmarkId::from_parameter(per_timer), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    tables.clear();
                    for d in &datagrams {
                        ingest::datagram(&mut tables, d, Format::Statsd, false, &mut buf, &mut None);
                    }
                    let started = Instant::now();
                    let snap = flusher.flush(&mut tables, &meta);
                    assert_eq!(snap.timers.len() as u64, timers, "every timer summarized");
                    black_box(snap.num_stats);
                    spent += started.elapsed();
                }
                spent
            })
        });
    }
    group.finish();
}

/// `series` series for the Kafka benches: half counters, half timers (two values each).
fn kafka_lines(series: u64) -> String {
    let mut text = String::new();
    for k in 0..series {
        if k % 2 == 0 {
            text.push_str(&format!("k.c{k}:1|c\n"));
        } else {
            text.push_str(&format!("k.t{k}:{}|ms\nk.t{k}:{}|ms\n", k % 1000, k % 7));
        }
    }
    text
}

/// `text` aggregated and flushed under `config`: the snapshot a Kafka sink is handed.
fn kafka_snapshot<'a>(config: &Config, flusher: &'a mut Flusher, text: &str, series: u64) -> &'a Snapshot {
    let mut tables = Tables::new(config.aggregate.limits.clone());
    ingest::datagram(&mut tables, text.as_bytes(), Format::Statsd, false, &mut LineBuf::default(), &mut None);
    let meta = FlushMeta { interval: 10.0, clock: 1_700_000_000, ..FlushMeta::default() };
    let snap = flusher.flush(&mut tables, &meta);
    assert!(snap.num_stats >= series, "every series in the snapshot");
    snap
}

/// What the Kafka REST sink costs the flush thread per flush: `KafkaRest::flush` serializes the
/// snapshot into record payloads and queues them (the proxy is unreachable here, so the queue
/// stays at its default 64 MiB bound by dropping the oldest, as in an outage). Half counters,
/// half timers (two values each: serialization depends on the number of statistics, not of
/// values), in both formats.
fn kafka_serialize(cr: &mut Criterion) {
    let mut group = cr.benchmark_group("kafka_serialize");
    group.sample_size(10);
    for series in [10_000u64, 100_000, 1_000_000] {
        let text = kafka_lines(series);
        for format in ["flat", "tagged"] {
            let toml = format!(
                "[aggregate]\nmax_series = 2000000\n[sinks.kafka_rest]\nurl = \"http://127.0.0.1:9\"\ntopic = \"bench\"\nformat = \"{format}\"\n"
            );
            let config = Config::build(parse_file(&toml).unwrap(), &Overrides::default()).unwrap();
            let naming = Naming::new(&config.aggregate);
            let mut flusher = Flusher::new(config.aggregate.clone());
            let snap = kafka_snapshot(&config, &mut flusher, &text, series);
            let kafka_config = config.kafka_rest.as_ref().unwrap();
            let mut sink = KafkaRest::new(kafka_config, false, "statsd").unwrap();
            let report = sink.flush(snap, &naming).unwrap();
            assert!(report.bytes as f64 > series as f64 * 20.0, "{} bytes for {series} series", report.bytes);
            eprintln!("kafka_serialize {format}/{series}: {} bytes per flush", report.bytes);
            group.throughput(Throughput::Elements(series));
            group.bench_function(BenchmarkId::new(format, series), |b| {
                b.iter(|| black_box(sink.flush(snap, &naming).unwrap().bytes))
            });
        }
    }
    group.finish();
}

/// What the native Kafka sink costs the flush thread per flush: `KafkaNative::flush` encodes the
/// snapshot (the REST sink's encoder) and hands every record to librdkafka's queue (a copy each;
/// no broker answers here, so between iterations the queue is emptied, untimed). Same series as
/// `kafka_serialize`; the queue is big enough that nothing is refused, which is checked.
#[cfg(feature = "kafka")]
fn kafka_native_enqueue(cr: &mut Criterion) {
    let mut group = cr.benchmark_group("kafka_native_enqueue");
    group.sample_size(10);
    for series in [10_000u64, 100_000, 1_000_000] {
        let text = kafka_lines(series);
        for format in ["flat", "tagged"] {
            let toml = format!(
                "[aggregate]\nmax_series = 2000000\n[sinks.kafka]\nbrokers = [\"127.0.0.1:9\"]\ntopic = \"bench\"\n\
                 format = \"{format}\"\nmax_queue_bytes = \"2GiB\"\n"
            );
            let config = Config::build(parse_file(&toml).unwrap(), &Overrides::default()).unwrap();
            let naming = Naming::new(&config.aggregate);
            let mut flusher = Flusher::new(config.aggregate.clone());
            let snap = kafka_snapshot(&config, &mut flusher, &text, series);
            let kafka = config.kafka.as_ref().unwrap();
            let mut sink = KafkaNative::new(kafka, false, "statsd", Duration::from_secs(10)).unwrap();
            let report = sink.flush(snap, &naming).unwrap();
            assert!(report.bytes as f64 > series as f64 * 20.0, "{} bytes for {series} series", report.bytes);
            // Every record is in librdkafka's queue: one per series (tagged), or the flush cut
            // into records of at most 900 KiB (flat).
            let queued = sink.in_flight() as u64;
            let expected = if format == "tagged" { series } else { report.bytes.div_ceil(900 << 10) };
            assert!(queued >= expected, "{format}/{series}: {queued} records queued, {expected} expected");
            let mut dropped = 0.0;
            sink.meta(&mut |k, v| {
                if k == "records_dropped" {
                    dropped = v;
                }
            });
            assert_eq!(dropped, 0.0, "nothing refused");
            eprintln!(
                "kafka_native_enqueue {format}/{series}: {queued} records, {} bytes per flush",
                report.bytes
            );
            group.throughput(Throughput::Elements(series));
            group.bench_function(BenchmarkId::new(format, series), |b| {
                b.iter_custom(|iters| {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        sink.discard_queued(Duration::from_secs(60));
                        let t = Instant::now();
                        black_box(sink.flush(snap, &naming).unwrap().bytes);
                        timed += t.elapsed();
                    }
                    timed
                })
            });
            sink.discard_queued(Duration::from_secs(60));
        }
    }
    group.finish();
}

/// Built without the native Kafka sink (`--no-default-features`), there is nothing to measure.
#[cfg(not(feature = "kafka"))]
fn kafka_native_enqueue(_: &mut Criterion) {}

criterion_group!(
    benches,
    parse_aggregate,
    flush_serialize,
    summarize_timers,
    kafka_serialize,
    kafka_native_enqueue
);
criterion_main!(benches);
