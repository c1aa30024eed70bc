//! The interned tables of one interval. Written by the ingest thread; read, summarized and
//! cleared by the flush thread after the swap (ownership moves with the `Box<Tables>`).
//!
//! Hot path essay. A line costs one hash of its raw bytes (kind, name, raw tags) and one probe
//! of `raw`, the raw-key index ([`super::raw_index`]), whose slots point into one byte arena,
//! so a hit touches no key allocation at all. Only a miss does real work: the name and tags are sanitized and put
//! in canonical order, looked up in `canon` (so `#b,a` and `#a,b`, or `a b` and `a_b`, land in
//! the same series), and a new series is appended. Between intervals the keys stay: the
//! accumulators are reset, and each one carries the interval it was last touched in, so a series
//! that comes back costs a hit and the flush skips those that did not (see [`Tables::clear`]).
//! The keys are forgotten when most of them went quiet; the containers keep their capacity, so a
//! steady workload allocates nothing, new keys included, once warmed up. Only room far beyond
//! what an interval used is given back: after a burst, the next burst allocates again, on the
//! ingest thread.

use super::key::{canonical_key, KeyRules};
use super::key_hash::KeyHasher;
use super::raw_index::{RawIndex, RawSlot};
use super::sketch::TimerSketch;
use crate::parse::{BadLine, Kind, Sample, SampleValue};
use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;

/// Bounds that keep memory finite under hostile cardinality.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    pub key: KeyRules,
    /// Distinct series per interval; a new series past it is dropped and counted.
    pub max_series: usize,
    /// Distinct set members per interval, over all sets.
    pub max_set_members: usize,
    /// Values held per interval, over all series: timer values, and gauge deltas that wait for
    /// the last known value (8 bytes each). Past it nothing is refused: a timer's further values
    /// go to its [`TimerSketch`], a gauge's further deltas are added to its last held one.
    pub max_samples: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            key: KeyRules::default(),
            max_series: 1_000_000,
            max_set_members: 1_000_000,
            max_samples: 10_000_000,
        }
    }
}

/// What the ingest thread counted in the interval (the daemon's own meta stats).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IngestStats {
    pub packets: u64,
    pub metrics: u64,
    pub bytes: u64,
    pub events: u64,
    pub service_checks: u64,
    pub packets_not_captured: u64,
    pub bad: [u64; BadLine::COUNT],
    /// Stream connections (TCP, Unix stream) accepted, refused over `max_tcp_connections`, and
    /// closed after `tcp_idle_timeout` of silence.
    pub connections_opened: u64,
    pub connections_refused: u64,
    pub connections_timed_out: u64,
    /// Config reloads (SIGHUP) applied and refused.
    pub config_reloads: u64,
    pub config_reload_failures: u64,
    /// Debug dump lines dropped because stderr did not keep up.
    pub debug_dump_dropped: u64,
    /// Management-port clients disconnected for going over their input or output limit.
    pub admin_clients_dropped: u64,
    /// Timer values past `max_samples`, counted exactly but summarized by a sketch.
    pub timer_values_sketched: u64,
}

impl IngestStats {
    /// Adds `other` to these figures (cumulative totals for the admin `stats`).
    pub fn add(&mut self, other: &IngestStats) {
        self.packets += other.packets;
        self.metrics += other.metrics;
        self.bytes += other.bytes;
        self.events += other.events;
        self.service_checks += other.service_checks;
        self.packets_not_captured += other.packets_not_captured;
        for (a, b) in self.bad.iter_mut().zip(&other.bad) {
            *a += b;
        }
        self.connections_opened += other.connections_opened;
        self.connections_refused += other.connections_refused;
        self.connections_timed_out += other.connections_timed_out;
        self.config_reloads += other.config_reloads;
        self.config_reload_failures += other.config_reload_failures;
        self.debug_dump_dropped += other.debug_dump_dropped;
        self.admin_clients_dropped += other.admin_clients_dropped;
        self.timer_values_sketched += other.timer_values_sketched;
    }

    #[inline]
    pub fn count_bad(&mut self, why: BadLine) {
        self.bad[why as usize] += 1;
    }

    pub fn bad_total(&self) -> u64 {
        self.bad.iter().sum()
    }

    pub fn bad(&self, why: BadLine) -> u64 {
        self.bad[why as usize]
    }
}

/// A gauge in one interval: the last absolute value with the deltas after it applied in arrival
/// order, or (when no absolute value came) the deltas themselves, which the flush thread applies
/// one by one to the last known value. Applying them in order, not summed, gives etsy's exact
/// floating-point result; only deltas past `max_samples` are summed into the last held one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GaugeAcc {
    pub absolute: Option<f64>,
    pub deltas: Vec<f64>,
}

impl GaugeAcc {
    /// The gauge's value given the last known one.
    pub fn resolve(&self, last: f64) -> f64 {
        match self.absolute {
            Some(v) => v,
            None => self.deltas.iter().fold(last, |v, d| v + d),
        }
    }

    fn set(&mut self, v: f64) {
        self.absolute = Some(v);
        self.deltas.clear();
    }
}

/// A timer in one interval: every value as received, and the count scaled by sample rates.
/// Values that arrive once the interval holds `max_samples` go to `sketched` instead, which is
/// `None` for a timer that never spilled (and kept, cleared, while it keeps spilling).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TimerAcc {
    pub values: Vec<f64>,
    pub count: f64,
    pub sketched: Option<Box<TimerSketch>>,
}

impl TimerAcc {
    /// The figures of the values past `max_samples`, when this interval had any.
    pub fn spilled(&mut self) -> Option<&mut TimerSketch> {
        self.sketched.as_deref_mut().filter(|s| s.count > 0)
    }

    /// Whether the interval had a value for this timer.
    pub fn has_values(&self) -> bool {
        !self.values.is_empty() || self.sketched.as_ref().is_some_and(|s| s.count > 0)
    }

    #[cold]
    #[inline(never)]
    fn sketch(&mut self, v: f64) {
        self.sketched.get_or_insert_with(Box::default).add(v);
    }

