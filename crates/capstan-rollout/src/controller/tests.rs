use super::*;

fn steps() -> Vec<Step> {
    let s = |target| Step {
        target,
        min_duration_ms: 10_000,
        min_requests: 100,
        interval_ms: 1_000,
    };
    vec![
        s(Target::Internal),
        s(Target::Weight { percent: 1 }),
        s(Target::Weight { percent: 50 }),
        s(Target::Weight { percent: 100 }),
    ]
}

const LIMITS: Limits = Limits {
    hold_limit: 2,
    page_burn: None,
};

fn judged(verdict: Verdict, from_ms: i64, at_ms: i64, n: u64) -> Observation {
    Observation {
        command: None,
        judged: Some(Judged {
            verdict,
            from_ms,
            at_ms,
            canary_requests: n,
            baseline_requests: n,
            canary_errors: 0,
            summary: "test".into(),
        }),
        gate_refused: None,
    }
}

fn start() -> State {
    State::new("chirpy", "1.0.0", "2.0.0", 0)
}

#[test]
fn a_pass_after_the_minimums_moves_exactly_one_step() {
    let d = reconcile(
        &start(),
        &steps(),
        &LIMITS,
        &judged(Verdict::Pass, 0, 10_000, 100),
        10_000,
    );
    assert_eq!(d.action, Action::Apply { step: 1 });
    assert_eq!(d.state.step, 1);
    assert_eq!(d.state.step_started_ms, 10_000);
    assert_eq!(d.log.len(), 2, "a verdict line and a step line");
}

#[test]
fn a_pass_before_the_minimums_does_not_move() {
    let early = reconcile(
        &start(),
        &steps(),
        &LIMITS,
        &judged(Verdict::Pass, 0, 9_999, 500),
        9_999,
    );
    assert_eq!(early.action, Action::None);
    assert_eq!(early.state.step, 0);
    let thin = reconcile(
        &start(),
        &steps(),
        &LIMITS,
        &judged(Verdict::Pass, 0, 20_000, 99),
        20_000,
    );
    assert_eq!(thin.action, Action::None);
}

#[test]
fn never_forward_without_a_fresh_verdict() {
    let mut s = start();
    // No verdict at all.
    let d = reconcile(&s, &steps(), &LIMITS, &Observation::default(), 60_000);
    assert_eq!(d.action, Action::None);
    // A verdict over data from before the step started (a resumed controller).
    s = s.resumed(30_000);
    let d = reconcile(
        &s,
        &steps(),
        &LIMITS,
        &judged(Verdict::Pass, 0, 60_000, 1000),
        60_000,
    );
    assert_eq!(d.action, Action::None);
    assert_eq!(d.state.step, 0);
    // The same verdict twice.
    s.last_verdict_ms = Some(60_000);
    let d = reconcile(
        &s,
        &steps(),
        &LIMITS,
        &judged(Verdict::Pass, 30_000, 60_000, 1000),
        61_000,
    );
    assert_eq!(d.action, Action::None);
    // A fresh one moves.
    let d = reconcile(
        &s,
        &steps(),
        &LIMITS,
        &judged(Verdict::Pass, 30_000, 61_000, 1000),
        61_000,
    );
    assert_eq!(d.action, Action::Apply { step: 1 });
}

#[test]
fn fail_rolls_back_from_any_step() {
    for step in 0..3 {
        let mut s = start();
        s.step = step;
        let d = reconcile(
            &s,
            &steps(),
            &LIMITS,
            &judged(Verdict::Fail, 0, 1_000, 5),
            1_000,
        );
        assert_eq!(d.action, Action::Rollback);
        assert!(matches!(d.state.phase, Phase::RolledBack { .. }));
        assert_eq!(d.log.last().unwrap().kind, LogKind::Rollback);
        // Terminal: nothing afterwards, even a pass.
        let after = reconcile(
            &d.state,
            &steps(),
            &LIMITS,
            &judged(Verdict::Pass, 0, 99_000, 1000),
            99_000,
        );
        assert_eq!(after.action, Action::None);
    }
}

