//! The flush-thread half of every queued sink: [`Queued`] is the [`Sink`] of an [`Encode`]
//! (what turns a snapshot into payloads) and its [`Outbox`] (the engine that delivers them).
//! `flush` runs the encoder and returns at once; `meta` reports the engine's figures; `shutdown`
//! lets the engine drain until the deadline. Graphite, Backstop and the Kafka REST Proxy sink are
//! each a `Queued` of their own encoder.

use super::{Figures, Item, Outbox};
use crate::flush::{Naming, Snapshot};
use crate::sink::{FlushReport, Sink, SinkError};
use std::time::Instant;

/// A sink's encoder, on the flush thread.
pub trait Encode: Send + 'static {
    type Item: Item;
    /// Serializes `snapshot` into payloads pushed to `outbox` (counting in its figures what it
    /// leaves out); returns the bytes written.
    fn encode(
        &mut self,
        snapshot: &Snapshot,
        naming: &Naming,
        outbox: &Outbox<Self::Item>,
        now: Instant,
    ) -> u64;
}

pub struct Queued<E: Encode> {
    pub(crate) encoder: E,
    pub(crate) outbox: Outbox<E::Item>,
}

impl<E: Encode> Queued<E> {
    pub fn with(encoder: E, outbox: Outbox<E::Item>) -> Queued<E> {
        Queued { encoder, outbox }
    }

    /// The delivery figures (also what `meta` reports).
    pub fn figures(&self) -> &Figures {
        self.outbox.figures()
    }
}

impl<E: Encode> Sink for Queued<E> {
    fn name(&self) -> &'static str {
        self.outbox.name()
    }

    fn flush(&mut self, snapshot: &Snapshot, naming: &Naming) -> Result<FlushReport, SinkError> {
        self.outbox.check()?;
        let started = Instant::now();
        let bytes = self.encoder.encode(snapshot, naming, &self.outbox, started);
        Ok(FlushReport { bytes, calculation_ms: started.elapsed().as_secs_f64() * 1e3 })
    }

    fn meta(&self, write: &mut dyn FnMut(&'static str, f64)) {
        self.outbox.meta(write);
    }

    fn shutdown(&mut self, deadline: Instant) -> Result<(), SinkError> {
        self.outbox.shutdown(deadline)
    }
}
