//! The datagram inputs of the ingest loop: the bound UDP, pystatsd JSON and Unix datagram
//! sockets, their registration with the poll (each socket's token is its index), and the one
//! `recvmmsg` batch every socket is read into. Owned by [`super::Server`] and run on the ingest
//! thread, whose `drain` reads `dgram` and `batch` directly.

use crate::net::{DgramSocket, InputAddr};
use crate::sys::RecvBatch;
use mio::{Interest, Registry, Token};
use std::io;

pub(super) struct DgramInput {
    pub(super) socket: DgramSocket,
    pub(super) endpoint: InputAddr,
    pub(super) local: String,
    /// A `json_udp` port: every line is a JSON message.
    pub(super) json: bool,
}

pub(super) struct Inputs {
    pub(super) dgram: Vec<DgramInput>,
    pub(super) batch: RecvBatch,
    /// A datagram socket reported readiness since this turn's drain: its data is still queued
    /// (the event is edge-triggered and will not come again), so the loop must not park.
    pub(super) event: bool,
}

impl Inputs {
    pub(super) fn new(batch: RecvBatch) -> Inputs {
        Inputs { dgram: Vec::new(), batch, event: false }
    }

    /// Takes over one bound datagram socket (registering it with the poll).
    pub(super) fn add(
        &mut self,
        registry: &Registry,
        mut socket: DgramSocket,
        endpoint: InputAddr,
        local: String,
    ) -> io::Result<()> {
        // Datagram sockets are drained every turn; their events only end a park.
        let token = Token(self.dgram.len());
        match &mut socket {
            DgramSocket::Udp(s) => registry.register(s, token, Interest::READABLE)?,
            DgramSocket::Unix(s, _) => registry.register(s, token, Interest::READABLE)?,
        }
        let json = matches!(endpoint, InputAddr::JsonUdp(_));
        self.dgram.push(DgramInput { socket, endpoint, local, json });
        self.retoken(registry)
    }

    /// Closes the sockets whose endpoint is not in `want`.
    pub(super) fn remove(&mut self, registry: &Registry, want: &[InputAddr]) -> io::Result<()> {
        let mut removed = false;
        self.dgram.retain_mut(|d| {
            let keep = want.contains(&d.endpoint);
            if !keep {
                removed = true;
                log::info!("reload: closing {}", d.local);
                let _ = match &mut d.socket {
                    DgramSocket::Udp(s) => registry.deregister(s),
                    DgramSocket::Unix(s, _) => registry.deregister(s),
                };
            }
            keep
        });
        if removed {
            self.retoken(registry)?;
        }
        Ok(())
    }

    /// Re-registers the sockets with their current index as token (after a removal).
    fn retoken(&mut self, registry: &Registry) -> io::Result<()> {
        for (i, d) in self.dgram.iter_mut().enumerate() {
            match &mut d.socket {
                DgramSocket::Udp(s) => registry.reregister(s, Token(i), Interest::READABLE)?,
                DgramSocket::Unix(s, _) => registry.reregister(s, Token(i), Interest::READABLE)?,
            }
        }
        Ok(())
    }
}
