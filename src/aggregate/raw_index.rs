//! The index from a raw key (kind, name and tag bytes as received) to its series: an open
//! addressing table with linear probing over 16-byte slots, four to a cache line. Owned by
//! [`super::Tables`]: probed and filled on the ingest thread, cleared on the flush thread.
//!
//! Hot path essay. The table is ours, not hashbrown's, for one reason: the ingest path knows a
//! line's hash long before it looks the line up (it parses and hashes a batch of lines first),
//! and only an index whose home slot follows from the hash can be prefetched then
//! ([`RawIndex::prefetch`]). With 100 k keys that slot is a cache miss, and prefetched for a
//! whole batch the misses overlap instead of queueing. A slot holds everything a lookup checks
//! before it reads the key's bytes: 29 bits of the hash and the kind (`check`), both lengths and
//! the key's place in the arena, so a hit reads one slot and the key bytes, and a collision is
//! rejected without touching the arena. Load stays at most 3/4. A slot's home is the hash's top
//! bits, which `check` holds: so the index grows by one pass over its own slots, without
//! hashing a key again or reading the arena (a first interval at 100 k keys grows it a dozen
//! times). The slots outlive an interval (the tables keep their keys warm); one bit of each
//! says whether this interval met the spelling yet, so the hit path learns that from the slot
//! it read anyway.

use crate::parse::Kind;

/// One slot: empty when `check` is 0.
#[derive(Clone, Copy, Default)]
pub struct RawSlot {
    /// Bits 3–31 of the hash's high half, bit 2 set (so never 0), the kind in bits 0–1.
    check: u32,
    /// Where the raw name, then the raw tags, start in the caller's arena.
    pub off: u32,
    /// The series' slot in its kind's vector, and [`TOUCHED`] in the top bit.
    slot: u32,
    pub name_len: u16,
    pub tags_len: u16,
}

const _: () = assert!(std::mem::size_of::<RawSlot>() == 16);

/// The bit of `slot` set once the spelling was met this interval (cleared by
/// [`RawIndex::untouch_all`]). Series slots are below 2³¹: `max_series` is far smaller.
const TOUCHED: u32 = 1 << 31;

impl RawSlot {
    /// A slot to insert: where the key is in the arena, its lengths, the series' slot, and
    /// whether it counts as met this interval already.
    pub fn new(off: u32, name_len: u16, tags_len: u16, slot: u32, touched: bool) -> RawSlot {
        let slot = (slot & !TOUCHED) | if touched { TOUCHED } else { 0 };
        RawSlot { check: 0, off, slot, name_len, tags_len }
    }

    /// The series' slot in its kind's vector.
    #[inline(always)]
    pub fn slot(&self) -> u32 {
        self.slot & !TOUCHED
    }

    /// Whether this interval met the spelling already.
    #[inline(always)]
    pub fn touched(&self) -> bool {
        self.slot & TOUCHED != 0
    }
}

#[inline(always)]
fn check_of(hash: u64, kind: Kind) -> u32 {
    ((hash >> 32) as u32 & !7) | 4 | kind as u32
}

/// The shift that takes a hash to its home in an index of `size` slots (a power of two): the
/// home is the hash's top bits. `check` holds the top 29, so a slot's home follows from its
/// `check` for any size up to [`MAX_SLOTS`]. An empty index gets 0: every home is past its end,
/// and nothing is probed.
fn shift_for(size: usize) -> u32 {
    debug_assert!(size == 0 || (size >= 16 && size.is_power_of_two()));
    64 - size.trailing_zeros()
}

/// 2²⁹ slots: the most whose homes `check` can give.
const MAX_SLOTS: usize = 1 << 29;

pub struct RawIndex {
    slots: Vec<RawSlot>,
    len: usize,
    /// [`shift_for`] the size of `slots`.
    shift: u32,
}

impl Default for RawIndex {
    fn default() -> Self {
        RawIndex { slots: Vec::new(), len: 0, shift: shift_for(0) }
    }
}

impl RawIndex {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn capacity(&self) -> usize {
        self.slots.len() / 4 * 3
    }

    /// Whether one more slot fits: the index stops at [`MAX_SLOTS`] (the caller then leaves a
    /// raw key out of it, as it does a key too long for a slot).
    pub fn has_room(&self) -> bool {
        self.len < MAX_SLOTS / 4 * 3
    }

    /// The home slot: the hash's top bits, as many as the size has (a power of two).
    #[inline(always)]
    fn home(&self, hash: u64) -> usize {
        (hash >> self.shift) as usize
    }

    /// Asks the CPU to bring the home slot of `hash` into the cache.
    #[inline(always)]
    pub fn prefetch(&self, hash: u64) {
        if let Some(slot) = self.slots.get(self.home(hash)) {
            crate::sys::prefetch(slot);
        }
    }

