//! The tests the judge uses: Fisher's exact test (one-sided, hypergeometric tail),
//! Mann–Whitney U (normal approximation with tie and continuity corrections), the
//! Hodges–Lehmann shift with its distribution-free confidence interval, and quantiles.
//!
//! Everything works on [`Samples`]: sorted distinct values with counts, so raw
//! samples and histogram buckets go through the same code, and ties are exact.

use statrs::distribution::{ContinuousCDF, Normal};
use statrs::function::erf::erfc;
use statrs::function::factorial::ln_binomial;

use super::sample::Samples;

/// Upper tail of the standard normal: P(Z ≥ z).
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The standard normal quantile for probability `p` (0 < p < 1).
pub fn normal_quantile(p: f64) -> f64 {
    Normal::standard().inverse_cdf(p)
}

/// P(X ≥ k) for X hypergeometric: `draws` drawn from `population` of which
/// `successes` are successes. This is the one-sided p-value of Fisher's exact test
/// for "the drawn row has more successes than chance" (`k` = its successes).
///
/// Sums the tail away from the mode with the ratio of successive terms, so it is
/// exact to rounding and needs no more terms than the tail has mass.
pub fn hypergeom_sf(k: u64, population: u64, successes: u64, draws: u64) -> f64 {
    let (n_pop, big_k, n) = (population, successes.min(population), draws.min(population));
    let lo = (n + big_k).saturating_sub(n_pop);
    let hi = big_k.min(n);
    if k <= lo {
        return 1.0;
    }
    if k > hi {
        return 0.0;
    }
    let ln_pmf =
        |x: u64| ln_binomial(big_k, x) + ln_binomial(n_pop - big_k, n - x) - ln_binomial(n_pop, n);
    let (nf, kf, popf) = (n as f64, big_k as f64, n_pop as f64);
    let mode = ((nf + 1.0) * (kf + 1.0) / (popf + 2.0)).floor() as u64;
    if k > mode {
        // Upper tail from k: terms only decrease.
        let mut term = ln_pmf(k).exp();
        let mut sum = term;
        let mut x = k;
        while x < hi {
            let xf = x as f64;
            term *= (kf - xf) * (nf - xf) / ((xf + 1.0) * (popf - kf - nf + xf + 1.0));
            sum += term;
            x += 1;
            if term <= sum * 1e-17 {
                break;
            }
        }
        sum.min(1.0)
    } else {
        // 1 - P(X ≤ k-1), the lower tail summed downwards from k-1.
        let mut x = k - 1;
        let mut term = ln_pmf(x).exp();
        let mut sum = term;
        while x > lo {
            let xf = x as f64;
            term *= xf * (popf - kf - nf + xf) / ((kf - xf + 1.0) * (nf - xf + 1.0));
            sum += term;
            x -= 1;
            if term <= sum * 1e-17 {
                break;
            }
        }
        (1.0 - sum).clamp(0.0, 1.0)
    }
}

/// P(X ≤ k) for the same hypergeometric distribution.
pub fn hypergeom_cdf(k: u64, population: u64, successes: u64, draws: u64) -> f64 {
    1.0 - hypergeom_sf(k + 1, population, successes, draws)
}

/// Mann–Whitney U of `canary` against `baseline`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U of the canary: the number of (canary, baseline) pairs where the canary is
    /// larger, ties counting one half.
    pub u: f64,
    /// Mean of U under the null hypothesis, n·m/2.
    pub mean: f64,
    /// Standard deviation of U under the null, corrected for ties.
    pub sd: f64,
    /// P(U ≥ observed) under the null: small when the canary is larger.
    pub p_greater: f64,
    /// P(U ≤ observed) under the null: small when the canary is smaller.
    pub p_less: f64,
    /// U / (n·m): the probability that a canary value exceeds a baseline value
    /// (ties one half), 0.5 when they are alike. An effect size.
    pub common_language: f64,
}

