//! Background checks, thresholds and what the probes answer, on a paused clock.
//!
//! With the clock paused, `sleep_until(t)` returns only after every run due before
//! `t` has been recorded, so each assertion sees an exact number of runs.

mod common;

use std::time::Duration;

use capstan_probe::{CheckConfig, Details, Error, GateStatus, Health, Status};
use common::{get, get_json, Behaviour, Script};
use http::StatusCode;
use tokio::time::{sleep_until, Instant};

fn ready_health() -> Health {
    let health = Health::new();
    health.set_gate(GateStatus::Compatible);
    health
}

/// Every 2 s, timeout 1 s, the given thresholds.
fn config(id: &str, shared: bool, failures: u32, successes: u32) -> CheckConfig {
    let c = if shared {
        CheckConfig::shared(id)
    } else {
        CheckConfig::private(id)
    };
    c.interval(Duration::from_secs(2))
        .timeout(Duration::from_secs(1))
        .thresholds(failures, successes)
}

async fn at(start: Instant, secs: f64) {
    sleep_until(start + Duration::from_secs_f64(secs)).await;
}

#[tokio::test(start_paused = true)]
async fn private_check_fails_readiness_only_after_the_failure_threshold() {
    let start = Instant::now();
    let health = ready_health();
    let script = Script::new(Behaviour::Pass);
    health
        .add_check(config("db", false, 3, 1), script.check())
        .unwrap();
    at(start, 0.001).await;
    assert_eq!(health.readiness(), Status::Pass);

    script.set(Behaviour::Fail);
    at(start, 2.001).await;
    assert_eq!(health.readiness(), Status::Pass, "1 failure of 3");
    at(start, 4.001).await;
    assert_eq!(health.readiness(), Status::Pass, "2 failures of 3");
    let report = health.readyz_report();
    assert_eq!(
        report.checks["db:responseTime"][0].output.as_deref(),
        Some("connection refused (2 of 3 failures in a row before it fails)")
    );
    at(start, 6.001).await;
    assert_eq!(health.readiness(), Status::Fail, "3 failures of 3");

    script.set(Behaviour::Pass);
    at(start, 8.001).await;
    assert_eq!(health.readiness(), Status::Pass, "1 success of 1");
    assert_eq!(script.started(), 5);
}

#[tokio::test(start_paused = true)]
async fn success_threshold_holds_a_recovering_check_down() {
    let start = Instant::now();
    let health = ready_health();
    let script = Script::new(Behaviour::Fail);
    health
        .add_check(config("db", false, 1, 2), script.check())
        .unwrap();
    at(start, 0.001).await;
    assert_eq!(health.readiness(), Status::Fail);
    script.set(Behaviour::Pass);
    at(start, 2.001).await;
    assert_eq!(health.readiness(), Status::Fail, "1 success of 2");
    at(start, 4.001).await;
    assert_eq!(health.readiness(), Status::Pass, "2 successes of 2");
}

#[tokio::test(start_paused = true)]
async fn a_check_not_yet_run_keeps_the_instance_unready() {
    let health = ready_health();
    let script = Script::new(Behaviour::Pass);
    health
        .add_check(config("db", false, 3, 1), script.check())
        .unwrap();
    // Before the runner had a chance to run.
    let report = health.readyz_report();
    assert_eq!(report.status, Status::Fail);
    assert_eq!(
        report.checks["db:responseTime"][0].output.as_deref(),
        Some("not checked yet")
    );
}

#[tokio::test(start_paused = true)]
async fn hung_check_times_out_never_piles_up_and_readyz_still_answers_at_once() {
    let start = Instant::now();
    let health = ready_health();
    let script = Script::new(Behaviour::Pass);
    health
        .add_check(config("db", false, 2, 1), script.check())
        .unwrap();
    let router = health.router(Details::Full);
    at(start, 0.001).await;
    assert_eq!(health.readiness(), Status::Pass);

    script.set(Behaviour::Hang);
    // The run at 2 s hangs; at 3 s it has timed out: one failure of two.
    at(start, 3.001).await;
    assert_eq!(health.readiness(), Status::Pass);
    assert_eq!(
        health.readyz_report().checks["db:responseTime"][0]
            .output
            .as_deref(),
        Some("timed out after 1s (1 of 2 failures in a row before it fails)")
    );
    // At 4 s the run from 2 s is still pending: a second failure, and no new run.
    at(start, 4.001).await;
    assert_eq!(health.readiness(), Status::Fail);
    assert_eq!(script.started(), 2, "no run starts while one is pending");

    // The probe answers from the cached state without the clock moving at all.
    let before = Instant::now();
    let (status, body) = get_json(&router, "/readyz").await;
    assert_eq!(Instant::now(), before, "the answer needed no time to pass");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "fail");
    let check = &body["checks"]["db:responseTime"][0];
    assert_eq!(check["status"], "fail");
    assert_eq!(
        check["output"],
        "the previous run is still pending after 2s"
    );
    assert_eq!(check["observedValue"], 2000.0);
    assert_eq!(check["observedUnit"], "ms");

    at(start, 10.001).await;
    assert_eq!(script.started(), 2, "still the one hung run");

    // The hung run returns; the next tick starts a fresh run, which passes.
    script.set(Behaviour::Pass);
    script.release();
    at(start, 12.001).await;
    assert_eq!(script.started(), 3);
    assert_eq!(health.readiness(), Status::Pass);
}

