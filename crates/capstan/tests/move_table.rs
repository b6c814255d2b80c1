//! `capstan plan-move`: a table moves from the monolith to a service while
//! both serve traffic. Two services share the database, each with its own
//! directory, history and fleet: `monolith` (chirpy 2.0.0, which uses
//! `users`) and `users`. The same binary with
//! `CHIRPY_USERS_TABLE=users.users` is the monolith's new release. Every
//! request of a steady load on both must succeed, and every write must be
//! visible from both sides while both run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capstan_testkit::chirpy::{bin_dir, Chirpy};
use common::{assert_code, psql, stderr, stdout, Backend, Project};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The two services: the monolith owns `public`, `users` owns `users`.
const SERVICES: &str = r#"
[[service]]
name = "monolith"
dir = "migrations"
owns = ["public"]

[[service]]
name = "users"
dir = "services/users/migrations"
owns = ["users"]
"#;

/// The project's capstan.toml, declaring the services.
fn services_file(p: &Project) -> PathBuf {
    let path = p.dir.path().join("capstan.toml");
    std::fs::write(&path, SERVICES).unwrap();
    path
}

/// `capstan ARGS` in the project's directory (its capstan.toml), with
/// nothing else set: each service's directory comes from capstan.toml.
fn capstan(p: &Project, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(args)
        .current_dir(p.dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("CAPSTAN_SERVICE")
        .output()
        .expect("run capstan")
}

fn plan_move(p: &Project, args: &[&str]) -> Output {
    services_file(p);
    let mut all = vec!["plan-move"];
    all.extend_from_slice(args);
    capstan(p, &all)
}

/// `migrate up` of one service.
fn up(p: &Project, service: &str) -> Output {
    capstan(
        p,
        &["migrate", "up", "--service", service, "--database", &p.url],
    )
}

/// The versions a service's history records.
fn recorded(p: &Project, service: &str) -> String {
    psql(
        &p.url,
        &format!("SELECT string_agg(version::text, ',' ORDER BY version) FROM capstan.migrations WHERE service = '{service}'"),
    )
}

/// A project holding chirpy's first two migrations as the monolith's,
/// applied by chirpy 2.0.0 for service `monolith`.
fn monolith() -> Project {
    let p = Project::new(Backend::Postgres);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/chirpy/migrations");
    for name in [
        "0001_create_users_and_chirps.sql",
        "0002_add_users_handle.sql",
    ] {
        std::fs::copy(src.join(name), p.migrations().join(name)).unwrap();
    }
    p.hash();
    let out = Command::new(bin_dir().join("chirpy-v2"))
        .args(["migrate", "up"])
        .env("DATABASE_URL", &p.url)
        .env("CAPSTAN_SERVICE", "monolith")
        .output()
        .unwrap();
    assert_code(&out, 0);
    services_file(&p);
    p
}

/// The files of a directory, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// One HTTP/1.1 request (a connection of its own, bounded to 5 s):
/// the status and the body.
async fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let body = body.unwrap_or("");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nhost: chirpy\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.ok()?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text.get(9..12)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((status, body))
    };
    match tokio::time::timeout(Duration::from_secs(5), exchange).await {
        Ok(Some(answer)) => answer,
        Ok(None) => (0, "no answer".into()),
        Err(_) => (0, "timed out".into()),
    }
}

/// What a side's load did.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failures: Mutex<Vec<String>>,
    /// Users it created: (id, name).
    users: Mutex<Vec<(i64, String)>>,
}

impl Tally {
    fn check(&self, what: &str, got: (u16, String), want: u16) -> Option<serde_json::Value> {
        if got.0 == want {
            self.ok.fetch_add(1, Ordering::Relaxed);
            serde_json::from_str(&got.1).ok()
        } else {
            self.failures
                .lock()
                .unwrap()
                .push(format!("{what}: {} {}", got.0, got.1));
            None
        }
    }
}

