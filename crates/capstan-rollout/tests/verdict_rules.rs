//! How metric outcomes combine into a verdict: groups and weights, thresholds,
//! critical metrics, and missing data.

use std::collections::BTreeMap;

use capstan_rollout::judge::{
    combine, Evidence, Interval, MetricResult, Outcome, Thresholds, Verdict,
};

const AT: Interval = Interval {
    from_ms: 0,
    to_ms: 60_000,
    at_ms: 60_000,
};

fn m(name: &str, group: &str, critical: bool, outcome: Outcome) -> MetricResult {
    MetricResult {
        name: name.into(),
        group: group.into(),
        kind: "custom".into(),
        critical,
        outcome,
        reason: String::new(),
        evidence: Evidence::None,
    }
}

fn verdict(metrics: Vec<MetricResult>, weights: &[(&str, f64)], t: &Thresholds) -> (Verdict, f64) {
    let w: BTreeMap<String, f64> = weights.iter().map(|(g, w)| (g.to_string(), *w)).collect();
    let r = combine(metrics, &w, t, AT);
    (r.verdict, r.score)
}

#[test]
fn everything_passing_is_a_pass_with_score_100() {
    let t = Thresholds::default();
    let (v, s) = verdict(
        vec![
            m("a", "x", false, Outcome::Pass),
            m("b", "y", false, Outcome::Pass),
        ],
        &[],
        &t,
    );
    assert_eq!((v, s), (Verdict::Pass, 100.0));
}

#[test]
fn group_weights_set_the_score_and_thresholds_the_verdict() {
    let t = Thresholds::default(); // pass 95, marginal 75
                                   // Group x (weight 3) passes; group y (weight 1) has one of two metrics high.
    let metrics = || {
        vec![
            m("a", "x", false, Outcome::Pass),
            m("b", "y", false, Outcome::Pass),
            m("c", "y", false, Outcome::High),
        ]
    };
    let (v, s) = verdict(metrics(), &[("x", 3.0), ("y", 1.0)], &t);
    assert_eq!(s, (3.0 * 100.0 + 1.0 * 50.0) / 4.0);
    assert_eq!(v, Verdict::Marginal);
    // Equal weights: 75 → still marginal (at the threshold); heavier y fails.
    assert_eq!(verdict(metrics(), &[], &t), (Verdict::Marginal, 75.0));
    let (v, s) = verdict(metrics(), &[("x", 1.0), ("y", 3.0)], &t);
    assert_eq!((v, s), (Verdict::Fail, 62.5));
}

#[test]
fn a_critical_metric_fails_the_verdict_whatever_the_score() {
    let t = Thresholds::default();
    let mut metrics: Vec<_> = (0..20)
        .map(|i| m(&format!("ok{i}"), "x", false, Outcome::Pass))
        .collect();
    metrics.push(m("errors", "x", true, Outcome::High));
    let (v, s) = verdict(metrics, &[], &t);
    assert!(s > 95.0);
    assert_eq!(v, Verdict::Fail);
    // A low that is bad (critical, direction decrease) fails the same way.
    let (v, _) = verdict(vec![m("hits", "x", true, Outcome::Low)], &[], &t);
    assert_eq!(v, Verdict::Fail);
}

#[test]
fn missing_data_is_inconclusive_never_a_pass() {
    let t = Thresholds::default();
    // A critical metric without data.
    let (v, _) = verdict(
        vec![
            m("a", "x", false, Outcome::Pass),
            m("b", "y", true, Outcome::NoData),
        ],
        &[],
        &t,
    );
    assert_eq!(v, Verdict::Inconclusive);
    // Not critical, but the default needs data for all of the weight.
    let (v, _) = verdict(
        vec![
            m("a", "x", false, Outcome::Pass),
            m("b", "y", false, Outcome::NoData),
        ],
        &[],
        &t,
    );
    assert_eq!(v, Verdict::Inconclusive);
    // With min_data_fraction 0.5, half the weight suffices.
    let half = Thresholds {
        min_data_fraction: 0.5,
        ..Thresholds::default()
    };
    let (v, s) = verdict(
        vec![
            m("a", "x", false, Outcome::Pass),
            m("b", "y", false, Outcome::NoData),
        ],
        &[],
        &half,
    );
    assert_eq!((v, s), (Verdict::Pass, 100.0));
    // No data anywhere, whatever the setting.
    let none = Thresholds {
        min_data_fraction: 0.0,
        ..Thresholds::default()
    };
    let (v, _) = verdict(vec![m("a", "x", false, Outcome::NoData)], &[], &none);
    assert_eq!(v, Verdict::Inconclusive);
}

