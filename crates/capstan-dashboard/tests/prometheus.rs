//! Charts of a Prometheus-sourced SLO, against a real Prometheus backfilled
//! (promtool) with the same traffic the event store gets: its SLI and
//! burn-down equal those of the same SLO read from the event store, its last
//! burn-down point is the status's budget, and the service page draws it.

use std::fmt::Write as _;
use std::path::Path;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use capstan_dashboard::{app, AppState, Auth, Sources};
use capstan_events::{Event, Store};
use capstan_testkit::prometheus::Prometheus;
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

const MIN: i64 = 60_000;
/// 2026-11-30T12:00:00Z
const NOW: i64 = 1_796_040_000_000;
/// A day and an hour of traffic (promtool writes a block per two hours).
const FIRST: i64 = NOW - 1440 * MIN - 60 * MIN;
const PER_MINUTE: i64 = 4;

/// Bad requests in minute `m`: two for half an hour 20 hours ago, one a
/// minute for the last 50 minutes.
fn bad_in_minute(m: i64) -> i64 {
    let a = NOW - 20 * 60 * MIN;
    if (a..a + 30 * MIN).contains(&m) {
        2
    } else if m >= NOW - 50 * MIN {
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

/// The traffic as OpenMetrics counters, one sample a minute counting that
/// minute's requests at its end.
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
        m += MIN;
    }
    store.insert_batch(&batch).unwrap();
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-12)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_slo_gets_the_charts_the_event_store_twin_gets() {
    let prom = Prometheus::start_with(&openmetrics());
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("slos")).unwrap();
    std::fs::write(dir.path().join("slos/api.yaml"), SLOS).unwrap();
    fill_store(&dir.path().join("events.db"));
    let mut settings = capstan_slo::Settings::load(&dir.path().join("capstan.toml")).unwrap();
    settings.slo_paths = vec![dir.path().join("slos")];
    settings.store = dir.path().join("events.db");
    settings.prometheus = Some(prom.url.clone());
    settings.database = None;
    settings.whole_series = true;
    let state = AppState::new(
        Sources {
            settings,
            rollout_state: dir.path().join("rollout.db"),
            migrations_dir: dir.path().join("migrations"),
        },
        Auth::default(),
    );
    let snap = state.refresh_at(NOW).await;
    let status = match &snap.status {
        Some(Ok(s)) => s,
        other => panic!("{other:?}\n{}", prom.log()),
    };
    let store = snap
        .charts
        .get(&("from-store".to_string(), 0))
        .expect("the event store SLO's chart");
    let from_prom = snap
        .charts
        .get(&("from-prometheus".to_string(), 0))
        .unwrap_or_else(|| panic!("no chart for the Prometheus SLO\n{}", prom.log()));
    assert_eq!(from_prom.points.len(), store.points.len());
    assert!(from_prom.points.len() >= 100, "{}", from_prom.points.len());
    for (p, s) in from_prom.points.iter().zip(&store.points) {
        assert_eq!(p.t_ms, s.t_ms);
        match (p.sli, s.sli) {
            (Some(a), Some(b)) => assert!(close(a, b), "SLI at {}: {a} vs {b}", p.t_ms),
            other => panic!("SLI at {}: {other:?}", p.t_ms),
        }
        assert!(
            close(p.remaining, s.remaining),
            "budget at {}: {} vs {}",
            p.t_ms,
            p.remaining,
            s.remaining
        );
    }
    // The bad half hour shows in its buckets, and the burn-down ends at the
    // budget the status reports.
    assert!(from_prom.points.iter().any(|p| p.sli.unwrap() < 0.99));
    let remaining = status
        .slos
        .iter()
        .find(|s| s.slo == "from-prometheus")
        .unwrap()
        .evaluation
        .budget
        .remaining;
    assert!(close(from_prom.points.last().unwrap().remaining, remaining));

    // The service page draws both objectives' SLI and burn-down charts.
    let r = app(state.clone())
        .oneshot(Request::get("/service/api").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page =
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    for id in ["sli0", "sli1", "bd0", "bd1"] {
        assert!(page.contains(&format!("id=\"{id}-t\"")), "{id} missing");
    }
}
