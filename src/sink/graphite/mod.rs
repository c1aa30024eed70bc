//! The Graphite (carbon) sink: plaintext `name value timestamp\n` lines or pickle frames over
//! one long-lived TCP connection. What etsy statsd's graphite backend and the deviantART
//! pystatsd fork sent, under the same names ([`Snapshot::for_each_flat`] with both the counter
//! rate and count).
//!
//! An "encode + deliver" on the delivery engine ([`super::outbox`]): on the flush thread,
//! `flush` serializes the snapshot ([`encode`]) into a batch reused from flush to flush
//! and queues it; the sink's worker thread (`kstatsd-graphite`) writes it to carbon
//! ([`deliver`]) and the engine retries, bounds, counts (`graphiteStats.*`) and logs.

pub mod config;
mod deliver;
pub(crate) mod encode;

pub use config::{GraphiteConfig, GraphiteProtocol, GraphiteSection};
pub use encode::MAX_LINE;

use super::outbox::{Backoff, Limits, Names, Outbox, Queued, Spelling, Whole};
use deliver::Carbon;
use std::io;

/// The Graphite sink: its encoder on the delivery engine.
pub type Graphite = Queued<encode::Encoder>;

impl Graphite {
    /// Starts the worker thread; it connects on the first flush.
    pub fn start(config: &GraphiteConfig) -> io::Result<Graphite> {
        let limits = Limits {
            queue_bytes: config.max_queue_bytes,
            backoff: Backoff::new(config.retry_backoff, config.retry_backoff_max),
        };
        let carbon = Carbon { address: config.address(), timeout: config.timeout, conn: None };
        log::info!(
            "graphite: sending {} to {}",
            match config.protocol {
                GraphiteProtocol::Plaintext => "plaintext",
                GraphiteProtocol::Pickle => "pickle",
            },
            carbon.address
        );
        let peer = format!("carbon at {}", carbon.address);
        let names = Names { name: "graphite", peer, spelling: Spelling::POINTS };
        Ok(Queued::with(encode::Encoder::new(config.protocol), Outbox::start(names, limits, Whole(carbon))?))
    }
}
