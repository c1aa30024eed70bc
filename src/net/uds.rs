//! Unix domain socket inputs: a datagram socket (fed like UDP, the way DogStatsD sidecars are
//! fed) and a stream listener (fed like TCP). Binding runs on the main thread at start-up (or on
//! the ingest thread at a reload); the sockets are then owned by the ingest thread.
//!
//! A socket file left behind by a process that died is replaced: before binding, an existing
//! path is probed by connecting to it, and only a socket nobody answers on
//! (`ECONNREFUSED`) is removed. A live socket, or a path that is not a socket at all, is an
//! error, never deleted. The file gets the configured mode after `bind`, and is removed again
//! when the daemon lets go of it (if it is still the same file).

use socket2::{Domain, SockAddr, Socket, Type};
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The socket file of a bound Unix socket; removes it on drop, unless someone replaced it.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    inode: (u64, u64),
}

impl SocketFile {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(m) = fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == self.inode {
                let _ = fs::remove_file(&self.path);
            }
        }
    }
}

/// Binds a non-blocking Unix datagram socket at `path` with the requested receive buffer.
pub fn bind_dgram(
    path: &Path,
    mode: u32,
    recv_buffer: usize,
) -> io::Result<(mio::net::UnixDatagram, SocketFile)> {
    clear_stale(path, Type::DGRAM)?;
    let socket = Socket::new(Domain::UNIX, Type::DGRAM, None)?;
    socket.set_nonblocking(true)?;
    if crate::sys::set_rcvbufforce(&socket, recv_buffer).is_err() {
        let _ = socket.set_recv_buffer_size(recv_buffer);
    }
    socket.bind(&SockAddr::unix(path)?)?;
    let file = finish_bind(path, mode)?;
    let std_socket: std::os::unix::net::UnixDatagram = std::os::fd::OwnedFd::from(socket).into();
    Ok((mio::net::UnixDatagram::from_std(std_socket), file))
}

/// Binds a non-blocking Unix stream listener at `path`.
pub fn bind_stream(path: &Path, mode: u32) -> io::Result<(mio::net::UnixListener, SocketFile)> {
    clear_stale(path, Type::STREAM)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SockAddr::unix(path)?)?;
    socket.listen(1024)?;
    let file = finish_bind(path, mode)?;
    let std_listener: std::os::unix::net::UnixListener = std::os::fd::OwnedFd::from(socket).into();
    Ok((mio::net::UnixListener::from_std(std_listener), file))
}

fn finish_bind(path: &Path, mode: u32) -> io::Result<SocketFile> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    let m = fs::symlink_metadata(path)?;
    Ok(SocketFile { path: path.to_path_buf(), inode: (m.dev(), m.ino()) })
}

/// Removes `path` if it is a socket file nobody listens on; errors if it is anything else.
fn clear_stale(path: &Path, ty: Type) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
        Ok(m) => m,
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket; not replacing it", path.display()),
        ));
    }
    let probe = Socket::new(Domain::UNIX, ty, None)?;
    match probe.connect(&SockAddr::unix(path)?) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            log::info!("{}: replacing a stale socket file", path.display());
            fs::remove_file(path)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Ok(()) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{}: another process is listening on this socket", path.display()),
        )),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: in use ({e})", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kstatsd-uds-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir.join("s.sock")
    }

    #[test]
    fn a_stale_socket_file_is_replaced_a_live_one_or_a_plain_file_is_not() {
        let path = tmp("stale");
        // a stale file: bound once, then the socket closed without removing the file
        drop(std::os::unix::net::UnixDatagram::bind(&path).unwrap());
        assert!(path.exists());
        let (_s, file) = bind_dgram(&path, 0o640, 1 << 16).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
        // live now: a second bind is refused and leaves it alone
        let e = bind_dgram(&path, 0o640, 1 << 16).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
        assert!(path.exists());
        drop(file);
        assert!(!path.exists(), "removed when let go");

        let plain = tmp("plain");
        fs::write(&plain, b"not a socket").unwrap();
        assert!(bind_stream(&plain, 0o600).is_err());
        assert_eq!(fs::read(&plain).unwrap(), b"not a socket");
    }

    #[test]
    fn stream_listener_replaces_a_stale_file_and_accepts() {
        let path = tmp("stream");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let (l, _file) = bind_stream(&path, 0o600).unwrap();
        // A Unix stream connect is queued on the listener before it returns.
        let _c = std::os::unix::net::UnixStream::connect(&path).unwrap();
        l.accept().unwrap();
    }
}
