//! The judge's HTTP contracts (Argo Rollouts' Web provider, Flagger's webhooks)
//! against a real Prometheus with backfilled data, using the payloads those
//! projects document.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use capstan_rollout::{judge_router, JudgeConfig, JudgeState};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

fn app(prom_url: &str, event_log: &Path) -> axum::Router {
    let text = common::judge_toml(prom_url, event_log);
    let config = JudgeConfig::parse(&text, Path::new("judge.toml")).expect("test config parses");
    let state = JudgeState::new(config, Arc::new(|| common::AT_MS)).expect("state");
    judge_router(state)
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let req = Request::builder().method(method).uri(uri);
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .expect("request");
    let res = app.clone().oneshot(req).await.expect("infallible");
    let status = res.status();
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    (status, value)
}

fn metric<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no metric {name} in {report}"))
}

#[tokio::test]
async fn the_web_provider_gets_200_and_a_verdict_with_its_evidence() {
    let prom = common::start_prometheus();
    let dir = tempfile::tempdir().unwrap();
    let app = app(&prom.url, &dir.path().join("events.jsonl"));

    // A healthy canary: pass, with the sample sizes and tests as evidence.
    let (status, report) = call(&app, "GET", "/api/v1/verdict?canary=v2&baseline=v1", None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["verdict"], "pass", "{report:#}");
    assert_eq!(report["interval"]["to_ms"], common::AT_MS);
    assert_eq!(report["interval"]["from_ms"], common::AT_MS - 600_000);
    let errors = metric(&report, "errors");
    assert_eq!(errors["outcome"], "pass");
    assert_eq!(errors["evidence"]["test"], "fisher_exact");
    assert_eq!(errors["evidence"]["canary"]["errors"], 95);
    assert_eq!(errors["evidence"]["canary"]["total"], 10_000);
    assert_eq!(errors["evidence"]["baseline"]["errors"], 100);
    let latency = metric(&report, "latency");
    assert_eq!(latency["outcome"], "pass");
    assert_eq!(latency["evidence"]["test"], "mann_whitney");
    assert_eq!(latency["evidence"]["canary"]["n"], 10_000);
    assert!(
        latency["evidence"]["mann_whitney"]["p_greater"]
            .as_f64()
            .unwrap()
            > 0.01
    );
    assert!(latency["evidence"]["hodges_lehmann"]["ci_low"].is_number());
    let memory = metric(&report, "memory");
    assert_eq!(memory["outcome"], "pass");
    assert_eq!(
        memory["evidence"]["canary"]["n"], 41,
        "one sample per 15 s step over 10 min"
    );

    // Three times the errors and more memory: fail, and the errors metric says why.
    let (status, report) = call(&app, "GET", "/api/v1/verdict?canary=v3&baseline=v1", None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a failing verdict is still a 200 for Argo"
    );
    assert_eq!(report["verdict"], "fail", "{report:#}");
    assert_eq!(metric(&report, "errors")["outcome"], "high");
    assert_eq!(metric(&report, "memory")["outcome"], "high");
    assert!(
        report["reason"].as_str().unwrap().contains("errors"),
        "{report}"
    );

    // Almost no traffic: inconclusive, never a pass.
    let (status, report) = call(&app, "GET", "/api/v1/verdict?canary=v4&baseline=v1", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["verdict"], "inconclusive", "{report:#}");
    assert_eq!(metric(&report, "errors")["outcome"], "no_data");

    // POST with a JSON body, as the provider's `method: POST` + `body` sends it.
    let (status, report) = call(
        &app,
        "POST",
        "/api/v1/verdict?canary=v2",
        Some(json!({"baseline": "v1"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["verdict"], "pass");

    // A placeholder the request did not supply is an error, not a verdict.
    let (status, body) = call(&app, "GET", "/api/v1/verdict?canary=v2", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().contains("{{baseline}}"),
        "{body}"
    );
}

#[tokio::test]
async fn flagger_hooks_answer_with_its_status_code_semantics() {
    let prom = common::start_prometheus();
    let dir = tempfile::tempdir().unwrap();
    let app = app(&prom.url, &dir.path().join("events.jsonl"));

    // Flagger's documented webhook payload, with the webhook's metadata naming
    // the releases to compare.
    let payload = |canary: &str| {
        json!({
            "name": "podinfo",
            "namespace": "test",
            "phase": "Progressing",
            "checksum": "6d4f7c9b8",
            "metadata": {"canary": canary, "baseline": "v1"}
        })
    };
    // rollout: 2xx advances; anything else halts and counts a failed check.
    let (status, report) = call(&app, "POST", "/flagger/rollout", Some(payload("v2"))).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["verdict"], "pass");
    let (status, report) = call(&app, "POST", "/flagger/rollout", Some(payload("v3"))).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(report["verdict"], "fail");
    let (status, _) = call(&app, "POST", "/flagger/rollout", Some(payload("v4"))).await;
    assert_eq!(
        status,
        StatusCode::PRECONDITION_FAILED,
        "inconclusive never advances"
    );

    // rollback: inverted — 2xx means roll back now.
    let (status, report) = call(&app, "POST", "/flagger/rollback", Some(payload("v3"))).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["verdict"], "fail");
    let (status, _) = call(&app, "POST", "/flagger/rollback", Some(payload("v2"))).await;
    assert!(
        !status.is_success(),
        "a passing canary is not rolled back: {status}"
    );
    let (status, _) = call(&app, "POST", "/flagger/rollback", Some(payload("v4"))).await;
    assert!(
        !status.is_success(),
        "no data is no reason to roll back: {status}"
    );

    // Gates: the documented payload as is (no checksum, as older Flagger sends it).
    let documented = json!({
        "name": "podinfo",
        "namespace": "test",
        "phase": "Progressing",
        "metadata": {"test": "all", "token": "16688eb5e9f289f1991c"}
    });
    for hook in ["/flagger/confirm-rollout", "/flagger/confirm-promotion"] {
        let (status, body) = call(&app, "POST", hook, Some(documented.clone())).await;
        assert_eq!(status, StatusCode::OK, "{hook}: {body}");
        assert_eq!(body["open"], true);
        assert_eq!(body["gates"][0]["name"], "error-budget");
        assert_eq!(body["gates"][0]["value"], 0.4);
    }
    // A service whose error budget is spent: the gate stays closed.
    let mut spent = documented.clone();
    spent["name"] = json!("spent");
    let (status, body) = call(&app, "POST", "/flagger/confirm-rollout", Some(spent)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["open"], false);
    assert!(body["gates"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("below the minimum"));
    // A service Prometheus knows nothing of: closed, never open without evidence.
    let mut unknown = documented.clone();
    unknown["name"] = json!("nobody");
    let (status, _) = call(&app, "POST", "/flagger/confirm-promotion", Some(unknown)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A payload without `phase` is refused by name.
    let (status, body) = call(
        &app,
        "POST",
        "/flagger/confirm-rollout",
        Some(json!({"name": "podinfo", "namespace": "test"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("phase"), "{body}");
}

#[tokio::test]
async fn flagger_events_go_to_the_event_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.jsonl");
    // Events need no metric source.
    let app = app("http://127.0.0.1:9", &log);
    let event = json!({
        "name": "podinfo",
        "namespace": "test",
        "phase": "Progressing",
        "metadata": {
            "eventMessage": "Advance podinfo.test canary weight 10",
            "eventType": "Normal",
            "timestamp": "1700000600000"
        }
    });
    for _ in 0..2 {
        let (status, _) = call(&app, "POST", "/flagger/event", Some(event.clone())).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["received_ms"], common::AT_MS);
    assert_eq!(lines[0]["name"], "podinfo");
    assert_eq!(lines[0]["phase"], "Progressing");
    assert_eq!(lines[0]["metadata"]["eventType"], "Normal");
    assert_eq!(
        lines[1]["metadata"]["eventMessage"],
        "Advance podinfo.test canary weight 10"
    );
    let (status, _) = call(&app, "POST", "/flagger/event", Some(json!({"name": "x"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn prometheus_down_is_inconclusive_within_the_timeout() {
    // A port nothing listens on: every query fails fast; the verdict says why.
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = app(
        &format!("http://127.0.0.1:{port}"),
        &dir.path().join("e.jsonl"),
    );
    let started = Instant::now();
    let (status, report) = call(&app, "GET", "/api/v1/verdict?canary=v2&baseline=v1", None).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["verdict"], "inconclusive", "{report:#}");
    let reason = metric(&report, "errors")["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("prometheus"), "{reason}");
    // Gates close.
    let (status, _) = call(
        &app,
        "POST",
        "/flagger/confirm-rollout",
        Some(json!({"name": "podinfo", "namespace": "test", "phase": "Progressing"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
