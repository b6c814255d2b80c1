//! capstan through PgBouncer (the distribution's package, started by each
//! test on a free port in front of the test server): a transaction-mode pool
//! is refused at once and leaks no lock into the pool; a session-mode pool
//! works with concurrent runners, and a runner killed there leaves no lock.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{assert_code, stderr, wait_until, Backend, Project};

/// A PgBouncer in front of the test server, stopped on drop.
struct Bouncer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

fn pgbouncer_binary() -> PathBuf {
    ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("pgbouncer is not installed: these tests need the distribution's pgbouncer package (scripts/test.sh installs it)")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The host and port of the test server.
fn server() -> (String, String) {
    let admin = common::pg_admin_url();
    let after_at = admin.rsplit_once('@').map_or(admin.as_str(), |(_, a)| a);
    let hostport = after_at.split('/').next().expect("host:port");
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "5432"));
    (host.to_string(), port.to_string())
}

impl Bouncer {
    fn start(mode: &str) -> Bouncer {
        let bin = pgbouncer_binary();
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let port = capstan_testkit::free_port();
        let (host, server_port) = server();
        let users = dir.path().join("users.txt");
        std::fs::write(&users, "\"postgres\" \"\"\n").expect("users");
        let ini = dir.path().join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n* = host={host} port={server_port}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
                 unix_socket_dir =\nauth_type = trust\nauth_file = {}\npool_mode = {mode}\nmax_client_conn = 400\n\
                 default_pool_size = 40\nserver_reset_query = DISCARD ALL\nignore_startup_parameters = extra_float_digits,options\n",
                users.display()
            ),
        )
        .expect("ini");
        for f in [&users, &ini] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        let log = std::fs::File::create(dir.path().join("pgbouncer.log")).expect("log");
        let mut cmd = Command::new(bin);
        if is_root() {
            // PgBouncer refuses to run as root.
            cmd.args(["-u", "postgres"]);
        }
        let child = cmd
            .arg(&ini)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start pgbouncer");
        let bouncer = Bouncer {
            child,
            port,
            _dir: dir,
        };
        let probe = bouncer.url("postgres");
        let log_path = bouncer._dir.path().join("pgbouncer.log");
        wait_until(
            "pgbouncer to accept queries",
            Duration::from_secs(15),
            || {
                Command::new("psql")
                    .args([probe.as_str(), "-X", "-A", "-t", "-c", "SELECT 1"])
                    .output()
                    .is_ok_and(|o| o.status.success())
                    || {
                        assert!(
                            !std::fs::read_to_string(&log_path)
                                .unwrap_or_default()
                                .contains("FATAL"),
                            "pgbouncer failed: {}",
                            std::fs::read_to_string(&log_path).unwrap_or_default()
                        );
                        false
                    }
            },
        );
        bouncer
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `capstan ARGS --database URL --dir <project's migrations>`.
fn capstan_via(p: &Project, url: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_capstan"));
    c.args(args)
        .arg("--database")
        .arg(url)
        .arg("--dir")
        .arg(p.migrations())
        .current_dir(p.dir.path())
        .env_remove("DATABASE_URL")
        .env("USER", "tester")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn run_all(mut cmds: Vec<Command>) -> Vec<Output> {
    let children: Vec<Child> = cmds.iter_mut().map(|c| c.spawn().expect("spawn")).collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait"))
        .collect()
}

fn advisory_locks(p: &Project) -> i64 {
    let db = p.pg_db().expect("postgres project");
    common::psql(
        &common::pg_admin_url(),
        &format!("SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE l.locktype = 'advisory' AND d.datname = '{db}'"),
    )
    .parse()
    .expect("count")
}

/// Transactional and no-transaction migrations (a CREATE INDEX
/// CONCURRENTLY and a backfill), each inserting its version into `counter`.
fn mixed_set(p: &Project) {
    const NO_TX: &str = "-- capstan:no-transaction\n-- capstan:up\n";
    p.write(
        "0001_create.sql",
        "-- capstan:up\nCREATE TABLE counter (v integer NOT NULL);\nCREATE TABLE items (id integer PRIMARY KEY, v integer NOT NULL);\n\
         INSERT INTO items SELECT g, 0 FROM generate_series(1, 2000) g;\nINSERT INTO counter VALUES (1);\n",
    );
    p.write(
        "0002_count.sql",
        "-- capstan:up\nINSERT INTO counter VALUES (2);\nSELECT pg_sleep(0.05);\n",
    );
    p.write(
        "0003_index.sql",
        &format!("{NO_TX}CREATE INDEX CONCURRENTLY items_v_idx ON items (v);\nINSERT INTO counter VALUES (3);\n"),
    );
    p.write(
        "0004_backfill.sql",
        &format!("{NO_TX}UPDATE items SET v = v + 1;\nINSERT INTO counter VALUES (4);\nSELECT pg_sleep(0.05);\n"),
    );
    p.hash();
}

#[test]
fn a_transaction_mode_pool_is_refused_at_once_and_leaks_no_lock() {
    let bouncer = Bouncer::start("transaction");
    let p = Project::new(Backend::Postgres);
    mixed_set(&p);
    let url = bouncer.url(p.pg_db().expect("db"));
    let started = Instant::now();
    let outputs = run_all(
        (0..8)
            .map(|_| capstan_via(&p, &url, &["migrate", "up", "--runner-lock-timeout", "20s"]))
            .collect(),
    );
    let took = started.elapsed();
    for o in &outputs {
        assert_code(o, 4);
        let err = stderr(o);
        assert!(
            err.contains("transaction-mode connection pool") && err.contains("session-mode pool"),
            "{err}"
        );
    }
    assert!(
        took < Duration::from_secs(15),
        "refused at once, not after waiting: {took:?}"
    );
    assert!(p.recorded_versions().is_empty(), "nothing was run");
    assert_eq!(advisory_locks(&p), 0, "no lock leaked into the pool");
    // A direct runner is not blocked by anything left in the pool.
    assert_code(
        &p.capstan(&["migrate", "up", "--runner-lock-timeout", "10s"]),
        0,
    );
    assert_eq!(p.recorded_versions(), vec![1, 2, 3, 4]);

    // Declared in capstan.toml, it is refused even before looking.
    std::fs::write(
        p.dir.path().join("capstan.toml"),
        "[migrate]\npooler = \"transaction\"\n",
    )
    .expect("config");
    let out = capstan_via(&p, &p.url, &["migrate", "up"])
        .output()
        .expect("run");
    assert_code(&out, 4);
    assert!(
        stderr(&out).contains("pooler = \"transaction\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_session_mode_pool_serves_concurrent_runners_and_a_killed_runner_leaks_no_lock() {
    let bouncer = Bouncer::start("session");
    let p = Project::new(Backend::Postgres);
    mixed_set(&p);
    let url = bouncer.url(p.pg_db().expect("db"));
    let outputs = run_all(
        (0..12)
            .map(|_| capstan_via(&p, &url, &["migrate", "up", "--json"]))
            .collect(),
    );
    let mut ran = Vec::new();
    for o in &outputs {
        assert_code(o, 0);
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).expect("report");
        for r in report["ran"].as_array().expect("ran") {
            ran.push(r["version"].as_u64().expect("version"));
        }
    }
    ran.sort_unstable();
    assert_eq!(ran, vec![1, 2, 3, 4], "each migration ran exactly once");
    assert_eq!(
        p.query("SELECT v, count(*) FROM counter GROUP BY v ORDER BY v"),
        "1|1\n2|1\n3|1\n4|1"
    );
    assert_eq!(
        p.query("SELECT v, count(*) FROM items GROUP BY v"),
        "1|2000"
    );
    assert_eq!(
        p.count("SELECT count(*) FROM pg_index WHERE NOT indisvalid"),
        0
    );
    wait_until("the runners' locks to go", Duration::from_secs(10), || {
        advisory_locks(&p) == 0
    });

    // A runner killed inside a slow migration, through the pool.
    p.add(
        "0005_slow.sql",
        "-- capstan:up\nINSERT INTO counter VALUES (5);\nSELECT pg_sleep(2);\n",
    );
    let mut victim = capstan_via(&p, &url, &["migrate", "up"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_until(
        "the victim to hold the lock",
        Duration::from_secs(10),
        || advisory_locks(&p) == 1,
    );
    victim.kill().expect("kill -9");
    victim.wait().expect("reap");
    let started = Instant::now();
    let out = p.capstan(&["migrate", "up", "--runner-lock-timeout", "15s"]);
    assert_code(&out, 0);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the lock went with the killed runner's session"
    );
    assert_eq!(p.count("SELECT count(*) FROM counter WHERE v = 5"), 1);
    assert_eq!(advisory_locks(&p), 0);
}
