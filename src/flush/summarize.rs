//! Timer statistics, computed exactly as etsy statsd 0.9.0's `process_metrics.js` does (same
//! operations in the same order, so the same f64 bits): cumulative sums over the sorted values,
//! percentiles by JavaScript-rounded counts, population standard deviation, median, histogram
//! bins. A timer that went past `max_samples` in its interval is summarized from its exact
//! running figures and its sketch instead (see [`summarize`]). Runs on the flush thread.

use crate::aggregate::{Sketch, TimerAcc, TimerSketch};

/// One configured percentile, the token it gets in names (`90`, `99_9`, `top10`) and its five
/// stat names, built once so that rendering allocates nothing.
#[derive(Clone, Debug, PartialEq)]
pub struct Percentile {
    pub p: f64,
    pub token: String,
    /// `count_P`, `mean_P`, `upper_P` (or `lower_topP`), `sum_P`, `sum_squares_P`.
    pub stat_names: [String; 5],
}

impl Percentile {
    pub fn new(p: f64) -> Percentile {
        // etsy: ('' + pct).replace('.', '_').replace('-', 'top'), first occurrence only
        let token = format!("{p}").replacen('.', "_", 1).replacen('-', "top", 1);
        let bound = if p > 0.0 { "upper" } else { "lower" };
        let stat_names = ["count", "mean", bound, "sum", "sum_squares"].map(|s| format!("{s}_{token}"));
        Percentile { p, token, stat_names }
    }
}

/// A histogram bin's exclusive upper bound.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BinEdge {
    Finite(f64),
    Inf,
}

/// `histograms = [{ metric = "api.", bins = [10, 100, "inf"] }]`: the first rule whose `metric`
/// is a substring of a timer's name gives its bins.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramRule {
    pub metric: String,
    pub bins: Vec<BinEdge>,
    /// `bin_10`, `bin_0_01`, `bin_inf`.
    pub names: Vec<String>,
}

impl HistogramRule {
    pub fn new(metric: String, bins: Vec<BinEdge>) -> HistogramRule {
        let names = bins
            .iter()
            .map(|b| match b {
                BinEdge::Finite(x) => format!("bin_{x}").replacen('.', "_", 1),
                BinEdge::Inf => "bin_inf".to_string(),
            })
            .collect();
        HistogramRule { metric, bins, names }
    }
}

/// Statistics of one percentile (`count_P`, `mean_P`, `upper_P`/`lower_topP`, `sum_P`,
/// `sum_squares_P`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PctStats {
    pub count: f64,
    pub mean: f64,
    pub bound: f64,
    pub sum: f64,
    pub sum_squares: f64,
}

/// The full statistics of a timer that had values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimerStats {
    pub lower: f64,
    pub upper: f64,
    pub sum: f64,
    pub sum_squares: f64,
    pub mean: f64,
    pub median: f64,
    pub std: f64,
}

/// Reusable buffers for [`summarize_timer`] and [`summarize`].
#[derive(Default)]
pub struct Scratch {
    cumul: Vec<f64>,
    cumul_sq: Vec<f64>,
    /// A spilled timer's buckets: value, values up to and including it, and their sums.
    reps: Vec<f64>,
    ends: Vec<u64>,
}