#[test]
fn a_failure_that_missing_data_could_not_rescue_is_a_fail() {
    // Three groups; two fail, one has no data: even if it passed, 33 < 75.
    let t = Thresholds::default();
    let (v, _) = verdict(
        vec![
            m("a", "x", false, Outcome::High),
            m("b", "y", false, Outcome::High),
            m("c", "z", false, Outcome::NoData),
        ],
        &[],
        &t,
    );
    assert_eq!(v, Verdict::Fail);
}

mod tolerances_and_directions {
    use capstan_rollout::judge::{
        judge_metric, Counts, Direction, MetricSpec, Observed, Outcome, Rule, Samples, Thresholds,
    };

    fn spec(rule: Rule) -> MetricSpec {
        MetricSpec {
            name: "m".into(),
            group: "g".into(),
            critical: false,
            rule,
        }
    }

    #[test]
    fn a_significant_increase_inside_the_tolerance_passes() {
        // 1.00 % against 1.10 % over a million requests a side: significant
        // (Fisher p ≈ 1e-12) but 10 % more, inside the 20 % tolerance.
        let observed = Observed::Counts {
            canary: Counts {
                errors: 11_000,
                total: 1_000_000,
            },
            baseline: Counts {
                errors: 10_000,
                total: 1_000_000,
            },
        };
        let r = judge_metric(
            &spec(Rule::error_ratio()),
            &observed,
            &Thresholds::default(),
        );
        assert_eq!(r.outcome, Outcome::Pass, "{}", r.reason);
        // With no tolerance it is high.
        let strict = Rule::ErrorRatio {
            direction: Direction::Increase,
            min_requests: 500,
            relative_tolerance: 0.0,
            absolute_tolerance: 0.0,
        };
        let r = judge_metric(&spec(strict), &observed, &Thresholds::default());
        assert_eq!(r.outcome, Outcome::High, "{}", r.reason);
    }

    #[test]
    fn zero_errors_on_the_baseline_is_not_a_division_by_zero() {
        let observed = Observed::Counts {
            canary: Counts {
                errors: 30,
                total: 5_000,
            },
            baseline: Counts {
                errors: 0,
                total: 5_000,
            },
        };
        let r = judge_metric(
            &spec(Rule::error_ratio()),
            &observed,
            &Thresholds::default(),
        );
        assert_eq!(r.outcome, Outcome::High, "{}", r.reason);
    }

    #[test]
    fn direction_decides_which_change_is_bad() {
        let base: Vec<f64> = (0..200).map(|i| 100.0 + (i % 20) as f64).collect();
        let lower: Vec<f64> = base.iter().map(|v| v * 0.7).collect();
        let observed = Observed::Samples {
            canary: Samples::from_values(lower).unwrap(),
            baseline: Samples::from_values(base).unwrap(),
        };
        let t = Thresholds::default();
        let outcome = |d| judge_metric(&spec(Rule::custom(d)), &observed, &t).outcome;
        assert_eq!(
            outcome(Direction::Increase),
            Outcome::Pass,
            "lower is fine when increase is bad"
        );
        assert_eq!(outcome(Direction::Decrease), Outcome::Low);
        assert_eq!(outcome(Direction::Either), Outcome::Low);
    }

    #[test]
    fn a_faster_canary_passes_latency() {
        let base: Vec<f64> = (0..500).map(|i| 50.0 + (i % 50) as f64).collect();
        let faster: Vec<f64> = base.iter().map(|v| v * 0.5).collect();
        let observed = Observed::Samples {
            canary: Samples::from_values(faster).unwrap(),
            baseline: Samples::from_values(base).unwrap(),
        };
        let r = judge_metric(&spec(Rule::latency()), &observed, &Thresholds::default());
        assert_eq!(r.outcome, Outcome::Pass, "{}", r.reason);
    }
}
