//! The bounded summary a timer falls back to once an interval holds `max_samples` values: exact
//! running figures (count, sum, sum of squares, lower, upper, mean and spread) and a log-bucket
//! sketch for the order statistics (percentiles, median, histogram bins). Filled by the ingest
//! thread, read and merged by the flush thread after the swap.
//!
//! The sketch. A non-negative f64 is a sign bit of 0, an 11-bit exponent and a 52-bit mantissa,
//! and its bit pattern grows with its value. The bucket of a value is its bit pattern shifted
//! right by 46: the exponent and the top 6 mantissa bits, so 64 buckets per power of two, each
//! `[2^e (1 + m/64), 2^e (1 + (m+1)/64))`. A bucket stands for its midpoint, which is within
//! `2^e / 128` of every value in it, and every value in it is at least `2^e`: the midpoint is
//! within [`RELATIVE_ERROR`] (1/128, 0.79 %) of each value it stands for. Counts per bucket are
//! exact, so the k-th smallest value of the sketch is the midpoint of the bucket that holds the
//! true k-th smallest value: a percentile is the right rank and a value within 0.79 % of the
//! exact one. Finding a bucket costs a shift, no logarithm.
//!
//! Buckets are kept sparse (sorted `(bucket, count)` pairs), so a sketch holds 16 bytes per
//! bucket in use, never more than [`MAX_BUCKETS`] (32 KiB). 2048 buckets span 32 powers of two, a
//! ratio of 4·10⁹ between a timer's smallest and largest value, which real timers stay within;
//! past it the lowest buckets are merged into one (the smallest values then read high, the upper
//! percentiles keep their bound). Zero (and values below 2⁻¹⁰²⁸) are counted apart and read as 0.
//! A sketch is cleared, never dropped, between intervals, so a timer that keeps spilling
//! allocates nothing once its buckets exist. Two sketches merge exactly (bucket counts add).

/// Every value a sketch returns is within this fraction of the exact one (for values of at least
/// `f64::MIN_POSITIVE`; zero is exact).
pub const RELATIVE_ERROR: f64 = 1.0 / 128.0;

/// The most buckets a sketch keeps; past it the lowest ones are merged.
pub const MAX_BUCKETS: usize = 2048;

/// Right shift from a value's bits to its bucket: keeps the exponent and 6 mantissa bits.
const SHIFT: u32 = 52 - 6;

/// The bucket of a non-negative value; 0 for zero (and anything below 2⁻¹⁰²⁸).
#[inline(always)]
fn bucket_of(v: f64) -> u32 {
    if v > 0.0 {
        (v.to_bits() >> SHIFT) as u32
    } else {
        0
    }
}

/// The value a bucket stands for: its midpoint (0 for bucket 0).
fn midpoint(bucket: u32) -> f64 {
    let lo = f64::from_bits((bucket as u64) << SHIFT);
    // 2^e of the bucket's binade, a 64th of it being the bucket's width.
    let binade = f64::from_bits(((bucket >> 6) as u64) << 52);
    lo + binade / 128.0
}

/// Counts of values by log bucket (see the module documentation).
#[derive(Clone, Debug, PartialEq)]
pub struct Sketch {
    zeros: u64,
    /// `(bucket, count)`, by bucket, every count above 0.
    buckets: Vec<(u32, u64)>,
    /// The previous bucket vector, kept for the next merge.
    spare: Vec<(u32, u64)>,
    max_buckets: usize,
}

impl Default for Sketch {
    fn default() -> Sketch {
        Sketch::with_max_buckets(MAX_BUCKETS)
    }
}

impl Sketch {
    /// A sketch that keeps at most `max` buckets (at least 1).
    pub fn with_max_buckets(max: usize) -> Sketch {
        Sketch { zeros: 0, buckets: Vec::new(), spare: Vec::new(), max_buckets: max.max(1) }
    }

    /// Counts one more value (non-negative; timers refuse negative ones before this).
    #[inline]
    pub fn insert(&mut self, v: f64) {
        let b = bucket_of(v);
        if b == 0 {
            self.zeros += 1;
            return;
        }
        match self.buckets.binary_search_by_key(&b, |&(k, _)| k) {
            Ok(i) => self.buckets[i].1 += 1,
            Err(i) => self.new_bucket(i, b),
        }
    }

