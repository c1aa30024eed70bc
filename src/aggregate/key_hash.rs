//! The hash of a raw key (its kind, name bytes and tag bytes) that the raw index is probed
//! with, once per line on the ingest thread. Seeded per table at start-up, so that names a
//! client chooses cannot be made to collide without knowing the seed.
//!
//! The construction is foldhash's (a folded 64 × 64 → 128-bit multiply per sixteen bytes), cut
//! to what a key needs: the name and then the tags in one inlined pass, both lengths mixed in
//! after the name, and the last sixteen bytes read overlapping instead of a tail loop. foldhash
//! itself, through `Hasher::write`, was a call per name and a second one for the tags: about 80
//! of the 476 instructions per line of the realistic mix at 1 k keys, 456 with this hash.

use std::hash::BuildHasher;

/// The multiply both halves of the 128-bit product are folded from.
#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Seeds for [`KeyHasher::hash`].
#[derive(Clone, Copy)]
pub struct KeyHasher {
    seeds: [u64; 4],
}

impl Default for KeyHasher {
    /// Fresh random seeds, drawn from the standard library's per-process random hasher keys.
    fn default() -> KeyHasher {
        let random = std::collections::hash_map::RandomState::new();
        KeyHasher { seeds: std::array::from_fn(|i| random.hash_one(i) | 1) }
    }
}

impl KeyHasher {
    /// The hash of one raw key. `kind` is a small integer that tells apart keys of the same
    /// bytes: the key's kind, or for a set member the set's index.
    #[inline(always)]
    pub fn hash(&self, kind: u64, name: &[u8], tags: &[u8]) -> u64 {
        let [s0, s1, _, s3] = self.seeds;
        let lengths = (name.len() as u64) | ((tags.len() as u64) << 32);
        // The lengths join after the name's first multiply: xored into its first word, a length
        // one longer and a first byte one lower would cancel out, whatever the seeds.
        let mut s = self.absorb(s0, name) ^ lengths;
        if !tags.is_empty() {
            s = self.absorb(s, tags);
        }
        fold(s ^ s1, s3 ^ kind)
    }

    /// `s` with every byte of `bytes` folded in, sixteen at a time, the last sixteen (or eight,
    /// or four) read overlapping what came before. Each byte is read at least once; the lengths
    /// mixed in tell apart inputs whose overlapping reads coincide.
    #[inline(always)]
    fn absorb(&self, mut s: u64, bytes: &[u8]) -> u64 {
        let [_, s1, s2, _] = self.seeds;
        let (a, b) = if let Some(last) = bytes.last_chunk::<16>() {
            for chunk in bytes[..bytes.len() - 1].chunks_exact(16) {
                s = fold(word64(&chunk[..8]) ^ s, word64(&chunk[8..]) ^ s1);
            }
            (word64(&last[..8]), word64(&last[8..]))
        } else if let (Some(a), Some(b)) = (bytes.first_chunk::<8>(), bytes.last_chunk::<8>()) {
            (u64::from_le_bytes(*a), u64::from_le_bytes(*b))
        } else if let (Some(a), Some(b)) = (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
            (u64::from(u32::from_le_bytes(*a)), u64::from(u32::from_le_bytes(*b)))
        } else if let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) {
            let a = u64::from(first) | u64::from(bytes[bytes.len() / 2]) << 8 | u64::from(last) << 16;
            (a, 0)
        } else {
            (0, 0)
        };
        fold(a ^ s, b ^ s2)
    }
}

/// Eight bytes of a sixteen-byte chunk's half, little-endian.
#[inline(always)]
fn word64(half: &[u8]) -> u64 {
    u64::from_le_bytes(half.try_into().unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Every length from 0 to 80, every single-byte change, and the same bytes split between
    /// name and tags at every point: all distinct hashes (a collision among these few thousand
    /// 64-bit values would point at a byte left out or a length not mixed in).
    #[test]
    fn one_byte_or_one_split_changes_the_hash() {
        let h = KeyHasher::default();
        let mut seen = HashSet::new();
        let mut count = 0;
        for n in 0..80usize {
            let a: Vec<u8> = (0..n).map(|i| b"abcdefghijklmnopqrstuvwxyz"[i % 26]).collect();
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 0x01;
                seen.insert(h.hash(0, &b, b""));
                count += 1;
            }
            for split in 0..=n {
                seen.insert(h.hash(1, &a[..split], &a[split..]));
                count += 1;
            }
            seen.insert(h.hash(2, &a, b""));
            count += 1;
        }
        assert_eq!(seen.len(), count);
    }

    #[test]
    fn the_kind_and_the_seed_change_the_hash() {
        let h = KeyHasher::default();
        let kinds: HashSet<u64> = (0..4).map(|k| h.hash(k, b"app.requests", b"env:prod")).collect();
        assert_eq!(kinds.len(), 4);
        let other = KeyHasher::default();
        assert_ne!(h.hash(0, b"app.requests", b""), other.hash(0, b"app.requests", b""));
    }

    /// The index takes its home slot from the top bits and its check from others: over 100 k
    /// realistic names, 2^17 buckets of the top 17 bits fill as a uniform hash would (within
    /// 1 % of the expected number of empty buckets).
    #[test]
    fn top_bits_spread_like_a_uniform_hash() {
        let h = KeyHasher::default();
        let buckets = 1usize << 17;
        let mut used = vec![false; buckets];
        let keys = 100_000;
        for k in 0..keys {
            let name = format!(
                "app.timer.svc{:02}.host{:04}.component.requests.metric_{k:07}",
                k % 13,
                (k / 7) % 10_000
            );
            used[(h.hash(1, name.as_bytes(), b"") >> 47) as usize] = true;
        }
        let empty = used.iter().filter(|&&u| !u).count() as f64;
        let expected = buckets as f64 * (-(keys as f64) / buckets as f64).exp();
        assert!((empty - expected).abs() < expected * 0.01, "{empty} empty buckets, {expected} expected");
    }
}
