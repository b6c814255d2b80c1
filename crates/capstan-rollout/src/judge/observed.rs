//! The judge's inputs: what was observed of one metric on both sides.

use serde::{Deserialize, Serialize};

#[cfg(doc)]
use super::Rule;
use super::Samples;

/// Errors and requests on one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Failed requests.
    pub errors: u64,
    /// All requests (errors included).
    pub total: u64,
}

impl Counts {
    /// errors / total, 0 when there were none.
    pub fn ratio(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.errors as f64 / self.total as f64
        }
    }
}

/// One metric's observations on both sides.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// For [`Rule::ErrorRatio`].
    Counts {
        /// The canary's.
        canary: Counts,
        /// The baseline's.
        baseline: Counts,
    },
    /// For [`Rule::Latency`] and [`Rule::Custom`].
    Samples {
        /// The canary's.
        canary: Samples,
        /// The baseline's.
        baseline: Samples,
    },
    /// The source had nothing (or failed): no data.
    Missing {
        /// Why, for the evidence.
        reason: String,
    },
}