#[test]
fn holding_past_the_limit_stops_for_a_human() {
    let mut s = start();
    for i in 1..=3 {
        let d = reconcile(
            &s,
            &steps(),
            &LIMITS,
            &judged(Verdict::Inconclusive, 0, i * 1_000, 0),
            i * 1_000,
        );
        assert_eq!(d.action, Action::None);
        s = d.state;
    }
    assert!(matches!(s.phase, Phase::NeedsHuman { .. }), "{s:?}");
    // Stopped: even a pass does nothing until resumed.
    let d = reconcile(
        &s,
        &steps(),
        &LIMITS,
        &judged(Verdict::Pass, 0, 50_000, 1000),
        50_000,
    );
    assert_eq!(d.action, Action::None);
    let resumed = reconcile(
        &d.state,
        &steps(),
        &LIMITS,
        &Observation {
            command: Some(Command::Resume),
            judged: None,
            gate_refused: None,
        },
        51_000,
    );
    assert_eq!(resumed.state.phase, Phase::Running);
    assert_eq!(resumed.state.holds, 0);
}

#[test]
fn page_rate_burn_aborts_whatever_the_judge_says() {
    let limits = Limits {
        hold_limit: 2,
        page_burn: Some(PageBurn {
            objective: 0.999,
            rate: 14.4,
            min_requests: 100,
        }),
    };
    let mut obs = judged(Verdict::Pass, 0, 20_000, 1000);
    if let Some(j) = obs.judged.as_mut() {
        j.canary_errors = 20; // 2 % = 20× a 0.1 % budget
    }
    let d = reconcile(&start(), &steps(), &limits, &obs, 20_000);
    assert_eq!(d.action, Action::Rollback);
    // Below page rate: the pass stands.
    if let Some(j) = obs.judged.as_mut() {
        j.canary_errors = 10;
    }
    let d = reconcile(&start(), &steps(), &limits, &obs, 20_000);
    assert_eq!(d.action, Action::Apply { step: 1 });
}

#[test]
fn operator_commands() {
    let s = start();
    let paused = reconcile(
        &s,
        &steps(),
        &LIMITS,
        &Observation {
            command: Some(Command::Pause),
            judged: None,
            gate_refused: None,
        },
        1,
    );
    assert!(matches!(paused.state.phase, Phase::Paused { .. }));
    let d = reconcile(
        &paused.state,
        &steps(),
        &LIMITS,
        &judged(Verdict::Pass, 0, 20_000, 1000),
        20_000,
    );
    assert_eq!(d.action, Action::None, "paused: no movement");
    let promoted = reconcile(
        &s,
        &steps(),
        &LIMITS,
        &Observation {
            command: Some(Command::Promote),
            judged: None,
            gate_refused: None,
        },
        2,
    );
    assert_eq!(promoted.action, Action::Apply { step: 1 }, "one step");
    let aborted = reconcile(
        &s,
        &steps(),
        &LIMITS,
        &Observation {
            command: Some(Command::Abort),
            judged: None,
            gate_refused: None,
        },
        3,
    );
    assert_eq!(aborted.action, Action::Rollback);
}

#[test]
fn passes_walk_every_step_then_promote() {
    let steps = steps();
    let mut s = start();
    let mut weights = vec![];
    let mut t = 0;
    loop {
        t += 10_000;
        let d = reconcile(
            &s,
            &steps,
            &LIMITS,
            &judged(Verdict::Pass, s.step_started_ms, t, 1000),
            t,
        );
        s = d.state;
        match d.action {
            Action::Apply { step } => weights.push(steps[step].target.weight()),
            Action::Promote => {
                weights.push(100);
                break;
            }
            a => panic!("{a:?}"),
        }
    }
    assert_eq!(weights, vec![1, 50, 100]);
    assert_eq!(s.phase, Phase::Promoted);
}

#[test]
fn a_pass_through_a_closed_gate_stops_for_a_human_and_does_not_move() {
    let mut obs = judged(Verdict::Pass, 0, 10_000, 100);
    obs.gate_refused = Some("budget: api-availability: budget spent".into());
    let d = reconcile(&start(), &steps(), &LIMITS, &obs, 10_000);
    assert_eq!(d.action, Action::None);
    assert_eq!(d.state.step, 0);
    assert!(
        matches!(&d.state.phase, Phase::NeedsHuman { reason } if reason.contains("gate closed") && reason.contains("budget spent")),
        "{:?}",
        d.state.phase
    );
    assert!(d
        .log
        .iter()
        .any(|l| l.detail.contains("needs a human: gate closed")));
    // A closed gate does not stop a rollback: a fail still rolls back.
    let mut fail = judged(Verdict::Fail, 0, 10_000, 100);
    fail.gate_refused = Some("schema/fleet: x".into());
    let d = reconcile(&start(), &steps(), &LIMITS, &fail, 10_000);
    assert_eq!(d.action, Action::Rollback);
    // Nor does it matter before the minimums are met: nothing moves anyway.
    let mut early = judged(Verdict::Pass, 0, 5_000, 100);
    early.gate_refused = Some("x".into());
    let d = reconcile(&start(), &steps(), &LIMITS, &early, 5_000);
    assert_eq!(d.state.phase, Phase::Running);
    // Once the gate opens, the next pass moves one step.
    let mut open = judged(Verdict::Pass, 0, 11_000, 100);
    open.gate_refused = None;
    let d = reconcile(&start(), &steps(), &LIMITS, &open, 11_000);
    assert_eq!(d.action, Action::Apply { step: 1 });
}

