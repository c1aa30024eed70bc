//! Byte search tuned for statsd fields. Runs on the ingest thread for every field of every line.
//!
//! The fields inside a line (name, value, type, tags) are a few to a hundred bytes long: there a
//! general search's set-up and dispatch cost more than the scan (memchr calls on ~10-byte fields
//! were 36 % of all instructions in `examples/profile_ingest`), and eight bytes at a time in a
//! u64 (SWAR) was still a third of them on 60-byte names. So each search compares sixteen bytes
//! at a time with one SSE2 compare per byte sought ([`crate::sys::find2_mask16`]), and ends
//! with one compare of the text's last sixteen bytes, overlapping what was already searched,
//! instead of a byte-by-byte tail. Only a text shorter than sixteen bytes is searched byte by
//! byte.

use crate::sys::find2_mask16;

/// Index of the first `a` in `hay[from..]`, as an index into `hay`.
#[inline(always)]
pub fn find(hay: &[u8], from: usize, a: u8) -> Option<usize> {
    find2(hay, from, a, a)
}

/// Index of the first `a` or `b` in `hay[from..]`, as an index into `hay`.
#[inline(always)]
pub fn find2(hay: &[u8], from: usize, a: u8, b: u8) -> Option<usize> {
    let mut i = from;
    while let Some(chunk) = hay.get(i..i + 16) {
        let hits = find2_mask16(chunk.try_into().unwrap(), a, b);
        if hits != 0 {
            return Some(i + hits.trailing_zeros() as usize);
        }
        i += 16;
    }
    if i >= hay.len() {
        return None;
    }
    if hay.len() >= 16 {
        // the last sixteen bytes, of which the first `i - last` were searched already
        let last = hay.len() - 16;
        let hits = find2_mask16(hay[last..].try_into().unwrap(), a, b) >> (i - last);
        return (hits != 0).then(|| i + hits.trailing_zeros() as usize);
    }
    hay[i..].iter().position(|&c| c == a || c == b).map(|j| i + j)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_a_naive_search_at_every_length_and_offset() {
        let mut hay = Vec::new();
        for len in 0..160 {
            hay.clear();
            hay.extend((0..len).map(|i| b"abcdefgh"[i % 8]));
            for pos in [None, Some(0), Some(len / 2), Some(len.saturating_sub(1))] {
                let mut h = hay.clone();
                if let Some(p) = pos.filter(|&p| p < len) {
                    h[p] = b':';
                }
                for from in 0..=len {
                    let want = h[from..].iter().position(|&c| c == b':').map(|j| from + j);
                    assert_eq!(find(&h, from, b':'), want);
                    let want2 = h[from..].iter().position(|&c| c == b':' || c == b'h').map(|j| from + j);
                    assert_eq!(find2(&h, from, b':', b'h'), want2);
                }
            }
        }
    }
}
