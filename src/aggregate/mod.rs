//! Aggregation of one interval: the interned tables that the ingest thread records into (through
//! [`crate::ingest`]). The tables are double buffered: the ingest thread fills the active
//! one; at a flush it is handed whole to the flush thread, which summarizes it, clears it (keeping
//! every allocation) and hands it back as the next spare.

mod key;
mod key_hash;
mod raw_index;
pub mod sketch;
mod tables;

pub use key::{canonical_key, KeyRules};
pub use sketch::{Sketch, TimerSketch};
pub use tables::{GaugeAcc, IngestStats, Limits, SeriesRef, Tables, TimerAcc};
