//! Loopback ports for test servers that stop and come back on the same port (the REST Proxy
//! emulator, carbon, a kstatsd restarted after SIGKILL). They are taken below the kernel's
//! ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`): ports bound to 0 and the source
//! ports of outgoing connections come from that range, so while such a server is down no other
//! test's server or connection is given its port. (Were it given, the restart would fail with
//! `AddrInUse` and this test's sink would deliver to the other test's server.) Tests running in
//! parallel processes pick at random below the range and skip a port found taken.

use std::net::{TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};

/// `[start − 12 000, start)` of the ephemeral range (20768..32768 by default); `None` when the
/// range starts too low to leave room below it.
fn below_ephemeral() -> Option<(u16, u16)> {
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let low = start.saturating_sub(12_000).max(1024);
    (start - low >= 1000).then_some((low, start))
}

/// Random ports below the ephemeral range, different in every call and process; port 0 (any
/// ephemeral port) when there is no room below it.
fn candidates() -> impl Iterator<Item = u16> {
    static CALLS: AtomicU64 = AtomicU64::new(1);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let mut x = (u64::from(std::process::id()) << 32 | u64::from(nanos))
        ^ CALLS.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let range = below_ephemeral();
    (0..4000).map(move |_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        range.map_or(0, |(low, high)| low + (x % u64::from(high - low)) as u16)
    })
}

/// A TCP listener on 127.0.0.1, on a port below the ephemeral range.
pub fn tcp_listener() -> TcpListener {
    candidates()
        .find_map(|port| TcpListener::bind(("127.0.0.1", port)).ok())
        .expect("a free port below the ephemeral range")
}

/// A port below the ephemeral range that is free now for both TCP and UDP on 127.0.0.1, for a
/// server started later to bind.
pub fn free_port() -> u16 {
    candidates()
        .find_map(|port| {
            let tcp = TcpListener::bind(("127.0.0.1", port)).ok()?;
            let port = tcp.local_addr().ok()?.port();
            UdpSocket::bind(("127.0.0.1", port)).ok().map(|_| port)
        })
        .expect("a free port below the ephemeral range")
}
