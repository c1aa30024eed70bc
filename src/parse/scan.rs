//! Byte search tuned for statsd fields. Runs on the ingest thread for every field of every line.
//!
//! The fields inside a line (name, value, type, rate) are a few bytes long, and there a SIMD
//! search's set-up and dispatch cost more than the scan: in the `profile_ingest` example under
//! callgrind, memchr calls on ~10-byte fields were 36 % of all instructions. So each search
//! looks at the first `SHORT` bytes eight at a time in a u64 (SWAR) and hands only a longer
//! remainder to memchr, which wins on long names and tag lists. Whole datagrams are split
//! into lines with memchr's iterator, where SIMD pays off.

/// Bytes scanned without memchr before it takes over. Statsd names are mostly 10–60 bytes; the
/// value was chosen to cover them, not tuned separately.
const SHORT: usize = 64;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Bit 7 of each byte of `x` that is zero; exact for the lowest such byte (a borrow can only
/// flag bytes above a real zero), which is the only one we read.
#[inline(always)]
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(ONES) & !x & HIGHS
}

#[inline(always)]
fn word(hay: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(hay[i..i + 8].try_into().unwrap())
}

/// Index of the first `a` in `hay[from..]`, as an index into `hay`: eight bytes per step (SWAR)
/// over the first `SHORT` bytes, memchr beyond.
#[inline(always)]
pub fn find(hay: &[u8], from: usize, a: u8) -> Option<usize> {
    let pa = ONES * a as u64;
    let end = hay.len().min(from.saturating_add(SHORT));
    let mut i = from;
    while i + 8 <= end {
        let z = zero_bytes(word(hay, i) ^ pa);
        if z != 0 {
            return Some(i + (z.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    while i < end {
        if hay[i] == a {
            return Some(i);
        }
        i += 1;
    }
    if end < hay.len() {
        memchr::memchr(a, &hay[end..]).map(|j| end + j)
    } else {
        None
    }
}

/// Index of the first `a` or `b` in `hay[from..]`, as an index into `hay`.
#[inline(always)]
pub fn find2(hay: &[u8], from: usize, a: u8, b: u8) -> Option<usize> {
    let (pa, pb) = (ONES * a as u64, ONES * b as u64);
    let end = hay.len().min(from.saturating_add(SHORT));
    let mut i = from;
    while i + 8 <= end {
        let w = word(hay, i);
        let z = zero_bytes(w ^ pa) | zero_bytes(w ^ pb);
        if z != 0 {
            return Some(i + (z.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    while i < end {
        let c = hay[i];
        if c == a || c == b {
            return Some(i);
        }
        i += 1;
    }
    if end < hay.len() {
        memchr::memchr2(a, b, &hay[end..]).map(|j| end + j)
    } else {
        None
    }
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
