//! A fixed ingest workload for profilers: builds the bench corpus for `KEYS` keys and mix
//! (plain | tagged | malformed), then parses and aggregates it `ROUNDS` times, clearing the
//! tables every ~2 M lines like a real interval. Deterministic, so instruction counts compare
//! across builds:
//!
//! ```sh
//! cargo build --release --example profile_ingest
//! valgrind --tool=callgrind --toggle-collect='profile_ingest::run' \
//!     target/release/examples/profile_ingest 10000 plain 3
//! ```
//! then divide the collected instructions by the lines it prints.

#[path = "../benches/support/corpus.rs"]
mod support;

use kstatsd::aggregate::{ingest_datagram, Limits, Tables};
use kstatsd::parse::LineBuf;
use support::{corpus, Mix};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let keys: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let mix = match args.get(2).map(String::as_str) {
        Some("tagged") => Mix::Tagged,
        Some("malformed") => Mix::Malformed,
        _ => Mix::Plain,
    };
    let rounds: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(3);
    let c = corpus(keys, mix, 4 << 20);
    let mut tables = Tables::new(Limits { max_series: 10_000_000, ..Limits::default() });
    let lines = run(&mut tables, &c.datagrams, rounds) * c.lines;
    println!("{lines} lines, {} bytes per round, {} series", c.bytes, tables.series_count());
}

/// The measured part (callgrind: `--toggle-collect='profile_ingest::run'`).
#[inline(never)]
fn run(tables: &mut Tables, datagrams: &[Vec<u8>], rounds: u64) -> u64 {
    let mut buf = LineBuf::default();
    for _ in 0..rounds {
        for d in datagrams {
            ingest_datagram(tables, d, &mut buf);
        }
        if tables.stats.metrics > 2_000_000 {
            tables.clear();
        }
    }
    rounds
}
