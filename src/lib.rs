//! kstatsd: a StatsD-compatible metrics aggregation daemon.
//!
//! One ingest thread owns every socket (UDP, Unix datagram, TCP, Unix stream, the management
//! port). It pulls datagrams in batches with `recvmmsg` and reads streams edge-triggered,
//! busy-polling while traffic flows and parking in `epoll_wait` when idle, parses each line
//! zero-copy ([`parse`]) and records it into interned hash tables ([`aggregate`]). At each flush
//! deadline it swaps those tables with a spare and sends the full ones to the flush thread
//! ([`flush::thread`]), which summarizes them with etsy statsd's exact maths, merges them into
//! the state that outlives an interval (known keys, gauge values), builds an immutable
//! [`flush::Snapshot`] and hands it to every [`sink`]. The cleared tables go back to the ingest
//! thread as its next spare, so nothing is allocated per interval and the ingest thread never
//! waits for a flush.
//!
//! Modules: [`config`] (file, flags, environment, validation), [`daemon`] (assembly), [`net`] (socket set-up, the
//! `recvmmsg` batch, kernel drop counts, stream framing, Unix sockets, the management port),
//! [`server`] (the ingest loop), [`ingest`] (the one path from a datagram or a stream read into
//! the tables, and the debug dump), [`parse`] (statsd lines, pystatsd JSON), [`aggregate`],
//! [`flush`] (and the failure hook), [`sink`], [`reload`] (SIGHUP),
//! [`admin`] (`/metrics` and `/healthz` over HTTP).

pub mod admin;
pub mod aggregate;
pub mod config;
pub mod daemon;
pub mod flush;
pub mod ingest;
pub mod net;
pub mod parse;
pub mod reload;
pub mod server;
pub mod sink;
pub mod source;
