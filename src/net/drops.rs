//! Kernel receive drops for our own UDP sockets, read from the `drops` column of
//! `/proc/net/udp` and `/proc/net/udp6` by socket inode. Runs on the flush thread once per
//! flush (a few KB of text), never on the ingest thread.

use std::os::fd::AsRawFd;

/// Tracks the cumulative drops of a set of sockets and reports the increase per call.
pub struct KernelDrops {
    inodes: Vec<u64>,
    last: u64,
}

impl KernelDrops {
    /// Watches the sockets behind these file descriptors.
    pub fn new(fds: &[&dyn AsRawFd]) -> KernelDrops {
        let inodes = fds.iter().filter_map(|fd| socket_inode(fd.as_raw_fd())).collect();
        let mut d = KernelDrops { inodes, last: 0 };
        d.last = d.total();
        d
    }

    /// Drops since the previous call (or since creation).
    pub fn since_last(&mut self) -> u64 {
        let now = self.total();
        let delta = now.saturating_sub(self.last);
        self.last = now;
        delta
    }

    /// Cumulative drops of the watched sockets, as the kernel reports them now.
    pub fn total(&self) -> u64 {
        if self.inodes.is_empty() {
            return 0;
        }
        ["/proc/net/udp", "/proc/net/udp6"]
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .map(|text| drops_in(&text, &self.inodes))
            .sum()
    }
}

/// The inode of a socket fd, from the `socket:[N]` link in /proc/self/fd.
fn socket_inode(fd: i32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    let s = link.to_str()?;
    s.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// Sums the `drops` column (the last) of the rows whose `inode` column (the 10th) is watched.
fn drops_in(table: &str, inodes: &[u64]) -> u64 {
    table
        .lines()
        .skip(1)
        .filter_map(|row| {
            let cols: Vec<&str> = row.split_whitespace().collect();
            let inode: u64 = cols.get(9)?.parse().ok()?;
            let drops: u64 = cols.last()?.parse().ok()?;
            inodes.contains(&inode).then_some(drops)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_proc_table() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  120: 0100007F:1FBD 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 41234 2 0000000000000000 17\n\
  121: 0100007F:1FBE 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 41235 2 0000000000000000 5\n";
        assert_eq!(drops_in(table, &[41234]), 17);
        assert_eq!(drops_in(table, &[41234, 41235]), 22);
        assert_eq!(drops_in(table, &[1]), 0);
    }

    #[test]
    fn finds_a_real_socket() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut d = KernelDrops::new(&[&s]);
        assert_eq!(d.inodes.len(), 1, "inode of a live socket");
        assert_eq!(d.since_last(), 0);
    }
}
