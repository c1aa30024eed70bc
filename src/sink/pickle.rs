//! A small pickle encoder for carbon's pickle receiver: frames of `[(path, (timestamp, value)),
//! …]`, each a 4-byte big-endian length and then a protocol-2 pickle that uses only lists,
//! tuples, str, int and float, so that carbon's safe unpickler accepts it. Runs on the flush
//! thread, writing straight into the Graphite sink's reused buffer.
//!
//! Opcodes used (all in pickle protocol 2, read by every Python 3 carbon):
//! `\x80\x02` PROTO 2, `]` EMPTY_LIST, `(` MARK, `X` BINUNICODE (u32 little-endian length and
//! UTF-8 bytes), `J` BININT (i32 little-endian), `\x8a` LONG1 (for timestamps past 2038),
//! `G` BINFLOAT (f64 big-endian), `\x86` TUPLE2, `e` APPENDS, `.` STOP. No memo, no classes.
//!
//! Carbon (Twisted's `Int32StringReceiver`) drops the connection on a frame longer than
//! `PICKLE_RECEIVER_MAX_LENGTH` (1 MiB by default), so a flush is split into as many frames as
//! it takes, each kept strictly under [`MAX_FRAME`].

/// Largest pickle payload we write in one frame (the 4-byte length excluded): one byte under
/// carbon's default `PICKLE_RECEIVER_MAX_LENGTH` of 1 MiB.
pub const MAX_FRAME: usize = (1 << 20) - 1;

/// Frame header + list start: length (4), PROTO 2 (2), EMPTY_LIST, MARK.
const HEAD: usize = 4 + 2 + 1 + 1;
/// APPENDS, STOP.
const TAIL: usize = 2;

/// The bytes one `(path, (timestamp, value))` item takes at most.
fn item_len(path: &str) -> usize {
    // X + len + bytes, LONG1 (at most 2 + 9 bytes), G + 8, TUPLE2 twice
    5 + path.len() + 11 + 9 + 2
}

/// Writes a sequence of frames into an output buffer. `begin`, then `push` each point, then
/// `finish`; the buffer then holds zero or more complete frames back to back.
#[derive(Debug)]
pub struct FrameWriter {
    limit: usize,
    /// Offset of the current frame's length prefix in the buffer.
    start: usize,
    items: usize,
    frames: usize,
}

impl FrameWriter {
    /// Frames whose pickle payload stays under `limit` bytes (at most [`MAX_FRAME`]).
    pub fn new(limit: usize) -> FrameWriter {
        FrameWriter { limit: limit.clamp(64, MAX_FRAME), start: 0, items: 0, frames: 0 }
    }

    /// Whether a point with this path can be written at all (it fits in an empty frame).
    pub fn fits(&self, path: &str) -> bool {
        HEAD - 4 + item_len(path) + TAIL <= self.limit
    }

    /// Starts the first frame at the end of `out`.
    pub fn begin(&mut self, out: &mut Vec<u8>) {
        self.frames = 0;
        self.open(out);
    }

    fn open(&mut self, out: &mut Vec<u8>) {
        self.start = out.len();
        self.items = 0;
        out.extend_from_slice(&[0, 0, 0, 0, 0x80, 2, b']', b'(']);
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if self.items == 0 {
            out.truncate(self.start);
            return;
        }
        out.extend_from_slice(b"e.");
        let len = (out.len() - self.start - 4) as u32;
        out[self.start..self.start + 4].copy_from_slice(&len.to_be_bytes());
        self.frames += 1;
    }

    /// Appends one point, starting a new frame when this one would grow past the limit.
    /// Returns false (and writes nothing) when the path alone cannot fit in a frame.
    pub fn push(&mut self, out: &mut Vec<u8>, path: &str, timestamp: u64, value: f64) -> bool {
        if !self.fits(path) {
            return false;
        }
        if out.len() - self.start - 4 + item_len(path) + TAIL > self.limit {
            self.close(out);
            self.open(out);
        }
        out.push(b'X');
        out.extend_from_slice(&(path.len() as u32).to_le_bytes());
        out.extend_from_slice(path.as_bytes());
        write_int(out, timestamp);
        out.push(b'G');
        out.extend_from_slice(&value.to_be_bytes());
        out.extend_from_slice(&[0x86, 0x86]);
        self.items += 1;
        true
    }

    /// Closes the last frame (an empty one is removed). Returns the number of frames written.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> usize {
        self.close(out);
        self.frames
    }
}