mod kept_reports {
    use super::*;
    use crate::judge::{self, Counts, Interval, MetricSpec, Observed, Rule, Samples, Thresholds};

    /// A real report: errors and latency judged over `[from_ms, at_ms)`;
    /// `slow_tail` makes the canary's p99 infinitely worse than a baseline
    /// whose p99 is 0 (an infinite statistic).
    fn report(from_ms: i64, at_ms: i64, slow_tail: bool) -> Report {
        let specs = [
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
        ];
        let canary: Vec<f64> = (0..400)
            .map(|i| {
                if slow_tail && i % 50 == 0 {
                    9.0
                } else {
                    (i % 7) as f64
                }
            })
            .collect();
        let baseline: Vec<f64> = (0..400)
            .map(|i| if slow_tail { 0.0 } else { (i % 7) as f64 })
            .collect();
        let observed = [
            Observed::Counts {
                canary: Counts {
                    errors: 2,
                    total: 1000,
                },
                baseline: Counts {
                    errors: 3,
                    total: 1000,
                },
            },
            Observed::Samples {
                canary: Samples::from_values(canary).unwrap(),
                baseline: Samples::from_values(baseline).unwrap(),
            },
        ];
        judge::judge(
            &specs,
            &observed,
            &Default::default(),
            &Thresholds::default(),
            Interval {
                from_ms,
                to_ms: at_ms,
                at_ms,
            },
        )
    }

    fn observation(r: &Report) -> Observation {
        let mut o = judged(r.verdict, r.interval.from_ms, r.interval.at_ms, 1000);
        o.judged.as_mut().unwrap().canary_requests = 1000;
        o
    }