/// The statistics of one interval's timer, `None` when it had no value. A timer that stayed
/// within `max_samples` gets [`summarize_timer`], etsy's exact maths. One that spilled gets
/// `count`, `lower`, `upper`, `sum`, `sum_squares` and `mean` exact over every value, `std` from
/// the exact mean and squared deviations, and its percentiles, median and histogram bins from its
/// sketch, with its held values merged in: each within
/// [`RELATIVE_ERROR`](crate::aggregate::sketch::RELATIVE_ERROR) of the exact value
/// (`sum_squares_P` within twice that), bins exact but for values within that distance of a bound.
pub fn summarize(
    timer: &mut TimerAcc,
    percentiles: &[Percentile],
    bins: Option<&[BinEdge]>,
    scratch: &mut Scratch,
    pcts: &mut Vec<Option<PctStats>>,
    hist: &mut Vec<u64>,
) -> Option<TimerStats> {
    let TimerAcc { values, sketched, .. } = timer;
    match sketched.as_deref_mut().filter(|s| s.count > 0) {
        Some(spill) => {
            values.sort_unstable_by(f64::total_cmp);
            let mut stats = spilled_figures(values, spill);
            spill.sketch.insert_sorted(values);
            let sorted = ranked_buckets(&spill.sketch, stats.lower, stats.upper, scratch);
            ranked_stats(&sorted, percentiles, bins, pcts, hist);
            stats.median = median(&sorted);
            Some(stats)
        }
        None if values.is_empty() => None,
        None => Some(summarize_timer(values, percentiles, bins, scratch, pcts, hist)),
    }
}

/// A timer's values in ascending order, as the percentiles, median and bins read them.
trait Ranked {
    fn len(&self) -> usize;
    /// The `i`-th smallest value (from 0).
    fn value(&self, i: usize) -> f64;
    /// The sum and the sum of squares of the `i + 1` smallest values.
    fn cumul(&self, i: usize) -> (f64, f64);
    /// How many values are below `bound`.
    fn below(&self, bound: f64) -> usize;
}

/// Sorted values with etsy's cumulative sums.
struct Exact<'a> {
    values: &'a [f64],
    cumul: &'a [f64],
    cumul_sq: &'a [f64],
}

impl Ranked for Exact<'_> {
    fn len(&self) -> usize {
        self.values.len()
    }
    fn value(&self, i: usize) -> f64 {
        self.values[i]
    }
    fn cumul(&self, i: usize) -> (f64, f64) {
        (self.cumul[i], self.cumul_sq[i])
    }
    fn below(&self, bound: f64) -> usize {
        self.values.partition_point(|v| *v < bound)
    }
}

/// A sketch's buckets, ascending: each bucket's value and the cumulative count and sums through
/// it.
struct Buckets<'a> {
    reps: &'a [f64],
    ends: &'a [u64],
    cumul: &'a [f64],
    cumul_sq: &'a [f64],
}

impl Buckets<'_> {
    /// The bucket holding the `i`-th smallest value.
    fn bucket(&self, i: usize) -> usize {
        self.ends.partition_point(|&e| e <= i as u64)
    }
}

impl Ranked for Buckets<'_> {
    fn len(&self) -> usize {
        self.ends.last().map_or(0, |&n| n as usize)
    }
    fn value(&self, i: usize) -> f64 {
        self.reps[self.bucket(i)]
    }
    fn cumul(&self, i: usize) -> (f64, f64) {
        let b = self.bucket(i);
        let v = self.reps[b];
        let (before, sum, sum_sq) = match b.checked_sub(1) {
            Some(p) => (self.ends[p], self.cumul[p], self.cumul_sq[p]),
            None => (0, 0.0, 0.0),
        };
        let n = (i as u64 + 1 - before) as f64;
        (sum + v * n, sum_sq + v * v * n)
    }
    fn below(&self, bound: f64) -> usize {
        match self.reps.partition_point(|r| *r < bound).checked_sub(1) {
            Some(p) => self.ends[p] as usize,
            None => 0,
        }
    }
}

