//! The per-datagram entry points of the ingest thread: the normal path ([`ingest_received`],
//! which `examples/profile_ingest` measures), and, kept out of line, the debug dump's path and
//! datagrams that were truncated or came from a `json_udp` port.

use crate::aggregate::{
    ingest_datagram, ingest_datagram_observed, ingest_json_line, ingest_json_only, ingest_line_observed,
    ingest_mixed_line, Observe, Tables,
};
use crate::dump::DebugDump;
use crate::parse::{BadLine, LineBuf};

/// One received datagram on the normal path (statsd lines, or pystatsd JSON when it starts with
/// `{`). With the debug dump off this is [`ingest_datagram`] itself: the dump costs one
/// predictable branch per datagram (`examples/profile_ingest` measures this function).
#[inline]
pub fn ingest_received(
    tables: &mut Tables,
    datagram: &[u8],
    buf: &mut LineBuf,
    dump: &mut Option<DebugDump>,
) {
    match dump {
        None => ingest_datagram(tables, datagram, buf),
        Some(d) => ingest_dumped(tables, datagram, buf, d),
    }
}

/// The observed path, kept out of line: inlined next to the normal path it doubled the loop's
/// size and LLVM stopped inlining the table lookups into it (+17 % instructions per line in
/// `profile_ingest`).
#[cold]
#[inline(never)]
fn ingest_dumped(tables: &mut Tables, datagram: &[u8], buf: &mut LineBuf, dump: &mut DebugDump) {
    ingest_datagram_observed(tables, datagram, buf, dump);
}

/// A datagram the kernel cut at the buffer size (its complete lines still count, the cut tail
/// is one bad line, `truncated_datagram`), or one from a `json_udp` port.
#[cold]
#[inline(never)]
pub(super) fn ingest_unusual(
    tables: &mut Tables,
    datagram: &[u8],
    truncated: bool,
    json: bool,
    buf: &mut LineBuf,
    dump: &mut Option<DebugDump>,
) {
    let mut noop = ();
    let obs: &mut dyn Observe = match dump {
        Some(d) => d,
        None => &mut noop,
    };
    if !truncated {
        return ingest_json_only(tables, datagram, buf, obs);
    }
    tables.stats.packets += 1;
    tables.stats.bytes += datagram.len() as u64;
    let complete = memchr::memrchr(b'\n', datagram).map_or(0, |i| i + 1);
    let mixed = datagram.first() == Some(&b'{');
    for line in crate::parse::lines(&datagram[..complete]) {
        if json {
            ingest_json_line(tables, line, buf, obs);
        } else if mixed {
            ingest_mixed_line(tables, line, buf, obs);
        } else {
            ingest_line_observed(tables, line, buf, obs);
        }
    }
    tables.stats.metrics += 1;
    tables.stats.count_bad(BadLine::Truncated);
}
