//! Shared helpers for the end-to-end tests: real binaries, a real Postgres
//! (a fresh database per test on the server named by `CAPSTAN_TEST_PG`, which
//! `scripts/test.sh` starts) and real SQLite files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The backends every engine test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

pub const BACKENDS: [Backend; 2] = [Backend::Postgres, Backend::Sqlite];

/// A scratch project: a temp dir with `migrations/` and a database.
pub struct Project {
    pub dir: tempfile::TempDir,
    pub backend: Backend,
    pub url: String,
    pg_db: Option<capstan_testkit::TestDb>,
}

#[allow(unused_imports)]
pub use capstan_testkit::{pg_admin_url, psql};

/// Runs SQL on a SQLite file with rusqlite's bundled SQLite via the `sqlite3`
/// shell if present, else through a tiny query helper.
pub fn sqlite_query(path: &Path, sql: &str) -> String {
    let conn = rusqlite::Connection::open(path).expect("open sqlite");
    // A runner may hold the write lock for a moment; wait for it like a client would.
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .expect("busy timeout");
    let mut out = Vec::new();
    let mut stmt = conn.prepare(sql).expect("prepare");
    let cols = stmt.column_count();
    let mut rows = stmt.query([]).expect("query");
    while let Some(row) = rows.next().expect("row") {
        let vals: Vec<String> = (0..cols)
            .map(|i| match row.get_ref(i).expect("col") {
                rusqlite::types::ValueRef::Null => String::new(),
                rusqlite::types::ValueRef::Integer(n) => n.to_string(),
                rusqlite::types::ValueRef::Real(f) => f.to_string(),
                rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                rusqlite::types::ValueRef::Blob(_) => "<blob>".into(),
            })
            .collect();
        out.push(vals.join("|"));
    }
    out.join("\n")
}

impl Project {
    /// A fresh project on `backend` (a new database on the test server, or a new file).
    pub fn new(backend: Backend) -> Project {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("migrations")).expect("mkdir migrations");
        match backend {
            Backend::Postgres => {
                let db = capstan_testkit::TestDb::new("t");
                Project {
                    url: db.url.clone(),
                    dir,
                    backend,
                    pg_db: Some(db),
                }
            }
            Backend::Sqlite => {
                let url = format!("sqlite://{}", dir.path().join("app.db").display());
                Project {
                    dir,
                    backend,
                    url,
                    pg_db: None,
                }
            }
        }
    }

    pub fn migrations(&self) -> PathBuf {
        self.dir.path().join("migrations")
    }

    /// Writes a migration file (no sum update; call `hash`).
    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.migrations().join(name), text).expect("write migration");
    }

    /// Writes a migration file and rewrites the sum.
    pub fn add(&self, name: &str, text: &str) {
        self.write(name, text);
        self.hash();
    }

    pub fn hash(&self) {
        let out = self.capstan(&["migrate", "hash"]);
        assert!(out.status.success(), "hash failed: {}", stderr(&out));
    }

    /// A `capstan` command with `--database` and `--dir` set, run in the project dir.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_capstan"));
        c.args(args)
            .arg("--database")
            .arg(&self.url)
            .arg("--dir")
            .arg(self.migrations())
            .current_dir(self.dir.path())
            .env_remove("DATABASE_URL")
            .env("USER", "tester");
        c
    }

    pub fn capstan(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run capstan")
    }

    /// Runs a query on the project's database; rows as `a|b` lines.
    pub fn query(&self, sql: &str) -> String {
        match self.backend {
            Backend::Postgres => psql(&self.url, sql),
            Backend::Sqlite => sqlite_query(&self.dir.path().join("app.db"), sql),
        }
    }

    /// The history table's name for the backend.
    pub fn history_table(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => "capstan.migrations",
            Backend::Sqlite => "capstan_migrations",
        }
    }

    /// `status --json` parsed.
    pub fn status(&self) -> serde_json::Value {
        let out = self.capstan(&["migrate", "status", "--json"]);
        assert!(out.status.success(), "status failed: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).expect("status JSON")
    }

    /// `(version, state)` of every migration, from `status --json`.
    pub fn states(&self) -> Vec<(u64, String)> {
        self.status()["migrations"]
            .as_array()
            .expect("migrations array")
            .iter()
            .map(|m| {
                (
                    m["version"].as_u64().expect("version"),
                    m["state"].as_str().expect("state").to_string(),
                )
            })
            .collect()
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the exit code, printing both streams on mismatch.
pub fn assert_code(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

impl Project {
    /// The SQLite file of a SQLite project.
    pub fn sqlite_path(&self) -> PathBuf {
        self.dir.path().join("app.db")
    }

    /// The Postgres database name of a Postgres project.
    pub fn pg_db(&self) -> Option<&str> {
        self.pg_db.as_ref().map(|db| db.name.as_str())
    }

    /// The log table's name for the backend.
    pub fn log_table(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => "capstan.log",
            Backend::Sqlite => "capstan_log",
        }
    }

    /// Runs a query whose single result is an integer.
    pub fn count(&self, sql: &str) -> i64 {
        let out = self.query(sql);
        out.parse()
            .unwrap_or_else(|_| panic!("`{sql}` returned `{out}`, not an integer"))
    }

    /// True when the user table `name` exists (public schema on Postgres).
    pub fn has_table(&self, name: &str) -> bool {
        match self.backend {
            Backend::Postgres => {
                self.query(&format!("SELECT to_regclass('public.{name}') IS NOT NULL")) == "t"
            }
            Backend::Sqlite => {
                self.sqlite_path().exists()
                    && self.count(&format!(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '{name}'"
                )) == 1
            }
        }
    }

    /// True when `table` has a column `column`.
    pub fn has_column(&self, table: &str, column: &str) -> bool {
        let sql = match self.backend {
            Backend::Postgres => format!(
                "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' AND table_name = '{table}' AND column_name = '{column}'"
            ),
            Backend::Sqlite => {
                format!("SELECT count(*) FROM pragma_table_info('{table}') WHERE name = '{column}'")
            }
        };
        self.count(&sql) == 1
    }

    /// Versions recorded in the history table (empty before capstan created it).
    pub fn recorded_versions(&self) -> Vec<u64> {
        let exists = match self.backend {
            Backend::Postgres => self.query("SELECT to_regclass('capstan.migrations') IS NOT NULL") == "t",
            Backend::Sqlite => {
                self.sqlite_path().exists()
                    && self.count(
                        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'capstan_migrations'",
                    ) == 1
            }
        };
        if !exists {
            return Vec::new();
        }
        self.query(&format!(
            "SELECT version FROM {} ORDER BY version",
            self.history_table()
        ))
        .lines()
        .map(|l| l.parse().expect("version"))
        .collect()
    }

    /// A `capstan` child process with stdout and stderr piped.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.command(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn capstan")
    }
}

/// Polls `ready` every few milliseconds until it returns true; panics naming
/// `what` if it has not within `limit`.
pub fn wait_until(what: &str, limit: std::time::Duration, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if ready() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
