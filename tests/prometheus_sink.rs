//! The Prometheus sink in-process, on the real aggregation and flush path: once warm, a flush
//! (merging the snapshot into the cumulative state, rendering the page and publishing it)
//! allocates nothing, unless a scraper still holds the page that would be reused, and what
//! `Exposition::current` hands the HTTP thread is the page of the last flush. Runs on the test's
//! thread (standing in for the flush thread).

mod common;

use kstatsd::aggregate::Tables;
use kstatsd::config::{parse_file, Config, Overrides};
use kstatsd::flush::{FlushMeta, Flusher, Naming};
use kstatsd::ingest::{self, Format};
use kstatsd::sink::prometheus::{Exposition, Prometheus};
use kstatsd::sink::Sink;
use std::sync::Arc;

#[global_allocator]
static GLOBAL: common::alloc::Counting = common::alloc::Counting;

#[test]
fn a_warm_flush_allocates_nothing() {
    let text = "[aggregate]\npercentiles = [90, 99]\nhistograms = [{ metric = \"api.\", bins = [10, 100, \"inf\"] }]\n";
    let config = Config::build(parse_file(text).unwrap(), &Overrides::default()).unwrap();
    let naming = Naming::new(&config.aggregate);
    let mut flusher = Flusher::new(config.aggregate.clone());
    let mut tables = Tables::new(config.aggregate.limits.clone());
    let exposition = Arc::new(Exposition::default());
    let mut sink = Prometheus::new(&config.aggregate.meta_prefix, Arc::clone(&exposition));
    let traffic: String = (0..200)
        .map(|i| {
            format!(
                "req.{i}:1|c|#env:prod,host:h{}\nq.{i}:{i}|g\nlat.{i}:{i}|ms\napi.t{}:{}|ms\nu.{}:{i}|s\n",
                i % 7,
                i % 5,
                i % 150,
                i % 3
            )
        })
        .collect();
    let mut counts = Vec::new();
    for i in 0..12 {
        ingest::datagram(
            &mut tables,
            traffic.as_bytes(),
            Format::Statsd,
            false,
            &mut Default::default(),
            &mut None,
        );
        let snapshot =
            flusher.flush(&mut tables, &FlushMeta { interval: 1.0, clock: i, ..FlushMeta::default() });
        let (report, allocations) = common::alloc::counted(|| sink.flush(snapshot, &naming));
        counts.push(allocations);
        let page = exposition.current();
        assert_eq!(report.unwrap().bytes, page.len() as u64);
        let text = std::str::from_utf8(&page).unwrap();
        let want = format!("req_0_total{{env=\"prod\",host=\"h0\"}} {}\n", i + 1);
        assert!(text.contains(&want), "flush {i}: {want}");
        tables.clear();
    }
    assert_eq!(counts[counts.len() - 5..], [0; 5], "allocations per flush: {counts:?}");

    // A scraper still writing the published page: two flushes later that page would be the one
    // rendered into; a new one is made instead, and the scraper's bytes stay as they were.
    let held = exposition.current();
    let mut later = Vec::new();
    for clock in 12..14 {
        ingest::datagram(
            &mut tables,
            traffic.as_bytes(),
            Format::Statsd,
            false,
            &mut Default::default(),
            &mut None,
        );
        let snapshot =
            flusher.flush(&mut tables, &FlushMeta { interval: 1.0, clock, ..FlushMeta::default() });
        later.push(common::alloc::counted(|| sink.flush(snapshot, &naming)).1);
        tables.clear();
    }
    assert!(later[0] == 0 && later[1] > 0, "a new page only when the old one is held: {later:?}");
    assert!(std::str::from_utf8(&held).unwrap().contains("req_0_total{env=\"prod\",host=\"h0\"} 12\n"));
    let now = exposition.current();
    assert!(std::str::from_utf8(&now).unwrap().contains("req_0_total{env=\"prod\",host=\"h0\"} 14\n"));
}
