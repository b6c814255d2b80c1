//! End-to-end: the real chirpy binaries against a real Postgres. Each test
//! gets its own database on the server named by `CAPSTAN_TEST_PG` (the test
//! script starts it); the outage test starts a cluster of its own to stop.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const V1: &str = env!("CARGO_BIN_EXE_chirpy-v1");
const V2: &str = env!("CARGO_BIN_EXE_chirpy-v2");
const V3: &str = env!("CARGO_BIN_EXE_chirpy-v3");
const CAPSTAN_PROBE_TIMEOUT: Duration = Duration::from_secs(20);

use capstan_testkit::{free_port, psql, TestDb};

/// A fresh database for one test, dropped at the end.
fn fresh_db(tag: &str) -> TestDb {
    TestDb::new(&format!("chirpy_{tag}"))
}

fn migrate(bin: &str, url: &str, args: &[&str]) -> Output {
    Command::new(bin)
        .arg("migrate")
        .args(args)
        .env("DATABASE_URL", url)
        .output()
        .expect("run migrate")
}

/// A running chirpy instance; killed on drop if still running.
struct Chirpy {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Chirpy {
    fn start(bin: &str, url: &str, env: &[(&str, &str)]) -> Chirpy {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr.log");
        let port = free_port();
        let child = Command::new(bin)
            .env("DATABASE_URL", url)
            .env("CHIRPY_ADDR", format!("127.0.0.1:{port}"))
            .env("CHIRPY_DRAIN", "1s")
            .env("CHIRPY_FLEET_HEARTBEAT", "300ms")
            .env("CHIRPY_DB_CHECK_INTERVAL", "200ms")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start chirpy");
        Chirpy {
            child: Some(child),
            port,
            log,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `path` until it answers `status`, within `limit`; returns how long it took.
    async fn wait_for(&self, path: &str, status: u16, limit: Duration) -> Duration {
        let started = Instant::now();
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client
                .get(self.url(path))
                .timeout(Duration::from_secs(1))
                .send()
                .await
            {
                if r.status().as_u16() == status {
                    return started.elapsed();
                }
            }
            assert!(
                started.elapsed() < limit,
                "{path} did not answer {status} within {limit:?}; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn ready(&self) {
        self.wait_for("/readyz", 200, CAPSTAN_PROBE_TIMEOUT).await;
    }

    fn sigterm(&self) {
        let pid = self.child.as_ref().unwrap().id();
        let ok = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit (bounded) and returns its exit code.
    fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let mut child = self.child.take().unwrap();
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                panic!(
                    "chirpy did not exit within {limit:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Chirpy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn post(url: String, body: serde_json::Value) -> serde_json::Value {
    let r = reqwest::Client::new()
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "POST {url}");
    r.json().await.unwrap()
}

async fn get_json(url: String) -> serde_json::Value {
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "GET {url}");
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_on_a_v1_schema_is_refused_or_waits_then_becomes_ready_after_migrate_up() {
    let db = fresh_db("gate");
    assert!(migrate(V1, &db.url, &["up"]).status.success());

    // Refuse mode (the default): exits non-zero naming the missing migration.
    let mut refused = Chirpy::start(V2, &db.url, &[]);
    let code = refused.wait_exit(Duration::from_secs(15));
    assert_ne!(code, Some(0));
    let err = refused.stderr();
    assert!(err.contains("0002_add_users_handle"), "{err}");
    assert!(err.contains("chirpy-v2 migrate up"), "{err}");

    // Wait mode: started but not ready, saying why.
    let waiting = Chirpy::start(V2, &db.url, &[("CHIRPY_GATE", "wait")]);
    waiting.wait_for("/livez", 200, CAPSTAN_PROBE_TIMEOUT).await;
    let r = reqwest::get(waiting.url("/startupz")).await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/health+json"
    );
    let body = r.text().await.unwrap();
    assert!(body.contains("0002_add_users_handle"), "{body}");
    assert_eq!(
        reqwest::get(waiting.url("/readyz"))
            .await
            .unwrap()
            .status()
            .as_u16(),
        503
    );

    let out = migrate(V2, &db.url, &["up"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    waiting.ready().await;
    waiting
        .wait_for("/startupz", 200, CAPSTAN_PROBE_TIMEOUT)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_keeps_serving_on_the_v2_schema_and_restarts_there() {
    let db = fresh_db("rollback");
    assert!(migrate(V1, &db.url, &["up"]).status.success());
    let v1 = Chirpy::start(V1, &db.url, &[]);
    v1.ready().await;
    let ana = post(v1.url("/users"), serde_json::json!({"name": "ana"})).await;
    let id = ana["id"].as_i64().unwrap();
    post(
        v1.url(&format!("/users/{id}/chirps")),
        serde_json::json!({"body": "before"}),
    )
    .await;

    // The expand migration lands while v1 serves.
    assert!(migrate(V2, &db.url, &["up"]).status.success());
    let bo = post(v1.url("/users"), serde_json::json!({"name": "bo"})).await;
    let bo_id = bo["id"].as_i64().unwrap();
    post(
        v1.url(&format!("/users/{bo_id}/chirps")),
        serde_json::json!({"body": "during"}),
    )
    .await;
    let chirps = get_json(v1.url(&format!("/users/{id}/chirps"))).await;
    assert_eq!(chirps[0]["author"], "ana");

    // v2 sees what v1 wrote during the rollout (handle falls back to name).
    let v2 = Chirpy::start(V2, &db.url, &[]);
    v2.ready().await;
    let seen = get_json(v2.url(&format!("/users/{bo_id}/chirps"))).await;
    assert_eq!(seen[0]["author"], "bo");
    let cy = post(v2.url("/users"), serde_json::json!({"name": "cy"})).await;
    // ...and v1 sees what v2 wrote (v2 writes both columns).
    let cy_id = cy["id"].as_i64().unwrap();
    assert_eq!(
        get_json(v1.url(&format!("/users/{cy_id}"))).await["name"],
        "cy"
    );

    // Rolling the binary back: a fresh v1 passes the gate on the v2 schema.
    drop(v1);
    let v1_again = Chirpy::start(V1, &db.url, &[]);
    v1_again.ready().await;
    assert_eq!(
        get_json(v1_again.url(&format!("/users/{cy_id}"))).await["name"],
        "cy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_archives_users_name_and_restore_lets_v2_run_again() {
    let db = fresh_db("archive");
    assert!(migrate(V2, &db.url, &["up"]).status.success());
    let v2 = Chirpy::start(V2, &db.url, &[]);
    v2.ready().await;
    let mut users = Vec::new();
    for name in ["ana", "bo", "cy", "dee"] {
        let u = post(v2.url("/users"), serde_json::json!({"name": name})).await;
        users.push((u["id"].as_i64().unwrap(), name));
    }
    let before = psql(&db.url, "SELECT id, name FROM users ORDER BY id");
    // A clean shutdown leaves the fleet, so the contract may run.
    let mut v2 = v2;
    v2.sigterm();
    assert_eq!(v2.wait_exit(Duration::from_secs(30)), Some(0));

    // v3's contract migration drops users.name, archiving it first.
    let up = migrate(V3, &db.url, &["up"]);
    let log = String::from_utf8_lossy(&up.stderr).into_owned();
    assert!(
        up.status.success(),
        "{log}{}",
        String::from_utf8_lossy(&up.stdout)
    );
    assert!(
        log.contains("archived users.name before drop-column: 4 rows"),
        "{log}"
    );
    let v3 = Chirpy::start(V3, &db.url, &[]);
    v3.ready().await;
    let eve = post(v3.url("/users"), serde_json::json!({"name": "eve"})).await;
    let mut v3 = v3;
    v3.sigterm();
    assert_eq!(v3.wait_exit(Duration::from_secs(30)), Some(0));

    // Roll the schema back to 2.0.0's, and put the archived names back.
    assert!(migrate(V3, &db.url, &["down", "--to", "2"])
        .status
        .success());
    let out = Command::new(V3)
        .args(["archive", "restore", "1", "--json"])
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["object"], "users.name");
    assert_eq!(
        report["rows_restored"], 4,
        "every archived value is written back"
    );
    assert_eq!(report["rows_not_restored"], 0);
    let after = psql(
        &db.url,
        &format!(
            "SELECT id, name FROM users WHERE id <> {} ORDER BY id",
            eve["id"]
        ),
    );
    assert_eq!(after, before, "row by row, every name is back");

    // 2.0.0 passes the gate on the restored schema and reads the names.
    let v2_again = Chirpy::start(V2, &db.url, &[]);
    v2_again.ready().await;
    for (id, name) in &users {
        assert_eq!(
            get_json(v2_again.url(&format!("/users/{id}"))).await["name"],
            *name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_waits_for_live_v1_then_v1_is_refused_naming_the_release() {
    let db = fresh_db("contract");
    assert!(migrate(V2, &db.url, &["up"]).status.success());
    let mut v1 = Chirpy::start(V1, &db.url, &[]);
    v1.ready().await;
    // Wait for the registration to be visible.
    let started = Instant::now();
    while psql(
        &db.url,
        "SELECT count(*) FROM capstan.fleet WHERE departed_at IS NULL AND version = '1.0.0'",
    ) != "1"
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "v1 never registered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let instance = psql(
        &db.url,
        "SELECT instance_id FROM capstan.fleet WHERE version = '1.0.0'",
    );

    // v3 carries the contract migration and starts before it runs: the fleet
    // only lets it run once every live instance embeds it.
    let early_v3 = Chirpy::start(V3, &db.url, &[]);
    early_v3.ready().await;
    let dee = post(early_v3.url("/users"), serde_json::json!({"name": "dee"})).await;
    let dee_id = dee["id"].as_i64().unwrap();
    drop(early_v3);
    let out = migrate(V3, &db.url, &["up"]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("0003_drop_users_name"), "{text}");
    assert!(
        text.contains(&instance),
        "names the v1 instance {instance}: {text}"
    );
    assert_eq!(
        psql(
            &db.url,
            "SELECT count(*) FROM capstan.migrations WHERE version = 3"
        ),
        "0"
    );

    v1.sigterm();
    assert_eq!(v1.wait_exit(Duration::from_secs(30)), Some(0));
    let out = migrate(V3, &db.url, &["up"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut late = Chirpy::start(V1, &db.url, &[]);
    assert_ne!(late.wait_exit(Duration::from_secs(15)), Some(0));
    let err = late.stderr();
    assert!(
        err.contains("older than contract migration 0003_drop_users_name"),
        "{err}"
    );
    assert!(err.contains("deploy chirpy 3.0.0 or later"), "{err}");

    let v3 = Chirpy::start(V3, &db.url, &[]);
    v3.ready().await;
    assert_eq!(
        get_json(v3.url(&format!("/users/{dee_id}"))).await["name"],
        "dee"
    );
}

/// A Postgres cluster of this test's own, so it can be stopped.
struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
}

fn pg_bin() -> PathBuf {
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
    {
        let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !p.is_empty() {
            return PathBuf::from(p).parent().unwrap().to_path_buf();
        }
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("Postgres server binaries (initdb) are not installed; run scripts/test.sh")
        .map(|e| e.unwrap().path().join("bin"))
        .collect();
    dirs.sort();
    dirs.pop()
        .expect("a Postgres version under /usr/lib/postgresql")
}

fn run_pg(bin: &std::path::Path, args: &[&str]) -> Output {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let tool = bin.join(args[0]);
    let mut cmd = if is_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&tool);
        c
    } else {
        Command::new(&tool)
    };
    cmd.args(&args[1..]).output().expect("run a Postgres tool")
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("chirpy-pg")
            .tempdir()
            .unwrap();
        let _ = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(dir.path())
            .status();
        let bin = pg_bin();
        let data = dir.path().join("data");
        let out = run_pg(
            &bin,
            &[
                "initdb",
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let c = Cluster {
            port: free_port(),
            dir,
            bin,
        };
        c.up();
        c
    }

    fn up(&self) {
        let data = self.dir.path().join("data");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        let out = run_pg(
            &self.bin,
            &[
                "pg_ctl",
                "-D",
                data.to_str().unwrap(),
                "-o",
                &opts,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn down(&self) {
        let data = self.dir.path().join("data");
        let out = run_pg(
            &self.bin,
            &[
                "pg_ctl",
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = run_pg(
            &self.bin,
            &[
                "pg_ctl",
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "stop",
            ],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_a_private_outage_and_shared_outages_only_warn() {
    let cluster = Cluster::start();
    assert!(migrate(V3, &cluster.url(), &["up"]).status.success());
    let shared = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let shared_addr = shared.local_addr().unwrap().to_string();
    let chirpy = Chirpy::start(
        V3,
        &cluster.url(),
        &[("CHIRPY_SHARED_DEP", shared_addr.as_str())],
    );
    chirpy.ready().await;

    // A shared dependency down: warn, still ready (200).
    drop(shared);
    let started = Instant::now();
    loop {
        let r = reqwest::get(chirpy.url("/readyz")).await.unwrap();
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            status, 200,
            "a shared outage must not fail readiness: {body}"
        );
        if body["status"] == "warn" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never warned: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Postgres down: readiness fails within the configured time (200 ms interval,
    // 1 s timeout, 2 failures), liveness stays pass.
    cluster.down();
    let took = chirpy
        .wait_for("/readyz", 503, Duration::from_secs(10))
        .await;
    assert!(
        took < Duration::from_secs(5),
        "readiness took {took:?} to fail"
    );
    assert_eq!(
        reqwest::get(chirpy.url("/livez"))
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );

    cluster.up();
    chirpy
        .wait_for("/readyz", 200, Duration::from_secs(15))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drops_no_request_and_leaves_the_fleet() {
    let db = fresh_db("drain");
    assert!(migrate(V3, &db.url, &["up"]).status.success());
    let mut chirpy = Chirpy::start(V3, &db.url, &[]);
    chirpy.ready().await;
    let user = post(chirpy.url("/users"), serde_json::json!({"name": "ana"})).await;
    let list = chirpy.url(&format!("/users/{}/chirps", user["id"]));
    let ready_url = chirpy.url("/readyz");

    // A load balancer on loopback: four clients send requests while the
    // instance is in rotation; a health checker takes it out when /readyz fails.
    let in_rotation = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let checker = {
        let in_rotation = in_rotation.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            while in_rotation.load(std::sync::atomic::Ordering::SeqCst) {
                match client.get(&ready_url).send().await {
                    Ok(r) if r.status().as_u16() == 200 => {}
                    _ => in_rotation.store(false, std::sync::atomic::Ordering::SeqCst),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut clients = Vec::new();
    for _ in 0..4 {
        let in_rotation = in_rotation.clone();
        let list = list.clone();
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let (mut ok, mut failed) = (0u32, Vec::new());
            let deadline = Instant::now() + Duration::from_secs(30);
            while in_rotation.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline
            {
                match client.get(&list).send().await {
                    Ok(r) if r.status().is_success() => ok += 1,
                    Ok(r) => failed.push(format!("status {}", r.status())),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    chirpy.sigterm();
    let mut total = 0;
    for c in clients {
        let (ok, failed) = c.await.unwrap();
        assert!(
            failed.is_empty(),
            "failed requests during shutdown: {failed:?}"
        );
        total += ok;
    }
    checker.await.unwrap();
    assert!(total > 50, "the load was real: {total} requests");
    assert_eq!(
        chirpy.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        chirpy.stderr()
    );
    assert_eq!(
        psql(
            &db.url,
            "SELECT count(*) FROM capstan.fleet WHERE departed_at IS NULL"
        ),
        "0",
        "the instance left the fleet"
    );
}

/// Advice in `migrate`'s errors and reports names the binary that was run
/// (`chirpy-v2 migrate repair`), not `capstan`; advice to edit the migrations,
/// which only the capstan CLI does in the source tree, keeps `capstan`.
#[test]
fn migrate_advice_names_the_binary_that_was_run() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chirpy.db");
    let url = format!("sqlite://{}", file.display());
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let out = migrate(V1, &url, &["up"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // As a no-transaction migration that failed part-way would leave it.
    let db = rusqlite::Connection::open(&file).unwrap();
    db.execute(
        "UPDATE capstan_migrations SET state = 'dirty', error = 'statement 2 failed' WHERE version = 1",
        [],
    )
    .unwrap();
    let out = migrate(V2, &url, &["up"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("then run `chirpy-v2 migrate repair`"), "{err}");
    assert!(!err.contains("capstan migrate"), "{err}");
    let out = migrate(V2, &url, &["up", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("`chirpy-v2 migrate repair`"), "{v}");
    let out = migrate(V2, &url, &["status"]);
    assert!(
        text(&out.stdout).contains("see `chirpy-v2 migrate repair`"),
        "{}",
        text(&out.stdout)
    );
    let out = migrate(V2, &url, &["repair"]);
    let explained = text(&out.stdout);
    assert!(
        explained.contains("run `chirpy-v2 migrate repair --mark-applied 1`")
            && explained.contains("run `chirpy-v2 migrate repair --mark-rolled-back 1`")
            && !explained.contains("capstan"),
        "{explained}"
    );
    let out = migrate(V2, &url, &["repair", "--mark-applied", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = migrate(V2, &url, &["up"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Drift: 0001's recorded up section is not the one this binary embeds.
    db.execute(
        "UPDATE capstan_migrations SET up_checksum = (SELECT up_checksum FROM capstan_migrations WHERE version = 2) WHERE version = 1",
        [],
    )
    .unwrap();
    let out = migrate(V2, &url, &["up"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("`capstan migrate hash --accept"), "{err}");
    assert!(!err.contains("chirpy-v2 migrate hash"), "{err}");
}
