//! `thresholdMetric` SLOs over a real event store: per-minute data points
//! judged in time slices, checked against numbers computed here from the
//! generated events; and the metric forms `slo check` refuses.

use std::collections::BTreeMap;

use capstan_events::{Event, Store};
use capstan_slo::{evaluate_all, spec, ObjectiveStatus, Settings};

const MIN: i64 = 60_000;
/// 2026-11-30T12:00:00Z
const NOW: i64 = 1_796_040_000_000;
const START: i64 = NOW - 2 * 1440 * MIN;
/// 47 minutes where 2 of 10 requests take 400 ms.
const SLOW: i64 = NOW - 20 * 60 * MIN + 2 * MIN;
/// 15 minutes without any request.
const QUIET: i64 = NOW - 5 * 60 * MIN;

const SLOS: &str = r#"apiVersion: openslo/v1
kind: SLO
metadata: {name: api-p99}
spec:
  service: api
  indicator:
    metadata: {name: api-p99}
    spec:
      thresholdMetric:
        metricSource: {type: capstan, spec: {query: "p99(duration_ms)"}}
  timeWindow: [{duration: 1d, isRolling: true}]
  budgetingMethod: Timeslices
  objectives:
    - {op: lte, value: 300, target: 0.99, timeSliceTarget: 0.8, timeSliceWindow: 5m}
---
apiVersion: openslo/v1
kind: SLO
metadata: {name: api-throughput}
spec:
  service: api
  indicator:
    metadata: {name: api-throughput}
    spec:
      thresholdMetric:
        metricSource: {type: capstan, spec: {query: "count where status < 500"}}
  timeWindow: [{duration: 1d, isRolling: true}]
  budgetingMethod: Timeslices
  objectives:
    - {op: gte, value: 5, target: 0.99, timeSliceTarget: 1, timeSliceWindow: 1m}
---
apiVersion: openslo/v1
kind: SLO
metadata: {name: api-avg}
spec:
  service: api
  indicator:
    metadata: {name: api-avg}
    spec:
      thresholdMetric:
        metricSource: {type: capstan, spec: {query: "avg(duration_ms) where route = \"/a\""}}
  timeWindow: [{duration: 1d, isRolling: true}]
  budgetingMethod: RatioTimeslices
  objectives:
    - {op: lt, value: 60, target: 0.95, timeSliceWindow: 10m}
"#;

fn events() -> Vec<Event> {
    let mut out = Vec::new();
    let mut m = START;
    while m < NOW {
        if (QUIET..QUIET + 15 * MIN).contains(&m) {
            m += MIN;
            continue;
        }
        for i in 0..10i64 {
            let slow = (SLOW..SLOW + 47 * MIN).contains(&m) && i < 2;
            out.push(Event {
                time_ms: m + i * 5_000 + 3,
                service: "api".into(),
                method: "GET".into(),
                route: if i % 2 == 0 { "/a" } else { "/b" }.into(),
                path: "/".into(),
                // Four 503s a minute during the slow stretch: the count
                // of `status < 500` drops to 6 then, still at least 5.
                status: if slow || (SLOW..SLOW + 47 * MIN).contains(&m) && i >= 8 {
                    503
                } else {
                    200
                },
                duration_ms: if slow { 400.0 } else { 20.0 + i as f64 },
                release: "1".into(),
                ..Event::default()
            });
        }
        // Another service never counts.
        out.push(Event {
            time_ms: m,
            service: "web".into(),
            duration_ms: 9000.0,
            ..Event::default()
        });
        m += MIN;
    }
    out
}

