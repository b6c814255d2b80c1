//! `probe()` and `run_probe` against real loopback servers.

use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use capstan_probe::{
    check_fn, probe, CheckConfig, Details, GateStatus, Health, ProbeOutcome, Status,
};

/// Serves `router` on a loopback port for the rest of the test; returns the base URL.
async fn spawn(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn pass_warn_and_fail() {
    let health = Health::new();
    let base = spawn(health.router(Details::Full)).await;

    // The gate has not reported yet.
    let outcome = probe(&format!("{base}/readyz"), TIMEOUT).await;
    assert_eq!(
        outcome,
        ProbeOutcome::Answered {
            status: Status::Fail,
            http_status: 503,
            output: Some("gate waiting: not checked yet".into()),
        }
    );
    assert_eq!(outcome.exit_code(), 1);
    assert_eq!(
        outcome.to_string(),
        "fail (HTTP 503): gate waiting: not checked yet"
    );

    health.set_gate(GateStatus::Compatible);
    let outcome = probe(&format!("{base}/readyz"), TIMEOUT).await;
    assert_eq!(outcome.to_string(), "pass (HTTP 200)");
    assert_eq!(outcome.exit_code(), 0);

    health
        .add_check(
            CheckConfig::shared("billing").thresholds(1, 1),
            check_fn(|| async { Err("503 from upstream".to_owned()) }),
        )
        .unwrap();
    let mut outcome = probe(&format!("{base}/readyz"), TIMEOUT).await;
    for _ in 0..200 {
        if outcome.to_string() != "warn (HTTP 200): billing: not checked yet" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        outcome = probe(&format!("{base}/readyz"), TIMEOUT).await;
    }
    assert_eq!(
        outcome.to_string(),
        "warn (HTTP 200): billing: 503 from upstream"
    );
    assert_eq!(outcome.status(), Status::Warn);
    assert_eq!(outcome.exit_code(), 0);

    // The public listener's status-only body is enough.
    let public = spawn(health.router(Details::Status)).await;
    let outcome = probe(&format!("{public}/readyz"), TIMEOUT).await;
    assert_eq!(outcome.to_string(), "warn (HTTP 200)");
}

#[tokio::test]
async fn plain_http_endpoints_are_judged_by_status_code() {
    let base = spawn(
        Router::new()
            .route("/ok", get(|| async { "OK" }))
            .route(
                "/broken",
                get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "oops") }),
            )
            .route(
                "/liar",
                get(|| async { (StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"pass"}"#) }),
            ),
    )
    .await;
    assert_eq!(probe(&format!("{base}/ok"), TIMEOUT).await.exit_code(), 0);
    assert_eq!(
        probe(&format!("{base}/broken"), TIMEOUT).await.to_string(),
        "fail (HTTP 500)"
    );
    assert_eq!(
        probe(&format!("{base}/liar"), TIMEOUT).await.status(),
        Status::Fail
    );
    assert_eq!(
        probe(&format!("{base}/missing"), TIMEOUT).await.exit_code(),
        1
    );
}

#[tokio::test]
async fn closed_port_is_no_answer() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let outcome = probe(&format!("http://{addr}/readyz"), TIMEOUT).await;
    let ProbeOutcome::NoAnswer { reason } = &outcome else {
        panic!("{outcome:?}");
    };
    assert!(reason.contains("refused"), "{reason}");
    assert_eq!(outcome.exit_code(), 1);
    assert!(outcome.to_string().starts_with("fail: no answer: "));
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            held.push(socket);
        }
    });
    let outcome = probe(&format!("http://{addr}/readyz"), Duration::from_millis(200)).await;
    assert_eq!(
        outcome,
        ProbeOutcome::NoAnswer {
            reason: "no answer within 200ms".into()
        }
    );
    holder.abort();
}

#[tokio::test]
async fn a_bad_url_is_no_answer_without_echoing_it() {
    let outcome = probe("not a url://user:secret@", TIMEOUT).await;
    assert_eq!(outcome.exit_code(), 1);
    assert!(!outcome.to_string().contains("secret"), "{outcome}");
}

#[cfg(feature = "cli")]
#[tokio::test]
async fn the_cli_subcommand_parses_and_returns_exit_codes() {
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        probe: capstan_probe::ProbeArgs,
    }

    let health = Health::new();
    let base = spawn(health.router(Details::Status)).await;
    let cli = Cli::try_parse_from(["probe", &format!("{base}/livez"), "--timeout", "2s"]).unwrap();
    assert_eq!(cli.probe.timeout, Duration::from_secs(2));
    assert_eq!(capstan_probe::run_probe(cli.probe).await, 0);
    let cli = Cli::try_parse_from(["probe", &format!("{base}/readyz"), "-q"]).unwrap();
    assert_eq!(cli.probe.timeout, Duration::from_secs(1));
    assert_eq!(capstan_probe::run_probe(cli.probe).await, 1);
    assert!(Cli::try_parse_from(["probe", "http://x/", "--timeout", "soon"]).is_err());
}
