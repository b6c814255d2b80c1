//! End-to-end proofs of the migration engine's guarantees, each run by the real
//! `capstan` binary against a real Postgres and a real SQLite file wherever the
//! guarantee applies to the backend:
//!
//! - one runner at a time (ten concurrent `up`s apply each migration once);
//! - a migration and its history row commit together (kill -9 mid-run);
//! - a failed no-transaction migration is dirty until `repair`;
//! - drift refuses the whole run before anything runs;
//! - DDL waits at most `lock_timeout` and retries, so other queries don't queue;
//! - `statement_timeout`, notices and errors with file and line;
//! - every history field.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use capstan_testkit::backends;
use common::{assert_code, stderr, stdout, wait_until, Backend, Project};

const BINARY_VERSION: &str = concat!("capstan ", env!("CARGO_PKG_VERSION"));

/// A small deterministic generator, so a failing kill schedule can be replayed.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x % n
    }
}

fn st(pairs: &[(u64, &str)]) -> Vec<(u64, String)> {
    pairs.iter().map(|(v, s)| (*v, s.to_string())).collect()
}

/// `(version, number of `up` entries)` lines of the log table.
fn ups_in_log(p: &Project) -> String {
    p.query(&format!(
        "SELECT version, count(*) FROM {} WHERE action = 'up' GROUP BY version ORDER BY version",
        p.log_table()
    ))
}

