//! The Prometheus sink: turns every flush into the text exposition that `GET /metrics` serves.
//! Runs on the flush thread. Each [`Snapshot`] is merged into the cumulative state
//! ([`exporter`]) and the whole exposition is rendered once, into a buffer that is then
//! published by swapping an `Arc` ([`Exposition`]); the HTTP thread ([`crate::admin::http`])
//! only clones that `Arc` and writes its bytes, so a scrape costs no rendering and a slow
//! scraper holds nothing but its reference to one page.
//!
//! Two pages are in use at a time, the published one and the one being rendered; the one that
//! comes back from a swap is reused when no scraper still holds it, so in steady state a flush
//! allocates nothing.
//!
//! The sink is tied to the HTTP listener, which a reload does not rebind: it stays in place
//! when a reload replaces the other sinks ([`Sink::survives_reload`]), keeping its counters.

pub mod exporter;
pub mod text;

use super::{FlushReport, Sink, SinkError};
use crate::admin::http::{HttpServer, MetricsPage};
use crate::admin::Health;
use crate::flush::{Naming, Snapshot};
use exporter::Exporter;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The exposition currently served: swapped in by the flush thread, read by the HTTP thread.
/// The lock is held only to clone or replace the `Arc`.
#[derive(Default)]
pub struct Exposition {
    page: Mutex<Arc<Vec<u8>>>,
}

impl Exposition {
    /// The page to serve now.
    pub fn current(&self) -> Arc<Vec<u8>> {
        Arc::clone(&self.page.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Publishes `page`, leaving the page it replaces in its place.
    fn swap(&self, page: &mut Arc<Vec<u8>>) {
        std::mem::swap(&mut *self.page.lock().unwrap_or_else(|e| e.into_inner()), page);
    }
}

impl MetricsPage for Exposition {
    fn current(&self) -> Arc<Vec<u8>> {
        Exposition::current(self)
    }
}

pub struct Prometheus {
    exporter: Exporter,
    exposition: Arc<Exposition>,
    /// The page rendered next (the one the last swap returned).
    spare: Arc<Vec<u8>>,
    server: Option<HttpServer>,
}

impl Prometheus {
    /// A sink that publishes into `exposition`; `meta_prefix` names the daemon's own figures.
    pub fn new(meta_prefix: &str, exposition: Arc<Exposition>) -> Prometheus {
        let mut p = Prometheus {
            exporter: Exporter::new(meta_prefix),
            exposition,
            spare: Arc::default(),
            server: None,
        };
        // Until the first flush, the page has the exporter's own series.
        p.publish();
        p
    }

    /// The sink with its HTTP server on `listen` (`/metrics`, and `/healthz` from `health`).
    pub fn serve(listen: SocketAddr, meta_prefix: &str, health: Health) -> std::io::Result<Prometheus> {
        let exposition = Arc::new(Exposition::default());
        let page: Arc<dyn MetricsPage> = exposition.clone();
        let server = HttpServer::start(listen, page, health)?;
        log::info!("http listening on {} (/metrics, /healthz)", server.local_addr());
        let mut p = Prometheus::new(meta_prefix, exposition);
        p.server = Some(server);
        Ok(p)
    }

    /// The address the HTTP server bound, when it runs.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(HttpServer::local_addr)
    }

    /// Renders the state into the spare page and publishes it; returns its length.
    fn publish(&mut self) -> usize {
        if Arc::get_mut(&mut self.spare).is_none() {
            // A scraper still holds it: render into a new page of the same size.
            self.spare = Arc::new(Vec::with_capacity(self.spare.len()));
        }
        let page = Arc::get_mut(&mut self.spare).expect("unique");
        self.exporter.render(page);
        let len = page.len();
        self.exposition.swap(&mut self.spare);
        len
    }
}

impl Sink for Prometheus {
    fn name(&self) -> &'static str {
        "prometheus"
    }

    fn flush(&mut self, snapshot: &Snapshot, _naming: &Naming) -> Result<FlushReport, SinkError> {
        let started = Instant::now();
        self.exporter.merge(snapshot);
        let bytes = self.publish() as u64;
        Ok(FlushReport { bytes, calculation_ms: started.elapsed().as_secs_f64() * 1e3 })
    }

    fn meta(&self, write: &mut dyn FnMut(&'static str, f64)) {
        write("series", self.exporter.series_count() as f64);
    }

    fn survives_reload(&self) -> bool {
        true
    }

    fn shutdown(&mut self, _deadline: Instant) -> Result<(), SinkError> {
        if let Some(mut s) = self.server.take() {
            s.stop();
        }
        Ok(())
    }
}
