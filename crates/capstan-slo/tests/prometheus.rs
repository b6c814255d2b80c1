//! A real Prometheus (backfilled with promtool from the same synthetic
//! traffic the event store gets) agrees with the event store; an unreachable
//! Prometheus and bad PromQL are clear errors in bounded time.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use capstan_events::{Event, Store};
use capstan_slo::math::Severity;
use capstan_slo::{evaluate_all, spec, Deploy, DeployKind, DeployLog, ObjectiveStatus, Settings};
use capstan_testkit::prometheus::Prometheus;

const MIN: i64 = 60_000;
/// 2026-11-30T12:00:00Z
const NOW: i64 = 1_796_040_000_000;
/// One day and an hour of traffic: promtool writes one block per two hours
/// it backfills, so a shorter history keeps the test fast.
const FIRST: i64 = NOW - 1440 * MIN - 60 * MIN;
const PER_MINUTE: i64 = 4;
const A: i64 = NOW - 20 * 60 * MIN;
const B: i64 = NOW - 50 * MIN;

fn bad_in_minute(m: i64) -> i64 {
    if (A..A + 30 * MIN).contains(&m) {
        2
    } else if m >= B {
        1
    } else {
        0
    }
}

const SLOS: &str = r#"apiVersion: openslo/v1
kind: SLO
metadata:
  name: from-store
spec:
  service: api
  indicator:
    metadata:
      name: store-ok
    spec:
      ratioMetric:
        good:
          metricSource: {type: capstan, spec: {query: "status >= 100 and status < 500"}}
        total:
          metricSource: {type: capstan, spec: {query: "status >= 0"}}
  timeWindow:
    - duration: 1d
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - target: 0.999
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: from-prometheus
spec:
  service: api
  indicator:
    metadata:
      name: prom-errors
    spec:
      ratioMetric:
        bad:
          metricSource:
            type: Prometheus
            spec:
              query: sum(rate(http_requests_total{code=~"5.."}[{{.window}}]))
        total:
          metricSource:
            type: Prometheus
            spec:
              query: sum(rate(http_requests_total[{{.window}}]))
  timeWindow:
    - duration: 1d
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - target: 0.999
"#;

/// The same traffic as OpenMetrics counters: one sample a minute, the
/// sample at the end of a minute counting that minute's requests.
fn openmetrics() -> String {
    let mut s = String::from("# TYPE http_requests counter\n");
    for code in ["200", "503"] {
        let mut n = 0;
        let _ = writeln!(
            s,
            "http_requests_total{{code=\"{code}\"}} 0 {}",
            FIRST / 1000
        );
        let mut m = FIRST;
        while m < NOW {
            let bad = bad_in_minute(m);
            n += if code == "503" { bad } else { PER_MINUTE - bad };
            let _ = writeln!(
                s,
                "http_requests_total{{code=\"{code}\"}} {n} {}",
                (m + MIN) / 1000
            );
            m += MIN;
        }
    }
    s.push_str("# EOF\n");
    s
}

fn fill_store(path: &Path) {
    let store = Store::open(path).unwrap();
    let mut batch = Vec::new();
    let mut m = FIRST;
    while m < NOW {
        let bad = bad_in_minute(m);
        for i in 0..PER_MINUTE {
            batch.push(Event {
                time_ms: m + i * 15_000 + 1,
                service: "api".into(),
                status: if i < bad { 503 } else { 200 },
                ..Event::default()
            });
        }
        if batch.len() > 50_000 {
            store.insert_batch(&batch).unwrap();
            batch.clear();
        }
        m += MIN;
    }
    store.insert_batch(&batch).unwrap();
    let log = DeployLog::open(path).unwrap();
    for (t, s) in [(A, "api 2.0.0"), (B, "api 2.1.0")] {
        log.record(
            &Deploy {
                time_ms: t,
                service: "api".into(),
                kind: DeployKind::Release,
                subject: s.into(),
                detail: String::new(),
            },
            None,
        )
        .unwrap();
    }
}

fn settings(dir: &Path, prometheus: Option<String>, timeout: Duration) -> Settings {
    Settings {
        slo_paths: vec![dir.join("slos.yaml")],
        store: dir.join("events.db"),
        prometheus,
        timeout,
        policy: None,
        database: None,
        whole_series: false,
        config: "capstan.toml".into(),
        services: Default::default(),
    }
}

fn evaluate(s: &Settings, slos: &[spec::Slo], now: i64) -> Result<Vec<ObjectiveStatus>, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(evaluate_all(s, slos, None, now))
        .map_err(|e| e.to_string())
}

fn rel_close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * a.abs().max(b.abs()).max(1e-12)
}

