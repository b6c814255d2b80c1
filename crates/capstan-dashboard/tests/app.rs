//! The router without a socket (`oneshot`): what a page never shows and what
//! a read-only dashboard refuses.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use capstan_dashboard::{app, AppState, Auth, Sources};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

fn sources(dir: &std::path::Path, database: Option<&str>) -> Sources {
    let mut settings = capstan_slo::Settings::load(&dir.join("capstan.toml")).unwrap();
    settings.slo_paths = vec![dir.join("slos")];
    settings.store = dir.join("events.db");
    settings.database = database.map(String::from);
    Sources {
        settings,
        rollout_state: dir.join("rollout.db"),
        migrations_dir: dir.join("migrations"),
    }
}

async fn get(state: &AppState, uri: &str) -> (StatusCode, String) {
    let r = app(state.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = r.status();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn a_database_password_never_reaches_a_page() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("slos")).unwrap();
    // Nothing listens on port 1: the connection fails, and its error is shown.
    let url = "postgres://app:hunter2-secret@127.0.0.1:1/app?connect_timeout=2";
    let state = AppState::new(sources(dir.path(), Some(url)), Auth::default());
    state.refresh().await;
    let (code, page) = get(&state, "/service/api").await;
    assert_eq!(code, StatusCode::OK);
    assert!(!page.contains("hunter2-secret"), "{page}");
    assert!(page.contains("Migrations"), "{page}");
    let snap = state.snapshot();
    let err = snap.services.as_ref().unwrap().as_ref().unwrap_err();
    assert!(!err.contains("hunter2-secret"), "{err}");
    for uri in ["/", "/rollouts", "/events", "/api/status"] {
        let (_, body) = get(&state, uri).await;
        assert!(!body.contains("hunter2-secret"), "{uri}: {body}");
    }
}

#[tokio::test]
async fn a_read_only_dashboard_refuses_actions_and_a_wrong_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("slos")).unwrap();
    let post = |state: AppState, body: &'static str| async move {
        app(state)
            .oneshot(
                Request::post("/rollouts/api/pause")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await
            .unwrap()
            .status()
    };
    let ro = AppState::new(sources(dir.path(), None), Auth::default());
    assert_eq!(post(ro.clone(), "token=").await, StatusCode::FORBIDDEN);
    let (_, page) = get(&ro, "/rollouts").await;
    assert!(page.contains("No rollout recorded"), "{page}");
    let guarded = AppState::new(
        sources(dir.path(), None),
        Auth::new(Some("the-right-token-123"), None),
    );
    assert_eq!(
        post(guarded.clone(), "token=wrong").await,
        StatusCode::FORBIDDEN
    );
    // The right token, but no rollout to act on: nothing is queued.
    assert_eq!(
        post(guarded.clone(), "token=the-right-token-123").await,
        StatusCode::CONFLICT
    );
    assert!(
        !dir.path().join("rollout.db").exists()
            || capstan_rollout::controller::store::StateStore::open(&dir.path().join("rollout.db"))
                .unwrap()
                .take_command("api", 0)
                .unwrap()
                .is_none()
    );
}

fn availability_slo(service: &str, target: &str) -> String {
    format!(
        r#"apiVersion: openslo/v1
kind: SLO
metadata:
  name: {service}-availability
spec:
  service: {service}
  indicator:
    metadata:
      name: {service}-ok
    spec:
      ratioMetric:
        good:
          metricSource: {{type: capstan, spec: {{query: "status < 500"}}}}
        total:
          metricSource: {{type: capstan, spec: {{query: "status >= 0"}}}}
  timeWindow:
    - duration: 30d
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - target: {target}
"#
    )
}

