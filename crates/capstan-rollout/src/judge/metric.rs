//! One metric, canary against baseline: its observations ([`Observed`]), the
//! test its [`Rule`] names (Fisher's exact test for error ratios, Mann–Whitney U
//! with the Hodges–Lehmann shift and the tail test for samples), and the
//! [`MetricResult`] with its [`Evidence`].

use serde::{Deserialize, Serialize};

use super::config::{Direction, MetricSpec, Rule, Thresholds};
use super::observed::{Counts, Observed};
use super::report::{
    Evidence, MannWhitneyEvidence, MetricResult, SideCounts, SideSummary, TailEvidence,
};
use super::sample::Samples;
use super::stats::{self, hodges_lehmann, hypergeom_cdf, hypergeom_sf, mann_whitney};

/// What the judge found for one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// No significant change beyond the tolerance in a bad direction.
    Pass,
    /// The canary is significantly higher than the baseline, beyond the tolerance,
    /// and higher is bad for this metric.
    High,
    /// The canary is significantly lower, beyond the tolerance, and lower is bad.
    Low,
    /// Too few observations on a side to judge.
    NoData,
}

/// Judges one metric.
pub fn judge_metric(spec: &MetricSpec, observed: &Observed, t: &Thresholds) -> MetricResult {
    let (outcome, reason, evidence) = match (&spec.rule, observed) {
        (_, Observed::Missing { reason }) => (Outcome::NoData, reason.clone(), Evidence::None),
        (
            Rule::ErrorRatio {
                direction,
                min_requests,
                relative_tolerance,
                absolute_tolerance,
            },
            Observed::Counts { canary, baseline },
        ) => error_ratio(
            *canary,
            *baseline,
            *direction,
            *min_requests,
            *relative_tolerance,
            *absolute_tolerance,
            t,
        ),
        (
            Rule::Latency {
                min_samples,
                shift_tolerance,
                p99_tolerance,
            },
            Observed::Samples { canary, baseline },
        ) => sampled(
            canary,
            baseline,
            Direction::Increase,
            *min_samples,
            *shift_tolerance,
            Some(*p99_tolerance),
            t,
        ),
        (
            Rule::Custom {
                direction,
                min_samples,
                tolerance,
            },
            Observed::Samples { canary, baseline },
        ) => sampled(
            canary,
            baseline,
            *direction,
            *min_samples,
            *tolerance,
            None,
            t,
        ),
        (rule, _) => (
            Outcome::NoData,
            format!(
                "{} needs {} observations",
                rule.kind(),
                match rule {
                    Rule::ErrorRatio { .. } => "error and request counts",
                    _ => "samples",
                }
            ),
            Evidence::None,
        ),
    };
    MetricResult {
        name: spec.name.clone(),
        group: spec.group.clone(),
        kind: spec.rule.kind().into(),
        critical: spec.critical,
        outcome,
        reason,
        evidence,
    }
}

fn error_ratio(
    canary: Counts,
    baseline: Counts,
    direction: Direction,
    min_requests: u64,
    rel_tol: f64,
    abs_tol: f64,
    t: &Thresholds,
) -> (Outcome, String, Evidence) {
    for (side, c) in [("canary", canary), ("baseline", baseline)] {
        if c.errors > c.total {
            return (
                Outcome::NoData,
                format!(
                    "{side} reports {} errors out of {} requests",
                    c.errors, c.total
                ),
                Evidence::None,
            );
        }
        if c.total < min_requests {
            return (
                Outcome::NoData,
                format!(
                    "{side} served {} requests, fewer than {min_requests}",
                    c.total
                ),
                Evidence::None,
            );
        }
    }
    let population = canary.total + baseline.total;
    let errors = canary.errors + baseline.errors;
    let p_higher = hypergeom_sf(canary.errors, population, errors, canary.total);
    let p_lower = hypergeom_cdf(canary.errors, population, errors, canary.total);
    let (rc, rb) = (canary.ratio(), baseline.ratio());
    let difference = rc - rb;
    let relative = (rb > 0.0).then(|| rc / rb);
    let side_alpha = if direction == Direction::Either {
        t.alpha / 2.0
    } else {
        t.alpha
    };
    let higher = direction != Direction::Decrease
        && p_higher < side_alpha
        && difference > abs_tol
        && rc > rb * (1.0 + rel_tol);
    let lower = direction != Direction::Increase
        && p_lower < side_alpha
        && -difference > abs_tol
        && rc < rb * (1.0 - rel_tol).max(0.0);
    let pct = |r: f64| format!("{:.3} %", r * 100.0);
    let (outcome, reason) = if higher {
        (
            Outcome::High,
            format!(
                "canary error ratio {} is higher than baseline {} (Fisher p = {:.2e} < {})",
                pct(rc),
                pct(rb),
                p_higher,
                side_alpha
            ),
        )
    } else if lower {
        (
            Outcome::Low,
            format!(
                "canary error ratio {} is lower than baseline {} (Fisher p = {:.2e} < {})",
                pct(rc),
                pct(rb),
                p_lower,
                side_alpha
            ),
        )
    } else {
        (
            Outcome::Pass,
            format!(
                "canary error ratio {} against baseline {}: within tolerance or not significant",
                pct(rc),
                pct(rb)
            ),
        )
    };
    let side = |c: Counts| SideCounts {
        errors: c.errors,
        total: c.total,
        ratio: c.ratio(),
    };
    (
        outcome,
        reason,
        Evidence::FisherExact {
            canary: side(canary),
            baseline: side(baseline),
            p_higher,
            p_lower,
            difference,
            relative,
        },
    )
}

