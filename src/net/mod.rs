//! Socket set-up (socket2): binding every configured input ([`bind`]: UDP,
//! pystatsd JSON over UDP, Unix datagram, TCP, Unix stream, the management port). Runs on the
//! main thread at start-up, and on the ingest thread for the inputs a reload adds; the sockets it
//! makes are owned by the ingest thread. The stream framing and the Unix sockets are in
//! [`framing`], [`tcp`] and [`uds`]; kernel drop counts in [`drops`].

pub mod config;
pub mod drops;
pub mod framing;
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
    if crate::sys::set_rcvbufforce(&socket, recv_buffer).is_err() {
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
pub enum InputAddr {
    Udp(SocketAddr),
    JsonUdp(SocketAddr),
    UnixDgram(std::path::PathBuf),
    Tcp(SocketAddr),
    UnixStream(std::path::PathBuf),
    Admin(SocketAddr),
}

impl InputAddr {
    /// Every endpoint a server config asks for.
    pub fn all(c: &ServerConfig) -> Vec<InputAddr> {
        let mut v: Vec<InputAddr> = c.udp.iter().map(|a| InputAddr::Udp(*a)).collect();
        v.extend(c.json_udp.iter().map(|a| InputAddr::JsonUdp(*a)));
        v.extend(c.unix_dgram.iter().map(|p| InputAddr::UnixDgram(p.clone())));
        v.extend(c.tcp.iter().map(|a| InputAddr::Tcp(*a)));
        v.extend(c.unix_stream.iter().map(|p| InputAddr::UnixStream(p.clone())));
        v.extend(c.admin.iter().map(|a| InputAddr::Admin(*a)));
        v
    }
}

/// A bound input: the socket, what it was configured as, and what it actually bound.
pub enum BoundInput {
    Dgram { socket: DgramSocket, endpoint: InputAddr, local: String },
    Listener { socket: ListenerSocket, endpoint: InputAddr, local: String },
}

impl BoundInput {
    pub fn endpoint(&self) -> &InputAddr {
        match self {
            BoundInput::Dgram { endpoint, .. } | BoundInput::Listener { endpoint, .. } => endpoint,
        }
    }
}

/// Binds one input and logs where it listens (`<kind> listening on <address>`; tests read it).
pub fn bind(e: &InputAddr, c: &ServerConfig) -> io::Result<BoundInput> {
    let with_context =
        |what: &str, r: io::Error| io::Error::new(r.kind(), format!("cannot bind {what}: {r}"));
    let bound = match e {
        InputAddr::Udp(a) | InputAddr::JsonUdp(a) => {
            let b = bind_udp(*a, c.recv_buffer).map_err(|r| with_context(&format!("udp {a}"), r))?;
            let kind = if matches!(e, InputAddr::Udp(_)) { "udp" } else { "json (udp)" };
            log::info!("{kind} listening on {} (receive buffer {} bytes)", b.local, b.recv_buffer);
            BoundInput::Dgram {
                socket: DgramSocket::Udp(b.socket),
                endpoint: e.clone(),
                local: b.local.to_string(),
            }
        }
        InputAddr::UnixDgram(p) => {
            let (s, file) = uds::bind_dgram(p, c.unix_mode, c.recv_buffer)
                .map_err(|r| with_context(&format!("unix dgram {}", p.display()), r))?;
            log::info!("unix dgram listening on {}", p.display());
            BoundInput::Dgram {
                socket: DgramSocket::Unix(s, file),
                endpoint: e.clone(),
                local: p.display().to_string(),
            }
        }
        InputAddr::Tcp(a) | InputAddr::Admin(a) => {
            let kind = if matches!(e, InputAddr::Tcp(_)) { "tcp" } else { "admin" };
            // The management port is on by default: say how to move it or switch it off.
            let what = match kind {
                "admin" => {
                    format!("admin {a} (the management port: set `admin` to another address or \"off\")")
                }
                _ => format!("tcp {a}"),
            };
            let (l, local) = tcp::bind_listener(*a).map_err(|r| with_context(&what, r))?;
            log::info!("{kind} listening on {local}");
            BoundInput::Listener {
                socket: ListenerSocket::Tcp(l),
                endpoint: e.clone(),
                local: local.to_string(),
            }
        }
        InputAddr::UnixStream(p) => {
            let (l, file) = uds::bind_stream(p, c.unix_mode)
                .map_err(|r| with_context(&format!("unix stream {}", p.display()), r))?;
            log::info!("unix stream listening on {}", p.display());
            BoundInput::Listener {
                socket: ListenerSocket::Unix(l, file),
                endpoint: e.clone(),
                local: p.display().to_string(),
            }
        }
    };
    Ok(bound)
}

/// The UDP sockets among `inputs` (whose kernel drops are watched).
pub fn udp_fds(inputs: &[BoundInput]) -> Vec<&dyn std::os::fd::AsRawFd> {
    inputs
        .iter()
        .filter_map(|b| match b {
            BoundInput::Dgram { socket: DgramSocket::Udp(s), .. } => Some(s as &dyn std::os::fd::AsRawFd),
            _ => None,
        })
        .collect()
}
