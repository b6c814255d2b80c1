//! The judge: canary against baseline over the same interval, metric by metric, to
//! one verdict with its evidence.
//!
//! Pure: no IO, no async, no clock (the caller passes the interval and the time of
//! judgement). Too little data is [`Verdict::Inconclusive`], never a pass.

mod observed;
mod report;
pub mod sample;
pub mod stats;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use observed::{Counts, Observed};
pub use report::{
    Evidence, GroupResult, Interval, MannWhitneyEvidence, MetricResult, Report, SideCounts,
    SideSummary, TailEvidence,
};
pub use sample::Samples;
use stats::{hodges_lehmann, hypergeom_cdf, hypergeom_sf, mann_whitney};

/// Errors of the judge's inputs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JudgeError {
    /// A sample value or histogram bucket that is not a usable number.
    #[error("bad sample: {detail}")]
    BadSample {
        /// What was wrong.
        detail: String,
    },
    /// A setting out of range (names the setting).
    #[error("{field}: {detail}")]
    BadSetting {
        /// The setting, e.g. `metric.latency.min_samples`.
        field: String,
        /// What was wrong.
        detail: String,
    },
}

/// Which way a metric is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Higher is worse (errors, latency, memory).
    #[default]
    Increase,
    /// Lower is worse (throughput, cache hit ratio).
    Decrease,
    /// Any significant change is bad.
    Either,
}

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

/// The judgement of a whole comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Score at or above the pass threshold, no critical metric failed, enough data.
    Pass,
    /// Score between the marginal and the pass threshold: hold, look again.
    Marginal,
    /// A critical metric failed, or the score is below the marginal threshold.
    Fail,
    /// Too little data to judge. Never a pass.
    Inconclusive,
}

/// The judge's global settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Significance level of each metric's test (one-sided, in the bad direction;
    /// split in two for [`Direction::Either`] and between the location and the tail
    /// test of latency).
    pub alpha: f64,
    /// Confidence level of the Hodges–Lehmann interval reported as evidence.
    pub confidence: f64,
    /// Score (0–100) at or above which the verdict is a pass.
    pub pass_score: f64,
    /// Score at or above which a non-passing verdict is marginal rather than fail.
    pub marginal_score: f64,
    /// Fraction of the total weight whose metrics must have data (0–1); below it
    /// the verdict is inconclusive.
    pub min_data_fraction: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            alpha: 0.01,
            confidence: 0.95,
            pass_score: 95.0,
            marginal_score: 75.0,
            min_data_fraction: 1.0,
        }
    }
}

impl Thresholds {
    /// Checks the ranges; the error names the setting.
    pub fn validate(&self) -> Result<(), JudgeError> {
        let bad = |field: &str, detail: &str| {
            Err(JudgeError::BadSetting {
                field: field.into(),
                detail: detail.into(),
            })
        };
        if !(self.alpha > 0.0 && self.alpha < 0.5) {
            return bad("alpha", "must be between 0 and 0.5 (exclusive)");
        }
        if !(self.confidence > 0.5 && self.confidence < 1.0) {
            return bad("confidence", "must be between 0.5 and 1 (exclusive)");
        }
        if !(0.0..=100.0).contains(&self.pass_score) {
            return bad("pass_score", "must be within 0..=100");
        }
        if !(0.0..=self.pass_score).contains(&self.marginal_score) {
            return bad("marginal_score", "must be within 0..=pass_score");
        }
        if !(0.0..=1.0).contains(&self.min_data_fraction) {
            return bad("min_data_fraction", "must be within 0..=1");
        }
        Ok(())
    }
}

/// How one metric is judged: its kind's settings, group, and whether it is critical.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSpec {
    /// The metric's name, unique within a comparison.
    pub name: String,
    /// The group it scores in (groups carry weights).
    pub group: String,
    /// A critical metric that is High or Low fails the whole verdict, and one with
    /// no data makes it inconclusive.
    pub critical: bool,
    /// The kind and its tolerances.
    pub rule: Rule,
}

