//! The database panels show every service found in the database: the
//! overview lists each with its migrations, live instances and archive
//! entries, and `/service/NAME` shows that service's own migrations and
//! fleet, not another's. On Postgres and SQLite, through the router.

use std::path::Path;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use capstan_dashboard::{app, AppState, Auth, Sources};
use capstan_migrate::DatabaseUrl;
use capstan_migrate::Instance;
use capstan_migrate::MigrationSet;
use capstan_migrate::{Database, Migrator};
use capstan_testkit::{backends, Backend};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

const TOML: &str = "[[service]]\nname = \"users\"\ndir = \"users\"\n\n[[service]]\nname = \"chirps\"\ndir = \"chirps\"\n\n[[service]]\nname = \"search\"\ndir = \"search\"\n";

async fn get(state: &AppState, uri: &str) -> String {
    let r = app(state.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{uri}");
    let body = r.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

fn migration(dir: &Path, file: &str, table: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join(file),
        format!("-- capstan:up\nCREATE TABLE {table} (id bigint);\n-- capstan:down\nDROP TABLE {table};\n"),
    )
    .unwrap();
}

/// Applies the migrations of `dir` as `service`.
async fn up(url: &DatabaseUrl, service: &str, dir: &Path) -> MigrationSet {
    let set = MigrationSet::from_dir_unchecked(dir).unwrap();
    let mut db = Database::connect(url).await.unwrap().for_service(service);
    Migrator::new(set.clone()).up(&mut db).await.unwrap();
    set
}

/// The sources of a dashboard of the project in `d` (its `capstan.toml`,
/// `slos/`) reading the database `raw`.
fn sources_for(d: &Path, raw: &str) -> Sources {
    let mut settings = capstan_slo::Settings::load(&d.join("capstan.toml")).unwrap();
    settings.slo_paths = vec![d.join("slos")];
    settings.store = d.join("events.db");
    settings.database = Some(raw.to_string());
    Sources {
        settings,
        rollout_state: d.join("rollout.db"),
        migrations_dir: d.join("migrations"),
    }
}

/// A dashboard of [`sources_for`].
fn state_for(d: &Path, raw: &str) -> AppState {
    AppState::new(sources_for(d, raw), Auth::default())
}

/// The row of the overview's database table for `service`.
fn db_row<'a>(page: &'a str, service: &str) -> &'a str {
    let start = page
        .find(&format!("data-db-service=\"{service}\""))
        .unwrap_or_else(|| panic!("no row for {service}: {page}"));
    let rest = &page[start..];
    &rest[..rest.find("</tr>").unwrap()]
}

async fn every_service_of_the_database_is_shown(b: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let _pg;
    let raw = match b {
        Backend::Postgres => {
            _pg = capstan_testkit::TestDb::new("dash");
            _pg.url.clone()
        }
        Backend::Sqlite => format!("sqlite://{}", d.join("app.db").display()),
    };
    let url = DatabaseUrl::parse(&raw).unwrap();
    std::fs::write(d.join("capstan.toml"), TOML).unwrap();
    std::fs::create_dir_all(d.join("slos")).unwrap();
    migration(&d.join("users"), "0001_create_accounts.sql", "accounts");
    migration(&d.join("users"), "0002_create_sessions.sql", "sessions");
    up(&url, "users", &d.join("users")).await;
    migration(&d.join("chirps"), "0001_create_chirps.sql", "chirps");
    let chirps = up(&url, "chirps", &d.join("chirps")).await;
    migration(&d.join("chirps"), "0002_create_likes.sql", "likes");
    // A service capstan.toml does not declare (another repository's).
    migration(&d.join("legacy"), "0001_create_ledger.sql", "ledger");
    up(&url, "legacy", &d.join("legacy")).await;
    // Declared, never deployed: its migration is pending.
    migration(&d.join("search"), "0001_create_index.sql", "search_index");
    let mut db = Database::connect(&url).await.unwrap().for_service("chirps");
    let mut me = Instance::new("chirps-api", "2.0.0", &chirps);
    me.instance_id = "chirps-instance-1".into();
    db.driver().fleet_register(&me).await.unwrap();

    let state = state_for(d, &raw);
    state.refresh().await;
    let snap = state.snapshot();
    let names: Vec<&str> = snap
        .services
        .as_ref()
        .unwrap()
        .as_ref()
        .unwrap()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["chirps", "legacy", "search", "users"], "{b:?}");

    let overview = get(&state, "/").await;
    for (service, applied, pending, live) in [
        ("users", 2, 0, 0),
        ("chirps", 1, 1, 1),
        ("legacy", 1, 0, 0),
        ("search", 0, 1, 0),
    ] {
        let row = db_row(&overview, service);
        assert!(
            row.contains(&format!("data-field=\"applied\">{applied}<"))
                && row.contains(&format!("data-field=\"pending\">{pending}<"))
                && row.contains(&format!("data-field=\"live\">{live}<")),
            "{b:?} {service}: {row}"
        );
        assert!(
            row.contains(&format!("href=\"/service/{service}\"")),
            "{row}"
        );
    }

    let users = get(&state, "/service/users").await;
    assert!(
        users.contains("<code data-field=\"db-service\">users</code>"),
        "{users}"
    );
    assert!(
        users.contains("0001_create_accounts") && users.contains("0002_create_sessions"),
        "{users}"
    );
    assert!(
        !users.contains("create_chirps") && !users.contains("chirps-instance-1"),
        "{b:?}: users' page shows chirps' rows: {users}"
    );
    assert!(
        users.contains("No instance of users in the fleet registry"),
        "{users}"
    );

    let chirps = get(&state, "/service/chirps").await;
    assert!(
        chirps.contains("chirps-instance-1") && chirps.contains("2.0.0"),
        "{chirps}"
    );
    let state_of = |page: &str, label: &str| {
        let at = page
            .find(label)
            .unwrap_or_else(|| panic!("{label}: {page}"));
        let rest = &page[at..];
        let s = rest.find("class=\"state state-").unwrap() + "class=\"state state-".len();
        rest[s..s + rest[s..].find('"').unwrap()].to_string()
    };
    assert_eq!(state_of(&chirps, "0001_create_chirps"), "applied");
    assert_eq!(state_of(&chirps, "0002_create_likes"), "pending");
    assert!(!chirps.contains("create_accounts"), "{chirps}");

    let legacy = get(&state, "/service/legacy").await;
    assert_eq!(state_of(&legacy, "0001_create_ledger"), "applied");
    let search = get(&state, "/service/search").await;
    assert_eq!(state_of(&search, "0001_create_index"), "pending");
}