/// Sorts `values` (non-empty) in place and computes the timer's statistics; appends one entry per
/// percentile to `pcts` (`None` where etsy emits nothing) and, when `bins` is given, one count per
/// bin to `hist`.
pub fn summarize_timer(
    values: &mut [f64],
    percentiles: &[Percentile],
    bins: Option<&[BinEdge]>,
    scratch: &mut Scratch,
    pcts: &mut Vec<Option<PctStats>>,
    hist: &mut Vec<u64>,
) -> TimerStats {
    values.sort_unstable_by(f64::total_cmp);
    let count = values.len();
    let (min, max) = (values[0], values[count - 1]);
    let (cumul, cumul_sq) = (&mut scratch.cumul, &mut scratch.cumul_sq);
    cumul.clear();
    cumul_sq.clear();
    cumul.push(min);
    cumul_sq.push(min * min);
    for i in 1..count {
        cumul.push(values[i] + cumul[i - 1]);
        cumul_sq.push(values[i] * values[i] + cumul_sq[i - 1]);
    }
    let sorted = Exact { values, cumul, cumul_sq };
    ranked_stats(&sorted, percentiles, bins, pcts, hist);

    let sum = cumul[count - 1];
    let sum_squares = cumul_sq[count - 1];
    let mean = sum / count as f64;
    let mut sum_of_diffs = 0.0;
    for &v in values.iter() {
        sum_of_diffs += (v - mean) * (v - mean);
    }
    let median = median(&sorted);
    let std = (sum_of_diffs / count as f64).sqrt();
    TimerStats { lower: min, upper: max, sum, sum_squares, mean, median, std }
}

/// The exact figures of a timer that spilled: `values` are the ones it held (maybe none), `spill`
/// the rest. The median is left for the sketch.
fn spilled_figures(values: &[f64], spill: &TimerSketch) -> TimerStats {
    let held = values.len() as f64;
    let (mut lower, mut upper) = (spill.lower, spill.upper);
    let (mut sum_squares, mut held_sum) = (spill.sum_squares, 0.0);
    for &v in values {
        (lower, upper) = (lower.min(v), upper.max(v));
        held_sum += v;
        sum_squares += v * v;
    }
    let sum = spill.sum + held_sum;
    let count = held + spill.count as f64;
    let mean = sum / count;
    // Squared deviations: the held values' about their mean, the sketched ones' (Welford), and
    // the term for the gap between the two means (Chan et al.).
    let held_mean = if values.is_empty() { 0.0 } else { held_sum / held };
    let held_m2: f64 = values.iter().map(|v| (v - held_mean) * (v - held_mean)).sum();
    let gap = spill.mean - held_mean;
    let m2 = held_m2 + spill.m2 + gap * gap * held * spill.count as f64 / count;
    let std = (m2.max(0.0) / count).sqrt();
    TimerStats { lower, upper, sum, sum_squares, mean, median: 0.0, std }
}

/// The sketch's buckets with cumulative counts and sums, each bucket's value clamped to the exact
/// `[lower, upper]` (which only brings it closer to the values it holds).
fn ranked_buckets<'a>(sketch: &Sketch, lower: f64, upper: f64, scratch: &'a mut Scratch) -> Buckets<'a> {
    let Scratch { cumul, cumul_sq, reps, ends } = scratch;
    cumul.clear();
    cumul_sq.clear();
    reps.clear();
    ends.clear();
    let (mut n, mut s, mut sq) = (0, 0.0, 0.0);
    for (rep, k) in sketch.iter() {
        let rep = rep.clamp(lower, upper);
        n += k;
        s += rep * k as f64;
        sq += rep * rep * k as f64;
        reps.push(rep);
        ends.push(n);
        cumul.push(s);
        cumul_sq.push(sq);
    }
    Buckets { reps, ends, cumul, cumul_sq }
}

/// The percentiles and histogram bins of non-empty sorted values.
fn ranked_stats(
    sorted: &impl Ranked,
    percentiles: &[Percentile],
    bins: Option<&[BinEdge]>,
    pcts: &mut Vec<Option<PctStats>>,
    hist: &mut Vec<u64>,
) {
    for pct in percentiles {
        pcts.push(percentile(sorted, pct.p));
    }
    let mut i = 0;
    for bound in bins.unwrap_or_default() {
        let end = match bound {
            BinEdge::Inf => sorted.len(),
            BinEdge::Finite(b) => sorted.below(*b).max(i),
        };
        hist.push((end - i) as u64);
        i = end;
    }
}