/// The test and tolerances for a metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Rule {
    /// Errors out of requests: Fisher's exact test, one-sided.
    ErrorRatio {
        /// Which way is bad (normally [`Direction::Increase`]).
        direction: Direction,
        /// Minimum requests per side; fewer is no data.
        min_requests: u64,
        /// The canary's ratio may exceed the baseline's by this fraction of it
        /// (0.2: 1 % → 1.2 %) before it counts.
        relative_tolerance: f64,
        /// ... and by at least this much in absolute terms (0.001 = 0.1 point).
        absolute_tolerance: f64,
    },
    /// Latency samples: Mann–Whitney U with the Hodges–Lehmann shift, and a tail
    /// test at the pooled 99th percentile with a p99 ratio tolerance.
    Latency {
        /// Minimum samples per side; fewer is no data.
        min_samples: u64,
        /// The Hodges–Lehmann shift may reach this fraction of the baseline median
        /// before a significant shift counts.
        shift_tolerance: f64,
        /// The canary's p99 may reach this multiple of the baseline's before a
        /// significant tail excess counts.
        p99_tolerance: f64,
    },
    /// Any numeric metric sampled on both sides: Mann–Whitney U with the
    /// Hodges–Lehmann shift in the given direction.
    Custom {
        /// Which way is bad.
        direction: Direction,
        /// Minimum samples per side; fewer is no data.
        min_samples: u64,
        /// The shift may reach this fraction of the baseline median (absolute
        /// value) before a significant shift counts.
        tolerance: f64,
    },
}

impl Rule {
    /// An error-ratio rule with the defaults: increase is bad, 500 requests a side,
    /// 20 % relative and 0.1 point absolute tolerance.
    pub fn error_ratio() -> Rule {
        Rule::ErrorRatio {
            direction: Direction::Increase,
            min_requests: 500,
            relative_tolerance: 0.2,
            absolute_tolerance: 0.001,
        }
    }

    /// A latency rule with the defaults: 100 samples a side, 5 % shift, p99 × 1.2.
    pub fn latency() -> Rule {
        Rule::Latency {
            min_samples: 100,
            shift_tolerance: 0.05,
            p99_tolerance: 1.2,
        }
    }

    /// A custom rule with the defaults: 20 samples a side, 5 % tolerance.
    pub fn custom(direction: Direction) -> Rule {
        Rule::Custom {
            direction,
            min_samples: 20,
            tolerance: 0.05,
        }
    }

    /// The kind's name as in the config and the JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Rule::ErrorRatio { .. } => "error_ratio",
            Rule::Latency { .. } => "latency",
            Rule::Custom { .. } => "custom",
        }
    }

    /// Checks the ranges; the error names `metric.<name>.<field>`.
    pub fn validate(&self, metric: &str) -> Result<(), JudgeError> {
        let bad = |field: &str, detail: &str| {
            Err(JudgeError::BadSetting {
                field: format!("metric.{metric}.{field}"),
                detail: detail.into(),
            })
        };
        match *self {
            Rule::ErrorRatio {
                min_requests,
                relative_tolerance,
                absolute_tolerance,
                ..
            } => {
                if min_requests < 1 {
                    return bad("min_requests", "must be at least 1");
                }
                if !(relative_tolerance >= 0.0 && relative_tolerance.is_finite()) {
                    return bad("relative_tolerance", "must be a number ≥ 0");
                }
                if !(0.0..1.0).contains(&absolute_tolerance) {
                    return bad("absolute_tolerance", "must be within 0..1");
                }
            }
            Rule::Latency {
                min_samples,
                shift_tolerance,
                p99_tolerance,
            } => {
                // The normal approximation of U needs a handful a side.
                if min_samples < 10 {
                    return bad(
                        "min_samples",
                        "must be at least 10 (the test's approximation needs them)",
                    );
                }
                if !(shift_tolerance >= 0.0 && shift_tolerance.is_finite()) {
                    return bad("shift_tolerance", "must be a number ≥ 0");
                }
                if !(p99_tolerance >= 1.0 && p99_tolerance.is_finite()) {
                    return bad("p99_tolerance", "must be a number ≥ 1");
                }
            }
            Rule::Custom {
                min_samples,
                tolerance,
                ..
            } => {
                if min_samples < 10 {
                    return bad(
                        "min_samples",
                        "must be at least 10 (the test's approximation needs them)",
                    );
                }
                if !(tolerance >= 0.0 && tolerance.is_finite()) {
                    return bad("tolerance", "must be a number ≥ 0");
                }
            }
        }
        Ok(())
    }
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

/// Judges every metric and combines them into the verdict.
///
/// `observed` pairs with `specs` by position. `group_weights` gives a group's weight;
/// groups not listed weigh 1. The order of decisions: a critical metric that is High
/// or Low fails; a critical metric without data, or less than
/// `min_data_fraction` of the weight with data, is inconclusive; a score below the
/// marginal threshold even if every metric without data had passed fails; otherwise
/// the score against the thresholds.
pub fn judge(
    specs: &[MetricSpec],
    observed: &[Observed],
    group_weights: &BTreeMap<String, f64>,
    thresholds: &Thresholds,
    interval: Interval,
) -> Report {
    let metrics: Vec<MetricResult> = specs
        .iter()
        .zip(observed.iter().chain(std::iter::repeat(&Observed::Missing {
            reason: "no observation supplied".into(),
        })))
        .map(|(s, o)| judge_metric(s, o, thresholds))
        .collect();
    combine(metrics, group_weights, thresholds, interval)
}