/// A project that declares no service: its one service is `default`, shown
/// on the page of the SLO's service with the fleet told apart by
/// application name, as before services.
async fn a_project_without_services_shows_default(b: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let _pg;
    let raw = match b {
        Backend::Postgres => {
            _pg = capstan_testkit::TestDb::new("dash");
            _pg.url.clone()
        }
        Backend::Sqlite => format!("sqlite://{}", d.join("app.db").display()),
    };
    let url = DatabaseUrl::parse(&raw).unwrap();
    std::fs::create_dir_all(d.join("slos")).unwrap();
    migration(&d.join("migrations"), "0001_create_users.sql", "users");
    let set = up(&url, "default", &d.join("migrations")).await;
    let mut db = Database::connect(&url).await.unwrap();
    for (app, id) in [("api", "api-1"), ("worker", "worker-1")] {
        let mut me = Instance::new(app, "1.0.0", &set);
        me.instance_id = id.into();
        db.driver().fleet_register(&me).await.unwrap();
    }
    let state = state_for(d, &raw);
    state.refresh().await;
    let api = get(&state, "/service/api").await;
    assert!(
        api.contains(
            "<code data-field=\"db-service\">default</code>, instances of the application api"
        ),
        "{api}"
    );
    assert!(api.contains("api-1") && !api.contains("worker-1"), "{api}");
    assert!(api.contains("0001_create_users"), "{api}");
    let overview = get(&state, "/").await;
    assert!(
        db_row(&overview, "default").contains("data-field=\"live\">2<"),
        "{overview}"
    );
}

backends!(
    async every_service_of_the_database_is_shown,
    a_project_without_services_shows_default
);

/// A table of capstan's held by someone else's lock: the reads wait on it,
/// and the snapshot must still finish, saying the database did not answer,
/// rather than leave the dashboard stale for ever.
#[tokio::test]
async fn a_database_that_stops_answering_after_the_connect_leaves_the_panel_unreadable() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let pg = capstan_testkit::TestDb::new("dash_stall");
    let url = DatabaseUrl::parse(&pg.url).unwrap();
    std::fs::create_dir_all(d.join("slos")).unwrap();
    migration(&d.join("migrations"), "0001_create_users.sql", "users");
    up(&url, "default", &d.join("migrations")).await;
    let mut holder = std::process::Command::new("psql")
        .args([
            pg.url.as_str(),
            "-qAt",
            "-c",
            "BEGIN; LOCK TABLE capstan.archive IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120);",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let held = "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
                WHERE c.relname = 'archive' AND l.mode = 'AccessExclusiveLock' AND l.granted";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while capstan_testkit::psql(&pg.url, held).trim() != "1" {
        assert!(
            std::time::Instant::now() < deadline,
            "the lock was not taken"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let mut sources = sources_for(d, &pg.url);
    sources.settings.timeout = std::time::Duration::from_secs(2);
    let state = AppState::new(sources, Auth::default());
    let started = std::time::Instant::now();
    tokio::time::timeout(std::time::Duration::from_secs(30), state.refresh())
        .await
        .expect("the snapshot finished although the database stopped answering");
    let took = started.elapsed();
    let _ = holder.kill();
    let _ = holder.wait();
    let snap = state.snapshot();
    let err = snap.services.as_ref().unwrap().as_ref().unwrap_err();
    assert!(err.contains("did not answer within 2s"), "{err}");
    // The deploy import and the panel's reads, each bounded by the timeout.
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
}