/// Per minute of `[from, to)`: the data point's verdict (true: good), as
/// computed here from the events.
fn points(
    events: &[Event],
    from: i64,
    to: i64,
    value: impl Fn(&[&Event]) -> Option<f64>,
    good: impl Fn(f64) -> bool,
    every_minute: bool,
) -> BTreeMap<i64, bool> {
    let mut by_minute: BTreeMap<i64, Vec<&Event>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.service == "api") {
        by_minute
            .entry(e.time_ms.div_euclid(MIN) * MIN)
            .or_default()
            .push(e);
    }
    let mut out = BTreeMap::new();
    let mut m = from;
    while m < to {
        let evs = by_minute.get(&m).cloned().unwrap_or_default();
        if every_minute || !evs.is_empty() {
            if let Some(v) = value(&evs) {
                out.insert(m, good(v));
            }
        }
        m += MIN;
    }
    out
}

/// Timeslices: (bad slices, slices) over `[from, to)`.
fn timeslices(p: &BTreeMap<i64, bool>, slice: i64, target: f64, from: i64, to: i64) -> (f64, f64) {
    let (mut bad, mut total) = (0.0, 0.0);
    let mut a = from.div_euclid(slice * MIN) * slice * MIN;
    while a < to {
        let pts: Vec<bool> = p
            .range(a.max(from)..(a + slice * MIN).min(to))
            .map(|(_, g)| *g)
            .collect();
        total += 1.0;
        if !pts.is_empty() {
            let share = pts.iter().filter(|g| **g).count() as f64 / pts.len() as f64;
            if share < target {
                bad += 1.0;
            }
        }
        a += slice * MIN;
    }
    (bad, total)
}

fn status(all: &[ObjectiveStatus], name: &str) -> ObjectiveStatus {
    all.iter().find(|s| s.slo == name).unwrap().clone()
}

