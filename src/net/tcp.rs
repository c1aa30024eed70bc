//! Stream inputs: binding a TCP listener (socket2), and the newline framing shared by TCP and
//! Unix stream connections (the choice between it and length-prefixed frames is in
//! [`super::framing`]). The listener is bound on the main thread at start-up (or on the
//! ingest thread at a reload); the framing runs on the ingest thread for every read.
//!
//! Framing essay. A read hands us an arbitrary slice of the stream: it may end in the middle of
//! a line, hold many lines, or be a piece of one very long line. Complete lines are handed to the
//! caller straight from the read buffer (no copy). Only the unfinished tail is copied, into the
//! connection's own `carry` buffer, and completed with the head of the next read. A line longer
//! than `max_line` is never buffered whole: as soon as it is known to be too long it is reported
//! once (the caller counts it), its bytes are discarded, and the connection skips to the next
//! newline, where framing resumes. So a connection holds at most `max_line` bytes, whatever the
//! peer sends, and `carry` stops allocating once it reached the longest partial line seen.

use super::framing::Framed;
use memchr::{memchr, memrchr};
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;

/// The framing state of one stream connection.
#[derive(Debug, Default)]
pub struct LineFramer {
    carry: Vec<u8>,
    skipping: bool,
}

impl LineFramer {
    /// Feeds the next bytes of the stream; calls `out` for every complete (or dropped) line.
    pub fn feed(&mut self, mut data: &[u8], max_line: usize, out: &mut impl FnMut(Framed<'_>)) {
        if self.skipping {
            match memchr(b'\n', data) {
                None => return,
                Some(i) => {
                    data = &data[i + 1..];
                    self.skipping = false;
                }
            }
        }
        if !self.carry.is_empty() {
            match memchr(b'\n', data) {
                None => {
                    if self.carry.len() + data.len() > max_line {
                        self.drop_line(out);
                    } else {
                        self.carry.extend_from_slice(data);
                    }
                    return;
                }
                Some(i) => {
                    if self.carry.len() + i > max_line {
                        out(Framed::TooLong);
                    } else {
                        self.carry.extend_from_slice(&data[..i]);
                        out(Framed::Line(&self.carry));
                    }
                    self.carry.clear();
                    data = &data[i + 1..];
                }
            }
        }
        let tail_start = match memrchr(b'\n', data) {
            Some(last) => {
                for line in data[..last].split(|&b| b == b'\n') {
                    out(if line.len() > max_line { Framed::TooLong } else { Framed::Line(line) });
                }
                last + 1
            }
            None => 0,
        };
        let tail = &data[tail_start..];
        if tail.len() > max_line {
            self.drop_line(out);
        } else {
            self.carry.extend_from_slice(tail);
        }
    }

    /// The end of the stream: an unfinished last line still counts (`printf 'a:1|c' | nc`).
    pub fn finish(&mut self, out: &mut impl FnMut(Framed<'_>)) {
        if !self.skipping && !self.carry.is_empty() {
            out(Framed::Line(&self.carry));
        }
        self.carry.clear();
        self.skipping = false;
    }

    fn drop_line(&mut self, out: &mut impl FnMut(Framed<'_>)) {
        out(Framed::TooLong);
        self.carry.clear();
        self.skipping = true;
    }
}

/// Binds a non-blocking TCP listener (`SO_REUSEADDR`, so a restart does not wait for
/// TIME_WAIT) with a backlog of 1024.
pub fn bind_listener(addr: SocketAddr) -> io::Result<(mio::net::TcpListener, SocketAddr)> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    let local = socket.local_addr()?.as_socket().unwrap_or(addr);
    let std_listener: std::net::TcpListener = socket.into();
    Ok((mio::net::TcpListener::from_std(std_listener), local))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` and returns what came out, `None` standing for a dropped line.
    fn frame(chunks: &[&[u8]], max: usize) -> Vec<Option<String>> {
        let mut f = LineFramer::default();
        let mut got = Vec::new();
        let mut out = |x: Framed<'_>| {
            got.push(match x {
                Framed::Line(l) => Some(String::from_utf8_lossy(l).into_owned()),
                Framed::TooLong => None,
                other => panic!("a line framer handed over {other:?}"),
            })
        };
        for c in chunks {
            f.feed(c, max, &mut out);
        }
        f.finish(&mut out);
        got
    }

    fn lines(v: &[&str]) -> Vec<Option<String>> {
        v.iter().map(|s| Some(s.to_string())).collect()
    }

    #[test]
    fn lines_split_across_reads_are_joined() {
        assert_eq!(frame(&[b"a:1|c\nb:", b"2|c\nc:3", b"|c\n"], 100), lines(&["a:1|c", "b:2|c", "c:3|c"]));
        assert_eq!(frame(&[b"a", b":", b"1", b"|c", b"\n"], 100), lines(&["a:1|c"]));
        assert_eq!(frame(&[b"a:1|c"], 100), lines(&["a:1|c"]), "the last line counts at EOF");
        assert_eq!(frame(&[b"\n\n"], 100), lines(&["", ""]), "empty lines are the caller's business");
    }

    #[test]
    fn over_long_lines_are_dropped_once_and_framing_resumes_after_the_next_newline() {
        // inside one read
        assert_eq!(frame(&[b"0123456789\nok\n"], 5), vec![None, Some("ok".into())]);
        // a tail too long to keep, then more of it, then its end and a good line
        assert_eq!(
            frame(&[b"ok\n0123456", b"789", b"xx\nfine\n"], 5),
            vec![Some("ok".into()), None, Some("fine".into())]
        );
        // a carry that grows past the limit
        assert_eq!(frame(&[b"012", b"345", b"6\nok\n"], 5), vec![None, Some("ok".into())]);
        // a carry completed past the limit
        assert_eq!(frame(&[b"0123", b"45\nok\n"], 5), vec![None, Some("ok".into())]);
        // exactly max is fine
        assert_eq!(frame(&[b"012", b"34\n"], 5), lines(&["01234"]));
        // a dropped line never ends: nothing more comes out, not even at EOF
        assert_eq!(frame(&[b"0123456789", b"abc"], 5), vec![None]);
    }

    #[test]
    fn framing_matches_a_reference_for_every_split() {
        let text = b"a:1|c\nlong_line_here:1|c\nb:2|ms\n\nc:3|g\nd";
        let max = 10;
        let want = frame(&[text], max);
        assert_eq!(
            want,
            vec![
                Some("a:1|c".into()),
                None,
                Some("b:2|ms".into()),
                Some("".into()),
                Some("c:3|g".into()),
                Some("d".into())
            ]
        );
        for i in 0..text.len() {
            for j in i..text.len() {
                assert_eq!(frame(&[&text[..i], &text[i..j], &text[j..]], max), want, "split at {i}, {j}");
            }
        }
    }
}
