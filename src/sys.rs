//! What kstatsd asks of the machine directly: the host's name, thread pinning, the open files
//! limit, the C allocator's mmap threshold, the two socket calls that socket2 lacks (batched UDP
//! receive with `recvmmsg(2)`, and `SO_RCVBUFFORCE`), the CPU's 16-byte compare (SSE2) for the
//! line parser's byte search, and the cache prefetch for the table lookups. This is the only
//! file in kstatsd with `unsafe` (the crate denies it everywhere else). The receive batch, the
//! byte search and the prefetch run on the ingest thread; the rest at start-up, on the main
//! thread, and pinning on the thread being pinned.
//!
//! A [`RecvBatch`] owns `n` receive buffers of `size` bytes in one contiguous allocation, plus the
//! `iovec` and `mmsghdr` arrays that point into it, all built once. One `recv` call asks the
//! kernel for up to `n` datagrams with a null timeout and `MSG_DONTWAIT`; we then read exactly
//! the count it returned, each datagram's length from its `msg_len`, and whether it was cut
//! (`MSG_TRUNC`). Buffers: 64 × 64 KiB by default (`server.recv_batch`, `server.max_datagram`);
//! pages are only touched as datagrams land in them.

use std::io;
use std::os::fd::AsRawFd;

pub struct RecvBatch {
    buffers: Vec<u8>,
    size: usize,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    received: usize,
}

// SAFETY: the raw pointers in `iovecs` and `headers` point only into `buffers` and `iovecs`,
// heap allocations this struct owns and never reallocates after `new`; moving the struct to
// another thread moves their only owner with them, and `recv` takes `&mut self`.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// `n` buffers of `size` bytes each.
    pub fn new(n: usize, size: usize) -> RecvBatch {
        let n = n.max(1);
        let mut buffers = vec![0u8; n * size];
        let base = buffers.as_mut_ptr();
        let mut iovecs: Vec<libc::iovec> = (0..n)
            .map(|i| libc::iovec {
                // SAFETY: i * size < n * size = buffers.len(), so the offset stays inside the
                // allocation.
                iov_base: unsafe { base.add(i * size) }.cast(),
                iov_len: size,
            })
            .collect();
        let iov_base = iovecs.as_mut_ptr();
        let headers = (0..n)
            .map(|i| {
                // SAFETY: an all-zero mmsghdr is a valid value (null name/control, zero lengths).
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                // SAFETY: i < n = iovecs.len().
                h.msg_hdr.msg_iov = unsafe { iov_base.add(i) };
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        RecvBatch { buffers, size, iovecs, headers, received: 0 }
    }

    /// Receives up to `n` datagrams without blocking. `Ok(0)` never happens: an empty socket is
    /// `Err(WouldBlock)`.
    pub fn recv(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        self.received = 0;
        for h in &mut self.headers {
            h.msg_len = 0;
            h.msg_hdr.msg_flags = 0;
        }
        debug_assert_eq!(self.iovecs.len(), self.headers.len());
        // SAFETY: `headers` has `len` valid mmsghdrs whose single iovec each points to a distinct
        // `size`-byte region of `buffers`; all three live as long as `self`, which is borrowed
        // mutably for the call, so the kernel writes only into memory we own and nobody reads.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.headers.as_mut_ptr(),
                self.headers.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.received = n as usize;
        Ok(self.received)
    }

    /// The `i`-th datagram of the last `recv` (`i` below the count it returned) and whether the
    /// kernel truncated it.
    #[inline]
    pub fn datagram(&self, i: usize) -> (&[u8], bool) {
        let h = &self.headers[i.min(self.received.saturating_sub(1))];
        let len = (h.msg_len as usize).min(self.size);
        let start = i * self.size;
        let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        (&self.buffers[start..start + len], truncated)
    }

    pub fn capacity(&self) -> usize {
        self.headers.len()
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (start-up, main thread): every stream
/// connection is a file descriptor, and a distribution's 1024 soft default would cap
/// `max_tcp_connections` with EMFILE long before its configured value. Returns (before, after).
pub fn raise_nofile_limit() -> io::Result<(libc::rlim_t, libc::rlim_t)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one `rlimit` into the live struct we exclusively borrow.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit only reads the live `rlimit` we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((before, lim.rlim_cur))
}

/// Pins glibc malloc's mmap threshold at its default 128 KiB (start-up, main thread, before any
/// other thread). Left dynamic, glibc raises it to the size of every large block freed, up to
/// 32 MiB: after a burst of new series has grown and then given back the tables' arenas, the
/// flush thread's growing key arena, spans and outputs come from the heap instead of their own
/// mappings, and the freed holes they leave stay resident. Pinned, every large buffer is a
/// mapping of its own that grows in place and goes back to the kernel when freed. Returns whether
/// the allocator took it (always false on a libc other than glibc).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn pin_mmap_threshold() -> bool {
    // SAFETY: mallopt only sets one of the allocator's parameters; no pointer is passed.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10) == 1 }
}

/// See the glibc version above: other allocators are left as they are.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn pin_mmap_threshold() -> bool {
    false
}