    /// Empties the timer for the next interval; the sketch is kept only if it was used.
    fn clear(&mut self) {
        self.values.clear();
        self.count = 0.0;
        match &mut self.sketched {
            Some(s) if s.count > 0 => s.clear(),
            _ => self.sketched = None,
        }
    }
}

/// One series held: its canonical key in `key_bytes`, its slot in the per-kind vector, and the
/// low 32 bits of its key's hash (see [`canon_hash`]).
#[derive(Clone, Copy, Debug)]
struct Series {
    kind: Kind,
    key_off: u32,
    key_len: u32,
    name_len: u32,
    slot: u32,
    hash: u32,
}

/// A set member already seen: (set slot, member bytes in `member_bytes`).
#[derive(Clone, Copy)]
struct Member {
    hash: u64,
    set: u32,
    off: u32,
    len: u32,
}

/// A series as the flush thread sees it.
#[derive(Clone, Copy, Debug)]
pub struct SeriesRef<'a> {
    pub kind: Kind,
    /// The canonical key, name then `;k=v` tags.
    pub key: &'a str,
    /// Length of the name part of `key`.
    pub name_len: usize,
    pub slot: usize,
}

pub struct Tables {
    limits: Limits,
    hasher: DefaultHashBuilder,
    key_hasher: KeyHasher,
    raw: RawIndex,
    raw_bytes: Vec<u8>,
    canon: HashTable<u32>,
    series: Vec<Series>,
    key_bytes: Vec<u8>,
    pub counters: Vec<f64>,
    /// Gauges in use are `gauges[..gauges_len]`; the rest keep their buffers for reuse.
    pub gauges: Vec<GaugeAcc>,
    gauges_len: usize,
    /// Timers in use are `timers[..timers_len]`; the rest keep their buffers for reuse.
    pub timers: Vec<TimerAcc>,
    timers_len: usize,
    pub sets: Vec<u64>,
    /// The interval each accumulator was last touched in, by kind and slot: a series whose stamp
    /// is not `interval` got nothing this interval (its accumulator is reset, its key kept).
    stamps: [Vec<u32>; 4],
    /// The interval being recorded; [`Tables::clear`] moves it on.
    interval: u32,
    /// Series touched this interval (what `max_series` bounds).
    live: usize,
    /// The key rules changed (config reload): the keys held were sanitized by the old ones and
    /// are dropped at the next [`Tables::clear`].
    stale_keys: bool,
    members: HashTable<Member>,
    member_bytes: Vec<u8>,
    /// Timer values and gauge deltas held this interval (bounded by `max_samples`).
    samples: usize,
    scratch: Vec<u8>,
    tag_scratch: Vec<u8>,
    /// Raw datagrams kept for sinks that want them (etsy's `packet` event); empty unless enabled.
    packets: Vec<u8>,
    packet_ends: Vec<usize>,
    pub stats: IngestStats,
}

/// Raw datagrams kept per interval for the `packet` hook, at most this many bytes.
pub const PACKET_CAPTURE_LIMIT: usize = 16 << 20;

impl Tables {
    pub fn new(limits: Limits) -> Tables {
        Tables {
            limits,
            hasher: DefaultHashBuilder::default(),
            key_hasher: KeyHasher::default(),
            raw: RawIndex::default(),
            raw_bytes: Vec::new(),
            canon: HashTable::new(),
            series: Vec::new(),
            key_bytes: Vec::new(),
            counters: Vec::new(),
            gauges: Vec::new(),
            gauges_len: 0,
            timers: Vec::new(),
            timers_len: 0,
            sets: Vec::new(),
            stamps: Default::default(),
            interval: 0,
            live: 0,
            stale_keys: false,
            members: HashTable::new(),
            member_bytes: Vec::new(),
            samples: 0,
            scratch: Vec::new(),
            tag_scratch: Vec::new(),
            packets: Vec::new(),
            packet_ends: Vec::new(),
            stats: IngestStats::default(),
        }
    }

    /// Keeps a copy of a raw datagram for the sinks' `packet` hook; past
    /// [`PACKET_CAPTURE_LIMIT`] bytes in an interval it is counted in `packets_not_captured`.
    pub fn capture_packet(&mut self, datagram: &[u8]) {
        if self.packets.len() + datagram.len() > PACKET_CAPTURE_LIMIT {
            self.stats.packets_not_captured += 1;
            return;
        }
        self.packets.extend_from_slice(datagram);
        self.packet_ends.push(self.packets.len());
    }