#[test]
fn threshold_metrics_are_judged_per_minute_in_time_slices() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("capstan-events.db");
    let store = Store::open(&db).unwrap();
    let evs = events();
    for chunk in evs.chunks(20_000) {
        store.insert_batch(chunk).unwrap();
    }
    drop(store);
    let file = dir.path().join("slos.yaml");
    std::fs::write(&file, SLOS).unwrap();
    let slos = spec::load_files(std::slice::from_ref(&file)).unwrap().slos;
    let settings = Settings {
        slo_paths: vec![file],
        store: db,
        prometheus: None,
        timeout: std::time::Duration::from_secs(5),
        policy: None,
        database: None,
        whole_series: false,
        config: "capstan.toml".into(),
        services: Default::default(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let all = rt
        .block_on(evaluate_all(&settings, &slos, None, NOW))
        .unwrap();
    assert_eq!(all.len(), 3);
    let day = NOW - 1440 * MIN;

    // p99 ≤ 300 ms: nearest rank of 10 is the slowest; the 47 slow minutes
    // are bad points, so 5-minute slices below 80 % good points are bad.
    let p99 = points(
        &evs,
        day - 3 * 1440 * MIN,
        NOW,
        |e| {
            let mut d: Vec<f64> = e.iter().map(|e| e.duration_ms).collect();
            d.sort_by(f64::total_cmp);
            capstan_events::percentile(&d, 99.0)
        },
        |v| v <= 300.0,
        false,
    );
    let s = status(&all, "api-p99");
    let e = &s.evaluation;
    let want = timeslices(&p99, 5, 0.8, day, NOW);
    // 47 bad minutes: slices wholly inside are bad, the edge slices hold
    // 2 and 5 bad of 5 (3 of 5 good is below 80 %).
    assert_eq!(want.1, 288.0);
    assert!(want.0 >= 9.0, "{want:?}");
    assert_eq!((e.counts.bad, e.counts.total), want);
    assert!((e.sli.unwrap() - (1.0 - want.0 / want.1)).abs() < 1e-12);
    for b in &e.burn_rates {
        let w = timeslices(&p99, 5, 0.8, NOW - b.minutes * MIN, NOW);
        let rate = if w.1 > 0.0 { w.0 / w.1 / 0.01 } else { 0.0 };
        assert!(
            (b.rate - rate).abs() < 1e-9,
            "{} {} {}",
            b.window,
            b.rate,
            rate
        );
    }
    assert!(!s.availability);
    assert!(e.budget.minutes_total.is_none());

    // count of `status < 500` ≥ 5 every minute: the 15 quiet minutes are
    // bad (0 events), the slow stretch's 6 good of 10 still pass.
    let count = points(
        &evs,
        day,
        NOW,
        |e| Some(e.iter().filter(|e| e.status < 500).count() as f64),
        |v| v >= 5.0,
        true,
    );
    let s = status(&all, "api-throughput");
    let want = timeslices(&count, 1, 1.0, day, NOW);
    assert_eq!(want, (15.0, 1440.0));
    assert_eq!((s.evaluation.counts.bad, s.evaluation.counts.total), want);

    // avg(duration_ms) of route /a < 60 ms, RatioTimeslices of 10 minutes:
    // the mean of the slices' shares of good minutes.
    let avg = points(
        &evs,
        day,
        NOW,
        |e| {
            let d: Vec<f64> = e
                .iter()
                .filter(|e| e.route == "/a")
                .map(|e| e.duration_ms)
                .collect();
            (!d.is_empty()).then(|| d.iter().sum::<f64>() / d.len() as f64)
        },
        |v| v < 60.0,
        false,
    );
    let (mut bad, mut slices) = (0.0, 0.0);
    let mut a = day;
    while a < NOW {
        let pts: Vec<bool> = avg.range(a..a + 10 * MIN).map(|(_, g)| *g).collect();
        if !pts.is_empty() {
            slices += 1.0;
            bad += pts.iter().filter(|g| !**g).count() as f64 / pts.len() as f64;
        }
        a += 10 * MIN;
    }
    assert!(bad > 0.0);
    let s = status(&all, "api-avg");
    assert!(
        (s.evaluation.counts.bad - bad).abs() < 1e-9,
        "{} {bad}",
        s.evaluation.counts.bad
    );
    assert_eq!(s.evaluation.counts.total, slices);
}

#[test]
fn threshold_metrics_the_rollups_cannot_answer_are_refused_by_check() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("p99(duration_ms)", "op: lt, value: 300", "op: lte"),
        ("p99(duration_ms)", "op: lte, value: 200", "bucket edge"),
        (
            "p99(upstream_ms)",
            "op: lte, value: 300",
            "not read from the per-minute rollups",
        ),
        (
            "count where duration_ms > 5",
            "op: gte, value: 1",
            "not answered from the per-minute rollups",
        ),
        (
            "count where plan = \\\"pro\\\"",
            "op: gte, value: 1",
            "not answered from the per-minute rollups",
        ),
        (
            "count, avg(duration_ms)",
            "op: gte, value: 1",
            "one calculation only",
        ),
    ];
    for (i, (query, objective, message)) in cases.into_iter().enumerate() {
        let file = dir.path().join(format!("s{i}.yaml"));
        std::fs::write(
            &file,
            format!(
                "apiVersion: openslo/v1\nkind: SLO\nmetadata: {{name: s{i}}}\nspec:\n  service: api\n  indicator:\n    metadata: {{name: s{i}}}\n    spec:\n      thresholdMetric:\n        metricSource: {{type: capstan, spec: {{query: \"{query}\"}}}}\n  timeWindow: [{{duration: 1d, isRolling: true}}]\n  budgetingMethod: Timeslices\n  objectives:\n    - {{{objective}, target: 0.99, timeSliceTarget: 0.9, timeSliceWindow: 1m}}\n"
            ),
        )
        .unwrap();
        let errs = spec::load_files(std::slice::from_ref(&file)).unwrap_err();
        assert_eq!(errs.len(), 1, "{query}: {errs:?}");
        let e = &errs[0];
        assert!(e.message.contains(message), "{query}: {e:?}");
        assert_eq!(e.file, file);
        assert!(e.line > 1, "{e:?}");
        assert!(
            e.field.contains("query") || e.field.contains("objectives[0]"),
            "{query}: {e:?}"
        );
    }
}
