//! The Graphite (carbon) sink: plaintext `name value timestamp\n` lines or pickle frames over
//! one long-lived TCP connection. What etsy statsd's graphite backend and the deviantART
//! pystatsd fork sent, under the same names ([`Snapshot::for_each_flat`] with both the counter
//! rate and count).
//!
//! An "encode + deliver" on the delivery engine ([`super::outbox`]): on the flush thread,
//! [`Sink::flush`] serializes the snapshot ([`encode`]) into a batch reused from flush to flush
//! and queues it; the sink's worker thread (`kstatsd-graphite`) writes it to carbon
//! ([`deliver`]) and the engine retries, bounds, counts (`graphiteStats.*`) and logs.

mod deliver;
pub(crate) mod encode;

pub use encode::MAX_LINE;

use super::outbox::{Backoff, Batch, Dropped, FlushTag, Limits, Names, Outbox, Spelling, Whole};
use super::pickle::{FrameWriter, MAX_FRAME};
use super::{FlushReport, Sink, SinkError};
use crate::config::{GraphiteConfig, GraphiteProtocol};
use crate::flush::{Naming, Snapshot};
use deliver::Carbon;
use encode::{render_pickle, render_plaintext, Tally};
use std::io;
use std::time::Instant;

pub struct Graphite {
    outbox: Outbox<Batch>,
    protocol: GraphiteProtocol,
    frames: FrameWriter,
    name: String,
    /// Flushes queued so far.
    seq: u64,
}

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
        let names = Names {
            name: "graphite",
            peer: format!("carbon at {}", carbon.address),
            spelling: Spelling::POINTS,
        };
        Ok(Graphite {
            outbox: Outbox::start(names, limits, Whole(carbon))?,
            protocol: config.protocol,
            frames: FrameWriter::new(MAX_FRAME),
            name: String::with_capacity(256),
            seq: 0,
        })
    }

    /// The delivery figures (also what `meta` reports).
    pub fn figures(&self) -> &super::outbox::Figures {
        self.outbox.figures()
    }
}

impl Sink for Graphite {
    fn name(&self) -> &'static str {
        "graphite"
    }

    fn flush(&mut self, snapshot: &Snapshot, naming: &Naming) -> Result<FlushReport, SinkError> {
        self.outbox.check()?;
        let started = Instant::now();
        self.seq += 1;
        let mut batch = Batch::fresh(&self.outbox, FlushTag { seq: self.seq, last: true, enqueued: started });
        let buf = &mut batch.bytes;
        let mut tally = Tally::default();
        match self.protocol {
            GraphiteProtocol::Plaintext => {
                render_plaintext(snapshot, naming, &mut self.name, buf, &mut tally)
            }
            GraphiteProtocol::Pickle => {
                render_pickle(snapshot, naming, &mut self.name, &mut self.frames, buf, &mut tally)
            }
        }
        let f = self.outbox.figures();
        f.count_drop(Dropped::TooLong, tally.too_long);
        f.count_drop(Dropped::BadValue, tally.bad_value);
        f.count_drop(Dropped::BadName, tally.bad_name);
        let bytes = buf.len() as u64;
        batch.points = tally.points;
        if batch.points == 0 {
            self.outbox.recycle(batch);
        } else {
            self.outbox.push(batch);
        }
        Ok(FlushReport { bytes, calculation_ms: started.elapsed().as_secs_f64() * 1e3 })
    }

    fn meta(&self, write: &mut dyn FnMut(&'static str, f64)) {
        self.outbox.meta(write);
    }

    fn shutdown(&mut self, deadline: Instant) -> Result<(), SinkError> {
        self.outbox.shutdown(deadline)
    }
}
