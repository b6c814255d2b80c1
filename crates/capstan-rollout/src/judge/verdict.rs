//! Verdict assembly: judged metrics into groups, a 0–100 score and one
//! [`Verdict`] with its reason, in the [`Report`] every endpoint returns.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::{MetricSpec, Thresholds};
use super::metric::{judge_metric, Outcome};
use super::observed::Observed;
use super::report::{GroupResult, Interval, MetricResult, Report};

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
