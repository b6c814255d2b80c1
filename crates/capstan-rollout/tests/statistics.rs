//! Statistical proof of the judge by seeded simulation: its false-failure rate on
//! A/A comparisons and its power against the regressions it must catch. Every run
//! is the same run (fixed seeds), and each figure is asserted, not printed.

use std::collections::BTreeMap;

use capstan_rollout::judge::{
    judge, Counts, Interval, MetricSpec, Observed, Outcome, Rule, Samples, Thresholds, Verdict,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Binomial, Distribution, LogNormal};

const INTERVAL: Interval = Interval {
    from_ms: 1_700_000_000_000,
    to_ms: 1_700_000_300_000,
    at_ms: 1_700_000_300_000,
};

/// The judge as a rollout step runs it: an error ratio and a latency metric, both
/// critical, in two equally weighted groups, default thresholds.
fn specs() -> Vec<MetricSpec> {
    vec![
        MetricSpec {
            name: "errors".into(),
            group: "availability".into(),
            critical: true,
            rule: Rule::error_ratio(),
        },
        MetricSpec {
            name: "latency".into(),
            group: "latency".into(),
            critical: true,
            rule: Rule::latency(),
        },
    ]
}

/// One simulated interval: `requests` a side for the error ratio, `samples` latency
/// samples a side (lognormal, median 50 ms, σ = 0.5 in log space).
struct Scenario {
    requests: u64,
    canary_error_ratio: f64,
    baseline_error_ratio: f64,
    samples: usize,
    canary_latency_factor: f64,
}

fn run(scenario: &Scenario, rng: &mut StdRng) -> (Verdict, Outcome, Outcome) {
    let errors =
        |p: f64, rng: &mut StdRng| Binomial::new(scenario.requests, p).unwrap().sample(rng);
    let canary = Counts {
        errors: errors(scenario.canary_error_ratio, rng),
        total: scenario.requests,
    };
    let baseline = Counts {
        errors: errors(scenario.baseline_error_ratio, rng),
        total: scenario.requests,
    };
    let latency = LogNormal::new(50f64.ln(), 0.5).unwrap();
    let draw = |factor: f64, rng: &mut StdRng| -> Vec<f64> {
        (0..scenario.samples)
            .map(|_| latency.sample(rng) * factor)
            .collect()
    };
    let canary_latency = Samples::from_values(draw(scenario.canary_latency_factor, rng)).unwrap();
    let baseline_latency = Samples::from_values(draw(1.0, rng)).unwrap();
    let report = judge(
        &specs(),
        &[
            Observed::Counts { canary, baseline },
            Observed::Samples {
                canary: canary_latency,
                baseline: baseline_latency,
            },
        ],
        &BTreeMap::new(),
        &Thresholds::default(),
        INTERVAL,
    );
    (
        report.verdict,
        report.metrics[0].outcome,
        report.metrics[1].outcome,
    )
}

#[test]
fn a_a_comparisons_fail_at_most_five_percent() {
    let mut rng = StdRng::seed_from_u64(17);
    let scenario = Scenario {
        requests: 5_000,
        canary_error_ratio: 0.01,
        baseline_error_ratio: 0.01,
        samples: 1_000,
        canary_latency_factor: 1.0,
    };
    let trials = 500;
    let mut failed = 0;
    let mut passed = 0;
    for _ in 0..trials {
        match run(&scenario, &mut rng).0 {
            Verdict::Fail => failed += 1,
            Verdict::Pass => passed += 1,
            _ => {}
        }
    }
    eprintln!("A/A: {failed} of {trials} failed, {passed} passed");
    assert!(
        failed * 100 <= 5 * trials,
        "{failed} of {trials} A/A comparisons failed"
    );
    // Not a judge that never fails by saying nothing: A/A with enough data passes.
    assert!(
        passed * 100 >= 90 * trials,
        "only {passed} of {trials} A/A comparisons passed"
    );
}

#[test]
fn a_doubled_error_ratio_is_caught_with_ninety_percent_power_at_5000_requests() {
    let mut rng = StdRng::seed_from_u64(1);
    let scenario = Scenario {
        requests: 5_000,
        canary_error_ratio: 0.02,
        baseline_error_ratio: 0.01,
        samples: 1_000,
        canary_latency_factor: 1.0,
    };
    let trials = 200;
    let mut caught = 0;
    for _ in 0..trials {
        let (verdict, errors, _) = run(&scenario, &mut rng);
        if verdict == Verdict::Fail {
            assert_eq!(
                errors,
                Outcome::High,
                "a failure must be the error metric's"
            );
            caught += 1;
        }
    }
    eprintln!("caught {caught} of {trials}");
    assert!(caught * 100 >= 90 * trials, "caught {caught} of {trials}");
}

#[test]
fn a_twenty_percent_latency_shift_is_caught_with_ninety_percent_power_at_1000_samples() {
    let mut rng = StdRng::seed_from_u64(2);
    let scenario = Scenario {
        requests: 5_000,
        canary_error_ratio: 0.01,
        baseline_error_ratio: 0.01,
        samples: 1_000,
        canary_latency_factor: 1.2,
    };
    let trials = 200;
    let mut caught = 0;
    for _ in 0..trials {
        let (verdict, _, latency) = run(&scenario, &mut rng);
        if verdict == Verdict::Fail && latency == Outcome::High {
            caught += 1;
        }
    }
    eprintln!("caught {caught} of {trials}");
    assert!(caught * 100 >= 90 * trials, "caught {caught} of {trials}");
}

#[test]
fn a_tail_only_regression_is_caught_by_the_p99_test() {
    // 5 % of canary requests gain 200 ms: the median barely moves, the tail does.
    let mut rng = StdRng::seed_from_u64(3);
    let latency = LogNormal::new(50f64.ln(), 0.5).unwrap();
    let trials = 50;
    let mut caught = 0;
    for _ in 0..trials {
        let baseline: Vec<f64> = (0..5_000).map(|_| latency.sample(&mut rng)).collect();
        let canary: Vec<f64> = (0..5_000)
            .map(|_| latency.sample(&mut rng) + if rng.random_bool(0.05) { 200.0 } else { 0.0 })
            .collect();
        let report = judge(
            &specs()[1..],
            &[Observed::Samples {
                canary: Samples::from_values(canary).unwrap(),
                baseline: Samples::from_values(baseline).unwrap(),
            }],
            &BTreeMap::new(),
            &Thresholds::default(),
            INTERVAL,
        );
        if report.verdict == Verdict::Fail {
            caught += 1;
        }
    }
    eprintln!("caught {caught} of {trials}");
    assert!(caught * 100 >= 90 * trials, "caught {caught} of {trials}");
}

#[test]
fn too_little_data_is_inconclusive_never_pass() {
    let mut rng = StdRng::seed_from_u64(4);
    // 100 requests and 50 latency samples a side: below the minimums.
    let scenario = Scenario {
        requests: 100,
        canary_error_ratio: 0.01,
        baseline_error_ratio: 0.01,
        samples: 50,
        canary_latency_factor: 1.0,
    };
    for _ in 0..20 {
        let (verdict, errors, latency) = run(&scenario, &mut rng);
        assert_eq!(verdict, Verdict::Inconclusive);
        assert_eq!((errors, latency), (Outcome::NoData, Outcome::NoData));
    }
    // Nothing at all.
    let report = judge(
        &specs(),
        &[],
        &BTreeMap::new(),
        &Thresholds::default(),
        INTERVAL,
    );
    assert_eq!(report.verdict, Verdict::Inconclusive);
}
