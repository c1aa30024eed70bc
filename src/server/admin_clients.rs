//! The management port's clients on the ingest thread (`streams` accepts them and drops stalled
//! ones): reading their commands, answering those the loop knows about itself, and writing their
//! output. What they ask about the known series is answered by the flush thread (which owns it):
//! the question goes over the flush channel with `try_send`, the answer comes back on `replies`
//! and a `mio::Waker` wakes the loop. A client over its input or output limit is disconnected,
//! counted in the interval's `admin_clients_dropped` and logged once per interval.
//! [`AdminClients`] holds what the answers need besides the connections: the reply channel, the
//! health switch, the configuration text and the start time.

use super::streams::{Conn, Role, Stream};
use super::Server;
use crate::admin::management::{self as admin, Command, LiveFigures, Query};
use crate::admin::Health;
use crate::flush_thread::FlushMsg;
use std::io::{self, Read};
use std::sync::mpsc::{self, TrySendError};
use std::sync::Arc;
use std::time::Instant;

/// Why a client is disconnected by its limits (see `admin::management`).
enum OverLimit {
    Input,
    Output { queued: usize },
}

/// The loop's state for the management port that is not a connection: the channel the flush
/// thread answers on, the health switch, the running configuration as text, and the start time.
pub(super) struct AdminClients {
    replies_tx: mpsc::Sender<admin::Reply>,
    replies: mpsc::Receiver<admin::Reply>,
    /// The `health` state, shared with `/healthz`.
    healthy: Health,
    /// What the `config` command prints (replaced by a reload).
    pub(super) config_text: String,
    started: Instant,
}

impl AdminClients {
    pub(super) fn new(healthy: Health, config_text: String, now: Instant) -> AdminClients {
        let (replies_tx, replies) = mpsc::channel();
        AdminClients { replies_tx, replies, healthy, config_text, started: now }
    }

    /// The answer to `health` (after setting it, when the command does).
    fn health(&self, set: Option<bool>) -> Vec<u8> {
        if let Some(up) = set {
            self.healthy.set(up);
        }
        admin::text_reply(if self.healthy.is_up() { "health: up" } else { "health: down" })
    }
}