#[tokio::test]
async fn a_service_page_names_a_dependency_whose_budget_is_spent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("slos")).unwrap();
    std::fs::write(
        d.join("capstan.toml"),
        "[[service]]\nname = \"users\"\nowns = [\"users\"]\n\n[[service]]\nname = \"search\"\n\n[[service]]\nname = \"chirps\"\nowns = [\"chirps\"]\ndepends_on = [\"users\", { service = \"search\", hard = false }]\n",
    )
    .unwrap();
    std::fs::write(
        d.join("slos/users.yaml"),
        availability_slo("users", "0.999"),
    )
    .unwrap();
    std::fs::write(
        d.join("slos/chirps.yaml"),
        availability_slo("chirps", "0.9995"),
    )
    .unwrap();
    // The last hour: every other request to users failed; chirps was fine.
    let now = chrono::Utc::now().timestamp_millis();
    let store = capstan_events::Store::open(&d.join("events.db")).unwrap();
    let events: Vec<capstan_events::Event> = (0..600i64)
        .flat_map(|i| {
            ["users", "chirps"].map(|service| capstan_events::Event {
                time_ms: now - 3_600_000 + i * 6_000,
                service: service.into(),
                method: "GET".into(),
                route: "/".into(),
                path: "/".into(),
                status: if service == "users" && i % 2 == 0 {
                    503
                } else {
                    200
                },
                duration_ms: 3.0,
                ..capstan_events::Event::default()
            })
        })
        .collect();
    store.insert_batch(&events).unwrap();
    drop(store);

    let mut src = sources(d, None);
    // As `capstan dashboard` reads it: every minute of the window, for the charts.
    src.settings.whole_series = true;
    let state = AppState::new(src, Auth::default());
    let snap = state.refresh().await;
    let report = snap.status.as_ref().unwrap().as_ref().unwrap();
    let users = report.slos.iter().find(|s| s.service == "users").unwrap();
    assert_eq!(users.evaluation.budget.remaining, 0.0, "{users:?}");

    let (code, page) = get(&state, "/service/chirps").await;
    assert_eq!(code, StatusCode::OK);
    assert!(
        page.contains("<h2 id=\"deps-h\">Dependencies</h2>"),
        "{page}"
    );
    // users: hard, its target, its spent budget (the number `slo status` gave), marked.
    let row = page
        .lines()
        .find(|l| l.contains("data-dependency=\"users\""))
        .unwrap_or_else(|| panic!("{page}"));
    assert!(row.contains("data-dep-state=\"exhausted\""), "{row}");
    assert!(
        row.contains("<td>hard</td><td>users-availability</td><td class=\"num\">99.9 %</td>"),
        "{row}"
    );
    assert!(
        row.contains(&format!(
            "data-dep-remaining=\"{}\"",
            users.evaluation.budget.remaining
        )),
        "{row}"
    );
    assert!(row.contains("budget exhausted"), "{row}");
    // search: soft, no SLO.
    let row = page
        .lines()
        .find(|l| l.contains("data-dependency=\"search\""))
        .unwrap();
    assert!(
        row.contains("<td>soft</td><td colspan=\"4\">publishes no SLO</td>"),
        "{row}"
    );
    assert!(
        page.contains(
            "Hard dependencies publish at most <strong>99.9 %</strong> <small>users 99.9 %</small>"
        ),
        "{page}"
    );
    assert!(
        page.contains(
            "chirps-availability promises 99.95 %, more than its hard dependencies publish."
        ),
        "{page}"
    );
    assert!(
        page.contains("error budget is burning or spent: users (exhausted)."),
        "{page}"
    );

    // The overview: a compact line per service.
    let (_, page) = get(&state, "/").await;
    assert!(
        page.contains("data-dependency=\"users\" data-dep-state=\"exhausted\">users <small>hard 99.9 %</small> <span class=\"dep-state dep-exhausted\">exhausted</span>"),
        "{page}"
    );
    assert!(
        page.contains("hard dependencies publish at most 99.9 %"),
        "{page}"
    );
    // A service without dependencies has no such section.
    let (_, page) = get(&state, "/service/users").await;
    assert!(!page.contains("deps-h"), "{page}");
}
