//! The Backstop sink's encoder, on the flush thread: the snapshot's points as JSON arrays of
//! `{"metric":…,"value":…,"measure_time":…}`, one body per `max_request_bytes`, into buffers
//! reused through the outbox's pool.
//!
//! Backstop checks items one by one and answers 400 at the first bad one, after the items before
//! it were already written: so everything is validated here before sending (a finite value, a
//! name without whitespace or control bytes that fits carbon's 16,384-byte line once Backstop
//! has prefixed it); anything else is left out and counted.

use crate::flush::{CounterNames, Naming, Snapshot};
use crate::fmt::{write_f64, write_json_str, write_u64};
use crate::sink::graphite::encode::breaks_line;
use crate::sink::outbox::{Batch, Dropped, Encode, FlushTag, Outbox};
use std::time::Instant;

/// Carbon's longest line (Backstop forwards each item as `{source}.{metric} {value} {time}`).
const MAX_LINE: usize = crate::sink::graphite::MAX_LINE;
/// Room for ` value time\n` in that line: a shortest-form f64 is at most 24 bytes.
const LINE_TAIL: usize = 1 + 24 + 1 + 20 + 1;

pub struct Encoder {
    max_body: usize,
    /// Longest metric name Backstop can forward (16,384 minus `{source}.` and the tail).
    max_name: usize,
    name: String,
    item: Vec<u8>,
    /// Flushes encoded so far.
    seq: u64,
}

/// Whether Backstop can forward `name` to carbon: not empty, no whitespace or control bytes
/// (it would split or break the plaintext line), short enough.
fn valid_name(name: &str, max: usize) -> Result<(), Dropped> {
    if breaks_line(name) {
        return Err(Dropped::BadName);
    }
    if name.len() > max {
        return Err(Dropped::TooLong);
    }
    Ok(())
}

impl Encoder {
    pub fn new(max_body: usize, source: &str) -> Encoder {
        Encoder {
            max_body,
            max_name: MAX_LINE.saturating_sub(source.len() + 1 + LINE_TAIL),
            name: String::with_capacity(256),
            item: Vec::with_capacity(512),
            seq: 0,
        }
    }
}

impl Encode for Encoder {
    type Item = Batch;

    /// Queues the bodies of one flush in `outbox`; returns their bytes.
    fn encode(&mut self, snapshot: &Snapshot, naming: &Naming, outbox: &Outbox<Batch>, now: Instant) -> u64 {
        let clock = snapshot.clock;
        self.seq += 1;
        let tag = FlushTag { seq: self.seq, last: false, enqueued: now };
        let (item, max_body, max_name) = (&mut self.item, self.max_body, self.max_name);
        let mut body = Batch::fresh(outbox, tag);
        body.bytes.push(b'[');
        let mut total_bytes = 0u64;
        let mut dropped = [0u64; Dropped::ALL.len()];
        let which = CounterNames { rate: true, count: true };
        snapshot.for_each_flat(naming, which, &mut self.name, &mut |n, v| {
            if !v.is_finite() {
                dropped[Dropped::BadValue as usize] += 1;
                return;
            }
            if let Err(why) = valid_name(n, max_name) {
                dropped[why as usize] += 1;
                return;
            }
            item.clear();
            item.extend_from_slice(b"{\"metric\":");
            write_json_str(item, n);
            item.extend_from_slice(b",\"value\":");
            write_f64(item, v);
            item.extend_from_slice(b",\"measure_time\":");
            write_u64(item, clock);
            item.push(b'}');
            // `[` + items + `,` separators + `]` must stay within max_body; a body always
            // takes at least one item.
            if body.points > 0 && body.bytes.len() + 1 + item.len() + 1 > max_body {
                body.bytes.push(b']');
                total_bytes += body.bytes.len() as u64;
                let full = std::mem::replace(&mut body, Batch::fresh(outbox, tag));
                outbox.push(full);
                body.bytes.push(b'[');
            }
            if body.points > 0 {
                body.bytes.push(b',');
            }
            body.bytes.extend_from_slice(item);
            body.points += 1;
        });
        for why in Dropped::ALL {
            outbox.figures().count_drop(why, dropped[why as usize]);
        }
        if body.points > 0 {
            body.bytes.push(b']');
            body.flush.last = true;
            total_bytes += body.bytes.len() as u64;
            outbox.push(body);
        } else {
            outbox.recycle(body);
        }
        total_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_backstop_cannot_forward() {
        assert_eq!(valid_name("stats.a;k=v", 100), Ok(()));
        assert_eq!(valid_name("a b", 100), Err(Dropped::BadName));
        assert_eq!(valid_name("", 100), Err(Dropped::BadName));
        assert_eq!(valid_name("a\u{2003}", 100), Err(Dropped::BadName));
        assert_eq!(valid_name(&"a".repeat(101), 100), Err(Dropped::TooLong));
    }
}