fn once_each(versions: impl IntoIterator<Item = u64>) -> String {
    versions
        .into_iter()
        .map(|v| format!("{v}|1"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------
// 1. One runner at a time.

fn ten_concurrent_runners_apply_each_migration_once(b: Backend) {
    const N: u64 = 30;
    let p = Project::new(b);
    p.write(
        "0001_create_counter.sql",
        "-- capstan:up\nCREATE TABLE counter (v integer NOT NULL);\nINSERT INTO counter VALUES (1);\n",
    );
    // On Postgres each migration also takes a moment, so that the run is
    // still going when the last runner connects.
    let pause = match b {
        Backend::Postgres => "SELECT pg_sleep(0.01);\n",
        Backend::Sqlite => "",
    };
    for v in 2..=N {
        p.write(
            &format!("{v:04}_count_{v}.sql"),
            &format!("-- capstan:up\nINSERT INTO counter VALUES ({v});\n{pause}"),
        );
    }
    p.hash();

    let runners: Vec<Child> = (0..10)
        .map(|_| p.spawn(&["migrate", "up", "--json"]))
        .collect();
    let outputs: Vec<Output> = runners
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait for runner"))
        .collect();

    let mut ran_here = Vec::new();
    for o in &outputs {
        assert_code(o, 0);
        let report: serde_json::Value =
            serde_json::from_slice(&o.stdout).expect("up --json report");
        for r in report["ran"].as_array().expect("ran array") {
            ran_here.push(r["version"].as_u64().expect("version"));
        }
    }
    ran_here.sort_unstable();
    assert_eq!(
        ran_here,
        (1..=N).collect::<Vec<_>>(),
        "{b:?}: the runners' reports together must name each migration exactly once"
    );
    assert_eq!(
        p.query("SELECT v, count(*) FROM counter GROUP BY v ORDER BY v"),
        once_each(1..=N),
        "{b:?}: each non-idempotent migration must have run exactly once"
    );
    assert_eq!(ups_in_log(&p), once_each(1..=N), "{b:?}: log");
    assert_eq!(p.recorded_versions(), (1..=N).collect::<Vec<_>>());
}

backends!(ten_concurrent_runners_apply_each_migration_once);

/// A set mixing transactional and no-transaction migrations (a `CREATE
/// INDEX CONCURRENTLY` on Postgres, backfills on both), each of which
/// inserts its version into `counter`, so a second run shows as a duplicate.
fn mixed_set(p: &Project) {
    let fill = match p.backend {
        Backend::Postgres => "INSERT INTO items SELECT g, 0 FROM generate_series(1, 2000) g;",
        Backend::Sqlite => {
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000) INSERT INTO items SELECT x, 0 FROM c;"
        }
    };
    let pause = match p.backend {
        Backend::Postgres => "SELECT pg_sleep(0.05);\n",
        Backend::Sqlite => "",
    };
    let index = match p.backend {
        Backend::Postgres => "CREATE INDEX CONCURRENTLY items_v_idx ON items (v);",
        Backend::Sqlite => "CREATE INDEX items_v_idx ON items (v);",
    };
    let unique = match p.backend {
        Backend::Postgres => "CREATE UNIQUE INDEX CONCURRENTLY items_id_v_idx ON items (id, v);",
        Backend::Sqlite => "CREATE UNIQUE INDEX items_id_v_idx ON items (id, v);",
    };
    const NO_TX: &str = "-- capstan:no-transaction\n-- capstan:up\n";
    p.write(
        "0001_create.sql",
        &format!("-- capstan:up\nCREATE TABLE counter (v integer NOT NULL);\nCREATE TABLE items (id integer PRIMARY KEY, v integer NOT NULL);\n{fill}\nINSERT INTO counter VALUES (1);\n"),
    );
    p.write(
        "0002_count.sql",
        &format!("-- capstan:up\nINSERT INTO counter VALUES (2);\n{pause}"),
    );
    p.write(
        "0003_index.sql",
        &format!("{NO_TX}{index}\nINSERT INTO counter VALUES (3);\n"),
    );
    p.write(
        "0004_backfill.sql",
        &format!("{NO_TX}UPDATE items SET v = v + 1;\nINSERT INTO counter VALUES (4);\n{pause}"),
    );
    p.write(
        "0005_count.sql",
        "-- capstan:up\nINSERT INTO counter VALUES (5);\n",
    );
    p.write(
        "0006_backfill_again.sql",
        &format!(
            "{NO_TX}UPDATE items SET v = v + 10;\n{unique}\nINSERT INTO counter VALUES (6);\n"
        ),
    );
    p.hash();
}

/// `n` runners at once on [`mixed_set`]: every one exits 0, each migration
/// runs exactly once (by the reports, the counter, the backfilled values
/// and the log), nothing is dirty and every index is valid.
fn concurrent_runners_with_no_transaction_migrations(b: Backend, n: usize) {
    let p = Project::new(b);
    mixed_set(&p);
    let runners: Vec<Child> = (0..n)
        .map(|_| p.spawn(&["migrate", "up", "--json"]))
        .collect();
    let outputs: Vec<Output> = runners
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait for runner"))
        .collect();
    let mut ran_here = Vec::new();
    for o in &outputs {
        assert_code(o, 0);
        let report: serde_json::Value =
            serde_json::from_slice(&o.stdout).expect("up --json report");
        for r in report["ran"].as_array().expect("ran array") {
            ran_here.push(r["version"].as_u64().expect("version"));
        }
    }
    ran_here.sort_unstable();
    assert_eq!(
        ran_here,
        (1..=6).collect::<Vec<_>>(),
        "{b:?}: the runners' reports together must name each migration exactly once"
    );
    assert_eq!(
        p.query("SELECT v, count(*) FROM counter GROUP BY v ORDER BY v"),
        once_each(1..=6),
        "{b:?}: each migration must have run exactly once"
    );
    assert_eq!(
        p.query("SELECT v, count(*) FROM items GROUP BY v"),
        "11|2000",
        "{b:?}: each backfill must have run exactly once"
    );
    assert_eq!(ups_in_log(&p), once_each(1..=6), "{b:?}: log");
    assert_eq!(
        p.count(&format!(
            "SELECT count(*) FROM {} WHERE state <> 'applied'",
            p.history_table()
        )),
        0,
        "{b:?}: nothing may be left dirty"
    );
    if b == Backend::Postgres {
        assert_eq!(
            p.count("SELECT count(*) FROM pg_index WHERE NOT indisvalid"),
            0,
            "no index may be left invalid"
        );
    }
}

fn concurrent_runners_apply_no_transaction_migrations_once(b: Backend) {
    concurrent_runners_with_no_transaction_migrations(b, 16);
}
backends!(concurrent_runners_apply_no_transaction_migrations_once);

/// While a runner is inside a long no-transaction migration, `status` says
/// it is in progress (not dirty), a runner that may wait only briefly gives
/// up with exit 7 naming the holder, and one that waits exits 0 without
/// running anything again.
fn a_runner_inside_a_no_transaction_migration_is_in_progress(b: Backend) {
    let p = Project::new(b);
    let slow = match b {
        Backend::Postgres => "SELECT pg_sleep(3);",
        Backend::Sqlite => {
            "CREATE TABLE slow AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 8000000) SELECT count(*) AS n FROM c;"
        }
    };
    p.write(
        "0001_create.sql",
        "-- capstan:up\nCREATE TABLE counter (v integer NOT NULL);\n",
    );
    p.add(
        "0002_slow.sql",
        &format!(
            "-- capstan:no-transaction\n-- capstan:up\nINSERT INTO counter VALUES (2);\n{slow}\n"
        ),
    );
    let first = p.spawn(&["migrate", "up"]);
    wait_until(
        "the first runner inside 0002",
        Duration::from_secs(20),
        || history_count(&p) == 2,
    );
    let states = p.states();
    assert_eq!(
        states,
        st(&[(1, "applied"), (2, "in-progress")]),
        "{b:?}: a migration a live runner is running is in progress"
    );
    let out = p.capstan(&["migrate", "status"]);
    assert!(
        stdout(&out).contains("1 in progress"),
        "{b:?}: {}",
        stdout(&out)
    );

    let impatient = p.capstan(&["migrate", "up", "--runner-lock-timeout", "200ms"]);
    assert_code(&impatient, 7);
    let err = stderr(&impatient);
    assert!(
        err.contains("another runner held the migration lock")
            && err.contains("pid ")
            && err.contains("application_name \"capstan\"")
            && err.contains("since "),
        "{b:?}: the error names the holder: {err}"
    );

    let patient = p.spawn(&["migrate", "up", "--json"]);
    let first = first.wait_with_output().expect("first runner");
    let patient = patient.wait_with_output().expect("second runner");
    assert_code(&first, 0);
    assert_code(&patient, 0);
    let report: serde_json::Value = serde_json::from_slice(&patient.stdout).expect("report");
    assert_eq!(report["ran"], serde_json::json!([]), "{b:?}: {report}");
    assert_eq!(p.count("SELECT count(*) FROM counter"), 1, "{b:?}");
    assert_eq!(p.states(), st(&[(1, "applied"), (2, "applied")]));
}

fn a_runner_inside_a_no_transaction_migration_is_in_progress_not_dirty(b: Backend) {
    a_runner_inside_a_no_transaction_migration_is_in_progress(b);
}
backends!(a_runner_inside_a_no_transaction_migration_is_in_progress_not_dirty);

/// SIGTERM while `up` is inside a no-transaction migration: once, it
/// finishes that migration and stops before the next (nothing dirty); twice,
/// it stops at the next statement boundary and records why. Exit 130 both
/// times, saying so.
fn sigterm_during_up_stops_cleanly(b: Backend) {
    let slow = match b {
        Backend::Postgres => "SELECT pg_sleep(1.5);",
        Backend::Sqlite => {
            "CREATE TABLE slow AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 4000000) SELECT count(*) AS n FROM c;"
        }
    };
    for signals in [1, 2] {
        let p = Project::new(b);
        p.write(
            "0001_create.sql",
            "-- capstan:up\nCREATE TABLE counter (v integer NOT NULL);\n",
        );
        p.write(
            "0002_slow.sql",
            &format!("-- capstan:no-transaction\n-- capstan:up\nINSERT INTO counter VALUES (2);\n{slow}\nINSERT INTO counter VALUES (20);\n"),
        );
        p.add(
            "0003_after.sql",
            "-- capstan:up\nINSERT INTO counter VALUES (3);\n",
        );
        let child = p.spawn(&["migrate", "up"]);
        wait_until("the runner inside 0002", Duration::from_secs(20), || {
            history_count(&p) == 2
        });
        for _ in 0..signals {
            let sent = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .expect("kill -TERM");
            assert!(sent.success());
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = child.wait_with_output().expect("runner");
        assert_code(&out, 130);
        let err = stderr(&out);
        let case = format!("{b:?} with {signals} SIGTERM");
        assert!(err.contains("SIGTERM received"), "{case}: {err}");
        if signals == 1 {
            assert!(
                err.contains("stopped by SIGTERM before 0003_after"),
                "{case}: {err}"
            );
            assert_eq!(
                p.states(),
                st(&[(1, "applied"), (2, "applied"), (3, "pending")]),
                "{case}"
            );
            assert_eq!(p.count("SELECT count(*) FROM counter"), 2, "{case}");
            assert_code(&p.capstan(&["migrate", "up"]), 0);
            assert_eq!(p.count("SELECT count(*) FROM counter"), 3, "{case}");
        } else {
            assert!(
                err.contains("stopped by SIGTERM before this statement")
                    && err.contains("is now dirty"),
                "{case}: {err}"
            );
            assert_eq!(
                p.states(),
                st(&[(1, "applied"), (2, "dirty"), (3, "pending")]),
                "{case}"
            );
            let repair = p.capstan(&["migrate", "repair"]);
            assert!(
                stdout(&repair).contains(
                    "statement 3 (line 5) failed: stopped by SIGTERM before this statement"
                ),
                "{case}: {}",
                stdout(&repair)
            );
        }
    }
}

fn sigterm_during_up_finishes_or_stops_at_a_statement_boundary_and_says_so(b: Backend) {
    sigterm_during_up_stops_cleanly(b);
}
backends!(sigterm_during_up_finishes_or_stops_at_a_statement_boundary_and_says_so);

// ---------------------------------------------------------------------------
// 2. Kill -9 at random points of a long run.

const KILL_RUN: u64 = 150;
const SQLITE_ROWS: u64 = 3000;

/// Migration `v` of the long run: creates `t_v`, fills it, spends a moment
/// inside the transaction, then adds one last row. The last one spends
/// about a second more, so a runner cannot finish the run while the test
/// (on a busy machine) is slow to see how far it got and kill it.
fn long_run_migration(b: Backend, v: u64) -> String {
    let mut sql = long_run_step(b, v);
    if v == KILL_RUN {
        sql.push_str(match b {
            Backend::Postgres => "SELECT pg_sleep(1);\n",
            Backend::Sqlite => {
                "CREATE TABLE slow AS WITH RECURSIVE c(x) AS \
                 (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000000) SELECT count(*) AS n FROM c;\n"
            }
        });
    }
    sql
}

fn long_run_step(b: Backend, v: u64) -> String {
    match b {
        Backend::Postgres => format!(
            "-- capstan:up\nCREATE TABLE t_{v} (id integer PRIMARY KEY, v text);\n\
             INSERT INTO t_{v} SELECT g, 'row ' || g FROM generate_series(1, {v}) g;\n\
             SELECT pg_sleep(0.01);\n\
             INSERT INTO t_{v} VALUES (0, 'last');\n"
        ),
        Backend::Sqlite => format!(
            "-- capstan:up\nCREATE TABLE t_{v} (id integer PRIMARY KEY, v text);\n\
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n})\n\
             INSERT INTO t_{v} SELECT x, 'row ' || x FROM c;\n\
             INSERT INTO t_{v} VALUES (0, 'last');\n",
            n = SQLITE_ROWS + v
        ),
    }
}

fn expected_rows(b: Backend, v: u64) -> u64 {
    match b {
        Backend::Postgres => v + 1,
        Backend::Sqlite => SQLITE_ROWS + v + 1,
    }
}

/// How many history rows are committed (0 before capstan made its tables).
fn history_count(p: &Project) -> u64 {
    match p.backend {
        Backend::Postgres => p
            .query(
                "SELECT CASE WHEN to_regclass('capstan.migrations') IS NULL THEN 0 ELSE \
                 (xpath('/row/c/text()', query_to_xml('SELECT count(*) AS c FROM capstan.migrations', false, true, '')))[1]::text::int END",
            )
            .parse()
            .expect("count"),
        Backend::Sqlite => p.recorded_versions().len() as u64,
    }
}

/// The database never holds part of a transactional migration: table `t_v`
/// exists exactly for the recorded versions, which are 1..=k in order, none
/// dirty, each table holding all its rows. Returns k.
fn assert_no_half_applied_migration(p: &Project, context: &str) -> u64 {
    let b = p.backend;
    let recorded = p.recorded_versions();
    let k = recorded.len() as u64;
    assert_eq!(
        recorded,
        (1..=k).collect::<Vec<_>>(),
        "{b:?} {context}: history must be a prefix of the run"
    );
    let tables: Vec<u64> = match b {
        Backend::Postgres => p.query(
            "SELECT substr(tablename, 3)::int AS v FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 't\\_%' ORDER BY v",
        ),
        Backend::Sqlite => p.query(
            "SELECT CAST(substr(name, 3) AS integer) AS v FROM sqlite_master WHERE type = 'table' AND name LIKE 't\\_%' ESCAPE '\\' ORDER BY v",
        ),
    }
    .lines()
    .map(|l| l.parse().expect("table number"))
    .collect();
    assert_eq!(
        tables, recorded,
        "{b:?} {context}: a table exists without its history row, or the reverse (a half-applied migration)"
    );
    if k == 0 {
        return 0;
    }
    assert_eq!(
        p.count(&format!(
            "SELECT count(*) FROM {} WHERE state <> 'applied'",
            p.history_table()
        )),
        0,
        "{b:?} {context}: a transactional migration must never be dirty"
    );
    let counts: Vec<u64> = match b {
        Backend::Postgres => p
            .query(
                "SELECT (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM public.t_%s', version), false, true, '')))[1]::text::int \
                 FROM capstan.migrations ORDER BY version",
            )
            .lines()
            .map(|l| l.parse().expect("row count"))
            .collect(),
        Backend::Sqlite => {
            let conn = rusqlite::Connection::open(p.sqlite_path()).expect("open sqlite");
            recorded
                .iter()
                .map(|v| {
                    conn.query_row(&format!("SELECT count(*) FROM t_{v}"), [], |r| {
                        r.get::<_, i64>(0)
                    })
                    .expect("count rows") as u64
                })
                .collect()
        }
    };
    let expected: Vec<u64> = recorded.iter().map(|v| expected_rows(b, *v)).collect();
    assert_eq!(
        counts, expected,
        "{b:?} {context}: an applied migration is missing rows"
    );
    k
}

fn kill_9_mid_run_never_leaves_a_half_applied_migration(b: Backend, seed: u64) {
    let p = Project::new(b);
    for v in 1..=KILL_RUN {
        p.write(&format!("{v:04}_t_{v}.sql"), &long_run_migration(b, v));
    }
    p.hash();
    let mut rng = XorShift(seed);
    let mut applied = 0;
    for round in 1..=5 {
        let target = (applied + 3 + rng.below(20)).min(KILL_RUN - 15);
        let extra = Duration::from_millis(rng.below(15));
        let mut child = p
            .command(&["migrate", "up"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn up");
        let deadline = Instant::now() + Duration::from_secs(30);
        while history_count(&p) < target {
            if let Some(status) = child.try_wait().expect("poll runner") {
                let mut err = String::new();
                let _ = child.stderr.take().map(|mut s| s.read_to_string(&mut err));
                panic!("{b:?} round {round}: up exited ({status}) before it was killed:\n{err}");
            }
            assert!(
                Instant::now() < deadline,
                "{b:?} round {round}: the run never reached {target} migrations"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(extra);
        child.kill().expect("kill -9");
        let status = child.wait().expect("reap runner");
        assert_eq!(
            status.signal(),
            Some(9),
            "{b:?} round {round}: the runner must die by SIGKILL mid-run, not finish ({status})"
        );
        if let Some(db) = p.pg_db() {
            // The server notices the dead client when its current statement
            // ends; wait for that session to go before looking.
            let admin = common::pg_admin_url();
            wait_until(
                "the killed runner's session to end",
                Duration::from_secs(20),
                || {
                    common::psql(
                        &admin,
                        &format!(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND application_name = 'capstan'"
                        ),
                    ) == "0"
                },
            );
        }
        let now = assert_no_half_applied_migration(&p, &format!("after kill {round}"));
        assert!(
            now >= target && now < KILL_RUN,
            "{b:?} round {round}: killed at {now} applied, expected between {target} and {KILL_RUN}"
        );
        applied = now;
    }
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 0);
    let left = KILL_RUN - applied;
    let plural = if left == 1 { "" } else { "s" };
    assert!(
        stdout(&out).contains(&format!("applied {left} migration{plural} in")),
        "{b:?}: {}",
        stdout(&out)
    );
    assert_eq!(assert_no_half_applied_migration(&p, "at the end"), KILL_RUN);
    assert_eq!(
        ups_in_log(&p),
        once_each(1..=KILL_RUN),
        "{b:?}: a killed migration must leave no log entry either"
    );
}

fn kill_9_mid_run_never_leaves_a_half_applied_migration_and_up_finishes(b: Backend) {
    let seed = match b {
        Backend::Postgres => 0x0c47_5a11,
        Backend::Sqlite => 0x5eed_0009,
    };
    kill_9_mid_run_never_leaves_a_half_applied_migration(b, seed);
}
backends!(kill_9_mid_run_never_leaves_a_half_applied_migration_and_up_finishes);

/// A kill -9 run on a set where every fourth migration runs outside a
/// transaction (re-runnable: `IF NOT EXISTS`, conflicts ignored).
const MIXED_KILL_RUN: u64 = 60;

fn mixed_kill_migration(b: Backend, v: u64) -> String {
    let no_tx = v % 4 == 0;
    let (create, fill, last, pause) = match b {
        Backend::Postgres => (
            format!("CREATE TABLE IF NOT EXISTS t_{v} (id integer PRIMARY KEY, v text);"),
            format!("INSERT INTO t_{v} SELECT g, 'row ' || g FROM generate_series(1, {v}) g ON CONFLICT DO NOTHING;"),
            format!("INSERT INTO t_{v} VALUES (0, 'last') ON CONFLICT DO NOTHING;"),
            "SELECT pg_sleep(0.02);".to_string(),
        ),
        Backend::Sqlite => (
            format!("CREATE TABLE IF NOT EXISTS t_{v} (id integer PRIMARY KEY, v text);"),
            format!(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {})\nINSERT OR IGNORE INTO t_{v} SELECT x, 'row ' || x FROM c;",
                SQLITE_ROWS + v
            ),
            format!("INSERT OR IGNORE INTO t_{v} VALUES (0, 'last');"),
            String::new(),
        ),
    };
    let header = if no_tx {
        "-- capstan:no-transaction\n-- capstan:up\n"
    } else {
        "-- capstan:up\n"
    };
    // The last one takes a few seconds more, so a busy machine cannot let the
    // runner finish the run before the test kills it.
    let slow = match (v == MIXED_KILL_RUN, b) {
        (false, _) => "",
        (true, Backend::Postgres) => "SELECT pg_sleep(1.5);\n",
        (true, Backend::Sqlite) => {
            "CREATE TABLE IF NOT EXISTS slow AS WITH RECURSIVE c(x) AS \
             (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) SELECT count(*) AS n FROM c;\n"
        }
    };
    format!("{header}{create}\n{fill}\n{pause}\n{slow}{last}\n")
}

/// kill -9 at random points of a run mixing transactional and
/// no-transaction migrations: a transactional migration is never half
/// applied; a no-transaction one the kill interrupted is dirty (not "in
/// progress": its runner is gone) and nothing else; after `repair` and `up`
/// every migration is applied exactly once, with all its rows.
fn kill_9_on_a_mixed_set(b: Backend, seed: u64) {
    let p = Project::new(b);
    for v in 1..=MIXED_KILL_RUN {
        p.write(&format!("{v:04}_t_{v}.sql"), &mixed_kill_migration(b, v));
    }
    p.hash();
    let mut rng = XorShift(seed);
    for round in 1..=5u64 {
        let target = (history_count(&p) + 2 + rng.below(6)).min(MIXED_KILL_RUN - 10);
        let mut child = p
            .command(&["migrate", "up"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn up");
        wait_until("the run to progress", Duration::from_secs(30), || {
            history_count(&p) >= target
        });
        std::thread::sleep(Duration::from_millis(rng.below(30)));
        child.kill().expect("kill -9");
        let status = child.wait().expect("reap");
        assert_eq!(status.signal(), Some(9), "{b:?} round {round}");
        if let Some(db) = p.pg_db() {
            let admin = common::pg_admin_url();
            wait_until("the killed session to end", Duration::from_secs(20), || {
                common::psql(
                    &admin,
                    &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND application_name = 'capstan'"),
                ) == "0"
            });
        }
        let states = p.states();
        let recorded = p.recorded_versions();
        let k = recorded.len() as u64;
        assert_eq!(
            recorded,
            (1..=k).collect::<Vec<_>>(),
            "{b:?} round {round}: a prefix"
        );
        for (v, state) in &states {
            let expect = if *v < k {
                "applied"
            } else if *v == k && state == "dirty" {
                assert!(v % 4 == 0, "{b:?} round {round}: transactional {v} dirty");
                "dirty"
            } else if *v == k {
                "applied"
            } else {
                "pending"
            };
            assert_eq!(state, expect, "{b:?} round {round}: {states:?}");
        }
        if states.iter().any(|(_, s)| s == "dirty") {
            assert_code(
                &p.capstan(&["migrate", "repair", "--mark-rolled-back", &k.to_string()]),
                0,
            );
        }
    }
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 0);
    assert_eq!(
        p.recorded_versions(),
        (1..=MIXED_KILL_RUN).collect::<Vec<_>>()
    );
    assert_eq!(
        p.count(&format!(
            "SELECT count(*) FROM {} WHERE state <> 'applied'",
            p.history_table()
        )),
        0
    );
    for v in 1..=MIXED_KILL_RUN {
        assert_eq!(
            p.count(&format!("SELECT count(*) FROM t_{v}")) as u64,
            expected_rows(b, v),
            "{b:?}: t_{v} has all its rows"
        );
    }
    assert_eq!(
        ups_in_log(&p),
        once_each(1..=MIXED_KILL_RUN),
        "{b:?}: each migration completed exactly once"
    );
}

fn kill_9_on_a_set_with_no_transaction_migrations_leaves_only_a_recorded_dirty_one(b: Backend) {
    let seed = match b {
        Backend::Postgres => 0x00ab_cdef,
        Backend::Sqlite => 0x0012_3457,
    };
    kill_9_on_a_mixed_set(b, seed);
}
backends!(kill_9_on_a_set_with_no_transaction_migrations_leaves_only_a_recorded_dirty_one);

// ---------------------------------------------------------------------------
// 3. A failed no-transaction migration is dirty until repaired.

const CREATE_USERS: &str =
    "-- capstan:up\nCREATE TABLE users (id integer PRIMARY KEY, name text);\n";
const ADD_ITEMS: &str = "-- capstan:up\nCREATE TABLE items (id integer);\n";
/// Statement 1 succeeds (and stays, outside a transaction); statement 2 fails.
const HALF_DONE: &str = "-- capstan:no-transaction\n-- capstan:up\nCREATE TABLE archive (id integer);\nINSERT INTO users (id, nickname) VALUES (1, 'x');\n";

/// Applies 0001, then fails 0002 (no-transaction) half-way; 0003 stays pending.
fn dirty_project(b: Backend) -> Project {
    let p = Project::new(b);
    p.write("0001_create_users.sql", CREATE_USERS);
    p.write("0002_archive_users.sql", HALF_DONE);
    p.add("0003_add_items.sql", ADD_ITEMS);
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("0002_archive_users.sql:4:")
            && err.contains("is now dirty")
            && err.contains("capstan migrate repair"),
        "{b:?}: {err}"
    );
    assert_eq!(
        p.states(),
        st(&[(1, "applied"), (2, "dirty"), (3, "pending")])
    );
    assert!(
        p.has_table("archive"),
        "{b:?}: statement 1 ran outside a transaction"
    );
    assert!(!p.has_table("items"));

    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 5);
    assert!(
        stderr(&out).contains("0002_archive_users is dirty"),
        "{b:?}: {}",
        stderr(&out)
    );
    assert!(
        !p.has_table("items"),
        "{b:?}: up must refuse before running 0003"
    );
    assert_eq!(
        p.states(),
        st(&[(1, "applied"), (2, "dirty"), (3, "pending")])
    );

    let out = p.capstan(&["migrate", "repair"]);
    assert_code(&out, 0);
    let text = stdout(&out);
    for needle in [
        "0002_archive_users is dirty",
        "statement 2 (line 4) failed",
        "nickname",
        "started ",
        "by tester@",
        "--mark-applied 2",
        "--mark-rolled-back 2",
    ] {
        assert!(
            text.contains(needle),
            "{b:?}: repair must explain ({needle}):\n{text}"
        );
    }
    let out = p.capstan(&["migrate", "repair", "--json"]);
    assert_code(&out, 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("repair --json");
    assert_eq!(v["dirty"][0]["version"], 2, "{v}");
    p
}

fn failed_no_transaction_migration_is_dirty_until_marked_rolled_back(b: Backend) {
    let p = dirty_project(b);
    // The operator undoes statement 1 by hand, fixes the file, and says so.
    p.query("DROP TABLE archive");
    p.add(
        "0002_archive_users.sql",
        "-- capstan:no-transaction\n-- capstan:up\nCREATE TABLE archive (id integer);\nINSERT INTO users (id, name) VALUES (1, 'x');\n",
    );
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 5);
    let out = p.capstan(&["migrate", "repair", "--mark-rolled-back", "2"]);
    assert_code(&out, 0);
    assert_eq!(
        p.states(),
        st(&[(1, "applied"), (2, "pending"), (3, "pending")])
    );
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 0);
    assert_eq!(
        p.states(),
        st(&[(1, "applied"), (2, "applied"), (3, "applied")])
    );
    assert!(p.has_table("archive") && p.has_table("items"));
    assert_eq!(p.count("SELECT count(*) FROM users"), 1);
    assert_eq!(
        p.count(&format!(
            "SELECT count(*) FROM {} WHERE version = 2 AND action = 'repair: marked rolled back' AND applied_by LIKE 'tester@%'",
            p.log_table()
        )),
        1,
        "{b:?}: the repair is logged"
    );
}

fn failed_no_transaction_migration_is_dirty_until_marked_applied(b: Backend) {
    let p = dirty_project(b);
    // The operator finishes the failed statement by hand.
    p.query("INSERT INTO users (id, name) VALUES (1, 'x')");
    let out = p.capstan(&["migrate", "repair", "--mark-applied", "3"]);
    assert_code(&out, 5);
    assert!(
        stderr(&out).contains("0003 is not dirty"),
        "{b:?}: {}",
        stderr(&out)
    );
    let out = p.capstan(&["migrate", "repair", "--mark-applied", "2"]);
    assert_code(&out, 0);
    assert_eq!(
        p.states(),
        st(&[(1, "applied"), (2, "applied"), (3, "pending")])
    );
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("applied 1 migration in"),
        "{b:?}: only 0003 runs: {}",
        stdout(&out)
    );
    assert_eq!(
        p.states(),
        st(&[(1, "applied"), (2, "applied"), (3, "applied")])
    );
    assert_eq!(
        p.count(&format!(
            "SELECT count(*) FROM {} WHERE version = 2 AND action = 'repair: marked applied'",
            p.log_table()
        )),
        1
    );
}

backends!(failed_no_transaction_migration_is_dirty_until_marked_rolled_back);

backends!(failed_no_transaction_migration_is_dirty_until_marked_applied);

// ---------------------------------------------------------------------------
// 3b. A failed CREATE INDEX CONCURRENTLY leaves an invalid index: capstan
// says so everywhere, keeps the duplicate key, and never records it applied.

const UNIQUE_EMAIL: &str = "-- capstan:phase contract\n-- capstan:no-transaction\n-- capstan:up\nCREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_email ON users (email);\n";

fn invalid_count(p: &Project) -> i64 {
    p.count("SELECT count(*) FROM pg_index WHERE NOT indisvalid")
}

#[test]
fn a_failed_concurrent_index_is_reported_until_rebuilt_and_never_recorded_applied_postgres() {
    let p = Project::new(Backend::Postgres);
    p.add(
        "0001_users.sql",
        "-- capstan:up\nCREATE TABLE users (id integer PRIMARY KEY, email text);\n",
    );
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    p.query("INSERT INTO users VALUES (1, 'a@x'), (2, 'a@x'), (3, 'b@x')");
    p.add("0002_unique_email.sql", UNIQUE_EMAIL);
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 1);
    assert_eq!(
        invalid_count(&p),
        1,
        "the failed build leaves an invalid index"
    );
    assert_eq!(p.states(), st(&[(1, "applied"), (2, "dirty")]));

    let out = p.capstan(&["migrate", "repair"]);
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains("Key (email)=(a@x) is duplicated")
            && text.contains("DROP INDEX CONCURRENTLY IF EXISTS public.users_email;"),
        "repair keeps the duplicate key and says how to drop the invalid index:\n{text}"
    );
    let v: serde_json::Value =
        serde_json::from_slice(&p.capstan(&["migrate", "repair", "--json"]).stdout).expect("json");
    assert_eq!(
        v["dirty"][0]["invalid_indexes"][0]["name"], "users_email",
        "{v}"
    );

    let out = p.capstan(&["migrate", "status"]);
    assert!(
        stdout(&out).contains("index public.users_email on users is INVALID"),
        "{}",
        stdout(&out)
    );
    assert_eq!(p.status()["invalid_indexes"][0]["name"], "users_email");
    let gate = p.capstan(&["gate"]);
    assert_code(&gate, 8);
    let verify = p.capstan(&["migrate", "verify"]);
    assert_code(&verify, 1);
    assert!(
        stdout(&verify).contains("users_email") && stdout(&verify).contains("INVALID"),
        "{}",
        stdout(&verify)
    );

    // The operator removes the duplicate and says the migration is undone,
    // but forgets the index: the re-run drops the invalid one and builds it.
    p.query("DELETE FROM users WHERE id = 2");
    assert_code(
        &p.capstan(&["migrate", "repair", "--mark-rolled-back", "2"]),
        0,
    );
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 0);
    assert_eq!(invalid_count(&p), 0, "the index is valid now");
    assert_eq!(p.states(), st(&[(1, "applied"), (2, "applied")]));
    assert_eq!(p.status()["invalid_indexes"], serde_json::json!([]));
    assert_code(&p.capstan(&["gate"]), 0);
    let dup = Command::new("psql")
        .args([p.url.as_str(), "-X", "-v", "ON_ERROR_STOP=1", "-c"])
        .arg("INSERT INTO users VALUES (4, 'b@x')")
        .output()
        .expect("psql");
    assert!(
        !dup.status.success() && stderr(&dup).contains("duplicate key"),
        "uniqueness is enforced: {}",
        stderr(&dup)
    );
}

