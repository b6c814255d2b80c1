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
        kind: "custom",
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