/// `setsockopt(SO_RCVBUFFORCE)`: like `SO_RCVBUF` but ignores `net.core.rmem_max` (needs
/// CAP_NET_ADMIN).
pub fn set_rcvbufforce(socket: &impl AsRawFd, size: usize) -> io::Result<()> {
    let v: libc::c_int = size.min(i32::MAX as usize / 2) as libc::c_int;
    // SAFETY: passes a pointer to a live c_int and its exact size, as setsockopt expects.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
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
/// there. The same name `gethostname(2)` returns, read without a libc call.
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

/// Bit `i` is set where `chunk[i]` is `a` or `b`: two 16-byte compares and a mask (SSE2, part
/// of every x86_64 CPU), about six instructions for what takes forty byte by byte.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn find2_mask16(chunk: &[u8; 16], a: u8, b: u8) -> u32 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is in the x86_64 baseline, so the target has these instructions; the
    // unaligned load reads exactly the 16 bytes of `chunk`.
    unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast());
        let hits = _mm_or_si128(
            _mm_cmpeq_epi8(v, _mm_set1_epi8(a as i8)),
            _mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8)),
        );
        _mm_movemask_epi8(hits) as u32
    }
}

/// Asks the CPU to bring the cache line of `x` into every cache level, without waiting for it
/// (x86_64's `prefetcht0`; nothing elsewhere).
#[inline(always)]
pub fn prefetch<T>(x: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults, reads nothing into the program and
    // changes no state it can observe; the address comes from a live reference anyway.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((x as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}

/// [`find2_mask16`] on other CPUs, byte by byte.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub fn find2_mask16(chunk: &[u8; 16], a: u8, b: u8) -> u32 {
    chunk.iter().enumerate().fold(0, |m, (i, &c)| m | (u32::from(c == a || c == b) << i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn the_16_byte_search_marks_exactly_the_bytes_sought() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..10_000 {
            let mut chunk = [0u8; 16];
            for c in &mut chunk {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *c = b":|\n\xffab"[(x % 6) as usize];
            }
            let want =
                chunk.iter().enumerate().fold(0, |m, (i, &c)| m | (u32::from(c == b':' || c == b'\n') << i));
            assert_eq!(find2_mask16(&chunk, b':', b'\n'), want, "{chunk:?}");
        }
    }

    #[test]
    fn receives_a_batch_and_reports_truncation() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut batch = RecvBatch::new(4, 16);
        assert_eq!(batch.recv(&rx).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        for d in ["a:1|c", "b:2|c", "this datagram is longer than 16 bytes"] {
            tx.send_to(d.as_bytes(), rx.local_addr().unwrap()).unwrap();
        }
        let mut got = Vec::new();
        while got.len() < 3 {
            let n = batch.recv(&rx).unwrap();
            for i in 0..n {
                let (d, t) = batch.datagram(i);
                got.push((d.to_vec(), t));
            }
        }
        assert_eq!(got[0], (b"a:1|c".to_vec(), false));
        assert_eq!(got[1], (b"b:2|c".to_vec(), false));
        assert_eq!(got[2], (b"this datagram is".to_vec(), true));
    }

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
