//! What the judge is told: the global [`Thresholds`], each metric's
//! [`MetricSpec`] with its [`Rule`] (the test and its tolerances), and the
//! errors of a bad setting.

use serde::{Deserialize, Serialize};

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