    #[cold]
    fn new_bucket(&mut self, at: usize, bucket: u32) {
        self.buckets.insert(at, (bucket, 1));
        self.collapse();
    }

    /// Counts every value of `sorted` (ascending, non-negative), in one pass.
    pub fn insert_sorted(&mut self, sorted: &[f64]) {
        let mut zeros = 0;
        let runs = sorted.chunk_by(|a, b| bucket_of(*a) == bucket_of(*b)).filter_map(|run| {
            let b = bucket_of(run[0]);
            if b == 0 {
                zeros += run.len() as u64;
                None
            } else {
                Some((b, run.len() as u64))
            }
        });
        self.merge_runs(runs);
        self.zeros += zeros;
    }

    /// Adds every value counted in `other`.
    pub fn merge(&mut self, other: &Sketch) {
        self.zeros += other.zeros;
        self.merge_runs(other.buckets.iter().copied());
    }

    /// Merges ascending `(bucket, count)` runs into the buckets.
    fn merge_runs(&mut self, runs: impl Iterator<Item = (u32, u64)>) {
        let mut out = std::mem::take(&mut self.spare);
        out.clear();
        let mut old = self.buckets.iter().copied().peekable();
        for (b, n) in runs {
            while let Some(e) = old.next_if(|e| e.0 < b) {
                out.push(e);
            }
            match old.next_if(|e| e.0 == b) {
                Some((_, m)) => out.push((b, m + n)),
                None => out.push((b, n)),
            }
        }
        out.extend(old);
        self.spare = std::mem::replace(&mut self.buckets, out);
        self.collapse();
    }

    /// Merges the lowest buckets into one while there are more than `max_buckets`.
    fn collapse(&mut self) {
        let excess = self.buckets.len().saturating_sub(self.max_buckets);
        if excess > 0 {
            let merged: u64 = self.buckets[..=excess].iter().map(|e| e.1).sum();
            self.buckets[excess].1 = merged;
            self.buckets.drain(..excess);
        }
    }

    /// How many values were counted.
    pub fn count(&self) -> u64 {
        self.zeros + self.buckets.iter().map(|e| e.1).sum::<u64>()
    }

    /// Buckets in use (zero's included).
    pub fn buckets(&self) -> usize {
        self.buckets.len() + usize::from(self.zeros > 0)
    }

    /// `(value, count)` of every bucket in use, ascending: what the sketch knows.
    pub fn iter(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let zeros = (self.zeros > 0).then_some((0.0, self.zeros));
        zeros.into_iter().chain(self.buckets.iter().map(|&(b, n)| (midpoint(b), n)))
    }

    /// Forgets every value, keeping the room.
    pub fn clear(&mut self) {
        self.zeros = 0;
        self.buckets.clear();
    }
}

/// A timer's figures past `max_samples` in an interval: exact count, sums and extremes of the
/// values that were not held, Welford's running mean and squared deviations for the standard
/// deviation, and the [`Sketch`] of them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TimerSketch {
    pub count: u64,
    pub sum: f64,
    pub sum_squares: f64,
    pub lower: f64,
    pub upper: f64,
    pub mean: f64,
    /// Σ (v − mean)² over these values.
    pub m2: f64,
    pub sketch: Sketch,
}

impl TimerSketch {
    /// Counts one value (ingest thread).
    #[inline]
    pub fn add(&mut self, v: f64) {
        if self.count == 0 {
            (self.lower, self.upper) = (v, v);
        } else {
            self.lower = self.lower.min(v);
            self.upper = self.upper.max(v);
        }
        self.count += 1;
        self.sum += v;
        self.sum_squares += v * v;
        let delta = v - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (v - self.mean);
        self.sketch.insert(v);
    }