    /// The datagrams captured this interval, in arrival order.
    pub fn captured_packets(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let starts = std::iter::once(0).chain(self.packet_ends.iter().copied());
        starts.zip(self.packet_ends.iter().copied()).map(move |(a, b)| &self.packets[a..b])
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Takes new limits (config reload). Series of this interval are kept; when the key rules
    /// changed, the keys held are forgotten at once if nothing was recorded since the last
    /// clear (a spare), else at the end of the interval.
    pub fn set_limits(&mut self, limits: Limits) {
        let rekey = limits.key != self.limits.key;
        self.limits = limits;
        if rekey && self.live == 0 {
            self.forget_keys();
        } else if rekey {
            self.stale_keys = true;
        }
    }

    /// Readies the tables for the next interval. Runs on the flush thread.
    ///
    /// The keys stay warm: accumulators are reset, but the series, their keys and the raw-key
    /// index are kept, so a series that comes back next time costs a hit, not a new series (at
    /// 100 k keys a cold interval starts with a burst of interning that overflows the socket
    /// buffer). The flush skips a series its interval did not touch (see [`Tables::live_at`]).
    /// The keys are forgotten instead, as [`Tables::forget`] does, when more than half of them
    /// went untouched, when they are more than `max_series`, or when the key rules changed: so
    /// the memory held follows the live series, and keys churned through are not kept forever.
    pub fn clear(&mut self) {
        let held = self.series.len();
        if self.stale_keys || held > self.limits.max_series || held > 2 * self.live {
            return self.forget();
        }
        self.counters.fill(0.0);
        for g in &mut self.gauges[..self.gauges_len] {
            shrink_vec(&mut g.deltas, 0);
            g.absolute = None;
            g.deltas.clear();
        }
        for t in &mut self.timers[..self.timers_len] {
            shrink_vec(&mut t.values, 0);
            t.clear();
        }
        self.sets.fill(0);
        self.raw.untouch_all();
        let members = (self.members.len(), self.member_bytes.len());
        self.members.clear();
        self.member_bytes.clear();
        if too_roomy(self.members.capacity(), members.0) {
            self.members.shrink_to(2 * members.0, |_| 0);
        }
        shrink_vec(&mut self.member_bytes, members.1);
        self.next_interval();
    }

    /// Forgets every key, the start of a cold interval, keeping the allocations a steady
    /// workload needs. Capacity far beyond what this interval used (a burst of new series, one
    /// timer that got a million values once) is given back, so that memory follows the live
    /// series instead of the worst interval ever: a container keeps up to 4× what it held, and
    /// is cut to 2× when over.
    pub fn forget(&mut self) {
        let used = self.forget_keys();
        self.next_interval();
        self.shrink_to(&used);
    }

    /// Drops every key and accumulator; returns what the last interval used of them. Keys kept
    /// warm but left untouched do not count: the live share of each container is taken as the
    /// live share of the series (what a container of one kind used is at most the live series).
    fn forget_keys(&mut self) -> Used {
        let (live, held) = (self.live, self.series.len().max(1));
        let share = |n: usize| (n as u128 * live.min(held) as u128 / held as u128) as usize;
        let used = Used {
            raw: share(self.raw.len()),
            raw_bytes: share(self.raw_bytes.len()),
            series: live,
            key_bytes: share(self.key_bytes.len()),
            counters: self.counters.len().min(live),
            gauges: self.gauges_len.min(live),
            timers: self.timers_len.min(live),
            sets: self.sets.len().min(live),
            members: self.members.len(),
            member_bytes: self.member_bytes.len(),
        };
        for t in &mut self.timers[..self.timers_len] {
            shrink_vec(&mut t.values, 0);
        }
        for g in &mut self.gauges[..self.gauges_len] {
            shrink_vec(&mut g.deltas, 0);
        }
        self.raw.clear();
        self.raw_bytes.clear();
        self.canon.clear();
        self.series.clear();
        self.key_bytes.clear();
        self.counters.clear();
        for g in &mut self.gauges[..self.gauges_len] {
            g.absolute = None;
            g.deltas.clear();
        }
        self.gauges_len = 0;
        for t in &mut self.timers[..self.timers_len] {
            t.clear();
        }
        self.timers_len = 0;
        self.sets.clear();
        for stamps in &mut self.stamps {
            stamps.clear();
        }
        self.members.clear();
        self.member_bytes.clear();
        self.stale_keys = false;
        used
    }

    /// What every clear does: the per-interval figures start again.
    fn next_interval(&mut self) {
        self.interval = self.interval.wrapping_add(1);
        self.live = 0;
        self.samples = 0;
        self.packets.clear();
        self.packet_ends.clear();
        self.stats = IngestStats::default();
    }

    /// Gives back capacity far beyond what an interval used (see [`Tables::clear`]); the tables
    /// are empty here, so nothing is rehashed.
    fn shrink_to(&mut self, used: &Used) {
        if too_roomy(self.raw.capacity(), used.raw) {
            self.raw.shrink_to(2 * used.raw);
        }
        if too_roomy(self.canon.capacity(), used.series) {
            self.canon.shrink_to(2 * used.series, |_| 0);
        }
        if too_roomy(self.members.capacity(), used.members) {
            self.members.shrink_to(2 * used.members, |_| 0);
        }
        shrink_vec(&mut self.raw_bytes, used.raw_bytes);
        shrink_vec(&mut self.series, used.series);
        shrink_vec(&mut self.key_bytes, used.key_bytes);
        shrink_vec(&mut self.counters, used.counters);
        shrink_vec(&mut self.sets, used.sets);
        shrink_vec(&mut self.stamps[Kind::Counter as usize], used.counters);
        shrink_vec(&mut self.stamps[Kind::Set as usize], used.sets);
        shrink_vec(&mut self.member_bytes, used.member_bytes);
        if too_roomy(self.gauges.len(), used.gauges) {
            self.gauges.truncate(2 * used.gauges);
        }
        shrink_vec(&mut self.gauges, 0);
        shrink_vec(&mut self.stamps[Kind::Gauge as usize], used.gauges);
        if too_roomy(self.timers.len(), used.timers) {
            self.timers.truncate(2 * used.timers);
        }
        shrink_vec(&mut self.timers, 0);
        shrink_vec(&mut self.stamps[Kind::Timer as usize], used.timers);
        shrink_vec(&mut self.packets, 0);
        shrink_vec(&mut self.packet_ends, 0);
    }

    /// Series recorded this interval.
    pub fn series_count(&self) -> usize {
        self.live
    }

    /// Series whose keys the tables hold: those of this interval, and those of earlier ones
    /// kept warm (see [`Tables::clear`]).
    pub fn held_series(&self) -> usize {
        self.series.len()
    }

    /// Every series recorded this interval, in first-seen order (over the intervals the tables
    /// kept their keys).
    pub fn series(&self) -> impl Iterator<Item = SeriesRef<'_>> + '_ {
        (0..self.series.len()).filter_map(move |i| self.live_at(i))
    }

    /// The `i`-th series held (`i < held_series()`), if this interval recorded it.
    pub fn live_at(&self, i: usize) -> Option<SeriesRef<'_>> {
        let s = &self.series[i];
        (self.stamps[s.kind as usize][s.slot as usize] == self.interval).then(|| self.series_ref(s))
    }

