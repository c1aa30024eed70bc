//! A fixed ingest workload for profilers: builds the bench corpus for `KEYS` keys and mix
//! (plain | tagged | malformed | realistic), then parses and aggregates it `ROUNDS` times,
//! clearing the tables every ~2 M lines like a real interval. Deterministic, so instruction
//! counts compare across builds:
//!
//! ```sh
//! cargo build --release --example profile_ingest
//! valgrind --tool=callgrind --toggle-collect='profile_ingest::run' \
//!     target/release/examples/profile_ingest 10000 plain 3
//! ```
//! then divide the collected instructions by the lines it prints. Run on its own, it also prints
//! the wall time per line of the measured part (noisy here: compare builds interleaved, best of
//! several). `realistic` has names shaped like real ones
//! (`api.timer.svc01.host0042.component.requests.metric_0012345`, a quarter of them with 2–4
//! DogStatsD tags); the others have short names (`bench.c123`).
//!
//! Datagrams go through `ingest::datagrams` 64 at a time, as the daemon's loop hands it each
//! `recvmmsg` batch, so the figure includes the debug dump's off branch. A fourth argument turns the dump on with that regex
//! (`'^$'` matches no name: the cost of matching alone).

#[path = "../benches/support/corpus.rs"]
mod support;

use kstatsd::aggregate::{Limits, Tables};
use kstatsd::ingest::dump::DebugDump;
use kstatsd::ingest::{self, Format};
use kstatsd::parse::LineBuf;
use support::{corpus, Mix};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let keys: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let mix = match args.get(2).map(String::as_str) {
        Some("tagged") => Mix::Tagged,
        Some("malformed") => Mix::Malformed,
        Some("realistic") => Mix::Realistic,
        _ => Mix::Plain,
    };
    let rounds: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(3);
    let c = corpus(keys, mix, 4 << 20);
    let mut tables = Tables::new(Limits { max_series: 10_000_000, ..Limits::default() });
    // black_box: the compiler must not know whether the dump is on.
    let mut dump = std::hint::black_box(args.get(4).map(|re| DebugDump::start(re).expect("a regex")));
    let started = std::time::Instant::now();
    let lines = run(&mut tables, &c.datagrams, rounds, &mut dump) * c.lines;
    let ns = started.elapsed().as_nanos() as f64 / lines as f64;
    println!(
        "{lines} lines, {} bytes per round, {} series, {ns:.1} ns per line",
        c.bytes,
        tables.series_count()
    );
}

/// Datagrams per `recvmmsg` call, as the daemon's default `server.recv_batch`.
const RECV_BATCH: usize = 64;

/// The measured part (callgrind: `--toggle-collect='profile_ingest::run'`).
#[inline(never)]
fn run(tables: &mut Tables, datagrams: &[Vec<u8>], rounds: u64, dump: &mut Option<DebugDump>) -> u64 {
    let mut buf = LineBuf::default();
    for _ in 0..rounds {
        for received in datagrams.chunks(RECV_BATCH) {
            let received = received.iter().map(|d| (&d[..], false));
            ingest::datagrams(tables, received, Format::Statsd, &mut buf, dump);
        }
        if tables.stats.metrics > 2_000_000 {
            tables.clear();
        }
    }
    rounds
}
