//! `/readyz` cost while a dependency hangs, against two references in one run:
//!
//! - peer: a static `"ok"` route through the same axum router (the floor of
//!   routing and body handling), reported as a ratio;
//! - limit: the 2 ms p99 that a readiness answer must stay under (issue 4's target
//!   for `/readyz` under load), reported as a ratio too.
//!
//! In process, one thread, no socket: this measures what the library adds; the
//! loopback figures with wrk are the reference service's benchmark.
//! Run: `cargo bench -p capstan-probe --bench readyz`.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::routing::get;
use capstan_probe::{check_fn, CheckConfig, Details, GateStatus, Health};
use http::Request;
use tower::ServiceExt;

const REQUESTS: usize = 200_000;
const LIMIT_P99: Duration = Duration::from_millis(2);

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let health = Health::new();
        health.set_gate(GateStatus::Compatible);
        let hung = || async {
            std::future::pending::<()>().await;
            Ok(capstan_probe::Observation::ok())
        };
        let fast = CheckConfig::private("db")
            .interval(Duration::from_millis(100))
            .timeout(Duration::from_millis(50))
            .thresholds(1, 1);
        health.add_check(fast.clone(), check_fn(hung)).unwrap();
        let mut shared = fast;
        shared.id = "billing".into();
        shared.kind = capstan_probe::DependencyKind::Shared;
        health.add_check(shared, check_fn(hung)).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(health.readiness(), capstan_probe::Status::Fail);

        let router = axum::Router::new()
            .route("/static", get(|| async { "ok" }))
            .merge(health.router(Details::Full));

        let readyz = measure(&router, "/readyz").await;
        let floor = measure(&router, "/static").await;
        let start = Instant::now();
        let mut bytes = 0;
        for _ in 0..REQUESTS {
            bytes += health.readyz_response(Details::Full).body.len();
        }
        let plain = start.elapsed() / REQUESTS as u32;
        assert!(bytes > 0);

        println!("{REQUESTS} requests each, a private and a shared check hung in the background");
        println!(
            "{:<28} {:>10} {:>10} {:>12}",
            "", "p50", "p99", "req/s/core"
        );
        for (name, s) in [
            ("router /readyz", &readyz),
            ("router /static (peer)", &floor),
        ] {
            println!(
                "{name:<28} {:>10?} {:>10?} {:>12.0}",
                s.p50, s.p99, s.per_second
            );
        }
        println!("readyz_response() alone: {plain:?} per call");
        println!(
            "ratio /readyz / /static (p50): {:.2}",
            readyz.p50.as_secs_f64() / floor.p50.as_secs_f64()
        );
        println!(
            "ratio /readyz p99 / 2 ms limit: {:.4}",
            readyz.p99.as_secs_f64() / LIMIT_P99.as_secs_f64()
        );
    });
}

struct Stats {
    p50: Duration,
    p99: Duration,
    per_second: f64,
}

async fn measure(router: &axum::Router, path: &str) -> Stats {
    let mut latencies = Vec::with_capacity(REQUESTS);
    let start = Instant::now();
    for _ in 0..REQUESTS {
        let t = Instant::now();
        let response = router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        std::hint::black_box(body);
        latencies.push(t.elapsed());
    }
    let total = start.elapsed();
    latencies.sort_unstable();
    Stats {
        p50: latencies[REQUESTS / 2],
        p99: latencies[REQUESTS * 99 / 100],
        per_second: REQUESTS as f64 / total.as_secs_f64(),
    }
}
