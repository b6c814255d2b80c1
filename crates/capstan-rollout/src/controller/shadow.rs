//! The shadow step's judge inputs. The proxy mirrors a share of requests to
//! the canary and records, in the user's event, how the canary's answer (which
//! nobody saw) compared with the baseline's (which the user got). The judge
//! compares the two answers to the same requests:
//!
//! - `shadow_errors` (critical): the canary's 5xx or missing answers against
//!   the baseline's 5xx and errors, Fisher's exact test;
//! - `status_mismatch` (critical): answers whose status class differs from the
//!   baseline's, against none;
//! - `shadow_latency` (critical): the canary's duration against the
//!   baseline's, Mann–Whitney U and the p99 ratio.
//!
//! Body hashes are not compared: a new release may well answer differently
//! (its version, a new field) and still be right.

use super::plan::Analysis;
use crate::judge::{self, Counts, MetricSpec, Observed, Rule, Samples};

/// What the mirrored requests of an interval showed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mirrored {
    /// Mirrored requests whose comparison was recorded.
    pub requests: u64,
    /// Of them, answered by the baseline with a 5xx or an error (what users saw).
    pub baseline_errors: u64,
    /// Of them, answered by the canary with a 5xx, or not answered in time.
    pub canary_errors: u64,
    /// Of them, with a different status class on the two sides.
    pub mismatches: u64,
    /// The baseline's durations, ms.
    pub baseline_ms: Vec<f64>,
    /// The canary's durations, ms.
    pub canary_ms: Vec<f64>,
}

impl Mirrored {
    /// Counts one event, if it is a request the baseline served and the proxy
    /// mirrored.
    pub fn add(&mut self, e: &capstan_events::Outcome, baseline: &str) {
        let Some(m) = &e.mirror else { return };
        if e.release != baseline {
            return;
        }
        self.requests += 1;
        if e.status >= 500 || e.failed {
            self.baseline_errors += 1;
        }
        if m.shadow_status == 0 || m.shadow_status >= 500 {
            self.canary_errors += 1;
        }
        if !m.status_class_equal {
            self.mismatches += 1;
        }
        if e.duration_ms.is_finite() && e.duration_ms >= 0.0 {
            self.baseline_ms.push(e.duration_ms);
        }
        if m.shadow_ms.is_finite() && m.shadow_ms >= 0.0 {
            self.canary_ms.push(m.shadow_ms);
        }
    }

    /// The canary's side as request and error counts.
    pub fn canary(&self) -> Counts {
        Counts {
            errors: self.canary_errors,
            total: self.requests,
        }
    }

    /// The baseline's side as request and error counts.
    pub fn baseline(&self) -> Counts {
        Counts {
            errors: self.baseline_errors,
            total: self.requests,
        }
    }

    /// The three metrics and their observations, with the plan's tolerances and
    /// `min_requests` mirrored requests as the minimum.
    pub fn judge_inputs(self, a: &Analysis, min_requests: u64) -> (Vec<MetricSpec>, Vec<Observed>) {
        let ratio = |name: &str, group: &str| MetricSpec {
            name: name.into(),
            group: group.into(),
            critical: true,
            rule: Rule::ErrorRatio {
                direction: judge::Direction::Increase,
                min_requests: min_requests.max(1),
                relative_tolerance: a.relative_tolerance,
                absolute_tolerance: a.absolute_tolerance,
            },
        };
        let specs = vec![
            ratio("shadow_errors", "availability"),
            ratio("status_mismatch", "correctness"),
            MetricSpec {
                name: "shadow_latency".into(),
                group: "latency".into(),
                critical: true,
                rule: Rule::Latency {
                    min_samples: min_requests.max(10),
                    shift_tolerance: a.shift_tolerance,
                    p99_tolerance: a.p99_tolerance,
                },
            },
        ];
        let mismatch = Observed::Counts {
            canary: Counts {
                errors: self.mismatches,
                total: self.requests,
            },
            // The baseline agrees with itself on every request.
            baseline: Counts {
                errors: 0,
                total: self.requests,
            },
        };
        let errors = Observed::Counts {
            canary: self.canary(),
            baseline: self.baseline(),
        };
        let latency = match (
            Samples::from_values(self.canary_ms),
            Samples::from_values(self.baseline_ms),
        ) {
            (Ok(canary), Ok(baseline)) => Observed::Samples { canary, baseline },
            (Err(e), _) | (_, Err(e)) => Observed::Missing {
                reason: e.to_string(),
            },
        };
        (specs, vec![errors, mismatch, latency])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::{judge, Interval, Thresholds, Verdict};
    use capstan_events::{MirrorComparison, Outcome};

    fn event(release: &str, status: u16, shadow_status: Option<u16>) -> Outcome {
        Outcome {
            id: 0,
            time_ms: 0,
            release: release.into(),
            status,
            failed: false,
            client_body: false,
            duration_ms: 2.0,
            mirror: shadow_status.map(|s| MirrorComparison {
                status_class_equal: s / 100 == status / 100,
                body_hash_equal: false,
                shadow_status: s,
                shadow_ms: 2.0,
            }),
        }
    }

    fn verdict(m: Mirrored) -> Verdict {
        let (specs, observed) = m.judge_inputs(&Analysis::default(), 200);
        let t = Thresholds::default();
        let at = Interval {
            from_ms: 0,
            to_ms: 1,
            at_ms: 1,
        };
        judge(&specs, &observed, &Default::default(), &t, at).verdict
    }

    #[test]
    fn only_mirrored_requests_served_by_the_baseline_count() {
        let mut m = Mirrored::default();
        m.add(&event("1.0.0", 200, Some(503)), "1.0.0");
        m.add(&event("1.0.0", 200, Some(200)), "1.0.0");
        m.add(&event("1.0.0", 500, Some(200)), "1.0.0");
        m.add(&event("1.0.0", 200, Some(0)), "1.0.0"); // the shadow never answered
        m.add(&event("1.0.0", 200, None), "1.0.0"); // not mirrored
        m.add(&event("2.0.0", 200, Some(200)), "1.0.0"); // served by another release
        assert_eq!(m.requests, 4);
        assert_eq!(m.canary_errors, 2);
        assert_eq!(m.baseline_errors, 1);
        assert_eq!(m.mismatches, 3);
        assert_eq!(m.canary_ms.len(), 4);
    }

    #[test]
    fn a_shadow_failing_3_percent_fails_and_an_identical_one_passes() {
        let mut bad = Mirrored::default();
        let mut good = Mirrored::default();
        for i in 0..1000 {
            bad.add(
                &event("1.0.0", 200, Some(if i % 33 == 0 { 500 } else { 200 })),
                "1.0.0",
            );
            good.add(&event("1.0.0", 200, Some(200)), "1.0.0");
        }
        assert_eq!(verdict(bad), Verdict::Fail);
        assert_eq!(verdict(good), Verdict::Pass);
    }

    #[test]
    fn a_4xx_where_the_baseline_answered_2xx_is_a_mismatch_that_fails() {
        let mut m = Mirrored::default();
        for i in 0..1000 {
            m.add(
                &event("1.0.0", 200, Some(if i % 20 == 0 { 404 } else { 200 })),
                "1.0.0",
            );
        }
        assert_eq!(m.canary_errors, 0);
        assert_eq!(verdict(m), Verdict::Fail);
    }

    #[test]
    fn too_few_mirrored_requests_are_inconclusive() {
        let mut m = Mirrored::default();
        for _ in 0..50 {
            m.add(&event("1.0.0", 200, Some(200)), "1.0.0");
        }
        assert_eq!(verdict(m), Verdict::Inconclusive);
    }
}