    #[test]
    fn a_state_written_before_verdicts_were_kept_still_loads() {
        let old = r#"{"service":"chirpy","baseline":"1.0.0","canary":"2.0.0","step":1,
            "step_started_ms":5,"phase":{"phase":"running"},"holds":0,"last_verdict_ms":4,
            "started_ms":0,"updated_ms":5}"#;
        let s: State = serde_json::from_str(old).unwrap();
        assert_eq!(s.step, 1);
        assert_eq!(s.last_judgement, None);
        assert!(s.decisive_verdicts.is_empty());
        // And a kept record that no longer reads is dropped, not fatal.
        let odd = old.replace(
            "\"updated_ms\":5}",
            "\"updated_ms\":5,\"last_judgement\":{\"step\":\"x\"},\"decisive_verdicts\":[1]}",
        );
        let s: State = serde_json::from_str(&odd).unwrap();
        assert_eq!(s.last_judgement, None);
        assert!(s.decisive_verdicts.is_empty());
    }

    #[test]
    fn a_used_verdict_is_kept_with_every_metric_and_reads_back_equal() {
        let r = report(0, 10_000, false);
        assert_eq!(r.verdict, Verdict::Pass, "{r:?}");
        let before = start();
        let mut d = reconcile(&before, &steps(), &LIMITS, &observation(&r), 10_000);
        assert_eq!(d.action, Action::Apply { step: 1 });
        keep_report(&before, &mut d, r.clone());
        let kept = d.state.last_judgement.clone().unwrap();
        assert_eq!(kept.step, 0, "the step judged, not the one entered");
        assert_eq!(kept.report.metrics.len(), 2);
        assert_eq!(
            d.state.decisive_verdicts,
            vec![kept.clone()],
            "it moved the rollout"
        );
        let json = serde_json::to_string(&d.state).unwrap();
        let back: State = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d.state);
    }

    #[test]
    fn a_hold_is_the_last_judgement_but_not_decisive() {
        let r = report(0, 10_000, false);
        let before = start();
        let mut o = observation(&r);
        o.judged.as_mut().unwrap().verdict = Verdict::Inconclusive;
        let mut d = reconcile(&before, &steps(), &LIMITS, &o, 10_000);
        assert!(d.log.is_empty());
        keep_report(&before, &mut d, r);
        assert!(d.state.last_judgement.is_some());
        assert!(d.state.decisive_verdicts.is_empty());
    }

    #[test]
    fn a_verdict_the_decision_did_not_use_is_not_kept() {
        // Judged over data from before the step started: stale, ignored.
        let r = report(-5_000, 10_000, false);
        let before = start();
        let mut d = reconcile(&before, &steps(), &LIMITS, &observation(&r), 10_000);
        keep_report(&before, &mut d, r);
        assert_eq!(d.state.last_judgement, None);
        assert!(d.state.decisive_verdicts.is_empty());
    }

    #[test]
    fn an_infinite_statistic_reads_back_as_nan_and_the_state_loads() {
        let r = report(0, 10_000, true);
        let tail_ratio = |r: &Report| match &r.metrics[1].evidence {
            judge::Evidence::MannWhitney { tail: Some(t), .. } => t.p99_ratio,
            other => panic!("{other:?}"),
        };
        assert!(tail_ratio(&r).is_infinite());
        let before = start();
        let mut d = reconcile(&before, &steps(), &LIMITS, &observation(&r), 10_000);
        keep_report(&before, &mut d, r);
        let json = serde_json::to_string(&d.state).unwrap();
        let back: State = serde_json::from_str(&json).unwrap();
        let kept = back.last_judgement.expect("kept");
        assert!(tail_ratio(&kept.report).is_nan());
        assert_eq!(
            kept.report.metrics[0],
            d.state.last_judgement.unwrap().report.metrics[0]
        );
    }

    #[test]
    fn only_the_last_decisive_verdicts_are_kept() {
        let mut s = start();
        for i in 0..(KEPT_VERDICTS as i64 + 5) {
            let at = 10_000 * (i + 1);
            let r = report(s.step_started_ms, at, false);
            let mut o = observation(&r);
            // Fails roll back; use passes on a plan long enough never to end.
            o.judged.as_mut().unwrap().verdict = Verdict::Pass;
            let plan: Vec<Step> = (0..100).map(|_| steps()[1]).collect();
            let mut d = reconcile(&s, &plan, &LIMITS, &o, at);
            keep_report(&s, &mut d, r);
            s = d.state;
        }
        assert_eq!(s.decisive_verdicts.len(), KEPT_VERDICTS);
        assert_eq!(
            s.decisive_verdicts.last().unwrap().report.interval.at_ms,
            10_000 * (KEPT_VERDICTS as i64 + 5)
        );
    }
}

/// The window the controller judges and `observe` (the dashboard's judge
/// inputs) count the same way: a client's cancel is a request but not an
/// error, a body the client broke off is neither a request nor a latency
/// sample, and every other error kind is the release's.
#[test]
fn the_window_and_observe_leave_the_clients_failures_out_alike() {
    use capstan_events::{Event, Store};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("e.db")).unwrap();
    let event = |i: i64, release: &str, status: u16, error: Option<&str>, ms: f64| Event {
        time_ms: 1_000 + i,
        service: "chirpy".into(),
        release: release.into(),
        status,
        error: error.map(Into::into),
        duration_ms: ms,
        ..Event::default()
    };
    store
        .insert_batch(&[
            event(0, "2.0.0", 200, None, 5.0),
            event(1, "2.0.0", 499, Some("client_cancel"), 900.0),
            event(2, "2.0.0", 408, Some("client_body"), 30_000.0),
            event(3, "2.0.0", 502, Some("connect"), 1.0),
            event(4, "2.0.0", 502, Some("bad_uri"), 1.0),
            event(5, "1.0.0", 400, Some("client_body"), 30_000.0),
            event(6, "1.0.0", 200, None, 4.0),
        ])
        .unwrap();
    let mut window = window::Window::new(&start());
    window.catch_up(&store).unwrap();
    let (c, b, cl, bl) = run::observe(&store, "chirpy", "1.0.0", "2.0.0", 0, 10_000).unwrap();
    for (counts, ms, canary) in [
        (window.canary_counts, &window.canary_ms, true),
        (c, &cl, true),
        (window.baseline_counts, &window.baseline_ms, false),
        (b, &bl, false),
    ] {
        let mut ms = ms.clone();
        ms.sort_by(f64::total_cmp);
        if canary {
            assert_eq!((counts.total, counts.errors), (4, 2));
            assert_eq!(ms, [1.0, 1.0, 5.0, 900.0]);
        } else {
            assert_eq!((counts.total, counts.errors), (1, 0));
            assert_eq!(ms, [4.0]);
        }
    }
}