    /// Forgets every value, keeping the sketch's room.
    pub fn clear(&mut self) {
        let mut sketch = std::mem::take(&mut self.sketch);
        sketch.clear();
        *self = TimerSketch { sketch, ..TimerSketch::default() };
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// xorshift64*, fixed seeds: reproducible random inputs.
    pub(crate) struct Rng(pub u64);

    impl Rng {
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
        /// A timer-like value: log-uniform over 10⁻³..10⁶, sometimes an integer, sometimes 0.
        fn value(&mut self) -> f64 {
            match self.next() % 10 {
                0 => 0.0,
                1 | 2 => (self.next() % 1000) as f64,
                _ => 10f64.powf(self.unit() * 9.0 - 3.0),
            }
        }
    }

    /// The sketch's k-th smallest value (0-based), by walking its buckets.
    fn kth(s: &Sketch, k: u64) -> f64 {
        let mut seen = 0;
        for (v, n) in s.iter() {
            seen += n;
            if seen > k {
                return v;
            }
        }
        panic!("rank {k} beyond {seen} values");
    }

    fn within(got: f64, want: f64) -> bool {
        (got - want).abs() <= want * RELATIVE_ERROR
    }

    #[test]
    fn every_rank_is_within_the_relative_error_on_random_inputs() {
        for seed in 1..=20u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let n = 1 + (rng.next() % 5000) as usize;
            let mut values: Vec<f64> = (0..n).map(|_| rng.value()).collect();
            let mut s = Sketch::default();
            for &v in &values {
                s.insert(v);
            }
            values.sort_unstable_by(f64::total_cmp);
            assert_eq!(s.count(), n as u64);
            for (k, &want) in values.iter().enumerate() {
                let got = kth(&s, k as u64);
                assert!(within(got, want), "seed {seed}, rank {k}: {got} for {want}");
            }
        }
    }

    #[test]
    fn the_bound_is_tight_at_bucket_edges_and_zero_is_exact() {
        for v in [1.0, 1.015625, 1.0156249999, 2.0 - 1e-12, 1e-300, 3.5e300, f64::MAX, f64::MIN_POSITIVE] {
            let mut s = Sketch::default();
            s.insert(v);
            let got = kth(&s, 0);
            assert!(within(got, v), "{v}: {got}");
            assert!(got.is_finite());
        }
        let mut s = Sketch::default();
        s.insert(0.0);
        s.insert(-0.0);
        assert_eq!((kth(&s, 0), kth(&s, 1), s.buckets()), (0.0, 0.0, 1));
    }

    #[test]
    fn inserting_sorted_or_merging_equals_inserting_one_by_one() {
        let mut rng = Rng(7);
        let a: Vec<f64> = (0..3000).map(|_| rng.value()).collect();
        let b: Vec<f64> = (0..2000).map(|_| rng.value()).collect();
        let mut one_by_one = Sketch::default();
        a.iter().chain(&b).for_each(|&v| one_by_one.insert(v));

        let mut sorted_b = b.clone();
        sorted_b.sort_unstable_by(f64::total_cmp);
        let mut by_run = Sketch::default();
        a.iter().for_each(|&v| by_run.insert(v));
        by_run.insert_sorted(&sorted_b);
        assert!(by_run.iter().eq(one_by_one.iter()));

        let (mut left, mut right) = (Sketch::default(), Sketch::default());
        a.iter().for_each(|&v| left.insert(v));
        b.iter().for_each(|&v| right.insert(v));
        left.merge(&right);
        assert!(left.iter().eq(one_by_one.iter()));
    }

    #[test]
    fn buckets_stay_bounded_and_the_upper_ranks_keep_their_bound() {
        let mut s = Sketch::with_max_buckets(64);
        let values: Vec<f64> = (0..4000).map(|i| 1.01f64.powi(i)).collect();
        for &v in &values {
            s.insert(v);
        }
        assert_eq!(s.buckets(), 64);
        assert_eq!(s.count(), 4000);
        // Above the lowest bucket kept (which took in every lower one), every rank keeps its bound.
        let kept = values.iter().filter(|&&v| bucket_of(v) > s.buckets[0].0).count();
        assert!(kept > 60, "{kept}");
        for (k, &v) in values.iter().enumerate().skip(4000 - kept) {
            assert!(within(kth(&s, k as u64), v), "rank {k}");
        }
        assert!(kth(&s, 0) >= values[0], "merged low values read high, never low");
    }

    #[test]
    fn clearing_keeps_the_room() {
        let mut t = TimerSketch::default();
        (1..=500).for_each(|i| t.add(i as f64));
        assert_eq!((t.count, t.sum, t.lower, t.upper, t.mean), (500, 125250.0, 1.0, 500.0, 250.5));
        let room = t.sketch.buckets.capacity();
        t.clear();
        assert_eq!((t.count, t.sketch.count(), t.sketch.buckets.capacity()), (0, 0, room));
        t.add(3.0);
        assert_eq!((t.lower, t.upper, t.m2), (3.0, 3.0, 0.0));
    }
}
