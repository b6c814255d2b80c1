//! Several services in one database, against a real Postgres and a real
//! SQLite file: capstan's tables as earlier releases left them (fixtures
//! written by those releases) upgraded in place with nothing lost, each
//! service's history, log, fleet and archive apart, and one runner lock per
//! service.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use capstan_migrate::{
    Database, DatabaseUrl, Error, FailureKind, Instance, MigrationSet, Migrator, Settings, State,
    DEFAULT_SERVICE, TABLES_LAYOUT as LAYOUT,
};
use capstan_testkit::{backends, Backend, TestDb};

/// A fresh database of one backend, dropped (or deleted) at the end.
struct Target {
    backend: Backend,
    url: String,
    _pg: Option<TestDb>,
    _dir: tempfile::TempDir,
    sqlite: PathBuf,
}

impl Target {
    fn new(backend: Backend) -> Target {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = dir.path().join("app.db");
        match backend {
            Backend::Postgres => {
                let db = TestDb::new("services");
                Target {
                    backend,
                    url: db.url.clone(),
                    _pg: Some(db),
                    _dir: dir,
                    sqlite,
                }
            }
            Backend::Sqlite => Target {
                backend,
                url: format!("sqlite://{}", sqlite.display()),
                _pg: None,
                _dir: dir,
                sqlite,
            },
        }
    }

