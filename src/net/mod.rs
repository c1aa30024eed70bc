//! Socket set-up (socket2) and thread pinning. Runs on the main thread at start-up; the sockets
//! it makes are then owned by the ingest thread.

pub mod admin;
pub mod drops;
pub mod recvmmsg;
pub mod tcp;
pub mod uds;

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;

/// A bound, non-blocking UDP socket and what the kernel actually gave us.
pub struct BoundUdp {
    pub socket: mio::net::UdpSocket,
    pub local: SocketAddr,
    pub recv_buffer: usize,
}

/// Binds a UDP socket with the requested receive buffer. As root, `SO_RCVBUFFORCE` gets past
/// `net.core.rmem_max`; otherwise the kernel silently caps `SO_RCVBUF`, which is logged.
pub fn bind_udp(addr: SocketAddr, recv_buffer: usize) -> io::Result<BoundUdp> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    if recvmmsg::set_rcvbufforce(&socket, recv_buffer).is_err() {
        socket.set_recv_buffer_size(recv_buffer)?;
    }
    socket.bind(&addr.into())?;
    // Linux reports twice the value it books (its bookkeeping overhead); halve it for the user.
    let effective = socket.recv_buffer_size()? / 2;
    let local = socket.local_addr()?.as_socket().unwrap_or(addr);
    if effective < recv_buffer {
        log::warn!(
            "udp {local}: receive buffer capped at {effective} bytes (asked {recv_buffer}); raise net.core.rmem_max or run with CAP_NET_ADMIN"
        );
    }
    let std_socket: std::net::UdpSocket = socket.into();
    Ok(BoundUdp { socket: mio::net::UdpSocket::from_std(std_socket), local, recv_buffer: effective })
}

/// The core for the flush thread: the configured one, or, when only the ingest thread is pinned,
/// another core than the ingest one, so that summarizing and writing a large flush never competes
/// with ingest for its core (perf/run: at 100 k keys and one line per datagram, an unpinned flush
/// thread that landed on the ingest core cost 11 % of the datagrams; pinned apart, none).
pub fn flush_core(configured: Option<usize>, ingest: Option<usize>) -> Option<usize> {
    configured.or_else(|| {
        let ingest = ingest?;
        core_affinity::get_core_ids()?.into_iter().map(|c| c.id).find(|&id| id != ingest)
    })
}

/// Pins the calling thread to `core`, logging (not failing) when that is impossible.
pub fn pin_current_thread(core: usize, what: &str) {
    let ids = core_affinity::get_core_ids().unwrap_or_default();
    match ids.into_iter().find(|c| c.id == core) {
        Some(id) if core_affinity::set_for_current(id) => {
            log::info!("{what} thread pinned to core {core}")
        }
        _ => log::warn!("{what} thread: cannot pin to core {core}; running unpinned"),
    }
}

#[cfg(test)]
mod tests {
    use super::flush_core;

    #[test]
    fn the_flush_thread_avoids_the_ingest_core() {
        assert_eq!(flush_core(Some(3), Some(0)), Some(3), "a configured core wins");
        assert_eq!(flush_core(None, None), None, "nothing pinned, nothing chosen");
        let cores = core_affinity::get_core_ids().unwrap_or_default().len();
        if cores >= 2 {
            let chosen = flush_core(None, Some(0)).expect("another core exists");
            assert_ne!(chosen, 0);
        }
    }
}