/// A steady load on one instance until `stop`: create a user, read it,
/// chirp, list the chirps; about a hundred requests a second.
fn load(
    addr: String,
    side: &'static str,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let name = format!("{side}{n}");
            let created = http(
                &addr,
                "POST",
                "/users",
                Some(&format!("{{\"name\":\"{name}\"}}")),
            )
            .await;
            let Some(user) = tally.check("POST /users", created, 201) else {
                continue;
            };
            let id = user["id"].as_i64().unwrap();
            tally.users.lock().unwrap().push((id, name.clone()));
            let read = http(&addr, "GET", &format!("/users/{id}"), None).await;
            if let Some(u) = tally.check("GET /users/{id}", read, 200) {
                if u["name"] != name.as_str() {
                    tally
                        .failures
                        .lock()
                        .unwrap()
                        .push(format!("user {id} reads {u}"));
                }
            }
            let chirp = http(
                &addr,
                "POST",
                &format!("/users/{id}/chirps"),
                Some("{\"body\":\"hi\"}"),
            )
            .await;
            tally.check("POST /users/{id}/chirps", chirp, 201);
            let list = http(&addr, "GET", &format!("/users/{id}/chirps"), None).await;
            if let Some(l) = tally.check("GET /users/{id}/chirps", list, 200) {
                if l.as_array().map(Vec::len) != Some(1) {
                    tally
                        .failures
                        .lock()
                        .unwrap()
                        .push(format!("chirps of {id}: {l}"));
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

/// Reads every user `from` created (the last `n`) through `on`.
async fn cross_read(on: &str, from: &Tally, n: usize, tally: &Tally) -> usize {
    let users: Vec<(i64, String)> = {
        let u = from.users.lock().unwrap();
        u.iter().rev().take(n).cloned().collect()
    };
    for (id, name) in &users {
        let got = http(on, "GET", &format!("/users/{id}"), None).await;
        if let Some(u) = tally.check("cross GET /users/{id}", got, 200) {
            assert_eq!(u["name"], name.as_str(), "user {id} read across");
        }
    }
    users.len()
}

/// Waits until `tally` has counted `more` successful requests beyond now
/// (bounded), so each phase runs under load.
async fn under_load(tally: &Tally, more: u64) {
    let start = tally.ok.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(30);
    while tally.ok.load(Ordering::Relaxed) < start + more {
        assert!(Instant::now() < deadline, "the load made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_moves_to_a_service_under_load_without_a_failed_request() {
    let p = monolith();
    let logs = p.dir.path();
    let mut old = Chirpy::start_on(2, &p.url, logs, &[("CAPSTAN_SERVICE", "monolith")]).await;
    let stop_old = Arc::new(AtomicBool::new(false));
    let stop_new = Arc::new(AtomicBool::new(false));
    let (old_tally, new_tally) = (Arc::new(Tally::default()), Arc::new(Tally::default()));
    let old_load = load(old.addr.clone(), "old", stop_old.clone(), old_tally.clone());
    under_load(&old_tally, 40).await;

    // Plan the move against the live database.
    let out = plan_move(&p, &["public.users", "--to", "users", "--database", &p.url]);
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("migrations/0004_drop_old_name_of_users.sql (monolith, contract)"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("foreign key of chirps references public.users"),
        "{}",
        stderr(&out)
    );
    let users_dir = p.dir.path().join("services/users/migrations");
    assert_eq!(
        listing(&users_dir),
        ["0001_create_schema_users.sql", "capstan.sum"]
    );

    // Step 1 (the users service, expand), in its own history.
    let out = up(&p, "users");
    assert_code(&out, 0);
    assert_eq!(recorded(&p, "users"), "1");
    under_load(&old_tally, 20).await;

    // Step 2 (the monolith, expand) runs; step 4 (contract) is held: the
    // running monolith does not embed it.
    let out = up(&p, "monolith");
    assert_code(&out, 6);
    assert_eq!(recorded(&p, "monolith"), "1,2,3");
    assert_eq!(
        psql(
            &p.url,
            "SELECT relkind FROM pg_class WHERE oid = 'public.users'::regclass"
        ),
        "v"
    );
    assert_eq!(
        psql(
            &p.url,
            "SELECT relkind FROM pg_class WHERE oid = 'users.users'::regclass"
        ),
        "r"
    );
    under_load(&old_tally, 40).await;

    // Step 3: the new binary uses users.users and embeds the whole directory.
    let migrations = p.migrations();
    let new = Chirpy::start_on(
        2,
        &p.url,
        logs,
        &[
            ("CHIRPY_USERS_TABLE", "users.users"),
            ("CHIRPY_MIGRATIONS_DIR", migrations.to_str().unwrap()),
            ("CAPSTAN_SERVICE", "monolith"),
        ],
    )
    .await;
    let new_load = load(new.addr.clone(), "new", stop_new.clone(), new_tally.clone());
    under_load(&new_tally, 40).await;
    under_load(&old_tally, 40).await;
    // Every write is visible from both sides while both run.
    let checks = Tally::default();
    assert_eq!(cross_read(&new.addr, &old_tally, 10, &checks).await, 10);
    assert_eq!(cross_read(&old.addr, &new_tally, 10, &checks).await, 10);
    assert_eq!(
        checks.failures.lock().unwrap().clone(),
        Vec::<String>::new()
    );

    // The old monolith leaves (its traffic first, as a load balancer drains it).
    stop_old.store(true, Ordering::Relaxed);
    old_load.await.unwrap();
    assert!(
        old.terminate(),
        "the old monolith exits cleanly: {}",
        old.log()
    );

    // Step 4: nothing lacks the contract migration any more.
    let out = up(&p, "monolith");
    assert_code(&out, 0);
    assert_eq!(recorded(&p, "monolith"), "1,2,3,4");
    assert_eq!(recorded(&p, "users"), "1");
    assert_eq!(
        psql(&p.url, "SELECT to_regclass('public.users') IS NULL"),
        "t"
    );
    under_load(&new_tally, 40).await;
    stop_new.store(true, Ordering::Relaxed);
    new_load.await.unwrap();

    let failures: Vec<String> = [&old_tally, &new_tally]
        .iter()
        .flat_map(|t| t.failures.lock().unwrap().clone())
        .collect();
    assert_eq!(failures, Vec::<String>::new(), "failed requests");
    let (old_ok, new_ok) = (
        old_tally.ok.load(Ordering::Relaxed),
        new_tally.ok.load(Ordering::Relaxed),
    );
    eprintln!(
        "requests: {old_ok} to the monolith, {new_ok} to the new binary, {} cross reads, 0 failed",
        checks.ok.load(Ordering::Relaxed)
    );
    // Every user either side created is in the one table.
    let created = old_tally.users.lock().unwrap().len() + new_tally.users.lock().unwrap().len();
    assert_eq!(
        psql(&p.url, "SELECT count(*) FROM users.users"),
        created.to_string()
    );
    drop(new);
}

#[test]
fn plan_move_refuses_bad_input_and_writes_nothing() {
    let p = Project::new(Backend::Postgres);
    let refused = |args: &[&str], why: &str| {
        let out = plan_move(&p, args);
        assert_code(&out, 3);
        assert!(stderr(&out).contains(why), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("nothing was written"),
            "{}",
            stderr(&out)
        );
        assert_eq!(listing(&p.migrations()), Vec::<String>::new());
        assert!(!p.dir.path().join("services").exists());
    };
    refused(
        &["public.users", "--to", "search"],
        "no service named `search`",
    );
    refused(
        &["users.users", "--to", "users"],
        "owned by service `users` already",
    );
    refused(
        &["elsewhere.users", "--to", "users"],
        "elsewhere.users is owned by no service",
    );
    refused(
        &["public.users", "--to", "users", "--database", &p.url],
        "public.users does not exist in",
    );
    let sqlite = format!("sqlite://{}", p.dir.path().join("app.db").display());
    refused(
        &["public.users", "--to", "users", "--database", &sqlite],
        "plan-move needs Postgres",
    );
    psql(
        &p.url,
        "CREATE TABLE parts (id int) PARTITION BY RANGE (id)",
    );
    refused(
        &["parts", "--to", "users", "--database", &p.url],
        "it is partitioned",
    );
    psql(&p.url, "CREATE SCHEMA users; CREATE TABLE public.taken (id int); CREATE TABLE users.taken (id int)");
    refused(
        &["taken", "--to", "users", "--database", &p.url],
        "users.taken exists already",
    );
    // --dry-run prints the files and writes none.
    let out = plan_move(
        &p,
        &["public.taken", "--to", "users", "--dry-run", "--json"],
    );
    assert_code(&out, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["written"], false);
    assert_eq!(v["files"][2]["phase"], "contract");
    assert!(!p.dir.path().join("services").exists());
}
