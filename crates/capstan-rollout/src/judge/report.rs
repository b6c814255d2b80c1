//! What the judge answers: the verdict with every metric's outcome and the
//! statistics behind it. Serialized as the judge's JSON; read back (the
//! rollout controller keeps the last report in its state file) with a
//! non-finite statistic, which JSON writes as `null`, read as NaN.

use serde::{Deserialize, Deserializer, Serialize};

use super::stats::HodgesLehmann;
use super::{Outcome, Thresholds, Verdict};

/// A number JSON may have written as `null` (an infinite or NaN statistic).
pub(crate) fn nullable_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// The interval judged and the moment of judgement, all unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interval {
    /// Start of the compared interval.
    pub from_ms: i64,
    /// End of the compared interval.
    pub to_ms: i64,
    /// When the judgement was made.
    pub at_ms: i64,
}

/// One side's figures for an error ratio.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SideCounts {
    /// Failed requests.
    pub errors: u64,
    /// All requests.
    pub total: u64,
    /// errors / total.
    #[serde(deserialize_with = "nullable_f64")]
    pub ratio: f64,
}

/// One side's figures for a sampled metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SideSummary {
    /// Observations.
    pub n: u64,
    /// Median.
    #[serde(deserialize_with = "nullable_f64")]
    pub median: f64,
    /// 99th percentile.
    #[serde(deserialize_with = "nullable_f64")]
    pub p99: f64,
}

/// Mann–Whitney U as evidence.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MannWhitneyEvidence {
    /// The canary's U.
    #[serde(deserialize_with = "nullable_f64")]
    pub u: f64,
    /// The z statistic (positive: the canary tends higher).
    #[serde(deserialize_with = "nullable_f64")]
    pub z: f64,
    /// One-sided p-value that the canary is higher.
    #[serde(deserialize_with = "nullable_f64")]
    pub p_greater: f64,
    /// One-sided p-value that the canary is lower.
    #[serde(deserialize_with = "nullable_f64")]
    pub p_less: f64,
    /// P(canary > baseline) + ½ P(equal), 0.5 when alike.
    #[serde(deserialize_with = "nullable_f64")]
    pub common_language_effect: f64,
}

/// The tail test as evidence: how many of each side lie above the pooled p99.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TailEvidence {
    /// The pooled 99th percentile.
    #[serde(deserialize_with = "nullable_f64")]
    pub threshold: f64,
    /// Canary observations above it.
    pub canary_above: u64,
    /// Baseline observations above it.
    pub baseline_above: u64,
    /// Fisher's exact one-sided p-value that the canary has more than its share.
    #[serde(deserialize_with = "nullable_f64")]
    pub p_value: f64,
    /// The canary's p99 over the baseline's.
    #[serde(deserialize_with = "nullable_f64")]
    pub p99_ratio: f64,
}

/// What a metric's outcome rests on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "test", rename_all = "snake_case")]
pub enum Evidence {
    /// Not enough data (the reason says what was missing).
    None,
    /// Fisher's exact test on the 2×2 table of errors and requests.
    FisherExact {
        /// The canary's counts.
        canary: SideCounts,
        /// The baseline's counts.
        baseline: SideCounts,
        /// One-sided p-value that the canary's ratio is higher.
        #[serde(deserialize_with = "nullable_f64")]
        p_higher: f64,
        /// One-sided p-value that it is lower.
        #[serde(deserialize_with = "nullable_f64")]
        p_lower: f64,
        /// canary ratio − baseline ratio.
        #[serde(deserialize_with = "nullable_f64")]
        difference: f64,
        /// canary ratio / baseline ratio (null when the baseline had no errors).
        relative: Option<f64>,
    },
    /// Mann–Whitney U and Hodges–Lehmann (and, for latency, the tail test).
    MannWhitney {
        /// The canary's summary.
        canary: SideSummary,
        /// The baseline's summary.
        baseline: SideSummary,
        /// The U test.
        mann_whitney: MannWhitneyEvidence,
        /// The shift and its interval.
        hodges_lehmann: HodgesLehmann,
        /// shift / baseline median (null when the median is 0).
        relative_shift: Option<f64>,
        /// Latency only: the tail test.
        #[serde(skip_serializing_if = "Option::is_none")]
        tail: Option<TailEvidence>,
    },
}

/// One metric's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricResult {
    /// The metric's name.
    pub name: String,
    /// Its group.
    pub group: String,
    /// `error_ratio`, `latency` or `custom`.
    pub kind: String,
    /// Whether it is critical.
    pub critical: bool,
    /// The outcome.
    pub outcome: Outcome,
    /// One sentence: why.
    pub reason: String,
    /// The statistics behind it.
    pub evidence: Evidence,
}

/// One group's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupResult {
    /// The group's name.
    pub name: String,
    /// Its weight (relative; the total is normalised).
    #[serde(deserialize_with = "nullable_f64")]
    pub weight: f64,
    /// Metrics in it.
    pub metrics: usize,
    /// Metrics with data.
    pub with_data: usize,
    /// Passing metrics.
    pub passed: usize,
    /// 100 × passed / with_data, null when none had data.
    pub score: Option<f64>,
}

/// The judgement with its evidence: the JSON body of every endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The verdict.
    pub verdict: Verdict,
    /// 0–100: the weighted share of passing metrics among those with data.
    #[serde(deserialize_with = "nullable_f64")]
    pub score: f64,
    /// One sentence: why this verdict.
    pub reason: String,
    /// The interval compared and the time of judgement.
    pub interval: Interval,
    /// The thresholds applied.
    pub thresholds: Thresholds,
    /// Per group.
    pub groups: Vec<GroupResult>,
    /// Per metric, in the order given.
    pub metrics: Vec<MetricResult>,
}