#[tokio::test(start_paused = true)]
async fn shared_dependency_down_warns_and_stays_ready() {
    let start = Instant::now();
    let health = ready_health();
    let db = Script::new(Behaviour::Pass);
    let billing = Script::new(Behaviour::Fail);
    health
        .add_check(config("db", false, 1, 1), db.check())
        .unwrap();
    health
        .add_check(config("billing", true, 1, 1), billing.check())
        .unwrap();
    let router = health.router(Details::Full);
    at(start, 0.001).await;

    let (status, body) = get_json(&router, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "warn");
    assert_eq!(body["output"], "billing: connection refused");
    assert_eq!(body["checks"]["billing:responseTime"][0]["status"], "warn");
    assert_eq!(body["checks"]["db:responseTime"][0]["status"], "pass");

    // A private dependency down as well: now it fails.
    db.set(Behaviour::Fail);
    at(start, 2.001).await;
    let (status, body) = get_json(&router, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "fail");
}

#[tokio::test(start_paused = true)]
async fn private_dependency_down_answers_503() {
    let start = Instant::now();
    let health = ready_health();
    let db = Script::new(Behaviour::Fail);
    health
        .add_check(config("db", false, 1, 1), db.check())
        .unwrap();
    let router = health.router(Details::Status);
    at(start, 0.001).await;
    let (status, content_type, body) = get(&router, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(content_type, "application/health+json");
    assert_eq!(body, r#"{"status":"fail"}"#);
    // Liveness never looks at dependencies.
    let (status, _, body) = get(&router, "/livez").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, r#"{"status":"pass"}"#);
}

#[tokio::test]
async fn draining_fails_readiness_but_not_liveness() {
    let health = ready_health();
    health.set_warmed_up();
    let router = health.router(Details::Full);
    assert_eq!(get_json(&router, "/readyz").await.0, StatusCode::OK);

    health.start_draining();
    assert!(health.is_draining());
    let (status, body) = get_json(&router, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "fail");
    assert_eq!(body["output"], "draining");
    assert_eq!(body["checks"]["process:draining"][0]["status"], "fail");
    assert_eq!(get_json(&router, "/livez").await.0, StatusCode::OK);
    assert_eq!(get_json(&router, "/startupz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn startup_waits_for_the_gate_and_warm_up() {
    let health = Health::new();
    let router = health.router(Details::Full);
    let (status, body) = get_json(&router, "/startupz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["output"], "gate waiting: not checked yet; warming up");
    // Not ready either while the gate waits.
    assert_eq!(
        get_json(&router, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    health.set_gate(GateStatus::Waiting(
        "migration 0002_add_handle is pending; run `chirpy migrate up`".into(),
    ));
    let (_, body) = get_json(&router, "/startupz").await;
    assert_eq!(
        body["checks"]["gate:compatibility"][0]["output"],
        "waiting: migration 0002_add_handle is pending; run `chirpy migrate up`"
    );

    health.set_gate(GateStatus::Compatible);
    assert_eq!(get_json(&router, "/readyz").await.0, StatusCode::OK);
    assert_eq!(
        get_json(&router, "/startupz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    health.set_warmed_up();
    assert_eq!(get_json(&router, "/startupz").await.0, StatusCode::OK);
    assert_eq!(health.startup(), Status::Pass);

    health.set_gate(GateStatus::Refused("drift in 0003".into()));
    let (status, body) = get_json(&router, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["output"], "gate refused: drift in 0003");
}

#[tokio::test]
async fn bad_check_settings_are_refused() {
    let health = Health::new();
    let script = Script::new(Behaviour::Pass);
    let err = health
        .add_check(CheckConfig::private("db").thresholds(0, 1), script.check())
        .unwrap_err();
    assert!(matches!(err, Error::InvalidCheck { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        r#"check "db": a threshold is zero; the smallest is 1"#
    );
    let err = health
        .add_check(
            CheckConfig::private("db").interval(Duration::ZERO),
            script.check(),
        )
        .unwrap_err();
    assert_eq!(err.to_string(), r#"check "db": the interval is zero"#);
    health
        .add_check(CheckConfig::private("db"), script.check())
        .unwrap();
    let err = health
        .add_check(CheckConfig::shared("db"), script.check())
        .unwrap_err();
    assert_eq!(err.to_string(), r#"check "db" is already added"#);
}

#[test]
fn adding_a_check_outside_a_runtime_is_an_error_not_a_panic() {
    let health = Health::new();
    let err = health
        .add_check(
            CheckConfig::private("db"),
            Script::new(Behaviour::Pass).check(),
        )
        .unwrap_err();
    assert!(matches!(err, Error::NoRuntime));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_check_counts_as_a_failure() {
    let start = Instant::now();
    let health = ready_health();
    health
        .add_check(
            config("db", false, 1, 1),
            capstan_probe::check_fn(|| async { panic!("boom") }),
        )
        .unwrap();
    at(start, 0.001).await;
    let report = health.readyz_report();
    assert_eq!(report.status, Status::Fail);
    assert_eq!(
        report.checks["db:responseTime"][0].output.as_deref(),
        Some("the check panicked")
    );
}

#[tokio::test(start_paused = true)]
async fn checks_stop_when_the_last_handle_is_dropped() {
    let start = Instant::now();
    let health = ready_health();
    let script = Script::new(Behaviour::Pass);
    health
        .add_check(config("db", false, 1, 1), script.check())
        .unwrap();
    at(start, 2.001).await;
    assert_eq!(script.started(), 2);
    drop(health);
    at(start, 10.001).await;
    assert_eq!(script.started(), 2);
}