/// Combines judged metrics into groups, a score and a verdict (see [`judge`]).
pub fn combine(
    metrics: Vec<MetricResult>,
    group_weights: &BTreeMap<String, f64>,
    t: &Thresholds,
    interval: Interval,
) -> Report {
    let mut groups: Vec<GroupResult> = Vec::new();
    for m in &metrics {
        let g = match groups.iter_mut().position(|g| g.name == m.group) {
            Some(i) => &mut groups[i],
            None => {
                groups.push(GroupResult {
                    name: m.group.clone(),
                    weight: group_weights.get(&m.group).copied().unwrap_or(1.0).max(0.0),
                    metrics: 0,
                    with_data: 0,
                    passed: 0,
                    score: None,
                });
                groups.last_mut().expect("just pushed")
            }
        };
        g.metrics += 1;
        if m.outcome != Outcome::NoData {
            g.with_data += 1;
        }
        if m.outcome == Outcome::Pass {
            g.passed += 1;
        }
    }
    let total_weight: f64 = groups.iter().map(|g| g.weight).sum();
    let (mut scored_weight, mut score_sum, mut data_weight, mut optimistic) = (0.0, 0.0, 0.0, 0.0);
    for g in &mut groups {
        if g.with_data > 0 {
            let s = 100.0 * g.passed as f64 / g.with_data as f64;
            g.score = Some(s);
            scored_weight += g.weight;
            score_sum += g.weight * s;
        }
        data_weight += g.weight * g.with_data as f64 / g.metrics as f64;
        let no_data = (g.metrics - g.with_data) as f64;
        optimistic += g.weight * 100.0 * (g.passed as f64 + no_data) / g.metrics as f64;
    }
    let score = if scored_weight > 0.0 {
        score_sum / scored_weight
    } else {
        0.0
    };
    let data_fraction = if total_weight > 0.0 {
        data_weight / total_weight
    } else {
        0.0
    };
    let optimistic = if total_weight > 0.0 {
        optimistic / total_weight
    } else {
        0.0
    };

    let failed_critical: Vec<&str> = metrics
        .iter()
        .filter(|m| m.critical && matches!(m.outcome, Outcome::High | Outcome::Low))
        .map(|m| m.name.as_str())
        .collect();
    let missing_critical: Vec<&str> = metrics
        .iter()
        .filter(|m| m.critical && m.outcome == Outcome::NoData)
        .map(|m| m.name.as_str())
        .collect();
    let (verdict, reason) = if metrics.is_empty() {
        (Verdict::Inconclusive, "no metrics to judge".to_string())
    } else if !failed_critical.is_empty() {
        (
            Verdict::Fail,
            format!("critical metric failed: {}", failed_critical.join(", ")),
        )
    } else if !missing_critical.is_empty() {
        (
            Verdict::Inconclusive,
            format!(
                "no data for critical metric: {}",
                missing_critical.join(", ")
            ),
        )
    } else if optimistic < t.marginal_score {
        (
            Verdict::Fail,
            format!(
                "score {score:.1} is below the marginal threshold {} (and would be even if every metric without data passed)",
                t.marginal_score
            ),
        )
    } else if data_fraction < t.min_data_fraction || scored_weight == 0.0 {
        (
            Verdict::Inconclusive,
            format!(
                "only {:.0} % of the weight has data (needs {:.0} %)",
                data_fraction * 100.0,
                t.min_data_fraction * 100.0
            ),
        )
    } else if score >= t.pass_score {
        (
            Verdict::Pass,
            format!("score {score:.1} ≥ pass threshold {}", t.pass_score),
        )
    } else if score >= t.marginal_score {
        (
            Verdict::Marginal,
            format!(
                "score {score:.1} is between the marginal {} and pass {} thresholds",
                t.marginal_score, t.pass_score
            ),
        )
    } else {
        (
            Verdict::Fail,
            format!(
                "score {score:.1} is below the marginal threshold {}",
                t.marginal_score
            ),
        )
    };
    Report {
        verdict,
        score,
        reason,
        interval,
        thresholds: t.clone(),
        groups,
        metrics,
    }
}
