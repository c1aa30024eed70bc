//! Kernel receive drops for our own UDP sockets, read from the `drops` column of
//! `/proc/net/udp` and `/proc/net/udp6` by socket inode. Runs on the flush thread once per
//! flush (a few KB of text), never on the ingest thread.
//!
//! The kernel builds those tables a page at a time and does not hold them still between reads:
//! a socket closed elsewhere meanwhile can make a row that exists go missing from one read. So
//! each watched socket keeps its own last count, and a socket missing from a read counts no
//! increase and keeps its last count until it shows again (rather than dropping the total and
//! counting every earlier drop again when it comes back).

use std::os::fd::AsRawFd;

/// Tracks the cumulative drops of a set of sockets and reports the increase per call.
pub struct KernelDrops {
    /// Each watched socket's inode and the cumulative drops last read for it (`None` until a
    /// read finds its row).
    sockets: Vec<(u64, Option<u64>)>,
}

impl KernelDrops {
    /// Watches the sockets behind these file descriptors.
    pub fn new(fds: &[&dyn AsRawFd]) -> KernelDrops {
        let sockets = fds.iter().filter_map(|fd| socket_inode(fd.as_raw_fd())).map(|i| (i, None)).collect();
        let mut d = KernelDrops { sockets };
        d.since_last();
        d
    }

    /// Drops since the previous call (or since creation).
    pub fn since_last(&mut self) -> u64 {
        if self.sockets.is_empty() {
            return 0;
        }
        let tables: Vec<String> = ["/proc/net/udp", "/proc/net/udp6"]
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .collect();
        self.update(&tables)
    }

    /// Takes the rows of the watched sockets from these tables; returns the increase.
    fn update(&mut self, tables: &[String]) -> u64 {
        let mut delta = 0;
        for (inode, last) in &mut self.sockets {
            let Some(now) = tables.iter().find_map(|t| drops_of(t, *inode)) else { continue };
            delta += last.map_or(0, |l| now.saturating_sub(l));
            *last = Some(now);
        }
        delta
    }
}

/// The inode of a socket fd, from the `socket:[N]` link in /proc/self/fd.
fn socket_inode(fd: i32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    let s = link.to_str()?;
    s.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// The `drops` column (the last) of the row whose `inode` column (the 10th) is this one.
fn drops_of(table: &str, inode: u64) -> Option<u64> {
    table.lines().skip(1).find_map(|row| {
        let cols: Vec<&str> = row.split_whitespace().collect();
        (cols.get(9)?.parse::<u64>().ok()? == inode).then(|| cols.last()?.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_proc_table() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  120: 0100007F:1FBD 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 41234 2 0000000000000000 17\n\
  121: 0100007F:1FBE 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 41235 2 0000000000000000 5\n";
        assert_eq!(drops_of(table, 41234), Some(17));
        assert_eq!(drops_of(table, 41235), Some(5));
        assert_eq!(drops_of(table, 1), None);
    }

    /// A row missing from one read (the kernel's table changed under the reader) counts nothing
    /// and, when it is back, only what is new: earlier drops are never counted twice.
    #[test]
    fn a_row_missing_from_one_read_is_not_counted_again() {
        // A table with a row (inode, drops) per socket.
        let table = |rows: &[(u64, u64)]| {
            let mut t = String::from("header\n");
            for (inode, drops) in rows {
                t += &format!("  1: 0100007F:1FBD 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 {inode} 2 0 {drops}\n");
            }
            t
        };
        let mut d = KernelDrops { sockets: vec![(7, None), (8, None)] };
        assert_eq!(d.update(&[table(&[(7, 100), (8, 40)])]), 0, "the first read is the baseline");
        assert_eq!(d.update(&[table(&[(7, 130)])]), 30, "socket 8 missing: nothing counted for it");
        assert_eq!(d.update(&[table(&[(7, 130), (8, 45)])]), 5, "socket 8 back: only its new drops");
        assert_eq!(d.update(&[table(&[])]), 0);
    }

    #[test]
    fn finds_a_real_socket() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut d = KernelDrops::new(&[&s]);
        assert_eq!(d.sockets.len(), 1, "inode of a live socket");
        assert!(d.sockets[0].1.is_some(), "its row is found");
        assert_eq!(d.since_last(), 0);
    }
}