fn median(sorted: &impl Ranked) -> f64 {
    let count = sorted.len();
    let mid = count / 2;
    if count % 2 == 1 {
        sorted.value(mid)
    } else {
        (sorted.value(mid - 1) + sorted.value(mid)) / 2.0
    }
}

fn percentile(sorted: &impl Ranked, pct: f64) -> Option<PctStats> {
    let count = sorted.len();
    if count == 1 {
        let v = sorted.value(0);
        return Some(PctStats { count: 1.0, mean: v, bound: v, sum: v, sum_squares: v * v });
    }
    let k = js_round(pct.abs() / 100.0 * count as f64);
    if k <= 0.0 {
        return None;
    }
    let k = (k as usize).min(count);
    let (bound, (sum, sum_squares)) = if pct > 0.0 {
        (sorted.value(k - 1), sorted.cumul(k - 1))
    } else if k == count {
        // etsy reads cumulativeValues[-1] here and emits NaN; we take the whole sum.
        (sorted.value(0), sorted.cumul(count - 1))
    } else {
        let (all, all_sq) = sorted.cumul(count - 1);
        let (below, below_sq) = sorted.cumul(count - k - 1);
        (sorted.value(count - k), (all - below, all_sq - below_sq))
    };
    Some(PctStats { count: k as f64, mean: sum / k as f64, bound, sum, sum_squares })
}

