//! kstatsd: a StatsD-compatible metrics aggregation daemon.
//!
//! One ingest thread owns every socket (UDP, Unix datagram, TCP, Unix stream, the management
//! port). It pulls datagrams in batches with `recvmmsg` and reads streams edge-triggered,
//! busy-polling while traffic flows and parking in `epoll_wait` when idle, parses each line
//! zero-copy ([`parse`]) and records it into interned hash tables ([`aggregate`]). At each flush
//! deadline it swaps those tables with a spare and sends the full ones to the flush thread
//! ([`flush_thread`]), which summarizes them with etsy statsd's exact maths, merges them into
//! the state that outlives an interval (known keys, gauge values), builds an immutable
//! [`flush::Snapshot`] and hands it to every [`sink`]. The cleared tables go back to the ingest
//! thread as its next spare, so nothing is allocated per interval and the ingest thread never
//! waits for a flush.
//!
//! Modules, top layer first (each uses only the layers below it; `tests/module_graph.rs`
//! checks it, docs/architecture.md draws it): [`server`] (the ingest loop and the SIGHUP
//! reload), [`flush_thread`], [`daemon`] (assembly); [`config`] (file, flags, environment,
//! validation); the components [`ingest`] (the one path from a datagram or a stream read into
//! the tables, and the debug dump), [`net`] (socket set-up, kernel drop counts, stream framing,
//! Unix sockets), [`flush`] (and the failure hook), [`sink`], [`source`] and [`admin`] (the
//! management port, `/metrics` and `/healthz`); [`parse`] (statsd lines, pystatsd JSON) and
//! [`aggregate`]; and the leaves [`fmt`] (number and JSON writers), [`settings`] (the value
//! types every configuration section uses) and [`sys`] (the operating system calls: the one
//! file with `unsafe`).

#![deny(unsafe_code)]

pub mod admin;
pub mod aggregate;
pub mod config;
pub mod daemon;
pub mod flush;
pub mod flush_thread;
pub mod fmt;
pub mod ingest;
pub mod net;
pub mod parse;
pub mod server;
pub mod settings;
pub mod sink;
pub mod source;
#[allow(unsafe_code)]
pub mod sys;
