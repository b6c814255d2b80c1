//! `serve_with_shutdown` on a real loopback socket: drain, in-flight, on_shutdown.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use capstan_probe::{serve_with_shutdown, Details, GateStatus, Health, ShutdownConfig, Status};
use tokio::sync::{mpsc, Mutex as AsyncMutex};
use tokio_util::sync::CancellationToken;

/// A client that opens a new connection per request, as a fresh load balancer
/// health check would.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_then_finishes_in_flight_then_runs_on_shutdown() {
    let events = Arc::new(Mutex::new(Vec::<&str>::new()));
    let health = Health::new();
    health.set_gate(GateStatus::Compatible);

    // `/slow` tells the test it started, then waits until the test lets it finish.
    let (started_tx, mut started_rx) = mpsc::channel::<()>(1);
    let (finish_tx, finish_rx) = mpsc::channel::<()>(1);
    let finish_rx = Arc::new(AsyncMutex::new(finish_rx));
    let slow_events = events.clone();
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/slow",
            get(move || {
                let (started_tx, finish_rx, events) =
                    (started_tx.clone(), finish_rx.clone(), slow_events.clone());
                async move {
                    started_tx.send(()).await.unwrap();
                    finish_rx.lock().await.recv().await;
                    events.lock().unwrap().push("slow request finished");
                    "slow"
                }
            }),
        )
        .merge(health.router(Details::Full));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let token = CancellationToken::new();
    let config = ShutdownConfig {
        drain: Duration::from_millis(1500),
        grace: Duration::from_secs(10),
    };
    let shutdown_events = events.clone();
    let server = tokio::spawn(serve_with_shutdown(
        listener,
        app,
        health.clone(),
        config,
        token.clone().cancelled_owned(),
        async move { shutdown_events.lock().unwrap().push("on_shutdown") },
    ));

    let c = client();
    let ready = c.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    // A request in flight across the whole shutdown.
    let slow = tokio::spawn({
        let c = c.clone();
        let url = format!("{base}/slow");
        async move { c.get(url).send().await.unwrap() }
    });
    started_rx.recv().await.unwrap();

    token.cancel();
    let cancelled_at = tokio::time::Instant::now();
    // Readiness fails at once.
    for _ in 0..1000 {
        if health.readiness() == Status::Fail {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(health.is_draining());
    let ready = c.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json_body().await;
    assert_eq!(body["output"], "draining");

    // During the drain, new connections are still served, probes and traffic alike.
    let hello = c.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(hello.status(), 200);
    assert_eq!(hello.text().await.unwrap(), "hello");
    let live = c.get(format!("{base}/livez")).send().await.unwrap();
    assert_eq!(live.status(), 200);
    assert!(
        cancelled_at.elapsed() < config.drain,
        "the machine is too slow for this test's drain period"
    );

    // After the drain no new connection is accepted, but serve waits for /slow.
    tokio::time::sleep_until(cancelled_at + config.drain + Duration::from_millis(400)).await;
    assert!(
        c.get(format!("{base}/livez")).send().await.is_err(),
        "new connections are refused after the drain"
    );
    assert!(
        !server.is_finished(),
        "serve waits for the in-flight request"
    );
    assert!(events.lock().unwrap().is_empty(), "on_shutdown waits too");

    finish_tx.send(()).await.unwrap();
    let slow = slow.await.unwrap();
    assert_eq!(slow.status(), 200);
    assert_eq!(slow.text().await.unwrap(), "slow");

    let result = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns once the in-flight request is done")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(
        *events.lock().unwrap(),
        ["slow request finished", "on_shutdown"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_period_bounds_a_request_that_never_finishes() {
    let health = Health::new();
    let app = Router::new().route("/stuck", get(std::future::pending::<&'static str>));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/stuck", listener.local_addr().unwrap());
    let token = CancellationToken::new();
    let ran = Arc::new(Mutex::new(false));
    let ran2 = ran.clone();
    let server = tokio::spawn(serve_with_shutdown(
        listener,
        app,
        health,
        ShutdownConfig {
            drain: Duration::from_millis(50),
            grace: Duration::from_millis(300),
        },
        token.clone().cancelled_owned(),
        async move { *ran2.lock().unwrap() = true },
    ));
    let c = client();
    let stuck = tokio::spawn(async move { c.get(url).send().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    token.cancel();
    let result = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve gives up after the grace period")
        .unwrap();
    assert!(result.is_ok());
    assert!(*ran.lock().unwrap());
    stuck.abort();
}

trait JsonBody {
    async fn json_body(self) -> serde_json::Value;
}

impl JsonBody for reqwest::Response {
    async fn json_body(self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap()
    }
}