#[test]
fn a_concurrent_index_retried_after_a_lock_timeout_drops_the_invalid_one_first_postgres() {
    let p = Project::new(Backend::Postgres);
    p.add(
        "0001_users.sql",
        "-- capstan:up\nCREATE TABLE users (id integer PRIMARY KEY, email text);\nINSERT INTO users VALUES (1, 'a@x');\n",
    );
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    p.add("0002_unique_email.sql", UNIQUE_EMAIL);
    // An open writing transaction: the index build waits for it after it
    // has made its (invalid) index, and gives up at the lock timeout.
    let mut writer = Session::open(&p.url, "writer", "");
    writer.send("BEGIN;\nINSERT INTO users VALUES (2, 'b@x');\n");
    wait_until("the writer's lock", Duration::from_secs(10), || {
        p.count("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE a.application_name = 'writer' AND l.relation = 'public.users'::regclass") >= 1
    });
    let mut up = p.spawn(&[
        "migrate",
        "up",
        "--lock-timeout",
        "200ms",
        "--lock-retries",
        "50",
    ]);
    let (lines, err_thread) = collect_lines(up.stderr.take().expect("stderr"));
    wait_until("a lock-timeout retry", Duration::from_secs(20), || {
        retries_seen(&lines) >= 1
    });
    writer.send("COMMIT;\n");
    writer.close();
    let status = up.wait().expect("wait for up");
    err_thread.join().expect("stderr thread");
    let err = lines.lock().expect("lines").join("\n");
    assert_eq!(status.code(), Some(0), "{err}");
    assert_eq!(invalid_count(&p), 0, "the retried build is valid: {err}");
    assert_eq!(p.states(), st(&[(1, "applied"), (2, "applied")]));
    assert_eq!(
        p.count("SELECT count(*) FROM pg_indexes WHERE indexname = 'users_email'"),
        1
    );
}

