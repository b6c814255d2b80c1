//! The health+json contract and the metrics, as a client sees them.

mod common;

use std::time::Duration;

use capstan_probe::{CheckConfig, Details, GateStatus, Health, Observation};
use common::{get, get_json, Behaviour, Script};
use http::StatusCode;
use tokio::time::{sleep_until, Instant};

/// chirpy-like: a private database with an observed value, a shared API that fails.
async fn chirpy_health() -> Health {
    let start = Instant::now();
    let health = Health::builder()
        .service_id("chirpy")
        .version("2.0.0")
        .release_id("2.0.0+abc123")
        .description("users and chirps")
        .build();
    health.set_gate(GateStatus::Compatible);
    health.set_warmed_up();
    health
        .add_check(
            CheckConfig::private("postgres")
                .component_type("datastore")
                .measurement("connections")
                .thresholds(1, 1),
            capstan_probe::check_fn(|| async {
                Ok(Observation::value(4.0, "connections").with_output("pool of 10"))
            }),
        )
        .unwrap();
    health
        .add_check(
            CheckConfig::shared("billing")
                .component_type("system")
                .timeout(Duration::from_millis(500))
                .thresholds(1, 1),
            Script::new(Behaviour::Hang).check(),
        )
        .unwrap();
    sleep_until(start + Duration::from_millis(501)).await;
    health
}

#[tokio::test(start_paused = true)]
async fn readyz_full_body_shape() {
    let health = chirpy_health().await;
    let router = health.router(Details::Full);
    let (status, content_type, body) = get(&router, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/health+json");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    insta::assert_json_snapshot!(body, {
        ".checks.*[].time" => "[rfc3339]",
    });
    for check in body["checks"].as_object().unwrap().values() {
        let time = check[0]["time"].as_str().unwrap();
        humantime::parse_rfc3339(time).unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn startupz_and_livez_full_body_shape() {
    let health = chirpy_health().await;
    let router = health.router(Details::Full);
    let (status, startupz) = get_json(&router, "/startupz").await;
    assert_eq!(status, StatusCode::OK);
    insta::assert_json_snapshot!("startupz", startupz, {
        ".checks.*[].time" => "[rfc3339]",
    });
    let (status, livez) = get_json(&router, "/livez").await;
    assert_eq!(status, StatusCode::OK);
    insta::assert_json_snapshot!("livez", livez, {
        ".checks.*[].time" => "[rfc3339]",
        ".checks.uptime[].observedValue" => "[seconds]",
    });
}

#[tokio::test(start_paused = true)]
async fn status_details_tell_nothing_but_the_status() {
    let health = chirpy_health().await;
    let router = health.router(Details::Status);
    for path in ["/livez", "/readyz", "/startupz"] {
        let (status, content_type, body) = get(&router, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(content_type, "application/health+json");
        let expected = if path == "/readyz" { "warn" } else { "pass" };
        assert_eq!(body, format!(r#"{{"status":"{expected}"}}"#), "{path}");
    }
    let (status, _, _) = get(&router, "/metrics").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "metrics stay on the internal listener"
    );
}

#[tokio::test(start_paused = true)]
async fn metrics_export_check_states() {
    let health = chirpy_health().await;
    let router = health.router(Details::Full);
    let (status, content_type, body) = get(&router, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("application/openmetrics-text"));
    for line in [
        r#"capstan_check_up{check="postgres",kind="private"} 1"#,
        r#"capstan_check_up{check="billing",kind="shared"} 0"#,
        r#"capstan_check_duration_seconds{check="billing",kind="shared"} 0.5"#,
        r#"capstan_check_failures_total{check="billing",kind="shared"} 1"#,
        r#"capstan_check_failures_total{check="postgres",kind="private"} 0"#,
        "capstan_ready 1",
        "capstan_started 1",
        "capstan_draining 0",
        "capstan_gate_compatible 1",
        "# EOF",
    ] {
        assert!(body.lines().any(|l| l == line), "no {line:?} in\n{body}");
    }
    health.start_draining();
    let (_, _, body) = get(&router, "/metrics").await;
    assert!(body.lines().any(|l| l == "capstan_draining 1"), "{body}");
    assert!(body.lines().any(|l| l == "capstan_ready 0"), "{body}");
}

#[tokio::test]
async fn the_application_registers_its_own_metrics_alongside() {
    use prometheus_client::metrics::counter::Counter;
    let health = Health::new();
    let chirps: Counter = Counter::default();
    health.with_registry(|r| r.register("chirps", "Chirps created", chirps.clone()));
    chirps.inc();
    assert!(health.encode_metrics().contains("chirps_total 1"));
}

#[test]
fn plain_functions_serve_without_axum() {
    let health = Health::new();
    health.set_gate(GateStatus::Compatible);
    let answer = health.respond("/readyz", Details::Full).unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.content_type, "application/health+json");
    let response: http::Response<bytes::Bytes> = answer.into_http();
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert!(health.respond("/metrics", Details::Status).is_none());
    assert!(health.respond("/nope", Details::Full).is_none());
    assert!(health.respond("/metrics", Details::Full).is_some());
}
