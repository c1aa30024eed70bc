//! Aggregation of one interval: the interned tables that the ingest thread records into, and the
//! per-datagram entry point. The tables are double buffered: the ingest thread fills the active
//! one; at a flush it is handed whole to the flush thread, which summarizes it, clears it (keeping
//! every allocation) and hands it back as the next spare.

mod key;
mod tables;

pub use key::{canonical_key, KeyRules};
pub use tables::{GaugeAcc, IngestStats, Limits, SeriesRef, Tables, TimerAcc};

use crate::parse::{self, LineBuf, Parsed};

/// Parses every line of one datagram and records it into `tables`. `buf` is the caller's
/// reusable parse buffer. Counts the packet, its bytes, every line, and each bad line (or bad
/// segment of a multi-metric line) by reason.
#[inline]
pub fn ingest_datagram(tables: &mut Tables, datagram: &[u8], buf: &mut LineBuf) {
    tables.stats.packets += 1;
    tables.stats.bytes += datagram.len() as u64;
    for line in parse::lines(datagram) {
        ingest_line(tables, line, buf);
    }
}

/// Parses and records one line (no newline).
#[inline]
pub fn ingest_line(tables: &mut Tables, line: &[u8], buf: &mut LineBuf) {
    if let Some((name_len, sample)) = parse::parse_simple(line) {
        tables.stats.metrics += 1;
        if let Err(why) = tables.record_one(&line[..name_len], line, &sample) {
            tables.stats.count_bad(why);
        }
        return;
    }
    match parse::parse_line(line, buf) {
        Ok(Parsed::Metric { name, tags }) => {
            tables.stats.metrics += 1;
            for &why in &buf.bad {
                tables.stats.count_bad(why);
            }
            if !buf.samples.is_empty() {
                if let Err(why) = tables.record(name, tags, line, &buf.samples) {
                    tables.stats.count_bad(why);
                }
            }
        }
        Ok(Parsed::Event) => tables.stats.events += 1,
        Ok(Parsed::ServiceCheck) => tables.stats.service_checks += 1,
        Err(why) => {
            tables.stats.metrics += 1;
            tables.stats.count_bad(why);
        }
    }
}