/// A no-transaction migration that stopped between its archive copy and the
/// statement the copy protects, then was repaired and run again, keeps one
/// archive entry, with the rows.
fn archive_copy_is_not_duplicated_by_a_rerun(b: Backend) {
    let p = Project::new(b);
    p.add(
        "0001_users.sql",
        "-- capstan:up\nCREATE TABLE users (id integer PRIMARY KEY, name text);\nINSERT INTO users VALUES (1, 'ana'), (2, 'bo');\n",
    );
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    // Something the migration's author did not expect makes the DROP fail
    // after the copy was made.
    let (blocker, unblock) = match b {
        Backend::Postgres => (
            "CREATE VIEW user_names AS SELECT name FROM users",
            "DROP VIEW user_names",
        ),
        Backend::Sqlite => (
            "CREATE INDEX users_name ON users (name)",
            "DROP INDEX users_name",
        ),
    };
    p.query(blocker);
    p.add(
        "0002_drop_name.sql",
        "-- capstan:phase contract\n-- capstan:no-transaction\n-- capstan:up\nALTER TABLE users DROP COLUMN name;\n",
    );
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 1);
    let entries = match b {
        Backend::Postgres => "capstan.archive",
        Backend::Sqlite => "capstan_archives",
    };
    assert_eq!(
        p.count(&format!("SELECT count(*) FROM {entries}")),
        1,
        "{b:?}: the copy was made before the failing statement"
    );
    p.query(unblock);
    assert_code(
        &p.capstan(&["migrate", "repair", "--mark-rolled-back", "2"]),
        0,
    );
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 0);
    assert!(!p.has_column("users", "name"), "{b:?}");
    assert_eq!(
        p.count(&format!("SELECT count(*) FROM {entries}")),
        1,
        "{b:?}: one run of the migration, one archive entry"
    );
    let list = p.capstan(&["archive", "list", "--json"]);
    assert_code(&list, 0);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).expect("archive list");
    assert_eq!(v["entries"][0]["row_count"], 2, "{b:?}: {v}");
}

