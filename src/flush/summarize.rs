//! Timer statistics, computed exactly as etsy statsd 0.9.0's `process_metrics.js` does (same
//! operations in the same order, so the same f64 bits): cumulative sums over the sorted values,
//! percentiles by JavaScript-rounded counts, population standard deviation, median, histogram
//! bins. Runs on the flush thread.

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

/// Reusable buffers for [`summarize_timer`].
#[derive(Default)]
pub struct Scratch {
    cumul: Vec<f64>,
    cumul_sq: Vec<f64>,
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

    for pct in percentiles {
        pcts.push(percentile(values, cumul, cumul_sq, pct.p));
    }

    let sum = cumul[count - 1];
    let sum_squares = cumul_sq[count - 1];
    let mean = sum / count as f64;
    let mut sum_of_diffs = 0.0;
    for &v in values.iter() {
        sum_of_diffs += (v - mean) * (v - mean);
    }
    let mid = count / 2;
    let median = if count % 2 == 1 { values[mid] } else { (values[mid - 1] + values[mid]) / 2.0 };
    let std = (sum_of_diffs / count as f64).sqrt();

    if let Some(bins) = bins {
        let mut i = 0;
        for bound in bins {
            let mut freq = 0;
            while i < count
                && match bound {
                    BinEdge::Inf => true,
                    BinEdge::Finite(b) => values[i] < *b,
                }
            {
                freq += 1;
                i += 1;
            }
            hist.push(freq);
        }
    }
    TimerStats { lower: min, upper: max, sum, sum_squares, mean, median, std }
}

fn percentile(values: &[f64], cumul: &[f64], cumul_sq: &[f64], pct: f64) -> Option<PctStats> {
    let count = values.len();
    if count == 1 {
        let v = values[0];
        return Some(PctStats { count: 1.0, mean: v, bound: v, sum: v, sum_squares: v * v });
    }
    let k = js_round(pct.abs() / 100.0 * count as f64);
    if k <= 0.0 {
        return None;
    }
    let k = (k as usize).min(count);
    let (bound, sum, sum_squares) = if pct > 0.0 {
        (values[k - 1], cumul[k - 1], cumul_sq[k - 1])
    } else if k == count {
        // etsy reads cumulativeValues[-1] here and emits NaN; we take the whole sum.
        (values[0], cumul[count - 1], cumul_sq[count - 1])
    } else {
        (
            values[count - k],
            cumul[count - 1] - cumul[count - k - 1],
            cumul_sq[count - 1] - cumul_sq[count - k - 1],
        )
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

    #[test]
    fn js_rounding() {
        assert_eq!(js_round(0.5), 1.0);
        assert_eq!(js_round(1.5), 2.0);
        assert_eq!(js_round(2.5), 3.0);
        assert_eq!(js_round(1.1), 1.0);
        assert_eq!(js_round(0.3), 0.0);
    }
}