impl MannWhitney {
    /// The z statistic (without continuity correction).
    pub fn z(&self) -> f64 {
        if self.sd > 0.0 {
            (self.u - self.mean) / self.sd
        } else {
            0.0
        }
    }
}

/// Walks the merged distinct values of two samples in order, calling
/// `f(value, count_a, count_b)` once per distinct value.
pub(crate) fn merge_walk(a: &Samples, b: &Samples, mut f: impl FnMut(f64, u64, u64)) {
    let (av, ac, bv, bc) = (a.values(), a.counts(), b.values(), b.counts());
    let (mut i, mut j) = (0, 0);
    while i < av.len() || j < bv.len() {
        if j >= bv.len() || (i < av.len() && av[i] < bv[j]) {
            f(av[i], ac[i], 0);
            i += 1;
        } else if i >= av.len() || bv[j] < av[i] {
            f(bv[j], 0, bc[j]);
            j += 1;
        } else {
            f(av[i], ac[i], bc[j]);
            i += 1;
            j += 1;
        }
    }
}

/// Mann–Whitney U with the normal approximation, tie-corrected variance and a
/// continuity correction. Exact ranks in O(n + m) on sorted data. Both samples must
/// be non-empty (the judge refuses small samples as no data before it gets here).
pub fn mann_whitney(canary: &Samples, baseline: &Samples) -> MannWhitney {
    let (n, m) = (canary.len() as f64, baseline.len() as f64);
    let big_n = n + m;
    let mut rank_sum = 0.0;
    let mut before = 0.0;
    let mut ties = 0.0;
    merge_walk(canary, baseline, |_, c, b| {
        let t = (c + b) as f64;
        let avg_rank = before + (t + 1.0) / 2.0;
        rank_sum += c as f64 * avg_rank;
        if t > 1.0 {
            ties += t * t * t - t;
        }
        before += t;
    });
    let u = rank_sum - n * (n + 1.0) / 2.0;
    let mean = n * m / 2.0;
    let var = if big_n > 1.0 {
        n * m / 12.0 * ((big_n + 1.0) - ties / (big_n * (big_n - 1.0)))
    } else {
        0.0
    };
    let sd = var.max(0.0).sqrt();
    let (p_greater, p_less) = if sd > 0.0 {
        (
            normal_sf((u - mean - 0.5) / sd),
            normal_sf((mean - u - 0.5) / sd),
        )
    } else {
        (1.0, 1.0)
    };
    MannWhitney {
        u,
        mean,
        sd,
        p_greater: p_greater.min(1.0),
        p_less: p_less.min(1.0),
        common_language: if n * m > 0.0 { u / (n * m) } else { 0.5 },
    }
}

/// How a Hodges–Lehmann estimate was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HlMethod {
    /// Order statistics of all pairwise differences, found exactly by bisection on
    /// the sorted data with an O(n + m) pair count per step.
    Exact,
    /// The same search on each side compressed to equal-count bins (each bin stands
    /// for its members at their mean); used above [`HL_EXACT_LIMIT`] distinct values.
    Binned,
}

/// Above this many distinct values on a side, the Hodges–Lehmann search runs on
/// [`HL_BINS`] equal-count bins per side instead of every value.
pub const HL_EXACT_LIMIT: usize = 20_000;
/// Bins per side for the binned Hodges–Lehmann search.
pub const HL_BINS: usize = 4_096;

/// The Hodges–Lehmann shift of canary over baseline, with its confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HodgesLehmann {
    /// The median of all pairwise differences canary − baseline.
    #[serde(deserialize_with = "super::report::nullable_f64")]
    pub shift: f64,
    /// Lower end of the confidence interval for the shift.
    #[serde(deserialize_with = "super::report::nullable_f64")]
    pub ci_low: f64,
    /// Upper end of the confidence interval for the shift.
    #[serde(deserialize_with = "super::report::nullable_f64")]
    pub ci_high: f64,
    /// The interval's confidence level, e.g. 0.95.
    #[serde(deserialize_with = "super::report::nullable_f64")]
    pub confidence: f64,
    /// Exact or binned.
    pub method: HlMethod,
}