fn a_rerun_after_a_stop_between_copy_and_drop_keeps_one_archive_entry(b: Backend) {
    archive_copy_is_not_duplicated_by_a_rerun(b);
}
backends!(a_rerun_after_a_stop_between_copy_and_drop_keeps_one_archive_entry);

// ---------------------------------------------------------------------------
// 4. Drift refuses the whole run before anything runs.

fn drift_refuses_the_whole_run_and_names_the_file(b: Backend) {
    let p = Project::new(b);
    p.write(
        "0001_create_a.sql",
        "-- capstan:up\nCREATE TABLE a (id integer);\n",
    );
    p.add(
        "0002_create_b.sql",
        "-- capstan:up\nCREATE TABLE b (id integer);\n",
    );
    assert_code(&p.capstan(&["migrate", "up"]), 0);

    // Someone edits an applied migration (and rewrites the sum), and adds a new one.
    p.write(
        "0001_create_a.sql",
        "-- capstan:up\nCREATE TABLE a (id integer, extra text);\n",
    );
    p.add(
        "0003_create_c.sql",
        "-- capstan:up\nCREATE TABLE c (id integer);\n",
    );
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 5);
    let err = stderr(&out);
    assert!(
        err.contains(
            &p.migrations()
                .join("0001_create_a.sql")
                .display()
                .to_string()
        ) && err.contains("nothing was run"),
        "{b:?}: the message names the edited file: {err}"
    );
    assert!(
        !err.contains("0002_create_b") && !err.contains("0003_create_c"),
        "{b:?}: only the drifted file is named: {err}"
    );
    assert!(
        !p.has_table("c"),
        "{b:?}: the pending 0003 must not run when 0001 drifted"
    );
    assert!(
        !p.has_column("a", "extra"),
        "{b:?}: the edit is not applied"
    );
    assert_eq!(p.recorded_versions(), vec![1, 2]);
    assert_eq!(
        p.states(),
        st(&[(1, "drifted"), (2, "applied"), (3, "pending")])
    );

    let out = p.capstan(&["migrate", "up", "--json"]);
    assert_code(&out, 5);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("error JSON");
    assert_eq!(v["error"]["kind"], "drift", "{v}");
    assert_eq!(v["error"]["exit_code"], 5, "{v}");
    assert!(!p.has_table("c"));
}

