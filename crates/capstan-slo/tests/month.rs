//! A generated month of traffic in a real event store, with two bad deploys:
//! status, alert states, forecast and per-deploy attribution, checked against
//! numbers computed here independently.

use std::path::{Path, PathBuf};

use capstan_events::{Event, Store};
use capstan_slo::math::Severity;
use capstan_slo::{evaluate_all, spec, Deploy, DeployKind, DeployLog, ObjectiveStatus, Settings};

const MIN: i64 = 60_000;
/// 2026-11-30T12:00:00Z
const NOW: i64 = 1_796_040_000_000;
const PER_MINUTE: i64 = 5;
/// Deploy A: 30 minutes with 3 errors in 5 requests, 20 days ago.
const A: i64 = NOW - 20 * 1440 * MIN;
/// A good deploy, 10 days ago.
const C: i64 = NOW - 10 * 1440 * MIN;
/// Deploy B: 1 error in 5 requests since 50 minutes ago.
const B: i64 = NOW - 50 * MIN;

const SLO: &str = r#"apiVersion: openslo/v1
kind: SLO
metadata:
  name: api-availability
spec:
  service: api
  indicator:
    metadata:
      name: api-ok
    spec:
      ratioMetric:
        good:
          metricSource:
            type: capstan
            spec:
              query: status >= 100 and status < 500
        total:
          metricSource:
            type: capstan
            spec:
              query: status >= 0
  timeWindow:
    - duration: 30d
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - target: 0.999
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: api-slices
spec:
  service: api
  indicatorRef: api-ok
  timeWindow:
    - duration: 30d
      isRolling: true
  budgetingMethod: Timeslices
  objectives:
    - target: 0.99
      timeSliceTarget: 0.9
      timeSliceWindow: 5m
---
apiVersion: openslo/v1
kind: SLI
metadata:
  name: api-ok
spec:
  ratioMetric:
    good:
      metricSource: {type: capstan, spec: {query: "status >= 100 and status < 500"}}
    total:
      metricSource: {type: capstan, spec: {query: "status >= 0"}}
"#;

/// How many of the minute's requests fail.
fn bad_in_minute(m: i64) -> i64 {
    if (A..A + 30 * MIN).contains(&m) {
        3
    } else if m >= B {
        1
    } else {
        0
    }
}

fn traffic(store: &Store) {
    let mut batch = Vec::new();
    let mut m = NOW - 30 * 1440 * MIN;
    while m < NOW {
        let bad = bad_in_minute(m);
        for i in 0..PER_MINUTE {
            batch.push(Event {
                time_ms: m + i * 10_000 + 17,
                service: "api".into(),
                method: "GET".into(),
                route: "/things/{id}".into(),
                path: format!("/things/{i}").into(),
                // One of the failures is a connection error (status 0).
                status: match (i < bad, i) {
                    (true, 0) => 0,
                    (true, _) => 503,
                    (false, _) => 200,
                },
                duration_ms: 12.0,
                release: "1".into(),
                ..Event::default()
            });
        }
        // Another service's errors never count.
        batch.push(Event {
            time_ms: m,
            service: "web".into(),
            status: 500,
            ..Event::default()
        });
        if batch.len() >= 50_000 {
            store.insert_batch(&batch).unwrap();
            batch.clear();
        }
        m += MIN;
    }
    store.insert_batch(&batch).unwrap();
}

struct Fixture {
    _dir: tempfile::TempDir,
    settings: Settings,
    slos: Vec<spec::Slo>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("capstan-events.db");
    let store = Store::open(&db).unwrap();
    traffic(&store);
    let log = DeployLog::open(&db).unwrap();
    for (t, subject) in [(A, "api 2.0.0"), (C, "api 2.1.0"), (B, "api 2.2.0")] {
        log.record(
            &Deploy {
                time_ms: t,
                service: "api".into(),
                kind: DeployKind::Release,
                subject: subject.into(),
                detail: String::new(),
            },
            None,
        )
        .unwrap();
    }
    let slo_file = dir.path().join("api.yaml");
    std::fs::write(&slo_file, SLO).unwrap();
    let slos = spec::load_files(std::slice::from_ref(&slo_file))
        .unwrap()
        .slos;
    Fixture {
        settings: Settings {
            slo_paths: vec![slo_file],
            store: db,
            prometheus: None,
            timeout: std::time::Duration::from_secs(5),
            policy: None,
            database: None,
            whole_series: false,
            config: "capstan.toml".into(),
            services: Default::default(),
        },
        slos,
        _dir: dir,
    }
}

