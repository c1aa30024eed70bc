//! How a stream connection (TCP, Unix stream) is cut into pieces: newline-terminated lines, or
//! DogStatsD's length-prefixed frames (each payload after a 4-byte little-endian length, what the
//! datadog clients send to a `unixstream://` socket), chosen per input (`tcp_framing`,
//! `unix_stream_framing`) or recognised from a connection's first four bytes. Runs on the ingest
//! thread for every read of a data connection.
//!
//! Detection essay. A frame's first four bytes are its length, little-endian; any payload under
//! 16 MiB has a zero top byte, so a length-prefixed connection has a NUL among its first four
//! bytes. Statsd text (and pystatsd JSON) never holds a NUL, so a newline connection never has
//! one there. Auto mode holds the first four bytes (in place: at most four, whatever the read
//! sizes) until it can tell, then hands them and everything after to the framer it chose, for
//! the rest of the connection.
//!
//! Frame essay. A frame that lies whole inside one read is handed to the caller straight from the
//! read buffer (no copy). Only a frame cut by the end of a read is copied into the connection's
//! `carry` buffer and completed with the next reads; `carry` stops growing once it held the
//! longest frame seen, so warm connections allocate nothing. A length over `max_frame` is
//! reported once (the caller counts it) and its payload skipped by count, so the frames after it
//! are still read. At the end of the stream a frame still incomplete (its header or its payload
//! cut) is handed over as [`Framed::TruncatedFrame`] with the bytes that did arrive.

use super::tcp::LineFramer;

/// What a framer hands its caller.
#[derive(Debug, PartialEq, Eq)]
pub enum Framed<'a> {
    /// A complete line without its `\n` (a `\r` before it is still there).
    Line(&'a [u8]),
    /// A line longer than `max_line` was dropped.
    TooLong,
    /// A complete frame's payload: one or more lines, like a datagram.
    Frame(&'a [u8]),
    /// A frame whose length is over `max_frame`: its payload is skipped.
    FrameTooLong,
    /// The stream ended inside a frame; the part of its payload that arrived (maybe empty).
    TruncatedFrame(&'a [u8]),
}

/// How the connections of one stream input are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// Recognised from each connection's first four bytes.
    #[default]
    Auto,
    /// Lines ended by `\n` (etsy statsd, every plain client).
    Newline,
    /// A 4-byte little-endian length before each payload (DogStatsD over Unix stream).
    LengthPrefix,
}

impl Framing {
    /// Reads a configuration value: `auto`, `newline` or `length_prefix`.
    pub fn parse(text: &str) -> Option<Framing> {
        match text.trim() {
            "auto" => Some(Framing::Auto),
            "newline" => Some(Framing::Newline),
            "length_prefix" => Some(Framing::LengthPrefix),
            _ => None,
        }
    }

    /// The configuration value that [`Framing::parse`] reads back.
    pub fn name(self) -> &'static str {
        match self {
            Framing::Auto => "auto",
            Framing::Newline => "newline",
            Framing::LengthPrefix => "length_prefix",
        }
    }
}

/// The limits a connection's framer applies.
#[derive(Debug, Clone, Copy)]
pub struct FrameLimits {
    /// Longest line (`max_line_bytes`).
    pub max_line: usize,
    /// Longest frame payload (`max_datagram`).
    pub max_frame: usize,
}

/// The framing state of one data connection.
#[derive(Debug)]
pub struct StreamFramer {
    mode: Mode,
    lines: LineFramer,
    frames: FrameReader,
}

#[derive(Debug)]
enum Mode {
    /// Auto, not decided yet: the first `len` bytes of the stream.
    Detect {
        head: [u8; 4],
        len: u8,
    },
    Lines,
    Frames,
}

impl StreamFramer {
    pub fn new(framing: Framing) -> StreamFramer {
        let mode = match framing {
            Framing::Auto => Mode::Detect { head: [0; 4], len: 0 },
            Framing::Newline => Mode::Lines,
            Framing::LengthPrefix => Mode::Frames,
        };
        StreamFramer { mode, lines: LineFramer::default(), frames: FrameReader::default() }
    }