/// Weighted sorted points for the difference search.
struct Points {
    values: Vec<f64>,
    weights: Vec<f64>,
}

impl Points {
    fn exact(s: &Samples) -> Points {
        Points {
            values: s.values().to_vec(),
            weights: s.counts().iter().map(|&c| c as f64).collect(),
        }
    }

    /// Equal-count bins, each at the mean of its members.
    fn binned(s: &Samples, bins: usize) -> Points {
        let total = s.len() as f64;
        let per_bin = total / bins as f64;
        let mut values = Vec::with_capacity(bins + 1);
        let mut weights = Vec::with_capacity(bins + 1);
        let (mut w, mut sum) = (0.0, 0.0);
        for (&v, &c) in s.values().iter().zip(s.counts()) {
            let mut c = c as f64;
            while c > 0.0 {
                let take = c.min(per_bin - w);
                w += take;
                sum += take * v;
                c -= take;
                if w >= per_bin * (1.0 - 1e-12) {
                    values.push(sum / w);
                    weights.push(w);
                    w = 0.0;
                    sum = 0.0;
                }
            }
        }
        if w > 0.0 {
            values.push(sum / w);
            weights.push(w);
        }
        Points { values, weights }
    }

    fn total(&self) -> f64 {
        self.weights.iter().sum()
    }
}

/// Weight of pairs (x from `base`, y from `can`) with y − x ≤ d. Differences are
/// computed by subtraction everywhere, so the count agrees with [`next_above`].
fn count_le(can: &Points, base: &Points, d: f64) -> f64 {
    // For each baseline x (ascending), the canary values with y − x ≤ d form a
    // growing prefix (rounding is monotone, so this holds in floating point too).
    let mut j = 0;
    let mut prefix = 0.0;
    let mut total = 0.0;
    for (&x, &wx) in base.values.iter().zip(&base.weights) {
        while j < can.values.len() && can.values[j] - x <= d {
            prefix += can.weights[j];
            j += 1;
        }
        total += wx * prefix;
    }
    total
}

/// The smallest pairwise difference strictly greater than `d`, if any.
fn next_above(can: &Points, base: &Points, d: f64) -> Option<f64> {
    let mut best: Option<f64> = None;
    let mut j = 0;
    for &x in &base.values {
        while j < can.values.len() && can.values[j] - x <= d {
            j += 1;
        }
        if let Some(&y) = can.values.get(j) {
            let diff = y - x;
            if best.is_none_or(|b| diff < b) {
                best = Some(diff);
            }
        }
    }
    best
}

