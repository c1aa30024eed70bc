//! The recorded etsy statsd 0.9.0 vectors (`tests/fixtures/vectors/*.json`), replayed through the
//! library with an exact 1 s interval: every name etsy flushed must come out of kstatsd with
//! the same f64, and kstatsd may add only its own `statsd.` meta names. (The same vectors go
//! through the real daemon over UDP in `udp_engine.rs`.)

mod common;

use common::vectors::{compare, load, toml_for, vectors_dir, wanted};
use kstatsd::aggregate::Tables;
use kstatsd::config::{parse_file, Config, Overrides};
use kstatsd::flush::{CounterNames, FlushMeta, Flusher, Naming};
use kstatsd::ingest::{self, Format};
use std::collections::BTreeMap;

fn replay(file: &str) {
    let v = load(file);
    let config = Config::build(parse_file(&toml_for(&v["etsy_config"])).unwrap(), &Overrides::default())
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    let naming = Naming::new(&config.aggregate);
    let mut flusher = Flusher::new(config.aggregate.clone());
    let mut tables = Tables::new(config.aggregate.limits.clone());
    let mut buf = Default::default();
    let mut failures = Vec::new();
    for (i, flush) in v["flushes"].as_array().unwrap().iter().enumerate() {
        for packet in flush["lines"].as_array().unwrap() {
            ingest::datagram(
                &mut tables,
                packet.as_str().unwrap().as_bytes(),
                Format::Statsd,
                false,
                &mut buf,
                &mut None,
            );
        }
        let meta = FlushMeta { interval: 1.0, clock: 1_700_000_000 + i as u64, ..FlushMeta::default() };
        let snapshot = flusher.flush(&mut tables, &meta);
        let mut got = BTreeMap::new();
        let which = CounterNames { rate: true, count: true };
        snapshot.for_each_flat(&naming, which, &mut String::new(), &mut |n, x| {
            assert!(got.insert(n.to_string(), x).is_none(), "{file}: {n} flushed twice");
        });
        tables.clear();
        compare(i, &wanted(flush), &got, &|_, g, w| g == w, &mut failures);
    }
    assert!(failures.is_empty(), "{file}:\n{}", failures.join("\n"));
}

#[test]
fn counters() {
    replay("counters.json");
}

#[test]
fn gauges() {
    replay("gauges.json");
}

#[test]
fn timers() {
    replay("timers.json");
}

#[test]
fn histograms() {
    replay("histograms.json");
}

#[test]
fn sets() {
    replay("sets.json");
}

#[test]
fn bad_lines() {
    replay("bad_lines.json");
}

#[test]
fn tags_and_names() {
    replay("tags_and_names.json");
}

#[test]
fn delete_idle() {
    replay("delete_idle.json");
}

#[test]
fn non_legacy() {
    replay("non_legacy.json");
}

/// Every vector file in the folder is replayed by one of the tests above.
#[test]
fn no_vector_is_forgotten() {
    let mut files: Vec<String> = std::fs::read_dir(vectors_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    files.sort();
    let covered = [
        "bad_lines.json",
        "counters.json",
        "delete_idle.json",
        "gauges.json",
        "histograms.json",
        "non_legacy.json",
        "sets.json",
        "tags_and_names.json",
        "timers.json",
    ];
    assert_eq!(files, covered);
}
