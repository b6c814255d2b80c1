//! The router without a socket (`oneshot`): what a page never shows and what
//! a read-only dashboard refuses.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use capstan_dashboard::{app, AppState, Auth, Sources};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

fn sources(dir: &std::path::Path, database: Option<&str>) -> Sources {
    let mut settings = capstan_slo::cli::Settings::load(&dir.join("capstan.toml")).unwrap();
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
    let err = snap.migrations.as_ref().unwrap().as_ref().unwrap_err();
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