/// JavaScript's `Math.round`: halves round towards +∞.
fn js_round(x: f64) -> f64 {
    (x + 0.5).floor()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::sketch::tests::Rng;

    fn run(
        values: &[f64],
        pcts: &[f64],
        bins: Option<&[BinEdge]>,
    ) -> (TimerStats, Vec<Option<PctStats>>, Vec<u64>) {
        let mut v = values.to_vec();
        let pcts: Vec<_> = pcts.iter().map(|&p| Percentile::new(p)).collect();
        let (mut out, mut hist) = (Vec::new(), Vec::new());
        let s = summarize_timer(&mut v, &pcts, bins, &mut Scratch::default(), &mut out, &mut hist);
        (s, out, hist)
    }

    #[test]
    fn tokens() {
        let t: Vec<_> = [90.0, 99.9, -10.0, 50.0, 99.99].iter().map(|&p| Percentile::new(p).token).collect();
        assert_eq!(t, ["90", "99_9", "top10", "50", "99_99"]);
        let r =
            HistogramRule::new("x".into(), vec![BinEdge::Finite(0.01), BinEdge::Finite(10.0), BinEdge::Inf]);
        assert_eq!(r.names, ["bin_0_01", "bin_10", "bin_inf"]);
    }

    /// The etsy vector `timers.json`, second interval.
    #[test]
    fn matches_etsy_eleven_values() {
        let (s, p, _) = run(&[3., 1., 4., 1., 5., 9., 2., 6., 5., 3., 5.], &[90., 99.9, -10., 50.], None);
        assert_eq!((s.mean, s.median, s.sum, s.sum_squares), (4.0, 4.0, 44.0, 232.0));
        assert_eq!(s.std, 2.256304299271065);
        let p90 = p[0].unwrap();
        assert_eq!((p90.count, p90.bound, p90.sum, p90.sum_squares, p90.mean), (10.0, 6.0, 35.0, 151.0, 3.5));
        let top10 = p[2].unwrap();
        assert_eq!((top10.count, top10.bound, top10.sum, top10.sum_squares), (1.0, 9.0, 9.0, 81.0));
        let p50 = p[3].unwrap();
        assert_eq!((p50.count, p50.mean, p50.bound), (6.0, 2.3333333333333335, 4.0));
    }

    #[test]
    fn small_counts_skip_zero_percentiles() {
        let (s, p, _) = run(&[10., 20.5, 30.], &[50., -10.], None);
        assert_eq!(s.std, 8.16836716989523);
        assert_eq!(p[0].unwrap().count, 2.0);
        assert_eq!(p[1], None, "round(0.3) = 0: nothing for top10");
        let (_, p, _) = run(&[5.], &[-10.], None);
        assert_eq!(
            p[0].unwrap(),
            PctStats { count: 1.0, mean: 5.0, bound: 5.0, sum: 5.0, sum_squares: 25.0 }
        );
    }

    #[test]
    fn negative_percentile_over_everything_is_finite() {
        let (_, p, _) = run(&[1., 2., 3.], &[-100.], None);
        assert_eq!(
            p[0].unwrap(),
            PctStats { count: 3.0, mean: 2.0, bound: 1.0, sum: 6.0, sum_squares: 14.0 }
        );
    }

    #[test]
    fn histogram_bins_exclusive_not_cumulative() {
        let bins = [BinEdge::Finite(10.0), BinEdge::Finite(100.0), BinEdge::Inf];
        let (_, _, h) = run(&[1., 9., 10., 50., 100., 5000.], &[], Some(&bins));
        assert_eq!(h, vec![2, 2, 2]);
        let bins = [BinEdge::Finite(0.01), BinEdge::Finite(0.1)];
        let (s, _, h) = run(&[0.001, 0.05, 0.1, 2.], &[], Some(&bins));
        assert_eq!(h, vec![1, 1], "values at or above the last finite bound are not counted");
        assert_eq!(s.median, 0.07500000000000001);
    }

    /// Whole milliseconds, mostly small with a long tail, like latencies.
    fn latency(rng: &mut Rng) -> f64 {
        let r = rng.next();
        let scale = [10, 100, 1000, 100_000][(r % 4) as usize];
        ((r >> 8) % scale) as f64
    }

    /// A timer that held its first `held` values and sketched the rest.
    fn spilled_timer(values: &[f64], held: usize) -> TimerAcc {
        let mut t = TimerAcc { values: values[..held].to_vec(), count: values.len() as f64, sketched: None };
        let mut s = TimerSketch::default();
        values[held..].iter().for_each(|&v| s.add(v));
        t.sketched = Some(Box::new(s));
        t
    }

    fn close(got: f64, want: f64, rel: f64) -> bool {
        (got - want).abs() <= want.abs() * rel + 1e-9
    }

    /// Every figure of a spilled timer against etsy's exact maths over the same values: exact
    /// where the sums are exact (whole numbers), within the stated bound where a sketch answers.
    #[test]
    fn a_spilled_timer_is_exact_in_its_sums_and_within_the_bound_elsewhere() {
        const E: f64 = crate::aggregate::sketch::RELATIVE_ERROR;
        let pcts: Vec<_> =
            [90.0, 99.0, 50.0, -10.0, 0.1, -100.0].iter().map(|&p| Percentile::new(p)).collect();
        let bounds = [BinEdge::Finite(5.0), BinEdge::Finite(50.0), BinEdge::Finite(5000.0), BinEdge::Inf];
        for seed in 1..=40u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let n = 1 + (rng.next() % 3000) as usize;
            let values: Vec<f64> = (0..n).map(|_| latency(&mut rng)).collect();
            let held = (rng.next() % n as u64) as usize;
            let (mut want_p, mut want_h) = (Vec::new(), Vec::new());
            let mut sorted = values.clone();
            let want = summarize_timer(
                &mut sorted,
                &pcts,
                Some(&bounds),
                &mut Scratch::default(),
                &mut want_p,
                &mut want_h,
            );
            let mut timer = spilled_timer(&values, held);
            let (mut got_p, mut got_h) = (Vec::new(), Vec::new());
            let got =
                summarize(&mut timer, &pcts, Some(&bounds), &mut Scratch::default(), &mut got_p, &mut got_h)
                    .unwrap();
            let at = format!("seed {seed}, {n} values, {held} held");
            assert_eq!(
                (got.lower, got.upper, got.sum, got.sum_squares),
                (want.lower, want.upper, want.sum, want.sum_squares),
                "{at}"
            );
            assert_eq!(got.mean, want.mean, "{at}");
            assert!(close(got.std, want.std, 1e-9), "{at}: std {} for {}", got.std, want.std);
            assert!(close(got.median, want.median, E), "{at}: median {} for {}", got.median, want.median);
            for (i, (g, w)) in got_p.iter().zip(&want_p).enumerate() {
                let (Some(g), Some(w)) = (g, w) else {
                    assert_eq!(g.is_none(), w.is_none(), "{at}: percentile {i}");
                    continue;
                };
                assert_eq!(g.count, w.count, "{at}: percentile {i}");
                assert!(close(g.bound, w.bound, E), "{at}: percentile {i} bound {} for {}", g.bound, w.bound);
                assert!(close(g.sum, w.sum, E), "{at}: percentile {i} sum {} for {}", g.sum, w.sum);
                assert!(close(g.mean, w.mean, E), "{at}: percentile {i} mean");
                assert!(close(g.sum_squares, w.sum_squares, 2.0 * E + E * E), "{at}: percentile {i} squares");
            }
            // A value can change bins only when it lies within the bound of a bin's edge.
            let near = |b: f64| values.iter().filter(|&&v| (v - b).abs() <= b * E).count() as i64;
            let mut edge_near = 0;
            for (i, bound) in bounds.iter().enumerate() {
                let here = if let BinEdge::Finite(b) = bound { near(*b) } else { 0 };
                let diff = (got_h[i] as i64 - want_h[i] as i64).abs();
                assert!(diff <= here + edge_near, "{at}: bin {i}: {} for {}", got_h[i], want_h[i]);
                edge_near = here;
            }
            assert_eq!(got_h.iter().sum::<u64>(), n as u64, "{at}");
        }
    }

    #[test]
    fn a_timer_within_the_budget_is_summarized_exactly() {
        let values = [3., 1., 4., 1., 5., 9., 2., 6., 5., 3., 5.];
        let pcts = [Percentile::new(90.0)];
        let mut timer = TimerAcc { values: values.to_vec(), count: 11.0, sketched: Some(Box::default()) };
        let (mut p, mut h) = (Vec::new(), Vec::new());
        let s = summarize(&mut timer, &pcts, None, &mut Scratch::default(), &mut p, &mut h).unwrap();
        let (want, want_p, _) = run(&values, &[90.0], None);
        assert_eq!((s, &p), (want, &want_p), "an emptied sketch does not count");
        let mut idle = TimerAcc::default();
        assert_eq!(summarize(&mut idle, &pcts, None, &mut Scratch::default(), &mut p, &mut h), None);
    }

    #[test]
    fn a_timer_of_one_sketched_value_is_exact() {
        let mut timer = spilled_timer(&[12.5], 0);
        let (mut p, mut h) = (Vec::new(), Vec::new());
        let pcts = [Percentile::new(90.0), Percentile::new(-10.0)];
        let s = summarize(&mut timer, &pcts, None, &mut Scratch::default(), &mut p, &mut h).unwrap();
        assert_eq!((s.lower, s.upper, s.median, s.std), (12.5, 12.5, 12.5, 0.0));
        let one = PctStats { count: 1.0, mean: 12.5, bound: 12.5, sum: 12.5, sum_squares: 156.25 };
        assert_eq!(p, vec![Some(one), Some(one)]);
    }

    #[test]
    fn js_rounding() {
        assert_eq!(js_round(0.5), 1.0);
        assert_eq!(js_round(1.5), 2.0);
        assert_eq!(js_round(2.5), 3.0);
        assert_eq!(js_round(1.1), 1.0);
        assert_eq!(js_round(0.3), 0.0);
    }
}