fn drift_refuses_the_whole_run_before_running_anything(b: Backend) {
    drift_refuses_the_whole_run_and_names_the_file(b);
}
backends!(drift_refuses_the_whole_run_before_running_anything);

// ---------------------------------------------------------------------------
// 5. lock_timeout with retries.

/// A project whose table `t` is applied (0001) and whose pending 0002 alters it.
fn alter_project(b: Backend) -> Project {
    let p = Project::new(b);
    p.add(
        "0001_create_t.sql",
        "-- capstan:up\nCREATE TABLE t (id integer PRIMARY KEY);\nINSERT INTO t VALUES (1), (2), (3);\n",
    );
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    p.add(
        "0002_add_t_note.sql",
        "-- capstan:up\nALTER TABLE t ADD COLUMN note text;\n",
    );
    p
}

/// A psql session fed through its stdin.
struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Session {
    fn open(url: &str, app: &str, options: &str) -> Session {
        let mut child = Command::new("psql")
            .args([url, "-X", "-q", "-A", "-t"])
            .env("PGAPPNAME", app)
            .env("PGOPTIONS", options)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn psql");
        let stdin = child.stdin.take();
        Session { child, stdin }
    }

    fn send(&mut self, sql: &str) {
        let stdin = self.stdin.as_mut().expect("session open");
        stdin.write_all(sql.as_bytes()).expect("write to psql");
        stdin.flush().expect("flush psql");
    }

    /// Ends the session; returns (stdout, stderr).
    fn close(mut self) -> (String, String) {
        drop(self.stdin.take());
        let out = self.child.wait_with_output().expect("wait for psql");
        (stdout(&out), stderr(&out))
    }
}

/// Holds ACCESS SHARE on `t` in an open transaction, as a long report would.
fn hold_access_share(p: &Project) -> Session {
    let mut holder = Session::open(&p.url, "lock_holder", "");
    holder.send("BEGIN;\nLOCK TABLE t IN ACCESS SHARE MODE;\n");
    wait_until("the holder's lock on t", Duration::from_secs(10), || {
        p.count(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.relation = 'public.t'::regclass AND l.granted AND a.application_name = 'lock_holder'",
            ) == 1
    });
    holder
}

/// Collects a child's stderr lines as they come.
fn collect_lines(r: impl Read + Send + 'static) -> (Arc<Mutex<Vec<String>>>, JoinHandle<()>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    let handle = std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            sink.lock().expect("lines").push(line);
        }
    });
    (lines, handle)
}

fn retries_seen(lines: &Mutex<Vec<String>>) -> usize {
    lines
        .lock()
        .expect("lines")
        .iter()
        .filter(|l| l.contains("failed, retrying in"))
        .count()
}

#[test]
fn lock_timeout_retries_and_never_stalls_other_queries_postgres() {
    let p = alter_project(Backend::Postgres);
    let holder = hold_access_share(&p);
    let held_since = Instant::now();

    // Another client keeps reading t; each read reports how long it took,
    // including any wait for its lock, and gives up after 2 s.
    let mut reader = Session::open(&p.url, "reader", "-c statement_timeout=2s");
    let stop = Arc::new(AtomicBool::new(false));
    let stop_reading = Arc::clone(&stop);
    let mut reader_stdin = reader.stdin.take().expect("reader stdin");
    let feeder = std::thread::spawn(move || {
        while !stop_reading.load(Ordering::Relaxed) {
            let q = "SELECT count(*), round(extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000) FROM t;\n";
            if reader_stdin.write_all(q.as_bytes()).is_err() {
                break;
            }
            let _ = reader_stdin.flush();
            std::thread::sleep(Duration::from_millis(10));
        }
    });

    let mut up = p.spawn(&[
        "migrate",
        "up",
        "--lock-timeout",
        "200ms",
        "--lock-retries",
        "50",
    ]);
    let (lines, err_thread) = collect_lines(up.stderr.take().expect("stderr"));
    wait_until("two lock-timeout retries", Duration::from_secs(20), || {
        retries_seen(&lines) >= 2
    });
    assert!(
        !p.has_column("t", "note"),
        "the ALTER cannot have run while the lock is held"
    );
    // Hold the lock longer than the readers' 2 s limit: a reader queued behind
    // an ALTER that waited without a lock timeout would hit that limit.
    let hold = Duration::from_millis(2600);
    if let Some(rest) = hold.checked_sub(held_since.elapsed()) {
        std::thread::sleep(rest);
    }
    let (_, holder_err) = {
        let mut holder = holder;
        holder.send("ROLLBACK;\n");
        holder.close()
    };
    assert!(holder_err.is_empty(), "holder: {holder_err}");

    let status = up.wait().expect("wait for up");
    err_thread.join().expect("stderr thread");
    stop.store(true, Ordering::Relaxed);
    feeder.join().expect("feeder");
    let (reads, read_errors) = reader.close();
    let err = lines.lock().expect("lines").join("\n");

    assert_eq!(
        status.code(),
        Some(0),
        "up must succeed once the lock is released:\n{err}"
    );
    assert!(p.has_column("t", "note"));
    assert_eq!(p.recorded_versions(), vec![1, 2]);
    assert!(
        err.contains("0002_add_t_note: canceling statement due to lock timeout; attempt 1 failed, retrying in 500 ms")
            && err.contains("attempt 2 failed"),
        "stderr shows the retries:\n{err}"
    );
    assert!(
        read_errors.is_empty(),
        "no read of t may wait 2 s behind the ALTER: {read_errors}"
    );
    let waits: Vec<f64> = reads
        .lines()
        .map(|l| {
            let (count, ms) = l.split_once('|').expect("count|ms");
            assert_eq!(count, "3");
            ms.parse().expect("ms")
        })
        .collect();
    assert!(waits.len() >= 20, "the reader kept reading: {reads}");
    let longest = waits.iter().copied().fold(0.0, f64::max);
    assert!(longest < 2000.0, "a read waited {longest} ms for its lock");
    // Some reads did queue behind the waiting ALTER (so the 2 s bound was
    // tested), and were let through when its lock timeout expired.
    assert!(
        waits.iter().any(|w| *w >= 50.0),
        "no read overlapped a lock attempt: {waits:?}"
    );
}