    /// Loads a fixture written by an earlier release.
    fn load(&self, fixture: &str) {
        let path = fixtures().join(format!("{fixture}-{}.sql", self.backend.name()));
        match self.backend {
            Backend::Postgres => {
                let out = std::process::Command::new("psql")
                    .args([&self.url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
                    .arg(&path)
                    .output()
                    .expect("run psql");
                assert!(
                    out.status.success(),
                    "loading {}: {}",
                    path.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Backend::Sqlite => {
                let sql = std::fs::read_to_string(&path).unwrap();
                rusqlite::Connection::open(&self.sqlite)
                    .unwrap()
                    .execute_batch(&sql)
                    .unwrap();
            }
        }
    }

    /// One column of a query's rows, as text (`|` between columns).
    fn query(&self, sql: &str) -> Vec<String> {
        match self.backend {
            Backend::Postgres => {
                let out = capstan_testkit::psql(&self.url, sql);
                out.lines().map(str::to_string).collect()
            }
            Backend::Sqlite => {
                let c = rusqlite::Connection::open(&self.sqlite).unwrap();
                let mut stmt = c.prepare(sql).unwrap();
                let width = stmt.column_count();
                stmt.query_map([], |r| {
                    Ok((0..width)
                        .map(|i| {
                            use rusqlite::types::ValueRef;
                            match r.get_ref(i).unwrap() {
                                ValueRef::Null => String::new(),
                                ValueRef::Integer(n) => n.to_string(),
                                ValueRef::Real(f) => f.to_string(),
                                ValueRef::Text(t) | ValueRef::Blob(t) => {
                                    String::from_utf8_lossy(t).into_owned()
                                }
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("|"))
                })
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap()
            }
        }
    }

    /// capstan's table `name` (`migrations`, `log`, `fleet`, `archive`, `meta`).
    fn table(&self, name: &str) -> String {
        match (self.backend, name) {
            (Backend::Postgres, n) => format!("capstan.{n}"),
            (Backend::Sqlite, "archive") => "capstan_archives".into(),
            (Backend::Sqlite, n) => format!("capstan_{n}"),
        }
    }

    async fn open(&self, service: &str) -> Database {
        Database::connect(&DatabaseUrl::parse(&self.url).unwrap())
            .await
            .unwrap()
            .for_service(service)
    }

    /// The migrations the fixtures were written with.
    fn fixture_set(&self) -> MigrationSet {
        MigrationSet::from_dir(
            &fixtures()
                .join("layout-migrations")
                .join(self.backend.name()),
        )
        .unwrap()
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn set(files: &[(&str, &str)]) -> MigrationSet {
    MigrationSet::from_embedded(files).unwrap()
}

fn migrator(set: MigrationSet) -> Migrator {
    Migrator::new(set).with_settings(Settings {
        runner_lock_timeout: Duration::from_secs(30),
        ..Settings::default()
    })
}

/// Loads `fixture`, reads it with the new code before and after `up`
/// upgrades it, and checks that every row survived and is the default
/// service's.
async fn upgraded_keeps_everything(b: Backend, fixture: &str) {
    let t = Target::new(b);
    t.load(fixture);
    let m = migrator(t.fixture_set());
    let mut db = t.open(DEFAULT_SERVICE).await;

    // Read before the upgrade (status writes nothing): every row is the
    // default service's.
    assert_eq!(db.services_in_use().await.unwrap(), [DEFAULT_SERVICE]);
    let before = m.status(&mut db).await.unwrap();
    let states: Vec<State> = before.migrations.iter().map(|e| e.state).collect();
    assert_eq!(states, [State::Applied; 3], "{fixture}: {before:?}");
    assert_eq!(m.fleet(&mut db).await.unwrap().len(), 2);
    assert_eq!(
        capstan_migrate::archive_entries(db.driver())
            .await
            .unwrap()
            .len(),
        1
    );
    let log_before = t.query(&format!(
        "SELECT id, version, name, action FROM {} ORDER BY id",
        t.table("log")
    ));
    assert_eq!(log_before.len(), 3);
    let history_before = t.query(&format!(
        "SELECT version, name, checksum, phase, state, applied_at, applied_by FROM {} ORDER BY version",
        t.table("migrations")
    ));

    // `up` upgrades the tables (nothing is pending).
    let report = m.up(&mut db).await.unwrap();
    assert!(report.ran.is_empty(), "{report:?}");
    assert_eq!(
        t.query(&format!(
            "SELECT value FROM {} WHERE key = 'schema_version'",
            t.table("meta")
        )),
        [LAYOUT.to_string()]
    );
    assert_eq!(
        t.query(&format!(
            "SELECT version, name, checksum, phase, state, applied_at, applied_by FROM {} ORDER BY version",
            t.table("migrations")
        )),
        history_before,
        "{fixture}: history changed"
    );
    for table in ["migrations", "log", "fleet", "archive"] {
        assert_eq!(
            t.query(&format!("SELECT DISTINCT service FROM {}", t.table(table))),
            [DEFAULT_SERVICE],
            "{fixture}: {table}"
        );
    }
    assert_eq!(
        t.query(&format!(
            "SELECT id, version, name, action FROM {} ORDER BY id",
            t.table("log")
        )),
        log_before
    );

    // Everything reads as before, through a fresh connection.
    let mut db = t.open(DEFAULT_SERVICE).await;
    let after = m.status(&mut db).await.unwrap();
    let states: Vec<State> = after.migrations.iter().map(|e| e.state).collect();
    assert_eq!(states, [State::Applied; 3], "{fixture}: {after:?}");
    let fleet = m.fleet(&mut db).await.unwrap();
    assert_eq!(fleet.len(), 2);
    let entries = capstan_migrate::archive_entries(db.driver()).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].table_name, "users");
    assert_eq!(entries[0].row_count, 3);

    // Another service sees none of it.
    let mut other = t.open("billing").await;
    assert!(other.history().await.unwrap().is_empty());
    assert!(other.driver().fleet_list().await.unwrap().is_empty());
    assert!(capstan_migrate::archive_entries(other.driver())
        .await
        .unwrap()
        .is_empty());

    // A later migration of the default service still runs on top.
    let dir = tempfile::tempdir().unwrap();
    let from = fixtures().join("layout-migrations").join(b.name());
    for f in std::fs::read_dir(&from).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "sql") {
            std::fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(
        dir.path().join("0004_users_email.sql"),
        "-- capstan:up\nALTER TABLE users ADD COLUMN email text;\n",
    )
    .unwrap();
    let later = migrator(MigrationSet::from_dir_unchecked(dir.path()).unwrap());
    let report = later.up(&mut db).await.unwrap();
    assert_eq!(report.ran.len(), 1, "{report:?}");
    assert_eq!(db.history().await.unwrap().len(), 4);
}

async fn layout2_upgrades_in_place(b: Backend) {
    upgraded_keeps_everything(b, "layout2").await;
}

async fn layout1_upgrades_in_place(b: Backend) {
    upgraded_keeps_everything(b, "layout1").await;
}

backends!(async layout2_upgrades_in_place, layout1_upgrades_in_place);

const API_1: &str = "-- capstan:up\nCREATE TABLE api_users (id bigint PRIMARY KEY, name text);\n-- capstan:down\nDROP TABLE api_users;\n";
const API_2: &str =
    "-- capstan:phase contract\n-- capstan:up\nALTER TABLE api_users DROP COLUMN name;\n";
const BILLING_1: &str = "-- capstan:up\nCREATE TABLE invoices (id bigint PRIMARY KEY, total bigint);\n-- capstan:down\nDROP TABLE invoices;\n";
const BILLING_2: &str =
    "-- capstan:phase contract\n-- capstan:up\nALTER TABLE invoices DROP COLUMN total;\n";

/// Two runners of two services upgrade an old database at the same time:
/// one upgrades, the other finds it done, both apply their migrations.
async fn concurrent_upgrade_by_two_services(b: Backend) {
    let t = Target::new(b);
    t.load("layout2");
    let mut fixture_db = t.open(DEFAULT_SERVICE).await;
    let mut billing_db = t.open("billing").await;
    let fixture = migrator(t.fixture_set());
    let billing = migrator(set(&[("0001_invoices.sql", BILLING_1)]));
    let (a, b2) = tokio::join!(fixture.up(&mut fixture_db), billing.up(&mut billing_db));
    a.unwrap();
    assert_eq!(b2.unwrap().ran.len(), 1);
    assert_eq!(fixture_db.history().await.unwrap().len(), 3);
    let billing_rows = billing_db.history().await.unwrap();
    assert_eq!(billing_rows.len(), 1);
    assert_eq!(billing_rows[0].name, "invoices");
    assert_eq!(
        t.query(&format!(
            "SELECT service, count(*) FROM {} GROUP BY service ORDER BY service",
            t.table("migrations")
        )),
        ["billing|1", "default|3"]
    );
}

/// Two services with their own migrations (both numbered from 0001) in one
/// database: each has its own status, history, log and fleet, and one
/// service's contract migration waits only on its own fleet.
async fn two_services_side_by_side(b: Backend) {
    let t = Target::new(b);
    let api = migrator(set(&[("0001_api_users.sql", API_1)]));
    let billing = migrator(set(&[("0001_invoices.sql", BILLING_1)]));
    let mut api_db = t.open("api").await;
    let mut billing_db = t.open("billing").await;
    assert!(api_db.services_in_use().await.unwrap().is_empty());
    assert_eq!(api.up(&mut api_db).await.unwrap().ran.len(), 1);
    assert_eq!(billing.up(&mut billing_db).await.unwrap().ran.len(), 1);
    // Both are found, and `default`, which has no row, is not.
    assert_eq!(api_db.services_in_use().await.unwrap(), ["api", "billing"]);
    let api_history = api_db.history().await.unwrap();
    let billing_history = billing_db.history().await.unwrap();
    assert_eq!((api_history.len(), billing_history.len()), (1, 1));
    assert_eq!(api_history[0].version, 1);
    assert_eq!(api_history[0].name, "api_users");
    assert_eq!(billing_history[0].name, "invoices");
    assert_eq!(
        api.status(&mut api_db).await.unwrap().migrations[0].state,
        State::Applied
    );
    // The default service has nothing.
    assert!(t
        .open(DEFAULT_SERVICE)
        .await
        .history()
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        t.query(&format!(
            "SELECT service, version, name FROM {} ORDER BY service, id",
            t.table("log")
        )),
        ["api|1|api_users", "billing|1|invoices"]
    );

    // An old api instance (it embeds 0001 only) is live; so is a billing
    // instance that embeds 0001 only.
    let old_api = Instance::new("api", "1.0.0", api.set());
    api_db.driver().fleet_register(&old_api).await.unwrap();
    let mut old_billing = Instance::new("billing", "1.0.0", billing.set());
    old_billing.address = Some("10.0.0.9:8080".into());
    billing_db
        .driver()
        .fleet_register(&old_billing)
        .await
        .unwrap();
    let api_fleet = api_db.driver().fleet_list().await.unwrap();
    assert_eq!(api_fleet.len(), 1);
    assert_eq!(api_fleet[0].instance.instance_id, old_api.instance_id);
    let billing_fleet = billing_db.driver().fleet_list().await.unwrap();
    assert_eq!(billing_fleet.len(), 1);
    assert_eq!(
        billing_fleet[0].instance.address.as_deref(),
        Some("10.0.0.9:8080")
    );

    // billing's contract migration waits on billing's instance only …
    let billing2 = migrator(set(&[
        ("0001_invoices.sql", BILLING_1),
        ("0002_drop_total.sql", BILLING_2),
    ]));
    let report = billing2.up(&mut billing_db).await.unwrap();
    let held = report
        .held_back
        .expect("billing's own instance holds it back");
    assert!(
        held.reason.contains(&old_billing.instance_id),
        "{}",
        held.reason
    );
    assert!(
        !held.reason.contains(&old_api.instance_id),
        "{}",
        held.reason
    );
    // … and once it departs, api's live instance does not hold it back.
    billing_db
        .driver()
        .fleet_depart(&old_billing.instance_id)
        .await
        .unwrap();
    let report = billing2.up(&mut billing_db).await.unwrap();
    assert!(report.held_back.is_none(), "{report:?}");
    assert_eq!(report.ran.len(), 1);
    // api's contract migration is still held back by its own instance.
    let api2 = migrator(set(&[
        ("0001_api_users.sql", API_1),
        ("0002_drop_name.sql", API_2),
    ]));
    let report = api2.up(&mut api_db).await.unwrap();
    assert!(report.held_back.is_some(), "{report:?}");
    assert_eq!(api_db.history().await.unwrap().len(), 1);
    assert_eq!(billing_db.history().await.unwrap().len(), 2);
}

/// Service A's runner lock does not delay service B; a second runner of A
/// waits for it, and gives up after the runner lock timeout.
async fn one_runner_lock_per_service(b: Backend) {
    let t = Target::new(b);
    let mut holder = t.open("api").await;
    assert!(holder.driver().try_lock().await.unwrap());

    let billing = migrator(set(&[("0001_invoices.sql", BILLING_1)]));
    let mut billing_db = t.open("billing").await;
    let started = Instant::now();
    assert_eq!(billing.up(&mut billing_db).await.unwrap().ran.len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "billing waited {:?} for api's lock",
        started.elapsed()
    );

    let api = Migrator::new(set(&[("0001_api_users.sql", API_1)])).with_settings(Settings {
        runner_lock_timeout: Duration::from_millis(300),
        ..Settings::default()
    });
    let mut api_db = t.open("api").await;
    let started = Instant::now();
    match api.up(&mut api_db).await {
        Err(Error::Db(e)) => {
            assert_eq!(e.kind, FailureKind::LockTimeout, "{e}");
        }
        other => panic!("a second api runner should time out: {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(api_db.history().await.unwrap().is_empty());

    holder.driver().unlock().await.unwrap();
    assert_eq!(api.up(&mut api_db).await.unwrap().ran.len(), 1);
}

/// A database a newer capstan laid out is refused, by reads and by `up`.
async fn newer_layout_is_refused(b: Backend) {
    let t = Target::new(b);
    let m = migrator(set(&[("0001_invoices.sql", BILLING_1)]));
    let mut db = t.open(DEFAULT_SERVICE).await;
    m.up(&mut db).await.unwrap();
    let bump = format!(
        "UPDATE {} SET value = '{}' WHERE key = 'schema_version'",
        t.table("meta"),
        LAYOUT + 1
    );
    match b {
        Backend::Postgres => {
            capstan_testkit::psql(&t.url, &bump);
        }
        Backend::Sqlite => {
            rusqlite::Connection::open(&t.sqlite)
                .unwrap()
                .execute_batch(&bump)
                .unwrap();
        }
    }
    let mut db = t.open(DEFAULT_SERVICE).await;
    let err = m.status(&mut db).await.unwrap_err().to_string();
    assert!(err.contains(&format!("layout {}", LAYOUT + 1)), "{err}");
    let err = m.up(&mut db).await.unwrap_err().to_string();
    assert!(err.contains("newer capstan"), "{err}");
    assert_eq!(
        t.query(&format!("SELECT count(*) FROM {}", t.table("migrations"))),
        ["1"]
    );
}

backends!(
    async concurrent_upgrade_by_two_services,
    two_services_side_by_side,
    one_runner_lock_per_service,
    newer_layout_is_refused
);

/// `up` of a declared service records it in the database's registry, read
/// back as `capstan_service::Service` values.
async fn up_registers_the_declared_service(b: Backend) {
    let t = Target::new(b);
    let services = capstan_service::Services::parse(
        "[[service]]\nname = \"users\"\nowns = [\"public.api_users\"]\n\n[[service]]\nname = \"billing\"\nowns = [\"public.invoices\"]\ndepends_on = [{ service = \"users\", hard = false }]\n",
        Path::new("capstan.toml"),
    )
    .unwrap();
    let billing = services.get("billing").unwrap().clone();
    let mut db = t.open("billing").await;
    assert!(db.services().await.unwrap().is_empty());
    migrator(set(&[("0001_invoices.sql", BILLING_1)]))
        .with_service(billing.clone())
        .up(&mut db)
        .await
        .unwrap();
    let users = services.get("users").unwrap().clone();
    let mut users_db = t.open("users").await;
    migrator(set(&[("0001_api_users.sql", API_1)]))
        .with_service(users.clone())
        .up(&mut users_db)
        .await
        .unwrap();
    let registered = t.open(DEFAULT_SERVICE).await.services().await.unwrap();
    assert_eq!(registered.len(), 2);
    assert_eq!(registered[0].name, "billing");
    assert_eq!(registered[0].owns, billing.owns);
    assert_eq!(registered[0].depends_on, billing.depends_on);
    assert_eq!(registered[1].name, "users");
    assert_eq!(registered[1].owns, users.owns);
}

backends!(async up_registers_the_declared_service);
