//! Socket set-up (socket2) and thread pinning: binding every configured input ([`bind`]: UDP,
//! pystatsd JSON over UDP, Unix datagram, TCP, Unix stream, the management port). Runs on the
//! main thread at start-up, and on the ingest thread for the inputs a reload adds; the sockets it
//! makes are owned by the ingest thread. The stream framing, the Unix sockets and the management
//! protocol are in [`tcp`], [`uds`] and [`admin`].

pub mod admin;
pub mod config;
pub mod drops;
pub mod framing;
pub mod recvmmsg;
pub mod tcp;
pub mod uds;

pub use config::ServerConfig;
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

/// This host's name, from `/proc/sys/kernel/hostname` (or `$HOSTNAME`); `None` when neither is
/// there. Read from a file so that no `unsafe` is needed for `gethostname(2)`.
pub fn hostname() -> Option<String> {
    let from_proc = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
    let name = from_proc.or_else(|| std::env::var("HOSTNAME").ok()).map(|h| h.trim().to_string());
    name.filter(|h| !h.is_empty())
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

/// A datagram socket the ingest loop drains with `recvmmsg`.
pub enum DgramSocket {
    Udp(mio::net::UdpSocket),
    Unix(mio::net::UnixDatagram, uds::SocketFile),
}

/// A listener whose connections the ingest loop accepts.
pub enum ListenerSocket {
    Tcp(mio::net::TcpListener),
    Unix(mio::net::UnixListener, uds::SocketFile),
}

/// Where an input was configured to listen: how a reload tells what changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Udp(SocketAddr),
    JsonUdp(SocketAddr),
    UnixDgram(std::path::PathBuf),
    Tcp(SocketAddr),
    UnixStream(std::path::PathBuf),
    Admin(SocketAddr),
}

impl Endpoint {
    /// Every endpoint a server config asks for.
    pub fn all(c: &ServerConfig) -> Vec<Endpoint> {
        let mut v: Vec<Endpoint> = c.udp.iter().map(|a| Endpoint::Udp(*a)).collect();
        v.extend(c.json_udp.iter().map(|a| Endpoint::JsonUdp(*a)));
        v.extend(c.unix_dgram.iter().map(|p| Endpoint::UnixDgram(p.clone())));
        v.extend(c.tcp.iter().map(|a| Endpoint::Tcp(*a)));
        v.extend(c.unix_stream.iter().map(|p| Endpoint::UnixStream(p.clone())));
        v.extend(c.admin.iter().map(|a| Endpoint::Admin(*a)));
        v
    }
}

/// A bound input: the socket, what it was configured as, and what it actually bound.
pub enum Bound {
    Dgram { socket: DgramSocket, endpoint: Endpoint, local: String },
    Listener { socket: ListenerSocket, endpoint: Endpoint, local: String },
}

impl Bound {
    pub fn endpoint(&self) -> &Endpoint {
        match self {
            Bound::Dgram { endpoint, .. } | Bound::Listener { endpoint, .. } => endpoint,
        }
    }
}

/// Binds one input and logs where it listens (`<kind> listening on <address>`; tests read it).
pub fn bind(e: &Endpoint, c: &ServerConfig) -> io::Result<Bound> {
    let with_context =
        |what: &str, r: io::Error| io::Error::new(r.kind(), format!("cannot bind {what}: {r}"));
    let bound = match e {
        Endpoint::Udp(a) | Endpoint::JsonUdp(a) => {
            let b = bind_udp(*a, c.recv_buffer).map_err(|r| with_context(&format!("udp {a}"), r))?;
            let kind = if matches!(e, Endpoint::Udp(_)) { "udp" } else { "json (udp)" };
            log::info!("{kind} listening on {} (receive buffer {} bytes)", b.local, b.recv_buffer);
            Bound::Dgram {
                socket: DgramSocket::Udp(b.socket),
                endpoint: e.clone(),
                local: b.local.to_string(),
            }
        }
        Endpoint::UnixDgram(p) => {
            let (s, file) = uds::bind_dgram(p, c.unix_mode, c.recv_buffer)
                .map_err(|r| with_context(&format!("unix dgram {}", p.display()), r))?;
            log::info!("unix dgram listening on {}", p.display());
            Bound::Dgram {
                socket: DgramSocket::Unix(s, file),
                endpoint: e.clone(),
                local: p.display().to_string(),
            }
        }
        Endpoint::Tcp(a) | Endpoint::Admin(a) => {
            let kind = if matches!(e, Endpoint::Tcp(_)) { "tcp" } else { "admin" };
            // The management port is on by default: say how to move it or switch it off.
            let what = match kind {
                "admin" => {
                    format!("admin {a} (the management port: set `admin` to another address or \"off\")")
                }
                _ => format!("tcp {a}"),
            };
            let (l, local) = tcp::bind_listener(*a).map_err(|r| with_context(&what, r))?;
            log::info!("{kind} listening on {local}");
            Bound::Listener { socket: ListenerSocket::Tcp(l), endpoint: e.clone(), local: local.to_string() }
        }
        Endpoint::UnixStream(p) => {
            let (l, file) = uds::bind_stream(p, c.unix_mode)
                .map_err(|r| with_context(&format!("unix stream {}", p.display()), r))?;
            log::info!("unix stream listening on {}", p.display());
            Bound::Listener {
                socket: ListenerSocket::Unix(l, file),
                endpoint: e.clone(),
                local: p.display().to_string(),
            }
        }
    };
    Ok(bound)
}

/// The UDP sockets among `inputs` (whose kernel drops are watched).
pub fn udp_fds(inputs: &[Bound]) -> Vec<&dyn std::os::fd::AsRawFd> {
    inputs
        .iter()
        .filter_map(|b| match b {
            Bound::Dgram { socket: DgramSocket::Udp(s), .. } => Some(s as &dyn std::os::fd::AsRawFd),
            _ => None,
        })
        .collect()
}