#[test]
fn lock_retries_exhausted_exits_7_and_applies_nothing_postgres() {
    let p = alter_project(Backend::Postgres);
    let mut holder = hold_access_share(&p);
    let out = p.capstan(&[
        "migrate",
        "up",
        "--lock-timeout",
        "200ms",
        "--lock-retries",
        "0",
    ]);
    holder.send("ROLLBACK;\n");
    holder.close();
    assert_code(&out, 7);
    let err = stderr(&out);
    assert!(
        err.contains("0002_add_t_note.sql:2: canceling statement due to lock timeout")
            && err.contains("gave up after 1 attempts")
            && err.contains("rolled back"),
        "{err}"
    );
    assert!(!p.has_column("t", "note"));
    assert_eq!(p.recorded_versions(), vec![1]);
}

/// Another SQLite connection holding the write lock (`BEGIN IMMEDIATE`).
fn hold_sqlite_write_lock(p: &Project) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(p.sqlite_path()).expect("open sqlite");
    conn.execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    conn
}

#[test]
fn lock_timeout_retries_until_the_write_lock_is_released_sqlite() {
    let p = alter_project(Backend::Sqlite);
    let holder = hold_sqlite_write_lock(&p);
    let mut up = p.spawn(&[
        "migrate",
        "up",
        "--lock-timeout",
        "200ms",
        "--lock-retries",
        "50",
    ]);
    let (lines, err_thread) = collect_lines(up.stderr.take().expect("stderr"));
    wait_until("a lock-timeout retry", Duration::from_secs(20), || {
        retries_seen(&lines) >= 1
    });
    assert_eq!(
        holder
            .query_row(
                "SELECT count(*) FROM pragma_table_info('t') WHERE name = 'note'",
                [],
                |r| r.get::<_, i64>(0)
            )
            .expect("query"),
        0
    );
    holder.execute_batch("COMMIT").expect("release");
    drop(holder);
    let status = up.wait().expect("wait for up");
    err_thread.join().expect("stderr thread");
    let err = lines.lock().expect("lines").join("\n");
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(
        err.contains("0002_add_t_note: database is locked; attempt 1 failed, retrying in 500 ms"),
        "{err}"
    );
    assert!(p.has_column("t", "note"));
    assert_eq!(p.recorded_versions(), vec![1, 2]);
}

#[test]
fn lock_retries_exhausted_exits_7_and_applies_nothing_sqlite() {
    let p = alter_project(Backend::Sqlite);
    let holder = hold_sqlite_write_lock(&p);
    let out = p.capstan(&[
        "migrate",
        "up",
        "--lock-timeout",
        "200ms",
        "--lock-retries",
        "0",
    ]);
    holder.execute_batch("ROLLBACK").expect("release");
    drop(holder);
    assert_code(&out, 7);
    let err = stderr(&out);
    assert!(
        err.contains("0002_add_t_note.sql") && err.contains("gave up after 1 attempts"),
        "{err}"
    );
    assert!(!p.has_column("t", "note"));
    assert_eq!(p.recorded_versions(), vec![1]);
}

// ---------------------------------------------------------------------------
// 6. statement_timeout.

fn assert_cancelled(p: &Project, out: &Output, took: Duration, file_line: &str) {
    assert_code(out, 1);
    let err = stderr(out);
    assert!(
        err.contains(file_line) && err.contains("statement timeout"),
        "{:?}: expected {file_line} and the timeout: {err}",
        p.backend
    );
    assert!(err.contains("was rolled back"), "{:?}: {err}", p.backend);
    assert!(
        took < Duration::from_millis(1800),
        "{:?}: the slow statement was not cut short ({took:?})",
        p.backend
    );
    assert!(!p.has_table("before_sleep"), "{:?}: rolled back", p.backend);
    assert!(p.recorded_versions().is_empty());
}

#[test]
fn statement_timeout_flag_and_directive_cancel_a_slow_migration_postgres() {
    let p = Project::new(Backend::Postgres);
    p.add(
        "0001_slow_backfill.sql",
        "-- capstan:up\nCREATE TABLE before_sleep (id integer);\nSELECT pg_sleep(2);\n",
    );
    let t = Instant::now();
    let out = p.capstan(&["migrate", "up", "--statement-timeout", "100ms"]);
    assert_cancelled(&p, &out, t.elapsed(), "0001_slow_backfill.sql:3: ");

    // The directive wins over the flag.
    p.add(
        "0001_slow_backfill.sql",
        "-- capstan:statement-timeout 100ms\n-- capstan:up\nCREATE TABLE before_sleep (id integer);\nSELECT pg_sleep(2);\n",
    );
    let t = Instant::now();
    let out = p.capstan(&["migrate", "up", "--statement-timeout", "1m"]);
    assert_cancelled(&p, &out, t.elapsed(), "0001_slow_backfill.sql:4: ");

    // Within the limit it runs.
    p.add(
        "0001_slow_backfill.sql",
        "-- capstan:statement-timeout 2s\n-- capstan:up\nCREATE TABLE before_sleep (id integer);\nSELECT pg_sleep(0.05);\n",
    );
    let out = p.capstan(&["migrate", "up", "--statement-timeout", "10ms"]);
    assert_code(&out, 0);
    assert!(p.has_table("before_sleep"));
}

/// Several seconds of work for SQLite.
const SQLITE_SLOW: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000000) SELECT count(*) FROM c;";

#[test]
fn statement_timeout_cancels_a_slow_migration_sqlite() {
    let p = Project::new(Backend::Sqlite);
    p.add(
        "0001_slow_backfill.sql",
        &format!("-- capstan:up\nCREATE TABLE before_sleep (id integer);\n{SQLITE_SLOW}\n"),
    );
    let t = Instant::now();
    let out = p.capstan(&["migrate", "up", "--statement-timeout", "100ms"]);
    assert_cancelled(&p, &out, t.elapsed(), "0001_slow_backfill.sql:3: ");
}

// ---------------------------------------------------------------------------
// 7. Notices and errors with file and line.

#[test]
fn notices_are_shown_with_file_and_line_postgres() {
    let p = Project::new(Backend::Postgres);
    p.write(
        "0001_greet.sql",
        "-- capstan:up\nCREATE TABLE greeted (id integer);\nDO $$ BEGIN RAISE NOTICE 'hello'; END $$;\n",
    );
    p.add(
        "0002_greet_again.sql",
        "-- capstan:no-transaction\n-- capstan:up\nCREATE TABLE greeted_again (id integer);\n\nDO $$\nBEGIN\n  RAISE WARNING 'careful';\nEND\n$$;\n",
    );
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 0);
    let err = stderr(&out);
    let first = p.migrations().join("0001_greet.sql");
    let second = p.migrations().join("0002_greet_again.sql");
    assert!(
        err.contains(&format!("{}:3: NOTICE: hello", first.display())),
        "{err}"
    );
    assert!(
        err.contains(&format!("{}:5: WARNING: careful", second.display())),
        "{err}"
    );

    // A notice raised before a failure is shown too, with the failure's line.
    p.add(
        "0003_greet_then_fail.sql",
        "-- capstan:up\nDO $$ BEGIN RAISE NOTICE 'before the failure'; END $$;\nSELECT * FROM missing_table;\n",
    );
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("0003_greet_then_fail.sql:2: NOTICE: before the failure")
            && err
                .contains("0003_greet_then_fail.sql:3: relation \"missing_table\" does not exist"),
        "{err}"
    );
}

