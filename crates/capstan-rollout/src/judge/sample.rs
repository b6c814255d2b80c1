//! One side's observations: sorted distinct values with their counts.

use super::JudgeError;

/// One side's observations of a numeric metric (latency in ms, or any custom
/// value): sorted distinct values with counts. Built from raw samples or from a
/// Prometheus-style cumulative histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct Samples {
    values: Vec<f64>,
    counts: Vec<u64>,
    total: u64,
    /// Values are histogram bucket upper bounds: quantiles interpolate inside a
    /// bucket (as Prometheus' `histogram_quantile` does).
    histogram: bool,
}

impl Samples {
    /// The empty sample.
    pub fn empty() -> Samples {
        Samples {
            values: Vec::new(),
            counts: Vec::new(),
            total: 0,
            histogram: false,
        }
    }

    /// Raw observations, in any order. NaN and infinite values are refused.
    pub fn from_values(mut values: Vec<f64>) -> Result<Samples, JudgeError> {
        if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
            return Err(JudgeError::BadSample {
                detail: format!("value {bad} is not a finite number"),
            });
        }
        // Radix sort: faster than a comparison sort on a million values.
        radsort::sort(&mut values);
        let total = values.len() as u64;
        // Group equal values in place: `values` keeps the distinct ones.
        let mut counts: Vec<u64> = Vec::with_capacity(values.len());
        let mut kept = 0;
        for i in 0..values.len() {
            // -0.0 and 0.0 are one value.
            let v = if values[i] == 0.0 { 0.0 } else { values[i] };
            if kept > 0 && values[kept - 1] == v {
                counts[kept - 1] += 1;
            } else {
                values[kept] = v;
                counts.push(1);
                kept += 1;
            }
        }
        values.truncate(kept);
        let distinct = values;
        Ok(Samples {
            values: distinct,
            counts,
            total,
            histogram: false,
        })
    }

    /// Both sides of a comparison from raw observations, sorted on two threads
    /// (the sort is most of the work on large samples).
    pub fn pair_from_values(
        canary: Vec<f64>,
        baseline: Vec<f64>,
    ) -> Result<(Samples, Samples), JudgeError> {
        std::thread::scope(|scope| {
            let other = scope.spawn(move || Samples::from_values(baseline));
            let canary = Samples::from_values(canary);
            let baseline = other
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            Ok((canary?, baseline?))
        })
    }

    /// A cumulative histogram: `(upper bound, cumulative count)` per bucket, as
    /// Prometheus' `_bucket{le=...}` series give them, in any order. Each bucket's
    /// observations stand at its upper bound (ties, which the tests handle exactly);
    /// the `+Inf` bucket's stand at the largest finite bound. Counts are rounded to
    /// whole observations.
    pub fn from_histogram(buckets: &[(f64, f64)]) -> Result<Samples, JudgeError> {
        let mut b: Vec<(f64, f64)> = buckets.to_vec();
        if let Some((le, c)) = b
            .iter()
            .find(|(le, c)| le.is_nan() || !c.is_finite() || *c < 0.0)
        {
            return Err(JudgeError::BadSample {
                detail: format!("bucket le={le} has count {c}"),
            });
        }
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
        let largest_finite = b
            .iter()
            .rev()
            .find(|(le, _)| le.is_finite())
            .map(|(le, _)| *le);
        let mut values = Vec::new();
        let mut counts = Vec::new();
        let mut previous = 0.0f64;
        for (le, cumulative) in b {
            let cumulative = cumulative.round();
            // Counter resets and scrape skew can make a bucket dip: never negative.
            let in_bucket = (cumulative - previous).max(0.0);
            previous = previous.max(cumulative);
            if in_bucket == 0.0 {
                continue;
            }
            let at = if le.is_finite() {
                le
            } else {
                match largest_finite {
                    Some(f) => f,
                    None => {
                        return Err(JudgeError::BadSample {
                            detail: "a histogram needs at least one finite bucket bound".into(),
                        })
                    }
                }
            };
            match values.last() {
                Some(&last) if last == at => {
                    *counts.last_mut().expect("parallel") += in_bucket as u64;
                }
                _ => {
                    values.push(at);
                    counts.push(in_bucket as u64);
                }
            }
        }
        let total = counts.iter().sum();
        Ok(Samples {
            values,
            counts,
            total,
            histogram: true,
        })
    }

    /// The number of observations.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Whether there are no observations.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The distinct values, ascending.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// The count of each distinct value.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Whether the values are histogram bucket bounds.
    pub fn is_histogram(&self) -> bool {
        self.histogram
    }

    /// The `q` quantile (0 ≤ q ≤ 1): for raw values, linear interpolation between
    /// order statistics (type 7, as R and numpy default); for a histogram, linear
    /// interpolation inside the bucket (lower bound = the previous bucket's bound,
    /// or 0 for the first). `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let q = q.clamp(0.0, 1.0);
        if self.histogram {
            let rank = q * self.total as f64;
            let mut seen = 0.0;
            let mut lower = 0.0f64.min(self.values[0]);
            for (&v, &c) in self.values.iter().zip(&self.counts) {
                let c = c as f64;
                if seen + c >= rank {
                    let frac = if c > 0.0 { (rank - seen) / c } else { 1.0 };
                    return Some(lower + (v - lower) * frac);
                }
                seen += c;
                lower = v;
            }
            return self.values.last().copied();
        }
        let h = (self.total - 1) as f64 * q;
        let lo_rank = h.floor() as u64;
        let frac = h - lo_rank as f64;
        let lo = self.nth(lo_rank);
        let hi = self.nth((lo_rank + 1).min(self.total - 1));
        Some(lo + (hi - lo) * frac)
    }

    /// The 0-based `rank`-th smallest observation.
    fn nth(&self, rank: u64) -> f64 {
        let mut seen = 0;
        for (&v, &c) in self.values.iter().zip(&self.counts) {
            seen += c;
            if rank < seen {
                return v;
            }
        }
        *self.values.last().expect("non-empty")
    }

    /// Observations strictly above `threshold`.
    pub fn count_above(&self, threshold: f64) -> u64 {
        let start = self.values.partition_point(|&v| v <= threshold);
        self.counts[start..].iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_values_are_sorted_and_grouped() {
        let s = Samples::from_values(vec![3.0, 1.0, 3.0, 2.0, -0.0, 0.0]).unwrap();
        assert_eq!(s.values(), &[0.0, 1.0, 2.0, 3.0]);
        assert_eq!(s.counts(), &[2, 1, 1, 2]);
        assert_eq!(s.len(), 6);
        assert_eq!(s.quantile(0.5), Some(1.5));
        assert_eq!(s.quantile(1.0), Some(3.0));
        assert_eq!(s.count_above(1.0), 3);
        assert!(Samples::from_values(vec![1.0, f64::NAN]).is_err());
    }

    #[test]
    fn a_cumulative_histogram_becomes_bucket_counts() {
        let s = Samples::from_histogram(&[
            (f64::INFINITY, 100.0),
            (0.1, 50.0),
            (0.5, 90.0),
            (1.0, 100.0),
        ])
        .unwrap();
        assert_eq!(s.values(), &[0.1, 0.5, 1.0]);
        assert_eq!(s.counts(), &[50, 40, 10]);
        // Median at the top of the first bucket; p95 halfway into the last.
        assert!((s.quantile(0.5).unwrap() - 0.1).abs() < 1e-12);
        assert!((s.quantile(0.95).unwrap() - 0.75).abs() < 1e-12);
        assert!(Samples::from_histogram(&[(f64::INFINITY, 3.0)]).is_err());
    }
}