impl Server {
    pub(super) fn admin_read(&mut self, slot: usize, now: Instant) {
        loop {
            let Some(Some(conn)) = self.streams.conns.get_mut(slot) else { return };
            let Role::Admin(client) = &mut conn.role else { return };
            if !client.send_buffer_set {
                client.send_buffer_set = true;
                fix_send_buffer(&conn.stream);
            }
            match conn.stream.read(&mut self.streams.stream_buf) {
                Ok(0) => {
                    self.close(slot);
                    return;
                }
                Ok(n) => {
                    client.input.extend_from_slice(&self.streams.stream_buf[..n]);
                    self.admin_commands(slot, now);
                    // What is left is an unfinished line, or commands queued behind a question
                    // to the flush thread: either way, bounded.
                    let Some(Some(Conn { role: Role::Admin(client), .. })) = self.streams.conns.get(slot)
                    else {
                        return;
                    };
                    if client.input.len() > admin::INPUT_LIMIT {
                        self.drop_over_limit(slot, OverLimit::Input);
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close(slot);
                    return;
                }
            }
        }
    }

    /// Runs the client's buffered commands until one needs the flush thread.
    fn admin_commands(&mut self, slot: usize, now: Instant) {
        loop {
            let Some(Some(conn)) = self.streams.conns.get_mut(slot) else { return };
            let id = conn.id;
            let Role::Admin(client) = &mut conn.role else { return };
            if client.waiting || client.closing {
                break;
            }
            let Some(line) = client.next_line() else { break };
            let cmd = Command::parse(&line);
            let reply = if cmd.mutates() && !self.config.server.admin_allow_mutations {
                Some(admin::text_reply(
                    "ERROR: this command is disabled (server.admin_allow_mutations = false)",
                ))
            } else {
                match cmd {
                    Command::Nothing => None,
                    Command::Help => Some(admin::text_reply(admin::HELP)),
                    Command::Health(set) => Some(self.admin.health(set)),
                    Command::Config => Some(admin::text_reply(&self.admin.config_text)),
                    Command::Quit => {
                        client.closing = true;
                        None
                    }
                    Command::Unknown(c) => {
                        Some(admin::text_reply(&format!("ERROR: unknown command `{c}` (try help)")))
                    }
                    Command::Stats { json } => {
                        let live = Box::new(self.live_figures());
                        self.ask_flush_thread(slot, id, Query::Stats { json, live })
                    }
                    Command::List(kind) => self.ask_flush_thread(slot, id, Query::List(kind)),
                    Command::Delete { kind, patterns } => {
                        self.ask_flush_thread(slot, id, Query::Delete { kind, patterns })
                    }
                }
            };
            if let Some(r) = reply {
                if !self.admin_push(slot, &r) {
                    return;
                }
            }
        }
        self.admin_write(slot, now);
    }

    /// Sends a question to the flush thread; an error reply when it cannot take it now.
    fn ask_flush_thread(&mut self, slot: usize, id: u64, query: Query) -> Option<Vec<u8>> {
        let req = admin::Request {
            slot,
            id,
            query,
            reply: self.admin.replies_tx.clone(),
            waker: Arc::clone(&self.waker),
        };
        match self.flush.jobs.try_send(FlushMsg::Admin(Box::new(req))) {
            Ok(()) => {
                if let Some(Some(Conn { role: Role::Admin(c), .. })) = self.streams.conns.get_mut(slot) {
                    c.waiting = true;
                }
                None
            }
            Err(TrySendError::Full(_)) => {
                Some(admin::text_reply("ERROR: the flush thread is busy; try again"))
            }
            Err(TrySendError::Disconnected(_)) => {
                Some(admin::text_reply("ERROR: the flush thread has stopped"))
            }
        }
    }

    fn live_figures(&self) -> LiveFigures {
        let now = Instant::now();
        LiveFigures {
            uptime_s: now.duration_since(self.admin.started).as_secs(),
            last_msg_seen_s: now.duration_since(self.last_data).as_secs(),
            interval: self.active.stats.clone(),
            interval_series: self.active.series_count(),
            connections_open: self.streams.data_conns,
            admin_clients: self.streams.admin_conns,
            overruns_pending: self.clock.overruns,
            healthy: self.admin.healthy.is_up(),
        }
    }

    /// Queues output for an admin client; drops the client (returning false) over its limit.
    fn admin_push(&mut self, slot: usize, reply: &[u8]) -> bool {
        let Some(Some(Conn { role: Role::Admin(c), .. })) = self.streams.conns.get_mut(slot) else {
            return false;
        };
        if c.push(reply) {
            return true;
        }
        let queued = c.pending() + reply.len();
        self.drop_over_limit(slot, OverLimit::Output { queued });
        false
    }

    /// Disconnects a client over one of its limits: counted, and logged for the first one in
    /// the interval (a client that is dropped reconnects, and each reconnection would log).
    fn drop_over_limit(&mut self, slot: usize, why: OverLimit) {
        let stats = &mut self.active.stats;
        if stats.admin_clients_dropped == 0 {
            match why {
                OverLimit::Input => log::warn!(
                    "admin: dropping a client with over {} bytes of unanswered input (counted in \
                     admin_clients_dropped; at most one such line per flush interval)",
                    admin::INPUT_LIMIT
                ),
                OverLimit::Output { queued } => log::warn!(
                    "admin: dropping a client that does not read its replies ({queued} bytes \
                     queued, over the {} byte limit; counted in admin_clients_dropped; at most \
                     one such line per flush interval)",
                    admin::OUTPUT_LIMIT
                ),
            }
        }
        stats.admin_clients_dropped += 1;
        self.close(slot);
    }

    pub(super) fn admin_write(&mut self, slot: usize, now: Instant) {
        let Some(Some(conn)) = self.streams.conns.get_mut(slot) else { return };
        let Role::Admin(client) = &mut conn.role else { return };
        match client.write_to(&mut conn.stream, now) {
            Ok(true) if client.closing => self.close(slot),
            Ok(_) => {}
            Err(_) => self.close(slot),
        }
    }

    /// Hands the flush thread's answers to their clients and runs what they sent meanwhile.
    pub(super) fn take_replies(&mut self, now: Instant) {
        while let Ok(r) = self.admin.replies.try_recv() {
            let Some(Some(conn)) = self.streams.conns.get_mut(r.slot) else { continue };
            if conn.id != r.id {
                continue; // that client is gone and its slot reused
            }
            if let Role::Admin(c) = &mut conn.role {
                c.waiting = false;
            }
            if self.admin_push(r.slot, &r.text) {
                self.admin_commands(r.slot, now);
            }
        }
        if self.reload.is_some() {
            self.reload_step();
        }
    }
}

/// Fixes the connection's send buffer at `admin::SEND_BUFFER`, which also turns the kernel's
/// autotuning off for it. Should the kernel refuse, the output limit still holds; the kernel
/// then keeps more than that buffer of what the client has not read.
fn fix_send_buffer(stream: &Stream) {
    let sock = match stream {
        Stream::Tcp(s) => socket2::SockRef::from(s),
        Stream::Unix(s) => socket2::SockRef::from(s),
    };
    if let Err(e) = sock.set_send_buffer_size(admin::SEND_BUFFER) {
        log::debug!("admin: cannot set a client's send buffer: {e}");
    }
}