#[test]
fn prometheus_agrees_with_the_event_store() {
    let prom = Prometheus::start_with(&openmetrics());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("slos.yaml"), SLOS).unwrap();
    fill_store(&dir.path().join("events.db"));
    let slos = spec::load_files(&[dir.path().join("slos.yaml")])
        .unwrap()
        .slos;
    let s = settings(dir.path(), Some(prom.url.clone()), Duration::from_secs(10));

    // On a scrape time, Prometheus's closed range [t - w, t] holds exactly the
    // samples bounding the store's minutes [t - w, t): the numbers agree.
    let v = evaluate(&s, &slos, NOW).unwrap_or_else(|e| panic!("{e}\n{}", prom.log()));
    let (store, prom_side) = (&v[0].evaluation, &v[1].evaluation);
    assert_eq!((v[0].source, v[1].source), ("capstan", "prometheus"));
    assert!(
        rel_close(store.counts.total, prom_side.counts.total, 1e-9),
        "{:?} {:?}",
        store.counts,
        prom_side.counts
    );
    assert!(
        rel_close(store.counts.bad, prom_side.counts.bad, 1e-9),
        "{:?} {:?}",
        store.counts,
        prom_side.counts
    );
    assert!(rel_close(store.sli.unwrap(), prom_side.sli.unwrap(), 1e-12));
    assert!(rel_close(
        store.budget.remaining,
        prom_side.budget.remaining,
        1e-9
    ));
    for (a, b) in store.burn_rates.iter().zip(&prom_side.burn_rates) {
        assert!(
            rel_close(a.rate, b.rate, 1e-9),
            "{}: {} vs {}",
            a.window,
            a.rate,
            b.rate
        );
    }
    assert_eq!(store.alert.state, Severity::Page);
    assert_eq!(prom_side.alert.state, Severity::Page);
    assert_eq!(store.deploys.len(), 2);
    for (a, b) in store.deploys.iter().zip(&prom_side.deploys) {
        assert!(
            rel_close(a.budget_share, b.budget_share, 1e-9),
            "{a:?} {b:?}"
        );
    }
    assert!(
        store
            .forecast
            .exhausted_at_ms
            .unwrap()
            .abs_diff(prom_side.forecast.exhausted_at_ms.unwrap())
            < 1000
    );

    // Between scrapes, Prometheus extrapolates its samples to the window's
    // edges while the store counts whole minutes: over a day that is at
    // most one minute of traffic per edge.
    let mid = NOW - 30 * 1000;
    let v = evaluate(&s, &slos, mid).unwrap();
    let (a, b) = (&v[0].evaluation, &v[1].evaluation);
    let one_minute = 1.0 / 1440.0;
    assert!(
        rel_close(a.counts.total, b.counts.total, 2.0 * one_minute),
        "{:?} {:?}",
        a.counts,
        b.counts
    );
    assert!(
        (a.sli.unwrap() - b.sli.unwrap()).abs() <= 2.0 * one_minute,
        "{:?} {:?}",
        a.sli,
        b.sli
    );
}

#[test]
fn promql_errors_are_reported_with_the_query() {
    let prom = Prometheus::start_with("# TYPE up gauge\nup 1 1796000000\n# EOF\n");
    let dir = tempfile::tempdir().unwrap();
    let broken = SLOS.split("---\n").nth(1).unwrap().replace(
        "sum(rate(http_requests_total[{{.window}}]))",
        "sum(rate(http_requests_total[{{.window}}])",
    );
    std::fs::write(dir.path().join("slos.yaml"), &broken).unwrap();
    let slos = spec::load_files(&[dir.path().join("slos.yaml")])
        .unwrap()
        .slos;
    let s = settings(dir.path(), Some(prom.url.clone()), Duration::from_secs(10));
    let err = evaluate(&s, &slos, NOW).unwrap_err();
    assert!(
        err.contains("Prometheus refused the query `sum(rate(http_requests_total[1d])`"),
        "{err}"
    );
    assert!(err.contains("bad_data"), "{err}");
}

#[test]
fn an_unreachable_prometheus_fails_fast_and_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let only_prom = SLOS.split("---\n").nth(1).unwrap();
    std::fs::write(dir.path().join("slos.yaml"), only_prom).unwrap();
    let slos = spec::load_files(&[dir.path().join("slos.yaml")])
        .unwrap()
        .slos;
    // Nothing listens: refused at once.
    let port = capstan_testkit::free_port();
    let s = settings(
        dir.path(),
        Some(format!("http://127.0.0.1:{port}")),
        Duration::from_secs(2),
    );
    let err = evaluate(&s, &slos, NOW).unwrap_err();
    assert!(
        err.contains(&format!(
            "Prometheus at http://127.0.0.1:{port} is unreachable"
        )),
        "{err}"
    );
    assert!(err.contains("cannot connect"), "{err}");
    // A server that accepts and never answers: the timeout bounds the wait.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let s = settings(dir.path(), Some(url.clone()), Duration::from_secs(1));
    let start = Instant::now();
    let err = evaluate(&s, &slos, NOW).unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(
        err.contains(&format!(
            "Prometheus at {url} is unreachable: no answer within the timeout"
        )),
        "{err}"
    );
}