fn statuses_at(f: &Fixture, now: i64) -> Vec<ObjectiveStatus> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let v = rt
        .block_on(evaluate_all(&f.settings, &f.slos, Some("api"), now))
        .unwrap();
    assert_eq!(v.len(), 2);
    v
}

/// The occurrences SLO's status.
fn status_at(f: &Fixture, now: i64) -> ObjectiveStatus {
    statuses_at(f, now).remove(0)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

/// Bad and total requests in `[from, to)`, counted from the generator.
fn expected(from: i64, to: i64) -> (f64, f64) {
    let (mut bad, mut total) = (0, 0);
    let mut m = from.max(NOW - 30 * 1440 * MIN);
    while m < to.min(NOW) {
        bad += bad_in_minute(m);
        total += PER_MINUTE;
        m += MIN;
    }
    (bad as f64, total as f64)
}

#[test]
fn a_month_with_two_bad_deploys() {
    let f = fixture();
    let s = status_at(&f, NOW);
    let e = &s.evaluation;
    // Independently: 90 bad in deploy A's half hour, 50 since deploy B.
    let total = 30.0 * 1440.0 * PER_MINUTE as f64;
    let bad = 30.0 * 3.0 + 50.0 * 1.0;
    assert_eq!((e.counts.bad, e.counts.total), (bad, total));
    assert!(close(e.sli.unwrap(), 1.0 - bad / total));
    let allowed = total * 0.001;
    assert!(close(e.budget.consumed, bad / allowed), "{:?}", e.budget);
    assert!(close(e.budget.remaining, 1.0 - bad / allowed));
    assert!(close(e.budget.minutes_total.unwrap(), 43.2));
    assert!(close(
        e.budget.minutes_left.unwrap(),
        43.2 * (1.0 - bad / allowed)
    ));
    // Burn rates: error ratio over each window / 0.001.
    for b in &e.burn_rates {
        let (wb, wt) = expected(NOW - b.minutes * MIN, NOW);
        assert!(
            close(b.rate, wb / wt / 0.001),
            "{} {} vs {}",
            b.window,
            b.rate,
            wb / wt / 0.001
        );
    }
    // 20 % errors for 50 minutes: 200x over 5m, 166.7x over 1h: page.
    assert_eq!(e.alert.state, Severity::Page);
    assert_eq!(e.alert.firing[0].long_minutes, 60);
    // Forecast at the 1h burn: remaining × 30 days / burn.
    let burn_1h = 50.0 / 300.0 / 0.001;
    let left_ms = (1.0 - bad / allowed) * (30.0 * 1440.0 * MIN as f64) / burn_1h;
    assert!((e.forecast.exhausted_at_ms.unwrap() - NOW - left_ms as i64).abs() <= 1);
    // Attribution: the hour after each deploy (B: the 50 minutes so far).
    let want = [
        ("release api 2.0.0", 90.0),
        ("release api 2.1.0", 0.0),
        ("release api 2.2.0", 50.0),
    ];
    assert_eq!(e.deploys.len(), want.len());
    for (d, (label, bad)) in e.deploys.iter().zip(want) {
        assert_eq!((d.deploy.label.as_str(), d.bad), (label, bad));
        assert!(close(d.budget_share, bad / allowed), "{d:?}");
    }
    assert_eq!(e.deploys[2].until_ms, NOW);
    assert_eq!(e.deploys[0].until_ms, A + 60 * MIN);
    assert!(close(e.deploys[0].minutes.unwrap(), 43.2 * 90.0 / allowed));
    alert_states_through_the_month(&f);
    timeslices(&f);
    sums_of_older_spans_equal_the_per_minute_series(&f);
    let text = capstan_slo::render_status(std::slice::from_ref(&s));
    assert!(
        text.contains("alert: PAGE (14.4x over 1h and 5m)"),
        "{text}"
    );
    assert!(
        text.contains("release api 2.0.0: 41.67 % of the budget (18.0 min)"),
        "{text}"
    );
}

/// The same month judged in 5-minute slices: a slice is bad below 90 % good.
fn timeslices(f: &Fixture) {
    let s = statuses_at(f, NOW).remove(1);
    assert_eq!(s.slo, "api-slices");
    let e = &s.evaluation;
    // A: 6 slices at 40 % good; B: 10 slices at 80 % good; of 8640 slices.
    assert_eq!((e.counts.bad, e.counts.total), (16.0, 8640.0));
    assert!(close(e.sli.unwrap(), 1.0 - 16.0 / 8640.0));
    let consumed = 16.0 / 8640.0 / 0.01;
    assert!(close(e.budget.consumed, consumed));
    assert!(close(
        e.budget.minutes_left.unwrap(),
        432.0 * (1.0 - consumed)
    ));
    // The 5m burn: the last slice is bad, 1 of 1 → 100x.
    assert!(close(e.burn_rates[0].rate, 100.0));
    assert_eq!(e.deploys[0].bad, 6.0);
    assert_eq!(e.deploys[2].bad, 10.0);
}

/// `slo status` reads the store per minute for the last 3 days only and sums
/// the older spans; every number must be what the per-minute series of the
/// whole window gives, also when good events fall outside the total (status 0
/// is good for `status < 500` but not counted by `status >= 100`, so the
/// per-minute clamp matters and the older spans are read per minute).
fn sums_of_older_spans_equal_the_per_minute_series(f: &Fixture) {
    let ratios = [
        ("good", "status >= 100 and status < 500", "status >= 0"),
        ("good", "status < 500", "status >= 100"),
        ("bad", "status >= 500", "status >= 0"),
        ("bad", "status >= 500 or status < 100", "status >= 100"),
        ("good", "duration_ms <= 10", "status >= 0"),
        ("good", "status < 500 and release = \"1\"", "status >= 0"),
    ];
    let deploys: Vec<capstan_slo::math::DeployMark> = [A, C, B]
        .iter()
        .map(|&t| capstan_slo::math::DeployMark {
            time_ms: t,
            label: format!("deploy at {t}"),
        })
        .collect();
    for (kind, num, total) in ratios {
        let yaml = format!(
            "apiVersion: openslo/v1\nkind: SLO\nmetadata: {{name: x}}\nspec:\n  service: api\n  indicator:\n    metadata: {{name: x}}\n    spec:\n      ratioMetric:\n        {kind}: {{metricSource: {{type: capstan, spec: {{query: '{num}'}}}}}}\n        total: {{metricSource: {{type: capstan, spec: {{query: '{total}'}}}}}}\n  timeWindow: [{{duration: 30d, isRolling: true}}]\n  budgetingMethod: Occurrences\n  objectives: [{{target: 0.999}}]\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let slo = load_slo(dir.path(), &yaml);
        for now in [
            NOW,
            B,
            A + 20 * MIN,
            A + 150 * MIN,
            C + 3 * 1440 * MIN + 7 * MIN,
        ] {
            let period = capstan_slo::math::period(&slo.window, now);
            let split =
                capstan_slo::capstan_counts(&f.settings.store, &slo, &period, &deploys, 3 * 1440)
                    .unwrap();
            assert!(matches!(split, capstan_slo::Loaded::Store(_)), "{num}");
            let full =
                capstan_slo::capstan_series(&f.settings.store, &slo, period.start_ms, now).unwrap();
            let eval = |w: &dyn capstan_slo::math::Windows| {
                capstan_slo::math::evaluate(
                    w,
                    capstan_slo::math::Method::Occurrences,
                    0.999,
                    &slo.window,
                    now,
                    &deploys,
                    true,
                )
            };
            let (a, b) = (eval(&split), eval(&full));
            assert_eq!(a, b, "{kind}: {num} / {total} at {now}");
            assert!(b.counts.total > 0.0);
        }
    }
}

/// Alert states at other times of the same month.
fn alert_states_through_the_month(f: &Fixture) {
    // Before deploy B: quiet for 20 days, nothing fires; no burn, no forecast.
    let quiet = status_at(f, B);
    assert_eq!(quiet.evaluation.alert.state, Severity::Ok);
    assert_eq!(quiet.evaluation.forecast.exhausted_at_ms, None);
    // 20 minutes into deploy A's errors (60 %): page on 1h and 5m.
    let during_a = status_at(f, A + 20 * MIN);
    assert_eq!(during_a.evaluation.alert.state, Severity::Page);
    assert!(during_a
        .evaluation
        .alert
        .firing
        .iter()
        .any(|c| c.long_minutes == 60));
    // 25 minutes after A's errors stopped: 5m and 1h... the 5m window is
    // clean, so no 1h/5m page; 30m holds 15 bad of 150 (100x) and 6h 90 of
    // 1800 (50x): page by the 6h/30m pair.
    let tail_a = status_at(f, A + 55 * MIN);
    assert_eq!(tail_a.evaluation.alert.state, Severity::Page);
    let pages: Vec<i64> = tail_a
        .evaluation
        .alert
        .firing
        .iter()
        .filter(|c| c.severity == Severity::Page)
        .map(|c| c.long_minutes)
        .collect();
    assert_eq!(pages, vec![360]);
    // Two hours after: 2h and 30m are clean; 3d (90 of 21600: 4.2x) and 6h
    // (50x) still burn: a ticket by the 3d/6h pair only.
    let after_a = status_at(f, A + 150 * MIN);
    assert_eq!(after_a.evaluation.alert.state, Severity::Ticket);
    let longs: Vec<i64> = after_a
        .evaluation
        .alert
        .firing
        .iter()
        .map(|c| c.long_minutes)
        .collect();
    assert_eq!(longs, vec![4320]);
}

#[test]
fn an_unknown_store_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let slo_file = dir.path().join("api.yaml");
    std::fs::write(&slo_file, SLO).unwrap();
    let slos = spec::load_files(std::slice::from_ref(&slo_file))
        .unwrap()
        .slos;
    let f = Fixture {
        settings: Settings {
            slo_paths: vec![slo_file],
            store: dir.path().join("x.db"),
            prometheus: None,
            timeout: std::time::Duration::from_secs(5),
            policy: None,
            database: None,
            whole_series: false,
            config: "capstan.toml".into(),
            services: Default::default(),
        },
        slos,
        _dir: dir,
    };
    let mut settings = f.settings.clone();
    settings.store = PathBuf::from("/nonexistent/capstan-events.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt
        .block_on(evaluate_all(&settings, &f.slos, None, NOW))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/nonexistent/capstan-events.db") && err.contains("no such file"),
        "{err}"
    );
    assert!(!Path::new("/nonexistent").exists());
}

/// A ratio whose total counts another service reads both counts from the
/// same source: with a numerator the rollups cannot answer (`status != 503`
/// splits a status class), minutes whose raw events are pruned have neither
/// good nor total events, not 0 good of the rollups' total.
#[test]
fn a_total_of_another_service_reads_from_the_same_source_as_the_numerator() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let old = NOW - 10 * 1440 * MIN;
    let store = Store::open_with(
        &path,
        capstan_events::Retention {
            raw_max_age: std::time::Duration::from_secs(7 * 86_400),
            max_bytes: 1 << 30,
            rollup_max_age: std::time::Duration::from_secs(400 * 86_400),
        },
    )
    .unwrap();
    let event = |service: &str, t: i64| Event {
        time_ms: t,
        service: service.into(),
        status: 200,
        ..Event::default()
    };
    let mut events = Vec::new();
    for m in 0..5 {
        for i in 0..4 {
            events.push(event("api", old + m * MIN + i));
            events.push(event("edge", old + m * MIN + i));
        }
    }
    // Recent events, so that pruning keeps none of the old ones.
    events.push(event("api", NOW - MIN));
    store.insert_batch(&events).unwrap();
    let yaml = "apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: x}\nspec:\n  service: api\n  indicator:\n    metadata: {name: x}\n    spec:\n      ratioMetric:\n        good: {metricSource: {type: capstan, spec: {query: 'status != 503'}}}\n        total: {metricSource: {type: capstan, spec: {query: 'status >= 0', service: edge}}}\n  timeWindow: [{duration: 30d, isRolling: true}]\n  budgetingMethod: Occurrences\n  objectives: [{target: 0.999}]\n";
    let slo = load_slo(dir.path(), yaml);
    let counts = |from: i64, to: i64| {
        use capstan_slo::math::Windows;
        capstan_slo::capstan_series(&path, &slo, from, to)
            .unwrap()
            .counts(from, to)
    };
    // Before pruning: 20 good of 20.
    let c = counts(old, old + 10 * MIN);
    assert_eq!((c.bad, c.total), (0.0, 20.0));
    store.prune(NOW).unwrap();
    assert_eq!(store.count().unwrap(), 1);
    let c = counts(old, old + 10 * MIN);
    assert_eq!((c.bad, c.total), (0.0, 0.0), "no burn from pruned minutes");
}

/// The one SLO of `yaml`, written to a file in `dir` and loaded.
fn load_slo(dir: &Path, yaml: &str) -> capstan_slo::spec::Slo {
    let file = dir.join("x.yaml");
    std::fs::write(&file, yaml).unwrap();
    spec::load_files(std::slice::from_ref(&file))
        .unwrap()
        .slos
        .remove(0)
}