    fn series_ref(&self, s: &Series) -> SeriesRef<'_> {
        let bytes = &self.key_bytes[s.key_off as usize..(s.key_off + s.key_len) as usize];
        SeriesRef {
            kind: s.kind,
            // Keys were checked (or sanitized to ASCII) when interned.
            key: std::str::from_utf8(bytes).unwrap_or(""),
            name_len: s.name_len as usize,
            slot: s.slot as usize,
        }
    }

    /// The timers in use, by slot.
    pub fn timers_mut(&mut self) -> &mut [TimerAcc] {
        &mut self.timers[..self.timers_len]
    }

    /// Records every sample of one parsed line. `line` is the text the samples' member ranges
    /// point into. All series the line needs are resolved before any sample is applied, so a line
    /// refused by a limit leaves no trace.
    #[inline]
    pub fn record(
        &mut self,
        name: &[u8],
        tags: &[u8],
        line: &[u8],
        samples: &[Sample],
    ) -> Result<(), BadLine> {
        let first = samples.first().ok_or(BadLine::NoType)?;
        let slot = self.intern(first.kind, name, tags)? as usize;
        if samples.len() == 1 {
            return self.apply(slot, first, line);
        }
        let mut slots = [u32::MAX; 4];
        slots[first.kind as usize] = slot as u32;
        for s in &samples[1..] {
            if slots[s.kind as usize] == u32::MAX {
                slots[s.kind as usize] = self.intern(s.kind, name, tags)?;
            }
        }
        for s in samples {
            self.apply(slots[s.kind as usize] as usize, s, line)?;
        }
        Ok(())
    }

    /// The hash [`Tables::record_hashed`] wants for a raw key.
    #[inline(always)]
    pub fn key_hash(&self, kind: Kind, name: &[u8], tags: &[u8]) -> u64 {
        self.key_hasher.hash(kind as u64, name, tags)
    }

    /// Raw keys known this interval (distinct spellings of the series).
    #[inline(always)]
    pub fn raw_keys(&self) -> usize {
        self.raw.len()
    }

    /// Starts bringing the table slot of the raw key with this [`Tables::key_hash`] into the
    /// cache, for a [`Tables::record_hashed`] a little later.
    #[inline(always)]
    pub fn prefetch(&self, hash: u64) {
        self.raw.prefetch(hash);
    }

    /// Records one sample (the parser's fast path): [`Tables::record`] for a line of one value,
    /// whose raw key's [`Tables::key_hash`] is `hash`.
    #[inline(always)]
    pub fn record_hashed(
        &mut self,
        hash: u64,
        name: &[u8],
        tags: &[u8],
        line: &[u8],
        sample: &Sample,
    ) -> Result<(), BadLine> {
        let slot = self.intern_hashed(hash, sample.kind, name, tags)? as usize;
        self.apply(slot, sample, line)
    }

    /// Adds to a counter by canonical name (the daemon's own meta counters; see `intern_meta`).
    pub fn add_counter(&mut self, name: &str, value: f64) {
        if let Some(slot) = self.intern_meta(Kind::Counter, name) {
            self.counters[slot] += value;
        }
    }

    /// Sets a gauge by canonical name (the daemon's own meta gauges; see `intern_meta`).
    pub fn set_gauge(&mut self, name: &str, value: f64) {
        if let Some(slot) = self.intern_meta(Kind::Gauge, name) {
            self.gauges[slot].set(value);
        }
    }

    /// The slot of one of the daemon's own series. These bypass the name-length and series
    /// limits (there are a couple of dozen at most): the figures that report a flood must not be
    /// refused by it.
    fn intern_meta(&mut self, kind: Kind, name: &str) -> Option<usize> {
        let unbounded = Limits {
            key: KeyRules { max_name_bytes: usize::MAX, ..self.limits.key.clone() },
            max_series: usize::MAX / 8,
            ..self.limits.clone()
        };
        let user = std::mem::replace(&mut self.limits, unbounded);
        let slot = self.intern(kind, name.as_bytes(), b"");
        self.limits = user;
        slot.ok().map(|s| s as usize)
    }

    #[inline(always)]
    fn apply(&mut self, slot: usize, s: &Sample, line: &[u8]) -> Result<(), BadLine> {
        match (s.kind, s.value) {
            (Kind::Counter, SampleValue::Number(v)) => self.counters[slot] += v,
            (Kind::Timer, SampleValue::Number(v)) => {
                let held = self.hold_sample();
                let t = &mut self.timers[slot];
                t.count += s.weight;
                if held {
                    t.values.push(v);
                } else {
                    t.sketch(v);
                    self.stats.timer_values_sketched += 1;
                }
            }
            (Kind::Gauge, SampleValue::Number(v)) => self.gauges[slot].set(v),
            (Kind::Gauge, SampleValue::Delta(d)) => match &mut self.gauges[slot].absolute {
                Some(v) => *v += d,
                None => {
                    // Past the budget a delta joins the gauge's last held one: the same sum,
                    // rounded once more (exact for whole numbers), and no memory per delta.
                    let held = self.hold_sample();
                    let deltas = &mut self.gauges[slot].deltas;
                    match deltas.last_mut() {
                        Some(last) if !held => *last += d,
                        _ => deltas.push(d),
                    }
                }
            },
            (Kind::Set, SampleValue::Member { start, end }) => {
                let member = match line.get(start as usize..end as usize) {
                    Some(b"") | None => b"0",
                    Some(m) => m,
                };
                self.add_member(slot, member)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Counts one more value held this interval; false past `max_samples`.
    #[inline(always)]
    fn hold_sample(&mut self) -> bool {
        let room = self.samples < self.limits.max_samples;
        self.samples += usize::from(room);
        room
    }

    fn add_member(&mut self, set: usize, member: &[u8]) -> Result<(), BadLine> {
        let hash = self.key_hasher.hash(set as u64, member, b"");
        let bytes = &self.member_bytes;
        let found = self.members.find(hash, |m| {
            m.set == set as u32 && bytes_eq(&bytes[m.off as usize..(m.off + m.len) as usize], member)
        });
        if found.is_some() {
            return Ok(());
        }
        if self.members.len() >= self.limits.max_set_members {
            return Err(BadLine::TooManySetMembers);
        }
        let off = self.member_bytes.len() as u32;
        self.member_bytes.extend_from_slice(member);
        let entry = Member { hash, set: set as u32, off, len: member.len() as u32 };
        self.members.insert_unique(hash, entry, |m| m.hash);
        self.sets[set] += 1;
        Ok(())
    }

    /// The slot for a raw (kind, name, tags), creating the series on a miss. Always inlined, so
    /// that the hash and the probe sit in the per-line loop (`profile_ingest 10000 plain`
    /// under callgrind: 503 → 489 instructions per line).
    #[inline(always)]
    fn intern(&mut self, kind: Kind, name: &[u8], tags: &[u8]) -> Result<u32, BadLine> {
        self.intern_hashed(self.key_hasher.hash(kind as u64, name, tags), kind, name, tags)
    }

    /// [`Tables::intern`] with the raw key's hash computed already. The key comparison is
    /// always inlined into the probe: left to LLVM, it stayed one shared function, called once
    /// per line, that could not know an untagged line's tags are empty (the realistic mix at
    /// 1 k keys under callgrind: 498 → 476 instructions per line; plain 348 → 317).
    #[inline(always)]
    fn intern_hashed(&mut self, hash: u64, kind: Kind, name: &[u8], tags: &[u8]) -> Result<u32, BadLine> {
        let bytes = &self.raw_bytes;
        let hit = self.raw.find(
            hash,
            kind,
            #[inline(always)]
            |e| {
                e.name_len as usize == name.len() && e.tags_len as usize == tags.len() && {
                    let n = e.off as usize;
                    let t = n + name.len();
                    bytes_eq(&bytes[n..t], name) && bytes_eq(&bytes[t..t + tags.len()], tags)
                }
            },
        );
        match hit {
            Some((_, e)) if e.touched() => Ok(e.slot()),
            Some((at, e)) => self.first_hit(kind, e.slot(), at),
            None => self.intern_miss(hash, kind, name, tags),
        }
    }

    /// The first hit this interval on a spelling whose key was kept from an earlier one: its
    /// series is touched (unless another spelling did so already), then the spelling is marked.
    #[cold]
    #[inline(never)]
    fn first_hit(&mut self, kind: Kind, slot: u32, at: usize) -> Result<u32, BadLine> {
        self.touch(kind, slot)?;
        self.raw.touch(at);
        Ok(slot)
    }

    /// Marks a series as recorded this interval; the first time, it counts towards
    /// `max_series` like a new series.
    fn touch(&mut self, kind: Kind, slot: u32) -> Result<(), BadLine> {
        let stamp = &mut self.stamps[kind as usize][slot as usize];
        if *stamp == self.interval {
            return Ok(());
        }
        if self.live >= self.limits.max_series {
            return Err(BadLine::TooManySeries);
        }
        *stamp = self.interval;
        self.live += 1;
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn intern_miss(&mut self, hash: u64, kind: Kind, name: &[u8], tags: &[u8]) -> Result<u32, BadLine> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let result = canonical_key(name, tags, &self.limits.key, &mut scratch, &mut self.tag_scratch)
            .and_then(|name_len| self.canonical_id(kind, &scratch, name_len));
        self.scratch = scratch;
        let id = result?;
        let slot = self.series[id as usize].slot;
        let touched = self.touch(kind, slot);
        // Bound the raw table too: hostile spellings of one series must not grow it forever.
        let fits = name.len() <= u16::MAX as usize && tags.len() <= u16::MAX as usize;
        if fits && self.raw.has_room() && self.raw.len() < self.limits.max_series.saturating_mul(4) {
            let off = self.raw_bytes.len() as u32;
            self.raw_bytes.extend_from_slice(name);
            self.raw_bytes.extend_from_slice(tags);
            let entry = RawSlot::new(off, name.len() as u16, tags.len() as u16, slot, touched.is_ok());
            self.raw.insert(hash, kind, entry);
        }
        touched.map(|()| slot)
    }

    /// Finds or creates the series for a canonical key.
    fn canonical_id(&mut self, kind: Kind, key: &[u8], name_len: usize) -> Result<u32, BadLine> {
        let hash32 = self.hasher.hash_one((kind as u8, key)) as u32;
        let hash = canon_hash(hash32);
        let (series, bytes) = (&self.series, &self.key_bytes);
        let found = self.canon.find(hash, |&id| {
            let s = &series[id as usize];
            s.kind == kind && &bytes[s.key_off as usize..(s.key_off + s.key_len) as usize] == key
        });
        if let Some(&id) = found {
            return Ok(id);
        }
        if self.live >= self.limits.max_series {
            return Err(BadLine::TooManySeries);
        }
        let slot = match kind {
            Kind::Counter => push_slot(&mut self.counters, 0.0),
            Kind::Gauge => reuse_slot(&mut self.gauges, &mut self.gauges_len),
            Kind::Set => push_slot(&mut self.sets, 0),
            Kind::Timer => reuse_slot(&mut self.timers, &mut self.timers_len),
        };
        // Born untouched: the caller touches it, which counts it.
        let stamps = &mut self.stamps[kind as usize];
        stamps.resize(stamps.len().max(slot + 1), 0);
        stamps[slot] = self.interval.wrapping_sub(1);
        let id = self.series.len() as u32;
        self.series.push(Series {
            kind,
            key_off: self.key_bytes.len() as u32,
            key_len: key.len() as u32,
            name_len: name_len as u32,
            slot: slot as u32,
            hash: hash32,
        });
        self.key_bytes.extend_from_slice(key);
        let series = &self.series;
        self.canon.insert_unique(hash, id, |&id| canon_hash(series[id as usize].hash));
        Ok(id)
    }
}

/// The `canon` table's hash of a series, from the 32 bits each [`Series`] keeps: the table then
/// grows without reading a key or hashing one again. The multiply spreads them over the 64 bits
/// hashbrown reads (its control bytes take the top ones).
#[inline(always)]
fn canon_hash(hash32: u32) -> u64 {
    u64::from(hash32).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Byte-slice equality for keys, inlined: sixteen bytes at a time with the last block read
/// overlapping (eight or four for shorter keys), no call into libc's memcmp (which cost 11 % of
/// parse_aggregate/plain/10000 in a profile), not even for the empty tags of a plain line, and
/// no iterator adapters (`profile_ingest 10000 plain`: 489 → 465 instructions per line with
/// eight bytes at a time; sixteen took the realistic 60-byte names at 1 k keys from 515 to 502).
#[inline(always)]
fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n >= 16 {
        let mut i = 0;
        while i + 16 < n {
            if word128(a, i) != word128(b, i) {
                return false;
            }
            i += 16;
        }
        return word128(a, n - 16) == word128(b, n - 16);
    }
    if n >= 8 {
        return word64(a, 0) == word64(b, 0) && word64(a, n - 8) == word64(b, n - 8);
    }
    if n >= 4 {
        return word32(a, 0) == word32(b, 0) && word32(a, n - 4) == word32(b, n - 4);
    }
    let mut i = 0;
    while i < n {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[inline(always)]
fn word128(x: &[u8], at: usize) -> u128 {
    u128::from_ne_bytes(x[at..at + 16].try_into().unwrap())
}

#[inline(always)]
fn word64(x: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(x[at..at + 8].try_into().unwrap())
}

#[inline(always)]
fn word32(x: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(x[at..at + 4].try_into().unwrap())
}

/// What one interval held, taken before [`Tables::clear`] empties it.
struct Used {
    raw: usize,
    raw_bytes: usize,
    series: usize,
    key_bytes: usize,
    counters: usize,
    gauges: usize,
    timers: usize,
    sets: usize,
    members: usize,
    member_bytes: usize,
}

/// Whether a container of `capacity` is worth shrinking after holding `used`: more than 4× that
/// and more than a few KB' worth of elements (small ones are never worth a reallocation).
fn too_roomy(capacity: usize, used: usize) -> bool {
    capacity > 4 * used && capacity > 1024
}

/// Cuts a vector's spare capacity to 2× `used` (or its length, if more) when [`too_roomy`].
fn shrink_vec<T>(v: &mut Vec<T>, used: usize) {
    let used = used.max(v.len());
    if too_roomy(v.capacity(), used) {
        v.shrink_to(2 * used);
    }
}

fn push_slot<T>(v: &mut Vec<T>, x: T) -> usize {
    v.push(x);
    v.len() - 1
}

/// The next slot of a vector whose elements keep buffers across intervals: `v[..*len]` is in use,
/// elements past it were cleared and are reused before a new one is pushed.
fn reuse_slot<T: Default>(v: &mut Vec<T>, len: &mut usize) -> usize {
    if *len == v.len() {
        v.push(T::default());
    }
    *len += 1;
    *len - 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse_line, LineBuf, Parsed};

    fn tables() -> Tables {
        Tables::new(Limits::default())
    }

    /// Records a datagram's lines one by one through the full parser, counting them as the ingest
    /// path does (which has its own tests, against this same line-by-line reading).
    fn feed(t: &mut Tables, datagram: &str) {
        let mut buf = LineBuf::default();
        t.stats.packets += 1;
        for line in datagram.split('\n').map(str::as_bytes).filter(|l| !l.is_empty()) {
            match parse_line(line, &mut buf) {
                Ok(Parsed::Metric { name, tags }) => {
                    t.stats.metrics += 1;
                    for &why in &buf.bad {
                        t.stats.count_bad(why);
                    }
                    if !buf.samples.is_empty() {
                        if let Err(why) = t.record(name, tags, line, &buf.samples) {
                            t.stats.count_bad(why);
                        }
                    }
                }
                Ok(_) => {}
                Err(why) => {
                    t.stats.metrics += 1;
                    t.stats.count_bad(why);
                }
            }
        }
    }

    fn find<'a>(t: &'a Tables, kind: Kind, key: &str) -> Option<SeriesRef<'a>> {
        t.series().find(|s| s.kind == kind && s.key == key)
    }

    #[test]
    fn bytes_eq_agrees_with_slice_equality_at_every_length_and_difference() {
        for n in 0..80usize {
            let a: Vec<u8> = (0..n as u8).map(|i| b'a' + i % 26).collect();
            assert!(bytes_eq(&a, &a.clone()));
            assert!(!bytes_eq(&a, &a[..n.saturating_sub(1)]) || n == 0);
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert!(!bytes_eq(&a, &b), "length {n}, differing at {at}");
            }
        }
    }

    #[test]
    fn counters_sum_with_rates() {
        let mut t = tables();
        feed(&mut t, "a:1|c\na:2|c|@0.5\na:3|c:4|c\nb:-2|c\nb:0.25|c|@0.25");
        let a = find(&t, Kind::Counter, "a").unwrap();
        assert_eq!(t.counters[a.slot], 12.0);
        let b = find(&t, Kind::Counter, "b").unwrap();
        assert_eq!(t.counters[b.slot], -1.0);
        assert_eq!((t.stats.packets, t.stats.metrics, t.stats.bad_total()), (1, 5, 0));
    }

    #[test]
    fn same_name_different_kinds_are_different_series() {
        let mut t = tables();
        feed(&mut t, "x:1|c\nx:2|g\nx:3|ms\nx:a|s");
        assert_eq!(t.series_count(), 4);
    }

    #[test]
    fn spellings_of_one_series_merge() {
        let mut t = tables();
        feed(&mut t, "a b:1|c|#y:2,x:1\na_b:1|c|#x:1,y:2\na/b:1|c");
        assert_eq!(t.series_count(), 2);
        let s = find(&t, Kind::Counter, "a_b;x=1;y=2").unwrap();
        assert_eq!((t.counters[s.slot], s.name_len), (2.0, 3));
        assert!(find(&t, Kind::Counter, "a-b").is_some());
    }

    #[test]
    fn gauges_keep_absolute_then_deltas() {
        let mut t = tables();
        feed(&mut t, "g:10|g\ng:+5|g\ng:-3|g\nh:-4|g\nh:+0.5|g\ni:0|g\ni:-7|g\nj:-1|g\nj:5|g");
        let acc = |k: &str| t.gauges[find(&t, Kind::Gauge, k).unwrap().slot].clone();
        assert_eq!(acc("g"), GaugeAcc { absolute: Some(12.0), deltas: vec![] });
        assert_eq!(acc("h"), GaugeAcc { absolute: None, deltas: vec![-4.0, 0.5] });
        assert_eq!(acc("i"), GaugeAcc { absolute: Some(-7.0), deltas: vec![] });
        assert_eq!(acc("j"), GaugeAcc { absolute: Some(5.0), deltas: vec![] }, "an absolute value resets");
        assert_eq!(acc("h").resolve(10.0), 6.5);
    }

    /// etsy applies each delta to the running value: ((105.101 − 16.8) − 14.3) + 16.4 is
    /// 90.40100000000001, not 105.101 + (−14.7) = 90.401.
    #[test]
    fn deltas_apply_in_order_like_etsy() {
        let g = GaugeAcc { absolute: None, deltas: vec![-16.8, -14.3, 16.4] };
        assert_eq!(g.resolve(105.101), 90.40100000000001);
    }

    #[test]
    fn timers_and_sets() {
        let mut t = tables();
        feed(&mut t, "t:10|ms|@0.1\nt:20.5|ms|@0.1\nt:1:2|h\ns:a|s\ns:b|s\ns:a|s\ns:1|s\nu:x|s\nu:|s\nu:0|s");
        let tm = find(&t, Kind::Timer, "t").unwrap();
        assert_eq!(t.timers[tm.slot].values, vec![10.0, 20.5, 1.0, 2.0]);
        assert_eq!(t.timers[tm.slot].count, 22.0);
        assert_eq!(t.sets[find(&t, Kind::Set, "s").unwrap().slot], 3);
        assert_eq!(t.sets[find(&t, Kind::Set, "u").unwrap().slot], 2, "an empty member is \"0\"");
    }

    #[test]
    fn bad_lines_counted_rest_of_packet_kept() {
        let mut t = tables();
        feed(&mut t, "ok:1|c\nfoo:1\nbar:abc|c\nbaz:-1|ms\nqux:1|c|@x\nok:1|c");
        feed(&mut t, "quux:|c");
        assert_eq!(t.counters[find(&t, Kind::Counter, "ok").unwrap().slot], 2.0);
        assert_eq!((t.stats.packets, t.stats.metrics, t.stats.bad_total()), (2, 7, 5));
        assert_eq!(t.stats.bad(BadLine::BadValue), 2);
        assert_eq!(t.stats.bad(BadLine::NoType), 1);
        assert_eq!(t.stats.bad(BadLine::NegativeTimer), 1);
        assert_eq!(t.stats.bad(BadLine::BadSampleRate), 1);
        assert_eq!(t.series_count(), 1);
    }

    #[test]
    fn max_series_refuses_new_series_only() {
        let mut t = Tables::new(Limits { max_series: 2, ..Limits::default() });
        feed(&mut t, "a:1|c\nb:1|c\nc:1|c\na:1|c\nb:1|ms");
        assert_eq!(t.series_count(), 2);
        assert_eq!(t.stats.bad(BadLine::TooManySeries), 2);
        assert_eq!(t.counters[find(&t, Kind::Counter, "a").unwrap().slot], 2.0);
    }

    #[test]
    fn keys_stay_warm_across_intervals_and_only_touched_series_are_live() {
        let mut t = tables();
        feed(&mut t, "a:1|c\nb:2|ms\nc:3|g\nd:x|s");
        t.clear();
        assert_eq!((t.series_count(), t.held_series()), (0, 4));
        assert_eq!(t.series().count(), 0);
        feed(&mut t, "a:5|c\nb:7|ms\nd:y|s\nd:z|s");
        assert_eq!((t.series_count(), t.held_series()), (3, 4), "hits on warm keys, no new series");
        let live: Vec<&str> = t.series().map(|s| s.key).collect();
        assert_eq!(live, ["a", "b", "d"]);
        assert_eq!(t.counters[find(&t, Kind::Counter, "a").unwrap().slot], 5.0, "reset, not carried over");
        let b = find(&t, Kind::Timer, "b").unwrap().slot;
        assert_eq!(t.sets[find(&t, Kind::Set, "d").unwrap().slot], 2, "members are per interval");
        assert_eq!(t.timers_mut()[b].values, vec![7.0]);
        assert!(find(&t, Kind::Gauge, "c").is_none(), "an untouched gauge is not in the interval");
    }

    #[test]
    fn a_warm_series_counts_towards_max_series_when_it_comes_back() {
        let mut t = Tables::new(Limits { max_series: 2, ..Limits::default() });
        feed(&mut t, "a:1|c\nb:1|c");
        t.clear();
        feed(&mut t, "c:1|c\na:2|c\nb:3|c");
        assert_eq!(t.series_count(), 2);
        assert_eq!(t.stats.bad(BadLine::TooManySeries), 1, "b came back third");
        let live: Vec<&str> = t.series().map(|s| s.key).collect();
        assert_eq!(live, ["a", "c"]);
        assert_eq!(t.counters[find(&t, Kind::Counter, "a").unwrap().slot], 2.0);
    }

    #[test]
    fn keys_mostly_left_untouched_are_forgotten() {
        let mut t = tables();
        let ten: String = (0..10).map(|i| format!("k{i}:1|c\n")).collect();
        feed(&mut t, &ten);
        t.clear();
        feed(&mut t, "k1:1|c\nk2:1|c\nk3:1|c\nk4:1|c\nk5:1|c");
        t.clear();
        assert_eq!(t.held_series(), 10, "half of them touched: kept");
        feed(&mut t, "k1:1|c\nk2:1|c\nk3:1|c\nk4:1|c");
        t.clear();
        assert_eq!(t.held_series(), 0, "fewer than half touched: forgotten");
        feed(&mut t, "k9:1|c");
        assert_eq!((t.series_count(), t.held_series()), (1, 1));
    }

    #[test]
    fn new_key_rules_forget_the_keys_held_sanitized_by_the_old_ones() {
        let short =
            Limits { key: KeyRules { max_name_bytes: 4, ..KeyRules::default() }, ..Limits::default() };
        // A spare (nothing recorded since its clear) forgets them at once.
        let mut t = tables();
        feed(&mut t, "abcdef:1|c");
        t.clear();
        t.set_limits(short.clone());
        assert_eq!(t.held_series(), 0);
        feed(&mut t, "abcdef:1|c");
        assert_eq!((t.series_count(), t.stats.bad(BadLine::NameTooLong)), (0, 1));
        // The active tables keep this interval's series and forget them at its end.
        let mut t = tables();
        feed(&mut t, "abcdef:1|c");
        t.set_limits(short);
        feed(&mut t, "abcdef:1|c");
        assert_eq!(t.counters[find(&t, Kind::Counter, "abcdef").unwrap().slot], 2.0);
        t.clear();
        feed(&mut t, "abcdef:1|c");
        assert_eq!((t.series_count(), t.stats.bad(BadLine::NameTooLong)), (0, 1));
    }

    #[test]
    fn meta_series_bypass_the_limits() {
        let key = KeyRules { max_name_bytes: 4, ..KeyRules::default() };
        let mut t = Tables::new(Limits { key, max_series: 1, ..Limits::default() });
        feed(&mut t, "a:1|c");
        t.add_counter("statsd.bad_lines.too_many_series", 3.0);
        t.set_gauge("statsd.timestamp_lag", 1.5);
        assert_eq!(
            t.counters[find(&t, Kind::Counter, "statsd.bad_lines.too_many_series").unwrap().slot],
            3.0
        );
        assert!(find(&t, Kind::Gauge, "statsd.timestamp_lag").is_some());
        feed(&mut t, "b:1|c");
        assert_eq!(t.stats.bad(BadLine::TooManySeries), 1, "user series still limited");
    }

    #[test]
    fn max_set_members_bounds_sets() {
        let mut t = Tables::new(Limits { max_set_members: 3, ..Limits::default() });
        feed(&mut t, "s:a|s\ns:b|s\nu:a|s\ns:c|s\ns:a|s");
        assert_eq!(t.sets[find(&t, Kind::Set, "s").unwrap().slot], 2);
        assert_eq!(t.stats.bad(BadLine::TooManySetMembers), 1);
    }

    #[test]
    fn past_max_samples_timer_values_are_sketched_and_gauge_deltas_summed() {
        let mut t = Tables::new(Limits { max_samples: 3, ..Limits::default() });
        let lines = "t:1|ms\nt:2|ms\ng:+1|g\nt:3|ms|@0.5\ng:-1|g\ng:+4|g\nh:5|g\nh:+1|g\nk:-2|g\nt:7|ms";
        feed(&mut t, lines);
        assert_eq!((t.stats.bad_total(), t.stats.timer_values_sketched), (0, 2));
        let tm = find(&t, Kind::Timer, "t").unwrap().slot;
        let timer = &mut t.timers_mut()[tm];
        assert_eq!((&timer.values[..], timer.count), (&[1.0, 2.0][..], 5.0), "every value counted");
        let s = timer.spilled().unwrap();
        assert_eq!((s.count, s.sum, s.sum_squares, s.lower, s.upper), (2, 10.0, 58.0, 3.0, 7.0));
        assert_eq!(s.sketch.count(), 2);
        let acc = |k: &str| t.gauges[find(&t, Kind::Gauge, k).unwrap().slot].clone();
        assert_eq!(acc("g").deltas, vec![4.0], "deltas past the budget join the last held one");
        assert_eq!(acc("k").deltas, vec![-2.0], "a gauge's first delta is held regardless");
        assert_eq!(acc("h").absolute, Some(6.0), "a delta on an absolute value holds nothing");
        t.clear();
        feed(&mut t, "t:4|ms");
        let timer = &mut t.timers_mut()[0];
        assert!(timer.spilled().is_none(), "the budget is per interval");
        assert_eq!(timer.values, vec![4.0]);
        t.clear();
        assert!(t.timers[0].sketched.is_none(), "a sketch is kept only while it is used");
    }

    #[test]
    fn a_quiet_interval_gives_back_the_room_of_a_burst() {
        let mut t = tables();
        let burst: String = (0..5000).map(|i| format!("k{i}:1|c\n")).collect();
        feed(&mut t, &burst);
        feed(&mut t, &"t:1|ms\n".repeat(20_000));
        t.clear();
        assert!(t.counters.capacity() >= 5000, "a steady workload keeps its room");
        feed(&mut t, "k1:1|c\nt:1|ms");
        t.clear();
        assert!(t.counters.capacity() <= 1024, "{}", t.counters.capacity());
        assert!(t.timers[0].values.capacity() <= 1024, "{}", t.timers[0].values.capacity());
    }

    #[test]
    fn a_line_refused_by_a_limit_leaves_no_trace() {
        let mut t = Tables::new(Limits { max_series: 1, ..Limits::default() });
        feed(&mut t, "a:1|c:2|ms");
        assert_eq!(t.series_count(), 1);
        assert_eq!(t.counters[0], 0.0, "the counter sample must not be applied");
    }

    #[test]
    fn clear_keeps_capacity_and_forgets_everything() {
        let mut t = tables();
        feed(&mut t, "t:1|ms\nc:1|c\ns:x|s");
        t.clear();
        assert_eq!(t.series_count(), 0);
        assert_eq!(t.stats, IngestStats::default());
        assert!(t.timers.capacity() >= 1);
        feed(&mut t, "t:5|ms");
        assert_eq!(t.timers_mut()[0].values, vec![5.0]);
    }

    #[test]
    fn captured_packets_come_back_in_order() {
        let mut t = tables();
        t.capture_packet(b"a:1|c");
        t.capture_packet(b"");
        t.capture_packet(b"b:2|c\nc:3|c");
        let got: Vec<&[u8]> = t.captured_packets().collect();
        assert_eq!(got, vec![&b"a:1|c"[..], b"", b"b:2|c\nc:3|c"]);
        t.clear();
        assert_eq!(t.captured_packets().count(), 0);
    }
}
