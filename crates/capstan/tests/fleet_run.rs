//! `capstan fleet run | join | leave`: the fleet guard for services in any
//! language. A Python HTTP server run under `capstan fleet run` holds a
//! contract migration back while it runs; once it stops, the migration goes
//! through.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{assert_code, stderr, stdout, wait_until, Backend, Project};

const CREATE_USERS: &str = "-- capstan:up\nCREATE TABLE users (id bigint PRIMARY KEY, name text);\n-- capstan:down\nDROP TABLE users;\n";
const DROP_NAME: &str = "-- capstan:phase contract\n-- capstan:up\nALTER TABLE users DROP COLUMN name;\n-- capstan:down\nALTER TABLE users ADD COLUMN name text;\n";

/// `capstan ARGS` with the project's database, run in its directory; `args`
/// must place `--database`/`--dir` themselves (a child command follows `--`).
fn capstan(p: &Project, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_capstan"));
    c.args(args)
        .current_dir(p.dir.path())
        .env_remove("DATABASE_URL")
        .env("DATABASE_URL", &p.url);
    c
}

fn run(p: &Project, args: &[&str]) -> Output {
    capstan(p, args).output().expect("run capstan")
}

fn fleet(p: &Project) -> Vec<serde_json::Value> {
    let out = run(p, &["fleet", "--json"]);
    assert_code(&out, 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("fleet json");
    v["instances"].as_array().cloned().unwrap_or_default()
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn a_python_server_under_fleet_run_holds_a_contract_migration_until_it_stops() {
    let p = Project::new(Backend::Postgres);
    p.add("0001_create_users.sql", CREATE_USERS);
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    // The running release ships 0001 only.
    let old = p.dir.path().join("release-1");
    std::fs::create_dir(&old).unwrap();
    std::fs::copy(
        p.migrations().join("0001_create_users.sql"),
        old.join("0001_create_users.sql"),
    )
    .unwrap();
    let old_s = old.display().to_string();
    assert_code(&run(&p, &["migrate", "hash", "--dir", &old_s]), 0);
    p.add("0002_drop_name.sql", DROP_NAME);

    let port = capstan_testkit::free_port();
    let port_s = port.to_string();
    let mut guard = capstan(
        &p,
        &[
            "fleet",
            "run",
            "--app",
            "web",
            "--version",
            "1.0.0",
            "--dir",
            &old_s,
            "--address",
            &format!("127.0.0.1:{port}"),
            "--",
            "python3",
            "-m",
            "http.server",
            &port_s,
            "--bind",
            "127.0.0.1",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn capstan fleet run");
    wait_until(
        "the Python server to listen",
        Duration::from_secs(20),
        || {
            if let Some(status) = guard.try_wait().unwrap() {
                let mut err = String::new();
                std::io::Read::read_to_string(guard.stderr.as_mut().unwrap(), &mut err).unwrap();
                panic!("fleet run exited early ({status}): {err}");
            }
            port_open(port)
        },
    );
    let live: Vec<_> = fleet(&p)
        .into_iter()
        .filter(|i| i["live"] == true && i["app"] == "web")
        .collect();
    assert_eq!(live.len(), 1, "{live:?}");
    let id = live[0]["instance_id"].as_str().unwrap().to_string();
    assert!(id.starts_with(&format!("127.0.0.1:{port}-")), "{id}");
    assert_eq!(live[0]["versions"], serde_json::json!([1]));

    // Held back, naming the instance.
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 6);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains(&id), "{all}");
    assert!(p.has_column("users", "name"));

    // SIGTERM to the guard reaches the server; the guard leaves the fleet and
    // exits as the server did (killed by SIGTERM: 128 + 15).
    let killed = Command::new("kill")
        .args(["-TERM", &guard.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = guard.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "fleet run did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(guard.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(143), "{err}");
    assert!(!port_open(port), "the server is gone with its guard");
    let row = fleet(&p)
        .into_iter()
        .find(|i| i["instance_id"] == id.as_str())
        .expect("still listed");
    assert_eq!(row["live"], false);
    assert!(row["departed_at"].is_string(), "{row}");

    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 0);
    assert!(!p.has_column("users", "name"));
}

#[test]
fn fleet_run_returns_the_childs_exit_code_and_join_leave_work_for_scripts() {
    let p = Project::new(Backend::Sqlite);
    p.add("0001_create_users.sql", CREATE_USERS);
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    let dir = p.migrations().display().to_string();

    let out = run(
        &p,
        &[
            "fleet",
            "run",
            "--app",
            "job",
            "--version",
            "1",
            "--dir",
            &dir,
            "--",
            "sh",
            "-c",
            "exit 7",
        ],
    );
    assert_code(&out, 7);
    let out = run(
        &p,
        &[
            "fleet",
            "run",
            "--app",
            "job",
            "--version",
            "1",
            "--dir",
            &dir,
            "--",
            "sh",
            "-c",
            "kill -INT $$",
        ],
    );
    assert_code(&out, 130);
    let out = run(
        &p,
        &[
            "fleet",
            "run",
            "--app",
            "job",
            "--version",
            "1",
            "--dir",
            &dir,
            "--",
            "./no-such-program",
        ],
    );
    assert_code(&out, 127);
    assert!(
        fleet(&p).iter().all(|i| i["live"] == false),
        "every run departed"
    );

    // join prints the id; a later join with --id refreshes it; leave departs it.
    let out = run(
        &p,
        &[
            "fleet",
            "join",
            "--app",
            "cron",
            "--version",
            "2",
            "--dir",
            &dir,
        ],
    );
    assert_code(&out, 0);
    let id = stdout(&out).trim().to_string();
    assert!(!id.is_empty());
    let live = |p: &Project| {
        fleet(p)
            .into_iter()
            .any(|i| i["instance_id"] == id.as_str() && i["live"] == true)
    };
    assert!(live(&p));
    let out = run(
        &p,
        &[
            "fleet",
            "join",
            "--app",
            "cron",
            "--version",
            "2",
            "--dir",
            &dir,
            "--id",
            &id,
        ],
    );
    assert_code(&out, 0);
    assert_eq!(stdout(&out).trim(), id);
    assert_code(&run(&p, &["fleet", "leave", &id]), 0);
    assert!(!live(&p));
    let out = run(&p, &["fleet", "leave", "nobody-1-000000"]);
    assert_code(&out, 3);
    assert!(stderr(&out).contains("nobody-1-000000"), "{}", stderr(&out));

    // Without heartbeats a joined instance expires after [fleet] ttl.
    std::fs::write(p.dir.path().join("capstan.toml"), "[fleet]\nttl = \"1s\"\n").unwrap();
    let out = run(
        &p,
        &[
            "fleet",
            "join",
            "--app",
            "cron",
            "--version",
            "3",
            "--dir",
            &dir,
        ],
    );
    assert_code(&out, 0);
    let id = stdout(&out).trim().to_string();
    let expired = || {
        fleet(&p).into_iter().any(|i| {
            i["instance_id"] == id.as_str() && i["live"] == false && i["departed_at"].is_null()
        })
    };
    wait_until(
        "the joined instance to expire",
        Duration::from_secs(10),
        expired,
    );
}

#[test]
fn after_wait_times_out_the_advice_is_not_to_wait() {
    let p = Project::new(Backend::Sqlite);
    p.add("0001_create_users.sql", CREATE_USERS);
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    let dir = p.migrations().display().to_string();
    let out = run(
        &p,
        &[
            "fleet",
            "join",
            "--app",
            "web",
            "--version",
            "1",
            "--dir",
            &dir,
        ],
    );
    assert_code(&out, 0);
    p.add("0002_drop_name.sql", DROP_NAME);

    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 6);
    assert!(stdout(&out).contains("use --wait"), "{}", stdout(&out));

    let out = p.capstan(&["migrate", "up", "--wait", "--timeout", "300ms"]);
    assert_code(&out, 6);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!all.contains("use --wait"), "{all}");
    assert!(all.contains("after waiting 300ms"), "{all}");
    assert!(all.contains("--timeout"), "{all}");
}