/// A non-negative int: BININT when it fits in an i32, LONG1 otherwise (little-endian two's
/// complement, with a zero top byte so it reads as positive).
fn write_int(out: &mut Vec<u8>, v: u64) {
    if v <= i32::MAX as u64 {
        out.push(b'J');
        out.extend_from_slice(&(v as i32).to_le_bytes());
    } else {
        let bytes = v.to_le_bytes();
        let mut n = 8 - (v.leading_zeros() as usize / 8);
        if bytes[n - 1] & 0x80 != 0 {
            n += 1;
        }
        out.extend_from_slice(&[0x8a, n as u8]);
        out.extend_from_slice(&bytes[..n.min(8)]);
        if n == 9 {
            out.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader for exactly the opcodes above: the frames back as (path, timestamp, value).
    fn read_frames(mut buf: &[u8]) -> Vec<Vec<(String, u64, f64)>> {
        let mut frames = Vec::new();
        while !buf.is_empty() {
            let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
            let mut p = &buf[4..4 + len];
            buf = &buf[4 + len..];
            assert_eq!(&p[..4], &[0x80, 2, b']', b'(']);
            p = &p[4..];
            let mut items = Vec::new();
            while p[0] == b'X' {
                let n = u32::from_le_bytes(p[1..5].try_into().unwrap()) as usize;
                let path = std::str::from_utf8(&p[5..5 + n]).unwrap().to_string();
                p = &p[5 + n..];
                let ts = match p[0] {
                    b'J' => {
                        let v = i32::from_le_bytes(p[1..5].try_into().unwrap()) as u64;
                        p = &p[5..];
                        v
                    }
                    0x8a => {
                        let n = p[1] as usize;
                        let mut b = [0u8; 16];
                        b[..n].copy_from_slice(&p[2..2 + n]);
                        p = &p[2 + n..];
                        u128::from_le_bytes(b) as u64
                    }
                    op => panic!("unexpected opcode {op:#x}"),
                };
                assert_eq!(p[0], b'G');
                let v = f64::from_be_bytes(p[1..9].try_into().unwrap());
                assert_eq!(&p[9..11], &[0x86, 0x86]);
                p = &p[11..];
                items.push((path, ts, v));
            }
            assert_eq!(p, b"e.");
            frames.push(items);
        }
        frames
    }

    #[test]
    fn one_frame_reads_back() {
        let mut out = b"keep".to_vec();
        let mut w = FrameWriter::new(MAX_FRAME);
        w.begin(&mut out);
        assert!(w.push(&mut out, "a.b", 1_700_000_000, 1.5));
        assert!(w.push(&mut out, "c;k=v", 1_700_000_000, -0.0));
        assert_eq!(w.finish(&mut out), 1);
        assert_eq!(&out[..4], b"keep");
        let frames = read_frames(&out[4..]);
        assert_eq!(
            frames,
            vec![vec![("a.b".into(), 1_700_000_000, 1.5), ("c;k=v".into(), 1_700_000_000, -0.0)]]
        );
    }

    #[test]
    fn nothing_pushed_writes_nothing() {
        let mut out = Vec::new();
        let mut w = FrameWriter::new(MAX_FRAME);
        w.begin(&mut out);
        assert_eq!(w.finish(&mut out), 0);
        assert!(out.is_empty());
    }

    #[test]
    fn frames_split_under_the_limit_and_keep_every_point() {
        let mut out = Vec::new();
        let mut w = FrameWriter::new(300);
        w.begin(&mut out);
        let mut sent = Vec::new();
        for i in 0..100u64 {
            let path = format!("stats.timers.api.{i}.upper_90");
            assert!(w.push(&mut out, &path, 4_000_000_000 + i, i as f64 / 3.0));
            sent.push((path, 4_000_000_000 + i, i as f64 / 3.0));
        }
        let n = w.finish(&mut out);
        let frames = read_frames(&out);
        assert_eq!(frames.len(), n);
        assert!(n > 10, "{n}");
        // every frame under the limit
        let mut at = 0;
        while at < out.len() {
            let len = u32::from_be_bytes(out[at..at + 4].try_into().unwrap()) as usize;
            assert!(len <= 300, "{len}");
            at += 4 + len;
        }
        assert_eq!(frames.concat(), sent);
    }

    #[test]
    fn a_path_too_long_for_any_frame_is_refused() {
        let mut out = Vec::new();
        let mut w = FrameWriter::new(100);
        w.begin(&mut out);
        assert!(!w.push(&mut out, &"x".repeat(200), 1, 1.0));
        assert!(w.push(&mut out, "ok", 1, 1.0));
        assert_eq!(w.finish(&mut out), 1);
        assert_eq!(read_frames(&out), vec![vec![("ok".to_string(), 1, 1.0)]]);
    }

    #[test]
    fn ints_use_bininit_then_long1() {
        for v in [0u64, 1, 255, i32::MAX as u64, 1 << 31, 1 << 40, u64::MAX >> 1, u64::MAX] {
            let mut out = Vec::new();
            write_int(&mut out, v);
            let back = match out[0] {
                b'J' => i32::from_le_bytes(out[1..5].try_into().unwrap()) as u64,
                0x8a => {
                    let n = out[1] as usize;
                    assert_eq!(out.len(), 2 + n);
                    assert_eq!(out[1 + n] & 0x80, 0, "positive");
                    let mut b = [0u8; 16];
                    b[..n].copy_from_slice(&out[2..]);
                    u128::from_le_bytes(b) as u64
                }
                _ => unreachable!(),
            };
            assert_eq!(back, v);
        }
    }
}