fn summary(s: &Samples) -> SideSummary {
    SideSummary {
        n: s.len(),
        median: s.quantile(0.5).unwrap_or(0.0),
        p99: s.quantile(0.99).unwrap_or(0.0),
    }
}

/// Pooled samples' `q` quantile: the smallest value with at least q of both above
/// or at it, found on the merged distinct values.
fn pooled_quantile(a: &Samples, b: &Samples, q: f64) -> f64 {
    let total = (a.len() + b.len()) as f64;
    let target = (q * total).ceil().max(1.0);
    let mut seen = 0.0;
    let mut found = f64::NAN;
    stats::merge_walk(a, b, |v, ca, cb| {
        if found.is_nan() {
            seen += (ca + cb) as f64;
            if seen >= target {
                found = v;
            }
        }
    });
    found
}

fn sampled(
    canary: &Samples,
    baseline: &Samples,
    direction: Direction,
    min_samples: u64,
    tolerance: f64,
    p99_tolerance: Option<f64>,
    t: &Thresholds,
) -> (Outcome, String, Evidence) {
    for (side, s) in [("canary", canary), ("baseline", baseline)] {
        if s.len() < min_samples {
            return (
                Outcome::NoData,
                format!("{side} has {} samples, fewer than {min_samples}", s.len()),
                Evidence::None,
            );
        }
    }
    let mw = mann_whitney(canary, baseline);
    let hl = hodges_lehmann(canary, baseline, &mw, t.confidence);
    let (cs, bs) = (summary(canary), summary(baseline));
    let relative_shift = (bs.median != 0.0).then(|| hl.shift / bs.median.abs());
    // Latency splits alpha between the location and the tail test; Either between sides.
    let mut side_alpha = t.alpha;
    if p99_tolerance.is_some() {
        side_alpha /= 2.0;
    }
    if direction == Direction::Either {
        side_alpha /= 2.0;
    }
    let beyond = |sign: f64| match relative_shift {
        Some(r) => sign * r > tolerance,
        None => sign * hl.shift > 0.0,
    };
    let shifted_up = direction != Direction::Decrease && mw.p_greater < side_alpha && beyond(1.0);
    let shifted_down = direction != Direction::Increase && mw.p_less < side_alpha && beyond(-1.0);

    let tail = p99_tolerance.map(|tol| {
        let threshold = pooled_quantile(canary, baseline, 0.99);
        let canary_above = canary.count_above(threshold);
        let baseline_above = baseline.count_above(threshold);
        let p_value = hypergeom_sf(
            canary_above,
            canary.len() + baseline.len(),
            canary_above + baseline_above,
            canary.len(),
        );
        let p99_ratio = if bs.p99 > 0.0 {
            cs.p99 / bs.p99
        } else if cs.p99 > 0.0 {
            f64::INFINITY
        } else {
            1.0
        };
        (
            TailEvidence {
                threshold,
                canary_above,
                baseline_above,
                p_value,
                p99_ratio,
            },
            tol,
        )
    });
    let tail_high = tail
        .as_ref()
        .is_some_and(|(e, tol)| e.p_value < side_alpha && e.p99_ratio > *tol);

    let fmt_shift = || {
        format!(
            "shift {:+.4} [{:+.4}, {:+.4}] ({}), Mann-Whitney z = {:.2}",
            hl.shift,
            hl.ci_low,
            hl.ci_high,
            relative_shift.map_or("n/a".into(), |r| format!("{:+.1} %", r * 100.0)),
            mw.z()
        )
    };
    let (outcome, reason) = if shifted_up {
        (
            Outcome::High,
            format!(
                "canary is higher: {} (p = {:.2e} < {side_alpha})",
                fmt_shift(),
                mw.p_greater
            ),
        )
    } else if tail_high {
        let (e, tol) = tail.as_ref().expect("tail_high implies tail");
        (
            Outcome::High,
            format!(
                "canary tail is heavier: p99 ratio {:.3} > {tol}, {} of {} canary samples above the pooled p99 {:.4} (Fisher p = {:.2e})",
                e.p99_ratio, e.canary_above, canary.len(), e.threshold, e.p_value
            ),
        )
    } else if shifted_down {
        (
            Outcome::Low,
            format!(
                "canary is lower: {} (p = {:.2e} < {side_alpha})",
                fmt_shift(),
                mw.p_less
            ),
        )
    } else {
        (
            Outcome::Pass,
            format!("no significant change beyond tolerance: {}", fmt_shift()),
        )
    };
    (
        outcome,
        reason,
        Evidence::MannWhitney {
            canary: cs,
            baseline: bs,
            mann_whitney: MannWhitneyEvidence {
                u: mw.u,
                z: mw.z(),
                p_greater: mw.p_greater,
                p_less: mw.p_less,
                common_language_effect: mw.common_language,
            },
            hodges_lehmann: hl,
            relative_shift,
            tail: tail.map(|(e, _)| e),
        },
    )
}