/// The smallest difference d with count_le(d) ≥ k (k in 1..=total pairs).
fn kth_difference(can: &Points, base: &Points, k: f64) -> f64 {
    let mut lo = can.values[0] - base.values[base.values.len() - 1];
    let mut hi = can.values[can.values.len() - 1] - base.values[0];
    // The minimum difference itself.
    if count_le(can, base, lo) >= k {
        return lo;
    }
    // Invariant: count_le(lo) < k ≤ count_le(hi).
    for _ in 0..200 {
        match next_above(can, base, lo) {
            Some(candidate) if count_le(can, base, candidate) >= k => return candidate,
            Some(candidate) => lo = candidate,
            None => return hi,
        }
        let mid = lo + (hi - lo) / 2.0;
        if mid <= lo || mid >= hi {
            return hi;
        }
        if count_le(can, base, mid) >= k {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

/// The Hodges–Lehmann shift (canary − baseline) and its `confidence` interval from
/// the Mann–Whitney distribution (normal approximation with ties): the interval runs
/// from the k-th to the (n·m − k + 1)-th smallest pairwise difference.
/// `mw` is the samples' [`mann_whitney`] (its tie-corrected spread sets the interval).
pub fn hodges_lehmann(
    canary: &Samples,
    baseline: &Samples,
    mw: &MannWhitney,
    confidence: f64,
) -> HodgesLehmann {
    let binned = canary.values().len() > HL_EXACT_LIMIT || baseline.values().len() > HL_EXACT_LIMIT;
    hodges_lehmann_by(canary, baseline, mw, confidence, binned)
}

fn hodges_lehmann_by(
    canary: &Samples,
    baseline: &Samples,
    mw: &MannWhitney,
    confidence: f64,
    binned: bool,
) -> HodgesLehmann {
    let (can, base, method) = if binned {
        (
            Points::binned(canary, HL_BINS),
            Points::binned(baseline, HL_BINS),
            HlMethod::Binned,
        )
    } else {
        (
            Points::exact(canary),
            Points::exact(baseline),
            HlMethod::Exact,
        )
    };
    let pairs = can.total() * base.total();
    // Median: the mean of the two middle order statistics when the count is even.
    let lower_mid = (pairs / 2.0).floor().max(1.0);
    let upper_mid = (pairs / 2.0).floor() + 1.0;
    let shift = if pairs % 2.0 == 0.0 {
        (kth_difference(&can, &base, lower_mid) + kth_difference(&can, &base, upper_mid)) / 2.0
    } else {
        kth_difference(&can, &base, upper_mid)
    };
    let sd = mw.sd;
    let z = normal_quantile(0.5 + confidence / 2.0);
    let k = (pairs / 2.0 - z * sd).floor().max(1.0);
    let ci_low = kth_difference(&can, &base, k);
    let ci_high = kth_difference(&can, &base, (pairs - k + 1.0).max(1.0));
    HodgesLehmann {
        shift,
        ci_low,
        ci_high,
        confidence,
        method,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute_force_diffs(a: &[f64], b: &[f64]) -> Vec<f64> {
        let mut d: Vec<f64> = a
            .iter()
            .flat_map(|y| b.iter().map(move |x| y - x))
            .collect();
        d.sort_by(f64::total_cmp);
        d
    }

    #[test]
    fn fisher_matches_the_tea_tasting_table() {
        // Fisher's lady tasting tea: 8 cups, 4 milk-first, she names 4 and gets 3
        // right. One-sided p = P(X ≥ 3) = 17/70.
        let p = hypergeom_sf(3, 8, 4, 4);
        assert!((p - 17.0 / 70.0).abs() < 1e-12, "{p}");
        assert!((hypergeom_sf(4, 8, 4, 4) - 1.0 / 70.0).abs() < 1e-12);
        assert_eq!(hypergeom_sf(0, 8, 4, 4), 1.0);
        assert_eq!(hypergeom_sf(5, 8, 4, 4), 0.0);
        assert!((hypergeom_cdf(1, 8, 4, 4) - 17.0 / 70.0).abs() < 1e-12);
    }

    #[test]
    fn fisher_tails_sum_to_one_across_the_mode() {
        // 1 % against 2 % at 5,000 a side: both branches (above and below the mode).
        let (pop, succ, draws) = (10_000, 150, 5_000);
        for k in [40, 60, 75, 76, 90, 100] {
            let total = hypergeom_sf(k, pop, succ, draws) + hypergeom_cdf(k - 1, pop, succ, draws);
            assert!((total - 1.0).abs() < 1e-9, "k={k} total={total}");
        }
        // R: phyper(99, 150, 9850, 5000, lower.tail = FALSE) = 1.5e-05 order.
        let p = hypergeom_sf(100, pop, succ, draws);
        assert!(p > 1e-6 && p < 1e-4, "{p}");
    }

    #[test]
    fn mann_whitney_matches_a_hand_computed_example() {
        // canary 3,4,5 against baseline 1,2: every canary value is larger: U = 6.
        let c = Samples::from_values(vec![3.0, 4.0, 5.0]).unwrap();
        let b = Samples::from_values(vec![1.0, 2.0]).unwrap();
        let mw = mann_whitney(&c, &b);
        assert_eq!(mw.u, 6.0);
        assert_eq!(mw.mean, 3.0);
        assert!((mw.sd - (3.0f64 * 2.0 * 6.0 / 12.0).sqrt()).abs() < 1e-12);
        assert_eq!(mw.common_language, 1.0);
        // Ties count a half: {1,2} against {2,3}: pairs (1>2?0)(1>3?0)(2=2:½)(2>3?0).
        let c = Samples::from_values(vec![1.0, 2.0]).unwrap();
        let b = Samples::from_values(vec![2.0, 3.0]).unwrap();
        assert_eq!(mann_whitney(&c, &b).u, 0.5);
    }

    #[test]
    fn binned_hodges_lehmann_stays_close_to_the_exact_one() {
        // 60,000 lognormal samples a side (median 50, sigma 0.5), canary 3 % slower.
        let mut seed = 11u64;
        let mut uniform = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let mut lognormal = |median: f64| {
            let (u1, u2) = (uniform(), uniform());
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            median * (0.5 * z).exp()
        };
        let c: Vec<f64> = (0..60_000).map(|_| lognormal(51.5)).collect();
        let b: Vec<f64> = (0..60_000).map(|_| lognormal(50.0)).collect();
        let (c, b) = (
            Samples::from_values(c).unwrap(),
            Samples::from_values(b).unwrap(),
        );
        let mw = mann_whitney(&c, &b);
        let exact = hodges_lehmann_by(&c, &b, &mw, 0.95, false);
        let binned = hodges_lehmann(&c, &b, &mw, 0.95);
        assert_eq!(
            (exact.method, binned.method),
            (HlMethod::Exact, HlMethod::Binned)
        );
        // Within 0.01 % of the median (0.005 ms here) for the shift and the interval;
        // measured: 0.0002 ms at most.
        for (e, a) in [
            (exact.shift, binned.shift),
            (exact.ci_low, binned.ci_low),
            (exact.ci_high, binned.ci_high),
        ] {
            assert!((e - a).abs() < 50.0 * 0.0001, "exact {e} binned {a}");
        }
        // The 3 % slower canary is seen as slower.
        assert!(exact.ci_low > 0.0, "{exact:?}");
    }

    #[test]
    fn hodges_lehmann_equals_the_brute_force_median_of_differences() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) % 1000) as f64 / 10.0
        };
        for (n, m) in [(1, 1), (2, 3), (7, 5), (40, 33), (60, 60)] {
            let a: Vec<f64> = (0..n).map(|_| next()).collect();
            let b: Vec<f64> = (0..m).map(|_| next() + 3.0).collect();
            let d = brute_force_diffs(&a, &b);
            let median = if d.len() % 2 == 0 {
                (d[d.len() / 2 - 1] + d[d.len() / 2]) / 2.0
            } else {
                d[d.len() / 2]
            };
            let (sa, sb) = (
                Samples::from_values(a.clone()).unwrap(),
                Samples::from_values(b.clone()).unwrap(),
            );
            let hl = hodges_lehmann(&sa, &sb, &mann_whitney(&sa, &sb), 0.95);
            assert_eq!(hl.method, HlMethod::Exact);
            assert!(
                (hl.shift - median).abs() < 1e-9,
                "n={n} m={m}: {} vs {median}",
                hl.shift
            );
            assert!(hl.ci_low <= hl.shift && hl.shift <= hl.ci_high);
            // The interval's ends are themselves pairwise differences.
            assert!(d.iter().any(|&x| (x - hl.ci_low).abs() < 1e-9));
            assert!(d.iter().any(|&x| (x - hl.ci_high).abs() < 1e-9));
        }
    }
}
