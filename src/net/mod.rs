//! Socket set-up (socket2) and thread pinning. Runs on the main thread at start-up; the sockets
//! it makes are then owned by the ingest thread.

pub mod drops;
pub mod recvmmsg;

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
