//! Every `unsafe` of the perf tools lives here, and nowhere else: the `sendmmsg` send pool used by
//! `loadgen`, the `recvmmsg` receive batch used by `nullrecv`, socket-buffer options, CPU
//! pinning (`sched_setaffinity`), the SIGTERM/SIGINT stop flag and `getrusage`. Each tool is
//! single-threaded, so all of this runs on the one thread of the tool that calls it. The types
//! here hold raw pointers into their own heap buffers; those buffers are allocated once, never
//! resized afterwards, and live exactly as long as the pointers that refer to them.

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::RawFd;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

/// Largest `vlen` the kernel accepts in one `sendmmsg`/`recvmmsg` call (it silently caps at
/// `UIO_MAXIOV`); we refuse larger batches instead of pretending to send them.
pub const MAX_BATCH: usize = 1024;

/// Pins the calling thread to one CPU.
pub fn pin_to_core(core: usize) -> io::Result<()> {
    if core >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "core index out of range"));
    }
    // SAFETY: `cpu_set_t` is a plain bitmask of integers; all-zero is the valid empty set.
    let mut set: libc::cpu_set_t = unsafe { zeroed() };
    // SAFETY: `core < CPU_SETSIZE` was checked above, so the bit is inside `set`.
    unsafe { libc::CPU_SET(core, &mut set) };
    // SAFETY: pid 0 means the calling thread; `set` is an initialised `cpu_set_t` and we pass
    // its exact size, so the kernel reads only memory we own.
    let rc = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn set_int_opt(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` is a live `c_int` on our stack and we pass its exact size; `fd` is a
    // socket owned by the caller for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn get_int_opt(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are live locals; `len` tells the kernel it may write at most
    // `size_of::<c_int>()` bytes into `value`.
    let rc = unsafe { libc::getsockopt(fd, level, name, (&mut value as *mut libc::c_int).cast(), &mut len) };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets the receive buffer to `bytes`. Tries `SO_RCVBUFFORCE` first (root only, bypasses
/// `net.core.rmem_max`), falls back to `SO_RCVBUF` (silently capped at `rmem_max`).
/// Returns what the kernel reports afterwards (twice the usable size, as Linux books it) and
/// whether the forced variant worked.
pub fn set_rcvbuf(fd: RawFd, bytes: usize) -> io::Result<(usize, bool)> {
    let want = bytes.min(libc::c_int::MAX as usize) as libc::c_int;
    let forced = set_int_opt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, want).is_ok();
    if !forced {
        set_int_opt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, want)?;
    }
    Ok((rcvbuf(fd)?, forced))
}

/// The socket's current `SO_RCVBUF` as the kernel reports it.
pub fn rcvbuf(fd: RawFd) -> io::Result<usize> {
    Ok(get_int_opt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF)?.max(0) as usize)
}

/// A fixed pool of pre-built datagrams with one `mmsghdr` per datagram, so the send loop hands
/// the kernel a slice of ready headers and does no formatting and no allocation.
pub struct SendPool {
    // Field order matters only for readability: nothing here is dropped while another field
    // still points into it, because all three are dropped together.
    data: Vec<u8>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl SendPool {
    /// `data` holds every datagram back to back; `bounds[i]` is datagram `i`'s byte range.
    pub fn new(data: Vec<u8>, bounds: &[(usize, usize)]) -> SendPool {
        for &(start, end) in bounds {
            assert!(start <= end && end <= data.len(), "datagram bound outside the pool");
        }
        let mut pool =
            SendPool { data, iovs: Vec::with_capacity(bounds.len()), hdrs: Vec::with_capacity(bounds.len()) };
        let base = pool.data.as_mut_ptr();
        for &(start, end) in bounds {
            pool.iovs.push(libc::iovec {
                // SAFETY: `start <= data.len()` was asserted above, so the offset stays inside
                // (or one past the end of) the allocation. `data` is never resized again.
                iov_base: unsafe { base.add(start) }.cast(),
                iov_len: end - start,
            });
        }
        let iov_base = pool.iovs.as_mut_ptr();
        for i in 0..bounds.len() {
            // SAFETY: `mmsghdr` is plain integers and pointers; all-zero is a valid "no name, no
            // control data, no flags" header that we then fill in.
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            // SAFETY: `i < iovs.len()` (one iovec per bound), and `iovs` is never resized again.
            h.msg_hdr.msg_iov = unsafe { iov_base.add(i) };
            h.msg_hdr.msg_iovlen = 1;
            pool.hdrs.push(h);
        }
        pool
    }

    /// Number of datagrams in the pool.
    pub fn len(&self) -> usize {
        self.hdrs.len()
    }

    /// True when the pool holds no datagram.
    pub fn is_empty(&self) -> bool {
        self.hdrs.is_empty()
    }

    /// Sends datagrams `start..start + n` on the connected socket `fd` with one `sendmmsg`.
    /// Returns how many the kernel took (it may take fewer than `n`).
    pub fn send(&mut self, fd: RawFd, start: usize, n: usize) -> io::Result<usize> {
        assert!(
            n <= MAX_BATCH && start <= self.hdrs.len() && n <= self.hdrs.len() - start,
            "batch outside the pool"
        );
        if n == 0 {
            return Ok(0);
        }
        // SAFETY: `start..start + n` is inside `hdrs` (asserted above); every header points at
        // one live iovec, which points at bytes inside `data`; the socket is connected, so no
        // `msg_name` is needed. The kernel only writes `msg_len` in these headers.
        let rc = unsafe { libc::sendmmsg(fd, self.hdrs.as_mut_ptr().add(start), n as _, 0) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc as usize)
        }
    }
}

/// One batch of receive buffers with their `mmsghdr`s, filled by one non-blocking `recvmmsg`.
pub struct RecvBatch {
    bufs: Vec<u8>,
    buf_size: usize,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    filled: usize,
}

impl RecvBatch {
    /// `batch` buffers (1..=`MAX_BATCH`) of `buf_size` bytes each, allocated once.
    pub fn new(batch: usize, buf_size: usize) -> RecvBatch {
        assert!((1..=MAX_BATCH).contains(&batch) && buf_size > 0, "bad batch shape");
        let mut rb = RecvBatch {
            bufs: vec![0u8; batch * buf_size],
            buf_size,
            iovs: Vec::with_capacity(batch),
            hdrs: Vec::with_capacity(batch),
            filled: 0,
        };
        let base = rb.bufs.as_mut_ptr();
        for i in 0..batch {
            rb.iovs.push(libc::iovec {
                // SAFETY: `i * buf_size + buf_size <= bufs.len()`, so the slot is inside the
                // allocation, which is never resized again.
                iov_base: unsafe { base.add(i * buf_size) }.cast(),
                iov_len: buf_size,
            });
        }
        let iov_base = rb.iovs.as_mut_ptr();
        for i in 0..batch {
            // SAFETY: all-zero is a valid empty `mmsghdr` (null name and control, no flags).
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            // SAFETY: `i < iovs.len()`, and `iovs` is never resized again.
            h.msg_hdr.msg_iov = unsafe { iov_base.add(i) };
            h.msg_hdr.msg_iovlen = 1;
            rb.hdrs.push(h);
        }
        rb
    }

    /// One `recvmmsg(MSG_DONTWAIT)` with a null timeout. Returns the number of datagrams
    /// received; `Err(WouldBlock)` when the socket is empty.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.filled = 0;
        // SAFETY: every header points at one live iovec over a `buf_size` slot inside `bufs`;
        // `vlen` is exactly `hdrs.len()`; the kernel writes at most `iov_len` bytes per slot and
        // the `msg_len`/`msg_flags` fields of the headers. A null timeout is allowed.
        let rc = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as _,
                libc::MSG_DONTWAIT as _,
                ptr::null_mut(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        self.filled = (rc as usize).min(self.hdrs.len());
        Ok(self.filled)
    }

    /// Datagram `i` of the last `recv` (only `i <` the count it returned is meaningful).
    pub fn datagram(&self, i: usize) -> &[u8] {
        assert!(i < self.filled, "datagram index past the last batch");
        let len = (self.hdrs[i].msg_len as usize).min(self.buf_size);
        let start = i * self.buf_size;
        &self.bufs[start..start + len]
    }

    /// Whether datagram `i` of the last `recv` was longer than its buffer.
    pub fn truncated(&self, i: usize) -> bool {
        assert!(i < self.filled, "datagram index past the last batch");
        self.hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_sig: libc::c_int) {
    // Async-signal-safe: one atomic store.
    STOP.store(true, Ordering::Relaxed);
}

/// Makes SIGTERM and SIGINT set a flag read by `stop_requested` instead of killing the process.
pub fn install_stop_handler() -> io::Result<()> {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: all-zero `sigaction` is a valid "no flags, empty mask" value we then fill.
        let mut sa: libc::sigaction = unsafe { zeroed() };
        sa.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESTART;
        // SAFETY: `sa` is fully initialised, the handler only does an atomic store (async-signal
        // safe), and a null old-action pointer is allowed.
        let rc = unsafe { libc::sigaction(sig, &sa, ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// True once SIGTERM or SIGINT arrived (after `install_stop_handler`).
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// User and system CPU seconds used by this process so far.
pub fn self_cpu_seconds() -> (f64, f64) {
    // SAFETY: all-zero `rusage` is valid plain data; `getrusage` fills it.
    let mut ru: libc::rusage = unsafe { zeroed() };
    // SAFETY: `ru` is a live, writable `rusage`.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return (0.0, 0.0);
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (tv(ru.ru_utime), tv(ru.ru_stime))
}