fn errors_name_the_file_and_line_of_the_failing_statement(b: Backend) {
    for no_tx in [false, true] {
        for (kind, bad, says) in [
            (
                "runtime",
                "INSERT INTO missing_table VALUES (1);",
                "missing_table",
            ),
            (
                "syntax",
                "INSERT INTO first VALUES (1,, 2);",
                "syntax error",
            ),
        ] {
            let p = Project::new(b);
            let header = if no_tx {
                "-- capstan:no-transaction\n"
            } else {
                ""
            };
            p.add(
                "0001_fails.sql",
                &format!(
                    "{header}-- capstan:up\nCREATE TABLE first (id integer);\n\nCREATE TABLE second (id integer);\n-- the third statement fails\n{bad}\n"
                ),
            );
            let line = if no_tx { 7 } else { 6 };
            let case = format!("{b:?} {kind} error, no-transaction {no_tx}");
            let out = p.capstan(&["migrate", "up"]);
            assert_code(&out, 1);
            let err = stderr(&out);
            let at = format!(
                "{}:{line}: ",
                p.migrations().join("0001_fails.sql").display()
            );
            assert!(
                err.contains(&at) && err.contains(says),
                "{case}: expected `{at}` and `{says}` in:\n{err}"
            );
            if no_tx {
                assert!(p.has_table("first") && p.has_table("second"), "{case}");
                assert_eq!(p.states(), st(&[(1, "dirty")]), "{case}");
            } else {
                assert!(!p.has_table("first") && !p.has_table("second"), "{case}");
                assert_eq!(p.states(), st(&[(1, "pending")]), "{case}");
            }
        }
    }
}

backends!(errors_name_the_file_and_line_of_the_failing_statement);

// ---------------------------------------------------------------------------
// 8. History fields.

fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(out.status.success());
    stdout(&out)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_string()
}

fn history_records_every_field(b: Backend) {
    let p = Project::new(b);
    let slow = match b {
        Backend::Postgres => "SELECT pg_sleep(0.05);\n",
        Backend::Sqlite => "",
    };
    p.write(
        "0001_create_users.sql",
        &format!("-- capstan:up\nCREATE TABLE users (id integer);\nCREATE TABLE legacy (id integer);\n{slow}"),
    );
    p.add(
        "0002_drop_legacy.sql",
        "-- capstan:phase contract\n-- capstan:no-transaction\n-- capstan:up\nDROP TABLE legacy;\n",
    );
    assert_code(&p.capstan(&["migrate", "up"]), 0);

    let rows = p.query(&format!(
        "SELECT version, name, checksum, phase, state, applied_by, binary_version, duration_ms, no_transaction FROM {} ORDER BY version",
        p.history_table()
    ));
    let rows: Vec<Vec<&str>> = rows.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(rows.len(), 2, "{b:?}: {rows:?}");
    let expect = [
        ("1", "create_users", "0001_create_users.sql", "expand"),
        ("2", "drop_legacy", "0002_drop_legacy.sql", "contract"),
    ];
    for (row, (version, name, file, phase)) in rows.iter().zip(expect) {
        assert_eq!(row[0], version, "{b:?}: {row:?}");
        assert_eq!(row[1], name, "{b:?}: {row:?}");
        assert_eq!(
            row[2],
            sha256_of(&p.migrations().join(file)),
            "{b:?}: checksum is the file's sha256"
        );
        assert_eq!(row[3], phase, "{b:?}: {row:?}");
        assert_eq!(row[4], "applied", "{b:?}: {row:?}");
        let (user, host) = row[5].split_once('@').expect("user@host");
        assert!(user == "tester" && !host.is_empty(), "{b:?}: {row:?}");
        assert_eq!(row[6], BINARY_VERSION, "{b:?}: {row:?}");
        let ms: i64 = row[7].parse().expect("duration_ms");
        assert!(ms >= 0, "{b:?}: {row:?}");
    }
    let no_tx: Vec<&str> = rows.iter().map(|r| r[8]).collect();
    match b {
        Backend::Postgres => {
            assert_eq!(no_tx, ["f", "t"]);
            let ms: i64 = rows[0][7].parse().expect("duration_ms");
            assert!(
                ms >= 50,
                "0001 slept 50 ms inside its transaction, recorded {ms} ms"
            );
            assert_eq!(
                p.count(
                    "SELECT count(*) FROM capstan.migrations WHERE applied_at BETWEEN now() - interval '5 minutes' AND now()"
                ),
                2,
                "applied_at is when it ran"
            );
            assert_eq!(
                p.count("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'capstan' AND table_name IN ('migrations', 'log')"),
                2,
                "history lives in the capstan schema"
            );
            assert_eq!(
                p.count(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
                ),
                1,
                "nothing of capstan's in the public schema"
            );
        }
        Backend::Sqlite => {
            assert_eq!(no_tx, ["0", "1"]);
            assert_eq!(
                p.count(
                    "SELECT count(*) FROM capstan_migrations WHERE applied_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]*Z' \
                     AND abs(julianday('now') - julianday(applied_at)) * 86400 < 300"
                ),
                2,
                "applied_at is an RFC 3339 UTC time of when it ran"
            );
        }
    }
    assert_eq!(
        p.count(&format!(
            "SELECT count(*) FROM {} WHERE action = 'up' AND applied_by LIKE 'tester@%' AND binary_version = '{BINARY_VERSION}'",
            p.log_table()
        )),
        2,
        "{b:?}: the log records each run too"
    );

    // status --json shows the same.
    let s = p.status();
    let applied = &s["migrations"][0]["applied"];
    assert_eq!(
        applied["checksum"].as_str(),
        Some(sha256_of(&p.migrations().join("0001_create_users.sql")).as_str()),
        "{s}"
    );
    assert_eq!(applied["binary_version"], BINARY_VERSION, "{s}");
    assert!(
        applied["applied_at"]
            .as_str()
            .is_some_and(|t| t.len() >= 20 && t.ends_with('Z')),
        "{s}"
    );
    assert!(
        applied["duration_ms"].as_i64().is_some_and(|d| d >= 0),
        "{s}"
    );
}

fn history_records_version_name_checksum_phase_who_when_binary_and_duration(b: Backend) {
    history_records_every_field(b);
}
backends!(history_records_version_name_checksum_phase_who_when_binary_and_duration);

// ---------------------------------------------------------------------------
// 9. A failing transactional migration leaves nothing of itself.

fn failing_transactional_migration_leaves_nothing(b: Backend) {
    let p = Project::new(b);
    p.write(
        "0001_create_a.sql",
        "-- capstan:up\nCREATE TABLE a (id integer);\n",
    );
    p.write(
        "0002_create_b.sql",
        "-- capstan:up\nCREATE TABLE b (id integer);\n",
    );
    p.write(
        "0003_create_c.sql",
        "-- capstan:up\nCREATE TABLE c (id integer);\nINSERT INTO c VALUES (1);\nINSERT INTO missing_table VALUES (1);\n",
    );
    p.add(
        "0004_create_d.sql",
        "-- capstan:up\nCREATE TABLE d (id integer);\n",
    );
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("applied 2 migrations")
            && err.contains("0003_create_c.sql:4: ")
            && err.contains("0003_create_c was rolled back: nothing of it is applied"),
        "{b:?}: {err}"
    );
    assert!(
        p.has_table("a") && p.has_table("b"),
        "{b:?}: earlier migrations stay"
    );
    assert!(
        !p.has_table("c"),
        "{b:?}: 0003's first statement is rolled back"
    );
    assert!(!p.has_table("d"), "{b:?}: nothing after the failure runs");
    assert_eq!(p.recorded_versions(), vec![1, 2]);
    assert_eq!(ups_in_log(&p), once_each(1..=2));
    assert_eq!(
        p.states(),
        st(&[
            (1, "applied"),
            (2, "applied"),
            (3, "pending"),
            (4, "pending")
        ])
    );

    // Fixed, it runs from where it stopped.
    p.add(
        "0003_create_c.sql",
        "-- capstan:up\nCREATE TABLE c (id integer);\nINSERT INTO c VALUES (1);\n",
    );
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("applied 2 migrations"),
        "{}",
        stdout(&out)
    );
    assert_eq!(p.count("SELECT count(*) FROM c"), 1);
    assert!(p.has_table("d"));
}

fn failing_transactional_migration_leaves_nothing_and_earlier_ones_stay(b: Backend) {
    failing_transactional_migration_leaves_nothing(b);
}
backends!(failing_transactional_migration_leaves_nothing_and_earlier_ones_stay);