    /// The first slot for (`hash`, `kind`) that `same` accepts, and where it is: `same` sees
    /// only slots whose hash bits and kind match.
    #[inline(always)]
    pub fn find(
        &self,
        hash: u64,
        kind: Kind,
        mut same: impl FnMut(&RawSlot) -> bool,
    ) -> Option<(usize, RawSlot)> {
        if self.slots.is_empty() {
            return None;
        }
        let (check, mask) = (check_of(hash, kind), self.slots.len() - 1);
        let mut i = self.home(hash);
        loop {
            let s = &self.slots[i];
            if s.check == check && same(s) {
                return Some((i, *s));
            }
            if s.check == 0 {
                return None;
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds a slot the index does not hold yet.
    pub fn insert(&mut self, hash: u64, kind: Kind, mut slot: RawSlot) {
        if self.len + 1 > self.capacity() {
            self.grow();
        }
        slot.check = check_of(hash, kind);
        self.put(slot);
        self.len += 1;
    }

    /// Puts a slot whose `check` is set at the first free place from its home.
    fn put(&mut self, slot: RawSlot) {
        let mask = self.slots.len() - 1;
        let mut i = self.home(u64::from(slot.check) << 32);
        while self.slots[i].check != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = slot;
    }

    #[cold]
    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(16);
        debug_assert!(size <= MAX_SLOTS, "insert only while has_room()");
        let old = std::mem::replace(&mut self.slots, vec![RawSlot::default(); size]);
        self.shift = shift_for(size);
        for s in old.into_iter().filter(|s| s.check != 0) {
            self.put(s);
        }
    }

    /// Marks the slot at `at` (where [`RawIndex::find`] found it) as met this interval.
    pub fn touch(&mut self, at: usize) {
        self.slots[at].slot |= TOUCHED;
    }

    /// Marks every slot as not met yet: a new interval starts on the same keys.
    pub fn untouch_all(&mut self) {
        for s in &mut self.slots {
            s.slot &= !TOUCHED;
        }
    }

    /// Empties the index, keeping its room.
    pub fn clear(&mut self) {
        self.slots.fill(RawSlot::default());
        self.len = 0;
    }

    /// Gives back room beyond what `entries` need (the index must be empty).
    pub fn shrink_to(&mut self, entries: usize) {
        let size = (entries * 4 / 3 + 1).next_power_of_two().max(16);
        if size < self.slots.len() {
            self.slots = vec![RawSlot::default(); size];
            self.shift = shift_for(size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(n: u32) -> RawSlot {
        RawSlot::new(n, 1, 0, n, false)
    }

    /// Well-spread hashes, as the tables' are: each slot sits in the probe run of its own home
    /// through every growth, so every key is found, and a hash not inserted is not.
    #[test]
    fn every_key_survives_growth_at_its_home() {
        let mut rng = crate::aggregate::sketch::tests::Rng(0x2545_F491_4F6C_DD1D);
        let hashes: Vec<u64> = (0..50_000).map(|_| rng.next()).collect();
        let mut index = RawIndex::default();
        for (n, &h) in hashes.iter().enumerate() {
            index.insert(h, Kind::Gauge, slot(n as u32));
        }
        for (n, &h) in hashes.iter().enumerate() {
            let found = index.find(h, Kind::Gauge, |s| s.off == n as u32).map(|(_, s)| s.slot());
            assert_eq!(found, Some(n as u32));
        }
        assert!((0..1000).all(|_| index.find(rng.next(), Kind::Gauge, |_| true).is_none()));
    }

    /// Colliding hashes, kinds that share the hash, growth, clear and shrink.
    #[test]
    fn finds_what_it_holds_through_collisions_and_growth() {
        let mut index = RawIndex::default();
        // 1000 keys whose hashes share their top bits (their home) in groups of ten, and the
        // bits `check` holds in pairs
        let hash = |n: u32| (u64::from(n / 10) << 54) | (u64::from(n / 2) << 35);
        for n in 0..1000 {
            assert!(index.find(hash(n), Kind::Counter, |s| s.off == n).is_none());
            index.insert(hash(n), Kind::Counter, slot(n));
        }
        index.insert(hash(7), Kind::Timer, slot(7000));
        assert_eq!(index.len(), 1001);
        for n in 0..1000 {
            let found = index.find(hash(n), Kind::Counter, |s| s.off == n).map(|(_, s)| s.slot());
            assert_eq!(found, Some(n));
        }
        assert_eq!(index.find(hash(7), Kind::Timer, |_| true).map(|(_, s)| s.slot()), Some(7000));
        assert!(index.find(hash(8), Kind::Timer, |_| true).is_none());
        assert!(index.capacity() >= 1001 && index.capacity() < 4000);
        let found = |index: &RawIndex, n: u32| index.find(hash(n), Kind::Counter, |s| s.off == n).unwrap();
        let (at, s) = found(&index, 5);
        assert!(!s.touched());
        index.touch(at);
        assert_eq!((found(&index, 5).1.touched(), found(&index, 5).1.slot()), (true, 5), "the slot is kept");
        assert!(!found(&index, 4).1.touched(), "only that one");
        index.untouch_all();
        assert!(!found(&index, 5).1.touched());
        index.clear();
        assert!(index.find(hash(3), Kind::Counter, |_| true).is_none());
        index.shrink_to(10);
        assert_eq!(index.capacity(), 12);
        index.insert(hash(3), Kind::Counter, slot(3));
        assert_eq!(index.find(hash(3), Kind::Counter, |_| true).map(|(_, s)| s.slot()), Some(3));
    }
}