    /// Feeds the next bytes of the stream; calls `out` for every piece it completes.
    #[inline]
    pub fn feed(&mut self, data: &[u8], limits: FrameLimits, out: &mut impl FnMut(Framed<'_>)) {
        match &mut self.mode {
            Mode::Lines => self.lines.feed(data, limits.max_line, out),
            Mode::Frames => self.frames.feed(data, limits.max_frame, out),
            Mode::Detect { head, len } => {
                let have = usize::from(*len);
                let take = (4 - have).min(data.len());
                head[have..have + take].copy_from_slice(&data[..take]);
                *len += take as u8;
                if *len < 4 {
                    return;
                }
                let head = *head;
                self.mode = if head.contains(&0) { Mode::Frames } else { Mode::Lines };
                if have == 0 {
                    // The whole head is in this read: framed in place like any later read.
                    self.feed(data, limits, out);
                } else {
                    // The head came in pieces: fed on its own (whatever it starts, a header or
                    // a line, is completed by what follows), then the rest of this read.
                    self.feed(&head, limits, out);
                    self.feed(&data[take..], limits, out);
                }
            }
        }
    }

    /// The end of the stream: an unfinished last line still counts, an unfinished frame is a
    /// [`Framed::TruncatedFrame`].
    pub fn finish(&mut self, limits: FrameLimits, out: &mut impl FnMut(Framed<'_>)) {
        if let Mode::Detect { head, len } = self.mode {
            // Under four bytes in all: a frame's header cut short, or a very short last line.
            let head = &head[..usize::from(len)];
            if head.contains(&0) {
                out(Framed::TruncatedFrame(&[]));
            } else {
                self.lines.feed(head, limits.max_line, out);
            }
        }
        self.lines.finish(out);
        self.frames.finish(out);
    }

    /// Whether this connection was recognised (or configured) as length-prefixed.
    pub fn is_framed(&self) -> bool {
        matches!(self.mode, Mode::Frames)
    }
}

/// Length-prefixed frames: a 4-byte little-endian payload length, then the payload.
#[derive(Debug, Default)]
struct FrameReader {
    state: FrameState,
    /// The payload of a frame cut by the end of a read.
    carry: Vec<u8>,
}

#[derive(Debug)]
enum FrameState {
    /// Between frames, or `len` bytes into a header.
    Header { head: [u8; 4], len: u8 },
    /// Inside a payload of `len` bytes (the first ones are in `carry`).
    Payload { len: usize },
    /// Skipping `left` more bytes of a payload that was too long.
    Skip { left: usize },
}

impl Default for FrameState {
    fn default() -> Self {
        FrameState::Header { head: [0; 4], len: 0 }
    }
}

impl FrameReader {
    fn feed(&mut self, mut data: &[u8], max_frame: usize, out: &mut impl FnMut(Framed<'_>)) {
        while !data.is_empty() {
            match &mut self.state {
                FrameState::Header { head, len } => {
                    let len32 = if *len == 0 && data.len() >= 4 {
                        // The usual case: the whole header is in this read.
                        let h = [data[0], data[1], data[2], data[3]];
                        data = &data[4..];
                        u32::from_le_bytes(h)
                    } else {
                        let have = usize::from(*len);
                        let take = (4 - have).min(data.len());
                        head[have..have + take].copy_from_slice(&data[..take]);
                        data = &data[take..];
                        *len += take as u8;
                        if *len < 4 {
                            return;
                        }
                        u32::from_le_bytes(*head)
                    };
                    let n = len32 as usize;
                    if n > max_frame {
                        out(Framed::FrameTooLong);
                        self.state = FrameState::Skip { left: n };
                    } else if data.len() >= n {
                        out(Framed::Frame(&data[..n]));
                        data = &data[n..];
                        self.state = FrameState::default();
                    } else {
                        self.carry.extend_from_slice(data);
                        self.state = FrameState::Payload { len: n };
                        return;
                    }
                }
                FrameState::Payload { len } => {
                    let need = *len - self.carry.len();
                    if data.len() < need {
                        self.carry.extend_from_slice(data);
                        return;
                    }
                    self.carry.extend_from_slice(&data[..need]);
                    data = &data[need..];
                    out(Framed::Frame(&self.carry));
                    self.carry.clear();
                    self.state = FrameState::default();
                }
                FrameState::Skip { left } => {
                    let n = (*left).min(data.len());
                    data = &data[n..];
                    *left -= n;
                    if *left == 0 {
                        self.state = FrameState::default();
                    }
                }
            }
        }
    }

    fn finish(&mut self, out: &mut impl FnMut(Framed<'_>)) {
        match self.state {
            FrameState::Header { len: 0, .. } | FrameState::Skip { .. } => {}
            FrameState::Header { .. } => out(Framed::TruncatedFrame(&[])),
            FrameState::Payload { .. } => out(Framed::TruncatedFrame(&self.carry)),
        }
        self.carry.clear();
        self.state = FrameState::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: FrameLimits = FrameLimits { max_line: 16, max_frame: 32 };

    /// What came out, as text: `L:line`, `F:payload`, `line_too_long`, `frame_too_long`,
    /// `T:part`.
    fn run(framing: Framing, chunks: &[&[u8]]) -> Vec<String> {
        let mut f = StreamFramer::new(framing);
        let mut got = Vec::new();
        let mut out = |x: Framed<'_>| {
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            got.push(match x {
                Framed::Line(l) => format!("L:{}", text(l)),
                Framed::TooLong => "line_too_long".into(),
                Framed::Frame(p) => format!("F:{}", text(p)),
                Framed::FrameTooLong => "frame_too_long".into(),
                Framed::TruncatedFrame(p) => format!("T:{}", text(p)),
            })
        };
        for c in chunks {
            f.feed(c, LIMITS, &mut out);
        }
        f.finish(LIMITS, &mut out);
        got
    }

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_le_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    fn frames(payloads: &[&[u8]]) -> Vec<u8> {
        payloads.iter().flat_map(|p| frame(p)).collect()
    }

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn frames_whole_in_one_read_and_the_settings_parse_back() {
        let s = frames(&[b"a:1|c", b"b:2|c\nc:3|ms", b""]);
        assert_eq!(run(Framing::LengthPrefix, &[&s]), strs(&["F:a:1|c", "F:b:2|c\nc:3|ms", "F:"]));
        for f in [Framing::Auto, Framing::Newline, Framing::LengthPrefix] {
            assert_eq!(Framing::parse(f.name()), Some(f));
        }
        assert_eq!(Framing::parse("length-prefix"), None);
    }

    #[test]
    fn every_split_of_a_framed_stream_gives_the_same_frames() {
        // a good frame, one over max_frame (33 bytes) whose payload is skipped, two more
        let long = [b'x'; 33];
        let s = frames(&[b"a:1|c\nb:2|c", &long, b"c:3|g", b"d:4|s"]);
        let want = strs(&["F:a:1|c\nb:2|c", "frame_too_long", "F:c:3|g", "F:d:4|s"]);
        for framing in [Framing::LengthPrefix, Framing::Auto] {
            assert_eq!(run(framing, &[&s]), want);
            for i in 0..=s.len() {
                for j in i..=s.len() {
                    assert_eq!(
                        run(framing, &[&s[..i], &s[i..j], &s[j..]]),
                        want,
                        "{framing:?} split {i} {j}"
                    );
                }
            }
            let bytes: Vec<&[u8]> = s.chunks(1).collect();
            assert_eq!(run(framing, &bytes), want, "{framing:?} one byte per read");
        }
    }

    #[test]
    fn auto_tells_lines_from_frames_by_the_first_four_bytes() {
        let text = b"a:1|c\nb:2|c\nc";
        let lines = strs(&["L:a:1|c", "L:b:2|c", "L:c"]);
        for i in 0..=text.len() {
            assert_eq!(run(Framing::Auto, &[&text[..i], &text[i..]]), lines, "split {i}");
        }
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(run(Framing::Auto, &bytes), lines);
        // short streams: a line under four bytes, nothing at all, a header cut in the first four
        assert_eq!(run(Framing::Auto, &[b"ab"]), strs(&["L:ab"]));
        assert_eq!(run(Framing::Auto, &[]), Vec::<String>::new());
        assert_eq!(run(Framing::Auto, &[b"\x05\x00"]), strs(&["T:"]));
        // a length that is large but under 16 MiB still has a NUL (its top byte)
        let mut big = 0x00ff_ffffu32.to_le_bytes().to_vec();
        big.extend_from_slice(b"abc");
        assert_eq!(run(Framing::Auto, &[&big]), strs(&["frame_too_long"]));
    }

    #[test]
    fn fixed_settings_are_not_second_guessed() {
        let s = frames(&[b"a:1|c"]);
        // newline framing reads the header bytes as text
        assert_eq!(run(Framing::Newline, &[&s]), strs(&["L:\x05\x00\x00\x00a:1|c"]));
        // length_prefix framing reads text as lengths: "a:1|" is 0x7c313a61 bytes, too long
        assert_eq!(run(Framing::LengthPrefix, &[b"a:1|c\n"]), strs(&["frame_too_long"]));
    }

    #[test]
    fn a_stream_that_ends_inside_a_frame_hands_over_what_arrived() {
        let s = frames(&[b"a:1|c", b"b:2|c\nc:3|c"]);
        let first = 4 + 5;
        for cut in 0..s.len() {
            let got = run(Framing::LengthPrefix, &[&s[..cut]]);
            let mut want = Vec::new();
            if cut >= first {
                want.push("F:a:1|c".to_string());
            }
            if cut > 0 && cut < first {
                want.push(format!("T:{}", String::from_utf8_lossy(&s[4.min(cut)..cut])));
            } else if cut > first {
                want.push(format!("T:{}", String::from_utf8_lossy(&s[(first + 4).min(cut)..cut])));
            }
            assert_eq!(got, want, "cut at {cut}");
        }
        // a frame skipped for its length may end with the stream: counted once, when it started
        assert_eq!(run(Framing::LengthPrefix, &[&frame(&[b'y'; 40])[..20]]), strs(&["frame_too_long"]));
    }

    #[test]
    fn a_warm_framer_copies_only_frames_cut_by_a_read() {
        let mut f = StreamFramer::new(Framing::Auto);
        let s = frames(&[b"a:1|c", b"b:2|c"]);
        let mut n = 0;
        // the second frame is cut by the end of the first read: it goes through `carry`
        f.feed(&s[..15], LIMITS, &mut |_| n += 1);
        f.feed(&s[15..], LIMITS, &mut |_| n += 1);
        assert_eq!(n, 2);
        assert!(f.is_framed());
        let cap = f.frames.carry.capacity();
        assert!(cap >= 5);
        for _ in 0..100 {
            f.feed(&s[..15], LIMITS, &mut |_| n += 1);
            f.feed(&s[15..], LIMITS, &mut |_| n += 1);
        }
        assert_eq!((n, f.frames.carry.capacity()), (202, cap), "carry reused, not grown");
    }
}
